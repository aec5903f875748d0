/* The executor. Planning walks the nodes once: infer shapes, evaluate
 * nodes whose inputs are all known (constants, shape arithmetic), and
 * give every remaining activation a buffer. Buffers are placed in one
 * arena by greedy best-offset assignment over their lifetimes. */
#include "exec.h"

#include "error.h"
#include "exec_split.h"
#include "op.h"
#include "ops/conv.h"
#include "threads.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_ALIGN 64

enum SlotKind {
    SLOT_NONE = 0,  /* unused value */
    SLOT_CONST,     /* graph initializer (borrowed data) */
    SLOT_KNOWN,     /* computed while planning (owned data) */
    SLOT_INPUT,     /* graph input, bound at run time */
    SLOT_ARENA,     /* activation in the arena */
    SLOT_VIEW,      /* alias of another slot's data, set at run time */
};

typedef struct {
    Tensor t;
    enum SlotKind kind;
    int buffer;      /* arena buffer id for SLOT_ARENA */
    int last_use;    /* step index of the last reader; INT32_MAX for outputs */
} Slot;

typedef struct {
    int64_t bytes;
    int first, last; /* step range during which the buffer is live */
    int64_t offset;
} Buffer;

typedef struct {
    int node;
    int n_in;           /* inputs the op sees (a folded BatchNorm adds a Conv bias) */
    bool fused_away;    /* a BatchNorm/Relu merged into the Conv before it: a view */
    bool absorbed;      /* a MaxPool the Conv before it computes: skipped */
    int absorbed_by;    /* that Conv's step (its output's buffer is live from there) */
    bool has_fusion;
    ConvFusion fusion;
    Tensor *folded;     /* [2]: Conv weight and bias with a BatchNorm folded in (owned) */
    Tensor **in, **out;
    Tensor *extra;      /* storage for outputs the model omits (never NULL for ops) */
    int *extra_buffer;  /* their arena buffers */
    int64_t macs;
    size_t scratch;
} Step;

struct ExecPlan {
    const Graph *g;
    ExecOptions opt;
    Slot *slots;
    Step *steps;
    int n_steps;
    Buffer *buffers;
    int n_buffers;
    int64_t *node_macs;
    double *node_seconds;
    unsigned char *arena;
    size_t arena_bytes, activation_bytes;
    void *scratch;
    size_t scratch_bytes;
    uint64_t seed;
    /* backward (training plans): */
    bool *needs_grad;     /* per value */
    Tensor *grad;         /* per value: dL/dv (data in grad_arena or the caller's block) */
    float *grad_arena;
    size_t grad_floats;
    bool *grad_zeroed;    /* per value, this backward: its arena buffer was cleared */
    /* batch parts: whole plans for slices of the batch, run on separate threads */
    ExecPlan **parts;
    int64_t *part_batch, *part_start; /* samples per part, and the first one */
    Tensor *part_in;                  /* [n_parts][n_inputs]: views of the inputs' slices */
    Tensor **part_in_ptrs;
    char **part_errors;               /* per part, the last run's message (sh_errmsg is per thread) */
    int n_parts;
    int64_t batch;
    void **part_outputs; /* per graph output: the assembled output (owned) */
};

/* ---- shapes ---- */

char *dim_str(int64_t d, char *buf, size_t n)
{
    if (d >= 0)
        snprintf(buf, n, "%lld", (long long)d);
    else if (d == SH_DIM_UNKNOWN)
        snprintf(buf, n, "?");
    else if (d == -1)
        snprintf(buf, n, "N");
    else
        snprintf(buf, n, "N*%lld", (long long)-d);
    return buf;
}

char *sym_shape_str(const Shape *s, char *buf, size_t n)
{
    size_t used = 0;
    if (s->rank < 0) {
        snprintf(buf, n, "?");
        return buf;
    }
    used += (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < s->rank && used < n; i++) {
        char d[32];
        used += (size_t)snprintf(buf + used, n - used, "%s%s", i ? "," : "",
                                 dim_str(s->d[i], d, sizeof d));
    }
    if (used < n)
        snprintf(buf + used, n - used, "]");
    return buf;
}

int graph_input_shape(const Graph *g, int i, int64_t batch, Shape *out)
{
    const Value *v = &g->values[g->inputs[i]];
    bool batch_bound = false;
    *out = v->shape;
    if (v->shape.rank < 0)
        return sh_fail(SH_E_UNSUPPORTED, "input '%s' has no shape", v->name);
    for (int k = 0; k < v->shape.rank; k++) {
        if (v->shape.d[k] >= 0)
            continue;
        if (batch_bound || k != 0)
            return sh_fail(SH_E_UNSUPPORTED,
                           "input '%s' dimension %d ('%s') is symbolic; shears binds only the batch dimension",
                           v->name, k, v->dim_names[k] ? v->dim_names[k] : "?");
        out->d[k] = batch;
        batch_bound = true;
    }
    return 0;
}

/* ---- planning ---- */

static bool slot_has_data(const Slot *s)
{
    return s->kind == SLOT_CONST || s->kind == SLOT_KNOWN;
}

static void plan_free_slots(ExecPlan *p)
{
    if (!p->slots)
        return;
    for (int v = 0; v < p->g->n_values; v++)
        if (p->slots[v].kind == SLOT_KNOWN)
            tensor_done(&p->slots[v].t);
    free(p->slots);
    p->slots = NULL;
}

void exec_free(ExecPlan *p)
{
    if (!p)
        return;
    plan_free_slots(p);
    for (int i = 0; i < p->n_steps; i++) {
        free(p->steps[i].in);
        free(p->steps[i].out);
        free(p->steps[i].extra);
        free(p->steps[i].extra_buffer);
        if (p->steps[i].folded) {
            tensor_done(&p->steps[i].folded[0]);
            tensor_done(&p->steps[i].folded[1]);
            free(p->steps[i].folded);
        }
    }
    free(p->steps);
    free(p->buffers);
    free(p->node_macs);
    free(p->node_seconds);
    free(p->arena);
    free(p->scratch);
    free(p->needs_grad);
    free(p->grad);
    free(p->grad_arena);
    free(p->grad_zeroed);
    for (int i = 0; i < p->n_parts; i++)
        exec_free(p->parts[i]);
    free(p->parts);
    free(p->part_batch);
    free(p->part_start);
    free(p->part_in);
    free(p->part_in_ptrs);
    free(p->part_errors);
    for (int k = 0; p->part_outputs && k < p->g->n_outputs; k++)
        free(p->part_outputs[k]);
    free(p->part_outputs);
    free(p);
}

/* Evaluates node i now, storing its outputs as known slots. */
static int fold_node(ExecPlan *p, int i, Tensor **in)
{
    const Node *n = &p->g->nodes[i];
    Tensor *out[16] = {0};
    if (n->n_out > 16)
        return sh_fail(SH_E_UNSUPPORTED, "node '%s' has too many outputs", n->name);
    int rc = op_run(n, p->g->opset, in, n->n_in, out, n->n_out);
    if (rc < 0)
        return rc;
    for (int k = 0; k < n->n_out; k++) {
        int v = n->out[k];
        if (v < 0 || !out[k]) {
            tensor_free(out[k]);
            continue;
        }
        p->slots[v].t = *out[k];
        p->slots[v].kind = SLOT_KNOWN;
        free(out[k]);
    }
    return 0;
}

/* Reshape-like ops share their input's bytes unless the model also reads
 * their extra outputs (Dropout's mask), which forward must compute. */
static bool node_aliases(const ExecPlan *p, const Node *n)
{
    if (!(n->op->flags & OP_ALIAS))
        return false;
    if (p->opt.training && strcmp(n->op_type, "Dropout") == 0)
        return false; /* training Dropout draws a mask: forward must run */
    for (int k = 1; k < n->n_out; k++)
        if (n->out[k] >= 0)
            return false;
    return true;
}

static bool is_param(const ExecPlan *p, const Tensor *t)
{
    const float *d = t->data;
    return p->opt.params && t->dtype == SH_F32 && d >= p->opt.params &&
           d < p->opt.params + p->opt.n_params;
}

static bool node_foldable(const ExecPlan *p, const Node *n)
{
    if (n->op->flags & OP_NO_FOLD)
        return false;
    for (int k = 0; k < n->n_in; k++) /* gradients must reach parameters */
        if (n->in[k] >= 0 && p->slots[n->in[k]].kind == SLOT_CONST && is_param(p, &p->slots[n->in[k]].t))
            return false;
    if (n->op->flags & OP_SHAPE_ONLY)
        return true;
    if (p->opt.training && strcmp(n->op_type, "Dropout") == 0)
        return false;
    for (int k = 0; k < n->n_in; k++)
        if (n->in[k] >= 0 && !slot_has_data(&p->slots[n->in[k]]))
            return false;
    return true;
}

static int infer_node(ExecPlan *p, int i, Tensor **in, Tensor **out)
{
    const Node *n = &p->g->nodes[i];
    for (int k = 0; k < n->n_in; k++) {
        if (!(n->op->shape_inputs & (1u << k)) || !in[k] || in[k]->data)
            continue;
        return sh_fail(SH_E_UNSUPPORTED,
                       "node '%s' (%s): input %d ('%s') must be known before running (it is computed from input data)",
                       n->name, n->op_type, k, p->g->values[n->in[k]].name);
    }
    OpCtx c = {.node = n, .opset = p->g->opset, .n_in = n->n_in, .n_out = n->n_out,
               .in = in, .out = out, .training = p->opt.training};
    for (int k = 0; k < n->n_out; k++)
        out[k]->dtype = SH_UNDEF;
    int rc = n->op->infer(&c);
    if (rc < 0)
        return rc;
    for (int k = 0; k < n->n_out; k++) {
        if (n->out[k] < 0)
            continue;
        if (out[k]->dtype == SH_UNDEF)
            return sh_fail(SH_E_SHAPE, "node '%s' (%s): output %d has no inferred type",
                           n->name, n->op_type, k);
        if ((out[k]->numel = shape_numel(&out[k]->shape)) < 0)
            return sh_fail(SH_E_SHAPE, "node '%s' (%s): output %d has an invalid or too large shape",
                           n->name, n->op_type, k);
    }
    p->node_macs[i] = n->op->macs ? n->op->macs(&c) : 0;
    return 0;
}

static Tensor **slot_ptrs(ExecPlan *p, const int *vals, int count)
{
    Tensor **arr = xcalloc((size_t)count + 1, sizeof *arr);
    for (int k = 0; k < count; k++)
        arr[k] = vals[k] >= 0 ? &p->slots[vals[k]].t : NULL;
    return arr;
}

static bool is_param(const ExecPlan *p, const Tensor *t);

/* Values whose data (not just shape) decides some node's output shape. */
bool *graph_shape_feeding_values(const Graph *g)
{
    bool *mark = xcalloc((size_t)g->n_values + 1, sizeof *mark);
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        const Node *n = &g->nodes[i];
        if (!n->op)
            continue;
        bool out_marked = false;
        for (int k = 0; k < n->n_out; k++)
            out_marked = out_marked || (n->out[k] >= 0 && mark[n->out[k]]);
        for (int k = 0; k < n->n_in; k++) {
            if (n->in[k] < 0)
                continue;
            if ((n->op->shape_inputs & (1u << k)) || (out_marked && !(n->op->flags & OP_SHAPE_ONLY)))
                mark[n->in[k]] = true;
        }
    }
    return mark;
}

/* Makes input i known from its given value (see ExecOptions.input_values). */
static int bind_input_value(ExecPlan *p, int i, const Tensor *t)
{
    int v = p->g->inputs[i];
    Slot *slot = &p->slots[v];
    if (!t || t->dtype != slot->t.dtype || !shape_eq(&t->shape, &slot->t.shape))
        return sh_fail(SH_E_SHAPE, "input '%s': the value given does not match its shape",
                       p->g->values[v].name);
    Tensor *c = tensor_clone(t);
    if (!c)
        return SH_E_NOMEM;
    slot->t = *c;
    free(c);
    slot->kind = SLOT_KNOWN;
    return 0;
}

static int bind_inputs(ExecPlan *p, const Shape *input_shapes)
{
    const Graph *g = p->g;
    for (int v = 0; v < g->n_values; v++)
        if ((g->values[v].flags & VAL_CONST) && g->values[v].data) {
            p->slots[v].t = *g->values[v].data;
            p->slots[v].t.owns = false;
            p->slots[v].kind = SLOT_CONST;
            if (p->opt.private_consts && p->slots[v].t.dtype == SH_F32 && !is_param(p, &p->slots[v].t)) {
                Tensor *c = tensor_clone(g->values[v].data);
                if (!c)
                    return SH_E_NOMEM;
                p->slots[v].t = *c;
                p->slots[v].kind = SLOT_KNOWN;
                free(c);
            }
        }
    for (int i = 0; i < g->n_inputs; i++) {
        int v = g->inputs[i];
        const Value *val = &g->values[v];
        const Shape *s = &input_shapes[i];
        if (s->rank != val->shape.rank)
            return sh_fail(SH_E_SHAPE, "input '%s' needs rank %d, got %d", val->name,
                           val->shape.rank, s->rank);
        for (int k = 0; k < s->rank; k++)
            if (val->shape.d[k] >= 0 && val->shape.d[k] != s->d[k]) {
                char want[128], got[128];
                return sh_fail(SH_E_SHAPE, "input '%s' needs shape %s, got %s", val->name,
                               sym_shape_str(&val->shape, want, sizeof want),
                               shape_str(s, got, sizeof got));
            }
        p->slots[v].t = tensor_view(val->dtype, s, NULL);
        if (p->slots[v].t.numel < 0)
            return sh_fail(SH_E_SHAPE, "input '%s' has an invalid shape", val->name);
        p->slots[v].kind = SLOT_INPUT;
    }
    if (p->opt.input_values) {
        bool *feeding = graph_shape_feeding_values(g);
        int rc = 0;
        for (int i = 0; i < g->n_inputs && rc == 0; i++)
            if (feeding[g->inputs[i]])
                rc = bind_input_value(p, i, p->opt.input_values[i]);
        free(feeding);
        p->opt.input_values = NULL; /* borrowed only while planning */
        return rc;
    }
    return 0;
}

/* Walks nodes in order: infer, fold what is known, collect run steps. */
static int plan_nodes(ExecPlan *p)
{
    const Graph *g = p->g;
    p->steps = xcalloc((size_t)g->n_nodes + 1, sizeof *p->steps);
    for (int i = 0; i < g->n_nodes; i++) {
        const Node *n = &g->nodes[i];
        if (!n->op)
            return sh_fail(SH_E_UNSUPPORTED, "node '%s' uses op '%s', which shears does not support",
                           n->name, n->op_type);
        Tensor **in = slot_ptrs(p, n->in, n->n_in);
        Tensor **out = slot_ptrs(p, n->out, n->n_out);
        Tensor dummy[16];
        for (int k = 0; k < n->n_out && k < 16; k++)
            if (!out[k]) {
                memset(&dummy[k], 0, sizeof dummy[k]);
                out[k] = &dummy[k];
            }
        int rc = infer_node(p, i, in, out);
        if (rc == 0 && node_foldable(p, n)) {
            rc = fold_node(p, i, in);
            free(in);
            free(out);
            if (rc < 0)
                return rc;
            continue;
        }
        if (rc < 0) {
            free(in);
            free(out);
            return rc;
        }
        Step *st = &p->steps[p->n_steps++];
        st->extra = xcalloc((size_t)n->n_out + 1, sizeof *st->extra);
        st->extra_buffer = xcalloc((size_t)n->n_out + 1, sizeof *st->extra_buffer);
        for (int k = 0; k < n->n_out; k++) {
            st->extra_buffer[k] = -1;
            if (n->out[k] < 0) { /* ops always get a real tensor, even when the model ignores it */
                st->extra[k] = *out[k];
                out[k] = &st->extra[k];
            } else
                p->slots[n->out[k]].kind = node_aliases(p, n) && k == 0 ? SLOT_VIEW : SLOT_ARENA;
        }
        st->node = i;
        st->n_in = n->n_in;
        st->in = in;
        st->out = out;
        st->macs = p->node_macs[i];
        OpCtx c = {.node = n, .opset = g->opset, .n_in = n->n_in, .n_out = n->n_out, .in = in,
                   .out = out, .training = p->opt.training};
        st->scratch = n->op->scratch ? n->op->scratch(&c) : 0;
        /* keep_all plans may run backward (training, or gradient-based scores) */
        if ((p->opt.training || p->opt.keep_all) && n->op->bwd_scratch && n->op->bwd_scratch(&c) > st->scratch)
            st->scratch = n->op->bwd_scratch(&c);
        if (st->scratch > p->scratch_bytes)
            p->scratch_bytes = st->scratch;
    }
    return 0;
}

/* ---- inference fusion ----
 * Conv -> BatchNormalization folds the normalization into the Conv's
 * weights and bias; Conv (-> BatchNormalization) -> Relu applies the ReLU
 * in the Conv's epilogue. The merged nodes become views of the Conv's
 * output. Only in inference without keep_all: the Conv's own output then
 * holds the fused value. */

static int step_of_node(const ExecPlan *p, int node)
{
    for (int s = 0; s < p->n_steps; s++)
        if (p->steps[s].node == node)
            return s;
    return -1;
}

/* The step that is the only reader of value v, or -1. */
static int sole_reader(const ExecPlan *p, int v)
{
    const Graph *g = p->g;
    if (g->values[v].flags & VAL_OUTPUT)
        return -1;
    int reader = -1, count = 0;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++)
            if (g->nodes[i].in[k] == v) {
                count++;
                reader = i;
            }
    return count == 1 ? step_of_node(p, reader) : -1;
}

static bool all_known(const ExecPlan *p, const Node *n, int from, int to)
{
    for (int k = from; k < to; k++)
        if (k >= n->n_in || n->in[k] < 0 || !slot_has_data(&p->slots[n->in[k]]))
            return false;
    return true;
}

static bool only_first_output(const Node *n)
{
    for (int k = 1; k < n->n_out; k++)
        if (n->out[k] >= 0)
            return false;
    return true;
}

/* Folds BatchNormalization step bs into Conv step cs. */
static int fold_bn_into_conv(ExecPlan *p, Step *cs, Step *bs)
{
    const Node *conv = &p->g->nodes[cs->node], *bn = &p->g->nodes[bs->node];
    const Tensor *w = cs->in[1], *b = cs->n_in > 2 ? cs->in[2] : NULL;
    const float *gamma = tensor_f32(bs->in[1]), *beta = tensor_f32(bs->in[2]);
    const float *mean = tensor_f32(bs->in[3]), *var = tensor_f32(bs->in[4]);
    int64_t cout = w->shape.d[0], per = w->numel / cout;
    float eps = node_attr_float(bn, "epsilon", 1e-5f);
    Shape bshape = shape_of(1, cout);
    (void)conv;
    cs->folded = xcalloc(2, sizeof *cs->folded);
    if (tensor_alloc(&cs->folded[0], SH_F32, &w->shape) < 0 ||
        tensor_alloc(&cs->folded[1], SH_F32, &bshape) < 0)
        return SH_E_NOMEM;
    for (int64_t o = 0; o < cout; o++) {
        double scale = gamma[o] / sqrt((double)var[o] + eps);
        for (int64_t j = 0; j < per; j++)
            tensor_f32(&cs->folded[0])[o * per + j] = (float)(tensor_f32(w)[o * per + j] * scale);
        double bias = b ? tensor_f32(b)[o] : 0;
        tensor_f32(&cs->folded[1])[o] = (float)((bias - mean[o]) * scale + beta[o]);
    }
    Tensor **in = xcalloc(4, sizeof *in);
    in[0] = cs->in[0];
    in[1] = &cs->folded[0];
    in[2] = &cs->folded[1];
    free(cs->in);
    cs->in = in;
    cs->n_in = 3;
    bs->fused_away = true;
    return 0;
}

static bool bn_foldable(const ExecPlan *p, const Step *cs, const Step *bs)
{
    const Node *bn = &p->g->nodes[bs->node], *conv = &p->g->nodes[cs->node];
    if (strcmp(bn->op_type, "BatchNormalization") != 0 || !only_first_output(bn) ||
        node_attr_int(bn, "training_mode", 0) != 0)
        return false;
    if (!all_known(p, bn, 1, 5) || !all_known(p, conv, 1, conv->n_in))
        return false;
    const Tensor *w = cs->in[1];
    for (int k = 1; k < 5; k++)
        if (bs->in[k]->dtype != SH_F32 || bs->in[k]->numel != w->shape.d[0])
            return false;
    return w->dtype == SH_F32 && w->shape.rank >= 3 && bs->in[0]->shape.rank >= 3;
}

static bool ints_all(const Node *n, const char *name, int count, int64_t want)
{
    const int64_t *v;
    int k = node_attr_ints(n, name, &v);
    if (k < 0)
        return true; /* absent: the default */
    for (int i = 0; i < k; i++)
        if (v[i] != want)
            return false;
    return k == count;
}

/* A 2-D MaxPool 2x2 stride 2 without padding, dilation, ceil or indices. */
static bool pool_fusable(const ExecPlan *p, const Step *cs, const Step *ps)
{
    const Node *n = &p->g->nodes[ps->node];
    const int64_t *k;
    const char *pad = node_attr_str(n, "auto_pad", "NOTSET");
    return !strcmp(n->op_type, "MaxPool") && only_first_output(n) && cs->out[0]->shape.rank == 4 &&
           node_attr_ints(n, "kernel_shape", &k) == 2 && k[0] == 2 && k[1] == 2 &&
           node_attr_ints(n, "strides", &k) == 2 && ints_all(n, "strides", 2, 2) &&
           ints_all(n, "pads", 4, 0) && ints_all(n, "dilations", 2, 1) &&
           node_attr_int(n, "ceil_mode", 0) == 0 && (!strcmp(pad, "NOTSET") || !strcmp(pad, "VALID")) &&
           ps->out[0]->dtype == SH_F32;
}

/* The Conv step cs writes the MaxPool's output; its own output (and the
 * views of it fused before) need no buffer. */
static void absorb_pool(ExecPlan *p, Step *cs, Step *ps)
{
    const Graph *g = p->g;
    cs->has_fusion = true;
    cs->fusion.pool = 1;
    cs->out[0] = ps->out[0];
    ps->absorbed = true;
    ps->absorbed_by = (int)(cs - p->steps);
    const Node *n = &g->nodes[cs->node];
    OpCtx c = {.node = n, .opset = g->opset, .n_in = cs->n_in, .n_out = n->n_out, .in = cs->in,
               .out = cs->out, .fused = &cs->fusion};
    cs->scratch = n->op->scratch ? n->op->scratch(&c) : 0;
    if (cs->scratch > p->scratch_bytes)
        p->scratch_bytes = cs->scratch;
}

static int fuse_steps(ExecPlan *p)
{
    if (p->opt.keep_all || p->opt.training || p->opt.no_fusion)
        return 0;
    for (int s = 0; s < p->n_steps; s++) {
        Step *cs = &p->steps[s];
        const Node *conv = &p->g->nodes[cs->node];
        if (strcmp(conv->op_type, "Conv") != 0 || cs->fused_away || conv->out[0] < 0)
            continue;
        int v = conv->out[0], r = sole_reader(p, v);
        if (r >= 0 && bn_foldable(p, cs, &p->steps[r])) {
            int rc = fold_bn_into_conv(p, cs, &p->steps[r]);
            if (rc < 0)
                return rc;
            v = p->g->nodes[p->steps[r].node].out[0];
            r = sole_reader(p, v);
        }
        if (r >= 0 && strcmp(p->g->nodes[p->steps[r].node].op_type, "Relu") == 0) {
            cs->has_fusion = true;
            cs->fusion.relu = 1;
            p->steps[r].fused_away = true;
            v = p->g->nodes[p->steps[r].node].out[0];
            r = sole_reader(p, v);
        }
        if (r >= 0 && !p->opt.after_node && pool_fusable(p, cs, &p->steps[r]))
            absorb_pool(p, cs, &p->steps[r]);
    }
    for (int s = 0; s < p->n_steps; s++) /* merged nodes only pass the bytes on */
        if (p->steps[s].fused_away)
            p->slots[p->g->nodes[p->steps[s].node].out[0]].kind = SLOT_VIEW;
    return 0;
}

/* ---- arena ---- */

static int64_t aligned_bytes(const Tensor *t)
{
    int64_t b = (int64_t)tensor_bytes(t);
    return (b + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
}

static int new_buffer(ExecPlan *p, int *cap, int64_t bytes, int first, int last)
{
    grow_array((void **)&p->buffers, cap, p->n_buffers + 1, sizeof *p->buffers);
    Buffer *b = &p->buffers[p->n_buffers];
    b->bytes = bytes;
    b->first = first;
    b->last = last;
    b->offset = 0;
    return p->n_buffers++;
}

static int *value_last_use(const ExecPlan *p)
{
    const Graph *g = p->g;
    int *last = xmalloc((size_t)(g->n_values + 1) * sizeof *last);
    for (int v = 0; v < g->n_values; v++)
        last[v] = p->opt.keep_all ? INT32_MAX : -1;
    for (int s = 0; s < p->n_steps; s++) {
        const Node *n = &g->nodes[p->steps[s].node];
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0 && last[n->in[k]] < s)
                last[n->in[k]] = s;
    }
    for (int k = 0; k < g->n_outputs; k++)
        last[g->outputs[k]] = INT32_MAX;
    return last;
}

static bool can_overwrite(const ExecPlan *p, const Step *st, int s)
{
    const Node *n = &p->g->nodes[st->node];
    if (!(n->op->flags & OP_INPLACE) || p->opt.keep_all || n->in[0] < 0 || n->out[0] < 0)
        return false;
    const Slot *src = &p->slots[n->in[0]];
    if ((src->kind != SLOT_ARENA && src->kind != SLOT_VIEW) || src->buffer < 0)
        return false;
    const Buffer *b = &p->buffers[src->buffer];
    /* same element count, not just the same rounded byte size: a broadcast
     * input of fewer elements must not be overwritten while still read */
    return b->last == s && src->t.numel == st->out[0]->numel && src->t.dtype == st->out[0]->dtype;
}

static void assign_buffers(ExecPlan *p)
{
    const Graph *g = p->g;
    int cap = 0, *last = value_last_use(p);
    for (int v = 0; v < g->n_values; v++)
        p->slots[v].buffer = -1;
    for (int s = 0; s < p->n_steps; s++) {
        Step *st = &p->steps[s];
        const Node *n = &g->nodes[st->node];
        bool inplace = can_overwrite(p, st, s);
        for (int k = 0; k < n->n_out; k++) {
            int v = n->out[k];
            if (v < 0) { /* training reads extra outputs (saved statistics) again in backward */
                st->extra_buffer[k] = new_buffer(p, &cap, aligned_bytes(&st->extra[k]), s,
                                                 p->opt.keep_all ? INT32_MAX : s);
                continue;
            }
            Slot *slot = &p->slots[v];
            if (k == 0 && st->has_fusion && st->fusion.pool)
                continue; /* only the pooled values are stored, in the MaxPool's output */
            if ((slot->kind == SLOT_VIEW && k == 0) || (k == 0 && inplace)) {
                int b = p->slots[n->in[0]].buffer;
                slot->buffer = b;
                if (b >= 0 && p->buffers[b].last < last[v])
                    p->buffers[b].last = last[v];
                continue;
            }
            int end = last[v] < s ? s : last[v]; /* unread outputs live for their own step */
            slot->buffer = new_buffer(p, &cap, aligned_bytes(&slot->t), st->absorbed ? st->absorbed_by : s, end);
        }
    }
    free(last);
}

static int cmp_buffer_size(const void *a, const void *b, void *ctx)
{
    const Buffer *bufs = ctx;
    int x = *(const int *)a, y = *(const int *)b;
    if (bufs[x].bytes != bufs[y].bytes)
        return bufs[x].bytes > bufs[y].bytes ? -1 : 1;
    return x - y;
}

/* Places the largest buffers first, each at the lowest offset that does
 * not overlap a placed buffer whose lifetime intersects its own. */
static void place_buffers(ExecPlan *p)
{
    int n = p->n_buffers;
    int *order = xmalloc((size_t)(n + 1) * sizeof *order);
    int *placed = xmalloc((size_t)(n + 1) * sizeof *placed);
    int n_placed = 0;
    for (int i = 0; i < n; i++)
        order[i] = i;
    /* insertion sort keeps this dependency-free and n is small */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && cmp_buffer_size(&order[j], &order[j - 1], p->buffers) < 0; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        Buffer *b = &p->buffers[order[i]];
        int64_t offset = 0;
        bool moved = true;
        while (moved) { /* first fit: bump past every conflicting placed buffer */
            moved = false;
            for (int j = 0; j < n_placed; j++) {
                const Buffer *o = &p->buffers[placed[j]];
                bool live_together = o->first <= b->last && b->first <= o->last;
                bool overlap = offset < o->offset + o->bytes && o->offset < offset + b->bytes;
                if (live_together && overlap && b->bytes > 0) {
                    offset = o->offset + o->bytes;
                    moved = true;
                }
            }
        }
        b->offset = offset;
        placed[n_placed++] = order[i];
        if (offset + b->bytes > total)
            total = offset + b->bytes;
    }
    p->arena_bytes = (size_t)total;
    free(order);
    free(placed);
}

static int alloc_arena(ExecPlan *p)
{
    int rc;
    if ((rc = sh_check_budget(p->arena_bytes, "the activations")) < 0 ||
        (rc = sh_check_budget(p->scratch_bytes, "scratch space")) < 0)
        return rc;
    if (p->n_buffers) { /* empty tensors too get a real address, not NULL + 0 */
        p->arena = aligned_alloc(ARENA_ALIGN, p->arena_bytes ? p->arena_bytes : ARENA_ALIGN);
        if (!p->arena)
            return sh_fail(SH_E_NOMEM, "out of memory: the activations need %.1f MB",
                           (double)p->arena_bytes / 1e6);
    }
    if (p->scratch_bytes) {
        size_t sb = (p->scratch_bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
        p->scratch = aligned_alloc(ARENA_ALIGN, sb);
        if (!p->scratch)
            return sh_fail(SH_E_NOMEM, "out of memory: scratch space of %.1f MB",
                           (double)sb / 1e6);
    }
    for (int v = 0; v < p->g->n_values; v++) {
        Slot *slot = &p->slots[v];
        if ((slot->kind == SLOT_ARENA || slot->kind == SLOT_VIEW) && slot->buffer >= 0)
            slot->t.data = p->arena + p->buffers[slot->buffer].offset;
        if (slot->kind == SLOT_ARENA || slot->kind == SLOT_VIEW)
            p->activation_bytes += tensor_bytes(&slot->t);
    }
    for (int s = 0; s < p->n_steps; s++) {
        const Node *n = &p->g->nodes[p->steps[s].node];
        for (int k = 0; k < n->n_out; k++)
            if (p->steps[s].extra_buffer[k] >= 0)
                p->steps[s].extra[k].data = p->arena + p->buffers[p->steps[s].extra_buffer[k]].offset;
    }
    return 0;
}

/* ---- batch parts ----
 * With several threads, an inference plan of a graph that computes each
 * sample on its own runs the batch as parts: one whole forward pass per
 * thread on a slice of the batch. Every op then runs in parallel, not only
 * those that split their own work, and threads meet once per run instead
 * of once per node. */

enum { PART_MIN_MACS = 1 << 22 }; /* smaller runs cost less than starting a thread */

/* The batch all graph inputs share, or -1. */
static int64_t common_batch(const ExecPlan *p, const Shape *shapes)
{
    const Graph *g = p->g;
    int64_t batch = -1;
    for (int i = 0; i < g->n_inputs; i++) {
        if (p->slots[g->inputs[i]].kind != SLOT_INPUT || shapes[i].rank < 1 ||
            (batch >= 0 && shapes[i].d[0] != batch))
            return -1;
        batch = shapes[i].d[0];
    }
    return batch;
}

static bool parts_wanted(const ExecPlan *p, const Shape *shapes, int64_t *batch)
{
    const ExecOptions *o = &p->opt;
    const Graph *g = p->g;
    if (o->training || o->keep_all || o->shapes_only || o->profile || o->after_node || o->one_part ||
        sh_get_threads() < 2 || sh_in_parallel())
        return false;
    if ((*batch = common_batch(p, shapes)) < 2)
        return false;
    int64_t macs = 0;
    for (int i = 0; i < g->n_nodes; i++)
        macs += p->node_macs[i];
    if (macs < PART_MIN_MACS)
        return false;
    for (int k = 0; k < g->n_outputs; k++) {
        const Slot *s = &p->slots[g->outputs[k]];
        if ((s->kind != SLOT_ARENA && s->kind != SLOT_VIEW) || s->t.shape.rank < 1 || s->t.shape.d[0] != *batch)
            return false;
    }
    bool *known = xcalloc((size_t)g->n_values + 1, sizeof *known);
    for (int v = 0; v < g->n_values; v++)
        known[v] = slot_has_data(&p->slots[v]);
    char why[256];
    bool ok = graph_batch_separable(g, known, why, sizeof why);
    free(known);
    return ok;
}

static int plan_parts(ExecPlan *p, const Shape *shapes, int64_t batch)
{
    const Graph *g = p->g;
    int n = sh_get_threads() < batch ? sh_get_threads() : (int)batch, rc = 0;
    ExecOptions o = p->opt;
    o.one_part = true;
    p->parts = xcalloc((size_t)n, sizeof *p->parts);
    p->part_batch = xcalloc((size_t)n, sizeof *p->part_batch);
    p->part_start = xcalloc((size_t)n, sizeof *p->part_start);
    p->part_in = xcalloc((size_t)(n * g->n_inputs) + 1, sizeof *p->part_in);
    p->part_in_ptrs = xcalloc((size_t)(n * g->n_inputs) + 1, sizeof *p->part_in_ptrs);
    p->part_errors = xcalloc((size_t)n, sizeof *p->part_errors);
    p->part_outputs = xcalloc((size_t)g->n_outputs + 1, sizeof *p->part_outputs);
    p->n_parts = n;
    p->batch = batch;
    Shape *s = xcalloc((size_t)g->n_inputs + 1, sizeof *s);
    for (int i = 0; i < n && rc == 0; i++) {
        p->part_batch[i] = batch / n + (i < batch % n);
        p->part_start[i] = i ? p->part_start[i - 1] + p->part_batch[i - 1] : 0;
        for (int k = 0; k < g->n_inputs; k++) {
            s[k] = shapes[k];
            s[k].d[0] = p->part_batch[i];
        }
        rc = exec_plan(g, s, &o, &p->parts[i]);
    }
    free(s);
    for (int k = 0; rc == 0 && k < g->n_outputs; k++) {
        Tensor *t = &p->slots[g->outputs[k]].t;
        if (!t->data) /* an output listed twice shares one buffer */
            t->data = p->part_outputs[k] = xmalloc(tensor_bytes(t) + 1);
    }
    return rc;
}

typedef struct {
    ExecPlan *p;
    Tensor *const *inputs;
} PartsRun;

/* Bytes of one sample of t (t's first dimension is the batch). */
static size_t sample_bytes(const Tensor *t, int64_t batch)
{
    return tensor_bytes(t) / (size_t)batch;
}

static int run_part(int i, void *ctx)
{
    PartsRun *r = ctx;
    ExecPlan *p = r->p;
    const Graph *g = p->g;
    const int64_t start = p->part_start[i];
    Tensor *views = p->part_in + (size_t)i * (size_t)g->n_inputs;
    Tensor **ptrs = p->part_in_ptrs + (size_t)i * (size_t)g->n_inputs;
    for (int k = 0; k < g->n_inputs; k++) {
        const Tensor *t = r->inputs[k];
        views[k] = *t;
        views[k].owns = false;
        views[k].shape.d[0] = p->part_batch[i];
        views[k].numel = t->numel / p->batch * p->part_batch[i];
        views[k].data = (char *)t->data + (size_t)start * sample_bytes(t, p->batch);
        ptrs[k] = &views[k];
    }
    int rc = exec_run(p->parts[i], ptrs);
    for (int k = 0; rc == 0 && k < g->n_outputs; k++) {
        const Tensor *dst = &p->slots[g->outputs[k]].t, *src = exec_output(p->parts[i], k);
        memcpy((char *)dst->data + (size_t)start * sample_bytes(dst, p->batch), src->data, tensor_bytes(src));
    }
    if (rc < 0)
        p->part_errors[i] = xstrdup(sh_errmsg());
    return rc;
}

static int run_parts(ExecPlan *p, Tensor *const *inputs)
{
    PartsRun r = {.p = p, .inputs = inputs};
    int rc = sh_run_parallel(p->n_parts, run_part, &r);
    const char *first = NULL;
    for (int i = 0; i < p->n_parts && !first; i++)
        first = p->part_errors[i];
    if (rc < 0 && first)
        sh_fail(rc, "%s", first);
    for (int i = 0; i < p->n_parts; i++) {
        free(p->part_errors[i]);
        p->part_errors[i] = NULL;
    }
    return rc < 0 ? rc : 0;
}

int exec_plan(const Graph *g, const Shape *input_shapes, const ExecOptions *opt, ExecPlan **out)
{
    ExecPlan *p = xcalloc(1, sizeof *p);
    int rc;
    *out = NULL;
    p->g = g;
    if (opt)
        p->opt = *opt;
    p->slots = xcalloc((size_t)g->n_values + 1, sizeof *p->slots);
    p->node_macs = xcalloc((size_t)g->n_nodes + 1, sizeof *p->node_macs);
    p->node_seconds = xcalloc((size_t)g->n_nodes + 1, sizeof *p->node_seconds);
    if ((rc = bind_inputs(p, input_shapes)) < 0 || (rc = plan_nodes(p)) < 0)
        goto fail;
    for (int k = 0; k < g->n_outputs; k++) {
        const Slot *s = &p->slots[g->outputs[k]];
        if (s->kind == SLOT_NONE) {
            rc = sh_fail(SH_E_FORMAT, "graph output '%s' is not produced by any node",
                         g->values[g->outputs[k]].name);
            goto fail;
        }
    }
    int64_t batch;
    if (parts_wanted(p, input_shapes, &batch)) {
        if ((rc = plan_parts(p, input_shapes, batch)) < 0)
            goto fail;
    } else if (!p->opt.shapes_only) {
        if ((rc = fuse_steps(p)) < 0)
            goto fail;
        assign_buffers(p);
        place_buffers(p);
        if ((rc = alloc_arena(p)) < 0)
            goto fail;
    }
    *out = p;
    return 0;
fail:
    exec_free(p);
    return rc;
}

static uint64_t node_seed(const ExecPlan *p, int node)
{
    uint64_t z = p->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)node * 0xBF58476D1CE4E5B9ULL + 1;
    z = (z ^ (z >> 31)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 29);
}

void exec_set_seed(ExecPlan *p, uint64_t seed) { p->seed = seed; }

static int run_steps_from(ExecPlan *p, int first);

int exec_run(ExecPlan *p, Tensor *const *inputs)
{
    const Graph *g = p->g;
    if (p->opt.shapes_only)
        return sh_fail(SH_E_STATE, "this plan only infers shapes");
    for (int i = 0; i < g->n_inputs; i++) {
        Slot *slot = &p->slots[g->inputs[i]];
        const Tensor *t = inputs[i];
        if (!t || t->dtype != slot->t.dtype || !shape_eq(&t->shape, &slot->t.shape)) {
            char want[128], got[128];
            return sh_fail(SH_E_SHAPE, "input '%s' needs %s %s, got %s %s",
                           g->values[g->inputs[i]].name, dtype_name(slot->t.dtype),
                           shape_str(&slot->t.shape, want, sizeof want),
                           t ? dtype_name(t->dtype) : "nothing",
                           t ? shape_str(&t->shape, got, sizeof got) : "");
        }
        if (slot->kind == SLOT_KNOWN) { /* planned with this input's value */
            if (memcmp(slot->t.data, t->data, tensor_bytes(t)) != 0)
                return sh_fail(SH_E_STATE, "input '%s' decides shapes and differs from the value planned with",
                               g->values[g->inputs[i]].name);
            continue;
        }
        slot->t.data = t->data;
    }
    return p->n_parts ? run_parts(p, inputs) : run_steps_from(p, 0);
}

/* Runs steps first.. in order (exec_run and exec_rerun_from). */
static int run_steps_from(ExecPlan *p, int first)
{
    const Graph *g = p->g;
    for (int s = first; s < p->n_steps; s++) {
        Step *st = &p->steps[s];
        const Node *n = &g->nodes[st->node];
        if (st->absorbed)
            continue;
        if (node_aliases(p, n) || st->fused_away) {
            st->out[0]->data = st->in[0]->data;
            if (p->opt.after_node)
                p->opt.after_node(p->opt.hook_ctx, n, st->out, n->n_out);
            continue;
        }
        OpCtx c = {.node = n, .opset = g->opset, .n_in = st->n_in, .n_out = n->n_out,
                   .in = st->in, .out = st->out, .scratch = p->scratch,
                   .scratch_bytes = p->scratch_bytes, .training = p->opt.training,
                   .fused = st->has_fusion ? &st->fusion : NULL, .seed = node_seed(p, st->node)};
        double t0 = p->opt.profile ? now_seconds() : 0;
        int rc = n->op->forward(&c);
        if (rc < 0)
            return rc;
        if (p->opt.profile)
            p->node_seconds[st->node] += now_seconds() - t0;
        if (p->opt.after_node)
            p->opt.after_node(p->opt.hook_ctx, n, st->out, n->n_out);
    }
    return 0;
}

int exec_rerun_from(ExecPlan *p, int node)
{
    const Graph *g = p->g;
    if (!p->opt.keep_all || p->opt.shapes_only)
        return sh_fail(SH_E_STATE, "rerunning part of a plan needs a plan made with keep_all");
    if (node < 0 || node > g->n_nodes)
        return sh_fail(SH_E_ARG, "rerun from node %d: the graph has nodes 0..%d", node, g->n_nodes - 1);
    for (int i = 0; i < g->n_inputs; i++)
        if (p->slots[g->inputs[i]].kind == SLOT_INPUT && !p->slots[g->inputs[i]].t.data)
            return sh_fail(SH_E_STATE, "rerunning part of a plan needs a full exec_run first");
    int first = 0; /* steps follow node order */
    while (first < p->n_steps && p->steps[first].node < node)
        first++;
    return run_steps_from(p, first);
}

double exec_node_seconds(const ExecPlan *p, int i) { return p->node_seconds[i]; }

const Tensor *exec_value(const ExecPlan *p, int v) { return &p->slots[v].t; }

const Tensor *exec_output(const ExecPlan *p, int k) { return &p->slots[p->g->outputs[k]].t; }

bool exec_value_known(const ExecPlan *p, int v) { return slot_has_data(&p->slots[v]); }

int64_t exec_node_macs(const ExecPlan *p, int i) { return p->node_macs[i]; }

int exec_parts(const ExecPlan *p) { return p->n_parts ? p->n_parts : 1; }

size_t exec_arena_bytes(const ExecPlan *p)
{
    size_t bytes = p->arena_bytes;
    for (int i = 0; i < p->n_parts; i++)
        bytes += exec_arena_bytes(p->parts[i]);
    return bytes;
}

size_t exec_activation_bytes(const ExecPlan *p)
{
    size_t bytes = p->activation_bytes;
    for (int i = 0; i < p->n_parts; i++)
        bytes += exec_activation_bytes(p->parts[i]);
    return bytes;
}

/* ---- backward ---- */

/* A value needs a gradient if it is a parameter or computed from one. */
static void mark_needs_grad(ExecPlan *p)
{
    const Graph *g = p->g;
    p->needs_grad = xcalloc((size_t)g->n_values + 1, sizeof *p->needs_grad);
    for (int v = 0; v < g->n_values; v++)
        if (p->slots[v].kind == SLOT_CONST && is_param(p, &p->slots[v].t))
            p->needs_grad[v] = true;
    for (int s = 0; s < p->n_steps; s++) {
        const Node *n = &g->nodes[p->steps[s].node];
        bool any = false;
        for (int k = 0; k < n->n_in; k++)
            any = any || (n->in[k] >= 0 && p->needs_grad[n->in[k]]);
        for (int k = 0; any && k < n->n_out; k++)
            if (n->out[k] >= 0 && p->slots[n->out[k]].t.dtype == SH_F32)
                p->needs_grad[n->out[k]] = true;
    }
}

/* Gradient tensors: activations get buffers in one zeroed block;
 * parameters point into the caller's gradient block at run time. */
static int alloc_grads(ExecPlan *p)
{
    const Graph *g = p->g;
    mark_needs_grad(p);
    p->grad = xcalloc((size_t)g->n_values + 1, sizeof *p->grad);
    p->grad_zeroed = xcalloc((size_t)g->n_values + 1, sizeof *p->grad_zeroed);
    size_t total = 0;
    for (int v = 0; v < g->n_values; v++)
        if (p->needs_grad[v] && p->slots[v].kind != SLOT_CONST)
            total += ((size_t)p->slots[v].t.numel + 15) / 16 * 16;
    p->grad_floats = total;
    int rc = sh_check_budget(total * sizeof(float), "the gradients");
    if (rc < 0)
        return rc;
    p->grad_arena = total ? aligned_alloc(64, total * sizeof(float)) : NULL;
    if (total && !p->grad_arena)
        return sh_fail(SH_E_NOMEM, "out of memory: gradients need %.1f MB", (double)total * 4 / 1e6);
    size_t off = 0;
    for (int v = 0; v < g->n_values; v++) {
        if (!p->needs_grad[v])
            continue;
        p->grad[v] = tensor_view(SH_F32, &p->slots[v].t.shape, NULL);
        if (p->slots[v].kind != SLOT_CONST) {
            p->grad[v].data = p->grad_arena + off;
            off += ((size_t)p->slots[v].t.numel + 15) / 16 * 16;
        }
    }
    return 0;
}

/* Clears value v's arena gradient the first time this backward touches it
 * (just before it is written or read, while it is about to be in cache:
 * clearing the whole arena up front costs a pass over cold memory). */
static void grad_touch(ExecPlan *p, int v)
{
    if (p->grad_zeroed[v] || p->slots[v].kind == SLOT_CONST)
        return;
    memset(p->grad[v].data, 0, (size_t)p->grad[v].numel * sizeof(float));
    p->grad_zeroed[v] = true;
}

/* Whether node n's backward may write input k's gradient instead of adding
 * to it: the op can, nothing wrote that gradient yet this backward, it is
 * not a parameter's (those add into the caller's block), and the value is
 * not input k twice (Mul(x, x) adds two terms). */
static bool grad_assignable(const ExecPlan *p, const Node *n, int k)
{
    const int v = n->in[k];
    if (k >= 32 || !(n->op->grad_assign & (1u << k)) || p->grad_zeroed[v] || p->slots[v].kind == SLOT_CONST)
        return false;
    for (int j = 0; j < n->n_in; j++)
        if (j != k && n->in[j] == v)
            return false;
    return true;
}

static int backward_step(ExecPlan *p, Step *st)
{
    const Node *n = &p->g->nodes[st->node];
    Tensor *gout[64] = {0}, *gin[64] = {0};
    bool any_in = false, any_out = false;
    if (n->n_in > 64 || n->n_out > 64)
        return sh_fail(SH_E_UNSUPPORTED, "node '%s' has too many inputs or outputs", n->name);
    for (int k = 0; k < n->n_out; k++)
        if (n->out[k] >= 0 && p->needs_grad[n->out[k]]) {
            gout[k] = &p->grad[n->out[k]];
            any_out = true;
        }
    for (int k = 0; k < n->n_in; k++)
        if (n->in[k] >= 0 && p->needs_grad[n->in[k]]) {
            gin[k] = &p->grad[n->in[k]];
            any_in = true;
        }
    if (!any_in || !any_out)
        return 0;
    if (!n->op->backward)
        return sh_fail(SH_E_UNSUPPORTED, "node '%s' (%s) has no gradient; cannot train through it",
                       n->name, n->op_type);
    for (int k = 0; k < n->n_out; k++) /* an output no consumer differentiated reads as zeros */
        if (gout[k])
            grad_touch(p, n->out[k]);
    uint32_t assign = 0;
    for (int k = 0; k < n->n_in; k++)
        if (gin[k] && grad_assignable(p, n, k))
            assign |= 1u << k;
        else if (gin[k])
            grad_touch(p, n->in[k]);
    OpCtx c = {.node = n, .opset = p->g->opset, .n_in = st->n_in, .n_out = n->n_out, .in = st->in,
               .out = st->out, .scratch = p->scratch, .scratch_bytes = p->scratch_bytes,
               .training = p->opt.training, .seed = node_seed(p, st->node), .grad_assign = assign};
    int rc = n->op->backward(&c, gout, gin);
    for (int k = 0; k < n->n_in; k++) /* written in full now */
        if (assign & (1u << k))
            p->grad_zeroed[n->in[k]] = true;
    return rc;
}

int exec_backward(ExecPlan *p, Tensor *const *output_grads, float *grads)
{
    const Graph *g = p->g;
    int rc;
    if (!p->opt.keep_all || p->opt.shapes_only)
        return sh_fail(SH_E_STATE, "backward needs a plan made with keep_all");
    if (!p->grad && (rc = alloc_grads(p)) < 0)
        return rc;
    memset(p->grad_zeroed, 0, (size_t)g->n_values * sizeof *p->grad_zeroed);
    for (int v = 0; v < g->n_values; v++)
        if (p->needs_grad[v] && p->slots[v].kind == SLOT_CONST)
            p->grad[v].data = grads + (tensor_f32(&p->slots[v].t) - p->opt.params);
    for (int k = 0; k < g->n_outputs; k++) {
        int v = g->outputs[k];
        if (!output_grads[k] || !p->needs_grad[v])
            continue;
        if (output_grads[k]->numel != p->grad[v].numel)
            return sh_fail(SH_E_SHAPE, "the gradient of output '%s' has the wrong size", g->values[v].name);
        grad_touch(p, v);
        float *d = tensor_f32(&p->grad[v]);
        const float *s = tensor_f32(output_grads[k]);
        for (int64_t i = 0; i < output_grads[k]->numel; i++)
            d[i] += s[i];
    }
    for (int s = p->n_steps - 1; s >= 0; s--)
        if ((rc = backward_step(p, &p->steps[s])) < 0)
            return rc;
    for (int v = 0; v < g->n_values; v++) /* gradients nothing reached are zeros (exec_value_grad) */
        if (p->needs_grad[v])
            grad_touch(p, v);
    return 0;
}

int graph_macs(const Graph *g, int64_t *macs, int64_t *total)
{
    Shape *shapes = xcalloc((size_t)g->n_inputs + 1, sizeof *shapes);
    ExecPlan *p = NULL;
    int rc = 0;
    for (int i = 0; i < g->n_inputs && rc == 0; i++)
        rc = graph_input_shape(g, i, 1, &shapes[i]);
    ExecOptions opt = {.shapes_only = true};
    if (rc == 0)
        rc = exec_plan(g, shapes, &opt, &p);
    free(shapes);
    if (rc < 0)
        return rc;
    *total = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (macs)
            macs[i] = exec_node_macs(p, i);
        *total += exec_node_macs(p, i);
    }
    exec_free(p);
    return 0;
}

const Tensor *exec_value_grad(const ExecPlan *p, int v)
{
    if (!p->grad || !p->needs_grad[v])
        return NULL;
    return &p->grad[v];
}
