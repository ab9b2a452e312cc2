/* Signatures: the numbers that must agree for two units to share a class.
 * Fibers: the colour sums of each block feeding the group. Opfibers: the
 * flavour, then the column sums of each block reading the group. */
#include "color/color.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

int32_t fib_signature_alloc_in(fib_signature *sig, int64_t n_units,
                               int64_t n_coords, fib_scratch *scratch)
{
    int64_t cells, both;
    *sig = (fib_signature){.n_units = n_units, .n_coords = n_coords};
    if (!fib_mul_i64(n_units, n_coords > 0 ? n_coords : 1, &cells) ||
        !fib_mul_i64(cells, 2, &both))
        return fib_error(FIB_E_OVERFLOW, "signature of %lld x %lld overflows",
                         (long long)n_units, (long long)n_coords);
    if (scratch && !scratch->in_use) {
        if (scratch->cells < cells) {
            fib_scratch_clear(scratch);
            scratch->block = fib_alloc(both, sizeof(double));
            if (!scratch->block)
                return fib_error(FIB_E_NOMEM,
                                 "out of memory for a %lld x %lld signature",
                                 (long long)n_units, (long long)n_coords);
            scratch->cells = cells;
        }
        scratch->in_use = true;
        sig->scratch = scratch;
        sig->value = scratch->block;
        sig->tol = scratch->block + cells;
        return FIB_OK;
    }
    sig->value = fib_alloc(cells, sizeof(double));
    sig->tol = fib_alloc(cells, sizeof(double));
    if (!sig->value || !sig->tol) {
        fib_signature_clear(sig);
        return fib_error(FIB_E_NOMEM, "out of memory for a %lld x %lld signature",
                         (long long)n_units, (long long)n_coords);
    }
    return FIB_OK;
}

int32_t fib_signature_alloc(fib_signature *sig, int64_t n_units,
                            int64_t n_coords)
{
    return fib_signature_alloc_in(sig, n_units, n_coords, NULL);
}

void fib_signature_clear(fib_signature *sig)
{
    if (sig->scratch) {
        sig->scratch->in_use = false; /* the memory stays for the next one */
    } else {
        fib_free(sig->value);
        fib_free(sig->tol);
    }
    sig->value = sig->tol = NULL;
    sig->scratch = NULL;
}

void fib_scratch_clear(fib_scratch *scratch)
{
    fib_free(scratch->block);
    scratch->block = NULL;
    scratch->cells = 0;
    scratch->in_use = false;
}

double fib_rounding_tol(int32_t dtype, int64_t terms, double abs_sum)
{
    /* Each stored weight may carry half an ulp of its dtype from however it
     * was computed (a lift splits a sum); the double accumulation adds one
     * 2^-53 per term. The factor 4 leaves room for a second rounding. */
    const double u = dtype == FIB_DTYPE_F32 ? 0x1.0p-24 : 0x1.0p-53;
    return (4.0 * u + (double)(terms + 1) * 0x1.0p-53) * abs_sum;
}

/* A dense group over a discrete source (every column its own class, in
 * column order): its colour sums are its weights, so the signature borrows
 * the rows and only the bias coordinate is materialised. */
static bool dense_view(const fib_graph *g, int32_t group,
                       const fib_partition *parts, fib_scratch *scratch,
                       fib_signature *sig)
{
    const fib_group *grp = &g->groups[group];
    if (grp->ops != &fib_dense_ops || grp->ops->recurrent)
        return false;
    const fib_dense *d = grp->block;
    const fib_partition *src = &parts[grp->sources[0]];
    if (src->n_classes != src->n_units || src->n_units != d->n_in)
        return false;
    for (int64_t k = 0; k < src->n_units; k++)
        if (src->color[k] != k)
            return false;
    int32_t status = fib_signature_alloc_in(sig, grp->n_units, d->bias ? 1 : 0, scratch);
    if (status)
        return false;
    sig->n_coords += d->n_in;
    sig->n_direct = d->n_in;
    sig->n_blocks = 1;
    sig->blocks[0] = (fib_direct_block){d->weights, d->dtype, d->ld, 1, d->n_in};
    for (int64_t i = 0; d->bias && i < grp->n_units; i++) {
        sig->value[i] = fib_dense_bias(d, i);
        sig->tol[i] = fib_rounding_tol(d->dtype, 1, fabs(sig->value[i]));
    }
    return true;
}

/* The block's own fill into a materialised signature. */
static int32_t filled_fiber_signature(const fib_graph *g, int32_t group,
                                      const fib_partition *parts, int32_t n_threads,
                                      fib_scratch *scratch, fib_signature *sig)
{
    const fib_group *grp = &g->groups[group];
    int64_t width = grp->ops->fiber_width(g, group, parts);
    int32_t status = fib_signature_alloc_in(sig, grp->n_units, width, scratch);
    if (status)
        return status;
    sig->n_threads = n_threads;
    if (width > 0)
        status = grp->ops->fiber_fill(g, group, parts, sig, 0);
    if (status)
        fib_signature_clear(sig);
    return status;
}

int32_t fib_fiber_signature_ex(const fib_graph *g, int32_t group,
                               const fib_partition *parts, int32_t n_threads,
                               fib_scratch *scratch, fib_signature *sig)
{
    if (dense_view(g, group, parts, scratch, sig)) {
        sig->n_threads = n_threads;
        return FIB_OK;
    }
    return filled_fiber_signature(g, group, parts, n_threads, scratch, sig);
}

int32_t fib_fiber_signature(const fib_graph *g, int32_t group,
                            const fib_partition *parts, fib_signature *sig)
{
    return filled_fiber_signature(g, group, parts, 1, NULL, sig);
}

int32_t fib_opfiber_signature(const fib_graph *g, int32_t group,
                              const fib_partition *parts,
                              const fib_partition *fibers, fib_signature *sig)
{
    return fib_opfiber_signature_ex(g, group, parts, fibers, 1, NULL, sig);
}

/* A group read only by dense blocks (at most FIB_MAX_DIRECT_BLOCKS, not
 * recurrent) whose opfiber classes are discrete (every row its own class,
 * in row order): its column sums are the readers' weight columns, so the
 * signature borrows them (unit i's coordinates are W[r, i] for every row r
 * of every reader, in order) and only the flavour is materialised. No
 * n_in x n_out copy: for layers without symmetry that copy was four times
 * their size. */
static bool dense_column_view(const fib_graph *g, int32_t group,
                              const fib_partition *parts,
                              const fib_partition *fibers, fib_scratch *scratch,
                              fib_signature *sig)
{
    const fib_group *grp = &g->groups[group];
    if (grp->ops && grp->ops->recurrent)
        return false;
    fib_direct_block blocks[FIB_MAX_DIRECT_BLOCKS];
    int32_t n_blocks = 0;
    int64_t n_direct = 0;
    for (int32_t h = group + 1; h < g->n_groups; h++)
        for (int32_t s = 0; s < g->groups[h].n_sources; s++) {
            if (g->groups[h].sources[s] != group)
                continue;
            if (n_blocks == FIB_MAX_DIRECT_BLOCKS || g->groups[h].ops != &fib_dense_ops)
                return false;
            const fib_dense *d = g->groups[h].block;
            const fib_partition *own = &parts[h];
            if (own->n_classes != own->n_units || d->n_in != grp->n_units)
                return false;
            for (int64_t r = 0; r < own->n_units; r++)
                if (own->color[r] != r)
                    return false;
            blocks[n_blocks++] = (fib_direct_block){d->weights, d->dtype, 1, d->ld,
                                                    own->n_units};
            n_direct += own->n_units;
        }
    bool flavoured = !fib_activation_is_linear(grp->activation);
    if (n_blocks == 0 ||
        fib_signature_alloc_in(sig, grp->n_units, flavoured ? 1 : 0, scratch))
        return false;
    sig->n_coords += n_direct;
    sig->n_direct = n_direct;
    sig->n_blocks = n_blocks;
    memcpy(sig->blocks, blocks, sizeof blocks);
    for (int64_t i = 0; flavoured && i < grp->n_units; i++) {
        sig->value[i] = (double)fibers[group].color[i];
        sig->tol[i] = FIB_TOL_LABEL;
    }
    return true;
}

int32_t fib_opfiber_signature_ex(const fib_graph *g, int32_t group,
                                 const fib_partition *parts,
                                 const fib_partition *fibers,
                                 int32_t n_threads, fib_scratch *scratch,
                                 fib_signature *sig)
{
    if (scratch && dense_column_view(g, group, parts, fibers, scratch, sig)) {
        sig->n_threads = n_threads;
        return FIB_OK;
    }
    const fib_group *grp = &g->groups[group];
    bool flavoured = !fib_activation_is_linear(grp->activation);
    int64_t width = flavoured ? 1 : 0;
    bool recurrent = grp->ops && grp->ops->recurrent;
    /* a width < 0 is the status of a failure its block has reported */
    int64_t part = 0;
    if (recurrent && (part = grp->ops->opfiber_width(g, group, -1, parts, fibers)) >= 0)
        width += part;
    for (int32_t h = group + 1; h < g->n_groups && part >= 0; h++)
        for (int32_t s = 0; s < g->groups[h].n_sources && part >= 0; s++)
            if (g->groups[h].sources[s] == group &&
                (part = g->groups[h].ops->opfiber_width(g, h, s, parts, fibers)) >= 0)
                width += part;
    if (part < 0)
        return (int32_t)part;
    int32_t status = fib_signature_alloc_in(sig, grp->n_units, width, scratch);
    if (status)
        return status;
    sig->n_threads = n_threads;
    int64_t offset = 0;
    if (flavoured) {
        for (int64_t i = 0; i < grp->n_units; i++) {
            sig->value[i * width] = (double)fibers[group].color[i];
            sig->tol[i * width] = FIB_TOL_LABEL;
        }
        offset = 1;
    }
    if (recurrent) {
        status = grp->ops->opfiber_fill(g, group, -1, parts, fibers, sig, offset);
        offset += grp->ops->opfiber_width(g, group, -1, parts, fibers);
    }
    for (int32_t h = group + 1; h < g->n_groups && !status; h++)
        for (int32_t s = 0; s < g->groups[h].n_sources && !status; s++)
            if (g->groups[h].sources[s] == group) {
                status = g->groups[h].ops->opfiber_fill(g, h, s, parts, fibers, sig, offset);
                offset += g->groups[h].ops->opfiber_width(g, h, s, parts, fibers);
            }
    if (status)
        fib_signature_clear(sig);
    return status;
}
