/* constant ops. */
#include "../op.h"

const OpDef sh_ops_constant[] = {
    {.name = NULL},
};
