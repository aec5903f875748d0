/* Sliding-window geometry shared by Conv, ConvTranspose and the pools:
 * reading strides, dilations, pads and auto_pad, and output sizes. */
#include "kernels.h"

#include "../error.h"

#include <string.h>

void to_spatial3(int64_t *dst, const int64_t *src, int nd, int64_t fill)
{
    for (int i = 0; i < 3; i++)
        dst[i] = i < 3 - nd ? fill : src[i - (3 - nd)];
}

/* An ints attribute of exactly want values into out (default dflt when
 * absent). */
static int read_ints(const OpCtx *c, const char *name, int want, int64_t dflt, int64_t min,
                     int64_t *out)
{
    const int64_t *v;
    int n = node_attr_ints(c->node, name, &v);
    if (n < 0) {
        if (node_attr(c->node, name))
            return op_fail(c, SH_E_FORMAT, "attribute '%s' must be a list of ints", name);
        for (int i = 0; i < want; i++)
            out[i] = dflt;
        return 0;
    }
    if (n != want)
        return op_fail(c, SH_E_FORMAT, "attribute '%s' has %d values; expected %d", name, n, want);
    for (int i = 0; i < n; i++) {
        if (v[i] < min)
            return op_fail(c, SH_E_UNSUPPORTED, "attribute '%s' has value %lld; it must be >= %lld",
                           name, (long long)v[i], (long long)min);
        out[i] = v[i];
    }
    return 0;
}

int window_read(const OpCtx *c, Window *w, int nd, const int64_t *k)
{
    int64_t pads[6];
    int rc;
    memset(w, 0, sizeof *w);
    w->nd = nd;
    for (int i = 0; i < nd; i++) {
        if (k[i] < 1)
            return op_fail(c, SH_E_SHAPE, "kernel size %lld on spatial axis %d must be >= 1",
                           (long long)k[i], i);
        w->k[i] = k[i];
    }
    if ((rc = read_ints(c, "strides", nd, 1, 1, w->stride)) < 0 ||
        (rc = read_ints(c, "dilations", nd, 1, 1, w->dil)) < 0 ||
        (rc = read_ints(c, "pads", 2 * nd, 0, 0, pads)) < 0)
        return rc;
    for (int i = 0; i < nd; i++) {
        w->pad[i] = pads[i];
        w->pad_end[i] = pads[nd + i];
    }
    const char *ap = node_attr_str(c->node, "auto_pad", "NOTSET");
    if (strcmp(ap, "NOTSET") == 0 || ap[0] == '\0')
        w->auto_pad = PAD_NOTSET;
    else if (strcmp(ap, "SAME_UPPER") == 0)
        w->auto_pad = PAD_SAME_UPPER;
    else if (strcmp(ap, "SAME_LOWER") == 0)
        w->auto_pad = PAD_SAME_LOWER;
    else if (strcmp(ap, "VALID") == 0)
        w->auto_pad = PAD_VALID;
    else
        return op_fail(c, SH_E_UNSUPPORTED,
                       "auto_pad '%s' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID", ap);
    if (w->auto_pad != PAD_NOTSET)
        for (int i = 0; i < nd; i++)
            w->pad[i] = w->pad_end[i] = 0;
    return 0;
}

int window_output(const OpCtx *c, Window *w, const int64_t *in, bool ceil_mode, int64_t *out)
{
    for (int i = 0; i < w->nd; i++) {
        int64_t ek, span; /* dilated kernel extent, padded input extent */
        if (in[i] < 0)
            return op_fail(c, SH_E_SHAPE, "spatial axis %d of the input has unknown size", i);
        if (!sh_mul_ok(w->k[i] - 1, w->dil[i], &ek) || !sh_add_ok(ek, 1, &ek))
            return op_fail(c, SH_E_NOMEM, "dilated kernel size overflows on spatial axis %d", i);
        if (w->auto_pad == PAD_SAME_UPPER || w->auto_pad == PAD_SAME_LOWER) {
            int64_t o = in[i] / w->stride[i] + (in[i] % w->stride[i] != 0), need;
            /* (o-1)*stride + ek - in, computed without overflow */
            if (!sh_mul_ok(o > 0 ? o - 1 : 0, w->stride[i], &need) || !sh_add_ok(need, ek, &need))
                return op_fail(c, SH_E_NOMEM, "padding overflows on spatial axis %d", i);
            int64_t total = need > in[i] ? need - in[i] : 0;
            int64_t small = total / 2, big = total - small;
            w->pad[i] = w->auto_pad == PAD_SAME_UPPER ? small : big;
            w->pad_end[i] = total - w->pad[i];
            out[i] = o;
            continue;
        }
        if (!sh_add_ok(in[i], w->pad[i], &span) || !sh_add_ok(span, w->pad_end[i], &span))
            return op_fail(c, SH_E_NOMEM, "padded input size overflows on spatial axis %d", i);
        if (span < ek)
            return op_fail(c, SH_E_SHAPE,
                           "kernel extent %lld is larger than the padded input %lld on spatial axis %d",
                           (long long)ek, (long long)span, i);
        int64_t steps = (span - ek) / w->stride[i];
        if (ceil_mode && (span - ek) % w->stride[i] != 0) {
            steps++;
            /* the last window must start inside the input or left padding */
            int64_t start_limit = in[i] + w->pad[i]; /* no overflow: <= span */
            if (steps >= start_limit / w->stride[i] + (start_limit % w->stride[i] != 0))
                steps--;
        }
        out[i] = steps + 1;
    }
    return 0;
}
