/* 2:4 masks (2 smallest of every 4 along the input axis become zero and
 * stay zero through training) and the sparse-training regularizers
 * (Network Slimming's L1 on BatchNorm scales, group lasso over units). */
#include "core/builder.h"
#include "core/data.h"
#include "core/depgraph.h"
#include "core/sparsity.h"
#include "core/train.h"
#include "core/util.h"
#include "tests/support/testutil.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static const char *arch = "{\"input\":[1,12,12],\"seed\":2,\"layers\":["
                          "{\"type\":\"conv\",\"out\":8},{\"type\":\"bn\"},{\"type\":\"relu\"},"
                          "{\"type\":\"conv\",\"out\":16},{\"type\":\"bn\"},{\"type\":\"relu\"},"
                          "{\"type\":\"gap\"},{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":4}]}";

/* Every group of 4 along conv5's input axis keeps exactly its 2 largest. */
static void check_conv_groups(const Tensor *w, const Tensor *before)
{
    int64_t cout = w->shape.d[0], cin = w->shape.d[1], k = w->numel / (cout * cin);
    for (int64_t o = 0; o < cout; o++)
        for (int64_t t = 0; t < k; t++)
            for (int64_t i0 = 0; i0 < cin; i0 += 4) {
                int zeros = 0;
                float min_kept = INFINITY, max_dropped = 0;
                for (int j = 0; j < 4; j++) {
                    int64_t at = (o * cin + i0 + j) * k + t;
                    if (tensor_f32(w)[at] == 0) {
                        zeros++;
                        if (before)
                            max_dropped = fmaxf(max_dropped, fabsf(tensor_f32(before)[at]));
                    } else if (before)
                        min_kept = fminf(min_kept, fabsf(tensor_f32(before)[at]));
                }
                assert_true(zeros >= 2);
                if (before)
                    assert_true(max_dropped <= min_kept);
            }
}

static Tensor *weight(Graph *g, const char *name)
{
    int v = graph_find_value(g, name);
    assert_true(v >= 0);
    return g->values[v].data;
}

static void test_two_of_four_smallest_become_zero(void **state)
{
    (void)state;
    Graph *g;
    assert_int_equal(model_build_json(arch, "sparse", &g), 0);
    Tensor *before = tensor_clone(weight(g, "conv4.weight"));
    SparsityMasks m;
    assert_int_equal(sparsity_2_4(g, &m), 0);
    printf("2:4: %lld of %lld weights zeroed in %d layers\n", (long long)m.zeroed, (long long)m.total, m.n);
    assert_int_equal(m.zeroed * 2, m.total);
    check_conv_groups(weight(g, "conv4.weight"), before);
    tensor_free(before);
    sparsity_done(&m);
    graph_free(g);
}

static void reapply(void *ctx)
{
    void **p = ctx;
    sparsity_apply(p[0], p[1]);
}

static void fit_briefly(Graph *g, double slim, double lasso, const DepGraph *dg, SparsityMasks *m)
{
    Dataset ds;
    Shape xs = shape_of(4, (int64_t)64, (int64_t)1, (int64_t)12, (int64_t)12), ys = shape_of(1, (int64_t)64);
    TRng r;
    trng_seed(&r, 4);
    Tensor *x = t_rand(&r, &xs, 0, 1), *y = tensor_new(SH_I64, &ys);
    for (int i = 0; i < 64; i++)
        tensor_i64(y)[i] = i % 4;
    assert_int_equal(dataset_from_tensors(&ds, x, y, 4, NULL, "x", "y"), 0);
    DataSubset all;
    data_subset_all(&all, &ds);
    FitConfig f = {.epochs = 5, .batch = 16, .cfg = train_config_default()};
    f.cfg.slim = slim;
    f.cfg.group_lasso = lasso;
    f.cfg.groups = dg;
    f.cfg.weight_decay = 0;
    void *ctx[2] = {g, m};
    if (m) {
        f.after_step = reapply;
        f.after_step_ctx = ctx;
    }
    FitResult res;
    assert_int_equal(fit(g, NULL, &all, NULL, &f, &res), 0);
    data_subset_done(&all);
    dataset_done(&ds);
    tensor_free(x);
    tensor_free(y);
}

static void test_masks_hold_through_training(void **state)
{
    (void)state;
    Graph *g;
    assert_int_equal(model_build_json(arch, "sparse", &g), 0);
    SparsityMasks m;
    assert_int_equal(sparsity_2_4(g, &m), 0);
    fit_briefly(g, 0, 0, NULL, &m);
    check_conv_groups(weight(g, "conv4.weight"), NULL);
    sparsity_done(&m);
    graph_free(g);
}

static double l1_of(Graph *g, const char *name)
{
    const Tensor *t = weight(g, name);
    double s = 0;
    for (int64_t i = 0; i < t->numel; i++)
        s += fabs(tensor_f32(t)[i]);
    return s;
}

static void test_slimming_shrinks_batchnorm_scales(void **state)
{
    (void)state;
    Graph *a, *b;
    assert_int_equal(model_build_json(arch, "plain", &a), 0);
    assert_int_equal(model_build_json(arch, "slim", &b), 0);
    fit_briefly(a, 0, 0, NULL, NULL);
    fit_briefly(b, 0.05, 0, NULL, NULL);
    double plain = l1_of(a, "bn5.weight"), slim = l1_of(b, "bn5.weight");
    printf("|gamma| after training: %.4f plain, %.4f with slim=0.05\n", plain, slim);
    assert_true(slim < 0.9 * plain);
    graph_free(a);
    graph_free(b);
}

static void test_group_lasso_shrinks_unit_norms(void **state)
{
    (void)state;
    Graph *a, *b;
    assert_int_equal(model_build_json(arch, "plain", &a), 0);
    assert_int_equal(model_build_json(arch, "lasso", &b), 0);
    DepGraph *dg;
    assert_int_equal(depgraph_build(b, &dg), 0);
    fit_briefly(a, 0, 0, NULL, NULL);
    fit_briefly(b, 0, 0.05, dg, NULL);
    double plain = l1_of(a, "conv4.weight"), lasso = l1_of(b, "conv4.weight");
    printf("|W| of conv4 after training: %.4f plain, %.4f with group_lasso=0.05\n", plain, lasso);
    assert_true(lasso < 0.9 * plain);
    depgraph_free(dg);
    graph_free(a);
    graph_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_of_four_smallest_become_zero),
        cmocka_unit_test(test_masks_hold_through_training),
        cmocka_unit_test(test_slimming_shrinks_batchnorm_scales),
        cmocka_unit_test(test_group_lasso_shrinks_unit_norms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
