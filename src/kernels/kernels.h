/* Hot kernels behind the blocks: a portable scalar set and per-ISA sets
 * (kernels_avx2.c, kernels_avx512.c, each compiled with its own flags from
 * the one body in kernels_simd.h), chosen once at run time (dispatch.c).
 *
 * Every variant gives the same bits as the scalar one: sums are defined by
 * their order (below), which the SIMD versions keep by vectorising across
 * rows, never across the terms of one sum. Colourings therefore never
 * depend on the SIMD level. */
#ifndef FIB_KERNELS_H
#define FIB_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

/* SIMD levels, in increasing order. */
#define FIB_SIMD_SCALAR 0
#define FIB_SIMD_AVX2 1
#define FIB_SIMD_AVX512 2

/* name_suffix: the names of the kernels written once for float32 and
 * float64 (kernels_scalar_typed.h, kernels_simd_typed.h). */
#define FIB_KERNEL_TYPED2(name, suffix) name##_##suffix
#define FIB_KERNEL_TYPED(name, suffix) FIB_KERNEL_TYPED2(name, suffix)

/* Most rows a color_sums call handles (a tile). */
#define FIB_TILE_MAX 16

/* Columns per pass of the SIMD colour sums: a tile's columns are transposed
 * into scratch this many at a time (128 KB of float32 for 16 rows). */
#define FIB_COLOR_CHUNK 2048

/* The class order of a layer's columns, computed once per layer
 * (fib_color_order): perm lists the columns class by class (classes
 * ascending, columns ascending within a class) and class c's columns are
 * perm[start[c] .. start[c + 1]). */
void fib_color_order(const int64_t *color, int64_t n, int64_t k_classes,
                      int64_t *perm, int64_t *start);

/* Doubles of scratch one color_sums call needs (per thread). */
static inline int64_t fib_color_scratch_len(int64_t n, int64_t k_classes)
{
    int64_t chunk = n < FIB_COLOR_CHUNK ? n : FIB_COLOR_CHUNK;
    return 2 * FIB_TILE_MAX * k_classes + k_classes + FIB_TILE_MAX * chunk + 16;
}

/* The tile a thread takes next under a static schedule starts `tile` rows
 * further on. The SIMD colour sums prefetch its bytes into L2 in address
 * order, a share at each block step of the current tile, so that the next
 * tile's strided row streams hit L2 rather than memory (tests/bench/
 * bench_kernels, case "kernel": a 4096 x 4096 float32 layer with 64
 * colours; figures in docs/performance.md). Prefetches
 * never fault, so the last tile's run past the matrix is harmless; the
 * address is formed as an integer for that reason. */
typedef struct fib_next_tile {
    uintptr_t at;
    int64_t share; /* bytes per block step, a multiple of 64; 0: none */
} fib_next_tile;

static inline fib_next_tile fib_next_tile_plan(const void *w, int64_t tile, int64_t ld,
                                               int64_t n, int64_t columns_per_step,
                                               size_t esize)
{
    fib_next_tile nt = {(uintptr_t)w + (uintptr_t)(tile * ld) * esize, 0};
    int64_t steps = n / columns_per_step;
    /* rows far wider than what is read (a strided view): not worth it */
    if (steps > 0 && ld <= 2 * n)
        nt.share = (tile * ld * (int64_t)esize / steps + 63) & ~INT64_C(63);
    return nt;
}

static inline void fib_prefetch_next_tile(fib_next_tile nt, int64_t step)
{
#if defined(__GNUC__)
    for (int64_t b = 0; b < nt.share; b += 64)
        __builtin_prefetch((const void *)(nt.at + (uintptr_t)(step * nt.share + b)), 0, 2);
#else
    (void)nt, (void)step;
#endif
}

/* Colour sums of a tile of `rows` rows (1 <= rows <= FIB_TILE_MAX) of a
 * dense matrix: row r starts at w + r * ld and has n columns; color[k] in
 * [0, k_classes) is the class of column k, and perm / start its class order
 * (fib_color_order). For every row r and class c:
 *     sum[r * ld_out + c]     = sum of w[r][k]  over k in c,
 *     abs_sum[r * ld_out + c] = sum of |w[r][k]| over k in c,
 * accumulated in double from 0.0 in ascending k (that order defines the
 * bits); abs_sum NULL: the sums only (merging needs no allowances).
 * scratch holds fib_color_scratch_len(n, k_classes) doubles.
 * The SIMD versions transpose a tile's columns into scratch, then walk each
 * class's columns in perm order (the same ascending order), so that a
 * class's running sums stay in registers. */
typedef void (*fib_color_sums_f32_fn)(const float *w, int64_t ld,
                                       int64_t rows, int64_t n,
                                       const int64_t *color,
                                       const int64_t *perm,
                                       const int64_t *start, int64_t k_classes,
                                       double *scratch, double *sum,
                                       double *abs_sum, int64_t ld_out);
typedef void (*fib_color_sums_f64_fn)(const double *w, int64_t ld,
                                       int64_t rows, int64_t n,
                                       const int64_t *color,
                                       const int64_t *perm,
                                       const int64_t *start, int64_t k_classes,
                                       double *scratch, double *sum,
                                       double *abs_sum, int64_t ld_out);

/* Column sums of m rows: for i in [0, n),
 *     sum[i] = sum of w[rows[u] * ld + i], abs_sum[i] = sum of |...|,
 * over u = 0 .. m-1 in that order, in double from 0.0 (opfibers: the rows
 * of one class of the consumer, ascending). */
typedef void (*fib_row_sums_f32_fn)(const float *w, int64_t ld, const int64_t *rows,
                                    int64_t m, int64_t n, double *sum, double *abs_sum);
typedef void (*fib_row_sums_f64_fn)(const double *w, int64_t ld, const int64_t *rows,
                                    int64_t m, int64_t n, double *sum, double *abs_sum);

/* The tight test of grouping. Over the m units rows[0 .. m), a coordinate
 * j in [0, len) is tight when
 *     max(v) - min(v) <= (slack + t) + t,
 * v = (double)x[rows[u] * ld + j], t the smallest allowance among them:
 * coef * |v| for the _f32/_f64 forms (borrowed weights), tol[rows[u] * ld + j]
 * for the _tol form. Returns the first coordinate that is not tight, or len.
 * (A tight coordinate cannot be cut by grouping; the form of the bound is
 * the one grouping's cuts use, so the test is exact in floating point.) */
typedef int64_t (*fib_tight_f32_fn)(const float *x, int64_t ld,
                                    const int64_t *rows, int64_t m, int64_t len,
                                    double slack, double coef);
typedef int64_t (*fib_tight_f64_fn)(const double *x, int64_t ld,
                                    const int64_t *rows, int64_t m, int64_t len,
                                    double slack, double coef);
typedef int64_t (*fib_tight_tol_fn)(const double *x, const double *tol,
                                    int64_t ld, const int64_t *rows, int64_t m,
                                    int64_t len, double slack);

/* True when every element of x[0 .. n) is finite (the check every weight
 * passes when a block is added: one read of the model). */
typedef bool (*fib_all_finite_f32_fn)(const float *x, int64_t n);
typedef bool (*fib_all_finite_f64_fn)(const double *x, int64_t n);

/* y[j] += a * x[j] for j in [0, n): a product then a sum, each rounded
 * (the library is built without contraction into fused multiply-adds), so
 * every variant gives the scalar one's bits. The budget correction's
 * substitutions are made of these (its products and Gram matrices are
 * gemm_f64's). */
typedef void (*fib_axpy_f64_fn)(double *y, double a, const double *x, int64_t n);

/* A matrix product added to c: for i in [0, m) and j in [0, n),
 *     c[i * ldc + j] = fma(a[i * lda + p], b[p][j], c[i * ldc + j])
 * for p = 0 .. k-1, one term at a time in ascending p, from c's own value,
 * each product and sum fused into one rounding (IEEE fused multiply-add,
 * unlike axpy_f64): the same bits at every level and whatever the
 * blocking. b is packed in panels of the set's gemm_panel columns
 * (fib_gemm_packed_at): the SIMD versions keep a tile of rows x a panel of
 * c in registers while they walk down a panel (the convolutions' reference
 * forward pass, the budget correction's products). */
typedef void (*fib_gemm_f64_fn)(int64_t m, int64_t n, int64_t k, const double *a,
                                int64_t lda, const double *packed_b, double *c,
                                int64_t ldc);

/* Where b[p][j] of a k x n matrix sits in its packing for panels of
 * `panel` columns: panel by panel, each k rows of `panel` contiguous
 * doubles (the columns past n of the last panel are zeros). */
static inline int64_t fib_gemm_packed_at(int64_t k, int64_t panel, int64_t p, int64_t j)
{
    return ((j / panel) * k + p) * panel + j % panel;
}

/* Doubles of the packing of a k x n matrix. */
static inline int64_t fib_gemm_packed_len(int64_t k, int64_t n, int64_t panel)
{
    return (n + panel - 1) / panel * panel * k;
}
/* Dot products of rows against a packed panel of columns: for r in
 * [0, rows) and c in [0, width),
 *     out[r * ld_out + c] += a[r * lda + j] * panel[j * width + c]
 * for j = 0 .. len - 1 in that order, each product rounded then added to
 * the running value (no contraction). A dot product computed in pieces of
 * consecutive j therefore has the bits of one pass, and every variant the
 * scalar one's (vectorised across c only). The linkages' Gram matrices
 * (cosines of all pairs of rows) are made of these. */
typedef void (*fib_dots_f64_fn)(const double *a, int64_t lda, int64_t rows,
                                const double *panel, int64_t width, int64_t len,
                                double *out, int64_t ld_out);

/* dots_f64 in floats: for r in [0, rows) and c in [0, width), the float sum
 * s = 0, s += a[r * lda + j] * panel[j * width + c] for j = 0 .. len - 1 in
 * that order (products and sums rounded to float, no contraction), then
 * out[r * ld_out + c] += (double)s. Twice the products per vector of
 * dots_f64, for Gram matrices that tolerate float rounding within a piece
 * of len coordinates (the pieces are added in double). */
typedef void (*fib_dots_f32_fn)(const float *a, int64_t lda, int64_t rows,
                                const float *panel, int64_t width, int64_t len,
                                double *out, int64_t ld_out);

/* The rank-1 Ward cost of merging a piece of energy sa2 with one of energy
 * sb2 at cosine c (the smaller eigenvalue of their 2 x 2 Gram matrix).
 * Members pointing away from each other (c <= 0) cannot share a positive
 * scale: the merge keeps the stronger direction and the other member's
 * scale goes to ~0 (fib_class_scales), which costs what c = 0 gives.
 * Written once here: the linkages and every rank1_costs variant evaluate
 * it in this order. */
static inline double fib_rank1_cost(double sa2, double sb2, double c)
{
    if (!(c > 0))
        c = 0;
    double h = 0.5 * (sa2 - sb2);
    double lam = 0.5 * (sa2 + sb2) + sqrt(h * h + sa2 * sb2 * c * c);
    double cost = sa2 + sb2 - lam;
    return cost > 0 ? cost : 0.0;
}

/* cost[x] = fib_rank1_cost(sa2, sb2[x], cosine[x]) for x in [0, n), and
 * INFINITY where cosine[x] is infinite (rows that may not merge): one row
 * of a rank-1 Ward linkage's costs, with the bits of the scalar formula. */
typedef void (*fib_rank1_costs_fn)(double sa2, const double *sb2, const double *cosine,
                                   int64_t n, double *cost);

typedef struct fib_kernels {
    const char *name;   /* "scalar", "avx2", "avx512" */
    int32_t level;      /* FIB_SIMD_* */
    int32_t tile_rows;  /* rows per color_sums call that use the SIMD path */
    fib_color_sums_f32_fn color_sums_f32;
    fib_color_sums_f64_fn color_sums_f64;
    fib_row_sums_f32_fn row_sums_f32;
    fib_row_sums_f64_fn row_sums_f64;
    fib_tight_f32_fn tight_f32;
    fib_tight_f64_fn tight_f64;
    fib_tight_tol_fn tight_tol;
    fib_all_finite_f32_fn all_finite_f32;
    fib_all_finite_f64_fn all_finite_f64;
    fib_axpy_f64_fn axpy_f64;
    fib_gemm_f64_fn gemm_f64;
    int32_t gemm_panel; /* columns per panel of gemm_f64's packed b */
    fib_dots_f64_fn dots_f64;
    fib_rank1_costs_fn rank1_costs;
    fib_dots_f32_fn dots_f32;
} fib_kernels;

/* The kernel entries of a set, taken from static functions of the same
 * names in the file that defines it (the scalar file and each ISA body of
 * kernels_simd.h): a kernel added to fib_kernels is listed once, here. */
#define FIB_KERNEL_FUNCTIONS                                                   \
    .color_sums_f32 = color_sums_f32, .color_sums_f64 = color_sums_f64,       \
    .row_sums_f32 = row_sums_f32, .row_sums_f64 = row_sums_f64,               \
    .tight_f32 = tight_f32, .tight_f64 = tight_f64, .tight_tol = tight_tol,   \
    .all_finite_f32 = all_finite_f32, .all_finite_f64 = all_finite_f64,       \
    .axpy_f64 = axpy_f64, .gemm_f64 = gemm_f64, .dots_f64 = dots_f64,         \
    .dots_f32 = dots_f32, .rank1_costs = rank1_costs

/* The kernels in use: chosen on the first call (thread-safe), from the CPU
 * (CPUID + XGETBV) unless FIBRATION_SIMD=scalar|avx2|avx512 asks for a
 * level (never above what the CPU and the build support). */
const fib_kernels *fib_kernels_active(void);
/* A specific set, or NULL when this build or CPU lacks it (tests). */
const fib_kernels *fib_kernels_level(int32_t level);
/* Tests and benchmarks only: makes `level` the active set (-1: the
 * automatic choice again). Returns 0, or -1 if that set is not available.
 * Safe to call concurrently with colouring (every set gives the same bits). */
int32_t fib_kernels_override(int32_t level);
/* The portable reference versions. */
const fib_kernels *fib_kernels_scalar(void);
/* Per-ISA sets; NULL when the build has no such kernels. */
const fib_kernels *fib_kernels_avx2(void);
const fib_kernels *fib_kernels_avx512(void);

/* Scalar colour sums of rows [row0, rows) of a tile, straight into the
 * outputs: what the SIMD versions use for a tile's remainder rows. */
void fib_color_sums_rows_f32(const float *w, int64_t ld, int64_t row0,
                              int64_t rows, int64_t n, const int64_t *color,
                              int64_t k_classes, double *sum, double *abs_sum,
                              int64_t ld_out);
void fib_color_sums_rows_f64(const double *w, int64_t ld, int64_t row0,
                              int64_t rows, int64_t n, const int64_t *color,
                              int64_t k_classes, double *sum, double *abs_sum,
                              int64_t ld_out);

/* Scalar column sums of columns [i0, n) (the SIMD versions' tails). */
void fib_row_sums_cols_f32(const float *w, int64_t ld, const int64_t *rows, int64_t m,
                           int64_t i0, int64_t n, double *sum, double *abs_sum);
void fib_row_sums_cols_f64(const double *w, int64_t ld, const int64_t *rows, int64_t m,
                           int64_t i0, int64_t n, double *sum, double *abs_sum);

/* Scalar tight tests from coordinate j0 on (the SIMD versions' tails). */
int64_t fib_tight_f32_from(const float *x, int64_t ld, const int64_t *rows,
                           int64_t m, int64_t j0, int64_t len, double slack,
                           double coef);
int64_t fib_tight_f64_from(const double *x, int64_t ld, const int64_t *rows,
                           int64_t m, int64_t j0, int64_t len, double slack,
                           double coef);
int64_t fib_tight_tol_from(const double *x, const double *tol, int64_t ld,
                           const int64_t *rows, int64_t m, int64_t j0,
                           int64_t len, double slack);

/* Scalar dots of columns [c0, width) (the SIMD versions' tails). */
void fib_dots_f64_from(const double *a, int64_t lda, int64_t rows, const double *panel,
                       int64_t width, int64_t c0, int64_t len, double *out, int64_t ld_out);
void fib_dots_f32_from(const float *a, int64_t lda, int64_t rows, const float *panel,
                       int64_t width, int64_t c0, int64_t len, double *out, int64_t ld_out);

#endif
