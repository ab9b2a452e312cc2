/* Ladders of colourings, each level refining the next, and the check that
 * one colouring refines another (fib_coloring_refines):
 * - the symmetry ladder (fib_hierarchy_*): automorphisms (automorphisms.c)
 *   within covers, covers within fibers and within opfibers;
 * - the tolerance ladder (fib_color_nested): the colourings as the
 *   tolerance grows, made to nest by joining every level with the one
 *   before it, so that a class never splits. */
#include "color/color.h"

#include <math.h>

struct fib_hierarchy {
    int32_t n_groups;
    fib_coloring *level[4]; /* fibers, opfibers, covers, automorphisms */
    int32_t *links;         /* per group: FIB_CHAIN_* bits */
};

/* ------------------------------------------------------------------------ */
/* Refinement, and the symmetry ladder                                      */
/* ------------------------------------------------------------------------ */

static int32_t partition_refines(const fib_partition *finer,
                                 const fib_partition *coarser, bool *out)
{
    *out = true;
    if (finer->n_units == 0)
        return FIB_OK;
    int64_t *image = fib_alloc(finer->n_classes, sizeof *image);
    if (!image)
        return fib_error(FIB_E_NOMEM, "fib_coloring_refines: out of memory");
    for (int64_t c = 0; c < finer->n_classes; c++)
        image[c] = -1;
    for (int64_t i = 0; i < finer->n_units && *out; i++) {
        int64_t c = finer->color[i];
        if (image[c] < 0)
            image[c] = coarser->color[i];
        else if (image[c] != coarser->color[i])
            *out = false;
    }
    fib_free(image);
    return FIB_OK;
}

int32_t fib_coloring_refines(const fib_graph *g, const fib_coloring *finer,
                             const fib_coloring *coarser, int32_t group,
                             int32_t *refines_out)
{
    if (!refines_out)
        return fib_error(FIB_E_NULL, "fib_coloring_refines: refines_out is NULL");
    int32_t status = fib_coloring_check_graph(g, finer);
    if (!status)
        status = fib_coloring_check_graph(g, coarser);
    if (status)
        return status;
    if (group < -1 || group >= g->n_groups)
        return fib_error(FIB_E_RANGE, "fib_coloring_refines: group %d out of "
                         "range (%d groups)", (int)group, (int)g->n_groups);
    bool all = true;
    for (int32_t i = 0; i < g->n_groups && all && !status; i++)
        if (group < 0 || i == group)
            status = partition_refines(&finer->parts[i], &coarser->parts[i], &all);
    if (!status)
        *refines_out = all ? 1 : 0;
    return status;
}

void fib_hierarchy_free(fib_hierarchy *h)
{
    if (!h)
        return;
    for (int k = 0; k < 4; k++)
        fib_coloring_free(h->level[k]);
    fib_free(h->links);
    fib_free(h);
}

static int32_t chain_links(fib_hierarchy *h)
{
    int32_t status = FIB_OK;
    for (int32_t i = 0; i < h->n_groups && !status; i++) {
        bool in_covers = false, in_fibers = false, in_opfibers = false;
        const fib_partition *fib = &h->level[0]->parts[i], *op = &h->level[1]->parts[i];
        const fib_partition *cov = &h->level[2]->parts[i], *aut = &h->level[3]->parts[i];
        status = partition_refines(aut, cov, &in_covers);
        if (!status)
            status = partition_refines(cov, fib, &in_fibers);
        if (!status)
            status = partition_refines(cov, op, &in_opfibers);
        h->links[i] = (in_covers ? FIB_CHAIN_ORBITS_IN_COVERS : 0) |
                      (in_fibers ? FIB_CHAIN_COVERS_IN_FIBERS : 0) |
                      (in_opfibers ? FIB_CHAIN_COVERS_IN_OPFIBERS : 0);
    }
    return status;
}

int32_t fib_hierarchy_create(const fib_graph *g, const fib_color_options *options,
                             fib_hierarchy **out)
{
    if (!g || !out)
        return fib_error(FIB_E_NULL, "fib_hierarchy_create: %s is NULL",
                         g ? "out" : "graph");
    fib_color_options o;
    if (options) {
        int32_t status = fib_automorphism_options_check(options, "fib_hierarchy_create");
        if (status)
            return status;
        o = *options;
    } else {
        fib_color_options_init(&o, sizeof o);
    }
    fib_hierarchy *h = fib_calloc(1, sizeof *h);
    if (!h)
        return fib_error(FIB_E_NOMEM, "fib_hierarchy_create: out of memory");
    h->n_groups = g->n_groups;
    h->links = fib_calloc(g->n_groups > 0 ? g->n_groups : 1, sizeof *h->links);
    int32_t status = h->links ? FIB_OK
                              : fib_error(FIB_E_NOMEM, "fib_hierarchy_create: out of memory");
    if (!status)
        status = fib_color_pair_internal(g, &o, &h->level[0], &h->level[1]);
    if (!status)
        status = fib_coloring_alloc(g, FIB_SYM_COVERS, &h->level[2]);
    for (int32_t i = 0; i < g->n_groups && !status; i++) {
        fib_partition meet;
        status = fib_partition_meet(&meet, &h->level[0]->parts[i], &h->level[1]->parts[i]);
        if (!status) {
            fib_partition_clear(&h->level[2]->parts[i]);
            h->level[2]->parts[i] = meet;
        }
    }
    /* Node-group orbits start from exact covers: reuse these when exact. */
    const fib_coloring *exact_covers = o.tolerance == FIB_TOL_EXACT ? h->level[2] : NULL;
    if (!status)
        status = fib_automorphisms_from(g, &o, exact_covers, &h->level[3]);
    if (!status)
        status = chain_links(h);
    if (status) {
        fib_hierarchy_free(h);
        return status;
    }
    *out = h;
    return FIB_OK;
}

static int32_t level_index(int32_t symmetry, const char *fn)
{
    if (symmetry < FIB_SYM_FIBERS || symmetry > FIB_SYM_AUTOMORPHISMS)
        return fib_error(FIB_E_INVALID, "%s: unknown symmetry %d", fn, (int)symmetry);
    return symmetry - 1;
}

int32_t fib_hierarchy_num_classes(const fib_hierarchy *h, int32_t group,
                                  int32_t symmetry, int64_t *n_out)
{
    static const char fn[] = "fib_hierarchy_num_classes";
    if (!h || !n_out)
        return fib_error(FIB_E_NULL, "%s: NULL argument", fn);
    int32_t k = level_index(symmetry, fn);
    if (k < 0)
        return k;
    if (group < 0 || group >= h->n_groups)
        return fib_error(FIB_E_RANGE, "%s: group %d out of range (%d groups)", fn,
                         (int)group, (int)h->n_groups);
    *n_out = h->level[k]->parts[group].n_classes;
    return FIB_OK;
}

int32_t fib_hierarchy_chain(const fib_hierarchy *h, int32_t group,
                            int32_t *links_out)
{
    static const char fn[] = "fib_hierarchy_chain";
    if (!h || !links_out)
        return fib_error(FIB_E_NULL, "%s: NULL argument", fn);
    if (group < -1 || group >= h->n_groups)
        return fib_error(FIB_E_RANGE, "%s: group %d out of range (%d groups)", fn,
                         (int)group, (int)h->n_groups);
    int32_t links = FIB_CHAIN_ALL;
    for (int32_t i = 0; i < h->n_groups; i++)
        if (group < 0 || i == group)
            links &= h->links[i];
    *links_out = links;
    return FIB_OK;
}

int32_t fib_hierarchy_coloring(const fib_hierarchy *h, int32_t symmetry,
                               fib_coloring **out)
{
    static const char fn[] = "fib_hierarchy_coloring";
    if (!h || !out)
        return fib_error(FIB_E_NULL, "%s: NULL argument", fn);
    int32_t k = level_index(symmetry, fn);
    if (k < 0)
        return k;
    const fib_coloring *from = h->level[k];
    fib_coloring *c = fib_calloc(1, sizeof *c);
    if (!c)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    c->symmetry = from->symmetry;
    c->n_groups = from->n_groups;
    c->graph_identity = from->graph_identity;
    c->graph_generation = from->graph_generation;
    int32_t status = FIB_OK;
    if (from->n_groups > 0) {
        c->parts = fib_calloc(from->n_groups, sizeof *c->parts);
        if (!c->parts)
            status = fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
        for (int32_t i = 0; i < from->n_groups && !status; i++)
            status = fib_partition_copy(&c->parts[i], &from->parts[i]);
    }
    if (status) {
        fib_coloring_free(c);
        return status;
    }
    *out = c;
    return FIB_OK;
}

/* ------------------------------------------------------------------------ */
/* The tolerance ladder                                                     */
/* ------------------------------------------------------------------------ */

/* Progress of one level, reported as steps of the whole run. */
typedef struct nested_progress {
    fib_progress_fn fn;
    void *user;
    int32_t level, n_levels;
} nested_progress;

static int32_t level_progress(void *user, int64_t done, int64_t total)
{
    const nested_progress *p = user;
    return p->fn(p->user, p->level * total + done, p->n_levels * total);
}

static int32_t check_arguments(const fib_graph *g, const fib_color_options *o,
                               const double *eps, int32_t n_levels,
                               fib_coloring **levels)
{
    static const char fn[] = "fib_color_nested";
    if (!g || !o || !eps || !levels)
        return fib_error(FIB_E_NULL, "%s: %s is NULL", fn,
                         !g ? "graph" : !o ? "options" : !eps ? "eps" : "levels");
    if (n_levels < 1)
        return fib_error(FIB_E_SHAPE, "%s: n_levels %d must be at least 1", fn,
                         (int)n_levels);
    if (o->struct_size < sizeof *o)
        return fib_error(FIB_E_INVALID, "%s: options.struct_size %zu is smaller than %zu "
                         "(call fib_color_options_init)", fn, o->struct_size, sizeof *o);
    if ((o->tolerance & ~FIB_TOL_SCALED) == FIB_TOL_EXACT)
        return fib_error(FIB_E_INVALID, "%s: FIB_TOL_EXACT has no tolerance to grow; "
                         "choose a tolerant mode (FIB_TOL_ABS, _REL, _COSINE, _COMPLETE "
                         "or _WARD)", fn);
    if (o->eps != 0)
        return fib_error(FIB_E_INVALID, "%s: options.eps must be 0 (the tolerances "
                         "are eps[0 .. n_levels))", fn);
    for (int32_t t = 0; t < n_levels; t++) {
        if (!(eps[t] >= 0) || !isfinite(eps[t]))
            return fib_error(FIB_E_INVALID, "%s: eps[%d] = %g must be finite and >= 0",
                             fn, (int)t, eps[t]);
        if (t > 0 && eps[t] < eps[t - 1])
            return fib_error(FIB_E_INVALID, "%s: eps[%d] = %g is smaller than eps[%d] "
                             "= %g; the tolerances must be sorted, smallest first", fn,
                             (int)t, eps[t], (int)(t - 1), eps[t - 1]);
    }
    return FIB_OK;
}

/* Replaces every group of `c` by its join with the same group of `prev`. */
static int32_t join_with(fib_coloring *c, const fib_coloring *prev)
{
    for (int32_t i = 0; i < c->n_groups; i++) {
        fib_partition joined;
        int32_t status = fib_partition_join(&joined, &c->parts[i], &prev->parts[i]);
        if (status)
            return status;
        fib_partition_clear(&c->parts[i]);
        c->parts[i] = joined;
    }
    return FIB_OK;
}

int32_t fib_color_nested(const fib_graph *g, const fib_color_options *options,
                         const double *eps, int32_t n_levels, fib_coloring **levels)
{
    int32_t status = check_arguments(g, options, eps, n_levels, levels);
    if (status)
        return status;
    fib_coloring **made = fib_calloc(n_levels, sizeof *made);
    if (!made)
        return fib_error(FIB_E_NOMEM, "fib_color_nested: out of memory for %d levels",
                         (int)n_levels);
    fib_color_options o = *options;
    nested_progress progress = {options->progress, options->progress_user, 0, n_levels};
    if (options->progress) {
        o.progress = level_progress;
        o.progress_user = &progress;
    }
    for (int32_t t = 0; t < n_levels && !status; t++) {
        o.eps = eps[t];
        progress.level = t;
        status = fib_color(g, &o, &made[t]);
        if (!status && t > 0)
            status = join_with(made[t], made[t - 1]);
    }
    if (status) {
        for (int32_t t = 0; t < n_levels; t++)
            fib_coloring_free(made[t]);
    } else {
        for (int32_t t = 0; t < n_levels; t++)
            levels[t] = made[t];
    }
    fib_free(made);
    return status;
}
