/* Writes the small models and data files of tests/bad/ (committed; this
 * tool documents how each was made and can regenerate them):
 *
 *   mkbad DIR
 *
 * Models are built directly as ONNX protobuf structs so that they can be
 * wrong in ways shears' own Graph cannot express (an unknown op, opset 99,
 * external data, float64 weights, a subgraph). See tests/bad/README.md for
 * what each file is and what shears must say about it. */
#include "core/error.h"
#include "core/npy.h"
#include "core/tensor.h"

#include "onnx.pb-c.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every allocation goes to one pool, freed at exit. */
static void **pool;
static size_t pool_n, pool_cap;

static void *alloc(size_t n)
{
    if (pool_n == pool_cap) {
        pool_cap = pool_cap ? 2 * pool_cap : 256;
        pool = realloc(pool, pool_cap * sizeof *pool);
        if (!pool)
            abort();
    }
    void *p = calloc(1, n ? n : 1);
    if (!p)
        abort();
    return pool[pool_n++] = p;
}

static char *str(const char *s)
{
    char *d = alloc(strlen(s) + 1);
    strcpy(d, s);
    return d;
}

static const char *out_dir;
static int failures;

static void write_bytes(const char *name, const void *data, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        fprintf(stderr, "mkbad: cannot write %s\n", path);
        failures++;
    }
}

/* ---- protobuf builders ---- */

/* A graph input/output; dims < 0 become the symbolic dim "N". */
static Onnx__ValueInfoProto *value(const char *name, int elem, int rank, const int64_t *dims)
{
    Onnx__ValueInfoProto *v = alloc(sizeof *v);
    onnx__value_info_proto__init(v);
    v->name = str(name);
    Onnx__TypeProto *t = alloc(sizeof *t);
    onnx__type_proto__init(t);
    Onnx__TypeProto__Tensor *tt = alloc(sizeof *tt);
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = elem;
    Onnx__TensorShapeProto *s = alloc(sizeof *s);
    onnx__tensor_shape_proto__init(s);
    s->n_dim = (size_t)rank;
    s->dim = alloc(sizeof *s->dim * (size_t)(rank + 1));
    for (int i = 0; i < rank; i++) {
        Onnx__TensorShapeProto__Dimension *d = alloc(sizeof *d);
        onnx__tensor_shape_proto__dimension__init(d);
        if (dims[i] >= 0) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i];
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = str("N");
        }
        s->dim[i] = d;
    }
    tt->shape = s;
    t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    t->tensor_type = tt;
    v->type = t;
    return v;
}

static Onnx__TensorProto *tensor(const char *name, int elem, int rank, const int64_t *dims)
{
    Onnx__TensorProto *t = alloc(sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = str(name);
    t->has_data_type = 1;
    t->data_type = elem;
    t->n_dims = (size_t)rank;
    t->dims = alloc(sizeof *t->dims * (size_t)(rank + 1));
    memcpy(t->dims, dims, sizeof *t->dims * (size_t)rank);
    return t;
}

/* A float initializer with values 0.01 * (i % 7) - 0.03, stored as raw data. */
static Onnx__TensorProto *weights(const char *name, int rank, const int64_t *dims)
{
    Onnx__TensorProto *t = tensor(name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, rank, dims);
    size_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= (size_t)dims[i];
    float *v = alloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = 0.01f * (float)(i % 7) - 0.03f;
    t->has_raw_data = 1;
    t->raw_data.data = (uint8_t *)v;
    t->raw_data.len = n * sizeof *v;
    return t;
}

static Onnx__TensorProto *ints(const char *name, int n, const int64_t *values)
{
    int64_t dims[1] = {n};
    Onnx__TensorProto *t = tensor(name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, dims);
    t->n_int64_data = (size_t)n;
    t->int64_data = alloc(sizeof *t->int64_data * (size_t)(n + 1));
    memcpy(t->int64_data, values, sizeof *values * (size_t)n);
    return t;
}

static Onnx__NodeProto *node(Onnx__GraphProto *g, const char *op, const char *name, const char *in0,
                             const char *in1, const char *in2, const char *out)
{
    Onnx__NodeProto *n = alloc(sizeof *n);
    onnx__node_proto__init(n);
    n->op_type = str(op);
    n->name = str(name);
    const char *ins[3] = {in0, in1, in2};
    n->input = alloc(4 * sizeof *n->input);
    for (int i = 0; i < 3 && ins[i]; i++)
        n->input[n->n_input++] = str(ins[i]);
    n->n_output = 1;
    n->output = alloc(2 * sizeof *n->output);
    n->output[0] = str(out);
    n->attribute = alloc(8 * sizeof *n->attribute);
    g->node[g->n_node++] = n;
    return n;
}

static void attr_ints(Onnx__NodeProto *n, const char *name, int count, const int64_t *v)
{
    Onnx__AttributeProto *a = alloc(sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = str(name);
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    a->n_ints = (size_t)count;
    a->ints = alloc(sizeof *a->ints * (size_t)(count + 1));
    memcpy(a->ints, v, sizeof *v * (size_t)count);
    n->attribute[n->n_attribute++] = a;
}

static void attr_graph(Onnx__NodeProto *n, const char *name, Onnx__GraphProto *sub)
{
    Onnx__AttributeProto *a = alloc(sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = str(name);
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH;
    a->g = sub;
    n->attribute[n->n_attribute++] = a;
}

static Onnx__GraphProto *graph(const char *name)
{
    Onnx__GraphProto *g = alloc(sizeof *g);
    onnx__graph_proto__init(g);
    g->name = str(name);
    g->node = alloc(8 * sizeof *g->node);
    g->input = alloc(8 * sizeof *g->input);
    g->output = alloc(8 * sizeof *g->output);
    g->initializer = alloc(8 * sizeof *g->initializer);
    return g;
}

static void add_input(Onnx__GraphProto *g, Onnx__ValueInfoProto *v) { g->input[g->n_input++] = v; }
static void add_output(Onnx__GraphProto *g, Onnx__ValueInfoProto *v) { g->output[g->n_output++] = v; }
static void add_init(Onnx__GraphProto *g, Onnx__TensorProto *t) { g->initializer[g->n_initializer++] = t; }

/* Packs a model; *n receives the size. */
static uint8_t *pack(Onnx__GraphProto *g, int64_t opset, size_t *n)
{
    Onnx__ModelProto m;
    onnx__model_proto__init(&m);
    m.has_ir_version = 1;
    m.ir_version = 8;
    m.producer_name = str("shears mkbad");
    Onnx__OperatorSetIdProto *op = alloc(sizeof *op);
    onnx__operator_set_id_proto__init(op);
    op->domain = str("");
    op->has_version = 1;
    op->version = opset;
    m.n_opset_import = 1;
    m.opset_import = alloc(sizeof *m.opset_import);
    m.opset_import[0] = op;
    m.graph = g;
    *n = onnx__model_proto__get_packed_size(&m);
    uint8_t *buf = alloc(*n);
    onnx__model_proto__pack(&m, buf);
    return buf;
}

static void write_model(const char *name, Onnx__GraphProto *g, int64_t opset)
{
    size_t n;
    uint8_t *buf = pack(g, opset, &n);
    write_bytes(name, buf, n);
}

/* ---- the models ---- */

static const int64_t X_DIMS[4] = {-1, 3, 8, 8};

/* x [N,3,8,8] -> Conv(4 filters 3x3, pad 1) -> Relu -> y [N,4,8,8]. */
static Onnx__GraphProto *conv_relu(const char *op, int64_t w_channels)
{
    Onnx__GraphProto *g = graph("conv_relu");
    int64_t wd[4] = {4, w_channels, 3, 3}, bd[1] = {4}, yd[4] = {-1, 4, 8, 8};
    int64_t pads[4] = {1, 1, 1, 1}, kernel[2] = {3, 3};
    add_input(g, value("x", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 4, X_DIMS));
    add_init(g, weights("conv.weight", 4, wd));
    add_init(g, weights("conv.bias", 1, bd));
    Onnx__NodeProto *c = node(g, "Conv", "conv", "x", "conv.weight", "conv.bias", "h");
    attr_ints(c, "pads", 4, pads);
    attr_ints(c, "kernel_shape", 2, kernel);
    node(g, op, "act", "h", NULL, NULL, "y");
    add_output(g, value("y", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 4, yd));
    return g;
}

static void make_models(void)
{
    size_t n;
    write_model("good.onnx", conv_relu("Relu", 3), 13);

    /* The good model cut in half. */
    uint8_t *good = pack(conv_relu("Relu", 3), 13, &n);
    write_bytes("truncated.onnx", good, n / 2);

    write_model("unknown_op.onnx", conv_relu("FooBar", 3), 13);
    write_model("opset99.onnx", conv_relu("Relu", 3), 99);
    write_model("conv_channels.onnx", conv_relu("Relu", 2), 13);

    /* Reshape of [N,3,8,8] (192 per sample) to [-1,5,7]. */
    Onnx__GraphProto *g = graph("reshape");
    int64_t target[3] = {-1, 5, 7}, yd[3] = {-1, 5, 7};
    add_input(g, value("x", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 4, X_DIMS));
    add_init(g, ints("target", 3, target));
    node(g, "Reshape", "reshape", "x", "target", NULL, "y");
    add_output(g, value("y", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 3, yd));
    write_model("reshape_impossible.onnx", g, 13);

    /* Add of [3] and [4]. */
    g = graph("add");
    int64_t d3[1] = {3}, d4[1] = {4};
    add_input(g, value("a", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 1, d3));
    add_input(g, value("b", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 1, d4));
    node(g, "Add", "add", "a", "b", NULL, "y");
    add_output(g, value("y", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 1, d4));
    write_model("add_mismatch.onnx", g, 13);

    /* A NaN in the Conv bias. */
    g = conv_relu("Relu", 3);
    ((float *)g->initializer[1]->raw_data.data)[2] = NAN;
    write_model("nan_weight.onnx", g, 13);

    /* The Conv weight stored in an external file. */
    g = conv_relu("Relu", 3);
    Onnx__TensorProto *w = g->initializer[0];
    w->has_raw_data = 0;
    w->has_data_location = 1;
    w->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    Onnx__StringStringEntryProto *loc = alloc(sizeof *loc);
    onnx__string_string_entry_proto__init(loc);
    loc->key = str("location");
    loc->value = str("weights.bin");
    w->n_external_data = 1;
    w->external_data = alloc(sizeof *w->external_data);
    w->external_data[0] = loc;
    write_model("external_data.onnx", g, 13);

    /* The Conv bias as float64. */
    g = conv_relu("Relu", 3);
    Onnx__TensorProto *b = g->initializer[1];
    static double bias64[4] = {0.1, 0.2, 0.3, 0.4};
    b->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE;
    b->raw_data.data = (uint8_t *)bias64;
    b->raw_data.len = sizeof bias64;
    write_model("float64_weight.onnx", g, 13);

    /* y = If(cond) then x else -x. */
    g = graph("if");
    int64_t one[1] = {1};
    add_input(g, value("cond", ONNX__TENSOR_PROTO__DATA_TYPE__BOOL, 0, NULL));
    add_input(g, value("x", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 1, one));
    Onnx__GraphProto *then_g = graph("then"), *else_g = graph("else");
    node(then_g, "Identity", "then_id", "x", NULL, NULL, "t");
    add_output(then_g, value("t", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 1, one));
    node(else_g, "Neg", "else_neg", "x", NULL, NULL, "e");
    add_output(else_g, value("e", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 1, one));
    Onnx__NodeProto *if_node = node(g, "If", "branch", "cond", NULL, NULL, "y");
    attr_graph(if_node, "then_branch", then_g);
    attr_graph(if_node, "else_branch", else_g);
    add_output(g, value("y", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 1, one));
    size_t size;
    uint8_t *buf = pack(g, 13, &size);
    write_bytes("if_node.onnx", buf, size);
}

/* ---- non-models ---- */

static void make_junk(void)
{
    uint8_t bytes[1024];
    uint32_t s = 12345;
    for (size_t i = 0; i < sizeof bytes; i++) {
        s = s * 1103515245u + 12345u;
        bytes[i] = (uint8_t)(s >> 16);
    }
    write_bytes("random.onnx", bytes, sizeof bytes);
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13,
                                  'I', 'H', 'D', 'R', 0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0};
    write_bytes("png.onnx", png, sizeof png);
    static const char text[] = "this is a text file, not a model\n";
    write_bytes("text.onnx", text, strlen(text));
    write_bytes("empty.onnx", "", 0);
}

static void write_npy(const char *name, DType dt, const Shape *s)
{
    char path[4096];
    Tensor t;
    snprintf(path, sizeof path, "%s/%s", out_dir, name);
    if (tensor_alloc(&t, dt, s) < 0 || npy_write(path, &t, true) < 0) {
        fprintf(stderr, "mkbad: %s\n", sh_errmsg());
        failures++;
    }
    tensor_done(&t);
}

static void make_data(void)
{
    Shape good = shape_of(4, (int64_t)1, (int64_t)3, (int64_t)8, (int64_t)8);
    Shape wrong = shape_of(4, (int64_t)1, (int64_t)3, (int64_t)7, (int64_t)8);
    write_npy("x_1x3x8x8.npy", SH_F32, &good);
    write_npy("x_1x3x7x8.npy", SH_F32, &wrong);
    write_npy("x_1x3x8x8_i64.npy", SH_I64, &good);
    /* A data set of 4 images with 3 labels. */
    Shape images = shape_of(4, (int64_t)4, (int64_t)1, (int64_t)3, (int64_t)3);
    Shape labels = shape_of(1, (int64_t)3);
    write_npy("data_x_4.npy", SH_U8, &images);
    write_npy("data_y_3.npy", SH_I64, &labels);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: mkbad DIR\n");
        return 2;
    }
    out_dir = argv[1];
    make_models();
    make_junk();
    make_data();
    for (size_t i = 0; i < pool_n; i++)
        free(pool[i]);
    free(pool);
    return failures ? 1 : 0;
}
