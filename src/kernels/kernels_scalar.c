/* Portable kernels: the reference every variant is tested against, and the
 * remainder paths the SIMD versions share. The kernels that exist for
 * float32 and float64 are written once, in kernels_scalar_typed.h. */
#include "kernels/kernels.h"
#include "kernels/fused.h"
#include "kernels/tight_block.h"

#include <math.h>
#include <string.h>

#define KS_SUFFIX f32
#define KS_ELEM float
#include "kernels/kernels_scalar_typed.h"

#define KS_SUFFIX f64
#define KS_ELEM double
#include "kernels/kernels_scalar_typed.h"

void fib_color_order(const int64_t *color, int64_t n, int64_t k_classes,
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

/* Values first: a block whose coordinates all span 0 is tight whatever the
 * allowances (the bound is never below 0), so their rows are not read. */
int64_t fib_tight_tol_from(const double *x, const double *tol, int64_t ld,
                           const int64_t *rows, int64_t m, int64_t j0,
                           int64_t len, double slack)
{
    fib_tight_block t;
    for (int64_t j = j0; j < len; j += FIB_TIGHT_BLOCK) {
        fib_tight_block_start(&t, j, len);
        for (int64_t u = 0; u < m; u++) {
            const double *row = x + rows[u] * ld + j;
            for (int64_t q = 0; q < t.n; q++)
                fib_tight_block_value(&t, q, row[q]);
        }
        bool spread = false;
        for (int64_t q = 0; q < t.n; q++)
            spread = spread || t.lo[q] != t.hi[q];
        if (!spread)
            continue;
        for (int64_t u = 0; u < m; u++) {
            const double *trow = tol + rows[u] * ld + j;
            for (int64_t q = 0; q < t.n; q++)
                fib_tight_block_allowance(&t, q, trow[q]);
        }
        int64_t q = fib_tight_block_first_loose(&t, slack, 1.0);
        if (q >= 0)
            return j + q;
    }
    return len;
}

static int64_t tight_tol(const double *x, const double *tol, int64_t ld,
                         const int64_t *rows, int64_t m, int64_t len,
                         double slack)
{
    return fib_tight_tol_from(x, tol, ld, rows, m, 0, len, slack);
}

static void axpy_f64(double *y, double a, const double *x, int64_t n)
{
    for (int64_t j = 0; j < n; j++)
        y[j] += a * x[j];
}

#define SCALAR_GEMM_PANEL 8

/* Each term fused: by the FMA instruction, or exactly emulated on CPUs
 * without it (fused.h); the library is built without contraction, so no
 * other kernel's products are. */
static void gemm_f64(int64_t m, int64_t n, int64_t k, const double *a, int64_t lda,
                     const double *packed_b, double *c, int64_t ldc)
{
    fib_fused_active()->gemm(m, n, k, a, lda, packed_b, SCALAR_GEMM_PANEL, c, ldc);
}

void fib_dots_f64_from(const double *a, int64_t lda, int64_t rows, const double *panel,
                       int64_t width, int64_t c0, int64_t len, double *out, int64_t ld_out)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = c0; c < width; c++) {
            double s = out[r * ld_out + c];
            for (int64_t j = 0; j < len; j++)
                s += a[r * lda + j] * panel[j * width + c];
            out[r * ld_out + c] = s;
        }
}

static void dots_f64(const double *a, int64_t lda, int64_t rows, const double *panel,
                     int64_t width, int64_t len, double *out, int64_t ld_out)
{
    fib_dots_f64_from(a, lda, rows, panel, width, 0, len, out, ld_out);
}

void fib_dots_f32_from(const float *a, int64_t lda, int64_t rows, const float *panel,
                       int64_t width, int64_t c0, int64_t len, double *out, int64_t ld_out)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = c0; c < width; c++) {
            float s = 0;
            for (int64_t j = 0; j < len; j++)
                s += a[r * lda + j] * panel[j * width + c];
            out[r * ld_out + c] += (double)s;
        }
}

static void dots_f32(const float *a, int64_t lda, int64_t rows, const float *panel,
                     int64_t width, int64_t len, double *out, int64_t ld_out)
{
    fib_dots_f32_from(a, lda, rows, panel, width, 0, len, out, ld_out);
}

static void rank1_costs(double sa2, const double *sb2, const double *cosine, int64_t n,
                        double *cost)
{
    for (int64_t x = 0; x < n; x++)
        cost[x] = isinf(cosine[x]) ? INFINITY : fib_rank1_cost(sa2, sb2[x], cosine[x]);
}

static const fib_kernels scalar = {
    .name = "scalar",
    .level = FIB_SIMD_SCALAR,
    .tile_rows = 8,
    .gemm_panel = SCALAR_GEMM_PANEL,
    FIB_KERNEL_FUNCTIONS,
};

const fib_kernels *fib_kernels_scalar(void)
{
    return &scalar;
}
