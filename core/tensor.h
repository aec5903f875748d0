/* Tensors: float32 data for the model, int64 for shape arithmetic and
 * indices, bool/uint8 for masks and raw pixels. Every size is computed
 * with overflow checks. */
#ifndef SH_TENSOR_H
#define SH_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Element types use ONNX's TensorProto.DataType numbers. */
typedef enum {
    SH_UNDEF = 0,
    SH_F32 = 1,
    SH_U8 = 2,
    SH_I64 = 7,
    SH_BOOL = 9,
} DType;

#define SH_MAX_RANK 8

typedef struct {
    int rank;
    int64_t d[SH_MAX_RANK];
} Shape;

typedef struct {
    DType dtype;
    Shape shape;
    int64_t numel;
    void *data;
    bool owns; /* data is freed with the tensor */
} Tensor;

/* Overflow-checked arithmetic on non-negative sizes: return false on
 * overflow or negative operands, leaving *out unspecified. */
bool sh_mul_ok(int64_t a, int64_t b, int64_t *out);
bool sh_add_ok(int64_t a, int64_t b, int64_t *out);

size_t dtype_size(DType t);        /* 0 for SH_UNDEF */
const char *dtype_name(DType t);   /* "float32", "int64", ... */
bool dtype_supported(int onnx_type);

Shape shape_make(int rank, const int64_t *dims);
Shape shape_of(int rank, ...); /* shape_of(2, (int64_t)3, (int64_t)4) */
/* Element count, or -1 on overflow or a negative dimension. */
int64_t shape_numel(const Shape *s);
bool shape_eq(const Shape *a, const Shape *b);
/* Writes "[1,3,28,28]" into buf; returns buf. */
char *shape_str(const Shape *s, char *buf, size_t n);
/* Normalizes a possibly negative axis for a given rank; -1 if out of range. */
int shape_axis(int64_t axis, int rank);
/* Product of dims in [from, to). */
int64_t shape_prod(const Shape *s, int from, int to);

/* Allocates zeroed data for dtype and shape. Returns 0 or SH_E_NOMEM/SH_E_SHAPE. */
int tensor_alloc(Tensor *t, DType dtype, const Shape *s);
/* A heap tensor owning zeroed data, or NULL with the error recorded. */
Tensor *tensor_new(DType dtype, const Shape *s);
/* A non-owning view of data. */
Tensor tensor_view(DType dtype, const Shape *s, void *data);
/* Frees owned data and resets the struct (NULL-safe). */
void tensor_done(Tensor *t);
/* tensor_done + free (NULL-safe). */
void tensor_free(Tensor *t);
/* Deep copy into a new heap tensor, NULL on failure. */
Tensor *tensor_clone(const Tensor *t);
size_t tensor_bytes(const Tensor *t);

static inline float *tensor_f32(const Tensor *t) { return (float *)t->data; }
static inline int64_t *tensor_i64(const Tensor *t) { return (int64_t *)t->data; }
static inline uint8_t *tensor_u8(const Tensor *t) { return (uint8_t *)t->data; }

/* Reads element i as double / int64 whatever the dtype. */
double tensor_get_f(const Tensor *t, int64_t i);
int64_t tensor_get_i(const Tensor *t, int64_t i);

/* Index of the first non-finite float, or -1. */
int64_t tensor_find_nonfinite(const Tensor *t);

#endif
