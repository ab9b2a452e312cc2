/* Grouping of signatures into classes by sort-and-sweep, one coordinate at
 * a time: a piece of units is sorted by its next coordinate and cut where
 * values stop agreeing; the pieces are refined by the following coordinate.
 * Deterministic (ties broken by unit index), O(n log n) per coordinate for
 * the units still sharing a piece, no pairwise comparisons, O(n) memory
 * beyond the signature.
 *
 * Exact mode (eps < 0) cuts between neighbours whose difference exceeds
 * their rounding allowances: equal-up-to-rounding is then an equivalence on
 * real data. ABS mode cuts when a value is more than eps (plus rounding)
 * above the first value of its piece, so every coordinate spans at most eps
 * inside a class. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct keyed_unit {
    double value;
    int64_t unit;
} keyed_unit;

static int cmp_keyed_unit(const void *x, const void *y)
{
    const keyed_unit *a = x, *b = y;
    if (a->value < b->value)
        return -1;
    if (a->value > b->value)
        return 1;
    return (a->unit > b->unit) - (a->unit < b->unit);
}

typedef struct piece {
    int64_t start, end, coord;
} piece;

typedef struct sweep {
    const fib_signature *sig;
    double eps;
    int64_t *order;
    keyed_unit *keys;
    piece *stack;
    int64_t depth;
    int64_t *label;
    int64_t n_labels;
} sweep;

static double value_at(const sweep *s, int64_t unit, int64_t coord)
{
    return s->sig->value[unit * s->sig->n_coords + coord];
}

static double tol_at(const sweep *s, int64_t unit, int64_t coord)
{
    return s->sig->tol[unit * s->sig->n_coords + coord];
}

static void emit(sweep *s, int64_t start, int64_t end)
{
    for (int64_t x = start; x < end; x++)
        s->label[s->order[x]] = s->n_labels;
    s->n_labels++;
}

static void push(sweep *s, int64_t start, int64_t end, int64_t coord)
{
    if (end - start == 1 || coord == s->sig->n_coords)
        emit(s, start, end);
    else
        s->stack[s->depth++] = (piece){start, end, coord};
}

static bool all_equal(const sweep *s, const piece *p)
{
    double first = value_at(s, s->order[p->start], p->coord);
    for (int64_t x = p->start + 1; x < p->end; x++)
        if (value_at(s, s->order[x], p->coord) != first)
            return false;
    return true;
}

static bool same_piece(const sweep *s, int64_t head, int64_t prev,
                       int64_t cur, int64_t coord)
{
    if (s->eps < 0) {
        double gap = s->keys[cur].value - s->keys[prev].value;
        return gap <= tol_at(s, s->keys[prev].unit, coord) +
                          tol_at(s, s->keys[cur].unit, coord);
    }
    double span = s->keys[cur].value - s->keys[head].value;
    return span <= s->eps + tol_at(s, s->keys[head].unit, coord) +
                       tol_at(s, s->keys[cur].unit, coord);
}

static void split(sweep *s, piece p)
{
    if (all_equal(s, &p)) {
        push(s, p.start, p.end, p.coord + 1);
        return;
    }
    int64_t len = p.end - p.start;
    for (int64_t x = 0; x < len; x++) {
        int64_t unit = s->order[p.start + x];
        s->keys[x] = (keyed_unit){value_at(s, unit, p.coord), unit};
    }
    qsort(s->keys, (size_t)len, sizeof *s->keys, cmp_keyed_unit);
    for (int64_t x = 0; x < len; x++)
        s->order[p.start + x] = s->keys[x].unit;
    int64_t head = 0;
    for (int64_t x = 1; x <= len; x++) {
        if (x < len && same_piece(s, head, x - 1, x, p.coord))
            continue;
        push(s, p.start + head, p.start + x, p.coord + 1);
        head = x;
    }
}

int32_t fib_group_signatures(const fib_signature *sig, double eps,
                             fib_partition *out)
{
    int64_t n = sig->n_units;
    sweep s = {.sig = sig, .eps = eps, .label = out->color};
    s.order = fib_alloc(n, sizeof *s.order);
    s.keys = fib_alloc(n, sizeof *s.keys);
    s.stack = fib_alloc(n, sizeof *s.stack);
    if (!s.order || !s.keys || !s.stack) {
        fib_free(s.order);
        fib_free(s.keys);
        fib_free(s.stack);
        return fib_error(FIB_E_NOMEM, "out of memory grouping %lld units", (long long)n);
    }
    for (int64_t i = 0; i < n; i++)
        s.order[i] = i;
    push(&s, 0, n, 0);
    while (s.depth > 0) {
        piece p = s.stack[--s.depth];
        split(&s, p);
    }
    fib_free(s.order);
    fib_free(s.keys);
    fib_free(s.stack);
    return fib_partition_canonicalize(out);
}
