/* Shape ops against hand-computed values, opset variants, errors, and
 * (Transpose, Expand, Tile) naive per-element references. */
#include "core/error.h"
#include "tests/support/testutil.h"

#include <math.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

/* ---- helpers ------------------------------------------------------------ */

static Tensor *vec_i64(int n, const int64_t *v)
{
    Shape s = shape_of(1, (int64_t)n);
    return t_i64(&s, v);
}

/* Element i holds i (mod 251 for bytes) so every move is visible. */
static Tensor *iota(DType dt, const Shape *s)
{
    Tensor *t = tensor_new(dt, s);
    for (int64_t i = 0; i < t->numel; i++) {
        if (dt == SH_F32)
            tensor_f32(t)[i] = (float)i;
        else if (dt == SH_I64)
            tensor_i64(t)[i] = i * 1000003;
        else
            tensor_u8(t)[i] = (uint8_t)(i % 251);
    }
    return t;
}

static void assert_shape(const Tensor *t, int rank, const int64_t *dims)
{
    Shape want = shape_make(rank, dims);
    char a[128], b[128];
    if (!shape_eq(&t->shape, &want))
        fail_msg("shape %s, want %s", shape_str(&t->shape, a, sizeof a), shape_str(&want, b, sizeof b));
}

static void assert_values(const Tensor *t, const double *want, int64_t n)
{
    assert_int_equal(t->numel, n);
    for (int64_t i = 0; i < n; i++)
        if (tensor_get_f(t, i) != want[i])
            fail_msg("element %lld is %g, want %g", (long long)i, tensor_get_f(t, i), want[i]);
}

/* Runs and requires failure with code, the node name and a phrase in the message. */
static void assert_run_fails(Node *n, int opset, Tensor **in, int n_in, int code, const char *phrase)
{
    Tensor *out[2] = {NULL, NULL};
    int rc = t_run(n, opset, in, n_in, out, n->n_out);
    if (rc != code)
        fail_msg("rc %d (%s), want %d", rc, sh_errmsg(), code);
    if (!strstr(sh_errmsg(), n->name) || !strstr(sh_errmsg(), phrase))
        fail_msg("message '%s' lacks '%s' or the node name", sh_errmsg(), phrase);
    printf("  expected error: %s\n", sh_errmsg());
}

static void free_tensors(Tensor **t, int n)
{
    for (int i = 0; i < n; i++)
        tensor_free(t[i]);
}

/* ---- Flatten ------------------------------------------------------------ */

static void test_flatten_default_axis_keeps_first_dim(void **state)
{
    (void)state;
    Shape s = shape_of(3, (int64_t)2, (int64_t)3, (int64_t)4);
    Tensor *x = iota(SH_F32, &s), *y = NULL;
    Node *n = t_node("Flatten", 1, 1);
    assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
    assert_shape(y, 2, (int64_t[]){2, 12});
    assert_memory_equal(y->data, x->data, tensor_bytes(x));
    free_tensors((Tensor *[]){x, y}, 2);
    t_node_free(n);
}

static void test_flatten_axis_zero_end_and_negative(void **state)
{
    (void)state;
    Shape s = shape_of(3, (int64_t)2, (int64_t)3, (int64_t)4);
    Tensor *x = iota(SH_U8, &s);
    const int64_t axes[] = {0, 3, -1, -3};
    const int64_t want[][2] = {{1, 24}, {24, 1}, {6, 4}, {1, 24}};
    for (int i = 0; i < 4; i++) {
        Node *n = t_node("Flatten", 1, 1);
        Tensor *y = NULL;
        node_set_int(n, "axis", axes[i]);
        assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
        assert_shape(y, 2, want[i]);
        assert_int_equal(y->dtype, SH_U8);
        tensor_free(y);
        t_node_free(n);
    }
    tensor_free(x);
}

static void test_flatten_axis_out_of_range_fails(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)3);
    Tensor *x = iota(SH_F32, &s);
    Node *n = t_node("Flatten", 1, 1);
    node_set_int(n, "axis", 3);
    assert_run_fails(n, 13, &x, 1, SH_E_ARG, "axis 3");
    tensor_free(x);
    t_node_free(n);
}

/* ---- Reshape ------------------------------------------------------------ */

static int reshape(const Tensor *x, int opset, const int64_t *shape, int n, Node *node, Tensor **y)
{
    Tensor *in[2] = {(Tensor *)x, vec_i64(n, shape)};
    int rc = t_run(node, opset, in, 2, y, 1);
    tensor_free(in[1]);
    return rc;
}

static void test_reshape_zero_copies_dim_and_minus_one_infers(void **state)
{
    (void)state;
    Shape s = shape_of(3, (int64_t)2, (int64_t)3, (int64_t)4);
    Tensor *x = iota(SH_F32, &s), *y = NULL;
    Node *n = t_node("Reshape", 2, 1);
    assert_int_equal(reshape(x, 13, (int64_t[]){0, -1}, 2, n, &y), 0);
    assert_shape(y, 2, (int64_t[]){2, 12});
    assert_memory_equal(y->data, x->data, tensor_bytes(x));
    tensor_free(y);
    assert_int_equal(reshape(x, 13, (int64_t[]){-1, 2, 0, 1}, 4, n, &y), 0);
    assert_shape(y, 4, (int64_t[]){3, 2, 4, 1}); /* the 0 copies input dim 2 (4) */
    tensor_free(y);
    tensor_free(x);
    t_node_free(n);
}

static void test_reshape_allowzero_keeps_zero_from_opset_14(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)0, (int64_t)3);
    Tensor *x = tensor_new(SH_F32, &s), *y = NULL;
    Node *n = t_node("Reshape", 2, 1);
    node_set_int(n, "allowzero", 1);
    assert_int_equal(reshape(x, 14, (int64_t[]){3, 0}, 2, n, &y), 0);
    assert_shape(y, 2, (int64_t[]){3, 0});
    tensor_free(y);
    /* Before opset 14 the attribute does not exist: 0 copies dim 1 (3). */
    assert_int_not_equal(reshape(x, 13, (int64_t[]){3, 0}, 2, n, &y), 0);
    assert_non_null(strstr(sh_errmsg(), "[3,0]"));
    /* allowzero with -1 beside a zero is ambiguous. */
    assert_int_equal(reshape(x, 14, (int64_t[]){0, -1}, 2, n, &y), SH_E_SHAPE);
    tensor_free(x);
    t_node_free(n);
}

static void test_reshape_incompatible_sizes_fails_naming_node_and_shapes(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)3);
    Tensor *x = iota(SH_F32, &s), *y = NULL;
    Node *n = t_node("Reshape", 2, 1);
    assert_int_equal(reshape(x, 13, (int64_t[]){4, 2}, 2, n, &y), SH_E_SHAPE);
    printf("  expected error: %s\n", sh_errmsg());
    assert_non_null(strstr(sh_errmsg(), "test_Reshape"));
    assert_non_null(strstr(sh_errmsg(), "[2,3]"));
    assert_non_null(strstr(sh_errmsg(), "[4,2]"));
    assert_int_equal(reshape(x, 13, (int64_t[]){-1, 4}, 2, n, &y), SH_E_SHAPE);
    assert_int_equal(reshape(x, 13, (int64_t[]){-1, -1}, 2, n, &y), SH_E_SHAPE);
    assert_non_null(strstr(sh_errmsg(), "more than one -1"));
    assert_int_equal(reshape(x, 13, (int64_t[]){6, 0, 1}, 3, n, &y), SH_E_SHAPE);
    assert_int_equal(reshape(x, 13, (int64_t[]){-2, -3}, 2, n, &y), SH_E_SHAPE);
    tensor_free(x);
    t_node_free(n);
}

/* ---- Transpose ---------------------------------------------------------- */

/* Independent reference: one element at a time from its index. */
static void transpose_naive(Tensor *y, const Tensor *x, const int *perm)
{
    size_t es = dtype_size(x->dtype);
    int r = x->shape.rank;
    for (int64_t i = 0; i < y->numel; i++) {
        int64_t rem = i, src = 0, oidx[SH_MAX_RANK], iidx[SH_MAX_RANK];
        for (int k = r - 1; k >= 0; k--) {
            oidx[k] = rem % y->shape.d[k];
            rem /= y->shape.d[k];
        }
        for (int k = 0; k < r; k++)
            iidx[perm[k]] = oidx[k];
        for (int k = 0; k < r; k++)
            src = src * x->shape.d[k] + iidx[k];
        memcpy((char *)y->data + i * (int64_t)es, (const char *)x->data + src * (int64_t)es, es);
    }
}

static void test_transpose_default_reverses_axes(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)3);
    Tensor *x = iota(SH_F32, &s), *y = NULL;
    Node *n = t_node("Transpose", 1, 1);
    assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
    assert_shape(y, 2, (int64_t[]){3, 2});
    assert_values(y, (double[]){0, 3, 1, 4, 2, 5}, 6);
    free_tensors((Tensor *[]){x, y}, 2);
    t_node_free(n);
}

static void test_transpose_nchw_to_nhwc_hand_values(void **state)
{
    (void)state;
    Shape s = shape_of(4, (int64_t)1, (int64_t)2, (int64_t)2, (int64_t)2);
    Tensor *x = iota(SH_F32, &s), *y = NULL;
    Node *n = t_node("Transpose", 1, 1);
    node_set_ints(n, "perm", (int64_t[]){0, 2, 3, 1}, 4);
    assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
    assert_shape(y, 4, (int64_t[]){1, 2, 2, 2});
    assert_values(y, (double[]){0, 4, 1, 5, 2, 6, 3, 7}, 8);
    free_tensors((Tensor *[]){x, y}, 2);
    t_node_free(n);
}

/* Covers the fast paths (no-op, 2-D, batched 2-D incl. NCHW<->NHWC and
 * last-two-axes) and the strided loop on every element size. */
static void test_transpose_fast_paths_match_naive(void **state)
{
    (void)state;
    static const int perms[][6] = {
        {0, 1, 2, 3}, {0, 2, 3, 1}, {0, 3, 1, 2}, {0, 1, 3, 2}, {3, 2, 1, 0}, {1, 0, 2, 3},
        {2, 0, 3, 1}, {1, 3, 0, 2},
    };
    static const DType types[] = {SH_F32, SH_I64, SH_U8, SH_BOOL};
    TRng rng;
    trng_seed(&rng, 7);
    double worst = 0;
    for (int trial = 0; trial < 64; trial++) {
        const int *perm = perms[trial % 8];
        Shape s = shape_of(4, trng_int(&rng, 1, 5), trng_int(&rng, 1, 40), trng_int(&rng, 1, 9),
                           trng_int(&rng, 1, 37));
        DType dt = types[trial % 4];
        Tensor *x = iota(dt, &s), *y = NULL;
        Node *n = t_node("Transpose", 1, 1);
        node_set_ints(n, "perm", (int64_t[]){perm[0], perm[1], perm[2], perm[3]}, 4);
        assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
        Tensor *ref = tensor_new(dt, &y->shape);
        transpose_naive(ref, x, perm);
        double d = t_max_diff("  transpose vs naive", y, ref);
        worst = d > worst ? d : worst;
        assert_memory_equal(y->data, ref->data, tensor_bytes(ref));
        free_tensors((Tensor *[]){x, y, ref}, 3);
        t_node_free(n);
    }
    /* Rank 6 and rank 1 through the strided loop. */
    const int p6[] = {5, 1, 3, 0, 4, 2};
    Shape s6 = shape_of(6, (int64_t)2, (int64_t)3, (int64_t)1, (int64_t)4, (int64_t)5, (int64_t)3);
    Tensor *x = iota(SH_I64, &s6), *y = NULL;
    Node *n = t_node("Transpose", 1, 1);
    node_set_ints(n, "perm", (int64_t[]){5, 1, 3, 0, 4, 2}, 6);
    assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
    Tensor *ref = tensor_new(SH_I64, &y->shape);
    transpose_naive(ref, x, p6);
    worst = fmax(worst, t_max_diff("transpose rank 6 vs naive", y, ref));
    assert_memory_equal(y->data, ref->data, tensor_bytes(ref));
    printf("transpose: worst max abs diff vs naive %.3g (tolerance 0: exact copies)\n", worst);
    assert_true(worst == 0);
    free_tensors((Tensor *[]){x, y, ref}, 3);
    t_node_free(n);
}

static void test_transpose_zero_size_and_scalar(void **state)
{
    (void)state;
    Shape s = shape_of(3, (int64_t)2, (int64_t)0, (int64_t)3);
    Tensor *x = tensor_new(SH_F32, &s), *y = NULL;
    Node *n = t_node("Transpose", 1, 1);
    assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
    assert_shape(y, 3, (int64_t[]){3, 0, 2});
    free_tensors((Tensor *[]){x, y}, 2);
    Shape s0 = {.rank = 0};
    x = t_f32(&s0, (float[]){4.5f});
    assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
    assert_int_equal(y->shape.rank, 0);
    assert_values(y, (double[]){4.5}, 1);
    free_tensors((Tensor *[]){x, y}, 2);
    t_node_free(n);
}

static void test_transpose_bad_perm_fails(void **state)
{
    (void)state;
    Shape s = shape_of(3, (int64_t)2, (int64_t)3, (int64_t)4);
    Tensor *x = iota(SH_F32, &s);
    Node *n = t_node("Transpose", 1, 1);
    node_set_ints(n, "perm", (int64_t[]){0, 0, 1}, 3);
    assert_run_fails(n, 13, &x, 1, SH_E_ARG, "permutation");
    node_set_ints(n, "perm", (int64_t[]){1, 0}, 2);
    assert_run_fails(n, 13, &x, 1, SH_E_ARG, "rank 3");
    tensor_free(x);
    t_node_free(n);
}

/* ---- Squeeze, Unsqueeze ------------------------------------------------- */

static void test_squeeze_axes_attribute_before_opset_13(void **state)
{
    (void)state;
    Shape s = shape_of(4, (int64_t)1, (int64_t)3, (int64_t)1, (int64_t)1);
    Tensor *x = iota(SH_F32, &s), *y = NULL;
    Node *n = t_node("Squeeze", 1, 1);
    node_set_ints(n, "axes", (int64_t[]){0, -1}, 2);
    assert_int_equal(t_run(n, 11, &x, 1, &y, 1), 0);
    assert_shape(y, 2, (int64_t[]){3, 1});
    assert_values(y, (double[]){0, 1, 2}, 3);
    free_tensors((Tensor *[]){x, y}, 2);
    t_node_free(n);
}

static void test_squeeze_axes_input_from_opset_13(void **state)
{
    (void)state;
    Shape s = shape_of(3, (int64_t)1, (int64_t)3, (int64_t)1);
    Tensor *in[2] = {iota(SH_F32, &s), vec_i64(1, (int64_t[]){-3})}, *y = NULL;
    Node *n = t_node("Squeeze", 2, 1);
    assert_int_equal(t_run(n, 13, in, 2, &y, 1), 0);
    assert_shape(y, 2, (int64_t[]){3, 1});
    tensor_free(y);
    /* Opset 13 without the optional input (or with it empty) drops every 1. */
    Node *n1 = t_node("Squeeze", 1, 1);
    assert_int_equal(t_run(n1, 13, in, 1, &y, 1), 0);
    assert_shape(y, 1, (int64_t[]){3});
    tensor_free(y);
    Shape empty = shape_of(1, (int64_t)0);
    tensor_free(in[1]);
    in[1] = tensor_new(SH_I64, &empty);
    assert_int_equal(t_run(n, 13, in, 2, &y, 1), 0);
    assert_shape(y, 1, (int64_t[]){3});
    free_tensors((Tensor *[]){in[0], in[1], y}, 3);
    t_node_free(n);
    t_node_free(n1);
}

static void test_squeeze_dim_not_one_fails(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)1, (int64_t)3);
    Tensor *x = iota(SH_F32, &s);
    Node *n = t_node("Squeeze", 1, 1);
    node_set_ints(n, "axes", (int64_t[]){1}, 1);
    assert_run_fails(n, 11, &x, 1, SH_E_SHAPE, "size 3");
    node_set_ints(n, "axes", (int64_t[]){2}, 1);
    assert_run_fails(n, 11, &x, 1, SH_E_ARG, "out of range");
    node_set_ints(n, "axes", (int64_t[]){0, -2}, 2);
    assert_run_fails(n, 11, &x, 1, SH_E_ARG, "repeated");
    tensor_free(x);
    t_node_free(n);
}

static void test_unsqueeze_attribute_and_input_variants(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)3, (int64_t)4);
    Tensor *x = iota(SH_I64, &s), *y = NULL;
    Node *n = t_node("Unsqueeze", 1, 1);
    node_set_ints(n, "axes", (int64_t[]){3, 0}, 2); /* unsorted */
    assert_int_equal(t_run(n, 11, &x, 1, &y, 1), 0);
    assert_shape(y, 4, (int64_t[]){1, 3, 4, 1});
    assert_memory_equal(y->data, x->data, tensor_bytes(x));
    tensor_free(y);
    Tensor *in[2] = {x, vec_i64(2, (int64_t[]){-1, 1})};
    Node *n13 = t_node("Unsqueeze", 2, 1);
    assert_int_equal(t_run(n13, 13, in, 2, &y, 1), 0);
    assert_shape(y, 4, (int64_t[]){3, 1, 4, 1});
    free_tensors((Tensor *[]){x, in[1], y}, 3);
    t_node_free(n);
    t_node_free(n13);
}

static void test_unsqueeze_errors(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)3, (int64_t)4);
    Tensor *x = iota(SH_F32, &s);
    Node *n = t_node("Unsqueeze", 1, 1);
    assert_run_fails(n, 13, &x, 1, SH_E_FORMAT, "axes");
    node_set_ints(n, "axes", (int64_t[]){1, -3}, 2);
    assert_run_fails(n, 11, &x, 1, SH_E_ARG, "repeated");
    node_set_ints(n, "axes", (int64_t[]){0, 1, 2, 3, 4, 5, 6}, 7);
    assert_run_fails(n, 11, &x, 1, SH_E_UNSUPPORTED, "rank 9");
    tensor_free(x);
    t_node_free(n);
}

/* ---- Identity, Dropout -------------------------------------------------- */

static void test_identity_copies_bytes_of_any_dtype(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)3);
    Node *n = t_node("Identity", 1, 1);
    assert_true(n->op->flags & OP_ALIAS);
    const DType types[] = {SH_F32, SH_I64, SH_U8, SH_BOOL};
    for (int i = 0; i < 4; i++) {
        Tensor *x = iota(types[i], &s), *y = NULL;
        assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
        assert_int_equal(y->dtype, types[i]);
        assert_memory_equal(y->data, x->data, tensor_bytes(x));
        free_tensors((Tensor *[]){x, y}, 2);
    }
    t_node_free(n);
}

/* op_run skips forward for OP_ALIAS ops, so the mask is checked by
 * calling forward directly, as an executor would have to. */
static void test_dropout_is_identity_with_true_mask(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)3);
    Tensor *x = iota(SH_F32, &s), *y[2] = {NULL, NULL};
    Node *n = t_node("Dropout", 1, 2);
    node_set_float(n, "ratio", 0.5f);
    assert_int_equal(t_run(n, 12, &x, 1, y, 2), 0);
    assert_memory_equal(y[0]->data, x->data, tensor_bytes(x));
    assert_int_equal(y[1]->dtype, SH_BOOL);
    assert_true(shape_eq(&y[1]->shape, &s));
    memset(y[1]->data, 0, tensor_bytes(y[1]));
    memset(y[0]->data, 0, tensor_bytes(y[0]));
    OpCtx c = {.node = n, .opset = 12, .n_in = 1, .n_out = 2, .in = &x, .out = y};
    assert_int_equal(n->op->forward(&c), 0);
    assert_memory_equal(y[0]->data, x->data, tensor_bytes(x));
    for (int i = 0; i < 6; i++)
        assert_int_equal(tensor_u8(y[1])[i], 1);
    free_tensors((Tensor *[]){x, y[0], y[1]}, 3);
    /* Before opset 10 the mask has the input's type. */
    x = iota(SH_F32, &s);
    assert_int_equal(t_run(n, 9, &x, 1, y, 2), 0);
    assert_int_equal(y[1]->dtype, SH_F32);
    free_tensors((Tensor *[]){x, y[0], y[1]}, 3);
    t_node_free(n);
}

/* ---- Shape, Size -------------------------------------------------------- */

static void test_shape_start_end_from_opset_15(void **state)
{
    (void)state;
    Shape s = shape_of(4, (int64_t)2, (int64_t)3, (int64_t)4, (int64_t)5);
    Tensor *x = tensor_new(SH_F32, &s), *y = NULL;
    Node *n = t_node("Shape", 1, 1);
    assert_true(n->op->flags & OP_SHAPE_ONLY);
    node_set_int(n, "start", 1);
    node_set_int(n, "end", -1);
    assert_int_equal(t_run(n, 15, &x, 1, &y, 1), 0);
    assert_int_equal(y->dtype, SH_I64);
    assert_values(y, (double[]){3, 4}, 2);
    tensor_free(y);
    assert_int_equal(t_run(n, 14, &x, 1, &y, 1), 0); /* attributes ignored before 15 */
    assert_values(y, (double[]){2, 3, 4, 5}, 4);
    tensor_free(y);
    node_set_int(n, "start", -10); /* clamped */
    node_set_int(n, "end", 10);
    assert_int_equal(t_run(n, 15, &x, 1, &y, 1), 0);
    assert_values(y, (double[]){2, 3, 4, 5}, 4);
    tensor_free(y);
    node_set_int(n, "start", 3);
    node_set_int(n, "end", 1);
    assert_int_equal(t_run(n, 15, &x, 1, &y, 1), 0);
    assert_shape(y, 1, (int64_t[]){0});
    free_tensors((Tensor *[]){x, y}, 2);
    t_node_free(n);
}

static void test_size_counts_elements_as_scalar(void **state)
{
    (void)state;
    Shape s = shape_of(3, (int64_t)2, (int64_t)3, (int64_t)4);
    Tensor *x = tensor_new(SH_U8, &s), *y = NULL;
    Node *n = t_node("Size", 1, 1);
    assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
    assert_int_equal(y->shape.rank, 0);
    assert_values(y, (double[]){24}, 1);
    free_tensors((Tensor *[]){x, y}, 2);
    s.d[1] = 0;
    x = tensor_new(SH_F32, &s);
    assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
    assert_values(y, (double[]){0}, 1);
    free_tensors((Tensor *[]){x, y}, 2);
    t_node_free(n);
}

/* ---- Expand, Tile ------------------------------------------------------- */

/* Reference: each output element read from its broadcast/tiled index. */
static void repeat_naive(Tensor *y, const Tensor *x)
{
    size_t es = dtype_size(x->dtype);
    int r = y->shape.rank, lead = r - x->shape.rank;
    for (int64_t i = 0; i < y->numel; i++) {
        int64_t rem = i, idx[SH_MAX_RANK], src = 0;
        for (int k = r - 1; k >= 0; k--) {
            idx[k] = rem % y->shape.d[k];
            rem /= y->shape.d[k];
        }
        for (int k = lead; k < r; k++)
            src = src * x->shape.d[k - lead] + idx[k] % x->shape.d[k - lead];
        memcpy((char *)y->data + i * (int64_t)es, (const char *)x->data + src * (int64_t)es, es);
    }
}

static void test_expand_broadcasts_both_ways(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)3, (int64_t)1);
    Tensor *in[2] = {iota(SH_F32, &s), vec_i64(3, (int64_t[]){2, 1, 4})}, *y = NULL;
    Node *n = t_node("Expand", 2, 1);
    assert_int_equal(t_run(n, 13, in, 2, &y, 1), 0);
    assert_shape(y, 3, (int64_t[]){2, 3, 4});
    double want[24];
    for (int i = 0; i < 24; i++)
        want[i] = (i / 4) % 3;
    assert_values(y, want, 24);
    free_tensors((Tensor *[]){in[1], y}, 2);
    /* A smaller target keeps the input's larger dims. */
    in[1] = vec_i64(1, (int64_t[]){1});
    assert_int_equal(t_run(n, 13, in, 2, &y, 1), 0);
    assert_shape(y, 2, (int64_t[]){3, 1});
    free_tensors((Tensor *[]){in[0], in[1], y}, 3);
    t_node_free(n);
}

static void test_expand_incompatible_fails(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)3);
    Tensor *in[2] = {iota(SH_F32, &s), vec_i64(2, (int64_t[]){2, 4})};
    Node *n = t_node("Expand", 2, 1);
    assert_run_fails(n, 13, in, 2, SH_E_SHAPE, "broadcast");
    free_tensors(in, 2);
    t_node_free(n);
}

static void test_tile_repeats_each_axis(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)2);
    Tensor *in[2] = {iota(SH_F32, &s), vec_i64(2, (int64_t[]){2, 3})}, *y = NULL;
    Node *n = t_node("Tile", 2, 1);
    assert_int_equal(t_run(n, 13, in, 2, &y, 1), 0);
    assert_shape(y, 2, (int64_t[]){4, 6});
    assert_values(y, (double[]){0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3,
                                0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3}, 24);
    free_tensors((Tensor *[]){in[1], y}, 2);
    in[1] = vec_i64(2, (int64_t[]){0, 3});
    assert_int_equal(t_run(n, 13, in, 2, &y, 1), 0);
    assert_shape(y, 2, (int64_t[]){0, 6});
    free_tensors((Tensor *[]){in[1], y}, 2);
    in[1] = vec_i64(1, (int64_t[]){2});
    assert_run_fails(n, 13, in, 2, SH_E_SHAPE, "rank 2");
    tensor_free(in[1]);
    in[1] = vec_i64(2, (int64_t[]){1, -1});
    assert_run_fails(n, 13, in, 2, SH_E_ARG, "negative");
    free_tensors(in, 2);
    t_node_free(n);
}

static void test_expand_and_tile_match_naive(void **state)
{
    (void)state;
    TRng rng;
    trng_seed(&rng, 11);
    double worst = 0;
    for (int trial = 0; trial < 40; trial++) {
        bool tile = trial % 2;
        int r = (int)trng_int(&rng, 1, 4);
        Shape s = {.rank = r};
        int64_t arg[SH_MAX_RANK];
        for (int k = 0; k < r; k++) {
            s.d[k] = trng_int(&rng, 1, 4);
            if (tile)
                arg[k] = trng_int(&rng, 1, 3);
            else if (s.d[k] == 1)
                arg[k] = trng_int(&rng, 1, 5);
            else
                arg[k] = trng_int(&rng, 0, 1) ? s.d[k] : 1;
        }
        DType dt = trial % 3 == 0 ? SH_I64 : trial % 3 == 1 ? SH_F32 : SH_U8;
        Tensor *in[2] = {iota(dt, &s), vec_i64(r, arg)}, *y = NULL;
        Node *n = t_node(tile ? "Tile" : "Expand", 2, 1);
        assert_int_equal(t_run(n, 13, in, 2, &y, 1), 0);
        Tensor *ref = tensor_new(dt, &y->shape);
        repeat_naive(ref, in[0]);
        worst = fmax(worst, t_max_diff(tile ? "  tile vs naive" : "  expand vs naive", y, ref));
        assert_memory_equal(y->data, ref->data, tensor_bytes(ref));
        free_tensors((Tensor *[]){in[0], in[1], y, ref}, 4);
        t_node_free(n);
    }
    printf("expand/tile: worst max abs diff vs naive %.3g (tolerance 0)\n", worst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flatten_default_axis_keeps_first_dim),
        cmocka_unit_test(test_flatten_axis_zero_end_and_negative),
        cmocka_unit_test(test_flatten_axis_out_of_range_fails),
        cmocka_unit_test(test_reshape_zero_copies_dim_and_minus_one_infers),
        cmocka_unit_test(test_reshape_allowzero_keeps_zero_from_opset_14),
        cmocka_unit_test(test_reshape_incompatible_sizes_fails_naming_node_and_shapes),
        cmocka_unit_test(test_transpose_default_reverses_axes),
        cmocka_unit_test(test_transpose_nchw_to_nhwc_hand_values),
        cmocka_unit_test(test_transpose_fast_paths_match_naive),
        cmocka_unit_test(test_transpose_zero_size_and_scalar),
        cmocka_unit_test(test_transpose_bad_perm_fails),
        cmocka_unit_test(test_squeeze_axes_attribute_before_opset_13),
        cmocka_unit_test(test_squeeze_axes_input_from_opset_13),
        cmocka_unit_test(test_squeeze_dim_not_one_fails),
        cmocka_unit_test(test_unsqueeze_attribute_and_input_variants),
        cmocka_unit_test(test_unsqueeze_errors),
        cmocka_unit_test(test_identity_copies_bytes_of_any_dtype),
        cmocka_unit_test(test_dropout_is_identity_with_true_mask),
        cmocka_unit_test(test_shape_start_end_from_opset_15),
        cmocka_unit_test(test_size_counts_elements_as_scalar),
        cmocka_unit_test(test_expand_broadcasts_both_ways),
        cmocka_unit_test(test_expand_incompatible_fails),
        cmocka_unit_test(test_tile_repeats_each_axis),
        cmocka_unit_test(test_expand_and_tile_match_naive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
