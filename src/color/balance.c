/* fib_coloring_is_balanced: checks a given partition against the
 * definition of its kind, coordinate by coordinate. */
#include "color/color.h"

#include <math.h>

/* Sets *ok = false and notes the first coordinate that spans more than eps
 * (plus rounding) inside a class. */
static int32_t check_signature(const fib_signature *sig, const fib_partition *p,
                               double eps, int32_t group, const char *kind,
                               bool *ok)
{
    fib_class_lists l;
    int32_t status = fib_class_lists_build(p, &l);
    if (status)
        return status;
    for (int64_t c = 0; c < p->n_classes && *ok; c++) {
        for (int64_t j = 0; j < sig->n_coords && *ok; j++) {
            int64_t lo = l.members[l.start[c]], hi = lo;
            for (int64_t x = l.start[c] + 1; x < l.start[c + 1]; x++) {
                int64_t u = l.members[x];
                if (sig->value[u * sig->n_coords + j] < sig->value[lo * sig->n_coords + j])
                    lo = u;
                if (sig->value[u * sig->n_coords + j] > sig->value[hi * sig->n_coords + j])
                    hi = u;
            }
            double span = sig->value[hi * sig->n_coords + j] - sig->value[lo * sig->n_coords + j];
            double allowed = fib_allowance(eps, sig->tol[hi * sig->n_coords + j],
                                           sig->tol[lo * sig->n_coords + j]);
            if (span > allowed) {
                *ok = false;
                fib_error_note("%s of group %d: class %lld is not balanced: units %lld and "
                               "%lld differ by %.17g in signature coordinate %lld (allowed %.3g)",
                               kind, (int)group, (long long)c, (long long)lo, (long long)hi,
                               span, (long long)j, allowed);
            }
        }
    }
    fib_class_lists_clear(&l);
    return FIB_OK;
}

/* True if every class of fine lies inside one class of coarse. */
static bool refines(const fib_partition *fine, const fib_partition *coarse,
                    int64_t *seen, int32_t group, const char *what)
{
    for (int64_t c = 0; c < fine->n_classes; c++)
        seen[c] = -1;
    for (int64_t i = 0; i < fine->n_units; i++) {
        int64_t c = fine->color[i];
        if (seen[c] < 0)
            seen[c] = coarse->color[i];
        else if (seen[c] != coarse->color[i]) {
            fib_error_note("covers of group %d: class %lld spans two %s (unit %lld)",
                           (int)group, (long long)c, what, (long long)i);
            return false;
        }
    }
    return true;
}

static int32_t check_covers(const fib_graph *g, const fib_coloring *c, double eps,
                            bool *ok)
{
    fib_color_options o;
    fib_color_options_init(&o, sizeof o);
    o.tolerance = eps > 0 ? FIB_TOL_ABS : FIB_TOL_EXACT;
    o.eps = eps;
    fib_coloring *fibers = NULL, *opfibers = NULL;
    int32_t status = fib_color_pair_internal(g, &o, &fibers, &opfibers);
    for (int32_t i = 0; i < g->n_groups && !status && *ok; i++) {
        int64_t *seen = fib_alloc(c->parts[i].n_classes, sizeof *seen);
        if (!seen) {
            status = fib_error(FIB_E_NOMEM, "out of memory checking covers");
            break;
        }
        *ok = refines(&c->parts[i], &fibers->parts[i], seen, i, "fibers") &&
              refines(&c->parts[i], &opfibers->parts[i], seen, i, "opfibers");
        fib_free(seen);
    }
    fib_coloring_free(fibers);
    fib_coloring_free(opfibers);
    return status;
}

int32_t fib_coloring_is_balanced(const fib_graph *g, const fib_coloring *c,
                                 double eps, int32_t *balanced_out)
{
    int32_t status = fib_coloring_check_graph(g, c);
    if (status)
        return status;
    if (!balanced_out)
        return fib_error(FIB_E_NULL, "fib_coloring_is_balanced: balanced_out is NULL");
    if (!(eps >= 0) || !isfinite(eps))
        return fib_error(FIB_E_INVALID, "fib_coloring_is_balanced: eps must be finite and >= 0");
    /* A NaN weight (borrowed memory changed after the graph was built)
     * compares equal to nothing, so its unit would pass every test: a check
     * is worth one more read of the weights here. */
    for (int32_t i = 0; i < g->n_groups; i++) {
        status = fib_group_find_nonfinite(g, i, "fib_coloring_is_balanced");
        if (status)
            return status;
    }
    bool ok = true;
    /* automorphism orbits are balanced both ways (fibers and opfibers) */
    bool orbits = c->symmetry == FIB_SYM_AUTOMORPHISMS;
    if (c->symmetry == FIB_SYM_COVERS) {
        status = check_covers(g, c, eps, &ok);
    }
    if (c->symmetry == FIB_SYM_FIBERS || orbits) {
        for (int32_t i = 0; i < g->n_groups && ok && !status; i++) {
            if (fib_group_is_input(g, i))
                continue;
            fib_signature sig;
            status = fib_fiber_signature(g, i, c->parts, &sig);
            if (!status)
                status = check_signature(&sig, &c->parts[i], eps, i, "fibers", &ok);
            fib_signature_clear(&sig);
        }
    }
    if ((c->symmetry == FIB_SYM_OPFIBERS || orbits) && ok && !status) {
        /* Flavours come from the fibers at the same tolerance. */
        fib_color_options o;
        fib_color_options_init(&o, sizeof o);
        o.tolerance = eps > 0 ? FIB_TOL_ABS : FIB_TOL_EXACT;
        o.eps = eps;
        fib_coloring *fibers = NULL;
        status = fib_color_internal(g, &o, &fibers);
        for (int32_t i = g->n_groups - 1; i >= 0 && ok && !status; i--) {
            if (fib_group_is_output(g, i) && !fib_group_is_nodes(g, i))
                continue; /* node groups have no outputs: every one is checked */
            fib_signature sig;
            status = fib_group_is_nodes(g, i)
                         ? fib_nodes_opfiber_signature(g, i, c->parts, &sig)
                         : fib_opfiber_signature(g, i, c->parts, fibers->parts, &sig);
            if (!status)
                status = check_signature(&sig, &c->parts[i], eps, i, "opfibers", &ok);
            fib_signature_clear(&sig);
        }
        fib_coloring_free(fibers);
    }
    if (status)
        return status;
    *balanced_out = ok ? 1 : 0;
    return FIB_OK;
}
