/* Sum groups (residual connections): z[i] = a[gather_a[i]] + b[gather_b[i]].
 * A graph built by users adds elementwise; a base gathers, because the two
 * summands may have been merged into different classes. */
#include "blocks/blocks.h"
#include "model/gather.h"

#include <string.h>

static const fib_sum *sum_of(const fib_graph *g, int32_t group)
{
    return (const fib_sum *)g->groups[group].block;
}

int32_t fib_graph_add_sum_gather(fib_graph *g, int32_t a, int32_t b,
                                 int64_t n_units, int64_t *gather_a,
                                 int64_t *gather_b, int32_t *group_out)
{
    return fib_pair_push(g, FIB_OP_SUM, &fib_sum_ops, a, b, n_units, gather_a, gather_b,
                         group_out);
}

int32_t fib_graph_add_sum(fib_graph *g, int32_t a, int32_t b,
                          int32_t *group_out)
{
    int32_t status = fib_pair_check_operands(g, a, b, group_out, "fib_graph_add_sum");
    if (status)
        return status;
    if (fib_group_positions(&g->groups[a]) != fib_group_positions(&g->groups[b]))
        return fib_error(FIB_E_SHAPE,
                         "fib_graph_add_sum: groups %d and %d have different positions",
                         (int)a, (int)b);
    return fib_graph_add_sum_gather(g, a, b, g->groups[a].n_units, NULL, NULL,
                                    group_out);
}

int32_t fib_graph_read_sum(const fib_graph *g, int32_t group, int64_t *index_a,
                           int64_t *index_b)
{
    int32_t status = fib_graph_check_group(g, group, "fib_graph_read_sum");
    if (status)
        return status;
    if (g->groups[group].op != FIB_OP_SUM && g->groups[group].op != FIB_OP_PRODUCT)
        return fib_error(FIB_E_INVALID,
                         "fib_graph_read_sum: group %d is not a sum or a product",
                         (int)group);
    const fib_sum *s = sum_of(g, group);
    for (int64_t i = 0; i < g->groups[group].n_units; i++) {
        if (index_a)
            index_a[i] = fib_gather_at(s->gather_a, i);
        if (index_b)
            index_b[i] = fib_gather_at(s->gather_b, i);
    }
    return FIB_OK;
}

/* Opfibers: a summand unit receives the error of every sum unit that reads
 * it, so its signature counts those readers per class of the sum. When
 * every summand unit has at most one reader (a residual connection), the
 * counts are one-hot and the signature is one label instead: the reader's
 * class, or -1 for a unit nobody reads. Equal labels are equal counts, and
 * a width of one instead of the sum's class count keeps the signature (and
 * its grouping) linear in the units. Under a tolerance, reader classes
 * never merge (they are structure, not weights). */
static const int64_t *summand_map(const fib_sum *s, int32_t source_index)
{
    return source_index == 0 ? s->gather_a : s->gather_b;
}

static int32_t single_reader(const fib_graph *g, int32_t group, int32_t source_index)
{
    const fib_group *grp = &g->groups[group];
    return fib_gather_single_reader(summand_map(sum_of(g, group), source_index),
                                    grp->n_units, g->groups[grp->sources[source_index]].n_units);
}

static int64_t sum_opfiber_width(const fib_graph *g, int32_t group,
                                 int32_t source_index,
                                 const fib_partition *parts,
                                 const fib_partition *fibers)
{
    (void)fibers;
    int32_t single = single_reader(g, group, source_index);
    return single < 0 ? single : single ? 1 : parts[group].n_classes;
}

static int32_t sum_opfiber_fill(const fib_graph *g, int32_t group,
                                int32_t source_index,
                                const fib_partition *parts,
                                const fib_partition *fibers, fib_signature *sig,
                                int64_t offset)
{
    (void)fibers;
    const fib_group *grp = &g->groups[group];
    const int64_t *map = summand_map(sum_of(g, group), source_index);
    const int64_t *color = parts[group].color;
    int32_t single = single_reader(g, group, source_index);
    if (single < 0)
        return single;
    if (single) {
        for (int64_t j = 0; j < sig->n_units; j++) {
            sig->value[j * sig->n_coords + offset] = -1.0;
            sig->tol[j * sig->n_coords + offset] = FIB_TOL_LABEL;
        }
        for (int64_t i = 0; i < grp->n_units; i++)
            sig->value[fib_gather_at(map, i) * sig->n_coords + offset] = (double)color[i];
        return FIB_OK;
    }
    int64_t k = parts[group].n_classes;
    for (int64_t j = 0; j < sig->n_units; j++) {
        memset(sig->value + j * sig->n_coords + offset, 0, (size_t)k * sizeof(double));
        memset(sig->tol + j * sig->n_coords + offset, 0, (size_t)k * sizeof(double));
    }
    for (int64_t i = 0; i < grp->n_units; i++)
        sig->value[fib_gather_at(map, i) * sig->n_coords + offset + color[i]] += 1.0;
    return FIB_OK;
}

static void sum_forward(const fib_graph *g, int32_t group, int64_t batch,
                        double *const *activity, double *out)
{
    fib_pair_forward(g, group, batch, activity, out, false);
}

static int32_t sum_build(fib_graph *g, const fib_block_source *S, int32_t *id)
{
    return fib_pair_build(g, S, false, fib_graph_add_sum, fib_graph_add_sum_gather, id);
}

const fib_block_ops fib_sum_ops = {
    .name = "sum",
    .build = sum_build,
    .gathers = fib_pair_gathers,
    .free_block = fib_pair_free,
    .fiber_width = fib_pair_fiber_width,
    .fiber_fill = fib_pair_fiber_fill,
    .opfiber_width = sum_opfiber_width,
    .opfiber_fill = sum_opfiber_fill,
    .forward = sum_forward,
    .compress = fib_pair_compress,
    .lift = fib_pair_lift,
    .num_parameters = fib_pair_num_parameters,
    .budget_role = fib_pair_budget_role,
    .budget_backward = fib_pair_budget_backward,
};
