/* Importance criteria: one interface for builtins and plugins. A
 * criterion scores every unit of a group (higher = more important); the
 * data-driven ones see calibration batches through forward (and backward)
 * passes. Builtins register through the same table as .so plugins
 * (plugins/shears_plugin.h).
 *
 * Builtins, with their exact formulas in the file headers:
 *   data-free (criteria/magnitude.c):  l1, l2, fpgm, bn, random
 *   gradients (criteria/gradient.c):   taylor, fisher, head
 *   activations (criteria/activation.c): act, apoz, wanda
 *   whole blocks (criteria/block.c):  influence, loss
 * Block criteria score only GROUP_BLOCK groups; every other criterion
 * scores every other group. */
#ifndef SH_IMPORTANCE_H
#define SH_IMPORTANCE_H

#include "data.h"
#include "depgraph.h"
#include "graph.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum { REDUCE_MEAN, REDUCE_SUM, REDUCE_MAX } ScoreReduce;
typedef enum { NORM_NONE, NORM_MEAN, NORM_MAX, NORM_LAMP } ScoreNorm;

typedef struct {
    ScoreReduce reduce;   /* how a unit's slices over several tensors combine */
    ScoreNorm norm;       /* per-group normalization of the scores */
    int batches;          /* calibration batches for data-driven criteria */
    int64_t batch;        /* rows per calibration batch */
    uint64_t seed;        /* random criterion, calibration sampling */
    const DataSubset *calib; /* calibration data (training split), NULL for data-free */
    int threads;          /* > 1: calibration batches run on this many threads */
    /* Optional hooks (ctx = hook_ctx), all called on the calling thread.
     * note receives one line per remark a criterion makes (a group scored
     * by a fallback, a missing ReLU), without a newline; progress the
     * fraction of calibration batches done; cancel is polled between
     * batches (scoring then fails with SH_E_CANCELLED). */
    void (*note)(void *ctx, const char *text);
    void (*progress)(void *ctx, double fraction);
    void *hook_ctx;
    volatile sig_atomic_t *cancel;
} ScoreOptions;

/* reduce mean, norm none, 8 batches of 64, seed 1, 1 thread, no
 * calibration data. */
ScoreOptions score_options_default(void);
/* "mean" <-> REDUCE_MEAN, ...; parse returns 0, or SH_E_ARG naming the word. */
const char *score_reduce_name(ScoreReduce r);
const char *score_norm_name(ScoreNorm n);
int score_reduce_parse(const char *s, ScoreReduce *out);
int score_norm_parse(const char *s, ScoreNorm *out);

/* What a criterion sees. */
typedef struct ScoreCtx ScoreCtx;

typedef struct {
    const char *name;         /* "l1", "taylor", ... */
    const char *summary;
    bool needs_data;
    /* Fills scores[g][u] for every group g of dg that is not blocked
     * (scores[g] is preallocated with dg->groups[g].n_units zeros; NULL
     * for blocked groups). Higher = more important; finite. */
    int (*score)(const ScoreCtx *sc, double **scores);
    const void *user;         /* the criterion's own data (a plugin's info); NULL for builtins */
    const char *origin;       /* NULL for builtins, the .so path for plugins */
    bool blocks;              /* scores only whole-block groups (GROUP_BLOCK) */
} Criterion;

/* Registered criteria (builtins first, then loaded plugins). */
int criterion_count(void);
const Criterion *criterion_at(int i);
const Criterion *criterion_find(const char *name);
/* Adds a copy of c (plugins); the name must be new and its strings must
 * outlive the program (a plugin stays loaded). Register from the main
 * thread, not while a score runs. */
int criterion_register(const Criterion *c);

/* Scores every group of dg with criterion c. *out is an array of
 * dg->n_groups score arrays, NULL for blocked groups and for the groups
 * the criterion does not score (GROUP_BLOCK groups unless c->blocks, the
 * others if it does); free with scores_free. */
int importance_score(const Graph *g, const DepGraph *dg, const Criterion *c, const ScoreOptions *opt,
                     double ***out);
void scores_free(double **scores, int n_groups);

/* Normalizes n scores in place: NORM_MEAN divides by their mean, NORM_MAX
 * by their max (both skipped when that is 0), NORM_LAMP replaces s_i, in
 * ascending order s_1 <= ... <= s_n (ties by unit index), by
 * s_i / sum_{j>=i} s_j (Lee et al. 2021; 0 when the sum is 0). */
void scores_normalize(double *s, int n, ScoreNorm norm);

/* ---- for criteria ---- */
const Graph *sc_graph(const ScoreCtx *sc);
const DepGraph *sc_groups(const ScoreCtx *sc);
const ScoreOptions *sc_options(const ScoreCtx *sc);
const Criterion *sc_criterion(const ScoreCtx *sc);
/* True if value v, a parameter member of some group, is a trainable float
 * initializer (graph_value_trainable, cached): magnitude criteria read
 * these, not BatchNorm running statistics. False for other values. */
bool sc_trainable(const ScoreCtx *sc, int v);
/* Passes one remark to ScoreOptions.note (printf format). */
void sc_note(const ScoreCtx *sc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
