/* Graph IR: values (activations, inputs, initializers), nodes in
 * topological order, attributes. Values and nodes are addressed by index
 * so that surgery can rewrite them without dangling pointers. */
#ifndef SH_GRAPH_H
#define SH_GRAPH_H

#include "tensor.h"

#include <stdbool.h>
#include <stdint.h>

struct OpDef;

/* ONNX AttributeProto.AttributeType numbers. */
typedef enum {
    ATTR_UNDEF = 0,
    ATTR_FLOAT = 1,
    ATTR_INT = 2,
    ATTR_STRING = 3,
    ATTR_TENSOR = 4,
    ATTR_GRAPH = 5,
    ATTR_FLOATS = 6,
    ATTR_INTS = 7,
    ATTR_STRINGS = 8,
} AttrType;

typedef struct {
    char *name;
    AttrType type;
    int64_t i;
    float f;
    char *s;         /* ATTR_STRING (NUL-terminated) */
    int n;           /* element count for FLOATS / INTS / STRINGS */
    int64_t *ints;
    float *floats;
    char **strings;
    Tensor *t;       /* ATTR_TENSOR, owned */
} Attr;

enum {
    VAL_INPUT = 1u << 0,  /* graph input fed by the user */
    VAL_OUTPUT = 1u << 1, /* graph output */
    VAL_CONST = 1u << 2,  /* initializer: data is set */
};

/* Dimensions in Value.shape that are not fixed are stored as -1 and may
 * carry a symbolic name (dim_param), e.g. "batch". */
typedef struct {
    char *name;
    unsigned flags;
    DType dtype;       /* SH_UNDEF when not yet known */
    Shape shape;       /* rank -1 when unknown */
    char *dim_names[SH_MAX_RANK];
    int producer;      /* index of the producing node, -1 for inputs/consts */
    Tensor *data;      /* initializer data when VAL_CONST, owned */
} Value;

typedef struct {
    char *name;
    char *op_type;
    char *domain;      /* NULL or "" for the default ONNX domain */
    const struct OpDef *op; /* bound by graph_bind_ops */
    int n_in, n_out;
    int *in;           /* value indices; -1 for an omitted optional input */
    int *out;
    int n_attrs;
    Attr *attrs;
} Node;

typedef struct {
    char *key, *value;
} MetaProp;

typedef struct Graph {
    Value *values;
    int n_values, cap_values;
    Node *nodes;
    int n_nodes, cap_nodes;
    int *inputs, n_inputs;   /* VAL_INPUT values, in declaration order */
    int *outputs, n_outputs;
    int opset;               /* default-domain opset version */
    int64_t ir_version;
    char *name;
    char *producer_name, *producer_version;
    MetaProp *meta;
    int n_meta;
    /* name -> value index, open addressing */
    int *map;
    int map_cap;
    /* Trainable parameters packed into one block by graph_pack_params: the
     * data of those initializers are views into it (llm.c's layout, so
     * gradients and optimizer state are flat arrays of the same shape). */
    float *param_block;
    int64_t param_len;
} Graph;

Graph *graph_new(void);
void graph_free(Graph *g);             /* NULL-safe */
Graph *graph_clone(const Graph *g);    /* deep copy; NULL on failure */

/* Index of the value with this name, -1 if none. */
int graph_find_value(const Graph *g, const char *name);
/* Index of the value with this name, created (unknown type/shape) if new. */
int graph_value(Graph *g, const char *name);
/* A fresh value with a unique name derived from base. */
int graph_new_value(Graph *g, const char *base);
/* Adds an input value of known dtype/shape; returns its index. */
int graph_add_input(Graph *g, const char *name, DType dt, const Shape *s);
/* Adds an initializer, taking ownership of t; returns the value index. */
int graph_add_const(Graph *g, const char *name, Tensor *t);
void graph_add_output(Graph *g, int value);

/* Appends a node; in/out are value indices (-1 for omitted inputs).
 * Returns the node index. */
int graph_add_node(Graph *g, const char *op_type, const char *name, int n_in, const int *in,
                   int n_out, const int *out);
/* Removes nodes whose mark is true, keeping order. */
void graph_remove_nodes(Graph *g, const bool *remove);

/* Attribute setters (replace an existing attribute of the same name). */
void node_set_int(Node *n, const char *name, int64_t v);
void node_set_float(Node *n, const char *name, float v);
void node_set_str(Node *n, const char *name, const char *v);
void node_set_ints(Node *n, const char *name, const int64_t *v, int count);
void node_set_floats(Node *n, const char *name, const float *v, int count);
void node_set_tensor(Node *n, const char *name, Tensor *t); /* takes ownership */

/* Attribute getters. */
const Attr *node_attr(const Node *n, const char *name);
int64_t node_attr_int(const Node *n, const char *name, int64_t dflt);
float node_attr_float(const Node *n, const char *name, float dflt);
const char *node_attr_str(const Node *n, const char *name, const char *dflt);
/* Count of ints (and *out set), or -1 if absent. */
int node_attr_ints(const Node *n, const char *name, const int64_t **out);
int node_attr_floats(const Node *n, const char *name, const float **out);

void attr_done(Attr *a);
int attr_copy(Attr *dst, const Attr *src);

/* Looks up every node's OpDef; fails naming the first unknown op. */
int graph_bind_ops(Graph *g);
/* Reorders nodes topologically and sets producers; fails on cycles or a
 * value produced twice. */
int graph_toposort(Graph *g);
/* Recomputes Value.producer from the node list. */
void graph_update_producers(Graph *g);
/* Number of nodes reading value v (graph outputs count once). */
int graph_use_count(const Graph *g, int v);
/* Drops nodes whose outputs are unused and values nobody references. */
void graph_prune_dead(Graph *g);

void graph_set_meta(Graph *g, const char *key, const char *value);
const char *graph_get_meta(const Graph *g, const char *key);

/* True if initializer v is trained: float, read as a weight (not a
 * BatchNorm running statistic, not a shape input, not a lone scalar
 * constant of an elementwise op). */
bool graph_value_trainable(const Graph *g, int v);
/* Packs every trainable initializer into g->param_block (idempotent:
 * repacks after the set of parameters changed). */
int graph_pack_params(Graph *g);

/* Total number of float parameters in initializers. */
int64_t graph_param_count(const Graph *g);
/* Adds each node's float parameters into params[node] (a shared
 * initializer counts at its first reader). */
void graph_node_params(const Graph *g, int64_t *params);

/* Gives every unnamed node a unique name "<op_type>_<index>". */
void graph_name_nodes(Graph *g);

#endif
