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

/* Loads one split of a named dataset into *ds. */
static int load_split(const Command *c, const char *kind, const char *split, int64_t limit,
                      int64_t classes, const DataNorm *norm, Dataset *ds)
{
    if (strcmp(kind, "fashion-mnist") == 0 || strcmp(kind, "mnist") == 0) {
        const char *dir = cmd_get(c, "path") ? cmd_get(c, "path")
                          : kind[0] == 'f'    ? "/usr/share/datasets/fashion-mnist"
                                              : "/usr/share/datasets/mnist";
        return dataset_load_mnist(ds, dir, split, limit, norm);
    }
    bool idx = kind[0] == 'i';
    const char *pre = strcmp(split, "train") == 0 ? "train-" : "test-";
    char ka[32], kb[32];
    snprintf(ka, sizeof ka, "%s%s", pre, idx ? "images" : "x");
    snprintf(kb, sizeof kb, "%s%s", pre, idx ? "labels" : "y");
    const char *a = cmd_get(c, ka), *b = cmd_get(c, kb);
    if (!a && !b) { /* images=/labels= (x=/y=) name the only split */
        a = cmd_get(c, idx ? "images" : "x");
        b = cmd_get(c, idx ? "labels" : "y");
    }
    if (!a || !b)
        return sh_fail(SH_E_ARG, "data %s needs %s", kind, idx ? "images= and labels=" : "x= and y=");
    return idx ? dataset_load_idx(ds, a, b, limit, (int)classes, norm)
               : dataset_load_npy(ds, a, b, limit, (int)classes, norm);
}

static void describe_split(Out *o, cJSON *obj, const char *name, const Dataset *ds)
{
    char shape[96];
    Shape s = shape_of(4, ds->n, ds->c, ds->h, ds->w);
    shape_str(&s, shape, sizeof shape);
    out_text(o, "  %s: %lld samples %s, %d classes\n", name, (long long)ds->n, shape, ds->n_classes);
    cJSON *e = cJSON_AddObjectToObject(obj, name);
    cJSON_AddNumberToObject(e, "samples", (double)ds->n);
    cJSON_AddStringToObject(e, "shape", shape);
    cJSON_AddNumberToObject(e, "classes", ds->n_classes);
}

int cmd_data(Workspace *ws, const Command *c, Out *o)
{
    const char *kind = cmd_pos(c, 0), *split = cmd_get(c, "split"), *src = "";
    int64_t limit, classes, seed;
    double val;
    DataNorm norm;
    Dataset train = {0}, test = {0};
    int rc;
    if ((rc = arg_int(c, "limit", 0, 0, INT64_MAX / 2, &limit)) < 0 ||
        (rc = arg_int(c, "classes", 0, 0, 1 << 20, &classes)) < 0 ||
        (rc = arg_int(c, "seed", 1, 0, INT64_MAX / 2, &seed)) < 0 ||
        (rc = arg_double(c, "val", 0, 0, 0.9, &val)) < 0)
        return rc;
    if (!split) /* images=/x= without a split name is test data */
        split = (cmd_get(c, "images") || cmd_get(c, "x")) ? "test" : "all";
    bool want_train = strcmp(split, "test") != 0, want_test = strcmp(split, "train") != 0;
    bool fashion = strcmp(kind, "fashion-mnist") == 0;
    if (!fashion && strcmp(kind, "mnist") && strcmp(kind, "idx") && strcmp(kind, "npy"))
        return sh_fail(SH_E_ARG, "unknown data source '%s' (fashion-mnist, mnist, idx, npy)", kind);
    if ((rc = choose_norm(ws, c, strcmp(kind, "mnist") == 0 ? MNIST_NORM : FASHION_MNIST_NORM, &norm, &src)) < 0)
        return rc;
    if (want_train && (rc = load_split(c, kind, "train", limit, classes, &norm, &train)) < 0)
        return rc;
    if (want_test && (rc = load_split(c, kind, "test", limit, classes, &norm, &test)) < 0) {
        if (want_train)
            dataset_done(&train);
        return rc;
    }
    rc = ws_set_data(ws, want_train ? &train : NULL, want_test ? &test : NULL, val, (uint64_t)seed, kind);
    if (rc < 0) {
        if (want_train)
            dataset_done(&train);
        if (want_test)
            dataset_done(&test);
        return rc;
    }
    out_text(o, "data: %s, normalized by %s\n", kind, src);
    cJSON_AddStringToObject(o->obj, "source", kind);
    cJSON_AddStringToObject(o->obj, "normalize", src);
    if (ws->has_train) {
        describe_split(o, o->obj, "train", &ws->train);
        if (ws->val.n)
            out_text(o, "  validation: %lld of the training samples (seed %lld), %lld left to train on\n",
                     (long long)ws->val.n, (long long)seed, (long long)ws->fit.n);
        cJSON_AddNumberToObject(o->obj, "val_samples", (double)ws->val.n);
    }
    if (ws->has_test)
        describe_split(o, o->obj, "test", &ws->test);
    return 0;
}

int cmd_eval(Workspace *ws, const Command *c, Out *o)
{
    int64_t batch, limit;
    int rc;
    const char *split = cmd_get(c, "split");
    if ((rc = ws_require_model(ws)) < 0 || (rc = ws_require_data(ws)) < 0 ||
        (rc = arg_int(c, "batch", ws->batch, 1, 1 << 16, &batch)) < 0 ||
        (rc = arg_int(c, "limit", 0, 0, INT64_MAX / 2, &limit)) < 0)
        return rc;
    if (!split)
        split = ws->has_test ? "test" : "val";
    const DataSubset *set;
    if ((rc = ws_subset(ws, split, &set)) < 0)
        return rc;
    DataSubset part = *set;
    if (limit > 0 && limit < part.n)
        part.n = limit;
    EvalResult r;
    if ((rc = evaluate(ws->model, &part, batch, &r)) < 0)
        return rc;
    if (r.samples == 0) { /* a fixed-batch model skips a partial batch: all of them here */
        const Value *in = &ws->model->values[ws->model->inputs[0]];
        if (in->shape.d[0] < 0)
            return sh_fail(SH_E_STATE, "nothing was evaluated: the %s split has no samples", split);
        return sh_fail(SH_E_SHAPE,
                       "nothing was evaluated: model input '%s' takes batches of exactly %lld samples and the %s split has %lld",
                       in->name, (long long)in->shape.d[0], split, (long long)part.n);
    }
    out_text(o, "eval %s: accuracy %.2f%% (%lld/%lld), loss %.4f, %.0f images/s, batch %lld: %.2f ms\n",
             split, 100 * r.accuracy, (long long)r.correct, (long long)r.samples, r.loss,
             r.images_per_s, (long long)r.batch, r.batch_ms);
    cJSON_AddStringToObject(o->obj, "split", split);
    cJSON_AddNumberToObject(o->obj, "accuracy", r.accuracy);
    cJSON_AddNumberToObject(o->obj, "correct", (double)r.correct);
    cJSON_AddNumberToObject(o->obj, "samples", (double)r.samples);
    cJSON_AddNumberToObject(o->obj, "loss", r.loss);
    cJSON_AddNumberToObject(o->obj, "images_per_s", r.images_per_s);
    cJSON_AddNumberToObject(o->obj, "batch", (double)r.batch);
    cJSON_AddNumberToObject(o->obj, "batch_ms", r.batch_ms);
    return 0;
}
