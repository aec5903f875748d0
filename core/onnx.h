/* ONNX import and export (protobuf-c bindings generated at build time
 * from Debian's onnx.proto). */
#ifndef SH_ONNX_H
#define SH_ONNX_H

#include "graph.h"

#include <stdbool.h>
#include <stddef.h>

/* Opsets of the default domain shears accepts. */
#define SH_OPSET_MIN 1
#define SH_OPSET_MAX 17

/* Parses a model from memory. origin names the file in messages.
 * On success *out is a bound, topologically sorted graph. */
int onnx_load_buffer(const void *data, size_t n, const char *origin, Graph **out);
/* Reads and parses a model file. */
int onnx_load(const char *path, Graph **out);

/* Serializes g into a new buffer (*data owned by the caller). */
int onnx_save_buffer(const Graph *g, unsigned char **data, size_t *n);
/* Writes g to path atomically; refuses to replace an existing file unless
 * overwrite. */
int onnx_save(const Graph *g, const char *path, bool overwrite);

/* Parses one serialized TensorProto (the conformance data's .pb files).
 * *name (optional, may be NULL) receives its name or NULL; caller frees. */
int onnx_load_tensor(const char *path, Tensor **out, char **name);

#endif
