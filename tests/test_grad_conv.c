/* Conv and ConvTranspose backward: every algorithm of the layer kernel held
 * to a naive direct-loop reference (double sums) on random shapes, and the
 * ops checked against central finite differences (t_gradcheck) over batch
 * 1, groups, depthwise, strides, dilations, asymmetric pads, auto_pad and
 * 1-D to 3-D. */
#include "tests/support/gradcheck.h"
#include "tests/support/testutil.h"

#include "core/error.h"
#include "core/ops/grad.h"
#include "core/ops/kernels.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* Stated tolerance: float kernels against the double reference, relative
 * to the largest gradient of the case. */
#define REF_TOL 1e-5

static const char *const AUTO_PADS[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};

/* One case in ONNX terms. */
typedef struct {
    int nd;
    int64_t n, cin, cout, group;
    int64_t in[3], k[3], stride[3], dil[3], pb[3], pe[3], opad[3];
    int auto_pad; /* index into AUTO_PADS */
    bool bias, transpose, output_shape;
} Case;

static int64_t prod3(const int64_t *d) { return d[0] * d[1] * d[2]; }

static Shape shape_nc(int64_t n, int64_t c, int nd, const int64_t *sp)
{
    Shape s = {.rank = nd + 2};
    s.d[0] = n;
    s.d[1] = c;
    for (int i = 0; i < nd; i++)
        s.d[2 + i] = sp[i];
    return s;
}

/* A case with every attribute at its default; callers change what they test. */
static Case base_case(int nd, int64_t n, int64_t cin, int64_t cout, int64_t hw, int64_t k)
{
    Case c = {.nd = nd, .n = n, .cin = cin, .cout = cout, .group = 1, .bias = true};
    for (int i = 0; i < nd; i++) {
        c.in[i] = hw + i; /* unequal sides catch swapped axes */
        c.k[i] = k;
        c.stride[i] = c.dil[i] = 1;
    }
    return c;
}

/* The normalized shape of a Conv case with explicit pads (the kernel tests). */
static bool conv_shape_of(const Case *k, ConvShape *s)
{
    memset(s, 0, sizeof *s);
    s->n = k->n;
    s->cin = k->cin;
    s->cout = k->cout;
    s->group = k->group;
    for (int a = 0; a < 3; a++)
        s->in[a] = s->out[a] = s->k[a] = s->stride[a] = s->dil[a] = 1;
    for (int i = 0; i < k->nd; i++) {
        const int a = 3 - k->nd + i;
        const int64_t ek = (k->k[i] - 1) * k->dil[i] + 1, span = k->in[i] + k->pb[i] + k->pe[i];
        if (span < ek)
            return false;
        s->in[a] = k->in[i];
        s->k[a] = k->k[i];
        s->stride[a] = k->stride[i];
        s->dil[a] = k->dil[i];
        s->pad[a] = k->pb[i];
        s->out[a] = (span - ek) / k->stride[i] + 1;
    }
    return true;
}

/* ---- naive references (double) --------------------------------------- */

static bool inside(int64_t i, int64_t n) { return i >= 0 && i < n; }

/* Every (output position, weight tap, input position) triple of a conv or,
 * transposed, of the conv it is the adjoint of: out[o] uses in[i] through
 * tap t when i = o*stride + k*dil - pad. Calls visit with flat indices of
 * the "small side" (conv output / transpose input) value, the weight, the
 * "large side" value. */
typedef void (*Visit)(void *ctx, int64_t oi, int64_t wi, int64_t ii, int64_t oc_or_ic);

/* Conv: y [n, cout, out] from x [n, cin, in], w [cout, cin_g, k]. */
static void conv_triples(const ConvShape *s, Visit visit, void *ctx)
{
    const int64_t cin_g = s->cin / s->group, cout_g = s->cout / s->group;
    const int64_t *I = s->in, *O = s->out, *K = s->k;
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t oc = 0; oc < s->cout; oc++)
            for (int64_t od = 0; od < O[0]; od++)
                for (int64_t oh = 0; oh < O[1]; oh++)
                    for (int64_t ow = 0; ow < O[2]; ow++) {
                        const int64_t yi = (((n * s->cout + oc) * O[0] + od) * O[1] + oh) * O[2] + ow;
                        for (int64_t ic = 0; ic < cin_g; ic++)
                            for (int64_t kd = 0; kd < K[0]; kd++)
                                for (int64_t kh = 0; kh < K[1]; kh++)
                                    for (int64_t kw = 0; kw < K[2]; kw++) {
                                        const int64_t id = od * s->stride[0] + kd * s->dil[0] - s->pad[0];
                                        const int64_t ih = oh * s->stride[1] + kh * s->dil[1] - s->pad[1];
                                        const int64_t iw = ow * s->stride[2] + kw * s->dil[2] - s->pad[2];
                                        if (!inside(id, I[0]) || !inside(ih, I[1]) || !inside(iw, I[2]))
                                            continue;
                                        const int64_t xi =
                                            (((n * s->cin + oc / cout_g * cin_g + ic) * I[0] + id) * I[1] + ih) * I[2] + iw;
                                        const int64_t wi = (((oc * cin_g + ic) * K[0] + kd) * K[1] + kh) * K[2] + kw;
                                        visit(ctx, yi, wi, xi, oc);
                                    }
                    }
}

typedef struct {
    double *dx, *dw, *db;
    const float *dy, *x, *w;
} RefGrads;

/* Conv: y[yi] += w[wi] x[xi]. */
static void conv_visit(void *ctx, int64_t yi, int64_t wi, int64_t xi, int64_t oc)
{
    (void)oc;
    RefGrads *g = ctx;
    g->dx[xi] += (double)g->dy[yi] * g->w[wi];
    g->dw[wi] += (double)g->dy[yi] * g->x[xi];
}

/* ConvTranspose s is the adjoint of conv a: y (a's input side) [yi'] +=
 * w x (a's output side): the "output" index of a is the transpose's input. */
static void convt_visit(void *ctx, int64_t xi, int64_t wi, int64_t yi, int64_t ic)
{
    (void)ic;
    RefGrads *g = ctx;
    g->dx[xi] += (double)g->dy[yi] * g->w[wi];
    g->dw[wi] += (double)g->dy[yi] * g->x[xi];
}

static void ref_bias(double *db, const float *dy, int64_t n, int64_t c, int64_t P)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < c; k++)
            for (int64_t p = 0; p < P; p++)
                db[k] += dy[(i * c + k) * P + p];
}

/* The conv a that ConvTranspose s is the adjoint of, with a's weight
 * [cin_s, cout_s/group, k] read as [a.cout, a.cin/group, k]: the same
 * memory as the transpose's weight. */
static ConvShape adjoint(const ConvShape *s)
{
    ConvShape a = *s;
    a.cin = s->cout;
    a.cout = s->cin;
    for (int i = 0; i < 3; i++) {
        a.in[i] = s->out[i];
        a.out[i] = s->in[i];
    }
    return a;
}

/* Max |got - (base + ref)| over n values, relative to max |ref| (>= 1). */
static double rel_diff(const float *got, const float *base, const double *ref, int64_t n)
{
    double worst = 0, scale = 1;
    for (int64_t i = 0; i < n; i++)
        scale = fabs(ref[i]) > scale ? fabs(ref[i]) : scale;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)base[i] - ref[i]);
        worst = d > worst ? d : worst;
    }
    return worst / scale;
}

/* ---- kernel vs reference ------------------------------------------------ */

static const char *algo_name(ConvBwdAlgo a)
{
    static const char *const names[] = {"direct", "pointwise", "gemm", "winograd", "flipped"};
    return names[a];
}

/* Runs plan p of conv s (or the transpose) with gradients pre-filled with
 * random values (so += is checked) and returns the worst relative
 * difference from the reference. */
static double kernel_vs_ref(TRng *r, const ConvShape *s, bool transpose, const ConvBwdPlan *p,
                            const char *label)
{
    const int64_t cin_g = s->cin / s->group, taps = prod3(s->k);
    const int64_t nx = s->n * s->cin * prod3(s->in), ny = s->n * s->cout * prod3(s->out);
    const int64_t nw = transpose ? s->cin * (s->cout / s->group) * taps : s->cout * cin_g * taps;
    float *x = malloc((size_t)nx * sizeof *x), *w = malloc((size_t)nw * sizeof *w);
    float *dy = malloc((size_t)ny * sizeof *dy);
    float *dx = malloc((size_t)nx * sizeof *dx), *dw = malloc((size_t)nw * sizeof *dw);
    float *db = malloc((size_t)s->cout * sizeof *db);
    float *bx = malloc((size_t)nx * sizeof *bx), *bw = malloc((size_t)nw * sizeof *bw);
    float *bb = malloc((size_t)s->cout * sizeof *bb);
    double *rx = calloc((size_t)nx, sizeof *rx), *rw = calloc((size_t)nw, sizeof *rw);
    double *rb = calloc((size_t)s->cout, sizeof *rb);
    float *v[] = {x, w, dy, dx, dw, db};
    int64_t len[] = {nx, nw, ny, nx, nw, s->cout};
    for (int k = 0; k < 6; k++)
        for (int64_t i = 0; i < len[k]; i++)
            v[k][i] = trng_uniform(r, -1, 1);
    memcpy(bx, dx, (size_t)nx * sizeof *bx);
    memcpy(bw, dw, (size_t)nw * sizeof *bw);
    memcpy(bb, db, (size_t)s->cout * sizeof *bb);
    RefGrads g = {.dx = rx, .dw = rw, .db = rb, .dy = dy, .x = x, .w = w};
    if (transpose) {
        const ConvShape a = adjoint(s);
        conv_triples(&a, convt_visit, &g);
        size_t sb = conv_transpose_bwd_scratch(s);
        float *scratch = aligned_alloc(64, (sb + 63) / 64 * 64 + 64);
        conv_transpose_backward(dx, dw, db, dy, x, w, s, scratch);
        free(scratch);
    } else {
        conv_triples(s, conv_visit, &g);
        float *scratch = aligned_alloc(64, (p->scratch_bytes + 63) / 64 * 64 + 64);
        conv_backward(dx, dw, db, dy, x, w, s, p, scratch, false);
        free(scratch);
    }
    ref_bias(rb, dy, s->n, s->cout, prod3(s->out));
    double ex = rel_diff(dx, bx, rx, nx), ew = rel_diff(dw, bw, rw, nw), eb = rel_diff(db, bb, rb, s->cout);
    if (!transpose) { /* told to assign, dx is written in full over stale bytes */
        float *ax = malloc((size_t)nx * sizeof *ax), *zero = calloc((size_t)nx + 1, sizeof *zero);
        for (int64_t i = 0; i < nx; i++)
            ax[i] = NAN;
        float *scratch = aligned_alloc(64, (p->scratch_bytes + 63) / 64 * 64 + 64);
        conv_backward(ax, NULL, NULL, dy, x, w, s, p, scratch, true);
        double ea = rel_diff(ax, zero, rx, nx);
        for (int64_t i = 0; i < nx; i++)
            ea = isnan(ax[i]) ? INFINITY : ea;
        printf("%s: assigned dX max relative diff %.2e\n", label, ea);
        ex = fmax(ex, ea);
        free(scratch), free(ax), free(zero);
    }
    printf("%s: max relative diff dX %.2e dW %.2e dB %.2e\n", label, ex, ew, eb);
    for (int k = 0; k < 6; k++)
        free(v[k]);
    free(bx), free(bw), free(bb), free(rx), free(rw), free(rb);
    return fmax(ex, fmax(ew, eb));
}

/* A random conv case: 1-3 spatial dims, groups (some depthwise), strides,
 * dilations, asymmetric pads, batch 1 every third draw. */
static Case random_case(TRng *r, int draw)
{
    Case k = {.nd = (int)trng_int(r, 1, 3)};
    k.n = draw % 3 == 0 ? 1 : trng_int(r, 2, 3);
    k.group = trng_int(r, 1, 3);
    k.cin = k.group * trng_int(r, 1, 3);
    k.cout = k.group * trng_int(r, 1, 5);
    if (draw % 4 == 1) /* depthwise */
        k.cin = k.group, k.cout = k.group * trng_int(r, 1, 2);
    for (int i = 0; i < k.nd; i++) {
        k.in[i] = trng_int(r, k.nd == 3 ? 3 : 4, k.nd == 3 ? 5 : 9);
        k.k[i] = trng_int(r, 1, 3);
        k.stride[i] = trng_int(r, 1, 2);
        k.dil[i] = trng_int(r, 1, 2);
        k.pb[i] = trng_int(r, 0, 2);
        k.pe[i] = trng_int(r, 0, 2);
    }
    return k;
}

/* Holds every plan that applies to s (the default, each algorithm at a
 * few chunk sizes) to the reference; returns the worst difference. */
static double check_plans(TRng *r, const ConvShape *s, const char *what, int *runs)
{
    ConvBwdPlan plans[16];
    int np = 0;
    plans[np++] = conv_bwd_plan(s, 1);
    plans[np++] = conv_bwd_plan(s, 2);
    if (s->cin / s->group == 1)
        plans[np++] = conv_bwd_plan_with(s, CONV_BWD_DIRECT, CONV_BWD_DIRECT, 0, 1);
    for (int64_t chunk = 0; chunk <= 2; chunk++) {
        plans[np++] = conv_bwd_plan_with(s, CONV_BWD_GEMM, CONV_BWD_GEMM, chunk, 1);
        if (conv_winograd_ok(s))
            plans[np++] = conv_bwd_plan_with(s, CONV_BWD_WINOGRAD, CONV_BWD_GEMM, chunk, 1);
        if (conv_bwd_flipped_ok(s))
            plans[np++] = conv_bwd_plan_with(s, CONV_BWD_GEMM, CONV_BWD_FLIPPED, chunk, 1);
    }
    double worst = 0;
    for (int i = 0; i < np; i++) {
        char label[200];
        const ConvBwdPlan *p = &plans[i];
        snprintf(label, sizeof label, "%s n%lld %lld->%lld g%lld dW %s dX %s chunks %lld/%lld/%lld", what,
                 (long long)s->n, (long long)s->cin, (long long)s->cout, (long long)s->group, algo_name(p->dw_algo),
                 algo_name(p->dx_algo), (long long)p->gemm_chunk, (long long)p->wino_chunk, (long long)p->flip_chunk);
        worst = fmax(worst, kernel_vs_ref(r, s, false, p, label));
        (*runs)++;
    }
    return worst;
}

static void test_conv_backward_kernels_match_naive_reference(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 11);
    double worst = 0;
    int runs = 0;
    for (int draw = 0; draw < 40; draw++) {
        Case k = random_case(&r, draw);
        if (draw % 10 == 3) /* pointwise */
            for (int i = 0; i < k.nd; i++)
                k.k[i] = k.stride[i] = 1, k.pb[i] = k.pe[i] = 0;
        ConvShape s;
        if (conv_shape_of(&k, &s))
            worst = fmax(worst, check_plans(&r, &s, "random", &runs));
    }
    /* Winograd's ground: 2-D 3x3 stride 1, odd and even sizes, any pads */
    for (int draw = 0; draw < 12; draw++) {
        Case k = random_case(&r, draw);
        k.nd = 2;
        if (draw % 4 == 1)
            k.cin = k.group * 9, k.cout = k.group * 8;
        for (int i = 0; i < 2; i++) {
            k.in[i] = trng_int(&r, 3, 12);
            k.k[i] = 3;
            k.stride[i] = k.dil[i] = 1;
        }
        ConvShape s;
        if (conv_shape_of(&k, &s))
            worst = fmax(worst, check_plans(&r, &s, "3x3 s1", &runs));
    }
    printf("conv backward kernels: %d runs, worst relative diff %.2e (tolerance %.0e)\n", runs, worst, REF_TOL);
    assert_true(runs > 200);
    assert_true(worst <= REF_TOL);
}

static void test_conv_transpose_backward_kernel_matches_naive_reference(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 12);
    double worst = 0;
    int ran = 0;
    for (int draw = 0; draw < 24; draw++) {
        Case k = random_case(&r, draw);
        /* the transpose's output side: out = (in-1)*stride + ek - pb - pe, pads small enough */
        ConvShape s;
        memset(&s, 0, sizeof s);
        s.n = k.n, s.cin = k.cin, s.cout = k.cout, s.group = k.group;
        for (int a = 0; a < 3; a++)
            s.in[a] = s.out[a] = s.k[a] = s.stride[a] = s.dil[a] = 1;
        bool ok = true;
        for (int i = 0; i < k.nd; i++) {
            const int a = 3 - k.nd + i;
            s.in[a] = k.in[i] - 2;
            s.k[a] = k.k[i];
            s.stride[a] = k.stride[i];
            s.dil[a] = k.dil[i];
            s.pad[a] = k.pb[i];
            s.out[a] = (s.in[a] - 1) * s.stride[a] + (s.k[a] - 1) * s.dil[a] + 1 - k.pb[i] - k.pe[i];
            ok &= s.out[a] >= 1;
        }
        if (!ok)
            continue;
        char label[160];
        snprintf(label, sizeof label, "convT %dd n%lld %lld->%lld g%lld in %lldx%lldx%lld out %lldx%lldx%lld", k.nd,
                 (long long)k.n, (long long)k.cin, (long long)k.cout, (long long)k.group, (long long)s.in[0],
                 (long long)s.in[1], (long long)s.in[2], (long long)s.out[0], (long long)s.out[1], (long long)s.out[2]);
        worst = fmax(worst, kernel_vs_ref(&r, &s, true, NULL, label));
        ran++;
    }
    printf("conv transpose backward kernel: %d runs, worst relative diff %.2e (tolerance %.0e)\n", ran, worst,
           REF_TOL);
    assert_true(ran > 10);
    assert_true(worst <= REF_TOL);
}

/* ---- finite differences through the ops -------------------------------- */

static void set_attrs(Node *n, const Case *k)
{
    int64_t pads[6];
    for (int i = 0; i < k->nd; i++) {
        pads[i] = k->pb[i];
        pads[k->nd + i] = k->pe[i];
    }
    node_set_ints(n, "strides", k->stride, k->nd);
    node_set_ints(n, "dilations", k->dil, k->nd);
    if (k->auto_pad == 0 && !k->output_shape)
        node_set_ints(n, "pads", pads, 2 * k->nd);
    else if (k->auto_pad)
        node_set_str(n, "auto_pad", AUTO_PADS[k->auto_pad]);
    node_set_int(n, "group", k->group);
    node_set_ints(n, "kernel_shape", k->k, k->nd);
    if (k->transpose) {
        node_set_ints(n, "output_padding", k->opad, k->nd);
        if (k->output_shape) { /* the full output minus the pads, as explicit sizes */
            int64_t os[3];
            for (int i = 0; i < k->nd; i++)
                os[i] = (k->in[i] - 1) * k->stride[i] + k->opad[i] + (k->k[i] - 1) * k->dil[i] + 1 - k->pb[i] -
                        k->pe[i];
            node_set_ints(n, "output_shape", os, k->nd);
        }
    }
}

/* Gradcheck of the Conv/ConvTranspose node of case k; returns the error ratio. */
static double gradcheck_case(const Case *k, const char *label, uint64_t seed)
{
    TRng r;
    trng_seed(&r, seed);
    Shape xs = shape_nc(k->n, k->cin, k->nd, k->in);
    Shape ws = k->transpose ? shape_nc(k->cin, k->cout / k->group, k->nd, k->k)
                            : shape_nc(k->cout, k->cin / k->group, k->nd, k->k);
    Shape bs = shape_of(1, k->cout);
    Tensor *in[3] = {t_rand(&r, &xs, -1, 1), t_rand(&r, &ws, -1, 1), k->bias ? t_rand(&r, &bs, -1, 1) : NULL};
    Node *node = t_node(k->transpose ? "ConvTranspose" : "Conv", k->bias ? 3 : 2, 1);
    set_attrs(node, k);
    GradCheck gc = {.seed = seed};
    double e = t_gradcheck(label, node, 13, in, k->bias ? 3 : 2, 1, &gc);
    if (e < 0 || e > 1)
        print_message("%s: error %.3f of tolerance (%s)\n", label, e, sh_errmsg());
    for (int i = 0; i < 3; i++)
        tensor_free(in[i]);
    t_node_free(node);
    return e;
}

static void check_cases(const Case *cases, const char *const *labels, int n)
{
    double worst = 0;
    bool failed = false;
    for (int i = 0; i < n; i++) {
        double e = gradcheck_case(&cases[i], labels[i], (uint64_t)(i + 1) * 7919);
        failed |= e < 0 || e > 1;
        worst = fmax(worst, e);
    }
    printf("worst gradcheck error %.3f of tolerance over %d cases\n", worst, n);
    assert_false(failed);
}

static void test_conv_backward_matches_finite_differences(void **state)
{
    (void)state;
    enum { N = 15 };
    Case c[N];
    const char *labels[N];
    int i = 0;
    labels[i] = "2-D 3x3 pad 1 with bias";
    c[i] = base_case(2, 2, 3, 4, 5, 3);
    c[i].pb[0] = c[i].pb[1] = c[i].pe[0] = c[i].pe[1] = 1;
    labels[++i] = "2-D batch 1, no bias";
    c[i] = base_case(2, 1, 2, 3, 4, 3);
    c[i].bias = false;
    labels[++i] = "2-D stride 2, asymmetric pads";
    c[i] = base_case(2, 2, 3, 2, 6, 3);
    c[i].stride[0] = c[i].stride[1] = 2;
    c[i].pb[0] = 2, c[i].pe[0] = 0, c[i].pb[1] = 0, c[i].pe[1] = 1;
    labels[++i] = "2-D dilation 2";
    c[i] = base_case(2, 2, 2, 3, 6, 2);
    c[i].dil[0] = c[i].dil[1] = 2;
    c[i].pb[1] = 1;
    labels[++i] = "2-D groups 2";
    c[i] = base_case(2, 2, 4, 6, 5, 3);
    c[i].group = 2;
    c[i].pb[0] = c[i].pe[1] = 1;
    labels[++i] = "2-D depthwise 3x3 stride 2";
    c[i] = base_case(2, 2, 4, 4, 6, 3);
    c[i].group = 4;
    c[i].stride[0] = c[i].stride[1] = 2;
    c[i].pb[0] = c[i].pb[1] = c[i].pe[0] = c[i].pe[1] = 1;
    labels[++i] = "2-D depthwise multiplier 2, dilation 2";
    c[i] = base_case(2, 1, 3, 6, 6, 2);
    c[i].group = 3;
    c[i].dil[0] = c[i].dil[1] = 2;
    labels[++i] = "2-D pointwise 1x1";
    c[i] = base_case(2, 2, 5, 3, 4, 1);
    labels[++i] = "1-D stride 2 pads 2/1";
    c[i] = base_case(1, 2, 3, 4, 9, 3);
    c[i].stride[0] = 2, c[i].pb[0] = 2, c[i].pe[0] = 1;
    labels[++i] = "3-D 2x2x2 pad 1";
    c[i] = base_case(3, 1, 2, 3, 3, 2);
    c[i].pb[0] = c[i].pe[2] = 1;
    labels[++i] = "2-D auto_pad SAME_UPPER stride 2";
    c[i] = base_case(2, 2, 2, 3, 5, 2);
    c[i].auto_pad = 1;
    c[i].stride[0] = c[i].stride[1] = 2;
    labels[++i] = "2-D auto_pad SAME_LOWER";
    c[i] = base_case(2, 1, 2, 2, 5, 2);
    c[i].auto_pad = 2;
    labels[++i] = "2-D auto_pad VALID";
    c[i] = base_case(2, 2, 3, 2, 5, 3);
    c[i].auto_pad = 3;
    labels[++i] = "2-D 3x3 9->8 pad 1 (Winograd dW, dX as a flipped conv)";
    c[i] = base_case(2, 2, 9, 8, 5, 3);
    c[i].pb[0] = c[i].pb[1] = c[i].pe[0] = c[i].pe[1] = 1;
    labels[++i] = "1-D depthwise no bias";
    c[i] = base_case(1, 3, 2, 2, 7, 3);
    c[i].group = 2;
    c[i].bias = false;
    c[i].pb[0] = 1;
    assert_int_equal(i + 1, N);
    check_cases(c, labels, N);
}

static void test_conv_transpose_backward_matches_finite_differences(void **state)
{
    (void)state;
    enum { N = 9 };
    Case c[N];
    const char *labels[N];
    int i = 0;
    labels[i] = "ConvT 2-D 3x3 stride 1";
    c[i] = base_case(2, 2, 3, 2, 3, 3);
    labels[++i] = "ConvT 2-D stride 2, output_padding 1, pads";
    c[i] = base_case(2, 1, 2, 3, 3, 3);
    c[i].stride[0] = c[i].stride[1] = 2;
    c[i].opad[0] = c[i].opad[1] = 1;
    c[i].pb[0] = c[i].pe[1] = 1;
    labels[++i] = "ConvT 2-D groups 2, dilation 2";
    c[i] = base_case(2, 2, 4, 2, 3, 2);
    c[i].group = 2;
    c[i].dil[0] = c[i].dil[1] = 2;
    labels[++i] = "ConvT 2-D depthwise, no bias";
    c[i] = base_case(2, 2, 3, 3, 4, 3);
    c[i].group = 3;
    c[i].bias = false;
    labels[++i] = "ConvT 1-D stride 3";
    c[i] = base_case(1, 2, 2, 3, 4, 2);
    c[i].stride[0] = 3;
    labels[++i] = "ConvT 3-D stride 2";
    c[i] = base_case(3, 1, 2, 2, 2, 2);
    c[i].stride[0] = c[i].stride[1] = c[i].stride[2] = 2;
    labels[++i] = "ConvT 2-D output_shape (pads derived)";
    c[i] = base_case(2, 1, 2, 2, 3, 3);
    c[i].stride[0] = c[i].stride[1] = 2;
    c[i].pb[0] = 1, c[i].pe[0] = 2, c[i].pb[1] = 0, c[i].pe[1] = 1;
    c[i].output_shape = true;
    labels[++i] = "ConvT 2-D auto_pad SAME_UPPER stride 2";
    c[i] = base_case(2, 2, 2, 2, 3, 3);
    c[i].auto_pad = 1;
    c[i].stride[0] = c[i].stride[1] = 2;
    labels[++i] = "ConvT 2-D auto_pad SAME_LOWER";
    c[i] = base_case(2, 1, 2, 3, 4, 2);
    c[i].auto_pad = 2;
    for (int j = 0; j < N; j++)
        c[j].transpose = true;
    assert_int_equal(i + 1, N);
    check_cases(c, labels, N);
}

/* Random cases through the ops: 1-3 spatial dims, groups, depthwise,
 * strides, dilations, asymmetric pads, bias or not, batch 1 every third. */
static void test_conv_backward_random_shapes_match_finite_differences(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 21);
    double worst = 0;
    int ran = 0;
    for (int draw = 0; draw < 24; draw++) {
        Case k = random_case(&r, draw);
        k.n = k.n > 2 ? 2 : k.n; /* small: every probe reruns the op */
        k.bias = trng_int(&r, 0, 1);
        k.transpose = draw % 3 == 2;
        ConvShape s;
        if (k.transpose) {
            bool ok = true;
            for (int i = 0; i < k.nd; i++) {
                k.in[i] = trng_int(&r, 2, k.nd == 3 ? 3 : 5);
                k.opad[i] = trng_int(&r, 0, k.stride[i] - 1);
                ok &= (k.in[i] - 1) * k.stride[i] + k.opad[i] + (k.k[i] - 1) * k.dil[i] + 1 - k.pb[i] - k.pe[i] >= 1;
            }
            if (!ok)
                continue;
        } else if (!conv_shape_of(&k, &s)) {
            continue;
        }
        char label[160];
        snprintf(label, sizeof label, "random %s %dd n%lld %lld->%lld g%lld%s", k.transpose ? "ConvT" : "Conv", k.nd,
                 (long long)k.n, (long long)k.cin, (long long)k.cout, (long long)k.group, k.bias ? " bias" : "");
        double e = gradcheck_case(&k, label, 5000 + (uint64_t)draw);
        assert_true(e >= 0 && e <= 1);
        worst = fmax(worst, e);
        ran++;
    }
    printf("random conv cases: %d, worst gradcheck error %.3f of tolerance\n", ran, worst);
    assert_true(ran >= 15);
}

static void test_conv_backward_scratch_covers_plan_and_stays_under_cap(void **state)
{
    (void)state;
    Case k = base_case(2, 256, 128, 128, 14, 3);
    k.pb[0] = k.pb[1] = k.pe[0] = k.pe[1] = 1;
    ConvShape s;
    assert_true(conv_shape_of(&k, &s));
    ConvBwdPlan p = conv_bwd_plan(&s, 1);
    printf("256x128->128 14x14 3x3: dW %s (chunk %lld), dX %s (chunk %lld), %.1f MB scratch\n",
           algo_name(p.dw_algo), (long long)p.wino_chunk, algo_name(p.dx_algo), (long long)p.flip_chunk,
           (double)p.scratch_bytes / 1e6);
    assert_int_equal(p.dw_algo, CONV_BWD_WINOGRAD);
    assert_int_equal(p.dx_algo, CONV_BWD_FLIPPED);
    assert_true(p.wino_chunk >= 1 && p.wino_chunk < 256 && p.flip_chunk >= 1 && p.flip_chunk < 256);
    assert_true(p.scratch_bytes <= 2 * CONV_BATCH_SCRATCH_CAP);
    for (int t = 2; t <= 8; t++)
        assert_int_equal(conv_bwd_plan(&s, t).scratch_bytes, p.scratch_bytes);
    /* the op's bwd_scratch is the plan's */
    Node *node = t_node("Conv", 2, 1);
    set_attrs(node, &k);
    Shape xs = shape_nc(k.n, k.cin, 2, k.in), ws = shape_nc(k.cout, k.cin, 2, k.k);
    Tensor x = {.dtype = SH_F32, .shape = xs}, w = {.dtype = SH_F32, .shape = ws};
    Shape ys = shape_nc(k.n, k.cout, 2, k.in);
    Tensor y = {.dtype = SH_F32, .shape = ys};
    Tensor *in[2] = {&x, &w}, *out[1] = {&y};
    OpCtx c = {.node = node, .opset = 13, .n_in = 2, .n_out = 1, .in = in, .out = out, .training = 1};
    assert_int_equal(node->op->bwd_scratch(&c), p.scratch_bytes);
    t_node_free(node);
}

static void test_conv_backward_without_output_gradient_changes_nothing(void **state)
{
    (void)state;
    TRng r;
    trng_seed(&r, 5);
    Case k = base_case(2, 2, 2, 3, 4, 3);
    Shape xs = shape_nc(k.n, k.cin, 2, k.in), ws = shape_nc(k.cout, k.cin, 2, k.k);
    Tensor *in[2] = {t_rand(&r, &xs, -1, 1), t_rand(&r, &ws, -1, 1)};
    Node *node = t_node("Conv", 2, 1);
    set_attrs(node, &k);
    Tensor *y = NULL;
    assert_int_equal(t_run(node, 13, in, 2, &y, 1), 0);
    Tensor *gx = t_rand(&r, &xs, -1, 1), *keep = tensor_clone(gx);
    Tensor *gout[1] = {NULL}, *gin[2] = {gx, NULL};
    OpCtx c = {.node = node, .opset = 13, .n_in = 2, .n_out = 1, .in = in, .out = &y};
    assert_int_equal(node->op->backward(&c, gout, gin), 0);
    assert_true(t_max_diff("dX untouched", gx, keep) == 0);
    tensor_free(gx), tensor_free(keep), tensor_free(y), tensor_free(in[0]), tensor_free(in[1]);
    t_node_free(node);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_backward_kernels_match_naive_reference),
        cmocka_unit_test(test_conv_transpose_backward_kernel_matches_naive_reference),
        cmocka_unit_test(test_conv_backward_matches_finite_differences),
        cmocka_unit_test(test_conv_transpose_backward_matches_finite_differences),
        cmocka_unit_test(test_conv_backward_random_shapes_match_finite_differences),
        cmocka_unit_test(test_conv_backward_scratch_covers_plan_and_stays_under_cap),
        cmocka_unit_test(test_conv_backward_without_output_gradient_changes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
