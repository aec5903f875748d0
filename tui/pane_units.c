#define _XOPEN_SOURCE 700
#define NCURSES_WIDECHAR 1
#include "pane_units.h"

#include "app.h"
#include "draw.h"

#include <curses.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    bool by_index;      /* else by score, lowest first */
    int *order;         /* row -> unit */
    int n;
    long generation;    /* of the view model the order was made for */
    int group;
} Units;

static const double *sort_scores; /* qsort has no context argument */

static int by_score(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    double sx = sort_scores[x], sy = sort_scores[y];
    return sx < sy ? -1 : sx > sy ? 1 : x - y;
}

static const VmGroup *shown_group(const App *app) { return vm_group(&app->vm, app->sel_group); }

/* The row order for the shown group, remade when the model view changed. */
static void make_order(Units *u, const App *app)
{
    const VmGroup *g = shown_group(app);
    int id = g ? g->id : -1;
    if (u->order && u->generation == app->vm.generation && u->group == id)
        return;
    free(u->order);
    u->n = g ? g->n_units : 0;
    u->order = malloc(sizeof(int) * (size_t)(u->n + 1));
    for (int i = 0; i < u->n; i++)
        u->order[i] = i;
    if (g && g->scores && !u->by_index) {
        sort_scores = g->scores;
        qsort(u->order, (size_t)u->n, sizeof(int), by_score);
    }
    u->generation = app->vm.generation;
    u->group = id;
}

void pane_units_reset(Pane *p)
{
    Units *u = p->state;
    free(u->order);
    u->order = NULL;
}

static void score_range(const VmGroup *g, double *lo, double *hi)
{
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int i = 0; g->scores && i < g->n_units; i++) {
        *lo = fmin(*lo, g->scores[i]);
        *hi = fmax(*hi, g->scores[i]);
    }
}

/* The layer x head heat map of every attention group; returns rows used. */
static int heat_map(const Pane *p, const App *app, int y, int max_rows)
{
    int rows = 0;
    draw_textf(y, p->x, p->w, ROLE_HEADER, "heads (score: cold -> hot, %s marked)", glyphs.mark);
    rows++;
    for (int i = 0; i < app->vm.n_groups && rows < max_rows; i++) {
        const VmGroup *g = &app->vm.groups[i];
        if (g->kind != GROUP_HEADS)
            continue;
        bool cur = g->id == app->sel_group;
        draw_textf(y + rows, p->x, 14, cur ? ROLE_SELECTED_DIM : ROLE_DIM, "%-13.13s", g->name);
        double lo, hi;
        score_range(g, &lo, &hi);
        for (int h = 0; h < g->n_units && 14 + 2 * h + 1 < p->w; h++) {
            int level = g->scores && hi > lo ? (int)((g->scores[h] - lo) / (hi - lo) * 4.999) : 0;
            const char *glyph = g->marked[h] ? glyphs.mark : g->scores ? glyphs.heat[level] : "?";
            draw_text(y + rows, p->x + 14 + 2 * h, 1, g->marked[h] ? ROLE_MARKED : (Role)(ROLE_HEAT0 + level),
                      glyph, false);
        }
        rows++;
    }
    return rows;
}

static void draw_unit(const Pane *p, const App *app, const VmGroup *g, int row, int unit, int y, double lo,
                      double hi)
{
    bool sel = row == p->sel, marked = g->marked[unit];
    Role base = sel ? (p->focus ? ROLE_SELECTED : ROLE_SELECTED_DIM) : marked ? ROLE_MARKED : ROLE_NORMAL;
    draw_fill(y, p->x, p->w, base);
    draw_textf(y, p->x, 8, base, "%5d %s", unit, marked ? glyphs.mark : " ");
    int bar_w = p->w - 8 - 12;
    if (g->scores) {
        double s = g->scores[unit], frac = hi > 0 ? s / hi : 0;
        if (lo < 0 && hi > lo) /* signed scores: the bar spans the range */
            frac = (s - lo) / (hi - lo);
        int rank = 0;
        for (int i = 0; i < g->n_units; i++)
            rank += g->scores[i] < s;
        Role bar = rank * 3 < g->n_units ? ROLE_SCORE_LOW : rank * 3 < 2 * g->n_units ? ROLE_SCORE_MID : ROLE_SCORE_HIGH;
        draw_bar(y, p->x + 8, bar_w, frac, sel ? base : marked ? ROLE_MARKED : bar);
        draw_textf(y, p->x + 8 + bar_w, 12, base, " %10.4g", s);
    }
    (void)app;
}

static void units_draw(Pane *p, App *app)
{
    Units *u = p->state;
    const VmGroup *g = shown_group(app);
    char title[200];
    if (!g) {
        pane_title(p, " units");
        draw_text(p->y + 2, p->x + 1, p->w - 1, ROLE_DIM,
                  app->vm.has_model ? "select a layer that starts a group (Conv, Gemm...)" : "no model", false);
        return;
    }
    make_order(u, app);
    snprintf(title, sizeof title, " units: %s, %d %s, %d marked%s%s%s", g->name, g->n_units, group_kind_name(g->kind),
             g->n_marked, g->scores ? ", " : "", g->scores && app->vm.score_name ? app->vm.score_name : "",
             g->scores ? (u->by_index ? " by index" : " by score") : "");
    pane_title(p, title);
    int y = p->y + 1, rows = p->h - 1;
    if (g->blocked) {
        draw_textf(y, p->x, p->w, ROLE_BLOCKED, "blocked: %s", g->reason ? g->reason : "");
        y++;
        rows--;
    } else if (!g->scores) {
        draw_text(y, p->x, p->w, ROLE_DIM, "no scores yet (s: score l1, or :score CRITERION)", true);
        y++;
        rows--;
    }
    if (g->kind == GROUP_HEADS && rows > 4) {
        int used = heat_map(p, app, y, rows / 2);
        y += used;
        rows -= used;
    }
    pane_clamp(p, u->n, rows);
    double lo, hi;
    score_range(g, &lo, &hi);
    for (int i = 0; i < rows && p->top + i < u->n; i++)
        draw_unit(p, app, g, p->top + i, u->order[p->top + i], y + i, lo, hi);
}

static int list_rows(const Pane *p, const App *app)
{
    const VmGroup *g = shown_group(app);
    int rows = p->h - 1 - (g && (g->blocked || !g->scores));
    if (g && g->kind == GROUP_HEADS && rows > 4)
        rows -= rows / 2;
    return rows;
}

/* Moves to the previous / next group that is not blocked. */
static void step_group(App *app, int dir)
{
    for (int id = app->sel_group + dir; id >= 0 && id < app->vm.n_groups; id += dir)
        if (!app->vm.groups[id].blocked) {
            app_select_group(app, id);
            return;
        }
}

static bool units_key(Pane *p, App *app, int key)
{
    Units *u = p->state;
    make_order(u, app);
    int rows = list_rows(p, app);
    switch (key) {
    case KEY_SH_SORT:
        u->by_index = !u->by_index;
        pane_units_reset(p);
        return true;
    case KEY_LEFT: step_group(app, -1); return true;
    case KEY_RIGHT: step_group(app, 1); return true;
    case KEY_SH_CLICK:
        p->sel = p->top + app->click_row - (p->h - rows);
        pane_clamp(p, u->n, rows);
        return true;
    default: return pane_list_key(p, key, u->n, rows);
    }
}

static bool units_search(Pane *p, App *app, const char *text)
{
    Units *u = p->state;
    make_order(u, app);
    int want = atoi(text);
    for (int i = 0; i < u->n; i++)
        if (u->order[i] == want) {
            p->sel = i;
            pane_clamp(p, u->n, list_rows(p, app));
            return true;
        }
    return false;
}

int pane_units_selected(Pane *p, App *app)
{
    Units *u = p->state;
    make_order(u, app);
    return p->sel >= 0 && p->sel < u->n ? u->order[p->sel] : -1;
}

static void units_done(Pane *p)
{
    Units *u = p->state;
    free(u->order);
    free(u);
}

static const PaneClass units_class = {
    .name = "units", .draw = units_draw, .on_key = units_key, .done = units_done, .search = units_search,
};

Pane *pane_units_new(void)
{
    Pane *p = calloc(1, sizeof *p);
    p->cls = &units_class;
    p->state = calloc(1, sizeof(Units));
    return p;
}
