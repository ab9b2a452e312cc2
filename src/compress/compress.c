/* fib_compress: the base network of Eq. 10, one unit per class of every
 * hidden group; input and output groups keep their units. */
#include "compress/compress.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void free_projection(fib_partition *parts, int32_t n)
{
    if (!parts)
        return;
    for (int32_t i = 0; i < n; i++)
        fib_partition_clear(&parts[i]);
    fib_free(parts);
}

void fib_base_free(fib_base *b)
{
    if (!b)
        return;
    fib_graph_free(b->graph);
    free_projection(b->projection, b->n_groups);
    fib_free(b);
}

/* The classes actually merged: the colouring's for hidden groups, one unit
 * per class for inputs (unless the colouring merges them, budgets'
 * merge_inputs) and outputs. */
static int32_t effective_projection(const fib_graph *g, const fib_coloring *c,
                                    fib_partition **out)
{
    fib_partition *parts = fib_calloc(g->n_groups, sizeof *parts);
    bool *keep = fib_calloc(g->n_groups, sizeof *keep);
    if (!parts || !keep) {
        fib_free(parts);
        fib_free(keep);
        return fib_error(FIB_E_NOMEM, "out of memory for the projection");
    }
    /* A group whose classes are derived from its source's (flatten) keeps
     * its units only if that source keeps its own: an output flatten pins
     * its source, and so on up a chain of such groups. */
    for (int32_t i = g->n_groups - 1; i >= 0; i--) {
        keep[i] = keep[i] || (fib_group_is_input(g, i) && !c->merge_inputs) ||
                  fib_group_is_output(g, i);
        const fib_block_ops *ops = g->groups[i].ops;
        if (keep[i] && ops && ops->derive_projection)
            keep[g->groups[i].sources[0]] = true;
    }
    for (int32_t i = 0; i < g->n_groups; i++) {
        int32_t status = keep[i] ? fib_partition_init(&parts[i], g->groups[i].n_units)
                                 : fib_partition_copy(&parts[i], &c->parts[i]);
        const fib_block_ops *ops = g->groups[i].ops;
        if (!status && ops && ops->derive_projection)
            status = ops->derive_projection(g, i, parts);
        if (status) {
            free_projection(parts, i + 1);
            fib_free(keep);
            return status;
        }
    }
    fib_free(keep);
    *out = parts;
    return FIB_OK;
}

/* Copies what a block does not set: positions, activation and name. */
int32_t fib_copy_group_attributes(const fib_graph *from, int32_t group,
                                  fib_graph *to, int32_t to_group)
{
    to->groups[to_group].rows = from->groups[group].rows;
    to->groups[to_group].cols = from->groups[group].cols;
    to->groups[to_group].activation = from->groups[group].activation;
    to->groups[to_group].act_param = from->groups[group].act_param;
    if (from->groups[group].name)
        return fib_graph_set_group_name(to, to_group, from->groups[group].name);
    return FIB_OK;
}

/* A base with a NaN or infinite weight would compute nothing useful: it
 * comes from a weight of g changed in borrowed memory after g was built
 * (named), or from merged sums beyond the range of double. The base is
 * small next to g, so looking at its weights costs little. */
static int32_t check_base_finite(const fib_graph *g, const fib_graph *base)
{
    for (int32_t i = 0; i < base->n_groups; i++) {
        if (fib_group_find_nonfinite(base, i, "fib_compress") == FIB_OK)
            continue;
        for (int32_t k = 0; k < g->n_groups; k++) {
            int32_t status = fib_group_find_nonfinite(g, k, "fib_compress");
            if (status)
                return status;
        }
        return fib_error(FIB_E_NONFINITE,
                         "fib_compress: group %d: a merged weight of the base overflows "
                         "(its class sums exceed the range of double)", (int)i);
    }
    return FIB_OK;
}

/* A float64 block of the base rounded to float32 in its own memory
 * (fib_narrow_owned), so that a base meant for a float32 file never holds
 * float64 copies of all its blocks at once: a dense block here, another
 * kind through its fib_block_ops.narrow (a convolution). Each value is the
 * float64 merge rounded once, as saving it as float32 would; one float32
 * cannot hold is FIB_E_NONFINITE. */
int32_t fib_narrow_block(fib_graph *base, int32_t group)
{
    fib_group *grp = &base->groups[group];
    if (grp->ops && grp->ops->narrow)
        return grp->ops->narrow(base, group);
    /* the base owns its blocks: its weight matrices may be narrowed in place */
    fib_dense *d = (fib_dense *)fib_group_matrix(base, group);
    if (!d || d->dtype != FIB_DTYPE_F64 || !d->owned_weights ||
        d->ld != d->n_in || (d->bias && !d->owned_bias))
        return FIB_OK;
    /* each pointer follows its buffer at once: a failure frees the base */
    int32_t status = fib_narrow_owned(&d->owned_weights, grp->n_units * d->n_in, group, "weight");
    d->weights = d->owned_weights;
    if (!status && d->bias) {
        status = fib_narrow_owned(&d->owned_bias, grp->n_units, group, "bias");
        d->bias = d->owned_bias;
    }
    if (!status)
        d->dtype = FIB_DTYPE_F32;
    return status;
}

int32_t fib_compress_options_init(fib_compress_options *o, size_t struct_size)
{
    int32_t status = fib_options_clear(o, struct_size, sizeof *o, struct_size,
                                       "fib_compress_options_init");
    if (status)
        return status;
    o->struct_size = struct_size;
    return FIB_OK;
}

static int32_t compress(const fib_graph *g, const fib_coloring *c, int32_t dtype,
                        bool borrow, const bool *owned, fib_base **out);

int32_t fib_compress(const fib_graph *g, const fib_coloring *c, fib_base **out)
{
    return compress(g, c, FIB_DTYPE_F64, false, NULL, out);
}

int32_t fib_compress_owning(const fib_graph *g, const fib_coloring *c, const bool *owned,
                            fib_base **out)
{
    return compress(g, c, FIB_DTYPE_F64, true, owned, out);
}

int32_t fib_compress_ex(const fib_graph *g, const fib_coloring *c,
                        const fib_compress_options *options, fib_base **out)
{
    if (options && options->struct_size < sizeof *options)
        return fib_error(FIB_E_INVALID,
                         "fib_compress_ex: options->struct_size %zu is smaller than %zu "
                         "(call fib_compress_options_init)",
                         options->struct_size, sizeof *options);
    int32_t dtype = options && options->dtype ? options->dtype : FIB_DTYPE_F64;
    if (dtype != FIB_DTYPE_F32 && dtype != FIB_DTYPE_F64)
        return fib_error(FIB_E_INVALID,
                         "fib_compress_ex: dtype %d is not 0, FIB_DTYPE_F32 or FIB_DTYPE_F64",
                         (int)dtype);
    return compress(g, c, dtype, options && options->borrow, NULL, out);
}

/* fib_compress_options.borrow: a dense group (or a block with
 * compress_borrowed, a convolution) whose units and source units are all
 * kept is, by Eq. 10, its own weights (one term added to 0.0, divided by
 * 1); the base block borrows them where the model holds them (a mapped
 * file's pages, the caller's arrays) instead of copying them. Sets *done
 * when it made the block. */
static int32_t borrow_unmerged(const fib_graph *g, int32_t group, const fib_partition *parts,
                               fib_graph *base, const int32_t *ids, bool *done)
{
    const fib_group *grp = &g->groups[group];
    *done = false;
    if (grp->ops && grp->ops->compress_borrowed) {
        for (int32_t s = 0; s < grp->n_sources; s++)
            if (!fib_partition_is_discrete(&parts[grp->sources[s]]))
                return FIB_OK;
        if (!fib_partition_is_discrete(&parts[group]))
            return FIB_OK;
        int32_t status = grp->ops->compress_borrowed(g, group, base, ids);
        *done = status == FIB_OK;
        return status;
    }
    const fib_dense *d = grp->ops && grp->ops->matrix ? grp->ops->matrix(g, group) : NULL;
    if (!d || grp->n_sources != 1 || !fib_partition_is_discrete(&parts[group]) ||
        !fib_partition_is_discrete(&parts[grp->sources[0]]))
        return FIB_OK;
    int32_t id;
    int32_t status = d->transposed
                         ? fib_graph_add_dense_transposed(base, ids[grp->sources[0]], grp->n_units,
                                                          d->dtype, d->weights, d->ld, d->bias,
                                                          0, &id)
                         : fib_graph_add_dense(base, ids[grp->sources[0]], grp->n_units,
                                               d->dtype, d->weights, d->ld, d->bias, 0, &id);
    /* a weight changed in borrowed memory: named as fib_compress names it */
    if (status == FIB_E_NONFINITE && fib_group_find_nonfinite(g, group, "fib_compress"))
        return FIB_E_NONFINITE;
    *done = status == FIB_OK;
    return status;
}

static int32_t compress(const fib_graph *g, const fib_coloring *c, int32_t dtype,
                        bool borrow, const bool *owned, fib_base **out)
{
    int32_t status = fib_coloring_check_graph(g, c);
    if (status)
        return status;
    if (!out)
        return fib_error(FIB_E_NULL, "fib_compress: out is NULL");
    fib_base *b = fib_calloc(1, sizeof *b);
    int32_t *ids = fib_alloc(g->n_groups > 0 ? g->n_groups : 1, sizeof *ids);
    if (!b || !ids) {
        fib_free(b);
        fib_free(ids);
        return fib_error(FIB_E_NOMEM, "fib_compress: out of memory");
    }
    b->n_groups = g->n_groups;
    /* scales (FIB_TOL_SCALED) only on hidden dense groups read by dense ones */
    for (int32_t i = 0; c->scales && i < g->n_groups && !status; i++) {
        bool scaled = c->scales[i] && !fib_group_is_input(g, i) && !fib_group_is_output(g, i);
        int32_t act = g->groups[i].activation;
        if (scaled && !g->groups[i].ops->compress_scaled)
            status = fib_error(FIB_E_UNSUPPORTED,
                               "fib_compress: group %d has scales but is not a dense group",
                               (int)i);
        /* s * h_r is the activity only if act(s z) = s act(z) for s > 0. */
        else if (scaled && act != FIB_ACT_LINEAR && act != FIB_ACT_RELU &&
                 act != FIB_ACT_LEAKY_RELU)
            status = fib_error(FIB_E_UNSUPPORTED,
                               "fib_compress: group %d has scales but its activation (%s) is "
                               "not positively homogeneous (linear, relu, leaky_relu)",
                               (int)i, fib_activation_name(act));
        for (int32_t h = i + 1; scaled && h < g->n_groups && !status; h++)
            for (int32_t s = 0; s < g->groups[h].n_sources && !status; s++)
                if (g->groups[h].sources[s] == i && !g->groups[h].ops->compress_scaled)
                    status = fib_error(FIB_E_UNSUPPORTED,
                                       "fib_compress: scaled group %d is read by group %d, "
                                       "which is not dense", (int)i, (int)h);
    }
    if (!status)
        status = effective_projection(g, c, &b->projection);
    if (!status)
        status = fib_graph_create(&b->graph);
    /* each block is read once, group after group: the pages of a mapped
     * model file leave the process until their group's turn and after it,
     * so that the file is not resident next to the merged blocks being made
     * (a page read again comes back from the page cache; a borrowed block's
     * when the base is read) */
    for (int32_t i = 0; i < g->n_groups && !status; i++)
        fib_group_drop_pages(g, i);
    for (int32_t i = 0; i < g->n_groups && !status; i++) {
        int32_t made = b->graph ? b->graph->n_groups : 0;
        ids[i] = i; /* the base has the same groups, in the same order */
        bool borrowed = false;
        if (borrow && !(owned && owned[i]) && !c->scales && !fib_group_is_input(g, i))
            status = borrow_unmerged(g, i, b->projection, b->graph, ids, &borrowed);
        if (status || borrowed)
            ;
        else if (fib_group_is_input(g, i))
            status = fib_graph_add_input(b->graph, b->projection[i].n_classes, &ids[i]);
        else if (c->scales && g->groups[i].ops->compress_scaled)
            status = g->groups[i].ops->compress_scaled(g, i, b->projection, c->scales, dtype,
                                                       b->graph, ids);
        else if (g->groups[i].ops->compress_totals && fib_merge_totals_find(c, g, i, b->projection))
            status = g->groups[i].ops->compress_totals(g, i, b->projection,
                                                       fib_merge_totals_find(c, g, i, b->projection),
                                                       b->graph, ids);
        else
            status = g->groups[i].ops->compress(g, i, b->projection, b->graph, ids);
        if (!status)
            status = fib_copy_group_attributes(g, i, b->graph, i);
        fib_group_drop_pages(g, i);
        for (int32_t k = made; dtype == FIB_DTYPE_F32 && !status && k < b->graph->n_groups; k++)
            status = fib_narrow_block(b->graph, k);
    }
    if (!status)
        status = check_base_finite(g, b->graph);
    fib_free(ids);
    if (status) {
        fib_base_free(b);
        return status;
    }
    *out = b;
    return FIB_OK;
}

static bool parameterless(const fib_graph *g, int32_t group)
{
    const fib_block_ops *ops = g->groups[group].ops;
    return ops && !ops->budget_parameters && ops->num_parameters &&
           ops->num_parameters(g, group) == 0;
}

/* Counted from the projection alone: a block's budget_parameters gives its
 * parameters at any widths, and the base's widths are the projection's
 * classes; a block without parameters (pool, sum) has none in the base
 * either. Another block without it, one whose base keeps equal runs of units
 * (grouped convolution) and a colouring with scales (whose base may be
 * refused) are FIB_E_UNSUPPORTED: such a base is counted by making it. */
int32_t fib_base_count(const fib_graph *g, const fib_coloring *c, int64_t *units,
                       int64_t *parameters, int64_t n_groups)
{
    if (!g || !c)
        return fib_error(FIB_E_NULL, "fib_base_count: NULL argument");
    int32_t status = fib_coloring_check_graph(g, c);
    if (status)
        return status;
    if (n_groups < g->n_groups)
        return fib_error(FIB_E_BUFFER, "fib_base_count: the graph has %d groups, got room for %lld",
                         (int)g->n_groups, (long long)n_groups);
    if (c->scales)
        return fib_error(FIB_E_UNSUPPORTED,
                         "fib_base_count: a colouring with scales is counted by fib_compress");
    for (int32_t i = 0; i < g->n_groups; i++) {
        const fib_block_ops *ops = g->groups[i].ops;
        if (fib_group_is_input(g, i))
            continue;
        if (!ops || (!ops->budget_parameters && !parameterless(g, i)) ||
            (ops->unit_runs && ops->unit_runs(g, i) != 1))
            return fib_error(FIB_E_UNSUPPORTED,
                             "fib_base_count: group %d (%s) is counted by fib_compress",
                             (int)i, ops && ops->name ? ops->name : "?");
    }
    fib_partition *parts = NULL;
    status = effective_projection(g, c, &parts);
    int64_t *width = status ? NULL : fib_alloc(g->n_groups > 0 ? g->n_groups : 1, sizeof *width);
    if (!status && !width)
        status = fib_error(FIB_E_NOMEM, "fib_base_count: out of memory");
    for (int32_t i = 0; i < g->n_groups && !status; i++)
        width[i] = parts[i].n_classes;
    for (int32_t i = 0; i < g->n_groups && !status; i++) {
        if (units)
            units[i] = width[i];
        if (parameters)
            parameters[i] = fib_group_is_input(g, i) || parameterless(g, i)
                                ? 0
                                : g->groups[i].ops->budget_parameters(g, i, width);
    }
    fib_free(width);
    free_projection(parts, g->n_groups);
    return status;
}

const fib_graph *fib_base_graph(const fib_base *b)
{
    return b ? b->graph : NULL;
}

int32_t fib_base_original_units(const fib_base *base, int32_t group, int64_t *n_units)
{
    if (!base || !n_units)
        return fib_error(FIB_E_NULL, "fib_base_original_units: %s is NULL",
                         base ? "n_units" : "base");
    if (group < 0 || group >= base->n_groups)
        return fib_error(FIB_E_RANGE, "fib_base_original_units: group %d out of range "
                         "(%d groups)", (int)group, (int)base->n_groups);
    *n_units = base->projection[group].n_units;
    return FIB_OK;
}

int32_t fib_base_projection(const fib_base *b, int32_t group,
                            int64_t *projection, int64_t n_units)
{
    if (!b || !projection)
        return fib_error(FIB_E_NULL, "fib_base_projection: NULL argument");
    if (group < 0 || group >= b->n_groups)
        return fib_error(FIB_E_RANGE, "fib_base_projection: group %d out of range (%d groups)",
                         (int)group, (int)b->n_groups);
    const fib_partition *p = &b->projection[group];
    if (n_units < p->n_units)
        return fib_error(FIB_E_BUFFER, "fib_base_projection: group %d needs %lld entries, got %lld",
                         (int)group, (long long)p->n_units, (long long)n_units);
    for (int64_t i = 0; i < p->n_units; i++)
        projection[i] = p->color[i];
    return FIB_OK;
}
