/* Data-free criteria: group magnitude (l1, l2), geometric median (fpgm),
 * BatchNorm scale (bn) and the seeded random control.
 *
 * A unit's slice of a parameter member m is every element whose index
 * along m's axis is one of the unit's channels (a Conv's filter W[o,:,:,:],
 * the next layer's input slice W[:,c,:,:], BatchNorm gamma[c] and beta[c],
 * a bias b[c]). Only trainable float parameters count (graph_value_trainable):
 * BatchNorm running statistics are measurements, not weights.
 *
 *   l1:  n_m(u) = (1/|S_m(u)|) * sum_{e in S_m(u)} |w_e|          (mean |w|)
 *   l2:  n_m(u) = sqrt((1/|S_m(u)|) * sum_{e in S_m(u)} w_e^2)    (RMS)
 *   score(u) = mean_m n_m(u)  (reduce=mean, default)
 *            | sum_m n_m(u)   (reduce=sum)
 *            | max_m n_m(u)   (reduce=max)
 * Dividing by the slice size keeps a large tensor (the next layer's
 * 3x3x128 input slice) from drowning a small one (gamma).
 *
 *   fpgm: F_u = unit u's slice of the producer's weight (the first
 *         trainable member on axis 0 read by a producer of the group);
 *         score(u) = sum_v ||F_u - F_v||_2 (He et al. 2019: units near the
 *         geometric median are replaceable by the others, so they score low).
 *   bn:   score(u) = reduce over the group's BatchNormalization scales of
 *         mean_{c in u} |gamma_c|; groups without one are scored with l1.
 *   random: uniform in [0, 1) from (seed, group index). */
#include "criteria.h"

#include "core/data.h"
#include "core/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- l1 / l2 ---- */

static void reduce_into(double *acc, double x, ScoreReduce r, bool first)
{
    if (r == REDUCE_MAX)
        *acc = first ? x : fmax(*acc, x);
    else
        *acc += x;
}

int magnitude_scores(const ScoreCtx *sc, const Group *grp, int p, double *out)
{
    ScoreReduce r = sc_options(sc)->reduce;
    int used = 0;
    for (int mi = 0; mi < grp->n_members; mi++) {
        const GroupMember *m = &grp->members[mi];
        const Tensor *t = member_weight(sc, m);
        if (!t)
            continue;
        for (int u = 0; u < grp->n_units; u++) {
            SliceStats st;
            slice_stats(t, m, u, &st);
            double n = st.count == 0 ? 0 : p == 1 ? st.sum_abs / (double)st.count : sqrt(st.sum_sq / (double)st.count);
            reduce_into(&out[u], n, r, used == 0);
        }
        used++;
    }
    if (r == REDUCE_MEAN && used > 0)
        for (int u = 0; u < grp->n_units; u++)
            out[u] /= used;
    return used;
}

static int score_magnitude(const ScoreCtx *sc, double **scores, int p)
{
    const DepGraph *dg = sc_groups(sc);
    NameList none = {0};
    for (int gi = 0; gi < dg->n_groups; gi++)
        if (scores[gi] && magnitude_scores(sc, &dg->groups[gi], p, scores[gi]) == 0)
            names_add(&none, dg->groups[gi].name);
    names_note(sc, &none, "no trainable parameter", "scored 0");
    return 0;
}

static int score_l1(const ScoreCtx *sc, double **scores) { return score_magnitude(sc, scores, 1); }
static int score_l2(const ScoreCtx *sc, double **scores) { return score_magnitude(sc, scores, 2); }

/* ---- fpgm ---- */

static bool read_by_producer(const Graph *g, const Group *grp, int v)
{
    for (int p = 0; p < grp->n_producers; p++) {
        const Node *n = &g->nodes[grp->producers[p]];
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] == v)
                return true;
    }
    return false;
}

/* The producer's filters: the first trainable weight on axis 0 that a
 * producer reads; else any trainable member of rank >= 2. */
static const GroupMember *filter_member(const ScoreCtx *sc, const Group *grp)
{
    for (int pass = 0; pass < 2; pass++)
        for (int mi = 0; mi < grp->n_members; mi++) {
            const GroupMember *m = &grp->members[mi];
            const Tensor *t = member_weight(sc, m);
            if (t && t->shape.rank >= 2 &&
                (pass == 1 || (m->axis == 0 && read_by_producer(sc_graph(sc), grp, m->value))))
                return m;
        }
    return NULL;
}

static void fpgm_group(const ScoreCtx *sc, const Group *grp, const GroupMember *m, double *out)
{
    const Tensor *t = member_weight(sc, m);
    int64_t width = 0;
    for (int u = 0; u < grp->n_units; u++)
        width = slice_count(&t->shape, m, u) > width ? slice_count(&t->shape, m, u) : width;
    float *f = xcalloc((size_t)(grp->n_units * width) + 1, sizeof *f); /* zero-padded rows */
    for (int u = 0; u < grp->n_units; u++)
        slice_gather(t, m, u, f + (int64_t)u * width);
    for (int u = 0; u < grp->n_units; u++)
        for (int v = u + 1; v < grp->n_units; v++) {
            const float *a = f + (int64_t)u * width, *b = f + (int64_t)v * width;
            double d2 = 0;
            for (int64_t i = 0; i < width; i++) {
                double d = (double)a[i] - b[i];
                d2 += d * d;
            }
            out[u] += sqrt(d2);
            out[v] += sqrt(d2);
        }
    free(f);
}

static int score_fpgm(const ScoreCtx *sc, double **scores)
{
    const DepGraph *dg = sc_groups(sc);
    NameList fallback = {0};
    for (int gi = 0; gi < dg->n_groups; gi++) {
        if (!scores[gi])
            continue;
        const GroupMember *m = filter_member(sc, &dg->groups[gi]);
        if (m) {
            fpgm_group(sc, &dg->groups[gi], m, scores[gi]);
        } else {
            magnitude_scores(sc, &dg->groups[gi], 2, scores[gi]);
            names_add(&fallback, dg->groups[gi].name);
        }
    }
    names_note(sc, &fallback, "no filter weight", "scored with l2 instead");
    return 0;
}

/* ---- bn ---- */

static bool is_bn_scale(const Graph *g, int v)
{
    for (int i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i].op_type, "BatchNormalization") == 0 && g->nodes[i].n_in > 1 && g->nodes[i].in[1] == v)
            return true;
    return false;
}

/* Returns the number of BatchNorm scales found. */
static int bn_group(const ScoreCtx *sc, const Group *grp, double *out)
{
    int used = 0;
    for (int mi = 0; mi < grp->n_members; mi++) {
        const GroupMember *m = &grp->members[mi];
        const Tensor *t = member_weight(sc, m);
        if (!t || !is_bn_scale(sc_graph(sc), m->value))
            continue;
        for (int u = 0; u < grp->n_units; u++) {
            SliceStats st;
            slice_stats(t, m, u, &st);
            reduce_into(&out[u], st.count ? st.sum_abs / (double)st.count : 0, sc_options(sc)->reduce, used == 0);
        }
        used++;
    }
    if (sc_options(sc)->reduce == REDUCE_MEAN && used > 0)
        for (int u = 0; u < grp->n_units; u++)
            out[u] /= used;
    return used;
}

static int score_bn(const ScoreCtx *sc, double **scores)
{
    const DepGraph *dg = sc_groups(sc);
    NameList fallback = {0};
    for (int gi = 0; gi < dg->n_groups; gi++)
        if (scores[gi] && bn_group(sc, &dg->groups[gi], scores[gi]) == 0) {
            magnitude_scores(sc, &dg->groups[gi], 1, scores[gi]);
            names_add(&fallback, dg->groups[gi].name);
        }
    names_note(sc, &fallback, "no BatchNormalization", "scored with l1 instead");
    return 0;
}

/* ---- random ---- */

static int score_random(const ScoreCtx *sc, double **scores)
{
    const DepGraph *dg = sc_groups(sc);
    for (int gi = 0; gi < dg->n_groups; gi++) {
        if (!scores[gi])
            continue;
        Xoshiro r; /* one stream per group: a group's scores do not depend on the others */
        xoshiro_seed(&r, sc_options(sc)->seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(gi + 1)));
        for (int u = 0; u < dg->groups[gi].n_units; u++)
            scores[gi][u] = xoshiro_uniform(&r);
    }
    return 0;
}

const Criterion crit_l1 = {"l1", "mean |w| of each unit's parameter slices, averaged over the group's tensors", false,
                           score_l1, NULL, NULL, false};
const Criterion crit_l2 = {"l2", "RMS of each unit's parameter slices, averaged over the group's tensors", false,
                           score_l2, NULL, NULL, false};
const Criterion crit_fpgm = {"fpgm", "sum of distances of the unit's filter to the group's other filters (geometric median)",
                             false, score_fpgm, NULL, NULL, false};
const Criterion crit_bn = {"bn", "|gamma| of the group's BatchNormalization (l1 where there is none)", false, score_bn,
                           NULL, NULL, false};
const Criterion crit_random = {"random", "seeded uniform scores: the control for every other criterion", false,
                               score_random, NULL, NULL, false};
