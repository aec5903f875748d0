/* resize ops. */
#include "../op.h"

const OpDef sh_ops_resize[] = {
    {.name = NULL},
};
