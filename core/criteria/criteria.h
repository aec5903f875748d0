/* The builtin criteria and what they share: walking a unit's slices of a
 * tensor, per-unit sums over activations, the structure of a group (its
 * producers' outputs, the ReLU after them) and calibration passes over
 * training batches. Private to core/importance.c, core/criteria/ and
 * core/plugin.c. */
#ifndef SH_CRITERIA_H
#define SH_CRITERIA_H

#include "core/importance.h"

#include <stdbool.h>
#include <stdint.h>

/* ---- the builtins (registered in this order) ---- */

extern const Criterion crit_l1, crit_l2, crit_fpgm, crit_bn, crit_random; /* magnitude.c */
extern const Criterion crit_taylor, crit_fisher, crit_head;               /* gradient.c */
extern const Criterion crit_act, crit_apoz, crit_wanda;                   /* activation.c */
extern const Criterion crit_influence, crit_blockloss;                    /* block.c */

/* ---- slices ---- */

/* A tensor seen around one axis: element (o, c, r) lies at
 * (o * size + c) * inner + r. */
typedef struct {
    int64_t outer, size, inner;
} AxisLayout;

AxisLayout axis_layout(const Shape *s, int axis);

/* Unit u's channel indices of member m: m->idx[unit_begin .. unit_end). */
static inline int64_t unit_begin(const GroupMember *m, int u) { return m->start[u]; }
static inline int64_t unit_end(const GroupMember *m, int u) { return m->start[u + 1]; }

/* The tensor of a trainable float parameter member (borrowed from the
 * scored graph), NULL for activations, running statistics, shape
 * constants. */
const Tensor *member_weight(const ScoreCtx *sc, const GroupMember *m);

typedef struct {
    double sum_abs, sum_sq, max_abs;
    int64_t count;
} SliceStats;

/* Statistics of unit u's slice of t (member m's axis). */
void slice_stats(const Tensor *t, const GroupMember *m, int u, SliceStats *st);
/* Sum over unit u's slice of a[e] * b[e], for a and b laid out as s. */
double slice_dot(const float *a, const float *b, const Shape *s, const GroupMember *m, int u);
/* Copies unit u's slice of t into out (in (o, c, r) order); returns the count. */
int64_t slice_gather(const Tensor *t, const GroupMember *m, int u, float *out);
/* Elements in unit u's slice of a tensor shaped s. */
int64_t slice_count(const Shape *s, const GroupMember *m, int u);

/* ---- activations ---- */

typedef enum {
    ACT_ABS,    /* |a| */
    ACT_NONPOS, /* 1 where a <= 0 (a zero after a ReLU) */
    ACT_A_DA,   /* a * dL/da: a mask's gradient */
} ActSum;

/* Adds to acc[u], for every unit u, the sum of kind over the unit's
 * channels of activation member m and every other position. da is only
 * read for ACT_A_DA (NULL: no gradient, adds nothing). */
void act_unit_sums(const Tensor *a, const Tensor *da, const GroupMember *m, int n_units, ActSum kind,
                   double *acc);

/* ---- group structure ---- */

/* The activation member of grp on value v, or NULL. */
const GroupMember *group_activation(const Group *grp, int v);
/* Activation members that are outputs of grp's producers (at most cap);
 * returns the count. */
int group_producer_outputs(const Graph *g, const Group *grp, const GroupMember **out, int cap);
/* Where act and apoz look at a group: the output of the Relu that follows
 * the first producer through single-consumer nodes whose output stays in
 * the group (BatchNormalization, a bias Add, ...), *relu = true; without
 * one, the first producer's output (else the first activation member),
 * *relu = false. NULL if the group has no activation member. */
const GroupMember *group_act_point(const Graph *g, const Group *grp, bool *relu);

/* ---- remarks ---- */

/* Names of the groups a remark is about ("conv1, conv5, ... and 3 more"). */
typedef struct {
    char text[400];
    int n, shown;
} NameList;

void names_add(NameList *l, const char *name);
/* Sends "<criterion>: <what> in N group(s), <then>: names" if any were added. */
void names_note(const ScoreCtx *sc, const NameList *l, const char *what, const char *then);

/* ---- magnitude (shared with the fallbacks) ---- */

/* l1 (p = 1) or l2 (p = 2) group magnitude of every unit of grp into out;
 * returns the number of parameter members used. See magnitude.c. */
int magnitude_scores(const ScoreCtx *sc, const Group *grp, int p, double *out);

/* ---- activation statistics (shared with plugins) ---- */

/* The act criterion's scores (mean |a| per unit at group_act_point) into
 * scores (preallocated per unblocked group); notes: send its remarks. */
int act_mean_abs(const ScoreCtx *sc, double **scores, bool notes);

/* ---- calibration passes ---- */

typedef struct Calib Calib;
/* Called after each batch, on the worker thread that ran it; a negative
 * return stops the pass with that code. It may only write its worker's
 * accumulators (calib_acc) and, for worker 0, state no other worker reads. */
typedef int (*CalibFn)(void *ctx, const Calib *cb);

/* Runs the model over the calibration batches of sc's options: the first
 * batches * batch samples of a seeded shuffle of the calibration set, in
 * evaluation mode (BatchNorm running statistics, Dropout off) keeping
 * every activation. With gradients, the mean cross-entropy of each batch
 * is back-propagated (through a private copy of the model whose
 * parameters are packed). threads > 1 runs the batches on that many
 * workers (worker w takes batches w, w + threads, ...), each with its own
 * plan and accumulators; at the end every worker's accumulators are added
 * into scores, in worker order, so the result does not depend on timing.
 * Fails naming the data and model shapes when they do not fit. */
int calib_run(const ScoreCtx *sc, bool gradients, int threads, CalibFn fn, void *ctx, double **scores);
/* Value v after the current batch (borrowed). */
const Tensor *calib_value(const Calib *cb, int v);
/* dL/dv after the current batch, NULL if v carries no gradient. */
const Tensor *calib_grad(const Calib *cb, int v);
/* dL/dw of trainable parameter v, shaped like it; NULL otherwise. */
const float *calib_param_grad(const Calib *cb, int v);
/* This worker's accumulators: [group][unit], NULL for blocked groups. */
double **calib_acc(const Calib *cb);
/* Batches the whole pass runs, the current one (0-based), this worker,
 * rows per batch. */
int calib_batches(const Calib *cb);
int calib_index(const Calib *cb);
int calib_worker(const Calib *cb);
int64_t calib_rows(const Calib *cb);

#endif
