/* Shape ops: Flatten, Reshape, Transpose, Squeeze, Unsqueeze, Identity,
 * Dropout, Shape, Size, Expand, Tile. They work on every dtype by copying
 * elements of dtype_size bytes. Reshape-like ops are OP_ALIAS: the
 * executor shares input 0's buffer and never calls their forward.
 *
 * Backward (float32 gradients, accumulated with +=): the reshape-like ops
 * pass the gradient through in the same element order, Transpose applies
 * the inverse permutation, Expand and Tile sum over the repeated elements,
 * training Dropout multiplies by the mask it redraws from the step's seed. */
#include "../data.h"
#include "../error.h"
#include "../depgraph.h"
#include "../op.h"

#include <stdbool.h>
#include <string.h>

/* ---- small helpers ------------------------------------------------------ */

/* Requires input i with a dtype shears can store. */
static int check_any_input(const OpCtx *c, int i)
{
    int rc = op_check_input(c, i, SH_UNDEF);
    if (rc < 0)
        return rc;
    if (dtype_size(c->in[i]->dtype) == 0)
        return op_fail(c, SH_E_UNSUPPORTED, "input %d has unsupported element type %d", i,
                       (int)c->in[i]->dtype);
    return 0;
}

/* Product of dims [from, to) with overflow checks. */
static bool dims_prod(const Shape *s, int from, int to, int64_t *out)
{
    int64_t p = 1;
    for (int i = from; i < to; i++)
        if (!sh_mul_ok(p, s->d[i], &p))
            return false;
    *out = p;
    return true;
}

/* Reads an integer list (shape, axes, repeats) from input i, which must be
 * known when planning. Returns the count or a negative error. */
static int input_ints(const OpCtx *c, int i, const char *what, int64_t *buf, int cap)
{
    const Tensor *t = c->in[i];
    if (t->dtype != SH_I64)
        return op_fail(c, SH_E_UNSUPPORTED, "%s (input %d) is %s; expected int64", what, i,
                       dtype_name(t->dtype));
    if (t->shape.rank > 1)
        return op_fail(c, SH_E_SHAPE, "%s (input %d) must be 1-D, got rank %d", what, i,
                       t->shape.rank);
    if (t->numel > cap)
        return op_fail(c, SH_E_UNSUPPORTED, "%s (input %d) has %lld values; at most %d supported",
                       what, i, (long long)t->numel, cap);
    if (t->numel > 0 && !t->data)
        return op_fail(c, SH_E_STATE, "%s (input %d) is not known when planning", what, i);
    for (int64_t k = 0; k < t->numel; k++)
        buf[k] = tensor_i64(t)[k];
    return (int)t->numel;
}

/* An integer list that moved from an attribute to input `input` at some
 * opset: the input wins when present, else the attribute. *count is -1
 * when neither is given. */
static int ints_arg(const OpCtx *c, const char *attr, int input, int64_t *buf, int cap,
                    int *count)
{
    *count = -1;
    if (input < c->n_in && c->in[input]) {
        int n = input_ints(c, input, attr, buf, cap);
        if (n < 0)
            return n;
        *count = n;
        return 0;
    }
    const int64_t *v;
    int n = node_attr_ints(c->node, attr, &v);
    if (n < 0)
        return 0;
    if (n > cap)
        return op_fail(c, SH_E_UNSUPPORTED, "attribute %s has %d values; at most %d supported",
                       attr, n, cap);
    memcpy(buf, v, (size_t)n * sizeof *buf);
    *count = n;
    return 0;
}

/* Normalizes axes against rank, rejecting out-of-range and repeated axes. */
static int normalize_axes(const OpCtx *c, int64_t *axes, int n, int rank)
{
    bool seen[SH_MAX_RANK] = {false};
    for (int i = 0; i < n; i++) {
        int a = shape_axis(axes[i], rank);
        if (a < 0)
            return op_fail(c, SH_E_ARG, "axis %lld is out of range for rank %d",
                           (long long)axes[i], rank);
        if (seen[a])
            return op_fail(c, SH_E_ARG, "axis %lld is repeated", (long long)axes[i]);
        seen[a] = true;
        axes[i] = a;
    }
    return 0;
}

/* ---- gradient helpers ------------------------------------------------------ */

/* Eight floats at any alignment (GCC/clang vector extension): plain loops
 * with a runtime length do not vectorize at -O2 with GCC 12. */
typedef float f32x8 __attribute__((vector_size(32), aligned(4), may_alias));

/* d[i] += s[i] for i < n. */
static void add_into(float *restrict d, const float *restrict s, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        *(f32x8 *)(d + i) += *(const f32x8 *)(s + i);
    for (; i < n; i++)
        d[i] += s[i];
}

/* Sum of s[0..n) in eight lanes, then the lanes in order. */
static float sum_of(const float *s, int64_t n)
{
    f32x8 acc = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        acc += *(const f32x8 *)(s + i);
    float t = 0;
    for (int k = 0; k < 8; k++)
        t += acc[k];
    for (; i < n; i++)
        t += s[i];
    return t;
}

/* Requires gradient g of value v (input or output i) to be float32 with
 * v's element count. */
static int check_grad(const OpCtx *c, const Tensor *g, const Tensor *v, const char *what, int i)
{
    if (g->dtype != SH_F32 || g->numel != v->numel || (g->numel && !g->data))
        return op_fail(c, SH_E_STATE, "gradient of %s %d is %s with %lld elements; expected float32 with %lld",
                       what, i, dtype_name(g->dtype), (long long)g->numel, (long long)v->numel);
    return 0;
}

/* The gradients backward uses: gin[0] and gout[0]. Returns 1 when no
 * gradient flows (either is NULL), 0 when both are usable. */
static int grad_pair(const OpCtx *c, Tensor **gout, Tensor **gin)
{
    if (!gin[0] || !gout[0])
        return 1;
    int rc = check_grad(c, gin[0], c->in[0], "input", 0);
    if (rc < 0 || (rc = check_grad(c, gout[0], c->out[0], "output", 0)) < 0)
        return rc;
    return 0;
}

/* ---- aliasing ops: Identity, Flatten, Reshape, Squeeze, Unsqueeze ------- */

/* The executor aliases these; forward only runs when the buffers differ. */
static int alias_forward(OpCtx *c)
{
    size_t bytes = tensor_bytes(c->out[0]);
    if (bytes && c->out[0]->data != c->in[0]->data)
        memcpy(c->out[0]->data, c->in[0]->data, bytes);
    return 0;
}

/* Same element order on both sides: the gradient passes through. */
static int alias_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    int rc = grad_pair(c, gout, gin);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    add_into(tensor_f32(gin[0]), tensor_f32(gout[0]), gin[0]->numel);
    return 0;
}

static int identity_infer(OpCtx *c)
{
    int rc = check_any_input(c, 0);
    if (rc < 0)
        return rc;
    op_set_out(c, 0, c->in[0]->dtype, &c->in[0]->shape);
    return 0;
}

static int flatten_infer(OpCtx *c)
{
    int rc = check_any_input(c, 0);
    if (rc < 0)
        return rc;
    const Shape *s = &c->in[0]->shape;
    int64_t axis = node_attr_int(c->node, "axis", 1);
    if (axis < 0)
        axis += s->rank;
    if (axis < 0 || axis > s->rank)
        return op_fail(c, SH_E_ARG, "axis %lld is out of range for rank %d",
                       (long long)node_attr_int(c->node, "axis", 1), s->rank);
    Shape o = {.rank = 2};
    if (!dims_prod(s, 0, (int)axis, &o.d[0]) || !dims_prod(s, (int)axis, s->rank, &o.d[1]))
        return op_fail(c, SH_E_SHAPE, "flattened size overflows");
    op_set_out(c, 0, c->in[0]->dtype, &o);
    return 0;
}

static int reshape_fail(const OpCtx *c, const char *why, const int64_t *want, int n)
{
    char si[128], sw[128];
    Shape w = shape_make(n, want);
    return op_fail(c, SH_E_SHAPE, "cannot reshape %s (%lld elements) to %s: %s",
                   shape_str(&c->in[0]->shape, si, sizeof si), (long long)c->in[0]->numel,
                   shape_str(&w, sw, sizeof sw), why);
}

static int reshape_infer(OpCtx *c)
{
    int rc = check_any_input(c, 0);
    if (rc < 0 || (rc = op_check_input(c, 1, SH_UNDEF)) < 0)
        return rc;
    int64_t want[SH_MAX_RANK];
    int n = input_ints(c, 1, "shape", want, SH_MAX_RANK);
    if (n < 0)
        return n;
    const Shape *in = &c->in[0]->shape;
    bool allowzero = c->opset >= 14 && node_attr_int(c->node, "allowzero", 0) != 0;
    Shape o = {.rank = n};
    int infer_at = -1;
    bool has_zero = false;
    int64_t known = 1;
    for (int i = 0; i < n; i++) {
        int64_t v = want[i];
        if (v == -1) {
            if (infer_at >= 0)
                return reshape_fail(c, "more than one -1", want, n);
            infer_at = i;
            continue;
        }
        if (v == 0 && !allowzero) {
            if (i >= in->rank)
                return reshape_fail(c, "a 0 copies a dimension the input does not have", want, n);
            v = in->d[i];
        }
        if (v < 0)
            return reshape_fail(c, "negative dimension", want, n);
        has_zero |= v == 0;
        o.d[i] = v;
        if (!sh_mul_ok(known, v, &known))
            return reshape_fail(c, "size overflows", want, n);
    }
    if (infer_at >= 0) {
        if (has_zero)
            return reshape_fail(c, "-1 is ambiguous beside a zero dimension", want, n);
        if (c->in[0]->numel % known != 0)
            return reshape_fail(c, "sizes differ", want, n);
        o.d[infer_at] = c->in[0]->numel / known;
    }
    if (shape_numel(&o) != c->in[0]->numel)
        return reshape_fail(c, "sizes differ", want, n);
    op_set_out(c, 0, c->in[0]->dtype, &o);
    return 0;
}

static int squeeze_infer(OpCtx *c)
{
    int rc = check_any_input(c, 0);
    if (rc < 0)
        return rc;
    const Shape *in = &c->in[0]->shape;
    int64_t axes[SH_MAX_RANK];
    int n;
    if ((rc = ints_arg(c, "axes", 1, axes, SH_MAX_RANK, &n)) < 0)
        return rc;
    bool drop[SH_MAX_RANK] = {false};
    if (n <= 0) { /* no (or empty) axes: drop every 1, as ONNX Runtime does */
        for (int i = 0; i < in->rank; i++)
            drop[i] = in->d[i] == 1;
    } else {
        if ((rc = normalize_axes(c, axes, n, in->rank)) < 0)
            return rc;
        for (int i = 0; i < n; i++) {
            if (in->d[axes[i]] != 1)
                return op_fail(c, SH_E_SHAPE, "cannot squeeze axis %lld of size %lld",
                               (long long)axes[i], (long long)in->d[axes[i]]);
            drop[axes[i]] = true;
        }
    }
    Shape o = {.rank = 0};
    for (int i = 0; i < in->rank; i++)
        if (!drop[i])
            o.d[o.rank++] = in->d[i];
    op_set_out(c, 0, c->in[0]->dtype, &o);
    return 0;
}

static int unsqueeze_infer(OpCtx *c)
{
    int rc = check_any_input(c, 0);
    if (rc < 0)
        return rc;
    const Shape *in = &c->in[0]->shape;
    int64_t axes[SH_MAX_RANK];
    int n;
    if ((rc = ints_arg(c, "axes", 1, axes, SH_MAX_RANK, &n)) < 0)
        return rc;
    if (n < 0)
        return op_fail(c, SH_E_FORMAT, "axes are missing (attribute before opset 13, input 1 from 13)");
    int rank = in->rank + n;
    if (rank > SH_MAX_RANK)
        return op_fail(c, SH_E_UNSUPPORTED, "output rank %d exceeds the maximum %d", rank,
                       SH_MAX_RANK);
    if ((rc = normalize_axes(c, axes, n, rank)) < 0)
        return rc;
    bool inserted[SH_MAX_RANK] = {false};
    for (int i = 0; i < n; i++)
        inserted[axes[i]] = true;
    Shape o = {.rank = rank};
    for (int i = 0, j = 0; i < rank; i++)
        o.d[i] = inserted[i] ? 1 : in->d[j++];
    op_set_out(c, 0, c->in[0]->dtype, &o);
    return 0;
}

/* ---- Dropout ------------------------------------------------------------ */

/* Dropout's output 0 has the input's shape; the optional mask is bool from
 * opset 10, the input's type before. */
static int dropout_infer(OpCtx *c)
{
    int rc = identity_infer(c);
    if (rc < 0)
        return rc;
    if (c->n_out > 1 && c->out[1])
        op_set_out(c, 1, c->opset >= 10 ? SH_BOOL : c->in[0]->dtype, &c->in[0]->shape);
    return 0;
}

/* How one run drops: it drops when the trainer runs (c->training) or, from
 * opset 12, when the training_mode input is true, and ratio > 0. Element i
 * is kept when the i-th uniform draw of a xoshiro256** seeded with c->seed
 * is >= ratio (so P(keep) = 1 - ratio), and scaled by 1 / (1 - ratio). */
typedef struct {
    bool active;
    float ratio, scale;
} DropPlan;

/* Ratio: attribute before opset 12, optional scalar input 1 from 12;
 * 0.5 by default. */
static int dropout_ratio(const OpCtx *c, float *ratio)
{
    *ratio = c->opset >= 12 ? 0.5f : node_attr_float(c->node, "ratio", 0.5f);
    if (c->opset >= 12 && c->n_in > 1 && c->in[1]) {
        const Tensor *t = c->in[1];
        if (t->dtype != SH_F32 || t->numel != 1 || !t->data)
            return op_fail(c, SH_E_ARG, "ratio (input 1) must be one float32 value");
        *ratio = tensor_f32(t)[0];
    }
    if (!(*ratio >= 0 && *ratio <= 1))
        return op_fail(c, SH_E_ARG, "ratio %g is outside [0, 1]", (double)*ratio);
    return 0;
}

static int dropout_plan(const OpCtx *c, DropPlan *d)
{
    *d = (DropPlan){.active = false, .ratio = 0, .scale = 1};
    bool training = c->training != 0;
    if (c->opset >= 12 && c->n_in > 2 && c->in[2]) {
        const Tensor *t = c->in[2];
        if (t->numel != 1 || !t->data)
            return op_fail(c, SH_E_ARG, "training_mode (input 2) must be one value");
        training |= tensor_get_f(t, 0) != 0;
    }
    if (!training)
        return 0;
    int rc = dropout_ratio(c, &d->ratio);
    if (rc < 0)
        return rc;
    if (d->ratio == 0)
        return 0;
    if (c->in[0]->dtype != SH_F32)
        return op_fail(c, SH_E_UNSUPPORTED, "training dropout needs float32 input, got %s",
                       dtype_name(c->in[0]->dtype));
    d->active = true;
    d->scale = d->ratio < 1 ? 1.0f / (1.0f - d->ratio) : 0.0f; /* ratio 1 drops everything */
    return 0;
}

/* Writes mask element i (bool, or the input's type before opset 10). */
static void set_mask(Tensor *m, int64_t i, bool keep)
{
    if (m->dtype == SH_F32)
        tensor_f32(m)[i] = keep ? 1.0f : 0.0f;
    else if (m->dtype == SH_I64)
        tensor_i64(m)[i] = keep;
    else
        tensor_u8(m)[i] = keep;
}

/* Not dropping, output 0 is the input and the mask is all true. */
static int dropout_forward(OpCtx *c)
{
    DropPlan d;
    int rc = dropout_plan(c, &d);
    if (rc < 0)
        return rc;
    Tensor *m = c->n_out > 1 && c->out[1] && c->out[1]->data ? c->out[1] : NULL;
    if (!d.active) {
        alias_forward(c);
        for (int64_t i = 0; m && i < m->numel; i++)
            set_mask(m, i, true);
        return 0;
    }
    /* Elementwise, so out may share in's buffer. */
    const float *x = tensor_f32(c->in[0]);
    float *y = tensor_f32(c->out[0]);
    Xoshiro r;
    xoshiro_seed(&r, c->seed);
    for (int64_t i = 0; i < c->in[0]->numel; i++) {
        bool keep = xoshiro_uniform(&r) >= d.ratio;
        y[i] = x[i] * (keep ? d.scale : 0.0f);
        if (m)
            set_mask(m, i, keep);
    }
    return 0;
}

/* gin += gout * mask / (1 - ratio), the mask redrawn from c->seed (the
 * mask output may not exist). */
static int dropout_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    DropPlan d;
    int rc = grad_pair(c, gout, gin);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    if ((rc = dropout_plan(c, &d)) < 0)
        return rc;
    float *g = tensor_f32(gin[0]);
    const float *go = tensor_f32(gout[0]);
    /* An executor that aliased the output to the input skipped forward
     * (Dropout is OP_ALIAS and never in-place), so the forward was the
     * identity and so is its gradient. */
    bool skipped = c->out[0]->data == c->in[0]->data && c->in[0]->numel > 0;
    if (!d.active || skipped) {
        add_into(g, go, gin[0]->numel);
        return 0;
    }
    Xoshiro r;
    xoshiro_seed(&r, c->seed);
    for (int64_t i = 0; i < gin[0]->numel; i++)
        g[i] += go[i] * (xoshiro_uniform(&r) >= d.ratio ? d.scale : 0.0f);
    return 0;
}

/* ---- Shape, Size ----------------------------------------------------------- */

/* Opset 15 start/end select a range of dims, clamped like Python slices. */
static void shape_range(const OpCtx *c, int rank, int *start, int *end)
{
    int64_t s = 0, e = rank;
    if (c->opset >= 15) {
        s = node_attr_int(c->node, "start", 0);
        e = node_attr_int(c->node, "end", rank);
    }
    if (s < 0)
        s += rank;
    if (e < 0)
        e += rank;
    s = s < 0 ? 0 : s > rank ? rank : s;
    e = e < 0 ? 0 : e > rank ? rank : e;
    *start = (int)s;
    *end = (int)(e > s ? e : s);
}

static int shape_infer(OpCtx *c)
{
    int rc = op_check_input(c, 0, SH_UNDEF);
    if (rc < 0)
        return rc;
    int start, end;
    shape_range(c, c->in[0]->shape.rank, &start, &end);
    Shape o = shape_of(1, (int64_t)(end - start));
    op_set_out(c, 0, SH_I64, &o);
    return 0;
}

static int shape_forward(OpCtx *c)
{
    int start, end;
    shape_range(c, c->in[0]->shape.rank, &start, &end);
    for (int i = start; i < end; i++)
        tensor_i64(c->out[0])[i - start] = c->in[0]->shape.d[i];
    return 0;
}

static int size_infer(OpCtx *c)
{
    int rc = op_check_input(c, 0, SH_UNDEF);
    if (rc < 0)
        return rc;
    Shape o = {.rank = 0};
    op_set_out(c, 0, SH_I64, &o);
    return 0;
}

static int size_forward(OpCtx *c)
{
    tensor_i64(c->out[0])[0] = c->in[0]->numel;
    return 0;
}

/* ---- Transpose ------------------------------------------------------------- */

/* A transpose reduced to its essentials: input dims and, for each output
 * axis, the input axis it reads. */
typedef struct {
    int rank;
    int64_t dims[SH_MAX_RANK]; /* input dims */
    int perm[SH_MAX_RANK];     /* output axis i reads input axis perm[i] */
} Perm;

static int transpose_perm(const OpCtx *c, Perm *p)
{
    const Shape *in = &c->in[0]->shape;
    const int64_t *v;
    int n = node_attr_ints(c->node, "perm", &v);
    p->rank = in->rank;
    memcpy(p->dims, in->d, sizeof p->dims);
    if (n < 0) {
        for (int i = 0; i < in->rank; i++)
            p->perm[i] = in->rank - 1 - i;
        return 0;
    }
    if (n != in->rank)
        return op_fail(c, SH_E_ARG, "perm has %d entries for an input of rank %d", n, in->rank);
    bool seen[SH_MAX_RANK] = {false};
    for (int i = 0; i < n; i++) {
        int a = shape_axis(v[i], n);
        if (a < 0 || seen[a])
            return op_fail(c, SH_E_ARG, "perm is not a permutation of 0..%d", n - 1);
        seen[a] = true;
        p->perm[i] = a;
    }
    return 0;
}

static int transpose_infer(OpCtx *c)
{
    int rc = check_any_input(c, 0);
    Perm p;
    if (rc < 0 || (rc = transpose_perm(c, &p)) < 0)
        return rc;
    Shape o = {.rank = p.rank};
    for (int i = 0; i < p.rank; i++)
        o.d[i] = p.dims[p.perm[i]];
    op_set_out(c, 0, c->in[0]->dtype, &o);
    return 0;
}

/* Drops size-1 axes and merges output axes that are also neighbours in
 * the input, so NCHW->NHWC becomes a batched 2-D transpose [N][C][HW] ->
 * [N][HW][C] and a no-op permutation becomes rank 1. */
static Perm perm_coalesce(const Perm *p)
{
    int keep[SH_MAX_RANK], newidx[SH_MAX_RANK], nk = 0;
    for (int a = 0; a < p->rank; a++) {
        newidx[a] = p->dims[a] == 1 ? -1 : nk;
        if (p->dims[a] != 1)
            keep[nk++] = a;
    }
    /* Output order of kept axes, in new input numbering. */
    int order[SH_MAX_RANK], no = 0;
    for (int i = 0; i < p->rank; i++)
        if (newidx[p->perm[i]] >= 0)
            order[no++] = newidx[p->perm[i]];
    /* Runs of output axes that are consecutive input axes. */
    int run_start[SH_MAX_RANK], nr = 0;
    int64_t run_dim[SH_MAX_RANK];
    for (int i = 0; i < no; i++) {
        int64_t d = p->dims[keep[order[i]]];
        if (i > 0 && order[i] == order[i - 1] + 1) {
            run_dim[nr - 1] *= d;
        } else {
            run_start[nr] = order[i];
            run_dim[nr++] = d;
        }
    }
    /* Runs in input order give the new input axes. */
    Perm r = {.rank = nr};
    for (int i = 0; i < nr; i++) {
        int pos = 0;
        for (int j = 0; j < nr; j++)
            pos += run_start[j] < run_start[i];
        r.perm[i] = pos;
        r.dims[pos] = run_dim[i];
    }
    if (nr == 0) { /* every dim was 1 */
        r.rank = 1;
        r.dims[0] = 1;
        r.perm[0] = 0;
    }
    return r;
}

/* es is a literal at every call site, so the memcpy becomes one move. */
static inline __attribute__((always_inline)) void
transpose_2d(char *restrict out, const char *restrict in, int64_t batch, int64_t rows,
             int64_t cols, size_t es)
{
    enum { TILE = 32 };
    for (int64_t b = 0; b < batch; b++) {
        const char *src = in + (size_t)(b * rows * cols) * es;
        char *dst = out + (size_t)(b * rows * cols) * es;
        for (int64_t i0 = 0; i0 < rows; i0 += TILE)
            for (int64_t j0 = 0; j0 < cols; j0 += TILE) {
                int64_t i1 = i0 + TILE < rows ? i0 + TILE : rows;
                int64_t j1 = j0 + TILE < cols ? j0 + TILE : cols;
                for (int64_t i = i0; i < i1; i++)
                    for (int64_t j = j0; j < j1; j++)
                        memcpy(dst + (size_t)(j * rows + i) * es, src + (size_t)(i * cols + j) * es,
                               es);
            }
    }
}

/* General case: walks the output in order, reading the input with the
 * stride of each output axis. */
static inline __attribute__((always_inline)) void
transpose_strided(char *restrict out, const char *restrict in, const Perm *p, size_t es)
{
    int r = p->rank;
    int64_t in_stride[SH_MAX_RANK], stride[SH_MAX_RANK], dims[SH_MAX_RANK], idx[SH_MAX_RANK] = {0};
    int64_t s = 1;
    for (int a = r - 1; a >= 0; a--) {
        in_stride[a] = s;
        s *= p->dims[a];
    }
    for (int i = 0; i < r; i++) {
        dims[i] = p->dims[p->perm[i]];
        stride[i] = in_stride[p->perm[i]];
    }
    int64_t inner = dims[r - 1], istep = stride[r - 1], rows = s / inner, off = 0;
    for (int64_t row = 0; row < rows; row++) {
        const char *src = in + (size_t)off * es;
        for (int64_t j = 0; j < inner; j++, out += es)
            memcpy(out, src + (size_t)(j * istep) * es, es);
        for (int k = r - 2; k >= 0; k--) {
            off += stride[k];
            if (++idx[k] < dims[k])
                break;
            off -= stride[k] * dims[k];
            idx[k] = 0;
        }
    }
}

static inline __attribute__((always_inline)) void
transpose_kernel(char *restrict out, const char *restrict in, const Perm *q, size_t es)
{
    if (q->rank == 1)
        memcpy(out, in, (size_t)q->dims[0] * es);
    else if (q->rank == 2)
        transpose_2d(out, in, 1, q->dims[0], q->dims[1], es);
    else if (q->rank == 3 && q->perm[0] == 0 && q->perm[1] == 2)
        transpose_2d(out, in, q->dims[0], q->dims[1], q->dims[2], es);
    else
        transpose_strided(out, in, q, es);
}

static int transpose_forward(OpCtx *c)
{
    Perm p;
    int rc = transpose_perm(c, &p);
    if (rc < 0)
        return rc;
    if (c->in[0]->numel == 0)
        return 0;
    Perm q = perm_coalesce(&p);
    char *out = c->out[0]->data;
    const char *in = c->in[0]->data;
    switch (dtype_size(c->in[0]->dtype)) {
    case 1: transpose_kernel(out, in, &q, 1); break;
    case 4: transpose_kernel(out, in, &q, 4); break;
    case 8: transpose_kernel(out, in, &q, 8); break;
    default: return op_fail(c, SH_E_UNSUPPORTED, "unsupported element size");
    }
    return 0;
}

/* gin[b][i][j] += gout[b][j][i]: the adjoint of transpose_2d, tiled the
 * same way. */
static void transpose_2d_add(float *restrict gin, const float *restrict gout, int64_t batch,
                             int64_t rows, int64_t cols)
{
    enum { TILE = 32 };
    for (int64_t b = 0; b < batch; b++) {
        float *g = gin + b * rows * cols;
        const float *go = gout + b * rows * cols;
        for (int64_t i0 = 0; i0 < rows; i0 += TILE)
            for (int64_t j0 = 0; j0 < cols; j0 += TILE) {
                int64_t i1 = i0 + TILE < rows ? i0 + TILE : rows;
                int64_t j1 = j0 + TILE < cols ? j0 + TILE : cols;
                for (int64_t i = i0; i < i1; i++)
                    for (int64_t j = j0; j < j1; j++)
                        g[i * cols + j] += go[j * rows + i];
            }
    }
}

/* General case: walks gout in order and adds each element where
 * transpose_strided read it. */
static void transpose_strided_add(float *restrict gin, const float *restrict gout, const Perm *p)
{
    int r = p->rank;
    int64_t in_stride[SH_MAX_RANK], stride[SH_MAX_RANK], dims[SH_MAX_RANK], idx[SH_MAX_RANK] = {0};
    int64_t s = 1;
    for (int a = r - 1; a >= 0; a--) {
        in_stride[a] = s;
        s *= p->dims[a];
    }
    for (int i = 0; i < r; i++) {
        dims[i] = p->dims[p->perm[i]];
        stride[i] = in_stride[p->perm[i]];
    }
    int64_t inner = dims[r - 1], istep = stride[r - 1], rows = s / inner, off = 0;
    for (int64_t row = 0; row < rows; row++) {
        float *g = gin + off;
        for (int64_t j = 0; j < inner; j++)
            g[j * istep] += *gout++;
        for (int k = r - 2; k >= 0; k--) {
            off += stride[k];
            if (++idx[k] < dims[k])
                break;
            off -= stride[k] * dims[k];
            idx[k] = 0;
        }
    }
}

/* gin += gout transposed by the inverse permutation. */
static int transpose_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    Perm p;
    int rc = grad_pair(c, gout, gin);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    if ((rc = transpose_perm(c, &p)) < 0)
        return rc;
    if (gin[0]->numel == 0)
        return 0;
    Perm q = perm_coalesce(&p);
    float *g = tensor_f32(gin[0]);
    const float *go = tensor_f32(gout[0]);
    if (q.rank == 1)
        add_into(g, go, q.dims[0]);
    else if (q.rank == 2)
        transpose_2d_add(g, go, 1, q.dims[0], q.dims[1]);
    else if (q.rank == 3 && q.perm[0] == 0 && q.perm[1] == 2)
        transpose_2d_add(g, go, q.dims[0], q.dims[1], q.dims[2]);
    else
        transpose_strided_add(g, go, &q);
    return 0;
}

/* ---- Expand, Tile ------------------------------------------------------- */

static int expand_infer(OpCtx *c)
{
    int rc = check_any_input(c, 0);
    if (rc < 0 || (rc = op_check_input(c, 1, SH_UNDEF)) < 0)
        return rc;
    int64_t want[SH_MAX_RANK];
    int n = input_ints(c, 1, "shape", want, SH_MAX_RANK);
    if (n < 0)
        return n;
    for (int i = 0; i < n; i++)
        if (want[i] < 0)
            return op_fail(c, SH_E_SHAPE, "shape has a negative dimension %lld", (long long)want[i]);
    Shape w = shape_make(n, want), o;
    if ((rc = op_broadcast(c, &c->in[0]->shape, &w, &o)) < 0)
        return rc;
    if (shape_numel(&o) < 0)
        return op_fail(c, SH_E_SHAPE, "output size overflows");
    op_set_out(c, 0, c->in[0]->dtype, &o);
    return 0;
}

/* Fills out (shape o) from in (shape s, same rank). For each axis either
 * s == o (copy), s == 1 (broadcast, Expand) or o is a multiple of s
 * (Tile: index modulo s). */
static inline __attribute__((always_inline)) void
repeat_kernel(char *restrict out, const char *restrict in, const Shape *s, const Shape *o,
              size_t es)
{
    int r = o->rank;
    int64_t in_stride[SH_MAX_RANK], idx[SH_MAX_RANK] = {0}, st = 1;
    for (int a = r - 1; a >= 0; a--) {
        in_stride[a] = st;
        st *= s->d[a];
    }
    int64_t inner_out = r ? o->d[r - 1] : 1, inner_in = r ? s->d[r - 1] : 1;
    int64_t rows = shape_numel(o) / inner_out;
    for (int64_t row = 0; row < rows; row++) {
        int64_t off = 0;
        for (int k = 0; k < r - 1; k++)
            off += (idx[k] % s->d[k]) * in_stride[k];
        const char *src = in + (size_t)off * es;
        if (inner_in == 1) {
            for (int64_t j = 0; j < inner_out; j++, out += es)
                memcpy(out, src, es);
        } else {
            for (int64_t j = 0; j < inner_out; j += inner_in, out += (size_t)inner_in * es)
                memcpy(out, src, (size_t)inner_in * es);
        }
        for (int k = r - 2; k >= 0; k--) {
            if (++idx[k] < o->d[k])
                break;
            idx[k] = 0;
        }
    }
}

/* Runs repeat_kernel with in's shape padded on the left to out's rank. */
static int repeat_forward(OpCtx *c)
{
    const Tensor *x = c->in[0];
    Tensor *y = c->out[0];
    if (y->numel == 0)
        return 0;
    Shape s = {.rank = y->shape.rank};
    int lead = y->shape.rank - x->shape.rank;
    for (int i = 0; i < s.rank; i++)
        s.d[i] = i < lead ? 1 : x->shape.d[i - lead];
    switch (dtype_size(x->dtype)) {
    case 1: repeat_kernel(y->data, x->data, &s, &y->shape, 1); break;
    case 4: repeat_kernel(y->data, x->data, &s, &y->shape, 4); break;
    case 8: repeat_kernel(y->data, x->data, &s, &y->shape, 8); break;
    default: return op_fail(c, SH_E_UNSUPPORTED, "unsupported element size");
    }
    return 0;
}

static int tile_infer(OpCtx *c)
{
    int rc = check_any_input(c, 0);
    if (rc < 0 || (rc = op_check_input(c, 1, SH_UNDEF)) < 0)
        return rc;
    const Shape *in = &c->in[0]->shape;
    int64_t reps[SH_MAX_RANK];
    int n = input_ints(c, 1, "repeats", reps, SH_MAX_RANK);
    if (n < 0)
        return n;
    if (n != in->rank)
        return op_fail(c, SH_E_SHAPE, "repeats has %d values for an input of rank %d", n, in->rank);
    Shape o = {.rank = n};
    for (int i = 0; i < n; i++) {
        if (reps[i] < 0)
            return op_fail(c, SH_E_ARG, "repeats[%d] is negative (%lld)", i, (long long)reps[i]);
        if (!sh_mul_ok(in->d[i], reps[i], &o.d[i]))
            return op_fail(c, SH_E_SHAPE, "output size overflows");
    }
    if (shape_numel(&o) < 0)
        return op_fail(c, SH_E_SHAPE, "output size overflows");
    op_set_out(c, 0, c->in[0]->dtype, &o);
    return 0;
}

/* A repeat (Expand, Tile) reduced to its essentials: per axis the input
 * size s and the output size o, a multiple of s (s == 1: broadcast,
 * s == o: copy). Size-1 output axes are dropped, a copied axis joins the
 * axis before it and two broadcast axes join, so the training cases
 * [1,C,1,1] -> [N,C,H,W] and [C] -> [N,T,C] become (1,N)(C,C)(1,HW) and
 * (1,NT)(C,C). */
typedef struct {
    int rank;
    int64_t s[SH_MAX_RANK], o[SH_MAX_RANK];
} Repeat;

static Repeat repeat_coalesce(const Shape *s, const Shape *o)
{
    Repeat r = {.rank = 0};
    for (int a = 0; a < o->rank; a++) {
        int64_t sa = s->d[a], oa = o->d[a];
        if (oa == 1)
            continue;
        int last = r.rank - 1;
        if (last >= 0 && (sa == oa || (sa == 1 && r.s[last] == 1))) {
            r.s[last] *= sa;
            r.o[last] *= oa;
        } else {
            r.s[r.rank] = sa;
            r.o[r.rank++] = oa;
        }
    }
    if (r.rank == 0) {
        r.rank = 1;
        r.s[0] = r.o[0] = 1;
    }
    return r;
}

/* gin[i] += the sum of gout over the output elements that repeat input
 * element i. Rows over all axes but the last track their input offset
 * with counters (no division); the last axis adds, sums or adds tiles. */
static void repeat_backward_kernel(float *restrict gin, const float *restrict gout, const Repeat *r)
{
    int n = r->rank;
    int64_t in_stride[SH_MAX_RANK], idx[SH_MAX_RANK] = {0}, sidx[SH_MAX_RANK] = {0}, st = 1;
    for (int a = n - 1; a >= 0; a--) {
        in_stride[a] = st;
        st *= r->s[a];
    }
    int64_t inner_o = r->o[n - 1], inner_s = r->s[n - 1], rows = 1, off = 0;
    for (int a = 0; a < n - 1; a++)
        rows *= r->o[a];
    for (int64_t row = 0; row < rows; row++, gout += inner_o) {
        float *g = gin + off;
        if (inner_s == inner_o)
            add_into(g, gout, inner_o);
        else if (inner_s == 1)
            g[0] += sum_of(gout, inner_o);
        else
            for (int64_t j = 0; j < inner_o; j += inner_s)
                add_into(g, gout + j, inner_s);
        for (int k = n - 2; k >= 0; k--) {
            off += in_stride[k];
            if (++sidx[k] == r->s[k]) {
                sidx[k] = 0;
                off -= r->s[k] * in_stride[k];
            }
            if (++idx[k] < r->o[k])
                break;
            idx[k] = 0;
        }
    }
}

/* Expand and Tile: the gradient of each input element is the sum over its
 * copies. */
static int repeat_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    int rc = grad_pair(c, gout, gin);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    const Tensor *x = c->in[0], *y = c->out[0];
    if (y->numel == 0)
        return 0;
    Shape s = {.rank = y->shape.rank};
    int lead = y->shape.rank - x->shape.rank;
    for (int i = 0; i < s.rank; i++)
        s.d[i] = i < lead ? 1 : x->shape.d[i - lead];
    Repeat r = repeat_coalesce(&s, &y->shape);
    repeat_backward_kernel(tensor_f32(gin[0]), tensor_f32(gout[0]), &r);
    return 0;
}

/* ---- channel coupling ---- */

static int flatten_couple(CouplingCtx *cc)
{
    const Shape *s = cc_in_shape(cc, 0);
    int axis = shape_axis(node_attr_int(cc_node(cc), "axis", 1), s->rank + 1);
    if (axis < 0)
        axis = 1;
    cc_merge_axes(cc, 0, 0, axis, 0, 0);
    cc_merge_axes(cc, 0, axis, s->rank, 0, 1);
    return 0;
}

/* Reshape pairs runs of input and output axes with equal sizes: 1:1 runs
 * keep channels, n:1 runs merge (a channel owns a block of features),
 * 1:n runs split (heads: a unit is a block of the inner axes). */
static int reshape_couple(CouplingCtx *cc)
{
    const Shape *in = cc_in_shape(cc, 0), *out = cc_out_shape(cc, 0);
    int i = 0, o = 0;
    cc_consume(cc, 1, 0);
    while (i < in->rank && o < out->rank) {
        if (in->d[i] == out->d[o]) { /* equal, including the same symbolic batch */
            cc_same(cc, 0, i++, 0, o++);
            continue;
        }
        int i1 = i + 1, o1 = o + 1;
        int64_t pi = in->d[i], po = out->d[o];
        while (pi != po && pi > 0 && po > 0) {
            if (pi < po && i1 < in->rank)
                pi *= in->d[i1++];
            else if (po < pi && o1 < out->rank)
                po *= out->d[o1++];
            else
                break;
        }
        if (pi != po || pi <= 0) {
            cc_merge_axes(cc, 0, i, in->rank, 0, o); /* blocks channels it cannot follow */
            return 0;
        }
        if (o1 - o == 1)
            cc_merge_axes(cc, 0, i, i1, 0, o);
        else if (i1 - i == 1)
            cc_split_axis(cc, 0, i, 0, o, o1);
        else
            cc_merge_axes(cc, 0, i, i1, 0, o); /* n:m, followed only without channels */
        i = i1;
        o = o1;
    }
    for (; i < in->rank; i++) /* trailing axes of size 1 */
        cc_consume(cc, 0, i);
    for (int a = 0; a < out->rank; a++) /* surgery must be able to rewrite the target */
        if (cc_out_has_channels(cc, 0, a) && !cc_shape_element_editable(cc, 1, a))
            cc_block(cc, "its target shape is computed at run time; shears cannot resize it");
    return 0;
}

static int transpose_couple(CouplingCtx *cc)
{
    const Shape *s = cc_in_shape(cc, 0);
    const int64_t *perm;
    int n = node_attr_ints(cc_node(cc), "perm", &perm);
    for (int k = 0; k < s->rank; k++)
        cc_same(cc, 0, n == s->rank ? (int)perm[k] : s->rank - 1 - k, 0, k);
    return 0;
}

/* The axes a Squeeze removes or an Unsqueeze inserts (attribute before
 * opset 13, input after); rank is the rank they index. */
static void listed_axes(CouplingCtx *cc, int rank, bool *mark)
{
    const Tensor *t = cc_in_const(cc, 1);
    const int64_t *v;
    int n = t ? (int)t->numel : node_attr_ints(cc_node(cc), "axes", &v);
    for (int k = 0; k < n; k++) {
        int a = shape_axis(t ? tensor_get_i(t, k) : v[k], rank);
        if (a >= 0)
            mark[a] = true;
    }
    if (cc_has_input(cc, 1))
        cc_consume(cc, 1, 0);
}

static int squeeze_couple(CouplingCtx *cc)
{
    const Shape *in = cc_in_shape(cc, 0);
    bool gone[SH_MAX_RANK] = {0}, any = false;
    listed_axes(cc, in->rank, gone);
    for (int a = 0; a < in->rank; a++)
        any = any || gone[a];
    for (int i = 0, o = 0; i < in->rank; i++) {
        if (gone[i] || (!any && in->d[i] == 1))
            cc_consume(cc, 0, i);
        else
            cc_same(cc, 0, i, 0, o++);
    }
    return 0;
}

static int unsqueeze_couple(CouplingCtx *cc)
{
    const Shape *out = cc_out_shape(cc, 0);
    bool added[SH_MAX_RANK] = {0};
    listed_axes(cc, out->rank, added);
    for (int o = 0, i = 0; o < out->rank; o++)
        if (!added[o])
            cc_same(cc, 0, i++, 0, o);
    return 0;
}

static int shape_couple(CouplingCtx *cc)
{
    for (int a = 0; a < cc_in_shape(cc, 0)->rank; a++)
        cc_consume(cc, 0, a); /* only the size is read */
    return 0;
}

/* Expand and Tile: axes whose size does not change keep their channels. */
static int repeat_couple(CouplingCtx *cc)
{
    const Shape *in = cc_in_shape(cc, 0), *out = cc_out_shape(cc, 0);
    for (int a = 0; a < in->rank; a++) {
        int o = a + (out->rank - in->rank);
        if (o >= 0 && in->d[a] == out->d[o])
            cc_same(cc, 0, a, 0, o);
        else if (in->d[a] == 1)
            cc_consume(cc, 0, a);
    }
    cc_consume(cc, 1, 0);
    if (!strcmp(cc_node(cc)->op_type, "Expand"))
        for (int a = 0; a < out->rank; a++)
            if (cc_out_has_channels(cc, 0, a) && !cc_shape_element_editable(cc, 1, a))
                cc_block(cc, "its target shape is computed at run time; shears cannot resize it");
    return 0;
}

const OpDef sh_ops_shape[] = {
    {.name = "Identity", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .flags = OP_ALIAS,
     .infer = identity_infer, .forward = alias_forward, .backward = alias_backward,
     .coupling = couple_unary},
    {.name = "Dropout", .min_in = 1, .max_in = 3, .min_out = 1, .max_out = 2, .flags = OP_ALIAS,
     .infer = dropout_infer, .forward = dropout_forward, .backward = dropout_backward,
     .coupling = couple_unary},
    {.name = "Flatten", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .flags = OP_ALIAS,
     .infer = flatten_infer, .forward = alias_forward, .backward = alias_backward,
     .coupling = flatten_couple},
    {.name = "Reshape", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .flags = OP_ALIAS,
     .shape_inputs = 1u << 1, .infer = reshape_infer, .forward = alias_forward,
     .backward = alias_backward,
     .coupling = reshape_couple},
    {.name = "Squeeze", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1, .flags = OP_ALIAS,
     .shape_inputs = 1u << 1, .infer = squeeze_infer, .forward = alias_forward,
     .backward = alias_backward,
     .coupling = squeeze_couple},
    {.name = "Unsqueeze", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1, .flags = OP_ALIAS,
     .shape_inputs = 1u << 1, .infer = unsqueeze_infer, .forward = alias_forward,
     .backward = alias_backward,
     .coupling = unsqueeze_couple},
    {.name = "Transpose", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
     .infer = transpose_infer, .forward = transpose_forward, .backward = transpose_backward,
     .coupling = transpose_couple},
    {.name = "Shape", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .flags = OP_SHAPE_ONLY,
     .infer = shape_infer, .forward = shape_forward,
     .coupling = shape_couple},
    {.name = "Size", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .flags = OP_SHAPE_ONLY,
     .infer = size_infer, .forward = size_forward,
     .coupling = shape_couple},
    {.name = "Expand", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
     .shape_inputs = 1u << 1, .infer = expand_infer, .forward = repeat_forward,
     .backward = repeat_backward,
     .coupling = repeat_couple},
    {.name = "Tile", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
     .shape_inputs = 1u << 1, .infer = tile_infer, .forward = repeat_forward,
     .backward = repeat_backward,
     .coupling = repeat_couple},
    {.name = NULL},
};
