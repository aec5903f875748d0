/* Training: losses against hand-computed values and finite differences,
 * optimizers against hand-computed steps, end-to-end gradients of a small
 * network against finite differences of the loss, a short real training
 * run, and bit-identical reproducibility. */
#include "core/builder.h"
#include "core/data.h"
#include "core/error.h"
#include "core/evaluate.h"
#include "core/exec.h"
#include "core/onnx.h"
#include "core/train.h"
#include "core/util.h"
#include "tests/support/testutil.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static void test_cross_entropy_matches_hand_values(void **state)
{
    (void)state;
    float s[6] = {1, 2, 3, 0, 0, 0}, d[6] = {0};
    int64_t y[2] = {2, 1}, correct = 0;
    double l = loss_cross_entropy(s, 2, 3, y, OUT_LOGITS, 0, d, &correct);
    double lse = log(exp(1.0) + exp(2.0) + exp(3.0));
    double want = ((lse - 3) + log(3.0)) / 2;
    printf("cross-entropy: %.9f vs %.9f\n", l, want);
    assert_true(fabs(l - want) < 1e-9);
    assert_int_equal(correct, 1); /* row 0 predicts 2; row 1 ties, argmax 0 */
    assert_true(fabs(d[2] - (exp(3 - lse) - 1) / 2) < 1e-7);
    assert_true(fabs(d[4] - (1.0 / 3 - 1) / 2) < 1e-7);
}

/* dL/ds of every loss against a central difference of the loss itself. */
static void check_loss_grad(const char *label, double (*f)(const float *, float *, void *), float *s,
                            int n, void *ctx)
{
    float *d = xcalloc((size_t)n, sizeof *d), *tmp = xcalloc((size_t)n, sizeof *tmp);
    f(s, d, ctx);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        float keep = s[i];
        s[i] = keep + 1e-2f;
        double lp = f(s, tmp, ctx);
        s[i] = keep - 1e-2f;
        double lm = f(s, tmp, ctx);
        s[i] = keep;
        double fd = (lp - lm) / 2e-2;
        worst = fmax(worst, fabs(fd - d[i]));
    }
    printf("%s: max |analytic - numeric| %.3g\n", label, worst);
    assert_true(worst < 1e-4);
    free(d);
    free(tmp);
}

typedef struct {
    const int64_t *y;
    double smoothing;
    const float *teacher;
} LossCtx;

static double ce_smooth(const float *s, float *d, void *ctx)
{
    LossCtx *c = ctx;
    int64_t correct = 0;
    memset(d, 0, sizeof(float) * 12);
    return loss_cross_entropy(s, 3, 4, c->y, OUT_LOGITS, c->smoothing, d, &correct);
}

static double distill(const float *s, float *d, void *ctx)
{
    LossCtx *c = ctx;
    memset(d, 0, sizeof(float) * 12);
    return loss_distill(s, c->teacher, 3, 4, 2.0, 0.7, d);
}

static void test_loss_gradients_match_finite_differences(void **state)
{
    (void)state;
    float s[12] = {0.3f, -1, 2, 0.5f, 1, 1, -0.2f, 0, 0.7f, 0.1f, -0.4f, 1.5f};
    float t[12] = {1, 0, -1, 0.2f, 0.3f, 2, 0, -0.5f, 0, 0.1f, 0.4f, -1};
    int64_t y[3] = {2, 0, 3};
    LossCtx c = {.y = y, .smoothing = 0.1, .teacher = t};
    check_loss_grad("cross-entropy with label smoothing", ce_smooth, s, 12, &c);
    check_loss_grad("distillation KL at T=2", distill, s, 12, &c);
}

/* Builds Flatten -> Gemm -> Relu -> Gemm for 1x4x4 inputs, 3 classes. */
static Graph *small_mlp(void)
{
    const char *arch = "{\"input\":[1,4,4],\"seed\":3,\"layers\":[{\"type\":\"flatten\"},"
                       "{\"type\":\"linear\",\"out\":8},{\"type\":\"relu\"},{\"type\":\"linear\",\"out\":3}]}";
    Graph *g;
    assert_int_equal(model_build_json(arch, "mlp", &g), 0);
    return g;
}

static double batch_loss(ExecPlan *p, Tensor *x, const int64_t *y, float *d)
{
    Tensor *xs[1] = {x};
    assert_int_equal(exec_run(p, xs), 0);
    const Tensor *out = exec_output(p, 0);
    int64_t correct = 0;
    memset(d, 0, sizeof(float) * (size_t)out->numel);
    return loss_cross_entropy(tensor_f32(out), out->shape.d[0], out->shape.d[1], y, OUT_LOGITS, 0, d,
                              &correct);
}

static void test_network_gradients_match_finite_differences(void **state)
{
    (void)state;
    Graph *g = small_mlp();
    assert_int_equal(graph_pack_params(g), 0);
    TRng r;
    trng_seed(&r, 5);
    Shape s = shape_of(4, (int64_t)5, (int64_t)1, (int64_t)4, (int64_t)4);
    Tensor *x = t_rand(&r, &s, -1, 1);
    int64_t y[5] = {0, 1, 2, 1, 0};
    ExecOptions opt = {.training = true, .keep_all = true, .params = g->param_block, .n_params = g->param_len};
    ExecPlan *p;
    assert_int_equal(exec_plan(g, &s, &opt, &p), 0);
    float d[15], tmp[15];
    float *grads = xcalloc((size_t)g->param_len, sizeof *grads);
    batch_loss(p, x, y, d);
    Shape ds = shape_of(2, (int64_t)5, (int64_t)3);
    Tensor dt = tensor_view(SH_F32, &ds, d);
    Tensor *dts[1] = {&dt};
    assert_int_equal(exec_backward(p, dts, grads), 0);
    double worst = 0;
    for (int64_t i = 0; i < g->param_len; i += 7) {
        float keep = g->param_block[i];
        g->param_block[i] = keep + 1e-2f;
        double lp = batch_loss(p, x, y, tmp);
        g->param_block[i] = keep - 1e-2f;
        double lm = batch_loss(p, x, y, tmp);
        g->param_block[i] = keep;
        double fd = (lp - lm) / 2e-2;
        worst = fmax(worst, fabs(fd - grads[i]) / (1e-3 + 1e-2 * fabs(fd)));
    }
    printf("MLP parameter gradients: worst error %.3f of tolerance\n", worst);
    assert_true(worst <= 1);
    /* a second backward on the same plan starts from zero again: activation
     * gradients are cleared as each is first touched, not left over */
    float *again = xcalloc((size_t)g->param_len, sizeof *again);
    batch_loss(p, x, y, d);
    assert_int_equal(exec_backward(p, dts, again), 0);
    assert_memory_equal(grads, again, sizeof(float) * (size_t)g->param_len);
    free(again);
    free(grads);
    exec_free(p);
    tensor_free(x);
    graph_free(g);
}

static void test_sgd_momentum_step_matches_hand_computation(void **state)
{
    (void)state;
    Graph *g = small_mlp();
    Trainer t;
    TrainConfig cfg = train_config_default();
    cfg.schedule = SCHED_CONSTANT;
    cfg.lr = 0.1;
    cfg.weight_decay = 0.01;
    cfg.nesterov = false;
    assert_int_equal(trainer_init(&t, g, NULL, 4, 10, &cfg), 0);
    float *before = xmalloc(sizeof(float) * (size_t)t.n_params);
    memcpy(before, g->param_block, sizeof(float) * (size_t)t.n_params);
    TRng r;
    trng_seed(&r, 9);
    Shape s = shape_of(4, (int64_t)4, (int64_t)1, (int64_t)4, (int64_t)4);
    Tensor *x = t_rand(&r, &s, -1, 1);
    Shape ys = shape_of(1, (int64_t)4);
    int64_t yv[4] = {0, 1, 2, 0};
    Tensor *y = t_i64(&ys, yv);
    StepStats st;
    assert_int_equal(trainer_step(&t, x, y, &st), 0);
    /* first step: v = g + wd*p; p' = p - lr*v */
    double worst = 0;
    for (int64_t i = 0; i < t.n_params; i++) {
        double want = before[i] - 0.1 * (t.grads[i] + 0.01 * before[i]);
        worst = fmax(worst, fabs(want - g->param_block[i]));
    }
    printf("SGD step: max diff %.3g\n", worst);
    assert_true(worst < 1e-6);
    trainer_done(&t);
    free(before);
    tensor_free(x);
    tensor_free(y);
    graph_free(g);
}

/* Two replicas on half a batch each must take the same step as one thread
 * on the whole batch (no BatchNorm here, whose batch statistics would be
 * per replica). */
static void test_data_parallel_step_equals_single_thread_step(void **state)
{
    (void)state;
    Graph *a = small_mlp(), *b = small_mlp();
    TrainConfig cfg = train_config_default();
    Trainer ta, tb;
    assert_int_equal(trainer_init(&ta, a, NULL, 32, 10, &cfg), 0);
    cfg.threads = 2;
    assert_int_equal(trainer_init(&tb, b, NULL, 32, 10, &cfg), 0);
    assert_int_equal(tb.n_rep, 2);
    TRng r;
    trng_seed(&r, 11);
    Shape s = shape_of(4, (int64_t)32, (int64_t)1, (int64_t)4, (int64_t)4), ys = shape_of(1, (int64_t)32);
    Tensor *x = t_rand(&r, &s, -1, 1), *y = tensor_new(SH_I64, &ys);
    for (int i = 0; i < 32; i++)
        tensor_i64(y)[i] = i % 3;
    StepStats sa, sb;
    for (int step = 0; step < 3; step++) {
        assert_int_equal(trainer_step(&ta, x, y, &sa), 0);
        assert_int_equal(trainer_step(&tb, x, y, &sb), 0);
    }
    double worst = 0;
    for (int64_t i = 0; i < a->param_len; i++)
        worst = fmax(worst, fabs(a->param_block[i] - b->param_block[i]));
    printf("data parallel vs single thread after 3 steps: max param diff %.3g, loss %.6f vs %.6f\n", worst,
           sa.loss, sb.loss);
    assert_true(worst < 1e-5);
    assert_true(fabs(sa.loss - sb.loss) < 1e-5);
    assert_int_equal(sa.correct, sb.correct);
    trainer_done(&ta);
    trainer_done(&tb);
    tensor_free(x);
    tensor_free(y);
    graph_free(a);
    graph_free(b);
}

static void test_cosine_schedule_with_warmup(void **state)
{
    (void)state;
    Trainer t = {.total_steps = 110};
    t.cfg = train_config_default();
    t.cfg.lr = 1;
    t.cfg.warmup_steps = 10;
    t.step = 4;
    assert_true(fabs(trainer_lr(&t) - 0.5) < 1e-12);
    t.step = 10;
    assert_true(fabs(trainer_lr(&t) - 1) < 1e-12);
    t.step = 60;
    assert_true(fabs(trainer_lr(&t) - 0.5) < 1e-12);
    t.step = 110;
    assert_true(fabs(trainer_lr(&t)) < 1e-12);
}

/* A few hundred steps of a small CNN on a Fashion-MNIST subset (3 epochs
 * of n samples in batches of 32). */
static void fit_small(Graph *g, const Dataset *ds, FitResult *r, int64_t n)
{
    DataSubset all, part;
    data_subset_all(&all, ds);
    part = all;
    part.n = n;
    FitConfig f = {.epochs = 3, .batch = 32, .cfg = train_config_default()};
    f.cfg.lr = 0.2;
    f.data.shuffle = true;
    f.data.seed = 3;
    assert_int_equal(fit(g, NULL, &part, NULL, &f, r), 0);
    data_subset_done(&all);
}

static const char *small_cnn =
    "{\"input\":[1,28,28],\"seed\":1,\"layers\":["
    "{\"type\":\"conv\",\"out\":8},{\"type\":\"bn\"},{\"type\":\"relu\"},{\"type\":\"maxpool\"},"
    "{\"type\":\"conv\",\"out\":16},{\"type\":\"bn\"},{\"type\":\"relu\"},{\"type\":\"maxpool\"},"
    "{\"type\":\"gap\"},{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":10}]}";

static void test_short_training_run_learns(void **state)
{
    (void)state;
    Dataset train, test;
    DataNorm norm = data_norm_one(0.2860f, 0.3530f);
    assert_int_equal(dataset_load_mnist(&train, "/usr/share/datasets/fashion-mnist", "train", 4800, &norm), 0);
    assert_int_equal(dataset_load_mnist(&test, "/usr/share/datasets/fashion-mnist", "test", 1000, &norm), 0);
    Graph *g;
    assert_int_equal(model_build_json(small_cnn, "small-cnn", &g), 0);
    DataSubset ts;
    data_subset_all(&ts, &test);
    EvalResult before, after;
    assert_int_equal(evaluate(g, &ts, 100, &before), 0);
    FitResult r;
    fit_small(g, &train, &r, 4800); /* 450 steps */
    assert_int_equal(evaluate(g, &ts, 100, &after), 0);
    printf("before: accuracy %.3f loss %.3f; after %lld steps: accuracy %.3f loss %.3f (train %.3f)\n",
           before.accuracy, before.loss, (long long)r.steps, after.accuracy, after.loss, r.train_accuracy);
    assert_true(after.loss < before.loss * 0.5);
    assert_true(after.accuracy > 0.70);
    /* the saved model evaluates identically after reloading */
    unsigned char *buf;
    size_t n;
    Graph *back;
    assert_int_equal(onnx_save_buffer(g, &buf, &n), 0);
    assert_int_equal(onnx_load_buffer(buf, n, "saved", &back), 0);
    assert_int_equal(graph_prepare(back), 0);
    EvalResult again;
    assert_int_equal(evaluate(back, &ts, 100, &again), 0);
    assert_int_equal(again.correct, after.correct);
    assert_true(again.loss == after.loss);
    free(buf);
    graph_free(back);
    graph_free(g);
    data_subset_done(&ts);
    dataset_done(&train);
    dataset_done(&test);
}

static void test_same_seed_gives_bit_identical_weights(void **state)
{
    (void)state;
    Dataset train;
    DataNorm norm = data_norm_one(0.2860f, 0.3530f);
    assert_int_equal(dataset_load_mnist(&train, "/usr/share/datasets/fashion-mnist", "train", 640, &norm), 0);
    Graph *a, *b;
    assert_int_equal(model_build_json(small_cnn, "a", &a), 0);
    assert_int_equal(model_build_json(small_cnn, "b", &b), 0);
    FitResult r;
    fit_small(a, &train, &r, 640);
    fit_small(b, &train, &r, 640);
    assert_int_equal(a->param_len, b->param_len);
    assert_memory_equal(a->param_block, b->param_block, sizeof(float) * (size_t)a->param_len);
    for (int v = 0; v < a->n_values; v++) /* BatchNorm running statistics too */
        if (a->values[v].data)
            assert_memory_equal(a->values[v].data->data, b->values[v].data->data, tensor_bytes(a->values[v].data));
    graph_free(a);
    graph_free(b);
    dataset_done(&train);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cross_entropy_matches_hand_values),
        cmocka_unit_test(test_loss_gradients_match_finite_differences),
        cmocka_unit_test(test_network_gradients_match_finite_differences),
        cmocka_unit_test(test_sgd_momentum_step_matches_hand_computation),
        cmocka_unit_test(test_data_parallel_step_equals_single_thread_step),
        cmocka_unit_test(test_cosine_schedule_with_warmup),
        cmocka_unit_test(test_short_training_run_learns),
        cmocka_unit_test(test_same_seed_gives_bit_identical_weights),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
