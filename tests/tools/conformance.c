/* Runs Debian's ONNX conformance data (libonnx-testdata) through shears.
 * Every case whose ops shears supports must match the expected outputs
 * (rtol 1e-3, atol 1e-5), and the model exported and imported again must
 * give bit-identical outputs (the round trip). Prints passed / failed / skipped counts and
 * lists skipped cases with the reason.
 * Usage: conformance [-v] [DATA_ROOT] [FILTER] */
#include "core/error.h"
#include "core/exec.h"
#include "core/onnx.h"
#include "core/util.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define RTOL 1e-3
#define ATOL 1e-5

enum Outcome { PASS, FAIL, SKIP };

typedef struct {
    int counts[3];
    int verbose;
} Totals;

static int load_numbered(const char *dir, const char *prefix, Tensor ***out, char ***names)
{
    int n = 0;
    *out = NULL;
    *names = NULL;
    for (;; n++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s_%d.pb", dir, prefix, n);
        struct stat st;
        if (stat(path, &st) != 0)
            break;
        *out = xrealloc(*out, sizeof **out * (size_t)(n + 1));
        *names = xrealloc(*names, sizeof **names * (size_t)(n + 1));
        int rc = onnx_load_tensor(path, &(*out)[n], &(*names)[n]);
        if (rc < 0) {
            (*out)[n] = NULL;
            (*names)[n] = NULL;
            return -(n + 1);
        }
    }
    return n;
}

static void free_tensors(Tensor **t, char **names, int n)
{
    for (int i = 0; i < n; i++) {
        tensor_free(t[i]);
        free(names[i]);
    }
    free(t);
    free(names);
}

/* Matches the data set's tensors to graph inputs by name, else by order. */
static int order_inputs(const Graph *g, Tensor **in, char **names, int n, Tensor **ordered)
{
    if (n != g->n_inputs)
        return sh_fail(SH_E_SHAPE, "the data set has %d inputs, the model %d", n, g->n_inputs);
    for (int i = 0; i < g->n_inputs; i++) {
        ordered[i] = in[i];
        for (int k = 0; k < n; k++)
            if (names[k] && strcmp(names[k], g->values[g->inputs[i]].name) == 0)
                ordered[i] = in[k];
    }
    return 0;
}

static int compare(const Tensor *got, const Tensor *want, char *why, size_t n)
{
    if (!shape_eq(&got->shape, &want->shape)) {
        char a[128], b[128];
        snprintf(why, n, "shape %s, expected %s", shape_str(&got->shape, a, sizeof a),
                 shape_str(&want->shape, b, sizeof b));
        return -1;
    }
    for (int64_t i = 0; i < got->numel; i++) {
        double x = tensor_get_f(got, i), y = tensor_get_f(want, i);
        if (isnan(x) && isnan(y))
            continue;
        if (isinf(x) && x == y)
            continue;
        if (!(fabs(x - y) <= ATOL + RTOL * fabs(y))) {
            snprintf(why, n, "element %lld is %.7g, expected %.7g", (long long)i, x, y);
            return -1;
        }
    }
    return 0;
}

/* Export -> import of a prepared graph; NULL on failure (message in why). */
static Graph *round_trip(const Graph *g, char *why, size_t wn)
{
    unsigned char *buf;
    size_t n;
    Graph *back = NULL;
    if (onnx_save_buffer(g, &buf, &n) < 0) {
        snprintf(why, wn, "export: %s", sh_errmsg());
        return NULL;
    }
    if (onnx_load_buffer(buf, n, "round trip", &back) < 0 || graph_prepare(back) < 0) {
        snprintf(why, wn, "re-import: %s", sh_errmsg());
        graph_free(back);
        back = NULL;
    }
    free(buf);
    return back;
}

/* Outputs of the round-tripped graph must be bit-identical. */
static int compare_exact(const Tensor *a, const Tensor *b, char *why, size_t n)
{
    if (a->dtype != b->dtype || !shape_eq(&a->shape, &b->shape) ||
        memcmp(a->data, b->data, tensor_bytes(a)) != 0) {
        snprintf(why, n, "round trip: outputs differ from the original model's");
        return -1;
    }
    return 0;
}

static int run_graph(const Graph *g, Tensor **ordered, int n_in, ExecPlan **plan)
{
    Shape *shapes = xcalloc((size_t)n_in + 1, sizeof *shapes);
    for (int i = 0; i < n_in; i++)
        shapes[i] = ordered[i]->shape;
    ExecOptions opt = {.input_values = ordered};
    int rc = exec_plan(g, shapes, &opt, plan);
    if (rc == 0)
        rc = exec_run(*plan, ordered);
    free(shapes);
    return rc;
}

static enum Outcome run_data_set(const Graph *g, const Graph *g2, const char *dir, char *why,
                                 size_t wn)
{
    Tensor **in = NULL, **want = NULL;
    char **in_names = NULL, **want_names = NULL;
    enum Outcome result = FAIL;
    ExecPlan *plan = NULL;
    int n_in = load_numbered(dir, "input", &in, &in_names);
    int n_want = load_numbered(dir, "output", &want, &want_names);
    if (n_in < 0 || n_want < 0) {
        snprintf(why, wn, "%s", sh_errmsg());
        result = SKIP; /* unsupported dtype in the data */
        goto done;
    }
    Tensor **ordered = xcalloc((size_t)n_in + 1, sizeof *ordered);
    ExecPlan *plan2 = NULL;
    int rc = order_inputs(g, in, in_names, n_in, ordered);
    if (rc == 0)
        rc = run_graph(g, ordered, n_in, &plan);
    if (rc == 0 && g2 && run_graph(g2, ordered, n_in, &plan2) < 0) {
        snprintf(why, wn, "round trip: %s", sh_errmsg());
        result = FAIL;
        goto after;
    }
    if (rc < 0) {
        snprintf(why, wn, "%s", sh_errmsg());
        result = rc == SH_E_UNSUPPORTED ? SKIP : FAIL;
    } else if (n_want != g->n_outputs) {
        snprintf(why, wn, "%d expected outputs, model has %d", n_want, g->n_outputs);
    } else {
        result = PASS;
        for (int k = 0; k < n_want && result == PASS; k++) {
            char msg[300];
            if (compare(exec_output(plan, k), want[k], msg, sizeof msg) < 0 ||
                (plan2 && compare_exact(exec_output(plan2, k), exec_output(plan, k), msg, sizeof msg) < 0)) {
                snprintf(why, wn, "output %d: %s", k, msg);
                result = FAIL;
            }
        }
    }
after:
    free(ordered);
    exec_free(plan2);
done:
    exec_free(plan);
    if (n_in > 0)
        free_tensors(in, in_names, n_in);
    else
        free_tensors(in, in_names, -n_in - 1);
    if (n_want > 0)
        free_tensors(want, want_names, n_want);
    else
        free_tensors(want, want_names, -n_want - 1);
    return result;
}

/* Cases whose expected outputs cannot be reproduced by any runtime: they
 * depend on the random generator of the program that made them. */
static const struct {
    const char *name, *reason;
} random_cases[] = {
    {"test_training_dropout", "random: the dropout mask comes from numpy's generator"},
    {"test_training_dropout_default", "random: the dropout mask comes from numpy's generator"},
    {"test_training_dropout_default_mask", "random: the dropout mask comes from numpy's generator"},
    {"test_training_dropout_mask", "random: the dropout mask comes from numpy's generator"},
};

static const char *random_case(const char *dir)
{
    const char *base = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
    for (size_t i = 0; i < sizeof random_cases / sizeof *random_cases; i++)
        if (strcmp(base, random_cases[i].name) == 0)
            return random_cases[i].reason;
    return NULL;
}

static enum Outcome run_case(const char *dir, char *why, size_t wn)
{
    char path[4096];
    if (random_case(dir)) {
        snprintf(why, wn, "%s", random_case(dir));
        return SKIP;
    }
    Graph *g = NULL;
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    int rc = onnx_load(path, &g);
    if (rc == 0)
        rc = graph_prepare(g);
    if (rc < 0) {
        snprintf(why, wn, "%s", sh_errmsg());
        graph_free(g);
        return rc == SH_E_UNSUPPORTED ? SKIP : FAIL;
    }
    Graph *g2 = round_trip(g, why, wn);
    if (!g2) {
        graph_free(g);
        return FAIL;
    }
    enum Outcome result = SKIP;
    snprintf(why, wn, "no data sets");
    for (int k = 0;; k++) {
        char ds[4096];
        struct stat st;
        snprintf(ds, sizeof ds, "%s/test_data_set_%d", dir, k);
        if (stat(ds, &st) != 0)
            break;
        result = run_data_set(g, g2, ds, why, wn);
        if (result != PASS)
            break;
    }
    graph_free(g);
    graph_free(g2);
    return result;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void run_folder(const char *root, const char *sub, const char *filter, Totals *t)
{
    char dirpath[1024];
    snprintf(dirpath, sizeof dirpath, "%s/%s", root, sub);
    DIR *d = opendir(dirpath);
    if (!d)
        return;
    char **names = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || (filter && !strstr(e->d_name, filter)))
            continue;
        names = xrealloc(names, sizeof *names * (size_t)(n + 1));
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    static const char *labels[] = {"PASS", "FAIL", "SKIP"};
    for (int i = 0; i < n; i++) {
        char dir[2048], why[1024] = "";
        snprintf(dir, sizeof dir, "%s/%s", dirpath, names[i]);
        enum Outcome o = run_case(dir, why, sizeof why);
        t->counts[o]++;
        if (o != PASS || t->verbose)
            printf("%s %s/%s%s%s\n", labels[o], sub, names[i], why[0] && o != PASS ? ": " : "",
                   o != PASS ? why : "");
        free(names[i]);
    }
    free(names);
}

int main(int argc, char **argv)
{
    Totals t = {0};
    int argi = 1;
    if (argi < argc && strcmp(argv[argi], "-v") == 0) {
        t.verbose = 1;
        argi++;
    }
    const char *root = argi < argc ? argv[argi++] : "/usr/share/libonnx-testdata/data";
    const char *filter = argi < argc ? argv[argi++] : NULL;
    static const char *folders[] = {"node", "pytorch-converted", "pytorch-operator", "simple"};
    for (size_t i = 0; i < sizeof folders / sizeof *folders; i++)
        run_folder(root, folders[i], filter, &t);
    printf("conformance: %d passed, %d failed, %d skipped\n", t.counts[PASS], t.counts[FAIL],
           t.counts[SKIP]);
    return t.counts[FAIL] ? 1 : 0;
}
