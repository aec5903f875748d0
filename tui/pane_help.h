/* The help overlay: the key bindings (with what each action does) and
 * every command of the command table, generated, so they cannot drift. */
#ifndef SH_TUI_PANE_HELP_H
#define SH_TUI_PANE_HELP_H

#include "keymap.h"
#include "pane.h"

Pane *pane_help_new(void);
void pane_help_fill(Pane *p, const Keymap *k);

#endif
