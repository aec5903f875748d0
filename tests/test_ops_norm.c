/* Normalization ops against the naive reference kernels: BatchNormalization
 * in inference and training form (both output conventions), LayerNorm with
 * its optional outputs, InstanceNorm and LRN. */
#include "tests/support/testutil.h"

#include "core/error.h"
#include "core/ops/kernels.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define RTOL 1e-4
#define ATOL 1e-5

static Tensor *vec_rand(TRng *r, int64_t n, float lo, float hi)
{
    Shape s = shape_of(1, n);
    return t_rand(r, &s, lo, hi);
}

static Tensor *like(const Shape *s) { return tensor_new(SH_F32, s); }

static void check(const char *label, const Tensor *got, const Tensor *want)
{
    t_max_diff(label, got, want);
    assert_true(t_allclose(got, want, RTOL, ATOL));
}

static void test_batchnorm_inference_matches_reference(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 31);
    const Shape shapes[] = {shape_of(2, (int64_t)5, (int64_t)3), shape_of(3, (int64_t)2, (int64_t)4, (int64_t)7),
                            shape_of(4, (int64_t)3, (int64_t)6, (int64_t)5, (int64_t)4),
                            shape_of(5, (int64_t)2, (int64_t)3, (int64_t)2, (int64_t)3, (int64_t)4)};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const int64_t C = shapes[i].d[1];
        Tensor *in[5] = {t_rand(&r, &shapes[i], -2, 2), vec_rand(&r, C, 0.5f, 2), vec_rand(&r, C, -1, 1),
                         vec_rand(&r, C, -1, 1), vec_rand(&r, C, 0.1f, 3)};
        Tensor *y = NULL;
        Node *n = t_node("BatchNormalization", 5, 1);
        node_set_float(n, "epsilon", 1e-3f);
        assert_int_equal(t_run(n, 15, in, 5, &y, 1), 0);
        Tensor *want = like(&shapes[i]);
        batchnorm_ref(tensor_f32(want), tensor_f32(in[0]), tensor_f32(in[1]), tensor_f32(in[2]), tensor_f32(in[3]),
                      tensor_f32(in[4]), 1e-3f, shapes[i].d[0], C, shape_prod(&shapes[i], 2, shapes[i].rank));
        char label[64];
        snprintf(label, sizeof label, "batchnorm inference rank %d", shapes[i].rank);
        check(label, y, want);
        for (int k = 0; k < 5; k++)
            tensor_free(in[k]);
        tensor_free(y);
        tensor_free(want);
        t_node_free(n);
    }
}

/* Runs BatchNormalization in training form at the given opset with n_out
 * outputs and checks Y and every statistic against the reference. */
static void check_bn_training(int opset, int n_out, bool training_attr)
{
    TRng r;
    trng_seed(&r, (uint64_t)(32 + opset));
    Shape xs = shape_of(4, (int64_t)4, (int64_t)3, (int64_t)5, (int64_t)6);
    const int64_t C = 3, sp = 30;
    Tensor *in[5] = {t_rand(&r, &xs, -2, 3), vec_rand(&r, C, 0.5f, 2), vec_rand(&r, C, -1, 1), vec_rand(&r, C, -1, 1),
                     vec_rand(&r, C, 0.1f, 3)};
    Tensor *out[5] = {0};
    Node *n = t_node("BatchNormalization", 5, n_out);
    node_set_float(n, "momentum", 0.8f);
    if (training_attr)
        node_set_int(n, "training_mode", 1);
    assert_int_equal(t_run(n, opset, in, 5, out, n_out), 0);
    float bmean[3], bvar[3];
    batch_stats_ref(bmean, bvar, tensor_f32(in[0]), 4, C, sp);
    Tensor *want = like(&xs);
    batchnorm_ref(tensor_f32(want), tensor_f32(in[0]), tensor_f32(in[1]), tensor_f32(in[2]), bmean, bvar, 1e-5, 4, C, sp);
    char label[80];
    snprintf(label, sizeof label, "batchnorm training opset %d: Y", opset);
    check(label, out[0], want);
    /* running statistics: input * momentum + batch * (1 - momentum) */
    Shape cs = shape_of(1, C);
    Tensor *run_mean = like(&cs), *run_var = like(&cs), *saved_mean = t_f32(&cs, bmean), *saved_var = t_f32(&cs, bvar);
    for (int k = 0; k < C; k++) {
        tensor_f32(run_mean)[k] = tensor_f32(in[3])[k] * 0.8f + bmean[k] * 0.2f;
        tensor_f32(run_var)[k] = tensor_f32(in[4])[k] * 0.8f + bvar[k] * 0.2f;
    }
    const Tensor *wants[5] = {want, run_mean, run_var, saved_mean, saved_var};
    const char *names[5] = {"Y", "running mean", "running var", "saved mean", "saved var"};
    for (int i = 1; i < n_out; i++) {
        snprintf(label, sizeof label, "batchnorm training opset %d: %s", opset, names[i]);
        check(label, out[i], wants[i]);
    }
    for (int k = 0; k < 5; k++) {
        tensor_free(in[k]);
        tensor_free(out[k]);
        tensor_free((Tensor *)wants[k]);
    }
    t_node_free(n);
}

static void test_batchnorm_training_mode_uses_batch_statistics(void **state)
{
    (void)state;
    check_bn_training(15, 3, true);
}

static void test_batchnorm_opset9_extra_outputs_request_training(void **state)
{
    (void)state;
    check_bn_training(9, 5, false);
}

static void test_batchnorm_wrong_scale_length_names_node(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 33);
    Shape xs = shape_of(4, (int64_t)1, (int64_t)3, (int64_t)2, (int64_t)2);
    Tensor *in[5] = {t_rand(&r, &xs, -1, 1), vec_rand(&r, 4, 1, 2), vec_rand(&r, 3, 1, 2), vec_rand(&r, 3, 1, 2),
                     vec_rand(&r, 3, 1, 2)};
    Tensor *y = NULL;
    Node *n = t_node("BatchNormalization", 5, 1);
    assert_int_equal(t_run(n, 15, in, 5, &y, 1), SH_E_SHAPE);
    printf("error: %s\n", sh_errmsg());
    assert_non_null(strstr(sh_errmsg(), "test_BatchNormalization"));
    assert_non_null(strstr(sh_errmsg(), "scale"));
    for (int k = 0; k < 5; k++)
        tensor_free(in[k]);
    t_node_free(n);
}

static void test_layernorm_matches_reference_with_mean_and_inv_std(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 34);
    Shape xs = shape_of(3, (int64_t)3, (int64_t)4, (int64_t)5);
    for (int axis = -3; axis < 3; axis++)
        for (int scale_kind = 0; scale_kind < 2; scale_kind++)
            for (int has_bias = 0; has_bias <= 1; has_bias++) {
                const int a = axis < 0 ? axis + 3 : axis;
                const int64_t rows = shape_prod(&xs, 0, a), cols = shape_prod(&xs, a, 3);
                /* scale either dense over the normalized dims or [1, ..., last] broadcast */
                Shape ss = {.rank = 3 - a};
                for (int i = 0; i < ss.rank; i++)
                    ss.d[i] = scale_kind == 0 || i == ss.rank - 1 ? xs.d[a + i] : 1;
                Tensor *in[3] = {t_rand(&r, &xs, -2, 2), t_rand(&r, &ss, 0.5f, 2), has_bias ? t_rand(&r, &ss, -1, 1) : NULL};
                Tensor *out[3] = {0};
                Node *n = t_node("LayerNormalization", 3, 3);
                node_set_int(n, "axis", axis);
                node_set_float(n, "epsilon", 1e-3f);
                assert_int_equal(t_run(n, 17, in, 3, out, 3), 0);
                /* dense copies of scale and bias for the reference */
                float *sd = malloc((size_t)cols * sizeof *sd), *bd = malloc((size_t)cols * sizeof *bd);
                const int64_t last = xs.d[2];
                for (int64_t j = 0; j < cols; j++) {
                    int64_t at = scale_kind == 0 ? j : (a == 2 ? j : j % last);
                    sd[j] = tensor_f32(in[1])[at];
                    bd[j] = has_bias ? tensor_f32(in[2])[at] : 0;
                }
                Shape stat = xs;
                for (int i = a; i < 3; i++)
                    stat.d[i] = 1;
                Tensor *want = like(&xs), *mean = like(&stat), *inv = like(&stat);
                layernorm_ref(tensor_f32(want), tensor_f32(mean), tensor_f32(inv), tensor_f32(in[0]), sd, bd, rows, cols, 1e-3);
                char label[96];
                snprintf(label, sizeof label, "layernorm axis %d scale %s bias %d", axis, scale_kind ? "broadcast" : "dense", has_bias);
                check(label, out[0], want);
                assert_true(shape_eq(&out[1]->shape, &stat));
                check("  Mean", out[1], mean);
                check("  InvStdDev", out[2], inv);
                for (int k = 0; k < 3; k++) {
                    tensor_free(in[k]);
                    tensor_free(out[k]);
                }
                tensor_free(want);
                tensor_free(mean);
                tensor_free(inv);
                free(sd);
                free(bd);
                t_node_free(n);
            }
}

static void test_layernorm_bad_axis_and_scale_fail(void **state)
{
    (void)state;
    Shape xs = shape_of(2, (int64_t)3, (int64_t)4), ss = shape_of(1, (int64_t)4), bad = shape_of(1, (int64_t)3);
    Tensor *in[2] = {tensor_new(SH_F32, &xs), tensor_new(SH_F32, &ss)}, *y = NULL;
    Node *n = t_node("LayerNormalization", 2, 1);
    node_set_int(n, "axis", 2);
    assert_int_equal(t_run(n, 17, in, 2, &y, 1), SH_E_FORMAT);
    printf("error: %s\n", sh_errmsg());
    assert_non_null(strstr(sh_errmsg(), "axis"));
    node_set_int(n, "axis", -1);
    tensor_free(in[1]);
    in[1] = tensor_new(SH_F32, &bad);
    assert_int_equal(t_run(n, 17, in, 2, &y, 1), SH_E_SHAPE);
    printf("error: %s\n", sh_errmsg());
    assert_non_null(strstr(sh_errmsg(), "Scale"));
    tensor_free(in[0]);
    tensor_free(in[1]);
    t_node_free(n);
}

static void test_instancenorm_matches_reference(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 35);
    Shape xs = shape_of(4, (int64_t)3, (int64_t)4, (int64_t)5, (int64_t)6);
    Tensor *in[3] = {t_rand(&r, &xs, -2, 3), vec_rand(&r, 4, 0.5f, 2), vec_rand(&r, 4, -1, 1)}, *y = NULL;
    Node *n = t_node("InstanceNormalization", 3, 1);
    node_set_float(n, "epsilon", 1e-2f);
    assert_int_equal(t_run(n, 6, in, 3, &y, 1), 0);
    Tensor *want = like(&xs);
    instancenorm_ref(tensor_f32(want), tensor_f32(in[0]), tensor_f32(in[1]), tensor_f32(in[2]), 3, 4, 30, 1e-2f);
    check("instancenorm", y, want);
    for (int k = 0; k < 3; k++)
        tensor_free(in[k]);
    tensor_free(y);
    tensor_free(want);
    t_node_free(n);
}

static void test_lrn_matches_reference_for_odd_and_even_sizes(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 36);
    Shape xs = shape_of(4, (int64_t)2, (int64_t)7, (int64_t)3, (int64_t)4);
    for (int64_t size = 1; size <= 6; size++) {
        Tensor *x = t_rand(&r, &xs, -2, 2), *y = NULL;
        Node *n = t_node("LRN", 1, 1);
        node_set_int(n, "size", size);
        node_set_float(n, "alpha", 0.01f);
        node_set_float(n, "beta", 0.6f);
        node_set_float(n, "bias", 1.5f);
        assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
        Tensor *want = like(&xs);
        lrn_ref(tensor_f32(want), tensor_f32(x), 2, 7, 12, size, 0.01f, 0.6f, 1.5f);
        char label[32];
        snprintf(label, sizeof label, "lrn size %lld", (long long)size);
        check(label, y, want);
        tensor_free(x);
        tensor_free(y);
        tensor_free(want);
        t_node_free(n);
    }
}

static void test_lrn_without_size_fails(void **state)
{
    (void)state;
    Shape xs = shape_of(4, (int64_t)1, (int64_t)2, (int64_t)2, (int64_t)2);
    Tensor *x = tensor_new(SH_F32, &xs), *y = NULL;
    Node *n = t_node("LRN", 1, 1);
    assert_int_equal(t_run(n, 13, &x, 1, &y, 1), SH_E_FORMAT);
    printf("error: %s\n", sh_errmsg());
    assert_non_null(strstr(sh_errmsg(), "'size'"));
    tensor_free(x);
    t_node_free(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batchnorm_inference_matches_reference),
        cmocka_unit_test(test_batchnorm_training_mode_uses_batch_statistics),
        cmocka_unit_test(test_batchnorm_opset9_extra_outputs_request_training),
        cmocka_unit_test(test_batchnorm_wrong_scale_length_names_node),
        cmocka_unit_test(test_layernorm_matches_reference_with_mean_and_inv_std),
        cmocka_unit_test(test_layernorm_bad_axis_and_scale_fail),
        cmocka_unit_test(test_instancenorm_matches_reference),
        cmocka_unit_test(test_lrn_matches_reference_for_odd_and_even_sizes),
        cmocka_unit_test(test_lrn_without_size_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
