/* Batch parts: with several threads, an inference plan of a graph that
 * computes each sample on its own runs slices of the batch on separate
 * threads. The parts must give the outputs one plan gives, and graphs that
 * work along the batch must stay one plan. */
#include "core/exec.h"
#include "core/onnx.h"
#include "core/threads.h"
#include "tests/support/testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

/* Runs g at batch with 2 threads as parts and as one plan; returns the
 * part count and checks the outputs agree within tol. */
static int compare_parts(Graph *g, int64_t batch, double tol, const char *label)
{
    TRng r;
    trng_seed(&r, 5);
    Shape s;
    assert_int_equal(graph_input_shape(g, 0, batch, &s), 0);
    Tensor *x = t_rand(&r, &s, -1, 1);
    ExecPlan *parts, *one;
    ExecOptions whole = {.one_part = true};
    sh_set_threads(2);
    assert_int_equal(exec_plan(g, &s, NULL, &parts), 0);
    assert_int_equal(exec_plan(g, &s, &whole, &one), 0);
    assert_int_equal(exec_parts(one), 1);
    for (int rep = 0; rep < 2; rep++) { /* a second run reuses the parts' arenas */
        assert_int_equal(exec_run(parts, &x), 0);
        assert_int_equal(exec_run(one, &x), 0);
        for (int k = 0; k < g->n_outputs; k++)
            assert_true(t_max_diff(label, exec_output(parts, k), exec_output(one, k)) <= tol);
    }
    int n = exec_parts(parts);
    exec_free(parts);
    exec_free(one);
    tensor_free(x);
    sh_set_threads(1);
    return n;
}

static Graph *load_sample(const char *path)
{
    Graph *g = NULL;
    assert_int_equal(onnx_load(path, &g), 0);
    assert_int_equal(graph_prepare(g), 0);
    return g;
}

static void test_samples_split_and_match(void **state)
{
    (void)state;
    const char *models[] = {"samples/fmnist-cnn.onnx", "samples/fmnist-resnet.onnx", "samples/fmnist-vit.onnx"};
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
        Graph *g = load_sample(models[i]);
        assert_int_equal(compare_parts(g, 64, 1e-4, models[i]), 2);
        assert_int_equal(compare_parts(g, 7, 1e-4, models[i]), 2); /* uneven: 4 + 3 */
        graph_free(g);
    }
}

/* x[N,512] -> MatMul(512x512) -> op -> y: 4.2M MACs at batch 16, enough to
 * split. op is Softmax with the given axis, or a Transpose. */
static Graph *matmul_then(const char *op, int64_t axis)
{
    TRng r;
    trng_seed(&r, 11);
    Graph *g = graph_new();
    Shape xs = shape_of(2, (int64_t)-1, (int64_t)512), ws = shape_of(2, (int64_t)512, (int64_t)512);
    int x = graph_add_input(g, "x", SH_F32, &xs);
    int in[2] = {x, graph_add_const(g, "w", t_rand(&r, &ws, -0.05f, 0.05f))};
    int h = graph_value(g, "h"), y = graph_value(g, "y");
    graph_add_node(g, "MatMul", "mm", 2, in, 1, &h);
    int k = graph_add_node(g, op, "op", 1, &h, 1, &y);
    if (axis >= 0)
        node_set_int(&g->nodes[k], "axis", axis);
    else {
        int64_t perm[2] = {1, 0};
        node_set_ints(&g->nodes[k], "perm", perm, 2);
    }
    graph_add_output(g, y);
    assert_int_equal(graph_toposort(g), 0);
    assert_int_equal(graph_bind_ops(g), 0);
    assert_int_equal(graph_prepare(g), 0);
    return g;
}

static void test_per_sample_softmax_splits(void **state)
{
    (void)state;
    Graph *g = matmul_then("Softmax", 1);
    assert_int_equal(compare_parts(g, 16, 1e-6, "softmax axis 1"), 2);
    graph_free(g);
}

static void test_ops_along_the_batch_stay_whole(void **state)
{
    (void)state;
    Graph *g = matmul_then("Softmax", 0); /* normalizes over the batch */
    assert_int_equal(compare_parts(g, 16, 0, "softmax axis 0"), 1);
    graph_free(g);
    g = matmul_then("Transpose", -1); /* moves the batch to dim 1 */
    assert_int_equal(compare_parts(g, 16, 0, "transpose"), 1);
    graph_free(g);
}

static void test_small_runs_stay_whole(void **state)
{
    (void)state;
    Graph *g = matmul_then("Softmax", 1);
    assert_int_equal(compare_parts(g, 4, 0, "batch 4"), 1); /* 1M MACs: threads cost more */
    graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_samples_split_and_match),
        cmocka_unit_test(test_per_sample_softmax_splits),
        cmocka_unit_test(test_ops_along_the_batch_stay_whole),
        cmocka_unit_test(test_small_runs_stay_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
