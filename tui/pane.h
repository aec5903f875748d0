/* A pane: a rectangle of the screen with its own state, drawn from the
 * view model. Panes only ever see keys: actions arrive as curses keys
 * (KEY_UP, KEY_NPAGE, '\n', ...) and mouse events as synthetic keys
 * (KEY_SH_CLICK with app->click_row, wheel keys). */
#ifndef SH_TUI_PANE_H
#define SH_TUI_PANE_H

#include <stdbool.h>

struct App;
typedef struct Pane Pane;

typedef struct PaneClass {
    const char *name;
    void (*draw)(Pane *p, struct App *app);
    /* true if the key was used */
    bool (*on_key)(Pane *p, struct App *app, int key);
    void (*on_resize)(Pane *p);
    /* frees the pane's own state */
    void (*done)(Pane *p);
    /* finds text from the row after the selection on; true if found */
    bool (*search)(Pane *p, struct App *app, const char *text);
} PaneClass;

struct Pane {
    const PaneClass *cls;
    int y, x, h, w;   /* the rectangle, title row included */
    bool focus;
    int sel, top;     /* a list's selected row and first shown row */
    void *state;
};

/* Places the pane and tells it. */
void pane_place(Pane *p, int y, int x, int h, int w);
void pane_free(Pane *p); /* NULL-safe */
/* Draws the title row (highlighted when focused). */
void pane_title(const Pane *p, const char *title);
/* Keeps sel in [0, n) and visible in rows rows of the list. */
void pane_clamp(Pane *p, int n, int rows);
/* Moves a list's selection by a navigation key; true if it was one. */
bool pane_list_key(Pane *p, int key, int n, int rows);
/* True if text holds needle, ignoring ASCII case. */
bool text_contains(const char *text, const char *needle);

#endif
