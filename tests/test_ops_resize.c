/* Resize and Upsample against hand-computed values and a naive reference
 * built the way the ONNX reference implementation is: recursive 1-D
 * interpolation over axes in double precision, choosing the n nearest
 * points of an edge-padded line. The op instead precomputes taps and runs
 * one pass per axis, so the two share no code. */
#include "core/error.h"
#include "tests/support/testutil.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* ---- helpers ------------------------------------------------------------ */

static Tensor *vec_f32(int n, const float *v)
{
    Shape s = shape_of(1, (int64_t)n);
    return t_f32(&s, v);
}

static Tensor *vec_i64(int n, const int64_t *v)
{
    Shape s = shape_of(1, (int64_t)n);
    return t_i64(&s, v);
}

static void assert_values(const Tensor *t, const double *want, int64_t n, double tol)
{
    assert_int_equal(t->numel, n);
    for (int64_t i = 0; i < n; i++)
        if (fabs(tensor_get_f(t, i) - want[i]) > tol)
            fail_msg("element %lld is %.7g, want %.7g", (long long)i, tensor_get_f(t, i), want[i]);
}

static void free_tensors(Tensor **t, int n)
{
    for (int i = 0; i < n; i++)
        tensor_free(t[i]);
}

/* ---- naive reference ----------------------------------------------------- */

typedef struct {
    const char *mode, *coord, *nearest;
    double cubic_a;
    int exclude_outside;
    double extrapolation;
} Cfg;

/* The spec's formulas; length_resized is in * scale (not floored). */
static double ref_coord(const Cfg *k, double x, double scale, double len_in, double roi_lo,
                        double roi_hi)
{
    double len_out = len_in * scale;
    if (!strcmp(k->coord, "half_pixel"))
        return (x + 0.5) / scale - 0.5;
    if (!strcmp(k->coord, "pytorch_half_pixel"))
        return len_out > 1 ? (x + 0.5) / scale - 0.5 : 0;
    if (!strcmp(k->coord, "align_corners"))
        return len_out == 1 ? 0 : x * (len_in - 1) / (len_out - 1);
    if (!strcmp(k->coord, "asymmetric"))
        return x / scale;
    if (!strcmp(k->coord, "tf_half_pixel_for_nn"))
        return (x + 0.5) / scale;
    /* tf_crop_and_resize */
    return len_out > 1 ? roi_lo * (len_in - 1) + x * (roi_hi - roi_lo) * (len_in - 1) / (len_out - 1)
                       : 0.5 * (roi_lo + roi_hi) * (len_in - 1);
}

/* Coefficients for ratio in (0, 1] (1 when the coordinate is whole). */
static int ref_coeffs(const Cfg *k, double r, double *c)
{
    if (!strcmp(k->mode, "nearest")) {
        bool whole = r == 1;
        bool right = whole || (!strcmp(k->nearest, "round_prefer_floor") ? r > 0.5
                               : !strcmp(k->nearest, "round_prefer_ceil") ? r >= 0.5
                               : !strcmp(k->nearest, "floor") ? false : true);
        c[0] = !right;
        c[1] = right;
        return 2;
    }
    if (!strcmp(k->mode, "linear")) {
        c[0] = 1 - r;
        c[1] = r;
        return 2;
    }
    double A = k->cubic_a;
    c[0] = ((A * (r + 1) - 5 * A) * (r + 1) + 8 * A) * (r + 1) - 4 * A;
    c[1] = ((A + 2) * r - (A + 3)) * r * r + 1;
    c[2] = ((A + 2) * (1 - r) - (A + 3)) * (1 - r) * (1 - r) + 1;
    c[3] = ((A * ((1 - r) + 1) - 5 * A) * ((1 - r) + 1) + 8 * A) * ((1 - r) + 1) - 4 * A;
    return 4;
}

static double ref_1d(const Cfg *k, const double *v, int64_t len, double scale, int64_t x,
                     double roi_lo, double roi_hi)
{
    double xo = ref_coord(k, (double)x, scale, (double)len, roi_lo, roi_hi);
    if (!strcmp(k->coord, "tf_crop_and_resize") && (xo < 0 || xo > len - 1))
        return k->extrapolation;
    double r = xo - floor(xo), c[4];
    if (r == 0)
        r = 1;
    int n = ref_coeffs(k, r, c), pad = (n + 1) / 2;
    /* The n points of the edge-padded line nearest to xo (ties: lower). */
    int64_t chosen[4];
    bool used[64] = {false};
    for (int j = 0; j < n; j++) {
        int64_t best = -1;
        for (int64_t i = 0; i < len + 2 * pad; i++) {
            double d = fabs(xo + pad - (double)i);
            if (!used[i] && (best < 0 || d < fabs(xo + pad - (double)best)))
                best = i;
        }
        used[best] = true;
    }
    for (int64_t i = 0, j = 0; i < len + 2 * pad; i++)
        if (used[i])
            chosen[j++] = i - pad;
    double sum = 0, out = 0;
    if (k->exclude_outside)
        for (int j = 0; j < n; j++)
            if (chosen[j] < 0 || chosen[j] >= len)
                c[j] = 0;
    for (int j = 0; j < n; j++)
        sum += c[j];
    for (int j = 0; j < n; j++) {
        int64_t i = chosen[j] < 0 ? 0 : chosen[j] >= len ? len - 1 : chosen[j];
        out += (k->exclude_outside ? c[j] / sum : c[j]) * v[i];
    }
    return out;
}

/* One output element: interpolate every slice of the first axis
 * recursively, then along the first axis. */
static double ref_nd(const Cfg *k, const float *x, const int64_t *dims, int rank,
                     const double *scales, const int64_t *o, const double *roi_lo,
                     const double *roi_hi)
{
    double v[64];
    int64_t inner = 1;
    for (int a = 1; a < rank; a++)
        inner *= dims[a];
    for (int64_t i = 0; i < dims[0]; i++)
        v[i] = rank == 1 ? x[i]
                         : ref_nd(k, x + i * inner, dims + 1, rank - 1, scales + 1, o + 1,
                                  roi_lo + 1, roi_hi + 1);
    return ref_1d(k, v, dims[0], scales[0], o[0], roi_lo[0], roi_hi[0]);
}

/* The reference output for x resized to out with per-axis scales. */
static Tensor *ref_resize(const Cfg *k, const Tensor *x, const Shape *out, const double *scales,
                          const double *roi)
{
    Tensor *y = tensor_new(SH_F32, out);
    int r = out->rank;
    double lo[SH_MAX_RANK], hi[SH_MAX_RANK];
    for (int a = 0; a < r; a++) {
        lo[a] = roi ? roi[a] : 0;
        hi[a] = roi ? roi[a + r] : 1;
    }
    for (int64_t i = 0; i < y->numel; i++) {
        int64_t o[SH_MAX_RANK], rem = i;
        for (int a = r - 1; a >= 0; a--) {
            o[a] = rem % out->d[a];
            rem /= out->d[a];
        }
        tensor_f32(y)[i] = (float)ref_nd(k, tensor_f32(x), x->shape.d, r, scales, o, lo, hi);
    }
    return y;
}

/* ---- running the op ------------------------------------------------------ */

static Node *resize_node(const Cfg *k)
{
    Node *n = t_node("Resize", 4, 1);
    node_set_str(n, "mode", k->mode);
    node_set_str(n, "coordinate_transformation_mode", k->coord);
    if (k->nearest)
        node_set_str(n, "nearest_mode", k->nearest);
    node_set_float(n, "cubic_coeff_a", (float)k->cubic_a);
    node_set_int(n, "exclude_outside", k->exclude_outside);
    node_set_float(n, "extrapolation_value", (float)k->extrapolation);
    return n;
}

/* Resizes x with scales (sizes NULL) or sizes (scales NULL) at opset 13
 * and compares with the reference; returns the max abs difference. */
static double check_against_reference(const Cfg *k, const Tensor *x, const float *scales,
                                      const int64_t *sizes, const float *roi, const char *label)
{
    int r = x->shape.rank;
    Node *n = resize_node(k);
    Tensor *in[4] = {(Tensor *)x, roi ? vec_f32(2 * r, roi) : NULL,
                     scales ? vec_f32(r, scales) : NULL, sizes ? vec_i64(r, sizes) : NULL};
    Tensor *y = NULL;
    if (t_run(n, 13, in, 4, &y, 1) != 0)
        fail_msg("%s: %s", label, sh_errmsg());
    Shape out = {.rank = r};
    double sc[SH_MAX_RANK], rd[2 * SH_MAX_RANK];
    for (int a = 0; a < r; a++) {
        out.d[a] = sizes ? sizes[a] : (int64_t)floor((double)x->shape.d[a] * scales[a]);
        sc[a] = sizes ? (double)sizes[a] / (double)x->shape.d[a] : scales[a];
        if (roi) {
            rd[a] = roi[a];
            rd[a + r] = roi[a + r];
        }
    }
    Tensor *ref = ref_resize(k, x, &out, sc, roi ? rd : NULL);
    char buf[160];
    snprintf(buf, sizeof buf, "  %s %s/%s%s%s ex=%d A=%.2f", label, k->mode, k->coord,
             k->nearest ? "/" : "", k->nearest ? k->nearest : "", k->exclude_outside, k->cubic_a);
    double d = t_max_diff(buf, y, ref);
    if (!t_allclose(y, ref, 1e-5, 2e-5))
        fail_msg("%s differs from the reference by %g", buf, d);
    free_tensors((Tensor *[]){in[1], in[2], in[3], y, ref}, 5);
    t_node_free(n);
    return d;
}

static Tensor *random_input(uint64_t seed, const Shape *s)
{
    TRng rng;
    trng_seed(&rng, seed);
    return t_rand(&rng, s, -1, 1);
}

/* ---- tests: reference comparisons ---------------------------------------- */

static const char *const coords[] = {"half_pixel", "pytorch_half_pixel", "align_corners",
                                     "asymmetric", "tf_half_pixel_for_nn"};
static const char *const nearests[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
static const float up[] = {1, 1, 2.3f, 1.7f}, down[] = {1, 1, 0.6f, 0.45f}, mixed[] = {1, 1, 0.8f, 2.5f};

static void test_resize_nearest_matches_reference_for_every_mode(void **state)
{
    (void)state;
    Shape s = shape_of(4, (int64_t)1, (int64_t)2, (int64_t)5, (int64_t)7);
    Tensor *x = random_input(1, &s);
    double worst = 0;
    for (int c = 0; c < 5; c++)
        for (int m = 0; m < 4; m++) {
            Cfg k = {"nearest", coords[c], nearests[m], -0.75, 0, 0};
            worst = fmax(worst, check_against_reference(&k, x, up, NULL, NULL, "up"));
            worst = fmax(worst, check_against_reference(&k, x, down, NULL, NULL, "down"));
            worst = fmax(worst, check_against_reference(&k, x, NULL, (int64_t[]){1, 2, 3, 11}, NULL, "sizes"));
        }
    printf("nearest: worst max abs diff vs reference %.3g (tolerance 2e-5 + 1e-5*|ref|)\n", worst);
    tensor_free(x);
}

static void test_resize_linear_matches_reference(void **state)
{
    (void)state;
    Shape s = shape_of(4, (int64_t)1, (int64_t)2, (int64_t)5, (int64_t)7);
    Tensor *x = random_input(2, &s);
    double worst = 0;
    for (int c = 0; c < 4; c++) {
        Cfg k = {"linear", coords[c], NULL, -0.75, 0, 0};
        worst = fmax(worst, check_against_reference(&k, x, up, NULL, NULL, "up"));
        worst = fmax(worst, check_against_reference(&k, x, down, NULL, NULL, "down"));
        worst = fmax(worst, check_against_reference(&k, x, mixed, NULL, NULL, "mixed"));
        worst = fmax(worst, check_against_reference(&k, x, NULL, (int64_t[]){1, 2, 1, 9}, NULL, "sizes"));
    }
    printf("linear: worst max abs diff vs reference %.3g (tolerance 2e-5 + 1e-5*|ref|)\n", worst);
    tensor_free(x);
}

static void test_resize_cubic_matches_reference_with_exclude_outside(void **state)
{
    (void)state;
    Shape s = shape_of(4, (int64_t)1, (int64_t)2, (int64_t)5, (int64_t)7);
    Tensor *x = random_input(3, &s);
    double worst = 0;
    const double as[] = {-0.75, -0.5};
    for (int c = 0; c < 4; c++)
        for (int ex = 0; ex < 2; ex++)
            for (int ai = 0; ai < 2; ai++) {
                Cfg k = {"cubic", coords[c], NULL, as[ai], ex, 0};
                worst = fmax(worst, check_against_reference(&k, x, up, NULL, NULL, "up"));
                worst = fmax(worst, check_against_reference(&k, x, down, NULL, NULL, "down"));
                worst = fmax(worst, check_against_reference(&k, x, NULL, (int64_t[]){1, 2, 8, 4}, NULL, "sizes"));
            }
    printf("cubic: worst max abs diff vs reference %.3g (tolerance 2e-5 + 1e-5*|ref|)\n", worst);
    tensor_free(x);
}

static void test_resize_tf_crop_and_resize_extrapolates_outside_roi(void **state)
{
    (void)state;
    Shape s = shape_of(4, (int64_t)1, (int64_t)2, (int64_t)5, (int64_t)7);
    Tensor *x = random_input(4, &s);
    const float roi[] = {0, 0, -0.2f, 0.3f, 1, 1, 1.1f, 0.9f};
    double worst = 0;
    const char *const modes[] = {"nearest", "linear", "cubic"};
    for (int m = 0; m < 3; m++) {
        Cfg k = {modes[m], "tf_crop_and_resize", m == 0 ? "round_prefer_ceil" : NULL, -0.75, 0, 10};
        worst = fmax(worst, check_against_reference(&k, x, NULL, (int64_t[]){1, 2, 6, 5}, roi, "crop"));
        worst = fmax(worst, check_against_reference(&k, x, NULL, (int64_t[]){1, 2, 1, 3}, roi, "crop1"));
    }
    printf("tf_crop_and_resize: worst max abs diff vs reference %.3g\n", worst);
    /* Hand check: 1-D [0,1,2,3], roi [-1/3, 4/3], 3 outputs at -1, 1.5 and 4. */
    Shape s1 = shape_of(1, (int64_t)4);
    Tensor *in[4] = {t_f32(&s1, (float[]){0, 1, 2, 3}), vec_f32(2, (float[]){-1.0f / 3, 4.0f / 3}),
                     NULL, vec_i64(1, (int64_t[]){3})}, *y = NULL;
    Cfg k = {"linear", "tf_crop_and_resize", NULL, -0.75, 0, -5};
    Node *n = resize_node(&k);
    assert_int_equal(t_run(n, 13, in, 4, &y, 1), 0);
    assert_values(y, (double[]){-5, 1.5, -5}, 3, 1e-6);
    free_tensors((Tensor *[]){x, in[0], in[1], in[3], y}, 5);
    t_node_free(n);
}

static void test_resize_trilinear_5d_matches_reference(void **state)
{
    (void)state;
    Shape s = shape_of(5, (int64_t)1, (int64_t)2, (int64_t)3, (int64_t)4, (int64_t)5);
    Tensor *x = random_input(5, &s);
    Cfg k = {"linear", "half_pixel", NULL, -0.75, 0, 0};
    double d = check_against_reference(&k, x, (float[]){1, 1, 2, 0.5f, 1.5f}, NULL, NULL, "5-D");
    printf("trilinear 5-D: max abs diff vs reference %.3g\n", d);
    tensor_free(x);
}

/* ---- tests: hand-computed values and opset variants ---------------------- */

static const float two_by_two[] = {1, 2, 3, 4};

static void test_resize_linear_half_pixel_onnx_example(void **state)
{
    (void)state;
    Shape s = shape_of(4, (int64_t)1, (int64_t)1, (int64_t)2, (int64_t)2);
    Tensor *in[4] = {t_f32(&s, two_by_two), NULL, vec_f32(4, (float[]){1, 1, 2, 2}), NULL}, *y = NULL;
    Node *n = t_node("Resize", 4, 1);
    node_set_str(n, "mode", "linear");
    assert_int_equal(t_run(n, 13, in, 4, &y, 1), 0);
    assert_values(y, (double[]){1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5,
                                2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4}, 16, 1e-6);
    free_tensors((Tensor *[]){in[0], in[2], y}, 3);
    t_node_free(n);
}

/* Opset 10 takes (X, scales) and behaves as asymmetric with floor. */
static void test_resize_opset10_scales_input_is_asymmetric(void **state)
{
    (void)state;
    Shape s = shape_of(4, (int64_t)1, (int64_t)1, (int64_t)2, (int64_t)2);
    Tensor *in[2] = {t_f32(&s, two_by_two), vec_f32(4, (float[]){1, 1, 2, 2})}, *y = NULL;
    Node *n = t_node("Resize", 2, 1);
    node_set_str(n, "mode", "linear");
    assert_int_equal(t_run(n, 10, in, 2, &y, 1), 0);
    assert_values(y, (double[]){1, 1.5, 2, 2, 2, 2.5, 3, 3, 3, 3.5, 4, 4, 3, 3.5, 4, 4}, 16, 1e-6);
    tensor_free(y);
    node_set_str(n, "mode", "nearest");
    tensor_free(in[1]);
    in[1] = vec_f32(4, (float[]){1, 1, 1.5f, 1.5f}); /* 2 -> 3: sources 0, 0.67, 1.33 floor */
    assert_int_equal(t_run(n, 10, in, 2, &y, 1), 0);
    assert_values(y, (double[]){1, 1, 2, 1, 1, 2, 3, 3, 4}, 9, 0);
    free_tensors((Tensor *[]){in[0], in[1], y}, 3);
    t_node_free(n);
}

static void test_upsample_nearest_opset9_and_scales_attribute_opset7(void **state)
{
    (void)state;
    Shape s = shape_of(4, (int64_t)1, (int64_t)1, (int64_t)2, (int64_t)2);
    Tensor *in[2] = {t_f32(&s, two_by_two), vec_f32(4, (float[]){1, 1, 2, 3})}, *y = NULL;
    const double want[] = {1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 3, 3, 3, 4, 4, 4};
    Node *n = t_node("Upsample", 2, 1);
    assert_int_equal(t_run(n, 9, in, 2, &y, 1), 0);
    assert_values(y, want, 24, 0);
    tensor_free(y);
    Node *n7 = t_node("Upsample", 1, 1);
    node_set_floats(n7, "scales", (float[]){1, 1, 2, 3}, 4);
    assert_int_equal(t_run(n7, 7, in, 1, &y, 1), 0);
    assert_values(y, want, 24, 0);
    tensor_free(y);
    node_set_str(n, "mode", "linear");
    assert_int_equal(t_run(n, 9, in, 2, &y, 1), 0);
    assert_values(y, (double[]){1, 1.333333, 1.666667, 2, 2, 2, 2, 2.333333, 2.666667, 3, 3, 3,
                                3, 3.333333, 3.666667, 4, 4, 4, 3, 3.333333, 3.666667, 4, 4, 4}, 24, 1e-5);
    free_tensors((Tensor *[]){in[0], in[1], y}, 3);
    t_node_free(n);
    t_node_free(n7);
}

/* Opset 11 requires roi and scales inputs, empty when sizes are used. */
static void test_resize_opset11_empty_scales_with_sizes(void **state)
{
    (void)state;
    Shape s = shape_of(4, (int64_t)1, (int64_t)1, (int64_t)2, (int64_t)2), e = shape_of(1, (int64_t)0);
    Tensor *in[4] = {t_f32(&s, two_by_two), tensor_new(SH_F32, &e), tensor_new(SH_F32, &e),
                     vec_i64(4, (int64_t[]){1, 1, 1, 3})}, *y = NULL;
    Node *n = t_node("Resize", 4, 1);
    node_set_str(n, "coordinate_transformation_mode", "asymmetric");
    assert_int_equal(t_run(n, 11, in, 4, &y, 1), 0);
    assert_values(y, (double[]){1, 2, 2}, 3, 0); /* row 0; cols 0, 0.67, 1.33 rounded */
    free_tensors((Tensor *[]){in[0], in[1], in[2], in[3], y}, 5);
    t_node_free(n);
}

static void test_resize_nearest_copies_uint8_and_int64(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)2);
    Tensor *x = tensor_new(SH_U8, &s), *y = NULL;
    for (int i = 0; i < 4; i++)
        tensor_u8(x)[i] = (uint8_t)(200 + i);
    Tensor *in[4] = {x, NULL, vec_f32(2, (float[]){1, 2}), NULL};
    Node *n = t_node("Resize", 4, 1);
    assert_int_equal(t_run(n, 13, in, 4, &y, 1), 0);
    assert_int_equal(y->dtype, SH_U8);
    assert_values(y, (double[]){200, 200, 201, 201, 202, 202, 203, 203}, 8, 0);
    tensor_free(y);
    in[0] = t_i64(&s, (int64_t[]){1LL << 40, 2, 3, 4});
    assert_int_equal(t_run(n, 13, in, 4, &y, 1), 0);
    assert_int_equal(tensor_i64(y)[1], 1LL << 40);
    free_tensors((Tensor *[]){x, in[0], in[2], y}, 4);
    t_node_free(n);
}

static void test_resize_downsample_to_zero_and_identity(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)3, (int64_t)4);
    Tensor *x = random_input(9, &s), *y = NULL;
    Tensor *in[4] = {x, NULL, vec_f32(2, (float[]){0.2f, 1}), NULL};
    Node *n = t_node("Resize", 4, 1);
    node_set_str(n, "mode", "cubic");
    assert_int_equal(t_run(n, 13, in, 4, &y, 1), 0);
    assert_int_equal(y->shape.d[0], 0);
    tensor_free(y);
    tensor_free(in[2]);
    in[2] = vec_f32(2, (float[]){1, 1});
    assert_int_equal(t_run(n, 13, in, 4, &y, 1), 0);
    assert_memory_equal(y->data, x->data, tensor_bytes(x));
    free_tensors((Tensor *[]){x, in[2], y}, 3);
    t_node_free(n);
}

static void test_resize_bad_arguments_fail(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)2);
    Tensor *xi = t_i64(&s, (int64_t[]){1, 2, 3, 4}), *xf = t_f32(&s, two_by_two), *y = NULL;
    Tensor *sc = vec_f32(2, (float[]){2, 2}), *sz = vec_i64(2, (int64_t[]){4, 4});
    struct {
        const char *attr, *value;
        Tensor *x, *scales, *sizes;
        int code;
        const char *phrase;
    } cases[] = {
        {"mode", "linear", xi, sc, NULL, SH_E_UNSUPPORTED, "float32"},
        {"mode", "nearest", xf, sc, sz, SH_E_ARG, "not both"},
        {"mode", "nearest", xf, NULL, NULL, SH_E_FORMAT, "scales or sizes"},
        {"mode", "area", xf, sc, NULL, SH_E_UNSUPPORTED, "mode 'area'"},
        {"coordinate_transformation_mode", "half_pixel_symmetric", xf, sc, NULL, SH_E_UNSUPPORTED,
         "half_pixel_symmetric"},
        {"nearest_mode", "round", xf, sc, NULL, SH_E_UNSUPPORTED, "nearest_mode"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        Node *n = t_node("Resize", 4, 1);
        node_set_str(n, cases[i].attr, cases[i].value);
        Tensor *in[4] = {cases[i].x, NULL, cases[i].scales, cases[i].sizes};
        assert_int_equal(t_run(n, 13, in, 4, &y, 1), cases[i].code);
        printf("  expected error: %s\n", sh_errmsg());
        assert_non_null(strstr(sh_errmsg(), "test_Resize"));
        assert_non_null(strstr(sh_errmsg(), cases[i].phrase));
        t_node_free(n);
    }
    Tensor *bad = vec_f32(3, (float[]){1, 2, 2});
    Node *n = t_node("Resize", 4, 1);
    Tensor *in[4] = {xf, NULL, bad, NULL};
    assert_int_equal(t_run(n, 13, in, 4, &y, 1), SH_E_SHAPE);
    tensor_i64(sz)[0] = -1;
    Tensor *in2[4] = {xf, NULL, NULL, sz};
    assert_int_equal(t_run(n, 13, in2, 4, &y, 1), SH_E_ARG);
    node_set_int(n, "antialias", 1);
    assert_int_equal(t_run(n, 18, in, 4, &y, 1), SH_E_UNSUPPORTED);
    free_tensors((Tensor *[]){xi, xf, sc, sz, bad}, 5);
    t_node_free(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resize_nearest_matches_reference_for_every_mode),
        cmocka_unit_test(test_resize_linear_matches_reference),
        cmocka_unit_test(test_resize_cubic_matches_reference_with_exclude_outside),
        cmocka_unit_test(test_resize_tf_crop_and_resize_extrapolates_outside_roi),
        cmocka_unit_test(test_resize_trilinear_5d_matches_reference),
        cmocka_unit_test(test_resize_linear_half_pixel_onnx_example),
        cmocka_unit_test(test_resize_opset10_scales_input_is_asymmetric),
        cmocka_unit_test(test_upsample_nearest_opset9_and_scales_attribute_opset7),
        cmocka_unit_test(test_resize_opset11_empty_scales_with_sizes),
        cmocka_unit_test(test_resize_nearest_copies_uint8_and_int64),
        cmocka_unit_test(test_resize_downsample_to_zero_and_identity),
        cmocka_unit_test(test_resize_bad_arguments_fail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
