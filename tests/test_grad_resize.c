/* Backward of Resize and Upsample (nearest, linear, cubic; every
 * coordinate transform; scales and sizes; opset 7 to 13 forms) against
 * central finite differences (t_gradcheck), a hand-computed case and, on
 * tensors of training size, the adjoint identity <g, F(x)> = <B(g), x>. */
#include "core/error.h"
#include "tests/support/gradcheck.h"
#include "tests/support/testutil.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* ---- helpers ------------------------------------------------------------ */

static double worst_seen; /* worst gradcheck error of the binary, printed at the end */

static Tensor *vec_i64(int n, const int64_t *v)
{
    Shape s = shape_of(1, (int64_t)n);
    return t_i64(&s, v);
}

static Tensor *rand_tensor(TRng *r, int rank, const int64_t *dims)
{
    Shape s = shape_make(rank, dims);
    return t_rand(r, &s, -1, 1);
}

static void free_all(Tensor **t, int n)
{
    for (int i = 0; i < n; i++) {
        tensor_free(t[i]);
        t[i] = NULL;
    }
}

/* Runs forward as a training executor does: infer, allocate, then forward
 * itself even for OP_ALIAS ops, with the given training flag and seed. */
static int run_forward(Node *n, int opset, int training, uint64_t seed, Tensor **in, int n_in,
                       Tensor **out, int n_out)
{
    OpCtx c = {.node = n, .opset = opset, .n_in = n_in, .n_out = n_out, .in = in, .out = out,
               .training = training, .seed = seed};
    for (int k = 0; k < n_out; k++)
        out[k] = calloc(1, sizeof(Tensor));
    int rc = n->op->infer(&c);
    for (int k = 0; k < n_out && rc == 0; k++) {
        Shape s = out[k]->shape;
        if (out[k]->dtype != SH_UNDEF)
            rc = tensor_alloc(out[k], out[k]->dtype, &s);
    }
    size_t sb = rc == 0 && n->op->scratch ? n->op->scratch(&c) : 0;
    c.scratch = sb ? aligned_alloc(64, (sb + 63) / 64 * 64) : NULL;
    c.scratch_bytes = sb;
    if (rc == 0)
        rc = n->op->forward(&c);
    free(c.scratch);
    if (rc < 0)
        free_all(out, n_out);
    return rc;
}

/* Calls backward on the forward values in/out with scratch of bwd_scratch bytes. */
static int run_backward(Node *n, int opset, int training, uint64_t seed, Tensor **in, int n_in,
                        Tensor **out, int n_out, Tensor **gout, Tensor **gin)
{
    OpCtx c = {.node = n, .opset = opset, .n_in = n_in, .n_out = n_out, .in = in, .out = out,
               .training = training, .seed = seed};
    size_t sb = n->op->bwd_scratch ? n->op->bwd_scratch(&c) : 0;
    c.scratch = sb ? aligned_alloc(64, (sb + 63) / 64 * 64) : NULL;
    c.scratch_bytes = sb;
    int rc = n->op->backward(&c, gout, gin);
    free(c.scratch);
    return rc;
}

/* Finite-difference check of every float input not in skip; must pass. */
static void gradcheck(const char *label, Node *n, int opset, Tensor **in, int n_in, int n_out,
                      int training, uint32_t skip)
{
    GradCheck o = {.training = training, .seed = 11, .skip = skip, .max_probes = 64};
    double e = t_gradcheck(label, n, opset, in, n_in, n_out, &o);
    if (!(e >= 0 && e <= 1))
        fail_msg("%s: gradcheck error %.3f of tolerance (or failed to run)", label, e);
    worst_seen = e > worst_seen ? e : worst_seen;
}

/* For an op linear in its float inputs, <g, F(x)> = sum_i <B_i(g), x_i>
 * for every g: with random g this checks every element of the backward at
 * once, on tensors of training size. The relative error is printed. */
static void adjoint_check(const char *label, Node *n, int opset, Tensor **in, int n_in, int n_out,
                          int training, uint64_t seed, uint32_t skip)
{
    Tensor *y[4] = {0}, *g[4] = {0}, *gin[8] = {0};
    TRng r;
    trng_seed(&r, 99);
    assert_true(n_out <= 4 && n_in <= 8);
    if (run_forward(n, opset, training, seed, in, n_in, y, n_out) < 0)
        fail_msg("%s: forward failed: %s", label, sh_errmsg());
    double lhs = 0, rhs = 0, mag = 1e-30;
    for (int k = 0; k < n_out; k++)
        if (y[k]->dtype == SH_F32) {
            g[k] = t_rand(&r, &y[k]->shape, -1, 1);
            for (int64_t i = 0; i < y[k]->numel; i++) {
                double p = (double)tensor_f32(g[k])[i] * tensor_f32(y[k])[i];
                lhs += p;
                mag += fabs(p);
            }
        }
    for (int i = 0; i < n_in; i++)
        if (in[i] && in[i]->dtype == SH_F32 && !(skip & (1u << i)))
            gin[i] = tensor_new(SH_F32, &in[i]->shape);
    if (run_backward(n, opset, training, seed, in, n_in, y, n_out, g, gin) < 0)
        fail_msg("%s: backward failed: %s", label, sh_errmsg());
    for (int i = 0; i < n_in; i++)
        for (int64_t j = 0; gin[i] && j < in[i]->numel; j++)
            rhs += (double)tensor_f32(gin[i])[j] * tensor_f32(in[i])[j];
    double err = fabs(lhs - rhs) / mag;
    printf("%s: adjoint relative error %.3g\n", label, err);
    if (!(err < 1e-5))
        fail_msg("%s: <g, F(x)> = %.9g but <B(g), x> = %.9g", label, lhs, rhs);
    free_all(y, 4);
    free_all(g, 4);
    free_all(gin, 8);
}

/* ---- cases ------------------------------------------------------------------ */

typedef struct {
    const char *mode, *coord, *nearest; /* NULL: the default */
    float cubic_a;                      /* 0: the default */
    int exclude_outside;
    float extrapolation;
} Attrs;

static Node *resize_node(const char *op, int n_in, const Attrs *a)
{
    Node *n = t_node(op, n_in, 1);
    node_set_str(n, "mode", a->mode);
    if (a->coord)
        node_set_str(n, "coordinate_transformation_mode", a->coord);
    if (a->nearest)
        node_set_str(n, "nearest_mode", a->nearest);
    if (a->cubic_a != 0)
        node_set_float(n, "cubic_coeff_a", a->cubic_a);
    if (a->exclude_outside)
        node_set_int(n, "exclude_outside", 1);
    if (a->extrapolation != 0)
        node_set_float(n, "extrapolation_value", a->extrapolation);
    return n;
}

/* Resize-11+ with (X, roi, scales, sizes): scales or sizes given (the
 * other omitted), roi only when given. Checks X's gradient by finite
 * differences (small) and the adjoint identity (when the output is linear
 * in X: no nonzero extrapolation). */
static void resize_case(const char *label, TRng *r, int opset, const Attrs *a, int rank,
                        const int64_t *dims, const float *scales, const int64_t *sizes,
                        const float *roi, bool big)
{
    Shape vs = shape_of(1, (int64_t)rank), rs = shape_of(1, (int64_t)(2 * rank));
    Tensor *in[4] = {rand_tensor(r, rank, dims), roi ? t_f32(&rs, roi) : NULL,
                     scales ? t_f32(&vs, scales) : NULL, sizes ? vec_i64(rank, sizes) : NULL};
    Node *n = resize_node("Resize", 4, a);
    if (!big)
        gradcheck(label, n, opset, in, 4, 1, 0, 0xEu);
    if (a->extrapolation == 0)
        adjoint_check(label, n, opset, in, 4, 1, 0, 0, 0xEu);
    free_all(in, 4);
    t_node_free(n);
}

static const int64_t nchw[] = {2, 3, 4, 5}, nchw1[] = {1, 2, 5, 4};
static const float up2[] = {1, 1, 2, 2}, odd[] = {1, 1, 1.7f, 0.6f}, down[] = {1, 1, 0.5f, 0.75f};

static void test_resize_nearest_gradient_adds_to_source_pixel(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 1);
    const char *coords[] = {"half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric",
                            "tf_half_pixel_for_nn"};
    const char *nearests[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
    for (int ci = 0; ci < 5; ci++)
        for (int ni = 0; ni < 4; ni++) {
            Attrs a = {.mode = "nearest", .coord = coords[ci], .nearest = nearests[ni]};
            char label[128];
            snprintf(label, sizeof label, "Resize nearest %s %s x1.7,0.6", coords[ci], nearests[ni]);
            resize_case(label, &r, 13, &a, 4, nchw, odd, NULL, NULL, false);
        }
    Attrs a = {.mode = "nearest"};
    resize_case("Resize nearest x2, batch 1", &r, 13, &a, 4, nchw1, up2, NULL, NULL, false);
    resize_case("Resize nearest downsample", &r, 11, &a, 4, nchw, down, NULL, NULL, false);
    resize_case("Resize nearest sizes", &r, 13, &a, 4, nchw, NULL,
                (const int64_t[]){2, 3, 7, 3}, NULL, false);
    int64_t big[] = {8, 16, 28, 28};
    resize_case("Resize nearest x2 big", &r, 13, &a, 4, big, up2, NULL, NULL, true);
}

static void test_resize_linear_gradient_uses_forward_weights(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 2);
    const char *coords[] = {"half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"};
    for (int ci = 0; ci < 4; ci++) {
        Attrs a = {.mode = "linear", .coord = coords[ci]};
        char label[128];
        snprintf(label, sizeof label, "Resize linear %s x2", coords[ci]);
        resize_case(label, &r, 13, &a, 4, nchw, up2, NULL, NULL, false);
        snprintf(label, sizeof label, "Resize linear %s x1.7,0.6 batch 1", coords[ci]);
        resize_case(label, &r, 13, &a, 4, nchw1, odd, NULL, NULL, false);
        snprintf(label, sizeof label, "Resize linear %s sizes", coords[ci]);
        resize_case(label, &r, 13, &a, 4, nchw, NULL, (const int64_t[]){2, 3, 3, 8}, NULL, false);
    }
    /* Every axis resized: four passes through the scratch buffers. */
    Attrs a = {.mode = "linear"};
    resize_case("Resize linear every axis", &r, 13, &a, 4, nchw, (const float[]){2, 1.5f, 0.5f, 2},
                NULL, NULL, false);
    resize_case("Resize linear rank 3", &r, 13, &a, 3, (const int64_t[]){2, 3, 4},
                (const float[]){1, 2.5f, 1.5f}, NULL, NULL, false);
    resize_case("Resize linear rank 1", &r, 13, &a, 1, (const int64_t[]){6}, (const float[]){1.5f},
                NULL, NULL, false);
    /* Identity axes only: the gradient passes through. */
    resize_case("Resize linear identity", &r, 13, &a, 4, nchw, (const float[]){1, 1, 1, 1}, NULL,
                NULL, false);
    int64_t big[] = {8, 16, 28, 28};
    resize_case("Resize linear x2 big", &r, 13, &a, 4, big, up2, NULL, NULL, true);
}

/* Outside the roi the output is the extrapolation value, a constant: no
 * gradient flows there. */
static void test_resize_tf_crop_and_resize_gradient_skips_extrapolated(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 3);
    const float roi[] = {0, 0, -0.2f, 0.3f, 1, 1, 0.8f, 1.4f};
    const char *modes[] = {"nearest", "linear", "cubic"};
    for (int m = 0; m < 3; m++)
        for (int e = 0; e < 2; e++) {
            Attrs a = {.mode = modes[m], .coord = "tf_crop_and_resize", .extrapolation = e ? 10.0f : 0};
            char label[128];
            snprintf(label, sizeof label, "Resize %s tf_crop_and_resize extrapolation %g", modes[m],
                     (double)a.extrapolation);
            resize_case(label, &r, 13, &a, 4, nchw, NULL, (const int64_t[]){2, 3, 5, 6}, roi, false);
        }
}

static void test_resize_cubic_gradient_uses_forward_weights(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 4);
    const Attrs cases[] = {
        {.mode = "cubic"},
        {.mode = "cubic", .cubic_a = -0.5f, .exclude_outside = 1},
        {.mode = "cubic", .coord = "align_corners"},
        {.mode = "cubic", .coord = "asymmetric"},
        {.mode = "cubic", .coord = "pytorch_half_pixel", .cubic_a = -0.5f, .exclude_outside = 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char label[128];
        snprintf(label, sizeof label, "Resize cubic case %zu x2", i);
        resize_case(label, &r, 13, &cases[i], 4, nchw, up2, NULL, NULL, false);
        snprintf(label, sizeof label, "Resize cubic case %zu x1.7,0.6 batch 1", i);
        resize_case(label, &r, 13, &cases[i], 4, nchw1, odd, NULL, NULL, false);
        snprintf(label, sizeof label, "Resize cubic case %zu downsample", i);
        resize_case(label, &r, 13, &cases[i], 4, nchw, down, NULL, NULL, false);
    }
    int64_t big[] = {4, 16, 28, 28};
    resize_case("Resize cubic x2 big", &r, 13, &cases[0], 4, big, up2, NULL, NULL, true);
}

/* Upsample (opset 7 attribute, 9 input) and Resize-10 take (X, scales) and
 * the asymmetric transform. */
static void test_upsample_and_resize10_gradients(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 5);
    Shape vs = shape_of(1, (int64_t)4);
    const char *modes[] = {"nearest", "linear"};
    for (int m = 0; m < 2; m++) {
        Attrs a = {.mode = modes[m]};
        char label[96];
        Tensor *in[2] = {rand_tensor(&r, 4, nchw), t_f32(&vs, odd)};
        Node *n = resize_node("Upsample", 2, &a);
        snprintf(label, sizeof label, "Upsample opset 9 %s", modes[m]);
        gradcheck(label, n, 9, in, 2, 1, 0, 1u << 1);
        adjoint_check(label, n, 9, in, 2, 1, 0, 0, 1u << 1);
        t_node_free(n);
        n = resize_node("Resize", 2, &a);
        snprintf(label, sizeof label, "Resize opset 10 %s", modes[m]);
        gradcheck(label, n, 10, in, 2, 1, 0, 1u << 1);
        adjoint_check(label, n, 10, in, 2, 1, 0, 0, 1u << 1);
        t_node_free(n);
        n = resize_node("Upsample", 1, &(Attrs){.mode = m ? "bilinear" : "nearest"});
        node_set_floats(n, "scales", up2, 4);
        snprintf(label, sizeof label, "Upsample opset 7 %s", m ? "bilinear" : "nearest");
        gradcheck(label, n, 7, in, 1, 1, 0, 0);
        t_node_free(n);
        free_all(in, 2);
    }
}

/* Hand-computed: 2x nearest upsampling of [a, b] gives [a, a, b, b], so
 * each input gets the sum of its two copies' gradients, added to gin. */
static void test_resize_nearest_x2_hand_values(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)2), vs = shape_of(1, (int64_t)1);
    Tensor *in[4] = {t_f32(&s, (const float[]){1, 2}), NULL, t_f32(&vs, (const float[]){2}), NULL};
    Node *n = resize_node("Resize", 4, &(Attrs){.mode = "nearest", .coord = "asymmetric",
                                                .nearest = "floor"});
    Tensor *y = NULL;
    assert_int_equal(t_run(n, 13, in, 4, &y, 1), 0);
    Tensor *gout = t_f32(&y->shape, (const float[]){1, 10, 100, 1000});
    Tensor *gin[4] = {t_f32(&s, (const float[]){0.5f, 0.5f}), NULL, NULL, NULL};
    assert_int_equal(run_backward(n, 13, 0, 0, in, 4, &y, 1, &gout, gin), 0);
    assert_true(tensor_f32(gin[0])[0] == 11.5f && tensor_f32(gin[0])[1] == 1100.5f);
    free_all((Tensor *[]){in[0], in[2], y, gout, gin[0]}, 5);
    t_node_free(n);
}

static int print_worst(void **state)
{
    (void)state;
    printf("worst gradcheck error: %.3f of tolerance\n", worst_seen);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resize_nearest_gradient_adds_to_source_pixel),
        cmocka_unit_test(test_resize_linear_gradient_uses_forward_weights),
        cmocka_unit_test(test_resize_tf_crop_and_resize_gradient_skips_extrapolated),
        cmocka_unit_test(test_resize_cubic_gradient_uses_forward_weights),
        cmocka_unit_test(test_upsample_and_resize10_gradients),
        cmocka_unit_test(test_resize_nearest_x2_hand_values),
    };
    return cmocka_run_group_tests(tests, NULL, print_worst);
}
