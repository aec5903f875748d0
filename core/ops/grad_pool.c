/* Pooling backward: MaxPool (to the element forward picked), AveragePool,
 * LpPool and their Global forms. Windows follow forward exactly: the same
 * geometry (window_read / window_output with ceil_mode), the same taps
 * inside the input, the same counts for averages. */
#include "grad.h"

#include "../error.h"
#include "kernels_simd.h"

#include <math.h>
#include <string.h>

static int64_t prod3(const int64_t *d) { return d[0] * d[1] * d[2]; }

/* ---- window ranges --------------------------------------------------- */

/* Per axis and output position o: taps [lo, hi) land inside the input;
 * padded taps land inside [-pad, in + pad_end) (AveragePool's
 * count_include_pad counts those). */
typedef struct {
    const int64_t *lo[3], *hi[3], *padded[3];
} Ranges;

size_t pool_bwd_scratch(const PoolShape *s)
{
    return (size_t)(3 * (s->out[0] + s->out[1] + s->out[2])) * sizeof(int64_t);
}

static Ranges ranges_fill(const PoolShape *s, int64_t *mem)
{
    Ranges r;
    for (int a = 0; a < 3; a++) {
        int64_t *lo = mem, *hi = mem + s->out[a], *padded = mem + 2 * s->out[a];
        mem += 3 * s->out[a];
        r.lo[a] = lo;
        r.hi[a] = hi;
        r.padded[a] = padded;
        const int64_t d = s->dil[a], pend = s->in[a] + s->pad_end[a];
        for (int64_t o = 0; o < s->out[a]; o++) {
            const int64_t start = o * s->stride[a] - s->pad[a];
            int64_t l = 0, h = s->k[a], pl = 0, ph = s->k[a];
            /* first tap at or after position lim: ceil((lim - start) / d) */
            if (start < 0)
                l = (-start + d - 1) / d;
            if (start + (h - 1) * d >= s->in[a])
                h = start >= s->in[a] ? 0 : (s->in[a] - 1 - start) / d + 1;
            if (start < -s->pad[a])
                pl = (-s->pad[a] - start + d - 1) / d;
            if (start + (ph - 1) * d >= pend)
                ph = start >= pend ? 0 : (pend - 1 - start) / d + 1;
            lo[o] = l;
            hi[o] = h > l ? h : l;
            padded[o] = ph > pl ? ph - pl : 0;
        }
    }
    return r;
}

/* Calls BODY for every output (od, oh, ow) of every plane with: plane,
 * the output's flat index yi, its window's first input index (sd, sh, sw
 * as offsets), and the tap ranges. A macro so the per-window work inlines. */
#define FOR_EACH_WINDOW(s, r, BODY)                                                                \
    do {                                                                                           \
        int64_t yi = 0;                                                                            \
        for (int64_t plane = 0; plane < (s)->n * (s)->c; plane++)                                  \
            for (int64_t od = 0; od < (s)->out[0]; od++)                                           \
                for (int64_t oh = 0; oh < (s)->out[1]; oh++)                                       \
                    for (int64_t ow = 0; ow < (s)->out[2]; ow++, yi++) {                           \
                        const int64_t sd = od * (s)->stride[0] - (s)->pad[0];                      \
                        const int64_t sh = oh * (s)->stride[1] - (s)->pad[1];                      \
                        const int64_t sw = ow * (s)->stride[2] - (s)->pad[2];                      \
                        const int64_t lo0 = (r).lo[0][od], hi0 = (r).hi[0][od];                    \
                        const int64_t lo1 = (r).lo[1][oh], hi1 = (r).hi[1][oh];                    \
                        const int64_t lo2 = (r).lo[2][ow], hi2 = (r).hi[2][ow];                    \
                        const int64_t base = plane * prod3((s)->in);                               \
                        BODY                                                                       \
                    }                                                                              \
    } while (0)

/* Flat input index of tap (kd, kh, kw) of the window at (sd, sh, sw). */
#define TAP_INDEX(s, kd, kh, kw)                                                                   \
    (base + ((sd + (kd) * (s)->dil[0]) * (s)->in[1] + sh + (kh) * (s)->dil[1]) * (s)->in[2] + sw + \
     (kw) * (s)->dil[2])

/* The usual pool: 2-D 2x2 windows at stride 2, no padding, all inside
 * the image. */
static bool is_pool2x2(const PoolShape *s)
{
    return s->in[0] == 1 && s->out[0] == 1 && s->k[0] == 1 && s->k[1] == 2 && s->k[2] == 2 && s->stride[1] == 2 &&
           s->stride[2] == 2 && s->dil[1] == 1 && s->dil[2] == 1 && s->pad[1] == 0 && s->pad[2] == 0 &&
           2 * s->out[1] <= s->in[1] && 2 * s->out[2] <= s->in[2];
}

/* Lanes of a where mask k is set, else zero (k from a vector compare). */
#define MASKED8(k, a) ((f32x8)((i32x8)(a) & (k)))

/* 2x2 stride-2 MaxPool backward, eight windows at a time: each pair of
 * input rows splits into even and odd columns (the window's four taps
 * a b / c d), the first maximum in that order takes dy, and the four
 * masked gradients interleave back into the two rows. */
static void maxpool2x2_backward(float *dx, const float *dy, const float *x, const PoolShape *s)
{
    const int64_t IH = s->in[1], IW = s->in[2], OH = s->out[1], OW = s->out[2];
    for (int64_t plane = 0; plane < s->n * s->c; plane++)
        for (int64_t oh = 0; oh < OH; oh++) {
            const float *r0 = x + (plane * IH + 2 * oh) * IW, *r1 = r0 + IW;
            float *d0 = dx + (plane * IH + 2 * oh) * IW, *d1 = d0 + IW;
            const float *g = dy + (plane * OH + oh) * OW;
            int64_t ow = 0;
            for (; ow + 8 <= OW; ow += 8) {
                const f32x8 u0 = *(const f32x8 *)(r0 + 2 * ow), v0 = *(const f32x8 *)(r0 + 2 * ow + 8);
                const f32x8 u1 = *(const f32x8 *)(r1 + 2 * ow), v1 = *(const f32x8 *)(r1 + 2 * ow + 8);
                const f32x8 a = __builtin_shufflevector(u0, v0, 0, 2, 4, 6, 8, 10, 12, 14);
                const f32x8 b = __builtin_shufflevector(u0, v0, 1, 3, 5, 7, 9, 11, 13, 15);
                const f32x8 c = __builtin_shufflevector(u1, v1, 0, 2, 4, 6, 8, 10, 12, 14);
                const f32x8 d = __builtin_shufflevector(u1, v1, 1, 3, 5, 7, 9, 11, 13, 15);
                const i32x8 pb = b > a;
                const f32x8 m1 = (f32x8)(((i32x8)b & pb) | ((i32x8)a & ~pb));
                const i32x8 pc = c > m1;
                const f32x8 m2 = (f32x8)(((i32x8)c & pc) | ((i32x8)m1 & ~pc));
                const i32x8 pd = d > m2;
                const f32x8 gv = *(const f32x8 *)(g + ow);
                const f32x8 gd = MASKED8(pd, gv), gc = MASKED8(pc & ~pd, gv);
                const f32x8 gb = MASKED8(pb & ~pc & ~pd, gv), ga = MASKED8(~(pb | pc | pd), gv);
                *(f32x8 *)(d0 + 2 * ow) += __builtin_shufflevector(ga, gb, 0, 8, 1, 9, 2, 10, 3, 11);
                *(f32x8 *)(d0 + 2 * ow + 8) += __builtin_shufflevector(ga, gb, 4, 12, 5, 13, 6, 14, 7, 15);
                *(f32x8 *)(d1 + 2 * ow) += __builtin_shufflevector(gc, gd, 0, 8, 1, 9, 2, 10, 3, 11);
                *(f32x8 *)(d1 + 2 * ow + 8) += __builtin_shufflevector(gc, gd, 4, 12, 5, 13, 6, 14, 7, 15);
            }
            for (; ow < OW; ow++) {
                const float *w[4] = {r0 + 2 * ow, r0 + 2 * ow + 1, r1 + 2 * ow, r1 + 2 * ow + 1};
                int at = 0;
                for (int t = 1; t < 4; t++)
                    at = *w[t] > *w[at] ? t : at;
                (at < 2 ? d0 : d1)[2 * ow + (at & 1)] += g[ow];
            }
        }
}

void maxpool_backward(float *dx, const float *dy, const float *x, const PoolShape *s, void *scratch)
{
    if (is_pool2x2(s)) {
        maxpool2x2_backward(dx, dy, x, s);
        return;
    }
    const Ranges r = ranges_fill(s, scratch);
    FOR_EACH_WINDOW(s, r, {
        float best = 0.0f;
        int64_t at = -1;
        for (int64_t kd = lo0; kd < hi0; kd++)
            for (int64_t kh = lo1; kh < hi1; kh++)
                for (int64_t kw = lo2; kw < hi2; kw++) {
                    const int64_t i = TAP_INDEX(s, kd, kh, kw);
                    if (at < 0 || x[i] > best) { /* strict: the first maximum wins ties */
                        best = x[i];
                        at = i;
                    }
                }
        if (at >= 0)
            dx[at] += dy[yi];
    });
}

void avgpool_backward(float *dx, const float *dy, const PoolShape *s, int count_include_pad,
                      void *scratch)
{
    const Ranges r = ranges_fill(s, scratch);
    FOR_EACH_WINDOW(s, r, {
        const int64_t inside = (hi0 - lo0) * (hi1 - lo1) * (hi2 - lo2);
        const int64_t count = count_include_pad ? r.padded[0][od] * r.padded[1][oh] * r.padded[2][ow] : inside;
        if (inside == 0 || count == 0) /* forward wrote 0 there */
            continue;
        const float g = dy[yi] / (float)count;
        for (int64_t kd = lo0; kd < hi0; kd++)
            for (int64_t kh = lo1; kh < hi1; kh++) {
                float *row = dx + TAP_INDEX(s, kd, kh, 0);
                for (int64_t kw = lo2; kw < hi2; kw++)
                    row[kw * s->dil[2]] += g;
            }
    });
}

/* d|v|^p^(1/p)... per element: sign(v) |v|^(p-1) */
static float lp_term(float v, double p)
{
    if (p == 2.0)
        return v;
    if (p == 1.0)
        return v > 0 ? 1.0f : v < 0 ? -1.0f : 0.0f;
    if (v == 0.0f)
        return 0.0f;
    const float m = powf(fabsf(v), (float)(p - 1.0));
    return v > 0 ? m : -m;
}

/* dy/dsum-term scale: 1 / y^(p-1), 0 where y is 0 (the gradient of the
 * norm at 0 is taken as 0). */
static float lp_scale(float y, double p)
{
    if (p == 1.0)
        return 1.0f;
    if (!(y > 0.0f))
        return 0.0f;
    return p == 2.0 ? 1.0f / y : powf(y, (float)(1.0 - p));
}

void lppool_backward(float *dx, const float *dy, const float *x, const float *y, const PoolShape *s,
                     double p, void *scratch)
{
    const Ranges r = ranges_fill(s, scratch);
    FOR_EACH_WINDOW(s, r, {
        const float g = dy[yi] * lp_scale(y[yi], p);
        if (g == 0.0f)
            continue;
        for (int64_t kd = lo0; kd < hi0; kd++)
            for (int64_t kh = lo1; kh < hi1; kh++)
                for (int64_t kw = lo2; kw < hi2; kw++) {
                    const int64_t i = TAP_INDEX(s, kd, kh, kw);
                    dx[i] += g * lp_term(x[i], p);
                }
    });
}

/* ---- ops ------------------------------------------------------------- */

/* The PoolShape of a pool node from X, its attributes and the output Y
 * forward produced (the attributes were checked there). */
static int grad_pool_shape(const OpCtx *c, PoolShape *s)
{
    int rc = op_check_input(c, 0, SH_F32);
    if (rc < 0)
        return rc;
    if (c->n_out < 1 || !c->out[0])
        return op_fail(c, SH_E_STATE, "backward needs the forward output Y");
    const Shape *X = &c->in[0]->shape, *Y = &c->out[0]->shape;
    char bx[64], by[64];
    if (X->rank < 3 || X->rank > 5 || Y->rank != X->rank || Y->d[0] != X->d[0] || Y->d[1] != X->d[1])
        return op_fail(c, SH_E_SHAPE, "X %s and Y %s do not match for backward", shape_str(X, bx, sizeof bx),
                       shape_str(Y, by, sizeof by));
    const int nd = X->rank - 2;
    const int64_t *k;
    if (node_attr_ints(c->node, "kernel_shape", &k) != nd)
        return op_fail(c, SH_E_FORMAT, "attribute 'kernel_shape' must have %d values", nd);
    Window w;
    int64_t out[3];
    if ((rc = window_read(c, &w, nd, k)) < 0 ||
        (rc = window_output(c, &w, &X->d[2], node_attr_int(c->node, "ceil_mode", 0) != 0, out)) < 0)
        return rc;
    for (int i = 0; i < nd; i++)
        if (out[i] != Y->d[2 + i])
            return op_fail(c, SH_E_SHAPE, "Y %s does not have the pool's output size", shape_str(Y, by, sizeof by));
    memset(s, 0, sizeof *s);
    s->n = X->d[0];
    s->c = X->d[1];
    to_spatial3(s->in, &X->d[2], nd, 1);
    to_spatial3(s->out, out, nd, 1);
    to_spatial3(s->k, w.k, nd, 1);
    to_spatial3(s->stride, w.stride, nd, 1);
    to_spatial3(s->dil, w.dil, nd, 1);
    to_spatial3(s->pad, w.pad, nd, 0);
    to_spatial3(s->pad_end, w.pad_end, nd, 0);
    return 0;
}

size_t pool_op_bwd_scratch(const OpCtx *c)
{
    PoolShape s = {0};
    return grad_pool_shape(c, &s) < 0 ? 0 : pool_bwd_scratch(&s);
}

/* Shape and scratch checks shared by the windowed pools. */
static int pool_begin(const OpCtx *c, PoolShape *s)
{
    int rc = grad_pool_shape(c, s);
    if (rc < 0)
        return rc;
    const size_t need = pool_bwd_scratch(s);
    if (c->scratch_bytes < need || (need && !c->scratch))
        return op_fail(c, SH_E_STATE, "backward needs %zu scratch bytes but was given %zu", need,
                       c->scratch_bytes);
    return 0;
}

int maxpool_op_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    if (!gout[0] || !gin[0])
        return 0;
    PoolShape s = {0};
    int rc = pool_begin(c, &s);
    if (rc < 0)
        return rc;
    maxpool_backward(tensor_f32(gin[0]), tensor_f32(gout[0]), tensor_f32(c->in[0]), &s, c->scratch);
    return 0;
}

int avgpool_op_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    if (!gout[0] || !gin[0])
        return 0;
    PoolShape s = {0};
    int rc = pool_begin(c, &s);
    if (rc < 0)
        return rc;
    avgpool_backward(tensor_f32(gin[0]), tensor_f32(gout[0]), &s,
                     node_attr_int(c->node, "count_include_pad", 0) != 0, c->scratch);
    return 0;
}

/* LpPool's p as forward reads it (float or int attribute, default 2). */
static int read_p(const OpCtx *c, double *p)
{
    const Attr *a = node_attr(c->node, "p");
    *p = a ? (a->type == ATTR_FLOAT ? a->f : (double)a->i) : 2.0;
    if (!(*p > 0) || !isfinite(*p))
        return op_fail(c, SH_E_UNSUPPORTED, "attribute 'p' is %g; it must be positive", *p);
    return 0;
}

int lppool_op_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    if (!gout[0] || !gin[0])
        return 0;
    PoolShape s = {0};
    double p;
    int rc = pool_begin(c, &s);
    if (rc < 0 || (rc = read_p(c, &p)) < 0)
        return rc;
    lppool_backward(tensor_f32(gin[0]), tensor_f32(gout[0]), tensor_f32(c->in[0]), tensor_f32(c->out[0]), &s,
                    p, c->scratch);
    return 0;
}

/* ---- global pools ---------------------------------------------------- */

/* X [N, C, spatial...] as planes: *planes of *sp elements. */
static int global_planes(const OpCtx *c, int64_t *planes, int64_t *sp)
{
    int rc = op_check_input(c, 0, SH_F32);
    if (rc < 0)
        return rc;
    const Shape *X = &c->in[0]->shape;
    char b[64];
    if (X->rank < 2 || !c->out[0] || c->out[0]->numel != X->d[0] * X->d[1])
        return op_fail(c, SH_E_SHAPE, "X %s and Y do not match for backward", shape_str(X, b, sizeof b));
    *planes = X->d[0] * X->d[1];
    *sp = shape_prod(X, 2, X->rank);
    return 0;
}

int global_max_op_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    int64_t planes, sp;
    if (!gout[0] || !gin[0])
        return 0;
    int rc = global_planes(c, &planes, &sp);
    if (rc < 0)
        return rc;
    const float *x = tensor_f32(c->in[0]), *dy = tensor_f32(gout[0]);
    float *dx = tensor_f32(gin[0]);
    for (int64_t i = 0; i < planes; i++) {
        const float *xp = x + i * sp;
        int64_t at = 0; /* forward's choice: the first maximum */
        for (int64_t k = 1; k < sp; k++)
            at = xp[k] > xp[at] ? k : at;
        if (sp)
            dx[i * sp + at] += dy[i];
    }
    return 0;
}

int global_avg_op_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    int64_t planes, sp;
    if (!gout[0] || !gin[0])
        return 0;
    int rc = global_planes(c, &planes, &sp);
    if (rc < 0)
        return rc;
    const float *dy = tensor_f32(gout[0]);
    float *dx = tensor_f32(gin[0]);
    for (int64_t i = 0; i < planes && sp > 0; i++) {
        const float g = dy[i] / (float)sp;
        float *restrict d = dx + i * sp;
        for (int64_t k = 0; k < sp; k++)
            d[k] += g;
    }
    return 0;
}

int global_lp_op_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    int64_t planes, sp;
    double p;
    int rc;
    if (!gout[0] || !gin[0])
        return 0;
    if ((rc = global_planes(c, &planes, &sp)) < 0 || (rc = read_p(c, &p)) < 0)
        return rc;
    const float *x = tensor_f32(c->in[0]), *y = tensor_f32(c->out[0]), *dy = tensor_f32(gout[0]);
    float *dx = tensor_f32(gin[0]);
    for (int64_t i = 0; i < planes; i++) {
        const float g = dy[i] * lp_scale(y[i], p);
        if (g != 0.0f)
            for (int64_t k = 0; k < sp; k++)
                dx[i * sp + k] += g * lp_term(x[i * sp + k], p);
    }
    return 0;
}
