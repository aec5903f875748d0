/* Softmax, LogSoftmax and Hardmax.
 *
 * Every variant normalizes x viewed as [outer, n, inner] along n:
 * opset >= 13 uses the single `axis` (default -1), so n = d[axis] and inner
 * is the product of the dims after it; opsets before 13 coerce the input to
 * 2-D at `axis` (default 1), so n is the whole trailing block and inner = 1.
 * Softmax subtracts the max before exp so large inputs do not overflow. */
#include "../error.h"
#include "../depgraph.h"
#include "../op.h"
#include "kernels_simd.h"

#include <math.h>

typedef struct {
    int64_t outer, n, inner;
} SoftmaxShape;

static int softmax_shape(const OpCtx *c, SoftmaxShape *s)
{
    const Shape *x = &c->in[0]->shape;
    int64_t axis_attr = node_attr_int(c->node, "axis", c->opset >= 13 ? -1 : 1);
    int64_t axis = axis_attr < 0 ? axis_attr + x->rank : axis_attr;
    /* Opsets before 13 also allow axis == rank (an empty trailing block). */
    if (axis < 0 || axis > x->rank || (axis == x->rank && c->opset >= 13))
        return op_fail(c, SH_E_ARG, "axis %lld is out of range for rank %d",
                       (long long)axis_attr, x->rank);
    s->outer = shape_prod(x, 0, (int)axis);
    if (c->opset >= 13) {
        s->n = x->d[axis];
        s->inner = shape_prod(x, (int)axis + 1, x->rank);
    } else {
        s->n = shape_prod(x, (int)axis, x->rank);
        s->inner = 1;
    }
    return 0;
}

static int softmax_infer(OpCtx *c)
{
    int rc = op_check_input(c, 0, SH_F32);
    if (rc < 0)
        return rc;
    if (c->in[0]->shape.rank < 1 && c->opset >= 13)
        return op_fail(c, SH_E_SHAPE, "input must have rank at least 1");
    SoftmaxShape s = {0};
    if ((rc = softmax_shape(c, &s)) < 0)
        return rc;
    op_set_out(c, 0, SH_F32, &c->in[0]->shape);
    return 0;
}

typedef enum { SOFTMAX, LOG_SOFTMAX } SoftmaxKind;

/* Sum of e^(x[i] - m) over a row, eight wide; y (may be x, or NULL)
 * receives the terms. */
static double exp_shifted_sum(float *y, const float *x, int64_t n, float m)
{
    const f32x8 m8 = F32X8_SPLAT(m);
    f32x8 s8 = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        f32x8 e = exp_f32x8(*(const f32x8 *)(x + i) - m8);
        if (y)
            *(f32x8 *)(y + i) = e;
        s8 += e;
    }
    double sum = 0;
    for (int k = 0; k < 8; k++)
        sum += s8[k];
    for (; i < n; i++) {
        float e = expf(x[i] - m);
        if (y)
            y[i] = e;
        sum += e;
    }
    return sum;
}

/* One contiguous row of n: y = softmax(x) or log-softmax(x). */
static void softmax_row(float *y, const float *x, int64_t n, SoftmaxKind kind)
{
    if (n <= 0) /* an empty axis */
        return;
    const float m = max_f32(x, n);
    if (kind == SOFTMAX) {
        const float inv = (float)(1.0 / exp_shifted_sum(y, x, n, m));
        for (int64_t i = 0; i < n; i++)
            y[i] *= inv;
    } else {
        /* (x - max) - log(sum): folding max into the shift first would
         * round it at the scale of max. */
        const float lse = (float)log(exp_shifted_sum(NULL, x, n, m));
        for (int64_t i = 0; i < n; i++)
            y[i] = (x[i] - m) - lse;
    }
}

/* A [n, inner] block normalized along n, vectorized across inner.
 * acc holds 2*inner floats of scratch (max, then sum). */
static void softmax_cols(float *y, const float *x, int64_t n, int64_t inner, SoftmaxKind kind,
                         float *acc)
{
    float *m = acc, *sum = acc + inner;
    for (int64_t j = 0; j < inner; j++) {
        m[j] = -INFINITY;
        sum[j] = 0;
    }
    for (int64_t k = 0; k < n; k++)
        for (int64_t j = 0; j < inner; j++)
            m[j] = x[k * inner + j] > m[j] ? x[k * inner + j] : m[j];
    if (kind == SOFTMAX) {
        for (int64_t k = 0; k < n; k++)
            for (int64_t j = 0; j < inner; j++) {
                y[k * inner + j] = expf(x[k * inner + j] - m[j]);
                sum[j] += y[k * inner + j];
            }
        for (int64_t j = 0; j < inner; j++)
            sum[j] = 1.0f / sum[j];
        for (int64_t k = 0; k < n; k++)
            for (int64_t j = 0; j < inner; j++)
                y[k * inner + j] *= sum[j];
    } else {
        for (int64_t k = 0; k < n; k++)
            for (int64_t j = 0; j < inner; j++)
                sum[j] += expf(x[k * inner + j] - m[j]);
        for (int64_t j = 0; j < inner; j++)
            sum[j] = logf(sum[j]);
        for (int64_t k = 0; k < n; k++)
            for (int64_t j = 0; j < inner; j++)
                y[k * inner + j] = (x[k * inner + j] - m[j]) - sum[j];
    }
}

static size_t softmax_scratch(const OpCtx *c)
{
    SoftmaxShape s = {0};
    if (softmax_shape(c, &s) < 0 || s.inner == 1)
        return 0;
    return (size_t)s.inner * 2 * sizeof(float);
}

static int softmax_run(OpCtx *c, SoftmaxKind kind)
{
    SoftmaxShape s = {0};
    int rc = softmax_shape(c, &s);
    if (rc < 0)
        return rc;
    const float *x = tensor_f32(c->in[0]);
    float *y = tensor_f32(c->out[0]);
    int64_t block = s.n * s.inner;
    for (int64_t o = 0; o < s.outer; o++) {
        if (s.inner == 1)
            softmax_row(y + o * block, x + o * block, s.n, kind);
        else
            softmax_cols(y + o * block, x + o * block, s.n, s.inner, kind, c->scratch);
    }
    return 0;
}

static int softmax_forward(OpCtx *c) { return softmax_run(c, SOFTMAX); }
static int logsoftmax_forward(OpCtx *c) { return softmax_run(c, LOG_SOFTMAX); }

/* One-hot of the first maximum along n. Reads a whole column before
 * writing it, so y may alias x. */
static int hardmax_forward(OpCtx *c)
{
    SoftmaxShape s = {0};
    int rc = softmax_shape(c, &s);
    if (rc < 0)
        return rc;
    const float *x = tensor_f32(c->in[0]);
    float *y = tensor_f32(c->out[0]);
    for (int64_t o = 0; o < s.outer; o++)
        for (int64_t j = 0; j < s.inner; j++) {
            const float *xc = x + o * s.n * s.inner + j;
            float *yc = y + o * s.n * s.inner + j;
            int64_t best = 0;
            for (int64_t k = 1; k < s.n; k++)
                if (xc[k * s.inner] > xc[best * s.inner])
                    best = k;
            for (int64_t k = 0; k < s.n; k++)
                yc[k * s.inner] = k == best ? 1.0f : 0.0f;
        }
    return 0;
}

/* ---- backward ------------------------------------------------------------ */

/* Per normalized slice, from the output alone (so in-place forward is
 * fine): Softmax dx = y (g - <g, y>); LogSoftmax dx = g - e^y sum(g). */

/* Eight partial sums: they vectorize and round less than one chain. */
static float dot_f32(const float *restrict a, const float *restrict b, int64_t n)
{
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++)
            s[l] += a[i + l] * b[i + l];
    for (; i < n; i++)
        s[0] += a[i] * b[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

static float sum_f32(const float *restrict a, int64_t n)
{
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++)
            s[l] += a[i + l];
    for (; i < n; i++)
        s[0] += a[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

static void softmax_grad_row(float *gx, const float *restrict y, const float *restrict g,
                             int64_t n, SoftmaxKind kind)
{
    if (kind == SOFTMAX) {
        const float s = dot_f32(g, y, n);
        for (int64_t i = 0; i < n; i++)
            gx[i] += y[i] * (g[i] - s);
    } else {
        const float s = sum_f32(g, n);
        for (int64_t i = 0; i < n; i++)
            gx[i] += g[i] - expf(y[i]) * s;
    }
}

/* A [n, inner] block normalized along n, vectorized across inner; acc
 * holds inner floats of scratch. */
static void softmax_grad_cols(float *gx, const float *restrict y, const float *restrict g,
                              int64_t n, int64_t inner, SoftmaxKind kind, float *acc)
{
    for (int64_t j = 0; j < inner; j++)
        acc[j] = 0;
    for (int64_t k = 0; k < n; k++) {
        const float *yk = y + k * inner, *gk = g + k * inner;
        if (kind == SOFTMAX)
            for (int64_t j = 0; j < inner; j++)
                acc[j] += gk[j] * yk[j];
        else
            for (int64_t j = 0; j < inner; j++)
                acc[j] += gk[j];
    }
    for (int64_t k = 0; k < n; k++) {
        const float *yk = y + k * inner, *gk = g + k * inner;
        float *gxk = gx + k * inner;
        if (kind == SOFTMAX)
            for (int64_t j = 0; j < inner; j++)
                gxk[j] += yk[j] * (gk[j] - acc[j]);
        else
            for (int64_t j = 0; j < inner; j++)
                gxk[j] += gk[j] - expf(yk[j]) * acc[j];
    }
}

static size_t softmax_bwd_scratch(const OpCtx *c)
{
    SoftmaxShape s = {0};
    if (softmax_shape(c, &s) < 0 || s.inner == 1)
        return 0;
    return (size_t)s.inner * sizeof(float);
}

static int softmax_grad(OpCtx *c, Tensor **gout, Tensor **gin, SoftmaxKind kind)
{
    if (!gout[0] || !gin[0])
        return 0;
    SoftmaxShape s = {0};
    int rc = softmax_shape(c, &s);
    if (rc < 0)
        return rc;
    int64_t numel = c->in[0]->numel;
    for (int k = 0; k < 2; k++) {
        const Tensor *t = k ? gin[0] : gout[0];
        if (t->dtype != SH_F32 || t->numel != numel)
            return op_fail(c, SH_E_SHAPE, "%s gradient has %lld elements; expected %lld",
                           k ? "input" : "output", (long long)t->numel, (long long)numel);
    }
    const float *y = tensor_f32(c->out[0]), *g = tensor_f32(gout[0]);
    float *gx = tensor_f32(gin[0]);
    int64_t block = s.n * s.inner;
    for (int64_t o = 0; o < s.outer; o++) {
        if (s.inner == 1)
            softmax_grad_row(gx + o * block, y + o * block, g + o * block, s.n, kind);
        else
            softmax_grad_cols(gx + o * block, y + o * block, g + o * block, s.n, s.inner, kind,
                              c->scratch);
    }
    return 0;
}

static int softmax_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    return softmax_grad(c, gout, gin, SOFTMAX);
}

static int logsoftmax_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    return softmax_grad(c, gout, gin, LOG_SOFTMAX);
}

/* ---- channel coupling ---- */

/* Channels pass through; normalizing over a channel axis mixes them. */
static int softmax_couple(CouplingCtx *cc)
{
    const Shape *s = cc_in_shape(cc, 0);
    int opset = cc_opset(cc);
    int axis = (int)node_attr_int(cc_node(cc), "axis", opset >= 13 ? -1 : 1);
    axis = axis < 0 ? axis + s->rank : axis;
    couple_unary(cc);
    for (int a = axis; a >= 0 && a < s->rank; a++) {
        cc_approx(cc, 0, a, "normalizes over these channels");
        if (opset >= 13)
            break;
    }
    return 0;
}

const OpDef sh_ops_softmax[] = {
    {.name = "Softmax", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .flags = OP_INPLACE,
     .infer = softmax_infer, .forward = softmax_forward, .scratch = softmax_scratch,
     .backward = softmax_backward, .bwd_scratch = softmax_bwd_scratch,
     .coupling = softmax_couple},
    {.name = "LogSoftmax", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
     .flags = OP_INPLACE, .infer = softmax_infer, .forward = logsoftmax_forward,
     .scratch = softmax_scratch, .backward = logsoftmax_backward,
     .bwd_scratch = softmax_bwd_scratch,
     .coupling = softmax_couple},
    {.name = "Hardmax", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .flags = OP_INPLACE,
     .infer = softmax_infer, .forward = hardmax_forward,
     .coupling = softmax_couple},
    {.name = NULL},
};
