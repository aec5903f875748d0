/* Inference fusion (Conv+BatchNormalization folding, ReLU in the Conv
 * epilogue, a 2x2 MaxPool computed by the Conv) must give the same outputs
 * as running every node as written. */
#include "core/exec.h"
#include "core/threads.h"
#include "tests/support/testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

/* x[N,4,6,6] -> Conv(8,3x3,pad 1) -> BN -> Relu, and optionally a second
 * reader of the Conv output (which must block fusion). */
static Graph *conv_bn_relu(TRng *r, bool with_bn, bool extra_reader)
{
    Graph *g = graph_new();
    Shape xs = shape_of(4, (int64_t)-1, (int64_t)4, (int64_t)6, (int64_t)6);
    int x = graph_add_input(g, "x", SH_F32, &xs);
    Shape ws = shape_of(4, (int64_t)8, (int64_t)4, (int64_t)3, (int64_t)3), cs = shape_of(1, (int64_t)8);
    int w = graph_add_const(g, "w", t_rand(r, &ws, -0.5f, 0.5f));
    int b = graph_add_const(g, "b", t_rand(r, &cs, -0.5f, 0.5f));
    int conv_out = graph_value(g, "conv_out");
    int in[3] = {x, w, b};
    int ci = graph_add_node(g, "Conv", "conv", 3, in, 1, &conv_out);
    int64_t pads[4] = {1, 1, 1, 1};
    node_set_ints(&g->nodes[ci], "pads", pads, 4);
    int cur = conv_out;
    if (with_bn) {
        int bn_in[5] = {conv_out, graph_add_const(g, "gamma", t_rand(r, &cs, 0.5f, 1.5f)),
                        graph_add_const(g, "beta", t_rand(r, &cs, -0.5f, 0.5f)),
                        graph_add_const(g, "mean", t_rand(r, &cs, -0.3f, 0.3f)),
                        graph_add_const(g, "var", t_rand(r, &cs, 0.5f, 2.0f))};
        int bn_out = graph_value(g, "bn_out");
        graph_add_node(g, "BatchNormalization", "bn", 5, bn_in, 1, &bn_out);
        cur = bn_out;
    }
    int y = graph_value(g, "y");
    graph_add_node(g, "Relu", "relu", 1, &cur, 1, &y);
    graph_add_output(g, y);
    if (extra_reader) {
        int z = graph_value(g, "z");
        int sig_in[1] = {conv_out};
        graph_add_node(g, "Sigmoid", "sig", 1, sig_in, 1, &z);
        graph_add_output(g, z);
    }
    assert_int_equal(graph_toposort(g), 0);
    assert_int_equal(graph_bind_ops(g), 0);
    assert_int_equal(graph_prepare(g), 0);
    return g;
}

/* Returns the fused plan's arena bytes. */
static size_t compare_fused_and_plain(Graph *g, int64_t batch, const char *label)
{
    TRng r;
    trng_seed(&r, 99);
    Shape s;
    assert_int_equal(graph_input_shape(g, 0, batch, &s), 0);
    Tensor *x = t_rand(&r, &s, -1, 1);
    ExecPlan *fused, *plain;
    ExecOptions no = {.no_fusion = true, .one_part = true};
    ExecOptions fuse = {.one_part = true};
    assert_int_equal(exec_plan(g, &s, &fuse, &fused), 0);
    assert_int_equal(exec_plan(g, &s, &no, &plain), 0);
    assert_int_equal(exec_run(fused, &x), 0);
    assert_int_equal(exec_run(plain, &x), 0);
    for (int k = 0; k < g->n_outputs; k++) { /* the conv tests' tolerance: Winograd F(4x4,3x3) rounds */
        t_max_diff(label, exec_output(fused, k), exec_output(plain, k));
        assert_true(t_allclose(exec_output(fused, k), exec_output(plain, k), 1e-4, 1e-5));
    }
    size_t arena = exec_arena_bytes(fused);
    exec_free(fused);
    exec_free(plain);
    tensor_free(x);
    return arena;
}

static void test_conv_bn_relu_fused_equals_plain(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 1);
    Graph *g = conv_bn_relu(&r, true, false);
    compare_fused_and_plain(g, 1, "conv+bn+relu batch 1");
    compare_fused_and_plain(g, 5, "conv+bn+relu batch 5");
    graph_free(g);
}

static void test_conv_relu_fused_equals_plain(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 2);
    Graph *g = conv_bn_relu(&r, false, false);
    compare_fused_and_plain(g, 3, "conv+relu");
    graph_free(g);
}

static void test_second_reader_of_conv_sees_unfused_values(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 3);
    Graph *g = conv_bn_relu(&r, true, true);
    compare_fused_and_plain(g, 2, "conv read twice");
    graph_free(g);
}

/* x[N,cin,hw,hw] -> Conv(cout,3x3,pad 1) -> BN -> [Relu] -> MaxPool(2x2, stride 2). */
static Graph *conv_pool(TRng *r, int64_t cin, int64_t cout, int64_t hw, bool relu)
{
    Graph *g = graph_new();
    Shape xs = shape_of(4, (int64_t)-1, cin, hw, hw);
    int x = graph_add_input(g, "x", SH_F32, &xs);
    Shape ws = shape_of(4, cout, cin, (int64_t)3, (int64_t)3), cs = shape_of(1, cout);
    int in[3] = {x, graph_add_const(g, "w", t_rand(r, &ws, -0.3f, 0.3f)), graph_add_const(g, "b", t_rand(r, &cs, -0.5f, 0.5f))};
    int conv_out = graph_value(g, "conv_out");
    int64_t pads[4] = {1, 1, 1, 1}, two[2] = {2, 2};
    int ci = graph_add_node(g, "Conv", "conv", 3, in, 1, &conv_out);
    node_set_ints(&g->nodes[ci], "pads", pads, 4);
    int bn_in[5] = {conv_out, graph_add_const(g, "gamma", t_rand(r, &cs, 0.5f, 1.5f)),
                    graph_add_const(g, "beta", t_rand(r, &cs, -0.5f, 0.5f)),
                    graph_add_const(g, "mean", t_rand(r, &cs, -0.3f, 0.3f)),
                    graph_add_const(g, "var", t_rand(r, &cs, 0.5f, 2.0f))};
    int cur = graph_value(g, "bn_out");
    graph_add_node(g, "BatchNormalization", "bn", 5, bn_in, 1, &cur);
    if (relu) {
        int y = graph_value(g, "relu_out");
        graph_add_node(g, "Relu", "relu", 1, &cur, 1, &y);
        cur = y;
    }
    int y = graph_value(g, "y");
    int pi = graph_add_node(g, "MaxPool", "pool", 1, &cur, 1, &y);
    node_set_ints(&g->nodes[pi], "kernel_shape", two, 2);
    node_set_ints(&g->nodes[pi], "strides", two, 2);
    graph_add_output(g, y);
    assert_int_equal(graph_toposort(g), 0);
    assert_int_equal(graph_bind_ops(g), 0);
    assert_int_equal(graph_prepare(g), 0);
    return g;
}

static void test_conv_maxpool_fused_equals_plain(void **state)
{
    (void)state;
    /* Winograd-sized and small channel counts; even and odd maps (floor);
     * batches of one group, several groups, and a short last group */
    const struct { int64_t cin, cout, hw, batch; bool relu; } cases[] = {
        {16, 32, 14, 1, true}, {16, 32, 14, 23, true}, {32, 16, 7, 64, true},
        {1, 8, 28, 9, true},   {3, 5, 9, 4, false},    {16, 16, 15, 40, false},
    };
    for (int threads = 1; threads <= 2; threads++) { /* 2: the Conv splits its batch */
        sh_set_threads(threads);
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            TRng r;
            trng_seed(&r, 40 + i);
            Graph *g = conv_pool(&r, cases[i].cin, cases[i].cout, cases[i].hw, cases[i].relu);
            char label[96];
            snprintf(label, sizeof label, "conv %lld->%lld %lldx%lld maxpool, batch %lld, %d threads",
                     (long long)cases[i].cin, (long long)cases[i].cout, (long long)cases[i].hw,
                     (long long)cases[i].hw, (long long)cases[i].batch, threads);
            size_t arena = compare_fused_and_plain(g, cases[i].batch, label);
            /* fused, the arena holds the pooled values, not the Conv's output */
            const int64_t pooled = cases[i].batch * cases[i].cout * (cases[i].hw / 2) * (cases[i].hw / 2);
            assert_true(arena <= (size_t)pooled * sizeof(float) + 64);
            graph_free(g);
        }
    }
    sh_set_threads(1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_bn_relu_fused_equals_plain),
        cmocka_unit_test(test_conv_relu_fused_equals_plain),
        cmocka_unit_test(test_second_reader_of_conv_sees_unfused_values),
        cmocka_unit_test(test_conv_maxpool_fused_equals_plain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
