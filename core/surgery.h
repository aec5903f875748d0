/* Surgery: removes a plan's units from a graph, producing a smaller dense
 * graph — parameters sliced, shape constants (Reshape/Expand targets,
 * Split sizes) and grouped-conv `group` attributes updated, shapes
 * re-inferred. And verification: the pruned model must equal the
 * original with the removed channels zeroed wherever they flow. */
#ifndef SH_SURGERY_H
#define SH_SURGERY_H

#include "depgraph.h"
#include "graph.h"
#include "plan.h"

#include <stdint.h>

/* What a plan removes from one tensor axis. */
typedef struct {
    int value, axis;  /* axis -1: the whole tensor (a removed block's branch output) */
    int64_t size, removed;
    bool param;
    bool *mask;       /* size flags: true = removed */
    int bypass;       /* a removed block: this residual Add becomes its skip input; else -1 */
} Cut;

typedef struct {
    Cut *cuts;
    int n;
} CutList;

/* Every (tensor, axis) the plan cuts from g, merged over groups, and the
 * residual blocks it bypasses. */
int plan_cuts(const Graph *g, const Plan *p, const DepGraph *dg, CutList *out);
void cut_list_done(CutList *l);

typedef struct {
    int64_t params_before, params_after;
    int64_t macs_before, macs_after;
    int units, groups;
} SurgeryStats;

/* Bias compensation: the mean of every channel of the activations that
 * consumers (Conv, Gemm, MatMul weights) read, measured on calibration
 * data. Where a removed channel's activation is not zero on average (BN
 * beta through ReLU, say), its mean contribution W[:, c] * mean_c is
 * folded into the consumer's bias. */
typedef struct {
    int value, axis;
    int64_t size;
    double *mean;
} ChannelMean;

typedef struct {
    ChannelMean *m;
    int n;
    int consumers; /* filled by surgery_apply: consumers compensated */
} ChannelMeans;

/* Means of the inputs of every consumer the plan cuts into, over the
 * given input batches (each one tensor per graph input). */
int channel_means(const Graph *g, const CutList *cuts, Tensor **batches, int n_batches, ChannelMeans *out);
void channel_means_done(ChannelMeans *m);

/* Applies plan p (checked against dg, the groups of g) to a copy of g;
 * *out is the pruned graph (g is unchanged). With comp (may be NULL), the
 * removed channels' mean contributions go into the consumers' biases. */
int surgery_apply(const Graph *g, const DepGraph *dg, const Plan *p, Graph **out, SurgeryStats *st);
int surgery_apply_compensated(const Graph *g, const DepGraph *dg, const Plan *p, ChannelMeans *comp,
                              Graph **out, SurgeryStats *st);

/* Runs pruned and original (with the cut activations zeroed after every
 * node) on probe (one input per graph input) and returns the max abs
 * difference of the outputs. */
int surgery_verify(const Graph *original, const Graph *pruned, const CutList *cuts, Tensor *const *probe,
                   double *max_diff);

#endif
