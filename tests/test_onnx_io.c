/* ONNX import and export: a graph built in code survives export -> import
 * with every attribute type, initializer, name, symbolic dim and metadata
 * entry; hand-built protobuf bytes that are wrong in one way each fail
 * with a message naming the thing that is wrong; onnx_load_tensor reads
 * the conformance data's TensorProto files. */
#include "core/error.h"
#include "core/exec.h"
#include "core/onnx.h"
#include "core/util.h"

#include "onnx.pb-c.h"

#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

static char tmp_dir[] = "/tmp/shears-test-onnx-io-XXXXXX";

static int make_tmp_dir(void **state)
{
    (void)state;
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static int remove_tmp_dir(void **state)
{
    (void)state;
    DIR *d = opendir(tmp_dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", tmp_dir, e->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
    return rmdir(tmp_dir);
}

static char *tmp_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", tmp_dir, name);
    unlink(buf);
    return buf;
}

static void assert_msg_has(const char *want)
{
    if (!strstr(sh_errmsg(), want))
        fail_msg("error message '%s' does not mention '%s'", sh_errmsg(), want);
}

/* ---- a graph built in code ---- */

static const float W_VALUES[6] = {0.5f, -1.25f, 3.0f, 1e-7f, -0.0f, 65504.0f};
static const int64_t SHAPE_VALUES[2] = {-1, 2};

/* x [batch,3] + bias[3] -> h; Reshape(h, [-1,2]) -> r; Identity(r) -> y,
 * the Identity carrying one attribute of every type. */
static Graph *build_graph(void)
{
    Graph *g = graph_new();
    g->opset = 13;
    g->ir_version = 7;
    g->name = xstrdup("io_test");
    Shape xs = shape_of(2, (int64_t)-1, (int64_t)3);
    int x = graph_add_input(g, "x", SH_F32, &xs);
    g->values[x].dim_names[0] = xstrdup("batch");

    Shape ws = shape_of(1, (int64_t)3);
    Tensor *w = tensor_new(SH_F32, &ws);
    memcpy(w->data, W_VALUES, 3 * sizeof(float));
    int bias = graph_add_const(g, "bias", w);
    Shape ss = shape_of(1, (int64_t)2);
    Tensor *shape = tensor_new(SH_I64, &ss);
    memcpy(shape->data, SHAPE_VALUES, sizeof SHAPE_VALUES);
    int target = graph_add_const(g, "target", shape);

    int h = graph_value(g, "h"), r = graph_value(g, "r"), y = graph_value(g, "y");
    int add_in[2] = {x, bias}, reshape_in[2] = {h, target};
    graph_add_node(g, "Add", "add_bias", 2, add_in, 1, &h);
    graph_add_node(g, "Reshape", "to_pairs", 2, reshape_in, 1, &r);
    int id = graph_add_node(g, "Identity", "keep_all_attrs", 1, &r, 1, &y);
    graph_add_output(g, y);

    Node *n = &g->nodes[id];
    node_set_float(n, "f", 0.25f);
    node_set_int(n, "i", -1234567890123LL);
    node_set_str(n, "s", "hello, world");
    const int64_t iv[3] = {1, -2, INT64_MAX};
    node_set_ints(n, "is", iv, 3);
    const float fv[2] = {1.5f, -2.5f};
    node_set_floats(n, "fs", fv, 2);
    Shape ts = shape_of(2, (int64_t)2, (int64_t)3);
    Tensor *tv = tensor_new(SH_F32, &ts);
    memcpy(tv->data, W_VALUES, sizeof W_VALUES);
    node_set_tensor(n, "t", tv);
    /* STRINGS has no setter: build the slot as the importer does */
    node_set_ints(n, "ss", iv, 0);
    Attr *a = (Attr *)node_attr(n, "ss");
    free(a->ints);
    a->ints = NULL;
    a->type = ATTR_STRINGS;
    a->n = 2;
    a->strings = xcalloc(3, sizeof *a->strings);
    a->strings[0] = xstrdup("alpha");
    a->strings[1] = xstrdup("");

    graph_set_meta(g, "shears.normalize", "0.2860,0.3530");
    graph_set_meta(g, "author", "test_onnx_io");
    return g;
}

static Graph *round_trip(const Graph *g)
{
    unsigned char *buf;
    size_t n;
    Graph *back = NULL;
    assert_int_equal(onnx_save_buffer(g, &buf, &n), 0);
    int rc = onnx_load_buffer(buf, n, "round trip", &back);
    free(buf);
    if (rc < 0)
        fail_msg("re-import failed: %s", sh_errmsg());
    return back;
}

static const Node *find_node(const Graph *g, const char *name)
{
    for (int i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0)
            return &g->nodes[i];
    fail_msg("no node '%s' after the round trip", name);
    return NULL;
}

static const Tensor *find_const(const Graph *g, const char *name)
{
    int v = graph_find_value(g, name);
    assert_true(v >= 0);
    assert_true(g->values[v].flags & VAL_CONST);
    assert_non_null(g->values[v].data);
    return g->values[v].data;
}

static void test_round_trip_keeps_every_attribute_type(void **state)
{
    (void)state;
    Graph *g = build_graph(), *back = round_trip(g);
    const Node *n = find_node(back, "keep_all_attrs");
    assert_string_equal(n->op_type, "Identity");
    assert_int_equal(n->n_attrs, 7);

    const Attr *a = node_attr(n, "f");
    assert_non_null(a);
    assert_int_equal(a->type, ATTR_FLOAT);
    assert_true(a->f == 0.25f);
    a = node_attr(n, "i");
    assert_int_equal(a->type, ATTR_INT);
    assert_true(a->i == -1234567890123LL);
    a = node_attr(n, "s");
    assert_int_equal(a->type, ATTR_STRING);
    assert_string_equal(a->s, "hello, world");
    a = node_attr(n, "is");
    assert_int_equal(a->type, ATTR_INTS);
    assert_int_equal(a->n, 3);
    assert_true(a->ints[0] == 1 && a->ints[1] == -2 && a->ints[2] == INT64_MAX);
    a = node_attr(n, "fs");
    assert_int_equal(a->type, ATTR_FLOATS);
    assert_int_equal(a->n, 2);
    assert_true(a->floats[0] == 1.5f && a->floats[1] == -2.5f);
    a = node_attr(n, "t");
    assert_int_equal(a->type, ATTR_TENSOR);
    assert_int_equal(a->t->dtype, SH_F32);
    assert_int_equal(a->t->shape.rank, 2);
    assert_int_equal(a->t->shape.d[1], 3);
    assert_memory_equal(a->t->data, W_VALUES, sizeof W_VALUES);
    a = node_attr(n, "ss");
    assert_int_equal(a->type, ATTR_STRINGS);
    assert_int_equal(a->n, 2);
    assert_string_equal(a->strings[0], "alpha");
    assert_string_equal(a->strings[1], "");
    graph_free(g);
    graph_free(back);
}

static void test_round_trip_keeps_initializers_bit_for_bit(void **state)
{
    (void)state;
    Graph *g = build_graph(), *back = round_trip(g);
    const Tensor *w = find_const(back, "bias"), *s = find_const(back, "target");
    assert_int_equal(w->dtype, SH_F32);
    assert_int_equal(w->numel, 3);
    assert_memory_equal(w->data, W_VALUES, 3 * sizeof(float)); /* -0.0f and 1e-7f too */
    assert_int_equal(s->dtype, SH_I64);
    assert_int_equal(s->numel, 2);
    assert_memory_equal(s->data, SHAPE_VALUES, sizeof SHAPE_VALUES);
    graph_free(g);
    graph_free(back);
}

static void test_round_trip_keeps_names_opset_and_metadata(void **state)
{
    (void)state;
    Graph *g = build_graph(), *back = round_trip(g);
    assert_int_equal(back->n_nodes, 3);
    assert_string_equal(find_node(back, "add_bias")->op_type, "Add");
    assert_string_equal(find_node(back, "to_pairs")->op_type, "Reshape");
    assert_int_equal(back->opset, 13);
    assert_true(back->ir_version >= 7);
    assert_string_equal(back->name, "io_test");
    assert_int_equal(back->n_meta, 2);
    assert_string_equal(graph_get_meta(back, "shears.normalize"), "0.2860,0.3530");
    assert_string_equal(graph_get_meta(back, "author"), "test_onnx_io");
    assert_int_equal(back->n_inputs, 1);
    assert_int_equal(back->n_outputs, 1);
    assert_string_equal(back->values[back->outputs[0]].name, "y");
    graph_free(g);
    graph_free(back);
}

static void test_round_trip_keeps_symbolic_batch_name(void **state)
{
    (void)state;
    Graph *g = build_graph(), *back = round_trip(g);
    const Value *x = &back->values[back->inputs[0]];
    assert_string_equal(x->name, "x");
    assert_int_equal(x->dtype, SH_F32);
    assert_int_equal(x->shape.rank, 2);
    assert_true(x->shape.d[0] < 0);
    assert_int_equal(x->shape.d[1], 3);
    assert_non_null(x->dim_names[0]);
    assert_string_equal(x->dim_names[0], "batch");
    graph_free(g);
    graph_free(back);
}

/* Reshape [N,4] -> [-1,2] gives 2N rows: the exported output dim says so
 * in the input's own name for the batch ("N*2"). */
static void test_prepared_output_dims_are_named_after_the_batch(void **state)
{
    (void)state;
    Graph *g = graph_new();
    g->opset = 13;
    Shape xs = shape_of(2, (int64_t)-1, (int64_t)4);
    int x = graph_add_input(g, "x", SH_F32, &xs);
    g->values[x].dim_names[0] = xstrdup("N");
    Shape ss = shape_of(1, (int64_t)2);
    const int64_t pairs[2] = {-1, 2};
    Tensor *t = tensor_new(SH_I64, &ss);
    memcpy(t->data, pairs, sizeof pairs);
    int target = graph_add_const(g, "target", t);
    int y = graph_value(g, "y"), in[2] = {x, target};
    graph_add_node(g, "Reshape", "halves", 2, in, 1, &y);
    graph_add_output(g, y);
    if (graph_prepare(g) < 0)
        fail_msg("prepare: %s", sh_errmsg());
    assert_true(g->values[y].shape.d[0] == -2); /* 2N */

    unsigned char *buf;
    size_t n;
    assert_int_equal(onnx_save_buffer(g, &buf, &n), 0);
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, n, buf);
    assert_non_null(m);
    const Onnx__TensorShapeProto *s = m->graph->output[0]->type->tensor_type->shape;
    assert_int_equal(s->dim[0]->value_case, ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM);
    assert_string_equal(s->dim[0]->dim_param, "N*2");
    assert_int_equal(s->dim[1]->dim_value, 2);
    onnx__model_proto__free_unpacked(m, NULL);
    free(buf);
    graph_free(g);
}

static void test_export_writes_what_onnx_runtime_needs(void **state)
{
    (void)state;
    Graph *g = build_graph();
    unsigned char *buf;
    size_t n;
    assert_int_equal(onnx_save_buffer(g, &buf, &n), 0);
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, n, buf);
    assert_non_null(m);
    assert_true(m->has_ir_version && m->ir_version >= 7); /* opset 13 needs IR 7 */
    assert_int_equal(m->n_opset_import, 1);
    assert_string_equal(m->opset_import[0]->domain, "");
    assert_int_equal(m->opset_import[0]->version, 13);
    assert_int_equal(m->graph->n_initializer, 2);
    for (size_t i = 0; i < m->graph->n_initializer; i++)
        assert_true(m->graph->initializer[i]->has_raw_data);
    assert_int_equal(m->graph->n_input, 1); /* initializers are not inputs */
    assert_int_equal(m->graph->input[0]->type->tensor_type->elem_type, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
    for (size_t i = 0; i < m->graph->n_node; i++)
        for (size_t k = 0; k < m->graph->node[i]->n_attribute; k++)
            assert_true(m->graph->node[i]->attribute[k]->has_type);
    onnx__model_proto__free_unpacked(m, NULL);
    free(buf);
    graph_free(g);
}

static void test_export_leaves_unknown_output_types_out(void **state)
{
    (void)state;
    Graph *g = build_graph();
    g->values[g->outputs[0]].dtype = SH_UNDEF; /* as when shapes wait for input data */
    unsigned char *buf;
    size_t n;
    assert_int_equal(onnx_save_buffer(g, &buf, &n), 0);
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, n, buf);
    assert_non_null(m);
    assert_string_equal(m->graph->output[0]->name, "y");
    assert_null(m->graph->output[0]->type); /* not a guessed float */
    onnx__model_proto__free_unpacked(m, NULL);
    Graph *back = NULL;
    assert_int_equal(onnx_load_buffer(buf, n, "untyped", &back), 0);
    graph_free(back);
    free(buf);
    graph_free(g);
}

static void test_save_refuses_to_replace_a_file(void **state)
{
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "existing.onnx");
    FILE *f = fopen(path, "w");
    fputs("precious", f);
    fclose(f);
    Graph *g = build_graph();
    assert_int_equal(onnx_save(g, path, false), SH_E_IO);
    assert_msg_has("existing.onnx");
    char got[32] = {0};
    f = fopen(path, "r");
    assert_non_null(fgets(got, sizeof got, f));
    fclose(f);
    assert_string_equal(got, "precious");
    assert_int_equal(onnx_save(g, path, true), 0);
    Graph *back = NULL;
    assert_int_equal(onnx_load(path, &back), 0);
    assert_int_equal(back->n_nodes, 3);
    graph_free(back);
    graph_free(g);
}

/* ---- hand-built protobuf models, each wrong in one way ---- */

static void **pool;
static size_t pool_n, pool_cap;

static void *palloc(size_t n)
{
    if (pool_n == pool_cap) {
        pool_cap = pool_cap ? 2 * pool_cap : 64;
        pool = xrealloc(pool, pool_cap * sizeof *pool);
    }
    return pool[pool_n++] = xcalloc(1, n ? n : 1);
}

static char *pstr(const char *s)
{
    return s ? strcpy(palloc(strlen(s) + 1), s) : NULL;
}

static void pool_release(void)
{
    for (size_t i = 0; i < pool_n; i++)
        free(pool[i]);
    free(pool);
    pool = NULL;
    pool_n = pool_cap = 0;
}

static Onnx__ValueInfoProto *pb_value(const char *name, int elem, int rank, const int64_t *dims)
{
    Onnx__ValueInfoProto *v = palloc(sizeof *v);
    onnx__value_info_proto__init(v);
    v->name = pstr(name);
    Onnx__TypeProto *t = palloc(sizeof *t);
    onnx__type_proto__init(t);
    Onnx__TypeProto__Tensor *tt = palloc(sizeof *tt);
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = elem;
    if (rank >= 0) {
        Onnx__TensorShapeProto *s = palloc(sizeof *s);
        onnx__tensor_shape_proto__init(s);
        s->n_dim = (size_t)rank;
        s->dim = palloc(sizeof *s->dim * (size_t)(rank + 1));
        for (int i = 0; i < rank; i++) {
            s->dim[i] = palloc(sizeof *s->dim[i]);
            onnx__tensor_shape_proto__dimension__init(s->dim[i]);
            s->dim[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            s->dim[i]->dim_value = dims[i];
        }
        tt->shape = s;
    }
    t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    t->tensor_type = tt;
    v->type = t;
    return v;
}

static Onnx__TensorProto *pb_floats(const char *name, int64_t n, const float *values)
{
    Onnx__TensorProto *t = palloc(sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = pstr(name);
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->n_dims = 1;
    t->dims = palloc(sizeof *t->dims);
    t->dims[0] = n;
    t->has_raw_data = 1;
    t->raw_data.len = (size_t)n * sizeof(float);
    t->raw_data.data = palloc(t->raw_data.len);
    memcpy(t->raw_data.data, values, t->raw_data.len);
    return t;
}

static Onnx__NodeProto *pb_node(const char *op, const char *name, const char *in0, const char *in1,
                                const char *out)
{
    Onnx__NodeProto *n = palloc(sizeof *n);
    onnx__node_proto__init(n);
    n->op_type = pstr(op);
    n->name = pstr(name);
    n->input = palloc(3 * sizeof *n->input);
    if (in0)
        n->input[n->n_input++] = pstr(in0);
    if (in1)
        n->input[n->n_input++] = pstr(in1);
    n->output = palloc(2 * sizeof *n->output);
    n->output[n->n_output++] = pstr(out);
    n->attribute = palloc(4 * sizeof *n->attribute);
    return n;
}

typedef struct {
    Onnx__ModelProto m;
    Onnx__GraphProto g;
    Onnx__OperatorSetIdProto opset;
    Onnx__OperatorSetIdProto *opsets[1];
    Onnx__NodeProto *nodes[4];
    Onnx__ValueInfoProto *inputs[4], *outputs[4];
    Onnx__TensorProto *inits[4];
} PbModel;

static const int64_t DIM3[1] = {3};
static const float ONE_TWO_THREE[3] = {1, 2, 3};

/* y = x + b with x [3] an input and b [3] an initializer. */
static void pb_model(PbModel *p)
{
    memset(p, 0, sizeof *p);
    onnx__model_proto__init(&p->m);
    onnx__graph_proto__init(&p->g);
    onnx__operator_set_id_proto__init(&p->opset);
    p->m.has_ir_version = 1;
    p->m.ir_version = 8;
    p->opset.domain = pstr("");
    p->opset.has_version = 1;
    p->opset.version = 13;
    p->opsets[0] = &p->opset;
    p->m.n_opset_import = 1;
    p->m.opset_import = p->opsets;
    p->m.graph = &p->g;
    p->g.name = pstr("g");
    p->g.node = p->nodes;
    p->g.input = p->inputs;
    p->g.output = p->outputs;
    p->g.initializer = p->inits;
    p->inputs[p->g.n_input++] = pb_value("x", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 1, DIM3);
    p->inits[p->g.n_initializer++] = pb_floats("b", 3, ONE_TWO_THREE);
    p->nodes[p->g.n_node++] = pb_node("Add", "plus", "x", "b", "y");
    p->outputs[p->g.n_output++] = pb_value("y", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 1, DIM3);
}

/* Packs p and imports it; returns the load's code (the graph is freed). */
static int pb_load(PbModel *p)
{
    size_t n = onnx__model_proto__get_packed_size(&p->m);
    uint8_t *buf = xmalloc(n + 1);
    onnx__model_proto__pack(&p->m, buf);
    Graph *g = NULL;
    int rc = onnx_load_buffer(buf, n, "hand.onnx", &g);
    free(buf);
    graph_free(g);
    pool_release();
    return rc;
}

static void test_hand_built_model_loads(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    assert_int_equal(pb_load(&p), 0);
}

static void test_import_fails_naming_a_node_without_op_type(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    p.nodes[0]->op_type = pstr("");
    assert_int_equal(pb_load(&p), SH_E_FORMAT);
    assert_msg_has("hand.onnx: node 0 has no op_type");
}

static void test_import_fails_naming_an_unknown_op(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    p.nodes[0]->op_type = pstr("FooBar");
    assert_int_equal(pb_load(&p), SH_E_UNSUPPORTED);
    assert_msg_has("hand.onnx");
    assert_msg_has("'plus'");
    assert_msg_has("FooBar");
}

static void test_import_fails_naming_an_op_of_another_domain(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    p.nodes[0]->domain = pstr("com.example");
    assert_int_equal(pb_load(&p), SH_E_UNSUPPORTED);
    assert_msg_has("com.example");
    assert_msg_has("'plus'");
}

static void test_import_fails_naming_the_opset(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    p.opset.version = 99;
    assert_int_equal(pb_load(&p), SH_E_UNSUPPORTED);
    assert_msg_has("opset 99");
}

static void test_import_fails_naming_an_initializer_without_name(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    p.inits[0]->name = pstr("");
    assert_int_equal(pb_load(&p), SH_E_FORMAT);
    assert_msg_has("initializer 0 has no name");
}

static void test_import_fails_naming_a_twice_defined_initializer(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    p.inits[p.g.n_initializer++] = pb_floats("b", 3, ONE_TWO_THREE);
    assert_int_equal(pb_load(&p), SH_E_FORMAT);
    assert_msg_has("initializer 'b' is defined twice");
}

static void test_import_fails_naming_short_raw_data(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    p.inits[0]->raw_data.len = 11;
    assert_int_equal(pb_load(&p), SH_E_FORMAT);
    assert_msg_has("initializer 'b'");
    assert_msg_has("11 bytes");
}

static void test_import_fails_naming_a_negative_dim(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    p.inits[0]->dims[0] = -3;
    assert_int_equal(pb_load(&p), SH_E_FORMAT);
    assert_msg_has("initializer 'b'");
    assert_msg_has("negative dimension -3");
}

static void test_import_fails_naming_an_overflowing_shape(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    Onnx__TensorProto *t = p.inits[0];
    t->n_dims = 4;
    t->dims = palloc(4 * sizeof *t->dims);
    for (int i = 0; i < 4; i++)
        t->dims[i] = INT64_C(1) << 40;
    assert_int_equal(pb_load(&p), SH_E_FORMAT);
    assert_msg_has("initializer 'b'");
    assert_msg_has("overflows");
}

/* The data present is checked against the shape before allocating: a few
 * bytes claiming 2^61 elements are refused as corrupt, not out of memory. */
static void test_import_checks_data_before_allocating(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    Onnx__TensorProto *t = p.inits[0];
    t->has_raw_data = 0;
    t->n_dims = 2;
    t->dims = palloc(2 * sizeof *t->dims);
    t->dims[0] = INT64_C(1) << 31;
    t->dims[1] = INT64_C(1) << 30;
    assert_int_equal(pb_load(&p), SH_E_FORMAT);
    assert_msg_has("initializer 'b': holds 0 values");
}

static void test_import_fails_naming_an_external_initializer(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    p.inits[0]->has_data_location = 1;
    p.inits[0]->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    assert_int_equal(pb_load(&p), SH_E_UNSUPPORTED);
    assert_msg_has("initializer 'b'");
    assert_msg_has("external");
}

static void test_import_fails_naming_a_float64_initializer(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    p.inits[0]->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE;
    p.inits[0]->raw_data.len = 24;
    p.inits[0]->raw_data.data = palloc(24);
    assert_int_equal(pb_load(&p), SH_E_UNSUPPORTED);
    assert_msg_has("initializer 'b'");
    assert_msg_has("float64");
}

static void test_import_fails_naming_an_input_without_shape(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    p.inputs[0] = pb_value("x", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, -1, NULL);
    assert_int_equal(pb_load(&p), SH_E_UNSUPPORTED);
    assert_msg_has("input 'x' has no shape");
}

static void test_import_fails_naming_a_string_input(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    p.inputs[0] = pb_value("x", ONNX__TENSOR_PROTO__DATA_TYPE__STRING, 1, DIM3);
    assert_int_equal(pb_load(&p), SH_E_UNSUPPORTED);
    assert_msg_has("input 'x'");
    assert_msg_has("string");
}

static void test_import_fails_naming_a_sequence_value(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    p.inputs[0]->type->value_case = ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE;
    Onnx__TypeProto__Sequence *seq = palloc(sizeof *seq);
    onnx__type_proto__sequence__init(seq);
    p.inputs[0]->type->sequence_type = seq;
    assert_int_equal(pb_load(&p), SH_E_UNSUPPORTED);
    assert_msg_has("value 'x' is not a tensor");
}

static void test_import_fails_naming_a_rank_too_high(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    int64_t dims[SH_MAX_RANK + 1];
    for (int i = 0; i <= SH_MAX_RANK; i++)
        dims[i] = 1;
    p.inputs[0] = pb_value("x", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, SH_MAX_RANK + 1, dims);
    assert_int_equal(pb_load(&p), SH_E_UNSUPPORTED);
    assert_msg_has("value 'x' has rank 9");
}

static void test_import_fails_naming_a_subgraph_node(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    Onnx__NodeProto *n = pb_node("Identity", "with_body", "y", NULL, "z");
    Onnx__AttributeProto *a = palloc(sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = pstr("body");
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH;
    a->g = palloc(sizeof *a->g);
    onnx__graph_proto__init(a->g);
    n->attribute[n->n_attribute++] = a;
    p.nodes[p.g.n_node++] = n;
    assert_int_equal(pb_load(&p), SH_E_UNSUPPORTED);
    assert_msg_has("node 'with_body'");
    assert_msg_has("subgraph");
}

static void test_import_fails_naming_a_loop_node(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    p.nodes[0]->op_type = pstr("Loop");
    assert_int_equal(pb_load(&p), SH_E_UNSUPPORTED);
    assert_msg_has("node 'plus' is Loop");
}

static void test_import_fails_naming_a_value_produced_twice(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    p.nodes[p.g.n_node++] = pb_node("Relu", "again", "x", NULL, "y");
    assert_int_equal(pb_load(&p), SH_E_FORMAT);
    assert_msg_has("value 'y' is produced more than once");
}

static void test_import_fails_naming_an_unprovided_value(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    p.nodes[0]->input[1] = pstr("ghost");
    assert_int_equal(pb_load(&p), SH_E_FORMAT);
    assert_msg_has("'plus'");
    assert_msg_has("'ghost'");
}

static void test_import_fails_naming_an_input_declared_twice(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    p.inputs[p.g.n_input++] = pb_value("x", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 1, DIM3);
    assert_int_equal(pb_load(&p), SH_E_FORMAT);
    assert_msg_has("input 'x' is declared twice");
}

/* A graph output that is also the input keeps the input's type: the
 * output's float64 declaration used to make the input untyped. */
static void test_output_declaration_does_not_retype_an_input(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    const int64_t five[1] = {5};
    p.outputs[p.g.n_output++] = pb_value("x", ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE, 1, five);
    size_t n = onnx__model_proto__get_packed_size(&p.m);
    uint8_t *buf = xmalloc(n);
    onnx__model_proto__pack(&p.m, buf);
    pool_release();
    Graph *g = NULL;
    assert_int_equal(onnx_load_buffer(buf, n, "hand.onnx", &g), 0);
    free(buf);
    const Value *x = &g->values[g->inputs[0]];
    assert_int_equal(x->dtype, SH_F32);
    assert_int_equal(x->shape.rank, 1);
    assert_int_equal(x->shape.d[0], 3);
    Graph *back = round_trip(g);
    assert_int_equal(back->values[back->inputs[0]].dtype, SH_F32);
    graph_free(back);
    graph_free(g);
}

/* IR < 4 lists initializers among the inputs; their declaration there
 * does not change the initializer's type or shape. */
static void test_initializer_listed_as_input_keeps_its_shape(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    p.m.ir_version = 3;
    const int64_t six[2] = {2, 3};
    p.inputs[p.g.n_input++] = pb_value("b", ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE, 2, six);
    size_t n = onnx__model_proto__get_packed_size(&p.m);
    uint8_t *buf = xmalloc(n);
    onnx__model_proto__pack(&p.m, buf);
    pool_release();
    Graph *g = NULL;
    assert_int_equal(onnx_load_buffer(buf, n, "hand.onnx", &g), 0);
    free(buf);
    assert_int_equal(g->n_inputs, 1);
    const Value *b = &g->values[graph_find_value(g, "b")];
    assert_int_equal(b->dtype, SH_F32);
    assert_int_equal(b->shape.rank, 1);
    assert_int_equal(b->shape.d[0], 3);
    graph_free(g);
}

static void test_import_fails_naming_a_cycle(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    p.nodes[0]->input[1] = pstr("z");
    p.nodes[p.g.n_node++] = pb_node("Relu", "back_edge", "y", NULL, "z");
    assert_int_equal(pb_load(&p), SH_E_FORMAT);
    assert_msg_has("cycle through node");
}

static void test_import_fails_on_a_graph_without_outputs(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    p.g.n_output = 0;
    assert_int_equal(pb_load(&p), SH_E_FORMAT);
    assert_msg_has("hand.onnx: the graph has no outputs");
}

static void test_import_fails_on_a_model_without_graph(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    p.m.graph = NULL;
    assert_int_equal(pb_load(&p), SH_E_FORMAT);
    assert_msg_has("hand.onnx: not an ONNX model");
}

static void test_import_fails_on_truncated_and_empty_bytes(void **state)
{
    (void)state;
    PbModel p;
    pb_model(&p);
    size_t n = onnx__model_proto__get_packed_size(&p.m);
    uint8_t *buf = xmalloc(n);
    onnx__model_proto__pack(&p.m, buf);
    pool_release();
    Graph *g = NULL;
    assert_int_equal(onnx_load_buffer(buf, n / 2, "cut.onnx", &g), SH_E_FORMAT);
    assert_null(g);
    assert_msg_has("cut.onnx: not an ONNX model");
    assert_int_equal(onnx_load_buffer(buf, 0, "empty.onnx", &g), SH_E_FORMAT);
    assert_msg_has("empty.onnx: file is empty");
    free(buf);
}

/* ---- onnx_load_tensor ---- */

static void write_tensor_file(const char *path, const Onnx__TensorProto *t)
{
    size_t n = onnx__tensor_proto__get_packed_size(t);
    uint8_t *buf = xmalloc(n + 1);
    onnx__tensor_proto__pack(t, buf);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, n, f), n);
    fclose(f);
    free(buf);
}

static void test_load_tensor_reads_raw_floats_and_the_name(void **state)
{
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "floats.pb");
    write_tensor_file(path, pb_floats("input_x", 3, ONE_TWO_THREE));
    pool_release();
    Tensor *t = NULL;
    char *name = NULL;
    assert_int_equal(onnx_load_tensor(path, &t, &name), 0);
    assert_string_equal(name, "input_x");
    assert_int_equal(t->dtype, SH_F32);
    assert_int_equal(t->numel, 3);
    assert_memory_equal(t->data, ONE_TWO_THREE, sizeof ONE_TWO_THREE);
    tensor_free(t);
    free(name);
}

static void test_load_tensor_widens_int32_to_int64(void **state)
{
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "int32.pb");
    Onnx__TensorProto t;
    onnx__tensor_proto__init(&t);
    int64_t dims[2] = {2, 2};
    int32_t values[4] = {-7, 0, 7, INT32_MAX};
    t.has_data_type = 1;
    t.data_type = ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
    t.n_dims = 2;
    t.dims = dims;
    t.n_int32_data = 4;
    t.int32_data = values;
    write_tensor_file(path, &t);
    Tensor *out = NULL;
    assert_int_equal(onnx_load_tensor(path, &out, NULL), 0);
    assert_int_equal(out->dtype, SH_I64);
    assert_int_equal(out->shape.rank, 2);
    assert_true(tensor_i64(out)[0] == -7 && tensor_i64(out)[3] == INT32_MAX);
    tensor_free(out);
}

static void test_load_tensor_fails_naming_the_file(void **state)
{
    (void)state;
    char path[512];
    Tensor *t = NULL;
    char *name = NULL;
    tmp_path(path, sizeof path, "missing.pb");
    assert_int_equal(onnx_load_tensor(path, &t, &name), SH_E_IO);
    assert_msg_has("missing.pb");
    assert_null(t);
    assert_null(name);

    tmp_path(path, sizeof path, "garbage.pb");
    FILE *f = fopen(path, "wb");
    fputs("\xff\xff\xff\xff garbage", f);
    fclose(f);
    assert_int_equal(onnx_load_tensor(path, &t, &name), SH_E_FORMAT);
    assert_msg_has("garbage.pb");

    tmp_path(path, sizeof path, "short.pb");
    Onnx__TensorProto *bad = pb_floats("short", 3, ONE_TWO_THREE);
    bad->raw_data.len = 8;
    write_tensor_file(path, bad);
    pool_release();
    assert_int_equal(onnx_load_tensor(path, &t, &name), SH_E_FORMAT);
    assert_msg_has("short.pb");
    assert_msg_has("8 bytes");
    assert_null(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_keeps_every_attribute_type),
        cmocka_unit_test(test_round_trip_keeps_initializers_bit_for_bit),
        cmocka_unit_test(test_round_trip_keeps_names_opset_and_metadata),
        cmocka_unit_test(test_round_trip_keeps_symbolic_batch_name),
        cmocka_unit_test(test_prepared_output_dims_are_named_after_the_batch),
        cmocka_unit_test(test_export_writes_what_onnx_runtime_needs),
        cmocka_unit_test(test_export_leaves_unknown_output_types_out),
        cmocka_unit_test(test_save_refuses_to_replace_a_file),
        cmocka_unit_test(test_hand_built_model_loads),
        cmocka_unit_test(test_import_fails_naming_a_node_without_op_type),
        cmocka_unit_test(test_import_fails_naming_an_unknown_op),
        cmocka_unit_test(test_import_fails_naming_an_op_of_another_domain),
        cmocka_unit_test(test_import_fails_naming_the_opset),
        cmocka_unit_test(test_import_fails_naming_an_initializer_without_name),
        cmocka_unit_test(test_import_fails_naming_a_twice_defined_initializer),
        cmocka_unit_test(test_import_fails_naming_short_raw_data),
        cmocka_unit_test(test_import_fails_naming_a_negative_dim),
        cmocka_unit_test(test_import_fails_naming_an_overflowing_shape),
        cmocka_unit_test(test_import_checks_data_before_allocating),
        cmocka_unit_test(test_import_fails_naming_an_external_initializer),
        cmocka_unit_test(test_import_fails_naming_a_float64_initializer),
        cmocka_unit_test(test_import_fails_naming_an_input_without_shape),
        cmocka_unit_test(test_import_fails_naming_a_string_input),
        cmocka_unit_test(test_import_fails_naming_a_sequence_value),
        cmocka_unit_test(test_import_fails_naming_a_rank_too_high),
        cmocka_unit_test(test_import_fails_naming_a_subgraph_node),
        cmocka_unit_test(test_import_fails_naming_a_loop_node),
        cmocka_unit_test(test_import_fails_naming_a_value_produced_twice),
        cmocka_unit_test(test_import_fails_naming_an_unprovided_value),
        cmocka_unit_test(test_import_fails_naming_an_input_declared_twice),
        cmocka_unit_test(test_output_declaration_does_not_retype_an_input),
        cmocka_unit_test(test_initializer_listed_as_input_keeps_its_shape),
        cmocka_unit_test(test_import_fails_naming_a_cycle),
        cmocka_unit_test(test_import_fails_on_a_graph_without_outputs),
        cmocka_unit_test(test_import_fails_on_a_model_without_graph),
        cmocka_unit_test(test_import_fails_on_truncated_and_empty_bytes),
        cmocka_unit_test(test_load_tensor_reads_raw_floats_and_the_name),
        cmocka_unit_test(test_load_tensor_widens_int32_to_int64),
        cmocka_unit_test(test_load_tensor_fails_naming_the_file),
    };
    return cmocka_run_group_tests(tests, make_tmp_dir, remove_tmp_dir);
}
