/* Softmax, LogSoftmax and Hardmax: hand values, the opset-13 change of
 * axis semantics, stability, and a naive double reference. */
#include "tests/support/testutil.h"

#include "core/error.h"
#include "core/ops/kernels_simd.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

static Tensor *run_softmax(const char *op, int opset, int has_axis, int64_t axis, Tensor *x,
                           int *rc)
{
    Node *n = t_node(op, 1, 1);
    if (has_axis)
        node_set_int(n, "axis", axis);
    Tensor *y = NULL;
    *rc = t_run(n, opset, &x, 1, &y, 1);
    t_node_free(n);
    return y;
}

static Tensor *run_ok(const char *op, int opset, int has_axis, int64_t axis, Tensor *x)
{
    int rc;
    Tensor *y = run_softmax(op, opset, has_axis, axis, x, &rc);
    if (rc != 0)
        fail_msg("%s failed: %s", op, sh_errmsg());
    return y;
}

typedef enum { REF_SOFTMAX, REF_LOG_SOFTMAX, REF_HARDMAX } RefKind;

/* Naive reference in double: for each slice (outer o, inner j), visit the
 * n elements at stride inner. Opset < 13 flattens the trailing block. */
static Tensor *naive_softmax(const Tensor *x, int opset, int64_t axis, RefKind kind)
{
    const Shape *s = &x->shape;
    if (axis < 0)
        axis += s->rank;
    int64_t outer = 1, n = 1, inner = 1;
    for (int k = 0; k < s->rank; k++) {
        if (k < axis)
            outer *= s->d[k];
        else if (k == axis || opset < 13)
            n *= s->d[k];
        else
            inner *= s->d[k];
    }
    Tensor *y = tensor_new(SH_F32, s);
    const float *xv = tensor_f32(x);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
            int64_t base = o * n * inner + j;
            double m = -INFINITY, sum = 0;
            int64_t arg = 0;
            for (int64_t k = 0; k < n; k++)
                if (xv[base + k * inner] > m) {
                    m = xv[base + k * inner];
                    arg = k;
                }
            for (int64_t k = 0; k < n; k++)
                sum += exp(xv[base + k * inner] - m);
            for (int64_t k = 0; k < n; k++) {
                double v = xv[base + k * inner];
                double r = kind == REF_SOFTMAX       ? exp(v - m) / sum
                           : kind == REF_LOG_SOFTMAX ? v - m - log(sum)
                                                     : (double)(k == arg);
                tensor_f32(y)[base + k * inner] = (float)r;
            }
        }
    return y;
}

/* The eight-wide exp against libm's double exp over its whole range:
 * within 3 float ulp (relative 3.6e-7) where the result is a normal
 * float, 0 below -87.34, NaN for NaN. */
static void test_vector_exp_matches_libm(void **state)
{
    (void)state;
    double worst = 0;
    for (double x0 = -87.3; x0 < 88.0; x0 += 0.0137 * 8) {
        f32x8 x;
        for (int k = 0; k < 8; k++)
            x[k] = (float)(x0 + 0.0137 * k);
        f32x8 e = exp_f32x8(x);
        for (int k = 0; k < 8; k++) {
            double want = exp((double)x[k]);
            if (x[k] < -87.3365447504f || x[k] > 88.0f)
                continue;
            double rel = fabs(e[k] - want) / want;
            worst = rel > worst ? rel : worst;
        }
    }
    printf("exp_f32x8: max relative error %.3g over [-87.3, 88]\n", worst);
    assert_true(worst <= 3.6e-7);
    f32x8 edge = {-88.0f, -1000.0f, -INFINITY, NAN, 0.0f, -0.0f, 1.0f, -1e-30f};
    f32x8 e = exp_f32x8(edge);
    assert_true(e[0] == 0 && e[1] == 0 && e[2] == 0);
    assert_true(isnan(e[3]));
    assert_true(e[4] == 1.0f && e[5] == 1.0f && fabsf(e[6] - 2.7182817f) <= 3e-7f && e[7] == 1.0f);
}

/* The eight-wide erf against libm's double erf: absolute error <= 1.5e-7
 * everywhere, relative <= 4e-7 below 0.9 (the Taylor part); odd, NaN. */
static void test_vector_erf_matches_libm(void **state)
{
    (void)state;
    double worst_abs = 0, worst_rel = 0;
    for (double x0 = -7; x0 < 7; x0 += 0.00113 * 8) {
        f32x8 x;
        for (int k = 0; k < 8; k++)
            x[k] = (float)(x0 + 0.00113 * k);
        f32x8 e = erf_f32x8(x);
        for (int k = 0; k < 8; k++) {
            double want = erf((double)x[k]), err = fabs(e[k] - want);
            worst_abs = err > worst_abs ? err : worst_abs;
            if (fabsf(x[k]) < 0.9f && want != 0)
                worst_rel = err / fabs(want) > worst_rel ? err / fabs(want) : worst_rel;
        }
    }
    printf("erf_f32x8: max abs error %.3g, max relative error below 0.9 %.3g\n", worst_abs, worst_rel);
    assert_true(worst_abs <= 1.5e-7);
    assert_true(worst_rel <= 4e-7);
    f32x8 edge = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-30f, -1e-30f, 30.0f};
    f32x8 e = erf_f32x8(edge);
    assert_true(e[0] == 0 && !signbit(e[0]) && e[1] == 0 && signbit(e[1]));
    assert_true(e[2] == 1 && e[3] == -1 && isnan(e[4]) && e[7] == 1);
    assert_true(fabsf(e[5] - 1.1283791e-30f) < 1e-36f && e[6] < 0);
}

/* An empty normalized axis ([2, 0]) gives an empty output (found by fuzz_ops). */
static void test_softmax_of_an_empty_axis_is_empty(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)0);
    Tensor *x = t_f32(&s, NULL);
    Tensor *y = run_ok("Softmax", 13, 0, 0, x);
    assert_int_equal(y->numel, 0);
    tensor_free(y);
    y = run_ok("LogSoftmax", 13, 0, 0, x);
    assert_int_equal(y->numel, 0);
    tensor_free(y);
    tensor_free(x);
}

static void test_softmax_hand_values(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)1, (int64_t)3);
    Tensor *x = t_f32(&s, (float[]){1, 2, 3});
    Tensor *y = run_ok("Softmax", 13, 0, 0, x);
    /* e^k / (e + e^2 + e^3) */
    float want[] = {0.09003057f, 0.24472847f, 0.66524096f};
    for (int i = 0; i < 3; i++)
        assert_float_equal(tensor_f32(y)[i], want[i], 1e-6);
    tensor_free(y);
    y = run_ok("LogSoftmax", 13, 0, 0, x);
    for (int i = 0; i < 3; i++)
        assert_float_equal(tensor_f32(y)[i], logf(want[i]), 1e-6);
    tensor_free(y);
    tensor_free(x);
}

/* [2,3,4] with default axis: opset 13 normalizes each row of 4, opset 11
 * normalizes each block of 12 (input coerced to [2,12]). */
static void test_softmax_default_axis_changes_at_opset_13(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 1);
    Shape s = shape_of(3, (int64_t)2, (int64_t)3, (int64_t)4);
    Tensor *x = t_rand(&r, &s, -3, 3);
    Tensor *y13 = run_ok("Softmax", 13, 0, 0, x), *y11 = run_ok("Softmax", 11, 0, 0, x);
    for (int row = 0; row < 6; row++) {
        double sum = 0;
        for (int k = 0; k < 4; k++)
            sum += tensor_f32(y13)[row * 4 + k];
        assert_float_equal(sum, 1.0, 1e-6);
    }
    for (int block = 0; block < 2; block++) {
        double sum = 0;
        for (int k = 0; k < 12; k++)
            sum += tensor_f32(y11)[block * 12 + k];
        assert_float_equal(sum, 1.0, 1e-6);
    }
    Tensor *ref13 = naive_softmax(x, 13, -1, REF_SOFTMAX), *ref11 = naive_softmax(x, 11, 1, REF_SOFTMAX);
    assert_true(t_max_diff("Softmax opset 13 default axis vs naive", y13, ref13) <= 1e-6);
    assert_true(t_max_diff("Softmax opset 11 default axis vs naive", y11, ref11) <= 1e-6);
    assert_false(t_allclose(y13, y11, 0, 1e-3));
    tensor_free(y13);
    tensor_free(y11);
    tensor_free(ref13);
    tensor_free(ref11);
    tensor_free(x);
}

static void test_softmax_family_matches_naive_on_every_axis_and_opset(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 2);
    Shape s = shape_of(4, (int64_t)2, (int64_t)3, (int64_t)5, (int64_t)7);
    Tensor *x = t_rand(&r, &s, -6, 6);
    const char *ops[] = {"Softmax", "LogSoftmax", "Hardmax"};
    const int opsets[] = {9, 11, 13};
    double worst[3] = {0, 0, 0};
    for (int o = 0; o < 3; o++)
        for (int v = 0; v < 3; v++)
            for (int64_t axis = -4; axis < 4; axis++) {
                Tensor *y = run_ok(ops[o], opsets[v], 1, axis, x);
                Tensor *ref = naive_softmax(x, opsets[v], axis, (RefKind)o);
                for (int64_t i = 0; i < y->numel; i++) {
                    double d = fabs(tensor_f32(y)[i] - tensor_f32(ref)[i]);
                    worst[o] = d > worst[o] || isnan(d) ? (isnan(d) ? INFINITY : d) : worst[o];
                }
                tensor_free(y);
                tensor_free(ref);
            }
    printf("Softmax vs naive (all axes, opsets 9/11/13): max abs diff %.3g\n", worst[0]);
    printf("LogSoftmax vs naive (all axes, opsets 9/11/13): max abs diff %.3g\n", worst[1]);
    printf("Hardmax vs naive (all axes, opsets 9/11/13): max abs diff %.3g\n", worst[2]);
    assert_true(worst[0] <= 1e-6);
    assert_true(worst[1] <= 2e-6);
    assert_true(worst[2] == 0);
    tensor_free(x);
}

static void test_softmax_is_stable_for_large_inputs(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)3);
    Tensor *x = t_f32(&s, (float[]){1000, 1001, 1002, -1000, -1001, -1002});
    Tensor *y = run_ok("Softmax", 13, 0, 0, x), *z = run_ok("LogSoftmax", 13, 0, 0, x);
    float want[] = {0.09003057f, 0.24472847f, 0.66524096f, 0.66524096f, 0.24472847f, 0.09003057f};
    for (int i = 0; i < 6; i++) {
        assert_float_equal(tensor_f32(y)[i], want[i], 1e-6);
        assert_float_equal(tensor_f32(z)[i], logf(want[i]), 1e-5);
    }
    tensor_free(y);
    tensor_free(z);
    tensor_free(x);
}

static void test_hardmax_marks_first_maximum(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)3);
    Tensor *x = t_f32(&s, (float[]){3, 1, 3, -1, 5, 2});
    Tensor *y = run_ok("Hardmax", 13, 0, 0, x);
    float want[] = {1, 0, 0, 0, 1, 0};
    for (int i = 0; i < 6; i++)
        assert_float_equal(tensor_f32(y)[i], want[i], 0);
    tensor_free(y);
    tensor_free(x);
}

static void test_softmax_rejects_axis_out_of_range(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)3);
    Tensor *x = tensor_new(SH_F32, &s);
    int rc;
    assert_null(run_softmax("Softmax", 13, 1, 2, x, &rc));
    assert_int_equal(rc, SH_E_ARG);
    assert_non_null(strstr(sh_errmsg(), "node 'test_Softmax' (Softmax)"));
    assert_non_null(strstr(sh_errmsg(), "axis 2"));
    assert_null(run_softmax("LogSoftmax", 11, 1, -3, x, &rc));
    assert_int_equal(rc, SH_E_ARG);
    /* before opset 13, axis == rank is allowed (a block of one) */
    Tensor *y = run_ok("Softmax", 11, 1, 2, x);
    for (int i = 0; i < 6; i++)
        assert_float_equal(tensor_f32(y)[i], 1.0f, 0);
    tensor_free(y);
    tensor_free(x);
}

static void test_softmax_in_place_matches_separate_output(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 4);
    Shape s = shape_of(3, (int64_t)2, (int64_t)5, (int64_t)3);
    for (const OpDef *op = sh_ops_softmax; op->name; op++)
        for (int64_t axis = 0; axis < 3; axis++) {
            assert_true(op->flags & OP_INPLACE);
            Tensor *x = t_rand(&r, &s, -2, 2);
            Tensor *want = run_ok(op->name, 13, 1, axis, x);
            Node *n = t_node(op->name, 1, 1);
            node_set_int(n, "axis", axis);
            Tensor *out[1] = {x};
            OpCtx c = {.node = n, .opset = 13, .n_in = 1, .n_out = 1, .in = &x, .out = out};
            size_t sb = op->scratch ? op->scratch(&c) : 0;
            float scratch[64];
            assert_true(sb <= sizeof scratch);
            c.scratch = scratch;
            c.scratch_bytes = sb;
            assert_int_equal(op->forward(&c), 0);
            char label[64];
            snprintf(label, sizeof label, "%s axis %d in place", op->name, (int)axis);
            assert_true(t_max_diff(label, x, want) == 0);
            t_node_free(n);
            tensor_free(want);
            tensor_free(x);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vector_exp_matches_libm),
        cmocka_unit_test(test_vector_erf_matches_libm),
        cmocka_unit_test(test_softmax_hand_values),
        cmocka_unit_test(test_softmax_of_an_empty_axis_is_empty),
        cmocka_unit_test(test_softmax_default_axis_changes_at_opset_13),
        cmocka_unit_test(test_softmax_family_matches_naive_on_every_axis_and_opset),
        cmocka_unit_test(test_softmax_is_stable_for_large_inputs),
        cmocka_unit_test(test_hardmax_marks_first_maximum),
        cmocka_unit_test(test_softmax_rejects_axis_out_of_range),
        cmocka_unit_test(test_softmax_in_place_matches_separate_output),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
