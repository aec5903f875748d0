/* Gemm and MatMul against the naive reference kernels: every transpose and
 * bias shape of Gemm, numpy promotion and broadcasting of MatMul. */
#include "tests/support/testutil.h"

#include "core/error.h"
#include "core/ops/kernels.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#define RTOL 1e-4
#define ATOL 1e-4

static void test_gemm_matches_reference_for_every_transpose_and_bias_shape(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 21);
    const int64_t M = 7, N = 5, K = 9;
    /* C as none, scalar, [1], [N], [M,1], [1,N], [M,N] */
    const struct {
        int rank;
        int64_t d0, d1;
    } cshapes[] = {{-1, 0, 0}, {0, 0, 0}, {1, 1, 0}, {1, N, 0}, {2, M, 1}, {2, 1, N}, {2, M, N}};
    double worst = 0;
    for (int ta = 0; ta <= 1; ta++)
        for (int tb = 0; tb <= 1; tb++)
            for (size_t ci = 0; ci < sizeof cshapes / sizeof *cshapes; ci++) {
                Shape as = ta ? shape_of(2, K, M) : shape_of(2, M, K);
                Shape bs = tb ? shape_of(2, N, K) : shape_of(2, K, N);
                Shape cs = {.rank = cshapes[ci].rank, .d = {cshapes[ci].d0, cshapes[ci].d1}};
                const bool has_c = cshapes[ci].rank >= 0;
                Tensor *in[3] = {t_rand(&r, &as, -1, 1), t_rand(&r, &bs, -1, 1), has_c ? t_rand(&r, &cs, -1, 1) : NULL};
                Tensor *y = NULL;
                const float alpha = 0.5f + (float)ta, beta = has_c ? -1.5f + (float)tb : 1.0f;
                Node *n = t_node("Gemm", 3, 1);
                node_set_int(n, "transA", ta);
                node_set_int(n, "transB", tb);
                node_set_float(n, "alpha", alpha);
                node_set_float(n, "beta", beta);
                assert_int_equal(t_run(n, 13, in, 3, &y, 1), 0);
                Shape ys = shape_of(2, M, N);
                Tensor *want = tensor_new(SH_F32, &ys);
                int64_t cm = cs.rank == 2 ? cs.d[0] : 1, cn = cs.rank >= 1 ? cs.d[cs.rank - 1] : 1;
                gemm_ref(tensor_f32(want), tensor_f32(in[0]), tensor_f32(in[1]), has_c ? tensor_f32(in[2]) : NULL,
                         M, N, K, ta, tb, alpha, beta, cm, cn);
                char label[64];
                snprintf(label, sizeof label, "gemm transA %d transB %d C case %zu", ta, tb, ci);
                double d = t_max_diff(label, y, want);
                worst = d > worst ? d : worst;
                assert_true(t_allclose(y, want, RTOL, ATOL));
                for (int i = 0; i < 3; i++)
                    tensor_free(in[i]);
                tensor_free(y);
                tensor_free(want);
                t_node_free(n);
            }
    printf("gemm: worst max abs diff %.3g\n", worst);
}

static void test_gemm_hand_computed(void **state)
{
    (void)state;
    /* [[1,2],[3,4]] x [[5,6],[7,8]] * 2 + 10 */
    Shape s = shape_of(2, (int64_t)2, (int64_t)2), cs = shape_of(0);
    Tensor *in[3] = {t_f32(&s, (const float[]){1, 2, 3, 4}), t_f32(&s, (const float[]){5, 6, 7, 8}),
                     t_f32(&cs, (const float[]){10})};
    Tensor *y = NULL;
    Node *n = t_node("Gemm", 3, 1);
    node_set_float(n, "alpha", 2);
    assert_int_equal(t_run(n, 13, in, 3, &y, 1), 0);
    const float want[] = {48, 54, 96, 110};
    for (int i = 0; i < 4; i++)
        assert_float_equal(tensor_f32(y)[i], want[i], 0);
    for (int i = 0; i < 3; i++)
        tensor_free(in[i]);
    tensor_free(y);
    t_node_free(n);
}

static void test_gemm_inner_dim_mismatch_names_node(void **state)
{
    (void)state;
    Shape as = shape_of(2, (int64_t)3, (int64_t)4), bs = shape_of(2, (int64_t)5, (int64_t)6);
    Tensor *in[2] = {tensor_new(SH_F32, &as), tensor_new(SH_F32, &bs)}, *y = NULL;
    Node *n = t_node("Gemm", 2, 1);
    assert_int_equal(t_run(n, 13, in, 2, &y, 1), SH_E_SHAPE);
    printf("error: %s\n", sh_errmsg());
    assert_non_null(strstr(sh_errmsg(), "test_Gemm"));
    assert_non_null(strstr(sh_errmsg(), "[3,4]"));
    /* C that does not broadcast to [3,6] */
    tensor_free(in[1]);
    bs = shape_of(2, (int64_t)4, (int64_t)6);
    in[1] = tensor_new(SH_F32, &bs);
    Shape cs = shape_of(1, (int64_t)4);
    Tensor *in3[3] = {in[0], in[1], tensor_new(SH_F32, &cs)};
    assert_int_equal(t_run(n, 13, in3, 3, &y, 1), SH_E_SHAPE);
    printf("error: %s\n", sh_errmsg());
    assert_non_null(strstr(sh_errmsg(), "C [4]"));
    tensor_free(in3[2]);
    tensor_free(in[0]);
    tensor_free(in[1]);
    t_node_free(n);
}

/* Shape from a list terminated by -9. */
static Shape dims(const int64_t *d)
{
    Shape s = {0};
    while (d[s.rank] != -9) {
        s.d[s.rank] = d[s.rank];
        s.rank++;
    }
    return s;
}

static void test_matmul_matches_reference_with_promotion_and_broadcasting(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 22);
    const struct {
        int64_t a[6], b[6], y[6];
    } cases[] = {
        {{6, -9}, {6, -9}, {-9}},                              /* dot product -> scalar */
        {{6, -9}, {6, 4, -9}, {4, -9}},                        /* vector x matrix */
        {{3, 6, -9}, {6, -9}, {3, -9}},                        /* matrix x vector */
        {{3, 6, -9}, {6, 4, -9}, {3, 4, -9}},
        {{2, 5, 3, 6, -9}, {6, 4, -9}, {2, 5, 3, 4, -9}},      /* shared B: one sgemm */
        {{2, 5, 3, 6, -9}, {6, -9}, {2, 5, 3, -9}},            /* shared vector B */
        {{6, -9}, {3, 6, 4, -9}, {3, 4, -9}},                  /* vector x batch */
        {{3, 6, -9}, {4, 6, 5, -9}, {4, 3, 5, -9}},            /* 2-D A against batched B */
        {{2, 1, 3, 6, -9}, {4, 6, 5, -9}, {2, 4, 3, 5, -9}},   /* broadcast both ways */
        {{1, 3, 6, -9}, {4, 6, 5, -9}, {4, 3, 5, -9}},
        {{2, 3, 3, 6, -9}, {3, 6, 5, -9}, {2, 3, 3, 5, -9}},
        {{2, 3, 0, -9}, {0, 4, -9}, {2, 3, 4, -9}},            /* K = 0: zeros */
        {{0, 3, 6, -9}, {6, 4, -9}, {0, 3, 4, -9}},            /* empty batch */
    };
    double worst = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        Shape as = dims(cases[i].a), bs = dims(cases[i].b), ys = dims(cases[i].y);
        Tensor *in[2] = {t_rand(&r, &as, -1, 1), t_rand(&r, &bs, -1, 1)}, *y = NULL;
        Node *n = t_node("MatMul", 2, 1);
        int rc = t_run(n, 13, in, 2, &y, 1);
        if (rc < 0)
            print_message("case %zu: %s\n", i, sh_errmsg());
        assert_int_equal(rc, 0);
        char sa[64], sb[64], label[160];
        Tensor *want = tensor_new(SH_F32, &ys);
        for (int64_t k = 0; k < want->numel; k++) /* reference must overwrite */
            tensor_f32(want)[k] = 1e30f;
        matmul_ref(tensor_f32(want), tensor_f32(in[0]), &as, tensor_f32(in[1]), &bs);
        snprintf(label, sizeof label, "matmul %s x %s", shape_str(&as, sa, sizeof sa), shape_str(&bs, sb, sizeof sb));
        double d = t_max_diff(label, y, want);
        worst = d > worst ? d : worst;
        assert_true(t_allclose(y, want, RTOL, ATOL));
        tensor_free(in[0]);
        tensor_free(in[1]);
        tensor_free(y);
        tensor_free(want);
        t_node_free(n);
    }
    printf("matmul: worst max abs diff %.3g\n", worst);
}

static void test_matmul_mismatched_shapes_fail_naming_node(void **state)
{
    (void)state;
    const struct {
        int64_t a[6], b[6];
    } cases[] = {
        {{3, 6, -9}, {5, 4, -9}},        /* inner dims */
        {{2, 3, 6, -9}, {3, 6, 4, -9}},  /* batch 2 vs 3 */
        {{6, -9}, {5, -9}},              /* vectors */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        Shape as = dims(cases[i].a), bs = dims(cases[i].b);
        Tensor *in[2] = {tensor_new(SH_F32, &as), tensor_new(SH_F32, &bs)}, *y = NULL;
        Node *n = t_node("MatMul", 2, 1);
        assert_int_equal(t_run(n, 13, in, 2, &y, 1), SH_E_SHAPE);
        printf("error: %s\n", sh_errmsg());
        assert_non_null(strstr(sh_errmsg(), "test_MatMul"));
        tensor_free(in[0]);
        tensor_free(in[1]);
        t_node_free(n);
    }
}

static void test_gemm_and_matmul_macs_are_m_n_k(void **state)
{
    (void)state;
    Shape as = shape_of(3, (int64_t)4, (int64_t)3, (int64_t)6), bs = shape_of(2, (int64_t)6, (int64_t)5);
    Tensor a = {.dtype = SH_F32, .shape = as, .numel = shape_numel(&as)};
    Tensor b = {.dtype = SH_F32, .shape = bs, .numel = shape_numel(&bs)};
    Tensor y = {0};
    Tensor *in[2] = {&a, &b}, *out[1] = {&y};
    Node *n = t_node("MatMul", 2, 1);
    OpCtx c = {.node = n, .opset = 13, .n_in = 2, .n_out = 1, .in = in, .out = out};
    assert_int_equal(n->op->infer(&c), 0);
    assert_int_equal(n->op->macs(&c), 4 * 3 * 5 * 6);
    t_node_free(n);
    /* Gemm with transA: A is [K, M] */
    as = shape_of(2, (int64_t)6, (int64_t)3);
    a.shape = as;
    a.numel = 18;
    n = t_node("Gemm", 2, 1);
    node_set_int(n, "transA", 1);
    c.node = n;
    assert_int_equal(n->op->infer(&c), 0);
    assert_int_equal(n->op->macs(&c), 3 * 5 * 6);
    t_node_free(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_matches_reference_for_every_transpose_and_bias_shape),
        cmocka_unit_test(test_gemm_hand_computed),
        cmocka_unit_test(test_gemm_inner_dim_mismatch_names_node),
        cmocka_unit_test(test_matmul_matches_reference_with_promotion_and_broadcasting),
        cmocka_unit_test(test_matmul_mismatched_shapes_fail_naming_node),
        cmocka_unit_test(test_gemm_and_matmul_macs_are_m_n_k),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
