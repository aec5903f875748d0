/* Sensitivity commands: sensitivity (the sweep) and prune budget= (per
 * group ratios chosen from the curves). */
#include "commands.h"

#include "core/error.h"
#include "core/fileio.h"
#include "core/plan.h"
#include "core/sensitivity.h"
#include "core/surgery.h"
#include "core/util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t cancel_requested;

static void on_sigint(int sig)
{
    (void)sig;
    cancel_requested = 1;
}

/* Runs `score CRITERION` (the command a user types) so that the sweep
 * ranks units by that criterion. */
static int rescore(Workspace *ws, const char *criterion, Out *o)
{
    char text[256];
    snprintf(text, sizeof text, "score \"%s\"", criterion);
    CommandList list;
    int rc = parse_commands(text, &list);
    if (rc < 0)
        return rc;
    cJSON *saved = o->obj, *obj = cJSON_CreateObject();
    o->obj = obj;
    rc = command_run(ws, &list.cmds[0], o);
    o->obj = saved;
    cJSON_Delete(obj);
    command_list_done(&list);
    return rc;
}

/* Group ids from positional words (names or ids, comma lists allowed). */
static int listed_groups(const Command *c, const DepGraph *dg, int **ids, int *n)
{
    *ids = NULL;
    *n = 0;
    for (int i = 0; i < cmd_n_pos(c); i++) {
        char *words[256];
        int count = split_list(cmd_pos(c, i), words, 256), rc = 0;
        for (int k = 0; k < count; k++) {
            const Group *grp = rc == 0 ? depgraph_find(dg, words[k]) : NULL;
            if (rc == 0 && !grp)
                rc = sh_fail(SH_E_ARG, "no group '%s' (see: groups)", words[k]);
            if (rc == 0) {
                *ids = xrealloc(*ids, sizeof **ids * (size_t)(*n + 1));
                (*ids)[(*n)++] = grp->id;
            }
            free(words[k]);
        }
        if (rc < 0) {
            free(*ids);
            *ids = NULL;
            return rc;
        }
    }
    return 0;
}

/* The validation part if there is one, else the test split. */
static int sweep_data(const Workspace *ws, const DataSubset **set, const char **name)
{
    if (ws->val.n > 0) {
        *set = &ws->val;
        *name = "val";
        return 0;
    }
    if (ws->has_test) {
        *set = &ws->test_all;
        *name = "test";
        return 0;
    }
    return sh_fail(SH_E_STATE, "no validation data: load a test split or carve a val part (data ... val=0.1)");
}

typedef struct {
    Out *o;
    double t0, next;
} Progress;

static void on_progress(void *ctx, int done, int total)
{
    Progress *p = ctx;
    double t = now_seconds(), eta = done > 0 ? (t - p->t0) * (total - done) / done : 0;
    out_progress(p->o, (double)done / total, "sensitivity: %d%%, about %.0f s left", 100 * done / total, eta);
    if (t < p->next || done >= total)
        return;
    p->next = t + 10;
    out_text(p->o, "sensitivity: %d%% done, %.0f s, about %.0f s left\n", 100 * done / total, t - p->t0, eta);
}

/* The curves so far, for a front end that plots them live. */
static void on_partial(void *ctx, const Sensitivity *so_far)
{
    Progress *p = ctx;
    cJSON *j = sensitivity_to_json(so_far);
    out_partial(p->o, "sensitivity", j);
    cJSON_Delete(j);
}

/* Refuses existing output files before the sweep runs, not after. */
static int check_outputs(const Command *c, bool force)
{
    const char *keys[] = {"csv", "json"};
    for (int i = 0; i < 2; i++) {
        const char *path = cmd_get(c, keys[i]);
        if (path && !force && file_exists(path))
            return sh_fail(SH_E_IO, "%s=%s: the file exists (force=on replaces it)", keys[i], path);
    }
    return 0;
}

static void print_table(Out *o, const Sensitivity *s, bool loss)
{
    out_text(o, "%-28s %5s %-8s", "group", "units", "path");
    for (int r = 0; r < s->n_ratios; r++)
        out_text(o, " %6.3g", s->ratios[r]);
    out_text(o, "\n");
    for (int i = 0; i < s->n_curves; i++) {
        const SensCurve *cv = &s->curves[i];
        out_text(o, "%-28.28s %5d %-8s", cv->group, cv->n_units, cv->surgery ? "surgery" : "zeroing");
        for (int r = 0; r < s->n_ratios; r++)
            out_text(o, loss ? " %6.3f" : " %6.2f", loss ? cv->points[r].loss : 100 * cv->points[r].accuracy);
        out_text(o, "\n");
    }
}

/* Names the groups the sweep left out, and why. */
static void report_skipped(Out *o, const Workspace *ws, const DepGraph *dg, const Sensitivity *s)
{
    bool any = false;
    for (int g = 0; g < dg->n_groups; g++) {
        bool measured = false;
        for (int i = 0; i < s->n_curves && !measured; i++)
            measured = s->curves[i].group_id == g;
        if (measured)
            continue;
        out_text(o, "%s%s (%s)", any ? ", " : "not measured: ", dg->groups[g].name,
                 dg->groups[g].blocked ? "blocked" : ws->scores && ws->scores[g] ? "not listed" : "no scores");
        any = true;
    }
    if (any)
        out_text(o, "\n");
}

static void report(Out *o, const Sensitivity *s)
{
    out_text(o, "sensitivity: %d groups x %d ratios on %lld %s samples (criterion %s), no fine-tuning\n",
             s->n_curves, s->n_ratios, (long long)s->samples, s->data, s->criterion);
    out_text(o, "baseline: accuracy %.2f%%, loss %.4f\n", 100 * s->base_accuracy, s->base_loss);
    out_text(o, "accuracy (%%) with the fraction of each group's lowest-scoring units removed:\n");
    print_table(o, s, false);
    out_text(o, "mean loss:\n");
    print_table(o, s, true);
    out_text(o, "%.1f s on %d thread%s: %d full runs, %d partial reruns (zeroing), %d points by surgery\n",
             s->seconds, s->threads, s->threads == 1 ? "" : "s", s->full_runs, s->reruns, s->surgery_points);
    cJSON *j = sensitivity_to_json(s);
    while (j->child) {
        cJSON *item = cJSON_DetachItemViaPointer(j, j->child);
        cJSON_AddItemToObject(o->obj, item->string, item);
    }
    cJSON_Delete(j);
}

int cmd_sensitivity(Workspace *ws, const Command *c, Out *o)
{
    double ratios[SENS_MAX_RATIOS];
    int n_ratios = 9, n_ids = 0, *ids = NULL, rc;
    int64_t batches, batch;
    bool force;
    const char *criterion = cmd_get(c, "criterion"), *ratio_text = cmd_get(c, "ratios"), *data_name = NULL;
    const DataSubset *set = NULL;
    const DepGraph *dg;
    memcpy(ratios, sens_default_ratios, sizeof sens_default_ratios);
    if ((rc = ws_require_model(ws)) < 0 || (rc = ws_require_data(ws)) < 0 ||
        (rc = arg_int(c, "batches", 10, 1, 1 << 20, &batches)) < 0 ||
        (rc = arg_int(c, "batch", 100, 1, 1 << 16, &batch)) < 0 || (rc = arg_bool(c, "force", false, &force)) < 0 ||
        (ratio_text && (rc = sens_parse_ratios(ratio_text, ratios, SENS_MAX_RATIOS, &n_ratios)) < 0) ||
        (rc = check_outputs(c, force)) < 0 || (rc = sweep_data(ws, &set, &data_name)) < 0)
        return rc;
    if (criterion && (!ws->score_name || strcmp(ws->score_name, criterion)) && (rc = rescore(ws, criterion, o)) < 0)
        return rc;
    if (!ws->scores)
        return sh_fail(SH_E_STATE, "no scores to rank units by (give criterion=NAME or run: score NAME)");
    if ((rc = ws_groups(ws, &dg)) < 0 || (rc = listed_groups(c, dg, &ids, &n_ids)) < 0)
        return rc;
    Progress pr = {.o = o, .t0 = now_seconds()};
    pr.next = pr.t0 + 10;
    SensOptions so = {.ratios = ratios, .n_ratios = n_ratios, .groups = ids, .n_groups = n_ids,
                      .batches = batches, .batch = batch, .threads = ws->threads, .criterion = ws->score_name,
                      .data = data_name, .progress = on_progress, .partial = on_partial, .progress_ctx = &pr};
    Sensitivity *s = NULL;
    struct sigaction sa = {.sa_handler = on_sigint}, old;
    if (o->cancel) /* a job: the front end owns cancellation */
        so.cancel = o->cancel;
    else { /* batch mode: Ctrl-C cancels */
        so.cancel = &cancel_requested;
        cancel_requested = 0;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &old);
    }
    rc = sensitivity_run(ws->model, dg, ws->scores, set, &so, &s);
    if (!o->cancel)
        sigaction(SIGINT, &old, NULL);
    free(ids);
    if (rc < 0)
        return rc;
    report(o, s);
    report_skipped(o, ws, dg, s);
    const char *csv = cmd_get(c, "csv"), *json = cmd_get(c, "json");
    if (csv && (rc = sensitivity_write_csv(s, csv, force)) == 0)
        out_text(o, "wrote %s\n", csv);
    if (rc == 0 && json && (rc = sensitivity_write_json(s, json, force)) == 0)
        out_text(o, "wrote %s\n", json);
    sensitivity_remember(s); /* kept even if a file failed: prune budget= and the plot use it */
    return rc;
}

/* ---- prune budget= ---- */

int cmd_prune_budget(Workspace *ws, const Command *c, Out *o)
{
    static const char *const other[] = {"ratio", "macs", "scope", "max", "ignore", "round_to", "steps", "epochs"};
    const char *criterion = cmd_get(c, "criterion");
    SensMetric metric;
    double limit;
    const DepGraph *dg;
    int rc = ws_require_model(ws);
    if (rc < 0 || (rc = sens_parse_budget(cmd_get(c, "budget"), &metric, &limit)) < 0)
        return rc;
    for (size_t i = 0; i < sizeof other / sizeof *other; i++)
        if (cmd_get(c, other[i]))
            return sh_fail(SH_E_ARG, "budget= chooses every group's ratio itself; it takes no %s=", other[i]);
    const Sensitivity *s = sensitivity_recall(graph_content_hash(ws->model), criterion);
    if (!s)
        return sh_fail(SH_E_STATE, "no sensitivity curves for this model%s%s (run: sensitivity%s%s)",
                       criterion ? " and criterion " : "", criterion ? criterion : "", criterion ? " criterion=" : "",
                       criterion ? criterion : "");
    if ((rc = ws_groups(ws, &dg)) < 0)
        return rc;
    int *chosen = xcalloc((size_t)s->n_curves + 1, sizeof *chosen);
    Plan p;
    plan_init(&p, ws->plan.model_hash);
    sensitivity_choose(s, metric, limit, chosen);
    if ((rc = sensitivity_mark(s, dg, chosen, &p)) < 0) {
        plan_done(&p);
        free(chosen);
        return rc;
    }
    const char *unit = metric == SENS_ACCURACY ? "points" : "loss";
    out_text(o, "budget: each group may cost at most %g %s of %s (curves of %s on %lld %s samples)\n", limit, unit,
             metric == SENS_ACCURACY ? "accuracy" : "increase", s->criterion, (long long)s->samples, s->data);
    out_text(o, "%-28s %6s %9s %9s\n", "group", "ratio", "removed", "drop");
    cJSON *arr = cJSON_AddArrayToObject(o->obj, "groups");
    double total = 0;
    for (int i = 0; i < s->n_curves; i++) {
        const SensCurve *cv = &s->curves[i];
        const SensPoint *pt = chosen[i] >= 0 ? &cv->points[chosen[i]] : NULL;
        double drop = !pt ? 0 : metric == SENS_ACCURACY ? 100 * (s->base_accuracy - pt->accuracy) : pt->loss - s->base_loss;
        total += drop;
        char removed[32];
        snprintf(removed, sizeof removed, "%d/%d", pt ? pt->removed : 0, cv->n_units);
        out_text(o, "%-28.28s %6.3g %9s %+9.3f\n", cv->group, pt ? pt->ratio : 0.0, removed, drop);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "group", cv->group);
        cJSON_AddNumberToObject(e, "ratio", pt ? pt->ratio : 0);
        cJSON_AddNumberToObject(e, "removed", pt ? pt->removed : 0);
        cJSON_AddNumberToObject(e, "units", cv->n_units);
        cJSON_AddNumberToObject(e, "drop", drop);
        cJSON_AddItemToArray(arr, e);
    }
    out_text(o, "sum of the measured drops: %.3f %s; each was measured with its group pruned alone, so the "
                "drops add up and the combined drop can exceed the budget (check with: apply; eval)\n",
             total, unit);
    cJSON_AddNumberToObject(o->obj, "predicted_drop_sum", total);
    free(chosen);
    free(p.criterion);
    p.criterion = xasprintf("%s (sensitivity budget %s)", s->criterion, cmd_get(c, "budget"));
    plan_done(&ws->plan);
    ws->plan = p;
    int marked = plan_count(&ws->plan);
    cJSON_AddNumberToObject(o->obj, "marked", marked);
    if (marked == 0) {
        out_text(o, "no group fits the budget: nothing marked\n");
        return 0;
    }
    Graph *pruned;
    SurgeryStats st;
    if ((rc = surgery_apply(ws->model, dg, &ws->plan, &pruned, &st)) < 0)
        return rc;
    graph_free(pruned);
    out_text(o, "marked %d units in %d groups; predicted MACs %lld -> %lld per sample (%.1f%%), params %lld -> %lld "
                "(not applied: preview, apply)\n",
             st.units, st.groups, (long long)st.macs_before, (long long)st.macs_after,
             st.macs_before ? 100.0 * (double)st.macs_after / (double)st.macs_before : 0, (long long)st.params_before,
             (long long)st.params_after);
    cJSON_AddNumberToObject(o->obj, "macs_before", (double)st.macs_before);
    cJSON_AddNumberToObject(o->obj, "macs_after", (double)st.macs_after);
    cJSON_AddNumberToObject(o->obj, "params_before", (double)st.params_before);
    cJSON_AddNumberToObject(o->obj, "params_after", (double)st.params_after);
    return 0;
}
