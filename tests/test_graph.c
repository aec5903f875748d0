/* The graph IR: the name map, node order, validation of who produces and
 * reads what, deep copies, dead-code pruning and attributes. */
#include "core/error.h"
#include "core/util.h"
#include "tests/support/graphutil.h"
#include "tests/support/testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

/* ---- helpers ------------------------------------------------------------ */

static void assert_msg_has(const char *phrase)
{
    if (!strstr(sh_errmsg(), phrase))
        fail_msg("message \"%s\" lacks \"%s\"", sh_errmsg(), phrase);
}

static int node_index(const Graph *g, const char *name)
{
    for (int i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0)
            return i;
    return -1;
}

/* Every node reads only values produced by an earlier node, an input or
 * an initializer, and Value.producer points at the producing node. */
static void assert_topological(const Graph *g)
{
    for (int i = 0; i < g->n_nodes; i++) {
        const Node *n = &g->nodes[i];
        for (int k = 0; k < n->n_in; k++) {
            int v = n->in[k];
            if (v < 0 || (g->values[v].flags & (VAL_INPUT | VAL_CONST)))
                continue;
            int p = g->values[v].producer;
            if (p < 0 || p >= i)
                fail_msg("node %d '%s' reads '%s' produced by node %d", i, n->name,
                         g->values[v].name, p);
        }
        for (int k = 0; k < n->n_out; k++)
            if (n->out[k] >= 0)
                assert_int_equal(g->values[n->out[k]].producer, i);
    }
}

/* ---- name map ----------------------------------------------------------- */

static void test_find_value_by_name_with_many_values(void **state)
{
    (void)state;
    Graph *g = graph_new();
    enum { N = 5000 };
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "v%d", i);
        assert_int_equal(graph_value(g, name), i);
    }
    assert_int_equal(g->n_values, N);
    /* every name maps back to its index after many map rebuilds */
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "v%d", i);
        assert_int_equal(graph_find_value(g, name), i);
        assert_string_equal(g->values[i].name, name);
    }
    assert_int_equal(graph_find_value(g, "v5000"), -1);
    assert_int_equal(graph_find_value(g, "V1"), -1);
    assert_int_equal(graph_find_value(g, ""), -1);
    assert_int_equal(graph_find_value(g, NULL), -1);
    graph_free(g);
}

static void test_find_value_on_empty_graph_is_minus_one(void **state)
{
    (void)state;
    Graph *g = graph_new();
    assert_int_equal(graph_find_value(g, "x"), -1);
    graph_free(g);
}

static void test_graph_value_creates_once(void **state)
{
    (void)state;
    Graph *g = graph_new();
    int a = graph_value(g, "a");
    int b = graph_value(g, "b");
    assert_int_not_equal(a, b);
    assert_int_equal(graph_value(g, "a"), a);
    assert_int_equal(graph_value(g, "b"), b);
    assert_int_equal(g->n_values, 2);
    /* a new value is unknown: no type, no shape, no producer */
    assert_int_equal(g->values[a].dtype, SH_UNDEF);
    assert_int_equal(g->values[a].shape.rank, -1);
    assert_int_equal(g->values[a].producer, -1);
    assert_int_equal(g->values[a].flags, 0);
    graph_free(g);
}

static void test_new_value_names_are_unique(void **state)
{
    (void)state;
    Graph *g = graph_new();
    int a = graph_value(g, "t");
    int b = graph_new_value(g, "t");
    int c = graph_new_value(g, "t");
    assert_int_not_equal(a, b);
    assert_int_not_equal(b, c);
    assert_string_not_equal(g->values[b].name, "t");
    assert_string_not_equal(g->values[b].name, g->values[c].name);
    assert_int_equal(graph_find_value(g, g->values[c].name), c);
    graph_free(g);
}

static void test_new_value_keeps_long_names_whole_and_unique(void **state)
{
    (void)state;
    alarm(20); /* a cut name could make the search for a free name endless */
    Graph *g = graph_new();
    char base[400];
    memset(base, 'a', sizeof base - 1);
    base[sizeof base - 1] = '\0';
    int a = graph_new_value(g, base);
    int b = graph_new_value(g, base);
    int c = graph_new_value(g, base);
    assert_string_equal(g->values[a].name, base);
    assert_int_equal(strncmp(g->values[b].name, base, sizeof base - 1), 0);
    assert_string_equal(g->values[b].name + sizeof base - 1, "_1");
    assert_string_equal(g->values[c].name + sizeof base - 1, "_2");
    assert_int_equal(g->n_values, 3);
    graph_free(g);
    alarm(0);
}

/* ---- ordering and validation --------------------------------------------- */

/* A diamond with a tail: x -> a, x -> b, (a, b) -> c, c -> d -> e. */
static Graph *shuffled_graph(const int *order)
{
    static const char *names[] = {"A", "B", "C", "D", "E"};
    Graph *g = graph_new();
    Shape s = shape_of(1, (int64_t)4);
    int x = graph_add_input(g, "x", SH_F32, &s);
    int a = graph_value(g, "a"), b = graph_value(g, "b"), c = graph_value(g, "c");
    int d = graph_value(g, "d"), e = graph_value(g, "e");
    for (int k = 0; k < 5; k++) {
        int i = order[k];
        int in2[2] = {a, b};
        switch (i) {
        case 0: graph_add_node(g, "Relu", names[i], 1, &x, 1, &a); break;
        case 1: graph_add_node(g, "Neg", names[i], 1, &x, 1, &b); break;
        case 2: graph_add_node(g, "Add", names[i], 2, in2, 1, &c); break;
        case 3: graph_add_node(g, "Exp", names[i], 1, &c, 1, &d); break;
        case 4: graph_add_node(g, "Abs", names[i], 1, &d, 1, &e); break;
        }
    }
    graph_add_output(g, e);
    return g;
}

static void test_toposort_orders_shuffled_nodes(void **state)
{
    (void)state;
    static const int orders[][5] = {
        {4, 3, 2, 1, 0}, {2, 4, 0, 3, 1}, {3, 1, 4, 2, 0}, {0, 1, 2, 3, 4}, {1, 2, 0, 4, 3},
    };
    for (size_t t = 0; t < sizeof orders / sizeof *orders; t++) {
        Graph *g = shuffled_graph(orders[t]);
        if (graph_toposort(g) != 0)
            fail_msg("order %zu: %s", t, sh_errmsg());
        assert_int_equal(g->n_nodes, 5);
        assert_topological(g);
        /* C after A and B, then D, then E */
        assert_true(node_index(g, "C") > node_index(g, "A"));
        assert_true(node_index(g, "C") > node_index(g, "B"));
        assert_int_equal(node_index(g, "D"), 3);
        assert_int_equal(node_index(g, "E"), 4);
        graph_free(g);
    }
}

static void test_toposort_counts_a_value_read_twice_by_one_node(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape s = shape_of(1, (int64_t)4);
    int x = graph_add_input(g, "x", SH_F32, &s);
    int a = graph_value(g, "a"), b = graph_value(g, "b"), c = graph_value(g, "c");
    int aa[2] = {a, a}, ab[2] = {a, b};
    graph_add_node(g, "Add", "twice", 2, aa, 1, &b);
    graph_add_node(g, "Mul", "last", 2, ab, 1, &c);
    graph_add_node(g, "Neg", "first", 1, &x, 1, &a);
    graph_add_output(g, c);
    assert_int_equal(graph_toposort(g), 0);
    assert_string_equal(g->nodes[0].name, "first");
    assert_string_equal(g->nodes[1].name, "twice");
    assert_string_equal(g->nodes[2].name, "last");
    assert_topological(g);
    graph_free(g);
}

static void test_toposort_keeps_an_ordered_graph_unchanged(void **state)
{
    (void)state;
    static const int order[] = {1, 0, 2, 3, 4};
    Graph *g = shuffled_graph(order);
    assert_int_equal(graph_toposort(g), 0);
    /* ready nodes keep their original relative order (stable) */
    assert_int_equal(node_index(g, "B"), 0);
    assert_int_equal(node_index(g, "A"), 1);
    graph_free(g);
}

/* x -> P -> p; cycle: (p, b) -> A -> a; a -> B -> b; tail a -> T -> t.
 * T and P are not on the cycle; A and B are. Node T comes first. */
static void test_toposort_cycle_names_a_node_on_the_cycle(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape s = shape_of(1, (int64_t)2);
    int x = graph_add_input(g, "x", SH_F32, &s);
    int p = graph_value(g, "p"), a = graph_value(g, "a"), b = graph_value(g, "b");
    int t = graph_value(g, "t");
    graph_add_node(g, "Relu", "T", 1, &a, 1, &t);
    graph_add_node(g, "Relu", "P", 1, &x, 1, &p);
    int ain[2] = {p, b};
    graph_add_node(g, "Add", "A", 2, ain, 1, &a);
    graph_add_node(g, "Neg", "B", 1, &a, 1, &b);
    graph_add_output(g, t);
    assert_int_equal(graph_toposort(g), SH_E_FORMAT);
    assert_msg_has("cycle");
    const char *m = sh_errmsg();
    if (!strstr(m, "'A'") && !strstr(m, "'B'"))
        fail_msg("the message should name node A or B (on the cycle): %s", m);
    graph_free(g);
}

static void test_toposort_self_loop_is_a_cycle(void **state)
{
    (void)state;
    Graph *g = graph_new();
    int a = graph_value(g, "a");
    graph_add_node(g, "Relu", "loop", 1, &a, 1, &a);
    graph_add_output(g, a);
    assert_int_equal(graph_toposort(g), SH_E_FORMAT);
    assert_msg_has("'loop'");
    graph_free(g);
}

static void test_value_produced_twice_is_refused(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape s = shape_of(1, (int64_t)2);
    int x = graph_add_input(g, "x", SH_F32, &s);
    int y = graph_value(g, "twice");
    graph_add_node(g, "Relu", "first", 1, &x, 1, &y);
    graph_add_node(g, "Neg", "second", 1, &x, 1, &y);
    graph_add_output(g, y);
    assert_int_equal(graph_toposort(g), SH_E_FORMAT);
    assert_msg_has("'twice'");
    assert_msg_has("more than once");
    graph_free(g);
}

static void test_node_writing_an_input_or_initializer_is_refused(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape s = shape_of(1, (int64_t)2);
    float w[2] = {1, 2};
    int x = graph_add_input(g, "x", SH_F32, &s);
    int c = tg_const_f32(g, "weights", &s, w);
    graph_add_node(g, "Relu", "overwrite_const", 1, &x, 1, &c);
    assert_int_equal(graph_toposort(g), SH_E_FORMAT);
    assert_msg_has("'weights'");
    graph_free(g);

    g = graph_new();
    x = graph_add_input(g, "x", SH_F32, &s);
    int y = graph_value(g, "y");
    graph_add_node(g, "Relu", "r", 1, &y, 1, &x);
    assert_int_equal(graph_toposort(g), SH_E_FORMAT);
    assert_msg_has("'x'");
    graph_free(g);
}

static void test_reading_an_undefined_value_is_refused(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape s = shape_of(1, (int64_t)2);
    int x = graph_add_input(g, "x", SH_F32, &s);
    int ghost = graph_value(g, "ghost");
    int in[2] = {x, ghost};
    int y = graph_value(g, "y");
    graph_add_node(g, "Add", "adder", 2, in, 1, &y);
    graph_add_output(g, y);
    assert_int_equal(graph_toposort(g), SH_E_FORMAT);
    assert_msg_has("'ghost'");
    assert_msg_has("'adder'");
    graph_free(g);
}

static void test_omitted_optional_inputs_are_not_reads(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape s = shape_of(1, (int64_t)2);
    int x = graph_add_input(g, "x", SH_F32, &s);
    int in[3] = {x, -1, -1};
    int y = graph_value(g, "y");
    graph_add_node(g, "Clip", "clip", 3, in, 1, &y);
    graph_add_output(g, y);
    assert_int_equal(graph_toposort(g), 0);
    assert_int_equal(graph_bind_ops(g), 0);
    graph_free(g);
}

static void test_bind_ops_names_the_unknown_op_and_node(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape s = shape_of(1, (int64_t)2);
    int x = graph_add_input(g, "x", SH_F32, &s);
    int y = graph_value(g, "y");
    graph_add_node(g, "FrobnicateV2", "frob", 1, &x, 1, &y);
    assert_int_equal(graph_bind_ops(g), SH_E_UNSUPPORTED);
    assert_msg_has("'frob'");
    assert_msg_has("FrobnicateV2");
    graph_free(g);

    /* too many inputs for Relu */
    g = graph_new();
    x = graph_add_input(g, "x", SH_F32, &s);
    y = graph_value(g, "y");
    int in[2] = {x, x};
    graph_add_node(g, "Relu", "relu2", 2, in, 1, &y);
    assert_int_equal(graph_bind_ops(g), SH_E_FORMAT);
    assert_msg_has("'relu2'");
    graph_free(g);
}

/* ---- deep copies ---------------------------------------------------------- */

static Graph *rich_graph(void)
{
    Graph *g = graph_new();
    g->name = xstrdup("rich");
    g->producer_name = xstrdup("maker");
    g->opset = 13;
    Shape s = shape_of(2, (int64_t)-1, (int64_t)3);
    int x = graph_add_input(g, "x", SH_F32, &s);
    g->values[x].dim_names[0] = xstrdup("batch");
    Shape ws = shape_of(1, (int64_t)3);
    float w[3] = {1, 2, 3};
    int c = tg_const_f32(g, "w", &ws, w);
    int in[2] = {x, c};
    int y = tg_op1(g, "Mul", "y", 2, in);
    int z = tg_op1(g, "LeakyRelu", "z", 1, &y);
    Node *leaky = &g->nodes[1];
    node_set_float(leaky, "alpha", 0.25f);
    int64_t ints[3] = {7, 8, 9};
    node_set_ints(leaky, "ints", ints, 3);
    node_set_str(leaky, "note", "hello");
    Shape ts = shape_of(1, (int64_t)2);
    float tv[2] = {5, 6};
    node_set_tensor(leaky, "tensor", t_f32(&ts, tv));
    graph_add_output(g, z);
    graph_set_meta(g, "shears.normalize", "0.5,0.5");
    return g;
}

static void test_clone_deep_copies_everything(void **state)
{
    (void)state;
    Graph *g = rich_graph();
    Graph *c = graph_clone(g);
    assert_non_null(c);
    assert_int_equal(c->n_values, g->n_values);
    assert_int_equal(c->n_nodes, g->n_nodes);
    assert_int_equal(c->opset, 13);
    assert_string_equal(c->name, "rich");
    assert_string_equal(c->producer_name, "maker");
    assert_int_equal(c->n_inputs, 1);
    assert_int_equal(c->n_outputs, 1);
    assert_int_equal(c->outputs[0], graph_find_value(c, "z"));
    assert_string_equal(graph_get_meta(c, "shears.normalize"), "0.5,0.5");
    int cw = graph_find_value(c, "w");
    assert_true(c->values[cw].flags & VAL_CONST);
    assert_ptr_not_equal(c->values[cw].data, g->values[cw].data);
    assert_string_equal(c->values[graph_find_value(c, "x")].dim_names[0], "batch");
    assert_int_equal(c->values[graph_find_value(c, "z")].producer, 1);
    assert_ptr_equal(c->nodes[1].op, g->nodes[1].op);

    /* mutate every part of the clone */
    tensor_f32(c->values[cw].data)[0] = 100;
    Node *cl = &c->nodes[1];
    const Attr *a = node_attr(cl, "ints");
    a->ints[0] = -1;
    tensor_f32(node_attr(cl, "tensor")->t)[0] = -5;
    node_attr(cl, "note")->s[0] = 'J';
    node_set_float(cl, "alpha", 0.75f);
    free(cl->name);
    cl->name = xstrdup("renamed");
    cl->in[0] = cw;
    graph_set_meta(c, "shears.normalize", "changed");
    c->values[graph_find_value(c, "x")].dim_names[0][0] = 'B';
    c->values[graph_find_value(c, "x")].shape.d[1] = 99;
    int extra = graph_value(c, "extra");
    graph_add_output(c, extra);

    /* the original is untouched */
    assert_float_equal(tensor_f32(g->values[cw].data)[0], 1.0f, 0);
    const Node *gl = &g->nodes[1];
    const int64_t *ints;
    assert_int_equal(node_attr_ints(gl, "ints", &ints), 3);
    assert_int_equal(ints[0], 7);
    assert_float_equal(tensor_f32(node_attr(gl, "tensor")->t)[0], 5.0f, 0);
    assert_string_equal(node_attr_str(gl, "note", NULL), "hello");
    assert_float_equal(node_attr_float(gl, "alpha", 0), 0.25f, 0);
    assert_string_equal(gl->name, "z");
    assert_int_equal(gl->in[0], graph_find_value(g, "y"));
    assert_string_equal(graph_get_meta(g, "shears.normalize"), "0.5,0.5");
    assert_string_equal(g->values[graph_find_value(g, "x")].dim_names[0], "batch");
    assert_int_equal(g->values[graph_find_value(g, "x")].shape.d[1], 3);
    assert_int_equal(graph_find_value(g, "extra"), -1);
    assert_int_equal(g->n_outputs, 1);
    graph_free(c);
    /* and still whole after the clone is gone */
    assert_float_equal(tensor_f32(g->values[cw].data)[2], 3.0f, 0);
    graph_free(g);
}

static void test_clone_runs_like_the_original(void **state)
{
    (void)state;
    Graph *g = rich_graph();
    Graph *c = graph_clone(g);
    Shape s = shape_of(2, (int64_t)2, (int64_t)3);
    float xv[6] = {-1, 2, -3, 4, -5, 6};
    Tensor *x = t_f32(&s, xv);
    Tensor *yg = NULL, *yc = NULL;
    assert_int_equal(tg_ref_run(g, &x, &yg), 0);
    assert_int_equal(tg_ref_run(c, &x, &yc), 0);
    assert_true(t_max_diff("clone vs original", yc, yg) == 0);
    /* y = x * w, z = leaky(y, 0.25) */
    assert_float_equal(tensor_f32(yg)[0], -0.25f, 0);
    assert_float_equal(tensor_f32(yg)[1], 4.0f, 0);
    tensor_free(x);
    tensor_free(yg);
    tensor_free(yc);
    graph_free(c);
    graph_free(g);
}

/* ---- pruning ---------------------------------------------------------------- */

static void test_prune_dead_removes_unused_nodes_and_initializers(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape s = shape_of(1, (int64_t)4);
    float ones[4] = {1, 1, 1, 1};
    int x = graph_add_input(g, "x", SH_F32, &s);
    int wl = tg_const_f32(g, "w_live", &s, ones);
    int wd = tg_const_f32(g, "w_dead", &s, ones);
    int wu = tg_const_f32(g, "w_unused", &s, ones);
    int in_live[2] = {x, wl}, in_dead[2] = {x, wd};
    int live = tg_op1(g, "Add", "live", 2, in_live);
    int dead1 = tg_op1(g, "Mul", "dead1", 2, in_dead);
    int dead2 = tg_op1(g, "Relu", "dead2", 1, &dead1); /* reads a dead value: dead too */
    int out = tg_op1(g, "Neg", "out", 1, &live);
    (void)dead2;
    /* a two-output node with only one output read stays */
    int sp[2] = {graph_value(g, "half0"), graph_value(g, "half1")};
    int64_t split_sizes[2] = {2, 2};
    Shape ss = shape_of(1, (int64_t)2);
    int split = tg_const_i64(g, "split", &ss, split_sizes);
    int spin[2] = {out, split};
    graph_add_node(g, "Split", "split_node", 2, spin, 2, sp);
    graph_add_output(g, out);
    graph_add_output(g, sp[1]);
    float two[4] = {2, 2, 2, 2};
    int wo = tg_const_f32(g, "w_output", &s, two); /* an initializer that is itself an output */
    graph_add_output(g, wo);
    assert_int_equal(graph_param_count(g), 16);

    graph_prune_dead(g);
    assert_int_equal(g->n_nodes, 3);
    assert_int_equal(node_index(g, "dead1"), -1);
    assert_int_equal(node_index(g, "dead2"), -1);
    assert_true(node_index(g, "live") >= 0);
    assert_true(node_index(g, "out") >= 0);
    assert_true(node_index(g, "split_node") >= 0);
    assert_true(g->values[wl].flags & VAL_CONST);
    assert_non_null(g->values[wl].data);
    assert_false(g->values[wd].flags & VAL_CONST);
    assert_null(g->values[wd].data);
    assert_false(g->values[wu].flags & VAL_CONST);
    assert_null(g->values[wu].data);
    assert_true(g->values[split].flags & VAL_CONST);
    assert_true(g->values[wo].flags & VAL_CONST);
    assert_int_equal(graph_param_count(g), 8);
    assert_int_equal(g->values[dead1].producer, -1);
    assert_int_equal(g->values[out].producer, node_index(g, "out"));
    assert_topological(g);
    /* the pruned graph still runs */
    float xv[4] = {1, 2, 3, 4};
    Tensor *xt = t_f32(&s, xv), *res[3] = {NULL, NULL, NULL};
    assert_int_equal(tg_ref_run(g, &xt, res), 0);
    assert_float_equal(tensor_f32(res[0])[3], -5.0f, 0);
    assert_float_equal(tensor_f32(res[1])[0], -4.0f, 0);
    assert_float_equal(tensor_f32(res[2])[0], 2.0f, 0);
    tensor_free(xt);
    for (int k = 0; k < 3; k++)
        tensor_free(res[k]);
    graph_free(g);
}

static void test_use_count_counts_readers_and_outputs(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape s = shape_of(1, (int64_t)4);
    int x = graph_add_input(g, "x", SH_F32, &s);
    int in[2] = {x, x};
    int y = tg_op1(g, "Add", "y", 2, in);
    graph_add_output(g, y);
    graph_add_output(g, x);
    assert_int_equal(graph_use_count(g, x), 3);
    assert_int_equal(graph_use_count(g, y), 1);
    graph_free(g);
}

/* ---- attributes -------------------------------------------------------------- */

static void test_attributes_get_set_replace(void **state)
{
    (void)state;
    Node *n = t_node("Conv", 2, 1);
    assert_null(node_attr(n, "group"));
    assert_int_equal(node_attr_int(n, "group", 1), 1);
    node_set_int(n, "group", 4);
    assert_int_equal(node_attr_int(n, "group", 1), 4);
    node_set_int(n, "group", 2); /* replace: one attribute, the new value */
    assert_int_equal(n->n_attrs, 1);
    assert_int_equal(node_attr_int(n, "group", 1), 2);

    int64_t pads[4] = {1, 2, 3, 4};
    node_set_ints(n, "pads", pads, 4);
    pads[0] = 99; /* the node holds its own copy */
    const int64_t *got;
    assert_int_equal(node_attr_ints(n, "pads", &got), 4);
    assert_int_equal(got[0], 1);
    assert_int_equal(got[3], 4);
    int64_t fewer[2] = {5, 6};
    node_set_ints(n, "pads", fewer, 2);
    assert_int_equal(node_attr_ints(n, "pads", &got), 2);
    assert_int_equal(got[1], 6);
    node_set_ints(n, "empty", fewer, 0);
    assert_int_equal(node_attr_ints(n, "empty", &got), 0);

    /* a replacement may change the type; getters of another type give the default */
    node_set_str(n, "group", "depthwise");
    assert_int_equal(n->n_attrs, 3);
    assert_int_equal(node_attr_int(n, "group", -7), -7);
    assert_string_equal(node_attr_str(n, "group", NULL), "depthwise");
    assert_int_equal(node_attr_ints(n, "group", &got), -1);
    assert_string_equal(node_attr_str(n, "missing", "dflt"), "dflt");

    node_set_float(n, "alpha", 0.5f);
    assert_float_equal(node_attr_float(n, "alpha", 0), 0.5f, 0);
    node_set_int(n, "beta", 3); /* an int reads as a float */
    assert_float_equal(node_attr_float(n, "beta", 0), 3.0f, 0);
    assert_float_equal(node_attr_float(n, "group", -1), -1.0f, 0);

    float sc[3] = {0.5f, 1.5f, 2.5f};
    node_set_floats(n, "scales", sc, 3);
    const float *fs;
    assert_int_equal(node_attr_floats(n, "scales", &fs), 3);
    assert_float_equal(fs[2], 2.5f, 0);
    assert_int_equal(node_attr_floats(n, "pads", &fs), -1);

    Shape s = shape_of(1, (int64_t)2);
    float a[2] = {1, 2}, b[2] = {3, 4};
    node_set_tensor(n, "value", t_f32(&s, a));
    node_set_tensor(n, "value", t_f32(&s, b)); /* the old tensor is freed (ASan) */
    const Attr *t = node_attr(n, "value");
    assert_int_equal(t->type, ATTR_TENSOR);
    assert_float_equal(tensor_f32(t->t)[0], 3.0f, 0);

    /* attr_copy is deep */
    Attr copy;
    assert_int_equal(attr_copy(&copy, node_attr(n, "pads")), 0);
    copy.ints[0] = 1000;
    assert_int_equal(node_attr_ints(n, "pads", &got), 2);
    assert_int_equal(got[0], 5);
    attr_done(&copy);
    t_node_free(n);
}

/* ---- metadata and naming --------------------------------------------------------- */

static void test_meta_set_get_replace(void **state)
{
    (void)state;
    Graph *g = graph_new();
    assert_null(graph_get_meta(g, "k"));
    graph_set_meta(g, "k", "1");
    graph_set_meta(g, "j", "2");
    graph_set_meta(g, "k", "3");
    assert_int_equal(g->n_meta, 2);
    assert_string_equal(graph_get_meta(g, "k"), "3");
    assert_string_equal(graph_get_meta(g, "j"), "2");
    graph_free(g);
}

static void test_remove_nodes_keeps_order_and_producers(void **state)
{
    (void)state;
    static const int order[] = {0, 1, 2, 3, 4};
    Graph *g = shuffled_graph(order);
    bool remove[5] = {false, true, false, false, true};
    graph_remove_nodes(g, remove);
    assert_int_equal(g->n_nodes, 3);
    assert_string_equal(g->nodes[0].name, "A");
    assert_string_equal(g->nodes[1].name, "C");
    assert_string_equal(g->nodes[2].name, "D");
    assert_int_equal(g->values[graph_find_value(g, "d")].producer, 2);
    assert_int_equal(g->values[graph_find_value(g, "b")].producer, -1);
    assert_int_equal(g->values[graph_find_value(g, "e")].producer, -1);
    graph_free(g);
}

static void test_name_nodes_fills_only_missing_names(void **state)
{
    (void)state;
    Graph *g = graph_new();
    Shape s = shape_of(1, (int64_t)2);
    int x = graph_add_input(g, "x", SH_F32, &s);
    int y = graph_value(g, "y"), z = graph_value(g, "z");
    graph_add_node(g, "Relu", "keep", 1, &x, 1, &y);
    graph_add_node(g, "Neg", "", 1, &y, 1, &z);
    graph_name_nodes(g);
    assert_string_equal(g->nodes[0].name, "keep");
    assert_string_equal(g->nodes[1].name, "Neg_1");
    graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_value_by_name_with_many_values),
        cmocka_unit_test(test_find_value_on_empty_graph_is_minus_one),
        cmocka_unit_test(test_graph_value_creates_once),
        cmocka_unit_test(test_new_value_names_are_unique),
        cmocka_unit_test(test_new_value_keeps_long_names_whole_and_unique),
        cmocka_unit_test(test_toposort_orders_shuffled_nodes),
        cmocka_unit_test(test_toposort_counts_a_value_read_twice_by_one_node),
        cmocka_unit_test(test_toposort_keeps_an_ordered_graph_unchanged),
        cmocka_unit_test(test_toposort_cycle_names_a_node_on_the_cycle),
        cmocka_unit_test(test_toposort_self_loop_is_a_cycle),
        cmocka_unit_test(test_value_produced_twice_is_refused),
        cmocka_unit_test(test_node_writing_an_input_or_initializer_is_refused),
        cmocka_unit_test(test_reading_an_undefined_value_is_refused),
        cmocka_unit_test(test_omitted_optional_inputs_are_not_reads),
        cmocka_unit_test(test_bind_ops_names_the_unknown_op_and_node),
        cmocka_unit_test(test_clone_deep_copies_everything),
        cmocka_unit_test(test_clone_runs_like_the_original),
        cmocka_unit_test(test_prune_dead_removes_unused_nodes_and_initializers),
        cmocka_unit_test(test_use_count_counts_readers_and_outputs),
        cmocka_unit_test(test_attributes_get_set_replace),
        cmocka_unit_test(test_meta_set_get_replace),
        cmocka_unit_test(test_remove_nodes_keeps_order_and_producers),
        cmocka_unit_test(test_name_nodes_fills_only_missing_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
