/* Colour sums of a row-major block of weights into a signature: the fiber
 * signature of every block whose rows are weight rows over a source's
 * classes (dense, convolution kernels, gate rows). Tiles of rows go to the
 * SIMD kernels (src/kernels/) on the signature's threads. */
#include "model/model.h"
#include "kernels/kernels.h"
#include "kernels/stored.h"
#include "kernels/parallel.h"

int32_t fib_color_rows(fib_signature *sig, int64_t sig_row0, int64_t offset,
                        int32_t dtype, const void *w, int64_t ld, int64_t rows,
                        int64_t n, const int64_t *color, int64_t k_classes,
                        const double *coef, int32_t group)
{
    const fib_kernels *kernels = fib_kernels_active();
    int64_t tile = kernels->tile_rows;
    int64_t n_tiles = (rows + tile - 1) / tile;
    int threads = fib_thread_count(sig->n_threads, n_tiles);
    int64_t scratch_len = fib_color_scratch_len_stored(dtype, n, k_classes);
    double *scratch = fib_alloc(scratch_len * threads, sizeof *scratch);
    /* the class order of the columns, once per block */
    int64_t *perm = fib_alloc(n, sizeof *perm);
    int64_t *start = fib_alloc(k_classes + 1, sizeof *start);
    if (!scratch || !perm || !start) {
        fib_free(scratch);
        fib_free(perm);
        fib_free(start);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory for colour sums",
                         (int)group);
    }
    fib_color_order(color, n, k_classes, perm, start);
    size_t esize = fib_dtype_size(dtype);
    FIB_PRAGMA(omp parallel for num_threads(threads) schedule(static) if (threads > 1))
    for (int64_t t = 0; t < n_tiles; t++) {
        int64_t row0 = t * tile, count = rows - row0 < tile ? rows - row0 : tile;
        double *val = sig->value + (sig_row0 + row0) * sig->n_coords + offset;
        double *tol = sig->tol + (sig_row0 + row0) * sig->n_coords + offset;
        double *own = scratch + scratch_len * fib_thread_num();
        const void *at = (const char *)w + (size_t)(row0 * ld) * esize;
        fib_color_sums_stored(kernels, dtype, at, ld, count, n, color, perm, start,
                               k_classes, own, val, tol, sig->n_coords);
        /* fib_rounding_tol(dtype, |c|, a) is coef[c] * a, the same bits */
        for (int64_t r = 0; r < count; r++)
            for (int64_t c = 0; c < k_classes; c++)
                tol[r * sig->n_coords + c] *= coef[c];
    }
    fib_free(scratch);
    fib_free(perm);
    fib_free(start);
    return FIB_OK;
}

int32_t fib_color_coefficients(const fib_partition *src, int32_t dtype, double **coef_out)
{
    int64_t k = src->n_classes;
    int64_t *sizes = fib_alloc(k, sizeof *sizes);
    double *coef = fib_alloc(k, sizeof *coef);
    if (!sizes || !coef) {
        fib_free(sizes);
        fib_free(coef);
        return fib_error(FIB_E_NOMEM, "out of memory for %lld class allowances",
                         (long long)k);
    }
    fib_partition_class_sizes(src, sizes);
    for (int64_t c = 0; c < k; c++)
        coef[c] = fib_rounding_tol(dtype, sizes[c], 1.0);
    fib_free(sizes);
    *coef_out = coef;
    return FIB_OK;
}
