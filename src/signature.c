/* Signatures: the numbers that must agree for two units to share a class.
 * Fibers: the colour sums of each block feeding the group. Opfibers: the
 * flavour, then the column sums of each block reading the group. */
#include "internal.h"

#include <string.h>

int32_t fib_signature_alloc(fib_signature *sig, int64_t n_units,
                            int64_t n_coords)
{
    int64_t cells;
    sig->n_units = n_units;
    sig->n_coords = n_coords;
    sig->value = sig->tol = NULL;
    if (!fib_mul_i64(n_units, n_coords > 0 ? n_coords : 1, &cells))
        return fib_error(FIB_E_OVERFLOW, "signature of %lld x %lld overflows",
                         (long long)n_units, (long long)n_coords);
    sig->value = fib_alloc(cells, sizeof(double));
    sig->tol = fib_alloc(cells, sizeof(double));
    if (!sig->value || !sig->tol) {
        fib_signature_clear(sig);
        return fib_error(FIB_E_NOMEM, "out of memory for a %lld x %lld signature",
                         (long long)n_units, (long long)n_coords);
    }
    return FIB_OK;
}

void fib_signature_clear(fib_signature *sig)
{
    fib_free(sig->value);
    fib_free(sig->tol);
    sig->value = sig->tol = NULL;
}

double fib_rounding_tol(int32_t dtype, int64_t terms, double abs_sum)
{
    /* Each stored weight may carry half an ulp of its dtype from however it
     * was computed (a lift splits a sum); the double accumulation adds one
     * 2^-53 per term. The factor 4 leaves room for a second rounding. */
    const double u = dtype == FIB_DTYPE_F32 ? 0x1.0p-24 : 0x1.0p-53;
    return (4.0 * u + (double)(terms + 1) * 0x1.0p-53) * abs_sum;
}

int32_t fib_fiber_signature(const fib_graph *g, int32_t group,
                            const fib_partition *parts, fib_signature *sig)
{
    const fib_group *grp = &g->groups[group];
    int64_t width = grp->ops->fiber_width(g, group, parts);
    int32_t status = fib_signature_alloc(sig, grp->n_units, width);
    if (status)
        return status;
    if (width > 0)
        status = grp->ops->fiber_fill(g, group, parts, sig, 0);
    if (status)
        fib_signature_clear(sig);
    return status;
}

int32_t fib_opfiber_signature(const fib_graph *g, int32_t group,
                              const fib_partition *parts,
                              const fib_partition *fibers, fib_signature *sig)
{
    const fib_group *grp = &g->groups[group];
    bool flavoured = !fib_activation_is_linear(grp->activation);
    int64_t width = flavoured ? 1 : 0;
    bool recurrent = grp->ops && grp->ops->recurrent;
    if (recurrent)
        width += grp->ops->opfiber_width(g, group, -1, parts);
    for (int32_t h = group + 1; h < g->n_groups; h++)
        for (int32_t s = 0; s < g->groups[h].n_sources; s++)
            if (g->groups[h].sources[s] == group)
                width += g->groups[h].ops->opfiber_width(g, h, s, parts);
    int32_t status = fib_signature_alloc(sig, grp->n_units, width);
    if (status)
        return status;
    int64_t offset = 0;
    if (flavoured) {
        for (int64_t i = 0; i < grp->n_units; i++) {
            sig->value[i * width] = (double)fibers[group].color[i];
            sig->tol[i * width] = 0.0;
        }
        offset = 1;
    }
    if (recurrent) {
        status = grp->ops->opfiber_fill(g, group, -1, parts, fibers, sig, offset);
        offset += grp->ops->opfiber_width(g, group, -1, parts);
    }
    for (int32_t h = group + 1; h < g->n_groups && !status; h++)
        for (int32_t s = 0; s < g->groups[h].n_sources && !status; s++)
            if (g->groups[h].sources[s] == group) {
                status = g->groups[h].ops->opfiber_fill(g, h, s, parts, fibers, sig, offset);
                offset += g->groups[h].ops->opfiber_width(g, h, s, parts);
            }
    if (status)
        fib_signature_clear(sig);
    return status;
}
