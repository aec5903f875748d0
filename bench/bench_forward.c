/* Times shears' forward pass on a model, the way tests/ort/bench.js times
 * ONNX Runtime: warm up, then time iterations inside the process and print
 * one JSON line with the median, min and max. With --profile, also prints
 * one JSON line per Conv/Gemm/MatMul node with its achieved GFLOP/s beside
 * a plain sgemm of the same GEMM shape measured in the same run.
 *
 * Usage: bench_forward MODEL.onnx|ARCH.json [--batch B] [--threads T]
 *        [--iters N] [--warmup W] [--profile] [--export OUT.onnx] */
#include "core/builder.h"
#include "core/data.h"
#include "core/error.h"
#include "core/exec.h"
#include "core/onnx.h"
#include "core/threads.h"
#include "core/util.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *model, *export_path;
    int64_t batch;
    int threads, iters, warmup;
    bool profile;
} Args;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int parse_args(int argc, char **argv, Args *a)
{
    *a = (Args){.batch = 1, .threads = 1, .iters = 30, .warmup = 5};
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        bool more = i + 1 < argc;
        if (!strcmp(s, "--batch") && more)
            a->batch = atoll(argv[++i]);
        else if (!strcmp(s, "--threads") && more)
            a->threads = atoi(argv[++i]);
        else if (!strcmp(s, "--iters") && more)
            a->iters = atoi(argv[++i]);
        else if (!strcmp(s, "--warmup") && more)
            a->warmup = atoi(argv[++i]);
        else if (!strcmp(s, "--export") && more)
            a->export_path = argv[++i];
        else if (!strcmp(s, "--profile"))
            a->profile = true;
        else if (s[0] != '-' && !a->model)
            a->model = s;
        else
            return sh_fail(SH_E_ARG, "bad argument '%s'", s);
    }
    if (!a->model || a->batch < 1 || a->threads < 1 || a->iters < 1 || a->warmup < 0)
        return sh_fail(SH_E_ARG, "usage: bench_forward MODEL [--batch B] [--threads T] [--iters N] [--warmup W] [--profile] [--export OUT.onnx]");
    return 0;
}

static int load_model(const char *path, Graph **g)
{
    size_t n = strlen(path);
    if (n > 5 && strcmp(path + n - 5, ".json") == 0)
        return model_build_file(path, g);
    int rc = onnx_load(path, g);
    if (rc == 0 && (rc = graph_prepare(*g)) < 0)
        rc = sh_fail_prefix(rc, "%s", path);
    return rc;
}

/* Random inputs (seeded) for every graph input at the given batch. */
static int make_inputs(const Graph *g, int64_t batch, Tensor *in, Shape *shapes)
{
    Xoshiro r;
    xoshiro_seed(&r, 7);
    for (int i = 0; i < g->n_inputs; i++) {
        int rc = graph_input_shape(g, i, batch, &shapes[i]);
        if (rc < 0 || (rc = tensor_alloc(&in[i], g->values[g->inputs[i]].dtype, &shapes[i])) < 0)
            return rc;
        for (int64_t k = 0; k < in[i].numel; k++) {
            if (in[i].dtype == SH_F32)
                tensor_f32(&in[i])[k] = xoshiro_uniform(&r) * 2 - 1;
        }
    }
    return 0;
}

static double time_runs(ExecPlan *p, Tensor **ptrs, int iters, double *times)
{
    for (int k = 0; k < iters; k++) {
        double t0 = now_seconds();
        if (exec_run(p, ptrs) < 0)
            return -1;
        times[k] = now_seconds() - t0;
    }
    qsort(times, (size_t)iters, sizeof *times, cmp_double);
    return times[iters / 2];
}

/* GFLOP/s of sgemm for an M x N x K product, median of iters. */
static double sgemm_gflops(int64_t m, int64_t n, int64_t k, int iters)
{
    float *a = xcalloc((size_t)(m * k), sizeof *a), *b = xcalloc((size_t)(k * n), sizeof *b);
    float *c = xcalloc((size_t)(m * n), sizeof *c);
    double *t = xcalloc((size_t)iters, sizeof *t);
    for (int64_t i = 0; i < m * k; i++)
        a[i] = (float)(i % 7) * 0.1f;
    for (int64_t i = 0; i < k * n; i++)
        b[i] = (float)(i % 5) * 0.1f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1, a, (int)k, b,
                (int)n, 0, c, (int)n);
    for (int i = 0; i < iters; i++) {
        double t0 = now_seconds();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1, a, (int)k,
                    b, (int)n, 0, c, (int)n);
        t[i] = now_seconds() - t0;
    }
    qsort(t, (size_t)iters, sizeof *t, cmp_double);
    double med = t[iters / 2];
    free(a);
    free(b);
    free(c);
    free(t);
    return 2.0 * (double)m * (double)n * (double)k / med / 1e9;
}

/* The GEMM a Conv/Gemm/MatMul node amounts to: M x N x K with M*N*K = MACs. */
static void gemm_shape(const Graph *g, const ExecPlan *p, int i, int64_t *m, int64_t *n, int64_t *k)
{
    const Node *node = &g->nodes[i];
    const Tensor *y = exec_value(p, node->out[0]), *w = exec_value(p, node->in[1]);
    int64_t macs = exec_node_macs(p, i);
    if (!strcmp(node->op_type, "Conv")) {
        int64_t group = node_attr_int(node, "group", 1);
        *m = w->shape.d[0] / group;
        *k = w->numel / w->shape.d[0];
        *n = macs / (*m * *k);
    } else {
        *n = y->shape.d[y->shape.rank - 1];
        *k = w->shape.rank >= 2 ? w->shape.d[w->shape.rank - 2] : 1;
        if (!strcmp(node->op_type, "Gemm") && node_attr_int(node, "transB", 0))
            *k = w->shape.d[1];
        *m = macs / (*n * (*k ? *k : 1));
    }
}

static void profile(const Graph *g, Tensor **ptrs, const Shape *shapes, const Args *a)
{
    ExecOptions opt = {.profile = true};
    ExecPlan *p;
    if (exec_plan(g, shapes, &opt, &p) < 0)
        return;
    for (int k = 0; k < a->warmup + a->iters; k++)
        exec_run(p, ptrs);
    for (int i = 0; i < g->n_nodes; i++) {
        const char *op = g->nodes[i].op_type;
        if (strcmp(op, "Conv") && strcmp(op, "Gemm") && strcmp(op, "MatMul"))
            continue;
        int64_t m, n, k, macs = exec_node_macs(p, i);
        if (!macs || g->nodes[i].in[1] < 0)
            continue;
        double secs = exec_node_seconds(p, i) / (a->warmup + a->iters);
        gemm_shape(g, p, i, &m, &n, &k);
        double peak = sgemm_gflops(m, n, k, 10);
        printf("{\"node\":\"%s\",\"op\":\"%s\",\"ms\":%.4f,\"gflops\":%.2f,\"gemm\":[%lld,%lld,%lld],\"sgemm_gflops\":%.2f}\n",
               g->nodes[i].name, op, secs * 1e3, 2.0 * (double)macs / secs / 1e9, (long long)m,
               (long long)n, (long long)k, peak);
    }
    exec_free(p);
}

int main(int argc, char **argv)
{
    Args a;
    Graph *g = NULL;
    ExecPlan *p = NULL;
    if (parse_args(argc, argv, &a) < 0 || load_model(a.model, &g) < 0) {
        fprintf(stderr, "bench_forward: %s\n", sh_errmsg());
        return 1;
    }
    if (a.export_path && onnx_save(g, a.export_path, true) < 0) {
        fprintf(stderr, "bench_forward: %s\n", sh_errmsg());
        graph_free(g);
        return 1;
    }
    sh_set_threads(a.threads);
    Tensor *in = xcalloc((size_t)g->n_inputs + 1, sizeof *in);
    Tensor **ptrs = xcalloc((size_t)g->n_inputs + 1, sizeof *ptrs);
    Shape *shapes = xcalloc((size_t)g->n_inputs + 1, sizeof *shapes);
    double *times = xcalloc((size_t)a.iters + (size_t)a.warmup + 1, sizeof *times);
    int rc = make_inputs(g, a.batch, in, shapes);
    for (int i = 0; i < g->n_inputs; i++)
        ptrs[i] = &in[i];
    if (rc == 0)
        rc = exec_plan(g, shapes, NULL, &p);
    if (rc == 0 && time_runs(p, ptrs, a.warmup ? a.warmup : 1, times) < 0)
        rc = -1;
    double med = rc == 0 ? time_runs(p, ptrs, a.iters, times) : -1;
    if (rc < 0 || med < 0) {
        fprintf(stderr, "bench_forward: %s\n", sh_errmsg());
        rc = 1;
    } else {
        int64_t rows = g->n_inputs ? shapes[0].d[0] : 1;
        printf("{\"median_ms\":%.4f,\"min_ms\":%.4f,\"max_ms\":%.4f,\"iters\":%d,\"batch\":%lld,\"threads\":%d,\"blas_core\":\"%s\",\"arena_mb\":%.2f,\"parts\":%d%s}\n",
               med * 1e3, times[0] * 1e3, times[a.iters - 1] * 1e3, a.iters, (long long)rows,
               a.threads, sh_blas_core(), (double)exec_arena_bytes(p) / 1e6,
               exec_parts(p), rows != a.batch ? ",\"fixed_batch\":true" : "");
        if (a.profile)
            profile(g, ptrs, shapes, &a);
        rc = 0;
    }
    exec_free(p);
    for (int i = 0; i < g->n_inputs; i++)
        tensor_done(&in[i]);
    free(in);
    free(ptrs);
    free(shapes);
    free(times);
    graph_free(g);
    return rc;
}
