/* Backward of the broadcasting elementwise ops (Add, Sub, Mul, Div, Pow,
 * Sum, Mean, Max, Min, Where) against central finite differences and a
 * naive index-arithmetic reference, and the decomposed LayerNorm chain
 * older PyTorch exports produce, trained through by hand. */
#include "tests/support/gradcheck.h"
#include "tests/support/testutil.h"

#include "core/error.h"
#include "core/op.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* ---- helpers ------------------------------------------------------------ */

static void check_grad(const char *label, Node *n, int opset, Tensor **in, int n_in,
                       const GradCheck *opt, double *worst)
{
    double e = t_gradcheck(label, n, opset, in, n_in, 1, opt);
    if (e < 0 || e > 1)
        fail_msg("%s: gradient check failed (error %.3f of tolerance): %s", label, e,
                 sh_errmsg());
    if (e > *worst)
        *worst = e;
}

/* Calls n's backward on forward values in/out with output gradient gout. */
static int call_backward(Node *n, int opset, Tensor **in, int n_in, Tensor *out, Tensor *gout,
                         Tensor **gin)
{
    OpCtx c = {.node = n, .opset = opset, .n_in = n_in, .n_out = 1, .in = in, .out = &out};
    size_t sb = n->op->bwd_scratch ? n->op->bwd_scratch(&c) : 0;
    c.scratch = sb ? aligned_alloc(64, (sb + 63) / 64 * 64) : NULL;
    c.scratch_bytes = sb;
    int rc = n->op->backward(&c, &gout, gin);
    free(c.scratch);
    return rc;
}

/* Runs forward, then backward with output gradient gout into gin. */
static int run_backward(Node *n, int opset, Tensor **in, int n_in, Tensor *gout, Tensor **gin)
{
    Tensor *y = NULL;
    int rc = t_run(n, opset, in, n_in, &y, 1);
    if (rc == 0)
        rc = call_backward(n, opset, in, n_in, y, gout, gin);
    tensor_free(y);
    return rc;
}

static Shape shp(int rank, const int64_t *d) { return shape_make(rank, d); }

/* Shape pairs that broadcast the ways training meets them. */
typedef struct {
    const char *what;
    Shape a, b;
} BcastPair;

#define S(...) {sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t), {__VA_ARGS__}}
static const BcastPair pairs[] = {
    {"same shape", S(2, 3, 4), S(2, 3, 4)},
    {"same shape batch 1", S(1, 3, 5), S(1, 3, 5)},
    {"scalar b", S(2, 3, 4), {0, {0}}},
    {"scalar a", {0, {0}}, S(3, 4)},
    {"one-element b", S(2, 5), S(1)},
    {"per channel [1,C,1,1]", S(2, 3, 4, 5), S(1, 3, 1, 1)},
    {"per channel [C,1,1]", S(1, 4, 3, 3), S(4, 1, 1)},
    {"per channel a", S(1, 3, 1, 1), S(2, 3, 4, 5)},
    {"bias [D] into [N,T,D]", S(2, 3, 6), S(6)},
    {"[N,T,1] into [N,T,D]", S(2, 3, 6), S(2, 3, 1)},
    {"[N,1] with [1,M]", S(4, 1), S(1, 5)},
    {"middle axis", S(3, 4, 5), S(3, 1, 5)},
    {"rank 5 mixed", S(2, 1, 3, 1, 4), S(2, 3, 3, 2, 1)},
};
#undef S

/* ---- binary ops ---------------------------------------------------------- */

typedef struct {
    const char *op;
    float a_lo, a_hi, b_lo, b_hi; /* Div and Pow keep b (and a) off zero */
} BinCase;

static const BinCase bin_cases[] = {
    {"Add", -2, 2, -2, 2},
    {"Sub", -2, 2, -2, 2},
    {"Mul", -2, 2, -2, 2},
    {"Div", -2, 2, 0.5f, 2},
    {"Pow", 0.5f, 2, -1.5f, 2.5f},
};

static void test_binary_gradients_match_finite_differences_over_broadcasts(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 21);
    double worst = 0;
    for (size_t k = 0; k < sizeof bin_cases / sizeof *bin_cases; k++)
        for (size_t p = 0; p < sizeof pairs / sizeof *pairs; p++) {
            const BinCase *bc = &bin_cases[k];
            Tensor *in[2] = {t_rand(&r, &pairs[p].a, bc->a_lo, bc->a_hi),
                             t_rand(&r, &pairs[p].b, bc->b_lo, bc->b_hi)};
            if (!strcmp(bc->op, "Div")) /* negative divisors too */
                for (int64_t i = 0; i < in[1]->numel; i += 2)
                    tensor_f32(in[1])[i] = -tensor_f32(in[1])[i];
            Node *n = t_node(bc->op, 2, 1);
            char label[96];
            snprintf(label, sizeof label, "%s %s", bc->op, pairs[p].what);
            GradCheck opt = {.seed = k * 100 + p, .max_probes = 64};
            check_grad(label, n, 17, in, 2, &opt, &worst);
            t_node_free(n);
            tensor_free(in[0]);
            tensor_free(in[1]);
        }
    /* Opset 6 form: broadcast=1 with B aligned at axis (trailing here). */
    Shape as = shp(3, (int64_t[]){2, 3, 4}), bs = shp(2, (int64_t[]){3, 4});
    for (size_t k = 0; k < 4; k++) {
        Tensor *in[2] = {t_rand(&r, &as, -2, 2), t_rand(&r, &bs, 0.5f, 2)};
        Node *n = t_node(bin_cases[k].op, 2, 1);
        node_set_int(n, "broadcast", 1);
        node_set_int(n, "axis", 1);
        char label[64];
        snprintf(label, sizeof label, "%s opset 6 broadcast=1 axis=1", bin_cases[k].op);
        GradCheck opt = {.seed = 900 + k};
        check_grad(label, n, 6, in, 2, &opt, &worst);
        t_node_free(n);
        tensor_free(in[0]);
        tensor_free(in[1]);
    }
    printf("binary ops: worst error %.3f of tolerance\n", worst);
}

/* Pow(x, 2) takes a fast path (2 x g) when the exponent needs no gradient;
 * it must agree with the generic kernel (taken when the exponent's
 * gradient is asked too) and with finite differences; an int64 exponent
 * differentiates the base only. */
static void test_pow_square_and_int64_exponent(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 22);
    double worst = 0;
    Shape xs = shp(3, (int64_t[]){2, 3, 7}), one = {0};
    Tensor *x = t_rand(&r, &xs, -2, 2), *g = t_rand(&r, &xs, -1, 1);
    float two = 2.0f;
    Tensor *e_scalar = t_f32(&one, &two), *e_grad = tensor_new(SH_F32, &one);
    Node *n = t_node("Pow", 2, 1);
    Tensor *in[2] = {x, e_scalar};
    GradCheck opt = {.seed = 1, .skip = 2u};
    check_grad("Pow x^2 fast path", n, 13, in, 2, &opt, &worst);
    Tensor *fast = tensor_new(SH_F32, &xs), *generic = tensor_new(SH_F32, &xs);
    Tensor *gin[2] = {fast, NULL};
    assert_int_equal(run_backward(n, 13, in, 2, g, gin), 0);
    gin[0] = generic;
    gin[1] = e_grad;
    assert_int_equal(run_backward(n, 13, in, 2, g, gin), 0);
    double d = t_max_diff("Pow x^2 fast path vs generic kernel", fast, generic);
    assert_true(d <= 1e-6);

    Tensor *e_int = t_i64(&one, (int64_t[]){3});
    in[1] = e_int;
    opt.seed = 2;
    check_grad("Pow x^3 int64 exponent", n, 13, in, 2, &opt, &worst);
    Tensor *gx = tensor_new(SH_F32, &xs), *ge = tensor_new(SH_F32, &one);
    Tensor *both[2] = {gx, ge};
    assert_int_equal(run_backward(n, 13, in, 2, g, both), SH_E_UNSUPPORTED);
    printf("int64 exponent gradient: %s\n", sh_errmsg());
    printf("Pow: worst error %.3f of tolerance\n", worst);
    t_node_free(n);
    tensor_free(x);
    tensor_free(g);
    tensor_free(e_scalar);
    tensor_free(e_grad);
    tensor_free(e_int);
    tensor_free(fast);
    tensor_free(generic);
    tensor_free(gx);
    tensor_free(ge);
}

/* Index of output element i in an input of shape s broadcast to out. */
static int64_t bcast_index(const Shape *out, const Shape *s, int64_t i)
{
    int64_t idx = 0, stride = 1;
    for (int d = out->rank - 1; d >= 0; d--) {
        int64_t c = i % out->d[d];
        i /= out->d[d];
        int ds = d - (out->rank - s->rank);
        if (ds >= 0) {
            idx += (s->d[ds] == 1 ? 0 : c) * stride;
            stride *= s->d[ds];
        }
    }
    return idx;
}

/* dL/da, dL/db of Add, Sub, Mul, Div in double by index arithmetic. */
static void binary_grad_reference(const char *op, const Tensor *a, const Tensor *b,
                                  const Tensor *g, const Shape *out, double *ga, double *gb)
{
    for (int64_t i = 0; i < shape_numel(out); i++) {
        int64_t ia = bcast_index(out, &a->shape, i), ib = bcast_index(out, &b->shape, i);
        double x0 = tensor_f32(a)[ia], x1 = tensor_f32(b)[ib], d = tensor_f32(g)[i];
        double da = d, db = d;
        if (!strcmp(op, "Sub"))
            db = -d;
        else if (!strcmp(op, "Mul"))
            da = d * x1, db = d * x0;
        else if (!strcmp(op, "Div"))
            da = d / x1, db = -d * x0 / (x1 * x1);
        ga[ia] += da;
        gb[ib] += db;
    }
}

static double max_rel_diff(const Tensor *t, const double *ref)
{
    double m = 0, scale = 1;
    for (int64_t i = 0; i < t->numel; i++)
        scale = fmax(scale, fabs(ref[i]));
    for (int64_t i = 0; i < t->numel; i++)
        m = fmax(m, fabs(tensor_f32(t)[i] - ref[i]));
    return m / scale;
}

/* The run-based broadcast reduction against the naive reference, on
 * tensors large enough for long runs (several 1024 blocks). */
static void test_broadcast_gradients_match_naive_reference(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 23);
    const char *ops[] = {"Add", "Sub", "Mul", "Div"};
    for (int k = 0; k < 4; k++)
        for (size_t p = 0; p < sizeof pairs / sizeof *pairs; p++) {
            Shape a = pairs[p].a, b = pairs[p].b;
            /* Grow the last axis (where both have it) so runs are long. */
            if (a.rank && b.rank && a.d[a.rank - 1] == b.d[b.rank - 1])
                a.d[a.rank - 1] *= 96, b.d[b.rank - 1] *= 96;
            else if (a.rank && a.d[a.rank - 1] != 1)
                a.d[a.rank - 1] *= 96;
            else if (b.rank && b.d[b.rank - 1] != 1)
                b.d[b.rank - 1] *= 96;
            Tensor *in[2] = {t_rand(&r, &a, -2, 2), t_rand(&r, &b, 0.5f, 2)};
            Node *n = t_node(ops[k], 2, 1);
            Tensor *y = NULL;
            assert_int_equal(t_run(n, 17, in, 2, &y, 1), 0);
            Tensor *g = t_rand(&r, &y->shape, -1, 1);
            Tensor *gin[2] = {tensor_new(SH_F32, &a), tensor_new(SH_F32, &b)};
            assert_int_equal(call_backward(n, 17, in, 2, y, g, gin), 0);
            double *ga = calloc((size_t)in[0]->numel, sizeof *ga);
            double *gb = calloc((size_t)in[1]->numel, sizeof *gb);
            binary_grad_reference(ops[k], in[0], in[1], g, &y->shape, ga, gb);
            double da = max_rel_diff(gin[0], ga), db = max_rel_diff(gin[1], gb);
            printf("%s %s (%lld elements) vs reference: max rel diff da %.3g, db %.3g\n", ops[k],
                   pairs[p].what, (long long)y->numel, da, db);
            assert_true(da <= 1e-5 && db <= 1e-5);
            free(ga);
            free(gb);
            t_node_free(n);
            tensor_free(in[0]);
            tensor_free(in[1]);
            tensor_free(y);
            tensor_free(g);
            tensor_free(gin[0]);
            tensor_free(gin[1]);
        }
}

/* The same value as both inputs (x*x, x+x) gets both contributions. */
static void test_shared_input_accumulates_both_contributions(void **state)
{
    (void)state;
    Shape s = shp(1, (int64_t[]){3});
    Tensor *x = t_f32(&s, (float[]){1, -2, 3}), *g = t_f32(&s, (float[]){1, 1, 0.5f});
    Tensor *gx = t_f32(&s, (float[]){10, 10, 10});
    Tensor *in[2] = {x, x}, *gin[2] = {gx, gx};
    Node *n = t_node("Mul", 2, 1);
    assert_int_equal(run_backward(n, 17, in, 2, g, gin), 0);
    float want[] = {10 + 2, 10 - 4, 10 + 3}; /* + 2 x g */
    for (int i = 0; i < 3; i++)
        assert_float_equal(tensor_f32(gx)[i], want[i], 1e-6);
    t_node_free(n);
    tensor_free(x);
    tensor_free(g);
    tensor_free(gx);
}

/* gin[i] NULL: that input is skipped; gout NULL: nothing is added. */
static void test_null_gradients_are_skipped(void **state)
{
    (void)state;
    Shape s = shp(2, (int64_t[]){2, 3}), c = shp(1, (int64_t[]){3});
    TRng r;
    trng_seed(&r, 24);
    Tensor *in[2] = {t_rand(&r, &s, -1, 1), t_rand(&r, &c, 0.5f, 1)};
    Tensor *g = t_rand(&r, &s, -1, 1), *gb = tensor_new(SH_F32, &c);
    Tensor *gin[2] = {NULL, gb};
    Node *n = t_node("Div", 2, 1);
    assert_int_equal(run_backward(n, 17, in, 2, g, gin), 0);
    double any = 0;
    for (int i = 0; i < 3; i++)
        any += fabsf(tensor_f32(gb)[i]);
    assert_true(any > 0);
    Tensor *before = tensor_clone(gb);
    assert_int_equal(run_backward(n, 17, in, 2, NULL, gin), 0);
    assert_true(t_max_diff("Div with no output gradient", gb, before) == 0);
    t_node_free(n);
    tensor_free(in[0]);
    tensor_free(in[1]);
    tensor_free(g);
    tensor_free(gb);
    tensor_free(before);
}

static void test_int64_inputs_have_no_gradient(void **state)
{
    (void)state;
    Shape s = shp(1, (int64_t[]){2});
    Tensor *in[2] = {t_i64(&s, (int64_t[]){1, 2}), t_i64(&s, (int64_t[]){3, 4})};
    Tensor *g = t_f32(&s, (float[]){1, 1}), *ga = tensor_new(SH_F32, &s);
    Tensor *gin[2] = {ga, NULL};
    const char *ops[] = {"Add", "Mul", "Max", "Sum"};
    for (int k = 0; k < 4; k++) {
        Node *n = t_node(ops[k], 2, 1);
        assert_int_equal(run_backward(n, 17, in, 2, g, gin), SH_E_UNSUPPORTED);
        assert_non_null(strstr(sh_errmsg(), "int64"));
        t_node_free(n);
    }
    tensor_free(in[0]);
    tensor_free(in[1]);
    tensor_free(g);
    tensor_free(ga);
}

/* Zero-size tensors: nothing to add, and nothing may be touched. */
static void test_empty_tensors_give_empty_gradients(void **state)
{
    (void)state;
    Shape e = shp(2, (int64_t[]){0, 3}), c = shp(1, (int64_t[]){3});
    Tensor *in[2] = {tensor_new(SH_F32, &e), t_f32(&c, (float[]){1, 2, 3})};
    Tensor *g = tensor_new(SH_F32, &e);
    Tensor *gin[2] = {tensor_new(SH_F32, &e), t_f32(&c, (float[]){5, 5, 5})};
    const char *ops[] = {"Add", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean"};
    for (int k = 0; k < 8; k++) {
        Node *n = t_node(ops[k], 2, 1);
        assert_int_equal(run_backward(n, 13, in, 2, g, gin), 0);
        for (int i = 0; i < 3; i++)
            assert_float_equal(tensor_f32(gin[1])[i], 5, 0);
        t_node_free(n);
    }
    for (int i = 0; i < 2; i++) {
        tensor_free(in[i]);
        tensor_free(gin[i]);
    }
    tensor_free(g);
}

/* ---- variadic ops -------------------------------------------------------- */

static void test_sum_mean_max_min_gradients_over_broadcasts(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 25);
    double worst = 0;
    const char *ops[] = {"Sum", "Mean", "Max", "Min"};
    Shape sets[][3] = {
        {shp(3, (int64_t[]){2, 3, 4}), {0}, {0}},
        {shp(3, (int64_t[]){2, 3, 4}), shp(3, (int64_t[]){2, 3, 4}), {0}},
        {shp(3, (int64_t[]){1, 3, 4}), shp(1, (int64_t[]){4}), shp(2, (int64_t[]){3, 1})},
        {shp(4, (int64_t[]){2, 3, 2, 2}), shp(4, (int64_t[]){1, 3, 1, 1}), {0}},
        {{0}, shp(2, (int64_t[]){3, 5}), shp(2, (int64_t[]){3, 5})},
    };
    int counts[] = {1, 2, 3, 2, 3};
    for (int k = 0; k < 4; k++)
        for (int s = 0; s < 5; s++) {
            Tensor *in[3] = {0};
            for (int i = 0; i < counts[s]; i++)
                in[i] = t_rand(&r, &sets[s][i], -2, 2); /* ties have probability 0 */
            Node *n = t_node(ops[k], counts[s], 1);
            char label[64];
            snprintf(label, sizeof label, "%s of %d inputs, set %d", ops[k], counts[s], s);
            GradCheck opt = {.seed = (uint64_t)(k * 10 + s), .h = 1e-3, .max_probes = 64};
            check_grad(label, n, 13, in, counts[s], &opt, &worst);
            t_node_free(n);
            for (int i = 0; i < 3; i++)
                tensor_free(in[i]);
        }
    printf("variadic ops: worst error %.3f of tolerance\n", worst);
}

/* Ties: the first input holding the extremum takes the whole gradient,
 * including against a broadcast input. */
static void test_max_min_winner_gets_gradient_ties_first(void **state)
{
    (void)state;
    Shape s = shp(1, (int64_t[]){4}), one = {0};
    Tensor *a = t_f32(&s, (float[]){1, 2, 3, 0}), *b = t_f32(&s, (float[]){1, 5, 0, 0});
    Tensor *c = t_f32(&one, (float[]){3});
    Tensor *g = t_f32(&s, (float[]){1, 2, 4, 8});
    Tensor *ga = tensor_new(SH_F32, &s), *gb = tensor_new(SH_F32, &s), *gc = tensor_new(SH_F32, &one);
    Tensor *in[3] = {a, b, c}, *gin[3] = {ga, gb, gc};
    Node *n = t_node("Max", 3, 1);
    assert_int_equal(run_backward(n, 13, in, 3, g, gin), 0);
    /* max per element: 3 (c), 5 (b), 3 (a, tie with c), 3 (c) */
    float want_a[] = {0, 0, 4, 0}, want_b[] = {0, 2, 0, 0};
    for (int i = 0; i < 4; i++) {
        assert_float_equal(tensor_f32(ga)[i], want_a[i], 0);
        assert_float_equal(tensor_f32(gb)[i], want_b[i], 0);
    }
    assert_float_equal(tensor_f32(gc)[0], 1 + 8, 0);
    t_node_free(n);

    /* Min with a tie between a and b at element 0 and 3: a wins. */
    Tensor *in2[2] = {a, b}, *gin2[2] = {ga, gb};
    memset(ga->data, 0, tensor_bytes(ga));
    memset(gb->data, 0, tensor_bytes(gb));
    n = t_node("Min", 2, 1);
    assert_int_equal(run_backward(n, 13, in2, 2, g, gin2), 0);
    float want_a2[] = {1, 2, 0, 8}, want_b2[] = {0, 0, 4, 0};
    for (int i = 0; i < 4; i++) {
        assert_float_equal(tensor_f32(ga)[i], want_a2[i], 0);
        assert_float_equal(tensor_f32(gb)[i], want_b2[i], 0);
    }
    t_node_free(n);
    tensor_free(a);
    tensor_free(b);
    tensor_free(c);
    tensor_free(g);
    tensor_free(ga);
    tensor_free(gb);
    tensor_free(gc);
}

/* ---- Where --------------------------------------------------------------- */

static Tensor *random_bool(TRng *r, const Shape *s)
{
    Tensor *t = tensor_new(SH_BOOL, s);
    for (int64_t i = 0; i < t->numel; i++)
        tensor_u8(t)[i] = (uint8_t)trng_int(r, 0, 1);
    return t;
}

static void test_where_gradient_splits_by_condition(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 26);
    double worst = 0;
    struct {
        const char *what;
        Shape c, x, y;
    } cases[] = {
        {"same shapes", shp(2, (int64_t[]){3, 4}), shp(2, (int64_t[]){3, 4}),
         shp(2, (int64_t[]){3, 4})},
        {"attention mask", shp(4, (int64_t[]){1, 1, 4, 4}), {0},
         shp(4, (int64_t[]){2, 2, 4, 4})},
        {"broadcast all", shp(2, (int64_t[]){3, 1}), shp(1, (int64_t[]){5}),
         shp(3, (int64_t[]){2, 1, 5})},
        {"batch 1", shp(3, (int64_t[]){1, 2, 3}), shp(3, (int64_t[]){1, 2, 3}),
         shp(1, (int64_t[]){3})},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        Tensor *in[3] = {random_bool(&r, &cases[k].c), t_rand(&r, &cases[k].x, -2, 2),
                         t_rand(&r, &cases[k].y, -2, 2)};
        Node *n = t_node("Where", 3, 1);
        char label[64];
        snprintf(label, sizeof label, "Where %s", cases[k].what);
        GradCheck opt = {.seed = 400 + k, .max_probes = 64};
        check_grad(label, n, 16, in, 3, &opt, &worst);
        t_node_free(n);
        for (int i = 0; i < 3; i++)
            tensor_free(in[i]);
    }
    printf("Where: worst error %.3f of tolerance\n", worst);
}

/* ---- decomposed LayerNorm ------------------------------------------------ */

/* Older PyTorch exports LayerNorm over the last axis as
 *   mu = ReduceMean(x), d = x - mu, var = ReduceMean(d^2),
 *   y = d / Sqrt(var + eps) * scale + bias.
 * Values: 0 x, 1 scale, 2 bias, 3 two, 4 eps, then one per node. */
enum { V_X, V_SCALE, V_BIAS, V_TWO, V_EPS, V_FIRST_NODE };
typedef struct {
    const char *op;
    int in[2];
} ChainStep;
static const ChainStep ln_steps[] = {
    {"ReduceMean", {V_X, -1}},             /* 5 mu [N,T,1] */
    {"Sub", {V_X, 5}},                     /* 6 d */
    {"Pow", {6, V_TWO}},                   /* 7 d^2 */
    {"ReduceMean", {7, -1}},               /* 8 var */
    {"Add", {8, V_EPS}},                   /* 9 */
    {"Sqrt", {9, -1}},                     /* 10 */
    {"Div", {6, 10}},                      /* 11 [N,T,D] / [N,T,1] */
    {"Mul", {11, V_SCALE}},                /* 12 */
    {"Add", {12, V_BIAS}},                 /* 13 y */
};
#define LN_STEPS ((int)(sizeof ln_steps / sizeof *ln_steps))
#define LN_VALUES (V_FIRST_NODE + LN_STEPS)

static Node *ln_node(int k)
{
    int n_in = ln_steps[k].in[1] < 0 ? 1 : 2;
    Node *n = t_node(ln_steps[k].op, n_in, 1);
    if (!strcmp(ln_steps[k].op, "ReduceMean"))
        node_set_ints(n, "axes", (int64_t[]){-1}, 1);
    return n;
}

/* Runs the chain; v[V_FIRST_NODE..] get new tensors. */
static void ln_forward(Node **nodes, Tensor **v)
{
    for (int k = 0; k < LN_STEPS; k++) {
        Tensor *in[2] = {v[ln_steps[k].in[0]], ln_steps[k].in[1] < 0 ? NULL : v[ln_steps[k].in[1]]};
        tensor_free(v[V_FIRST_NODE + k]);
        v[V_FIRST_NODE + k] = NULL;
        if (t_run(nodes[k], 13, in, nodes[k]->n_in, &v[V_FIRST_NODE + k], 1) != 0)
            fail_msg("%s failed: %s", ln_steps[k].op, sh_errmsg());
    }
}

static double ln_loss(Node **nodes, Tensor **v, const Tensor *w)
{
    ln_forward(nodes, v);
    const Tensor *y = v[LN_VALUES - 1];
    double l = 0;
    for (int64_t i = 0; i < y->numel; i++)
        l += (double)tensor_f32(w)[i] * tensor_f32(y)[i];
    return l;
}

/* Backward through the chain in reverse; grad[i] for every float value
 * except the constants two and eps. Values read twice (x, d) accumulate. */
static void ln_backward(Node **nodes, Tensor **v, Tensor **grad, const Tensor *w)
{
    for (int i = 0; i < LN_VALUES; i++) {
        tensor_free(grad[i]);
        grad[i] = i == V_TWO || i == V_EPS ? NULL : tensor_new(SH_F32, &v[i]->shape);
    }
    memcpy(grad[LN_VALUES - 1]->data, w->data, tensor_bytes(w));
    for (int k = LN_STEPS - 1; k >= 0; k--) {
        int a = ln_steps[k].in[0], b = ln_steps[k].in[1];
        Tensor *in[2] = {v[a], b < 0 ? NULL : v[b]};
        Tensor *gin[2] = {grad[a], b < 0 ? NULL : grad[b]};
        if (call_backward(nodes[k], 13, in, nodes[k]->n_in, v[V_FIRST_NODE + k],
                          grad[V_FIRST_NODE + k], gin) != 0)
            fail_msg("%s backward failed: %s", ln_steps[k].op, sh_errmsg());
    }
}

static void test_decomposed_layernorm_trains_through_its_ops(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 27);
    const int64_t N = 2, T = 3, D = 8;
    Shape xs = shp(3, (int64_t[]){N, T, D}), ds = shp(1, (int64_t[]){D}), one = {0};
    Tensor *v[LN_VALUES] = {0}, *grad[LN_VALUES] = {0};
    v[V_X] = t_rand(&r, &xs, -2, 2);
    v[V_SCALE] = t_rand(&r, &ds, 0.5f, 1.5f);
    v[V_BIAS] = t_rand(&r, &ds, -0.5f, 0.5f);
    v[V_TWO] = t_f32(&one, (float[]){2});
    v[V_EPS] = t_f32(&one, (float[]){1e-5f});
    Tensor *w = t_rand(&r, &xs, -1, 1);
    Node *nodes[LN_STEPS];
    for (int k = 0; k < LN_STEPS; k++)
        nodes[k] = ln_node(k);
    ln_forward(nodes, v);
    ln_backward(nodes, v, grad, w);

    /* Closed form: dx = (g' - mean(g') - xhat mean(g' xhat)) / sd with
     * g' = w * scale, per row; dscale = sum w xhat; dbias = sum w. */
    double max_dx = 0, max_ds = 0, max_db = 0;
    double *dscale = calloc((size_t)D, sizeof(double)), *dbias = calloc((size_t)D, sizeof(double));
    for (int64_t row = 0; row < N * T; row++) {
        const float *x = tensor_f32(v[V_X]) + row * D, *wr = tensor_f32(w) + row * D;
        double mu = 0, var = 0, mg = 0, mgx = 0, xhat[64], gp[64];
        for (int64_t j = 0; j < D; j++)
            mu += x[j] / (double)D;
        for (int64_t j = 0; j < D; j++)
            var += (x[j] - mu) * (x[j] - mu) / (double)D;
        double sd = sqrt(var + 1e-5);
        for (int64_t j = 0; j < D; j++) {
            xhat[j] = (x[j] - mu) / sd;
            gp[j] = wr[j] * (double)tensor_f32(v[V_SCALE])[j];
            mg += gp[j] / (double)D;
            mgx += gp[j] * xhat[j] / (double)D;
            dscale[j] += wr[j] * xhat[j];
            dbias[j] += wr[j];
        }
        for (int64_t j = 0; j < D; j++) {
            double want = (gp[j] - mg - xhat[j] * mgx) / sd;
            max_dx = fmax(max_dx, fabs(tensor_f32(grad[V_X])[row * D + j] - want));
        }
    }
    for (int64_t j = 0; j < D; j++) {
        max_ds = fmax(max_ds, fabs(tensor_f32(grad[V_SCALE])[j] - dscale[j]));
        max_db = fmax(max_db, fabs(tensor_f32(grad[V_BIAS])[j] - dbias[j]));
    }
    printf("decomposed LayerNorm vs closed form: max abs diff dx %.3g, dscale %.3g, dbias %.3g\n",
           max_dx, max_ds, max_db);
    assert_true(max_dx <= 1e-4 && max_ds <= 1e-5 && max_db <= 1e-5);

    /* And against central differences of the whole chain. */
    double worst = 0;
    for (int which = V_X; which <= V_BIAS; which++)
        for (int64_t i = 0; i < v[which]->numel; i += 3) {
            float *p = &tensor_f32(v[which])[i], keep = *p;
            const float h = 1e-2f;
            *p = keep + h;
            double lp = ln_loss(nodes, v, w);
            *p = keep - h;
            double lm = ln_loss(nodes, v, w);
            *p = keep;
            double fd = (lp - lm) / ((double)(keep + h) - (double)(keep - h));
            double an = tensor_f32(grad[which])[i];
            worst = fmax(worst, fabs(fd - an) / (2e-3 + 2e-2 * fmax(fabs(fd), fabs(an))));
        }
    printf("decomposed LayerNorm vs finite differences: max error %.3f of tolerance\n", worst);
    assert_true(worst <= 1);
    free(dscale);
    free(dbias);
    for (int k = 0; k < LN_STEPS; k++)
        t_node_free(nodes[k]);
    for (int i = 0; i < LN_VALUES; i++) {
        tensor_free(v[i]);
        tensor_free(grad[i]);
    }
    tensor_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary_gradients_match_finite_differences_over_broadcasts),
        cmocka_unit_test(test_pow_square_and_int64_exponent),
        cmocka_unit_test(test_broadcast_gradients_match_naive_reference),
        cmocka_unit_test(test_shared_input_accumulates_both_contributions),
        cmocka_unit_test(test_null_gradients_are_skipped),
        cmocka_unit_test(test_int64_inputs_have_no_gradient),
        cmocka_unit_test(test_empty_tensors_give_empty_gradients),
        cmocka_unit_test(test_sum_mean_max_min_gradients_over_broadcasts),
        cmocka_unit_test(test_max_min_winner_gets_gradient_ties_first),
        cmocka_unit_test(test_where_gradient_splits_by_condition),
        cmocka_unit_test(test_decomposed_layernorm_trains_through_its_ops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
