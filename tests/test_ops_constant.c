/* Constant, ConstantOfShape, Range, Cast, CastLike, EyeLike and OneHot
 * against hand-computed values and errors. */
#include "core/error.h"
#include "tests/support/testutil.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

/* ---- helpers ------------------------------------------------------------ */

static Tensor *vec_i64(int n, const int64_t *v)
{
    Shape s = shape_of(1, (int64_t)n);
    return t_i64(&s, v);
}

static Tensor *scalar_f32(float v)
{
    Shape s = {.rank = 0};
    return t_f32(&s, &v);
}

static Tensor *scalar_i64(int64_t v)
{
    Shape s = {.rank = 0};
    return t_i64(&s, &v);
}

static void assert_shape(const Tensor *t, int rank, const int64_t *dims)
{
    Shape want = shape_make(rank, dims);
    char a[128], b[128];
    if (!shape_eq(&t->shape, &want))
        fail_msg("shape %s, want %s", shape_str(&t->shape, a, sizeof a), shape_str(&want, b, sizeof b));
}

static void assert_values(const Tensor *t, const double *want, int64_t n)
{
    assert_int_equal(t->numel, n);
    for (int64_t i = 0; i < n; i++)
        if (tensor_get_f(t, i) != want[i])
            fail_msg("element %lld is %.9g, want %.9g", (long long)i, tensor_get_f(t, i), want[i]);
}

static void assert_run_fails(Node *n, int opset, Tensor **in, int n_in, int code, const char *phrase)
{
    Tensor *out = NULL;
    int rc = t_run(n, opset, in, n_in, &out, 1);
    if (rc != code)
        fail_msg("rc %d (%s), want %d", rc, sh_errmsg(), code);
    if (!strstr(sh_errmsg(), n->name) || !strstr(sh_errmsg(), phrase))
        fail_msg("message '%s' lacks '%s' or the node name", sh_errmsg(), phrase);
    assert_null(out);
    printf("  expected error: %s\n", sh_errmsg());
}

static void free_tensors(Tensor **t, int n)
{
    for (int i = 0; i < n; i++)
        tensor_free(t[i]);
}

/* ---- Constant ----------------------------------------------------------- */

static void test_constant_tensor_value_is_copied(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)2);
    Node *n = t_node("Constant", 0, 1);
    node_set_tensor(n, "value", t_i64(&s, (int64_t[]){1, -2, 3, 1LL << 50}));
    Tensor *y = NULL;
    assert_int_equal(t_run(n, 13, NULL, 0, &y, 1), 0);
    assert_int_equal(y->dtype, SH_I64);
    assert_shape(y, 2, (int64_t[]){2, 2});
    assert_values(y, (double[]){1, -2, 3, (double)(1LL << 50)}, 4);
    tensor_free(y);
    t_node_free(n);
}

static void test_constant_value_float_int_and_lists_from_opset_12(void **state)
{
    (void)state;
    Tensor *y = NULL;
    Node *n = t_node("Constant", 0, 1);
    node_set_float(n, "value_float", 2.5f);
    assert_int_equal(t_run(n, 12, NULL, 0, &y, 1), 0);
    assert_int_equal(y->dtype, SH_F32);
    assert_int_equal(y->shape.rank, 0);
    assert_values(y, (double[]){2.5}, 1);
    tensor_free(y);
    t_node_free(n);

    n = t_node("Constant", 0, 1);
    node_set_floats(n, "value_floats", (float[]){1, 2, 3}, 3);
    assert_int_equal(t_run(n, 13, NULL, 0, &y, 1), 0);
    assert_shape(y, 1, (int64_t[]){3});
    assert_values(y, (double[]){1, 2, 3}, 3);
    tensor_free(y);
    t_node_free(n);

    n = t_node("Constant", 0, 1);
    node_set_int(n, "value_int", -7);
    assert_int_equal(t_run(n, 13, NULL, 0, &y, 1), 0);
    assert_int_equal(y->dtype, SH_I64);
    assert_int_equal(y->shape.rank, 0);
    assert_values(y, (double[]){-7}, 1);
    tensor_free(y);
    t_node_free(n);

    n = t_node("Constant", 0, 1);
    node_set_ints(n, "value_ints", (int64_t[]){4, 5}, 2);
    assert_int_equal(t_run(n, 13, NULL, 0, &y, 1), 0);
    assert_int_equal(y->dtype, SH_I64);
    assert_values(y, (double[]){4, 5}, 2);
    tensor_free(y);
    t_node_free(n);
}

static void test_constant_without_usable_value_fails(void **state)
{
    (void)state;
    Node *n = t_node("Constant", 0, 1);
    assert_run_fails(n, 13, NULL, 0, SH_E_FORMAT, "no value");
    node_set_str(n, "value_string", "hello");
    assert_run_fails(n, 13, NULL, 0, SH_E_UNSUPPORTED, "value_string");
    t_node_free(n);
}

/* ---- ConstantOfShape ---------------------------------------------------- */

static void test_constant_of_shape_default_float_zero(void **state)
{
    (void)state;
    Tensor *x = vec_i64(2, (int64_t[]){2, 3}), *y = NULL;
    Node *n = t_node("ConstantOfShape", 1, 1);
    assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
    assert_int_equal(y->dtype, SH_F32);
    assert_shape(y, 2, (int64_t[]){2, 3});
    assert_values(y, (double[]){0, 0, 0, 0, 0, 0}, 6);
    free_tensors((Tensor *[]){x, y}, 2);
    t_node_free(n);
}

static void test_constant_of_shape_int_value_zero_dim_and_scalar(void **state)
{
    (void)state;
    Shape one = shape_of(1, (int64_t)1);
    Node *n = t_node("ConstantOfShape", 1, 1);
    node_set_tensor(n, "value", t_i64(&one, (int64_t[]){-3}));
    Tensor *x = vec_i64(1, (int64_t[]){4}), *y = NULL;
    assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
    assert_int_equal(y->dtype, SH_I64);
    assert_values(y, (double[]){-3, -3, -3, -3}, 4);
    free_tensors((Tensor *[]){x, y}, 2);
    x = vec_i64(2, (int64_t[]){0, 5});
    assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
    assert_shape(y, 2, (int64_t[]){0, 5});
    free_tensors((Tensor *[]){x, y}, 2);
    Shape empty = shape_of(1, (int64_t)0);
    x = tensor_new(SH_I64, &empty);
    assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
    assert_int_equal(y->shape.rank, 0);
    assert_values(y, (double[]){-3}, 1);
    free_tensors((Tensor *[]){x, y}, 2);
    x = vec_i64(2, (int64_t[]){2, -1});
    assert_run_fails(n, 13, &x, 1, SH_E_SHAPE, "negative");
    tensor_free(x);
    t_node_free(n);
}

/* ---- Range -------------------------------------------------------------- */

static void test_range_float_and_int_hand_values(void **state)
{
    (void)state;
    Tensor *in[3] = {scalar_f32(1), scalar_f32(5), scalar_f32(1.5f)}, *y = NULL;
    Node *n = t_node("Range", 3, 1);
    assert_true(n->op->shape_inputs == 7);
    assert_int_equal(t_run(n, 11, in, 3, &y, 1), 0);
    assert_int_equal(y->dtype, SH_F32);
    assert_values(y, (double[]){1, 2.5, 4}, 3);
    free_tensors((Tensor *[]){in[0], in[1], in[2], y}, 4);
    Tensor *ii[3] = {scalar_i64(10), scalar_i64(4), scalar_i64(-3)};
    assert_int_equal(t_run(n, 11, ii, 3, &y, 1), 0);
    assert_int_equal(y->dtype, SH_I64);
    assert_values(y, (double[]){10, 7}, 2);
    tensor_free(y);
    tensor_i64(ii[0])[0] = 0; /* a span that divides evenly: the limit is excluded */
    tensor_i64(ii[1])[0] = 6;
    tensor_i64(ii[2])[0] = 2;
    assert_int_equal(t_run(n, 11, ii, 3, &y, 1), 0);
    assert_values(y, (double[]){0, 2, 4}, 3);
    tensor_free(y);
    tensor_i64(ii[0])[0] = 10;
    tensor_i64(ii[1])[0] = 4;
    tensor_i64(ii[2])[0] = 3; /* wrong direction: empty */
    assert_int_equal(t_run(n, 11, ii, 3, &y, 1), 0);
    assert_shape(y, 1, (int64_t[]){0});
    tensor_free(y);
    tensor_i64(ii[2])[0] = 0;
    assert_run_fails(n, 11, ii, 3, SH_E_ARG, "delta is 0");
    tensor_i64(ii[0])[0] = INT64_MIN;
    tensor_i64(ii[1])[0] = INT64_MAX;
    tensor_i64(ii[2])[0] = 1;
    assert_run_fails(n, 11, ii, 3, SH_E_ARG, "overflows");
    free_tensors(ii, 3);
    t_node_free(n);
}

static void test_range_mixed_types_fail(void **state)
{
    (void)state;
    Tensor *in[3] = {scalar_f32(1), scalar_i64(5), scalar_f32(1)};
    Node *n = t_node("Range", 3, 1);
    assert_run_fails(n, 11, in, 3, SH_E_ARG, "one type");
    free_tensors(in, 3);
    t_node_free(n);
}

/* ---- Cast, CastLike ----------------------------------------------------- */

static Tensor *cast(const Tensor *x, DType to)
{
    Node *n = t_node("Cast", 1, 1);
    node_set_int(n, "to", to);
    Tensor *y = NULL, *in = (Tensor *)x;
    assert_int_equal(t_run(n, 13, &in, 1, &y, 1), 0);
    assert_int_equal(y->dtype, to);
    t_node_free(n);
    return y;
}

static void test_cast_float_to_int_truncates_toward_zero_and_saturates(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)9);
    Tensor *x = t_f32(&s, (float[]){2.9f, -2.9f, 0.5f, -0.5f, NAN, INFINITY, -1e30f, 300.7f,
                                    9223372036854775808.0f /* 2^63, just out of range */});
    Tensor *y = cast(x, SH_I64);
    assert_int_equal(tensor_i64(y)[0], 2);
    assert_int_equal(tensor_i64(y)[1], -2);
    assert_int_equal(tensor_i64(y)[2], 0);
    assert_int_equal(tensor_i64(y)[3], 0);
    assert_int_equal(tensor_i64(y)[4], 0);
    assert_true(tensor_i64(y)[5] == INT64_MAX);
    assert_true(tensor_i64(y)[6] == INT64_MIN);
    assert_int_equal(tensor_i64(y)[7], 300);
    assert_true(tensor_i64(y)[8] == INT64_MAX);
    tensor_free(y);
    y = cast(x, SH_U8);
    assert_values(y, (double[]){2, 0, 0, 0, 0, 255, 0, 255, 255}, 9);
    free_tensors((Tensor *[]){x, y}, 2);
}

static void test_cast_to_bool_is_nonzero(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)5);
    Tensor *x = t_f32(&s, (float[]){0.0f, -0.0f, 0.25f, NAN, -3}), *y = cast(x, SH_BOOL);
    assert_values(y, (double[]){0, 0, 1, 1, 1}, 5);
    free_tensors((Tensor *[]){x, y}, 2);
    Shape s3 = shape_of(1, (int64_t)3);
    x = t_i64(&s3, (int64_t[]){0, 256, -1});
    y = cast(x, SH_BOOL);
    assert_values(y, (double[]){0, 1, 1}, 3);
    tensor_free(y);
    y = cast(x, SH_U8); /* int64 to uint8 wraps modulo 256 */
    assert_values(y, (double[]){0, 0, 255}, 3);
    free_tensors((Tensor *[]){x, y}, 2);
}

static void test_cast_from_int_bool_and_uint8_to_float(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)3);
    Tensor *x = t_i64(&s, (int64_t[]){-5, 16777217, 0}), *y = cast(x, SH_F32);
    assert_values(y, (double[]){-5, 16777216, 0}, 3);
    Tensor *back = cast(y, SH_I64);
    assert_values(back, (double[]){-5, 16777216, 0}, 3);
    free_tensors((Tensor *[]){x, y, back}, 3);
    x = tensor_new(SH_BOOL, &s);
    tensor_u8(x)[1] = 1;
    y = cast(x, SH_F32);
    assert_values(y, (double[]){0, 1, 0}, 3);
    tensor_free(y);
    y = cast(x, SH_I64);
    assert_values(y, (double[]){0, 1, 0}, 3);
    free_tensors((Tensor *[]){x, y}, 2);
    x = tensor_new(SH_U8, &s);
    tensor_u8(x)[0] = 200;
    y = cast(x, SH_F32);
    assert_values(y, (double[]){200, 0, 0}, 3);
    free_tensors((Tensor *[]){x, y}, 2);
}

static void test_cast_to_unsupported_type_fails_naming_it(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)2);
    Tensor *x = t_f32(&s, (float[]){1, 2});
    Node *n = t_node("Cast", 1, 1);
    node_set_int(n, "to", 11);
    assert_run_fails(n, 13, &x, 1, SH_E_UNSUPPORTED, "DOUBLE");
    node_set_int(n, "to", 6);
    assert_run_fails(n, 13, &x, 1, SH_E_UNSUPPORTED, "INT32");
    Node *no_to = t_node("Cast", 1, 1);
    assert_run_fails(no_to, 13, &x, 1, SH_E_FORMAT, "to");
    tensor_free(x);
    t_node_free(n);
    t_node_free(no_to);
}

static void test_cast_like_takes_type_of_second_input(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)2);
    Tensor *in[2] = {t_f32(&s, (float[]){-1.7f, 3.2f}), scalar_i64(0)}, *y = NULL;
    Node *n = t_node("CastLike", 2, 1);
    assert_int_equal(t_run(n, 15, in, 2, &y, 1), 0);
    assert_int_equal(y->dtype, SH_I64);
    assert_values(y, (double[]){-1, 3}, 2);
    free_tensors((Tensor *[]){in[0], in[1], y}, 3);
    t_node_free(n);
}

/* ---- EyeLike, OneHot ---------------------------------------------------- */

static void test_eye_like_offsets_and_dtype(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)3, (int64_t)4);
    Tensor *x = tensor_new(SH_I64, &s), *y = NULL;
    Node *n = t_node("EyeLike", 1, 1);
    assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
    assert_int_equal(y->dtype, SH_I64);
    assert_values(y, (double[]){1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0}, 12);
    tensor_free(y);
    node_set_int(n, "k", -1);
    node_set_int(n, "dtype", SH_F32);
    assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
    assert_int_equal(y->dtype, SH_F32);
    assert_values(y, (double[]){0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0}, 12);
    tensor_free(y);
    node_set_int(n, "k", 9);
    assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
    for (int i = 0; i < 12; i++)
        assert_true(tensor_f32(y)[i] == 0);
    tensor_free(y);
    node_set_int(n, "dtype", 11);
    assert_run_fails(n, 13, &x, 1, SH_E_UNSUPPORTED, "DOUBLE");
    tensor_free(x);
    t_node_free(n);
}

static void test_one_hot_axes_and_negative_indices(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)4), v = shape_of(1, (int64_t)2);
    Tensor *in[3] = {t_i64(&s, (int64_t[]){0, -1, 3, 2}), scalar_f32(3), t_f32(&v, (float[]){-1, 5})};
    Tensor *y = NULL;
    Node *n = t_node("OneHot", 3, 1);
    assert_int_equal(t_run(n, 11, in, 3, &y, 1), 0);
    assert_shape(y, 2, (int64_t[]){4, 3});
    /* -1 counts from depth (2); 3 is out of range: all off. */
    assert_values(y, (double[]){5, -1, -1, -1, -1, 5, -1, -1, -1, -1, -1, 5}, 12);
    tensor_free(y);
    node_set_int(n, "axis", 0);
    assert_int_equal(t_run(n, 11, in, 3, &y, 1), 0);
    assert_shape(y, 2, (int64_t[]){3, 4});
    assert_values(y, (double[]){5, -1, -1, -1, -1, -1, -1, -1, -1, 5, -1, 5}, 12);
    tensor_free(y);
    node_set_int(n, "axis", 2);
    assert_run_fails(n, 11, in, 3, SH_E_ARG, "axis 2");
    free_tensors(in, 3);
    t_node_free(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_constant_tensor_value_is_copied),
        cmocka_unit_test(test_constant_value_float_int_and_lists_from_opset_12),
        cmocka_unit_test(test_constant_without_usable_value_fails),
        cmocka_unit_test(test_constant_of_shape_default_float_zero),
        cmocka_unit_test(test_constant_of_shape_int_value_zero_dim_and_scalar),
        cmocka_unit_test(test_range_float_and_int_hand_values),
        cmocka_unit_test(test_range_mixed_types_fail),
        cmocka_unit_test(test_cast_float_to_int_truncates_toward_zero_and_saturates),
        cmocka_unit_test(test_cast_to_bool_is_nonzero),
        cmocka_unit_test(test_cast_from_int_bool_and_uint8_to_float),
        cmocka_unit_test(test_cast_to_unsupported_type_fails_naming_it),
        cmocka_unit_test(test_cast_like_takes_type_of_second_input),
        cmocka_unit_test(test_eye_like_offsets_and_dtype),
        cmocka_unit_test(test_one_hot_axes_and_negative_indices),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
