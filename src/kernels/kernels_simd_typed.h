/* The kernels that exist for float32 and float64, written once: included by
 * kernels_simd.h once per element type, with
 *   KS_SUFFIX       f32 or f64 (the names' ending)
 *   KS_ELEM         float or double
 *   KS_BLOCK_COLS   columns of one transposed block (block_<suffix>)
 *   KS_FINITE_N     elements of one finiteness test (KS_FINITE_BITS)
 * and block_, column_, widen_<suffix> defined before it. No include guard:
 * it is meant to be included twice. */
#define KS_FN(name) FIB_KERNEL_TYPED(name, KS_SUFFIX)

/* Exactly TILE rows. */
static void KS_FN(tile)(const KS_ELEM *w, int64_t ld, int64_t n, const int64_t *perm,
                        const int64_t *start, int64_t k_classes, double *scratch,
                        double *sum, double *abs_sum, int64_t ld_out)
{
    tile_scratch ts = split_scratch(scratch, k_classes);
    KS_ELEM *cols = ts.cols;
    fib_next_tile nt = fib_next_tile_plan(w, TILE, ld, n, KS_BLOCK_COLS, sizeof *w);
    for (int64_t k0 = 0; k0 < n; k0 += FIB_COLOR_CHUNK) {
        int64_t k1 = n - k0 < FIB_COLOR_CHUNK ? n : k0 + FIB_COLOR_CHUNK;
        int first = k0 == 0;
        int64_t j = k0;
        for (; j + KS_BLOCK_COLS <= k1; j += KS_BLOCK_COLS)
            KS_FN(block)(w, ld, j, nt, cols + (j - k0) * TILE);
        for (; j < k1; j++)
            for (int q = 0; q < TILE; q++)
                cols[(j - k0) * TILE + q] = w[q * ld + j];
        if (abs_sum)
            CLASS_PASS(KS_FN(column), 1)
        else
            CLASS_PASS(KS_FN(column), 0)
    }
    write_out(ts.acc_s, ts.acc_a, k_classes, sum, abs_sum, ld_out);
}

static void KS_FN(color_sums)(const KS_ELEM *w, int64_t ld, int64_t rows,
                               int64_t n, const int64_t *color,
                               const int64_t *perm, const int64_t *start,
                               int64_t k_classes, double *scratch, double *sum,
                               double *abs_sum, int64_t ld_out)
{
    int64_t r = 0;
    for (; r + TILE <= rows; r += TILE)
        KS_FN(tile)(w + r * ld, ld, n, perm, start, k_classes, scratch,
                    sum + r * ld_out, abs_sum ? abs_sum + r * ld_out : NULL, ld_out);
    KS_FN(fib_color_sums_rows)(w, ld, r, rows, n, color, k_classes, sum, abs_sum,
                                ld_out);
}

/* 4 x VD_N columns at a time, their sums in registers over all the rows
 * (four named accumulators: gcc -O2 keeps arrays of vectors on the
 * stack). */
static void KS_FN(row_sums)(const KS_ELEM *w, int64_t ld, const int64_t *rows, int64_t m,
                            int64_t n, double *sum, double *abs_sum)
{
    int64_t i = 0;
    for (; i + 4 * VD_N <= n; i += 4 * VD_N) {
        VD s0 = VD_ZERO(), s1 = s0, s2 = s0, s3 = s0;
        VD a0 = s0, a1 = s0, a2 = s0, a3 = s0;
        for (int64_t u = 0; u < m; u++) {
            const KS_ELEM *row = w + rows[u] * ld + i;
            VD v0 = KS_FN(widen)(row);
            VD v1 = KS_FN(widen)(row + VD_N);
            VD v2 = KS_FN(widen)(row + 2 * VD_N);
            VD v3 = KS_FN(widen)(row + 3 * VD_N);
            s0 = VD_ADD(s0, v0);
            s1 = VD_ADD(s1, v1);
            s2 = VD_ADD(s2, v2);
            s3 = VD_ADD(s3, v3);
            a0 = VD_ADD(a0, VD_ABS(v0));
            a1 = VD_ADD(a1, VD_ABS(v1));
            a2 = VD_ADD(a2, VD_ABS(v2));
            a3 = VD_ADD(a3, VD_ABS(v3));
        }
        VD_STOREU(sum + i, s0);
        VD_STOREU(sum + i + VD_N, s1);
        VD_STOREU(sum + i + 2 * VD_N, s2);
        VD_STOREU(sum + i + 3 * VD_N, s3);
        VD_STOREU(abs_sum + i, a0);
        VD_STOREU(abs_sum + i + VD_N, a1);
        VD_STOREU(abs_sum + i + 2 * VD_N, a2);
        VD_STOREU(abs_sum + i + 3 * VD_N, a3);
    }
    KS_FN(fib_row_sums_cols)(w, ld, rows, m, i, n, sum, abs_sum);
}

/* Tight tests, 2 x VD_N coordinates per step: the running min, max and
 * smallest magnitude stay in registers while the members' rows stream
 * past. */
static int64_t KS_FN(tight)(const KS_ELEM *x, int64_t ld, const int64_t *rows,
                            int64_t m, int64_t len, double slack, double coef)
{
    const VD vslack = VD_SET1(slack), vcoef = VD_SET1(coef);
    int64_t j = 0;
    for (; j + 2 * VD_N <= len; j += 2 * VD_N) {
        VD lo0 = VD_SET1(INFINITY), lo1 = lo0, sm0 = lo0, sm1 = lo0;
        VD hi0 = VD_SET1(-INFINITY), hi1 = hi0;
        for (int64_t u = 0; u < m; u++) {
            const KS_ELEM *row = x + rows[u] * ld + j;
            VD v0 = KS_FN(widen)(row), v1 = KS_FN(widen)(row + VD_N);
            lo0 = VD_MIN(v0, lo0);
            lo1 = VD_MIN(v1, lo1);
            hi0 = VD_MAX(v0, hi0);
            hi1 = VD_MAX(v1, hi1);
            sm0 = VD_MIN(VD_ABS(v0), sm0);
            sm1 = VD_MIN(VD_ABS(v1), sm1);
        }
        int64_t q = first_untight(lo0, lo1, hi0, hi1, VD_MUL(vcoef, sm0),
                                  VD_MUL(vcoef, sm1), vslack);
        if (q >= 0)
            return j + q;
    }
    return FIB_KERNEL_TYPED(KS_FN(fib_tight), from)(x, ld, rows, m, j, len, slack, coef);
}

/* x - x == 0 holds exactly for finite lanes; four vectors per step. */
static bool KS_FN(all_finite)(const KS_ELEM *x, int64_t n)
{
    const unsigned all = (unsigned)((1ull << KS_FINITE_N) - 1u);
    unsigned ok = all;
    int64_t k = 0;
    for (; k + 4 * KS_FINITE_N <= n; k += 4 * KS_FINITE_N)
        for (int q = 0; q < 4; q++)
            ok &= KS_FINITE_BITS(x + k + KS_FINITE_N * q);
    int bad = ok != all;
    for (; k < n; k++)
        bad |= !(x[k] - x[k] == (KS_ELEM)0);
    return !bad;
}

#undef KS_FN
#undef KS_SUFFIX
#undef KS_ELEM
#undef KS_BLOCK_COLS
#undef KS_FINITE_N
#undef KS_FINITE_BITS
