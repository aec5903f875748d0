/* libFuzzer target: the ONNX loader, load-time preparation, export ->
 * import of what was loaded, and one planned run at batch 1 on inputs
 * derived from the fuzz data. Crashes, leaks, sanitizer reports and hangs
 * are bugs; error returns are the expected outcome for most inputs.
 * Invariant checked: a model shears loaded and prepared exports to bytes
 * shears loads again. */
#include "core/error.h"
#include "core/exec.h"
#include "core/onnx.h"
#include "core/util.h"
#include "core/workspace.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Guards against inputs that are valid but merely huge (a 40-byte model
 * may ask for a [1e5,1e5] input): fuzzing is after bugs, not RAM limits. */
#define MAX_INIT_BYTES ((size_t)4 << 20)
#define MAX_INPUT_ELEMS ((int64_t)1 << 20)
#define MAX_ACTIVATION_BYTES ((size_t)64 << 20)
#define MAX_INPUTS 16

static size_t initializer_bytes(const Graph *g)
{
    size_t total = 0;
    for (int v = 0; v < g->n_values; v++)
        if (g->values[v].data)
            total += tensor_bytes(g->values[v].data);
    return total;
}

/* A small deterministic generator seeded from the fuzz data, so a
 * reproducer replays the same inputs. */
static uint64_t next(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

static void fill_input(Tensor *t, uint64_t *seed)
{
    for (int64_t i = 0; i < t->numel; i++) {
        uint64_t r = next(seed);
        switch (t->dtype) {
        case SH_F32: tensor_f32(t)[i] = (float)((double)(r % 4001) / 1000.0 - 2.0); break;
        case SH_I64: tensor_i64(t)[i] = (int64_t)(r % 9) - 4; break; /* indices, axes, sizes */
        case SH_U8: tensor_u8(t)[i] = (uint8_t)r; break;
        case SH_BOOL: tensor_u8(t)[i] = (uint8_t)(r & 1); break;
        default: break;
        }
    }
}

/* Every value's bytes for these shapes: an upper bound on the arena. */
static size_t planned_bytes(const Graph *g, const ExecPlan *p)
{
    size_t total = 0;
    for (int v = 0; v < g->n_values; v++)
        total += tensor_bytes(exec_value(p, v));
    return total;
}

static void check_round_trip(const Graph *g)
{
    unsigned char *buf;
    size_t n;
    if (onnx_save_buffer(g, &buf, &n) < 0)
        return; /* out of memory */
    Graph *back = NULL;
    if (onnx_load_buffer(buf, n, "exported.onnx", &back) < 0) {
        fprintf(stderr, "fuzz_onnx: a loaded model does not load again after export: %s\n",
                sh_errmsg());
        abort();
    }
    graph_free(back);
    free(buf);
}

static void run_batch_one(const Graph *g, uint64_t seed)
{
    Tensor in[MAX_INPUTS] = {0};
    Tensor *ptrs[MAX_INPUTS];
    Shape shapes[MAX_INPUTS];
    ExecPlan *p = NULL;
    int n = g->n_inputs;
    if (n > MAX_INPUTS)
        return;
    for (int i = 0; i < n; i++) {
        if (graph_input_shape(g, i, 1, &shapes[i]) < 0 || shape_numel(&shapes[i]) < 0 ||
            shape_numel(&shapes[i]) > MAX_INPUT_ELEMS) {
            n = i;
            goto done;
        }
        if (tensor_alloc(&in[i], g->values[g->inputs[i]].dtype, &shapes[i]) < 0) {
            n = i;
            goto done;
        }
        fill_input(&in[i], &seed);
        ptrs[i] = &in[i];
    }
    ExecOptions probe = {.shapes_only = true, .input_values = ptrs};
    if (exec_plan(g, shapes, &probe, &p) < 0)
        goto done;
    size_t bytes = planned_bytes(g, p);
    exec_free(p);
    p = NULL;
    if (bytes > MAX_ACTIVATION_BYTES)
        goto done;
    ExecOptions opt = {.input_values = ptrs};
    if (exec_plan(g, shapes, &opt, &p) == 0)
        exec_run(p, ptrs);
done:
    exec_free(p);
    for (int i = 0; i < n; i++)
        tensor_done(&in[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a model may ask for any size: past this, shears must refuse cleanly
     * (libFuzzer reports mallocs over 2 GB as failures) */
    sh_set_memory_budget((size_t)256 << 20);
    Graph *g = NULL;
    if (onnx_load_buffer(data, size, "fuzz.onnx", &g) < 0)
        return 0;
    if (initializer_bytes(g) <= MAX_INIT_BYTES && graph_check_finite(g, "fuzz.onnx") == 0 &&
        graph_prepare(g) == 0) {
        check_round_trip(g);
        run_batch_one(g, hash_bytes(data, size, 0));
    }
    graph_free(g);
    return 0;
}
