/* Backward (training) of the conv, pool and normalization families: the
 * OpDef hooks their tables point to, and the layer kernels those run,
 * exported so tests can hold them against naive references.
 *
 * Every kernel accumulates (+=) into the gradients it is given; a NULL
 * gradient pointer means "not wanted" and skips that work. */
#ifndef SH_OPS_GRAD_H
#define SH_OPS_GRAD_H

#include "../op.h"
#include "kernels.h"

#include <stdbool.h>
#include <stddef.h>

/* ---- shared sums ----------------------------------------------------- */

/* sum x[i] and sum a[i]*b[i] over n floats: eight lanes in float within
 * blocks of a few thousand, blocks added in double. */
double grad_sum(const float *x, int64_t n);
double grad_dot(const float *a, const float *b, int64_t n);

/* ---- conv ------------------------------------------------------------ */

typedef enum {
    CONV_BWD_DIRECT,    /* one input channel and few outputs per group (depthwise): loops */
    CONV_BWD_POINTWISE, /* 1x1, stride 1, no padding: per-image sgemms, no im2col */
    CONV_BWD_GEMM,      /* per chunk of images and group: im2col + sgemm for dW,
                           sgemm + col2im for dX */
    CONV_BWD_WINOGRAD,  /* dW of 2-D 3x3 stride-1 convs: Winograd F(3x3, 2x2), 16 sgemms
                           over transformed tiles, 2.25x fewer multiplies */
    CONV_BWD_FLIPPED,   /* dX of stride-1 convs: the forward conv (with conv_forward's own
                           fast plans) of dY with the flipped, transposed weights */
} ConvBwdAlgo;

typedef struct {
    ConvBwdAlgo dw_algo; /* DIRECT, POINTWISE, GEMM or WINOGRAD */
    ConvBwdAlgo dx_algo; /* DIRECT, POINTWISE, GEMM or FLIPPED */
    int64_t gemm_chunk, wino_chunk, flip_chunk; /* images per step of each algorithm */
    int threads;          /* BLAS threads the FLIPPED forward plans are made for */
    size_t scratch_bytes; /* dx, dw and db together; the same for every thread count */
} ConvBwdPlan;

/* The plan for s when BLAS runs threads threads. scratch_bytes depends on
 * s only, so scratch sized at plan time fits the plan made when running. */
ConvBwdPlan conv_bwd_plan(const ConvShape *s, int threads);
/* A plan with forced algorithms (tests, timing); chunk <= 0 picks each
 * algorithm's default, otherwise every chunked algorithm uses it.
 * DIRECT needs cin/group == 1, POINTWISE a 1x1 stride-1 unpadded conv,
 * WINOGRAD conv_winograd_ok(s), FLIPPED conv_bwd_flipped_ok(s). */
ConvBwdPlan conv_bwd_plan_with(const ConvShape *s, ConvBwdAlgo dw_algo, ConvBwdAlgo dx_algo, int64_t chunk,
                               int threads);
/* Stride 1 on every axis and begin pads within the dilated kernel. */
bool conv_bwd_flipped_ok(const ConvShape *s);

/* Conv layer backward: dx [n, cin, in] += dL/dx, dw [cout, cin/group, k]
 * += dL/dw, db [cout] += dL/db (each may be NULL) from dy [n, cout, out],
 * x and w; dx = dL/dx instead when dx_assign (dx holds stale bytes).
 * scratch: the plan's scratch_bytes, 64-byte aligned. */
void conv_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                   const ConvShape *s, const ConvBwdPlan *p, float *scratch, bool dx_assign);

/* ConvTranspose layer backward (s as for conv_transpose_forward: x
 * [n, cin, in], w [cin, cout/group, k], y [n, cout, out]). scratch:
 * conv_transpose_bwd_scratch(s) bytes. */
size_t conv_transpose_bwd_scratch(const ConvShape *s);
void conv_transpose_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                             const float *w, const ConvShape *s, float *scratch);

int conv_op_backward(OpCtx *c, Tensor **gout, Tensor **gin);
size_t conv_op_bwd_scratch(const OpCtx *c);
int conv_transpose_op_backward(OpCtx *c, Tensor **gout, Tensor **gin);
size_t conv_transpose_op_bwd_scratch(const OpCtx *c);

/* ---- pool ------------------------------------------------------------ */

/* The pool kernels' scratch: per spatial axis and output position, the
 * range of kernel taps inside the input and the count inside the padding. */
size_t pool_bwd_scratch(const PoolShape *s);
/* dx += the gradient of each window's maximum at its first maximal
 * element in window order (depth, row, column), the element forward
 * picks. Windows that cover only padding pass nothing. */
void maxpool_backward(float *dx, const float *dy, const float *x, const PoolShape *s, void *scratch);
/* dx += dy / count spread over each window; count as in forward. */
void avgpool_backward(float *dx, const float *dy, const PoolShape *s, int count_include_pad,
                      void *scratch);
/* y = (sum |x|^p)^(1/p): dx += dy * sign(x) |x|^(p-1) / y^(p-1) (0 where y is 0). */
void lppool_backward(float *dx, const float *dy, const float *x, const float *y, const PoolShape *s,
                     double p, void *scratch);

int maxpool_op_backward(OpCtx *c, Tensor **gout, Tensor **gin);
size_t pool_op_bwd_scratch(const OpCtx *c); /* MaxPool, AveragePool, LpPool */
int avgpool_op_backward(OpCtx *c, Tensor **gout, Tensor **gin);
int lppool_op_backward(OpCtx *c, Tensor **gout, Tensor **gin);
int global_max_op_backward(OpCtx *c, Tensor **gout, Tensor **gin);
int global_avg_op_backward(OpCtx *c, Tensor **gout, Tensor **gin);
int global_lp_op_backward(OpCtx *c, Tensor **gout, Tensor **gin);

/* ---- norm ------------------------------------------------------------ */

/* Per-channel batch mean and population variance of x [n, ch, sp] in one
 * vectorized pass (sums shifted by a sample, blocks added in double). */
void batchnorm_batch_stats(float *mean, float *var, const float *x, int64_t n, int64_t ch, int64_t sp);

int batchnorm_op_backward(OpCtx *c, Tensor **gout, Tensor **gin);
size_t batchnorm_op_bwd_scratch(const OpCtx *c);
int layernorm_op_backward(OpCtx *c, Tensor **gout, Tensor **gin);
size_t layernorm_op_bwd_scratch(const OpCtx *c);
int instancenorm_op_backward(OpCtx *c, Tensor **gout, Tensor **gin);

#endif
