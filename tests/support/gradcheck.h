/* Checks an op's backward against a central finite difference computed in
 * double precision: L = sum over float outputs k, elements i of
 * w_k[i] * y_k[i] with fixed random weights w, so dL/dy_k = w_k. The
 * analytic gradient must also accumulate (+=) into what gin held. */
#ifndef SH_GRADCHECK_H
#define SH_GRADCHECK_H

#include "core/graph.h"
#include "core/tensor.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    int training;      /* forward/backward in training mode */
    double h;          /* finite-difference step (default 1e-2) */
    double rtol, atol; /* |fd - analytic| <= atol + rtol * max(|fd|, |analytic|); defaults 2e-2, 2e-3 */
    int max_probes;    /* elements probed per input (default 48; all if the input is smaller) */
    uint64_t seed;
    uint32_t skip;     /* bit i: do not check input i (integer, shape or constant inputs) */
} GradCheck;

/* Runs the check on node n (n->op bound) with the given inputs. Prints
 * "label: input i max error E (analytic A vs numeric F)" per input and
 * returns the worst error ratio (error / tolerance; <= 1 passes), or a
 * negative value if the op failed to run. */
double t_gradcheck(const char *label, Node *n, int opset, Tensor **in, int n_in, int n_out,
                   const GradCheck *opt);

#endif
