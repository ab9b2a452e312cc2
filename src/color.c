/* fib_color: fibers forward from the inputs, flavoured opfibers backward
 * from the outputs, covers as their meet; and the colouring accessors. */
#include "internal.h"
#include "linkage.h"

#include <math.h>
#include <string.h>

int32_t fib_color_options_init(fib_color_options *o, size_t struct_size)
{
    if (!o)
        return fib_error(FIB_E_NULL, "fib_color_options_init: options is NULL");
    if (struct_size < sizeof *o)
        return fib_error(FIB_E_INVALID,
                         "fib_color_options_init: struct_size %zu is smaller than %zu",
                         struct_size, sizeof *o);
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->symmetry = FIB_SYM_FIBERS;
    o->tolerance = FIB_TOL_EXACT;
    return FIB_OK;
}

static int32_t check_options(const fib_color_options *o)
{
    if (o->struct_size < sizeof *o)
        return fib_error(FIB_E_INVALID,
                         "fib_color: options.struct_size %zu is smaller than %zu (call fib_color_options_init)",
                         o->struct_size, sizeof *o);
    if (o->symmetry < FIB_SYM_FIBERS || o->symmetry > FIB_SYM_COVERS)
        return fib_error(FIB_E_INVALID, "fib_color: unknown symmetry %d", (int)o->symmetry);
    int32_t method = o->tolerance & ~FIB_TOL_SCALED;
    if (method < FIB_TOL_EXACT || method > FIB_TOL_WARD)
        return fib_error(FIB_E_INVALID, "fib_color: unknown tolerance %d", (int)o->tolerance);
    if ((o->tolerance & FIB_TOL_SCALED) && o->symmetry != FIB_SYM_FIBERS)
        return fib_error(FIB_E_UNSUPPORTED,
                         "fib_color: FIB_TOL_SCALED colours fibers only (its scales are carried "
                         "forward; opfibers and covers are not scale-aware in this version)");
    if (!(o->eps >= 0) || !isfinite(o->eps))
        return fib_error(FIB_E_INVALID, "fib_color: eps must be finite and >= 0");
    if (o->n_threads < 0)
        return fib_error(FIB_E_INVALID, "fib_color: n_threads %d is negative", (int)o->n_threads);
    if (o->reserved0 != 0)
        return fib_error(FIB_E_INVALID, "fib_color: reserved0 must be 0");
    return FIB_OK;
}

int32_t fib_coloring_alloc(const fib_graph *g, int32_t symmetry,
                           fib_coloring **out)
{
    fib_coloring *c = fib_calloc(1, sizeof *c);
    if (!c)
        return fib_error(FIB_E_NOMEM, "out of memory for a colouring");
    c->symmetry = symmetry;
    c->n_groups = g->n_groups;
    c->graph_identity = g->identity;
    c->graph_generation = g->generation;
    if (g->n_groups > 0) {
        c->parts = fib_calloc(g->n_groups, sizeof *c->parts);
        if (!c->parts) {
            fib_free(c);
            return fib_error(FIB_E_NOMEM, "out of memory for a colouring");
        }
        for (int32_t i = 0; i < g->n_groups; i++) {
            int32_t status = fib_partition_init(&c->parts[i], g->groups[i].n_units);
            if (status) {
                fib_coloring_free(c);
                return status;
            }
        }
    }
    *out = c;
    return FIB_OK;
}

void fib_coloring_free(fib_coloring *c)
{
    if (!c)
        return;
    if (c->parts)
        for (int32_t i = 0; i < c->n_groups; i++)
            fib_partition_clear(&c->parts[i]);
    fib_free(c->parts);
    if (c->scales)
        for (int32_t i = 0; i < c->n_groups; i++)
            fib_free(c->scales[i]);
    fib_free(c->scales);
    fib_class_sums_free(c);
    fib_free(c);
}

int32_t fib_coloring_check_graph(const fib_graph *g, const fib_coloring *c)
{
    if (!g || !c)
        return fib_error(FIB_E_NULL, "graph or colouring is NULL");
    if (c->n_groups != g->n_groups)
        return fib_error(FIB_E_MISMATCH,
                         "the colouring has %d groups but the graph has %d",
                         (int)c->n_groups, (int)g->n_groups);
    for (int32_t i = 0; i < g->n_groups; i++)
        if (c->parts[i].n_units != g->groups[i].n_units)
            return fib_error(FIB_E_MISMATCH,
                             "group %d has %lld units in the colouring but %lld in the graph",
                             (int)i, (long long)c->parts[i].n_units,
                             (long long)g->groups[i].n_units);
    if (c->graph_identity != g->identity)
        return fib_error(FIB_E_MISMATCH,
                         "the colouring was made for another graph (a colouring "
                         "belongs to the graph it was computed or created on, even "
                         "one of the same shape: colour this graph, or copy the "
                         "classes into fib_coloring_create(graph) with "
                         "fib_coloring_set_group)");
    if (c->graph_generation != g->generation)
        return fib_error(FIB_E_MISMATCH,
                         "the graph was changed after the colouring was made (a "
                         "block, activation, arc set, initial classes or convention "
                         "since): colour it again, or fill a new fib_coloring_create");
    return FIB_OK;
}

static double group_eps(const fib_graph *g, int32_t group,
                        const fib_color_options *o)
{
    if ((o->tolerance & ~FIB_TOL_SCALED) == FIB_TOL_EXACT)
        return -1.0;
    double override = g->groups[group].eps_override;
    return override >= 0 ? override : o->eps;
}

/* One colouring under way: its options, its steps for the progress
 * callback, and the signature memory its groups share. */
typedef struct progress {
    const fib_color_options *o;
    int64_t done, total;
    fib_scratch scratch;
} progress;

static int32_t step(progress *p)
{
    p->done++;
    if (p->o->progress && p->o->progress(p->o->progress_user, p->done, p->total))
        return fib_error(FIB_E_CANCELLED, "fib_color: cancelled by the progress callback");
    return FIB_OK;
}

/* One refinement of group i from its signature. For a recurrent group the
 * new classes are met with the current ones, so that refinement only
 * splits; *changed tells whether it did. */
static int32_t refine_group(const fib_graph *g, int32_t i, fib_partition *parts,
                            const fib_partition *fibers, int32_t mode, double eps,
                            int32_t n_threads, fib_scratch *scratch, fib_coloring *keep,
                            bool *changed)
{
    fib_signature sig;
    int32_t status = fibers ? fib_opfiber_signature_ex(g, i, parts, fibers, n_threads,
                                                       scratch, &sig)
                            : fib_fiber_signature_ex(g, i, parts, n_threads, scratch, &sig);
    if (status)
        return status;
    fib_partition next;
    status = fib_partition_init(&next, g->groups[i].n_units);
    /* WARD weighs rows by the norms of their outgoing weights */
    double *weight = NULL;
    if (!status && eps >= 0 && (mode & ~FIB_TOL_SCALED) == FIB_TOL_WARD) {
        weight = fib_alloc(g->groups[i].n_units, sizeof *weight);
        status = weight ? fib_outgoing_norms(g, i, weight)
                        : fib_error(FIB_E_NOMEM, "group %d: out of memory", (int)i);
    }
    bool feed_forward = !(g->groups[i].ops && g->groups[i].ops->recurrent);
    if (!status && keep && feed_forward)
        sig.sum_leading = fib_class_sums_leading(keep, g, i, &sig, parts, mode);
    if (!status)
        status = fib_group_signatures_mode(&sig, mode, eps, weight, &next);
    fib_free(weight);
    fib_partition met = {0};
    if (!status)
        status = fib_partition_meet(&met, &next, &parts[i]);
    fib_partition_clear(&next);
    if (!status) {
        *changed = met.n_classes != parts[i].n_classes;
        fib_partition_clear(&parts[i]);
        parts[i] = met;
        /* a feed-forward group's fibers are final: keep the merge's totals */
        if (keep && feed_forward)
            status = fib_class_sums_keep(keep, g, i, &sig, parts);
    }
    fib_signature_clear(&sig);
    return status;
}

/* Colours group i: one pass for a feed-forward block; for a recurrent one,
 * refinement from the coarsest partition to its fixed point (the coarsest
 * balanced partition), at most n_units passes. */
static int32_t color_group(const fib_graph *g, int32_t i, fib_partition *parts,
                           const fib_partition *fibers, int32_t mode, double eps,
                           int32_t n_threads, fib_scratch *scratch, fib_coloring *keep)
{
    fib_partition_single(&parts[i]);
    bool changed = true;
    bool recurrent = g->groups[i].ops && g->groups[i].ops->recurrent;
    int32_t status = FIB_OK;
    while (changed && !status) {
        status = refine_group(g, i, parts, fibers, mode, eps, n_threads, scratch, keep,
                              &changed);
        changed = changed && recurrent;
    }
    return status;
}

/* The refinement of node groups reports its own (cells, nodes); callers
 * see the group steps only, so that `done` of `total` never goes back. */
static int32_t node_progress(void *user, int64_t done, int64_t total)
{
    (void)done, (void)total;
    const progress *p = user;
    return p->o->progress(p->o->progress_user, p->done, p->total);
}

/* Node groups (general graphs): all at once by partition refinement. */
static int32_t color_nodes(const fib_graph *g, const fib_color_options *o,
                           bool reverse, fib_partition *parts, progress *prog)
{
    fib_color_options wrapped = *o;
    if (o->progress) {
        wrapped.progress = node_progress;
        wrapped.progress_user = prog;
    }
    return fib_color_node_groups(g, &wrapped, reverse, parts);
}

/* Fibers into c->parts (c->scales: FIB_TOL_SCALED); dense groups keep
 * their merge totals in c (fib_class_sums_keep). */
static int32_t color_fibers(const fib_graph *g, const fib_color_options *o,
                            fib_coloring *c, progress *prog)
{
    fib_partition *parts = c->parts;
    double **scales = c->scales;
    int32_t node_status = color_nodes(g, o, false, parts, prog);
    if (node_status)
        return node_status;
    for (int32_t i = 0; i < g->n_groups; i++) {
        int32_t status = FIB_OK;
        bool scaled_source = false;
        for (int32_t s = 0; scales && s < g->groups[i].n_sources; s++)
            scaled_source = scaled_source || scales[g->groups[i].sources[s]];
        if (fib_group_is_input(g, i) || g->groups[i].op == FIB_OP_NODES)
            status = FIB_OK;
        else if (scales && g->groups[i].op == FIB_OP_DENSE)
            status = fib_color_scaled_dense(g, i, o->tolerance, group_eps(g, i, o), parts,
                                            scales);
        else if (scaled_source)
            status = fib_error(FIB_E_UNSUPPORTED,
                               "fib_color: FIB_TOL_SCALED: group %d (%s block) reads a scaled "
                               "group; only dense blocks carry scales in this version", (int)i,
                               g->groups[i].ops ? g->groups[i].ops->name : "input");
        else
            status = color_group(g, i, parts, NULL, o->tolerance, group_eps(g, i, o),
                                 o->n_threads, &prog->scratch, c);
        if (!status)
            status = step(prog);
        if (status)
            return status;
    }
    return FIB_OK;
}

static int32_t color_opfibers(const fib_graph *g, const fib_color_options *o,
                              const fib_partition *fibers,
                              fib_partition *parts, progress *prog)
{
    int32_t node_status = color_nodes(g, o, true, parts, prog);
    if (node_status)
        return node_status;
    for (int32_t i = g->n_groups - 1; i >= 0; i--) {
        int32_t status = FIB_OK;
        if (!fib_group_is_output(g, i) && g->groups[i].op != FIB_OP_NODES)
            status = color_group(g, i, parts, fibers, o->tolerance, group_eps(g, i, o),
                                 o->n_threads, &prog->scratch, NULL);
        if (!status)
            status = step(prog);
        if (status)
            return status;
    }
    return FIB_OK;
}

int32_t fib_color_internal(const fib_graph *g, const fib_color_options *o,
                           fib_coloring **out)
{
    fib_coloring *fibers = NULL, *opfibers = NULL;
    progress prog = {o, 0, (int64_t)g->n_groups * (o->symmetry == FIB_SYM_FIBERS ? 1 : 2),
                     {0}};
    int32_t status = fib_coloring_alloc(g, FIB_SYM_FIBERS, &fibers);
    if (!status && (o->tolerance & FIB_TOL_SCALED) && g->n_groups > 0) {
        fibers->scales = fib_calloc(g->n_groups, sizeof *fibers->scales);
        if (!fibers->scales)
            status = fib_error(FIB_E_NOMEM, "fib_color: out of memory for scales");
    }
    if (!status)
        status = color_fibers(g, o, fibers, &prog);
    if (status || o->symmetry == FIB_SYM_FIBERS)
        goto done;
    status = fib_coloring_alloc(g, FIB_SYM_OPFIBERS, &opfibers);
    if (!status)
        status = color_opfibers(g, o, fibers->parts, opfibers->parts, &prog);
    if (status || o->symmetry == FIB_SYM_OPFIBERS)
        goto done;
    /* Covers: replace each fiber partition by its meet with the opfibers. */
    for (int32_t i = 0; i < g->n_groups && !status; i++) {
        fib_partition meet;
        status = fib_partition_meet(&meet, &fibers->parts[i], &opfibers->parts[i]);
        if (!status) {
            fib_partition_clear(&fibers->parts[i]);
            fibers->parts[i] = meet;
        }
    }
    fibers->symmetry = FIB_SYM_COVERS;
done:
    fib_scratch_clear(&prog.scratch);
    if (status) {
        fib_coloring_free(fibers);
        fib_coloring_free(opfibers);
        return status;
    }
    if (o->symmetry == FIB_SYM_OPFIBERS) {
        fib_coloring_free(fibers);
        *out = opfibers;
    } else {
        fib_coloring_free(opfibers);
        *out = fibers;
    }
    return FIB_OK;
}

int32_t fib_color(const fib_graph *g, const fib_color_options *options,
                  fib_coloring **out)
{
    if (!g || !out)
        return fib_error(FIB_E_NULL, "fib_color: %s is NULL", g ? "out" : "graph");
    fib_color_options defaults;
    if (!options) {
        fib_color_options_init(&defaults, sizeof defaults);
        options = &defaults;
    }
    int32_t status = check_options(options);
    if (status)
        return status;
    return fib_color_internal(g, options, out);
}

int32_t fib_coloring_create(const fib_graph *g, int32_t symmetry,
                            fib_coloring **out)
{
    if (!g || !out)
        return fib_error(FIB_E_NULL, "fib_coloring_create: %s is NULL", g ? "out" : "graph");
    if (symmetry < FIB_SYM_FIBERS || symmetry > FIB_SYM_COVERS)
        return fib_error(FIB_E_INVALID, "fib_coloring_create: unknown symmetry %d",
                         (int)symmetry);
    return fib_coloring_alloc(g, symmetry, out);
}

static int32_t check_group(const fib_coloring *c, int32_t group, const char *fn)
{
    if (!c)
        return fib_error(FIB_E_NULL, "%s: colouring is NULL", fn);
    if (group < 0 || group >= c->n_groups)
        return fib_error(FIB_E_RANGE, "%s: group %d out of range (%d groups)", fn,
                         (int)group, (int)c->n_groups);
    return FIB_OK;
}

int32_t fib_coloring_set_group(fib_coloring *c, int32_t group,
                               const int64_t *colors, int64_t n_units)
{
    static const char fn[] = "fib_coloring_set_group";
    int32_t status = check_group(c, group, fn);
    if (status)
        return status;
    if (!colors)
        return fib_error(FIB_E_NULL, "%s: colors is NULL", fn);
    fib_partition *p = &c->parts[group];
    if (n_units != p->n_units)
        return fib_error(FIB_E_SHAPE, "%s: group %d has %lld units, got %lld", fn,
                         (int)group, (long long)p->n_units, (long long)n_units);
    fib_partition next;
    status = fib_partition_init(&next, n_units);
    if (status)
        return status;
    memcpy(next.color, colors, (size_t)n_units * sizeof *colors);
    status = fib_partition_canonicalize(&next);
    if (status) {
        fib_partition_clear(&next);
        return status;
    }
    fib_partition_clear(p);
    *p = next;
    return FIB_OK;
}

int32_t fib_coloring_symmetry(const fib_coloring *c, int32_t *symmetry_out)
{
    if (!c || !symmetry_out)
        return fib_error(FIB_E_NULL, "fib_coloring_symmetry: NULL argument");
    *symmetry_out = c->symmetry;
    return FIB_OK;
}

int32_t fib_coloring_num_classes(const fib_coloring *c, int32_t group,
                                 int64_t *n_out)
{
    int32_t status = check_group(c, group, "fib_coloring_num_classes");
    if (status)
        return status;
    if (!n_out)
        return fib_error(FIB_E_NULL, "fib_coloring_num_classes: n_out is NULL");
    *n_out = c->parts[group].n_classes;
    return FIB_OK;
}

int32_t fib_coloring_colors(const fib_coloring *c, int32_t group,
                            int64_t *colors, int64_t n_units)
{
    static const char fn[] = "fib_coloring_colors";
    int32_t status = check_group(c, group, fn);
    if (status)
        return status;
    if (!colors)
        return fib_error(FIB_E_NULL, "%s: colors is NULL", fn);
    const fib_partition *p = &c->parts[group];
    if (n_units < p->n_units)
        return fib_error(FIB_E_BUFFER, "%s: group %d needs %lld entries, got %lld", fn,
                         (int)group, (long long)p->n_units, (long long)n_units);
    memcpy(colors, p->color, (size_t)p->n_units * sizeof *colors);
    return FIB_OK;
}

int32_t fib_coloring_class_sizes(const fib_coloring *c, int32_t group,
                                 int64_t *sizes, int64_t n_classes)
{
    static const char fn[] = "fib_coloring_class_sizes";
    int32_t status = check_group(c, group, fn);
    if (status)
        return status;
    if (!sizes)
        return fib_error(FIB_E_NULL, "%s: sizes is NULL", fn);
    const fib_partition *p = &c->parts[group];
    if (n_classes < p->n_classes)
        return fib_error(FIB_E_BUFFER, "%s: group %d needs %lld entries, got %lld", fn,
                         (int)group, (long long)p->n_classes, (long long)n_classes);
    fib_partition_class_sizes(p, sizes);
    return FIB_OK;
}
