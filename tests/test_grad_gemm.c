/* Gemm and MatMul backward against central finite differences. */
#include "tests/support/gradcheck.h"
#include "tests/support/testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>

static void check_gemm(int64_t m, int64_t k, int64_t n, int ta, int tb, int c_kind, float alpha, float beta)
{
    TRng r;
    trng_seed(&r, (uint64_t)(m * 131 + k * 17 + n + ta * 7 + tb * 3 + c_kind));
    Shape as = ta ? shape_of(2, k, m) : shape_of(2, m, k), bs = tb ? shape_of(2, n, k) : shape_of(2, k, n);
    Shape cs = c_kind == 1 ? shape_of(1, n) : c_kind == 2 ? shape_of(2, m, n) : shape_of(2, m, (int64_t)1);
    Tensor *in[3] = {t_rand(&r, &as, -1, 1), t_rand(&r, &bs, -1, 1), c_kind ? t_rand(&r, &cs, -1, 1) : NULL};
    Node *node = t_node("Gemm", c_kind ? 3 : 2, 1);
    node_set_int(node, "transA", ta);
    node_set_int(node, "transB", tb);
    node_set_float(node, "alpha", alpha);
    node_set_float(node, "beta", beta);
    char label[128];
    snprintf(label, sizeof label, "Gemm %lldx%lldx%lld tA=%d tB=%d C=%d", (long long)m, (long long)k,
             (long long)n, ta, tb, c_kind);
    GradCheck gc = {.seed = 1};
    double e = t_gradcheck(label, node, 13, in, c_kind ? 3 : 2, 1, &gc);
    assert_true(e >= 0 && e <= 1);
    for (int i = 0; i < 3; i++)
        tensor_free(in[i]);
    t_node_free(node);
}

static void test_gemm_backward_all_transposes_and_bias_shapes(void **state)
{
    (void)state;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            check_gemm(3, 5, 4, ta, tb, 1, 1.0f, 1.0f);
    check_gemm(1, 7, 3, 0, 1, 2, 0.5f, 2.0f);
    check_gemm(4, 2, 6, 1, 0, 3, 1.5f, -1.0f);
    check_gemm(2, 3, 2, 0, 0, 0, 1.0f, 1.0f);
}

static void check_matmul(const Shape *as, const Shape *bs, const char *label)
{
    TRng r;
    trng_seed(&r, (uint64_t)(as->rank * 10 + bs->rank));
    Tensor *in[2] = {t_rand(&r, as, -1, 1), t_rand(&r, bs, -1, 1)};
    Node *node = t_node("MatMul", 2, 1);
    GradCheck gc = {.seed = 2};
    double e = t_gradcheck(label, node, 13, in, 2, 1, &gc);
    assert_true(e >= 0 && e <= 1);
    tensor_free(in[0]);
    tensor_free(in[1]);
    t_node_free(node);
}

static void test_matmul_backward_batched_broadcast_and_vectors(void **state)
{
    (void)state;
    Shape a1 = shape_of(3, (int64_t)2, (int64_t)3, (int64_t)4), b1 = shape_of(2, (int64_t)4, (int64_t)5);
    check_matmul(&a1, &b1, "MatMul [2,3,4]x[4,5] (shared B)");
    Shape a2 = shape_of(4, (int64_t)2, (int64_t)3, (int64_t)4, (int64_t)2), b2 = shape_of(4, (int64_t)2, (int64_t)3, (int64_t)2, (int64_t)5);
    check_matmul(&a2, &b2, "MatMul batched [2,3,4,2]x[2,3,2,5]");
    Shape a3 = shape_of(3, (int64_t)1, (int64_t)3, (int64_t)4), b3 = shape_of(3, (int64_t)3, (int64_t)4, (int64_t)2);
    check_matmul(&a3, &b3, "MatMul broadcast A [1,3,4]x[3,4,2]");
    Shape a4 = shape_of(1, (int64_t)4), b4 = shape_of(3, (int64_t)2, (int64_t)4, (int64_t)3);
    check_matmul(&a4, &b4, "MatMul vector A [4]x[2,4,3]");
    Shape a5 = shape_of(2, (int64_t)3, (int64_t)4), b5 = shape_of(1, (int64_t)4);
    check_matmul(&a5, &b5, "MatMul vector B [3,4]x[4]");
    Shape a6 = shape_of(2, (int64_t)1, (int64_t)4), b6 = shape_of(2, (int64_t)4, (int64_t)1);
    check_matmul(&a6, &b6, "MatMul batch 1 [1,4]x[4,1]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_backward_all_transposes_and_bias_shapes),
        cmocka_unit_test(test_matmul_backward_batched_broadcast_and_vectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
