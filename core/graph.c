#include "graph.h"

#include "error.h"
#include "op.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- name map (open addressing over value indices) ---- */

static void map_rebuild(Graph *g, int cap)
{
    free(g->map);
    g->map_cap = cap;
    g->map = xmalloc((size_t)cap * sizeof *g->map);
    for (int i = 0; i < cap; i++)
        g->map[i] = -1;
    for (int v = 0; v < g->n_values; v++) {
        size_t h = hash_str(g->values[v].name) & (size_t)(cap - 1);
        while (g->map[h] >= 0)
            h = (h + 1) & (size_t)(cap - 1);
        g->map[h] = v;
    }
}

static void map_insert(Graph *g, int v)
{
    if ((g->n_values + 1) * 2 > g->map_cap) {
        int cap = g->map_cap ? g->map_cap : 64;
        while ((g->n_values + 1) * 2 > cap)
            cap *= 2;
        map_rebuild(g, cap); /* includes v, which is already appended */
        return;
    }
    size_t h = hash_str(g->values[v].name) & (size_t)(g->map_cap - 1);
    while (g->map[h] >= 0)
        h = (h + 1) & (size_t)(g->map_cap - 1);
    g->map[h] = v;
}

int graph_find_value(const Graph *g, const char *name)
{
    if (!g->map_cap || !name)
        return -1;
    size_t h = hash_str(name) & (size_t)(g->map_cap - 1);
    while (g->map[h] >= 0) {
        if (strcmp(g->values[g->map[h]].name, name) == 0)
            return g->map[h];
        h = (h + 1) & (size_t)(g->map_cap - 1);
    }
    return -1;
}

/* ---- values ---- */

Graph *graph_new(void)
{
    Graph *g = xcalloc(1, sizeof *g);
    g->opset = 17;
    g->ir_version = 8;
    return g;
}

static void value_done(Value *v)
{
    free(v->name);
    for (int i = 0; i < SH_MAX_RANK; i++)
        free(v->dim_names[i]);
    tensor_free(v->data);
}

void attr_done(Attr *a)
{
    free(a->name);
    free(a->s);
    free(a->ints);
    free(a->floats);
    for (int i = 0; a->strings && i < a->n; i++)
        free(a->strings[i]);
    free(a->strings);
    tensor_free(a->t);
    memset(a, 0, sizeof *a);
}

static void node_done(Node *n)
{
    free(n->name);
    free(n->op_type);
    free(n->domain);
    free(n->in);
    free(n->out);
    for (int i = 0; i < n->n_attrs; i++)
        attr_done(&n->attrs[i]);
    free(n->attrs);
}

void graph_free(Graph *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->n_values; i++)
        value_done(&g->values[i]);
    for (int i = 0; i < g->n_nodes; i++)
        node_done(&g->nodes[i]);
    for (int i = 0; i < g->n_meta; i++) {
        free(g->meta[i].key);
        free(g->meta[i].value);
    }
    free(g->meta);
    free(g->values);
    free(g->nodes);
    free(g->inputs);
    free(g->outputs);
    free(g->name);
    free(g->producer_name);
    free(g->producer_version);
    free(g->map);
    free(g->param_block);
    free(g);
}

int graph_value(Graph *g, const char *name)
{
    int v = graph_find_value(g, name);
    if (v >= 0)
        return v;
    grow_array((void **)&g->values, &g->cap_values, g->n_values + 1, sizeof *g->values);
    v = g->n_values++;
    Value *val = &g->values[v];
    memset(val, 0, sizeof *val);
    val->name = xstrdup(name);
    val->shape.rank = -1;
    val->producer = -1;
    map_insert(g, v);
    return v;
}

int graph_new_value(Graph *g, const char *base)
{
    if (graph_find_value(g, base) < 0)
        return graph_value(g, base);
    /* names are built whole: a fixed buffer would cut a long base, and
     * every candidate would then be the same taken name */
    for (int k = 1;; k++) {
        char *name = xasprintf("%s_%d", base, k);
        if (graph_find_value(g, name) < 0) {
            int v = graph_value(g, name);
            free(name);
            return v;
        }
        free(name);
    }
}

int graph_add_input(Graph *g, const char *name, DType dt, const Shape *s)
{
    int v = graph_value(g, name);
    g->values[v].flags |= VAL_INPUT;
    g->values[v].dtype = dt;
    g->values[v].shape = *s;
    g->inputs = xrealloc(g->inputs, (size_t)(g->n_inputs + 1) * sizeof *g->inputs);
    g->inputs[g->n_inputs++] = v;
    return v;
}

int graph_add_const(Graph *g, const char *name, Tensor *t)
{
    int v = graph_value(g, name);
    Value *val = &g->values[v];
    tensor_free(val->data);
    val->data = t;
    val->flags |= VAL_CONST;
    val->dtype = t->dtype;
    val->shape = t->shape;
    return v;
}

void graph_add_output(Graph *g, int value)
{
    g->values[value].flags |= VAL_OUTPUT;
    g->outputs = xrealloc(g->outputs, (size_t)(g->n_outputs + 1) * sizeof *g->outputs);
    g->outputs[g->n_outputs++] = value;
}

/* ---- nodes ---- */

int graph_add_node(Graph *g, const char *op_type, const char *name, int n_in, const int *in,
                   int n_out, const int *out)
{
    grow_array((void **)&g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof *g->nodes);
    int idx = g->n_nodes++;
    Node *n = &g->nodes[idx];
    memset(n, 0, sizeof *n);
    n->op_type = xstrdup(op_type);
    n->name = name ? xstrdup(name) : xasprintf("%s_%d", op_type, idx);
    n->n_in = n_in;
    n->n_out = n_out;
    n->in = xmalloc((size_t)(n_in ? n_in : 1) * sizeof *n->in);
    n->out = xmalloc((size_t)(n_out ? n_out : 1) * sizeof *n->out);
    for (int i = 0; i < n_in; i++)
        n->in[i] = in[i];
    for (int i = 0; i < n_out; i++) {
        n->out[i] = out[i];
        if (out[i] >= 0)
            g->values[out[i]].producer = idx;
    }
    n->op = op_find(op_type);
    return idx;
}

void graph_remove_nodes(Graph *g, const bool *remove)
{
    int w = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (remove[i]) {
            node_done(&g->nodes[i]);
            continue;
        }
        g->nodes[w++] = g->nodes[i];
    }
    g->n_nodes = w;
    graph_update_producers(g);
}

void graph_name_nodes(Graph *g)
{
    for (int i = 0; i < g->n_nodes; i++) {
        Node *n = &g->nodes[i];
        if (n->name && n->name[0])
            continue;
        free(n->name);
        n->name = xasprintf("%s_%d", n->op_type, i);
    }
}

/* ---- attributes ---- */

static Attr *attr_slot(Node *n, const char *name)
{
    for (int i = 0; i < n->n_attrs; i++)
        if (strcmp(n->attrs[i].name, name) == 0) {
            attr_done(&n->attrs[i]);
            n->attrs[i].name = xstrdup(name);
            return &n->attrs[i];
        }
    n->attrs = xrealloc(n->attrs, (size_t)(n->n_attrs + 1) * sizeof *n->attrs);
    Attr *a = &n->attrs[n->n_attrs++];
    memset(a, 0, sizeof *a);
    a->name = xstrdup(name);
    return a;
}

void node_set_int(Node *n, const char *name, int64_t v)
{
    Attr *a = attr_slot(n, name);
    a->type = ATTR_INT;
    a->i = v;
}

void node_set_float(Node *n, const char *name, float v)
{
    Attr *a = attr_slot(n, name);
    a->type = ATTR_FLOAT;
    a->f = v;
}

void node_set_str(Node *n, const char *name, const char *v)
{
    Attr *a = attr_slot(n, name);
    a->type = ATTR_STRING;
    a->s = xstrdup(v);
}

void node_set_ints(Node *n, const char *name, const int64_t *v, int count)
{
    Attr *a = attr_slot(n, name);
    a->type = ATTR_INTS;
    a->n = count;
    a->ints = xmalloc((size_t)(count ? count : 1) * sizeof *a->ints);
    if (count > 0)
        memcpy(a->ints, v, (size_t)count * sizeof *a->ints);
}

void node_set_floats(Node *n, const char *name, const float *v, int count)
{
    Attr *a = attr_slot(n, name);
    a->type = ATTR_FLOATS;
    a->n = count;
    a->floats = xmalloc((size_t)(count ? count : 1) * sizeof *a->floats);
    if (count > 0)
        memcpy(a->floats, v, (size_t)count * sizeof *a->floats);
}

void node_set_tensor(Node *n, const char *name, Tensor *t)
{
    Attr *a = attr_slot(n, name);
    a->type = ATTR_TENSOR;
    a->t = t;
}

const Attr *node_attr(const Node *n, const char *name)
{
    for (int i = 0; i < n->n_attrs; i++)
        if (strcmp(n->attrs[i].name, name) == 0)
            return &n->attrs[i];
    return NULL;
}

int64_t node_attr_int(const Node *n, const char *name, int64_t dflt)
{
    const Attr *a = node_attr(n, name);
    return a && a->type == ATTR_INT ? a->i : dflt;
}

float node_attr_float(const Node *n, const char *name, float dflt)
{
    const Attr *a = node_attr(n, name);
    if (!a)
        return dflt;
    if (a->type == ATTR_FLOAT)
        return a->f;
    if (a->type == ATTR_INT)
        return (float)a->i;
    return dflt;
}

const char *node_attr_str(const Node *n, const char *name, const char *dflt)
{
    const Attr *a = node_attr(n, name);
    return a && a->type == ATTR_STRING ? a->s : dflt;
}

int node_attr_ints(const Node *n, const char *name, const int64_t **out)
{
    const Attr *a = node_attr(n, name);
    if (!a || a->type != ATTR_INTS)
        return -1;
    *out = a->ints;
    return a->n;
}

int node_attr_floats(const Node *n, const char *name, const float **out)
{
    const Attr *a = node_attr(n, name);
    if (!a || a->type != ATTR_FLOATS)
        return -1;
    *out = a->floats;
    return a->n;
}

int attr_copy(Attr *dst, const Attr *src)
{
    memset(dst, 0, sizeof *dst);
    dst->name = xstrdup(src->name);
    dst->type = src->type;
    dst->i = src->i;
    dst->f = src->f;
    dst->s = xstrdup(src->s);
    dst->n = src->n;
    if (src->ints) {
        dst->ints = xmalloc((size_t)(src->n ? src->n : 1) * sizeof *dst->ints);
        memcpy(dst->ints, src->ints, (size_t)src->n * sizeof *dst->ints);
    }
    if (src->floats) {
        dst->floats = xmalloc((size_t)(src->n ? src->n : 1) * sizeof *dst->floats);
        memcpy(dst->floats, src->floats, (size_t)src->n * sizeof *dst->floats);
    }
    if (src->strings) {
        dst->strings = xcalloc((size_t)(src->n ? src->n : 1), sizeof *dst->strings);
        for (int i = 0; i < src->n; i++)
            dst->strings[i] = xstrdup(src->strings[i]);
    }
    if (src->t) {
        dst->t = tensor_clone(src->t);
        if (!dst->t) {
            attr_done(dst);
            return SH_E_NOMEM;
        }
    }
    return 0;
}

/* ---- whole-graph operations ---- */

Graph *graph_clone(const Graph *g)
{
    Graph *c = graph_new();
    c->opset = g->opset;
    c->ir_version = g->ir_version;
    c->name = xstrdup(g->name);
    c->producer_name = xstrdup(g->producer_name);
    c->producer_version = xstrdup(g->producer_version);
    for (int i = 0; i < g->n_meta; i++)
        graph_set_meta(c, g->meta[i].key, g->meta[i].value);
    for (int v = 0; v < g->n_values; v++) {
        const Value *src = &g->values[v];
        int cv = graph_value(c, src->name);
        Value *dst = &c->values[cv];
        dst->flags = src->flags;
        dst->dtype = src->dtype;
        dst->shape = src->shape;
        dst->producer = src->producer;
        for (int k = 0; k < SH_MAX_RANK; k++)
            dst->dim_names[k] = xstrdup(src->dim_names[k]);
        if (src->data && !(dst->data = tensor_clone(src->data))) {
            graph_free(c);
            return NULL;
        }
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const Node *n = &g->nodes[i];
        int idx = graph_add_node(c, n->op_type, n->name, n->n_in, n->in, n->n_out, n->out);
        Node *cn = &c->nodes[idx];
        cn->domain = xstrdup(n->domain);
        cn->op = n->op;
        cn->n_attrs = n->n_attrs;
        cn->attrs = xcalloc((size_t)(n->n_attrs ? n->n_attrs : 1), sizeof *cn->attrs);
        for (int a = 0; a < n->n_attrs; a++)
            if (attr_copy(&cn->attrs[a], &n->attrs[a]) < 0) {
                graph_free(c);
                return NULL;
            }
    }
    c->inputs = xmalloc((size_t)(g->n_inputs + 1) * sizeof *c->inputs);
    memcpy(c->inputs, g->inputs, (size_t)g->n_inputs * sizeof *c->inputs);
    c->n_inputs = g->n_inputs;
    c->outputs = xmalloc((size_t)(g->n_outputs + 1) * sizeof *c->outputs);
    memcpy(c->outputs, g->outputs, (size_t)g->n_outputs * sizeof *c->outputs);
    c->n_outputs = g->n_outputs;
    return c;
}

int graph_bind_ops(Graph *g)
{
    for (int i = 0; i < g->n_nodes; i++) {
        Node *n = &g->nodes[i];
        if (n->domain && n->domain[0] && strcmp(n->domain, "ai.onnx") != 0)
            return sh_fail(SH_E_UNSUPPORTED,
                           "node '%s' uses op '%s' from domain '%s', which shears does not support",
                           n->name, n->op_type, n->domain);
        n->op = op_find(n->op_type);
        if (!n->op)
            return sh_fail(SH_E_UNSUPPORTED, "node '%s' uses op '%s', which shears does not support",
                           n->name, n->op_type);
        if (n->n_in < n->op->min_in || n->n_in > n->op->max_in)
            return sh_fail(SH_E_FORMAT, "node '%s' (%s) has %d inputs; expected %d to %d", n->name,
                           n->op_type, n->n_in, n->op->min_in, n->op->max_in);
        if (n->n_out < n->op->min_out || n->n_out > n->op->max_out)
            return sh_fail(SH_E_FORMAT, "node '%s' (%s) has %d outputs; expected %d to %d",
                           n->name, n->op_type, n->n_out, n->op->min_out, n->op->max_out);
        for (int k = 0; k < n->op->min_in; k++)
            if (n->in[k] < 0)
                return sh_fail(SH_E_FORMAT, "node '%s' (%s): required input %d is missing",
                               n->name, n->op_type, k);
    }
    return 0;
}

void graph_update_producers(Graph *g)
{
    for (int v = 0; v < g->n_values; v++)
        g->values[v].producer = -1;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_out; k++)
            if (g->nodes[i].out[k] >= 0)
                g->values[g->nodes[i].out[k]].producer = i;
}

int graph_toposort(Graph *g)
{
    int n = g->n_nodes, rc = 0;
    int *producer = xmalloc((size_t)(g->n_values ? g->n_values : 1) * sizeof *producer);
    int *pending = xcalloc((size_t)(n ? n : 1), sizeof *pending);
    int *order = xmalloc((size_t)(n ? n : 1) * sizeof *order);
    int *users_start = xcalloc((size_t)g->n_values + 1, sizeof *users_start);
    int *users = NULL;
    for (int v = 0; v < g->n_values; v++)
        producer[v] = -1;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < g->nodes[i].n_out; k++) {
            int v = g->nodes[i].out[k];
            if (v < 0)
                continue;
            if (producer[v] >= 0 || (g->values[v].flags & (VAL_INPUT | VAL_CONST))) {
                rc = sh_fail(SH_E_FORMAT, "value '%s' is produced more than once (node '%s')",
                             g->values[v].name, g->nodes[i].name);
                goto cleanup;
            }
            producer[v] = i;
        }
    /* count unresolved inputs per node; build value -> consumer lists */
    for (int i = 0; i < n; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++) {
            int v = g->nodes[i].in[k];
            if (v < 0)
                continue;
            if (producer[v] >= 0)
                pending[i]++;
            else if (!(g->values[v].flags & (VAL_INPUT | VAL_CONST))) {
                rc = sh_fail(SH_E_FORMAT,
                             "node '%s' (%s) reads value '%s', which no node, input or initializer provides",
                             g->nodes[i].name, g->nodes[i].op_type, g->values[v].name);
                goto cleanup;
            }
            users_start[v + 1]++;
        }
    for (int v = 0; v < g->n_values; v++)
        users_start[v + 1] += users_start[v];
    users = xmalloc((size_t)(users_start[g->n_values] + 1) * sizeof *users);
    {
        int *fill = xcalloc((size_t)g->n_values + 1, sizeof *fill);
        for (int i = 0; i < n; i++)
            for (int k = 0; k < g->nodes[i].n_in; k++) {
                int v = g->nodes[i].in[k];
                if (v >= 0)
                    users[users_start[v] + fill[v]++] = i;
            }
        free(fill);
    }
    /* Kahn's algorithm, taking ready nodes in original order (stable) */
    int head = 0, tail = 0;
    for (int i = 0; i < n; i++)
        if (pending[i] == 0)
            order[tail++] = i;
    while (head < tail) {
        int i = order[head++];
        for (int k = 0; k < g->nodes[i].n_out; k++) {
            int v = g->nodes[i].out[k];
            if (v < 0)
                continue;
            for (int u = users_start[v]; u < users_start[v + 1]; u++)
                if (--pending[users[u]] == 0)
                    order[tail++] = users[u];
        }
    }
    if (tail != n) {
        /* A node left over may only sit downstream of a cycle. Every left-over
         * node reads a value whose producer is left over too, so walking back
         * through those producers n times ends on the cycle itself. */
        int i = 0;
        while (pending[i] == 0)
            i++;
        for (int step = 0; step < n; step++) {
            const Node *nd = &g->nodes[i];
            for (int k = 0; k < nd->n_in; k++) {
                int v = nd->in[k];
                if (v >= 0 && producer[v] >= 0 && pending[producer[v]] > 0) {
                    i = producer[v];
                    break;
                }
            }
        }
        rc = sh_fail(SH_E_FORMAT, "the graph has a cycle through node '%s' (%s)",
                     g->nodes[i].name, g->nodes[i].op_type);
        goto cleanup;
    }
    {
        Node *sorted = xmalloc((size_t)(n ? n : 1) * sizeof *sorted);
        for (int i = 0; i < n; i++)
            sorted[i] = g->nodes[order[i]];
        if (n > 0)
            memcpy(g->nodes, sorted, (size_t)n * sizeof *sorted);
        free(sorted);
    }
    graph_update_producers(g);
cleanup:
    free(producer);
    free(pending);
    free(order);
    free(users_start);
    free(users);
    return rc;
}

int graph_use_count(const Graph *g, int v)
{
    int count = 0;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++)
            if (g->nodes[i].in[k] == v)
                count++;
    for (int k = 0; k < g->n_outputs; k++)
        if (g->outputs[k] == v)
            count++;
    return count;
}

void graph_prune_dead(Graph *g)
{
    bool *live = xcalloc((size_t)g->n_values + 1, sizeof *live);
    bool *remove = xcalloc((size_t)g->n_nodes + 1, sizeof *remove);
    for (int k = 0; k < g->n_outputs; k++)
        live[g->outputs[k]] = true;
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        const Node *n = &g->nodes[i];
        bool used = false;
        for (int k = 0; k < n->n_out; k++)
            if (n->out[k] >= 0 && live[n->out[k]])
                used = true;
        if (!used) {
            remove[i] = true;
            continue;
        }
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0)
                live[n->in[k]] = true;
    }
    graph_remove_nodes(g, remove);
    /* initializers nobody reads are dropped (their data freed) */
    for (int v = 0; v < g->n_values; v++) {
        Value *val = &g->values[v];
        if ((val->flags & VAL_CONST) && !live[v] && !(val->flags & VAL_INPUT)) {
            tensor_free(val->data);
            val->data = NULL;
            val->flags &= ~(unsigned)VAL_CONST;
        }
    }
    free(live);
    free(remove);
}

void graph_set_meta(Graph *g, const char *key, const char *value)
{
    for (int i = 0; i < g->n_meta; i++)
        if (strcmp(g->meta[i].key, key) == 0) {
            free(g->meta[i].value);
            g->meta[i].value = xstrdup(value);
            return;
        }
    g->meta = xrealloc(g->meta, (size_t)(g->n_meta + 1) * sizeof *g->meta);
    g->meta[g->n_meta].key = xstrdup(key);
    g->meta[g->n_meta].value = xstrdup(value);
    g->n_meta++;
}

const char *graph_get_meta(const Graph *g, const char *key)
{
    for (int i = 0; i < g->n_meta; i++)
        if (strcmp(g->meta[i].key, key) == 0)
            return g->meta[i].value;
    return NULL;
}

int64_t graph_param_count(const Graph *g)
{
    int64_t total = 0;
    for (int v = 0; v < g->n_values; v++) {
        const Value *val = &g->values[v];
        if ((val->flags & VAL_CONST) && val->data && val->data->dtype == SH_F32)
            total += val->data->numel;
    }
    return total;
}

void graph_node_params(const Graph *g, int64_t *params)
{
    bool *seen = xcalloc((size_t)g->n_values + 1, sizeof *seen);
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++) {
            int v = g->nodes[i].in[k];
            if (v < 0 || seen[v] || !(g->values[v].flags & VAL_CONST) || !g->values[v].data ||
                g->values[v].data->dtype != SH_F32)
                continue;
            seen[v] = true;
            params[i] += g->values[v].data->numel;
        }
    free(seen);
}

/* ---- trainable parameters ---- */

static bool weight_op(const char *op)
{
    static const char *ops[] = {"Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization",
                                "LayerNormalization", "InstanceNormalization", "PRelu"};
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
        if (strcmp(op, ops[i]) == 0)
            return true;
    return false;
}

bool graph_value_trainable(const Graph *g, int v)
{
    const Value *val = &g->values[v];
    if (!(val->flags & VAL_CONST) || !val->data || val->data->dtype != SH_F32)
        return false;
    bool read = false, weight = false;
    for (int i = 0; i < g->n_nodes; i++) {
        const Node *n = &g->nodes[i];
        for (int k = 0; k < n->n_in; k++) {
            if (n->in[k] != v)
                continue;
            read = true;
            if (strcmp(n->op_type, "BatchNormalization") == 0 && k >= 3)
                return false; /* running statistics are updated, not trained */
            if (n->op && (n->op->shape_inputs & (1u << k)))
                return false;
            if (weight_op(n->op_type))
                weight = true;
        }
    }
    return read && (weight || val->data->numel > 1);
}

int graph_pack_params(Graph *g)
{
    int64_t total = 0;
    for (int v = 0; v < g->n_values; v++)
        if (graph_value_trainable(g, v))
            total += (g->values[v].data->numel + 15) / 16 * 16; /* 64-byte aligned slices */
    float *block = aligned_alloc(64, (size_t)(total ? total : 16) * sizeof(float));
    if (!block)
        return sh_fail(SH_E_NOMEM, "out of memory packing %lld parameters", (long long)total);
    memset(block, 0, (size_t)(total ? total : 16) * sizeof(float));
    int64_t off = 0;
    for (int v = 0; v < g->n_values; v++) {
        if (!graph_value_trainable(g, v))
            continue;
        Tensor *t = g->values[v].data;
        memcpy(block + off, t->data, tensor_bytes(t));
        if (t->owns)
            free(t->data);
        t->data = block + off;
        t->owns = false;
        off += (t->numel + 15) / 16 * 16;
    }
    /* anything still viewing the old block (no longer trainable) gets its own copy */
    for (int v = 0; g->param_block && v < g->n_values; v++) {
        Tensor *t = g->values[v].data;
        if (!t || t->owns || (float *)t->data < g->param_block ||
            (float *)t->data >= g->param_block + g->param_len)
            continue;
        void *own = xmalloc(tensor_bytes(t) ? tensor_bytes(t) : 1);
        memcpy(own, t->data, tensor_bytes(t));
        t->data = own;
        t->owns = true;
    }
    free(g->param_block);
    g->param_block = block;
    g->param_len = total;
    return 0;
}
