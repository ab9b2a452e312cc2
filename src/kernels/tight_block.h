/* The tight test of grouping (kernels.h, fib_tight_*_fn) in its scalar
 * form, a block of coordinates at a time so that each member's row is read
 * sequentially: the scalar float32 / float64 kernels, the form with
 * per-coordinate allowances and the half-precision test (stored.c) differ
 * only in how a value is read and where its allowance comes from. The
 * extremes do not depend on the order the members are met in, so every
 * form gives the same answer on the same values. */
#ifndef FIB_KERNELS_TIGHT_BLOCK_H
#define FIB_KERNELS_TIGHT_BLOCK_H

#include <math.h>
#include <stdint.h>

/* Coordinates per block. */
#define FIB_TIGHT_BLOCK 16

typedef struct fib_tight_block {
    int64_t n;                     /* coordinates in the block */
    double lo[FIB_TIGHT_BLOCK];    /* each one's smallest value so far */
    double hi[FIB_TIGHT_BLOCK];    /* its largest value */
    double small[FIB_TIGHT_BLOCK]; /* its smallest allowance */
} fib_tight_block;

/* Starts the block of coordinates [j, min(j + FIB_TIGHT_BLOCK, len)). */
static inline void fib_tight_block_start(fib_tight_block *t, int64_t j, int64_t len)
{
    t->n = len - j < FIB_TIGHT_BLOCK ? len - j : FIB_TIGHT_BLOCK;
    for (int64_t q = 0; q < t->n; q++) {
        t->lo[q] = t->small[q] = INFINITY;
        t->hi[q] = -INFINITY;
    }
}

/* One more member's value v at coordinate q of the block. */
static inline void fib_tight_block_value(fib_tight_block *t, int64_t q, double v)
{
    t->lo[q] = v < t->lo[q] ? v : t->lo[q];
    t->hi[q] = v > t->hi[q] ? v : t->hi[q];
}

/* One more member's allowance a at coordinate q of the block. */
static inline void fib_tight_block_allowance(fib_tight_block *t, int64_t q, double a)
{
    t->small[q] = a < t->small[q] ? a : t->small[q];
}

/* One more member's weight v at coordinate q: its value, and its magnitude
 * as its allowance (the form of borrowed weights, scaled by coef below). */
static inline void fib_tight_block_weight(fib_tight_block *t, int64_t q, double v)
{
    fib_tight_block_value(t, q, v);
    fib_tight_block_allowance(t, q, fabs(v));
}

/* The first coordinate of the block that is not tight, its allowance t
 * being coef times the smallest one met (coef 1: the allowance itself, as
 * 1 * x is x exactly); -1 when every one is tight. */
static inline int64_t fib_tight_block_first_loose(const fib_tight_block *t, double slack,
                                                  double coef)
{
    for (int64_t q = 0; q < t->n; q++) {
        double a = coef * t->small[q];
        if (!(t->hi[q] - t->lo[q] <= (slack + a) + a))
            return q;
    }
    return -1;
}

#endif
