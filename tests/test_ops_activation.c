/* Unary activation ops against hand-computed values and naive references. */
#include "tests/support/testutil.h"

#include "core/error.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

/* ---- helpers ------------------------------------------------------------ */

static Tensor *run_node(Node *n, int opset, Tensor **in, int n_in, int *rc)
{
    Tensor *y = NULL;
    *rc = t_run(n, opset, in, n_in, &y, 1);
    return y;
}

static Tensor *run_ok(Node *n, int opset, Tensor **in, int n_in)
{
    int rc;
    Tensor *y = run_node(n, opset, in, n_in, &rc);
    if (rc != 0)
        fail_msg("%s failed: %s", n->op_type, sh_errmsg());
    return y;
}

/* Max |a-b| where NaN matches NaN (ops outside their domain); printed. */
static double nan_aware_max_diff(const char *label, const Tensor *a, const Tensor *b)
{
    double m = 0;
    for (int64_t i = 0; i < a->numel; i++) {
        double x = tensor_f32(a)[i], y = tensor_f32(b)[i];
        if (isnan(x) && isnan(y))
            continue;
        double d = fabs(x - y);
        m = isnan(d) ? INFINITY : d > m ? d : m;
    }
    printf("%s: max abs diff %.3g\n", label, m);
    return m;
}

static void assert_values(const Tensor *y, const float *want, int n, double tol)
{
    assert_int_equal(y->dtype, SH_F32);
    assert_int_equal(y->numel, n);
    for (int i = 0; i < n; i++)
        if (tensor_f32(y)[i] != want[i] && !(fabs(tensor_f32(y)[i] - want[i]) <= tol))
            fail_msg("element %d: got %.9g, want %.9g", i, tensor_f32(y)[i], want[i]);
}

/* ---- reference formulas in double --------------------------------------- */

static double ref_relu(double x) { return x > 0 ? x : 0; }
static double ref_leaky(double x) { return x >= 0 ? x : 0.01 * x; }
static double ref_elu(double x) { return x >= 0 ? x : exp(x) - 1; }
static double ref_selu(double x)
{
    return 1.0507009873554804934193349852946 *
           (x > 0 ? x : 1.6732632423543772848170429916717 * (exp(x) - 1));
}
static double ref_sigmoid(double x) { return 1 / (1 + exp(-x)); }
static double ref_hardsigmoid(double x) { return fmax(0, fmin(1, 0.2 * x + 0.5)); }
static double ref_hardswish(double x) { return x * fmax(0, fmin(1, x / 6 + 0.5)); }
static double ref_softplus(double x) { return log(1 + exp(x)); }
static double ref_softsign(double x) { return x / (1 + fabs(x)); }
static double ref_gelu(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }
static double ref_reciprocal(double x) { return 1 / x; }
static double ref_neg(double x) { return -x; }
static double ref_sign(double x) { return (x > 0) - (x < 0); }

static double ref_thresholded(double x) { return x > 1 ? x : 0; }
static double ref_celu(double x) { return fmax(0, x) + fmin(0, exp(x) - 1); }
static double ref_shrink(double x) { return x < -0.5 || x > 0.5 ? x : 0; }

typedef struct {
    const char *op;
    double (*ref)(double);
    float lo, hi; /* inputs drawn from the op's domain */
} UnaryCase;

static const UnaryCase unary_cases[] = {
    {"Relu", ref_relu, -8, 8},         {"LeakyRelu", ref_leaky, -8, 8},
    {"Elu", ref_elu, -8, 8},           {"Selu", ref_selu, -8, 8},
    {"Sigmoid", ref_sigmoid, -8, 8},   {"HardSigmoid", ref_hardsigmoid, -8, 8},
    {"HardSwish", ref_hardswish, -8, 8}, {"Tanh", tanh, -8, 8},
    {"Softplus", ref_softplus, -8, 8}, {"Softsign", ref_softsign, -8, 8},
    {"Erf", erf, -8, 8},               {"Gelu", ref_gelu, -8, 8},
    {"Sqrt", sqrt, 0, 20},             {"Reciprocal", ref_reciprocal, 0.01f, 20},
    {"Neg", ref_neg, -8, 8},           {"Abs", fabs, -8, 8},
    {"Exp", exp, -8, 8},               {"Log", log, 0.001f, 20},
    {"Floor", floor, -8, 8},           {"Ceil", ceil, -8, 8},
    {"Sign", ref_sign, -8, 8},         {"Sin", sin, -8, 8},
    {"Cos", cos, -8, 8},               {"Tan", tan, -1.5f, 1.5f},
    {"Asin", asin, -1, 1},             {"Acos", acos, -1, 1},
    {"Atan", atan, -8, 8},             {"Sinh", sinh, -8, 8},
    {"Cosh", cosh, -8, 8},             {"Asinh", asinh, -8, 8},
    {"Acosh", acosh, 1, 20},           {"Atanh", atanh, -0.99f, 0.99f},
    {"ThresholdedRelu", ref_thresholded, -8, 8}, {"Celu", ref_celu, -8, 8},
    {"Shrink", ref_shrink, -8, 8},
};

/* ---- tests ---------------------------------------------------------------- */

static void test_relu_zeroes_negatives(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)2);
    float xv[] = {-1.5f, 0.0f, 2.0f, -0.0f};
    Tensor *x = t_f32(&s, xv), *y = NULL;
    Node *n = t_node("Relu", 1, 1);
    assert_int_equal(t_run(n, 17, &x, 1, &y, 1), 0);
    assert_true(shape_eq(&y->shape, &s));
    float want[] = {0, 0, 2, 0};
    for (int i = 0; i < 4; i++)
        assert_float_equal(tensor_f32(y)[i], want[i], 0);
    tensor_free(x);
    tensor_free(y);
    t_node_free(n);
}

/* Every unary op with default attributes against its formula in double,
 * on values spanning negatives, zero, fractions and large magnitudes. */
static void test_unary_ops_match_double_formulas(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 1);
    Shape s = shape_of(2, (int64_t)3, (int64_t)67);
    for (size_t k = 0; k < sizeof unary_cases / sizeof *unary_cases; k++) {
        const UnaryCase *uc = &unary_cases[k];
        Tensor *x = t_rand(&r, &s, uc->lo, uc->hi);
        tensor_f32(x)[0] = uc->lo <= 0 && uc->hi >= 0 ? 0.0f : uc->lo;
        tensor_f32(x)[1] = uc->lo <= -2.5f ? -2.5f : uc->hi;
        Node *n = t_node(uc->op, 1, 1);
        Tensor *y = run_ok(n, 17, &x, 1);
        assert_true(shape_eq(&y->shape, &s));
        Tensor *ref = tensor_new(SH_F32, &s);
        for (int64_t i = 0; i < x->numel; i++)
            tensor_f32(ref)[i] = (float)uc->ref(tensor_f32(x)[i]);
        char label[64];
        snprintf(label, sizeof label, "%s vs double formula", uc->op);
        double d = t_max_diff(label, y, ref);
        if (!t_allclose(y, ref, 3e-6, 3e-6))
            fail_msg("%s differs from its formula (max abs diff %g)", uc->op, d);
        tensor_free(x);
        tensor_free(y);
        tensor_free(ref);
        t_node_free(n);
    }
}

static void test_attributes_override_defaults(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)3);
    Tensor *x = t_f32(&s, (float[]){-2, 0, 3});
    Node *n = t_node("LeakyRelu", 1, 1);
    node_set_float(n, "alpha", 0.5f);
    Tensor *y = run_ok(n, 17, &x, 1);
    assert_values(y, (float[]){-1, 0, 3}, 3, 0);
    tensor_free(y);
    t_node_free(n);

    n = t_node("Elu", 1, 1);
    node_set_float(n, "alpha", 2.0f);
    y = run_ok(n, 17, &x, 1);
    assert_values(y, (float[]){(float)(2 * (exp(-2.0) - 1)), 0, 3}, 3, 1e-6);
    tensor_free(y);
    t_node_free(n);

    n = t_node("Selu", 1, 1);
    node_set_float(n, "alpha", 2.0f);
    node_set_float(n, "gamma", 3.0f);
    y = run_ok(n, 17, &x, 1);
    assert_values(y, (float[]){(float)(3 * 2 * (exp(-2.0) - 1)), 0, 9}, 3, 1e-6);
    tensor_free(y);
    t_node_free(n);

    n = t_node("HardSigmoid", 1, 1);
    node_set_float(n, "alpha", 0.25f);
    node_set_float(n, "beta", 0.25f);
    y = run_ok(n, 17, &x, 1); /* 0.25x + 0.25 clamped to [0,1] */
    assert_values(y, (float[]){0, 0.25f, 1}, 3, 0);
    tensor_free(y);
    t_node_free(n);
    tensor_free(x);
}

static void test_round_halves_to_even(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)7);
    Tensor *x = t_f32(&s, (float[]){0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 2.4f, -2.6f});
    Node *n = t_node("Round", 1, 1);
    Tensor *y = run_ok(n, 11, &x, 1);
    assert_values(y, (float[]){0, 2, 2, 0, -2, 2, -3}, 7, 0);
    tensor_free(y);
    t_node_free(n);
    tensor_free(x);
}

static void test_isnan_isinf_output_bool(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)4);
    Tensor *x = t_f32(&s, (float[]){NAN, INFINITY, -INFINITY, 1});
    Node *n = t_node("IsNaN", 1, 1);
    Tensor *y = run_ok(n, 13, &x, 1);
    assert_int_equal(y->dtype, SH_BOOL);
    uint8_t want_nan[] = {1, 0, 0, 0}, want_inf[] = {0, 1, 1, 0}, want_pos[] = {0, 1, 0, 0};
    assert_memory_equal(y->data, want_nan, 4);
    tensor_free(y);
    t_node_free(n);
    n = t_node("IsInf", 1, 1);
    y = run_ok(n, 13, &x, 1);
    assert_memory_equal(y->data, want_inf, 4);
    tensor_free(y);
    node_set_int(n, "detect_negative", 0);
    y = run_ok(n, 13, &x, 1);
    assert_memory_equal(y->data, want_pos, 4);
    tensor_free(y);
    t_node_free(n);
    tensor_free(x);
}

static void test_gelu_exact_and_tanh_approximation_hand_values(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)3);
    Tensor *x = t_f32(&s, (float[]){-1, 0, 1});
    Node *n = t_node("Gelu", 1, 1);
    Tensor *y = run_ok(n, 17, &x, 1);
    assert_values(y, (float[]){-0.15865525f, 0, 0.84134475f}, 3, 1e-6);
    tensor_free(y);
    node_set_str(n, "approximate", "tanh");
    y = run_ok(n, 17, &x, 1);
    assert_values(y, (float[]){-0.15880801f, 0, 0.84119199f}, 3, 1e-6);
    tensor_free(y);
    node_set_str(n, "approximate", "erf");
    int rc;
    assert_null(run_node(n, 17, &x, 1, &rc));
    assert_int_equal(rc, SH_E_UNSUPPORTED);
    assert_non_null(strstr(sh_errmsg(), "test_Gelu"));
    assert_non_null(strstr(sh_errmsg(), "approximate='erf'"));
    t_node_free(n);
    tensor_free(x);
}

static void test_softplus_and_sigmoid_are_stable_for_large_inputs(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)4);
    Tensor *x = t_f32(&s, (float[]){-100, 100, -1000, 1000});
    Node *n = t_node("Softplus", 1, 1);
    Tensor *y = run_ok(n, 17, &x, 1);
    assert_values(y, (float[]){0, 100, 0, 1000}, 4, 1e-6);
    tensor_free(y);
    t_node_free(n);
    n = t_node("Sigmoid", 1, 1);
    y = run_ok(n, 17, &x, 1);
    assert_values(y, (float[]){0, 1, 0, 1}, 4, 1e-6);
    tensor_free(y);
    t_node_free(n);
    tensor_free(x);
}

static void test_clip_bounds_are_attributes_before_opset_11(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)5);
    Tensor *x = t_f32(&s, (float[]){-3, -1, 0, 1, INFINITY});
    Node *n = t_node("Clip", 1, 1);
    node_set_float(n, "min", -1.5f);
    node_set_float(n, "max", 0.5f);
    Tensor *y = run_ok(n, 6, &x, 1);
    assert_values(y, (float[]){-1.5f, -1, 0, 0.5f, 0.5f}, 5, 0);
    tensor_free(y);
    t_node_free(n);
    /* Absent bounds default to the float limits before opset 11 ... */
    n = t_node("Clip", 1, 1);
    node_set_float(n, "min", 0);
    y = run_ok(n, 9, &x, 1);
    assert_values(y, (float[]){0, 0, 0, 1, 3.402823466e38f}, 5, 0);
    tensor_free(y);
    /* ... and the attributes mean nothing from opset 11. */
    y = run_ok(n, 11, &x, 1);
    assert_values(y, (float[]){-3, -1, 0, 1, INFINITY}, 5, 0);
    tensor_free(y);
    t_node_free(n);
    tensor_free(x);
}

static void test_clip_bounds_are_optional_inputs_from_opset_11(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)4), scalar = shape_of(0);
    Tensor *x = t_f32(&s, (float[]){-3, -1, 1, 3});
    Tensor *lo = t_f32(&scalar, (float[]){-2}), *hi = t_f32(&scalar, (float[]){2});
    Node *n = t_node("Clip", 3, 1);
    Tensor *both[3] = {x, lo, hi}, *min_only[3] = {x, lo, NULL}, *max_only[3] = {x, NULL, hi};
    Tensor *y = run_ok(n, 13, both, 3);
    assert_values(y, (float[]){-2, -1, 1, 2}, 4, 0);
    tensor_free(y);
    t_node_free(n);
    n = t_node("Clip", 3, 1);
    y = run_ok(n, 13, min_only, 3);
    assert_values(y, (float[]){-2, -1, 1, 3}, 4, 0);
    tensor_free(y);
    t_node_free(n);
    n = t_node("Clip", 3, 1);
    y = run_ok(n, 12, max_only, 3);
    assert_values(y, (float[]){-3, -1, 1, 2}, 4, 0);
    tensor_free(y);
    t_node_free(n);
    n = t_node("Clip", 1, 1); /* no bounds at all: identity */
    y = run_ok(n, 11, &x, 1);
    assert_values(y, (float[]){-3, -1, 1, 3}, 4, 0);
    tensor_free(y);
    t_node_free(n);
    tensor_free(x);
    tensor_free(lo);
    tensor_free(hi);
}

static void test_clip_int64_and_bad_bounds(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)4), scalar = shape_of(0), two = shape_of(1, (int64_t)2);
    Tensor *x = t_i64(&s, (int64_t[]){-30, -1, 5, 30});
    Tensor *lo = t_i64(&scalar, (int64_t[]){0}), *hi = t_i64(&scalar, (int64_t[]){10});
    Node *n = t_node("Clip", 3, 1);
    Tensor *in[3] = {x, lo, hi};
    Tensor *y = run_ok(n, 13, in, 3);
    int64_t want[] = {0, 0, 5, 10};
    for (int i = 0; i < 4; i++)
        assert_int_equal(tensor_i64(y)[i], want[i]);
    tensor_free(y);
    /* a bound of another type, and a bound that is not a scalar */
    Tensor *flo = t_f32(&scalar, (float[]){0});
    in[1] = flo;
    int rc;
    assert_null(run_node(n, 13, in, 3, &rc));
    assert_non_null(strstr(sh_errmsg(), "test_Clip"));
    assert_non_null(strstr(sh_errmsg(), "min"));
    Tensor *vec = t_i64(&two, (int64_t[]){0, 1});
    in[1] = vec;
    assert_null(run_node(n, 13, in, 3, &rc));
    assert_int_equal(rc, SH_E_SHAPE);
    assert_non_null(strstr(sh_errmsg(), "scalar"));
    t_node_free(n);
    tensor_free(x);
    tensor_free(lo);
    tensor_free(hi);
    tensor_free(flo);
    tensor_free(vec);
}

/* PRelu reference: index arithmetic per element, slope aligned to the
 * trailing dims of x and broadcast where its dim is 1. */
static Tensor *naive_prelu(const Tensor *x, const Tensor *slope)
{
    Tensor *y = tensor_new(SH_F32, &x->shape);
    const Shape *xs = &x->shape, *ss = &slope->shape;
    for (int64_t i = 0; i < x->numel; i++) {
        int64_t idx[SH_MAX_RANK], rem = i;
        for (int k = xs->rank - 1; k >= 0; k--) {
            idx[k] = rem % xs->d[k];
            rem /= xs->d[k];
        }
        int64_t si = 0;
        for (int k = 0; k < ss->rank; k++)
            si = si * ss->d[k] + (ss->d[k] == 1 ? 0 : idx[xs->rank - ss->rank + k]);
        float v = tensor_f32(x)[i];
        tensor_f32(y)[i] = v >= 0 ? v : tensor_f32(slope)[si] * v;
    }
    return y;
}

static void test_prelu_slope_broadcasts_like_naive_reference(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 5);
    Shape xs = shape_of(4, (int64_t)2, (int64_t)3, (int64_t)4, (int64_t)5);
    Shape slopes[] = {
        shape_of(3, (int64_t)3, (int64_t)1, (int64_t)1),            /* per channel */
        shape_of(4, (int64_t)1, (int64_t)3, (int64_t)1, (int64_t)1), /* per channel, rank 4 */
        shape_of(1, (int64_t)5),                                     /* last dim */
        shape_of(1, (int64_t)1),                                     /* shared */
        shape_of(0),                                                 /* scalar */
        shape_of(2, (int64_t)4, (int64_t)5),                         /* trailing block */
        shape_of(3, (int64_t)3, (int64_t)1, (int64_t)5),             /* not contiguous */
        shape_of(4, (int64_t)2, (int64_t)3, (int64_t)4, (int64_t)5), /* full */
    };
    Tensor *x = t_rand(&r, &xs, -1, 1);
    double max_diff = 0;
    for (size_t k = 0; k < sizeof slopes / sizeof *slopes; k++) {
        Tensor *slope = t_rand(&r, &slopes[k], 0, 0.5f);
        Tensor *in[2] = {x, slope};
        Node *n = t_node("PRelu", 2, 1);
        Tensor *y = run_ok(n, 16, in, 2);
        Tensor *ref = naive_prelu(x, slope);
        char label[96], ss[64];
        snprintf(label, sizeof label, "PRelu slope %s vs naive", shape_str(&slopes[k], ss, 64));
        double d = t_max_diff(label, y, ref);
        max_diff = d > max_diff ? d : max_diff;
        tensor_free(y);
        tensor_free(ref);
        tensor_free(slope);
        t_node_free(n);
    }
    tensor_free(x);
    assert_true(max_diff == 0);
}

static void test_prelu_accepts_legacy_channel_slope(void **state)
{
    (void)state;
    /* [C] slope on [N,C,L]: channel-wise, as before opset 7 */
    Shape xs = shape_of(3, (int64_t)1, (int64_t)2, (int64_t)3), ss = shape_of(1, (int64_t)2);
    Tensor *x = t_f32(&xs, (float[]){-1, -2, 3, -1, -2, 3});
    Tensor *slope = t_f32(&ss, (float[]){0.5f, 0.25f});
    Tensor *in[2] = {x, slope};
    Node *n = t_node("PRelu", 2, 1);
    Tensor *y = run_ok(n, 9, in, 2);
    assert_values(y, (float[]){-0.5f, -1, 3, -0.25f, -0.5f, 3}, 6, 0);
    tensor_free(y);
    t_node_free(n);
    tensor_free(x);
    tensor_free(slope);
}

static void test_prelu_rejects_slope_that_does_not_broadcast(void **state)
{
    (void)state;
    Shape xs = shape_of(2, (int64_t)2, (int64_t)3), ss = shape_of(1, (int64_t)4);
    Tensor *in[2] = {tensor_new(SH_F32, &xs), tensor_new(SH_F32, &ss)};
    Node *n = t_node("PRelu", 2, 1);
    int rc;
    assert_null(run_node(n, 16, in, 2, &rc));
    assert_int_equal(rc, SH_E_SHAPE);
    assert_non_null(strstr(sh_errmsg(), "node 'test_PRelu' (PRelu)"));
    assert_non_null(strstr(sh_errmsg(), "[4]"));
    t_node_free(n);
    tensor_free(in[0]);
    tensor_free(in[1]);
}

static void test_neg_abs_sign_work_on_int64(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)4);
    Tensor *x = t_i64(&s, (int64_t[]){-5, 0, 7, INT64_MIN});
    struct {
        const char *op;
        int64_t want[4];
    } cases[] = {
        {"Neg", {5, 0, -7, INT64_MIN}}, /* INT64_MIN wraps */
        {"Abs", {5, 0, 7, INT64_MIN}},
        {"Sign", {-1, 0, 1, -1}},
    };
    for (size_t k = 0; k < 3; k++) {
        Node *n = t_node(cases[k].op, 1, 1);
        Tensor *y = run_ok(n, 13, &x, 1);
        assert_int_equal(y->dtype, SH_I64);
        for (int i = 0; i < 4; i++)
            assert_int_equal(tensor_i64(y)[i], cases[k].want[i]);
        tensor_free(y);
        t_node_free(n);
    }
    tensor_free(x);
}

static void test_float_only_ops_reject_int64_input(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)2);
    Tensor *x = t_i64(&s, (int64_t[]){1, 2});
    Node *n = t_node("Relu", 1, 1);
    int rc;
    assert_null(run_node(n, 17, &x, 1, &rc));
    assert_int_equal(rc, SH_E_UNSUPPORTED);
    assert_non_null(strstr(sh_errmsg(), "node 'test_Relu' (Relu): input 0 is int64"));
    t_node_free(n);
    tensor_free(x);
}

/* Output 0 sharing input 0's buffer (OP_INPLACE) gives the same result. */
static void test_inplace_ops_are_correct_when_output_aliases_input0(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 9);
    Shape s = shape_of(3, (int64_t)2, (int64_t)3, (int64_t)7), cs = shape_of(2, (int64_t)3, (int64_t)1);
    for (const OpDef *op = sh_ops_activation; op->name; op++) {
        if (!(op->flags & OP_INPLACE))
            continue;
        int n_in = op->min_in;
        Tensor *x = t_rand(&r, &s, 0.1f, 3);
        int positive_only = !strcmp(op->name, "Sqrt") || !strcmp(op->name, "Log");
        for (int64_t i = 0; !positive_only && i < x->numel; i += 2)
            tensor_f32(x)[i] = -tensor_f32(x)[i];
        Tensor *in[2] = {x, t_rand(&r, &cs, 0, 1)};
        Node *n = t_node(op->name, n_in, 1);
        Tensor *want = run_ok(n, 17, in, n_in);
        Tensor *out[1] = {x};
        OpCtx c = {.node = n, .opset = 17, .n_in = n_in, .n_out = 1, .in = in, .out = out};
        assert_int_equal(op->forward(&c), 0);
        char label[64];
        snprintf(label, sizeof label, "%s in place vs separate output", op->name);
        assert_true(nan_aware_max_diff(label, x, want) == 0);
        t_node_free(n);
        tensor_free(want);
        tensor_free(in[0]);
        tensor_free(in[1]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relu_zeroes_negatives),
        cmocka_unit_test(test_unary_ops_match_double_formulas),
        cmocka_unit_test(test_attributes_override_defaults),
        cmocka_unit_test(test_round_halves_to_even),
        cmocka_unit_test(test_isnan_isinf_output_bool),
        cmocka_unit_test(test_gelu_exact_and_tanh_approximation_hand_values),
        cmocka_unit_test(test_softplus_and_sigmoid_are_stable_for_large_inputs),
        cmocka_unit_test(test_clip_bounds_are_attributes_before_opset_11),
        cmocka_unit_test(test_clip_bounds_are_optional_inputs_from_opset_11),
        cmocka_unit_test(test_clip_int64_and_bad_bounds),
        cmocka_unit_test(test_prelu_slope_broadcasts_like_naive_reference),
        cmocka_unit_test(test_prelu_accepts_legacy_channel_slope),
        cmocka_unit_test(test_prelu_rejects_slope_that_does_not_broadcast),
        cmocka_unit_test(test_neg_abs_sign_work_on_int64),
        cmocka_unit_test(test_float_only_ops_reject_int64_input),
        cmocka_unit_test(test_inplace_ops_are_correct_when_output_aliases_input0),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
