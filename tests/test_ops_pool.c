/* Pooling ops against the naive reference kernels on random shapes, with
 * hand-computed cases for ceil_mode, Indices and count_include_pad. */
#include "tests/support/testutil.h"

#include "core/error.h"
#include "core/ops/kernels.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#define RTOL 1e-4
#define ATOL 1e-5

static const char *const AUTO_PADS[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};

typedef struct {
    int nd;
    int64_t n, c, in[3], k[3], stride[3], dil[3], pb[3], pe[3];
    int auto_pad, ceil_mode;
} Case;

static Shape shape_nc(int64_t n, int64_t c, int nd, const int64_t *sp)
{
    Shape s = {.rank = nd + 2};
    s.d[0] = n;
    s.d[1] = c;
    for (int i = 0; i < nd; i++)
        s.d[2 + i] = sp[i];
    return s;
}

/* Expected geometry from the spec's formulas; false when no window fits. */
static bool expected_pool_shape(const Case *k, PoolShape *s)
{
    memset(s, 0, sizeof *s);
    s->n = k->n;
    s->c = k->c;
    for (int a = 0; a < 3; a++)
        s->in[a] = s->out[a] = s->k[a] = s->stride[a] = s->dil[a] = 1;
    for (int i = 0; i < k->nd; i++) {
        const int a = 3 - k->nd + i;
        const int64_t ek = (k->k[i] - 1) * k->dil[i] + 1;
        int64_t out, pb = k->pb[i], pe = k->pe[i];
        const char *ap = AUTO_PADS[k->auto_pad];
        if (strncmp(ap, "SAME", 4) == 0) {
            out = (k->in[i] + k->stride[i] - 1) / k->stride[i];
            int64_t total = (out - 1) * k->stride[i] + ek - k->in[i];
            total = total < 0 ? 0 : total;
            pb = strcmp(ap, "SAME_UPPER") == 0 ? total / 2 : total - total / 2;
            pe = total - pb;
        } else {
            if (strcmp(ap, "VALID") == 0)
                pb = pe = 0;
            const int64_t span = k->in[i] + pb + pe;
            if (span < ek)
                return false;
            double steps = (double)(span - ek) / (double)k->stride[i];
            out = (int64_t)(k->ceil_mode ? ceil(steps) : floor(steps)) + 1;
            /* the last window must start inside the input or left padding */
            if (k->ceil_mode && (out - 1) * k->stride[i] >= k->in[i] + pb)
                out--;
        }
        s->in[a] = k->in[i];
        s->out[a] = out;
        s->k[a] = k->k[i];
        s->stride[a] = k->stride[i];
        s->dil[a] = k->dil[i];
        s->pad[a] = pb;
        s->pad_end[a] = pe;
    }
    return true;
}

static Node *pool_node(const char *op, const Case *k, int n_out)
{
    Node *n = t_node(op, 1, n_out);
    int64_t pads[6];
    for (int i = 0; i < k->nd; i++) {
        pads[i] = k->pb[i];
        pads[k->nd + i] = k->pe[i];
    }
    node_set_ints(n, "kernel_shape", k->k, k->nd);
    node_set_ints(n, "strides", k->stride, k->nd);
    if (strcmp(op, "MaxPool") == 0)
        node_set_ints(n, "dilations", k->dil, k->nd);
    if (k->auto_pad)
        node_set_str(n, "auto_pad", AUTO_PADS[k->auto_pad]);
    else
        node_set_ints(n, "pads", pads, 2 * k->nd);
    node_set_int(n, "ceil_mode", k->ceil_mode);
    return n;
}

static Case random_case(TRng *r, bool dilations)
{
    Case k = {0};
    k.nd = (int)trng_int(r, 1, 3);
    k.n = trng_int(r, 1, 3);
    k.c = trng_int(r, 1, 4);
    const int64_t max_in = k.nd == 3 ? 7 : k.nd == 2 ? 11 : 17;
    for (int i = 0; i < k.nd; i++) {
        k.in[i] = trng_int(r, 1, max_in);
        k.k[i] = trng_int(r, 1, 4);
        k.stride[i] = trng_int(r, 1, 3);
        k.dil[i] = dilations ? trng_int(r, 1, 2) : 1;
        /* pads smaller than the kernel, as pooling expects */
        k.pb[i] = trng_int(r, 0, k.k[i] - 1);
        k.pe[i] = trng_int(r, 0, k.k[i] - 1);
    }
    k.auto_pad = trng_int(r, 0, 3) == 0 ? (int)trng_int(r, 1, 3) : 0;
    k.ceil_mode = (int)trng_int(r, 0, 1);
    return k;
}

static Tensor *new_like_pool(const PoolShape *s, int nd, DType dt)
{
    int64_t sp[3];
    for (int i = 0; i < nd; i++)
        sp[i] = s->out[3 - nd + i];
    Shape ys = shape_nc(s->n, s->c, nd, sp);
    return tensor_new(dt, &ys);
}

static void test_maxpool_matches_reference_on_random_shapes(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 11);
    int run = 0;
    double worst = 0;
    for (int t = 0; t < 300; t++) {
        Case k = random_case(&r, true);
        PoolShape s;
        if (!expected_pool_shape(&k, &s))
            continue;
        const int col_major = (int)trng_int(&r, 0, 1);
        /* with Indices the op tracks positions; without, it runs its row-wise kernel */
        const int n_out = (int)trng_int(&r, 1, 2);
        Shape xs = shape_nc(k.n, k.c, k.nd, k.in);
        Tensor *x = t_rand(&r, &xs, -1, 1), *out[2] = {0};
        Node *n = pool_node("MaxPool", &k, n_out);
        node_set_int(n, "storage_order", col_major);
        int rc = t_run(n, 12, &x, 1, out, n_out);
        if (rc < 0)
            print_message("case %d: %s\n", t, sh_errmsg());
        assert_int_equal(rc, 0);
        Tensor *want = new_like_pool(&s, k.nd, SH_F32), *want_i = new_like_pool(&s, k.nd, SH_I64);
        maxpool_forward_ref(tensor_f32(want), tensor_i64(want_i), tensor_f32(x), &s, col_major);
        char label[64];
        snprintf(label, sizeof label, "maxpool random case %d (%dd)", t, k.nd);
        double d = t_max_diff(label, out[0], want);
        worst = d > worst ? d : worst;
        assert_true(d == 0);
        if (n_out == 2) {
            assert_true(shape_eq(&out[1]->shape, &want_i->shape));
            assert_memory_equal(out[1]->data, want_i->data, tensor_bytes(want_i));
        }
        run++;
        tensor_free(x);
        tensor_free(out[0]);
        tensor_free(out[1]);
        tensor_free(want);
        tensor_free(want_i);
        t_node_free(n);
    }
    printf("maxpool random cases: %d, worst max abs diff %.3g (values and indices exact)\n", run, worst);
    assert_true(run > 200);
}

static void check_sum_pools(const char *op, int seed)
{
    TRng r;
    trng_seed(&r, (uint64_t)seed);
    int run = 0;
    double worst = 0;
    for (int t = 0; t < 300; t++) {
        Case k = random_case(&r, false);
        PoolShape s;
        if (!expected_pool_shape(&k, &s))
            continue;
        const int include_pad = (int)trng_int(&r, 0, 1);
        const int p = (int)trng_int(&r, 1, 3);
        Shape xs = shape_nc(k.n, k.c, k.nd, k.in);
        Tensor *x = t_rand(&r, &xs, -1, 1), *y = NULL;
        Node *n = pool_node(op, &k, 1);
        node_set_int(n, "count_include_pad", include_pad);
        node_set_int(n, "p", p);
        int rc = t_run(n, 11, &x, 1, &y, 1);
        if (rc < 0)
            print_message("case %d: %s\n", t, sh_errmsg());
        assert_int_equal(rc, 0);
        Tensor *want = new_like_pool(&s, k.nd, SH_F32);
        if (strcmp(op, "AveragePool") == 0)
            avgpool_forward_ref(tensor_f32(want), tensor_f32(x), &s, include_pad);
        else
            lppool_forward_ref(tensor_f32(want), tensor_f32(x), &s, p);
        char label[64];
        snprintf(label, sizeof label, "%s random case %d (%dd)", op, t, k.nd);
        double d = t_max_diff(label, y, want);
        worst = d > worst ? d : worst;
        assert_true(t_allclose(y, want, RTOL, ATOL));
        run++;
        tensor_free(x);
        tensor_free(y);
        tensor_free(want);
        t_node_free(n);
    }
    printf("%s random cases: %d, worst max abs diff %.3g\n", op, run, worst);
    assert_true(run > 200);
}

/* 2x2 windows at stride 2 on wide rows take an eight-wide path. */
static void test_pool_2x2_stride_2_on_wide_rows_matches_reference(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 16);
    double worst = 0;
    for (int t = 0; t < 24; t++) {
        Case k = {.nd = 2, .n = 2, .c = 3, .in = {trng_int(&r, 2, 9), trng_int(&r, 16, 45)}, .k = {2, 2},
                  .stride = {2, 2}, .dil = {1, 1}, .pb = {trng_int(&r, 0, 1), trng_int(&r, 0, 1)},
                  .pe = {trng_int(&r, 0, 1), trng_int(&r, 0, 1)}, .ceil_mode = t % 2};
        PoolShape s;
        assert_true(expected_pool_shape(&k, &s));
        const char *op = t % 4 < 2 ? "MaxPool" : "AveragePool";
        const int include_pad = t % 3 == 0;
        Shape xs = shape_nc(k.n, k.c, k.nd, k.in);
        Tensor *x = t_rand(&r, &xs, -1, 1), *y = NULL;
        Node *n = pool_node(op, &k, 1);
        node_set_int(n, "count_include_pad", include_pad);
        assert_int_equal(t_run(n, 12, &x, 1, &y, 1), 0);
        Tensor *want = new_like_pool(&s, k.nd, SH_F32);
        if (op[0] == 'M')
            maxpool_forward_ref(tensor_f32(want), NULL, tensor_f32(x), &s, 0);
        else
            avgpool_forward_ref(tensor_f32(want), tensor_f32(x), &s, include_pad);
        char label[64];
        snprintf(label, sizeof label, "%s 2x2/2 wide case %d", op, t);
        double d = t_max_diff(label, y, want);
        worst = d > worst ? d : worst;
        assert_true(t_allclose(y, want, RTOL, ATOL));
        tensor_free(x);
        tensor_free(y);
        tensor_free(want);
        t_node_free(n);
    }
    printf("2x2/2 wide rows: worst max abs diff %.3g\n", worst);
}

static void test_avgpool_matches_reference_on_random_shapes(void **state)
{
    (void)state;
    check_sum_pools("AveragePool", 12);
}

static void test_lppool_matches_reference_on_random_shapes(void **state)
{
    (void)state;
    check_sum_pools("LpPool", 13);
}

/* Runs a 1-D pool over values with the given attributes; returns Y. */
static Tensor *pool_1d(const char *op, const float *xv, int64_t len, int64_t k, int64_t stride,
                       int64_t pb, int64_t pe, int ceil_mode)
{
    Shape xs = shape_of(3, (int64_t)1, (int64_t)1, len);
    Tensor *x = t_f32(&xs, xv), *y = NULL;
    Node *n = t_node(op, 1, 1);
    node_set_ints(n, "kernel_shape", &k, 1);
    node_set_ints(n, "strides", &stride, 1);
    node_set_ints(n, "pads", (const int64_t[]){pb, pe}, 2);
    node_set_int(n, "ceil_mode", ceil_mode);
    int rc = t_run(n, 12, &x, 1, &y, 1);
    assert_int_equal(rc, 0);
    tensor_free(x);
    t_node_free(n);
    return y;
}

static void test_maxpool_ceil_mode_keeps_partial_last_window(void **state)
{
    (void)state;
    /* 5 values, window 2, stride 2: floor gives 2 outputs, ceil adds the partial [4] */
    const float xv[] = {1, 5, 2, 3, 9};
    Tensor *y = pool_1d("MaxPool", xv, 5, 2, 2, 0, 0, 0);
    assert_int_equal(y->shape.d[2], 2);
    tensor_free(y);
    y = pool_1d("MaxPool", xv, 5, 2, 2, 0, 0, 1);
    assert_int_equal(y->shape.d[2], 3);
    const float want[] = {5, 3, 9};
    for (int i = 0; i < 3; i++)
        assert_float_equal(tensor_f32(y)[i], want[i], 0);
    tensor_free(y);
}

static void test_ceil_mode_drops_window_starting_in_right_padding(void **state)
{
    (void)state;
    /* 6 values, window 2, stride 2, end pad 1: ceil((7-2)/2)+1 = 4 windows,
     * but the 4th would start at 6, past the input: 3 remain */
    const float xv[] = {1, 2, 3, 4, 5, 6};
    Tensor *y = pool_1d("MaxPool", xv, 6, 2, 2, 0, 1, 1);
    assert_int_equal(y->shape.d[2], 3);
    tensor_free(y);
    y = pool_1d("AveragePool", xv, 6, 2, 2, 0, 1, 1);
    assert_int_equal(y->shape.d[2], 3);
    const float want[] = {1.5f, 3.5f, 5.5f};
    for (int i = 0; i < 3; i++)
        assert_float_equal(tensor_f32(y)[i], want[i], 1e-6);
    tensor_free(y);
    /* 3 values, window 3, stride 2, pads 2/1: ceil((6-3)/2)+1 = 3 windows
     * starting at -2, 0 and 2; the last starts inside the input and stays */
    const float xv3[] = {4, 1, 7};
    y = pool_1d("MaxPool", xv3, 3, 3, 2, 2, 1, 1);
    assert_int_equal(y->shape.d[2], 3);
    const float want3[] = {4, 7, 7};
    for (int i = 0; i < 3; i++)
        assert_float_equal(tensor_f32(y)[i], want3[i], 0);
    tensor_free(y);
}

static void test_maxpool_indices_follow_storage_order(void **state)
{
    (void)state;
    /* N=1, C=2, 3x3 planes; 2x2 window, stride 1 -> 2x2 outputs per plane.
     * Plane 1 has its maxima at known spots. */
    Shape xs = shape_of(4, (int64_t)1, (int64_t)2, (int64_t)3, (int64_t)3);
    const float xv[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, /* plane 0: ramp */
                        9, 0, 0, 0, 0, 8, 0, 7, 0 /* plane 1 */};
    for (int order = 0; order <= 1; order++) {
        Tensor *x = t_f32(&xs, xv), *out[2] = {0};
        Node *n = t_node("MaxPool", 1, 2);
        node_set_ints(n, "kernel_shape", (const int64_t[]){2, 2}, 2);
        node_set_int(n, "storage_order", order);
        assert_int_equal(t_run(n, 12, &x, 1, out, 2), 0);
        const float want_y[] = {5, 6, 8, 9, 9, 8, 7, 8};
        /* row-major h*3+w (+9 for plane 1) or column-major h+w*3 */
        const int64_t rm[] = {4, 5, 7, 8, 9, 14, 16, 14}, cm[] = {4, 7, 5, 8, 9, 16, 14, 16};
        for (int i = 0; i < 8; i++) {
            assert_float_equal(tensor_f32(out[0])[i], want_y[i], 0);
            assert_int_equal(tensor_i64(out[1])[i], order ? cm[i] : rm[i]);
        }
        tensor_free(x);
        tensor_free(out[0]);
        tensor_free(out[1]);
        t_node_free(n);
    }
}

static void test_avgpool_count_include_pad_hand_computed(void **state)
{
    (void)state;
    /* 3x3 ones, 3x3 window, pads 1: corners see 4 real of 9 positions */
    Shape xs = shape_of(4, (int64_t)1, (int64_t)1, (int64_t)3, (int64_t)3);
    const float ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    for (int include = 0; include <= 1; include++) {
        Tensor *x = t_f32(&xs, ones), *y = NULL;
        Node *n = t_node("AveragePool", 1, 1);
        node_set_ints(n, "kernel_shape", (const int64_t[]){3, 3}, 2);
        node_set_ints(n, "pads", (const int64_t[]){1, 1, 1, 1}, 4);
        node_set_int(n, "count_include_pad", include);
        assert_int_equal(t_run(n, 11, &x, 1, &y, 1), 0);
        assert_int_equal(y->numel, 9);
        assert_float_equal(tensor_f32(y)[0], include ? 4.0f / 9 : 1, 1e-6);
        assert_float_equal(tensor_f32(y)[1], include ? 6.0f / 9 : 1, 1e-6);
        assert_float_equal(tensor_f32(y)[4], 1, 1e-6);
        tensor_free(x);
        tensor_free(y);
        t_node_free(n);
    }
}

static void test_global_pools_reduce_every_spatial_dim(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 14);
    Shape xs = shape_of(5, (int64_t)2, (int64_t)3, (int64_t)4, (int64_t)5, (int64_t)2);
    Tensor *x = t_rand(&r, &xs, -1, 1);
    const char *ops[] = {"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"};
    for (int o = 0; o < 3; o++) {
        Tensor *y = NULL;
        Node *n = t_node(ops[o], 1, 1);
        assert_int_equal(t_run(n, 13, &x, 1, &y, 1), 0);
        Shape ys = shape_of(5, (int64_t)2, (int64_t)3, (int64_t)1, (int64_t)1, (int64_t)1);
        assert_true(shape_eq(&y->shape, &ys));
        double worst = 0;
        for (int64_t plane = 0; plane < 6; plane++) {
            const float *xp = tensor_f32(x) + plane * 40;
            double sum = 0, sq = 0, mx = -INFINITY;
            for (int i = 0; i < 40; i++) {
                sum += xp[i];
                sq += (double)xp[i] * xp[i];
                mx = xp[i] > mx ? xp[i] : mx;
            }
            double want = o == 0 ? sum / 40 : o == 1 ? mx : sqrt(sq);
            double d = fabs(tensor_f32(y)[plane] - want);
            worst = d > worst ? d : worst;
        }
        printf("%s: max abs diff %.3g\n", ops[o], worst);
        assert_true(worst < 1e-5);
        tensor_free(y);
        t_node_free(n);
    }
    tensor_free(x);
}

static void test_maxpool_uint8_matches_float(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 15);
    Shape xs = shape_of(4, (int64_t)2, (int64_t)3, (int64_t)7, (int64_t)6);
    Tensor *xu = tensor_new(SH_U8, &xs), *xf = tensor_new(SH_F32, &xs);
    for (int64_t i = 0; i < xu->numel; i++) {
        tensor_u8(xu)[i] = (uint8_t)trng_int(&r, 0, 255);
        tensor_f32(xf)[i] = tensor_u8(xu)[i];
    }
    Tensor *yu = NULL, *yf = NULL;
    Node *n = t_node("MaxPool", 1, 1);
    node_set_ints(n, "kernel_shape", (const int64_t[]){3, 2}, 2);
    node_set_ints(n, "strides", (const int64_t[]){2, 2}, 2);
    node_set_ints(n, "pads", (const int64_t[]){1, 0, 1, 1}, 4);
    assert_int_equal(t_run(n, 12, &xu, 1, &yu, 1), 0);
    assert_int_equal(t_run(n, 12, &xf, 1, &yf, 1), 0);
    assert_int_equal(yu->dtype, SH_U8);
    assert_true(t_max_diff("maxpool uint8 vs float", yu, yf) == 0);
    tensor_free(xu);
    tensor_free(xf);
    tensor_free(yu);
    tensor_free(yf);
    t_node_free(n);
}

static void test_pool_bad_inputs_fail_with_a_message(void **state)
{
    (void)state;
    Shape xs = shape_of(4, (int64_t)1, (int64_t)1, (int64_t)4, (int64_t)4);
    struct {
        const char *op, *needle;
        int code;
    } cases[] = {
        {"MaxPool", "kernel_shape", SH_E_FORMAT},      /* missing */
        {"MaxPool", "kernel extent", SH_E_SHAPE},      /* 5x5 window over 4x4 */
        {"MaxPool", "storage_order", SH_E_FORMAT},     /* 2 */
        {"AveragePool", "kernel_shape", SH_E_FORMAT},  /* 1 value for 2 dims */
        {"LpPool", "'p'", SH_E_UNSUPPORTED},           /* p = 0 */
        {"AveragePool", "expected [N, C", SH_E_UNSUPPORTED}, /* rank 2 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        Shape s = i == 5 ? shape_of(2, (int64_t)1, (int64_t)4) : xs;
        Tensor *x = tensor_new(SH_F32, &s), *y = NULL;
        Node *n = t_node(cases[i].op, 1, 1);
        if (i == 1)
            node_set_ints(n, "kernel_shape", (const int64_t[]){5, 5}, 2);
        else if (i == 3)
            node_set_ints(n, "kernel_shape", (const int64_t[]){2}, 1);
        else if (i != 0)
            node_set_ints(n, "kernel_shape", (const int64_t[]){2, 2}, i == 5 ? 0 : 2);
        if (i == 2)
            node_set_int(n, "storage_order", 2);
        if (i == 4)
            node_set_int(n, "p", 0);
        int rc = t_run(n, 12, &x, 1, &y, 1);
        printf("%s -> %s\n", cases[i].op, sh_errmsg());
        assert_int_equal(rc, cases[i].code);
        assert_non_null(strstr(sh_errmsg(), "test_"));
        assert_non_null(strstr(sh_errmsg(), cases[i].needle));
        tensor_free(x);
        t_node_free(n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_maxpool_matches_reference_on_random_shapes),
        cmocka_unit_test(test_pool_2x2_stride_2_on_wide_rows_matches_reference),
        cmocka_unit_test(test_avgpool_matches_reference_on_random_shapes),
        cmocka_unit_test(test_lppool_matches_reference_on_random_shapes),
        cmocka_unit_test(test_maxpool_ceil_mode_keeps_partial_last_window),
        cmocka_unit_test(test_ceil_mode_drops_window_starting_in_right_padding),
        cmocka_unit_test(test_maxpool_indices_follow_storage_order),
        cmocka_unit_test(test_avgpool_count_include_pad_hand_computed),
        cmocka_unit_test(test_global_pools_reduce_every_spatial_dim),
        cmocka_unit_test(test_maxpool_uint8_matches_float),
        cmocka_unit_test(test_pool_bad_inputs_fail_with_a_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
