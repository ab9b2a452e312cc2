/* The emulated fused term (src/kernels/fused.c) against libm's fma(), bit
 * for bit, on millions of inputs of every kind: random over a wide range
 * of exponents, sums that cancel, exact ties, signed zeros, subnormal
 * results, infinities and NaNs, and the edges of the range where the
 * emulation is proven (beyond them it falls back). Then the loops of both
 * fused sets (the emulated one and, where the CPU has it, the
 * instruction's) against the same loops written with fma(). */
#include "kernels/fused.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
static long long compared;

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t next_u64(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Du;
}

static int64_t between(int64_t lo, int64_t hi)
{
    return lo + (int64_t)(next_u64() % (uint64_t)(hi - lo + 1));
}

static uint64_t bits_of(double x)
{
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static double of_bits(uint64_t u)
{
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* A random sign and significand, times 2^e (ldexp: subnormal or infinite
 * at the ends). */
static double random_at(int e)
{
    double m = 1.0 + (double)(next_u64() >> 12) * 0x1p-52;
    return ldexp(next_u64() & 1 ? -m : m, e);
}

static void expect_same(double a, double b, double c, const char *kind)
{
    double want = fma(a, b, c), got = fib_fma_emulated(a, b, c);
    compared++;
    if (bits_of(want) != bits_of(got)) {
        if (failures < 20)
            fprintf(stderr, "%s: fma(%a, %a, %a) = %a, emulated %a\n", kind, a, b, c, want,
                    got);
        failures++;
    }
}

/* Exponents of a and b over most of the range, c's near their product's
 * (where the sum's rounding matters) or anywhere. */
static void random_inputs(long n)
{
    for (long i = 0; i < n; i++) {
        int ea = (int)between(-520, 520), eb = (int)between(-520, 520);
        double a = random_at(ea), b = random_at(eb);
        int ec = i % 4 == 0 ? (int)between(-1074, 1023) : ea + eb + (int)between(-110, 110);
        expect_same(a, b, random_at(ec), "random");
    }
}

/* c within a few units of the last place of -a*b: the product's low part
 * is most of the result. */
static void cancellations(long n)
{
    for (long i = 0; i < n; i++) {
        double a = random_at((int)between(-440, 440)), b = random_at((int)between(-440, 440));
        double c = -(a * b);
        c = of_bits(bits_of(c) + (uint64_t)between(-3, 3));
        expect_same(a, b, c, "cancellation");
        /* and with a factor of few bits, so that a*b is exact more often */
        double a2 = (double)(between(1, 1 << 20) | 1) * 0x1p-10;
        expect_same(a2, b, -(a2 * b), "cancellation, exact product");
    }
}

/* a*b + c exactly halfway between two doubles: x (of last place u) plus an
 * odd multiple of u/2 made exactly by a * b (odd integers of few enough
 * bits, scaled), each sign; and sums just beside a tie. */
static void ties(long n)
{
    for (long i = 0; i < n; i++) {
        int bits_a = (int)between(1, 26), bits_b = (int)between(1, 26);
        int64_t ia = (int64_t)(next_u64() >> (64 - bits_a)) | 1;
        int64_t ib = (int64_t)(next_u64() >> (64 - bits_b)) | 1;
        int ex = (int)between(-400, 400);
        double x = random_at(ex);
        /* u/2 = 2^(ex - 53) */
        double a = (double)ia * (next_u64() & 1 ? -1 : 1);
        double b = ldexp((double)ib, ex - 53);
        expect_same(a, b, x, "tie");
        /* move the exact sum off the tie by a product bit far below */
        double a_off = a + (a > 0 ? 0x1p-20 : -0x1p-20);
        expect_same(a_off, b, x, "near tie");
        expect_same(b, a, -x, "tie, swapped");
        /* a * b a hair off an odd multiple t of u/2, b = t / a rounded:
         * c + a*b rounds to a tie (the error of c + t is u/2) while the
         * exact sum lies just beside it, the double rounding that
         * rounding to odd prevents */
        double f = 1.0 + (double)(next_u64() >> 12) * 0x1p-52;
        double t = ldexp((double)(2 * between(0, 3) + 1), ex - 53);
        double bt = t / f;
        if (x / ldexp(1.0, ex) < 0)
            bt = -bt;
        expect_same(f, bt, x, "near tie, product a hair off");
        expect_same(f, -bt, x, "near tie, product a hair off, other side");
    }
}

/* Signed zeros: every sign of zero and of small products that cancel. */
static void zeros(void)
{
    const double v[] = {0.0, -0.0, 1.0, -1.0, 0x1p-600, -0x1p-600, 3.0, -3.0, 0x1p500, 1e300};
    size_t nv = sizeof v / sizeof v[0];
    for (size_t i = 0; i < nv; i++)
        for (size_t j = 0; j < nv; j++)
            for (size_t k = 0; k < nv; k++) {
                expect_same(v[i], v[j], v[k], "zeros");
                expect_same(v[i], v[j], -(v[i] * v[j]), "exact cancellation");
            }
}

/* Products and sums at and below the subnormal range (outside the proven
 * range: the fallback), and factors at the range's edges (2^-450, 2^451)
 * and c's (2^1000), on both sides, including overflow to infinity. */
static void edges(long n)
{
    for (long i = 0; i < n; i++) {
        double a = random_at((int)between(-560, -500)), b = random_at((int)between(-560, -500));
        expect_same(a, b, random_at((int)between(-1080, -1010)), "subnormal");
        expect_same(a, b, -(a * b), "subnormal cancellation");
        int e_edge[] = {-452, -451, -450, -449, 449, 450, 451, 452};
        double ea = random_at(e_edge[i % 8]), eb = random_at(e_edge[(i / 8) % 8]);
        double ec = random_at((int)between(-1074, 1023));
        expect_same(ea, eb, ec, "factor edge");
        expect_same(ea, random_at((int)between(-400, 400)),
                    random_at(e_edge[i % 8] + (int)between(-400, 400)), "factor edge, mixed");
        expect_same(random_at((int)between(400, 520)), random_at((int)between(400, 520)),
                    random_at((int)between(995, 1023)), "large c");
        expect_same(random_at(511), random_at(511), random_at(1023), "overflow");
    }
}

/* Infinities, NaNs and the largest and smallest values, all combinations. */
static void specials(void)
{
    const double v[] = {INFINITY, -INFINITY, NAN, -NAN, 0.0, -0.0, 1.0, -1.0, DBL_MAX, -DBL_MAX,
                        DBL_MIN, 0x1p-1074, -0x1p-1074, 0x1p-450, 0x1p451, 0x1p1000};
    size_t nv = sizeof v / sizeof v[0];
    for (size_t i = 0; i < nv; i++)
        for (size_t j = 0; j < nv; j++)
            for (size_t k = 0; k < nv; k++)
                expect_same(v[i], v[j], v[k], "specials");
}

/* Every bit pattern equally likely: mostly huge, tiny and non-finite. */
static void random_bits(long n)
{
    for (long i = 0; i < n; i++)
        expect_same(of_bits(next_u64()), of_bits(next_u64()), of_bits(next_u64()), "bits");
}

static double random_value(void)
{
    return random_at((int)between(-8, 8));
}

static void check_loop(bool same, const char *set, const char *loop)
{
    if (!same) {
        fprintf(stderr, "%s set: %s differs from fma()\n", set, loop);
        failures++;
    }
}

/* One set's loops against the same loops of fma(): random lengths, zeros
 * among the values (the sums skip nothing), every row count of dot_sub. */
static void test_loops(const fib_fused *f)
{
    enum { N = 67 };
    for (int trial = 0; trial < 200; trial++) {
        int64_t n = between(0, N), stride = between(1, 3);
        double x[N], y[N], want[N], w[3 * N], rows[4][N], z[4], z_want[4];
        float w32[3 * N];
        for (int j = 0; j < N; j++) {
            x[j] = j % 5 == 0 ? 0.0 : random_value();
            y[j] = want[j] = random_value();
            for (int r = 0; r < 4; r++)
                rows[r][j] = random_value();
        }
        for (int j = 0; j < 3 * N; j++) {
            w[j] = random_value();
            w32[j] = (float)random_value();
        }
        double a = random_value();
        f->axpy(y, a, x, n);
        for (int64_t j = 0; j < n; j++)
            want[j] = fma(a, x[j], want[j]);
        check_loop(memcmp(y, want, sizeof y) == 0, f->name, "axpy");

        double z0 = random_value(), d = z0, d32 = z0;
        for (int64_t j = 0; j < n; j++) {
            d = fma(w[j * stride], x[j], d);
            d32 = fma((double)w32[j * stride], x[j], d32);
        }
        check_loop(bits_of(f->dot(z0, w, stride, x, n)) == bits_of(d), f->name, "dot");
        check_loop(bits_of(f->dot_f32(z0, w32, stride, x, n)) == bits_of(d32), f->name,
                   "dot_f32");
        check_loop(bits_of(f->term(a, x[0], y[1])) == bits_of(fma(a, x[0], y[1])), f->name,
                   "term");

        int64_t n_rows = between(1, 4);
        const double *rp[4] = {rows[0], rows[1], rows[2], rows[3]};
        for (int r = 0; r < 4; r++) {
            z[r] = z_want[r] = random_value();
            for (int64_t k = 0; k < n; k++)
                z_want[r] = fma(rows[r][k], -x[k], z_want[r]);
        }
        f->dot_sub(z, rp, n_rows, x, n);
        for (int64_t r = 0; r < n_rows; r++)
            check_loop(bits_of(z[r]) == bits_of(z_want[r]), f->name, "dot_sub");

        /* gemm: m x cols, k terms, b packed in panels of 8 columns */
        int64_t m = between(1, 5), cols = between(1, 20), k = between(0, 12), panel = 8;
        int64_t n_panels = (cols + panel - 1) / panel;
        double am[5 * 12], packed[3 * 12 * 8], c[5 * 21], c_want[5 * 21];
        for (int64_t t = 0; t < m * k; t++)
            am[t] = random_value();
        memset(packed, 0, sizeof packed);
        for (int64_t p = 0; p < k; p++)
            for (int64_t j = 0; j < cols; j++)
                packed[((j / panel) * k + p) * panel + j % panel] = random_value();
        /* every element set: memcmp below reads the rows past m too */
        for (int64_t t = 0; t < 5 * 21; t++)
            c[t] = c_want[t] = random_value();
        f->gemm(m, cols, k, am, k, packed, panel, c, 21);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < cols; j++)
                for (int64_t p = 0; p < k; p++)
                    c_want[i * 21 + j] = fma(am[i * k + p],
                                             packed[((j / panel) * k + p) * panel + j % panel],
                                             c_want[i * 21 + j]);
        (void)n_panels;
        check_loop(memcmp(c, c_want, sizeof c) == 0, f->name, "gemm");
    }
}

int main(void)
{
    random_inputs(6000000);
    cancellations(1500000);
    ties(1000000);
    zeros();
    edges(200000);
    specials();
    random_bits(500000);
    printf("emulated fma: %lld inputs compared with libm's fma(), %d differ\n", compared,
           failures);
    test_loops(fib_fused_emulated());
    if (fib_fused_fma())
        test_loops(fib_fused_fma());
    else
        printf("no FMA instruction here: its loops not tested\n");
    printf("active fused set: %s\n", fib_fused_active()->name);
    return failures ? 1 : 0;
}
