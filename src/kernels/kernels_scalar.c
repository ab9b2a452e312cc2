/* Portable kernels: the reference every variant is tested against, and the
 * remainder paths the SIMD versions share. */
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

void fib_colour_sums_rows_f32(const float *w, int64_t ld, int64_t row0,
                              int64_t rows, int64_t n, const int64_t *color,
                              int64_t k_classes, double *sum, double *abs_sum,
                              int64_t ld_out)
{
    for (int64_t r = row0; r < rows; r++) {
        const float *row = w + r * ld;
        double *s = sum + r * ld_out;
        memset(s, 0, (size_t)k_classes * sizeof *s);
        if (!abs_sum) {
            for (int64_t k = 0; k < n; k++)
                s[color[k]] += (double)row[k];
            continue;
        }
        double *a = abs_sum + r * ld_out;
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
        double *s = sum + r * ld_out;
        memset(s, 0, (size_t)k_classes * sizeof *s);
        if (!abs_sum) {
            for (int64_t k = 0; k < n; k++)
                s[color[k]] += row[k];
            continue;
        }
        double *a = abs_sum + r * ld_out;
        memset(a, 0, (size_t)k_classes * sizeof *a);
        for (int64_t k = 0; k < n; k++) {
            s[color[k]] += row[k];
            a[color[k]] += fabs(row[k]);
        }
    }
}

void fib_colour_order(const int64_t *color, int64_t n, int64_t k_classes,
                      int64_t *perm, int64_t *start)
{
    memset(start, 0, (size_t)(k_classes + 1) * sizeof *start);
    for (int64_t j = 0; j < n; j++)
        start[color[j] + 1]++;
    for (int64_t c = 0; c < k_classes; c++)
        start[c + 1] += start[c];
    /* a counting sort: stable, so ascending within each class */
    for (int64_t j = 0; j < n; j++)
        perm[start[color[j]]++] = j;
    for (int64_t c = k_classes; c > 0; c--)
        start[c] = start[c - 1];
    start[0] = 0;
}

static void colour_sums_f32(const float *w, int64_t ld, int64_t rows,
                            int64_t n, const int64_t *color,
                            const int64_t *perm, const int64_t *start,
                            int64_t k_classes, double *scratch, double *sum,
                            double *abs_sum, int64_t ld_out)
{
    (void)scratch, (void)perm, (void)start;
    fib_colour_sums_rows_f32(w, ld, 0, rows, n, color, k_classes, sum, abs_sum,
                             ld_out);
}

static void colour_sums_f64(const double *w, int64_t ld, int64_t rows,
                            int64_t n, const int64_t *color,
                            const int64_t *perm, const int64_t *start,
                            int64_t k_classes, double *scratch, double *sum,
                            double *abs_sum, int64_t ld_out)
{
    (void)scratch, (void)perm, (void)start;
    fib_colour_sums_rows_f64(w, ld, 0, rows, n, color, k_classes, sum, abs_sum,
                             ld_out);
}

/* Column by column: the order of each sum is the rows' order. */
static void row_sums_f32(const float *w, int64_t ld, const int64_t *rows, int64_t m,
                         int64_t n, double *sum, double *abs_sum)
{
    fib_row_sums_cols_f32(w, ld, rows, m, 0, n, sum, abs_sum);
}

static void row_sums_f64(const double *w, int64_t ld, const int64_t *rows, int64_t m,
                         int64_t n, double *sum, double *abs_sum)
{
    fib_row_sums_cols_f64(w, ld, rows, m, 0, n, sum, abs_sum);
}

void fib_row_sums_cols_f32(const float *w, int64_t ld, const int64_t *rows, int64_t m,
                           int64_t i0, int64_t n, double *sum, double *abs_sum)
{
    for (int64_t i = i0; i < n; i++) {
        double s = 0.0, a = 0.0;
        for (int64_t u = 0; u < m; u++) {
            double v = (double)w[rows[u] * ld + i];
            s += v;
            a += fabs(v);
        }
        sum[i] = s;
        abs_sum[i] = a;
    }
}

void fib_row_sums_cols_f64(const double *w, int64_t ld, const int64_t *rows, int64_t m,
                           int64_t i0, int64_t n, double *sum, double *abs_sum)
{
    for (int64_t i = i0; i < n; i++) {
        double s = 0.0, a = 0.0;
        for (int64_t u = 0; u < m; u++) {
            double v = w[rows[u] * ld + i];
            s += v;
            a += fabs(v);
        }
        sum[i] = s;
        abs_sum[i] = a;
    }
}

/* Coordinates are taken in blocks so that each row is read sequentially. */
#define TIGHT_BLOCK 16

int64_t fib_tight_f32_from(const float *x, int64_t ld, const int64_t *rows,
                           int64_t m, int64_t j0, int64_t len, double slack,
                           double coef)
{
    for (int64_t j = j0; j < len; j += TIGHT_BLOCK) {
        int64_t b = len - j < TIGHT_BLOCK ? len - j : TIGHT_BLOCK;
        double lo[TIGHT_BLOCK], hi[TIGHT_BLOCK], small[TIGHT_BLOCK];
        for (int64_t q = 0; q < b; q++) {
            lo[q] = small[q] = INFINITY;
            hi[q] = -INFINITY;
        }
        for (int64_t u = 0; u < m; u++) {
            const float *row = x + rows[u] * ld + j;
            for (int64_t q = 0; q < b; q++) {
                double v = (double)row[q], a = fabs(v);
                lo[q] = v < lo[q] ? v : lo[q];
                hi[q] = v > hi[q] ? v : hi[q];
                small[q] = a < small[q] ? a : small[q];
            }
        }
        for (int64_t q = 0; q < b; q++) {
            double t = coef * small[q];
            if (!(hi[q] - lo[q] <= (slack + t) + t))
                return j + q;
        }
    }
    return len;
}

int64_t fib_tight_f64_from(const double *x, int64_t ld, const int64_t *rows,
                           int64_t m, int64_t j0, int64_t len, double slack,
                           double coef)
{
    for (int64_t j = j0; j < len; j += TIGHT_BLOCK) {
        int64_t b = len - j < TIGHT_BLOCK ? len - j : TIGHT_BLOCK;
        double lo[TIGHT_BLOCK], hi[TIGHT_BLOCK], small[TIGHT_BLOCK];
        for (int64_t q = 0; q < b; q++) {
            lo[q] = small[q] = INFINITY;
            hi[q] = -INFINITY;
        }
        for (int64_t u = 0; u < m; u++) {
            const double *row = x + rows[u] * ld + j;
            for (int64_t q = 0; q < b; q++) {
                double v = row[q], a = fabs(v);
                lo[q] = v < lo[q] ? v : lo[q];
                hi[q] = v > hi[q] ? v : hi[q];
                small[q] = a < small[q] ? a : small[q];
            }
        }
        for (int64_t q = 0; q < b; q++) {
            double t = coef * small[q];
            if (!(hi[q] - lo[q] <= (slack + t) + t))
                return j + q;
        }
    }
    return len;
}

/* Values first: a block whose coordinates all span 0 is tight whatever the
 * allowances (the bound is never below 0), so their rows are not read. */
int64_t fib_tight_tol_from(const double *x, const double *tol, int64_t ld,
                           const int64_t *rows, int64_t m, int64_t j0,
                           int64_t len, double slack)
{
    for (int64_t j = j0; j < len; j += TIGHT_BLOCK) {
        int64_t b = len - j < TIGHT_BLOCK ? len - j : TIGHT_BLOCK;
        double lo[TIGHT_BLOCK], hi[TIGHT_BLOCK], small[TIGHT_BLOCK];
        for (int64_t q = 0; q < b; q++) {
            lo[q] = small[q] = INFINITY;
            hi[q] = -INFINITY;
        }
        for (int64_t u = 0; u < m; u++) {
            const double *row = x + rows[u] * ld + j;
            for (int64_t q = 0; q < b; q++) {
                double v = row[q];
                lo[q] = v < lo[q] ? v : lo[q];
                hi[q] = v > hi[q] ? v : hi[q];
            }
        }
        bool spread = false;
        for (int64_t q = 0; q < b; q++)
            spread = spread || lo[q] != hi[q];
        if (!spread)
            continue;
        for (int64_t u = 0; u < m; u++) {
            const double *trow = tol + rows[u] * ld + j;
            for (int64_t q = 0; q < b; q++)
                small[q] = trow[q] < small[q] ? trow[q] : small[q];
        }
        for (int64_t q = 0; q < b; q++)
            if (!(hi[q] - lo[q] <= (slack + small[q]) + small[q]))
                return j + q;
    }
    return len;
}

static int64_t tight_f32(const float *x, int64_t ld, const int64_t *rows,
                         int64_t m, int64_t len, double slack, double coef)
{
    return fib_tight_f32_from(x, ld, rows, m, 0, len, slack, coef);
}

static int64_t tight_f64(const double *x, int64_t ld, const int64_t *rows,
                         int64_t m, int64_t len, double slack, double coef)
{
    return fib_tight_f64_from(x, ld, rows, m, 0, len, slack, coef);
}

static int64_t tight_tol(const double *x, const double *tol, int64_t ld,
                         const int64_t *rows, int64_t m, int64_t len,
                         double slack)
{
    return fib_tight_tol_from(x, tol, ld, rows, m, 0, len, slack);
}

/* x - x is 0 for a finite x, NaN otherwise; branch-free. */
static bool all_finite_f32(const float *x, int64_t n)
{
    int bad = 0;
    for (int64_t k = 0; k < n; k++)
        bad |= !(x[k] - x[k] == 0.0f);
    return !bad;
}

static bool all_finite_f64(const double *x, int64_t n)
{
    int bad = 0;
    for (int64_t k = 0; k < n; k++)
        bad |= !(x[k] - x[k] == 0.0);
    return !bad;
}

static void axpy_f64(double *y, double a, const double *x, int64_t n)
{
    for (int64_t j = 0; j < n; j++)
        y[j] += a * x[j];
}

static const fib_kernels scalar = {
    .name = "scalar",
    .level = FIB_SIMD_SCALAR,
    .tile_rows = 8,
    .colour_sums_f32 = colour_sums_f32,
    .colour_sums_f64 = colour_sums_f64,
    .row_sums_f32 = row_sums_f32,
    .row_sums_f64 = row_sums_f64,
    .tight_f32 = tight_f32,
    .tight_f64 = tight_f64,
    .tight_tol = tight_tol,
    .all_finite_f32 = all_finite_f32,
    .all_finite_f64 = all_finite_f64,
    .axpy_f64 = axpy_f64,
};

const fib_kernels *fib_kernels_scalar(void)
{
    return &scalar;
}
