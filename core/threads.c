#include "threads.h"

#include <cblas.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
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

typedef struct {
    int (*fn)(int i, void *ctx);
    void *ctx;
    int i, rc;
} Task;

static _Thread_local int parallel_depth; /* > 0 inside a task of sh_run_parallel */

bool sh_in_parallel(void) { return parallel_depth > 0; }

static void *task_main(void *arg)
{
    Task *t = arg;
    parallel_depth++;
    t->rc = t->fn(t->i, t->ctx);
    parallel_depth--;
    return NULL;
}

int sh_run_parallel(int n, int (*fn)(int i, void *ctx), void *ctx)
{
    if (n <= 1)
        return fn(0, ctx);
    Task *tasks = calloc((size_t)n, sizeof *tasks);
    pthread_t *ids = calloc((size_t)n, sizeof *ids);
    bool *started = calloc((size_t)n, sizeof *started);
    int rc = 0;
    if (!tasks || !ids || !started) {
        free(tasks);
        free(ids);
        free(started);
        return -1;
    }
    openblas_set_num_threads(1);
    for (int i = 0; i < n; i++)
        tasks[i] = (Task){.fn = fn, .ctx = ctx, .i = i};
    for (int i = 1; i < n; i++)
        started[i] = pthread_create(&ids[i], NULL, task_main, &tasks[i]) == 0;
    task_main(&tasks[0]);
    for (int i = 1; i < n; i++) {
        if (started[i])
            pthread_join(ids[i], NULL);
        else
            task_main(&tasks[i]); /* no thread: run it here */
    }
    for (int i = 0; i < n && rc == 0; i++)
        rc = tasks[i].rc;
    openblas_set_num_threads(current_threads);
    free(tasks);
    free(ids);
    free(started);
    return rc;
}
