#include "plan.h"

#include "error.h"
#include "fileio.h"
#include "util.h"

#include <cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void plan_init(Plan *p, uint64_t model_hash)
{
    memset(p, 0, sizeof *p);
    p->model_hash = model_hash;
    p->criterion = xstrdup("manual");
}

void plan_clear(Plan *p)
{
    for (int i = 0; i < p->n; i++) {
        free(p->entries[i].group);
        free(p->entries[i].marked);
    }
    free(p->entries);
    p->entries = NULL;
    p->n = 0;
}

void plan_done(Plan *p)
{
    plan_clear(p);
    free(p->criterion);
    memset(p, 0, sizeof *p);
}

int plan_copy(Plan *dst, const Plan *src)
{
    plan_init(dst, src->model_hash);
    free(dst->criterion);
    dst->criterion = xstrdup(src->criterion);
    dst->entries = xcalloc((size_t)src->n + 1, sizeof *dst->entries);
    for (int i = 0; i < src->n; i++) {
        const PlanEntry *e = &src->entries[i];
        dst->entries[i].group = xstrdup(e->group);
        dst->entries[i].n_units = e->n_units;
        dst->entries[i].marked = xmalloc((size_t)e->n_units + 1);
        memcpy(dst->entries[i].marked, e->marked, (size_t)e->n_units);
    }
    dst->n = src->n;
    return 0;
}

PlanEntry *plan_entry(Plan *p, const Group *grp, bool create)
{
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->entries[i].group, grp->name) == 0)
            return &p->entries[i];
    if (!create)
        return NULL;
    p->entries = xrealloc(p->entries, sizeof *p->entries * (size_t)(p->n + 1));
    PlanEntry *e = &p->entries[p->n++];
    e->group = xstrdup(grp->name);
    e->n_units = grp->n_units;
    e->marked = xcalloc((size_t)grp->n_units + 1, 1);
    return e;
}

int plan_marked_in(const Plan *p, const Group *grp)
{
    int count = 0;
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->entries[i].group, grp->name) == 0)
            for (int u = 0; u < p->entries[i].n_units; u++)
                count += p->entries[i].marked[u];
    return count;
}

int plan_mark(Plan *p, const Group *grp, int unit, bool on)
{
    if (grp->blocked)
        return sh_fail(SH_E_STATE, "group '%s' is blocked: %s", grp->name, grp->blocked_reason);
    if (unit < 0 || unit >= grp->n_units)
        return sh_fail(SH_E_ARG, "group '%s' has units 0 to %d; %d is out of range", grp->name,
                       grp->n_units - 1, unit);
    PlanEntry *e = plan_entry(p, grp, on);
    if (!e)
        return 0;
    /* a layer keeps at least one unit; whole blocks may all go (the model
     * keeps its stem and head) */
    if (on && !e->marked[unit] && grp->kind != GROUP_BLOCK && plan_marked_in(p, grp) + 1 >= grp->n_units)
        return sh_fail(SH_E_ARG, "group '%s' must keep at least one of its %d units", grp->name,
                       grp->n_units);
    e->marked[unit] = on;
    return 0;
}

int plan_count(const Plan *p)
{
    int n = 0;
    for (int i = 0; i < p->n; i++)
        for (int u = 0; u < p->entries[i].n_units; u++)
            n += p->entries[i].marked[u];
    return n;
}

int plan_check(const Plan *p, const DepGraph *dg)
{
    for (int i = 0; i < p->n; i++) {
        const PlanEntry *e = &p->entries[i];
        const Group *grp = depgraph_find(dg, e->group);
        int marked = 0;
        for (int u = 0; u < e->n_units; u++)
            marked += e->marked[u];
        if (!marked)
            continue;
        if (!grp)
            return sh_fail(SH_E_STATE, "the plan names group '%s', which this model does not have", e->group);
        if (grp->blocked)
            return sh_fail(SH_E_STATE, "group '%s' is blocked: %s", grp->name, grp->blocked_reason);
        if (grp->n_units != e->n_units)
            return sh_fail(SH_E_STATE, "group '%s' has %d units; the plan was made for %d", grp->name,
                           grp->n_units, e->n_units);
        if (marked >= grp->n_units && grp->kind != GROUP_BLOCK)
            return sh_fail(SH_E_STATE, "the plan removes every unit of group '%s'", grp->name);
    }
    return 0;
}

/* ---- JSON ---- */

int plan_save(const Plan *p, const char *path, bool overwrite)
{
    cJSON *root = cJSON_CreateObject();
    char hash[32];
    snprintf(hash, sizeof hash, "%016" PRIx64, p->model_hash);
    cJSON_AddStringToObject(root, "model_hash", hash);
    cJSON_AddStringToObject(root, "criterion", p->criterion ? p->criterion : "manual");
    cJSON *groups = cJSON_AddArrayToObject(root, "groups");
    for (int i = 0; i < p->n; i++) {
        const PlanEntry *e = &p->entries[i];
        cJSON *g = cJSON_CreateObject(), *rm = cJSON_CreateArray();
        for (int u = 0; u < e->n_units; u++)
            if (e->marked[u])
                cJSON_AddItemToArray(rm, cJSON_CreateNumber(u));
        if (cJSON_GetArraySize(rm) == 0) {
            cJSON_Delete(rm);
            cJSON_Delete(g);
            continue;
        }
        cJSON_AddStringToObject(g, "group", e->group);
        cJSON_AddNumberToObject(g, "units", e->n_units);
        cJSON_AddItemToObject(g, "remove", rm);
        cJSON_AddItemToArray(groups, g);
    }
    char *text = cJSON_Print(root);
    int rc = write_file_atomic(path, text, strlen(text), overwrite);
    cJSON_free(text);
    cJSON_Delete(root);
    return rc;
}

static int load_entry(Plan *p, const cJSON *g, const char *path)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(g, "group");
    const cJSON *units = cJSON_GetObjectItemCaseSensitive(g, "units");
    const cJSON *rm = cJSON_GetObjectItemCaseSensitive(g, "remove");
    if (!cJSON_IsString(name) || !cJSON_IsNumber(units) || !cJSON_IsArray(rm) || units->valuedouble < 1 ||
        units->valuedouble > 1e7)
        return sh_fail(SH_E_FORMAT, "%s: each group needs \"group\", \"units\" and \"remove\"", path);
    p->entries = xrealloc(p->entries, sizeof *p->entries * (size_t)(p->n + 1));
    PlanEntry *e = &p->entries[p->n++];
    e->group = xstrdup(name->valuestring);
    e->n_units = (int)units->valuedouble;
    e->marked = xcalloc((size_t)e->n_units + 1, 1);
    const cJSON *u;
    cJSON_ArrayForEach(u, rm) {
        if (!cJSON_IsNumber(u) || u->valuedouble < 0 || u->valuedouble >= e->n_units)
            return sh_fail(SH_E_FORMAT, "%s: group '%s' removes unit %g, outside 0..%d", path, e->group,
                           cJSON_IsNumber(u) ? u->valuedouble : -1.0, e->n_units - 1);
        e->marked[(int)u->valuedouble] = 1;
    }
    return 0;
}

int plan_load(Plan *p, const char *path, uint64_t model_hash)
{
    unsigned char *text;
    size_t n;
    int rc = read_file(path, &text, &n, 64u << 20);
    if (rc < 0)
        return rc;
    cJSON *root = cJSON_Parse((const char *)text);
    free(text);
    if (!root)
        return sh_fail(SH_E_FORMAT, "%s: not valid JSON", path);
    Plan np;
    plan_init(&np, model_hash);
    const cJSON *hash = cJSON_GetObjectItemCaseSensitive(root, "model_hash");
    const cJSON *crit = cJSON_GetObjectItemCaseSensitive(root, "criterion");
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(root, "groups");
    char want[32];
    snprintf(want, sizeof want, "%016" PRIx64, model_hash);
    if (!cJSON_IsString(hash) || !cJSON_IsArray(groups))
        rc = sh_fail(SH_E_FORMAT, "%s: not a shears plan (needs \"model_hash\" and \"groups\")", path);
    else if (strcmp(hash->valuestring, want) != 0)
        rc = sh_fail(SH_E_STATE, "%s was made for another model (hash %s; this model is %s)", path,
                     hash->valuestring, want);
    if (rc == 0 && cJSON_IsString(crit)) {
        free(np.criterion);
        np.criterion = xstrdup(crit->valuestring);
    }
    const cJSON *g;
    cJSON_ArrayForEach(g, groups) {
        if (rc == 0)
            rc = load_entry(&np, g, path);
    }
    cJSON_Delete(root);
    if (rc < 0) {
        plan_done(&np);
        return rc;
    }
    plan_done(p);
    *p = np;
    return 0;
}

/* ---- content hash ---- */

uint64_t graph_content_hash(const Graph *g)
{
    uint64_t h = hash_bytes("shears-model", 12, 0);
    for (int i = 0; i < g->n_nodes; i++) {
        const Node *n = &g->nodes[i];
        h = hash_bytes(n->op_type, strlen(n->op_type), h);
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0)
                h = hash_bytes(g->values[n->in[k]].name, strlen(g->values[n->in[k]].name), h);
        for (int a = 0; a < n->n_attrs; a++) {
            const Attr *at = &n->attrs[a];
            h = hash_bytes(at->name, strlen(at->name), h);
            h = hash_bytes(&at->i, sizeof at->i, h);
            h = hash_bytes(&at->f, sizeof at->f, h);
            if (at->ints)
                h = hash_bytes(at->ints, sizeof *at->ints * (size_t)at->n, h);
        }
    }
    for (int v = 0; v < g->n_values; v++) {
        const Value *val = &g->values[v];
        if (!(val->flags & VAL_CONST) || !val->data)
            continue;
        h = hash_bytes(val->name, strlen(val->name), h);
        h = hash_bytes(val->data->shape.d, sizeof(int64_t) * (size_t)val->data->shape.rank, h);
        h = hash_bytes(val->data->data, tensor_bytes(val->data), h);
    }
    return h;
}
