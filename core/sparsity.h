/* 2:4 semi-structured sparsity (NVIDIA ASP's rule): in every group of 4
 * consecutive weights along a layer's input axis, the 2 of smallest
 * magnitude become zero. It shrinks nothing and gives no speedup on CPUs
 * (shears and ONNX Runtime run dense kernels here); it is a separate mode
 * for deployment on hardware with sparse tensor cores. Masks are held
 * through fine-tuning and exported as zeros. */
#ifndef SH_SPARSITY_H
#define SH_SPARSITY_H

#include "graph.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    int value;       /* the weight initializer */
    uint8_t *keep;   /* one flag per element */
    int64_t n;
} WeightMask;

typedef struct {
    WeightMask *w;
    int n;
    int64_t zeroed, total;
} SparsityMasks;

/* Computes 2:4 masks for every Conv (group 1), Gemm and MatMul weight
 * whose input axis is a multiple of 4, zeroes the pruned weights of g,
 * and returns the masks. */
int sparsity_2_4(Graph *g, SparsityMasks *out);
/* Re-applies masks (after an optimizer step). */
void sparsity_apply(Graph *g, const SparsityMasks *m);
void sparsity_done(SparsityMasks *m);

#endif
