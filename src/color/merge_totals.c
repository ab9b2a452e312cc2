/* The sums a dense group's merge needs, kept from its fiber colouring
 * (for every block with fib_block_ops compress_totals).
 *
 * Colouring the fibers of a dense group over a source with classes makes
 * every row's colour sums (the signature); merging it (Eq. 10) makes them
 * again and adds them up per class. When the base is small, the colouring
 * keeps the k_out x k_in totals (rows ascending, from 0.0: the merge's
 * order, so the same bits) with the two partitions they were made for;
 * fib_compress uses them when its projection of the group and of its
 * source are those partitions, and reads the weights again otherwise. The
 * sweep modes (EXACT, ABS, REL) add each class up as they find it, on the
 * grouping's threads and while its rows are in cache (sum_leading); the
 * linkage modes leave it to one pass over the signature here. */
#include "color/color.h"

#include <string.h>

/* Kept only when the totals are at most this fraction of the weights'
 * bytes, or small anyway: the colouring holds them until it is freed. */
#define FIB_MERGE_TOTALS_MAX_FRACTION 16
#define FIB_MERGE_TOTALS_SMALL (1 << 20)

/* k_in when `sig` holds the colour sums of a group whose block compresses
 * from kept totals (fib_block_ops compress_totals) over its source's k_in
 * classes (and its bias), materialised and unscaled; else 0. */
static int64_t color_sum_width(const fib_coloring *c, const fib_graph *g, int32_t group,
                                const fib_signature *sig, const fib_partition *parts)
{
    const fib_group *grp = &g->groups[group];
    const fib_block_ops *ops = grp->ops;
    if (!ops || !ops->compress_totals || ops->recurrent || sig->n_direct || c->scales)
        return 0;
    bool bias = ops->has_bias && ops->has_bias(g, group);
    int64_t k_in = parts[grp->sources[0]].n_classes;
    return sig->n_coords == k_in + (bias ? 1 : 0) ? k_in : 0;
}

int64_t fib_merge_totals_leading(const fib_coloring *c, const fib_graph *g, int32_t group,
                               const fib_signature *sig, const fib_partition *parts,
                               int32_t mode)
{
    int32_t method = mode & ~FIB_TOL_SCALED;
    if (method != FIB_TOL_EXACT && method != FIB_TOL_ABS && method != FIB_TOL_REL)
        return 0;
    return color_sum_width(c, g, group, sig, parts);
}

int32_t fib_merge_totals_keep(fib_coloring *c, const fib_graph *g, int32_t group,
                            const fib_signature *sig, const fib_partition *parts)
{
    int64_t k_in = color_sum_width(c, g, group, sig, parts);
    if (k_in == 0)
        return FIB_OK;
    const fib_partition *out = &parts[group];
    int64_t k_out = out->n_classes;
    double bytes = (double)k_out * (double)k_in * sizeof(double);
    if (bytes > fib_merge_totals_budget(c, g, group))
        return FIB_OK;
    double *sums = fib_calloc(k_out * k_in, sizeof *sums);
    if (!sums)
        return fib_error(FIB_E_NOMEM, "group %d: out of memory for class sums", (int)group);
    int32_t status = fib_merge_totals_adopt(c, g, group, parts, sums);
    if (status)
        return status;
    fib_merge_totals *cs = &c->merge_totals[group];
    if (sig->sum_leading == k_in) {
        /* grouping added each class up into its first member's row */
        int64_t next = 0;
        for (int64_t i = 0; i < out->n_units && next < k_out; i++)
            if (out->color[i] == next) {
                memcpy(cs->sums + next * k_in, sig->value + i * sig->n_coords,
                       (size_t)k_in * sizeof *cs->sums);
                next++;
            }
        return FIB_OK;
    }
    /* rows in order (the merge's order) */
    for (int64_t i = 0; i < out->n_units; i++) {
        double *total = cs->sums + out->color[i] * k_in;
        const double *row = sig->value + i * sig->n_coords;
        for (int64_t j = 0; j < k_in; j++)
            total[j] += row[j];
    }
    return FIB_OK;
}

/* Kept only when the totals are at most the weights' bytes over
 * FIB_MERGE_TOTALS_MAX_FRACTION, or small anyway (0 when the group cannot
 * keep totals: a budget's scaled colouring, or no kept-totals merge). */
double fib_merge_totals_budget(const fib_coloring *c, const fib_graph *g, int32_t group)
{
    const fib_group *grp = &g->groups[group];
    const fib_block_ops *ops = grp->ops;
    fib_tensor_view w;
    if (!c || c->scales || !ops || !ops->compress_totals || ops->recurrent || !ops->tensor ||
        !ops->tensor(g, group, 0, &w))
        return 0;
    double weights = (double)w.shape[0] * (double)w.shape[1] * (double)fib_dtype_size(w.dtype);
    double share = weights / FIB_MERGE_TOTALS_MAX_FRACTION;
    return share > FIB_MERGE_TOTALS_SMALL ? share : FIB_MERGE_TOTALS_SMALL;
}

int32_t fib_merge_totals_adopt(fib_coloring *c, const fib_graph *g, int32_t group,
                               const fib_partition *parts, double *sums)
{
    const fib_partition *out = &parts[group], *in = &parts[g->groups[group].sources[0]];
    if (!c->merge_totals &&
        !(c->merge_totals = fib_calloc(c->n_groups, sizeof *c->merge_totals))) {
        fib_free(sums);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory for class sums", (int)group);
    }
    fib_merge_totals *cs = &c->merge_totals[group];
    cs->sums = sums;
    cs->out_labels = fib_alloc(out->n_units, sizeof *cs->out_labels);
    cs->in_labels = fib_alloc(in->n_units, sizeof *cs->in_labels);
    if (!cs->out_labels || !cs->in_labels) {
        fib_free(cs->sums);
        fib_free(cs->out_labels);
        fib_free(cs->in_labels);
        *cs = (fib_merge_totals){0};
        return fib_error(FIB_E_NOMEM, "group %d: out of memory for class sums", (int)group);
    }
    memcpy(cs->out_labels, out->color, (size_t)out->n_units * sizeof *cs->out_labels);
    memcpy(cs->in_labels, in->color, (size_t)in->n_units * sizeof *cs->in_labels);
    return FIB_OK;
}

const double *fib_merge_totals_find(const fib_coloring *c, const fib_graph *g, int32_t group,
                                  const fib_partition *projection)
{
    if (!c->merge_totals || !c->merge_totals[group].sums)
        return NULL;
    const fib_merge_totals *cs = &c->merge_totals[group];
    const fib_partition *out = &projection[group];
    const fib_partition *in = &projection[g->groups[group].sources[0]];
    if (memcmp(cs->out_labels, out->color, (size_t)out->n_units * sizeof *out->color) ||
        memcmp(cs->in_labels, in->color, (size_t)in->n_units * sizeof *in->color))
        return NULL;
    return cs->sums;
}
