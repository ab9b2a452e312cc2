/* What the CPU and the OS support, asked once by the dispatchers of the
 * kernel sets (dispatch.c) and of the fused terms (fused.c). */
#ifndef FIB_CPU_H
#define FIB_CPU_H

#include <stdbool.h>
#include <stdint.h>

/* The highest FIB_SIMD_* level (kernels.h) the CPU and the OS support;
 * FIB_SIMD_SCALAR when the build has no SIMD set. */
int32_t fib_cpu_simd_level(void);

/* Whether the CPU runs the fused loops of FMA's instruction as built
 * (fused_fma.c): on x86 FMA and the AVX register state the OS saves (the
 * instructions are VEX encoded); elsewhere those loops exist only when the
 * target's baseline fuses, so always. */
bool fib_cpu_has_fma(void);

#endif
