#include "benchmark.h"

#include "data.h"
#include "error.h"
#include "exec.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int random_inputs(const Graph *g, int64_t batch, Tensor *in, Shape *shapes)
{
    Xoshiro r;
    xoshiro_seed(&r, 7);
    for (int i = 0; i < g->n_inputs; i++) {
        int rc = graph_input_shape(g, i, batch, &shapes[i]);
        if (rc < 0 || (rc = tensor_alloc(&in[i], g->values[g->inputs[i]].dtype, &shapes[i])) < 0)
            return rc;
        for (int64_t k = 0; in[i].dtype == SH_F32 && k < in[i].numel; k++)
            tensor_f32(&in[i])[k] = xoshiro_uniform(&r) * 2 - 1;
    }
    return 0;
}

int measure_latency(const Graph *g, int64_t batch, int iters, int warmup, bool per_node, Latency *out)
{
    memset(out, 0, sizeof *out);
    if (iters < 1)
        iters = 1;
    Tensor *in = xcalloc((size_t)g->n_inputs + 1, sizeof *in);
    Tensor **ptrs = xcalloc((size_t)g->n_inputs + 1, sizeof *ptrs);
    Shape *shapes = xcalloc((size_t)g->n_inputs + 1, sizeof *shapes);
    double *t = xcalloc((size_t)iters, sizeof *t);
    ExecPlan *p = NULL;
    ExecOptions opt = {.profile = per_node};
    int rc = random_inputs(g, batch, in, shapes);
    for (int i = 0; i < g->n_inputs; i++)
        ptrs[i] = &in[i];
    if (rc == 0)
        rc = exec_plan(g, shapes, &opt, &p);
    for (int k = 0; rc == 0 && k < warmup; k++)
        rc = exec_run(p, ptrs);
    if (rc == 0 && per_node) { /* profile only the timed runs */
        exec_free(p);
        p = NULL;
        rc = exec_plan(g, shapes, &opt, &p);
    }
    for (int k = 0; rc == 0 && k < iters; k++) {
        double t0 = now_seconds();
        rc = exec_run(p, ptrs);
        t[k] = (now_seconds() - t0) * 1e3;
    }
    if (rc == 0) {
        qsort(t, (size_t)iters, sizeof *t, cmp_double);
        out->batch = g->n_inputs ? shapes[0].d[0] : batch;
        out->median_ms = t[iters / 2];
        out->min_ms = t[0];
        out->max_ms = t[iters - 1];
        if (per_node) {
            out->node_ms = xcalloc((size_t)g->n_nodes + 1, sizeof *out->node_ms);
            for (int i = 0; i < g->n_nodes; i++)
                out->node_ms[i] = exec_node_seconds(p, i) * 1e3 / iters;
        }
    }
    exec_free(p);
    for (int i = 0; i < g->n_inputs; i++)
        tensor_done(&in[i]);
    free(in);
    free(ptrs);
    free(shapes);
    free(t);
    return rc;
}

void latency_done(Latency *l)
{
    free(l->node_ms);
    memset(l, 0, sizeof *l);
}
