#include "workspace.h"

#include "error.h"
#include "exec.h"
#include "onnx.h"
#include "threads.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static void drop_history(Graph **stack, Plan *plans, int *n);

Workspace *workspace_new(void)
{
    Workspace *ws = xcalloc(1, sizeof *ws);
    ws->threads = 1;
    ws->batch = 64;
    plan_init(&ws->plan, 0);
    return ws;
}

void workspace_free(Workspace *ws)
{
    if (!ws)
        return;
    graph_free(ws->model);
    ws->model = NULL;
    graph_free(ws->original);
    free(ws->model_path);
    data_subset_done(&ws->fit);
    data_subset_done(&ws->val);
    data_subset_done(&ws->test_all);
    if (ws->has_train)
        dataset_done(&ws->train);
    if (ws->has_test)
        dataset_done(&ws->test);
    free(ws->data_desc);
    ws_model_changed(ws);
    plan_done(&ws->plan);
    drop_history(ws->undo, ws->undo_plan, &ws->n_undo);
    drop_history(ws->redo, ws->redo_plan, &ws->n_redo);
    opt_state_done(&ws->opt);
    sparsity_done(&ws->sparse);
    sparsity_done(&ws->sparse);
    free(ws->undo);
    free(ws->redo);
    free(ws->undo_plan);
    free(ws->redo_plan);
    free(ws);
}

int graph_check_finite(const Graph *g, const char *origin)
{
    for (int v = 0; v < g->n_values; v++) {
        const Value *val = &g->values[v];
        if (!(val->flags & VAL_CONST) || !val->data)
            continue;
        int64_t bad = tensor_find_nonfinite(val->data);
        if (bad >= 0)
            return sh_fail(SH_E_NUMERIC, "%s: initializer '%s' holds %g at element %lld", origin,
                           val->name, (double)tensor_f32(val->data)[bad], (long long)bad);
    }
    return 0;
}

int ws_load_model(Workspace *ws, const char *path)
{
    Graph *g = NULL;
    int rc = onnx_load(path, &g);
    if (rc == 0 && (rc = graph_check_finite(g, path)) == 0 && (rc = graph_prepare(g)) < 0)
        rc = sh_fail_prefix(rc, "%s", path);
    if (rc < 0) {
        graph_free(g);
        return rc;
    }
    return ws_set_model(ws, g, path);
}

int ws_set_model(Workspace *ws, Graph *g, const char *path)
{
    Graph *orig = graph_clone(g);
    if (!orig) {
        graph_free(g);
        return sh_fail(SH_E_NOMEM, "out of memory copying the model");
    }
    graph_free(ws->model);
    graph_free(ws->original);
    free(ws->model_path);
    drop_history(ws->undo, ws->undo_plan, &ws->n_undo); /* a new model starts a new history */
    drop_history(ws->redo, ws->redo_plan, &ws->n_redo);
    opt_state_done(&ws->opt);
    sparsity_done(&ws->sparse);
    ws->model = g;
    ws->original = orig;
    ws->model_path = xstrdup(path);
    ws->dirty = false;
    ws_model_changed(ws);
    return 0;
}

int ws_set_data(Workspace *ws, Dataset *train, Dataset *test, double val_fraction, uint64_t seed,
                const char *desc)
{
    DataSubset fit = {0}, val = {0};
    if (train) {
        int rc = data_split(&fit, &val, train, val_fraction, seed);
        if (rc < 0)
            return rc;
    }
    data_subset_done(&ws->fit);
    data_subset_done(&ws->val);
    data_subset_done(&ws->test_all);
    if (ws->has_train)
        dataset_done(&ws->train);
    if (ws->has_test)
        dataset_done(&ws->test);
    ws->has_train = train != NULL;
    ws->has_test = test != NULL;
    if (train) {
        ws->train = *train;
        memset(train, 0, sizeof *train);
        fit.ds = val.ds = &ws->train; /* the subsets follow the moved dataset */
    }
    if (test) {
        ws->test = *test;
        memset(test, 0, sizeof *test);
        data_subset_all(&ws->test_all, &ws->test);
    }
    ws->fit = fit;
    ws->val = val;
    ws->val_fraction = val_fraction;
    ws->split_seed = seed;
    free(ws->data_desc);
    ws->data_desc = xstrdup(desc);
    return 0;
}

int ws_subset(const Workspace *ws, const char *name, const DataSubset **out)
{
    if (strcmp(name, "test") == 0) {
        if (!ws->has_test)
            return sh_fail(SH_E_STATE, "no test split loaded (use: data fashion-mnist split=test)");
        *out = &ws->test_all;
        return 0;
    }
    if (!ws->has_train)
        return sh_fail(SH_E_STATE, "no training split loaded (use: data fashion-mnist split=train)");
    if (strcmp(name, "val") == 0) {
        if (ws->val.n == 0)
            return sh_fail(SH_E_STATE, "no validation part (use: data ... val=0.1)");
        *out = &ws->val;
        return 0;
    }
    *out = &ws->fit;
    return 0;
}

int ws_require_model(const Workspace *ws)
{
    if (!ws->model)
        return sh_fail(SH_E_STATE, "no model loaded (use: load FILE.onnx)");
    return 0;
}

int ws_require_data(const Workspace *ws)
{
    if (!ws->has_train && !ws->has_test)
        return sh_fail(SH_E_STATE, "no data loaded (use: data fashion-mnist split=test)");
    return 0;
}

/* ---- pruning state ---- */

void ws_model_changed(Workspace *ws)
{
    if (ws->scores && ws->dg)
        for (int i = 0; i < ws->dg->n_groups; i++)
            free(ws->scores[i]);
    free(ws->scores);
    ws->scores = NULL;
    free(ws->score_name);
    ws->score_name = NULL;
    depgraph_free(ws->dg);
    ws->dg = NULL;
    plan_done(&ws->plan);
    plan_init(&ws->plan, ws->model ? graph_content_hash(ws->model) : 0);
}

int ws_groups(Workspace *ws, const DepGraph **out)
{
    int rc = ws_require_model(ws);
    if (rc < 0)
        return rc;
    if (!ws->dg && (rc = depgraph_build(ws->model, &ws->dg)) < 0)
        return rc;
    *out = ws->dg;
    return 0;
}

static void push(Graph ***stack, Plan **plans, int *n, Graph *g, Plan *plan)
{
    *stack = xrealloc(*stack, sizeof **stack * (size_t)(*n + 1));
    *plans = xrealloc(*plans, sizeof **plans * (size_t)(*n + 1));
    (*stack)[*n] = g;
    (*plans)[*n] = *plan; /* taken */
    (*n)++;
}

static void drop_history(Graph **stack, Plan *plans, int *n)
{
    for (int i = 0; i < *n; i++) {
        graph_free(stack[i]);
        plan_done(&plans[i]);
    }
    *n = 0;
}

/* Makes g current with plan (taken), forgetting groups and scores. */
/* The optimizer state belongs to the model it was trained on: stepping
 * to another model in the history drops it, so a later fine-tune starts
 * fresh (apply slices it instead, keeping it for the pruned model). */
static void become(Workspace *ws, Graph *g, Plan *plan)
{
    ws->model = g;
    ws->dirty = true;
    ws_model_changed(ws);
    plan_done(&ws->plan);
    ws->plan = *plan;
}

void ws_replace_model(Workspace *ws, Graph *g)
{
    Plan empty;
    plan_init(&empty, 0);
    push(&ws->undo, &ws->undo_plan, &ws->n_undo, ws->model, &ws->plan);
    drop_history(ws->redo, ws->redo_plan, &ws->n_redo);
    plan_init(&ws->plan, 0);
    become(ws, g, &empty);
}

int ws_undo(Workspace *ws)
{
    if (ws->n_undo == 0)
        return sh_fail(SH_E_STATE, "nothing to undo");
    push(&ws->redo, &ws->redo_plan, &ws->n_redo, ws->model, &ws->plan);
    plan_init(&ws->plan, 0);
    ws->n_undo--;
    opt_state_done(&ws->opt);
    become(ws, ws->undo[ws->n_undo], &ws->undo_plan[ws->n_undo]);
    return 0;
}

int ws_redo(Workspace *ws)
{
    if (ws->n_redo == 0)
        return sh_fail(SH_E_STATE, "nothing to redo");
    push(&ws->undo, &ws->undo_plan, &ws->n_undo, ws->model, &ws->plan);
    plan_init(&ws->plan, 0);
    ws->n_redo--;
    opt_state_done(&ws->opt);
    become(ws, ws->redo[ws->n_redo], &ws->redo_plan[ws->n_redo]);
    return 0;
}
