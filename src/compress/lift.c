/* fib_lift: a base expanded back to the original widths. */
#include "compress/compress.h"

/* The weights graph must have the base's structure exactly. */
static int32_t check_same_structure(const fib_graph *a, const fib_graph *b)
{
    if (a->n_groups != b->n_groups)
        return fib_error(FIB_E_MISMATCH, "fib_lift: the weights graph has %d groups, the base %d",
                         (int)b->n_groups, (int)a->n_groups);
    for (int32_t i = 0; i < a->n_groups; i++) {
        const fib_group *x = &a->groups[i], *y = &b->groups[i];
        bool same = x->op == y->op && x->n_units == y->n_units &&
                    x->n_sources == y->n_sources;
        for (int32_t s = 0; same && s < x->n_sources; s++)
            same = x->sources[s] == y->sources[s];
        if (same && x->ops && x->ops->has_bias)
            same = x->ops->has_bias(a, i) == y->ops->has_bias(b, i);
        if (!same)
            return fib_error(FIB_E_MISMATCH,
                             "fib_lift: group %d of the weights graph differs from the base's",
                             (int)i);
    }
    return FIB_OK;
}

/* Whether the lifted blocks of base group `group` are rounded to float32:
 * as `dtype` asks, or by default when the base block holds float32,
 * float16 or bfloat16 weights (the lift of a float32 model is a float32
 * model; a half-precision one is lifted to float32, since splitting a
 * weight over its class is not exact in half precision). */
static bool lifted_narrow(const fib_graph *bg, int32_t group, int32_t dtype)
{
    if (dtype)
        return dtype == FIB_DTYPE_F32;
    const fib_group *grp = &bg->groups[group];
    fib_tensor_view weight;
    return grp->ops && grp->ops->tensor && grp->ops->tensor(bg, group, 0, &weight) &&
           weight.dtype != FIB_DTYPE_F64;
}

/* Each lifted weight is made in float64 (the base's weight divided by its
 * class size) and, for a float32 lift, rounded once as soon as its group
 * is made, so that the lift never holds float64 copies of all its blocks. */
static int32_t lift(const fib_base *base, const fib_graph *weights, int32_t dtype,
                    const char *fn, fib_graph **out)
{
    if (!base || !out)
        return fib_error(FIB_E_NULL, "%s: %s is NULL", fn, base ? "out" : "base");
    if (dtype != 0 && dtype != FIB_DTYPE_F32 && dtype != FIB_DTYPE_F64)
        return fib_error(FIB_E_INVALID, "%s: dtype %d is not 0, FIB_DTYPE_F32 or "
                         "FIB_DTYPE_F64", fn, (int)dtype);
    const fib_graph *bg = weights ? weights : base->graph;
    int32_t status = check_same_structure(base->graph, bg);
    if (status)
        return status;
    int32_t *ids = fib_alloc(bg->n_groups > 0 ? bg->n_groups : 1, sizeof *ids);
    fib_graph *full = NULL;
    status = ids ? fib_graph_create(&full)
                 : fib_error(FIB_E_NOMEM, "fib_lift: out of memory");
    for (int32_t i = 0; i < bg->n_groups && !status; i++) {
        int32_t made = full ? full->n_groups : 0;
        ids[i] = i;
        if (fib_group_is_input(bg, i))
            status = fib_graph_add_input(full, base->projection[i].n_units, &ids[i]);
        else
            status = bg->groups[i].ops->lift(bg, i, base->projection, full, ids);
        if (!status)
            status = fib_copy_group_attributes(bg, i, full, i);
        bool narrow = !status && lifted_narrow(bg, i, dtype);
        for (int32_t k = made; narrow && !status && k < full->n_groups; k++) {
            status = fib_narrow_block(full, k);
            if (status == FIB_E_NONFINITE) /* named as a lift, not a merge */
                status = fib_error(FIB_E_NONFINITE, "%s: group %d: a lifted weight does not "
                                   "fit in float32 (lift to float64)", fn, (int)i);
        }
    }
    fib_free(ids);
    if (status) {
        fib_graph_free(full);
        return status;
    }
    *out = full;
    return FIB_OK;
}

int32_t fib_lift(const fib_base *base, const fib_graph *weights, fib_graph **out)
{
    return lift(base, weights, 0, "fib_lift", out);
}

int32_t fib_lift_dtype(const fib_base *base, const fib_graph *weights, int32_t dtype,
                       fib_graph **out)
{
    return lift(base, weights, dtype, "fib_lift_dtype", out);
}
