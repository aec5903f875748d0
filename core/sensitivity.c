#include "sensitivity.h"

#include "error.h"
#include "evaluate.h"
#include "exec.h"
#include "fileio.h"
#include "op.h"
#include "surgery.h"
#include "threads.h"
#include "util.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double sens_default_ratios[9] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9};

/* ---- arguments ---- */

static int parse_fraction(const char *word, double *out)
{
    char *end;
    double r = strtod(word, &end);
    if (end == word || *end || !(r > 0 && r < 1))
        return sh_fail(SH_E_ARG, "ratios: '%s' is not a fraction between 0 and 1 (exclusive)", word);
    *out = r;
    return 0;
}

/* Fills out[*n ..] with a, a + step, ..., up to last: "0.1,0.2,...,0.9". */
static int expand_run(double a, double step, double last, double *out, int cap, int *n)
{
    if (!(step > 0) || last < a)
        return sh_fail(SH_E_ARG, "ratios: '...' needs two ascending values before it and a larger one after it");
    for (int k = 1;; k++) {
        double r = round((a + k * step) * 1e9) / 1e9; /* 0.1 * 3 is 0.30000000000000004 */
        if (r > last + 1e-9)
            break;
        if (*n >= cap)
            return sh_fail(SH_E_ARG, "ratios: at most %d values", cap);
        out[(*n)++] = r;
    }
    if (fabs(out[*n - 1] - last) > 1e-9) {
        if (*n >= cap)
            return sh_fail(SH_E_ARG, "ratios: at most %d values", cap);
        out[(*n)++] = last;
    }
    return 0;
}

/* Splits "a,b,c" into at most cap new strings (blanks trimmed). */
static int split_commas(const char *s, char **out, int cap)
{
    int n = 0;
    while (*s && n < cap) {
        while (*s == ' ')
            s++;
        size_t len = strcspn(s, ",");
        size_t end = len;
        while (end > 0 && s[end - 1] == ' ')
            end--;
        out[n] = xmalloc(end + 1);
        memcpy(out[n], s, end);
        out[n++][end] = '\0';
        s += len;
        if (*s == ',')
            s++;
    }
    return n;
}

int sens_parse_ratios(const char *s, double *out, int cap, int *n)
{
    char *words[SENS_MAX_RATIOS + 2] = {0};
    int count = split_commas(s, words, SENS_MAX_RATIOS + 2), rc = 0;
    *n = 0;
    if (count == 0)
        rc = sh_fail(SH_E_ARG, "ratios: give fractions like 0.1,0.2,0.5 or 0.1,0.2,...,0.9");
    for (int i = 0; i < count && rc == 0; i++) {
        if (strcmp(words[i], "...") == 0) {
            if (*n < 2 || i + 1 >= count || strcmp(words[i + 1], "...") == 0) {
                rc = sh_fail(SH_E_ARG, "ratios: '...' needs two values before it and one after it");
                break;
            }
            double last = 0;
            if ((rc = parse_fraction(words[++i], &last)) == 0)
                rc = expand_run(out[*n - 1], out[*n - 1] - out[*n - 2], last, out, cap, n);
            continue;
        }
        if (*n >= cap) {
            rc = sh_fail(SH_E_ARG, "ratios: at most %d values", cap);
            break;
        }
        rc = parse_fraction(words[i], &out[*n]);
        if (rc == 0)
            (*n)++;
    }
    for (int i = 1; i < *n && rc == 0; i++)
        if (!(out[i] > out[i - 1]))
            rc = sh_fail(SH_E_ARG, "ratios must ascend: %g comes after %g", out[i], out[i - 1]);
    for (int i = 0; i < count; i++)
        free(words[i]);
    return rc;
}

int sens_parse_budget(const char *s, SensMetric *metric, double *limit)
{
    const char *colon = strchr(s, ':');
    size_t len = colon ? (size_t)(colon - s) : 0;
    if (colon && ((len == 3 && !strncmp(s, "acc", 3)) || (len == 8 && !strncmp(s, "accuracy", 8))))
        *metric = SENS_ACCURACY;
    else if (colon && len == 4 && !strncmp(s, "loss", 4))
        *metric = SENS_LOSS;
    else
        return sh_fail(SH_E_ARG, "budget must look like acc:0.5 (accuracy points) or loss:0.05, got '%s'", s);
    char *end;
    double v = strtod(colon + 1, &end);
    if (end == colon + 1 || *end || !(v >= 0) || !isfinite(v))
        return sh_fail(SH_E_ARG, "budget: '%s' is not a non-negative number", colon + 1);
    *limit = v;
    return 0;
}

/* ---- the sweep's state ---- */

typedef struct {
    Tensor x;       /* the model's input shape at rows (owned data) */
    int64_t *y;     /* rows labels */
    int64_t rows;
} ValBatch;

typedef struct {
    int64_t correct;
    double loss; /* sum over the batch's rows */
} Tally;

/* One measured point: a curve pruned by its first `removed` units. */
typedef struct {
    int curve, removed;
    int64_t macs;
    /* zeroing path: */
    int first_node;
    CutList cuts;
    int *first_cut;  /* per value: its first activation cut, or -1 */
    int *next_cut;   /* per cut: the next cut of the same value, or -1 */
    int slot;        /* index into the tallies of a batch (0 = unpruned) */
} Point;

typedef struct Worker Worker;

typedef struct {
    const Graph *g;
    const DepGraph *dg;
    const SensOptions *opt;
    Sensitivity *s;
    OutputKind kind;
    ValBatch *batches;
    int n_batches;
    Point *points;
    int n_points;
    int *exact;       /* indices of zeroing points, by descending first_node */
    int n_exact;
    const Graph *pruned; /* the surgery point being measured */
    int surgery_slot;
    Tally *tallies;   /* n_batches x n_slots */
    int n_slots;
    atomic_int *batch_done; /* set once a batch's zeroing tallies are in */
    bool *slot_ready;       /* surgery slots: measured on every batch */
    Worker *workers;
    int n_workers;
    atomic_int done;
    int total;
} Sweep;

struct Worker {
    Sweep *sw;
    ExecPlan *plan;         /* keep_all, for plan_rows rows (the last batch may be smaller) */
    int64_t plan_rows;
    const Point *active;    /* the cuts the hook zeroes (NULL: none) */
    int rc;
    char err[512];
};

/* ---- curves ---- */

static int removed_for(double ratio, const Group *grp)
{
    int n = grp->n_units, r = (int)floor(ratio * n + 0.5);
    int cap = grp->kind == GROUP_BLOCK ? n : n - 1; /* a layer keeps one unit; blocks may all go */
    return r > cap ? cap : r < 0 ? 0 : r;
}

/* Units by ascending score, ties by index (as prune's lowest-first rule). */
static int *units_by_score(const double *sc, int n)
{
    int *order = xmalloc(sizeof(int) * (size_t)(n + 1));
    for (int u = 0; u < n; u++)
        order[u] = u;
    for (int i = 1; i < n; i++) /* insertion sort: stable */
        for (int j = i; j > 0 && sc[order[j]] < sc[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    return order;
}

static int point_plan(const Sweep *sw, const Point *pt, Plan *p)
{
    const SensCurve *c = &sw->s->curves[pt->curve];
    const Group *grp = &sw->dg->groups[c->group_id];
    plan_init(p, 0);
    int rc = 0;
    for (int i = 0; i < pt->removed && rc == 0; i++)
        rc = plan_mark(p, grp, c->order[i], true);
    return rc;
}

/* The node whose output holds v's bytes: through reshape-like views,
 * which share their input's buffer. -1 for graph inputs and constants. */
static int storage_node(const Graph *g, int v)
{
    for (int depth = 0; depth < g->n_nodes; depth++) {
        int n = g->values[v].producer;
        if (n < 0 || !(g->nodes[n].op->flags & OP_ALIAS) || g->nodes[n].n_in < 1 || g->nodes[n].in[0] < 0)
            return n;
        v = g->nodes[n].in[0];
    }
    return -1;
}

/* Zeroing path: the per-value cut index and the node reruns start at.
 * Returns false if some cut value is not computed by a step (a graph
 * input, a value known when planning): then zeroing cannot stand for
 * pruning and the point goes through surgery. */
static bool index_cuts(const Graph *g, const ExecPlan *probe, Point *pt)
{
    pt->first_cut = xmalloc(sizeof(int) * (size_t)(g->n_values + 1));
    pt->next_cut = xmalloc(sizeof(int) * (size_t)(pt->cuts.n + 1));
    for (int v = 0; v < g->n_values; v++)
        pt->first_cut[v] = -1;
    pt->first_node = g->n_nodes;
    for (int i = pt->cuts.n - 1; i >= 0; i--) {
        const Cut *c = &pt->cuts.cuts[i];
        pt->next_cut[i] = -1;
        if (c->param)
            continue;
        int node = storage_node(g, c->value);
        if (node < 0 || exec_value_known(probe, c->value))
            return false;
        if (node < pt->first_node)
            pt->first_node = node;
        pt->next_cut[i] = pt->first_cut[c->value];
        pt->first_cut[c->value] = i;
    }
    return true;
}

static void point_done(Point *pt)
{
    cut_list_done(&pt->cuts);
    free(pt->first_cut);
    free(pt->next_cut);
}

/* Names one point in messages. */
static int point_fail(const Sweep *sw, const Point *pt, int rc)
{
    const SensCurve *c = &sw->s->curves[pt->curve];
    return sh_fail_prefix(rc, "group '%s' with %d of %d units removed", c->group, pt->removed, c->n_units);
}

/* ---- zeroing hook ---- */

static void zero_along(Tensor *t, int axis, const bool *mask)
{
    int64_t size = t->shape.d[axis], outer = shape_prod(&t->shape, 0, axis);
    int64_t inner = shape_prod(&t->shape, axis + 1, t->shape.rank);
    float *d = tensor_f32(t);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < size; i++)
            if (mask[i])
                memset(d + (o * size + i) * inner, 0, sizeof(float) * (size_t)inner);
}

static void zero_cuts(void *ctx, const Node *n, Tensor **out, int n_out)
{
    const Worker *w = ctx;
    const Point *pt = w->active;
    if (!pt)
        return;
    for (int k = 0; k < n_out; k++) {
        if (n->out[k] < 0 || !out[k]->data || out[k]->dtype != SH_F32)
            continue;
        for (int i = pt->first_cut[n->out[k]]; i >= 0; i = pt->next_cut[i]) {
            const Cut *c = &pt->cuts.cuts[i];
            if (c->axis < 0)
                memset(out[k]->data, 0, tensor_bytes(out[k]));
            else if (c->axis < out[k]->shape.rank && out[k]->shape.d[c->axis] == c->size)
                zero_along(out[k], c->axis, c->mask);
        }
    }
}

/* ---- batches ---- */

static void batches_free(ValBatch *b, int n)
{
    for (int i = 0; i < n; i++) {
        tensor_done(&b[i].x);
        free(b[i].y);
    }
    free(b);
}

/* Copies the first batches x batch samples of set into batches shaped as
 * the model's input; a fixed-batch model takes whole batches of its own
 * size only. */
static int load_batches(Sweep *sw, const DataSubset *set)
{
    const Graph *g = sw->g;
    int64_t batch = sw->opt->batch, fixed = g->values[g->inputs[0]].shape.d[0];
    if (fixed >= 0)
        batch = fixed;
    DataSubset part = *set;
    int64_t want;
    if (!sh_mul_ok(sw->opt->batches, batch, &want))
        return sh_fail(SH_E_ARG, "batches x batch is too large");
    if (want < part.n)
        part.n = want;
    BatchIter it;
    int rc = batch_iter_init(&it, &part, batch, NULL);
    if (rc < 0)
        return rc;
    sw->batches = xcalloc((size_t)batch_iter_count(&it) + 1, sizeof *sw->batches);
    while ((rc = batch_iter_next(&it)) == 1) {
        int64_t rows = it.x.shape.d[0];
        if (fixed >= 0 && rows != fixed)
            break;
        ValBatch *b = &sw->batches[sw->n_batches];
        Shape s;
        if ((rc = graph_input_shape(g, 0, rows, &s)) < 0 || (rc = tensor_alloc(&b->x, SH_F32, &s)) < 0)
            break;
        memcpy(b->x.data, it.x.data, tensor_bytes(&b->x));
        b->y = xmalloc(sizeof(int64_t) * (size_t)rows);
        memcpy(b->y, it.y.data, sizeof(int64_t) * (size_t)rows);
        b->rows = rows;
        sw->n_batches++;
    }
    batch_iter_done(&it);
    if (rc < 0)
        return rc;
    if (sw->n_batches == 0)
        return sh_fail(SH_E_STATE, "no validation batch to measure on (%lld samples%s)", (long long)set->n,
                       fixed >= 0 ? ", and the model takes whole batches only" : "");
    sw->s->batch = batch;
    for (int i = 0; i < sw->n_batches; i++)
        sw->s->samples += sw->batches[i].rows;
    return 0;
}

static void tally_output(const Sweep *sw, const Tensor *logits, const ValBatch *b, Tally *t)
{
    int64_t stride = logits->shape.d[1];
    t->correct = 0;
    t->loss = 0;
    for (int64_t i = 0; i < b->rows; i++) {
        int pred;
        t->loss += row_cross_entropy(tensor_f32(logits) + i * stride, (int)stride, b->y[i], sw->kind, &pred);
        t->correct += pred == b->y[i];
    }
}

/* ---- workers ---- */

static int worker_fail(Worker *w, int rc)
{
    snprintf(w->err, sizeof w->err, "%s", sh_errmsg());
    w->rc = rc;
    return rc;
}

static bool cancelled(const Sweep *sw)
{
    return sw->opt->cancel && *sw->opt->cancel;
}

static void emit_partial(Sweep *sw);

static void work_done(Sweep *sw, int i, bool partial)
{
    int done = atomic_fetch_add(&sw->done, 1) + 1;
    if (i != 0) /* the calling thread reports for all */
        return;
    if (sw->opt->progress)
        sw->opt->progress(sw->opt->progress_ctx, done, sw->total);
    if (partial)
        emit_partial(sw);
}

/* A keep_all plan of the model for rows, with the zeroing hook. */
static int worker_plan(Worker *w, int64_t rows, ExecPlan **out)
{
    if (!w->plan || w->plan_rows != rows) {
        exec_free(w->plan);
        w->plan = NULL;
        Shape s;
        ExecOptions eo = {.keep_all = true, .no_fusion = true, .after_node = zero_cuts, .hook_ctx = w};
        int rc = graph_input_shape(w->sw->g, 0, rows, &s);
        if (rc == 0)
            rc = exec_plan(w->sw->g, &s, &eo, &w->plan);
        if (rc < 0)
            return rc;
        w->plan_rows = rows;
    }
    *out = w->plan;
    return 0;
}

/* A point's first node computes from unchanged inputs, so its outputs
 * are the unpruned ones with the cut channels zeroed. When they hold the
 * unpruned values, or the same group's smaller cut (points of a group
 * come in ascending order and their cuts nest), zeroing them in place
 * replaces running the node: reruns start after it. Returns the node the
 * rerun starts at. */
static int zero_in_place(Worker *w, ExecPlan *p, int node)
{
    const Node *n = &w->sw->g->nodes[node];
    Tensor *out[16] = {0};
    if (n->n_out > 16)
        return node;
    for (int k = 0; k < n->n_out; k++)
        if (n->out[k] >= 0)
            out[k] = (Tensor *)exec_value(p, n->out[k]); /* its buffer, written in place like a hook does */
    zero_cuts(w, n, out, n->n_out);
    return node + 1;
}

/* Zeroing path on worker i's batches: one full run, then each point
 * reruns from its first node. */
static int exact_task(int i, void *ctx)
{
    Sweep *sw = ctx;
    Worker *w = &sw->workers[i];
    for (int b = i; b < sw->n_batches; b += sw->n_workers) {
        ValBatch *vb = &sw->batches[b];
        Tally *row = &sw->tallies[(size_t)b * (size_t)sw->n_slots];
        Tensor *xs[1] = {&vb->x};
        ExecPlan *p;
        int rc = worker_plan(w, vb->rows, &p);
        w->active = NULL;
        if (rc == 0)
            rc = exec_run(p, xs);
        if (rc < 0)
            return worker_fail(w, rc);
        tally_output(sw, exec_output(p, 0), vb, &row[0]);
        const Point *prev = NULL;
        for (int k = 0; k < sw->n_exact; k++) {
            const Point *pt = &sw->points[sw->exact[k]];
            if (cancelled(sw))
                return worker_fail(w, sh_fail(SH_E_CANCELLED, "sensitivity sweep cancelled"));
            w->active = pt;
            int from = pt->first_node;
            if (!prev || prev->curve == pt->curve || prev->first_node != from)
                from = zero_in_place(w, p, from); /* its inputs did not change: only zero its outputs */
            if ((rc = exec_rerun_from(p, from)) < 0)
                return worker_fail(w, point_fail(sw, pt, rc));
            tally_output(sw, exec_output(p, 0), vb, &row[pt->slot]);
            prev = pt;
        }
        w->active = NULL;
        atomic_store(&sw->batch_done[b], 1); /* after its tallies: readers sum them */
        work_done(sw, i, true);
    }
    return 0;
}

/* Surgery path: worker i's batches through the pruned copy. */
static int surgery_task(int i, void *ctx)
{
    Sweep *sw = ctx;
    Worker *w = &sw->workers[i];
    ExecPlan *p = NULL;
    int64_t planned = -1;
    int rc = 0;
    for (int b = i; b < sw->n_batches && rc == 0; b += sw->n_workers) {
        ValBatch *vb = &sw->batches[b];
        if (cancelled(sw)) {
            rc = sh_fail(SH_E_CANCELLED, "sensitivity sweep cancelled");
            break;
        }
        if (vb->rows != planned) {
            Shape s;
            exec_free(p);
            p = NULL;
            if ((rc = graph_input_shape(sw->pruned, 0, vb->rows, &s)) < 0 ||
                (rc = exec_plan(sw->pruned, &s, NULL, &p)) < 0)
                break;
            planned = vb->rows;
        }
        Tensor *xs[1] = {&vb->x};
        if ((rc = exec_run(p, xs)) < 0)
            break;
        tally_output(sw, exec_output(p, 0), vb, &sw->tallies[(size_t)b * (size_t)sw->n_slots + (size_t)sw->surgery_slot]);
    }
    exec_free(p);
    if (rc < 0)
        return worker_fail(w, rc);
    work_done(sw, i, false); /* the point's curve is reported once all its points are in */
    return 0;
}

/* Runs fn on every worker; a worker's message moves to this thread. */
static int run_workers(Sweep *sw, int (*fn)(int, void *))
{
    for (int i = 0; i < sw->n_workers; i++)
        sw->workers[i].rc = 0;
    int rc = sh_run_parallel(sw->n_workers, fn, sw);
    for (int i = 0; i < sw->n_workers; i++)
        if (sw->workers[i].rc < 0)
            return sh_fail(sw->workers[i].rc, "%s", sw->workers[i].err);
    if (rc < 0)
        return sh_fail(SH_E_NOMEM, "could not start the sweep's threads");
    return 0;
}

/* ---- setup ---- */

static int select_groups(Sweep *sw, double *const *scores)
{
    const DepGraph *dg = sw->dg;
    const SensOptions *opt = sw->opt;
    int n = opt->groups ? opt->n_groups : dg->n_groups;
    Sensitivity *s = sw->s;
    s->curves = xcalloc((size_t)n + 1, sizeof *s->curves);
    for (int k = 0; k < n; k++) {
        int id = opt->groups ? opt->groups[k] : k;
        if (id < 0 || id >= dg->n_groups)
            return sh_fail(SH_E_ARG, "no group %d (see: groups)", id);
        const Group *grp = &dg->groups[id];
        if (grp->blocked) {
            if (!opt->groups)
                continue;
            return sh_fail(SH_E_STATE, "group '%s' is blocked: %s", grp->name, grp->blocked_reason);
        }
        if (!scores || !scores[id]) {
            if (!opt->groups)
                continue;
            return sh_fail(SH_E_STATE, "no scores for group '%s' (run: score CRITERION)", grp->name);
        }
        for (int j = 0; j < s->n_curves; j++)
            if (s->curves[j].group_id == id)
                return sh_fail(SH_E_ARG, "group '%s' is listed twice", grp->name);
        SensCurve *c = &s->curves[s->n_curves++];
        c->group = xstrdup(grp->name);
        c->group_id = id;
        c->kind = grp->kind;
        c->n_units = grp->n_units;
        c->surgery = grp->approximate;
        c->order = units_by_score(scores[id], grp->n_units);
        c->points = xcalloc((size_t)s->n_ratios + 1, sizeof *c->points);
    }
    if (s->n_curves == 0)
        return sh_fail(SH_E_STATE, "no group to measure: every group is blocked or has no scores");
    return 0;
}

/* A curve whose cuts zeroing cannot reach goes through surgery: its
 * points leave the zeroing list. */
static void to_surgery(Sweep *sw, int curve)
{
    int kept = 0;
    sw->s->curves[curve].surgery = true;
    sw->s->curves[curve].first_node = -1;
    for (int i = 0; i < sw->n_exact; i++)
        if (sw->points[sw->exact[i]].curve != curve)
            sw->exact[kept++] = sw->exact[i];
    sw->n_exact = kept;
}

/* The distinct points of every curve (ratios that round to the same unit
 * count share one); their cuts and MACs. */
static int make_points(Sweep *sw, const ExecPlan *probe)
{
    Sensitivity *s = sw->s;
    sw->points = xcalloc((size_t)s->n_curves * (size_t)s->n_ratios + 1, sizeof *sw->points);
    sw->exact = xcalloc((size_t)s->n_curves * (size_t)s->n_ratios + 1, sizeof *sw->exact);
    sw->n_slots = 1;
    for (int ci = 0; ci < s->n_curves; ci++) {
        SensCurve *c = &s->curves[ci];
        const Group *grp = &sw->dg->groups[c->group_id];
        c->first_node = -1;
        for (int r = 0; r < s->n_ratios; r++) {
            c->points[r].ratio = s->ratios[r];
            c->points[r].removed = removed_for(s->ratios[r], grp);
            if (c->points[r].removed == 0 || (r > 0 && c->points[r].removed == c->points[r - 1].removed))
                continue; /* the unpruned model, or the point before */
            Point *pt = &sw->points[sw->n_points++];
            *pt = (Point){.curve = ci, .removed = c->points[r].removed, .slot = sw->n_slots++};
            Plan plan;
            Graph *pruned = NULL;
            SurgeryStats st;
            int rc = point_plan(sw, pt, &plan);
            if (rc == 0)
                rc = plan_cuts(sw->g, &plan, sw->dg, &pt->cuts);
            if (rc == 0)
                rc = surgery_apply(sw->g, sw->dg, &plan, &pruned, &st);
            plan_done(&plan);
            graph_free(pruned);
            if (rc < 0)
                return point_fail(sw, pt, rc);
            pt->macs = st.macs_after;
            if (!c->surgery && !index_cuts(sw->g, probe, pt))
                to_surgery(sw, ci);
            if (!c->surgery) {
                sw->exact[sw->n_exact++] = (int)(pt - sw->points);
                if (c->first_node < 0 || pt->first_node < c->first_node)
                    c->first_node = pt->first_node;
            }
        }
    }
    /* descending first node: a rerun recomputes everything an earlier
     * point (starting later) changed */
    for (int i = 1; i < sw->n_exact; i++)
        for (int j = i; j > 0 && sw->points[sw->exact[j]].first_node > sw->points[sw->exact[j - 1]].first_node; j--) {
            int t = sw->exact[j];
            sw->exact[j] = sw->exact[j - 1];
            sw->exact[j - 1] = t;
        }
    return 0;
}

/* Surgery curves: each point's pruned copy over every batch. */
static int measure_surgery_points(Sweep *sw)
{
    for (int k = 0; k < sw->n_points; k++) {
        Point *pt = &sw->points[k];
        if (!sw->s->curves[pt->curve].surgery)
            continue;
        Plan plan;
        Graph *pruned = NULL;
        SurgeryStats st;
        int rc = point_plan(sw, pt, &plan);
        if (rc == 0)
            rc = surgery_apply(sw->g, sw->dg, &plan, &pruned, &st);
        plan_done(&plan);
        if (rc < 0)
            return point_fail(sw, pt, rc);
        sw->pruned = pruned;
        sw->surgery_slot = pt->slot;
        rc = run_workers(sw, surgery_task);
        sw->pruned = NULL;
        graph_free(pruned);
        if (rc < 0)
            return rc == SH_E_CANCELLED ? rc : point_fail(sw, pt, rc);
        sw->s->surgery_points++;
        sw->slot_ready[pt->slot] = true;
        emit_partial(sw);
    }
    return 0;
}

/* Sums every slot's tallies over the finished batches in batch order
 * (the same numbers for any thread count) and fills the curves; returns
 * the samples counted. */
static int64_t collect(Sweep *sw)
{
    Sensitivity *s = sw->s;
    double *acc = xcalloc((size_t)sw->n_slots, sizeof *acc), *loss = xcalloc((size_t)sw->n_slots, sizeof *loss);
    int64_t samples = 0;
    for (int b = 0; b < sw->n_batches; b++)
        if (atomic_load(&sw->batch_done[b]))
            samples += sw->batches[b].rows;
    for (int slot = 0; slot < sw->n_slots && samples > 0; slot++) {
        int64_t correct = 0;
        double sum = 0;
        for (int b = 0; b < sw->n_batches; b++) {
            const Tally *t = &sw->tallies[(size_t)b * (size_t)sw->n_slots + (size_t)slot];
            if (!atomic_load(&sw->batch_done[b]))
                continue;
            correct += t->correct;
            sum += t->loss;
        }
        acc[slot] = (double)correct / (double)samples;
        loss[slot] = sum / (double)samples;
    }
    s->base_accuracy = acc[0];
    s->base_loss = loss[0];
    for (int ci = 0; ci < s->n_curves; ci++) {
        SensCurve *c = &s->curves[ci];
        for (int r = 0; r < s->n_ratios; r++) {
            SensPoint *sp = &c->points[r];
            int slot = 0;
            int64_t macs = s->base_macs;
            for (int k = 0; k < sw->n_points; k++)
                if (sw->points[k].curve == ci && sw->points[k].removed == sp->removed) {
                    slot = sw->points[k].slot;
                    macs = sw->points[k].macs;
                }
            sp->accuracy = acc[slot];
            sp->loss = loss[slot];
            sp->macs = macs;
        }
    }
    free(acc);
    free(loss);
    return samples;
}

/* True if every point of a curve is measured (so far). */
static bool curve_ready(const Sweep *sw, int curve)
{
    for (int k = 0; k < sw->n_points; k++)
        if (sw->points[k].curve == curve && sw->s->curves[curve].surgery && !sw->slot_ready[sw->points[k].slot])
            return false;
    return true;
}

/* Hands the curves measured so far to opt->partial (calling thread). */
static void emit_partial(Sweep *sw)
{
    if (!sw->opt->partial)
        return;
    int64_t samples = collect(sw);
    if (samples == 0)
        return;
    Sensitivity part = *sw->s;
    part.samples = samples;
    part.curves = xcalloc((size_t)sw->s->n_curves + 1, sizeof *part.curves);
    part.n_curves = 0;
    for (int i = 0; i < sw->s->n_curves; i++)
        if (curve_ready(sw, i))
            part.curves[part.n_curves++] = sw->s->curves[i];
    sw->opt->partial(sw->opt->progress_ctx, &part);
    free(part.curves);
}

static void sweep_done(Sweep *sw)
{
    for (int i = 0; i < sw->n_workers; i++)
        exec_free(sw->workers[i].plan);
    free(sw->workers);
    for (int k = 0; k < sw->n_points; k++)
        point_done(&sw->points[k]);
    free(sw->points);
    free(sw->exact);
    free(sw->tallies);
    free(sw->batch_done);
    free(sw->slot_ready);
    batches_free(sw->batches, sw->n_batches);
}

/* A plan used only to ask which values are known when planning. */
static int probe_plan(const Graph *g, ExecPlan **out)
{
    Shape s;
    ExecOptions eo = {.shapes_only = true};
    int rc = graph_input_shape(g, 0, 1, &s);
    return rc < 0 ? rc : exec_plan(g, &s, &eo, out);
}

static int check_options(const Graph *g, const SensOptions *opt, const DataSubset *set)
{
    if (opt->n_ratios < 1 || opt->n_ratios > SENS_MAX_RATIOS)
        return sh_fail(SH_E_ARG, "ratios: give 1 to %d fractions", SENS_MAX_RATIOS);
    for (int r = 0; r < opt->n_ratios; r++)
        if (!(opt->ratios[r] > 0 && opt->ratios[r] < 1) || (r > 0 && !(opt->ratios[r] > opt->ratios[r - 1])))
            return sh_fail(SH_E_ARG, "ratios must be ascending fractions between 0 and 1 (exclusive)");
    if (opt->batches < 1 || opt->batch < 1)
        return sh_fail(SH_E_ARG, "batches and batch must be at least 1");
    if (!set || !set->ds || set->n == 0)
        return sh_fail(SH_E_STATE, "no validation data (use: data fashion-mnist)");
    if (g->n_inputs != 1)
        return sh_fail(SH_E_UNSUPPORTED, "sensitivity needs a model with one input; this one has %d", g->n_inputs);
    return eval_check_compat(g, set->ds);
}

int sensitivity_run(const Graph *g, const DepGraph *dg, double *const *scores, const DataSubset *set,
                    const SensOptions *opt, Sensitivity **out)
{
    *out = NULL;
    int rc = check_options(g, opt, set);
    if (rc < 0)
        return rc;
    double t0 = now_seconds();
    Sensitivity *s = xcalloc(1, sizeof *s);
    s->model_hash = graph_content_hash(g);
    s->criterion = xstrdup(opt->criterion ? opt->criterion : "?");
    s->data = xstrdup(opt->data ? opt->data : "?");
    s->n_ratios = opt->n_ratios;
    s->ratios = xmalloc(sizeof(double) * (size_t)opt->n_ratios);
    memcpy(s->ratios, opt->ratios, sizeof(double) * (size_t)opt->n_ratios);
    Sweep sw = {.g = g, .dg = dg, .opt = opt, .s = s, .kind = graph_output_kind(g)};
    ExecPlan *probe = NULL;
    if ((rc = select_groups(&sw, scores)) < 0 || (rc = load_batches(&sw, set)) < 0 ||
        (rc = graph_macs(g, NULL, &s->base_macs)) < 0 || (rc = probe_plan(g, &probe)) < 0 ||
        (rc = make_points(&sw, probe)) < 0)
        goto done;
    sw.n_workers = opt->threads < 1 ? 1 : opt->threads;
    if (sw.n_workers > sw.n_batches)
        sw.n_workers = sw.n_batches;
    sw.workers = xcalloc((size_t)sw.n_workers, sizeof *sw.workers);
    for (int i = 0; i < sw.n_workers; i++)
        sw.workers[i].sw = &sw;
    sw.tallies = xcalloc((size_t)sw.n_batches * (size_t)sw.n_slots, sizeof *sw.tallies);
    sw.batch_done = xcalloc((size_t)sw.n_batches, sizeof *sw.batch_done);
    sw.slot_ready = xcalloc((size_t)sw.n_slots, sizeof *sw.slot_ready);
    for (int b = 0; b < sw.n_batches; b++)
        atomic_init(&sw.batch_done[b], 0);
    int n_surgery = 0;
    for (int k = 0; k < sw.n_points; k++)
        n_surgery += s->curves[sw.points[k].curve].surgery;
    sw.total = sw.n_batches + n_surgery * sw.n_workers;
    if ((rc = run_workers(&sw, exact_task)) < 0)
        goto done;
    for (int i = 0; i < sw.n_workers; i++) { /* their arenas are not needed any more */
        exec_free(sw.workers[i].plan);
        sw.workers[i].plan = NULL;
    }
    if ((rc = measure_surgery_points(&sw)) < 0)
        goto done;
    collect(&sw);
    s->full_runs = sw.n_batches;
    s->reruns = sw.n_batches * sw.n_exact;
    s->threads = sw.n_workers;
    s->seconds = now_seconds() - t0;
done:
    exec_free(probe);
    sweep_done(&sw);
    if (rc < 0) {
        sensitivity_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void sensitivity_free(Sensitivity *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n_curves; i++) {
        free(s->curves[i].group);
        free(s->curves[i].order);
        free(s->curves[i].points);
    }
    free(s->curves);
    free(s->ratios);
    free(s->criterion);
    free(s->data);
    free(s);
}

/* ---- output ---- */

static const char *path_name(const SensCurve *c) { return c->surgery ? "surgery" : "zeroing"; }

cJSON *sensitivity_to_json(const Sensitivity *s)
{
    cJSON *root = cJSON_CreateObject();
    char hash[32];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)s->model_hash);
    cJSON_AddStringToObject(root, "model_hash", hash);
    cJSON_AddStringToObject(root, "criterion", s->criterion);
    cJSON_AddStringToObject(root, "data", s->data);
    cJSON_AddNumberToObject(root, "samples", (double)s->samples);
    cJSON_AddNumberToObject(root, "batch", (double)s->batch);
    cJSON_AddNumberToObject(root, "threads", s->threads);
    cJSON_AddNumberToObject(root, "seconds", s->seconds);
    cJSON *base = cJSON_AddObjectToObject(root, "baseline");
    cJSON_AddNumberToObject(base, "accuracy", s->base_accuracy);
    cJSON_AddNumberToObject(base, "loss", s->base_loss);
    cJSON_AddNumberToObject(base, "macs", (double)s->base_macs);
    cJSON_AddItemToObject(root, "ratios", cJSON_CreateDoubleArray(s->ratios, s->n_ratios));
    cJSON *groups = cJSON_AddArrayToObject(root, "groups");
    for (int i = 0; i < s->n_curves; i++) {
        const SensCurve *c = &s->curves[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "group", c->group);
        cJSON_AddNumberToObject(e, "id", c->group_id);
        cJSON_AddStringToObject(e, "kind", group_kind_name(c->kind));
        cJSON_AddNumberToObject(e, "units", c->n_units);
        cJSON_AddStringToObject(e, "path", path_name(c));
        cJSON *pts = cJSON_AddArrayToObject(e, "points");
        for (int r = 0; r < s->n_ratios; r++) {
            const SensPoint *p = &c->points[r];
            cJSON *pe = cJSON_CreateObject();
            cJSON_AddNumberToObject(pe, "ratio", p->ratio);
            cJSON_AddNumberToObject(pe, "removed", p->removed);
            cJSON_AddNumberToObject(pe, "accuracy", p->accuracy);
            cJSON_AddNumberToObject(pe, "loss", p->loss);
            cJSON_AddNumberToObject(pe, "macs", (double)p->macs);
            cJSON_AddItemToArray(pts, pe);
        }
        cJSON_AddItemToArray(groups, e);
    }
    return root;
}

int sensitivity_write_json(const Sensitivity *s, const char *path, bool overwrite)
{
    cJSON *root = sensitivity_to_json(s);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text)
        return sh_fail(SH_E_NOMEM, "out of memory writing %s", path);
    size_t n = strlen(text);
    text[n] = '\n'; /* replaces the terminator: the file ends with a newline */
    int rc = write_file_atomic(path, text, n + 1, overwrite);
    free(text);
    return rc;
}

/* A CSV field: quoted when it holds a comma, quote or line break. */
static void csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

int sensitivity_write_csv(const Sensitivity *s, const char *path, bool overwrite)
{
    AtomicFile af;
    int rc = atomic_open(&af, path, overwrite);
    if (rc < 0)
        return rc;
    fprintf(af.f, "group,id,kind,path,units,ratio,removed,accuracy,loss,macs\n");
    fprintf(af.f, "(baseline),,,,,0,0,%.6f,%.6f,%lld\n", s->base_accuracy, s->base_loss, (long long)s->base_macs);
    for (int i = 0; i < s->n_curves; i++) {
        const SensCurve *c = &s->curves[i];
        for (int r = 0; r < s->n_ratios; r++) {
            const SensPoint *p = &c->points[r];
            csv_field(af.f, c->group);
            fprintf(af.f, ",%d,%s,%s,%d,%g,%d,%.6f,%.6f,%lld\n", c->group_id, group_kind_name(c->kind), path_name(c),
                    c->n_units, p->ratio, p->removed, p->accuracy, p->loss, (long long)p->macs);
        }
    }
    return atomic_commit(&af);
}

/* ---- budgets ---- */

static double drop_of(const Sensitivity *s, const SensPoint *p, SensMetric metric)
{
    return metric == SENS_ACCURACY ? 100.0 * (s->base_accuracy - p->accuracy) : p->loss - s->base_loss;
}

void sensitivity_choose(const Sensitivity *s, SensMetric metric, double limit, int *chosen)
{
    for (int i = 0; i < s->n_curves; i++) {
        chosen[i] = -1;
        for (int r = 0; r < s->n_ratios; r++) /* 1e-9: a drop equal to the budget qualifies */
            if (drop_of(s, &s->curves[i].points[r], metric) <= limit + 1e-9)
                chosen[i] = r;
    }
}

int sensitivity_mark(const Sensitivity *s, const DepGraph *dg, const int *chosen, Plan *p)
{
    for (int i = 0; i < s->n_curves; i++) {
        const Group *grp = depgraph_find(dg, s->curves[i].group);
        if (!grp || grp->n_units != s->curves[i].n_units)
            return sh_fail(SH_E_STATE, "the sensitivity curves name group '%s' with %d units, which this model does not have",
                           s->curves[i].group, s->curves[i].n_units);
    }
    plan_clear(p);
    for (int i = 0; i < s->n_curves; i++) {
        if (chosen[i] < 0)
            continue;
        const SensCurve *c = &s->curves[i];
        const Group *grp = depgraph_find(dg, c->group);
        for (int k = 0; k < c->points[chosen[i]].removed; k++) {
            int rc = plan_mark(p, grp, c->order[k], true);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

/* ---- the curves of a session ---- */

#define SENS_CACHE 8

static Sensitivity *cache[SENS_CACHE];
static uint64_t cache_age[SENS_CACHE], cache_clock;

void sensitivity_remember(Sensitivity *s)
{
    int slot = -1;
    for (int i = 0; i < SENS_CACHE && slot < 0; i++)
        if (cache[i] && cache[i]->model_hash == s->model_hash && !strcmp(cache[i]->criterion, s->criterion))
            slot = i;
    for (int i = 0; i < SENS_CACHE && slot < 0; i++)
        if (!cache[i])
            slot = i;
    if (slot < 0) { /* full: the oldest goes */
        slot = 0;
        for (int i = 1; i < SENS_CACHE; i++)
            if (cache_age[i] < cache_age[slot])
                slot = i;
    }
    if (cache[slot] != s)
        sensitivity_free(cache[slot]);
    cache[slot] = s;
    cache_age[slot] = ++cache_clock;
}

const Sensitivity *sensitivity_recall(uint64_t model_hash, const char *criterion)
{
    int best = -1;
    for (int i = 0; i < SENS_CACHE; i++)
        if (cache[i] && cache[i]->model_hash == model_hash && (!criterion || !strcmp(cache[i]->criterion, criterion)) &&
            (best < 0 || cache_age[i] > cache_age[best]))
            best = i;
    return best >= 0 ? cache[best] : NULL;
}

void sensitivity_forget_all(void)
{
    for (int i = 0; i < SENS_CACHE; i++) {
        sensitivity_free(cache[i]);
        cache[i] = NULL;
        cache_age[i] = 0;
    }
}
