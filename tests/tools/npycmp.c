/* Compares two NPY files element by element.
 *
 * Usage: npycmp [--atol A] [--rtol R] GOT.npy WANT.npy
 * Elements match when |got - want| <= atol + rtol * |want| (defaults 1e-4
 * and 1e-4), or both are NaN, or both are the same infinity. Shapes must
 * be equal; dtypes must be equal. Prints "max abs diff X" on success (exit
 * 0) and one line naming the first bad element on failure (exit 1); exit 2
 * when a file cannot be read. */
#include "core/error.h"
#include "core/npy.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_tol(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0)) {
        fprintf(stderr, "npycmp: tolerance must be a non-negative number, got '%s'\n", s);
        return -1;
    }
    *out = v;
    return 0;
}

/* Index of the first mismatching element (or -1); *max_diff receives the
 * largest finite |got - want|. */
static int64_t first_mismatch(const Tensor *got, const Tensor *want, double atol, double rtol,
                              double *max_diff)
{
    int64_t bad = -1;
    *max_diff = 0;
    for (int64_t i = 0; i < got->numel; i++) {
        double x = tensor_get_f(got, i), y = tensor_get_f(want, i);
        if ((isnan(x) && isnan(y)) || (isinf(x) && x == y))
            continue;
        double d = fabs(x - y);
        if (d > *max_diff || isnan(d))
            *max_diff = d;
        if (!(d <= atol + rtol * fabs(y)) && bad < 0)
            bad = i;
    }
    return bad;
}

int main(int argc, char **argv)
{
    double atol = 1e-4, rtol = 1e-4;
    int i = 1;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (strcmp(argv[i], "--atol") == 0 && parse_tol(argv[i + 1], &atol) == 0)
            continue;
        if (strcmp(argv[i], "--rtol") == 0 && parse_tol(argv[i + 1], &rtol) == 0)
            continue;
        fprintf(stderr, "npycmp: bad option '%s'\n", argv[i]);
        return 2;
    }
    if (argc - i != 2) {
        fprintf(stderr, "usage: npycmp [--atol A] [--rtol R] GOT.npy WANT.npy\n");
        return 2;
    }
    const char *a = argv[i], *b = argv[i + 1];
    Tensor got = {0}, want = {0};
    int status = 1;
    if (npy_read(&got, a) < 0 || npy_read(&want, b) < 0) {
        fprintf(stderr, "npycmp: %s\n", sh_errmsg());
        status = 2;
        goto done;
    }
    char sa[128], sb[128];
    if (got.dtype != want.dtype || !shape_eq(&got.shape, &want.shape)) {
        printf("%s is %s %s, %s is %s %s\n", a, dtype_name(got.dtype),
               shape_str(&got.shape, sa, sizeof sa), b, dtype_name(want.dtype),
               shape_str(&want.shape, sb, sizeof sb));
        goto done;
    }
    double max_diff;
    int64_t bad = first_mismatch(&got, &want, atol, rtol, &max_diff);
    if (bad >= 0) {
        printf("element %lld is %.9g, expected %.9g (max abs diff %.3g, atol %g rtol %g)\n",
               (long long)bad, tensor_get_f(&got, bad), tensor_get_f(&want, bad), max_diff, atol,
               rtol);
        goto done;
    }
    printf("max abs diff %.3g\n", max_diff);
    status = 0;
done:
    tensor_done(&got);
    tensor_done(&want);
    return status;
}
