#define _XOPEN_SOURCE 700
#define NCURSES_WIDECHAR 1
#include "pane_plot.h"

#include "app.h"
#include "draw.h"
#include "plot.h"

#include "core/util.h"

#include <curses.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool training_job(const App *app)
{
    return app->job.running && app->job.name &&
           (!strcmp(app->job.name, "train") || !strcmp(app->job.name, "finetune"));
}

bool pane_plot_training(const App *app)
{
    if (app->plot_view == PLOT_TRAINING)
        return true;
    return app->plot_view == PLOT_AUTO && training_job(app);
}

static void draw_training(Pane *p, App *app)
{
    TrainPoint *pts = app->train;
    int n = app->n_train;
    bool live = training_job(app);
    if (live)
        n = job_points(&app->job, &pts);
    char title[200];
    if (n == 0) {
        snprintf(title, sizeof title, " %s", live ? app->job.name : "training");
        pane_title(p, title);
        draw_text(p->y + 2, p->x + 1, p->w - 1, ROLE_DIM, live ? "waiting for the first step..." : "no training yet (f: finetune)", false);
        if (live)
            free(pts);
        return;
    }
    const TrainPoint *last = &pts[n - 1];
    snprintf(title, sizeof title, " %s: loss %.4f  acc %.2f%%%s", live ? app->job.name : app->train_name, last->loss,
             100 * last->accuracy, live ? "" : " (done)");
    pane_title(p, title);
    double *x = xmalloc(sizeof *x * (size_t)n), *loss = xmalloc(sizeof *loss * (size_t)n);
    double *acc = xmalloc(sizeof *acc * (size_t)n), max_loss = 1e-9, x1 = 0;
    for (int i = 0; i < n; i++)
        max_loss = fmax(max_loss, pts[i].loss);
    for (int i = 0; i < n; i++) {
        x[i] = pts[i].epoch;
        loss[i] = pts[i].loss / max_loss; /* both on 0..1: accuracy, and loss over its max */
        acc[i] = pts[i].accuracy;
        x1 = fmax(x1, x[i]);
    }
    PlotSeries s[2] = {{x, loss, n, ROLE_PLOT_B}, {x, acc, n, ROLE_PLOT_A}};
    PlotAxes ax = {.x0 = 0, .x1 = x1 > 0 ? x1 : 1, .y0 = 0, .y1 = 1, .y_fmt = "%.0f%%", .y_scale = 100, .marker_x = -1};
    char legend[64];
    snprintf(legend, sizeof legend, "%s loss/%.3g", glyphs.mark, max_loss);
    draw_fill(p->y + 1, p->x, p->w, ROLE_NORMAL);
    draw_textf(p->y + 1, p->x, p->w, ROLE_PLOT_A, "%s accuracy", glyphs.mark);
    draw_text(p->y + 1, p->x + 12, p->w - 12, ROLE_PLOT_B, legend, false);
    draw_text(p->y + 1, p->x + 13 + text_width(legend), p->w - 13 - text_width(legend), ROLE_DIM, "by epoch", false);
    plot_draw(p->y + 2, p->x, p->h - 2, p->w, &ax, s, 2, plot_mode());
    free(x);
    free(loss);
    free(acc);
    if (live)
        free(pts);
}

static void draw_sensitivity(Pane *p, App *app)
{
    const VmGroup *g = vm_group(&app->vm, app->sel_group);
    const VmCurve *c = g ? measures_curve(&app->measures, app->vm.hash, g->name) : NULL;
    char title[200];
    if (!c || c->n == 0) {
        snprintf(title, sizeof title, " sensitivity%s%s", g ? ": " : "", g ? g->name : "");
        pane_title(p, title);
        draw_text(p->y + 2, p->x + 1, p->w - 1, ROLE_DIM,
                  !g ? "select a group" : g->blocked ? "blocked group" : "no curve yet (S: sensitivity)", false);
        return;
    }
    double ratio = g->n_units ? (double)g->n_marked / g->n_units : 0;
    double lo = c->base >= 0 ? c->base : 1, hi = lo;
    for (int i = 0; i < c->n; i++) {
        lo = fmin(lo, c->accuracy[i]);
        hi = fmax(hi, c->accuracy[i]);
    }
    if (hi - lo < 0.01)
        lo = hi - 0.01;
    double *x = xmalloc(sizeof *x * (size_t)(c->n + 1)), *y = xmalloc(sizeof *y * (size_t)(c->n + 1));
    int n = 0;
    if (c->base >= 0) {
        x[n] = 0;
        y[n++] = c->base;
    }
    for (int i = 0; i < c->n; i++) {
        x[n] = c->ratio[i];
        y[n++] = c->accuracy[i];
    }
    if (ratio > 0)
        snprintf(title, sizeof title, " sensitivity: %s, plan %.2f %s %s%.2f%%", g->name, ratio, glyphs.arrow,
                 glyphs.approx, 100 * curve_at(c, ratio));
    else
        snprintf(title, sizeof title, " sensitivity: %s (accuracy by ratio removed)", g->name);
    pane_title(p, title);
    PlotSeries s = {x, y, n, ROLE_PLOT_A};
    PlotAxes ax = {.x0 = 0, .x1 = 1, .y0 = lo, .y1 = hi, .y_fmt = "%.1f%%", .y_scale = 100,
                   .marker_x = ratio > 0 ? ratio : -1, .marker_role = ROLE_PLAN};
    plot_draw(p->y + 1, p->x, p->h - 1, p->w, &ax, &s, 1, plot_mode());
    free(x);
    free(y);
}

static void plot_pane_draw(Pane *p, App *app)
{
    if (pane_plot_training(app))
        draw_training(p, app);
    else
        draw_sensitivity(p, app);
}

static bool plot_key(Pane *p, App *app, int key)
{
    (void)p;
    if (key == KEY_LEFT || key == KEY_UP) {
        for (int id = app->sel_group - 1; id >= 0; id--)
            if (!app->vm.groups[id].blocked) {
                app_select_group(app, id);
                return true;
            }
        return true;
    }
    if (key == KEY_RIGHT || key == KEY_DOWN) {
        for (int id = app->sel_group + 1; id < app->vm.n_groups; id++)
            if (!app->vm.groups[id].blocked) {
                app_select_group(app, id);
                return true;
            }
        return true;
    }
    return false;
}

static const PaneClass plot_class = {.name = "plot", .draw = plot_pane_draw, .on_key = plot_key};

Pane *pane_plot_new(void)
{
    Pane *p = calloc(1, sizeof *p);
    p->cls = &plot_class;
    return p;
}
