/* Importance: the criterion registry (builtins, then plugins), the
 * ScoreCtx a criterion sees, and what every criterion shares after it
 * ran: the finite check and the per-group normalization. */
#include "importance.h"

#include "criteria/criteria.h"
#include "error.h"
#include "util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ScoreCtx {
    const Graph *g;
    const DepGraph *dg;
    const ScoreOptions *opt;
    const Criterion *crit;
    bool *trainable; /* per value */
};

/* ---- registry ---- */

static const Criterion *const builtins[] = {
    &crit_l1, &crit_l2, &crit_fpgm, &crit_bn, &crit_random, &crit_taylor,
    &crit_fisher, &crit_act, &crit_apoz, &crit_wanda, &crit_head, &crit_influence, &crit_blockloss,
};
#define N_BUILTINS ((int)(sizeof builtins / sizeof *builtins))

static Criterion **registered; /* plugins, heap copies */
static int n_registered;

int criterion_count(void) { return N_BUILTINS + n_registered; }

const Criterion *criterion_at(int i)
{
    if (i < 0 || i >= criterion_count())
        return NULL;
    return i < N_BUILTINS ? builtins[i] : registered[i - N_BUILTINS];
}

const Criterion *criterion_find(const char *name)
{
    for (int i = 0; i < criterion_count(); i++)
        if (strcmp(criterion_at(i)->name, name) == 0)
            return criterion_at(i);
    return NULL;
}

int criterion_register(const Criterion *c)
{
    if (!c->name || !c->name[0] || !c->score)
        return sh_fail(SH_E_ARG, "a criterion needs a name and a score function");
    if (criterion_find(c->name))
        return sh_fail(SH_E_ARG, "a criterion named '%s' already exists", c->name);
    Criterion *copy = xmalloc(sizeof *copy);
    *copy = *c;
    registered = xrealloc(registered, sizeof *registered * (size_t)(n_registered + 1));
    registered[n_registered++] = copy;
    return 0;
}

/* ---- options ---- */

ScoreOptions score_options_default(void)
{
    return (ScoreOptions){.reduce = REDUCE_MEAN, .norm = NORM_NONE, .batches = 8, .batch = 64, .seed = 1,
                          .threads = 1};
}

static const char *const reduce_names[] = {"mean", "sum", "max"};
static const char *const norm_names[] = {"none", "mean", "max", "lamp"};

const char *score_reduce_name(ScoreReduce r) { return reduce_names[r]; }
const char *score_norm_name(ScoreNorm n) { return norm_names[n]; }

int score_reduce_parse(const char *s, ScoreReduce *out)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(s, reduce_names[i]) == 0) {
            *out = (ScoreReduce)i;
            return 0;
        }
    return sh_fail(SH_E_ARG, "reduce must be mean, sum or max, not '%s'", s);
}

int score_norm_parse(const char *s, ScoreNorm *out)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, norm_names[i]) == 0) {
            *out = (ScoreNorm)i;
            return 0;
        }
    return sh_fail(SH_E_ARG, "norm must be none, mean, max or lamp, not '%s'", s);
}

/* ---- normalization ---- */

typedef struct {
    double s;
    int i;
} Ranked;

static int by_score_then_index(const void *a, const void *b)
{
    const Ranked *x = a, *y = b;
    if (x->s != y->s)
        return x->s < y->s ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* LAMP: in ascending order, each score over the sum of itself and every
 * larger one (a suffix sum, accumulated from the top). */
static void normalize_lamp(double *s, int n)
{
    Ranked *r = xmalloc(sizeof *r * (size_t)(n + 1));
    for (int i = 0; i < n; i++)
        r[i] = (Ranked){s[i], i};
    qsort(r, (size_t)n, sizeof *r, by_score_then_index);
    double suffix = 0;
    for (int k = n - 1; k >= 0; k--) {
        suffix += r[k].s;
        s[r[k].i] = suffix != 0 ? r[k].s / suffix : 0;
    }
    free(r);
}

void scores_normalize(double *s, int n, ScoreNorm norm)
{
    if (n <= 0 || norm == NORM_NONE)
        return;
    if (norm == NORM_LAMP) {
        normalize_lamp(s, n);
        return;
    }
    double d = norm == NORM_MAX ? s[0] : 0;
    for (int i = 0; i < n; i++)
        d = norm == NORM_MAX ? fmax(d, s[i]) : d + s[i] / n;
    if (d != 0)
        for (int i = 0; i < n; i++)
            s[i] /= d;
}

/* ---- scoring ---- */

void scores_free(double **scores, int n_groups)
{
    if (!scores)
        return;
    for (int i = 0; i < n_groups; i++)
        free(scores[i]);
    free(scores);
}

static int check_options(const Criterion *c, const ScoreOptions *opt)
{
    if (opt->batches < 1 || opt->batch < 1)
        return sh_fail(SH_E_ARG, "batches and batch must be at least 1 (got %d and %lld)", opt->batches,
                       (long long)opt->batch);
    if ((unsigned)opt->reduce > REDUCE_MAX || (unsigned)opt->norm > NORM_LAMP)
        return sh_fail(SH_E_ARG, "unknown reduce or norm option");
    if (c->needs_data && (!opt->calib || opt->calib->n == 0))
        return sh_fail(SH_E_STATE, "criterion '%s' needs calibration data from the training split "
                                   "(load it with: data fashion-mnist)", c->name);
    return 0;
}

static int check_finite(const DepGraph *dg, const Criterion *c, double **scores)
{
    for (int gi = 0; gi < dg->n_groups; gi++)
        for (int u = 0; scores[gi] && u < dg->groups[gi].n_units; u++)
            if (!isfinite(scores[gi][u]))
                return sh_fail(SH_E_NUMERIC, "criterion '%s' gave %g for unit %d of group '%s'", c->name,
                               scores[gi][u], u, dg->groups[gi].name);
    return 0;
}

int importance_score(const Graph *g, const DepGraph *dg, const Criterion *c, const ScoreOptions *opt,
                     double ***out)
{
    *out = NULL;
    int rc = check_options(c, opt);
    if (rc < 0)
        return rc;
    ScoreCtx sc = {.g = g, .dg = dg, .opt = opt, .crit = c};
    sc.trainable = xcalloc((size_t)g->n_values + 1, sizeof *sc.trainable);
    for (int gi = 0; gi < dg->n_groups; gi++) /* only members are ever asked about */
        for (int m = 0; m < dg->groups[gi].n_members; m++) {
            int v = dg->groups[gi].members[m].value;
            sc.trainable[v] = dg->groups[gi].members[m].param && graph_value_trainable(g, v);
        }
    double **scores = xcalloc((size_t)dg->n_groups + 1, sizeof *scores);
    int n_scored = 0;
    for (int gi = 0; gi < dg->n_groups; gi++)
        if (!dg->groups[gi].blocked && (dg->groups[gi].kind == GROUP_BLOCK) == c->blocks) {
            scores[gi] = xcalloc((size_t)dg->groups[gi].n_units + 1, sizeof **scores);
            n_scored++;
        }
    if (n_scored == 0) {
        free(scores);
        free(sc.trainable);
        return sh_fail(SH_E_STATE, "%s scores %s, and this model has none", c->name,
                       c->blocks ? "whole residual blocks" : "channel, neuron and head groups");
    }
    if ((rc = c->score(&sc, scores)) < 0 || (rc = check_finite(dg, c, scores)) < 0) {
        scores_free(scores, dg->n_groups);
        free(sc.trainable);
        return rc;
    }
    for (int gi = 0; gi < dg->n_groups; gi++)
        if (scores[gi])
            scores_normalize(scores[gi], dg->groups[gi].n_units, opt->norm);
    free(sc.trainable);
    *out = scores;
    return 0;
}

/* ---- for criteria ---- */

const Graph *sc_graph(const ScoreCtx *sc) { return sc->g; }
const DepGraph *sc_groups(const ScoreCtx *sc) { return sc->dg; }
const ScoreOptions *sc_options(const ScoreCtx *sc) { return sc->opt; }
const Criterion *sc_criterion(const ScoreCtx *sc) { return sc->crit; }
bool sc_trainable(const ScoreCtx *sc, int v) { return v >= 0 && v < sc->g->n_values && sc->trainable[v]; }

void sc_note(const ScoreCtx *sc, const char *fmt, ...)
{
    if (!sc->opt->note)
        return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    sc->opt->note(sc->opt->hook_ctx, buf);
}
