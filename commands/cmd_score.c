/* Importance commands: score, criteria, plugin. */
#include "commands.h"

#include "core/error.h"
#include "core/importance.h"
#include "core/plugin.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- score ---- */

static int score_options(Workspace *ws, const Command *c, const Criterion *crit, ScoreOptions *opt)
{
    *opt = score_options_default();
    int64_t batches, batch, seed;
    int rc;
    if ((rc = arg_int(c, "batches", opt->batches, 1, 1000000, &batches)) < 0 ||
        (rc = arg_int(c, "batch", opt->batch, 1, 1 << 20, &batch)) < 0 ||
        (rc = arg_int(c, "seed", (int64_t)opt->seed, 0, INT64_MAX, &seed)) < 0)
        return rc;
    opt->batches = (int)batches;
    opt->batch = batch;
    opt->seed = (uint64_t)seed;
    opt->threads = ws->threads; /* set threads N */
    if (cmd_get(c, "reduce") && (rc = score_reduce_parse(cmd_get(c, "reduce"), &opt->reduce)) < 0)
        return rc;
    if (cmd_get(c, "norm") && (rc = score_norm_parse(cmd_get(c, "norm"), &opt->norm)) < 0)
        return rc;
    if (crit->needs_data) {
        if (!ws->has_train)
            return sh_fail(SH_E_STATE, "criterion '%s' needs calibration data from the training split "
                                       "(run: data fashion-mnist)", crit->name);
        if ((rc = ws_subset(ws, "train", &opt->calib)) < 0)
            return rc;
    }
    return 0;
}

typedef struct {
    Out *o;
    cJSON *arr;
} NoteSink;

static void note_line(void *ctx, const char *text)
{
    NoteSink *ns = ctx;
    out_text(ns->o, "note: %s\n", text);
    cJSON_AddItemToArray(ns->arr, cJSON_CreateString(text));
}

static void progress_line(void *ctx, double fraction)
{
    NoteSink *ns = ctx;
    out_progress(ns->o, fraction, "scoring: %.0f%% of the calibration batches", 100 * fraction);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One line per group: units, min / median / max score. */
static void report_group(Out *o, cJSON *arr, const Group *grp, const double *s)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "id", grp->id);
    cJSON_AddStringToObject(e, "group", grp->name);
    cJSON_AddItemToArray(arr, e);
    if (!s) {
        out_text(o, "  %-4d %-28.28s %6d  %s\n", grp->id, grp->name, grp->n_units,
                 grp->blocked ? "blocked: not scored" : "not scored");
        cJSON_AddNullToObject(e, "scores");
        return;
    }
    double *sorted = xmalloc(sizeof *sorted * (size_t)(grp->n_units + 1));
    memcpy(sorted, s, sizeof *sorted * (size_t)grp->n_units);
    qsort(sorted, (size_t)grp->n_units, sizeof *sorted, cmp_double);
    out_text(o, "  %-4d %-28.28s %6d  %12.5g %12.5g %12.5g\n", grp->id, grp->name, grp->n_units, sorted[0],
             sorted[grp->n_units / 2], sorted[grp->n_units - 1]);
    free(sorted);
    cJSON_AddItemToObject(e, "scores", cJSON_CreateDoubleArray(s, grp->n_units));
}

/* The name of the scores in ws: "taylor", "influence", or both kinds
 * ("taylor+influence": channel groups by the first, blocks by the second). */
static char *merged_name(const char *old, const Criterion *crit, bool kept)
{
    if (!kept || !old)
        return xstrdup(crit->name);
    const char *plus = strchr(old, '+');
    const Criterion *prev = criterion_find(old);
    char chan[128] = "", block[128] = "";
    if (plus) {
        snprintf(chan, sizeof chan, "%.*s", (int)(plus - old), old);
        snprintf(block, sizeof block, "%s", plus + 1);
    } else if (prev && prev->blocks)
        snprintf(block, sizeof block, "%s", old);
    else
        snprintf(chan, sizeof chan, "%s", old);
    snprintf(crit->blocks ? block : chan, sizeof chan, "%s", crit->name);
    char *name = xmalloc(strlen(chan) + strlen(block) + 2);
    sprintf(name, "%s+%s", chan, block);
    return name;
}

/* New scores replace the old ones of the groups they cover; the other
 * groups keep theirs (block criteria score only blocks, the others only
 * channels, so both kinds can be scored). */
static void store_scores(Workspace *ws, const DepGraph *dg, double **scores, const Criterion *crit)
{
    bool kept = false;
    for (int g = 0; ws->scores && g < dg->n_groups; g++)
        if (!scores[g] && ws->scores[g]) {
            scores[g] = ws->scores[g];
            ws->scores[g] = NULL;
            kept = true;
        }
    scores_free(ws->scores, dg->n_groups);
    ws->scores = scores;
    char *name = merged_name(ws->score_name, crit, kept);
    free(ws->score_name);
    ws->score_name = name;
}

int cmd_score(Workspace *ws, const Command *c, Out *o)
{
    const DepGraph *dg;
    int rc = ws_groups(ws, &dg);
    if (rc < 0)
        return rc;
    const char *name = cmd_pos(c, 0);
    const Criterion *crit = criterion_find(name);
    if (!crit)
        return sh_fail(SH_E_ARG, "no criterion '%s' (see: criteria)", name);
    ScoreOptions opt;
    if ((rc = score_options(ws, c, crit, &opt)) < 0)
        return rc;
    NoteSink ns = {o, cJSON_AddArrayToObject(o->obj, "notes")};
    opt.note = note_line;
    opt.progress = progress_line;
    opt.hook_ctx = &ns;
    opt.cancel = o->cancel;
    double **scores, t0 = now_seconds();
    if ((rc = importance_score(ws->model, dg, crit, &opt, &scores)) < 0)
        return rc;
    double seconds = now_seconds() - t0;
    out_text(o, "  %-4s %-28s %6s  %12s %12s %12s\n", "id", "group", "units", "min", "median", "max");
    cJSON *arr = cJSON_AddArrayToObject(o->obj, "groups");
    int scored = 0;
    for (int i = 0; i < dg->n_groups; i++) {
        report_group(o, arr, &dg->groups[i], scores[i]);
        scored += scores[i] != NULL;
    }
    char data[96] = "";
    if (crit->needs_data)
        snprintf(data, sizeof data, ", up to %d batches of %lld training samples", opt.batches, (long long)opt.batch);
    out_text(o, "scored %d groups with %s in %.2f s (reduce %s, norm %s%s)\n", scored, crit->name, seconds,
             score_reduce_name(opt.reduce), score_norm_name(opt.norm), data);
    cJSON_AddStringToObject(o->obj, "criterion", crit->name);
    cJSON_AddNumberToObject(o->obj, "seconds", seconds);
    cJSON_AddStringToObject(o->obj, "reduce", score_reduce_name(opt.reduce));
    cJSON_AddStringToObject(o->obj, "norm", score_norm_name(opt.norm));
    store_scores(ws, dg, scores, crit);
    return 0;
}

/* ---- criteria and plugins ---- */

int cmd_criteria(Workspace *ws, const Command *c, Out *o)
{
    (void)ws;
    (void)c;
    cJSON *arr = cJSON_AddArrayToObject(o->obj, "criteria");
    for (int i = 0; i < criterion_count(); i++) {
        const Criterion *cr = criterion_at(i);
        out_text(o, "  %-10s %-9s  %s%s%s%s\n", cr->name, cr->needs_data ? "data" : "data-free", cr->summary,
                 cr->origin ? " [plugin " : "", cr->origin ? cr->origin : "", cr->origin ? "]" : "");
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", cr->name);
        cJSON_AddStringToObject(e, "summary", cr->summary);
        cJSON_AddBoolToObject(e, "needs_data", cr->needs_data);
        if (cr->origin)
            cJSON_AddStringToObject(e, "plugin", cr->origin);
        else
            cJSON_AddNullToObject(e, "plugin");
        cJSON_AddItemToArray(arr, e);
    }
    return 0;
}

int cmd_plugin(Workspace *ws, const Command *c, Out *o)
{
    (void)ws;
    const char *verb = cmd_pos(c, 0), *path = cmd_pos(c, 1);
    if (strcmp(verb, "load") != 0)
        return sh_fail(SH_E_ARG, "plugin takes: load PATH.so (not '%s')", verb);
    if (!path)
        return sh_fail(SH_E_ARG, "plugin load needs the path of a .so file");
    const Criterion *cr;
    int rc = plugin_load(path, &cr);
    if (rc < 0)
        return rc;
    out_text(o, "loaded criterion '%s' from %s (%s): %s\n", cr->name, path, cr->needs_data ? "data" : "data-free",
             cr->summary);
    cJSON_AddStringToObject(o->obj, "criterion", cr->name);
    cJSON_AddStringToObject(o->obj, "path", path);
    cJSON_AddBoolToObject(o->obj, "needs_data", cr->needs_data);
    return 0;
}
