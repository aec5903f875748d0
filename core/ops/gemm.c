/* gemm ops. */
#include "../op.h"

const OpDef sh_ops_gemm[] = {
    {.name = NULL},
};
