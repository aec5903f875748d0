#include "train.h"

#include "depgraph.h"
#include "error.h"
#include "threads.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

TrainConfig train_config_default(void)
{
    return (TrainConfig){.opt = OPT_SGD, .lr = 0.05, .momentum = 0.9, .nesterov = true,
                         .weight_decay = 5e-4, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                         .schedule = SCHED_COSINE, .step_size = 1000, .gamma = 0.1,
                         .loss = LOSS_CE, .distill_alpha = 0.5, .seed = 1};
}

/* ---- losses ---- */

double loss_cross_entropy(const float *scores, int64_t rows, int64_t classes, const int64_t *labels,
                          OutputKind kind, double smoothing, float *d, int64_t *correct)
{
    double total = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *s = scores + r * classes;
        float *dr = d + r * classes;
        int64_t y = labels[r];
        int best = 0;
        for (int64_t j = 1; j < classes; j++)
            if (s[j] > s[best])
                best = (int)j;
        *correct += best == y;
        double off = smoothing / (double)classes, on = 1 - smoothing + off;
        if (kind == OUT_LOGITS) {
            double m = s[best], sum = 0;
            for (int64_t j = 0; j < classes; j++)
                sum += exp((double)s[j] - m);
            double lse = m + log(sum);
            for (int64_t j = 0; j < classes; j++) {
                double p = exp((double)s[j] - lse), t = j == y ? on : off;
                total += -t * ((double)s[j] - lse);
                dr[j] += (float)((p - t) / (double)rows);
            }
        } else if (kind == OUT_LOG_PROBS) {
            for (int64_t j = 0; j < classes; j++) {
                double t = j == y ? on : off;
                total += -t * s[j];
                dr[j] += (float)(-t / (double)rows);
            }
        } else { /* probabilities */
            for (int64_t j = 0; j < classes; j++) {
                double t = j == y ? on : off, p = fmax((double)s[j], 1e-30);
                total += -t * log(p);
                dr[j] += (float)(-t / p / (double)rows);
            }
        }
    }
    return total / (double)rows;
}

static void softmax_row(const float *x, int64_t n, double T, double *out)
{
    double m = x[0];
    for (int64_t j = 1; j < n; j++)
        m = fmax(m, x[j]);
    double sum = 0;
    for (int64_t j = 0; j < n; j++)
        sum += out[j] = exp(((double)x[j] - m) / T);
    for (int64_t j = 0; j < n; j++)
        out[j] /= sum;
}

double loss_distill(const float *s, const float *t, int64_t rows, int64_t classes, double T,
                    double alpha, float *d)
{
    double *ps = xmalloc(sizeof *ps * (size_t)classes), *pt = xmalloc(sizeof *pt * (size_t)classes);
    double total = 0;
    for (int64_t r = 0; r < rows; r++) {
        softmax_row(s + r * classes, classes, T, ps);
        softmax_row(t + r * classes, classes, T, pt);
        for (int64_t j = 0; j < classes; j++) {
            if (pt[j] > 0)
                total += pt[j] * (log(pt[j]) - log(fmax(ps[j], 1e-30)));
            /* d/ds of T^2 * KL = T * (ps - pt) */
            d[r * classes + j] += (float)(alpha * T * (ps[j] - pt[j]) / (double)rows);
        }
    }
    free(ps);
    free(pt);
    return alpha * T * T * total / (double)rows;
}

double loss_mse(const float *y, const float *target, int64_t n, float *d)
{
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = (double)y[i] - target[i];
        total += e * e;
        d[i] += (float)(2 * e / (double)n);
    }
    return total / (double)n;
}

/* ---- optimizer ---- */

double trainer_lr(const Trainer *t)
{
    const TrainConfig *c = &t->cfg;
    double lr = c->lr, s = (double)(t->step - t->sched_start);
    if (c->warmup_steps > 0 && s < (double)c->warmup_steps)
        return lr * (s + 1) / (double)c->warmup_steps;
    s -= (double)c->warmup_steps;
    double span = (double)(t->total_steps - c->warmup_steps);
    if (c->schedule == SCHED_COSINE && span > 0)
        lr *= 0.5 * (1 + cos(3.14159265358979323846 * fmin(s / span, 1.0)));
    else if (c->schedule == SCHED_STEP && c->step_size > 0)
        lr *= pow(c->gamma, floor(s / (double)c->step_size));
    return lr;
}

static double grad_norm(const float *g, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)g[i] * g[i];
    return sqrt(s);
}

static void sgd_update(Trainer *t, double lr)
{
    const TrainConfig *c = &t->cfg;
    float *p = t->g->param_block, *g = t->grads, *v = t->m;
    const float mom = (float)c->momentum, wd = (float)c->weight_decay, a = (float)lr;
    for (int64_t i = 0; i < t->n_params; i++) {
        float gi = g[i] + wd * p[i];
        v[i] = mom * v[i] + gi;
        p[i] -= a * (c->nesterov ? gi + mom * v[i] : v[i]);
    }
}

static void adamw_update(Trainer *t, double lr)
{
    const TrainConfig *c = &t->cfg;
    float *p = t->g->param_block, *g = t->grads, *m = t->m, *v = t->v;
    double step = (double)t->step + 1;
    const float b1 = (float)c->beta1, b2 = (float)c->beta2, eps = (float)c->eps;
    const float c1 = (float)(1 / (1 - pow(c->beta1, step))), c2 = (float)(1 / (1 - pow(c->beta2, step)));
    const float a = (float)lr, wd = (float)c->weight_decay;
    for (int64_t i = 0; i < t->n_params; i++) {
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        p[i] -= a * ((m[i] * c1) / (sqrtf(v[i] * c2) + eps) + wd * p[i]);
    }
}

/* ---- regularizers ---- */

/* Offset in the parameter block of element i (flat) of a parameter, -1 if
 * the tensor is not in the block. */
static int64_t block_offset(const Graph *g, const Tensor *t, int64_t i)
{
    const float *d = t->data;
    if (!g->param_block || d < g->param_block || d >= g->param_block + g->param_len)
        return -1;
    return (d - g->param_block) + i;
}

/* Network Slimming: every BatchNormalization scale element. */
static void collect_slim(Trainer *t)
{
    const Graph *g = t->g;
    for (int i = 0; i < g->n_nodes; i++) {
        const Node *n = &g->nodes[i];
        if (strcmp(n->op_type, "BatchNormalization") || n->in[1] < 0 || !g->values[n->in[1]].data)
            continue;
        const Tensor *s = g->values[n->in[1]].data;
        if (block_offset(g, s, 0) < 0)
            continue;
        t->slim_off = xrealloc(t->slim_off, sizeof *t->slim_off * (size_t)(t->n_slim + s->numel));
        for (int64_t k = 0; k < s->numel; k++)
            t->slim_off[t->n_slim++] = block_offset(g, s, k);
    }
}

/* Group lasso: for every unit of every prunable group, the block offsets
 * of all its parameter slices. */
static void collect_lasso(Trainer *t, const DepGraph *dg)
{
    const Graph *g = t->g;
    int64_t cap = 0, n = 0;
    t->lasso_start = xcalloc(1, sizeof *t->lasso_start);
    for (int gi = 0; gi < dg->n_groups; gi++) {
        const Group *grp = &dg->groups[gi];
        if (grp->blocked || grp->kind == GROUP_BLOCK)
            continue;
        for (int u = 0; u < grp->n_units; u++) {
            for (int m = 0; m < grp->n_members; m++) {
                const GroupMember *gm = &grp->members[m];
                const Tensor *w = g->values[gm->value].data;
                if (!gm->param || !w || block_offset(g, w, 0) < 0)
                    continue;
                int64_t outer = shape_prod(&w->shape, 0, gm->axis), inner = shape_prod(&w->shape, gm->axis + 1, w->shape.rank);
                for (int64_t k = gm->start[u]; k < gm->start[u + 1]; k++)
                    for (int64_t o = 0; o < outer; o++)
                        for (int64_t j = 0; j < inner; j++) {
                            if (n == cap) {
                                cap = cap ? cap * 2 : 4096;
                                t->lasso_idx = xrealloc(t->lasso_idx, sizeof *t->lasso_idx * (size_t)cap);
                            }
                            t->lasso_idx[n++] = block_offset(g, w, (o * gm->size + gm->idx[k]) * inner + j);
                        }
            }
            t->lasso_start = xrealloc(t->lasso_start, sizeof *t->lasso_start * (size_t)(t->n_lasso + 2));
            t->lasso_start[++t->n_lasso] = n;
        }
    }
}

/* Adds the regularizers' gradients: slim * sign(gamma) and, per unit,
 * group_lasso * w / ||w_unit||. */
static void regularize(Trainer *t)
{
    const float *p = t->g->param_block;
    float slim = (float)t->cfg.slim;
    for (int64_t i = 0; i < t->n_slim; i++) {
        float w = p[t->slim_off[i]];
        t->grads[t->slim_off[i]] += w > 0 ? slim : w < 0 ? -slim : 0;
    }
    for (int64_t u = 0; u < t->n_lasso; u++) {
        double norm = 0;
        for (int64_t k = t->lasso_start[u]; k < t->lasso_start[u + 1]; k++)
            norm += (double)p[t->lasso_idx[k]] * p[t->lasso_idx[k]];
        if (norm <= 0)
            continue;
        float scale = (float)(t->cfg.group_lasso / sqrt(norm));
        for (int64_t k = t->lasso_start[u]; k < t->lasso_start[u + 1]; k++)
            t->grads[t->lasso_idx[k]] += scale * p[t->lasso_idx[k]];
    }
}

/* ---- trainer ---- */

static int plan_replica(Trainer *t, Replica *r, int index)
{
    Shape s;
    Graph *g = t->g;
    int rc = graph_input_shape(g, 0, r->rows, &s);
    if (rc < 0)
        return rc;
    if (s.d[0] != r->rows)
        return sh_fail(SH_E_UNSUPPORTED, "the model's batch is fixed at %lld; training needs a symbolic batch",
                       (long long)s.d[0]);
    ExecOptions opt = {.training = true, .keep_all = true, .params = g->param_block,
                       .n_params = g->param_len, .private_consts = index > 0};
    if ((rc = exec_plan(g, &s, &opt, &r->plan)) < 0)
        return rc;
    if (t->teacher) {
        Shape ts;
        if ((rc = graph_input_shape(t->teacher, 0, r->rows, &ts)) < 0 ||
            (rc = exec_plan(t->teacher, &ts, NULL, &r->teacher_plan)) < 0)
            return rc;
    }
    const Tensor *out = exec_output(r->plan, 0);
    if (out->shape.rank != 2 || out->dtype != SH_F32)
        return sh_fail(SH_E_SHAPE, "training needs a [batch, classes] float output; '%s' is not",
                       g->values[g->outputs[0]].name);
    r->grads = index == 0 ? t->grads : xcalloc((size_t)t->n_params, sizeof(float));
    return tensor_alloc(&r->dlogits, SH_F32, &out->shape);
}

int trainer_init(Trainer *t, Graph *g, const Graph *teacher, int64_t batch, int64_t total_steps,
                 const TrainConfig *cfg)
{
    memset(t, 0, sizeof *t);
    t->g = g;
    t->teacher = teacher;
    t->cfg = *cfg;
    t->batch = batch;
    t->total_steps = total_steps;
    int rc;
    if (g->n_inputs < 1 || g->n_outputs < 1)
        return sh_fail(SH_E_STATE, "the model has no inputs or outputs");
    if ((rc = graph_pack_params(g)) < 0)
        return rc;
    if (g->param_len == 0)
        return sh_fail(SH_E_STATE, "the model has no trainable parameters");
    t->n_params = g->param_len;
    t->grads = xcalloc((size_t)t->n_params, sizeof(float));
    t->m = xcalloc((size_t)t->n_params, sizeof(float));
    t->v = xcalloc((size_t)t->n_params, sizeof(float));
    /* each replica needs a few rows to be worth a thread */
    int n = cfg->threads < 1 ? 1 : cfg->threads > TRAIN_MAX_REPLICAS ? TRAIN_MAX_REPLICAS : cfg->threads;
    while (n > 1 && batch / n < 8)
        n--;
    t->n_rep = n;
    for (int i = 0, row = 0; i < n; i++) {
        Replica *r = &t->rep[i];
        r->row0 = row;
        r->rows = batch / n + (i < batch % n);
        row += (int)r->rows;
        if ((rc = plan_replica(t, r, i)) < 0) {
            trainer_done(t);
            return rc;
        }
    }
    t->kind = graph_output_kind(g);
    if (cfg->slim > 0)
        collect_slim(t);
    if (cfg->group_lasso > 0) {
        if (!cfg->groups) {
            trainer_done(t);
            return sh_fail(SH_E_ARG, "group lasso needs the model's groups");
        }
        collect_lasso(t, cfg->groups);
    }
    return 0;
}

void trainer_done(Trainer *t)
{
    for (int i = 0; i < t->n_rep; i++) {
        Replica *r = &t->rep[i];
        exec_free(r->plan);
        exec_free(r->teacher_plan);
        if (i > 0)
            free(r->grads);
        tensor_done(&r->dlogits);
    }
    free(t->grads);
    free(t->m);
    free(t->v);
    free(t->slim_off);
    free(t->lasso_idx);
    free(t->lasso_start);
    memset(t, 0, sizeof *t);
}

/* Loss of a replica's rows, with dL/dlogits scaled so the replicas' sum is
 * the gradient of the whole batch's mean loss. */
static double replica_loss(Trainer *t, Replica *r, const Tensor *x, const int64_t *labels)
{
    const Tensor *out = exec_output(r->plan, 0);
    int64_t rows = out->shape.d[0], classes = out->shape.d[1];
    memset(r->dlogits.data, 0, tensor_bytes(&r->dlogits));
    double label_weight = r->teacher_plan ? 1 - t->cfg.distill_alpha : 1;
    float *d = tensor_f32(&r->dlogits);
    double loss = label_weight * loss_cross_entropy(tensor_f32(out), rows, classes, labels, t->kind,
                                                    t->cfg.label_smoothing, d, &r->st.correct);
    if (r->teacher_plan) {
        Tensor xv = *x;
        Tensor *xs[1] = {&xv};
        for (int64_t i = 0; i < r->dlogits.numel; i++)
            d[i] *= (float)label_weight;
        if (exec_run(r->teacher_plan, xs) == 0)
            loss += loss_distill(tensor_f32(out), tensor_f32(exec_output(r->teacher_plan, 0)), rows,
                                 classes, t->cfg.distill_T, t->cfg.distill_alpha, d);
    }
    float share = (float)rows / (float)t->batch;
    if (t->n_rep > 1)
        for (int64_t i = 0; i < r->dlogits.numel; i++)
            d[i] *= share;
    r->st.rows = rows;
    return loss;
}

/* Forward, loss and backward of one replica (runs on its own thread). */
static int replica_step(int index, void *ctx)
{
    Trainer *t = ctx;
    Replica *r = &t->rep[index];
    Shape want = exec_value(r->plan, t->g->inputs[0])->shape;
    int64_t per_row = shape_numel(&want) / r->rows;
    Tensor xv = tensor_view(SH_F32, &want, tensor_f32(r->x) + r->row0 * per_row);
    Tensor *xs[1] = {&xv};
    memset(&r->st, 0, sizeof r->st);
    exec_set_seed(r->plan, (t->cfg.seed * 1000003ULL + (uint64_t)t->step) * 31 + (uint64_t)index);
    int rc = exec_run(r->plan, xs);
    if (rc < 0)
        return rc;
    r->st.loss = replica_loss(t, r, &xv, tensor_i64(r->labels) + r->row0);
    if (!isfinite(r->st.loss))
        return sh_fail(SH_E_NUMERIC, "the loss became %g at step %lld (learning rate too high?)",
                       r->st.loss, (long long)t->step);
    memset(r->grads, 0, sizeof(float) * (size_t)t->n_params);
    Tensor *g[1] = {&r->dlogits};
    return exec_backward(r->plan, g, r->grads);
}

int trainer_step(Trainer *t, const Tensor *x, const Tensor *labels, StepStats *st)
{
    memset(st, 0, sizeof *st);
    int64_t per_row = t->rep[0].rows ? shape_numel(&exec_value(t->rep[0].plan, t->g->inputs[0])->shape) / t->rep[0].rows : 0;
    if (x->dtype != SH_F32 || x->numel != per_row * t->batch || labels->numel != t->batch)
        return sh_fail(SH_E_SHAPE, "a training batch has %lld values and %lld labels; the model takes %lld rows of %lld",
                       (long long)x->numel, (long long)labels->numel, (long long)t->batch, (long long)per_row);
    for (int i = 0; i < t->n_rep; i++) {
        t->rep[i].x = x;
        t->rep[i].labels = labels;
    }
    int rc = sh_run_parallel(t->n_rep, replica_step, t);
    if (rc < 0)
        return rc;
    for (int i = 0; i < t->n_rep; i++) {
        const Replica *r = &t->rep[i];
        st->loss += r->st.loss * (double)r->rows / (double)t->batch;
        st->correct += r->st.correct;
        st->rows += r->st.rows;
        for (int64_t k = 0; i > 0 && k < t->n_params; k++)
            t->grads[k] += r->grads[k];
    }
    if (t->n_slim || t->n_lasso)
        regularize(t);
    if (t->cfg.clip_norm > 0) {
        double norm = grad_norm(t->grads, t->n_params);
        if (norm > t->cfg.clip_norm) {
            float scale = (float)(t->cfg.clip_norm / norm);
            for (int64_t i = 0; i < t->n_params; i++)
                t->grads[i] *= scale;
        }
    }
    double lr = trainer_lr(t);
    if (t->cfg.opt == OPT_ADAMW)
        adamw_update(t, lr);
    else
        sgd_update(t, lr);
    t->step++;
    return 0;
}

/* ---- epochs ---- */

static void report(const FitConfig *cfg, TrainProgress *p)
{
    if (cfg->progress)
        cfg->progress(p, cfg->ctx);
}

static int run_epoch(Trainer *t, BatchIter *it, const FitConfig *cfg, TrainProgress *p, double t_start,
                     int64_t total_steps, FitResult *r)
{
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    int rc;
    p->step = 0;
    while ((rc = batch_iter_next(it)) == 1) {
        if (cfg->cancel && *cfg->cancel) {
            r->cancelled = true;
            return 0;
        }
        StepStats st;
        if ((rc = trainer_step(t, &it->x, &it->y, &st)) < 0)
            return rc;
        if (cfg->after_step)
            cfg->after_step(cfg->after_step_ctx);
        loss_sum += st.loss * (double)st.rows;
        correct += st.correct;
        seen += st.rows;
        r->steps++;
        p->step++;
        p->loss = loss_sum / (double)seen;
        p->accuracy = (double)correct / (double)seen;
        double elapsed = now_seconds() - t_start;
        p->images_per_s = (double)(r->steps * t->batch) / elapsed;
        p->eta_s = elapsed / (double)r->steps * (double)(total_steps - r->steps);
        p->lr = trainer_lr(t);
        report(cfg, p);
    }
    r->train_loss = p->loss;
    r->train_accuracy = p->accuracy;
    return rc < 0 ? rc : 0;
}

int fit(Graph *g, const Graph *teacher, const DataSubset *train, const DataSubset *val,
        const FitConfig *cfg, FitResult *r)
{
    memset(r, 0, sizeof *r);
    if (cfg->batch < 1 || cfg->epochs < 1)
        return sh_fail(SH_E_ARG, "batch and epochs must be at least 1");
    if (train->n < cfg->batch)
        return sh_fail(SH_E_ARG, "the training set has %lld samples, fewer than one batch of %lld",
                       (long long)train->n, (long long)cfg->batch);
    int rc = eval_check_compat(g, train->ds);
    if (rc < 0)
        return rc;
    BatchOpts bo = cfg->data;
    bo.drop_last = true; /* one plan, one batch size */
    BatchIter it;
    if ((rc = batch_iter_init(&it, train, cfg->batch, &bo)) < 0)
        return rc;
    int64_t per_epoch = batch_iter_count(&it), total = per_epoch * cfg->epochs;
    Trainer t;
    if ((rc = trainer_init(&t, g, teacher, cfg->batch, total, &cfg->cfg)) < 0) {
        batch_iter_done(&it);
        return rc;
    }
    if (cfg->state) /* momentum carries over; the schedule starts afresh */
        trainer_load_state(&t, cfg->state);
    t.sched_start = t.step;
    TrainProgress p = {.epochs = cfg->epochs, .steps_per_epoch = per_epoch};
    double t0 = now_seconds();
    for (int64_t e = 0; e < cfg->epochs && rc == 0 && !r->cancelled; e++) {
        p.epoch = e;
        p.epoch_done = false;
        rc = run_epoch(&t, &it, cfg, &p, t0, total, r);
        if (rc < 0 || r->cancelled)
            break;
        if (val && val->n > 0) {
            EvalResult er;
            if ((rc = evaluate(g, val, cfg->batch, &er)) < 0)
                break;
            p.val_loss = r->val_loss = er.loss;
            p.val_accuracy = r->val_accuracy = er.accuracy;
        }
        p.epoch_done = true;
        report(cfg, &p);
    }
    r->seconds = now_seconds() - t0;
    r->images_per_s = r->seconds > 0 ? (double)(r->steps * cfg->batch) / r->seconds : 0;
    if (cfg->state)
        trainer_save_state(&t, cfg->state);
    trainer_done(&t);
    batch_iter_done(&it);
    if (rc == 0 && r->cancelled)
        return sh_fail(SH_E_CANCELLED, "training cancelled after %lld steps; the model keeps the last finished step",
                       (long long)r->steps);
    return rc;
}

/* ---- optimizer state ---- */

void opt_state_done(OptState *s)
{
    for (int i = 0; i < s->n; i++) {
        free(s->names[i]);
        tensor_done(&s->m[i]);
        tensor_done(&s->v[i]);
    }
    free(s->names);
    free(s->m);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static Tensor slice_axis(const Tensor *t, int axis, const bool *mask, int64_t removed)
{
    Tensor r = {0};
    Shape sh = t->shape;
    int64_t size = sh.d[axis], outer = shape_prod(&sh, 0, axis), inner = shape_prod(&sh, axis + 1, sh.rank);
    sh.d[axis] = size - removed;
    if (tensor_alloc(&r, SH_F32, &sh) < 0)
        return r;
    float *dst = tensor_f32(&r);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < size; i++)
            if (!mask[i]) {
                memcpy(dst, tensor_f32(t) + (o * size + i) * inner, sizeof(float) * (size_t)inner);
                dst += inner;
            }
    return r;
}

void opt_state_slice(OptState *s, const char *name, int axis, const bool *mask, int64_t removed)
{
    for (int i = 0; i < s->n; i++) {
        if (strcmp(s->names[i], name) || axis >= s->m[i].shape.rank || !removed)
            continue;
        Tensor m = slice_axis(&s->m[i], axis, mask, removed), v = slice_axis(&s->v[i], axis, mask, removed);
        tensor_done(&s->m[i]);
        tensor_done(&s->v[i]);
        s->m[i] = m;
        s->v[i] = v;
    }
}

/* Visits every trainable parameter with its offset in the block. */
static void each_param(const Graph *g, void (*fn)(const Value *v, int64_t off, void *ctx), void *ctx)
{
    for (int v = 0; v < g->n_values; v++) {
        const Tensor *t = g->values[v].data;
        if (t && !t->owns && g->param_block && (const float *)t->data >= g->param_block &&
            (const float *)t->data < g->param_block + g->param_len)
            fn(&g->values[v], (const float *)t->data - g->param_block, ctx);
    }
}

typedef struct {
    Trainer *t;
    const OptState *s;
} LoadCtx;

static void load_one(const Value *v, int64_t off, void *ctx)
{
    LoadCtx *c = ctx;
    for (int i = 0; i < c->s->n; i++)
        if (!strcmp(c->s->names[i], v->name) && shape_eq(&c->s->m[i].shape, &v->data->shape)) {
            memcpy(c->t->m + off, c->s->m[i].data, tensor_bytes(&c->s->m[i]));
            memcpy(c->t->v + off, c->s->v[i].data, tensor_bytes(&c->s->v[i]));
        }
}

void trainer_load_state(Trainer *t, const OptState *s)
{
    LoadCtx c = {t, s};
    each_param(t->g, load_one, &c);
    t->step = s->step;
}

static void save_one(const Value *v, int64_t off, void *ctx)
{
    const Trainer *t = ((LoadCtx *)ctx)->t;
    OptState *s = (OptState *)((LoadCtx *)ctx)->s;
    s->names = xrealloc(s->names, sizeof *s->names * (size_t)(s->n + 1));
    s->m = xrealloc(s->m, sizeof *s->m * (size_t)(s->n + 1));
    s->v = xrealloc(s->v, sizeof *s->v * (size_t)(s->n + 1));
    s->names[s->n] = xstrdup(v->name);
    memset(&s->m[s->n], 0, sizeof(Tensor));
    memset(&s->v[s->n], 0, sizeof(Tensor));
    if (tensor_alloc(&s->m[s->n], SH_F32, &v->data->shape) == 0 &&
        tensor_alloc(&s->v[s->n], SH_F32, &v->data->shape) == 0) {
        memcpy(s->m[s->n].data, t->m + off, tensor_bytes(&s->m[s->n]));
        memcpy(s->v[s->n].data, t->v + off, tensor_bytes(&s->v[s->n]));
    }
    s->n++;
}

void trainer_save_state(const Trainer *t, OptState *s)
{
    opt_state_done(s);
    LoadCtx c = {(Trainer *)t, s};
    each_param(t->g, save_one, &c);
    s->step = t->step;
}
