/* Sorting units by one coordinate's value (grouping's sort). */
#ifndef FIB_KEYED_SORT_H
#define FIB_KEYED_SORT_H

#include <stdint.h>

typedef struct fib_keyed_unit {
    double value;
    int64_t unit;
} fib_keyed_unit;

/* a before b: by value, then by unit. -0.0 and +0.0 are equal values. */
static inline int fib_keyed_less(const fib_keyed_unit *a, const fib_keyed_unit *b)
{
    return a->value < b->value || (a->value == b->value && a->unit < b->unit);
}

/* Sorts keys[0, n) by fib_keyed_less (units distinct, values not NaN);
 * tmp has room for n. The values are not changed. */
void fib_sort_keyed(fib_keyed_unit *keys, fib_keyed_unit *tmp, int64_t n);

#endif
