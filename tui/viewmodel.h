/* What the workbench draws: a snapshot of the Workspace (layers, groups,
 * units, marks, scores, totals) copied on the UI thread when no job runs,
 * so panes never read the Workspace while the job thread owns it; plus
 * the measurements the session made (accuracy and latency per model,
 * sensitivity curves per group), gathered from command results. */
#ifndef SH_TUI_VIEWMODEL_H
#define SH_TUI_VIEWMODEL_H

#include "core/depgraph.h"
#include "core/workspace.h"

#include <cJSON.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct {
    char *name, *op, *shape;
    int64_t params, macs;
    double macs_pct;
    int group;                 /* the group the layer produces (or scales), -1 */
    int64_t channels, orig_channels; /* output channels now / in the original (-1 unknown) */
} VmLayer;

typedef struct {
    int id;
    char *name;
    GroupKind kind;
    int n_units;
    int64_t unit_width;
    bool blocked, approximate;
    char *reason;              /* why blocked / approximate */
    bool *marked;              /* n_units flags */
    int n_marked;
    double *scores;            /* n_units, or NULL */
    int layer;                 /* row of its first producer, -1 */
} VmGroup;

/* One sensitivity curve: accuracy (0..1) at each ratio. */
typedef struct {
    uint64_t model;
    char *group;
    double *ratio, *accuracy;
    int n;
    double base;               /* accuracy of the unpruned model */
} VmCurve;

/* Accuracy / latency measured on one model (by content hash). */
typedef struct {
    uint64_t model;
    double accuracy;           /* < 0: not measured */
    double latency_ms;         /* batch 1, < 0: not measured */
} VmMeasure;

typedef struct Measures {
    VmMeasure *m;
    int n, cap;
    VmCurve *curves;
    int n_curves, cap_curves;
} Measures;

typedef struct ViewModel {
    long generation;           /* bumps on every rebuild */
    bool has_model;
    char *model_path, *model_name; /* model_name: file name without folder and .onnx */
    char *data_desc;
    bool has_train, has_test;
    char *score_name;          /* criterion of the scores, or NULL */
    uint64_t hash, orig_hash;
    VmLayer *layers;
    int n_layers;
    VmGroup *groups;
    int n_groups;
    char *groups_error;        /* why groups could not be built */
    char **criteria;
    int n_criteria;
    /* totals: [0] original, [1] current, [2] after the plan */
    int64_t params[3], macs[3];
    int plan_units, plan_groups;
    bool dirty;
    int n_undo, n_redo;
    const Graph *orig_ptr;     /* to reuse orig_hash */
} ViewModel;

void vm_init(ViewModel *vm);
void vm_done(ViewModel *vm);
/* Rebuilds vm from ws (UI thread, no job running). */
void vm_build(ViewModel *vm, Workspace *ws);
const VmGroup *vm_group(const ViewModel *vm, int id);
const VmGroup *vm_group_named(const ViewModel *vm, const char *name);

void measures_init(Measures *m);
void measures_done(Measures *m);
/* Takes what a finished command measured: eval accuracy, bench and apply
 * latency, sensitivity curves. model: the hash the command ran on
 * (after: the hash after it, for apply). */
void measures_take_result(Measures *m, const char *command, const cJSON *result, uint64_t model, uint64_t after);
/* A partial sensitivity result (one group's curve, or the whole set). */
void measures_take_partial(Measures *m, const char *command, const cJSON *result, uint64_t model);
VmMeasure *measures_for(Measures *m, uint64_t model);
const VmCurve *measures_curve(const Measures *m, uint64_t model, const char *group);
/* Accuracy at ratio on a curve (linear between points, base at 0). */
double curve_at(const VmCurve *c, double ratio);

#endif
