/* Whether a graph computes every sample of a batch on its own, so an
 * inference plan may run the batch as parts on separate threads (each
 * part a whole forward pass at a smaller batch). The proof is from the
 * symbolic shapes graph_prepare infers: every computed value keeps the
 * batch N as its first dimension, and no op works along that dimension.
 * Anything unproven keeps the plan whole. */
#include "exec_split.h"

#include <stdio.h>
#include <string.h>

static bool first_dim_is_batch(const Value *v)
{
    return v->shape.rank >= 1 && v->shape.d[0] == -1;
}

static int rank_of(const Graph *g, const Node *n)
{
    return n->n_in > 0 && n->in[0] >= 0 ? g->values[n->in[0]].shape.rank : -1;
}

/* The axis attribute of n, normalized by the rank of its first input;
 * ops whose axis defaults to 0 count as 0 without one; -1 for none. */
static int64_t node_axis(const Graph *g, const Node *n)
{
    static const char *const axis0_default[] = {"Gather", "GatherElements", "Split", "ArgMax", "ArgMin",
                                                "Concat", "Compress", NULL};
    const Attr *a = node_attr(n, "axis");
    int64_t axis = -1;
    if (a && a->type == ATTR_INT)
        axis = a->i < 0 ? a->i + rank_of(g, n) : a->i;
    for (int k = 0; !a && axis0_default[k]; k++)
        if (!strcmp(n->op_type, axis0_default[k]))
            axis = 0;
    return axis;
}

/* Ops whose result mixes samples even with N kept first: an axis of 0
 * (Softmax, LayerNormalization, Gather on the data, ...), axes naming 0,
 * a Transpose that moves N, BatchNormalization in training. */
static bool works_along_batch(const Graph *g, const Node *n, const bool *known)
{
    if (node_axis(g, n) == 0 && n->n_in > 0 && n->in[0] >= 0 && !known[n->in[0]])
        return true;
    const int64_t *axes;
    int count = node_attr_ints(n, "axes", &axes);
    for (int k = 0; k < count; k++)
        if (axes[k] == 0 || axes[k] + rank_of(g, n) == 0)
            return true;
    if (!strcmp(n->op_type, "Transpose")) {
        const int64_t *perm;
        return node_attr_ints(n, "perm", &perm) < 1 || perm[0] != 0;
    }
    if (!strcmp(n->op_type, "CumSum") || !strcmp(n->op_type, "NonZero"))
        return true;
    return !strcmp(n->op_type, "BatchNormalization") && node_attr_int(n, "training_mode", 0) != 0;
}

bool graph_batch_separable(const Graph *g, const bool *known, char *why, size_t why_size)
{
    for (int i = 0; i < g->n_inputs; i++)
        if (!known[g->inputs[i]] && !first_dim_is_batch(&g->values[g->inputs[i]])) {
            snprintf(why, why_size, "input '%s' has no batch dimension first", g->values[g->inputs[i]].name);
            return false;
        }
    for (int i = 0; i < g->n_outputs; i++)
        if (known[g->outputs[i]] || !first_dim_is_batch(&g->values[g->outputs[i]])) {
            snprintf(why, why_size, "output '%s' has no batch dimension first", g->values[g->outputs[i]].name);
            return false;
        }
    for (int i = 0; i < g->n_nodes; i++) {
        const Node *n = &g->nodes[i];
        bool computed = false;
        for (int k = 0; k < n->n_out; k++) {
            if (n->out[k] < 0 || known[n->out[k]])
                continue;
            computed = true;
            if (!first_dim_is_batch(&g->values[n->out[k]])) {
                snprintf(why, why_size, "node '%s' (%s) does not keep the batch first", n->name, n->op_type);
                return false;
            }
        }
        for (int k = 0; computed && k < n->n_in; k++)
            if (n->in[k] >= 0 && !known[n->in[k]] && !first_dim_is_batch(&g->values[n->in[k]])) {
                snprintf(why, why_size, "node '%s' (%s) reads a value without the batch first", n->name,
                         n->op_type);
                return false;
            }
        if (computed && works_along_batch(g, n, known)) {
            snprintf(why, why_size, "node '%s' (%s) works along the batch", n->name, n->op_type);
            return false;
        }
    }
    return true;
}
