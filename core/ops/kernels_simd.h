/* Eight-float vectors for the few elementwise loops that matter (conv
 * epilogues, im2col copies, BatchNorm). GCC's -O2 does not vectorize loops
 * of unknown length, so these are written eight wide by hand with GCC/clang
 * vector extensions: they compile to AVX with -march=x86-64-v3 and to SSE
 * pairs without it. The types carry alignment 4 and may_alias, so they load
 * and store at any float address. */
#ifndef SH_KERNELS_SIMD_H
#define SH_KERNELS_SIMD_H

#include <stdint.h>
#include <string.h>

typedef float f32x8 __attribute__((vector_size(32), aligned(4), may_alias));
typedef float f32x4 __attribute__((vector_size(16), aligned(4), may_alias));
typedef int32_t i32x8 __attribute__((vector_size(32), aligned(4), may_alias));

#define F32X8_SPLAT(v) ((f32x8){(v), (v), (v), (v), (v), (v), (v), (v)})

/* n floats; short copies need no libc call (im2col makes millions of them). */
static inline void copy_f32(float *restrict dst, const float *restrict src, int64_t n)
{
    if (n >= 256) {
        memcpy(dst, src, (size_t)n * sizeof *dst);
        return;
    }
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        *(f32x8 *)(dst + i) = *(const f32x8 *)(src + i);
    for (; i < n; i++)
        dst[i] = src[i];
}

static inline void zero_f32(float *dst, int64_t n)
{
    if (n >= 256) {
        memset(dst, 0, (size_t)n * sizeof *dst);
        return;
    }
    const f32x8 z = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        *(f32x8 *)(dst + i) = z;
    for (; i < n; i++)
        dst[i] = 0.0f;
}

/* dst[i] = src[i] * a + b, then max(0, .) if relu; dst may equal src. */
static inline void affine_relu_f32(float *dst, const float *src, int64_t n, float a, float b, int relu)
{
    const f32x8 a8 = F32X8_SPLAT(a), b8 = F32X8_SPLAT(b), z8 = {0};
    int64_t i = 0;
    if (relu)
        for (; i + 8 <= n; i += 8) {
            f32x8 v = *(const f32x8 *)(src + i) * a8 + b8;
            *(i32x8 *)(dst + i) = (i32x8)v & (v > z8); /* the mask keeps positives */
        }
    else
        for (; i + 8 <= n; i += 8)
            *(f32x8 *)(dst + i) = *(const f32x8 *)(src + i) * a8 + b8;
    for (; i < n; i++) {
        float v = src[i] * a + b;
        dst[i] = relu && !(v > 0.0f) ? 0.0f : v;
    }
}

#endif
