/* Conv and ConvTranspose with 1 to 3 spatial dims: attribute and shape
 * checks here, kernels in kernels_conv.c. */
#include "conv.h"

#include "../error.h"
#include "../depgraph.h"
#include "../op.h"
#include "grad.h"
#include "kernels.h"
#include "kernels_simd.h"
#include "../threads.h"

#include <cblas.h>
#include <stdio.h>
#include <string.h>

/* What both ops read from a node: the normalized shape and the output. */
typedef struct {
    ConvShape s;
    Window w;
    Shape y;
} ConvSetup;

static const char *shape_text(const Shape *s, char *buf, size_t n) { return shape_str(s, buf, n); }

/* Checks X, W and B; nd, group and the kernel from W. transpose selects
 * ConvTranspose's weight layout [C, Cout/group, k...]. */
static int conv_common(const OpCtx *c, ConvSetup *cs, bool transpose, int *nd_out)
{
    int rc;
    if ((rc = op_check_input(c, 0, SH_F32)) < 0 || (rc = op_check_input(c, 1, SH_F32)) < 0)
        return rc;
    const Shape *X = &c->in[0]->shape, *W = &c->in[1]->shape;
    char bx[128], bw[128];
    if (X->rank < 3 || X->rank > 5)
        return op_fail(c, SH_E_UNSUPPORTED,
                       "input X has shape %s; expected [N, C, spatial...] with 1 to 3 spatial dims",
                       shape_text(X, bx, sizeof bx));
    if (W->rank != X->rank)
        return op_fail(c, SH_E_SHAPE, "weight W has shape %s, which does not match X %s in rank",
                       shape_text(W, bw, sizeof bw), shape_text(X, bx, sizeof bx));
    for (int i = 1; i < X->rank; i++)
        if (X->d[i] < 0)
            return op_fail(c, SH_E_SHAPE, "input X has shape %s; only the batch dim may be unknown",
                           shape_text(X, bx, sizeof bx));
    for (int i = 0; i < W->rank; i++)
        if (W->d[i] < 0)
            return op_fail(c, SH_E_SHAPE, "weight W has unknown shape %s", shape_text(W, bw, sizeof bw));
    const int nd = X->rank - 2;
    const int64_t group = node_attr_int(c->node, "group", 1);
    if (group < 1)
        return op_fail(c, SH_E_FORMAT, "attribute 'group' is %lld; it must be >= 1", (long long)group);
    ConvShape *s = &cs->s;
    memset(s, 0, sizeof *s);
    s->n = X->d[0];
    s->cin = X->d[1];
    s->group = group;
    if (s->cin % group != 0)
        return op_fail(c, SH_E_SHAPE, "X has %lld channels, which group %lld does not divide",
                       (long long)s->cin, (long long)group);
    if (!transpose) {
        int64_t expect;
        if (!sh_mul_ok(W->d[1], group, &expect))
            return op_fail(c, SH_E_NOMEM, "input channel count overflows");
        if (expect != s->cin)
            return op_fail(c, SH_E_SHAPE,
                           "X %s has %lld channels but W %s expects %lld (W dim 1 = %lld times group %lld)",
                           shape_text(X, bx, sizeof bx), (long long)s->cin, shape_text(W, bw, sizeof bw),
                           (long long)expect, (long long)W->d[1], (long long)group);
        s->cout = W->d[0];
        if (s->cout % group != 0)
            return op_fail(c, SH_E_SHAPE, "W %s has %lld output channels, which group %lld does not divide",
                           shape_text(W, bw, sizeof bw), (long long)s->cout, (long long)group);
    } else {
        if (W->d[0] != s->cin)
            return op_fail(c, SH_E_SHAPE, "X %s has %lld channels but W %s expects %lld (W dim 0)",
                           shape_text(X, bx, sizeof bx), (long long)s->cin, shape_text(W, bw, sizeof bw),
                           (long long)W->d[0]);
        if (!sh_mul_ok(W->d[1], group, &s->cout))
            return op_fail(c, SH_E_NOMEM, "output channel count overflows");
    }
    const int64_t *kattr;
    int nk = node_attr_ints(c->node, "kernel_shape", &kattr);
    if (nk >= 0) {
        if (nk != nd)
            return op_fail(c, SH_E_FORMAT, "attribute 'kernel_shape' has %d values; expected %d", nk, nd);
        for (int i = 0; i < nd; i++)
            if (kattr[i] != W->d[2 + i])
                return op_fail(c, SH_E_SHAPE, "attribute 'kernel_shape' does not match W %s",
                               shape_text(W, bw, sizeof bw));
    }
    if ((rc = window_read(c, &cs->w, nd, &W->d[2])) < 0)
        return rc;
    if (c->n_in > 2 && c->in[2]) {
        const Tensor *B = c->in[2];
        if ((rc = op_check_input(c, 2, SH_F32)) < 0)
            return rc;
        if (B->shape.rank != 1 || B->shape.d[0] != s->cout)
            return op_fail(c, SH_E_SHAPE, "bias B has shape %s; expected [%lld]",
                           shape_text(&B->shape, bx, sizeof bx), (long long)s->cout);
    }
    to_spatial3(s->in, &X->d[2], nd, 1);
    to_spatial3(s->k, &W->d[2], nd, 1);
    to_spatial3(s->stride, cs->w.stride, nd, 1);
    to_spatial3(s->dil, cs->w.dil, nd, 1);
    *nd_out = nd;
    return 0;
}

/* Sets Y's shape; fails if its size overflows (an unknown batch counts as 1). */
static int set_y_shape(const OpCtx *c, ConvSetup *cs, int nd, const int64_t *out)
{
    cs->y.rank = nd + 2;
    cs->y.d[0] = cs->s.n;
    cs->y.d[1] = cs->s.cout;
    for (int i = 0; i < nd; i++)
        cs->y.d[2 + i] = out[i];
    Shape one = cs->y;
    one.d[0] = one.d[0] < 0 ? 1 : one.d[0];
    if (shape_numel(&one) < 0)
        return op_fail(c, SH_E_NOMEM, "output Y is too large");
    return 0;
}

static int conv_setup(const OpCtx *c, ConvSetup *cs)
{
    int nd, rc;
    int64_t out[3];
    if ((rc = conv_common(c, cs, false, &nd)) < 0)
        return rc;
    if ((rc = window_output(c, &cs->w, &c->in[0]->shape.d[2], false, out)) < 0)
        return rc;
    to_spatial3(cs->s.out, out, nd, 1);
    to_spatial3(cs->s.pad, cs->w.pad, nd, 0);
    if ((rc = set_y_shape(c, cs, nd, out)) < 0)
        return rc;
    if (!conv_fits_blas(&cs->s))
        return op_fail(c, SH_E_UNSUPPORTED, "a GEMM of this convolution exceeds BLAS's int sizes");
    return 0;
}

static int conv_infer(OpCtx *c)
{
    ConvSetup cs;
    int rc = conv_setup(c, &cs);
    if (rc < 0)
        return rc;
    op_set_out(c, 0, SH_F32, &cs.y);
    return 0;
}

/* ---- batch split ---- */

/* OpenBLAS leaves the small GEMMs of a chunked convolution on one thread,
 * so with T threads the batch is cut into T parts of ceil(N/T) images,
 * each convolved on its own thread with a single-threaded plan. */
#define SPLIT_MIN_MACS_PER_PART (1 << 20) /* below this, thread start-up costs more than it saves */

static ConvShape part_shape(const ConvShape *s, int parts)
{
    ConvShape p = *s;
    p.n = (s->n + parts - 1) / parts;
    return p;
}

static size_t images_scratch(const ConvShape *s, int pool);

static size_t part_scratch(const ConvShape *s, int parts, int pool)
{
    ConvShape p = part_shape(s, parts);
    return (images_scratch(&p, pool) + 63) / 64 * 64;
}

/* Parts the batch splits into with the current thread count (1: none). */
static int conv_parts(const ConvShape *s)
{
    int t = sh_get_threads();
    if (t > CONV_PLAN_MAX_THREADS)
        t = CONV_PLAN_MAX_THREADS;
    if (t < 2 || sh_in_parallel() || s->n < t)
        return 1;
    ConvShape p = part_shape(s, t);
    int64_t per_part = p.n * s->cout * p.out[0] * p.out[1] * p.out[2] * (s->cin / s->group) * s->k[0] * s->k[1] * s->k[2];
    return per_part >= SPLIT_MIN_MACS_PER_PART ? t : 1;
}

typedef struct {
    const ConvShape *s;
    float *y;
    const float *x, *w, *b;
    int relu, pool, parts;
    char *scratch;
    size_t stride;
} ConvSplit;

static void conv_images(float *y, const float *x, const float *w, const float *b, const ConvShape *s,
                        int relu, int pool, int threads, float *scratch);

static int conv_part(int i, void *ctx)
{
    const ConvSplit *cs = ctx;
    ConvShape p = part_shape(cs->s, cs->parts);
    const int64_t start = i * p.n, in_img = cs->s->cin * cs->s->in[0] * cs->s->in[1] * cs->s->in[2],
                  out_img = cs->pool ? cs->s->cout * (cs->s->out[1] / 2) * (cs->s->out[2] / 2)
                                     : cs->s->cout * cs->s->out[0] * cs->s->out[1] * cs->s->out[2];
    if (start >= cs->s->n)
        return 0;
    if (start + p.n > cs->s->n)
        p.n = cs->s->n - start;
    conv_images(cs->y + start * out_img, cs->x + start * in_img, cs->w, cs->b, &p, cs->relu, cs->pool, 1,
                (float *)(void *)(cs->scratch + (size_t)i * cs->stride));
    return 0;
}

/* ---- fused 2x2 max pooling ----
 * Conv (-> Relu) -> MaxPool 2x2 stride 2: the conv runs a few images at a
 * time into scratch small enough to stay in cache, and only the pooled
 * values go out to memory (the full-size output never does). */

#define POOL_GROUP_BYTES (256 * 1024)

static size_t align64_bytes(size_t n) { return (n + 63) / 64 * 64; }

static int64_t out_floats_per_image(const ConvShape *s) { return s->cout * s->out[0] * s->out[1] * s->out[2]; }

/* Images per group: their full-size output fits POOL_GROUP_BYTES. */
static int64_t pool_group(const ConvShape *s)
{
    int64_t per = out_floats_per_image(s) * (int64_t)sizeof(float);
    int64_t g = per > 0 ? POOL_GROUP_BYTES / per : 1;
    g = g > s->n ? s->n : g;
    return g < 1 ? 1 : g;
}

/* The group's full-size output, then the conv's own scratch. */
static size_t pooled_scratch(const ConvShape *s)
{
    ConvShape g = *s;
    g.n = pool_group(s);
    return align64_bytes((size_t)(g.n * out_floats_per_image(s)) * sizeof(float)) + conv_scratch_bound(&g);
}

/* y[plane][H/2][W/2] = max of each 2x2 block of x[plane][H][W]. */
static void maxpool2x2(float *restrict y, const float *restrict x, int64_t planes, int64_t H, int64_t W)
{
    const int64_t OH = H / 2, OW = W / 2;
    for (int64_t pl = 0; pl < planes; pl++, x += H * W)
        for (int64_t oh = 0; oh < OH; oh++, y += OW) {
            const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
            int64_t ow = 0;
            for (; 2 * ow + 16 <= W; ow += 8) {
                const f32x8 a0 = *(const f32x8 *)(r0 + 2 * ow), a1 = *(const f32x8 *)(r0 + 2 * ow + 8);
                const f32x8 b0 = *(const f32x8 *)(r1 + 2 * ow), b1 = *(const f32x8 *)(r1 + 2 * ow + 8);
                const f32x8 lo = SELECT8(a0 > b0, a0, b0), hi = SELECT8(a1 > b1, a1, b1);
                const f32x8 ev = __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14);
                const f32x8 od = __builtin_shufflevector(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15);
                *(f32x8 *)(y + ow) = SELECT8(od > ev, od, ev);
            }
            for (; ow < OW; ow++) {
                float m = r0[2 * ow];
                m = r0[2 * ow + 1] > m ? r0[2 * ow + 1] : m;
                m = r1[2 * ow] > m ? r1[2 * ow] : m;
                y[ow] = r1[2 * ow + 1] > m ? r1[2 * ow + 1] : m;
            }
        }
}

/* Convolves s->n images into y, pooled when pool is set, with BLAS on
 * threads threads. scratch: conv_scratch_bound (unpooled) or
 * pooled_scratch bytes. */
static void conv_images(float *y, const float *x, const float *w, const float *b, const ConvShape *s,
                        int relu, int pool, int threads, float *scratch)
{
    if (!pool) {
        ConvPlan p = conv_plan(s, threads);
        conv_forward(y, x, w, b, s, &p, relu, scratch);
        return;
    }
    const int64_t G = pool_group(s), in_img = s->cin * s->in[0] * s->in[1] * s->in[2];
    const int64_t out_img = out_floats_per_image(s), pooled_img = s->cout * (s->out[1] / 2) * (s->out[2] / 2);
    float *full = scratch;
    float *conv_scratch_mem = scratch + align64_bytes((size_t)(G * out_img) * sizeof(float)) / sizeof(float);
    ConvAlgo last = CONV_DIRECT;
    for (int64_t n0 = 0; n0 < s->n; n0 += G) {
        ConvShape g = *s;
        g.n = s->n - n0 < G ? s->n - n0 : G;
        ConvPlan p = conv_plan(&g, threads);
        p.weights_ready = n0 > 0 && p.algo == last; /* rearranged once per run, not per group */
        last = p.algo;
        conv_forward(full, x + n0 * in_img, w, b, &g, &p, relu, conv_scratch_mem);
        maxpool2x2(y + n0 * pooled_img, full, g.n * s->cout, s->out[1], s->out[2]);
    }
}

static size_t images_scratch(const ConvShape *s, int pool)
{
    return pool ? pooled_scratch(s) : conv_scratch_bound(s);
}

static size_t conv_scratch(const OpCtx *c)
{
    ConvSetup cs;
    if (conv_setup(c, &cs) < 0 || cs.s.n < 0)
        return 0;
    const ConvFusion *fusion = c->fused;
    const int pool = fusion ? fusion->pool : 0;
    size_t most = images_scratch(&cs.s, pool);
    for (int t = 2; t <= CONV_PLAN_MAX_THREADS; t++) { /* the thread count may change before the run */
        size_t b = (size_t)t * part_scratch(&cs.s, t, pool);
        most = b > most ? b : most;
    }
    return most;
}

static int conv_run(OpCtx *c)
{
    ConvSetup cs;
    int rc = conv_setup(c, &cs);
    if (rc < 0)
        return rc;
    const ConvFusion *fusion = c->fused;
    const int relu = fusion ? fusion->relu : 0, pool = fusion ? fusion->pool : 0;
    const Tensor *B = c->n_in > 2 ? c->in[2] : NULL;
    const int parts = conv_parts(&cs.s);
    const size_t stride = parts > 1 ? part_scratch(&cs.s, parts, pool) : 0;
    if (parts > 1 && c->scratch_bytes >= (size_t)parts * stride) {
        ConvSplit sp = {&cs.s, tensor_f32(c->out[0]), tensor_f32(c->in[0]), tensor_f32(c->in[1]),
                        B ? tensor_f32(B) : NULL, relu, pool, parts, c->scratch, stride};
        if (sh_run_parallel(parts, conv_part, &sp) < 0)
            return op_fail(c, SH_E_NOMEM, "could not start the convolution's threads");
        return 0;
    }
    /* the BLAS thread count can change between planning and running;
     * the scratch bound covered every count */
    size_t need = images_scratch(&cs.s, pool);
    if (c->scratch_bytes < need || (need && !c->scratch))
        return op_fail(c, SH_E_STATE, "needs %zu scratch bytes but was given %zu", need, c->scratch_bytes);
    conv_images(tensor_f32(c->out[0]), tensor_f32(c->in[0]), tensor_f32(c->in[1]), B ? tensor_f32(B) : NULL,
                &cs.s, relu, pool, openblas_get_num_threads(), c->scratch);
    return 0;
}

/* numel(Y) * (weights per output element): N*Cout*prod(out) * Cin/group*prod(k),
 * or for ConvTranspose numel(X) * Cout/group*prod(k); -1 if unknown. */
static int64_t macs_of(const Tensor *per_position, const Shape *W)
{
    int64_t m = per_position->numel, per = 1;
    if (m < 0)
        return -1;
    for (int i = 1; i < W->rank; i++)
        if (!sh_mul_ok(per, W->d[i], &per))
            return -1;
    return sh_mul_ok(m, per, &m) ? m : -1;
}

static int64_t conv_macs(const OpCtx *c) { return macs_of(c->out[0], &c->in[1]->shape); }

/* ---- ConvTranspose --------------------------------------------------- */

/* Splits total padding between begin and end per the spec's output_shape
 * rule: SAME_UPPER puts the odd one at the end, otherwise at the begin.
 * total < 0 (output_shape beyond the full output) extends the end: the
 * halving floors, as in the spec's reference. */
static void split_padding(int64_t total, AutoPad ap, int64_t *begin, int64_t *end)
{
    int64_t half = total >= 0 ? total / 2 : -((-total + 1) / 2);
    *begin = ap == PAD_SAME_UPPER ? half : total - half;
    *end = total - *begin;
}

static int convt_setup(const OpCtx *c, ConvSetup *cs)
{
    int nd, rc;
    if ((rc = conv_common(c, cs, true, &nd)) < 0)
        return rc;
    Window *w = &cs->w;
    const int64_t *in = &c->in[0]->shape.d[2];
    int64_t opad[3] = {0, 0, 0}, out[3], pads[3];
    const int64_t *v;
    int n = node_attr_ints(c->node, "output_padding", &v);
    if (n >= 0) {
        if (n != nd)
            return op_fail(c, SH_E_FORMAT, "attribute 'output_padding' has %d values; expected %d", n, nd);
        for (int i = 0; i < nd; i++) {
            if (v[i] < 0)
                return op_fail(c, SH_E_FORMAT, "attribute 'output_padding' has a negative value");
            opad[i] = v[i];
        }
    }
    const int64_t *oshape = NULL;
    n = node_attr_ints(c->node, "output_shape", &oshape);
    if (n >= 0) {
        if (n == nd + 2) /* some exporters give [N, C, spatial...] */
            oshape += 2;
        else if (n != nd)
            return op_fail(c, SH_E_FORMAT, "attribute 'output_shape' has %d values; expected %d", n, nd);
    }
    for (int i = 0; i < nd; i++) {
        /* full = stride*(in-1) + output_padding + (k-1)*dil + 1 */
        int64_t full, ek;
        if (in[i] < 1)
            return op_fail(c, SH_E_SHAPE, "spatial axis %d of X is empty", i);
        if (!sh_mul_ok(w->stride[i], in[i] - 1, &full) || !sh_add_ok(full, opad[i], &full) ||
            !sh_mul_ok(w->k[i] - 1, w->dil[i], &ek) || !sh_add_ok(full, ek + 1, &full))
            return op_fail(c, SH_E_NOMEM, "output size overflows on spatial axis %d", i);
        if (oshape) {
            if (oshape[i] < 1)
                return op_fail(c, SH_E_FORMAT, "attribute 'output_shape' has a non-positive size");
            out[i] = oshape[i];
            split_padding(full - out[i], w->auto_pad, &pads[i], &w->pad_end[i]);
        } else if (w->auto_pad == PAD_SAME_UPPER || w->auto_pad == PAD_SAME_LOWER) {
            if (!sh_mul_ok(in[i], w->stride[i], &out[i]))
                return op_fail(c, SH_E_NOMEM, "output size overflows on spatial axis %d", i);
            split_padding(full - out[i], w->auto_pad, &pads[i], &w->pad_end[i]);
        } else {
            pads[i] = w->pad[i];
            out[i] = full - w->pad[i] - w->pad_end[i];
        }
        if (out[i] < 1)
            return op_fail(c, SH_E_SHAPE, "pads leave no output on spatial axis %d", i);
        w->pad[i] = pads[i];
    }
    to_spatial3(cs->s.out, out, nd, 1);
    to_spatial3(cs->s.pad, w->pad, nd, 0);
    if ((rc = set_y_shape(c, cs, nd, out)) < 0)
        return rc;
    if (!conv_transpose_fits_blas(&cs->s))
        return op_fail(c, SH_E_UNSUPPORTED, "a GEMM of this convolution exceeds BLAS's int sizes");
    return 0;
}

static int convt_infer(OpCtx *c)
{
    ConvSetup cs;
    int rc = convt_setup(c, &cs);
    if (rc < 0)
        return rc;
    op_set_out(c, 0, SH_F32, &cs.y);
    return 0;
}

static size_t convt_scratch(const OpCtx *c)
{
    ConvSetup cs;
    return convt_setup(c, &cs) < 0 ? 0 : conv_transpose_scratch(&cs.s);
}

static int convt_run(OpCtx *c)
{
    ConvSetup cs;
    int rc = convt_setup(c, &cs);
    if (rc < 0)
        return rc;
    size_t need = conv_transpose_scratch(&cs.s);
    if (c->scratch_bytes < need || (need && !c->scratch))
        return op_fail(c, SH_E_STATE, "needs %zu scratch bytes but was given %zu", need,
                       c->scratch_bytes);
    const Tensor *B = c->n_in > 2 ? c->in[2] : NULL;
    conv_transpose_forward(tensor_f32(c->out[0]), tensor_f32(c->in[0]), tensor_f32(c->in[1]),
                           B ? tensor_f32(B) : NULL, &cs.s, c->scratch);
    return 0;
}

static int64_t convt_macs(const OpCtx *c) { return macs_of(c->in[0], &c->in[1]->shape); }

/* ---- channel coupling ---- */

/* A Conv produces its output channels (W axis 0, bias); its input channels
 * are W axis 1. A grouped conv makes every group one unit: its input and
 * output channels go together, so groups are removed whole. */
static int conv_couple(CouplingCtx *cc)
{
    const Shape *w = cc_in_shape(cc, 1);
    int64_t group = node_attr_int(cc_node(cc), "group", 1);
    cc_produce(cc, 0, 1);
    cc_same(cc, 1, 0, 0, 1);
    if (cc_has_input(cc, 2))
        cc_same(cc, 2, 0, 0, 1);
    if (group == 1)
        cc_join(cc, 0, 1, 1, 1);
    else
        cc_group_units(cc, 0, 1, 0, 1, group);
    for (int a = 1; a < w->rank; a++)
        cc_consume(cc, 1, a);
    return 0;
}

/* ConvTranspose: W is [Cin, Cout/group, k...]. */
static int convt_couple(CouplingCtx *cc)
{
    const Shape *w = cc_in_shape(cc, 1);
    int64_t group = node_attr_int(cc_node(cc), "group", 1);
    cc_produce(cc, 0, 1);
    if (group == 1) {
        cc_same(cc, 1, 1, 0, 1);
        cc_join(cc, 0, 1, 1, 0);
    } else
        cc_group_units(cc, 0, 1, 0, 1, group);
    if (cc_has_input(cc, 2))
        cc_same(cc, 2, 0, 0, 1);
    for (int a = 0; a < w->rank; a++)
        cc_consume(cc, 1, a);
    return 0;
}

const OpDef sh_ops_conv[] = {
    {.name = "Conv", .min_in = 2, .max_in = 3, .min_out = 1, .max_out = 1, .infer = conv_infer,
     .forward = conv_run, .macs = conv_macs, .scratch = conv_scratch, .backward = conv_op_backward,
     .bwd_scratch = conv_op_bwd_scratch, .grad_assign = 1u,
     .coupling = conv_couple},
    {.name = "ConvTranspose", .min_in = 2, .max_in = 3, .min_out = 1, .max_out = 1,
     .infer = convt_infer, .forward = convt_run, .macs = convt_macs, .scratch = convt_scratch,
     .backward = conv_transpose_op_backward, .bwd_scratch = conv_transpose_op_bwd_scratch,
     .coupling = convt_couple},
    {.name = NULL},
};
