/* Sensitivity sweeps: exec_rerun_from against full runs; the zeroing
 * sweep against brute force (surgery per point, then evaluate); the
 * surgery path for approximate groups; thread-count independence; CSV and
 * JSON files; budgets; and errors that name the argument. Models are built
 * in code (core/builder JSON) at a few pixels, with random BatchNorm
 * statistics so zeroed channels are not zero by accident. */
#include "commands/commands.h"
#include "core/builder.h"
#include "core/data.h"
#include "core/depgraph.h"
#include "core/error.h"
#include "core/evaluate.h"
#include "core/exec.h"
#include "core/fileio.h"
#include "core/plan.h"
#include "core/sensitivity.h"
#include "core/surgery.h"
#include "core/threads.h"
#include "core/util.h"
#include "tests/support/graphutil.h"
#include "tests/support/testutil.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* A residual CNN: stem, an identity block, a strided block with a 1x1
 * shortcut (residual-stream groups, inner groups and a blocks group). */
static const char *tiny_resnet =
    "{\"name\": \"tiny-resnet\", \"input\": [2, 8, 8], \"seed\": 3, \"layers\": ["
    "{\"type\": \"conv\", \"out\": 8, \"kernel\": 3}, {\"type\": \"bn\"}, {\"type\": \"relu\"},"
    "{\"type\": \"residual\", \"post\": \"relu\", \"body\": ["
    "  {\"type\": \"conv\", \"out\": 8, \"kernel\": 3}, {\"type\": \"bn\"}, {\"type\": \"relu\"},"
    "  {\"type\": \"conv\", \"out\": 8, \"kernel\": 3}, {\"type\": \"bn\"}]},"
    "{\"type\": \"residual\", \"post\": \"relu\", \"body\": ["
    "  {\"type\": \"conv\", \"out\": 12, \"kernel\": 3, \"stride\": 2}, {\"type\": \"bn\"}, {\"type\": \"relu\"},"
    "  {\"type\": \"conv\", \"out\": 12, \"kernel\": 3}, {\"type\": \"bn\"}],"
    " \"shortcut\": [{\"type\": \"conv\", \"out\": 12, \"kernel\": 1, \"stride\": 2, \"pad\": 0}, {\"type\": \"bn\"}]},"
    "{\"type\": \"gap\"}, {\"type\": \"flatten\"}, {\"type\": \"linear\", \"out\": 5}]}";

/* A one-layer ViT: heads and MLP neurons (exact), the residual width
 * (approximate: LayerNorm statistics). */
static const char *tiny_vit =
    "{\"name\": \"tiny-vit\", \"input\": [1, 8, 8], \"seed\": 5, \"layers\": ["
    "{\"type\": \"patch_embed\", \"patch\": 4, \"dim\": 8}, {\"type\": \"cls_token\"}, {\"type\": \"pos_embed\"},"
    "{\"type\": \"transformer\", \"heads\": 2, \"mlp\": 16}, {\"type\": \"layernorm\"},"
    "{\"type\": \"take_cls\"}, {\"type\": \"linear\", \"out\": 5}]}";

#define N_SAMPLES 20
#define N_CLASSES 5

/* ---- helpers ------------------------------------------------------------------ */

/* Random BatchNorm parameters and statistics: a zeroed channel's BN
 * output is then beta - mean * scale, not 0, so zeroing must reach it. */
static void randomize_batchnorms(Graph *g, TRng *r)
{
    for (int i = 0; i < g->n_nodes; i++) {
        const Node *n = &g->nodes[i];
        if (strcmp(n->op_type, "BatchNormalization") != 0)
            continue;
        for (int k = 1; k < 5 && k < n->n_in; k++) {
            Tensor *t = g->values[n->in[k]].data;
            for (int64_t j = 0; j < t->numel; j++)
                tensor_f32(t)[j] = k == 1 || k == 4 ? trng_uniform(r, 0.5f, 1.5f) : trng_uniform(r, -0.5f, 0.5f);
        }
    }
}

static Graph *build_model(const char *json, TRng *r)
{
    Graph *g = NULL;
    if (model_build_json(json, "test", &g) != 0)
        fail_msg("build: %s", sh_errmsg());
    randomize_batchnorms(g, r);
    return g;
}

/* N_SAMPLES random images of the model's input shape, random labels. */
static void make_dataset(const Graph *g, TRng *r, Dataset *ds)
{
    Shape s;
    assert_int_equal(graph_input_shape(g, 0, N_SAMPLES, &s), 0);
    Tensor *x = t_rand(r, &s, -1, 1);
    Shape ys = shape_of(1, (int64_t)N_SAMPLES);
    Tensor *y = tensor_new(SH_I64, &ys);
    for (int i = 0; i < N_SAMPLES; i++)
        tensor_i64(y)[i] = trng_int(r, 0, N_CLASSES - 1);
    if (dataset_from_tensors(ds, x, y, N_CLASSES, NULL, "x", "y") != 0)
        fail_msg("dataset: %s", sh_errmsg());
    free(x);
    free(y);
}

/* Random distinct scores for every group that is not blocked. */
static double **random_scores(const DepGraph *dg, TRng *r)
{
    double **sc = xcalloc((size_t)dg->n_groups + 1, sizeof *sc);
    for (int i = 0; i < dg->n_groups; i++) {
        if (dg->groups[i].blocked)
            continue;
        sc[i] = xmalloc(sizeof(double) * (size_t)dg->groups[i].n_units);
        for (int u = 0; u < dg->groups[i].n_units; u++)
            sc[i][u] = trng_uniform(r, 0, 1);
    }
    return sc;
}

static void free_scores(double **sc, int n)
{
    for (int i = 0; i < n; i++)
        free(sc[i]);
    free(sc);
}

/* The documented unit count of a ratio, computed here independently. */
static int expected_removed(double ratio, const Group *grp)
{
    int n = (int)floor(ratio * grp->n_units + 0.5);
    int cap = grp->kind == GROUP_BLOCK ? grp->n_units : grp->n_units - 1;
    return n > cap ? cap : n;
}

/* The k lowest-scoring units of a group (ties by index), by selection. */
static void mark_lowest(Plan *p, const Group *grp, const double *sc, int k)
{
    bool *taken = xcalloc((size_t)grp->n_units + 1, sizeof *taken);
    for (int i = 0; i < k; i++) {
        int best = -1;
        for (int u = 0; u < grp->n_units; u++)
            if (!taken[u] && (best < 0 || sc[u] < sc[best]))
                best = u;
        taken[best] = true;
        assert_int_equal(plan_mark(p, grp, best, true), 0);
    }
    free(taken);
}

static Sensitivity *sweep_ok(const Graph *g, const DepGraph *dg, double **sc, const DataSubset *set,
                             const double *ratios, int n_ratios, int threads)
{
    SensOptions o = {.ratios = ratios, .n_ratios = n_ratios, .batches = 3, .batch = 7, .threads = threads,
                     .criterion = "random", .data = "test"};
    Sensitivity *s = NULL;
    if (sensitivity_run(g, dg, sc, set, &o, &s) != 0)
        fail_msg("sensitivity_run: %s", sh_errmsg());
    return s;
}

/* Every point of s equals surgery + evaluate of the same plan: accuracy
 * exactly, loss to 1e-6. Returns the max loss difference. */
static double check_against_brute_force(const char *label, const Graph *g, const DepGraph *dg, double **sc,
                                        const DataSubset *set, const Sensitivity *s)
{
    DataSubset part = *set;
    part.n = s->samples;
    EvalResult base;
    assert_int_equal(evaluate(g, &part, 7, &base), 0);
    double worst = fabs(base.loss - s->base_loss);
    assert_true(base.accuracy == s->base_accuracy);
    for (int i = 0; i < s->n_curves; i++) {
        const SensCurve *c = &s->curves[i];
        const Group *grp = &dg->groups[c->group_id];
        assert_string_equal(c->group, grp->name);
        assert_true(c->surgery == grp->approximate);
        for (int r = 0; r < s->n_ratios; r++) {
            const SensPoint *pt = &c->points[r];
            assert_int_equal(pt->removed, expected_removed(s->ratios[r], grp));
            EvalResult e = base;
            int64_t macs = s->base_macs;
            if (pt->removed > 0) {
                Plan p;
                Graph *pruned;
                SurgeryStats st;
                plan_init(&p, 0);
                mark_lowest(&p, grp, sc[c->group_id], pt->removed);
                if (surgery_apply(g, dg, &p, &pruned, &st) != 0)
                    fail_msg("%s: surgery: %s", label, sh_errmsg());
                assert_int_equal(evaluate(pruned, &part, 7, &e), 0);
                macs = st.macs_after;
                graph_free(pruned);
                plan_done(&p);
            }
            double d = fabs(e.loss - pt->loss);
            if (d > worst)
                worst = d;
            if (d > 1e-6 || e.accuracy != pt->accuracy)
                fail_msg("%s: group %s ratio %g: sweep acc %g loss %.9f, brute force acc %g loss %.9f", label,
                         c->group, s->ratios[r], pt->accuracy, pt->loss, e.accuracy, e.loss);
            assert_int_equal(pt->macs, macs);
        }
    }
    printf("%s: %d groups x %d ratios, max |sweep loss - surgery loss| = %.3g\n", label, s->n_curves, s->n_ratios,
           worst);
    return worst;
}

/* ---- exec_rerun_from ----------------------------------------------------------------- */

typedef struct {
    bool active;
    int node;      /* zero channel `channel` of this node's output 0 */
    int64_t channel;
} ZeroOne;

static void zero_one(void *ctx, const Node *n, Tensor **out, int n_out)
{
    const ZeroOne *z = ctx;
    (void)n_out;
    if (!z->active || n->out[0] != z->node || out[0]->shape.rank < 2)
        return;
    int64_t c = out[0]->shape.d[1], inner = shape_prod(&out[0]->shape, 2, out[0]->shape.rank);
    for (int64_t b = 0; b < out[0]->shape.d[0]; b++)
        memset(tensor_f32(out[0]) + (b * c + z->channel) * inner, 0, sizeof(float) * (size_t)inner);
}

static void test_rerun_from_gives_the_outputs_of_a_full_run(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 11);
    Graph *g = build_model(tiny_resnet, &r);
    Shape s;
    assert_int_equal(graph_input_shape(g, 0, 3, &s), 0);
    Tensor *x = t_rand(&r, &s, -1, 1);
    ZeroOne z = {0};
    ExecOptions keep = {.keep_all = true, .after_node = zero_one, .hook_ctx = &z};
    ExecPlan *p, *fresh;
    assert_int_equal(exec_plan(g, &s, &keep, &p), 0);
    assert_int_equal(exec_run(p, &x), 0);
    Tensor *full = tensor_clone(exec_output(p, 0));
    double worst = 0;
    for (int node = g->n_nodes; node >= 0; node--) { /* unchanged values: the same outputs to the bit */
        assert_int_equal(exec_rerun_from(p, node), 0);
        double d = t_max_diff("rerun", exec_output(p, 0), full);
        worst = d > worst ? d : worst;
    }
    assert_true(worst == 0);
    /* a hook that zeroes a channel of a middle node: rerunning from that
     * node equals a full run with the hook on */
    for (int node = 0; node < g->n_nodes; node++) {
        if (strcmp(g->nodes[node].op_type, "Relu") != 0)
            continue;
        z = (ZeroOne){.active = true, .node = g->nodes[node].out[0], .channel = 1};
        assert_int_equal(exec_rerun_from(p, node), 0);
        assert_int_equal(exec_plan(g, &s, &keep, &fresh), 0);
        assert_int_equal(exec_run(fresh, &x), 0);
        double d = t_max_diff("rerun with a zeroed channel vs full run", exec_output(p, 0), exec_output(fresh, 0));
        assert_true(d == 0);
        assert_true(t_max_diff("zeroing changes the output", exec_output(p, 0), full) > 0);
        exec_free(fresh);
        z.active = false;
        assert_int_equal(exec_rerun_from(p, node), 0); /* back to the unpruned outputs */
        assert_true(t_max_diff("restored", exec_output(p, 0), full) == 0);
    }
    exec_free(p);
    tensor_free(full);
    tensor_free(x);
    graph_free(g);
}

static void test_rerun_from_refuses_plans_without_keep_all_or_a_run(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 12);
    Graph *g = build_model(tiny_resnet, &r);
    Shape s;
    assert_int_equal(graph_input_shape(g, 0, 2, &s), 0);
    ExecPlan *p;
    ExecOptions keep = {.keep_all = true};
    assert_int_equal(exec_plan(g, &s, NULL, &p), 0);
    assert_int_equal(exec_rerun_from(p, 0), SH_E_STATE);
    assert_non_null(strstr(sh_errmsg(), "keep_all"));
    exec_free(p);
    assert_int_equal(exec_plan(g, &s, &keep, &p), 0);
    assert_int_equal(exec_rerun_from(p, 0), SH_E_STATE);
    assert_non_null(strstr(sh_errmsg(), "exec_run first"));
    Tensor *x = t_rand(&r, &s, -1, 1);
    assert_int_equal(exec_run(p, &x), 0);
    assert_int_equal(exec_rerun_from(p, g->n_nodes + 1), SH_E_ARG);
    exec_free(p);
    tensor_free(x);
    graph_free(g);
}

/* ---- the sweep ------------------------------------------------------------------------- */

static const double test_ratios[] = {0.25, 0.5, 0.75};

static void test_sweep_of_exact_groups_equals_surgery_then_evaluate(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 21);
    Graph *g = build_model(tiny_resnet, &r);
    Dataset ds;
    DataSubset set;
    DepGraph *dg;
    make_dataset(g, &r, &ds);
    data_subset_all(&set, &ds);
    assert_int_equal(depgraph_build(g, &dg), 0);
    double **sc = random_scores(dg, &r);
    Sensitivity *s = sweep_ok(g, dg, sc, &set, test_ratios, 3, 1);
    int exact = 0, blocks = 0;
    for (int i = 0; i < s->n_curves; i++) {
        exact += !s->curves[i].surgery;
        blocks += s->curves[i].kind == GROUP_BLOCK;
    }
    assert_true(exact >= 5 && blocks == 1); /* stem stream, 2 inner, strided stream, strided inner, blocks */
    assert_int_equal(s->samples, N_SAMPLES); /* 7 + 7 + 6: the partial batch counts */
    assert_int_equal(s->full_runs, 3);
    assert_int_equal(s->surgery_points, 0);
    double worst = check_against_brute_force("tiny resnet", g, dg, sc, &set, s);
    assert_true(worst <= 1e-6);
    sensitivity_free(s);
    free_scores(sc, dg->n_groups);
    depgraph_free(dg);
    data_subset_done(&set);
    dataset_done(&ds);
    graph_free(g);
}

static void test_approximate_groups_go_through_surgery(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 22);
    Graph *g = build_model(tiny_vit, &r);
    Dataset ds;
    DataSubset set;
    DepGraph *dg;
    make_dataset(g, &r, &ds);
    data_subset_all(&set, &ds);
    assert_int_equal(depgraph_build(g, &dg), 0);
    double **sc = random_scores(dg, &r);
    Sensitivity *s = sweep_ok(g, dg, sc, &set, test_ratios, 3, 1);
    int approx = 0, heads = 0;
    for (int i = 0; i < s->n_curves; i++) {
        approx += s->curves[i].surgery;
        heads += s->curves[i].kind == GROUP_HEADS && !s->curves[i].surgery;
    }
    assert_int_equal(approx, 1); /* the residual width, normalized by LayerNorm */
    assert_int_equal(heads, 1);  /* heads are exact: zeroed Q, K, V give a zero head */
    assert_true(s->surgery_points >= 2);
    double worst = check_against_brute_force("tiny vit", g, dg, sc, &set, s);
    assert_true(worst <= 1e-6);
    sensitivity_free(s);
    free_scores(sc, dg->n_groups);
    depgraph_free(dg);
    data_subset_done(&set);
    dataset_done(&ds);
    graph_free(g);
}

static void test_sweep_results_do_not_depend_on_the_thread_count(void **state)
{
    (void)state;
    static const char *models[] = {NULL, NULL};
    models[0] = tiny_resnet;
    models[1] = tiny_vit;
    for (int m = 0; m < 2; m++) {
        TRng r;
        trng_seed(&r, 23);
        Graph *g = build_model(models[m], &r);
        Dataset ds;
        DataSubset set;
        DepGraph *dg;
        make_dataset(g, &r, &ds);
        data_subset_all(&set, &ds);
        assert_int_equal(depgraph_build(g, &dg), 0);
        double **sc = random_scores(dg, &r);
        Sensitivity *one = sweep_ok(g, dg, sc, &set, test_ratios, 3, 1);
        Sensitivity *two = sweep_ok(g, dg, sc, &set, test_ratios, 3, 2);
        assert_int_equal(two->threads, 2);
        /* Workers sum batches in batch order, so only the kernels' own
         * threading (OpenBLAS splits differently) may move the last bits. */
        assert_true(fabs(one->base_loss - two->base_loss) <= 1e-7 * fabs(one->base_loss));
        for (int i = 0; i < one->n_curves; i++)
            for (int k = 0; k < 3; k++) {
                double l1 = one->curves[i].points[k].loss, l2 = two->curves[i].points[k].loss;
                assert_true(fabs(l1 - l2) <= 1e-7 * fabs(l1));
                assert_true(one->curves[i].points[k].accuracy == two->curves[i].points[k].accuracy);
            }
        sensitivity_free(one);
        sensitivity_free(two);
        free_scores(sc, dg->n_groups);
        depgraph_free(dg);
        data_subset_done(&set);
        dataset_done(&ds);
        graph_free(g);
    }
    sh_set_threads(1);
}

typedef struct {
    int calls;
    int64_t last_samples;
    int last_curves;
    double last_loss_sum;
    bool shrank;
} Partials;

static void on_partial(void *ctx, const Sensitivity *so_far)
{
    Partials *p = ctx;
    p->calls++;
    if (so_far->samples < p->last_samples || so_far->n_curves < p->last_curves)
        p->shrank = true;
    p->last_samples = so_far->samples;
    p->last_curves = so_far->n_curves;
    p->last_loss_sum = 0;
    for (int i = 0; i < so_far->n_curves; i++)
        for (int k = 0; k < so_far->n_ratios; k++) {
            assert_true(isfinite(so_far->curves[i].points[k].loss) && so_far->curves[i].points[k].loss > 0);
            p->last_loss_sum += so_far->curves[i].points[k].loss;
        }
}

/* Partial results grow (more samples, then the surgery curves) and end
 * with the final numbers. */
static void test_partial_results_grow_to_the_final_curves(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 25);
    Graph *g = build_model(tiny_vit, &r);
    Dataset ds;
    DataSubset set;
    DepGraph *dg;
    make_dataset(g, &r, &ds);
    data_subset_all(&set, &ds);
    assert_int_equal(depgraph_build(g, &dg), 0);
    double **sc = random_scores(dg, &r);
    Partials seen = {0};
    SensOptions o = {.ratios = test_ratios, .n_ratios = 3, .batches = 3, .batch = 7, .threads = 1,
                     .partial = on_partial, .progress_ctx = &seen};
    Sensitivity *s = NULL;
    assert_int_equal(sensitivity_run(g, dg, sc, &set, &o, &s), 0);
    assert_int_equal(seen.calls, 3 + s->surgery_points); /* a batch each, then a surgery point each */
    assert_false(seen.shrank);
    assert_int_equal(seen.last_samples, s->samples);
    assert_int_equal(seen.last_curves, s->n_curves);
    double sum = 0;
    for (int i = 0; i < s->n_curves; i++)
        for (int k = 0; k < 3; k++)
            sum += s->curves[i].points[k].loss;
    assert_true(sum == seen.last_loss_sum);
    sensitivity_free(s);
    free_scores(sc, dg->n_groups);
    depgraph_free(dg);
    data_subset_done(&set);
    dataset_done(&ds);
    graph_free(g);
}

static void test_sweep_of_listed_groups_only_and_cancel(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 24);
    Graph *g = build_model(tiny_resnet, &r);
    Dataset ds;
    DataSubset set;
    DepGraph *dg;
    make_dataset(g, &r, &ds);
    data_subset_all(&set, &ds);
    assert_int_equal(depgraph_build(g, &dg), 0);
    double **sc = random_scores(dg, &r);
    int ids[] = {1};
    SensOptions o = {.ratios = test_ratios, .n_ratios = 3, .groups = ids, .n_groups = 1, .batches = 2, .batch = 4,
                     .threads = 1};
    Sensitivity *s = NULL;
    assert_int_equal(sensitivity_run(g, dg, sc, &set, &o, &s), 0);
    assert_int_equal(s->n_curves, 1);
    assert_int_equal(s->curves[0].group_id, 1);
    assert_int_equal(s->samples, 8); /* batches x batch of the 20 */
    sensitivity_free(s);
    volatile sig_atomic_t cancel = 1;
    o.cancel = &cancel;
    assert_int_equal(sensitivity_run(g, dg, sc, &set, &o, &s), SH_E_CANCELLED);
    assert_null(s);
    free_scores(sc, dg->n_groups);
    depgraph_free(dg);
    data_subset_done(&set);
    dataset_done(&ds);
    graph_free(g);
}

/* ---- files --------------------------------------------------------------------------- */

static void test_csv_and_json_are_well_formed_and_complete(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 31);
    Graph *g = build_model(tiny_resnet, &r);
    Dataset ds;
    DataSubset set;
    DepGraph *dg;
    make_dataset(g, &r, &ds);
    data_subset_all(&set, &ds);
    assert_int_equal(depgraph_build(g, &dg), 0);
    double **sc = random_scores(dg, &r);
    Sensitivity *s = sweep_ok(g, dg, sc, &set, test_ratios, 3, 1);
    char *dir = tg_mkdtemp(), *csv = tg_path(dir, "s.csv"), *json = tg_path(dir, "s.json");
    assert_int_equal(sensitivity_write_csv(s, csv, false), 0);
    assert_int_equal(sensitivity_write_json(s, json, false), 0);
    assert_int_equal(sensitivity_write_csv(s, csv, false), SH_E_IO); /* no overwrite unless asked */
    assert_int_equal(sensitivity_write_json(s, json, false), SH_E_IO);
    assert_int_equal(sensitivity_write_json(s, json, true), 0);

    unsigned char *text;
    size_t n;
    assert_int_equal(read_file(json, &text, &n, 1 << 20), 0);
    cJSON *root = cJSON_Parse((const char *)text);
    assert_non_null(root);
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(root, "groups");
    assert_int_equal(cJSON_GetArraySize(groups), s->n_curves);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "ratios")), 3);
    const cJSON *base = cJSON_GetObjectItemCaseSensitive(root, "baseline");
    assert_true(cJSON_GetObjectItemCaseSensitive(base, "loss")->valuedouble == s->base_loss);
    assert_int_equal((int)cJSON_GetObjectItemCaseSensitive(root, "samples")->valuedouble, N_SAMPLES);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, groups) {
        const SensCurve *c = &s->curves[i++];
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(e, "group")->valuestring, c->group);
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(e, "path")->valuestring, "zeroing");
        const cJSON *pts = cJSON_GetObjectItemCaseSensitive(e, "points");
        assert_int_equal(cJSON_GetArraySize(pts), 3);
        for (int k = 0; k < 3; k++) {
            const cJSON *pt = cJSON_GetArrayItem(pts, k);
            assert_true(cJSON_GetObjectItemCaseSensitive(pt, "accuracy")->valuedouble == c->points[k].accuracy);
            assert_true(cJSON_GetObjectItemCaseSensitive(pt, "loss")->valuedouble == c->points[k].loss);
            assert_int_equal((int)cJSON_GetObjectItemCaseSensitive(pt, "removed")->valuedouble, c->points[k].removed);
            assert_true(cJSON_GetObjectItemCaseSensitive(pt, "ratio")->valuedouble == test_ratios[k]);
            assert_true(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(pt, "macs")));
        }
    }
    cJSON_Delete(root);
    free(text);

    assert_int_equal(read_file(csv, &text, &n, 1 << 20), 0);
    int lines = 0;
    char *save = NULL;
    for (char *line = strtok_r((char *)text, "\n", &save); line; line = strtok_r(NULL, "\n", &save), lines++) {
        int fields = 1;
        for (char *p = line; *p; p++)
            fields += *p == ',';
        assert_int_equal(fields, 10);
        if (lines == 0)
            assert_string_equal(line, "group,id,kind,path,units,ratio,removed,accuracy,loss,macs");
        else if (lines == 1)
            assert_true(strncmp(line, "(baseline),", 11) == 0);
        else {
            const SensCurve *c = &s->curves[(lines - 2) / 3];
            const SensPoint *pt = &c->points[(lines - 2) % 3];
            char group[64];
            int id, units, removed;
            double ratio, acc, loss;
            assert_int_equal(sscanf(line, "%63[^,],%d,%*[^,],%*[^,],%d,%lf,%d,%lf,%lf", group, &id, &units, &ratio,
                                    &removed, &acc, &loss),
                             7);
            assert_string_equal(group, c->group);
            assert_int_equal(removed, pt->removed);
            assert_true(fabs(acc - pt->accuracy) < 1e-6 && fabs(loss - pt->loss) < 1e-6);
        }
    }
    assert_int_equal(lines, 2 + 3 * s->n_curves);
    free(text);
    tg_rmdir(dir);
    free(dir);
    free(csv);
    free(json);
    sensitivity_free(s);
    free_scores(sc, dg->n_groups);
    depgraph_free(dg);
    data_subset_done(&set);
    dataset_done(&ds);
    graph_free(g);
}

/* ---- budgets --------------------------------------------------------------------------- */

static void test_budget_picks_the_largest_ratio_within_the_drop(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 41);
    Graph *g = build_model(tiny_resnet, &r);
    DepGraph *dg;
    assert_int_equal(depgraph_build(g, &dg), 0);
    double ratios[3] = {0.25, 0.5, 0.75};
    /* baseline 90%: drops (points) of three curves */
    double acc[3][3] = {
        {0.899, 0.895, 0.80}, /* 0.1, 0.5 (exactly the budget), 10: picks 0.5 */
        {0.88, 0.898, 0.85},  /* 2, 0.2, 5: noisy, the measured 0.5 qualifies */
        {0.70, 0.60, 0.50},   /* nothing qualifies */
    };
    Sensitivity s = {.ratios = ratios, .n_ratios = 3, .base_accuracy = 0.9, .base_loss = 1.0, .n_curves = 3};
    SensCurve curves[3];
    SensPoint points[3][3];
    int orders[3][16];
    int gi = 0;
    for (int c = 0; c < 3; c++) {
        while (dg->groups[gi].blocked || dg->groups[gi].kind == GROUP_BLOCK)
            gi++;
        const Group *grp = &dg->groups[gi++];
        for (int u = 0; u < grp->n_units; u++)
            orders[c][u] = grp->n_units - 1 - u; /* the last units are the least important */
        curves[c] = (SensCurve){.group = grp->name, .group_id = grp->id, .n_units = grp->n_units,
                                .order = orders[c], .points = points[c]};
        for (int k = 0; k < 3; k++)
            points[c][k] = (SensPoint){.ratio = ratios[k], .removed = expected_removed(ratios[k], grp),
                                       .accuracy = acc[c][k], .loss = 1.0 + k};
    }
    s.curves = curves;
    int chosen[3];
    sensitivity_choose(&s, SENS_ACCURACY, 0.5, chosen);
    assert_int_equal(chosen[0], 1);
    assert_int_equal(chosen[1], 1);
    assert_int_equal(chosen[2], -1);
    sensitivity_choose(&s, SENS_ACCURACY, 100, chosen);
    assert_int_equal(chosen[0], 2);
    sensitivity_choose(&s, SENS_LOSS, 1.0, chosen); /* loss rises by 0, 1, 2 */
    assert_int_equal(chosen[0], 1);

    sensitivity_choose(&s, SENS_ACCURACY, 0.5, chosen);
    Plan p;
    plan_init(&p, 0);
    assert_int_equal(plan_mark(&p, &dg->groups[curves[2].group_id], 0, true), 0); /* replaced */
    assert_int_equal(sensitivity_mark(&s, dg, chosen, &p), 0);
    for (int c = 0; c < 3; c++) {
        const Group *grp = &dg->groups[curves[c].group_id];
        int want = chosen[c] < 0 ? 0 : points[c][chosen[c]].removed;
        assert_int_equal(plan_marked_in(&p, grp), want);
        const PlanEntry *e = plan_entry(&p, grp, false);
        for (int k = 0; k < want; k++)
            assert_true(e->marked[grp->n_units - 1 - k]);
    }
    plan_done(&p);
    depgraph_free(dg);
    graph_free(g);
}

/* ---- parsing errors ------------------------------------------------------------------------ */

static void assert_msg_has(const char *phrase)
{
    if (!strstr(sh_errmsg(), phrase))
        fail_msg("message \"%s\" lacks \"%s\"", sh_errmsg(), phrase);
}

static void test_ratio_and_budget_parsing_name_the_argument(void **state)
{
    (void)state;
    double r[SENS_MAX_RATIOS];
    int n;
    assert_int_equal(sens_parse_ratios("0.1,0.2,...,0.9", r, SENS_MAX_RATIOS, &n), 0);
    assert_int_equal(n, 9);
    for (int i = 0; i < 9; i++)
        assert_true(fabs(r[i] - 0.1 * (i + 1)) < 1e-12);
    assert_int_equal(sens_parse_ratios("0.05,0.1,...,0.3,0.5", r, SENS_MAX_RATIOS, &n), 0);
    assert_int_equal(n, 7);
    assert_true(fabs(r[5] - 0.3) < 1e-12 && r[6] == 0.5);
    assert_int_equal(sens_parse_ratios("0.25", r, SENS_MAX_RATIOS, &n), 0);
    assert_int_equal(n, 1);
    static const char *bad[][2] = {
        {"0,0.5", "'0'"}, {"0.5,1", "'1'"}, {"0.5,abc", "'abc'"}, {"0.5,0.2", "ascend"},
        {"...,0.5", "'...'"}, {"0.1,...,0.5", "'...'"}, {"", "ratios"}, {"0.2,0.1,...,0.5", "ascend"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (sens_parse_ratios(bad[i][0], r, SENS_MAX_RATIOS, &n) != SH_E_ARG)
            fail_msg("ratios '%s' accepted", bad[i][0]);
        assert_msg_has("ratios");
        assert_msg_has(bad[i][1]);
    }
    assert_int_equal(sens_parse_ratios("0.001,0.002,...,0.9", r, SENS_MAX_RATIOS, &n), SH_E_ARG);
    assert_msg_has("at most");

    SensMetric m;
    double limit;
    assert_int_equal(sens_parse_budget("acc:0.5", &m, &limit), 0);
    assert_true(m == SENS_ACCURACY && limit == 0.5);
    assert_int_equal(sens_parse_budget("loss:0.05", &m, &limit), 0);
    assert_true(m == SENS_LOSS && limit == 0.05);
    static const char *bad_budgets[] = {"acc0.5", "0.5", "top5:1", "acc:", "acc:-1", "acc:x", "loss:nan"};
    for (size_t i = 0; i < sizeof bad_budgets / sizeof *bad_budgets; i++) {
        if (sens_parse_budget(bad_budgets[i], &m, &limit) != SH_E_ARG)
            fail_msg("budget '%s' accepted", bad_budgets[i]);
        assert_msg_has("budget");
    }
}

/* ---- the commands ------------------------------------------------------------------------ */

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

static int run_cmd(Workspace *ws, const char *line, Capture *cap, cJSON **obj)
{
    CommandList l;
    if (parse_commands(line, &l) != 0 || l.n != 1)
        fail_msg("<<%s>> is not one command", line);
    Capture scratch = {0};
    Out o = {.sink = capture_sink, .sink_ctx = cap ? cap : &scratch, .obj = cJSON_CreateObject()};
    int rc = command_run(ws, &l.cmds[0], &o);
    if (obj)
        *obj = o.obj;
    else
        cJSON_Delete(o.obj);
    free(scratch.buf);
    command_list_done(&l);
    return rc;
}

static void cmd_ok(Workspace *ws, const char *line, Capture *cap, cJSON **obj)
{
    if (run_cmd(ws, line, cap, obj) != 0)
        fail_msg("<<%s>> failed: %s", line, sh_errmsg());
}

static void cmd_fails(Workspace *ws, const char *line, int code, const char *phrase)
{
    int rc = run_cmd(ws, line, NULL, NULL);
    if (rc != code)
        fail_msg("<<%s>> returned %d (%s), want %d", line, rc, sh_errmsg(), code);
    if (phrase && !strstr(sh_errmsg(), phrase))
        fail_msg("<<%s>>: message \"%s\" lacks \"%s\"", line, sh_errmsg(), phrase);
}

/* A workspace with the tiny ResNet, a test split and random scores. */
static Workspace *scored_workspace(TRng *r, bool with_data)
{
    Workspace *ws = workspace_new();
    Graph *g = build_model(tiny_resnet, r);
    if (with_data) {
        Dataset ds;
        make_dataset(g, r, &ds);
        assert_int_equal(ws_set_data(ws, NULL, &ds, 0, 1, "random"), 0);
    }
    assert_int_equal(ws_set_model(ws, g, "tiny"), 0);
    const DepGraph *dg;
    assert_int_equal(ws_groups(ws, &dg), 0);
    ws->scores = random_scores(dg, r);
    ws->score_name = xstrdup("manual");
    return ws;
}

static const char *blocked_group(const Workspace *ws)
{
    for (int i = 0; i < ws->dg->n_groups; i++)
        if (ws->dg->groups[i].blocked)
            return ws->dg->groups[i].name;
    fail_msg("the tiny model has no blocked group");
    return NULL;
}

static void test_sensitivity_command_reports_writes_and_remembers(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 51);
    Workspace *ws = scored_workspace(&r, true);
    char *dir = tg_mkdtemp(), line[1024];
    Capture cap = {0};
    cJSON *obj;
    sensitivity_forget_all();
    snprintf(line, sizeof line, "sensitivity ratios=0.25,0.5,...,0.75 batches=2 batch=5 csv=%s/s.csv json=%s/s.json",
             dir, dir);
    cmd_ok(ws, line, &cap, &obj);
    const char *text = cap.buf;
    assert_non_null(strstr(text, "on 10 test samples (criterion manual)"));
    assert_non_null(strstr(text, "baseline: accuracy"));
    assert_non_null(strstr(text, "zeroing"));
    assert_non_null(strstr(text, "s.csv"));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(obj, "groups")), ws->dg->n_groups - 1);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(obj, "ratios")), 3);
    cJSON_Delete(obj);
    free(cap.buf);
    const Sensitivity *s = sensitivity_recall(graph_content_hash(ws->model), NULL);
    assert_non_null(s);
    assert_non_null(sensitivity_recall(graph_content_hash(ws->model), "manual"));
    assert_null(sensitivity_recall(graph_content_hash(ws->model), "l1"));
    /* the files exist now: refused before any work, then replaced with force */
    cmd_fails(ws, line, SH_E_IO, "force=on");
    snprintf(line, sizeof line, "sensitivity 0,1 ratios=0.5 batches=1 batch=4 json=%s/s.json force=on", dir);
    cmd_ok(ws, line, NULL, NULL);
    s = sensitivity_recall(graph_content_hash(ws->model), NULL);
    assert_int_equal(s->n_curves, 2); /* the listed groups replaced the earlier sweep */

    /* budget: the marks are the chosen points' lowest units */
    snprintf(line, sizeof line, "sensitivity batches=2 batch=5");
    cmd_ok(ws, line, NULL, NULL);
    s = sensitivity_recall(graph_content_hash(ws->model), NULL);
    int *chosen = xcalloc((size_t)s->n_curves, sizeof *chosen);
    sensitivity_choose(s, SENS_ACCURACY, 5, chosen);
    Capture bcap = {0};
    cmd_ok(ws, "prune budget=acc:5", &bcap, &obj);
    assert_non_null(strstr(bcap.buf, "the drops add up"));
    int want = 0;
    for (int i = 0; i < s->n_curves; i++) {
        const Group *grp = depgraph_find(ws->dg, s->curves[i].group);
        int n = chosen[i] < 0 ? 0 : s->curves[i].points[chosen[i]].removed;
        want += n;
        assert_int_equal(plan_marked_in(&ws->plan, grp), n);
        const PlanEntry *e = plan_entry(&ws->plan, grp, false);
        for (int k = 0; k < n; k++)
            assert_true(e->marked[s->curves[i].order[k]]);
    }
    assert_int_equal((int)cJSON_GetObjectItemCaseSensitive(obj, "marked")->valuedouble, want);
    if (want > 0) {
        assert_non_null(strstr(bcap.buf, "predicted MACs"));
        assert_true(cJSON_GetObjectItemCaseSensitive(obj, "macs_after")->valuedouble <
                    cJSON_GetObjectItemCaseSensitive(obj, "macs_before")->valuedouble);
    }
    cJSON_Delete(obj);
    free(bcap.buf);
    free(chosen);
    cmd_fails(ws, "prune budget=acc:0.5 ratio=0.2", SH_E_ARG, "ratio=");
    cmd_fails(ws, "prune budget=acc:0.5 criterion=l1", SH_E_STATE, "no sensitivity curves");
    cmd_fails(ws, "prune budget=top5:1", SH_E_ARG, "budget");
    sensitivity_forget_all();
    cmd_fails(ws, "prune budget=acc:0.5", SH_E_STATE, "no sensitivity curves");
    tg_rmdir(dir);
    free(dir);
    workspace_free(ws);
}

static void test_sensitivity_command_errors_name_the_argument(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 52);
    Workspace *ws = scored_workspace(&r, false);
    cmd_fails(ws, "sensitivity", SH_E_STATE, "no data");
    workspace_free(ws);
    ws = scored_workspace(&r, true);
    cmd_fails(ws, "sensitivity nosuch", SH_E_ARG, "no group 'nosuch'");
    cmd_fails(ws, "sensitivity 0,nosuch", SH_E_ARG, "no group 'nosuch'");
    char line[256];
    snprintf(line, sizeof line, "sensitivity %s", blocked_group(ws));
    cmd_fails(ws, line, SH_E_STATE, "blocked");
    cmd_fails(ws, "sensitivity 0 0", SH_E_ARG, "listed twice");
    cmd_fails(ws, "sensitivity ratios=0.5,1.5", SH_E_ARG, "ratios: '1.5'");
    cmd_fails(ws, "sensitivity ratios=0.5,0.2", SH_E_ARG, "ascend");
    cmd_fails(ws, "sensitivity batches=0", SH_E_ARG, "batches");
    cmd_fails(ws, "sensitivity batch=x", SH_E_ARG, "batch");
    cmd_fails(ws, "sensitivity criterion=nosuch-criterion", SH_E_ARG, "nosuch-criterion");
    free_scores(ws->scores, ws->dg->n_groups);
    ws->scores = NULL;
    cmd_fails(ws, "sensitivity", SH_E_STATE, "no scores");
    workspace_free(ws);
    ws = workspace_new();
    cmd_fails(ws, "sensitivity", SH_E_STATE, "no model");
    workspace_free(ws);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rerun_from_gives_the_outputs_of_a_full_run),
        cmocka_unit_test(test_rerun_from_refuses_plans_without_keep_all_or_a_run),
        cmocka_unit_test(test_sweep_of_exact_groups_equals_surgery_then_evaluate),
        cmocka_unit_test(test_approximate_groups_go_through_surgery),
        cmocka_unit_test(test_sweep_results_do_not_depend_on_the_thread_count),
        cmocka_unit_test(test_partial_results_grow_to_the_final_curves),
        cmocka_unit_test(test_sweep_of_listed_groups_only_and_cancel),
        cmocka_unit_test(test_csv_and_json_are_well_formed_and_complete),
        cmocka_unit_test(test_budget_picks_the_largest_ratio_within_the_drop),
        cmocka_unit_test(test_ratio_and_budget_parsing_name_the_argument),
        cmocka_unit_test(test_sensitivity_command_reports_writes_and_remembers),
        cmocka_unit_test(test_sensitivity_command_errors_name_the_argument),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    sensitivity_forget_all();
    return rc;
}
