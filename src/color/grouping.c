/* Grouping of signatures into classes by sort-and-sweep, one coordinate at
 * a time, to a fixed point.
 *
 * A piece of units is checked coordinate after coordinate (cyclically). At
 * each coordinate the piece is either tight (max - min within the allowance
 * below, found by one vectorised min/max pass over the members' rows, no
 * sort) or sorted by that coordinate and cut at every gap between sorted
 * neighbours a, b larger than eps + tol_a + tol_b (eps = 0 for EXACT).
 * Cutting never separates two units within eps (+ rounding) of each other
 * in that coordinate. The parts start again from the next coordinate; a
 * piece is final once it has passed every coordinate without being cut.
 *
 * EXACT stops there: equal-up-to-rounding, closed under chaining.
 * ABS must also keep every coordinate's span within eps: a final piece that
 * spans more at some coordinate (units chained by small gaps) is split
 * greedily in sorted order at the first such coordinate (a part ends before
 * the first value more than eps + rounding above its lowest), and the parts
 * go round again. Units that form clusters of span <= eps, separated from
 * each other by gaps > eps in some coordinate, are therefore found exactly.
 *
 * The result depends only on the signature (ties broken by unit index), not
 * on the order pieces are processed, so pieces are handed to threads once
 * the first cuts have made enough of them. Cost: O(n log n) per sorted
 * coordinate of a piece, one pass over a final piece's rows, O(n) memory
 * beyond the signature, no pairwise comparisons. Borrowed coordinates
 * (fib_signature.n_direct) are read in place. */
#include "color/color.h"
#include "kernels/kernels.h"
#include "kernels/stored.h"
#include "kernels/parallel.h"
#include "model/keyed_sort.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A piece of units order[start, end) that has passed `clean` coordinates
 * without a cut and goes on at `coord`; `loose`: the first coordinate since
 * the last cut whose span exceeds the ABS allowance, or -1. */
typedef struct piece {
    int64_t start, end, coord, clean, loose;
} piece;

typedef struct sweep {
    const fib_signature *sig;
    const fib_kernels *kernels;
    double eps;         /* < 0: EXACT */
    double slack;       /* eps, or 0 for EXACT */
    int64_t stride;     /* materialised coordinates per row */
    int64_t total;      /* coordinates of the whole signature; sig may hold
                           only its first ones (fib_group_signatures_prefix) */
    double direct_coef[FIB_MAX_DIRECT_BLOCKS]; /* allowance per |value|, borrowed */
    int64_t *order;     /* units, piece by piece */
    fib_keyed_unit *keys;   /* sort room, indexed like order */
    fib_keyed_unit *tmp;
    int64_t *label;
} sweep;

/* Per-thread state: a stack of pieces, and the pieces that reached the
 * first coordinate a prefix signature does not hold. */
typedef struct worker {
    piece *stack;
    int64_t depth;
    piece *pending;
    int64_t n_pending;
} worker;

static inline double value_at(const sweep *s, int64_t unit, int64_t j)
{
    const fib_signature *sig = s->sig;
    if (j < sig->n_direct)
        return fib_direct_value(sig, unit, j);
    return sig->value[unit * s->stride + (j - sig->n_direct)];
}

static inline double tol_at(const sweep *s, int64_t unit, int64_t j)
{
    const fib_signature *sig = s->sig;
    if (j < sig->n_direct) {
        int64_t local = j;
        const fib_direct_block *b = fib_direct_find(sig, &local);
        return s->direct_coef[b - sig->blocks] * fabs(value_at(s, unit, j));
    }
    return sig->tol[unit * s->stride + (j - sig->n_direct)];
}

static int compare_units(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* A final class: its units get one label, and with sum_leading the rows are
 * added up into the first member's row while they are still in cache. */
static void emit(sweep *s, int64_t start, int64_t end)
{
    const fib_signature *sig = s->sig;
    int64_t *units = s->order + start, m = end - start, k = sig->sum_leading;
    if (k > 0) {
        qsort(units, (size_t)m, sizeof *units, compare_units);
        double *total = sig->value + units[0] * s->stride;
        for (int64_t j = 0; j < k; j++)
            total[j] = 0.0 + total[j]; /* as from 0.0: -0.0 becomes +0.0 */
        for (int64_t x = 1; x < m; x++) {
            const double *row = sig->value + units[x] * s->stride;
            for (int64_t j = 0; j < k; j++)
                total[j] += row[j];
        }
    }
    int64_t name = units[0];
    for (int64_t x = 0; x < m; x++)
        s->label[units[x]] = name;
}

/* A part cut from a piece at coordinate `coord` goes round every
 * coordinate again, starting there (it may still be too wide there). A
 * part whose values there are all equal is tight there: it starts past it,
 * as its tight test would have taken it (the zeros left by each cut of a
 * sparse coordinate are not read again at that coordinate). */
static void push(sweep *s, worker *w, int64_t start, int64_t end,
                 int64_t coord, bool equal)
{
    if (end - start == 1)
        emit(s, start, end);
    else if (equal)
        w->stack[w->depth++] = (piece){start, end, (coord + 1) % s->total, 1, -1};
    else
        w->stack[w->depth++] = (piece){start, end, coord, 0, -1};
}

/* The tight test over borrowed values: `len` consecutive elements from
 * element `at` of block b, for each of the m units (rows[u] * ld apart). */
static int64_t tight_direct(const sweep *s, const fib_direct_block *b, int64_t at,
                            const int64_t *rows, int64_t m, int64_t len)
{
    double coef = s->direct_coef[b - s->sig->blocks];
    return fib_tight_stored(s->kernels, b->dtype,
                            (const char *)b->data + (size_t)at * fib_dtype_size(b->dtype),
                            b->ld, rows, m, len, s->slack, coef);
}

/* The first coordinate in [j, j_end) at which piece p is not tight (some
 * coordinate spans more than the smallest allowance allows), or j_end. */
static int64_t first_untight(const sweep *s, const piece *p, int64_t j,
                             int64_t j_end)
{
    const fib_signature *sig = s->sig;
    const fib_kernels *kern = s->kernels;
    const int64_t *rows = s->order + p->start;
    int64_t m = p->end - p->start;
    /* A large piece is usually cut within a few coordinates (at the first
     * for a dense signature, at its next nonzero for a sparse one), and each
     * coordinate looked at costs a pass over all its rows: look one
     * coordinate ahead, then twice as many after each tight look. */
    int64_t block = m > 64 ? 1 : j_end - j;
    while (j < j_end) {
        int64_t len = j_end - j < block ? j_end - j : block, t;
        if (j < sig->n_direct) {
            int64_t local = j;
            const fib_direct_block *b = fib_direct_find(sig, &local);
            if (len > b->n - local)
                len = b->n - local;
            if (b->step == 1 && b->run <= 1) {
                t = tight_direct(s, b, local, rows, m, len);
            } else if (b->run > 1) { /* consecutive within a run */
                if (len > b->run - local % b->run)
                    len = b->run - local % b->run;
                t = tight_direct(s, b, fib_direct_offset(b, local), rows, m, len);
            } else /* borrowed columns: one coordinate (a row of the weights) at a time */
                for (t = 0; t < len && tight_direct(s, b, (local + t) * b->step, rows, m, 1) == 1;)
                    t++;
        } else {
            int64_t at = j - sig->n_direct;
            t = kern->tight_tol(sig->value + at, sig->tol + at, s->stride, rows, m,
                                len, s->slack);
        }
        if (t < len)
            return j + t;
        j += len;
        if (block < 16)
            block *= 2;
    }
    return j_end;
}

/* Sorts keys[0, len) by (value, unit) when most values are zero (a sparse
 * signature: one-hot counts, a head's pairs), without sorting the zeros:
 * they stay in their order if that is already ascending by unit, which it
 * is when the piece was cut off by earlier zero runs. Returns false (keys
 * unchanged) when the shortcut does not apply. */
static bool sort_sparse_keys(fib_keyed_unit *keys, fib_keyed_unit *tmp, int64_t len)
{
    int64_t n_zero = 0;
    for (int64_t x = 0; x < len; x++)
        n_zero += keys[x].value == 0.0;
    if (n_zero < 64 || 2 * n_zero < len)
        return false;
    int64_t prev = -1;
    for (int64_t x = 0; x < len; x++)
        if (keys[x].value == 0.0) {
            if (keys[x].unit < prev)
                return false;
            prev = keys[x].unit;
        }
    /* zeros to tmp[0, n_zero) in order, the others packed at the front */
    int64_t n_rest = 0, z = 0;
    for (int64_t x = 0; x < len; x++) {
        if (keys[x].value == 0.0)
            tmp[z++] = keys[x];
        else
            keys[n_rest++] = keys[x];
    }
    fib_sort_keyed(keys, tmp + n_zero, n_rest);
    int64_t n_neg = 0;
    while (n_neg < n_rest && keys[n_neg].value < 0.0)
        n_neg++;
    memmove(keys + n_neg + n_zero, keys + n_neg, (size_t)(n_rest - n_neg) * sizeof *keys);
    memcpy(keys + n_neg, tmp, (size_t)n_zero * sizeof *keys);
    return true;
}

/* Sorts piece p by coordinate j (order and keys); `gathered`: its keys
 * already hold that coordinate (untight_keys). */
static void sort_piece(sweep *s, const piece *p, int64_t j, bool gathered)
{
    fib_keyed_unit *keys = s->keys + p->start;
    int64_t len = p->end - p->start;
    for (int64_t x = 0; !gathered && x < len; x++) {
        int64_t unit = s->order[p->start + x];
        keys[x] = (fib_keyed_unit){value_at(s, unit, j), unit};
    }
    if (!sort_sparse_keys(keys, s->tmp + p->start, len))
        fib_sort_keyed(keys, s->tmp + p->start, len);
    for (int64_t x = 0; x < len; x++)
        s->order[p->start + x] = keys[x].unit;
}

/* The tight test of a large piece at one materialised coordinate j, made
 * on its sort keys: when it is not tight they are the keys its sort needs,
 * so the rows are read once instead of twice (a sparse signature is cut at
 * one coordinate after another, each read down all of a piece's rows).
 * Same test as the tight kernels: the span is compared with slack + 2 x the
 * smallest allowance, which can only fall as more rows are read. */
static bool untight_keys(sweep *s, const piece *p, int64_t j)
{
    fib_keyed_unit *keys = s->keys + p->start;
    int64_t len = p->end - p->start, at = j - s->sig->n_direct;
    const double *value = s->sig->value + at, *tol = s->sig->tol + at;
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t x = 0; x < len; x++) {
        int64_t unit = s->order[p->start + x];
        double v = value[unit * s->stride];
        keys[x] = (fib_keyed_unit){v, unit};
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    if (lo == hi)
        return false;
    double small = INFINITY;
    for (int64_t x = 0; x < len; x++) {
        double t = tol[keys[x].unit * s->stride];
        small = t < small ? t : small;
        if (!(hi - lo <= (s->slack + small) + small))
            return true;
    }
    return false;
}

/* Cuts piece p, sorted by coordinate j, at gaps wider than the allowance
 * (greedy: where a value exceeds the part's lowest by more than it).
 * Returns whether it cut; the parts are pushed. */
static bool cut_piece(sweep *s, worker *w, const piece *p, int64_t j,
                      bool greedy)
{
    const fib_keyed_unit *keys = s->keys + p->start;
    int64_t len = p->end - p->start, head = 0;
    double head_tol = tol_at(s, keys[0].unit, j);
    bool cut = false;
    for (int64_t x = 1; x < len; x++) {
        /* Equal values are never apart (the allowance is never below 0), so
         * a run of them (the zeros of a sparse coordinate) reads no
         * allowance. */
        const fib_keyed_unit *from = greedy ? &keys[head] : &keys[x - 1];
        if (keys[x].value == from->value)
            continue;
        double cur_tol = tol_at(s, keys[x].unit, j);
        double from_tol = greedy ? head_tol : tol_at(s, from->unit, j);
        if (keys[x].value - from->value > s->slack + from_tol + cur_tol) {
            push(s, w, p->start + head, p->start + x, j, keys[head].value == keys[x - 1].value);
            head = x;
            head_tol = cur_tol;
            cut = true;
        }
    }
    if (cut)
        push(s, w, p->start + head, p->end, j, keys[head].value == keys[len - 1].value);
    return cut;
}

/* Whether piece p, sorted by coordinate j, spans more than ABS allows. */
static bool too_wide(const sweep *s, const piece *p, int64_t j)
{
    const fib_keyed_unit *keys = s->keys + p->start;
    const fib_keyed_unit *first = &keys[0], *last = &keys[p->end - p->start - 1];
    return last->value - first->value >
           s->slack + tol_at(s, first->unit, j) + tol_at(s, last->unit, j);
}

/* Takes piece p until it is cut (its parts pushed) or final (emitted). */
static void process(sweep *s, worker *w, piece p)
{
    int64_t d = s->total, held = s->sig->n_coords;
    for (;;) {
        if (p.coord >= held && held < d) {
            /* the rest of its coordinates are not held: resumed later on
             * its members' whole rows, from this very state */
            w->pending[w->n_pending++] = p;
            return;
        }
        if (p.clean >= d) {
            if (p.loose < 0) {
                emit(s, p.start, p.end);
                return;
            }
            sort_piece(s, &p, p.loose, false);
            cut_piece(s, w, &p, p.loose, true);
            return;
        }
        int64_t j = p.coord;
        int64_t j_end = j + (d - p.clean) < d ? j + (d - p.clean) : d;
        bool limited = j_end > held;
        if (limited)
            j_end = held;
        /* a large piece looks at its first coordinate alone (first_untight),
         * there on the keys of its sort */
        bool alone = p.end - p.start > 64 && j < j_end && j >= s->sig->n_direct;
        bool gathered = alone && untight_keys(s, &p, j);
        int64_t t = gathered ? j : first_untight(s, &p, alone ? j + 1 : j, j_end);
        p.clean += t - j;
        if (limited && t == j_end) {
            p.coord = t;
            continue;
        }
        if (t < j_end) {
            sort_piece(s, &p, t, gathered);
            if (cut_piece(s, w, &p, t, false))
                return;
            if (s->eps >= 0 && p.loose < 0 && too_wide(s, &p, t))
                p.loose = t;
            p.clean++;
            t++;
        }
        p.coord = t % d;
    }
}

static void drain(sweep *s, worker *w)
{
    while (w->depth > 0) {
        piece p = w->stack[--w->depth];
        process(s, w, p);
    }
}

/* The sweep of sig's rows from piece `first` (all of them) over `total`
 * coordinates, of which sig holds the first sig->n_coords: pieces that
 * reach a coordinate not held go to *pending (then *order_out holds the
 * units, piece by piece), the others are labelled in out. */
static int32_t group_run(const fib_signature *sig, double eps, int64_t total, piece first,
                         fib_partition *out, fib_pending_pieces *pending)
{
    int64_t n = sig->n_units;
    int threads = fib_thread_count(sig->n_threads, n / 1024 + 1);
    /* Labels (FIB_TOL_LABEL) must be equal whatever eps: an allowance of
     * -eps/2 on both sides cancels the slack. The signature is this call's
     * to consume. */
    double label_tol = -(eps < 0 ? 0.0 : eps) / 2;
    /* Label coordinates are whole columns (every unit's allowance there is
     * FIB_TOL_LABEL), so the first row finds them: only those columns are
     * rewritten, not the whole allowance array, a serial pass
     * (tests/bench/bench_pipeline at 2.5e8 parameters). */
    int64_t stride = sig->n_coords - sig->n_direct;
    for (int64_t j = 0; n > 0 && j < stride; j++)
        if (sig->tol[j] < 0)
            for (int64_t i = 0; i < n; i++)
                ((double *)sig->tol)[i * stride + j] = label_tol;
    sweep s = {.sig = sig, .kernels = fib_kernels_active(), .eps = eps,
               .slack = eps < 0 ? 0.0 : eps,
               .stride = sig->n_coords - sig->n_direct,
               .total = total,

               .label = out->color};
    for (int32_t b = 0; b < sig->n_blocks; b++)
        s.direct_coef[b] = fib_rounding_tol(sig->blocks[b].dtype, 1, 1.0);
    s.order = fib_alloc(n, sizeof *s.order);
    s.keys = fib_alloc(n, sizeof *s.keys);
    s.tmp = fib_alloc(n, sizeof *s.tmp);
    worker *workers = fib_calloc(threads, sizeof *workers);
    bool ok = s.order && s.keys && s.tmp && workers;
    bool prefix = total > sig->n_coords;
    for (int t = 0; ok && t < threads; t++)
        ok = (workers[t].stack = fib_alloc(n, sizeof(piece))) != NULL &&
             (!prefix || (workers[t].pending = fib_alloc(n, sizeof(piece))) != NULL);
    if (ok) {
        for (int64_t i = 0; i < n; i++)
            s.order[i] = i;
        /* The first cuts on one thread, until there are pieces to share. */
        worker *w0 = &workers[0];
        if (n == 1 || total == 0)
            emit(&s, 0, n);
        else
            w0->stack[w0->depth++] = first;
        while (w0->depth > 0 && (threads == 1 || w0->depth < 16 * threads)) {
            piece p = w0->stack[--w0->depth];
            process(&s, w0, p);
        }
        /* Then the pieces left, shared out (each thread its own stack). */
        int64_t n_roots = w0->depth;
        piece *roots = n_roots > 0 ? w0->stack : NULL;
        if (roots) {
            w0->stack = fib_alloc(n, sizeof(piece));
            w0->depth = 0;
            ok = w0->stack != NULL;
        }
        if (ok && roots) {
            FIB_PRAGMA(omp parallel for num_threads(threads) schedule(dynamic, 1) if (threads > 1))
            for (int64_t r = 0; r < n_roots; r++) {
                worker *w = &workers[fib_thread_num()];
                w->stack[w->depth++] = roots[r];
                drain(&s, w);
            }
        }
        fib_free(roots);
    }
    if (ok && prefix) {
        int64_t count = 0;
        for (int t = 0; t < threads; t++)
            count += workers[t].n_pending;
        pending->pieces = fib_alloc(count > 0 ? count : 1, sizeof *pending->pieces);
        ok = pending->pieces != NULL;
        for (int t = 0; ok && t < threads; t++)
            for (int64_t x = 0; x < workers[t].n_pending; x++) {
                const piece *p = &workers[t].pending[x];
                pending->pieces[pending->n_pieces++] =
                    (fib_pending_piece){p->start, p->end, p->coord, p->clean, p->loose};
            }
        if (ok) {
            pending->order = s.order;
            s.order = NULL;
        }
    }
    for (int t = 0; workers && t < threads; t++) {
        fib_free(workers[t].stack);
        fib_free(workers[t].pending);
    }
    fib_free(workers);
    fib_free(s.order);
    fib_free(s.keys);
    fib_free(s.tmp);
    if (!ok) {
        if (pending)
            fib_pending_pieces_clear(pending);
        return fib_error(FIB_E_NOMEM, "out of memory grouping %lld units", (long long)n);
    }
    return prefix ? FIB_OK : fib_partition_canonicalize(out);
}

int32_t fib_group_signatures(const fib_signature *sig, double eps, fib_partition *out)
{
    return group_run(sig, eps, sig->n_coords, (piece){0, sig->n_units, 0, 0, -1}, out, NULL);
}

int32_t fib_group_signatures_prefix(const fib_signature *prefix, double eps, int64_t total,
                                    fib_partition *out, fib_pending_pieces *pending)
{
    *pending = (fib_pending_pieces){0};
    if (prefix->n_direct || prefix->sum_leading || total <= prefix->n_coords)
        return fib_error(FIB_E_INVALID, "a prefix signature holds %lld of %lld coordinates",
                         (long long)prefix->n_coords, (long long)total);
    return group_run(prefix, eps, total, (piece){0, prefix->n_units, 0, 0, -1}, out, pending);
}

int32_t fib_group_signatures_resume(const fib_signature *sig, double eps,
                                    const fib_pending_piece *state, fib_partition *out)
{
    piece first = {0, sig->n_units, state->coord, state->clean, state->loose};
    return group_run(sig, eps, sig->n_coords, first, out, NULL);
}

void fib_pending_pieces_clear(fib_pending_pieces *pending)
{
    fib_free(pending->pieces);
    fib_free(pending->order);
    *pending = (fib_pending_pieces){0};
}
