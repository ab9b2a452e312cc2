/* Portable kernels: the reference every variant is tested against, and the
 * remainder paths the SIMD versions share. */
#include "kernels.h"

#include <math.h>
#include <string.h>

void fib_colour_sums_rows_f32(const float *w, int64_t ld, int64_t row0,
                              int64_t rows, int64_t n, const int64_t *color,
                              int64_t k_classes, double *sum, double *abs_sum,
                              int64_t ld_out)
{
    for (int64_t r = row0; r < rows; r++) {
        const float *row = w + r * ld;
        double *s = sum + r * ld_out, *a = abs_sum + r * ld_out;
        memset(s, 0, (size_t)k_classes * sizeof *s);
        memset(a, 0, (size_t)k_classes * sizeof *a);
        for (int64_t k = 0; k < n; k++) {
            double x = (double)row[k];
            s[color[k]] += x;
            a[color[k]] += fabs(x);
        }
    }
}

void fib_colour_sums_rows_f64(const double *w, int64_t ld, int64_t row0,
                              int64_t rows, int64_t n, const int64_t *color,
                              int64_t k_classes, double *sum, double *abs_sum,
                              int64_t ld_out)
{
    for (int64_t r = row0; r < rows; r++) {
        const double *row = w + r * ld;
        double *s = sum + r * ld_out, *a = abs_sum + r * ld_out;
        memset(s, 0, (size_t)k_classes * sizeof *s);
        memset(a, 0, (size_t)k_classes * sizeof *a);
        for (int64_t k = 0; k < n; k++) {
            s[color[k]] += row[k];
            a[color[k]] += fabs(row[k]);
        }
    }
}

static void colour_sums_f32(const float *w, int64_t ld, int64_t rows,
                            int64_t n, const int64_t *color, int64_t k_classes,
                            double *scratch, double *sum, double *abs_sum,
                            int64_t ld_out)
{
    (void)scratch;
    fib_colour_sums_rows_f32(w, ld, 0, rows, n, color, k_classes, sum, abs_sum,
                             ld_out);
}

static void colour_sums_f64(const double *w, int64_t ld, int64_t rows,
                            int64_t n, const int64_t *color, int64_t k_classes,
                            double *scratch, double *sum, double *abs_sum,
                            int64_t ld_out)
{
    (void)scratch;
    fib_colour_sums_rows_f64(w, ld, 0, rows, n, color, k_classes, sum, abs_sum,
                             ld_out);
}

static void accumulate_f32(const float *x, int64_t n, double *acc,
                           double *abs_acc)
{
    for (int64_t i = 0; i < n; i++) {
        double v = (double)x[i];
        acc[i] += v;
        abs_acc[i] += fabs(v);
    }
}

static void accumulate_f64(const double *x, int64_t n, double *acc,
                           double *abs_acc)
{
    for (int64_t i = 0; i < n; i++) {
        acc[i] += x[i];
        abs_acc[i] += fabs(x[i]);
    }
}

static void span_f32(const float *x, int64_t n, double *lo, double *hi,
                     double *small)
{
    for (int64_t j = 0; j < n; j++) {
        double v = (double)x[j], a = fabs(v);
        lo[j] = v < lo[j] ? v : lo[j];
        hi[j] = v > hi[j] ? v : hi[j];
        small[j] = a < small[j] ? a : small[j];
    }
}

static void span_f64(const double *x, int64_t n, double *lo, double *hi,
                     double *small)
{
    for (int64_t j = 0; j < n; j++) {
        double v = x[j], a = fabs(v);
        lo[j] = v < lo[j] ? v : lo[j];
        hi[j] = v > hi[j] ? v : hi[j];
        small[j] = a < small[j] ? a : small[j];
    }
}

static const fib_kernels scalar = {
    .name = "scalar",
    .level = FIB_SIMD_SCALAR,
    .tile_rows = 8,
    .colour_sums_f32 = colour_sums_f32,
    .colour_sums_f64 = colour_sums_f64,
    .accumulate_f32 = accumulate_f32,
    .accumulate_f64 = accumulate_f64,
    .span_f32 = span_f32,
    .span_f64 = span_f64,
};

const fib_kernels *fib_kernels_scalar(void)
{
    return &scalar;
}
