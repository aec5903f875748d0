/* Sensitivity sweeps: for each group and each ratio, remove that fraction
 * of the group's lowest-scoring units and measure accuracy and mean loss
 * on validation batches, with no fine-tuning. The curves say which groups
 * can lose many units and which cannot, and a budget picks per-group
 * ratios from them.
 *
 * Speed. For an exact group, removing units equals zeroing their channels
 * wherever they flow (what surgery_verify checks), so every validation
 * batch runs once through a keep_all plan and each (group, ratio) point
 * re-runs only the nodes from the group's first producer on
 * (exec_rerun_from), with the cut channels zeroed after each node. Points
 * run in descending order of that first node, so every value a rerun does
 * not recompute is still the unpruned one. Approximate groups (LayerNorm
 * statistics over the channels) are pruned for real: surgery on a copy,
 * then the pruned copy runs every batch. Batches are shared among
 * threads (sh_run_parallel), each with its own plan; results are summed
 * in batch order, so the numbers do not depend on the thread count. */
#ifndef SH_SENSITIVITY_H
#define SH_SENSITIVITY_H

#include "data.h"
#include "depgraph.h"
#include "graph.h"
#include "plan.h"

#include <cJSON.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#define SENS_MAX_RATIOS 64

typedef struct {
    double ratio;     /* as asked */
    int removed;      /* units removed: round(ratio * units), at most units - 1 */
    double accuracy;  /* top-1, in [0, 1] */
    double loss;      /* mean cross-entropy */
    int64_t macs;     /* MACs per sample of the model with only this group pruned */
} SensPoint;

typedef struct {
    char *group;      /* group name (depgraph_find) */
    int group_id;
    GroupKind kind;
    int n_units;
    bool surgery;     /* approximate group: measured on a pruned copy, not by zeroing */
    int first_node;   /* zeroing path: reruns started at this node */
    int *order;       /* units by ascending score: a point removes order[0 .. removed) */
    SensPoint *points; /* one per ratio */
} SensCurve;

typedef struct Sensitivity {
    uint64_t model_hash;  /* graph_content_hash of the model measured */
    char *criterion;      /* whose scores ordered the units */
    char *data;           /* what was measured on ("val", "test") */
    double *ratios;
    int n_ratios;
    SensCurve *curves;
    int n_curves;
    double base_accuracy, base_loss;
    int64_t base_macs;
    int64_t samples;      /* validation samples per point */
    int64_t batch;        /* rows per batch */
    int threads;
    double seconds;       /* wall time of the sweep */
    int full_runs;        /* full forward passes (one per batch) */
    int reruns;           /* partial passes of zeroing points */
    int surgery_points;   /* points measured on pruned copies */
} Sensitivity;

typedef struct {
    const double *ratios; /* ascending, each in (0, 1) */
    int n_ratios;
    const int *groups;    /* group ids; NULL: every group that is not blocked */
    int n_groups;
    int64_t batches;      /* validation batches of batch rows (fewer if the set is smaller) */
    int64_t batch;
    int threads;          /* workers, each with its own plan and one BLAS thread */
    const char *criterion; /* recorded in the result */
    const char *data;      /* recorded in the result */
    /* Optional, called on the calling thread as work completes: progress
     * (done of total units of work), and partial results: the curves
     * measured so far (zeroing curves over the batches finished, surgery
     * curves once all their points are in), borrowed for the call. */
    void (*progress)(void *ctx, int done, int total);
    void (*partial)(void *ctx, const Sensitivity *so_far);
    void *progress_ctx;
    volatile sig_atomic_t *cancel; /* checked between points; SH_E_CANCELLED */
} SensOptions;

/* 0.1, 0.2, ..., 0.9 */
extern const double sens_default_ratios[9];

/* Parses "0.1,0.25,0.5" or an arithmetic run "0.1,0.2,...,0.9" into at
 * most cap ascending ratios in (0, 1); fails naming the argument `ratios`
 * and the bad word. */
int sens_parse_ratios(const char *s, double *out, int cap, int *n);

/* Sweeps g (prepared; dg its groups) over set: scores has one array per
 * group of dg (NULL for blocked ones); higher = more important. Fails
 * naming the group if a listed group is blocked or has no scores. *out
 * (free with sensitivity_free) holds one curve per group swept. */
int sensitivity_run(const Graph *g, const DepGraph *dg, double *const *scores, const DataSubset *set,
                    const SensOptions *opt, Sensitivity **out);
void sensitivity_free(Sensitivity *s); /* NULL-safe */

/* The results as JSON: {"criterion", "data", "samples", "model_hash",
 * "baseline": {"accuracy", "loss", "macs"}, "ratios": [...], "seconds",
 * "groups": [{"group", "id", "kind", "units", "path": "zeroing"|"surgery",
 * "points": [{"ratio", "removed", "accuracy", "loss", "macs"}]}]}. */
cJSON *sensitivity_to_json(const Sensitivity *s);
/* Atomic writes (core/fileio.h); refuse an existing file unless overwrite.
 * CSV: a header, a "(baseline)" row at ratio 0, then one row per group and
 * ratio: group,id,kind,path,units,ratio,removed,accuracy,loss,macs. */
int sensitivity_write_json(const Sensitivity *s, const char *path, bool overwrite);
int sensitivity_write_csv(const Sensitivity *s, const char *path, bool overwrite);

/* ---- budgets ---- */

typedef enum { SENS_ACCURACY, SENS_LOSS } SensMetric;

/* "acc:0.5" (accuracy may drop by at most 0.5 percentage points) or
 * "loss:0.05" (mean loss may rise by at most 0.05); fails naming `budget`. */
int sens_parse_budget(const char *s, SensMetric *metric, double *limit);

/* For every curve, the largest ratio whose measured drop from the baseline
 * (accuracy in percentage points, or loss increase) is at most limit: the
 * curve's point index, or -1 when no ratio qualifies. Curves are read as
 * measured, so a noisy curve may qualify at a ratio above one that does
 * not. chosen has s->n_curves entries. */
void sensitivity_choose(const Sensitivity *s, SensMetric metric, double limit, int *chosen);

/* Replaces p's marks with the chosen points (local scope): for curve i,
 * units order[0 .. points[chosen[i]].removed) of its group. Each drop was
 * measured with that group pruned alone: the drops add up, and the
 * combined drop can exceed the budget. Fails if dg does not have the
 * curves' groups (another model). */
int sensitivity_mark(const Sensitivity *s, const DepGraph *dg, const int *chosen, Plan *p);

/* ---- the curves of a session ----
 * A small cache of finished sweeps keyed by model content hash and
 * criterion (the workspace has no field for them yet), so `prune budget=`
 * and the TUI's plot find the curves of the current model. Main thread
 * only. */

/* Takes ownership; replaces an earlier sweep of the same model and
 * criterion. */
void sensitivity_remember(Sensitivity *s);
/* The latest sweep of the model with the given hash (and criterion, if
 * not NULL), or NULL. Borrowed: valid until the next remember/forget. */
const Sensitivity *sensitivity_recall(uint64_t model_hash, const char *criterion);
void sensitivity_forget_all(void);

#endif
