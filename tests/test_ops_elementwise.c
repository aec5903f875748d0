/* Elementwise ops: hand-computed values, broadcasting, int64 and bool
 * paths, errors, and the fast/strided broadcast paths held against a naive
 * reference that does index arithmetic per element. */
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

static Tensor *t_bool(const Shape *s, const uint8_t *values)
{
    Tensor *t = tensor_new(SH_BOOL, s);
    if (t->numel)
        memcpy(t->data, values, (size_t)t->numel);
    return t;
}

/* Runs op_type on n_in inputs; returns the output (NULL if the op failed,
 * with *rc set). Frees nothing. */
static Tensor *run_op(const char *op_type, int opset, Tensor **in, int n_in, int *rc)
{
    Node *n = t_node(op_type, n_in, 1);
    Tensor *y = NULL;
    *rc = t_run(n, opset, in, n_in, &y, 1);
    t_node_free(n);
    return y;
}

static Tensor *run_ok(const char *op_type, Tensor **in, int n_in)
{
    int rc;
    Tensor *y = run_op(op_type, 17, in, n_in, &rc);
    if (rc != 0)
        fail_msg("%s failed: %s", op_type, sh_errmsg());
    return y;
}

static void free_all(Tensor **t, int n)
{
    for (int i = 0; i < n; i++)
        tensor_free(t[i]);
}

static void assert_f32_values(const Tensor *y, const float *want, int64_t n, double tol)
{
    assert_int_equal(y->dtype, SH_F32);
    assert_int_equal(y->numel, n);
    for (int64_t i = 0; i < n; i++)
        if (!(fabs(tensor_f32(y)[i] - want[i]) <= tol))
            fail_msg("element %lld: got %g, want %g", (long long)i, tensor_f32(y)[i], want[i]);
}

static void assert_i64_values(const Tensor *y, const int64_t *want, int64_t n)
{
    assert_int_equal(y->dtype, SH_I64);
    assert_int_equal(y->numel, n);
    for (int64_t i = 0; i < n; i++)
        if (tensor_i64(y)[i] != want[i])
            fail_msg("element %lld: got %lld, want %lld", (long long)i,
                     (long long)tensor_i64(y)[i], (long long)want[i]);
}

static void assert_bool_values(const Tensor *y, const uint8_t *want, int64_t n)
{
    assert_int_equal(y->dtype, SH_BOOL);
    assert_int_equal(y->numel, n);
    for (int64_t i = 0; i < n; i++)
        if (tensor_u8(y)[i] != want[i])
            fail_msg("element %lld: got %d, want %d", (long long)i, tensor_u8(y)[i], want[i]);
}

/* ---- naive reference ---------------------------------------------------- */

/* Offset in an input of shape s of the output element at multi-index idx
 * (output rank r): index arithmetic, broadcasting dims of size 1. */
static int64_t naive_offset(const Shape *s, const int64_t *idx, int r)
{
    int64_t off = 0;
    for (int k = 0; k < s->rank; k++) {
        int64_t i = s->d[k] == 1 ? 0 : idx[r - s->rank + k];
        off = off * s->d[k] + i;
    }
    return off;
}

static void naive_unravel(int64_t i, const Shape *s, int64_t *idx)
{
    for (int k = s->rank - 1; k >= 0; k--) {
        idx[k] = i % s->d[k];
        i /= s->d[k];
    }
}

static float naive_f32(const char *op, float a, float b)
{
    if (!strcmp(op, "Add")) return a + b;
    if (!strcmp(op, "Sub")) return a - b;
    if (!strcmp(op, "Mul")) return a * b;
    if (!strcmp(op, "Div")) return a / b;
    if (!strcmp(op, "Max")) return a > b ? a : b;
    if (!strcmp(op, "Min")) return a < b ? a : b;
    if (!strcmp(op, "Pow")) return powf(a, b);
    fail_msg("no naive reference for %s", op);
    return 0;
}

static int64_t naive_i64(const char *op, int64_t a, int64_t b)
{
    if (!strcmp(op, "Add")) return a + b;
    if (!strcmp(op, "Sub")) return a - b;
    if (!strcmp(op, "Mul")) return a * b;
    if (!strcmp(op, "Div")) return a / b;
    if (!strcmp(op, "Max")) return a > b ? a : b;
    if (!strcmp(op, "Min")) return a < b ? a : b;
    fail_msg("no naive reference for %s", op);
    return 0;
}

/* y = a op b broadcast to shape ys, one output element at a time. */
static Tensor *naive_binary(const char *op, const Tensor *a, const Tensor *b, const Shape *ys)
{
    Tensor *y = tensor_new(a->dtype, ys);
    int64_t idx[SH_MAX_RANK];
    for (int64_t i = 0; i < y->numel; i++) {
        naive_unravel(i, ys, idx);
        int64_t ia = naive_offset(&a->shape, idx, ys->rank);
        int64_t ib = naive_offset(&b->shape, idx, ys->rank);
        if (a->dtype == SH_F32)
            tensor_f32(y)[i] = naive_f32(op, tensor_f32(a)[ia], tensor_f32(b)[ib]);
        else
            tensor_i64(y)[i] = naive_i64(op, tensor_i64(a)[ia], tensor_i64(b)[ib]);
    }
    return y;
}

static Tensor *naive_where(const Tensor *c, const Tensor *x, const Tensor *z, const Shape *ys)
{
    Tensor *y = tensor_new(x->dtype, ys);
    int64_t idx[SH_MAX_RANK];
    for (int64_t i = 0; i < y->numel; i++) {
        naive_unravel(i, ys, idx);
        int64_t ic = naive_offset(&c->shape, idx, ys->rank);
        int64_t ix = naive_offset(&x->shape, idx, ys->rank);
        int64_t iz = naive_offset(&z->shape, idx, ys->rank);
        tensor_f32(y)[i] = tensor_u8(c)[ic] ? tensor_f32(x)[ix] : tensor_f32(z)[iz];
    }
    return y;
}

/* Max |a-b| without printing (for loops over many random cases). */
static double quiet_max_diff(const Tensor *a, const Tensor *b)
{
    if (!shape_eq(&a->shape, &b->shape))
        return INFINITY;
    double m = 0;
    for (int64_t i = 0; i < a->numel; i++) {
        double d = fabs(tensor_get_f(a, i) - tensor_get_f(b, i));
        m = isnan(d) ? INFINITY : d > m ? d : m;
    }
    return m;
}

/* A random output shape and an input shape that broadcasts to it: a
 * suffix of the output's dims, each kept or set to 1. */
static Shape random_out_shape(TRng *r)
{
    Shape s = {.rank = (int)trng_int(r, 0, 5)};
    for (int k = 0; k < s.rank; k++)
        s.d[k] = trng_int(r, 1, 5);
    return s;
}

static Shape random_operand_shape(TRng *r, const Shape *out)
{
    Shape s = {.rank = (int)trng_int(r, 0, out->rank)};
    for (int k = 0; k < s.rank; k++) {
        int64_t d = out->d[out->rank - s.rank + k];
        s.d[k] = trng_int(r, 0, 2) == 0 ? 1 : d;
    }
    return s;
}

/* The full broadcast of shapes, computed independently of the op. */
static Shape naive_broadcast(const Shape *const *s, int n)
{
    Shape o = {.rank = 0};
    for (int i = 0; i < n; i++)
        o.rank = s[i]->rank > o.rank ? s[i]->rank : o.rank;
    for (int k = 0; k < o.rank; k++) {
        o.d[k] = 1;
        for (int i = 0; i < n; i++) {
            int kk = k - (o.rank - s[i]->rank);
            if (kk >= 0 && s[i]->d[kk] != 1)
                o.d[k] = s[i]->d[kk];
        }
    }
    return o;
}

static Tensor *random_i64(TRng *r, const Shape *s, int64_t lo, int64_t hi, int nonzero)
{
    Tensor *t = tensor_new(SH_I64, s);
    for (int64_t i = 0; i < t->numel; i++) {
        int64_t v = trng_int(r, lo, hi);
        tensor_i64(t)[i] = nonzero && v == 0 ? 1 : v;
    }
    return t;
}

/* Floats away from zero so Div and Pow stay well conditioned. */
static Tensor *random_f32_away_from_zero(TRng *r, const Shape *s, int positive)
{
    Tensor *t = t_rand(r, s, 0.5f, 2.0f);
    for (int64_t i = 0; !positive && i < t->numel; i++)
        if (trng_int(r, 0, 1))
            tensor_f32(t)[i] = -tensor_f32(t)[i];
    return t;
}

/* ---- hand-computed values ----------------------------------------------- */

static void test_add_same_shape_adds_elementwise(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)2);
    Tensor *in[2] = {t_f32(&s, (float[]){1, 2, 3, 4}), t_f32(&s, (float[]){10, 20, 30, 40})};
    Tensor *y = run_ok("Add", in, 2);
    assert_true(shape_eq(&y->shape, &s));
    assert_f32_values(y, (float[]){11, 22, 33, 44}, 4, 0);
    tensor_free(y);
    free_all(in, 2);
}

static void test_add_broadcasts_2x3x4_with_3x1(void **state)
{
    (void)state;
    Shape sa = shape_of(3, (int64_t)2, (int64_t)3, (int64_t)4), sb = shape_of(2, (int64_t)3, (int64_t)1);
    float av[24];
    for (int i = 0; i < 24; i++)
        av[i] = (float)i;
    Tensor *in[2] = {t_f32(&sa, av), t_f32(&sb, (float[]){100, 200, 300})};
    Tensor *y = run_ok("Add", in, 2);
    assert_true(shape_eq(&y->shape, &sa));
    float want[24];
    for (int i = 0; i < 24; i++)
        want[i] = (float)i + 100.0f * (float)(1 + (i / 4) % 3);
    assert_f32_values(y, want, 24, 0);
    tensor_free(y);
    free_all(in, 2);
}

static void test_mul_broadcasts_scalar_and_rank1_size1_operands(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)3), scalar = shape_of(0), one = shape_of(1, (int64_t)1);
    float xv[] = {1, -2, 3, -4, 5, -6};
    Tensor *x = t_f32(&s, xv);
    Tensor *in[2] = {x, t_f32(&scalar, (float[]){2})};
    Tensor *y = run_ok("Mul", in, 2);
    assert_true(shape_eq(&y->shape, &s));
    assert_f32_values(y, (float[]){2, -4, 6, -8, 10, -12}, 6, 0);
    tensor_free(y);
    tensor_free(in[1]);
    /* scalar first: [1] * [2,3] */
    Tensor *in2[2] = {t_f32(&one, (float[]){-1}), x};
    y = run_ok("Mul", in2, 2);
    assert_true(shape_eq(&y->shape, &s));
    assert_f32_values(y, (float[]){-1, 2, -3, 4, -5, 6}, 6, 0);
    tensor_free(y);
    tensor_free(in2[0]);
    /* scalar * scalar stays rank 0 */
    Tensor *in3[2] = {t_f32(&scalar, (float[]){3}), t_f32(&scalar, (float[]){4})};
    y = run_ok("Mul", in3, 2);
    assert_int_equal(y->shape.rank, 0);
    assert_f32_values(y, (float[]){12}, 1, 0);
    tensor_free(y);
    free_all(in3, 2);
    tensor_free(x);
}

static void test_sub_and_div_float_follow_operand_order(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)3);
    Tensor *in[2] = {t_f32(&s, (float[]){1, 6, -9}), t_f32(&s, (float[]){4, 3, 2})};
    Tensor *y = run_ok("Sub", in, 2);
    assert_f32_values(y, (float[]){-3, 3, -11}, 3, 0);
    tensor_free(y);
    y = run_ok("Div", in, 2);
    assert_f32_values(y, (float[]){0.25f, 2, -4.5f}, 3, 0);
    tensor_free(y);
    free_all(in, 2);
}

static void test_int64_arithmetic_broadcasts_and_div_truncates(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)4), one = shape_of(1, (int64_t)1);
    Tensor *in[2] = {t_i64(&s, (int64_t[]){7, -7, 6, 0}), t_i64(&one, (int64_t[]){-2})};
    Tensor *y = run_ok("Add", in, 2);
    assert_i64_values(y, (int64_t[]){5, -9, 4, -2}, 4);
    tensor_free(y);
    y = run_ok("Sub", in, 2);
    assert_i64_values(y, (int64_t[]){9, -5, 8, 2}, 4);
    tensor_free(y);
    y = run_ok("Mul", in, 2);
    assert_i64_values(y, (int64_t[]){-14, 14, -12, 0}, 4);
    tensor_free(y);
    y = run_ok("Div", in, 2); /* truncation toward zero: 7/-2 = -3, -7/-2 = 3 */
    assert_i64_values(y, (int64_t[]){-3, 3, -3, 0}, 4);
    tensor_free(y);
    y = run_ok("Max", in, 2);
    assert_i64_values(y, (int64_t[]){7, -2, 6, 0}, 4);
    tensor_free(y);
    y = run_ok("Min", in, 2);
    assert_i64_values(y, (int64_t[]){-2, -7, -2, -2}, 4);
    tensor_free(y);
    free_all(in, 2);
}

static void test_int64_div_by_zero_fails_instead_of_trapping(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)2);
    Tensor *in[2] = {t_i64(&s, (int64_t[]){4, 5}), t_i64(&s, (int64_t[]){2, 0})};
    int rc;
    Tensor *y = run_op("Div", 17, in, 2, &rc);
    assert_int_equal(rc, SH_E_NUMERIC);
    assert_null(y);
    assert_non_null(strstr(sh_errmsg(), "test_Div"));
    assert_non_null(strstr(sh_errmsg(), "division by zero"));
    free_all(in, 2);
}

static void test_int64_overflow_wraps_instead_of_undefined(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)1);
    Tensor *in[2] = {t_i64(&s, (int64_t[]){INT64_MAX}), t_i64(&s, (int64_t[]){1})};
    Tensor *y = run_ok("Add", in, 2);
    assert_i64_values(y, (int64_t[]){INT64_MIN}, 1);
    tensor_free(y);
    tensor_i64(in[0])[0] = INT64_MIN;
    tensor_i64(in[1])[0] = -1;
    y = run_ok("Div", in, 2);
    assert_i64_values(y, (int64_t[]){INT64_MIN}, 1);
    tensor_free(y);
    free_all(in, 2);
}

static void test_uint8_arithmetic_wraps(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)2);
    Tensor *a = tensor_new(SH_U8, &s), *b = tensor_new(SH_U8, &s);
    tensor_u8(a)[0] = 250, tensor_u8(a)[1] = 9;
    tensor_u8(b)[0] = 10, tensor_u8(b)[1] = 2;
    Tensor *in[2] = {a, b};
    Tensor *y = run_ok("Add", in, 2);
    assert_int_equal(y->dtype, SH_U8);
    assert_int_equal(tensor_u8(y)[0], 4);
    assert_int_equal(tensor_u8(y)[1], 11);
    tensor_free(y);
    y = run_ok("Div", in, 2);
    assert_int_equal(tensor_u8(y)[0], 25);
    assert_int_equal(tensor_u8(y)[1], 4);
    tensor_free(y);
    free_all(in, 2);
}

static void test_pow_float_base_with_float_or_int64_exponent(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)4), one = shape_of(0);
    Tensor *x = t_f32(&s, (float[]){2, -3, 0.5f, 4});
    Tensor *in[2] = {x, t_f32(&s, (float[]){3, 2, -1, 0.5f})};
    Tensor *y = run_ok("Pow", in, 2);
    assert_f32_values(y, (float[]){8, 9, 2, 2}, 4, 1e-6);
    tensor_free(y);
    tensor_free(in[1]);
    in[1] = t_i64(&one, (int64_t[]){2}); /* x^2: the squaring fast path */
    y = run_ok("Pow", in, 2);
    assert_f32_values(y, (float[]){4, 9, 0.25f, 16}, 4, 0);
    tensor_free(y);
    tensor_free(in[1]);
    in[1] = t_i64(&one, (int64_t[]){3});
    y = run_ok("Pow", in, 2);
    assert_f32_values(y, (float[]){8, -27, 0.125f, 64}, 4, 1e-5);
    tensor_free(y);
    tensor_free(in[1]);
    in[1] = t_f32(&one, (float[]){2}); /* float exponent 2, same fast path */
    y = run_ok("Pow", in, 2);
    assert_f32_values(y, (float[]){4, 9, 0.25f, 16}, 4, 0);
    tensor_free(y);
    free_all(in, 2);
}

static void test_pow_int64_base_and_exponent(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)4);
    Tensor *in[2] = {t_i64(&s, (int64_t[]){2, -3, 5, 2}), t_i64(&s, (int64_t[]){10, 3, 0, -1})};
    Tensor *y = run_ok("Pow", in, 2);
    assert_i64_values(y, (int64_t[]){1024, -27, 1, 0}, 4);
    tensor_free(y);
    free_all(in, 2);
}

static void test_mod_sign_follows_divisor_unless_fmod(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)4);
    Tensor *in[2] = {t_i64(&s, (int64_t[]){7, -7, 7, -7}), t_i64(&s, (int64_t[]){3, 3, -3, -3})};
    Node *n = t_node("Mod", 2, 1);
    Tensor *y = NULL;
    assert_int_equal(t_run(n, 13, in, 2, &y, 1), 0);
    assert_i64_values(y, (int64_t[]){1, 2, -2, -1}, 4); /* like Python */
    tensor_free(y);
    node_set_int(n, "fmod", 1);
    assert_int_equal(t_run(n, 13, in, 2, &y, 1), 0);
    assert_i64_values(y, (int64_t[]){1, -1, 1, -1}, 4); /* like C */
    tensor_free(y);
    tensor_i64(in[1])[2] = 0;
    assert_int_equal(t_run(n, 13, in, 2, &y, 1), SH_E_NUMERIC);
    free_all(in, 2);
    /* float needs fmod=1 */
    Tensor *f[2] = {t_f32(&s, (float[]){7.5f, -7.5f, 7.5f, -7.5f}), t_f32(&s, (float[]){2, 2, -2, -2})};
    assert_int_equal(t_run(n, 13, f, 2, &y, 1), 0);
    assert_f32_values(y, (float[]){1.5f, -1.5f, 1.5f, -1.5f}, 4, 0);
    tensor_free(y);
    node_set_int(n, "fmod", 0);
    assert_int_equal(t_run(n, 13, f, 2, &y, 1), SH_E_UNSUPPORTED);
    assert_non_null(strstr(sh_errmsg(), "fmod=1"));
    free_all(f, 2);
    t_node_free(n);
}

static void test_max_min_sum_mean_are_variadic_with_broadcast(void **state)
{
    (void)state;
    Shape s1 = shape_of(2, (int64_t)2, (int64_t)1), s2 = shape_of(1, (int64_t)3), s0 = shape_of(0);
    Tensor *in[3] = {t_f32(&s1, (float[]){1, 5}), t_f32(&s2, (float[]){0, 3, 6}),
                     t_f32(&s0, (float[]){2})};
    Shape want_shape = shape_of(2, (int64_t)2, (int64_t)3);
    Tensor *y = run_ok("Max", in, 3);
    assert_true(shape_eq(&y->shape, &want_shape));
    assert_f32_values(y, (float[]){2, 3, 6, 5, 5, 6}, 6, 0);
    tensor_free(y);
    y = run_ok("Min", in, 3);
    assert_f32_values(y, (float[]){0, 1, 1, 0, 2, 2}, 6, 0);
    tensor_free(y);
    y = run_ok("Sum", in, 3);
    assert_f32_values(y, (float[]){3, 6, 9, 7, 10, 13}, 6, 0);
    tensor_free(y);
    y = run_ok("Mean", in, 3);
    assert_f32_values(y, (float[]){1, 2, 3, 7 / 3.0f, 10 / 3.0f, 13 / 3.0f}, 6, 1e-6);
    tensor_free(y);
    /* one input: a copy */
    y = run_ok("Sum", in, 1);
    assert_true(shape_eq(&y->shape, &s1));
    assert_f32_values(y, (float[]){1, 5}, 2, 0);
    tensor_free(y);
    free_all(in, 3);
}

static void test_max_propagates_nan(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)2);
    Tensor *in[2] = {t_f32(&s, (float[]){NAN, 1}), t_f32(&s, (float[]){1, NAN})};
    Tensor *y = run_ok("Max", in, 2);
    assert_true(isnan(tensor_f32(y)[0]) && isnan(tensor_f32(y)[1]));
    tensor_free(y);
    y = run_ok("Min", in, 2);
    assert_true(isnan(tensor_f32(y)[0]) && isnan(tensor_f32(y)[1]));
    tensor_free(y);
    free_all(in, 2);
}

static void test_comparisons_output_bool_for_float_and_int64(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)3), one = shape_of(1, (int64_t)1);
    Tensor *f[2] = {t_f32(&s, (float[]){1, 2, 3}), t_f32(&one, (float[]){2})};
    Tensor *i[2] = {t_i64(&s, (int64_t[]){1, 2, 3}), t_i64(&one, (int64_t[]){2})};
    struct {
        const char *op;
        uint8_t want[3];
    } cases[] = {
        {"Equal", {0, 1, 0}},          {"Greater", {0, 0, 1}},     {"Less", {1, 0, 0}},
        {"GreaterOrEqual", {0, 1, 1}}, {"LessOrEqual", {1, 1, 0}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        Tensor *y = run_ok(cases[k].op, f, 2);
        assert_bool_values(y, cases[k].want, 3);
        tensor_free(y);
        y = run_ok(cases[k].op, i, 2);
        assert_bool_values(y, cases[k].want, 3);
        tensor_free(y);
    }
    free_all(f, 2);
    free_all(i, 2);
}

static void test_logic_ops_on_bool(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)4);
    Tensor *in[2] = {t_bool(&s, (uint8_t[]){0, 0, 1, 1}), t_bool(&s, (uint8_t[]){0, 1, 0, 1})};
    Tensor *y = run_ok("And", in, 2);
    assert_bool_values(y, (uint8_t[]){0, 0, 0, 1}, 4);
    tensor_free(y);
    y = run_ok("Or", in, 2);
    assert_bool_values(y, (uint8_t[]){0, 1, 1, 1}, 4);
    tensor_free(y);
    y = run_ok("Xor", in, 2);
    assert_bool_values(y, (uint8_t[]){0, 1, 1, 0}, 4);
    tensor_free(y);
    y = run_ok("Equal", in, 2);
    assert_bool_values(y, (uint8_t[]){1, 0, 0, 1}, 4);
    tensor_free(y);
    y = run_ok("Not", in, 1);
    assert_bool_values(y, (uint8_t[]){1, 1, 0, 0}, 4);
    tensor_free(y);
    free_all(in, 2);
}

static void test_where_broadcasts_condition_and_both_branches(void **state)
{
    (void)state;
    Shape sc = shape_of(2, (int64_t)2, (int64_t)1), sx = shape_of(1, (int64_t)3), s0 = shape_of(0);
    Tensor *in[3] = {t_bool(&sc, (uint8_t[]){1, 0}), t_f32(&sx, (float[]){1, 2, 3}),
                     t_f32(&s0, (float[]){-1})};
    Tensor *y = run_ok("Where", in, 3);
    Shape want = shape_of(2, (int64_t)2, (int64_t)3);
    assert_true(shape_eq(&y->shape, &want));
    assert_f32_values(y, (float[]){1, 2, 3, -1, -1, -1}, 6, 0);
    tensor_free(y);
    tensor_free(in[1]);
    tensor_free(in[2]);
    in[1] = t_i64(&sx, (int64_t[]){10, 20, 30});
    in[2] = t_i64(&s0, (int64_t[]){-5});
    y = run_ok("Where", in, 3);
    assert_i64_values(y, (int64_t[]){10, 20, 30, -5, -5, -5}, 6);
    tensor_free(y);
    free_all(in, 3);
}

/* ---- errors --------------------------------------------------------------- */

static void test_non_broadcastable_shapes_fail_naming_the_node(void **state)
{
    (void)state;
    Shape sa = shape_of(2, (int64_t)2, (int64_t)3), sb = shape_of(1, (int64_t)4);
    Tensor *in[2] = {tensor_new(SH_F32, &sa), tensor_new(SH_F32, &sb)};
    const char *ops[] = {"Add", "Mul", "Equal", "Max"};
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++) {
        int rc;
        Tensor *y = run_op(ops[k], 17, in, 2, &rc);
        assert_int_equal(rc, SH_E_SHAPE);
        assert_null(y);
        char want[64];
        snprintf(want, sizeof want, "node 'test_%s' (%s)", ops[k], ops[k]);
        assert_non_null(strstr(sh_errmsg(), want));
        assert_non_null(strstr(sh_errmsg(), "[2,3] and [4]"));
    }
    Tensor *c = tensor_new(SH_BOOL, &sb);
    Tensor *w[3] = {c, in[0], in[0]};
    int rc;
    assert_null(run_op("Where", 17, w, 3, &rc));
    assert_int_equal(rc, SH_E_SHAPE);
    assert_non_null(strstr(sh_errmsg(), "test_Where"));
    tensor_free(c);
    free_all(in, 2);
}

static void test_mismatched_or_unsupported_types_fail(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)2);
    Tensor *f = tensor_new(SH_F32, &s), *i = tensor_new(SH_I64, &s), *b = tensor_new(SH_BOOL, &s);
    int rc;
    Tensor *mixed[2] = {f, i};
    assert_null(run_op("Add", 17, mixed, 2, &rc));
    assert_int_equal(rc, SH_E_UNSUPPORTED);
    assert_non_null(strstr(sh_errmsg(), "float32 and int64"));
    Tensor *bools[2] = {b, b};
    assert_null(run_op("Add", 17, bools, 2, &rc));
    assert_int_equal(rc, SH_E_UNSUPPORTED);
    Tensor *floats[2] = {f, f};
    assert_null(run_op("And", 17, floats, 2, &rc));
    assert_int_equal(rc, SH_E_UNSUPPORTED);
    assert_null(run_op("Not", 17, floats, 1, &rc));
    assert_int_equal(rc, SH_E_UNSUPPORTED);
    Tensor *where[3] = {b, f, i};
    assert_null(run_op("Where", 17, where, 3, &rc));
    assert_non_null(strstr(sh_errmsg(), "test_Where"));
    Tensor *where_fcond[3] = {f, f, f};
    assert_null(run_op("Where", 17, where_fcond, 3, &rc));
    assert_int_equal(rc, SH_E_UNSUPPORTED);
    tensor_free(f);
    tensor_free(i);
    tensor_free(b);
}

/* ---- fast and strided paths against the naive reference ------------------- */

static void check_binary_against_naive(const char *op, Tensor *a, Tensor *b, double *max_diff)
{
    const Shape *shapes[2] = {&a->shape, &b->shape};
    Shape ys = naive_broadcast(shapes, 2);
    Tensor *in[2] = {a, b};
    Tensor *y = run_ok(op, in, 2);
    Tensor *ref = naive_binary(op, a, b, &ys);
    char sa[64], sb[64];
    if (!shape_eq(&y->shape, &ys))
        fail_msg("%s %s %s: wrong output shape", op, shape_str(&a->shape, sa, 64),
                 shape_str(&b->shape, sb, 64));
    for (int64_t i = 0; i < y->numel; i++) {
        double d = fabs(tensor_get_f(y, i) - tensor_get_f(ref, i));
        if (!(d <= *max_diff))
            *max_diff = isnan(d) ? INFINITY : d;
    }
    tensor_free(y);
    tensor_free(ref);
}

static void test_broadcast_paths_match_naive_reference_on_random_shapes(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 42);
    const char *ops[] = {"Add", "Sub", "Mul", "Div", "Max", "Min"};
    double max_f = 0, max_i = 0, max_pow = 0;
    for (int trial = 0; trial < 300; trial++) {
        Shape out = random_out_shape(&r);
        Shape sa = random_operand_shape(&r, &out), sb = random_operand_shape(&r, &out);
        /* Make some cases the fast paths: same shapes, scalar operand. */
        if (trial % 10 == 0)
            sa = sb = out;
        if (trial % 10 == 1)
            sa = out, sb = shape_of(0);
        if (trial % 10 == 2)
            sa = shape_of(1, (int64_t)1), sb = out;
        const char *op = ops[trial % 6];
        Tensor *a = random_f32_away_from_zero(&r, &sa, 0), *b = random_f32_away_from_zero(&r, &sb, 0);
        check_binary_against_naive(op, a, b, &max_f);
        tensor_free(a);
        tensor_free(b);
        a = random_i64(&r, &sa, -50, 50, 0), b = random_i64(&r, &sb, -9, 9, 1);
        check_binary_against_naive(op, a, b, &max_i);
        tensor_free(a);
        tensor_free(b);
        a = random_f32_away_from_zero(&r, &sa, 1), b = t_rand(&r, &sb, -3, 3);
        check_binary_against_naive("Pow", a, b, &max_pow);
        tensor_free(a);
        tensor_free(b);
    }
    printf("broadcast float32 (Add/Sub/Mul/Div/Max/Min) vs naive: max abs diff %.3g\n", max_f);
    printf("broadcast int64 vs naive: max abs diff %.3g\n", max_i);
    printf("broadcast Pow vs naive powf: max abs diff %.3g\n", max_pow);
    assert_true(max_f == 0); /* the same float operation per element */
    assert_true(max_i == 0);
    assert_true(max_pow <= 1e-5);
}

static void test_per_channel_and_bias_broadcasts_match_naive(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 7);
    Shape shapes[][2] = {
        {shape_of(4, (int64_t)2, (int64_t)8, (int64_t)5, (int64_t)7),
         shape_of(4, (int64_t)1, (int64_t)8, (int64_t)1, (int64_t)1)},
        {shape_of(4, (int64_t)2, (int64_t)8, (int64_t)5, (int64_t)7),
         shape_of(3, (int64_t)8, (int64_t)1, (int64_t)1)},
        {shape_of(3, (int64_t)2, (int64_t)5, (int64_t)16), shape_of(1, (int64_t)16)},
        {shape_of(4, (int64_t)2, (int64_t)8, (int64_t)5, (int64_t)7),
         shape_of(4, (int64_t)2, (int64_t)8, (int64_t)5, (int64_t)7)},
        {shape_of(4, (int64_t)2, (int64_t)1, (int64_t)5, (int64_t)1),
         shape_of(4, (int64_t)1, (int64_t)8, (int64_t)1, (int64_t)7)},
    };
    double max_diff = 0;
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++)
        for (int swap = 0; swap < 2; swap++) {
            Tensor *a = t_rand(&r, &shapes[k][swap], -2, 2), *b = t_rand(&r, &shapes[k][!swap], -2, 2);
            check_binary_against_naive("Add", a, b, &max_diff);
            check_binary_against_naive("Mul", a, b, &max_diff);
            tensor_free(a);
            tensor_free(b);
        }
    printf("per-channel / bias broadcasts vs naive: max abs diff %.3g\n", max_diff);
    assert_true(max_diff == 0);
}

static void test_where_matches_naive_reference_on_random_shapes(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 3);
    double max_diff = 0;
    for (int trial = 0; trial < 200; trial++) {
        Shape out = random_out_shape(&r);
        Shape sc = random_operand_shape(&r, &out), sx = random_operand_shape(&r, &out),
              sz = random_operand_shape(&r, &out);
        if (trial % 5 == 0)
            sc = sx = sz = out;
        Tensor *c = tensor_new(SH_BOOL, &sc);
        for (int64_t i = 0; i < c->numel; i++)
            tensor_u8(c)[i] = (uint8_t)trng_int(&r, 0, 1);
        Tensor *in[3] = {c, t_rand(&r, &sx, -1, 1), t_rand(&r, &sz, -1, 1)};
        const Shape *shapes[3] = {&sc, &sx, &sz};
        Shape ys = naive_broadcast(shapes, 3);
        Tensor *y = run_ok("Where", in, 3);
        Tensor *ref = naive_where(in[0], in[1], in[2], &ys);
        double d = quiet_max_diff(y, ref);
        max_diff = d > max_diff ? d : max_diff;
        tensor_free(y);
        tensor_free(ref);
        free_all(in, 3);
    }
    printf("Where vs naive: max abs diff %.3g\n", max_diff);
    assert_true(max_diff == 0);
}

/* Inplace ops must give the same result when the executor hands them
 * output 0 sharing input 0's buffer. */
static void test_inplace_ops_are_correct_when_output_aliases_input0(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 11);
    Shape s = shape_of(3, (int64_t)2, (int64_t)3, (int64_t)5), sb = shape_of(2, (int64_t)3, (int64_t)1);
    for (const OpDef *op = sh_ops_elementwise; op->name; op++) {
        if (!(op->flags & OP_INPLACE))
            continue;
        int logic = !strcmp(op->name, "And") || !strcmp(op->name, "Or") ||
                    !strcmp(op->name, "Xor") || !strcmp(op->name, "Not");
        int n_in = op->min_in;
        Tensor *a = logic ? tensor_new(SH_BOOL, &s) : random_f32_away_from_zero(&r, &s, 1);
        Tensor *b = logic ? tensor_new(SH_BOOL, &sb) : random_f32_away_from_zero(&r, &sb, 0);
        for (int64_t i = 0; logic && i < a->numel; i++)
            tensor_u8(a)[i] = (uint8_t)trng_int(&r, 0, 1);
        for (int64_t i = 0; logic && i < b->numel; i++)
            tensor_u8(b)[i] = (uint8_t)trng_int(&r, 0, 1);
        Tensor *in[2] = {a, b};
        Node *n = t_node(op->name, n_in, 1);
        node_set_int(n, "fmod", 1); /* float Mod needs it; others ignore it */
        Tensor *want = NULL;
        assert_int_equal(t_run(n, 17, in, n_in, &want, 1), 0);
        Tensor *out[1] = {a};
        OpCtx c = {.node = n, .opset = 17, .n_in = n_in, .n_out = 1, .in = in, .out = out};
        assert_int_equal(op->forward(&c), 0);
        char label[64];
        snprintf(label, sizeof label, "%s in place vs separate output", op->name);
        assert_true(t_max_diff(label, a, want) == 0);
        t_node_free(n);
        tensor_free(want);
        free_all(in, 2);
    }
}

/* An executor that hands Add an output sharing a broadcast input 0 (same
 * bytes after arena rounding, fewer elements) gets an error, not a result
 * computed from half-overwritten input. */
static void test_in_place_with_broadcast_input0_is_refused(void **state)
{
    (void)state;
    Shape sa = shape_of(2, (int64_t)1, (int64_t)4), sb = shape_of(2, (int64_t)4, (int64_t)4);
    float buf[16] = {1, 2, 3, 4};
    Tensor a = tensor_view(SH_F32, &sa, buf), y = tensor_view(SH_F32, &sb, buf);
    Tensor *b = tensor_new(SH_F32, &sb);
    Tensor *in[2] = {&a, b}, *out[1] = {&y};
    Node *n = t_node("Add", 2, 1);
    OpCtx c = {.node = n, .opset = 17, .n_in = 2, .n_out = 1, .in = in, .out = out};
    assert_int_equal(n->op->forward(&c), SH_E_STATE);
    assert_non_null(strstr(sh_errmsg(), "node 'test_Add' (Add)"));
    assert_non_null(strstr(sh_errmsg(), "in place"));
    t_node_free(n);
    tensor_free(b);
}

static void test_empty_tensors_broadcast_to_empty_output(void **state)
{
    (void)state;
    Shape sa = shape_of(2, (int64_t)0, (int64_t)3), sb = shape_of(1, (int64_t)3);
    Tensor *in[2] = {tensor_new(SH_F32, &sa), tensor_new(SH_F32, &sb)};
    Tensor *y = run_ok("Add", in, 2);
    assert_true(shape_eq(&y->shape, &sa));
    assert_int_equal(y->numel, 0);
    tensor_free(y);
    free_all(in, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_same_shape_adds_elementwise),
        cmocka_unit_test(test_add_broadcasts_2x3x4_with_3x1),
        cmocka_unit_test(test_mul_broadcasts_scalar_and_rank1_size1_operands),
        cmocka_unit_test(test_sub_and_div_float_follow_operand_order),
        cmocka_unit_test(test_int64_arithmetic_broadcasts_and_div_truncates),
        cmocka_unit_test(test_int64_div_by_zero_fails_instead_of_trapping),
        cmocka_unit_test(test_int64_overflow_wraps_instead_of_undefined),
        cmocka_unit_test(test_uint8_arithmetic_wraps),
        cmocka_unit_test(test_pow_float_base_with_float_or_int64_exponent),
        cmocka_unit_test(test_pow_int64_base_and_exponent),
        cmocka_unit_test(test_mod_sign_follows_divisor_unless_fmod),
        cmocka_unit_test(test_max_min_sum_mean_are_variadic_with_broadcast),
        cmocka_unit_test(test_max_propagates_nan),
        cmocka_unit_test(test_comparisons_output_bool_for_float_and_int64),
        cmocka_unit_test(test_logic_ops_on_bool),
        cmocka_unit_test(test_where_broadcasts_condition_and_both_branches),
        cmocka_unit_test(test_non_broadcastable_shapes_fail_naming_the_node),
        cmocka_unit_test(test_mismatched_or_unsupported_types_fail),
        cmocka_unit_test(test_broadcast_paths_match_naive_reference_on_random_shapes),
        cmocka_unit_test(test_per_channel_and_bias_broadcasts_match_naive),
        cmocka_unit_test(test_where_matches_naive_reference_on_random_shapes),
        cmocka_unit_test(test_inplace_ops_are_correct_when_output_aliases_input0),
        cmocka_unit_test(test_in_place_with_broadcast_input0_is_refused),
        cmocka_unit_test(test_empty_tensors_broadcast_to_empty_output),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
