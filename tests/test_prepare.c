/* Load-time preparation: constant folding, shapes with a symbolic batch,
 * folding of batch-independent shape arithmetic, declared output checks,
 * and the batch-1 fallback. */
#include "core/error.h"
#include "core/exec.h"
#include "core/util.h"
#include "tests/support/graphutil.h"
#include "tests/support/testutil.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* ---- helpers ------------------------------------------------------------ */

static void assert_msg_has(const char *phrase)
{
    if (!strstr(sh_errmsg(), phrase))
        fail_msg("message \"%s\" lacks \"%s\"", sh_errmsg(), phrase);
}

static void prepare_ok(Graph *g)
{
    if (graph_prepare(g) != 0)
        fail_msg("graph_prepare: %s", sh_errmsg());
}

static int count_ops(const Graph *g, const char *op_type)
{
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++)
        n += strcmp(g->nodes[i].op_type, op_type) == 0;
    return n;
}

static bool has_node_named(const Graph *g, const char *name)
{
    for (int i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0)
            return true;
    return false;
}

/* The shape of value `name` written with N for the batch. */
static const char *shape_of_value(const Graph *g, const char *name, char *buf, size_t n)
{
    int v = graph_find_value(g, name);
    if (v < 0)
        fail_msg("no value '%s'", name);
    return sym_shape_str(&g->values[v].shape, buf, n);
}

static void assert_value_shape(const Graph *g, const char *name, const char *want)
{
    char buf[128];
    const char *got = shape_of_value(g, name, buf, sizeof buf);
    if (strcmp(got, want) != 0)
        fail_msg("value '%s' has shape %s, want %s", name, got, want);
}

static Node *last_node(Graph *g) { return &g->nodes[g->n_nodes - 1]; }

static int scalar_i64(Graph *g, const char *name, int64_t v)
{
    Shape s = {.rank = 0};
    return tg_const_i64(g, name, &s, &v);
}

static int vec_i64(Graph *g, const char *name, int n, const int64_t *v)
{
    Shape s = shape_of(1, (int64_t)n);
    return tg_const_i64(g, name, &s, v);
}

/* Input [N,1,4,4] with dim_param "batch". */
static int batch_input(Graph *g, const char *name)
{
    Shape xs = shape_of(4, (int64_t)-1, (int64_t)1, (int64_t)4, (int64_t)4);
    int x = graph_add_input(g, name, SH_F32, &xs);
    g->values[x].dim_names[0] = xstrdup("batch");
    return x;
}

static int unsqueeze0(Graph *g, const char *name, int v)
{
    int64_t zero = 0;
    int in[2] = {v, graph_find_value(g, "axes0") >= 0 ? graph_find_value(g, "axes0")
                                                      : vec_i64(g, "axes0", 1, &zero)};
    return tg_op1(g, "Unsqueeze", name, 2, in);
}

static int concat0(Graph *g, const char *name, int a, int b)
{
    int in[2] = {a, b};
    int v = tg_op1(g, "Concat", name, 2, in);
    node_set_int(last_node(g), "axis", 0);
    return v;
}

/* What torch.onnx.export writes for x.view(x.size(0), -1),
 * x.view(x.size(0), x.size(1) * x.size(2) * x.size(3)) and
 * x.view(2 * x.size(0), 16) after a Conv:
 *
 *   x [N,1,4,4] -> Conv -> c [N,2,4,4] -> Shape -> s
 *   n = Gather(s, 0); C, H, W = Gather(s, 1..3)
 *   flat  = Reshape(c, Concat(Unsqueeze(n), [-1]))
 *   flat2 = Reshape(c, Concat(Unsqueeze(n), Unsqueeze(C*H*W)))
 *   rows  = Reshape(c, Concat(Unsqueeze(n) * 2, [16]))
 *   outputs: sum = flat + flat2 [N,32], sig = Sigmoid(rows) [N*2,16] */
static Graph *pytorch_style_graph(void)
{
    Graph *g = graph_new();
    g->opset = 13;
    int x = batch_input(g, "x");
    TRng r;
    trng_seed(&r, 7);
    Shape ws = shape_of(4, (int64_t)2, (int64_t)1, (int64_t)3, (int64_t)3), bs = shape_of(1, (int64_t)2);
    int w = graph_add_const(g, "conv.weight", t_rand(&r, &ws, -1, 1));
    int b = graph_add_const(g, "conv.bias", t_rand(&r, &bs, -1, 1));
    int cin[3] = {x, w, b};
    int c = tg_op1(g, "Conv", "c", 3, cin);
    int64_t pads[4] = {1, 1, 1, 1};
    node_set_ints(last_node(g), "pads", pads, 4);
    int s = tg_op1(g, "Shape", "s", 1, &c);
    int dims[4];
    for (int k = 0; k < 4; k++) {
        char idx[16], name[16];
        snprintf(idx, sizeof idx, "idx%d", k);
        snprintf(name, sizeof name, "dim%d", k);
        int gin[2] = {s, scalar_i64(g, idx, k)};
        dims[k] = tg_op1(g, "Gather", name, 2, gin);
        node_set_int(last_node(g), "axis", 0);
    }
    int n1 = unsqueeze0(g, "n1", dims[0]);
    int64_t minus1 = -1, sixteen = 16, two = 2;
    int t1 = concat0(g, "t1", n1, vec_i64(g, "minus1", 1, &minus1));
    int rin1[2] = {c, t1};
    int flat = tg_op1(g, "Reshape", "flat", 2, rin1);
    int chin[2] = {dims[1], dims[2]};
    int ch = tg_op1(g, "Mul", "ch", 2, chin);
    int chwin[2] = {ch, dims[3]};
    int chw = tg_op1(g, "Mul", "chw", 2, chwin);
    int chw1 = unsqueeze0(g, "chw1", chw);
    int t2 = concat0(g, "t2", n1, chw1);
    int rin2[2] = {c, t2};
    int flat2 = tg_op1(g, "Reshape", "flat2", 2, rin2);
    int n2in[2] = {n1, vec_i64(g, "two", 1, &two)};
    int n2 = tg_op1(g, "Mul", "n2", 2, n2in);
    int t3 = concat0(g, "t3", n2, vec_i64(g, "sixteen", 1, &sixteen));
    int rin3[2] = {c, t3};
    int rows = tg_op1(g, "Reshape", "rows", 2, rin3);
    int ain[2] = {flat, flat2};
    int sum = tg_op1(g, "Add", "sum", 2, ain);
    int sig = tg_op1(g, "Sigmoid", "sig", 1, &rows);
    graph_add_output(g, sum);
    graph_add_output(g, sig);
    return g;
}

/* Runs g at batch rows on x and returns output k (new tensors). */
static void run_graph(const Graph *g, const Tensor *x, Tensor **out)
{
    ExecPlan *p = NULL;
    if (exec_plan(g, &x->shape, NULL, &p) != 0)
        fail_msg("exec_plan at %lld: %s", (long long)x->shape.d[0], sh_errmsg());
    Tensor *in = (Tensor *)x;
    if (exec_run(p, &in) != 0)
        fail_msg("exec_run: %s", sh_errmsg());
    for (int k = 0; k < g->n_outputs; k++)
        out[k] = tensor_clone(exec_output(p, k));
    exec_free(p);
}

/* Sample i of a [B,...] tensor as a [1,...] tensor. */
static Tensor *sample(const Tensor *x, int64_t i)
{
    Shape s = x->shape;
    s.d[0] = 1;
    Tensor *t = tensor_new(x->dtype, &s);
    memcpy(t->data, (const char *)x->data + (size_t)i * tensor_bytes(t), tensor_bytes(t));
    return t;
}

/* ---- the PyTorch-style graph ------------------------------------------------ */

static void test_pytorch_style_graph_gets_symbolic_shapes(void **state)
{
    (void)state;
    Graph *g = pytorch_style_graph();
    prepare_ok(g);
    assert_value_shape(g, "x", "[N,1,4,4]");
    assert_value_shape(g, "c", "[N,2,4,4]");
    assert_value_shape(g, "s", "[4]");
    assert_value_shape(g, "t1", "[2]");
    assert_value_shape(g, "flat", "[N,32]");
    assert_value_shape(g, "flat2", "[N,32]");
    assert_value_shape(g, "rows", "[N*2,16]");
    assert_value_shape(g, "sum", "[N,32]");
    assert_value_shape(g, "sig", "[N*2,16]");
    assert_int_equal(g->values[graph_find_value(g, "sig")].shape.d[0], -2);
    assert_int_equal(g->values[graph_find_value(g, "flat")].dtype, SH_F32);
    assert_int_equal(g->values[graph_find_value(g, "t1")].dtype, SH_I64);
    /* the input keeps its symbolic name */
    assert_string_equal(g->values[graph_find_value(g, "x")].dim_names[0], "batch");
    graph_free(g);
}

static void test_batch_independent_shape_arithmetic_is_folded(void **state)
{
    (void)state;
    Graph *g = pytorch_style_graph();
    int before = g->n_nodes;
    prepare_ok(g);
    printf("pytorch-style graph: %d nodes before, %d after prepare\n", before, g->n_nodes);
    /* C*H*W does not depend on the batch: its Gathers, Muls and Unsqueeze are gone */
    assert_false(has_node_named(g, "dim1"));
    assert_false(has_node_named(g, "dim2"));
    assert_false(has_node_named(g, "dim3"));
    assert_false(has_node_named(g, "ch"));
    assert_false(has_node_named(g, "chw"));
    assert_false(has_node_named(g, "chw1"));
    int chw1 = graph_find_value(g, "chw1");
    assert_true(g->values[chw1].flags & VAL_CONST);
    assert_int_equal(g->values[chw1].data->numel, 1);
    assert_int_equal(tensor_i64(g->values[chw1].data)[0], 32);
    /* the batch-dependent part stays */
    assert_true(has_node_named(g, "s"));
    assert_true(has_node_named(g, "dim0"));
    assert_true(has_node_named(g, "n1"));
    assert_true(has_node_named(g, "t1"));
    assert_true(has_node_named(g, "t2"));
    assert_true(has_node_named(g, "n2"));
    assert_true(has_node_named(g, "t3"));
    assert_int_equal(count_ops(g, "Gather"), 1);
    assert_int_equal(count_ops(g, "Shape"), 1);
    assert_int_equal(count_ops(g, "Mul"), 1);
    assert_int_equal(count_ops(g, "Unsqueeze"), 1);
    assert_int_equal(count_ops(g, "Reshape"), 3);
    assert_int_equal(g->n_nodes, before - 6);
    /* the index initializers of the folded Gathers are dropped */
    assert_false(g->values[graph_find_value(g, "idx1")].flags & VAL_CONST);
    assert_true(g->values[graph_find_value(g, "idx0")].flags & VAL_CONST);
    graph_free(g);
}

static void test_prepared_graph_runs_at_any_batch_like_per_sample_runs(void **state)
{
    (void)state;
    Graph *orig = pytorch_style_graph();
    Graph *g = graph_clone(orig);
    prepare_ok(g);
    static const int64_t batches[] = {1, 5, 64};
    for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++) {
        int64_t B = batches[bi];
        TRng r;
        trng_seed(&r, 100 + (uint64_t)B);
        Shape xs = shape_of(4, B, (int64_t)1, (int64_t)4, (int64_t)4);
        Tensor *x = t_rand(&r, &xs, -1, 1);
        Tensor *out[2] = {0}, *ref[2] = {0};
        run_graph(g, x, out);
        char want0[64], want1[64], got[64];
        snprintf(want0, sizeof want0, "[%lld,32]", (long long)B);
        snprintf(want1, sizeof want1, "[%lld,16]", (long long)(2 * B));
        assert_string_equal(shape_str(&out[0]->shape, got, sizeof got), want0);
        assert_string_equal(shape_str(&out[1]->shape, got, sizeof got), want1);
        /* the unprepared graph, node by node */
        assert_int_equal(tg_ref_run(orig, &x, ref), 0);
        char label[80];
        snprintf(label, sizeof label, "batch %lld: prepared vs unprepared op_run chain", (long long)B);
        double d0 = t_max_diff(label, out[0], ref[0]);
        double d1 = t_max_diff(label, out[1], ref[1]);
        assert_true(d0 <= 1e-6 && d1 <= 1e-6);
        /* every sample alone at batch 1 */
        double worst = 0;
        for (int64_t i = 0; i < B; i++) {
            Tensor *xi = sample(x, i), *oi[2] = {0};
            run_graph(g, xi, oi);
            for (int k = 0; k < 2; k++) {
                int64_t per = oi[k]->numel;
                for (int64_t j = 0; j < per; j++) {
                    double d = fabs((double)tensor_f32(out[k])[i * per + j] - tensor_f32(oi[k])[j]);
                    worst = d > worst ? d : worst;
                }
                tensor_free(oi[k]);
            }
            tensor_free(xi);
        }
        printf("batch %lld vs per-sample runs: max abs diff %.3g\n", (long long)B, worst);
        assert_true(worst <= 1e-6);
        for (int k = 0; k < 2; k++) {
            tensor_free(out[k]);
            tensor_free(ref[k]);
        }
        tensor_free(x);
    }
    graph_free(g);
    graph_free(orig);
}

/* ---- constants -------------------------------------------------------------------- */

static void test_pure_constant_subgraph_folds(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape xs = shape_of(2, (int64_t)-1, (int64_t)3), cs = shape_of(1, (int64_t)3);
    int x = graph_add_input(g, "x", SH_F32, &xs);
    float kv[3] = {1, 2, 3}, iv[3] = {10, 20, 30};
    int k = graph_value(g, "k");
    graph_add_node(g, "Constant", "const_node", 0, NULL, 1, &k);
    node_set_tensor(last_node(g), "value", t_f32(&cs, kv));
    int init = tg_const_f32(g, "init", &cs, iv);
    int ain[2] = {k, init};
    int s = tg_op1(g, "Add", "s", 2, ain);
    int ns = tg_op1(g, "Neg", "ns", 1, &s);
    int min[2] = {x, ns};
    int y = tg_op1(g, "Mul", "y", 2, min);
    graph_add_output(g, y);
    prepare_ok(g);
    assert_int_equal(g->n_nodes, 1);
    assert_string_equal(g->nodes[0].op_type, "Mul");
    int nsv = graph_find_value(g, "ns");
    assert_true(g->values[nsv].flags & VAL_CONST);
    assert_int_equal(g->values[nsv].producer, -1);
    const float *f = tensor_f32(g->values[nsv].data);
    assert_float_equal(f[0], -11, 0);
    assert_float_equal(f[1], -22, 0);
    assert_float_equal(f[2], -33, 0);
    assert_int_equal(graph_param_count(g), 3); /* k, init and s are gone */
    assert_value_shape(g, "y", "[N,3]");
    Shape x2 = shape_of(2, (int64_t)2, (int64_t)3);
    float xv[6] = {1, 1, 1, 2, 2, 2};
    Tensor *xt = t_f32(&x2, xv), *out = NULL;
    run_graph(g, xt, &out);
    assert_float_equal(tensor_f32(out)[5], -66, 0);
    tensor_free(out);
    tensor_free(xt);
    graph_free(g);
}

static void test_graph_output_computed_from_constants_is_kept(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape xs = shape_of(1, (int64_t)3);
    int x = graph_add_input(g, "x", SH_F32, &xs);
    float cv[3] = {1, 2, 3};
    int c = tg_const_f32(g, "c", &xs, cv);
    int nc = tg_op1(g, "Neg", "nc", 1, &c);
    int y = tg_op1(g, "Relu", "y", 1, &x);
    graph_add_output(g, y);
    graph_add_output(g, nc);
    prepare_ok(g);
    Tensor *xt = t_f32(&xs, cv), *out[2] = {0};
    run_graph(g, xt, out);
    assert_float_equal(tensor_f32(out[1])[2], -3, 0);
    assert_int_equal(g->n_outputs, 2);
    tensor_free(out[0]);
    tensor_free(out[1]);
    tensor_free(xt);
    graph_free(g);
}

/* ---- refusals and fallbacks ---------------------------------------------------------- */

static Graph *flatten_graph(const Shape *declared)
{
    Graph *g = graph_new();
    int x = batch_input(g, "x");
    int y = tg_op1(g, "Flatten", "logits", 1, &x);
    graph_add_output(g, y);
    if (declared)
        g->values[y].shape = *declared;
    return g;
}

static void test_declared_output_shape_that_disagrees_is_refused(void **state)
{
    (void)state;
    Shape wrong = shape_of(2, (int64_t)-1, (int64_t)10);
    Graph *g = flatten_graph(&wrong);
    assert_int_equal(graph_prepare(g), SH_E_SHAPE);
    assert_msg_has("'logits'");
    assert_msg_has("[N,10]");
    assert_msg_has("[N,16]");
    graph_free(g);

    Shape wrong_rank = shape_of(3, (int64_t)-1, (int64_t)4, (int64_t)4);
    g = flatten_graph(&wrong_rank);
    assert_int_equal(graph_prepare(g), SH_E_SHAPE);
    assert_msg_has("'logits'");
    graph_free(g);

    /* agreeing declarations pass, a symbolic dim agrees with anything */
    Shape right = shape_of(2, (int64_t)-1, (int64_t)16);
    g = flatten_graph(&right);
    prepare_ok(g);
    graph_free(g);
    Shape unknown = {.rank = -1};
    g = flatten_graph(&unknown);
    prepare_ok(g);
    assert_value_shape(g, "logits", "[N,16]");
    graph_free(g);
}

static void test_reshape_hard_coding_batch_one_falls_back_to_batch_one(void **state)
{
    (void)state;
    Graph *g = graph_new();
    int x = batch_input(g, "x");
    int64_t shape[2] = {1, 16};
    int rin[2] = {x, vec_i64(g, "shape", 2, shape)};
    int y = tg_op1(g, "Reshape", "hard", 2, rin);
    graph_add_output(g, y);
    prepare_ok(g);
    assert_value_shape(g, "x", "[1,1,4,4]");
    assert_value_shape(g, "hard", "[1,16]");
    Shape s1;
    assert_int_equal(graph_input_shape(g, 0, 8, &s1), 0);
    assert_int_equal(s1.d[0], 1); /* no longer symbolic: the batch does not bind */
    Shape xs = shape_of(4, (int64_t)1, (int64_t)1, (int64_t)4, (int64_t)4);
    TRng r;
    trng_seed(&r, 3);
    Tensor *xt = t_rand(&r, &xs, -1, 1), *out = NULL;
    run_graph(g, xt, &out);
    assert_memory_equal(out->data, xt->data, 16 * sizeof(float));
    ExecPlan *p = NULL;
    Shape x2 = shape_of(4, (int64_t)2, (int64_t)1, (int64_t)4, (int64_t)4);
    assert_int_equal(exec_plan(g, &x2, NULL, &p), SH_E_SHAPE);
    assert_msg_has("'x'");
    tensor_free(out);
    tensor_free(xt);
    graph_free(g);
}

static void test_graph_failing_at_every_batch_reports_the_node(void **state)
{
    (void)state;
    Graph *g = graph_new();
    int x = batch_input(g, "x");
    int64_t shape[2] = {3, 7};
    int rin[2] = {x, vec_i64(g, "shape", 2, shape)};
    int y = tg_op1(g, "Reshape", "impossible", 2, rin);
    graph_add_output(g, y);
    assert_int_equal(graph_prepare(g), SH_E_SHAPE);
    assert_msg_has("'impossible'");
    /* the model is left with its symbolic batch */
    assert_int_equal(g->values[x].shape.d[0], -1);
    graph_free(g);

    g = graph_new();
    x = batch_input(g, "x");
    Shape cs = shape_of(1, (int64_t)5);
    float cv[5] = {0};
    int ain[2] = {x, tg_const_f32(g, "c", &cs, cv)};
    y = tg_op1(g, "Add", "bad_add", 2, ain);
    graph_add_output(g, y);
    assert_int_equal(graph_prepare(g), SH_E_SHAPE);
    assert_msg_has("'bad_add'");
    graph_free(g);
}

static void test_fixed_batch_graph_is_prepared_as_is(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape xs = shape_of(2, (int64_t)4, (int64_t)6);
    int x = graph_add_input(g, "x", SH_F32, &xs);
    int s = tg_op1(g, "Shape", "s", 1, &x);
    int64_t minus1 = -1;
    int gin[2] = {s, scalar_i64(g, "i0", 0)};
    int n = tg_op1(g, "Gather", "n", 2, gin);
    int n1 = unsqueeze0(g, "n1", n);
    int t = concat0(g, "t", n1, vec_i64(g, "m1", 1, &minus1));
    int rin[2] = {x, t};
    int y = tg_op1(g, "Reshape", "y", 2, rin);
    graph_add_output(g, y);
    g->opset = 13;
    prepare_ok(g);
    /* with a fixed batch the whole shape chain is a constant */
    assert_int_equal(g->n_nodes, 1);
    assert_string_equal(g->nodes[0].op_type, "Reshape");
    assert_value_shape(g, "y", "[4,6]");
    graph_free(g);
}

static void test_prepare_twice_changes_nothing(void **state)
{
    (void)state;
    Graph *g = pytorch_style_graph();
    prepare_ok(g);
    Graph *once = graph_clone(g);
    prepare_ok(g);
    assert_int_equal(g->n_nodes, once->n_nodes);
    for (int i = 0; i < g->n_nodes; i++)
        assert_string_equal(g->nodes[i].name, once->nodes[i].name);
    for (int v = 0; v < g->n_values; v++) {
        char a[128], b[128];
        sym_shape_str(&g->values[v].shape, a, sizeof a);
        sym_shape_str(&once->values[v].shape, b, sizeof b);
        if (strcmp(a, b) != 0)
            fail_msg("value '%s': %s after the second prepare, %s after the first",
                     g->values[v].name, a, b);
    }
    graph_free(once);
    graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pytorch_style_graph_gets_symbolic_shapes),
        cmocka_unit_test(test_batch_independent_shape_arithmetic_is_folded),
        cmocka_unit_test(test_prepared_graph_runs_at_any_batch_like_per_sample_runs),
        cmocka_unit_test(test_pure_constant_subgraph_folds),
        cmocka_unit_test(test_graph_output_computed_from_constants_is_kept),
        cmocka_unit_test(test_declared_output_shape_that_disagrees_is_refused),
        cmocka_unit_test(test_reshape_hard_coding_batch_one_falls_back_to_batch_one),
        cmocka_unit_test(test_graph_failing_at_every_batch_reports_the_node),
        cmocka_unit_test(test_fixed_batch_graph_is_prepared_as_is),
        cmocka_unit_test(test_prepare_twice_changes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
