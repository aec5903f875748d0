#include "gradcheck.h"

#include "core/error.h"
#include "core/op.h"
#include "core/util.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void free_outputs(Tensor **out, int n)
{
    for (int k = 0; k < n; k++) {
        tensor_free(out[k]);
        out[k] = NULL;
    }
}

/* L = sum_k <w_k, y_k> over float outputs, in double. */
static int loss(Node *n, int opset, int training, Tensor **in, int n_in, Tensor **w, int n_out,
                double *out)
{
    Tensor *y[16] = {0};
    int rc = op_run_mode(n, opset, training, in, n_in, y, n_out);
    if (rc < 0)
        return rc;
    double l = 0;
    for (int k = 0; k < n_out; k++)
        if (w[k])
            for (int64_t i = 0; i < y[k]->numel; i++)
                l += (double)tensor_f32(w[k])[i] * (double)tensor_f32(y[k])[i];
    free_outputs(y, n_out);
    *out = l;
    return 0;
}

static int analytic(Node *n, int opset, int training, Tensor **in, int n_in, Tensor **w, int n_out,
                    Tensor **gin, uint32_t assign)
{
    Tensor *y[16] = {0};
    int rc = op_run_mode(n, opset, training, in, n_in, y, n_out);
    if (rc < 0)
        return rc;
    OpCtx c = {.node = n, .opset = opset, .n_in = n_in, .n_out = n_out, .in = in, .out = y,
               .training = training, .grad_assign = assign};
    size_t sb = n->op->bwd_scratch ? n->op->bwd_scratch(&c) : 0;
    void *scratch = sb ? aligned_alloc(64, (sb + 63) / 64 * 64) : NULL;
    c.scratch = scratch;
    c.scratch_bytes = sb;
    rc = n->op->backward ? n->op->backward(&c, w, gin)
                         : sh_fail(SH_E_UNSUPPORTED, "op %s has no backward", n->op_type);
    free(scratch);
    free_outputs(y, n_out);
    return rc;
}

/* For the inputs whose gradient the op can assign (OpDef.grad_assign):
 * backward told to assign into buffers of NaN must write what it added to
 * base before (gin - base). Returns -1 on a mismatch. */
static int check_assign(const char *label, Node *n, int opset, int training, Tensor **in, int n_in, Tensor **w,
                        int n_out, Tensor **gin, Tensor **base)
{
    Tensor *fresh[16] = {0};
    uint32_t assign = 0;
    int rc = 0;
    for (int i = 0; i < n_in; i++)
        if (gin[i] && (n->op->grad_assign & (1u << i))) {
            fresh[i] = tensor_clone(gin[i]);
            for (int64_t j = 0; j < fresh[i]->numel; j++)
                tensor_f32(fresh[i])[j] = NAN; /* stale bytes: every one must be written */
            assign |= 1u << i;
        }
    if (assign && analytic(n, opset, training, in, n_in, w, n_out, fresh, assign) < 0)
        rc = -1;
    for (int i = 0; i < n_in && rc == 0; i++) {
        if (!fresh[i])
            continue;
        double worst = 0;
        for (int64_t j = 0; j < fresh[i]->numel; j++) {
            double added = (double)tensor_f32(gin[i])[j] - (double)tensor_f32(base[i])[j];
            double got = tensor_f32(fresh[i])[j];
            double err = fabs(got - added) / (1e-5 + 1e-5 * fabs(added));
            worst = isnan(got) ? INFINITY : fmax(worst, err);
        }
        printf("%s: input %d assigned gradient error %.3f of tolerance\n", label, i, worst);
        rc = worst <= 1 ? 0 : -1;
    }
    for (int i = 0; i < 16; i++)
        tensor_free(fresh[i]);
    return rc;
}

double t_gradcheck(const char *label, Node *n, int opset, Tensor **in, int n_in, int n_out,
                   const GradCheck *opt)
{
    GradCheck o = *opt;
    if (o.h == 0)
        o.h = 1e-2;
    if (o.rtol == 0)
        o.rtol = 2e-2;
    if (o.atol == 0)
        o.atol = 2e-3;
    if (o.max_probes == 0)
        o.max_probes = 48;
    TRng r;
    trng_seed(&r, o.seed + 17);
    Tensor *y[16] = {0}, *w[16] = {0}, *gin[16] = {0}, *base[16] = {0};
    double worst = 0;
    if (n_out > 16 || n_in > 16 || op_run_mode(n, opset, o.training, in, n_in, y, n_out) < 0) {
        printf("%s: forward failed: %s\n", label, sh_errmsg());
        return -1;
    }
    for (int k = 0; k < n_out; k++)
        if (y[k]->dtype == SH_F32)
            w[k] = t_rand(&r, &y[k]->shape, -1, 1);
    free_outputs(y, n_out);
    for (int i = 0; i < n_in; i++)
        if (in[i] && in[i]->dtype == SH_F32 && !(o.skip & (1u << i))) {
            gin[i] = t_rand(&r, &in[i]->shape, -1, 1); /* backward must add to this */
            base[i] = tensor_clone(gin[i]);
        }
    if (analytic(n, opset, o.training, in, n_in, w, n_out, gin, 0) < 0) {
        printf("%s: backward failed: %s\n", label, sh_errmsg());
        worst = -1;
        goto done;
    }
    for (int i = 0; i < n_in && worst >= 0; i++) {
        if (!gin[i])
            continue;
        double max_err = 0, at_a = 0, at_f = 0;
        int64_t count = in[i]->numel < o.max_probes ? in[i]->numel : o.max_probes;
        for (int64_t p = 0; p < count; p++) {
            int64_t j = in[i]->numel <= o.max_probes ? p : trng_int(&r, 0, in[i]->numel - 1);
            float *x = &tensor_f32(in[i])[j], keep = *x;
            double lp, lm;
            *x = (float)(keep + o.h);
            int rc = loss(n, opset, o.training, in, n_in, w, n_out, &lp);
            *x = (float)(keep - o.h);
            rc = rc ? rc : loss(n, opset, o.training, in, n_in, w, n_out, &lm);
            double step = (double)(float)(keep + o.h) - (double)(float)(keep - o.h);
            *x = keep;
            if (rc < 0) {
                worst = -1;
                break;
            }
            double fd = (lp - lm) / step;
            double an = (double)tensor_f32(gin[i])[j] - (double)tensor_f32(base[i])[j];
            double err = fabs(fd - an) / (o.atol + o.rtol * fmax(fabs(fd), fabs(an)));
            if (err > max_err) {
                max_err = err;
                at_a = an;
                at_f = fd;
            }
        }
        printf("%s: input %d max error %.3f of tolerance (analytic %.6g vs numeric %.6g)\n", label,
               i, max_err, at_a, at_f);
        if (max_err > worst)
            worst = max_err;
    }
    if (worst >= 0 && check_assign(label, n, opset, o.training, in, n_in, w, n_out, gin, base) < 0)
        worst = -1;
done:
    for (int k = 0; k < 16; k++) {
        tensor_free(w[k]);
        tensor_free(gin[k]);
        tensor_free(base[k]);
    }
    return worst;
}
