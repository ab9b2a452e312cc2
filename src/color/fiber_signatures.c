/* The fiber and opfiber signatures of a group. Fibers: the colour sums of
 * each block feeding the group. Opfibers: the flavour, then the column sums
 * of each block reading the group. A block may lend its weights in place
 * of a filled copy (fib_block_ops fiber_view, opfiber_view). */
#include "color/color.h"

#include <string.h>

/* The signature lent from the block's weights when its table offers a view
 * (fib_block_ops fiber_view) and the source's classes allow it; false: it
 * is filled. */
static bool fiber_view(const fib_graph *g, int32_t group, const fib_partition *parts,
                       fib_scratch *scratch, fib_signature *sig)
{
    const fib_block_ops *ops = g->groups[group].ops;
    return ops && ops->fiber_view && !ops->recurrent &&
           ops->fiber_view(g, group, parts, scratch, sig);
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
    if (fiber_view(g, group, parts, scratch, sig)) {
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

/* A group read only by blocks that lend their weight columns (fib_block_ops
 * opfiber_view; at most FIB_MAX_DIRECT_BLOCKS, not recurrent): its column
 * sums are the readers' weight columns, so the signature borrows them (unit
 * i's coordinates are the columns' entries i, reader after reader) and only
 * the flavour is materialised. No n_in x n_out copy: for layers without
 * symmetry that copy was four times their size. */
static bool column_view(const fib_graph *g, int32_t group,
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
            const fib_block_ops *ops = g->groups[h].ops;
            if (n_blocks == FIB_MAX_DIRECT_BLOCKS || !ops->opfiber_view ||
                !ops->opfiber_view(g, h, parts, &blocks[n_blocks]))
                return false;
            n_direct += blocks[n_blocks++].n;
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

/* Reader h's contribution to the opfiber signature of its source number s:
 * its exact form when asked for (exact) and the block has one here, else
 * the full one. Returns the width (< 0: a status), *use_exact which. */
static int64_t reader_width(const fib_graph *g, int32_t h, int32_t s, const fib_partition *parts,
                            const fib_partition *fibers, bool exact, bool *use_exact)
{
    const fib_block_ops *ops = g->groups[h].ops;
    *use_exact = false;
    if (exact && ops->opfiber_exact_width) {
        int64_t width = ops->opfiber_exact_width(g, h, s, parts, fibers);
        if (width != 0) {
            *use_exact = width > 0;
            return width;
        }
    }
    return ops->opfiber_width(g, h, s, parts, fibers);
}

static int32_t opfiber_signature(const fib_graph *g, int32_t group,
                                 const fib_partition *parts,
                                 const fib_partition *fibers, bool exact,
                                 int32_t n_threads, fib_scratch *scratch,
                                 fib_signature *sig)
{
    if (scratch && column_view(g, group, parts, fibers, scratch, sig)) {
        sig->n_threads = n_threads;
        return FIB_OK;
    }
    const fib_group *grp = &g->groups[group];
    bool flavoured = !fib_activation_is_linear(grp->activation);
    int64_t width = flavoured ? 1 : 0;
    bool recurrent = grp->ops && grp->ops->recurrent, use_exact;
    /* a width < 0 is the status of a failure its block has reported */
    int64_t part = 0;
    if (recurrent && (part = grp->ops->opfiber_width(g, group, -1, parts, fibers)) >= 0)
        width += part;
    for (int32_t h = group + 1; h < g->n_groups && part >= 0; h++)
        for (int32_t s = 0; s < g->groups[h].n_sources && part >= 0; s++)
            if (g->groups[h].sources[s] == group &&
                (part = reader_width(g, h, s, parts, fibers, exact, &use_exact)) >= 0)
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
                const fib_block_ops *ops = g->groups[h].ops;
                part = reader_width(g, h, s, parts, fibers, exact, &use_exact);
                status = part < 0 ? (int32_t)part
                         : use_exact ? ops->opfiber_exact_fill(g, h, s, parts, fibers, sig, offset)
                                     : ops->opfiber_fill(g, h, s, parts, fibers, sig, offset);
                offset += part;
            }
    if (status)
        fib_signature_clear(sig);
    return status;
}

int32_t fib_opfiber_signature_ex(const fib_graph *g, int32_t group,
                                 const fib_partition *parts,
                                 const fib_partition *fibers,
                                 int32_t n_threads, fib_scratch *scratch,
                                 fib_signature *sig)
{
    return opfiber_signature(g, group, parts, fibers, false, n_threads, scratch, sig);
}

int32_t fib_opfiber_signature_mode(const fib_graph *g, int32_t group,
                                   const fib_partition *parts,
                                   const fib_partition *fibers, int32_t mode, double eps,
                                   int32_t n_threads, fib_scratch *scratch,
                                   fib_signature *sig)
{
    bool exact = eps < 0 || (mode & ~FIB_TOL_SCALED) == FIB_TOL_EXACT;
    return opfiber_signature(g, group, parts, fibers, exact, n_threads, scratch, sig);
}
