/* shape ops. */
#include "../op.h"

const OpDef sh_ops_shape[] = {
    {.name = NULL},
};
