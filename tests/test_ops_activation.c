/* Unary activation ops against hand-computed values and naive references. */
#include "tests/support/testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static void test_relu_zeroes_negatives(void **state)
{
    (void)state;
    Shape s = shape_of(2, (int64_t)2, (int64_t)2);
    float xv[] = {-1.5f, 0.0f, 2.0f, -0.0f};
    Tensor *x = t_f32(&s, xv), *y = NULL;
    Node *n = t_node("Relu", 1, 1);
    assert_int_equal(t_run(n, 17, &x, 1, &y, 1), 0);
    assert_true(shape_eq(&y->shape, &s));
    float want[] = {0, 0, 2, 0};
    for (int i = 0; i < 4; i++)
        assert_float_equal(tensor_f32(y)[i], want[i], 0);
    tensor_free(x);
    tensor_free(y);
    t_node_free(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relu_zeroes_negatives),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
