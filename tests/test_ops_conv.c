/* Conv and ConvTranspose against the naive reference kernels (random
 * shapes over every attribute), hand-computed cases from the ONNX spec,
 * every fast algorithm held to the reference, and error messages. */
#include "tests/support/testutil.h"

#include "core/error.h"
#include "core/ops/conv.h"
#include "core/ops/kernels.h"
#include "core/threads.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* Stated tolerance: fast kernels (float) vs the reference (double sums). */
#define RTOL 1e-4
#define ATOL 1e-4

static const char *const AUTO_PADS[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};

/* One convolution case: everything a test sets, in ONNX terms. */
typedef struct {
    int nd;
    int64_t n, cin, cout, group;
    int64_t in[3], k[3], stride[3], dil[3], pb[3], pe[3], opad[3], oshape[3];
    int auto_pad; /* index into AUTO_PADS */
    bool bias, set_kernel_shape, set_output_shape;
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

static void set_window_attrs(Node *n, const Case *k)
{
    int64_t pads[6];
    for (int i = 0; i < k->nd; i++) {
        pads[i] = k->pb[i];
        pads[k->nd + i] = k->pe[i];
    }
    node_set_ints(n, "strides", k->stride, k->nd);
    node_set_ints(n, "dilations", k->dil, k->nd);
    if (k->auto_pad == 0)
        node_set_ints(n, "pads", pads, 2 * k->nd);
    else
        node_set_str(n, "auto_pad", AUTO_PADS[k->auto_pad]);
    node_set_int(n, "group", k->group);
    if (k->set_kernel_shape)
        node_set_ints(n, "kernel_shape", k->k, k->nd);
}

/* The expected geometry, derived here from the spec's formulas rather than
 * taken from the op: fills s (normalized to 3 dims) or returns false when no
 * output fits. */
static bool expected_conv_shape(const Case *k, ConvShape *s)
{
    memset(s, 0, sizeof *s);
    s->n = k->n;
    s->cin = k->cin;
    s->cout = k->cout;
    s->group = k->group;
    for (int a = 0; a < 3; a++) {
        s->in[a] = s->out[a] = s->k[a] = s->stride[a] = s->dil[a] = 1;
        s->pad[a] = 0;
    }
    for (int i = 0; i < k->nd; i++) {
        int a = 3 - k->nd + i;
        int64_t ek = (k->k[i] - 1) * k->dil[i] + 1, out, pb = k->pb[i];
        const char *ap = AUTO_PADS[k->auto_pad];
        if (strncmp(ap, "SAME", 4) == 0) {
            out = (k->in[i] + k->stride[i] - 1) / k->stride[i];
            int64_t total = (out - 1) * k->stride[i] + ek - k->in[i];
            total = total < 0 ? 0 : total;
            pb = strcmp(ap, "SAME_UPPER") == 0 ? total / 2 : total - total / 2;
        } else if (strcmp(ap, "VALID") == 0) {
            if (k->in[i] < ek)
                return false;
            out = (k->in[i] - ek) / k->stride[i] + 1;
            pb = 0;
        } else {
            int64_t span = k->in[i] + k->pb[i] + k->pe[i];
            if (span < ek)
                return false;
            out = (span - ek) / k->stride[i] + 1;
        }
        s->in[a] = k->in[i];
        s->out[a] = out;
        s->k[a] = k->k[i];
        s->stride[a] = k->stride[i];
        s->dil[a] = k->dil[i];
        s->pad[a] = pb;
    }
    return true;
}

static Tensor *ref_output(const ConvShape *s, int nd, bool transpose, const Tensor *x, const Tensor *w,
                          const Tensor *b)
{
    int64_t sp[3];
    for (int i = 0; i < nd; i++)
        sp[i] = s->out[3 - nd + i];
    Shape ys = shape_nc(s->n, s->cout, nd, sp);
    Tensor *y = tensor_new(SH_F32, &ys);
    if (transpose)
        conv_transpose_forward_ref(tensor_f32(y), tensor_f32(x), tensor_f32(w), b ? tensor_f32(b) : NULL, s);
    else
        conv_forward_ref(tensor_f32(y), tensor_f32(x), tensor_f32(w), b ? tensor_f32(b) : NULL, s);
    return y;
}

/* Runs Conv for case k and compares with the reference; returns max diff. */
static double check_conv_case(TRng *r, const Case *k, const char *label)
{
    ConvShape s;
    if (!expected_conv_shape(k, &s))
        return 0;
    Shape xs = shape_nc(k->n, k->cin, k->nd, k->in), ws = shape_nc(k->cout, k->cin / k->group, k->nd, k->k);
    Shape bs = shape_of(1, k->cout);
    Tensor *in[3] = {t_rand(r, &xs, -1, 1), t_rand(r, &ws, -1, 1), k->bias ? t_rand(r, &bs, -1, 1) : NULL};
    Tensor *y = NULL;
    Node *n = t_node("Conv", 3, 1);
    set_window_attrs(n, k);
    int rc = t_run(n, 13, in, 3, &y, 1);
    if (rc < 0)
        print_message("%s: %s\n", label, sh_errmsg());
    assert_int_equal(rc, 0);
    Tensor *want = ref_output(&s, k->nd, false, in[0], in[1], in[2]);
    double d = t_max_diff(label, y, want);
    assert_true(t_allclose(y, want, RTOL, ATOL));
    for (int i = 0; i < 3; i++)
        tensor_free(in[i]);
    tensor_free(y);
    tensor_free(want);
    t_node_free(n);
    return d;
}

static Case random_case(TRng *r, bool transpose)
{
    Case k = {0};
    k.nd = (int)trng_int(r, 1, 3);
    k.n = trng_int(r, 1, 3);
    int kind = (int)trng_int(r, 0, 3); /* 0,1: dense; 2: grouped; 3: depthwise */
    k.group = kind < 2 ? 1 : kind == 2 ? trng_int(r, 2, 3) : trng_int(r, 2, 4);
    k.cin = k.group * (kind == 3 ? 1 : trng_int(r, 1, 3));
    k.cout = k.group * trng_int(r, 1, kind == 3 ? 3 : 4); /* depthwise: multiplier 1..3 */
    int64_t max_in = k.nd == 3 ? 6 : k.nd == 2 ? 9 : 14;
    for (int i = 0; i < k.nd; i++) {
        k.in[i] = trng_int(r, 1, max_in);
        k.k[i] = trng_int(r, 1, 3);
        k.stride[i] = trng_int(r, 1, 3);
        k.dil[i] = trng_int(r, 1, 2);
        k.pb[i] = trng_int(r, 0, 2);
        k.pe[i] = trng_int(r, 0, 2);
        k.opad[i] = trng_int(r, 0, k.stride[i] - 1);
    }
    k.auto_pad = trng_int(r, 0, 2) == 0 ? (int)trng_int(r, 1, 3) : 0;
    if (transpose && k.auto_pad == 3)
        k.auto_pad = 0;
    k.bias = trng_int(r, 0, 1);
    k.set_kernel_shape = trng_int(r, 0, 1);
    return k;
}

static void test_conv_matches_reference_on_random_shapes(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 1);
    double worst = 0;
    int run = 0;
    for (int t = 0; t < 300; t++) {
        Case k = random_case(&r, false);
        char label[64];
        snprintf(label, sizeof label, "conv random case %d (%dd, group %lld)", t, k.nd, (long long)k.group);
        double d = check_conv_case(&r, &k, label);
        worst = d > worst ? d : worst;
        run++;
    }
    printf("conv random cases: %d, worst max abs diff %.3g\n", run, worst);
}

/* With 2 and 3 threads a large enough convolution cuts its batch into
 * parts on their own threads (batches that do not divide evenly, groups,
 * strides, fused bias): the result still matches the reference. */
static void test_conv_split_over_threads_matches_reference(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 5);
    const Case cases[] = {
        {.nd = 2, .n = 5, .cin = 16, .cout = 32, .group = 1, .in = {24, 24}, .k = {3, 3}, .stride = {1, 1},
         .dil = {1, 1}, .pb = {1, 1}, .pe = {1, 1}, .bias = true},
        {.nd = 2, .n = 7, .cin = 32, .cout = 32, .group = 4, .in = {20, 20}, .k = {3, 3}, .stride = {2, 2},
         .dil = {1, 1}, .pb = {1, 0}, .pe = {0, 1}, .bias = false},
        {.nd = 2, .n = 4, .cin = 64, .cout = 64, .group = 1, .in = {7, 7}, .k = {3, 3}, .stride = {1, 1},
         .dil = {1, 1}, .pb = {1, 1}, .pe = {1, 1}, .bias = true},
    };
    for (int threads = 2; threads <= 3; threads++) {
        sh_set_threads(threads);
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            char label[64];
            snprintf(label, sizeof label, "conv case %zu on %d threads", i, threads);
            check_conv_case(&r, &cases[i], label);
        }
    }
    sh_set_threads(1);
}

static void test_conv_hand_computed_spec_example(void **state)
{
    (void)state;
    /* ONNX Conv example: 5x5 ramp, 3x3 ones; with and without padding */
    Shape xs = shape_of(4, (int64_t)1, (int64_t)1, (int64_t)5, (int64_t)5);
    Shape ws = shape_of(4, (int64_t)1, (int64_t)1, (int64_t)3, (int64_t)3);
    float xv[25], wv[9];
    for (int i = 0; i < 25; i++)
        xv[i] = (float)i;
    for (int i = 0; i < 9; i++)
        wv[i] = 1;
    Tensor *in[2] = {t_f32(&xs, xv), t_f32(&ws, wv)}, *y = NULL;
    Node *n = t_node("Conv", 2, 1);
    node_set_ints(n, "pads", (const int64_t[]){1, 1, 1, 1}, 4);
    assert_int_equal(t_run(n, 11, in, 2, &y, 1), 0);
    const float padded[] = {12, 21, 27, 33, 24, 33, 54, 63, 72, 51, 63, 99, 108,
                            117, 81, 93, 144, 153, 162, 111, 72, 111, 117, 123, 84};
    for (int i = 0; i < 25; i++)
        assert_float_equal(tensor_f32(y)[i], padded[i], 0);
    tensor_free(y);
    node_set_ints(n, "pads", (const int64_t[]){0, 0, 0, 0}, 4);
    assert_int_equal(t_run(n, 11, in, 2, &y, 1), 0);
    const float valid[] = {54, 63, 72, 99, 108, 117, 144, 153, 162};
    assert_int_equal(y->numel, 9);
    for (int i = 0; i < 9; i++)
        assert_float_equal(tensor_f32(y)[i], valid[i], 0);
    tensor_free(y);
    /* strides 2 with asymmetric pads [1,0,1,0] -> 3x2 */
    node_set_ints(n, "pads", (const int64_t[]){1, 0, 1, 0}, 4);
    node_set_ints(n, "strides", (const int64_t[]){2, 2}, 2);
    assert_int_equal(t_run(n, 11, in, 2, &y, 1), 0);
    const float asym[] = {21, 33, 99, 117, 111, 123};
    assert_int_equal(y->shape.d[2], 3);
    assert_int_equal(y->shape.d[3], 2);
    for (int i = 0; i < 6; i++)
        assert_float_equal(tensor_f32(y)[i], asym[i], 0);
    tensor_free(y);
    tensor_free(in[0]);
    tensor_free(in[1]);
    t_node_free(n);
}

/* Shapes covering each algorithm's paths: pointwise, strided, padded,
 * grouped, depthwise with multiplier, cin 1, 1-D and 3-D. */
static const Case ALGO_CASES[] = {
    {.nd = 2, .n = 5, .cin = 3, .cout = 8, .group = 1, .in = {9, 7}, .k = {3, 3}, .stride = {1, 1}, .dil = {1, 1}, .pb = {1, 1}, .pe = {1, 1}, .bias = true},
    {.nd = 2, .n = 4, .cin = 6, .cout = 4, .group = 1, .in = {5, 6}, .k = {1, 1}, .stride = {1, 1}, .dil = {1, 1}, .bias = true},
    {.nd = 2, .n = 3, .cin = 4, .cout = 6, .group = 2, .in = {8, 8}, .k = {3, 2}, .stride = {2, 1}, .dil = {1, 2}, .pb = {0, 1}, .pe = {2, 0}},
    {.nd = 2, .n = 3, .cin = 4, .cout = 8, .group = 4, .in = {7, 9}, .k = {3, 3}, .stride = {1, 2}, .dil = {2, 1}, .pb = {2, 1}, .pe = {1, 1}, .bias = true},
    {.nd = 2, .n = 7, .cin = 1, .cout = 5, .group = 1, .in = {11, 10}, .k = {3, 3}, .stride = {1, 1}, .dil = {1, 1}, .pb = {1, 1}, .pe = {1, 1}, .bias = true},
    {.nd = 1, .n = 3, .cin = 4, .cout = 3, .group = 1, .in = {17}, .k = {5}, .stride = {3}, .dil = {2}, .pb = {3}, .pe = {1}, .bias = true},
    {.nd = 3, .n = 2, .cin = 2, .cout = 4, .group = 2, .in = {4, 5, 6}, .k = {2, 3, 3}, .stride = {1, 2, 1}, .dil = {1, 1, 2}, .pb = {1, 0, 2}, .pe = {0, 1, 1}, .bias = true},
    {.nd = 2, .n = 3, .cin = 5, .cout = 7, .group = 1, .in = {3, 3}, .k = {1, 1}, .stride = {2, 2}, .dil = {1, 1}, .pb = {1, 0}, .pe = {0, 1}},
    /* wide rows (>= 32 outputs) take the block-shift im2col instead of the padded copy */
    {.nd = 2, .n = 2, .cin = 3, .cout = 5, .group = 1, .in = {6, 40}, .k = {3, 3}, .stride = {1, 1}, .dil = {1, 2}, .pb = {1, 2}, .pe = {1, 2}, .bias = true},
    {.nd = 1, .n = 2, .cin = 2, .cout = 4, .group = 1, .in = {50}, .k = {5}, .stride = {1}, .dil = {1}, .pb = {3}, .pe = {1}},
    {.nd = 2, .n = 2, .cin = 2, .cout = 6, .group = 1, .in = {5, 33}, .k = {3, 3}, .stride = {1, 1}, .dil = {1, 1}, .pb = {0, 4}, .pe = {2, 0}},
    /* stride 2 in both dims on small maps: im2col from a zero-padded copy (odd and even sizes, dilation) */
    {.nd = 2, .n = 3, .cin = 5, .cout = 6, .group = 1, .in = {14, 13}, .k = {3, 3}, .stride = {2, 2}, .dil = {1, 1}, .pb = {1, 1}, .pe = {1, 0}, .bias = true},
    {.nd = 2, .n = 2, .cin = 4, .cout = 4, .group = 2, .in = {9, 10}, .k = {3, 2}, .stride = {2, 2}, .dil = {2, 1}, .pb = {0, 1}, .pe = {2, 1}},
    /* same-size outputs with stride 1: the shift algorithm's shapes */
    {.nd = 2, .n = 5, .cin = 6, .cout = 4, .group = 1, .in = {7, 7}, .k = {3, 3}, .stride = {1, 1}, .dil = {1, 1}, .pb = {1, 1}, .pe = {1, 1}, .bias = true},
    {.nd = 2, .n = 3, .cin = 4, .cout = 6, .group = 2, .in = {6, 5}, .k = {3, 2}, .stride = {1, 1}, .dil = {2, 1}, .pb = {0, 1}, .pe = {4, 0}, .bias = true},
    {.nd = 2, .n = 3, .cin = 3, .cout = 5, .group = 1, .in = {4, 9}, .k = {5, 1}, .stride = {1, 1}, .dil = {1, 1}, .pb = {3, 0}, .pe = {1, 0}},
    {.nd = 1, .n = 4, .cin = 5, .cout = 3, .group = 1, .in = {11}, .k = {4}, .stride = {1}, .dil = {2}, .pb = {2}, .pe = {4}, .bias = true},
    {.nd = 2, .n = 2, .cin = 2, .cout = 2, .group = 1, .in = {1, 1}, .k = {3, 3}, .stride = {1, 1}, .dil = {1, 1}, .pb = {1, 1}, .pe = {1, 1}},
    /* enough channels for conv_plan to pick shift (16x16 on any thread count, 6x7 on several) */
    {.nd = 2, .n = 5, .cin = 8, .cout = 6, .group = 1, .in = {16, 16}, .k = {3, 3}, .stride = {1, 1}, .dil = {1, 1}, .pb = {1, 1}, .pe = {1, 1}, .bias = true},
    {.nd = 2, .n = 19, .cin = 16, .cout = 8, .group = 2, .in = {6, 7}, .k = {3, 3}, .stride = {1, 1}, .dil = {1, 1}, .pb = {1, 1}, .pe = {1, 1}},
    /* Winograd tiles: odd outputs, pads 0 and 2, more than eight tiles a row */
    {.nd = 2, .n = 3, .cin = 5, .cout = 4, .group = 1, .in = {9, 21}, .k = {3, 3}, .stride = {1, 1}, .dil = {1, 1}, .pb = {2, 0}, .pe = {0, 2}, .bias = true},
    {.nd = 2, .n = 2, .cin = 3, .cout = 3, .group = 1, .in = {5, 40}, .k = {3, 3}, .stride = {1, 1}, .dil = {1, 1}, .bias = true},
    {.nd = 2, .n = 1, .cin = 2, .cout = 2, .group = 1, .in = {3, 3}, .k = {3, 3}, .stride = {1, 1}, .dil = {1, 1}},
    /* four tiles a row (two tile rows per vector): odd and even tile-row counts, 7 and 8 wide */
    {.nd = 2, .n = 3, .cin = 4, .cout = 3, .group = 1, .in = {5, 7}, .k = {3, 3}, .stride = {1, 1}, .dil = {1, 1}, .pb = {1, 1}, .pe = {1, 1}, .bias = true},
    {.nd = 2, .n = 2, .cin = 3, .cout = 2, .group = 1, .in = {8, 8}, .k = {3, 3}, .stride = {1, 1}, .dil = {1, 1}, .pb = {1, 1}, .pe = {1, 1}},
    {.nd = 2, .n = 4, .cin = 3, .cout = 5, .group = 1, .in = {9, 10}, .k = {3, 3}, .stride = {1, 1}, .dil = {1, 1}, .bias = true},
    /* enough channels and tiles (at least 64 in the batch) for conv_plan to pick Winograd */
    {.nd = 2, .n = 5, .cin = 16, .cout = 16, .group = 1, .in = {6, 9}, .k = {3, 3}, .stride = {1, 1}, .dil = {1, 1}, .pb = {1, 1}, .pe = {1, 1}, .bias = true},
    /* a long image: per-image GEMMs are wide enough on one thread */
    {.nd = 1, .n = 2, .cin = 2, .cout = 5, .group = 1, .in = {600}, .k = {3}, .stride = {1}, .dil = {1}, .bias = true},
};

static void test_conv_every_algorithm_matches_reference(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 2);
    const char *names[] = {"direct", "gemm per image", "gemm batch", "gemm shift", "winograd", "winograd4"};
    int shift_cases = 0, winograd_cases = 0, winograd4_cases = 0;
    for (size_t ci = 0; ci < sizeof ALGO_CASES / sizeof *ALGO_CASES; ci++) {
        const Case *k = &ALGO_CASES[ci];
        ConvShape s;
        assert_true(expected_conv_shape(k, &s));
        Shape xs = shape_nc(k->n, k->cin, k->nd, k->in), ws = shape_nc(k->cout, k->cin / k->group, k->nd, k->k);
        Shape bs = shape_of(1, k->cout);
        Tensor *x = t_rand(&r, &xs, -1, 1), *w = t_rand(&r, &ws, -1, 1), *b = k->bias ? t_rand(&r, &bs, -1, 1) : NULL;
        Tensor *want = ref_output(&s, k->nd, false, x, w, b);
        for (int relu = 0; relu <= 1; relu++) {
            if (relu)
                for (int64_t i = 0; i < want->numel; i++)
                    tensor_f32(want)[i] = fmaxf(tensor_f32(want)[i], 0.0f);
            for (int algo = 0; algo <= CONV_WINOGRAD4; algo++) {
                if ((algo == CONV_DIRECT && k->cin / k->group != 1) || (algo == CONV_GEMM_SHIFT && !conv_shift_ok(&s)) ||
                    ((algo == CONV_WINOGRAD || algo == CONV_WINOGRAD4) && !conv_winograd_ok(&s)))
                    continue;
                shift_cases += algo == CONV_GEMM_SHIFT;
                winograd_cases += algo == CONV_WINOGRAD;
                winograd4_cases += algo == CONV_WINOGRAD4;
                /* chunk 2 makes the batch algorithms run a short last chunk */
                const bool chunked = algo == CONV_GEMM_BATCH || algo == CONV_GEMM_SHIFT || algo == CONV_WINOGRAD ||
                                     algo == CONV_WINOGRAD4;
                for (int64_t chunk = 0; chunk <= (chunked ? 2 : 0); chunk += 2) {
                    ConvPlan p = conv_plan_with(&s, (ConvAlgo)algo, chunk);
                    Tensor *y = tensor_new(SH_F32, &want->shape);
                    float *scratch = p.scratch_bytes ? aligned_alloc(64, (p.scratch_bytes + 63) / 64 * 64) : NULL;
                    for (int64_t i = 0; i < y->numel; i++) /* outputs arrive dirty from an arena */
                        tensor_f32(y)[i] = NAN;
                    conv_forward(tensor_f32(y), tensor_f32(x), tensor_f32(w), b ? tensor_f32(b) : NULL, &s, &p,
                                 relu, scratch);
                    char label[96];
                    snprintf(label, sizeof label, "case %zu %s chunk %lld relu %d", ci, names[algo],
                             (long long)p.chunk, relu);
                    t_max_diff(label, y, want);
                    assert_true(t_allclose(y, want, RTOL, ATOL));
                    free(scratch);
                    tensor_free(y);
                }
            }
        }
        tensor_free(x);
        tensor_free(w);
        tensor_free(b);
        tensor_free(want);
    }
    assert_true(shift_cases >= 8 && winograd_cases >= 8 && winograd4_cases >= 8); /* all met several shapes */
}

static void test_conv_pointwise_needs_no_im2col_scratch(void **state)
{
    (void)state;
    const Case *k = &ALGO_CASES[1]; /* 1x1, stride 1, no pad */
    ConvShape s;
    assert_true(expected_conv_shape(k, &s));
    assert_int_equal(conv_plan_with(&s, CONV_GEMM_IMAGE, 0).scratch_bytes, 0);
    /* a strided or padded 1x1 still needs columns */
    assert_true(expected_conv_shape(&ALGO_CASES[7], &s));
    assert_true(conv_plan_with(&s, CONV_GEMM_IMAGE, 0).scratch_bytes > 0);
}

/* The plan picked for any BLAS thread count fits the scratch sized at plan
 * time and computes the same conv. */
static void test_conv_plans_for_any_thread_count_fit_bound_and_match(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 5);
    unsigned algos_seen = 0;
    for (size_t ci = 0; ci < sizeof ALGO_CASES / sizeof *ALGO_CASES; ci++) {
        const Case *k = &ALGO_CASES[ci];
        ConvShape s;
        assert_true(expected_conv_shape(k, &s));
        Shape xs = shape_nc(k->n, k->cin, k->nd, k->in), ws = shape_nc(k->cout, k->cin / k->group, k->nd, k->k);
        Tensor *x = t_rand(&r, &xs, -1, 1), *w = t_rand(&r, &ws, -1, 1);
        Tensor *want = ref_output(&s, k->nd, false, x, w, NULL), *y = tensor_new(SH_F32, &want->shape);
        const size_t bound = conv_scratch_bound(&s);
        float *scratch = aligned_alloc(64, (bound + 63) / 64 * 64 + 64);
        for (int t = 1; t <= 16; t++) {
            ConvPlan p = conv_plan(&s, t);
            algos_seen |= 1u << p.algo;
            assert_true(p.scratch_bytes <= bound);
            conv_forward(tensor_f32(y), tensor_f32(x), tensor_f32(w), NULL, &s, &p, 0, scratch);
            assert_true(t_allclose(y, want, RTOL, ATOL));
        }
        free(scratch);
        tensor_free(x);
        tensor_free(w);
        tensor_free(y);
        tensor_free(want);
    }
    assert_int_equal(algos_seen, 0x1f); /* every algorithm was chosen somewhere */
}

static void test_conv_batch_scratch_stays_under_cap(void **state)
{
    (void)state;
    /* 64 x 32 -> 64 channels at 28x28: whole-batch columns would be ~58 MB */
    ConvShape s = {.n = 64, .cin = 32, .cout = 64, .group = 1, .in = {1, 28, 28}, .out = {1, 28, 28},
                   .k = {1, 3, 3}, .stride = {1, 1, 1}, .dil = {1, 1, 1}, .pad = {0, 1, 1}};
    ConvPlan p = conv_plan_with(&s, CONV_GEMM_BATCH, 0);
    printf("batch plan: chunk %lld, scratch %.1f MB\n", (long long)p.chunk, p.scratch_bytes / 1048576.0);
    assert_true(p.chunk >= 1 && p.chunk < 64);
    assert_true(p.scratch_bytes <= CONV_BATCH_SCRATCH_CAP + 64);
}

/* Runs node n with a fusion record, the way the executor does. */
static int run_fused(Node *n, Tensor **in, int n_in, Tensor *y, const ConvFusion *f)
{
    Tensor *out[1] = {y};
    OpCtx c = {.node = n, .opset = 13, .n_in = n_in, .n_out = 1, .in = in, .out = out, .fused = f};
    int rc = n->op->infer(&c);
    if (rc < 0)
        return rc;
    Shape ys = y->shape;
    if ((rc = tensor_alloc(y, SH_F32, &ys)) < 0)
        return rc;
    size_t sb = n->op->scratch(&c);
    void *scratch = sb ? aligned_alloc(64, (sb + 63) / 64 * 64) : NULL;
    c.scratch = scratch;
    c.scratch_bytes = sb;
    rc = n->op->forward(&c);
    free(scratch);
    return rc;
}

static void test_conv_fused_relu_applies_after_bias(void **state)
{
    (void)state;
    /* y = x*1 + bias; bias -2 makes small inputs negative before ReLU */
    Shape xs = shape_of(4, (int64_t)2, (int64_t)1, (int64_t)2, (int64_t)2);
    Shape ws = shape_of(4, (int64_t)1, (int64_t)1, (int64_t)1, (int64_t)1), bs = shape_of(1, (int64_t)1);
    const float xv[] = {0, 1, 2, 3, 4, 5, 1.5f, 2.5f};
    Tensor *in[3] = {t_f32(&xs, xv), t_f32(&ws, (const float[]){1}), t_f32(&bs, (const float[]){-2})};
    Node *n = t_node("Conv", 3, 1);
    Tensor y = {0};
    ConvFusion relu = {.relu = 1};
    assert_int_equal(run_fused(n, in, 3, &y, &relu), 0);
    const float want[] = {0, 0, 0, 1, 2, 3, 0, 0.5f};
    for (int i = 0; i < 8; i++)
        assert_float_equal(tensor_f32(&y)[i], want[i], 0);
    tensor_done(&y);
    ConvFusion none = {.relu = 0};
    assert_int_equal(run_fused(n, in, 3, &y, &none), 0);
    assert_float_equal(tensor_f32(&y)[0], -2, 0);
    tensor_done(&y);
    for (int i = 0; i < 3; i++)
        tensor_free(in[i]);
    t_node_free(n);
}

static int run_conv_shapes(const char *op, Shape xs, Shape ws, const Shape *bs, Node **out_node)
{
    TRng r;
    trng_seed(&r, 3);
    Tensor *in[3] = {t_rand(&r, &xs, -1, 1), t_rand(&r, &ws, -1, 1), bs ? t_rand(&r, bs, -1, 1) : NULL};
    Tensor *y = NULL;
    Node *n = *out_node ? *out_node : t_node(op, 3, 1);
    int rc = t_run(n, 13, in, 3, &y, 1);
    for (int i = 0; i < 3; i++)
        tensor_free(in[i]);
    tensor_free(y);
    *out_node = n;
    return rc;
}

static void test_conv_channel_mismatch_names_node(void **state)
{
    (void)state;
    Node *n = NULL;
    int rc = run_conv_shapes("Conv", shape_of(4, (int64_t)1, (int64_t)3, (int64_t)5, (int64_t)5),
                             shape_of(4, (int64_t)2, (int64_t)2, (int64_t)3, (int64_t)3), NULL, &n);
    printf("error: %s\n", sh_errmsg());
    assert_int_equal(rc, SH_E_SHAPE);
    assert_non_null(strstr(sh_errmsg(), "test_Conv"));
    assert_non_null(strstr(sh_errmsg(), "3 channels"));
    t_node_free(n);
}

static void test_conv_bad_inputs_fail_with_a_message(void **state)
{
    (void)state;
    const Shape x = shape_of(4, (int64_t)1, (int64_t)2, (int64_t)5, (int64_t)5);
    const Shape w = shape_of(4, (int64_t)4, (int64_t)2, (int64_t)3, (int64_t)3);
    struct {
        const char *what;
        int code;
        Shape x, w, b;
        bool has_b;
    } cases[] = {
        {"wrong bias length", SH_E_SHAPE, x, w, shape_of(1, (int64_t)3), true},
        {"kernel larger than input", SH_E_SHAPE, shape_of(4, (int64_t)1, (int64_t)2, (int64_t)2, (int64_t)2), w, {0}, false},
        {"rank 2 input", SH_E_UNSUPPORTED, shape_of(2, (int64_t)1, (int64_t)2), shape_of(2, (int64_t)4, (int64_t)2), {0}, false},
        {"weight rank differs", SH_E_SHAPE, x, shape_of(3, (int64_t)4, (int64_t)2, (int64_t)3), {0}, false},
        {"output channels not divisible by group", SH_E_SHAPE, x, shape_of(4, (int64_t)3, (int64_t)1, (int64_t)3, (int64_t)3), {0}, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        Node *n = t_node("Conv", 3, 1);
        if (i == 4) /* group 2 over 2 input channels, 3 output channels */
            node_set_int(n, "group", 2);
        int rc = run_conv_shapes("Conv", cases[i].x, cases[i].w, cases[i].has_b ? &cases[i].b : NULL, &n);
        printf("%s -> %s\n", cases[i].what, sh_errmsg());
        assert_int_equal(rc, cases[i].code);
        assert_non_null(strstr(sh_errmsg(), "test_Conv"));
        t_node_free(n);
    }
    const char *attrs[] = {"auto_pad", "strides", "pads", "kernel_shape", "dilations"};
    for (size_t i = 0; i < sizeof attrs / sizeof *attrs; i++) {
        Node *n = t_node("Conv", 3, 1);
        switch (i) {
        case 0: node_set_str(n, "auto_pad", "SAME"); break;
        case 1: node_set_ints(n, "strides", (const int64_t[]){1}, 1); break;
        case 2: node_set_ints(n, "pads", (const int64_t[]){-1, 0, 0, 0}, 4); break;
        case 3: node_set_ints(n, "kernel_shape", (const int64_t[]){5, 5}, 2); break;
        case 4: node_set_ints(n, "dilations", (const int64_t[]){0, 1}, 2); break;
        }
        int rc = run_conv_shapes("Conv", x, w, NULL, &n);
        printf("bad %s -> %s\n", attrs[i], sh_errmsg());
        assert_true(rc < 0);
        assert_non_null(strstr(sh_errmsg(), attrs[i]));
        t_node_free(n);
    }
}

static void test_conv_macs_count_weight_uses(void **state)
{
    (void)state;
    /* N*Cout*OH*OW*(Cin/group)*KH*KW = 2*6*4*4*(4/2)*3*3 */
    Shape xs = shape_of(4, (int64_t)2, (int64_t)4, (int64_t)6, (int64_t)6);
    Shape ws = shape_of(4, (int64_t)6, (int64_t)2, (int64_t)3, (int64_t)3);
    Tensor x = {.dtype = SH_F32, .shape = xs, .numel = shape_numel(&xs)};
    Tensor w = {.dtype = SH_F32, .shape = ws, .numel = shape_numel(&ws)};
    Tensor y = {0};
    Tensor *in[2] = {&x, &w}, *out[1] = {&y};
    Node *n = t_node("Conv", 2, 1);
    node_set_int(n, "group", 2);
    OpCtx c = {.node = n, .opset = 13, .n_in = 2, .n_out = 1, .in = in, .out = out};
    assert_int_equal(n->op->infer(&c), 0);
    assert_int_equal(n->op->macs(&c), 2 * 6 * 4 * 4 * 2 * 3 * 3);
    /* an unknown batch propagates to Y and leaves MACs unknown */
    x.shape.d[0] = -1;
    x.numel = -1;
    assert_int_equal(n->op->infer(&c), 0);
    assert_int_equal(y.shape.d[0], -1);
    assert_int_equal(n->op->macs(&c), -1);
    t_node_free(n);
}

/* ---- ConvTranspose --------------------------------------------------- */

/* Expected ConvTranspose geometry from the spec's formulas. */
static bool expected_convt_shape(const Case *k, ConvShape *s)
{
    memset(s, 0, sizeof *s);
    s->n = k->n;
    s->cin = k->cin;
    s->cout = k->cout;
    s->group = k->group;
    for (int a = 0; a < 3; a++)
        s->in[a] = s->out[a] = s->k[a] = s->stride[a] = s->dil[a] = 1;
    for (int i = 0; i < k->nd; i++) {
        int a = 3 - k->nd + i;
        int64_t full = k->stride[i] * (k->in[i] - 1) + k->opad[i] + (k->k[i] - 1) * k->dil[i] + 1;
        int64_t out, pb;
        const char *ap = AUTO_PADS[k->auto_pad];
        if (k->set_output_shape || strncmp(ap, "SAME", 4) == 0) {
            out = k->set_output_shape ? k->oshape[i] : k->in[i] * k->stride[i];
            int64_t total = full - out;
            /* Python's floor halving, as in the spec's reference */
            int64_t half = (int64_t)floor(total / 2.0);
            pb = strcmp(ap, "SAME_UPPER") == 0 ? half : total - half;
        } else {
            out = full - k->pb[i] - k->pe[i];
            pb = k->pb[i];
        }
        if (out < 1)
            return false;
        s->in[a] = k->in[i];
        s->out[a] = out;
        s->k[a] = k->k[i];
        s->stride[a] = k->stride[i];
        s->dil[a] = k->dil[i];
        s->pad[a] = pb;
    }
    return true;
}

static void test_conv_transpose_matches_reference_on_random_shapes(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 4);
    double worst = 0;
    int run = 0;
    for (int t = 0; t < 200; t++) {
        Case k = random_case(&r, true);
        k.set_output_shape = trng_int(&r, 0, 3) == 0;
        for (int i = 0; i < k.nd; i++)
            k.oshape[i] = trng_int(&r, 1, 3 * k.in[i] + 2);
        ConvShape s;
        if (!expected_convt_shape(&k, &s))
            continue;
        Shape xs = shape_nc(k.n, k.cin, k.nd, k.in), ws = shape_nc(k.cin, k.cout / k.group, k.nd, k.k);
        Shape bs = shape_of(1, k.cout);
        Tensor *in[3] = {t_rand(&r, &xs, -1, 1), t_rand(&r, &ws, -1, 1), k.bias ? t_rand(&r, &bs, -1, 1) : NULL};
        Tensor *y = NULL;
        Node *n = t_node("ConvTranspose", 3, 1);
        set_window_attrs(n, &k);
        node_set_ints(n, "output_padding", k.opad, k.nd);
        if (k.set_output_shape)
            node_set_ints(n, "output_shape", k.oshape, k.nd);
        int rc = t_run(n, 13, in, 3, &y, 1);
        if (rc < 0)
            print_message("case %d: %s\n", t, sh_errmsg());
        assert_int_equal(rc, 0);
        Tensor *want = ref_output(&s, k.nd, true, in[0], in[1], in[2]);
        char label[80];
        snprintf(label, sizeof label, "conv transpose random case %d (%dd, group %lld)", t, k.nd, (long long)k.group);
        double d = t_max_diff(label, y, want);
        assert_true(t_allclose(y, want, RTOL, ATOL));
        worst = d > worst ? d : worst;
        run++;
        for (int i = 0; i < 3; i++)
            tensor_free(in[i]);
        tensor_free(y);
        tensor_free(want);
        t_node_free(n);
    }
    printf("conv transpose random cases: %d, worst max abs diff %.3g\n", run, worst);
    assert_true(run > 100);
}

static void test_conv_transpose_hand_computed_spec_example(void **state)
{
    (void)state;
    /* ONNX ConvTranspose example: 3x3 ramp, two 3x3 ones filters -> 5x5 */
    Shape xs = shape_of(4, (int64_t)1, (int64_t)1, (int64_t)3, (int64_t)3);
    Shape ws = shape_of(4, (int64_t)1, (int64_t)2, (int64_t)3, (int64_t)3);
    float xv[9], wv[18];
    for (int i = 0; i < 9; i++)
        xv[i] = (float)i;
    for (int i = 0; i < 18; i++)
        wv[i] = 1;
    Tensor *in[2] = {t_f32(&xs, xv), t_f32(&ws, wv)}, *y = NULL;
    Node *n = t_node("ConvTranspose", 2, 1);
    assert_int_equal(t_run(n, 11, in, 2, &y, 1), 0);
    const float want[] = {0, 1, 3, 3, 2, 3, 8, 15, 12, 7, 9, 21, 36, 27, 15, 9, 20, 33, 24, 13, 6, 13, 21, 15, 8};
    assert_int_equal(y->numel, 50);
    for (int ch = 0; ch < 2; ch++)
        for (int i = 0; i < 25; i++)
            assert_float_equal(tensor_f32(y)[ch * 25 + i], want[i], 0);
    tensor_free(y);
    tensor_free(in[0]);
    tensor_free(in[1]);
    t_node_free(n);
}

static void test_conv_transpose_channel_mismatch_names_node(void **state)
{
    (void)state;
    Node *n = NULL;
    int rc = run_conv_shapes("ConvTranspose", shape_of(4, (int64_t)1, (int64_t)3, (int64_t)5, (int64_t)5),
                             shape_of(4, (int64_t)2, (int64_t)2, (int64_t)3, (int64_t)3), NULL, &n);
    printf("error: %s\n", sh_errmsg());
    assert_int_equal(rc, SH_E_SHAPE);
    assert_non_null(strstr(sh_errmsg(), "test_ConvTranspose"));
    t_node_free(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_matches_reference_on_random_shapes),
        cmocka_unit_test(test_conv_split_over_threads_matches_reference),
        cmocka_unit_test(test_conv_hand_computed_spec_example),
        cmocka_unit_test(test_conv_every_algorithm_matches_reference),
        cmocka_unit_test(test_conv_pointwise_needs_no_im2col_scratch),
        cmocka_unit_test(test_conv_plans_for_any_thread_count_fit_bound_and_match),
        cmocka_unit_test(test_conv_batch_scratch_stays_under_cap),
        cmocka_unit_test(test_conv_fused_relu_applies_after_bias),
        cmocka_unit_test(test_conv_channel_mismatch_names_node),
        cmocka_unit_test(test_conv_bad_inputs_fail_with_a_message),
        cmocka_unit_test(test_conv_macs_count_weight_uses),
        cmocka_unit_test(test_conv_transpose_matches_reference_on_random_shapes),
        cmocka_unit_test(test_conv_transpose_hand_computed_spec_example),
        cmocka_unit_test(test_conv_transpose_channel_mismatch_names_node),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
