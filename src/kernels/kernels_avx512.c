/* AVX-512 kernels (compiled with -mavx512f; called only when the CPU and
 * the OS support it, see dispatch.c). Colour sums take a tile of 16 rows,
 * 8 columns at a time: the 16 x 8 block is widened to double, transposed in
 * registers, and each column's 16 values are added to the running sums of
 * its class, so every row's sum keeps the ascending-column order of the
 * scalar kernel (same bits). */
#include "kernels.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define TILE 16

/* In: rows r[0..8) of 8 doubles. Out: columns c[0..8) of 8 doubles. */
static inline void transpose8(const __m512d r[8], __m512d c[8])
{
    __m512d a[8], b[8];
    for (int i = 0; i < 4; i++) {
        a[2 * i] = _mm512_unpacklo_pd(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_pd(r[2 * i], r[2 * i + 1]);
    }
    /* b[0]: columns 0, 4 of rows 0-3; b[1]: 2, 6; b[2]: 1, 5; b[3]: 3, 7;
     * b[4..8) the same for rows 4-7. */
    for (int h = 0; h < 2; h++) {
        b[4 * h + 0] = _mm512_shuffle_f64x2(a[4 * h + 0], a[4 * h + 2], 0x88);
        b[4 * h + 1] = _mm512_shuffle_f64x2(a[4 * h + 0], a[4 * h + 2], 0xDD);
        b[4 * h + 2] = _mm512_shuffle_f64x2(a[4 * h + 1], a[4 * h + 3], 0x88);
        b[4 * h + 3] = _mm512_shuffle_f64x2(a[4 * h + 1], a[4 * h + 3], 0xDD);
    }
    c[0] = _mm512_shuffle_f64x2(b[0], b[4], 0x88);
    c[4] = _mm512_shuffle_f64x2(b[0], b[4], 0xDD);
    c[2] = _mm512_shuffle_f64x2(b[1], b[5], 0x88);
    c[6] = _mm512_shuffle_f64x2(b[1], b[5], 0xDD);
    c[1] = _mm512_shuffle_f64x2(b[2], b[6], 0x88);
    c[5] = _mm512_shuffle_f64x2(b[2], b[6], 0xDD);
    c[3] = _mm512_shuffle_f64x2(b[3], b[7], 0x88);
    c[7] = _mm512_shuffle_f64x2(b[3], b[7], 0xDD);
}

/* Running sums of the class being accumulated, kept in registers while
 * consecutive columns share a class (no store-to-load chains). */
typedef struct running {
    int64_t cls;
    __m512d s0, s1, a0, a1; /* rows 0-7 and 8-15: sums, absolute sums */
} running;

static inline void running_switch(running *run, int64_t cls, double *acc_s,
                                  double *acc_a)
{
    if (cls == run->cls)
        return;
    if (run->cls >= 0) {
        _mm512_storeu_pd(acc_s + run->cls * TILE, run->s0);
        _mm512_storeu_pd(acc_s + run->cls * TILE + 8, run->s1);
        _mm512_storeu_pd(acc_a + run->cls * TILE, run->a0);
        _mm512_storeu_pd(acc_a + run->cls * TILE + 8, run->a1);
    }
    run->cls = cls;
    run->s0 = _mm512_loadu_pd(acc_s + cls * TILE);
    run->s1 = _mm512_loadu_pd(acc_s + cls * TILE + 8);
    run->a0 = _mm512_loadu_pd(acc_a + cls * TILE);
    run->a1 = _mm512_loadu_pd(acc_a + cls * TILE + 8);
}

static inline void add_columns(running *run, const int64_t *color,
                               const __m512d lo[8], const __m512d hi[8],
                               double *acc_s, double *acc_a)
{
    for (int j = 0; j < 8; j++) {
        running_switch(run, color[j], acc_s, acc_a);
        run->s0 = _mm512_add_pd(run->s0, lo[j]);
        run->s1 = _mm512_add_pd(run->s1, hi[j]);
        run->a0 = _mm512_add_pd(run->a0, _mm512_abs_pd(lo[j]));
        run->a1 = _mm512_add_pd(run->a1, _mm512_abs_pd(hi[j]));
    }
}

static void write_out(const double *acc_s, const double *acc_a,
                      int64_t k_classes, double *sum, double *abs_sum,
                      int64_t ld_out)
{
    for (int64_t r = 0; r < TILE; r++)
        for (int64_t c = 0; c < k_classes; c++) {
            sum[r * ld_out + c] = acc_s[c * TILE + r];
            abs_sum[r * ld_out + c] = acc_a[c * TILE + r];
        }
}

static void colour_sums_f32(const float *w, int64_t ld, int64_t rows,
                            int64_t n, const int64_t *color, int64_t k_classes,
                            double *scratch, double *sum, double *abs_sum,
                            int64_t ld_out)
{
    if (rows < TILE) {
        fib_colour_sums_rows_f32(w, ld, 0, rows, n, color, k_classes, sum,
                                 abs_sum, ld_out);
        return;
    }
    double *acc_s = scratch, *acc_a = scratch + TILE * k_classes;
    memset(scratch, 0, (size_t)(2 * TILE * k_classes) * sizeof *scratch);
    running run = {.cls = -1};
    int64_t kb = 0;
    for (; kb + 8 <= n; kb += 8) {
        __m512d rl[8], rh[8], lo[8], hi[8];
        for (int r = 0; r < 8; r++) {
            rl[r] = _mm512_cvtps_pd(_mm256_loadu_ps(w + r * ld + kb));
            rh[r] = _mm512_cvtps_pd(_mm256_loadu_ps(w + (r + 8) * ld + kb));
        }
        transpose8(rl, lo);
        transpose8(rh, hi);
        add_columns(&run, color + kb, lo, hi, acc_s, acc_a);
    }
    running_switch(&run, -1, acc_s, acc_a);
    for (; kb < n; kb++)
        for (int64_t r = 0; r < TILE; r++) {
            double x = (double)w[r * ld + kb];
            acc_s[color[kb] * TILE + r] += x;
            acc_a[color[kb] * TILE + r] += fabs(x);
        }
    write_out(acc_s, acc_a, k_classes, sum, abs_sum, ld_out);
}

static void colour_sums_f64(const double *w, int64_t ld, int64_t rows,
                            int64_t n, const int64_t *color, int64_t k_classes,
                            double *scratch, double *sum, double *abs_sum,
                            int64_t ld_out)
{
    if (rows < TILE) {
        fib_colour_sums_rows_f64(w, ld, 0, rows, n, color, k_classes, sum,
                                 abs_sum, ld_out);
        return;
    }
    double *acc_s = scratch, *acc_a = scratch + TILE * k_classes;
    memset(scratch, 0, (size_t)(2 * TILE * k_classes) * sizeof *scratch);
    running run = {.cls = -1};
    int64_t kb = 0;
    for (; kb + 8 <= n; kb += 8) {
        __m512d rl[8], rh[8], lo[8], hi[8];
        for (int r = 0; r < 8; r++) {
            rl[r] = _mm512_loadu_pd(w + r * ld + kb);
            rh[r] = _mm512_loadu_pd(w + (r + 8) * ld + kb);
        }
        transpose8(rl, lo);
        transpose8(rh, hi);
        add_columns(&run, color + kb, lo, hi, acc_s, acc_a);
    }
    running_switch(&run, -1, acc_s, acc_a);
    for (; kb < n; kb++)
        for (int64_t r = 0; r < TILE; r++) {
            double x = w[r * ld + kb];
            acc_s[color[kb] * TILE + r] += x;
            acc_a[color[kb] * TILE + r] += fabs(x);
        }
    write_out(acc_s, acc_a, k_classes, sum, abs_sum, ld_out);
}

static void accumulate_f32(const float *x, int64_t n, double *acc,
                           double *abs_acc)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
        _mm512_storeu_pd(acc + i, _mm512_add_pd(_mm512_loadu_pd(acc + i), v));
        _mm512_storeu_pd(abs_acc + i, _mm512_add_pd(_mm512_loadu_pd(abs_acc + i),
                                                    _mm512_abs_pd(v)));
    }
    for (; i < n; i++) {
        double v = (double)x[i];
        acc[i] += v;
        abs_acc[i] += fabs(v);
    }
}

static void accumulate_f64(const double *x, int64_t n, double *acc,
                           double *abs_acc)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m512d v = _mm512_loadu_pd(x + i);
        _mm512_storeu_pd(acc + i, _mm512_add_pd(_mm512_loadu_pd(acc + i), v));
        _mm512_storeu_pd(abs_acc + i, _mm512_add_pd(_mm512_loadu_pd(abs_acc + i),
                                                    _mm512_abs_pd(v)));
    }
    for (; i < n; i++) {
        acc[i] += x[i];
        abs_acc[i] += fabs(x[i]);
    }
}

static inline void span8(__m512d v, double *lo, double *hi, double *small)
{
    /* min(v, lo) is v < lo ? v : lo, as in the scalar kernel. */
    _mm512_storeu_pd(lo, _mm512_min_pd(v, _mm512_loadu_pd(lo)));
    _mm512_storeu_pd(hi, _mm512_max_pd(v, _mm512_loadu_pd(hi)));
    _mm512_storeu_pd(small, _mm512_min_pd(_mm512_abs_pd(v), _mm512_loadu_pd(small)));
}

static void span_f32(const float *x, int64_t n, double *lo, double *hi,
                     double *small)
{
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        span8(_mm512_cvtps_pd(_mm256_loadu_ps(x + j)), lo + j, hi + j, small + j);
    for (; j < n; j++) {
        double v = (double)x[j], a = fabs(v);
        lo[j] = v < lo[j] ? v : lo[j];
        hi[j] = v > hi[j] ? v : hi[j];
        small[j] = a < small[j] ? a : small[j];
    }
}

static void span_f64(const double *x, int64_t n, double *lo, double *hi,
                     double *small)
{
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        span8(_mm512_loadu_pd(x + j), lo + j, hi + j, small + j);
    for (; j < n; j++) {
        double v = x[j], a = fabs(v);
        lo[j] = v < lo[j] ? v : lo[j];
        hi[j] = v > hi[j] ? v : hi[j];
        small[j] = a < small[j] ? a : small[j];
    }
}

static const fib_kernels avx512 = {
    .name = "avx512",
    .level = FIB_SIMD_AVX512,
    .tile_rows = TILE,
    .colour_sums_f32 = colour_sums_f32,
    .colour_sums_f64 = colour_sums_f64,
    .accumulate_f32 = accumulate_f32,
    .accumulate_f64 = accumulate_f64,
    .span_f32 = span_f32,
    .span_f64 = span_f64,
};

const fib_kernels *fib_kernels_avx512(void)
{
    return &avx512;
}
