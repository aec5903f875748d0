/* Elementwise ops with numpy broadcasting: arithmetic, comparisons, logic,
 * variadic Max/Min/Sum/Mean and Where.
 *
 * Kernels work on one contiguous run of the output: y[i] = a[i*sa] op b[i*sb]
 * with each step 0 (broadcast operand) or 1. Same shapes and scalar operands
 * are one run; any other broadcast is planned once into merged dims with
 * element strides (0 where broadcast) and walked by an odometer that only
 * adds and subtracts strides, so there is no division per element. The
 * naive reference (index arithmetic per element) lives in
 * tests/test_ops_elementwise.c, which holds the two together. */
#include "../error.h"
#include "../depgraph.h"
#include "../op.h"

#include <limits.h>
#include <math.h>
#include <string.h>

#define EW_MAX_IN 3
#define VARIADIC_MAX_IN 65536

/* ---- broadcast plan ----------------------------------------------------- */

typedef struct {
    int rank; /* after dropping size-1 dims and merging */
    int n_in;
    int64_t dim[SH_MAX_RANK];
    int64_t stride[EW_MAX_IN][SH_MAX_RANK]; /* element strides, 0 where broadcast */
    int64_t inner;                           /* dim[rank-1]: length of one run */
    int64_t runs;                            /* number of runs */
} Bcast;

/* Odometer position: element offsets of each input at the current run. */
typedef struct {
    int64_t idx[SH_MAX_RANK];
    int64_t off[EW_MAX_IN];
} BcastPos;

/* Plans the walk of output shape out over inputs that broadcast to it. */
static void bcast_plan(Bcast *b, const Shape *out, const Shape *const *in, int n_in)
{
    memset(b, 0, sizeof *b);
    b->n_in = n_in;
    int r = 0;
    for (int k = 0; k < out->rank; k++) {
        if (out->d[k] == 1)
            continue; /* contributes nothing to offsets */
        b->dim[r] = out->d[k];
        for (int j = 0; j < n_in; j++) {
            int kk = k - (out->rank - in[j]->rank);
            int64_t st = 0;
            if (kk >= 0 && in[j]->d[kk] == out->d[k])
                st = shape_prod(in[j], kk + 1, in[j]->rank);
            b->stride[j][r] = st;
        }
        r++;
    }
    /* Merge dim m into the one before it when every input walks them as
     * one contiguous (or one broadcast) block. */
    int m = 0;
    for (int k = 1; k < r; k++) {
        int merge = 1;
        for (int j = 0; j < n_in; j++)
            merge &= b->stride[j][m] == b->stride[j][k] * b->dim[k];
        if (merge) {
            b->dim[m] *= b->dim[k];
            for (int j = 0; j < n_in; j++)
                b->stride[j][m] = b->stride[j][k];
        } else {
            m++;
            b->dim[m] = b->dim[k];
            for (int j = 0; j < n_in; j++)
                b->stride[j][m] = b->stride[j][k];
        }
    }
    b->rank = r ? m + 1 : 1;
    if (!r) { /* scalar output */
        b->dim[0] = 1;
        for (int j = 0; j < n_in; j++)
            b->stride[j][0] = 0;
    }
    b->inner = b->dim[b->rank - 1];
    b->runs = shape_prod(out, 0, out->rank) / (b->inner ? b->inner : 1);
    if (b->inner == 0)
        b->runs = 0;
}

/* Step of input j within a run: 0 (broadcast) or 1. */
static int bcast_step(const Bcast *b, int j) { return b->stride[j][b->rank - 1] != 0; }

/* Advances p to the next run. */
static void bcast_next(const Bcast *b, BcastPos *p)
{
    for (int k = b->rank - 2; k >= 0; k--) {
        for (int j = 0; j < b->n_in; j++)
            p->off[j] += b->stride[j][k];
        if (++p->idx[k] < b->dim[k])
            return;
        p->idx[k] = 0;
        for (int j = 0; j < b->n_in; j++)
            p->off[j] -= b->stride[j][k] * b->dim[k];
    }
}

/* ---- binary kernels ----------------------------------------------------- */

/* y[i] = f(a[i*sa], b[i*sb]) for i < n. */
typedef void (*BinKernel)(void *y, const void *a, const void *b, int64_t n, int sa, int sb);

/* Defines a kernel with the four step combinations as separate loops so
 * that each one vectorizes. EXPR reads x0 (from a) and x1 (from b). */
#define BIN_KERNEL(name, TA, TB, TY, EXPR)                                                     \
    static void name(void *y_, const void *a_, const void *b_, int64_t n, int sa, int sb)      \
    {                                                                                          \
        TY *y = y_;                                                                            \
        const TA *a = a_;                                                                      \
        const TB *b = b_;                                                                      \
        if (sa && sb) {                                                                        \
            for (int64_t i = 0; i < n; i++) {                                                  \
                TA x0 = a[i];                                                                  \
                TB x1 = b[i];                                                                  \
                y[i] = (EXPR);                                                                 \
            }                                                                                  \
        } else if (sa) {                                                                       \
            const TB x1 = b[0];                                                                \
            for (int64_t i = 0; i < n; i++) {                                                  \
                TA x0 = a[i];                                                                  \
                y[i] = (EXPR);                                                                 \
            }                                                                                  \
        } else if (sb) {                                                                       \
            const TA x0 = a[0];                                                                \
            for (int64_t i = 0; i < n; i++) {                                                  \
                TB x1 = b[i];                                                                  \
                y[i] = (EXPR);                                                                 \
            }                                                                                  \
        } else {                                                                               \
            const TA x0 = a[0];                                                                \
            const TB x1 = b[0];                                                                \
            const TY v = (EXPR);                                                               \
            for (int64_t i = 0; i < n; i++)                                                    \
                y[i] = v;                                                                      \
        }                                                                                      \
    }

/* Int64 arithmetic wraps (through uint64) instead of being undefined. */
#define WRAP(op, x, y) ((int64_t)((uint64_t)(x) op (uint64_t)(y)))

static int64_t ipow(int64_t base, int64_t e)
{
    if (e < 0) /* truncated 1/base^-e */
        return base == 1 ? 1 : base == -1 ? (e % 2 ? -1 : 1) : 0;
    uint64_t r = 1, b = (uint64_t)base;
    for (; e; e >>= 1, b *= b)
        if (e & 1)
            r *= b;
    return (int64_t)r;
}

/* Truncates toward zero, saturating where the result does not fit (NaN
 * gives 0) instead of the undefined cast. */
static int64_t i64_from_double(double v)
{
    if (v != v)
        return 0;
    if (v >= 9223372036854775807.0)
        return INT64_MAX;
    if (v <= -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)v;
}

/* Float max/min that propagate NaN from either side, like numpy. */
static inline float fmax_nan(float x, float y) { return x > y || x != x ? x : y; }
static inline float fmin_nan(float x, float y) { return x < y || x != x ? x : y; }

BIN_KERNEL(add_f32, float, float, float, x0 + x1)
BIN_KERNEL(sub_f32, float, float, float, x0 - x1)
BIN_KERNEL(mul_f32, float, float, float, x0 * x1)
BIN_KERNEL(div_f32, float, float, float, x0 / x1)
BIN_KERNEL(max_f32, float, float, float, fmax_nan(x0, x1))
BIN_KERNEL(min_f32, float, float, float, fmin_nan(x0, x1))
BIN_KERNEL(pow_f32, float, float, float, powf(x0, x1))
BIN_KERNEL(pow_f32_i64, float, int64_t, float, (float)pow((double)x0, (double)x1))
BIN_KERNEL(pow_i64, int64_t, int64_t, int64_t, ipow(x0, x1))
BIN_KERNEL(pow_i64_f32, int64_t, float, int64_t, i64_from_double(pow((double)x0, (double)x1)))
BIN_KERNEL(add_i64, int64_t, int64_t, int64_t, WRAP(+, x0, x1))
BIN_KERNEL(sub_i64, int64_t, int64_t, int64_t, WRAP(-, x0, x1))
BIN_KERNEL(mul_i64, int64_t, int64_t, int64_t, WRAP(*, x0, x1))
/* Truncates toward zero like C and ONNX; zero divisors are rejected before
 * the kernel runs, INT64_MIN / -1 wraps. */
BIN_KERNEL(div_i64, int64_t, int64_t, int64_t, x1 == -1 ? WRAP(-, 0, x0) : x0 / x1)
/* Mod: C's truncated remainder (fmod=1), or the sign of the divisor like
 * Python (fmod=0). x % -1 is 0; computing it could trap on INT64_MIN. */
static inline int64_t mod_floor(int64_t x0, int64_t x1)
{
    int64_t r = x1 == -1 ? 0 : x0 % x1;
    return r != 0 && (r < 0) != (x1 < 0) ? r + x1 : r;
}
BIN_KERNEL(fmod_f32, float, float, float, fmodf(x0, x1))
BIN_KERNEL(fmod_i64, int64_t, int64_t, int64_t, x1 == -1 ? 0 : x0 % x1)
BIN_KERNEL(mod_i64, int64_t, int64_t, int64_t, mod_floor(x0, x1))
BIN_KERNEL(mod_u8, uint8_t, uint8_t, uint8_t, (uint8_t)(x0 % x1))
BIN_KERNEL(max_i64, int64_t, int64_t, int64_t, x0 > x1 ? x0 : x1)
BIN_KERNEL(min_i64, int64_t, int64_t, int64_t, x0 < x1 ? x0 : x1)

BIN_KERNEL(add_u8, uint8_t, uint8_t, uint8_t, (uint8_t)(x0 + x1))
BIN_KERNEL(sub_u8, uint8_t, uint8_t, uint8_t, (uint8_t)(x0 - x1))
BIN_KERNEL(mul_u8, uint8_t, uint8_t, uint8_t, (uint8_t)(x0 * x1))
BIN_KERNEL(div_u8, uint8_t, uint8_t, uint8_t, (uint8_t)(x0 / x1))
BIN_KERNEL(max_u8, uint8_t, uint8_t, uint8_t, x0 > x1 ? x0 : x1)
BIN_KERNEL(min_u8, uint8_t, uint8_t, uint8_t, x0 < x1 ? x0 : x1)

BIN_KERNEL(eq_f32, float, float, uint8_t, x0 == x1)
BIN_KERNEL(gt_f32, float, float, uint8_t, x0 > x1)
BIN_KERNEL(lt_f32, float, float, uint8_t, x0 < x1)
BIN_KERNEL(ge_f32, float, float, uint8_t, x0 >= x1)
BIN_KERNEL(le_f32, float, float, uint8_t, x0 <= x1)
BIN_KERNEL(eq_i64, int64_t, int64_t, uint8_t, x0 == x1)
BIN_KERNEL(gt_i64, int64_t, int64_t, uint8_t, x0 > x1)
BIN_KERNEL(lt_i64, int64_t, int64_t, uint8_t, x0 < x1)
BIN_KERNEL(ge_i64, int64_t, int64_t, uint8_t, x0 >= x1)
BIN_KERNEL(le_i64, int64_t, int64_t, uint8_t, x0 <= x1)
BIN_KERNEL(eq_bool, uint8_t, uint8_t, uint8_t, (x0 != 0) == (x1 != 0))
BIN_KERNEL(and_bool, uint8_t, uint8_t, uint8_t, x0 && x1)
BIN_KERNEL(or_bool, uint8_t, uint8_t, uint8_t, x0 || x1)
BIN_KERNEL(xor_bool, uint8_t, uint8_t, uint8_t, (x0 != 0) != (x1 != 0))

/* ---- op descriptions ---------------------------------------------------- */

enum { T_F32, T_I64, T_BOOL, T_U8, T_COUNT };

static int type_class(DType t)
{
    switch (t) {
    case SH_F32: return T_F32;
    case SH_I64: return T_I64;
    case SH_BOOL: return T_BOOL;
    case SH_U8: return T_U8;
    default: return -1;
    }
}

typedef struct {
    BinKernel k[T_COUNT][T_COUNT]; /* by type of a and b; NULL: unsupported */
    int to_bool;                   /* output is bool, else a's type */
} BinOp;

static const BinOp ADD = {.k = {[T_F32][T_F32] = add_f32, [T_I64][T_I64] = add_i64,
                               [T_U8][T_U8] = add_u8}};
static const BinOp SUB = {.k = {[T_F32][T_F32] = sub_f32, [T_I64][T_I64] = sub_i64,
                               [T_U8][T_U8] = sub_u8}};
static const BinOp MUL = {.k = {[T_F32][T_F32] = mul_f32, [T_I64][T_I64] = mul_i64,
                               [T_U8][T_U8] = mul_u8}};
static const BinOp DIV = {.k = {[T_F32][T_F32] = div_f32, [T_I64][T_I64] = div_i64,
                               [T_U8][T_U8] = div_u8}};
static const BinOp POW = {.k = {[T_F32][T_F32] = pow_f32, [T_F32][T_I64] = pow_f32_i64,
                                [T_I64][T_I64] = pow_i64, [T_I64][T_F32] = pow_i64_f32}};
static const BinOp MOD_TRUNC = {.k = {[T_F32][T_F32] = fmod_f32, [T_I64][T_I64] = fmod_i64,
                                     [T_U8][T_U8] = mod_u8}};
static const BinOp MOD_FLOOR = {.k = {[T_I64][T_I64] = mod_i64, [T_U8][T_U8] = mod_u8}};
static const BinOp MAX = {.k = {[T_F32][T_F32] = max_f32, [T_I64][T_I64] = max_i64,
                               [T_U8][T_U8] = max_u8}};
static const BinOp MIN = {.k = {[T_F32][T_F32] = min_f32, [T_I64][T_I64] = min_i64,
                               [T_U8][T_U8] = min_u8}};
static const BinOp SUM = {.k = {[T_F32][T_F32] = add_f32, [T_I64][T_I64] = add_i64}};
static const BinOp MEAN = {.k = {[T_F32][T_F32] = add_f32}};
static const BinOp EQUAL = {.k = {[T_F32][T_F32] = eq_f32, [T_I64][T_I64] = eq_i64,
                                  [T_BOOL][T_BOOL] = eq_bool},
                            .to_bool = 1};
static const BinOp GREATER = {.k = {[T_F32][T_F32] = gt_f32, [T_I64][T_I64] = gt_i64}, .to_bool = 1};
static const BinOp LESS = {.k = {[T_F32][T_F32] = lt_f32, [T_I64][T_I64] = lt_i64}, .to_bool = 1};
static const BinOp GREATER_EQ = {.k = {[T_F32][T_F32] = ge_f32, [T_I64][T_I64] = ge_i64},
                                 .to_bool = 1};
static const BinOp LESS_EQ = {.k = {[T_F32][T_F32] = le_f32, [T_I64][T_I64] = le_i64}, .to_bool = 1};
static const BinOp AND = {.k = {[T_BOOL][T_BOOL] = and_bool}, .to_bool = 1};
static const BinOp OR = {.k = {[T_BOOL][T_BOOL] = or_bool}, .to_bool = 1};
static const BinOp XOR = {.k = {[T_BOOL][T_BOOL] = xor_bool}, .to_bool = 1};

static BinKernel bin_kernel(const BinOp *op, DType a, DType b)
{
    int ta = type_class(a), tb = type_class(b);
    return ta < 0 || tb < 0 ? NULL : op->k[ta][tb];
}

/* ---- binary and variadic ops -------------------------------------------- */

/* Before opset 7, binary ops broadcast only with broadcast=1, aligning B
 * at `axis`. That equals numpy broadcasting when B is aligned with A's
 * trailing dims; any other axis is refused rather than computed wrongly. */
static int check_legacy_broadcast(const OpCtx *c)
{
    const Attr *axis = node_attr(c->node, "axis");
    if (c->opset >= 7 || c->n_in != 2 || !axis || axis->type != ATTR_INT)
        return 0;
    int ra = c->in[0]->shape.rank, rb = c->in[1]->shape.rank;
    int64_t a = axis->i < 0 ? axis->i + ra : axis->i;
    if (node_attr_int(c->node, "broadcast", 0) && a != ra - rb)
        return op_fail(c, SH_E_UNSUPPORTED,
                       "opset %d broadcast along axis %lld (not the trailing axes) is not supported",
                       c->opset, (long long)axis->i);
    return 0;
}

/* Checks types of every input and broadcasts their shapes. */
static int nary_infer(OpCtx *c, const BinOp *op)
{
    int rc;
    for (int i = 0; i < c->n_in; i++)
        if ((rc = op_check_input(c, i, SH_UNDEF)) < 0)
            return rc;
    if ((rc = check_legacy_broadcast(c)) < 0)
        return rc;
    DType ta = c->in[0]->dtype;
    Shape s = c->in[0]->shape;
    for (int i = 1; i < c->n_in; i++) {
        DType tb = c->in[i]->dtype;
        if (!bin_kernel(op, ta, tb))
            return op_fail(c, SH_E_UNSUPPORTED, "inputs of types %s and %s are not supported",
                           dtype_name(ta), dtype_name(tb));
        Shape acc = s; /* op_broadcast's output must not alias an input */
        if ((rc = op_broadcast(c, &acc, &c->in[i]->shape, &s)) < 0)
            return rc;
    }
    if (c->n_in == 1 && !bin_kernel(op, ta, ta))
        return op_fail(c, SH_E_UNSUPPORTED, "input of type %s is not supported", dtype_name(ta));
    if (shape_numel(&s) < 0)
        return op_fail(c, SH_E_SHAPE, "output size overflows");
    op_set_out(c, 0, op->to_bool ? SH_BOOL : ta, &s);
    return 0;
}

/* y = f(a, b) where a and b broadcast to y's shape. */
static void binary_apply(BinKernel f, Tensor *y, const Tensor *a, const Tensor *b)
{
    const Shape *ys = &y->shape;
    size_t ya = dtype_size(y->dtype), az = dtype_size(a->dtype), bz = dtype_size(b->dtype);
    if (y->numel == 0)
        return;
    /* Fast paths: same shapes, or one scalar operand. */
    if (shape_eq(&a->shape, ys) && shape_eq(&b->shape, ys)) {
        f(y->data, a->data, b->data, y->numel, 1, 1);
        return;
    }
    if (shape_eq(&a->shape, ys) && b->numel == 1) {
        f(y->data, a->data, b->data, y->numel, 1, 0);
        return;
    }
    if (a->numel == 1 && shape_eq(&b->shape, ys)) {
        f(y->data, a->data, b->data, y->numel, 0, 1);
        return;
    }
    const Shape *in[2] = {&a->shape, &b->shape};
    Bcast plan;
    bcast_plan(&plan, ys, in, 2);
    BcastPos p = {0};
    char *yp = y->data;
    const char *ap = a->data, *bp = b->data;
    int sa = bcast_step(&plan, 0), sb = bcast_step(&plan, 1);
    for (int64_t r = 0; r < plan.runs; r++, bcast_next(&plan, &p))
        f(yp + (size_t)(r * plan.inner) * ya, ap + (size_t)p.off[0] * az,
          bp + (size_t)p.off[1] * bz, plan.inner, sa, sb);
}

static int any_zero_int(const Tensor *t)
{
    for (int64_t i = 0; i < t->numel; i++)
        if (tensor_get_i(t, i) == 0)
            return 1;
    return 0;
}

/* Folds inputs left to right into output 0: y = in0 op in1, y = y op in2... */
static int nary_forward(OpCtx *c, const BinOp *op)
{
    Tensor *y = c->out[0];
    /* In place is only sound when input 0 is not broadcast: a smaller
     * input 0 would be overwritten before all of it is read. */
    if (y->data == c->in[0]->data && c->in[0]->numel != y->numel)
        return op_fail(c, SH_E_STATE, "output shares the buffer of input 0, which is broadcast "
                                      "(%lld of %lld elements); it cannot run in place",
                       (long long)c->in[0]->numel, (long long)y->numel);
    int int_division = op == &DIV || op == &MOD_TRUNC || op == &MOD_FLOOR;
    if (int_division && c->in[1]->dtype != SH_F32 && any_zero_int(c->in[1]))
        return op_fail(c, SH_E_NUMERIC, "integer division by zero");
    if (c->n_in == 1) {
        if (y->data != c->in[0]->data)
            memcpy(y->data, c->in[0]->data, tensor_bytes(y));
        return 0;
    }
    binary_apply(bin_kernel(op, c->in[0]->dtype, c->in[1]->dtype), y, c->in[0], c->in[1]);
    for (int i = 2; i < c->n_in; i++)
        binary_apply(bin_kernel(op, y->dtype, c->in[i]->dtype), y, y, c->in[i]);
    return 0;
}

#define NARY_OP(fn, OP)                                                                        \
    static int fn##_infer(OpCtx *c) { return nary_infer(c, &OP); }                            \
    static int fn##_forward(OpCtx *c) { return nary_forward(c, &OP); }

NARY_OP(add, ADD)
NARY_OP(sub, SUB)
NARY_OP(mul, MUL)
NARY_OP(div, DIV)
NARY_OP(max, MAX)
NARY_OP(min, MIN)
NARY_OP(sum, SUM)
NARY_OP(equal, EQUAL)
NARY_OP(greater, GREATER)
NARY_OP(less, LESS)
NARY_OP(greater_eq, GREATER_EQ)
NARY_OP(less_eq, LESS_EQ)
NARY_OP(and, AND)
NARY_OP(or, OR)
NARY_OP(xor, XOR)

static int mean_infer(OpCtx *c) { return nary_infer(c, &MEAN); }

static int mean_forward(OpCtx *c)
{
    int rc = nary_forward(c, &MEAN);
    if (rc < 0)
        return rc;
    float *y = tensor_f32(c->out[0]);
    const float inv = 1.0f / (float)c->n_in;
    for (int64_t i = 0; i < c->out[0]->numel; i++)
        y[i] *= inv;
    return 0;
}

static int pow_infer(OpCtx *c) { return nary_infer(c, &POW); }

static void square_f32(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] * x[i];
}

static int pow_forward(OpCtx *c)
{
    const Tensor *a = c->in[0], *b = c->in[1];
    /* x^2 (decomposed LayerNorm/variance) is one multiply, and exact. */
    if (a->dtype == SH_F32 && b->numel == 1 && tensor_get_f(b, 0) == 2.0 &&
        shape_eq(&a->shape, &c->out[0]->shape)) {
        square_f32(tensor_f32(c->out[0]), tensor_f32(a), a->numel);
        return 0;
    }
    return nary_forward(c, &POW);
}

/* ---- Mod ---------------------------------------------------------------- */

static const BinOp *mod_op(const OpCtx *c)
{
    return node_attr_int(c->node, "fmod", 0) ? &MOD_TRUNC : &MOD_FLOOR;
}

static int mod_infer(OpCtx *c)
{
    int rc = op_check_input(c, 0, SH_UNDEF);
    if (rc < 0)
        return rc;
    if (c->in[0]->dtype == SH_F32 && mod_op(c) == &MOD_FLOOR)
        return op_fail(c, SH_E_UNSUPPORTED, "float Mod needs attribute fmod=1");
    return nary_infer(c, mod_op(c));
}

static int mod_forward(OpCtx *c) { return nary_forward(c, mod_op(c)); }

/* ---- Not ---------------------------------------------------------------- */

static int not_infer(OpCtx *c)
{
    int rc = op_check_input(c, 0, SH_BOOL);
    if (rc < 0)
        return rc;
    op_set_out(c, 0, SH_BOOL, &c->in[0]->shape);
    return 0;
}

static int not_forward(OpCtx *c)
{
    const uint8_t *x = tensor_u8(c->in[0]);
    uint8_t *y = tensor_u8(c->out[0]);
    for (int64_t i = 0; i < c->in[0]->numel; i++)
        y[i] = !x[i];
    return 0;
}

/* ---- Where -------------------------------------------------------------- */

static int where_infer(OpCtx *c)
{
    int rc;
    if ((rc = op_check_input(c, 0, SH_BOOL)) < 0 || (rc = op_check_input(c, 1, SH_UNDEF)) < 0 ||
        (rc = op_check_input(c, 2, SH_UNDEF)) < 0)
        return rc;
    DType t = c->in[1]->dtype;
    if (c->in[2]->dtype != t)
        return op_fail(c, SH_E_FORMAT, "inputs 1 and 2 must have one type; they are %s and %s",
                       dtype_name(t), dtype_name(c->in[2]->dtype));
    Shape cx, s; /* op_broadcast's output must not alias an input */
    if ((rc = op_broadcast(c, &c->in[0]->shape, &c->in[1]->shape, &cx)) < 0 ||
        (rc = op_broadcast(c, &cx, &c->in[2]->shape, &s)) < 0)
        return rc;
    if (shape_numel(&s) < 0)
        return op_fail(c, SH_E_SHAPE, "output size overflows");
    op_set_out(c, 0, t, &s);
    return 0;
}

/* Selects by element size: the bytes are copied, never interpreted. */
#define WHERE_KERNEL(name, T)                                                                  \
    static void name(void *y_, const uint8_t *cond, const void *x_, const void *z_, int64_t n, \
                     int sc, int sx, int sz)                                                   \
    {                                                                                          \
        T *y = y_;                                                                             \
        const T *x = x_, *z = z_;                                                              \
        if (sc && sx && sz) {                                                                  \
            for (int64_t i = 0; i < n; i++)                                                    \
                y[i] = cond[i] ? x[i] : z[i];                                                  \
        } else {                                                                               \
            for (int64_t i = 0; i < n; i++)                                                    \
                y[i] = cond[i * sc] ? x[i * sx] : z[i * sz];                                   \
        }                                                                                      \
    }

WHERE_KERNEL(where_1, uint8_t)
WHERE_KERNEL(where_4, uint32_t)
WHERE_KERNEL(where_8, uint64_t)

static int where_forward(OpCtx *c)
{
    Tensor *y = c->out[0];
    size_t ez = dtype_size(y->dtype);
    void (*f)(void *, const uint8_t *, const void *, const void *, int64_t, int, int, int) =
        ez == 1 ? where_1 : ez == 4 ? where_4 : where_8;
    if (y->numel == 0)
        return 0;
    const Shape *in[3] = {&c->in[0]->shape, &c->in[1]->shape, &c->in[2]->shape};
    Bcast plan;
    bcast_plan(&plan, &y->shape, in, 3);
    BcastPos p = {0};
    const uint8_t *cp = tensor_u8(c->in[0]);
    const char *xp = c->in[1]->data, *zp = c->in[2]->data;
    char *yp = y->data;
    int sc = bcast_step(&plan, 0), sx = bcast_step(&plan, 1), sz = bcast_step(&plan, 2);
    for (int64_t r = 0; r < plan.runs; r++, bcast_next(&plan, &p))
        f(yp + (size_t)(r * plan.inner) * ez, cp + p.off[0], xp + (size_t)p.off[1] * ez,
          zp + (size_t)p.off[2] * ez, plan.inner, sc, sx, sz);
    return 0;
}

/* ---- backward ------------------------------------------------------------ */

/* Gradients walk the output in the runs of a broadcast plan. An input that
 * advances with the run (step 1) takes its gradient elementwise; a
 * broadcast one (step 0) takes the sum of the run. Per-channel operands
 * ([1,C,1,1], [C], [N,T,1]) are long step-0 or step-1 runs, so each is
 * reduced in one pass without index arithmetic per element. */

/* Handles one run: n output elements from output offset yo, input j
 * starting at element off[j] and advancing step[j] (0 or 1). */
typedef void (*GradRunFn)(void *arg, int64_t yo, const int64_t *off, const int *step, int64_t n);

static void bcast_walk(const Shape *out, const Shape *const *in, int n_in, GradRunFn f, void *arg)
{
    Bcast plan;
    bcast_plan(&plan, out, in, n_in);
    BcastPos p = {0};
    int step[EW_MAX_IN];
    for (int j = 0; j < n_in; j++)
        step[j] = bcast_step(&plan, j);
    for (int64_t r = 0; r < plan.runs; r++, bcast_next(&plan, &p))
        f(arg, r * plan.inner, p.off, step, plan.inner);
}

/* *dst += the sum of EXPR over i in [0, n): blocks of 1024 in eight float
 * partial sums (a vector register), block totals added in double so long
 * runs (a scalar operand of 10^7 elements) stay accurate. */
#define SUM_INTO(dst, n, EXPR)                                                                 \
    do {                                                                                       \
        double total_ = 0;                                                                     \
        for (int64_t b0_ = 0; b0_ < (n); b0_ += 1024) {                                        \
            int64_t b1_ = b0_ + 1024 < (n) ? b0_ + 1024 : (n), j_ = b0_;                       \
            float s_[8] = {0};                                                                 \
            for (; j_ + 8 <= b1_; j_ += 8)                                                     \
                for (int l_ = 0; l_ < 8; l_++) {                                               \
                    const int64_t i = j_ + l_;                                                 \
                    (void)i;                                                                   \
                    s_[l_] += (EXPR);                                                          \
                }                                                                              \
            for (int64_t i = j_; i < b1_; i++)                                                 \
                s_[0] += (EXPR);                                                               \
            total_ += ((s_[0] + s_[1]) + (s_[2] + s_[3])) + ((s_[4] + s_[5]) + (s_[6] + s_[7])); \
        }                                                                                      \
        *(dst) += (float)total_;                                                               \
    } while (0)

/* dst[i*step] += EXPR over a run: elementwise when step is 1, summed when 0. */
#define ACCUM_RUN(dst, step, n, EXPR)                                                          \
    do {                                                                                       \
        if (step) {                                                                            \
            for (int64_t i = 0; i < (n); i++)                                                  \
                (dst)[i] += (EXPR);                                                            \
        } else {                                                                               \
            SUM_INTO(dst, n, EXPR);                                                            \
        }                                                                                      \
    } while (0)

/* Gradient tensor i if one is wanted; fails on a non-float input or a
 * gradient that does not match the input. */
static int grad_of(const OpCtx *c, Tensor **gin, int i, float **out)
{
    *out = NULL;
    if (!gin[i])
        return 0;
    if (c->in[i]->dtype != SH_F32)
        return op_fail(c, SH_E_UNSUPPORTED, "input %d is %s; only float32 inputs have a gradient",
                       i, dtype_name(c->in[i]->dtype));
    if (gin[i]->dtype != SH_F32 || gin[i]->numel != c->in[i]->numel)
        return op_fail(c, SH_E_SHAPE, "gradient of input %d has %lld elements; expected %lld", i,
                       (long long)gin[i]->numel, (long long)c->in[i]->numel);
    *out = tensor_f32(gin[i]);
    return 0;
}

/* The output gradient, NULL when none flows; fails if it does not match. */
static int grad_out(const OpCtx *c, Tensor **gout, const float **g)
{
    *g = NULL;
    if (!gout[0])
        return 0;
    if (gout[0]->dtype != SH_F32 || gout[0]->numel != c->out[0]->numel)
        return op_fail(c, SH_E_SHAPE, "output gradient has %lld elements; expected %lld",
                       (long long)gout[0]->numel, (long long)c->out[0]->numel);
    *g = tensor_f32(gout[0]);
    return 0;
}

/* ---- binary: Add, Sub, Mul, Div, Pow ---- */

typedef struct {
    const float *g, *y, *a; /* dL/dy, y, input a */
    const void *b;          /* input b (float, or int64 for Pow's exponent) */
    float *ga, *gb;         /* accumulated; NULL when not wanted */
} BinGrad;

/* In EA (dL/da) and EB (dL/db): D = dL/dy, O = y, X0 = a, X1 = b at i. */
#define D g[i]
#define O y[i]
#define X0 a[i * sa_]
#define X1 b[i * sb_]

#define BIN_GRAD_BODY(EA, EB)                                                                  \
    do {                                                                                       \
        if (ga)                                                                                \
            ACCUM_RUN(ga, sa_, n, EA);                                                         \
        if (gb)                                                                                \
            ACCUM_RUN(gb, sb_, n, EB);                                                         \
    } while (0)

/* Defines a GradRunFn with the four step combinations spelled out as
 * constants, so each loop is specialized and vectorizes. */
#define BIN_GRAD(name, TB, EA, EB)                                                             \
    static void name(void *arg, int64_t yo, const int64_t *off, const int *st, int64_t n)      \
    {                                                                                          \
        const BinGrad *p = arg;                                                                \
        const float *restrict g = p->g + yo, *restrict y = p->y + yo;                          \
        const float *restrict a = p->a + off[0];                                               \
        const TB *restrict b = (const TB *)p->b + off[1];                                      \
        float *ga = p->ga ? p->ga + off[0] : NULL, *gb = p->gb ? p->gb + off[1] : NULL;        \
        (void)y, (void)a, (void)b;                                                             \
        if (st[0] && st[1]) {                                                                  \
            const int sa_ = 1, sb_ = 1;                                                        \
            BIN_GRAD_BODY(EA, EB);                                                             \
        } else if (st[0]) {                                                                    \
            const int sa_ = 1, sb_ = 0;                                                        \
            BIN_GRAD_BODY(EA, EB);                                                             \
        } else if (st[1]) {                                                                    \
            const int sa_ = 0, sb_ = 1;                                                        \
            BIN_GRAD_BODY(EA, EB);                                                             \
        } else {                                                                               \
            const int sa_ = 0, sb_ = 0;                                                        \
            BIN_GRAD_BODY(EA, EB);                                                             \
        }                                                                                      \
    }

BIN_GRAD(add_grad, float, D, D)
BIN_GRAD(sub_grad, float, D, -D)
BIN_GRAD(mul_grad, float, D * X1, D * X0)
/* d(a/b)/db = -a/b^2 = -y/b: no need to read a. */
BIN_GRAD(div_grad, float, D / X1, -D * O / X1)
/* d(a^b)/da = b a^(b-1) (0 for b = 0, avoiding 0 * inf at a = 0);
 * d(a^b)/db = y ln a (0 at a = 0 for b >= 0, like PyTorch; NaN for a < 0). */
BIN_GRAD(pow_grad, float, X1 == 0 ? 0.0f : D * X1 * powf(X0, X1 - 1.0f),
         X0 == 0 && X1 >= 0 ? 0.0f : D * O * logf(X0))
/* An int64 exponent has no gradient; the base's in double like forward. */
BIN_GRAD(pow_i64_grad, int64_t,
         X1 == 0 ? 0.0f : D * (float)((double)X1 * pow((double)X0, (double)X1 - 1.0)), 0.0f)

#undef D
#undef O
#undef X0
#undef X1

static int binary_backward(OpCtx *c, Tensor **gout, Tensor **gin, GradRunFn run)
{
    BinGrad p = {0};
    int rc;
    if ((rc = grad_out(c, gout, &p.g)) < 0 || (rc = grad_of(c, gin, 0, &p.ga)) < 0 ||
        (rc = grad_of(c, gin, 1, &p.gb)) < 0)
        return rc;
    if (!p.g || (!p.ga && !p.gb))
        return 0;
    p.y = tensor_f32(c->out[0]);
    p.a = tensor_f32(c->in[0]);
    p.b = c->in[1]->data;
    const Shape *in[2] = {&c->in[0]->shape, &c->in[1]->shape};
    bcast_walk(&c->out[0]->shape, in, 2, run, &p);
    return 0;
}

static int add_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    return binary_backward(c, gout, gin, add_grad);
}

static int sub_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    return binary_backward(c, gout, gin, sub_grad);
}

static int mul_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    return binary_backward(c, gout, gin, mul_grad);
}

static int div_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    return binary_backward(c, gout, gin, div_grad);
}

static int pow_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    const Tensor *a = c->in[0], *b = c->in[1];
    if (b->dtype == SH_I64) {
        if (gin[1])
            return op_fail(c, SH_E_UNSUPPORTED, "input 1 (exponent) is int64; it has no gradient");
        return binary_backward(c, gout, gin, pow_i64_grad);
    }
    /* x^2 (decomposed LayerNorm/variance) with a constant exponent: 2 x d. */
    if (!gin[1] && gin[0] && gout[0] && a->dtype == SH_F32 && b->numel == 1 &&
        tensor_get_f(b, 0) == 2.0 && shape_eq(&a->shape, &c->out[0]->shape)) {
        float *ga;
        const float *g;
        int rc;
        if ((rc = grad_out(c, gout, &g)) < 0 || (rc = grad_of(c, gin, 0, &ga)) < 0)
            return rc;
        const float *restrict x = tensor_f32(a);
        for (int64_t i = 0; i < a->numel; i++)
            ga[i] += 2.0f * x[i] * g[i];
        return 0;
    }
    return binary_backward(c, gout, gin, pow_grad);
}

/* ---- variadic: Sum, Mean, Max, Min ---- */

typedef struct {
    const float *g, *y, *x; /* dL/dy, y, this input */
    float *gx;              /* this input's gradient; NULL: only mark winners */
    float scale;            /* Sum 1, Mean 1/n */
    uint8_t *taken;         /* Max/Min: output element already has its winner */
} VarGrad;

static void scaled_grad(void *arg, int64_t yo, const int64_t *off, const int *st, int64_t n)
{
    const VarGrad *p = arg;
    const float *restrict g = p->g + yo;
    const float scale = p->scale;
    float *gx = p->gx + off[0];
    ACCUM_RUN(gx, st[0], n, scale * g[i]);
}

/* Marks where input value v wins output y[i] (both NaN counts) and the
 * element has no winner yet. Bitwise & and |: no branches on data. */
static inline float take_win(uint8_t *taken, float v, float yv)
{
    int win = (*taken == 0) & ((v == yv) | ((v != v) & (yv != yv)));
    *taken |= (uint8_t)win;
    return (float)win;
}

/* The first input equal to y wins each element and takes its gradient. */
static void winner_grad(void *arg, int64_t yo, const int64_t *off, const int *st, int64_t n)
{
    const VarGrad *p = arg;
    const float *g = p->g + yo, *y = p->y + yo, *x = p->x + off[0];
    float *gx = p->gx ? p->gx + off[0] : NULL;
    uint8_t *taken = p->taken + yo;
    if (st[0]) {
        for (int64_t i = 0; i < n; i++) {
            float w = take_win(&taken[i], x[i], y[i]);
            if (gx)
                gx[i] += w * g[i];
        }
    } else {
        double sum = 0;
        for (int64_t i = 0; i < n; i++)
            sum += take_win(&taken[i], x[0], y[i]) * g[i];
        if (gx)
            *gx += (float)sum;
    }
}

static int variadic_grad_check(OpCtx *c, Tensor **gout, Tensor **gin, const float **g, int *any)
{
    int rc = grad_out(c, gout, g);
    *any = 0;
    for (int j = 0; j < c->n_in && rc == 0; j++) {
        float *gx;
        rc = grad_of(c, gin, j, &gx);
        *any |= gx != NULL;
    }
    return rc;
}

static int sum_mean_backward(OpCtx *c, Tensor **gout, Tensor **gin, float scale)
{
    VarGrad p = {.scale = scale};
    int any, rc = variadic_grad_check(c, gout, gin, &p.g, &any);
    if (rc < 0 || !p.g || !any)
        return rc;
    for (int j = 0; j < c->n_in; j++) {
        if (!gin[j])
            continue;
        p.gx = tensor_f32(gin[j]);
        const Shape *in[1] = {&c->in[j]->shape};
        bcast_walk(&c->out[0]->shape, in, 1, scaled_grad, &p);
    }
    return 0;
}

static int sum_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    return sum_mean_backward(c, gout, gin, 1.0f);
}

static int mean_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    return sum_mean_backward(c, gout, gin, 1.0f / (float)c->n_in);
}

/* Max/Min: inputs are visited in order and each output element's gradient
 * goes to the first input holding the winning value (ties: first). */
static int extremum_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    VarGrad p = {.scale = 1.0f};
    int any, rc = variadic_grad_check(c, gout, gin, &p.g, &any);
    if (rc < 0 || !p.g || !any || c->out[0]->numel == 0)
        return rc;
    int last = c->n_in - 1; /* inputs after the last wanted one need no marking */
    while (!gin[last])
        last--;
    p.y = tensor_f32(c->out[0]);
    p.taken = c->scratch;
    memset(p.taken, 0, (size_t)c->out[0]->numel);
    for (int j = 0; j <= last; j++) {
        p.x = tensor_f32(c->in[j]);
        p.gx = gin[j] ? tensor_f32(gin[j]) : NULL;
        const Shape *in[1] = {&c->in[j]->shape};
        bcast_walk(&c->out[0]->shape, in, 1, winner_grad, &p);
    }
    return 0;
}

static size_t extremum_bwd_scratch(const OpCtx *c) { return (size_t)c->out[0]->numel; }

#define max_backward extremum_backward
#define min_backward extremum_backward
#define max_bwd_scratch extremum_bwd_scratch
#define min_bwd_scratch extremum_bwd_scratch

/* ---- Where ---- */

typedef struct {
    const float *g;
    const uint8_t *cond;
    float *gx, *gz; /* gradients of inputs 1 (taken where cond) and 2 */
} WhereGrad;

static void where_grad(void *arg, int64_t yo, const int64_t *off, const int *st, int64_t n)
{
    const WhereGrad *p = arg;
    const float *restrict g = p->g + yo;
    const uint8_t *restrict cond = p->cond + off[0];
    const int64_t sc = st[0];
    if (p->gx) {
        float *gx = p->gx + off[1];
        ACCUM_RUN(gx, st[1], n, cond[i * sc] ? g[i] : 0.0f);
    }
    if (p->gz) {
        float *gz = p->gz + off[2];
        ACCUM_RUN(gz, st[2], n, cond[i * sc] ? 0.0f : g[i]);
    }
}

static int where_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    WhereGrad p = {.cond = tensor_u8(c->in[0])};
    int rc;
    if ((rc = grad_out(c, gout, &p.g)) < 0 || (rc = grad_of(c, gin, 1, &p.gx)) < 0 ||
        (rc = grad_of(c, gin, 2, &p.gz)) < 0)
        return rc;
    if (!p.g || (!p.gx && !p.gz))
        return 0;
    const Shape *in[3] = {&c->in[0]->shape, &c->in[1]->shape, &c->in[2]->shape};
    bcast_walk(&c->out[0]->shape, in, 3, where_grad, &p);
    return 0;
}

/* ---- the table ----------------------------------------------------------- */

#define BINARY(op, fn, fl)                                                                     \
    {.name = op, .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .flags = fl,            \
     .infer = fn##_infer, .forward = fn##_forward, .coupling = couple_pointwise}
#define BINARY_BWD(op, fn, fl)                                                                 \
    {.name = op, .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .flags = fl,            \
     .infer = fn##_infer, .forward = fn##_forward, .backward = fn##_backward,                  \
     .coupling = couple_pointwise}
/* Not OP_INPLACE: Sum(x, y, x) folded into x's buffer would read a
 * changed x at its second use. */
#define VARIADIC(op, fn, bwd_scratch_fn)                                                       \
    {.name = op, .min_in = 1, .max_in = VARIADIC_MAX_IN, .min_out = 1, .max_out = 1,           \
     .infer = fn##_infer, .forward = fn##_forward, .backward = fn##_backward,                  \
     .bwd_scratch = bwd_scratch_fn, .coupling = couple_pointwise}

/* OP_INPLACE where the output has input 0's type; the executor may only
 * alias when input 0 also has the output's shape (not broadcast). */
const OpDef sh_ops_elementwise[] = {
    BINARY_BWD("Add", add, OP_INPLACE),
    BINARY_BWD("Sub", sub, OP_INPLACE),
    BINARY_BWD("Mul", mul, OP_INPLACE),
    BINARY_BWD("Div", div, OP_INPLACE),
    BINARY_BWD("Pow", pow, OP_INPLACE),
    BINARY("Mod", mod, OP_INPLACE),
    VARIADIC("Max", max, extremum_bwd_scratch),
    VARIADIC("Min", min, extremum_bwd_scratch),
    VARIADIC("Sum", sum, NULL),
    VARIADIC("Mean", mean, NULL),
    BINARY("Equal", equal, 0),
    BINARY("Greater", greater, 0),
    BINARY("Less", less, 0),
    BINARY("GreaterOrEqual", greater_eq, 0),
    BINARY("LessOrEqual", less_eq, 0),
    BINARY("And", and, OP_INPLACE),
    BINARY("Or", or, OP_INPLACE),
    BINARY("Xor", xor, OP_INPLACE),
    {.name = "Not", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .flags = OP_INPLACE,
     .infer = not_infer, .forward = not_forward, .coupling = couple_unary},
    {.name = "Where", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1, .infer = where_infer,
     .forward = where_forward, .backward = where_backward, .coupling = couple_pointwise},
    {.name = NULL},
};
