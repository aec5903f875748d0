/* Builds a model from a JSON architecture description, so users (and the
 * sample scripts) can describe small networks without another framework.
 * The graph is written the way torch.onnx.export writes the same network
 * (Conv/BatchNormalization/Gemm, MatMul attention with Reshape/Transpose,
 * GELU as Erf), so everything downstream treats it like a PyTorch export.
 *
 *   {"name": "fmnist-cnn", "input": [1, 28, 28], "classes": 10,
 *    "normalize": "0.2860,0.3530", "seed": 1,
 *    "layers": [
 *      {"type": "conv", "out": 32, "kernel": 3, "pad": 1}, {"type": "bn"},
 *      {"type": "relu"}, {"type": "maxpool", "kernel": 2},
 *      {"type": "residual", "body": [...], "shortcut": [...], "post": "relu"},
 *      {"type": "gap"}, {"type": "flatten"}, {"type": "linear", "out": 10}]}
 *
 * Layer types: conv (out, kernel, stride, pad, groups, bias), bn, relu,
 * gelu, sigmoid, tanh, maxpool / avgpool (kernel, stride, pad), gap,
 * flatten, linear (out, bias), dropout (ratio), residual (body, shortcut,
 * post), patch_embed (patch, dim), cls_token, pos_embed, transformer (dim,
 * heads, mlp), layernorm, take_cls. */
#ifndef SH_BUILDER_H
#define SH_BUILDER_H

#include "graph.h"

/* Builds a prepared graph with freshly initialized weights (seeded). */
int model_build_json(const char *json, const char *origin, Graph **out);
int model_build_file(const char *path, Graph **out);

#endif
