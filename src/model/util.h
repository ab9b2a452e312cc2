/* Small shared helpers: error reporting, checked arithmetic, allocation. */
#ifndef FIB_UTIL_H
#define FIB_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#  define FIB_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#  define FIB_PRINTF(a, b)
#endif

/* Records a message for fib_last_error() on this thread and returns status,
 * so that a failing path reads `return fib_error(FIB_E_SHAPE, "...", ...);`.
 * Messages of up to FIB_MESSAGE_SIZE - 1 bytes are kept whole (room for a
 * path of PATH_MAX bytes and the reason after it); longer ones keep their
 * head and tail, elided in the middle between UTF-8 characters. */
#define FIB_MESSAGE_SIZE 4096
int32_t fib_error(int32_t status, const char *fmt, ...) FIB_PRINTF(2, 3);
/* Records a message without a failing status (fib_coloring_is_balanced). */
void fib_error_note(const char *fmt, ...) FIB_PRINTF(1, 2);

/* options.c: the start of a fib_*_options_init: FIB_E_NULL for a NULL o,
 * FIB_E_INVALID for a struct_size below `smallest` (fn names the caller),
 * else the first `cleared` bytes of o zeroed. */
int32_t fib_options_clear(void *o, size_t struct_size, size_t smallest, size_t cleared,
                          const char *fn);

/* a * b into *out; false on overflow or a negative factor. */
bool fib_mul_i64(int64_t a, int64_t b, int64_t *out);
/* count * size bytes as size_t; false on overflow. */
bool fib_bytes(int64_t count, size_t size, size_t *out);

/* Allocation through one place so that tests can fail the k-th call. Every
 * function returns NULL for a zero count too (callers never ask for 0). */
void *fib_alloc(int64_t count, size_t size);   /* uninitialised */
/* A large scratch buffer in pages of its own (zeroed), freed by
 * fib_free_pages with the same count and size: its memory goes back to
 * the system when freed, whatever the process's allocator would keep of a
 * malloc'd one (glibc keeps a buffer below its raised mmap threshold in
 * its heap). malloc'd where pages cannot be mapped, and under
 * AddressSanitizer, which then watches its bounds. */
void *fib_alloc_pages(int64_t count, size_t size);
void fib_free_pages(void *p, int64_t count, size_t size);
void *fib_calloc(int64_t count, size_t size);  /* zeroed */
void fib_free(void *p);
char *fib_strdup(const char *s);
/* Asks for huge pages under the whole 2 MiB pages of [p, p + bytes) (a
 * hint; the kernel may ignore it): for buffers read at scattered places,
 * which then miss the TLB far less. */
void fib_advise_huge_pages(void *p, size_t bytes);
/* The whole pages of [p, p + bytes) go back to the system now (a hint):
 * in the process's own memory, for a buffer its owner will not read again
 * before it frees or rewrites it (its pages read as zeros after); in a
 * private read-only file mapping, for a reader done with them for now
 * (they come back from the file). */
void fib_release_pages(void *p, size_t bytes);

/* Asks the cache for bytes [p, p + n) ahead of their use (a hint; nothing
 * on compilers without __builtin_prefetch). */
static inline void fib_prefetch_range(const char *p, size_t n)
{
#if defined(__GNUC__)
    for (size_t off = 0; off < n; off += 64)
        __builtin_prefetch(p + off, 0, 3);
#else
    (void)p, (void)n;
#endif
}

/* splitmix64's finaliser: every bit of x reaches every bit of the result
 * (hashes, the generator's seeding). */
static inline uint64_t fib_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

/* Size of one element of a FIB_DTYPE_* (float16 and bfloat16 included),
 * 0 if unknown. */
size_t fib_dtype_size(int32_t dtype);
/* Whether the library writes caller buffers in this dtype: float32 and
 * float64 (half dtypes are read, never written). */
bool fib_dtype_writable(int32_t dtype);
/* Reads element i of a buffer of any FIB_DTYPE_* as double (exact). */
double fib_load(int32_t dtype, const void *buf, int64_t i);
/* Element i of an optional buffer, `absent` when there is none (a block
 * without a bias, a norm without a scale). */
static inline double fib_load_or(int32_t dtype, const void *buf, int64_t i, double absent)
{
    return buf ? fib_load(dtype, buf, i) : absent;
}
/* Writes element i of a float32/float64 buffer. */
void fib_store(int32_t dtype, void *buf, int64_t i, double value);

#endif
