/* Slicing ops against hand-computed values, opset variants, errors, and
 * (Slice, Pad) naive per-element references. */
#include "core/error.h"
#include "tests/support/testutil.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
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

/* Element i holds i (scaled for int64, mod 251 for bytes). */
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

static void assert_run_fails(Node *n, int opset, Tensor **in, int n_in, int code, const char *phrase)
{
    Tensor *out[16] = {NULL};
    int rc = t_run(n, opset, in, n_in, out, n->n_out);
    if (rc != code)
        fail_msg("rc %d (%s), want %d", rc, sh_errmsg(), code);
    if (!strstr(sh_errmsg(), n->name) || !strstr(sh_errmsg(), phrase))
        fail_msg("message '%s' lacks '%s' or the node name", sh_errmsg(), phrase);
    for (int i = 0; i < 16; i++)
        assert_null(out[i]);
    printf("  expected error: %s\n", sh_errmsg());
}

static void free_tensors(Tensor **t, int n)
{
    for (int i = 0; i < n; i++)
        tensor_free(t[i]);
}

/* ---- Concat ------------------------------------------------------------- */

static void test_concat_axis_one_hand_values(void **state)
{
    (void)state;
    Shape a = shape_of(2, (int64_t)2, (int64_t)2), b = shape_of(2, (int64_t)2, (int64_t)1);
    Tensor *in[2] = {t_f32(&a, (float[]){1, 2, 3, 4}), t_f32(&b, (float[]){9, 8})}, *y = NULL;
    Node *n = t_node("Concat", 2, 1);
    node_set_int(n, "axis", 1);
    assert_int_equal(t_run(n, 13, in, 2, &y, 1), 0);
    assert_shape(y, 2, (int64_t[]){2, 3});
    assert_values(y, (double[]){1, 2, 9, 3, 4, 8}, 6);
    free_tensors((Tensor *[]){in[0], in[1], y}, 3);
    t_node_free(n);
}

static void test_concat_negative_axis_with_zero_size_input(void **state)
{
    (void)state;
    Shape s0 = shape_of(3, (int64_t)2, (int64_t)0, (int64_t)2);
    Shape s1 = shape_of(3, (int64_t)2, (int64_t)2, (int64_t)2);
    Shape s2 = shape_of(3, (int64_t)2, (int64_t)1, (int64_t)2);
    Tensor *in[3] = {tensor_new(SH_I64, &s0), iota(SH_I64, &s1), iota(SH_I64, &s2)}, *y = NULL;
    Node *n = t_node("Concat", 3, 1);
    node_set_int(n, "axis", -2);
    assert_int_equal(t_run(n, 13, in, 3, &y, 1), 0);
    assert_shape(y, 3, (int64_t[]){2, 3, 2});
    const double k = 1000003;
    assert_values(y, (double[]){0, k, 2 * k, 3 * k, 0, k, 4 * k, 5 * k, 6 * k, 7 * k, 2 * k, 3 * k}, 12);
    free_tensors((Tensor *[]){in[0], in[1], in[2], y}, 4);
    t_node_free(n);
}

static void test_concat_mismatched_inputs_fail(void **state)
{
    (void)state;
    Shape a = shape_of(2, (int64_t)2, (int64_t)2), b = shape_of(2, (int64_t)3, (int64_t)1);
    Tensor *in[2] = {iota(SH_F32, &a), iota(SH_F32, &b)};
    Node *n = t_node("Concat", 2, 1);
    node_set_int(n, "axis", 1);
    assert_run_fails(n, 13, in, 2, SH_E_SHAPE, "input 1 shape [3,1]");
    tensor_free(in[1]);
    in[1] = iota(SH_I64, &a);
    assert_run_fails(n, 13, in, 2, SH_E_SHAPE, "int64");
    Node *no_axis = t_node("Concat", 2, 1);
    assert_run_fails(no_axis, 13, in, 2, SH_E_FORMAT, "axis");
    free_tensors(in, 2);
    t_node_free(n);
    t_node_free(no_axis);
}

/* ---- Split -------------------------------------------------------------- */

static void test_split_attribute_before_opset_13(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)6);
    Tensor *x = iota(SH_F32, &s), *y[2] = {NULL, NULL};
    Node *n = t_node("Split", 1, 2);
    node_set_ints(n, "split", (int64_t[]){2, 4}, 2);
    assert_int_equal(t_run(n, 11, &x, 1, y, 2), 0);
    assert_values(y[0], (double[]){0, 1}, 2);
    assert_values(y[1], (double[]){2, 3, 4, 5}, 4);
    free_tensors((Tensor *[]){x, y[0], y[1]}, 3);
    t_node_free(n);
}

static void test_split_input_from_opset_13_with_zero_part(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)5);
    Tensor *in[2] = {iota(SH_F32, &s), vec_i64(3, (int64_t[]){2, 0, 3})}, *y[3] = {NULL};
    Node *n = t_node("Split", 2, 3);
    node_set_int(n, "axis", -1);
    assert_int_equal(t_run(n, 13, in, 2, y, 3), 0);
    assert_shape(y[0], 2, (int64_t[]){2, 2});
    assert_shape(y[1], 2, (int64_t[]){2, 0});
    assert_shape(y[2], 2, (int64_t[]){2, 3});
    assert_values(y[0], (double[]){0, 1, 5, 6}, 4);
    assert_values(y[2], (double[]){2, 3, 4, 7, 8, 9}, 6);
    free_tensors((Tensor *[]){in[0], in[1], y[0], y[1], y[2]}, 5);
    t_node_free(n);
}

static void test_split_equal_parts_by_default(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)6);
    Tensor *x = iota(SH_U8, &s), *y[3] = {NULL};
    Node *n = t_node("Split", 1, 3);
    node_set_int(n, "axis", 1);
    assert_int_equal(t_run(n, 13, &x, 1, y, 3), 0);
    assert_values(y[0], (double[]){0, 1, 6, 7}, 4);
    assert_values(y[1], (double[]){2, 3, 8, 9}, 4);
    assert_values(y[2], (double[]){4, 5, 10, 11}, 4);
    free_tensors((Tensor *[]){x, y[0], y[1], y[2]}, 4);
    t_node_free(n);
}

static void test_split_bad_sizes_fail(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)5);
    Tensor *in[2] = {iota(SH_F32, &s), vec_i64(2, (int64_t[]){2, 2})};
    Node *n = t_node("Split", 1, 2);
    assert_run_fails(n, 13, in, 1, SH_E_SHAPE, "2 equal parts");
    Node *n2 = t_node("Split", 2, 2);
    assert_run_fails(n2, 13, in, 2, SH_E_SHAPE, "add up to 4");
    Node *n3 = t_node("Split", 2, 3);
    assert_run_fails(n3, 13, in, 2, SH_E_ARG, "2 sizes for 3 outputs");
    free_tensors(in, 2);
    t_node_free(n);
    t_node_free(n2);
    t_node_free(n3);
}

/* ---- Slice -------------------------------------------------------------- */

/* Runs Slice from opset 10 with inputs; axes/steps may be NULL. */
static int slice10(const Tensor *x, int n, const int64_t *starts, const int64_t *ends,
                   const int64_t *axes, const int64_t *steps, Tensor **y)
{
    Node *node = t_node("Slice", 5, 1);
    Tensor *in[5] = {(Tensor *)x, vec_i64(n, starts), vec_i64(n, ends),
                     axes ? vec_i64(n, axes) : NULL, steps ? vec_i64(n, steps) : NULL};
    int rc = t_run(node, 13, in, 5, y, 1);
    free_tensors(in + 1, 4);
    t_node_free(node);
    return rc;
}

static void test_slice_attributes_before_opset_10(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)3, (int64_t)4);
    Tensor *x = iota(SH_F32, &s), *y = NULL;
    Node *n = t_node("Slice", 1, 1);
    node_set_ints(n, "starts", (int64_t[]){1, 0}, 2);
    node_set_ints(n, "ends", (int64_t[]){3, -1}, 2);
    assert_int_equal(t_run(n, 9, &x, 1, &y, 1), 0);
    assert_shape(y, 2, (int64_t[]){2, 3});
    assert_values(y, (double[]){4, 5, 6, 8, 9, 10}, 6);
    tensor_free(y);
    node_set_ints(n, "axes", (int64_t[]){1}, 1);
    node_set_ints(n, "starts", (int64_t[]){2}, 1);
    node_set_ints(n, "ends", (int64_t[]){100}, 1);
    assert_int_equal(t_run(n, 1, &x, 1, &y, 1), 0);
    assert_values(y, (double[]){2, 3, 6, 7, 10, 11}, 6);
    free_tensors((Tensor *[]){x, y}, 2);
    t_node_free(n);
}

static void test_slice_inputs_with_steps_and_negative_axes(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)5);
    Tensor *x = iota(SH_F32, &s), *y = NULL;
    assert_int_equal(slice10(x, 1, (int64_t[]){0}, (int64_t[]){5}, (int64_t[]){-1}, (int64_t[]){2}, &y), 0);
    assert_shape(y, 2, (int64_t[]){2, 3});
    assert_values(y, (double[]){0, 2, 4, 5, 7, 9}, 6);
    free_tensors((Tensor *[]){x, y}, 2);
}

static void test_slice_negative_steps_reverse_and_clamp(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)5);
    Tensor *x = iota(SH_I64, &s), *y = NULL;
    const double k = 1000003;
    assert_int_equal(slice10(x, 1, (int64_t[]){-1}, (int64_t[]){INT64_MIN}, NULL, (int64_t[]){-1}, &y), 0);
    assert_values(y, (double[]){4 * k, 3 * k, 2 * k, k, 0}, 5);
    tensor_free(y);
    assert_int_equal(slice10(x, 1, (int64_t[]){10}, (int64_t[]){0}, NULL, (int64_t[]){-2}, &y), 0);
    assert_values(y, (double[]){4 * k, 2 * k}, 2);
    tensor_free(y);
    assert_int_equal(slice10(x, 1, (int64_t[]){3}, (int64_t[]){-100}, NULL, (int64_t[]){INT64_MIN}, &y), 0);
    assert_values(y, (double[]){3 * k}, 1);
    free_tensors((Tensor *[]){x, y}, 2);
}

static void test_slice_out_of_range_starts_and_int64_max_ends_clamp(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)4);
    Tensor *x = iota(SH_F32, &s), *y = NULL;
    assert_int_equal(slice10(x, 1, (int64_t[]){-100}, (int64_t[]){INT64_MAX}, NULL, NULL, &y), 0);
    assert_values(y, (double[]){0, 1, 2, 3}, 4);
    tensor_free(y);
    assert_int_equal(slice10(x, 1, (int64_t[]){10}, (int64_t[]){20}, NULL, NULL, &y), 0);
    assert_shape(y, 1, (int64_t[]){0});
    tensor_free(y);
    assert_int_equal(slice10(x, 1, (int64_t[]){1}, (int64_t[]){INT64_MAX}, NULL, (int64_t[]){INT64_MAX}, &y), 0);
    assert_values(y, (double[]){1}, 1);
    free_tensors((Tensor *[]){x, y}, 2);
}

static void test_slice_bad_arguments_fail(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)3, (int64_t)4);
    Node *n = t_node("Slice", 5, 1);
    Tensor *in[5] = {iota(SH_F32, &s), vec_i64(1, (int64_t[]){0}), vec_i64(1, (int64_t[]){2}),
                     vec_i64(1, (int64_t[]){1}), vec_i64(1, (int64_t[]){0})};
    assert_run_fails(n, 13, in, 5, SH_E_ARG, "step for axis 1 is 0");
    tensor_free(in[4]);
    in[4] = NULL;
    tensor_free(in[3]);
    in[3] = vec_i64(1, (int64_t[]){2});
    Node *n2 = t_node("Slice", 5, 1);
    assert_run_fails(n2, 13, in, 5, SH_E_ARG, "out of range");
    tensor_free(in[3]);
    in[3] = NULL;
    tensor_free(in[2]);
    in[2] = vec_i64(2, (int64_t[]){2, 2});
    Node *n3 = t_node("Slice", 5, 1);
    assert_run_fails(n3, 13, in, 5, SH_E_ARG, "different lengths");
    free_tensors(in, 5);
    t_node_free(n);
    t_node_free(n2);
    t_node_free(n3);
}

/* Reference: the index list of each axis by the spec's words (negative
 * values count from the end, then clamp to [0, dim] for positive steps and
 * [0, dim-1] / [-1, dim-1] for negative ones; unlike numpy, a start below
 * -dim with a negative step still takes index 0, as ONNX Runtime does),
 * then every output element from its per-axis indices. */
static int naive_slice_indices(int64_t dim, int64_t start, int64_t end, int64_t step, int64_t *out)
{
    int n = 0;
    int64_t s = start < 0 ? start + dim : start, e = end < 0 ? end + dim : end;
    if (dim == 0)
        return 0;
    if (step > 0) {
        s = s < 0 ? 0 : s > dim ? dim : s;
        e = e < 0 ? 0 : e > dim ? dim : e;
        for (int64_t i = s; i < e; i += step)
            out[n++] = i;
    } else {
        s = s < 0 ? 0 : s > dim - 1 ? dim - 1 : s;
        e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
        for (int64_t i = s; i > e; i += step)
            out[n++] = i;
    }
    return n;
}

static void test_slice_matches_naive(void **state)
{
    (void)state;
    TRng rng;
    trng_seed(&rng, 3);
    double worst = 0;
    for (int trial = 0; trial < 200; trial++) {
        int r = (int)trng_int(&rng, 1, 4);
        Shape s = {.rank = r};
        for (int a = 0; a < r; a++)
            s.d[a] = trng_int(&rng, 0, 6);
        int64_t starts[4], ends[4], axes[4], steps[4], idx[4][16], len[4];
        for (int a = 0; a < r; a++) {
            axes[a] = (a + trial) % r - (trial % 2 ? r : 0); /* rotated, sometimes negative */
            starts[a] = trng_int(&rng, -8, 8);
            ends[a] = trial % 7 == 0 ? (trial % 2 ? INT64_MAX : INT64_MIN) : trng_int(&rng, -8, 8);
            steps[a] = trng_int(&rng, 1, 3) * (trng_int(&rng, 0, 1) ? 1 : -1);
        }
        for (int a = 0; a < r; a++) {
            int ax = (int)(axes[a] < 0 ? axes[a] + r : axes[a]);
            len[ax] = naive_slice_indices(s.d[ax], starts[a], ends[a], steps[a], idx[ax]);
        }
        Tensor *x = iota(trial % 2 ? SH_F32 : SH_U8, &s), *y = NULL;
        assert_int_equal(slice10(x, r, starts, ends, axes, steps, &y), 0);
        Shape os = shape_make(r, len);
        Tensor *ref = tensor_new(x->dtype, &os);
        size_t es = dtype_size(x->dtype);
        for (int64_t i = 0; i < ref->numel; i++) {
            int64_t rem = i, src = 0, o[4];
            for (int a = r - 1; a >= 0; a--) {
                o[a] = rem % len[a];
                rem /= len[a];
            }
            for (int a = 0; a < r; a++)
                src = src * s.d[a] + idx[a][o[a]];
            memcpy((char *)ref->data + i * (int64_t)es, (char *)x->data + src * (int64_t)es, es);
        }
        worst = fmax(worst, t_max_diff("  slice vs naive", y, ref));
        if (!shape_eq(&y->shape, &ref->shape)) {
            char a[64], b[64], c[64];
            for (int a2 = 0; a2 < r; a2++)
                printf("  axis %lld: start %lld end %lld step %lld\n", (long long)axes[a2],
                       (long long)starts[a2], (long long)ends[a2], (long long)steps[a2]);
            fail_msg("input %s: got %s, want %s", shape_str(&s, a, sizeof a),
                     shape_str(&y->shape, b, sizeof b), shape_str(&ref->shape, c, sizeof c));
        }
        if (ref->numel)
            assert_memory_equal(y->data, ref->data, tensor_bytes(ref));
        free_tensors((Tensor *[]){x, y, ref}, 3);
    }
    printf("slice: worst max abs diff vs naive %.3g (tolerance 0)\n", worst);
}

/* ---- Gather, GatherElements --------------------------------------------- */

static void test_gather_axis0_picks_rows(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)3, (int64_t)2);
    Tensor *in[2] = {iota(SH_F32, &s), vec_i64(3, (int64_t[]){2, 0, 2})}, *y = NULL;
    Node *n = t_node("Gather", 2, 1);
    assert_int_equal(t_run(n, 13, in, 2, &y, 1), 0);
    assert_shape(y, 2, (int64_t[]){3, 2});
    assert_values(y, (double[]){4, 5, 0, 1, 4, 5}, 6);
    free_tensors((Tensor *[]){in[0], in[1], y}, 3);
    t_node_free(n);
}

static void test_gather_axis1_negative_2d_indices(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)3), is = shape_of(2, (int64_t)2, (int64_t)2);
    Tensor *in[2] = {iota(SH_F32, &s), t_i64(&is, (int64_t[]){-1, 0, 1, 1})}, *y = NULL;
    Node *n = t_node("Gather", 2, 1);
    node_set_int(n, "axis", -1);
    assert_int_equal(t_run(n, 13, in, 2, &y, 1), 0);
    assert_shape(y, 3, (int64_t[]){2, 2, 2});
    assert_values(y, (double[]){2, 0, 1, 1, 5, 3, 4, 4}, 8);
    free_tensors((Tensor *[]){in[0], in[1], y}, 3);
    t_node_free(n);
}

static void test_gather_scalar_index_drops_axis(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)3, (int64_t)2), s0 = {.rank = 0};
    Tensor *in[2] = {iota(SH_U8, &s), t_i64(&s0, (int64_t[]){1})}, *y = NULL;
    Node *n = t_node("Gather", 2, 1);
    assert_int_equal(t_run(n, 13, in, 2, &y, 1), 0);
    assert_shape(y, 1, (int64_t[]){2});
    assert_values(y, (double[]){2, 3}, 2);
    free_tensors((Tensor *[]){in[1], y}, 2);
    Shape empty = shape_of(1, (int64_t)0);
    in[1] = tensor_new(SH_I64, &empty);
    assert_int_equal(t_run(n, 13, in, 2, &y, 1), 0);
    assert_shape(y, 2, (int64_t[]){0, 2});
    free_tensors((Tensor *[]){in[0], in[1], y}, 3);
    t_node_free(n);
}

static void test_gather_index_out_of_range_fails(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)3, (int64_t)2);
    Tensor *in[2] = {iota(SH_F32, &s), vec_i64(2, (int64_t[]){0, 3})};
    Node *n = t_node("Gather", 2, 1);
    assert_run_fails(n, 13, in, 2, SH_E_ARG, "index 3 is out of range for axis 0 of size 3");
    tensor_free(in[1]);
    in[1] = vec_i64(1, (int64_t[]){-4});
    assert_run_fails(n, 13, in, 2, SH_E_ARG, "index -4");
    tensor_free(in[1]);
    Shape fs = shape_of(1, (int64_t)1);
    in[1] = t_f32(&fs, (float[]){0});
    assert_run_fails(n, 13, in, 2, SH_E_UNSUPPORTED, "int64");
    free_tensors(in, 2);
    t_node_free(n);
}

static void test_gather_elements_onnx_examples(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)2);
    Tensor *in[2] = {t_f32(&s, (float[]){1, 2, 3, 4}), t_i64(&s, (int64_t[]){0, 0, 1, 0})}, *y = NULL;
    Node *n = t_node("GatherElements", 2, 1);
    node_set_int(n, "axis", 1);
    assert_int_equal(t_run(n, 13, in, 2, &y, 1), 0);
    assert_values(y, (double[]){1, 1, 4, 3}, 4);
    free_tensors((Tensor *[]){in[0], in[1], y}, 3);
    Shape d = shape_of(2, (int64_t)3, (int64_t)3), is = shape_of(2, (int64_t)2, (int64_t)3);
    in[0] = t_f32(&d, (float[]){1, 2, 3, 4, 5, 6, 7, 8, 9});
    in[1] = t_i64(&is, (int64_t[]){1, 2, 0, 2, 0, -3});
    node_set_int(n, "axis", 0);
    assert_int_equal(t_run(n, 13, in, 2, &y, 1), 0);
    assert_shape(y, 2, (int64_t[]){2, 3});
    assert_values(y, (double[]){4, 8, 3, 7, 2, 3}, 6);
    tensor_free(y);
    tensor_i64(in[1])[4] = 3;
    assert_run_fails(n, 13, in, 2, SH_E_ARG, "index 3 is out of range");
    free_tensors(in, 2);
    t_node_free(n);
}

/* ---- Pad ---------------------------------------------------------------- */

static void test_pad_constant_attribute_before_opset_11(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)2);
    Tensor *x = t_f32(&s, (float[]){1, 2, 3, 4}), *y = NULL;
    Node *n = t_node("Pad", 1, 1);
    node_set_ints(n, "pads", (int64_t[]){0, 1, 1, 0}, 4); /* begin h,w; end h,w */
    node_set_float(n, "value", 9.5f);
    assert_int_equal(t_run(n, 9, &x, 1, &y, 1), 0);
    assert_shape(y, 2, (int64_t[]){3, 3});
    assert_values(y, (double[]){9.5, 1, 2, 9.5, 3, 4, 9.5, 9.5, 9.5}, 9);
    free_tensors((Tensor *[]){x, y}, 2);
    t_node_free(n);
}

static void test_pad_inputs_from_opset_11_with_constant_value(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)3), s0 = {.rank = 0};
    Tensor *in[3] = {t_i64(&s, (int64_t[]){5, 6, 7}), vec_i64(2, (int64_t[]){1, 2}),
                     t_i64(&s0, (int64_t[]){-1})}, *y = NULL;
    Node *n = t_node("Pad", 3, 1);
    assert_int_equal(t_run(n, 11, in, 3, &y, 1), 0);
    assert_values(y, (double[]){-1, 5, 6, 7, -1, -1}, 6);
    tensor_free(y);
    Tensor *no_value[3] = {in[0], in[1], NULL};
    Node *n2 = t_node("Pad", 3, 1);
    assert_int_equal(t_run(n2, 13, no_value, 3, &y, 1), 0);
    assert_values(y, (double[]){0, 5, 6, 7, 0, 0}, 6);
    free_tensors((Tensor *[]){in[0], in[1], in[2], y}, 4);
    t_node_free(n);
    t_node_free(n2);
}

static void test_pad_reflect_edge_and_negative_crop(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)4);
    Tensor *in[2] = {t_f32(&s, (float[]){1, 2, 3, 4}), vec_i64(2, (int64_t[]){2, 3})}, *y = NULL;
    Node *n = t_node("Pad", 2, 1);
    node_set_str(n, "mode", "reflect");
    assert_int_equal(t_run(n, 13, in, 2, &y, 1), 0);
    assert_values(y, (double[]){3, 2, 1, 2, 3, 4, 3, 2, 1}, 9);
    tensor_free(y);
    node_set_str(n, "mode", "edge");
    assert_int_equal(t_run(n, 13, in, 2, &y, 1), 0);
    assert_values(y, (double[]){1, 1, 1, 2, 3, 4, 4, 4, 4}, 9);
    tensor_free(y);
    tensor_free(in[1]);
    in[1] = vec_i64(2, (int64_t[]){-1, 1});
    node_set_str(n, "mode", "constant");
    assert_int_equal(t_run(n, 13, in, 2, &y, 1), 0);
    assert_values(y, (double[]){2, 3, 4, 0}, 4);
    free_tensors((Tensor *[]){in[0], in[1], y}, 3);
    t_node_free(n);
}

static void test_pad_bad_arguments_fail(void **state)
{
    (void)state;
    Shape s = shape_of(1, (int64_t)3);
    Tensor *in[2] = {iota(SH_F32, &s), vec_i64(2, (int64_t[]){3, 0})};
    Node *n = t_node("Pad", 2, 1);
    node_set_str(n, "mode", "reflect");
    assert_run_fails(n, 13, in, 2, SH_E_SHAPE, "reflect");
    node_set_str(n, "mode", "wrap");
    assert_run_fails(n, 13, in, 2, SH_E_UNSUPPORTED, "wrap");
    tensor_free(in[1]);
    in[1] = vec_i64(1, (int64_t[]){1});
    node_set_str(n, "mode", "constant");
    assert_run_fails(n, 13, in, 2, SH_E_ARG, "expected 2");
    tensor_free(in[1]);
    in[1] = vec_i64(2, (int64_t[]){-2, -2});
    assert_run_fails(n, 13, in, 2, SH_E_SHAPE, "negative size");
    free_tensors(in, 2);
    t_node_free(n);
}

/* Reference: each output coordinate mapped back per axis by the mode. */
static double naive_pad_at(const Tensor *x, const int64_t *pads, const char *mode, const int64_t *o)
{
    int r = x->shape.rank;
    int64_t src = 0;
    for (int a = 0; a < r; a++) {
        int64_t d = x->shape.d[a], i = o[a] - pads[a];
        if (i < 0 || i >= d) {
            if (!strcmp(mode, "constant"))
                return -7; /* the constant used below */
            if (!strcmp(mode, "edge"))
                i = i < 0 ? 0 : d - 1;
            else
                while (i < 0 || i >= d)
                    i = i < 0 ? -i : 2 * (d - 1) - i;
        }
        src = src * d + i;
    }
    return tensor_get_f(x, src);
}

static void test_pad_matches_naive(void **state)
{
    (void)state;
    static const char *const modes[] = {"constant", "reflect", "edge"};
    TRng rng;
    trng_seed(&rng, 5);
    double worst = 0;
    for (int trial = 0; trial < 90; trial++) {
        const char *mode = modes[trial % 3];
        int r = (int)trng_int(&rng, 1, 4);
        Shape s = {.rank = r};
        int64_t pads[8];
        for (int a = 0; a < r; a++) {
            s.d[a] = trng_int(&rng, 2, 5);
            pads[a] = trng_int(&rng, -1, s.d[a] - 1);
            pads[a + r] = trng_int(&rng, -1, s.d[a] - 1);
        }
        Shape s0 = {.rank = 0};
        Tensor *in[3] = {iota(SH_F32, &s), vec_i64(2 * r, pads), t_f32(&s0, (float[]){-7})}, *y = NULL;
        Node *n = t_node("Pad", 3, 1);
        node_set_str(n, "mode", mode);
        assert_int_equal(t_run(n, 13, in, 3, &y, 1), 0);
        Tensor *ref = tensor_new(SH_F32, &y->shape);
        for (int64_t i = 0; i < ref->numel; i++) {
            int64_t rem = i, o[4];
            for (int a = r - 1; a >= 0; a--) {
                o[a] = rem % y->shape.d[a];
                rem /= y->shape.d[a];
            }
            tensor_f32(ref)[i] = (float)naive_pad_at(in[0], pads, mode, o);
        }
        worst = fmax(worst, t_max_diff("  pad vs naive", y, ref));
        assert_true(t_allclose(y, ref, 0, 0));
        free_tensors((Tensor *[]){in[0], in[1], in[2], y, ref}, 5);
        t_node_free(n);
    }
    printf("pad: worst max abs diff vs naive %.3g (tolerance 0)\n", worst);
}

/* ---- DepthToSpace, SpaceToDepth ----------------------------------------- */

/* The ONNX documentation's example input [1, 8, 2, 3]. */
static Tensor *depth_example(void)
{
    Shape s = shape_of(4, (int64_t)1, (int64_t)8, (int64_t)2, (int64_t)3);
    Tensor *x = tensor_new(SH_F32, &s);
    for (int64_t c = 0; c < 8; c++)
        for (int64_t i = 0; i < 6; i++)
            tensor_f32(x)[c * 6 + i] = (float)(c * 9 + i);
    return x;
}

static void test_depth_to_space_dcr_and_crd_examples(void **state)
{
    (void)state;
    Tensor *x = depth_example(), *y = NULL;
    Node *n = t_node("DepthToSpace", 1, 1);
    node_set_int(n, "blocksize", 2);
    assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
    assert_shape(y, 4, (int64_t[]){1, 2, 4, 6});
    assert_values(y, (double[]){0, 18, 1, 19, 2, 20, 36, 54, 37, 55, 38, 56, 3, 21, 4, 22, 5, 23,
                                39, 57, 40, 58, 41, 59, 9, 27, 10, 28, 11, 29, 45, 63, 46, 64, 47, 65,
                                12, 30, 13, 31, 14, 32, 48, 66, 49, 67, 50, 68}, 48);
    tensor_free(y);
    node_set_str(n, "mode", "CRD");
    assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
    assert_values(y, (double[]){0, 9, 1, 10, 2, 11, 18, 27, 19, 28, 20, 29, 3, 12, 4, 13, 5, 14,
                                21, 30, 22, 31, 23, 32, 36, 45, 37, 46, 38, 47, 54, 63, 55, 64, 56, 65,
                                39, 48, 40, 49, 41, 50, 57, 66, 58, 67, 59, 68}, 48);
    free_tensors((Tensor *[]){x, y}, 2);
    t_node_free(n);
}

static void test_space_to_depth_inverts_depth_to_space(void **state)
{
    (void)state;
    Tensor *x = depth_example(), *y = NULL, *z = NULL;
    Node *d2s = t_node("DepthToSpace", 1, 1), *s2d = t_node("SpaceToDepth", 1, 1);
    node_set_int(d2s, "blocksize", 2);
    node_set_int(s2d, "blocksize", 2);
    assert_int_equal(t_run(d2s, 13, &x, 1, &y, 1), 0);
    assert_int_equal(t_run(s2d, 13, &y, 1, &z, 1), 0);
    assert_true(shape_eq(&z->shape, &x->shape));
    assert_memory_equal(z->data, x->data, tensor_bytes(x));
    tensor_free(z);
    node_set_int(s2d, "blocksize", 4);
    assert_run_fails(s2d, 13, &y, 1, SH_E_SHAPE, "divisible by blocksize 4");
    node_set_int(d2s, "blocksize", 3);
    assert_run_fails(d2s, 13, &x, 1, SH_E_SHAPE, "not divisible");
    free_tensors((Tensor *[]){x, y}, 2);
    t_node_free(d2s);
    t_node_free(s2d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concat_axis_one_hand_values),
        cmocka_unit_test(test_concat_negative_axis_with_zero_size_input),
        cmocka_unit_test(test_concat_mismatched_inputs_fail),
        cmocka_unit_test(test_split_attribute_before_opset_13),
        cmocka_unit_test(test_split_input_from_opset_13_with_zero_part),
        cmocka_unit_test(test_split_equal_parts_by_default),
        cmocka_unit_test(test_split_bad_sizes_fail),
        cmocka_unit_test(test_slice_attributes_before_opset_10),
        cmocka_unit_test(test_slice_inputs_with_steps_and_negative_axes),
        cmocka_unit_test(test_slice_negative_steps_reverse_and_clamp),
        cmocka_unit_test(test_slice_out_of_range_starts_and_int64_max_ends_clamp),
        cmocka_unit_test(test_slice_bad_arguments_fail),
        cmocka_unit_test(test_slice_matches_naive),
        cmocka_unit_test(test_gather_axis0_picks_rows),
        cmocka_unit_test(test_gather_axis1_negative_2d_indices),
        cmocka_unit_test(test_gather_scalar_index_drops_axis),
        cmocka_unit_test(test_gather_index_out_of_range_fails),
        cmocka_unit_test(test_gather_elements_onnx_examples),
        cmocka_unit_test(test_pad_constant_attribute_before_opset_11),
        cmocka_unit_test(test_pad_inputs_from_opset_11_with_constant_value),
        cmocka_unit_test(test_pad_reflect_edge_and_negative_crop),
        cmocka_unit_test(test_pad_bad_arguments_fail),
        cmocka_unit_test(test_pad_matches_naive),
        cmocka_unit_test(test_depth_to_space_dcr_and_crd_examples),
        cmocka_unit_test(test_space_to_depth_inverts_depth_to_space),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
