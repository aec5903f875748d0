/* Backward of the unary activations, Clip and PRelu against central finite
 * differences (t_gradcheck), over random shapes including batch 1, with
 * inputs kept away from kinks so the difference quotient is meaningful. */
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

/* A random shape of rank 1..4 with dims 1..5; the first dim is 1 (batch 1)
 * every third draw. */
static Shape random_shape(TRng *r, int draw)
{
    Shape s = {.rank = (int)trng_int(r, 1, 4)};
    for (int i = 0; i < s.rank; i++)
        s.d[i] = trng_int(r, 1, 5);
    if (draw % 3 == 0)
        s.d[0] = 1;
    return s;
}

/* Moves every element closer than margin to a kink to kink +- margin. */
static void avoid_kinks(Tensor *t, const float *kinks, int n_kinks, float margin)
{
    for (int64_t i = 0; i < t->numel; i++)
        for (int k = 0; k < n_kinks; k++) {
            float *v = &tensor_f32(t)[i];
            if (fabsf(*v - kinks[k]) < margin)
                *v = *v < kinks[k] ? kinks[k] - margin : kinks[k] + margin;
        }
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

/* Runs forward, then backward with the given output gradient into gin. */
static int run_backward(Node *n, int opset, Tensor **in, int n_in, Tensor **gout, Tensor **gin)
{
    Tensor *y = NULL;
    int rc = t_run(n, opset, in, n_in, &y, 1);
    if (rc < 0)
        return rc;
    OpCtx c = {.node = n, .opset = opset, .n_in = n_in, .n_out = 1, .in = in, .out = &y};
    size_t sb = n->op->bwd_scratch ? n->op->bwd_scratch(&c) : 0;
    c.scratch = sb ? aligned_alloc(64, (sb + 63) / 64 * 64) : NULL;
    c.scratch_bytes = sb;
    rc = n->op->backward(&c, gout, gin);
    free(c.scratch);
    tensor_free(y);
    return rc;
}

/* ---- unary ops ---------------------------------------------------------- */

typedef struct {
    const char *op;
    float lo, hi;     /* inputs drawn from the op's smooth domain */
    float kinks[2];   /* non-differentiable points to stay away from */
    int n_kinks;
    const char *attr; /* optional float attribute set to attr_value */
    float attr_value;
} GradCase;

static const GradCase grad_cases[] = {
    {"Relu", -3, 3, {0}, 1, NULL, 0},
    {"LeakyRelu", -3, 3, {0}, 1, NULL, 0},
    {"LeakyRelu", -3, 3, {0}, 1, "alpha", 0.2f},
    {"Elu", -3, 3, {0}, 1, NULL, 0},
    {"Elu", -3, 3, {0}, 1, "alpha", 0.5f},
    {"Selu", -3, 3, {0}, 1, NULL, 0},
    {"Selu", -3, 3, {0}, 1, "gamma", 2.0f},
    {"Celu", -3, 3, {0}, 1, NULL, 0},
    {"Celu", -3, 3, {0}, 1, "alpha", 2.0f},
    {"Sigmoid", -6, 6, {0}, 0, NULL, 0},
    {"HardSigmoid", -4, 4, {-2.5f, 2.5f}, 2, NULL, 0},
    {"HardSigmoid", -4, 4, {-1.0f, 1.0f}, 2, "alpha", 0.5f},
    {"HardSwish", -5, 5, {-3, 3}, 2, NULL, 0},
    {"Tanh", -3, 3, {0}, 0, NULL, 0},
    {"Softplus", -6, 6, {0}, 0, NULL, 0},
    {"Softsign", -4, 4, {0}, 1, NULL, 0},
    {"Erf", -2.5f, 2.5f, {0}, 0, NULL, 0},
    {"Gelu", -4, 4, {0}, 0, NULL, 0},
    {"Sqrt", 0.2f, 5, {0}, 0, NULL, 0},
    {"Reciprocal", 0.3f, 3, {0}, 0, NULL, 0},
    {"Reciprocal", -3, -0.3f, {0}, 0, NULL, 0},
    {"Exp", -3, 3, {0}, 0, NULL, 0},
    {"Log", 0.2f, 5, {0}, 0, NULL, 0},
    {"Sin", -4, 4, {0}, 0, NULL, 0},
    {"Cos", -4, 4, {0}, 0, NULL, 0},
    {"Tan", -1.1f, 1.1f, {0}, 0, NULL, 0},
    {"Asin", -0.85f, 0.85f, {0}, 0, NULL, 0},
    {"Acos", -0.85f, 0.85f, {0}, 0, NULL, 0},
    {"Atan", -3, 3, {0}, 0, NULL, 0},
    {"Sinh", -3, 3, {0}, 0, NULL, 0},
    {"Cosh", -3, 3, {0}, 0, NULL, 0},
    {"Asinh", -3, 3, {0}, 0, NULL, 0},
    {"Acosh", 1.3f, 4, {0}, 0, NULL, 0},
    {"Atanh", -0.85f, 0.85f, {0}, 0, NULL, 0},
    {"ThresholdedRelu", -3, 3, {1}, 1, NULL, 0},
    {"Shrink", -3, 3, {-0.5f, 0.5f}, 2, NULL, 0},
    {"Shrink", -3, 3, {-1, 1}, 2, "lambd", 1.0f},
    {"Neg", -3, 3, {0}, 0, NULL, 0},
    {"Abs", -3, 3, {0}, 1, NULL, 0},
};

static void test_unary_gradients_match_finite_differences(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 11);
    double worst = 0;
    for (size_t k = 0; k < sizeof grad_cases / sizeof *grad_cases; k++) {
        const GradCase *gc = &grad_cases[k];
        for (int draw = 0; draw < 3; draw++) {
            Shape s = random_shape(&r, draw);
            Tensor *x = t_rand(&r, &s, gc->lo, gc->hi);
            avoid_kinks(x, gc->kinks, gc->n_kinks, 0.05f);
            Node *n = t_node(gc->op, 1, 1);
            if (gc->attr)
                node_set_float(n, gc->attr, gc->attr_value);
            char label[96];
            char ss[64];
            snprintf(label, sizeof label, "%s%s%s %s", gc->op, gc->attr ? " " : "",
                     gc->attr ? gc->attr : "", shape_str(&s, ss, sizeof ss));
            GradCheck opt = {.seed = k * 7 + (uint64_t)draw};
            check_grad(label, n, 17, &x, 1, &opt, &worst);
            t_node_free(n);
            tensor_free(x);
        }
    }
    printf("unary ops: worst error %.3f of tolerance\n", worst);
}

static void test_gelu_gradient_for_exact_and_tanh_forms(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 12);
    double worst = 0;
    const char *forms[] = {"none", "tanh"};
    for (int f = 0; f < 2; f++)
        for (int draw = 0; draw < 3; draw++) {
            Shape s = random_shape(&r, draw);
            Tensor *x = t_rand(&r, &s, -5, 5);
            Node *n = t_node("Gelu", 1, 1);
            node_set_str(n, "approximate", forms[f]);
            char label[64];
            snprintf(label, sizeof label, "Gelu approximate=%s", forms[f]);
            GradCheck opt = {.seed = 100u + (uint64_t)(f * 3 + draw)};
            check_grad(label, n, 17, &x, 1, &opt, &worst);
            t_node_free(n);
            tensor_free(x);
        }
    printf("Gelu: worst error %.3f of tolerance\n", worst);
}

/* Hand values at and around the kinks: the side the forward takes. */
static void test_kinks_take_the_forward_side(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)3);
    Tensor *x = t_f32(&s, (float[]){-1, 0, 2});
    Tensor *g = t_f32(&s, (float[]){1, 1, 1});
    struct {
        const char *op;
        float want[3];
    } cases[] = {
        {"Relu", {0, 0, 1}},
        {"LeakyRelu", {0.01f, 1, 1}},
        {"Abs", {-1, 0, 1}},
        {"HardSwish", {1.0f / 6.0f, 0.5f, 2.0f / 3.0f + 0.5f}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        Node *n = t_node(cases[k].op, 1, 1);
        Tensor *gx = tensor_new(SH_F32, &s);
        assert_int_equal(run_backward(n, 17, &x, 1, &g, &gx), 0);
        for (int i = 0; i < 3; i++)
            if (fabsf(tensor_f32(gx)[i] - cases[k].want[i]) > 1e-6f)
                fail_msg("%s'(%g) = %g, want %g", cases[k].op, tensor_f32(x)[i],
                         tensor_f32(gx)[i], cases[k].want[i]);
        tensor_free(gx);
        t_node_free(n);
    }
    tensor_free(x);
    tensor_free(g);
}

/* A NULL output gradient (no gradient flows) leaves gin untouched. */
static void test_null_output_gradient_adds_nothing(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)4);
    Tensor *x = t_f32(&s, (float[]){-1, 0.5f, 2, 3});
    Tensor *gx = t_f32(&s, (float[]){1, 2, 3, 4});
    Tensor *gout = NULL;
    const char *ops[] = {"Relu", "Sigmoid", "Gelu", "Clip"};
    for (int k = 0; k < 4; k++) {
        Node *n = t_node(ops[k], 1, 1);
        assert_int_equal(run_backward(n, 17, &x, 1, &gout, &gx), 0);
        for (int i = 0; i < 4; i++)
            assert_float_equal(tensor_f32(gx)[i], (float)(i + 1), 0);
        t_node_free(n);
    }
    tensor_free(x);
    tensor_free(gx);
}

static void test_int64_inputs_have_no_gradient(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)3);
    Tensor *x = t_i64(&s, (int64_t[]){-1, 0, 2});
    Tensor *gx = tensor_new(SH_F32, &s), *g = t_f32(&s, (float[]){1, 1, 1});
    const char *ops[] = {"Neg", "Abs", "Clip"};
    for (int k = 0; k < 3; k++) {
        Node *n = t_node(ops[k], 1, 1);
        assert_int_equal(run_backward(n, 17, &x, 1, &g, &gx), SH_E_UNSUPPORTED);
        printf("%s int64: %s\n", ops[k], sh_errmsg());
        assert_non_null(strstr(sh_errmsg(), "int64"));
        t_node_free(n);
    }
    tensor_free(x);
    tensor_free(gx);
    tensor_free(g);
}

/* Ops whose backward reads only the output give the same gradient when
 * the input was overwritten by an in-place forward. */
static void test_output_only_gradients_survive_in_place_forward(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 16);
    Shape s = shape_of(2, (int64_t)3, (int64_t)9);
    const char *ops[] = {"Relu", "HardSigmoid", "Sigmoid", "Tanh", "Tan", "Exp", "Sqrt",
                         "Reciprocal", "Neg"};
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++) {
        Tensor *x = t_rand(&r, &s, 0.2f, 1.2f), *g = t_rand(&r, &s, -1, 1), *y = NULL;
        int positive_only = !strcmp(ops[k], "Sqrt");
        for (int64_t i = 0; !positive_only && i < x->numel; i += 2)
            tensor_f32(x)[i] = -tensor_f32(x)[i];
        tensor_f32(x)[1] = positive_only ? 2.9f : -2.9f; /* HardSigmoid's flat sides */
        tensor_f32(x)[3] = 2.9f;
        Node *n = t_node(ops[k], 1, 1);
        assert_int_equal(t_run(n, 17, &x, 1, &y, 1), 0);
        Tensor *a = tensor_new(SH_F32, &s), *b = tensor_new(SH_F32, &s);
        OpCtx c = {.node = n, .opset = 17, .n_in = 1, .n_out = 1, .in = &x, .out = &y};
        assert_int_equal(n->op->backward(&c, &g, &a), 0);
        memcpy(x->data, y->data, tensor_bytes(y)); /* what an in-place forward leaves */
        assert_int_equal(n->op->backward(&c, &g, &b), 0);
        char label[64];
        snprintf(label, sizeof label, "%s with the input overwritten by the output", ops[k]);
        assert_true(t_max_diff(label, a, b) == 0);
        t_node_free(n);
        tensor_free(x);
        tensor_free(y);
        tensor_free(g);
        tensor_free(a);
        tensor_free(b);
    }
}

/* ---- Clip ---------------------------------------------------------------- */

/* Bounds as attributes (opset 6), as inputs (11, 13), one-sided and absent;
 * the gradient passes inside the bounds only and the bounds get none. */
static void test_clip_gradient_passes_inside_bounds_in_every_opset_form(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 13);
    double worst = 0;
    Shape one = {.rank = 0};
    struct {
        int opset, has_lo, has_hi;
    } forms[] = {{6, 1, 1}, {6, 0, 1}, {6, 0, 0}, {11, 1, 1}, {11, 1, 0}, {13, 0, 1}, {13, 0, 0}};
    const float lo = -0.7f, hi = 1.2f;
    for (size_t f = 0; f < sizeof forms / sizeof *forms; f++)
        for (int draw = 0; draw < 2; draw++) {
            Shape s = random_shape(&r, draw);
            Tensor *x = t_rand(&r, &s, -2, 2);
            float kinks[2] = {lo, hi};
            avoid_kinks(x, kinks, 2, 0.05f);
            int n_in = forms[f].opset < 11 ? 1 : 3;
            Node *n = t_node("Clip", n_in, 1);
            Tensor *in[3] = {x, NULL, NULL};
            if (forms[f].opset < 11) {
                if (forms[f].has_lo)
                    node_set_float(n, "min", lo);
                if (forms[f].has_hi)
                    node_set_float(n, "max", hi);
            } else {
                in[1] = forms[f].has_lo ? t_f32(&one, &lo) : NULL;
                in[2] = forms[f].has_hi ? t_f32(&one, &hi) : NULL;
            }
            char label[64];
            snprintf(label, sizeof label, "Clip opset %d min %d max %d", forms[f].opset,
                     forms[f].has_lo, forms[f].has_hi);
            GradCheck opt = {.seed = 200u + f * 2 + (uint64_t)draw, .skip = 6u};
            check_grad(label, n, forms[f].opset, in, n_in, &opt, &worst);
            t_node_free(n);
            for (int i = 0; i < 3; i++)
                tensor_free(in[i]);
        }
    printf("Clip: worst error %.3f of tolerance\n", worst);
}

/* ---- PRelu --------------------------------------------------------------- */

/* dL/dx and dL/dslope by index arithmetic in double, for any slope that
 * broadcasts to x (the reference the fast paths are held to). */
static void prelu_grad_reference(const Tensor *x, const Tensor *slope, const Tensor *g,
                                 double *gx, double *ga, int legacy)
{
    const Shape *xs = &x->shape, *ss = &slope->shape;
    int off = xs->rank - ss->rank;
    for (int64_t i = 0; i < x->numel; i++) {
        int64_t si = 0;
        if (legacy) {
            si = (i / shape_prod(xs, 2, xs->rank)) % xs->d[1];
        } else {
            int64_t rem = i, stride = 1;
            for (int d = xs->rank - 1; d >= 0; d--) {
                int64_t idx = rem % xs->d[d];
                rem /= xs->d[d];
                if (d >= off) {
                    si += (ss->d[d - off] == 1 ? 0 : idx) * stride;
                    stride *= ss->d[d - off];
                }
            }
        }
        double v = tensor_f32(x)[i], d = tensor_f32(g)[i];
        gx[i] = v >= 0 ? d : tensor_f32(slope)[si] * d;
        if (v < 0)
            ga[si] += d * v;
    }
}

typedef struct {
    Shape x, slope;
    int opset, legacy;
} PreluCase;

static const PreluCase prelu_cases[] = {
    {{4, {2, 3, 4, 5}}, {3, {3, 1, 1}}, 17, 0}, /* per channel, NCHW */
    {{4, {1, 4, 3, 3}}, {3, {4, 1, 1}}, 17, 0}, /* batch 1 */
    {{3, {2, 3, 6}}, {1, {6}}, 17, 0},          /* last axis ([N,T,C]) */
    {{3, {2, 3, 6}}, {1, {1}}, 17, 0},          /* one shared slope */
    {{3, {2, 3, 6}}, {3, {2, 3, 6}}, 17, 0},    /* elementwise */
    {{4, {2, 3, 4, 5}}, {3, {3, 1, 5}}, 17, 0}, /* non-contiguous: naive path */
    {{4, {2, 3, 4, 5}}, {1, {3}}, 6, 1},        /* legacy channel slope */
};

static void test_prelu_gradients_for_input_and_slope(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 14);
    double worst = 0;
    for (size_t k = 0; k < sizeof prelu_cases / sizeof *prelu_cases; k++) {
        const PreluCase *pc = &prelu_cases[k];
        Tensor *in[2] = {t_rand(&r, &pc->x, -2, 2), t_rand(&r, &pc->slope, 0.1f, 0.5f)};
        float kink = 0;
        avoid_kinks(in[0], &kink, 1, 0.05f);
        Node *n = t_node("PRelu", 2, 1);
        char label[96], sx[64], ss[64];
        snprintf(label, sizeof label, "PRelu x %s slope %s", shape_str(&pc->x, sx, sizeof sx),
                 shape_str(&pc->slope, ss, sizeof ss));
        GradCheck opt = {.seed = 300u + k, .max_probes = 64};
        check_grad(label, n, pc->opset, in, 2, &opt, &worst);
        t_node_free(n);
        tensor_free(in[0]);
        tensor_free(in[1]);
    }
    printf("PRelu: worst error %.3f of tolerance\n", worst);
}

/* Every slope layout's fast path against the double reference on larger
 * tensors (slope sums over hundreds of elements). */
static void test_prelu_gradient_matches_naive_reference(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 15);
    for (size_t k = 0; k < sizeof prelu_cases / sizeof *prelu_cases; k++) {
        const PreluCase *pc = &prelu_cases[k];
        Shape xs = pc->x;
        xs.d[xs.rank - 1] *= 8; /* longer rows */
        Shape sl = pc->slope;
        if (!pc->legacy && sl.d[sl.rank - 1] != 1)
            sl.d[sl.rank - 1] = xs.d[xs.rank - 1];
        Tensor *in[2] = {t_rand(&r, &xs, -2, 2), t_rand(&r, &sl, 0.1f, 0.5f)};
        Tensor *g = t_rand(&r, &xs, -1, 1);
        Tensor *gin[2] = {tensor_new(SH_F32, &xs), tensor_new(SH_F32, &sl)};
        Node *n = t_node("PRelu", 2, 1);
        assert_int_equal(run_backward(n, pc->opset, in, 2, &g, gin), 0);
        double *gx = calloc((size_t)in[0]->numel, sizeof *gx);
        double *ga = calloc((size_t)in[1]->numel, sizeof *ga);
        prelu_grad_reference(in[0], in[1], g, gx, ga, pc->legacy);
        double dx = 0, da = 0, scale = 1;
        for (int64_t i = 0; i < in[0]->numel; i++)
            dx = fmax(dx, fabs(tensor_f32(gin[0])[i] - gx[i]));
        for (int64_t i = 0; i < in[1]->numel; i++) {
            da = fmax(da, fabs(tensor_f32(gin[1])[i] - ga[i]));
            scale = fmax(scale, fabs(ga[i]));
        }
        char sx[64], ss[64];
        printf("PRelu x %s slope %s vs reference: max abs diff dx %.3g, dslope %.3g (of %.3g)\n",
               shape_str(&xs, sx, sizeof sx), shape_str(&sl, ss, sizeof ss), dx, da, scale);
        assert_true(dx <= 1e-6);
        assert_true(da <= 1e-5 * scale);
        free(gx);
        free(ga);
        t_node_free(n);
        tensor_free(in[0]);
        tensor_free(in[1]);
        tensor_free(g);
        tensor_free(gin[0]);
        tensor_free(gin[1]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary_gradients_match_finite_differences),
        cmocka_unit_test(test_gelu_gradient_for_exact_and_tanh_forms),
        cmocka_unit_test(test_kinks_take_the_forward_side),
        cmocka_unit_test(test_null_output_gradient_adds_nothing),
        cmocka_unit_test(test_int64_inputs_have_no_gradient),
        cmocka_unit_test(test_output_only_gradients_survive_in_place_forward),
        cmocka_unit_test(test_clip_gradient_passes_inside_bounds_in_every_opset_form),
        cmocka_unit_test(test_prelu_gradients_for_input_and_slope),
        cmocka_unit_test(test_prelu_gradient_matches_naive_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
