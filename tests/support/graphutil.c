#include "graphutil.h"

#include "core/error.h"
#include "core/op.h"
#include "core/util.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


int tg_const_f32(Graph *g, const char *name, const Shape *s, const float *values)
{
    Tensor *t = tensor_new(SH_F32, s);
    if (t->numel)
        memcpy(t->data, values, (size_t)t->numel * sizeof(float));
    return graph_add_const(g, name, t);
}

int tg_const_i64(Graph *g, const char *name, const Shape *s, const int64_t *values)
{
    Tensor *t = tensor_new(SH_I64, s);
    if (t->numel)
        memcpy(t->data, values, (size_t)t->numel * sizeof(int64_t));
    return graph_add_const(g, name, t);
}

int tg_op1(Graph *g, const char *op_type, const char *out_name, int n_in, const int *in)
{
    int out = graph_value(g, out_name);
    graph_add_node(g, op_type, out_name, n_in, in, 1, &out);
    return out;
}

int tg_ref_run(const Graph *g, Tensor *const *inputs, Tensor **outputs)
{
    Tensor **vals = xcalloc((size_t)g->n_values + 1, sizeof *vals);
    bool *owned = xcalloc((size_t)g->n_values + 1, sizeof *owned);
    int rc = 0;
    for (int v = 0; v < g->n_values; v++)
        if ((g->values[v].flags & VAL_CONST) && g->values[v].data)
            vals[v] = g->values[v].data;
    for (int i = 0; i < g->n_inputs; i++)
        vals[g->inputs[i]] = inputs[i];
    for (int i = 0; i < g->n_nodes && rc == 0; i++) {
        const Node *n = &g->nodes[i];
        Tensor **in = xcalloc((size_t)n->n_in + 1, sizeof *in);
        Tensor **out = xcalloc((size_t)n->n_out + 1, sizeof *out);
        for (int k = 0; k < n->n_in; k++)
            in[k] = n->in[k] >= 0 ? vals[n->in[k]] : NULL;
        rc = op_run(n, g->opset, in, n->n_in, out, n->n_out);
        for (int k = 0; k < n->n_out && rc == 0; k++) {
            int v = n->out[k];
            if (v < 0) {
                tensor_free(out[k]);
                continue;
            }
            vals[v] = out[k];
            owned[v] = true;
        }
        free(in);
        free(out);
    }
    for (int k = 0; k < g->n_outputs; k++)
        outputs[k] = rc == 0 && vals[g->outputs[k]] ? tensor_clone(vals[g->outputs[k]]) : NULL;
    for (int v = 0; v < g->n_values; v++)
        if (owned[v])
            tensor_free(vals[v]);
    free(vals);
    free(owned);
    return rc;
}

char *tg_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    char *tmpl = xasprintf("%s/shears-test-XXXXXX", base && base[0] ? base : "/tmp");
    if (!mkdtemp(tmpl)) {
        free(tmpl);
        return NULL;
    }
    return tmpl;
}

char *tg_path(const char *dir, const char *name) { return xasprintf("%s/%s", dir, name); }

void tg_rmdir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *p = tg_path(dir, e->d_name);
        unlink(p);
        free(p);
    }
    closedir(d);
    rmdir(dir);
}
