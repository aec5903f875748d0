/* The executor against a reference interpreter that runs node by node
 * with op_run (no arena, no aliasing, no in-place): outputs, arena sizes
 * from value lifetimes, in-place and alias safety, input checks. */
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

static ExecPlan *plan_ok(const Graph *g, Tensor *const *inputs, const ExecOptions *opt)
{
    Shape shapes[8];
    for (int i = 0; i < g->n_inputs; i++)
        shapes[i] = inputs[i]->shape;
    ExecPlan *p = NULL;
    if (exec_plan(g, shapes, opt, &p) != 0)
        fail_msg("exec_plan: %s", sh_errmsg());
    return p;
}

static void run_ok(ExecPlan *p, Tensor *const *inputs)
{
    if (exec_run(p, inputs) != 0)
        fail_msg("exec_run: %s", sh_errmsg());
}

/* Elements equal, or both NaN (the executor and the reference run the same
 * kernels, so they must agree to the bit). */
static double max_diff_nan_ok(const char *label, const Tensor *a, const Tensor *b)
{
    char sa[64], sb[64];
    if (a->dtype != b->dtype || !shape_eq(&a->shape, &b->shape))
        fail_msg("%s: %s %s vs %s %s", label, dtype_name(a->dtype), shape_str(&a->shape, sa, sizeof sa),
                 dtype_name(b->dtype), shape_str(&b->shape, sb, sizeof sb));
    double m = 0;
    for (int64_t i = 0; i < a->numel; i++) {
        double x = tensor_get_f(a, i), y = tensor_get_f(b, i);
        if (isnan(x) && isnan(y))
            continue;
        double d = isnan(x) || isnan(y) ? INFINITY : fabs(x - y);
        m = d > m ? d : m;
    }
    return m;
}

/* Plans and runs g on inputs, and compares every graph output with the
 * reference interpreter within tol, printing the max difference. */
static void check_against_reference(const Graph *g, Tensor *const *inputs, const ExecOptions *opt,
                                    double tol, const char *label)
{
    Tensor *ref[8] = {0};
    if (tg_ref_run(g, inputs, ref) != 0)
        fail_msg("%s: reference run: %s", label, sh_errmsg());
    ExecPlan *p = plan_ok(g, inputs, opt);
    run_ok(p, inputs);
    double worst = 0;
    for (int k = 0; k < g->n_outputs; k++) {
        double d = max_diff_nan_ok(label, exec_output(p, k), ref[k]);
        worst = d > worst ? d : worst;
        tensor_free(ref[k]);
    }
    printf("%s: executor vs op_run chain: max abs diff %.3g (tolerance %.3g)\n", label, worst, tol);
    exec_free(p);
    if (!(worst <= tol))
        fail_msg("%s: max diff %g exceeds %g", label, worst, tol);
}

static Tensor *rand_tensor(uint64_t seed, const Shape *s, float lo, float hi)
{
    TRng r;
    trng_seed(&r, seed);
    return t_rand(&r, s, lo, hi);
}

static int rand_const(Graph *g, const char *name, uint64_t seed, const Shape *s)
{
    Tensor *t = rand_tensor(seed, s, -1, 1);
    return graph_add_const(g, name, t);
}

static int const_ints(Graph *g, const char *name, int n, const int64_t *v)
{
    Shape s = shape_of(1, (int64_t)n);
    return tg_const_i64(g, name, &s, v);
}

static Node *last_node(Graph *g) { return &g->nodes[g->n_nodes - 1]; }

/* ---- outputs equal an op_run chain ------------------------------------------ */

static void test_small_cnn_matches_op_run_chain(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape xs = shape_of(4, (int64_t)2, (int64_t)1, (int64_t)6, (int64_t)6);
    int x = graph_add_input(g, "x", SH_F32, &xs);
    Shape wshape = shape_of(4, (int64_t)3, (int64_t)1, (int64_t)3, (int64_t)3);
    Shape bshape = shape_of(1, (int64_t)3);
    int w = rand_const(g, "w", 1, &wshape), b = rand_const(g, "b", 2, &bshape);
    int cin[3] = {x, w, b};
    int conv = tg_op1(g, "Conv", "conv", 3, cin);
    int64_t pads[4] = {1, 1, 1, 1};
    node_set_ints(last_node(g), "pads", pads, 4);
    int relu = tg_op1(g, "Relu", "relu", 1, &conv);
    int pool = tg_op1(g, "MaxPool", "pool", 1, &relu);
    int64_t k2[2] = {2, 2};
    node_set_ints(last_node(g), "kernel_shape", k2, 2);
    node_set_ints(last_node(g), "strides", k2, 2);
    int flat = tg_op1(g, "Flatten", "flat", 1, &pool);
    Shape gw = shape_of(2, (int64_t)4, (int64_t)27), gb = shape_of(1, (int64_t)4);
    int fw = rand_const(g, "fc_w", 3, &gw), fb = rand_const(g, "fc_b", 4, &gb);
    int gin[3] = {flat, fw, fb};
    int fc = tg_op1(g, "Gemm", "fc", 3, gin);
    node_set_int(last_node(g), "transB", 1);
    int prob = tg_op1(g, "Softmax", "prob", 1, &fc);
    graph_add_output(g, prob);

    Tensor *in = rand_tensor(5, &xs, -1, 1);
    check_against_reference(g, &in, NULL, 1e-6, "conv-relu-pool-flatten-gemm-softmax");
    /* MACs of the conv: N*Cout*H*W*Cin*kh*kw */
    ExecPlan *p = plan_ok(g, &in, NULL);
    assert_int_equal(exec_node_macs(p, 0), 2 * 3 * 6 * 6 * 1 * 3 * 3);
    assert_int_equal(exec_node_macs(p, 4), 2 * 4 * 27);
    exec_free(p);
    tensor_free(in);
    graph_free(g);
}

static void test_matmul_residual_concat_reshape_match_op_run_chain(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape xs = shape_of(2, (int64_t)2, (int64_t)4);
    int x = graph_add_input(g, "x", SH_F32, &xs);
    Shape ws = shape_of(2, (int64_t)4, (int64_t)4);
    int w = rand_const(g, "w", 7, &ws);
    int min[2] = {x, w};
    int a = tg_op1(g, "MatMul", "a", 2, min);
    int b = tg_op1(g, "Relu", "b", 1, &a);
    int ain[2] = {b, a};
    int c = tg_op1(g, "Add", "c", 2, ain);
    int cin[2] = {c, x};
    int d = tg_op1(g, "Concat", "d", 2, cin);
    node_set_int(last_node(g), "axis", 1);
    int64_t shape44[2] = {4, 4};
    int rin[2] = {d, const_ints(g, "shape44", 2, shape44)};
    int e = tg_op1(g, "Reshape", "e", 2, rin);
    int f = tg_op1(g, "Transpose", "f", 1, &e);
    int s = tg_op1(g, "Sigmoid", "s", 1, &f);
    graph_add_output(g, s);
    graph_add_output(g, c);
    Tensor *in = rand_tensor(8, &xs, -2, 2);
    check_against_reference(g, &in, NULL, 1e-6, "matmul-residual-concat-reshape");
    ExecOptions keep = {.keep_all = true};
    check_against_reference(g, &in, &keep, 1e-6, "same, keep_all");
    tensor_free(in);
    graph_free(g);
}

/* ---- the arena ---------------------------------------------------------------- */

static void test_arena_is_smaller_than_activations_on_a_long_chain(void **state)
{
    (void)state;
    enum { STEPS = 20 };
    Graph *g = graph_new();
    Shape xs = shape_of(2, (int64_t)8, (int64_t)16); /* 512 bytes */
    int v = graph_add_input(g, "x", SH_F32, &xs);
    for (int i = 0; i < STEPS; i++) { /* Transpose cannot work in place */
        char name[16];
        snprintf(name, sizeof name, "t%d", i);
        v = tg_op1(g, "Transpose", name, 1, &v);
    }
    graph_add_output(g, v);
    Tensor *in = rand_tensor(3, &xs, -1, 1);
    ExecPlan *p = plan_ok(g, &in, NULL);
    printf("transpose chain: arena %zu bytes, activations %zu bytes\n", exec_arena_bytes(p),
           exec_activation_bytes(p));
    assert_int_equal(exec_activation_bytes(p), STEPS * 512);
    /* at every step one input and one output are live */
    assert_int_equal(exec_arena_bytes(p), 2 * 512);
    run_ok(p, &in);
    /* an even number of transposes gives x back */
    assert_true(t_max_diff("20 transposes vs x", exec_output(p, 0), in) == 0);
    exec_free(p);
    graph_free(g);

    /* a chain of in-place activations needs one buffer */
    g = graph_new();
    v = graph_add_input(g, "x", SH_F32, &xs);
    static const char *ops[] = {"Neg", "Relu", "Sigmoid", "Tanh", "Abs", "Exp"};
    for (int i = 0; i < STEPS; i++) {
        char name[16];
        snprintf(name, sizeof name, "a%d", i);
        v = tg_op1(g, ops[i % 6], name, 1, &v);
    }
    graph_add_output(g, v);
    p = plan_ok(g, &in, NULL);
    printf("activation chain: arena %zu bytes, activations %zu bytes\n", exec_arena_bytes(p),
           exec_activation_bytes(p));
    assert_int_equal(exec_arena_bytes(p), 512);
    assert_int_equal(exec_activation_bytes(p), STEPS * 512);
    exec_free(p);
    check_against_reference(g, &in, NULL, 0, "in-place activation chain");
    tensor_free(in);
    graph_free(g);
}

/* x [1,16] (64 bytes, a graph input: not in the arena)
 *   step 0: a = Concat(x, x)  [1,32]  128 B, read at steps 1 and 3: live 0..3
 *   step 1: b = Concat(a, a)  [1,64]  256 B, read at step 2:        live 1..2
 *   step 2: c = Concat(b, x)  [1,80]  320 B, read at step 3:        live 2..3
 *   step 3: d = Concat(c, a)  [1,112] 448 B, graph output:          live 3..end
 * Live bytes per step: 128, 128+256, 128+256+320 = 704, 128+320+448 = 896.
 * The peak, 896, is the least any placement can use. */
static void test_arena_equals_peak_of_hand_computed_lifetimes(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape xs = shape_of(2, (int64_t)1, (int64_t)16);
    int x = graph_add_input(g, "x", SH_F32, &xs);
    int in_a[2] = {x, x};
    int a = tg_op1(g, "Concat", "a", 2, in_a);
    node_set_int(last_node(g), "axis", 1);
    int in_b[2] = {a, a};
    int b = tg_op1(g, "Concat", "b", 2, in_b);
    node_set_int(last_node(g), "axis", 1);
    int in_c[2] = {b, x};
    int c = tg_op1(g, "Concat", "c", 2, in_c);
    node_set_int(last_node(g), "axis", 1);
    int in_d[2] = {c, a};
    int d = tg_op1(g, "Concat", "d", 2, in_d);
    node_set_int(last_node(g), "axis", 1);
    graph_add_output(g, d);
    Tensor *in = rand_tensor(11, &xs, -1, 1);
    ExecPlan *p = plan_ok(g, &in, NULL);
    printf("concat lifetimes: arena %zu bytes, activations %zu bytes\n", exec_arena_bytes(p),
           exec_activation_bytes(p));
    assert_int_equal(exec_activation_bytes(p), 128 + 256 + 320 + 448);
    assert_int_equal(exec_arena_bytes(p), 896);
    run_ok(p, &in);
    /* d = [x x x x x x x x x x x x x x x x x ... ] = [a a x a] = [x x x x x x x x x x x x x x] */
    const float *xv = tensor_f32(in), *dv = tensor_f32(exec_output(p, 0));
    for (int k = 0; k < 7; k++)
        for (int j = 0; j < 16; j++)
            if (dv[k * 16 + j] != xv[j])
                fail_msg("d[%d] = %g, want x[%d] = %g", k * 16 + j, dv[k * 16 + j], j, xv[j]);
    exec_free(p);

    /* keep_all: nothing shares, so the arena holds every activation */
    ExecOptions keep = {.keep_all = true};
    p = plan_ok(g, &in, &keep);
    assert_int_equal(exec_arena_bytes(p), 128 + 256 + 320 + 448);
    exec_free(p);
    tensor_free(in);
    graph_free(g);
}

/* ---- in-place and aliasing ------------------------------------------------------- */

/* in -> Neg -> x; y = Relu(x); z = Add(y, x). Relu may not overwrite x. */
static void test_inplace_does_not_overwrite_a_value_read_later(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape s = shape_of(2, (int64_t)4, (int64_t)16);
    int in = graph_add_input(g, "in", SH_F32, &s);
    int x = tg_op1(g, "Neg", "x", 1, &in);
    int y = tg_op1(g, "Relu", "y", 1, &x);
    int add_in[2] = {y, x};
    int z = tg_op1(g, "Add", "z", 2, add_in);
    graph_add_output(g, z);
    Tensor *t = rand_tensor(21, &s, -1, 1);
    check_against_reference(g, &t, NULL, 0, "relu(x) + x");
    ExecPlan *p = plan_ok(g, &t, NULL);
    run_ok(p, &t);
    assert_ptr_not_equal(exec_value(p, y)->data, exec_value(p, x)->data);
    /* z = relu(-in) + (-in) = min(-in, 0) * 2... for each element */
    for (int64_t i = 0; i < t->numel; i++) {
        float v = -tensor_f32(t)[i];
        float want = (v > 0 ? v : 0) + v;
        assert_float_equal(tensor_f32(exec_output(p, 0))[i], want, 0);
    }
    exec_free(p);

    /* control: when x has no later reader, Relu does reuse its buffer */
    Graph *h = graph_new();
    in = graph_add_input(h, "in", SH_F32, &s);
    x = tg_op1(h, "Neg", "x", 1, &in);
    y = tg_op1(h, "Relu", "y", 1, &x);
    graph_add_output(h, y);
    p = plan_ok(h, &t, NULL);
    run_ok(p, &t);
    assert_ptr_equal(exec_value(p, y)->data, exec_value(p, x)->data);
    exec_free(p);
    graph_free(h);
    tensor_free(t);
    graph_free(g);
}

/* a [1,4] (16 bytes) broadcast against b [4,4] (64 bytes): both round to
 * one 64-byte arena block, but the output may not overwrite a. */
static void test_inplace_never_overwrites_a_broadcast_input(void **state)
{
    (void)state;
    static const char *ops[] = {"Add", "Sub", "Mul", "Div", "Pow", "PRelu"};
    for (size_t o = 0; o < sizeof ops / sizeof *ops; o++) {
        Graph *g = graph_new();
        Shape xs = shape_of(2, (int64_t)1, (int64_t)4), bs = shape_of(2, (int64_t)4, (int64_t)4);
        int x = graph_add_input(g, "x", SH_F32, &xs);
        int bv = graph_add_input(g, "b", SH_F32, &bs);
        int a = tg_op1(g, "Sigmoid", "a", 1, &x);
        int in2[2] = {a, bv};
        int y = tg_op1(g, ops[o], "y", 2, in2);
        graph_add_output(g, y);
        Tensor *ins[2] = {rand_tensor(31, &xs, -1, 1), rand_tensor(32, &bs, 0.5f, 2)};
        Tensor *ref = NULL;
        int rc = tg_ref_run(g, ins, &ref);
        if (rc == 0) { /* PRelu's slope must broadcast to x: [4,4] does not */
            char label[64];
            snprintf(label, sizeof label, "%s broadcast [1,4] x [4,4]", ops[o]);
            check_against_reference(g, ins, NULL, 0, label);
        } else
            printf("%s: reference refuses the shapes (%s)\n", ops[o], sh_errmsg());
        tensor_free(ref);
        tensor_free(ins[0]);
        tensor_free(ins[1]);
        graph_free(g);
    }
}

typedef struct {
    int tried, ran, inplace;
} InplaceStats;

/* Runs x -> Sigmoid -> a -> op(a[, c]) -> y through the executor (where
 * op may overwrite a) and through the reference. */
static void check_inplace_op(const OpDef *op, bool broadcast, InplaceStats *st)
{
    Graph *g = graph_new();
    Shape xs = broadcast ? shape_of(2, (int64_t)1, (int64_t)4) : shape_of(2, (int64_t)3, (int64_t)5);
    Shape cs = broadcast ? shape_of(2, (int64_t)4, (int64_t)4) : xs;
    int x = graph_add_input(g, "x", SH_F32, &xs);
    int a = tg_op1(g, "Sigmoid", "a", 1, &x); /* a in (0.1, 0.9), in the arena */
    if (strcmp(op->name, "Acosh") == 0)
        a = tg_op1(g, "Reciprocal", "inv", 1, &a); /* Acosh needs a >= 1 */
    int in[2] = {a, -1};
    int n_in = 1;
    if (op->min_in >= 2) {
        in[1] = rand_const(g, "c", 41, &cs);
        n_in = 2;
        tensor_f32(g->values[in[1]].data)[0] = 0.75f; /* no zero divisors */
    } else if (broadcast) {
        graph_free(g);
        return;
    }
    int y = tg_op1(g, op->name, "y", n_in, in);
    if (strcmp(op->name, "Mod") == 0)
        node_set_int(last_node(g), "fmod", 1);
    graph_add_output(g, y);
    Tensor *xin = rand_tensor(42, &xs, -2, 2);
    Tensor *ref = NULL;
    st->tried++;
    if (tg_ref_run(g, &xin, &ref) != 0) {
        printf("%s: skipped, op_run refuses float input (%s)\n", op->name, sh_errmsg());
    } else {
        ExecPlan *p = plan_ok(g, &xin, NULL);
        run_ok(p, &xin);
        double d = max_diff_nan_ok(op->name, exec_output(p, 0), ref);
        if (d != 0)
            fail_msg("%s%s: executor differs from op_run by %g", op->name,
                     broadcast ? " (broadcast)" : "", d);
        st->ran++;
        st->inplace += exec_value(p, y)->data == exec_value(p, a)->data;
        exec_free(p);
    }
    tensor_free(ref);
    tensor_free(xin);
    graph_free(g);
}

static void collect_inplace(const OpDef *op, void *arg)
{
    const OpDef **list = arg;
    if (!(op->flags & OP_INPLACE) || op->min_in > 2)
        return;
    while (*list)
        list++;
    *list = op;
}

static void test_every_inplace_op_matches_op_run(void **state)
{
    (void)state;
    const OpDef *ops[256] = {0};
    op_foreach(collect_inplace, ops);
    InplaceStats st = {0}, bst = {0};
    for (int i = 0; ops[i]; i++) {
        check_inplace_op(ops[i], false, &st);
        check_inplace_op(ops[i], true, &bst);
    }
    printf("OP_INPLACE ops: %d tried, %d ran (max abs diff 0 each), %d reused their input's buffer; "
           "broadcast: %d ran\n", st.tried, st.ran, st.inplace, bst.ran);
    assert_true(st.ran >= 40);
    assert_true(bst.ran >= 5);
    assert_true(st.inplace >= 30); /* the reuse path is exercised */
}

/* in -> Neg -> a -> Reshape -> r; t = Exp(u) is computed after the reshape
 * and before r is read; the arena must not place t over a. */
static void test_alias_shares_bytes_and_keeps_its_source_live(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape xs = shape_of(2, (int64_t)2, (int64_t)8), us = shape_of(2, (int64_t)4, (int64_t)4);
    int x = graph_add_input(g, "x", SH_F32, &xs);
    int u = graph_add_input(g, "u", SH_F32, &us);
    int a = tg_op1(g, "Neg", "a", 1, &x);
    int64_t shape44[2] = {4, 4};
    int rin[2] = {a, const_ints(g, "shape44", 2, shape44)};
    int r = tg_op1(g, "Reshape", "r", 2, rin);
    int t = tg_op1(g, "Exp", "t", 1, &u);
    int f = tg_op1(g, "Flatten", "f", 1, &r); /* an alias of an alias */
    int add_in[2] = {r, t};
    int z = tg_op1(g, "Add", "z", 2, add_in);
    int fin2[2] = {f, z};
    int w = tg_op1(g, "Sub", "w", 2, fin2);
    graph_add_output(g, z);
    graph_add_output(g, w);
    Tensor *ins[2] = {rand_tensor(51, &xs, -1, 1), rand_tensor(52, &us, -1, 1)};
    check_against_reference(g, ins, NULL, 0, "reshape alias kept live");
    ExecPlan *p = plan_ok(g, ins, NULL);
    run_ok(p, ins);
    assert_ptr_equal(exec_value(p, r)->data, exec_value(p, a)->data);
    assert_ptr_equal(exec_value(p, f)->data, exec_value(p, a)->data);
    assert_ptr_not_equal(exec_value(p, t)->data, exec_value(p, a)->data);
    for (int i = 0; i < 16; i++) {
        float want = -tensor_f32(ins[0])[i] + expf(tensor_f32(ins[1])[i]);
        assert_float_equal(tensor_f32(exec_output(p, 0))[i], want, 1e-6);
    }
    exec_free(p);
    tensor_free(ins[0]);
    tensor_free(ins[1]);
    graph_free(g);
}

static void test_run_leaves_the_callers_inputs_unchanged(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape xs = shape_of(2, (int64_t)4, (int64_t)16);
    int x = graph_add_input(g, "x", SH_F32, &xs);
    int64_t flat[1] = {64};
    int rin[2] = {x, const_ints(g, "flat", 1, flat)};
    int r = tg_op1(g, "Reshape", "r", 2, rin); /* an alias of the caller's buffer */
    int y = tg_op1(g, "Relu", "y", 1, &r);
    int id = tg_op1(g, "Identity", "id", 1, &x);
    int n = tg_op1(g, "Neg", "n", 1, &id);
    graph_add_output(g, y);
    graph_add_output(g, n);
    Tensor *in = rand_tensor(61, &xs, -1, 1), *copy = tensor_clone(in);
    check_against_reference(g, &in, NULL, 0, "relu of an input alias");
    assert_true(t_max_diff("input after run", in, copy) == 0);
    tensor_free(in);
    tensor_free(copy);
    graph_free(g);
}

/* ---- outputs ----------------------------------------------------------------------- */

static void test_graph_outputs_stay_valid_after_run(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape xs = shape_of(2, (int64_t)4, (int64_t)16);
    int x = graph_add_input(g, "x", SH_F32, &xs);
    int early = tg_op1(g, "Neg", "early", 1, &x);
    int v = tg_op1(g, "Relu", "relu_of_early", 1, &early); /* may not overwrite an output */
    for (int i = 0; i < 8; i++) {
        char name[16];
        snprintf(name, sizeof name, "t%d", i);
        v = tg_op1(g, i % 2 ? "Transpose" : "Sigmoid", name, 1, &v);
    }
    graph_add_output(g, early);
    graph_add_output(g, v);
    Tensor *in = rand_tensor(71, &xs, -1, 1);
    check_against_reference(g, &in, NULL, 0, "early output");
    ExecPlan *p = plan_ok(g, &in, NULL);
    run_ok(p, &in);
    for (int64_t i = 0; i < in->numel; i++)
        assert_float_equal(tensor_f32(exec_output(p, 0))[i], -tensor_f32(in)[i], 0);
    exec_free(p);
    tensor_free(in);
    graph_free(g);
}

static void test_value_used_as_two_graph_outputs(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape xs = shape_of(1, (int64_t)16);
    int x = graph_add_input(g, "x", SH_F32, &xs);
    int y = tg_op1(g, "Neg", "y", 1, &x);
    int z = tg_op1(g, "Exp", "z", 1, &y); /* in place would clobber y */
    graph_add_output(g, y);
    graph_add_output(g, z);
    graph_add_output(g, y);
    Tensor *in = rand_tensor(81, &xs, -1, 1);
    check_against_reference(g, &in, NULL, 0, "twice an output");
    ExecPlan *p = plan_ok(g, &in, NULL);
    run_ok(p, &in);
    assert_true(t_max_diff("output 0 vs output 2", exec_output(p, 0), exec_output(p, 2)) == 0);
    assert_float_equal(tensor_f32(exec_output(p, 2))[3], -tensor_f32(in)[3], 0);
    exec_free(p);
    tensor_free(in);
    graph_free(g);
}

static void test_graph_input_that_is_a_graph_output(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape xs = shape_of(2, (int64_t)2, (int64_t)8);
    int x = graph_add_input(g, "x", SH_F32, &xs);
    int y = tg_op1(g, "Relu", "y", 1, &x);
    graph_add_output(g, x);
    graph_add_output(g, y);
    Tensor *in = rand_tensor(91, &xs, -1, 1);
    check_against_reference(g, &in, NULL, 0, "input as output");
    ExecPlan *p = plan_ok(g, &in, NULL);
    run_ok(p, &in);
    assert_true(t_max_diff("output 0 vs input", exec_output(p, 0), in) == 0);
    exec_free(p);

    /* a graph whose only content is passing the input through */
    Graph *h = graph_new();
    x = graph_add_input(h, "x", SH_F32, &xs);
    graph_add_output(h, x);
    p = plan_ok(h, &in, NULL);
    run_ok(p, &in);
    assert_true(t_max_diff("pass-through", exec_output(p, 0), in) == 0);
    assert_int_equal(exec_arena_bytes(p), 0);
    exec_free(p);
    graph_free(h);
    tensor_free(in);
    graph_free(g);
}

static void test_same_plan_runs_twice_with_the_same_result(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape xs = shape_of(4, (int64_t)1, (int64_t)2, (int64_t)5, (int64_t)5);
    int x = graph_add_input(g, "x", SH_F32, &xs);
    Shape ws = shape_of(4, (int64_t)4, (int64_t)2, (int64_t)3, (int64_t)3);
    int w = rand_const(g, "w", 101, &ws);
    int cin[2] = {x, w};
    int c = tg_op1(g, "Conv", "c", 2, cin);
    int r = tg_op1(g, "Relu", "r", 1, &c);
    int gp = tg_op1(g, "GlobalAveragePool", "gp", 1, &r);
    graph_add_output(g, gp);
    Tensor *a = rand_tensor(102, &xs, -1, 1), *b = rand_tensor(103, &xs, -1, 1);
    ExecPlan *p = plan_ok(g, &a, NULL);
    run_ok(p, &a);
    Tensor *first = tensor_clone(exec_output(p, 0));
    run_ok(p, &b);
    Tensor *ref = NULL;
    assert_int_equal(tg_ref_run(g, &b, &ref), 0);
    assert_true(t_max_diff("second run (new input) vs reference", exec_output(p, 0), ref) <= 1e-6);
    run_ok(p, &a);
    assert_true(t_max_diff("third run vs first run", exec_output(p, 0), first) == 0);
    tensor_free(first);
    tensor_free(ref);
    exec_free(p);
    tensor_free(a);
    tensor_free(b);
    graph_free(g);
}

/* ---- input checks ------------------------------------------------------------------ */

static void test_run_with_wrong_input_shape_or_dtype_names_the_input(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape xs = shape_of(2, (int64_t)2, (int64_t)4);
    int x = graph_add_input(g, "pixels", SH_F32, &xs);
    int y = tg_op1(g, "Relu", "y", 1, &x);
    graph_add_output(g, y);
    Tensor *good = rand_tensor(111, &xs, -1, 1);
    ExecPlan *p = plan_ok(g, &good, NULL);

    Shape wrong = shape_of(2, (int64_t)3, (int64_t)4);
    Tensor *bad_shape = rand_tensor(112, &wrong, -1, 1);
    assert_int_equal(exec_run(p, &bad_shape), SH_E_SHAPE);
    assert_msg_has("'pixels'");
    assert_msg_has("[3,4]");

    Tensor *bad_type = tensor_new(SH_I64, &xs);
    assert_int_equal(exec_run(p, &bad_type), SH_E_SHAPE);
    assert_msg_has("'pixels'");
    assert_msg_has("int64");

    Tensor *none = NULL;
    assert_int_equal(exec_run(p, &none), SH_E_SHAPE);
    assert_msg_has("'pixels'");

    run_ok(p, &good); /* the plan still works */
    exec_free(p);

    /* planning with a shape the model does not accept */
    Shape rank3 = shape_of(3, (int64_t)2, (int64_t)4, (int64_t)1);
    assert_int_equal(exec_plan(g, &rank3, NULL, &p), SH_E_SHAPE);
    assert_null(p);
    assert_msg_has("'pixels'");
    assert_int_equal(exec_plan(g, &wrong, NULL, &p), SH_E_SHAPE);
    assert_msg_has("'pixels'");

    tensor_free(good);
    tensor_free(bad_shape);
    tensor_free(bad_type);
    graph_free(g);
}

static void test_shapes_only_plan_refuses_to_run(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape xs = shape_of(2, (int64_t)2, (int64_t)4);
    int x = graph_add_input(g, "x", SH_F32, &xs);
    int y = tg_op1(g, "Relu", "y", 1, &x);
    graph_add_output(g, y);
    ExecOptions opt = {.shapes_only = true};
    ExecPlan *p = NULL;
    assert_int_equal(exec_plan(g, &xs, &opt, &p), 0);
    assert_true(shape_eq(&exec_value(p, y)->shape, &xs));
    Tensor *in = rand_tensor(1, &xs, -1, 1);
    assert_int_equal(exec_run(p, &in), SH_E_STATE);
    exec_free(p);
    tensor_free(in);
    graph_free(g);
}

static void test_keep_all_keeps_every_activation_readable(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape xs = shape_of(2, (int64_t)4, (int64_t)16);
    int x = graph_add_input(g, "x", SH_F32, &xs);
    int v = x;
    static const char *ops[] = {"Neg", "Transpose", "Relu", "Transpose", "Sigmoid", "Exp", "Transpose"};
    int vals[7];
    for (int i = 0; i < 7; i++) {
        char name[16];
        snprintf(name, sizeof name, "v%d", i);
        v = vals[i] = tg_op1(g, ops[i], name, 1, &v);
    }
    int64_t flat[1] = {64};
    int rin[2] = {v, const_ints(g, "flat", 1, flat)};
    int r = tg_op1(g, "Reshape", "r", 2, rin);
    graph_add_output(g, r);
    /* reference values of every intermediate: make each a graph output */
    Graph *all = graph_clone(g);
    for (int i = 0; i < 7; i++)
        graph_add_output(all, vals[i]);
    Tensor *in = rand_tensor(121, &xs, -1, 1), *ref[8] = {0};
    assert_int_equal(tg_ref_run(all, &in, ref), 0);

    ExecPlan *plain = plan_ok(g, &in, NULL);
    ExecOptions keep = {.keep_all = true};
    ExecPlan *p = plan_ok(g, &in, &keep);
    printf("keep_all arena %zu bytes, without %zu bytes\n", exec_arena_bytes(p), exec_arena_bytes(plain));
    assert_true(exec_arena_bytes(plain) < exec_arena_bytes(p)); /* reuse happens without keep_all */
    run_ok(p, &in);
    for (int i = 0; i < 7; i++) {
        char label[32];
        snprintf(label, sizeof label, "keep_all v%d", i);
        assert_true(t_max_diff(label, exec_value(p, vals[i]), ref[i + 1]) == 0);
    }
    assert_true(t_max_diff("keep_all output", exec_output(p, 0), ref[0]) == 0);
    for (int i = 0; i < 8; i++)
        tensor_free(ref[i]);
    exec_free(p);
    exec_free(plain);
    tensor_free(in);
    graph_free(all);
    graph_free(g);
}

static void test_omitted_optional_outputs_run(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape xs = shape_of(4, (int64_t)2, (int64_t)3, (int64_t)4, (int64_t)4);
    int x = graph_add_input(g, "x", SH_F32, &xs);
    int a = tg_op1(g, "Neg", "a", 1, &x);
    /* MaxPool without Indices */
    int pool_out[2] = {graph_value(g, "pooled"), -1};
    graph_add_node(g, "MaxPool", "pool", 1, &a, 2, pool_out);
    int64_t k2[2] = {2, 2};
    node_set_ints(last_node(g), "kernel_shape", k2, 2);
    node_set_ints(last_node(g), "strides", k2, 2);
    /* Dropout without mask */
    int drop_out[2] = {graph_value(g, "dropped"), -1};
    graph_add_node(g, "Dropout", "drop", 1, &pool_out[0], 2, drop_out);
    /* Dropout with its mask read */
    int mask_out[2] = {graph_value(g, "kept"), graph_value(g, "mask")};
    graph_add_node(g, "Dropout", "drop_mask", 1, &drop_out[0], 2, mask_out);
    /* BatchNormalization-14 with its two training outputs omitted */
    Shape cs = shape_of(1, (int64_t)3);
    float scale[3] = {1, 2, 3}, bias[3] = {0, 1, 2}, mean[3] = {0.5f, 0, -0.5f}, var[3] = {1, 4, 0.25f};
    int bn_in[5] = {mask_out[0], tg_const_f32(g, "scale", &cs, scale), tg_const_f32(g, "bias", &cs, bias),
                    tg_const_f32(g, "mean", &cs, mean), tg_const_f32(g, "var", &cs, var)};
    int bn_out[3] = {graph_value(g, "bn"), -1, -1};
    graph_add_node(g, "BatchNormalization", "bn", 5, bn_in, 3, bn_out);
    g->opset = 14;
    graph_add_output(g, bn_out[0]);
    graph_add_output(g, mask_out[1]);
    Tensor *in = rand_tensor(131, &xs, -1, 1);
    check_against_reference(g, &in, NULL, 1e-6, "omitted optional outputs");
    ExecPlan *p = plan_ok(g, &in, NULL);
    run_ok(p, &in);
    const Tensor *m = exec_output(p, 1);
    assert_int_equal(m->dtype, SH_BOOL);
    assert_int_equal(m->numel, 2 * 3 * 2 * 2);
    for (int64_t i = 0; i < m->numel; i++)
        assert_int_equal(tensor_u8(m)[i], 1);
    /* pooled values survive both dropouts */
    assert_true(t_max_diff("dropout output vs pooled", exec_value(p, mask_out[0]),
                           exec_value(p, pool_out[0])) == 0);
    exec_free(p);
    tensor_free(in);
    graph_free(g);
}

/* x [6] reshaped by a user-fed shape input. */
static void test_input_values_make_shape_inputs_known(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape xs = shape_of(1, (int64_t)6), ss = shape_of(1, (int64_t)2);
    int x = graph_add_input(g, "x", SH_F32, &xs);
    int shp = graph_add_input(g, "target_shape", SH_I64, &ss);
    int rin[2] = {x, shp};
    int r = tg_op1(g, "Reshape", "r", 2, rin);
    int y = tg_op1(g, "Neg", "y", 1, &r);
    graph_add_output(g, y);
    int64_t s23[2] = {2, 3}, s32[2] = {3, 2};
    Tensor *xin = rand_tensor(141, &xs, -1, 1);
    Tensor *t23 = t_i64(&ss, s23), *t32 = t_i64(&ss, s32);
    Shape shapes[2] = {xs, ss};
    bool *feeding = graph_shape_feeding_values(g);
    assert_true(feeding[shp]);
    assert_false(feeding[x]);
    free(feeding);

    /* without the value the plan cannot know r's shape */
    ExecPlan *p = NULL;
    assert_int_not_equal(exec_plan(g, shapes, NULL, &p), 0);
    assert_null(p);
    assert_msg_has("'target_shape'");

    Tensor *values[2] = {NULL, t23};
    ExecOptions opt = {.input_values = values};
    if (exec_plan(g, shapes, &opt, &p) != 0)
        fail_msg("exec_plan: %s", sh_errmsg());
    assert_true(exec_value_known(p, shp));
    assert_false(exec_value_known(p, x));
    Shape want = shape_of(2, (int64_t)2, (int64_t)3);
    assert_true(shape_eq(&exec_value(p, y)->shape, &want));
    Tensor *ins[2] = {xin, t23};
    run_ok(p, ins);
    for (int i = 0; i < 6; i++)
        assert_float_equal(tensor_f32(exec_output(p, 0))[i], -tensor_f32(xin)[i], 0);
    ins[1] = t32;
    assert_int_equal(exec_run(p, ins), SH_E_STATE);
    assert_msg_has("'target_shape'");
    exec_free(p);

    /* a value that does not match the declared input is refused */
    Shape s3 = shape_of(1, (int64_t)3);
    int64_t v3[3] = {1, 2, 3};
    Tensor *t3 = t_i64(&s3, v3);
    values[1] = t3;
    assert_int_equal(exec_plan(g, shapes, &opt, &p), SH_E_SHAPE);
    assert_msg_has("'target_shape'");
    tensor_free(t3);
    tensor_free(xin);
    tensor_free(t23);
    tensor_free(t32);
    graph_free(g);
}

static void test_constant_subgraph_is_known_when_planning(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape xs = shape_of(2, (int64_t)2, (int64_t)3);
    int x = graph_add_input(g, "x", SH_F32, &xs);
    float one[6] = {1, 2, 3, 4, 5, 6};
    int c = tg_const_f32(g, "c", &xs, one);
    int nc = tg_op1(g, "Neg", "nc", 1, &c);
    int sh = tg_op1(g, "Shape", "sh", 1, &x);
    int ain[2] = {x, nc};
    int y = tg_op1(g, "Add", "y", 2, ain);
    graph_add_output(g, y);
    graph_add_output(g, sh);
    Tensor *in = rand_tensor(151, &xs, -1, 1);
    ExecPlan *p = plan_ok(g, &in, NULL);
    assert_true(exec_value_known(p, nc));
    assert_true(exec_value_known(p, sh));
    assert_false(exec_value_known(p, y));
    assert_float_equal(tensor_f32(exec_value(p, nc))[5], -6.0f, 0);
    run_ok(p, &in);
    assert_int_equal(tensor_i64(exec_output(p, 1))[0], 2);
    assert_int_equal(tensor_i64(exec_output(p, 1))[1], 3);
    exec_free(p);
    check_against_reference(g, &in, NULL, 0, "constant subgraph");
    tensor_free(in);
    graph_free(g);
}

/* ---- Conv fusion corner cases ------------------------------------------------------ */

static int add_bn(Graph *g, const char *name, int in, int64_t c, uint64_t seed, bool scale_is_input)
{
    Shape cs = shape_of(1, c);
    char buf[64];
    int ins[5];
    ins[0] = in;
    for (int k = 1; k < 5; k++) {
        snprintf(buf, sizeof buf, "%s_p%d", name, k);
        if (k == 1 && scale_is_input)
            ins[k] = graph_add_input(g, buf, SH_F32, &cs);
        else {
            ins[k] = rand_const(g, buf, seed + (uint64_t)k, &cs);
            if (k == 4) /* variances must be positive */
                for (int64_t i = 0; i < c; i++)
                    tensor_f32(g->values[ins[k]].data)[i] = 0.5f + fabsf(tensor_f32(g->values[ins[k]].data)[i]);
        }
    }
    return tg_op1(g, "BatchNormalization", name, 5, ins);
}

/* variant 0: BN output is a graph output and also feeds a Relu
 * variant 1: the Conv output is a graph output and feeds a Relu
 * variant 2: BN scale is a graph input (not foldable), then Relu
 * variant 3: Conv without bias -> BN -> Relu, a second Conv shares the weights
 * variant 4: Conv1d -> BN -> Relu -> Sigmoid (in place on the fused view) */
static Graph *fusion_graph(int variant, Tensor **inputs, int *n_inputs)
{
    Graph *g = graph_new();
    bool one_d = variant == 4;
    Shape xs = one_d ? shape_of(3, (int64_t)2, (int64_t)3, (int64_t)9)
                     : shape_of(4, (int64_t)2, (int64_t)3, (int64_t)6, (int64_t)6);
    Shape ws = one_d ? shape_of(3, (int64_t)4, (int64_t)3, (int64_t)3)
                     : shape_of(4, (int64_t)4, (int64_t)3, (int64_t)3, (int64_t)3);
    Shape bs = shape_of(1, (int64_t)4);
    int x = graph_add_input(g, "x", SH_F32, &xs);
    inputs[0] = rand_tensor(200 + (uint64_t)variant, &xs, -1, 1);
    *n_inputs = 1;
    int w = rand_const(g, "w", 210, &ws), b = rand_const(g, "b", 211, &bs);
    int cin[3] = {x, w, b};
    int conv = tg_op1(g, "Conv", "conv", variant == 3 ? 2 : 3, cin);
    int bn, r;
    switch (variant) {
    case 0:
        bn = add_bn(g, "bn", conv, 4, 220, false);
        r = tg_op1(g, "Relu", "relu", 1, &bn);
        graph_add_output(g, bn);
        graph_add_output(g, r);
        break;
    case 1:
        r = tg_op1(g, "Relu", "relu", 1, &conv);
        graph_add_output(g, conv);
        graph_add_output(g, r);
        break;
    case 2: {
        bn = add_bn(g, "bn", conv, 4, 230, true);
        r = tg_op1(g, "Relu", "relu", 1, &bn);
        graph_add_output(g, r);
        Shape cs = shape_of(1, (int64_t)4);
        inputs[1] = rand_tensor(231, &cs, 0.5f, 1.5f);
        *n_inputs = 2;
        break;
    }
    case 3: {
        bn = add_bn(g, "bn", conv, 4, 240, false);
        r = tg_op1(g, "Relu", "relu", 1, &bn);
        int cin2[2] = {x, w};
        int conv2 = tg_op1(g, "Conv", "conv2", 2, cin2);
        int bn2 = add_bn(g, "bn2", conv2, 4, 250, false);
        int ain[2] = {r, bn2};
        int sum = tg_op1(g, "Add", "sum", 2, ain);
        graph_add_output(g, sum);
        break;
    }
    default: {
        bn = add_bn(g, "bn", conv, 4, 260, false);
        r = tg_op1(g, "Relu", "relu", 1, &bn);
        int s = tg_op1(g, "Sigmoid", "sig", 1, &r);
        graph_add_output(g, s);
        break;
    }
    }
    return g;
}

static void test_conv_fusion_corner_cases_match_unfused(void **state)
{
    (void)state;
    for (int variant = 0; variant < 5; variant++) {
        Tensor *in[2] = {0};
        int n_in;
        Graph *g = fusion_graph(variant, in, &n_in);
        char label[64];
        ExecOptions plain = {.no_fusion = true};
        snprintf(label, sizeof label, "fusion variant %d, fused", variant);
        check_against_reference(g, in, NULL, 1e-5, label);
        snprintf(label, sizeof label, "fusion variant %d, no_fusion", variant);
        check_against_reference(g, in, &plain, 1e-6, label);
        for (int i = 0; i < n_in; i++)
            tensor_free(in[i]);
        graph_free(g);
    }
}

/* Empty tensors (a zero dimension) plan, run and give empty outputs. */
static void test_empty_tensors_run(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape xs = shape_of(2, (int64_t)0, (int64_t)4), zs = shape_of(2, (int64_t)2, (int64_t)4);
    int x = graph_add_input(g, "x", SH_F32, &xs);
    int z = graph_add_input(g, "z", SH_F32, &zs);
    int a = tg_op1(g, "Neg", "a", 1, &x);
    int b = tg_op1(g, "Relu", "b", 1, &a);
    int cin[2] = {b, z};
    int c = tg_op1(g, "Concat", "c", 2, cin); /* empty + [2,4] -> [2,4] */
    node_set_int(last_node(g), "axis", 0);
    int d = tg_op1(g, "Neg", "d", 1, &c);
    graph_add_output(g, b);
    graph_add_output(g, d);
    TRng r;
    trng_seed(&r, 5);
    Tensor *ins[2] = {tensor_new(SH_F32, &xs), t_rand(&r, &zs, -1, 1)};
    check_against_reference(g, ins, NULL, 0, "empty tensors");
    ExecPlan *p = plan_ok(g, ins, NULL);
    run_ok(p, ins);
    assert_int_equal(exec_output(p, 0)->numel, 0);
    assert_int_equal(exec_output(p, 1)->numel, 8);
    exec_free(p);
    tensor_free(ins[0]);
    tensor_free(ins[1]);
    graph_free(g);

    /* nothing but empty values: the arena is empty */
    g = graph_new();
    x = graph_add_input(g, "x", SH_F32, &xs);
    a = tg_op1(g, "Neg", "a", 1, &x);
    graph_add_output(g, a);
    Tensor *e = tensor_new(SH_F32, &xs);
    p = plan_ok(g, &e, NULL);
    assert_int_equal(exec_arena_bytes(p), 0);
    run_ok(p, &e);
    exec_free(p);
    tensor_free(e);
    graph_free(g);
}

/* Past the memory budget, planning and running an op fail with one clear
 * message instead of asking the allocator; within it they work. */
static void test_memory_budget_refuses_cleanly(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape xs = shape_of(2, (int64_t)4, (int64_t)(1 << 18)); /* 4 MB of floats */
    int x = graph_add_input(g, "x", SH_F32, &xs);
    int a = tg_op1(g, "Neg", "a", 1, &x);
    int b = tg_op1(g, "Exp", "b", 1, &a);
    graph_add_output(g, b);
    ExecPlan *p = NULL;
    sh_set_memory_budget((size_t)1 << 20);
    assert_int_equal(exec_plan(g, &xs, NULL, &p), SH_E_NOMEM);
    printf("budget 1 MB: %s\n", sh_errmsg());
    assert_non_null(strstr(sh_errmsg(), "memory budget"));
    Tensor t;
    assert_int_equal(tensor_alloc(&t, SH_F32, &xs), SH_E_NOMEM);
    sh_set_memory_budget(0);
    assert_true(sh_memory_budget() > ((size_t)1 << 20));
    assert_int_equal(exec_plan(g, &xs, NULL, &p), 0);
    exec_free(p);
    graph_free(g);
}

static void test_dim_strings(void **state)
{
    (void)state;
    char buf[64];
    assert_string_equal(dim_str(64, buf, sizeof buf), "64");
    assert_string_equal(dim_str(0, buf, sizeof buf), "0");
    assert_string_equal(dim_str(-1, buf, sizeof buf), "N");
    assert_string_equal(dim_str(-16, buf, sizeof buf), "N*16");
    assert_string_equal(dim_str(SH_DIM_UNKNOWN, buf, sizeof buf), "?");
    Shape s = shape_of(4, (int64_t)-1, (int64_t)16, (int64_t)28, (int64_t)28);
    assert_string_equal(sym_shape_str(&s, buf, sizeof buf), "[N,16,28,28]");
    Shape u = {.rank = -1};
    assert_string_equal(sym_shape_str(&u, buf, sizeof buf), "?");
    Shape sc = {.rank = 0};
    assert_string_equal(sym_shape_str(&sc, buf, sizeof buf), "[]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_cnn_matches_op_run_chain),
        cmocka_unit_test(test_matmul_residual_concat_reshape_match_op_run_chain),
        cmocka_unit_test(test_arena_is_smaller_than_activations_on_a_long_chain),
        cmocka_unit_test(test_arena_equals_peak_of_hand_computed_lifetimes),
        cmocka_unit_test(test_inplace_does_not_overwrite_a_value_read_later),
        cmocka_unit_test(test_inplace_never_overwrites_a_broadcast_input),
        cmocka_unit_test(test_every_inplace_op_matches_op_run),
        cmocka_unit_test(test_alias_shares_bytes_and_keeps_its_source_live),
        cmocka_unit_test(test_run_leaves_the_callers_inputs_unchanged),
        cmocka_unit_test(test_graph_outputs_stay_valid_after_run),
        cmocka_unit_test(test_value_used_as_two_graph_outputs),
        cmocka_unit_test(test_graph_input_that_is_a_graph_output),
        cmocka_unit_test(test_same_plan_runs_twice_with_the_same_result),
        cmocka_unit_test(test_run_with_wrong_input_shape_or_dtype_names_the_input),
        cmocka_unit_test(test_shapes_only_plan_refuses_to_run),
        cmocka_unit_test(test_keep_all_keeps_every_activation_readable),
        cmocka_unit_test(test_omitted_optional_outputs_run),
        cmocka_unit_test(test_input_values_make_shape_inputs_known),
        cmocka_unit_test(test_constant_subgraph_is_known_when_planning),
        cmocka_unit_test(test_conv_fusion_corner_cases_match_unfused),
        cmocka_unit_test(test_empty_tensors_run),
        cmocka_unit_test(test_dim_strings),
        cmocka_unit_test(test_memory_budget_refuses_cleanly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
