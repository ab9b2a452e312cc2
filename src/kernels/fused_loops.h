/* The loops of fib_fused (fused.h), written once: the includer defines
 * FUSED_TERM(a, b, c) (a * b + c rounded once), FUSED_SUFFIX (a name for
 * the set), FUSED_NAME (its name as a string) and FUSED_TABLE (the
 * function that returns its table). No include guard: included once
 * per set. */
#include <stdint.h>

#define FUSED_CAT2(name, suffix) name##_##suffix
#define FUSED_CAT(name, suffix) FUSED_CAT2(name, suffix)
#define FUSED_FN(name) FUSED_CAT(name, FUSED_SUFFIX)

static double FUSED_FN(fused_term)(double a, double b, double c)
{
    return FUSED_TERM(a, b, c);
}

static void FUSED_FN(fused_axpy)(double *y, double a, const double *x, int64_t n)
{
    for (int64_t j = 0; j < n; j++)
        y[j] = FUSED_TERM(a, x[j], y[j]);
}

static double FUSED_FN(fused_dot)(double z, const double *w, int64_t stride, const double *x,
                                  int64_t n)
{
    for (int64_t j = 0; j < n; j++)
        z = FUSED_TERM(w[j * stride], x[j], z);
    return z;
}

static double FUSED_FN(fused_dot_f32)(double z, const float *w, int64_t stride,
                                      const double *x, int64_t n)
{
    for (int64_t j = 0; j < n; j++)
        z = FUSED_TERM((double)w[j * stride], x[j], z);
    return z;
}

static void FUSED_FN(fused_dot_sub)(double *z, const double *const *x, int64_t rows,
                                    const double *y, int64_t n)
{
    if (rows == 4) {
        const double *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
        double t0 = z[0], t1 = z[1], t2 = z[2], t3 = z[3];
        for (int64_t k = 0; k < n; k++) {
            double q = -y[k];
            t0 = FUSED_TERM(x0[k], q, t0);
            t1 = FUSED_TERM(x1[k], q, t1);
            t2 = FUSED_TERM(x2[k], q, t2);
            t3 = FUSED_TERM(x3[k], q, t3);
        }
        z[0] = t0, z[1] = t1, z[2] = t2, z[3] = t3;
        return;
    }
    for (int64_t r = 0; r < rows; r++) {
        const double *xr = x[r];
        double t = z[r];
        for (int64_t k = 0; k < n; k++)
            t = FUSED_TERM(xr[k], -y[k], t);
        z[r] = t;
    }
}

static void FUSED_FN(fused_gemm)(int64_t m, int64_t n, int64_t k, const double *a,
                                 int64_t lda, const double *packed_b, int64_t panel,
                                 double *c, int64_t ldc)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j += panel) {
            int64_t cols = n - j < panel ? n - j : panel;
            /* fib_gemm_packed_at(k, panel, 0, j) */
            const double *bj = packed_b + (j / panel) * k * panel;
            double *ci = c + i * ldc + j;
            for (int64_t p = 0; p < k; p++) {
                double aip = a[i * lda + p];
                const double *bp = bj + p * panel;
                for (int64_t q = 0; q < cols; q++)
                    ci[q] = FUSED_TERM(aip, bp[q], ci[q]);
            }
        }
}

const fib_fused *FUSED_TABLE(void)
{
    static const fib_fused table = {
        .name = FUSED_NAME,
        .term = FUSED_FN(fused_term),
        .axpy = FUSED_FN(fused_axpy),
        .dot = FUSED_FN(fused_dot),
        .dot_f32 = FUSED_FN(fused_dot_f32),
        .dot_sub = FUSED_FN(fused_dot_sub),
        .gemm = FUSED_FN(fused_gemm),
    };
    return &table;
}

#undef FUSED_FN
#undef FUSED_CAT
#undef FUSED_CAT2
