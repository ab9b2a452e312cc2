/* Constants held per unit (a class token, a position embedding): a table
 * of rows x n_units values that is part of every unit's fiber signature, so
 * units merge only when theirs are equal; a base holds each class's mean
 * (equal inside an exact class) and a lift gives every member its class's.
 * And the opfibers of blocks that pass each source unit's error on
 * unchanged (copies, shifts): a count of readers per opfiber class. */
#include "blocks/blocks.h"
#include "model/gather.h"

#include <math.h>
#include <string.h>

double fib_unit_constant(const fib_unit_constants *t, int64_t n_units, int64_t row,
                         int64_t unit)
{
    return fib_load(t->dtype, t->values, row * n_units + unit);
}

void fib_unit_constants_free(fib_unit_constants *t)
{
    fib_free(t->values);
    t->values = NULL;
}

int32_t fib_unit_constants_copy(fib_unit_constants *t, int32_t dtype, int64_t rows,
                                int64_t n_units, const void *values, const char *fn,
                                int32_t group)
{
    int64_t count = rows * n_units;
    for (int64_t x = 0; x < count; x++)
        if (!isfinite(fib_load(dtype, values, x)))
            return fib_error(FIB_E_NONFINITE, "%s: group %d: value [%lld, %lld] (row, unit) "
                             "is not finite", fn, (int)group, (long long)(x / n_units),
                             (long long)(x % n_units));
    *t = (fib_unit_constants){.dtype = count > 0 ? dtype : FIB_DTYPE_F64, .rows = rows};
    if (count == 0)
        return FIB_OK;
    t->values = fib_alloc(count, fib_dtype_size(dtype));
    if (!t->values)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    memcpy(t->values, values, (size_t)count * fib_dtype_size(dtype));
    return FIB_OK;
}

int64_t fib_unit_constants_fiber_width(const fib_unit_constants *t)
{
    return 1 + t->rows;
}

void fib_unit_constants_fiber_fill(const fib_unit_constants *t, const fib_partition *src,
                                   const int64_t *reads, int64_t n_units, fib_signature *sig,
                                   int64_t offset)
{
    for (int64_t i = 0; i < n_units; i++) {
        fib_signature_put_label(sig, i, offset, src->color[fib_gather_at(reads, i)]);
        for (int64_t r = 0; r < t->rows; r++)
            fib_signature_put_weight(sig, i, offset + 1 + r, t->dtype,
                                     fib_unit_constant(t, n_units, r, i));
    }
}

int32_t fib_unit_constants_merge(const fib_unit_constants *t, const fib_partition *own,
                                 fib_unit_constants *out)
{
    int64_t k = own->n_classes, n = own->n_units;
    *out = (fib_unit_constants){.dtype = FIB_DTYPE_F64, .rows = t->rows};
    if (t->rows == 0)
        return FIB_OK;
    double *mean = fib_calloc(t->rows * k, sizeof *mean);
    int64_t *sizes = fib_alloc(k, sizeof *sizes);
    if (!mean || !sizes) {
        fib_free(mean);
        fib_free(sizes);
        return fib_error(FIB_E_NOMEM, "out of memory merging constants");
    }
    fib_partition_class_sizes(own, sizes);
    for (int64_t r = 0; r < t->rows; r++)
        for (int64_t i = 0; i < n; i++)
            mean[r * k + own->color[i]] +=
                fib_unit_constant(t, n, r, i) / (double)sizes[own->color[i]];
    fib_free(sizes);
    out->values = mean;
    return FIB_OK;
}

int32_t fib_unit_constants_lift(const fib_unit_constants *t, int64_t n_classes,
                                const fib_partition *own, fib_unit_constants *out)
{
    int64_t n = own->n_units;
    *out = (fib_unit_constants){.dtype = FIB_DTYPE_F64, .rows = t->rows};
    if (t->rows == 0)
        return FIB_OK;
    double *full = fib_alloc(t->rows * n, sizeof *full);
    if (!full)
        return fib_error(FIB_E_NOMEM, "out of memory lifting constants");
    for (int64_t r = 0; r < t->rows; r++)
        for (int64_t i = 0; i < n; i++)
            full[r * n + i] = fib_unit_constant(t, n_classes, r, own->color[i]);
    out->values = full;
    return FIB_OK;
}

int32_t fib_copy_opfiber_fill(const fib_graph *g, int32_t group, const int64_t *reads,
                              const fib_partition *parts, fib_signature *sig, int64_t offset)
{
    int64_t k = parts[group].n_classes;
    for (int64_t j = 0; j < sig->n_units; j++) {
        memset(sig->value + j * sig->n_coords + offset, 0, (size_t)k * sizeof(double));
        memset(sig->tol + j * sig->n_coords + offset, 0, (size_t)k * sizeof(double));
    }
    for (int64_t i = 0; i < g->groups[group].n_units; i++)
        sig->value[fib_gather_at(reads, i) * sig->n_coords + offset + parts[group].color[i]] += 1.0;
    return FIB_OK;
}

const fib_unit_constants_block *fib_unit_constants_block_of(const fib_graph *g, int32_t group)
{
    return (const fib_unit_constants_block *)g->groups[group].block;
}

void fib_unit_constants_block_free(void *block)
{
    fib_unit_constants_block *b = block;
    if (!b)
        return;
    fib_unit_constants_free(&b->values);
    fib_free(b->reads);
    fib_free(b);
}

int32_t fib_unit_constants_block_push(fib_graph *g, fib_group grp, fib_unit_constants values,
                                      int64_t *reads, fib_unit_constants_push_fn push,
                                      int32_t *group_out)
{
    fib_unit_constants_block *b = fib_calloc(1, sizeof *b);
    if (!b) {
        fib_unit_constants_free(&values);
        fib_free(reads);
        return fib_error(FIB_E_NOMEM, "out of memory adding a %s group", grp.ops->name);
    }
    *b = (fib_unit_constants_block){.values = values, .reads = reads, .push = push};
    grp.block = b;
    int32_t status = fib_graph_push_group(g, &grp, group_out);
    if (status)
        fib_unit_constants_block_free(b);
    return status;
}

int64_t fib_unit_constants_block_fiber_width(const fib_graph *g, int32_t group,
                                             const fib_partition *parts)
{
    (void)parts;
    return fib_unit_constants_fiber_width(&fib_unit_constants_block_of(g, group)->values);
}

int32_t fib_unit_constants_block_fiber_fill(const fib_graph *g, int32_t group,
                                            const fib_partition *parts, fib_signature *sig,
                                            int64_t offset)
{
    const fib_unit_constants_block *b = fib_unit_constants_block_of(g, group);
    fib_unit_constants_fiber_fill(&b->values, &parts[g->groups[group].sources[0]], b->reads,
                                  g->groups[group].n_units, sig, offset);
    return FIB_OK;
}

bool fib_unit_constants_block_fiber_view(const fib_graph *g, int32_t group,
                                         const fib_partition *parts, fib_scratch *scratch,
                                         fib_signature *sig)
{
    const fib_unit_constants_block *b = fib_unit_constants_block_of(g, group);
    const fib_unit_constants *t = &b->values;
    int64_t n = g->groups[group].n_units;
    /* a wide table (a position embedding) would be a rows x units copy */
    if (t->rows == 0 || fib_signature_alloc_in(sig, n, 1, scratch))
        return false;
    const fib_partition *src = &parts[g->groups[group].sources[0]];
    for (int64_t i = 0; i < n; i++)
        fib_signature_put_label(sig, i, 0, src->color[fib_gather_at(b->reads, i)]);
    /* unit i's row r is values[r * n + i] */
    sig->n_coords += t->rows;
    sig->n_direct = t->rows;
    sig->n_blocks = 1;
    sig->blocks[0] = (fib_direct_block){t->values, t->dtype, 1, n, t->rows, 0};
    return true;
}

/* A source unit receives, unchanged, the errors of the units that read it
 * (a prepend's constants receive none). */
int32_t fib_unit_constants_block_opfiber_fill(const fib_graph *g, int32_t group,
                                              int32_t source_index, const fib_partition *parts,
                                              const fib_partition *fibers, fib_signature *sig,
                                              int64_t offset)
{
    (void)source_index, (void)fibers;
    return fib_copy_opfiber_fill(g, group, fib_unit_constants_block_of(g, group)->reads, parts,
                                 sig, offset);
}

/* The exact form of the opfiber sums a copy passes back: a source unit
 * whose readers are all of one opfiber class has one nonzero column, their
 * count, given as the pair (class, count) ((-1, 0) when nothing reads it)
 * instead of a row over every class (units x classes, nearly all zeros).
 * Counts are exact, so two rows are equal iff their pairs are: under
 * FIB_TOL_EXACT the classes of the full form, when the copy is the
 * source's only reader (nothing else to chain its units). Width 0 (the
 * full form) otherwise, or when a unit's readers are of several classes.
 * column, count: per source unit, or NULL for the width alone. */
static int64_t copy_exact_pairs(const fib_graph *g, int32_t group, const fib_partition *parts,
                                int64_t *column, int64_t *count)
{
    const fib_group *grp = &g->groups[group];
    const fib_group *src = &g->groups[grp->sources[0]];
    if (src->n_consumers != 1 || (src->ops && src->ops->recurrent))
        return 0;
    const int64_t *reads = fib_unit_constants_block_of(g, group)->reads;
    int64_t n_src = src->n_units;
    int64_t *own_column = column ? NULL : fib_alloc(n_src > 0 ? n_src : 1, sizeof *own_column);
    int64_t *col = column ? column : own_column;
    if (!col)
        return fib_error(FIB_E_NOMEM, "group %d: out of memory for opfiber sums", (int)group);
    for (int64_t s = 0; s < n_src; s++) {
        col[s] = -1;
        if (count)
            count[s] = 0;
    }
    int64_t width = 2;
    for (int64_t i = 0; i < grp->n_units && width; i++) {
        int64_t s = fib_gather_at(reads, i), c = parts[group].color[i];
        if (col[s] >= 0 && col[s] != c)
            width = 0;
        col[s] = c;
        if (count)
            count[s]++;
    }
    fib_free(own_column);
    return width;
}

int64_t fib_unit_constants_block_opfiber_exact_width(const fib_graph *g, int32_t group,
                                                     int32_t source_index,
                                                     const fib_partition *parts,
                                                     const fib_partition *fibers)
{
    (void)source_index, (void)fibers;
    return copy_exact_pairs(g, group, parts, NULL, NULL);
}

int32_t fib_unit_constants_block_opfiber_exact_fill(const fib_graph *g, int32_t group,
                                                    int32_t source_index,
                                                    const fib_partition *parts,
                                                    const fib_partition *fibers,
                                                    fib_signature *sig, int64_t offset)
{
    (void)source_index, (void)fibers;
    int64_t n = sig->n_units;
    int64_t *column = fib_alloc(n > 0 ? n : 1, sizeof *column);
    int64_t *count = fib_alloc(n > 0 ? n : 1, sizeof *count);
    if (!column || !count) {
        fib_free(column);
        fib_free(count);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory for opfiber sums", (int)group);
    }
    /* one pair per unit, as the width found */
    copy_exact_pairs(g, group, parts, column, count);
    for (int64_t s = 0; s < n; s++) {
        fib_signature_put_label(sig, s, offset, count[s] > 0 ? column[s] : -1);
        sig->value[s * sig->n_coords + offset + 1] = (double)count[s];
        sig->tol[s * sig->n_coords + offset + 1] = 0.0;
    }
    fib_free(column);
    fib_free(count);
    return FIB_OK;
}

/* The block of a base (base unit c: its class's constants and the source
 * class of its first member) or of a lift (every unit its class's), made in
 * `out` through the kind's push. */
static int32_t remake(const fib_graph *g, int32_t group, const fib_partition *parts,
                      fib_graph *out, const int32_t *out_ids, bool lift)
{
    const fib_unit_constants_block *b = fib_unit_constants_block_of(g, group);
    int32_t source = g->groups[group].sources[0];
    int64_t *reads = NULL;
    fib_unit_constants values;
    int32_t status = lift ? fib_gather_for_lift(parts, group, source, b->reads, &reads)
                          : fib_gather_for_base(parts, group, source, b->reads, &reads);
    if (status)
        return status;
    status = lift ? fib_unit_constants_lift(&b->values, g->groups[group].n_units, &parts[group],
                                            &values)
                  : fib_unit_constants_merge(&b->values, &parts[group], &values);
    if (status) {
        fib_free(reads);
        return status;
    }
    int64_t n_units = lift ? parts[group].n_units : parts[group].n_classes;
    int32_t id;
    return b->push(out, out_ids[source], n_units, values, reads, &id);
}

int32_t fib_unit_constants_block_compress(const fib_graph *g, int32_t group,
                                          const fib_partition *parts, fib_graph *base,
                                          const int32_t *base_ids)
{
    return remake(g, group, parts, base, base_ids, false);
}

int32_t fib_unit_constants_block_lift(const fib_graph *base, int32_t group,
                                      const fib_partition *parts, fib_graph *full,
                                      const int32_t *full_ids)
{
    return remake(base, group, parts, full, full_ids, true);
}
