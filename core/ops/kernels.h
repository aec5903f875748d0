/* Layer kernels shared by the conv, gemm, pool and norm op families: the
 * fast kernels the ops run, the naive reference kernels tests hold them
 * against, and the sliding-window geometry conv and pool ops share.
 *
 * Tensors are dense and row-major, NC followed by spatial dims. Spatial
 * dims are normalized to three (D, H, W): a 1-D or 2-D layer gets leading
 * spatial dims of size 1 (kernel 1, stride 1, dilation 1, pad 0), so one
 * kernel serves every rank. Reference kernels accumulate in double. */
#ifndef SH_KERNELS_H
#define SH_KERNELS_H

#include "../op.h"
#include "../tensor.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- sliding-window geometry (conv and pool attributes) -------------- */

typedef enum { PAD_NOTSET, PAD_SAME_UPPER, PAD_SAME_LOWER, PAD_VALID } AutoPad;

typedef struct {
    int nd; /* spatial dims, 1..3 */
    int64_t k[3], stride[3], dil[3], pad[3], pad_end[3];
    AutoPad auto_pad;
} Window;

/* Fills w from the node's strides, dilations, pads and auto_pad for nd
 * spatial dims and kernel k[nd]; fails naming the bad attribute. */
int window_read(const OpCtx *c, Window *w, int nd, const int64_t *k);
/* Output size of every spatial axis for input size in[nd]; resolves SAME
 * pads into w. ceil_mode follows the pooling rule: the last window must
 * start inside the input or its left padding. Fails if no window fits. */
int window_output(const OpCtx *c, Window *w, const int64_t *in, bool ceil_mode, int64_t *out);
/* dst[3] = src[nd] right-aligned, leading entries set to fill. */
void to_spatial3(int64_t *dst, const int64_t *src, int nd, int64_t fill);

/* ---- conv ------------------------------------------------------------ */

/* Conv: x [n, cin, in] * w [cout, cin/group, k] -> y [n, cout, out].
 * ConvTranspose: x [n, cin, in] with w [cin, cout/group, k] -> y [n, cout, out].
 * pad is the begin padding; the end padding only decides out. */
typedef struct {
    int64_t n, cin, cout, group;
    int64_t in[3], out[3], k[3], stride[3], dil[3], pad[3];
} ConvShape;

typedef enum {
    CONV_DIRECT,     /* one input channel per group (depthwise, cin 1): direct loop */
    CONV_GEMM_IMAGE, /* per image and group: im2col (skipped when pointwise) + sgemm into y */
    CONV_GEMM_BATCH, /* per chunk of images and group: one im2col + one sgemm + copy to NCHW */
    CONV_GEMM_SHIFT, /* stride-1 "same" 1-D/2-D convs: no im2col; per chunk of images, one
                        sgemm per kernel tap over shifted views of a zero-separated copy */
    CONV_WINOGRAD,   /* 2-D 3x3 stride 1 dilation 1: Winograd F(2x2,3x3), 16 sgemms per
                        chunk of images on transformed tiles, 2.25x fewer multiplies */
    CONV_WINOGRAD4,  /* the same shapes: Winograd F(4x4,3x3), 36 sgemms, 4x fewer multiplies
                        (kernels_wino4.c) */
} ConvAlgo;

typedef struct {
    ConvAlgo algo;
    int64_t chunk; /* images per sgemm in CONV_GEMM_BATCH, CONV_GEMM_SHIFT, CONV_WINOGRAD(4) */
    size_t scratch_bytes;
    /* SHIFT and WINOGRAD rearrange the weights at the start of scratch: set
     * when the previous conv_forward, with the same weights, algorithm and
     * scratch, left them there (a conv run in groups of images) */
    bool weights_ready;
} ConvPlan;

/* The batch algorithms keep their buffers under this. */
#define CONV_BATCH_SCRATCH_CAP ((size_t)32 << 20)

/* Whether CONV_GEMM_SHIFT / CONV_WINOGRAD can run s. */
bool conv_shift_ok(const ConvShape *s);
bool conv_winograd_ok(const ConvShape *s);

/* The algorithm for s when BLAS runs threads threads. Plans stop changing
 * above CONV_PLAN_MAX_THREADS, so conv_scratch_bound covers every count:
 * size scratch with it at plan time, pick the plan at run time. */
#define CONV_PLAN_MAX_THREADS 4
ConvPlan conv_plan(const ConvShape *s, int threads);
size_t conv_scratch_bound(const ConvShape *s);
/* A plan with a forced algorithm (timing, tests); chunk <= 0 picks the
 * largest chunk under the scratch cap. DIRECT needs cin/group == 1, SHIFT
 * conv_shift_ok, WINOGRAD conv_winograd_ok. */
ConvPlan conv_plan_with(const ConvShape *s, ConvAlgo algo, int64_t chunk);
/* Whether the GEMM dimensions of s's plans fit BLAS's int arguments. */
bool conv_fits_blas(const ConvShape *s);

/* F(4x4,3x3) internals for kernels_conv.c: scratch for a chunk of
 * images, tiles per image, the conv itself (conv_forward's contract). */
size_t conv_winograd4_scratch(const ConvShape *s, int64_t chunk);
int64_t conv_winograd4_tiles(const ConvShape *s);
void conv_winograd4(float *y, const float *x, const float *w, const float *b, const ConvShape *s, int64_t chunk,
                    int relu, bool weights_ready, float *scratch);

/* y = conv(x, w) + b (b may be NULL), then max(0, .) if relu.
 * scratch: p->scratch_bytes, 64-byte aligned. */
void conv_forward(float *y, const float *x, const float *w, const float *b, const ConvShape *s,
                  const ConvPlan *p, int relu, float *scratch);

bool conv_transpose_fits_blas(const ConvShape *s);
size_t conv_transpose_scratch(const ConvShape *s);
/* ConvTranspose via sgemm + col2im; scratch: conv_transpose_scratch(s). */
void conv_transpose_forward(float *y, const float *x, const float *w, const float *b,
                            const ConvShape *s, float *scratch);

/* Column matrix of one image's c channels x [c, in]: row (ch, kd, kh, kw),
 * column = output position; ldc is the row stride of col. Padding reads 0.
 * pad_buf (may be NULL, slower on small images) holds im2col_pad_floats(s)
 * floats for a padded copy of the image's c <= cin/group channels. */
void im2col(float *col, int64_t ldc, const float *x, int64_t c, const ConvShape *s, float *pad_buf);
size_t im2col_pad_floats(const ConvShape *s);
/* Adjoint of im2col: x [c, in] += the columns of col scattered back. */
void col2im_add(float *x, const float *col, int64_t ldc, int64_t c, const ConvShape *s);

void conv_forward_ref(float *y, const float *x, const float *w, const float *b, const ConvShape *s);
void conv_transpose_forward_ref(float *y, const float *x, const float *w, const float *b,
                                const ConvShape *s);

/* ---- pool ------------------------------------------------------------ */

typedef struct {
    int64_t n, c;
    int64_t in[3], out[3], k[3], stride[3], dil[3], pad[3], pad_end[3];
} PoolShape;

/* indices (may be NULL): flat index into x per ONNX MaxPool, row-major
 * spatial order or column-major when col_major. */
void maxpool_forward_ref(float *y, int64_t *indices, const float *x, const PoolShape *s,
                         int col_major);
/* count_include_pad counts padded positions inside [-pad, in + pad_end). */
void avgpool_forward_ref(float *y, const float *x, const PoolShape *s, int count_include_pad);
void lppool_forward_ref(float *y, const float *x, const PoolShape *s, double p);

/* ---- gemm ------------------------------------------------------------ */

/* y [M,N] = alpha * op(a) op(b) + beta * c; op transposes when trans_*;
 * c (may be NULL) has shape [cm, cn], each 1 or M / N (broadcast). */
void gemm_ref(float *y, const float *a, const float *b, const float *c, int64_t M, int64_t N,
              int64_t K, int trans_a, int trans_b, float alpha, float beta, int64_t cm, int64_t cn);
/* numpy matmul with 1-D promotion and batch broadcasting; y is dense in
 * the broadcast output shape. */
void matmul_ref(float *y, const float *a, const Shape *as, const float *b, const Shape *bs);

/* ---- norm ------------------------------------------------------------ */

/* x [n, c, sp]; y = scale (x - mean) / sqrt(var + eps) + bias. */
void batchnorm_ref(float *y, const float *x, const float *scale, const float *bias,
                   const float *mean, const float *var, double eps, int64_t n, int64_t c,
                   int64_t sp);
/* Batch statistics of x [n, c, sp] per channel (population variance). */
void batch_stats_ref(float *mean, float *var, const float *x, int64_t n, int64_t c, int64_t sp);
/* x [rows, cols] normalized per row; scale, bias (may be NULL) [cols];
 * mean, inv_std (may be NULL) [rows]. */
void layernorm_ref(float *y, float *mean, float *inv_std, const float *x, const float *scale,
                   const float *bias, int64_t rows, int64_t cols, double eps);
/* x [n, c, sp] normalized per (n, c); scale, bias [c]. */
void instancenorm_ref(float *y, const float *x, const float *scale, const float *bias, int64_t n,
                      int64_t c, int64_t sp, double eps);
/* x [n, c, sp]: y = x / (bias + alpha/size * sum of x^2 over nearby channels)^beta. */
void lrn_ref(float *y, const float *x, int64_t n, int64_t c, int64_t sp, int64_t size,
             double alpha, double beta, double bias);

#endif
