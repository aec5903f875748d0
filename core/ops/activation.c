/* Elementwise unary activations and math: output has the input's shape. */
#include "../error.h"
#include "../op.h"

#include <math.h>

static int unary_infer(OpCtx *c)
{
    int rc = op_check_input(c, 0, SH_F32);
    if (rc < 0)
        return rc;
    op_set_out(c, 0, SH_F32, &c->in[0]->shape);
    return 0;
}

static int relu_forward(OpCtx *c)
{
    const float *x = tensor_f32(c->in[0]);
    float *y = tensor_f32(c->out[0]);
    for (int64_t i = 0; i < c->in[0]->numel; i++)
        y[i] = x[i] > 0 ? x[i] : 0;
    return 0;
}

const OpDef sh_ops_activation[] = {
    {.name = "Relu", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .flags = OP_INPLACE,
     .infer = unary_infer, .forward = relu_forward},
    {.name = NULL},
};
