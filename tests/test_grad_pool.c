/* Pooling backward: MaxPool, AveragePool, LpPool and the Global pools
 * against central finite differences (t_gradcheck) over 1-D to 3-D,
 * batch 1, strides, dilations, asymmetric pads, auto_pad, ceil_mode and
 * count_include_pad; MaxPool's ties held to the element its own Indices
 * output names. MaxPool inputs are spread out (no two values within 2h)
 * so the finite difference never moves the maximum. */
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

static const char *const AUTO_PADS[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};

typedef struct {
    const char *label;
    int nd;
    int64_t n, c, in[3], k[3], stride[3], dil[3], pb[3], pe[3];
    int auto_pad, ceil_mode, count_include_pad;
} PoolCase;

static Shape shape_nc(int64_t n, int64_t c, int nd, const int64_t *sp)
{
    Shape s = {.rank = nd + 2};
    s.d[0] = n;
    s.d[1] = c;
    for (int i = 0; i < nd; i++)
        s.d[2 + i] = sp[i];
    return s;
}

static void set_pool_attrs(Node *n, const PoolCase *k, bool dilations)
{
    int64_t pads[6];
    for (int i = 0; i < k->nd; i++) {
        pads[i] = k->pb[i];
        pads[k->nd + i] = k->pe[i];
    }
    node_set_ints(n, "kernel_shape", k->k, k->nd);
    node_set_ints(n, "strides", k->stride, k->nd);
    if (dilations)
        node_set_ints(n, "dilations", k->dil, k->nd);
    if (k->auto_pad)
        node_set_str(n, "auto_pad", AUTO_PADS[k->auto_pad]);
    else
        node_set_ints(n, "pads", pads, 2 * k->nd);
    if (k->ceil_mode)
        node_set_int(n, "ceil_mode", 1);
    if (k->count_include_pad)
        node_set_int(n, "count_include_pad", 1);
}

/* Every value distinct and at least 0.05 from every other (shuffled). */
static void spread_out(TRng *r, Tensor *t)
{
    float *v = tensor_f32(t);
    for (int64_t i = 0; i < t->numel; i++)
        v[i] = 0.05f * (float)i - 0.025f * (float)t->numel;
    for (int64_t i = t->numel - 1; i > 0; i--) {
        int64_t j = trng_int(r, 0, i);
        float tmp = v[i];
        v[i] = v[j];
        v[j] = tmp;
    }
}

/* Fills cases[0..] with the shapes every windowed pool is checked on. */
static int pool_cases(PoolCase *c)
{
    int i = 0;
    c[i++] = (PoolCase){.label = "2-D 2x2 stride 2", .nd = 2, .n = 2, .c = 3, .in = {4, 6}, .k = {2, 2},
                        .stride = {2, 2}, .dil = {1, 1}};
    c[i++] = (PoolCase){.label = "2-D 2x2 stride 2, 9 windows wide, odd input", .nd = 2, .n = 2, .c = 2,
                        .in = {5, 19}, .k = {2, 2}, .stride = {2, 2}, .dil = {1, 1}};
    c[i++] = (PoolCase){.label = "2-D batch 1, 3x3 stride 2, asymmetric pads", .nd = 2, .n = 1, .c = 2,
                        .in = {5, 6}, .k = {3, 3}, .stride = {2, 2}, .dil = {1, 1}, .pb = {1, 0}, .pe = {0, 2}};
    c[i++] = (PoolCase){.label = "2-D dilation 2, stride 1", .nd = 2, .n = 2, .c = 2, .in = {6, 5}, .k = {2, 2},
                        .stride = {1, 1}, .dil = {2, 2}};
    c[i++] = (PoolCase){.label = "2-D ceil_mode, stride 2, pad 1", .nd = 2, .n = 1, .c = 2, .in = {5, 5},
                        .k = {3, 3}, .stride = {2, 2}, .dil = {1, 1}, .pb = {1, 1}, .pe = {1, 1}, .ceil_mode = 1};
    c[i++] = (PoolCase){.label = "2-D auto_pad SAME_UPPER, stride 2", .nd = 2, .n = 2, .c = 1, .in = {5, 4},
                        .k = {3, 2}, .stride = {2, 2}, .dil = {1, 1}, .auto_pad = 1};
    c[i++] = (PoolCase){.label = "2-D auto_pad SAME_LOWER", .nd = 2, .n = 1, .c = 2, .in = {4, 4}, .k = {2, 3},
                        .stride = {1, 1}, .dil = {1, 1}, .auto_pad = 2};
    c[i++] = (PoolCase){.label = "1-D 3 stride 2 pads 1/2", .nd = 1, .n = 2, .c = 3, .in = {9}, .k = {3},
                        .stride = {2}, .dil = {1}, .pb = {1}, .pe = {2}};
    c[i++] = (PoolCase){.label = "3-D 2x2x2 stride 2", .nd = 3, .n = 1, .c = 2, .in = {4, 4, 5}, .k = {2, 2, 2},
                        .stride = {2, 2, 2}, .dil = {1, 1, 1}};
    c[i++] = (PoolCase){.label = "3-D 3x2x2 stride 1, pads", .nd = 3, .n = 2, .c = 1, .in = {3, 4, 3},
                        .k = {3, 2, 2}, .stride = {1, 1, 2}, .dil = {1, 1, 1}, .pb = {1, 0, 1}, .pe = {1, 1, 0}};
    return i;
}

static double check_pool(const char *op, const PoolCase *k, int which, double *worst, const char *extra,
                         void (*tune)(Node *))
{
    TRng r;
    trng_seed(&r, (uint64_t)which * 101 + 7);
    Shape xs = shape_nc(k->n, k->c, k->nd, k->in);
    Tensor *x = t_rand(&r, &xs, -1, 1);
    if (strcmp(op, "MaxPool") == 0)
        spread_out(&r, x);
    Node *node = t_node(op, 1, 1);
    set_pool_attrs(node, k, strcmp(op, "MaxPool") == 0);
    if (tune)
        tune(node);
    char label[200];
    snprintf(label, sizeof label, "%s %s%s", op, k->label, extra);
    GradCheck gc = {.seed = (uint64_t)which + 1};
    double e = t_gradcheck(label, node, 13, &x, 1, 1, &gc);
    if (e < 0 || e > 1)
        print_message("%s: error %.3f of tolerance (%s)\n", label, e, sh_errmsg());
    *worst = fmax(*worst, e < 0 ? INFINITY : e);
    tensor_free(x);
    t_node_free(node);
    return e;
}

static void test_maxpool_backward_matches_finite_differences(void **state)
{
    (void)state;
    PoolCase c[16];
    const int n = pool_cases(c);
    double worst = 0;
    for (int i = 0; i < n; i++)
        check_pool("MaxPool", &c[i], i, &worst, "", NULL);
    printf("MaxPool: worst gradcheck error %.3f of tolerance over %d cases\n", worst, n);
    assert_true(worst <= 1);
}

static void test_avgpool_backward_matches_finite_differences_with_and_without_pad_counting(void **state)
{
    (void)state;
    PoolCase c[16];
    const int n = pool_cases(c);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        if (c[i].dil[0] > 1 || c[i].dil[1] > 1 || c[i].dil[2] > 1)
            continue; /* AveragePool has no dilations before opset 19 */
        for (int cip = 0; cip < 2; cip++) {
            PoolCase k = c[i];
            k.count_include_pad = cip;
            check_pool("AveragePool", &k, i, &worst, cip ? " count_include_pad" : "", NULL);
        }
    }
    printf("AveragePool: worst gradcheck error %.3f of tolerance\n", worst);
    assert_true(worst <= 1);
}

static void set_p3(Node *n) { node_set_int(n, "p", 3); }
static void set_p1(Node *n) { node_set_int(n, "p", 1); }

static void test_lppool_backward_matches_finite_differences_for_p_1_2_3(void **state)
{
    (void)state;
    PoolCase c[16];
    const int n = pool_cases(c);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        if (c[i].dil[0] > 1 || c[i].dil[1] > 1 || c[i].dil[2] > 1)
            continue;
        check_pool("LpPool", &c[i], i, &worst, " p=2", NULL);
        check_pool("LpPool", &c[i], i, &worst, " p=3", set_p3);
    }
    /* p=1 has a kink at 0: values kept away from it */
    PoolCase k = c[0];
    TRng r;
    trng_seed(&r, 99);
    Shape xs = shape_nc(k.n, k.c, k.nd, k.in);
    Tensor *x = t_rand(&r, &xs, 0.2f, 1);
    for (int64_t i = 0; i < x->numel; i += 2)
        tensor_f32(x)[i] = -tensor_f32(x)[i];
    Node *node = t_node("LpPool", 1, 1);
    set_pool_attrs(node, &k, false);
    set_p1(node);
    GradCheck gc = {.seed = 5};
    double e = t_gradcheck("LpPool p=1 (signs mixed, away from 0)", node, 13, &x, 1, 1, &gc);
    worst = fmax(worst, e < 0 ? INFINITY : e);
    tensor_free(x);
    t_node_free(node);
    printf("LpPool: worst gradcheck error %.3f of tolerance\n", worst);
    assert_true(worst <= 1);
}

/* MaxPool with many ties: the gradient of every window lands on the
 * element forward reports in Indices (the first maximum in window order). */
static void test_maxpool_backward_ties_follow_forward_indices(void **state)
{
    (void)state;
    PoolCase c[16];
    const int n = pool_cases(c);
    int checked = 0;
    for (int i = 0; i < n; i++) {
        if (c[i].auto_pad)
            continue;
        TRng r;
        trng_seed(&r, (uint64_t)i + 40);
        const PoolCase *k = &c[i];
        Shape xs = shape_nc(k->n, k->c, k->nd, k->in);
        Tensor *x = t_rand(&r, &xs, 0, 1);
        for (int64_t j = 0; j < x->numel; j++) /* three values only: ties everywhere */
            tensor_f32(x)[j] = (float)trng_int(&r, 0, 2);
        Node *node = t_node("MaxPool", 1, 2);
        set_pool_attrs(node, k, true);
        Tensor *out[2] = {NULL, NULL};
        assert_int_equal(t_run(node, 12, &x, 1, out, 2), 0);
        Tensor *dy = t_rand(&r, &out[0]->shape, -1, 1);
        Tensor *dx = tensor_new(SH_F32, &xs), *want = tensor_new(SH_F32, &xs);
        const int64_t *idx = tensor_i64(out[1]);
        for (int64_t o = 0; o < out[0]->numel; o++)
            if (idx[o] >= 0)
                tensor_f32(want)[idx[o]] += tensor_f32(dy)[o];
        OpCtx ctx = {.node = node, .opset = 12, .n_in = 1, .n_out = 2, .in = &x, .out = out};
        size_t sb = node->op->bwd_scratch(&ctx);
        ctx.scratch = aligned_alloc(64, (sb + 63) / 64 * 64 + 64);
        ctx.scratch_bytes = sb;
        Tensor *gout[2] = {dy, NULL}, *gin[1] = {dx};
        assert_int_equal(node->op->backward(&ctx, gout, gin), 0);
        char label[160];
        snprintf(label, sizeof label, "MaxPool ties %s: dX vs Indices", k->label);
        assert_true(t_max_diff(label, dx, want) == 0);
        free(ctx.scratch);
        tensor_free(dx), tensor_free(want), tensor_free(dy), tensor_free(out[0]), tensor_free(out[1]);
        tensor_free(x);
        t_node_free(node);
        checked++;
    }
    assert_true(checked >= 6);
}

static void test_global_pools_backward_match_finite_differences(void **state)
{
    (void)state;
    const char *ops[] = {"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"};
    const Shape shapes[] = {shape_of(3, (int64_t)2, (int64_t)3, (int64_t)5),
                            shape_of(4, (int64_t)1, (int64_t)2, (int64_t)3, (int64_t)4),
                            shape_of(5, (int64_t)2, (int64_t)2, (int64_t)2, (int64_t)3, (int64_t)2)};
    double worst = 0;
    for (int o = 0; o < 3; o++)
        for (int si = 0; si < 3; si++)
            for (int p = 2; p <= (o == 2 ? 3 : 2); p++) {
                TRng r;
                trng_seed(&r, (uint64_t)(o * 10 + si + p));
                Tensor *x = t_rand(&r, &shapes[si], -1, 1);
                if (o == 1)
                    spread_out(&r, x);
                Node *node = t_node(ops[o], 1, 1);
                if (o == 2)
                    node_set_int(node, "p", p);
                char label[128];
                snprintf(label, sizeof label, "%s rank %d%s", ops[o], shapes[si].rank, o == 2 ? (p == 2 ? " p=2" : " p=3") : "");
                GradCheck gc = {.seed = (uint64_t)si + 3};
                double e = t_gradcheck(label, node, 13, &x, 1, 1, &gc);
                worst = fmax(worst, e < 0 ? INFINITY : e);
                tensor_free(x);
                t_node_free(node);
            }
    printf("Global pools: worst gradcheck error %.3f of tolerance\n", worst);
    assert_true(worst <= 1);
}

/* Random windows: 1-3 spatial dims, kernels 1-3, strides 1-3, pads below
 * the kernel, dilation (MaxPool), ceil_mode, batch 1 every third draw. */
static void test_pools_backward_random_shapes_match_finite_differences(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 77);
    double worst = 0;
    int ran = 0;
    for (int draw = 0; draw < 30; draw++) {
        PoolCase k = {.label = "random", .nd = (int)trng_int(&r, 1, 3)};
        k.n = draw % 3 == 0 ? 1 : 2;
        k.c = trng_int(&r, 1, 3);
        const char *op = draw % 3 == 0 ? "MaxPool" : draw % 3 == 1 ? "AveragePool" : "LpPool";
        bool ok = true;
        for (int i = 0; i < k.nd; i++) {
            k.in[i] = trng_int(&r, 3, k.nd == 3 ? 5 : 8);
            k.k[i] = trng_int(&r, 1, 3);
            k.stride[i] = trng_int(&r, 1, 3);
            k.dil[i] = draw % 3 == 0 ? trng_int(&r, 1, 2) : 1;
            k.pb[i] = trng_int(&r, 0, k.k[i] - 1);
            k.pe[i] = trng_int(&r, 0, k.k[i] - 1);
            ok &= k.in[i] + k.pb[i] + k.pe[i] >= (k.k[i] - 1) * k.dil[i] + 1;
        }
        k.ceil_mode = (int)trng_int(&r, 0, 1);
        k.count_include_pad = (int)trng_int(&r, 0, 1);
        if (!ok)
            continue;
        char extra[64];
        snprintf(extra, sizeof extra, " %dd draw %d%s", k.nd, draw, k.ceil_mode ? " ceil" : "");
        double e = check_pool(op, &k, 1000 + draw, &worst, extra, NULL);
        assert_true(e >= 0 && e <= 1);
        ran++;
    }
    printf("random pools: %d cases, worst gradcheck error %.3f of tolerance\n", ran, worst);
    assert_true(ran >= 20);
}

static void test_pool_backward_without_input_gradient_does_nothing(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 3);
    Shape xs = shape_of(4, (int64_t)1, (int64_t)1, (int64_t)4, (int64_t)4);
    Tensor *x = t_rand(&r, &xs, -1, 1);
    Node *node = t_node("AveragePool", 1, 1);
    const int64_t k[2] = {2, 2};
    node_set_ints(node, "kernel_shape", k, 2);
    Tensor *y = NULL;
    assert_int_equal(t_run(node, 13, &x, 1, &y, 1), 0);
    Tensor *gout[1] = {y}, *gin[1] = {NULL};
    OpCtx ctx = {.node = node, .opset = 13, .n_in = 1, .n_out = 1, .in = &x, .out = &y};
    assert_int_equal(node->op->backward(&ctx, gout, gin), 0);
    tensor_free(y), tensor_free(x);
    t_node_free(node);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_maxpool_backward_matches_finite_differences),
        cmocka_unit_test(test_avgpool_backward_matches_finite_differences_with_and_without_pad_counting),
        cmocka_unit_test(test_lppool_backward_matches_finite_differences_for_p_1_2_3),
        cmocka_unit_test(test_maxpool_backward_ties_follow_forward_indices),
        cmocka_unit_test(test_global_pools_backward_match_finite_differences),
        cmocka_unit_test(test_pools_backward_random_shapes_match_finite_differences),
        cmocka_unit_test(test_pool_backward_without_input_gradient_does_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
