/* Conv and ConvTranspose backward. For a conv y = W * x (per group, with
 * col = im2col(x) the [cin_g*k, positions] column matrix):
 *   dW += dY col^T,  dX += col2im(W^T dY),  dB += sum of dY.
 * ConvTranspose is the adjoint of the conv from its output back to its
 * input, so its backward is that conv run forward on dY:
 *   dX += W im2col(dY),  dW += X im2col(dY)^T.
 * Shapes are normalized to three spatial dims (kernels.h). */
#include "grad.h"

#include "../error.h"
#include "conv.h"
#include "kernels_simd.h"

#include <cblas.h>
#include <limits.h>
#include <string.h>

static int64_t prod3(const int64_t *d) { return d[0] * d[1] * d[2]; }

static size_t align64(size_t n) { return (n + 63) / 64 * 64; }

/* Bytes of n floats, rounded up so the next buffer stays 64-byte aligned. */
static size_t float_bytes(int64_t n) { return align64((size_t)n * sizeof(float)); }

static bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

/* ---- shared sums ----------------------------------------------------- */

enum { SUM_BLOCK = 4096 };

/* The eight lanes' sum, pairwise. (By pointer: vector arguments change
 * the ABI when AVX is off, in the sanitizer build.) */
static float lanes_sum(const f32x8 *v)
{
    float l[8];
    memcpy(l, v, sizeof l);
    return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

double grad_sum(const float *x, int64_t n)
{
    double total = 0;
    int64_t i = 0;
    while (i + 8 <= n) {
        const int64_t end = n - i < SUM_BLOCK ? n : i + SUM_BLOCK;
        f32x8 a0 = {0}, a1 = {0};
        for (; i + 16 <= end; i += 16) {
            a0 += *(const f32x8 *)(x + i);
            a1 += *(const f32x8 *)(x + i + 8);
        }
        if (i + 8 <= end) {
            a0 += *(const f32x8 *)(x + i);
            i += 8;
        }
        a0 += a1;
        total += lanes_sum(&a0);
    }
    for (; i < n; i++)
        total += x[i];
    return total;
}

double grad_dot(const float *a, const float *b, int64_t n)
{
    double total = 0;
    int64_t i = 0;
    while (i + 8 <= n) {
        const int64_t end = n - i < SUM_BLOCK ? n : i + SUM_BLOCK;
        f32x8 a0 = {0}, a1 = {0};
        for (; i + 16 <= end; i += 16) {
            a0 += *(const f32x8 *)(a + i) * *(const f32x8 *)(b + i);
            a1 += *(const f32x8 *)(a + i + 8) * *(const f32x8 *)(b + i + 8);
        }
        if (i + 8 <= end) {
            a0 += *(const f32x8 *)(a + i) * *(const f32x8 *)(b + i);
            i += 8;
        }
        a0 += a1;
        total += lanes_sum(&a0);
    }
    for (; i < n; i++)
        total += (double)a[i] * b[i];
    return total;
}

/* db[ch] += sum of dy [n, ch, P] over images and positions. */
static void bias_backward(float *db, const float *dy, int64_t n, int64_t ch, int64_t P)
{
    for (int64_t k = 0; k < ch; k++) {
        double acc = 0;
        for (int64_t i = 0; i < n; i++)
            acc += grad_sum(dy + (i * ch + k) * P, P);
        db[k] += (float)acc;
    }
}

/* ---- geometry -------------------------------------------------------- */

/* 1x1 kernel, stride 1, no padding: x already is the column matrix. */
static bool is_pointwise(const ConvShape *s)
{
    for (int i = 0; i < 3; i++)
        if (s->k[i] != 1 || s->stride[i] != 1 || s->pad[i] != 0 || s->out[i] != s->in[i])
            return false;
    return true;
}

static int64_t gemm_k(const ConvShape *s) { return s->cin / s->group * prod3(s->k); }

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Images per chunk for about target columns (positions) per step, at
 * least 1 and at most n. */
static int64_t chunk_for(int64_t target, int64_t per_image, int64_t n)
{
    int64_t c = per_image > 0 ? (target + per_image - 1) / per_image : n;
    c = c > n ? n : c;
    return c < 1 ? 1 : c;
}

/* ---- GEMM (im2col / col2im) ------------------------------------------ */

/* Columns of one chunk's sgemms: measured on the Fashion-MNIST layers
 * (batch 128, 3x3, 14x14 and 7x7, one thread) between 1 and 128 images
 * per chunk; a 7x7 image alone gives sgemms too narrow to run well, and
 * past a few hundred columns the column matrix falls out of L2. */
enum { GEMM_TARGET_COLUMNS = 512 };

static size_t gemm_scratch(const ConvShape *s, int64_t chunk)
{
    const int64_t L = chunk * prod3(s->out);
    return float_bytes(gemm_k(s) * L) + (chunk > 1 ? float_bytes(s->cout / s->group * L) : 0) +
           float_bytes((int64_t)im2col_pad_floats(s));
}

static int64_t gemm_chunk(const ConvShape *s, int64_t chunk)
{
    const int64_t P = prod3(s->out);
    chunk = chunk > 0 ? min64(chunk, s->n < 1 ? 1 : s->n) : chunk_for(GEMM_TARGET_COLUMNS, P, s->n);
    while (chunk > 1 && (!fits_int(chunk * P) || gemm_scratch(s, chunk) > CONV_BATCH_SCRATCH_CAP))
        chunk /= 2;
    return chunk;
}

static void pointwise_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                               const ConvShape *s)
{
    const int64_t cin_g = s->cin / s->group, cout_g = s->cout / s->group, P = prod3(s->out);
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t g = 0; g < s->group; g++) {
            const float *xg = x + (n * s->cin + g * cin_g) * P, *dyg = dy + (n * s->cout + g * cout_g) * P;
            if (dw) /* dW [cout_g, cin_g] += dY [cout_g, P] X^T */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)cout_g, (int)cin_g, (int)P, 1.0f,
                            dyg, (int)P, xg, (int)P, 1.0f, dw + g * cout_g * cin_g, (int)cin_g);
            if (dx) /* dX [cin_g, P] += W^T dY */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)cin_g, (int)P, (int)cout_g, 1.0f,
                            w + g * cout_g * cin_g, (int)cin_g, dyg, (int)P, 1.0f,
                            dx + (n * s->cin + g * cin_g) * P, (int)P);
        }
}

/* Per chunk of images and group: dY of the chunk side by side [cout_g, L]
 * (in place when the chunk is one image), the chunk's im2col [K, L], then
 * dW += dY col^T (the long side L is the sgemm's inner dimension) and,
 * reusing the column buffer, dcol = W^T dY scattered back by col2im. */
static void gemm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                          const ConvShape *s, int64_t chunk, float *scratch)
{
    const int64_t cin_g = s->cin / s->group, cout_g = s->cout / s->group;
    const int64_t K = gemm_k(s), P = prod3(s->out), in_sp = prod3(s->in);
    float *col = scratch;
    float *dyc = col + float_bytes(K * chunk * P) / sizeof(float);
    float *pad_buf = im2col_pad_floats(s) ? dyc + (chunk > 1 ? float_bytes(cout_g * chunk * P) / sizeof(float) : 0)
                                          : NULL;
    for (int64_t n0 = 0; n0 < s->n; n0 += chunk) {
        const int64_t cnt = min64(s->n - n0, chunk), L = cnt * P;
        for (int64_t g = 0; g < s->group; g++) {
            const float *dyg = dy + (n0 * s->cout + g * cout_g) * P;
            if (cnt > 1) {
                for (int64_t co = 0; co < cout_g; co++)
                    for (int64_t j = 0; j < cnt; j++)
                        copy_f32(dyc + co * L + j * P, dy + ((n0 + j) * s->cout + g * cout_g + co) * P, P);
                dyg = dyc;
            }
            if (dw) {
                for (int64_t j = 0; j < cnt; j++)
                    im2col(col + j * P, L, x + ((n0 + j) * s->cin + g * cin_g) * in_sp, cin_g, s, pad_buf);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)cout_g, (int)K, (int)L, 1.0f, dyg,
                            (int)L, col, (int)L, 1.0f, dw + g * cout_g * K, (int)K);
            }
            if (dx) {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)L, (int)cout_g, 1.0f,
                            w + g * cout_g * K, (int)K, dyg, (int)L, 0.0f, col, (int)L);
                for (int64_t j = 0; j < cnt; j++)
                    col2im_add(dx + ((n0 + j) * s->cin + g * cin_g) * in_sp, col + j * P, L, cin_g, s);
            }
        }
    }
}

/* ---- Winograd weight gradient F(3x3, 2x2) ----------------------------
 * Forward Winograd F(2x2, 3x3) computes a 2x2 output tile as
 * Y = A^T [(G g G^T) . (B^T d B)] A from the 4x4 input block d around it.
 * Y is linear in the filter g, and its adjoint gives the filter's
 * gradient from the tile's output gradient e (2x2):
 *   dg = G^T [(A e A^T) . (B^T d B)] G,
 * summed over every tile of every image. The sum commutes with G^T . G,
 * so for each of the 16 elementwise positions xi one sgemm sums over all
 * tiles at once: M_xi [cout_g, cin_g] += E_xi^T V_xi with V_xi [tiles,
 * cin_g] = B^T d B and E_xi [tiles, cout_g] = A e A^T; then one 4x4 ->
 * 3x3 transform per filter. 16 products per tile instead of 36, inside
 * BLAS with the tiles as the long inner dimension.
 * The transforms run eight channels at a time: each image's planes are
 * first interleaved eight channels deep ([row][col][8], zero-padded), so
 * one tile of eight channels is sixteen vector loads, and V and E are
 * stored tile-major ([tile][channel]), eight channels per store. Small
 * images (7x7, 14x14) have too few tiles per row to vectorize along them. */

typedef struct {
    int64_t th, tw, tiles; /* tile rows and columns of one image (2x2 outputs each) */
    int64_t xh, xw;        /* the padded input block: rows and columns (2th+2, 2tw+2) */
    int64_t ldv, ldq;      /* floats per tile in V and E: cin_g and cout_g rounded up to 8 */
} WinoTiles;

static WinoTiles wino_tiles(const ConvShape *s)
{
    WinoTiles t;
    t.th = (s->out[1] + 1) / 2;
    t.tw = (s->out[2] + 1) / 2;
    t.tiles = t.th * t.tw;
    t.xh = 2 * t.th + 2;
    t.xw = 2 * t.tw + 2;
    t.ldv = (s->cin / s->group + 7) / 8 * 8;
    t.ldq = (s->cout / s->group + 7) / 8 * 8;
    return t;
}

/* V [16][T][ldv], E [16][T][ldq], M [group][16][cout_g][cin_g], then the
 * interleaved input block and output-gradient block. */
static size_t wino_scratch(const ConvShape *s, int64_t chunk)
{
    const WinoTiles t = wino_tiles(s);
    const int64_t T = chunk * t.tiles;
    const int64_t planes = s->in[1] * s->in[2] > 4 * t.tiles ? s->in[1] * s->in[2] : 4 * t.tiles;
    return float_bytes(16 * T * t.ldv) + float_bytes(16 * T * t.ldq) +
           float_bytes(16 * s->cout * (s->cin / s->group)) + float_bytes(t.xh * t.xw * 8) +
           float_bytes(4 * t.tiles * 8) + float_bytes(planes * 8);
}

/* Tiles per step (the sgemms' inner dimension): measured on the
 * Fashion-MNIST layers (batch 128, one thread, SkylakeX and Haswell
 * OpenBLAS kernels) from 1 to 32 images per step: best from about 16 to
 * 128 tiles, where V and E stay in L1/L2 and OpenBLAS's small-matrix
 * kernels apply; 2-3x slower sgemms at a few thousand. */
enum { WINO_TARGET_TILES = 64 };

static int64_t wino_chunk(const ConvShape *s, int64_t chunk)
{
    const WinoTiles t = wino_tiles(s);
    chunk = chunk > 0 ? min64(chunk, s->n < 1 ? 1 : s->n) : chunk_for(WINO_TARGET_TILES, t.tiles, s->n);
    while (chunk > 1 && (!fits_int(chunk * t.tiles * (t.ldv > t.ldq ? t.ldv : t.ldq)) ||
                         wino_scratch(s, chunk) > CONV_BATCH_SCRATCH_CAP))
        chunk /= 2;
    return chunk;
}


/* blk[(r * bw + c) * 8 + l] = plane l (of nc, planes sp apart) at row
 * r - r0, column c - c0, for the rows and columns that land inside both
 * the plane [H, W] and the block [bh, bw]; lanes past nc get copies of
 * plane 0 (ignored downstream). Everything else in blk keeps its value:
 * zero where the block pads. The planes are transposed eight positions
 * at a time into tmp [H*W][8], then copied row by row into place. */
static void interleave8(float *restrict blk, const float *restrict p, int64_t sp, int nc, int64_t H, int64_t W,
                        int64_t r0, int64_t c0, int64_t bh, int64_t bw, float *restrict tmp)
{
    const float *pl[8];
    for (int l = 0; l < 8; l++)
        pl[l] = p + (l < nc ? l : 0) * sp;
    const int64_t HW = H * W;
    if (HW >= 8) {
        for (int64_t q = 0; q < HW; q += 8) {
            const int64_t at = q + 8 <= HW ? q : HW - 8; /* the last block overlaps the one before */
            f32x8 r[8];
            for (int l = 0; l < 8; l++)
                r[l] = *(const f32x8 *)(pl[l] + at);
            transpose8(r);
            for (int k = 0; k < 8; k++)
                *(f32x8 *)(tmp + (at + k) * 8) = r[k];
        }
    } else {
        for (int64_t q = 0; q < HW; q++)
            for (int l = 0; l < 8; l++)
                tmp[q * 8 + l] = pl[l][q];
    }
    const int64_t rlo = r0 > 0 ? r0 : 0, rhi = min64(H + r0, bh), clo = c0 > 0 ? c0 : 0, chi = min64(W + c0, bw);
    if (chi <= clo)
        return;
    for (int64_t r = rlo; r < rhi; r++)
        copy_f32(blk + (r * bw + clo) * 8, tmp + ((r - r0) * W + clo - c0) * 8, (chi - clo) * 8);
}

/* V[xi][tile][ci0..+8] = (B^T d B)[xi] of every tile of one image, for
 * the eight channels interleaved in blk, B^T = [1 0 -1 0; 0 1 1 0;
 * 0 -1 1 0; 0 1 0 -1]; plane is the floats between xi planes of V. */
static void wino_input(float *v, int64_t plane, int64_t ldv, const float *blk, const WinoTiles *t)
{
    for (int64_t th = 0; th < t->th; th++)
        for (int64_t tw = 0; tw < t->tw; tw++) {
            const float *b = blk + (2 * th * t->xw + 2 * tw) * 8;
            f32x8 c[4][4];
            for (int i = 0; i < 4; i++) {
                const float *row = b + i * t->xw * 8;
                const f32x8 d0 = *(const f32x8 *)row, d1 = *(const f32x8 *)(row + 8);
                const f32x8 d2 = *(const f32x8 *)(row + 16), d3 = *(const f32x8 *)(row + 24);
                c[i][0] = d0 - d2;
                c[i][1] = d1 + d2;
                c[i][2] = d2 - d1;
                c[i][3] = d1 - d3;
            }
            float *dst = v + (th * t->tw + tw) * ldv;
            for (int j = 0; j < 4; j++) {
                *(f32x8 *)(dst + (0 * 4 + j) * plane) = c[0][j] - c[2][j];
                *(f32x8 *)(dst + (1 * 4 + j) * plane) = c[1][j] + c[2][j];
                *(f32x8 *)(dst + (2 * 4 + j) * plane) = c[2][j] - c[1][j];
                *(f32x8 *)(dst + (3 * 4 + j) * plane) = c[1][j] - c[3][j];
            }
        }
}

/* E[xi][tile][co0..+8] = (A e A^T)[xi] of every 2x2 output-gradient tile
 * e of one image (eight channels interleaved in blk [2th][2tw][8], zero
 * past the output), A^T = [1 1 1 0; 0 1 -1 -1]. */
static void wino_grad(float *q, int64_t plane, int64_t ldq, const float *blk, const WinoTiles *t)
{
    const int64_t bw = 2 * t->tw;
    for (int64_t th = 0; th < t->th; th++)
        for (int64_t tw = 0; tw < t->tw; tw++) {
            f32x8 u[2][4]; /* rows of e A^T */
            for (int a = 0; a < 2; a++) {
                const float *row = blk + ((2 * th + a) * bw + 2 * tw) * 8;
                const f32x8 g0 = *(const f32x8 *)row, g1 = *(const f32x8 *)(row + 8);
                u[a][0] = g0;
                u[a][1] = g0 + g1;
                u[a][2] = g0 - g1;
                u[a][3] = -g1;
            }
            float *dst = q + (th * t->tw + tw) * ldq;
            for (int j = 0; j < 4; j++) { /* then A (e A^T) */
                *(f32x8 *)(dst + (0 * 4 + j) * plane) = u[0][j];
                *(f32x8 *)(dst + (1 * 4 + j) * plane) = u[0][j] + u[1][j];
                *(f32x8 *)(dst + (2 * 4 + j) * plane) = u[0][j] - u[1][j];
                *(f32x8 *)(dst + (3 * 4 + j) * plane) = -u[1][j];
            }
        }
}

/* dw (one 3x3 filter) += G^T M G for the 16 values M[xi * stride],
 * G^T = [1 .5 .5 0; 0 .5 -.5 0; 0 .5 .5 1]. */
static void wino_filter_out(float *dw, const float *m, int64_t stride)
{
    float t[3][4];
    for (int j = 0; j < 4; j++) {
        const float m0 = m[j * stride], m1 = m[(4 + j) * stride], m2 = m[(8 + j) * stride], m3 = m[(12 + j) * stride];
        t[0][j] = m0 + 0.5f * (m1 + m2);
        t[1][j] = 0.5f * (m1 - m2);
        t[2][j] = 0.5f * (m1 + m2) + m3;
    }
    for (int i = 0; i < 3; i++) {
        dw[i * 3 + 0] += t[i][0] + 0.5f * (t[i][1] + t[i][2]);
        dw[i * 3 + 1] += 0.5f * (t[i][1] - t[i][2]);
        dw[i * 3 + 2] += 0.5f * (t[i][1] + t[i][2]) + t[i][3];
    }
}

static void wino_backward_dw(float *dw, const float *dy, const float *x, const ConvShape *s, int64_t chunk,
                             float *scratch)
{
    const int64_t cin_g = s->cin / s->group, cout_g = s->cout / s->group, filters = cout_g * cin_g;
    const int64_t in_sp = s->in[1] * s->in[2], P = s->out[1] * s->out[2];
    const WinoTiles t = wino_tiles(s);
    const int64_t Tmax = chunk * t.tiles;
    float *v = scratch;
    float *q = v + float_bytes(16 * Tmax * t.ldv) / sizeof(float);
    float *m = q + float_bytes(16 * Tmax * t.ldq) / sizeof(float);
    float *xb = m + float_bytes(16 * s->cout * cin_g) / sizeof(float);
    float *gb = xb + float_bytes(t.xh * t.xw * 8) / sizeof(float);
    float *tmp = gb + float_bytes(4 * t.tiles * 8) / sizeof(float);
    /* the blocks' padding is never written: zero it once */
    memset(m, 0, (size_t)(16 * s->cout * cin_g) * sizeof *m);
    memset(xb, 0, (size_t)(t.xh * t.xw * 8) * sizeof *xb);
    memset(gb, 0, (size_t)(4 * t.tiles * 8) * sizeof *gb);
    for (int64_t n0 = 0; n0 < s->n; n0 += chunk) {
        const int64_t cnt = min64(s->n - n0, chunk), T = cnt * t.tiles;
        const int64_t vplane = T * t.ldv, qplane = T * t.ldq;
        for (int64_t g = 0; g < s->group; g++) {
            for (int64_t j = 0; j < cnt; j++) {
                const float *xg = x + ((n0 + j) * s->cin + g * cin_g) * in_sp;
                const float *dyg = dy + ((n0 + j) * s->cout + g * cout_g) * P;
                for (int64_t c0 = 0; c0 < cin_g; c0 += 8) {
                    interleave8(xb, xg + c0 * in_sp, in_sp, (int)min64(8, cin_g - c0), s->in[1], s->in[2],
                                s->pad[1], s->pad[2], t.xh, t.xw, tmp);
                    wino_input(v + j * t.tiles * t.ldv + c0, vplane, t.ldv, xb, &t);
                }
                for (int64_t c0 = 0; c0 < cout_g; c0 += 8) {
                    interleave8(gb, dyg + c0 * P, P, (int)min64(8, cout_g - c0), s->out[1], s->out[2], 0, 0,
                                2 * t.th, 2 * t.tw, tmp);
                    wino_grad(q + j * t.tiles * t.ldq + c0, qplane, t.ldq, gb, &t);
                }
            }
            for (int xi = 0; xi < 16; xi++)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)cout_g, (int)cin_g, (int)T, 1.0f,
                            q + xi * qplane, (int)t.ldq, v + xi * vplane, (int)t.ldv, 1.0f,
                            m + (g * 16 + xi) * filters, (int)cin_g);
        }
    }
    for (int64_t g = 0; g < s->group; g++)
        for (int64_t f = 0; f < filters; f++)
            wino_filter_out(dw + (g * filters + f) * 9, m + g * 16 * filters + f, filters);
}

/* ---- dX as a forward conv of dY ---------------------------------------
 * With stride 1, dX[ci, i] = sum over co, taps t of W[co, ci, t] dY[co,
 * i - t*dil + pad]: a conv of dY (cout channels in, cin out) with the
 * weights transposed per group and flipped in space, begin padding
 * (k-1)*dil - pad. conv_forward runs it with its fast plans (Winograd,
 * shifted GEMMs), per chunk of images into a buffer then added to dX. */

bool conv_bwd_flipped_ok(const ConvShape *s)
{
    for (int i = 0; i < 3; i++)
        if (s->stride[i] != 1 || s->pad[i] < 0 || s->pad[i] > (s->k[i] - 1) * s->dil[i])
            return false;
    return true;
}

static ConvShape flipped_conv(const ConvShape *s, int64_t n)
{
    ConvShape f = *s;
    f.n = n;
    f.cin = s->cout;
    f.cout = s->cin;
    for (int i = 0; i < 3; i++) {
        f.in[i] = s->out[i];
        f.out[i] = s->in[i];
        f.pad[i] = (s->k[i] - 1) * s->dil[i] - s->pad[i];
    }
    return f;
}

/* Images per chunk: a dX buffer of about 1 MB. */
static int64_t flip_chunk(const ConvShape *s, int64_t chunk)
{
    const int64_t per = s->cin * prod3(s->in);
    return chunk > 0 ? min64(chunk, s->n < 1 ? 1 : s->n) : chunk_for((int64_t)1 << 18, per, s->n);
}

/* The dX buffer, the flipped weights, then forward scratch for the
 * largest of a full and the last partial chunk, at any thread count. */
static size_t flipped_scratch(const ConvShape *s, int64_t chunk)
{
    const ConvShape full = flipped_conv(s, chunk), last = flipped_conv(s, s->n % chunk);
    size_t fwd = conv_scratch_bound(&full);
    if (s->n % chunk) {
        size_t b = conv_scratch_bound(&last);
        fwd = b > fwd ? b : fwd;
    }
    return float_bytes(chunk * s->cin * prod3(s->in)) + float_bytes(s->cout * gemm_k(s)) + fwd;
}

static void flipped_backward_dx(float *dx, const float *dy, const float *w, const ConvShape *s, int64_t chunk,
                                int threads, float *scratch, bool assign)
{
    const int64_t cin_g = s->cin / s->group, cout_g = s->cout / s->group, taps = prod3(s->k);
    const int64_t x_image = s->cin * prod3(s->in), y_image = s->cout * prod3(s->out);
    float *buf = scratch;
    float *wf = buf + float_bytes(chunk * x_image) / sizeof(float);
    float *fs = wf + float_bytes(s->cout * gemm_k(s)) / sizeof(float);
    /* wf [cin, cout_g, taps]: wf[g, ci, co, t] = w[g, co, ci, taps-1-t] */
    for (int64_t g = 0; g < s->group; g++)
        for (int64_t co = 0; co < cout_g; co++)
            for (int64_t ci = 0; ci < cin_g; ci++) {
                const float *src = w + ((g * cout_g + co) * cin_g + ci) * taps;
                float *dst = wf + ((g * cin_g + ci) * cout_g + co) * taps;
                for (int64_t t = 0; t < taps; t++)
                    dst[taps - 1 - t] = src[t];
            }
    for (int64_t n0 = 0; n0 < s->n; n0 += chunk) {
        const int64_t cnt = min64(s->n - n0, chunk);
        const ConvShape f = flipped_conv(s, cnt);
        const ConvPlan p = conv_plan(&f, threads);
        if (assign) { /* straight into dx: no clearing, no second pass */
            conv_forward(dx + n0 * x_image, dy + n0 * y_image, wf, NULL, &f, &p, 0, fs);
            continue;
        }
        conv_forward(buf, dy + n0 * y_image, wf, NULL, &f, &p, 0, fs);
        float *restrict d = dx + n0 * x_image;
        const float *restrict b = buf;
        for (int64_t i = 0; i < cnt * x_image; i++)
            d[i] += b[i];
    }
}

/* ---- direct (depthwise) ---------------------------------------------- */

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

/* sum over o in [lo, hi) of dy[o] * x[o*sw + off] */
static double row_dot(const float *dy, const float *x, int64_t lo, int64_t hi, int64_t sw, int64_t off)
{
    if (sw == 1)
        return grad_dot(dy + lo, x + lo + off, hi - lo);
    double acc = 0;
    for (int64_t o = lo; o < hi; o++)
        acc += (double)dy[o] * x[o * sw + off];
    return acc;
}

/* dx[o*sw + off] += wv * dy[o] for o in [lo, hi) */
static void row_axpy(float *restrict dx, const float *restrict dy, float wv, int64_t lo, int64_t hi,
                     int64_t sw, int64_t off)
{
    if (sw == 1) {
        float *restrict d = dx + off;
        for (int64_t o = lo; o < hi; o++)
            d[o] += wv * dy[o];
        return;
    }
    for (int64_t o = lo; o < hi; o++)
        dx[o * sw + off] += wv * dy[o];
}

/* One output channel of one image against its single input channel:
 * dw_acc [taps] += dL/dw, dx [in] += dL/dx (either may be NULL). */
static void direct_plane_backward(float *dx, double *dw_acc, const float *dy, const float *x,
                                  const float *w, const ConvShape *s, const int64_t *wrange)
{
    const int64_t ID = s->in[0], IH = s->in[1], IW = s->in[2];
    const int64_t OH = s->out[1], OW = s->out[2];
    const int64_t KH = s->k[1], KW = s->k[2], sw = s->stride[2];
    for (int64_t od = 0; od < s->out[0]; od++)
        for (int64_t oh = 0; oh < OH; oh++) {
            const float *dyr = dy + (od * OH + oh) * OW;
            for (int64_t kd = 0; kd < s->k[0]; kd++) {
                const int64_t id = od * s->stride[0] + kd * s->dil[0] - s->pad[0];
                if (id < 0 || id >= ID)
                    continue;
                for (int64_t kh = 0; kh < KH; kh++) {
                    const int64_t ih = oh * s->stride[1] + kh * s->dil[1] - s->pad[1];
                    if (ih < 0 || ih >= IH)
                        continue;
                    const int64_t row = (id * IH + ih) * IW, t0 = (kd * KH + kh) * KW;
                    for (int64_t kw = 0; kw < KW; kw++) {
                        const int64_t off = kw * s->dil[2] - s->pad[2];
                        const int64_t lo = wrange[2 * kw], hi = wrange[2 * kw + 1];
                        if (dw_acc)
                            dw_acc[t0 + kw] += row_dot(dyr, x + row, lo, hi, sw, off);
                        if (dx)
                            row_axpy(dx + row, dyr, w[t0 + kw], lo, hi, sw, off);
                    }
                }
            }
        }
}

/* Per output column kw: the output range [lo, hi) whose input column
 * lies inside the image; then one double per kernel tap. */
static size_t direct_scratch(const ConvShape *s)
{
    return align64((size_t)(2 * s->k[2]) * sizeof(int64_t)) + (size_t)prod3(s->k) * sizeof(double);
}

static void direct_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                            const ConvShape *s, void *scratch)
{
    const int64_t mult = s->cout / s->group, in_sp = prod3(s->in), P = prod3(s->out);
    const int64_t taps = prod3(s->k);
    int64_t *wrange = scratch;
    double *dw_acc = (double *)(void *)((char *)scratch + align64((size_t)(2 * s->k[2]) * sizeof(int64_t)));
    for (int64_t kw = 0; kw < s->k[2]; kw++)
        valid_range(&wrange[2 * kw], &wrange[2 * kw + 1], kw * s->dil[2] - s->pad[2], s->stride[2], s->in[2],
                    s->out[2]);
    /* channel-major, so each filter's gradient sums over the batch in double */
    for (int64_t oc = 0; oc < s->cout; oc++) {
        const int64_t g = oc / mult;
        if (dw)
            memset(dw_acc, 0, (size_t)taps * sizeof *dw_acc);
        for (int64_t n = 0; n < s->n; n++)
            direct_plane_backward(dx ? dx + (n * s->cin + g) * in_sp : NULL, dw ? dw_acc : NULL,
                                  dy + (n * s->cout + oc) * P, x + (n * s->cin + g) * in_sp, w + oc * taps, s,
                                  wrange);
        if (dw)
            for (int64_t t = 0; t < taps; t++)
                dw[oc * taps + t] += (float)dw_acc[t];
    }
}

/* ---- plans ----------------------------------------------------------- */

static size_t part_scratch(const ConvShape *s, ConvBwdAlgo a, const ConvBwdPlan *p)
{
    switch (a) {
    case CONV_BWD_DIRECT:
        return direct_scratch(s);
    case CONV_BWD_POINTWISE:
        return 0;
    case CONV_BWD_GEMM:
        return gemm_scratch(s, p->gemm_chunk);
    case CONV_BWD_WINOGRAD:
        return wino_scratch(s, p->wino_chunk);
    case CONV_BWD_FLIPPED:
        return flipped_scratch(s, p->flip_chunk);
    }
    return 0;
}

ConvBwdPlan conv_bwd_plan_with(const ConvShape *s, ConvBwdAlgo dw_algo, ConvBwdAlgo dx_algo, int64_t chunk,
                               int threads)
{
    ConvBwdPlan p = {.dw_algo = dw_algo, .dx_algo = dx_algo, .threads = threads < 1 ? 1 : threads};
    p.gemm_chunk = gemm_chunk(s, chunk);
    p.wino_chunk = dw_algo == CONV_BWD_WINOGRAD ? wino_chunk(s, chunk) : 1;
    p.flip_chunk = dx_algo == CONV_BWD_FLIPPED ? flip_chunk(s, chunk) : 1;
    /* the parts run one after the other and share the scratch */
    const size_t a = part_scratch(s, dw_algo, &p), b = part_scratch(s, dx_algo, &p);
    p.scratch_bytes = a > b ? a : b;
    return p;
}

ConvBwdPlan conv_bwd_plan(const ConvShape *s, int threads)
{
    const int64_t cin_g = s->cin / s->group, cout_g = s->cout / s->group;
    /* the forward's rule: a GEMM with one to three rows is mostly overhead */
    if (cin_g == 1 && cout_g < 4)
        return conv_bwd_plan_with(s, CONV_BWD_DIRECT, CONV_BWD_DIRECT, 0, threads);
    if (is_pointwise(s))
        return conv_bwd_plan_with(s, CONV_BWD_POINTWISE, CONV_BWD_POINTWISE, 0, threads);
    /* Winograd's 16 sgemms have cout_g x cin_g outputs: too small below 8 */
    ConvBwdAlgo dw = conv_winograd_ok(s) && cin_g >= 8 && cout_g >= 8 ? CONV_BWD_WINOGRAD : CONV_BWD_GEMM;
    /* dX through the forward's plans pays off where those beat im2col
     * (Winograd, shifted GEMMs) and its GEMM has channels to work with */
    const ConvShape f = flipped_conv(s, s->n);
    ConvBwdAlgo dx = conv_bwd_flipped_ok(s) && cout_g >= 8 && conv_fits_blas(&f) &&
                             (conv_winograd_ok(&f) || conv_shift_ok(&f))
                         ? CONV_BWD_FLIPPED
                         : CONV_BWD_GEMM;
    return conv_bwd_plan_with(s, dw, dx, 0, threads);
}

void conv_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                   const ConvShape *s, const ConvBwdPlan *p, float *scratch, bool dx_assign)
{
    const int64_t P = prod3(s->out);
    if (db)
        bias_backward(db, dy, s->n, s->cout, P);
    if (dx && dx_assign && !(p->dx_algo == CONV_BWD_FLIPPED && P > 0 && gemm_k(s) > 0 && s->cout > 0)) {
        memset(dx, 0, (size_t)(s->n * s->cin * prod3(s->in)) * sizeof *dx); /* the other paths add */
        dx_assign = false;
    }
    if ((!dx && !dw) || s->n == 0 || P == 0 || gemm_k(s) == 0 || s->cout == 0 || prod3(s->in) == 0)
        return;
    float *dw_at[5] = {0}, *dx_at[5] = {0}; /* which part computes which gradient */
    dw_at[p->dw_algo] = dw;
    dx_at[p->dx_algo] = dx;
    if (dw_at[CONV_BWD_DIRECT] || dx_at[CONV_BWD_DIRECT])
        direct_backward(dx_at[CONV_BWD_DIRECT], dw_at[CONV_BWD_DIRECT], dy, x, w, s, scratch);
    if (dw_at[CONV_BWD_POINTWISE] || dx_at[CONV_BWD_POINTWISE])
        pointwise_backward(dx_at[CONV_BWD_POINTWISE], dw_at[CONV_BWD_POINTWISE], dy, x, w, s);
    if (dw_at[CONV_BWD_GEMM] || dx_at[CONV_BWD_GEMM])
        gemm_backward(dx_at[CONV_BWD_GEMM], dw_at[CONV_BWD_GEMM], dy, x, w, s, p->gemm_chunk, scratch);
    if (dw_at[CONV_BWD_WINOGRAD])
        wino_backward_dw(dw, dy, x, s, p->wino_chunk, scratch);
    if (dx_at[CONV_BWD_FLIPPED])
        flipped_backward_dx(dx, dy, w, s, p->flip_chunk, p->threads, scratch, dx_assign);
}

/* ---- ConvTranspose --------------------------------------------------- */

/* The conv whose adjoint the ConvTranspose s is: from s's output space
 * back to its input space, with the same kernel, stride, dilation, pad. */
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

size_t conv_transpose_bwd_scratch(const ConvShape *s)
{
    const ConvShape a = adjoint_conv(s);
    return float_bytes(gemm_k(&a) * prod3(s->in)) + float_bytes((int64_t)im2col_pad_floats(&a));
}

void conv_transpose_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                             const float *w, const ConvShape *s, float *scratch)
{
    const int64_t cin_g = s->cin / s->group, cout_g = s->cout / s->group;
    const int64_t Pin = prod3(s->in), Pout = prod3(s->out);
    const ConvShape a = adjoint_conv(s);
    const int64_t Kc = gemm_k(&a); /* cout_g * taps: one row of a group's weights */
    if (db)
        bias_backward(db, dy, s->n, s->cout, Pout);
    if ((!dx && !dw) || s->n == 0 || Kc == 0 || Pin == 0 || cin_g == 0)
        return;
    float *col = scratch;
    float *pad_buf = im2col_pad_floats(&a) ? col + float_bytes(Kc * Pin) / sizeof(float) : NULL;
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t g = 0; g < s->group; g++) {
            im2col(col, Pin, dy + (n * s->cout + g * cout_g) * Pout, cout_g, &a, pad_buf);
            if (dx) /* dX [cin_g, Pin] += W [cin_g, Kc] col */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)cin_g, (int)Pin, (int)Kc, 1.0f,
                            w + g * cin_g * Kc, (int)Kc, col, (int)Pin, 1.0f, dx + (n * s->cin + g * cin_g) * Pin,
                            (int)Pin);
            if (dw) /* dW [cin_g, Kc] += X [cin_g, Pin] col^T */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)cin_g, (int)Kc, (int)Pin, 1.0f,
                            x + (n * s->cin + g * cin_g) * Pin, (int)Pin, col, (int)Pin, 1.0f, dw + g * cin_g * Kc,
                            (int)Kc);
        }
}

/* ---- ops ------------------------------------------------------------- */

/* ConvTranspose's split of total padding (conv.c): SAME_UPPER puts the
 * odd one at the end, otherwise at the begin; negative totals floor. */
static int64_t transpose_begin_pad(int64_t total, AutoPad ap)
{
    const int64_t half = total >= 0 ? total / 2 : -((-total + 1) / 2);
    return ap == PAD_SAME_UPPER ? half : total - half;
}

/* The begin pads of a ConvTranspose whose output Y has spatial size out:
 * explicit pads, unless output_shape or SAME padding derived them from
 * the output size, as forward did. */
static int transpose_pads(const OpCtx *c, const Window *w, const int64_t *in, const int64_t *out,
                          int64_t *pads)
{
    const int nd = w->nd;
    const int64_t *opad = NULL, *oshape = NULL;
    if (node_attr_ints(c->node, "output_padding", &opad) != nd)
        opad = NULL;
    const bool derived = node_attr_ints(c->node, "output_shape", &oshape) >= 0 ||
                         w->auto_pad == PAD_SAME_UPPER || w->auto_pad == PAD_SAME_LOWER;
    for (int i = 0; i < nd; i++) {
        int64_t full, ek;
        if (!sh_mul_ok(w->stride[i], in[i] - 1, &full) || !sh_add_ok(full, opad ? opad[i] : 0, &full) ||
            !sh_mul_ok(w->k[i] - 1, w->dil[i], &ek) || !sh_add_ok(full, ek + 1, &full))
            return op_fail(c, SH_E_NOMEM, "output size overflows on spatial axis %d", i);
        pads[i] = derived ? transpose_begin_pad(full - out[i], w->auto_pad) : w->pad[i];
    }
    return 0;
}

/* The normalized shape of a Conv (or ConvTranspose) node from X, W and the
 * output Y that forward produced; forward checked the attributes, so this
 * re-derives the begin padding and rechecks only what indexing relies on. */
static int grad_conv_shape(const OpCtx *c, ConvShape *s, bool transpose)
{
    int rc;
    if ((rc = op_check_input(c, 0, SH_F32)) < 0 || (rc = op_check_input(c, 1, SH_F32)) < 0)
        return rc;
    if (c->n_out < 1 || !c->out[0] || c->out[0]->dtype != SH_F32)
        return op_fail(c, SH_E_STATE, "backward needs the forward output Y");
    const Shape *X = &c->in[0]->shape, *W = &c->in[1]->shape, *Y = &c->out[0]->shape;
    char bx[64], bw[64], by[64];
    const int64_t group = node_attr_int(c->node, "group", 1);
    bool ok = X->rank >= 3 && X->rank <= 5 && W->rank == X->rank && Y->rank == X->rank && group >= 1 &&
              Y->d[0] == X->d[0] && X->d[1] % group == 0 && Y->d[1] % group == 0;
    if (ok && !transpose)
        ok = W->d[0] == Y->d[1] && W->d[1] * group == X->d[1];
    else if (ok)
        ok = W->d[0] == X->d[1] && W->d[1] * group == Y->d[1];
    if (!ok)
        return op_fail(c, SH_E_SHAPE, "X %s, W %s and Y %s with group %lld do not match for backward",
                       shape_str(X, bx, sizeof bx), shape_str(W, bw, sizeof bw), shape_str(Y, by, sizeof by),
                       (long long)group);
    const int nd = X->rank - 2;
    Window w;
    if ((rc = window_read(c, &w, nd, &W->d[2])) < 0)
        return rc;
    int64_t pads[3];
    if (!transpose) {
        int64_t out[3];
        if ((rc = window_output(c, &w, &X->d[2], false, out)) < 0)
            return rc;
        for (int i = 0; i < nd; i++)
            if (out[i] != Y->d[2 + i])
                return op_fail(c, SH_E_SHAPE, "Y %s does not have the conv's output size",
                               shape_str(Y, by, sizeof by));
        memcpy(pads, w.pad, sizeof pads);
    } else if ((rc = transpose_pads(c, &w, &X->d[2], &Y->d[2], pads)) < 0) {
        return rc;
    }
    memset(s, 0, sizeof *s);
    s->n = X->d[0];
    s->cin = X->d[1];
    s->cout = Y->d[1];
    s->group = group;
    to_spatial3(s->in, &X->d[2], nd, 1);
    to_spatial3(s->out, &Y->d[2], nd, 1);
    to_spatial3(s->k, &W->d[2], nd, 1);
    to_spatial3(s->stride, w.stride, nd, 1);
    to_spatial3(s->dil, w.dil, nd, 1);
    to_spatial3(s->pad, pads, nd, 0);
    if (!(transpose ? conv_transpose_fits_blas(s) : conv_fits_blas(s)))
        return op_fail(c, SH_E_UNSUPPORTED, "a GEMM of this convolution exceeds BLAS's int sizes");
    return 0;
}

/* The float data of gradient i if wanted and present, else NULL. */
static float *grad_of(const OpCtx *c, Tensor **gin, int i)
{
    return i < c->n_in && c->in[i] && gin[i] ? tensor_f32(gin[i]) : NULL;
}

static int check_scratch(const OpCtx *c, size_t need)
{
    if (c->scratch_bytes < need || (need && !c->scratch))
        return op_fail(c, SH_E_STATE, "backward needs %zu scratch bytes but was given %zu", need,
                       c->scratch_bytes);
    return 0;
}

int conv_op_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    if (!gout[0]) {
        if (gin[0] && (c->grad_assign & 1u)) /* told to write dx: nothing flows, so zeros */
            memset(gin[0]->data, 0, tensor_bytes(gin[0]));
        return 0;
    }
    const ConvFusion *fusion = c->fused;
    if (fusion && fusion->relu)
        return op_fail(c, SH_E_STATE, "has a fused ReLU, which backward does not undo; plan without fusion");
    ConvShape s = {0};
    int rc = grad_conv_shape(c, &s, false);
    if (rc < 0)
        return rc;
    const ConvBwdPlan p = conv_bwd_plan(&s, openblas_get_num_threads());
    if ((rc = check_scratch(c, p.scratch_bytes)) < 0)
        return rc;
    conv_backward(grad_of(c, gin, 0), grad_of(c, gin, 1), grad_of(c, gin, 2), tensor_f32(gout[0]),
                  tensor_f32(c->in[0]), tensor_f32(c->in[1]), &s, &p, c->scratch, c->grad_assign & 1u);
    return 0;
}

size_t conv_op_bwd_scratch(const OpCtx *c)
{
    ConvShape s = {0};
    if (grad_conv_shape(c, &s, false) < 0 || s.n < 0)
        return 0;
    return conv_bwd_plan(&s, 1).scratch_bytes; /* the same at any thread count */
}

int conv_transpose_op_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    if (!gout[0])
        return 0;
    ConvShape s = {0};
    int rc = grad_conv_shape(c, &s, true);
    if (rc < 0 || (rc = check_scratch(c, conv_transpose_bwd_scratch(&s))) < 0)
        return rc;
    conv_transpose_backward(grad_of(c, gin, 0), grad_of(c, gin, 1), grad_of(c, gin, 2), tensor_f32(gout[0]),
                            tensor_f32(c->in[0]), tensor_f32(c->in[1]), &s, c->scratch);
    return 0;
}

size_t conv_transpose_op_bwd_scratch(const OpCtx *c)
{
    ConvShape s = {0};
    if (grad_conv_shape(c, &s, true) < 0 || s.n < 0)
        return 0;
    return conv_transpose_bwd_scratch(&s);
}
