/* Training: losses, optimizers (SGD with momentum/Nesterov/weight decay,
 * AdamW), learning-rate schedules, gradient clipping, one training step
 * over a keep_all plan, and the epoch loop with validation, progress and
 * cancellation. Parameters, gradients and optimizer state share one flat
 * layout (graph_pack_params), so the optimizer is one loop. */
#ifndef SH_TRAIN_H
#define SH_TRAIN_H

#include "data.h"
#include "evaluate.h"
#include "exec.h"
#include "graph.h"

#include <signal.h>
#include <stdbool.h>

typedef enum { OPT_SGD, OPT_ADAMW } OptKind;
typedef enum { SCHED_CONSTANT, SCHED_STEP, SCHED_COSINE } SchedKind;
typedef enum { LOSS_CE, LOSS_MSE } LossKind;

typedef struct {
    OptKind opt;
    double lr;
    double momentum;      /* SGD */
    bool nesterov;
    double weight_decay;  /* SGD: L2 added to the gradient; AdamW: decoupled */
    double beta1, beta2, eps;
    double clip_norm;     /* global gradient-norm clipping; 0 = off */
    SchedKind schedule;
    int64_t step_size;    /* SCHED_STEP: multiply by gamma every step_size steps */
    double gamma;
    int64_t warmup_steps; /* linear warm-up from 0 */
    LossKind loss;
    double label_smoothing;
    double distill_T;     /* > 0 with a teacher: KL to the teacher at temperature T */
    double distill_alpha; /* weight of the distillation term (1 - alpha on the labels) */
    uint64_t seed;
    int threads;          /* > 1: data parallel, each thread a slice of the batch */
    double slim;          /* Network Slimming: L1 penalty on BatchNorm scales */
    double group_lasso;   /* L2,1 penalty over the units of groups (needs groups) */
    const struct DepGraph *groups;
} TrainConfig;

/* Defaults: SGD, lr 0.05, momentum 0.9, Nesterov, wd 5e-4, cosine. */
TrainConfig train_config_default(void);

typedef struct {
    double loss;       /* mean over the batch */
    int64_t correct;
    int64_t rows;
} StepStats;

/* Optimizer state kept between training runs, per parameter by name, so
 * fine-tuning after pruning continues with the same momentum (surgery
 * slices it like the parameters themselves). */
typedef struct {
    char **names;
    Tensor *m, *v;   /* first and second moments (SGD momentum in m) */
    int n;
    int64_t step;
} OptState;

void opt_state_done(OptState *s);
/* Removes the indices a cut removes from parameter `name` along axis. */
void opt_state_slice(OptState *s, const char *name, int axis, const bool *mask, int64_t removed);

#define TRAIN_MAX_REPLICAS 16

/* One thread's share of a step: rows [row0, row0 + rows) of the batch.
 * Replica 0 updates the model's BatchNorm statistics; the others keep
 * private copies (as data-parallel training does without synchronized
 * BatchNorm). */
typedef struct {
    ExecPlan *plan, *teacher_plan;
    float *grads;            /* replica 0: the trainer's own */
    Tensor dlogits;          /* [rows, classes] */
    int64_t row0, rows;
    const Tensor *x, *labels;
    StepStats st;
} Replica;

typedef struct {
    Graph *g;                /* borrowed; parameters packed */
    const Graph *teacher;    /* borrowed, optional */
    TrainConfig cfg;
    int64_t batch, step, total_steps;
    int64_t sched_start;     /* the step this run's schedule starts at */
    Replica rep[TRAIN_MAX_REPLICAS];
    int n_rep;
    float *grads, *m, *v;    /* n_params each, laid out like g->param_block */
    int64_t n_params;
    OutputKind kind;
    /* regularizers, as offsets into the parameter block */
    int64_t *slim_off;       /* BatchNorm scale elements */
    int64_t n_slim;
    int64_t *lasso_idx, *lasso_start; /* units: lasso_idx[lasso_start[u] .. lasso_start[u+1]) */
    int64_t n_lasso;
} Trainer;

/* Prepares training of g (packing its parameters) at a fixed batch size;
 * total_steps drives the cosine schedule. teacher may be NULL. */
int trainer_init(Trainer *t, Graph *g, const Graph *teacher, int64_t batch, int64_t total_steps,
                 const TrainConfig *cfg);
/* One step on x [batch, ...] and int64 labels [batch]: forward, loss,
 * backward, clipping, optimizer update. */
int trainer_step(Trainer *t, const Tensor *x, const Tensor *labels, StepStats *st);
/* Loads saved moments for every parameter whose name and shape match,
 * and the step count (schedules continue); saves them back. */
void trainer_load_state(Trainer *t, const OptState *s);
void trainer_save_state(const Trainer *t, OptState *s);
/* Learning rate of the current step. */
double trainer_lr(const Trainer *t);
void trainer_done(Trainer *t);

/* Losses: fill d (dL/dscores, already divided by rows) and return the
 * mean loss. */
double loss_cross_entropy(const float *scores, int64_t rows, int64_t classes, const int64_t *labels,
                          OutputKind kind, double smoothing, float *d, int64_t *correct);
/* Adds alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) (mean over rows) and
 * its gradient to d; returns that term. */
double loss_distill(const float *s, const float *t, int64_t rows, int64_t classes, double T,
                    double alpha, float *d);
double loss_mse(const float *y, const float *target, int64_t n, float *d);

/* ---- the epoch loop ---- */

typedef struct {
    int64_t epoch, epochs;       /* epoch is 0-based */
    int64_t step, steps_per_epoch;
    double loss, accuracy;       /* running means over this epoch */
    double images_per_s, eta_s, lr;
    bool epoch_done;             /* set on the last call of an epoch, with validation */
    double val_loss, val_accuracy;
} TrainProgress;

typedef struct {
    int64_t epochs, batch;
    TrainConfig cfg;
    BatchOpts data;              /* shuffle, augmentation, seed */
    void (*progress)(const TrainProgress *p, void *ctx);
    void *ctx;
    volatile sig_atomic_t *cancel; /* checked between steps */
    OptState *state;             /* optional: optimizer state in and out */
    void (*after_step)(void *ctx); /* optional: runs after every optimizer step (masks) */
    void *after_step_ctx;
} FitConfig;

typedef struct {
    int64_t steps;
    double seconds, images_per_s;
    double train_loss, train_accuracy;  /* last epoch */
    double val_loss, val_accuracy;      /* after the last epoch (if val given) */
    bool cancelled;
} FitResult;

/* Trains g on train, validating on val (optional) after each epoch. On
 * cancellation the model keeps the last finished step. */
int fit(Graph *g, const Graph *teacher, const DataSubset *train, const DataSubset *val,
        const FitConfig *cfg, FitResult *r);

#endif
