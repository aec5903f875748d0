/* IDX files, the format of MNIST and Fashion-MNIST: raw or gzipped.
 * Layout: two zero bytes, a type byte (0x08 = unsigned byte), a rank byte,
 * then rank big-endian uint32 dimensions, then the data in C order.
 * Labels are 0x00000801 [N], images 0x00000803 [N,H,W]. Only unsigned-byte
 * data is read; other element types are refused naming the type. */
#ifndef SH_IDX_H
#define SH_IDX_H

#include "tensor.h"

#include <stdint.h>

/* Reads only the header: the file's dims into *shape. */
int idx_read_shape(Shape *shape, const char *path);

/* Reads the file into *out, a new owning U8 tensor with the file's dims.
 * limit > 0 keeps only the first limit items along dim 0 (the rest of the
 * file is then not read); limit <= 0 reads everything and also refuses
 * bytes after the declared data. Errors name the file: missing, not IDX,
 * unsupported type, bad rank, size overflow, truncated. */
int idx_read(Tensor *out, const char *path, int64_t limit);

#endif
