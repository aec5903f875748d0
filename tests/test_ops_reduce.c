/* Reductions and ArgMax/ArgMin: hand values, axes as attribute or input
 * (ReduceSum from opset 13), keepdims, noop_with_empty_axes, errors, and a
 * naive double reference over random shapes and axis sets. */
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

/* Runs a reduction with axes (n_axes < 0: none given) as an attribute, or
 * as input 1 when axes_input is set. */
static Tensor *run_reduce(const char *op, int opset, const int64_t *axes, int n_axes,
                          int axes_input, int keepdims, Tensor *x, int *rc)
{
    Node *n = t_node(op, axes_input ? 2 : 1, 1);
    if (keepdims >= 0)
        node_set_int(n, "keepdims", keepdims);
    Tensor *in[2] = {x, NULL};
    if (n_axes >= 0 && axes_input) {
        Shape as = shape_of(1, (int64_t)n_axes);
        in[1] = t_i64(&as, axes);
    } else if (n_axes >= 0) {
        node_set_ints(n, "axes", axes, n_axes);
    }
    Tensor *y = NULL;
    *rc = t_run(n, opset, in, axes_input ? 2 : 1, &y, 1);
    tensor_free(in[1]);
    t_node_free(n);
    return y;
}

static Tensor *run_ok(const char *op, int opset, const int64_t *axes, int n_axes, int axes_input,
                      int keepdims, Tensor *x)
{
    int rc;
    Tensor *y = run_reduce(op, opset, axes, n_axes, axes_input, keepdims, x, &rc);
    if (rc != 0)
        fail_msg("%s failed: %s", op, sh_errmsg());
    return y;
}

static void assert_shape(const Tensor *y, int rank, const int64_t *dims)
{
    Shape want = shape_make(rank, dims);
    char a[64], b[64];
    if (!shape_eq(&y->shape, &want))
        fail_msg("shape %s, want %s", shape_str(&y->shape, a, 64), shape_str(&want, b, 64));
}

static void assert_values(const Tensor *y, const float *want, int n, double tol)
{
    assert_int_equal(y->numel, n);
    for (int i = 0; i < n; i++)
        if (!(fabs(tensor_get_f(y, i) - want[i]) <= tol))
            fail_msg("element %d: got %.9g, want %.9g", i, tensor_get_f(y, i), want[i]);
}

/* ---- naive reference ---------------------------------------------------- */

typedef enum { K_SUM, K_MEAN, K_MAX, K_MIN, K_PROD, K_L1, K_L2, K_SUMSQ, K_LOGSUM, K_LSE } Kind;

static const struct {
    const char *op;
    Kind kind;
} reductions[] = {
    {"ReduceSum", K_SUM},   {"ReduceMean", K_MEAN},     {"ReduceMax", K_MAX},
    {"ReduceMin", K_MIN},   {"ReduceProd", K_PROD},     {"ReduceL1", K_L1},
    {"ReduceL2", K_L2},     {"ReduceSumSquare", K_SUMSQ}, {"ReduceLogSum", K_LOGSUM},
    {"ReduceLogSumExp", K_LSE},
};

/* Reduces x over the axes in mask (all if none), in double, visiting each
 * input element and computing its output index by index arithmetic. */
static Tensor *naive_reduce(const Tensor *x, const int *mask, int keepdims, Kind kind)
{
    const Shape *s = &x->shape;
    Shape os = {.rank = 0};
    int64_t count = 1;
    for (int k = 0; k < s->rank; k++) {
        if (mask[k])
            count *= s->d[k];
        if (!mask[k] || keepdims)
            os.d[os.rank++] = mask[k] ? 1 : s->d[k];
    }
    int64_t on = shape_numel(&os);
    double acc[4096];
    assert_true(on <= 4096);
    for (int64_t o = 0; o < on; o++)
        acc[o] = kind == K_MAX ? -INFINITY : kind == K_MIN ? INFINITY : kind == K_PROD ? 1 : 0;
    for (int64_t i = 0; i < x->numel; i++) {
        int64_t rem = i, idx[SH_MAX_RANK];
        for (int k = s->rank - 1; k >= 0; k--) {
            idx[k] = rem % s->d[k];
            rem /= s->d[k];
        }
        int64_t o = 0;
        for (int k = 0; k < s->rank; k++)
            if (!mask[k])
                o = o * s->d[k] + idx[k];
        double v = tensor_f32(x)[i];
        switch (kind) {
        case K_MAX: acc[o] = fmax(acc[o], v); break;
        case K_MIN: acc[o] = fmin(acc[o], v); break;
        case K_PROD: acc[o] *= v; break;
        case K_L1: acc[o] += fabs(v); break;
        case K_L2:
        case K_SUMSQ: acc[o] += v * v; break;
        case K_LSE: acc[o] += exp(v); break;
        default: acc[o] += v; break;
        }
    }
    Tensor *y = tensor_new(SH_F32, &os);
    for (int64_t o = 0; o < on; o++) {
        double v = acc[o];
        switch (kind) {
        case K_MEAN: v /= (double)count; break;
        case K_L2: v = sqrt(v); break;
        case K_LOGSUM:
        case K_LSE: v = log(v); break;
        default: break;
        }
        tensor_f32(y)[o] = (float)v;
    }
    return y;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_reduce_ops_match_naive_on_random_shapes_and_axes(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 21);
    double worst[10] = {0};
    for (int trial = 0; trial < 400; trial++) {
        Shape s = {.rank = (int)trng_int(&r, 1, 5)};
        for (int k = 0; k < s.rank; k++)
            s.d[k] = trng_int(&r, 1, 6);
        int mask[SH_MAX_RANK] = {0};
        int64_t axes[SH_MAX_RANK];
        int n_axes = 0;
        for (int k = 0; k < s.rank; k++)
            if (trng_int(&r, 0, 1)) {
                mask[k] = 1;
                /* negative spelling half the time */
                axes[n_axes++] = trng_int(&r, 0, 1) ? k : k - s.rank;
            }
        if (n_axes == 0)
            for (int k = 0; k < s.rank; k++)
                mask[k] = 1; /* empty axes reduce everything */
        int keepdims = (int)trng_int(&r, 0, 1);
        int which = trial % 10;
        Kind kind = reductions[which].kind;
        /* Prod of many values in [0.5, 1.5] stays well scaled; log needs > 0. */
        Tensor *x = kind == K_PROD || kind == K_LOGSUM ? t_rand(&r, &s, 0.5f, 1.5f)
                                                       : t_rand(&r, &s, -3, 3);
        /* ReduceSum takes axes as input 1 from opset 13; others as attribute. */
        int axes_input = kind == K_SUM && trial % 20 < 10;
        int opset = axes_input ? 13 : (kind == K_SUM ? 11 : 13);
        Tensor *y = run_ok(reductions[which].op, opset, axes, n_axes, axes_input, keepdims, x);
        Tensor *ref = naive_reduce(x, mask, keepdims, kind);
        char a[64], b[64];
        if (!shape_eq(&y->shape, &ref->shape))
            fail_msg("%s on %s: shape %s, want %s", reductions[which].op, shape_str(&s, a, 64),
                     shape_str(&y->shape, b, 64), shape_str(&ref->shape, a, 64));
        for (int64_t i = 0; i < y->numel; i++) {
            double want = tensor_f32(ref)[i];
            double d = fabs(tensor_f32(y)[i] - want) / fmax(1.0, fabs(want));
            worst[which] = isnan(d) ? INFINITY : fmax(worst[which], d);
        }
        tensor_free(x);
        tensor_free(y);
        tensor_free(ref);
    }
    for (int k = 0; k < 10; k++) {
        printf("%s vs naive (random shapes/axes/keepdims): max rel diff %.3g\n",
               reductions[k].op, worst[k]);
        assert_true(worst[k] <= 1e-6);
    }
}

static void test_reduce_sum_axes_attribute_before_opset_13_input_after(void **state)
{
    (void)state;
    Shape s = shape_of(3, (int64_t)2, (int64_t)2, (int64_t)2);
    Tensor *x = t_f32(&s, (float[]){1, 2, 3, 4, 5, 6, 7, 8});
    int64_t axes[] = {1};
    Tensor *y = run_ok("ReduceSum", 11, axes, 1, 0, -1, x);
    assert_shape(y, 3, (int64_t[]){2, 1, 2});
    assert_values(y, (float[]){4, 6, 12, 14}, 4, 0);
    tensor_free(y);
    y = run_ok("ReduceSum", 13, axes, 1, 1, 0, x);
    assert_shape(y, 2, (int64_t[]){2, 2});
    assert_values(y, (float[]){4, 6, 12, 14}, 4, 0);
    tensor_free(y);
    /* opset 13 without the axes input reduces everything */
    y = run_ok("ReduceSum", 13, NULL, -1, 0, 1, x);
    assert_shape(y, 3, (int64_t[]){1, 1, 1});
    assert_values(y, (float[]){36}, 1, 0);
    tensor_free(y);
    tensor_free(x);
    const OpDef *op = op_find("ReduceSum");
    assert_true(op->shape_inputs & (1u << 1)); /* the planner must know axes */
}

static void test_reduce_sum_empty_axes_input_reduces_all_or_is_noop(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)3);
    Tensor *x = t_f32(&s, (float[]){1, 2, 3, 4, 5, 6});
    Tensor *y = run_ok("ReduceSum", 13, NULL, 0, 1, 0, x);
    assert_int_equal(y->shape.rank, 0);
    assert_values(y, (float[]){21}, 1, 0);
    tensor_free(y);
    Node *n = t_node("ReduceSum", 2, 1);
    node_set_int(n, "noop_with_empty_axes", 1);
    Shape es = shape_of(1, (int64_t)0);
    Tensor *in[2] = {x, tensor_new(SH_I64, &es)};
    assert_int_equal(t_run(n, 13, in, 2, &y, 1), 0);
    assert_true(shape_eq(&y->shape, &s));
    assert_values(y, (float[]){1, 2, 3, 4, 5, 6}, 6, 0);
    tensor_free(y);
    tensor_free(in[1]);
    t_node_free(n);
    tensor_free(x);
}

static void test_reduce_mean_max_min_hand_values_with_negative_axes(void **state)
{
    (void)state;
    Shape s = shape_of(3, (int64_t)2, (int64_t)3, (int64_t)2);
    float xv[] = {1, -2, 3, 4, -5, 6, 7, 8, -9, 10, 11, -12};
    Tensor *x = t_f32(&s, xv);
    int64_t last[] = {-1}, mid[] = {-2}, outer[] = {0, 2};
    Tensor *y = run_ok("ReduceMean", 13, last, 1, 0, 0, x);
    assert_shape(y, 2, (int64_t[]){2, 3});
    assert_values(y, (float[]){-0.5f, 3.5f, 0.5f, 7.5f, 0.5f, -0.5f}, 6, 1e-6);
    tensor_free(y);
    y = run_ok("ReduceMax", 13, mid, 1, 0, 1, x);
    assert_shape(y, 3, (int64_t[]){2, 1, 2});
    assert_values(y, (float[]){3, 6, 11, 10}, 4, 0);
    tensor_free(y);
    y = run_ok("ReduceMin", 13, outer, 2, 0, 0, x);
    assert_shape(y, 1, (int64_t[]){3});
    assert_values(y, (float[]){-2, -9, -12}, 3, 0);
    tensor_free(y);
    y = run_ok("ReduceMean", 13, NULL, -1, 0, 0, x); /* no axes: everything */
    assert_int_equal(y->shape.rank, 0);
    assert_values(y, (float[]){22 / 12.0f}, 1, 1e-6);
    tensor_free(y);
    tensor_free(x);
}

static void test_reduce_int64_sum_prod_max_min(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)3);
    Tensor *x = t_i64(&s, (int64_t[]){1, 2, 3, -4, 5, 6});
    int64_t axes[] = {1};
    struct {
        const char *op;
        int64_t want[2];
    } cases[] = {{"ReduceSum", {6, 7}}, {"ReduceProd", {6, -120}},
                 {"ReduceMax", {3, 6}}, {"ReduceMin", {1, -4}}};
    for (int k = 0; k < 4; k++) {
        Tensor *y = run_ok(cases[k].op, 11, axes, 1, 0, 0, x);
        assert_int_equal(y->dtype, SH_I64);
        assert_int_equal(tensor_i64(y)[0], cases[k].want[0]);
        assert_int_equal(tensor_i64(y)[1], cases[k].want[1]);
        tensor_free(y);
    }
    int rc;
    assert_null(run_reduce("ReduceMean", 13, axes, 1, 0, 0, x, &rc));
    assert_int_equal(rc, SH_E_UNSUPPORTED);
    assert_non_null(strstr(sh_errmsg(), "test_ReduceMean"));
    tensor_free(x);
}

static void test_reduce_log_sum_exp_is_stable_for_large_values(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)2);
    Tensor *x = t_f32(&s, (float[]){1000, 1000, -INFINITY, -INFINITY});
    int64_t axes[] = {1};
    Tensor *y = run_ok("ReduceLogSumExp", 13, axes, 1, 0, 0, x);
    assert_float_equal(tensor_f32(y)[0], 1000 + logf(2), 1e-3);
    assert_true(isinf(tensor_f32(y)[1]) && tensor_f32(y)[1] < 0);
    tensor_free(y);
    tensor_free(x);
}

static void test_reduce_rejects_bad_axes_naming_the_node(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)3);
    Tensor *x = tensor_new(SH_F32, &s);
    int rc;
    int64_t out_of_range[] = {2}, twice[] = {1, -1};
    assert_null(run_reduce("ReduceMean", 13, out_of_range, 1, 0, 1, x, &rc));
    assert_int_equal(rc, SH_E_ARG);
    assert_non_null(strstr(sh_errmsg(), "node 'test_ReduceMean' (ReduceMean): axis 2"));
    assert_null(run_reduce("ReduceSum", 13, twice, 2, 1, 1, x, &rc));
    assert_int_equal(rc, SH_E_ARG);
    assert_non_null(strstr(sh_errmsg(), "twice"));
    tensor_free(x);
}

static void test_reduce_sum_axes_unknown_at_plan_time_fails(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)3), as = shape_of(1, (int64_t)1);
    Tensor *x = tensor_new(SH_F32, &s);
    Tensor axes = {.dtype = SH_I64, .shape = as, .numel = 1, .data = NULL};
    Tensor y = {0};
    Tensor *in[2] = {x, &axes}, *out[1] = {&y};
    Node *n = t_node("ReduceSum", 2, 1);
    OpCtx c = {.node = n, .opset = 13, .n_in = 2, .n_out = 1, .in = in, .out = out};
    assert_int_equal(n->op->infer(&c), SH_E_UNSUPPORTED);
    assert_non_null(strstr(sh_errmsg(), "axes"));
    t_node_free(n);
    tensor_free(x);
}

static void test_reduce_over_empty_axis_gives_identity_values(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)0);
    Tensor *x = tensor_new(SH_F32, &s);
    int64_t axes[] = {1};
    Tensor *y = run_ok("ReduceSum", 11, axes, 1, 0, 0, x);
    assert_values(y, (float[]){0, 0}, 2, 0);
    tensor_free(y);
    y = run_ok("ReduceMax", 11, axes, 1, 0, 0, x);
    assert_true(isinf(tensor_f32(y)[0]) && tensor_f32(y)[0] < 0);
    tensor_free(y);
    tensor_free(x);
}

static Tensor *run_arg(const char *op, int64_t axis, int keepdims, int last, Tensor *x, int *rc)
{
    Node *n = t_node(op, 1, 1);
    node_set_int(n, "axis", axis);
    node_set_int(n, "keepdims", keepdims);
    node_set_int(n, "select_last_index", last);
    Tensor *y = NULL;
    *rc = t_run(n, 13, &x, 1, &y, 1);
    t_node_free(n);
    return y;
}

static void test_argmax_argmin_keepdims_and_select_last_index(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)4);
    Tensor *x = t_f32(&s, (float[]){2, 7, 7, 1, 5, -1, 5, -1});
    int rc;
    Tensor *y = run_arg("ArgMax", 1, 1, 0, x, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(y->dtype, SH_I64);
    assert_shape(y, 2, (int64_t[]){2, 1});
    assert_int_equal(tensor_i64(y)[0], 1);
    assert_int_equal(tensor_i64(y)[1], 0);
    tensor_free(y);
    y = run_arg("ArgMax", -1, 0, 1, x, &rc);
    assert_shape(y, 1, (int64_t[]){2});
    assert_int_equal(tensor_i64(y)[0], 2);
    assert_int_equal(tensor_i64(y)[1], 2);
    tensor_free(y);
    y = run_arg("ArgMin", 1, 0, 0, x, &rc);
    assert_int_equal(tensor_i64(y)[0], 3);
    assert_int_equal(tensor_i64(y)[1], 1);
    tensor_free(y);
    y = run_arg("ArgMin", 1, 0, 1, x, &rc);
    assert_int_equal(tensor_i64(y)[0], 3);
    assert_int_equal(tensor_i64(y)[1], 3);
    tensor_free(y);
    y = run_arg("ArgMax", 0, 1, 0, x, &rc); /* over rows */
    assert_shape(y, 2, (int64_t[]){1, 4});
    int64_t want[] = {1, 0, 0, 0};
    for (int i = 0; i < 4; i++)
        assert_int_equal(tensor_i64(y)[i], want[i]);
    tensor_free(y);
    assert_null(run_arg("ArgMax", 2, 1, 0, x, &rc));
    assert_int_equal(rc, SH_E_ARG);
    assert_non_null(strstr(sh_errmsg(), "test_ArgMax"));
    tensor_free(x);
    Shape si = shape_of(1, (int64_t)3);
    x = t_i64(&si, (int64_t[]){4, 9, -2});
    y = run_arg("ArgMax", 0, 0, 0, x, &rc);
    assert_int_equal(y->shape.rank, 0);
    assert_int_equal(tensor_i64(y)[0], 1);
    tensor_free(y);
    tensor_free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reduce_ops_match_naive_on_random_shapes_and_axes),
        cmocka_unit_test(test_reduce_sum_axes_attribute_before_opset_13_input_after),
        cmocka_unit_test(test_reduce_sum_empty_axes_input_reduces_all_or_is_noop),
        cmocka_unit_test(test_reduce_mean_max_min_hand_values_with_negative_axes),
        cmocka_unit_test(test_reduce_int64_sum_prod_max_min),
        cmocka_unit_test(test_reduce_log_sum_exp_is_stable_for_large_values),
        cmocka_unit_test(test_reduce_rejects_bad_axes_naming_the_node),
        cmocka_unit_test(test_reduce_sum_axes_unknown_at_plan_time_fails),
        cmocka_unit_test(test_reduce_over_empty_axis_gives_identity_values),
        cmocka_unit_test(test_argmax_argmin_keepdims_and_select_last_index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
