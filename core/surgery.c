#include "surgery.h"

#include "error.h"
#include "exec.h"
#include "op.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- cuts ---- */

static Cut *cut_for(CutList *l, const GroupMember *m)
{
    for (int i = 0; i < l->n; i++)
        if (l->cuts[i].value == m->value && l->cuts[i].axis == m->axis)
            return &l->cuts[i];
    l->cuts = xrealloc(l->cuts, sizeof *l->cuts * (size_t)(l->n + 1));
    Cut *c = &l->cuts[l->n++];
    *c = (Cut){.value = m->value, .axis = m->axis, .size = m->size, .param = m->param, .bypass = -1};
    c->mask = xcalloc((size_t)m->size + 1, sizeof *c->mask);
    return c;
}

/* A removed block's residual Adds, and their branch outputs (zeroed whole
 * in verification). */
static void add_block_cuts(const Graph *g, const PlanEntry *e, const Group *grp, CutList *out)
{
    if (!grp || grp->kind != GROUP_BLOCK)
        return;
    for (int u = 0; u < grp->n_units; u++) {
        if (!e->marked[u])
            continue;
        for (int64_t k = grp->block_start[u]; k < grp->block_start[u + 1]; k++) {
            int add = grp->block_adds[k], skip = residual_skip_input(g, add);
            if (skip < 0)
                continue;
            out->cuts = xrealloc(out->cuts, sizeof *out->cuts * (size_t)(out->n + 1));
            out->cuts[out->n++] = (Cut){.value = g->nodes[add].in[1 - skip], .axis = -1, .bypass = add};
        }
    }
}

int plan_cuts(const Graph *g, const Plan *p, const DepGraph *dg, CutList *out)
{
    memset(out, 0, sizeof *out);
    int rc = plan_check(p, dg);
    if (rc < 0)
        return rc;
    for (int i = 0; i < p->n; i++) {
        const PlanEntry *e = &p->entries[i];
        const Group *grp = depgraph_find(dg, e->group);
        if (!grp)
            continue;
        for (int m = 0; m < grp->n_members; m++) {
            const GroupMember *gm = &grp->members[m];
            Cut *c = NULL;
            for (int u = 0; u < grp->n_units; u++) {
                if (!e->marked[u])
                    continue;
                if (!c)
                    c = cut_for(out, gm);
                for (int64_t k = gm->start[u]; k < gm->start[u + 1]; k++)
                    c->mask[gm->idx[k]] = true;
            }
        }
    }
    for (int i = 0; i < p->n; i++) /* removed blocks: their branch's output goes */
        add_block_cuts(g, &p->entries[i], depgraph_find(dg, p->entries[i].group), out);
    for (int i = 0; i < out->n; i++) {
        Cut *c = &out->cuts[i];
        if (c->axis < 0)
            continue;
        c->removed = 0;
        for (int64_t k = 0; k < c->size; k++)
            c->removed += c->mask[k];
    }
    return 0;
}

void cut_list_done(CutList *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->cuts[i].mask);
    free(l->cuts);
    memset(l, 0, sizeof *l);
}

/* ---- slicing ---- */

/* A copy of t without the masked indices along axis. */
static Tensor *slice_tensor(const Tensor *t, int axis, const bool *mask, int64_t removed)
{
    Shape s = t->shape;
    int64_t size = s.d[axis], outer = shape_prod(&s, 0, axis);
    int64_t inner = shape_prod(&s, axis + 1, s.rank) * (int64_t)dtype_size(t->dtype);
    s.d[axis] = size - removed;
    Tensor *r = tensor_new(t->dtype, &s);
    if (!r)
        return NULL;
    const char *src = t->data;
    char *dst = r->data;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < size; i++) {
            if (!mask[i]) {
                memcpy(dst, src + (o * size + i) * inner, (size_t)inner);
                dst += inner;
            }
        }
    return r;
}

/* ---- shape constants ---- */

/* Makes input `slot` of node a private copy of its constant if others
 * read it too, so that editing it changes only this node. */
static int private_const(Graph *g, int node, int slot)
{
    int v = g->nodes[node].in[slot];
    if (graph_use_count(g, v) <= 1)
        return v;
    Tensor *t = tensor_clone(g->values[v].data);
    if (!t)
        return -1;
    char base[300];
    snprintf(base, sizeof base, "%.250s_pruned", g->values[v].name);
    int nv = graph_new_value(g, base);
    graph_add_const(g, g->values[nv].name, t);
    g->nodes[node].in[slot] = nv;
    return nv;
}

/* Sets element k of the shape given to input `slot` of node to dim; the
 * shape is a constant, or a Concat of pieces of which the one holding
 * element k is a constant (PyTorch's [batch, dims...] targets). */
static int set_shape_element(Graph *g, int node, int slot, int64_t k, int64_t dim)
{
    int v = g->nodes[node].in[slot];
    Value *val = &g->values[v];
    if ((val->flags & VAL_CONST) && val->data && val->data->dtype == SH_I64 && k < val->data->numel) {
        int64_t old = tensor_i64(val->data)[k];
        if (old == 0 || old == -1) /* copied or inferred: follows by itself */
            return 0;
        if ((v = private_const(g, node, slot)) < 0)
            return SH_E_NOMEM;
        tensor_i64(g->values[v].data)[k] = dim;
        return 0;
    }
    int p = val->producer;
    if (p >= 0 && strcmp(g->nodes[p].op_type, "Concat") == 0) {
        int64_t off = 0;
        for (int i = 0; i < g->nodes[p].n_in; i++) {
            int piece = g->nodes[p].in[i];
            int64_t len = piece >= 0 && g->values[piece].shape.rank == 1 ? g->values[piece].shape.d[0] : -1;
            if (len < 0)
                break;
            if (k < off + len)
                return set_shape_element(g, p, i, k - off, dim);
            off += len;
        }
    }
    return sh_fail(SH_E_UNSUPPORTED, "node '%s' (%s): its shape input '%s' is computed; shears cannot resize it",
                   g->nodes[node].name, g->nodes[node].op_type, val->name);
}

/* Split sizes (attribute before opset 13, input after) for output k. */
static int set_split_size(Graph *g, int node, int k, int64_t dim)
{
    Node *n = &g->nodes[node];
    if (n->n_in > 1 && n->in[1] >= 0)
        return set_shape_element(g, node, 1, k, dim);
    const Attr *a = node_attr(n, "split");
    if (a && a->type == ATTR_INTS && k < a->n)
        ((Attr *)a)->ints[k] = dim;
    return 0; /* equal split: follows the input */
}

/* Updates what describes an activation's size: shape inputs of the node
 * producing it, a grouped conv's group count. */
static int fix_producer(Graph *g, const Cut *c)
{
    int node = g->values[c->value].producer;
    if (node < 0 || !c->removed)
        return 0;
    Node *n = &g->nodes[node];
    int64_t dim = c->size - c->removed;
    const char *op = n->op_type;
    if (!strcmp(op, "Reshape") || !strcmp(op, "Expand"))
        return set_shape_element(g, node, 1, c->axis, dim);
    if (!strcmp(op, "Split")) {
        for (int k = 0; k < n->n_out; k++)
            if (n->out[k] == c->value)
                return set_split_size(g, node, k, dim);
        return 0;
    }
    if ((!strcmp(op, "Conv") || !strcmp(op, "ConvTranspose")) && c->axis == 1) {
        int64_t group = node_attr_int(n, "group", 1);
        if (group > 1) {
            if ((group * dim) % c->size)
                return sh_fail(SH_E_STATE, "node '%s': removing %lld of %lld channels breaks its %lld groups",
                               n->name, (long long)c->removed, (long long)c->size, (long long)group);
            node_set_int(n, "group", group * dim / c->size);
        }
        return 0;
    }
    if (!strcmp(op, "Slice") || !strcmp(op, "Tile") || !strcmp(op, "ConstantOfShape"))
        return sh_fail(SH_E_UNSUPPORTED, "node '%s' (%s) produces pruned channels; shears cannot resize it",
                       n->name, op);
    return 0;
}

/* The residual Add becomes Identity(skip): the block is gone and its
 * branch, now unread, is dropped with the dead nodes. */
static void bypass_add(Graph *g, int add, int branch)
{
    Node *n = &g->nodes[add];
    int skip = n->in[0] == branch ? n->in[1] : n->in[0];
    free(n->op_type);
    n->op_type = xstrdup("Identity");
    n->op = op_find("Identity");
    n->in[0] = skip;
    n->n_in = 1;
}

static int cut_params(Graph *g, const CutList *cuts)
{
    for (int i = 0; i < cuts->n; i++) {
        const Cut *c = &cuts->cuts[i];
        if (!c->param || !c->removed)
            continue;
        Value *v = &g->values[c->value];
        Tensor *t = slice_tensor(v->data, c->axis, c->mask, c->removed);
        if (!t)
            return SH_E_NOMEM;
        tensor_free(v->data);
        v->data = t;
        v->shape = t->shape;
    }
    return 0;
}

/* ---- bias compensation ---- */

/* How a node consumes a cut weight: the activation it multiplies (and its
 * channel axis) and its output channel axis. */
typedef struct {
    int node, act, act_axis, out_axis;
} Consumer;

static bool consumer_of(const Graph *g, const Cut *c, int node, Consumer *out)
{
    const Node *n = &g->nodes[node];
    if (n->n_in < 2 || n->in[1] != c->value || !c->param || n->in[0] < 0)
        return false;
    int rank = g->values[n->in[0]].shape.rank;
    *out = (Consumer){.node = node, .act = n->in[0]};
    if (!strcmp(n->op_type, "Conv") && node_attr_int(n, "group", 1) == 1 && c->axis == 1) {
        out->act_axis = out->out_axis = 1;
        return true;
    }
    if (!strcmp(n->op_type, "Gemm") && !node_attr_int(n, "transA", 0) &&
        c->axis == (node_attr_int(n, "transB", 0) ? 1 : 0)) {
        out->act_axis = out->out_axis = 1;
        return true;
    }
    if (!strcmp(n->op_type, "MatMul") && c->axis == 0 && g->values[c->value].data->shape.rank == 2 && rank >= 2) {
        out->act_axis = rank - 1;
        out->out_axis = g->values[n->out[0]].shape.rank - 1;
        return true;
    }
    return false;
}

static ChannelMean *mean_of(ChannelMeans *m, int value, int axis)
{
    for (int i = 0; i < m->n; i++)
        if (m->m[i].value == value && m->m[i].axis == axis)
            return &m->m[i];
    return NULL;
}

/* Adds one batch's channel means of out's value to cm. */
static void add_batch_means(ChannelMean *cm, const Tensor *out)
{
    int64_t outer = shape_prod(&out->shape, 0, cm->axis);
    int64_t inner = shape_prod(&out->shape, cm->axis + 1, out->shape.rank);
    double scale = 1.0 / (double)(outer * inner);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t c = 0; c < cm->size; c++) {
            const float *x = tensor_f32(out) + (o * cm->size + c) * inner;
            double sum = 0;
            for (int64_t j = 0; j < inner; j++)
                sum += x[j];
            cm->mean[c] += sum * scale;
        }
}

static void accumulate_means(void *ctx, const Node *n, Tensor **out, int n_out)
{
    ChannelMeans *m = ctx;
    for (int k = 0; k < n_out; k++)
        for (int i = 0; i < m->n; i++) {
            ChannelMean *cm = &m->m[i];
            if (cm->value == n->out[k] && out[k]->data && out[k]->dtype == SH_F32 &&
                out[k]->shape.d[cm->axis] == cm->size)
                add_batch_means(cm, out[k]);
        }
}

int channel_means(const Graph *g, const CutList *cuts, Tensor **batches, int n_batches, ChannelMeans *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < cuts->n; i++)
        for (int node = 0; node < g->n_nodes; node++) {
            Consumer c;
            if (!consumer_of(g, &cuts->cuts[i], node, &c) || mean_of(out, c.act, c.act_axis))
                continue;
            out->m = xrealloc(out->m, sizeof *out->m * (size_t)(out->n + 1));
            int64_t size = g->values[c.act].shape.d[c.act_axis];
            out->m[out->n++] = (ChannelMean){.value = c.act, .axis = c.act_axis, .size = size,
                                             .mean = xcalloc((size_t)size + 1, sizeof(double))};
        }
    if (!out->n || n_batches < 1)
        return 0;
    ExecOptions opt = {.no_fusion = true, .after_node = accumulate_means, .hook_ctx = out};
    ExecPlan *plan = NULL;
    int rc = 0;
    for (int b = 0; b < n_batches && rc == 0; b++) {
        Shape s[16];
        for (int i = 0; i < g->n_inputs && i < 16; i++)
            s[i] = batches[b * g->n_inputs + i]->shape;
        if (!plan && (rc = exec_plan(g, s, &opt, &plan)) < 0)
            break;
        rc = exec_run(plan, &batches[b * g->n_inputs]);
    }
    exec_free(plan);
    for (int i = 0; i < out->n; i++)
        for (int64_t c = 0; c < out->m[i].size; c++)
            out->m[i].mean[c] /= n_batches;
    return rc;
}

void channel_means_done(ChannelMeans *m)
{
    for (int i = 0; i < m->n; i++)
        free(m->m[i].mean);
    free(m->m);
    memset(m, 0, sizeof *m);
}

/* comp[j] = sum over removed input channels c of mean_c * (the weights
 * from c to output j, summed over the kernel). */
static double *compensation(const Graph *g, const Consumer *c, const Cut *cut, const ChannelMean *cm,
                            int64_t *n_out)
{
    const Node *n = &g->nodes[c->node];
    const Tensor *w = g->values[cut->value].data;
    int64_t outs, ins = cut->size, per = 1;
    bool rows_out; /* W's rows are outputs (Conv, Gemm transB) */
    if (!strcmp(n->op_type, "Conv")) {
        outs = w->shape.d[0];
        per = w->numel / (outs * ins);
        rows_out = true;
    } else if (!strcmp(n->op_type, "Gemm") && node_attr_int(n, "transB", 0)) {
        outs = w->shape.d[0];
        rows_out = true;
    } else {
        outs = w->shape.d[1];
        rows_out = false;
    }
    double *comp = xcalloc((size_t)outs + 1, sizeof *comp);
    const float *wd = tensor_f32(w);
    for (int64_t ch = 0; ch < ins; ch++) {
        if (!cut->mask[ch] || cm->mean[ch] == 0)
            continue;
        for (int64_t o = 0; o < outs; o++) {
            double sum = 0;
            for (int64_t k = 0; k < per; k++)
                sum += rows_out ? wd[(o * ins + ch) * per + k] : wd[ch * outs + o];
            comp[o] += cm->mean[ch] * sum;
        }
    }
    *n_out = outs;
    return comp;
}

/* The bias a consumer's output gets: its own (Conv B, Gemm C) or the
 * constant of the Add that follows a MatMul; created for Conv/Gemm. */
static int bias_value(Graph *c, int node, int64_t size, bool *created)
{
    Node *n = &c->nodes[node];
    *created = false;
    if (!strcmp(n->op_type, "MatMul")) {
        int out = n->out[0];
        for (int i = 0; i < c->n_nodes; i++) {
            const Node *a = &c->nodes[i];
            if (strcmp(a->op_type, "Add") || a->n_in != 2 || graph_use_count(c, out) != 1)
                continue;
            int other = a->in[0] == out ? a->in[1] : a->in[1] == out ? a->in[0] : -1;
            if (other >= 0 && (c->values[other].flags & VAL_CONST) && c->values[other].data->numel == size)
                return other;
        }
        return -1;
    }
    int slot = 2;
    if (n->n_in > slot && n->in[slot] >= 0) {
        const Tensor *b = c->values[n->in[slot]].data;
        return b && b->dtype == SH_F32 && b->numel == size ? n->in[slot] : -1;
    }
    if (!strcmp(n->op_type, "Gemm") && node_attr_float(n, "beta", 1.0f) != 1.0f)
        return -1;
    Shape s = shape_of(1, size);
    char name[300];
    snprintf(name, sizeof name, "%.250s.compensation", n->name);
    int v = graph_new_value(c, name);
    graph_add_const(c, c->values[v].name, tensor_new(SH_F32, &s));
    n->in = xrealloc(n->in, sizeof(int) * 3);
    n->in[2] = v;
    n->n_in = 3;
    *created = true;
    return v;
}

/* Folds every removed channel's mean contribution into its consumers'
 * biases (on the copy c, from the unsliced weights of g). */
static int compensate(const Graph *g, Graph *c, const CutList *cuts, ChannelMeans *means)
{
    means->consumers = 0;
    for (int i = 0; i < cuts->n; i++) {
        const Cut *cut = &cuts->cuts[i];
        for (int node = 0; cut->param && cut->removed && node < g->n_nodes; node++) {
            Consumer con;
            ChannelMean *cm;
            if (!consumer_of(g, cut, node, &con) || !(cm = mean_of(means, con.act, con.act_axis)))
                continue;
            int64_t outs;
            double *comp = compensation(g, &con, cut, cm, &outs);
            bool created;
            int b = bias_value(c, node, outs, &created);
            if (b >= 0) {
                float *bd = tensor_f32(c->values[b].data);
                for (int64_t o = 0; o < outs; o++)
                    bd[o] += (float)comp[o];
                means->consumers++;
                for (int k = 0; created && k < cuts->n; k++) { /* a new bias follows its output's cut */
                    const Cut *oc = &cuts->cuts[k];
                    if (oc->value == c->nodes[node].out[0] && oc->axis == con.out_axis && oc->removed) {
                        Tensor *t = slice_tensor(c->values[b].data, 0, oc->mask, oc->removed);
                        tensor_free(c->values[b].data);
                        c->values[b].data = t;
                    }
                }
            }
            free(comp);
        }
    }
    return 0;
}

int surgery_apply(const Graph *g, const DepGraph *dg, const Plan *p, Graph **out, SurgeryStats *st)
{
    return surgery_apply_compensated(g, dg, p, NULL, out, st);
}

int surgery_apply_compensated(const Graph *g, const DepGraph *dg, const Plan *p, ChannelMeans *comp,
                              Graph **out, SurgeryStats *st)
{
    CutList cuts;
    Graph *c = NULL;
    *out = NULL;
    memset(st, 0, sizeof *st);
    int rc = plan_cuts(g, p, dg, &cuts);
    if (rc < 0)
        return rc;
    if (!(c = graph_clone(g))) {
        rc = sh_fail(SH_E_NOMEM, "out of memory copying the model");
        goto done;
    }
    if (comp && (rc = compensate(g, c, &cuts, comp)) < 0)
        goto done;
    if ((rc = cut_params(c, &cuts)) < 0)
        goto done;
    for (int i = 0; i < cuts.n && rc == 0; i++)
        if (!cuts.cuts[i].param && cuts.cuts[i].axis >= 0)
            rc = fix_producer(c, &cuts.cuts[i]);
    for (int i = 0; i < cuts.n && rc == 0; i++)
        if (cuts.cuts[i].bypass >= 0)
            bypass_add(c, cuts.cuts[i].bypass, cuts.cuts[i].value);
    if (rc < 0)
        goto done;
    graph_prune_dead(c);
    if ((rc = graph_prepare(c)) < 0) {
        rc = sh_fail_prefix(rc, "after pruning");
        goto done;
    }
    st->params_before = graph_param_count(g);
    st->params_after = graph_param_count(c);
    graph_macs(g, NULL, &st->macs_before);
    graph_macs(c, NULL, &st->macs_after);
    for (int i = 0; i < p->n; i++) {
        int n = 0;
        for (int u = 0; u < p->entries[i].n_units; u++)
            n += p->entries[i].marked[u];
        st->units += n;
        st->groups += n > 0;
    }
done:
    cut_list_done(&cuts);
    if (rc < 0) {
        graph_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* ---- verification ---- */

static void zero_along(Tensor *t, int axis, const bool *mask)
{
    if (!t->data || t->dtype != SH_F32 || axis >= t->shape.rank)
        return;
    int64_t size = t->shape.d[axis], outer = shape_prod(&t->shape, 0, axis);
    int64_t inner = shape_prod(&t->shape, axis + 1, t->shape.rank);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < size; i++)
            if (mask[i])
                memset(tensor_f32(t) + (o * size + i) * inner, 0, sizeof(float) * (size_t)inner);
}

static void zero_cut_channels(void *ctx, const Node *n, Tensor **out, int n_out)
{
    const CutList *cuts = ctx;
    for (int k = 0; k < n_out; k++)
        for (int i = 0; i < cuts->n; i++)
            if (cuts->cuts[i].axis < 0 && cuts->cuts[i].value == n->out[k] && out[k]->data)
                memset(out[k]->data, 0, tensor_bytes(out[k]));
    for (int k = 0; k < n_out; k++)
        for (int i = 0; i < cuts->n; i++)
            if (!cuts->cuts[i].param && cuts->cuts[i].axis >= 0 && cuts->cuts[i].value == n->out[k] &&
                out[k]->shape.rank > cuts->cuts[i].axis &&
                out[k]->shape.d[cuts->cuts[i].axis] == cuts->cuts[i].size)
                zero_along(out[k], cuts->cuts[i].axis, cuts->cuts[i].mask);
}

int surgery_verify(const Graph *original, const Graph *pruned, const CutList *cuts, Tensor *const *probe,
                   double *max_diff)
{
    Shape shapes[16];
    if (original->n_inputs > 16)
        return sh_fail(SH_E_UNSUPPORTED, "too many inputs to verify");
    for (int i = 0; i < original->n_inputs; i++)
        shapes[i] = probe[i]->shape;
    ExecOptions zo = {.no_fusion = true, .after_node = zero_cut_channels, .hook_ctx = (void *)cuts};
    ExecPlan *a = NULL, *b = NULL;
    int rc = exec_plan(original, shapes, &zo, &a);
    if (rc == 0)
        rc = exec_plan(pruned, shapes, NULL, &b);
    if (rc == 0)
        rc = exec_run(a, probe);
    if (rc == 0)
        rc = exec_run(b, probe);
    *max_diff = 0;
    for (int k = 0; rc == 0 && k < original->n_outputs; k++) {
        const Tensor *x = exec_output(a, k), *y = exec_output(b, k);
        if (!shape_eq(&x->shape, &y->shape)) {
            rc = sh_fail(SH_E_SHAPE, "verify: output %d changed shape", k);
            break;
        }
        for (int64_t i = 0; i < x->numel; i++) {
            double d = fabs(tensor_get_f(x, i) - tensor_get_f(y, i));
            if (!(d <= *max_diff))
                *max_diff = isnan(d) ? INFINITY : d;
        }
    }
    exec_free(a);
    exec_free(b);
    return rc;
}
