/* fib_sort_keyed: merge sort for small pieces, LSD radix sort on the
 * values' bits for large ones. On random values a comparison sort spends
 * most of its time on mispredicted branches (the serial part of a dense
 * layer's grouping: tests/bench/bench_kernels, cases "exact" and "random");
 * the radix passes have none. Both give the one order fib_keyed_less defines. */
#include "model/keyed_sort.h"

#include <string.h>

/* From RADIX_MIN keys up, the radix sort (its 8 histograms of 256 cost
 * about as much as sorting a few hundred keys by comparisons). */
#define RADIX_MIN 256

/* Insertion-sorted runs of 16, then bottom-up merges through tmp. */
static void merge_sort(fib_keyed_unit *keys, fib_keyed_unit *tmp, int64_t n)
{
    const int64_t run = 16;
    for (int64_t s = 0; s < n; s += run) {
        int64_t e = s + run < n ? s + run : n;
        for (int64_t x = s + 1; x < e; x++) {
            fib_keyed_unit key = keys[x];
            int64_t y = x;
            for (; y > s && fib_keyed_less(&key, &keys[y - 1]); y--)
                keys[y] = keys[y - 1];
            keys[y] = key;
        }
    }
    fib_keyed_unit *src = keys, *dst = tmp;
    for (int64_t width = run; width < n; width *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * width) {
            int64_t mid = lo + width < n ? lo + width : n;
            int64_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            int64_t a = lo, b = mid, o = lo;
            while (a < mid && b < hi)
                dst[o++] = fib_keyed_less(&src[b], &src[a]) ? src[b++] : src[a++];
            while (a < mid)
                dst[o++] = src[a++];
            while (b < hi)
                dst[o++] = src[b++];
        }
        fib_keyed_unit *swap = src;
        src = dst;
        dst = swap;
    }
    if (src != keys)
        memcpy(keys, src, (size_t)n * sizeof *keys);
}

/* The value's bits as an unsigned integer in the same order as the value
 * (negatives flipped, positives above them); -0.0 is taken as +0.0. */
static inline uint64_t ordered_bits(double v)
{
    v += 0.0; /* -0.0 + 0.0 is +0.0 */
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u >> 63 ? ~u : u | UINT64_C(0x8000000000000000);
}

static void radix_sort(fib_keyed_unit *keys, fib_keyed_unit *tmp, int64_t n)
{
    uint32_t count[8][256];
    memset(count, 0, sizeof count);
    for (int64_t x = 0; x < n; x++) {
        uint64_t u = ordered_bits(keys[x].value);
        for (int d = 0; d < 8; d++)
            count[d][(u >> (8 * d)) & 255]++;
    }
    fib_keyed_unit *src = keys, *dst = tmp;
    for (int d = 0; d < 8; d++) {
        uint32_t *c = count[d];
        uint64_t first = (ordered_bits(src[0].value) >> (8 * d)) & 255;
        if (c[first] == (uint32_t)n)
            continue; /* every key has this digit: the pass would copy */
        uint32_t at = 0;
        for (int b = 0; b < 256; b++) {
            uint32_t k = c[b];
            c[b] = at;
            at += k;
        }
        for (int64_t x = 0; x < n; x++)
            dst[c[(ordered_bits(src[x].value) >> (8 * d)) & 255]++] = src[x];
        fib_keyed_unit *swap = src;
        src = dst;
        dst = swap;
    }
    if (src != keys)
        memcpy(keys, src, (size_t)n * sizeof *keys);
    /* Equal values keep their input order (the passes are stable): put
     * each run of them in unit order. */
    for (int64_t s = 0; s < n;) {
        int64_t e = s + 1;
        while (e < n && keys[e].value == keys[s].value)
            e++;
        if (e - s > 1)
            merge_sort(keys + s, tmp, e - s);
        s = e;
    }
}

void fib_sort_keyed(fib_keyed_unit *keys, fib_keyed_unit *tmp, int64_t n)
{
    /* the radix counts are 32-bit */
    if (n < RADIX_MIN || n > (int64_t)UINT32_MAX)
        merge_sort(keys, tmp, n);
    else
        radix_sort(keys, tmp, n);
}
