/* The body of an x86 SIMD kernel set, written once and compiled once per
 * instruction set: kernels_avx2.c and kernels_avx512.c (each built with its
 * own -m flags) define the vocabulary below for their vectors, then include
 * this file, which includes kernels_simd_typed.h once for float32 and once
 * for float64.
 *
 * Colour sums take a tile of TILE rows: its columns are transposed (in
 * registers) into scratch, a chunk of FIB_COLOR_CHUNK columns at a time,
 * then each class's columns are visited in the layer's class order
 * (ascending within the class), widened to double and added to the class's
 * running sums, which stay in registers for the whole class. Every row's sum
 * keeps the ascending-column order of the scalar kernel, and every other
 * kernel vectorises across rows or columns, never across the terms of one
 * sum: the same bits as kernels_scalar.c at every level. Only gemm_f64
 * fuses its products and sums (VD_FMA, as the scalar one's fused term); every
 * other kernel rounds each product and each sum, as the scalar ones do.
 *
 * What the including file defines:
 *   TILE          rows of a colour-sums tile: the floats of one VF, and
 *                 two VD of doubles
 *   VD, VD_N      a vector of VD_N doubles; VF a vector of TILE floats
 *   VD_ZERO() VD_SET1(x) VD_LOAD(p) VD_LOADU(p) VD_STORE(p, v)
 *   VD_STOREU(p, v) VD_ADD VD_SUB VD_MUL VD_MIN VD_MAX (a, b) VD_ABS(v)
 *   VD_FMA(a, b, c)     a * b + c rounded once, as fma()
 *   VD_SQRT(v)    correctly rounded, as sqrt()
 *   VD_POSITIVE_OR_ZERO(v)   v where v > 0, else +0.0 (NaN: +0.0)
 *   VD_WHERE_EQ(a, b, s, v)  s where a == b, else v
 *   VD_LE_BITS(a, b), VD_EQ_BITS(a, b)   one bit per lane (lane 0: bit 0)
 *   VD_FROM_F32U(p)     VD_N floats at p, widened
 *   VF_LOAD(p) VF_LOADU(p) VF_STORE(p, v)
 *   VF_LO(v), VF_HI(v)  the lower / upper VD_N floats of v, widened
 *   VF_ZERO() VF_SET1(x) VF_ADD VF_SUB VF_MUL VF_EQ_BITS (a, b)   as VD's,
 *                 on TILE floats
 *   transpose_vd(const VD r[VD_N], VD c[VD_N])   rows to columns
 *   transpose_vf(VF r[TILE])                     the same, in place
 *   KERNELS_NAME, KERNELS_LEVEL, KERNELS_GETTER  the set's table
 */
#include "kernels/kernels.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define VD_ALL ((1u << VD_N) - 1u)

/* The per-type pieces below sit in the hot loops: inlined as the copies
 * they replace were (gcc -O2 would otherwise call them per block). */
#define KS_INLINE static inline __attribute__((always_inline))

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

/* Class-major acc[c * TILE + r] into row-major out[r * ld_out + c]: VD_N
 * classes x VD_N rows at a time through a register transpose. The
 * transposes pay from about a hundred classes and cost below (bench_kernels,
 * case "kernel": layers of 64 against 256-1024 classes). */
static void transpose_out(const double *acc, int64_t k_classes, double *out,
                          int64_t ld_out)
{
    int64_t c0 = 0;
    for (; k_classes >= 128 && c0 + VD_N <= k_classes; c0 += VD_N)
        for (int part = 0; part < TILE / VD_N; part++) {
            VD r[VD_N], c[VD_N];
            for (int q = 0; q < VD_N; q++)
                r[q] = VD_LOADU(acc + (c0 + q) * TILE + VD_N * part);
            transpose_vd(r, c);
            for (int q = 0; q < VD_N; q++)
                VD_STOREU(out + (VD_N * part + q) * ld_out + c0, c[q]);
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
 * same order as the scalar kernel). first: the sums start from 0.0.
 * COLUMN(cols + j * TILE, &lo, &hi) gives column j's TILE rows as two
 * vectors of doubles. */
#define CLASS_PASS(COLUMN, WITH_ABS)                                           \
    for (int64_t c = 0; c < k_classes; c++) {                                  \
        int64_t p = first ? start[c] : ts.cursor[c], end = start[c + 1];       \
        if (!first && (p == end || perm[p] >= k1))                             \
            continue;                                                          \
        VD s0, s1, a0, a1;                                                     \
        if (first) {                                                           \
            s0 = s1 = a0 = a1 = VD_ZERO();                                     \
        } else {                                                               \
            s0 = VD_LOADU(ts.acc_s + c * TILE);                                \
            s1 = VD_LOADU(ts.acc_s + c * TILE + VD_N);                         \
            a0 = WITH_ABS ? VD_LOADU(ts.acc_a + c * TILE) : s0;                \
            a1 = WITH_ABS ? VD_LOADU(ts.acc_a + c * TILE + VD_N) : s1;         \
        }                                                                      \
        for (; p < end && perm[p] < k1; p++) {                                 \
            VD lo, hi;                                                         \
            COLUMN(cols + (perm[p] - k0) * TILE, &lo, &hi);                    \
            s0 = VD_ADD(s0, lo);                                               \
            s1 = VD_ADD(s1, hi);                                               \
            if (WITH_ABS) {                                                    \
                a0 = VD_ADD(a0, VD_ABS(lo));                                   \
                a1 = VD_ADD(a1, VD_ABS(hi));                                   \
            }                                                                  \
        }                                                                      \
        ts.cursor[c] = p;                                                      \
        VD_STOREU(ts.acc_s + c * TILE, s0);                                    \
        VD_STOREU(ts.acc_s + c * TILE + VD_N, s1);                             \
        if (WITH_ABS) {                                                        \
            VD_STOREU(ts.acc_a + c * TILE, a0);                                \
            VD_STOREU(ts.acc_a + c * TILE + VD_N, a1);                         \
        }                                                                      \
    }

/* ---- what differs between float32 and float64 -------------------------- */

/* Columns j .. j + TILE of the tile's TILE float rows, transposed into dst
 * (one column of TILE rows after another). The rows' next bytes are
 * prefetched as they are read. */
KS_INLINE void block_f32(const float *w, int64_t ld, int64_t j, fib_next_tile nt,
                             float *dst)
{
    VF r[TILE];
    for (int q = 0; q < TILE; q++) {
        r[q] = VF_LOADU(w + q * ld + j);
        _mm_prefetch((const char *)(w + q * ld + j + 128), _MM_HINT_T0);
    }
    fib_prefetch_next_tile(nt, j / TILE);
    transpose_vf(r);
    for (int q = 0; q < TILE; q++)
        VF_STORE(dst + q * TILE, r[q]);
}

/* Columns j .. j + VD_N of the tile's TILE double rows, transposed into
 * dst: two VD_N x VD_N transposes (rows 0 .. VD_N, then the rest). */
KS_INLINE void block_f64(const double *w, int64_t ld, int64_t j, fib_next_tile nt,
                             double *dst)
{
    VD rl[VD_N], rh[VD_N], lo[VD_N], hi[VD_N];
    for (int q = 0; q < VD_N; q++) {
        rl[q] = VD_LOADU(w + q * ld + j);
        rh[q] = VD_LOADU(w + (q + VD_N) * ld + j);
    }
    fib_prefetch_next_tile(nt, j / VD_N);
    transpose_vd(rl, lo);
    transpose_vd(rh, hi);
    for (int q = 0; q < VD_N; q++) {
        VD_STORE(dst + q * TILE, lo[q]);
        VD_STORE(dst + q * TILE + VD_N, hi[q]);
    }
}

/* One transposed column (TILE rows) as two vectors of doubles. */
KS_INLINE void column_f32(const float *col, VD *lo, VD *hi)
{
    VF v = VF_LOAD(col);
    *lo = VF_LO(v);
    *hi = VF_HI(v);
}

KS_INLINE void column_f64(const double *col, VD *lo, VD *hi)
{
    *lo = VD_LOAD(col);
    *hi = VD_LOAD(col + VD_N);
}

/* VD_N consecutive elements, as doubles. */
KS_INLINE VD widen_f32(const float *p)
{
    return VD_FROM_F32U(p);
}

KS_INLINE VD widen_f64(const double *p)
{
    return VD_LOADU(p);
}

/* The first of 2 x VD_N coordinates whose span hi - lo exceeds
 * slack + 2 t (the allowance), -1 when all are tight. */
static inline int64_t first_untight(VD lo0, VD lo1, VD hi0, VD hi1, VD t0, VD t1,
                                    VD slack)
{
    unsigned ok0 = VD_LE_BITS(VD_SUB(hi0, lo0), VD_ADD(VD_ADD(slack, t0), t0));
    unsigned ok1 = VD_LE_BITS(VD_SUB(hi1, lo1), VD_ADD(VD_ADD(slack, t1), t1));
    unsigned ok = ok0 | (ok1 << VD_N);
    return ok == ((VD_ALL << VD_N) | VD_ALL) ? -1 : __builtin_ctz(~ok);
}

/* One bit per lane of the vector at p (lane 0: bit 0): x - x == 0, which
 * holds exactly for the finite lanes. */
static inline unsigned finite_bits_pd(const double *p)
{
    VD v = VD_LOADU(p);
    return VD_EQ_BITS(VD_SUB(v, v), VD_ZERO());
}

static inline unsigned finite_bits_ps(const float *p)
{
    VF v = VF_LOADU(p);
    return VF_EQ_BITS(VF_SUB(v, v), VF_ZERO());
}

#define KS_SUFFIX f32
#define KS_ELEM float
#define KS_BLOCK_COLS TILE /* columns per transposed block */
#define KS_FINITE_N TILE   /* elements per finiteness test */
#define KS_FINITE_BITS finite_bits_ps
#include "kernels/kernels_simd_typed.h"

#define KS_SUFFIX f64
#define KS_ELEM double
#define KS_BLOCK_COLS VD_N
#define KS_FINITE_N VD_N
#define KS_FINITE_BITS finite_bits_pd
#include "kernels/kernels_simd_typed.h"

/* ---- float64 only -------------------------------------------------------- */

/* Values first: a block whose coordinates all span 0 is tight whatever the
 * allowances (the bound is never below 0), so their rows are not read. */
static int64_t tight_tol(const double *x, const double *tol, int64_t ld,
                         const int64_t *rows, int64_t m, int64_t len,
                         double slack)
{
    const VD vslack = VD_SET1(slack);
    int64_t j = 0;
    for (; j + 2 * VD_N <= len; j += 2 * VD_N) {
        VD lo0 = VD_SET1(INFINITY), lo1 = lo0, t0 = lo0, t1 = lo0;
        VD hi0 = VD_SET1(-INFINITY), hi1 = hi0;
        for (int64_t u = 0; u < m; u++) {
            const double *row = x + rows[u] * ld + j;
            VD v0 = VD_LOADU(row), v1 = VD_LOADU(row + VD_N);
            lo0 = VD_MIN(v0, lo0);
            lo1 = VD_MIN(v1, lo1);
            hi0 = VD_MAX(v0, hi0);
            hi1 = VD_MAX(v1, hi1);
        }
        if ((VD_EQ_BITS(lo0, hi0) & VD_EQ_BITS(lo1, hi1)) == VD_ALL)
            continue;
        for (int64_t u = 0; u < m; u++) {
            const double *trow = tol + rows[u] * ld + j;
            t0 = VD_MIN(VD_LOADU(trow), t0);
            t1 = VD_MIN(VD_LOADU(trow + VD_N), t1);
        }
        int64_t q = first_untight(lo0, lo1, hi0, hi1, t0, t1, vslack);
        if (q >= 0)
            return j + q;
    }
    return fib_tight_tol_from(x, tol, ld, rows, m, j, len, slack);
}

static void axpy_f64(double *y, double a, const double *x, int64_t n)
{
    const VD av = VD_SET1(a);
    int64_t j = 0;
    for (; j + 2 * VD_N <= n; j += 2 * VD_N) {
        VD y0 = VD_LOADU(y + j), y1 = VD_LOADU(y + j + VD_N);
        y0 = VD_ADD(y0, VD_MUL(av, VD_LOADU(x + j)));
        y1 = VD_ADD(y1, VD_MUL(av, VD_LOADU(x + j + VD_N)));
        VD_STOREU(y + j, y0);
        VD_STOREU(y + j + VD_N, y1);
    }
    for (; j < n; j++)
        y[j] += a * x[j];
}

/* gemm_f64 in tiles of GEMM_MR rows x GEMM_NR columns (one panel of b)
 * of c, held in registers over a block of GEMM_KC rows of the panel, for
 * each block of GEMM_MC rows of a (which stays in L2 while every panel
 * passes over it). */
#define GEMM_MR 6
/* vectors per panel: the including file may ask for 4 (AVX-512: 24
 * accumulators of its 32 registers) */
#ifndef GEMM_NV
#define GEMM_NV 2
#endif
#define GEMM_NR (GEMM_NV * VD_N)
#define GEMM_KC 256
#define GEMM_MC 96

#define GEMM_TERM(r, v) c##r##v = VD_FMA(ar, b##v, c##r##v)
#define GEMM_C_LOAD(r, v) VD c##r##v = VD_LOADU(c + (r) * ldc + (v) * VD_N)
#define GEMM_C_STORE(r, v) VD_STOREU(c + (r) * ldc + (v) * VD_N, c##r##v)
#define GEMM_B_LOAD(v) VD b##v = VD_LOADU(panel + p * GEMM_NR + (v) * VD_N)
#if GEMM_NV == 4
#define GEMM_EACH(M, r) M(r, 0); M(r, 1); M(r, 2); M(r, 3);
#define GEMM_PANEL_ROW GEMM_B_LOAD(0); GEMM_B_LOAD(1); GEMM_B_LOAD(2); GEMM_B_LOAD(3);
#else
#define GEMM_EACH(M, r) M(r, 0); M(r, 1);
#define GEMM_PANEL_ROW GEMM_B_LOAD(0); GEMM_B_LOAD(1);
#endif
#define GEMM_ROW(r)                                                          \
    {                                                                        \
        VD ar = VD_SET1(a[(r) * lda + p]);                                   \
        GEMM_EACH(GEMM_TERM, r)                                              \
    }
#define GEMM_LOAD(r) GEMM_EACH(GEMM_C_LOAD, r)
#define GEMM_STORE(r) GEMM_EACH(GEMM_C_STORE, r)

/* GEMM_MR rows x GEMM_NR columns of c += a (rows lda apart) x panel (kc
 * rows of GEMM_NR contiguous doubles). */
static void gemm_tile(int64_t kc, const double *a, int64_t lda, const double *panel,
                      double *c, int64_t ldc)
{
    GEMM_LOAD(0) GEMM_LOAD(1) GEMM_LOAD(2) GEMM_LOAD(3) GEMM_LOAD(4) GEMM_LOAD(5)
    for (int64_t p = 0; p < kc; p++) {
        GEMM_PANEL_ROW
        GEMM_ROW(0) GEMM_ROW(1) GEMM_ROW(2) GEMM_ROW(3) GEMM_ROW(4) GEMM_ROW(5)
    }
    GEMM_STORE(0) GEMM_STORE(1) GEMM_STORE(2) GEMM_STORE(3) GEMM_STORE(4) GEMM_STORE(5)
}

/* A tile at the edge of c (fewer rows or columns): through a full tile of
 * scratch, whose missing rows repeat the first row of a (computed, then
 * dropped) and whose missing columns are the packing's zeros. */
static void gemm_edge_tile(int64_t rows, int64_t cols, int64_t kc, const double *a,
                           int64_t lda, const double *panel, double *c, int64_t ldc)
{
    double tile[GEMM_MR * GEMM_NR];
    const double *rows_of_a[GEMM_MR];
    double a_rows[GEMM_MR * GEMM_KC];
    for (int64_t r = 0; r < GEMM_MR; r++) {
        rows_of_a[r] = a + (r < rows ? r : 0) * lda;
        for (int64_t q = 0; q < GEMM_NR; q++)
            tile[r * GEMM_NR + q] = r < rows && q < cols ? c[r * ldc + q] : 0.0;
    }
    for (int64_t r = 0; r < GEMM_MR; r++)
        memcpy(a_rows + r * GEMM_KC, rows_of_a[r], (size_t)kc * sizeof(double));
    gemm_tile(kc, a_rows, GEMM_KC, panel, tile, GEMM_NR);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t q = 0; q < cols; q++)
            c[r * ldc + q] = tile[r * GEMM_NR + q];
}

static void gemm_f64(int64_t m, int64_t n, int64_t k, const double *a, int64_t lda,
                     const double *packed_b, double *c, int64_t ldc)
{
    for (int64_t k0 = 0; k0 < k; k0 += GEMM_KC) {
        int64_t kc = k - k0 < GEMM_KC ? k - k0 : GEMM_KC;
        for (int64_t i0 = 0; i0 < m; i0 += GEMM_MC) {
            int64_t i1 = m - i0 < GEMM_MC ? m : i0 + GEMM_MC;
            for (int64_t j = 0; j < n; j += GEMM_NR) {
                int64_t cols = n - j < GEMM_NR ? n - j : GEMM_NR, i = i0;
                const double *panel = packed_b + fib_gemm_packed_at(k, GEMM_NR, k0, j);
                for (; cols == GEMM_NR && i + GEMM_MR <= i1; i += GEMM_MR)
                    gemm_tile(kc, a + i * lda + k0, lda, panel, c + i * ldc + j, ldc);
                for (; i < i1; i += GEMM_MR)
                    gemm_edge_tile(i1 - i < GEMM_MR ? i1 - i : GEMM_MR, cols, kc,
                                   a + i * lda + k0, lda, panel, c + i * ldc + j, ldc);
            }
        }
    }
}

/* Four rows at a time, 2 * VD_N columns of the panel in registers (eight
 * running sums), the rows' values broadcast. */
static void dots_f64(const double *a, int64_t lda, int64_t rows, const double *panel,
                     int64_t width, int64_t len, double *out, int64_t ld_out)
{
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) {
        const double *a0 = a + r * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
        double *o0 = out + r * ld_out, *o1 = o0 + ld_out, *o2 = o1 + ld_out, *o3 = o2 + ld_out;
        int64_t c = 0;
        for (; c + 2 * VD_N <= width; c += 2 * VD_N) {
            VD s00 = VD_LOADU(o0 + c), s01 = VD_LOADU(o0 + c + VD_N);
            VD s10 = VD_LOADU(o1 + c), s11 = VD_LOADU(o1 + c + VD_N);
            VD s20 = VD_LOADU(o2 + c), s21 = VD_LOADU(o2 + c + VD_N);
            VD s30 = VD_LOADU(o3 + c), s31 = VD_LOADU(o3 + c + VD_N);
            const double *p = panel + c;
            for (int64_t j = 0; j < len; j++, p += width) {
                VD p0 = VD_LOADU(p), p1 = VD_LOADU(p + VD_N), x = VD_SET1(a0[j]);
                s00 = VD_ADD(s00, VD_MUL(x, p0));
                s01 = VD_ADD(s01, VD_MUL(x, p1));
                x = VD_SET1(a1[j]);
                s10 = VD_ADD(s10, VD_MUL(x, p0));
                s11 = VD_ADD(s11, VD_MUL(x, p1));
                x = VD_SET1(a2[j]);
                s20 = VD_ADD(s20, VD_MUL(x, p0));
                s21 = VD_ADD(s21, VD_MUL(x, p1));
                x = VD_SET1(a3[j]);
                s30 = VD_ADD(s30, VD_MUL(x, p0));
                s31 = VD_ADD(s31, VD_MUL(x, p1));
            }
            VD_STOREU(o0 + c, s00), VD_STOREU(o0 + c + VD_N, s01);
            VD_STOREU(o1 + c, s10), VD_STOREU(o1 + c + VD_N, s11);
            VD_STOREU(o2 + c, s20), VD_STOREU(o2 + c + VD_N, s21);
            VD_STOREU(o3 + c, s30), VD_STOREU(o3 + c + VD_N, s31);
        }
        fib_dots_f64_from(a0, lda, 4, panel, width, c, len, o0, ld_out);
    }
    for (; r < rows; r++) {
        const double *ar = a + r * lda;
        double *o = out + r * ld_out;
        int64_t c = 0;
        for (; c + VD_N <= width; c += VD_N) {
            VD s0 = VD_LOADU(o + c);
            for (int64_t j = 0; j < len; j++)
                s0 = VD_ADD(s0, VD_MUL(VD_SET1(ar[j]), VD_LOADU(panel + j * width + c)));
            VD_STOREU(o + c, s0);
        }
        fib_dots_f64_from(ar, lda, 1, panel, width, c, len, o, ld_out);
    }
}

/* dots_f32: the kernel of dots_f64 in floats, TILE columns a vector; each
 * sum starts at zero in a float register and is added to out once. */
static void dots_f32(const float *a, int64_t lda, int64_t rows, const float *panel,
                     int64_t width, int64_t len, double *out, int64_t ld_out)
{
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) {
        const float *a0 = a + r * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
        int64_t c = 0;
        for (; c + 2 * TILE <= width; c += 2 * TILE) {
            VF s[4][2];
            for (int q = 0; q < 4; q++)
                s[q][0] = s[q][1] = VF_ZERO();
            const float *p = panel + c;
            for (int64_t j = 0; j < len; j++, p += width) {
                VF p0 = VF_LOADU(p), p1 = VF_LOADU(p + TILE), x = VF_SET1(a0[j]);
                s[0][0] = VF_ADD(s[0][0], VF_MUL(x, p0));
                s[0][1] = VF_ADD(s[0][1], VF_MUL(x, p1));
                x = VF_SET1(a1[j]);
                s[1][0] = VF_ADD(s[1][0], VF_MUL(x, p0));
                s[1][1] = VF_ADD(s[1][1], VF_MUL(x, p1));
                x = VF_SET1(a2[j]);
                s[2][0] = VF_ADD(s[2][0], VF_MUL(x, p0));
                s[2][1] = VF_ADD(s[2][1], VF_MUL(x, p1));
                x = VF_SET1(a3[j]);
                s[3][0] = VF_ADD(s[3][0], VF_MUL(x, p0));
                s[3][1] = VF_ADD(s[3][1], VF_MUL(x, p1));
            }
            for (int q = 0; q < 4; q++)
                for (int h = 0; h < 2; h++) {
                    double *o = out + (r + q) * ld_out + c + h * TILE;
                    VD_STOREU(o, VD_ADD(VD_LOADU(o), VF_LO(s[q][h])));
                    VD_STOREU(o + VD_N, VD_ADD(VD_LOADU(o + VD_N), VF_HI(s[q][h])));
                }
        }
        fib_dots_f32_from(a0, lda, 4, panel, width, c, len, out + r * ld_out, ld_out);
    }
    fib_dots_f32_from(a + r * lda, lda, rows - r, panel, width, 0, len, out + r * ld_out,
                      ld_out);
}

/* fib_rank1_cost lane by lane, in its order of operations. */
static void rank1_costs(double sa2, const double *sb2, const double *cosine, int64_t n,
                        double *cost)
{
    const VD a = VD_SET1(sa2), half = VD_SET1(0.5), inf = VD_SET1(INFINITY);
    int64_t x = 0;
    for (; x + VD_N <= n; x += VD_N) {
        VD b = VD_LOADU(sb2 + x), c0 = VD_LOADU(cosine + x);
        VD c = VD_POSITIVE_OR_ZERO(c0);
        VD h = VD_MUL(half, VD_SUB(a, b));
        VD lam = VD_ADD(VD_MUL(half, VD_ADD(a, b)),
                        VD_SQRT(VD_ADD(VD_MUL(h, h), VD_MUL(VD_MUL(VD_MUL(a, b), c), c))));
        VD v = VD_POSITIVE_OR_ZERO(VD_SUB(VD_ADD(a, b), lam));
        VD_STOREU(cost + x, VD_WHERE_EQ(VD_ABS(c0), inf, inf, v));
    }
    for (; x < n; x++)
        cost[x] = isinf(cosine[x]) ? INFINITY : fib_rank1_cost(sa2, sb2[x], cosine[x]);
}

static const fib_kernels kernel_set = {
    .name = KERNELS_NAME,
    .level = KERNELS_LEVEL,
    .tile_rows = TILE,
    .gemm_panel = GEMM_NR,
    FIB_KERNEL_FUNCTIONS,
};

const fib_kernels *KERNELS_GETTER(void)
{
    return &kernel_set;
}
