#include "viewmodel.h"

#include "core/error.h"
#include "core/exec.h"
#include "core/importance.h"
#include "core/plan.h"
#include "core/surgery.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

void vm_init(ViewModel *vm) { memset(vm, 0, sizeof *vm); }

static void clear(ViewModel *vm)
{
    for (int i = 0; i < vm->n_layers; i++) {
        free(vm->layers[i].name);
        free(vm->layers[i].op);
        free(vm->layers[i].shape);
    }
    free(vm->layers);
    for (int i = 0; i < vm->n_groups; i++) {
        free(vm->groups[i].name);
        free(vm->groups[i].reason);
        free(vm->groups[i].marked);
        free(vm->groups[i].scores);
    }
    free(vm->groups);
    for (int i = 0; i < vm->n_criteria; i++)
        free(vm->criteria[i]);
    free(vm->criteria);
    free(vm->model_path);
    free(vm->model_name);
    free(vm->data_desc);
    free(vm->score_name);
    free(vm->groups_error);
    vm->layers = NULL;
    vm->groups = NULL;
    vm->criteria = NULL;
    vm->model_path = vm->model_name = vm->data_desc = vm->score_name = vm->groups_error = NULL;
    vm->n_layers = vm->n_groups = vm->n_criteria = 0;
}

void vm_done(ViewModel *vm)
{
    clear(vm);
    memset(vm, 0, sizeof *vm);
}

const VmGroup *vm_group(const ViewModel *vm, int id)
{
    return id >= 0 && id < vm->n_groups ? &vm->groups[id] : NULL;
}

const VmGroup *vm_group_named(const ViewModel *vm, const char *name)
{
    for (int i = 0; i < vm->n_groups; i++)
        if (strcmp(vm->groups[i].name, name) == 0)
            return &vm->groups[i];
    return NULL;
}

static char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *name = xstrdup(slash ? slash + 1 : path);
    char *dot = strrchr(name, '.');
    if (dot && dot != name)
        *dot = '\0';
    return name;
}

static int64_t out_channels(const Graph *g, const Node *n)
{
    if (n->n_out < 1 || n->out[0] < 0)
        return -1;
    const Shape *s = &g->values[n->out[0]].shape;
    return s->rank >= 2 && s->d[1] > 0 ? s->d[1] : -1;
}

static int find_node(const Graph *g, const char *name)
{
    for (int i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0)
            return i;
    return -1;
}

static void build_layers(ViewModel *vm, const Workspace *ws)
{
    const Graph *g = ws->model;
    int64_t *macs = xcalloc((size_t)g->n_nodes + 1, sizeof *macs), total = 0;
    int64_t *params = xcalloc((size_t)g->n_nodes + 1, sizeof *params);
    if (graph_macs(g, macs, &total) < 0)
        total = 0;
    graph_node_params(g, params);
    vm->layers = xcalloc((size_t)g->n_nodes + 1, sizeof *vm->layers);
    vm->n_layers = g->n_nodes;
    for (int i = 0; i < g->n_nodes; i++) {
        const Node *n = &g->nodes[i];
        VmLayer *l = &vm->layers[i];
        char shape[128] = "-";
        if (n->n_out > 0 && n->out[0] >= 0)
            sym_shape_str(&g->values[n->out[0]].shape, shape, sizeof shape);
        l->name = xstrdup(n->name);
        l->op = xstrdup(n->op_type);
        l->shape = xstrdup(shape);
        l->params = params[i];
        l->macs = macs[i];
        l->macs_pct = total ? 100.0 * (double)macs[i] / (double)total : 0;
        l->group = -1;
        l->channels = out_channels(g, n);
        int o = ws->original ? find_node(ws->original, n->name) : -1;
        l->orig_channels = o >= 0 ? out_channels(ws->original, &ws->original->nodes[o]) : -1;
    }
    free(macs);
    free(params);
}

/* Which group each layer belongs to: the one it produces; else one whose
 * parameters it reads on axis 0 (BatchNorm's scale). */
static void layer_groups(ViewModel *vm, const Graph *g, const DepGraph *dg)
{
    for (int gi = 0; gi < dg->n_groups; gi++) {
        const Group *grp = &dg->groups[gi];
        for (int p = 0; p < grp->n_producers; p++)
            if (grp->producers[p] >= 0 && grp->producers[p] < vm->n_layers && vm->layers[grp->producers[p]].group < 0)
                vm->layers[grp->producers[p]].group = gi;
    }
    for (int gi = 0; gi < dg->n_groups; gi++) {
        const Group *grp = &dg->groups[gi];
        for (int m = 0; m < grp->n_members; m++) {
            if (!grp->members[m].param || grp->members[m].axis != 0)
                continue;
            for (int i = 0; i < g->n_nodes; i++) {
                if (vm->layers[i].group >= 0)
                    continue;
                for (int k = 0; k < g->nodes[i].n_in; k++)
                    if (g->nodes[i].in[k] == grp->members[m].value)
                        vm->layers[i].group = gi;
            }
        }
    }
}

static void build_groups(ViewModel *vm, Workspace *ws, const DepGraph *dg)
{
    vm->groups = xcalloc((size_t)dg->n_groups + 1, sizeof *vm->groups);
    vm->n_groups = dg->n_groups;
    for (int i = 0; i < dg->n_groups; i++) {
        const Group *grp = &dg->groups[i];
        VmGroup *v = &vm->groups[i];
        v->id = i;
        v->name = xstrdup(grp->name);
        v->kind = grp->kind;
        v->n_units = grp->n_units;
        v->unit_width = grp->unit_width;
        v->blocked = grp->blocked;
        v->approximate = grp->approximate;
        v->reason = xstrdup(grp->blocked ? grp->blocked_reason : grp->approximate ? grp->approx_reason : NULL);
        v->marked = xcalloc((size_t)grp->n_units + 1, sizeof *v->marked);
        const PlanEntry *e = plan_entry(&ws->plan, grp, false);
        for (int u = 0; e && u < grp->n_units && u < e->n_units; u++)
            if ((v->marked[u] = e->marked[u]))
                v->n_marked++;
        if (ws->scores && ws->scores[i]) {
            v->scores = xmalloc(sizeof *v->scores * (size_t)(grp->n_units + 1));
            memcpy(v->scores, ws->scores[i], sizeof *v->scores * (size_t)grp->n_units);
        }
        v->layer = grp->n_producers > 0 ? grp->producers[0] : -1;
        vm->plan_units += v->n_marked;
        vm->plan_groups += v->n_marked > 0;
    }
    layer_groups(vm, ws->model, dg);
}

static void totals(ViewModel *vm, Workspace *ws, const DepGraph *dg)
{
    int64_t m;
    vm->params[0] = ws->original ? graph_param_count(ws->original) : -1;
    vm->macs[0] = ws->original && graph_macs(ws->original, NULL, &m) == 0 ? m : -1;
    vm->params[1] = vm->params[2] = graph_param_count(ws->model);
    vm->macs[1] = vm->macs[2] = graph_macs(ws->model, NULL, &m) == 0 ? m : -1;
    if (!dg || plan_count(&ws->plan) == 0)
        return;
    Graph *pruned = NULL;
    SurgeryStats st;
    if (surgery_apply(ws->model, dg, &ws->plan, &pruned, &st) == 0) {
        vm->params[2] = st.params_after;
        vm->macs[2] = st.macs_after;
    } else
        vm->params[2] = vm->macs[2] = -1;
    graph_free(pruned);
}

void vm_build(ViewModel *vm, Workspace *ws)
{
    uint64_t orig_hash = vm->orig_hash;
    const Graph *orig_ptr = vm->orig_ptr;
    long gen = vm->generation;
    clear(vm);
    memset(vm, 0, sizeof *vm);
    vm->generation = gen + 1;
    vm->n_criteria = criterion_count();
    vm->criteria = xcalloc((size_t)vm->n_criteria + 1, sizeof *vm->criteria);
    for (int i = 0; i < vm->n_criteria; i++)
        vm->criteria[i] = xstrdup(criterion_at(i)->name);
    vm->data_desc = xstrdup(ws->data_desc);
    vm->has_train = ws->has_train;
    vm->has_test = ws->has_test;
    if (!ws->model)
        return;
    vm->has_model = true;
    vm->model_path = xstrdup(ws->model_path ? ws->model_path : "(built)");
    vm->model_name = base_name(vm->model_path);
    vm->score_name = xstrdup(ws->score_name);
    vm->dirty = ws->dirty;
    vm->n_undo = ws->n_undo;
    vm->n_redo = ws->n_redo;
    vm->hash = graph_content_hash(ws->model);
    vm->orig_ptr = ws->original;
    vm->orig_hash = ws->original == orig_ptr && orig_ptr ? orig_hash
                    : ws->original                      ? graph_content_hash(ws->original)
                                                        : 0;
    build_layers(vm, ws);
    const DepGraph *dg = NULL;
    if (ws_groups(ws, &dg) < 0) {
        vm->groups_error = xstrdup(sh_errmsg());
        dg = NULL;
    } else
        build_groups(vm, ws, dg);
    totals(vm, ws, dg);
}

/* ---- measurements ---- */

void measures_init(Measures *m) { memset(m, 0, sizeof *m); }

static void curve_free(VmCurve *c)
{
    free(c->group);
    free(c->ratio);
    free(c->accuracy);
}

void measures_done(Measures *m)
{
    free(m->m);
    for (int i = 0; i < m->n_curves; i++)
        curve_free(&m->curves[i]);
    free(m->curves);
    memset(m, 0, sizeof *m);
}

VmMeasure *measures_for(Measures *m, uint64_t model)
{
    for (int i = 0; i < m->n; i++)
        if (m->m[i].model == model)
            return &m->m[i];
    grow_array((void **)&m->m, &m->cap, m->n + 1, sizeof *m->m);
    VmMeasure *e = &m->m[m->n++];
    e->model = model;
    e->accuracy = e->latency_ms = -1;
    return e;
}

const VmCurve *measures_curve(const Measures *m, uint64_t model, const char *group)
{
    for (int i = m->n_curves - 1; i >= 0; i--)
        if (m->curves[i].model == model && strcmp(m->curves[i].group, group) == 0)
            return &m->curves[i];
    return NULL;
}

static double num(const cJSON *obj, const char *key, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

/* One group's curve from {"group", "points": [{"ratio", "accuracy"}]}. */
static void take_curve(Measures *m, const cJSON *g, uint64_t model, double base)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(g, "group");
    const cJSON *pts = cJSON_GetObjectItemCaseSensitive(g, "points");
    if (!cJSON_IsString(name) || !cJSON_IsArray(pts))
        return;
    VmCurve *c = (VmCurve *)measures_curve(m, model, name->valuestring);
    if (!c) {
        grow_array((void **)&m->curves, &m->cap_curves, m->n_curves + 1, sizeof *m->curves);
        c = &m->curves[m->n_curves++];
        memset(c, 0, sizeof *c);
        c->model = model;
        c->group = xstrdup(name->valuestring);
    }
    int n = cJSON_GetArraySize(pts);
    free(c->ratio);
    free(c->accuracy);
    c->ratio = xcalloc((size_t)n + 1, sizeof *c->ratio);
    c->accuracy = xcalloc((size_t)n + 1, sizeof *c->accuracy);
    c->n = 0;
    c->base = base;
    const cJSON *p;
    cJSON_ArrayForEach(p, pts)
    {
        c->ratio[c->n] = num(p, "ratio", 0);
        c->accuracy[c->n] = num(p, "accuracy", 0);
        c->n++;
    }
}

static void take_sensitivity(Measures *m, const cJSON *result, uint64_t model)
{
    const cJSON *base = cJSON_GetObjectItemCaseSensitive(result, "baseline");
    double base_acc = base ? num(base, "accuracy", -1) : num(result, "base_accuracy", -1);
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(result, "groups"), *g;
    if (cJSON_IsArray(groups)) {
        cJSON_ArrayForEach(g, groups) take_curve(m, g, model, base_acc);
    } else
        take_curve(m, result, model, base_acc);
}

void measures_take_partial(Measures *m, const char *command, const cJSON *result, uint64_t model)
{
    if (strcmp(command, "sensitivity") == 0)
        take_sensitivity(m, result, model);
}

void measures_take_result(Measures *m, const char *command, const cJSON *result, uint64_t model, uint64_t after)
{
    if (!strcmp(command, "eval")) {
        const cJSON *split = cJSON_GetObjectItemCaseSensitive(result, "split");
        double acc = num(result, "accuracy", -1);
        /* the summary shows test accuracy (or whatever split was asked last) */
        if (acc >= 0 && (!cJSON_IsString(split) || strcmp(split->valuestring, "train") != 0))
            measures_for(m, model)->accuracy = acc;
    } else if (!strcmp(command, "bench")) {
        double ms = num(result, "batch1_ms", -1);
        if (ms > 0)
            measures_for(m, model)->latency_ms = ms;
    } else if (!strcmp(command, "sensitivity"))
        take_sensitivity(m, result, model);
    (void)after;
}

double curve_at(const VmCurve *c, double ratio)
{
    double x0 = 0, y0 = c->base >= 0 ? c->base : c->n ? c->accuracy[0] : 0;
    for (int i = 0; i < c->n; i++) {
        if (ratio <= c->ratio[i]) {
            double t = c->ratio[i] > x0 ? (ratio - x0) / (c->ratio[i] - x0) : 1;
            return y0 + t * (c->accuracy[i] - y0);
        }
        x0 = c->ratio[i];
        y0 = c->accuracy[i];
    }
    return y0;
}
