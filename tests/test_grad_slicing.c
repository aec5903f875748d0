/* Backward of the slicing ops (Concat, Split, Slice, Gather,
 * GatherElements, Pad, DepthToSpace, SpaceToDepth) against central finite
 * differences (t_gradcheck), hand-computed folds and accumulations, and, on
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

/* ---- Concat, Split ------------------------------------------------------ */

static void test_concat_gradient_slices_to_each_input(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 1);
    static const struct {
        int axis;
        int64_t a[4], b[4], c[4];
    } cases[] = {
        {1, {2, 3, 4, 2}, {2, 1, 4, 2}, {2, 5, 4, 2}},
        {0, {1, 3, 2, 2}, {2, 3, 2, 2}, {1, 3, 2, 2}},
        {-1, {2, 3, 2, 1}, {2, 3, 2, 4}, {2, 3, 2, 0}}, /* an empty input */
        {3, {1, 1, 1, 3}, {1, 1, 1, 2}, {1, 1, 1, 1}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        Tensor *in[3] = {rand_tensor(&r, 4, cases[i].a), rand_tensor(&r, 4, cases[i].b),
                         rand_tensor(&r, 4, cases[i].c)};
        Node *n = t_node("Concat", 3, 1);
        node_set_int(n, "axis", cases[i].axis);
        char label[64];
        snprintf(label, sizeof label, "Concat axis %d", cases[i].axis);
        gradcheck(label, n, 13, in, 3, 1, 0, 0);
        adjoint_check(label, n, 13, in, 3, 1, 0, 0, 0);
        /* An input the trainer does not want (gin NULL) is skipped. */
        snprintf(label, sizeof label, "Concat axis %d without input 1", cases[i].axis);
        gradcheck(label, n, 13, in, 3, 1, 0, 1u << 1);
        free_all(in, 3);
        t_node_free(n);
    }
    int64_t big_a[] = {16, 64, 14, 14}, big_b[] = {16, 32, 14, 14};
    Tensor *in[2] = {rand_tensor(&r, 4, big_a), rand_tensor(&r, 4, big_b)};
    Node *n = t_node("Concat", 2, 1);
    node_set_int(n, "axis", 1);
    adjoint_check("Concat big", n, 13, in, 2, 1, 0, 0, 0);
    free_all(in, 2);
    t_node_free(n);
}

static void test_split_gradient_fills_each_part(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 2);
    int64_t d[] = {2, 6, 3}, db[] = {1, 7, 2};
    Tensor *x = rand_tensor(&r, 3, d), *xb = rand_tensor(&r, 3, db);
    Node *eq = t_node("Split", 1, 3);
    node_set_int(eq, "axis", 1);
    gradcheck("Split equal parts", eq, 13, &x, 1, 3, 0, 0);
    adjoint_check("Split equal parts", eq, 13, &x, 1, 3, 0, 0, 0);
    Node *attr = t_node("Split", 1, 3);
    node_set_int(attr, "axis", -2);
    node_set_ints(attr, "split", (const int64_t[]){2, 0, 5}, 3);
    gradcheck("Split attribute opset 11, batch 1", attr, 11, &xb, 1, 3, 0, 0);
    Node *inp = t_node("Split", 2, 2);
    node_set_int(inp, "axis", 2);
    Tensor *in[2] = {x, vec_i64(2, (const int64_t[]){1, 2})};
    gradcheck("Split input opset 13 axis 2", inp, 13, in, 2, 2, 0, 0);
    free_all((Tensor *[]){in[1], xb}, 2);
    t_node_free(eq);
    t_node_free(attr);
    t_node_free(inp);
    /* An output without a gradient leaves its part of gin as it was. */
    Node *n = t_node("Split", 1, 3);
    node_set_int(n, "axis", 1);
    Tensor *y[3] = {NULL, NULL, NULL};
    assert_int_equal(t_run(n, 13, &x, 1, y, 3), 0);
    Tensor *g0 = t_rand(&r, &y[0]->shape, -1, 1), *g2 = t_rand(&r, &y[2]->shape, -1, 1);
    Tensor *gin = tensor_new(SH_F32, &x->shape);
    assert_int_equal(run_backward(n, 13, 0, 0, &x, 1, y, 3, (Tensor *[]){g0, NULL, g2}, &gin), 0);
    for (int64_t o = 0; o < 2; o++)
        for (int64_t c = 0; c < 6; c++)
            for (int64_t k = 0; k < 3; k++) {
                float got = tensor_f32(gin)[(o * 6 + c) * 3 + k];
                float want = c < 2   ? tensor_f32(g0)[(o * 2 + c) * 3 + k]
                             : c < 4 ? 0.0f
                                     : tensor_f32(g2)[(o * 2 + c - 4) * 3 + k];
                assert_true(got == want);
            }
    free_all((Tensor *[]){x, y[0], y[1], y[2], g0, g2, gin}, 7);
    t_node_free(n);
}

/* ---- Slice ---------------------------------------------------------------- */

/* Slice from opset 10: starts, ends, axes, steps as inputs (NULL: omitted). */
static void slice_case(const char *label, TRng *r, int rank, const int64_t *dims, int k,
                       const int64_t *starts, const int64_t *ends, const int64_t *axes,
                       const int64_t *steps, bool big)
{
    Tensor *in[5] = {rand_tensor(r, rank, dims), vec_i64(k, starts), vec_i64(k, ends),
                     axes ? vec_i64(k, axes) : NULL, steps ? vec_i64(k, steps) : NULL};
    Node *n = t_node("Slice", 5, 1);
    if (!big)
        gradcheck(label, n, 13, in, 5, 1, 0, 0);
    adjoint_check(label, n, 13, in, 5, 1, 0, 0, 0);
    free_all(in, 5);
    t_node_free(n);
}

static void test_slice_gradient_scatters_into_region(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 3);
    int64_t d[] = {3, 4, 5}, d1[] = {1, 6, 7};
    slice_case("Slice inner range", &r, 3, d, 1, (const int64_t[]){1}, (const int64_t[]){4},
               (const int64_t[]){2}, NULL, false);
    slice_case("Slice two axes, step 2", &r, 3, d, 2, (const int64_t[]){0, 1},
               (const int64_t[]){100, -1}, (const int64_t[]){-1, 0}, (const int64_t[]){2, 1}, false);
    slice_case("Slice negative steps", &r, 3, d, 2, (const int64_t[]){-1, 3},
               (const int64_t[]){INT64_MIN, 0}, (const int64_t[]){2, 1}, (const int64_t[]){-2, -1},
               false);
    slice_case("Slice reverse all, batch 1", &r, 3, d1, 3, (const int64_t[]){-1, -1, -1},
               (const int64_t[]){-100, -100, -100}, NULL, (const int64_t[]){-1, -3, -2}, false);
    slice_case("Slice empty", &r, 3, d, 1, (const int64_t[]){4}, (const int64_t[]){2},
               (const int64_t[]){1}, NULL, false);
    int64_t big[] = {16, 64, 28, 28};
    slice_case("Slice big crop", &r, 4, big, 2, (const int64_t[]){2, 3}, (const int64_t[]){26, 27},
               (const int64_t[]){2, 3}, NULL, true);
    slice_case("Slice big strided", &r, 4, big, 3, (const int64_t[]){1, 27, 0},
               (const int64_t[]){60, 0, 28}, (const int64_t[]){1, 2, 3}, (const int64_t[]){3, -2, 2},
               true);
    /* Before opset 10: attributes. */
    Tensor *x = rand_tensor(&r, 3, d);
    Node *n = t_node("Slice", 1, 1);
    node_set_ints(n, "starts", (const int64_t[]){1, 0}, 2);
    node_set_ints(n, "ends", (const int64_t[]){3, -1}, 2);
    gradcheck("Slice opset 9 attributes", n, 9, &x, 1, 1, 0, 0);
    tensor_free(x);
    t_node_free(n);
}

/* ---- Gather, GatherElements ---------------------------------------------- */

/* Hand-computed: gathering row 0 three times adds three gradients to it. */
static void test_gather_repeated_indices_accumulate(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)3, (int64_t)2), is = shape_of(1, (int64_t)4);
    Tensor *in[2] = {t_f32(&s, (const float[]){0, 0, 0, 0, 0, 0}),
                     t_i64(&is, (const int64_t[]){0, 2, -3, 0})};
    Tensor *y = NULL;
    Node *n = t_node("Gather", 2, 1);
    assert_int_equal(t_run(n, 13, in, 2, &y, 1), 0);
    Tensor *gout = t_f32(&y->shape, (const float[]){1, 2, 10, 20, 100, 200, 1000, 2000});
    Tensor *gin[2] = {t_f32(&s, (const float[]){0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f}), NULL};
    assert_int_equal(run_backward(n, 13, 0, 0, in, 2, &y, 1, &gout, gin), 0);
    const float want[] = {1101.5f, 2202.5f, 0.5f, 0.5f, 10.5f, 20.5f};
    for (int i = 0; i < 6; i++)
        assert_true(tensor_f32(gin[0])[i] == want[i]);
    free_all((Tensor *[]){in[0], in[1], y, gout, gin[0]}, 5);
    t_node_free(n);
}

static void test_gather_gradient_matches_finite_difference(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 4);
    static const struct {
        int axis, rank_i;
        int64_t dims[3], idims[2], idx[6];
    } cases[] = {
        {0, 2, {5, 4, 3}, {2, 3}, {0, 4, 4, -1, 2, 0}}, /* embedding-like, repeats */
        {1, 1, {2, 4, 3}, {3, 0}, {3, -4, 3}},
        {2, 0, {1, 4, 3}, {0, 0}, {-1}},               /* scalar index, batch 1 */
        {-1, 2, {2, 3, 5}, {1, 2}, {4, 0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        Shape is = shape_make(cases[i].rank_i, cases[i].idims);
        Tensor *in[2] = {rand_tensor(&r, 3, cases[i].dims), t_i64(&is, cases[i].idx)};
        Node *n = t_node("Gather", 2, 1);
        node_set_int(n, "axis", cases[i].axis);
        char label[64];
        snprintf(label, sizeof label, "Gather case %zu axis %d", i, cases[i].axis);
        gradcheck(label, n, 13, in, 2, 1, 0, 0);
        adjoint_check(label, n, 13, in, 2, 1, 0, 0, 0);
        free_all(in, 2);
        t_node_free(n);
    }
    /* Embedding table of training size. */
    Shape ts = shape_of(2, (int64_t)1000, (int64_t)64), is = shape_of(2, (int64_t)32, (int64_t)50);
    Tensor *in[2] = {t_rand(&r, &ts, -1, 1), tensor_new(SH_I64, &is)};
    for (int64_t j = 0; j < in[1]->numel; j++)
        tensor_i64(in[1])[j] = trng_int(&r, 0, 999);
    Node *n = t_node("Gather", 2, 1);
    adjoint_check("Gather embedding", n, 13, in, 2, 1, 0, 0, 0);
    /* An index out of range fails before anything is written. */
    tensor_i64(in[1])[5] = 1000;
    Tensor *y = NULL, *gin = tensor_new(SH_F32, &ts);
    Shape ys = shape_of(3, (int64_t)32, (int64_t)50, (int64_t)64);
    Tensor *gout = tensor_new(SH_F32, &ys);
    y = tensor_new(SH_F32, &ys);
    assert_int_equal(run_backward(n, 13, 0, 0, in, 2, &y, 1, &gout, (Tensor *[]){gin, NULL}),
                     SH_E_ARG);
    assert_non_null(strstr(sh_errmsg(), "index 1000"));
    free_all((Tensor *[]){in[0], in[1], y, gin, gout}, 5);
    t_node_free(n);
}

static void test_gather_elements_gradient_scatters_per_element(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 5);
    for (int axis = -1; axis <= 2; axis++) {
        int64_t d[] = {3, 4, 5}, id[] = {2, 3, 4};
        int a = axis < 0 ? axis + 3 : axis;
        Shape is = shape_make(3, id);
        Tensor *in[2] = {rand_tensor(&r, 3, d), tensor_new(SH_I64, &is)};
        for (int64_t j = 0; j < in[1]->numel; j++) /* repeats and negatives */
            tensor_i64(in[1])[j] = trng_int(&r, -d[a], d[a] - 1);
        Node *n = t_node("GatherElements", 2, 1);
        node_set_int(n, "axis", axis);
        char label[64];
        snprintf(label, sizeof label, "GatherElements axis %d", axis);
        gradcheck(label, n, 13, in, 2, 1, 0, 0);
        adjoint_check(label, n, 13, in, 2, 1, 0, 0, 0);
        free_all(in, 2);
        t_node_free(n);
    }
}

/* ---- Pad -------------------------------------------------------------------- */

static void pad_case(const char *label, TRng *r, int opset, const char *mode, int rank,
                     const int64_t *dims, const int64_t *pads, float value, bool big)
{
    Tensor *in[3] = {rand_tensor(r, rank, dims), NULL, NULL};
    int n_in = 1;
    Node *n;
    if (opset < 11) {
        n = t_node("Pad", 1, 1);
        node_set_ints(n, "pads", pads, 2 * rank);
        node_set_float(n, "value", value);
    } else {
        n = t_node("Pad", 3, 1);
        in[1] = vec_i64(2 * rank, pads);
        Shape s = {.rank = 0};
        in[2] = t_f32(&s, &value);
        n_in = 3;
    }
    node_set_str(n, "mode", mode);
    if (!big)
        gradcheck(label, n, opset, in, n_in, 1, 0, 0);
    /* Linear in (data, constant) jointly; affine in data alone when the
     * constant is a nonzero attribute. */
    if (opset >= 11 || value == 0)
        adjoint_check(label, n, opset, in, n_in, 1, 0, 0, 0);
    free_all(in, 3);
    t_node_free(n);
}

static void test_pad_gradient_crops_or_folds(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 6);
    int64_t d[] = {2, 3, 4, 5}, d1[] = {1, 2, 3, 4}, v[] = {7};
    const int64_t spatial[] = {0, 0, 1, 2, 0, 0, 2, 1};
    const int64_t all[] = {0, 1, 2, 3, 0, 1, 1, 3};
    const int64_t crop[] = {0, -1, 1, -2, -1, 0, 0, 2};
    const char *modes[] = {"constant", "reflect", "edge"};
    for (int m = 0; m < 3; m++) {
        char label[96];
        snprintf(label, sizeof label, "Pad %s spatial", modes[m]);
        pad_case(label, &r, 11, modes[m], 4, d, spatial, 0.5f, false);
        snprintf(label, sizeof label, "Pad %s every non-batch axis, batch 1", modes[m]);
        pad_case(label, &r, 13, modes[m], 4, d1, all, 0.0f, false);
        snprintf(label, sizeof label, "Pad %s with crops", modes[m]);
        pad_case(label, &r, 13, modes[m], 4, d, crop, -1.0f, false);
        snprintf(label, sizeof label, "Pad %s rank 1", modes[m]);
        pad_case(label, &r, 13, modes[m], 1, v, (const int64_t[]){3, 6}, 2.0f, false);
        snprintf(label, sizeof label, "Pad %s opset 2 attributes", modes[m]);
        pad_case(label, &r, 2, modes[m], 4, d, spatial, 0.25f, false);
    }
    int64_t big[] = {16, 32, 28, 28};
    const int64_t bp[] = {0, 0, 3, 3, 0, 0, 3, 3};
    pad_case("Pad constant big", &r, 13, "constant", 4, big, bp, 0.0f, true);
    pad_case("Pad reflect big", &r, 13, "reflect", 4, big, bp, 0.0f, true);
}

/* Hand-computed edge fold: [a, b] padded 2 left and 1 right by edge is
 * [a, a, a, b, b], so a gets g0+g1+g2 and b gets g3+g4; the constant of a
 * constant pad gets the sum over the padding. */
static void test_pad_edge_folds_and_constant_collects_padding(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)2), s0 = {.rank = 0};
    Tensor *in[3] = {t_f32(&s, (const float[]){3, 4}), vec_i64(2, (const int64_t[]){2, 1}),
                     t_f32(&s0, (const float[]){9})};
    Tensor *y = NULL;
    Node *n = t_node("Pad", 3, 1);
    node_set_str(n, "mode", "edge");
    assert_int_equal(t_run(n, 13, in, 3, &y, 1), 0);
    Tensor *gout = t_f32(&y->shape, (const float[]){1, 10, 100, 1000, 10000});
    Tensor *gin[3] = {tensor_new(SH_F32, &s), NULL, tensor_new(SH_F32, &s0)};
    assert_int_equal(run_backward(n, 13, 0, 0, in, 3, &y, 1, &gout, gin), 0);
    assert_true(tensor_f32(gin[0])[0] == 111.0f && tensor_f32(gin[0])[1] == 11000.0f);
    assert_true(tensor_f32(gin[2])[0] == 0.0f); /* edge mode does not use the constant */
    t_node_free(n);
    n = t_node("Pad", 3, 1);
    memset(gin[0]->data, 0, tensor_bytes(gin[0]));
    assert_int_equal(run_backward(n, 13, 0, 0, in, 3, &y, 1, &gout, gin), 0);
    assert_true(tensor_f32(gin[0])[0] == 100.0f && tensor_f32(gin[0])[1] == 1000.0f);
    assert_true(tensor_f32(gin[2])[0] == 10011.0f);
    free_all((Tensor *[]){in[0], in[1], in[2], y, gout, gin[0], gin[2]}, 7);
    t_node_free(n);
}

/* ---- DepthToSpace, SpaceToDepth ------------------------------------------- */

static void test_depth_space_gradient_is_inverse_rearrangement(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 7);
    int64_t deep[] = {2, 8, 2, 3}, deep3[] = {1, 18, 2, 2}, flat[] = {2, 3, 4, 6};
    const char *modes[] = {"DCR", "CRD"};
    for (int m = 0; m < 2; m++) {
        char label[64];
        Node *n = t_node("DepthToSpace", 1, 1);
        node_set_int(n, "blocksize", 2);
        node_set_str(n, "mode", modes[m]);
        Tensor *x = rand_tensor(&r, 4, deep);
        snprintf(label, sizeof label, "DepthToSpace %s blocksize 2", modes[m]);
        gradcheck(label, n, 13, &x, 1, 1, 0, 0);
        adjoint_check(label, n, 13, &x, 1, 1, 0, 0, 0);
        tensor_free(x);
        t_node_free(n);
        n = t_node("DepthToSpace", 1, 1);
        node_set_int(n, "blocksize", 3);
        node_set_str(n, "mode", modes[m]);
        x = rand_tensor(&r, 4, deep3);
        snprintf(label, sizeof label, "DepthToSpace %s blocksize 3, batch 1", modes[m]);
        gradcheck(label, n, 13, &x, 1, 1, 0, 0);
        tensor_free(x);
        t_node_free(n);
    }
    Node *n = t_node("SpaceToDepth", 1, 1);
    node_set_int(n, "blocksize", 2);
    Tensor *x = rand_tensor(&r, 4, flat);
    gradcheck("SpaceToDepth blocksize 2", n, 13, &x, 1, 1, 0, 0);
    adjoint_check("SpaceToDepth blocksize 2", n, 13, &x, 1, 1, 0, 0, 0);
    tensor_free(x);
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
        cmocka_unit_test(test_concat_gradient_slices_to_each_input),
        cmocka_unit_test(test_split_gradient_fills_each_part),
        cmocka_unit_test(test_slice_gradient_scatters_into_region),
        cmocka_unit_test(test_gather_repeated_indices_accumulate),
        cmocka_unit_test(test_gather_gradient_matches_finite_difference),
        cmocka_unit_test(test_gather_elements_gradient_scatters_per_element),
        cmocka_unit_test(test_pad_gradient_crops_or_folds),
        cmocka_unit_test(test_pad_edge_folds_and_constant_collects_padding),
        cmocka_unit_test(test_depth_space_gradient_is_inverse_rearrangement),
    };
    return cmocka_run_group_tests(tests, NULL, print_worst);
}
