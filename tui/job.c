#include "job.h"

#include "core/error.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void job_init(Job *j)
{
    memset(j, 0, sizeof *j);
    pthread_mutex_init(&j->mu, NULL);
    j->fraction = -1;
}

static void reset(Job *j)
{
    free(j->text);
    free(j->name);
    free(j->points);
    cJSON_Delete(j->result);
    cJSON_Delete(j->partials);
    j->text = j->name = NULL;
    j->points = NULL;
    j->n_points = j->cap_points = 0;
    j->result = j->partials = NULL;
    j->finished = false;
    j->rc = 0;
    j->error[0] = '\0';
    j->fraction = -1;
    j->status[0] = '\0';
    j->cancel = 0;
}

void job_done(Job *j)
{
    if (j->running)
        pthread_join(j->thread, NULL);
    reset(j);
    pthread_mutex_destroy(&j->mu);
}

static void log_sink(void *ctx, const char *text) { log_append(ctx, LOG_OUTPUT, text); }

static void on_progress(void *ctx, double fraction, const char *status)
{
    Job *j = ctx;
    pthread_mutex_lock(&j->mu);
    j->fraction = fraction < 0 ? 0 : fraction > 1 ? 1 : fraction;
    snprintf(j->status, sizeof j->status, "%s", status);
    j->version++;
    pthread_mutex_unlock(&j->mu);
}

static double num(const cJSON *obj, const char *key, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static void on_partial(void *ctx, const char *command, const cJSON *result)
{
    Job *j = ctx;
    cJSON *copy = NULL;
    TrainPoint pt = {0};
    bool train = strcmp(command, "train") == 0 || strcmp(command, "finetune") == 0;
    if (train) {
        pt.epoch = num(result, "epoch", 0);
        pt.loss = num(result, "loss", 0);
        pt.accuracy = num(result, "accuracy", 0);
        pt.has_val = cJSON_GetObjectItemCaseSensitive(result, "val_accuracy") != NULL;
        pt.val_loss = num(result, "val_loss", 0);
        pt.val_accuracy = num(result, "val_accuracy", 0);
    } else { /* copied outside the lock: the worker's time, not the UI's */
        copy = cJSON_CreateObject();
        cJSON_AddStringToObject(copy, "command", command);
        cJSON_AddItemToObject(copy, "result", cJSON_Duplicate(result, 1));
    }
    pthread_mutex_lock(&j->mu);
    if (train) {
        grow_array((void **)&j->points, &j->cap_points, j->n_points + 1, sizeof *j->points);
        j->points[j->n_points++] = pt;
    } else {
        if (!j->partials)
            j->partials = cJSON_CreateArray();
        cJSON_AddItemToArray(j->partials, copy);
    }
    j->version++;
    pthread_mutex_unlock(&j->mu);
}

/* Runs text's one command with an Out bound to log (and to j if not NULL). */
static int run_one(Workspace *ws, Session *s, Log *log, const char *text, Job *j, cJSON **result, char *err,
                   size_t n_err)
{
    CommandList list;
    cJSON *obj = cJSON_CreateObject();
    int rc = parse_commands(text, &list);
    if (rc == 0 && list.n != 1) {
        command_list_done(&list);
        rc = sh_fail(SH_E_ARG, "expected one command, got %d", list.n);
    }
    if (rc == 0) {
        Out o = {.sink = log_sink, .sink_ctx = log, .obj = obj};
        if (j) {
            o.progress = on_progress;
            o.partial = on_partial;
            o.job_ctx = j;
            o.cancel = &j->cancel;
        }
        session_command_begin(s, ws);
        rc = command_run(ws, &list.cmds[0], &o);
        if (rc == 0)
            session_command_ok(s, ws, &list.cmds[0]);
        command_list_done(&list);
    }
    if (rc < 0)
        snprintf(err, n_err, "%s", sh_errmsg()[0] ? sh_errmsg() : sh_strcode(rc));
    log_flush(log);
    *result = obj;
    return rc;
}

static void *worker(void *arg)
{
    Job *j = arg;
    char err[1024] = "";
    cJSON *result;
    int rc = run_one(j->ws, j->session, j->log, j->text, j, &result, err, sizeof err);
    pthread_mutex_lock(&j->mu);
    j->rc = rc;
    snprintf(j->error, sizeof j->error, "%s", err);
    j->result = result;
    j->finished = true;
    j->version++;
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

int job_start(Job *j, Workspace *ws, Session *s, Log *log, const char *text)
{
    if (j->running)
        return sh_fail(SH_E_STATE, "a job is running");
    reset(j);
    j->text = xstrdup(text);
    j->name = xstrdup(text);
    j->name[strcspn(j->name, " \t")] = '\0';
    j->ws = ws;
    j->session = s;
    j->log = log;
    j->t0 = now_seconds();
    if (pthread_create(&j->thread, NULL, worker, j) != 0)
        return sh_fail(SH_E_STATE, "cannot start a worker thread");
    j->running = true;
    return 0;
}

int job_run_here(Workspace *ws, Session *s, Log *log, const char *text, cJSON **result)
{
    char err[1024];
    int rc = run_one(ws, s, log, text, NULL, result, err, sizeof err);
    if (rc < 0)
        sh_fail(rc, "%s", err);
    return rc;
}

bool job_collect(Job *j)
{
    if (!j->running)
        return false;
    pthread_mutex_lock(&j->mu);
    bool done = j->finished;
    pthread_mutex_unlock(&j->mu);
    if (!done)
        return false;
    pthread_join(j->thread, NULL);
    j->running = false;
    return true;
}

long job_version(Job *j)
{
    pthread_mutex_lock(&j->mu);
    long v = j->version;
    pthread_mutex_unlock(&j->mu);
    return v;
}

void job_progress(Job *j, double *fraction, char *status, size_t n)
{
    pthread_mutex_lock(&j->mu);
    *fraction = j->fraction;
    snprintf(status, n, "%s", j->status);
    pthread_mutex_unlock(&j->mu);
}

int job_points(Job *j, TrainPoint **out)
{
    pthread_mutex_lock(&j->mu);
    int n = j->n_points;
    *out = xmalloc(sizeof **out * (size_t)(n + 1));
    if (n)
        memcpy(*out, j->points, sizeof **out * (size_t)n);
    pthread_mutex_unlock(&j->mu);
    return n;
}

cJSON *job_take_partials(Job *j)
{
    pthread_mutex_lock(&j->mu);
    cJSON *p = j->partials;
    j->partials = NULL;
    pthread_mutex_unlock(&j->mu);
    return p;
}
