/* The preview overlay: what `preview` reported for the current plan, every
 * tensor slice grouped by the layer that owns it, with before -> after
 * sizes and totals. a (or Enter) runs `apply`; Esc closes. */
#ifndef SH_TUI_PANE_PREVIEW_H
#define SH_TUI_PANE_PREVIEW_H

#include "pane.h"

#include <cJSON.h>

Pane *pane_preview_new(void);
/* Fills the overlay from a preview result; est_accuracy < 0: unknown. */
void pane_preview_fill(Pane *p, const cJSON *result, double est_accuracy, double accuracy);

#endif
