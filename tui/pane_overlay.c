#define _XOPEN_SOURCE 700
#define NCURSES_WIDECHAR 1
#include "pane_overlay.h"

#include "keymap.h"

#include "core/util.h"

#include <curses.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char **lines;
    Role *roles;
    int n, cap, cap_roles;
    char *title, *footer;
} Overlay;

Pane *pane_overlay_new(const PaneClass *cls)
{
    Pane *p = xcalloc(1, sizeof *p);
    p->cls = cls;
    p->state = xcalloc(1, sizeof(Overlay));
    return p;
}

void overlay_clear(Pane *p)
{
    Overlay *o = p->state;
    for (int i = 0; i < o->n; i++)
        free(o->lines[i]);
    o->n = 0;
    p->top = 0;
}

void overlay_add(Pane *p, Role role, const char *fmt, ...)
{
    Overlay *o = p->state;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    grow_array((void **)&o->lines, &o->cap, o->n + 1, sizeof *o->lines);
    grow_array((void **)&o->roles, &o->cap_roles, o->n + 1, sizeof *o->roles);
    o->lines[o->n] = xstrdup(buf);
    o->roles[o->n++] = role;
}

void overlay_set_title(Pane *p, const char *title, const char *footer)
{
    Overlay *o = p->state;
    free(o->title);
    free(o->footer);
    o->title = xstrdup(title);
    o->footer = xstrdup(footer);
}

static int body_rows(const Pane *p) { return p->h - 2; }

void overlay_draw(Pane *p, struct App *app)
{
    (void)app;
    Overlay *o = p->state;
    int rows = body_rows(p);
    if (p->top > o->n - rows)
        p->top = o->n - rows;
    if (p->top < 0)
        p->top = 0;
    char title[512];
    snprintf(title, sizeof title, " %s%s", o->title ? o->title : "",
             o->n > rows ? (p->top + rows < o->n ? "  (more below)" : "  (end)") : "");
    draw_text(p->y, p->x, p->w, ROLE_PANE_TITLE_FOCUS, title, true);
    for (int i = 0; i < rows; i++) {
        int k = p->top + i;
        draw_fill(p->y + 1 + i, p->x, p->w, ROLE_NORMAL);
        draw_text(p->y + 1 + i, p->x, 1, ROLE_BORDER, glyphs.vline, false);
        if (k < o->n)
            draw_text(p->y + 1 + i, p->x + 2, p->w - 3, o->roles[k], o->lines[k], false);
        draw_text(p->y + 1 + i, p->x + p->w - 1, 1, ROLE_BORDER, glyphs.vline, false);
    }
    draw_text(p->y + p->h - 1, p->x, p->w, ROLE_PANE_TITLE, o->footer ? o->footer : "", true);
}

bool overlay_scroll_key(Pane *p, int key)
{
    Overlay *o = p->state;
    int rows = body_rows(p), max = o->n - rows > 0 ? o->n - rows : 0;
    switch (key) {
    case KEY_UP: case KEY_SH_WHEEL_UP: p->top -= key == KEY_UP ? 1 : 3; break;
    case KEY_DOWN: case KEY_SH_WHEEL_DOWN: p->top += key == KEY_DOWN ? 1 : 3; break;
    case KEY_PPAGE: p->top -= rows - 1; break;
    case KEY_NPAGE: case ' ': p->top += rows - 1; break;
    case KEY_HOME: p->top = 0; break;
    case KEY_END: p->top = max; break;
    default: return false;
    }
    p->top = p->top < 0 ? 0 : p->top > max ? max : p->top;
    return true;
}

void overlay_done(Pane *p)
{
    Overlay *o = p->state;
    overlay_clear(p);
    free(o->lines);
    free(o->roles);
    free(o->title);
    free(o->footer);
    free(o);
}
