/* Helpers for tests that build whole graphs in code: initializers, a
 * reference interpreter that runs node by node with op_run (no arena, no
 * aliasing, no folding), and temporary folders. */
#ifndef SH_GRAPHUTIL_H
#define SH_GRAPHUTIL_H

#include "core/graph.h"
#include "core/tensor.h"

/* Adds an f32 initializer with the given values (copied). */
int tg_const_f32(Graph *g, const char *name, const Shape *s, const float *values);
/* Adds an int64 initializer of shape s with the given values (copied). */
int tg_const_i64(Graph *g, const char *name, const Shape *s, const int64_t *values);
/* Adds a node with one output value named out_name (created); returns the
 * output value index. in holds value indices. */
int tg_op1(Graph *g, const char *op_type, const char *out_name, int n_in, const int *in);

/* Runs g node by node with op_run on inputs (one per graph input,
 * borrowed) and stores a new heap copy of every graph output in
 * outputs[k]. Returns 0 or the failing op's code. */
int tg_ref_run(const Graph *g, Tensor *const *inputs, Tensor **outputs);

/* A new empty folder under $TMPDIR (or /tmp); caller frees the string. */
char *tg_mkdtemp(void);
/* Removes the regular files in dir and dir itself. */
void tg_rmdir(const char *dir);
/* dir/name in a new string. */
char *tg_path(const char *dir, const char *name);

#endif
