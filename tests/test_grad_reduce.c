/* Backward of the reductions (Sum, Mean, Max, Min, SumSquare, L1, L2,
 * LogSum, LogSumExp) with keepdims 0/1, axes as attribute or input, and
 * empty axes, against central finite differences and a double reference
 * by index arithmetic. */
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

static Shape random_shape(TRng *r, int draw)
{
    Shape s = {.rank = (int)trng_int(r, 1, 4)};
    for (int i = 0; i < s.rank; i++)
        s.d[i] = trng_int(r, 1, 5);
    if (draw % 3 == 0)
        s.d[0] = 1;
    return s;
}

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

/* Runs forward, then backward with output gradient gout into gx. */
static int run_backward(Node *n, int opset, Tensor **in, int n_in, Tensor *gout, Tensor *gx)
{
    Tensor *y = NULL;
    int rc = t_run(n, opset, in, n_in, &y, 1);
    if (rc < 0)
        return rc;
    OpCtx c = {.node = n, .opset = opset, .n_in = n_in, .n_out = 1, .in = in, .out = &y};
    size_t sb = n->op->bwd_scratch ? n->op->bwd_scratch(&c) : 0;
    c.scratch = sb ? aligned_alloc(64, (sb + 63) / 64 * 64) : NULL;
    c.scratch_bytes = sb;
    Tensor *gin[2] = {gx, NULL};
    rc = n->op->backward(&c, &gout, gin);
    free(c.scratch);
    tensor_free(y);
    return rc;
}

typedef struct {
    const char *op;
    float lo, hi; /* L1 keeps off 0 by sign flips; LogSum needs a positive sum */
} ReduceCase;

static const ReduceCase reduce_cases[] = {
    {"ReduceSum", -2, 2},       {"ReduceMean", -2, 2},  {"ReduceMax", -2, 2},
    {"ReduceMin", -2, 2},       {"ReduceSumSquare", -2, 2}, {"ReduceL2", -2, 2},
    {"ReduceLogSumExp", -3, 3}, {"ReduceL1", 0.1f, 2},  {"ReduceLogSum", 0.2f, 2},
};
#define N_CASES (sizeof reduce_cases / sizeof *reduce_cases)

/* Random distinct axes (count 1..rank), some negative, into axes[]. */
static int random_axes(TRng *r, int rank, int64_t *axes)
{
    int count = (int)trng_int(r, 1, rank), used[SH_MAX_RANK] = {0};
    for (int i = 0; i < count; i++) {
        int a;
        do
            a = (int)trng_int(r, 0, rank - 1);
        while (used[a]);
        used[a] = 1;
        axes[i] = trng_int(r, 0, 1) ? a - rank : a;
    }
    return count;
}

/* ---- tests ---------------------------------------------------------------- */

/* Axes as an attribute (random, or absent: everything), keepdims 0/1. */
static void test_gradients_match_finite_differences_with_axes_attribute(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 41);
    double worst = 0;
    for (size_t k = 0; k < N_CASES; k++)
        for (int draw = 0; draw < 6; draw++) {
            const ReduceCase *rc = &reduce_cases[k];
            Shape s = random_shape(&r, draw);
            Tensor *x = t_rand(&r, &s, rc->lo, rc->hi);
            if (!strcmp(rc->op, "ReduceL1"))
                for (int64_t i = 0; i < x->numel; i += 2)
                    tensor_f32(x)[i] = -tensor_f32(x)[i];
            Node *n = t_node(rc->op, 1, 1);
            int64_t axes[SH_MAX_RANK];
            int n_axes = draw == 5 ? 0 : random_axes(&r, s.rank, axes);
            if (n_axes)
                node_set_ints(n, "axes", axes, n_axes);
            int keep = draw % 2;
            node_set_int(n, "keepdims", keep);
            char label[128], ss[64], as[64] = "all";
            for (int i = 0, o = 0; i < n_axes; i++)
                o += snprintf(as + o, sizeof as - (size_t)o, "%s%lld", i ? "," : "",
                              (long long)axes[i]);
            snprintf(label, sizeof label, "%s %s axes %s keepdims %d", rc->op,
                     shape_str(&s, ss, sizeof ss), as, keep);
            /* A small step for Max/Min, so it does not cross a near tie. */
            int extremum = !strcmp(rc->op, "ReduceMax") || !strcmp(rc->op, "ReduceMin");
            GradCheck opt = {.seed = k * 100 + (uint64_t)draw, .h = extremum ? 1e-3 : 0};
            check_grad(label, n, 13, &x, 1, &opt, &worst);
            t_node_free(n);
            tensor_free(x);
        }
    printf("reductions, axes attribute: worst error %.3f of tolerance\n", worst);
}

/* Axes as input 1 (ReduceSum from 13, every reduction at 18), including an
 * empty axes input (reduce all) and noop_with_empty_axes (identity). */
static void test_gradients_with_axes_input_and_empty_axes(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 42);
    double worst = 0;
    Shape s = shape_of(3, (int64_t)2, (int64_t)3, (int64_t)4);
    Shape one = shape_of(1, (int64_t)2), none = shape_of(1, (int64_t)0);
    for (size_t k = 0; k < N_CASES; k++)
        for (int form = 0; form < 3; form++) {
            const ReduceCase *rc = &reduce_cases[k];
            int opset = !strcmp(rc->op, "ReduceSum") ? 13 : 18;
            Tensor *x = t_rand(&r, &s, rc->lo, rc->hi);
            Tensor *axes = form == 0 ? t_i64(&one, (int64_t[]){0, -1}) : t_i64(&none, NULL);
            Node *n = t_node(rc->op, 2, 1);
            node_set_int(n, "keepdims", form == 0 ? 0 : 1);
            if (form == 2)
                node_set_int(n, "noop_with_empty_axes", 1);
            Tensor *in[2] = {x, axes};
            char label[96];
            const char *what[] = {"axes input [0,-1]", "empty axes input", "noop_with_empty_axes"};
            snprintf(label, sizeof label, "%s opset %d %s", rc->op, opset, what[form]);
            int extremum = !strcmp(rc->op, "ReduceMax") || !strcmp(rc->op, "ReduceMin");
            GradCheck opt = {.seed = k * 10 + (uint64_t)form, .h = extremum ? 1e-3 : 0,
                             .skip = 2u};
            check_grad(label, n, opset, in, 2, &opt, &worst);
            t_node_free(n);
            tensor_free(x);
            tensor_free(axes);
        }
    printf("reductions, axes input: worst error %.3f of tolerance\n", worst);
}

/* Ties go to the first element, along a reduced inner axis and along a
 * reduced outer axis (kept inner axis). */
static void test_max_min_ties_give_the_gradient_to_the_first(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)3);
    Tensor *x = t_f32(&s, (float[]){1, 3, 3, 2, 2, 1});
    struct {
        const char *op;
        int64_t axis;
        float g[3];
        float want[6];
    } cases[] = {
        {"ReduceMax", 1, {10, 20}, {0, 10, 0, 20, 0, 0}},
        {"ReduceMin", 1, {10, 20}, {10, 0, 0, 0, 0, 20}},
        /* columns (1,2) (3,2) (3,1): max rows 1, 0, 0 */
        {"ReduceMax", 0, {10, 20, 30}, {0, 20, 30, 10, 0, 0}},
        /* min rows 0, 1, 1 */
        {"ReduceMin", 0, {10, 20, 30}, {10, 0, 0, 0, 20, 30}},
    };
    Tensor *same = t_f32(&s, (float[]){5, 5, 5, 5, 5, 5});
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        Node *n = t_node(cases[k].op, 1, 1);
        node_set_ints(n, "axes", &cases[k].axis, 1);
        node_set_int(n, "keepdims", 0);
        Shape gs = shape_of(1, cases[k].axis == 1 ? (int64_t)2 : (int64_t)3);
        Tensor *g = t_f32(&gs, cases[k].g), *gx = tensor_new(SH_F32, &s);
        assert_int_equal(run_backward(n, 13, &x, 1, g, gx), 0);
        for (int i = 0; i < 6; i++)
            if (tensor_f32(gx)[i] != cases[k].want[i])
                fail_msg("%s axis %lld: gradient[%d] = %g, want %g", cases[k].op,
                         (long long)cases[k].axis, i, tensor_f32(gx)[i], cases[k].want[i]);
        t_node_free(n);
        tensor_free(g);
        tensor_free(gx);
    }
    /* All equal, everything reduced: element 0 alone. */
    Node *n = t_node("ReduceMax", 1, 1);
    Shape scalar = {0};
    Tensor *g = t_f32(&scalar, (float[]){1}), *gx = tensor_new(SH_F32, &s);
    node_set_int(n, "keepdims", 0);
    assert_int_equal(run_backward(n, 13, &same, 1, g, gx), 0);
    for (int i = 0; i < 6; i++)
        assert_float_equal(tensor_f32(gx)[i], i == 0 ? 1.0f : 0.0f, 0);
    t_node_free(n);
    tensor_free(g);
    tensor_free(gx);
    tensor_free(same);
    tensor_free(x);
}

/* dx by index arithmetic in double from x, y and g (one output per
 * reduced slice; the first extremum for Max/Min). */
static void reduce_grad_reference(const char *op, const Tensor *x, const Tensor *y,
                                  const Tensor *g, const int *reduced, double *gx)
{
    const Shape *s = &x->shape;
    int64_t count = 1;
    for (int d = 0; d < s->rank; d++)
        if (reduced[d])
            count *= s->d[d];
    char *taken = calloc((size_t)y->numel + 1, 1);
    for (int64_t i = 0; i < x->numel; i++) {
        int64_t rem = i, o = 0, ostride = 1;
        for (int d = s->rank - 1; d >= 0; d--) {
            int64_t idx = rem % s->d[d];
            rem /= s->d[d];
            if (!reduced[d]) {
                o += idx * ostride;
                ostride *= s->d[d];
            }
        }
        double v = tensor_f32(x)[i], yv = tensor_f32(y)[o], d = tensor_f32(g)[o];
        if (!strcmp(op, "ReduceSum"))
            gx[i] = d;
        else if (!strcmp(op, "ReduceMean"))
            gx[i] = d / (double)count;
        else if (!strcmp(op, "ReduceSumSquare"))
            gx[i] = 2 * v * d;
        else if (!strcmp(op, "ReduceL2"))
            gx[i] = d * v / yv;
        else if (!strcmp(op, "ReduceLogSumExp"))
            gx[i] = d * exp(v - yv);
        else if (!taken[o] && v == yv) {
            taken[o] = 1;
            gx[i] = d;
        }
    }
    free(taken);
}

/* The walk over merged kept/reduced dims against the reference on larger
 * tensors, for inner-reduced and inner-kept layouts. */
static void test_gradient_matches_reference_for_every_axis_set(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 43);
    Shape s = shape_of(4, (int64_t)3, (int64_t)17, (int64_t)5, (int64_t)33);
    const char *ops[] = {"ReduceSum", "ReduceMean", "ReduceSumSquare", "ReduceL2",
                         "ReduceLogSumExp", "ReduceMax", "ReduceMin"};
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++)
        for (int mask = 1; mask < 16; mask++) {
            Tensor *x = t_rand(&r, &s, -2, 2), *y = NULL;
            Node *n = t_node(ops[k], 1, 1);
            int64_t axes[4];
            int n_axes = 0, reduced[4];
            for (int d = 0; d < 4; d++)
                if ((reduced[d] = (mask >> d) & 1))
                    axes[n_axes++] = d;
            node_set_ints(n, "axes", axes, n_axes);
            assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
            Tensor *g = t_rand(&r, &y->shape, -1, 1), *gx = tensor_new(SH_F32, &s);
            assert_int_equal(run_backward(n, 13, &x, 1, g, gx), 0);
            double *ref = calloc((size_t)x->numel, sizeof *ref), m = 0;
            reduce_grad_reference(ops[k], x, y, g, reduced, ref);
            for (int64_t i = 0; i < x->numel; i++)
                m = fmax(m, fabs(tensor_f32(gx)[i] - ref[i]));
            printf("%s axes mask %x vs reference: max abs diff %.3g\n", ops[k], mask, m);
            assert_true(m <= 1e-5);
            free(ref);
            t_node_free(n);
            tensor_free(x);
            tensor_free(y);
            tensor_free(g);
            tensor_free(gx);
        }
}

static void test_int64_input_has_no_gradient(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)3), scalar = {0};
    Tensor *x = t_i64(&s, (int64_t[]){1, 2, 3});
    Tensor *g = t_f32(&scalar, (float[]){1}), *gx = tensor_new(SH_F32, &s);
    Node *n = t_node("ReduceSum", 1, 1);
    node_set_int(n, "keepdims", 0);
    assert_int_equal(run_backward(n, 13, &x, 1, g, gx), SH_E_UNSUPPORTED);
    assert_non_null(strstr(sh_errmsg(), "int64"));
    t_node_free(n);
    tensor_free(x);
    tensor_free(g);
    tensor_free(gx);
}

/* Zero-size input: an empty gradient, whatever the output holds (zeros
 * for Sum, -inf for Max, NaN for Mean over an empty axis). */
static void test_empty_input_gives_empty_gradient(void **state)
{
    (void)state;
    Shape e = shape_of(2, (int64_t)0, (int64_t)3), ys = shape_of(1, (int64_t)3);
    Tensor *x = tensor_new(SH_F32, &e), *gx = tensor_new(SH_F32, &e);
    Tensor *g = t_f32(&ys, (float[]){1, 2, 3});
    for (size_t k = 0; k < N_CASES; k++) {
        Node *n = t_node(reduce_cases[k].op, 1, 1);
        node_set_ints(n, "axes", (int64_t[]){0}, 1);
        node_set_int(n, "keepdims", 0);
        assert_int_equal(run_backward(n, 13, &x, 1, g, gx), 0);
        t_node_free(n);
    }
    tensor_free(x);
    tensor_free(gx);
    tensor_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradients_match_finite_differences_with_axes_attribute),
        cmocka_unit_test(test_gradients_with_axes_input_and_empty_axes),
        cmocka_unit_test(test_max_min_ties_give_the_gradient_to_the_first),
        cmocka_unit_test(test_gradient_matches_reference_for_every_axis_set),
        cmocka_unit_test(test_int64_input_has_no_gradient),
        cmocka_unit_test(test_empty_input_gives_empty_gradient),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
