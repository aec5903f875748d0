/* Training throughput of shears, timed the way bench/torch_train.py times
 * PyTorch: one seeded random batch of Fashion-MNIST shape reused every
 * step (so only the training step is timed), warm-up steps, then timed
 * steps inside the process; one JSON line with the median step time and
 * images/s.
 * Usage: bench_train ARCH.json|MODEL.onnx [--batch 128] [--threads T]
 *        [--steps 30] [--warmup 3] [--opt sgd|adamw] */
#include "core/builder.h"
#include "core/data.h"
#include "core/error.h"
#include "core/onnx.h"
#include "core/threads.h"
#include "core/train.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int load(const char *path, Graph **g)
{
    size_t n = strlen(path);
    if (n > 5 && strcmp(path + n - 5, ".json") == 0)
        return model_build_file(path, g);
    int rc = onnx_load(path, g);
    return rc ? rc : graph_prepare(*g);
}

static long minor_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *opt = "sgd";
    int64_t batch = 128;
    int threads = 1, steps = 30, warmup = 3;
    for (int i = 1; i < argc; i++) {
        bool more = i + 1 < argc;
        if (!strcmp(argv[i], "--batch") && more)
            batch = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && more)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && more)
            steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && more)
            warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--opt") && more)
            opt = argv[++i];
        else if (argv[i][0] != '-' && !model)
            model = argv[i];
        else {
            fprintf(stderr, "usage: bench_train ARCH.json|MODEL.onnx [--batch B] [--threads T] [--steps N] [--warmup W] [--opt sgd|adamw]\n");
            return 2;
        }
    }
    Graph *g;
    if (!model || batch < 1 || steps < 1 || load(model, &g) < 0) {
        fprintf(stderr, "bench_train: %s\n", model ? sh_errmsg() : "no model given");
        return 1;
    }
    sh_set_threads(threads);
    Shape xs;
    graph_input_shape(g, 0, batch, &xs);
    Tensor x, y;
    Shape ys = shape_of(1, batch);
    tensor_alloc(&x, SH_F32, &xs);
    tensor_alloc(&y, SH_I64, &ys);
    Xoshiro r;
    xoshiro_seed(&r, 1);
    for (int64_t i = 0; i < x.numel; i++)
        tensor_f32(&x)[i] = xoshiro_uniform(&r) * 2 - 1;
    for (int64_t i = 0; i < batch; i++)
        tensor_i64(&y)[i] = (int64_t)xoshiro_below(&r, 10);
    TrainConfig cfg = train_config_default();
    cfg.threads = threads;
    if (!strcmp(opt, "adamw")) {
        cfg.opt = OPT_ADAMW;
        cfg.lr = 1e-3;
    }
    Trainer t;
    double *times = xcalloc((size_t)steps, sizeof *times);
    int rc = trainer_init(&t, g, NULL, batch, warmup + steps, &cfg);
    StepStats st;
    for (int i = 0; rc == 0 && i < warmup; i++)
        rc = trainer_step(&t, &x, &y, &st);
    long faults = minor_faults();
    double t0 = now_seconds();
    for (int i = 0; rc == 0 && i < steps; i++) {
        double s0 = now_seconds();
        rc = trainer_step(&t, &x, &y, &st);
        times[i] = now_seconds() - s0;
    }
    double window = now_seconds() - t0;
    if (rc < 0) {
        fprintf(stderr, "bench_train: %s\n", sh_errmsg());
    } else {
        qsort(times, (size_t)steps, sizeof *times, cmp_double);
        double med = times[steps / 2];
        printf("{\"median_ms\":%.3f,\"min_ms\":%.3f,\"max_ms\":%.3f,\"images_per_s\":%.1f,\"images_per_s_window\":%.1f,"
               "\"faults_per_step\":%.1f,\"batch\":%lld,\"threads\":%d,\"steps\":%d,\"blas_core\":\"%s\"}\n",
               med * 1e3, times[0] * 1e3, times[steps - 1] * 1e3, (double)batch / med,
               (double)batch * steps / window, (double)(minor_faults() - faults) / steps, (long long)batch,
               threads, steps, sh_blas_core());
    }
    trainer_done(&t);
    free(times);
    tensor_done(&x);
    tensor_done(&y);
    graph_free(g);
    return rc < 0 ? 1 : 0;
}
