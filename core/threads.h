/* The one place that sets thread counts (OpenBLAS's pool, and the parts a
 * convolution splits its batch into). Work already running on our threads
 * never splits again, so nothing oversubscribes the cores. */
#ifndef SH_THREADS_H
#define SH_THREADS_H

#include <stdbool.h>

/* Sets the BLAS thread count (n >= 1). */
void sh_set_threads(int n);
int sh_get_threads(void);
/* The OpenBLAS kernel in use ("Haswell", "SkylakeX", ...). */
const char *sh_blas_core(void);
/* Logical CPUs available. */
int sh_cpu_count(void);

/* Runs fn(i, ctx) for i in [0, n) on n threads (the caller runs i = 0)
 * with BLAS single-threaded for the duration, so our threads and BLAS's
 * never compete for the cores. Returns the first nonzero fn result. */
int sh_run_parallel(int n, int (*fn)(int i, void *ctx), void *ctx);
/* True on a thread running a task of sh_run_parallel: kernels that split
 * their work over the threads do not split again there. */
bool sh_in_parallel(void);

#endif
