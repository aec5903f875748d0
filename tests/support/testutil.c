#include "testutil.h"

#include "core/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void trng_seed(TRng *r, uint64_t seed) { r->s = seed * 0x9E3779B97F4A7C15ULL + 1; }

static uint64_t trng_next(TRng *r)
{
    /* splitmix64 */
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

float trng_uniform(TRng *r, float lo, float hi)
{
    double u = (double)(trng_next(r) >> 11) / (double)(1ULL << 53);
    return (float)(lo + (hi - lo) * u);
}

int64_t trng_int(TRng *r, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(trng_next(r) % (uint64_t)(hi - lo + 1));
}

Tensor *t_rand(TRng *r, const Shape *s, float lo, float hi)
{
    Tensor *t = tensor_new(SH_F32, s);
    for (int64_t i = 0; t && i < t->numel; i++)
        tensor_f32(t)[i] = trng_uniform(r, lo, hi);
    return t;
}

Tensor *t_f32(const Shape *s, const float *values)
{
    Tensor *t = tensor_new(SH_F32, s);
    if (t && t->numel)
        memcpy(t->data, values, (size_t)t->numel * sizeof(float));
    return t;
}

Tensor *t_i64(const Shape *s, const int64_t *values)
{
    Tensor *t = tensor_new(SH_I64, s);
    if (t && t->numel)
        memcpy(t->data, values, (size_t)t->numel * sizeof(int64_t));
    return t;
}

Node *t_node(const char *op_type, int n_in, int n_out)
{
    Node *n = xcalloc(1, sizeof *n);
    n->name = xasprintf("test_%s", op_type);
    n->op_type = xstrdup(op_type);
    n->op = op_find(op_type);
    n->n_in = n_in;
    n->n_out = n_out;
    n->in = xcalloc((size_t)n_in + 1, sizeof(int));
    n->out = xcalloc((size_t)n_out + 1, sizeof(int));
    for (int i = 0; i < n_in; i++)
        n->in[i] = i;
    for (int i = 0; i < n_out; i++)
        n->out[i] = n_in + i;
    return n;
}

void t_node_free(Node *n)
{
    if (!n)
        return;
    free(n->name);
    free(n->op_type);
    free(n->domain);
    free(n->in);
    free(n->out);
    for (int i = 0; i < n->n_attrs; i++)
        attr_done(&n->attrs[i]);
    free(n->attrs);
    free(n);
}

int t_run(Node *n, int opset, Tensor **in, int n_in, Tensor **out, int n_out)
{
    for (int i = 0; i < n_in; i++)
        if (!in[i])
            n->in[i] = -1;
    return op_run(n, opset, in, n_in, out, n_out);
}

double t_max_diff(const char *label, const Tensor *a, const Tensor *b)
{
    if (!a || !b || !shape_eq(&a->shape, &b->shape)) {
        printf("%s: shapes differ\n", label);
        return INFINITY;
    }
    double m = 0;
    for (int64_t i = 0; i < a->numel; i++) {
        double d = fabs(tensor_get_f(a, i) - tensor_get_f(b, i));
        if (isnan(d))
            d = INFINITY;
        if (d > m)
            m = d;
    }
    printf("%s: max abs diff %.3g\n", label, m);
    return m;
}

int t_allclose(const Tensor *a, const Tensor *b, double rtol, double atol)
{
    if (!a || !b || !shape_eq(&a->shape, &b->shape))
        return 0;
    for (int64_t i = 0; i < a->numel; i++) {
        double x = tensor_get_f(a, i), y = tensor_get_f(b, i);
        if (isnan(x) && isnan(y))
            continue;
        if (!(fabs(x - y) <= atol + rtol * fabs(y)))
            return 0;
    }
    return 1;
}
