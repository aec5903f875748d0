#include "threads.h"

#include <cblas.h>
#include <unistd.h>

static int current_threads = 1;

void sh_set_threads(int n)
{
    if (n < 1)
        n = 1;
    openblas_set_num_threads(n);
    current_threads = n;
}

int sh_get_threads(void) { return current_threads; }

const char *sh_blas_core(void) { return openblas_get_corename(); }

int sh_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
