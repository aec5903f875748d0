/* Pooling: MaxPool (with optional Indices), AveragePool and LpPool over 1
 * to 3 spatial dims, and their Global forms over any spatial rank. */
#include "../error.h"
#include "../depgraph.h"
#include "../op.h"
#include "grad.h"
#include "kernels.h"
#include "kernels_simd.h"

#include <float.h>
#include <math.h>
#include <string.h>

typedef enum { POOL_MAX, POOL_AVG, POOL_LP } PoolKind;

typedef struct {
    PoolShape s;
    Shape y;
    int count_include_pad, col_major;
    double p; /* LpPool exponent */
} PoolSetup;

static int64_t prod3(const int64_t *d) { return d[0] * d[1] * d[2]; }

/* Checks X (F32, or U8 when u8_ok) for [N, C, spatial...] with 1 to 3 spatial dims. */
static int check_x(const OpCtx *c, bool u8_ok, int max_spatial)
{
    int rc = op_check_input(c, 0, SH_UNDEF);
    if (rc < 0)
        return rc;
    const Tensor *X = c->in[0];
    char b[128];
    if (X->dtype != SH_F32 && !(u8_ok && X->dtype == SH_U8))
        return op_fail(c, SH_E_UNSUPPORTED, "input X is %s; expected float32%s", dtype_name(X->dtype),
                       u8_ok ? " or uint8" : "");
    if (X->shape.rank < 3 || X->shape.rank > 2 + max_spatial)
        return op_fail(c, SH_E_UNSUPPORTED, "input X has shape %s; expected [N, C, spatial...] with 1 to %d spatial dims",
                       shape_str(&X->shape, b, sizeof b), max_spatial);
    for (int i = 1; i < X->shape.rank; i++)
        if (X->shape.d[i] < 0)
            return op_fail(c, SH_E_SHAPE, "input X has shape %s; only the batch dim may be unknown",
                           shape_str(&X->shape, b, sizeof b));
    return 0;
}

static int read_p(const OpCtx *c, double *p)
{
    const Attr *a = node_attr(c->node, "p");
    *p = a ? (a->type == ATTR_FLOAT ? a->f : (double)a->i) : 2.0;
    if (!(*p > 0) || !isfinite(*p))
        return op_fail(c, SH_E_UNSUPPORTED, "attribute 'p' is %g; it must be positive", *p);
    return 0;
}

static int pool_setup(const OpCtx *c, PoolSetup *ps, PoolKind kind)
{
    int rc = check_x(c, kind == POOL_MAX, 3);
    if (rc < 0)
        return rc;
    const Shape *X = &c->in[0]->shape;
    const int nd = X->rank - 2;
    const int64_t *k;
    int nk = node_attr_ints(c->node, "kernel_shape", &k);
    if (nk < 0)
        return op_fail(c, SH_E_FORMAT, "attribute 'kernel_shape' is missing");
    if (nk != nd)
        return op_fail(c, SH_E_FORMAT, "attribute 'kernel_shape' has %d values; expected %d", nk, nd);
    Window w;
    int64_t out[3];
    if ((rc = window_read(c, &w, nd, k)) < 0 ||
        (rc = window_output(c, &w, &X->d[2], node_attr_int(c->node, "ceil_mode", 0) != 0, out)) < 0)
        return rc;
    memset(ps, 0, sizeof *ps);
    PoolShape *s = &ps->s;
    s->n = X->d[0];
    s->c = X->d[1];
    to_spatial3(s->in, &X->d[2], nd, 1);
    to_spatial3(s->out, out, nd, 1);
    to_spatial3(s->k, w.k, nd, 1);
    to_spatial3(s->stride, w.stride, nd, 1);
    to_spatial3(s->dil, w.dil, nd, 1);
    to_spatial3(s->pad, w.pad, nd, 0);
    to_spatial3(s->pad_end, w.pad_end, nd, 0);
    ps->y = *X;
    for (int i = 0; i < nd; i++)
        ps->y.d[2 + i] = out[i];
    Shape one = ps->y;
    one.d[0] = one.d[0] < 0 ? 1 : one.d[0];
    if (shape_numel(&one) < 0)
        return op_fail(c, SH_E_NOMEM, "output Y is too large");
    ps->count_include_pad = node_attr_int(c->node, "count_include_pad", 0) != 0;
    int64_t order = node_attr_int(c->node, "storage_order", 0);
    if (order != 0 && order != 1)
        return op_fail(c, SH_E_FORMAT, "attribute 'storage_order' is %lld; expected 0 or 1", (long long)order);
    ps->col_major = (int)order;
    if (kind == POOL_LP && (rc = read_p(c, &ps->p)) < 0)
        return rc;
    return 0;
}

static bool wants_output(const OpCtx *c, int i)
{
    return i < c->n_out && c->out[i] && c->node->out[i] >= 0;
}

/* ---- kernels --------------------------------------------------------- */

/* For every output position o of each axis, the kernel taps [lo, hi)
 * that land inside the input, and how many land inside the padded input. */
typedef struct {
    int64_t *lo[3], *hi[3], *padded[3];
} PoolRanges;

/* The output ranges of every axis, then one input row of accumulators. */
static size_t ranges_bytes(const PoolShape *s)
{
    return (size_t)(3 * (s->out[0] + s->out[1] + s->out[2])) * sizeof(int64_t) +
           (size_t)(s->in[2] + 8) * sizeof(float);
}

static float *acc_row(const PoolShape *s, void *scratch)
{
    return (float *)(void *)((int64_t *)scratch + 3 * (s->out[0] + s->out[1] + s->out[2]));
}

static void ranges_fill(PoolRanges *r, const PoolShape *s, int64_t *mem)
{
    for (int a = 0; a < 3; a++) {
        r->lo[a] = mem;
        r->hi[a] = mem + s->out[a];
        r->padded[a] = mem + 2 * s->out[a];
        mem += 3 * s->out[a];
        for (int64_t o = 0; o < s->out[a]; o++) {
            const int64_t start = o * s->stride[a] - s->pad[a], d = s->dil[a];
            int64_t lo = 0, hi = s->k[a], plo = 0, phi = s->k[a];
            /* first tap at or after position lim: ceil((lim - start) / d) */
            if (start < 0)
                lo = (-start + d - 1) / d;
            if (start + (hi - 1) * d >= s->in[a])
                hi = start >= s->in[a] ? 0 : (s->in[a] - 1 - start) / d + 1;
            if (start < -s->pad[a])
                plo = (-s->pad[a] - start + d - 1) / d;
            const int64_t pend = s->in[a] + s->pad_end[a];
            if (start + (phi - 1) * d >= pend)
                phi = start >= pend ? 0 : (pend - 1 - start) / d + 1;
            r->lo[a][o] = lo;
            r->hi[a][o] = hi > lo ? hi : lo;
            r->padded[a][o] = phi > plo ? phi - plo : 0;
        }
    }
}

static void maxpool_run(float *y, int64_t *indices, const float *x, const PoolShape *s,
                        const PoolRanges *r, int col_major)
{
    const int64_t in_vol = prod3(s->in), IH = s->in[1], IW = s->in[2];
    for (int64_t plane = 0; plane < s->n * s->c; plane++) {
        const float *xp = x + plane * in_vol;
        for (int64_t od = 0; od < s->out[0]; od++)
            for (int64_t oh = 0; oh < s->out[1]; oh++)
                for (int64_t ow = 0; ow < s->out[2]; ow++) {
                    const int64_t sd = od * s->stride[0] - s->pad[0], sh = oh * s->stride[1] - s->pad[1];
                    const int64_t sw = ow * s->stride[2] - s->pad[2];
                    float best = -FLT_MAX;
                    int64_t at = -1;
                    for (int64_t kd = r->lo[0][od]; kd < r->hi[0][od]; kd++)
                        for (int64_t kh = r->lo[1][oh]; kh < r->hi[1][oh]; kh++) {
                            const int64_t row = ((sd + kd * s->dil[0]) * IH + sh + kh * s->dil[1]) * IW;
                            for (int64_t kw = r->lo[2][ow]; kw < r->hi[2][ow]; kw++) {
                                const int64_t i = row + sw + kw * s->dil[2];
                                if (at < 0 || xp[i] > best) {
                                    best = xp[i];
                                    at = i;
                                }
                            }
                        }
                    *y++ = best;
                    if (!indices)
                        continue;
                    if (at >= 0 && col_major) {
                        const int64_t d = at / (IH * IW), h = at / IW % IH, w = at % IW;
                        at = d + h * s->in[0] + w * s->in[0] * IH;
                    }
                    *indices++ = at < 0 ? -1 : plane * in_vol + at;
                }
    }
}

/* acc[i] op= row[i] for a whole input row, eight wide */
static void accumulate_row(float *acc, const float *row, int64_t n, PoolKind kind, double p, bool first)
{
    int64_t i = 0;
    if (first && kind == POOL_MAX) {
        copy_f32(acc, row, n);
        return;
    }
    if (kind == POOL_MAX) {
        for (; i + 8 <= n; i += 8) {
            f32x8 v = *(const f32x8 *)(row + i), m = *(const f32x8 *)(acc + i);
            *(f32x8 *)(acc + i) = SELECT8(v > m, v, m);
        }
        for (; i < n; i++)
            acc[i] = row[i] > acc[i] ? row[i] : acc[i];
    } else if (kind == POOL_AVG) {
        for (; i + 8 <= n; i += 8)
            *(f32x8 *)(acc + i) += *(const f32x8 *)(row + i);
        for (; i < n; i++)
            acc[i] += row[i];
    } else if (p == 2.0) {
        for (; i + 8 <= n; i += 8) {
            f32x8 v = *(const f32x8 *)(row + i);
            *(f32x8 *)(acc + i) += v * v;
        }
        for (; i < n; i++)
            acc[i] += row[i] * row[i];
    } else {
        for (; i < n; i++)
            acc[i] += p == 1.0 ? fabsf(row[i]) : powf(fabsf(row[i]), (float)p);
    }
}

/* acc[i] = max(a[i], b[i]) */
static void max_of_rows(float *acc, const float *a, const float *b, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const f32x8 u = *(const f32x8 *)(a + i), v = *(const f32x8 *)(b + i);
        *(f32x8 *)(acc + i) = SELECT8(v > u, v, u);
    }
    for (; i < n; i++)
        acc[i] = b[i] > a[i] ? b[i] : a[i];
}

/* Max (without indices), average and Lp pooling, rows then columns: for
 * each output row, the window's valid input rows are reduced into one row
 * acc (eight wide, each input row read once per window row that uses it),
 * then each output reduces its valid kernel columns of acc. */
static void pool_rows(float *y, const float *x, const PoolShape *s, const PoolRanges *r,
                      PoolKind kind, int count_include_pad, double p, float *acc)
{
    const int64_t in_vol = prod3(s->in), IH = s->in[1], IW = s->in[2];
    const int64_t OW = s->out[2], sw = s->stride[2], dw = s->dil[2];
    for (int64_t plane = 0; plane < s->n * s->c; plane++) {
        const float *xp = x + plane * in_vol;
        for (int64_t od = 0; od < s->out[0]; od++)
            for (int64_t oh = 0; oh < s->out[1]; oh++, y += OW) {
                const int64_t sd = od * s->stride[0] - s->pad[0], sh = oh * s->stride[1] - s->pad[1];
                const int64_t rows = (r->hi[0][od] - r->lo[0][od]) * (r->hi[1][oh] - r->lo[1][oh]);
                if (rows == 0) { /* the window holds no input: nothing to reduce */
                    for (int64_t ow = 0; ow < OW; ow++)
                        y[ow] = kind == POOL_MAX ? -FLT_MAX : 0.0f;
                    continue;
                }
                if (kind != POOL_MAX)
                    zero_f32(acc, IW);
                const float *row0 = NULL; /* max over two rows: one pass, not a copy then a max */
                bool first = true;
                for (int64_t kd = r->lo[0][od]; kd < r->hi[0][od]; kd++)
                    for (int64_t kh = r->lo[1][oh]; kh < r->hi[1][oh]; kh++, first = false) {
                        const float *row = xp + ((sd + kd * s->dil[0]) * IH + sh + kh * s->dil[1]) * IW;
                        if (kind == POOL_MAX && rows == 2 && first)
                            row0 = row;
                        else if (row0)
                            max_of_rows(acc, row0, row, IW);
                        else
                            accumulate_row(acc, row, IW, kind, p, first);
                    }
                /* 2-wide windows at stride 2 (the usual 2x2 pool): where eight
                 * neighbouring windows lie inside the input, split acc into even
                 * and odd columns and reduce them eight outputs at a time */
                const bool pairs = kind != POOL_LP && sw == 2 && s->k[2] == 2 && dw == 1;
                const float inv_full = 1.0f / (float)(count_include_pad ? r->padded[0][od] * r->padded[1][oh] * 2 : rows * 2);
                for (int64_t ow = 0; ow < OW; ow++) {
                    /* the tail: the last eight outputs as one vector overlapping
                     * the ones already written, when all eight windows lie inside */
                    if (pairs && ow + 8 > OW && ow > OW - 8 && OW >= 8 && r->lo[2][OW - 8] == 0 &&
                        r->hi[2][OW - 1] == 2)
                        ow = OW - 8;
                    if (pairs && ow + 8 <= OW && r->lo[2][ow] == 0 && r->hi[2][ow + 7] == 2) {
                        const float *a = acc + 2 * ow - s->pad[2];
                        const f32x8 lo8 = *(const f32x8 *)a, hi8 = *(const f32x8 *)(a + 8);
                        const f32x8 ev = __builtin_shufflevector(lo8, hi8, 0, 2, 4, 6, 8, 10, 12, 14);
                        const f32x8 od8 = __builtin_shufflevector(lo8, hi8, 1, 3, 5, 7, 9, 11, 13, 15);
                        if (kind == POOL_MAX)
                            *(f32x8 *)(y + ow) = SELECT8(od8 > ev, od8, ev);
                        else
                            *(f32x8 *)(y + ow) = (ev + od8) * F32X8_SPLAT(inv_full);
                        ow += 7;
                        continue;
                    }
                    const int64_t lo = r->lo[2][ow], hi = r->hi[2][ow];
                    const float *a = acc + ow * sw - s->pad[2];
                    if (kind == POOL_MAX) {
                        float m = lo < hi ? a[lo * dw] : -FLT_MAX;
                        for (int64_t kw = lo + 1; kw < hi; kw++)
                            m = a[kw * dw] > m ? a[kw * dw] : m;
                        y[ow] = m;
                        continue;
                    }
                    float sum = 0.0f;
                    for (int64_t kw = lo; kw < hi; kw++)
                        sum += a[kw * dw];
                    if (kind == POOL_AVG) {
                        int64_t n = count_include_pad
                                        ? r->padded[0][od] * r->padded[1][oh] * r->padded[2][ow]
                                        : rows * (hi - lo);
                        y[ow] = n ? sum / (float)n : 0.0f;
                    } else {
                        y[ow] = p == 2.0 ? sqrtf(sum) : p == 1.0 ? sum : powf(sum, (float)(1.0 / p));
                    }
                }
            }
    }
}

/* ---- ops ------------------------------------------------------------- */

static int maxpool_infer(OpCtx *c)
{
    PoolSetup ps;
    int rc = pool_setup(c, &ps, POOL_MAX);
    if (rc < 0)
        return rc;
    op_set_out(c, 0, c->in[0]->dtype, &ps.y);
    if (wants_output(c, 1))
        op_set_out(c, 1, SH_I64, &ps.y);
    return 0;
}

static size_t maxpool_scratch(const OpCtx *c)
{
    PoolSetup ps;
    if (pool_setup(c, &ps, POOL_MAX) < 0 || ps.s.n < 0)
        return 0;
    size_t b = ranges_bytes(&ps.s);
    if (c->in[0]->dtype == SH_U8) /* runs the float kernel on a float copy */
        b += (size_t)(ps.s.n * ps.s.c * (prod3(ps.s.in) + prod3(ps.s.out))) * sizeof(float);
    return b;
}

static int check_scratch(const OpCtx *c, size_t need)
{
    if (c->scratch_bytes < need || (need && !c->scratch))
        return op_fail(c, SH_E_STATE, "needs %zu scratch bytes but was given %zu", need, c->scratch_bytes);
    return 0;
}

static int maxpool_run_op(OpCtx *c)
{
    PoolSetup ps;
    int rc = pool_setup(c, &ps, POOL_MAX);
    if (rc < 0 || (rc = check_scratch(c, maxpool_scratch(c))) < 0)
        return rc;
    PoolRanges r;
    int64_t *mem = c->scratch;
    ranges_fill(&r, &ps.s, mem);
    int64_t *indices = wants_output(c, 1) && c->out[1]->data ? tensor_i64(c->out[1]) : NULL;
    if (c->in[0]->dtype == SH_F32) {
        if (indices)
            maxpool_run(tensor_f32(c->out[0]), indices, tensor_f32(c->in[0]), &ps.s, &r, ps.col_major);
        else
            pool_rows(tensor_f32(c->out[0]), tensor_f32(c->in[0]), &ps.s, &r, POOL_MAX, 0, 0, acc_row(&ps.s, mem));
        return 0;
    }
    float *xf = (float *)(void *)((char *)c->scratch + ranges_bytes(&ps.s));
    float *yf = xf + c->in[0]->numel;
    const uint8_t *xu = tensor_u8(c->in[0]);
    uint8_t *yu = tensor_u8(c->out[0]);
    for (int64_t i = 0; i < c->in[0]->numel; i++)
        xf[i] = xu[i];
    if (indices)
        maxpool_run(yf, indices, xf, &ps.s, &r, ps.col_major);
    else
        pool_rows(yf, xf, &ps.s, &r, POOL_MAX, 0, 0, acc_row(&ps.s, mem));
    for (int64_t i = 0; i < c->out[0]->numel; i++) /* a window of padding only: the type's minimum */
        yu[i] = yf[i] < 0 ? 0 : (uint8_t)yf[i];
    return 0;
}

static int avgpool_infer(OpCtx *c)
{
    PoolSetup ps;
    int rc = pool_setup(c, &ps, POOL_AVG);
    if (rc == 0)
        op_set_out(c, 0, SH_F32, &ps.y);
    return rc;
}

static int lppool_infer(OpCtx *c)
{
    PoolSetup ps;
    int rc = pool_setup(c, &ps, POOL_LP);
    if (rc == 0)
        op_set_out(c, 0, SH_F32, &ps.y);
    return rc;
}

static size_t sumpool_scratch(const OpCtx *c)
{
    PoolSetup ps;
    return pool_setup(c, &ps, POOL_AVG) < 0 ? 0 : ranges_bytes(&ps.s);
}

static int sumpool_run_op(OpCtx *c, PoolKind kind)
{
    PoolSetup ps;
    int rc = pool_setup(c, &ps, kind);
    if (rc < 0 || (rc = check_scratch(c, ranges_bytes(&ps.s))) < 0)
        return rc;
    PoolRanges r;
    ranges_fill(&r, &ps.s, c->scratch);
    pool_rows(tensor_f32(c->out[0]), tensor_f32(c->in[0]), &ps.s, &r, kind, ps.count_include_pad, ps.p,
              acc_row(&ps.s, c->scratch));
    return 0;
}

static int avgpool_run_op(OpCtx *c) { return sumpool_run_op(c, POOL_AVG); }
static int lppool_run_op(OpCtx *c) { return sumpool_run_op(c, POOL_LP); }

/* ---- global pools: reduce every spatial dim of each (n, c) plane ------ */

static int global_infer(OpCtx *c)
{
    int rc = op_check_input(c, 0, SH_F32);
    if (rc < 0)
        return rc;
    Shape y = c->in[0]->shape;
    char b[128];
    if (y.rank < 2)
        return op_fail(c, SH_E_SHAPE, "input X has shape %s; expected [N, C, spatial...]",
                       shape_str(&y, b, sizeof b));
    for (int i = 1; i < y.rank; i++)
        if (y.d[i] < 0)
            return op_fail(c, SH_E_SHAPE, "input X has shape %s; only the batch dim may be unknown",
                           shape_str(&y, b, sizeof b));
    for (int i = 2; i < y.rank; i++)
        y.d[i] = 1;
    if (strcmp(c->node->op_type, "GlobalLpPool") == 0) {
        double p;
        if ((rc = read_p(c, &p)) < 0)
            return rc;
    }
    op_set_out(c, 0, SH_F32, &y);
    return 0;
}

static int global_run(OpCtx *c, PoolKind kind)
{
    const Tensor *X = c->in[0];
    const int64_t planes = X->shape.d[0] * X->shape.d[1], sp = shape_prod(&X->shape, 2, X->shape.rank);
    const float *x = tensor_f32(X);
    float *y = tensor_f32(c->out[0]);
    double p = 2.0;
    if (kind == POOL_LP)
        read_p(c, &p);
    for (int64_t i = 0; i < planes; i++) {
        const float *xp = x + i * sp;
        if (kind == POOL_MAX) {
            float m = sp ? xp[0] : -FLT_MAX;
            for (int64_t k = 1; k < sp; k++)
                m = xp[k] > m ? xp[k] : m;
            y[i] = m;
        } else if (kind == POOL_AVG) {
            /* eight float partial sums per block of 4096, added up in double */
            double acc = 0.0;
            for (int64_t k0 = 0; k0 < sp; k0 += 4096) {
                const int64_t end = sp - k0 < 4096 ? sp : k0 + 4096;
                f32x8 part = {0};
                int64_t k = k0;
                for (; k + 8 <= end; k += 8)
                    part += *(const f32x8 *)(xp + k);
                for (int l = 0; l < 8; l++)
                    acc += part[l];
                for (; k < end; k++)
                    acc += xp[k];
            }
            y[i] = sp ? (float)(acc / (double)sp) : 0.0f;
        } else {
            double acc = 0.0;
            for (int64_t k = 0; k < sp; k++)
                acc += pow(fabs((double)xp[k]), p);
            y[i] = (float)pow(acc, 1.0 / p);
        }
    }
    return 0;
}

static int global_max_run(OpCtx *c) { return global_run(c, POOL_MAX); }
static int global_avg_run(OpCtx *c) { return global_run(c, POOL_AVG); }
static int global_lp_run(OpCtx *c) { return global_run(c, POOL_LP); }

/* ---- channel coupling ---- */

/* Pools keep batch and channel axes; spatial axes carry no channels. */
static int pool_couple(CouplingCtx *cc)
{
    const Shape *s = cc_in_shape(cc, 0);
    for (int o = 0; o < cc_node(cc)->n_out; o++)
        for (int a = 0; a < 2 && a < s->rank; a++)
            cc_same(cc, 0, a, o, a);
    for (int a = 2; a < s->rank; a++)
        cc_consume(cc, 0, a);
    return 0;
}

const OpDef sh_ops_pool[] = {
    {.name = "MaxPool", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 2, .infer = maxpool_infer,
     .forward = maxpool_run_op, .scratch = maxpool_scratch,
     .backward = maxpool_op_backward, .bwd_scratch = pool_op_bwd_scratch,
     .coupling = pool_couple},
    {.name = "AveragePool", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
     .infer = avgpool_infer, .forward = avgpool_run_op, .scratch = sumpool_scratch,
     .backward = avgpool_op_backward, .bwd_scratch = pool_op_bwd_scratch,
     .coupling = pool_couple},
    {.name = "LpPool", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = lppool_infer,
     .forward = lppool_run_op, .scratch = sumpool_scratch,
     .backward = lppool_op_backward, .bwd_scratch = pool_op_bwd_scratch,
     .coupling = pool_couple},
    {.name = "GlobalMaxPool", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
     .infer = global_infer, .forward = global_max_run, .backward = global_max_op_backward,
     .coupling = pool_couple},
    {.name = "GlobalAveragePool", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
     .infer = global_infer, .forward = global_avg_run, .backward = global_avg_op_backward,
     .coupling = pool_couple},
    {.name = "GlobalLpPool", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
     .infer = global_infer, .forward = global_lp_run, .backward = global_lp_op_backward,
     .coupling = pool_couple},
    {.name = NULL},
};
