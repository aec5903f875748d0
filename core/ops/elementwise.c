/* elementwise ops. */
#include "../op.h"

const OpDef sh_ops_elementwise[] = {
    {.name = NULL},
};
