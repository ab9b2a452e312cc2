/* Kernels over a tensor's stored dtype: float32 and float64 go to the
 * active kernel set as they are; float16 and bfloat16 (weights held as the
 * model file stores them) are converted exactly to float32 on the way in,
 * a tile at a time, so that every result has the bits of the float32 copy
 * of the same weights (the kernels' contract in kernels.h) without such a
 * copy ever being made. Every block reads its weights through these. */
#ifndef FIB_KERNELS_STORED_H
#define FIB_KERNELS_STORED_H

#include "fibration.h"
#include "kernels/kernels.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline bool fib_dtype_is_half(int32_t dtype)
{
    return dtype == FIB_DTYPE_F16 || dtype == FIB_DTYPE_BF16;
}

static inline float fib_bits_to_f32(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* IEEE binary16 to float32, exact and branch-free (so that a loop of it
 * vectorises): a normal half is rescaled by 2^-112 after its exponent is
 * moved into place, a subnormal one is made by subtracting 0.5 from a float
 * whose mantissa holds it; both steps are exact. */
static inline float fib_f16_to_f32(uint16_t h)
{
    uint32_t w = (uint32_t)h << 16;
    uint32_t sign = w & UINT32_C(0x80000000);
    uint32_t two_w = w + w;
    float normal = fib_bits_to_f32((two_w >> 4) + (UINT32_C(0xE0) << 23)) * 0x1.0p-112f;
    float subnormal = fib_bits_to_f32((two_w >> 17) | (UINT32_C(126) << 23)) - 0.5f;
    uint32_t magnitude;
    float picked = two_w < (UINT32_C(1) << 27) ? subnormal : normal;
    memcpy(&magnitude, &picked, sizeof magnitude);
    return fib_bits_to_f32(sign | magnitude);
}

/* bfloat16 is the top half of a float32. */
static inline float fib_bf16_to_f32(uint16_t h)
{
    return fib_bits_to_f32((uint32_t)h << 16);
}

/* Element i of a buffer of any stored dtype, as double. */
static inline double fib_stored_load(int32_t dtype, const void *buf, int64_t i)
{
    switch (dtype) {
    case FIB_DTYPE_F32: return (double)((const float *)buf)[i];
    case FIB_DTYPE_F16: return (double)fib_f16_to_f32(((const uint16_t *)buf)[i]);
    case FIB_DTYPE_BF16: return (double)fib_bf16_to_f32(((const uint16_t *)buf)[i]);
    default: return ((const double *)buf)[i];
    }
}

/* n elements of a float16 / bfloat16 buffer as float32. */
void fib_widen_half(int32_t dtype, const uint16_t *x, int64_t n, float *out);

/* Doubles of scratch one fib_color_sums_stored call needs (per thread):
 * fib_color_scratch_len, and room for a widened tile of a half dtype. */
int64_t fib_color_scratch_len_stored(int32_t dtype, int64_t n, int64_t k_classes);

/* The kernels of kernels.h for a buffer of `dtype` (w, x: the first
 * element, as for the typed kernels; the same arguments otherwise). */
void fib_color_sums_stored(const fib_kernels *kernels, int32_t dtype, const void *w,
                            int64_t ld, int64_t rows, int64_t n, const int64_t *color,
                            const int64_t *perm, const int64_t *start, int64_t k_classes,
                            double *scratch, double *sum, double *abs_sum, int64_t ld_out);
void fib_row_sums_stored(const fib_kernels *kernels, int32_t dtype, const void *w,
                         int64_t ld, const int64_t *rows, int64_t m, int64_t n,
                         double *sum, double *abs_sum);
int64_t fib_tight_stored(const fib_kernels *kernels, int32_t dtype, const void *x,
                         int64_t ld, const int64_t *rows, int64_t m, int64_t len,
                         double slack, double coef);
bool fib_all_finite_stored(const fib_kernels *kernels, int32_t dtype, const void *x,
                           int64_t n);

#endif
