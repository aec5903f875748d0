/* The log pane: commands as they run, their output, errors and notices.
 * It follows the newest line unless scrolled back. */
#ifndef SH_TUI_PANE_LOG_H
#define SH_TUI_PANE_LOG_H

#include "pane.h"

Pane *pane_log_new(void);

#endif
