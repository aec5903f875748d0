/* Dependency groups: which slices of which tensors must be removed
 * together. Every axis of a value that can carry channels is a channel
 * space; each op's coupling rule (OpDef.coupling) says how the spaces of
 * its inputs and outputs relate (same, produced, consumed by a weight,
 * concatenated, sliced, expanded, split into heads, ...). Channels are
 * atoms in a union-find: atoms that must go together are one unit; units
 * from the same producers form a group. An op whose coupling is unknown
 * blocks every group it touches, naming the node: shears never guesses. */
#ifndef SH_DEPGRAPH_H
#define SH_DEPGRAPH_H

#include "graph.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    GROUP_CHANNELS, /* conv filters / channels */
    GROUP_NEURONS,  /* features of a Gemm/MatMul (FFN neurons) */
    GROUP_HEADS,    /* attention heads: a unit is D features of Q, K, V */
    GROUP_WIDTH,    /* the residual stream width (advanced) */
    GROUP_BLOCK,    /* whole residual blocks / transformer layers */
} GroupKind;

/* The indices one member tensor loses for each unit of a group. */
typedef struct {
    int value;        /* graph value (initializer or activation) */
    int axis;
    bool param;       /* an initializer: surgery slices its data */
    int64_t size;     /* the axis length */
    int64_t *start;   /* per unit: offset into idx */
    int64_t *idx;     /* indices along axis, grouped by unit (ascending per unit) */
} GroupMember;

typedef struct {
    int id;
    char *name;           /* the first producing node's name */
    GroupKind kind;
    int n_units;
    int64_t unit_width;   /* channels per unit (1, head dim, channels per conv group) */
    GroupMember *members;
    int n_members;
    int *producers;       /* nodes whose outputs start the group's channels */
    int n_producers;
    bool blocked;
    char *blocked_reason; /* names the node and op */
    bool approximate;     /* an op mixes the channels (LayerNorm statistics, softmax) */
    char *approx_reason;
    /* GROUP_BLOCK: unit u bypasses the residual Add nodes
     * block_adds[block_start[u] .. block_start[u+1]) (each becomes its
     * skip input: the block turns into identity). */
    int64_t *block_start;
    int *block_adds;
} Group;

typedef struct DepGraph {
    Group *groups;
    int n_groups;
} DepGraph;

/* For a residual Add node: the input that is the identity skip (0 or 1),
 * or -1 if the node is not a removable residual block. */
int residual_skip_input(const Graph *g, int add_node);

/* Builds the groups of a prepared graph (shapes inferred). */
int depgraph_build(const Graph *g, DepGraph **out);
void depgraph_free(DepGraph *dg); /* NULL-safe */
const char *group_kind_name(GroupKind k);
/* The group whose name is name or whose id is the number in name, NULL if none. */
const Group *depgraph_find(const DepGraph *dg, const char *name);

/* ---- for op coupling rules (OpDef.coupling) ---- */

typedef struct CouplingCtx CouplingCtx;

const Node *cc_node(const CouplingCtx *cc);
int cc_opset(const CouplingCtx *cc);
/* The (static, per-sample) shape of input i / output i; batch dims < 0. */
const Shape *cc_in_shape(const CouplingCtx *cc, int i);
const Shape *cc_out_shape(const CouplingCtx *cc, int i);
/* Constant data of input i, or NULL. */
const Tensor *cc_in_const(const CouplingCtx *cc, int i);
bool cc_has_input(const CouplingCtx *cc, int i);

/* True if output axis carries prunable channels (after the rule's calls). */
bool cc_out_has_channels(CouplingCtx *cc, int out, int axis);
/* True if element k of the shape fed to input `in` can be rewritten by
 * surgery: a constant (or 0 / -1, which follow by themselves), or a
 * constant piece of a Concat ([batch, dims...] targets). */
bool cc_shape_element_editable(const CouplingCtx *cc, int in, int64_t k);

/* Output axis takes the input axis's channels index for index (or, if the
 * output axis already has channels, they are unified with the input's:
 * a Conv's weight axis 0 and its produced output channels). */
void cc_same(CouplingCtx *cc, int in, int in_axis, int out, int out_axis);
/* Two inputs' axes are the same channels (a residual Add). */
void cc_join(CouplingCtx *cc, int in_a, int axis_a, int in_b, int axis_b);
/* Output axis starts new channels (Conv filters, Gemm neurons). */
void cc_produce(CouplingCtx *cc, int out, int out_axis);
/* Output axis j takes input axis channel map[j] (concat, slice, flatten). */
void cc_map(CouplingCtx *cc, int in, int in_axis, int out, int out_axis, const int64_t *map);
/* Input axis channels in blocks of width become one unit each; output axis
 * (of length in_size / width) takes the blocks (Reshape into heads). */
void cc_merge_blocks(CouplingCtx *cc, int in, int in_axis, int64_t width, int out, int out_axis);
/* Unifies the channels of input axis ranges and output axis ranges of
 * each of n groups (grouped convolution: a unit is a whole group). */
void cc_group_units(CouplingCtx *cc, int in, int in_axis, int out, int out_axis, int64_t n);
/* The op reads input axis's channels in a way that needs no coupling
 * (Shape reads only the size, a weight consumed... ). */
void cc_consume(CouplingCtx *cc, int in, int in_axis);
/* The op mixes the channels of input axis (statistics over channels):
 * removing one changes the others' values. */
void cc_approx(CouplingCtx *cc, int in, int in_axis, const char *why);
/* Blocks every group the node touches. */
void cc_block(CouplingCtx *cc, const char *why);

/* Input axes [a0, a1) become output axis out_axis (row-major): the one
 * input axis that carries channels maps each output index to its channel
 * (a channel owns a block of features). More than one: blocked. */
void cc_merge_axes(CouplingCtx *cc, int in, int a0, int a1, int out, int out_axis);
/* Input axis in_axis becomes output axes [o0, o1): its channels, in blocks
 * of the inner axes' size, become units on output axis o0 (heads). */
void cc_split_axis(CouplingCtx *cc, int in, int in_axis, int out, int o0, int o1);

/* Common rules, usable directly as OpDef.coupling: output 0 has input 0's
 * channels on every axis (other inputs are scalars); numpy-broadcast
 * elementwise over every input. */
int couple_unary(CouplingCtx *cc);
int couple_pointwise(CouplingCtx *cc);

#endif
