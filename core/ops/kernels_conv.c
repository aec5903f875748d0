/* Fast convolution kernels. Four algorithms, chosen per shape and BLAS
 * thread count by conv_plan (measurements and reasons there):
 * - direct: a loop over a zero-padded plane for one input channel per
 *   group (depthwise);
 * - gemm per image: im2col + one sgemm per image and group, written
 *   straight into NCHW (1x1 stride-1 convs skip im2col);
 * - gemm batch: im2col of a chunk of images side by side + one wider sgemm,
 *   copied back to NCHW with the bias;
 * - gemm shift: stride-1 "same" convs without im2col, one sgemm per kernel
 *   tap over shifted views of a zero-separated copy of the input.
 * Bias and a fused ReLU are applied in the pass that writes NCHW output.
 * ConvTranspose is sgemm + col2im. Shapes are normalized to three spatial
 * dims (kernels.h). */
#include "kernels.h"
#include "kernels_simd.h"

#ifdef __AVX2__
#include <immintrin.h>
#endif

#include <cblas.h>
#include <limits.h>
#include <string.h>

static int64_t prod3(const int64_t *d) { return d[0] * d[1] * d[2]; }

static size_t align64(size_t n) { return (n + 63) / 64 * 64; }

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Output positions o in [*lo, *hi) whose input o*stride + off lies in [0, n_in). */
static void valid_range(int64_t *lo, int64_t *hi, int64_t off, int64_t stride, int64_t n_in,
                        int64_t n_out)
{
    /* stride 1 needs no (slow, 64-bit) division */
    int64_t a = stride == 1 ? -off : -floor_div(off, stride);
    int64_t b = stride == 1 ? n_in - off : floor_div(n_in - 1 - off, stride) + 1;
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
            zero_f32(dst, OH * OW);
            dst += OH * OW;
            continue;
        }
        for (int64_t oh = 0; oh < OH; oh++, dst += OW) {
            const int64_t ih = oh * s->stride[1] + offh;
            if (ih < 0 || ih >= IH) {
                zero_f32(dst, OW);
                continue;
            }
            const float *src = xc + (id * IH + ih) * IW;
            zero_f32(dst, wlo);
            if (sw == 1)
                copy_f32(dst + wlo, src + wlo + offw, whi - wlo);
            else
                for (int64_t ow = wlo; ow < whi; ow++)
                    dst[ow] = src[ow * sw + offw];
            zero_f32(dst + whi, OW - whi);
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

/* The block path's geometry of one kernel tap, the same for every channel:
 * output rows [hlo, hhi) come from one block copy of [qa, qb) shifted by
 * delta; columns outside [wlo, whi) of those rows must then be zeroed. */
typedef struct {
    int64_t offd, delta, hlo, hhi, wlo, whi, qa, qb;
} BlockTap;

static BlockTap block_tap(const ConvShape *s, int64_t offd, int64_t offh, int64_t offw)
{
    const int64_t IH = s->in[1], IW = s->in[2], OH = s->out[1], OW = s->out[2];
    BlockTap t = {.offd = offd, .delta = offh * IW + offw};
    valid_range(&t.hlo, &t.hhi, offh, 1, IH, OH);
    valid_range(&t.wlo, &t.whi, offw, 1, IW, OW);
    const int64_t q0 = t.hlo * OW, q1 = t.hhi * OW;
    t.qa = q0 > -t.delta ? q0 : -t.delta;
    t.qb = q1 < IH * IW - t.delta ? q1 : IH * IW - t.delta;
    t.qb = t.qb < t.qa ? t.qa : t.qb;
    return t;
}

static void im2col_row_block(float *dst, const float *xc, const ConvShape *s, const BlockTap *t)
{
    const int64_t ID = s->in[0], plane = s->in[1] * s->in[2];
    const int64_t OD = s->out[0], OHW = s->out[1] * s->out[2], OW = s->out[2];
    for (int64_t od = 0; od < OD; od++, dst += OHW) {
        const int64_t id = od * s->stride[0] + t->offd;
        if (id < 0 || id >= ID || t->hlo == t->hhi) {
            zero_f32(dst, OHW);
            continue;
        }
        const float *src = xc + id * plane;
        zero_f32(dst, t->qa);
        copy_f32(dst + t->qa, src + t->qa + t->delta, t->qb - t->qa);
        zero_f32(dst + t->qb, OHW - t->qb);
        if (t->wlo > 0 || t->whi < OW)
            for (int64_t oh = t->hlo; oh < t->hhi; oh++) {
                float *row = dst + oh * OW;
                for (int64_t ow = 0; ow < t->wlo; ow++)
                    row[ow] = 0.0f;
                for (int64_t ow = t->whi; ow < OW; ow++)
                    row[ow] = 0.0f;
            }
    }
}

static void im2col_general(float *col, int64_t ldc, const float *x, int64_t c, const ConvShape *s)
{
    const int64_t in_vol = s->in[0] * s->in[1] * s->in[2], taps = s->k[0] * s->k[1] * s->k[2];
    const bool block = same_width_stride1(s);
    /* tap-major: the row of (channel ch, tap t) is ch*taps + t */
    for (int64_t kd = 0, t = 0; kd < s->k[0]; kd++)
        for (int64_t kh = 0; kh < s->k[1]; kh++)
            for (int64_t kw = 0; kw < s->k[2]; kw++, t++) {
                const int64_t offd = kd * s->dil[0] - s->pad[0];
                const int64_t offh = kh * s->dil[1] - s->pad[1];
                const int64_t offw = kw * s->dil[2] - s->pad[2];
                const BlockTap bt = block ? block_tap(s, offd, offh, offw) : (BlockTap){0};
                for (int64_t ch = 0; ch < c; ch++) {
                    float *dst = col + (ch * taps + t) * ldc;
                    if (block)
                        im2col_row_block(dst, x + ch * in_vol, s, &bt);
                    else
                        im2col_row(dst, x + ch * in_vol, s, offd, offh, offw);
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

/* dst[i] = src[i] + bv, then max(0, .) if relu; dst may equal src. */
static void add_bias_relu(float *dst, const float *src, int64_t n, float bv, int relu)
{
    affine_relu_f32(dst, src, n, 1.0f, bv, relu);
}

/* y[r][0..cols) = max(0?, y + b[r]) for rows r; b may be NULL. */
static void bias_relu_rows(float *y, int64_t rows, int64_t cols, int64_t ldy, const float *b,
                           int relu)
{
    if (!b && !relu)
        return;
    for (int64_t r = 0; r < rows; r++)
        add_bias_relu(y + r * ldy, y + r * ldy, cols, b ? b[r] : 0.0f, relu);
}

/* Stride 1, no depth taps, at most MAX_TAPS taps: the padded-plane kernel applies. */
#define MAX_TAPS 64

static bool padded_direct_ok(const ConvShape *s)
{
    return s->k[0] == 1 && s->pad[0] == 0 && s->out[0] == s->in[0] && s->stride[1] == 1 &&
           s->stride[2] == 1 && s->k[1] * s->k[2] <= MAX_TAPS;
}

/* Padded plane PH x PW: output (oh, ow) reads (oh + kh*dh, ow + kw*dw). */
static int64_t padded_h(const ConvShape *s) { return (s->out[1] - 1) * s->stride[1] + (s->k[1] - 1) * s->dil[1] + 1; }
static int64_t padded_w(const ConvShape *s) { return (s->out[2] - 1) * s->stride[2] + (s->k[2] - 1) * s->dil[2] + 1; }

static size_t padded_direct_floats(const ConvShape *s)
{
    return (size_t)((padded_h(s) + s->out[1]) * padded_w(s) + 8);
}

/* xp [PH, PW] = the plane x [IH, IW] placed at (pad_h, pad_w), zeros around. */
static void pad_plane(float *xp, const float *x, const ConvShape *s)
{
    const int64_t PH = padded_h(s), PW = padded_w(s), IH = s->in[1], IW = s->in[2];
    int64_t clo, chi; /* padded columns that hold input columns */
    valid_range(&clo, &chi, -s->pad[2], 1, IW, PW);
    for (int64_t r = 0; r < PH; r++) {
        float *row = xp + r * PW;
        const int64_t ih = r - s->pad[1];
        if (ih < 0 || ih >= IH) {
            zero_f32(row, PW);
            continue;
        }
        zero_f32(row, clo);
        copy_f32(row + clo, x + ih * IW + clo - s->pad[2], chi - clo);
        zero_f32(row + chi, PW - chi);
    }
}

/* Small images with stride 1 (1-D and 2-D): im2col reads a zero-padded
 * copy of the image, so every column row is OH plain row copies with no
 * bounds logic. Measured about 20% faster than the block path on 7x7
 * planes, where per-row edge handling dominates; slower from 14x14 up. */
static bool padded_im2col_ok(const ConvShape *s)
{
    if (s->in[0] != 1 || s->out[0] != 1 || s->k[0] != 1)
        return false;
    if (s->stride[1] == 1 && s->stride[2] == 1)
        return s->out[2] < 12;
    return s->stride[1] == 2 && s->stride[2] == 2 && s->out[2] < 16;
}

/* + 16: stride-2 rows are read sixteen floats at a time */
static int64_t padded_image_floats(const ConvShape *s)
{
    return padded_im2col_ok(s) ? s->cin / s->group * padded_h(s) * padded_w(s) + 16 : 0;
}

/* dst[i] = src[2i] for i < n (n small): eight outputs from each sixteen
 * floats, the last vector overlapping the previous; reads up to src[15]
 * when n < 8, else up to src[2n-1]. */
static inline void copy_row_stride2(float *restrict dst, const float *restrict src, int64_t n)
{
    if (n >= 8) {
        int64_t i = 0;
        for (; i + 8 < n; i += 8) {
            const f32x8 lo = *(const f32x8 *)(src + 2 * i), hi = *(const f32x8 *)(src + 2 * i + 8);
            *(f32x8 *)(dst + i) = __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14);
        }
        const f32x8 lo = *(const f32x8 *)(src + 2 * (n - 8)), hi = *(const f32x8 *)(src + 2 * (n - 8) + 8);
        *(f32x8 *)(dst + n - 8) = __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14);
    } else {
        const f32x8 lo = *(const f32x8 *)src, hi = *(const f32x8 *)(src + 8);
        const f32x8 ev = __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14);
#ifdef __AVX2__
        const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_maskstore_ps(dst, _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), lanes), (__m256)ev);
        return;
#endif
        float lane[8];
        memcpy(lane, &ev, sizeof lane);
        if (n >= 4) { /* two overlapping halves */
            *(f32x4 *)dst = *(const f32x4 *)lane;
            *(f32x4 *)(dst + n - 4) = *(const f32x4 *)(lane + n - 4);
        } else
            for (int64_t i = 0; i < n; i++)
                dst[i] = lane[i];
    }
}

size_t im2col_pad_floats(const ConvShape *s) { return (size_t)padded_image_floats(s); }

void im2col(float *col, int64_t ldc, const float *x, int64_t c, const ConvShape *s, float *pad_buf)
{
    if (!pad_buf || !padded_im2col_ok(s)) {
        im2col_general(col, ldc, x, c, s);
        return;
    }
    const int64_t PH = padded_h(s), PW = padded_w(s), OH = s->out[1], OW = s->out[2];
    const int64_t taps = s->k[1] * s->k[2], in_vol = s->in[1] * s->in[2];
    for (int64_t ch = 0; ch < c; ch++)
        pad_plane(pad_buf + ch * PH * PW, x + ch * in_vol, s);
    const int64_t sh = s->stride[1], sw = s->stride[2];
    for (int64_t kh = 0, t = 0; kh < s->k[1]; kh++)
        for (int64_t kw = 0; kw < s->k[2]; kw++, t++)
            for (int64_t ch = 0; ch < c; ch++) {
                const float *src = pad_buf + ch * PH * PW + kh * s->dil[1] * PW + kw * s->dil[2];
                float *dst = col + (ch * taps + t) * ldc;
                if (sw == 1)
                    for (int64_t oh = 0; oh < OH; oh++)
                        copy_row(dst + oh * OW, src + oh * sh * PW, OW);
                else /* stride 2: every other element */
                    for (int64_t oh = 0; oh < OH; oh++)
                        copy_row_stride2(dst + oh * OW, src + oh * sh * PW, OW);
            }
}

/* ---- implicit GEMM over shifted views ("shift") ----------------------
 * For a stride-1 conv whose output has the input's size, copy a chunk of
 * images per channel into one buffer where rows are separated by zw zero
 * columns and images by zh zero rows. Then the input of every kernel tap
 * (kh, kw) for output position q of the chunk's grid is element q + off(t)
 * of that buffer: tap t's operand is a plain strided matrix [cin, n] and
 * the conv is KH*KW accumulating sgemms, with no im2col at all. The grid
 * also covers the zero separators, computed and dropped on the way out:
 * (IH+zh)(IW+zw)/(IH*IW) times the useful work (1.07 at 28x28 for 3x3,
 * 1.31 at 7x7), which costs less than im2col's nine-fold copy and,
 * unlike im2col, is all done by (multi-threaded) BLAS. */
typedef struct {
    int64_t zh, zw;     /* zero rows between images, zero columns between rows */
    int64_t rs, rows;   /* row stride IW+zw; grid rows per image IH+zh */
    int64_t chan;       /* buffer floats per channel */
} ShiftLayout;

bool conv_shift_ok(const ConvShape *s)
{
    if (s->in[0] != 1 || s->k[0] != 1 || s->out[1] != s->in[1] || s->out[2] != s->in[2] ||
        s->stride[1] != 1 || s->stride[2] != 1)
        return false;
    /* same-size output means pad + pad_end = (k-1)*dil; both must be >= 0 */
    for (int a = 1; a < 3; a++)
        if (s->pad[a] < 0 || s->pad[a] > (s->k[a] - 1) * s->dil[a])
            return false;
    return true;
}

static ShiftLayout shift_layout(const ConvShape *s, int64_t chunk)
{
    ShiftLayout l;
    const int64_t eh = (s->k[1] - 1) * s->dil[1] - s->pad[1], ew = (s->k[2] - 1) * s->dil[2] - s->pad[2];
    l.zh = s->pad[1] > eh ? s->pad[1] : eh;
    l.zw = s->pad[2] > ew ? s->pad[2] : ew;
    l.rs = s->in[2] + l.zw;
    l.rows = s->in[1] + l.zh;
    /* top separator, the images, reads past the last image's last row */
    l.chan = (l.zh + chunk * l.rows + 2) * l.rs + 2 * l.zw;
    return l;
}

/* Grid columns of a chunk of cnt images: up to the last image's last row. */
static int64_t shift_n(const ShiftLayout *l, const ConvShape *s, int64_t cnt)
{
    return ((cnt - 1) * l->rows + s->in[1]) * l->rs;
}

static int64_t shift_wt_floats(const ConvShape *s) { return s->cout * (s->cin / s->group) * prod3(s->k); }

static size_t shift_scratch(const ConvShape *s, int64_t chunk)
{
    const ShiftLayout l = shift_layout(s, chunk);
    return align64((size_t)shift_wt_floats(s) * sizeof(float)) +
           align64((size_t)(s->cin / s->group * l.chan) * sizeof(float)) +
           (size_t)(s->cout / s->group * shift_n(&l, s, chunk)) * sizeof(float);
}

/* ---- Winograd F(2x2, 3x3) -------------------------------------------
 * (Lavin and Gray, 2015.) A 2x2 block of outputs (a tile) comes from the
 * 4x4 block of input around it: Y = A^T [(G g G^T) . (B^T d B)] A, with .
 * elementwise. Summed over input channels, each of the 16 elementwise
 * positions xi becomes one GEMM  M_xi[cout, tiles] = U_xi[cout, cin] *
 * V_xi[cin, tiles]: 16 GEMMs with K = cin on a quarter of the columns
 * instead of one with K = 9*cin, so 2.25x fewer multiplies, all in BLAS.
 * The transforms only add, subtract and halve, so float error stays at
 * the direct conv's level. Tiles run eight at a time: the padded input
 * rows are split into even and odd columns, so the 4x4 blocks of eight
 * neighbouring tiles are plain vector loads. */
bool conv_winograd_ok(const ConvShape *s)
{
    return s->in[0] == 1 && s->out[0] == 1 && s->k[0] == 1 && s->k[1] == 3 && s->k[2] == 3 &&
           s->stride[1] == 1 && s->stride[2] == 1 && s->dil[1] == 1 && s->dil[2] == 1;
}

typedef struct {
    int64_t th, tw, tiles; /* tile rows, tile columns, tiles per image */
    int64_t rows, cols;    /* even/odd planes: 2*th+2 rows of cols, a multiple of 8 with
                              room for the eight-wide loads at tw+1 */
} WinoGeom;

static WinoGeom wino_geom(const ConvShape *s)
{
    WinoGeom g;
    g.th = (s->out[1] + 1) / 2;
    g.tw = (s->out[2] + 1) / 2;
    g.tiles = g.th * g.tw;
    g.rows = 2 * g.th + 2;
    g.cols = (g.tw + 7) / 8 * 8 + 8;
    return g;
}

/* Floats between the 16 planes of V: cin_g*T plus slack, because the input
 * transform always stores eight tiles and the last store of a channel may
 * run up to seven columns past the end of its row. */
static int64_t wino_vstride(const ConvShape *s, int64_t T) { return s->cin / s->group * T + 8; }

/* U [group][16][cout_g][cin_g], V [16][vstride], M [16][cout_g][T] (+8:
 * the output transform's last loads run past the final tile), then the
 * even/odd planes of one channel with the padded input row they come
 * from, then one filter block transposed. */
static size_t wino_scratch(const ConvShape *s, int64_t chunk)
{
    const WinoGeom g = wino_geom(s);
    const int64_t T = chunk * g.tiles, cin_g = s->cin / s->group, cout_g = s->cout / s->group;
    return align64((size_t)(16 * s->cout * cin_g) * sizeof(float)) +
           align64((size_t)(16 * wino_vstride(s, T)) * sizeof(float)) +
           align64((size_t)(16 * cout_g * T + 8) * sizeof(float)) +
           align64((size_t)(2 * g.rows * g.cols + 2 * g.cols + 16) * sizeof(float)) +
           (size_t)(9 * cin_g + 8) * sizeof(float);
}

/* U[g][xi][co][ci] = (G g G^T)[xi] for every 3x3 filter g, G = [1 0 0;
 * .5 .5 .5; .5 -.5 .5; 0 0 1]; eight input channels at a time from the
 * filter block transposed into tk [9][cin_g]. */
static void wino_weights(float *u, const float *w, const ConvShape *s, float *tk)
{
    const int64_t cin_g = s->cin / s->group, cout_g = s->cout / s->group;
    const f32x8 half = F32X8_SPLAT(0.5f);
    for (int64_t gr = 0; gr < s->group; gr++)
        for (int64_t co = 0; co < cout_g; co++) {
            const float *blk = w + (gr * cout_g + co) * cin_g * 9;
            for (int64_t ci = 0; ci < cin_g; ci++)
                for (int t = 0; t < 9; t++)
                    tk[t * cin_g + ci] = blk[ci * 9 + t];
            float *uc = u + (gr * 16 * cout_g + co) * cin_g; /* + xi*cout_g*cin_g + ci */
            for (int64_t ci = 0; ci < cin_g; ci += 8) {
                const int64_t n = cin_g - ci < 8 ? cin_g - ci : 8;
                f32x8 k[9], a[4][3];
                for (int t = 0; t < 9; t++) {
                    float lane[8] = {0};
                    memcpy(lane, tk + t * cin_g + ci, (size_t)n * sizeof(float));
                    memcpy(&k[t], lane, sizeof lane);
                }
                for (int j = 0; j < 3; j++) {
                    a[0][j] = k[j];
                    a[1][j] = half * (k[j] + k[3 + j] + k[6 + j]);
                    a[2][j] = half * (k[j] - k[3 + j] + k[6 + j]);
                    a[3][j] = k[6 + j];
                }
                for (int i = 0; i < 4; i++) {
                    const f32x8 b[4] = {a[i][0], half * (a[i][0] + a[i][1] + a[i][2]),
                                        half * (a[i][0] - a[i][1] + a[i][2]), a[i][2]};
                    for (int j = 0; j < 4; j++) {
                        float lane[8];
                        memcpy(lane, &b[j], sizeof lane);
                        memcpy(uc + (i * 4 + j) * cout_g * cin_g + ci, lane, (size_t)n * sizeof(float));
                    }
                }
            }
        }
}

/* The padded plane of one channel split into columns: eo[r][c] holds padded
 * column 2c, eo[rows + r][c] column 2c+1; padded (r, c) is input
 * (r - pad_h, c - pad_w), zero outside. prow: 2*cols + 16 floats. */
static void wino_split_plane(float *eo, const float *x, const ConvShape *s, const WinoGeom *g,
                             float *prow)
{
    const int64_t IH = s->in[1], IW = s->in[2], width = 2 * g->cols;
    float *even = eo, *odd = eo + g->rows * g->cols;
    int64_t clo, chi; /* padded columns that hold input columns */
    valid_range(&clo, &chi, -s->pad[2], 1, IW, width);
    for (int64_t r = 0; r < g->rows; r++) {
        const int64_t ih = r - s->pad[1];
        float *er = even + r * g->cols, *orow = odd + r * g->cols;
        if (ih < 0 || ih >= IH) {
            zero_f32(er, g->cols);
            zero_f32(orow, g->cols);
            continue;
        }
        zero_f32(prow, clo);
        copy_f32(prow + clo, x + ih * IW + clo - s->pad[2], chi - clo);
        zero_f32(prow + chi, width - chi);
        for (int64_t c = 0; c < g->cols; c += 8) {
            const f32x8 lo = *(const f32x8 *)(prow + 2 * c), hi = *(const f32x8 *)(prow + 2 * c + 8);
            *(f32x8 *)(er + c) = __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14);
            *(f32x8 *)(orow + c) = __builtin_shufflevector(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15);
        }
    }
}

/* V[xi][col0 + tile] = (B^T d B)[xi] for every tile of one channel of one
 * image, eight tiles per step, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1].
 * Always stores eight columns: the extra ones belong to tiles stored
 * later (or to the slack at the end), so callers go channel by channel
 * and, within a channel, image by image. */
/* V = B^T d B of eight tiles, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],
 * from the tiles' four input rows i split into columns: E[i] (even), O[i]
 * (odd), E1[i] and O1[i] (the next even and odd). Columns first (d B),
 * then rows; stored to the 16 planes at dst. A macro: vector arguments
 * change the ABI when AVX is off (the sanitizer build). */
#define WINO_INPUT_STORE(dst, vstride, E, O, E1, O1)                                    \
    do {                                                                             \
        f32x8 c_[4][4];                                                              \
        for (int i_ = 0; i_ < 4; i_++) {                                             \
            c_[i_][0] = E[i_] - E1[i_];                                              \
            c_[i_][1] = O[i_] + E1[i_];                                              \
            c_[i_][2] = E1[i_] - O[i_];                                              \
            c_[i_][3] = O[i_] - O1[i_];                                              \
        }                                                                            \
        for (int j_ = 0; j_ < 4; j_++) {                                             \
            *(f32x8 *)((dst) + (0 * 4 + j_) * (vstride)) = c_[0][j_] - c_[2][j_];    \
            *(f32x8 *)((dst) + (1 * 4 + j_) * (vstride)) = c_[1][j_] + c_[2][j_];    \
            *(f32x8 *)((dst) + (2 * 4 + j_) * (vstride)) = c_[2][j_] - c_[1][j_];    \
            *(f32x8 *)((dst) + (3 * 4 + j_) * (vstride)) = c_[1][j_] - c_[3][j_];    \
        }                                                                            \
    } while (0)

/* Four tiles a row (7x7 and 8x8 outputs): eight lanes hold two tile rows,
 * not one half-empty row. */
static void wino_input_rows4(float *v, int64_t vstride, int64_t col0, const float *eo, const WinoGeom *g)
{
    const float *even = eo, *odd = eo + g->rows * g->cols;
    for (int64_t th = 0; th < g->th; th += 2) {
        /* the second tile row past the last reads the planes' spare rows and
         * stores into tiles stored later (or the slack), like wino_input */
        const int64_t r0 = 2 * th, r1 = th + 1 < g->th ? 2 * th + 2 : 2 * th;
        f32x8 E[4], O[4], E1[4], O1[4];
        for (int i = 0; i < 4; i++) {
            const float *ea = even + (r0 + i) * g->cols, *oa = odd + (r0 + i) * g->cols;
            const float *eb = even + (r1 + i) * g->cols, *ob = odd + (r1 + i) * g->cols;
            E[i] = __builtin_shufflevector(*(const f32x4 *)ea, *(const f32x4 *)eb, 0, 1, 2, 3, 4, 5, 6, 7);
            O[i] = __builtin_shufflevector(*(const f32x4 *)oa, *(const f32x4 *)ob, 0, 1, 2, 3, 4, 5, 6, 7);
            E1[i] = __builtin_shufflevector(*(const f32x4 *)(ea + 1), *(const f32x4 *)(eb + 1), 0, 1, 2, 3, 4, 5, 6, 7);
            O1[i] = __builtin_shufflevector(*(const f32x4 *)(oa + 1), *(const f32x4 *)(ob + 1), 0, 1, 2, 3, 4, 5, 6, 7);
        }
        float *dst = v + col0 + th * 4;
        WINO_INPUT_STORE(dst, vstride, E, O, E1, O1);
    }
}

static void wino_input(float *v, int64_t vstride, int64_t col0, const float *eo, const WinoGeom *g)
{
    const float *even = eo, *odd = eo + g->rows * g->cols;
    if (g->tw == 4) {
        wino_input_rows4(v, vstride, col0, eo, g);
        return;
    }
    for (int64_t th = 0; th < g->th; th++)
        for (int64_t tw = 0; tw < g->tw; tw += 8) {
            float *dst = v + col0 + th * g->tw + tw;
            f32x8 E[4], O[4], E1[4], O1[4];
            for (int i = 0; i < 4; i++) {
                const float *er = even + (2 * th + i) * g->cols + tw, *orow = odd + (2 * th + i) * g->cols + tw;
                E[i] = *(const f32x8 *)er;
                O[i] = *(const f32x8 *)orow;
                E1[i] = *(const f32x8 *)(er + 1);
                O1[i] = *(const f32x8 *)(orow + 1);
            }
            WINO_INPUT_STORE(dst, vstride, E, O, E1, O1);
        }
}

/* Y = A^T m A (A^T = [1 1 1 0; 0 1 -1 -1]) of the eight tiles at src of
 * M (mstride floats between xi planes), plus b8, max(0, .) if relu: O0[i]
 * and O1[i] are the even and odd output columns of output row i of each
 * tile. A macro for the same reason as WINO_INPUT_STORE. */
#define WINO_OUTPUT_TILES(src, mstride, b8, relu, O0, O1)                                  \
    do {                                                                                \
        f32x8 r_[2][4]; /* A^T m: rows */                                               \
        for (int j_ = 0; j_ < 4; j_++) {                                                \
            const f32x8 q0 = *(const f32x8 *)((src) + (0 * 4 + j_) * (mstride));        \
            const f32x8 q1 = *(const f32x8 *)((src) + (1 * 4 + j_) * (mstride));        \
            const f32x8 q2 = *(const f32x8 *)((src) + (2 * 4 + j_) * (mstride));        \
            const f32x8 q3 = *(const f32x8 *)((src) + (3 * 4 + j_) * (mstride));        \
            r_[0][j_] = q0 + q1 + q2;                                                   \
            r_[1][j_] = q1 - q2 - q3;                                                   \
        }                                                                               \
        for (int i_ = 0; i_ < 2; i_++) { /* (A^T m) A: columns */                       \
            O0[i_] = r_[i_][0] + r_[i_][1] + r_[i_][2] + (b8);                          \
            O1[i_] = r_[i_][1] - r_[i_][2] - r_[i_][3] + (b8);                          \
            if (relu) {                                                                 \
                const f32x8 z_ = {0};                                                   \
                O0[i_] = (f32x8)((i32x8)O0[i_] & (O0[i_] > z_));                        \
                O1[i_] = (f32x8)((i32x8)O1[i_] & (O1[i_] > z_));                        \
            }                                                                           \
        }                                                                               \
    } while (0)

/* Four tiles a row: each eight lanes of M hold two tile rows. */
static void wino_output_rows4(float *y, const float *m, int64_t mstride, int64_t col0, const WinoGeom *g,
                              const ConvShape *s, float bias, int relu)
{
    const int64_t OH = s->out[1], OW = s->out[2], count = OW < 8 ? OW : 8;
    const f32x8 b8 = F32X8_SPLAT(bias);
    for (int64_t th = 0; th < g->th; th += 2) {
        f32x8 o0[2], o1[2];
        WINO_OUTPUT_TILES(m + col0 + th * 4, mstride, b8, relu, o0, o1);
        for (int i = 0; i < 2; i++) {
            /* lanes 0-3: tile row th, 4-7: th + 1; interleaved, eight outputs of a row each */
            const f32x8 lo = __builtin_shufflevector(o0[i], o1[i], 0, 8, 1, 9, 2, 10, 3, 11);
            const f32x8 hi = __builtin_shufflevector(o0[i], o1[i], 4, 12, 5, 13, 6, 14, 7, 15);
            float row[8];
            if (2 * th + i < OH) {
                memcpy(row, &lo, sizeof row);
                copy_row(y + (2 * th + i) * OW, row, count);
            }
            if (th + 1 < g->th && 2 * th + 2 + i < OH) {
                memcpy(row, &hi, sizeof row);
                copy_row(y + (2 * th + 2 + i) * OW, row, count);
            }
        }
    }
}

/* y (one output channel of one image) from M[xi][col0 + tile]. */
static void wino_output(float *y, const float *m, int64_t mstride, int64_t col0, const WinoGeom *g,
                        const ConvShape *s, float bias, int relu)
{
    const int64_t OH = s->out[1], OW = s->out[2];
    const f32x8 b8 = F32X8_SPLAT(bias);
    if (g->tw == 4) {
        wino_output_rows4(y, m, mstride, col0, g, s, bias, relu);
        return;
    }
    for (int64_t th = 0; th < g->th; th++)
        for (int64_t tw = 0; tw < g->tw; tw += 8) {
            const int64_t n = g->tw - tw < 8 ? g->tw - tw : 8;
            f32x8 o0[2], o1[2];
            WINO_OUTPUT_TILES(m + col0 + th * g->tw + tw, mstride, b8, relu, o0, o1);
            for (int i = 0; i < 2 && 2 * th + i < OH; i++) {
                /* interleave even and odd output columns: 16 outputs of one row */
                float *yr = y + (2 * th + i) * OW + 2 * tw;
                const f32x8 lo = __builtin_shufflevector(o0[i], o1[i], 0, 8, 1, 9, 2, 10, 3, 11);
                const f32x8 hi = __builtin_shufflevector(o0[i], o1[i], 4, 12, 5, 13, 6, 14, 7, 15);
                const int64_t count = 2 * (tw + n) <= OW ? 2 * n : 2 * n - 1; /* odd OW: half a tile */
                if (count == 16) {
                    *(f32x8 *)yr = lo;
                    *(f32x8 *)(yr + 8) = hi;
                } else {
                    float row[16];
                    memcpy(row, &lo, sizeof lo);
                    memcpy(row + 8, &hi, sizeof hi);
                    copy_row(yr, row, count);
                }
            }
        }
}

static void conv_winograd(float *y, const float *x, const float *w, const float *b, const ConvShape *s,
                          int64_t chunk, int relu, bool weights_ready, float *scratch)
{
    const int64_t cin_g = s->cin / s->group, cout_g = s->cout / s->group;
    const int64_t in_sp = s->in[1] * s->in[2], P = s->out[1] * s->out[2];
    const WinoGeom g = wino_geom(s);
    const int64_t Tmax = chunk * g.tiles;
    float *u = scratch;
    float *v = u + align64((size_t)(16 * s->cout * cin_g) * sizeof(float)) / sizeof(float);
    float *m = v + align64((size_t)(16 * wino_vstride(s, Tmax)) * sizeof(float)) / sizeof(float);
    float *eo = m + align64((size_t)(16 * cout_g * Tmax + 8) * sizeof(float)) / sizeof(float);
    float *prow = eo + 2 * g.rows * g.cols;
    float *tk = eo + align64((size_t)(2 * g.rows * g.cols + 2 * g.cols + 16) * sizeof(float)) / sizeof(float);
    if (!weights_ready)
        wino_weights(u, w, s, tk);
    for (int64_t n0 = 0; n0 < s->n; n0 += chunk) {
        const int64_t cnt = s->n - n0 < chunk ? s->n - n0 : chunk, T = cnt * g.tiles;
        const int64_t vstride = wino_vstride(s, T);
        for (int64_t gr = 0; gr < s->group; gr++) {
            for (int64_t ci = 0; ci < cin_g; ci++)
                for (int64_t j = 0; j < cnt; j++) {
                    wino_split_plane(eo, x + ((n0 + j) * s->cin + gr * cin_g + ci) * in_sp, s, &g, prow);
                    wino_input(v + ci * T, vstride, j * g.tiles, eo, &g);
                }
            for (int xi = 0; xi < 16; xi++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)cout_g, (int)T, (int)cin_g, 1.0f,
                            u + (gr * 16 + xi) * cout_g * cin_g, (int)cin_g, v + xi * vstride, (int)T, 0.0f,
                            m + xi * cout_g * T, (int)T);
            for (int64_t j = 0; j < cnt; j++)
                for (int64_t co = 0; co < cout_g; co++)
                    wino_output(y + ((n0 + j) * s->cout + gr * cout_g + co) * P, m + co * T, cout_g * T,
                                j * g.tiles, &g, s, b ? b[gr * cout_g + co] : 0.0f, relu);
        }
    }
}

/* ---- plans ----------------------------------------------------------- */

static bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

static int64_t gemm_k(const ConvShape *s) { return s->cin / s->group * prod3(s->k); }

bool conv_fits_blas(const ConvShape *s)
{
    if (s->cin / s->group == 1 && s->cout / s->group < 4) /* the direct loop: no BLAS */
        return true;
    /* prod3(out) * 2 leaves room for the shift algorithm's separators */
    return fits_int(gemm_k(s)) && fits_int(prod3(s->out) * 2 + 64) && fits_int(s->cout / s->group);
}

/* Scratch floats per image of the batch algorithm: its im2col columns and
 * its GEMM output. */
static int64_t batch_floats_per_image(const ConvShape *s)
{
    return (gemm_k(s) + s->cout / s->group) * prod3(s->out);
}

ConvPlan conv_plan_with(const ConvShape *s, ConvAlgo algo, int64_t chunk)
{
    ConvPlan p = {.algo = algo, .chunk = 1, .scratch_bytes = 0};
    const int64_t P = prod3(s->out);
    switch (algo) {
    case CONV_DIRECT:
        /* valid output column range per kernel column, or a padded plane
         * and the padded-width output grid */
        p.scratch_bytes = padded_direct_ok(s) ? padded_direct_floats(s) * sizeof(float)
                                              : (size_t)(2 * s->k[2]) * sizeof(int64_t);
        break;
    case CONV_GEMM_IMAGE:
        if (!is_pointwise(s))
            p.scratch_bytes = align64((size_t)(gemm_k(s) * P) * sizeof(float)) +
                              (size_t)padded_image_floats(s) * sizeof(float);
        break;
    case CONV_WINOGRAD: {
        const WinoGeom g = wino_geom(s);
        const int64_t per = 16 * (s->cin / s->group + s->cout / s->group) * g.tiles * (int64_t)sizeof(float);
        if (chunk <= 0)
            chunk = per > 0 ? (int64_t)(CONV_BATCH_SCRATCH_CAP / (size_t)per) : s->n;
        chunk = chunk > s->n ? s->n : chunk;
        chunk = chunk < 1 ? 1 : chunk;
        while (chunk > 1 && !fits_int(chunk * g.tiles))
            chunk /= 2;
        p.chunk = chunk;
        p.scratch_bytes = wino_scratch(s, chunk);
        break;
    }
    case CONV_WINOGRAD4: {
        const int64_t per = 36 * (s->cin / s->group + s->cout / s->group) * conv_winograd4_tiles(s) *
                            (int64_t)sizeof(float);
        if (chunk <= 0)
            chunk = per > 0 ? (int64_t)(CONV_BATCH_SCRATCH_CAP / (size_t)per) : s->n;
        chunk = chunk > s->n ? s->n : chunk;
        chunk = chunk < 1 ? 1 : chunk;
        while (chunk > 1 && !fits_int(chunk * conv_winograd4_tiles(s) + 8))
            chunk /= 2;
        p.chunk = chunk;
        p.scratch_bytes = conv_winograd4_scratch(s, chunk);
        break;
    }
    case CONV_GEMM_SHIFT: {
        const ShiftLayout one = shift_layout(s, 1);
        const int64_t per = (s->cin / s->group * one.rows * one.rs + s->cout / s->group * one.rows * one.rs) *
                            (int64_t)sizeof(float);
        if (chunk <= 0)
            chunk = per > 0 ? (int64_t)(CONV_BATCH_SCRATCH_CAP / (size_t)per) : s->n;
        chunk = chunk > s->n ? s->n : chunk;
        chunk = chunk < 1 ? 1 : chunk;
        while (chunk > 1 && !fits_int(shift_layout(s, chunk).chan))
            chunk /= 2;
        p.chunk = chunk;
        p.scratch_bytes = shift_scratch(s, chunk);
        break;
    }
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
                          align64((size_t)(s->cout / s->group * chunk * P) * sizeof(float)) +
                          (size_t)(is_pointwise(s) ? 0 : padded_image_floats(s)) * sizeof(float);
        break;
    }
    }
    return p;
}

/* The choices below were measured with tests/tools/conv_timing (and
 * head-to-head runs of the algorithms in one process) on Fashion-MNIST
 * sized layers: batch 64, 3x3, 16-128 channels, 28x28 to 7x7, 1 and 2
 * BLAS threads:
 * - Winograd is fastest wherever it applies with 16+ channels each side,
 *   about 30% under shift and im2col (28x28 to 7x7), in small chunks whose
 *   transformed tiles (V and M) take about 512 KB, on either thread count;
 *   with fewer channels its transforms cost what its GEMMs save;
 * - shift beats im2col wherever it applies (im2col's nine-fold copy is
 *   serial work of ours; shift leaves everything to BLAS), except on 7x7
 *   images with one thread, where its separators waste more than im2col
 *   costs;
 * - one thread wants small GEMMs that stay in L1/L2 (about 256 columns);
 *   more threads want wide ones to split (at least 8 images and about 1024
 *   columns per thread);
 * - im2col GEMMs run best with about 512 columns per thread. */
static int64_t chunk_for(int64_t target_n, int64_t per_image, int64_t n)
{
    int64_t c = per_image > 0 ? (target_n + per_image - 1) / per_image : 1;
    return c > n ? (n > 0 ? n : 1) : c;
}

ConvPlan conv_plan(const ConvShape *s, int threads)
{
    const int64_t P = prod3(s->out), cin_g = s->cin / s->group, cout_g = s->cout / s->group;
    threads = threads < 1 ? 1 : threads > CONV_PLAN_MAX_THREADS ? CONV_PLAN_MAX_THREADS : threads;
    /* depthwise (or nearly): a GEMM with M of 1-3 rows is mostly overhead */
    if (cin_g == 1 && cout_g < 4)
        return conv_plan_with(s, CONV_DIRECT, 0);
    /* Winograd's 16 GEMMs have N = tiles: with few tiles in all (one small
     * image) they are too thin, and plain GEMM wins */
    /* F(4x4,3x3) where its 36 GEMMs get enough tiles: 15-30% under F(2x2,3x3)
     * on 28x28 to 7x7 maps with 32-128 channels (V and M near 1 MB a chunk) */
    const bool wino = conv_winograd_ok(s) && cin_g >= 16 && cout_g >= 16 && P > 0;
    if (wino && conv_winograd4_tiles(s) * s->n >= 32) {
        const int64_t per = 36 * (cin_g + cout_g) * conv_winograd4_tiles(s) * (int64_t)sizeof(float);
        ConvPlan p = conv_plan_with(s, CONV_WINOGRAD4, ((int64_t)1 << 20) / per > 1 ? ((int64_t)1 << 20) / per : 1);
        if (p.scratch_bytes <= CONV_BATCH_SCRATCH_CAP)
            return p;
    }
    if (wino && wino_geom(s).tiles * s->n >= 64) {
        /* V and M (16 x (cin+cout) x tiles floats) near 512 KB */
        ConvPlan p = conv_plan_with(s, CONV_WINOGRAD, chunk_for(8192 / (cin_g + cout_g), wino_geom(s).tiles, s->n));
        if (p.scratch_bytes <= CONV_BATCH_SCRATCH_CAP)
            return p;
    }
    /* shift needs enough input channels: each tap's GEMM has K = cin/group */
    if (conv_shift_ok(s) && cin_g >= 8 && !is_pointwise(s) && P > 0) {
        const ShiftLayout l = shift_layout(s, 1);
        const bool wasteful = l.rows * l.rs * 5 > P * 6; /* separators > 20% */
        const bool hopeless = l.rows * l.rs > 2 * P || !fits_int(l.chan); /* wide dilations */
        if (!hopeless && (threads > 1 || !wasteful)) {
            int64_t chunk = chunk_for(threads > 1 ? 1024 * threads : 256, l.rows * l.rs, s->n);
            if (threads > 1 && chunk < 8 * threads) /* at least 8 images per thread */
                chunk = 8 * threads < s->n ? 8 * threads : s->n;
            ConvPlan p = conv_plan_with(s, CONV_GEMM_SHIFT, chunk);
            return p.scratch_bytes <= CONV_BATCH_SCRATCH_CAP ? p : conv_plan_with(s, CONV_GEMM_SHIFT, 0);
        }
    }
    const int64_t chunk = chunk_for(512 * threads, P, s->n);
    if (chunk <= 1)
        return conv_plan_with(s, CONV_GEMM_IMAGE, 0);
    ConvPlan p = conv_plan_with(s, CONV_GEMM_BATCH, chunk);
    if (p.scratch_bytes > CONV_BATCH_SCRATCH_CAP)
        p = conv_plan_with(s, CONV_GEMM_BATCH, 0);
    return p.chunk > 1 ? p : conv_plan_with(s, CONV_GEMM_IMAGE, 0);
}

size_t conv_scratch_bound(const ConvShape *s)
{
    size_t most = 0;
    for (int t = 1; t <= CONV_PLAN_MAX_THREADS; t++) {
        size_t b = conv_plan(s, t).scratch_bytes;
        most = b > most ? b : most;
    }
    return most;
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

/* One output plane from a padded input plane: every output of the
 * padded-width grid is the same fixed-offset dot product, so the loop is
 * branch-free and eight outputs wide; the grid's PW - OW extra columns per
 * row are computed and dropped when copying out. */
static void direct_plane(float *y, const float *xp, const float *w, float bias, const ConvShape *s,
                         float *grid, int relu)
{
    const int64_t PW = padded_w(s), OH = s->out[1], OW = s->out[2], taps = s->k[1] * s->k[2];
    const int64_t n = (OH - 1) * PW + OW;
    int64_t off[MAX_TAPS];
    for (int64_t kh = 0, t = 0; kh < s->k[1]; kh++)
        for (int64_t kw = 0; kw < s->k[2]; kw++, t++)
            off[t] = kh * s->dil[1] * PW + kw * s->dil[2];
    int64_t q = 0;
    for (; q + 8 <= n; q += 8) {
        f32x8 acc = F32X8_SPLAT(bias);
        for (int64_t t = 0; t < taps; t++)
            acc += w[t] * *(const f32x8 *)(xp + q + off[t]);
        *(f32x8 *)(grid + q) = acc;
    }
    for (; q < n; q++) {
        float acc = bias;
        for (int64_t t = 0; t < taps; t++)
            acc += w[t] * xp[q + off[t]];
        grid[q] = acc;
    }
    for (int64_t oh = 0; oh < OH; oh++) {
        float *yr = y + oh * OW;
        const float *gr = grid + oh * PW;
        if (relu)
            for (int64_t ow = 0; ow < OW; ow++)
                yr[ow] = gr[ow] > 0.0f ? gr[ow] : 0.0f;
        else
            copy_f32(yr, gr, OW);
    }
}

static void conv_direct(float *y, const float *x, const float *w, const float *b,
                        const ConvShape *s, int relu, float *scratch)
{
    const int64_t mult = s->cout / s->group, in_sp = prod3(s->in), P = prod3(s->out);
    const int64_t kvol = prod3(s->k);
    const bool padded = padded_direct_ok(s);
    int64_t *wrange = (int64_t *)(void *)scratch;
    float *xp = scratch, *grid = scratch + padded_h(s) * padded_w(s);
    if (!padded)
        for (int64_t kw = 0; kw < s->k[2]; kw++)
            valid_range(&wrange[2 * kw], &wrange[2 * kw + 1], kw * s->dil[2] - s->pad[2], s->stride[2],
                        s->in[2], s->out[2]);
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t d = 0; d < s->out[0]; d++) /* depth slices (padded path has no depth taps) */
            for (int64_t g = 0; g < s->group; g++) {
                const float *xg = x + (n * s->cin + g) * in_sp;
                if (padded)
                    pad_plane(xp, xg + d * s->in[1] * s->in[2], s);
                for (int64_t m = 0; m < mult; m++) {
                    const int64_t oc = g * mult + m;
                    float *yc = y + (n * s->cout + oc) * P;
                    const float bias = b ? b[oc] : 0.0f;
                    if (padded)
                        direct_plane(yc + d * s->out[1] * s->out[2], xp, w + oc * kvol, bias, s, grid, relu);
                    else if (d == 0)
                        direct_channel(yc, xg, w + oc * kvol, bias, s, wrange, relu);
                }
            }
}

static void conv_gemm_image(float *y, const float *x, const float *w, const float *b,
                            const ConvShape *s, int relu, float *col)
{
    const int64_t cin_g = s->cin / s->group, cout_g = s->cout / s->group;
    const int64_t K = gemm_k(s), P = prod3(s->out), in_sp = prod3(s->in);
    const bool pointwise = is_pointwise(s);
    float *pad_buf = padded_im2col_ok(s) ? col + align64((size_t)(K * P) * sizeof(float)) / sizeof(float) : NULL;
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t g = 0; g < s->group; g++) {
            const float *xg = x + (n * s->cin + g * cin_g) * in_sp;
            float *yg = y + (n * s->cout + g * cout_g) * P;
            if (!pointwise)
                im2col(col, P, xg, cin_g, s, pad_buf);
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
    float *pad_buf = !pointwise && padded_im2col_ok(s)
                         ? out + align64((size_t)(cout_g * chunk * P) * sizeof(float)) / sizeof(float)
                         : NULL;
    for (int64_t n0 = 0; n0 < s->n; n0 += chunk) {
        const int64_t cnt = s->n - n0 < chunk ? s->n - n0 : chunk, ld = cnt * P;
        for (int64_t g = 0; g < s->group; g++) {
            for (int64_t j = 0; j < cnt; j++) {
                const float *xg = x + ((n0 + j) * s->cin + g * cin_g) * in_sp;
                if (pointwise)
                    for (int64_t r = 0; r < cin_g; r++)
                        memcpy(col + r * ld + j * P, xg + r * P, (size_t)P * sizeof(float));
                else
                    im2col(col + j * P, ld, xg, cin_g, s, pad_buf);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)cout_g, (int)ld, (int)K, 1.0f,
                        w + g * cout_g * K, (int)K, col, (int)ld, 0.0f, out, (int)ld);
            for (int64_t oc = 0; oc < cout_g; oc++)
                for (int64_t j = 0; j < cnt; j++)
                    add_bias_relu(y + ((n0 + j) * s->cout + g * cout_g + oc) * P, out + oc * ld + j * P,
                                  P, b ? b[g * cout_g + oc] : 0.0f, relu);
        }
    }
}

static void conv_gemm_shift(float *y, const float *x, const float *w, const float *b,
                            const ConvShape *s, int64_t chunk, int relu, bool weights_ready, float *scratch)
{
    const int64_t cin_g = s->cin / s->group, cout_g = s->cout / s->group, taps = s->k[1] * s->k[2];
    const int64_t IH = s->in[1], IW = s->in[2], in_sp = IH * IW;
    const ShiftLayout l = shift_layout(s, chunk);
    float *wt = scratch;
    float *buf = wt + align64((size_t)shift_wt_floats(s) * sizeof(float)) / sizeof(float);
    float *out = buf + align64((size_t)(cin_g * l.chan) * sizeof(float)) / sizeof(float);
    /* weights tap-major: wt[g][t] is the [cout_g, cin_g] matrix of tap t */
    for (int64_t g = 0; g < s->group && !weights_ready; g++)
        for (int64_t t = 0; t < taps; t++)
            for (int64_t co = 0; co < cout_g; co++)
                for (int64_t ci = 0; ci < cin_g; ci++)
                    wt[((g * taps + t) * cout_g + co) * cin_g + ci] = w[((g * cout_g + co) * cin_g + ci) * taps + t];
    /* separators stay zero; each chunk overwrites only the image rows */
    memset(buf, 0, (size_t)(cin_g * l.chan) * sizeof *buf);
    for (int64_t n0 = 0; n0 < s->n; n0 += chunk) {
        const int64_t cnt = s->n - n0 < chunk ? s->n - n0 : chunk, n = shift_n(&l, s, cnt);
        for (int64_t g = 0; g < s->group; g++) {
            for (int64_t ci = 0; ci < cin_g; ci++)
                for (int64_t j = 0; j < cnt; j++) {
                    const float *xs = x + ((n0 + j) * s->cin + g * cin_g + ci) * in_sp;
                    float *dst = buf + ci * l.chan + (l.zh + j * l.rows) * l.rs + l.zw;
                    for (int64_t r = 0; r < IH; r++)
                        copy_f32(dst + r * l.rs, xs + r * IW, IW);
                }
            for (int64_t kh = 0, t = 0; kh < s->k[1]; kh++)
                for (int64_t kw = 0; kw < s->k[2]; kw++, t++) {
                    const int64_t off = (l.zh + kh * s->dil[1] - s->pad[1]) * l.rs + l.zw + kw * s->dil[2] - s->pad[2];
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)cout_g, (int)n, (int)cin_g, 1.0f,
                                wt + (g * taps + t) * cout_g * cin_g, (int)cin_g, buf + off, (int)l.chan,
                                t ? 1.0f : 0.0f, out, (int)n);
                }
            for (int64_t co = 0; co < cout_g; co++) {
                const float bv = b ? b[g * cout_g + co] : 0.0f;
                for (int64_t j = 0; j < cnt; j++) {
                    float *yc = y + ((n0 + j) * s->cout + g * cout_g + co) * in_sp;
                    const float *oc = out + co * n + j * l.rows * l.rs;
                    for (int64_t r = 0; r < IH; r++)
                        add_bias_relu(yc + r * IW, oc + r * l.rs, IW, bv, relu);
                }
            }
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
        conv_direct(y, x, w, b, s, relu, scratch);
        break;
    case CONV_GEMM_IMAGE:
        conv_gemm_image(y, x, w, b, s, relu, scratch);
        break;
    case CONV_GEMM_BATCH:
        conv_gemm_batch(y, x, w, b, s, p->chunk, relu, scratch);
        break;
    case CONV_GEMM_SHIFT:
        conv_gemm_shift(y, x, w, b, s, p->chunk, relu, p->weights_ready, scratch);
        break;
    case CONV_WINOGRAD:
        conv_winograd(y, x, w, b, s, p->chunk, relu, p->weights_ready, scratch);
        break;
    case CONV_WINOGRAD4:
        conv_winograd4(y, x, w, b, s, p->chunk, relu, p->weights_ready, scratch);
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
