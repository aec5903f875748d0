/* Batch independence of a graph (for the executor's batch parts). */
#ifndef SH_EXEC_SPLIT_H
#define SH_EXEC_SPLIT_H

#include "graph.h"

#include <stdbool.h>
#include <stddef.h>

/* True if every sample of a batch is computed on its own: each value not
 * known when planning (known[v] false) has the batch N first in its
 * symbolic shape, and no node works along that dimension. Otherwise false,
 * with the first reason in why. */
bool graph_batch_separable(const Graph *g, const bool *known, char *why, size_t why_size);

#endif
