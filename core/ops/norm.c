/* norm ops. */
#include "../op.h"

const OpDef sh_ops_norm[] = {
    {.name = NULL},
};
