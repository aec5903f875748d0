/* Criterion plugins: the example plugin (built by make as
 * $(BUILD)/plugins/example_plugin.so) loads, registers and scores the
 * sample CNN exactly like a direct computation from the weights; plugins
 * built for another ABI version, libraries that are not plugins, missing
 * files and taken names are refused naming the file; a data-driven
 * plugin receives the act statistics and its errors are reported. */
#include "commands/commands.h"
#include "core/data.h"
#include "core/depgraph.h"
#include "core/error.h"
#include "core/importance.h"
#include "core/plugin.h"
#include "core/util.h"
#include "core/workspace.h"

#include <libgen.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#define SAMPLE "samples/fmnist-cnn.onnx"

/* $(BUILD)/plugins/NAME, found from this binary at $(BUILD)/tests/. */
static char *plugin_path(const char *name)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        fail_msg("cannot find this test binary");
    exe[n] = '\0';
    char *build = dirname(dirname(exe));
    return xasprintf("%s/plugins/%s", build, name);
}

static Workspace *sample_workspace(void)
{
    Workspace *ws = workspace_new();
    if (ws_load_model(ws, SAMPLE) < 0)
        fail_msg("%s: %s (tests run from the repository root)", SAMPLE, sh_errmsg());
    return ws;
}

static const Tensor *weight(const Graph *g, const char *name)
{
    int v = graph_find_value(g, name);
    if (v < 0 || !g->values[v].data)
        fail_msg("no initializer %s", name);
    return g->values[v].data;
}

/* max |w| over w[u, ...] (axis 0) or w[:, u, ...] (axis 1). */
static double max_abs_slice(const Tensor *w, int axis, int64_t u)
{
    int64_t rows = w->shape.d[0], cols = w->numel / rows, inner = w->shape.rank > 1 ? cols / w->shape.d[1] : 1;
    double best = 0;
    for (int64_t i = 0; i < w->numel; i++) {
        int64_t idx = axis == 0 ? i / cols : i % cols / inner;
        if (idx == u)
            best = fmax(best, fabs(tensor_f32(w)[i]));
    }
    return best;
}

/* Loads the example plugin once for the whole run (a plugin stays loaded). */
static const Criterion *example(void)
{
    const Criterion *c = criterion_find("l1max");
    if (c)
        return c;
    char *path = plugin_path("example_plugin.so");
    if (plugin_load(path, &c) < 0)
        fail_msg("%s", sh_errmsg());
    free(path);
    return c;
}

static void test_example_plugin_scores_match_direct_max_abs(void **state)
{
    (void)state;
    const Criterion *c = example();
    assert_string_equal(c->name, "l1max");
    assert_false(c->needs_data);
    assert_non_null(strstr(c->origin, "example_plugin.so"));
    Workspace *ws = sample_workspace();
    const DepGraph *dg;
    assert_int_equal(ws_groups(ws, &dg), 0);
    ScoreOptions opt = score_options_default();
    double **s;
    if (importance_score(ws->model, dg, c, &opt, &s) < 0)
        fail_msg("%s", sh_errmsg());
    /* conv5's unit u: its filter, BN gamma and beta (not the running
     * statistics), conv9's input slice */
    const Group *grp = depgraph_find(dg, "conv5");
    assert_non_null(grp);
    const Graph *g = ws->model;
    double worst = 0;
    for (int u = 0; u < grp->n_units; u++) {
        double want = fmax(fmax(max_abs_slice(weight(g, "conv5.weight"), 0, u),
                                fabs(tensor_f32(weight(g, "bn6.weight"))[u])),
                           fmax(fabs(tensor_f32(weight(g, "bn6.bias"))[u]), max_abs_slice(weight(g, "conv9.weight"), 1, u)));
        worst = fmax(worst, fabs(s[grp->id][u] - want));
        assert_true(s[grp->id][u] == want);
    }
    /* conv12's unit u reaches fc17 through GlobalAveragePool and Flatten: fc17.weight[:, u] */
    grp = depgraph_find(dg, "conv12");
    for (int u = 0; u < grp->n_units; u++) {
        double want = fmax(fmax(max_abs_slice(weight(g, "conv12.weight"), 0, u),
                                fabs(tensor_f32(weight(g, "bn13.weight"))[u])),
                           fmax(fabs(tensor_f32(weight(g, "bn13.bias"))[u]), max_abs_slice(weight(g, "fc17.weight"), 1, u)));
        worst = fmax(worst, fabs(s[grp->id][u] - want));
        assert_true(s[grp->id][u] == want);
    }
    printf("l1max plugin vs direct max |w|: max abs diff %.3g\n", worst);
    assert_null(s[depgraph_find(dg, "fc17")->id]); /* blocked: not shown to the plugin */
    scores_free(s, dg->n_groups);
    workspace_free(ws);
}

static void test_wrong_abi_plugin_is_refused_naming_both_versions(void **state)
{
    (void)state;
    char *path = plugin_path("wrong_abi_plugin.so");
    int before = criterion_count();
    assert_int_equal(plugin_load(path, NULL), SH_E_UNSUPPORTED);
    printf("refused: %s\n", sh_errmsg());
    assert_non_null(strstr(sh_errmsg(), path));
    assert_non_null(strstr(sh_errmsg(), "ABI version 999"));
    assert_non_null(strstr(sh_errmsg(), "supports version 1"));
    assert_int_equal(criterion_count(), before);
    assert_null(criterion_find("future"));
    free(path);
}

static void test_missing_files_and_non_plugins_are_refused(void **state)
{
    (void)state;
    assert_int_equal(plugin_load("/nonexistent/plugin.so", NULL), SH_E_IO);
    assert_non_null(strstr(sh_errmsg(), "/nonexistent/plugin.so"));
    const char *libm = "/lib/x86_64-linux-gnu/libm.so.6"; /* a real library without shears_plugin_info */
    if (access(libm, R_OK) == 0) {
        assert_int_equal(plugin_load(libm, NULL), SH_E_FORMAT);
        printf("refused: %s\n", sh_errmsg());
        assert_non_null(strstr(sh_errmsg(), "does not export shears_plugin_info"));
    }
}

static void test_loading_a_name_twice_is_refused(void **state)
{
    (void)state;
    example();
    char *path = plugin_path("example_plugin.so");
    int before = criterion_count();
    assert_int_equal(plugin_load(path, NULL), SH_E_ARG);
    assert_non_null(strstr(sh_errmsg(), "'l1max' is already registered"));
    assert_int_equal(criterion_count(), before);
    free(path);
}

/* A small random dataset shaped like Fashion-MNIST. */
static void fake_fashion(Dataset *ds, int64_t n)
{
    Shape xs = shape_of(4, n, (int64_t)1, (int64_t)28, (int64_t)28), ys = shape_of(1, n);
    Tensor x, y;
    assert_int_equal(tensor_alloc(&x, SH_F32, &xs), 0);
    assert_int_equal(tensor_alloc(&y, SH_I64, &ys), 0);
    Xoshiro r;
    xoshiro_seed(&r, 9);
    for (int64_t i = 0; i < x.numel; i++)
        tensor_f32(&x)[i] = xoshiro_uniform(&r);
    for (int64_t i = 0; i < n; i++)
        tensor_i64(&y)[i] = i % 10;
    if (dataset_from_tensors(ds, &x, &y, 10, NULL, "x", "y") < 0)
        fail_msg("%s", sh_errmsg());
}

static void test_data_plugin_gets_act_statistics_and_its_errors_are_reported(void **state)
{
    (void)state;
    char *path = plugin_path("act_plugin.so");
    const Criterion *c;
    if (!criterion_find("actcopy") && plugin_load(path, NULL) < 0)
        fail_msg("%s", sh_errmsg());
    c = criterion_find("actcopy");
    assert_true(c->needs_data);
    Workspace *ws = sample_workspace();
    const DepGraph *dg;
    assert_int_equal(ws_groups(ws, &dg), 0);
    Dataset ds;
    fake_fashion(&ds, 64);
    DataSubset set;
    data_subset_all(&set, &ds);
    ScoreOptions opt = score_options_default();
    double **s, **act;
    assert_int_equal(importance_score(ws->model, dg, c, &opt, &s), SH_E_STATE); /* no data */
    opt.calib = &set;
    opt.batches = 2;
    opt.batch = 32;
    if (importance_score(ws->model, dg, c, &opt, &s) < 0 ||
        importance_score(ws->model, dg, criterion_find("act"), &opt, &act) < 0)
        fail_msg("%s", sh_errmsg());
    for (int gi = 0; gi < dg->n_groups; gi++)
        for (int u = 0; s[gi] && u < dg->groups[gi].n_units; u++)
            assert_true(s[gi][u] == act[gi][u]);
    scores_free(s, dg->n_groups);
    scores_free(act, dg->n_groups);
    opt.seed = 13;
    assert_int_equal(importance_score(ws->model, dg, c, &opt, &s), SH_E_STATE);
    printf("reported: %s\n", sh_errmsg());
    assert_non_null(strstr(sh_errmsg(), "seed 13 is unlucky"));
    assert_non_null(strstr(sh_errmsg(), "act_plugin.so"));
    data_subset_done(&set);
    dataset_done(&ds);
    workspace_free(ws);
    free(path);
}

/* ---- the commands ---- */

typedef struct {
    char *buf;
    size_t n;
} Capture;

static void capture_sink(void *ctx, const char *text)
{
    Capture *c = ctx;
    size_t k = strlen(text);
    c->buf = xrealloc(c->buf, c->n + k + 1);
    memcpy(c->buf + c->n, text, k + 1);
    c->n += k;
}

static int run_line(Workspace *ws, const char *line, Capture *cap)
{
    CommandList l;
    if (parse_commands(line, &l) != 0 || l.n != 1)
        fail_msg("<<%s>> is not one command", line);
    free(cap->buf);
    cap->buf = NULL;
    cap->n = 0;
    Out o = {.json = false, .sink = capture_sink, .sink_ctx = cap, .obj = cJSON_CreateObject()};
    int rc = command_run(ws, &l.cmds[0], &o);
    cJSON_Delete(o.obj);
    command_list_done(&l);
    return rc;
}

static void test_plugin_commands_load_list_score_and_mark(void **state)
{
    (void)state;
    Workspace *ws = sample_workspace();
    Capture cap = {0};
    char *path = plugin_path("wrong_abi_plugin.so"), *line = xasprintf("plugin load %s", path);
    assert_int_equal(run_line(ws, line, &cap), SH_E_UNSUPPORTED);
    assert_int_equal(run_line(ws, "plugin unload x.so", &cap), SH_E_ARG);
    example(); /* registered once per process; the command then refuses the name */
    assert_int_equal(run_line(ws, "criteria", &cap), 0);
    assert_non_null(strstr(cap.buf, "l1max"));
    assert_non_null(strstr(cap.buf, "[plugin "));
    if (run_line(ws, "score l1max norm=max", &cap) != 0)
        fail_msg("%s", sh_errmsg());
    assert_non_null(strstr(cap.buf, "scored 4 groups with l1max"));
    assert_int_equal(run_line(ws, "units conv5", &cap), 0);
    assert_non_null(strstr(cap.buf, "l1max"));
    assert_int_equal(run_line(ws, "mark conv5 lowest=3", &cap), 0);
    assert_non_null(strstr(cap.buf, "3 of 64 units marked"));
    free(line);
    free(path);
    free(cap.buf);
    workspace_free(ws);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_plugin_scores_match_direct_max_abs),
        cmocka_unit_test(test_wrong_abi_plugin_is_refused_naming_both_versions),
        cmocka_unit_test(test_missing_files_and_non_plugins_are_refused),
        cmocka_unit_test(test_loading_a_name_twice_is_refused),
        cmocka_unit_test(test_data_plugin_gets_act_statistics_and_its_errors_are_reported),
        cmocka_unit_test(test_plugin_commands_load_list_score_and_mark),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
