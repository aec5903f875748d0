/* The layers pane: every node of the model with its op, output shape,
 * parameters, share of MACs, the group it starts (marked units / units,
 * blocked groups and why) and how much of it is already pruned. Moving
 * the selection selects the layer's group for the units and plot panes. */
#ifndef SH_TUI_PANE_LAYERS_H
#define SH_TUI_PANE_LAYERS_H

#include "pane.h"

Pane *pane_layers_new(void);
/* Selects the row of a layer (first producer of a group). */
void pane_layers_show(Pane *p, struct App *app, int row);

#endif
