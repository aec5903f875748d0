#define _XOPEN_SOURCE 700
#define NCURSES_WIDECHAR 1
#include "pane_layers.h"

#include "app.h"
#include "draw.h"
#include "core/util.h"

#include <curses.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


typedef struct {
    int name, op, shape, params, macs, marks; /* column widths (0: hidden) */
} Columns;

static Columns columns(int w)
{
    Columns c = {.op = 11, .shape = 14, .params = 7, .macs = 6, .marks = 9};
    int fixed = c.op + c.shape + c.params + c.macs + c.marks + 5;
    if (w - fixed < 16) {
        c.params = 0;
        fixed -= 8;
    }
    if (w - fixed < 14) {
        c.shape = 0;
        fixed -= 15;
    }
    c.name = w - fixed;
    if (c.name > 40)
        c.name = 40;
    return c;
}

static int list_rows(const Pane *p) { return p->h - 3; } /* title, header, footer */

/* "12/32", "blocked", "-37%": what is marked in, or was cut from, a layer. */
static Role marks_text(const App *app, const VmLayer *l, int row, char *buf, size_t n)
{
    const VmGroup *g = vm_group(&app->vm, l->group);
    buf[0] = '\0';
    Role role = ROLE_NORMAL;
    if (g && g->blocked) {
        snprintf(buf, n, "blocked");
        return ROLE_BLOCKED;
    }
    if (g && g->layer == row) {
        snprintf(buf, n, "%s%d/%d", g->approximate ? glyphs.approx : "", g->n_marked, g->n_units);
        role = g->n_marked ? ROLE_MARKED : g->approximate ? ROLE_APPROX : ROLE_DIM;
    }
    if (l->orig_channels > 0 && l->channels > 0 && l->channels < l->orig_channels) {
        size_t used = strlen(buf);
        snprintf(buf + used, n - used, "%s-%.0f%%", used ? " " : "",
                 100.0 * (double)(l->orig_channels - l->channels) / (double)l->orig_channels);
        if (!used)
            role = ROLE_PRUNED;
    }
    return role;
}

static void draw_row(const Pane *p, const App *app, int row, int y, const Columns *c)
{
    const VmLayer *l = &app->vm.layers[row];
    bool sel = row == p->sel;
    Role base = sel ? (p->focus ? ROLE_SELECTED : ROLE_SELECTED_DIM) : ROLE_NORMAL;
    char params[16], marks[32];
    format_count((double)l->params, params, sizeof params);
    Role mrole = marks_text(app, l, row, marks, sizeof marks);
    int x = p->x;
    draw_fill(y, x, p->w, base);
    draw_text(y, x, c->name, base, l->name, true);
    x += c->name + 1;
    draw_text(y, x, c->op, sel ? base : ROLE_DIM, l->op, true);
    x += c->op + 1;
    if (c->shape) {
        draw_text(y, x, c->shape, base, l->shape, true);
        x += c->shape + 1;
    }
    if (c->params) {
        draw_textf(y, x, c->params, base, "%*s", c->params, l->params ? params : "");
        x += c->params + 1;
    }
    if (l->macs)
        draw_textf(y, x, c->macs, base, "%5.1f%%", l->macs_pct);
    x += c->macs + 1;
    draw_text(y, x, c->marks, sel ? base : mrole, marks, true);
}

static void footer(const Pane *p, const App *app)
{
    int y = p->y + p->h - 1;
    draw_fill(y, p->x, p->w, ROLE_DIM);
    if (app->vm.groups_error) {
        draw_textf(y, p->x, p->w, ROLE_ERROR, "groups: %s", app->vm.groups_error);
        return;
    }
    if (p->sel < 0 || p->sel >= app->vm.n_layers)
        return;
    const VmLayer *l = &app->vm.layers[p->sel];
    const VmGroup *g = vm_group(&app->vm, l->group);
    if (!g) {
        draw_textf(y, p->x, p->w, ROLE_DIM, "%s: no prunable group starts here", l->name);
        return;
    }
    if (g->blocked)
        draw_textf(y, p->x, p->w, ROLE_BLOCKED, "group %s blocked: %s", g->name, g->reason ? g->reason : "");
    else
        draw_textf(y, p->x, p->w, g->approximate ? ROLE_APPROX : ROLE_DIM, "group %s: %d %s x%lld, %d marked%s%s",
                   g->name, g->n_units, group_kind_name(g->kind), (long long)g->unit_width, g->n_marked,
                   g->approximate ? "; approximate: " : "", g->approximate && g->reason ? g->reason : "");
}

static void layers_draw(Pane *p, App *app)
{
    char title[160];
    snprintf(title, sizeof title, " layers: %d nodes, %d groups", app->vm.n_layers, app->vm.n_groups);
    pane_title(p, title);
    if (!app->vm.has_model) {
        draw_text(p->y + 2, p->x + 1, p->w - 1, ROLE_DIM, "no model: type :load FILE.onnx", false);
        return;
    }
    Columns c = columns(p->w);
    int rows = list_rows(p);
    pane_clamp(p, app->vm.n_layers, rows);
    int x = p->x;
    draw_fill(p->y + 1, p->x, p->w, ROLE_HEADER);
    draw_text(p->y + 1, x, c.name, ROLE_HEADER, "name", false);
    x += c.name + 1;
    draw_text(p->y + 1, x, c.op, ROLE_HEADER, "op", false);
    x += c.op + 1;
    if (c.shape) {
        draw_text(p->y + 1, x, c.shape, ROLE_HEADER, "output", false);
        x += c.shape + 1;
    }
    if (c.params) {
        draw_textf(p->y + 1, x, c.params, ROLE_HEADER, "%*s", c.params, "params");
        x += c.params + 1;
    }
    draw_textf(p->y + 1, x, c.macs, ROLE_HEADER, "%6s", "MACs");
    x += c.macs + 1;
    draw_text(p->y + 1, x, c.marks, ROLE_HEADER, "marked", false);
    for (int i = 0; i < rows && p->top + i < app->vm.n_layers; i++)
        draw_row(p, app, p->top + i, p->y + 2 + i, &c);
    footer(p, app);
}

static void follow(Pane *p, App *app)
{
    if (p->sel >= 0 && p->sel < app->vm.n_layers)
        app_select_group(app, app->vm.layers[p->sel].group);
}

static bool layers_key(Pane *p, App *app, int key)
{
    int n = app->vm.n_layers, rows = list_rows(p);
    if (key == KEY_SH_CLICK) {
        p->sel = p->top + app->click_row - 2;
        pane_clamp(p, n, rows);
        follow(p, app);
        return true;
    }
    if (key == '\n') {
        const VmGroup *g = vm_group(&app->vm, n > 0 ? app->vm.layers[p->sel].group : -1);
        if (!g) {
            app_notice(app, ROLE_NOTICE, "no prunable group starts at this layer");
            return true;
        }
        app->focus = PANE_UNITS;
        return true;
    }
    if (!pane_list_key(p, key, n, rows))
        return false;
    follow(p, app);
    return true;
}

static bool layers_search(Pane *p, App *app, const char *text)
{
    int n = app->vm.n_layers;
    for (int k = 1; k <= n; k++) {
        int i = (p->sel + k) % n;
        if (text_contains(app->vm.layers[i].name, text) || text_contains(app->vm.layers[i].op, text)) {
            p->sel = i;
            pane_clamp(p, n, list_rows(p));
            follow(p, app);
            return true;
        }
    }
    return false;
}

void pane_layers_show(Pane *p, App *app, int row)
{
    p->sel = row;
    pane_clamp(p, app->vm.n_layers, list_rows(p));
}

static const PaneClass layers_class = {
    .name = "layers", .draw = layers_draw, .on_key = layers_key, .search = layers_search,
};

Pane *pane_layers_new(void)
{
    Pane *p = calloc(1, sizeof *p);
    p->cls = &layers_class;
    return p;
}
