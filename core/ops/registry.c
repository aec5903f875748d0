/* The registry: one line per op family. Adding an op is one entry in its
 * family's table; adding a family is one file and one line here. */
#include "../op.h"

#include <string.h>

static const OpDef *const families[] = {
    sh_ops_activation,
    sh_ops_elementwise,
    sh_ops_conv,
    sh_ops_gemm,
    sh_ops_norm,
    sh_ops_pool,
    sh_ops_reduce,
    sh_ops_softmax,
    sh_ops_shape,
    sh_ops_slicing,
    sh_ops_resize,
    sh_ops_constant,
};

const OpDef *op_find(const char *op_type)
{
    for (size_t f = 0; f < sizeof families / sizeof *families; f++)
        for (const OpDef *op = families[f]; op->name; op++)
            if (strcmp(op->name, op_type) == 0)
                return op;
    return NULL;
}

void op_foreach(void (*fn)(const OpDef *op, void *arg), void *arg)
{
    for (size_t f = 0; f < sizeof families / sizeof *families; f++)
        for (const OpDef *op = families[f]; op->name; op++)
            fn(op, arg);
}
