#include "data.h"

#include "error.h"
#include "fileio.h"
#include "idx.h"
#include "npy.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- portable random numbers ---------------------------------------- */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void xoshiro_seed(Xoshiro *r, uint64_t seed)
{
    uint64_t sm = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&sm);
}

uint64_t xoshiro_next(Xoshiro *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t xoshiro_below(Xoshiro *r, uint64_t n)
{
    /* Reject the top partial copy of [0, n) so every value is equally likely. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = xoshiro_next(r);
    while (x >= limit);
    return x % n;
}

float xoshiro_uniform(Xoshiro *r) { return (float)(xoshiro_next(r) >> 40) * (1.0f / 16777216.0f); }

void xoshiro_shuffle(Xoshiro *r, int64_t *a, int64_t n)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)xoshiro_below(r, (uint64_t)i + 1);
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* An independent stream per (seed, epoch, purpose). */
static void seed_stream(Xoshiro *r, uint64_t seed, uint64_t epoch, uint64_t purpose)
{
    uint64_t sm = seed;
    uint64_t a = splitmix64(&sm);
    sm = a ^ epoch;
    uint64_t b = splitmix64(&sm);
    sm = b ^ purpose;
    xoshiro_seed(r, splitmix64(&sm));
}

enum { STREAM_SPLIT = 1, STREAM_ORDER = 2, STREAM_AUGMENT = 3 };

/* ---- datasets ---------------------------------------------------------- */

DataNorm data_norm_none(void) { return (DataNorm){.n = 0}; }

DataNorm data_norm_one(float mean, float std) { return (DataNorm){.n = 1, .mean = {mean}, .std = {std}}; }

/* Expands norm to one mean/std per channel, checking the values. */
static int norm_expand(DataNorm *out, const DataNorm *norm, int64_t c, const char *x_name)
{
    DataNorm none = data_norm_none();
    if (!norm)
        norm = &none;
    if (norm->n < 0 || (norm->n > 1 && norm->n != c))
        return sh_fail(SH_E_ARG, "normalization has %d mean/std values but %s has %lld channels (give 1 or %lld)",
                       norm->n, x_name, (long long)c, (long long)c);
    out->n = (int)c;
    for (int64_t i = 0; i < c; i++) {
        int k = norm->n > 1 ? (int)i : 0;
        out->mean[i] = norm->n ? norm->mean[k] : 0.0f;
        out->std[i] = norm->n ? norm->std[k] : 1.0f;
        if (!isfinite(out->mean[i]) || !isfinite(out->std[i]) || !(out->std[i] > 0))
            return sh_fail(SH_E_ARG, "normalization of channel %lld needs a finite mean and a positive std (got %g, %g)",
                           (long long)i, out->mean[i], out->std[i]);
    }
    return 0;
}

static int check_images(const Tensor *x, const char *x_name)
{
    char buf[160];
    if (x->dtype != SH_U8 && x->dtype != SH_F32)
        return sh_fail(SH_E_UNSUPPORTED, "%s: images must be uint8 or float32, not %s", x_name,
                       dtype_name(x->dtype));
    if (x->shape.rank != 3 && x->shape.rank != 4)
        return sh_fail(SH_E_SHAPE, "%s: images must be [N,H,W] or [N,C,H,W], got %s", x_name,
                       shape_str(&x->shape, buf, sizeof buf));
    if (x->shape.rank == 4 && x->shape.d[1] > DATA_MAX_CHANNELS)
        return sh_fail(SH_E_SHAPE, "%s: images %s have %lld channels, more than %d (shears expects [N,C,H,W], not [N,H,W,C])",
                       x_name, shape_str(&x->shape, buf, sizeof buf), (long long)x->shape.d[1], DATA_MAX_CHANNELS);
    return 0;
}

static int check_labels(const Tensor *y, const char *y_name)
{
    char buf[160];
    if (y->dtype != SH_U8 && y->dtype != SH_I64)
        return sh_fail(SH_E_UNSUPPORTED, "%s: labels must be int64 or uint8, not %s", y_name, dtype_name(y->dtype));
    if (y->shape.rank != 1)
        return sh_fail(SH_E_SHAPE, "%s: labels must be [N], got %s", y_name, shape_str(&y->shape, buf, sizeof buf));
    return 0;
}

static int check_counts(int64_t n_images, int64_t n_labels, const char *x_name, const char *y_name)
{
    if (n_images != n_labels)
        return sh_fail(SH_E_SHAPE, "%s has %lld labels but %s has %lld images", y_name, (long long)n_labels, x_name,
                       (long long)n_images);
    return 0;
}

/* Labels as int64 in [0, n_classes); *n_classes 0 becomes max + 1. */
static int labels_to_i64(Tensor *out, const Tensor *y, int *n_classes, const char *y_name)
{
    int64_t max = -1;
    int rc = tensor_alloc(out, SH_I64, &y->shape);
    if (rc < 0)
        return sh_fail_prefix(rc, "%s", y_name);
    int64_t *dst = tensor_i64(out);
    for (int64_t i = 0; i < y->numel; i++) {
        int64_t v = tensor_get_i(y, i);
        if (v < 0 || (*n_classes > 0 && v >= *n_classes)) {
            tensor_done(out);
            if (*n_classes > 0)
                return sh_fail(SH_E_FORMAT, "%s: label %lld at index %lld is out of range [0, %d)", y_name,
                               (long long)v, (long long)i, *n_classes);
            return sh_fail(SH_E_FORMAT, "%s: label %lld at index %lld is negative", y_name, (long long)v,
                           (long long)i);
        }
        if (v > INT32_MAX - 1) {
            tensor_done(out);
            return sh_fail(SH_E_FORMAT, "%s: label %lld at index %lld is implausibly large", y_name, (long long)v,
                           (long long)i);
        }
        dst[i] = v;
        if (v > max)
            max = v;
    }
    if (*n_classes == 0)
        *n_classes = (int)(max + 1);
    return 0;
}

/* out[n,c,:] = (pixel / 255 - mean[c]) / std[c]. */
static void images_from_u8(float *out, const uint8_t *in, int64_t n, int64_t c, int64_t hw, const DataNorm *norm)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t ch = 0; ch < c; ch++) {
            float mean = norm->mean[ch], inv_std = 1.0f / norm->std[ch];
            const uint8_t *src = in + (i * c + ch) * hw;
            float *dst = out + (i * c + ch) * hw;
            for (int64_t k = 0; k < hw; k++)
                dst[k] = ((float)src[k] / 255.0f - mean) * inv_std;
        }
}

static void images_normalize_f32(float *x, int64_t n, int64_t c, int64_t hw, const DataNorm *norm)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t ch = 0; ch < c; ch++) {
            float mean = norm->mean[ch], inv_std = 1.0f / norm->std[ch];
            if (mean == 0.0f && inv_std == 1.0f)
                continue;
            float *p = x + (i * c + ch) * hw;
            for (int64_t k = 0; k < hw; k++)
                p[k] = (p[k] - mean) * inv_std;
        }
}

int dataset_from_tensors(Dataset *ds, Tensor *x, Tensor *y, int n_classes, const DataNorm *norm,
                         const char *x_name, const char *y_name)
{
    Tensor labels = {0};
    memset(ds, 0, sizeof *ds);
    int rc;
    if ((rc = check_images(x, x_name)) < 0 || (rc = check_labels(y, y_name)) < 0 ||
        (rc = check_counts(x->shape.d[0], y->shape.d[0], x_name, y_name)) < 0)
        goto fail;
    if (n_classes < 0) {
        rc = sh_fail(SH_E_ARG, "the number of classes must not be negative (got %d)", n_classes);
        goto fail;
    }
    Shape s4 = x->shape.rank == 4 ? x->shape : shape_of(4, x->shape.d[0], (int64_t)1, x->shape.d[1], x->shape.d[2]);
    int64_t n = s4.d[0], c = s4.d[1], hw = s4.d[2] * s4.d[3];
    if ((rc = norm_expand(&ds->norm, norm, c, x_name)) < 0 || (rc = labels_to_i64(&labels, y, &n_classes, y_name)) < 0)
        goto fail;
    if (x->dtype == SH_U8) {
        if ((rc = tensor_alloc(&ds->x, SH_F32, &s4)) < 0) {
            sh_fail_prefix(rc, "%s", x_name);
            goto fail;
        }
        images_from_u8(tensor_f32(&ds->x), tensor_u8(x), n, c, hw, &ds->norm);
        tensor_done(x);
    } else {
        int64_t bad = tensor_find_nonfinite(x);
        if (bad >= 0) {
            rc = sh_fail(SH_E_NUMERIC, "%s: image value at element %lld is %g", x_name, (long long)bad,
                         (double)tensor_f32(x)[bad]);
            goto fail;
        }
        ds->x = *x; /* take the buffer */
        ds->x.shape = s4;
        memset(x, 0, sizeof *x);
        images_normalize_f32(tensor_f32(&ds->x), n, c, hw, &ds->norm);
    }
    tensor_done(y);
    ds->y = labels;
    ds->n = n;
    ds->c = c;
    ds->h = s4.d[2];
    ds->w = s4.d[3];
    ds->n_classes = n_classes;
    return 0;
fail:
    tensor_done(&labels);
    tensor_done(x);
    tensor_done(y);
    dataset_done(ds);
    return rc;
}

int dataset_load_idx(Dataset *ds, const char *images_path, const char *labels_path, int64_t limit,
                     int n_classes, const DataNorm *norm)
{
    Shape xs, ys;
    Tensor x = {0}, y = {0};
    memset(ds, 0, sizeof *ds);
    int rc;
    /* Headers first: mismatched files fail before megabytes are inflated. */
    if ((rc = idx_read_shape(&xs, images_path)) < 0 || (rc = idx_read_shape(&ys, labels_path)) < 0)
        return rc;
    Tensor xh = {.dtype = SH_U8, .shape = xs}, yh = {.dtype = SH_U8, .shape = ys};
    if ((rc = check_images(&xh, images_path)) < 0 || (rc = check_labels(&yh, labels_path)) < 0 ||
        (rc = check_counts(xs.d[0], ys.d[0], images_path, labels_path)) < 0)
        return rc;
    if ((rc = idx_read(&x, images_path, limit)) < 0)
        return rc;
    if ((rc = idx_read(&y, labels_path, limit)) < 0) {
        tensor_done(&x);
        return rc;
    }
    return dataset_from_tensors(ds, &x, &y, n_classes, norm, images_path, labels_path);
}

/* dir/name.gz, or dir/name when only the uncompressed file is there. */
static char *mnist_path(const char *dir, const char *name)
{
    char *gz = xasprintf("%s/%s.gz", dir, name);
    if (file_exists(gz))
        return gz;
    char *raw = xasprintf("%s/%s", dir, name);
    if (file_exists(raw)) {
        free(gz);
        return raw;
    }
    free(raw);
    return gz; /* the error will name the usual file */
}

int dataset_load_mnist(Dataset *ds, const char *dir, const char *split, int64_t limit, const DataNorm *norm)
{
    memset(ds, 0, sizeof *ds);
    const char *prefix = split && strcmp(split, "train") == 0 ? "train" : split && strcmp(split, "test") == 0 ? "t10k" : NULL;
    if (!prefix)
        return sh_fail(SH_E_ARG, "split must be train or test, not '%s'", split ? split : "");
    char name[64];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte", prefix);
    char *images = mnist_path(dir, name);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", prefix);
    char *labels = mnist_path(dir, name);
    int rc = dataset_load_idx(ds, images, labels, limit, 10, norm);
    free(images);
    free(labels);
    return rc;
}

int dataset_load_npy(Dataset *ds, const char *x_path, const char *y_path, int64_t limit, int n_classes,
                     const DataNorm *norm)
{
    NpyHeader xh, yh;
    Tensor x = {0}, y = {0};
    memset(ds, 0, sizeof *ds);
    int rc;
    if ((rc = npy_read_header(&xh, x_path)) < 0 || (rc = npy_read_header(&yh, y_path)) < 0)
        return rc;
    Tensor xd = {.dtype = xh.dtype, .shape = xh.shape}, yd = {.dtype = yh.dtype, .shape = yh.shape};
    if ((rc = check_images(&xd, x_path)) < 0 || (rc = check_labels(&yd, y_path)) < 0 ||
        (rc = check_counts(xh.shape.d[0], yh.shape.d[0], x_path, y_path)) < 0)
        return rc;
    if ((rc = npy_read_rows(&x, x_path, limit)) < 0)
        return rc;
    if ((rc = npy_read_rows(&y, y_path, limit)) < 0) {
        tensor_done(&x);
        return rc;
    }
    return dataset_from_tensors(ds, &x, &y, n_classes, norm, x_path, y_path);
}

void dataset_done(Dataset *ds)
{
    if (!ds)
        return;
    tensor_done(&ds->x);
    tensor_done(&ds->y);
    memset(ds, 0, sizeof *ds);
}

/* ---- subsets and splits ------------------------------------------------ */

void data_subset_all(DataSubset *s, const Dataset *ds)
{
    s->ds = ds;
    s->n = ds->n;
    s->idx = xmalloc((size_t)(ds->n ? ds->n : 1) * sizeof *s->idx);
    for (int64_t i = 0; i < ds->n; i++)
        s->idx[i] = i;
}

int data_split(DataSubset *train, DataSubset *val, const Dataset *ds, double val_fraction, uint64_t seed)
{
    memset(train, 0, sizeof *train);
    memset(val, 0, sizeof *val);
    if (!(val_fraction >= 0.0 && val_fraction < 1.0))
        return sh_fail(SH_E_ARG, "validation fraction must be in [0, 1), not %g", val_fraction);
    int64_t n = ds->n, n_val = (int64_t)llround(val_fraction * (double)n);
    if (n > 0 && n_val >= n)
        return sh_fail(SH_E_ARG, "validation fraction %g of %lld samples leaves none for training", val_fraction,
                       (long long)n);
    /* The first n_val of a seeded permutation go to validation; both
     * lists are then read off in ascending order. */
    DataSubset all;
    data_subset_all(&all, ds);
    Xoshiro r;
    seed_stream(&r, seed, 0, STREAM_SPLIT);
    xoshiro_shuffle(&r, all.idx, n);
    unsigned char *in_val = xcalloc((size_t)(n ? n : 1), 1);
    for (int64_t i = 0; i < n_val; i++)
        in_val[all.idx[i]] = 1;
    *train = (DataSubset){.ds = ds, .n = n - n_val, .idx = xmalloc((size_t)(n - n_val + 1) * sizeof(int64_t))};
    *val = (DataSubset){.ds = ds, .n = n_val, .idx = xmalloc((size_t)(n_val + 1) * sizeof(int64_t))};
    int64_t nt = 0, nv = 0;
    for (int64_t i = 0; i < n; i++) {
        if (in_val[i])
            val->idx[nv++] = i;
        else
            train->idx[nt++] = i;
    }
    free(in_val);
    data_subset_done(&all);
    return 0;
}

void data_subset_done(DataSubset *s)
{
    if (!s)
        return;
    free(s->idx);
    memset(s, 0, sizeof *s);
}

/* ---- batches ----------------------------------------------------------- */

static void iter_start_epoch(BatchIter *it, int64_t epoch)
{
    it->epoch = epoch;
    it->pos = 0;
    if (it->set->n)
        memcpy(it->order, it->set->idx, (size_t)it->set->n * sizeof *it->order);
    if (it->opt.shuffle) {
        Xoshiro r;
        seed_stream(&r, it->opt.seed, (uint64_t)epoch, STREAM_ORDER);
        xoshiro_shuffle(&r, it->order, it->set->n);
    }
    seed_stream(&it->aug, it->opt.seed, (uint64_t)epoch, STREAM_AUGMENT);
}

int batch_iter_init(BatchIter *it, const DataSubset *set, int64_t batch, const BatchOpts *opt)
{
    static const BatchOpts defaults = {0};
    memset(it, 0, sizeof *it);
    if (!set || !set->ds)
        return sh_fail(SH_E_ARG, "no data to iterate over");
    if (batch <= 0)
        return sh_fail(SH_E_ARG, "batch size must be positive, not %lld", (long long)batch);
    it->opt = opt ? *opt : defaults;
    if (it->opt.crop_pad < 0 || it->opt.crop_pad > 1024)
        return sh_fail(SH_E_ARG, "crop padding must be in [0, 1024], not %d", it->opt.crop_pad);
    const Dataset *ds = set->ds;
    int64_t sample = ds->c * ds->h * ds->w, floats, n = set->n;
    if (!sh_mul_ok(batch, sample, &floats) || (uint64_t)floats > SIZE_MAX / 8)
        return sh_fail(SH_E_NOMEM, "a batch of %lld images is too large", (long long)batch);
    it->set = set;
    it->batch = batch;
    it->xbuf = malloc((size_t)(floats ? floats : 1) * sizeof(float));
    it->ybuf = malloc((size_t)batch * sizeof(int64_t));
    it->order = malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    it->pad_value = xmalloc((size_t)(ds->c ? ds->c : 1) * sizeof(float));
    if (!it->xbuf || !it->ybuf || !it->order) {
        batch_iter_done(it);
        return sh_fail(SH_E_NOMEM, "out of memory for a batch of %lld images", (long long)batch);
    }
    /* Padding is a black pixel, as it would be before normalization. */
    for (int64_t ch = 0; ch < ds->c; ch++)
        it->pad_value[ch] = (0.0f - ds->norm.mean[ch]) / ds->norm.std[ch];
    iter_start_epoch(it, 0);
    return 0;
}

/* dst = src shifted by (dy, dx) (out-of-image pixels become pad), then
 * mirrored left-right if flip. */
static void augment_image(float *dst, const float *src, int64_t c, int64_t h, int64_t w, int64_t dy, int64_t dx,
                          bool flip, const float *pad)
{
    for (int64_t ch = 0; ch < c; ch++)
        for (int64_t i = 0; i < h; i++) {
            int64_t si = i + dy;
            float *out = dst + (ch * h + i) * w;
            if (si < 0 || si >= h) {
                for (int64_t j = 0; j < w; j++)
                    out[j] = pad[ch];
                continue;
            }
            const float *row = src + (ch * h + si) * w;
            for (int64_t j = 0; j < w; j++) {
                int64_t sj = (flip ? w - 1 - j : j) + dx;
                out[j] = (sj >= 0 && sj < w) ? row[sj] : pad[ch];
            }
        }
}

static void copy_sample(BatchIter *it, float *dst, int64_t sample)
{
    const Dataset *ds = it->set->ds;
    int64_t size = ds->c * ds->h * ds->w;
    const float *src = tensor_f32(&ds->x) + sample * size;
    int64_t dy = 0, dx = 0, p = it->opt.crop_pad;
    bool flip = false;
    /* Draws happen in a fixed order so a seed means the same crops everywhere. */
    if (p > 0) {
        dy = (int64_t)xoshiro_below(&it->aug, (uint64_t)(2 * p + 1)) - p;
        dx = (int64_t)xoshiro_below(&it->aug, (uint64_t)(2 * p + 1)) - p;
    }
    if (it->opt.hflip)
        flip = xoshiro_next(&it->aug) >> 63;
    if (dy == 0 && dx == 0 && !flip)
        memcpy(dst, src, (size_t)size * sizeof(float));
    else
        augment_image(dst, src, ds->c, ds->h, ds->w, dy, dx, flip, it->pad_value);
}

int batch_iter_next(BatchIter *it)
{
    const Dataset *ds = it->set->ds;
    int64_t rows = it->set->n - it->pos;
    if (rows > it->batch)
        rows = it->batch;
    if (rows == 0 || (it->opt.drop_last && rows < it->batch)) {
        iter_start_epoch(it, it->epoch + 1);
        return 0;
    }
    int64_t size = ds->c * ds->h * ds->w;
    const int64_t *labels = tensor_i64(&ds->y);
    for (int64_t r = 0; r < rows; r++) {
        int64_t sample = it->order[it->pos + r];
        copy_sample(it, it->xbuf + r * size, sample);
        it->ybuf[r] = labels[sample];
    }
    Shape xs = shape_of(4, rows, ds->c, ds->h, ds->w), ys = shape_of(1, rows);
    it->x = tensor_view(SH_F32, &xs, it->xbuf);
    it->y = tensor_view(SH_I64, &ys, it->ybuf);
    it->index = it->order + it->pos;
    it->pos += rows;
    return 1;
}

void batch_iter_set_epoch(BatchIter *it, int64_t epoch) { iter_start_epoch(it, epoch); }

int64_t batch_iter_count(const BatchIter *it)
{
    int64_t n = it->set->n;
    return it->opt.drop_last ? n / it->batch : (n + it->batch - 1) / it->batch;
}

void batch_iter_done(BatchIter *it)
{
    if (!it)
        return;
    free(it->xbuf);
    free(it->ybuf);
    free(it->order);
    free(it->pad_value);
    memset(it, 0, sizeof *it);
}
