/* Backward of the shape ops (Identity, Flatten, Reshape, Squeeze,
 * Unsqueeze, Transpose, Expand, Tile, Cast, Dropout) against central finite
 * differences (t_gradcheck) and, on tensors too large to probe one element
 * at a time, the adjoint identity <g, F(x)> = <B(g), x> of linear ops. */
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

/* ---- reshape-like ops ---------------------------------------------------- */

static void test_reshape_like_ops_pass_gradient_through(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 1);
    int64_t d4[] = {1, 3, 2, 5}, d4b[] = {4, 3, 1, 2};
    for (int b = 0; b < 2; b++) {
        const int64_t *d = b ? d4b : d4;
        Tensor *x = rand_tensor(&r, 4, d);
        Node *id = t_node("Identity", 1, 1);
        gradcheck("Identity", id, 13, &x, 1, 1, 0, 0);
        t_node_free(id);
        for (int64_t axis = -1; axis <= 4; axis++) {
            Node *f = t_node("Flatten", 1, 1);
            node_set_int(f, "axis", axis);
            char label[64];
            snprintf(label, sizeof label, "Flatten axis %lld batch %lld", (long long)axis,
                     (long long)d[0]);
            gradcheck(label, f, 13, &x, 1, 1, 0, 0);
            t_node_free(f);
        }
        Node *rs = t_node("Reshape", 2, 1);
        Tensor *in[2] = {x, vec_i64(3, (const int64_t[]){0, -1, 2})};
        gradcheck("Reshape [0,-1,2]", rs, 14, in, 2, 1, 0, 0);
        adjoint_check("Reshape [0,-1,2]", rs, 14, in, 2, 1, 0, 0, 0);
        tensor_free(in[1]);
        t_node_free(rs);
        tensor_free(x);
    }
    /* Squeeze/Unsqueeze: axes as attribute (opset 11) and as input (13). */
    int64_t ds[] = {2, 1, 3, 1};
    Tensor *x = rand_tensor(&r, 4, ds);
    Node *sq11 = t_node("Squeeze", 1, 1);
    node_set_ints(sq11, "axes", (const int64_t[]){1, -1}, 2);
    gradcheck("Squeeze opset 11", sq11, 11, &x, 1, 1, 0, 0);
    Node *sq13 = t_node("Squeeze", 2, 1);
    Tensor *in13[2] = {x, vec_i64(1, (const int64_t[]){1})};
    gradcheck("Squeeze opset 13", sq13, 13, in13, 2, 1, 0, 0);
    Node *un11 = t_node("Unsqueeze", 1, 1);
    node_set_ints(un11, "axes", (const int64_t[]){0, 5}, 2);
    gradcheck("Unsqueeze opset 11", un11, 11, &x, 1, 1, 0, 0);
    Node *un13 = t_node("Unsqueeze", 2, 1);
    gradcheck("Unsqueeze opset 13", un13, 13, in13, 2, 1, 0, 0);
    tensor_free(in13[1]);
    tensor_free(x);
    t_node_free(sq11);
    t_node_free(sq13);
    t_node_free(un11);
    t_node_free(un13);
}

/* The gradient lands in the same element order, added to what gin held. */
static void test_flatten_gradient_adds_in_element_order(void **state)
{
    (void)state;
    Shape s = shape_of(3, (int64_t)2, (int64_t)2, (int64_t)2);
    Tensor *x = t_f32(&s, (const float[]){0, 0, 0, 0, 0, 0, 0, 0}), *y = NULL;
    Node *n = t_node("Flatten", 1, 1);
    assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
    Tensor *gout = t_f32(&y->shape, (const float[]){1, 2, 3, 4, 5, 6, 7, 8});
    Tensor *gin = t_f32(&s, (const float[]){10, 10, 10, 10, 10, 10, 10, 10});
    assert_int_equal(run_backward(n, 13, 0, 0, &x, 1, &y, 1, &gout, &gin), 0);
    for (int i = 0; i < 8; i++)
        assert_true(tensor_f32(gin)[i] == 11.0f + (float)i);
    free_all((Tensor *[]){x, y, gout, gin}, 4);
    t_node_free(n);
}

static void test_backward_rejects_gradient_of_wrong_size(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)3), bad = shape_of(1, (int64_t)5);
    TRng r;
    trng_seed(&r, 2);
    Tensor *x = t_rand(&r, &s, -1, 1), *y = NULL;
    Node *n = t_node("Transpose", 1, 1);
    assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
    Tensor *gout = t_rand(&r, &y->shape, -1, 1), *gin = tensor_new(SH_F32, &bad);
    assert_int_equal(run_backward(n, 13, 0, 0, &x, 1, &y, 1, &gout, &gin), SH_E_STATE);
    assert_non_null(strstr(sh_errmsg(), "gradient of input 0"));
    /* A NULL gradient on either side is no work, not an error. */
    Tensor *none = NULL;
    assert_int_equal(run_backward(n, 13, 0, 0, &x, 1, &y, 1, &none, &gin), 0);
    free_all((Tensor *[]){x, y, gout, gin}, 4);
    t_node_free(n);
}

/* ---- Transpose ------------------------------------------------------------ */

static void test_transpose_gradient_is_inverse_permutation(void **state)
{
    (void)state;
    static const struct {
        int rank;
        int64_t dims[5];
        int nperm; /* 0: default (reversed) */
        int64_t perm[5];
    } cases[] = {
        {2, {3, 5}, 0, {0}},
        {4, {2, 3, 4, 5}, 4, {0, 2, 3, 1}}, /* NCHW -> NHWC: batched 2-D */
        {4, {1, 3, 4, 5}, 4, {0, 3, 1, 2}}, /* NHWC -> NCHW, batch 1 */
        {3, {2, 3, 4}, 3, {1, 0, 2}},
        {3, {2, 3, 4}, 3, {2, 0, 1}},
        {5, {2, 1, 3, 2, 3}, 5, {4, 2, 0, 3, 1}}, /* strided */
        {4, {1, 1, 4, 1}, 4, {3, 2, 1, 0}},       /* coalesces to a copy */
        {3, {2, 3, 4}, 3, {-1, 0, 1}},
    };
    TRng r;
    trng_seed(&r, 3);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        Tensor *x = rand_tensor(&r, cases[i].rank, cases[i].dims);
        Node *n = t_node("Transpose", 1, 1);
        if (cases[i].nperm)
            node_set_ints(n, "perm", cases[i].perm, cases[i].nperm);
        char label[64];
        snprintf(label, sizeof label, "Transpose case %zu", i);
        gradcheck(label, n, 13, &x, 1, 1, 0, 0);
        tensor_free(x);
        t_node_free(n);
    }
    /* Training sizes, every element at once: 2-D tiles, batched 2-D, strided. */
    static const struct {
        int64_t dims[4];
        int64_t perm[4];
    } big[] = {
        {{8, 64, 14, 14}, {0, 2, 3, 1}},
        {{8, 14, 14, 64}, {0, 3, 1, 2}},
        {{1, 37, 70, 33}, {3, 1, 2, 0}},
        {{16, 12, 33, 20}, {0, 2, 1, 3}},
    };
    for (size_t i = 0; i < sizeof big / sizeof *big; i++) {
        Tensor *x = rand_tensor(&r, 4, big[i].dims);
        Node *n = t_node("Transpose", 1, 1);
        node_set_ints(n, "perm", big[i].perm, 4);
        char label[64];
        snprintf(label, sizeof label, "Transpose big case %zu", i);
        adjoint_check(label, n, 13, &x, 1, 1, 0, 0, 0);
        tensor_free(x);
        t_node_free(n);
    }
}

/* ---- Expand, Tile ---------------------------------------------------------- */

static void test_expand_gradient_sums_broadcast_dims(void **state)
{
    (void)state;
    static const struct {
        int rank_in;
        int64_t in[4];
        int rank_shape;
        int64_t shape[4];
    } cases[] = {
        {4, {1, 3, 1, 1}, 4, {2, 3, 4, 5}}, /* per-channel */
        {1, {4}, 3, {2, 3, 4}},             /* bias over [N,T,C] */
        {2, {3, 1}, 3, {2, 3, 4}},
        {2, {2, 3}, 2, {2, 3}},             /* same shape */
        {2, {2, 3}, 1, {1}},                /* shape of lower rank */
        {3, {1, 1, 1}, 3, {1, 1, 1}},
        {3, {1, 3, 1}, 4, {1, 2, 3, 5}},    /* batch 1 */
        {3, {2, 1, 4}, 3, {2, 3, 1}},       /* input larger than a shape 1 */
    };
    TRng r;
    trng_seed(&r, 4);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        Tensor *in[2] = {rand_tensor(&r, cases[i].rank_in, cases[i].in),
                         vec_i64(cases[i].rank_shape, cases[i].shape)};
        Node *n = t_node("Expand", 2, 1);
        char label[64];
        snprintf(label, sizeof label, "Expand case %zu", i);
        gradcheck(label, n, 13, in, 2, 1, 0, 0);
        adjoint_check(label, n, 13, in, 2, 1, 0, 0, 0);
        free_all(in, 2);
        t_node_free(n);
    }
    /* Training sizes. */
    static const struct {
        int rank_in;
        int64_t in[4];
        int64_t shape[4];
    } big[] = {
        {4, {1, 64, 1, 1}, {16, 64, 28, 28}},
        {1, {96}, {1, 32, 50, 96}},
        {4, {16, 1, 28, 1}, {16, 64, 28, 28}},
    };
    for (size_t i = 0; i < sizeof big / sizeof *big; i++) {
        Tensor *in[2] = {rand_tensor(&r, big[i].rank_in, big[i].in), vec_i64(4, big[i].shape)};
        Node *n = t_node("Expand", 2, 1);
        char label[64];
        snprintf(label, sizeof label, "Expand big case %zu", i);
        adjoint_check(label, n, 13, in, 2, 1, 0, 0, 0);
        free_all(in, 2);
        t_node_free(n);
    }
}

/* Hand-computed: tiling [a, b] three times gives each element three copies. */
static void test_tile_gradient_sums_tiles(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)2);
    Tensor *in[2] = {t_f32(&s, (const float[]){5, 6}), vec_i64(1, (const int64_t[]){3})};
    Tensor *y = NULL;
    Node *n = t_node("Tile", 2, 1);
    assert_int_equal(t_run(n, 13, in, 2, &y, 1), 0);
    Tensor *gout = t_f32(&y->shape, (const float[]){1, 10, 100, 1000, 10000, 100000});
    Tensor *gin[2] = {t_f32(&s, (const float[]){0.5f, 0.25f}), NULL};
    assert_int_equal(run_backward(n, 13, 0, 0, in, 2, &y, 1, &gout, gin), 0);
    assert_true(tensor_f32(gin[0])[0] == 10101.5f);
    assert_true(tensor_f32(gin[0])[1] == 101010.25f);
    free_all((Tensor *[]){in[0], in[1], y, gout, gin[0]}, 5);
    t_node_free(n);

    static const struct {
        int rank;
        int64_t in[4], reps[4];
    } cases[] = {
        {3, {2, 3, 2}, {2, 1, 3}},
        {2, {2, 3}, {1, 1}},
        {1, {4}, {3}},
        {4, {1, 3, 2, 2}, {1, 2, 1, 2}},
        {4, {2, 1, 3, 1}, {1, 4, 1, 5}},
        {2, {3, 2}, {0, 2}}, /* empty output: no gradient */
    };
    TRng r;
    trng_seed(&r, 5);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        Tensor *tin[2] = {rand_tensor(&r, cases[i].rank, cases[i].in),
                          vec_i64(cases[i].rank, cases[i].reps)};
        n = t_node("Tile", 2, 1);
        char label[64];
        snprintf(label, sizeof label, "Tile case %zu", i);
        gradcheck(label, n, 13, tin, 2, 1, 0, 0);
        adjoint_check(label, n, 13, tin, 2, 1, 0, 0, 0);
        free_all(tin, 2);
        t_node_free(n);
    }
    int64_t bd[] = {8, 16, 14, 14}, br[] = {2, 1, 3, 2};
    Tensor *bin[2] = {rand_tensor(&r, 4, bd), vec_i64(4, br)};
    n = t_node("Tile", 2, 1);
    adjoint_check("Tile big", n, 13, bin, 2, 1, 0, 0, 0);
    free_all(bin, 2);
    t_node_free(n);
}

/* ---- Cast ------------------------------------------------------------------- */

static void test_cast_float_to_float_passes_gradient(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 6);
    int64_t d[] = {2, 3, 4};
    Tensor *x = rand_tensor(&r, 3, d);
    Node *n = t_node("Cast", 1, 1);
    node_set_int(n, "to", SH_F32);
    gradcheck("Cast float->float", n, 13, &x, 1, 1, 0, 0);
    Node *cl = t_node("CastLike", 2, 1);
    Tensor *in[2] = {x, rand_tensor(&r, 1, (const int64_t[]){1})};
    gradcheck("CastLike float->float", cl, 15, in, 2, 1, 0, 1u << 1);
    /* A cast to an integer type has no gradient to give. */
    Node *ci = t_node("Cast", 1, 1);
    node_set_int(ci, "to", SH_I64);
    Tensor *y = NULL;
    assert_int_equal(t_run(ci, 13, &x, 1, &y, 1), 0);
    Tensor *g = tensor_new(SH_F32, &x->shape), *go = tensor_new(SH_F32, &x->shape);
    assert_int_equal(run_backward(ci, 13, 0, 0, &x, 1, &y, 1, &go, &g), SH_E_UNSUPPORTED);
    assert_non_null(strstr(sh_errmsg(), "int64"));
    free_all((Tensor *[]){x, in[1], y, g, go}, 5);
    t_node_free(n);
    t_node_free(cl);
    t_node_free(ci);
}

/* ---- Dropout ---------------------------------------------------------------- */

static Node *dropout_node(int n_in, int n_out, float ratio_attr)
{
    Node *n = t_node("Dropout", n_in, n_out);
    if (ratio_attr >= 0)
        node_set_float(n, "ratio", ratio_attr);
    return n;
}

static Tensor *scalar_f32(float v)
{
    Shape s = {.rank = 0};
    return t_f32(&s, &v);
}

static Tensor *scalar_bool(bool v)
{
    Shape s = {.rank = 0};
    Tensor *t = tensor_new(SH_BOOL, &s);
    tensor_u8(t)[0] = v;
    return t;
}

static void test_dropout_mask_repeats_with_seed_and_changes_across_seeds(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 7);
    Shape s = shape_of(2, (int64_t)64, (int64_t)50);
    Tensor *x = t_rand(&r, &s, 0.5f, 1.5f); /* no zeros: dropped is visible */
    Node *n = dropout_node(1, 2, 0.5f);
    Tensor *a[2], *b[2], *d[2];
    assert_int_equal(run_forward(n, 11, 1, 42, &x, 1, a, 2), 0);
    assert_int_equal(run_forward(n, 11, 1, 42, &x, 1, b, 2), 0);
    assert_int_equal(run_forward(n, 11, 1, 43, &x, 1, d, 2), 0);
    assert_int_equal(a[1]->dtype, SH_BOOL);
    assert_memory_equal(a[1]->data, b[1]->data, (size_t)a[1]->numel);
    assert_memory_equal(a[0]->data, b[0]->data, tensor_bytes(a[0]));
    int64_t differ = 0;
    for (int64_t i = 0; i < x->numel; i++)
        differ += tensor_u8(a[1])[i] != tensor_u8(d[1])[i];
    printf("seeds 42 and 43: %lld of %lld mask elements differ\n", (long long)differ,
           (long long)x->numel);
    assert_true(differ > x->numel / 4); /* about half for independent masks */
    free_all(a, 2);
    free_all(b, 2);
    free_all(d, 2);
    tensor_free(x);
    t_node_free(n);
}

/* Kept elements are x / (1 - ratio), dropped ones 0, the mask says which,
 * and about 1 - ratio of a large tensor is kept. */
static void test_dropout_keeps_about_one_minus_ratio_scaled(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 8);
    Shape s = shape_of(1, (int64_t)1000000);
    Tensor *x = t_rand(&r, &s, 0.5f, 1.5f);
    const float ratios[] = {0.1f, 0.3f, 0.75f};
    for (int k = 0; k < 3; k++) {
        Node *n = dropout_node(2, 2, -1);
        Tensor *in[2] = {x, scalar_f32(ratios[k])}, *y[2];
        assert_int_equal(run_forward(n, 13, 1, 1234 + (uint64_t)k, in, 2, y, 2), 0);
        int64_t kept = 0;
        double scale = 1.0 / (1.0 - ratios[k]), worst = 0;
        for (int64_t i = 0; i < x->numel; i++) {
            bool keep = tensor_u8(y[1])[i];
            double want = keep ? tensor_f32(x)[i] * scale : 0;
            double diff = fabs(tensor_f32(y[0])[i] - want);
            worst = diff > worst ? diff : worst;
            kept += keep;
        }
        double frac = (double)kept / (double)x->numel;
        double sigma = sqrt(ratios[k] * (1 - ratios[k]) / (double)x->numel);
        printf("ratio %.2f: kept %.5f (expected %.5f, sigma %.5f), max value diff %.3g\n",
               (double)ratios[k], frac, 1.0 - ratios[k], sigma, worst);
        assert_true(fabs(frac - (1.0 - ratios[k])) < 6 * sigma);
        assert_true(worst < 1e-5);
        free_all(y, 2);
        tensor_free(in[1]);
        t_node_free(n);
    }
    tensor_free(x);
}

static void test_dropout_gradient_matches_finite_difference(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 9);
    int64_t d[] = {1, 4, 3, 5}, db[] = {3, 7};
    Tensor *x = rand_tensor(&r, 4, d), *xb = rand_tensor(&r, 2, db);
    /* Trainer's flag, ratio as attribute (opset 7: float mask; 10: bool). */
    Node *n7 = dropout_node(1, 2, 0.4f);
    gradcheck("Dropout opset 7 training", n7, 7, &x, 1, 2, 1, 0);
    gradcheck("Dropout opset 10 training", n7, 10, &xb, 1, 2, 1, 0);
    /* Opset 12+: ratio input; training_mode input true without the flag. */
    Node *n13 = dropout_node(3, 2, -1);
    Tensor *in[3] = {x, scalar_f32(0.3f), scalar_bool(true)};
    gradcheck("Dropout opset 13 training_mode", n13, 13, in, 3, 2, 0, 1u << 1);
    adjoint_check("Dropout opset 13 training_mode", n13, 13, in, 3, 2, 0, 77, 1u << 1);
    Node *n12 = dropout_node(1, 2, -1);
    gradcheck("Dropout opset 12 default ratio training", n12, 12, &xb, 1, 2, 1, 0);
    int64_t big[] = {32, 128, 8, 8};
    Tensor *xl = rand_tensor(&r, 4, big);
    adjoint_check("Dropout big training", n7, 11, &xl, 1, 2, 1, 5, 0);
    free_all((Tensor *[]){x, xb, xl, in[1], in[2]}, 5);
    t_node_free(n7);
    t_node_free(n13);
    t_node_free(n12);
}

/* Without a mask output, backward redraws the mask forward used from the
 * seed: gin = gout * mask / (1 - ratio) with the mask of a run that had one. */
static void test_dropout_backward_redraws_mask_without_mask_output(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 10);
    Shape s = shape_of(2, (int64_t)33, (int64_t)31);
    Tensor *x = t_rand(&r, &s, -1, 1);
    Node *one = dropout_node(1, 1, 0.25f), *two = dropout_node(1, 2, 0.25f);
    Tensor *y1 = NULL, *y2[2];
    assert_int_equal(run_forward(one, 11, 1, 555, &x, 1, &y1, 1), 0);
    assert_int_equal(run_forward(two, 11, 1, 555, &x, 1, y2, 2), 0);
    assert_memory_equal(y1->data, y2[0]->data, tensor_bytes(y1));
    Tensor *gout = t_rand(&r, &s, -1, 1), *gin = tensor_new(SH_F32, &s);
    assert_int_equal(run_backward(one, 11, 1, 555, &x, 1, &y1, 1, &gout, &gin), 0);
    double worst = 0;
    for (int64_t i = 0; i < x->numel; i++) {
        double want = tensor_u8(y2[1])[i] ? tensor_f32(gout)[i] / 0.75 : 0;
        double diff = fabs(tensor_f32(gin)[i] - want);
        worst = diff > worst ? diff : worst;
    }
    printf("Dropout backward without mask output: max diff %.3g\n", worst);
    assert_true(worst < 1e-6);
    free_all((Tensor *[]){x, y1, y2[0], y2[1], gout, gin}, 6);
    t_node_free(one);
    t_node_free(two);
}

/* An executor that aliased the output to the input never ran forward, so
 * the forward was the identity: the gradient passes through unchanged. */
static void test_dropout_backward_after_aliased_forward_passes_through(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 12);
    Shape s = shape_of(2, (int64_t)5, (int64_t)7);
    Tensor *x = t_rand(&r, &s, -1, 1);
    Tensor view = tensor_view(SH_F32, &s, x->data), *y = &view;
    Node *n = dropout_node(1, 1, 0.5f);
    Tensor *gout = t_rand(&r, &s, -1, 1), *gin = tensor_new(SH_F32, &s);
    assert_int_equal(run_backward(n, 11, 1, 3, &x, 1, &y, 1, &gout, &gin), 0);
    assert_memory_equal(gin->data, gout->data, tensor_bytes(gin));
    free_all((Tensor *[]){x, gout, gin}, 3);
    t_node_free(n);
}

/* Inference (no flag, training_mode absent or false) and ratio 0 keep
 * the identity with an all-true mask, and the gradient passes through. */
static void test_dropout_stays_identity_outside_training(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 11);
    Shape s = shape_of(2, (int64_t)4, (int64_t)6);
    Tensor *x = t_rand(&r, &s, -1, 1);
    struct {
        int opset, training, n_in;
        float ratio;
        bool mode;
    } cases[] = {
        {12, 0, 1, -1, false},  {13, 0, 3, 0.5f, false}, {9, 0, 1, 0.5f, false},
        {13, 1, 2, 0.0f, false}, {13, 0, 3, 0.0f, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        Node *n = dropout_node(cases[i].n_in, 2, cases[i].opset < 12 ? cases[i].ratio : -1);
        Tensor *in[3] = {x, cases[i].n_in > 1 ? scalar_f32(cases[i].ratio) : NULL,
                         cases[i].n_in > 2 ? scalar_bool(cases[i].mode) : NULL};
        Tensor *y[2];
        assert_int_equal(run_forward(n, cases[i].opset, cases[i].training, 9, in, cases[i].n_in, y, 2), 0);
        assert_memory_equal(y[0]->data, x->data, tensor_bytes(x));
        for (int64_t j = 0; j < x->numel; j++)
            assert_true(tensor_get_f(y[1], j) == 1.0);
        Tensor *gout = t_rand(&r, &s, -1, 1), *gin = tensor_new(SH_F32, &s);
        assert_int_equal(run_backward(n, cases[i].opset, cases[i].training, 9, in, cases[i].n_in,
                                      y, 2, (Tensor *[]){gout, NULL}, (Tensor *[]){gin, NULL, NULL}),
                         0);
        assert_memory_equal(gin->data, gout->data, tensor_bytes(gin));
        free_all((Tensor *[]){in[1], in[2], y[0], y[1], gout, gin}, 6);
        t_node_free(n);
    }
    tensor_free(x);
}

static void test_dropout_training_rejects_bad_ratio(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)4);
    Tensor *x = t_f32(&s, (const float[]){1, 2, 3, 4}), *y[2] = {NULL, NULL};
    Node *n = dropout_node(2, 2, -1);
    Tensor *in[2] = {x, scalar_f32(1.5f)};
    assert_int_equal(run_forward(n, 13, 1, 1, in, 2, y, 2), SH_E_ARG);
    assert_non_null(strstr(sh_errmsg(), "ratio 1.5"));
    /* Inference never reads the ratio, as before. */
    assert_int_equal(run_forward(n, 13, 0, 1, in, 2, y, 2), 0);
    free_all(y, 2);
    /* Ratio 1 drops everything. */
    tensor_f32(in[1])[0] = 1.0f;
    assert_int_equal(run_forward(n, 13, 1, 1, in, 2, y, 2), 0);
    for (int i = 0; i < 4; i++)
        assert_true(tensor_f32(y[0])[i] == 0.0f && tensor_u8(y[1])[i] == 0);
    free_all((Tensor *[]){x, in[1], y[0], y[1]}, 4);
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
        cmocka_unit_test(test_reshape_like_ops_pass_gradient_through),
        cmocka_unit_test(test_flatten_gradient_adds_in_element_order),
        cmocka_unit_test(test_backward_rejects_gradient_of_wrong_size),
        cmocka_unit_test(test_transpose_gradient_is_inverse_permutation),
        cmocka_unit_test(test_expand_gradient_sums_broadcast_dims),
        cmocka_unit_test(test_tile_gradient_sums_tiles),
        cmocka_unit_test(test_cast_float_to_float_passes_gradient),
        cmocka_unit_test(test_dropout_mask_repeats_with_seed_and_changes_across_seeds),
        cmocka_unit_test(test_dropout_keeps_about_one_minus_ratio_scaled),
        cmocka_unit_test(test_dropout_gradient_matches_finite_difference),
        cmocka_unit_test(test_dropout_backward_redraws_mask_without_mask_output),
        cmocka_unit_test(test_dropout_backward_after_aliased_forward_passes_through),
        cmocka_unit_test(test_dropout_stays_identity_outside_training),
        cmocka_unit_test(test_dropout_training_rejects_bad_ratio),
    };
    return cmocka_run_group_tests(tests, NULL, print_worst);
}
