/* Every kernel set against the scalar one (same bits), on random shapes,
 * strides and alignments; and colourings identical for every SIMD level and
 * thread count. Run under several FIBRATION_SIMD values (tests/kernels/
 * meson.build): each run also checks that the variable was obeyed. */
#include "compress/compress.h"
#include "io/safetensors.h"
#include "kernels/fused.h"
#include "kernels/kernels.h"
#include "kernels/stored.h"
#include "model/keyed_sort.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#  include <omp.h>
#endif

static int failures;
#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond) && failures++ < 10)                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    } while (0)

static uint64_t state = 12345;

static uint64_t rnd(void)
{
    uint64_t z = (state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static int64_t below(int64_t n)
{
    return (int64_t)(rnd() % (uint64_t)n);
}

/* Values with mixed magnitudes and signs, zeros and negative zeros. */
static double value(void)
{
    switch (below(8)) {
    case 0:
        return 0.0;
    case 1:
        return -0.0;
    case 2:
        return ldexp((double)below(1000) - 500, (int)below(40) - 20);
    default:
        return ((double)(rnd() >> 11) * 0x1.0p-53 - 0.5) * 4;
    }
}

static const fib_kernels *sets[3];
static int n_sets;

/* ---- colour sums -------------------------------------------------------- */

static void test_color_sums(int f64)
{
    static const int64_t widths[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 257};
    for (int trial = 0; trial < 400; trial++) {
        int64_t n = widths[below(14)];
        if (trial % 25 == 3) /* several column chunks of the SIMD versions */
            n = FIB_COLOR_CHUNK * (1 + below(2)) + below(70) - 3;
        int64_t rows = 1 + below(FIB_TILE_MAX);
        if (trial % 5 == 0)
            rows = FIB_TILE_MAX; /* full tiles are the SIMD path */
        int64_t ld = n + below(5), shift = below(3); /* odd strides, misaligned */
        int64_t k = 1 + below(n < 6 ? n : 6);
        if (trial % 3 == 0)
            k = n;
        else if (trial % 7 == 0 && n > 64)
            k = 1 + below(n / 2); /* many classes of a few columns */
        int64_t *color = malloc((size_t)n * sizeof *color);
        for (int64_t c = 0; c < n; c++)
            color[c] = trial % 4 == 1 ? c * k / n : c < k ? c : below(k); /* runs or random */
        size_t cells = (size_t)(rows * ld + shift);
        double *wd = malloc(cells * sizeof *wd);
        float *wf = malloc(cells * sizeof *wf);
        for (size_t x = 0; x < cells; x++) {
            wd[x] = value();
            wf[x] = (float)wd[x];
        }
        int64_t ld_out = k + below(3);
        double *ref_s = calloc((size_t)(rows * ld_out), sizeof(double));
        double *ref_a = calloc((size_t)(rows * ld_out), sizeof(double));
        double *got_s = calloc((size_t)(rows * ld_out), sizeof(double));
        double *got_a = calloc((size_t)(rows * ld_out), sizeof(double));
        double *scratch = malloc((size_t)fib_color_scratch_len(n, k) * sizeof(double));
        int64_t *perm = malloc((size_t)n * sizeof *perm), *start = malloc((size_t)(k + 1) * sizeof *start);
        fib_color_order(color, n, k, perm, start);
        for (int s = 0; s < n_sets; s++) {
            const fib_kernels *kern = s == 0 ? fib_kernels_scalar() : sets[s];
            double *out_s = s == 0 ? ref_s : got_s, *out_a = s == 0 ? ref_a : got_a;
            /* the sums alone (abs_sum NULL, second pass) are the same sums */
            double *only = calloc((size_t)(rows * ld_out), sizeof(double));
            for (int pass = 0; pass < 2; pass++) {
                double *sums = pass ? only : out_s, *abs_sums = pass ? NULL : out_a;
                if (f64)
                    kern->color_sums_f64(wd + shift, ld, rows, n, color, perm, start, k,
                                          scratch, sums, abs_sums, ld_out);
                else
                    kern->color_sums_f32(wf + shift, ld, rows, n, color, perm, start, k,
                                          scratch, sums, abs_sums, ld_out);
            }
            for (int64_t r = 0; r < rows; r++)
                CHECK(!memcmp(out_s + r * ld_out, only + r * ld_out, (size_t)k * sizeof(double)));
            free(only);
            if (s == 0)
                continue;
            for (int64_t r = 0; r < rows; r++) {
                if (memcmp(ref_s + r * ld_out, got_s + r * ld_out, (size_t)k * sizeof(double)) && failures < 3)
                    fprintf(stderr, "%s f64=%d rows=%lld n=%lld k=%lld ld=%lld r=%lld: %a vs %a\n", kern->name, f64,
                            (long long)rows, (long long)n, (long long)k, (long long)ld, (long long)r,
                            ref_s[r * ld_out], got_s[r * ld_out]);
                CHECK(!memcmp(ref_s + r * ld_out, got_s + r * ld_out, (size_t)k * sizeof(double)));
                CHECK(!memcmp(ref_a + r * ld_out, got_a + r * ld_out, (size_t)k * sizeof(double)));
            }
        }
        /* The scalar reference against a plain definition. */
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < k; c++) {
                double sum = 0, abs_sum = 0;
                for (int64_t q = 0; q < n; q++)
                    if (color[q] == c) {
                        double v = f64 ? wd[shift + r * ld + q] : (double)wf[shift + r * ld + q];
                        sum += v;
                        abs_sum += fabs(v);
                    }
                CHECK(sum == ref_s[r * ld_out + c] && abs_sum == ref_a[r * ld_out + c]);
            }
        free(color), free(wd), free(wf), free(ref_s), free(ref_a), free(got_s), free(got_a);
        free(scratch), free(perm), free(start);
    }
}

/* ---- column sums of rows --------------------------------------------------- */

/* Every set against the definition (ascending in the given row order, from
 * 0.0), on any row list, width and alignment. */
static void test_row_sums(void)
{
    for (int trial = 0; trial < 300; trial++) {
        int64_t n = 1 + below(90), ld = n + 3 + below(5), n_rows = 1 + below(9), m = below(12);
        double x[14 * 100], sum[100], abs_sum[100];
        float xf[14 * 100];
        for (int64_t i = 0; i < n_rows * ld; i++) {
            x[i] = value();
            xf[i] = (float)x[i];
        }
        int64_t rows[12], shift = below(3);
        for (int64_t u = 0; u < m; u++)
            rows[u] = below(n_rows);
        for (int f64 = 0; f64 < 2; f64++)
            for (int s = 0; s < n_sets; s++) {
                if (f64)
                    sets[s]->row_sums_f64(x + shift, ld, rows, m, n, sum, abs_sum);
                else
                    sets[s]->row_sums_f32(xf + shift, ld, rows, m, n, sum, abs_sum);
                for (int64_t i = 0; i < n; i++) {
                    double es = 0.0, ea = 0.0;
                    for (int64_t u = 0; u < m; u++) {
                        double v = f64 ? x[shift + rows[u] * ld + i]
                                       : (double)xf[shift + rows[u] * ld + i];
                        es += v;
                        ea += fabs(v);
                    }
                    CHECK(sum[i] == es && abs_sum[i] == ea);
                }
            }
    }
}

/* ---- finiteness ---------------------------------------------------------- */

/* Every set agrees with the scalar one on rows with a NaN, an infinity or
 * nothing planted at any position, at any length and alignment. */
static void test_all_finite(void)
{
    static const double bad_values[] = {NAN, INFINITY, -INFINITY};
    for (int trial = 0; trial < 600; trial++) {
        int64_t n = below(200), shift = below(3);
        double x[210];
        float xf[210];
        for (int64_t i = 0; i < n + shift; i++) {
            x[i] = value();
            xf[i] = (float)x[i];
        }
        int planted = trial % 4 != 0 && n > 0;
        if (planted) {
            int64_t at = shift + below(n);
            x[at] = bad_values[trial % 3];
            xf[at] = (float)bad_values[trial % 3];
        }
        for (int s = 0; s < n_sets; s++) {
            CHECK(sets[s]->all_finite_f64(x + shift, n) == !planted);
            CHECK(sets[s]->all_finite_f32(xf + shift, n) == !planted);
        }
    }
    float big = 3.0e38f;   /* the largest magnitudes are finite too */
    for (int s = 0; s < n_sets; s++)
        CHECK(sets[s]->all_finite_f32(&big, 1));
}

/* The half-precision finiteness check (four values a word) against the
 * reference conversions: every finite pattern passes, one infinity or NaN
 * of either sign at any place and alignment is found. */
static void test_all_finite_half(void)
{
    uint16_t h[80];
    for (int32_t dtype = FIB_DTYPE_F16; dtype <= FIB_DTYPE_BF16; dtype++) {
        /* the largest finite, the smallest subnormal, both signs */
        const uint16_t edges[] = {dtype == FIB_DTYPE_BF16 ? 0x7F7Fu : 0x7BFFu,
                                  dtype == FIB_DTYPE_BF16 ? 0xFF7Fu : 0xFBFFu, 0x0001u, 0x8001u};
        for (int trial = 0; trial < 2000; trial++) {
            int64_t n = below(70), shift = below(4);
            for (int64_t i = 0; i < n + shift; i++) {
                do
                    h[i] = (uint16_t)rnd();
                while (!isfinite(dtype == FIB_DTYPE_BF16 ? fib_bf16_to_float(h[i])
                                                         : fib_half_to_float(h[i])));
                if (below(8) == 0)
                    h[i] = edges[below(4)];
            }
            int planted = trial % 4 != 0 && n > 0;
            if (planted) {
                uint16_t full = dtype == FIB_DTYPE_BF16 ? 0x7F80u : 0x7C00u;
                /* infinity or a NaN (a non-zero mantissa), either sign */
                uint16_t mantissa = trial % 3 ? 0 : (uint16_t)(1 + below(full == 0x7C00u ? 1023 : 127));
                h[shift + below(n)] = (uint16_t)(full | mantissa | (trial % 2 ? 0x8000u : 0));
            }
            for (int s = 0; s < n_sets; s++)
                CHECK(fib_all_finite_stored(sets[s], dtype, h + shift, n) == !planted);
        }
    }
}

/* ---- grouping of sparse signatures ------------------------------------------ */

/* Signatures of small counts, mostly 0 (one-hot and sparse rows, the shape
 * of reader counts), with allowance 0: EXACT classes are exactly the sets of
 * identical rows. Large groups take the sort that leaves zeros in place. */
static void test_sparse_grouping(void)
{
    for (int trial = 0; trial < 40; trial++) {
        int64_t n = 100 + below(900), d = 1 + below(40), kinds = 1 + below(60);
        /* rows copied from `kinds` sparse prototypes, shuffled */
        double *proto = calloc((size_t)(kinds * d), sizeof *proto);
        for (int64_t x = 0; x < kinds * d; x++)
            proto[x] = below(6) == 0 ? (double)(1 + below(2)) : 0.0;
        int64_t *kind = malloc((size_t)n * sizeof *kind);
        fib_signature sig;
        CHECK(fib_signature_alloc(&sig, n, d) == FIB_OK);
        for (int64_t i = 0; i < n; i++) {
            kind[i] = below(kinds);
            for (int64_t j = 0; j < d; j++) {
                sig.value[i * d + j] = proto[kind[i] * d + j];
                sig.tol[i * d + j] = 0.0;
            }
        }
        fib_partition p;
        CHECK(fib_partition_init(&p, n) == FIB_OK);
        CHECK(fib_group_signatures(&sig, -1.0, &p) == FIB_OK);
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = i + 1; k < n; k++) {
                bool same_row = !memcmp(proto + kind[i] * d, proto + kind[k] * d,
                                        (size_t)d * sizeof *proto);
                if ((p.color[i] == p.color[k]) != same_row) {
                    CHECK(0);
                    k = n, i = n;
                }
            }
        fib_partition_clear(&p);
        fib_signature_clear(&sig);
        free(proto);
        free(kind);
    }
}

/* A large piece looks at one materialised coordinate on its sort keys and
 * skips the coordinate its equal parts were cut at (grouping.c); borrowed
 * coordinates take the blocked tight test. Sparse rows near prototypes
 * (noise far below eps, prototypes 1 or more apart) and the same rows
 * borrowed: ABS finds exactly the prototypes both ways, and EXACT, whose
 * classes the noise cuts, the same partition both ways. */
static void test_large_pieces_group_alike(void)
{
    const double coef = fib_rounding_tol(FIB_DTYPE_F64, 1, 1.0);
    for (int trial = 0; trial < 30; trial++) {
        int64_t n = 65 + below(700), d = 1 + below(50), kinds = 1 + below(40);
        double *proto = calloc((size_t)(kinds * d), sizeof *proto);
        double *rows = malloc((size_t)(n * d) * sizeof *rows);
        int64_t *kind = malloc((size_t)n * sizeof *kind);
        for (int64_t x = 0; x < kinds * d; x++)
            proto[x] = below(5) == 0 ? (double)(1 + below(3)) : 0.0;
        for (int64_t i = 0; i < n; i++) {
            kind[i] = below(kinds);
            for (int64_t j = 0; j < d; j++) {
                double v = proto[kind[i] * d + j];
                rows[i * d + j] = v != 0.0 && below(3) == 0 ? v + 1e-6 * (double)(below(2001) - 1000) : v;
            }
        }
        for (int pass = 0; pass < 2; pass++) {
            double eps = pass == 0 ? 0.1 : -1.0;
            fib_partition filled, borrowed;
            fib_signature a, b;
            CHECK(fib_signature_alloc(&a, n, d) == FIB_OK);
            for (int64_t x = 0; x < n * d; x++) {
                a.value[x] = rows[x];
                a.tol[x] = coef * fabs(rows[x]);
            }
            CHECK(fib_signature_alloc(&b, n, 0) == FIB_OK);
            b.n_coords = b.n_direct = d;
            b.n_blocks = 1;
            b.blocks[0] = (fib_direct_block){rows, FIB_DTYPE_F64, d, 1, d, 0};
            CHECK(fib_partition_init(&filled, n) == FIB_OK);
            CHECK(fib_partition_init(&borrowed, n) == FIB_OK);
            CHECK(fib_group_signatures(&a, eps, &filled) == FIB_OK);
            CHECK(fib_group_signatures(&b, eps, &borrowed) == FIB_OK);
            CHECK(filled.n_classes == borrowed.n_classes);
            for (int64_t i = 0; i < n; i++) {
                CHECK(filled.color[i] == borrowed.color[i]);
                if (filled.color[i] != borrowed.color[i])
                    break;
            }
            for (int64_t i = 0; pass == 0 && i < n; i++)
                for (int64_t k = i + 1; k < n; k++) {
                    bool same_row = !memcmp(proto + kind[i] * d, proto + kind[k] * d,
                                            (size_t)d * sizeof *proto);
                    if ((filled.color[i] == filled.color[k]) != same_row) {
                        CHECK(0);
                        k = n, i = n;
                    }
                }
            fib_partition_clear(&filled);
            fib_partition_clear(&borrowed);
            fib_signature_clear(&a);
            fib_signature_clear(&b);
        }
        free(proto);
        free(rows);
        free(kind);
    }
}

/* ---- axpy (the budget correction's products) ------------------------------ */

/* Every set's axpy_f64 against the scalar one, bit for bit: odd lengths,
 * every alignment, values of mixed magnitudes and signs, zeros of both
 * signs, a zero and a negative multiplier. */
static void test_axpy(void)
{
    const fib_kernels *ref = fib_kernels_scalar();
    for (int trial = 0; trial < 200; trial++) {
        int64_t n = trial < 40 ? trial : below(600), shift = below(8);
        double a = trial % 7 == 0 ? 0.0 : trial % 5 == 0 ? -value() : value();
        double *x = malloc((size_t)(n + 8) * sizeof *x);
        double *in = malloc((size_t)(n + 8) * sizeof *in);
        double *want = malloc((size_t)(n + 8) * sizeof *want);
        double *got = malloc((size_t)(n + 8) * sizeof *got);
        for (int64_t j = 0; j < n + 8; j++) {
            x[j] = value();
            in[j] = value();
        }
        memcpy(want, in, (size_t)(n + 8) * sizeof *in);
        ref->axpy_f64(want + shift, a, x + shift, n);
        for (int64_t j = 0; j < n; j++) /* the scalar one is the definition */
            CHECK(memcmp(&want[shift + j], &(double){in[shift + j] + a * x[shift + j]},
                         sizeof(double)) == 0);
        for (int s = 0; s < n_sets; s++) {
            memcpy(got, in, (size_t)(n + 8) * sizeof *in);
            sets[s]->axpy_f64(got + shift, a, x + shift, n);
            /* the same bits, and nothing outside [shift, shift + n) touched */
            CHECK(memcmp(want, got, (size_t)(n + 8) * sizeof *got) == 0);
        }
        free(x);
        free(in);
        free(want);
        free(got);
    }
}

/* ---- gemm (the convolutions' reference forward pass) ---------------------- */

/* Every set's gemm_f64 against the scalar one and against the definition
 * (fma() of each term in ascending p from c's own value), bit for bit: shapes
 * below, at and across the SIMD sets' tiles and blocks (1 row or column,
 * remainders of the 6 x 16 tile, more than 256 terms), strided a and c,
 * and nothing outside c's m x n elements touched. */
static double *pack_for(const fib_kernels *set, const double *b, int64_t k, int64_t n,
                        int64_t ldb)
{
    int64_t panel = set->gemm_panel;
    double *packed = calloc((size_t)fib_gemm_packed_len(k, n, panel), sizeof *packed);
    for (int64_t p = 0; p < k; p++)
        for (int64_t j = 0; j < n; j++)
            packed[fib_gemm_packed_at(k, panel, p, j)] = b[p * ldb + j];
    return packed;
}

static void test_gemm(void)
{
    static const int64_t dims[][3] = {{1, 1, 1},   {1, 1, 9},    {6, 16, 5},  {7, 17, 3},
                                      {5, 3, 300}, {13, 64, 27}, {100, 9, 513}, {97, 33, 1},
                                      {12, 8, 256}, {200, 40, 70}};
    const fib_kernels *ref = fib_kernels_scalar();
    for (size_t t = 0; t < sizeof dims / sizeof dims[0]; t++) {
        int64_t m = dims[t][0], n = dims[t][1], k = dims[t][2];
        int64_t lda = k + below(3), ldb = n + below(3), ldc = n + 1 + below(3);
        double *a = malloc((size_t)(m * lda) * sizeof *a);
        double *b = malloc((size_t)(k * ldb) * sizeof *b);
        double *in = malloc((size_t)(m * ldc) * sizeof *in);
        double *want = malloc((size_t)(m * ldc) * sizeof *want);
        double *got = malloc((size_t)(m * ldc) * sizeof *got);
        for (int64_t x = 0; x < m * lda; x++)
            a[x] = x % 11 == 0 ? 0.0 : value();
        for (int64_t x = 0; x < k * ldb; x++)
            b[x] = value();
        for (int64_t x = 0; x < m * ldc; x++)
            in[x] = value();
        memcpy(want, in, (size_t)(m * ldc) * sizeof *in);
        double *packed = pack_for(ref, b, k, n, ldb);
        ref->gemm_f64(m, n, k, a, lda, packed, want, ldc);
        free(packed);
        for (int64_t i = 0; i < m; i++) /* the scalar one is the definition */
            for (int64_t j = 0; j < ldc; j++) {
                double c = in[i * ldc + j];
                for (int64_t p = 0; j < n && p < k; p++)
                    c = fma(a[i * lda + p], b[p * ldb + j], c);
                CHECK(memcmp(&want[i * ldc + j], &c, sizeof c) == 0);
            }
        for (int s = 0; s < n_sets; s++) {
            memcpy(got, in, (size_t)(m * ldc) * sizeof *in);
            packed = pack_for(sets[s], b, k, n, ldb);
            sets[s]->gemm_f64(m, n, k, a, lda, packed, got, ldc);
            free(packed);
            CHECK(memcmp(want, got, (size_t)(m * ldc) * sizeof *got) == 0);
        }
        free(a);
        free(b);
        free(in);
        free(want);
        free(got);
    }
}

/* Every set's gemm_f64 fuses each product with its sum: c = -1 plus k
 * (odd) terms (1 + 2^-30) (+-(1 - 2^-30)) of alternating signs is
 * -2^-60 with fused multiply-adds (each product 1 - 2^-60 is kept whole)
 * and 0 with products rounded first (to 1). Whole tiles and edge tiles,
 * one term and more than a block of 256. */
static void test_gemm_fused(void)
{
    const double e = 0x1p-30;
    static const int64_t ks[] = {1, 3, 301};
    for (int s = 0; s < n_sets; s++)
        for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
            int64_t m = 13, n = 2 * sets[s]->gemm_panel + 3, k = ks[t], ldc = n + 1;
            double *a = malloc((size_t)(m * k) * sizeof *a);
            double *b = malloc((size_t)(k * n) * sizeof *b);
            double *c = malloc((size_t)(m * ldc) * sizeof *c);
            for (int64_t x = 0; x < m * k; x++)
                a[x] = 1 + e;
            for (int64_t p = 0; p < k; p++)
                for (int64_t j = 0; j < n; j++)
                    b[p * n + j] = p % 2 ? -(1 - e) : 1 - e;
            for (int64_t x = 0; x < m * ldc; x++)
                c[x] = -1.0;
            double *packed = pack_for(sets[s], b, k, n, n);
            sets[s]->gemm_f64(m, n, k, a, k, packed, c, ldc);
            free(packed);
            double fused = -1.0, unfused = -1.0;
            for (int64_t p = 0; p < k; p++) {
                fused = fma(a[0], b[p * n], fused);
                /* volatile: never contracted into a fused multiply-add
                 * (tests are built with the compiler's default) */
                volatile double product = a[0] * b[p * n];
                unfused += product;
            }
            CHECK(fused == -0x1p-60 && unfused == 0.0); /* the inputs tell them apart */
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < ldc; j++)
                    CHECK(c[i * ldc + j] == (j < n ? fused : -1.0));
            free(a);
            free(b);
            free(c);
        }
}

/* ---- dot products against a panel (the linkages' Gram matrices) -------- */

/* Every set's dots_f64 against the definition, bit for bit: 1 to 9 rows
 * (the four-row blocks and their remainder), panel widths that leave every
 * remainder of the vector loops, running values continued (a dot product
 * in two pieces has the bits of one pass), and nothing outside the tile
 * touched. */
static void test_dots(void)
{
    for (int trial = 0; trial < 150; trial++) {
        int64_t rows = 1 + below(9), width = 1 + below(40), len = below(70);
        int64_t lda = len + below(3), ld_out = width + below(3), split = len ? below(len) : 0;
        double *a = malloc((size_t)(rows * lda + 1) * sizeof *a);
        double *panel = malloc((size_t)(len * width + 1) * sizeof *panel);
        int64_t cells = rows * ld_out;
        double *in = malloc((size_t)cells * sizeof *in), *want = malloc((size_t)cells * sizeof *want);
        double *got = malloc((size_t)cells * sizeof *got);
        for (int64_t j = 0; j < rows * lda; j++)
            a[j] = value();
        for (int64_t j = 0; j < len * width; j++)
            panel[j] = value();
        for (int64_t j = 0; j < cells; j++)
            in[j] = trial % 3 ? value() : 0.0;
        memcpy(want, in, (size_t)cells * sizeof *in);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < width; c++) {
                double x = want[r * ld_out + c];
                for (int64_t j = 0; j < len; j++)
                    x += a[r * lda + j] * panel[j * width + c];
                want[r * ld_out + c] = x;
            }
        for (int s = -1; s < n_sets; s++) {
            const fib_kernels *k = s < 0 ? fib_kernels_scalar() : sets[s];
            memcpy(got, in, (size_t)cells * sizeof *in);
            k->dots_f64(a, lda, rows, panel, width, split, got, ld_out);
            k->dots_f64(a + split, lda, rows, panel + split * width, width, len - split, got,
                        ld_out);
            CHECK(memcmp(want, got, (size_t)cells * sizeof *got) == 0);
        }
        free(a);
        free(panel);
        free(in);
        free(want);
        free(got);
    }
}

/* Every set's dots_f32 against its definition, bit for bit: each sum made
 * in float from zero in ascending order, then added to the double running
 * value; the same shapes as test_dots. */
static void test_dots_f32(void)
{
    for (int trial = 0; trial < 150; trial++) {
        int64_t rows = 1 + below(9), width = 1 + below(70), len = below(70);
        int64_t lda = len + below(3), ld_out = width + below(3);
        float *a = malloc((size_t)(rows * lda + 1) * sizeof *a);
        float *panel = malloc((size_t)(len * width + 1) * sizeof *panel);
        int64_t cells = rows * ld_out;
        double *in = malloc((size_t)cells * sizeof *in), *want = malloc((size_t)cells * sizeof *want);
        double *got = malloc((size_t)cells * sizeof *got);
        for (int64_t j = 0; j < rows * lda; j++)
            a[j] = (float)value();
        for (int64_t j = 0; j < len * width; j++)
            panel[j] = (float)value();
        for (int64_t j = 0; j < cells; j++)
            in[j] = trial % 3 ? value() : 0.0;
        memcpy(want, in, (size_t)cells * sizeof *in);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < width; c++) {
                volatile float x = 0; /* float sums, whatever the evaluation method */
                for (int64_t j = 0; j < len; j++) {
                    volatile float p = a[r * lda + j] * panel[j * width + c];
                    x = x + p;
                }
                want[r * ld_out + c] += (double)x;
            }
        for (int s = -1; s < n_sets; s++) {
            const fib_kernels *k = s < 0 ? fib_kernels_scalar() : sets[s];
            memcpy(got, in, (size_t)cells * sizeof *in);
            k->dots_f32(a, lda, rows, panel, width, len, got, ld_out);
            CHECK(memcmp(want, got, (size_t)cells * sizeof *got) == 0);
        }
        free(a);
        free(panel);
        free(in);
        free(want);
        free(got);
    }
}

/* ---- rank-1 Ward costs (a row of the scale-aware linkage) ---------------- */

/* Every set's rank1_costs against fib_rank1_cost, bit for bit: lengths
 * that leave every remainder, energies of mixed sizes (zeros included),
 * cosines of both signs, zeros of both signs, +-1, and infinite cosines
 * (rows that may not merge) giving INFINITY. */
static void test_rank1_costs(void)
{
    for (int trial = 0; trial < 200; trial++) {
        int64_t n = trial < 40 ? trial : below(300);
        double sa2 = trial % 9 == 0 ? 0.0 : fabs(value()) * (1 + below(1000));
        double *sb2 = malloc((size_t)(n + 1) * sizeof *sb2);
        double *cosine = malloc((size_t)(n + 1) * sizeof *cosine);
        double *want = malloc((size_t)(n + 1) * sizeof *want);
        double *got = malloc((size_t)(n + 1) * sizeof *got);
        for (int64_t x = 0; x < n; x++) {
            sb2[x] = below(6) == 0 ? 0.0 : fabs(value()) * (1 + below(50));
            switch (below(8)) {
            case 0: cosine[x] = below(2) ? INFINITY : -INFINITY; break;
            case 1: cosine[x] = below(2) ? 1.0 : -1.0; break;
            case 2: cosine[x] = below(2) ? 0.0 : -0.0; break;
            default: cosine[x] = 2.0 * ((double)below(1 << 20) / (1 << 20)) - 1.0;
            }
            want[x] = isinf(cosine[x]) ? INFINITY : fib_rank1_cost(sa2, sb2[x], cosine[x]);
        }
        for (int s = -1; s < n_sets; s++) {
            const fib_kernels *k = s < 0 ? fib_kernels_scalar() : sets[s];
            memset(got, 0xff, (size_t)(n + 1) * sizeof *got);
            k->rank1_costs(sa2, sb2, cosine, n, got);
            CHECK(memcmp(want, got, (size_t)n * sizeof *got) == 0);
            double guard;
            memset(&guard, 0xff, sizeof guard);
            CHECK(memcmp(&got[n], &guard, sizeof guard) == 0); /* nothing past n */
        }
        free(sb2);
        free(cosine);
        free(want);
        free(got);
    }
}

/* ---- grouping's sort ------------------------------------------------------ */

static int keyed_compare(const void *a, const void *b)
{
    return fib_keyed_less(a, b) ? -1 : fib_keyed_less(b, a) ? 1 : 0;
}

/* fib_sort_keyed against qsort with the same order, on both of its paths
 * (merge below 256 keys, radix from there): mixed magnitudes and signs,
 * zeros of both signs, subnormals, long runs of equal values, units in
 * any order. Every element must come out where the reference puts it,
 * with its value's bits unchanged. */
static void test_keyed_sort(void)
{
    static const int64_t sizes[] = {0, 1, 2, 15, 16, 17, 255, 256, 257, 1000, 4096};
    for (int trial = 0; trial < 66; trial++) {
        int64_t n = sizes[trial % 11];
        int kind = trial / 11; /* 0-5: how values are drawn */
        fib_keyed_unit *keys = malloc((size_t)(n + 1) * sizeof *keys);
        fib_keyed_unit *ref = malloc((size_t)(n + 1) * sizeof *ref);
        fib_keyed_unit *tmp = malloc((size_t)(n + 1) * sizeof *tmp);
        for (int64_t x = 0; x < n; x++) {
            double v = kind == 0 ? value()
                     : kind == 1 ? (double)below(3) - 1.0           /* long ties */
                     : kind == 2 ? (below(2) ? 0.0 : -0.0)          /* signed zeros only */
                     : kind == 3 ? ldexp((double)below(7) - 3, -1070) /* subnormals */
                     : kind == 4 ? (below(2) ? -1.0 : 1.0) * ldexp(1.0, (int)below(2000) - 1000)
                                 : value() * 1e300;
            keys[x] = (fib_keyed_unit){v, x};
        }
        for (int64_t x = n - 1; x > 0; x--) { /* units in any order */
            int64_t y = below(x + 1);
            int64_t u = keys[x].unit;
            keys[x].unit = keys[y].unit;
            keys[y].unit = u;
        }
        if (n > 0)
            memcpy(ref, keys, (size_t)n * sizeof *ref);
        qsort(ref, (size_t)n, sizeof *ref, keyed_compare);
        fib_sort_keyed(keys, tmp, n);
        CHECK(n == 0 || memcmp(keys, ref, (size_t)n * sizeof *ref) == 0);
        free(keys);
        free(ref);
        free(tmp);
    }
}

/* ---- tight test ----------------------------------------------------------- */

static void test_tight(void)
{
    for (int trial = 0; trial < 600; trial++) {
        int64_t n_rows = 1 + below(12), len = 1 + below(70), ld = len + below(4);
        double *x = malloc((size_t)(n_rows * ld) * sizeof *x);
        double *tol = malloc((size_t)(n_rows * ld) * sizeof *tol);
        float *xf = malloc((size_t)(n_rows * ld) * sizeof *xf);
        double slack = trial % 2 ? 0.0 : 1e-3;
        /* Rows near a common one, so that the answer is often far along. */
        int64_t spread_from = below(len + 1);
        for (int64_t j = 0; j < len; j++) {
            double base = value();
            for (int64_t u = 0; u < n_rows; u++) {
                /* every third trial: rows equal before spread_from (spans of 0) */
                double noise = j >= spread_from ? value() * 1e-3
                               : trial % 3 == 0 ? 0.0 : (double)below(3) * 1e-12;
                x[u * ld + j] = base + noise;
                xf[u * ld + j] = (float)(base + noise);
                tol[u * ld + j] = fabs(base) * 1e-9 * (double)below(3);
            }
        }
        int64_t m = 1 + below(n_rows), rows[12];
        for (int64_t u = 0; u < m; u++)
            rows[u] = below(n_rows);
        double coef = ldexp(1.0, -20 - (int)below(30));
        /* the definition, coordinate by coordinate */
        int64_t naive = len;
        for (int64_t j = len - 1; j >= 0; j--) {
            double lo = INFINITY, hi = -INFINITY, t = INFINITY;
            for (int64_t u = 0; u < m; u++) {
                double v = x[rows[u] * ld + j], e = tol[rows[u] * ld + j];
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
                t = e < t ? e : t;
            }
            if (!(hi - lo <= (slack + t) + t))
                naive = j;
        }
        int64_t ref[3] = {0};
        for (int s = 0; s < n_sets; s++) {
            int64_t a = sets[s]->tight_f32(xf, ld, rows, m, len, slack, coef);
            int64_t b = sets[s]->tight_f64(x, ld, rows, m, len, slack, coef);
            int64_t c = sets[s]->tight_tol(x, tol, ld, rows, m, len, slack);
            CHECK(c == naive);
            if (s == 0) {
                ref[0] = a, ref[1] = b, ref[2] = c;
                CHECK(a >= 0 && a <= len && b >= 0 && b <= len && c >= 0 && c <= len);
            } else {
                CHECK(a == ref[0]);
                CHECK(b == ref[1]);
                CHECK(c == ref[2]);
            }
        }
        free(x), free(tol), free(xf);
    }
}

/* ---- colourings ----------------------------------------------------------- */

/* A 3-layer net: input n0, dense layers with planted output classes over
 * source classes (lifted rows, re-split within source classes), optional
 * noise. dtype F32 or F64; ld padded. */
typedef struct net {
    fib_graph *g;
    void *w[3];
} net;

static net make_net(int32_t dtype, int64_t width, double noise)
{
    net out = {0};
    fib_graph_create(&out.g);
    int32_t prev;
    fib_graph_add_input(out.g, width, &prev);
    int64_t *src = malloc((size_t)width * sizeof *src);
    for (int64_t k = 0; k < width; k++)
        src[k] = k; /* inputs are all distinct */
    int64_t n_src = width;
    for (int layer = 0; layer < 3; layer++) {
        int64_t ld = width + layer; /* odd strides */
        int64_t n_cls = width / 3 + 1;
        int64_t *cls = malloc((size_t)width * sizeof *cls);
        for (int64_t i = 0; i < width; i++)
            cls[i] = i < n_cls ? i : below(n_cls);
        double *base = malloc((size_t)(n_cls * n_src) * sizeof *base);
        for (int64_t x = 0; x < n_cls * n_src; x++)
            base[x] = value();
        int64_t *size = calloc((size_t)n_src, sizeof *size);
        for (int64_t k = 0; k < width; k++)
            size[src[k]]++;
        size_t esize = dtype == FIB_DTYPE_F32 ? 4 : 8;
        out.w[layer] = calloc((size_t)(width * ld), esize);
        for (int64_t i = 0; i < width; i++)
            for (int64_t k = 0; k < width; k++) {
                double v = base[cls[i] * n_src + src[k]] / (double)size[src[k]];
                v += noise * ((double)(rnd() >> 11) * 0x1.0p-53 - 0.5) / (double)size[src[k]];
                fib_store(dtype, out.w[layer], i * ld + k, v);
            }
        int32_t group;
        fib_graph_add_dense(out.g, prev, width, dtype, out.w[layer], ld, NULL, 0, &group);
        fib_graph_set_activation(out.g, group, layer == 2 ? FIB_ACT_LINEAR : FIB_ACT_RELU, 0);
        prev = group;
        memcpy(src, cls, (size_t)width * sizeof *src);
        n_src = n_cls;
        free(cls), free(base), free(size);
    }
    free(src);
    return out;
}

static void free_net(net *n)
{
    fib_graph_free(n->g);
    for (int l = 0; l < 3; l++)
        free(n->w[l]);
}

/* All colours of all groups, concatenated. */
static int64_t *colours_of(const fib_graph *g, const fib_coloring *c, int64_t *len)
{
    int32_t groups;
    fib_graph_num_groups(g, &groups);
    int64_t total = 0;
    for (int32_t i = 0; i < groups; i++) {
        int64_t units;
        fib_graph_group_info(g, i, NULL, &units, NULL, NULL, NULL, NULL, NULL);
        total += units;
    }
    int64_t *out = malloc((size_t)total * sizeof *out), at = 0;
    for (int32_t i = 0; i < groups; i++) {
        int64_t units;
        fib_graph_group_info(g, i, NULL, &units, NULL, NULL, NULL, NULL, NULL);
        fib_coloring_colors(c, i, out + at, units);
        at += units;
    }
    *len = total;
    return out;
}

/* Colours g under every kernel set on 1-3 threads: the same colouring every
 * time, and fibers balanced. Returns the number of classes of group
 * `count_group` (or -1 when a colouring failed). */
static int64_t same_coloring_everywhere(const fib_graph *g, int32_t symmetry,
                                         int32_t tolerance, double eps, int32_t count_group)
{
    int64_t *ref = NULL, ref_len = 0, classes = -1;
    for (int s = 0; s < n_sets; s++)
        for (int32_t threads = 1; threads <= 3; threads++) {
            CHECK(fib_kernels_override(sets[s]->level) == 0);
            fib_color_options o;
            fib_color_options_init(&o, sizeof o);
            o.symmetry = symmetry;
            o.tolerance = tolerance;
            o.eps = eps;
            o.n_threads = threads;
            fib_coloring *c = NULL;
            CHECK(fib_color(g, &o, &c) == FIB_OK);
            if (!c)
                return -1;
            int32_t balanced = 0;
            CHECK(fib_coloring_is_balanced(g, c, eps, &balanced) == FIB_OK);
            CHECK(symmetry != FIB_SYM_FIBERS || balanced == 1);
            fib_coloring_num_classes(c, count_group, &classes);
            int64_t len;
            int64_t *got = colours_of(g, c, &len);
            if (!ref) {
                ref = got;
                ref_len = len;
            } else {
                CHECK(len == ref_len && !memcmp(got, ref, (size_t)len * sizeof *got));
                free(got);
            }
            fib_coloring_free(c);
        }
    free(ref);
    fib_kernels_override(-1);
    return classes;
}

static void test_colourings(void)
{
    const int64_t widths[] = {1, 5, 40, 130};
    for (int wi = 0; wi < 4; wi++)
        for (int32_t dtype = FIB_DTYPE_F32; dtype <= FIB_DTYPE_F64; dtype++)
            for (int tol = 0; tol < 2; tol++) {
                double eps = tol ? 1e-3 : 0.0;
                net n = make_net(dtype, widths[wi], tol ? eps / 4 : 0.0);
                for (int32_t sym = FIB_SYM_FIBERS; sym <= FIB_SYM_COVERS; sym++)
                    same_coloring_everywhere(n.g, sym, tol ? FIB_TOL_ABS : FIB_TOL_EXACT, eps, 1);
                free_net(&n);
            }
}

/* Convolution kernels and LSTM gate rows go through the same colour sums:
 * every kernel set and thread count gives the same fibers and covers, and
 * the fibers are balanced. Two stacked convolutions (the second over the
 * first's planted classes: output channels copied in pairs, with the
 * second's kernels equal on each pair's channels, so that its colour sums
 * add several columns per class) and an LSTM over a sequence. */
enum { CL_C_IN = 6, CL_C1 = 12, CL_C2 = 10, CL_HIDDEN = 9, CL_KK = 9 };
#define CL_N_W1 (CL_C1 * CL_C_IN * CL_KK)
#define CL_N_W2 (CL_C2 * (CL_C1 / 2) * CL_KK)
#define CL_N_IH (4 * CL_HIDDEN * 5)
#define CL_N_HH (4 * CL_HIDDEN * CL_HIDDEN)
#define CL_N_ALL (CL_N_W1 + CL_N_W2 + CL_N_IH + CL_N_HH)

/* The net of conv_lstm_net over weights `buf` (dtype) laid out as it makes
 * them (conv1, conv2, LSTM input rows, LSTM hidden rows). */
static fib_graph *conv_lstm_graph(int32_t dtype, const void *weights)
{
    const int64_t c_in = CL_C_IN, c1 = CL_C1, c2 = CL_C2, hidden = CL_HIDDEN;
    const int64_t n_w1 = CL_N_W1, n_w2 = CL_N_W2, n_ih = CL_N_IH;
    size_t es = fib_dtype_size(dtype);
    const char *buf = weights;
    fib_graph *g = NULL;
    int32_t in, a, b, p, seq, l;
    fib_graph_create(&g);
    fib_graph_add_input_positions(g, c_in, 7, 7, &in);
    CHECK(fib_graph_add_conv(g, in, c1, 3, 3, 1, 1, 1, 1, 1, dtype, buf, NULL, 0, &a) == FIB_OK);
    fib_graph_set_activation(g, a, FIB_ACT_RELU, 0);
    CHECK(fib_graph_add_conv(g, a, c2, 3, 3, 2, 2, 0, 0, 2, dtype, buf + n_w1 * es, NULL, 0,
                             &b) == FIB_OK);
    fib_graph_set_activation(g, b, FIB_ACT_TANH, 0);
    CHECK(fib_graph_add_pool(g, b, FIB_POOL_AVG, 3, 3, 1, 1, 0, 0, &p) == FIB_OK);
    fib_graph_add_input_positions(g, 5, 6, 1, &seq);
    CHECK(fib_graph_add_lstm(g, seq, hidden, dtype, buf + (n_w1 + n_w2) * es,
                             buf + (n_w1 + n_w2 + n_ih) * es, NULL, NULL, 0, &l) == FIB_OK);
    return g;
}

static fib_graph *conv_lstm_net(int32_t dtype, void **owned)
{
    const int64_t c_in = CL_C_IN, c1 = CL_C1, c2 = CL_C2, kk = CL_KK;
    size_t es = dtype == FIB_DTYPE_F32 ? sizeof(float) : sizeof(double);
    int64_t n_w1 = CL_N_W1, n_w2 = CL_N_W2;
    int64_t n_ih = CL_N_IH, n_hh = CL_N_HH;
    char *buf = malloc((size_t)(n_w1 + n_w2 + n_ih + n_hh) * es);
    double *tmp = malloc((size_t)(n_w1 + n_w2 + n_ih + n_hh) * sizeof *tmp);
    double *w1 = tmp, *w2 = w1 + n_w1, *ih = w2 + n_w2; /* then w_hh */
    for (int64_t o = 0; o < c1; o++)
        for (int64_t x = 0; x < c_in * kk; x++)
            w1[o * c_in * kk + x] = o % 2 ? w1[(o - 1) * c_in * kk + x] : value();
    /* conv2 has 2 groups of 6 input channels; channels 2m, 2m+1 of conv1
     * are one class, and their kernels in conv2 are re-split (equal sums) */
    for (int64_t o = 0; o < c2; o++)
        for (int64_t j = 0; j < c1 / 2; j += 2)
            for (int64_t q = 0; q < kk; q++) {
                double total = value(), part = value();
                w2[(o * (c1 / 2) + j) * kk + q] = part;
                w2[(o * (c1 / 2) + j + 1) * kk + q] = total - part;
            }
    for (int64_t x = 0; x < n_ih + n_hh; x++)
        ih[x] = value();
    for (int64_t x = 0; x < n_w1 + n_w2 + n_ih + n_hh; x++) {
        if (dtype == FIB_DTYPE_F32)
            ((float *)buf)[x] = (float)tmp[x];
        else
            ((double *)buf)[x] = tmp[x];
    }
    free(tmp);
    *owned = buf;
    return conv_lstm_graph(dtype, buf);
}

static void test_conv_lstm_colourings(void)
{
    for (int32_t dtype = FIB_DTYPE_F32; dtype <= FIB_DTYPE_F64; dtype++) {
        void *owned = NULL;
        fib_graph *g = conv_lstm_net(dtype, &owned);
        /* conv1's copied pairs are its fibers (covers split them: conv2
         * reads the pair's channels differently) */
        CHECK(same_coloring_everywhere(g, FIB_SYM_FIBERS, FIB_TOL_EXACT, 0.0, 1) == 6);
        same_coloring_everywhere(g, FIB_SYM_COVERS, FIB_TOL_EXACT, 0.0, 1);
        fib_graph_free(g);
        free(owned);
    }
}

/* ---- compress ----------------------------------------------------------- */

/* The documented merge of a dense group: base weight (c, c') is the mean over
 * the members of c (ascending) of their colour sums over c' (ascending
 * columns from 0.0), added from 0.0 and multiplied by 1 / |c|. */
static void reference_merge(const double *w, int64_t n_out, int64_t n_in,
                            const int64_t *out_cls, int64_t k_out,
                            const int64_t *in_cls, int64_t k_in, double *base)
{
    double *row = malloc((size_t)k_in * sizeof *row);
    int64_t *size = calloc((size_t)k_out, sizeof *size);
    memset(base, 0, (size_t)(k_out * k_in) * sizeof *base);
    for (int64_t i = 0; i < n_out; i++) {
        size[out_cls[i]]++;
        memset(row, 0, (size_t)k_in * sizeof *row);
        for (int64_t k = 0; k < n_in; k++)
            row[in_cls[k]] += w[i * n_in + k];
        for (int64_t j = 0; j < k_in; j++)
            base[out_cls[i] * k_in + j] += row[j];
    }
    for (int64_t c = 0; c < k_out; c++)
        for (int64_t j = 0; j < k_in; j++)
            base[c * k_in + j] *= 1.0 / (double)size[c];
    free(row);
    free(size);
}

static void set_threads(int threads)
{
#ifdef _OPENMP
    omp_set_num_threads(threads);
#else
    (void)threads;
#endif
}

/* fib_compress gives the reference's bits for every SIMD level and thread
 * count (noisy nets, so that the order of the sums shows in the bits). */
static void test_compress(void)
{
    const int64_t widths[] = {1, 7, 40, 130};
    for (int wi = 0; wi < 4; wi++)
        for (int32_t dtype = FIB_DTYPE_F32; dtype <= FIB_DTYPE_F64; dtype++) {
            double eps = 1e-3;
            net n = make_net(dtype, widths[wi], eps / 4);
            fib_color_options o;
            fib_color_options_init(&o, sizeof o);
            o.symmetry = FIB_SYM_COVERS;
            o.tolerance = FIB_TOL_ABS;
            o.eps = eps;
            fib_coloring *c = NULL;
            CHECK(fib_color(n.g, &o, &c) == FIB_OK);
            int64_t width = widths[wi];
            double *w = malloc((size_t)(width * width) * sizeof *w);
            double *ref = malloc((size_t)(width * width) * sizeof *ref);
            double *got = malloc((size_t)(width * width) * sizeof *got);
            int64_t *out_cls = malloc((size_t)width * sizeof *out_cls);
            int64_t *in_cls = malloc((size_t)width * sizeof *in_cls);
            for (int s = 0; c && s < n_sets; s++)
                for (int threads = 1; threads <= 3; threads++) {
                    CHECK(fib_kernels_override(sets[s]->level) == 0);
                    set_threads(threads);
                    fib_base *b = NULL;
                    CHECK(fib_compress(n.g, c, &b) == FIB_OK);
                    if (!b)
                        continue;
                    const fib_graph *bg = fib_base_graph(b);
                    for (int32_t group = 1; group <= 3; group++) {
                        int64_t k_out, k_in;
                        CHECK(fib_base_projection(b, group, out_cls, width) == FIB_OK);
                        CHECK(fib_base_projection(b, group - 1, in_cls, width) == FIB_OK);
                        fib_graph_group_info(bg, group, NULL, &k_out, NULL, NULL, NULL,
                                             NULL, NULL);
                        fib_graph_group_info(bg, group - 1, NULL, &k_in, NULL, NULL, NULL,
                                             NULL, NULL);
                        CHECK(fib_graph_read_dense(n.g, group, FIB_DTYPE_F64, w, width,
                                                   NULL) == FIB_OK);
                        reference_merge(w, width, width, out_cls, k_out, in_cls, k_in, ref);
                        CHECK(fib_graph_read_dense(bg, group, FIB_DTYPE_F64, got, k_in,
                                                   NULL) == FIB_OK);
                        CHECK(!memcmp(got, ref, (size_t)(k_out * k_in) * sizeof *got));
                    }
                    fib_base_free(b);
                }
            set_threads(1);
            free(w), free(ref), free(got), free(out_cls), free(in_cls);
            fib_coloring_free(c);
            free_net(&n);
        }
    fib_kernels_override(-1);
}

/* ---- float16 and bfloat16 ----------------------------------------------- */

/* A half-precision value near f (its float32 bits cut short; too small:
 * a signed zero). Any value does: the tests compare a half graph with the
 * float32 copy of its own weights. */
static uint16_t to_half(int32_t dtype, float f)
{
    uint32_t b;
    memcpy(&b, &f, 4);
    if (dtype == FIB_DTYPE_BF16)
        return (uint16_t)(b >> 16);
    uint16_t sign = (uint16_t)((b >> 16) & 0x8000u);
    int32_t e = (int32_t)((b >> 23) & 0xFF) - 127 + 15;
    if (e <= 0)
        return sign;
    if (e >= 31)
        return (uint16_t)(sign | 0x7BFFu);
    return (uint16_t)(sign | (uint32_t)e << 10 | ((b >> 13) & 0x3FFu));
}

/* Half weights h near src, and f their float32 values (by the reference
 * conversions of the file reader). */
static void halve(int32_t dtype, const float *src, int64_t n, uint16_t *h, float *f)
{
    for (int64_t x = 0; x < n; x++) {
        h[x] = to_half(dtype, src[x]);
        f[x] = dtype == FIB_DTYPE_BF16 ? fib_bf16_to_float(h[x]) : fib_half_to_float(h[x]);
    }
}

/* Every tensor of every group of two graphs holds the same values. */
static bool same_tensors(const fib_graph *a, const fib_graph *b)
{
    int32_t groups, groups_b;
    fib_graph_num_groups(a, &groups);
    fib_graph_num_groups(b, &groups_b);
    bool same = groups == groups_b;
    for (int32_t i = 0; same && i < groups; i++)
        for (int32_t t = 0; same; t++) {
            int64_t sa[4], sb[4];
            if (fib_graph_tensor_info(a, i, t, NULL, sa, NULL) != FIB_OK) {
                same = fib_graph_tensor_info(b, i, t, NULL, sb, NULL) != FIB_OK;
                break;
            }
            same = fib_graph_tensor_info(b, i, t, NULL, sb, NULL) == FIB_OK &&
                   !memcmp(sa, sb, sizeof sa);
            int64_t n = sa[0] * sa[1] * sa[2] * sa[3];
            double *va = malloc((size_t)n * sizeof *va), *vb = malloc((size_t)n * sizeof *vb);
            same = same && fib_graph_read_tensor(a, i, t, FIB_DTYPE_F64, va, n) == FIB_OK &&
                   fib_graph_read_tensor(b, i, t, FIB_DTYPE_F64, vb, n) == FIB_OK &&
                   !memcmp(va, vb, (size_t)n * sizeof *va);
            free(va), free(vb);
        }
    return same;
}

/* gh (half weights) and gf (their float32 copy) colour alike under every
 * kernel set and thread count, for both symmetries, exactly and with a
 * tolerance; their compressions hold the same values. Returns the classes
 * of group `count_group` under exact fibers. */
static int64_t half_colours_like_float32(const fib_graph *gh, const fib_graph *gf,
                                         double eps, int32_t count_group)
{
    int64_t classes = -1;
    for (int32_t sym = FIB_SYM_FIBERS; sym <= FIB_SYM_COVERS; sym++)
        for (int tol = 0; tol < 2; tol++) {
            int64_t *ref = NULL, ref_len = 0;
            for (int s = 0; s < n_sets; s++)
                for (int32_t threads = 1; threads <= 3; threads++) {
                    CHECK(fib_kernels_override(sets[s]->level) == 0);
                    set_threads(threads);
                    fib_color_options o;
                    fib_color_options_init(&o, sizeof o);
                    o.symmetry = sym;
                    o.tolerance = tol ? FIB_TOL_ABS : FIB_TOL_EXACT;
                    o.eps = tol ? eps : 0.0;
                    o.n_threads = threads;
                    fib_coloring *ch = NULL, *cf = NULL;
                    CHECK(fib_color(gh, &o, &ch) == FIB_OK);
                    CHECK(fib_color(gf, &o, &cf) == FIB_OK);
                    if (!ch || !cf) {
                        fib_coloring_free(ch), fib_coloring_free(cf);
                        continue;
                    }
                    int64_t lh, lf;
                    int64_t *got = colours_of(gh, ch, &lh), *want = colours_of(gf, cf, &lf);
                    CHECK(lh == lf && !memcmp(got, want, (size_t)lh * sizeof *got));
                    if (!ref) {
                        ref = got, ref_len = lh;
                        if (sym == FIB_SYM_FIBERS && !tol)
                            fib_coloring_num_classes(ch, count_group, &classes);
                    } else {
                        CHECK(lh == ref_len && !memcmp(got, ref, (size_t)lh * sizeof *got));
                        free(got);
                    }
                    free(want);
                    fib_base *bh = NULL, *bf = NULL;
                    CHECK(fib_compress(gh, ch, &bh) == FIB_OK);
                    CHECK(fib_compress(gf, cf, &bf) == FIB_OK);
                    CHECK(bh && bf && same_tensors(fib_base_graph(bh), fib_base_graph(bf)));
                    fib_base_free(bh), fib_base_free(bf);
                    fib_coloring_free(ch), fib_coloring_free(cf);
                }
            free(ref);
        }
    set_threads(1);
    fib_kernels_override(-1);
    return classes;
}

/* make_net's three dense layers over weights w[layer] (dtype, ld width +
 * layer), with its activations. */
static fib_graph *dense_chain(int32_t dtype, int64_t width, void *const *w)
{
    fib_graph *g = NULL;
    int32_t prev, group;
    fib_graph_create(&g);
    fib_graph_add_input(g, width, &prev);
    for (int layer = 0; layer < 3; layer++) {
        CHECK(fib_graph_add_dense(g, prev, width, dtype, w[layer], width + layer, NULL, 0,
                                  &group) == FIB_OK);
        fib_graph_set_activation(g, group, layer == 2 ? FIB_ACT_LINEAR : FIB_ACT_RELU, 0);
        prev = group;
    }
    return g;
}

/* Dense chains (planted classes, and near-copies for a tolerance), conv
 * and LSTM blocks, with float16 and bfloat16 weights read in place: their
 * colourings and compressions are those of the float32 copy of the same
 * weights, under every kernel set and thread count, and the tensors read
 * back as those values (fib_graph_tensor_dtype says what is held). */
static void test_half_weights_colour_like_float32(void)
{
    const int64_t widths[] = {1, 5, 40, 130};
    for (int32_t dtype = FIB_DTYPE_F16; dtype <= FIB_DTYPE_BF16; dtype++) {
        for (int wi = 0; wi < 4; wi++)
            for (int noisy = 0; noisy < 2; noisy++) {
                int64_t width = widths[wi];
                net n = make_net(FIB_DTYPE_F32, width, noisy ? 1e-3 : 0.0);
                void *h[3], *f[3];
                for (int l = 0; l < 3; l++) {
                    int64_t cells = width * (width + l);
                    h[l] = malloc((size_t)cells * 2);
                    f[l] = malloc((size_t)cells * 4);
                    halve(dtype, n.w[l], cells, h[l], f[l]);
                }
                fib_graph *gh = dense_chain(dtype, width, h), *gf = dense_chain(FIB_DTYPE_F32, width, f);
                int32_t held = 0;
                CHECK(fib_graph_tensor_dtype(gh, 1, 0, &held) == FIB_OK && held == dtype);
                CHECK(same_tensors(gh, gf));
                int64_t classes = half_colours_like_float32(gh, gf, 1e-2, 1);
                /* planted copies stay copies in half precision */
                CHECK(noisy || width < 3 || (classes > 0 && classes < width));
                fib_graph_free(gh), fib_graph_free(gf);
                for (int l = 0; l < 3; l++)
                    free(h[l]), free(f[l]);
                free_net(&n);
            }
        /* Two rows over a source class of two equal units: [1, tiny] and
         * [1, 0] have sums 1 + tiny and 1, apart by less than float32's
         * allowance (tiny: 2^-24 in float16, 2^-30 in bfloat16), so one
         * class, as for the float32 copy; float64's allowance would split
         * them. */
        uint16_t one = dtype == FIB_DTYPE_BF16 ? 0x3F80u : 0x3C00u;
        uint16_t tiny = dtype == FIB_DTYPE_BF16 ? 0x3080u : 0x0001u;
        uint16_t w1[2] = {one, one}, w2[4] = {one, tiny, one, 0};
        float f1[2], f2[4];
        for (int x = 0; x < 4; x++) {
            f2[x] = dtype == FIB_DTYPE_BF16 ? fib_bf16_to_float(w2[x]) : fib_half_to_float(w2[x]);
            if (x < 2)
                f1[x] = 1.0f;
        }
        CHECK(f2[1] > 0.0f && f2[1] <= 0x1.0p-24f);
        fib_graph *pair[2];
        for (int k = 0; k < 2; k++) {
            int32_t dt = k ? FIB_DTYPE_F32 : dtype, in, a, b;
            fib_graph_create(&pair[k]);
            fib_graph_add_input(pair[k], 1, &in);
            CHECK(fib_graph_add_dense(pair[k], in, 2, dt, k ? (void *)f1 : (void *)w1, 1, NULL,
                                      0, &a) == FIB_OK);
            CHECK(fib_graph_add_dense(pair[k], a, 2, dt, k ? (void *)f2 : (void *)w2, 2, NULL,
                                      0, &b) == FIB_OK);
            fib_graph_set_activation(pair[k], a, FIB_ACT_RELU, 0);
        }
        CHECK(half_colours_like_float32(pair[0], pair[1], 1e-2, 2) == 1);
        fib_graph_free(pair[0]), fib_graph_free(pair[1]);

        void *owned = NULL;
        fib_graph *g32 = conv_lstm_net(FIB_DTYPE_F32, &owned);
        fib_graph_free(g32);
        uint16_t *h = malloc(CL_N_ALL * sizeof *h);
        float *f = malloc(CL_N_ALL * sizeof *f);
        halve(dtype, owned, CL_N_ALL, h, f);
        fib_graph *gh = conv_lstm_graph(dtype, h), *gf = conv_lstm_graph(FIB_DTYPE_F32, f);
        CHECK(same_tensors(gh, gf));
        /* conv1's copied pairs survive the rounding */
        CHECK(half_colours_like_float32(gh, gf, 1e-2, 1) == CL_C1 / 2);
        fib_graph_free(gh), fib_graph_free(gf);
        free(h), free(f), free(owned);
    }
}

/* FIBRATION_SIMD is obeyed (capped by what the CPU has) and reported. */
static void test_dispatch(void)
{
    const fib_kernels *active = fib_kernels_active();
    const char *env = getenv("FIBRATION_SIMD");
    int32_t best = FIB_SIMD_SCALAR;
    for (int32_t l = FIB_SIMD_SCALAR; l <= FIB_SIMD_AVX512; l++)
        if (fib_kernels_level(l))
            best = l;
    int32_t want = best;
    if (env && !strcmp(env, "scalar"))
        want = FIB_SIMD_SCALAR;
    else if (env && !strcmp(env, "avx2"))
        want = best < FIB_SIMD_AVX2 ? best : FIB_SIMD_AVX2;
    CHECK(active->level == want);
    uint32_t f = fib_features();
    CHECK(!!(f & FIB_FEATURE_AVX2) == (want == FIB_SIMD_AVX2));
    CHECK(!!(f & FIB_FEATURE_AVX512) == (want == FIB_SIMD_AVX512));
    /* FIBRATION_NO_FMA forces the emulated fused term */
    const char *no_fma = getenv("FIBRATION_NO_FMA");
    bool forced = no_fma && *no_fma && strcmp(no_fma, "0") != 0;
    const fib_fused *fused = fib_fused_active();
    CHECK(fused == (forced || !fib_fused_fma() ? fib_fused_emulated() : fib_fused_fma()));
    printf("FIBRATION_SIMD=%s: kernels %s (best here: %d), features 0x%x, fused terms %s\n",
           env ? env : "(unset)", active->name, (int)best, (unsigned)f, fused->name);
}

int main(void)
{
    test_dispatch();
    for (int32_t l = FIB_SIMD_SCALAR; l <= FIB_SIMD_AVX512; l++)
        if (fib_kernels_level(l))
            sets[n_sets++] = fib_kernels_level(l);
    test_color_sums(0);
    test_color_sums(1);
    test_row_sums();
    test_all_finite();
    test_all_finite_half();
    test_axpy();
    test_gemm();
    test_gemm_fused();
    test_dots();
    test_dots_f32();
    test_rank1_costs();
    test_sparse_grouping();
    test_large_pieces_group_alike();
    test_keyed_sort();
    test_tight();
    test_colourings();
    test_conv_lstm_colourings();
    test_compress();
    test_half_weights_colour_like_float32();
    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
