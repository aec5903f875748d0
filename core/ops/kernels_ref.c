/* Naive reference kernels: the formulas of the ONNX spec as plain nested
 * loops with double accumulators. Written independently of the fast
 * kernels (gathers where those scatter, bounds tests where those
 * precompute ranges) so that tests comparing the two mean something. */
#include "kernels.h"

#include <float.h>
#include <math.h>
#include <string.h>

static int64_t prod3(const int64_t *d) { return d[0] * d[1] * d[2]; }

static bool inside(int64_t i, int64_t n) { return i >= 0 && i < n; }

/* ---- conv ------------------------------------------------------------ */

void conv_forward_ref(float *y, const float *x, const float *w, const float *b, const ConvShape *s)
{
    const int64_t cin_g = s->cin / s->group, cout_g = s->cout / s->group;
    const int64_t *I = s->in, *O = s->out, *K = s->k;
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t oc = 0; oc < s->cout; oc++) {
            const int64_t g = oc / cout_g;
            for (int64_t od = 0; od < O[0]; od++)
                for (int64_t oh = 0; oh < O[1]; oh++)
                    for (int64_t ow = 0; ow < O[2]; ow++) {
                        double acc = b ? b[oc] : 0.0;
                        for (int64_t ic = 0; ic < cin_g; ic++)
                            for (int64_t kd = 0; kd < K[0]; kd++)
                                for (int64_t kh = 0; kh < K[1]; kh++)
                                    for (int64_t kw = 0; kw < K[2]; kw++) {
                                        int64_t id = od * s->stride[0] + kd * s->dil[0] - s->pad[0];
                                        int64_t ih = oh * s->stride[1] + kh * s->dil[1] - s->pad[1];
                                        int64_t iw = ow * s->stride[2] + kw * s->dil[2] - s->pad[2];
                                        if (!inside(id, I[0]) || !inside(ih, I[1]) || !inside(iw, I[2]))
                                            continue;
                                        int64_t xi = (((n * s->cin + g * cin_g + ic) * I[0] + id) * I[1] + ih) * I[2] + iw;
                                        int64_t wi = (((oc * cin_g + ic) * K[0] + kd) * K[1] + kh) * K[2] + kw;
                                        acc += (double)x[xi] * w[wi];
                                    }
                        y[(((n * s->cout + oc) * O[0] + od) * O[1] + oh) * O[2] + ow] = (float)acc;
                    }
        }
}

/* Input index i with i*stride + k*dil - pad == o, or -1. */
static int64_t transpose_source(int64_t o, int64_t k, int64_t stride, int64_t dil, int64_t pad,
                                int64_t n_in)
{
    int64_t t = o + pad - k * dil;
    if (t < 0 || t % stride != 0 || t / stride >= n_in)
        return -1;
    return t / stride;
}

void conv_transpose_forward_ref(float *y, const float *x, const float *w, const float *b,
                                const ConvShape *s)
{
    const int64_t cin_g = s->cin / s->group, cout_g = s->cout / s->group;
    const int64_t *I = s->in, *O = s->out, *K = s->k;
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t oc = 0; oc < s->cout; oc++) {
            const int64_t g = oc / cout_g, ocg = oc % cout_g;
            for (int64_t od = 0; od < O[0]; od++)
                for (int64_t oh = 0; oh < O[1]; oh++)
                    for (int64_t ow = 0; ow < O[2]; ow++) {
                        double acc = b ? b[oc] : 0.0;
                        for (int64_t ic = 0; ic < cin_g; ic++)
                            for (int64_t kd = 0; kd < K[0]; kd++)
                                for (int64_t kh = 0; kh < K[1]; kh++)
                                    for (int64_t kw = 0; kw < K[2]; kw++) {
                                        int64_t id = transpose_source(od, kd, s->stride[0], s->dil[0], s->pad[0], I[0]);
                                        int64_t ih = transpose_source(oh, kh, s->stride[1], s->dil[1], s->pad[1], I[1]);
                                        int64_t iw = transpose_source(ow, kw, s->stride[2], s->dil[2], s->pad[2], I[2]);
                                        if (id < 0 || ih < 0 || iw < 0)
                                            continue;
                                        int64_t c_in = g * cin_g + ic;
                                        int64_t xi = (((n * s->cin + c_in) * I[0] + id) * I[1] + ih) * I[2] + iw;
                                        int64_t wi = (((c_in * cout_g + ocg) * K[0] + kd) * K[1] + kh) * K[2] + kw;
                                        acc += (double)x[xi] * w[wi];
                                    }
                        y[(((n * s->cout + oc) * O[0] + od) * O[1] + oh) * O[2] + ow] = (float)acc;
                    }
        }
}

/* ---- pool ------------------------------------------------------------ */

/* Calls visit for every kernel position of output o of plane (n, c):
 * pos[3] is the input position, possibly outside the input. */
typedef void (*PoolVisit)(void *acc, const int64_t *pos);

static void pool_window(const PoolShape *s, const int64_t *o, PoolVisit visit, void *acc)
{
    int64_t pos[3];
    for (int64_t kd = 0; kd < s->k[0]; kd++)
        for (int64_t kh = 0; kh < s->k[1]; kh++)
            for (int64_t kw = 0; kw < s->k[2]; kw++) {
                const int64_t kk[3] = {kd, kh, kw};
                for (int i = 0; i < 3; i++)
                    pos[i] = o[i] * s->stride[i] + kk[i] * s->dil[i] - s->pad[i];
                visit(acc, pos);
            }
}

typedef struct {
    const PoolShape *s;
    const float *x; /* plane */
    double sum, p;
    float best;
    int64_t best_pos[3], valid, padded;
    bool found;
} PoolAcc;

static bool pos_inside(const PoolShape *s, const int64_t *pos)
{
    return inside(pos[0], s->in[0]) && inside(pos[1], s->in[1]) && inside(pos[2], s->in[2]);
}

static float plane_at(const PoolAcc *a, const int64_t *pos)
{
    return a->x[(pos[0] * a->s->in[1] + pos[1]) * a->s->in[2] + pos[2]];
}

static void visit_max(void *acc, const int64_t *pos)
{
    PoolAcc *a = acc;
    if (!pos_inside(a->s, pos))
        return;
    float v = plane_at(a, pos);
    if (!a->found || v > a->best) {
        a->best = v;
        memcpy(a->best_pos, pos, sizeof a->best_pos);
        a->found = true;
    }
}

static void visit_sum(void *acc, const int64_t *pos)
{
    PoolAcc *a = acc;
    bool in_padded = true;
    for (int i = 0; i < 3; i++)
        if (pos[i] < -a->s->pad[i] || pos[i] >= a->s->in[i] + a->s->pad_end[i])
            in_padded = false;
    a->padded += in_padded;
    if (!pos_inside(a->s, pos))
        return;
    a->sum += plane_at(a, pos);
    a->valid++;
}

static void visit_lp(void *acc, const int64_t *pos)
{
    PoolAcc *a = acc;
    if (pos_inside(a->s, pos))
        a->sum += pow(fabs((double)plane_at(a, pos)), a->p);
}

/* Runs kind over every output of every plane; finish writes output i. */
static void pool_ref(const PoolShape *s, const float *x, PoolVisit visit, double p,
                     void (*finish)(const PoolAcc *a, int64_t plane, int64_t i, void *arg), void *arg)
{
    const int64_t in_vol = prod3(s->in), out_vol = prod3(s->out);
    for (int64_t plane = 0; plane < s->n * s->c; plane++)
        for (int64_t i = 0; i < out_vol; i++) {
            int64_t o[3] = {i / (s->out[1] * s->out[2]), i / s->out[2] % s->out[1], i % s->out[2]};
            PoolAcc a = {.s = s, .x = x + plane * in_vol, .p = p};
            pool_window(s, o, visit, &a);
            finish(&a, plane, i, arg);
        }
}

typedef struct {
    float *y;
    int64_t *indices;
    int col_major, count_include_pad;
    double p;
} PoolOut;

static void finish_max(const PoolAcc *a, int64_t plane, int64_t i, void *arg)
{
    PoolOut *po = arg;
    const int64_t *in = a->s->in, *q = a->best_pos;
    int64_t out_vol = prod3(a->s->out);
    po->y[plane * out_vol + i] = a->found ? a->best : -FLT_MAX;
    if (!po->indices)
        return;
    int64_t local = po->col_major ? q[0] + q[1] * in[0] + q[2] * in[0] * in[1]
                                  : (q[0] * in[1] + q[1]) * in[2] + q[2];
    po->indices[plane * out_vol + i] = a->found ? plane * prod3(in) + local : -1;
}

static void finish_avg(const PoolAcc *a, int64_t plane, int64_t i, void *arg)
{
    PoolOut *po = arg;
    int64_t count = po->count_include_pad ? a->padded : a->valid;
    po->y[plane * prod3(a->s->out) + i] = count ? (float)(a->sum / (double)count) : 0.0f;
}

static void finish_lp(const PoolAcc *a, int64_t plane, int64_t i, void *arg)
{
    PoolOut *po = arg;
    po->y[plane * prod3(a->s->out) + i] = (float)pow(a->sum, 1.0 / po->p);
}

void maxpool_forward_ref(float *y, int64_t *indices, const float *x, const PoolShape *s,
                         int col_major)
{
    PoolOut po = {.y = y, .indices = indices, .col_major = col_major};
    pool_ref(s, x, visit_max, 0, finish_max, &po);
}

void avgpool_forward_ref(float *y, const float *x, const PoolShape *s, int count_include_pad)
{
    PoolOut po = {.y = y, .count_include_pad = count_include_pad};
    pool_ref(s, x, visit_sum, 0, finish_avg, &po);
}

void lppool_forward_ref(float *y, const float *x, const PoolShape *s, double p)
{
    PoolOut po = {.y = y, .p = p};
    pool_ref(s, x, visit_lp, p, finish_lp, &po);
}

/* ---- gemm ------------------------------------------------------------ */

void gemm_ref(float *y, const float *a, const float *b, const float *c, int64_t M, int64_t N,
              int64_t K, int trans_a, int trans_b, float alpha, float beta, int64_t cm, int64_t cn)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0;
            for (int64_t k = 0; k < K; k++) {
                double av = trans_a ? a[k * M + i] : a[i * K + k];
                double bv = trans_b ? b[j * K + k] : b[k * N + j];
                acc += av * bv;
            }
            double v = alpha * acc;
            if (c)
                v += (double)beta * c[(cm == 1 ? 0 : i) * cn + (cn == 1 ? 0 : j)];
            y[i * N + j] = (float)v;
        }
}

void matmul_ref(float *y, const float *a, const Shape *as, const float *b, const Shape *bs)
{
    /* promote 1-D operands: a [K] -> [1,K], b [K] -> [K,1] */
    Shape A = *as, B = *bs;
    if (A.rank == 1)
        A = shape_of(2, (int64_t)1, as->d[0]);
    if (B.rank == 1)
        B = shape_of(2, bs->d[0], (int64_t)1);
    const int64_t M = A.d[A.rank - 2], K = A.d[A.rank - 1], N = B.d[B.rank - 1];
    const int rank = (A.rank > B.rank ? A.rank : B.rank) - 2;
    int64_t bat[SH_MAX_RANK], da[SH_MAX_RANK], db[SH_MAX_RANK], nbat = 1;
    for (int i = 0; i < rank; i++) {
        int ia = i - (rank - (A.rank - 2)), ib = i - (rank - (B.rank - 2));
        da[i] = ia >= 0 ? A.d[ia] : 1;
        db[i] = ib >= 0 ? B.d[ib] : 1;
        bat[i] = da[i] == 1 ? db[i] : da[i]; /* 1 broadcasts, 0 stays */
        nbat *= bat[i];
    }
    for (int64_t t = 0; t < nbat; t++) {
        /* batch multi-index of t, then the offsets of a and b */
        int64_t rem = t, oa = 0, ob = 0, sa = 1, sb = 1;
        for (int i = rank - 1; i >= 0; i--) {
            int64_t idx = rem % bat[i];
            rem /= bat[i];
            oa += (da[i] == 1 ? 0 : idx) * sa;
            ob += (db[i] == 1 ? 0 : idx) * sb;
            sa *= da[i];
            sb *= db[i];
        }
        const float *am = a + oa * M * K, *bm = b + ob * K * N;
        float *ym = y + t * M * N;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double acc = 0;
                for (int64_t k = 0; k < K; k++)
                    acc += (double)am[i * K + k] * bm[k * N + j];
                ym[i * N + j] = (float)acc;
            }
    }
}

/* ---- norm ------------------------------------------------------------ */

void batchnorm_ref(float *y, const float *x, const float *scale, const float *bias,
                   const float *mean, const float *var, double eps, int64_t n, int64_t c,
                   int64_t sp)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t ch = 0; ch < c; ch++)
            for (int64_t k = 0; k < sp; k++) {
                int64_t at = (i * c + ch) * sp + k;
                y[at] = (float)(scale[ch] * ((double)x[at] - mean[ch]) / sqrt((double)var[ch] + eps) +
                                bias[ch]);
            }
}

void batch_stats_ref(float *mean, float *var, const float *x, int64_t n, int64_t c, int64_t sp)
{
    for (int64_t ch = 0; ch < c; ch++) {
        double sum = 0, sq = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < sp; k++)
                sum += x[(i * c + ch) * sp + k];
        const int64_t count = n * sp;
        double m = count > 0 ? sum / (double)count : 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < sp; k++) {
                double d = x[(i * c + ch) * sp + k] - m;
                sq += d * d;
            }
        mean[ch] = (float)m;
        var[ch] = (float)(count > 0 ? sq / (double)count : 0);
    }
}

void layernorm_ref(float *y, float *mean, float *inv_std, const float *x, const float *scale,
                   const float *bias, int64_t rows, int64_t cols, double eps)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        double sum = 0, sq = 0;
        for (int64_t j = 0; j < cols; j++)
            sum += xr[j];
        double m = cols ? sum / (double)cols : 0;
        for (int64_t j = 0; j < cols; j++)
            sq += (xr[j] - m) * (xr[j] - m);
        double is = 1.0 / sqrt((cols ? sq / (double)cols : 0) + eps);
        for (int64_t j = 0; j < cols; j++)
            y[r * cols + j] = (float)((xr[j] - m) * is * scale[j] + (bias ? bias[j] : 0.0));
        if (mean)
            mean[r] = (float)m;
        if (inv_std)
            inv_std[r] = (float)is;
    }
}

void instancenorm_ref(float *y, const float *x, const float *scale, const float *bias, int64_t n,
                      int64_t c, int64_t sp, double eps)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t ch = 0; ch < c; ch++) {
            const int64_t at = (i * c + ch) * sp;
            double sum = 0, sq = 0;
            for (int64_t k = 0; k < sp; k++)
                sum += x[at + k];
            double mean = sp ? sum / (double)sp : 0;
            for (int64_t k = 0; k < sp; k++)
                sq += (x[at + k] - mean) * (x[at + k] - mean);
            double inv = 1.0 / sqrt((sp ? sq / (double)sp : 0) + eps);
            for (int64_t k = 0; k < sp; k++)
                y[at + k] = (float)(scale[ch] * (x[at + k] - mean) * inv + bias[ch]);
        }
}

void lrn_ref(float *y, const float *x, int64_t n, int64_t c, int64_t sp, int64_t size,
             double alpha, double beta, double bias)
{
    const int64_t before = (size - 1) / 2, after = size - 1 - before;
    for (int64_t i = 0; i < n; i++)
        for (int64_t ch = 0; ch < c; ch++)
            for (int64_t k = 0; k < sp; k++) {
                double sq = 0;
                for (int64_t j = ch - before; j <= ch + after; j++)
                    if (inside(j, c)) {
                        double v = x[(i * c + j) * sp + k];
                        sq += v * v;
                    }
                int64_t at = (i * c + ch) * sp + k;
                y[at] = (float)(x[at] / pow(bias + alpha / (double)size * sq, beta));
            }
}
