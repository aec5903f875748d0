/* --bench-ui: the workbench on an invisible screen, driven by a key
 * driver instead of a keyboard.
 *   1. keystroke to redraw: builds a generated 1,000-node model (500
 *      linear + relu pairs, 499 prunable groups) and presses navigation
 *      keys one at a time (rows, pages, panes, first/last, sort, help),
 *      timing each from the key's arrival to the end of the redraw it
 *      caused;
 *   2. stalls while jobs run: starts jobs on the worker thread (`bench`
 *      on the generated model, then a fine-tune of the CNN sample on
 *      Fashion-MNIST when both are there, which streams progress and
 *      training points) and keeps pressing keys every few ms, measuring
 *      the longest gap between two turns of the UI loop and the key
 *      latency while the job runs.
 * Prints the numbers on stdout after the screen is closed. */
#define _XOPEN_SOURCE 700
#include "bench_ui.h"

#include "core/util.h"

#include <curses.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BENCH_NODES_PAIRS 500
#define BENCH_KEYS 600
#define LAT_MAX 4096

typedef enum { PH_START, PH_LOAD, PH_KEYS, PH_JOB_START, PH_JOB, PH_DONE } Phase;

typedef struct {
    const char *arch;
    Phase phase;
    int n_sent;
    double sent_at;       /* when the last key was handed out, 0: none waiting */
    double lat[LAT_MAX];  /* keystroke-to-redraw, ms */
    int n_lat;
    /* jobs */
    const char *jobs[4];
    int n_jobs, job;
    double last_call, job_t0, job_key_at;
    double stall_max[4], key_max[4], key_sum[4], job_secs[4];
    int key_n[4];
    double loop_work_max;
} Bench;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Navigation keys, as the layers/units/plot panes see them. */
static int nav_key(int i)
{
    static const int seq[] = {'j', 'j', 'j', KEY_NPAGE, 'j', 'k', KEY_NPAGE, KEY_NPAGE, 'G', 'k', 'g', KEY_NPAGE,
                              '\t', 'j', 'j', 'o', 'j', KEY_NPAGE, 'o', '\t', '\t', '\t', 'j', 'k', '?', 'j',
                              KEY_NPAGE, 27, KEY_BTAB};
    return seq[i % (int)(sizeof seq / sizeof seq[0])];
}

static int drive(App *app, void *ctx, double now)
{
    Bench *b = ctx;
    bool settled = !app->dirty && app->key_time <= 0;
    switch (b->phase) {
    case PH_START: {
        char *cmd = xasprintf("build \"%s\"", b->arch);
        app_submit(app, cmd, false);
        free(cmd);
        b->phase = PH_LOAD;
        return -1;
    }
    case PH_LOAD:
        if (app_job_running(app) || app->n_queue || !settled)
            return -1;
        app_submit(app, "score l1", false); /* score bars in the units pane */
        b->phase = PH_KEYS;
        return -1;
    case PH_KEYS:
        if (app_job_running(app) || app->n_queue || !settled)
            return -1;
        if (b->sent_at > 0) {
            if (b->n_lat < LAT_MAX)
                b->lat[b->n_lat++] = (now - b->sent_at) * 1e3;
            b->sent_at = 0;
        }
        if (b->n_sent >= BENCH_KEYS) {
            b->phase = PH_JOB_START;
            return -1;
        }
        b->sent_at = now;
        return nav_key(b->n_sent++);
    case PH_JOB_START:
        if (b->job >= b->n_jobs) {
            b->phase = PH_DONE;
            return -1;
        }
        app->key_job_max_ms = app->loop_job_max_ms = 0;
        app->key_job_count = 0;
        app_submit(app, b->jobs[b->job], false);
        b->job_t0 = b->last_call = now;
        b->job_key_at = 0;
        b->phase = PH_JOB;
        return -1;
    case PH_JOB: {
        int j = b->job;
        if (app_job_running(app))
            b->stall_max[j] = fmax(b->stall_max[j], (now - b->last_call) * 1e3);
        b->last_call = now;
        if (!app_job_running(app) && !app->n_queue) {
            b->job_secs[j] = now - b->job_t0;
            b->key_max[j] = app->key_job_max_ms;
            b->loop_work_max = fmax(b->loop_work_max, app->loop_job_max_ms);
            b->job++;
            b->phase = PH_JOB_START;
            return -1;
        }
        if (b->job_key_at > 0 && settled) {
            double ms = (now - b->job_key_at) * 1e3;
            b->key_sum[j] += ms;
            b->key_n[j]++;
            b->key_max[j] = fmax(b->key_max[j], ms);
            b->job_key_at = 0;
        }
        if (b->job_key_at <= 0 && settled && now - b->job_t0 > 0.2) {
            b->job_key_at = now;
            static int k;
            static const int keys[] = {'j', 'k', KEY_NPAGE, '\t', 'j', KEY_BTAB, 'g'};
            return keys[k++ % 7];
        }
        return -1;
    }
    case PH_DONE:
        app->quit = true;
        return -1;
    }
    return -1;
}

static char *write_arch(void)
{
    const char *dir = getenv("TMPDIR");
    char *path = xasprintf("%s/shears-bench-ui-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        free(path);
        return NULL;
    }
    fprintf(f, "{\"name\": \"deep1000\", \"input\": [32], \"seed\": 1, \"layers\": [\n");
    for (int i = 0; i < BENCH_NODES_PAIRS; i++)
        fprintf(f, "  {\"type\": \"linear\", \"out\": 32}, {\"type\": \"relu\"},\n");
    fprintf(f, "  {\"type\": \"linear\", \"out\": 10}\n]}\n");
    fclose(f);
    return path;
}

int bench_ui_run(const AppOptions *opt)
{
    Bench *b = xcalloc(1, sizeof *b);
    char *arch = write_arch();
    if (!arch) {
        fprintf(stderr, "shears: --bench-ui cannot write a temporary file\n");
        free(b);
        return 1;
    }
    b->arch = arch;
    b->jobs[b->n_jobs++] = "bench batch=64 iters=300";
    bool cnn = access("samples/fmnist-cnn.onnx", R_OK) == 0;
    if (cnn)
        b->jobs[b->n_jobs++] = "load samples/fmnist-cnn.onnx; data fashion-mnist; finetune epochs=1 limit=3000";
    AppOptions o = *opt;
    o.model = o.data = o.keys_path = NULL;
    o.recover = false;
    o.no_journal = true;
    if (o.rows <= 0 || o.cols <= 0) {
        o.rows = 50;
        o.cols = 160;
    }
    o.driver = drive;
    o.driver_ctx = b;
    int rc = app_run(&o);
    unlink(arch);
    free(arch);
    if (rc != 0) {
        free(b);
        return rc;
    }
    qsort(b->lat, (size_t)b->n_lat, sizeof *b->lat, cmp_double);
    double sum = 0;
    for (int i = 0; i < b->n_lat; i++)
        sum += b->lat[i];
    int ok = b->n_lat > 0;
    printf("shears --bench-ui (screen %dx%d, invisible terminal)\n", o.cols, o.rows);
    if (ok)
        printf("keystroke to redraw, generated model of %d nodes: %d keys, mean %.2f ms, median %.2f ms, "
               "p99 %.2f ms, max %.2f ms (target <= 16 ms)\n",
               2 * BENCH_NODES_PAIRS + 1, b->n_lat, sum / b->n_lat, b->lat[b->n_lat / 2],
               b->lat[(int)(b->n_lat * 0.99)], b->lat[b->n_lat - 1]);
    for (int j = 0; j < b->n_jobs; j++)
        printf("while '%s' ran (%.1f s): longest UI loop stall %.2f ms (target <= 50 ms), %d keys answered, "
               "key to redraw mean %.2f ms, max %.2f ms\n",
               b->jobs[j], b->job_secs[j], b->stall_max[j], b->key_n[j],
               b->key_n[j] ? b->key_sum[j] / b->key_n[j] : 0.0, b->key_max[j]);
    printf("longest single loop turn's work while a job ran: %.2f ms\n", b->loop_work_max);
    free(b);
    return ok ? 0 : 1;
}
