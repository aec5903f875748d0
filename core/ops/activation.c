/* Elementwise unary activations and math: output has the input's shape.
 * Each op is one loop over numel with its parameters read once before the
 * loop, so the loops stay simple enough for the compiler to vectorize.
 * Output may alias input 0 (OP_INPLACE): every loop reads x[i] before it
 * writes y[i] and touches nothing else. */
#include "../error.h"
#include "../depgraph.h"
#include "../op.h"
#include "kernels_simd.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- shape inference ---------------------------------------------------- */

static int unary_infer(OpCtx *c)
{
    int rc = op_check_input(c, 0, SH_F32);
    if (rc < 0)
        return rc;
    op_set_out(c, 0, SH_F32, &c->in[0]->shape);
    return 0;
}

/* Neg, Abs and Sign also appear in int64 shape arithmetic. */
static int unary_num_infer(OpCtx *c)
{
    int rc = op_check_input(c, 0, SH_UNDEF);
    if (rc < 0)
        return rc;
    DType dt = c->in[0]->dtype;
    if (dt != SH_F32 && dt != SH_I64)
        return op_fail(c, SH_E_UNSUPPORTED, "input 0 is %s; expected float32 or int64",
                       dtype_name(dt));
    op_set_out(c, 0, dt, &c->in[0]->shape);
    return 0;
}

/* ---- parameter-free float loops ----------------------------------------- */

/* Defines name_forward(c) computing y[i] = EXPR(v) with v = x[i]. */
#define UNARY_F32(name, EXPR)                                                                  \
    static int name##_forward(OpCtx *c)                                                        \
    {                                                                                          \
        const float *x = tensor_f32(c->in[0]);                                                 \
        float *y = tensor_f32(c->out[0]);                                                      \
        int64_t n = c->in[0]->numel;                                                           \
        for (int64_t i = 0; i < n; i++) {                                                      \
            float v = x[i];                                                                    \
            y[i] = (EXPR);                                                                     \
        }                                                                                      \
        return 0;                                                                              \
    }

UNARY_F32(relu, v > 0 ? v : 0.0f)
UNARY_F32(sigmoid, 1.0f / (1.0f + expf(-v)))
UNARY_F32(hardswish, v * fmaxf(0.0f, fminf(1.0f, v / 6.0f + 0.5f)))
UNARY_F32(tanh, tanhf(v))
/* log(1+e^v) without overflow for large v. */
UNARY_F32(softplus, v > 0 ? v + log1pf(expf(-v)) : log1pf(expf(v)))
UNARY_F32(softsign, v / (1.0f + fabsf(v)))
UNARY_F32(sqrt, sqrtf(v))

/* Erf: eight wide (the GELU of PyTorch exports is Div, Erf, Add, Mul, Mul). */
static int erf_forward(OpCtx *c)
{
    const float *x = tensor_f32(c->in[0]);
    float *y = tensor_f32(c->out[0]);
    int64_t n = c->in[0]->numel, i = 0;
    for (; i + 8 <= n; i += 8)
        *(f32x8 *)(y + i) = erf_f32x8(*(const f32x8 *)(x + i));
    for (; i < n; i++)
        y[i] = erff(x[i]);
    return 0;
}
UNARY_F32(reciprocal, 1.0f / v)
UNARY_F32(exp, expf(v))
UNARY_F32(log, logf(v))
UNARY_F32(floor, floorf(v))
UNARY_F32(ceil, ceilf(v))
UNARY_F32(sin, sinf(v))
UNARY_F32(cos, cosf(v))
UNARY_F32(tan, tanf(v))
UNARY_F32(asin, asinf(v))
UNARY_F32(acos, acosf(v))
UNARY_F32(atan, atanf(v))
UNARY_F32(sinh, sinhf(v))
UNARY_F32(cosh, coshf(v))
UNARY_F32(asinh, asinhf(v))
UNARY_F32(acosh, acoshf(v))
UNARY_F32(atanh, atanhf(v))
/* Halves round to even, as the spec asks (default rounding mode). */
UNARY_F32(round, nearbyintf(v))

/* ---- float or int64 ----------------------------------------------------- */

/* Defines name_forward(c) for float32 and int64 inputs. Int64 negation of
 * INT64_MIN wraps (via unsigned) instead of being undefined. */
#define UNARY_NUM(name, EXPR_F, EXPR_I)                                                        \
    static int name##_forward(OpCtx *c)                                                        \
    {                                                                                          \
        int64_t n = c->in[0]->numel;                                                           \
        if (c->in[0]->dtype == SH_I64) {                                                       \
            const int64_t *x = tensor_i64(c->in[0]);                                           \
            int64_t *y = tensor_i64(c->out[0]);                                                \
            for (int64_t i = 0; i < n; i++) {                                                  \
                int64_t v = x[i];                                                              \
                y[i] = (EXPR_I);                                                               \
            }                                                                                  \
            return 0;                                                                          \
        }                                                                                      \
        const float *x = tensor_f32(c->in[0]);                                                 \
        float *y = tensor_f32(c->out[0]);                                                      \
        for (int64_t i = 0; i < n; i++) {                                                      \
            float v = x[i];                                                                    \
            y[i] = (EXPR_F);                                                                   \
        }                                                                                      \
        return 0;                                                                              \
    }

#define I64_NEG(v) ((int64_t)(0 - (uint64_t)(v)))
UNARY_NUM(neg, -v, I64_NEG(v))
UNARY_NUM(abs, fabsf(v), v < 0 ? I64_NEG(v) : v)
UNARY_NUM(sign, (float)((v > 0) - (v < 0)), (int64_t)((v > 0) - (v < 0)))

/* ---- loops with attributes ---------------------------------------------- */

static int leakyrelu_forward(OpCtx *c)
{
    const float alpha = node_attr_float(c->node, "alpha", 0.01f);
    const float *x = tensor_f32(c->in[0]);
    float *y = tensor_f32(c->out[0]);
    for (int64_t i = 0; i < c->in[0]->numel; i++)
        y[i] = x[i] >= 0 ? x[i] : alpha * x[i];
    return 0;
}

static int elu_forward(OpCtx *c)
{
    const float alpha = node_attr_float(c->node, "alpha", 1.0f);
    const float *x = tensor_f32(c->in[0]);
    float *y = tensor_f32(c->out[0]);
    for (int64_t i = 0; i < c->in[0]->numel; i++)
        y[i] = x[i] >= 0 ? x[i] : alpha * expm1f(x[i]);
    return 0;
}

static int selu_forward(OpCtx *c)
{
    /* Defaults from the ONNX spec (the float32 values of the SELU paper's). */
    const float alpha = node_attr_float(c->node, "alpha", 1.67326319217681884765625f);
    const float gamma = node_attr_float(c->node, "gamma", 1.05070102214813232421875f);
    const float *x = tensor_f32(c->in[0]);
    float *y = tensor_f32(c->out[0]);
    for (int64_t i = 0; i < c->in[0]->numel; i++)
        y[i] = gamma * (x[i] > 0 ? x[i] : alpha * expm1f(x[i]));
    return 0;
}

static int hardsigmoid_forward(OpCtx *c)
{
    const float alpha = node_attr_float(c->node, "alpha", 0.2f);
    const float beta = node_attr_float(c->node, "beta", 0.5f);
    const float *x = tensor_f32(c->in[0]);
    float *y = tensor_f32(c->out[0]);
    for (int64_t i = 0; i < c->in[0]->numel; i++)
        y[i] = fmaxf(0.0f, fminf(1.0f, alpha * x[i] + beta));
    return 0;
}

static int thresholdedrelu_forward(OpCtx *c)
{
    const float alpha = node_attr_float(c->node, "alpha", 1.0f);
    const float *x = tensor_f32(c->in[0]);
    float *y = tensor_f32(c->out[0]);
    for (int64_t i = 0; i < c->in[0]->numel; i++)
        y[i] = x[i] > alpha ? x[i] : 0.0f;
    return 0;
}

static int celu_forward(OpCtx *c)
{
    const float alpha = node_attr_float(c->node, "alpha", 1.0f);
    const float *x = tensor_f32(c->in[0]);
    float *y = tensor_f32(c->out[0]);
    for (int64_t i = 0; i < c->in[0]->numel; i++)
        y[i] = fmaxf(0.0f, x[i]) + fminf(0.0f, alpha * expm1f(x[i] / alpha));
    return 0;
}

static int shrink_forward(OpCtx *c)
{
    const float bias = node_attr_float(c->node, "bias", 0.0f);
    const float lambd = node_attr_float(c->node, "lambd", 0.5f);
    const float *x = tensor_f32(c->in[0]);
    float *y = tensor_f32(c->out[0]);
    for (int64_t i = 0; i < c->in[0]->numel; i++)
        y[i] = x[i] < -lambd ? x[i] + bias : x[i] > lambd ? x[i] - bias : 0.0f;
    return 0;
}

/* ---- IsNaN / IsInf: float in, bool out ---------------------------------- */

static int is_class_infer(OpCtx *c)
{
    int rc = op_check_input(c, 0, SH_F32);
    if (rc < 0)
        return rc;
    op_set_out(c, 0, SH_BOOL, &c->in[0]->shape);
    return 0;
}

static int isnan_forward(OpCtx *c)
{
    const float *x = tensor_f32(c->in[0]);
    uint8_t *y = tensor_u8(c->out[0]);
    for (int64_t i = 0; i < c->in[0]->numel; i++)
        y[i] = x[i] != x[i];
    return 0;
}

static int isinf_forward(OpCtx *c)
{
    const int neg = node_attr_int(c->node, "detect_negative", 1) != 0;
    const int pos = node_attr_int(c->node, "detect_positive", 1) != 0;
    const float *x = tensor_f32(c->in[0]);
    uint8_t *y = tensor_u8(c->out[0]);
    for (int64_t i = 0; i < c->in[0]->numel; i++)
        y[i] = (pos && x[i] == INFINITY) || (neg && x[i] == -INFINITY);
    return 0;
}

/* ---- Gelu (op_type used by PyTorch-like exports and ONNX opset 20) ------- */

static int gelu_infer(OpCtx *c)
{
    const char *approx = node_attr_str(c->node, "approximate", "none");
    if (strcmp(approx, "none") != 0 && strcmp(approx, "tanh") != 0)
        return op_fail(c, SH_E_UNSUPPORTED,
                       "attribute approximate='%s' is not supported (use 'none' or 'tanh')", approx);
    return unary_infer(c);
}

static int gelu_forward(OpCtx *c)
{
    const float *x = tensor_f32(c->in[0]);
    float *y = tensor_f32(c->out[0]);
    int64_t n = c->in[0]->numel;
    if (strcmp(node_attr_str(c->node, "approximate", "none"), "tanh") == 0) {
        const float k = 0.7978845608028654f; /* sqrt(2/pi) */
        for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            y[i] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
        }
    } else {
        const float inv_sqrt2 = 0.7071067811865476f;
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) {
            f32x8 v = *(const f32x8 *)(x + i);
            *(f32x8 *)(y + i) = F32X8_SPLAT(0.5f) * v * (F32X8_SPLAT(1.0f) + erf_f32x8(v * F32X8_SPLAT(inv_sqrt2)));
        }
        for (; i < n; i++) {
            float v = x[i];
            y[i] = 0.5f * v * (1.0f + erff(v * inv_sqrt2));
        }
    }
    return 0;
}

/* ---- Clip: bounds are attributes before opset 11, optional inputs after -- */

static int clip_infer(OpCtx *c)
{
    int rc = unary_num_infer(c);
    if (rc < 0)
        return rc;
    for (int i = 1; i < c->n_in && i <= 2; i++) {
        const Tensor *b = c->in[i];
        if (!b)
            continue;
        if (b->dtype != c->in[0]->dtype)
            return op_fail(c, SH_E_FORMAT, "input %d (%s) is %s; expected %s like the input", i,
                           i == 1 ? "min" : "max", dtype_name(b->dtype),
                           dtype_name(c->in[0]->dtype));
        if (b->numel != 1)
            return op_fail(c, SH_E_SHAPE, "input %d (%s) must be a scalar; it has %lld elements",
                           i, i == 1 ? "min" : "max", (long long)b->numel);
    }
    return 0;
}

/* Clip bound i (1 = min, 2 = max): the input when present, else the
 * attribute of opsets before 11, else absent (returns 0). */
static int clip_bound(const OpCtx *c, int i, double *v)
{
    if (i < c->n_in && c->in[i]) {
        *v = tensor_get_f(c->in[i], 0);
        return 1;
    }
    const Attr *a = c->opset < 11 ? node_attr(c->node, i == 1 ? "min" : "max") : NULL;
    if (a)
        *v = a->f;
    return a != NULL;
}

static int64_t clip_bound_i64(const OpCtx *c, int i, int64_t dflt)
{
    return i < c->n_in && c->in[i] ? tensor_get_i(c->in[i], 0) : dflt;
}

static int clip_forward(OpCtx *c)
{
    int64_t n = c->in[0]->numel;
    if (c->in[0]->dtype == SH_I64) {
        int64_t lo = clip_bound_i64(c, 1, INT64_MIN), hi = clip_bound_i64(c, 2, INT64_MAX);
        const int64_t *x = tensor_i64(c->in[0]);
        int64_t *y = tensor_i64(c->out[0]);
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] < lo ? lo : x[i] > hi ? hi : x[i];
        return 0;
    }
    /* Before opset 11 absent bounds default to the float limits, after to none. */
    double lo_d = c->opset < 11 ? -FLT_MAX : -INFINITY, hi_d = c->opset < 11 ? FLT_MAX : INFINITY;
    clip_bound(c, 1, &lo_d);
    clip_bound(c, 2, &hi_d);
    const float lo = (float)lo_d, hi = (float)hi_d;
    const float *x = tensor_f32(c->in[0]);
    float *y = tensor_f32(c->out[0]);
    /* min(max(x, lo), hi) like the spec: lo > hi gives hi everywhere. */
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] < lo ? lo : x[i];
        y[i] = v > hi ? hi : v;
    }
    return 0;
}

/* ---- PRelu: slope broadcasts unidirectionally to X ---------------------- */

/* Unidirectional broadcast of slope s to x (opset 7 and later). */
static int prelu_broadcasts(const Shape *x, const Shape *s)
{
    if (s->rank > x->rank)
        return 0;
    for (int i = 0; i < s->rank; i++) {
        int64_t ds = s->d[s->rank - 1 - i], dx = x->d[x->rank - 1 - i];
        if (ds != dx && ds != 1)
            return 0;
    }
    return 1;
}

/* Before opset 7 a 1-D slope of length C applied to channel axis 1; old
 * exports still carry it, so it is accepted where broadcasting fails. */
static int prelu_legacy_channels(const Shape *x, const Shape *s)
{
    return s->rank == 1 && x->rank >= 2 && s->d[0] == x->d[1];
}

static int prelu_infer(OpCtx *c)
{
    int rc;
    if ((rc = op_check_input(c, 0, SH_F32)) < 0 || (rc = op_check_input(c, 1, SH_F32)) < 0)
        return rc;
    const Shape *x = &c->in[0]->shape, *s = &c->in[1]->shape;
    if (!prelu_broadcasts(x, s) && !prelu_legacy_channels(x, s)) {
        char sx[128], ss[128];
        return op_fail(c, SH_E_SHAPE, "slope shape %s does not broadcast to input shape %s",
                       shape_str(s, ss, sizeof ss), shape_str(x, sx, sizeof sx));
    }
    op_set_out(c, 0, SH_F32, x);
    return 0;
}

/* Describes the slope's non-1 dims as one contiguous block of X's dims:
 * X = [outer, ch, inner] with slope indexed by ch. Returns 0 if the non-1
 * dims of the slope are not contiguous (e.g. slope [C,1,W]). */
static int prelu_blocks(const Shape *x, const Shape *s, int64_t *outer, int64_t *ch,
                        int64_t *inner)
{
    int off = x->rank - s->rank, first = -1, last = -1;
    for (int i = 0; i < s->rank; i++)
        if (s->d[i] != 1) {
            if (first < 0)
                first = i;
            else if (last != i - 1)
                return 0;
            last = i;
        }
    if (first < 0) {
        *outer = shape_numel(x), *ch = 1, *inner = 1;
        return 1;
    }
    *outer = shape_prod(x, 0, off + first);
    *ch = shape_prod(x, off + first, off + last + 1);
    *inner = shape_prod(x, off + last + 1, x->rank);
    return 1;
}

/* Reference path for slopes like [C,1,W]: index arithmetic per element. */
static void prelu_naive(float *y, const float *x, const float *slope, const Shape *xs,
                        const Shape *ss)
{
    int off = xs->rank - ss->rank;
    int64_t n = shape_numel(xs);
    for (int64_t i = 0; i < n; i++) {
        int64_t rem = i, si = 0, sstride = 1;
        for (int d = xs->rank - 1; d >= off; d--) {
            int64_t idx = rem % xs->d[d];
            rem /= xs->d[d];
            int64_t sd = ss->d[d - off];
            si += (sd == 1 ? 0 : idx) * sstride;
            sstride *= sd;
        }
        y[i] = x[i] >= 0 ? x[i] : slope[si] * x[i];
    }
}

static int prelu_forward(OpCtx *c)
{
    const float *x = tensor_f32(c->in[0]), *slope = tensor_f32(c->in[1]);
    float *y = tensor_f32(c->out[0]);
    const Shape *xs = &c->in[0]->shape;
    int64_t outer, ch, inner;
    if (!prelu_broadcasts(xs, &c->in[1]->shape)) { /* legacy channel slope */
        outer = xs->d[0], ch = xs->d[1], inner = shape_prod(xs, 2, xs->rank);
    } else if (!prelu_blocks(xs, &c->in[1]->shape, &outer, &ch, &inner)) {
        prelu_naive(y, x, slope, xs, &c->in[1]->shape);
        return 0;
    }
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < ch; k++) {
            const float a = slope[k];
            const float *xr = x + (o * ch + k) * inner;
            float *yr = y + (o * ch + k) * inner;
            for (int64_t i = 0; i < inner; i++)
                yr[i] = xr[i] >= 0 ? xr[i] : a * xr[i];
        }
    return 0;
}

/* ---- backward ------------------------------------------------------------ */

/* Dense float views for a unary backward: dL/dx[i] += f'(x[i]) * dL/dy[i]. */
typedef struct {
    const float *x, *y, *g; /* input, output and dL/dy */
    float *gx;              /* dL/dx, accumulated; NULL: nothing to do */
    int64_t n;
} UnaryGrad;

/* Fails where a gradient is asked of a non-float input (int64 Neg, Abs,
 * Clip have none) or gradient t (of input i, or of the output when i < 0)
 * does not have the element count of like. */
static int check_grad(const OpCtx *c, const Tensor *t, int i, const Tensor *like)
{
    const Tensor *x = c->in[i < 0 ? 0 : i];
    if (x->dtype != SH_F32)
        return op_fail(c, SH_E_UNSUPPORTED, "input %d is %s; only float32 inputs have a gradient",
                       i < 0 ? 0 : i, dtype_name(x->dtype));
    if (t->dtype != SH_F32 || t->numel != like->numel) {
        char what[32] = "output gradient";
        if (i >= 0)
            snprintf(what, sizeof what, "gradient of input %d", i);
        return op_fail(c, SH_E_SHAPE, "%s has %lld elements; expected %lld", what,
                       (long long)t->numel, (long long)like->numel);
    }
    return 0;
}

static int unary_grad_begin(const OpCtx *c, Tensor **gout, Tensor **gin, UnaryGrad *u)
{
    memset(u, 0, sizeof *u);
    if (!gout[0] || !gin[0])
        return 0;
    int rc = check_grad(c, gin[0], 0, c->in[0]);
    if (rc < 0 || (rc = check_grad(c, gout[0], -1, c->out[0])) < 0)
        return rc;
    u->x = tensor_f32(c->in[0]);
    u->y = tensor_f32(c->out[0]);
    u->g = tensor_f32(gout[0]);
    u->gx = tensor_f32(gin[0]);
    u->n = c->in[0]->numel;
    return 0;
}

/* Defines name_backward: after the statements PRELUDE (attributes, read
 * once), dL/dx[i] += EXPR with v = x[i], o = y[i], d = dL/dy[i] (= EXPR
 * when told to assign; backward_step always passes gout[0] then). */
#define UNARY_GRAD(name, PRELUDE, EXPR)                                                        \
    static int name##_backward(OpCtx *c, Tensor **gout, Tensor **gin)                          \
    {                                                                                          \
        UnaryGrad u;                                                                           \
        int rc = unary_grad_begin(c, gout, gin, &u);                                           \
        if (rc < 0 || !u.gx)                                                                   \
            return rc;                                                                         \
        PRELUDE                                                                                \
        const float *restrict x = u.x, *restrict y = u.y, *restrict g = u.g;                   \
        float *gx = u.gx;                                                                      \
        if (c->grad_assign & 1u)                                                               \
            for (int64_t i = 0; i < u.n; i++) {                                                \
                const float v = x[i], o = y[i], d = g[i];                                      \
                (void)v, (void)o;                                                              \
                gx[i] = (EXPR);                                                                \
            }                                                                                  \
        else                                                                                   \
            for (int64_t i = 0; i < u.n; i++) {                                                \
                const float v = x[i], o = y[i], d = g[i];                                      \
                (void)v, (void)o;                                                              \
                gx[i] += (EXPR);                                                               \
            }                                                                                  \
        return 0;                                                                              \
    }

#define ALPHA(dflt) const float alpha = node_attr_float(c->node, "alpha", dflt);

/* Where the output gives the derivative without a libm call (Sigmoid,
 * Tanh, Exp, Sqrt, Reciprocal; the exponential side of Elu, Selu, Celu:
 * alpha e^x = y + alpha) it is written in o. Relu, HardSigmoid, Sigmoid,
 * Tanh, Tan, Exp, Sqrt, Reciprocal and Neg read only o (or nothing), so an
 * in-place forward leaves what they need. Kinks take the side the forward
 * takes at equality (Relu: 0 at 0, as y > 0 iff x > 0; LeakyRelu, Elu:
 * the x >= 0 side). */
UNARY_GRAD(relu, , o > 0 ? d : 0.0f)
UNARY_GRAD(leakyrelu, ALPHA(0.01f), v >= 0 ? d : alpha * d)
UNARY_GRAD(elu, ALPHA(1.0f), v >= 0 ? d : (o + alpha) * d)
UNARY_GRAD(selu,
           ALPHA(1.67326319217681884765625f)
           const float gamma = node_attr_float(c->node, "gamma", 1.05070102214813232421875f);
           const float gamma_alpha = gamma * alpha;,
           v > 0 ? gamma * d : (o + gamma_alpha) * d)
UNARY_GRAD(celu, ALPHA(1.0f) const float inv_alpha = 1.0f / alpha;,
           v > 0 ? d : (o * inv_alpha + 1.0f) * d)
UNARY_GRAD(sigmoid, , d * o * (1.0f - o))
/* y = clamp(alpha x + beta, 0, 1): slope alpha where 0 < y < 1. */
UNARY_GRAD(hardsigmoid, ALPHA(0.2f), o > 0.0f && o < 1.0f ? alpha * d : 0.0f)
/* y = x * clamp(x/6 + 1/2, 0, 1): slope 0 left of -3, 1 right of 3. */
UNARY_GRAD(hardswish, ,
           v / 6.0f + 0.5f <= 0.0f ? 0.0f : v / 6.0f + 0.5f >= 1.0f ? d : (v / 3.0f + 0.5f) * d)
UNARY_GRAD(tanh, , d * (1.0f - o * o))
UNARY_GRAD(softplus, , d / (1.0f + expf(-v)))
UNARY_GRAD(softsign, , d / ((1.0f + fabsf(v)) * (1.0f + fabsf(v))))
UNARY_GRAD(erf, , 1.1283791670955126f * expf(-v * v) * d) /* 2/sqrt(pi) e^-x^2 */
UNARY_GRAD(sqrt, , 0.5f * d / o)
UNARY_GRAD(reciprocal, , -d * o * o)
UNARY_GRAD(exp, , d * o)
UNARY_GRAD(log, , d / v)
UNARY_GRAD(sin, , d * cosf(v))
UNARY_GRAD(cos, , -d * sinf(v))
UNARY_GRAD(tan, , d * (1.0f + o * o))
UNARY_GRAD(asin, , d / sqrtf(1.0f - v * v))
UNARY_GRAD(acos, , -d / sqrtf(1.0f - v * v))
UNARY_GRAD(atan, , d / (1.0f + v * v))
UNARY_GRAD(sinh, , d * coshf(v))
UNARY_GRAD(cosh, , d * sinhf(v))
UNARY_GRAD(asinh, , d / sqrtf(v * v + 1.0f))
UNARY_GRAD(acosh, , d / sqrtf(v * v - 1.0f))
UNARY_GRAD(atanh, , d / (1.0f - v * v))
UNARY_GRAD(thresholdedrelu, ALPHA(1.0f), v > alpha ? d : 0.0f)
UNARY_GRAD(shrink, const float lambd = node_attr_float(c->node, "lambd", 0.5f);,
           v < -lambd || v > lambd ? d : 0.0f)
UNARY_GRAD(neg, , -d)
UNARY_GRAD(abs, , v > 0 ? d : v < 0 ? -d : 0.0f)

/* Gelu: d/dx [x Phi(x)] = Phi(x) + x phi(x); the tanh form differentiates
 * its own approximation so the gradient matches what forward computed. */
static int gelu_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    UnaryGrad u;
    int rc = unary_grad_begin(c, gout, gin, &u);
    if (rc < 0 || !u.gx)
        return rc;
    const float *restrict x = u.x, *restrict g = u.g;
    float *gx = u.gx;
    if (strcmp(node_attr_str(c->node, "approximate", "none"), "tanh") == 0) {
        const float k = 0.7978845608028654f, c3 = 0.044715f;
        for (int64_t i = 0; i < u.n; i++) {
            float v = x[i], t = tanhf(k * (v + c3 * v * v * v));
            float du = k * (1.0f + 3.0f * c3 * v * v);
            gx[i] += g[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du);
        }
    } else {
        const float inv_sqrt2 = 0.7071067811865476f, inv_sqrt_2pi = 0.3989422804014327f;
        for (int64_t i = 0; i < u.n; i++) {
            float v = x[i];
            gx[i] += g[i] * (0.5f * (1.0f + erff(v * inv_sqrt2)) +
                             v * inv_sqrt_2pi * expf(-0.5f * v * v));
        }
    }
    return 0;
}

/* Clip passes the gradient where lo <= x <= hi (bounds included, like
 * PyTorch's clamp); the bounds themselves get none. */
static int clip_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    UnaryGrad u;
    int rc = unary_grad_begin(c, gout, gin, &u);
    if (rc < 0 || !u.gx)
        return rc;
    double lo_d = c->opset < 11 ? -FLT_MAX : -INFINITY, hi_d = c->opset < 11 ? FLT_MAX : INFINITY;
    clip_bound(c, 1, &lo_d);
    clip_bound(c, 2, &hi_d);
    const float lo = (float)lo_d, hi = (float)hi_d;
    const float *restrict x = u.x, *restrict g = u.g;
    float *gx = u.gx;
    for (int64_t i = 0; i < u.n; i++)
        gx[i] += x[i] >= lo && x[i] <= hi ? g[i] : 0.0f;
    return 0;
}

/* PRelu rows: dL/dx = d (x >= 0) or a d; dL/da += d x where x < 0,
 * summed over the row in eight partial sums (they vectorize). */
static void prelu_grad_row(float *gx, float *ga, const float *restrict x,
                           const float *restrict g, float a, int64_t n)
{
    if (gx)
        for (int64_t i = 0; i < n; i++)
            gx[i] += (x[i] >= 0 ? 1.0f : a) * g[i];
    if (!ga)
        return;
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++)
            s[l] += (x[i + l] < 0 ? x[i + l] : 0.0f) * g[i + l];
    for (; i < n; i++)
        s[0] += (x[i] < 0 ? x[i] : 0.0f) * g[i];
    *ga += ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* Slopes whose non-1 dims are not contiguous: index arithmetic per element. */
static void prelu_grad_naive(float *gx, float *ga, const float *x, const float *g,
                             const float *slope, const Shape *xs, const Shape *ss)
{
    int off = xs->rank - ss->rank;
    int64_t n = shape_numel(xs);
    for (int64_t i = 0; i < n; i++) {
        int64_t rem = i, si = 0, sstride = 1;
        for (int d = xs->rank - 1; d >= off; d--) {
            int64_t idx = rem % xs->d[d];
            rem /= xs->d[d];
            int64_t sd = ss->d[d - off];
            si += (sd == 1 ? 0 : idx) * sstride;
            sstride *= sd;
        }
        if (gx)
            gx[i] += x[i] >= 0 ? g[i] : slope[si] * g[i];
        if (ga && x[i] < 0)
            ga[si] += g[i] * x[i];
    }
}

static int prelu_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    if (!gout[0] || (!gin[0] && !gin[1]))
        return 0;
    int rc = check_grad(c, gout[0], -1, c->out[0]);
    for (int i = 0; i < 2 && rc == 0; i++)
        rc = gin[i] ? check_grad(c, gin[i], i, c->in[i]) : 0;
    if (rc < 0)
        return rc;
    const float *x = tensor_f32(c->in[0]), *slope = tensor_f32(c->in[1]), *g = tensor_f32(gout[0]);
    float *gx = gin[0] ? tensor_f32(gin[0]) : NULL, *ga = gin[1] ? tensor_f32(gin[1]) : NULL;
    const Shape *xs = &c->in[0]->shape;
    int64_t outer, ch, inner;
    if (!prelu_broadcasts(xs, &c->in[1]->shape)) { /* legacy channel slope */
        outer = xs->d[0], ch = xs->d[1], inner = shape_prod(xs, 2, xs->rank);
    } else if (!prelu_blocks(xs, &c->in[1]->shape, &outer, &ch, &inner)) {
        prelu_grad_naive(gx, ga, x, g, slope, xs, &c->in[1]->shape);
        return 0;
    }
    if (inner == 1) { /* slope along the last axis ([N,T,C] with slope [C]): across rows */
        for (int64_t o = 0; o < outer; o++) {
            const float *xr = x + o * ch, *gr = g + o * ch;
            if (gx)
                for (int64_t k = 0; k < ch; k++)
                    gx[o * ch + k] += (xr[k] >= 0 ? 1.0f : slope[k]) * gr[k];
            if (ga)
                for (int64_t k = 0; k < ch; k++)
                    ga[k] += (xr[k] < 0 ? xr[k] : 0.0f) * gr[k];
        }
        return 0;
    }
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < ch; k++) {
            int64_t at = (o * ch + k) * inner;
            prelu_grad_row(gx ? gx + at : NULL, ga ? ga + k : NULL, x + at, g + at, slope[k],
                           inner);
        }
    return 0;
}

/* ---- the table ----------------------------------------------------------- */

#define UNARY(op, fn, in_infer)                                                                \
    {.name = op, .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .flags = OP_INPLACE,    \
     .infer = in_infer, .forward = fn##_forward, .coupling = couple_unary}
/* The same with a backward; ops left without one (Floor, Sign, ...) have
 * zero or no derivative. */
#define UNARY_BWD(op, fn, in_infer)                                                            \
    {.name = op, .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .flags = OP_INPLACE,    \
     .infer = in_infer, .forward = fn##_forward, .backward = fn##_backward,                  \
     .coupling = couple_unary}
/* The same for a backward made by UNARY_GRAD, which can assign its gradient. */
#define UNARY_BWD_ASSIGN(op, fn, in_infer)                                                     \
    {.name = op, .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .flags = OP_INPLACE,    \
     .infer = in_infer, .forward = fn##_forward, .backward = fn##_backward,                  \
     .coupling = couple_unary, .grad_assign = 1u}

const OpDef sh_ops_activation[] = {
    UNARY_BWD_ASSIGN("Relu", relu, unary_infer),
    UNARY_BWD_ASSIGN("LeakyRelu", leakyrelu, unary_infer),
    UNARY_BWD("Elu", elu, unary_infer),
    UNARY_BWD("Selu", selu, unary_infer),
    UNARY_BWD_ASSIGN("Sigmoid", sigmoid, unary_infer),
    UNARY_BWD("HardSigmoid", hardsigmoid, unary_infer),
    UNARY_BWD("HardSwish", hardswish, unary_infer),
    UNARY_BWD_ASSIGN("Tanh", tanh, unary_infer),
    UNARY_BWD("Softplus", softplus, unary_infer),
    UNARY_BWD("Softsign", softsign, unary_infer),
    UNARY_BWD("Erf", erf, unary_infer),
    UNARY_BWD("Gelu", gelu, gelu_infer),
    UNARY_BWD("Sqrt", sqrt, unary_infer),
    UNARY_BWD("Reciprocal", reciprocal, unary_infer),
    UNARY_BWD("Exp", exp, unary_infer),
    UNARY_BWD("Log", log, unary_infer),
    UNARY("Floor", floor, unary_infer),
    UNARY("Ceil", ceil, unary_infer),
    UNARY_BWD("Sin", sin, unary_infer),
    UNARY_BWD("Cos", cos, unary_infer),
    UNARY_BWD("Tan", tan, unary_infer),
    UNARY_BWD("Asin", asin, unary_infer),
    UNARY_BWD("Acos", acos, unary_infer),
    UNARY_BWD("Atan", atan, unary_infer),
    UNARY_BWD("Sinh", sinh, unary_infer),
    UNARY_BWD("Cosh", cosh, unary_infer),
    UNARY_BWD("Asinh", asinh, unary_infer),
    UNARY_BWD("Acosh", acosh, unary_infer),
    UNARY_BWD("Atanh", atanh, unary_infer),
    UNARY("Round", round, unary_infer),
    UNARY_BWD("ThresholdedRelu", thresholdedrelu, unary_infer),
    UNARY_BWD("Celu", celu, unary_infer),
    UNARY_BWD("Shrink", shrink, unary_infer),
    UNARY_BWD("Neg", neg, unary_num_infer),
    UNARY_BWD("Abs", abs, unary_num_infer),
    UNARY("Sign", sign, unary_num_infer),
    {.name = "IsNaN", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
     .infer = is_class_infer, .forward = isnan_forward, .coupling = couple_unary},
    {.name = "IsInf", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
     .infer = is_class_infer, .forward = isinf_forward, .coupling = couple_unary},
    {.name = "Clip", .min_in = 1, .max_in = 3, .min_out = 1, .max_out = 1, .flags = OP_INPLACE,
     .infer = clip_infer, .forward = clip_forward, .backward = clip_backward, .coupling = couple_unary},
    {.name = "PRelu", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .flags = OP_INPLACE,
     .infer = prelu_infer, .forward = prelu_forward, .backward = prelu_backward,
     .coupling = couple_pointwise},
    {.name = NULL},
};
