/* The fused term, a * b + c rounded once (IEEE fused multiply-add), and the
 * loops made of it: the product kernel's terms (gemm_f64 at every level)
 * and the sums that must give its bits (the convolutions' plain path, the
 * budget correction's Cholesky columns and the products that skip zeros).
 *
 * Two sets of loops, the same bits: one with the CPU's FMA instruction,
 * one with an exact emulation (fib_fma_emulated) for CPUs without it, where
 * libm's fma() is a slow software routine. fib_fused_active picks one once
 * per process: the instruction when the build has it and the CPU supports
 * it, unless FIBRATION_NO_FMA is set to a value other than 0 (tests force
 * the emulation with it). A table of loops rather than a function per term:
 * each loop is compiled with its term inlined. */
#ifndef FIB_FUSED_H
#define FIB_FUSED_H

#include <stdint.h>

typedef struct fib_fused {
    const char *name; /* "fma" (the instruction) or "emulated" */
    /* fma(a, b, c), one term (for the rare loops without their own) */
    double (*term)(double a, double b, double c);
    /* y[j] = fma(a, x[j], y[j]) for j in [0, n) */
    void (*axpy)(double *y, double a, const double *x, int64_t n);
    /* z = fma(w[j * stride], x[j], z) for j = 0 .. n-1 in turn; z returned */
    double (*dot)(double z, const double *w, int64_t stride, const double *x, int64_t n);
    /* the same with float weights, each widened to double */
    double (*dot_f32)(double z, const float *w, int64_t stride, const double *x, int64_t n);
    /* z[r] = fma(x[r][k], -y[k], z[r]) for k = 0 .. n-1 in turn, for each
     * of `rows` rows (1 to 4; independent chains, interleaved) */
    void (*dot_sub)(double *z, const double *const *x, int64_t rows, const double *y,
                    int64_t n);
    /* the scalar set's gemm_f64 (kernels.h), b packed in panels of `panel`
     * columns */
    void (*gemm)(int64_t m, int64_t n, int64_t k, const double *a, int64_t lda,
                 const double *packed_b, int64_t panel, double *c, int64_t ldc);
} fib_fused;

/* The set chosen for this process. */
const fib_fused *fib_fused_active(void);

/* The emulated set, and the instruction's (NULL when the build or the CPU
 * has no FMA): for tests and benchmarks. */
const fib_fused *fib_fused_emulated(void);
const fib_fused *fib_fused_fma(void);

/* The instruction's loops as built (fused_fma.c; NULL: none), whether or
 * not the CPU can run them (fib_cpu_has_fma). */
const fib_fused *fib_fused_fma_table(void);

/* fma(a, b, c), correctly rounded, without the FMA instruction: Boldo and
 * Melquiond's algorithm where it is proven, libm's fma() elsewhere. */
double fib_fma_emulated(double a, double b, double c);

#endif
