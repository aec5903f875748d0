/* Gradient criteria over calibration batches (evaluation-mode forward,
 * mean cross-entropy of each batch back-propagated; see calib_run). With
 * L_b the loss of batch b:
 *
 *   taylor: score(u) = sum_b | sum_{m, e in S_m(u)} w_e * dL_b/dw_e |
 *           over every trainable parameter slice of the unit (Molchanov et
 *           al. 2019, first order): the loss change predicted for zeroing
 *           the unit's parameters.
 *   fisher: score(u) = sum_b (dL_b/dm_u)^2 for a mask m (= 1) multiplying
 *           the unit's channels at the group's producer outputs (Theis et
 *           al. 2018, here per batch): dL/dm_u = sum over those outputs, the
 *           unit's channels and every position of a * dL/da.
 *   head:   for attention-head groups, score(h) = sum_b |dL_b/dm_h| for a
 *           mask on head h's output (Michel et al. 2019), computed as the
 *           a * dL/da sum over the head's slice of the attention context
 *           (softmax(QK^T) V, the MatMul fed by a Softmax) — the same as
 *           masking the head's V; without such a MatMul, the first
 *           producer's (Q projection) output. Other groups: taylor.
 * The sums run over batches (not means), so scores grow with batches=. */
#include "criteria.h"

#include "core/graph.h"
#include "core/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_POINTS 64

/* ---- taylor ---- */

static void taylor_batch(const ScoreCtx *sc, const Calib *cb, const Group *grp, double *acc)
{
    for (int u = 0; u < grp->n_units; u++) {
        double sum = 0;
        for (int mi = 0; mi < grp->n_members; mi++) {
            const GroupMember *m = &grp->members[mi];
            const Tensor *w = member_weight(sc, m);
            const float *gw = w ? calib_param_grad(cb, m->value) : NULL;
            if (gw)
                sum += slice_dot(tensor_f32(w), gw, &w->shape, m, u);
        }
        acc[u] += fabs(sum);
    }
}

/* ---- mask gradients at activation points ---- */

/* Where a group's mask sits for one criterion: activation members whose
 * a * dL/da sums, per unit, make dL/dm. */
typedef struct {
    const GroupMember *at[MAX_POINTS];
    int n;
    bool squared;   /* fisher: (dL/dm)^2; head: |dL/dm| */
    bool taylor;    /* no mask point: taylor for this group */
} MaskPoints;

typedef struct {
    const ScoreCtx *sc;
    MaskPoints *points; /* per group */
} MaskPass;

static int mask_batch(void *ctx, const Calib *cb)
{
    MaskPass *mp = ctx;
    const DepGraph *dg = sc_groups(mp->sc);
    double **acc = calib_acc(cb);
    for (int gi = 0; gi < dg->n_groups; gi++) {
        const Group *grp = &dg->groups[gi];
        const MaskPoints *pt = &mp->points[gi];
        if (!acc[gi])
            continue;
        if (pt->taylor) {
            taylor_batch(mp->sc, cb, grp, acc[gi]);
            continue;
        }
        double *dm = xcalloc((size_t)grp->n_units + 1, sizeof *dm); /* dL/dm for this batch */
        for (int k = 0; k < pt->n; k++)
            act_unit_sums(calib_value(cb, pt->at[k]->value), calib_grad(cb, pt->at[k]->value), pt->at[k],
                          grp->n_units, ACT_A_DA, dm);
        for (int u = 0; u < grp->n_units; u++)
            acc[gi][u] += pt->squared ? dm[u] * dm[u] : fabs(dm[u]);
        free(dm);
    }
    return 0;
}

static int run_mask_pass(const ScoreCtx *sc, double **scores, MaskPoints *points)
{
    MaskPass mp = {sc, points};
    return calib_run(sc, true, sc_options(sc)->threads, mask_batch, &mp, scores);
}

/* ---- taylor ---- */

static int score_taylor(const ScoreCtx *sc, double **scores)
{
    int n = sc_groups(sc)->n_groups;
    MaskPoints *points = xcalloc((size_t)n + 1, sizeof *points);
    for (int gi = 0; gi < n; gi++)
        points[gi].taylor = true;
    int rc = run_mask_pass(sc, scores, points);
    free(points);
    return rc;
}

/* ---- fisher ---- */

static int score_fisher(const ScoreCtx *sc, double **scores)
{
    const DepGraph *dg = sc_groups(sc);
    MaskPoints *points = xcalloc((size_t)dg->n_groups + 1, sizeof *points);
    NameList fallback = {0};
    for (int gi = 0; gi < dg->n_groups; gi++) {
        const Group *grp = &dg->groups[gi];
        MaskPoints *pt = &points[gi];
        pt->squared = true;
        pt->n = group_producer_outputs(sc_graph(sc), grp, pt->at, MAX_POINTS);
        if (pt->n == 0 && scores[gi]) {
            bool relu; /* no producer output in the group: the first activation */
            if ((pt->at[0] = group_act_point(sc_graph(sc), grp, &relu)))
                pt->n = 1;
            else
                pt->taylor = true;
            names_add(&fallback, grp->name);
        }
    }
    names_note(sc, &fallback, "no producer output", "masked at another activation (or taylor)");
    int rc = run_mask_pass(sc, scores, points);
    free(points);
    return rc;
}

/* ---- head ---- */

/* True if v is a Softmax output, possibly through Dropout/Identity/Cast. */
static bool from_softmax(const Graph *g, int v)
{
    for (int step = 0; step < 4 && v >= 0 && g->values[v].producer >= 0; step++) {
        const Node *n = &g->nodes[g->values[v].producer];
        if (strcmp(n->op_type, "Softmax") == 0)
            return true;
        if (strcmp(n->op_type, "Dropout") && strcmp(n->op_type, "Identity") && strcmp(n->op_type, "Cast"))
            return false;
        v = n->in[0];
    }
    return false;
}

/* The attention context of a heads group: the output of the MatMul that
 * multiplies the attention weights (a Softmax) by V. */
static const GroupMember *attention_context(const Graph *g, const Group *grp)
{
    for (int i = 0; i < g->n_nodes; i++) {
        const Node *n = &g->nodes[i];
        if (strcmp(n->op_type, "MatMul") || n->n_in < 2 || n->out[0] < 0 || !from_softmax(g, n->in[0]) ||
            !group_activation(grp, n->in[1]))
            continue;
        const GroupMember *m = group_activation(grp, n->out[0]);
        if (m)
            return m;
    }
    return NULL;
}

static int score_head(const ScoreCtx *sc, double **scores)
{
    const DepGraph *dg = sc_groups(sc);
    MaskPoints *points = xcalloc((size_t)dg->n_groups + 1, sizeof *points);
    NameList others = {0}, no_context = {0};
    for (int gi = 0; gi < dg->n_groups; gi++) {
        const Group *grp = &dg->groups[gi];
        MaskPoints *pt = &points[gi];
        if (!scores[gi])
            continue;
        if (grp->kind != GROUP_HEADS) {
            pt->taylor = true;
            names_add(&others, grp->name);
            continue;
        }
        if ((pt->at[0] = attention_context(sc_graph(sc), grp))) {
            pt->n = 1;
        } else {
            pt->n = group_producer_outputs(sc_graph(sc), grp, pt->at, 1);
            pt->taylor = pt->n == 0;
            names_add(&no_context, grp->name);
        }
    }
    names_note(sc, &others, "not attention heads", "scored with taylor");
    names_note(sc, &no_context, "no Softmax-fed MatMul", "masked at the first projection's output");
    int rc = run_mask_pass(sc, scores, points);
    free(points);
    return rc;
}

const Criterion crit_taylor = {"taylor", "|sum of w * dL/dw| over each unit's parameters, summed over calibration batches",
                               true, score_taylor, NULL, NULL, false};
const Criterion crit_fisher = {"fisher", "squared gradient of a unit mask at the producer outputs, summed over batches",
                               true, score_fisher, NULL, NULL, false};
const Criterion crit_head = {"head", "|gradient| of a head mask on the attention output (taylor for other groups)", true,
                             score_head, NULL, NULL, false};
