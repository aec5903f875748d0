#include "prune.h"

#include "error.h"
#include "exec.h"
#include "surgery.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool ignored(const PruneRule *r, const Group *grp)
{
    if (!r->ignore || !*r->ignore)
        return false;
    char id[16];
    snprintf(id, sizeof id, "%d", grp->id);
    const char *p = r->ignore;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if ((strlen(grp->name) == len && !strncmp(p, grp->name, len)) || (strlen(id) == len && !strncmp(p, id, len)))
            return true;
        p = comma ? comma + 1 : p + len;
    }
    return false;
}

/* The most units a group may lose: max_ratio, at least one kept, and the
 * kept count a multiple of round_to. */
static int removable(const Group *grp, const PruneRule *r, int want)
{
    int n = grp->n_units, cap = (int)floor(r->max_ratio * n + 1e-9);
    if (cap > n - 1)
        cap = n - 1;
    if (want > cap)
        want = cap;
    if (want < 0)
        want = 0;
    int step = r->round_to > 1 ? r->round_to : 1;
    int kept = n - want;
    if (step > 1 && n > step) { /* round the kept width up to a multiple */
        kept = (kept + step - 1) / step * step;
        if (kept > n)
            kept = n;
    }
    return n - kept;
}

typedef struct {
    double score;
    int group, unit;
} Ranked;

static int cmp_ranked(const void *a, const void *b)
{
    const Ranked *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? -1 : 1;
    if (x->group != y->group)
        return x->group - y->group;
    return x->unit - y->unit;
}

static int *sorted_units(const double *s, int n)
{
    int *order = xmalloc(sizeof(int) * (size_t)(n + 1));
    for (int i = 0; i < n; i++)
        order[i] = i;
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && (s[order[j]] < s[order[j - 1]]); j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    return order;
}

static int mark_lowest(Plan *p, const Group *grp, const double *s, int count)
{
    int *order = sorted_units(s, grp->n_units), rc = 0;
    for (int i = 0; i < count && rc == 0; i++)
        rc = plan_mark(p, grp, order[i], true);
    free(order);
    return rc;
}

static int select_local(const DepGraph *dg, double *const *scores, const PruneRule *r, Plan *p)
{
    int rc = 0;
    for (int gi = 0; gi < dg->n_groups && rc == 0; gi++) {
        const Group *grp = &dg->groups[gi];
        if (grp->blocked || !scores[gi] || ignored(r, grp))
            continue;
        int want = (int)floor(r->ratio * grp->n_units + 0.5);
        rc = mark_lowest(p, grp, scores[gi], removable(grp, r, want));
    }
    return rc;
}

/* Global: rank every unit by its score divided by its group's mean, take
 * the lowest, then round each group's count to the rule. */
static int select_global(const DepGraph *dg, double *const *scores, const PruneRule *r, Plan *p)
{
    int total = 0, n = 0, rc = 0;
    for (int gi = 0; gi < dg->n_groups; gi++)
        if (!dg->groups[gi].blocked && scores[gi] && !ignored(r, &dg->groups[gi]))
            total += dg->groups[gi].n_units;
    Ranked *all = xmalloc(sizeof *all * (size_t)(total + 1));
    for (int gi = 0; gi < dg->n_groups; gi++) {
        const Group *grp = &dg->groups[gi];
        if (grp->blocked || !scores[gi] || ignored(r, grp))
            continue;
        double mean = 0;
        for (int u = 0; u < grp->n_units; u++)
            mean += scores[gi][u];
        mean = mean / grp->n_units;
        for (int u = 0; u < grp->n_units; u++)
            all[n++] = (Ranked){.score = mean > 0 ? scores[gi][u] / mean : scores[gi][u], .group = gi, .unit = u};
    }
    qsort(all, (size_t)n, sizeof *all, cmp_ranked);
    int *want = xcalloc((size_t)dg->n_groups + 1, sizeof *want);
    int target = (int)floor(r->ratio * total + 0.5);
    for (int i = 0; i < target && i < n; i++)
        want[all[i].group]++;
    for (int gi = 0; gi < dg->n_groups && rc == 0; gi++)
        if (want[gi])
            rc = mark_lowest(p, &dg->groups[gi], scores[gi], removable(&dg->groups[gi], r, want[gi]));
    free(want);
    free(all);
    return rc;
}

static int select_at(const DepGraph *dg, double *const *scores, const PruneRule *r, Plan *p)
{
    plan_clear(p);
    return r->global ? select_global(dg, scores, r, p) : select_local(dg, scores, r, p);
}

/* MACs of g pruned by p, as a fraction of g's. */
static int macs_fraction(const Graph *g, const DepGraph *dg, const Plan *p, double *frac)
{
    Graph *pruned;
    SurgeryStats st;
    if (plan_count(p) == 0) {
        *frac = 1;
        return 0;
    }
    int rc = surgery_apply(g, dg, p, &pruned, &st);
    if (rc < 0)
        return rc;
    graph_free(pruned);
    *frac = st.macs_before ? (double)st.macs_after / (double)st.macs_before : 1;
    return 0;
}

int prune_select(const Graph *g, const DepGraph *dg, double *const *scores, const PruneRule *rule, Plan *p)
{
    PruneRule r = *rule;
    if (r.max_ratio <= 0)
        r.max_ratio = 0.9;
    if (!(r.macs_target > 0))
        return select_at(dg, scores, &r, p);
    /* bisect the ratio: MACs fall monotonically as more units go */
    double lo = 0, hi = r.max_ratio, frac;
    int rc;
    for (int it = 0; it < 20; it++) {
        r.ratio = (lo + hi) / 2;
        if ((rc = select_at(dg, scores, &r, p)) < 0 || (rc = macs_fraction(g, dg, p, &frac)) < 0)
            return rc;
        if (frac > r.macs_target)
            lo = r.ratio;
        else
            hi = r.ratio;
    }
    r.ratio = hi;
    if ((rc = select_at(dg, scores, &r, p)) < 0 || (rc = macs_fraction(g, dg, p, &frac)) < 0)
        return rc;
    if (frac > r.macs_target + 1e-9)
        return sh_fail(SH_E_STATE, "the rule cannot reach %.1f%% of the MACs (%.1f%% at the most pruning allowed)",
                       100 * r.macs_target, 100 * frac);
    return 0;
}
