/* Run-time choice of the kernels, once per process: the best set that the
 * build has and the CPU and OS support (cpu.c), or the one FIBRATION_SIMD
 * names. No
 * IFUNC: a pointer to a const table, published with C11 atomics. Racing
 * first calls compute the same answer, so a plain store is enough. */
#include "kernels/cpu.h"
#include "kernels/kernels.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const fib_kernels *fib_kernels_level(int32_t level)
{
    if (level < FIB_SIMD_SCALAR || level > fib_cpu_simd_level())
        return NULL;
    switch (level) {
    case FIB_SIMD_SCALAR:
        return fib_kernels_scalar();
#ifdef FIB_HAVE_AVX2
    case FIB_SIMD_AVX2:
        return fib_kernels_avx2();
#endif
#ifdef FIB_HAVE_AVX512
    case FIB_SIMD_AVX512:
        return fib_kernels_avx512();
#endif
    default:
        return NULL;
    }
}

/* FIBRATION_SIMD as a level, or -1 (unset or unknown: automatic). */
static int32_t requested_level(void)
{
    const char *env = getenv("FIBRATION_SIMD");
    if (!env || !*env)
        return -1;
    if (!strcasecmp(env, "scalar"))
        return FIB_SIMD_SCALAR;
    if (!strcasecmp(env, "avx2"))
        return FIB_SIMD_AVX2;
    if (!strcasecmp(env, "avx512"))
        return FIB_SIMD_AVX512;
    return -1;
}

static const fib_kernels *choose(void)
{
    int32_t level = requested_level();
    if (level < 0)
        level = FIB_SIMD_AVX512;
    /* Never above what is there: step down to the best available. */
    for (; level > FIB_SIMD_SCALAR; level--) {
        const fib_kernels *k = fib_kernels_level(level);
        if (k)
            return k;
    }
    return fib_kernels_scalar();
}

static _Atomic(const fib_kernels *) active_kernels;

const fib_kernels *fib_kernels_active(void)
{
    const fib_kernels *k =
        atomic_load_explicit(&active_kernels, memory_order_acquire);
    if (!k) {
        k = choose();
        atomic_store_explicit(&active_kernels, k, memory_order_release);
    }
    return k;
}

int32_t fib_kernels_override(int32_t level)
{
    const fib_kernels *k = level < 0 ? choose() : fib_kernels_level(level);
    if (!k)
        return -1;
    atomic_store_explicit(&active_kernels, k, memory_order_release);
    return 0;
}
