/* Training commands: train, finetune, save. */
#include "commands.h"

#include "core/error.h"
#include "core/train.h"
#include "core/util.h"

#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t cancel_requested;

static void on_sigint(int sig)
{
    (void)sig;
    cancel_requested = 1;
}

typedef struct {
    Out *o;
    bool bar;          /* a terminal: redraw one line */
    double next_line;  /* plain output: time of the next progress line */
    double t0;
} Progress;

static void fmt_eta(double s, char *buf, size_t n)
{
    int t = (int)(s + 0.5);
    snprintf(buf, n, "%d:%02d", t / 60, t % 60);
}

static void on_progress(const TrainProgress *p, void *ctx)
{
    Progress *pr = ctx;
    char eta[32];
    fmt_eta(p->eta_s, eta, sizeof eta);
    double frac = ((double)p->epoch + (double)p->step / (double)(p->steps_per_epoch ? p->steps_per_epoch : 1)) /
                  (double)(p->epochs ? p->epochs : 1);
    out_progress(pr->o, frac, "epoch %lld/%lld loss %.4f acc %.2f%% %.0f img/s ETA %s", (long long)p->epoch + 1,
                 (long long)p->epochs, p->loss, 100 * p->accuracy, p->images_per_s, eta);
    if (pr->o->partial) { /* live curves: one point per step */
        cJSON *pt = cJSON_CreateObject();
        cJSON_AddNumberToObject(pt, "epoch", (double)p->epoch + (double)p->step / (double)(p->steps_per_epoch ? p->steps_per_epoch : 1));
        cJSON_AddNumberToObject(pt, "loss", p->loss);
        cJSON_AddNumberToObject(pt, "accuracy", p->accuracy);
        if (p->epoch_done) {
            cJSON_AddNumberToObject(pt, "val_loss", p->val_loss);
            cJSON_AddNumberToObject(pt, "val_accuracy", p->val_accuracy);
        }
        out_partial(pr->o, "train", pt);
        cJSON_Delete(pt);
    }
    if (pr->o->progress) /* a job: the front end draws progress itself */
        return;
    if (p->epoch_done) {
        if (pr->bar)
            out_text(pr->o, "\r\033[K");
        out_text(pr->o, "epoch %lld/%lld: loss %.4f, accuracy %.2f%%", (long long)p->epoch + 1,
                 (long long)p->epochs, p->loss, 100 * p->accuracy);
        if (p->val_accuracy > 0 || p->val_loss > 0)
            out_text(pr->o, ", val loss %.4f, val accuracy %.2f%%", p->val_loss, 100 * p->val_accuracy);
        out_text(pr->o, ", %.0f images/s\n", p->images_per_s);
        return;
    }
    if (pr->bar) {
        int width = 24, done = (int)((double)width * (double)p->step / (double)p->steps_per_epoch);
        char bar[32];
        for (int i = 0; i < width; i++)
            bar[i] = i < done ? '=' : i == done ? '>' : ' ';
        bar[width] = 0;
        out_text(pr->o, "\repoch %lld/%lld [%s] loss %.4f acc %.2f%% %.0f img/s lr %.4g ETA %s\033[K",
                 (long long)p->epoch + 1, (long long)p->epochs, bar, p->loss, 100 * p->accuracy,
                 p->images_per_s, p->lr, eta);
        return;
    }
    double now = now_seconds();
    if (now >= pr->next_line) { /* plain lines every 10 s when not on a terminal */
        pr->next_line = now + 10;
        out_text(pr->o, "epoch %lld/%lld step %lld/%lld: loss %.4f, accuracy %.2f%%, %.0f images/s, ETA %s\n",
                 (long long)p->epoch + 1, (long long)p->epochs, (long long)p->step,
                 (long long)p->steps_per_epoch, p->loss, 100 * p->accuracy, p->images_per_s, eta);
    }
}

/* Reads the training arguments over defaults. */
static int read_train_args(const Command *c, FitConfig *f, int64_t *limit)
{
    TrainConfig *t = &f->cfg;
    int64_t epochs, batch, seed, warmup, step, crop;
    double lr, wd, mom, gamma, smooth, clip;
    bool nesterov, flip;
    int rc;
    if ((rc = arg_int(c, "epochs", f->epochs, 1, 100000, &epochs)) < 0 ||
        (rc = arg_int(c, "batch", f->batch, 1, 1 << 16, &batch)) < 0 ||
        (rc = arg_int(c, "seed", (int64_t)t->seed, 0, INT64_MAX / 2, &seed)) < 0 ||
        (rc = arg_int(c, "warmup", t->warmup_steps, 0, INT64_MAX / 2, &warmup)) < 0 ||
        (rc = arg_int(c, "step", t->step_size, 1, INT64_MAX / 2, &step)) < 0 ||
        (rc = arg_int(c, "crop", f->data.crop_pad, 0, 64, &crop)) < 0 ||
        (rc = arg_int(c, "limit", 0, 0, INT64_MAX / 2, limit)) < 0 ||
        (rc = arg_double(c, "lr", t->lr, 0, 100, &lr)) < 0 ||
        (rc = arg_double(c, "wd", t->weight_decay, 0, 1, &wd)) < 0 ||
        (rc = arg_double(c, "momentum", t->momentum, 0, 0.9999, &mom)) < 0 ||
        (rc = arg_double(c, "gamma", t->gamma, 0, 1, &gamma)) < 0 ||
        (rc = arg_double(c, "smoothing", t->label_smoothing, 0, 0.99, &smooth)) < 0 ||
        (rc = arg_double(c, "clip", t->clip_norm, 0, 1e9, &clip)) < 0 ||
        (rc = arg_bool(c, "nesterov", t->nesterov, &nesterov)) < 0 ||
        (rc = arg_bool(c, "flip", f->data.hflip, &flip)) < 0)
        return rc;
    const char *opt = cmd_get(c, "opt"), *sched = cmd_get(c, "schedule");
    if (opt)
        t->opt = strcmp(opt, "adamw") == 0 ? OPT_ADAMW : OPT_SGD;
    if (sched)
        t->schedule = strcmp(sched, "cosine") == 0 ? SCHED_COSINE
                      : strcmp(sched, "step") == 0 ? SCHED_STEP
                                                   : SCHED_CONSTANT;
    if (opt && t->opt == OPT_ADAMW && !cmd_get(c, "wd"))
        wd = 0.05; /* AdamW's decay is decoupled: a larger default */
    f->epochs = epochs;
    f->batch = batch;
    t->seed = (uint64_t)seed;
    t->warmup_steps = warmup;
    t->step_size = step;
    t->lr = lr;
    t->weight_decay = wd;
    t->momentum = mom;
    t->gamma = gamma;
    t->label_smoothing = smooth;
    t->clip_norm = clip;
    t->nesterov = nesterov;
    f->data.shuffle = true;
    f->data.seed = (uint64_t)seed;
    f->data.crop_pad = (int)crop;
    f->data.hflip = flip;
    return 0;
}

static void report_result(Out *o, const FitResult *r, const FitConfig *f)
{
    out_text(o, "trained %lld steps in %.1f s (%.0f images/s)", (long long)r->steps, r->seconds,
             r->images_per_s);
    if (r->val_accuracy > 0)
        out_text(o, ", val accuracy %.2f%%", 100 * r->val_accuracy);
    out_text(o, "\n");
    cJSON_AddNumberToObject(o->obj, "epochs", (double)f->epochs);
    cJSON_AddNumberToObject(o->obj, "steps", (double)r->steps);
    cJSON_AddNumberToObject(o->obj, "seconds", r->seconds);
    cJSON_AddNumberToObject(o->obj, "images_per_s", r->images_per_s);
    cJSON_AddNumberToObject(o->obj, "train_loss", r->train_loss);
    cJSON_AddNumberToObject(o->obj, "train_accuracy", r->train_accuracy);
    cJSON_AddNumberToObject(o->obj, "val_loss", r->val_loss);
    cJSON_AddNumberToObject(o->obj, "val_accuracy", r->val_accuracy);
    cJSON_AddBoolToObject(o->obj, "cancelled", r->cancelled);
}

static void reapply_masks(void *ctx)
{
    Workspace *ws = ctx;
    sparsity_apply(ws->model, &ws->sparse);
}

static int run_fit(Workspace *ws, const Command *c, Out *o, FitConfig *f, const Graph *teacher)
{
    int64_t limit;
    const DataSubset *train, *val = NULL;
    int rc;
    f->cfg.threads = ws->threads;
    if ((rc = ws_require_model(ws)) < 0 || (rc = read_train_args(c, f, &limit)) < 0 ||
        (rc = ws_subset(ws, "train", &train)) < 0)
        return rc;
    if (ws->val.n > 0)
        val = &ws->val;
    DataSubset part = *train;
    if (limit > 0 && limit < part.n)
        part.n = limit;
    Progress pr = {.o = o, .bar = !o->json && isatty(STDOUT_FILENO), .t0 = now_seconds()};
    pr.next_line = pr.t0 + 10;
    f->progress = on_progress;
    f->ctx = &pr;
    f->state = &ws->opt;
    if (ws->sparse.n) { /* 2:4 masks stay in force through training */
        f->after_step = reapply_masks;
        f->after_step_ctx = ws;
    }
    double slim, lasso;
    if ((rc = arg_double(c, "slim", 0, 0, 10, &slim)) < 0 || (rc = arg_double(c, "group_lasso", 0, 0, 10, &lasso)) < 0)
        return rc;
    f->cfg.slim = slim;
    f->cfg.group_lasso = lasso;
    if (lasso > 0) {
        const DepGraph *dg;
        if ((rc = ws_groups(ws, &dg)) < 0)
            return rc;
        f->cfg.groups = dg;
    }
    FitResult r;
    if (o->cancel) { /* a job: the front end owns cancellation */
        f->cancel = o->cancel;
        rc = fit(ws->model, teacher, &part, val, f, &r);
    } else { /* batch mode: Ctrl-C cancels, keeping the last finished step */
        f->cancel = &cancel_requested;
        cancel_requested = 0;
        struct sigaction sa = {.sa_handler = on_sigint}, old;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &old);
        rc = fit(ws->model, teacher, &part, val, f, &r);
        sigaction(SIGINT, &old, NULL);
    }
    if (r.steps > 0) {
        ws->dirty = true;
        if (ws->scores && ws->dg) { /* the weights moved: their scores are stale */
            for (int i = 0; i < ws->dg->n_groups; i++)
                free(ws->scores[i]);
            free(ws->scores);
            ws->scores = NULL;
            free(ws->score_name);
            ws->score_name = NULL;
        }
    }
    report_result(o, &r, f);
    return rc;
}

int cmd_train(Workspace *ws, const Command *c, Out *o)
{
    FitConfig f = {.epochs = 10, .batch = 128, .cfg = train_config_default()};
    return run_fit(ws, c, o, &f, NULL);
}

int cmd_finetune(Workspace *ws, const Command *c, Out *o)
{
    FitConfig f = {.epochs = 3, .batch = 128, .cfg = train_config_default()};
    f.cfg.lr = 0.01;
    double T, alpha;
    int rc;
    if ((rc = arg_double(c, "distill", 0, 0, 100, &T)) < 0 ||
        (rc = arg_double(c, "alpha", 0.5, 0, 1, &alpha)) < 0)
        return rc;
    f.cfg.distill_T = T;
    f.cfg.distill_alpha = alpha;
    return run_fit(ws, c, o, &f, T > 0 ? ws->original : NULL);
}

int cmd_sparsity(Workspace *ws, const Command *c, Out *o)
{
    const char *mode = cmd_pos(c, 0);
    int rc = ws_require_model(ws);
    if (rc < 0)
        return rc;
    if (!strcmp(mode, "off")) {
        sparsity_done(&ws->sparse);
        out_text(o, "2:4 masks released (the zeroed weights stay zero until trained)\n");
        return 0;
    }
    if (strcmp(mode, "2:4"))
        return sh_fail(SH_E_ARG, "sparsity takes 2:4 or off, not '%s'", mode);
    SparsityMasks m;
    if ((rc = sparsity_2_4(ws->model, &m)) < 0)
        return rc;
    sparsity_done(&ws->sparse);
    ws->sparse = m;
    ws->dirty = true;
    out_text(o, "2:4 sparsity: %lld of %lld weights in %d layers set to zero and held through fine-tuning; "
                "no CPU speedup (the kernels here are dense: it pays only on hardware with 2:4 sparse units)\n",
             (long long)m.zeroed, (long long)m.total, m.n);
    cJSON_AddNumberToObject(o->obj, "zeroed", (double)m.zeroed);
    cJSON_AddNumberToObject(o->obj, "weights", (double)m.total);
    cJSON_AddNumberToObject(o->obj, "layers", m.n);
    return 0;
}
