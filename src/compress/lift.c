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

int32_t fib_lift(const fib_base *base, const fib_graph *weights, fib_graph **out)
{
    if (!base || !out)
        return fib_error(FIB_E_NULL, "fib_lift: %s is NULL", base ? "out" : "base");
    const fib_graph *bg = weights ? weights : base->graph;
    int32_t status = check_same_structure(base->graph, bg);
    if (status)
        return status;
    int32_t *ids = fib_alloc(bg->n_groups > 0 ? bg->n_groups : 1, sizeof *ids);
    fib_graph *full = NULL;
    status = ids ? fib_graph_create(&full)
                 : fib_error(FIB_E_NOMEM, "fib_lift: out of memory");
    for (int32_t i = 0; i < bg->n_groups && !status; i++) {
        ids[i] = i;
        if (fib_group_is_input(bg, i))
            status = fib_graph_add_input(full, base->projection[i].n_units, &ids[i]);
        else
            status = bg->groups[i].ops->lift(bg, i, base->projection, full, ids);
        if (!status)
            status = fib_copy_group_attributes(bg, i, full, i);
    }
    fib_free(ids);
    if (status) {
        fib_graph_free(full);
        return status;
    }
    *out = full;
    return FIB_OK;
}
