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

/* Vectors passed by value between static inline helpers: without AVX
 * (SAN builds) GCC warns about an ABI no caller outside can see. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

typedef float f32x8 __attribute__((vector_size(32), aligned(4), may_alias));
typedef float f32x4 __attribute__((vector_size(16), aligned(4), may_alias));
typedef int32_t i32x8 __attribute__((vector_size(32), aligned(4), may_alias));

#define F32X8_SPLAT(v) ((f32x8){(v), (v), (v), (v), (v), (v), (v), (v)})

/* Mask blend: a where k, else b. A macro: vector arguments to functions
 * change the ABI when AVX is off (the sanitizer build), which GCC flags. */
#define SELECT8(k, a, b) ((f32x8)(((i32x8)(a) & (k)) | ((i32x8)(b) & ~(k))))

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

/* ---- exp, eight wide ---- */

static inline f32x8 select_f32x8(i32x8 mask, f32x8 a, f32x8 b)
{
    return (f32x8)((mask & (i32x8)a) | (~mask & (i32x8)b));
}

/* e^x for x <= 88 (larger x gives e^88): Cephes' expf, a degree-5
 * polynomial on x - n ln2 scaled by 2^n; within 2 ulp of expf. Below
 * -87.3 (where e^x leaves the normal floats) it returns 0; NaN stays NaN.
 * Softmax feeds it x - max <= 0. */
static inline f32x8 exp_f32x8(f32x8 x)
{
    const f32x8 max_x = F32X8_SPLAT(88.0f), min_x = F32X8_SPLAT(-87.3365447504f);
    const i32x8 under = x < min_x;
    x = select_f32x8(x > max_x, max_x, x);
    x = select_f32x8(under, min_x, x);
    f32x8 fx = x * F32X8_SPLAT(1.44269504088896341f) + F32X8_SPLAT(0.5f);
    f32x8 fn = __builtin_convertvector(__builtin_convertvector(fx, i32x8), f32x8);
    fn = select_f32x8(fn > fx, fn - F32X8_SPLAT(1.0f), fn); /* floor: truncation rounds negatives up */
    f32x8 r = x - fn * F32X8_SPLAT(0.693359375f) - fn * F32X8_SPLAT(-2.12194440e-4f);
    f32x8 p = F32X8_SPLAT(1.9875691500e-4f);
    p = p * r + F32X8_SPLAT(1.3981999507e-3f);
    p = p * r + F32X8_SPLAT(8.3334519073e-3f);
    p = p * r + F32X8_SPLAT(4.1665795894e-2f);
    p = p * r + F32X8_SPLAT(1.6666665459e-1f);
    p = p * r + F32X8_SPLAT(5.0000001201e-1f);
    p = p * r * r + r + F32X8_SPLAT(1.0f);
    const i32x8 n = __builtin_convertvector(fn, i32x8);
    const f32x8 scale = (f32x8)((n + 127) << 23);
    return (f32x8)((i32x8)(p * scale) & ~under);
}

/* erf(x) eight wide: for |x| < 0.9 its Taylor series to x^19 (truncation
 * below 2e-9), above it 1 - erfc(|x|) with erfc from a Chebyshev fit.
 * Odd; NaN stays NaN. */
static inline f32x8 erf_f32x8(f32x8 x)
{
    const i32x8 sign = (i32x8)x & (i32x8)F32X8_SPLAT(-0.0f);
    const f32x8 a = (f32x8)((i32x8)x & ~sign), z = a * a;
    f32x8 p = F32X8_SPLAT(-1.6365844691e-07f);
    p = p * z + F32X8_SPLAT(1.6462114366e-06f);
    p = p * z + F32X8_SPLAT(-1.4925650358e-05f);
    p = p * z + F32X8_SPLAT(1.2055332982e-04f);
    p = p * z + F32X8_SPLAT(-8.5483270235e-04f);
    p = p * z + F32X8_SPLAT(5.2239776254e-03f);
    p = p * z + F32X8_SPLAT(-2.6866170645e-02f);
    p = p * z + F32X8_SPLAT(1.1283791671e-01f);
    p = p * z + F32X8_SPLAT(-3.7612638903e-01f);
    p = p * z + F32X8_SPLAT(1.1283791671e+00f);
    const f32x8 small = a * p;
    /* erfc(a) = t exp(-a^2 + P(t)), t = 1 / (1 + a/2) (Numerical Recipes'
     * Chebyshev fit, relative error below 1.2e-7) */
    const f32x8 t = F32X8_SPLAT(1.0f) / (F32X8_SPLAT(1.0f) + F32X8_SPLAT(0.5f) * a);
    static const float c[10] = {-1.26551223f, 1.00002368f, 0.37409196f, 0.09678418f, -0.18628806f,
                                0.27886807f,  -1.13520398f, 1.48851587f, -0.82215223f, 0.17087277f};
    f32x8 q = F32X8_SPLAT(c[9]);
    for (int k = 8; k >= 0; k--)
        q = q * t + F32X8_SPLAT(c[k]);
    const f32x8 large = F32X8_SPLAT(1.0f) - t * exp_f32x8(q - z);
    const f32x8 r = select_f32x8(a < F32X8_SPLAT(0.9f), small, large);
    return (f32x8)((i32x8)r | sign);
}

/* The largest of x[0..n), n >= 1 (NaNs are passed over). */
static inline float max_f32(const float *x, int64_t n)
{
    float m = x[0];
    int64_t i = 0;
    if (n >= 8) {
        f32x8 m8 = *(const f32x8 *)x;
        for (i = 8; i + 8 <= n; i += 8) {
            f32x8 v = *(const f32x8 *)(x + i);
            m8 = select_f32x8(v > m8, v, m8);
        }
        for (int k = 0; k < 8; k++)
            m = m8[k] > m ? m8[k] : m;
    }
    for (; i < n; i++)
        m = x[i] > m ? x[i] : m;
    return m;
}

/* Transposes the 8x8 block whose rows are r[0..7]: afterwards r[k]
 * holds what was column k (unpack, then pair, then half-swap shuffles). */
static inline void transpose8(f32x8 *r)
{
    f32x8 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int i = 0; i < 8; i += 4)
        for (int j = 0; j < 2; j++) {
            u[i + 2 * j] = __builtin_shufflevector(t[i + j], t[i + j + 2], 0, 1, 8, 9, 4, 5, 12, 13);
            u[i + 2 * j + 1] = __builtin_shufflevector(t[i + j], t[i + j + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        }
    for (int k = 0; k < 4; k++) {
        r[k] = __builtin_shufflevector(u[k], u[k + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        r[k + 4] = __builtin_shufflevector(u[k], u[k + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
}

/* n floats, n small: whole vectors, the last one overlapping the previous. */
static inline void copy_row(float *restrict dst, const float *restrict src, int64_t n)
{
    if (n >= 8) {
        int64_t i = 0;
        for (; i + 8 < n; i += 8)
            *(f32x8 *)(dst + i) = *(const f32x8 *)(src + i);
        *(f32x8 *)(dst + n - 8) = *(const f32x8 *)(src + n - 8);
    } else if (n >= 4) {
        *(f32x4 *)dst = *(const f32x4 *)src;
        *(f32x4 *)(dst + n - 4) = *(const f32x4 *)(src + n - 4);
    } else {
        for (int64_t i = 0; i < n; i++)
            dst[i] = src[i];
    }
}

#endif
