/* Constant positions prepended to a sequence (a Vision Transformer's class
 * token): z[p][i] = values[p][i] for the first k positions, then source
 * unit reads[i] at the source's positions in row-major order. The new group
 * is a sequence (cols = 1) of k + rows x cols positions, so an image source
 * becomes the sequence of its patches (torchvision's reshape and permute
 * after the patch convolution). Units of one class carry the same constants
 * (their values are part of the fiber signature). */
#include "blocks/blocks.h"
#include "model/gather.h"

#include <math.h>
#include <string.h>

typedef struct fib_prepend {
    int64_t n_positions; /* k */
    int32_t dtype;       /* of values: as given by users, float64 in bases */
    void *values;        /* k x n_units, owned; NULL when k = 0 */
    int64_t *reads;      /* unit i reads source unit reads[i]; NULL: i */
} fib_prepend;

static const fib_block_ops fib_prepend_ops;

static const fib_prepend *prepend_of(const fib_graph *g, int32_t group)
{
    return (const fib_prepend *)g->groups[group].block;
}

static double value_at(const fib_prepend *p, int64_t at)
{
    return fib_load(p->dtype, p->values, at);
}

static void prepend_free(void *block)
{
    fib_prepend *p = block;
    if (!p)
        return;
    fib_free(p->values);
    fib_free(p->reads);
    fib_free(p);
}

/* Takes `values` and `reads` over (freed on failure too). */
static int32_t push_prepend(fib_graph *g, int32_t source, int64_t k, int32_t dtype,
                            int64_t n_units, void *values, int64_t *reads,
                            int32_t *group_out)
{
    int64_t steps = fib_group_positions(&g->groups[source]);
    fib_prepend *p = NULL;
    int32_t status = FIB_OK;
    if (k > FIB_MAX_UNITS || steps > FIB_MAX_UNITS - k)
        status = fib_error(FIB_E_OVERFLOW, "group %d: %lld prepended positions overflow",
                           (int)g->n_groups, (long long)k);
    else if (!(p = fib_calloc(1, sizeof *p)))
        status = fib_error(FIB_E_NOMEM, "out of memory adding prepended positions");
    if (status) {
        fib_free(values);
        fib_free(reads);
        return status;
    }
    *p = (fib_prepend){.n_positions = k, .dtype = dtype, .values = values, .reads = reads};
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
    for (int64_t x = 0; x < count; x++)
        if (!isfinite(fib_load(dtype, values, x)))
            return fib_error(FIB_E_NONFINITE, "%s: group %d: value [%lld, %lld] is not "
                             "finite", fn, (int)group, (long long)(x / n), (long long)(x % n));
    void *copy = NULL;
    if (count > 0) {
        copy = fib_alloc(count, fib_dtype_size(dtype));
        if (!copy)
            return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
        memcpy(copy, values, (size_t)count * fib_dtype_size(dtype));
    }
    return push_prepend(g, source, n_positions, n_positions > 0 ? dtype : FIB_DTYPE_F64, n,
                        copy, NULL, group_out);
}

/* Model files: float64 values and a gather, taken over. */
int32_t fib_graph_add_prepend_owned(fib_graph *g, int32_t source, int64_t n_positions,
                                    int64_t n_units, double *values, int64_t *reads,
                                    int32_t *group_out)
{
    return push_prepend(g, source, n_positions, FIB_DTYPE_F64, n_units, values, reads,
                        group_out);
}

/* Fibers: the source unit's colour and the unit's constants. */
static int64_t prepend_fiber_width(const fib_graph *g, int32_t group,
                                   const fib_partition *parts)
{
    (void)parts;
    return 1 + prepend_of(g, group)->n_positions;
}

static int32_t prepend_fiber_fill(const fib_graph *g, int32_t group,
                                  const fib_partition *parts, fib_signature *sig,
                                  int64_t offset)
{
    const fib_prepend *p = prepend_of(g, group);
    const fib_partition *src = &parts[g->groups[group].sources[0]];
    int64_t n = g->groups[group].n_units;
    for (int64_t i = 0; i < n; i++) {
        double *val = sig->value + i * sig->n_coords + offset;
        double *tol = sig->tol + i * sig->n_coords + offset;
        val[0] = (double)src->color[fib_gather_at(p->reads, i)];
        tol[0] = FIB_TOL_LABEL;
        for (int64_t q = 0; q < p->n_positions; q++) {
            val[1 + q] = value_at(p, q * n + i);
            tol[1 + q] = fib_rounding_tol(p->dtype, 1, fabs(val[1 + q]));
        }
    }
    return FIB_OK;
}

/* Opfibers: a source unit receives, unchanged, the errors of the units
 * that copy it: their count per opfiber class of this group. */
static int64_t prepend_opfiber_width(const fib_graph *g, int32_t group, int32_t source_index,
                                     const fib_partition *parts, const fib_partition *fibers)
{
    (void)g, (void)source_index, (void)fibers;
    return parts[group].n_classes;
}

static int32_t prepend_opfiber_fill(const fib_graph *g, int32_t group, int32_t source_index,
                                    const fib_partition *parts, const fib_partition *fibers,
                                    fib_signature *sig, int64_t offset)
{
    (void)source_index, (void)fibers;
    const int64_t *reads = prepend_of(g, group)->reads;
    int64_t k = parts[group].n_classes;
    for (int64_t j = 0; j < sig->n_units; j++) {
        memset(sig->value + j * sig->n_coords + offset, 0, (size_t)k * sizeof(double));
        memset(sig->tol + j * sig->n_coords + offset, 0, (size_t)k * sizeof(double));
    }
    for (int64_t i = 0; i < g->groups[group].n_units; i++)
        sig->value[fib_gather_at(reads, i) * sig->n_coords + offset + parts[group].color[i]] += 1.0;
    return FIB_OK;
}

static void prepend_forward(const fib_graph *g, int32_t group, int64_t batch,
                            double *const *activity, double *out)
{
    const fib_group *grp = &g->groups[group];
    const fib_group *src = &g->groups[grp->sources[0]];
    const fib_prepend *p = prepend_of(g, group);
    const double *x = activity[grp->sources[0]];
    int64_t n = grp->n_units, n_src = src->n_units, steps = fib_group_positions(src);
    for (int64_t b = 0; b < batch; b++) {
        double *yb = out + b * fib_group_activity_width(grp);
        for (int64_t x = 0; x < p->n_positions * n; x++)
            yb[x] = value_at(p, x);
        for (int64_t t = 0; t < steps; t++) {
            const double *xt = x + (b * steps + t) * n_src;
            double *yt = yb + (p->n_positions + t) * n;
            for (int64_t i = 0; i < n; i++)
                yt[i] = xt[fib_gather_at(p->reads, i)];
        }
    }
}

/* Base unit c: the mean constants of its class (equal in an exact
 * colouring) and the source class of its first member. */
static int32_t prepend_compress(const fib_graph *g, int32_t group, const fib_partition *parts,
                                fib_graph *base, const int32_t *base_ids)
{
    const fib_prepend *p = prepend_of(g, group);
    int32_t source = g->groups[group].sources[0];
    const fib_partition *own = &parts[group];
    int64_t k = own->n_classes, n = own->n_units, q_max = p->n_positions;
    int64_t *reads = NULL;
    int32_t status = fib_gather_for_base(parts, group, source, p->reads, &reads);
    if (status)
        return status;
    double *values = q_max > 0 ? fib_calloc(q_max * k, sizeof *values) : NULL;
    int64_t *sizes = fib_alloc(k, sizeof *sizes);
    if ((q_max > 0 && !values) || !sizes) {
        fib_free(values);
        fib_free(sizes);
        fib_free(reads);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory merging", (int)group);
    }
    fib_partition_class_sizes(own, sizes);
    for (int64_t q = 0; q < q_max; q++)
        for (int64_t i = 0; i < n; i++)
            values[q * k + own->color[i]] += value_at(p, q * n + i) / (double)sizes[own->color[i]];
    fib_free(sizes);
    int32_t id;
    return push_prepend(base, base_ids[source], q_max, FIB_DTYPE_F64, k, values, reads, &id);
}

static int32_t prepend_lift(const fib_graph *base, int32_t group, const fib_partition *parts,
                            fib_graph *full, const int32_t *full_ids)
{
    const fib_prepend *p = prepend_of(base, group);
    int32_t source = base->groups[group].sources[0];
    const fib_partition *own = &parts[group];
    int64_t n = own->n_units, k = base->groups[group].n_units, q_max = p->n_positions;
    int64_t *reads = NULL;
    int32_t status = fib_gather_for_lift(parts, group, source, p->reads, &reads);
    if (status)
        return status;
    double *values = q_max > 0 ? fib_alloc(q_max * n, sizeof *values) : NULL;
    if (q_max > 0 && !values) {
        fib_free(reads);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory lifting", (int)group);
    }
    for (int64_t q = 0; q < q_max; q++)
        for (int64_t i = 0; i < n; i++)
            values[q * n + i] = value_at(p, q * k + own->color[i]);
    int32_t id;
    return push_prepend(full, full_ids[source], q_max, FIB_DTYPE_F64, n, values, reads, &id);
}

static int64_t prepend_num_parameters(const fib_graph *g, int32_t group)
{
    return prepend_of(g, group)->n_positions * g->groups[group].n_units;
}

static bool prepend_tensor(const fib_graph *g, int32_t group, int32_t index,
                           fib_tensor_view *out)
{
    const fib_prepend *p = prepend_of(g, group);
    int64_t n = g->groups[group].n_units;
    if (index != 0 || p->n_positions == 0)
        return false;
    *out = (fib_tensor_view){"values", p->dtype, p->values, 2, {p->n_positions, n, 1, 1}, n};
    return true;
}

/* The number of prepended positions, then per unit the source unit read. */
static int64_t prepend_params(const fib_graph *g, int32_t group, int64_t *out,
                              int64_t capacity)
{
    const fib_prepend *p = prepend_of(g, group);
    int64_t n = g->groups[group].n_units;
    for (int64_t x = 0; x < 1 + n && x < capacity; x++)
        out[x] = x == 0 ? p->n_positions : fib_gather_at(p->reads, x - 1);
    return 1 + n;
}

static const fib_block_ops fib_prepend_ops = {
    .name = "prepend",
    .free_block = prepend_free,
    .fiber_width = prepend_fiber_width,
    .fiber_fill = prepend_fiber_fill,
    .opfiber_width = prepend_opfiber_width,
    .opfiber_fill = prepend_opfiber_fill,
    .forward = prepend_forward,
    .compress = prepend_compress,
    .lift = prepend_lift,
    .num_parameters = prepend_num_parameters,
    .tensor = prepend_tensor,
    .params = prepend_params,
};
