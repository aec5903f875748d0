/* NPY files (numpy.save): versions 1.0, 2.0 and 3.0 are read, 1.0 is
 * written. Element types: '<f4' float32, '<i8' int64, '|u1' uint8,
 * '|b1' bool; C order only. The header dict is parsed strictly: exactly
 * the keys descr, fortran_order and shape, Python literal syntax. */
#ifndef SH_NPY_H
#define SH_NPY_H

#include "tensor.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int major, minor;   /* format version */
    DType dtype;
    Shape shape;
    size_t data_offset; /* bytes before the array data */
} NpyHeader;

/* Reads and checks only the header of path. */
int npy_read_header(NpyHeader *h, const char *path);

/* Reads path into *out, a new owning tensor. The file must hold exactly
 * the declared data: a short file is "truncated", a longer one refused. */
int npy_read(Tensor *out, const char *path);

/* As npy_read, keeping only the first limit entries along dim 0 (limit
 * <= 0: all). The file's size is still checked against its header. */
int npy_read_rows(Tensor *out, const char *path, int64_t limit);

/* Parses an NPY image held in memory (name is used in messages). */
int npy_read_mem(Tensor *out, const char *name, const void *buf, size_t n);

/* Writes t as NPY 1.0, atomically; refuses to replace an existing file
 * unless overwrite. The header is laid out as numpy writes it (64-byte
 * aligned data). */
int npy_write(const char *path, const Tensor *t, bool overwrite);

/* The NPY descr of a dtype ("<f4"), or NULL if NPY I/O does not handle it. */
const char *npy_descr(DType t);

#endif
