/* Run-time choice of the kernels, once per process: the best set that the
 * build has and the CPU and OS support (CPUID feature bits, and XGETBV for
 * the register state the OS saves), or the one FIBRATION_SIMD names. No
 * IFUNC: a pointer to a const table, published with C11 atomics. Racing
 * first calls compute the same answer, so a plain store is enough. */
#include "kernels/kernels.h"
#include "kernels/fused.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#  include <cpuid.h>
#  define FIB_X86_CPUID 1
#  if defined(FIB_HAVE_AVX2) || defined(FIB_HAVE_AVX512)
#    define FIB_X86_DISPATCH 1
#  endif
#endif

#ifdef FIB_X86_CPUID
/* XCR0: which register files the OS saves on a context switch. */
static uint64_t read_xcr0(void)
{
    uint32_t eax, edx;
    __asm__ __volatile__("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}
#endif

#ifdef FIB_X86_CPUID
/* FMA's instructions and the AVX register state the OS saves (they are
 * VEX encoded). */
static bool cpu_fma_avx(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return false;
    const unsigned osxsave = 1u << 27, avx = 1u << 28, fma = 1u << 12;
    if ((c & osxsave) == 0 || (c & avx) == 0 || (c & fma) == 0)
        return false;
    return (read_xcr0() & 0x6) == 0x6; /* SSE and AVX state */
}
#endif

/* Elsewhere the instruction's loops exist only when the target's baseline
 * fuses (fused_fma.c), so any CPU of the target runs them. */
bool fib_cpu_has_fma(void)
{
#ifdef FIB_X86_CPUID
    return cpu_fma_avx();
#else
    return true;
#endif
}

/* The highest FIB_SIMD_* level the CPU and OS support. */
static int32_t cpu_level(void)
{
#ifdef FIB_X86_DISPATCH
    unsigned a, b, c, d;
    /* FMA too: both SIMD sets' gemm_f64 fuse (the AVX2 set with FMA's
     * instructions; every AVX-512 CPU has them) */
    if (!cpu_fma_avx())
        return FIB_SIMD_SCALAR;
    uint64_t xcr0 = read_xcr0();
    if (__get_cpuid_max(0, NULL) < 7)
        return FIB_SIMD_SCALAR;
    __cpuid_count(7, 0, a, b, c, d);
    if ((b & (1u << 5)) == 0) /* AVX2 */
        return FIB_SIMD_SCALAR;
    /* AVX-512F, and the opmask and upper ZMM state saved by the OS. */
    if ((b & (1u << 16)) && (xcr0 & 0xE0) == 0xE0)
        return FIB_SIMD_AVX512;
    return FIB_SIMD_AVX2;
#else
    return FIB_SIMD_SCALAR;
#endif
}

const fib_kernels *fib_kernels_level(int32_t level)
{
    if (level < FIB_SIMD_SCALAR || level > cpu_level())
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
