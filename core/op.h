/* The op table. An op is data: one OpDef per ONNX op, defined in a family
 * file in core/ops/ and listed in that file's table. The same table serves
 * the executor, the MAC counter, training and the dependency graph. */
#ifndef SH_OP_H
#define SH_OP_H

#include "graph.h"
#include "tensor.h"

#include <stddef.h>
#include <stdint.h>

/* What an op sees when it runs. in[i] is NULL for an omitted optional
 * input. During infer, in[i]->data is NULL unless the value is known when
 * planning (a constant, or computed from constants and shapes); inputs
 * listed in OpDef.shape_inputs are always known. During forward every
 * input and output has data. */
typedef struct OpCtx {
    const Node *node;
    int opset;        /* default-domain opset of the model */
    int n_in, n_out;
    Tensor **in;
    Tensor **out;
    void *scratch;    /* at least OpDef.scratch(ctx) bytes, 64-byte aligned */
    size_t scratch_bytes;
    int training;     /* 1 in training mode (BatchNorm batch stats, Dropout) */
    const void *fused; /* executor fusion data (see exec.c), NULL if none */
    uint64_t seed;     /* for random ops in training (Dropout): the same value
                        * in a node's forward and backward of one step */
    /* backward: bit i set (only for bits of OpDef.grad_assign): gin[i]
     * holds stale bytes, and backward writes (=) every element of it
     * instead of adding, which saves clearing it first */
    uint32_t grad_assign;
} OpCtx;

enum {
    /* Output 0 has the same bytes as input 0 (Reshape, Flatten, Squeeze,
     * Unsqueeze, Identity, inference Dropout): the executor aliases the
     * buffers and does not call forward. */
    OP_ALIAS = 1u << 0,
    /* Outputs depend only on input shapes, never their data (Shape, Size). */
    OP_SHAPE_ONLY = 1u << 1,
    /* Never evaluate at load or plan time (random ops). */
    OP_NO_FOLD = 1u << 2,
    /* Output 0 may overwrite input 0 (same size, elementwise). */
    OP_INPLACE = 1u << 3,
};

struct CouplingCtx; /* defined by the pruning issue */

typedef struct OpDef {
    const char *name;       /* ONNX op_type */
    int min_in, max_in;
    int min_out, max_out;
    unsigned flags;
    uint32_t shape_inputs;  /* bit i: infer needs the data of input i */
    /* Sets out[i]->dtype and out[i]->shape. Required. */
    int (*infer)(OpCtx *c);
    /* Computes outputs into preallocated out[i]->data. Required unless OP_ALIAS. */
    int (*forward)(OpCtx *c);
    /* Multiply-accumulates of one forward pass (0 if NULL). */
    int64_t (*macs)(const OpCtx *c);
    /* Scratch bytes forward needs (0 if NULL). */
    size_t (*scratch)(const OpCtx *c);
    /* Training: accumulates (+=) input gradients gin[i] (NULL where not
     * needed) from output gradients gout[k] (NULL where no gradient flows,
     * e.g. an unused or integer output). c->in and c->out hold the forward
     * pass's values (computed with the same c->training); scratch holds at
     * least bwd_scratch(c) bytes. Must not modify c->in or c->out. */
    int (*backward)(OpCtx *c, Tensor **gout, Tensor **gin);
    /* Scratch bytes backward needs (0 if NULL). */
    size_t (*bwd_scratch)(const OpCtx *c);
    /* Bit i: backward honours OpCtx.grad_assign for input i. */
    uint32_t grad_assign;
    /* Channel-coupling rule. Filled by the pruning issue. */
    int (*coupling)(struct CouplingCtx *cc);
} OpDef;

/* Each family file defines a table terminated by an entry with name NULL. */
extern const OpDef sh_ops_activation[];
extern const OpDef sh_ops_elementwise[];
extern const OpDef sh_ops_conv[];
extern const OpDef sh_ops_gemm[];
extern const OpDef sh_ops_norm[];
extern const OpDef sh_ops_pool[];
extern const OpDef sh_ops_reduce[];
extern const OpDef sh_ops_softmax[];
extern const OpDef sh_ops_shape[];
extern const OpDef sh_ops_slicing[];
extern const OpDef sh_ops_resize[];
extern const OpDef sh_ops_constant[];

/* The OpDef for an op type in the default ONNX domain, NULL if unknown. */
const OpDef *op_find(const char *op_type);
/* Calls fn for every registered op (for listings and completion). */
void op_foreach(void (*fn)(const OpDef *op, void *arg), void *arg);

/* Runs one node outside an executor: infers output shapes, allocates
 * outputs (heap tensors stored in out[], owned by the caller) and calls
 * forward. Used for constant folding, planning and op unit tests. */
int op_run(const Node *n, int opset, Tensor **in, int n_in, Tensor **out, int n_out);
/* The same with OpCtx.training set (BatchNorm batch statistics, Dropout). */
int op_run_mode(const Node *n, int opset, int training, Tensor **in, int n_in, Tensor **out,
                int n_out);

/* Helpers for op files. */
/* Records "node 'name' (Op): <message>" and returns code. */
int op_fail(const OpCtx *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Requires in[i] to be present with dtype dt (SH_UNDEF: any). */
int op_check_input(const OpCtx *c, int i, DType dt);
/* Sets output i's dtype and shape. */
void op_set_out(OpCtx *c, int i, DType dt, const Shape *s);
/* Numpy-style broadcast of two shapes; fails with a message naming the node. */
int op_broadcast(const OpCtx *c, const Shape *a, const Shape *b, Shape *out);
/* Reads an int64 list from an attribute or, if present, input i
 * (opset-dependent location); returns count (or -1 if neither). */
int op_ints_from(const OpCtx *c, const char *attr, int input, int64_t *buf, int cap);

#endif
