/* Reductions (ReduceSum, ReduceMean, ReduceMax, ...) and ArgMax/ArgMin.
 *
 * Axes: an attribute in every opset we read, except ReduceSum from opset 13
 * where they are input 1 (listed in shape_inputs so infer sees its data).
 * Opset-18 models pass axes as input 1 for every reduction; that is read
 * too. Empty axes reduce everything unless noop_with_empty_axes is set.
 *
 * The input is viewed as merged dims, each either kept or reduced, and
 * walked in order with an odometer. The innermost dim is contiguous: a
 * reduced one folds a whole row into one accumulator, a kept one folds a
 * row into a row of accumulators (vectorizes across it). Float sums
 * accumulate in double (in scratch) so long reductions stay accurate. */
#include "../error.h"
#include "../depgraph.h"
#include "../op.h"

#include <math.h>
#include <string.h>

typedef enum {
    R_SUM,
    R_MEAN,
    R_MAX,
    R_MIN,
    R_PROD,
    R_L1,
    R_L2,
    R_SUM_SQUARE,
    R_LOG_SUM,
    R_LOG_SUM_EXP,
} ReduceKind;

/* What is reduced, derived from the node and the input shape. */
typedef struct {
    int noop;                   /* empty axes with noop_with_empty_axes: y = x */
    int rank;                   /* merged dims */
    int64_t dim[SH_MAX_RANK];
    int reduced[SH_MAX_RANK];   /* merged dim is reduced */
    int64_t ostride[SH_MAX_RANK]; /* output element stride, 0 for reduced dims */
    int64_t count;              /* elements folded into each output */
    Shape out;
} ReducePlan;

/* ---- axes and shapes ---------------------------------------------------- */

static int uses_axes_input(const OpCtx *c) { return c->n_in > 1 && c->in[1]; }

/* Reads axes into mask[]; returns the number of axes given (0: none). */
static int read_axes(const OpCtx *c, int rank, int mask[SH_MAX_RANK])
{
    int64_t axes[SH_MAX_RANK];
    int n = 0;
    memset(mask, 0, sizeof(int) * SH_MAX_RANK);
    if (uses_axes_input(c)) {
        const Tensor *t = c->in[1];
        if (t->dtype != SH_I64)
            return op_fail(c, SH_E_FORMAT, "input 1 (axes) is %s; expected int64",
                           dtype_name(t->dtype));
        if (t->numel > 0 && !t->data)
            return op_fail(c, SH_E_UNSUPPORTED,
                           "input 1 (axes) must be a constant known when planning");
        if (t->numel > rank)
            return op_fail(c, SH_E_ARG, "%lld axes given for a rank-%d input",
                           (long long)t->numel, rank);
        n = (int)t->numel;
        for (int i = 0; i < n; i++)
            axes[i] = tensor_i64(t)[i];
    } else {
        const int64_t *v;
        int k = node_attr_ints(c->node, "axes", &v);
        if (k > rank)
            return op_fail(c, SH_E_ARG, "%d axes given for a rank-%d input", k, rank);
        n = k < 0 ? 0 : k;
        for (int i = 0; i < n; i++)
            axes[i] = v[i];
    }
    for (int i = 0; i < n; i++) {
        int a = shape_axis(axes[i], rank);
        if (a < 0)
            return op_fail(c, SH_E_ARG, "axis %lld is out of range for rank %d",
                           (long long)axes[i], rank);
        if (mask[a])
            return op_fail(c, SH_E_ARG, "axis %lld is given twice", (long long)axes[i]);
        mask[a] = 1;
    }
    return n;
}

static int reduce_plan(const OpCtx *c, ReducePlan *p)
{
    const Shape *x = &c->in[0]->shape;
    int mask[SH_MAX_RANK];
    int n_axes = read_axes(c, x->rank, mask);
    if (n_axes < 0)
        return n_axes;
    int keepdims = node_attr_int(c->node, "keepdims", 1) != 0;
    memset(p, 0, sizeof *p);
    if (n_axes == 0) {
        if (node_attr_int(c->node, "noop_with_empty_axes", 0)) {
            p->noop = 1;
            p->out = *x;
            p->count = 1;
            return 0;
        }
        for (int i = 0; i < x->rank; i++)
            mask[i] = 1;
    }
    p->count = 1;
    p->out.rank = 0;
    for (int i = 0; i < x->rank; i++) {
        if (mask[i])
            p->count *= x->d[i];
        if (!mask[i] || keepdims)
            p->out.d[p->out.rank++] = mask[i] ? 1 : x->d[i];
    }
    /* Merge neighbouring dims of the same kind; drop size-1 dims. */
    for (int i = 0; i < x->rank; i++) {
        if (x->d[i] == 1)
            continue;
        if (p->rank > 0 && p->reduced[p->rank - 1] == mask[i]) {
            p->dim[p->rank - 1] *= x->d[i];
        } else {
            p->dim[p->rank] = x->d[i];
            p->reduced[p->rank] = mask[i];
            p->rank++;
        }
    }
    if (p->rank == 0) { /* a single element */
        p->dim[0] = 1;
        p->reduced[0] = 1;
        p->rank = 1;
    }
    int64_t st = 1;
    for (int k = p->rank - 1; k >= 0; k--) {
        p->ostride[k] = p->reduced[k] ? 0 : st;
        if (!p->reduced[k])
            st *= p->dim[k];
    }
    return 0;
}

static int reduce_check_types(OpCtx *c, ReduceKind kind)
{
    int rc = op_check_input(c, 0, SH_UNDEF);
    if (rc < 0)
        return rc;
    DType t = c->in[0]->dtype;
    int int_ok = kind == R_SUM || kind == R_MAX || kind == R_MIN || kind == R_PROD;
    if (t != SH_F32 && !(t == SH_I64 && int_ok))
        return op_fail(c, SH_E_UNSUPPORTED, "input 0 is %s; expected float32%s", dtype_name(t),
                       int_ok ? " or int64" : "");
    return 0;
}

static int reduce_infer(OpCtx *c, ReduceKind kind)
{
    int rc = reduce_check_types(c, kind);
    if (rc < 0)
        return rc;
    ReducePlan p;
    if ((rc = reduce_plan(c, &p)) < 0)
        return rc;
    op_set_out(c, 0, c->in[0]->dtype, &p.out);
    return 0;
}

/* ---- the walk ----------------------------------------------------------- */

/* Folds a contiguous run of x into accumulators. acc points at the
 * accumulator of the run's first element; inner_reduced says whether the
 * run folds into acc[0] (reduced dim) or into acc[0..n) (kept dim). */
typedef void (*RunFn)(void *acc, const void *x, int64_t n, int inner_reduced, const void *arg);

static void reduce_walk(const ReducePlan *p, RunFn f, void *acc, size_t acc_size, const void *x,
                        size_t x_size, const void *arg)
{
    int r = p->rank;
    int64_t inner = p->dim[r - 1], runs = 1, idx[SH_MAX_RANK] = {0}, off = 0;
    for (int k = 0; k < r - 1; k++)
        runs *= p->dim[k];
    if (inner == 0)
        return;
    for (int64_t run = 0; run < runs; run++) {
        f((char *)acc + (size_t)off * acc_size, (const char *)x + (size_t)(run * inner) * x_size,
          inner, p->reduced[r - 1], arg);
        for (int k = r - 2; k >= 0; k--) {
            off += p->ostride[k];
            if (++idx[k] < p->dim[k])
                break;
            idx[k] = 0;
            off -= p->ostride[k] * p->dim[k];
        }
    }
}

/* Float sums in double: what each element contributes. shift is the
 * per-output max for LogSumExp (NULL otherwise). */
typedef struct {
    ReduceKind kind;
    const float *shift; /* indexed like the accumulators */
    const double *acc0; /* base of the accumulators, to index shift */
} SumArg;

static inline double sum_term(ReduceKind k, float v, float shift)
{
    switch (k) {
    case R_L1: return fabsf(v);
    case R_L2:
    case R_SUM_SQUARE: return (double)v * v;
    case R_LOG_SUM_EXP: return exp((double)v - shift);
    default: return v;
    }
}

static void sum_run(void *acc_, const void *x_, int64_t n, int inner_reduced, const void *arg)
{
    const SumArg *a = arg;
    double *acc = acc_;
    const float *x = x_;
    const float *shift = a->shift ? a->shift + (acc - a->acc0) : NULL;
    if (inner_reduced) {
        /* Four partial sums break the add dependency chain. */
        double s[4] = {0, 0, 0, 0};
        float sh = shift ? shift[0] : 0;
        int64_t i = 0;
        if (a->kind == R_SUM || a->kind == R_MEAN || a->kind == R_LOG_SUM)
            for (; i + 4 <= n; i += 4)
                for (int l = 0; l < 4; l++)
                    s[l] += x[i + l];
        for (; i < n; i++)
            s[i & 3] += sum_term(a->kind, x[i], sh);
        acc[0] += (s[0] + s[1]) + (s[2] + s[3]);
    } else if (a->kind == R_SUM || a->kind == R_MEAN || a->kind == R_LOG_SUM) {
        for (int64_t i = 0; i < n; i++)
            acc[i] += x[i];
    } else {
        for (int64_t i = 0; i < n; i++)
            acc[i] += sum_term(a->kind, x[i], shift ? shift[i] : 0);
    }
}

#define EXTREMUM_RUN(name, T, BETTER)                                                          \
    static void name(void *acc_, const void *x_, int64_t n, int inner_reduced, const void *arg) \
    {                                                                                          \
        T *acc = acc_;                                                                         \
        const T *x = x_;                                                                       \
        if (inner_reduced) {                                                                   \
            T m = acc[0];                                                                      \
            for (int64_t i = 0; i < n; i++)                                                    \
                m = BETTER(x[i], m) ? x[i] : m;                                                \
            acc[0] = m;                                                                        \
        } else {                                                                               \
            for (int64_t i = 0; i < n; i++)                                                    \
                acc[i] = BETTER(x[i], acc[i]) ? x[i] : acc[i];                                 \
        }                                                                                      \
    }

/* NaN wins in float max/min so it is not silently dropped. */
#define F_GT(v, m) ((v) > (m) || (v) != (v))
#define F_LT(v, m) ((v) < (m) || (v) != (v))
#define I_GT(v, m) ((v) > (m))
#define I_LT(v, m) ((v) < (m))
EXTREMUM_RUN(max_f32_run, float, F_GT)
EXTREMUM_RUN(min_f32_run, float, F_LT)
EXTREMUM_RUN(max_i64_run, int64_t, I_GT)
EXTREMUM_RUN(min_i64_run, int64_t, I_LT)

static void prod_f32_run(void *acc_, const void *x_, int64_t n, int inner_reduced,
                         const void *arg)
{
    double *acc = acc_;
    const float *x = x_;
    for (int64_t i = 0; i < n; i++)
        acc[inner_reduced ? 0 : i] *= x[i];
}

/* Int64 sums and products wrap (through uint64) instead of being undefined. */
static void sum_i64_run(void *acc_, const void *x_, int64_t n, int inner_reduced, const void *arg)
{
    uint64_t *acc = acc_;
    const int64_t *x = x_;
    for (int64_t i = 0; i < n; i++)
        acc[inner_reduced ? 0 : i] += (uint64_t)x[i];
}

static void prod_i64_run(void *acc_, const void *x_, int64_t n, int inner_reduced,
                         const void *arg)
{
    uint64_t *acc = acc_;
    const int64_t *x = x_;
    for (int64_t i = 0; i < n; i++)
        acc[inner_reduced ? 0 : i] *= (uint64_t)x[i];
}

/* ---- forward ------------------------------------------------------------ */

/* Float sums and products accumulate in double, one per output. */
static size_t reduce_scratch(const OpCtx *c, ReduceKind kind)
{
    int double_acc = c->in[0]->dtype == SH_F32 && kind != R_MAX && kind != R_MIN;
    return double_acc ? (size_t)c->out[0]->numel * sizeof(double) : 0;
}

static void extremum_forward(OpCtx *c, const ReducePlan *p, int is_max)
{
    Tensor *y = c->out[0];
    const Tensor *x = c->in[0];
    if (x->dtype == SH_I64) {
        int64_t *acc = tensor_i64(y);
        for (int64_t i = 0; i < y->numel; i++)
            acc[i] = is_max ? INT64_MIN : INT64_MAX;
        reduce_walk(p, is_max ? max_i64_run : min_i64_run, acc, 8, x->data, 8, NULL);
    } else {
        float *acc = tensor_f32(y);
        for (int64_t i = 0; i < y->numel; i++)
            acc[i] = is_max ? -INFINITY : INFINITY;
        reduce_walk(p, is_max ? max_f32_run : min_f32_run, acc, 4, x->data, 4, NULL);
    }
}

static void float_sum_forward(OpCtx *c, const ReducePlan *p, ReduceKind kind)
{
    Tensor *y = c->out[0];
    const Tensor *x = c->in[0];
    double *acc = c->scratch;
    float *out = tensor_f32(y);
    SumArg arg = {.kind = kind, .acc0 = acc};
    if (kind == R_LOG_SUM_EXP) {
        /* Shift by the max so exp cannot overflow; an all -inf (or empty)
         * slice keeps shift 0 and gives log(0) = -inf. */
        extremum_forward(c, p, 1);
        for (int64_t i = 0; i < y->numel; i++)
            if (isinf(out[i]))
                out[i] = 0;
        arg.shift = out;
    }
    double init = kind == R_PROD ? 1.0 : 0.0;
    for (int64_t i = 0; i < y->numel; i++)
        acc[i] = init;
    reduce_walk(p, kind == R_PROD ? prod_f32_run : sum_run, acc, sizeof(double), x->data, 4, &arg);
    for (int64_t i = 0; i < y->numel; i++) {
        double v = acc[i];
        switch (kind) {
        case R_MEAN: v /= (double)p->count; break;
        case R_L2: v = sqrt(v); break;
        case R_LOG_SUM: v = log(v); break;
        case R_LOG_SUM_EXP: v = out[i] + log(v); break;
        default: break;
        }
        out[i] = (float)v;
    }
}

static int reduce_forward(OpCtx *c, ReduceKind kind)
{
    ReducePlan p;
    int rc = reduce_plan(c, &p);
    if (rc < 0)
        return rc;
    Tensor *y = c->out[0];
    const Tensor *x = c->in[0];
    if (p.noop) {
        if (y->data != x->data)
            memcpy(y->data, x->data, tensor_bytes(y));
        return 0;
    }
    if (kind == R_MAX || kind == R_MIN) {
        extremum_forward(c, &p, kind == R_MAX);
    } else if (x->dtype == SH_I64) {
        uint64_t *acc = (uint64_t *)tensor_i64(y);
        for (int64_t i = 0; i < y->numel; i++)
            acc[i] = kind == R_PROD ? 1 : 0;
        reduce_walk(&p, kind == R_PROD ? prod_i64_run : sum_i64_run, acc, 8, x->data, 8, NULL);
    } else {
        float_sum_forward(c, &p, kind);
    }
    return 0;
}

/* ---- backward ------------------------------------------------------------ */

/* dL/dx[i] = coef[o] * h(x[i], y[o]) where o is the output element x[i]
 * folds into. coef (in scratch, one per output) holds everything that
 * depends only on o, so the walk does no division: Sum g, Mean g/count,
 * SumSquare 2g, L2 g/y, L1 g, LogSum g/e^y, LogSumExp g (times e^(x-y)),
 * Max/Min g to the first element equal to y. */
typedef struct {
    ReduceKind kind;
    const float *coef0, *y0; /* per output, indexed alike */
    const float *x0;         /* base of x: a run's offset in it is its offset in gx */
    float *gx0;
    uint8_t *taken0;         /* Max/Min: the output already gave its gradient */
} ReduceGrad;

/* gx[i] += EXPR with v = x[i], cf and yv the coef and y of i's output. */
#define REDUCE_GRAD_LOOP(EXPR)                                                                 \
    do {                                                                                       \
        if (inner_reduced) {                                                                   \
            const float cf = coef[0], yv = y[0];                                               \
            (void)yv;                                                                          \
            for (int64_t i = 0; i < n; i++) {                                                  \
                const float v = x[i];                                                          \
                (void)v;                                                                       \
                gx[i] += (EXPR);                                                               \
            }                                                                                  \
        } else {                                                                               \
            for (int64_t i = 0; i < n; i++) {                                                  \
                const float cf = coef[i], yv = y[i], v = x[i];                                 \
                (void)yv, (void)v;                                                             \
                gx[i] += (EXPR);                                                               \
            }                                                                                  \
        }                                                                                      \
    } while (0)

/* First element equal to the extremum (NaN matches NaN) takes the gradient. */
static void extremum_grad_run(float *gx, const float *x, const float *y, const float *coef,
                              uint8_t *taken, int64_t n, int inner_reduced)
{
    for (int64_t i = 0; i < n; i++) {
        int64_t k = inner_reduced ? 0 : i;
        float v = x[i];
        if (!taken[k] && (v == y[k] || (v != v && y[k] != y[k]))) {
            taken[k] = 1;
            gx[i] += coef[k];
        }
    }
}

static void grad_run(void *acc, const void *x_, int64_t n, int inner_reduced, const void *arg)
{
    const ReduceGrad *a = arg;
    const float *restrict coef = acc, *restrict x = x_;
    int64_t o = coef - a->coef0;
    const float *restrict y = a->y0 + o;
    float *gx = a->gx0 + (x - a->x0);
    switch (a->kind) {
    case R_SUM:
    case R_MEAN:
    case R_LOG_SUM: REDUCE_GRAD_LOOP(cf); break;
    case R_SUM_SQUARE:
    case R_L2: REDUCE_GRAD_LOOP(cf * v); break;
    case R_L1: REDUCE_GRAD_LOOP(v > 0 ? cf : v < 0 ? -cf : 0.0f); break;
    case R_LOG_SUM_EXP: REDUCE_GRAD_LOOP(cf * expf(v - yv)); break;
    case R_MAX:
    case R_MIN: extremum_grad_run(gx, x, y, coef, a->taken0 + o, n, inner_reduced); break;
    default: break;
    }
}

static float grad_coef(ReduceKind kind, float g, float y, int64_t count)
{
    switch (kind) {
    case R_MEAN: return (float)((double)g / (double)count);
    case R_SUM_SQUARE: return 2.0f * g;
    case R_L2: return y != 0 ? g / y : 0.0f; /* all-zero slice: 0, like PyTorch */
    case R_LOG_SUM: return g / expf(y);
    default: return g;
    }
}

static size_t reduce_bwd_scratch(const OpCtx *c, ReduceKind kind)
{
    size_t n = (size_t)c->out[0]->numel;
    return n * sizeof(float) + (kind == R_MAX || kind == R_MIN ? n : 0);
}

static int reduce_backward(OpCtx *c, Tensor **gout, Tensor **gin, ReduceKind kind)
{
    if (!gout[0] || !gin[0])
        return 0;
    const Tensor *x = c->in[0], *y = c->out[0];
    if (x->dtype != SH_F32)
        return op_fail(c, SH_E_UNSUPPORTED, "input 0 is %s; only float32 inputs have a gradient",
                       dtype_name(x->dtype));
    if (gin[0]->dtype != SH_F32 || gin[0]->numel != x->numel || gout[0]->dtype != SH_F32 ||
        gout[0]->numel != y->numel)
        return op_fail(c, SH_E_SHAPE,
                       "gradients have %lld and %lld elements; expected %lld (input) and %lld "
                       "(output)",
                       (long long)gin[0]->numel, (long long)gout[0]->numel, (long long)x->numel,
                       (long long)y->numel);
    ReducePlan p;
    int rc = reduce_plan(c, &p);
    if (rc < 0)
        return rc;
    const float *g = tensor_f32(gout[0]);
    float *gx = tensor_f32(gin[0]);
    if (p.noop) {
        for (int64_t i = 0; i < x->numel; i++)
            gx[i] += g[i];
        return 0;
    }
    if (x->numel == 0) /* nothing to differentiate (y may be filled) */
        return 0;
    float *coef = c->scratch;
    const float *yv = tensor_f32(y);
    for (int64_t o = 0; o < y->numel; o++)
        coef[o] = grad_coef(kind, g[o], yv[o], p.count);
    ReduceGrad arg = {.kind = kind, .coef0 = coef, .y0 = yv, .x0 = tensor_f32(x), .gx0 = gx};
    if ((kind == R_MAX || kind == R_MIN) && y->numel > 0) {
        arg.taken0 = (uint8_t *)(coef + y->numel);
        memset(arg.taken0, 0, (size_t)y->numel);
    }
    reduce_walk(&p, grad_run, coef, sizeof(float), x->data, sizeof(float), &arg);
    return 0;
}

static int64_t reduce_macs(const OpCtx *c) { return c->in[0]->numel; }

#define REDUCE_OP(fn, KIND)                                                                    \
    static int fn##_infer(OpCtx *c) { return reduce_infer(c, KIND); }                          \
    static int fn##_forward(OpCtx *c) { return reduce_forward(c, KIND); }                      \
    static size_t fn##_scratch(const OpCtx *c) { return reduce_scratch(c, KIND); }             \
    static int fn##_backward(OpCtx *c, Tensor **gout, Tensor **gin)                            \
    {                                                                                          \
        return reduce_backward(c, gout, gin, KIND);                                            \
    }                                                                                          \
    static size_t fn##_bwd_scratch(const OpCtx *c) { return reduce_bwd_scratch(c, KIND); }

REDUCE_OP(rsum, R_SUM)
REDUCE_OP(rmean, R_MEAN)
REDUCE_OP(rmax, R_MAX)
REDUCE_OP(rmin, R_MIN)
REDUCE_OP(rprod, R_PROD)
REDUCE_OP(rl1, R_L1)
REDUCE_OP(rl2, R_L2)
REDUCE_OP(rsumsq, R_SUM_SQUARE)
REDUCE_OP(rlogsum, R_LOG_SUM)
REDUCE_OP(rlogsumexp, R_LOG_SUM_EXP)

/* ---- ArgMax / ArgMin ---------------------------------------------------- */

static int arg_axis(const OpCtx *c, int *axis)
{
    int64_t a = node_attr_int(c->node, "axis", 0);
    *axis = shape_axis(a, c->in[0]->shape.rank);
    if (*axis < 0)
        return op_fail(c, SH_E_ARG, "axis %lld is out of range for rank %d", (long long)a,
                       c->in[0]->shape.rank);
    return 0;
}

static int arg_infer(OpCtx *c)
{
    int rc = op_check_input(c, 0, SH_UNDEF), axis;
    if (rc < 0)
        return rc;
    if (c->in[0]->dtype != SH_F32 && c->in[0]->dtype != SH_I64)
        return op_fail(c, SH_E_UNSUPPORTED, "input 0 is %s; expected float32 or int64",
                       dtype_name(c->in[0]->dtype));
    if ((rc = arg_axis(c, &axis)) < 0)
        return rc;
    const Shape *x = &c->in[0]->shape;
    if (x->d[axis] == 0)
        return op_fail(c, SH_E_SHAPE, "axis %d is empty; there is no extremum", axis);
    Shape s = *x;
    if (node_attr_int(c->node, "keepdims", 1)) {
        s.d[axis] = 1;
    } else {
        for (int i = axis; i + 1 < s.rank; i++)
            s.d[i] = s.d[i + 1];
        s.rank--;
    }
    op_set_out(c, 0, SH_I64, &s);
    return 0;
}

/* Index of the extremum of each column of [outer, n, inner]. Ties go to
 * the first index, or the last with select_last_index. */
#define ARG_KERNEL(name, T)                                                                    \
    static void name(int64_t *y, const T *x, int64_t outer, int64_t n, int64_t inner,          \
                     int is_max, int last)                                                     \
    {                                                                                          \
        for (int64_t o = 0; o < outer; o++)                                                    \
            for (int64_t j = 0; j < inner; j++) {                                              \
                const T *xc = x + o * n * inner + j;                                           \
                int64_t best = 0;                                                              \
                for (int64_t k = 1; k < n; k++) {                                              \
                    T v = xc[k * inner], b = xc[best * inner];                                 \
                    int better = is_max ? v > b : v < b;                                       \
                    if (better || (last && v == b))                                            \
                        best = k;                                                              \
                }                                                                              \
                y[o * inner + j] = best;                                                       \
            }                                                                                  \
    }

ARG_KERNEL(arg_f32, float)
ARG_KERNEL(arg_i64, int64_t)

static int arg_forward(OpCtx *c, int is_max)
{
    int axis, rc = arg_axis(c, &axis);
    if (rc < 0)
        return rc;
    const Shape *x = &c->in[0]->shape;
    int64_t outer = shape_prod(x, 0, axis), n = x->d[axis], inner = shape_prod(x, axis + 1, x->rank);
    int last = node_attr_int(c->node, "select_last_index", 0) != 0;
    if (c->in[0]->dtype == SH_I64)
        arg_i64(tensor_i64(c->out[0]), tensor_i64(c->in[0]), outer, n, inner, is_max, last);
    else
        arg_f32(tensor_i64(c->out[0]), tensor_f32(c->in[0]), outer, n, inner, is_max, last);
    return 0;
}

static int argmax_forward(OpCtx *c) { return arg_forward(c, 1); }
static int argmin_forward(OpCtx *c) { return arg_forward(c, 0); }

/* ---- the table ----------------------------------------------------------- */

/* Input 1 (axes) is read by infer: ReduceSum from opset 13, every
 * reduction from opset 18. ReduceProd has no backward yet (zeros in a
 * slice need a product of the others). */
#define REDUCE(op, fn, with_macs, with_bwd)                                                    \
    {.name = op, .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1, .shape_inputs = 1u << 1, \
     .infer = fn##_infer, .forward = fn##_forward, .macs = with_macs ? reduce_macs : NULL,     \
     .scratch = fn##_scratch, .backward = with_bwd ? fn##_backward : NULL,                     \
     .bwd_scratch = with_bwd ? fn##_bwd_scratch : NULL, .coupling = reduce_couple}

/* ---- channel coupling ---- */

/* Axes a reduction keeps pass their channels on; reducing over channels
 * mixes them (a decomposed LayerNorm's statistics). */
static int reduce_couple_axes(CouplingCtx *cc, bool arg)
{
    const Node *n = cc_node(cc);
    const Shape *s = cc_in_shape(cc, 0);
    bool reduced[SH_MAX_RANK] = {0};
    int64_t axes[SH_MAX_RANK];
    int count = -1;
    if (arg)
        axes[0] = node_attr_int(n, "axis", 0), count = 1;
    else if (cc_in_const(cc, 1) && cc_in_const(cc, 1)->numel <= SH_MAX_RANK) {
        count = (int)cc_in_const(cc, 1)->numel;
        for (int i = 0; i < count; i++)
            axes[i] = tensor_get_i(cc_in_const(cc, 1), i);
    } else {
        const int64_t *v;
        count = node_attr_ints(n, "axes", &v);
        for (int i = 0; i < count && i < SH_MAX_RANK; i++)
            axes[i] = v[i];
    }
    if (count <= 0) /* no axes: everything is reduced */
        for (int a = 0; a < s->rank; a++)
            reduced[a] = true;
    for (int i = 0; i < count && i < SH_MAX_RANK; i++) {
        int a = shape_axis(axes[i], s->rank);
        if (a >= 0)
            reduced[a] = true;
    }
    bool keep = node_attr_int(n, "keepdims", 1) != 0;
    for (int a = 0, o = 0; a < s->rank; a++) {
        if (!reduced[a]) {
            cc_same(cc, 0, a, 0, o++);
            continue;
        }
        if (arg)
            cc_block(cc, "picks one channel by value");
        else
            cc_approx(cc, 0, a, "reduces over these channels");
        o += keep;
    }
    if (cc_has_input(cc, 1))
        cc_consume(cc, 1, 0);
    return 0;
}

static int reduce_couple(CouplingCtx *cc) { return reduce_couple_axes(cc, false); }

static int arg_couple(CouplingCtx *cc) { return reduce_couple_axes(cc, true); }

const OpDef sh_ops_reduce[] = {
    REDUCE("ReduceSum", rsum, 1, 1),
    REDUCE("ReduceMean", rmean, 1, 1),
    REDUCE("ReduceMax", rmax, 0, 1),
    REDUCE("ReduceMin", rmin, 0, 1),
    REDUCE("ReduceProd", rprod, 1, 0),
    REDUCE("ReduceL1", rl1, 1, 1),
    REDUCE("ReduceL2", rl2, 1, 1),
    REDUCE("ReduceSumSquare", rsumsq, 1, 1),
    REDUCE("ReduceLogSum", rlogsum, 1, 1),
    REDUCE("ReduceLogSumExp", rlogsumexp, 1, 1),
    {.name = "ArgMax", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
     .infer = arg_infer, .forward = argmax_forward,
     .coupling = arg_couple},
    {.name = "ArgMin", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
     .infer = arg_infer, .forward = argmin_forward,
     .coupling = arg_couple},
    {.name = NULL},
};
