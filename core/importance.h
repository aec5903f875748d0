/* Importance criteria: one interface for builtins and plugins. A
 * criterion scores every unit of a group (higher = more important); the
 * data-driven ones see calibration batches through forward (and backward)
 * passes. Builtins register through the same table as .so plugins
 * (plugins/shears_plugin.h). */
#ifndef SH_IMPORTANCE_H
#define SH_IMPORTANCE_H

#include "data.h"
#include "depgraph.h"
#include "graph.h"

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
} ScoreOptions;

/* What a criterion sees. */
typedef struct ScoreCtx ScoreCtx;

typedef struct {
    const char *name;         /* "l1", "taylor", ... */
    const char *summary;
    bool needs_data;
    /* Fills scores[g][u] for every group g of dg that is not blocked
     * (scores[g] is preallocated with dg->groups[g].n_units entries). */
    int (*score)(const ScoreCtx *sc, double **scores);
} Criterion;

/* Registered criteria (builtins first, then loaded plugins). */
int criterion_count(void);
const Criterion *criterion_at(int i);
const Criterion *criterion_find(const char *name);
/* Adds a criterion (plugins); the name must be new. */
int criterion_register(const Criterion *c);

/* Scores every group of dg with criterion c. *out is an array of
 * dg->n_groups score arrays (NULL for blocked groups); free with
 * scores_free. */
int importance_score(const Graph *g, const DepGraph *dg, const Criterion *c, const ScoreOptions *opt,
                     double ***out);
void scores_free(double **scores, int n_groups);

/* ---- for criteria ---- */
const Graph *sc_graph(const ScoreCtx *sc);
const DepGraph *sc_groups(const ScoreCtx *sc);
const ScoreOptions *sc_options(const ScoreCtx *sc);

#endif
