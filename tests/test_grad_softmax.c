/* Backward of Softmax and LogSoftmax in both opset forms (before 13: the
 * input flattened to 2-D at axis; from 13: one axis) against central
 * finite differences and a double reference by index arithmetic. */
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

static Shape random_shape(TRng *r, int draw)
{
    Shape s = {.rank = (int)trng_int(r, 1, 4)};
    for (int i = 0; i < s.rank; i++)
        s.d[i] = trng_int(r, 1, 5);
    if (draw % 3 == 0)
        s.d[0] = 1;
    return s;
}

static void check_grad(const char *label, Node *n, int opset, Tensor *x, const GradCheck *opt,
                       double *worst)
{
    double e = t_gradcheck(label, n, opset, &x, 1, 1, opt);
    if (e < 0 || e > 1)
        fail_msg("%s: gradient check failed (error %.3f of tolerance): %s", label, e,
                 sh_errmsg());
    if (e > *worst)
        *worst = e;
}

/* Every axis of random shapes, positive and negative, in each opset form. */
static void test_gradients_match_finite_differences_for_every_axis(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 31);
    const char *ops[] = {"Softmax", "LogSoftmax"};
    const int opsets[] = {9, 11, 13, 17};
    double worst = 0;
    for (int k = 0; k < 2; k++)
        for (int o = 0; o < 4; o++)
            for (int draw = 0; draw < 4; draw++) {
                Shape s = random_shape(&r, draw);
                for (int axis = -s.rank; axis < s.rank; axis++) {
                    Tensor *x = t_rand(&r, &s, -3, 3);
                    Node *n = t_node(ops[k], 1, 1);
                    node_set_int(n, "axis", axis);
                    char label[96], ss[64];
                    snprintf(label, sizeof label, "%s opset %d axis %d of %s", ops[k], opsets[o],
                             axis, shape_str(&s, ss, sizeof ss));
                    GradCheck opt = {.seed = (uint64_t)(k * 1000 + o * 100 + draw * 10 + axis + 5)};
                    check_grad(label, n, opsets[o], x, &opt, &worst);
                    t_node_free(n);
                    tensor_free(x);
                }
            }
    printf("Softmax/LogSoftmax: worst error %.3f of tolerance\n", worst);
}

/* Default axis: 1 (flattened) before opset 13, -1 from 13. */
static void test_default_axis_follows_the_opset(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 32);
    Shape s = shape_of(3, (int64_t)2, (int64_t)3, (int64_t)4);
    double worst = 0;
    const char *ops[] = {"Softmax", "LogSoftmax"};
    for (int k = 0; k < 2; k++)
        for (int opset = 11; opset <= 13; opset += 2) {
            Tensor *x = t_rand(&r, &s, -3, 3);
            Node *n = t_node(ops[k], 1, 1);
            char label[64];
            snprintf(label, sizeof label, "%s opset %d default axis", ops[k], opset);
            GradCheck opt = {.seed = (uint64_t)(k * 10 + opset), .max_probes = 24};
            check_grad(label, n, opset, x, &opt, &worst);
            t_node_free(n);
            tensor_free(x);
        }
    printf("default axis: worst error %.3f of tolerance\n", worst);
}

/* dx by index arithmetic in double, normalizing over [axis, rank) (flat)
 * or over axis alone. */
static void softmax_grad_reference(const Tensor *y, const Tensor *g, int axis, int flat,
                                   int log_form, double *gx)
{
    const Shape *s = &y->shape;
    int64_t outer = shape_prod(s, 0, axis);
    int64_t n = flat ? shape_prod(s, axis, s->rank) : s->d[axis];
    int64_t inner = flat ? 1 : shape_prod(s, axis + 1, s->rank);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
            double sum = 0;
            for (int64_t k = 0; k < n; k++) {
                int64_t i = (o * n + k) * inner + j;
                sum += log_form ? tensor_f32(g)[i] : (double)tensor_f32(g)[i] * tensor_f32(y)[i];
            }
            for (int64_t k = 0; k < n; k++) {
                int64_t i = (o * n + k) * inner + j;
                double yv = tensor_f32(y)[i], gv = tensor_f32(g)[i];
                gx[i] = log_form ? gv - exp(yv) * sum : yv * (gv - sum);
            }
        }
}

/* Row (inner 1) and column (inner > 1) kernels on long slices. */
static void test_gradient_matches_reference_on_long_slices(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 33);
    Shape s = shape_of(4, (int64_t)2, (int64_t)3, (int64_t)50, (int64_t)40);
    const char *ops[] = {"Softmax", "LogSoftmax"};
    for (int k = 0; k < 2; k++)
        for (int opset = 11; opset <= 13; opset += 2)
            for (int axis = 0; axis < 4; axis++) {
                Tensor *x = t_rand(&r, &s, -4, 4), *y = NULL, *g = t_rand(&r, &s, -1, 1);
                Node *n = t_node(ops[k], 1, 1);
                node_set_int(n, "axis", axis);
                assert_int_equal(t_run(n, opset, &x, 1, &y, 1), 0);
                Tensor *gx = tensor_new(SH_F32, &s);
                OpCtx c = {.node = n, .opset = opset, .n_in = 1, .n_out = 1, .in = &x, .out = &y};
                size_t sb = n->op->bwd_scratch(&c);
                c.scratch = sb ? aligned_alloc(64, (sb + 63) / 64 * 64) : NULL;
                assert_int_equal(n->op->backward(&c, &g, &gx), 0);
                double *ref = calloc((size_t)x->numel, sizeof *ref), m = 0;
                softmax_grad_reference(y, g, axis, opset < 13, k, ref);
                for (int64_t i = 0; i < x->numel; i++)
                    m = fmax(m, fabs(tensor_f32(gx)[i] - ref[i]));
                printf("%s opset %d axis %d vs reference: max abs diff %.3g\n", ops[k], opset,
                       axis, m);
                assert_true(m <= 1e-5);
                free(ref);
                free(c.scratch);
                t_node_free(n);
                tensor_free(x);
                tensor_free(y);
                tensor_free(g);
                tensor_free(gx);
            }
}

/* Softmax's backward reads only its output, so an in-place forward (the
 * executor's OP_INPLACE) leaves everything it needs. */
static void test_gradient_uses_only_the_output(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 34);
    Shape s = shape_of(2, (int64_t)3, (int64_t)7);
    const char *ops[] = {"Softmax", "LogSoftmax"};
    for (int k = 0; k < 2; k++) {
        Tensor *x = t_rand(&r, &s, -3, 3), *y = NULL, *g = t_rand(&r, &s, -1, 1);
        Node *n = t_node(ops[k], 1, 1);
        assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
        Tensor *a = tensor_new(SH_F32, &s), *b = tensor_new(SH_F32, &s);
        OpCtx c = {.node = n, .opset = 13, .n_in = 1, .n_out = 1, .in = &x, .out = &y};
        assert_int_equal(n->op->backward(&c, &g, &a), 0);
        for (int64_t i = 0; i < x->numel; i++) /* clobber the input */
            tensor_f32(x)[i] = NAN;
        assert_int_equal(n->op->backward(&c, &g, &b), 0);
        char label[64];
        snprintf(label, sizeof label, "%s with the input overwritten", ops[k]);
        assert_true(t_max_diff(label, a, b) == 0);
        t_node_free(n);
        tensor_free(x);
        tensor_free(y);
        tensor_free(g);
        tensor_free(a);
        tensor_free(b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradients_match_finite_differences_for_every_axis),
        cmocka_unit_test(test_default_axis_follows_the_opset),
        cmocka_unit_test(test_gradient_matches_reference_on_long_slices),
        cmocka_unit_test(test_gradient_uses_only_the_output),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
