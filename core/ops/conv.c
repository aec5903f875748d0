/* conv ops. */
#include "../op.h"

const OpDef sh_ops_conv[] = {
    {.name = NULL},
};
