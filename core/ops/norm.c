/* Normalization: BatchNormalization (inference and training statistics),
 * LayerNormalization, InstanceNormalization, LRN. Each folds its statistics
 * into a per-channel (or per-row) scale and shift and then makes one fused
 * pass y = x*a + b. */
#include "../error.h"
#include "../depgraph.h"
#include "../op.h"
#include "grad.h"
#include "kernels_simd.h"

#include <math.h>
#include <string.h>

static bool wants_output(const OpCtx *c, int i)
{
    return i < c->n_out && c->out[i] && c->node->out[i] >= 0;
}

/* X [N, C, ...] with known C and spatial dims; *n, *ch, *sp its planes. */
static int check_nc(const OpCtx *c, int min_rank, int64_t *n, int64_t *ch, int64_t *sp)
{
    int rc = op_check_input(c, 0, SH_F32);
    if (rc < 0)
        return rc;
    const Shape *X = &c->in[0]->shape;
    char b[128];
    if (X->rank < min_rank)
        return op_fail(c, SH_E_SHAPE, "input X has shape %s; expected [N, C%s]", shape_str(X, b, sizeof b),
                       min_rank > 2 ? ", spatial..." : ", ...");
    for (int i = 1; i < X->rank; i++)
        if (X->d[i] < 0)
            return op_fail(c, SH_E_SHAPE, "input X has shape %s; only the batch dim may be unknown",
                           shape_str(X, b, sizeof b));
    *n = X->d[0];
    *ch = X->d[1];
    *sp = shape_prod(X, 2, X->rank);
    return 0;
}

/* Input i must be a float vector of length len. */
static int check_vec(const OpCtx *c, int i, const char *name, int64_t len)
{
    int rc = op_check_input(c, i, SH_F32);
    if (rc < 0)
        return rc;
    const Shape *s = &c->in[i]->shape;
    char b[128];
    if (s->rank != 1 || s->d[0] != len)
        return op_fail(c, SH_E_SHAPE, "input %s has shape %s; expected [%lld]", name,
                       shape_str(s, b, sizeof b), (long long)len);
    return 0;
}

/* y[n, ch, :] = x * a[ch] + b[ch] */
static void affine_planes(float *y, const float *x, const float *a, const float *b, int64_t n,
                          int64_t ch, int64_t sp)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < ch; k++)
            affine_relu_f32(y + (i * ch + k) * sp, x + (i * ch + k) * sp, sp, a[k], b[k], 0);
}

static int64_t numel_macs(const OpCtx *c) { return c->in[0]->numel; }

/* ---- BatchNormalization ---------------------------------------------- */

typedef struct {
    int64_t n, ch, sp;
    float eps, momentum;
    bool batch_stats; /* normalize with the batch's statistics (training) */
    int n_extra;      /* extra outputs this opset defines: 4 before 14, else 2 */
} BnSetup;

static int bn_setup(const OpCtx *c, BnSetup *b)
{
    int rc;
    if ((rc = check_nc(c, 2, &b->n, &b->ch, &b->sp)) < 0)
        return rc;
    static const char *names[] = {"X", "scale", "B", "input_mean", "input_var"};
    for (int i = 1; i < 5; i++)
        if ((rc = check_vec(c, i, names[i], b->ch)) < 0)
            return rc;
    if (node_attr_int(c->node, "spatial", 1) == 0)
        return op_fail(c, SH_E_UNSUPPORTED, "attribute 'spatial' = 0 (per-activation statistics) is not supported");
    b->eps = node_attr_float(c->node, "epsilon", 1e-5f);
    b->momentum = node_attr_float(c->node, "momentum", 0.9f);
    b->n_extra = c->opset >= 14 ? 2 : 4;
    bool extra = false;
    for (int i = 1; i <= b->n_extra; i++)
        extra |= wants_output(c, i);
    if (c->opset >= 14)
        b->batch_stats = node_attr_int(c->node, "training_mode", 0) != 0 || c->training;
    else
        b->batch_stats = extra || c->training;
    if (c->n_out > 1 + b->n_extra)
        return op_fail(c, SH_E_FORMAT, "has %d outputs; opset %d defines at most %d", c->n_out, c->opset,
                       1 + b->n_extra);
    return 0;
}

static int bn_infer(OpCtx *c)
{
    BnSetup b;
    int rc = bn_setup(c, &b);
    if (rc < 0)
        return rc;
    op_set_out(c, 0, SH_F32, &c->in[0]->shape);
    Shape v = shape_of(1, b.ch);
    for (int i = 1; i <= b.n_extra; i++)
        if (wants_output(c, i))
            op_set_out(c, i, SH_F32, &v);
    return 0;
}

static size_t bn_scratch(const OpCtx *c)
{
    BnSetup b;
    return bn_setup(c, &b) < 0 ? 0 : (size_t)(4 * b.ch) * sizeof(float);
}

static int bn_run(OpCtx *c)
{
    BnSetup b;
    int rc = bn_setup(c, &b);
    if (rc < 0)
        return rc;
    if (c->scratch_bytes < (size_t)(4 * b.ch) * sizeof(float) || (b.ch && !c->scratch))
        return op_fail(c, SH_E_STATE, "scratch is too small");
    const float *x = tensor_f32(c->in[0]), *scale = tensor_f32(c->in[1]), *bias = tensor_f32(c->in[2]);
    const float *mean = tensor_f32(c->in[3]), *var = tensor_f32(c->in[4]);
    float *a = c->scratch, *sh = a + b.ch, *bmean = sh + b.ch, *bvar = bmean + b.ch;
    const float *use_mean = mean, *use_var = var;
    if (b.batch_stats) {
        batchnorm_batch_stats(bmean, bvar, x, b.n, b.ch, b.sp);
        use_mean = bmean;
        use_var = bvar;
    }
    for (int64_t k = 0; k < b.ch; k++) {
        const double inv = 1.0 / sqrt((double)use_var[k] + b.eps);
        a[k] = (float)(scale[k] * inv);
        sh[k] = (float)(bias[k] - use_mean[k] * (double)scale[k] * inv);
    }
    affine_planes(tensor_f32(c->out[0]), x, a, sh, b.n, b.ch, b.sp);
    /* running statistics: old * momentum + batch * (1 - momentum). When
     * shears trains (c->training) the batch variance is the unbiased one,
     * M/(M-1) times the population variance, as PyTorch keeps running_var,
     * and the update goes straight into the input_mean and input_var data
     * (training updates the model in place). Otherwise (a model run with
     * training_mode=1) outputs follow ONNX's reference: population variance,
     * inputs untouched. a and sh are free again and hold the new values. */
    float *run_mean = a, *run_var = sh;
    const int64_t m = b.n * b.sp;
    const float unbias = c->training && m > 1 ? (float)((double)m / (double)(m - 1)) : 1.0f;
    for (int64_t k = 0; k < b.ch; k++) {
        run_mean[k] = b.batch_stats ? mean[k] * b.momentum + bmean[k] * (1.0f - b.momentum) : mean[k];
        run_var[k] = b.batch_stats ? var[k] * b.momentum + bvar[k] * unbias * (1.0f - b.momentum) : var[k];
    }
    for (int i = 1; i <= 2; i++)
        if (wants_output(c, i))
            memcpy(tensor_f32(c->out[i]), i == 1 ? run_mean : run_var, (size_t)b.ch * sizeof(float));
    if (c->training && b.batch_stats) {
        memcpy(tensor_f32(c->in[3]), run_mean, (size_t)b.ch * sizeof(float));
        memcpy(tensor_f32(c->in[4]), run_var, (size_t)b.ch * sizeof(float));
    }
    for (int i = 3; i <= b.n_extra; i++) /* opset < 14: saved batch mean and variance */
        if (wants_output(c, i))
            memcpy(tensor_f32(c->out[i]), i == 3 ? use_mean : use_var, (size_t)b.ch * sizeof(float));
    return 0;
}

/* ---- LayerNormalization ---------------------------------------------- */

typedef struct {
    int axis;
    int64_t rows, cols;
    float eps;
    Shape stat; /* shape of Mean and InvStdDev */
} LnSetup;

/* Whether t broadcasts onto X's dims [axis, rank) only. */
static int check_ln_param(const OpCtx *c, int i, const char *name, const Shape *X, int axis)
{
    int rc = op_check_input(c, i, SH_F32);
    if (rc < 0)
        return rc;
    const Shape *s = &c->in[i]->shape;
    char b[128], bx[128];
    if (s->rank > X->rank)
        goto bad;
    for (int k = 0; k < s->rank; k++) {
        int xi = X->rank - s->rank + k;
        if (s->d[k] == 1)
            continue;
        if (xi < axis || s->d[k] != X->d[xi])
            goto bad;
    }
    return 0;
bad:
    return op_fail(c, SH_E_SHAPE, "input %s has shape %s, which does not broadcast to X %s from axis %d",
                   name, shape_str(s, b, sizeof b), shape_str(X, bx, sizeof bx), axis);
}

static int ln_setup(const OpCtx *c, LnSetup *l)
{
    int rc = op_check_input(c, 0, SH_F32);
    if (rc < 0)
        return rc;
    const Shape *X = &c->in[0]->shape;
    char b[128];
    int64_t axis = node_attr_int(c->node, "axis", -1);
    l->axis = shape_axis(axis, X->rank);
    if (l->axis < 0)
        return op_fail(c, SH_E_FORMAT, "attribute 'axis' = %lld is out of range for X %s", (long long)axis,
                       shape_str(X, b, sizeof b));
    for (int i = l->axis; i < X->rank; i++)
        if (X->d[i] < 0)
            return op_fail(c, SH_E_SHAPE, "input X %s has unknown normalized dims", shape_str(X, b, sizeof b));
    if ((rc = check_ln_param(c, 1, "Scale", X, l->axis)) < 0)
        return rc;
    if (c->n_in > 2 && c->in[2] && (rc = check_ln_param(c, 2, "B", X, l->axis)) < 0)
        return rc;
    l->eps = node_attr_float(c->node, "epsilon", 1e-5f);
    l->cols = shape_prod(X, l->axis, X->rank);
    l->rows = 1;
    for (int i = 0; i < l->axis; i++)
        l->rows = X->d[i] < 0 || l->rows < 0 ? -1 : l->rows * X->d[i];
    l->stat = *X;
    for (int i = l->axis; i < X->rank; i++)
        l->stat.d[i] = 1;
    return 0;
}

static int ln_infer(OpCtx *c)
{
    LnSetup l;
    int rc = ln_setup(c, &l);
    if (rc < 0)
        return rc;
    op_set_out(c, 0, SH_F32, &c->in[0]->shape);
    for (int i = 1; i <= 2; i++)
        if (wants_output(c, i))
            op_set_out(c, i, SH_F32, &l.stat);
    return 0;
}

static size_t ln_scratch(const OpCtx *c)
{
    LnSetup l;
    return ln_setup(c, &l) < 0 ? 0 : (size_t)(2 * l.cols) * sizeof(float);
}

/* dst[cols] = t broadcast over X's dims [axis, rank) (t right-aligned). */
static void expand_param(float *dst, const Tensor *t, const Shape *X, int axis)
{
    const int nd = X->rank - axis;
    const int64_t cols = shape_prod(X, axis, X->rank);
    const float *src = tensor_f32(t);
    if (t->numel == cols) {
        memcpy(dst, src, (size_t)cols * sizeof *dst);
        return;
    }
    for (int64_t j = 0; j < cols; j++) {
        int64_t rem = j, at = 0, stride = 1;
        for (int k = nd - 1; k >= 0; k--) {
            const int64_t dim = X->d[axis + k], idx = rem % dim;
            rem /= dim;
            const int ti = t->shape.rank - nd + k; /* t's dim aligned with X dim axis+k */
            if (ti >= 0) {
                if (t->shape.d[ti] != 1)
                    at += idx * stride;
                stride *= t->shape.d[ti];
            }
        }
        dst[j] = src[at];
    }
}

static int ln_run(OpCtx *c)
{
    LnSetup l;
    int rc = ln_setup(c, &l);
    if (rc < 0)
        return rc;
    if (c->scratch_bytes < (size_t)(2 * l.cols) * sizeof(float) || (l.cols && !c->scratch))
        return op_fail(c, SH_E_STATE, "scratch is too small");
    if (c->in[0]->numel == 0 || l.cols == 0) /* nothing to normalize (and maybe no scratch) */
        return 0;
    const Shape *X = &c->in[0]->shape;
    float *scale = c->scratch, *bias = scale + l.cols;
    expand_param(scale, c->in[1], X, l.axis);
    if (c->n_in > 2 && c->in[2])
        expand_param(bias, c->in[2], X, l.axis);
    else
        memset(bias, 0, (size_t)l.cols * sizeof *bias);
    const float *x = tensor_f32(c->in[0]);
    float *y = tensor_f32(c->out[0]);
    float *mean_out = wants_output(c, 1) ? tensor_f32(c->out[1]) : NULL;
    float *inv_out = wants_output(c, 2) ? tensor_f32(c->out[2]) : NULL;
    for (int64_t r = 0; r < l.rows; r++) {
        const float *restrict xr = x + r * l.cols;
        float *restrict yr = y + r * l.cols;
        double sum = 0, sq = 0;
        for (int64_t j = 0; j < l.cols; j++)
            sum += xr[j];
        const double m = l.cols ? sum / (double)l.cols : 0;
        for (int64_t j = 0; j < l.cols; j++)
            sq += (xr[j] - m) * (xr[j] - m);
        const double inv = 1.0 / sqrt((l.cols ? sq / (double)l.cols : 0) + l.eps);
        const float mf = (float)m, invf = (float)inv;
        for (int64_t j = 0; j < l.cols; j++)
            yr[j] = (xr[j] - mf) * invf * scale[j] + bias[j];
        if (mean_out)
            mean_out[r] = mf;
        if (inv_out)
            inv_out[r] = invf;
    }
    return 0;
}

/* ---- InstanceNormalization ------------------------------------------- */

static int in_setup(const OpCtx *c, int64_t *n, int64_t *ch, int64_t *sp)
{
    int rc = check_nc(c, 3, n, ch, sp);
    if (rc < 0 || (rc = check_vec(c, 1, "scale", *ch)) < 0 || (rc = check_vec(c, 2, "B", *ch)) < 0)
        return rc;
    return 0;
}

static int in_infer(OpCtx *c)
{
    int64_t n, ch, sp;
    int rc = in_setup(c, &n, &ch, &sp);
    if (rc == 0)
        op_set_out(c, 0, SH_F32, &c->in[0]->shape);
    return rc;
}

static int in_run(OpCtx *c)
{
    int64_t n, ch, sp;
    int rc = in_setup(c, &n, &ch, &sp);
    if (rc < 0)
        return rc;
    const float eps = node_attr_float(c->node, "epsilon", 1e-5f);
    const float *x = tensor_f32(c->in[0]), *scale = tensor_f32(c->in[1]), *bias = tensor_f32(c->in[2]);
    float *y = tensor_f32(c->out[0]);
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < ch; k++) {
            const float *restrict xp = x + (i * ch + k) * sp;
            float *restrict yp = y + (i * ch + k) * sp;
            double sum = 0, sq = 0;
            for (int64_t j = 0; j < sp; j++)
                sum += xp[j];
            const double m = sp ? sum / (double)sp : 0;
            for (int64_t j = 0; j < sp; j++)
                sq += (xp[j] - m) * (xp[j] - m);
            const double inv = 1.0 / sqrt((sp ? sq / (double)sp : 0) + eps);
            affine_relu_f32(yp, xp, sp, (float)(scale[k] * inv), (float)(bias[k] - m * scale[k] * inv), 0);
        }
    return 0;
}

/* ---- LRN ------------------------------------------------------------- */

static int lrn_setup(const OpCtx *c, int64_t *n, int64_t *ch, int64_t *sp, int64_t *size)
{
    int rc = check_nc(c, 3, n, ch, sp);
    if (rc < 0)
        return rc;
    *size = node_attr_int(c->node, "size", 0);
    if (!node_attr(c->node, "size"))
        return op_fail(c, SH_E_FORMAT, "attribute 'size' is missing");
    if (*size < 1)
        return op_fail(c, SH_E_FORMAT, "attribute 'size' is %lld; it must be >= 1", (long long)*size);
    return 0;
}

static int lrn_infer(OpCtx *c)
{
    int64_t n, ch, sp, size;
    int rc = lrn_setup(c, &n, &ch, &sp, &size);
    if (rc == 0)
        op_set_out(c, 0, SH_F32, &c->in[0]->shape);
    return rc;
}

static size_t lrn_scratch(const OpCtx *c)
{
    int64_t n = 0, ch = 0, sp = 0, size = 0;
    return lrn_setup(c, &n, &ch, &sp, &size) < 0 ? 0 : (size_t)sp * sizeof(float);
}

static int lrn_run(OpCtx *c)
{
    int64_t n, ch, sp, size;
    int rc = lrn_setup(c, &n, &ch, &sp, &size);
    if (rc < 0)
        return rc;
    if (c->scratch_bytes < (size_t)sp * sizeof(float) || (sp && !c->scratch))
        return op_fail(c, SH_E_STATE, "scratch is too small");
    const float alpha = node_attr_float(c->node, "alpha", 1e-4f);
    const float beta = node_attr_float(c->node, "beta", 0.75f);
    const float bias = node_attr_float(c->node, "bias", 1.0f);
    const int64_t before = (size - 1) / 2, after = size - 1 - before;
    const float *x = tensor_f32(c->in[0]);
    float *y = tensor_f32(c->out[0]), *sq = c->scratch;
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < ch; k++) {
            memset(sq, 0, (size_t)sp * sizeof *sq);
            const int64_t lo = k - before < 0 ? 0 : k - before, hi = k + after >= ch ? ch - 1 : k + after;
            for (int64_t j = lo; j <= hi; j++) {
                const float *restrict xp = x + (i * ch + j) * sp;
                for (int64_t t = 0; t < sp; t++)
                    sq[t] += xp[t] * xp[t];
            }
            const float *xp = x + (i * ch + k) * sp;
            float *yp = y + (i * ch + k) * sp;
            for (int64_t t = 0; t < sp; t++)
                yp[t] = xp[t] * powf(bias + alpha / (float)size * sq[t], -beta);
        }
    return 0;
}

static int64_t lrn_macs(const OpCtx *c)
{
    int64_t m = c->in[0]->numel, size = node_attr_int(c->node, "size", 1);
    return m >= 0 && sh_mul_ok(m, size, &m) ? m : -1;
}

/* ---- channel coupling ---- */

/* BatchNormalization and InstanceNormalization are per channel: their
 * parameters follow axis 1 exactly. */
static int per_channel_couple(CouplingCtx *cc)
{
    const Shape *s = cc_in_shape(cc, 0);
    for (int a = 0; a < s->rank; a++)
        cc_same(cc, 0, a, 0, a);
    for (int i = 1; i < cc_node(cc)->n_in; i++)
        if (cc_has_input(cc, i))
            cc_same(cc, i, 0, 0, 1);
    return 0;
}

/* LayerNormalization's statistics run over the normalized axes: removing
 * a channel there changes the others (approximate), and its scale and
 * bias follow those axes. */
static int layernorm_couple(CouplingCtx *cc)
{
    const Shape *s = cc_in_shape(cc, 0);
    int axis = shape_axis(node_attr_int(cc_node(cc), "axis", -1), s->rank);
    for (int a = 0; a < s->rank; a++)
        cc_same(cc, 0, a, 0, a);
    for (int a = axis < 0 ? s->rank : axis; a < s->rank; a++)
        cc_approx(cc, 0, a, "normalizes over these channels");
    for (int i = 1; i < 3; i++) {
        if (!cc_has_input(cc, i))
            continue;
        const Shape *p = cc_in_shape(cc, i);
        for (int a = 0; a < p->rank; a++)
            if (p->d[a] > 1)
                cc_same(cc, i, a, 0, s->rank - p->rank + a);
            else
                cc_consume(cc, i, a);
    }
    return 0;
}

/* LRN sums over neighbouring channels. */
static int lrn_couple(CouplingCtx *cc)
{
    couple_unary(cc);
    cc_approx(cc, 0, 1, "mixes neighbouring channels");
    return 0;
}

const OpDef sh_ops_norm[] = {
    {.name = "BatchNormalization", .min_in = 5, .max_in = 5, .min_out = 1, .max_out = 5,
     .infer = bn_infer, .forward = bn_run, .macs = numel_macs, .scratch = bn_scratch,
     .backward = batchnorm_op_backward, .bwd_scratch = batchnorm_op_bwd_scratch,
     .coupling = per_channel_couple, .grad_assign = 1u},
    {.name = "LayerNormalization", .min_in = 2, .max_in = 3, .min_out = 1, .max_out = 3,
     .infer = ln_infer, .forward = ln_run, .macs = numel_macs, .scratch = ln_scratch,
     .backward = layernorm_op_backward, .bwd_scratch = layernorm_op_bwd_scratch,
     .coupling = layernorm_couple},
    {.name = "InstanceNormalization", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1,
     .infer = in_infer, .forward = in_run, .macs = numel_macs, .backward = instancenorm_op_backward,
     .coupling = per_channel_couple},
    {.name = "LRN", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = lrn_infer,
     .forward = lrn_run, .macs = lrn_macs, .scratch = lrn_scratch,
     .coupling = lrn_couple},
    {.name = NULL},
};
