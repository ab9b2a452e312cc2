/* Flatten: channels x positions become plain units in PyTorch's order
 * (channel, row, col), so a dense block can follow a convolution. Unit
 * (c, p) has the colour of channel c at position p: its classes always
 * follow the source's, in a colouring as in a base. */
#include "blocks/blocks.h"

#include <math.h>

static int64_t positions_of_source(const fib_graph *g, int32_t group)
{
    return fib_group_positions(&g->groups[g->groups[group].sources[0]]);
}

static int32_t add_flatten(fib_graph *g, int32_t source, int32_t *group_out)
{
    const fib_group *src = &g->groups[source];
    int64_t width = fib_group_activity_width(src);
    if (width > FIB_MAX_UNITS)
        return fib_error(FIB_E_OVERFLOW, "fib_graph_add_flatten: group %d would have %lld units",
                         (int)g->n_groups, (long long)width);
    fib_group grp = {.op = FIB_OP_FLATTEN, .n_units = width, .rows = 1, .cols = 1,
                     .activation = FIB_ACT_LINEAR, .n_sources = 1, .sources = {source, 0},
                     .ops = &fib_flatten_ops};
    return fib_graph_push_group(g, &grp, group_out);
}

int32_t fib_graph_add_flatten(fib_graph *g, int32_t source, int32_t *group_out)
{
    int32_t status = fib_graph_check_group(g, source, "fib_graph_add_flatten");
    if (status)
        return status;
    if (!group_out)
        return fib_error(FIB_E_NULL, "fib_graph_add_flatten: group_out is NULL");
    return add_flatten(g, source, group_out);
}

static int64_t flatten_fiber_width(const fib_graph *g, int32_t group, const fib_partition *parts)
{
    (void)g, (void)group, (void)parts;
    return 2;
}

static int32_t flatten_fiber_fill(const fib_graph *g, int32_t group, const fib_partition *parts,
                                  fib_signature *sig, int64_t offset)
{
    const fib_partition *src = &parts[g->groups[group].sources[0]];
    int64_t positions = positions_of_source(g, group);
    for (int64_t u = 0; u < g->groups[group].n_units; u++) {
        double *val = sig->value + u * sig->n_coords + offset;
        double *tol = sig->tol + u * sig->n_coords + offset;
        val[0] = (double)src->color[u / positions];
        val[1] = (double)(u % positions);
        tol[0] = tol[1] = FIB_TOL_LABEL;
    }
    return FIB_OK;
}

/* Channel c receives the errors of its units (c, p): their classes. */
static int64_t flatten_opfiber_width(const fib_graph *g, int32_t group, int32_t source_index,
                                     const fib_partition *parts,
                                     const fib_partition *fibers)
{
    (void)fibers;
    (void)source_index, (void)parts;
    return positions_of_source(g, group);
}

static int32_t flatten_opfiber_fill(const fib_graph *g, int32_t group, int32_t source_index,
                                    const fib_partition *parts, const fib_partition *fibers,
                                    fib_signature *sig, int64_t offset)
{
    (void)source_index, (void)fibers;
    int64_t positions = positions_of_source(g, group);
    for (int64_t u = 0; u < g->groups[group].n_units; u++) {
        int64_t at = (u / positions) * sig->n_coords + offset + u % positions;
        sig->value[at] = (double)parts[group].color[u];
        sig->tol[at] = FIB_TOL_LABEL;
    }
    return FIB_OK;
}

static void flatten_forward(const fib_graph *g, int32_t group, int64_t batch,
                            double *const *activity, double *out)
{
    const fib_group *src = &g->groups[g->groups[group].sources[0]];
    const double *x = activity[g->groups[group].sources[0]];
    int64_t positions = fib_group_positions(src), channels = src->n_units;
    int64_t width = channels * positions;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t c = 0; c < channels; c++)
            for (int64_t p = 0; p < positions; p++)
                out[b * width + c * positions + p] = x[b * width + p * channels + c];
}

/* The classes are those of the source channel at each position, numbered
 * canonically as class * positions + position. */
static int32_t flatten_derive(const fib_graph *g, int32_t group, fib_partition *parts)
{
    const fib_partition *src = &parts[g->groups[group].sources[0]];
    int64_t positions = positions_of_source(g, group);
    fib_partition *own = &parts[group];
    /* a partition read from a file may be of any size */
    if (own->n_units % positions != 0 || own->n_units / positions != src->n_units)
        return fib_error(FIB_E_SHAPE, "group %d: %lld units are not the %lld positions of "
                         "its source's %lld", (int)group, (long long)own->n_units,
                         (long long)positions, (long long)src->n_units);
    for (int64_t u = 0; u < own->n_units; u++)
        own->color[u] = src->color[u / positions] * positions + u % positions;
    own->n_classes = src->n_classes * positions;
    return FIB_OK;
}

static int32_t flatten_compress(const fib_graph *g, int32_t group, const fib_partition *parts,
                                fib_graph *base, const int32_t *base_ids)
{
    (void)parts;
    int32_t id;
    return add_flatten(base, base_ids[g->groups[group].sources[0]], &id);
}

static int32_t flatten_lift(const fib_graph *base, int32_t group, const fib_partition *parts,
                            fib_graph *full, const int32_t *full_ids)
{
    (void)parts;
    int32_t id;
    return add_flatten(full, full_ids[base->groups[group].sources[0]], &id);
}

static int64_t flatten_num_parameters(const fib_graph *g, int32_t group)
{
    (void)g, (void)group;
    return 0;
}

/* ---- budgets ------------------------------------------------------------ */

static int32_t flatten_budget_role(const fib_graph *g, int32_t group)
{
    (void)g, (void)group;
    return FIB_BUDGET_DERIVED;
}

/* Energies are per position: a channel's is the mean over its positions
 * of its units'. */
static void flatten_budget_backward(const fib_graph *g, int32_t group, int32_t source_index,
                                    const double *energy, double *src_energy)
{
    (void)source_index;
    int64_t positions = positions_of_source(g, group);
    for (int64_t u = 0; u < g->groups[group].n_units; u++)
        src_energy[u / positions] += energy[u] / (double)positions;
}

/* Unit (c, p) is channel c at position p. */
static double flatten_budget_constant(const fib_graph *g, int32_t group, int64_t unit,
                                      const double *source_values)
{
    return source_values ? source_values[unit / positions_of_source(g, group)] : NAN;
}

static bool flatten_budget_moments(const fib_graph *g, int32_t group, const double *const *mean,
                                   const double *const *var, double *pre_mean, double *pre_var)
{
    int64_t positions = positions_of_source(g, group);
    for (int64_t u = 0; u < g->groups[group].n_units; u++) {
        pre_mean[u] = mean[0][u / positions];
        pre_var[u] = var[0][u / positions];
    }
    return true;
}

static int32_t flatten_build(fib_graph *g, const fib_block_source *S, int32_t *id)
{
    int32_t st = fib_source_no_extras(S, false, false, NULL);
    if (st != FIB_OK)
        return st;
    const fib_group *src = fib_source_group(g, S, 0);
    int64_t width;
    if (!fib_mul_i64(src->n_units, fib_group_positions(src), &width) ||
        width != S->units)
        return fib_source_error(S, "'units' is %lld but flattening "
                                "group %d gives %lld x %lld x %lld",
                                (long long)S->units, (int)S->sources[0],
                                (long long)src->n_units, (long long)src->rows,
                                (long long)src->cols);
    return fib_source_done(S, fib_graph_add_flatten(g, S->sources[0], id));
}

const fib_block_ops fib_flatten_ops = {
    .name = "flatten",
    .build = flatten_build,
    .fiber_width = flatten_fiber_width,
    .fiber_fill = flatten_fiber_fill,
    .opfiber_width = flatten_opfiber_width,
    .opfiber_fill = flatten_opfiber_fill,
    .forward = flatten_forward,
    .compress = flatten_compress,
    .lift = flatten_lift,
    .num_parameters = flatten_num_parameters,
    .derive_projection = flatten_derive,
    .budget_role = flatten_budget_role,
    .budget_backward = flatten_budget_backward,
    .budget_constant = flatten_budget_constant,
    .budget_moments = flatten_budget_moments,
};
