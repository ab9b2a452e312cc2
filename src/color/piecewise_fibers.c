/* The fiber classes of a dense group over merged sources without holding
 * its whole signature.
 *
 * That signature is n units x (k source classes + bias) colour sums with
 * their allowances, float64: 16 n k bytes, one buffer as large as a
 * planted layer's float32 weights (n = 4096, k = 512: 33.6 MB), the peak
 * memory of colouring and compressing a planted model beyond its file. The
 * sweep (grouping.c) looks at a piece's coordinates in order, so it runs
 * in two steps here: first on the first FIB_PIECEWISE_PREFIX coordinates
 * of every unit (filled a tile of rows at a time), which settles the units
 * cut off alone there and stops every other piece at the first coordinate
 * not held; then each such piece resumes from that very state on the whole
 * rows of its members only. Pieces never meet again, so the classes are
 * exactly those of the whole signature; the memory is the prefix and the
 * largest piece's rows. The price is a second colour-sum pass over the rows
 * of the units not settled by the prefix. */
#include "color/color.h"

#include <stdlib.h>
#include <string.h>

/* Coordinates per unit held for every unit in the first step. */
#define FIB_PIECEWISE_PREFIX 16
/* Rows filled at a time in the first step, and at least in the second. */
#define FIB_PIECEWISE_TILE 64
#define FIB_PIECEWISE_BATCH 256

int64_t fib_piecewise_fibers_min_bytes = INT64_C(8) << 20;

/* The dense group's fiber signature width (k source classes and the bias)
 * when the piecewise path applies, else 0. */
static int64_t piecewise_width(const fib_graph *g, int32_t group, const fib_partition *parts,
                               double eps, int32_t mode)
{
    const fib_group *grp = &g->groups[group];
    const fib_block_ops *ops = grp->ops;
    int32_t method = mode & ~FIB_TOL_SCALED;
    /* the sweep's own modes (REL scales eps by the whole signature) */
    if (!ops || !ops->matrix || ops->recurrent || grp->n_sources != 1 ||
        (mode & FIB_TOL_SCALED) || (eps >= 0 && method != FIB_TOL_EXACT && method != FIB_TOL_ABS))
        return 0;
    const fib_dense *d = ops->matrix(g, group);
    int64_t k = parts[grp->sources[0]].n_classes;
    /* a transposed matrix's unit rows are stored columns, summed all at
     * once (blocks/dense.c) */
    if (d->transposed)
        return 0;
    /* over a discrete source the signature is the weights, borrowed */
    if (k >= d->n_in)
        return 0;
    int64_t width = k + (d->bias ? 1 : 0);
    double bytes = 16.0 * (double)grp->n_units * (double)width;
    if (width <= FIB_PIECEWISE_PREFIX || bytes < (double)fib_piecewise_fibers_min_bytes)
        return 0;
    return width;
}

/* Step one: the prefix of every unit's signature. */
static int32_t prefix_step(const fib_graph *g, int32_t group, const fib_partition *parts,
                           int64_t width, int32_t n_threads, double eps, fib_partition *next,
                           fib_pending_pieces *pending)
{
    int64_t n = g->groups[group].n_units;
    fib_signature prefix, tile;
    int32_t status = fib_signature_alloc(&prefix, n, FIB_PIECEWISE_PREFIX);
    if (status)
        return status;
    status = fib_signature_alloc(&tile, FIB_PIECEWISE_TILE, width);
    if (status) {
        fib_signature_clear(&prefix);
        return status;
    }
    tile.n_threads = n_threads;
    for (int64_t r0 = 0; r0 < n && !status; r0 += FIB_PIECEWISE_TILE) {
        int64_t rows = n - r0 < FIB_PIECEWISE_TILE ? n - r0 : FIB_PIECEWISE_TILE;
        status = fib_dense_fiber_rows(g, group, parts, &tile, 0, 0, r0, rows);
        for (int64_t r = 0; !status && r < rows; r++)
            for (int64_t j = 0; j < FIB_PIECEWISE_PREFIX; j++) {
                prefix.value[(r0 + r) * FIB_PIECEWISE_PREFIX + j] = tile.value[r * width + j];
                prefix.tol[(r0 + r) * FIB_PIECEWISE_PREFIX + j] = tile.tol[r * width + j];
            }
    }
    fib_signature_clear(&tile);
    prefix.n_threads = n_threads;
    if (!status)
        status = fib_group_signatures_prefix(&prefix, eps, width, next, pending);
    fib_signature_clear(&prefix);
    return status;
}

static int compare_units(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The merge totals made on the way, for fib_compress: one row of k_in sums
 * per class, in the order the classes are found, with the class's first
 * unit; placed by class label at the end. Room for as many classes as the
 * colouring may keep totals for (pages are touched as rows are written);
 * given up (NULL rows) when there are more. */
typedef struct totals {
    double *rows;
    int64_t *first;
    int64_t n, k_in, max_classes;
} totals;

/* Adds the class of `m` members (ascending units, their signature rows at
 * sig rows x[0..m)) as the merge adds it: rows ascending, from 0.0. */
static int32_t totals_add(totals *t, const fib_signature *sig, const int64_t *units,
                          const int64_t *x, int64_t m)
{
    if (!t->rows)
        return FIB_OK;
    if (t->n == t->max_classes) {
        fib_free(t->rows);
        fib_free(t->first);
        t->rows = NULL;
        t->first = NULL;
        return FIB_OK;
    }
    double *total = t->rows + t->n * t->k_in;
    for (int64_t j = 0; j < t->k_in; j++)
        total[j] = 0.0;
    for (int64_t a = 0; a < m; a++) {
        const double *row = sig->value + x[a] * sig->n_coords;
        for (int64_t j = 0; j < t->k_in; j++)
            total[j] += row[j];
    }
    t->first[t->n++] = units[x[0]];
    return FIB_OK;
}

/* Fills the whole rows of units[0..m) (ascending) into sig rows 0..m, runs
 * of consecutive units together. */
static int32_t fill_members(const fib_graph *g, int32_t group, const fib_partition *parts,
                            const int64_t *units, int64_t m, fib_signature *sig)
{
    int32_t status = FIB_OK;
    for (int64_t x = 0; x < m && !status;) {
        int64_t run = 1;
        while (x + run < m && units[x + run] == units[x] + run)
            run++;
        status = fib_dense_fiber_rows(g, group, parts, sig, x, 0, units[x], run);
        x += run;
    }
    return status;
}

/* Step two for one pending piece whose members' whole rows (ascending
 * units) are sig's rows: the sweep resumed, its classes labelled in next by
 * their first member and added up for the totals. */
static int32_t resume_piece(int32_t group, double eps, const fib_pending_piece *state,
                            const int64_t *members, const fib_signature *sig,
                            fib_partition *next, totals *t)
{
    int64_t m = state->end - state->start;
    fib_partition sub;
    int32_t status = fib_partition_init(&sub, m);
    if (status)
        return status;
    /* the totals read the colour sums, which the sweep leaves as they are */
    status = fib_group_signatures_resume(sig, eps, state, &sub);
    int64_t *x = status ? NULL : fib_alloc(m, sizeof *x);
    int64_t *at = status ? NULL : fib_calloc(sub.n_classes + 1, sizeof *at);
    if (!status && (!x || !at))
        status = fib_error(FIB_E_NOMEM, "group %d: out of memory grouping", (int)group);
    /* members by class (sub is canonical), ascending within each */
    for (int64_t a = 0; !status && a < m; a++)
        at[sub.color[a] + 1]++;
    for (int64_t c = 0; !status && c < sub.n_classes; c++)
        at[c + 1] += at[c];
    for (int64_t a = 0; !status && a < m; a++)
        x[at[sub.color[a]]++] = a;
    for (int64_t c = 0, from = 0; !status && c < sub.n_classes; c++) {
        int64_t to = at[c];
        for (int64_t y = from; y < to; y++)
            next->color[members[x[y]]] = members[x[from]];
        status = totals_add(t, sig, members, x + from, to - from);
        from = to;
    }
    fib_free(x);
    fib_free(at);
    fib_partition_clear(&sub);
    return status;
}

/* A pending piece by its first unit, for ordering the pieces. */
typedef struct piece_key {
    int64_t first;
    fib_pending_piece piece;
} piece_key;

static int compare_piece_keys(const void *a, const void *b)
{
    int64_t x = ((const piece_key *)a)->first, y = ((const piece_key *)b)->first;
    return (x > y) - (x < y);
}

/* Step two for every pending piece, a batch of pieces at a time: their
 * members' rows filled together (pieces ordered by their first unit, so
 * that runs of consecutive units go to the kernels as long tiles). */
static int32_t resume_pieces(const fib_graph *g, int32_t group, const fib_partition *parts,
                             double eps, fib_pending_pieces *pending, fib_signature *rows,
                             fib_partition *next, totals *t)
{
    for (int64_t p = 0; p < pending->n_pieces; p++) {
        const fib_pending_piece *piece = &pending->pieces[p];
        qsort(pending->order + piece->start, (size_t)(piece->end - piece->start),
              sizeof *pending->order, compare_units);
    }
    piece_key *keys = fib_alloc(pending->n_pieces > 0 ? pending->n_pieces : 1, sizeof *keys);
    int64_t *units = fib_alloc(rows->n_units, sizeof *units);
    int32_t status = keys && units ? FIB_OK
                                   : fib_error(FIB_E_NOMEM, "group %d: out of memory", (int)group);
    for (int64_t p = 0; !status && p < pending->n_pieces; p++)
        keys[p] = (piece_key){pending->order[pending->pieces[p].start], pending->pieces[p]};
    if (!status)
        qsort(keys, (size_t)pending->n_pieces, sizeof *keys, compare_piece_keys);
    for (int64_t p = 0; !status && p < pending->n_pieces; p++)
        pending->pieces[p] = keys[p].piece;
    fib_free(keys);
    for (int64_t p0 = 0; p0 < pending->n_pieces && !status;) {
        int64_t p1 = p0, count = 0;
        while (p1 < pending->n_pieces &&
               count + (pending->pieces[p1].end - pending->pieces[p1].start) <= rows->n_units) {
            const fib_pending_piece *piece = &pending->pieces[p1++];
            for (int64_t x = piece->start; x < piece->end; x++)
                units[count++] = pending->order[x];
        }
        status = fill_members(g, group, parts, units, count, rows);
        for (int64_t p = p0, off = 0; p < p1 && !status; p++) {
            const fib_pending_piece *piece = &pending->pieces[p];
            int64_t m = piece->end - piece->start;
            fib_signature view = *rows;
            view.n_units = m;
            view.scratch = NULL;
            view.value = rows->value + off * rows->n_coords;
            view.tol = rows->tol + off * rows->n_coords;
            status = resume_piece(group, eps, piece, units + off, &view, next, t);
            off += m;
        }
        p0 = p1;
    }
    fib_free(units);
    return status;
}

/* The units the prefix settled alone: their totals are their rows. */
static int32_t singleton_totals(const fib_graph *g, int32_t group, const fib_partition *parts,
                                const fib_pending_pieces *pending, fib_signature *rows,
                                totals *t)
{
    int64_t n = g->groups[group].n_units, cap = rows->n_units;
    bool *held = fib_calloc(n, sizeof *held);
    int64_t *units = fib_alloc(cap, sizeof *units);
    int32_t status = held && units ? FIB_OK
                                   : fib_error(FIB_E_NOMEM, "group %d: out of memory", (int)group);
    for (int64_t p = 0; !status && p < pending->n_pieces; p++)
        for (int64_t x = pending->pieces[p].start; x < pending->pieces[p].end; x++)
            held[pending->order[x]] = true;
    for (int64_t i = 0; !status && i < n && t->rows;) {
        int64_t m = 0;
        for (; i < n && m < cap; i++)
            if (!held[i])
                units[m++] = i;
        status = fill_members(g, group, parts, units, m, rows);
        for (int64_t x = 0; !status && x < m; x++)
            status = totals_add(t, rows, units, &x, 1);
    }
    fib_free(held);
    fib_free(units);
    return status;
}

/* The totals put in class-label order in place (one row of room), then
 * handed to the colouring (t->rows is taken over). */
static int32_t keep_totals(fib_coloring *keep, const fib_graph *g, int32_t group,
                           const fib_partition *parts, totals *t)
{
    const fib_partition *out = &parts[group];
    if (!t->rows || t->n != out->n_classes)
        return FIB_OK;
    int64_t k = t->k_in;
    double *spare = fib_alloc(k > 0 ? k : 1, sizeof *spare);
    if (!spare)
        return fib_error(FIB_E_NOMEM, "group %d: out of memory for class sums", (int)group);
    /* row c belongs at label out->color[first[c]]: follow each cycle */
    for (int64_t c = 0; c < t->n; c++)
        t->first[c] = out->color[t->first[c]];
    for (int64_t c = 0; c < t->n; c++)
        while (t->first[c] != c) {
            int64_t to = t->first[c];
            memcpy(spare, t->rows + to * k, (size_t)k * sizeof *spare);
            memcpy(t->rows + to * k, t->rows + c * k, (size_t)k * sizeof *spare);
            memcpy(t->rows + c * k, spare, (size_t)k * sizeof *spare);
            t->first[c] = t->first[to];
            t->first[to] = to;
        }
    fib_free(spare);
    double *sums = t->rows;
    t->rows = NULL;
    return fib_merge_totals_adopt(keep, g, group, parts, sums);
}

int32_t fib_piecewise_fibers(const fib_graph *g, int32_t group, const fib_partition *parts,
                             int32_t mode, double eps, int32_t n_threads, fib_coloring *keep,
                             fib_partition *next, bool *done)
{
    *done = false;
    int64_t width = piecewise_width(g, group, parts, eps, mode);
    if (width == 0)
        return FIB_OK;
    /* as fib_group_signatures_mode passes it */
    if (eps < 0 || (mode & ~FIB_TOL_SCALED) == FIB_TOL_EXACT)
        eps = -1.0;
    int64_t n = g->groups[group].n_units;
    int64_t k_in = parts[g->groups[group].sources[0]].n_classes;
    totals t = {.k_in = k_in};
    double budget = fib_merge_totals_budget(keep, g, group);
    t.max_classes = (int64_t)(budget / (8.0 * (double)k_in));
    if (t.max_classes > n)
        t.max_classes = n;
    if (t.max_classes > 0) {
        t.rows = fib_alloc(t.max_classes * k_in, sizeof *t.rows);
        t.first = fib_alloc(t.max_classes, sizeof *t.first);
        if (!t.rows || !t.first) {
            fib_free(t.rows);
            fib_free(t.first);
            return fib_error(FIB_E_NOMEM, "group %d: out of memory for class sums", (int)group);
        }
    }
    int32_t status = fib_partition_init(next, n);
    fib_pending_pieces pending = {0};
    if (!status)
        status = prefix_step(g, group, parts, width, n_threads, eps, next, &pending);
    /* rows for a batch of pieces: the largest piece, or a few tiles */
    int64_t largest = FIB_PIECEWISE_BATCH;
    for (int64_t p = 0; !status && p < pending.n_pieces; p++) {
        int64_t m = pending.pieces[p].end - pending.pieces[p].start;
        largest = m > largest ? m : largest;
    }
    fib_signature rows = {0};
    if (!status) {
        status = fib_signature_alloc(&rows, largest, width);
        rows.n_threads = n_threads;
    }
    if (!status && t.rows)
        status = singleton_totals(g, group, parts, &pending, &rows, &t);
    if (!status)
        status = resume_pieces(g, group, parts, eps, &pending, &rows, next, &t);
    fib_signature_clear(&rows);
    fib_pending_pieces_clear(&pending);
    if (!status)
        status = fib_partition_canonicalize(next);
    if (!status) {
        /* the totals' partitions: this group's new classes and its source's */
        fib_partition *with = (fib_partition *)parts;
        fib_partition before = with[group];
        with[group] = *next;
        status = keep_totals(keep, g, group, with, &t);
        with[group] = before;
    }
    fib_free(t.rows);
    fib_free(t.first);
    if (status) {
        fib_partition_clear(next);
        return status;
    }
    *done = true;
    return FIB_OK;
}
