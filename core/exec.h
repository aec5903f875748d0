/* Execution: a plan binds a graph to concrete input shapes, infers every
 * shape, evaluates what is known before running (constants and shape
 * arithmetic), and places activations in one arena planned from value
 * lifetimes, so inference peak memory is the weights plus the live set. */
#ifndef SH_EXEC_H
#define SH_EXEC_H

#include "graph.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct ExecPlan ExecPlan;

typedef struct {
    bool training;    /* BatchNorm batch statistics, Dropout active */
    bool keep_all;    /* every activation stays readable after a run */
    bool shapes_only; /* infer shapes and known values; nothing runs */
    bool no_fusion;   /* run every node as written (tests, probes) */
    /* With several threads, an inference plan whose graph computes each
     * sample on its own runs slices of the batch on separate threads, and
     * then only graph outputs (and known values) are readable after a run.
     * one_part keeps it one plan (its kernels may still split work). */
    bool one_part;
    /* Optional values of the graph inputs (borrowed during exec_plan).
     * Inputs whose values determine shapes (a Reshape target fed by the
     * user) become known when planning; exec_run then requires the same
     * values. */
    Tensor *const *input_values;
    bool profile;     /* time every node (exec_node_seconds) */
    /* Training: the trainable parameter block (graph_pack_params). Constants
     * whose data lies in it are parameters: never folded, and exec_backward
     * writes their gradients at the same offsets of a gradient block. */
    const float *params;
    int64_t n_params;
    /* Give this plan its own copy of every non-parameter float constant
     * (BatchNorm running statistics), so a training replica's in-place
     * statistics updates do not touch the model. */
    bool private_consts;
    /* Called after each node runs with its outputs (verification zeroes
     * removed channels through it). */
    void (*after_node)(void *ctx, const Node *n, Tensor **out, int n_out);
    void *hook_ctx;
} ExecOptions;

/* Plans g (borrowed: it must outlive the plan and stay unchanged) for the
 * given input shapes (one per g->inputs). opt may be NULL. */
int exec_plan(const Graph *g, const Shape *input_shapes, const ExecOptions *opt, ExecPlan **out);
/* Runs the plan. inputs (one per graph input, borrowed) must have the
 * planned shapes and dtypes. */
int exec_run(ExecPlan *p, Tensor *const *inputs);
/* Runs again only the steps of nodes with index >= node (graph order),
 * leaving every value computed before node as the last run left it: after
 * an exec_run, the effect of changing activations from node on (an
 * after_node hook zeroing channels) costs only the rest of the graph. The
 * plan must be made with keep_all (every value keeps its own buffer) and
 * have run; the inputs of that run must still be valid. Values the rerun
 * does not recompute must not have been changed since (a hook that
 * changes values of nodes before node corrupts them). */
int exec_rerun_from(ExecPlan *p, int node);
/* Seeds random ops (Dropout) for the next run and backward. */
void exec_set_seed(ExecPlan *p, uint64_t seed);
/* Backward pass after exec_run of a training plan (keep_all): output_grads
 * (one per graph output, NULL for none) are dL/d(output); parameter
 * gradients are ADDED into grads (n_params floats laid out like params).
 * Fails naming the node if a gradient must flow through an op without
 * backward. */
int exec_backward(ExecPlan *p, Tensor *const *output_grads, float *grads);

/* dL/dv after exec_backward, or NULL if v carries no gradient (it does
 * not depend on a parameter). Borrowed. */
const Tensor *exec_value_grad(const ExecPlan *p, int v);

/* The tensor of value v: shape and dtype always; data after a run while
 * live (graph outputs, known values, and everything with keep_all).
 * Borrowed; valid until the next run or exec_free. */
const Tensor *exec_value(const ExecPlan *p, int v);
/* Graph output k after a run. */
const Tensor *exec_output(const ExecPlan *p, int k);
/* True if v was computed when planning (a constant for these shapes). */
bool exec_value_known(const ExecPlan *p, int v);
/* MACs of node i for the planned shapes. */
int64_t exec_node_macs(const ExecPlan *p, int i);
/* Seconds spent in node i over all runs so far (profile plans only; a
 * node fused into the one before it reports 0). */
double exec_node_seconds(const ExecPlan *p, int i);
/* Slices of the batch the plan runs on separate threads (1: one plan). */
int exec_parts(const ExecPlan *p);
size_t exec_arena_bytes(const ExecPlan *p);
/* Sum of all activation bytes (what an arena-less executor would hold). */
size_t exec_activation_bytes(const ExecPlan *p);
void exec_free(ExecPlan *p); /* NULL-safe */

/* Marks (new array, caller frees) the values whose data, not just shape,
 * decides some node's output shape. */
bool *graph_shape_feeding_values(const Graph *g);

/* Concrete shape of graph input i with batch size bound to its first
 * symbolic dimension. Fails naming the input if another dim is symbolic. */
int graph_input_shape(const Graph *g, int i, int64_t batch, Shape *out);

/* Load-time preparation: folds constant subgraphs into initializers,
 * infers dtypes and shapes (symbolic batch: Value.shape dims < 0 mean
 * -d * N) and folds shape arithmetic that does not depend on the batch.
 * Fails naming the node on inconsistent shapes. */
int graph_prepare(Graph *g);

/* Multiply-accumulates of one sample (batch 1, or the model's fixed
 * batch), per node into macs (may be NULL) and in total into *total. */
int graph_macs(const Graph *g, int64_t *macs, int64_t *total);

/* Formats a Value.shape dim ("64", "N", "N*16", "?"). */
char *dim_str(int64_t d, char *buf, size_t n);
/* Formats a Value.shape ("[N,16,28,28]"). */
char *sym_shape_str(const Shape *s, char *buf, size_t n);

#define SH_DIM_UNKNOWN INT64_MIN

#endif
