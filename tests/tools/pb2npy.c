/* Converts one conformance data set (input_K.pb / output_K.pb TensorProto
 * files) to NPY files, ordered as a model's graph inputs: matched by
 * tensor name, else by position (as tests/tools/conformance.c does).
 * Used by tests/check_interop.sh to feed the same data to shears and to
 * ONNX Runtime.
 *
 * Usage: pb2npy MODEL.onnx DATA_SET_DIR OUT_DIR
 *        pb2npy MODEL.onnx --random OUT_DIR
 * Writes OUT_DIR/in_K.npy (one per graph input, in declaration order) and
 * OUT_DIR/want_K.npy (the expected outputs), and prints one line
 * "inputs N outputs M". --random writes seeded inputs instead (floats
 * uniform in [0,1), integers and booleans 0) with the batch dim set to 2,
 * for models without test data (samples/). Exit status: 0 done, 2 skip
 * (a type or shape shears does not support; the reason is printed on
 * stdout), 1 error (one line on stderr). */
#include "core/error.h"
#include "core/exec.h"
#include "core/npy.h"
#include "core/onnx.h"
#include "core/util.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_TENSORS 64
#define RANDOM_BATCH 2

typedef struct {
    Tensor *t[MAX_TENSORS];
    char *name[MAX_TENSORS];
    int n;
} TensorSet;

static void set_done(TensorSet *s)
{
    for (int i = 0; i < s->n; i++) {
        tensor_free(s->t[i]);
        free(s->name[i]);
    }
    s->n = 0;
}

/* Loads dir/prefix_0.pb, prefix_1.pb, ... until one is missing. */
static int load_numbered(const char *dir, const char *prefix, TensorSet *s)
{
    s->n = 0;
    for (int k = 0; k < MAX_TENSORS; k++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s_%d.pb", dir, prefix, k);
        if (stat(path, &st) != 0)
            return 0;
        int rc = onnx_load_tensor(path, &s->t[k], &s->name[k]);
        if (rc < 0)
            return rc;
        s->n = k + 1;
    }
    return sh_fail(SH_E_UNSUPPORTED, "%s: more than %d %s files", dir, MAX_TENSORS, prefix);
}

static int write_npy(const char *dir, const char *prefix, int k, const Tensor *t)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s_%d.npy", dir, prefix, k);
    return npy_write(path, t, true);
}

/* Fills in.t[] with seeded inputs of g's declared shapes. */
static int random_inputs(const Graph *g, TensorSet *in)
{
    uint64_t state = 0x5EED;
    if (g->n_inputs > MAX_TENSORS)
        return sh_fail(SH_E_UNSUPPORTED, "more than %d inputs", MAX_TENSORS);
    for (int i = 0; i < g->n_inputs; i++) {
        Shape s;
        int rc = graph_input_shape(g, i, RANDOM_BATCH, &s);
        if (rc < 0)
            return rc;
        if (!(in->t[i] = tensor_new(g->values[g->inputs[i]].dtype, &s)))
            return SH_E_NOMEM;
        in->n = i + 1;
        if (in->t[i]->dtype != SH_F32)
            continue;
        for (int64_t k = 0; k < in->t[i]->numel; k++) {
            state = state * 6364136223846793005ULL + 1442695040888963407ULL;
            tensor_f32(in->t[i])[k] = (float)(state >> 40) / (float)(1 << 24);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: pb2npy MODEL.onnx DATA_SET_DIR|--random OUT_DIR\n");
        return 1;
    }
    Graph *g = NULL;
    TensorSet in = {0}, want = {0};
    int status = 1, rc = onnx_load(argv[1], &g);
    bool random = strcmp(argv[2], "--random") == 0;
    if (rc == 0)
        rc = random ? random_inputs(g, &in) : load_numbered(argv[2], "input", &in);
    if (rc == 0 && !random)
        rc = load_numbered(argv[2], "output", &want);
    if (rc == SH_E_UNSUPPORTED) {
        printf("skip: %s\n", sh_errmsg());
        status = 2;
        goto done;
    }
    if (rc < 0) {
        fprintf(stderr, "pb2npy: %s\n", sh_errmsg());
        goto done;
    }
    if (in.n != g->n_inputs) {
        fprintf(stderr, "pb2npy: %s has %d input files; %s has %d inputs\n", argv[2], in.n, argv[1],
                g->n_inputs);
        goto done;
    }
    for (int i = 0; i < g->n_inputs; i++) {
        const Tensor *t = in.t[i];
        for (int k = 0; k < in.n; k++)
            if (in.name[k] && strcmp(in.name[k], g->values[g->inputs[i]].name) == 0)
                t = in.t[k];
        if ((rc = write_npy(argv[3], "in", i, t)) < 0) {
            fprintf(stderr, "pb2npy: %s\n", sh_errmsg());
            goto done;
        }
    }
    for (int k = 0; k < want.n; k++)
        if ((rc = write_npy(argv[3], "want", k, want.t[k])) < 0) {
            fprintf(stderr, "pb2npy: %s\n", sh_errmsg());
            goto done;
        }
    printf("inputs %d outputs %d\n", g->n_inputs, g->n_outputs);
    status = 0;
done:
    set_done(&in);
    set_done(&want);
    graph_free(g);
    return status;
}
