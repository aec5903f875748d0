/* Helpers shared by op files, and running a single node. */
#include "op.h"

#include "error.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int op_fail(const OpCtx *c, int code, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sh_fail(code, "node '%s' (%s): %s", c->node->name, c->node->op_type, msg);
}

int op_check_input(const OpCtx *c, int i, DType dt)
{
    if (i >= c->n_in || !c->in[i])
        return op_fail(c, SH_E_FORMAT, "input %d is missing", i);
    if (dt != SH_UNDEF && c->in[i]->dtype != dt)
        return op_fail(c, SH_E_UNSUPPORTED, "input %d is %s; expected %s", i,
                       dtype_name(c->in[i]->dtype), dtype_name(dt));
    return 0;
}

void op_set_out(OpCtx *c, int i, DType dt, const Shape *s)
{
    c->out[i]->dtype = dt;
    c->out[i]->shape = *s;
    c->out[i]->numel = shape_numel(s);
}

int op_broadcast(const OpCtx *c, const Shape *a, const Shape *b, Shape *out)
{
    int rank = a->rank > b->rank ? a->rank : b->rank;
    Shape r = {.rank = rank}; /* out may alias a or b */
    for (int i = 0; i < rank; i++) {
        int ia = i - (rank - a->rank), ib = i - (rank - b->rank);
        int64_t da = ia >= 0 ? a->d[ia] : 1, db = ib >= 0 ? b->d[ib] : 1;
        if (da == db || db == 1)
            r.d[i] = da;
        else if (da == 1)
            r.d[i] = db;
        else {
            char sa[128], sb[128];
            return op_fail(c, SH_E_SHAPE, "shapes %s and %s do not broadcast",
                           shape_str(a, sa, sizeof sa), shape_str(b, sb, sizeof sb));
        }
    }
    *out = r;
    return 0;
}

int op_ints_from(const OpCtx *c, const char *attr, int input, int64_t *buf, int cap)
{
    if (input >= 0 && input < c->n_in && c->in[input]) {
        const Tensor *t = c->in[input];
        if (!t->data || t->numel > cap)
            return -1;
        for (int64_t i = 0; i < t->numel; i++)
            buf[i] = tensor_get_i(t, i);
        return (int)t->numel;
    }
    const int64_t *v;
    int n = attr ? node_attr_ints(c->node, attr, &v) : -1;
    if (n < 0 || n > cap)
        return -1;
    memcpy(buf, v, (size_t)n * sizeof *buf);
    return n;
}

int op_run(const Node *n, int opset, Tensor **in, int n_in, Tensor **out, int n_out)
{
    return op_run_mode(n, opset, 0, in, n_in, out, n_out);
}

int op_run_mode(const Node *n, int opset, int training, Tensor **in, int n_in, Tensor **out,
                int n_out)
{
    const OpDef *op = n->op;
    Tensor *outs[16] = {0};
    void *scratch = NULL;
    int rc = 0;
    if (!op)
        return sh_fail(SH_E_UNSUPPORTED, "node '%s' uses op '%s', which shears does not support",
                       n->name, n->op_type);
    if (n_out > 16)
        return sh_fail(SH_E_UNSUPPORTED, "node '%s' has too many outputs", n->name);
    for (int i = 0; i < n_out; i++)
        outs[i] = calloc(1, sizeof(Tensor));
    OpCtx c = {.node = n, .opset = opset, .n_in = n_in, .n_out = n_out, .in = in, .out = outs,
               .training = training};
    for (int i = 0; i < n_in && !(op->flags & OP_SHAPE_ONLY); i++)
        if (in[i] && !in[i]->data && in[i]->numel > 0) {
            rc = op_fail(&c, SH_E_STATE, "input %d has no data", i);
            goto fail;
        }
    if ((rc = op->infer(&c)) < 0)
        goto fail;
    for (int i = 0; i < n_out; i++) {
        Shape s = outs[i]->shape;
        DType dt = outs[i]->dtype;
        if (dt == SH_UNDEF) /* unused optional output */
            continue;
        if ((rc = tensor_alloc(outs[i], dt, &s)) < 0) {
            rc = op_fail(&c, rc, "output %d: %s", i, sh_errmsg());
            goto fail;
        }
    }
    if ((op->flags & OP_ALIAS) && n_out == 1 && !training) {
        memcpy(outs[0]->data, in[0]->data, tensor_bytes(outs[0]));
    } else {
        size_t sb = op->scratch ? op->scratch(&c) : 0;
        if (sb && (rc = sh_check_budget(sb, "scratch")) < 0) {
            rc = op_fail(&c, rc, "%s", sh_errmsg());
            goto fail;
        }
        if (sb) {
            scratch = aligned_alloc(64, (sb + 63) / 64 * 64);
            if (!scratch) {
                rc = op_fail(&c, SH_E_NOMEM, "out of memory for %zu scratch bytes", sb);
                goto fail;
            }
        }
        c.scratch = scratch;
        c.scratch_bytes = sb;
        if ((rc = op->forward(&c)) < 0)
            goto fail;
    }
    free(scratch);
    for (int i = 0; i < n_out; i++)
        out[i] = outs[i];
    return 0;
fail:
    free(scratch);
    for (int i = 0; i < n_out; i++)
        tensor_free(outs[i]);
    return rc;
}
