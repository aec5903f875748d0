/* The plot pane: the selected group's sensitivity curve (accuracy as its
 * units are removed, the plan's ratio marked), or, while training or
 * fine-tuning runs (and after, with v), the live loss and accuracy. */
#ifndef SH_TUI_PANE_PLOT_H
#define SH_TUI_PANE_PLOT_H

#include "pane.h"

Pane *pane_plot_new(void);
/* True if the pane shows training curves now. */
bool pane_plot_training(const struct App *app);

#endif
