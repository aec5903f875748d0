/* Jobs: one command at a time runs on a worker thread, which owns the
 * Workspace until it finishes. Its Out appends text to the log, reports
 * progress (fraction, status) and partial results (training points,
 * scores, sensitivity curves) here under a mutex held only for copies,
 * and polls `cancel`, which the UI sets on Esc. The UI thread never
 * touches the Workspace while a job runs: it draws from its snapshot and
 * from this struct. */
#ifndef SH_TUI_JOB_H
#define SH_TUI_JOB_H

#include "log.h"
#include "session.h"

#include <cJSON.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>

typedef struct {
    double epoch, loss, accuracy, val_loss, val_accuracy;
    bool has_val;
} TrainPoint;

typedef struct Job {
    pthread_t thread;
    bool running;            /* started and not yet collected (UI thread) */
    pthread_mutex_t mu;
    /* written by the worker under mu */
    bool finished;
    int rc;
    char error[1024];
    cJSON *result;           /* the command's result object, handed to the UI */
    double fraction;         /* < 0: no progress reported */
    char status[256];
    TrainPoint *points;      /* live training curve */
    int n_points, cap_points;
    cJSON *partials;         /* array of {"command", "result"} not yet taken */
    long version;            /* bumps on every change */
    /* fixed while it runs */
    char *text;              /* the command line */
    char *name;              /* the command's name */
    double t0;
    volatile sig_atomic_t cancel;
    Workspace *ws;
    Session *session;
    Log *log;
} Job;

void job_init(Job *j);
void job_done(Job *j);
/* Starts one command (text holds exactly one) on the worker thread. */
int job_start(Job *j, Workspace *ws, Session *s, Log *log, const char *text);
/* Runs one command on the calling thread with the same Out (front-end
 * commands, which touch the UI); returns its code and result. */
int job_run_here(Workspace *ws, Session *s, Log *log, const char *text, cJSON **result);
/* If the worker has finished: joins it and returns true. */
bool job_collect(Job *j);
long job_version(Job *j);
/* Progress under the lock: fraction (< 0 none) and status. */
void job_progress(Job *j, double *fraction, char *status, size_t n);
/* Copies the live training points (new array, caller frees). */
int job_points(Job *j, TrainPoint **out);
/* Takes the partial results not yet taken (an array, or NULL). */
cJSON *job_take_partials(Job *j);

#endif
