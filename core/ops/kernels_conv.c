/* Fast convolution kernels: im2col + sgemm (per image, or over a chunk of
 * the batch so one large GEMM keeps every BLAS thread busy), a direct loop
 * for one input channel per group (depthwise), and ConvTranspose as sgemm +
 * col2im. Shapes are normalized to three spatial dims (kernels.h). */
#include "kernels.h"

#include <cblas.h>
#include <limits.h>
#include <string.h>

static int64_t prod3(const int64_t *d) { return d[0] * d[1] * d[2]; }

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Output positions o in [*lo, *hi) whose input o*stride + off lies in [0, n_in). */
static void valid_range(int64_t *lo, int64_t *hi, int64_t off, int64_t stride, int64_t n_in,
                        int64_t n_out)
{
    int64_t a = -floor_div(off, stride), b = floor_div(n_in - 1 - off, stride) + 1;
    a = a < 0 ? 0 : a > n_out ? n_out : a;
    b = b > n_out ? n_out : b;
    *lo = a;
    *hi = b < a ? a : b;
}

/* 1x1 kernel, stride 1, no padding: the input already is the column matrix. */
static bool is_pointwise(const ConvShape *s)
{
    for (int i = 0; i < 3; i++)
        if (s->k[i] != 1 || s->stride[i] != 1 || s->pad[i] != 0 || s->out[i] != s->in[i])
            return false;
    return true;
}

/* One im2col row (kernel tap kd, kh, kw of one channel) in general form:
 * output row by output row. */
static void im2col_row(float *dst, const float *xc, const ConvShape *s, int64_t offd, int64_t offh,
                       int64_t offw)
{
    const int64_t ID = s->in[0], IH = s->in[1], IW = s->in[2];
    const int64_t OD = s->out[0], OH = s->out[1], OW = s->out[2];
    const int64_t sw = s->stride[2];
    int64_t wlo, whi;
    valid_range(&wlo, &whi, offw, sw, IW, OW);
    for (int64_t od = 0; od < OD; od++) {
        const int64_t id = od * s->stride[0] + offd;
        if (id < 0 || id >= ID) {
            memset(dst, 0, (size_t)(OH * OW) * sizeof *dst);
            dst += OH * OW;
            continue;
        }
        for (int64_t oh = 0; oh < OH; oh++, dst += OW) {
            const int64_t ih = oh * s->stride[1] + offh;
            if (ih < 0 || ih >= IH) {
                memset(dst, 0, (size_t)OW * sizeof *dst);
                continue;
            }
            const float *src = xc + (id * IH + ih) * IW;
            memset(dst, 0, (size_t)wlo * sizeof *dst);
            if (sw == 1)
                memcpy(dst + wlo, src + wlo + offw, (size_t)(whi - wlo) * sizeof *dst);
            else
                for (int64_t ow = wlo; ow < whi; ow++)
                    dst[ow] = src[ow * sw + offw];
            memset(dst + whi, 0, (size_t)(OW - whi) * sizeof *dst);
        }
    }
}

/* Stride 1 in H and W with OW == IW (a "same" width): output position
 * oh*OW + ow reads input (oh + offh)*IW + ow + offw, one constant shift of
 * the flattened plane. So each depth slice is one block copy, then the
 * few edge columns whose shifted read wrapped into a neighbouring row are
 * zeroed. This is the common 3x3/pad 1 case and most of im2col's cost. */
static bool same_width_stride1(const ConvShape *s)
{
    return s->stride[1] == 1 && s->stride[2] == 1 && s->out[2] == s->in[2];
}

static void im2col_row_shift(float *dst, const float *xc, const ConvShape *s, int64_t offd,
                             int64_t offh, int64_t offw)
{
    const int64_t ID = s->in[0], IH = s->in[1], IW = s->in[2];
    const int64_t OD = s->out[0], OH = s->out[1], OW = s->out[2];
    const int64_t plane = IH * IW;
    int64_t hlo, hhi, wlo, whi;
    valid_range(&hlo, &hhi, offh, 1, IH, OH);
    valid_range(&wlo, &whi, offw, 1, IW, OW);
    for (int64_t od = 0; od < OD; od++, dst += OH * OW) {
        const int64_t id = od * s->stride[0] + offd;
        if (id < 0 || id >= ID || hlo == hhi) {
            memset(dst, 0, (size_t)(OH * OW) * sizeof *dst);
            continue;
        }
        const float *src = xc + id * plane;
        const int64_t delta = offh * IW + offw;
        /* rows [hlo, hhi) as one block, clipped to the source plane */
        int64_t q0 = hlo * OW, q1 = hhi * OW;
        int64_t qa = q0 > -delta ? q0 : -delta, qb = q1 < plane - delta ? q1 : plane - delta;
        qb = qb < qa ? qa : qb;
        memset(dst, 0, (size_t)qa * sizeof *dst);
        memcpy(dst + qa, src + qa + delta, (size_t)(qb - qa) * sizeof *dst);
        memset(dst + qb, 0, (size_t)(OH * OW - qb) * sizeof *dst);
        if (wlo > 0 || whi < OW)
            for (int64_t oh = hlo; oh < hhi; oh++) {
                float *row = dst + oh * OW;
                for (int64_t ow = 0; ow < wlo; ow++)
                    row[ow] = 0.0f;
                for (int64_t ow = whi; ow < OW; ow++)
                    row[ow] = 0.0f;
            }
    }
}

void im2col(float *col, int64_t ldc, const float *x, int64_t c, const ConvShape *s)
{
    const int64_t in_vol = s->in[0] * s->in[1] * s->in[2];
    const bool shift = same_width_stride1(s);
    int64_t row = 0;
    for (int64_t ch = 0; ch < c; ch++) {
        const float *xc = x + ch * in_vol;
        for (int64_t kd = 0; kd < s->k[0]; kd++)
            for (int64_t kh = 0; kh < s->k[1]; kh++)
                for (int64_t kw = 0; kw < s->k[2]; kw++, row++) {
                    const int64_t offd = kd * s->dil[0] - s->pad[0];
                    const int64_t offh = kh * s->dil[1] - s->pad[1];
                    const int64_t offw = kw * s->dil[2] - s->pad[2];
                    if (shift)
                        im2col_row_shift(col + row * ldc, xc, s, offd, offh, offw);
                    else
                        im2col_row(col + row * ldc, xc, s, offd, offh, offw);
                }
    }
}

void col2im_add(float *x, const float *col, int64_t ldc, int64_t c, const ConvShape *s)
{
    const int64_t ID = s->in[0], IH = s->in[1], IW = s->in[2];
    const int64_t OD = s->out[0], OH = s->out[1], OW = s->out[2];
    const int64_t sw = s->stride[2];
    int64_t row = 0;
    for (int64_t ch = 0; ch < c; ch++) {
        float *xc = x + ch * ID * IH * IW;
        for (int64_t kd = 0; kd < s->k[0]; kd++)
            for (int64_t kh = 0; kh < s->k[1]; kh++)
                for (int64_t kw = 0; kw < s->k[2]; kw++, row++) {
                    const float *src = col + row * ldc;
                    const int64_t offd = kd * s->dil[0] - s->pad[0];
                    const int64_t offh = kh * s->dil[1] - s->pad[1];
                    const int64_t offw = kw * s->dil[2] - s->pad[2];
                    int64_t wlo, whi;
                    valid_range(&wlo, &whi, offw, sw, IW, OW);
                    for (int64_t od = 0; od < OD; od++) {
                        const int64_t id = od * s->stride[0] + offd;
                        if (id < 0 || id >= ID) {
                            src += OH * OW;
                            continue;
                        }
                        for (int64_t oh = 0; oh < OH; oh++, src += OW) {
                            const int64_t ih = oh * s->stride[1] + offh;
                            if (ih < 0 || ih >= IH)
                                continue;
                            float *dst = xc + (id * IH + ih) * IW;
                            for (int64_t ow = wlo; ow < whi; ow++)
                                dst[ow * sw + offw] += src[ow];
                        }
                    }
                }
    }
}

/* y[r][0..cols) = max(0?, y + b[r]) for rows r; b may be NULL. */
static void bias_relu_rows(float *y, int64_t rows, int64_t cols, int64_t ldy, const float *b,
                           int relu)
{
    if (!b && !relu)
        return;
    for (int64_t r = 0; r < rows; r++) {
        float *restrict yr = y + r * ldy;
        const float bv = b ? b[r] : 0.0f;
        if (relu)
            for (int64_t i = 0; i < cols; i++) {
                float v = yr[i] + bv;
                yr[i] = v > 0.0f ? v : 0.0f;
            }
        else
            for (int64_t i = 0; i < cols; i++)
                yr[i] += bv;
    }
}

/* dst[i] = max(0?, src[i] + bv): the batch algorithm's copy back to NCHW. */
static void copy_bias_relu(float *restrict dst, const float *restrict src, int64_t n, float bv,
                           int relu)
{
    if (relu)
        for (int64_t i = 0; i < n; i++) {
            float v = src[i] + bv;
            dst[i] = v > 0.0f ? v : 0.0f;
        }
    else
        for (int64_t i = 0; i < n; i++)
            dst[i] = src[i] + bv;
}

/* ---- plans ----------------------------------------------------------- */

static bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

static int64_t gemm_k(const ConvShape *s) { return s->cin / s->group * prod3(s->k); }

bool conv_fits_blas(const ConvShape *s)
{
    return fits_int(gemm_k(s)) && fits_int(prod3(s->out)) && fits_int(s->cout / s->group);
}

/* Scratch floats per image of the batch algorithm: its im2col columns and
 * its GEMM output. */
static int64_t batch_floats_per_image(const ConvShape *s)
{
    return (gemm_k(s) + s->cout / s->group) * prod3(s->out);
}

static size_t align64(size_t n) { return (n + 63) / 64 * 64; }

ConvPlan conv_plan_with(const ConvShape *s, ConvAlgo algo, int64_t chunk)
{
    ConvPlan p = {.algo = algo, .chunk = 1, .scratch_bytes = 0};
    const int64_t P = prod3(s->out);
    switch (algo) {
    case CONV_DIRECT:
        /* valid output column range per kernel column */
        p.scratch_bytes = (size_t)(2 * s->k[2]) * sizeof(int64_t);
        break;
    case CONV_GEMM_IMAGE:
        if (!is_pointwise(s))
            p.scratch_bytes = (size_t)(gemm_k(s) * P) * sizeof(float);
        break;
    case CONV_GEMM_BATCH: {
        int64_t per = batch_floats_per_image(s) * (int64_t)sizeof(float);
        if (chunk <= 0) {
            chunk = per > 0 ? (int64_t)(CONV_BATCH_SCRATCH_CAP / (size_t)per) : s->n;
            chunk = chunk < 1 ? 1 : chunk;
        }
        chunk = chunk > s->n ? s->n : chunk;
        chunk = chunk < 1 ? 1 : chunk;
        while (chunk > 1 && !fits_int(chunk * P)) /* one GEMM's N must fit an int */
            chunk /= 2;
        p.chunk = chunk;
        p.scratch_bytes = align64((size_t)(gemm_k(s) * chunk * P) * sizeof(float)) +
                          (size_t)(s->cout / s->group * chunk * P) * sizeof(float);
        break;
    }
    }
    return p;
}

ConvPlan conv_plan(const ConvShape *s)
{
    const int64_t P = prod3(s->out);
    if (s->cin / s->group == 1)
        return conv_plan_with(s, CONV_DIRECT, 0);
    /* Small images make thin per-image GEMMs (N = P) that BLAS runs far
     * below its peak and on one thread; batching them makes N = chunk*P. */
    if (s->n > 1 && P < 4096)
        return conv_plan_with(s, CONV_GEMM_BATCH, 0);
    return conv_plan_with(s, CONV_GEMM_IMAGE, 0);
}

/* ---- forward --------------------------------------------------------- */

/* One output channel of a conv whose group has a single input channel. */
static void direct_channel(float *restrict y, const float *restrict x, const float *restrict w,
                           float bias, const ConvShape *s, const int64_t *wrange, int relu)
{
    const int64_t ID = s->in[0], IH = s->in[1], IW = s->in[2];
    const int64_t OD = s->out[0], OH = s->out[1], OW = s->out[2];
    const int64_t KD = s->k[0], KH = s->k[1], KW = s->k[2], sw = s->stride[2];
    for (int64_t od = 0; od < OD; od++)
        for (int64_t oh = 0; oh < OH; oh++) {
            float *restrict yr = y + (od * OH + oh) * OW;
            for (int64_t ow = 0; ow < OW; ow++)
                yr[ow] = bias;
            for (int64_t kd = 0; kd < KD; kd++) {
                const int64_t id = od * s->stride[0] + kd * s->dil[0] - s->pad[0];
                if (id < 0 || id >= ID)
                    continue;
                for (int64_t kh = 0; kh < KH; kh++) {
                    const int64_t ih = oh * s->stride[1] + kh * s->dil[1] - s->pad[1];
                    if (ih < 0 || ih >= IH)
                        continue;
                    const float *xr = x + (id * IH + ih) * IW;
                    const float *wr = w + (kd * KH + kh) * KW;
                    for (int64_t kw = 0; kw < KW; kw++) {
                        const float wv = wr[kw];
                        const int64_t off = kw * s->dil[2] - s->pad[2];
                        const int64_t lo = wrange[2 * kw], hi = wrange[2 * kw + 1];
                        if (sw == 1) {
                            for (int64_t ow = lo; ow < hi; ow++)
                                yr[ow] += wv * xr[ow + off];
                        } else {
                            for (int64_t ow = lo; ow < hi; ow++)
                                yr[ow] += wv * xr[ow * sw + off];
                        }
                    }
                }
            }
            if (relu)
                for (int64_t ow = 0; ow < OW; ow++)
                    yr[ow] = yr[ow] > 0.0f ? yr[ow] : 0.0f;
        }
}

static void conv_direct(float *y, const float *x, const float *w, const float *b,
                        const ConvShape *s, int relu, int64_t *wrange)
{
    const int64_t mult = s->cout / s->group, in_sp = prod3(s->in), P = prod3(s->out);
    const int64_t kvol = prod3(s->k);
    for (int64_t kw = 0; kw < s->k[2]; kw++)
        valid_range(&wrange[2 * kw], &wrange[2 * kw + 1], kw * s->dil[2] - s->pad[2], s->stride[2],
                    s->in[2], s->out[2]);
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t g = 0; g < s->group; g++)
            for (int64_t m = 0; m < mult; m++) {
                const int64_t oc = g * mult + m;
                direct_channel(y + (n * s->cout + oc) * P, x + (n * s->cin + g) * in_sp,
                               w + oc * kvol, b ? b[oc] : 0.0f, s, wrange, relu);
            }
}

static void conv_gemm_image(float *y, const float *x, const float *w, const float *b,
                            const ConvShape *s, int relu, float *col)
{
    const int64_t cin_g = s->cin / s->group, cout_g = s->cout / s->group;
    const int64_t K = gemm_k(s), P = prod3(s->out), in_sp = prod3(s->in);
    const bool pointwise = is_pointwise(s);
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t g = 0; g < s->group; g++) {
            const float *xg = x + (n * s->cin + g * cin_g) * in_sp;
            float *yg = y + (n * s->cout + g * cout_g) * P;
            if (!pointwise)
                im2col(col, P, xg, cin_g, s);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)cout_g, (int)P, (int)K, 1.0f,
                        w + g * cout_g * K, (int)K, pointwise ? xg : col, (int)P, 0.0f, yg, (int)P);
            bias_relu_rows(yg, cout_g, P, P, b ? b + g * cout_g : NULL, relu);
        }
}

static void conv_gemm_batch(float *y, const float *x, const float *w, const float *b,
                            const ConvShape *s, int64_t chunk, int relu, float *scratch)
{
    const int64_t cin_g = s->cin / s->group, cout_g = s->cout / s->group;
    const int64_t K = gemm_k(s), P = prod3(s->out), in_sp = prod3(s->in);
    const bool pointwise = is_pointwise(s);
    float *col = scratch;
    float *out = scratch + align64((size_t)(K * chunk * P) * sizeof(float)) / sizeof(float);
    for (int64_t n0 = 0; n0 < s->n; n0 += chunk) {
        const int64_t cnt = s->n - n0 < chunk ? s->n - n0 : chunk, ld = cnt * P;
        for (int64_t g = 0; g < s->group; g++) {
            for (int64_t j = 0; j < cnt; j++) {
                const float *xg = x + ((n0 + j) * s->cin + g * cin_g) * in_sp;
                if (pointwise)
                    for (int64_t r = 0; r < cin_g; r++)
                        memcpy(col + r * ld + j * P, xg + r * P, (size_t)P * sizeof(float));
                else
                    im2col(col + j * P, ld, xg, cin_g, s);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)cout_g, (int)ld, (int)K, 1.0f,
                        w + g * cout_g * K, (int)K, col, (int)ld, 0.0f, out, (int)ld);
            for (int64_t oc = 0; oc < cout_g; oc++)
                for (int64_t j = 0; j < cnt; j++)
                    copy_bias_relu(y + ((n0 + j) * s->cout + g * cout_g + oc) * P, out + oc * ld + j * P,
                                   P, b ? b[g * cout_g + oc] : 0.0f, relu);
        }
    }
}

void conv_forward(float *y, const float *x, const float *w, const float *b, const ConvShape *s,
                  const ConvPlan *p, int relu, float *scratch)
{
    if (s->n == 0 || s->cout == 0 || prod3(s->out) == 0)
        return;
    if (gemm_k(s) == 0) { /* no input channels: bias only */
        for (int64_t n = 0; n < s->n; n++) {
            float *yn = y + n * s->cout * prod3(s->out);
            for (int64_t i = 0; i < s->cout * prod3(s->out); i++)
                yn[i] = 0.0f;
            bias_relu_rows(yn, s->cout, prod3(s->out), prod3(s->out), b, relu);
        }
        return;
    }
    switch (p->algo) {
    case CONV_DIRECT:
        conv_direct(y, x, w, b, s, relu, (int64_t *)(void *)scratch);
        break;
    case CONV_GEMM_IMAGE:
        conv_gemm_image(y, x, w, b, s, relu, scratch);
        break;
    case CONV_GEMM_BATCH:
        conv_gemm_batch(y, x, w, b, s, p->chunk, relu, scratch);
        break;
    }
}

/* ---- ConvTranspose --------------------------------------------------- */

/* ConvTranspose is the adjoint of the conv from its output back to its
 * input: the same kernel, stride, dilation and begin padding. */
static ConvShape adjoint_conv(const ConvShape *s)
{
    ConvShape a = *s;
    a.cin = s->cout;
    a.cout = s->cin;
    for (int i = 0; i < 3; i++) {
        a.in[i] = s->out[i];
        a.out[i] = s->in[i];
    }
    return a;
}

bool conv_transpose_fits_blas(const ConvShape *s)
{
    return fits_int(s->cout / s->group * prod3(s->k)) && fits_int(prod3(s->in)) &&
           fits_int(s->cin / s->group);
}

size_t conv_transpose_scratch(const ConvShape *s)
{
    return (size_t)(s->cout / s->group * prod3(s->k) * prod3(s->in)) * sizeof(float);
}

void conv_transpose_forward(float *y, const float *x, const float *w, const float *b,
                            const ConvShape *s, float *col)
{
    const int64_t cin_g = s->cin / s->group, cout_g = s->cout / s->group;
    const int64_t Kc = cout_g * prod3(s->k), Pin = prod3(s->in), Pout = prod3(s->out);
    const ConvShape adj = adjoint_conv(s);
    for (int64_t n = 0; n < s->n; n++) {
        for (int64_t oc = 0; oc < s->cout; oc++) {
            float *yc = y + (n * s->cout + oc) * Pout;
            const float bv = b ? b[oc] : 0.0f;
            for (int64_t i = 0; i < Pout; i++)
                yc[i] = bv;
        }
        if (Kc == 0 || Pin == 0)
            continue;
        for (int64_t g = 0; g < s->group; g++) {
            const float *xg = x + (n * s->cin + g * cin_g) * Pin;
            if (cin_g == 0)
                memset(col, 0, (size_t)(Kc * Pin) * sizeof(float));
            else
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)Kc, (int)Pin, (int)cin_g, 1.0f,
                            w + g * cin_g * Kc, (int)Kc, xg, (int)Pin, 0.0f, col, (int)Pin);
            col2im_add(y + (n * s->cout + g * cout_g) * Pout, col, Pin, cout_g, &adj);
        }
    }
}
