/* IDX reading (real Fashion-MNIST and tiny fixtures), datasets and their
 * errors, the portable PRNG, train/validation splits and batch iteration.
 * Reference numbers for Fashion-MNIST were computed independently with
 * Python's gzip + numpy. */
#include "core/data.h"
#include "core/error.h"
#include "core/idx.h"
#include "core/npy.h"
#include "core/tensor.h"

#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <cmocka.h>

#define FIX "tests/fixtures/"
#define FASHION "/usr/share/datasets/fashion-mnist"

static char tmp_dir[] = "/tmp/shears-test-data-XXXXXX";

static int make_tmp_dir(void **state)
{
    (void)state;
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static int remove_tmp_dir(void **state)
{
    (void)state;
    DIR *d = opendir(tmp_dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", tmp_dir, e->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
    return rmdir(tmp_dir);
}

static char *tmp_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", tmp_dir, name);
    unlink(buf);
    return buf;
}

static void assert_fails_naming(int rc, int code, const char *what)
{
    if (rc != code || !strstr(sh_errmsg(), what))
        print_error("rc %d (want %d), message \"%s\" (want it to name \"%s\")\n", rc, code, sh_errmsg(), what);
    assert_int_equal(rc, code);
    assert_non_null(strstr(sh_errmsg(), what));
}

/* A U8 dataset of n images c x h x w whose pixel k of image i is
 * (i * 7 + k) % 256, labels i % n_classes. */
static void make_dataset(Dataset *ds, int64_t n, int64_t c, int64_t h, int64_t w, int n_classes,
                         const DataNorm *norm)
{
    Tensor x, y;
    Shape xs = shape_of(4, n, c, h, w), ys = shape_of(1, n);
    assert_int_equal(tensor_alloc(&x, SH_U8, &xs), 0);
    assert_int_equal(tensor_alloc(&y, SH_I64, &ys), 0);
    int64_t size = c * h * w;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t k = 0; k < size; k++)
            tensor_u8(&x)[i * size + k] = (uint8_t)((i * 7 + k) % 256);
        tensor_i64(&y)[i] = i % n_classes;
    }
    assert_int_equal(dataset_from_tensors(ds, &x, &y, n_classes, norm, "x", "y"), 0);
}

/* ---- IDX ------------------------------------------------------------------ */

static void test_idx_reads_fashion_mnist_test_set(void **state)
{
    (void)state;
    Tensor x, y;
    assert_int_equal(idx_read(&x, FASHION "/t10k-images-idx3-ubyte.gz", 0), 0);
    assert_int_equal(idx_read(&y, FASHION "/t10k-labels-idx1-ubyte.gz", 0), 0);
    Shape xs = shape_of(3, (int64_t)10000, (int64_t)28, (int64_t)28), ys = shape_of(1, (int64_t)10000);
    assert_true(shape_eq(&x.shape, &xs));
    assert_true(shape_eq(&y.shape, &ys));
    assert_int_equal(x.dtype, SH_U8);
    int64_t hist[10] = {0}, sum = 0;
    for (int64_t i = 0; i < y.numel; i++) {
        assert_true(tensor_u8(&y)[i] < 10);
        hist[tensor_u8(&y)[i]]++;
    }
    for (int k = 0; k < 10; k++)
        assert_int_equal(hist[k], 1000);
    for (int64_t i = 0; i < x.numel; i++)
        sum += tensor_u8(&x)[i];
    assert_int_equal(sum, 573469082); /* numpy: x.astype(int64).sum() */
    const uint8_t first_labels[] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
    assert_memory_equal(tensor_u8(&y), first_labels, 10);
    const uint8_t row[] = {0, 0, 98, 136, 110, 109, 110, 162, 135, 144}; /* x[0,14,10:20] */
    assert_memory_equal(tensor_u8(&x) + 14 * 28 + 10, row, 10);
    const uint8_t last[] = {0, 56, 80, 45}; /* x[9999,10,10:14] */
    assert_memory_equal(tensor_u8(&x) + 9999 * 784 + 10 * 28 + 10, last, 4);
    tensor_done(&x);
    tensor_done(&y);
}

static void test_idx_reads_gzipped_and_raw_fixtures(void **state)
{
    (void)state;
    Tensor x, y;
    assert_int_equal(idx_read(&x, FIX "idx_images_3x4x5.gz", 0), 0);
    Shape xs = shape_of(3, (int64_t)3, (int64_t)4, (int64_t)5);
    assert_true(shape_eq(&x.shape, &xs));
    for (int i = 0; i < 60; i++)
        assert_int_equal(tensor_u8(&x)[i], (i * 13) % 256);
    assert_int_equal(idx_read(&y, FIX "idx_labels_3", 0), 0);
    assert_int_equal(y.numel, 3);
    assert_int_equal(tensor_u8(&y)[0], 2);
    Shape s;
    assert_int_equal(idx_read_shape(&s, FIX "idx_images_3x4x5.gz"), 0);
    assert_true(shape_eq(&s, &xs));
    tensor_done(&x);
    tensor_done(&y);
}

static void test_idx_limit_reads_only_the_first_items(void **state)
{
    (void)state;
    Tensor x;
    assert_int_equal(idx_read(&x, FIX "idx_images_3x4x5.gz", 2), 0);
    assert_int_equal(x.shape.d[0], 2);
    assert_int_equal(x.numel, 40);
    assert_int_equal(tensor_u8(&x)[39], (39 * 13) % 256);
    tensor_done(&x);
    /* a limit stops before the cut of a truncated file */
    assert_int_equal(idx_read(&x, FIX "idx_images_truncated.gz", 2), 0);
    tensor_done(&x);
}

static void test_idx_truncated_data_names_file_and_sizes(void **state)
{
    (void)state;
    Tensor x;
    assert_fails_naming(idx_read(&x, FIX "idx_images_truncated.gz", 0), SH_E_FORMAT,
                        FIX "idx_images_truncated.gz: truncated: expected 60 bytes of image data, got 50");
    assert_null(x.data);
    /* a gzip stream cut in the middle */
    int rc = idx_read(&x, FIX "idx_images_cut_gzip.gz", 0);
    assert_true(rc < 0);
    assert_non_null(strstr(sh_errmsg(), "idx_images_cut_gzip.gz"));
    printf("cut gzip stream: %s\n", sh_errmsg());
}

/* The header of the real test set with only 1234 bytes of pixels. */
static void test_idx_truncated_fashion_sized_file_reports_counts(void **state)
{
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "t10k-images-idx3-ubyte.gz");
    gzFile f = gzopen(path, "wb");
    assert_non_null(f);
    const unsigned char header[16] = {0, 0, 8, 3, 0, 0, 0x27, 0x10, 0, 0, 0, 28, 0, 0, 0, 28};
    unsigned char pixels[1234] = {0};
    assert_int_equal(gzwrite(f, header, 16), 16);
    assert_int_equal(gzwrite(f, pixels, sizeof pixels), (int)sizeof pixels);
    gzclose(f);
    Tensor x;
    char want[600];
    snprintf(want, sizeof want, "%s: truncated: expected 7840000 bytes of image data, got 1234", path);
    assert_fails_naming(idx_read(&x, path, 0), SH_E_FORMAT, want);
}

static void test_idx_corrupt_headers_name_the_file(void **state)
{
    (void)state;
    Tensor x;
    assert_fails_naming(idx_read(&x, FIX "idx_wrong_magic", 0), SH_E_FORMAT, FIX "idx_wrong_magic: not an IDX file");
    assert_non_null(strstr(sh_errmsg(), "0x12340803"));
    assert_fails_naming(idx_read(&x, FIX "idx_float_type", 0), SH_E_UNSUPPORTED, FIX "idx_float_type");
    assert_non_null(strstr(sh_errmsg(), "float32"));
    assert_fails_naming(idx_read(&x, FIX "idx_trailing", 0), SH_E_FORMAT, FIX "idx_trailing: unexpected bytes");
    assert_fails_naming(idx_read(&x, FIX "no_such.idx.gz", 0), SH_E_IO, FIX "no_such.idx.gz");
    assert_fails_naming(idx_read(&x, FIX, 0), SH_E_IO, "directory");
    /* an NPY file is not an IDX file */
    assert_fails_naming(idx_read(&x, FIX "np_f32_2x3.npy", 0), SH_E_FORMAT, "np_f32_2x3.npy: not an IDX file");

    char path[512];
    FILE *f;
    /* a header shorter than its rank */
    tmp_path(path, sizeof path, "short_dims.idx");
    f = fopen(path, "wb");
    fwrite("\0\0\x08\x03\0\0\0\x02\0\0", 1, 10, f);
    fclose(f);
    assert_fails_naming(idx_read(&x, path, 0), SH_E_FORMAT, "declares 3 dims");
    /* rank 0 and rank 9 */
    tmp_path(path, sizeof path, "rank0.idx");
    f = fopen(path, "wb");
    fwrite("\0\0\x08\x00", 1, 4, f);
    fclose(f);
    assert_fails_naming(idx_read(&x, path, 0), SH_E_UNSUPPORTED, "rank 0");
    /* dims whose product overflows int64 */
    tmp_path(path, sizeof path, "overflow.idx");
    f = fopen(path, "wb");
    fwrite("\0\0\x08\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 1, 16, f);
    fclose(f);
    assert_fails_naming(idx_read(&x, path, 0), SH_E_FORMAT, "overflow");
    /* huge but representable dims: refused as truncated, not allocated */
    tmp_path(path, sizeof path, "huge.idx");
    f = fopen(path, "wb");
    fwrite("\0\0\x08\x02\x7f\xff\xff\xff\x7f\xff\xff\xff\x01\x02", 1, 14, f);
    fclose(f);
    assert_fails_naming(idx_read(&x, path, 0), SH_E_FORMAT, "truncated");
    /* a tiny empty file */
    tmp_path(path, sizeof path, "empty.idx");
    f = fopen(path, "wb");
    fclose(f);
    assert_fails_naming(idx_read(&x, path, 0), SH_E_FORMAT, "empty.idx: not an IDX file");
}

/* ---- datasets ------------------------------------------------------------- */

static void test_dataset_normalizes_pixels_as_computed_by_hand(void **state)
{
    (void)state;
    Dataset ds;
    DataNorm norm = data_norm_one(0.2860f, 0.3530f);
    assert_int_equal(dataset_load_mnist(&ds, FASHION, "test", 3, &norm), 0);
    assert_int_equal(ds.n, 3);
    assert_int_equal(ds.c, 1);
    assert_int_equal(ds.h, 28);
    assert_int_equal(ds.w, 28);
    assert_int_equal(ds.n_classes, 10);
    /* x[0,14,12] = 98, x[0,14,17] = 162, x[0,0,0] = 0 */
    const float *x = tensor_f32(&ds.x);
    double want98 = (98.0 / 255.0 - 0.2860) / 0.3530, want162 = (162.0 / 255.0 - 0.2860) / 0.3530,
           want0 = -0.2860 / 0.3530;
    double d = fmax(fmax(fabs(x[14 * 28 + 12] - want98), fabs(x[14 * 28 + 17] - want162)), fabs(x[0] - want0));
    printf("normalized pixels vs hand values: max abs diff %g\n", d);
    assert_true(d < 1e-6);
    assert_int_equal(tensor_i64(&ds.y)[0], 9);
    assert_int_equal(tensor_i64(&ds.y)[2], 1);
    dataset_done(&ds);

    /* no normalization: pixel / 255 */
    assert_int_equal(dataset_load_idx(&ds, FIX "idx_images_3x4x5.gz", FIX "idx_labels_3", 0, 0, NULL), 0);
    assert_int_equal(ds.n_classes, 3); /* max label 2 + 1 */
    for (int i = 0; i < 60; i++)
        assert_float_equal(tensor_f32(&ds.x)[i], (float)((i * 13) % 256) / 255.0f, 1e-7);
    dataset_done(&ds);
}

static void test_dataset_per_channel_normalization(void **state)
{
    (void)state;
    Dataset ds;
    DataNorm norm = {.n = 3, .mean = {0.1f, 0.2f, 0.3f}, .std = {0.5f, 0.25f, 2.0f}};
    make_dataset(&ds, 2, 3, 2, 2, 2, &norm);
    double maxd = 0;
    for (int64_t i = 0; i < 2; i++)
        for (int64_t c = 0; c < 3; c++)
            for (int64_t k = 0; k < 4; k++) {
                int64_t flat = c * 4 + k;
                double pixel = (double)((i * 7 + flat) % 256);
                double want = (pixel / 255.0 - norm.mean[c]) / norm.std[c];
                maxd = fmax(maxd, fabs(tensor_f32(&ds.x)[i * 12 + flat] - want));
            }
    printf("per-channel normalization: max abs diff %g\n", maxd);
    assert_true(maxd < 1e-6);
    dataset_done(&ds);

    /* 2 values for 3 channels, a zero std */
    Tensor x, y;
    Shape xs = shape_of(4, (int64_t)1, (int64_t)3, (int64_t)1, (int64_t)1), ys = shape_of(1, (int64_t)1);
    DataNorm two = {.n = 2, .mean = {0, 0}, .std = {1, 1}};
    assert_int_equal(tensor_alloc(&x, SH_U8, &xs), 0);
    assert_int_equal(tensor_alloc(&y, SH_I64, &ys), 0);
    assert_fails_naming(dataset_from_tensors(&ds, &x, &y, 0, &two, "x.npy", "y.npy"), SH_E_ARG, "3 channels");
    assert_null(x.data); /* consumed */
    DataNorm zero = data_norm_one(0, 0);
    assert_int_equal(tensor_alloc(&x, SH_U8, &xs), 0);
    assert_int_equal(tensor_alloc(&y, SH_I64, &ys), 0);
    assert_fails_naming(dataset_from_tensors(&ds, &x, &y, 0, &zero, "x.npy", "y.npy"), SH_E_ARG, "positive std");
}

static void test_dataset_loads_mnist_splits(void **state)
{
    (void)state;
    Dataset ds;
    assert_int_equal(dataset_load_mnist(&ds, FASHION, "train", 0, NULL), 0);
    assert_int_equal(ds.n, 60000);
    int64_t hist[10] = {0};
    for (int64_t i = 0; i < ds.n; i++)
        hist[tensor_i64(&ds.y)[i]]++;
    for (int k = 0; k < 10; k++)
        assert_int_equal(hist[k], 6000);
    assert_int_equal(ds.x.shape.rank, 4);
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < ds.x.numel; i++) {
        lo = fminf(lo, tensor_f32(&ds.x)[i]);
        hi = fmaxf(hi, tensor_f32(&ds.x)[i]);
    }
    assert_float_equal(lo, 0.0f, 0);
    assert_float_equal(hi, 1.0f, 0);
    dataset_done(&ds);
    assert_fails_naming(dataset_load_mnist(&ds, FASHION, "valid", 0, NULL), SH_E_ARG, "'valid'");
    assert_fails_naming(dataset_load_mnist(&ds, "/nonexistent", "test", 0, NULL), SH_E_IO,
                        "/nonexistent/t10k-images-idx3-ubyte.gz");
}

static void test_dataset_rejects_mismatched_counts_naming_both_files(void **state)
{
    (void)state;
    Dataset ds;
    assert_fails_naming(dataset_load_idx(&ds, FIX "idx_images_3x4x5.gz", FIX "idx_labels_4", 0, 0, NULL), SH_E_SHAPE,
                        FIX "idx_labels_4 has 4 labels but " FIX "idx_images_3x4x5.gz has 3 images");
    /* also when a limit would hide the difference */
    assert_fails_naming(dataset_load_idx(&ds, FIX "idx_images_3x4x5.gz", FIX "idx_labels_4", 2, 0, NULL), SH_E_SHAPE,
                        "has 4 labels");
    assert_null(ds.x.data);
}

static void test_dataset_rejects_labels_out_of_range(void **state)
{
    (void)state;
    Dataset ds;
    Tensor x, y;
    Shape xs = shape_of(3, (int64_t)4, (int64_t)2, (int64_t)2);
    assert_int_equal(tensor_alloc(&x, SH_U8, &xs), 0);
    assert_int_equal(idx_read(&y, FIX "idx_labels_4", 0), 0);
    assert_fails_naming(dataset_from_tensors(&ds, &x, &y, 3, NULL, "x", FIX "idx_labels_4"), SH_E_FORMAT,
                        FIX "idx_labels_4: label 3 at index 3 is out of range [0, 3)");
    Shape ys = shape_of(1, (int64_t)4);
    assert_int_equal(tensor_alloc(&x, SH_U8, &xs), 0);
    assert_int_equal(tensor_alloc(&y, SH_I64, &ys), 0);
    tensor_i64(&y)[1] = -1;
    assert_fails_naming(dataset_from_tensors(&ds, &x, &y, 0, NULL, "x", "y.npy"), SH_E_FORMAT,
                        "y.npy: label -1 at index 1 is negative");
}

static void test_dataset_rejects_wrong_ranks_and_types(void **state)
{
    (void)state;
    Dataset ds;
    /* files swapped */
    assert_fails_naming(dataset_load_idx(&ds, FIX "idx_labels_3", FIX "idx_images_3x4x5.gz", 0, 0, NULL), SH_E_SHAPE,
                        FIX "idx_labels_3: images must be [N,H,W] or [N,C,H,W], got [3]");
    assert_fails_naming(dataset_load_idx(&ds, FIX "idx_images_3x4x5.gz", FIX "idx_images_3x4x5.gz", 0, 0, NULL),
                        SH_E_SHAPE, "labels must be [N], got [3,4,5]");
    /* NPY: float64 refused at the header, NHWC layout explained */
    assert_fails_naming(dataset_load_npy(&ds, FIX "np_f64_2.npy", FIX "np_y_4_i64.npy", 0, 0, NULL), SH_E_UNSUPPORTED,
                        "np_f64_2.npy");
    Tensor x, y;
    Shape nhwc = shape_of(4, (int64_t)2, (int64_t)28, (int64_t)28, (int64_t)3), ys = shape_of(1, (int64_t)2);
    assert_int_equal(tensor_alloc(&x, SH_U8, &nhwc), 0);
    assert_int_equal(tensor_alloc(&y, SH_I64, &ys), 0);
    assert_fails_naming(dataset_from_tensors(&ds, &x, &y, 0, NULL, "x.npy", "y.npy"), SH_E_SHAPE, "[N,H,W,C]");
    /* float labels */
    Shape xs = shape_of(3, (int64_t)2, (int64_t)2, (int64_t)2);
    assert_int_equal(tensor_alloc(&x, SH_U8, &xs), 0);
    assert_int_equal(tensor_alloc(&y, SH_F32, &ys), 0);
    assert_fails_naming(dataset_from_tensors(&ds, &x, &y, 0, NULL, "x.npy", "y.npy"), SH_E_UNSUPPORTED,
                        "y.npy: labels must be int64 or uint8");
    assert_fails_naming(dataset_load_npy(&ds, FIX "missing_x.npy", FIX "np_y_4_i64.npy", 0, 0, NULL), SH_E_IO,
                        "missing_x.npy");
    assert_fails_naming(dataset_load_idx(&ds, FIX "idx_images_3x4x5.gz", FIX "missing_labels", 0, 0, NULL), SH_E_IO,
                        "missing_labels");
}

static void test_dataset_from_npy_u8_nchw_and_f32_nhw(void **state)
{
    (void)state;
    Dataset ds;
    assert_int_equal(dataset_load_npy(&ds, FIX "np_x_4x1x3x3_u8.npy", FIX "np_y_4_i64.npy", 0, 0, NULL), 0);
    assert_int_equal(ds.n, 4);
    assert_int_equal(ds.c, 1);
    assert_int_equal(ds.h, 3);
    assert_int_equal(ds.n_classes, 3);
    for (int i = 0; i < 36; i++)
        assert_float_equal(tensor_f32(&ds.x)[i], (float)(i * 7) / 255.0f, 1e-7);
    assert_int_equal(tensor_i64(&ds.y)[1], 2);
    dataset_done(&ds);

    /* F32 [N,H,W] is taken as already scaled; labels as U8 */
    char xp[512], yp[512];
    tmp_path(xp, sizeof xp, "x.npy");
    tmp_path(yp, sizeof yp, "y.npy");
    Shape xs = shape_of(3, (int64_t)2, (int64_t)2, (int64_t)2), ys = shape_of(1, (int64_t)2);
    Tensor x, y;
    assert_int_equal(tensor_alloc(&x, SH_F32, &xs), 0);
    assert_int_equal(tensor_alloc(&y, SH_U8, &ys), 0);
    for (int i = 0; i < 8; i++)
        tensor_f32(&x)[i] = 0.125f * (float)i;
    tensor_u8(&y)[0] = 4;
    tensor_u8(&y)[1] = 1;
    assert_int_equal(npy_write(xp, &x, false), 0);
    assert_int_equal(npy_write(yp, &y, false), 0);
    DataNorm norm = data_norm_one(0.5f, 0.25f);
    assert_int_equal(dataset_load_npy(&ds, xp, yp, 0, 5, &norm), 0);
    Shape want = shape_of(4, (int64_t)2, (int64_t)1, (int64_t)2, (int64_t)2);
    assert_true(shape_eq(&ds.x.shape, &want));
    for (int i = 0; i < 8; i++)
        assert_float_equal(tensor_f32(&ds.x)[i], (0.125f * (float)i - 0.5f) / 0.25f, 1e-6);
    assert_int_equal(tensor_i64(&ds.y)[0], 4);
    assert_int_equal(ds.n_classes, 5);
    dataset_done(&ds);
    /* limit */
    assert_int_equal(dataset_load_npy(&ds, xp, yp, 1, 5, NULL), 0);
    assert_int_equal(ds.n, 1);
    dataset_done(&ds);

    /* a NaN pixel */
    tensor_f32(&x)[5] = NAN;
    tmp_path(xp, sizeof xp, "x_nan.npy");
    assert_int_equal(npy_write(xp, &x, false), 0);
    assert_fails_naming(dataset_load_npy(&ds, xp, yp, 0, 0, NULL), SH_E_NUMERIC, "x_nan.npy: image value at element 5");
    tensor_done(&x);
    tensor_done(&y);
}

/* ---- random numbers, splits, batches ------------------------------------- */

static void test_xoshiro_matches_reference_sequence(void **state)
{
    (void)state;
    /* splitmix64(0) is 0xe220a8397b1dcdaf (Vigna's reference), and the
     * xoshiro256** outputs below come from an independent Python port. */
    Xoshiro r;
    xoshiro_seed(&r, 0);
    assert_true(r.s[0] == 0xe220a8397b1dcdafull);
    xoshiro_seed(&r, 42);
    const uint64_t want[] = {0x15780b2e0c2ec716ull, 0x6104d9866d113a7eull, 0xae17533239e499a1ull,
                             0xecb8ad4703b360a1ull};
    for (int i = 0; i < 4; i++)
        assert_true(xoshiro_next(&r) == want[i]);
    /* below(n) is in range and roughly uniform */
    int64_t counts[10] = {0};
    for (int i = 0; i < 100000; i++) {
        uint64_t v = xoshiro_below(&r, 10);
        assert_true(v < 10);
        counts[v]++;
    }
    for (int k = 0; k < 10; k++)
        assert_true(counts[k] > 9500 && counts[k] < 10500);
    for (int i = 0; i < 1000; i++) {
        float u = xoshiro_uniform(&r);
        assert_true(u >= 0.0f && u < 1.0f);
    }
}

static void test_shuffle_same_seed_same_order_different_seed_different(void **state)
{
    (void)state;
    enum { N = 500 };
    int64_t a[N], b[N], c[N];
    for (int i = 0; i < N; i++)
        a[i] = b[i] = c[i] = i;
    Xoshiro ra, rb, rc;
    xoshiro_seed(&ra, 7);
    xoshiro_seed(&rb, 7);
    xoshiro_seed(&rc, 8);
    xoshiro_shuffle(&ra, a, N);
    xoshiro_shuffle(&rb, b, N);
    xoshiro_shuffle(&rc, c, N);
    assert_memory_equal(a, b, sizeof a);
    assert_true(memcmp(a, c, sizeof a) != 0);
    int seen[N] = {0}, moved = 0;
    for (int i = 0; i < N; i++) {
        seen[a[i]]++;
        moved += a[i] != i;
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);
    assert_true(moved > N / 2);

    /* The order itself is pinned, so every machine agrees: this is what an
     * independent Python port of xoshiro_below + Fisher-Yates gives. */
    int64_t small[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    const int64_t want[10] = {8, 3, 9, 0, 7, 2, 1, 6, 5, 4};
    Xoshiro r7;
    xoshiro_seed(&r7, 7);
    xoshiro_shuffle(&r7, small, 10);
    assert_memory_equal(small, want, sizeof want);
}

static void test_validation_split_is_disjoint_and_complete(void **state)
{
    (void)state;
    Dataset ds;
    make_dataset(&ds, 1000, 1, 2, 2, 10, NULL);
    DataSubset train, val, train2, val2, train3, val3;
    assert_int_equal(data_split(&train, &val, &ds, 0.1, 123), 0);
    assert_int_equal(val.n, 100);
    assert_int_equal(train.n, 900);
    char *seen = calloc(1000, 1);
    for (int64_t i = 0; i < train.n; i++) {
        assert_true(i == 0 || train.idx[i] > train.idx[i - 1]);
        seen[train.idx[i]]++;
    }
    for (int64_t i = 0; i < val.n; i++) {
        assert_true(i == 0 || val.idx[i] > val.idx[i - 1]);
        seen[val.idx[i]]++;
    }
    for (int i = 0; i < 1000; i++)
        assert_int_equal(seen[i], 1);
    free(seen);
    /* same seed same split, another seed another */
    assert_int_equal(data_split(&train2, &val2, &ds, 0.1, 123), 0);
    assert_memory_equal(val.idx, val2.idx, (size_t)val.n * sizeof(int64_t));
    assert_int_equal(data_split(&train3, &val3, &ds, 0.1, 124), 0);
    assert_true(memcmp(val.idx, val3.idx, (size_t)val.n * sizeof(int64_t)) != 0);
    /* the validation part is not simply the head or tail */
    assert_true(val.idx[0] < 900 && val.idx[val.n - 1] >= 100);
    data_subset_done(&train);
    data_subset_done(&val);
    data_subset_done(&train2);
    data_subset_done(&val2);
    data_subset_done(&train3);
    data_subset_done(&val3);

    assert_int_equal(data_split(&train, &val, &ds, 0.0, 1), 0);
    assert_int_equal(val.n, 0);
    assert_int_equal(train.n, 1000);
    data_subset_done(&train);
    data_subset_done(&val);
    assert_fails_naming(data_split(&train, &val, &ds, 1.0, 1), SH_E_ARG, "[0, 1)");
    assert_fails_naming(data_split(&train, &val, &ds, NAN, 1), SH_E_ARG, "validation fraction");
    assert_fails_naming(data_split(&train, &val, &ds, 0.9999, 1), SH_E_ARG, "none for training");
    dataset_done(&ds);
}

/* Runs one epoch; checks each row against the dataset and counts visits. */
static int64_t run_epoch(BatchIter *it, const Dataset *ds, int64_t *visits, int64_t *order, int64_t *last_rows)
{
    int64_t batches = 0, k = 0, size = ds->c * ds->h * ds->w;
    int rc;
    while ((rc = batch_iter_next(it)) > 0) {
        int64_t rows = it->x.shape.d[0];
        assert_int_equal(it->y.shape.d[0], rows);
        for (int64_t r = 0; r < rows; r++) {
            int64_t s = it->index[r];
            visits[s]++;
            if (order)
                order[k] = s;
            k++;
            assert_int_equal(tensor_i64(&it->y)[r], tensor_i64(&ds->y)[s]);
            assert_memory_equal(tensor_f32(&it->x) + r * size, tensor_f32(&ds->x) + s * size,
                                (size_t)size * sizeof(float));
        }
        *last_rows = rows;
        batches++;
    }
    assert_int_equal(rc, 0);
    return batches;
}

static void test_batches_cover_every_sample_once_per_epoch(void **state)
{
    (void)state;
    Dataset ds;
    make_dataset(&ds, 103, 2, 3, 3, 5, NULL);
    DataSubset all;
    data_subset_all(&all, &ds);
    BatchIter it;
    BatchOpts opt = {.shuffle = true, .seed = 5};
    assert_int_equal(batch_iter_init(&it, &all, 10, &opt), 0);
    assert_int_equal(batch_iter_count(&it), 11);
    int64_t order0[103], order1[103], last = 0;
    for (int epoch = 0; epoch < 2; epoch++) {
        int64_t visits[103] = {0};
        assert_int_equal(run_epoch(&it, &ds, visits, epoch ? order1 : order0, &last), 11);
        assert_int_equal(last, 3); /* the final partial batch */
        for (int i = 0; i < 103; i++)
            assert_int_equal(visits[i], 1);
    }
    assert_true(memcmp(order0, order1, sizeof order0) != 0); /* reshuffled */
    int in_place = 0;
    for (int i = 0; i < 103; i++)
        in_place += order0[i] == i;
    assert_true(in_place < 20);
    batch_iter_done(&it);

    /* drop_last: 10 full batches, 3 samples skipped */
    opt.drop_last = true;
    assert_int_equal(batch_iter_init(&it, &all, 10, &opt), 0);
    assert_int_equal(batch_iter_count(&it), 10);
    int64_t visits[103] = {0}, total = 0;
    assert_int_equal(run_epoch(&it, &ds, visits, NULL, &last), 10);
    assert_int_equal(last, 10);
    for (int i = 0; i < 103; i++) {
        assert_true(visits[i] <= 1);
        total += visits[i];
    }
    assert_int_equal(total, 100);
    batch_iter_done(&it);

    /* no shuffle: dataset order; a batch larger than the set is one batch */
    assert_int_equal(batch_iter_init(&it, &all, 1000, NULL), 0);
    memset(visits, 0, sizeof visits);
    assert_int_equal(run_epoch(&it, &ds, visits, order0, &last), 1);
    assert_int_equal(last, 103);
    for (int i = 0; i < 103; i++)
        assert_int_equal(order0[i], i);
    batch_iter_done(&it);
    assert_fails_naming(batch_iter_init(&it, &all, 0, NULL), SH_E_ARG, "batch size");
    data_subset_done(&all);
    dataset_done(&ds);
}

static void test_shuffled_epochs_are_reproducible(void **state)
{
    (void)state;
    Dataset ds;
    make_dataset(&ds, 50, 1, 2, 2, 3, NULL);
    DataSubset all;
    data_subset_all(&all, &ds);
    BatchIter a, b;
    BatchOpts opt = {.shuffle = true, .seed = 99};
    assert_int_equal(batch_iter_init(&a, &all, 7, &opt), 0);
    assert_int_equal(batch_iter_init(&b, &all, 7, &opt), 0);
    int64_t oa[3][50], ob[50], visits[50], last;
    for (int e = 0; e < 3; e++) {
        memset(visits, 0, sizeof visits);
        run_epoch(&a, &ds, visits, oa[e], &last);
        memset(visits, 0, sizeof visits);
        run_epoch(&b, &ds, visits, ob, &last);
        assert_memory_equal(oa[e], ob, sizeof ob);
    }
    /* resuming at epoch 1 gives epoch 1's order */
    batch_iter_set_epoch(&b, 1);
    memset(visits, 0, sizeof visits);
    run_epoch(&b, &ds, visits, ob, &last);
    assert_memory_equal(oa[1], ob, sizeof ob);
    batch_iter_done(&a);
    batch_iter_done(&b);
    data_subset_done(&all);
    dataset_done(&ds);
}

static void test_batches_iterate_a_validation_subset(void **state)
{
    (void)state;
    Dataset ds;
    make_dataset(&ds, 200, 1, 2, 2, 4, NULL);
    DataSubset train, val;
    assert_int_equal(data_split(&train, &val, &ds, 0.25, 3), 0);
    BatchIter it;
    assert_int_equal(batch_iter_init(&it, &val, 16, NULL), 0);
    int64_t visits[200] = {0}, last;
    assert_int_equal(run_epoch(&it, &ds, visits, NULL, &last), 4);
    assert_int_equal(last, 50 - 48);
    for (int64_t i = 0; i < val.n; i++)
        assert_int_equal(visits[val.idx[i]], 1);
    for (int64_t i = 0; i < train.n; i++)
        assert_int_equal(visits[train.idx[i]], 0);
    batch_iter_done(&it);
    data_subset_done(&train);
    data_subset_done(&val);
    dataset_done(&ds);
}

/* Each augmented image is its source shifted by (dy, dx) in [-p, p]^2,
 * black outside, then maybe mirrored; and the augmentation does vary. */
static void test_augmentation_crops_and_flips_within_padding(void **state)
{
    (void)state;
    enum { P = 2 };
    Dataset ds;
    DataNorm norm = data_norm_one(0.5f, 0.5f);
    make_dataset(&ds, 40, 2, 5, 6, 3, &norm);
    const float pad = (0.0f - 0.5f) / 0.5f;
    DataSubset all;
    data_subset_all(&all, &ds);
    BatchIter it;
    BatchOpts opt = {.shuffle = true, .seed = 1, .crop_pad = P, .hflip = true};
    assert_int_equal(batch_iter_init(&it, &all, 8, &opt), 0);
    int64_t c = ds.c, h = ds.h, w = ds.w, size = c * h * w;
    int shifted = 0, flipped = 0, total = 0;
    while (batch_iter_next(&it) > 0) {
        for (int64_t r = 0; r < it.x.shape.d[0]; r++, total++) {
            const float *out = tensor_f32(&it.x) + r * size;
            const float *src = tensor_f32(&ds.x) + it.index[r] * size;
            int matches = 0;
            for (int flip = 0; flip < 2; flip++)
                for (int dy = -P; dy <= P; dy++)
                    for (int dx = -P; dx <= P; dx++) {
                        bool same = true;
                        for (int64_t ch = 0; ch < c && same; ch++)
                            for (int64_t i = 0; i < h && same; i++)
                                for (int64_t j = 0; j < w && same; j++) {
                                    int64_t si = i + dy, sj = (flip ? w - 1 - j : j) + dx;
                                    float want = si >= 0 && si < h && sj >= 0 && sj < w
                                                     ? src[(ch * h + si) * w + sj]
                                                     : pad;
                                    same = out[(ch * h + i) * w + j] == want;
                                }
                        if (same) {
                            matches++;
                            shifted += dy != 0 || dx != 0;
                            flipped += flip;
                        }
                    }
            assert_int_equal(matches, 1); /* pixel values are distinct, so exactly one explanation */
        }
    }
    assert_int_equal(total, 40);
    assert_true(shifted > 20);
    assert_true(flipped > 5 && flipped < 35);
    batch_iter_done(&it);
    data_subset_done(&all);
    dataset_done(&ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idx_reads_fashion_mnist_test_set),
        cmocka_unit_test(test_idx_reads_gzipped_and_raw_fixtures),
        cmocka_unit_test(test_idx_limit_reads_only_the_first_items),
        cmocka_unit_test(test_idx_truncated_data_names_file_and_sizes),
        cmocka_unit_test(test_idx_truncated_fashion_sized_file_reports_counts),
        cmocka_unit_test(test_idx_corrupt_headers_name_the_file),
        cmocka_unit_test(test_dataset_normalizes_pixels_as_computed_by_hand),
        cmocka_unit_test(test_dataset_per_channel_normalization),
        cmocka_unit_test(test_dataset_loads_mnist_splits),
        cmocka_unit_test(test_dataset_rejects_mismatched_counts_naming_both_files),
        cmocka_unit_test(test_dataset_rejects_labels_out_of_range),
        cmocka_unit_test(test_dataset_rejects_wrong_ranks_and_types),
        cmocka_unit_test(test_dataset_from_npy_u8_nchw_and_f32_nhw),
        cmocka_unit_test(test_xoshiro_matches_reference_sequence),
        cmocka_unit_test(test_shuffle_same_seed_same_order_different_seed_different),
        cmocka_unit_test(test_validation_split_is_disjoint_and_complete),
        cmocka_unit_test(test_batches_cover_every_sample_once_per_epoch),
        cmocka_unit_test(test_shuffled_epochs_are_reproducible),
        cmocka_unit_test(test_batches_iterate_a_validation_subset),
        cmocka_unit_test(test_augmentation_crops_and_flips_within_padding),
    };
    return cmocka_run_group_tests(tests, make_tmp_dir, remove_tmp_dir);
}
