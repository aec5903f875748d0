/* Gemm and MatMul, straight to cblas_sgemm. */
#include "../error.h"
#include "../depgraph.h"
#include "../op.h"

#include <cblas.h>
#include <limits.h>
#include <string.h>

static bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

/* ---- Gemm ------------------------------------------------------------ */

typedef struct {
    int64_t M, N, K;
    int trans_a, trans_b;
    float alpha, beta;
    int64_t cm, cn; /* C's shape as [cm, cn], each 1 or M / N; 0 when no C */
} GemmDims;

static int gemm_setup(const OpCtx *c, GemmDims *d)
{
    int rc;
    char ba[128], bb[128];
    if ((rc = op_check_input(c, 0, SH_F32)) < 0 || (rc = op_check_input(c, 1, SH_F32)) < 0)
        return rc;
    const Shape *A = &c->in[0]->shape, *B = &c->in[1]->shape;
    if (A->rank != 2 || B->rank != 2)
        return op_fail(c, SH_E_SHAPE, "A %s and B %s must both be 2-D", shape_str(A, ba, sizeof ba),
                       shape_str(B, bb, sizeof bb));
    d->trans_a = node_attr_int(c->node, "transA", 0) != 0;
    d->trans_b = node_attr_int(c->node, "transB", 0) != 0;
    d->alpha = node_attr_float(c->node, "alpha", 1.0f);
    d->beta = node_attr_float(c->node, "beta", 1.0f);
    d->M = A->d[d->trans_a ? 1 : 0];
    d->K = A->d[d->trans_a ? 0 : 1];
    d->N = B->d[d->trans_b ? 0 : 1];
    int64_t kb = B->d[d->trans_b ? 1 : 0];
    if (d->K != kb)
        return op_fail(c, SH_E_SHAPE, "A %s (transA=%d) and B %s (transB=%d) differ in the inner dimension",
                       shape_str(A, ba, sizeof ba), d->trans_a, shape_str(B, bb, sizeof bb), d->trans_b);
    if (d->K < 0 || d->N < 0)
        return op_fail(c, SH_E_SHAPE, "A %s and B %s: only A's rows may be unknown",
                       shape_str(A, ba, sizeof ba), shape_str(B, bb, sizeof bb));
    if (!fits_int(d->K) || !fits_int(d->N) || !fits_int(A->d[1]) || !fits_int(B->d[1]) ||
        (d->M >= 0 && !fits_int(d->M)))
        return op_fail(c, SH_E_UNSUPPORTED, "A %s or B %s exceeds BLAS's int sizes",
                       shape_str(A, ba, sizeof ba), shape_str(B, bb, sizeof bb));
    d->cm = d->cn = 0;
    if (c->n_in > 2 && c->in[2]) {
        const Shape *C = &c->in[2]->shape;
        if ((rc = op_check_input(c, 2, SH_F32)) < 0)
            return rc;
        int64_t cm = C->rank >= 2 ? C->d[C->rank - 2] : 1, cn = C->rank >= 1 ? C->d[C->rank - 1] : 1;
        if (C->rank > 2 || (cm != 1 && cm != d->M) || (cn != 1 && cn != d->N))
            return op_fail(c, SH_E_SHAPE, "C %s does not broadcast to [%lld,%lld]",
                           shape_str(C, ba, sizeof ba), (long long)d->M, (long long)d->N);
        d->cm = cm;
        d->cn = cn;
    }
    return 0;
}

static int gemm_infer(OpCtx *c)
{
    GemmDims d;
    int rc = gemm_setup(c, &d);
    if (rc < 0)
        return rc;
    Shape y = shape_of(2, d.M, d.N);
    op_set_out(c, 0, SH_F32, &y);
    return 0;
}

static int gemm_run(OpCtx *c)
{
    GemmDims d;
    int rc = gemm_setup(c, &d);
    if (rc < 0)
        return rc;
    float *y = tensor_f32(c->out[0]);
    if (d.M == 0 || d.N == 0)
        return 0;
    /* Y = beta*C first, then sgemm accumulates alpha*A*B onto it */
    float beta = 0.0f;
    if (d.cm && d.beta != 0.0f) {
        const float *cv = tensor_f32(c->in[2]);
        for (int64_t i = 0; i < d.M; i++) {
            const float *cr = cv + (d.cm == 1 ? 0 : i) * d.cn;
            float *yr = y + i * d.N;
            for (int64_t j = 0; j < d.N; j++)
                yr[j] = d.beta * cr[d.cn == 1 ? 0 : j];
        }
        beta = 1.0f;
    } else {
        memset(y, 0, (size_t)(d.M * d.N) * sizeof *y);
    }
    if (d.K == 0 || d.alpha == 0.0f)
        return 0;
    const Shape *A = &c->in[0]->shape, *B = &c->in[1]->shape;
    cblas_sgemm(CblasRowMajor, d.trans_a ? CblasTrans : CblasNoTrans,
                d.trans_b ? CblasTrans : CblasNoTrans, (int)d.M, (int)d.N, (int)d.K, d.alpha,
                tensor_f32(c->in[0]), (int)A->d[1], tensor_f32(c->in[1]), (int)B->d[1], beta, y,
                (int)d.N);
    return 0;
}

static int64_t gemm_macs(const OpCtx *c)
{
    const Shape *A = &c->in[0]->shape;
    int64_t m = c->out[0]->numel, k = A->d[node_attr_int(c->node, "transA", 0) ? 0 : 1];
    return m >= 0 && sh_mul_ok(m, k, &m) ? m : -1;
}

/* Y = alpha*op(A)*op(B) + beta*C, so
 *   d op(A) = alpha * dY * op(B)^T,  d op(B) = alpha * op(A)^T * dY,
 *   dC = beta * dY summed over C's broadcast axes.
 * Each is accumulated (beta 1 in sgemm) in the operand's stored layout. */
static int gemm_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    GemmDims d;
    int rc = gemm_setup(c, &d);
    if (rc < 0 || !gout[0] || d.M == 0 || d.N == 0)
        return rc;
    const float *dy = tensor_f32(gout[0]), *a = tensor_f32(c->in[0]), *b = tensor_f32(c->in[1]);
    int lda = (int)c->in[0]->shape.d[1], ldb = (int)c->in[1]->shape.d[1];
    int M = (int)d.M, N = (int)d.N, K = (int)d.K;
    CBLAS_TRANSPOSE tb = d.trans_b ? CblasNoTrans : CblasTrans; /* op(B)^T as stored */
    CBLAS_TRANSPOSE ta = d.trans_a ? CblasNoTrans : CblasTrans; /* op(A)^T as stored */
    if (gin[0] && K > 0) {
        if (!d.trans_a) /* dA [M,K] = dY [M,N] * op(B)^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, M, K, N, d.alpha, dy, N, b, ldb, 1.0f,
                        tensor_f32(gin[0]), lda);
        else /* dA [K,M] = op(B) [K,N] * dY^T */
            cblas_sgemm(CblasRowMajor, d.trans_b ? CblasTrans : CblasNoTrans, CblasTrans, K, M, N,
                        d.alpha, b, ldb, dy, N, 1.0f, tensor_f32(gin[0]), lda);
    }
    if (gin[1] && K > 0) {
        if (!d.trans_b) /* dB [K,N] = op(A)^T [K,M] * dY */
            cblas_sgemm(CblasRowMajor, ta, CblasNoTrans, K, N, M, d.alpha, a, lda, dy, N, 1.0f,
                        tensor_f32(gin[1]), ldb);
        else /* dB [N,K] = dY^T [N,M] * op(A) */
            cblas_sgemm(CblasRowMajor, CblasTrans, d.trans_a ? CblasTrans : CblasNoTrans, N, K, M,
                        d.alpha, dy, N, a, lda, 1.0f, tensor_f32(gin[1]), ldb);
    }
    if (c->n_in > 2 && gin[2] && d.cm) {
        float *dc = tensor_f32(gin[2]);
        for (int64_t i = 0; i < d.M; i++)
            for (int64_t j = 0; j < d.N; j++)
                dc[(d.cm == 1 ? 0 : i) * d.cn + (d.cn == 1 ? 0 : j)] += d.beta * dy[i * d.N + j];
    }
    return 0;
}

/* ---- MatMul ---------------------------------------------------------- */

/* numpy matmul: a [..., M, K] x b [..., K, N]; 1-D operands promoted. */
typedef struct {
    int64_t M, N, K;
    int rank;                      /* batch rank */
    int64_t bat[SH_MAX_RANK];      /* broadcast batch dims */
    int64_t da[SH_MAX_RANK], db[SH_MAX_RANK]; /* each operand's batch dims, 1-padded */
    int64_t nbat;
    bool b_shared;                 /* b has no batch dims: one sgemm over all of a's rows */
    Shape y;
} MatMulDims;

static int matmul_setup(const OpCtx *c, MatMulDims *d)
{
    int rc;
    char ba[128], bb[128];
    if ((rc = op_check_input(c, 0, SH_F32)) < 0 || (rc = op_check_input(c, 1, SH_F32)) < 0)
        return rc;
    const Shape *as = &c->in[0]->shape, *bs = &c->in[1]->shape;
    if (as->rank < 1 || bs->rank < 1)
        return op_fail(c, SH_E_SHAPE, "A %s and B %s must have at least one dimension",
                       shape_str(as, ba, sizeof ba), shape_str(bs, bb, sizeof bb));
    Shape A = *as, B = *bs;
    if (A.rank == 1)
        A = shape_of(2, (int64_t)1, as->d[0]);
    if (B.rank == 1)
        B = shape_of(2, bs->d[0], (int64_t)1);
    d->M = A.d[A.rank - 2];
    d->K = A.d[A.rank - 1];
    d->N = B.d[B.rank - 1];
    if (d->K != B.d[B.rank - 2] || d->K < 0)
        return op_fail(c, SH_E_SHAPE, "A %s and B %s differ in the inner dimension",
                       shape_str(as, ba, sizeof ba), shape_str(bs, bb, sizeof bb));
    d->rank = (A.rank > B.rank ? A.rank : B.rank) - 2;
    d->nbat = 1;
    bool unknown = d->M < 0 || d->N < 0;
    for (int i = 0; i < d->rank; i++) {
        int ia = i - (d->rank - (A.rank - 2)), ib = i - (d->rank - (B.rank - 2));
        d->da[i] = ia >= 0 ? A.d[ia] : 1;
        d->db[i] = ib >= 0 ? B.d[ib] : 1;
        if (d->da[i] != d->db[i] && d->da[i] != 1 && d->db[i] != 1)
            return op_fail(c, SH_E_SHAPE, "batch dimensions of A %s and B %s do not broadcast",
                           shape_str(as, ba, sizeof ba), shape_str(bs, bb, sizeof bb));
        d->bat[i] = d->da[i] == 1 ? d->db[i] : d->da[i];
        if (d->bat[i] < 0 || !sh_mul_ok(d->nbat, d->bat[i], &d->nbat))
            unknown = true;
    }
    d->b_shared = B.rank == 2;
    d->y.rank = 0;
    for (int i = 0; i < d->rank; i++)
        d->y.d[d->y.rank++] = d->bat[i];
    if (as->rank > 1)
        d->y.d[d->y.rank++] = d->M;
    if (bs->rank > 1)
        d->y.d[d->y.rank++] = d->N;
    if (unknown)
        return 0; /* shapes only; forward always sees known sizes */
    int64_t rows = d->M;
    if (shape_numel(&d->y) < 0 || (d->b_shared && !sh_mul_ok(d->nbat, d->M, &rows)))
        return op_fail(c, SH_E_NOMEM, "the product of A %s and B %s is too large",
                       shape_str(as, ba, sizeof ba), shape_str(bs, bb, sizeof bb));
    if (!fits_int(rows) || !fits_int(d->N) || !fits_int(d->K))
        return op_fail(c, SH_E_UNSUPPORTED, "A %s or B %s exceeds BLAS's int sizes",
                       shape_str(as, ba, sizeof ba), shape_str(bs, bb, sizeof bb));
    return 0;
}

static int matmul_infer(OpCtx *c)
{
    MatMulDims d;
    int rc = matmul_setup(c, &d);
    if (rc < 0)
        return rc;
    op_set_out(c, 0, SH_F32, &d.y);
    return 0;
}

static void batch_offsets(const MatMulDims *d, int64_t t, int64_t *oa, int64_t *ob);

static void sgemm_nn(int64_t M, int64_t N, int64_t K, const float *a, const float *b, float *y)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0f, a, (int)K,
                b, (int)N, 0.0f, y, (int)N);
}

static int matmul_run(OpCtx *c)
{
    MatMulDims d;
    int rc = matmul_setup(c, &d);
    if (rc < 0)
        return rc;
    const float *a = tensor_f32(c->in[0]), *b = tensor_f32(c->in[1]);
    float *y = tensor_f32(c->out[0]);
    if (c->out[0]->numel == 0)
        return 0;
    if (d.K == 0) {
        memset(y, 0, (size_t)c->out[0]->numel * sizeof *y);
        return 0;
    }
    if (d.b_shared) {
        sgemm_nn(d.nbat * d.M, d.N, d.K, a, b, y);
        return 0;
    }
    for (int64_t t = 0; t < d.nbat; t++) {
        int64_t oa, ob;
        batch_offsets(&d, t, &oa, &ob);
        sgemm_nn(d.M, d.N, d.K, a + oa * d.M * d.K, b + ob * d.K * d.N, y + t * d.M * d.N);
    }
    return 0;
}

/* Offsets of batch element t in a and b (broadcast dims stay at 0). */
static void batch_offsets(const MatMulDims *d, int64_t t, int64_t *oa, int64_t *ob)
{
    int64_t rem = t, sa = 1, sb = 1;
    *oa = *ob = 0;
    for (int i = d->rank - 1; i >= 0; i--) {
        int64_t idx = rem % d->bat[i];
        rem /= d->bat[i];
        *oa += (d->da[i] == 1 ? 0 : idx) * sa;
        *ob += (d->db[i] == 1 ? 0 : idx) * sb;
        sa *= d->da[i];
        sb *= d->db[i];
    }
}

/* dA += dY * B^T, dB += A^T * dY per batch element; a broadcast operand
 * accumulates the contributions of every batch element it served. */
static int matmul_backward(OpCtx *c, Tensor **gout, Tensor **gin)
{
    MatMulDims d;
    int rc = matmul_setup(c, &d);
    if (rc < 0 || !gout[0] || c->out[0]->numel == 0 || d.K == 0)
        return rc;
    const float *a = tensor_f32(c->in[0]), *b = tensor_f32(c->in[1]), *dy = tensor_f32(gout[0]);
    float *da = gin[0] ? tensor_f32(gin[0]) : NULL, *db = gin[1] ? tensor_f32(gin[1]) : NULL;
    int M = (int)d.M, N = (int)d.N, K = (int)d.K;
    if (d.b_shared) {
        int rows = (int)(d.nbat * d.M);
        if (da)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, K, N, 1.0f, dy, N, b, N, 1.0f, da, K);
        if (db)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, N, rows, 1.0f, a, K, dy, N, 1.0f, db, N);
        return 0;
    }
    for (int64_t t = 0; t < d.nbat; t++) {
        int64_t oa, ob;
        batch_offsets(&d, t, &oa, &ob);
        const float *dyt = dy + t * d.M * d.N;
        if (da)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, K, N, 1.0f, dyt, N,
                        b + ob * d.K * d.N, N, 1.0f, da + oa * d.M * d.K, K);
        if (db)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, N, M, 1.0f, a + oa * d.M * d.K, K,
                        dyt, N, 1.0f, db + ob * d.K * d.N, N);
    }
    return 0;
}

static int64_t matmul_macs(const OpCtx *c)
{
    const Shape *as = &c->in[0]->shape;
    int64_t m = c->out[0]->numel, k = as->d[as->rank - 1];
    return m >= 0 && sh_mul_ok(m, k, &m) ? m : -1;
}

/* ---- channel coupling ---- */

/* Y = op(A) op(B) + C. With a constant B (a Linear layer) Y's columns are
 * new neurons owned by B's output axis and C; A's features are B's input
 * axis. Otherwise Y's rows follow A and its columns B. */
static int gemm_couple(CouplingCtx *cc)
{
    const Node *n = cc_node(cc);
    int ta = node_attr_int(n, "transA", 0) != 0, tb = node_attr_int(n, "transB", 0) != 0;
    if (cc_in_const(cc, 1))
        cc_produce(cc, 0, 1);
    else
        cc_same(cc, 1, tb ? 0 : 1, 0, 1);
    cc_same(cc, 1, tb ? 0 : 1, 0, 1);
    cc_same(cc, 0, ta ? 1 : 0, 0, 0);
    cc_join(cc, 0, ta ? 0 : 1, 1, tb ? 1 : 0);
    if (cc_has_input(cc, 2)) {
        const Shape *s = cc_in_shape(cc, 2);
        if (s->rank >= 1 && s->d[s->rank - 1] > 1)
            cc_same(cc, 2, s->rank - 1, 0, 1);
        for (int a = 0; a < s->rank - 1; a++)
            cc_consume(cc, 2, a);
    }
    return 0;
}

/* numpy matmul: batch axes broadcast; Y[..., m, n] = A[..., m, k] B[..., k, n]. */
static int matmul_couple(CouplingCtx *cc)
{
    const Shape *a = cc_in_shape(cc, 0), *b = cc_in_shape(cc, 1), *y = cc_out_shape(cc, 0);
    if (a->rank < 2 || b->rank < 2) {
        cc_block(cc, "vector operands are not supported for pruning");
        return 0;
    }
    if (cc_in_const(cc, 1) && b->rank == 2) /* a Linear layer's weight */
        cc_produce(cc, 0, y->rank - 1);
    cc_same(cc, 1, b->rank - 1, 0, y->rank - 1);
    cc_same(cc, 0, a->rank - 2, 0, y->rank - 2);
    cc_join(cc, 0, a->rank - 1, 1, b->rank - 2);
    for (int i = 0; i < 2; i++) { /* batch axes */
        const Shape *s = i ? b : a;
        for (int k = 0; k < s->rank - 2; k++) {
            int o = k + (y->rank - s->rank);
            if (s->d[k] == y->d[o] && s->d[k] != 1)
                cc_same(cc, i, k, 0, o);
            else
                cc_consume(cc, i, k);
        }
    }
    return 0;
}

const OpDef sh_ops_gemm[] = {
    {.name = "Gemm", .min_in = 2, .max_in = 3, .min_out = 1, .max_out = 1, .infer = gemm_infer,
     .forward = gemm_run, .macs = gemm_macs, .backward = gemm_backward,
     .coupling = gemm_couple},
    {.name = "MatMul", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
     .infer = matmul_infer, .forward = matmul_run, .macs = matmul_macs, .backward = matmul_backward,
     .coupling = matmul_couple},
    {.name = NULL},
};
