/* An overlay: a framed, scrollable box of text lines over the panes
 * (the preview and the help are overlays). */
#ifndef SH_TUI_PANE_OVERLAY_H
#define SH_TUI_PANE_OVERLAY_H

#include "draw.h"
#include "pane.h"

Pane *pane_overlay_new(const PaneClass *cls);
/* Replaces the text. */
void overlay_clear(Pane *p);
void overlay_add(Pane *p, Role role, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void overlay_set_title(Pane *p, const char *title, const char *footer);
/* For a class's draw / on_key / done. */
void overlay_draw(Pane *p, struct App *app);
bool overlay_scroll_key(Pane *p, int key);
void overlay_done(Pane *p);

#endif
