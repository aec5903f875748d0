/* Data commands: data, eval. */
#include "commands.h"

#include "core/error.h"
#include "core/evaluate.h"
#include "core/util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FASHION_MNIST_NORM "0.2860,0.3530"
#define MNIST_NORM "0.1307,0.3081"

/* Parses "MEAN,STD" or "M1,M2,M3,S1,S2,S3" (per channel) or "none". */
static int parse_norm(const char *s, const char *what, DataNorm *out)
{
    if (strcmp(s, "none") == 0) {
        *out = data_norm_none();
        return 0;
    }
    float v[2 * DATA_MAX_CHANNELS];
    int n = 0;
    const char *p = s;
    while (n < 2 * DATA_MAX_CHANNELS) {
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        if (end == p || errno || !isfinite(x))
            break;
        v[n++] = (float)x;
        p = end;
        if (*p != ',')
            break;
        p++;
    }
    if (*p || n < 2 || n % 2)
        return sh_fail(SH_E_ARG, "%s must be MEAN,STD (or per-channel means then stds), got '%s'", what, s);
    DataNorm d = {.n = n / 2};
    for (int i = 0; i < d.n; i++) {
        d.mean[i] = v[i];
        d.std[i] = v[d.n + i];
        if (!(d.std[i] > 0))
            return sh_fail(SH_E_ARG, "%s: standard deviations must be positive, got '%s'", what, s);
    }
    *out = d;
    return 0;
}

/* normalize= wins; then the model's recorded shears.normalize; then the
 * dataset's usual values. */
static int choose_norm(const Workspace *ws, const Command *c, const char *fallback, DataNorm *norm,
                       const char **source)
{
    const char *arg = cmd_get(c, "normalize");
    const char *meta = ws->model ? graph_get_meta(ws->model, "shears.normalize") : NULL;
    if (arg) {
        *source = "normalize=";
        return parse_norm(arg, "normalize", norm);
    }
    if (meta) {
        *source = "the model's shears.normalize";
        return parse_norm(meta, "the model's shears.normalize", norm);
    }
    *source = "default";
    return parse_norm(fallback, "normalize", norm);
}

int cmd_data(Workspace *ws, const Command *c, Out *o)
{
    const char *kind = cmd_pos(c, 0), *split = cmd_get(c, "split"), *src = "";
    int64_t limit, classes;
    DataNorm norm;
    Dataset ds = {0};
    char desc[512];
    int rc;
    if ((rc = arg_int(c, "limit", 0, 0, INT64_MAX / 2, &limit)) < 0 ||
        (rc = arg_int(c, "classes", 0, 0, 1 << 20, &classes)) < 0)
        return rc;
    if (!split)
        split = "test";
    if (strcmp(kind, "fashion-mnist") == 0 || strcmp(kind, "mnist") == 0) {
        bool fashion = kind[0] == 'f';
        char dir[512];
        snprintf(dir, sizeof dir, "%s", cmd_get(c, "path") ? cmd_get(c, "path")
                                        : fashion ? "/usr/share/datasets/fashion-mnist"
                                                  : "/usr/share/datasets/mnist");
        if ((rc = choose_norm(ws, c, fashion ? FASHION_MNIST_NORM : MNIST_NORM, &norm, &src)) < 0)
            return rc;
        if ((rc = dataset_load_mnist(&ds, dir, split, limit, &norm)) < 0)
            return rc;
        snprintf(desc, sizeof desc, "%s %s", kind, split);
    } else if (strcmp(kind, "idx") == 0 || strcmp(kind, "npy") == 0) {
        bool idx = kind[0] == 'i';
        const char *a = cmd_get(c, idx ? "images" : "x"), *b = cmd_get(c, idx ? "labels" : "y");
        if (!a || !b)
            return sh_fail(SH_E_ARG, "data %s needs %s", kind, idx ? "images= and labels=" : "x= and y=");
        if ((rc = choose_norm(ws, c, FASHION_MNIST_NORM, &norm, &src)) < 0)
            return rc;
        rc = idx ? dataset_load_idx(&ds, a, b, limit, (int)classes, &norm)
                 : dataset_load_npy(&ds, a, b, limit, (int)classes, &norm);
        if (rc < 0)
            return rc;
        snprintf(desc, sizeof desc, "%s", a);
    } else
        return sh_fail(SH_E_ARG, "unknown data source '%s' (fashion-mnist, mnist, idx, npy)", kind);
    char shape[96];
    Shape s = shape_of(4, ds.n, ds.c, ds.h, ds.w);
    shape_str(&s, shape, sizeof shape);
    out_text(o, "data: %s, %lld samples %s, %d classes, normalized by %s\n", desc, (long long)ds.n,
             shape, ds.n_classes, src);
    cJSON_AddStringToObject(o->obj, "source", desc);
    cJSON_AddNumberToObject(o->obj, "samples", (double)ds.n);
    cJSON_AddStringToObject(o->obj, "shape", shape);
    cJSON_AddNumberToObject(o->obj, "classes", ds.n_classes);
    ws_set_data(ws, &ds, desc);
    return 0;
}

int cmd_eval(Workspace *ws, const Command *c, Out *o)
{
    int64_t batch, limit;
    int rc;
    if ((rc = ws_require_model(ws)) < 0 || (rc = ws_require_data(ws)) < 0 ||
        (rc = arg_int(c, "batch", ws->batch, 1, 1 << 16, &batch)) < 0 ||
        (rc = arg_int(c, "limit", 0, 0, INT64_MAX / 2, &limit)) < 0)
        return rc;
    DataSubset set;
    data_subset_all(&set, &ws->data);
    if (limit > 0 && limit < set.n)
        set.n = limit;
    EvalResult r;
    rc = evaluate(ws->model, &set, batch, &r);
    data_subset_done(&set);
    if (rc < 0)
        return rc;
    out_text(o, "eval: accuracy %.2f%% (%lld/%lld), loss %.4f, %.0f images/s, batch %lld: %.2f ms\n",
             100 * r.accuracy, (long long)r.correct, (long long)r.samples, r.loss, r.images_per_s,
             (long long)r.batch, r.batch_ms);
    cJSON_AddNumberToObject(o->obj, "accuracy", r.accuracy);
    cJSON_AddNumberToObject(o->obj, "correct", (double)r.correct);
    cJSON_AddNumberToObject(o->obj, "samples", (double)r.samples);
    cJSON_AddNumberToObject(o->obj, "loss", r.loss);
    cJSON_AddNumberToObject(o->obj, "images_per_s", r.images_per_s);
    cJSON_AddNumberToObject(o->obj, "batch", (double)r.batch);
    cJSON_AddNumberToObject(o->obj, "batch_ms", r.batch_ms);
    return 0;
}
