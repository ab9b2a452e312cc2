/* Product groups (gates): z[p][i] = a[p][gather_a[i]] * b[q][gather_b[i]],
 * with q = p when b has a's positions and q = 0 when b has a single position
 * (a squeeze-and-excitation gate scales every position of its channel).
 * The block data is a fib_sum (the two gathers): a product merges, lifts
 * and gathers exactly as a sum does (pair.c); only its forward and its
 * backward flavour differ. */
#include "blocks/blocks.h"
#include "model/gather.h"

#include <string.h>

static const fib_sum *product_of(const fib_graph *g, int32_t group)
{
    return (const fib_sum *)g->groups[group].block;
}

int32_t fib_graph_add_product_gather(fib_graph *g, int32_t a, int32_t b,
                                     int64_t n_units, int64_t *gather_a,
                                     int64_t *gather_b, int32_t *group_out)
{
    return fib_pair_push(g, FIB_OP_PRODUCT, &fib_product_ops, a, b, n_units, gather_a,
                         gather_b, group_out);
}

int32_t fib_graph_add_product(fib_graph *g, int32_t a, int32_t b, int32_t *group_out)
{
    int32_t status = fib_pair_check_operands(g, a, b, group_out, "fib_graph_add_product");
    if (status)
        return status;
    int64_t pb = fib_group_positions(&g->groups[b]);
    if (pb != 1 && pb != fib_group_positions(&g->groups[a]))
        return fib_error(FIB_E_SHAPE,
                         "fib_graph_add_product: group %d has %lld positions; it must have "
                         "those of group %d (%lld) or one",
                         (int)b, (long long)pb, (int)a,
                         (long long)fib_group_positions(&g->groups[a]));
    return fib_graph_add_product_gather(g, a, b, g->groups[a].n_units, NULL, NULL, group_out);
}

/* Opfibers: the error reaching factor unit a_k is the error of its reader
 * times the other factor. A factor unit's signature is the reader's class
 * (as for a sum) and the fiber class of the other factor it is multiplied
 * by (its flavour): units whose errors are scaled by different functions
 * never share a class. Each factor unit must have at most one reader (as
 * in every graph users build); a base with shared readers is refused. */
static int64_t product_opfiber_width(const fib_graph *g, int32_t group,
                                     int32_t source_index, const fib_partition *parts,
                                     const fib_partition *fibers)
{
    (void)parts, (void)fibers;
    const fib_group *grp = &g->groups[group];
    const fib_sum *s = product_of(g, group);
    const int64_t *map = source_index == 0 ? s->gather_a : s->gather_b;
    int32_t single = fib_gather_single_reader(map, grp->n_units,
                                              g->groups[grp->sources[source_index]].n_units);
    if (single < 0)
        return single;
    if (!single)
        return fib_error(FIB_E_UNSUPPORTED,
                         "group %d (product block): a unit of its factor %d is read more "
                         "than once; opfibers of such a product are not defined in this "
                         "version", (int)group, (int)grp->sources[source_index]);
    return 2;
}

static int32_t product_opfiber_fill(const fib_graph *g, int32_t group,
                                    int32_t source_index, const fib_partition *parts,
                                    const fib_partition *fibers, fib_signature *sig,
                                    int64_t offset)
{
    const fib_group *grp = &g->groups[group];
    const fib_sum *s = product_of(g, group);
    const int64_t *map = source_index == 0 ? s->gather_a : s->gather_b;
    const int64_t *other = source_index == 0 ? s->gather_b : s->gather_a;
    const fib_partition *other_fibers = &fibers[grp->sources[1 - source_index]];
    for (int64_t j = 0; j < sig->n_units; j++) {
        sig->value[j * sig->n_coords + offset] = -1.0;
        sig->value[j * sig->n_coords + offset + 1] = -1.0;
        sig->tol[j * sig->n_coords + offset] = FIB_TOL_LABEL;
        sig->tol[j * sig->n_coords + offset + 1] = FIB_TOL_LABEL;
    }
    for (int64_t i = 0; i < grp->n_units; i++) {
        double *val = sig->value + fib_gather_at(map, i) * sig->n_coords + offset;
        val[0] = (double)parts[group].color[i];
        val[1] = (double)other_fibers->color[fib_gather_at(other, i)];
    }
    return FIB_OK;
}

static void product_forward(const fib_graph *g, int32_t group, int64_t batch,
                            double *const *activity, double *out)
{
    fib_pair_forward(g, group, batch, activity, out, true);
}

/* The second factor may have a single position (a scale). */
static int32_t product_build(fib_graph *g, const fib_block_source *S, int32_t *id)
{
    return fib_pair_build(g, S, true, fib_graph_add_product, fib_graph_add_product_gather, id);
}

const fib_block_ops fib_product_ops = {
    .name = "product",
    .build = product_build,
    .gathers = fib_pair_gathers,
    .free_block = fib_pair_free,
    .fiber_width = fib_pair_fiber_width,
    .fiber_fill = fib_pair_fiber_fill,
    .opfiber_width = product_opfiber_width,
    .opfiber_fill = product_opfiber_fill,
    .forward = product_forward,
    .compress = fib_pair_compress,
    .lift = fib_pair_lift,
    .num_parameters = fib_pair_num_parameters,
    .budget_role = fib_pair_budget_role,
    .budget_backward = fib_pair_budget_backward,
};
