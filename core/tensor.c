#include "tensor.h"

#include "error.h"
#include "util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool sh_mul_ok(int64_t a, int64_t b, int64_t *out)
{
    if (a < 0 || b < 0)
        return false;
    return !__builtin_mul_overflow(a, b, out);
}

bool sh_add_ok(int64_t a, int64_t b, int64_t *out)
{
    if (a < 0 || b < 0)
        return false;
    return !__builtin_add_overflow(a, b, out);
}

size_t dtype_size(DType t)
{
    switch (t) {
    case SH_F32: return 4;
    case SH_I64: return 8;
    case SH_U8:
    case SH_BOOL: return 1;
    default: return 0;
    }
}

const char *dtype_name(DType t)
{
    switch (t) {
    case SH_F32: return "float32";
    case SH_I64: return "int64";
    case SH_U8: return "uint8";
    case SH_BOOL: return "bool";
    default: return "undefined";
    }
}

bool dtype_supported(int onnx_type)
{
    return onnx_type == SH_F32 || onnx_type == SH_I64 || onnx_type == SH_U8 ||
           onnx_type == SH_BOOL;
}

Shape shape_make(int rank, const int64_t *dims)
{
    Shape s = {.rank = rank};
    for (int i = 0; i < rank && i < SH_MAX_RANK; i++)
        s.d[i] = dims[i];
    return s;
}

Shape shape_of(int rank, ...)
{
    Shape s = {.rank = rank};
    va_list ap;
    va_start(ap, rank);
    for (int i = 0; i < rank && i < SH_MAX_RANK; i++)
        s.d[i] = va_arg(ap, int64_t);
    va_end(ap);
    return s;
}

int64_t shape_numel(const Shape *s)
{
    int64_t n = 1;
    if (s->rank < 0 || s->rank > SH_MAX_RANK)
        return -1;
    for (int i = 0; i < s->rank; i++)
        if (!sh_mul_ok(n, s->d[i], &n))
            return -1;
    return n;
}

bool shape_eq(const Shape *a, const Shape *b)
{
    if (a->rank != b->rank)
        return false;
    for (int i = 0; i < a->rank; i++)
        if (a->d[i] != b->d[i])
            return false;
    return true;
}

char *shape_str(const Shape *s, char *buf, size_t n)
{
    size_t used = 0;
    if (n == 0)
        return buf;
    buf[0] = '\0';
    used += (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < s->rank && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? "," : "",
                                 (long long)s->d[i]);
    if (used < n)
        snprintf(buf + used, n - used, "]");
    return buf;
}

int shape_axis(int64_t axis, int rank)
{
    if (axis < 0)
        axis += rank;
    if (axis < 0 || axis >= rank)
        return -1;
    return (int)axis;
}

int64_t shape_prod(const Shape *s, int from, int to)
{
    int64_t p = 1;
    for (int i = from; i < to; i++)
        p *= s->d[i];
    return p;
}

int tensor_alloc(Tensor *t, DType dtype, const Shape *s)
{
    int64_t numel = shape_numel(s), bytes;
    memset(t, 0, sizeof *t);
    if (numel < 0)
        return sh_fail(SH_E_SHAPE, "tensor size overflows or has a negative dimension");
    if (dtype_size(dtype) == 0)
        return sh_fail(SH_E_UNSUPPORTED, "unsupported element type %d", (int)dtype);
    if (!sh_mul_ok(numel, (int64_t)dtype_size(dtype), &bytes) || (uint64_t)bytes > SIZE_MAX / 2)
        return sh_fail(SH_E_NOMEM, "tensor of %lld elements is too large", (long long)numel);
    int rc = sh_check_budget((size_t)bytes, "the tensor");
    if (rc < 0)
        return rc;
    t->data = calloc(bytes ? (size_t)bytes : 1, 1);
    if (!t->data)
        return sh_fail(SH_E_NOMEM, "out of memory allocating %lld bytes", (long long)bytes);
    t->dtype = dtype;
    t->shape = *s;
    t->numel = numel;
    t->owns = true;
    return 0;
}

Tensor *tensor_new(DType dtype, const Shape *s)
{
    Tensor *t = malloc(sizeof *t);
    if (!t) {
        sh_fail(SH_E_NOMEM, "out of memory");
        return NULL;
    }
    if (tensor_alloc(t, dtype, s) < 0) {
        free(t);
        return NULL;
    }
    return t;
}

Tensor tensor_view(DType dtype, const Shape *s, void *data)
{
    Tensor t = {.dtype = dtype, .shape = *s, .numel = shape_numel(s), .data = data, .owns = false};
    return t;
}

void tensor_done(Tensor *t)
{
    if (!t)
        return;
    if (t->owns)
        free(t->data);
    memset(t, 0, sizeof *t);
}

void tensor_free(Tensor *t)
{
    tensor_done(t);
    free(t);
}

size_t tensor_bytes(const Tensor *t) { return (size_t)t->numel * dtype_size(t->dtype); }

Tensor *tensor_clone(const Tensor *t)
{
    Tensor *c = tensor_new(t->dtype, &t->shape);
    if (c && t->numel)
        memcpy(c->data, t->data, tensor_bytes(t));
    return c;
}

double tensor_get_f(const Tensor *t, int64_t i)
{
    switch (t->dtype) {
    case SH_F32: return ((const float *)t->data)[i];
    case SH_I64: return (double)((const int64_t *)t->data)[i];
    case SH_U8:
    case SH_BOOL: return ((const uint8_t *)t->data)[i];
    default: return 0;
    }
}

int64_t tensor_get_i(const Tensor *t, int64_t i)
{
    switch (t->dtype) {
    case SH_F32: return (int64_t)((const float *)t->data)[i];
    case SH_I64: return ((const int64_t *)t->data)[i];
    case SH_U8:
    case SH_BOOL: return ((const uint8_t *)t->data)[i];
    default: return 0;
    }
}

int64_t tensor_find_nonfinite(const Tensor *t)
{
    if (t->dtype != SH_F32)
        return -1;
    const float *p = t->data;
    for (int64_t i = 0; i < t->numel; i++)
        if (!isfinite(p[i]))
            return i;
    return -1;
}
