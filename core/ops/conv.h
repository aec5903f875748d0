/* Conv epilogue fusion: what the executor may ask Conv to do in the same
 * pass that adds the bias. */
#ifndef SH_OPS_CONV_H
#define SH_OPS_CONV_H

/* OpCtx.fused of a Conv node points to one of these (borrowed). */
typedef struct {
    int relu; /* apply max(0,x) after bias */
    int pool; /* 1: a MaxPool 2x2 stride 2 (no padding, floor) follows, and
                 out[0] is its output: only the pooled values are stored */
} ConvFusion;

#endif
