/* Normalization backward against central finite differences
 * (t_gradcheck): BatchNormalization with batch statistics (shears'
 * training mode and ONNX's training_mode, opset 9 and 15 forms, with and
 * without the statistics outputs) and with running statistics
 * (inference), LayerNormalization over the last axis and the last two
 * (with broadcast Scale, without B, with Mean/InvStdDev outputs) and
 * InstanceNormalization. Also: a training forward updates the running
 * statistics in place (unbiased variance), an inference one does not. */
#include "tests/support/gradcheck.h"
#include "tests/support/testutil.h"

#include "core/error.h"
#include "core/op.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static void require_pass(const char *label, double e, double *worst)
{
    if (e < 0 || e > 1)
        fail_msg("%s: gradient check failed (error %.3f of tolerance): %s", label, e, sh_errmsg());
    *worst = fmax(*worst, e);
}

/* ---- BatchNormalization ------------------------------------------------ */

typedef struct {
    const char *label;
    Shape x;
    int opset, training, training_mode, n_out;
    float momentum; /* < 0: attribute not set */
} BnCase;

/* X, scale, B, mean, var: the statistics inputs are skipped (bits 3, 4):
 * shears does not train them. Variance kept well away from 0. */
static double check_bn(const BnCase *k, uint64_t seed)
{
    TRng r;
    trng_seed(&r, seed);
    const int64_t ch = k->x.d[1];
    Shape cs = shape_of(1, ch);
    Tensor *in[5] = {t_rand(&r, &k->x, -2, 2), t_rand(&r, &cs, 0.5f, 1.5f), t_rand(&r, &cs, -1, 1),
                     t_rand(&r, &cs, -0.2f, 0.2f), t_rand(&r, &cs, 0.5f, 1.5f)};
    Node *node = t_node("BatchNormalization", 5, k->n_out);
    if (k->training_mode)
        node_set_int(node, "training_mode", 1);
    if (k->momentum >= 0)
        node_set_float(node, "momentum", k->momentum);
    GradCheck gc = {.seed = seed, .training = k->training, .skip = (1u << 3) | (1u << 4)};
    double e = t_gradcheck(k->label, node, k->opset, in, 5, k->n_out, &gc);
    for (int i = 0; i < 5; i++)
        tensor_free(in[i]);
    t_node_free(node);
    return e;
}

static void test_batchnorm_backward_batch_statistics_match_finite_differences(void **state)
{
    (void)state;
    /* momentum 0 where running statistics are outputs: training updates the
     * statistics inputs in place, and only with momentum 0 do the outputs
     * not depend on how many forwards ran before */
    const BnCase cases[] = {
        {"BN training 4-D [3,2,3,4]", shape_of(4, (int64_t)3, (int64_t)2, (int64_t)3, (int64_t)4), 15, 1, 0, 1, -1},
        {"BN training batch 1 [1,3,4,5]", shape_of(4, (int64_t)1, (int64_t)3, (int64_t)4, (int64_t)5), 15, 1, 0, 1, -1},
        {"BN training 2-D [6,4]", shape_of(2, (int64_t)6, (int64_t)4), 15, 1, 0, 1, -1},
        {"BN training 3-D [2,3,7]", shape_of(3, (int64_t)2, (int64_t)3, (int64_t)7), 9, 1, 0, 1, -1},
        {"BN training_mode=1 (ONNX) with running outputs", shape_of(4, (int64_t)2, (int64_t)3, (int64_t)3, (int64_t)3),
         15, 0, 1, 3, 0},
        {"BN training with running outputs (unbiased var)", shape_of(4, (int64_t)2, (int64_t)3, (int64_t)3, (int64_t)2),
         15, 1, 1, 3, 0},
        {"BN opset 9 training with saved mean/var outputs", shape_of(4, (int64_t)2, (int64_t)2, (int64_t)3, (int64_t)3),
         9, 1, 0, 5, 0},
        {"BN opset 9 statistics outputs (batch stats without training)",
         shape_of(3, (int64_t)3, (int64_t)2, (int64_t)5), 9, 0, 0, 5, 0},
    };
    double worst = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        require_pass(cases[i].label, check_bn(&cases[i], 100 + i), &worst);
    printf("BatchNormalization (batch statistics): worst error %.3f of tolerance\n", worst);
}

static void test_batchnorm_backward_inference_is_a_per_channel_affine_map(void **state)
{
    (void)state;
    const BnCase cases[] = {
        {"BN inference 4-D [2,3,4,4]", shape_of(4, (int64_t)2, (int64_t)3, (int64_t)4, (int64_t)4), 15, 0, 0, 1, -1},
        {"BN inference batch 1 [1,2,5]", shape_of(3, (int64_t)1, (int64_t)2, (int64_t)5), 9, 0, 0, 1, -1},
        {"BN inference 2-D [5,3]", shape_of(2, (int64_t)5, (int64_t)3), 14, 0, 0, 1, -1},
    };
    double worst = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        require_pass(cases[i].label, check_bn(&cases[i], 200 + i), &worst);
    printf("BatchNormalization (inference): worst error %.3f of tolerance\n", worst);
}

/* Batch mean and variance of channel k of x [n, c, sp], in double. */
static void channel_stats(const Tensor *x, int64_t k, double *mean, double *var)
{
    const int64_t n = x->shape.d[0], c = x->shape.d[1], sp = x->numel / (n * c);
    double s = 0, q = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < sp; j++)
            s += tensor_f32(x)[(i * c + k) * sp + j];
    *mean = s / (double)(n * sp);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < sp; j++) {
            double d = tensor_f32(x)[(i * c + k) * sp + j] - *mean;
            q += d * d;
        }
    *var = q / (double)(n * sp);
}

static void test_batchnorm_training_forward_updates_running_statistics_in_place(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 7);
    Shape xs = shape_of(4, (int64_t)4, (int64_t)3, (int64_t)2, (int64_t)5), cs = shape_of(1, (int64_t)3);
    Tensor *in[5] = {t_rand(&r, &xs, -2, 3), t_rand(&r, &cs, 0.5f, 1.5f), t_rand(&r, &cs, -1, 1),
                     t_rand(&r, &cs, -0.5f, 0.5f), t_rand(&r, &cs, 0.5f, 1.5f)};
    Tensor *mean0 = tensor_clone(in[3]), *var0 = tensor_clone(in[4]);
    const int64_t M = 4 * 2 * 5;
    const float mom = 0.8f;
    for (int opset = 9; opset <= 15; opset += 6) {
        for (int with_outputs = 0; with_outputs < 2; with_outputs++) {
            memcpy(in[3]->data, mean0->data, 3 * sizeof(float));
            memcpy(in[4]->data, var0->data, 3 * sizeof(float));
            const int n_out = with_outputs ? 3 : 1;
            Node *node = t_node("BatchNormalization", 5, n_out);
            node_set_float(node, "momentum", mom);
            Tensor *out[3] = {NULL, NULL, NULL};
            assert_int_equal(op_run_mode(node, opset, 1, in, 5, out, n_out), 0);
            double worst = 0;
            for (int64_t k = 0; k < 3; k++) {
                double m, v;
                channel_stats(in[0], k, &m, &v);
                /* PyTorch's running variance: the unbiased batch variance */
                const double want_m = tensor_f32(mean0)[k] * mom + m * (1 - mom);
                const double want_v = tensor_f32(var0)[k] * mom + v * M / (M - 1) * (1 - mom);
                worst = fmax(worst, fabs(tensor_f32(in[3])[k] - want_m));
                worst = fmax(worst, fabs(tensor_f32(in[4])[k] - want_v));
                if (with_outputs) {
                    worst = fmax(worst, fabs(tensor_f32(out[1])[k] - want_m));
                    worst = fmax(worst, fabs(tensor_f32(out[2])[k] - want_v));
                }
            }
            printf("opset %d%s: running statistics max diff %.2e\n", opset, with_outputs ? " with outputs" : "",
                   worst);
            assert_true(worst < 1e-5);
            for (int i = 0; i < n_out; i++)
                tensor_free(out[i]);
            t_node_free(node);
        }
    }
    /* inference (and ONNX's training_mode=1 outside training) leaves them alone */
    for (int mode = 0; mode < 2; mode++) {
        memcpy(in[3]->data, mean0->data, 3 * sizeof(float));
        memcpy(in[4]->data, var0->data, 3 * sizeof(float));
        Node *node = t_node("BatchNormalization", 5, mode ? 3 : 1);
        if (mode)
            node_set_int(node, "training_mode", 1);
        Tensor *out[3] = {NULL, NULL, NULL};
        assert_int_equal(op_run_mode(node, 15, 0, in, 5, out, mode ? 3 : 1), 0);
        assert_true(t_max_diff("inference: input_mean unchanged", in[3], mean0) == 0);
        assert_true(t_max_diff("inference: input_var unchanged", in[4], var0) == 0);
        if (mode) { /* ONNX's reference: the population variance */
            for (int64_t k = 0; k < 3; k++) {
                double m, v;
                channel_stats(in[0], k, &m, &v);
                assert_true(fabs(tensor_f32(out[2])[k] - (tensor_f32(var0)[k] * 0.9 + v * 0.1)) < 1e-5);
            }
        }
        for (int i = 0; i < 3; i++)
            tensor_free(out[i]);
        t_node_free(node);
    }
    for (int i = 0; i < 5; i++)
        tensor_free(in[i]);
    tensor_free(mean0), tensor_free(var0);
}

/* ---- LayerNormalization ------------------------------------------------ */

static void test_layernorm_backward_matches_finite_differences(void **state)
{
    (void)state;
    typedef struct {
        const char *label;
        Shape x, scale, bias; /* bias rank 0: no B */
        int axis, n_out;
    } LnCase;
    const LnCase cases[] = {
        {"LN last axis [2,3,6]", shape_of(3, (int64_t)2, (int64_t)3, (int64_t)6), shape_of(1, (int64_t)6),
         shape_of(1, (int64_t)6), -1, 1},
        {"LN last axis batch 1 [1,5]", shape_of(2, (int64_t)1, (int64_t)5), shape_of(1, (int64_t)5),
         shape_of(1, (int64_t)5), -1, 1},
        {"LN last two axes [2,3,4]", shape_of(3, (int64_t)2, (int64_t)3, (int64_t)4),
         shape_of(2, (int64_t)3, (int64_t)4), shape_of(2, (int64_t)3, (int64_t)4), -2, 1},
        {"LN last two axes, Scale broadcast [4], no B", shape_of(3, (int64_t)3, (int64_t)2, (int64_t)4),
         shape_of(1, (int64_t)4), {0}, -2, 1},
        {"LN axis 1 of [2,3,2,2], B [1,2,1]", shape_of(4, (int64_t)2, (int64_t)3, (int64_t)2, (int64_t)2),
         shape_of(3, (int64_t)3, (int64_t)2, (int64_t)2), shape_of(3, (int64_t)1, (int64_t)2, (int64_t)1), 1, 1},
        {"LN with Mean and InvStdDev outputs", shape_of(3, (int64_t)2, (int64_t)2, (int64_t)5),
         shape_of(1, (int64_t)5), shape_of(1, (int64_t)5), -1, 3},
    };
    double worst = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const LnCase *k = &cases[i];
        TRng r;
        trng_seed(&r, 300 + i);
        const int n_in = k->bias.rank ? 3 : 2;
        Tensor *in[3] = {t_rand(&r, &k->x, -2, 2), t_rand(&r, &k->scale, 0.5f, 1.5f),
                         k->bias.rank ? t_rand(&r, &k->bias, -1, 1) : NULL};
        Node *node = t_node("LayerNormalization", n_in, k->n_out);
        node_set_int(node, "axis", k->axis);
        GradCheck gc = {.seed = 300 + i};
        require_pass(k->label, t_gradcheck(k->label, node, 17, in, n_in, k->n_out, &gc), &worst);
        for (int j = 0; j < 3; j++)
            tensor_free(in[j]);
        t_node_free(node);
    }
    printf("LayerNormalization: worst error %.3f of tolerance\n", worst);
}

/* ---- InstanceNormalization --------------------------------------------- */

static void test_instancenorm_backward_matches_finite_differences(void **state)
{
    (void)state;
    const Shape shapes[] = {shape_of(3, (int64_t)2, (int64_t)3, (int64_t)6),
                            shape_of(4, (int64_t)1, (int64_t)2, (int64_t)3, (int64_t)3),
                            shape_of(5, (int64_t)2, (int64_t)2, (int64_t)2, (int64_t)2, (int64_t)2)};
    const char *labels[] = {"IN [2,3,6]", "IN batch 1 [1,2,3,3]", "IN 3-D [2,2,2,2,2]"};
    double worst = 0;
    for (int i = 0; i < 3; i++) {
        TRng r;
        trng_seed(&r, 400 + (uint64_t)i);
        Shape cs = shape_of(1, shapes[i].d[1]);
        Tensor *in[3] = {t_rand(&r, &shapes[i], -2, 2), t_rand(&r, &cs, 0.5f, 1.5f), t_rand(&r, &cs, -1, 1)};
        Node *node = t_node("InstanceNormalization", 3, 1);
        GradCheck gc = {.seed = 400 + (uint64_t)i};
        require_pass(labels[i], t_gradcheck(labels[i], node, 13, in, 3, 1, &gc), &worst);
        for (int j = 0; j < 3; j++)
            tensor_free(in[j]);
        t_node_free(node);
    }
    printf("InstanceNormalization: worst error %.3f of tolerance\n", worst);
}

/* Random shapes of rank 2-5 (batch 1 every third draw): BatchNormalization
 * in both modes, LayerNormalization at a random axis, InstanceNormalization. */
static void test_norms_backward_random_shapes_match_finite_differences(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 500);
    double worst = 0;
    for (int draw = 0; draw < 18; draw++) {
        Shape x = {.rank = (int)trng_int(&r, draw % 3 == 2 ? 3 : 2, 5)};
        for (int i = 0; i < x.rank; i++)
            x.d[i] = trng_int(&r, 1, 4);
        x.d[0] = draw % 3 == 0 ? 1 : 2;
        x.d[x.rank - 1] += 1; /* at least two values per normalized group */
        char label[96];
        TRng rr;
        trng_seed(&rr, 600 + (uint64_t)draw);
        Shape cs = shape_of(1, x.d[1]);
        Node *node;
        Tensor *in[5] = {0};
        int n_in, training = 0, opset = 15;
        GradCheck gc = {.seed = 600 + (uint64_t)draw};
        if (draw % 3 == 0) {
            training = (int)trng_int(&r, 0, 1);
            snprintf(label, sizeof label, "random BN rank %d %s", x.rank, training ? "training" : "inference");
            node = t_node("BatchNormalization", 5, 1);
            n_in = 5;
            in[0] = t_rand(&rr, &x, -2, 2);
            in[1] = t_rand(&rr, &cs, 0.5f, 1.5f);
            in[2] = t_rand(&rr, &cs, -1, 1);
            in[3] = t_rand(&rr, &cs, -0.2f, 0.2f);
            in[4] = t_rand(&rr, &cs, 0.5f, 1.5f);
            gc.skip = (1u << 3) | (1u << 4);
        } else if (draw % 3 == 1) {
            const int axis = (int)trng_int(&r, 1, x.rank - 1);
            snprintf(label, sizeof label, "random LN rank %d axis %d", x.rank, axis);
            node = t_node("LayerNormalization", 3, 1);
            node_set_int(node, "axis", axis);
            n_in = 3;
            opset = 17;
            Shape ps = {.rank = x.rank - axis};
            for (int i = 0; i < ps.rank; i++)
                ps.d[i] = x.d[axis + i];
            in[0] = t_rand(&rr, &x, -2, 2);
            in[1] = t_rand(&rr, &ps, 0.5f, 1.5f);
            in[2] = t_rand(&rr, &ps, -1, 1);
        } else {
            snprintf(label, sizeof label, "random IN rank %d", x.rank);
            node = t_node("InstanceNormalization", 3, 1);
            n_in = 3;
            in[0] = t_rand(&rr, &x, -2, 2);
            in[1] = t_rand(&rr, &cs, 0.5f, 1.5f);
            in[2] = t_rand(&rr, &cs, -1, 1);
        }
        gc.training = training;
        require_pass(label, t_gradcheck(label, node, opset, in, n_in, 1, &gc), &worst);
        for (int i = 0; i < 5; i++)
            tensor_free(in[i]);
        t_node_free(node);
    }
    printf("random normalization cases: worst error %.3f of tolerance\n", worst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batchnorm_backward_batch_statistics_match_finite_differences),
        cmocka_unit_test(test_batchnorm_backward_inference_is_a_per_channel_affine_map),
        cmocka_unit_test(test_batchnorm_training_forward_updates_running_statistics_in_place),
        cmocka_unit_test(test_layernorm_backward_matches_finite_differences),
        cmocka_unit_test(test_instancenorm_backward_matches_finite_differences),
        cmocka_unit_test(test_norms_backward_random_shapes_match_finite_differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
