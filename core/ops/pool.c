/* pool ops. */
#include "../op.h"

const OpDef sh_ops_pool[] = {
    {.name = NULL},
};
