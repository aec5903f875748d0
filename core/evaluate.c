#include "evaluate.h"

#include "error.h"
#include "exec.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

OutputKind graph_output_kind(const Graph *g)
{
    int v = g->outputs[0];
    const Value *val = &g->values[v];
    if (val->producer < 0)
        return OUT_LOGITS;
    const char *op = g->nodes[val->producer].op_type;
    if (strcmp(op, "Softmax") == 0)
        return OUT_PROBS;
    if (strcmp(op, "LogSoftmax") == 0)
        return OUT_LOG_PROBS;
    return OUT_LOGITS;
}

double row_cross_entropy(const float *s, int n, int64_t y, OutputKind kind, int *argmax)
{
    int best = 0;
    for (int j = 1; j < n; j++)
        if (s[j] > s[best])
            best = j;
    *argmax = best;
    if (kind == OUT_PROBS)
        return -log(fmax((double)s[y], 1e-30));
    if (kind == OUT_LOG_PROBS)
        return -(double)s[y];
    double m = s[best], sum = 0;
    for (int j = 0; j < n; j++)
        sum += exp((double)s[j] - m);
    return -((double)s[y] - m - log(sum));
}

static int64_t sample_numel(const Shape *s)
{
    int64_t n = 1;
    for (int k = 1; k < s->rank; k++)
        n *= s->d[k];
    return n;
}

int eval_check_compat(const Graph *g, const Dataset *ds)
{
    char a[128], b[128];
    if (g->n_inputs < 1 || g->n_outputs < 1)
        return sh_fail(SH_E_STATE, "the model has no inputs or outputs");
    const Value *in = &g->values[g->inputs[0]];
    if (in->dtype != SH_F32)
        return sh_fail(SH_E_SHAPE, "model input '%s' is %s; image data needs float32", in->name,
                       dtype_name(in->dtype));
    for (int k = 1; k < in->shape.rank; k++)
        if (in->shape.d[k] < 0)
            return sh_fail(SH_E_SHAPE, "model input '%s' %s has a symbolic non-batch dimension",
                           in->name, sym_shape_str(&in->shape, a, sizeof a));
    int64_t per = ds->c * ds->h * ds->w;
    if (in->shape.rank < 2 || sample_numel(&in->shape) != per) {
        Shape ds_shape = shape_of(4, (int64_t)-1, ds->c, ds->h, ds->w);
        return sh_fail(SH_E_SHAPE, "model input '%s' takes %s per batch but the data's samples are %s",
                       in->name, sym_shape_str(&in->shape, a, sizeof a),
                       sym_shape_str(&ds_shape, b, sizeof b));
    }
    const Value *out = &g->values[g->outputs[0]];
    if (out->shape.rank != 2 || out->shape.d[1] < ds->n_classes)
        return sh_fail(SH_E_SHAPE, "model output '%s' %s does not give one score per class for %d classes",
                       out->name, sym_shape_str(&out->shape, a, sizeof a), ds->n_classes);
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Plans the model for a batch of rows, input shaped as the model wants. */
static int plan_for(const Graph *g, int64_t rows, ExecPlan **plan, Shape *in_shape)
{
    int rc = graph_input_shape(g, 0, rows, in_shape);
    if (rc < 0)
        return rc;
    return exec_plan(g, in_shape, NULL, plan);
}

static void score_batch(const Tensor *logits, const Tensor *y, int64_t rows, OutputKind kind,
                        EvalResult *r, double *loss_sum)
{
    int64_t stride = logits->shape.d[1];
    for (int64_t i = 0; i < rows; i++) {
        int pred;
        int64_t label = tensor_i64(y)[i];
        *loss_sum += row_cross_entropy(tensor_f32(logits) + i * stride, (int)stride, label,
                                       kind, &pred);
        r->correct += pred == label;
    }
}

int evaluate(const Graph *g, const DataSubset *set, int64_t batch, EvalResult *r)
{
    memset(r, 0, sizeof *r);
    int rc = eval_check_compat(g, set->ds);
    if (rc < 0)
        return rc;
    const Value *in = &g->values[g->inputs[0]];
    if (in->shape.d[0] >= 0) /* fixed batch: run at the model's own size */
        batch = in->shape.d[0];
    if (batch < 1)
        return sh_fail(SH_E_ARG, "batch must be at least 1");
    BatchIter it;
    if ((rc = batch_iter_init(&it, set, batch, NULL)) < 0)
        return rc;
    ExecPlan *plan = NULL;
    int64_t plan_rows = -1;
    Shape in_shape;
    double loss_sum = 0, *times = xcalloc((size_t)batch_iter_count(&it) + 1, sizeof *times);
    int n_times = 0;
    OutputKind kind = graph_output_kind(g);
    while ((rc = batch_iter_next(&it)) == 1) {
        int64_t rows = it.x.shape.d[0];
        if (rows != plan_rows) {
            exec_free(plan);
            plan = NULL;
            if (in->shape.d[0] >= 0 && rows != in->shape.d[0])
                break; /* a fixed-batch model skips the final partial batch */
            if ((rc = plan_for(g, rows, &plan, &in_shape)) < 0)
                break;
            plan_rows = rows;
        }
        Tensor x = tensor_view(SH_F32, &in_shape, it.x.data);
        Tensor *xs[1] = {&x};
        double t0 = now_seconds();
        if ((rc = exec_run(plan, xs)) < 0)
            break;
        double dt = now_seconds() - t0;
        r->seconds += dt;
        if (rows == batch)
            times[n_times++] = dt;
        score_batch(exec_output(plan, 0), &it.y, rows, kind, r, &loss_sum);
        r->samples += rows;
    }
    exec_free(plan);
    batch_iter_done(&it);
    if (rc < 0) {
        free(times);
        return rc;
    }
    if (n_times) {
        qsort(times, (size_t)n_times, sizeof *times, cmp_double);
        r->batch_ms = times[n_times / 2] * 1e3;
    }
    free(times);
    r->batch = batch;
    r->accuracy = r->samples ? (double)r->correct / (double)r->samples : 0;
    r->loss = r->samples ? loss_sum / (double)r->samples : 0;
    r->images_per_s = r->seconds > 0 ? (double)r->samples / r->seconds : 0;
    return 0;
}
