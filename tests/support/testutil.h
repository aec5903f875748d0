/* Helpers shared by unit tests: building one-node graphs, random tensors,
 * comparing against references with a printed max difference. */
#ifndef SH_TESTUTIL_H
#define SH_TESTUTIL_H

#include "core/graph.h"
#include "core/op.h"
#include "core/tensor.h"

#include <stdint.h>

/* A deterministic generator for test data. */
typedef struct {
    uint64_t s;
} TRng;
void trng_seed(TRng *r, uint64_t seed);
float trng_uniform(TRng *r, float lo, float hi);
int64_t trng_int(TRng *r, int64_t lo, int64_t hi); /* inclusive */

/* New heap f32 tensor with values uniform in [lo, hi). */
Tensor *t_rand(TRng *r, const Shape *s, float lo, float hi);
/* New heap f32 tensor with the given values. */
Tensor *t_f32(const Shape *s, const float *values);
/* New heap i64 tensor with the given values. */
Tensor *t_i64(const Shape *s, const int64_t *values);

/* A standalone node of op_type with n_in inputs and n_out outputs
 * (attributes added by the caller with node_set_*). Free with t_node_free. */
Node *t_node(const char *op_type, int n_in, int n_out);
void t_node_free(Node *n);

/* Runs the node on inputs (NULL entries = omitted) with opset; outputs are
 * new heap tensors. Returns the op's return code. */
int t_run(Node *n, int opset, Tensor **in, int n_in, Tensor **out, int n_out);

/* Max |a-b| over all elements; prints "label: max abs diff X" to stdout.
 * Returns INFINITY when shapes differ. */
double t_max_diff(const char *label, const Tensor *a, const Tensor *b);
/* True if every element satisfies |a-b| <= atol + rtol*|b|. */
int t_allclose(const Tensor *a, const Tensor *b, double rtol, double atol);

#endif
