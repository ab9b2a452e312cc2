/* Kernels over a stored dtype (stored.h). Half-precision tiles are widened
 * into the caller's scratch and handed to the float32 kernels; the column
 * sums, tight tests and finiteness checks read half values directly in the
 * scalar kernels' order, which defines the bits of every variant. */
#include "kernels/stored.h"
#include "kernels/tight_block.h"

#include <math.h>

void fib_widen_half(int32_t dtype, const uint16_t *x, int64_t n, float *out)
{
    if (dtype == FIB_DTYPE_BF16)
        for (int64_t k = 0; k < n; k++)
            out[k] = fib_bf16_to_f32(x[k]);
    else
        for (int64_t k = 0; k < n; k++)
            out[k] = fib_f16_to_f32(x[k]);
}

int64_t fib_color_scratch_len_stored(int32_t dtype, int64_t n, int64_t k_classes)
{
    int64_t len = fib_color_scratch_len(n, k_classes);
    if (fib_dtype_is_half(dtype))
        len += (FIB_TILE_MAX * n + 1) / 2; /* a tile of float32 */
    return len;
}

void fib_color_sums_stored(const fib_kernels *kernels, int32_t dtype, const void *w,
                            int64_t ld, int64_t rows, int64_t n, const int64_t *color,
                            const int64_t *perm, const int64_t *start, int64_t k_classes,
                            double *scratch, double *sum, double *abs_sum, int64_t ld_out)
{
    if (dtype == FIB_DTYPE_F32) {
        kernels->color_sums_f32(w, ld, rows, n, color, perm, start, k_classes, scratch,
                                 sum, abs_sum, ld_out);
    } else if (dtype == FIB_DTYPE_F64) {
        kernels->color_sums_f64(w, ld, rows, n, color, perm, start, k_classes, scratch,
                                 sum, abs_sum, ld_out);
    } else {
        /* the sums of the float32 tile: the same values, so the same bits */
        float *tile = (float *)(scratch + fib_color_scratch_len(n, k_classes));
        for (int64_t r = 0; r < rows; r++)
            fib_widen_half(dtype, (const uint16_t *)w + r * ld, n, tile + r * n);
        kernels->color_sums_f32(tile, n, rows, n, color, perm, start, k_classes, scratch,
                                 sum, abs_sum, ld_out);
    }
}

void fib_row_sums_stored(const fib_kernels *kernels, int32_t dtype, const void *w,
                         int64_t ld, const int64_t *rows, int64_t m, int64_t n,
                         double *sum, double *abs_sum)
{
    if (dtype == FIB_DTYPE_F32) {
        kernels->row_sums_f32(w, ld, rows, m, n, sum, abs_sum);
        return;
    }
    if (dtype == FIB_DTYPE_F64) {
        kernels->row_sums_f64(w, ld, rows, m, n, sum, abs_sum);
        return;
    }
    /* each column's sums still add its rows in their order from 0.0 (the
     * scalar kernel's order); walking a row at a time reads memory in order */
    for (int64_t i = 0; i < n; i++)
        sum[i] = abs_sum[i] = 0.0;
    for (int64_t u = 0; u < m; u++) {
        const void *row = (const uint16_t *)w + rows[u] * ld;
        for (int64_t i = 0; i < n; i++) {
            double v = fib_stored_load(dtype, row, i);
            sum[i] += v;
            abs_sum[i] += fabs(v);
        }
    }
}

/* Rows of the half tight test asked for ahead of their use. */
#define TIGHT_AHEAD 8

int64_t fib_tight_stored(const fib_kernels *kernels, int32_t dtype, const void *x,
                         int64_t ld, const int64_t *rows, int64_t m, int64_t len,
                         double slack, double coef)
{
    if (dtype == FIB_DTYPE_F32)
        return kernels->tight_f32(x, ld, rows, m, len, slack, coef);
    if (dtype == FIB_DTYPE_F64)
        return kernels->tight_f64(x, ld, rows, m, len, slack, coef);
    /* the scalar kernel's test on the exact float32 values: the extremes do
     * not depend on the order they are met in */
    fib_tight_block t;
    for (int64_t j = 0; j < len; j += FIB_TIGHT_BLOCK) {
        fib_tight_block_start(&t, j, len);
        for (int64_t u = 0; u < m; u++) {
            const void *row = (const uint16_t *)x + rows[u] * ld + j;
#if defined(__GNUC__)
            /* rows far apart (a page each in a wide layer) miss the cache
             * and the TLB one after another unless asked for ahead */
            if (u + TIGHT_AHEAD < m)
                __builtin_prefetch((const uint16_t *)x + rows[u + TIGHT_AHEAD] * ld + j);
#endif
            for (int64_t q = 0; q < t.n; q++)
                fib_tight_block_weight(&t, q, fib_stored_load(dtype, row, q));
        }
        int64_t q = fib_tight_block_first_loose(&t, slack, coef);
        if (q >= 0)
            return j + q;
    }
    return len;
}

bool fib_all_finite_stored(const fib_kernels *kernels, int32_t dtype, const void *x,
                           int64_t n)
{
    if (dtype == FIB_DTYPE_F32)
        return kernels->all_finite_f32(x, n);
    if (dtype == FIB_DTYPE_F64)
        return kernels->all_finite_f64(x, n);
    /* a half is finite unless its exponent bits are all ones; eight at a
     * time where the compiler has vector types (SSE2's pand, pcmpeqw, por
     * per 16 bytes) */
    uint16_t exponent = dtype == FIB_DTYPE_BF16 ? 0x7F80u : 0x7C00u;
    const uint16_t *h = x;
    int64_t k = 0;
    bool found = false;
#if defined(__GNUC__)
    typedef uint16_t u16x8 __attribute__((vector_size(16)));
    typedef int16_t i16x8 __attribute__((vector_size(16)));
    u16x8 full = {exponent, exponent, exponent, exponent, exponent, exponent, exponent, exponent};
    i16x8 any = {0};
    for (; k + 8 <= n; k += 8) {
        u16x8 v;
        memcpy(&v, h + k, sizeof v);
        any |= (i16x8)((v & full) == full);
    }
    for (int lane = 0; lane < 8; lane++)
        found |= any[lane] != 0;
#endif
    for (; k < n; k++)
        found |= (h[k] & exponent) == exponent;
    return !found;
}
