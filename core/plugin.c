/* Plugin loading (dlopen) and the bridge from a ScoreCtx to the plain-C
 * view of plugins/shears_plugin.h. */
#include "plugin.h"

#include "criteria/criteria.h"
#include "error.h"
#include "util.h"
#include "plugins/shears_plugin.h"

#include <ctype.h>
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

/* ---- the view a plugin sees ---- */

/* The first node reading v and at which input; op "" if none. */
static const char *reader_of(const Graph *g, int v, int *input_index)
{
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++)
            if (g->nodes[i].in[k] == v) {
                *input_index = k;
                return g->nodes[i].op_type;
            }
    *input_index = -1;
    return "";
}

static int group_params(const ScoreCtx *sc, const Group *grp, ShearsParam *out)
{
    const Graph *g = sc_graph(sc);
    int n = 0;
    for (int mi = 0; mi < grp->n_members; mi++) {
        const GroupMember *m = &grp->members[mi];
        const Tensor *t = m->param ? g->values[m->value].data : NULL;
        if (!t || t->dtype != SH_F32 || m->axis >= t->shape.rank)
            continue;
        ShearsParam *p = &out[n++];
        p->name = g->values[m->value].name;
        p->op_type = reader_of(g, m->value, &p->input_index);
        p->trainable = sc_trainable(sc, m->value);
        p->data = tensor_f32(t);
        p->rank = t->shape.rank;
        p->shape = t->shape.d;
        p->axis = m->axis;
        p->start = m->start;
        p->idx = m->idx;
    }
    return n;
}

static int plugin_score(const ScoreCtx *sc, double **scores)
{
    const ShearsPluginInfo *info = sc_criterion(sc)->user;
    const DepGraph *dg = sc_groups(sc);
    ShearsGroup *groups = xcalloc((size_t)dg->n_groups + 1, sizeof *groups);
    double **view_scores = xcalloc((size_t)dg->n_groups + 1, sizeof *view_scores);
    double **act = info->needs_data ? xcalloc((size_t)dg->n_groups + 1, sizeof *act) : NULL;
    int n = 0, rc = 0;
    for (int gi = 0; gi < dg->n_groups; gi++) {
        const Group *grp = &dg->groups[gi];
        if (act && scores[gi])
            act[gi] = xcalloc((size_t)grp->n_units + 1, sizeof **act);
    }
    if (act)
        rc = act_mean_abs(sc, act, false);
    for (int gi = 0; gi < dg->n_groups && rc == 0; gi++) {
        const Group *grp = &dg->groups[gi];
        if (!scores[gi])
            continue;
        ShearsParam *params = xcalloc((size_t)grp->n_members + 1, sizeof *params);
        groups[n] = (ShearsGroup){.id = grp->id, .name = grp->name, .kind = group_kind_name(grp->kind),
                                  .n_units = grp->n_units, .unit_width = grp->unit_width,
                                  .n_params = group_params(sc, grp, params), .params = params,
                                  .act_mean_abs = act ? act[gi] : NULL};
        view_scores[n++] = scores[gi];
    }
    if (rc == 0) {
        ShearsModel model = {SHEARS_PLUGIN_ABI_VERSION, n, groups, sc_options(sc)->seed};
        char err[512] = "";
        if (info->score(&model, view_scores, err, sizeof err) != 0)
            rc = sh_fail(SH_E_STATE, "plugin criterion '%s' (%s) failed: %s", info->name, sc_criterion(sc)->origin,
                         err[0] ? err : "no reason given");
    }
    for (int i = 0; i < n; i++)
        free((void *)groups[i].params);
    for (int gi = 0; act && gi < dg->n_groups; gi++)
        free(act[gi]);
    free(act);
    free(groups);
    free(view_scores);
    return rc;
}

/* ---- loading ---- */

static int check_name(const char *path, const char *name)
{
    size_t n = name ? strlen(name) : 0;
    bool ok = n > 0 && n < 32;
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)name[i]) || name[i] == '_' || name[i] == '-';
    if (!ok)
        return sh_fail(SH_E_FORMAT, "plugin '%s': the criterion name '%s' must be 1 to 31 letters, digits, '_' or '-'",
                       path, name ? name : "(null)");
    if (criterion_find(name))
        return sh_fail(SH_E_ARG, "plugin '%s': a criterion named '%s' is already registered", path, name);
    return 0;
}

static int check_info(const char *path, const ShearsPluginInfo *info)
{
    if (!info)
        return sh_fail(SH_E_FORMAT, "plugin '%s': shears_plugin_info returned NULL", path);
    if (info->abi_version != SHEARS_PLUGIN_ABI_VERSION)
        return sh_fail(SH_E_UNSUPPORTED, "plugin '%s' was built for plugin ABI version %d, but this shears supports "
                                         "version %d (rebuild it against plugins/shears_plugin.h)",
                       path, info->abi_version, SHEARS_PLUGIN_ABI_VERSION);
    int rc = check_name(path, info->name);
    if (rc == 0 && !info->score)
        rc = sh_fail(SH_E_FORMAT, "plugin '%s': criterion '%s' has no score function", path, info->name);
    return rc;
}

int plugin_load(const char *path, const Criterion **out)
{
    /* a bare file name would send dlopen searching the library path */
    char *where = strchr(path, '/') ? xstrdup(path) : xasprintf("./%s", path);
    void *h = dlopen(where, RTLD_NOW | RTLD_LOCAL);
    free(where);
    if (!h)
        return sh_fail(SH_E_IO, "cannot load plugin '%s': %s", path, dlerror());
    union { /* dlsym returns an object pointer; the function pointer goes through a union */
        void *obj;
        const ShearsPluginInfo *(*fn)(void);
    } sym = {.obj = dlsym(h, "shears_plugin_info")};
    if (!sym.obj) {
        dlclose(h);
        return sh_fail(SH_E_FORMAT, "'%s' is not a shears plugin: it does not export shears_plugin_info", path);
    }
    const ShearsPluginInfo *info = sym.fn();
    int rc = check_info(path, info);
    if (rc < 0) {
        dlclose(h);
        return rc;
    }
    Criterion c = {.name = info->name, .summary = info->summary ? info->summary : "", .needs_data = info->needs_data != 0,
                   .score = plugin_score, .user = info, .origin = xstrdup(path)};
    if ((rc = criterion_register(&c)) < 0) {
        free((void *)c.origin);
        dlclose(h);
        return rc;
    }
    if (out)
        *out = criterion_find(info->name);
    return 0; /* the handle stays open: the registry points into the library */
}
