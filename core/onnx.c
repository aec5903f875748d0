/* ONNX <-> Graph. Import keeps node and value names; export writes what
 * ONNX Runtime needs (ir_version, opset imports, typed inputs/outputs,
 * initializers as raw little-endian data). */
#include "onnx.h"

#include "error.h"
#include "exec.h"
#include "fileio.h"
#include "util.h"

#include "onnx.pb-c.h"

#include <stdlib.h>
#include <string.h>

#define MAX_MODEL_BYTES ((size_t)2 << 30)

/* ---- tensors ---- */

static bool int_like(int t)
{
    return t == ONNX__TENSOR_PROTO__DATA_TYPE__INT8 || t == ONNX__TENSOR_PROTO__DATA_TYPE__INT16 ||
           t == ONNX__TENSOR_PROTO__DATA_TYPE__INT32 || t == ONNX__TENSOR_PROTO__DATA_TYPE__UINT16;
}

static const char *onnx_type_name(int t)
{
    static const char *names[] = {"undefined", "float32", "uint8", "int8", "uint16", "int16",
                                  "int32", "int64", "string", "bool", "float16", "float64",
                                  "uint32", "uint64", "complex64", "complex128", "bfloat16"};
    return t >= 0 && t < (int)(sizeof names / sizeof *names) ? names[t] : "unknown";
}

/* Reads element i of a narrow integer type stored in raw_data. */
static int64_t raw_int(const uint8_t *p, int type, int64_t i)
{
    switch (type) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: return ((const int8_t *)p)[i];
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT16: {
        int16_t v;
        memcpy(&v, p + 2 * i, 2);
        return v;
    }
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16: {
        uint16_t v;
        memcpy(&v, p + 2 * i, 2);
        return v;
    }
    default: {
        int32_t v;
        memcpy(&v, p + 4 * i, 4);
        return v;
    }
    }
}

static size_t onnx_elem_size(int t)
{
    switch (t) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT8:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8:
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: return 1;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT16:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16: return 2;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32:
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: return 4;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return 8;
    default: return 0;
    }
}

/* Converts a TensorProto. Integer types narrower than int64 become int64
 * (they only ever serve as indices and shapes). what names the tensor. */
static int tensor_from_proto(const Onnx__TensorProto *tp, const char *what, Tensor **out)
{
    *out = NULL;
    int type = tp->has_data_type ? tp->data_type : 0;
    if (tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return sh_fail(SH_E_UNSUPPORTED,
                       "%s: data is stored in an external file, which shears does not support", what);
    if (tp->segment)
        return sh_fail(SH_E_UNSUPPORTED, "%s: segmented tensors are not supported", what);
    DType dt;
    if (dtype_supported(type))
        dt = (DType)type;
    else if (int_like(type))
        dt = SH_I64;
    else
        return sh_fail(SH_E_UNSUPPORTED, "%s: element type %s is not supported (shears supports float32 weights, int64/bool/uint8 tensors)",
                       what, onnx_type_name(type));
    if (tp->n_dims > SH_MAX_RANK)
        return sh_fail(SH_E_UNSUPPORTED, "%s: rank %zu exceeds %d", what, tp->n_dims, SH_MAX_RANK);
    Shape s = {.rank = (int)tp->n_dims};
    for (size_t i = 0; i < tp->n_dims; i++) {
        if (tp->dims[i] < 0)
            return sh_fail(SH_E_FORMAT, "%s: negative dimension %lld", what, (long long)tp->dims[i]);
        s.d[i] = tp->dims[i];
    }
    int64_t numel = shape_numel(&s);
    if (numel < 0)
        return sh_fail(SH_E_FORMAT, "%s: element count overflows", what);
    /* The data present must match the shape before anything is allocated:
     * a 100-byte file claiming a [100000,100000] initializer made us
     * allocate 40 GB before noticing it had no data (fuzz/fuzz_onnx). */
    size_t esz = onnx_elem_size(type), have;
    if (tp->has_raw_data) {
        int64_t want;
        if (!sh_mul_ok(numel, (int64_t)esz, &want) || (size_t)want != tp->raw_data.len)
            return sh_fail(SH_E_FORMAT, "%s: raw data holds %zu bytes; shape %lld elements of %s need %lld",
                           what, tp->raw_data.len, (long long)numel, onnx_type_name(type),
                           (long long)(numel * (int64_t)esz));
    } else {
        switch (type) {
        case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: have = tp->n_float_data; break;
        case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: have = tp->n_int64_data; break;
        default: have = tp->n_int32_data; break;
        }
        if ((int64_t)have != numel)
            return sh_fail(SH_E_FORMAT, "%s: holds %zu values; shape needs %lld", what, have,
                           (long long)numel);
    }
    Tensor *t = tensor_new(dt, &s);
    if (!t)
        return sh_fail_prefix(SH_E_NOMEM, "%s", what);
    if (tp->has_raw_data && dt == (DType)type) {
        if (numel > 0) /* an empty raw_data may carry a NULL pointer */
            memcpy(t->data, tp->raw_data.data, (size_t)numel * esz);
    } else if (tp->has_raw_data) {
        for (int64_t i = 0; i < numel; i++)
            tensor_i64(t)[i] = raw_int(tp->raw_data.data, type, i);
    } else {
        for (int64_t i = 0; i < numel; i++) {
            switch (type) {
            case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: tensor_f32(t)[i] = tp->float_data[i]; break;
            case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: tensor_i64(t)[i] = tp->int64_data[i]; break;
            case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8:
            case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: tensor_u8(t)[i] = (uint8_t)tp->int32_data[i]; break;
            default: tensor_i64(t)[i] = tp->int32_data[i]; break;
            }
        }
    }
    *out = t;
    return 0;
}

/* ---- value types ---- */

/* Reads name, element type (*elem_type, ONNX number, 0 if absent) and
 * shape of a graph input or output. */
static int read_value_info(Graph *g, const Onnx__ValueInfoProto *vi, const char *origin, int *out,
                           int *elem_type)
{
    *out = -1;
    *elem_type = 0;
    if (!vi->name || !vi->name[0])
        return sh_fail(SH_E_FORMAT, "%s: a graph input or output has no name", origin);
    int v = graph_value(g, vi->name);
    Value *val = &g->values[v];
    *out = v;
    /* An initializer or an input already has its type and shape: another
     * declaration of the name (IR < 4 lists initializers as inputs; an
     * output may be an input) must not change them. An output declared
     * float64 once turned a float32 input into an untyped one, which the
     * exporter then wrote without a type (fuzz/fuzz_onnx). */
    if (val->flags & (VAL_CONST | VAL_INPUT))
        return 0;
    if (!vi->type)
        return 0;
    if (vi->type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE)
        return sh_fail(SH_E_UNSUPPORTED, "%s: value '%s' is not a tensor (sequences, maps and optionals are not supported)",
                       origin, vi->name);
    const Onnx__TypeProto__Tensor *tt = vi->type->tensor_type;
    if (tt->has_elem_type) {
        *elem_type = tt->elem_type;
        val->dtype = dtype_supported(tt->elem_type) ? (DType)tt->elem_type : SH_UNDEF;
    }
    if (!tt->shape)
        return 0;
    if (tt->shape->n_dim > SH_MAX_RANK)
        return sh_fail(SH_E_UNSUPPORTED, "%s: value '%s' has rank %zu, more than %d", origin,
                       vi->name, tt->shape->n_dim, SH_MAX_RANK);
    val->shape.rank = (int)tt->shape->n_dim;
    for (size_t i = 0; i < tt->shape->n_dim; i++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
        val->shape.d[i] = -1;
        if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value >= 0)
            val->shape.d[i] = d->dim_value;
        else if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM) {
            free(val->dim_names[i]);
            val->dim_names[i] = xstrdup(d->dim_param);
        }
    }
    return 0;
}

/* ---- attributes and nodes ---- */

/* Empty lists and strings arrive as NULL arrays, and memcpy from NULL is
 * undefined even for 0 bytes (UBSan, found by fuzz/fuzz_onnx): empty
 * lists point here instead, empty strings are not copied. */
static const int64_t NO_INTS[1];
static const float NO_FLOATS[1];

static int read_attr(Node *n, const Onnx__AttributeProto *ap, const char *origin)
{
    if (!ap->name)
        return sh_fail(SH_E_FORMAT, "%s: node '%s' has an attribute without a name", origin, n->name);
    int type = ap->has_type ? (int)ap->type : 0;
    if (!type) { /* IR < 3 writers omit the type: infer it from the set field */
        if (ap->g || ap->n_graphs)
            type = ATTR_GRAPH;
        else if (ap->t)
            type = ATTR_TENSOR;
        else if (ap->n_ints)
            type = ATTR_INTS;
        else if (ap->n_floats)
            type = ATTR_FLOATS;
        else if (ap->n_strings)
            type = ATTR_STRINGS;
        else if (ap->has_s)
            type = ATTR_STRING;
        else if (ap->has_f)
            type = ATTR_FLOAT;
        else
            type = ATTR_INT;
    }
    switch (type) {
    case ATTR_FLOAT: node_set_float(n, ap->name, ap->f); return 0;
    case ATTR_INT: node_set_int(n, ap->name, ap->i); return 0;
    case ATTR_STRING: {
        char *s = xmalloc(ap->s.len + 1);
        if (ap->s.len) /* an empty string may carry a NULL pointer */
            memcpy(s, ap->s.data, ap->s.len);
        s[ap->s.len] = 0;
        node_set_str(n, ap->name, s);
        free(s);
        return 0;
    }
    case ATTR_INTS:
        if (ap->n_ints > (size_t)INT32_MAX)
            return sh_fail(SH_E_FORMAT, "%s: node '%s' attribute '%s' is too long", origin, n->name, ap->name);
        node_set_ints(n, ap->name, ap->ints ? ap->ints : NO_INTS, (int)ap->n_ints);
        return 0;
    case ATTR_FLOATS:
        if (ap->n_floats > (size_t)INT32_MAX)
            return sh_fail(SH_E_FORMAT, "%s: node '%s' attribute '%s' is too long", origin, n->name, ap->name);
        node_set_floats(n, ap->name, ap->floats ? ap->floats : NO_FLOATS, (int)ap->n_floats);
        return 0;
    case ATTR_TENSOR: {
        Tensor *t;
        char what[512];
        if (!ap->t)
            return sh_fail(SH_E_FORMAT, "%s: node '%s' attribute '%s' has no tensor", origin, n->name, ap->name);
        snprintf(what, sizeof what, "%s: node '%s' attribute '%s'", origin, n->name, ap->name);
        int rc = tensor_from_proto(ap->t, what, &t);
        if (rc < 0)
            return rc;
        node_set_tensor(n, ap->name, t);
        return 0;
    }
    case ATTR_STRINGS: {
        Attr *a;
        node_set_ints(n, ap->name, NO_INTS, 0); /* creates the slot */
        a = (Attr *)node_attr(n, ap->name);
        free(a->ints);
        a->ints = NULL;
        a->type = ATTR_STRINGS;
        a->n = (int)ap->n_strings;
        a->strings = xcalloc(ap->n_strings + 1, sizeof *a->strings);
        for (size_t i = 0; i < ap->n_strings; i++) {
            a->strings[i] = xmalloc(ap->strings[i].len + 1);
            if (ap->strings[i].len)
                memcpy(a->strings[i], ap->strings[i].data, ap->strings[i].len);
            a->strings[i][ap->strings[i].len] = 0;
        }
        return 0;
    }
    case ATTR_GRAPH:
        return sh_fail(SH_E_UNSUPPORTED, "%s: node '%s' (%s) holds a subgraph; control flow (If/Loop/Scan) is not supported",
                       origin, n->name, n->op_type);
    default:
        return sh_fail(SH_E_UNSUPPORTED, "%s: node '%s' attribute '%s' has unsupported type %d",
                       origin, n->name, ap->name, type);
    }
}

static bool is_control_flow(const char *op)
{
    return strcmp(op, "If") == 0 || strcmp(op, "Loop") == 0 || strcmp(op, "Scan") == 0;
}

static int read_node(Graph *g, const Onnx__NodeProto *np, int index, const char *origin)
{
    if (!np->op_type || !np->op_type[0])
        return sh_fail(SH_E_FORMAT, "%s: node %d has no op_type", origin, index);
    const char *name = np->name && np->name[0] ? np->name : NULL;
    if (is_control_flow(np->op_type))
        return sh_fail(SH_E_UNSUPPORTED, "%s: node '%s' is %s; control flow (If/Loop/Scan) is not supported",
                       origin, name ? name : np->op_type, np->op_type);
    if (np->n_input > 4096 || np->n_output > 4096)
        return sh_fail(SH_E_FORMAT, "%s: node %d has too many inputs or outputs", origin, index);
    int *in = xmalloc((np->n_input + 1) * sizeof *in);
    int *out = xmalloc((np->n_output + 1) * sizeof *out);
    for (size_t i = 0; i < np->n_input; i++)
        in[i] = np->input[i] && np->input[i][0] ? graph_value(g, np->input[i]) : -1;
    for (size_t i = 0; i < np->n_output; i++)
        out[i] = np->output[i] && np->output[i][0] ? graph_value(g, np->output[i]) : -1;
    int idx = graph_add_node(g, np->op_type, name ? name : "", (int)np->n_input, in,
                             (int)np->n_output, out);
    free(in);
    free(out);
    Node *n = &g->nodes[idx];
    if (np->domain && np->domain[0])
        n->domain = xstrdup(np->domain);
    for (size_t a = 0; a < np->n_attribute; a++) {
        int rc = read_attr(n, np->attribute[a], origin);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- model ---- */

static int read_opset(Graph *g, const Onnx__ModelProto *m, const char *origin)
{
    g->opset = 0;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *op = m->opset_import[i];
        if (!op->domain || !op->domain[0] || strcmp(op->domain, "ai.onnx") == 0)
            g->opset = (int)op->version;
    }
    if (m->n_opset_import == 0)
        g->opset = 1; /* IR version 1-2 models without opset_import */
    if (g->opset < SH_OPSET_MIN || g->opset > SH_OPSET_MAX)
        return sh_fail(SH_E_UNSUPPORTED, "%s: opset %d is outside the range shears supports (%d-%d)",
                       origin, g->opset, SH_OPSET_MIN, SH_OPSET_MAX);
    return 0;
}

static int read_graph(Graph *g, const Onnx__GraphProto *gp, const char *origin)
{
    int rc, v, et;
    g->name = xstrdup(gp->name);
    if (gp->n_sparse_initializer)
        return sh_fail(SH_E_UNSUPPORTED, "%s: sparse initializers are not supported", origin);
    for (size_t i = 0; i < gp->n_initializer; i++) {
        const Onnx__TensorProto *tp = gp->initializer[i];
        char what[512];
        Tensor *t;
        if (!tp->name || !tp->name[0])
            return sh_fail(SH_E_FORMAT, "%s: initializer %zu has no name", origin, i);
        snprintf(what, sizeof what, "%s: initializer '%s'", origin, tp->name);
        if ((rc = tensor_from_proto(tp, what, &t)) < 0)
            return rc;
        if (graph_find_value(g, tp->name) >= 0) {
            tensor_free(t);
            return sh_fail(SH_E_FORMAT, "%s: initializer '%s' is defined twice", origin, tp->name);
        }
        graph_add_const(g, tp->name, t);
    }
    for (size_t i = 0; i < gp->n_input; i++) {
        if ((rc = read_value_info(g, gp->input[i], origin, &v, &et)) < 0)
            return rc;
        Value *val = &g->values[v];
        if (val->flags & VAL_CONST) /* IR < 4 lists initializers as inputs too */
            continue;
        if (val->flags & VAL_INPUT)
            return sh_fail(SH_E_FORMAT, "%s: input '%s' is declared twice", origin, val->name);
        if (val->dtype == SH_UNDEF)
            return sh_fail(SH_E_UNSUPPORTED, "%s: input '%s' has element type %s; shears supports float32, int64, uint8 and bool inputs",
                           origin, val->name, onnx_type_name(et));
        if (val->shape.rank < 0)
            return sh_fail(SH_E_UNSUPPORTED, "%s: input '%s' has no shape", origin, val->name);
        val->flags |= VAL_INPUT;
        g->inputs = xrealloc(g->inputs, (size_t)(g->n_inputs + 1) * sizeof *g->inputs);
        g->inputs[g->n_inputs++] = v;
    }
    for (size_t i = 0; i < gp->n_node; i++)
        if ((rc = read_node(g, gp->node[i], (int)i, origin)) < 0)
            return rc;
    for (size_t i = 0; i < gp->n_output; i++) {
        if ((rc = read_value_info(g, gp->output[i], origin, &v, &et)) < 0)
            return rc;
        graph_add_output(g, v);
    }
    /* value_info only carries hints; shapes are inferred when planning */
    if (g->n_outputs == 0)
        return sh_fail(SH_E_FORMAT, "%s: the graph has no outputs", origin);
    return 0;
}

int onnx_load_buffer(const void *data, size_t n, const char *origin, Graph **out)
{
    *out = NULL;
    if (n == 0)
        return sh_fail(SH_E_FORMAT, "%s: file is empty", origin);
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, n, data);
    if (!m)
        return sh_fail(SH_E_FORMAT, "%s: not an ONNX model (the protobuf data is corrupt or truncated)", origin);
    Graph *g = graph_new();
    int rc = 0;
    if (!m->graph || (!m->has_ir_version && m->n_opset_import == 0)) {
        rc = sh_fail(SH_E_FORMAT, "%s: not an ONNX model (no graph or version information)", origin);
        goto done;
    }
    if (m->n_functions) {
        rc = sh_fail(SH_E_UNSUPPORTED, "%s: model-local functions are not supported", origin);
        goto done;
    }
    g->ir_version = m->has_ir_version ? m->ir_version : 3;
    g->producer_name = xstrdup(m->producer_name);
    g->producer_version = xstrdup(m->producer_version);
    for (size_t i = 0; i < m->n_metadata_props; i++)
        if (m->metadata_props[i]->key)
            graph_set_meta(g, m->metadata_props[i]->key,
                           m->metadata_props[i]->value ? m->metadata_props[i]->value : "");
    if ((rc = read_opset(g, m, origin)) < 0)
        goto done;
    if ((rc = read_graph(g, m->graph, origin)) < 0)
        goto done;
    graph_name_nodes(g);
    /* A graph without nodes (outputs read inputs directly) needs no sort;
     * graph_toposort would memcpy from a NULL node array (UBSan, found by
     * fuzz/fuzz_onnx). */
    if ((g->n_nodes > 0 && (rc = graph_toposort(g)) < 0) || (rc = graph_bind_ops(g)) < 0) {
        rc = sh_fail_prefix(rc, "%s", origin);
        goto done;
    }
done:
    onnx__model_proto__free_unpacked(m, NULL);
    if (rc < 0) {
        graph_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

int onnx_load(const char *path, Graph **out)
{
    unsigned char *data;
    size_t n;
    *out = NULL;
    int rc = read_file(path, &data, &n, MAX_MODEL_BYTES);
    if (rc < 0)
        return rc;
    rc = onnx_load_buffer(data, n, path, out);
    free(data);
    return rc;
}

int onnx_load_tensor(const char *path, Tensor **out, char **name)
{
    unsigned char *data;
    size_t n;
    *out = NULL;
    if (name)
        *name = NULL;
    int rc = read_file(path, &data, &n, MAX_MODEL_BYTES);
    if (rc < 0)
        return rc;
    Onnx__TensorProto *tp = onnx__tensor_proto__unpack(NULL, n, data);
    free(data);
    if (!tp)
        return sh_fail(SH_E_FORMAT, "%s: not a serialized TensorProto", path);
    rc = tensor_from_proto(tp, path, out);
    if (rc == 0 && name && tp->name && tp->name[0])
        *name = xstrdup(tp->name);
    onnx__tensor_proto__free_unpacked(tp, NULL);
    return rc;
}

/* ---- export ---- */

/* Every allocation of an export goes to one pool, freed at once. */
typedef struct {
    void **items;
    size_t n, cap;
} Pool;

static void *pool_alloc(Pool *p, size_t n)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 256;
        p->items = xrealloc(p->items, p->cap * sizeof *p->items);
    }
    void *m = xcalloc(1, n ? n : 1);
    p->items[p->n++] = m;
    return m;
}

static char *pool_str(Pool *p, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = pool_alloc(p, n);
    memcpy(d, s, n);
    return d;
}

static void pool_free(Pool *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->items[i]);
    free(p->items);
}


static Onnx__TensorProto *tensor_to_proto(Pool *p, const Tensor *t, const char *name)
{
    Onnx__TensorProto *tp = pool_alloc(p, sizeof *tp);
    onnx__tensor_proto__init(tp);
    tp->name = pool_str(p, name);
    tp->has_data_type = 1;
    tp->data_type = (int32_t)t->dtype;
    tp->n_dims = (size_t)t->shape.rank;
    tp->dims = pool_alloc(p, sizeof(int64_t) * (size_t)(t->shape.rank + 1));
    for (int i = 0; i < t->shape.rank; i++)
        tp->dims[i] = t->shape.d[i];
    tp->has_raw_data = 1;
    tp->raw_data.len = tensor_bytes(t);
    tp->raw_data.data = pool_alloc(p, tp->raw_data.len);
    if (tp->raw_data.len)
        memcpy(tp->raw_data.data, t->data, tp->raw_data.len);
    return tp;
}

/* A name for unnamed symbolic dim i of v. Value.shape dim -k means k
 * times the batch (exec.h), so it is named after the model's batch dim
 * ("N", "N*4"): an output used to be called "batch" even when it was 4N
 * or the input called its batch "N". Unknown dims get a name of their own. */
static char *dim_param(Pool *p, const Value *v, int i, const char *batch)
{
    char buf[320];
    int64_t d = v->shape.d[i];
    if (d == -1)
        snprintf(buf, sizeof buf, "%s", batch);
    else if (d < -1 && d != SH_DIM_UNKNOWN)
        snprintf(buf, sizeof buf, "%s*%lld", batch, (long long)-d);
    else
        snprintf(buf, sizeof buf, "%.200s_dim%d", v->name, i);
    return pool_str(p, buf);
}

/* The name of the batch dim: the first input's dim 0, if it has one. */
static const char *batch_name(const Graph *g)
{
    for (int i = 0; i < g->n_inputs; i++) {
        const Value *v = &g->values[g->inputs[i]];
        if (v->shape.rank > 0 && v->shape.d[0] < 0 && v->dim_names[0] && v->dim_names[0][0])
            return v->dim_names[0];
    }
    return "batch";
}

static Onnx__ValueInfoProto *value_to_proto(Pool *p, const Value *v, const char *batch)
{
    Onnx__ValueInfoProto *vi = pool_alloc(p, sizeof *vi);
    onnx__value_info_proto__init(vi);
    vi->name = pool_str(p, v->name);
    /* A type we do not know (an output whose shapes wait for input data)
     * is left out for the reader to infer: guessing float made ONNX
     * Runtime refuse models whose output is an integer (interop check,
     * node/test_constantofshape_int_zeros). */
    if (v->dtype == SH_UNDEF)
        return vi;
    Onnx__TypeProto *tp = pool_alloc(p, sizeof *tp);
    onnx__type_proto__init(tp);
    Onnx__TypeProto__Tensor *tt = pool_alloc(p, sizeof *tt);
    onnx__type_proto__tensor__init(tt);
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    tt->has_elem_type = 1;
    tt->elem_type = (int32_t)v->dtype;
    if (v->shape.rank >= 0) {
        Onnx__TensorShapeProto *sp = pool_alloc(p, sizeof *sp);
        onnx__tensor_shape_proto__init(sp);
        sp->n_dim = (size_t)v->shape.rank;
        sp->dim = pool_alloc(p, sizeof *sp->dim * (size_t)(v->shape.rank + 1));
        for (int i = 0; i < v->shape.rank; i++) {
            Onnx__TensorShapeProto__Dimension *d = pool_alloc(p, sizeof *d);
            onnx__tensor_shape_proto__dimension__init(d);
            if (v->shape.d[i] >= 0) {
                d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
                d->dim_value = v->shape.d[i];
            } else {
                d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
                d->dim_param = v->dim_names[i] ? pool_str(p, v->dim_names[i])
                                               : dim_param(p, v, i, batch);
            }
            sp->dim[i] = d;
        }
        tt->shape = sp;
    }
    vi->type = tp;
    return vi;
}

static Onnx__AttributeProto *attr_to_proto(Pool *p, const Attr *a)
{
    Onnx__AttributeProto *ap = pool_alloc(p, sizeof *ap);
    onnx__attribute_proto__init(ap);
    ap->name = pool_str(p, a->name);
    ap->has_type = 1;
    ap->type = (Onnx__AttributeProto__AttributeType)a->type;
    switch (a->type) {
    case ATTR_FLOAT: ap->has_f = 1; ap->f = a->f; break;
    case ATTR_INT: ap->has_i = 1; ap->i = a->i; break;
    case ATTR_STRING:
        ap->has_s = 1;
        ap->s.len = strlen(a->s);
        ap->s.data = (uint8_t *)pool_str(p, a->s);
        break;
    case ATTR_INTS:
        ap->n_ints = (size_t)a->n;
        ap->ints = pool_alloc(p, sizeof(int64_t) * (size_t)(a->n + 1));
        memcpy(ap->ints, a->ints, sizeof(int64_t) * (size_t)a->n);
        break;
    case ATTR_FLOATS:
        ap->n_floats = (size_t)a->n;
        ap->floats = pool_alloc(p, sizeof(float) * (size_t)(a->n + 1));
        memcpy(ap->floats, a->floats, sizeof(float) * (size_t)a->n);
        break;
    case ATTR_STRINGS:
        ap->n_strings = (size_t)a->n;
        ap->strings = pool_alloc(p, sizeof *ap->strings * (size_t)(a->n + 1));
        for (int i = 0; i < a->n; i++) {
            ap->strings[i].len = strlen(a->strings[i]);
            ap->strings[i].data = (uint8_t *)pool_str(p, a->strings[i]);
        }
        break;
    case ATTR_TENSOR: ap->t = tensor_to_proto(p, a->t, NULL); break;
    default: break;
    }
    return ap;
}

static Onnx__NodeProto *node_to_proto(Pool *p, const Graph *g, const Node *n)
{
    Onnx__NodeProto *np = pool_alloc(p, sizeof *np);
    onnx__node_proto__init(np);
    np->name = pool_str(p, n->name);
    np->op_type = pool_str(p, n->op_type);
    np->domain = pool_str(p, n->domain);
    np->n_input = (size_t)n->n_in;
    np->input = pool_alloc(p, sizeof(char *) * (size_t)(n->n_in + 1));
    for (int i = 0; i < n->n_in; i++)
        np->input[i] = pool_str(p, n->in[i] >= 0 ? g->values[n->in[i]].name : "");
    np->n_output = (size_t)n->n_out;
    np->output = pool_alloc(p, sizeof(char *) * (size_t)(n->n_out + 1));
    for (int i = 0; i < n->n_out; i++)
        np->output[i] = pool_str(p, n->out[i] >= 0 ? g->values[n->out[i]].name : "");
    np->n_attribute = (size_t)n->n_attrs;
    np->attribute = pool_alloc(p, sizeof *np->attribute * (size_t)(n->n_attrs + 1));
    for (int i = 0; i < n->n_attrs; i++)
        np->attribute[i] = attr_to_proto(p, &n->attrs[i]);
    return np;
}

/* ir_version that ONNX Runtime expects for an opset (the first release
 * carrying that opset). */
static int64_t ir_for_opset(int opset)
{
    if (opset >= 15)
        return 8;
    if (opset >= 13)
        return 7;
    if (opset >= 12)
        return 7;
    if (opset >= 10)
        return 5;
    if (opset >= 9)
        return 4;
    return 3;
}

static Onnx__GraphProto *graph_to_proto(Pool *p, const Graph *g)
{
    Onnx__GraphProto *gp = pool_alloc(p, sizeof *gp);
    onnx__graph_proto__init(gp);
    gp->name = pool_str(p, g->name && g->name[0] ? g->name : "shears");
    gp->n_node = (size_t)g->n_nodes;
    gp->node = pool_alloc(p, sizeof *gp->node * (size_t)(g->n_nodes + 1));
    for (int i = 0; i < g->n_nodes; i++)
        gp->node[i] = node_to_proto(p, g, &g->nodes[i]);
    size_t n_init = 0;
    for (int v = 0; v < g->n_values; v++)
        if ((g->values[v].flags & VAL_CONST) && g->values[v].data)
            n_init++;
    gp->initializer = pool_alloc(p, sizeof *gp->initializer * (n_init + 1));
    for (int v = 0; v < g->n_values; v++)
        if ((g->values[v].flags & VAL_CONST) && g->values[v].data)
            gp->initializer[gp->n_initializer++] =
                tensor_to_proto(p, g->values[v].data, g->values[v].name);
    gp->n_input = (size_t)g->n_inputs;
    gp->input = pool_alloc(p, sizeof *gp->input * (size_t)(g->n_inputs + 1));
    for (int i = 0; i < g->n_inputs; i++)
        gp->input[i] = value_to_proto(p, &g->values[g->inputs[i]], batch_name(g));
    gp->n_output = (size_t)g->n_outputs;
    gp->output = pool_alloc(p, sizeof *gp->output * (size_t)(g->n_outputs + 1));
    for (int i = 0; i < g->n_outputs; i++)
        gp->output[i] = value_to_proto(p, &g->values[g->outputs[i]], batch_name(g));
    return gp;
}

int onnx_save_buffer(const Graph *g, unsigned char **data, size_t *n)
{
    Pool p = {0};
    Onnx__ModelProto m;
    onnx__model_proto__init(&m);
    int64_t min_ir = ir_for_opset(g->opset);
    m.has_ir_version = 1;
    m.ir_version = g->ir_version > min_ir ? g->ir_version : min_ir;
    m.producer_name = pool_str(&p, "shears");
    m.producer_version = pool_str(&p, "0.1");
    Onnx__OperatorSetIdProto *opset = pool_alloc(&p, sizeof *opset);
    onnx__operator_set_id_proto__init(opset);
    opset->domain = pool_str(&p, "");
    opset->has_version = 1;
    opset->version = g->opset;
    m.n_opset_import = 1;
    m.opset_import = pool_alloc(&p, sizeof *m.opset_import);
    m.opset_import[0] = opset;
    m.n_metadata_props = (size_t)g->n_meta;
    m.metadata_props = pool_alloc(&p, sizeof *m.metadata_props * (size_t)(g->n_meta + 1));
    for (int i = 0; i < g->n_meta; i++) {
        Onnx__StringStringEntryProto *e = pool_alloc(&p, sizeof *e);
        onnx__string_string_entry_proto__init(e);
        e->key = pool_str(&p, g->meta[i].key);
        e->value = pool_str(&p, g->meta[i].value);
        m.metadata_props[i] = e;
    }
    m.graph = graph_to_proto(&p, g);
    size_t size = onnx__model_proto__get_packed_size(&m);
    unsigned char *buf = malloc(size ? size : 1);
    if (!buf) {
        pool_free(&p);
        return sh_fail(SH_E_NOMEM, "out of memory serializing the model (%zu bytes)", size);
    }
    onnx__model_proto__pack(&m, buf);
    pool_free(&p);
    *data = buf;
    *n = size;
    return 0;
}

int onnx_save(const Graph *g, const char *path, bool overwrite)
{
    unsigned char *data;
    size_t n;
    int rc = onnx_save_buffer(g, &data, &n);
    if (rc < 0)
        return rc;
    rc = write_file_atomic(path, data, n, overwrite);
    free(data);
    return rc;
}
