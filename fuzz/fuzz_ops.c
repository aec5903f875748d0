/* libFuzzer target: one op at a time, structured. The fuzz data chooses a
 * registered op, the opset, its inputs (dtype, shape, values, or omitted
 * when optional) and attributes (names ops read, values near the edges),
 * then runs infer, forward and, when the op has one, backward, as the
 * executor would. A protobuf model rarely survives a byte mutation intact,
 * so this reaches the op kernels far more often than fuzz_onnx does.
 * Errors are the expected outcome; crashes, sanitizer reports, leaks and
 * hangs are bugs. Outputs of more than 64K elements are skipped (valid
 * but merely large). */
#include "core/error.h"
#include "core/graph.h"
#include "core/op.h"
#include "core/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OPS 256
#define MAX_IO 6
#define MAX_ELEMS 1024            /* per input */
#define MAX_OUT_ELEMS (1 << 16)   /* per output */
#define MAX_SCRATCH ((size_t)64 << 20)

typedef struct {
    const uint8_t *p;
    size_t n, pos;
} Bytes;

/* The next byte; zeros once the data runs out. */
static unsigned take(Bytes *b) { return b->pos < b->n ? b->p[b->pos++] : 0; }

static const OpDef *ops[MAX_OPS];
static int n_ops;

static void collect(const OpDef *op, void *arg)
{
    (void)arg;
    if (n_ops < MAX_OPS)
        ops[n_ops++] = op;
}

static const char *const ATTR_NAMES[] = {
    "axis", "axes", "keepdims", "kernel_shape", "pads", "strides", "dilations", "group",
    "auto_pad", "alpha", "beta", "gamma", "epsilon", "transA", "transB", "perm", "split",
    "starts", "ends", "mode", "coordinate_transformation_mode", "nearest_mode", "ceil_mode",
    "count_include_pad", "to", "blocksize", "value", "allowzero", "select_last_index",
    "output_padding", "output_shape", "storage_order", "momentum", "training_mode",
    "exclude_outside", "cubic_coeff_a", "extrapolation_value", "bias", "size", "lambd",
    "min", "max", "noop_with_empty_axes", "stash_type", "p", "seed", "ratio", "fmod",
    "direction", "reduction", "ignore_index", "approximate", "largest", "sorted", "k",
};
#define N_ATTR_NAMES (sizeof ATTR_NAMES / sizeof *ATTR_NAMES)

static const char *const STRINGS[] = {
    "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID", "nearest", "linear", "cubic", "half_pixel",
    "align_corners", "asymmetric", "pytorch_half_pixel", "tf_crop_and_resize",
    "round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "DCR", "CRD", "constant",
    "reflect", "edge", "tanh", "none", "mean", "sum", "", "bogus",
};
#define N_STRINGS (sizeof STRINGS / sizeof *STRINGS)

static DType pick_dtype(unsigned b)
{
    static const DType types[] = {SH_F32, SH_F32, SH_F32, SH_F32, SH_I64, SH_I64, SH_BOOL, SH_U8};
    return types[b % 8];
}

static void fill(Tensor *t, Bytes *b)
{
    for (int64_t i = 0; i < t->numel; i++) {
        int8_t v = (int8_t)take(b);
        switch (t->dtype) {
        case SH_F32: tensor_f32(t)[i] = (float)v / 16.0f; break;
        case SH_I64: tensor_i64(t)[i] = v >> 4; break; /* -8..7: indices, axes, sizes */
        case SH_BOOL: tensor_u8(t)[i] = (uint8_t)(v & 1); break;
        case SH_U8: tensor_u8(t)[i] = (uint8_t)v; break;
        default: break;
        }
    }
}

/* A small tensor of the fuzz data's choosing, NULL if too large. */
static Tensor *make_tensor(Bytes *b)
{
    unsigned flags = take(b);
    Shape s = {.rank = (int)(take(b) % 5)};
    for (int k = 0; k < s.rank; k++)
        s.d[k] = take(b) % 5;
    int64_t numel = shape_numel(&s);
    if (numel < 0 || numel > MAX_ELEMS)
        return NULL;
    Tensor *t = tensor_new(pick_dtype(flags), &s);
    if (t)
        fill(t, b);
    return t;
}

static void add_attr(Node *n, Bytes *b)
{
    const char *name = ATTR_NAMES[take(b) % N_ATTR_NAMES];
    unsigned kind = take(b) % 6;
    int64_t ints[8];
    float floats[8];
    int count = (int)(take(b) % 6);
    for (int i = 0; i < count; i++) {
        int8_t v = (int8_t)take(b);
        ints[i] = v >> 3; /* -16..15 */
        floats[i] = (float)v / 8.0f;
    }
    switch (kind) {
    case 0: node_set_int(n, name, count ? ints[0] : (int64_t)(int8_t)take(b)); break;
    case 1: node_set_ints(n, name, ints, count); break;
    case 2: node_set_float(n, name, count ? floats[0] : (float)(int8_t)take(b) / 8.0f); break;
    case 3: node_set_floats(n, name, floats, count); break;
    case 4: node_set_str(n, name, STRINGS[take(b) % N_STRINGS]); break;
    default: {
        Tensor *t = make_tensor(b);
        if (t)
            node_set_tensor(n, name, t);
        break;
    }
    }
}

/* Runs backward with output gradients from the data, accumulating into
 * zeroed input gradients. */
static void run_backward(const OpDef *op, OpCtx *c, Bytes *b)
{
    Tensor *gout[MAX_IO] = {0}, *gin[MAX_IO] = {0};
    void *scratch = NULL;
    for (int k = 0; k < c->n_out; k++)
        if (c->out[k]->dtype == SH_F32 && c->out[k]->data && (take(b) & 3)) {
            gout[k] = tensor_new(SH_F32, &c->out[k]->shape);
            if (gout[k])
                fill(gout[k], b);
        }
    for (int i = 0; i < c->n_in; i++)
        if (c->in[i] && c->in[i]->dtype == SH_F32)
            gin[i] = tensor_new(SH_F32, &c->in[i]->shape);
    size_t sb = op->bwd_scratch ? op->bwd_scratch(c) : 0;
    if (sb <= MAX_SCRATCH) {
        scratch = aligned_alloc(64, (sb + 64) / 64 * 64); /* never NULL, as in run_node */
        if (scratch) {
            c->scratch = scratch;
            c->scratch_bytes = sb;
            op->backward(c, gout, gin);
        }
    }
    free(scratch);
    for (int k = 0; k < MAX_IO; k++) {
        tensor_free(gout[k]);
        tensor_free(gin[k]);
    }
}

static void run_node(const Node *n, int opset, Tensor **in, int n_in, int n_out, Bytes *b)
{
    const OpDef *op = n->op;
    Tensor outs[MAX_IO] = {0};
    Tensor *out[MAX_IO];
    void *scratch = NULL;
    for (int k = 0; k < n_out; k++)
        out[k] = &outs[k];
    OpCtx c = {.node = n, .opset = opset, .n_in = n_in, .n_out = n_out, .in = in, .out = out,
               .training = (int)(take(b) & 1), .seed = take(b)};
    if (op->infer(&c) < 0)
        goto done;
    for (int k = 0; k < n_out; k++) {
        if (outs[k].dtype == SH_UNDEF)
            continue;
        Shape s = outs[k].shape;
        int64_t numel = shape_numel(&s);
        if (numel < 0 || numel > MAX_OUT_ELEMS || tensor_alloc(&outs[k], outs[k].dtype, &s) < 0)
            goto done;
    }
    if ((op->flags & OP_ALIAS) && n_out == 1 && !c.training) {
        /* the executor shares input 0's bytes: infer must keep the size */
        if (!in[0] || tensor_bytes(&outs[0]) != tensor_bytes(in[0])) {
            fprintf(stderr, "fuzz_ops: %s aliases input 0 but infers %zu bytes from %zu\n",
                    op->name, tensor_bytes(&outs[0]), in[0] ? tensor_bytes(in[0]) : 0);
            abort();
        }
        goto done;
    }
    if (!op->forward)
        goto done;
    size_t sb = op->scratch ? op->scratch(&c) : 0;
    if (sb > MAX_SCRATCH)
        goto done;
    /* Never NULL: ops that need 0 bytes still form pointers into it
     * (LayerNormalization on an empty tensor did; reported), and one
     * known finding would stop every run. */
    scratch = aligned_alloc(64, (sb + 64) / 64 * 64);
    if (!scratch)
        goto done;
    c.scratch = scratch;
    c.scratch_bytes = sb;
    if (op->forward(&c) == 0 && op->backward && (take(b) & 1))
        run_backward(op, &c, b);
done:
    free(scratch);
    for (int k = 0; k < n_out; k++)
        tensor_done(&outs[k]);
}

/* FUZZ_OPS_VERBOSE=1 prints what an input builds (for reports). */
static void describe(const Node *n, int opset, Tensor **in, int n_in, int n_out)
{
    char s[128];
    fprintf(stderr, "op %s, opset %d, %d outputs\n", n->op_type, opset, n_out);
    for (int i = 0; i < n_in; i++) {
        if (!in[i]) {
            fprintf(stderr, "  input %d: omitted\n", i);
            continue;
        }
        fprintf(stderr, "  input %d: %s %s:", i, dtype_name(in[i]->dtype), shape_str(&in[i]->shape, s, sizeof s));
        for (int64_t k = 0; k < in[i]->numel && k < 12; k++)
            fprintf(stderr, " %g", tensor_get_f(in[i], k));
        fprintf(stderr, "\n");
    }
    for (int a = 0; a < n->n_attrs; a++) {
        const Attr *at = &n->attrs[a];
        fprintf(stderr, "  attr %s:", at->name);
        switch (at->type) {
        case ATTR_INT: fprintf(stderr, " %lld", (long long)at->i); break;
        case ATTR_FLOAT: fprintf(stderr, " %g", at->f); break;
        case ATTR_STRING: fprintf(stderr, " '%s'", at->s); break;
        case ATTR_INTS:
            for (int k = 0; k < at->n; k++)
                fprintf(stderr, " %lld", (long long)at->ints[k]);
            break;
        case ATTR_FLOATS:
            for (int k = 0; k < at->n; k++)
                fprintf(stderr, " %g", at->floats[k]);
            break;
        case ATTR_TENSOR: fprintf(stderr, " tensor %s", shape_str(&at->t->shape, s, sizeof s)); break;
        default: break;
        }
        fprintf(stderr, "\n");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a model may ask for any size: past this, shears must refuse cleanly
     * (libFuzzer reports mallocs over 2 GB as failures) */
    sh_set_memory_budget((size_t)256 << 20);
    if (!n_ops)
        op_foreach(collect, NULL);
    if (!n_ops || size < 2)
        return 0;
    Bytes b = {data, size, 0};
    const OpDef *op = ops[take(&b) % (unsigned)n_ops];
    int opset = 9 + (int)(take(&b) % 9);
    int max_in = op->max_in < MAX_IO ? op->max_in : MAX_IO;
    int max_out = op->max_out < MAX_IO ? op->max_out : MAX_IO;
    if (op->min_in > max_in || op->min_out > max_out)
        return 0;
    int n_in = op->min_in + (int)(take(&b) % (unsigned)(max_in - op->min_in + 1));
    int n_out = op->min_out + (int)(take(&b) % (unsigned)(max_out - op->min_out + 1));

    Graph *g = graph_new();
    Tensor *in[MAX_IO] = {0};
    int in_idx[MAX_IO], out_idx[MAX_IO];
    for (int i = 0; i < n_in; i++) {
        char name[16];
        snprintf(name, sizeof name, "in%d", i);
        bool omit = i >= op->min_in && (take(&b) & 7) == 0;
        in[i] = omit ? NULL : make_tensor(&b);
        in_idx[i] = in[i] ? graph_value(g, name) : -1;
        if (!in[i] && !omit)
            goto done; /* too large */
    }
    for (int k = 0; k < n_out; k++) {
        char name[16];
        snprintf(name, sizeof name, "out%d", k);
        out_idx[k] = graph_value(g, name);
    }
    int idx = graph_add_node(g, op->name, "fuzzed", n_in, in_idx, n_out, out_idx);
    Node *n = &g->nodes[idx];
    for (int a = (int)(take(&b) % 6); a > 0; a--)
        add_attr(n, &b);
    if (getenv("FUZZ_OPS_VERBOSE"))
        describe(n, opset, in, n_in, n_out);
    if (n->op)
        run_node(n, opset, in, n_in, n_out, &b);
done:
    for (int i = 0; i < n_in; i++)
        tensor_free(in[i]);
    graph_free(g);
    return 0;
}
