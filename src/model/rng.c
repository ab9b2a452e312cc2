/* A small seeded generator (xoshiro256**, seeded by splitmix64) so that
 * symmetry breaking gives the same weights on every platform. */
#include "model/model.h"

static uint64_t splitmix64(uint64_t *x)
{
    return fib_mix64(*x += UINT64_C(0x9E3779B97F4A7C15));
}

void fib_rng_seed(fib_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t fib_rng_next(fib_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double fib_rng_uniform(fib_rng *r)
{
    return (double)(fib_rng_next(r) >> 11) * 0x1.0p-53;
}
