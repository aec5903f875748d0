#include "sparsity.h"

#include "error.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Where a weight's input axis runs: element (o, i) of an [outs, ins]
 * view sits at o * out_stride + i * in_stride (+ kernel offset k). */
typedef struct {
    int64_t outs, ins, kernel; /* kernel: taps per (o, i) for Conv */
    int64_t out_stride, in_stride, k_stride;
} WeightLayout;

static bool layout_of(const Graph *g, const Node *n, WeightLayout *l)
{
    if (n->n_in < 2 || n->in[1] < 0 || !(g->values[n->in[1]].flags & VAL_CONST))
        return false;
    const Tensor *w = g->values[n->in[1]].data;
    if (!w || w->dtype != SH_F32)
        return false;
    if (!strcmp(n->op_type, "Conv") && node_attr_int(n, "group", 1) == 1 && w->shape.rank >= 3) {
        int64_t k = w->numel / (w->shape.d[0] * w->shape.d[1]);
        *l = (WeightLayout){w->shape.d[0], w->shape.d[1], k, w->shape.d[1] * k, k, 1};
        return true;
    }
    if (w->shape.rank != 2)
        return false;
    bool rows_out = !strcmp(n->op_type, "Gemm") && node_attr_int(n, "transB", 0);
    if (strcmp(n->op_type, "Gemm") && strcmp(n->op_type, "MatMul"))
        return false;
    int64_t r = w->shape.d[0], c = w->shape.d[1];
    *l = rows_out ? (WeightLayout){r, c, 1, c, 1, 0} : (WeightLayout){c, r, 1, 1, c, 0};
    return true;
}

/* Keeps the 2 largest of every 4 along the input axis. */
static void mask_weight(float *w, uint8_t *keep, const WeightLayout *l)
{
    for (int64_t o = 0; o < l->outs; o++)
        for (int64_t k = 0; k < l->kernel; k++)
            for (int64_t i0 = 0; i0 < l->ins; i0 += 4) {
                int64_t idx[4];
                for (int j = 0; j < 4; j++)
                    idx[j] = o * l->out_stride + (i0 + j) * l->in_stride + k * l->k_stride;
                for (int a = 0; a < 4; a++) /* sort the 4 by magnitude, descending */
                    for (int b = a + 1; b < 4; b++)
                        if (fabsf(w[idx[b]]) > fabsf(w[idx[a]])) {
                            int64_t t = idx[a];
                            idx[a] = idx[b];
                            idx[b] = t;
                        }
                for (int j = 0; j < 4; j++) {
                    keep[idx[j]] = j < 2;
                    if (j >= 2)
                        w[idx[j]] = 0;
                }
            }
}

int sparsity_2_4(Graph *g, SparsityMasks *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < g->n_nodes; i++) {
        WeightLayout l;
        const Node *n = &g->nodes[i];
        if (!layout_of(g, n, &l) || l.ins % 4)
            continue;
        int v = n->in[1];
        bool seen = false;
        for (int k = 0; k < out->n; k++)
            seen = seen || out->w[k].value == v;
        if (seen)
            continue;
        Tensor *w = g->values[v].data;
        out->w = xrealloc(out->w, sizeof *out->w * (size_t)(out->n + 1));
        WeightMask *m = &out->w[out->n++];
        m->value = v;
        m->n = w->numel;
        m->keep = xcalloc((size_t)m->n + 1, 1);
        mask_weight(tensor_f32(w), m->keep, &l);
        out->total += w->numel;
        out->zeroed += w->numel / 2;
    }
    if (out->n == 0)
        return sh_fail(SH_E_STATE, "no Conv/Gemm/MatMul weight has an input axis that is a multiple of 4");
    return 0;
}

void sparsity_apply(Graph *g, const SparsityMasks *m)
{
    for (int i = 0; i < m->n; i++) {
        Tensor *w = g->values[m->w[i].value].data;
        if (!w || w->numel != m->w[i].n)
            continue; /* the weight changed shape (pruned): the mask no longer applies */
        float *d = tensor_f32(w);
        for (int64_t k = 0; k < w->numel; k++)
            d[k] = m->w[i].keep[k] ? d[k] : 0.0f;
    }
}

void sparsity_done(SparsityMasks *m)
{
    for (int i = 0; i < m->n; i++)
        free(m->w[i].keep);
    free(m->w);
    memset(m, 0, sizeof *m);
}
