/* The scalar kernels that exist for float32 and float64, written once:
 * included by kernels_scalar.c once per element type, with KS_SUFFIX (f32 or
 * f64, the names' ending) and KS_ELEM (float or double). Every element is
 * widened to double before it is added: the reference order and rounding
 * the SIMD sets reproduce. No include guard: it is meant to be included
 * twice. */
#define KS_FN(name) FIB_KERNEL_TYPED(name, KS_SUFFIX)

void KS_FN(fib_color_sums_rows)(const KS_ELEM *w, int64_t ld, int64_t row0,
                                 int64_t rows, int64_t n, const int64_t *color,
                                 int64_t k_classes, double *sum, double *abs_sum,
                                 int64_t ld_out)
{
    for (int64_t r = row0; r < rows; r++) {
        const KS_ELEM *row = w + r * ld;
        double *s = sum + r * ld_out;
        memset(s, 0, (size_t)k_classes * sizeof *s);
        if (!abs_sum) {
            for (int64_t k = 0; k < n; k++)
                s[color[k]] += (double)row[k];
            continue;
        }
        double *a = abs_sum + r * ld_out;
        memset(a, 0, (size_t)k_classes * sizeof *a);
        for (int64_t k = 0; k < n; k++) {
            double x = (double)row[k];
            s[color[k]] += x;
            a[color[k]] += fabs(x);
        }
    }
}

static void KS_FN(color_sums)(const KS_ELEM *w, int64_t ld, int64_t rows,
                               int64_t n, const int64_t *color,
                               const int64_t *perm, const int64_t *start,
                               int64_t k_classes, double *scratch, double *sum,
                               double *abs_sum, int64_t ld_out)
{
    (void)scratch, (void)perm, (void)start;
    KS_FN(fib_color_sums_rows)(w, ld, 0, rows, n, color, k_classes, sum, abs_sum,
                                ld_out);
}

/* Column by column: the order of each sum is the rows' order. */
void KS_FN(fib_row_sums_cols)(const KS_ELEM *w, int64_t ld, const int64_t *rows, int64_t m,
                              int64_t i0, int64_t n, double *sum, double *abs_sum)
{
    for (int64_t i = i0; i < n; i++) {
        double s = 0.0, a = 0.0;
        for (int64_t u = 0; u < m; u++) {
            double v = (double)w[rows[u] * ld + i];
            s += v;
            a += fabs(v);
        }
        sum[i] = s;
        abs_sum[i] = a;
    }
}

static void KS_FN(row_sums)(const KS_ELEM *w, int64_t ld, const int64_t *rows, int64_t m,
                            int64_t n, double *sum, double *abs_sum)
{
    KS_FN(fib_row_sums_cols)(w, ld, rows, m, 0, n, sum, abs_sum);
}

int64_t FIB_KERNEL_TYPED(KS_FN(fib_tight), from)(const KS_ELEM *x, int64_t ld, const int64_t *rows,
                                       int64_t m, int64_t j0, int64_t len, double slack,
                                       double coef)
{
    fib_tight_block t;
    for (int64_t j = j0; j < len; j += FIB_TIGHT_BLOCK) {
        fib_tight_block_start(&t, j, len);
        for (int64_t u = 0; u < m; u++) {
            const KS_ELEM *row = x + rows[u] * ld + j;
            for (int64_t q = 0; q < t.n; q++)
                fib_tight_block_weight(&t, q, (double)row[q]);
        }
        int64_t q = fib_tight_block_first_loose(&t, slack, coef);
        if (q >= 0)
            return j + q;
    }
    return len;
}

static int64_t KS_FN(tight)(const KS_ELEM *x, int64_t ld, const int64_t *rows,
                            int64_t m, int64_t len, double slack, double coef)
{
    return FIB_KERNEL_TYPED(KS_FN(fib_tight), from)(x, ld, rows, m, 0, len, slack, coef);
}

/* x - x is 0 for a finite x, NaN otherwise; branch-free. */
static bool KS_FN(all_finite)(const KS_ELEM *x, int64_t n)
{
    int bad = 0;
    for (int64_t k = 0; k < n; k++)
        bad |= !(x[k] - x[k] == (KS_ELEM)0);
    return !bad;
}

#undef KS_FN
#undef KS_SUFFIX
#undef KS_ELEM
