/* Run-time choice of the kernels. Only the scalar set exists so far; the
 * SIMD sets plug in here (CPUID + XGETBV, FIBRATION_SIMD override). */
#include "kernels.h"

const fib_kernels *fib_kernels_active(void)
{
    return fib_kernels_scalar();
}
