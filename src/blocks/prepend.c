/* Constant positions prepended to a sequence (a Vision Transformer's class
 * token): z[p][i] = values[p][i] for the first k positions, then source
 * unit reads[i] at the source's positions in row-major order. The new group
 * is a sequence (cols = 1) of k + rows x cols positions, so an image source
 * becomes the sequence of its patches (torchvision's reshape and permute
 * after the patch convolution). Units of one class carry the same constants
 * (unit_constants.c: they are part of the fiber signature). */
#include "blocks/blocks.h"
#include "model/gather.h"

#include <string.h>

typedef struct fib_prepend {
    fib_unit_constants values; /* k = values.rows rows of n_units */
    int64_t *reads;            /* unit i reads source unit reads[i]; NULL: i */
} fib_prepend;

static const fib_block_ops fib_prepend_ops;

static const fib_prepend *prepend_of(const fib_graph *g, int32_t group)
{
    return (const fib_prepend *)g->groups[group].block;
}

static void prepend_free(void *block)
{
    fib_prepend *p = block;
    if (!p)
        return;
    fib_unit_constants_free(&p->values);
    fib_free(p->reads);
    fib_free(p);
}

/* Takes `values` and `reads` over (freed on failure too). */
static int32_t push_prepend(fib_graph *g, int32_t source, int64_t n_units,
                            fib_unit_constants values, int64_t *reads, int32_t *group_out)
{
    int64_t k = values.rows, steps = fib_group_positions(&g->groups[source]);
    fib_prepend *p = NULL;
    int32_t status = FIB_OK;
    if (k > FIB_MAX_UNITS || steps > FIB_MAX_UNITS - k)
        status = fib_error(FIB_E_OVERFLOW, "group %d: %lld prepended positions overflow",
                           (int)g->n_groups, (long long)k);
    else if (!(p = fib_calloc(1, sizeof *p)))
        status = fib_error(FIB_E_NOMEM, "out of memory adding prepended positions");
    if (status) {
        fib_unit_constants_free(&values);
        fib_free(reads);
        return status;
    }
    *p = (fib_prepend){.values = values, .reads = reads};
    fib_group grp = {.op = FIB_OP_PREPEND, .n_units = n_units, .rows = k + steps, .cols = 1,
                     .activation = FIB_ACT_LINEAR, .n_sources = 1, .sources = {source, 0},
                     .ops = &fib_prepend_ops, .block = p};
    status = fib_graph_push_group(g, &grp, group_out);
    if (status)
        prepend_free(p);
    return status;
}

int32_t fib_graph_add_prepend(fib_graph *g, int32_t source, int64_t n_positions,
                              int32_t dtype, const void *values, int32_t *group_out)
{
    static const char fn[] = "fib_graph_add_prepend";
    int32_t status = fib_graph_check_group(g, source, fn);
    if (status)
        return status;
    int32_t group = g->n_groups;
    if (!group_out || (n_positions > 0 && !values))
        return fib_error(FIB_E_NULL, "%s: %s is NULL", fn, group_out ? "values" : "group_out");
    if (n_positions < 0)
        return fib_error(FIB_E_SHAPE, "%s: group %d: %lld prepended positions (at least 0)",
                         fn, (int)group, (long long)n_positions);
    if (n_positions > 0 && !fib_dtype_size(dtype))
        return fib_error(FIB_E_INVALID, "%s: group %d: unknown dtype %d", fn, (int)group,
                         (int)dtype);
    int64_t n = g->groups[source].n_units, count;
    if (!fib_mul_i64(n_positions, n, &count) || count > FIB_MAX_UNITS)
        return fib_error(FIB_E_OVERFLOW, "%s: group %d: %lld x %lld values exceed 2^40", fn,
                         (int)group, (long long)n_positions, (long long)n);
    fib_unit_constants copy;
    status = fib_unit_constants_copy(&copy, dtype, n_positions, n, values, fn, group);
    if (status)
        return status;
    return push_prepend(g, source, n, copy, NULL, group_out);
}

/* Model files: float64 values (k x n_units) and a gather, taken over. */
int32_t fib_graph_add_prepend_owned(fib_graph *g, int32_t source, int64_t n_positions,
                                    int64_t n_units, double *values, int64_t *reads,
                                    int32_t *group_out)
{
    fib_unit_constants table = {.dtype = FIB_DTYPE_F64, .rows = n_positions,
                                .values = values};
    return push_prepend(g, source, n_units, table, reads, group_out);
}

/* Fibers: the source unit's colour and the unit's constants. */
static int64_t prepend_fiber_width(const fib_graph *g, int32_t group,
                                   const fib_partition *parts)
{
    (void)parts;
    return fib_unit_constants_fiber_width(&prepend_of(g, group)->values);
}

static int32_t prepend_fiber_fill(const fib_graph *g, int32_t group,
                                  const fib_partition *parts, fib_signature *sig,
                                  int64_t offset)
{
    const fib_prepend *p = prepend_of(g, group);
    fib_unit_constants_fiber_fill(&p->values, &parts[g->groups[group].sources[0]], p->reads,
                                  g->groups[group].n_units, sig, offset);
    return FIB_OK;
}

/* Opfibers: a source unit receives, unchanged, the errors of the units
 * that copy it (after the first k positions; the constants receive none). */
static int32_t prepend_opfiber_fill(const fib_graph *g, int32_t group, int32_t source_index,
                                    const fib_partition *parts, const fib_partition *fibers,
                                    fib_signature *sig, int64_t offset)
{
    (void)source_index, (void)fibers;
    return fib_copy_opfiber_fill(g, group, prepend_of(g, group)->reads, parts, sig, offset);
}

static void prepend_forward(const fib_graph *g, int32_t group, int64_t batch,
                            double *const *activity, double *out)
{
    const fib_group *grp = &g->groups[group];
    const fib_group *src = &g->groups[grp->sources[0]];
    const fib_prepend *p = prepend_of(g, group);
    const double *x = activity[grp->sources[0]];
    int64_t n = grp->n_units, n_src = src->n_units, steps = fib_group_positions(src);
    int64_t k = p->values.rows;
    for (int64_t b = 0; b < batch; b++) {
        double *yb = out + b * fib_group_activity_width(grp);
        for (int64_t q = 0; q < k; q++)
            for (int64_t i = 0; i < n; i++)
                yb[q * n + i] = fib_unit_constant(&p->values, n, q, i);
        for (int64_t t = 0; t < steps; t++) {
            const double *xt = x + (b * steps + t) * n_src;
            double *yt = yb + (k + t) * n;
            for (int64_t i = 0; i < n; i++)
                yt[i] = xt[fib_gather_at(p->reads, i)];
        }
    }
}

static int32_t prepend_compress(const fib_graph *g, int32_t group, const fib_partition *parts,
                                fib_graph *base, const int32_t *base_ids)
{
    const fib_prepend *b = prepend_of(g, group);
    return fib_unit_constants_compress(g, group, parts, base, base_ids, &b->values, b->reads,
                                       push_prepend);
}

static int32_t prepend_lift(const fib_graph *base, int32_t group, const fib_partition *parts,
                            fib_graph *full, const int32_t *full_ids)
{
    const fib_prepend *b = prepend_of(base, group);
    return fib_unit_constants_lift_block(base, group, parts, full, full_ids, &b->values,
                                         b->reads, push_prepend);
}

static int64_t prepend_num_parameters(const fib_graph *g, int32_t group)
{
    return prepend_of(g, group)->values.rows * g->groups[group].n_units;
}

static bool prepend_tensor(const fib_graph *g, int32_t group, int32_t index,
                           fib_tensor_view *out)
{
    const fib_unit_constants *t = &prepend_of(g, group)->values;
    int64_t n = g->groups[group].n_units;
    if (index != 0 || t->rows == 0)
        return false;
    *out = (fib_tensor_view){"values", t->dtype, t->values, 2, {t->rows, n, 1, 1}, n, 0};
    return true;
}

/* The number of prepended positions, then per unit the source unit read. */
static int64_t prepend_params(const fib_graph *g, int32_t group, int64_t *out,
                              int64_t capacity)
{
    const fib_prepend *p = prepend_of(g, group);
    int64_t n = g->groups[group].n_units;
    for (int64_t x = 0; x < 1 + n && x < capacity; x++)
        out[x] = x == 0 ? p->values.rows : fib_gather_at(p->reads, x - 1);
    return 1 + n;
}

static const fib_block_ops fib_prepend_ops = {
    .name = "prepend",
    .free_block = prepend_free,
    .fiber_width = prepend_fiber_width,
    .fiber_fill = prepend_fiber_fill,
    .opfiber_width = fib_copy_opfiber_width,
    .opfiber_fill = prepend_opfiber_fill,
    .forward = prepend_forward,
    .compress = prepend_compress,
    .lift = prepend_lift,
    .num_parameters = prepend_num_parameters,
    .tensor = prepend_tensor,
    .params = prepend_params,
};
