/* NPY reading and writing against files written by numpy itself
 * (tests/fixtures/np_*.npy, see tests/fixtures/README.md), round trips,
 * and every way a file can be wrong. */
#include "core/error.h"
#include "core/npy.h"
#include "core/tensor.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#define FIX "tests/fixtures/"

static char tmp_dir[] = "/tmp/shears-test-npy-XXXXXX";

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

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)size + 1);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *n = (size_t)size;
    return buf;
}

static void spit(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* The call failed with code and its message names what. */
static void assert_fails_naming(int rc, int code, const char *what)
{
    if (rc != code || !strstr(sh_errmsg(), what))
        print_error("rc %d (want %d), message \"%s\" (want it to name \"%s\")\n", rc, code, sh_errmsg(), what);
    assert_int_equal(rc, code);
    assert_non_null(strstr(sh_errmsg(), what));
}

static void test_npy_reads_numpy_files_of_every_dtype(void **state)
{
    (void)state;
    Tensor t;
    assert_int_equal(npy_read(&t, FIX "np_f32_2x3.npy"), 0);
    assert_int_equal(t.dtype, SH_F32);
    Shape s23 = shape_of(2, (int64_t)2, (int64_t)3);
    assert_true(shape_eq(&t.shape, &s23));
    for (int i = 0; i < 6; i++)
        assert_float_equal(tensor_f32(&t)[i], i * 0.5f - 1.0f, 0);
    tensor_done(&t);

    assert_int_equal(npy_read(&t, FIX "np_i64_4.npy"), 0);
    assert_int_equal(t.dtype, SH_I64);
    int64_t iv[] = {-3, 0, 7, (int64_t)1 << 40};
    assert_int_equal(t.shape.rank, 1);
    assert_int_equal(t.shape.d[0], 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(tensor_i64(&t)[i], iv[i]);
    tensor_done(&t);

    assert_int_equal(npy_read(&t, FIX "np_u8_2x2x2.npy"), 0);
    assert_int_equal(t.dtype, SH_U8);
    assert_int_equal(t.shape.rank, 3);
    for (int i = 0; i < 8; i++)
        assert_int_equal(tensor_u8(&t)[i], i * 30);
    tensor_done(&t);

    assert_int_equal(npy_read(&t, FIX "np_bool_3.npy"), 0);
    assert_int_equal(t.dtype, SH_BOOL);
    assert_int_equal(t.numel, 3);
    assert_int_equal(tensor_u8(&t)[0], 1);
    assert_int_equal(tensor_u8(&t)[1], 0);
    assert_int_equal(tensor_u8(&t)[2], 1);
    tensor_done(&t);
}

static void test_npy_reads_0d_and_zero_size_arrays(void **state)
{
    (void)state;
    Tensor t;
    assert_int_equal(npy_read(&t, FIX "np_f32_scalar.npy"), 0);
    assert_int_equal(t.shape.rank, 0);
    assert_int_equal(t.numel, 1);
    assert_float_equal(tensor_f32(&t)[0], 2.5f, 0);
    tensor_done(&t);

    assert_int_equal(npy_read(&t, FIX "np_f32_0x3.npy"), 0);
    assert_int_equal(t.shape.rank, 2);
    assert_int_equal(t.shape.d[0], 0);
    assert_int_equal(t.shape.d[1], 3);
    assert_int_equal(t.numel, 0);
    tensor_done(&t);
}

static void test_npy_reads_format_versions_2_and_3(void **state)
{
    (void)state;
    Tensor t;
    NpyHeader h;
    assert_int_equal(npy_read_header(&h, FIX "np_f32_v2.npy"), 0);
    assert_int_equal(h.major, 2);
    assert_int_equal(npy_read(&t, FIX "np_f32_v2.npy"), 0);
    assert_int_equal(t.numel, 2);
    assert_float_equal(tensor_f32(&t)[0], 1.5f, 0);
    assert_float_equal(tensor_f32(&t)[1], -2.0f, 0);
    tensor_done(&t);

    assert_int_equal(npy_read_header(&h, FIX "np_f32_v3.npy"), 0);
    assert_int_equal(h.major, 3);
    assert_int_equal(npy_read(&t, FIX "np_f32_v3.npy"), 0);
    Shape s21 = shape_of(2, (int64_t)2, (int64_t)1);
    assert_true(shape_eq(&t.shape, &s21));
    assert_float_equal(tensor_f32(&t)[1], -2.0f, 0);
    tensor_done(&t);
}

/* What numpy.save wrote, we write byte for byte. */
static void test_npy_write_matches_numpy_bytes(void **state)
{
    (void)state;
    const char *files[] = {"np_f32_2x3.npy", "np_i64_4.npy",  "np_u8_2x2x2.npy", "np_bool_3.npy",
                           "np_f32_scalar.npy", "np_f32_0x3.npy", "np_x_4x1x3x3_u8.npy"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char src[256], dst[512];
        snprintf(src, sizeof src, FIX "%s", files[i]);
        tmp_path(dst, sizeof dst, files[i]);
        Tensor t;
        assert_int_equal(npy_read(&t, src), 0);
        assert_int_equal(npy_write(dst, &t, false), 0);
        size_t na, nb;
        unsigned char *a = slurp(src, &na), *b = slurp(dst, &nb);
        if (na != nb || memcmp(a, b, na) != 0)
            print_error("%s: written bytes differ from numpy's\n", files[i]);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na);
        free(a);
        free(b);
        tensor_done(&t);
    }
}

static void fill_pattern(Tensor *t, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (int64_t i = 0; i < t->numel; i++) {
        x = x * 1664525u + 1013904223u;
        switch (t->dtype) {
        case SH_F32: tensor_f32(t)[i] = (float)(int32_t)x / 65536.0f; break;
        case SH_I64: tensor_i64(t)[i] = (int64_t)((uint64_t)x * 0x9E3779B97F4A7C15ull); break;
        case SH_U8: tensor_u8(t)[i] = (uint8_t)(x >> 24); break;
        case SH_BOOL: tensor_u8(t)[i] = (uint8_t)(x >> 31); break;
        default: break;
        }
    }
}

static void test_npy_round_trips_every_dtype_and_rank(void **state)
{
    (void)state;
    const DType types[] = {SH_F32, SH_I64, SH_U8, SH_BOOL};
    const Shape shapes[] = {
        shape_of(0),
        shape_of(1, (int64_t)5),
        shape_of(2, (int64_t)3, (int64_t)7),
        shape_of(3, (int64_t)2, (int64_t)0, (int64_t)4),
        shape_of(4, (int64_t)2, (int64_t)3, (int64_t)4, (int64_t)5),
        shape_of(1, (int64_t)0),
        shape_of(8, (int64_t)1, (int64_t)2, (int64_t)1, (int64_t)2, (int64_t)1, (int64_t)2, (int64_t)1, (int64_t)3),
        shape_of(1, (int64_t)1000),
    };
    int count = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            Tensor t, back;
            assert_int_equal(tensor_alloc(&t, types[ti], &shapes[si]), 0);
            fill_pattern(&t, (unsigned)(ti * 31 + si));
            char path[512], name[64];
            snprintf(name, sizeof name, "rt_%zu_%zu.npy", ti, si);
            tmp_path(path, sizeof path, name);
            assert_int_equal(npy_write(path, &t, false), 0);
            assert_int_equal(npy_read(&back, path), 0);
            assert_int_equal(back.dtype, t.dtype);
            assert_true(shape_eq(&back.shape, &t.shape));
            assert_int_equal(back.numel, t.numel);
            if (t.numel)
                assert_memory_equal(back.data, t.data, tensor_bytes(&t));
            /* numpy aligns the data to 64 bytes; so do we */
            NpyHeader h;
            assert_int_equal(npy_read_header(&h, path), 0);
            assert_int_equal(h.data_offset % 64, 0);
            tensor_done(&t);
            tensor_done(&back);
            count++;
        }
    assert_int_equal(count, 32);
}

static void test_npy_refuses_to_overwrite_unless_asked(void **state)
{
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "keep.npy");
    Shape s = shape_of(1, (int64_t)2);
    Tensor a, b, back;
    assert_int_equal(tensor_alloc(&a, SH_F32, &s), 0);
    assert_int_equal(tensor_alloc(&b, SH_F32, &s), 0);
    tensor_f32(&a)[0] = 1;
    tensor_f32(&b)[0] = 2;
    assert_int_equal(npy_write(path, &a, false), 0);
    assert_fails_naming(npy_write(path, &b, false), SH_E_IO, path);
    assert_non_null(strstr(sh_errmsg(), "exists"));
    assert_int_equal(npy_read(&back, path), 0);
    assert_float_equal(tensor_f32(&back)[0], 1.0f, 0); /* untouched */
    tensor_done(&back);
    assert_int_equal(npy_write(path, &b, true), 0);
    assert_int_equal(npy_read(&back, path), 0);
    assert_float_equal(tensor_f32(&back)[0], 2.0f, 0);
    tensor_done(&back);
    /* no temporary file left behind */
    DIR *d = opendir(tmp_dir);
    struct dirent *e;
    while ((e = readdir(d)))
        assert_null(strstr(e->d_name, ".tmp-"));
    closedir(d);
    tensor_done(&a);
    tensor_done(&b);
}

static void test_npy_refuses_unsupported_dtype_and_layout_naming_them(void **state)
{
    (void)state;
    Tensor t;
    assert_fails_naming(npy_read(&t, FIX "np_f64_2.npy"), SH_E_UNSUPPORTED, "'<f8'");
    assert_non_null(strstr(sh_errmsg(), "np_f64_2.npy"));
    assert_null(t.data);
    assert_fails_naming(npy_read(&t, FIX "np_f32_bigendian.npy"), SH_E_UNSUPPORTED, "'>f4'");
    assert_fails_naming(npy_read(&t, FIX "np_f32_fortran.npy"), SH_E_UNSUPPORTED, "np_f32_fortran.npy");
    assert_non_null(strstr(sh_errmsg(), "Fortran"));
}

/* An NPY 1.0 image with the given header dict and data bytes. */
static size_t build_npy(unsigned char *buf, const char *dict, const void *data, size_t n)
{
    size_t len = strlen(dict);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)(len & 0xff);
    buf[9] = (unsigned char)(len >> 8);
    memcpy(buf + 10, dict, len);
    memcpy(buf + 10 + len, data, n);
    return 10 + len + n;
}

static void test_npy_parses_header_variants_numpy_accepts(void **state)
{
    (void)state;
    const char *ok[] = {
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n",
        "{\"shape\": (2,), \"descr\": \"<f4\", \"fortran_order\": False}",
        "{'descr':'<f4','fortran_order':False,'shape':(2L,)}   \n",
        "  { 'fortran_order' : False , 'shape' : ( 1 , 2 , ) , 'descr' : '<f4' }",
    };
    float data[2] = {3, 4};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        unsigned char buf[256];
        size_t n = build_npy(buf, ok[i], data, sizeof data);
        Tensor t;
        int rc = npy_read_mem(&t, "mem.npy", buf, n);
        if (rc)
            print_error("header %zu: %s\n", i, sh_errmsg());
        assert_int_equal(rc, 0);
        assert_int_equal(t.numel, 2);
        assert_float_equal(tensor_f32(&t)[1], 4.0f, 0);
        tensor_done(&t);
    }
}

static void test_npy_malformed_headers_name_the_file(void **state)
{
    (void)state;
    struct {
        const char *dict, *says;
    } bad[] = {
        {"{'descr': '<f4', 'fortran_order': False}", "no 'shape' key"},
        {"{'descr': '<f4', 'shape': (2,)}", "no 'fortran_order' key"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}", "unknown key 'extra'"},
        {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", "appears twice"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2)}", "trailing comma"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}", "non-negative integer"},
        {"{'descr': '<f4', 'fortran_order': false, 'shape': (2,)}", "True or False"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x", "unexpected text"},
        {"{descr: '<f4', 'fortran_order': False, 'shape': (2,)}", "quoted string"},
        {"{'descr': '<f4' 'fortran_order': False, 'shape': (2,)}", "expected ','"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", "expected"},
        {"['descr', '<f4']", "expected '{'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", "too large"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296)}", "too large"},
        {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}", "structured"},
        {"{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}", "not supported"},
    };
    float data[2] = {3, 4};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unsigned char buf[256];
        size_t n = build_npy(buf, bad[i].dict, data, sizeof data);
        Tensor t;
        int rc = npy_read_mem(&t, "bad_header.npy", buf, n);
        if (rc >= 0 || !strstr(sh_errmsg(), "bad_header.npy") || !strstr(sh_errmsg(), bad[i].says))
            print_error("header %zu <%s>: rc %d, message \"%s\", want \"%s\"\n", i, bad[i].dict, rc, sh_errmsg(),
                        bad[i].says);
        assert_true(rc < 0);
        assert_non_null(strstr(sh_errmsg(), "bad_header.npy"));
        assert_non_null(strstr(sh_errmsg(), bad[i].says));
        assert_null(t.data);
    }
}

static void test_npy_corrupt_files_name_the_file(void **state)
{
    (void)state;
    size_t n;
    unsigned char *good = slurp(FIX "np_f32_2x3.npy", &n);
    char path[512];
    Tensor t;

    /* cut inside the data */
    tmp_path(path, sizeof path, "cut.npy");
    spit(path, good, n - 14);
    assert_fails_naming(npy_read(&t, path), SH_E_FORMAT, path);
    assert_non_null(strstr(sh_errmsg(), "truncated: expected 24 bytes of array data, got 10"));

    /* one byte too many */
    unsigned char *more = malloc(n + 1);
    memcpy(more, good, n);
    more[n] = 0;
    tmp_path(path, sizeof path, "long.npy");
    spit(path, more, n + 1);
    assert_fails_naming(npy_read(&t, path), SH_E_FORMAT, "1 unexpected bytes");

    /* cut inside the header */
    tmp_path(path, sizeof path, "cut_header.npy");
    spit(path, good, 40);
    assert_fails_naming(npy_read(&t, path), SH_E_FORMAT, "truncated NPY header");
    tmp_path(path, sizeof path, "cut_prefix.npy");
    spit(path, good, 7);
    assert_fails_naming(npy_read(&t, path), SH_E_FORMAT, "cut_prefix.npy");

    /* wrong magic */
    memcpy(more, good, n);
    more[1] = 'X';
    tmp_path(path, sizeof path, "magic.npy");
    spit(path, more, n);
    assert_fails_naming(npy_read(&t, path), SH_E_FORMAT, "not an NPY file");

    /* unknown version */
    memcpy(more, good, n);
    more[6] = 4;
    tmp_path(path, sizeof path, "version.npy");
    spit(path, more, n);
    assert_fails_naming(npy_read(&t, path), SH_E_UNSUPPORTED, "version 4.0");

    /* a header length running past the end of the file */
    memcpy(more, good, n);
    more[8] = 0xff;
    more[9] = 0x7f;
    tmp_path(path, sizeof path, "hlen.npy");
    spit(path, more, n);
    assert_fails_naming(npy_read(&t, path), SH_E_FORMAT, "hlen.npy");

    /* empty file, missing file, a directory */
    tmp_path(path, sizeof path, "empty.npy");
    spit(path, "", 0);
    assert_fails_naming(npy_read(&t, path), SH_E_FORMAT, "empty.npy");
    assert_fails_naming(npy_read(&t, "tests/fixtures/no_such_file.npy"), SH_E_IO, "no_such_file.npy");
    assert_fails_naming(npy_read(&t, tmp_dir), SH_E_IO, tmp_dir);

    /* bools must be 0 or 1 */
    unsigned char buf[256], b3[3] = {1, 2, 0};
    size_t len = build_npy(buf, "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", b3, 3);
    assert_fails_naming(npy_read_mem(&t, "b.npy", buf, len), SH_E_FORMAT, "not a bool");
    free(good);
    free(more);
}

static void test_npy_read_rows_keeps_the_first_rows(void **state)
{
    (void)state;
    Tensor t;
    assert_int_equal(npy_read_rows(&t, FIX "np_f32_2x3.npy", 1), 0);
    Shape s13 = shape_of(2, (int64_t)1, (int64_t)3);
    assert_true(shape_eq(&t.shape, &s13));
    for (int i = 0; i < 3; i++)
        assert_float_equal(tensor_f32(&t)[i], i * 0.5f - 1.0f, 0);
    tensor_done(&t);
    assert_int_equal(npy_read_rows(&t, FIX "np_f32_2x3.npy", 10), 0);
    assert_int_equal(t.shape.d[0], 2);
    tensor_done(&t);
}

static void test_npy_write_refuses_unsupported_dtype(void **state)
{
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "undef.npy");
    Tensor t = {.dtype = SH_UNDEF};
    assert_fails_naming(npy_write(path, &t, false), SH_E_UNSUPPORTED, path);
    assert_int_equal(access(path, F_OK), -1);
    Shape s = shape_of(1, (int64_t)1);
    assert_int_equal(tensor_alloc(&t, SH_F32, &s), 0);
    assert_fails_naming(npy_write("/nonexistent-dir/x.npy", &t, false), SH_E_IO, "/nonexistent-dir/x.npy");
    tensor_done(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_npy_reads_numpy_files_of_every_dtype),
        cmocka_unit_test(test_npy_reads_0d_and_zero_size_arrays),
        cmocka_unit_test(test_npy_reads_format_versions_2_and_3),
        cmocka_unit_test(test_npy_write_matches_numpy_bytes),
        cmocka_unit_test(test_npy_round_trips_every_dtype_and_rank),
        cmocka_unit_test(test_npy_refuses_to_overwrite_unless_asked),
        cmocka_unit_test(test_npy_refuses_unsupported_dtype_and_layout_naming_them),
        cmocka_unit_test(test_npy_parses_header_variants_numpy_accepts),
        cmocka_unit_test(test_npy_malformed_headers_name_the_file),
        cmocka_unit_test(test_npy_corrupt_files_name_the_file),
        cmocka_unit_test(test_npy_read_rows_keeps_the_first_rows),
        cmocka_unit_test(test_npy_write_refuses_unsupported_dtype),
    };
    return cmocka_run_group_tests(tests, make_tmp_dir, remove_tmp_dir);
}
