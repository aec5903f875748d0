/* Slicing ops: Concat, Split, Slice, Gather, GatherElements, Pad,
 * DepthToSpace, SpaceToDepth. They work on every dtype by copying
 * elements of dtype_size bytes. Every index read from user data is
 * checked before it is used.
 *
 * Backward (float32 gradients, accumulated with +=) is the adjoint of each
 * copy: every output element's gradient is added where forward read it
 * (Gather with repeated indices and reflect/edge Pad add several into one
 * input element); the constant of Pad collects the gradient of the padding. */
#include "../error.h"
#include "../depgraph.h"
#include "../op.h"
#include "../util.h"

#include <stdlib.h>

#include <stdbool.h>
#include <string.h>

/* ---- small helpers ------------------------------------------------------ */

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

static bool present(const OpCtx *c, int i) { return i >= 0 && i < c->n_in && c->in[i]; }

/* Reads a 1-D int64 input known when planning; returns count or error. */
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

/* An integer list that moved from an attribute to an input at some opset:
 * the input wins when present. *count is -1 when neither is given. */
static int ints_arg(const OpCtx *c, const char *attr, int input, int64_t *buf, int cap,
                    int *count)
{
    *count = -1;
    if (present(c, input)) {
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

static int axis_attr(const OpCtx *c, int64_t dflt, int rank, int *axis)
{
    int64_t a = node_attr_int(c->node, "axis", dflt);
    *axis = shape_axis(a, rank);
    if (*axis < 0)
        return op_fail(c, SH_E_ARG, "axis %lld is out of range for rank %d", (long long)a, rank);
    return 0;
}

static int64_t prod_dims(const Shape *s, int from, int to)
{
    int64_t p = 1;
    for (int i = from; i < to; i++)
        p *= s->d[i];
    return p;
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

/* Requires every gradient given to be float32 with the element count of
 * its value (gin[i] of input i, gout[k] of output k). */
static int check_grads(const OpCtx *c, Tensor **gout, Tensor **gin)
{
    for (int side = 0; side < 2; side++) {
        int n = side ? c->n_out : c->n_in;
        Tensor **g = side ? gout : gin, **v = side ? c->out : c->in;
        for (int i = 0; i < n; i++) {
            if (!g[i] || !v[i])
                continue;
            if (g[i]->dtype != SH_F32 || g[i]->numel != v[i]->numel || (g[i]->numel && !g[i]->data))
                return op_fail(c, SH_E_STATE,
                               "gradient of %s %d is %s with %lld elements; expected float32 with %lld",
                               side ? "output" : "input", i, dtype_name(g[i]->dtype),
                               (long long)g[i]->numel, (long long)v[i]->numel);
        }
    }
    return 0;
}

/* ---- Concat ------------------------------------------------------------- */

static int concat_infer(OpCtx *c)
{
    if (c->n_in < 1)
        return op_fail(c, SH_E_FORMAT, "needs at least one input");
    int rc;
    for (int i = 0; i < c->n_in; i++)
        if ((rc = check_any_input(c, i)) < 0)
            return rc;
    const Tensor *x0 = c->in[0];
    int axis;
    if (!node_attr(c->node, "axis") && c->opset >= 4)
        return op_fail(c, SH_E_FORMAT, "attribute axis is missing");
    if ((rc = axis_attr(c, 1, x0->shape.rank, &axis)) < 0)
        return rc;
    Shape o = x0->shape;
    for (int i = 1; i < c->n_in; i++) {
        const Tensor *x = c->in[i];
        char s0[128], si[128];
        if (x->dtype != x0->dtype)
            return op_fail(c, SH_E_SHAPE, "input %d is %s but input 0 is %s", i,
                           dtype_name(x->dtype), dtype_name(x0->dtype));
        bool ok = x->shape.rank == o.rank;
        for (int a = 0; ok && a < o.rank; a++)
            ok = a == axis || x->shape.d[a] == o.d[a];
        if (!ok)
            return op_fail(c, SH_E_SHAPE, "input %d shape %s does not match input 0 shape %s off axis %d",
                           i, shape_str(&x->shape, si, sizeof si),
                           shape_str(&x0->shape, s0, sizeof s0), axis);
        if (!sh_add_ok(o.d[axis], x->shape.d[axis], &o.d[axis]))
            return op_fail(c, SH_E_SHAPE, "output size overflows");
    }
    if (shape_numel(&o) < 0)
        return op_fail(c, SH_E_SHAPE, "output size overflows");
    op_set_out(c, 0, x0->dtype, &o);
    return 0;
}

static int concat_forward(OpCtx *c)
{
    Tensor *y = c->out[0];
    size_t es = dtype_size(y->dtype);
    int axis = shape_axis(node_attr_int(c->node, "axis", 1), y->shape.rank);
    int64_t outer = prod_dims(&y->shape, 0, axis), inner = prod_dims(&y->shape, axis + 1, y->shape.rank);
    size_t out_row = (size_t)(y->shape.d[axis] * inner) * es, col = 0;
    for (int i = 0; i < c->n_in; i++) {
        const Tensor *x = c->in[i];
        size_t chunk = (size_t)(x->shape.d[axis] * inner) * es;
        if (chunk == 0)
            continue;
        for (int64_t o = 0; o < outer; o++)
            memcpy((char *)y->data + (size_t)o * out_row + col,
                   (const char *)x->data + (size_t)o * chunk, chunk);
        col += chunk;
    }
    return 0;
}

/* Each input's gradient is its slice of gout along the axis. */
static int concat_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    int rc = check_grads(c, gout, gin);
    if (rc < 0 || !gout[0])
        return rc;
    const Tensor *y = c->out[0];
    int axis = shape_axis(node_attr_int(c->node, "axis", 1), y->shape.rank);
    int64_t outer = prod_dims(&y->shape, 0, axis), inner = prod_dims(&y->shape, axis + 1, y->shape.rank);
    int64_t out_row = y->shape.d[axis] * inner, col = 0;
    const float *go = tensor_f32(gout[0]);
    for (int i = 0; i < c->n_in; i++) {
        int64_t chunk = c->in[i]->shape.d[axis] * inner;
        if (gin[i] && chunk)
            for (int64_t o = 0; o < outer; o++)
                add_into(tensor_f32(gin[i]) + o * chunk, go + o * out_row + col, chunk);
        col += chunk;
    }
    return 0;
}

/* ---- Split -------------------------------------------------------------- */

/* Sizes of the parts: the split attribute (before opset 13) or input 1
 * (from 13), else equal parts. */
static int split_sizes(const OpCtx *c, int axis, int64_t *sizes)
{
    int64_t dim = c->in[0]->shape.d[axis];
    int n, rc;
    if ((rc = ints_arg(c, "split", 1, sizes, 16, &n)) < 0)
        return rc;
    if (n <= 0) { /* absent (or an empty input): equal parts */
        if (dim % c->n_out != 0)
            return op_fail(c, SH_E_SHAPE, "axis %d of size %lld does not split into %d equal parts",
                           axis, (long long)dim, c->n_out);
        for (int i = 0; i < c->n_out; i++)
            sizes[i] = dim / c->n_out;
        return 0;
    }
    if (n != c->n_out)
        return op_fail(c, SH_E_ARG, "split has %d sizes for %d outputs", n, c->n_out);
    int64_t sum = 0;
    for (int i = 0; i < n; i++)
        if (sizes[i] < 0 || !sh_add_ok(sum, sizes[i], &sum))
            return op_fail(c, SH_E_ARG, "split size %lld is invalid", (long long)sizes[i]);
    if (sum != dim)
        return op_fail(c, SH_E_SHAPE, "split sizes add up to %lld but axis %d has size %lld",
                       (long long)sum, axis, (long long)dim);
    return 0;
}

static int split_infer(OpCtx *c)
{
    int rc = check_any_input(c, 0), axis;
    if (rc < 0 || (rc = axis_attr(c, 0, c->in[0]->shape.rank, &axis)) < 0)
        return rc;
    int64_t sizes[16];
    if (c->n_out > 16)
        return op_fail(c, SH_E_UNSUPPORTED, "%d outputs; at most 16 supported", c->n_out);
    if ((rc = split_sizes(c, axis, sizes)) < 0)
        return rc;
    for (int i = 0; i < c->n_out; i++) {
        Shape o = c->in[0]->shape;
        o.d[axis] = sizes[i];
        op_set_out(c, i, c->in[0]->dtype, &o);
    }
    return 0;
}

static int split_forward(OpCtx *c)
{
    const Tensor *x = c->in[0];
    size_t es = dtype_size(x->dtype);
    int axis = shape_axis(node_attr_int(c->node, "axis", 0), x->shape.rank);
    int64_t outer = prod_dims(&x->shape, 0, axis), inner = prod_dims(&x->shape, axis + 1, x->shape.rank);
    size_t in_row = (size_t)(x->shape.d[axis] * inner) * es, col = 0;
    for (int i = 0; i < c->n_out; i++) {
        Tensor *y = c->out[i];
        size_t chunk = (size_t)(y->shape.d[axis] * inner) * es;
        if (chunk == 0)
            continue;
        for (int64_t o = 0; o < outer; o++)
            memcpy((char *)y->data + (size_t)o * chunk,
                   (const char *)x->data + (size_t)o * in_row + col, chunk);
        col += chunk;
    }
    return 0;
}

/* Each output's gradient goes into its slice of the input; outputs
 * without a gradient contribute nothing. */
static int split_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    int rc = check_grads(c, gout, gin);
    if (rc < 0 || !gin[0])
        return rc;
    const Tensor *x = c->in[0];
    int axis = shape_axis(node_attr_int(c->node, "axis", 0), x->shape.rank);
    int64_t outer = prod_dims(&x->shape, 0, axis), inner = prod_dims(&x->shape, axis + 1, x->shape.rank);
    int64_t in_row = x->shape.d[axis] * inner, col = 0;
    float *g = tensor_f32(gin[0]);
    for (int i = 0; i < c->n_out; i++) {
        int64_t chunk = c->out[i]->shape.d[axis] * inner;
        if (gout[i] && chunk)
            for (int64_t o = 0; o < outer; o++)
                add_into(g + o * in_row + col, tensor_f32(gout[i]) + o * chunk, chunk);
        col += chunk;
    }
    return 0;
}

/* ---- Slice -------------------------------------------------------------- */

/* Per input axis: first index, step and output length. */
typedef struct {
    int64_t start[SH_MAX_RANK], step[SH_MAX_RANK], len[SH_MAX_RANK];
} SlicePlan;

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Resolves one axis per the ONNX rules: negative starts/ends count from
 * the end, then clamp to [0, dim] (step > 0) or [-1, dim-1] (step < 0). */
static void slice_axis(int64_t dim, int64_t start, int64_t end, int64_t step, SlicePlan *p, int a)
{
    if (start < 0)
        start += dim;
    if (end < 0)
        end += dim;
    int64_t len;
    if (dim == 0) { /* nothing to take; the clamp ranges below would be empty */
        len = 0;
    } else if (step > 0) {
        start = clamp64(start, 0, dim);
        end = clamp64(end, 0, dim);
        len = end > start ? (end - start - 1) / step + 1 : 0;
    } else {
        int64_t back = step == INT64_MIN ? INT64_MAX : -step; /* -INT64_MIN overflows */
        start = clamp64(start, 0, dim - 1);
        end = clamp64(end, -1, dim - 1);
        len = start > end ? (start - end - 1) / back + 1 : 0;
    }
    p->start[a] = len > 0 ? start : 0;
    p->step[a] = step;
    p->len[a] = len;
}

static int slice_plan(const OpCtx *c, SlicePlan *p)
{
    const Shape *in = &c->in[0]->shape;
    int64_t starts[SH_MAX_RANK], ends[SH_MAX_RANK], axes[SH_MAX_RANK], steps[SH_MAX_RANK];
    int ns, ne, na = -1, nst = -1, rc;
    bool inputs = c->opset >= 10 || present(c, 1);
    if (inputs) {
        if ((rc = op_check_input(c, 1, SH_UNDEF)) < 0 || (rc = op_check_input(c, 2, SH_UNDEF)) < 0)
            return rc;
        if ((ns = input_ints(c, 1, "starts", starts, SH_MAX_RANK)) < 0)
            return ns;
        if ((ne = input_ints(c, 2, "ends", ends, SH_MAX_RANK)) < 0)
            return ne;
        if (present(c, 3) && (na = input_ints(c, 3, "axes", axes, SH_MAX_RANK)) < 0)
            return na;
        if (present(c, 4) && (nst = input_ints(c, 4, "steps", steps, SH_MAX_RANK)) < 0)
            return nst;
    } else {
        if ((rc = ints_arg(c, "starts", -1, starts, SH_MAX_RANK, &ns)) < 0 ||
            (rc = ints_arg(c, "ends", -1, ends, SH_MAX_RANK, &ne)) < 0 ||
            (rc = ints_arg(c, "axes", -1, axes, SH_MAX_RANK, &na)) < 0)
            return rc;
        if (ns < 0 || ne < 0)
            return op_fail(c, SH_E_FORMAT, "attributes starts and ends are required before opset 10");
    }
    if (ne != ns || (na >= 0 && na != ns) || (nst >= 0 && nst != ns))
        return op_fail(c, SH_E_ARG, "starts, ends, axes and steps have different lengths");
    bool seen[SH_MAX_RANK] = {false};
    for (int a = 0; a < in->rank; a++) {
        p->start[a] = 0;
        p->step[a] = 1;
        p->len[a] = in->d[a];
    }
    for (int i = 0; i < ns; i++) {
        int64_t ax = na >= 0 ? axes[i] : i;
        int a = shape_axis(ax, in->rank);
        if (a < 0)
            return op_fail(c, SH_E_ARG, "axis %lld is out of range for rank %d", (long long)ax,
                           in->rank);
        if (seen[a])
            return op_fail(c, SH_E_ARG, "axis %lld is repeated", (long long)ax);
        seen[a] = true;
        int64_t step = nst >= 0 ? steps[i] : 1;
        if (step == 0)
            return op_fail(c, SH_E_ARG, "step for axis %d is 0", a);
        slice_axis(in->d[a], starts[i], ends[i], step, p, a);
    }
    return 0;
}

static int slice_infer(OpCtx *c)
{
    int rc = check_any_input(c, 0);
    SlicePlan p;
    if (rc < 0 || (rc = slice_plan(c, &p)) < 0)
        return rc;
    Shape o = {.rank = c->in[0]->shape.rank};
    for (int a = 0; a < o.rank; a++)
        o.d[a] = p.len[a];
    op_set_out(c, 0, c->in[0]->dtype, &o);
    return 0;
}

/* Walks the output in order; the innermost axis is one memcpy when its
 * step is 1. */
static inline __attribute__((always_inline)) void
slice_kernel(char *restrict out, const char *restrict in, const Shape *s, const SlicePlan *p,
             size_t es)
{
    int r = s->rank;
    int64_t stride[SH_MAX_RANK], idx[SH_MAX_RANK] = {0}, st = 1, base = 0;
    for (int a = r - 1; a >= 0; a--) {
        stride[a] = st;
        st *= s->d[a];
    }
    for (int a = 0; a < r; a++)
        base += p->start[a] * stride[a];
    int64_t inner = r ? p->len[r - 1] : 1, istep = r ? p->step[r - 1] : 1, rows = 1;
    for (int a = 0; a < r - 1; a++)
        rows *= p->len[a];
    int64_t off = base;
    for (int64_t row = 0; row < rows; row++) {
        const char *src = in + off * (int64_t)es;
        if (istep == 1) {
            memcpy(out, src, (size_t)inner * es);
            out += (size_t)inner * es;
        } else {
            for (int64_t j = 0; j < inner; j++, out += es)
                memcpy(out, src + j * istep * (int64_t)es, es);
        }
        for (int k = r - 2; k >= 0; k--) {
            off += p->step[k] * stride[k];
            if (++idx[k] < p->len[k])
                break;
            off -= p->step[k] * stride[k] * p->len[k];
            idx[k] = 0;
        }
    }
}

static int slice_forward(OpCtx *c)
{
    SlicePlan p;
    int rc = slice_plan(c, &p);
    if (rc < 0)
        return rc;
    if (c->out[0]->numel == 0)
        return 0;
    char *out = c->out[0]->data;
    const char *in = c->in[0]->data;
    const Shape *s = &c->in[0]->shape;
    switch (dtype_size(c->in[0]->dtype)) {
    case 1: slice_kernel(out, in, s, &p, 1); break;
    case 4: slice_kernel(out, in, s, &p, 4); break;
    case 8: slice_kernel(out, in, s, &p, 8); break;
    default: return op_fail(c, SH_E_UNSUPPORTED, "unsupported element size");
    }
    return 0;
}

/* The adjoint of slice_kernel: walks gout in order and adds each element
 * where forward read it (slices never read an element twice). */
static void slice_backward_kernel(float *restrict gin, const float *restrict gout, const Shape *s,
                                  const SlicePlan *p)
{
    int r = s->rank;
    int64_t stride[SH_MAX_RANK], idx[SH_MAX_RANK] = {0}, st = 1, base = 0;
    for (int a = r - 1; a >= 0; a--) {
        stride[a] = st;
        st *= s->d[a];
    }
    for (int a = 0; a < r; a++)
        base += p->start[a] * stride[a];
    int64_t inner = r ? p->len[r - 1] : 1, istep = r ? p->step[r - 1] : 1, rows = 1;
    for (int a = 0; a < r - 1; a++)
        rows *= p->len[a];
    int64_t off = base;
    for (int64_t row = 0; row < rows; row++, gout += inner) {
        float *g = gin + off;
        if (istep == 1)
            add_into(g, gout, inner);
        else
            for (int64_t j = 0; j < inner; j++)
                g[j * istep] += gout[j];
        for (int k = r - 2; k >= 0; k--) {
            off += p->step[k] * stride[k];
            if (++idx[k] < p->len[k])
                break;
            off -= p->step[k] * stride[k] * p->len[k];
            idx[k] = 0;
        }
    }
}

static int slice_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    SlicePlan p;
    int rc = check_grads(c, gout, gin);
    if (rc < 0 || !gin[0] || !gout[0])
        return rc;
    if ((rc = slice_plan(c, &p)) < 0)
        return rc;
    if (gout[0]->numel == 0)
        return 0;
    slice_backward_kernel(tensor_f32(gin[0]), tensor_f32(gout[0]), &c->in[0]->shape, &p);
    return 0;
}

/* ---- Gather, GatherElements -------------------------------------------- */

static int gather_infer(OpCtx *c)
{
    int rc = check_any_input(c, 0), axis;
    if (rc < 0 || (rc = op_check_input(c, 1, SH_I64)) < 0)
        return rc;
    const Shape *d = &c->in[0]->shape, *ix = &c->in[1]->shape;
    if (d->rank < 1)
        return op_fail(c, SH_E_SHAPE, "data must have rank >= 1");
    if ((rc = axis_attr(c, 0, d->rank, &axis)) < 0)
        return rc;
    int rank = d->rank - 1 + ix->rank;
    if (rank > SH_MAX_RANK)
        return op_fail(c, SH_E_UNSUPPORTED, "output rank %d exceeds the maximum %d", rank,
                       SH_MAX_RANK);
    Shape o = {.rank = 0};
    for (int a = 0; a < axis; a++)
        o.d[o.rank++] = d->d[a];
    for (int a = 0; a < ix->rank; a++)
        o.d[o.rank++] = ix->d[a];
    for (int a = axis + 1; a < d->rank; a++)
        o.d[o.rank++] = d->d[a];
    if (shape_numel(&o) < 0)
        return op_fail(c, SH_E_SHAPE, "output size overflows");
    op_set_out(c, 0, c->in[0]->dtype, &o);
    return 0;
}

/* Resolves a possibly negative index into [0, dim) or fails naming it. */
static int resolve_index(const OpCtx *c, int64_t v, int64_t dim, int axis, int64_t *out)
{
    int64_t r = v < 0 ? v + dim : v;
    if (r < 0 || r >= dim)
        return op_fail(c, SH_E_ARG, "index %lld is out of range for axis %d of size %lld",
                       (long long)v, axis, (long long)dim);
    *out = r;
    return 0;
}

static int gather_forward(OpCtx *c)
{
    const Tensor *x = c->in[0], *ix = c->in[1];
    size_t es = dtype_size(x->dtype);
    int axis = shape_axis(node_attr_int(c->node, "axis", 0), x->shape.rank);
    int64_t outer = prod_dims(&x->shape, 0, axis), dim = x->shape.d[axis];
    size_t chunk = (size_t)prod_dims(&x->shape, axis + 1, x->shape.rank) * es;
    const int64_t *idx = tensor_i64(ix);
    char *out = c->out[0]->data;
    int rc;
    /* Check every index first so a failure leaves no partial output. */
    for (int64_t j = 0; j < ix->numel; j++) {
        int64_t r;
        if ((rc = resolve_index(c, idx[j], dim, axis, &r)) < 0)
            return rc;
    }
    if (chunk == 0)
        return 0;
    for (int64_t o = 0; o < outer; o++) {
        const char *src = (const char *)x->data + (size_t)(o * dim) * chunk;
        for (int64_t j = 0; j < ix->numel; j++, out += chunk) {
            int64_t r = idx[j] < 0 ? idx[j] + dim : idx[j];
            memcpy(out, src + (size_t)r * chunk, chunk);
        }
    }
    return 0;
}

static int gather_elements_infer(OpCtx *c)
{
    int rc = check_any_input(c, 0), axis;
    if (rc < 0 || (rc = op_check_input(c, 1, SH_I64)) < 0)
        return rc;
    const Shape *d = &c->in[0]->shape, *ix = &c->in[1]->shape;
    if ((rc = axis_attr(c, 0, d->rank, &axis)) < 0)
        return rc;
    if (ix->rank != d->rank)
        return op_fail(c, SH_E_SHAPE, "indices rank %d differs from data rank %d", ix->rank, d->rank);
    for (int a = 0; a < d->rank; a++)
        if (a != axis && ix->d[a] > d->d[a]) {
            char sd[128], si[128];
            return op_fail(c, SH_E_SHAPE, "indices shape %s exceeds data shape %s on axis %d",
                           shape_str(ix, si, sizeof si), shape_str(d, sd, sizeof sd), a);
        }
    op_set_out(c, 0, c->in[0]->dtype, ix);
    return 0;
}

static int gather_elements_forward(OpCtx *c)
{
    const Tensor *x = c->in[0], *ix = c->in[1];
    size_t es = dtype_size(x->dtype);
    int r = x->shape.rank, axis = shape_axis(node_attr_int(c->node, "axis", 0), r), rc;
    int64_t stride[SH_MAX_RANK], idx[SH_MAX_RANK] = {0}, st = 1;
    for (int a = r - 1; a >= 0; a--) {
        stride[a] = st;
        st *= x->shape.d[a];
    }
    const int64_t *ind = tensor_i64(ix);
    char *out = c->out[0]->data;
    for (int64_t j = 0; j < ix->numel; j++, out += es) {
        int64_t at = 0, off = 0;
        if ((rc = resolve_index(c, ind[j], x->shape.d[axis], axis, &at)) < 0)
            return rc;
        for (int a = 0; a < r; a++)
            off += (a == axis ? at : idx[a]) * stride[a];
        memcpy(out, (const char *)x->data + (size_t)off * es, es);
        for (int a = r - 1; a >= 0; a--) {
            if (++idx[a] < ix->shape.d[a])
                break;
            idx[a] = 0;
        }
    }
    return 0;
}

/* Scatter-add: each gathered slice's gradient goes back to the slice it
 * came from, so repeated indices accumulate. Indices get no gradient. */
static int gather_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    int rc = check_grads(c, gout, gin);
    if (rc < 0 || !gin[0] || !gout[0])
        return rc;
    const Tensor *x = c->in[0], *ix = c->in[1];
    int axis = shape_axis(node_attr_int(c->node, "axis", 0), x->shape.rank);
    int64_t outer = prod_dims(&x->shape, 0, axis), dim = x->shape.d[axis];
    int64_t chunk = prod_dims(&x->shape, axis + 1, x->shape.rank);
    const int64_t *idx = tensor_i64(ix);
    for (int64_t j = 0; j < ix->numel; j++) {
        int64_t r;
        if ((rc = resolve_index(c, idx[j], dim, axis, &r)) < 0)
            return rc;
    }
    if (chunk == 0)
        return 0;
    const float *go = tensor_f32(gout[0]);
    for (int64_t o = 0; o < outer; o++) {
        float *g = tensor_f32(gin[0]) + o * dim * chunk;
        for (int64_t j = 0; j < ix->numel; j++, go += chunk) {
            int64_t r = idx[j] < 0 ? idx[j] + dim : idx[j];
            add_into(g + r * chunk, go, chunk);
        }
    }
    return 0;
}

static int gather_elements_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    int rc = check_grads(c, gout, gin);
    if (rc < 0 || !gin[0] || !gout[0])
        return rc;
    const Tensor *x = c->in[0], *ix = c->in[1];
    int r = x->shape.rank, axis = shape_axis(node_attr_int(c->node, "axis", 0), r);
    int64_t stride[SH_MAX_RANK], idx[SH_MAX_RANK] = {0}, st = 1;
    for (int a = r - 1; a >= 0; a--) {
        stride[a] = st;
        st *= x->shape.d[a];
    }
    const int64_t *ind = tensor_i64(ix);
    for (int64_t j = 0; j < ix->numel; j++) {
        int64_t at;
        if ((rc = resolve_index(c, ind[j], x->shape.d[axis], axis, &at)) < 0)
            return rc;
    }
    float *g = tensor_f32(gin[0]);
    const float *go = tensor_f32(gout[0]);
    for (int64_t j = 0; j < ix->numel; j++) {
        int64_t at = ind[j] < 0 ? ind[j] + x->shape.d[axis] : ind[j], off = 0;
        for (int a = 0; a < r; a++)
            off += (a == axis ? at : idx[a]) * stride[a];
        g[off] += go[j];
        for (int a = r - 1; a >= 0; a--) {
            if (++idx[a] < ix->shape.d[a])
                break;
            idx[a] = 0;
        }
    }
    return 0;
}

/* ---- Pad ---------------------------------------------------------------- */

typedef enum { PAD_CONSTANT, PAD_REFLECT, PAD_EDGE } PadMode;

/* Reads pads ([begin..., end...]: attribute before opset 11, input 1 from
 * 11) and the mode. */
static int pad_params(const OpCtx *c, int64_t *pads, PadMode *mode)
{
    int r = c->in[0]->shape.rank, n, rc;
    const char *m = node_attr_str(c->node, "mode", "constant");
    if (strcmp(m, "constant") == 0)
        *mode = PAD_CONSTANT;
    else if (strcmp(m, "reflect") == 0)
        *mode = PAD_REFLECT;
    else if (strcmp(m, "edge") == 0)
        *mode = PAD_EDGE;
    else
        return op_fail(c, SH_E_UNSUPPORTED, "mode '%s' is not supported (constant, reflect, edge)", m);
    if (present(c, 3))
        return op_fail(c, SH_E_UNSUPPORTED, "the axes input (opset 18) is not supported");
    if ((rc = ints_arg(c, "pads", 1, pads, 2 * SH_MAX_RANK, &n)) < 0)
        return rc;
    if (n < 0)
        return op_fail(c, SH_E_FORMAT, "pads are missing (attribute before opset 11, input 1 from 11)");
    if (n != 2 * r)
        return op_fail(c, SH_E_ARG, "pads has %d values; expected %d for rank %d", n, 2 * r, r);
    return 0;
}

static int pad_infer(OpCtx *c)
{
    int rc = check_any_input(c, 0);
    int64_t pads[2 * SH_MAX_RANK];
    PadMode mode;
    if (rc < 0 || (rc = pad_params(c, pads, &mode)) < 0)
        return rc;
    const Shape *in = &c->in[0]->shape;
    Shape o = {.rank = in->rank};
    for (int a = 0; a < in->rank; a++) {
        int64_t b = pads[a], e = pads[a + in->rank], d = in->d[a];
        if (__builtin_add_overflow(d, b, &o.d[a]) || __builtin_add_overflow(o.d[a], e, &o.d[a]) ||
            o.d[a] < 0)
            return op_fail(c, SH_E_SHAPE, "pads %lld,%lld on axis %d of size %lld give a negative size",
                           (long long)b, (long long)e, a, (long long)d);
        bool grows = b > 0 || e > 0;
        if (mode == PAD_EDGE && grows && d == 0)
            return op_fail(c, SH_E_SHAPE, "edge padding of empty axis %d", a);
        if (mode == PAD_REFLECT && grows && (d < 2 || b > d - 1 || e > d - 1))
            return op_fail(c, SH_E_SHAPE, "reflect pads %lld,%lld need axis %d (size %lld) to be longer than each pad",
                           (long long)b, (long long)e, a, (long long)d);
    }
    if (shape_numel(&o) < 0)
        return op_fail(c, SH_E_SHAPE, "output size overflows");
    if (present(c, 2) && c->in[2]->dtype != c->in[0]->dtype)
        return op_fail(c, SH_E_ARG, "constant_value is %s but data is %s",
                       dtype_name(c->in[2]->dtype), dtype_name(c->in[0]->dtype));
    op_set_out(c, 0, c->in[0]->dtype, &o);
    return 0;
}

/* Scratch: one source-index table per axis (sum of output dims). */
static size_t pad_scratch(const OpCtx *c)
{
    int64_t n = 0;
    for (int a = 0; a < c->out[0]->shape.rank; a++)
        n += c->out[0]->shape.d[a];
    return (size_t)n * sizeof(int64_t);
}

/* Source index in [0, dim) of output index o along one axis, or -1 where
 * the constant goes. */
static int64_t pad_source(int64_t o, int64_t begin, int64_t dim, PadMode mode)
{
    int64_t i = o - begin;
    if (i >= 0 && i < dim)
        return i;
    if (mode == PAD_CONSTANT)
        return -1;
    if (mode == PAD_EDGE)
        return i < 0 ? 0 : dim - 1;
    return i < 0 ? -i : 2 * (dim - 1) - i; /* reflect: pads < dim are checked */
}

/* The constant as one element of data's type (attribute value before
 * opset 11, optional input 2 from 11). */
static void pad_constant(const OpCtx *c, void *val)
{
    DType dt = c->in[0]->dtype;
    if (present(c, 2) && c->in[2]->numel > 0) {
        memcpy(val, c->in[2]->data, dtype_size(dt));
        return;
    }
    float f = node_attr_float(c->node, "value", 0.0f);
    if (dt == SH_F32)
        memcpy(val, &f, sizeof f);
    else if (dt == SH_I64)
        *(int64_t *)val = f > -9.2e18f && f < 9.2e18f ? (int64_t)f : 0;
    else if (dt == SH_U8)
        *(uint8_t *)val = f > 0 && f < 256 ? (uint8_t)f : f >= 256 ? 255 : 0;
    else
        *(uint8_t *)val = f != 0;
}

static inline __attribute__((always_inline)) void
pad_kernel(char *restrict out, const char *restrict in, const Shape *s, const Shape *o,
           int64_t *const *src, const char *val, size_t es)
{
    int r = o->rank;
    int64_t stride[SH_MAX_RANK], idx[SH_MAX_RANK] = {0}, st = 1;
    for (int a = r - 1; a >= 0; a--) {
        stride[a] = st;
        st *= s->d[a];
    }
    int64_t inner = r ? o->d[r - 1] : 1, rows = 1;
    for (int a = 0; a < r - 1; a++)
        rows *= o->d[a];
    const int64_t *last = r ? src[r - 1] : NULL;
    for (int64_t row = 0; row < rows; row++) {
        int64_t off = 0;
        bool fill = false;
        for (int a = 0; a < r - 1; a++) {
            int64_t i = src[a][idx[a]];
            fill |= i < 0;
            off += i * stride[a];
        }
        const char *base = fill ? NULL : in + off * (int64_t)es;
        for (int64_t j = 0; j < inner; j++, out += es) {
            int64_t i = last ? last[j] : 0;
            memcpy(out, !base || i < 0 ? val : base + i * (int64_t)es, es);
        }
        for (int k = r - 2; k >= 0; k--) {
            if (++idx[k] < o->d[k])
                break;
            idx[k] = 0;
        }
    }
}

static int pad_forward(OpCtx *c)
{
    int64_t pads[2 * SH_MAX_RANK];
    PadMode mode;
    int rc = pad_params(c, pads, &mode);
    if (rc < 0)
        return rc;
    const Shape *s = &c->in[0]->shape, *o = &c->out[0]->shape;
    if (c->out[0]->numel == 0)
        return 0;
    int64_t *src[SH_MAX_RANK], *tab = c->scratch;
    for (int a = 0; a < o->rank; a++) {
        src[a] = tab;
        for (int64_t i = 0; i < o->d[a]; i++)
            tab[i] = pad_source(i, pads[a], s->d[a], mode);
        tab += o->d[a];
    }
    char val[8] = {0};
    pad_constant(c, val);
    char *out = c->out[0]->data;
    const char *in = c->in[0]->data;
    switch (dtype_size(c->in[0]->dtype)) {
    case 1: pad_kernel(out, in, s, o, src, val, 1); break;
    case 4: pad_kernel(out, in, s, o, src, val, 4); break;
    case 8: pad_kernel(out, in, s, o, src, val, 8); break;
    default: return op_fail(c, SH_E_UNSUPPORTED, "unsupported element size");
    }
    return 0;
}

/* Border outputs [from, to) of one row: each adds to the input element
 * its table names or, where it is padding, to *fill (if given). */
static void pad_border_add(float *gin, const float *gout, const int64_t *last, int64_t from,
                           int64_t to, double *fill)
{
    for (int64_t j = from; j < to; j++) {
        int64_t i = last[j];
        if (i >= 0) {
            if (gin)
                gin[i] += gout[j];
        } else if (fill) {
            *fill += gout[j];
        }
    }
}

/* The adjoint of pad_kernel: each output element's gradient goes to the
 * input element it copied (reflect and edge fold several onto one), and
 * the gradient of padding elements adds to *fill when fill is not NULL.
 * On the last axis, outputs [j0, j1) copy input j - begin: a plain add. */
static void pad_backward_kernel(float *gin, const float *restrict gout, const Shape *s,
                                const Shape *o, int64_t *const *src, int64_t j0, int64_t j1,
                                int64_t begin, double *fill)
{
    int r = o->rank;
    int64_t stride[SH_MAX_RANK], idx[SH_MAX_RANK] = {0}, st = 1;
    for (int a = r - 1; a >= 0; a--) {
        stride[a] = st;
        st *= s->d[a];
    }
    int64_t inner = o->d[r - 1], rows = 1;
    for (int a = 0; a < r - 1; a++)
        rows *= o->d[a];
    const int64_t *last = src[r - 1];
    for (int64_t row = 0; row < rows; row++, gout += inner) {
        int64_t off = 0;
        bool padded = false;
        for (int a = 0; a < r - 1; a++) {
            int64_t i = src[a][idx[a]];
            padded |= i < 0;
            off += i * stride[a];
        }
        if (padded) {
            if (fill)
                *fill += sum_of(gout, inner);
        } else {
            float *g = gin ? gin + off : NULL;
            pad_border_add(g, gout, last, 0, j0, fill);
            pad_border_add(g, gout, last, j1, inner, fill);
            if (g && j1 > j0)
                add_into(g + j0 - begin, gout + j0, j1 - j0);
        }
        for (int k = r - 2; k >= 0; k--) {
            if (++idx[k] < o->d[k])
                break;
            idx[k] = 0;
        }
    }
}

/* Data gets the gradient of what it copied; the constant (input 2, from
 * opset 11) the sum over the padding. Pads get none. */
static int pad_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    int64_t pads[2 * SH_MAX_RANK];
    PadMode mode;
    int rc = check_grads(c, gout, gin);
    if (rc < 0 || !gout[0])
        return rc;
    if ((rc = pad_params(c, pads, &mode)) < 0)
        return rc;
    float *g = gin[0] ? tensor_f32(gin[0]) : NULL;
    bool want_value = mode == PAD_CONSTANT && present(c, 2) && gin[2] &&
                      gin[2]->numel > 0;
    const Shape *s = &c->in[0]->shape, *o = &c->out[0]->shape;
    if ((!g && !want_value) || c->out[0]->numel == 0)
        return 0;
    if (o->rank == 0) { /* a scalar pads to itself */
        if (g)
            g[0] += tensor_f32(gout[0])[0];
        return 0;
    }
    if (c->scratch_bytes < pad_scratch(c))
        return op_fail(c, SH_E_STATE, "scratch buffer is too small");
    int64_t *src[SH_MAX_RANK], *tab = c->scratch;
    for (int a = 0; a < o->rank; a++) {
        src[a] = tab;
        for (int64_t i = 0; i < o->d[a]; i++)
            tab[i] = pad_source(i, pads[a], s->d[a], mode);
        tab += o->d[a];
    }
    /* Outputs of the last axis that copy input j - begin in order. */
    int r = o->rank;
    int64_t begin = pads[r - 1], dim = s->d[r - 1];
    int64_t j0 = begin > 0 ? begin : 0, j1 = begin + dim < o->d[r - 1] ? begin + dim : o->d[r - 1];
    if (j0 > o->d[r - 1]) /* a crop on the other side can leave nothing copied */
        j0 = o->d[r - 1];
    if (j1 < j0)
        j1 = j0;
    double fill = 0;
    pad_backward_kernel(g, tensor_f32(gout[0]), s, o, src, j0, j1, begin, want_value ? &fill : NULL);
    if (want_value)
        tensor_f32(gin[2])[0] += (float)fill;
    return 0;
}

/* ---- DepthToSpace, SpaceToDepth ---------------------------------------- */

static int block_params(const OpCtx *c, int64_t *b)
{
    int rc = check_any_input(c, 0);
    if (rc < 0)
        return rc;
    if (c->in[0]->shape.rank != 4)
        return op_fail(c, SH_E_SHAPE, "input must be 4-D NCHW, got rank %d", c->in[0]->shape.rank);
    *b = node_attr_int(c->node, "blocksize", 0);
    if (*b < 1 || *b > (1 << 20))
        return op_fail(c, SH_E_ARG, "blocksize %lld is missing or invalid", (long long)*b);
    return 0;
}

/* CRD (column, row, depth) order from opset 11; DCR is the default. */
static int depth_mode_crd(const OpCtx *c, bool *crd)
{
    const char *m = node_attr_str(c->node, "mode", "DCR");
    *crd = strcmp(m, "CRD") == 0;
    if (!*crd && strcmp(m, "DCR") != 0)
        return op_fail(c, SH_E_UNSUPPORTED, "mode '%s' is not supported (DCR, CRD)", m);
    return 0;
}

/* The adjoint of depth_space_copy on floats: adds src into dst, where
 * dst is the flat side (SpaceToDepth's gradient) or the deep side
 * (DepthToSpace's); the other side is src. ds is the deep shape. */
static void depth_space_add(float *restrict dst, const float *restrict src, const Shape *ds,
                            int64_t b, bool crd, bool dst_is_flat)
{
    int64_t N = ds->d[0], C = ds->d[1] / (b * b), H = ds->d[2], W = ds->d[3];
    int64_t OH = H * b, OW = W * b;
    for (int64_t n = 0; n < N; n++)
        for (int64_t ch = 0; ch < C; ch++)
            for (int64_t i = 0; i < b; i++)
                for (int64_t j = 0; j < b; j++) {
                    int64_t dc = crd ? (ch * b + i) * b + j : (i * b + j) * C + ch;
                    for (int64_t h = 0; h < H; h++) {
                        int64_t d = ((n * C * b * b + dc) * H + h) * W;
                        int64_t f = ((n * C + ch) * OH + h * b + i) * OW + j;
                        if (dst_is_flat)
                            for (int64_t w = 0; w < W; w++)
                                dst[f + w * b] += src[d + w];
                        else
                            for (int64_t w = 0; w < W; w++)
                                dst[d + w] += src[f + w * b];
                    }
                }
}

static int depth_to_space_infer(OpCtx *c)
{
    int64_t b;
    bool crd;
    int rc = block_params(c, &b);
    if (rc < 0 || (rc = depth_mode_crd(c, &crd)) < 0)
        return rc;
    const Shape *s = &c->in[0]->shape;
    if (s->d[1] % (b * b) != 0)
        return op_fail(c, SH_E_SHAPE, "channels %lld are not divisible by blocksize^2 = %lld",
                       (long long)s->d[1], (long long)(b * b));
    Shape o = shape_of(4, s->d[0], s->d[1] / (b * b), (int64_t)0, (int64_t)0);
    if (!sh_mul_ok(s->d[2], b, &o.d[2]) || !sh_mul_ok(s->d[3], b, &o.d[3]) || shape_numel(&o) < 0)
        return op_fail(c, SH_E_SHAPE, "output size overflows");
    op_set_out(c, 0, c->in[0]->dtype, &o);
    return 0;
}

/* Pairs the deep layout [N, C*b*b, H, W] with the flat one [N, C, H*b, W*b]:
 * flat[n][ch][h*b+i][w*b+j] = deep[n][dc][h][w], dc = (i*b+j)*C+ch (DCR) or
 * (ch*b+i)*b+j (CRD). DepthToSpace copies deep to flat, SpaceToDepth
 * (always DCR) flat to deep. */
static void depth_space_copy(char *deep, char *flat, const Shape *ds, int64_t b, bool crd,
                             size_t es, bool to_flat)
{
    int64_t N = ds->d[0], C = ds->d[1] / (b * b), H = ds->d[2], W = ds->d[3];
    int64_t OH = H * b, OW = W * b;
    for (int64_t n = 0; n < N; n++)
        for (int64_t ch = 0; ch < C; ch++)
            for (int64_t i = 0; i < b; i++)
                for (int64_t j = 0; j < b; j++) {
                    int64_t dc = crd ? (ch * b + i) * b + j : (i * b + j) * C + ch;
                    for (int64_t h = 0; h < H; h++)
                        for (int64_t w = 0; w < W; w++) {
                            char *d = deep + (size_t)(((n * C * b * b + dc) * H + h) * W + w) * es;
                            char *f = flat + (size_t)(((n * C + ch) * OH + h * b + i) * OW + w * b + j) * es;
                            if (to_flat)
                                memcpy(f, d, es);
                            else
                                memcpy(d, f, es);
                        }
                }
}

static int depth_to_space_forward(OpCtx *c)
{
    int64_t b;
    bool crd;
    int rc = block_params(c, &b);
    if (rc < 0 || (rc = depth_mode_crd(c, &crd)) < 0)
        return rc;
    depth_space_copy(c->in[0]->data, c->out[0]->data, &c->in[0]->shape, b, crd,
                     dtype_size(c->in[0]->dtype), true);
    return 0;
}

static int space_to_depth_infer(OpCtx *c)
{
    int64_t b;
    int rc = block_params(c, &b);
    if (rc < 0)
        return rc;
    const Shape *s = &c->in[0]->shape;
    if (s->d[2] % b != 0 || s->d[3] % b != 0)
        return op_fail(c, SH_E_SHAPE, "height %lld and width %lld must be divisible by blocksize %lld",
                       (long long)s->d[2], (long long)s->d[3], (long long)b);
    Shape o = shape_of(4, s->d[0], (int64_t)0, s->d[2] / b, s->d[3] / b);
    if (!sh_mul_ok(s->d[1], b * b, &o.d[1]) || shape_numel(&o) < 0)
        return op_fail(c, SH_E_SHAPE, "output size overflows");
    op_set_out(c, 0, c->in[0]->dtype, &o);
    return 0;
}

/* SpaceToDepth is DepthToSpace in DCR mode run backwards. */
static int space_to_depth_forward(OpCtx *c)
{
    int64_t b;
    int rc = block_params(c, &b);
    if (rc < 0)
        return rc;
    depth_space_copy(c->out[0]->data, c->in[0]->data, &c->out[0]->shape, b, false,
                     dtype_size(c->in[0]->dtype), false);
    return 0;
}

static int depth_to_space_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    int64_t b;
    bool crd;
    int rc = check_grads(c, gout, gin);
    if (rc < 0 || !gin[0] || !gout[0])
        return rc;
    if ((rc = block_params(c, &b)) < 0 || (rc = depth_mode_crd(c, &crd)) < 0)
        return rc;
    depth_space_add(tensor_f32(gin[0]), tensor_f32(gout[0]), &c->in[0]->shape, b, crd, false);
    return 0;
}

static int space_to_depth_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    int64_t b;
    int rc = check_grads(c, gout, gin);
    if (rc < 0 || !gin[0] || !gout[0])
        return rc;
    if ((rc = block_params(c, &b)) < 0)
        return rc;
    depth_space_add(tensor_f32(gin[0]), tensor_f32(gout[0]), &c->out[0]->shape, b, false, true);
    return 0;
}

/* ---- channel coupling ---- */

/* Other axes than `axis` are the same channels in every input and the
 * output; along `axis` output index j comes from input k at j - off. */
static int concat_couple(CouplingCtx *cc)
{
    const Shape *out = cc_out_shape(cc, 0);
    int axis = shape_axis(node_attr_int(cc_node(cc), "axis", 0), out->rank);
    if (axis < 0 || out->d[axis] < 0)
        return 0; /* unknown: untouched channels block */
    int64_t *map = xmalloc(sizeof *map * (size_t)(out->d[axis] + 1)), off = 0;
    for (int k = 0; k < cc_node(cc)->n_in; k++) {
        if (!cc_has_input(cc, k))
            continue;
        const Shape *s = cc_in_shape(cc, k);
        for (int a = 0; a < s->rank; a++)
            if (a != axis)
                cc_same(cc, k, a, 0, a);
        for (int64_t j = 0; j < out->d[axis]; j++)
            map[j] = j >= off && j < off + s->d[axis] ? j - off : -1;
        cc_map(cc, k, axis, 0, axis, map);
        off += s->d[axis];
    }
    free(map);
    return 0;
}

static int split_couple(CouplingCtx *cc)
{
    const Shape *in = cc_in_shape(cc, 0);
    int axis = shape_axis(node_attr_int(cc_node(cc), "axis", 0), in->rank);
    if (axis < 0)
        return 0;
    int64_t off = 0;
    for (int k = 0; k < cc_node(cc)->n_out; k++) {
        if (cc_node(cc)->out[k] < 0)
            continue;
        const Shape *o = cc_out_shape(cc, k);
        for (int a = 0; a < in->rank; a++)
            if (a != axis)
                cc_same(cc, 0, a, k, a);
        int64_t *map = xmalloc(sizeof *map * (size_t)(o->d[axis] + 1));
        for (int64_t j = 0; j < o->d[axis]; j++)
            map[j] = off + j;
        cc_map(cc, 0, axis, k, axis, map);
        free(map);
        off += o->d[axis];
    }
    if (cc_has_input(cc, 1))
        cc_consume(cc, 1, 0);
    return 0;
}

/* Reads element k of a Slice argument: input `input` (opset 10+) or the
 * attribute; dflt if absent. */
static int64_t slice_arg(CouplingCtx *cc, int input, const char *attr, int k, int64_t dflt)
{
    const Tensor *t = cc_in_const(cc, input);
    if (t)
        return k < t->numel ? tensor_get_i(t, k) : dflt;
    const int64_t *v;
    int n = node_attr_ints(cc_node(cc), attr, &v);
    return k < n ? v[k] : dflt;
}

/* Output index j of a sliced axis is input index start + j * step. */
static int slice_couple(CouplingCtx *cc)
{
    const Shape *in = cc_in_shape(cc, 0), *out = cc_out_shape(cc, 0);
    bool sliced[SH_MAX_RANK] = {0};
    const Tensor *starts = cc_in_const(cc, 1);
    int n = starts ? (int)starts->numel : node_attr_ints(cc_node(cc), "starts", &(const int64_t *){0});
    for (int k = 0; k < n && k < SH_MAX_RANK; k++) {
        int a = shape_axis(slice_arg(cc, 3, "axes", k, k), in->rank);
        int64_t d = in->d[a < 0 ? 0 : a], step = slice_arg(cc, 4, "steps", k, 1);
        if (a < 0 || d < 0 || step == 0 || out->d[a] < 0)
            continue;
        int64_t st = slice_arg(cc, 1, "starts", k, 0);
        st = st < 0 ? st + d : st;
        st = step > 0 ? (st < 0 ? 0 : st > d ? d : st) : (st < 0 ? 0 : st > d - 1 ? d - 1 : st);
        int64_t *map = xmalloc(sizeof *map * (size_t)(out->d[a] + 1));
        for (int64_t j = 0; j < out->d[a]; j++)
            map[j] = st + j * step;
        cc_map(cc, 0, a, 0, a, map);
        free(map);
        sliced[a] = true;
    }
    for (int a = 0; a < in->rank; a++)
        if (!sliced[a])
            cc_same(cc, 0, a, 0, a);
    for (int i = 1; i < 5; i++)
        if (cc_has_input(cc, i))
            cc_consume(cc, i, 0);
    return 0;
}

/* Gather with constant indices: other axes keep their channels; along the
 * gathered axis a 1-D index list picks channels, a scalar drops the axis. */
static int gather_couple(CouplingCtx *cc)
{
    const Shape *in = cc_in_shape(cc, 0);
    const Tensor *idx = cc_in_const(cc, 1);
    int axis = shape_axis(node_attr_int(cc_node(cc), "axis", 0), in->rank);
    if (axis < 0)
        return 0;
    int ir = idx ? idx->shape.rank : cc_in_shape(cc, 1)->rank;
    for (int a = 0; a < in->rank; a++)
        if (a != axis)
            cc_same(cc, 0, a, 0, a < axis ? a : a + ir - 1);
    if (idx && ir == 1) {
        int64_t *map = xmalloc(sizeof *map * (size_t)(idx->numel + 1));
        for (int64_t j = 0; j < idx->numel; j++) {
            int64_t v = tensor_get_i(idx, j);
            map[j] = v < 0 ? v + in->d[axis] : v;
        }
        cc_map(cc, 0, axis, 0, axis, map);
        free(map);
    } else if (idx && ir == 0)
        cc_consume(cc, 0, axis); /* one position of the axis is taken, e.g. a class token */
    for (int a = 0; a < ir; a++)
        cc_consume(cc, 1, a);
    return 0;
}

/* Axes without padding keep their channels; padding a channel axis would
 * add channels no producer owns. */
static int pad_couple(CouplingCtx *cc)
{
    const Shape *in = cc_in_shape(cc, 0), *out = cc_out_shape(cc, 0);
    for (int a = 0; a < in->rank; a++) {
        if (in->d[a] == out->d[a])
            cc_same(cc, 0, a, 0, a);
    }
    for (int i = 1; i < cc_node(cc)->n_in; i++)
        if (cc_has_input(cc, i))
            cc_consume(cc, i, 0);
    return 0;
}

const OpDef sh_ops_slicing[] = {
    {.name = "Concat", .min_in = 1, .max_in = 1 << 16, .min_out = 1, .max_out = 1,
     .infer = concat_infer, .forward = concat_forward, .backward = concat_backward,
     .coupling = concat_couple},
    {.name = "Split", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 16,
     .shape_inputs = 1u << 1, .infer = split_infer, .forward = split_forward,
     .backward = split_backward,
     .coupling = split_couple},
    {.name = "Slice", .min_in = 1, .max_in = 5, .min_out = 1, .max_out = 1,
     .shape_inputs = 0x1Eu, .infer = slice_infer, .forward = slice_forward,
     .backward = slice_backward,
     .coupling = slice_couple},
    {.name = "Gather", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
     .infer = gather_infer, .forward = gather_forward, .backward = gather_backward,
     .coupling = gather_couple},
    {.name = "GatherElements", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
     .infer = gather_elements_infer, .forward = gather_elements_forward,
     .backward = gather_elements_backward},
    {.name = "Pad", .min_in = 1, .max_in = 4, .min_out = 1, .max_out = 1,
     .shape_inputs = 1u << 1, .infer = pad_infer, .forward = pad_forward, .scratch = pad_scratch,
     .backward = pad_backward, .bwd_scratch = pad_scratch,
     .coupling = pad_couple},
    {.name = "DepthToSpace", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
     .infer = depth_to_space_infer, .forward = depth_to_space_forward,
     .backward = depth_to_space_backward},
    {.name = "SpaceToDepth", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
     .infer = space_to_depth_infer, .forward = space_to_depth_forward,
     .backward = space_to_depth_backward},
    {.name = NULL},
};
