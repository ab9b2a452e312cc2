/* A constant added per unit and position: z[p][i] = x[p][reads[i]] +
 * shift[p][i] (learned position embeddings: a Vision Transformer's, GPT-2's).
 * Units of one class have equal shifts at every position: the shifts are
 * part of the fiber signature. */
#include "blocks/blocks.h"
#include "model/gather.h"

#include <math.h>
#include <string.h>

typedef struct fib_position_shift {
    int32_t dtype;   /* of shift: as given by users, float64 in bases */
    void *shift;     /* positions x n_units, owned */
    int64_t *reads;  /* unit i reads source unit reads[i]; NULL: i */
} fib_position_shift;

static const fib_block_ops fib_position_shift_ops;

static const fib_position_shift *shift_of(const fib_graph *g, int32_t group)
{
    return (const fib_position_shift *)g->groups[group].block;
}

static double shift_at(const fib_position_shift *s, int64_t at)
{
    return fib_load(s->dtype, s->shift, at);
}

static void shift_free(void *block)
{
    fib_position_shift *s = block;
    if (!s)
        return;
    fib_free(s->shift);
    fib_free(s->reads);
    fib_free(s);
}

/* Takes `shift` and `reads` over (freed on failure too). */
static int32_t push_shift(fib_graph *g, int32_t source, int32_t dtype, int64_t n_units,
                          void *shift, int64_t *reads, int32_t *group_out)
{
    fib_position_shift *s = fib_calloc(1, sizeof *s);
    if (!s) {
        fib_free(shift);
        fib_free(reads);
        return fib_error(FIB_E_NOMEM, "out of memory adding a position shift");
    }
    *s = (fib_position_shift){.dtype = dtype, .shift = shift, .reads = reads};
    fib_group grp = {.op = FIB_OP_POSITION_SHIFT, .n_units = n_units,
                     .activation = FIB_ACT_LINEAR, .n_sources = 1, .sources = {source, 0},
                     .ops = &fib_position_shift_ops, .block = s};
    int32_t status = fib_graph_push_group(g, &grp, group_out);
    if (status)
        shift_free(s);
    return status;
}

int32_t fib_graph_add_position_shift(fib_graph *g, int32_t source, int32_t dtype,
                                     const void *shift, int32_t *group_out)
{
    static const char fn[] = "fib_graph_add_position_shift";
    int32_t status = fib_graph_check_group(g, source, fn);
    if (status)
        return status;
    int32_t group = g->n_groups;
    if (!shift || !group_out)
        return fib_error(FIB_E_NULL, "%s: %s is NULL", fn, shift ? "group_out" : "shift");
    if (!fib_dtype_size(dtype))
        return fib_error(FIB_E_INVALID, "%s: group %d: unknown dtype %d", fn, (int)group,
                         (int)dtype);
    const fib_group *src = &g->groups[source];
    int64_t n = src->n_units, count = fib_group_activity_width(src);
    for (int64_t x = 0; x < count; x++)
        if (!isfinite(fib_load(dtype, shift, x)))
            return fib_error(FIB_E_NONFINITE, "%s: group %d: shift [%lld, %lld] (position, "
                             "unit) is not finite", fn, (int)group, (long long)(x / n),
                             (long long)(x % n));
    void *copy = fib_alloc(count, fib_dtype_size(dtype));
    if (!copy)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    memcpy(copy, shift, (size_t)count * fib_dtype_size(dtype));
    return push_shift(g, source, dtype, n, copy, NULL, group_out);
}

/* Model files: float64 shifts and a gather, taken over. */
int32_t fib_graph_add_position_shift_owned(fib_graph *g, int32_t source, int64_t n_units,
                                           double *shift, int64_t *reads, int32_t *group_out)
{
    return push_shift(g, source, FIB_DTYPE_F64, n_units, shift, reads, group_out);
}

/* Fibers: the source unit's colour and the unit's shift at every position. */
static int64_t shift_fiber_width(const fib_graph *g, int32_t group, const fib_partition *parts)
{
    (void)parts;
    return 1 + fib_group_positions(&g->groups[group]);
}

static int32_t shift_fiber_fill(const fib_graph *g, int32_t group, const fib_partition *parts,
                                fib_signature *sig, int64_t offset)
{
    const fib_position_shift *s = shift_of(g, group);
    const fib_partition *src = &parts[g->groups[group].sources[0]];
    int64_t n = g->groups[group].n_units, positions = fib_group_positions(&g->groups[group]);
    for (int64_t i = 0; i < n; i++) {
        double *val = sig->value + i * sig->n_coords + offset;
        double *tol = sig->tol + i * sig->n_coords + offset;
        val[0] = (double)src->color[fib_gather_at(s->reads, i)];
        tol[0] = FIB_TOL_LABEL;
        for (int64_t p = 0; p < positions; p++) {
            val[1 + p] = shift_at(s, p * n + i);
            tol[1 + p] = fib_rounding_tol(s->dtype, 1, fabs(val[1 + p]));
        }
    }
    return FIB_OK;
}

/* Opfibers: a source unit receives, unchanged, the errors of the units
 * reading it: their count per opfiber class of this group. */
static int64_t shift_opfiber_width(const fib_graph *g, int32_t group, int32_t source_index,
                                   const fib_partition *parts, const fib_partition *fibers)
{
    (void)g, (void)source_index, (void)fibers;
    return parts[group].n_classes;
}

static int32_t shift_opfiber_fill(const fib_graph *g, int32_t group, int32_t source_index,
                                  const fib_partition *parts, const fib_partition *fibers,
                                  fib_signature *sig, int64_t offset)
{
    (void)source_index, (void)fibers;
    const int64_t *reads = shift_of(g, group)->reads;
    int64_t k = parts[group].n_classes;
    for (int64_t j = 0; j < sig->n_units; j++) {
        memset(sig->value + j * sig->n_coords + offset, 0, (size_t)k * sizeof(double));
        memset(sig->tol + j * sig->n_coords + offset, 0, (size_t)k * sizeof(double));
    }
    for (int64_t i = 0; i < g->groups[group].n_units; i++)
        sig->value[fib_gather_at(reads, i) * sig->n_coords + offset + parts[group].color[i]] += 1.0;
    return FIB_OK;
}

static void shift_forward(const fib_graph *g, int32_t group, int64_t batch,
                          double *const *activity, double *out)
{
    const fib_group *grp = &g->groups[group];
    const fib_position_shift *s = shift_of(g, group);
    const double *x = activity[grp->sources[0]];
    int64_t n = grp->n_units, n_src = g->groups[grp->sources[0]].n_units;
    int64_t positions = fib_group_positions(grp);
    for (int64_t b = 0; b < batch; b++)
        for (int64_t p = 0; p < positions; p++) {
            const double *xp = x + (b * positions + p) * n_src;
            double *yp = out + (b * positions + p) * n;
            for (int64_t i = 0; i < n; i++)
                yp[i] = xp[fib_gather_at(s->reads, i)] + shift_at(s, p * n + i);
        }
}

/* Base unit c: the mean shifts of its class (equal in an exact colouring)
 * and the source class of its first member. */
static int32_t shift_compress(const fib_graph *g, int32_t group, const fib_partition *parts,
                              fib_graph *base, const int32_t *base_ids)
{
    const fib_position_shift *s = shift_of(g, group);
    int32_t source = g->groups[group].sources[0];
    const fib_partition *own = &parts[group];
    int64_t k = own->n_classes, n = own->n_units;
    int64_t positions = fib_group_positions(&g->groups[group]);
    int64_t *reads = NULL;
    int32_t status = fib_gather_for_base(parts, group, source, s->reads, &reads);
    if (status)
        return status;
    double *shift = fib_calloc(positions * k, sizeof *shift);
    int64_t *sizes = fib_alloc(k, sizeof *sizes);
    if (!shift || !sizes) {
        fib_free(shift);
        fib_free(sizes);
        fib_free(reads);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory merging", (int)group);
    }
    fib_partition_class_sizes(own, sizes);
    for (int64_t p = 0; p < positions; p++)
        for (int64_t i = 0; i < n; i++)
            shift[p * k + own->color[i]] += shift_at(s, p * n + i) / (double)sizes[own->color[i]];
    fib_free(sizes);
    int32_t id;
    return push_shift(base, base_ids[source], FIB_DTYPE_F64, k, shift, reads, &id);
}

static int32_t shift_lift(const fib_graph *base, int32_t group, const fib_partition *parts,
                          fib_graph *full, const int32_t *full_ids)
{
    const fib_position_shift *s = shift_of(base, group);
    int32_t source = base->groups[group].sources[0];
    const fib_partition *own = &parts[group];
    int64_t n = own->n_units, k = base->groups[group].n_units;
    int64_t positions = fib_group_positions(&base->groups[group]);
    int64_t *reads = NULL;
    int32_t status = fib_gather_for_lift(parts, group, source, s->reads, &reads);
    if (status)
        return status;
    double *shift = fib_alloc(positions * n, sizeof *shift);
    if (!shift) {
        fib_free(reads);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory lifting", (int)group);
    }
    for (int64_t p = 0; p < positions; p++)
        for (int64_t i = 0; i < n; i++)
            shift[p * n + i] = shift_at(s, p * k + own->color[i]);
    int32_t id;
    return push_shift(full, full_ids[source], FIB_DTYPE_F64, n, shift, reads, &id);
}

static int64_t shift_num_parameters(const fib_graph *g, int32_t group)
{
    return fib_group_activity_width(&g->groups[group]);
}

static bool shift_tensor(const fib_graph *g, int32_t group, int32_t index, fib_tensor_view *out)
{
    const fib_group *grp = &g->groups[group];
    if (index != 0)
        return false;
    *out = (fib_tensor_view){"shift", shift_of(g, group)->dtype, shift_of(g, group)->shift, 2,
                             {fib_group_positions(grp), grp->n_units, 1, 1}, grp->n_units};
    return true;
}

/* Per unit, the source unit it reads. */
static int64_t shift_params(const fib_graph *g, int32_t group, int64_t *out, int64_t capacity)
{
    const int64_t *reads = shift_of(g, group)->reads;
    int64_t n = g->groups[group].n_units;
    for (int64_t i = 0; i < n && i < capacity; i++)
        out[i] = fib_gather_at(reads, i);
    return n;
}

static const fib_block_ops fib_position_shift_ops = {
    .name = "position_shift",
    .free_block = shift_free,
    .fiber_width = shift_fiber_width,
    .fiber_fill = shift_fiber_fill,
    .opfiber_width = shift_opfiber_width,
    .opfiber_fill = shift_opfiber_fill,
    .forward = shift_forward,
    .compress = shift_compress,
    .lift = shift_lift,
    .num_parameters = shift_num_parameters,
    .tensor = shift_tensor,
    .params = shift_params,
};
