#define _XOPEN_SOURCE 700
#define NCURSES_WIDECHAR 1
#include "app.h"

#include "draw.h"
#include "pane_help.h"
#include "pane_layers.h"
#include "pane_log.h"
#include "pane_plot.h"
#include "pane_preview.h"
#include "pane_units.h"
#include "term.h"

#include "core/error.h"
#include "core/fileio.h"
#include "core/util.h"

#include <curses.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Key-file directives (negative codes in KeySource.keys). */
enum { KEYDIR_RESIZE = -2, KEYDIR_DUMP = -3, KEYDIR_NOWAIT = -4 };

static void request_quit(App *app, bool force);
static void layout(App *app);

bool app_job_running(const App *app) { return app->job.running; }

/* ---- notices and selection ---- */

void app_notice(App *app, Role role, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(app->notice, sizeof app->notice, fmt, ap);
    va_end(ap);
    app->notice_role = role;
    log_printf(&app->log, role == ROLE_ERROR ? LOG_ERROR : LOG_NOTICE, "%s", app->notice);
    app->dirty = true;
}

void app_select_group(App *app, int id)
{
    if (id == app->sel_group)
        return;
    app->sel_group = id;
    Pane *u = app->panes[PANE_UNITS];
    u->sel = u->top = 0;
    pane_units_reset(u);
    app->dirty = true;
}

int app_selected_unit(App *app) { return pane_units_selected(app->panes[PANE_UNITS], app); }

/* ---- commands ---- */

static bool plain_word(const char *s)
{
    for (; *s; s++)
        if (*s == ' ' || *s == '"' || *s == '\'' || *s == ';' || *s == '#' || *s == '\t')
            return false;
    return true;
}

void app_submit(App *app, const char *text, bool keep_going)
{
    CommandList list;
    if (parse_commands(text, &list) < 0) {
        app_notice(app, ROLE_ERROR, "%s", sh_errmsg());
        return;
    }
    int batch = ++app->batch;
    for (int i = 0; i < list.n; i++) {
        grow_array((void **)&app->queue, &app->cap_queue, app->n_queue + 1, sizeof *app->queue);
        app->queue[app->n_queue++] = (Queued){command_to_text(&list.cmds[i]), batch, keep_going};
    }
    if (list.n && app->job.running)
        app_notice(app, ROLE_NOTICE, "queued behind %s: %s%s", app->job.name, text,
                   list.n > 1 ? " (and more)" : "");
    command_list_done(&list);
    app->dirty = true;
}

static int current_batch;

/* Starts queued commands while no job runs (front-end ones run here). */
static void pump(App *app)
{
    while (!app->job.running && app->n_queue > 0 && !app->quit) {
        Queued q = app->queue[0];
        memmove(app->queue, app->queue + 1, sizeof *app->queue * (size_t)(app->n_queue - 1));
        app->n_queue--;
        if (q.batch == app->failed_batch && !q.keep_going) {
            log_printf(&app->log, LOG_NOTICE, "skipped (an earlier command failed): %s", q.text);
            free(q.text);
            continue;
        }
        log_printf(&app->log, LOG_COMMAND, "%s %s", glyphs.utf8 ? "\u203a" : ">", q.text);
        app->dirty = true;
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)strcspn(q.text, " \t"), q.text);
        current_batch = q.batch;
        if (command_is_front_end(name)) {
            cJSON *result = NULL;
            if (job_run_here(app->ws, &app->session, &app->log, q.text, &result) < 0) {
                app_notice(app, ROLE_ERROR, "%s: %s", name, sh_errmsg());
                app->failed_batch = q.batch;
            }
            cJSON_Delete(result);
            free(q.text);
            continue;
        }
        app->job_model = app->vm.hash;
        if (job_start(&app->job, app->ws, &app->session, &app->log, q.text) < 0) {
            app_notice(app, ROLE_ERROR, "%s", sh_errmsg());
            app->failed_batch = q.batch;
        }
        free(q.text);
    }
}

static void open_preview(App *app, const cJSON *result)
{
    const VmMeasure *m = NULL;
    double acc = -1, est = -1;
    for (int i = 0; i < app->measures.n; i++)
        if (app->measures.m[i].model == app->vm.hash)
            m = &app->measures.m[i];
    if (m && m->accuracy >= 0) {
        acc = m->accuracy;
        est = acc;
        for (int i = 0; i < app->vm.n_groups && est >= 0; i++) {
            const VmGroup *g = &app->vm.groups[i];
            if (!g->n_marked)
                continue;
            const VmCurve *c = measures_curve(&app->measures, app->vm.hash, g->name);
            est = c && c->base >= 0 ? est - (c->base - curve_at(c, (double)g->n_marked / g->n_units)) : -1;
        }
    }
    pane_preview_fill(app->overlays[OVERLAY_PREVIEW], result, est, acc);
    app->overlay = OVERLAY_PREVIEW;
}

/* After a command: a fresh view of the workspace, the selection kept by name. */
static void refresh_view(App *app)
{
    char keep[256] = "";
    const VmGroup *g = vm_group(&app->vm, app->sel_group);
    if (g)
        snprintf(keep, sizeof keep, "%s", g->name);
    vm_build(&app->vm, app->ws);
    const VmGroup *again = keep[0] ? vm_group_named(&app->vm, keep) : NULL;
    int id = again ? again->id : -1;
    if (id < 0) /* the first group that can be pruned */
        for (int i = 0; i < app->vm.n_groups && id < 0; i++)
            if (!app->vm.groups[i].blocked)
                id = i;
    app->sel_group = -2; /* force the reset below */
    app_select_group(app, id);
    if (!again && id >= 0 && app->vm.groups[id].layer >= 0)
        pane_layers_show(app->panes[PANE_LAYERS], app, app->vm.groups[id].layer);
    app->console.vm = &app->vm;
    app->dirty = true;
}

static void job_finished(App *app)
{
    Job *j = &app->job;
    cJSON *result = j->result;
    bool cancelled = j->rc == SH_E_CANCELLED ||
                     cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(result, "cancelled"));
    if (j->rc < 0) {
        app_notice(app, ROLE_ERROR, "%s: %s", j->name, j->error);
        app->failed_batch = current_batch;
    } else if (cancelled)
        app_notice(app, ROLE_NOTICE, "%s cancelled (the session keeps what finished)", j->name);
    refresh_view(app);
    cJSON *parts = job_take_partials(j), *p;
    cJSON_ArrayForEach(p, parts)
    {
        const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(p, "command");
        if (cJSON_IsString(cmd))
            measures_take_partial(&app->measures, cmd->valuestring, cJSON_GetObjectItemCaseSensitive(p, "result"),
                                  app->job_model);
    }
    cJSON_Delete(parts);
    if (j->rc == 0)
        measures_take_result(&app->measures, j->name, result, app->job_model, app->vm.hash);
    if (!strcmp(j->name, "train") || !strcmp(j->name, "finetune")) {
        free(app->train);
        app->n_train = job_points(j, &app->train);
        snprintf(app->train_name, sizeof app->train_name, "%s", j->name);
    }
    if (!strcmp(j->name, "preview") && j->rc == 0)
        open_preview(app, result);
}

static void poll_job(App *app)
{
    if (!app->job.running)
        return;
    long v = job_version(&app->job);
    if (v != app->seen_job_version) {
        app->seen_job_version = v;
        app->dirty = true;
        cJSON *parts = job_take_partials(&app->job), *p; /* live curves */
        cJSON_ArrayForEach(p, parts)
        {
            const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(p, "command");
            if (cJSON_IsString(cmd))
                measures_take_partial(&app->measures, cmd->valuestring,
                                      cJSON_GetObjectItemCaseSensitive(p, "result"), app->job_model);
        }
        cJSON_Delete(parts);
    }
    if (job_collect(&app->job))
        job_finished(app);
}

static int expected_interrupts;

static void cancel_job(App *app)
{
    if (!app->job.running)
        return;
    app->job.cancel = 1;
    /* sensitivity polls its own Ctrl-C flag, not Out.cancel: raise it */
    if (!strcmp(app->job.name, "sensitivity")) {
        expected_interrupts++;
        raise(SIGINT);
    }
    app_notice(app, ROLE_NOTICE, "cancelling %s...", app->job.name);
}

/* ---- front-end hooks (UI thread) ---- */

static int hook_record(void *ctx, const char *path, bool overwrite, Out *o)
{
    App *app = ctx;
    int rc = session_record(&app->session, path, overwrite);
    if (rc == 0 && path)
        out_text(o, "recording to %s (%d commands so far)\n", path, app->session.n);
    else if (rc == 0)
        out_text(o, "recording stopped\n");
    return rc;
}

static void show_binding(Out *o, const Binding *b)
{
    char name[32];
    keycode_name(b->key, name, sizeof name);
    out_text(o, "bind %-9s %s\n", name, b->act != ACT_NONE ? action_name(b->act) : b->command);
}

static int hook_bind(void *ctx, const char *key, const char *action, Out *o)
{
    App *app = ctx;
    if (!key) {
        for (int i = 0; i < app->keys.n; i++)
            show_binding(o, &app->keys.b[i]);
        return 0;
    }
    int code, rc = key_parse(key, &code);
    if (rc < 0)
        return rc;
    if (!action) {
        const Binding *b = keymap_find(&app->keys, code);
        if (!b)
            return sh_fail(SH_E_ARG, "key %s is not bound", key);
        show_binding(o, b);
        return 0;
    }
    if ((rc = keymap_bind(&app->keys, key, action)) == 0)
        out_text(o, "bound %s to %s\n", key, action);
    return rc;
}

static int hook_dump(void *ctx, const char *path, bool overwrite, Out *o)
{
    App *app = ctx;
    app_render(app);
    int rc = app_dump_screen(app, path, overwrite);
    if (rc == 0)
        out_text(o, "wrote %s\n", path);
    return rc;
}

static int hook_quit(void *ctx, bool force, Out *o)
{
    (void)o;
    request_quit(ctx, force);
    return 0;
}

static void inject(App *app, int key)
{
    KeySource *in = &app->input;
    grow_array((void **)&in->injected, &in->cap_injected, in->n_injected + 1, sizeof *in->injected);
    in->injected[in->n_injected++] = key;
}

static int hook_key(void *ctx, const char *name, Out *o)
{
    (void)o;
    int code, rc = key_parse(name, &code);
    if (rc == 0)
        inject(ctx, code);
    return rc;
}

/* ---- the key file ---- */

static void add_key(KeySource *in, int code, const char *arg)
{
    grow_array((void **)&in->keys, &in->cap, in->n + 1, sizeof *in->keys);
    int cap = in->cap;
    in->args = xrealloc(in->args, sizeof *in->args * (size_t)cap);
    in->keys[in->n] = code;
    in->args[in->n++] = xstrdup(arg);
}

/* Words are key names; "quoted text" types its characters; # comments;
 * @resize COLSxROWS, @dump FILE and @nowait (the next key does not wait
 * for the running job) are directives. Keys wait for jobs to finish. */
static int load_keys(KeySource *in, const char *path)
{
    unsigned char *data;
    size_t n;
    int rc = read_file(path, &data, &n, 1u << 20);
    if (rc < 0)
        return rc;
    char *p = (char *)data;
    while (*p && rc == 0) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            p++;
        if (!*p)
            break;
        if (*p == '#' && (p[1] == ' ' || p[1] == '\n' || p[1] == '#' || !p[1])) {
            p += strcspn(p, "\n");
            continue;
        }
        if (*p == '"') {
            char *end = strchr(p + 1, '"');
            if (!end) {
                rc = sh_fail(SH_E_FORMAT, "%s: unterminated quoted text", path);
                break;
            }
            for (char *c = p + 1; c < end; c++)
                add_key(in, (unsigned char)*c, NULL);
            p = end + 1;
            continue;
        }
        size_t len = strcspn(p, " \t\r\n");
        char word[512];
        snprintf(word, sizeof word, "%.*s", (int)len, p);
        p += len;
        if (!strcmp(word, "@resize") || !strcmp(word, "@dump")) {
            while (*p == ' ' || *p == '\t')
                p++;
            size_t alen = strcspn(p, " \t\r\n");
            char arg[512];
            snprintf(arg, sizeof arg, "%.*s", (int)alen, p);
            p += alen;
            add_key(in, word[1] == 'r' ? KEYDIR_RESIZE : KEYDIR_DUMP, arg);
        } else if (!strcmp(word, "@nowait"))
            add_key(in, KEYDIR_NOWAIT, NULL);
        else {
            int code;
            if ((rc = key_parse(word, &code)) < 0)
                sh_fail_prefix(rc, "%s", path);
            else
                add_key(in, code, NULL);
        }
    }
    free(data);
    return rc;
}

static void keys_done(KeySource *in)
{
    for (int i = 0; i < in->n; i++)
        free(in->args[i]);
    free(in->keys);
    free(in->args);
    free(in->injected);
    memset(in, 0, sizeof *in);
}

/* ---- layout and drawing ---- */

static int summary_rows(void) { return COLS >= 120 ? 1 : 2; }

static void layout(App *app)
{
    app->too_small = LINES < 24 || COLS < 80;
    int top = 1 + summary_rows(), log_h = LINES / 4 > 5 ? LINES / 4 : 5;
    if (log_h > 14)
        log_h = 14;
    int main_h = LINES - top - log_h - 2;
    int left_w = COLS * 55 / 100, right_w = COLS - left_w - 1;
    int units_h = main_h * 55 / 100;
    pane_place(app->panes[PANE_LAYERS], top, 0, main_h, left_w);
    pane_place(app->panes[PANE_UNITS], top, left_w + 1, units_h, right_w);
    pane_place(app->panes[PANE_PLOT], top + units_h, left_w + 1, main_h - units_h, right_w);
    pane_place(app->panes[PANE_LOG], top + main_h, 0, log_h, COLS);
    for (int i = 1; i < 3; i++)
        if (app->overlays[i])
            pane_place(app->overlays[i], 2, 2, LINES - 4, COLS - 4);
    app->dirty = true;
}

static void fmt_percent(double x, char *buf, size_t n)
{
    if (x < 0)
        snprintf(buf, n, "?");
    else
        snprintf(buf, n, "%.2f%%", 100 * x);
}

/* "a > b > c" with the arrow glyph; c estimated gets the approx mark. */
static void triple(char *buf, size_t n, const char *a, const char *b, const char *c, bool est)
{
    snprintf(buf, n, "%s %s %s %s %s%s", a, glyphs.arrow, b, glyphs.arrow, est && strcmp(c, "?") ? glyphs.approx : "", c);
}

/* The accuracy after the plan, from the sensitivity curves: the current
 * accuracy minus each marked group's measured drop (-1: unknown). */
static double plan_accuracy(App *app, double current)
{
    if (current < 0)
        return -1;
    double est = current;
    for (int i = 0; i < app->vm.n_groups; i++) {
        const VmGroup *g = &app->vm.groups[i];
        if (!g->n_marked)
            continue;
        const VmCurve *c = measures_curve(&app->measures, app->vm.hash, g->name);
        if (!c || c->base < 0)
            return -1;
        est -= c->base - curve_at(c, (double)g->n_marked / g->n_units);
    }
    return est;
}

static void draw_summary(App *app)
{
    const ViewModel *vm = &app->vm;
    int rows = summary_rows();
    for (int r = 0; r < rows; r++)
        draw_fill(1 + r, 0, COLS, ROLE_SUMMARY);
    if (!vm->has_model) {
        draw_text(1, 1, COLS - 1, ROLE_SUMMARY, "no model loaded", false);
        return;
    }
    char p[3][32], m[3][32], a[3][32], l[3][32], params[128], macs[128], acc[128], lat[128];
    for (int i = 0; i < 3; i++) {
        format_count((double)vm->params[i], p[i], sizeof p[i]);
        format_count((double)vm->macs[i], m[i], sizeof m[i]);
    }
    VmMeasure *orig = measures_for(&app->measures, vm->orig_hash), *cur = measures_for(&app->measures, vm->hash);
    double acc_plan = vm->plan_units ? plan_accuracy(app, cur->accuracy) : cur->accuracy;
    fmt_percent(orig->accuracy, a[0], sizeof a[0]);
    fmt_percent(cur->accuracy, a[1], sizeof a[1]);
    fmt_percent(acc_plan, a[2], sizeof a[2]);
    double lat_plan = cur->latency_ms >= 0 && vm->macs[1] > 0 && vm->macs[2] >= 0
                          ? cur->latency_ms * (double)vm->macs[2] / (double)vm->macs[1] : -1;
    double lats[3] = {orig->latency_ms, cur->latency_ms, lat_plan};
    for (int i = 0; i < 3; i++) {
        if (lats[i] < 0)
            snprintf(l[i], sizeof l[i], "?");
        else
            snprintf(l[i], sizeof l[i], "%.2fms", lats[i]);
    }
    triple(params, sizeof params, p[0], p[1], p[2], false);
    triple(macs, sizeof macs, m[0], m[1], m[2], false);
    triple(acc, sizeof acc, a[0], a[1], a[2], vm->plan_units > 0);
    triple(lat, sizeof lat, l[0], l[1], l[2], vm->plan_units > 0);
    char line1[512], line2[512];
    snprintf(line1, sizeof line1, " params %s   MACs %s", params, macs);
    snprintf(line2, sizeof line2, " accuracy %s   latency %s", acc, lat);
    if (rows == 1) {
        char both[1040];
        snprintf(both, sizeof both, "%s   %s", line1, line2 + 1);
        draw_text(1, 0, COLS, ROLE_SUMMARY, both, true);
    } else {
        draw_text(1, 0, COLS, ROLE_SUMMARY, line1, true);
        draw_text(2, 0, COLS, ROLE_SUMMARY, line2, true);
    }
    const char *legend = "original > current > plan";
    if (rows == 2 && COLS - text_width(line1) > (int)strlen(legend) + 2)
        draw_text(1, COLS - (int)strlen(legend) - 1, (int)strlen(legend), ROLE_DIM, legend, false);
}

static void draw_title(App *app)
{
    const ViewModel *vm = &app->vm;
    char t[512];
    int n = snprintf(t, sizeof t, " shears %s %s%s", glyphs.vline, vm->has_model ? vm->model_path : "no model",
                     vm->dirty ? " (modified)" : "");
    if (vm->data_desc)
        n += snprintf(t + n, sizeof t - (size_t)n, " %s data: %s", glyphs.vline, vm->data_desc);
    if (vm->plan_units)
        n += snprintf(t + n, sizeof t - (size_t)n, " %s plan: %d units in %d group%s", glyphs.vline, vm->plan_units,
                      vm->plan_groups, vm->plan_groups == 1 ? "" : "s");
    if (vm->score_name)
        n += snprintf(t + n, sizeof t - (size_t)n, " %s scores: %s", glyphs.vline, vm->score_name);
    if (vm->n_undo)
        snprintf(t + n, sizeof t - (size_t)n, " %s undo: %d", glyphs.vline, vm->n_undo);
    draw_text(0, 0, COLS, ROLE_TITLE, t, true);
}

static void draw_status(App *app)
{
    int y = LINES - 2;
    draw_fill(y, 0, COLS, ROLE_NORMAL);
    if (app->mode == MODE_CONFIRM) {
        draw_text(y, 0, COLS, ROLE_NOTICE, app->confirm, true);
        return;
    }
    if (app->mode != MODE_NORMAL && app->console.matches[0]) {
        draw_text(y, 0, COLS, ROLE_DIM, app->console.matches, true);
        return;
    }
    if (app->job.running) {
        double frac;
        char status[256], left[320];
        job_progress(&app->job, &frac, status, sizeof status);
        double el = now_seconds() - app->job.t0;
        size_t nl = strlen(app->job.name);
        bool named = !strncmp(status, app->job.name, nl) && (status[nl] == ':' || status[nl] == ' ');
        snprintf(left, sizeof left, " %s%s%s %.0fs %s", named ? "" : app->job.name, named ? "" : " ",
                 status[0] ? status : "running", el,
                 app->n_queue ? "(more queued) " : "");
        int bar_w = COLS / 5;
        if (frac >= 0) {
            draw_bar(y, 0, bar_w, frac, ROLE_PROGRESS);
            draw_textf(y, bar_w, 5, ROLE_NORMAL, " %3.0f%%", 100 * frac);
        } else {
            static const char spin[] = "|/-\\";
            draw_textf(y, 0, bar_w + 5, ROLE_PROGRESS, " %c working", spin[(int)(el * 4) % 4]);
        }
        draw_text(y, bar_w + 5, COLS - bar_w - 5 - 14, ROLE_NORMAL, left, false);
        draw_text(y, COLS - 14, 14, ROLE_DIM, "  Esc cancels", false);
        return;
    }
    if (app->notice[0]) {
        draw_text(y, 0, COLS, app->notice_role, app->notice, true);
        return;
    }
    draw_text(y, 0, COLS, ROLE_DIM,
              " ? help  : command  Tab pane  Space mark  m ratio  s score  S sensitivity  p preview  a apply  f finetune  u undo  q quit",
              true);
}

static void draw_console(App *app)
{
    int y = LINES - 1;
    draw_fill(y, 0, COLS, ROLE_NORMAL);
    if (app->mode != MODE_CONSOLE && app->mode != MODE_SEARCH) {
        if (app->n_queue)
            draw_textf(y, 0, COLS, ROLE_DIM, " %d command%s queued", app->n_queue, app->n_queue == 1 ? "" : "s");
        return;
    }
    const char *prompt, *line;
    int point;
    console_view(&app->console, &prompt, &line, &point);
    int pw = text_width(prompt), avail = COLS - pw - 1;
    char *before = xstrdup(line);
    before[point < (int)strlen(line) ? point : (int)strlen(line)] = '\0';
    int cursor = text_width(before);
    free(before);
    const char *shown = line; /* scroll so the cursor stays visible */
    int skip = cursor > avail ? cursor - avail : 0;
    while (skip > 0 && *shown) {
        shown++;
        skip--;
    }
    draw_text(y, 0, pw, ROLE_COMMAND, prompt, false);
    draw_text(y, pw, avail + 1, ROLE_NORMAL, shown, false);
    move(y, pw + (cursor > avail ? avail : cursor));
}

static void draw_too_small(void)
{
    erase();
    char msg[128];
    snprintf(msg, sizeof msg, "terminal %dx%d is smaller than 80x24: enlarge it (q quits)", COLS, LINES);
    int y = LINES / 2, x = (COLS - (int)strlen(msg)) / 2;
    draw_text(y < 0 ? 0 : y, x < 0 ? 0 : x, COLS, ROLE_NOTICE, msg, false);
}

void app_render(App *app)
{
    if (app->too_small) {
        draw_too_small();
        curs_set(0);
        wnoutrefresh(stdscr);
        doupdate();
        app->dirty = false;
        return;
    }
    erase();
    draw_title(app);
    draw_summary(app);
    for (int i = 0; i < N_PANES; i++) {
        app->panes[i]->focus = i == app->focus && app->overlay == OVERLAY_NONE;
        app->panes[i]->cls->draw(app->panes[i], app);
    }
    Pane *l = app->panes[PANE_LAYERS];
    for (int y = l->y; y < l->y + l->h; y++)
        draw_text(y, l->x + l->w, 1, ROLE_BORDER, glyphs.vline, false);
    if (app->overlay != OVERLAY_NONE)
        app->overlays[app->overlay]->cls->draw(app->overlays[app->overlay], app);
    draw_status(app);
    draw_console(app);
    bool typing = app->mode == MODE_CONSOLE || app->mode == MODE_SEARCH;
    curs_set(typing ? 1 : 0);
    if (!typing)
        move(LINES - 1, 0);
    wnoutrefresh(stdscr);
    doupdate();
    app->dirty = false;
}

int app_dump_screen(App *app, const char *path, bool overwrite)
{
    (void)app;
    return term_dump(path, overwrite);
}

/* ---- keys ---- */

static void request_quit(App *app, bool force)
{
    if (force) {
        app->quit = true;
        return;
    }
    if (app->job.running)
        snprintf(app->confirm, sizeof app->confirm, " %s is running: cancel it and quit? (y/n)", app->job.name);
    else if (app->vm.dirty || app->vm.plan_units)
        snprintf(app->confirm, sizeof app->confirm, " quit with unsaved work (%s%d units marked)? (y/n)",
                 app->vm.dirty ? "model changed, " : "", app->vm.plan_units);
    else {
        app->quit = true;
        return;
    }
    app->mode = MODE_CONFIRM;
    app->confirm_quit = true;
    app->dirty = true;
}

/* Expands %g (group), %u (unit), %m (model name), %c (criterion) in a
 * bound command; false (with a notice) when the selection is missing. */
static bool expand(App *app, const char *tmpl, char *out, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (const char *p = tmpl; *p && used + 1 < n; p++) {
        char piece[256] = "";
        if (*p != '%' || !p[1]) {
            out[used++] = *p;
            out[used] = '\0';
            continue;
        }
        const VmGroup *g = vm_group(&app->vm, app->sel_group);
        switch (*++p) {
        case 'g':
            if (!g) {
                app_notice(app, ROLE_NOTICE, "select a group first (a layer that starts one)");
                return false;
            }
            snprintf(piece, sizeof piece, plain_word(g->name) ? "%s" : "\"%s\"", g->name);
            break;
        case 'u': {
            int u = app_selected_unit(app);
            if (u < 0) {
                app_notice(app, ROLE_NOTICE, "select a unit first");
                return false;
            }
            snprintf(piece, sizeof piece, "%d", u);
            break;
        }
        case 'm': snprintf(piece, sizeof piece, "%s", app->vm.model_name ? app->vm.model_name : "model"); break;
        case 'c': snprintf(piece, sizeof piece, "%s", app->vm.score_name ? app->vm.score_name : "l1"); break;
        default: snprintf(piece, sizeof piece, "%c", *p); break;
        }
        used += (size_t)snprintf(out + used, n - used, "%s", piece);
        if (used >= n)
            used = n - 1;
    }
    return true;
}

static void open_console(App *app, Mode mode, const char *prefill)
{
    app->mode = mode;
    app->console.vm = &app->vm;
    console_open(&app->console, mode == MODE_SEARCH ? "/" : ":", prefill, mode == MODE_CONSOLE);
    app->dirty = true;
}

static void run_binding(App *app, const char *command)
{
    char text[1024];
    if (!expand(app, command, text, sizeof text))
        return;
    if (text[0] == ':')
        open_console(app, MODE_CONSOLE, text + 1);
    else
        app_submit(app, text, false);
}

static void toggle_mark(App *app)
{
    const VmGroup *g = vm_group(&app->vm, app->sel_group);
    if (app->focus == PANE_LAYERS) {
        app_notice(app, ROLE_NOTICE, "Enter (or Tab) goes to the units; Space marks the selected one");
        return;
    }
    int u = app_selected_unit(app);
    if (!g || u < 0) {
        app_notice(app, ROLE_NOTICE, "no unit selected");
        return;
    }
    if (g->blocked) {
        app_notice(app, ROLE_NOTICE, "group %s is blocked: %s", g->name, g->reason ? g->reason : "");
        return;
    }
    char text[512];
    snprintf(text, sizeof text, plain_word(g->name) ? "%s %s %d" : "%s \"%s\" %d", g->marked[u] ? "unmark" : "mark",
             g->name, u);
    app_submit(app, text, false);
}

static int nav_key(Action a)
{
    switch (a) {
    case ACT_UP: return KEY_UP;
    case ACT_DOWN: return KEY_DOWN;
    case ACT_PAGE_UP: return KEY_PPAGE;
    case ACT_PAGE_DOWN: return KEY_NPAGE;
    case ACT_FIRST: return KEY_HOME;
    case ACT_LAST: return KEY_END;
    case ACT_LEFT: return KEY_LEFT;
    case ACT_RIGHT: return KEY_RIGHT;
    case ACT_ENTER: return '\n';
    case ACT_SORT: return KEY_SH_SORT;
    default: return 0;
    }
}

static void search(App *app)
{
    if (!app->search || !app->search[0])
        return;
    Pane *p = app->panes[app->focus];
    if (!p->cls->search || !p->cls->search(p, app, app->search))
        app_notice(app, ROLE_NOTICE, "no match for '%s' in the %s pane", app->search, p->cls->name);
}

static void do_action(App *app, Action a)
{
    Pane *p = app->panes[app->focus];
    int k = nav_key(a);
    if (k) {
        if (a == ACT_SORT)
            p = app->panes[PANE_UNITS];
        p->cls->on_key(p, app, k);
        return;
    }
    switch (a) {
    case ACT_NEXT_PANE: app->focus = (app->focus + 1) % N_PANES; break;
    case ACT_PREV_PANE: app->focus = (app->focus + N_PANES - 1) % N_PANES; break;
    case ACT_CONSOLE: open_console(app, MODE_CONSOLE, ""); break;
    case ACT_SEARCH: open_console(app, MODE_SEARCH, ""); break;
    case ACT_SEARCH_NEXT: search(app); break;
    case ACT_TOGGLE_MARK: toggle_mark(app); break;
    case ACT_HELP:
        pane_help_fill(app->overlays[OVERLAY_HELP], &app->keys);
        app->overlay = OVERLAY_HELP;
        break;
    case ACT_CANCEL:
        if (app->job.running)
            cancel_job(app);
        else if (app->overlay != OVERLAY_NONE)
            app->overlay = OVERLAY_NONE;
        else
            app->notice[0] = '\0';
        break;
    case ACT_QUIT: request_quit(app, false); break;
    case ACT_REDRAW: clearok(curscr, TRUE); break;
    case ACT_PLOT_VIEW:
        app->plot_view = (PlotView)((app->plot_view + 1) % 3);
        app_notice(app, ROLE_NOTICE, "plot: %s", app->plot_view == PLOT_AUTO ? "automatic (training while it runs)"
                                                 : app->plot_view == PLOT_SENSITIVITY ? "sensitivity curves"
                                                                                      : "training curves");
        break;
    default: break;
    }
    app->dirty = true;
}

/* Mouse events become keys for the pane under the pointer. */
static void mouse(App *app)
{
    MEVENT ev;
    if (getmouse(&ev) != OK)
        return;
    int key = ev.bstate & BUTTON4_PRESSED ? KEY_SH_WHEEL_UP
              : ev.bstate & BUTTON5_PRESSED ? KEY_SH_WHEEL_DOWN
              : ev.bstate & (BUTTON1_CLICKED | BUTTON1_PRESSED) ? KEY_SH_CLICK : 0;
    if (!key)
        return;
    if (app->overlay != OVERLAY_NONE) {
        Pane *o = app->overlays[app->overlay];
        o->cls->on_key(o, app, key);
        return;
    }
    for (int i = 0; i < N_PANES; i++) {
        Pane *p = app->panes[i];
        if (ev.y >= p->y && ev.y < p->y + p->h && ev.x >= p->x && ev.x < p->x + p->w) {
            if (key == KEY_SH_CLICK)
                app->focus = i;
            app->click_row = ev.y - p->y;
            p->cls->on_key(p, app, key);
        }
    }
}

static void console_key_in(App *app, int key)
{
    if (key == 27) {
        console_close(&app->console);
        app->mode = MODE_NORMAL;
        return;
    }
    if (!console_key(&app->console, key))
        return;
    char *line = console_take_line(&app->console);
    Mode mode = app->mode;
    app->mode = MODE_NORMAL;
    if (mode == MODE_SEARCH) {
        free(app->search);
        app->search = line;
        search(app);
        return;
    }
    if (line[strspn(line, " \t")])
        app_submit(app, line, false);
    free(line);
}

static void handle_key(App *app, int key)
{
    app->dirty = true;
    if (key == KEY_RESIZE) {
        layout(app);
        return;
    }
    if (key == KEY_MOUSE) {
        mouse(app);
        return;
    }
    if (app->mode == MODE_CONSOLE || app->mode == MODE_SEARCH) {
        console_key_in(app, key);
        return;
    }
    if (app->mode == MODE_CONFIRM) {
        app->mode = MODE_NORMAL;
        if (key == 'y' || key == 'Y') {
            if (app->job.running)
                cancel_job(app);
            app->quit = true;
        } else
            app_notice(app, ROLE_NOTICE, "not quitting");
        return;
    }
    app->notice[0] = '\0';
    const Binding *b = keymap_find(&app->keys, key);
    if (app->overlay != OVERLAY_NONE) {
        Pane *o = app->overlays[app->overlay];
        int k = b && nav_key(b->act) ? nav_key(b->act) : key;
        if (o->cls->on_key(o, app, k))
            return;
        if (key == 27 || key == 'q' || (b && (b->act == ACT_CANCEL || b->act == ACT_QUIT || b->act == ACT_HELP)))
            app->overlay = OVERLAY_NONE;
        return;
    }
    if (app->too_small) {
        if (b && b->act == ACT_QUIT)
            request_quit(app, false);
        return;
    }
    if (!b) {
        char name[32];
        keycode_name(key, name, sizeof name);
        app_notice(app, ROLE_NOTICE, "%s is not bound to anything (? lists the keys)", name);
        return;
    }
    if (b->act != ACT_NONE)
        do_action(app, b->act);
    else
        run_binding(app, b->command);
}

/* ---- the loop ---- */

static bool busy(const App *app) { return app->job.running || app->n_queue > 0; }

/* The next key: injected keys first, then the key file or the driver,
 * else the keyboard (waiting at most a short while). ERR: none. */
static int next_key(App *app)
{
    KeySource *in = &app->input;
    if (in->n_injected) {
        int k = in->injected[0];
        memmove(in->injected, in->injected + 1, sizeof *in->injected * (size_t)--in->n_injected);
        return k;
    }
    if (app->opt.driver) {
        int k = app->opt.driver(app, app->opt.driver_ctx, now_seconds());
        if (k < 0) {
            napms(1);
            return ERR;
        }
        return k;
    }
    if (app->opt.keys_path) {
        bool nowait = in->next < in->n && in->keys[in->next] == KEYDIR_NOWAIT;
        if (nowait)
            in->next++;
        if (!nowait && (busy(app) || app->dirty)) {
            if (!app->dirty)
                napms(2);
            return ERR;
        }
        if (in->next >= in->n) {
            request_quit(app, true); /* the end of the file ends the session */
            return ERR;
        }
        int i = in->next++, k = in->keys[i];
        if (k == KEYDIR_RESIZE) {
            int cols = 80, rows = 24;
            if (sscanf(in->args[i], "%dx%d", &cols, &rows) == 2 && cols > 0 && rows > 0) {
                term_resize(rows, cols);
                return KEY_RESIZE;
            }
            return ERR;
        }
        if (k == KEYDIR_DUMP) {
            app_render(app);
            if (app_dump_screen(app, in->args[i], true) < 0)
                app_notice(app, ROLE_ERROR, "%s", sh_errmsg());
            return ERR;
        }
        return k;
    }
    wtimeout(stdscr, app->job.running ? 40 : 250);
    return wgetch(stdscr);
}

static void handle_interrupts(App *app)
{
    static sig_atomic_t seen;
    while (seen != term_interrupts) {
        seen++;
        if (expected_interrupts > 0) {
            expected_interrupts--;
            continue;
        }
        if (app->job.running) {
            cancel_job(app);
            app_notice(app, ROLE_NOTICE, "Ctrl-C: cancelling %s (q quits)", app->job.name);
        } else if (app->mode == MODE_CONFIRM && app->confirm_quit)
            app->quit = true; /* Ctrl-C twice */
        else {
            if (app->mode == MODE_CONSOLE || app->mode == MODE_SEARCH) {
                console_close(&app->console);
                app->mode = MODE_NORMAL;
            }
            request_quit(app, false); /* asks when there is unsaved work */
        }
    }
}

static void run_loop(App *app)
{
    while (!app->quit) {
        double t0 = now_seconds();
        term_drain(app->capture_fd, &app->log);
        handle_interrupts(app);
        poll_job(app);
        pump(app);
        long total = log_total(&app->log);
        if (total != app->seen_log_total) {
            app->seen_log_total = total;
            app->dirty = true;
        }
        if (app->job.running && now_seconds() - app->last_turn > 0.25)
            app->dirty = true; /* the elapsed time and the spinner */
        if (app->dirty) {
            app_render(app);
            app->last_turn = now_seconds();
            if (app->key_time > 0) {
                double ms = (now_seconds() - app->key_time) * 1e3;
                app->key_max_ms = fmax(app->key_max_ms, ms);
                app->key_sum_ms += ms;
                app->key_count++;
                if (app->job.running) {
                    app->key_job_max_ms = fmax(app->key_job_max_ms, ms);
                    app->key_job_count++;
                }
                app->key_time = 0;
            }
        }
        double work = now_seconds() - t0;
        if (app->job.running)
            app->loop_job_max_ms = fmax(app->loop_job_max_ms, work * 1e3);
        if (app->quit)
            break;
        int key = next_key(app);
        if (key != ERR) {
            if (app->key_time <= 0)
                app->key_time = now_seconds();
            handle_key(app, key);
        }
    }
}

/* ---- start and end ---- */

static void submit_file(App *app, const char *path, const char *what)
{
    unsigned char *text;
    size_t n;
    if (read_file(path, &text, &n, 1u << 20) < 0) {
        app_notice(app, ROLE_ERROR, "%s: %s", what, sh_errmsg());
        return;
    }
    app_submit(app, (const char *)text, false);
    free(text);
}

static App *app_new(const AppOptions *opt)
{
    App *app = xcalloc(1, sizeof *app);
    app->opt = *opt;
    if (app->opt.rows <= 0)
        app->opt.rows = 24;
    if (app->opt.cols <= 0)
        app->opt.cols = 80;
    app->invisible = opt->keys_path || opt->driver;
    app->capture_fd = -1;
    app->ws = workspace_new();
    app->ws->threads = opt->threads > 0 ? opt->threads : 1;
    session_init(&app->session);
    log_init(&app->log, 20000);
    job_init(&app->job);
    keymap_init(&app->keys);
    keymap_load_defaults(&app->keys);
    vm_init(&app->vm);
    measures_init(&app->measures);
    char *hist = state_path("history");
    console_init(&app->console, hist);
    free(hist);
    app->hooks = (UiHooks){.record = hook_record, .bind = hook_bind, .dump_screen = hook_dump,
                           .quit = hook_quit, .key = hook_key};
    app->ws->ui = &app->hooks;
    app->ws->ui_ctx = app;
    app->panes[PANE_LAYERS] = pane_layers_new();
    app->panes[PANE_UNITS] = pane_units_new();
    app->panes[PANE_PLOT] = pane_plot_new();
    app->panes[PANE_LOG] = pane_log_new();
    app->overlays[OVERLAY_PREVIEW] = pane_preview_new();
    app->overlays[OVERLAY_HELP] = pane_help_new();
    app->sel_group = -1;
    return app;
}

static void app_free(App *app)
{
    job_done(&app->job);
    for (int i = 0; i < N_PANES; i++)
        pane_free(app->panes[i]);
    pane_free(app->overlays[OVERLAY_PREVIEW]);
    pane_free(app->overlays[OVERLAY_HELP]);
    for (int i = 0; i < app->n_queue; i++)
        free(app->queue[i].text);
    free(app->queue);
    free(app->train);
    free(app->search);
    keys_done(&app->input);
    console_done(&app->console);
    keymap_done(&app->keys);
    vm_done(&app->vm);
    measures_done(&app->measures);
    app->ws->ui = NULL;
    workspace_free(app->ws);
    session_done(&app->session);
    log_done(&app->log);
    free(app);
}

int app_run(const AppOptions *opt)
{
    App *app = app_new(opt);
    char *recovered = NULL, *cwd = NULL;
    int rc = 0;
    if (opt->keys_path && (rc = load_keys(&app->input, opt->keys_path)) < 0)
        goto fail;
    if (opt->recover) {
        char *dir = state_path("session");
        rc = session_journal_read(dir, &recovered, &cwd);
        free(dir);
        if (rc < 0)
            goto fail;
        if (cwd && chdir(cwd) != 0)
            fprintf(stderr, "shears: cannot go back to %s; paths are read from here\n", cwd);
    }
    if (!opt->no_journal) {
        char *dir = state_path("session");
        if (session_journal_start(&app->session, dir) < 0)
            fprintf(stderr, "shears: no crash journal: %s\n", sh_errmsg());
        free(dir);
    }
    if ((rc = term_open(app->invisible, app->opt.rows, app->opt.cols, &app->capture_fd)) < 0)
        goto fail;
    draw_setup(opt->ascii, false);
    layout(app);
    vm_build(&app->vm, app->ws);
    app->console.vm = &app->vm;
    log_printf(&app->log, LOG_NOTICE, "shears workbench: ? shows the keys, : opens the console, q quits");
    char *config = config_path("config");
    if (file_exists(config))
        submit_file(app, config, config);
    free(config);
    if (recovered) {
        app_notice(app, ROLE_NOTICE, "recovering the last session from its journal");
        app_submit(app, recovered, true);
    }
    if (opt->model) {
        char *cmd = xasprintf(plain_word(opt->model) ? "load %s" : "load \"%s\"", opt->model);
        app_submit(app, cmd, false);
        free(cmd);
    }
    if (opt->data) {
        char *cmd = xasprintf("data %s", opt->data);
        app_submit(app, cmd, false);
        free(cmd);
    }
    run_loop(app);
    if (app->job.running) { /* leave only when the worker let go of the workspace */
        cancel_job(app);
        while (!job_collect(&app->job))
            napms(5);
    }
    session_journal_close(&app->session);
    term_close();
    if (opt->driver == NULL && !opt->keys_path && app->vm.dirty)
        printf("shears: the model was changed and not saved (shears --recover restores the session)\n");
    free(recovered);
    free(cwd);
    app_free(app);
    return 0;
fail:
    fprintf(stderr, "shears: %s\n", sh_errmsg());
    free(recovered);
    free(cwd);
    app_free(app);
    return 1;
}
