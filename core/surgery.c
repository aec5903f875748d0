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

int surgery_apply(const Graph *g, const DepGraph *dg, const Plan *p, Graph **out, SurgeryStats *st)
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
