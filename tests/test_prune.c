/* Dependency groups, surgery and verification: random plans on the
 * samples, the PyTorch fixtures and the conformance models must give
 * pruned models equal to the originals with the removed channels zeroed
 * (max abs difference <= 1e-4), and the groups must have the structure
 * the architecture implies. */
#include "core/builder.h"
#include "core/depgraph.h"
#include "core/error.h"
#include "core/exec.h"
#include "core/onnx.h"
#include "core/plan.h"
#include "core/surgery.h"
#include "core/util.h"
#include "tests/support/testutil.h"

#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static Graph *load_any(const char *path)
{
    Graph *g = NULL;
    size_t n = strlen(path);
    int rc = n > 5 && !strcmp(path + n - 5, ".json") ? model_build_file(path, &g)
                                                      : onnx_load(path, &g);
    if (rc == 0 && n > 5 && strcmp(path + n - 5, ".json"))
        rc = graph_prepare(g);
    if (rc < 0) {
        graph_free(g);
        return NULL;
    }
    return g;
}

/* Marks a random subset (keeping at least one unit) of some random
 * exact groups; approximate groups are left out since they cannot verify
 * exactly. Returns the number of units marked. */
static int random_plan(const DepGraph *dg, TRng *r, Plan *p, bool blocks_too)
{
    int marked = 0;
    for (int gi = 0; gi < dg->n_groups; gi++) {
        const Group *grp = &dg->groups[gi];
        if (grp->blocked || grp->approximate || (grp->kind == GROUP_BLOCK && !blocks_too) ||
            trng_int(r, 0, 2) == 0)
            continue;
        if (grp->n_units < 2)
            continue;
        int want = (int)trng_int(r, 1, grp->n_units - 1);
        for (int k = 0; k < want; k++) {
            int u = (int)trng_int(r, 0, grp->n_units - 1);
            if (plan_mark(p, grp, u, true) == 0)
                marked++;
        }
    }
    return marked;
}

/* A probe batch for g: its first input at batch 3 (or its fixed batch). */
static int probe_for(const Graph *g, TRng *r, Tensor **probe)
{
    *probe = NULL;
    if (g->n_inputs != 1 || g->values[g->inputs[0]].dtype != SH_F32)
        return -1;
    Shape s;
    if (graph_input_shape(g, 0, 3, &s) < 0)
        return -1;
    *probe = t_rand(r, &s, -1, 1);
    return *probe ? 0 : -1;
}

/* Prunes g by a few random plans, verifying each; returns the worst diff
 * (or -1 if nothing could be pruned). */
static double prune_randomly(const char *label, Graph *g, int tries, bool blocks_too)
{
    DepGraph *dg;
    assert_int_equal(depgraph_build(g, &dg), 0);
    TRng r;
    trng_seed(&r, 7);
    Tensor *probe;
    double worst = -1;
    if (probe_for(g, &r, &probe) < 0) {
        depgraph_free(dg);
        return -1;
    }
    for (int t = 0; t < tries; t++) {
        Plan p;
        plan_init(&p, 0);
        if (random_plan(dg, &r, &p, blocks_too) == 0) {
            plan_done(&p);
            continue;
        }
        Graph *pruned;
        SurgeryStats st;
        CutList cuts;
        int rc = surgery_apply(g, dg, &p, &pruned, &st);
        if (rc < 0)
            printf("%s: apply failed: %s\n", label, sh_errmsg());
        assert_int_equal(rc, 0);
        assert_true(st.params_after < st.params_before);
        assert_int_equal(plan_cuts(g, &p, dg, &cuts), 0);
        double diff;
        rc = surgery_verify(g, pruned, &cuts, &probe, &diff);
        if (rc < 0)
            printf("%s: verify failed: %s\n", label, sh_errmsg());
        assert_int_equal(rc, 0);
        if (diff > worst)
            worst = diff;
        /* the pruned model survives export and import with the same outputs */
        unsigned char *buf;
        size_t n;
        Graph *back;
        assert_int_equal(onnx_save_buffer(pruned, &buf, &n), 0);
        assert_int_equal(onnx_load_buffer(buf, n, "pruned", &back), 0);
        assert_int_equal(graph_prepare(back), 0);
        free(buf);
        graph_free(back);
        cut_list_done(&cuts);
        graph_free(pruned);
        plan_done(&p);
    }
    if (worst >= 0)
        printf("%s: %d random plans, worst |pruned - zeroed original| %.3g\n", label, tries, worst);
    tensor_free(probe);
    depgraph_free(dg);
    return worst;
}

static void test_random_plans_on_the_samples_verify(void **state)
{
    (void)state;
    static const char *models[] = {"samples/fmnist-cnn.json", "samples/fmnist-resnet.json",
                                   "samples/fmnist-vit.json", "samples/fmnist-cnn.onnx"};
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
        Graph *g = load_any(models[i]);
        assert_non_null(g);
        double worst = prune_randomly(models[i], g, 6, true);
        assert_true(worst >= 0 && worst <= 1e-4);
        graph_free(g);
    }
}

static void test_random_plans_on_pytorch_exports_verify(void **state)
{
    (void)state;
    DIR *d = opendir("tests/fixtures/pytorch");
    assert_non_null(d);
    struct dirent *e;
    int pruned = 0;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".onnx"))
            continue;
        char path[512];
        snprintf(path, sizeof path, "tests/fixtures/pytorch/%s", e->d_name);
        Graph *g = load_any(path);
        assert_non_null(g);
        double worst = prune_randomly(e->d_name, g, 3, true);
        assert_true(worst <= 1e-4);
        pruned += worst >= 0;
        graph_free(g);
    }
    closedir(d);
    printf("pruned %d of the PyTorch fixtures\n", pruned);
    assert_true(pruned >= 25);
}

static void test_random_plans_on_conformance_models_verify(void **state)
{
    (void)state;
    const char *root = "/usr/share/libonnx-testdata/data/pytorch-converted";
    DIR *d = opendir(root);
    assert_non_null(d);
    struct dirent *e;
    int tried = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[600];
        snprintf(path, sizeof path, "%s/%s/model.onnx", root, e->d_name);
        Graph *g = load_any(path);
        if (!g)
            continue; /* unsupported: the conformance runner lists these */
        tried++;
        double worst = prune_randomly(e->d_name, g, 2, false);
        assert_true(worst <= 1e-4);
        graph_free(g);
    }
    closedir(d);
    assert_true(tried > 40);
}

static const Group *group_named(const DepGraph *dg, const char *name)
{
    const Group *grp = depgraph_find(dg, name);
    if (!grp)
        printf("no group %s\n", name);
    assert_non_null(grp);
    return grp;
}

static bool has_member(const Graph *g, const Group *grp, const char *tensor, int axis)
{
    for (int m = 0; m < grp->n_members; m++)
        if (!strcmp(g->values[grp->members[m].value].name, tensor) && grp->members[m].axis == axis)
            return true;
    return false;
}

static void test_residual_adds_join_groups_and_shortcuts(void **state)
{
    (void)state;
    Graph *g = load_any("samples/fmnist-resnet.json");
    DepGraph *dg;
    assert_int_equal(depgraph_build(g, &dg), 0);
    /* the stem's channels run through the first identity block's Add */
    const Group *stem = group_named(dg, "conv1");
    assert_true(has_member(g, stem, "conv7.weight", 0));
    assert_true(has_member(g, stem, "conv11.weight", 1));
    assert_true(has_member(g, stem, "conv16.weight", 1));
    /* the 1x1 shortcut and the body's last conv are one group */
    const Group *down = group_named(dg, "conv16");
    assert_true(has_member(g, down, "conv14.weight", 0));
    const Group *blocks = group_named(dg, "blocks");
    assert_int_equal(blocks->kind, GROUP_BLOCK);
    assert_int_equal(blocks->n_units, 2);
    depgraph_free(dg);
    graph_free(g);
}

static void test_attention_heads_own_q_k_v_and_output_rows(void **state)
{
    (void)state;
    Graph *g = load_any("samples/fmnist-vit.json");
    DepGraph *dg;
    assert_int_equal(depgraph_build(g, &dg), 0);
    const Group *heads = group_named(dg, "block2.attn.q_matmul");
    assert_int_equal(heads->kind, GROUP_HEADS);
    assert_int_equal(heads->n_units, 4);
    assert_int_equal(heads->unit_width, 16);
    assert_true(has_member(g, heads, "block2.attn.q.weight", 1));
    assert_true(has_member(g, heads, "block2.attn.k.weight", 1));
    assert_true(has_member(g, heads, "block2.attn.v.weight", 1));
    assert_true(has_member(g, heads, "block2.attn.out.weight", 0));
    /* head 1 owns features 16..31 of the output projection's input */
    for (int m = 0; m < heads->n_members; m++)
        if (!strcmp(g->values[heads->members[m].value].name, "block2.attn.out.weight")) {
            const GroupMember *gm = &heads->members[m];
            assert_int_equal(gm->start[2] - gm->start[1], 16);
            assert_int_equal(gm->idx[gm->start[1]], 16);
        }
    /* the residual stream is one approximate group (LayerNorm statistics) */
    const Group *width = group_named(dg, "conv1");
    assert_true(width->approximate);
    assert_true(has_member(g, width, "pos_embed", 2));
    assert_true(has_member(g, width, "cls_token", 2));
    assert_int_equal(group_named(dg, "blocks")->n_units, 4);
    depgraph_free(dg);
    graph_free(g);
}

static void test_flatten_gives_each_channel_a_block_of_features(void **state)
{
    (void)state;
    const char *arch = "{\"input\":[1,8,8],\"layers\":[{\"type\":\"conv\",\"out\":4},{\"type\":\"relu\"},"
                       "{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":3}]}";
    Graph *g;
    assert_int_equal(model_build_json(arch, "flat", &g), 0);
    DepGraph *dg;
    assert_int_equal(depgraph_build(g, &dg), 0);
    const Group *grp = group_named(dg, "conv1");
    for (int m = 0; m < grp->n_members; m++) {
        const GroupMember *gm = &grp->members[m];
        if (!strcmp(g->values[gm->value].name, "fc4.weight")) {
            assert_int_equal(gm->axis, 1);
            assert_int_equal(gm->start[1], 64); /* channel 0 owns features 0..63 */
            assert_int_equal(gm->idx[gm->start[2]], 128);
        }
    }
    assert_true(prune_randomly("flatten", g, 4, false) <= 1e-4);
    depgraph_free(dg);
    graph_free(g);
}

static void test_grouped_conv_prunes_whole_groups(void **state)
{
    (void)state;
    const char *arch = "{\"input\":[4,6,6],\"layers\":[{\"type\":\"conv\",\"out\":8},{\"type\":\"relu\"},"
                       "{\"type\":\"conv\",\"out\":8,\"groups\":4},{\"type\":\"relu\"},"
                       "{\"type\":\"conv\",\"out\":8,\"groups\":8},{\"type\":\"gap\"},{\"type\":\"flatten\"},"
                       "{\"type\":\"linear\",\"out\":2}]}";
    Graph *g;
    assert_int_equal(model_build_json(arch, "grouped", &g), 0);
    DepGraph *dg;
    assert_int_equal(depgraph_build(g, &dg), 0);
    const Group *grp = group_named(dg, "conv1");
    assert_int_equal(grp->n_units, 4);   /* one unit per conv group of 2 channels */
    assert_int_equal(grp->unit_width, 2);
    assert_true(prune_randomly("grouped", g, 6, false) <= 1e-4);
    depgraph_free(dg);
    graph_free(g);
}

static void test_plan_bound_to_model_hash(void **state)
{
    (void)state;
    Graph *a = load_any("samples/fmnist-cnn.json"), *b = load_any("samples/fmnist-resnet.json");
    DepGraph *dg;
    assert_int_equal(depgraph_build(a, &dg), 0);
    Plan p;
    plan_init(&p, graph_content_hash(a));
    assert_int_equal(plan_mark(&p, &dg->groups[1], 3, true), 0);
    char dir[] = "/tmp/shears-plan-XXXXXX", path[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/plan.json", dir);
    assert_int_equal(plan_save(&p, path, false), 0);
    Plan q;
    plan_init(&q, 0);
    assert_int_equal(plan_load(&q, path, graph_content_hash(a)), 0);
    assert_int_equal(plan_marked_in(&q, &dg->groups[1]), 1);
    assert_int_equal(plan_load(&q, path, graph_content_hash(b)), SH_E_STATE);
    printf("refused: %s\n", sh_errmsg());
    assert_non_null(strstr(sh_errmsg(), "another model"));
    remove(path);
    remove(dir);
    plan_done(&p);
    plan_done(&q);
    depgraph_free(dg);
    graph_free(a);
    graph_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_residual_adds_join_groups_and_shortcuts),
        cmocka_unit_test(test_attention_heads_own_q_k_v_and_output_rows),
        cmocka_unit_test(test_flatten_gives_each_channel_a_block_of_features),
        cmocka_unit_test(test_grouped_conv_prunes_whole_groups),
        cmocka_unit_test(test_plan_bound_to_model_hash),
        cmocka_unit_test(test_random_plans_on_the_samples_verify),
        cmocka_unit_test(test_random_plans_on_pytorch_exports_verify),
        cmocka_unit_test(test_random_plans_on_conformance_models_verify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
