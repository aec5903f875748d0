/* Block criteria: they score the units of whole-block groups
 * (GROUP_BLOCK: residual blocks, transformer layers) and nothing else.
 *
 *   influence: score(u) = mean over calibration samples of
 *              1 - cos(x_in, x_out), where x_in is the block's input (the
 *              skip input of its first residual Add) and x_out its output
 *              (the last Add's output), each flattened per sample. A block
 *              that barely turns its input is nearly identity already
 *              (Men et al. 2024, "ShortGPT": Block Influence).
 *   loss:      score(u) = L(model with block u bypassed) - L(model), the
 *              exact increase of the mean cross-entropy on the calibration
 *              samples when the block becomes identity (each block
 *              measured alone, through real surgery). */
#include "criteria.h"

#include "core/error.h"
#include "core/evaluate.h"
#include "core/plan.h"
#include "core/surgery.h"
#include "core/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The values a block unit reads and writes. */
static void block_ends(const Graph *g, const Group *grp, int u, int *in, int *out)
{
    const Node *first = &g->nodes[grp->block_adds[grp->block_start[u]]];
    const Node *last = &g->nodes[grp->block_adds[grp->block_start[u + 1] - 1]];
    *in = first->in[residual_skip_input(g, (int)(first - g->nodes))];
    *out = last->out[0];
}

/* ---- influence ---- */

/* Sum over the batch's rows of 1 - cos(row of a, row of b). */
static double sum_one_minus_cos(const Tensor *a, const Tensor *b)
{
    int64_t rows = a->shape.rank > 0 ? a->shape.d[0] : 1;
    int64_t n = rows > 0 ? shape_numel(&a->shape) / rows : 0;
    if (n <= 0 || shape_numel(&b->shape) != rows * n)
        return 0;
    double total = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *x = tensor_f32(a) + r * n, *y = tensor_f32(b) + r * n;
        double xy = 0, xx = 0, yy = 0;
        for (int64_t i = 0; i < n; i++) {
            xy += (double)x[i] * y[i];
            xx += (double)x[i] * x[i];
            yy += (double)y[i] * y[i];
        }
        double denom = sqrt(xx) * sqrt(yy);
        total += denom > 0 ? 1 - xy / denom : (xx == yy ? 0 : 1);
    }
    return total;
}

static int influence_batch(void *ctx, const Calib *cb)
{
    const ScoreCtx *sc = ctx;
    const Graph *g = sc_graph(sc);
    const DepGraph *dg = sc_groups(sc);
    double **acc = calib_acc(cb);
    double samples = (double)calib_batches(cb) * (double)calib_rows(cb);
    for (int gi = 0; gi < dg->n_groups; gi++) {
        const Group *grp = &dg->groups[gi];
        for (int u = 0; acc[gi] && u < grp->n_units; u++) {
            int in, out;
            block_ends(g, grp, u, &in, &out);
            acc[gi][u] += sum_one_minus_cos(calib_value(cb, in), calib_value(cb, out)) / samples;
        }
    }
    return 0;
}

static int score_influence(const ScoreCtx *sc, double **scores)
{
    return calib_run(sc, false, sc_options(sc)->threads, influence_batch, (void *)sc, scores);
}

/* ---- loss ---- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* batches x batch samples of the calibration set, chosen by the seed
 * (indices ascending, as subsets keep them). */
static void calib_sample(const ScoreOptions *opt, DataSubset *out)
{
    const DataSubset *set = opt->calib;
    int64_t want = (int64_t)opt->batches * opt->batch, n = set->n;
    int64_t *idx = xmalloc(sizeof *idx * (size_t)(n + 1));
    memcpy(idx, set->idx, sizeof *idx * (size_t)n);
    Xoshiro r;
    xoshiro_seed(&r, opt->seed);
    xoshiro_shuffle(&r, idx, n);
    out->ds = set->ds;
    out->n = want < n ? want : n;
    out->idx = idx;
    qsort(idx, (size_t)out->n, sizeof *idx, cmp_i64);
}

static int bypassed_loss(const Graph *g, const DepGraph *dg, const Group *grp, int u, const DataSubset *set,
                         int64_t batch, double *loss)
{
    Plan p;
    plan_init(&p, 0);
    Graph *pruned = NULL;
    SurgeryStats st;
    EvalResult r;
    int rc = plan_mark(&p, grp, u, true);
    if (rc == 0)
        rc = surgery_apply(g, dg, &p, &pruned, &st);
    if (rc == 0)
        rc = evaluate(pruned, set, batch, &r);
    plan_done(&p);
    graph_free(pruned);
    if (rc == 0)
        *loss = r.loss;
    return rc;
}

static int score_loss(const ScoreCtx *sc, double **scores)
{
    const Graph *g = sc_graph(sc);
    const DepGraph *dg = sc_groups(sc);
    const ScoreOptions *opt = sc_options(sc);
    int rc = eval_check_compat(g, opt->calib->ds);
    if (rc < 0)
        return rc;
    DataSubset set;
    calib_sample(opt, &set);
    EvalResult base;
    int total = 0, done = 0;
    for (int gi = 0; gi < dg->n_groups; gi++)
        total += scores[gi] ? dg->groups[gi].n_units : 0;
    rc = evaluate(g, &set, opt->batch, &base);
    for (int gi = 0; gi < dg->n_groups && rc == 0; gi++)
        for (int u = 0; scores[gi] && u < dg->groups[gi].n_units && rc == 0; u++) {
            if (opt->cancel && *opt->cancel)
                rc = sh_fail(SH_E_CANCELLED, "scoring cancelled");
            double loss = 0;
            if (rc == 0 && (rc = bypassed_loss(g, dg, &dg->groups[gi], u, &set, opt->batch, &loss)) == 0)
                scores[gi][u] = loss - base.loss;
            if (opt->progress)
                opt->progress(opt->hook_ctx, (double)++done / total);
        }
    data_subset_done(&set);
    return rc;
}

const Criterion crit_influence = {"influence", "whole blocks: 1 - cos(block input, block output) (block influence)",
                                  true, score_influence, NULL, NULL, true};
const Criterion crit_blockloss = {"loss", "whole blocks: loss increase when the block is bypassed (exact)", true,
                                  score_loss, NULL, NULL, true};
