/* reduce ops. */
#include "../op.h"

const OpDef sh_ops_reduce[] = {
    {.name = NULL},
};
