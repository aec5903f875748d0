/* Pruning commands: groups, units, mark, unmark, plan, preview, apply,
 * undo, redo. */
#include "commands.h"

#include "core/benchmark.h"
#include "core/data.h"
#include "core/depgraph.h"
#include "core/error.h"
#include "core/exec.h"
#include "core/plan.h"
#include "core/prune.h"
#include "core/surgery.h"
#include "core/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void describe_members(const Graph *g, const Group *grp, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int m = 0; m < grp->n_members && used + 64 < n; m++) {
        const GroupMember *gm = &grp->members[m];
        if (!gm->param)
            continue;
        used += (size_t)snprintf(buf + used, n - used, "%s%s[%d]", used ? " " : "",
                                 g->values[gm->value].name, gm->axis);
    }
}

int cmd_groups(Workspace *ws, const Command *c, Out *o)
{
    (void)c;
    int rc = ws_require_model(ws);
    if (rc < 0)
        return rc;
    DepGraph *dg;
    double t0 = now_seconds();
    if ((rc = depgraph_build(ws->model, &dg)) < 0)
        return rc;
    double ms = (now_seconds() - t0) * 1e3;
    cJSON *arr = cJSON_AddArrayToObject(o->obj, "groups");
    int blocked = 0;
    out_text(o, "%-4s %-28s %-9s %6s %5s  %s\n", "id", "group", "kind", "units", "width", "parameters (axis) / why blocked");
    for (int i = 0; i < dg->n_groups; i++) {
        const Group *grp = &dg->groups[i];
        char members[512];
        describe_members(ws->model, grp, members, sizeof members);
        blocked += grp->blocked;
        out_text(o, "%-4d %-28.28s %-9s %6d %5lld  %s%s%s%s%s\n", grp->id, grp->name, group_kind_name(grp->kind),
                 grp->n_units, (long long)grp->unit_width, grp->blocked ? "BLOCKED: " : "",
                 grp->blocked ? grp->blocked_reason : members, grp->approximate ? "  (approximate: " : "",
                 grp->approximate ? grp->approx_reason : "", grp->approximate ? ")" : "");
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "id", grp->id);
        cJSON_AddStringToObject(e, "name", grp->name);
        cJSON_AddStringToObject(e, "kind", group_kind_name(grp->kind));
        cJSON_AddNumberToObject(e, "units", grp->n_units);
        cJSON_AddNumberToObject(e, "unit_width", (double)grp->unit_width);
        cJSON_AddBoolToObject(e, "blocked", grp->blocked);
        if (grp->blocked)
            cJSON_AddStringToObject(e, "blocked_reason", grp->blocked_reason);
        cJSON_AddBoolToObject(e, "approximate", grp->approximate);
        if (grp->approximate)
            cJSON_AddStringToObject(e, "approx_reason", grp->approx_reason);
        cJSON *mem = cJSON_AddArrayToObject(e, "members");
        for (int m = 0; m < grp->n_members; m++) {
            cJSON *me = cJSON_CreateObject();
            cJSON_AddStringToObject(me, "tensor", ws->model->values[grp->members[m].value].name);
            cJSON_AddNumberToObject(me, "axis", grp->members[m].axis);
            cJSON_AddBoolToObject(me, "param", grp->members[m].param);
            cJSON_AddItemToArray(mem, me);
        }
        cJSON_AddItemToArray(arr, e);
    }
    out_text(o, "%d groups, %d blocked (built in %.2f ms)\n", dg->n_groups, blocked, ms);
    cJSON_AddNumberToObject(o->obj, "build_ms", ms);
    depgraph_free(dg);
    return 0;
}

/* ---- marks ---- */

static int find_group(Workspace *ws, const char *name, const Group **out)
{
    const DepGraph *dg;
    int rc = ws_groups(ws, &dg);
    if (rc < 0)
        return rc;
    const Group *grp = depgraph_find(dg, name);
    if (!grp)
        return sh_fail(SH_E_ARG, "no group '%s' (see: groups)", name);
    *out = grp;
    return 0;
}

/* Parses "3,7,10-12" into flags over n units. */
static int parse_units(const char *s, int n, bool *sel)
{
    const char *p = s;
    while (*p) {
        char *end;
        long a = strtol(p, &end, 10), b = a;
        if (end == p)
            return sh_fail(SH_E_ARG, "units must look like 3,7,10-12, got '%s'", s);
        if (*end == '-') {
            p = end + 1;
            b = strtol(p, &end, 10);
            if (end == p)
                return sh_fail(SH_E_ARG, "units must look like 3,7,10-12, got '%s'", s);
        }
        if (a < 0 || b >= n || a > b)
            return sh_fail(SH_E_ARG, "units %ld-%ld are outside 0..%d", a, b, n - 1);
        for (long u = a; u <= b; u++)
            sel[u] = true;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return sh_fail(SH_E_ARG, "units must look like 3,7,10-12, got '%s'", s);
    }
    return 0;
}

static const double *group_scores(const Workspace *ws, const Group *grp)
{
    return ws->scores ? ws->scores[grp->id] : NULL;
}

/* Unit indices of grp ordered by ascending score (index order without scores). */
static int *units_by_score(const Workspace *ws, const Group *grp)
{
    int *order = xmalloc(sizeof(int) * (size_t)(grp->n_units + 1));
    const double *sc = group_scores(ws, grp);
    for (int u = 0; u < grp->n_units; u++)
        order[u] = u;
    for (int i = 1; sc && i < grp->n_units; i++) /* insertion sort: stable, small n */
        for (int j = i; j > 0 && sc[order[j]] < sc[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    return order;
}

int cmd_mark(Workspace *ws, const Command *c, Out *o)
{
    const Group *grp = NULL;
    int rc = find_group(ws, cmd_pos(c, 0), &grp);
    if (rc < 0)
        return rc;
    bool *sel = xcalloc((size_t)grp->n_units + 1, sizeof *sel);
    const char *units = cmd_pos(c, 1);
    int64_t lowest;
    double ratio;
    if ((rc = arg_int(c, "lowest", 0, 0, grp->n_units, &lowest)) < 0 ||
        (rc = arg_double(c, "ratio", 0, 0, 1, &ratio)) < 0)
        goto done;
    if (ratio > 0)
        lowest = (int64_t)(ratio * grp->n_units + 0.5);
    if (units && (rc = parse_units(units, grp->n_units, sel)) < 0)
        goto done;
    if (lowest > 0) {
        if (!group_scores(ws, grp)) {
            rc = sh_fail(SH_E_STATE, "no scores for group '%s' (run: score CRITERION)", grp->name);
            goto done;
        }
        int *order = units_by_score(ws, grp);
        for (int i = 0; i < lowest; i++)
            sel[order[i]] = true;
        free(order);
    }
    if (!units && lowest == 0) {
        rc = sh_fail(SH_E_ARG, "give units (3,7,10-12), lowest=K or ratio=R");
        goto done;
    }
    int marked = 0;
    for (int u = 0; u < grp->n_units && rc == 0; u++)
        if (sel[u] && (rc = plan_mark(&ws->plan, grp, u, true)) == 0)
            marked++;
    if (rc == 0) {
        out_text(o, "%s: %d of %d units marked\n", grp->name, plan_marked_in(&ws->plan, grp), grp->n_units);
        cJSON_AddStringToObject(o->obj, "group", grp->name);
        cJSON_AddNumberToObject(o->obj, "marked", plan_marked_in(&ws->plan, grp));
        cJSON_AddNumberToObject(o->obj, "units", grp->n_units);
    }
done:
    free(sel);
    return rc;
}

int cmd_unmark(Workspace *ws, const Command *c, Out *o)
{
    const char *name = cmd_pos(c, 0);
    if (!name) {
        plan_clear(&ws->plan);
        out_text(o, "all marks cleared\n");
        return 0;
    }
    const Group *grp = NULL;
    int rc = find_group(ws, name, &grp);
    if (rc < 0)
        return rc;
    bool *sel = xcalloc((size_t)grp->n_units + 1, sizeof *sel);
    if (cmd_pos(c, 1))
        rc = parse_units(cmd_pos(c, 1), grp->n_units, sel);
    else
        for (int u = 0; u < grp->n_units; u++)
            sel[u] = true;
    for (int u = 0; u < grp->n_units && rc == 0; u++)
        if (sel[u])
            rc = plan_mark(&ws->plan, grp, u, false);
    free(sel);
    if (rc == 0)
        out_text(o, "%s: %d of %d units marked\n", grp->name, plan_marked_in(&ws->plan, grp), grp->n_units);
    return rc;
}

int cmd_units(Workspace *ws, const Command *c, Out *o)
{
    const Group *grp = NULL;
    int rc = find_group(ws, cmd_pos(c, 0), &grp);
    if (rc < 0)
        return rc;
    const char *sort = cmd_get(c, "sort");
    const double *sc = group_scores(ws, grp);
    int *order = sort && !strcmp(sort, "index") ? NULL : units_by_score(ws, grp);
    const PlanEntry *e = plan_entry(&ws->plan, grp, false);
    out_text(o, "%s: %d units (%s), %s\n", grp->name, grp->n_units, group_kind_name(grp->kind),
             sc ? ws->score_name : "no scores yet (score CRITERION)");
    cJSON *arr = cJSON_AddArrayToObject(o->obj, "units");
    for (int i = 0; i < grp->n_units; i++) {
        int u = order ? order[i] : i;
        bool marked = e && e->marked[u];
        if (sc)
            out_text(o, "  %4d %s %12.6g\n", u, marked ? "x" : " ", sc[u]);
        else
            out_text(o, "  %4d %s\n", u, marked ? "x" : " ");
        cJSON *item = cJSON_CreateObject();
        cJSON_AddNumberToObject(item, "unit", u);
        cJSON_AddBoolToObject(item, "marked", marked);
        if (sc)
            cJSON_AddNumberToObject(item, "score", sc[u]);
        cJSON_AddItemToArray(arr, item);
    }
    free(order);
    return 0;
}

/* ---- plan ---- */

static void show_plan(Workspace *ws, Out *o)
{
    cJSON *arr = cJSON_AddArrayToObject(o->obj, "groups");
    int total = 0;
    for (int i = 0; i < ws->plan.n; i++) {
        const PlanEntry *e = &ws->plan.entries[i];
        int n = 0;
        char list[512] = "";
        size_t used = 0;
        for (int u = 0; u < e->n_units; u++)
            if (e->marked[u]) {
                n++;
                if (used + 16 < sizeof list)
                    used += (size_t)snprintf(list + used, sizeof list - used, "%s%d", used ? "," : "", u);
            }
        if (!n)
            continue;
        total += n;
        out_text(o, "  %-28s %4d of %4d units: %s%s\n", e->group, n, e->n_units, list,
                 used + 16 >= sizeof list ? ",..." : "");
        cJSON *g = cJSON_CreateObject();
        cJSON_AddStringToObject(g, "group", e->group);
        cJSON_AddNumberToObject(g, "marked", n);
        cJSON_AddNumberToObject(g, "units", e->n_units);
        cJSON_AddItemToArray(arr, g);
    }
    out_text(o, "plan (%s): %d units marked\n", ws->plan.criterion, total);
    cJSON_AddNumberToObject(o->obj, "marked", total);
    cJSON_AddStringToObject(o->obj, "criterion", ws->plan.criterion);
}

int cmd_plan(Workspace *ws, const Command *c, Out *o)
{
    int rc = ws_require_model(ws);
    const char *verb = cmd_pos(c, 0), *path = cmd_pos(c, 1);
    bool force;
    if (rc < 0 || (rc = arg_bool(c, "force", false, &force)) < 0)
        return rc;
    if (!verb || !strcmp(verb, "show")) {
        show_plan(ws, o);
        return 0;
    }
    if (!path)
        return sh_fail(SH_E_ARG, "plan %s needs a file name", verb);
    if (!strcmp(verb, "save")) {
        ws->plan.model_hash = graph_content_hash(ws->model);
        if ((rc = plan_save(&ws->plan, path, force)) == 0)
            out_text(o, "wrote %s\n", path);
        return rc;
    }
    if (!strcmp(verb, "load")) {
        const DepGraph *dg;
        Plan p;
        plan_init(&p, 0);
        if ((rc = ws_groups(ws, &dg)) < 0 || (rc = plan_load(&p, path, graph_content_hash(ws->model))) < 0 ||
            (rc = plan_check(&p, dg)) < 0) {
            plan_done(&p);
            return rc;
        }
        plan_done(&ws->plan);
        ws->plan = p;
        show_plan(ws, o);
        return 0;
    }
    return sh_fail(SH_E_ARG, "plan takes show, save FILE or load FILE, not '%s'", verb);
}

/* ---- preview and apply ---- */

static void human_count(double x, char *buf, size_t n)
{
    if (x >= 1e6)
        snprintf(buf, n, "%.2fM", x / 1e6);
    else if (x >= 1e4)
        snprintf(buf, n, "%.1fK", x / 1e3);
    else
        snprintf(buf, n, "%.0f", x);
}

static void report_stats(Out *o, const SurgeryStats *st)
{
    char pb[32], pa[32], mb[32], ma[32];
    human_count((double)st->params_before, pb, sizeof pb);
    human_count((double)st->params_after, pa, sizeof pa);
    human_count((double)st->macs_before, mb, sizeof mb);
    human_count((double)st->macs_after, ma, sizeof ma);
    double pr = st->params_before ? 100.0 * (double)st->params_after / (double)st->params_before : 0;
    double mr = st->macs_before ? 100.0 * (double)st->macs_after / (double)st->macs_before : 0;
    out_text(o, "params %s -> %s (%.1f%%), MACs %s -> %s (%.1f%%), predicted speedup %.2fx\n", pb, pa, pr,
             mb, ma, mr, st->macs_after ? (double)st->macs_before / (double)st->macs_after : 0);
    cJSON_AddNumberToObject(o->obj, "params_before", (double)st->params_before);
    cJSON_AddNumberToObject(o->obj, "params_after", (double)st->params_after);
    cJSON_AddNumberToObject(o->obj, "macs_before", (double)st->macs_before);
    cJSON_AddNumberToObject(o->obj, "macs_after", (double)st->macs_after);
    cJSON_AddNumberToObject(o->obj, "units", st->units);
}

/* The plan's effect on loss and accuracy before any fine-tuning, measured
 * on the first n samples of the validation part (else the test split):
 * the estimate preview gives when data is loaded. */
static int preview_estimate(const Workspace *ws, const Graph *pruned, int64_t n, Out *o)
{
    const char *split = ws->val.n > 0 ? "val" : "test";
    const DataSubset *set;
    if (n <= 0 || (!ws->has_train && !ws->has_test) || ws_subset(ws, split, &set) < 0 || set->n == 0)
        return 0;
    DataSubset part = *set;
    if (part.n > n)
        part.n = n;
    EvalResult a, b;
    int rc = evaluate(ws->model, &part, ws->batch, &a);
    if (rc == 0)
        rc = evaluate(pruned, &part, ws->batch, &b);
    if (rc < 0)
        return rc;
    out_text(o, "estimated on %lld %s samples, before fine-tuning: loss %.4f -> %.4f (%+.4f), accuracy %.2f%% -> %.2f%%\n",
             (long long)a.samples, split, a.loss, b.loss, b.loss - a.loss, 100 * a.accuracy, 100 * b.accuracy);
    cJSON *e = cJSON_AddObjectToObject(o->obj, "estimate");
    cJSON_AddStringToObject(e, "split", split);
    cJSON_AddNumberToObject(e, "samples", (double)a.samples);
    cJSON_AddNumberToObject(e, "loss_before", a.loss);
    cJSON_AddNumberToObject(e, "loss_after", b.loss);
    cJSON_AddNumberToObject(e, "accuracy_before", a.accuracy);
    cJSON_AddNumberToObject(e, "accuracy_after", b.accuracy);
    return 0;
}

int cmd_preview(Workspace *ws, const Command *c, Out *o)
{
    const DepGraph *dg;
    CutList cuts;
    int64_t estimate;
    int rc = ws_groups(ws, &dg);
    if (rc < 0 || (rc = arg_int(c, "estimate", 1000, 0, INT64_MAX / 2, &estimate)) < 0 ||
        (rc = plan_cuts(ws->model, &ws->plan, dg, &cuts)) < 0)
        return rc;
    if (plan_count(&ws->plan) == 0) {
        cut_list_done(&cuts);
        return sh_fail(SH_E_STATE, "nothing is marked (mark GROUP UNITS, or prune ratio=R)");
    }
    out_text(o, "slices removed (tensor, axis: removed of size):\n");
    cJSON *arr = cJSON_AddArrayToObject(o->obj, "slices");
    for (int i = 0; i < cuts.n; i++) {
        const Cut *ct = &cuts.cuts[i];
        if (ct->bypass >= 0) {
            out_text(o, "  block      %-36.36s the branch into '%s' goes; the Add passes its skip input on\n",
                     ws->model->values[ct->value].name, ws->model->nodes[ct->bypass].name);
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "block_add", ws->model->nodes[ct->bypass].name);
            cJSON_AddItemToArray(arr, e);
            continue;
        }
        if (!ct->removed)
            continue;
        const Value *v = &ws->model->values[ct->value];
        int node = -1;
        if (ct->param) /* name the layer that reads the parameter */
            for (int n = 0; n < ws->model->n_nodes && node < 0; n++)
                for (int k = 0; k < ws->model->nodes[n].n_in; k++)
                    if (ws->model->nodes[n].in[k] == ct->value)
                        node = n;
        out_text(o, "  %-10s %-36.36s axis %d: %4lld of %4lld\n", ct->param ? "parameter" : "activation", v->name,
                 ct->axis, (long long)ct->removed, (long long)ct->size);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "tensor", v->name);
        cJSON_AddBoolToObject(e, "param", ct->param);
        if (node >= 0)
            cJSON_AddStringToObject(e, "layer", ws->model->nodes[node].name);
        cJSON_AddNumberToObject(e, "axis", ct->axis);
        cJSON_AddNumberToObject(e, "removed", (double)ct->removed);
        cJSON_AddNumberToObject(e, "size", (double)ct->size);
        cJSON_AddItemToArray(arr, e);
    }
    cut_list_done(&cuts);
    Graph *pruned;
    SurgeryStats st;
    if ((rc = surgery_apply(ws->model, dg, &ws->plan, &pruned, &st)) < 0)
        return rc;
    report_stats(o, &st);
    rc = preview_estimate(ws, pruned, estimate, o);
    graph_free(pruned);
    return rc;
}

/* A seeded probe batch for verification: data if loaded, else random. */
static Tensor *probe_batch(const Workspace *ws, int64_t rows)
{
    Shape s;
    if (graph_input_shape(ws->model, 0, rows, &s) < 0)
        return NULL;
    Tensor *t = tensor_new(SH_F32, &s);
    if (!t)
        return NULL;
    const Dataset *ds = ws->has_test ? &ws->test : ws->has_train ? &ws->train : NULL;
    if (ds && ds->x.numel >= t->numel) {
        memcpy(t->data, ds->x.data, tensor_bytes(t));
        return t;
    }
    Xoshiro r;
    xoshiro_seed(&r, 17);
    for (int64_t i = 0; i < t->numel; i++)
        tensor_f32(t)[i] = xoshiro_uniform(&r) * 2 - 1;
    return t;
}

static int verify_against(Workspace *ws, const Graph *before, const DepGraph *dg, const Plan *p,
                          const Graph *after, Out *o)
{
    CutList cuts;
    int rc = plan_cuts(before, p, dg, &cuts);
    if (rc < 0)
        return rc;
    Tensor *probe = before->n_inputs == 1 && before->values[before->inputs[0]].dtype == SH_F32
                        ? probe_batch(ws, 8) : NULL;
    if (!probe) {
        cut_list_done(&cuts);
        out_text(o, "verify: skipped (the model's input is not a single float tensor)\n");
        return 0;
    }
    double diff;
    rc = surgery_verify(before, after, &cuts, &probe, &diff);
    bool approx = false;
    for (int i = 0; i < dg->n_groups; i++)
        if (plan_marked_in(p, &dg->groups[i]) > 0 && dg->groups[i].approximate)
            approx = true;
    if (rc == 0) {
        bool ok = diff <= 1e-4;
        out_text(o, "verify: max |pruned - original with the removed channels zeroed| = %.3g on a probe batch of 8: %s\n",
                 diff, ok ? "ok" : approx ? "differs (expected: the plan touches an approximate group)" : "FAILED");
        cJSON_AddNumberToObject(o->obj, "verify_max_diff", diff);
        cJSON_AddBoolToObject(o->obj, "verified", ok);
        if (!ok && !approx)
            rc = sh_fail(SH_E_STATE, "verification failed: outputs differ by %.3g", diff);
    }
    tensor_free(probe);
    cut_list_done(&cuts);
    return rc;
}

/* Calibration batches for bias compensation: the fitting part of the
 * training split (else the test split), first n_batches x 64 samples. */
static int calibration_batches(const Workspace *ws, int n_batches, Tensor ***out, int *count)
{
    const Dataset *ds = ws->has_train ? &ws->train : ws->has_test ? &ws->test : NULL;
    *out = NULL;
    *count = 0;
    if (!ds || ws->model->n_inputs != 1)
        return 0;
    Tensor **b = xcalloc((size_t)n_batches + 1, sizeof *b);
    for (int i = 0; i < n_batches; i++) {
        Shape s;
        if (graph_input_shape(ws->model, 0, 64, &s) < 0)
            break;
        int64_t rows = s.d[0], per = shape_numel(&s) / (rows ? rows : 1);
        if ((i + 1) * rows > ds->n || per != ds->c * ds->h * ds->w)
            break;
        b[i] = tensor_new(SH_F32, &s);
        memcpy(b[i]->data, tensor_f32(&ds->x) + i * rows * per, tensor_bytes(b[i]));
        *count = i + 1;
    }
    *out = b;
    return 0;
}

/* The pruned model with bias compensation, replacing *pruned. */
static int compensated(Workspace *ws, const DepGraph *dg, int n_batches, Graph **pruned, Out *o)
{
    Tensor **batches;
    int n;
    CutList cuts;
    calibration_batches(ws, n_batches, &batches, &n);
    if (n == 0) {
        free(batches);
        out_text(o, "bias compensation: skipped (no data loaded)\n");
        return 0;
    }
    ChannelMeans means;
    int rc = plan_cuts(ws->model, &ws->plan, dg, &cuts);
    if (rc == 0)
        rc = channel_means(ws->model, &cuts, batches, n, &means);
    Graph *comp = NULL;
    SurgeryStats st;
    if (rc == 0 && (rc = surgery_apply_compensated(ws->model, dg, &ws->plan, &means, &comp, &st)) == 0) {
        graph_free(*pruned);
        *pruned = comp;
        out_text(o, "bias compensation: %d consumers took the mean contribution of removed channels (%d calibration batches)\n",
                 means.consumers, n);
        cJSON_AddNumberToObject(o->obj, "compensated_consumers", means.consumers);
    }
    if (rc == 0)
        channel_means_done(&means);
    cut_list_done(&cuts);
    for (int i = 0; i < n; i++)
        tensor_free(batches[i]);
    free(batches);
    return rc;
}

/* Latency before and after at batch 64, measured now: three alternated
 * rounds, the best median of each, so a burst of other load on the
 * machine does not land on one side only. */
static void measured_speedup(const Graph *before, const Graph *after, Out *o)
{
    Latency a = {0}, b = {0};
    for (int round = 0; round < 3; round++) {
        Latency x, y;
        if (measure_latency(before, 64, 5, round == 0 ? 2 : 1, false, &x) < 0)
            return;
        if (measure_latency(after, 64, 5, round == 0 ? 2 : 1, false, &y) < 0) {
            latency_done(&x);
            return;
        }
        Latency *keep_a = round == 0 || x.median_ms < a.median_ms ? &x : &a;
        Latency *keep_b = round == 0 || y.median_ms < b.median_ms ? &y : &b;
        latency_done(keep_a == &x ? &a : &x);
        latency_done(keep_b == &y ? &b : &y);
        a = *keep_a;
        b = *keep_b;
    }
    out_text(o, "measured at batch %lld: %.2f ms -> %.2f ms, %.2fx faster\n", (long long)a.batch, a.median_ms,
             b.median_ms, a.median_ms / b.median_ms);
    cJSON_AddNumberToObject(o->obj, "ms_before", a.median_ms);
    cJSON_AddNumberToObject(o->obj, "ms_after", b.median_ms);
    latency_done(&a);
    latency_done(&b);
}

/* The optimizer's saved moments lose the same slices as the parameters. */
static void slice_opt_state(Workspace *ws, const DepGraph *dg)
{
    CutList cuts;
    if (!ws->opt.n || plan_cuts(ws->model, &ws->plan, dg, &cuts) < 0)
        return;
    for (int i = 0; i < cuts.n; i++)
        if (cuts.cuts[i].param && cuts.cuts[i].removed)
            opt_state_slice(&ws->opt, ws->model->values[cuts.cuts[i].value].name, cuts.cuts[i].axis,
                            cuts.cuts[i].mask, cuts.cuts[i].removed);
    cut_list_done(&cuts);
}

int cmd_apply(Workspace *ws, const Command *c, Out *o)
{
    const DepGraph *dg;
    bool comp;
    int64_t batches;
    int rc = ws_groups(ws, &dg);
    if (rc < 0 || (rc = arg_bool(c, "compensate", true, &comp)) < 0 ||
        (rc = arg_int(c, "batches", 4, 1, 1000, &batches)) < 0)
        return rc;
    if (plan_count(&ws->plan) == 0)
        return sh_fail(SH_E_STATE, "nothing is marked (mark GROUP UNITS, or prune ratio=R)");
    Graph *pruned;
    SurgeryStats st;
    double t0 = now_seconds();
    if ((rc = surgery_apply(ws->model, dg, &ws->plan, &pruned, &st)) < 0)
        return rc;
    double ms = (now_seconds() - t0) * 1e3;
    /* verification holds for the plain cut; compensation then shifts biases */
    if ((rc = verify_against(ws, ws->model, dg, &ws->plan, pruned, o)) < 0 ||
        (comp && (rc = compensated(ws, dg, (int)batches, &pruned, o)) < 0)) {
        graph_free(pruned);
        return rc;
    }
    slice_opt_state(ws, dg);
    report_stats(o, &st);
    measured_speedup(ws->model, pruned, o);
    out_text(o, "applied: %d units from %d groups in %.1f ms (undo restores the model)\n", st.units, st.groups, ms);
    cJSON_AddNumberToObject(o->obj, "apply_ms", ms);
    ws_replace_model(ws, pruned);
    return 0;
}

int cmd_undo(Workspace *ws, const Command *c, Out *o)
{
    (void)c;
    int rc = ws_undo(ws);
    if (rc == 0)
        out_text(o, "undone: %lld parameters\n", (long long)graph_param_count(ws->model));
    return rc;
}

int cmd_redo(Workspace *ws, const Command *c, Out *o)
{
    (void)c;
    int rc = ws_redo(ws);
    if (rc == 0)
        out_text(o, "redone: %lld parameters\n", (long long)graph_param_count(ws->model));
    return rc;
}

/* ---- prune rules ---- */

/* Runs `score CRITERION` (the same command a user types) so that the
 * rule ranks by fresh scores. */
static int rescore(Workspace *ws, const char *criterion, const Command *c, Out *o)
{
    char text[256];
    const char *batches = cmd_get(c, "batches");
    snprintf(text, sizeof text, "score %s%s%s", criterion, batches ? " batches=" : "", batches ? batches : "");
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

/* Runs one command line inside another command, its JSON result going
 * into arr. */
static int run_sub(Workspace *ws, const char *text, Out *o, cJSON *arr)
{
    CommandList list;
    int rc = parse_commands(text, &list);
    if (rc < 0)
        return rc;
    cJSON *saved = o->obj, *obj = cJSON_CreateObject();
    o->obj = obj;
    out_text(o, "> %s\n", text);
    rc = command_run(ws, &list.cmds[0], o);
    o->obj = saved;
    cJSON_AddItemToArray(arr, obj);
    command_list_done(&list);
    return rc;
}

/* steps=K: K rounds of score, prune, apply and fine-tune, each removing
 * the same fraction q of the current units, (1 - q)^K = 1 - ratio. */
static int prune_iteratively(Workspace *ws, const Command *c, Out *o, int64_t steps)
{
    const char *criterion = cmd_get(c, "criterion"), *scope = cmd_get(c, "scope");
    double ratio;
    int64_t epochs;
    int rc;
    if (!criterion)
        return sh_fail(SH_E_ARG, "steps= needs criterion= (scores change as the model is fine-tuned)");
    if ((rc = arg_double(c, "ratio", 0, 0.01, 0.99, &ratio)) < 0 || (rc = arg_int(c, "epochs", 1, 0, 1000, &epochs)) < 0)
        return rc;
    double q = 1 - pow(1 - ratio, 1.0 / (double)steps);
    cJSON *arr = cJSON_AddArrayToObject(o->obj, "steps");
    for (int64_t k = 0; k < steps && rc == 0; k++) {
        char line[512];
        out_text(o, "step %lld of %lld: remove %.1f%% of the remaining units\n", (long long)k + 1, (long long)steps,
                 100 * q);
        snprintf(line, sizeof line, "prune ratio=%.6f criterion=%s scope=%s%s%s", q, criterion, scope ? scope : "local",
                 cmd_get(c, "ignore") ? " ignore=" : "", cmd_get(c, "ignore") ? cmd_get(c, "ignore") : "");
        if ((rc = run_sub(ws, line, o, arr)) < 0 || (rc = run_sub(ws, "apply", o, arr)) < 0)
            break;
        if (epochs > 0) {
            snprintf(line, sizeof line, "finetune epochs=%lld", (long long)epochs);
            rc = run_sub(ws, line, o, arr);
        }
        if (out_cancelled(o))
            rc = sh_fail(SH_E_CANCELLED, "iterative pruning cancelled after step %lld", (long long)k + 1);
    }
    return rc;
}

int cmd_prune(Workspace *ws, const Command *c, Out *o)
{
    if (cmd_get(c, "budget")) /* ratios from the sensitivity curves */
        return cmd_prune_budget(ws, c, o);
    int64_t steps;
    int src = arg_int(c, "steps", 1, 1, 100, &steps);
    if (src < 0)
        return src;
    if (steps > 1)
        return prune_iteratively(ws, c, o, steps);
    PruneRule r = {.max_ratio = 0.9, .round_to = 1};
    int64_t round_to;
    const char *scope = cmd_get(c, "scope"), *criterion = cmd_get(c, "criterion");
    const DepGraph *dg;
    int rc = ws_groups(ws, &dg);
    if (rc < 0 || (rc = arg_double(c, "ratio", 0, 0, 0.99, &r.ratio)) < 0 ||
        (rc = arg_double(c, "max", 0.9, 0.01, 0.99, &r.max_ratio)) < 0 ||
        (rc = arg_double(c, "macs", 0, 0, 1, &r.macs_target)) < 0 ||
        (rc = arg_int(c, "round_to", 1, 1, 4096, &round_to)) < 0)
        return rc;
    if (r.ratio == 0 && r.macs_target == 0)
        return sh_fail(SH_E_ARG, "give ratio=R (fraction of units) or macs=F (fraction of MACs to keep)");
    r.round_to = (int)round_to;
    r.global = scope && !strcmp(scope, "global");
    r.ignore = cmd_get(c, "ignore");
    if (criterion && (!ws->score_name || strcmp(ws->score_name, criterion)) &&
        (rc = rescore(ws, criterion, c, o)) < 0)
        return rc;
    if (!ws->scores)
        return sh_fail(SH_E_STATE, "no scores (give criterion=NAME or run: score NAME)");
    if ((rc = ws_groups(ws, &dg)) < 0 || (rc = prune_select(ws->model, dg, ws->scores, &r, &ws->plan)) < 0)
        return rc;
    free(ws->plan.criterion);
    ws->plan.criterion = xstrdup(ws->score_name);
    show_plan(ws, o);
    return 0;
}

/* ---- measured cost ---- */

int cmd_bench(Workspace *ws, const Command *c, Out *o)
{
    int64_t batch, iters, top;
    int rc = ws_require_model(ws);
    if (rc < 0 || (rc = arg_int(c, "batch", 64, 1, 1 << 14, &batch)) < 0 ||
        (rc = arg_int(c, "iters", 30, 1, 10000, &iters)) < 0 || (rc = arg_int(c, "top", 8, 0, 1000, &top)) < 0)
        return rc;
    Latency one, many;
    if ((rc = measure_latency(ws->model, 1, (int)iters, 3, false, &one)) < 0 ||
        (rc = measure_latency(ws->model, batch, (int)iters, 3, true, &many)) < 0)
        return rc;
    out_text(o, "latency: batch %lld %.3f ms (%.3f-%.3f); batch %lld %.3f ms (%.3f-%.3f), %.0f images/s; %d BLAS threads\n",
             (long long)one.batch, one.median_ms, one.min_ms, one.max_ms, (long long)many.batch, many.median_ms,
             many.min_ms, many.max_ms, 1e3 * (double)many.batch / many.median_ms, ws->threads);
    cJSON_AddNumberToObject(o->obj, "batch1_ms", one.median_ms);
    cJSON_AddNumberToObject(o->obj, "batch", (double)many.batch);
    cJSON_AddNumberToObject(o->obj, "batch_ms", many.median_ms);
    /* the slowest nodes */
    const Graph *g = ws->model;
    int *order = xmalloc(sizeof(int) * (size_t)(g->n_nodes + 1));
    for (int i = 0; i < g->n_nodes; i++)
        order[i] = i;
    for (int i = 1; i < g->n_nodes; i++)
        for (int j = i; j > 0 && many.node_ms[order[j]] > many.node_ms[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    cJSON *arr = cJSON_AddArrayToObject(o->obj, "layers");
    for (int i = 0; i < g->n_nodes && i < top; i++) {
        const Node *n = &g->nodes[order[i]];
        out_text(o, "  %-32.32s %-18.18s %8.3f ms\n", n->name, n->op_type, many.node_ms[order[i]]);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "node", n->name);
        cJSON_AddNumberToObject(e, "ms", many.node_ms[order[i]]);
        cJSON_AddItemToArray(arr, e);
    }
    free(order);
    latency_done(&one);
    latency_done(&many);
    return 0;
}
