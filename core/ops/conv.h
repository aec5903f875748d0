/* Conv epilogue fusion: what the executor may ask Conv to do in the same
 * pass that adds the bias. */
#ifndef SH_OPS_CONV_H
#define SH_OPS_CONV_H

/* OpCtx.fused of a Conv node points to one of these (borrowed). */
typedef struct {
    int relu; /* apply max(0,x) after bias */
} ConvFusion;

#endif
