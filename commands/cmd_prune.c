/* Pruning commands: groups (more to come: score, mark, prune, preview,
 * apply). */
#include "commands.h"

#include "core/depgraph.h"
#include "core/error.h"
#include "core/util.h"

#include <stdio.h>
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
