/* Checked arithmetic, the allocation funnel and dtype access. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

bool fib_mul_i64(int64_t a, int64_t b, int64_t *out)
{
    if (a < 0 || b < 0)
        return false;
    if (a != 0 && b > INT64_MAX / a)
        return false;
    *out = a * b;
    return true;
}

bool fib_bytes(int64_t count, size_t size, size_t *out)
{
    if (count < 0 || (uint64_t)count > SIZE_MAX / (size ? size : 1))
        return false;
    *out = (size_t)count * size;
    return true;
}

void *fib_alloc(int64_t count, size_t size)
{
    size_t bytes;
    if (count <= 0 || !fib_bytes(count, size, &bytes))
        return NULL;
    return malloc(bytes);
}

void *fib_calloc(int64_t count, size_t size)
{
    size_t bytes;
    if (count <= 0 || !fib_bytes(count, size, &bytes))
        return NULL;
    return calloc((size_t)count, size);
}

void fib_free(void *p)
{
    free(p);
}

char *fib_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *copy = fib_alloc((int64_t)n, 1);
    if (copy)
        memcpy(copy, s, n);
    return copy;
}

size_t fib_dtype_size(int32_t dtype)
{
    switch (dtype) {
    case FIB_DTYPE_F32: return sizeof(float);
    case FIB_DTYPE_F64: return sizeof(double);
    default: return 0;
    }
}

double fib_load(int32_t dtype, const void *buf, int64_t i)
{
    if (dtype == FIB_DTYPE_F32)
        return (double)((const float *)buf)[i];
    return ((const double *)buf)[i];
}

void fib_store(int32_t dtype, void *buf, int64_t i, double value)
{
    if (dtype == FIB_DTYPE_F32)
        ((float *)buf)[i] = (float)value;
    else
        ((double *)buf)[i] = value;
}
