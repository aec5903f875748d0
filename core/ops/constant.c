/* Constant-producing and type ops: Constant, ConstantOfShape, Range, Cast,
 * CastLike, EyeLike, OneHot. Only a float-to-float Cast (or CastLike) has a
 * gradient: it passes through. */
#include "../error.h"
#include "../depgraph.h"
#include "../op.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

/* ---- small helpers ------------------------------------------------------ */

/* ONNX TensorProto.DataType names, for messages about types we lack. */
static const char *onnx_type_name(int64_t t)
{
    static const char *const names[] = {
        "UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64", "STRING",
        "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64", "COMPLEX64", "COMPLEX128", "BFLOAT16",
        "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "UINT4", "INT4",
    };
    return t >= 0 && t < (int64_t)(sizeof names / sizeof *names) ? names[t] : "unknown";
}

/* Maps an ONNX element type number to a DType, failing with its name. */
static int supported_type(const OpCtx *c, const char *what, int64_t t, DType *out)
{
    if (t < 0 || t > 1000 || !dtype_supported((int)t))
        return op_fail(c, SH_E_UNSUPPORTED,
                       "%s %s (%lld) is not supported; shears handles FLOAT, INT64, UINT8 and BOOL",
                       what, onnx_type_name(t), (long long)t);
    *out = (DType)t;
    return 0;
}

/* Fills n elements of es bytes at dst with the element at val. */
static void fill_elems(void *dst, int64_t n, const void *val, size_t es)
{
    char *p = dst;
    for (int64_t i = 0; i < n; i++, p += es)
        memcpy(p, val, es);
}

/* Reads a 1-D int64 shape input known when planning; returns count or error. */
static int shape_input(const OpCtx *c, int i, int64_t *buf)
{
    const Tensor *t = c->in[i];
    if (t->dtype != SH_I64)
        return op_fail(c, SH_E_UNSUPPORTED, "shape (input %d) is %s; expected int64", i,
                       dtype_name(t->dtype));
    if (t->shape.rank > 1)
        return op_fail(c, SH_E_SHAPE, "shape (input %d) must be 1-D, got rank %d", i, t->shape.rank);
    if (t->numel > SH_MAX_RANK)
        return op_fail(c, SH_E_UNSUPPORTED, "shape (input %d) has %lld dims; at most %d supported", i,
                       (long long)t->numel, SH_MAX_RANK);
    if (t->numel > 0 && !t->data)
        return op_fail(c, SH_E_STATE, "shape (input %d) is not known when planning", i);
    for (int64_t k = 0; k < t->numel; k++) {
        buf[k] = tensor_i64(t)[k];
        if (buf[k] < 0)
            return op_fail(c, SH_E_SHAPE, "shape has a negative dimension %lld", (long long)buf[k]);
    }
    return (int)t->numel;
}

/* Requires input i to hold exactly one element with data. */
static int scalar_input(const OpCtx *c, int i, const char *what)
{
    int rc = op_check_input(c, i, SH_UNDEF);
    if (rc < 0)
        return rc;
    if (c->in[i]->numel != 1)
        return op_fail(c, SH_E_SHAPE, "%s (input %d) must be a scalar, got %lld elements", what, i,
                       (long long)c->in[i]->numel);
    if (!c->in[i]->data)
        return op_fail(c, SH_E_STATE, "%s (input %d) is not known when planning", what, i);
    return 0;
}

/* ---- Constant ----------------------------------------------------------- */

/* The value of a Constant node: one of value (tensor), value_float(s),
 * value_int(s) (opset 12). data is borrowed from the attribute. */
typedef struct {
    DType dtype;
    Shape shape;
    const void *data;
} ConstValue;

static int constant_value(const OpCtx *c, ConstValue *v)
{
    static const char *const unsupported[] = {"sparse_value", "value_string", "value_strings"};
    const Attr *a;
    if ((a = node_attr(c->node, "value")) && a->type == ATTR_TENSOR && a->t) {
        *v = (ConstValue){a->t->dtype, a->t->shape, a->t->data};
    } else if ((a = node_attr(c->node, "value_float")) && a->type == ATTR_FLOAT) {
        *v = (ConstValue){SH_F32, {.rank = 0}, &a->f};
    } else if ((a = node_attr(c->node, "value_floats")) && a->type == ATTR_FLOATS) {
        *v = (ConstValue){SH_F32, shape_of(1, (int64_t)a->n), a->floats};
    } else if ((a = node_attr(c->node, "value_int")) && a->type == ATTR_INT) {
        *v = (ConstValue){SH_I64, {.rank = 0}, &a->i};
    } else if ((a = node_attr(c->node, "value_ints")) && a->type == ATTR_INTS) {
        *v = (ConstValue){SH_I64, shape_of(1, (int64_t)a->n), a->ints};
    } else {
        for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++)
            if (node_attr(c->node, unsupported[i]))
                return op_fail(c, SH_E_UNSUPPORTED, "attribute %s is not supported", unsupported[i]);
        return op_fail(c, SH_E_FORMAT, "has no value attribute");
    }
    if (dtype_size(v->dtype) == 0)
        return op_fail(c, SH_E_UNSUPPORTED, "value has unsupported element type %d", (int)v->dtype);
    return 0;
}

static int constant_infer(OpCtx *c)
{
    ConstValue v;
    int rc = constant_value(c, &v);
    if (rc < 0)
        return rc;
    op_set_out(c, 0, v.dtype, &v.shape);
    return 0;
}

static int constant_forward(OpCtx *c)
{
    ConstValue v;
    int rc = constant_value(c, &v);
    if (rc < 0)
        return rc;
    size_t bytes = tensor_bytes(c->out[0]);
    if (bytes)
        memcpy(c->out[0]->data, v.data, bytes);
    return 0;
}

/* ---- ConstantOfShape ---------------------------------------------------- */

/* The fill value: a one-element tensor attribute, float 0 by default. */
static int fill_value(const OpCtx *c, DType *dt, const void **val)
{
    static const float zero = 0.0f;
    const Attr *a = node_attr(c->node, "value");
    if (!a) {
        *dt = SH_F32;
        *val = &zero;
        return 0;
    }
    if (a->type != ATTR_TENSOR || !a->t || a->t->numel != 1)
        return op_fail(c, SH_E_ARG, "attribute value must be a one-element tensor");
    if (dtype_size(a->t->dtype) == 0)
        return op_fail(c, SH_E_UNSUPPORTED, "value has unsupported element type %d", (int)a->t->dtype);
    *dt = a->t->dtype;
    *val = a->t->data;
    return 0;
}

static int constant_of_shape_infer(OpCtx *c)
{
    int rc = op_check_input(c, 0, SH_UNDEF);
    if (rc < 0)
        return rc;
    int64_t dims[SH_MAX_RANK];
    int n = shape_input(c, 0, dims);
    if (n < 0)
        return n;
    DType dt = SH_UNDEF;
    const void *val;
    if ((rc = fill_value(c, &dt, &val)) < 0)
        return rc;
    Shape o = shape_make(n, dims);
    if (shape_numel(&o) < 0)
        return op_fail(c, SH_E_SHAPE, "output size overflows");
    op_set_out(c, 0, dt, &o);
    return 0;
}

static int constant_of_shape_forward(OpCtx *c)
{
    DType dt = SH_UNDEF;
    const void *val;
    int rc = fill_value(c, &dt, &val);
    if (rc < 0)
        return rc;
    fill_elems(c->out[0]->data, c->out[0]->numel, val, dtype_size(dt));
    return 0;
}

/* ---- Range -------------------------------------------------------------- */

/* n = max(ceil((limit - start) / delta), 0), checked. */
static int range_count(const OpCtx *c, int64_t *n)
{
    int rc;
    for (int i = 0; i < 3; i++)
        if ((rc = scalar_input(c, i, i == 0 ? "start" : i == 1 ? "limit" : "delta")) < 0)
            return rc;
    DType dt = c->in[0]->dtype;
    if (dt != SH_F32 && dt != SH_I64)
        return op_fail(c, SH_E_UNSUPPORTED, "inputs are %s; expected float32 or int64", dtype_name(dt));
    if (c->in[1]->dtype != dt || c->in[2]->dtype != dt)
        return op_fail(c, SH_E_ARG, "start, limit and delta must have one type");
    if (dt == SH_I64) {
        int64_t s = tensor_i64(c->in[0])[0], l = tensor_i64(c->in[1])[0], d = tensor_i64(c->in[2])[0];
        int64_t span;
        if (d == 0)
            return op_fail(c, SH_E_ARG, "delta is 0");
        if (__builtin_sub_overflow(l, s, &span))
            return op_fail(c, SH_E_ARG, "limit - start overflows");
        if ((span > 0) != (d > 0) || span == 0) {
            *n = 0;
            return 0;
        }
        /* Same signs: ceil division without overflow. */
        *n = span > 0 ? (span - 1) / d + 1 : (span + 1) / d + 1;
        return 0;
    }
    double s = tensor_f32(c->in[0])[0], l = tensor_f32(c->in[1])[0], d = tensor_f32(c->in[2])[0];
    if (d == 0)
        return op_fail(c, SH_E_ARG, "delta is 0");
    double k = ceil((l - s) / d);
    if (!(k < 1e15))
        return op_fail(c, SH_E_ARG, "range of %g to %g by %g has too many (or non-finite) elements",
                       s, l, d);
    *n = k > 0 ? (int64_t)k : 0;
    return 0;
}

static int range_infer(OpCtx *c)
{
    int64_t n = 0;
    int rc = range_count(c, &n);
    if (rc < 0)
        return rc;
    Shape o = shape_of(1, n);
    op_set_out(c, 0, c->in[0]->dtype, &o);
    return 0;
}

/* output[i] = start + i * delta, as the spec writes it. */
static int range_forward(OpCtx *c)
{
    Tensor *y = c->out[0];
    if (y->dtype == SH_I64) {
        int64_t s = tensor_i64(c->in[0])[0], d = tensor_i64(c->in[2])[0];
        for (int64_t i = 0; i < y->numel; i++)
            tensor_i64(y)[i] = s + i * d;
    } else {
        double s = tensor_f32(c->in[0])[0], d = tensor_f32(c->in[2])[0];
        for (int64_t i = 0; i < y->numel; i++)
            tensor_f32(y)[i] = (float)(s + (double)i * d);
    }
    return 0;
}

/* ---- Cast, CastLike ----------------------------------------------------- */

/* Float to integer truncates toward zero. Out-of-range values saturate
 * and NaN becomes 0 (C leaves both undefined; this matches ARM and is the
 * same on every machine). */
static int64_t f32_to_i64(float f)
{
    if (f != f)
        return 0;
    if (f >= 9223372036854775808.0f)
        return INT64_MAX;
    if (f < -9223372036854775808.0f)
        return INT64_MIN;
    return (int64_t)f;
}

static uint8_t f32_to_u8(float f)
{
    if (f != f || f <= -1.0f)
        return 0;
    return f >= 256.0f ? 255 : (uint8_t)f;
}

static void cast_to_f32(float *y, const Tensor *x)
{
    for (int64_t i = 0; i < x->numel; i++)
        switch (x->dtype) {
        case SH_I64: y[i] = (float)tensor_i64(x)[i]; break;
        case SH_U8:
        case SH_BOOL: y[i] = (float)tensor_u8(x)[i]; break;
        default: y[i] = tensor_f32(x)[i]; break;
        }
}

static void cast_to_i64(int64_t *y, const Tensor *x)
{
    for (int64_t i = 0; i < x->numel; i++)
        switch (x->dtype) {
        case SH_F32: y[i] = f32_to_i64(tensor_f32(x)[i]); break;
        case SH_U8:
        case SH_BOOL: y[i] = tensor_u8(x)[i]; break;
        default: y[i] = tensor_i64(x)[i]; break;
        }
}

/* int64 to uint8 wraps modulo 256, like C and numpy. */
static void cast_to_u8(uint8_t *y, const Tensor *x)
{
    for (int64_t i = 0; i < x->numel; i++)
        switch (x->dtype) {
        case SH_F32: y[i] = f32_to_u8(tensor_f32(x)[i]); break;
        case SH_I64: y[i] = (uint8_t)tensor_i64(x)[i]; break;
        default: y[i] = tensor_u8(x)[i]; break;
        }
}

/* To bool is x != 0 (NaN is true). */
static void cast_to_bool(uint8_t *y, const Tensor *x)
{
    for (int64_t i = 0; i < x->numel; i++)
        switch (x->dtype) {
        case SH_F32: y[i] = tensor_f32(x)[i] != 0.0f; break;
        case SH_I64: y[i] = tensor_i64(x)[i] != 0; break;
        default: y[i] = tensor_u8(x)[i] != 0; break;
        }
}

static int cast_infer(OpCtx *c)
{
    int rc = op_check_input(c, 0, SH_UNDEF);
    if (rc < 0)
        return rc;
    const Attr *to = node_attr(c->node, "to");
    if (!to || to->type != ATTR_INT)
        return op_fail(c, SH_E_FORMAT, "attribute to is missing");
    DType dt = SH_UNDEF;
    if ((rc = supported_type(c, "target type", to->i, &dt)) < 0)
        return rc;
    op_set_out(c, 0, dt, &c->in[0]->shape);
    return 0;
}

static int cast_like_infer(OpCtx *c)
{
    int rc = op_check_input(c, 0, SH_UNDEF);
    if (rc < 0 || (rc = op_check_input(c, 1, SH_UNDEF)) < 0)
        return rc;
    DType dt = SH_UNDEF;
    if ((rc = supported_type(c, "target type", c->in[1]->dtype, &dt)) < 0)
        return rc;
    op_set_out(c, 0, dt, &c->in[0]->shape);
    return 0;
}

static int cast_forward(OpCtx *c)
{
    const Tensor *x = c->in[0];
    Tensor *y = c->out[0];
    switch (y->dtype) {
    case SH_F32: cast_to_f32(y->data, x); break;
    case SH_I64: cast_to_i64(y->data, x); break;
    case SH_U8: cast_to_u8(y->data, x); break;
    case SH_BOOL: cast_to_bool(y->data, x); break;
    default: return op_fail(c, SH_E_UNSUPPORTED, "cannot cast to %s", dtype_name(y->dtype));
    }
    return 0;
}

/* float32 to float32 is the identity, so the gradient passes through; a
 * cast to or from an integer type has none (the trainer does not ask). */
static int cast_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    if (!gin[0] || !gout[0])
        return 0;
    const Tensor *x = c->in[0], *y = c->out[0];
    if (x->dtype != SH_F32 || y->dtype != SH_F32)
        return op_fail(c, SH_E_UNSUPPORTED, "no gradient flows through a cast from %s to %s",
                       dtype_name(x->dtype), dtype_name(y->dtype));
    if (gin[0]->dtype != SH_F32 || gout[0]->dtype != SH_F32 || gin[0]->numel != x->numel ||
        gout[0]->numel != y->numel)
        return op_fail(c, SH_E_STATE, "gradients must be float32 with %lld elements",
                       (long long)x->numel);
    float *g = tensor_f32(gin[0]);
    const float *go = tensor_f32(gout[0]);
    for (int64_t i = 0; i < x->numel; i++)
        g[i] += go[i];
    return 0;
}

/* ---- EyeLike ------------------------------------------------------------ */

static int eye_like_infer(OpCtx *c)
{
    int rc = op_check_input(c, 0, SH_UNDEF);
    if (rc < 0)
        return rc;
    if (c->in[0]->shape.rank != 2)
        return op_fail(c, SH_E_SHAPE, "input must be 2-D, got rank %d", c->in[0]->shape.rank);
    DType dt = c->in[0]->dtype;
    const Attr *a = node_attr(c->node, "dtype");
    if (a && a->type == ATTR_INT && (rc = supported_type(c, "dtype", a->i, &dt)) < 0)
        return rc;
    op_set_out(c, 0, dt, &c->in[0]->shape);
    return 0;
}

static int eye_like_forward(OpCtx *c)
{
    Tensor *y = c->out[0];
    int64_t rows = y->shape.d[0], cols = y->shape.d[1], k = node_attr_int(c->node, "k", 0);
    size_t es = dtype_size(y->dtype);
    if (y->numel)
        memset(y->data, 0, tensor_bytes(y));
    const float one_f = 1.0f;
    const int64_t one_i = 1;
    const uint8_t one_b = 1;
    const void *one = y->dtype == SH_F32 ? (const void *)&one_f
                      : y->dtype == SH_I64 ? (const void *)&one_i : (const void *)&one_b;
    if (k <= -rows || k >= cols) /* the diagonal misses the matrix */
        return 0;
    for (int64_t i = k < 0 ? -k : 0; i < rows && i + k < cols; i++)
        memcpy((char *)y->data + (size_t)(i * cols + i + k) * es, one, es);
    return 0;
}

/* ---- OneHot ------------------------------------------------------------- */

static int one_hot_depth(const OpCtx *c, int64_t *depth)
{
    int rc = scalar_input(c, 1, "depth");
    if (rc < 0)
        return rc;
    double d = tensor_get_f(c->in[1], 0);
    if (!(d >= 1 && d < 1e12))
        return op_fail(c, SH_E_ARG, "depth %g must be a positive count", d);
    *depth = (int64_t)d;
    return 0;
}

static int one_hot_axis(const OpCtx *c, int out_rank, int *axis)
{
    int64_t a = node_attr_int(c->node, "axis", -1);
    *axis = shape_axis(a, out_rank);
    if (*axis < 0)
        return op_fail(c, SH_E_ARG, "axis %lld is out of range for output rank %d", (long long)a,
                       out_rank);
    return 0;
}

static int one_hot_infer(OpCtx *c)
{
    int rc = op_check_input(c, 0, SH_UNDEF), axis;
    int64_t depth = 0;
    if (rc < 0 || (rc = op_check_input(c, 2, SH_UNDEF)) < 0 || (rc = one_hot_depth(c, &depth)) < 0)
        return rc;
    const Shape *ix = &c->in[0]->shape;
    if (ix->rank + 1 > SH_MAX_RANK)
        return op_fail(c, SH_E_UNSUPPORTED, "output rank %d exceeds the maximum %d", ix->rank + 1,
                       SH_MAX_RANK);
    if (c->in[2]->numel != 2)
        return op_fail(c, SH_E_SHAPE, "values must hold [off, on], got %lld elements",
                       (long long)c->in[2]->numel);
    if ((rc = one_hot_axis(c, ix->rank + 1, &axis)) < 0)
        return rc;
    Shape o = {.rank = ix->rank + 1};
    for (int a = 0, j = 0; a < o.rank; a++)
        o.d[a] = a == axis ? depth : ix->d[j++];
    if (shape_numel(&o) < 0)
        return op_fail(c, SH_E_SHAPE, "output size overflows");
    op_set_out(c, 0, c->in[2]->dtype, &o);
    return 0;
}

/* Negative indices count from depth; indices still out of range give an
 * all-off row, as the spec says. */
static int one_hot_forward(OpCtx *c)
{
    const Tensor *ix = c->in[0], *vals = c->in[2];
    Tensor *y = c->out[0];
    int64_t depth = 0;
    int axis, rc;
    if ((rc = one_hot_depth(c, &depth)) < 0 || (rc = one_hot_axis(c, ix->shape.rank + 1, &axis)) < 0)
        return rc;
    size_t es = dtype_size(y->dtype);
    const char *off = vals->data, *on = off + es;
    fill_elems(y->data, y->numel, off, es);
    int64_t inner = 1;
    for (int a = axis; a < ix->shape.rank; a++)
        inner *= ix->shape.d[a];
    for (int64_t i = 0; i < ix->numel; i++) {
        double v = tensor_get_f(ix, i);
        if (!(v > -1e15 && v < 1e15))
            continue;
        int64_t k = ix->dtype == SH_I64 ? tensor_i64(ix)[i] : (int64_t)v;
        if (k < 0)
            k += depth;
        if (k < 0 || k >= depth)
            continue;
        int64_t o = i / inner, j = i % inner;
        memcpy((char *)y->data + (size_t)((o * depth + k) * inner + j) * es, on, es);
    }
    return 0;
}

/* ---- channel coupling ---- */

static int eyelike_couple(CouplingCtx *cc)
{
    for (int a = 0; a < cc_in_shape(cc, 0)->rank; a++)
        cc_consume(cc, 0, a); /* only the shape is read */
    return 0;
}

const OpDef sh_ops_constant[] = {
    {.name = "Constant", .min_in = 0, .max_in = 0, .min_out = 1, .max_out = 1,
     .infer = constant_infer, .forward = constant_forward},
    {.name = "ConstantOfShape", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
     .shape_inputs = 1u << 0, .infer = constant_of_shape_infer, .forward = constant_of_shape_forward},
    {.name = "Range", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1, .shape_inputs = 0x7u,
     .infer = range_infer, .forward = range_forward},
    {.name = "Cast", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
     .infer = cast_infer, .forward = cast_forward, .backward = cast_backward,
     .coupling = couple_unary},
    {.name = "CastLike", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
     .infer = cast_like_infer, .forward = cast_forward, .backward = cast_backward,
     .coupling = couple_unary},
    {.name = "EyeLike", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
     .infer = eye_like_infer, .forward = eye_like_forward,
     .coupling = eyelike_couple},
    {.name = "OneHot", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1, .shape_inputs = 1u << 1,
     .infer = one_hot_infer, .forward = one_hot_forward},
    {.name = NULL},
};
