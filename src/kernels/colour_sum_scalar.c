/* Portable colour-sum kernels: the reference every variant is tested
 * against. */
#include "kernels.h"

#include <math.h>

static void colour_sum_f32(const float *row, int64_t n, const int64_t *color,
                           double *sum, double *abs_sum)
{
    for (int64_t k = 0; k < n; k++) {
        double w = (double)row[k];
        sum[color[k]] += w;
        abs_sum[color[k]] += fabs(w);
    }
}

static void colour_sum_f64(const double *row, int64_t n, const int64_t *color,
                           double *sum, double *abs_sum)
{
    for (int64_t k = 0; k < n; k++) {
        sum[color[k]] += row[k];
        abs_sum[color[k]] += fabs(row[k]);
    }
}

static const fib_kernels scalar = {
    .name = "scalar",
    .colour_sum_f32 = colour_sum_f32,
    .colour_sum_f64 = colour_sum_f64,
};

const fib_kernels *fib_kernels_scalar(void)
{
    return &scalar;
}
