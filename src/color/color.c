/* fib_color: fibers forward from the inputs, flavoured opfibers backward
 * from the outputs, covers as their meet. */
#include "color/color.h"
#include "color/linkage.h"

#include <math.h>
#include <string.h>

int32_t fib_color_options_init(fib_color_options *o, size_t struct_size)
{
    int32_t status = fib_options_clear(o, struct_size, sizeof *o, sizeof *o,
                                       "fib_color_options_init");
    if (status)
        return status;
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
    /* a dense layer over merged sources: never its whole signature at once
     * (its merge totals are then made by fib_compress from the weights) */
    fib_partition next;
    bool piecewise = false;
    int32_t status = fibers ? FIB_OK
                            : fib_piecewise_fibers(g, i, parts, mode, eps, n_threads,
                                                   keep, &next,
                                                   &piecewise);
    if (status)
        return status;
    if (piecewise) {
        /* a feed-forward group starts from one class: next is final (the
         * partition its merge totals were made for) */
        *changed = next.n_classes != parts[i].n_classes;
        fib_partition_clear(&parts[i]);
        parts[i] = next;
        return FIB_OK;
    }
    fib_signature sig;
    status = fibers ? fib_opfiber_signature_mode(g, i, parts, fibers, mode, eps,
                                                 n_threads, scratch, &sig)
                    : fib_fiber_signature_ex(g, i, parts, n_threads, scratch, &sig);
    if (status)
        return status;
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
        sig.sum_leading = fib_merge_totals_leading(keep, g, i, &sig, parts, mode);
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
            status = fib_merge_totals_keep(keep, g, i, &sig, parts);
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
 * their merge totals in c (fib_merge_totals_keep). */
static int32_t color_fibers(const fib_graph *g, const fib_color_options *o,
                            fib_coloring *c, progress *prog)
{
    fib_partition *parts = c->parts;
    double **scales = c->scales;
    /* the merge totals serve a compression by these fibers (or covers);
     * fibers that only flavour opfibers are dropped at the end */
    fib_coloring *keep = o->symmetry == FIB_SYM_OPFIBERS ? NULL : c;
    int32_t node_status = color_nodes(g, o, false, parts, prog);
    if (node_status)
        return node_status;
    for (int32_t i = 0; i < g->n_groups; i++) {
        int32_t status = FIB_OK;
        bool scaled_source = false;
        for (int32_t s = 0; scales && s < g->groups[i].n_sources; s++)
            scaled_source = scaled_source || scales[g->groups[i].sources[s]];
        if (fib_group_is_input(g, i) || fib_group_is_nodes(g, i))
            status = FIB_OK;
        else if (scales && g->groups[i].ops->compress_scaled)
            status = fib_color_scaled_dense(g, i, o->tolerance, group_eps(g, i, o), parts,
                                            scales);
        else if (scaled_source)
            status = fib_error(FIB_E_UNSUPPORTED,
                               "fib_color: FIB_TOL_SCALED: group %d (%s block) reads a scaled "
                               "group; only dense blocks carry scales in this version", (int)i,
                               g->groups[i].ops ? g->groups[i].ops->name : "input");
        else
            status = color_group(g, i, parts, NULL, o->tolerance, group_eps(g, i, o),
                                 o->n_threads, &prog->scratch, keep);
        if (!status && !fib_group_is_input(g, i) && !fib_group_is_nodes(g, i))
            status = fib_color_keep_unit_runs(g, i, parts);
        if (!status)
            status = step(prog);
        if (status)
            return status;
    }
    return FIB_OK;
}

/* Going backward, the opfibers of group i were the last to read the blocks
 * whose lowest source is i: their pages in a mapped model file leave the
 * process's memory, so that the file need not stay resident next to the
 * opfibers' signatures of the first layers. */
static void drop_consumers_done(const fib_graph *g, int32_t i)
{
    for (int32_t h = i + 1; h < g->n_groups; h++) {
        int32_t lowest = h;
        for (int32_t s = 0; s < g->groups[h].n_sources; s++)
            lowest = g->groups[h].sources[s] < lowest ? g->groups[h].sources[s] : lowest;
        if (lowest == i)
            fib_group_drop_pages(g, h);
    }
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
        if (!fib_group_is_output(g, i) && !fib_group_is_nodes(g, i))
            status = color_group(g, i, parts, fibers, o->tolerance, group_eps(g, i, o),
                                 o->n_threads, &prog->scratch, NULL);
        drop_consumers_done(g, i);
        if (!status)
            status = step(prog);
        if (status)
            return status;
    }
    return FIB_OK;
}

/* Records on fibers made here what fib_color_from_fibers compares. */
static int32_t record_made(const fib_graph *g, const fib_color_options *o, fib_coloring *c)
{
    c->made_eps = fib_alloc(g->n_groups > 0 ? g->n_groups : 1, sizeof *c->made_eps);
    if (!c->made_eps)
        return fib_error(FIB_E_NOMEM, "fib_color: out of memory");
    c->made_tolerance = o->tolerance;
    for (int32_t i = 0; i < g->n_groups; i++)
        c->made_eps[i] = group_eps(g, i, o);
    return FIB_OK;
}

/* Colours g by o; `given`: fibers fib_color made with the same tolerance
 * and eps (fib_color_from_fibers), read instead of made again. */
static int32_t color_given(const fib_graph *g, const fib_color_options *o,
                           const fib_coloring *given, fib_coloring **out)
{
    fib_coloring *fibers = NULL, *opfibers = NULL;
    progress prog = {o, given ? g->n_groups : 0,
                     (int64_t)g->n_groups * (o->symmetry == FIB_SYM_FIBERS ? 1 : 2), {0}};
    int32_t status = FIB_OK;
    const fib_partition *fiber_parts = given ? given->parts : NULL;
    if (!given) {
        status = fib_coloring_alloc(g, FIB_SYM_FIBERS, &fibers);
        if (!status && (o->tolerance & FIB_TOL_SCALED) && g->n_groups > 0) {
            fibers->scales = fib_calloc(g->n_groups, sizeof *fibers->scales);
            if (!fibers->scales)
                status = fib_error(FIB_E_NOMEM, "fib_color: out of memory for scales");
        }
        if (!status)
            status = color_fibers(g, o, fibers, &prog);
        if (!status && o->symmetry == FIB_SYM_FIBERS)
            status = record_made(g, o, fibers);
        if (status || o->symmetry == FIB_SYM_FIBERS)
            goto done;
        fiber_parts = fibers->parts;
    }
    status = fib_coloring_alloc(g, FIB_SYM_OPFIBERS, &opfibers);
    if (!status)
        status = color_opfibers(g, o, fiber_parts, opfibers->parts, &prog);
    if (status || o->symmetry == FIB_SYM_OPFIBERS)
        goto done;
    /* Covers: each fiber partition met with the opfibers (into a colouring
     * of their own when the fibers were given). */
    if (given)
        status = fib_coloring_alloc(g, FIB_SYM_FIBERS, &fibers);
    for (int32_t i = 0; i < g->n_groups && !status; i++) {
        fib_partition meet;
        status = fib_partition_meet(&meet, &fiber_parts[i], &opfibers->parts[i]);
        if (!status) {
            fib_partition_clear(&fibers->parts[i]);
            fibers->parts[i] = meet;
        }
    }
    if (!status)
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

int32_t fib_color_internal(const fib_graph *g, const fib_color_options *o,
                           fib_coloring **out)
{
    return color_given(g, o, NULL, out);
}

int32_t fib_color_pair_internal(const fib_graph *g, const fib_color_options *o,
                                fib_coloring **fibers_out, fib_coloring **opfibers_out)
{
    /* the fibers as FIB_SYM_FIBERS makes them (merge totals kept), then the
     * opfibers they flavour, without colouring the fibers again */
    fib_color_options f = *o, op = *o;
    f.symmetry = FIB_SYM_FIBERS;
    op.symmetry = FIB_SYM_OPFIBERS;
    fib_coloring *fibers = NULL;
    int32_t status = color_given(g, &f, NULL, &fibers);
    if (!status)
        status = color_given(g, &op, fibers, opfibers_out);
    if (status) {
        fib_coloring_free(fibers);
        return status;
    }
    *fibers_out = fibers;
    return FIB_OK;
}

/* *o: the caller's options once checked, or the defaults for NULL. */
static int32_t checked_options(const fib_color_options *options, fib_color_options *o)
{
    if (!options)
        return fib_color_options_init(o, sizeof *o);
    int32_t status = check_options(options);
    if (!status)
        *o = *options;
    return status;
}

int32_t fib_color(const fib_graph *g, const fib_color_options *options,
                  fib_coloring **out)
{
    if (!g || !out)
        return fib_error(FIB_E_NULL, "fib_color: %s is NULL", g ? "out" : "graph");
    fib_color_options o;
    int32_t status = checked_options(options, &o);
    return status ? status : fib_color_internal(g, &o, out);
}

int32_t fib_color_from_fibers(const fib_graph *g, const fib_color_options *options,
                              const fib_coloring *fibers, fib_coloring **out)
{
    static const char fn[] = "fib_color_from_fibers";
    if (!g || !fibers || !out)
        return fib_error(FIB_E_NULL, "%s: %s is NULL", fn, !g ? "graph" : !fibers ? "fibers" : "out");
    if (!options)
        return fib_error(FIB_E_NULL, "%s: options is NULL (the ones the fibers were made "
                         "with, symmetry FIB_SYM_OPFIBERS or FIB_SYM_COVERS)", fn);
    int32_t status = check_options(options);
    if (!status)
        status = fib_coloring_check_graph(g, fibers);
    if (status)
        return status;
    if (options->symmetry == FIB_SYM_FIBERS)
        return fib_error(FIB_E_INVALID, "%s: symmetry FIB_SYM_FIBERS: the fibers are "
                         "given (ask for FIB_SYM_OPFIBERS or FIB_SYM_COVERS)", fn);
    if (fibers->symmetry != FIB_SYM_FIBERS || !fibers->made_eps)
        return fib_error(FIB_E_MISMATCH, "%s: the colouring given is not fibers as fib_color "
                         "made them (another symmetry, or classes set by hand)", fn);
    if (fibers->made_tolerance != options->tolerance)
        return fib_error(FIB_E_MISMATCH, "%s: the fibers were made with tolerance %d, the "
                         "options say %d", fn, (int)fibers->made_tolerance,
                         (int)options->tolerance);
    for (int32_t i = 0; i < g->n_groups; i++)
        if (fibers->made_eps[i] != group_eps(g, i, options))
            return fib_error(FIB_E_MISMATCH, "%s: group %d: the fibers were made with eps "
                             "%g, the options and the graph now give %g", fn, (int)i,
                             fibers->made_eps[i], group_eps(g, i, options));
    return color_given(g, options, fibers, out);
}
