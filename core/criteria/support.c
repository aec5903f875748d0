/* What the builtin criteria share: slices, activation sums, group
 * structure and calibration passes (criteria.h). */
#include "criteria.h"

#include "core/error.h"
#include "core/evaluate.h"
#include "core/exec.h"
#include "core/threads.h"
#include "core/train.h"
#include "core/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- slices ---- */

AxisLayout axis_layout(const Shape *s, int axis)
{
    return (AxisLayout){shape_prod(s, 0, axis), s->d[axis], shape_prod(s, axis + 1, s->rank)};
}

const Tensor *member_weight(const ScoreCtx *sc, const GroupMember *m)
{
    if (!m->param || !sc_trainable(sc, m->value))
        return NULL;
    const Tensor *t = sc_graph(sc)->values[m->value].data;
    if (!t || t->dtype != SH_F32 || m->axis >= t->shape.rank || t->shape.d[m->axis] != m->size)
        return NULL;
    return t;
}

void slice_stats(const Tensor *t, const GroupMember *m, int u, SliceStats *st)
{
    memset(st, 0, sizeof *st);
    AxisLayout L = axis_layout(&t->shape, m->axis);
    const float *w = tensor_f32(t);
    for (int64_t k = unit_begin(m, u); k < unit_end(m, u); k++)
        for (int64_t o = 0; o < L.outer; o++) {
            const float *p = w + (o * L.size + m->idx[k]) * L.inner;
            for (int64_t r = 0; r < L.inner; r++) {
                double a = fabs((double)p[r]);
                st->sum_abs += a;
                st->sum_sq += a * a;
                st->max_abs = fmax(st->max_abs, a);
            }
            st->count += L.inner;
        }
}

double slice_dot(const float *a, const float *b, const Shape *s, const GroupMember *m, int u)
{
    AxisLayout L = axis_layout(s, m->axis);
    double sum = 0;
    for (int64_t k = unit_begin(m, u); k < unit_end(m, u); k++)
        for (int64_t o = 0; o < L.outer; o++) {
            int64_t off = (o * L.size + m->idx[k]) * L.inner;
            for (int64_t r = 0; r < L.inner; r++)
                sum += (double)a[off + r] * b[off + r];
        }
    return sum;
}

int64_t slice_gather(const Tensor *t, const GroupMember *m, int u, float *out)
{
    AxisLayout L = axis_layout(&t->shape, m->axis);
    int64_t n = 0;
    for (int64_t o = 0; o < L.outer; o++)
        for (int64_t k = unit_begin(m, u); k < unit_end(m, u); k++) {
            memcpy(out + n, tensor_f32(t) + (o * L.size + m->idx[k]) * L.inner, sizeof(float) * (size_t)L.inner);
            n += L.inner;
        }
    return n;
}

int64_t slice_count(const Shape *s, const GroupMember *m, int u)
{
    AxisLayout L = axis_layout(s, m->axis);
    return (unit_end(m, u) - unit_begin(m, u)) * L.outer * L.inner;
}

/* ---- activations ---- */

void act_unit_sums(const Tensor *a, const Tensor *da, const GroupMember *m, int n_units, ActSum kind,
                   double *acc)
{
    if (kind == ACT_A_DA && !da)
        return;
    AxisLayout L = axis_layout(&a->shape, m->axis);
    const float *x = tensor_f32(a), *g = da ? tensor_f32(da) : NULL;
    for (int u = 0; u < n_units; u++) {
        double sum = 0;
        for (int64_t k = unit_begin(m, u); k < unit_end(m, u); k++)
            for (int64_t o = 0; o < L.outer; o++) {
                int64_t off = (o * L.size + m->idx[k]) * L.inner;
                const float *p = x + off;
                if (kind == ACT_ABS)
                    for (int64_t r = 0; r < L.inner; r++)
                        sum += fabsf(p[r]);
                else if (kind == ACT_NONPOS)
                    for (int64_t r = 0; r < L.inner; r++)
                        sum += p[r] <= 0;
                else
                    for (int64_t r = 0; r < L.inner; r++)
                        sum += (double)p[r] * g[off + r];
            }
        acc[u] += sum;
    }
}

/* ---- group structure ---- */

const GroupMember *group_activation(const Group *grp, int v)
{
    for (int m = 0; m < grp->n_members; m++)
        if (!grp->members[m].param && grp->members[m].value == v)
            return &grp->members[m];
    return NULL;
}

int group_producer_outputs(const Graph *g, const Group *grp, const GroupMember **out, int cap)
{
    int n = 0;
    for (int p = 0; p < grp->n_producers; p++) {
        const Node *node = &g->nodes[grp->producers[p]];
        for (int k = 0; k < node->n_out && n < cap; k++) {
            const GroupMember *m = node->out[k] >= 0 ? group_activation(grp, node->out[k]) : NULL;
            if (m)
                out[n++] = m;
        }
    }
    return n;
}

/* The one node reading v, or -1 (several readers, or v is a graph output). */
static int sole_consumer(const Graph *g, int v)
{
    if (graph_use_count(g, v) != 1 || (g->values[v].flags & VAL_OUTPUT))
        return -1;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++)
            if (g->nodes[i].in[k] == v)
                return i;
    return -1;
}

const GroupMember *group_act_point(const Graph *g, const Group *grp, bool *relu)
{
    *relu = false;
    const GroupMember *first[1], *start = NULL;
    if (group_producer_outputs(g, grp, first, 1) == 1)
        start = first[0];
    for (int m = 0; !start && m < grp->n_members; m++)
        if (!grp->members[m].param)
            start = &grp->members[m];
    if (!start)
        return NULL;
    int v = start->value;
    for (int step = 0; step < 8; step++) { /* Conv -> BN -> (bias Add) -> Relu is a short walk */
        int n = sole_consumer(g, v);
        if (n < 0 || g->nodes[n].n_out < 1 || g->nodes[n].out[0] < 0)
            break;
        const GroupMember *next = group_activation(grp, g->nodes[n].out[0]);
        if (!next)
            break;
        if (strcmp(g->nodes[n].op_type, "Relu") == 0) {
            *relu = true;
            return next;
        }
        v = next->value;
    }
    return start;
}

/* ---- remarks ---- */

void names_add(NameList *l, const char *name)
{
    size_t used = strlen(l->text);
    l->n++;
    if (used + strlen(name) + 3 < sizeof l->text - 16) {
        snprintf(l->text + used, sizeof l->text - used, "%s%s", used ? ", " : "", name);
        l->shown++;
    }
}

void names_note(const ScoreCtx *sc, const NameList *l, const char *what, const char *then)
{
    if (l->n == 0)
        return;
    char more[32] = "";
    if (l->n > l->shown)
        snprintf(more, sizeof more, " and %d more", l->n - l->shown);
    sc_note(sc, "%s: %s in %d group%s, %s: %s%s", sc_criterion(sc)->name, what, l->n, l->n == 1 ? "" : "s", then,
            l->text, more);
}

/* ---- calibration passes ---- */

struct Calib {
    const Graph *g;    /* what the plan runs: the model, or its packed copy */
    const Graph *copy; /* gradients: the copy (parameters packed), else NULL */
    ExecPlan *plan;
    float *grads;      /* copy->param_len, laid out like copy->param_block */
    Tensor dlogits;
    double **acc;      /* this worker's sums, shaped like the scores */
    int batches, index, worker;
    int64_t rows;
    int rc;
    char err[512];     /* a worker thread's error message */
};

const Tensor *calib_value(const Calib *cb, int v) { return exec_value(cb->plan, v); }
const Tensor *calib_grad(const Calib *cb, int v) { return cb->copy ? exec_value_grad(cb->plan, v) : NULL; }
double **calib_acc(const Calib *cb) { return cb->acc; }
int calib_batches(const Calib *cb) { return cb->batches; }
int calib_index(const Calib *cb) { return cb->index; }
int calib_worker(const Calib *cb) { return cb->worker; }
int64_t calib_rows(const Calib *cb) { return cb->rows; }

const float *calib_param_grad(const Calib *cb, int v)
{
    if (!cb->copy)
        return NULL;
    const Tensor *t = cb->copy->values[v].data;
    const float *block = cb->copy->param_block;
    if (!t || t->dtype != SH_F32 || tensor_f32(t) < block || tensor_f32(t) >= block + cb->copy->param_len)
        return NULL;
    return cb->grads + (tensor_f32(t) - block);
}

/* The model must take the data's samples as its first (float) input. */
static int check_input(const Graph *g, const Dataset *ds, bool gradients)
{
    if (g->n_inputs > 1)
        return sh_fail(SH_E_UNSUPPORTED, "calibration feeds one input, but the model has %d (first: '%s')",
                       g->n_inputs, g->values[g->inputs[0]].name);
    if (gradients)
        return eval_check_compat(g, ds);
    if (g->n_inputs < 1)
        return sh_fail(SH_E_STATE, "the model has no inputs");
    const Value *in = &g->values[g->inputs[0]];
    int64_t per = in->shape.rank >= 2 ? shape_prod(&in->shape, 1, in->shape.rank) : -1;
    if (in->dtype != SH_F32 || per != ds->c * ds->h * ds->w) {
        char a[128];
        return sh_fail(SH_E_SHAPE, "model input '%s' %s does not take the calibration data's %lldx%lldx%lld samples",
                       in->name, sym_shape_str(&in->shape, a, sizeof a), (long long)ds->c, (long long)ds->h,
                       (long long)ds->w);
    }
    return 0;
}

typedef struct {
    const ScoreCtx *sc;
    CalibFn fn;
    void *ctx;
    Calib *w;          /* workers */
    int n;
    Shape in_shape;
} CalibRun;

/* Mean cross-entropy of the batch, back-propagated into cb->grads and the
 * activation gradients. */
static int calib_backward(Calib *cb, const BatchIter *it)
{
    const Tensor *out = exec_output(cb->plan, 0);
    int64_t correct = 0;
    memset(cb->dlogits.data, 0, tensor_bytes(&cb->dlogits));
    memset(cb->grads, 0, sizeof *cb->grads * (size_t)cb->copy->param_len);
    loss_cross_entropy(tensor_f32(out), cb->rows, out->shape.d[1], tensor_i64(&it->y), graph_output_kind(cb->g), 0,
                       tensor_f32(&cb->dlogits), &correct);
    Tensor **og = xcalloc((size_t)cb->g->n_outputs + 1, sizeof *og);
    og[0] = &cb->dlogits;
    int rc = exec_backward(cb->plan, og, cb->grads);
    free(og);
    return rc;
}

/* Worker w takes batches w, w + n, ... of the one seeded order (each
 * worker walks the whole order, so the assignment never depends on timing). */
static int calib_worker_main(int w, void *arg)
{
    CalibRun *run = arg;
    Calib *cb = &run->w[w];
    const ScoreOptions *opt = sc_options(run->sc);
    BatchOpts bo = {.shuffle = true, .drop_last = true, .seed = opt->seed};
    BatchIter it;
    int rc = batch_iter_init(&it, opt->calib, cb->rows, &bo);
    for (int b = 0; rc >= 0 && b < cb->batches; b++) {
        if ((rc = batch_iter_next(&it)) != 1) {
            rc = rc < 0 ? rc : sh_fail(SH_E_STATE, "the calibration set ran out of batches");
            break;
        }
        if (b % run->n != w)
            continue;
        if (opt->cancel && *opt->cancel) {
            rc = sh_fail(SH_E_CANCELLED, "scoring cancelled");
            break;
        }
        cb->index = b;
        Tensor x = tensor_view(SH_F32, &run->in_shape, it.x.data);
        Tensor *xs[1] = {&x};
        if ((rc = exec_run(cb->plan, xs)) < 0 || (cb->copy && (rc = calib_backward(cb, &it)) < 0) ||
            (rc = run->fn(run->ctx, cb)) < 0)
            break;
        if (w == 0 && opt->progress) /* worker 0 is the calling thread: hooks need not be thread-safe */
            opt->progress(opt->hook_ctx, (double)(b + 1) / cb->batches);
    }
    batch_iter_done(&it);
    cb->rc = rc < 0 ? rc : 0;
    if (rc < 0)
        snprintf(cb->err, sizeof cb->err, "%s", sh_errmsg());
    return cb->rc;
}

static double **acc_new(const DepGraph *dg, double **scores)
{
    double **acc = xcalloc((size_t)dg->n_groups + 1, sizeof *acc);
    for (int gi = 0; gi < dg->n_groups; gi++)
        if (scores[gi])
            acc[gi] = xcalloc((size_t)dg->groups[gi].n_units + 1, sizeof **acc);
    return acc;
}

static int calib_setup(CalibRun *run, const Graph *g, Graph **copy, bool gradients, int64_t rows, int batches,
                       double **scores)
{
    int rc = graph_input_shape(g, 0, rows, &run->in_shape);
    if (rc < 0)
        return rc;
    ExecOptions opt = {.keep_all = true};
    if (gradients) {
        if (!(*copy = graph_clone(g)))
            return sh_fail(SH_E_NOMEM, "out of memory copying the model for calibration");
        if ((rc = graph_pack_params(*copy)) < 0)
            return rc;
        opt.params = (*copy)->param_block;
        opt.n_params = (*copy)->param_len;
        g = *copy;
    }
    for (int w = 0; w < run->n; w++) { /* planned here: workers only run */
        Calib *cb = &run->w[w];
        *cb = (Calib){.g = g, .copy = *copy, .batches = batches, .worker = w, .rows = rows,
                      .acc = acc_new(sc_groups(run->sc), scores)};
        if ((rc = exec_plan(g, &run->in_shape, &opt, &cb->plan)) < 0)
            return rc;
        if (gradients) {
            cb->grads = xcalloc((size_t)(*copy)->param_len + 1, sizeof *cb->grads);
            if ((rc = tensor_alloc(&cb->dlogits, SH_F32, &exec_output(cb->plan, 0)->shape)) < 0)
                return rc;
        }
    }
    return 0;
}

int calib_run(const ScoreCtx *sc, bool gradients, int threads, CalibFn fn, void *ctx, double **scores)
{
    const Graph *g = sc_graph(sc);
    const DepGraph *dg = sc_groups(sc);
    const ScoreOptions *opt = sc_options(sc);
    const DataSubset *set = opt->calib;
    int rc = check_input(g, set->ds, gradients);
    if (rc < 0)
        return rc;
    int64_t rows = opt->batch < set->n ? opt->batch : set->n;
    const Value *in = &g->values[g->inputs[0]];
    if (in->shape.rank > 0 && in->shape.d[0] > 0) /* a fixed-batch model runs at its own size */
        rows = in->shape.d[0];
    if (set->n < rows)
        return sh_fail(SH_E_STATE, "the calibration set has %lld samples, fewer than the model's batch of %lld",
                       (long long)set->n, (long long)rows);
    int batches = opt->batches < set->n / rows ? opt->batches : (int)(set->n / rows);
    CalibRun run = {.sc = sc, .fn = fn, .ctx = ctx};
    run.n = threads < 1 ? 1 : threads > batches ? batches : threads;
    run.w = xcalloc((size_t)run.n, sizeof *run.w);
    Graph *copy = NULL;
    if ((rc = calib_setup(&run, g, &copy, gradients, rows, batches, scores)) == 0) {
        rc = sh_run_parallel(run.n, calib_worker_main, &run);
        for (int w = 0; w < run.n && rc < 0; w++)
            if (run.w[w].rc < 0) { /* the message was recorded on the worker's thread */
                rc = sh_fail(run.w[w].rc, "%s", run.w[w].err);
                break;
            }
    }
    for (int w = 0; w < run.n; w++) { /* sums in worker order: the same result every run */
        Calib *cb = &run.w[w];
        for (int gi = 0; cb->acc && gi < dg->n_groups; gi++) {
            for (int u = 0; rc == 0 && cb->acc[gi] && u < dg->groups[gi].n_units; u++)
                scores[gi][u] += cb->acc[gi][u];
            free(cb->acc[gi]);
        }
        free(cb->acc);
        exec_free(cb->plan);
        free(cb->grads);
        tensor_done(&cb->dlogits);
    }
    free(run.w);
    graph_free(copy);
    return rc < 0 ? rc : 0;
}
