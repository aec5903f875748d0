/* Activation criteria over calibration batches (evaluation-mode forward,
 * no gradients; see calib_run).
 *
 *   act:   score(u) = mean |a| over the calibration rows, positions and the
 *          unit's channels of the activation at group_act_point: after the
 *          ReLU that follows the first producer (Conv -> BN -> ReLU reads
 *          the ReLU's output, what the next layer sees), else the first
 *          producer's output itself (said in a remark).
 *   apoz:  score(u) = 1 - APoZ(u), the fraction of those values that are
 *          not zero (Hu et al. 2016), so that higher = more important.
 *          Without a ReLU a value counts as zero when a <= 0 (what a ReLU
 *          would zero).
 *   wanda: score(u) = sum over the unit's slices of every Conv, ConvTranspose,
 *          Gemm and MatMul weight of |w_e| * ||X_j(e)||_2 (Sun et al. 2023),
 *          where X is the layer's input, j(e) the input channel that weight
 *          e multiplies and ||X_j|| the L2 norm of that channel over every
 *          calibration row and position. For a consumer-side slice
 *          (W[:,c,...]) j is the unit's own channel, so the term is
 *          ||X_c|| * sum |W[:,c]|; for a producer-side slice (W[o,:,...]) it
 *          weighs each input channel of the layer by its own norm
 *          (grouped convolutions map o to its group's channels). Biases and
 *          normalization scales multiply no input feature and are left out;
 *          a group with no such weight is scored with l1 (a remark). */
#include "criteria.h"

#include "core/error.h"
#include "core/graph.h"
#include "core/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- act and apoz ---- */

typedef struct {
    const ScoreCtx *sc;
    const GroupMember **at; /* per group, NULL: nothing to read */
    double **counts;        /* per group and unit: values per batch (worker 0 writes them) */
    int batches;
    ActSum kind;
} ActPass;

static int act_batch(void *ctx, const Calib *cb)
{
    ActPass *ap = ctx;
    const DepGraph *dg = sc_groups(ap->sc);
    double **acc = calib_acc(cb);
    for (int gi = 0; gi < dg->n_groups; gi++) {
        const GroupMember *m = ap->at[gi];
        if (!m || !acc[gi])
            continue;
        const Tensor *a = calib_value(cb, m->value);
        act_unit_sums(a, NULL, m, dg->groups[gi].n_units, ap->kind, acc[gi]);
        for (int u = 0; calib_worker(cb) == 0 && calib_index(cb) == 0 && u < dg->groups[gi].n_units; u++)
            ap->counts[gi][u] = (double)slice_count(&a->shape, m, u); /* the same for every batch */
    }
    if (calib_worker(cb) == 0 && calib_index(cb) == 0)
        ap->batches = calib_batches(cb);
    return 0;
}

/* Mean |a| (ACT_ABS) or the fraction of zeros (ACT_NONPOS) per unit. */
static int act_fractions(const ScoreCtx *sc, double **scores, ActSum kind, bool notes)
{
    const DepGraph *dg = sc_groups(sc);
    ActPass ap = {sc, xcalloc((size_t)dg->n_groups + 1, sizeof *ap.at),
                  xcalloc((size_t)dg->n_groups + 1, sizeof *ap.counts), 0, kind};
    NameList no_relu = {0}, none = {0};
    for (int gi = 0; gi < dg->n_groups; gi++) {
        if (!scores[gi])
            continue;
        bool relu;
        ap.at[gi] = group_act_point(sc_graph(sc), &dg->groups[gi], &relu);
        ap.counts[gi] = xcalloc((size_t)dg->groups[gi].n_units + 1, sizeof **ap.counts);
        if (!ap.at[gi])
            names_add(&none, dg->groups[gi].name);
        else if (!relu)
            names_add(&no_relu, dg->groups[gi].name);
    }
    if (notes) {
        names_note(sc, &no_relu, "no ReLU after the producer",
                   kind == ACT_NONPOS ? "values <= 0 counted as zeros at the producer's output"
                                      : "read at the producer's output");
        names_note(sc, &none, "no activation", "scored 0");
    }
    int rc = calib_run(sc, false, sc_options(sc)->threads, act_batch, &ap, scores);
    for (int gi = 0; gi < dg->n_groups; gi++) {
        for (int u = 0; rc == 0 && ap.at[gi] && u < dg->groups[gi].n_units; u++) {
            double n = ap.counts[gi][u] * ap.batches;
            scores[gi][u] = n > 0 ? scores[gi][u] / n : 0;
        }
        free(ap.counts[gi]);
    }
    free(ap.counts);
    free(ap.at);
    return rc;
}

int act_mean_abs(const ScoreCtx *sc, double **scores, bool notes)
{
    return act_fractions(sc, scores, ACT_ABS, notes);
}

static int score_act(const ScoreCtx *sc, double **scores) { return act_mean_abs(sc, scores, true); }

static int score_apoz(const ScoreCtx *sc, double **scores)
{
    int rc = act_fractions(sc, scores, ACT_NONPOS, true);
    const DepGraph *dg = sc_groups(sc);
    for (int gi = 0; rc == 0 && gi < dg->n_groups; gi++)
        for (int u = 0; scores[gi] && u < dg->groups[gi].n_units; u++)
            scores[gi][u] = 1 - scores[gi][u];
    return rc;
}

/* ---- wanda ---- */

/* How a weight meets its layer's input X: element e of W multiplies input
 * channel in_channel(e) of X (axis x_axis). */
typedef struct {
    const GroupMember *m;
    int x;               /* the layer's input value */
    int x_axis;          /* X's channel axis */
    int w_in_axis;       /* W's axis along input channels */
    int64_t out_per_group, in_per_group; /* grouped Conv: W[o, j] reads channel (o / out_per_group) * in_per_group + j */
} WandaTerm;

/* Fills t for weight input k of node n; false if that input multiplies no
 * input feature (a bias, a normalization scale) or the op is not known. */
static bool wanda_term(const Graph *g, const Node *n, int k, const Tensor *w, WandaTerm *t)
{
    int x = n->in[0];
    if (k != 1 || x < 0 || g->values[x].shape.rank < 2)
        return false;
    t->x = x;
    t->x_axis = 1;
    t->out_per_group = t->in_per_group = 0;
    if (!strcmp(n->op_type, "Conv") && w->shape.rank >= 3) {
        int64_t groups = node_attr_int(n, "group", 1);
        t->w_in_axis = 1;
        if (groups > 1 && w->shape.d[0] % groups == 0) {
            t->out_per_group = w->shape.d[0] / groups;
            t->in_per_group = w->shape.d[1];
        }
        return true;
    }
    if (!strcmp(n->op_type, "ConvTranspose") && w->shape.rank >= 3) {
        t->w_in_axis = 0;
        return true;
    }
    if (!strcmp(n->op_type, "Gemm") && w->shape.rank == 2 && node_attr_int(n, "transA", 0) == 0) {
        t->w_in_axis = node_attr_int(n, "transB", 0) ? 1 : 0;
        return true;
    }
    if (!strcmp(n->op_type, "MatMul") && w->shape.rank >= 2) {
        t->w_in_axis = w->shape.rank - 2;
        t->x_axis = g->values[x].shape.rank - 1;
        return true;
    }
    return false;
}

/* Every (weight member, reading node) of grp that wanda scores. */
static int wanda_terms(const ScoreCtx *sc, const Group *grp, WandaTerm *out, int cap)
{
    const Graph *g = sc_graph(sc);
    int n = 0;
    for (int mi = 0; mi < grp->n_members && n < cap; mi++) {
        const GroupMember *m = &grp->members[mi];
        const Tensor *w = member_weight(sc, m);
        for (int i = 0; w && i < g->n_nodes && n < cap; i++)
            for (int k = 0; k < g->nodes[i].n_in && n < cap; k++)
                if (g->nodes[i].in[k] == m->value && wanda_term(g, &g->nodes[i], k, w, &out[n])) {
                    out[n++].m = m;
                    break;
                }
    }
    return n;
}

#define MAX_TERMS 64

typedef struct {
    const Graph *g;
    bool *needed;     /* per value: an X whose channel norms are wanted */
    int *axis;        /* per value: its channel axis */
    double **sumsq;   /* per value: sum of squares per channel */
    int64_t *channels;
} NormPass;

static int norm_batch(void *ctx, const Calib *cb)
{
    NormPass *np = ctx;
    for (int v = 0; v < np->g->n_values; v++) {
        if (!np->needed[v])
            continue;
        const Tensor *x = calib_value(cb, v);
        AxisLayout L = axis_layout(&x->shape, np->axis[v]);
        if (!np->sumsq[v]) {
            np->channels[v] = L.size;
            np->sumsq[v] = xcalloc((size_t)L.size + 1, sizeof **np->sumsq);
        }
        for (int64_t o = 0; o < L.outer; o++)
            for (int64_t c = 0; c < L.size; c++) {
                const float *p = tensor_f32(x) + (o * L.size + c) * L.inner;
                double s = 0;
                for (int64_t r = 0; r < L.inner; r++)
                    s += (double)p[r] * p[r];
                np->sumsq[v][c] += s;
            }
    }
    return 0;
}

/* sum over unit u's slice of t's weight of |w_e| * norm[in_channel(e)]. */
static double wanda_unit(const Tensor *w, const WandaTerm *t, const double *norm, int64_t channels, int u)
{
    const GroupMember *m = t->m;
    AxisLayout L = axis_layout(&w->shape, m->axis);
    int64_t in_stride = shape_prod(&w->shape, t->w_in_axis + 1, w->shape.rank), in_size = w->shape.d[t->w_in_axis];
    int64_t out_stride = shape_prod(&w->shape, 1, w->shape.rank);
    double sum = 0;
    for (int64_t k = unit_begin(m, u); k < unit_end(m, u); k++)
        for (int64_t o = 0; o < L.outer; o++) {
            int64_t base = (o * L.size + m->idx[k]) * L.inner;
            for (int64_t r = 0; r < L.inner; r++) {
                int64_t e = base + r, j = e / in_stride % in_size;
                if (t->out_per_group)
                    j += e / out_stride / t->out_per_group * t->in_per_group;
                if (j < channels)
                    sum += fabsf(tensor_f32(w)[e]) * norm[j];
            }
        }
    return sum;
}

static int score_wanda(const ScoreCtx *sc, double **scores)
{
    const Graph *g = sc_graph(sc);
    const DepGraph *dg = sc_groups(sc);
    NormPass np = {g, xcalloc((size_t)g->n_values + 1, sizeof *np.needed),
                   xcalloc((size_t)g->n_values + 1, sizeof *np.axis),
                   xcalloc((size_t)g->n_values + 1, sizeof *np.sumsq),
                   xcalloc((size_t)g->n_values + 1, sizeof *np.channels)};
    WandaTerm *terms = xcalloc((size_t)dg->n_groups * MAX_TERMS + 1, sizeof *terms);
    int *n_terms = xcalloc((size_t)dg->n_groups + 1, sizeof *n_terms);
    NameList fallback = {0};
    for (int gi = 0; gi < dg->n_groups; gi++) {
        if (!scores[gi])
            continue;
        n_terms[gi] = wanda_terms(sc, &dg->groups[gi], terms + gi * MAX_TERMS, MAX_TERMS);
        for (int k = 0; k < n_terms[gi]; k++) {
            const WandaTerm *t = &terms[gi * MAX_TERMS + k];
            np.needed[t->x] = true;
            np.axis[t->x] = t->x_axis;
        }
        if (n_terms[gi] == 0) {
            magnitude_scores(sc, &dg->groups[gi], 1, scores[gi]);
            names_add(&fallback, dg->groups[gi].name);
        }
    }
    names_note(sc, &fallback, "no Conv/Gemm/MatMul weight", "scored with l1 instead");
    /* one worker: the norms are per input channel, not per unit */
    int rc = calib_run(sc, false, 1, norm_batch, &np, scores);
    for (int v = 0; rc == 0 && v < g->n_values; v++)
        for (int64_t c = 0; np.sumsq[v] && c < np.channels[v]; c++)
            np.sumsq[v][c] = sqrt(np.sumsq[v][c]); /* now the norms */
    for (int gi = 0; rc == 0 && gi < dg->n_groups; gi++)
        for (int k = 0; k < n_terms[gi]; k++) {
            const WandaTerm *t = &terms[gi * MAX_TERMS + k];
            const Tensor *w = member_weight(sc, t->m);
            if (!np.sumsq[t->x])
                continue;
            for (int u = 0; u < dg->groups[gi].n_units; u++)
                scores[gi][u] += wanda_unit(w, t, np.sumsq[t->x], np.channels[t->x], u);
        }
    for (int v = 0; v < g->n_values; v++)
        free(np.sumsq[v]);
    free(np.sumsq);
    free(np.channels);
    free(np.axis);
    free(np.needed);
    free(terms);
    free(n_terms);
    return rc;
}

const Criterion crit_act = {"act", "mean |activation| of the unit after the producer's ReLU (or at its output)", true,
                            score_act, NULL, NULL, false};
const Criterion crit_apoz = {"apoz", "1 - average percentage of zeros after the ReLU", true, score_apoz, NULL, NULL, false};
const Criterion crit_wanda = {"wanda", "|w| times the calibration norm of the input feature it multiplies (Wanda)",
                              true, score_wanda, NULL, NULL, false};
