/* The units pane: the units of the selected group (channels, neurons,
 * heads, blocks), each with a score bar, sorted by score (lowest first)
 * or by index, marked units highlighted. For attention groups a layer x
 * head heat map of the scores sits above the list. */
#ifndef SH_TUI_PANE_UNITS_H
#define SH_TUI_PANE_UNITS_H

#include "pane.h"

Pane *pane_units_new(void);
/* The unit on the selected row, -1 if none. */
int pane_units_selected(Pane *p, struct App *app);
/* Forgets the sort order (the group or its scores changed). */
void pane_units_reset(Pane *p);

#endif
