/* AVX2 kernels (compiled with -mavx2; called only when the CPU and the OS
 * support it, see dispatch.c). Colour sums take a tile of 8 rows, 4 columns
 * at a time: each 8 x 4 block is widened to double and transposed in
 * registers, and each column's 8 values are added to the running sums of its
 * class, keeping the ascending-column order of the scalar kernel (same
 * bits). */
#include "kernels.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define TILE 8

/* In: rows r[0..4) of 4 doubles. Out: columns c[0..4). */
static inline void transpose4(const __m256d r[4], __m256d c[4])
{
    __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]); /* r0_0 r1_0 r0_2 r1_2 */
    __m256d t1 = _mm256_unpackhi_pd(r[0], r[1]); /* r0_1 r1_1 r0_3 r1_3 */
    __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]);
    __m256d t3 = _mm256_unpackhi_pd(r[2], r[3]);
    c[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    c[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    c[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    c[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}

static inline __m256d abs4(__m256d v)
{
    return _mm256_andnot_pd(_mm256_set1_pd(-0.0), v);
}

typedef struct running {
    int64_t cls;
    __m256d s0, s1, a0, a1; /* rows 0-3 and 4-7: sums, absolute sums */
} running;

/* Stores the running sums back (at the end of a tile). */
static inline void running_flush(running *run, double *acc_s, double *acc_a)
{
    if (run->cls < 0)
        return;
    _mm256_storeu_pd(acc_s + run->cls * TILE, run->s0);
    _mm256_storeu_pd(acc_s + run->cls * TILE + 4, run->s1);
    _mm256_storeu_pd(acc_a + run->cls * TILE, run->a0);
    _mm256_storeu_pd(acc_a + run->cls * TILE + 4, run->a1);
    run->cls = -1;
}

static inline void running_switch(running *run, int64_t cls, double *acc_s,
                                  double *acc_a)
{
    if (cls == run->cls)
        return;
    running_flush(run, acc_s, acc_a);
    run->cls = cls;
    run->s0 = _mm256_loadu_pd(acc_s + cls * TILE);
    run->s1 = _mm256_loadu_pd(acc_s + cls * TILE + 4);
    run->a0 = _mm256_loadu_pd(acc_a + cls * TILE);
    run->a1 = _mm256_loadu_pd(acc_a + cls * TILE + 4);
}

static inline void add_columns(running *run, const int64_t *color,
                               const __m256d lo[4], const __m256d hi[4],
                               double *acc_s, double *acc_a)
{
    for (int j = 0; j < 4; j++) {
        running_switch(run, color[j], acc_s, acc_a);
        run->s0 = _mm256_add_pd(run->s0, lo[j]);
        run->s1 = _mm256_add_pd(run->s1, hi[j]);
        run->a0 = _mm256_add_pd(run->a0, abs4(lo[j]));
        run->a1 = _mm256_add_pd(run->a1, abs4(hi[j]));
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

/* Exactly TILE rows. */
static void tile_f32(const float *w, int64_t ld, int64_t n, const int64_t *color,
                     int64_t k_classes, double *scratch, double *sum,
                     double *abs_sum, int64_t ld_out)
{
    double *acc_s = scratch, *acc_a = scratch + TILE * k_classes;
    memset(scratch, 0, (size_t)(2 * TILE * k_classes) * sizeof *scratch);
    running run = {.cls = -1};
    int64_t kb = 0;
    /* 8 columns per step (half a cache line per row), next ones prefetched. */
    for (; kb + 8 <= n; kb += 8) {
        __m256 line[TILE];
        for (int r = 0; r < TILE; r++) {
            line[r] = _mm256_loadu_ps(w + r * ld + kb);
            _mm_prefetch((const char *)(w + r * ld + kb + 128), _MM_HINT_T0);
        }
        for (int half = 0; half < 2; half++) {
            __m256d rl[4], rh[4], lo[4], hi[4];
            for (int r = 0; r < 4; r++) {
                __m128 a = half ? _mm256_extractf128_ps(line[r], 1) : _mm256_castps256_ps128(line[r]);
                __m128 b = half ? _mm256_extractf128_ps(line[r + 4], 1)
                                : _mm256_castps256_ps128(line[r + 4]);
                rl[r] = _mm256_cvtps_pd(a);
                rh[r] = _mm256_cvtps_pd(b);
            }
            transpose4(rl, lo);
            transpose4(rh, hi);
            add_columns(&run, color + kb + 4 * half, lo, hi, acc_s, acc_a);
        }
    }
    for (; kb + 4 <= n; kb += 4) {
        __m256d rl[4], rh[4], lo[4], hi[4];
        for (int r = 0; r < 4; r++) {
            rl[r] = _mm256_cvtps_pd(_mm_loadu_ps(w + r * ld + kb));
            rh[r] = _mm256_cvtps_pd(_mm_loadu_ps(w + (r + 4) * ld + kb));
        }
        transpose4(rl, lo);
        transpose4(rh, hi);
        add_columns(&run, color + kb, lo, hi, acc_s, acc_a);
    }
    running_flush(&run, acc_s, acc_a);
    for (; kb < n; kb++)
        for (int64_t r = 0; r < TILE; r++) {
            double x = (double)w[r * ld + kb];
            acc_s[color[kb] * TILE + r] += x;
            acc_a[color[kb] * TILE + r] += fabs(x);
        }
    write_out(acc_s, acc_a, k_classes, sum, abs_sum, ld_out);
}

/* Exactly TILE rows. */
static void tile_f64(const double *w, int64_t ld, int64_t n, const int64_t *color,
                     int64_t k_classes, double *scratch, double *sum,
                     double *abs_sum, int64_t ld_out)
{
    double *acc_s = scratch, *acc_a = scratch + TILE * k_classes;
    memset(scratch, 0, (size_t)(2 * TILE * k_classes) * sizeof *scratch);
    running run = {.cls = -1};
    int64_t kb = 0;
    for (; kb + 4 <= n; kb += 4) {
        __m256d rl[4], rh[4], lo[4], hi[4];
        for (int r = 0; r < 4; r++) {
            rl[r] = _mm256_loadu_pd(w + r * ld + kb);
            rh[r] = _mm256_loadu_pd(w + (r + 4) * ld + kb);
        }
        transpose4(rl, lo);
        transpose4(rh, hi);
        add_columns(&run, color + kb, lo, hi, acc_s, acc_a);
    }
    running_flush(&run, acc_s, acc_a);
    for (; kb < n; kb++)
        for (int64_t r = 0; r < TILE; r++) {
            double x = w[r * ld + kb];
            acc_s[color[kb] * TILE + r] += x;
            acc_a[color[kb] * TILE + r] += fabs(x);
        }
    write_out(acc_s, acc_a, k_classes, sum, abs_sum, ld_out);
}

static void colour_sums_f32(const float *w, int64_t ld, int64_t rows,
                            int64_t n, const int64_t *color, int64_t k_classes,
                            double *scratch, double *sum, double *abs_sum,
                            int64_t ld_out)
{
    int64_t r = 0;
    for (; r + TILE <= rows; r += TILE)
        tile_f32(w + r * ld, ld, n, color, k_classes, scratch, sum + r * ld_out,
                 abs_sum + r * ld_out, ld_out);
    fib_colour_sums_rows_f32(w, ld, r, rows, n, color, k_classes, sum, abs_sum,
                             ld_out);
}

static void colour_sums_f64(const double *w, int64_t ld, int64_t rows,
                            int64_t n, const int64_t *color, int64_t k_classes,
                            double *scratch, double *sum, double *abs_sum,
                            int64_t ld_out)
{
    int64_t r = 0;
    for (; r + TILE <= rows; r += TILE)
        tile_f64(w + r * ld, ld, n, color, k_classes, scratch, sum + r * ld_out,
                 abs_sum + r * ld_out, ld_out);
    fib_colour_sums_rows_f64(w, ld, r, rows, n, color, k_classes, sum, abs_sum,
                             ld_out);
}

static void accumulate_f32(const float *x, int64_t n, double *acc,
                           double *abs_acc)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
        _mm256_storeu_pd(acc + i, _mm256_add_pd(_mm256_loadu_pd(acc + i), v));
        _mm256_storeu_pd(abs_acc + i,
                         _mm256_add_pd(_mm256_loadu_pd(abs_acc + i), abs4(v)));
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
    for (; i + 4 <= n; i += 4) {
        __m256d v = _mm256_loadu_pd(x + i);
        _mm256_storeu_pd(acc + i, _mm256_add_pd(_mm256_loadu_pd(acc + i), v));
        _mm256_storeu_pd(abs_acc + i,
                         _mm256_add_pd(_mm256_loadu_pd(abs_acc + i), abs4(v)));
    }
    for (; i < n; i++) {
        acc[i] += x[i];
        abs_acc[i] += fabs(x[i]);
    }
}

/* Tight tests, 8 coordinates per step, running min/max in registers. */
static inline int64_t first_untight8(__m256d lo0, __m256d lo1, __m256d hi0,
                                     __m256d hi1, __m256d t0, __m256d t1,
                                     __m256d slack)
{
    __m256d ok0 = _mm256_cmp_pd(_mm256_sub_pd(hi0, lo0),
                                _mm256_add_pd(_mm256_add_pd(slack, t0), t0), _CMP_LE_OQ);
    __m256d ok1 = _mm256_cmp_pd(_mm256_sub_pd(hi1, lo1),
                                _mm256_add_pd(_mm256_add_pd(slack, t1), t1), _CMP_LE_OQ);
    unsigned ok = (unsigned)_mm256_movemask_pd(ok0) | ((unsigned)_mm256_movemask_pd(ok1) << 4);
    return ok == 0xFFu ? -1 : __builtin_ctz(~ok);
}

static int64_t tight_f32(const float *x, int64_t ld, const int64_t *rows,
                         int64_t m, int64_t len, double slack, double coef)
{
    const __m256d vslack = _mm256_set1_pd(slack), vcoef = _mm256_set1_pd(coef);
    int64_t j = 0;
    for (; j + 8 <= len; j += 8) {
        __m256d lo0 = _mm256_set1_pd(INFINITY), lo1 = lo0, sm0 = lo0, sm1 = lo0;
        __m256d hi0 = _mm256_set1_pd(-INFINITY), hi1 = hi0;
        for (int64_t u = 0; u < m; u++) {
            const float *row = x + rows[u] * ld + j;
            __m256d v0 = _mm256_cvtps_pd(_mm_loadu_ps(row));
            __m256d v1 = _mm256_cvtps_pd(_mm_loadu_ps(row + 4));
            lo0 = _mm256_min_pd(v0, lo0);
            lo1 = _mm256_min_pd(v1, lo1);
            hi0 = _mm256_max_pd(v0, hi0);
            hi1 = _mm256_max_pd(v1, hi1);
            sm0 = _mm256_min_pd(abs4(v0), sm0);
            sm1 = _mm256_min_pd(abs4(v1), sm1);
        }
        int64_t q = first_untight8(lo0, lo1, hi0, hi1, _mm256_mul_pd(vcoef, sm0),
                                   _mm256_mul_pd(vcoef, sm1), vslack);
        if (q >= 0)
            return j + q;
    }
    return fib_tight_f32_from(x, ld, rows, m, j, len, slack, coef);
}

static int64_t tight_f64(const double *x, int64_t ld, const int64_t *rows,
                         int64_t m, int64_t len, double slack, double coef)
{
    const __m256d vslack = _mm256_set1_pd(slack), vcoef = _mm256_set1_pd(coef);
    int64_t j = 0;
    for (; j + 8 <= len; j += 8) {
        __m256d lo0 = _mm256_set1_pd(INFINITY), lo1 = lo0, sm0 = lo0, sm1 = lo0;
        __m256d hi0 = _mm256_set1_pd(-INFINITY), hi1 = hi0;
        for (int64_t u = 0; u < m; u++) {
            const double *row = x + rows[u] * ld + j;
            __m256d v0 = _mm256_loadu_pd(row), v1 = _mm256_loadu_pd(row + 4);
            lo0 = _mm256_min_pd(v0, lo0);
            lo1 = _mm256_min_pd(v1, lo1);
            hi0 = _mm256_max_pd(v0, hi0);
            hi1 = _mm256_max_pd(v1, hi1);
            sm0 = _mm256_min_pd(abs4(v0), sm0);
            sm1 = _mm256_min_pd(abs4(v1), sm1);
        }
        int64_t q = first_untight8(lo0, lo1, hi0, hi1, _mm256_mul_pd(vcoef, sm0),
                                   _mm256_mul_pd(vcoef, sm1), vslack);
        if (q >= 0)
            return j + q;
    }
    return fib_tight_f64_from(x, ld, rows, m, j, len, slack, coef);
}

static int64_t tight_tol(const double *x, const double *tol, int64_t ld,
                         const int64_t *rows, int64_t m, int64_t len,
                         double slack)
{
    const __m256d vslack = _mm256_set1_pd(slack);
    int64_t j = 0;
    for (; j + 8 <= len; j += 8) {
        __m256d lo0 = _mm256_set1_pd(INFINITY), lo1 = lo0, t0 = lo0, t1 = lo0;
        __m256d hi0 = _mm256_set1_pd(-INFINITY), hi1 = hi0;
        for (int64_t u = 0; u < m; u++) {
            const double *row = x + rows[u] * ld + j, *trow = tol + rows[u] * ld + j;
            __m256d v0 = _mm256_loadu_pd(row), v1 = _mm256_loadu_pd(row + 4);
            lo0 = _mm256_min_pd(v0, lo0);
            lo1 = _mm256_min_pd(v1, lo1);
            hi0 = _mm256_max_pd(v0, hi0);
            hi1 = _mm256_max_pd(v1, hi1);
            t0 = _mm256_min_pd(_mm256_loadu_pd(trow), t0);
            t1 = _mm256_min_pd(_mm256_loadu_pd(trow + 4), t1);
        }
        int64_t q = first_untight8(lo0, lo1, hi0, hi1, t0, t1, vslack);
        if (q >= 0)
            return j + q;
    }
    return fib_tight_tol_from(x, tol, ld, rows, m, j, len, slack);
}

static const fib_kernels avx2 = {
    .name = "avx2",
    .level = FIB_SIMD_AVX2,
    .tile_rows = TILE,
    .colour_sums_f32 = colour_sums_f32,
    .colour_sums_f64 = colour_sums_f64,
    .accumulate_f32 = accumulate_f32,
    .accumulate_f64 = accumulate_f64,
    .tight_f32 = tight_f32,
    .tight_f64 = tight_f64,
    .tight_tol = tight_tol,
};

const fib_kernels *fib_kernels_avx2(void)
{
    return &avx2;
}
