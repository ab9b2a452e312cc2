/* Checked arithmetic, the allocation funnel and dtype access. */
#define _DEFAULT_SOURCE /* madvise, MAP_ANONYMOUS (fib_alloc_pages) */
#include "model/model.h"
#include "kernels/stored.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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

#ifdef FIB_ALLOC_FAILURE
/* Test builds only (meson -Dalloc_failure=true): fib_test_fail_alloc(k)
 * makes the k-th allocation from now fail (1 = the next one; 0 = never),
 * per thread, so that every failure path can be walked. */
static _Thread_local int64_t alloc_countdown;
static _Thread_local int64_t alloc_calls;

void fib_test_fail_alloc(int64_t k)
{
    alloc_countdown = k;
    alloc_calls = 0;
}

/* Allocations made since the last fib_test_fail_alloc. */
int64_t fib_test_alloc_calls(void)
{
    return alloc_calls;
}

static bool alloc_should_fail(void)
{
    alloc_calls++;
    return alloc_countdown > 0 && --alloc_countdown == 0;
}
#else
static inline bool alloc_should_fail(void) { return false; }
#endif

void *fib_alloc(int64_t count, size_t size)
{
    size_t bytes;
    if (count <= 0 || !fib_bytes(count, size, &bytes) || alloc_should_fail())
        return NULL;
    return malloc(bytes);
}

void *fib_calloc(int64_t count, size_t size)
{
    size_t bytes;
    if (count <= 0 || !fib_bytes(count, size, &bytes) || alloc_should_fail())
        return NULL;
    return calloc((size_t)count, size);
}

void fib_free(void *p)
{
    free(p);
}

/* fib_alloc_pages maps its buffers where it can; under AddressSanitizer
 * (gcc's macro, clang's feature) they are malloc'd, whose bounds it
 * watches (a mapping's only at its pages' ends). */
#if defined(__SANITIZE_ADDRESS__)
#define ADDRESS_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ADDRESS_SANITIZER 1
#endif
#endif
#if defined(MAP_ANONYMOUS) && !defined(ADDRESS_SANITIZER)
#define MAPPED_PAGES 1
#else
#define MAPPED_PAGES 0
#endif

void *fib_alloc_pages(int64_t count, size_t size)
{
    size_t bytes;
    if (count <= 0 || !fib_bytes(count, size, &bytes) || alloc_should_fail())
        return NULL;
#if MAPPED_PAGES
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
#else
    return calloc((size_t)count, size);
#endif
}

void fib_free_pages(void *p, int64_t count, size_t size)
{
    if (!p)
        return;
#if MAPPED_PAGES
    (void)munmap(p, (size_t)count * size);
#else
    (void)count, (void)size;
    free(p);
#endif
}

void fib_advise_huge_pages(void *p, size_t bytes)
{
#ifdef MADV_HUGEPAGE
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t lo = ((uintptr_t)p + huge - 1) & ~(huge - 1);
    uintptr_t hi = ((uintptr_t)p + bytes) & ~(huge - 1);
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
    (void)p, (void)bytes;
#endif
}

void fib_release_pages(void *p, size_t bytes)
{
#if defined(MADV_DONTNEED) && defined(_SC_PAGESIZE)
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || !p)
        return;
    uintptr_t lo = ((uintptr_t)p + (uintptr_t)page - 1) / (uintptr_t)page * (uintptr_t)page;
    uintptr_t hi = ((uintptr_t)p + bytes) / (uintptr_t)page * (uintptr_t)page;
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
#else
    (void)p, (void)bytes;
#endif
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
    case FIB_DTYPE_F16:
    case FIB_DTYPE_BF16: return sizeof(uint16_t);
    default: return 0;
    }
}

bool fib_dtype_writable(int32_t dtype)
{
    return dtype == FIB_DTYPE_F32 || dtype == FIB_DTYPE_F64;
}

double fib_load(int32_t dtype, const void *buf, int64_t i)
{
    return fib_stored_load(dtype, buf, i);
}

void fib_store(int32_t dtype, void *buf, int64_t i, double value)
{
    if (dtype == FIB_DTYPE_F32)
        ((float *)buf)[i] = (float)value;
    else
        ((double *)buf)[i] = value;
}
