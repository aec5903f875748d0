/* slicing ops. */
#include "../op.h"

const OpDef sh_ops_slicing[] = {
    {.name = NULL},
};
