/* conv_timing: achieved GFLOP/s of the conv algorithms on Fashion-MNIST
 * sized layers, beside a plain cblas_sgemm of the same GEMM shape (the
 * ceiling) and, with --ort, ONNX Runtime running the same layer as a
 * one-node model in the same invocation.
 *
 *   conv_timing [--batch B] [--iters N] [--ort] [--onnx-dir DIR] [--only NAME] [--sweep]
 *
 * --sweep also times the batch, shift and Winograd algorithms at chunk sizes 1, 2,
 * 4, ... and im2col alone (its share of a per-image conv). --ort runs
 * node tests/ort/bench.js (from the repository root, after make ort-deps)
 * on models written to --onnx-dir (default /tmp).
 * BLAS threads come from the environment (OPENBLAS_NUM_THREADS); this
 * program never sets them. FLOPs = 2 x MACs. Times are per batch: median
 * (min-max) of N timed runs after warm-up. Rows per layer: each algorithm
 * (the chosen one with its own chunk, the others with the largest chunk
 * under the scratch cap: gemm batch is then one whole-batch im2col GEMM),
 * the plain sgemm ceilings, ONNX Runtime. Winograd's GFLOP/s count the
 * direct conv's FLOPs, so they can exceed the sgemm ceiling. */
#include "core/error.h"
#include "core/graph.h"
#include "core/onnx.h"
#include "core/ops/kernels.h"
#include "core/util.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *name;
    int64_t cin, cout, group, hw, k, stride, pad;
} Layer;

/* Layers of small Fashion-MNIST CNNs (1x28x28 input, 16-128 channels, 3x3). */
static const Layer LAYERS[] = {
    {"c1_1to16_28", 1, 16, 1, 28, 3, 1, 1},
    {"c1_1to32_28", 1, 32, 1, 28, 3, 1, 1},
    {"c2_16to32_28", 16, 32, 1, 28, 3, 1, 1},
    {"c2_32to32_28", 32, 32, 1, 28, 3, 1, 1},
    {"c3_32to64_14", 32, 64, 1, 14, 3, 1, 1},
    {"c3_64to64_14", 64, 64, 1, 14, 3, 1, 1},
    {"c4_64to128_7", 64, 128, 1, 7, 3, 1, 1},
    {"c4_128to128_7", 128, 128, 1, 7, 3, 1, 1},
    {"s2_32to64_28", 32, 64, 1, 28, 3, 2, 1},
    {"s2_64to128_14", 64, 128, 1, 14, 3, 2, 1},
    {"pw_s2_64to128_14", 64, 128, 1, 14, 1, 2, 0},
    {"pw_64to128_7", 64, 128, 1, 7, 1, 1, 0},
    {"dw_64_14", 64, 64, 64, 14, 3, 1, 1},
};

typedef struct {
    double median, lo, hi; /* ms */
} Timing;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef void (*Work)(void *arg);

static Timing time_work(Work fn, void *arg, int iters)
{
    double *t = xmalloc((size_t)iters * sizeof *t);
    /* warm up: at least 3 runs and 50 ms (BLAS threads wake, pages fault in) */
    double start = now_ms();
    for (int i = 0; i < 3 || now_ms() - start < 50; i++)
        fn(arg);
    for (int i = 0; i < iters; i++) {
        double t0 = now_ms();
        fn(arg);
        t[i] = now_ms() - t0;
    }
    qsort(t, (size_t)iters, sizeof *t, cmp_double);
    Timing r = {iters % 2 ? t[iters / 2] : (t[iters / 2 - 1] + t[iters / 2]) / 2, t[0], t[iters - 1]};
    free(t);
    return r;
}

typedef struct {
    float *y, *x, *w, *b, *scratch;
    ConvShape s;
    ConvPlan p;
} ConvRun;

static void run_conv(void *arg)
{
    ConvRun *r = arg;
    conv_forward(r->y, r->x, r->w, r->b, &r->s, &r->p, 0, r->scratch);
}

/* im2col alone, image by image, into one image's columns: its share of a conv */
static void run_im2col(void *arg)
{
    ConvRun *r = arg;
    const int64_t cin_g = r->s.cin / r->s.group, in_vol = r->s.in[0] * r->s.in[1] * r->s.in[2];
    const int64_t P = r->s.out[0] * r->s.out[1] * r->s.out[2];
    float *pad = r->scratch + (P * cin_g * r->s.k[0] * r->s.k[1] * r->s.k[2] + 15) / 16 * 16;
    for (int64_t n = 0; n < r->s.n; n++)
        for (int64_t g = 0; g < r->s.group; g++)
            im2col(r->scratch, P, r->x + (n * r->s.cin + g * cin_g) * in_vol, cin_g, &r->s, pad);
}

typedef struct {
    int64_t M, N, K, reps;
    float *a, *b, *c;
} GemmRun;

static void run_gemm(void *arg)
{
    GemmRun *g = arg;
    for (int64_t i = 0; i < g->reps; i++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->M, (int)g->N, (int)g->K, 1.0f, g->a,
                    (int)g->K, g->b, (int)g->N, 0.0f, g->c, (int)g->N);
}

static float *rand_buf(int64_t n, unsigned *seed)
{
    float *p = aligned_alloc(64, (size_t)((n * 4 + 63) / 64 * 64 + 64));
    for (int64_t i = 0; i < n; i++) {
        *seed = *seed * 1103515245u + 12345u;
        p[i] = (float)((*seed >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
    return p;
}

static void print_row(const char *what, Timing t, double flops, int batch, const char *note)
{
    printf("  %-22s %8.3f ms (%.3f-%.3f)  %7.1f GFLOP/s  %6.1f us/img %s\n", what, t.median, t.lo, t.hi,
           flops / (t.median * 1e6), t.median * 1e3 / batch, note);
}

/* A one-node Conv model of layer l for ONNX Runtime. */
static int write_model(const Layer *l, const ConvShape *s, const float *w, const float *b, const char *path)
{
    Graph *g = graph_new();
    g->opset = 13;
    g->ir_version = 8;
    Shape xs = shape_of(4, s->n, l->cin, l->hw, l->hw);
    Shape ws = shape_of(4, l->cout, l->cin / l->group, l->k, l->k), bs = shape_of(1, l->cout);
    Tensor *wt = tensor_new(SH_F32, &ws), *bt = tensor_new(SH_F32, &bs);
    memcpy(wt->data, w, tensor_bytes(wt));
    memcpy(bt->data, b, tensor_bytes(bt));
    int in[3] = {graph_add_input(g, "x", SH_F32, &xs), graph_add_const(g, "w", wt), graph_add_const(g, "b", bt)};
    int out = graph_value(g, "y");
    g->values[out].dtype = SH_F32;
    g->values[out].shape = shape_of(4, s->n, l->cout, s->out[1], s->out[2]);
    int node = graph_add_node(g, "Conv", "conv", 3, in, 1, &out);
    Node *n = &g->nodes[node];
    node_set_ints(n, "kernel_shape", (const int64_t[]){l->k, l->k}, 2);
    node_set_ints(n, "strides", (const int64_t[]){l->stride, l->stride}, 2);
    node_set_ints(n, "pads", (const int64_t[]){l->pad, l->pad, l->pad, l->pad}, 4);
    node_set_int(n, "group", l->group);
    graph_add_output(g, out);
    int rc = onnx_save(g, path, true);
    graph_free(g);
    return rc;
}

/* Times ONNX Runtime on the model through tests/ort/bench.js; 0 if unavailable. */
static int time_ort(const char *path, int batch, int threads, int iters, Timing *t)
{
    char cmd[1024], line[512];
    snprintf(cmd, sizeof cmd, "node tests/ort/bench.js '%s' --batch %d --threads %d --iters %d --warmup 3 2>&1",
             path, batch, threads, iters);
    FILE *p = popen(cmd, "r");
    if (!p)
        return 0;
    int ok = 0;
    while (fgets(line, sizeof line, p))
        if (sscanf(line, "{\"median_ms\":%lf,\"min_ms\":%lf,\"max_ms\":%lf", &t->median, &t->lo, &t->hi) == 3)
            ok = 1;
        else
            printf("  ort: %s", line);
    pclose(p);
    return ok;
}

static void machine_line(void)
{
    char model[256] = "unknown", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            char *c = strchr(line, ':');
            snprintf(model, sizeof model, "%.200s", c ? c + 2 : line);
            model[strcspn(model, "\n")] = '\0';
            break;
        }
    if (f)
        fclose(f);
    const char *ct = getenv("OPENBLAS_CORETYPE");
    printf("machine: %s, %ld cpus, BLAS core %s (OPENBLAS_CORETYPE=%s), BLAS threads %d\n", model,
           sysconf(_SC_NPROCESSORS_ONLN), openblas_get_corename(), ct ? ct : "unset", openblas_get_num_threads());
}

int main(int argc, char **argv)
{
    int batch = 64, iters = 30, ort = 0, sweep = 0;
    const char *dir = NULL, *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc)
            batch = atoi(argv[++i]);
        else if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc)
            iters = atoi(argv[++i]);
        else if (strcmp(argv[i], "--ort") == 0)
            ort = 1;
        else if (strcmp(argv[i], "--onnx-dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--sweep") == 0)
            sweep = 1;
        else {
            fprintf(stderr, "usage: conv_timing [--batch B] [--iters N] [--ort] [--onnx-dir DIR] [--only NAME] [--sweep]\n");
            return 2;
        }
    }
    if (batch < 1 || iters < 1) {
        fprintf(stderr, "conv_timing: --batch and --iters need positive integers\n");
        return 2;
    }
    if (ort && !dir)
        dir = "/tmp";
    machine_line();
    printf("batch %d, %d timed runs after >= 3 warm-up runs; GFLOP/s = 2*MACs/time\n", batch, iters);
    const int threads = openblas_get_num_threads();
    unsigned seed = 1;
    for (size_t li = 0; li < sizeof LAYERS / sizeof *LAYERS; li++) {
        const Layer *l = &LAYERS[li];
        if (only && !strstr(l->name, only))
            continue;
        const int64_t o = (l->hw + 2 * l->pad - l->k) / l->stride + 1;
        ConvShape s = {.n = batch, .cin = l->cin, .cout = l->cout, .group = l->group,
                       .in = {1, l->hw, l->hw}, .out = {1, o, o}, .k = {1, l->k, l->k},
                       .stride = {1, l->stride, l->stride}, .dil = {1, 1, 1}, .pad = {0, l->pad, l->pad}};
        const int64_t cin_g = l->cin / l->group, cout_g = l->cout / l->group, P = o * o, K = cin_g * l->k * l->k;
        const double flops = 2.0 * batch * l->cout * P * K;
        printf("%s: x [%d,%lld,%lld,%lld] -> y [%d,%lld,%lld,%lld], group %lld, stride %lld; GEMM M=%lld N=%lld(x%d) K=%lld\n",
               l->name, batch, (long long)l->cin, (long long)l->hw, (long long)l->hw, batch, (long long)l->cout,
               (long long)o, (long long)o, (long long)l->group, (long long)l->stride, (long long)cout_g,
               (long long)P, batch, (long long)K);
        ConvRun r = {.s = s};
        r.x = rand_buf(batch * l->cin * l->hw * l->hw, &seed);
        r.w = rand_buf(l->cout * K, &seed);
        r.b = rand_buf(l->cout, &seed);
        r.y = rand_buf(batch * l->cout * P, &seed);
        const ConvPlan chosen = conv_plan(&s, threads);
        const char *names[] = {"direct", "gemm per image", "gemm batch", "gemm shift", "winograd", "winograd4"};
        for (int algo = 0; algo <= CONV_WINOGRAD4; algo++) {
            if ((algo == CONV_DIRECT && cin_g != 1) || (algo == CONV_GEMM_SHIFT && !conv_shift_ok(&s)) ||
                ((algo == CONV_WINOGRAD || algo == CONV_WINOGRAD4) && !conv_winograd_ok(&s)))
                continue;
            /* the chosen algorithm with its own chunk; the others as forced plans */
            r.p = algo == (int)chosen.algo ? chosen : conv_plan_with(&s, (ConvAlgo)algo, 0);
            r.scratch = r.p.scratch_bytes ? aligned_alloc(64, (r.p.scratch_bytes + 63) / 64 * 64) : NULL;
            char note[64];
            snprintf(note, sizeof note, "%s", algo == (int)chosen.algo ? "[chosen] " : "");
            if (algo >= CONV_GEMM_BATCH)
                snprintf(note + strlen(note), sizeof note - strlen(note), "chunk %lld, %.1f MB scratch",
                         (long long)r.p.chunk, r.p.scratch_bytes / 1048576.0);
            print_row(names[algo], time_work(run_conv, &r, iters), flops, batch, note);
            free(r.scratch);
        }
        if (sweep) {
            r.p = conv_plan_with(&s, CONV_GEMM_IMAGE, 0);
            r.scratch = aligned_alloc(64, (r.p.scratch_bytes + 63) / 64 * 64 + 64);
            print_row("im2col alone", time_work(run_im2col, &r, iters), flops, batch, "(GFLOP/s of the conv)");
            free(r.scratch);
            for (int algo = CONV_GEMM_BATCH; algo <= CONV_WINOGRAD4; algo++)
                for (int64_t chunk = 1; chunk <= batch; chunk *= 2) {
                    if ((algo == CONV_GEMM_SHIFT && !conv_shift_ok(&s)) || ((algo == CONV_WINOGRAD || algo == CONV_WINOGRAD4) && !conv_winograd_ok(&s)))
                        break;
                    r.p = conv_plan_with(&s, (ConvAlgo)algo, chunk);
                    r.scratch = aligned_alloc(64, (r.p.scratch_bytes + 63) / 64 * 64);
                    char what[48];
                    snprintf(what, sizeof what, "%s chunk %lld", names[algo], (long long)chunk);
                    print_row(what, time_work(run_conv, &r, iters), flops, batch, "");
                    free(r.scratch);
                }
        }
        if (l->group == 1) {
            /* the ceiling: the same GEMM shapes without im2col or copies */
            GemmRun g = {.M = cout_g, .N = batch * P, .K = K, .reps = 1};
            g.a = r.w;
            g.b = rand_buf(g.K * g.N, &seed);
            g.c = rand_buf(g.M * g.N, &seed);
            print_row("sgemm one batch GEMM", time_work(run_gemm, &g, iters), flops, batch, "");
            g.N = P;
            g.reps = batch;
            print_row("sgemm per-image GEMMs", time_work(run_gemm, &g, iters), flops, batch, "");
            free(g.b);
            free(g.c);
        }
        if (dir) {
            char path[512];
            snprintf(path, sizeof path, "%s/conv_timing_%s_b%d.onnx", dir, l->name, batch);
            if (write_model(l, &s, r.w, r.b, path) < 0)
                printf("  cannot write %s: %s\n", path, sh_errmsg());
            else if (ort) {
                Timing t;
                if (time_ort(path, batch, threads, iters, &t))
                    print_row("onnxruntime", t, flops, batch, "");
            }
        }
        free(r.x);
        free(r.w);
        free(r.b);
        free(r.y);
    }
    return 0;
}
