/* Model commands: load, info, export, run. */
#include "commands.h"

#include "core/builder.h"
#include "core/error.h"
#include "core/exec.h"
#include "core/npy.h"
#include "core/onnx.h"
#include "core/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_load(Workspace *ws, const Command *c, Out *o)
{
    const char *path = cmd_pos(c, 0);
    int rc = ws_load_model(ws, path);
    if (rc < 0)
        return rc;
    const Graph *g = ws->model;
    out_text(o, "loaded %s: %d nodes, %lld parameters, opset %d\n", path, g->n_nodes,
             (long long)graph_param_count(g), g->opset);
    cJSON_AddStringToObject(o->obj, "path", path);
    cJSON_AddNumberToObject(o->obj, "nodes", g->n_nodes);
    cJSON_AddNumberToObject(o->obj, "params", (double)graph_param_count(g));
    cJSON_AddNumberToObject(o->obj, "opset", g->opset);
    return 0;
}

int cmd_build(Workspace *ws, const Command *c, Out *o)
{
    const char *path = cmd_pos(c, 0);
    Graph *g;
    int rc = model_build_file(path, &g);
    if (rc < 0 || (rc = ws_set_model(ws, g, path)) < 0)
        return rc;
    ws->dirty = true;
    out_text(o, "built %s: %d nodes, %lld parameters\n", path, ws->model->n_nodes,
             (long long)graph_param_count(ws->model));
    cJSON_AddStringToObject(o->obj, "path", path);
    cJSON_AddNumberToObject(o->obj, "nodes", ws->model->n_nodes);
    cJSON_AddNumberToObject(o->obj, "params", (double)graph_param_count(ws->model));
    return 0;
}

/* MACs per node for one sample (batch 1); caller frees. */
static int per_sample_macs(const Graph *g, int64_t **out)
{
    int64_t total;
    *out = xcalloc((size_t)g->n_nodes + 1, sizeof **out);
    int rc = graph_macs(g, *out, &total);
    if (rc < 0) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

int cmd_info(Workspace *ws, const Command *c, Out *o)
{
    (void)c;
    int rc = ws_require_model(ws);
    if (rc < 0)
        return rc;
    const Graph *g = ws->model;
    int64_t *macs, *params = xcalloc((size_t)g->n_nodes + 1, sizeof *params), total_macs = 0, total_params = 0;
    graph_node_params(g, params);
    if ((rc = per_sample_macs(g, &macs)) < 0) {
        free(params);
        return rc;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        total_macs += macs[i];
        total_params += params[i];
    }
    out_text(o, "%-32s %-20s %-20s %10s %10s %6s\n", "node", "op", "output", "params", "MACs", "%MACs");
    cJSON *nodes = cJSON_AddArrayToObject(o->obj, "nodes");
    for (int i = 0; i < g->n_nodes; i++) {
        const Node *n = &g->nodes[i];
        char shape[128] = "-", p[32], m[32];
        if (n->n_out > 0 && n->out[0] >= 0)
            sym_shape_str(&g->values[n->out[0]].shape, shape, sizeof shape);
        double pct = total_macs ? 100.0 * (double)macs[i] / (double)total_macs : 0;
        format_count((double)params[i], p, sizeof p);
        format_count((double)macs[i], m, sizeof m);
        out_text(o, "%-32.32s %-20.20s %-20.20s %10s %10s %5.1f%%\n", n->name, n->op_type, shape, p, m, pct);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", n->name);
        cJSON_AddStringToObject(e, "op", n->op_type);
        cJSON_AddStringToObject(e, "shape", shape);
        cJSON_AddNumberToObject(e, "params", (double)params[i]);
        cJSON_AddNumberToObject(e, "macs", (double)macs[i]);
        cJSON_AddNumberToObject(e, "macs_pct", pct);
        cJSON_AddItemToArray(nodes, e);
    }
    char p[32], m[32];
    format_count((double)total_params, p, sizeof p);
    format_count((double)total_macs, m, sizeof m);
    /* MACs are counted at batch 1, or at the model's own batch if it is fixed */
    int64_t fixed = 1;
    if (g->n_inputs > 0 && g->values[g->inputs[0]].shape.rank > 0 && g->values[g->inputs[0]].shape.d[0] > 0)
        fixed = g->values[g->inputs[0]].shape.d[0];
    char per[64];
    snprintf(per, sizeof per, fixed > 1 ? "per batch of %lld (fixed by the model)" : "per sample", (long long)fixed);
    out_text(o, "total: %d nodes, %s params (%.2f MB float32), %s MACs %s, opset %d\n", g->n_nodes, p,
             (double)total_params * 4 / 1e6, m, per, g->opset);
    cJSON *tot = cJSON_AddObjectToObject(o->obj, "totals");
    cJSON_AddNumberToObject(tot, "nodes", g->n_nodes);
    cJSON_AddNumberToObject(tot, "params", (double)total_params);
    cJSON_AddNumberToObject(tot, "macs", (double)total_macs);
    cJSON_AddNumberToObject(tot, "opset", g->opset);
    cJSON_AddNumberToObject(tot, "macs_batch", (double)fixed);
    free(macs);
    free(params);
    return 0;
}

int cmd_export(Workspace *ws, const Command *c, Out *o)
{
    bool force;
    int rc = ws_require_model(ws);
    if (rc < 0 || (rc = arg_bool(c, "force", false, &force)) < 0)
        return rc;
    const char *path = cmd_pos(c, 0);
    if ((rc = onnx_save(ws->model, path, force)) < 0)
        return rc;
    ws->dirty = false;
    out_text(o, "wrote %s\n", path);
    cJSON_AddStringToObject(o->obj, "path", path);
    return 0;
}

/* ---- run ---- */

#define RUN_MAX_IO 16

static int load_run_inputs(const Graph *g, const char *list, Tensor *in, int *n_in)
{
    char *files[RUN_MAX_IO + 1];
    int n = split_list(list, files, RUN_MAX_IO + 1), rc = 0;
    *n_in = 0;
    if (n != g->n_inputs) {
        rc = sh_fail(SH_E_ARG, "input= names %d file%s; the model has %d input%s", n,
                     n == 1 ? "" : "s", g->n_inputs, g->n_inputs == 1 ? "" : "s");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const Value *v = &g->values[g->inputs[i]];
        if ((rc = npy_read(&in[i], files[i])) < 0)
            goto done;
        *n_in = i + 1;
        if (in[i].dtype != v->dtype) {
            rc = sh_fail(SH_E_SHAPE, "%s holds %s; model input '%s' is %s", files[i],
                         dtype_name(in[i].dtype), v->name, dtype_name(v->dtype));
            goto done;
        }
    }
done:
    for (int i = 0; i < n; i++)
        free(files[i]);
    return rc;
}

static void summarize_output(Out *o, cJSON *arr, const char *name, const Tensor *t)
{
    char s[128];
    double lo = INFINITY, hi = -INFINITY, sum = 0;
    int64_t argmax = 0;
    for (int64_t i = 0; i < t->numel; i++) {
        double x = tensor_get_f(t, i);
        if (x > hi) {
            hi = x;
            argmax = i;
        }
        lo = x < lo ? x : lo;
        sum += x;
    }
    double mean = t->numel ? sum / (double)t->numel : 0;
    out_text(o, "%s %s %s: min %.6g max %.6g mean %.6g (argmax %lld)\n", name, dtype_name(t->dtype),
             shape_str(&t->shape, s, sizeof s), lo, hi, mean, (long long)argmax);
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", name);
    cJSON_AddStringToObject(e, "shape", s);
    cJSON_AddNumberToObject(e, "min", lo);
    cJSON_AddNumberToObject(e, "max", hi);
    cJSON_AddNumberToObject(e, "mean", mean);
    cJSON_AddItemToArray(arr, e);
}

static int write_run_outputs(const Graph *g, const ExecPlan *p, const char *list, bool force, Out *o)
{
    char *files[RUN_MAX_IO + 1];
    int n = split_list(list, files, RUN_MAX_IO + 1), rc = 0;
    if (n > g->n_outputs)
        rc = sh_fail(SH_E_ARG, "output= names %d files; the model has %d output%s", n,
                     g->n_outputs, g->n_outputs == 1 ? "" : "s");
    for (int k = 0; k < n && rc == 0; k++) {
        if ((rc = npy_write(files[k], exec_output(p, k), force)) == 0)
            out_text(o, "wrote %s\n", files[k]);
    }
    for (int k = 0; k < n; k++)
        free(files[k]);
    return rc;
}

int cmd_run(Workspace *ws, const Command *c, Out *o)
{
    Tensor in[RUN_MAX_IO] = {0};
    Tensor *ptrs[RUN_MAX_IO];
    Shape shapes[RUN_MAX_IO];
    int n_in = 0;
    bool force;
    int rc = ws_require_model(ws);
    if (rc < 0 || (rc = arg_bool(c, "force", false, &force)) < 0)
        return rc;
    const Graph *g = ws->model;
    const char *input = cmd_get(c, "input"), *output = cmd_get(c, "output");
    if (!input)
        return sh_fail(SH_E_ARG, "input= is required (one .npy file per model input)");
    if (g->n_inputs > RUN_MAX_IO || g->n_outputs > RUN_MAX_IO)
        return sh_fail(SH_E_UNSUPPORTED, "run supports at most %d inputs and outputs", RUN_MAX_IO);
    ExecPlan *p = NULL;
    if ((rc = load_run_inputs(g, input, in, &n_in)) < 0)
        goto done;
    for (int i = 0; i < n_in; i++) {
        shapes[i] = in[i].shape;
        ptrs[i] = &in[i];
    }
    ExecOptions opt = {.input_values = ptrs};
    if ((rc = exec_plan(g, shapes, &opt, &p)) < 0 || (rc = exec_run(p, ptrs)) < 0)
        goto done;
    cJSON *arr = cJSON_AddArrayToObject(o->obj, "outputs");
    for (int k = 0; k < g->n_outputs; k++)
        summarize_output(o, arr, g->values[g->outputs[k]].name, exec_output(p, k));
    if (output)
        rc = write_run_outputs(g, p, output, force, o);
done:
    exec_free(p);
    for (int i = 0; i < n_in; i++)
        tensor_done(&in[i]);
    return rc;
}
