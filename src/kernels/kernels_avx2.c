/* AVX2 kernels (compiled with -mavx2; called only when the CPU and the OS
 * support it, see dispatch.c). Colour sums take a tile of 8 rows: its
 * columns are transposed (8 x 8 blocks in registers) into scratch, a chunk
 * of FIB_COLOUR_CHUNK columns at a time, then each class's columns are
 * visited in the layer's class order (ascending within the class), widened
 * to double and added to the class's running sums, kept in registers for the
 * whole class: the ascending-column order of the scalar kernel (same
 * bits). */
#include "kernels/kernels.h"

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

/* In: 8 rows of 8 floats. Out: r[j] holds column j (rows 0-7). */
static inline void transpose8f(__m256 r[8])
{
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* u[4 g + q], 128-bit lane l: rows 4g .. 4g+3 of column 4l + q */
    for (int g = 0; g < 2; g++) {
        u[4 * g + 0] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    for (int q = 0; q < 4; q++) {
        r[q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x20);
        r[4 + q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x31);
    }
}

/* Scratch: class-major sums acc_s / acc_a (TILE per class), the cursor of
 * each class into perm, and the transposed columns (64-byte aligned). */
typedef struct tile_scratch {
    double *acc_s, *acc_a;
    int64_t *cursor;
    void *cols;
} tile_scratch;

static tile_scratch split_scratch(double *scratch, int64_t k_classes)
{
    tile_scratch t;
    t.acc_s = scratch;
    t.acc_a = scratch + TILE * k_classes;
    t.cursor = (int64_t *)(scratch + 2 * TILE * k_classes);
    uintptr_t p = (uintptr_t)(scratch + 2 * TILE * k_classes + k_classes);
    t.cols = (void *)((p + 63) & ~(uintptr_t)63);
    return t;
}

/* Class-major acc[c * TILE + r] into row-major out[r * ld_out + c]: 4
 * classes x 4 rows at a time through a register transpose. */
static void transpose_out(const double *acc, int64_t k_classes, double *out,
                          int64_t ld_out)
{
    /* as for AVX-512: the plain loop below about a hundred classes */
    int64_t c0 = 0;
    for (; k_classes >= 128 && c0 + 4 <= k_classes; c0 += 4)
        for (int quarter = 0; quarter < TILE / 4; quarter++) {
            __m256d r0 = _mm256_loadu_pd(acc + (c0 + 0) * TILE + 4 * quarter);
            __m256d r1 = _mm256_loadu_pd(acc + (c0 + 1) * TILE + 4 * quarter);
            __m256d r2 = _mm256_loadu_pd(acc + (c0 + 2) * TILE + 4 * quarter);
            __m256d r3 = _mm256_loadu_pd(acc + (c0 + 3) * TILE + 4 * quarter);
            __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
            __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
            double *o = out + 4 * quarter * ld_out + c0;
            _mm256_storeu_pd(o, _mm256_permute2f128_pd(t0, t2, 0x20));
            _mm256_storeu_pd(o + ld_out, _mm256_permute2f128_pd(t1, t3, 0x20));
            _mm256_storeu_pd(o + 2 * ld_out, _mm256_permute2f128_pd(t0, t2, 0x31));
            _mm256_storeu_pd(o + 3 * ld_out, _mm256_permute2f128_pd(t1, t3, 0x31));
        }
    for (int64_t r = 0; r < TILE; r++)
        for (int64_t c = c0; c < k_classes; c++)
            out[r * ld_out + c] = acc[c * TILE + r];
}

static void write_out(const double *acc_s, const double *acc_a,
                      int64_t k_classes, double *sum, double *abs_sum,
                      int64_t ld_out)
{
    transpose_out(acc_s, k_classes, sum, ld_out);
    if (abs_sum)
        transpose_out(acc_a, k_classes, abs_sum, ld_out);
}

/* Adds the columns [k0, k1) held transposed in cols to each class's sums,
 * class by class in perm order (ascending columns within a class: the
 * scalar kernel's order). first: the sums start from 0.0. */
#define CLASS_PASS(LOAD_COLUMN, WITH_ABS)                                     \
    for (int64_t c = 0; c < k_classes; c++) {                                  \
        int64_t p = first ? start[c] : ts.cursor[c], end = start[c + 1];       \
        if (!first && (p == end || perm[p] >= k1))                             \
            continue;                                                          \
        __m256d s0, s1, a0, a1;                                                \
        if (first) {                                                           \
            s0 = s1 = a0 = a1 = _mm256_setzero_pd();                           \
        } else {                                                               \
            s0 = _mm256_loadu_pd(ts.acc_s + c * TILE);                         \
            s1 = _mm256_loadu_pd(ts.acc_s + c * TILE + 4);                     \
            a0 = WITH_ABS ? _mm256_loadu_pd(ts.acc_a + c * TILE) : s0;         \
            a1 = WITH_ABS ? _mm256_loadu_pd(ts.acc_a + c * TILE + 4) : s1;     \
        }                                                                      \
        for (; p < end && perm[p] < k1; p++) {                                 \
            __m256d lo, hi;                                                    \
            LOAD_COLUMN(perm[p] - k0);                                         \
            s0 = _mm256_add_pd(s0, lo);                                        \
            s1 = _mm256_add_pd(s1, hi);                                        \
            if (WITH_ABS) {                                                    \
                a0 = _mm256_add_pd(a0, abs4(lo));                           \
                a1 = _mm256_add_pd(a1, abs4(hi));                           \
            }                                                                  \
        }                                                                      \
        ts.cursor[c] = p;                                                      \
        _mm256_storeu_pd(ts.acc_s + c * TILE, s0);                             \
        _mm256_storeu_pd(ts.acc_s + c * TILE + 4, s1);                         \
        if (WITH_ABS) {                                                        \
            _mm256_storeu_pd(ts.acc_a + c * TILE, a0);                         \
            _mm256_storeu_pd(ts.acc_a + c * TILE + 4, a1);                     \
        }                                                                      \
    }

/* Exactly TILE rows. */
static void tile_f32(const float *w, int64_t ld, int64_t n, const int64_t *perm,
                     const int64_t *start, int64_t k_classes, double *scratch,
                     double *sum, double *abs_sum, int64_t ld_out)
{
    tile_scratch ts = split_scratch(scratch, k_classes);
    float *cols = ts.cols;
    fib_next_tile nt = fib_next_tile_plan(w, TILE, ld, n, 8, sizeof *w);
    for (int64_t k0 = 0; k0 < n; k0 += FIB_COLOUR_CHUNK) {
        int64_t k1 = n - k0 < FIB_COLOUR_CHUNK ? n : k0 + FIB_COLOUR_CHUNK;
        int first = k0 == 0;
        int64_t j = k0;
        for (; j + 8 <= k1; j += 8) {
            __m256 r[TILE];
            for (int q = 0; q < TILE; q++) {
                r[q] = _mm256_loadu_ps(w + q * ld + j);
                _mm_prefetch((const char *)(w + q * ld + j + 128), _MM_HINT_T0);
            }
            fib_prefetch_next_tile(nt, j / 8);
            transpose8f(r);
            for (int q = 0; q < 8; q++)
                _mm256_store_ps(cols + (j - k0 + q) * TILE, r[q]);
        }
        for (; j < k1; j++)
            for (int q = 0; q < TILE; q++)
                cols[(j - k0) * TILE + q] = w[q * ld + j];
#define LOAD_F32(at)                                                           \
    do {                                                                       \
        __m256 v = _mm256_load_ps(cols + (at) * TILE);                         \
        lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));                       \
        hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));                     \
    } while (0)
        if (abs_sum)
            CLASS_PASS(LOAD_F32, 1)
        else
            CLASS_PASS(LOAD_F32, 0)
#undef LOAD_F32
    }
    write_out(ts.acc_s, ts.acc_a, k_classes, sum, abs_sum, ld_out);
}

/* Exactly TILE rows. */
static void tile_f64(const double *w, int64_t ld, int64_t n, const int64_t *perm,
                     const int64_t *start, int64_t k_classes, double *scratch,
                     double *sum, double *abs_sum, int64_t ld_out)
{
    tile_scratch ts = split_scratch(scratch, k_classes);
    double *cols = ts.cols;
    fib_next_tile nt = fib_next_tile_plan(w, TILE, ld, n, 4, sizeof *w);
    for (int64_t k0 = 0; k0 < n; k0 += FIB_COLOUR_CHUNK) {
        int64_t k1 = n - k0 < FIB_COLOUR_CHUNK ? n : k0 + FIB_COLOUR_CHUNK;
        int first = k0 == 0;
        int64_t j = k0;
        for (; j + 4 <= k1; j += 4) {
            __m256d rl[4], rh[4], lo[4], hi[4];
            for (int q = 0; q < 4; q++) {
                rl[q] = _mm256_loadu_pd(w + q * ld + j);
                rh[q] = _mm256_loadu_pd(w + (q + 4) * ld + j);
            }
            fib_prefetch_next_tile(nt, j / 4);
            transpose4(rl, lo);
            transpose4(rh, hi);
            for (int q = 0; q < 4; q++) {
                _mm256_store_pd(cols + (j - k0 + q) * TILE, lo[q]);
                _mm256_store_pd(cols + (j - k0 + q) * TILE + 4, hi[q]);
            }
        }
        for (; j < k1; j++)
            for (int q = 0; q < TILE; q++)
                cols[(j - k0) * TILE + q] = w[q * ld + j];
#define LOAD_F64(at)                                                           \
    do {                                                                       \
        lo = _mm256_load_pd(cols + (at) * TILE);                               \
        hi = _mm256_load_pd(cols + (at) * TILE + 4);                           \
    } while (0)
        if (abs_sum)
            CLASS_PASS(LOAD_F64, 1)
        else
            CLASS_PASS(LOAD_F64, 0)
#undef LOAD_F64
    }
    write_out(ts.acc_s, ts.acc_a, k_classes, sum, abs_sum, ld_out);
}

static void colour_sums_f32(const float *w, int64_t ld, int64_t rows,
                            int64_t n, const int64_t *color,
                            const int64_t *perm, const int64_t *start,
                            int64_t k_classes, double *scratch, double *sum,
                            double *abs_sum, int64_t ld_out)
{
    int64_t r = 0;
    for (; r + TILE <= rows; r += TILE)
        tile_f32(w + r * ld, ld, n, perm, start, k_classes, scratch,
                 sum + r * ld_out, abs_sum ? abs_sum + r * ld_out : NULL, ld_out);
    fib_colour_sums_rows_f32(w, ld, r, rows, n, color, k_classes, sum, abs_sum,
                             ld_out);
}

static void colour_sums_f64(const double *w, int64_t ld, int64_t rows,
                            int64_t n, const int64_t *color,
                            const int64_t *perm, const int64_t *start,
                            int64_t k_classes, double *scratch, double *sum,
                            double *abs_sum, int64_t ld_out)
{
    int64_t r = 0;
    for (; r + TILE <= rows; r += TILE)
        tile_f64(w + r * ld, ld, n, perm, start, k_classes, scratch,
                 sum + r * ld_out, abs_sum ? abs_sum + r * ld_out : NULL, ld_out);
    fib_colour_sums_rows_f64(w, ld, r, rows, n, color, k_classes, sum, abs_sum,
                             ld_out);
}

/* 16 columns at a time, their sums in registers over all the rows. */
static void row_sums_f32(const float *w, int64_t ld, const int64_t *rows, int64_t m,
                         int64_t n, double *sum, double *abs_sum)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256d s[4], a[4];
        for (int q = 0; q < 4; q++)
            s[q] = a[q] = _mm256_setzero_pd();
        for (int64_t u = 0; u < m; u++) {
            const float *row = w + rows[u] * ld + i;
            for (int q = 0; q < 4; q++) {
                __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(row + 4 * q));
                s[q] = _mm256_add_pd(s[q], v);
                a[q] = _mm256_add_pd(a[q], abs4(v));
            }
        }
        for (int q = 0; q < 4; q++) {
            _mm256_storeu_pd(sum + i + 4 * q, s[q]);
            _mm256_storeu_pd(abs_sum + i + 4 * q, a[q]);
        }
    }
    fib_row_sums_cols_f32(w, ld, rows, m, i, n, sum, abs_sum);
}

static void row_sums_f64(const double *w, int64_t ld, const int64_t *rows, int64_t m,
                         int64_t n, double *sum, double *abs_sum)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256d s[4], a[4];
        for (int q = 0; q < 4; q++)
            s[q] = a[q] = _mm256_setzero_pd();
        for (int64_t u = 0; u < m; u++) {
            const double *row = w + rows[u] * ld + i;
            for (int q = 0; q < 4; q++) {
                __m256d v = _mm256_loadu_pd(row + 4 * q);
                s[q] = _mm256_add_pd(s[q], v);
                a[q] = _mm256_add_pd(a[q], abs4(v));
            }
        }
        for (int q = 0; q < 4; q++) {
            _mm256_storeu_pd(sum + i + 4 * q, s[q]);
            _mm256_storeu_pd(abs_sum + i + 4 * q, a[q]);
        }
    }
    fib_row_sums_cols_f64(w, ld, rows, m, i, n, sum, abs_sum);
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

/* Values first: a block whose coordinates all span 0 is tight whatever the
 * allowances (the bound is never below 0), so their rows are not read. */
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
            const double *row = x + rows[u] * ld + j;
            __m256d v0 = _mm256_loadu_pd(row), v1 = _mm256_loadu_pd(row + 4);
            lo0 = _mm256_min_pd(v0, lo0);
            lo1 = _mm256_min_pd(v1, lo1);
            hi0 = _mm256_max_pd(v0, hi0);
            hi1 = _mm256_max_pd(v1, hi1);
        }
        if ((_mm256_movemask_pd(_mm256_cmp_pd(lo0, hi0, _CMP_EQ_OQ)) &
             _mm256_movemask_pd(_mm256_cmp_pd(lo1, hi1, _CMP_EQ_OQ))) == 0xF)
            continue;
        for (int64_t u = 0; u < m; u++) {
            const double *trow = tol + rows[u] * ld + j;
            t0 = _mm256_min_pd(_mm256_loadu_pd(trow), t0);
            t1 = _mm256_min_pd(_mm256_loadu_pd(trow + 4), t1);
        }
        int64_t q = first_untight8(lo0, lo1, hi0, hi1, t0, t1, vslack);
        if (q >= 0)
            return j + q;
    }
    return fib_tight_tol_from(x, tol, ld, rows, m, j, len, slack);
}

/* x - x == 0 holds exactly for finite lanes; four vectors per step. */
static bool all_finite_f32(const float *x, int64_t n)
{
    const __m256 zero = _mm256_setzero_ps();
    __m256 ok = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    int64_t k = 0;
    for (; k + 32 <= n; k += 32)
        for (int q = 0; q < 4; q++) {
            __m256 v = _mm256_loadu_ps(x + k + 8 * q);
            ok = _mm256_and_ps(ok, _mm256_cmp_ps(_mm256_sub_ps(v, v), zero, _CMP_EQ_OQ));
        }
    int bad = _mm256_movemask_ps(ok) != 0xff;
    for (; k < n; k++)
        bad |= !(x[k] - x[k] == 0.0f);
    return !bad;
}

static bool all_finite_f64(const double *x, int64_t n)
{
    const __m256d zero = _mm256_setzero_pd();
    __m256d ok = _mm256_castsi256_pd(_mm256_set1_epi64x(-1));
    int64_t k = 0;
    for (; k + 16 <= n; k += 16)
        for (int q = 0; q < 4; q++) {
            __m256d v = _mm256_loadu_pd(x + k + 4 * q);
            ok = _mm256_and_pd(ok, _mm256_cmp_pd(_mm256_sub_pd(v, v), zero, _CMP_EQ_OQ));
        }
    int bad = _mm256_movemask_pd(ok) != 0xf;
    for (; k < n; k++)
        bad |= !(x[k] - x[k] == 0.0);
    return !bad;
}

static void axpy_f64(double *y, double a, const double *x, int64_t n)
{
    const __m256d av = _mm256_set1_pd(a);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256d y0 = _mm256_loadu_pd(y + j), y1 = _mm256_loadu_pd(y + j + 4);
        y0 = _mm256_add_pd(y0, _mm256_mul_pd(av, _mm256_loadu_pd(x + j)));
        y1 = _mm256_add_pd(y1, _mm256_mul_pd(av, _mm256_loadu_pd(x + j + 4)));
        _mm256_storeu_pd(y + j, y0);
        _mm256_storeu_pd(y + j + 4, y1);
    }
    for (; j < n; j++)
        y[j] += a * x[j];
}

static const fib_kernels avx2 = {
    .name = "avx2",
    .level = FIB_SIMD_AVX2,
    .tile_rows = TILE,
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

const fib_kernels *fib_kernels_avx2(void)
{
    return &avx2;
}
