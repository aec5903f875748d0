/* JSON architecture -> Graph (see builder.h). */
#include "builder.h"

#include "data.h"
#include "error.h"
#include "exec.h"
#include "fileio.h"
#include "util.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    Graph *g;
    Xoshiro rng;
    const char *origin;
    int input;      /* the graph input value */
    int counter;    /* for unique layer names */
    int batch_dim;  /* value holding [N] as a 1-D int64 (built on first use), -1 */
} Builder;

/* The current activation: its value and per-sample shape (no batch). */
typedef struct {
    int v;
    Shape s;
} Act;

/* ---- small graph helpers ---- */

static int add_param(Builder *b, const char *name, const Shape *s, float lo, float hi)
{
    Tensor *t = tensor_new(SH_F32, s);
    if (!t)
        return -1;
    for (int64_t i = 0; i < t->numel; i++)
        tensor_f32(t)[i] = lo == hi ? lo : lo + (hi - lo) * xoshiro_uniform(&b->rng);
    int v = graph_new_value(b->g, name);
    return graph_add_const(b->g, b->g->values[v].name, t);
}

/* Truncated normal (std, cut at 2 std) as ViT initializes. */
static int add_param_normal(Builder *b, const char *name, const Shape *s, float std)
{
    Tensor *t = tensor_new(SH_F32, s);
    if (!t)
        return -1;
    for (int64_t i = 0; i < t->numel; i++) {
        double z;
        do { /* Box-Muller */
            double u1 = xoshiro_uniform(&b->rng) + 1e-12, u2 = xoshiro_uniform(&b->rng);
            z = sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
        } while (fabs(z) > 2);
        tensor_f32(t)[i] = (float)(z * std);
    }
    int v = graph_new_value(b->g, name);
    return graph_add_const(b->g, b->g->values[v].name, t);
}

static int add_i64(Builder *b, const char *name, int n, const int64_t *vals)
{
    Shape s = shape_of(1, (int64_t)n);
    Tensor *t = tensor_new(SH_I64, &s);
    if (!t)
        return -1;
    memcpy(t->data, vals, sizeof(int64_t) * (size_t)n);
    int v = graph_new_value(b->g, name);
    return graph_add_const(b->g, b->g->values[v].name, t);
}

static int add_scalar(Builder *b, const char *name, float x)
{
    Shape s = {.rank = 0};
    Tensor *t = tensor_new(SH_F32, &s);
    if (!t)
        return -1;
    tensor_f32(t)[0] = x;
    int v = graph_new_value(b->g, name);
    return graph_add_const(b->g, b->g->values[v].name, t);
}

/* Adds node op(name) with the given inputs and one new output value. */
static int node1(Builder *b, const char *op, const char *name, int n_in, const int *in, Node **node)
{
    char out_name[256];
    snprintf(out_name, sizeof out_name, "%.240s_out", name);
    int out = graph_new_value(b->g, out_name);
    int i = graph_add_node(b->g, op, name, n_in, in, 1, &out);
    if (node)
        *node = &b->g->nodes[i];
    return out;
}

static void layer_name(Builder *b, const char *kind, char *buf, size_t n)
{
    snprintf(buf, n, "%s%d", kind, ++b->counter);
}

/* [N] as int64, from Shape(input) -> Gather(0) -> Unsqueeze, as PyTorch
 * exports a dynamic batch size. */
static int batch_dim(Builder *b)
{
    if (b->batch_dim >= 0)
        return b->batch_dim;
    Node *n;
    int shape = node1(b, "Shape", "batch_shape", 1, &b->input, NULL);
    int64_t zero = 0;
    Shape sc = {.rank = 0};
    Tensor *t = tensor_new(SH_I64, &sc);
    tensor_i64(t)[0] = zero;
    int idx = graph_add_const(b->g, "batch_index", t);
    int in2[2] = {shape, idx};
    int scalar = node1(b, "Gather", "batch_gather", 2, in2, &n);
    node_set_int(n, "axis", 0);
    int axes = add_i64(b, "batch_axes", 1, &zero);
    int in3[2] = {scalar, axes};
    b->batch_dim = node1(b, "Unsqueeze", "batch_unsqueeze", 2, in3, NULL);
    return b->batch_dim;
}

/* Reshape x to [N, dims...] with the batch taken from the input. */
static int reshape_batch(Builder *b, const char *name, int x, int n_dims, const int64_t *dims)
{
    char cname[256];
    snprintf(cname, sizeof cname, "%s_dims", name);
    int rest = add_i64(b, cname, n_dims, dims);
    int parts[2] = {batch_dim(b), rest};
    char catname[256];
    snprintf(catname, sizeof catname, "%s_shape", name);
    Node *cat;
    int shape = node1(b, "Concat", catname, 2, parts, &cat);
    node_set_int(cat, "axis", 0);
    int in[2] = {x, shape};
    return node1(b, "Reshape", name, 2, in, NULL);
}

/* ---- JSON helpers ---- */

static int json_int(const cJSON *o, const char *key, int64_t dflt, int64_t lo, int64_t hi,
                    const char *origin, int64_t *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = dflt;
    if (!it)
        return 0;
    if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) || it->valuedouble < lo ||
        it->valuedouble > hi)
        return sh_fail(SH_E_FORMAT, "%s: \"%s\" must be an integer from %lld to %lld", origin, key,
                       (long long)lo, (long long)hi);
    *out = (int64_t)it->valuedouble;
    return 0;
}

static const char *json_str(const cJSON *o, const char *key, const char *dflt)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(it) ? it->valuestring : dflt;
}

static bool json_bool(const cJSON *o, const char *key, bool dflt)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(it) ? cJSON_IsTrue(it) : dflt;
}

/* ---- layers ---- */

static int build_layers(Builder *b, const cJSON *layers, Act *x, const char *where);

static int need_rank(Builder *b, const Act *x, int rank, const char *type, const char *where)
{
    if (x->s.rank != rank) {
        char s[128];
        return sh_fail(SH_E_SHAPE, "%s: %s %s needs a %s input, got per-sample shape %s", b->origin,
                       where, type, rank == 3 ? "[C,H,W]" : rank == 2 ? "[T,D]" : "[F]",
                       shape_str(&x->s, s, sizeof s));
    }
    return 0;
}

static int layer_conv(Builder *b, const cJSON *l, Act *x, const char *where)
{
    int64_t out, k, stride, pad, groups;
    int rc;
    if ((rc = need_rank(b, x, 3, "conv", where)) < 0 ||
        (rc = json_int(l, "out", 0, 1, 1 << 16, b->origin, &out)) < 0 ||
        (rc = json_int(l, "kernel", 3, 1, 64, b->origin, &k)) < 0 ||
        (rc = json_int(l, "stride", 1, 1, 64, b->origin, &stride)) < 0 ||
        (rc = json_int(l, "pad", k / 2, 0, 64, b->origin, &pad)) < 0 ||
        (rc = json_int(l, "groups", 1, 1, 1 << 16, b->origin, &groups)) < 0)
        return rc;
    int64_t cin = x->s.d[0];
    if (out == 0 || cin % groups || out % groups)
        return sh_fail(SH_E_FORMAT, "%s: %s conv needs \"out\" and channels divisible by groups (%lld in, %lld out, %lld groups)",
                       b->origin, where, (long long)cin, (long long)out, (long long)groups);
    bool bias = json_bool(l, "bias", false);
    char name[64], pname[128];
    layer_name(b, "conv", name, sizeof name);
    int64_t fan_in = cin / groups * k * k;
    float bound = sqrtf(6.0f / (float)fan_in); /* He uniform for ReLU networks */
    Shape ws = shape_of(4, out, cin / groups, k, k);
    snprintf(pname, sizeof pname, "%s.weight", name);
    int in[3] = {x->v, add_param(b, pname, &ws, -bound, bound), -1};
    if (bias) {
        Shape bs = shape_of(1, out);
        snprintf(pname, sizeof pname, "%s.bias", name);
        float bb = 1.0f / sqrtf((float)fan_in);
        in[2] = add_param(b, pname, &bs, -bb, bb);
    }
    Node *n;
    x->v = node1(b, "Conv", name, bias ? 3 : 2, in, &n);
    int64_t ks[2] = {k, k}, st[2] = {stride, stride}, pads[4] = {pad, pad, pad, pad}, dil[2] = {1, 1};
    node_set_ints(n, "kernel_shape", ks, 2);
    node_set_ints(n, "strides", st, 2);
    node_set_ints(n, "pads", pads, 4);
    node_set_ints(n, "dilations", dil, 2);
    node_set_int(n, "group", groups);
    int64_t h = (x->s.d[1] + 2 * pad - k) / stride + 1, w = (x->s.d[2] + 2 * pad - k) / stride + 1;
    if (h < 1 || w < 1)
        return sh_fail(SH_E_SHAPE, "%s: %s conv leaves no output (input %lldx%lld, kernel %lld)",
                       b->origin, where, (long long)x->s.d[1], (long long)x->s.d[2], (long long)k);
    x->s = shape_of(3, out, h, w);
    return 0;
}

static int layer_bn(Builder *b, Act *x, const char *where)
{
    if (x->s.rank < 1)
        return sh_fail(SH_E_SHAPE, "%s: %s bn needs a channel axis", b->origin, where);
    char name[64], pname[128];
    layer_name(b, "bn", name, sizeof name);
    Shape cs = shape_of(1, x->s.d[0]);
    static const char *suffix[] = {"weight", "bias", "running_mean", "running_var"};
    static const float init[] = {1, 0, 0, 1};
    int in[5] = {x->v};
    for (int i = 0; i < 4; i++) {
        snprintf(pname, sizeof pname, "%s.%s", name, suffix[i]);
        in[i + 1] = add_param(b, pname, &cs, init[i], init[i]);
    }
    Node *n;
    x->v = node1(b, "BatchNormalization", name, 5, in, &n);
    node_set_float(n, "epsilon", 1e-5f);
    node_set_float(n, "momentum", 0.9f);
    return 0;
}

/* GELU as PyTorch exports it at opset 17: x * 0.5 * (1 + erf(x / sqrt 2)). */
static int layer_gelu(Builder *b, Act *x)
{
    char name[64], sub[96];
    layer_name(b, "gelu", name, sizeof name);
    snprintf(sub, sizeof sub, "%s.sqrt2", name);
    int in[2] = {x->v, add_scalar(b, sub, 1.4142135381698608f)};
    snprintf(sub, sizeof sub, "%s_div", name);
    int d = node1(b, "Div", sub, 2, in, NULL);
    snprintf(sub, sizeof sub, "%s_erf", name);
    int e = node1(b, "Erf", sub, 1, &d, NULL);
    snprintf(sub, sizeof sub, "%s.one", name);
    int in2[2] = {e, add_scalar(b, sub, 1.0f)};
    snprintf(sub, sizeof sub, "%s_add", name);
    int a = node1(b, "Add", sub, 2, in2, NULL);
    int in3[2] = {x->v, a};
    snprintf(sub, sizeof sub, "%s_mul", name);
    int m = node1(b, "Mul", sub, 2, in3, NULL);
    snprintf(sub, sizeof sub, "%s.half", name);
    int in4[2] = {m, add_scalar(b, sub, 0.5f)};
    x->v = node1(b, "Mul", name, 2, in4, NULL);
    return 0;
}

static int layer_unary(Builder *b, const char *op, const char *kind, Act *x)
{
    char name[64];
    layer_name(b, kind, name, sizeof name);
    x->v = node1(b, op, name, 1, &x->v, NULL);
    return 0;
}

static int layer_pool(Builder *b, const cJSON *l, Act *x, bool max, const char *where)
{
    int64_t k, stride, pad;
    int rc;
    if ((rc = need_rank(b, x, 3, max ? "maxpool" : "avgpool", where)) < 0 ||
        (rc = json_int(l, "kernel", 2, 1, 64, b->origin, &k)) < 0 ||
        (rc = json_int(l, "stride", k, 1, 64, b->origin, &stride)) < 0 ||
        (rc = json_int(l, "pad", 0, 0, 64, b->origin, &pad)) < 0)
        return rc;
    char name[64];
    layer_name(b, max ? "maxpool" : "avgpool", name, sizeof name);
    Node *n;
    x->v = node1(b, max ? "MaxPool" : "AveragePool", name, 1, &x->v, &n);
    int64_t ks[2] = {k, k}, st[2] = {stride, stride}, pads[4] = {pad, pad, pad, pad};
    node_set_ints(n, "kernel_shape", ks, 2);
    node_set_ints(n, "strides", st, 2);
    node_set_ints(n, "pads", pads, 4);
    int64_t h = (x->s.d[1] + 2 * pad - k) / stride + 1, w = (x->s.d[2] + 2 * pad - k) / stride + 1;
    if (h < 1 || w < 1)
        return sh_fail(SH_E_SHAPE, "%s: %s pooling leaves no output", b->origin, where);
    x->s = shape_of(3, x->s.d[0], h, w);
    return 0;
}

static int layer_gap(Builder *b, Act *x, const char *where)
{
    int rc = need_rank(b, x, 3, "gap", where);
    if (rc < 0)
        return rc;
    char name[64];
    layer_name(b, "gap", name, sizeof name);
    x->v = node1(b, "GlobalAveragePool", name, 1, &x->v, NULL);
    x->s = shape_of(3, x->s.d[0], (int64_t)1, (int64_t)1);
    return 0;
}

static int layer_flatten(Builder *b, Act *x)
{
    char name[64];
    layer_name(b, "flatten", name, sizeof name);
    Node *n;
    x->v = node1(b, "Flatten", name, 1, &x->v, &n);
    node_set_int(n, "axis", 1);
    x->s = shape_of(1, shape_numel(&x->s));
    return 0;
}

/* Linear on [F] is Gemm(transB) with weight [out, in]; on [T, D] it is
 * MatMul with weight [in, out] plus Add, as PyTorch exports them. */
static int linear(Builder *b, Act *x, int64_t out, bool bias, const char *name, float std)
{
    char pname[128];
    int64_t in_f = x->s.d[x->s.rank - 1];
    float bound = 1.0f / sqrtf((float)in_f);
    Shape bs = shape_of(1, out);
    if (x->s.rank == 1) {
        Shape ws = shape_of(2, out, in_f);
        snprintf(pname, sizeof pname, "%s.weight", name);
        int in[3] = {x->v, std > 0 ? add_param_normal(b, pname, &ws, std) : add_param(b, pname, &ws, -bound, bound), -1};
        if (bias) {
            snprintf(pname, sizeof pname, "%s.bias", name);
            in[2] = std > 0 ? add_param(b, pname, &bs, 0, 0) : add_param(b, pname, &bs, -bound, bound);
        }
        Node *n;
        x->v = node1(b, "Gemm", name, bias ? 3 : 2, in, &n);
        node_set_float(n, "alpha", 1.0f);
        node_set_float(n, "beta", 1.0f);
        node_set_int(n, "transB", 1);
        x->s = shape_of(1, out);
        return 0;
    }
    Shape ws = shape_of(2, in_f, out);
    snprintf(pname, sizeof pname, "%s.weight", name);
    int in[2] = {x->v, std > 0 ? add_param_normal(b, pname, &ws, std) : add_param(b, pname, &ws, -bound, bound)};
    char mname[192];
    snprintf(mname, sizeof mname, bias ? "%s_matmul" : "%s", name);
    x->v = node1(b, "MatMul", mname, 2, in, NULL);
    if (bias) {
        snprintf(pname, sizeof pname, "%s.bias", name);
        int in2[2] = {x->v, std > 0 ? add_param(b, pname, &bs, 0, 0) : add_param(b, pname, &bs, -bound, bound)};
        x->v = node1(b, "Add", name, 2, in2, NULL);
    }
    x->s.d[x->s.rank - 1] = out;
    return 0;
}

static int layer_linear(Builder *b, const cJSON *l, Act *x, const char *where)
{
    int64_t out;
    int rc = json_int(l, "out", 0, 1, 1 << 20, b->origin, &out);
    if (rc < 0)
        return rc;
    if (out == 0 || x->s.rank < 1 || x->s.rank > 2)
        return sh_fail(SH_E_FORMAT, "%s: %s linear needs \"out\" and a [F] or [T,D] input (add a flatten)",
                       b->origin, where);
    char name[64];
    layer_name(b, "fc", name, sizeof name);
    return linear(b, x, out, json_bool(l, "bias", true), name, 0);
}

static int layer_dropout(Builder *b, const cJSON *l, Act *x)
{
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(l, "ratio");
    char name[64], pname[96];
    layer_name(b, "dropout", name, sizeof name);
    snprintf(pname, sizeof pname, "%s.ratio", name);
    int in[2] = {x->v, add_scalar(b, pname, cJSON_IsNumber(r) ? (float)r->valuedouble : 0.5f)};
    x->v = node1(b, "Dropout", name, 2, in, NULL);
    return 0;
}

static int layer_residual(Builder *b, const cJSON *l, Act *x, const char *where)
{
    Act body = *x, sc = *x;
    int rc;
    const cJSON *bl = cJSON_GetObjectItemCaseSensitive(l, "body");
    const cJSON *sl = cJSON_GetObjectItemCaseSensitive(l, "shortcut");
    if (!cJSON_IsArray(bl))
        return sh_fail(SH_E_FORMAT, "%s: %s residual needs a \"body\" list", b->origin, where);
    if ((rc = build_layers(b, bl, &body, where)) < 0)
        return rc;
    if (sl && (rc = build_layers(b, sl, &sc, where)) < 0)
        return rc;
    if (!shape_eq(&body.s, &sc.s)) {
        char a[96], c[96];
        return sh_fail(SH_E_SHAPE, "%s: %s residual body gives %s but the shortcut %s (add a shortcut conv)",
                       b->origin, where, shape_str(&body.s, a, sizeof a), shape_str(&sc.s, c, sizeof c));
    }
    char name[64];
    layer_name(b, "add", name, sizeof name);
    int in[2] = {body.v, sc.v};
    x->v = node1(b, "Add", name, 2, in, NULL);
    x->s = body.s;
    const char *post = json_str(l, "post", NULL);
    if (post && strcmp(post, "relu") == 0)
        return layer_unary(b, "Relu", "relu", x);
    if (post)
        return sh_fail(SH_E_FORMAT, "%s: %s residual \"post\" must be \"relu\"", b->origin, where);
    return 0;
}

/* Conv(k=p, s=p) -> [N, D, h, w] -> Reshape [N, D, T] -> Transpose [N, T, D]. */
static int layer_patch_embed(Builder *b, const cJSON *l, Act *x, const char *where)
{
    int64_t patch, dim;
    int rc;
    if ((rc = need_rank(b, x, 3, "patch_embed", where)) < 0 ||
        (rc = json_int(l, "patch", 4, 1, 64, b->origin, &patch)) < 0 ||
        (rc = json_int(l, "dim", 64, 1, 1 << 14, b->origin, &dim)) < 0)
        return rc;
    if (x->s.d[1] % patch || x->s.d[2] % patch)
        return sh_fail(SH_E_SHAPE, "%s: %s patch %lld does not divide the image", b->origin, where,
                       (long long)patch);
    cJSON *conv = cJSON_CreateObject();
    cJSON_AddNumberToObject(conv, "out", (double)dim);
    cJSON_AddNumberToObject(conv, "kernel", (double)patch);
    cJSON_AddNumberToObject(conv, "stride", (double)patch);
    cJSON_AddNumberToObject(conv, "pad", 0);
    cJSON_AddBoolToObject(conv, "bias", 1);
    rc = layer_conv(b, conv, x, where);
    cJSON_Delete(conv);
    if (rc < 0)
        return rc;
    int64_t t = x->s.d[1] * x->s.d[2];
    int64_t dims[2] = {dim, t};
    x->v = reshape_batch(b, "patch_flatten", x->v, 2, dims);
    Node *n;
    x->v = node1(b, "Transpose", "patch_transpose", 1, &x->v, &n);
    int64_t perm[3] = {0, 2, 1};
    node_set_ints(n, "perm", perm, 3);
    x->s = shape_of(2, t, dim);
    return 0;
}

/* A learned [1,1,D] token expanded to [N,1,D] and put in front. */
static int layer_cls_token(Builder *b, Act *x, const char *where)
{
    int rc = need_rank(b, x, 2, "cls_token", where);
    if (rc < 0)
        return rc;
    int64_t d = x->s.d[1];
    Shape ps = shape_of(3, (int64_t)1, (int64_t)1, d);
    int tok = add_param_normal(b, "cls_token", &ps, 0.02f);
    int64_t rest[2] = {1, d};
    int restv = add_i64(b, "cls_expand_dims", 2, rest);
    int parts[2] = {batch_dim(b), restv};
    Node *n;
    int shape = node1(b, "Concat", "cls_expand_shape", 2, parts, &n);
    node_set_int(n, "axis", 0);
    int in[2] = {tok, shape};
    int expanded = node1(b, "Expand", "cls_expand", 2, in, NULL);
    int in2[2] = {expanded, x->v};
    x->v = node1(b, "Concat", "cls_concat", 2, in2, &n);
    node_set_int(n, "axis", 1);
    x->s.d[0] += 1;
    return 0;
}

static int layer_pos_embed(Builder *b, Act *x, const char *where)
{
    int rc = need_rank(b, x, 2, "pos_embed", where);
    if (rc < 0)
        return rc;
    Shape ps = shape_of(3, (int64_t)1, x->s.d[0], x->s.d[1]);
    int in[2] = {x->v, add_param_normal(b, "pos_embed", &ps, 0.02f)};
    x->v = node1(b, "Add", "pos_add", 2, in, NULL);
    return 0;
}

static int layernorm(Builder *b, Act *x, const char *name)
{
    char pname[128];
    Shape s = shape_of(1, x->s.d[x->s.rank - 1]);
    snprintf(pname, sizeof pname, "%s.weight", name);
    int g = add_param(b, pname, &s, 1, 1);
    snprintf(pname, sizeof pname, "%s.bias", name);
    int in[3] = {x->v, g, add_param(b, pname, &s, 0, 0)};
    Node *n;
    x->v = node1(b, "LayerNormalization", name, 3, in, &n);
    node_set_int(n, "axis", -1);
    node_set_float(n, "epsilon", 1e-5f);
    return 0;
}

static int layer_layernorm(Builder *b, Act *x)
{
    char name[64];
    layer_name(b, "ln", name, sizeof name);
    return layernorm(b, x, name);
}

/* [N,T,D] -> [N,H,T,Dh] (perm 0,2,1,3) or [N,H,Dh,T] (perm 0,2,3,1). */
static int split_heads(Builder *b, const char *name, int v, int64_t t, int64_t h, int64_t dh, bool keys)
{
    char rname[192];
    snprintf(rname, sizeof rname, "%s_heads", name);
    int64_t dims[3] = {t, h, dh};
    int r = reshape_batch(b, rname, v, 3, dims);
    Node *n;
    snprintf(rname, sizeof rname, "%s_transpose", name);
    int out = node1(b, "Transpose", rname, 1, &r, &n);
    int64_t pq[4] = {0, 2, 1, 3}, pk[4] = {0, 2, 3, 1};
    node_set_ints(n, "perm", keys ? pk : pq, 4);
    return out;
}

/* Pre-LayerNorm block: x + Attn(LN(x)); x + MLP(LN(x)). */
static int layer_transformer(Builder *b, const cJSON *l, Act *x, const char *where)
{
    int64_t heads, mlp;
    int rc;
    if ((rc = need_rank(b, x, 2, "transformer", where)) < 0 ||
        (rc = json_int(l, "heads", 4, 1, 1024, b->origin, &heads)) < 0 ||
        (rc = json_int(l, "mlp", 4 * x->s.d[1], 1, 1 << 20, b->origin, &mlp)) < 0)
        return rc;
    int64_t t = x->s.d[0], d = x->s.d[1];
    if (d % heads)
        return sh_fail(SH_E_FORMAT, "%s: %s transformer width %lld is not divisible by %lld heads",
                       b->origin, where, (long long)d, (long long)heads);
    int64_t dh = d / heads;
    char blk[64], name[128];
    layer_name(b, "block", blk, sizeof blk);
    Act h = *x;
    snprintf(name, sizeof name, "%s.ln1", blk);
    layernorm(b, &h, name);
    int qkv[3];
    static const char *proj[] = {"q", "k", "v"};
    for (int i = 0; i < 3; i++) {
        Act p = h;
        snprintf(name, sizeof name, "%s.attn.%s", blk, proj[i]);
        linear(b, &p, d, true, name, 0.02f);
        qkv[i] = split_heads(b, name, p.v, t, heads, dh, i == 1);
    }
    snprintf(name, sizeof name, "%s.attn.scores", blk);
    int sc_in[2] = {qkv[0], qkv[1]};
    int scores = node1(b, "MatMul", name, 2, sc_in, NULL);
    snprintf(name, sizeof name, "%s.attn.scale", blk);
    int sin[2] = {scores, add_scalar(b, name, 1.0f / sqrtf((float)dh))};
    snprintf(name, sizeof name, "%s.attn.scaled", blk);
    int scaled = node1(b, "Mul", name, 2, sin, NULL);
    Node *n;
    snprintf(name, sizeof name, "%s.attn.softmax", blk);
    int probs = node1(b, "Softmax", name, 1, &scaled, &n);
    node_set_int(n, "axis", -1);
    snprintf(name, sizeof name, "%s.attn.context", blk);
    int cin[2] = {probs, qkv[2]};
    int ctx = node1(b, "MatMul", name, 2, cin, NULL);
    snprintf(name, sizeof name, "%s.attn.merge", blk);
    int merged = node1(b, "Transpose", name, 1, &ctx, &n);
    int64_t perm[4] = {0, 2, 1, 3};
    node_set_ints(n, "perm", perm, 4);
    int64_t dims[2] = {t, d};
    snprintf(name, sizeof name, "%s.attn.concat_heads", blk);
    Act a = {.v = reshape_batch(b, name, merged, 2, dims), .s = x->s};
    snprintf(name, sizeof name, "%s.attn.out", blk);
    linear(b, &a, d, true, name, 0.02f);
    snprintf(name, sizeof name, "%s.add1", blk);
    int r1in[2] = {x->v, a.v};
    int r1 = node1(b, "Add", name, 2, r1in, NULL);
    Act m = {.v = r1, .s = x->s};
    snprintf(name, sizeof name, "%s.ln2", blk);
    layernorm(b, &m, name);
    snprintf(name, sizeof name, "%s.mlp.fc1", blk);
    linear(b, &m, mlp, true, name, 0.02f);
    layer_gelu(b, &m);
    snprintf(name, sizeof name, "%s.mlp.fc2", blk);
    linear(b, &m, d, true, name, 0.02f);
    snprintf(name, sizeof name, "%s.add2", blk);
    int r2in[2] = {r1, m.v};
    x->v = node1(b, "Add", name, 2, r2in, NULL);
    return 0;
}

static int layer_take_cls(Builder *b, Act *x, const char *where)
{
    int rc = need_rank(b, x, 2, "take_cls", where);
    if (rc < 0)
        return rc;
    Shape sc = {.rank = 0};
    Tensor *t = tensor_new(SH_I64, &sc);
    int idx = graph_add_const(b->g, "cls_index", t);
    int in[2] = {x->v, idx};
    Node *n;
    x->v = node1(b, "Gather", "take_cls", 2, in, &n);
    node_set_int(n, "axis", 1);
    x->s = shape_of(1, x->s.d[1]);
    return 0;
}

static int build_layer(Builder *b, const cJSON *l, Act *x, const char *where)
{
    const char *type = json_str(l, "type", NULL);
    if (!cJSON_IsObject(l) || !type)
        return sh_fail(SH_E_FORMAT, "%s: %s is not an object with a \"type\"", b->origin, where);
    if (!strcmp(type, "conv")) return layer_conv(b, l, x, where);
    if (!strcmp(type, "bn")) return layer_bn(b, x, where);
    if (!strcmp(type, "relu")) return layer_unary(b, "Relu", "relu", x);
    if (!strcmp(type, "sigmoid")) return layer_unary(b, "Sigmoid", "sigmoid", x);
    if (!strcmp(type, "tanh")) return layer_unary(b, "Tanh", "tanh", x);
    if (!strcmp(type, "gelu")) return layer_gelu(b, x);
    if (!strcmp(type, "maxpool")) return layer_pool(b, l, x, true, where);
    if (!strcmp(type, "avgpool")) return layer_pool(b, l, x, false, where);
    if (!strcmp(type, "gap")) return layer_gap(b, x, where);
    if (!strcmp(type, "flatten")) return layer_flatten(b, x);
    if (!strcmp(type, "linear")) return layer_linear(b, l, x, where);
    if (!strcmp(type, "dropout")) return layer_dropout(b, l, x);
    if (!strcmp(type, "residual")) return layer_residual(b, l, x, where);
    if (!strcmp(type, "patch_embed")) return layer_patch_embed(b, l, x, where);
    if (!strcmp(type, "cls_token")) return layer_cls_token(b, x, where);
    if (!strcmp(type, "pos_embed")) return layer_pos_embed(b, x, where);
    if (!strcmp(type, "transformer")) return layer_transformer(b, l, x, where);
    if (!strcmp(type, "layernorm")) return layer_layernorm(b, x);
    if (!strcmp(type, "take_cls")) return layer_take_cls(b, x, where);
    return sh_fail(SH_E_FORMAT, "%s: %s has unknown type \"%s\"", b->origin, where, type);
}

static int build_layers(Builder *b, const cJSON *layers, Act *x, const char *where)
{
    int i = 0, rc;
    const cJSON *l;
    cJSON_ArrayForEach(l, layers) {
        char here[256];
        snprintf(here, sizeof here, "%s%slayer %d", where, where[0] ? " > " : "", i++);
        if ((rc = build_layer(b, l, x, here)) < 0)
            return rc;
    }
    return 0;
}

static int read_input_shape(const cJSON *root, const char *origin, Shape *s)
{
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(root, "input");
    if (!cJSON_IsArray(in) || cJSON_GetArraySize(in) < 1 || cJSON_GetArraySize(in) > SH_MAX_RANK - 1)
        return sh_fail(SH_E_FORMAT, "%s: \"input\" must be the per-sample shape, e.g. [1, 28, 28]", origin);
    s->rank = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, in) {
        if (!cJSON_IsNumber(d) || d->valuedouble < 1 || d->valuedouble > 1 << 16)
            return sh_fail(SH_E_FORMAT, "%s: \"input\" dimensions must be positive integers", origin);
        s->d[s->rank++] = (int64_t)d->valuedouble;
    }
    return 0;
}

int model_build_json(const char *json, const char *origin, Graph **out)
{
    *out = NULL;
    cJSON *root = cJSON_Parse(json);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        return sh_fail(SH_E_FORMAT, "%s: not valid JSON (near \"%.20s\")", origin, at ? at : "");
    }
    Builder b = {.g = graph_new(), .origin = origin, .batch_dim = -1};
    Act x;
    int64_t seed;
    int rc;
    if ((rc = read_input_shape(root, origin, &x.s)) < 0 ||
        (rc = json_int(root, "seed", 1, 0, INT64_MAX / 2, origin, &seed)) < 0)
        goto done;
    xoshiro_seed(&b.rng, (uint64_t)seed);
    b.g->opset = 17;
    b.g->name = xstrdup(json_str(root, "name", "model"));
    const char *norm = json_str(root, "normalize", NULL);
    if (norm)
        graph_set_meta(b.g, "shears.normalize", norm);
    Shape in_shape = {.rank = x.s.rank + 1, .d = {-1}};
    for (int i = 0; i < x.s.rank; i++)
        in_shape.d[i + 1] = x.s.d[i];
    b.input = graph_add_input(b.g, "input", SH_F32, &in_shape);
    b.g->values[b.input].dim_names[0] = xstrdup("batch");
    x.v = b.input;
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(root, "layers");
    if (!cJSON_IsArray(layers) || cJSON_GetArraySize(layers) == 0) {
        rc = sh_fail(SH_E_FORMAT, "%s: \"layers\" must be a non-empty list", origin);
        goto done;
    }
    if ((rc = build_layers(&b, layers, &x, "")) < 0)
        goto done;
    int logits = graph_value(b.g, "logits");
    graph_add_node(b.g, "Identity", "output", 1, &x.v, 1, &logits);
    graph_add_output(b.g, logits);
    if ((rc = graph_toposort(b.g)) < 0 || (rc = graph_bind_ops(b.g)) < 0 || (rc = graph_prepare(b.g)) < 0)
        rc = sh_fail_prefix(rc, "%s", origin);
done:
    cJSON_Delete(root);
    if (rc < 0) {
        graph_free(b.g);
        return rc;
    }
    *out = b.g;
    return 0;
}

int model_build_file(const char *path, Graph **out)
{
    unsigned char *text;
    size_t n;
    *out = NULL;
    int rc = read_file(path, &text, &n, 1u << 20);
    if (rc < 0)
        return rc;
    rc = model_build_json((const char *)text, path, out);
    free(text);
    return rc;
}
