#define _XOPEN_SOURCE 700
#define NCURSES_WIDECHAR 1
#include "pane.h"

#include "draw.h"
#include "keymap.h"

#include <curses.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

void pane_place(Pane *p, int y, int x, int h, int w)
{
    p->y = y;
    p->x = x;
    p->h = h;
    p->w = w;
    if (p->cls->on_resize)
        p->cls->on_resize(p);
}

void pane_free(Pane *p)
{
    if (!p)
        return;
    if (p->cls->done)
        p->cls->done(p);
    free(p);
}

void pane_title(const Pane *p, const char *title)
{
    draw_text(p->y, p->x, p->w, p->focus ? ROLE_PANE_TITLE_FOCUS : ROLE_PANE_TITLE, title, true);
}

void pane_clamp(Pane *p, int n, int rows)
{
    if (rows < 1)
        rows = 1;
    if (p->sel >= n)
        p->sel = n - 1;
    if (p->sel < 0)
        p->sel = 0;
    if (p->top > p->sel)
        p->top = p->sel;
    if (p->sel >= p->top + rows)
        p->top = p->sel - rows + 1;
    if (p->top > n - rows)
        p->top = n - rows;
    if (p->top < 0)
        p->top = 0;
}

bool pane_list_key(Pane *p, int key, int n, int rows)
{
    switch (key) {
    case KEY_UP: p->sel--; break;
    case KEY_DOWN: p->sel++; break;
    case KEY_PPAGE: p->sel -= rows > 1 ? rows - 1 : 1; break;
    case KEY_NPAGE: p->sel += rows > 1 ? rows - 1 : 1; break;
    case KEY_HOME: p->sel = 0; break;
    case KEY_END: p->sel = n - 1; break;
    case KEY_SH_WHEEL_UP: p->sel -= 3; break;
    case KEY_SH_WHEEL_DOWN: p->sel += 3; break;
    default: return false;
    }
    pane_clamp(p, n, rows);
    return true;
}

bool text_contains(const char *text, const char *needle)
{
    size_t n = strlen(needle);
    for (; *text; text++) {
        size_t i = 0;
        while (i < n && text[i] && tolower((unsigned char)text[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return true;
    }
    return n == 0;
}
