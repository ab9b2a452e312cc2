/* What the CPU and the OS support: CPUID feature bits, and XGETBV for the
 * register state the OS saves on a context switch. */
#include "kernels/cpu.h"
#include "kernels/kernels.h"

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

bool fib_cpu_has_fma(void)
{
#ifdef FIB_X86_CPUID
    return cpu_fma_avx();
#else
    return true;
#endif
}

int32_t fib_cpu_simd_level(void)
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

