/* Runs the PyTorch export fixtures (tests/fixtures/pytorch/manifest.txt,
 * written by gen.py there) through shears and compares every output with
 * PyTorch's: |shears - torch| <= ATOL + RTOL * |torch|, the tolerances
 * named on each manifest line.
 *
 * Each model is loaded and prepared once; every data set of it (a dynamic
 * batch model has batch 1 and batch 3) is planned and run on that one
 * graph, three ways: as users run it (executor fusions on), with every
 * node run as written (no fusion), and after an export/import round trip
 * (which must give bit-identical outputs to the first run).
 *
 * Prints one line per model (ok/FAIL, batches, max abs diff) and a summary.
 * Usage: pytorch_compare MANIFEST   (exit 0 if all match, 1 if not,
 * 2 if the manifest cannot be read) */
#include "core/error.h"
#include "core/exec.h"
#include "core/npy.h"
#include "core/onnx.h"
#include "core/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILES 16

/* One manifest line: a data set of a model. */
typedef struct {
    char model[512];
    double atol, rtol;
    char *inputs[MAX_FILES], *outputs[MAX_FILES];
    int n_inputs, n_outputs;
} DataSet;

/* What one model's runs found. */
typedef struct {
    double max_diff; /* largest |shears - torch| over every output and run */
    char batches[64];
    char why[1024]; /* first failure, "" if none */
} Result;

static int split_list(char *s, char **out, int max)
{
    int n = 0;
    for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
        if (n == max) {
            while (n > 0)
                free(out[--n]);
            return -1;
        }
        out[n++] = xstrdup(tok);
    }
    return n;
}

static void dataset_done(DataSet *d)
{
    for (int i = 0; i < d->n_inputs; i++) /* a count of -1 frees nothing */
        free(d->inputs[i]);
    for (int i = 0; i < d->n_outputs; i++)
        free(d->outputs[i]);
    memset(d, 0, sizeof *d);
}

/* Parses "MODEL ATOL RTOL IN,IN OUT,OUT"; 0 for a data set, 1 for a blank
 * or comment line, -1 for a malformed one. */
static int parse_line(char *line, DataSet *d)
{
    char ins[4096], outs[4096];
    memset(d, 0, sizeof *d);
    line[strcspn(line, "\r\n")] = 0;
    if (line[strspn(line, " \t")] == 0 || line[strspn(line, " \t")] == '#')
        return 1;
    if (sscanf(line, "%511s %lf %lf %4095s %4095s", d->model, &d->atol, &d->rtol, ins, outs) != 5 ||
        !(d->atol >= 0) || !(d->rtol >= 0))
        return -1;
    d->n_inputs = split_list(ins, d->inputs, MAX_FILES);
    d->n_outputs = split_list(outs, d->outputs, MAX_FILES);
    return d->n_inputs > 0 && d->n_outputs > 0 ? 0 : -1;
}

/* Export -> import of a prepared graph; NULL on failure (message recorded). */
static Graph *round_trip(const Graph *g)
{
    unsigned char *buf;
    size_t n;
    Graph *back = NULL;
    if (onnx_save_buffer(g, &buf, &n) < 0)
        return NULL;
    if (onnx_load_buffer(buf, n, "round trip", &back) < 0 || graph_prepare(back) < 0) {
        graph_free(back);
        back = NULL;
    }
    free(buf);
    return back;
}

static int run(const Graph *g, Tensor *in, int n_in, bool no_fusion, ExecPlan **plan)
{
    Shape shapes[MAX_FILES];
    Tensor *ptrs[MAX_FILES];
    for (int i = 0; i < n_in; i++) {
        shapes[i] = in[i].shape;
        ptrs[i] = &in[i];
    }
    ExecOptions opt = {.no_fusion = no_fusion};
    int rc = exec_plan(g, shapes, &opt, plan);
    return rc < 0 ? rc : exec_run(*plan, ptrs);
}

/* Compares got with want; updates *max_diff; fills why on a mismatch. */
static int compare(const Tensor *got, const Tensor *want, double atol, double rtol, double *max_diff,
                   char *why, size_t n)
{
    char a[128], b[128];
    if (got->dtype != want->dtype || !shape_eq(&got->shape, &want->shape)) {
        snprintf(why, n, "%s %s, PyTorch gave %s %s", dtype_name(got->dtype),
                 shape_str(&got->shape, a, sizeof a), dtype_name(want->dtype),
                 shape_str(&want->shape, b, sizeof b));
        return -1;
    }
    int64_t bad = -1;
    double bad_x = 0, bad_y = 0;
    for (int64_t i = 0; i < got->numel; i++) {
        double x = tensor_get_f(got, i), y = tensor_get_f(want, i), d = fabs(x - y);
        if (!(d <= *max_diff)) /* also catches NaN */
            *max_diff = isnan(d) ? INFINITY : d;
        if (!(d <= atol + rtol * fabs(y)) && bad < 0) {
            bad = i;
            bad_x = x;
            bad_y = y;
        }
    }
    if (bad >= 0) {
        snprintf(why, n, "element %lld is %.7g, PyTorch gave %.7g (max abs diff %.3g)", (long long)bad,
                 bad_x, bad_y, *max_diff);
        return -1;
    }
    return 0;
}

/* Reads dir/file into *t. */
static int read_npy_in(Tensor *t, const char *dir, const char *file)
{
    char *path = xasprintf("%s/%s", dir, file);
    int rc = npy_read(t, path);
    free(path);
    return rc;
}

/* Runs one data set on g (and its round trip g2); records into r. */
static void run_dataset(const Graph *g, const Graph *g2, const DataSet *d, const char *dir, Result *r)
{
    Tensor in[MAX_FILES] = {0}, want[MAX_FILES] = {0};
    ExecPlan *plans[3] = {NULL, NULL, NULL};
    static const char *mode[3] = {"", " (no fusion)", " (after export/import)"};
    char msg[768];
    int rc = 0;
    for (int i = 0; i < d->n_inputs && rc == 0; i++)
        rc = read_npy_in(&in[i], dir, d->inputs[i]);
    for (int i = 0; i < d->n_outputs && rc == 0; i++)
        rc = read_npy_in(&want[i], dir, d->outputs[i]);
    if (rc < 0) {
        snprintf(r->why, sizeof r->why, "%s", sh_errmsg());
        goto done;
    }
    int64_t batch = in[0].shape.rank ? in[0].shape.d[0] : 1;
    snprintf(r->batches + strlen(r->batches), sizeof r->batches - strlen(r->batches), "%s%lld",
             r->batches[0] ? "," : "", (long long)batch);
    if (d->n_inputs != g->n_inputs || d->n_outputs != g->n_outputs) {
        snprintf(r->why, sizeof r->why, "the manifest gives %d inputs and %d outputs, the model has %d and %d",
                 d->n_inputs, d->n_outputs, g->n_inputs, g->n_outputs);
        goto done;
    }
    for (int m = 0; m < 3; m++) {
        if (run(m == 2 ? g2 : g, in, d->n_inputs, m == 1, &plans[m]) < 0) {
            snprintf(r->why, sizeof r->why, "batch %lld%s: %s", (long long)batch, mode[m], sh_errmsg());
            goto done;
        }
        for (int k = 0; k < d->n_outputs; k++) {
            const Tensor *got = exec_output(plans[m], k);
            if (compare(got, &want[k], d->atol, d->rtol, &r->max_diff, msg, sizeof msg) < 0) {
                snprintf(r->why, sizeof r->why, "batch %lld output %d%s: %s", (long long)batch, k, mode[m], msg);
                goto done;
            }
            if (m == 2 && memcmp(got->data, exec_output(plans[0], k)->data, tensor_bytes(got)) != 0) {
                snprintf(r->why, sizeof r->why, "batch %lld output %d: the exported and re-imported model "
                         "gives different bits than the original", (long long)batch, k);
                goto done;
            }
        }
    }
done:
    for (int m = 0; m < 3; m++)
        exec_free(plans[m]);
    for (int i = 0; i < MAX_FILES; i++) {
        tensor_done(&in[i]);
        tensor_done(&want[i]);
    }
}

/* Loads a model once and runs its n data sets; *max_diff grows to the
 * model's largest difference. */
static int check_model(const DataSet *sets, int n, const char *dir, double *max_diff)
{
    Result r = {0};
    Graph *g = NULL, *g2 = NULL;
    char *path = xasprintf("%s/%s", dir, sets[0].model);
    int rc = onnx_load(path, &g);
    free(path);
    if (rc < 0 || graph_prepare(g) < 0)
        snprintf(r.why, sizeof r.why, "load: %s", sh_errmsg());
    else if (!(g2 = round_trip(g)))
        snprintf(r.why, sizeof r.why, "export/import: %s", sh_errmsg());
    for (int i = 0; i < n && !r.why[0]; i++)
        run_dataset(g, g2, &sets[i], dir, &r);
    if (r.why[0])
        printf("FAIL %-32s %s\n", sets[0].model, r.why);
    else
        printf("ok   %-32s batch %-5s max abs diff %.3g\n", sets[0].model, r.batches, r.max_diff);
    if (!(r.max_diff <= *max_diff))
        *max_diff = r.max_diff;
    graph_free(g);
    graph_free(g2);
    return r.why[0] ? -1 : 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: pytorch_compare MANIFEST\n");
        return 2;
    }
    const char *manifest = argv[1];
    FILE *f = fopen(manifest, "r");
    if (!f) {
        fprintf(stderr, "pytorch_compare: cannot read %s\n", manifest);
        return 2;
    }
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", manifest);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");

    DataSet *sets = NULL;
    int n_sets = 0, line_no = 0, bad_line = 0;
    char line[16384];
    while (fgets(line, sizeof line, f)) {
        line_no++;
        sets = xrealloc(sets, sizeof *sets * (size_t)(n_sets + 1));
        int rc = parse_line(line, &sets[n_sets]);
        if (rc == 0)
            n_sets++;
        else if (rc < 0) {
            dataset_done(&sets[n_sets]);
            fprintf(stderr, "pytorch_compare: %s line %d is not MODEL ATOL RTOL INPUTS OUTPUTS\n", manifest,
                    line_no);
            bad_line = 1;
        }
    }
    fclose(f);

    int passed = 0, failed = 0;
    double max_diff = 0;
    for (int i = 0; i < n_sets;) {
        int j = i + 1;
        while (j < n_sets && strcmp(sets[j].model, sets[i].model) == 0)
            j++;
        if (check_model(&sets[i], j - i, dir, &max_diff) == 0)
            passed++;
        else
            failed++;
        i = j;
    }
    for (int i = 0; i < n_sets; i++)
        dataset_done(&sets[i]);
    free(sets);
    printf("pytorch: %d models matched PyTorch, %d failed; max abs diff %.3g\n", passed, failed, max_diff);
    if (bad_line || n_sets == 0)
        return 2;
    return failed ? 1 : 0;
}
