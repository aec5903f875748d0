#define _XOPEN_SOURCE 700
#define NCURSES_WIDECHAR 1
#include "pane_log.h"

#include "app.h"
#include "draw.h"

#include <curses.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* p->top: lines scrolled back from the newest (0: following). */

static Role kind_role(LogKind k)
{
    switch (k) {
    case LOG_COMMAND: return ROLE_COMMAND;
    case LOG_ERROR: return ROLE_ERROR;
    case LOG_NOTICE: return ROLE_NOTICE;
    default: return ROLE_NORMAL;
    }
}

static void log_draw(Pane *p, App *app)
{
    int n = log_count(&app->log), rows = p->h - 1;
    if (p->top > n - rows)
        p->top = n - rows > 0 ? n - rows : 0;
    char title[64];
    snprintf(title, sizeof title, p->top ? " log (%d lines back; End follows)" : " log", p->top);
    pane_title(p, title);
    int first = n - rows - p->top;
    for (int i = 0; i < rows; i++) {
        char line[1024];
        LogKind kind;
        int y = p->y + 1 + i;
        if (first + i < 0 || !log_line(&app->log, first + i, line, sizeof line, &kind))
            continue;
        draw_text(y, p->x, p->w, kind_role(kind), line, false);
    }
}

static bool log_key(Pane *p, App *app, int key)
{
    int n = log_count(&app->log), rows = p->h - 1, max = n - rows > 0 ? n - rows : 0;
    switch (key) {
    case KEY_UP: p->top++; break;
    case KEY_DOWN: p->top--; break;
    case KEY_SH_WHEEL_UP: p->top += 3; break;
    case KEY_SH_WHEEL_DOWN: p->top -= 3; break;
    case KEY_PPAGE: p->top += rows - 1; break;
    case KEY_NPAGE: p->top -= rows - 1; break;
    case KEY_HOME: p->top = max; break;
    case KEY_END: p->top = 0; break;
    default: return false;
    }
    p->top = p->top < 0 ? 0 : p->top > max ? max : p->top;
    return true;
}

static bool log_search(Pane *p, App *app, const char *text)
{
    int n = log_count(&app->log), rows = p->h - 1;
    int from = n - rows - p->top - 1; /* search upward from above the top line */
    for (int i = from; i >= 0; i--) {
        char line[1024];
        LogKind kind;
        if (log_line(&app->log, i, line, sizeof line, &kind) && text_contains(line, text)) {
            p->top = n - rows - i;
            if (p->top < 0)
                p->top = 0;
            return true;
        }
    }
    return false;
}

static const PaneClass log_class = {.name = "log", .draw = log_draw, .on_key = log_key, .search = log_search};

Pane *pane_log_new(void)
{
    Pane *p = calloc(1, sizeof *p);
    p->cls = &log_class;
    return p;
}
