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

/* The upper 8 floats of a vector of 16 (AVX-512F only, no DQ). */
static inline __m256 upper8(__m512 v)
{
    return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

/* Running sums of the class being accumulated, kept in registers while
 * consecutive columns share a class (no store-to-load chains). */
typedef struct running {
    int64_t cls;
    __m512d s0, s1, a0, a1; /* rows 0-7 and 8-15: sums, absolute sums */
} running;

/* Stores the running sums back (at the end of a tile). */
static inline void running_flush(running *run, double *acc_s, double *acc_a)
{
    if (run->cls < 0)
        return;
    _mm512_storeu_pd(acc_s + run->cls * TILE, run->s0);
    _mm512_storeu_pd(acc_s + run->cls * TILE + 8, run->s1);
    _mm512_storeu_pd(acc_a + run->cls * TILE, run->a0);
    _mm512_storeu_pd(acc_a + run->cls * TILE + 8, run->a1);
    run->cls = -1;
}

static inline void running_switch(running *run, int64_t cls, double *acc_s,
                                  double *acc_a)
{
    if (cls == run->cls)
        return;
    running_flush(run, acc_s, acc_a);
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

/* Exactly TILE rows. */
static void tile_f32(const float *w, int64_t ld, int64_t n, const int64_t *color,
                     int64_t k_classes, double *scratch, double *sum,
                     double *abs_sum, int64_t ld_out)
{
    double *acc_s = scratch, *acc_a = scratch + TILE * k_classes;
    memset(scratch, 0, (size_t)(2 * TILE * k_classes) * sizeof *scratch);
    running run = {.cls = -1};
    int64_t kb = 0;
    /* 16 columns per step: every row's cache line is used up at once (rows
     * a power of two apart share cache sets), the next ones prefetched. */
    for (; kb + 16 <= n; kb += 16) {
        __m512 line[TILE];
        for (int r = 0; r < TILE; r++) {
            line[r] = _mm512_loadu_ps(w + r * ld + kb);
            _mm_prefetch((const char *)(w + r * ld + kb + 128), _MM_HINT_T0);
        }
        for (int half = 0; half < 2; half++) {
            __m512d rl[8], rh[8], lo[8], hi[8];
            for (int r = 0; r < 8; r++) {
                __m256 a = half ? upper8(line[r]) : _mm512_castps512_ps256(line[r]);
                __m256 b = half ? upper8(line[r + 8]) : _mm512_castps512_ps256(line[r + 8]);
                rl[r] = _mm512_cvtps_pd(a);
                rh[r] = _mm512_cvtps_pd(b);
            }
            transpose8(rl, lo);
            transpose8(rh, hi);
            add_columns(&run, color + kb + 8 * half, lo, hi, acc_s, acc_a);
        }
    }
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

/* Tight tests, 16 coordinates per step: the running min, max and smallest
 * magnitude stay in registers while the members' rows stream past. */
static inline int64_t first_untight16(__m512d lo0, __m512d lo1, __m512d hi0,
                                      __m512d hi1, __m512d t0, __m512d t1,
                                      __m512d slack)
{
    __mmask8 ok0 = _mm512_cmp_pd_mask(_mm512_sub_pd(hi0, lo0),
                                      _mm512_add_pd(_mm512_add_pd(slack, t0), t0),
                                      _CMP_LE_OQ);
    __mmask8 ok1 = _mm512_cmp_pd_mask(_mm512_sub_pd(hi1, lo1),
                                      _mm512_add_pd(_mm512_add_pd(slack, t1), t1),
                                      _CMP_LE_OQ);
    unsigned ok = (unsigned)ok0 | ((unsigned)ok1 << 8);
    return ok == 0xFFFFu ? -1 : __builtin_ctz(~ok);
}

static int64_t tight_f32(const float *x, int64_t ld, const int64_t *rows,
                         int64_t m, int64_t len, double slack, double coef)
{
    const __m512d vslack = _mm512_set1_pd(slack), vcoef = _mm512_set1_pd(coef);
    int64_t j = 0;
    for (; j + 16 <= len; j += 16) {
        __m512d lo0 = _mm512_set1_pd(INFINITY), lo1 = lo0, sm0 = lo0, sm1 = lo0;
        __m512d hi0 = _mm512_set1_pd(-INFINITY), hi1 = hi0;
        for (int64_t u = 0; u < m; u++) {
            const float *row = x + rows[u] * ld + j;
            __m512d v0 = _mm512_cvtps_pd(_mm256_loadu_ps(row));
            __m512d v1 = _mm512_cvtps_pd(_mm256_loadu_ps(row + 8));
            lo0 = _mm512_min_pd(v0, lo0);
            lo1 = _mm512_min_pd(v1, lo1);
            hi0 = _mm512_max_pd(v0, hi0);
            hi1 = _mm512_max_pd(v1, hi1);
            sm0 = _mm512_min_pd(_mm512_abs_pd(v0), sm0);
            sm1 = _mm512_min_pd(_mm512_abs_pd(v1), sm1);
        }
        int64_t q = first_untight16(lo0, lo1, hi0, hi1, _mm512_mul_pd(vcoef, sm0),
                                    _mm512_mul_pd(vcoef, sm1), vslack);
        if (q >= 0)
            return j + q;
    }
    return fib_tight_f32_from(x, ld, rows, m, j, len, slack, coef);
}

static int64_t tight_f64(const double *x, int64_t ld, const int64_t *rows,
                         int64_t m, int64_t len, double slack, double coef)
{
    const __m512d vslack = _mm512_set1_pd(slack), vcoef = _mm512_set1_pd(coef);
    int64_t j = 0;
    for (; j + 16 <= len; j += 16) {
        __m512d lo0 = _mm512_set1_pd(INFINITY), lo1 = lo0, sm0 = lo0, sm1 = lo0;
        __m512d hi0 = _mm512_set1_pd(-INFINITY), hi1 = hi0;
        for (int64_t u = 0; u < m; u++) {
            const double *row = x + rows[u] * ld + j;
            __m512d v0 = _mm512_loadu_pd(row), v1 = _mm512_loadu_pd(row + 8);
            lo0 = _mm512_min_pd(v0, lo0);
            lo1 = _mm512_min_pd(v1, lo1);
            hi0 = _mm512_max_pd(v0, hi0);
            hi1 = _mm512_max_pd(v1, hi1);
            sm0 = _mm512_min_pd(_mm512_abs_pd(v0), sm0);
            sm1 = _mm512_min_pd(_mm512_abs_pd(v1), sm1);
        }
        int64_t q = first_untight16(lo0, lo1, hi0, hi1, _mm512_mul_pd(vcoef, sm0),
                                    _mm512_mul_pd(vcoef, sm1), vslack);
        if (q >= 0)
            return j + q;
    }
    return fib_tight_f64_from(x, ld, rows, m, j, len, slack, coef);
}

static int64_t tight_tol(const double *x, const double *tol, int64_t ld,
                         const int64_t *rows, int64_t m, int64_t len,
                         double slack)
{
    const __m512d vslack = _mm512_set1_pd(slack);
    int64_t j = 0;
    for (; j + 16 <= len; j += 16) {
        __m512d lo0 = _mm512_set1_pd(INFINITY), lo1 = lo0, t0 = lo0, t1 = lo0;
        __m512d hi0 = _mm512_set1_pd(-INFINITY), hi1 = hi0;
        for (int64_t u = 0; u < m; u++) {
            const double *row = x + rows[u] * ld + j, *trow = tol + rows[u] * ld + j;
            __m512d v0 = _mm512_loadu_pd(row), v1 = _mm512_loadu_pd(row + 8);
            lo0 = _mm512_min_pd(v0, lo0);
            lo1 = _mm512_min_pd(v1, lo1);
            hi0 = _mm512_max_pd(v0, hi0);
            hi1 = _mm512_max_pd(v1, hi1);
            t0 = _mm512_min_pd(_mm512_loadu_pd(trow), t0);
            t1 = _mm512_min_pd(_mm512_loadu_pd(trow + 8), t1);
        }
        int64_t q = first_untight16(lo0, lo1, hi0, hi1, t0, t1, vslack);
        if (q >= 0)
            return j + q;
    }
    return fib_tight_tol_from(x, tol, ld, rows, m, j, len, slack);
}

static const fib_kernels avx512 = {
    .name = "avx512",
    .level = FIB_SIMD_AVX512,
    .tile_rows = TILE,
    .colour_sums_f32 = colour_sums_f32,
    .colour_sums_f64 = colour_sums_f64,
    .accumulate_f32 = accumulate_f32,
    .accumulate_f64 = accumulate_f64,
    .tight_f32 = tight_f32,
    .tight_f64 = tight_f64,
    .tight_tol = tight_tol,
};

const fib_kernels *fib_kernels_avx512(void)
{
    return &avx512;
}
