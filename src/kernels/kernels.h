/* Hot kernels behind the blocks, with a scalar version and per-ISA
 * variants chosen once at run time (see dispatch.c). */
#ifndef FIB_KERNELS_H
#define FIB_KERNELS_H

#include <stdint.h>

/* Colour sums of one row: for k in [0, n), sum[color[k]] += row[k] and
 * abs_sum[color[k]] += |row[k]|. sum and abs_sum hold the row's classes and
 * are accumulated into (callers zero them). */
typedef void (*fib_colour_sum_f32_fn)(const float *row, int64_t n,
                                      const int64_t *color, double *sum,
                                      double *abs_sum);
typedef void (*fib_colour_sum_f64_fn)(const double *row, int64_t n,
                                      const int64_t *color, double *sum,
                                      double *abs_sum);

typedef struct fib_kernels {
    const char *name; /* "scalar", "avx2", "avx512" */
    fib_colour_sum_f32_fn colour_sum_f32;
    fib_colour_sum_f64_fn colour_sum_f64;
} fib_kernels;

/* The kernels in use (chosen on first call; FIBRATION_SIMD overrides). */
const fib_kernels *fib_kernels_active(void);
/* The portable reference versions. */
const fib_kernels *fib_kernels_scalar(void);

#endif
