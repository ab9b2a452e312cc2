/* AVX-512 kernels (compiled with -mavx512f; called only when the CPU and
 * the OS support it, see dispatch.c). Colour sums take a tile of 16 rows:
 * its columns are transposed (16 x 16 blocks in registers) into scratch, a
 * chunk of FIB_COLOUR_CHUNK columns at a time, then each class's columns are
 * visited in the layer's class order (ascending within the class), widened
 * to double and added to the class's running sums, which stay in registers
 * for the whole class. Every row's sum keeps the ascending-column order of
 * the scalar kernel (same bits). */
#include "kernels/kernels.h"

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

/* In: 16 rows of 16 floats. Out: r[j] holds column j (rows 0-15). */
static inline void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* u[4 g + q], 128-bit lane l: rows 4g .. 4g+3 of column 4l + q */
    __m512 u[16];
    for (int g = 0; g < 4; g++) {
        u[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    for (int q = 0; q < 4; q++) {
        __m512 a = _mm512_shuffle_f32x4(u[q], u[4 + q], 0x88);
        __m512 b = _mm512_shuffle_f32x4(u[q], u[4 + q], 0xDD);
        __m512 c = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0x88);
        __m512 d = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0xDD);
        r[q] = _mm512_shuffle_f32x4(a, c, 0x88);
        r[8 + q] = _mm512_shuffle_f32x4(a, c, 0xDD);
        r[4 + q] = _mm512_shuffle_f32x4(b, d, 0x88);
        r[12 + q] = _mm512_shuffle_f32x4(b, d, 0xDD);
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

/* Class-major acc[c * TILE + r] into row-major out[r * ld_out + c]: 8
 * classes x 8 rows at a time through a register transpose. */
static void transpose_out(const double *acc, int64_t k_classes, double *out,
                          int64_t ld_out)
{
    /* measured: the transposes pay from about a hundred classes (a layer
     * with 256-1024 classes: its fibers 20% faster); with 64 classes the
     * plain loop was 8% faster */
    int64_t c0 = 0;
    for (; k_classes >= 128 && c0 + 8 <= k_classes; c0 += 8)
        for (int half = 0; half < 2; half++) {
            __m512d r[8], c[8];
            for (int q = 0; q < 8; q++)
                r[q] = _mm512_loadu_pd(acc + (c0 + q) * TILE + 8 * half);
            transpose8(r, c);
            for (int q = 0; q < 8; q++)
                _mm512_storeu_pd(out + (8 * half + q) * ld_out + c0, c[q]);
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
 * class by class in perm order (ascending columns within a class, so the
 * same order as the scalar kernel). first: the sums start from 0.0. The
 * column j's 16 rows are COL(j) -> two vectors of doubles lo, hi. */
#define CLASS_PASS(LOAD_COLUMN, WITH_ABS)                                     \
    for (int64_t c = 0; c < k_classes; c++) {                                  \
        int64_t p = first ? start[c] : ts.cursor[c], end = start[c + 1];       \
        if (!first && (p == end || perm[p] >= k1))                             \
            continue;                                                          \
        __m512d s0, s1, a0, a1;                                                \
        if (first) {                                                           \
            s0 = s1 = a0 = a1 = _mm512_setzero_pd();                           \
        } else {                                                               \
            s0 = _mm512_loadu_pd(ts.acc_s + c * TILE);                         \
            s1 = _mm512_loadu_pd(ts.acc_s + c * TILE + 8);                     \
            a0 = WITH_ABS ? _mm512_loadu_pd(ts.acc_a + c * TILE) : s0;         \
            a1 = WITH_ABS ? _mm512_loadu_pd(ts.acc_a + c * TILE + 8) : s1;     \
        }                                                                      \
        for (; p < end && perm[p] < k1; p++) {                                 \
            __m512d lo, hi;                                                    \
            LOAD_COLUMN(perm[p] - k0);                                         \
            s0 = _mm512_add_pd(s0, lo);                                        \
            s1 = _mm512_add_pd(s1, hi);                                        \
            if (WITH_ABS) {                                                    \
                a0 = _mm512_add_pd(a0, _mm512_abs_pd(lo));                           \
                a1 = _mm512_add_pd(a1, _mm512_abs_pd(hi));                           \
            }                                                                  \
        }                                                                      \
        ts.cursor[c] = p;                                                      \
        _mm512_storeu_pd(ts.acc_s + c * TILE, s0);                             \
        _mm512_storeu_pd(ts.acc_s + c * TILE + 8, s1);                         \
        if (WITH_ABS) {                                                        \
            _mm512_storeu_pd(ts.acc_a + c * TILE, a0);                         \
            _mm512_storeu_pd(ts.acc_a + c * TILE + 8, a1);                     \
        }                                                                      \
    }

/* Exactly TILE rows. */
static void tile_f32(const float *w, int64_t ld, int64_t n, const int64_t *perm,
                     const int64_t *start, int64_t k_classes, double *scratch,
                     double *sum, double *abs_sum, int64_t ld_out)
{
    tile_scratch ts = split_scratch(scratch, k_classes);
    float *cols = ts.cols;
    fib_next_tile nt = fib_next_tile_plan(w, TILE, ld, n, 16, sizeof *w);
    for (int64_t k0 = 0; k0 < n; k0 += FIB_COLOUR_CHUNK) {
        int64_t k1 = n - k0 < FIB_COLOUR_CHUNK ? n : k0 + FIB_COLOUR_CHUNK;
        int first = k0 == 0;
        int64_t j = k0;
        for (; j + 16 <= k1; j += 16) {
            __m512 r[TILE];
            for (int q = 0; q < TILE; q++) {
                r[q] = _mm512_loadu_ps(w + q * ld + j);
                _mm_prefetch((const char *)(w + q * ld + j + 128), _MM_HINT_T0);
            }
            fib_prefetch_next_tile(nt, j / 16);
            transpose16(r);
            for (int q = 0; q < 16; q++)
                _mm512_store_ps(cols + (j - k0 + q) * TILE, r[q]);
        }
        for (; j < k1; j++)
            for (int q = 0; q < TILE; q++)
                cols[(j - k0) * TILE + q] = w[q * ld + j];
#define LOAD_F32(at)                                                           \
    do {                                                                       \
        __m512 v = _mm512_load_ps(cols + (at) * TILE);                         \
        lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));                       \
        hi = _mm512_cvtps_pd(upper8(v));                                       \
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
    fib_next_tile nt = fib_next_tile_plan(w, TILE, ld, n, 8, sizeof *w);
    for (int64_t k0 = 0; k0 < n; k0 += FIB_COLOUR_CHUNK) {
        int64_t k1 = n - k0 < FIB_COLOUR_CHUNK ? n : k0 + FIB_COLOUR_CHUNK;
        int first = k0 == 0;
        int64_t j = k0;
        for (; j + 8 <= k1; j += 8) {
            __m512d rl[8], rh[8], lo[8], hi[8];
            for (int q = 0; q < 8; q++) {
                rl[q] = _mm512_loadu_pd(w + q * ld + j);
                rh[q] = _mm512_loadu_pd(w + (q + 8) * ld + j);
            }
            fib_prefetch_next_tile(nt, j / 8);
            transpose8(rl, lo);
            transpose8(rh, hi);
            for (int q = 0; q < 8; q++) {
                _mm512_store_pd(cols + (j - k0 + q) * TILE, lo[q]);
                _mm512_store_pd(cols + (j - k0 + q) * TILE + 8, hi[q]);
            }
        }
        for (; j < k1; j++)
            for (int q = 0; q < TILE; q++)
                cols[(j - k0) * TILE + q] = w[q * ld + j];
#define LOAD_F64(at)                                                           \
    do {                                                                       \
        lo = _mm512_load_pd(cols + (at) * TILE);                               \
        hi = _mm512_load_pd(cols + (at) * TILE + 8);                           \
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

/* 32 columns at a time, their sums in registers over all the rows (written
 * out by hand: gcc -O2 keeps arrays of vectors on the stack). Software
 * prefetch of the rows' next blocks was measured slower. */
static void row_sums_f32(const float *w, int64_t ld, const int64_t *rows, int64_t m,
                         int64_t n, double *sum, double *abs_sum)
{
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512d s0 = _mm512_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
        __m512d a0 = s0, a1 = s0, a2 = s0, a3 = s0;
        for (int64_t u = 0; u < m; u++) {
            const float *row = w + rows[u] * ld + i;
            __m512d v0 = _mm512_cvtps_pd(_mm256_loadu_ps(row));
            __m512d v1 = _mm512_cvtps_pd(_mm256_loadu_ps(row + 8));
            __m512d v2 = _mm512_cvtps_pd(_mm256_loadu_ps(row + 16));
            __m512d v3 = _mm512_cvtps_pd(_mm256_loadu_ps(row + 24));
            s0 = _mm512_add_pd(s0, v0);
            s1 = _mm512_add_pd(s1, v1);
            s2 = _mm512_add_pd(s2, v2);
            s3 = _mm512_add_pd(s3, v3);
            a0 = _mm512_add_pd(a0, _mm512_abs_pd(v0));
            a1 = _mm512_add_pd(a1, _mm512_abs_pd(v1));
            a2 = _mm512_add_pd(a2, _mm512_abs_pd(v2));
            a3 = _mm512_add_pd(a3, _mm512_abs_pd(v3));
        }
        _mm512_storeu_pd(sum + i, s0);
        _mm512_storeu_pd(sum + i + 8, s1);
        _mm512_storeu_pd(sum + i + 16, s2);
        _mm512_storeu_pd(sum + i + 24, s3);
        _mm512_storeu_pd(abs_sum + i, a0);
        _mm512_storeu_pd(abs_sum + i + 8, a1);
        _mm512_storeu_pd(abs_sum + i + 16, a2);
        _mm512_storeu_pd(abs_sum + i + 24, a3);
    }
    fib_row_sums_cols_f32(w, ld, rows, m, i, n, sum, abs_sum);
}

static void row_sums_f64(const double *w, int64_t ld, const int64_t *rows, int64_t m,
                         int64_t n, double *sum, double *abs_sum)
{
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512d s[4], a[4];
        for (int q = 0; q < 4; q++)
            s[q] = a[q] = _mm512_setzero_pd();
        for (int64_t u = 0; u < m; u++) {
            const double *row = w + rows[u] * ld + i;
            for (int q = 0; q < 4; q++) {
                __m512d v = _mm512_loadu_pd(row + 8 * q);
                s[q] = _mm512_add_pd(s[q], v);
                a[q] = _mm512_add_pd(a[q], _mm512_abs_pd(v));
            }
        }
        for (int q = 0; q < 4; q++) {
            _mm512_storeu_pd(sum + i + 8 * q, s[q]);
            _mm512_storeu_pd(abs_sum + i + 8 * q, a[q]);
        }
    }
    fib_row_sums_cols_f64(w, ld, rows, m, i, n, sum, abs_sum);
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

/* Values first: a block whose coordinates all span 0 is tight whatever the
 * allowances (the bound is never below 0), so their rows are not read. */
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
            const double *row = x + rows[u] * ld + j;
            __m512d v0 = _mm512_loadu_pd(row), v1 = _mm512_loadu_pd(row + 8);
            lo0 = _mm512_min_pd(v0, lo0);
            lo1 = _mm512_min_pd(v1, lo1);
            hi0 = _mm512_max_pd(v0, hi0);
            hi1 = _mm512_max_pd(v1, hi1);
        }
        if ((_mm512_cmp_pd_mask(lo0, hi0, _CMP_EQ_OQ) &
             _mm512_cmp_pd_mask(lo1, hi1, _CMP_EQ_OQ)) == 0xFF)
            continue;
        for (int64_t u = 0; u < m; u++) {
            const double *trow = tol + rows[u] * ld + j;
            t0 = _mm512_min_pd(_mm512_loadu_pd(trow), t0);
            t1 = _mm512_min_pd(_mm512_loadu_pd(trow + 8), t1);
        }
        int64_t q = first_untight16(lo0, lo1, hi0, hi1, t0, t1, vslack);
        if (q >= 0)
            return j + q;
    }
    return fib_tight_tol_from(x, tol, ld, rows, m, j, len, slack);
}

/* x - x == 0 holds exactly for finite lanes; four vectors per step. */
static bool all_finite_f32(const float *x, int64_t n)
{
    const __m512 zero = _mm512_setzero_ps();
    __mmask16 ok = 0xffff;
    int64_t k = 0;
    for (; k + 64 <= n; k += 64)
        for (int q = 0; q < 4; q++) {
            __m512 v = _mm512_loadu_ps(x + k + 16 * q);
            ok &= _mm512_cmp_ps_mask(_mm512_sub_ps(v, v), zero, _CMP_EQ_OQ);
        }
    int bad = ok != 0xffff;
    for (; k < n; k++)
        bad |= !(x[k] - x[k] == 0.0f);
    return !bad;
}

static bool all_finite_f64(const double *x, int64_t n)
{
    const __m512d zero = _mm512_setzero_pd();
    __mmask8 ok = 0xff;
    int64_t k = 0;
    for (; k + 32 <= n; k += 32)
        for (int q = 0; q < 4; q++) {
            __m512d v = _mm512_loadu_pd(x + k + 8 * q);
            ok &= _mm512_cmp_pd_mask(_mm512_sub_pd(v, v), zero, _CMP_EQ_OQ);
        }
    int bad = ok != 0xff;
    for (; k < n; k++)
        bad |= !(x[k] - x[k] == 0.0);
    return !bad;
}

static void axpy_f64(double *y, double a, const double *x, int64_t n)
{
    const __m512d av = _mm512_set1_pd(a);
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m512d y0 = _mm512_loadu_pd(y + j), y1 = _mm512_loadu_pd(y + j + 8);
        y0 = _mm512_add_pd(y0, _mm512_mul_pd(av, _mm512_loadu_pd(x + j)));
        y1 = _mm512_add_pd(y1, _mm512_mul_pd(av, _mm512_loadu_pd(x + j + 8)));
        _mm512_storeu_pd(y + j, y0);
        _mm512_storeu_pd(y + j + 8, y1);
    }
    for (; j < n; j++)
        y[j] += a * x[j];
}

static const fib_kernels avx512 = {
    .name = "avx512",
    .level = FIB_SIMD_AVX512,
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

const fib_kernels *fib_kernels_avx512(void)
{
    return &avx512;
}
