/* fma(a, b, c) without the FMA instruction, exactly (Boldo and Melquiond,
 * "Emulation of FMA and correctly rounded sums: proved algorithms using
 * rounding to odd", IEEE Trans. Computers 57(4), 2008), the fused loops
 * made with it, and the choice between those and the instruction's.
 *
 * The algorithm: (ph, pl) = a * b exactly (Dekker's product of Veltkamp's
 * halves); (th, tl) = c + ph exactly (TwoSum); v = tl + pl rounded to odd;
 * the result is th + v rounded to nearest. Rounding to odd keeps the
 * information that the last rounding needs (whether the dropped part was
 * zero), so no double rounding. It is proven when nothing overflows and
 * the product's low part does not underflow: here both factors lie in
 * [2^-450, 2^451) and |c| < 2^1000, so a * b and its parts are multiples of
 * 2^-1004 (normal) and every sum stays below 2^1002. A zero factor makes
 * a * b + c exact with one rounding. Everything else (subnormal, huge or
 * non-finite operands) goes to libm's fma(): rare, correct, slow. */
#include "kernels/cpu.h"
#include "kernels/fused.h"

#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static inline uint64_t bits_of(double x)
{
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline double of_bits(uint64_t u)
{
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* Exponent field in [1023 - 450, 1023 + 450]: 2^-450 <= |x| < 2^451. */
static inline bool factor_in_range(uint64_t bits)
{
    return ((bits >> 52 & 0x7ff) - (1023 - 450)) <= 900;
}

/* s + e == x + y exactly, s = x + y rounded (no overflow). */
static inline double two_sum(double x, double y, double *e)
{
    double s = x + y, yy = s - x;
    *e = (x - (s - yy)) + (y - yy);
    return s;
}

/* x + y rounded to odd: rounded to nearest, and when that was inexact and
 * the result's last bit is even, its odd neighbour on the side of the
 * exact sum (the result is not zero then: a sum that rounds to zero is
 * exact). */
static inline double add_round_odd(double x, double y)
{
    double e, s = two_sum(x, y, &e);
    uint64_t u = bits_of(s);
    if (e != 0 && (u & 1) == 0)
        u += ((u ^ bits_of(e)) >> 63) ? (uint64_t)-1 : 1; /* toward e */
    return of_bits(u);
}

/* Veltkamp: x = hi + lo, each with at most 26 significant bits. */
static inline double split_high(double x)
{
    double t = 134217729.0 * x; /* 2^27 + 1 */
    return t - (t - x);
}

static double fma_outside_range(double a, double b, double c)
{
    if ((a == 0 || b == 0) && isfinite(a) && isfinite(b))
        return a * b + c; /* a signed zero plus c: one rounding */
    return fma(a, b, c);
}

static inline double fma_emulated(double a, double b, double c)
{
#if FLT_EVAL_METHOD != 0
    /* wider evaluation (x87) breaks the error terms */
    return fma(a, b, c);
#else
    if (!(factor_in_range(bits_of(a)) && factor_in_range(bits_of(b)) &&
          (bits_of(c) >> 52 & 0x7ff) < 1023 + 1000))
        return fma_outside_range(a, b, c);
    double ah = split_high(a), al = a - ah, bh = split_high(b), bl = b - bh;
    double ph = a * b;
    double pl = ((ah * bh - ph) + ah * bl + al * bh) + al * bl;
    double tl, th = two_sum(c, ph, &tl);
    return th + add_round_odd(tl, pl);
#endif
}

double fib_fma_emulated(double a, double b, double c)
{
    return fma_emulated(a, b, c);
}

#define FUSED_TERM(a, b, c) fma_emulated(a, b, c)
#define FUSED_SUFFIX emulated
#define FUSED_NAME "emulated"
#define FUSED_TABLE fib_fused_emulated
#include "kernels/fused_loops.h"

const fib_fused *fib_fused_fma(void)
{
    const fib_fused *t = fib_fused_fma_table();
    return t && fib_cpu_has_fma() ? t : NULL;
}

static const fib_fused *choose(void)
{
    const char *env = getenv("FIBRATION_NO_FMA");
    bool forbidden = env && *env && strcmp(env, "0") != 0;
    const fib_fused *t = forbidden ? NULL : fib_fused_fma();
    return t ? t : fib_fused_emulated();
}

static _Atomic(const fib_fused *) active_fused;

/* As fib_kernels_active: racing first calls compute the same answer. */
const fib_fused *fib_fused_active(void)
{
    const fib_fused *t = atomic_load_explicit(&active_fused, memory_order_acquire);
    if (!t) {
        t = choose();
        atomic_store_explicit(&active_fused, t, memory_order_release);
    }
    return t;
}
