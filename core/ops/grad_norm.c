/* Normalization backward: BatchNormalization (batch statistics in
 * training, a per-channel affine map in inference), LayerNormalization and
 * InstanceNormalization. With xhat = (x - mean) * inv over a group of M
 * values normalized together and y = scale * xhat + B:
 *   dB += sum dy,  dscale += sum dy * xhat,
 *   dx += scale * inv / M * (M dy - sum dy - xhat sum(dy xhat))
 * when mean and inv come from x itself, dx += scale * inv * dy when they
 * are constants. Statistics are recomputed from x here rather than kept
 * from forward, the same way forward computes them. */
#include "grad.h"

#include "../error.h"
#include "kernels_simd.h"

#include <math.h>
#include <string.h>

static bool wants_output(const OpCtx *c, int i)
{
    return i < c->n_out && c->out[i] && c->node->out[i] >= 0;
}

/* Output i's gradient data if it flows, else NULL. */
static const float *gout_of(const OpCtx *c, Tensor **gout, int i)
{
    return i < c->n_out && wants_output(c, i) && gout[i] ? tensor_f32(gout[i]) : NULL;
}

static float *gin_of(const OpCtx *c, Tensor **gin, int i)
{
    return i < c->n_in && c->in[i] && gin[i] ? tensor_f32(gin[i]) : NULL;
}

enum { BLOCK = 4096 };

/* Over n values: sq += sum (x-m)^2, dyx += sum dy (x-m), dys += sum dy
 * (dy may be NULL: those two stay). One pass, eight lanes in float per
 * block of BLOCK, blocks added in double. */
static void centered_sums(const float *x, const float *dy, float m, int64_t n, double *sq, double *dyx,
                          double *dys)
{
    const f32x8 m8 = F32X8_SPLAT(m);
    for (int64_t b = 0; b < n; b += BLOCK) {
        const int64_t len = n - b < BLOCK ? n - b : BLOCK;
        const float *xb = x + b, *db = dy ? dy + b : NULL;
        f32x8 a_sq = {0}, a_dyx = {0}, a_dy = {0};
        int64_t i = 0;
        if (db)
            for (; i + 8 <= len; i += 8) {
                const f32x8 xc = *(const f32x8 *)(xb + i) - m8, g = *(const f32x8 *)(db + i);
                a_sq += xc * xc;
                a_dyx += g * xc;
                a_dy += g;
            }
        else
            for (; i + 8 <= len; i += 8) {
                const f32x8 xc = *(const f32x8 *)(xb + i) - m8;
                a_sq += xc * xc;
            }
        float l_sq[8], l_dyx[8], l_dy[8];
        memcpy(l_sq, &a_sq, sizeof l_sq);
        memcpy(l_dyx, &a_dyx, sizeof l_dyx);
        memcpy(l_dy, &a_dy, sizeof l_dy);
        for (int l = 0; l < 8; l++) {
            *sq += l_sq[l];
            if (db) {
                *dyx += l_dyx[l];
                *dys += l_dy[l];
            }
        }
        for (; i < len; i++) {
            const double xc = (double)xb[i] - m;
            *sq += xc * xc;
            if (db) {
                *dyx += db[i] * xc;
                *dys += db[i];
            }
        }
    }
}

/* Over n values shifted by s (a value from the data, so the squares do
 * not cancel): sx += sum (x-s), sxx += sum (x-s)^2, and if dy is given
 * sdy += sum dy, sdyx += sum dy (x-s). One pass, eight lanes in float per
 * block of BLOCK, blocks added in double. */
typedef struct {
    double sx, sxx, sdy, sdyx;
} ShiftedSums;

static void shifted_sums(const float *x, const float *dy, float s, int64_t n, ShiftedSums *acc)
{
    const f32x8 s8 = F32X8_SPLAT(s);
    for (int64_t b = 0; b < n; b += BLOCK) {
        const int64_t len = n - b < BLOCK ? n - b : BLOCK;
        const float *xb = x + b, *db = dy ? dy + b : NULL;
        f32x8 a_x = {0}, a_xx = {0}, a_dy = {0}, a_dyx = {0};
        int64_t i = 0;
        if (db)
            for (; i + 8 <= len; i += 8) {
                const f32x8 xc = *(const f32x8 *)(xb + i) - s8, g = *(const f32x8 *)(db + i);
                a_x += xc;
                a_xx += xc * xc;
                a_dy += g;
                a_dyx += g * xc;
            }
        else
            for (; i + 8 <= len; i += 8) {
                const f32x8 xc = *(const f32x8 *)(xb + i) - s8;
                a_x += xc;
                a_xx += xc * xc;
            }
        float l[4][8];
        memcpy(l[0], &a_x, sizeof l[0]);
        memcpy(l[1], &a_xx, sizeof l[1]);
        memcpy(l[2], &a_dy, sizeof l[2]);
        memcpy(l[3], &a_dyx, sizeof l[3]);
        for (int k = 0; k < 8; k++) {
            acc->sx += l[0][k];
            acc->sxx += l[1][k];
            acc->sdy += l[2][k];
            acc->sdyx += l[3][k];
        }
        for (; i < len; i++) {
            const double xc = (double)xb[i] - s;
            acc->sx += xc;
            acc->sxx += xc * xc;
            if (db) {
                acc->sdy += db[i];
                acc->sdyx += db[i] * xc;
            }
        }
    }
}

void batchnorm_batch_stats(float *mean, float *var, const float *x, int64_t n, int64_t ch, int64_t sp)
{
    const int64_t M = n * sp;
    for (int64_t k = 0; k < ch; k++) {
        ShiftedSums acc = {0};
        const float shift = M > 0 ? x[k * sp] : 0.0f;
        for (int64_t i = 0; i < n; i++)
            shifted_sums(x + (i * ch + k) * sp, NULL, shift, sp, &acc);
        const double d = M > 0 ? acc.sx / (double)M : 0, v = M > 0 ? acc.sxx / (double)M - d * d : 0;
        mean[k] = (float)(shift + d);
        var[k] = (float)(v > 0 ? v : 0);
    }
}

/* dx[i] += a * dy[i] + b * (x[i] - m) + c (dy may be NULL: a is then
 * unused); = instead of += when assign. */
static void affine3_add(float *restrict dx, const float *restrict dy, const float *restrict x, float a,
                        float b, float m, float c, int64_t n, bool assign)
{
    if (assign && dy)
        for (int64_t i = 0; i < n; i++)
            dx[i] = a * dy[i] + b * (x[i] - m) + c;
    else if (assign)
        for (int64_t i = 0; i < n; i++)
            dx[i] = b * (x[i] - m) + c;
    else if (dy)
        for (int64_t i = 0; i < n; i++)
            dx[i] += a * dy[i] + b * (x[i] - m) + c;
    else
        for (int64_t i = 0; i < n; i++)
            dx[i] += b * (x[i] - m) + c;
}

/* ---- BatchNormalization ---------------------------------------------- */

typedef struct {
    int64_t n, ch, sp;
    float eps, momentum;
    bool batch_stats; /* forward normalized with the batch's statistics */
    int n_extra;      /* extra outputs of this opset: 4 before 14, else 2 */
} BnGrad;

/* The same decisions as norm.c's bn_setup, from the same attributes. */
static int bn_grad_setup(const OpCtx *c, BnGrad *b)
{
    int rc = op_check_input(c, 0, SH_F32);
    if (rc < 0)
        return rc;
    const Shape *X = &c->in[0]->shape;
    char bx[64];
    if (X->rank < 2 || c->n_in < 5)
        return op_fail(c, SH_E_SHAPE, "X %s is not [N, C, ...] or inputs are missing", shape_str(X, bx, sizeof bx));
    b->n = X->d[0];
    b->ch = X->d[1];
    b->sp = shape_prod(X, 2, X->rank);
    for (int i = 1; i < 5; i++) {
        if ((rc = op_check_input(c, i, SH_F32)) < 0)
            return rc;
        if (c->in[i]->numel != b->ch)
            return op_fail(c, SH_E_SHAPE, "input %d has %lld values; X has %lld channels", i,
                           (long long)c->in[i]->numel, (long long)b->ch);
    }
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
    return 0;
}

size_t batchnorm_op_bwd_scratch(const OpCtx *c) { return 0; }

int batchnorm_op_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    BnGrad b = {0};
    int rc = bn_grad_setup(c, &b);
    if (rc < 0)
        return rc;
    const float *x = tensor_f32(c->in[0]), *scale = tensor_f32(c->in[1]);
    const float *rmean = tensor_f32(c->in[3]), *rvar = tensor_f32(c->in[4]);
    const float *dy = gout_of(c, gout, 0);
    float *dx = gin_of(c, gin, 0), *dscale = gin_of(c, gin, 1), *dbias = gin_of(c, gin, 2);
    /* the statistics outputs depend on x only through the batch statistics:
     * running = old * momentum + batch * (1 - momentum), the variance made
     * unbiased when shears trains (see norm.c); before opset 14 outputs 3
     * and 4 are the batch mean and variance themselves */
    const float *g_rmean = b.batch_stats ? gout_of(c, gout, 1) : NULL;
    const float *g_rvar = b.batch_stats ? gout_of(c, gout, 2) : NULL;
    const float *g_mean = b.batch_stats && b.n_extra == 4 ? gout_of(c, gout, 3) : NULL;
    const float *g_var = b.batch_stats && b.n_extra == 4 ? gout_of(c, gout, 4) : NULL;
    const int64_t M = b.n * b.sp;
    const double unbias = c->training && M > 1 ? (double)M / (double)(M - 1) : 1.0;
    if (!dy && !g_rmean && !g_rvar && !g_mean && !g_var) {
        if (dx && (c->grad_assign & 1u)) /* told to write dx: nothing flows, so zeros */
            memset(dx, 0, (size_t)c->in[0]->numel * sizeof *dx);
        return 0;
    }
    for (int64_t k = 0; k < b.ch; k++) {
        /* batch statistics: one pass of shifted sums over x (and dy); with
         * running statistics, the same sums around the running mean */
        const float shift = b.batch_stats ? (M > 0 ? x[k * b.sp] : 0.0f) : rmean[k];
        ShiftedSums acc = {0};
        for (int64_t i = 0; i < b.n; i++) {
            const int64_t at = (i * b.ch + k) * b.sp;
            shifted_sums(x + at, dy ? dy + at : NULL, shift, b.sp, &acc);
        }
        double mean = rmean[k], var = rvar[k];
        if (b.batch_stats && M > 0) {
            const double d = acc.sx / (double)M;
            mean = shift + d;
            var = acc.sxx / (double)M - d * d;
            var = var > 0 ? var : 0;
        }
        const double dys = acc.sdy, dyx = acc.sdyx - (mean - shift) * acc.sdy; /* sum dy (x - mean) */
        const float mf = (float)mean;
        const double inv = 1.0 / sqrt(var + b.eps);
        if (dbias)
            dbias[k] += (float)dys;
        if (dscale)
            dscale[k] += (float)(dyx * inv);
        if (!dx)
            continue;
        /* dx = a dy + bc (x - mean) + c0 */
        double a = scale[k] * inv, bc = 0, c0 = 0;
        if (b.batch_stats && M > 0) {
            const double gm = (g_rmean ? g_rmean[k] * (1.0 - b.momentum) : 0) + (g_mean ? g_mean[k] : 0);
            const double gv = (g_rvar ? g_rvar[k] * (1.0 - b.momentum) * unbias : 0) + (g_var ? g_var[k] : 0);
            bc = -a * inv * inv * dyx / (double)M + 2.0 * gv / (double)M;
            c0 = -a * dys / (double)M + gm / (double)M;
        }
        for (int64_t i = 0; i < b.n; i++) {
            const int64_t at = (i * b.ch + k) * b.sp;
            affine3_add(dx + at, dy ? dy + at : NULL, x + at, (float)a, (float)bc, mf, (float)c0, b.sp,
                        c->grad_assign & 1u);
        }
    }
    return 0;
}

/* ---- LayerNormalization ---------------------------------------------- */

typedef struct {
    int axis;
    int64_t rows, cols;
    float eps;
} LnGrad;

static int ln_grad_setup(const OpCtx *c, LnGrad *l)
{
    int rc = op_check_input(c, 0, SH_F32);
    if (rc < 0 || (rc = op_check_input(c, 1, SH_F32)) < 0)
        return rc;
    if (c->n_in > 2 && c->in[2] && (rc = op_check_input(c, 2, SH_F32)) < 0)
        return rc;
    const Shape *X = &c->in[0]->shape;
    char b[64];
    l->axis = shape_axis(node_attr_int(c->node, "axis", -1), X->rank);
    if (l->axis < 0)
        return op_fail(c, SH_E_FORMAT, "attribute 'axis' is out of range for X %s", shape_str(X, b, sizeof b));
    l->cols = shape_prod(X, l->axis, X->rank);
    l->rows = shape_prod(X, 0, l->axis);
    l->eps = node_attr_float(c->node, "epsilon", 1e-5f);
    /* forward checked that Scale and B broadcast onto dims [axis, rank) */
    for (int i = 1; i < 3 && i < c->n_in; i++)
        if (c->in[i] && (c->in[i]->shape.rank > X->rank - l->axis || c->in[i]->numel > l->cols))
            return op_fail(c, SH_E_SHAPE, "input %d does not broadcast onto X %s from axis %d", i,
                           shape_str(X, b, sizeof b), l->axis);
    return 0;
}

/* idx[j] = the element of t that column j of a row of X reads, t
 * broadcast (right-aligned) over X's dims [axis, rank). */
static void param_index(int64_t *idx, const Tensor *t, const Shape *X, int axis, int64_t cols)
{
    const int nd = X->rank - axis;
    for (int64_t j = 0; j < cols; j++) {
        int64_t rem = j, at = 0, stride = 1;
        for (int k = nd - 1; k >= 0; k--) {
            const int64_t dim = X->d[axis + k], pos = rem % dim;
            rem /= dim;
            const int ti = t->shape.rank - nd + k;
            if (ti >= 0) {
                if (t->shape.d[ti] != 1)
                    at += pos * stride;
                stride *= t->shape.d[ti];
            }
        }
        idx[j] = at;
    }
}

/* Scratch: xhat, scale expanded and the two parameter-gradient rows
 * (floats; 16 bytes per column keep what follows 8-byte aligned), then
 * the index maps of Scale and B. */
static size_t ln_scratch_bytes(int64_t cols)
{
    return (size_t)(4 * cols) * sizeof(float) + (size_t)(2 * cols) * sizeof(int64_t);
}

size_t layernorm_op_bwd_scratch(const OpCtx *c)
{
    LnGrad l = {0};
    return ln_grad_setup(c, &l) < 0 ? 0 : ln_scratch_bytes(l.cols);
}

int layernorm_op_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    LnGrad l = {0};
    int rc = ln_grad_setup(c, &l);
    if (rc < 0)
        return rc;
    const size_t need = ln_scratch_bytes(l.cols);
    if (c->scratch_bytes < need || (need && !c->scratch))
        return op_fail(c, SH_E_STATE, "backward needs %zu scratch bytes but was given %zu", need, c->scratch_bytes);
    const float *dy = gout_of(c, gout, 0), *g_mean = gout_of(c, gout, 1), *g_inv = gout_of(c, gout, 2);
    float *dx = gin_of(c, gin, 0), *dscale = gin_of(c, gin, 1), *dbias = gin_of(c, gin, 2);
    if (!dy && !g_mean && !g_inv)
        return 0;
    const Shape *X = &c->in[0]->shape;
    const int64_t cols = l.cols;
    float *xhat = c->scratch, *scale = xhat + cols, *acc_s = scale + cols, *acc_b = acc_s + cols;
    int64_t *idx_s = (int64_t *)(void *)(acc_b + cols), *idx_b = idx_s + cols;
    const float *sc = tensor_f32(c->in[1]);
    param_index(idx_s, c->in[1], X, l.axis, cols);
    for (int64_t j = 0; j < cols; j++)
        scale[j] = sc[idx_s[j]];
    /* parameter gradients sum over rows into acc rows, then onto the
     * parameters' own (possibly broadcast) shapes */
    memset(acc_s, 0, (size_t)(2 * cols) * sizeof *acc_s);
    const float *x = tensor_f32(c->in[0]);
    for (int64_t r = 0; r < l.rows; r++) {
        const float *restrict xr = x + r * cols;
        const float *restrict dyr = dy ? dy + r * cols : NULL;
        double sum = grad_sum(xr, cols), sq = 0, unused_a = 0, unused_b = 0;
        const double m = cols ? sum / (double)cols : 0;
        centered_sums(xr, NULL, (float)m, cols, &sq, &unused_a, &unused_b);
        /* the float statistics forward used */
        const float mf = (float)m, inv = (float)(1.0 / sqrt((cols ? sq / (double)cols : 0) + l.eps));
        double sum_g = 0, sum_gx = 0;
        for (int64_t j = 0; j < cols; j++)
            xhat[j] = (xr[j] - mf) * inv;
        if (dyr) {
            for (int64_t j = 0; j < cols; j++) {
                acc_s[j] += dyr[j] * xhat[j];
                acc_b[j] += dyr[j];
            }
            for (int64_t j = 0; j < cols; j++) {
                const double g = (double)dyr[j] * scale[j];
                sum_g += g;
                sum_gx += g * xhat[j];
            }
        }
        if (!dx || cols == 0)
            continue;
        /* dx = inv g + xhat (-inv sum(g xhat) - ginv inv^2) / cols + (gmean - inv sum g) / cols */
        const double gi = g_inv ? g_inv[r] : 0, gm = g_mean ? g_mean[r] : 0;
        const float kx = (float)((-inv * sum_gx - gi * inv * inv) / (double)cols);
        const float k0 = (float)((gm - inv * sum_g) / (double)cols);
        float *restrict dxr = dx + r * cols;
        if (dyr)
            for (int64_t j = 0; j < cols; j++)
                dxr[j] += inv * dyr[j] * scale[j] + kx * xhat[j] + k0;
        else
            for (int64_t j = 0; j < cols; j++)
                dxr[j] += kx * xhat[j] + k0;
    }
    if (dscale)
        for (int64_t j = 0; j < cols; j++)
            dscale[idx_s[j]] += acc_s[j];
    if (dbias) {
        param_index(idx_b, c->in[2], X, l.axis, cols);
        for (int64_t j = 0; j < cols; j++)
            dbias[idx_b[j]] += acc_b[j];
    }
    return 0;
}

/* ---- InstanceNormalization ------------------------------------------- */

int instancenorm_op_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    int rc = op_check_input(c, 0, SH_F32);
    if (rc < 0 || (rc = op_check_input(c, 1, SH_F32)) < 0)
        return rc;
    const Shape *X = &c->in[0]->shape;
    char b[64];
    if (X->rank < 3 || c->in[1]->numel != X->d[1])
        return op_fail(c, SH_E_SHAPE, "X %s and scale do not match for backward", shape_str(X, b, sizeof b));
    const float *dy = gout_of(c, gout, 0);
    if (!dy)
        return 0;
    const int64_t n = X->d[0], ch = X->d[1], sp = shape_prod(X, 2, X->rank);
    const float eps = node_attr_float(c->node, "epsilon", 1e-5f);
    const float *x = tensor_f32(c->in[0]), *scale = tensor_f32(c->in[1]);
    float *dx = gin_of(c, gin, 0), *dscale = gin_of(c, gin, 1), *dbias = gin_of(c, gin, 2);
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < ch; k++) {
            const int64_t at = (i * ch + k) * sp;
            const double m = sp ? grad_sum(x + at, sp) / (double)sp : 0;
            double sq = 0, dyx = 0, dys = 0;
            centered_sums(x + at, dy + at, (float)m, sp, &sq, &dyx, &dys);
            const double inv = 1.0 / sqrt((sp ? sq / (double)sp : 0) + eps);
            if (dbias)
                dbias[k] += (float)dys;
            if (dscale)
                dscale[k] += (float)(dyx * inv);
            if (!dx || sp == 0)
                continue;
            const double a = scale[k] * inv, bc = -a * inv * inv * dyx / (double)sp, c0 = -a * dys / (double)sp;
            affine3_add(dx + at, dy + at, x + at, (float)a, (float)bc, (float)m, (float)c0, sp, false);
        }
    return 0;
}
