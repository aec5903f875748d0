/* Load-time preparation of a graph: constant folding, dtype and shape
 * inference with a symbolic batch, and folding of shape arithmetic that
 * does not depend on the batch (the Shape/Gather/Concat chains PyTorch
 * exports). Symbolic dims are found by planning at two batch sizes. */
#include "error.h"
#include "exec.h"
#include "op.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FOLD_MAX_ELEMS 65536
#define PROBE_A 2
#define PROBE_B 3

static bool output_is_graph_output(const Graph *g, const Node *n)
{
    for (int k = 0; k < n->n_out; k++)
        if (n->out[k] >= 0 && (g->values[n->out[k]].flags & VAL_OUTPUT))
            return true;
    return false;
}

static bool inputs_all_const(const Graph *g, const Node *n)
{
    for (int k = 0; k < n->n_in; k++)
        if (n->in[k] >= 0 && !(g->values[n->in[k]].flags & VAL_CONST))
            return false;
    return true;
}

/* Replaces nodes whose inputs are all initializers by their results. */
static int fold_constant_nodes(Graph *g)
{
    bool *remove = xcalloc((size_t)g->n_nodes + 1, sizeof *remove);
    int rc = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        Node *n = &g->nodes[i];
        if ((n->op->flags & (OP_NO_FOLD | OP_SHAPE_ONLY)) || !inputs_all_const(g, n) ||
            output_is_graph_output(g, n) || n->n_out > 16)
            continue;
        Tensor *in[64], *out[16] = {0};
        if (n->n_in > 64)
            continue;
        for (int k = 0; k < n->n_in; k++)
            in[k] = n->in[k] >= 0 ? g->values[n->in[k]].data : NULL;
        if ((rc = op_run(n, g->opset, in, n->n_in, out, n->n_out)) < 0)
            break;
        for (int k = 0; k < n->n_out; k++) {
            if (n->out[k] >= 0 && out[k] && out[k]->dtype != SH_UNDEF) {
                graph_add_const(g, g->values[n->out[k]].name, out[k]);
                g->values[n->out[k]].producer = -1;
            } else
                tensor_free(out[k]);
        }
        remove[i] = true;
    }
    if (rc == 0)
        graph_remove_nodes(g, remove);
    free(remove);
    return rc;
}

static bool has_symbolic_input(const Graph *g)
{
    for (int i = 0; i < g->n_inputs; i++) {
        const Value *v = &g->values[g->inputs[i]];
        for (int k = 0; k < v->shape.rank; k++)
            if (v->shape.d[k] < 0)
                return true;
    }
    return false;
}

/* True if a graph input's data (a user-fed Reshape target, say) decides
 * shapes. */
static bool inputs_decide_shapes(const Graph *g)
{
    bool *feeding = graph_shape_feeding_values(g), any = false;
    for (int i = 0; i < g->n_inputs; i++)
        any = any || feeding[g->inputs[i]];
    free(feeding);
    return any;
}

/* A symbolic dim other than an input's first (dynamic height/width, say)
 * cannot be probed with batch sizes: a 2x2 image would not survive the
 * first pooling. Such models plan when run with real input shapes. */
static bool has_symbolic_non_batch_dim(const Graph *g)
{
    for (int i = 0; i < g->n_inputs; i++) {
        const Value *v = &g->values[g->inputs[i]];
        for (int k = 1; k < v->shape.rank; k++)
            if (v->shape.d[k] < 0)
                return true;
    }
    return false;
}

/* Plans shapes with every symbolic input dim set to b. */
static int probe(const Graph *g, int64_t b, ExecPlan **out)
{
    Shape *shapes = xcalloc((size_t)g->n_inputs + 1, sizeof *shapes);
    for (int i = 0; i < g->n_inputs; i++) {
        shapes[i] = g->values[g->inputs[i]].shape;
        for (int k = 0; k < shapes[i].rank; k++)
            if (shapes[i].d[k] < 0)
                shapes[i].d[k] = b;
    }
    ExecOptions opt = {.shapes_only = true};
    int rc = exec_plan(g, shapes, &opt, out);
    free(shapes);
    return rc;
}

static int64_t symbolic_dim(int64_t a, int64_t b)
{
    if (a == b)
        return a;
    if (a % PROBE_A == 0 && b % PROBE_B == 0 && a / PROBE_A == b / PROBE_B && a > 0)
        return -(a / PROBE_A);
    return SH_DIM_UNKNOWN;
}

static void record_shapes(Graph *g, const ExecPlan *pa, const ExecPlan *pb)
{
    for (int v = 0; v < g->n_values; v++) {
        Value *val = &g->values[v];
        const Tensor *ta = exec_value(pa, v), *tb = exec_value(pb, v);
        if (ta->dtype == SH_UNDEF || (val->flags & VAL_INPUT))
            continue;
        val->dtype = ta->dtype;
        if (ta->shape.rank != tb->shape.rank) {
            val->shape.rank = -1;
            continue;
        }
        val->shape.rank = ta->shape.rank;
        for (int k = 0; k < ta->shape.rank; k++)
            val->shape.d[k] = symbolic_dim(ta->shape.d[k], tb->shape.d[k]);
    }
}

static bool same_data(const Tensor *a, const Tensor *b)
{
    return a->dtype == b->dtype && shape_eq(&a->shape, &b->shape) &&
           memcmp(a->data, b->data, tensor_bytes(a)) == 0;
}

/* Values known at planning time with the same data at both batch sizes
 * do not depend on the batch: they become initializers. */
static int fold_known_values(Graph *g, const ExecPlan *pa, const ExecPlan *pb)
{
    bool *remove = xcalloc((size_t)g->n_nodes + 1, sizeof *remove);
    for (int i = 0; i < g->n_nodes; i++) {
        const Node *n = &g->nodes[i];
        bool all = !output_is_graph_output(g, n);
        for (int k = 0; k < n->n_out && all; k++) {
            int v = n->out[k];
            if (v < 0)
                continue;
            const Tensor *ta = exec_value(pa, v), *tb = exec_value(pb, v);
            all = exec_value_known(pa, v) && exec_value_known(pb, v) && ta->numel <= FOLD_MAX_ELEMS &&
                  same_data(ta, tb);
        }
        if (!all)
            continue;
        for (int k = 0; k < n->n_out; k++) {
            int v = n->out[k];
            if (v < 0)
                continue;
            Tensor *t = tensor_clone(exec_value(pa, v));
            if (!t) {
                free(remove);
                return SH_E_NOMEM;
            }
            graph_add_const(g, g->values[v].name, t);
        }
        remove[i] = true;
    }
    graph_remove_nodes(g, remove);
    free(remove);
    return 0;
}

/* Declared output shapes must agree with what the nodes compute. */
static int check_declared_outputs(const Graph *g, const Shape *declared)
{
    for (int k = 0; k < g->n_outputs; k++) {
        const Value *v = &g->values[g->outputs[k]];
        const Shape *d = &declared[k];
        if (d->rank < 0 || v->shape.rank < 0)
            continue;
        bool ok = d->rank == v->shape.rank;
        for (int i = 0; ok && i < d->rank; i++)
            if (d->d[i] >= 0 && v->shape.d[i] >= 0 && d->d[i] != v->shape.d[i])
                ok = false;
        if (!ok) {
            char a[160], b[160];
            return sh_fail(SH_E_SHAPE, "output '%s' is declared as %s but the graph computes %s",
                           v->name, sym_shape_str(d, a, sizeof a), sym_shape_str(&v->shape, b, sizeof b));
        }
    }
    return 0;
}

/* Fixes symbolic input dims to 1 (for models whose shape arithmetic only
 * works at batch 1). */
static void fix_batch_to_one(Graph *g)
{
    for (int i = 0; i < g->n_inputs; i++) {
        Value *v = &g->values[g->inputs[i]];
        for (int k = 0; k < v->shape.rank; k++)
            if (v->shape.d[k] < 0)
                v->shape.d[k] = 1;
    }
}

int graph_prepare(Graph *g)
{
    ExecPlan *pa = NULL, *pb = NULL;
    Shape *declared = xcalloc((size_t)g->n_outputs + 1, sizeof *declared);
    int rc;
    for (int k = 0; k < g->n_outputs; k++)
        declared[k] = g->values[g->outputs[k]].shape;
    if ((rc = fold_constant_nodes(g)) < 0)
        goto done;
    if (inputs_decide_shapes(g) || has_symbolic_non_batch_dim(g))
        goto done; /* shapes are known only when planning with real inputs */
    if (has_symbolic_input(g)) {
        rc = probe(g, PROBE_A, &pa);
        if (rc == 0)
            rc = probe(g, PROBE_B, &pb);
        if (rc < 0) { /* maybe the model only works at batch 1 */
            exec_free(pa);
            pa = NULL;
            /* If batch 1 fails too, its message is the one to show: it
             * names shapes at batch 1, not at the probe's batch 2 or 3,
             * which the user never asked for. */
            if ((rc = probe(g, 1, &pa)) < 0)
                goto done;
            exec_free(pa);
            pa = NULL;
            fix_batch_to_one(g);
        }
    }
    if (!pa) {
        if ((rc = probe(g, 1, &pa)) < 0)
            goto done;
        if ((rc = probe(g, 1, &pb)) < 0)
            goto done;
    }
    record_shapes(g, pa, pb);
    if ((rc = check_declared_outputs(g, declared)) < 0)
        goto done;
    if ((rc = fold_known_values(g, pa, pb)) < 0)
        goto done;
    graph_prune_dead(g);
done:
    exec_free(pa);
    exec_free(pb);
    free(declared);
    return rc;
}
