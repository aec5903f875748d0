/* Latency measurement of a model: median forward time at a batch size
 * (after warm-up, timed inside the process), and per-node times. */
#ifndef SH_BENCHMARK_H
#define SH_BENCHMARK_H

#include "graph.h"

#include <stdint.h>

typedef struct {
    int64_t batch;
    double median_ms, min_ms, max_ms;
    double *node_ms;  /* per node (NULL unless asked), mean over the timed runs */
} Latency;

/* Times g at batch (the model's own if fixed) on seeded random input. */
int measure_latency(const Graph *g, int64_t batch, int iters, int warmup, bool per_node, Latency *out);
void latency_done(Latency *l);

#endif
