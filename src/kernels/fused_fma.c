/* The fused loops with the CPU's FMA instruction. On x86 this file is
 * compiled with -mfma (src/meson.build) and called only when the CPU has
 * FMA and the OS saves the AVX registers (fib_cpu_has_fma); elsewhere only
 * when the target's baseline fuses (__FP_FAST_FMA: fma() is one
 * instruction). Otherwise it provides nothing and the emulation serves. */
#include "kernels/fused.h"

#include <math.h>
#include <stddef.h>

#if defined(__FMA__) || defined(__FP_FAST_FMA)
#  define FUSED_TERM(a, b, c) fma(a, b, c)
#  define FUSED_SUFFIX fma
#  define FUSED_NAME "fma"
#  define FUSED_TABLE fib_fused_fma_table
#  include "kernels/fused_loops.h"
#else
const fib_fused *fib_fused_fma_table(void)
{
    return NULL;
}
#endif
