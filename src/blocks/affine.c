/* Per-unit affine maps z[i] = scale[i] * x[i] + shift[i]: batch norm in
 * inference mode, kept as its own group so that its parameters are part of
 * every unit's signature. */
#include "blocks/blocks.h"
#include "model/gather.h"

#include <math.h>
#include <string.h>

typedef struct fib_affine {
    int32_t dtype;
    const void *scale;
    const void *shift; /* NULL: none */
    void *owned_scale;
    void *owned_shift;
    int64_t *reads; /* unit i reads source unit reads[i]; NULL: i */
} fib_affine;

static const fib_affine *affine_of(const fib_graph *g, int32_t group)
{
    return (const fib_affine *)g->groups[group].block;
}

static double scale_at(const fib_affine *a, int64_t i)
{
    return fib_load(a->dtype, a->scale, i);
}

static double shift_at(const fib_affine *a, int64_t i)
{
    return fib_load_or(a->dtype, a->shift, i, 0.0);
}

static void affine_free(void *block)
{
    fib_affine *a = block;
    if (!a)
        return;
    fib_free(a->owned_scale);
    fib_free(a->owned_shift);
    fib_free(a->reads);
    fib_free(a);
}

static int32_t push_affine(fib_graph *g, int32_t source, int64_t n_units, fib_affine *a,
                           int32_t *group_out)
{
    fib_group grp = {.op = FIB_OP_AFFINE, .n_units = n_units, .activation = FIB_ACT_LINEAR,
                     .n_sources = 1, .sources = {source, 0}, .ops = &fib_affine_ops,
                     .block = a};
    int32_t status = fib_graph_push_group(g, &grp, group_out);
    if (status)
        affine_free(a);
    return status;
}

int32_t fib_graph_add_affine(fib_graph *g, int32_t source, int32_t dtype, const void *scale,
                             const void *shift, uint32_t flags, int32_t *group_out)
{
    static const char fn[] = "fib_graph_add_affine";
    int32_t status = fib_graph_check_group(g, source, fn);
    if (status)
        return status;
    int32_t group = g->n_groups;
    if (!scale || !group_out)
        return fib_error(FIB_E_NULL, "%s: %s is NULL", fn, scale ? "group_out" : "scale");
    size_t es;
    status = fib_check_dtype_and_flags(fn, group, dtype, flags, &es);
    if (status)
        return status;
    int64_t n = g->groups[source].n_units;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(fib_load(dtype, scale, i)) || (shift && !isfinite(fib_load(dtype, shift, i))))
            return fib_error(FIB_E_NONFINITE, "%s: group %d: %s %lld is not finite", fn,
                             (int)group, isfinite(fib_load(dtype, scale, i)) ? "shift" : "scale",
                             (long long)i);
    fib_affine *a = fib_calloc(1, sizeof *a);
    if (!a)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    *a = (fib_affine){.dtype = dtype, .scale = scale, .shift = shift};
    if (flags & FIB_COPY) {
        a->owned_scale = fib_alloc(n, es);
        a->owned_shift = shift ? fib_alloc(n, es) : NULL;
        if (!a->owned_scale || (shift && !a->owned_shift)) {
            affine_free(a);
            return fib_error(FIB_E_NOMEM, "%s: out of memory copying", fn);
        }
        memcpy(a->owned_scale, scale, (size_t)n * es);
        if (shift)
            memcpy(a->owned_shift, shift, (size_t)n * es);
        a->scale = a->owned_scale;
        a->shift = a->owned_shift;
    }
    return push_affine(g, source, n, a, group_out);
}

/* A float64 affine owning its parameters and gather (bases, lifts). */
static int32_t add_affine_owned(fib_graph *g, int32_t source, int64_t n_units, double *scale,
                                double *shift, int64_t *reads)
{
    fib_affine *a = fib_calloc(1, sizeof *a);
    if (!a) {
        fib_free(scale);
        fib_free(shift);
        fib_free(reads);
        return fib_error(FIB_E_NOMEM, "out of memory adding an affine block");
    }
    *a = (fib_affine){.dtype = FIB_DTYPE_F64, .scale = scale, .shift = shift,
                      .owned_scale = scale, .owned_shift = shift, .reads = reads};
    int32_t id;
    return push_affine(g, source, n_units, a, &id);
}

/* The same, giving the new group's id (model files). */
int32_t fib_graph_add_affine_gather(fib_graph *g, int32_t source, int64_t n_units,
                                    double *scale, double *shift, int64_t *reads,
                                    int32_t *group_out)
{
    int32_t status = add_affine_owned(g, source, n_units, scale, shift, reads);
    if (!status)
        *group_out = g->n_groups - 1;
    return status;
}

static int64_t affine_fiber_width(const fib_graph *g, int32_t group, const fib_partition *parts)
{
    (void)g, (void)group, (void)parts;
    return 3;
}

static int32_t affine_fiber_fill(const fib_graph *g, int32_t group, const fib_partition *parts,
                                 fib_signature *sig, int64_t offset)
{
    const fib_affine *a = affine_of(g, group);
    fib_gather_label_fill(g, group, parts, a->reads, sig, offset);
    for (int64_t i = 0; i < g->groups[group].n_units; i++) {
        fib_signature_put_weight(sig, i, offset + 1, a->dtype, scale_at(a, i));
        fib_signature_put_weight(sig, i, offset + 2, a->dtype, shift_at(a, i));
    }
    return FIB_OK;
}

/* Source unit j receives scale[i] times the error of each unit i reading it:
 * per class of this group, the summed scales (fib_per_class_opfiber_width). */

static int32_t affine_opfiber_fill(const fib_graph *g, int32_t group, int32_t source_index,
                                   const fib_partition *parts, const fib_partition *fibers,
                                   fib_signature *sig, int64_t offset)
{
    (void)source_index, (void)fibers;
    const fib_affine *a = affine_of(g, group);
    int64_t k = parts[group].n_classes;
    for (int64_t j = 0; j < sig->n_units; j++) {
        memset(sig->value + j * sig->n_coords + offset, 0, (size_t)k * sizeof(double));
        memset(sig->tol + j * sig->n_coords + offset, 0, (size_t)k * sizeof(double));
    }
    for (int64_t i = 0; i < g->groups[group].n_units; i++) {
        int64_t at = fib_gather_at(a->reads, i) * sig->n_coords + offset + parts[group].color[i];
        sig->value[at] += scale_at(a, i);
        sig->tol[at] += fib_rounding_tol(a->dtype, 1, fabs(scale_at(a, i)));
    }
    return FIB_OK;
}

/* The exact form of that contribution. A source unit read by one affine
 * unit i has one nonzero column, i's class, holding scale[i]: the full
 * form is mostly zeros (a convolution read by its batch norm: n units x n
 * classes). Here the row is (that class: a label; scale[i]), and (-1, 0)
 * for a unit whose full row is all zeros (read by no unit, or with a zero
 * scale). Two such rows are equal iff the full rows are, up to the same
 * allowances; a nonzero cell never comes within its allowance of zero, so
 * under FIB_TOL_EXACT units sharing a class share the column, and within a
 * column both forms chain the same values in the same order when the
 * affine is the source's only reader (no other coordinate cuts the units
 * first). Otherwise (a gather reading a source unit twice, another reader,
 * a recurrent source) width 0: the full form is used. */
static int64_t affine_opfiber_exact_width(const fib_graph *g, int32_t group,
                                          int32_t source_index, const fib_partition *parts,
                                          const fib_partition *fibers)
{
    (void)parts, (void)fibers;
    const fib_group *grp = &g->groups[group];
    const fib_group *src = &g->groups[grp->sources[source_index]];
    if (src->n_consumers != 1 || (src->ops && src->ops->recurrent))
        return 0;
    int32_t single = fib_gather_single_reader(affine_of(g, group)->reads, grp->n_units,
                                              src->n_units);
    return single < 0 ? single : single ? 2 : 0;
}

static int32_t affine_opfiber_exact_fill(const fib_graph *g, int32_t group,
                                         int32_t source_index, const fib_partition *parts,
                                         const fib_partition *fibers, fib_signature *sig,
                                         int64_t offset)
{
    (void)source_index, (void)fibers;
    const fib_affine *a = affine_of(g, group);
    for (int64_t j = 0; j < sig->n_units; j++) {
        fib_signature_put_label(sig, j, offset, -1);
        sig->value[j * sig->n_coords + offset + 1] = 0.0;
        sig->tol[j * sig->n_coords + offset + 1] = 0.0;
    }
    for (int64_t i = 0; i < g->groups[group].n_units; i++) {
        /* the full form's cell: its sum from 0.0 */
        double value = 0.0 + scale_at(a, i);
        if (value == 0.0)
            continue;
        int64_t j = fib_gather_at(a->reads, i);
        fib_signature_put_label(sig, j, offset, parts[group].color[i]);
        sig->value[j * sig->n_coords + offset + 1] = value;
        sig->tol[j * sig->n_coords + offset + 1] = 0.0 + fib_rounding_tol(a->dtype, 1, fabs(value));
    }
    return FIB_OK;
}

static void affine_forward(const fib_graph *g, int32_t group, int64_t batch,
                           double *const *activity, double *out)
{
    const fib_group *grp = &g->groups[group], *src = &g->groups[grp->sources[0]];
    const fib_affine *a = affine_of(g, group);
    const double *x = activity[grp->sources[0]];
    int64_t rows = batch * fib_group_positions(grp), n = grp->n_units;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++)
            out[r * n + i] = scale_at(a, i) * x[r * src->n_units + fib_gather_at(a->reads, i)] +
                             shift_at(a, i);
}

/* The block of a base (base unit c: the class means of scale and shift,
 * reading the source class of its first member) or of a lift (every unit
 * its class's), made in `out`. */
static int32_t remake(const fib_graph *g, int32_t group, const fib_partition *parts,
                      fib_graph *out, const int32_t *out_ids, bool lift)
{
    const fib_affine *a = affine_of(g, group);
    int32_t source = g->groups[group].sources[0];
    const fib_partition *own = &parts[group];
    int64_t k = own->n_classes, count = lift ? own->n_units : k;
    int64_t *reads = NULL;
    double *scale = fib_calloc(count, sizeof *scale);
    double *shift = a->shift ? fib_calloc(count, sizeof *shift) : NULL;
    int64_t *sizes = fib_alloc(k, sizeof *sizes);
    int32_t status = lift ? fib_gather_for_lift(parts, group, source, a->reads, &reads)
                          : fib_gather_for_base(parts, group, source, a->reads, &reads);
    if (!status && (!scale || (a->shift && !shift) || !sizes))
        status = fib_error(FIB_E_NOMEM, "group %d: out of memory %s", (int)group,
                           lift ? "lifting" : "merging");
    if (status) {
        fib_free(scale);
        fib_free(shift);
        fib_free(sizes);
        fib_free(reads);
        return status;
    }
    fib_partition_class_sizes(own, sizes);
    for (int64_t i = 0; i < own->n_units; i++) {
        int64_t c = own->color[i];
        if (lift) {
            scale[i] = scale_at(a, c);
            if (shift)
                shift[i] = shift_at(a, c);
            continue;
        }
        scale[c] += scale_at(a, i) / (double)sizes[c];
        if (shift)
            shift[c] += shift_at(a, i) / (double)sizes[c];
    }
    fib_free(sizes);
    return add_affine_owned(out, out_ids[source], count, scale, shift, reads);
}

static int32_t affine_compress(const fib_graph *g, int32_t group, const fib_partition *parts,
                               fib_graph *base, const int32_t *base_ids)
{
    return remake(g, group, parts, base, base_ids, false);
}

static int32_t affine_lift(const fib_graph *base, int32_t group, const fib_partition *parts,
                           fib_graph *full, const int32_t *full_ids)
{
    return remake(base, group, parts, full, full_ids, true);
}

static int64_t affine_num_parameters(const fib_graph *g, int32_t group)
{
    return g->groups[group].n_units * (affine_of(g, group)->shift ? 2 : 1);
}

static bool affine_tensor(const fib_graph *g, int32_t group, int32_t index, fib_tensor_view *out)
{
    const fib_affine *a = affine_of(g, group);
    int64_t n = g->groups[group].n_units;
    if (index == 0)
        *out = (fib_tensor_view){"scale", a->dtype, a->scale, 1, {n, 1, 1, 1}, 1, 0};
    else if (index == 1 && a->shift)
        *out = (fib_tensor_view){"shift", a->dtype, a->shift, 1, {n, 1, 1, 1}, 1, 0};
    else
        return false;
    return true;
}

/* Per unit, the source unit it reads. */
static int64_t affine_params(const fib_graph *g, int32_t group, int64_t *out, int64_t capacity)
{
    const fib_affine *a = affine_of(g, group);
    int64_t n = g->groups[group].n_units;
    for (int64_t i = 0; i < n && i < capacity; i++)
        out[i] = fib_gather_at(a->reads, i);
    return n;
}

/* ---- budgets ------------------------------------------------------------ */

static int32_t affine_budget_role(const fib_graph *g, int32_t group)
{
    bool same = fib_gather_is_identity(affine_of(g, group)->reads, g->groups[group].n_units,
                                       g->groups[g->groups[group].sources[0]].n_units);
    return same ? FIB_BUDGET_FOLLOWS : 0;
}

static double affine_budget_scale(const fib_graph *g, int32_t group, int64_t unit)
{
    return scale_at(affine_of(g, group), unit);
}

static int64_t affine_budget_parameters(const fib_graph *g, int32_t group, const int64_t *width)
{
    return width[group] * (affine_of(g, group)->shift ? 2 : 1);
}

static void affine_budget_backward(const fib_graph *g, int32_t group, int32_t source_index,
                                   const double *energy, double *src_energy)
{
    (void)source_index;
    const fib_affine *a = affine_of(g, group);
    for (int64_t i = 0; i < g->groups[group].n_units; i++)
        src_energy[fib_gather_at(a->reads, i)] += scale_at(a, i) * scale_at(a, i) * energy[i];
}

static double affine_budget_constant(const fib_graph *g, int32_t group, int64_t unit,
                                     const double *source_values)
{
    const fib_affine *a = affine_of(g, group);
    double in = source_values ? source_values[fib_gather_at(a->reads, unit)] : NAN;
    /* a zero scale makes the unit constant whatever its source does */
    return scale_at(a, unit) == 0 ? shift_at(a, unit) : scale_at(a, unit) * in + shift_at(a, unit);
}

/* Exact: a unit is its source unit scaled and shifted. */
static bool affine_budget_moments(const fib_graph *g, int32_t group, const double *const *mean,
                                  const double *const *var, double *pre_mean, double *pre_var)
{
    const fib_affine *a = affine_of(g, group);
    for (int64_t i = 0; i < g->groups[group].n_units; i++) {
        int64_t k = fib_gather_at(a->reads, i);
        double s = scale_at(a, i);
        pre_mean[i] = s == 0 ? shift_at(a, i) : s * mean[0][k] + shift_at(a, i);
        pre_var[i] = s * s * var[0][k];
    }
    return true;
}

static const char *const affine_tensor_keys[] = {"scale", "shift", NULL};

static int32_t affine_build(fib_graph *g, const fib_block_source *S, int32_t *id)
{
    int32_t st = fib_source_no_extras(S, true, false, affine_tensor_keys);
    if (st == FIB_OK)
        st = fib_source_expect_params(S, S->units);
    fib_stored_tensor t[2] = {{0}};
    if (st == FIB_OK)
        st = fib_source_vector(S, "scale", true, S->units, &t[0]);
    if (st == FIB_OK)
        st = fib_source_vector(S, "shift", false, S->units, &t[1]);
    int64_t *reads = NULL;
    if (st == FIB_OK)
        st = fib_source_read_gather(S, 0, S->units, fib_source_group(g, S, 0)->n_units, &reads);
    if (st != FIB_OK)
        return st;
    if (!reads) {
        fib_source_tensors s;
        st = fib_source_tensors_make(S, t, 2, &s);
        if (st != FIB_OK)
            return st;
        st = fib_graph_add_affine(g, S->sources[0], s.dtype, s.data[0],
                                  s.data[1], s.flags, id);
        fib_source_tensors_free(&s);
        return fib_source_done(S, st);
    }
    double *scale = NULL, *shift = NULL;
    st = fib_source_owned_copy(S, "scale", &t[0], false, &scale);
    if (st == FIB_OK)
        st = fib_source_owned_copy(S, "shift", &t[1], false, &shift);
    if (st != FIB_OK) {
        fib_free(scale);
        fib_free(reads);
        return st;
    }
    return fib_source_done(S, fib_graph_add_affine_gather(g, S->sources[0], S->units,
                                                          scale, shift, reads, id));
}

const fib_block_ops fib_affine_ops = {
    .name = "affine",
    .build = affine_build,
    .free_block = affine_free,
    .fiber_width = affine_fiber_width,
    .fiber_fill = affine_fiber_fill,
    .opfiber_width = fib_per_class_opfiber_width,
    .opfiber_fill = affine_opfiber_fill,
    .forward = affine_forward,
    .compress = affine_compress,
    .lift = affine_lift,
    .num_parameters = affine_num_parameters,
    .tensor = affine_tensor,
    .params = affine_params,
    .budget_role = affine_budget_role,
    .budget_parameters = affine_budget_parameters,
    .budget_backward = affine_budget_backward,
    .budget_scale = affine_budget_scale,
    .budget_constant = affine_budget_constant,
    .budget_moments = affine_budget_moments,
    .opfiber_exact_width = affine_opfiber_exact_width,
    .opfiber_exact_fill = affine_opfiber_exact_fill,
};
