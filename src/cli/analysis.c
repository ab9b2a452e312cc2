/* The per-layer analysis: fibers, opfibers and covers of every group, the
 * class statistics of the chosen symmetry, and the base's parameters. */
#include "report.h"

#include <stdlib.h>
#include <string.h>

void analysis_free(analysis *a)
{
    fib_coloring_free(a->fibers);
    fib_coloring_free(a->opfibers);
    fib_coloring_free(a->covers);
    fib_base_free(a->base);
    fib_hierarchy_free(a->hierarchy);
    free(a->rows);
    memset(a, 0, sizeof *a);
}

const char *layer_label(const layer_row *r, char *buf, size_t size)
{
    if (r->name && r->name[0])
        return r->name;
    snprintf(buf, size, "group%d", (int)r->group);
    return buf;
}

static int class_stats(const cli_options *o, const fib_coloring *c,
                       layer_row *r)
{
    int64_t n;
    int32_t st = fib_coloring_num_classes(c, r->group, &n);
    if (st != FIB_OK)
        return cli_fail(o->model, st);
    int64_t *sizes = malloc((size_t)n * sizeof *sizes);
    if (!sizes) {
        fprintf(stderr, "fibration: out of memory\n");
        return CLI_EXIT_FAILURE;
    }
    st = fib_coloring_class_sizes(c, r->group, sizes, n);
    if (st != FIB_OK) {
        free(sizes);
        return cli_fail(o->model, st);
    }
    for (int64_t k = 0; k < n; k++) {
        if (sizes[k] == 1)
            r->trivial++;
        else
            r->nontrivial++;
        if (sizes[k] > r->largest)
            r->largest = sizes[k];
    }
    free(sizes);
    return CLI_EXIT_OK;
}

/* Fills the row; its base_units and base_params too unless `counted`
 * (count_base set them). */
static int fill_row(const cli_options *o, const analysis *a, int32_t i,
                    bool counted, layer_row *r)
{
    const fib_graph *g = a->graph;
    /* without a base the model is its own (nothing to merge) */
    const fib_graph *bg = a->base ? fib_base_graph(a->base) : g;
    r->group = i;
    r->name = fib_graph_group_name(g, i);
    int32_t st = fib_graph_group_info(g, i, &r->op, &r->units, &r->activation,
                                      NULL, NULL, NULL, NULL);
    if (st == FIB_OK)
        st = fib_coloring_num_classes(a->covers, i, &r->covers);
    if (st == FIB_OK && !counted)
        st = fib_graph_group_info(bg, i, NULL, &r->base_units, NULL, NULL, NULL,
                                  NULL, NULL);
    if (st != FIB_OK)
        return cli_fail(o->model, st);
    r->orbits = -1;
    if (a->hierarchy) {
        st = fib_hierarchy_num_classes(a->hierarchy, i, FIB_SYM_AUTOMORPHISMS, &r->orbits);
        if (st == FIB_OK)
            st = fib_hierarchy_chain(a->hierarchy, i, &r->chain);
        if (st != FIB_OK)
            return cli_fail(o->model, st);
    }
    r->params = cli_group_parameters(g, i);
    if (!counted)
        r->base_params = cli_group_parameters(bg, i);
    return class_stats(o, a->chosen, r);
}

static int64_t widest_group(const fib_graph *g)
{
    int32_t n_groups = 0;
    int64_t widest = 0;
    fib_graph_num_groups(g, &n_groups);
    for (int32_t i = 0; i < n_groups; i++) {
        int64_t n = 0;
        fib_graph_group_info(g, i, NULL, &n, NULL, NULL, NULL, NULL, NULL);
        widest = n > widest ? n : widest;
    }
    return widest;
}

/* Covers are the meet of fibers and opfibers, class by class: computed
 * here from the two colourings rather than by colouring the graph again. */
static int meet(const cli_options *o, const fib_graph *g, const fib_coloring *fibers,
                const fib_coloring *opfibers, fib_coloring **out)
{
    int32_t n_groups = 0;
    int32_t st = fib_graph_num_groups(g, &n_groups);
    if (st == FIB_OK)
        st = fib_coloring_create(g, FIB_SYM_COVERS, out);
    for (int32_t i = 0; i < n_groups && st == FIB_OK; i++) {
        int64_t n = 0, k_op = 0, k_f = 0;
        st = fib_graph_group_info(g, i, NULL, &n, NULL, NULL, NULL, NULL, NULL);
        if (st == FIB_OK)
            st = fib_coloring_num_classes(opfibers, i, &k_op);
        if (st == FIB_OK)
            st = fib_coloring_num_classes(fibers, i, &k_f);
        int64_t *f = st == FIB_OK ? malloc((size_t)n * sizeof *f) : NULL;
        int64_t *op = st == FIB_OK ? malloc((size_t)n * sizeof *op) : NULL;
        if (st == FIB_OK && (!f || !op))
            st = FIB_E_NOMEM;
        if (st == FIB_OK)
            st = fib_coloring_colors(fibers, i, f, n);
        if (st == FIB_OK)
            st = fib_coloring_colors(opfibers, i, op, n);
        /* A pair label, renumbered canonically by the library; class ids
         * are below n, and n < 2^31 keeps n * n within int64. Where either
         * side is discrete, so is the meet: labels below n, which the
         * library renumbers without sorting them. */
        for (int64_t u = 0; st == FIB_OK && u < n; u++)
            f[u] = k_f == n || k_op == n ? u : f[u] * k_op + op[u];
        if (st == FIB_OK)
            st = fib_coloring_set_group(*out, i, f, n);
        free(f);
        free(op);
    }
    if (st == FIB_OK)
        return CLI_EXIT_OK;
    if (st == FIB_E_NOMEM)
        fprintf(stderr, "fibration: out of memory\n");
    return st == FIB_E_NOMEM ? CLI_EXIT_FAILURE : cli_fail(o->model, st);
}

/* The fibers' classes alone: the colouring made by fib_color keeps the
 * merge totals of its dense groups for fib_compress, which analyze does
 * not need while it colours the opfibers (the peak of the command) and
 * counts the base without making it (a base made without them reads the
 * weights again, to the same bits). A scaled colouring is kept whole: its
 * scales are part of its classes. */
static int without_merge_totals(const cli_options *o, const fib_graph *g,
                                fib_coloring **fibers)
{
    if (o->tolerance & FIB_TOL_SCALED)
        return CLI_EXIT_OK;
    int32_t n_groups = 0;
    fib_coloring *copy = NULL;
    int32_t st = fib_graph_num_groups(g, &n_groups);
    if (st == FIB_OK)
        st = fib_coloring_create(g, FIB_SYM_FIBERS, &copy);
    for (int32_t i = 0; i < n_groups && st == FIB_OK; i++) {
        int64_t n = 0;
        st = fib_graph_group_info(g, i, NULL, &n, NULL, NULL, NULL, NULL, NULL);
        int64_t *colors = st == FIB_OK ? malloc((size_t)(n > 0 ? n : 1) * sizeof *colors) : NULL;
        if (st == FIB_OK && !colors)
            st = FIB_E_NOMEM;
        if (st == FIB_OK)
            st = fib_coloring_colors(*fibers, i, colors, n);
        if (st == FIB_OK)
            st = fib_coloring_set_group(copy, i, colors, n);
        free(colors);
    }
    if (st != FIB_OK) {
        fib_coloring_free(copy);
        if (st == FIB_E_NOMEM)
            fprintf(stderr, "fibration: out of memory\n");
        return st == FIB_E_NOMEM ? CLI_EXIT_FAILURE : cli_fail(o->model, st);
    }
    fib_coloring_free(*fibers);
    *fibers = copy;
    return CLI_EXIT_OK;
}

/* The whole ladder (fibers, opfibers, covers, automorphism orbits) with
 * the same tolerance, for --symmetry all. */
static int hierarchy_run(const cli_options *o, const fib_graph *g,
                         fib_hierarchy **out)
{
    fib_color_options co;
    fib_color_options_init(&co, sizeof co);
    co.tolerance = o->tolerance;
    co.eps = o->tolerance == FIB_TOL_ABS ? o->eps : 0.0;
    int32_t st = fib_hierarchy_create(g, &co, out);
    return st == FIB_OK ? CLI_EXIT_OK : cli_fail(o->model, st);
}

/* The base's units and parameters per group, counted from the classes
 * (fib_base_count) without making the base, whose merged blocks would be
 * the peak memory of the command. FIB_E_UNSUPPORTED: a block that cannot
 * count it so; the base is then made. */
static int32_t count_base(const fib_graph *g, analysis *a)
{
    int64_t *counts = malloc(2 * (size_t)a->n_groups * sizeof *counts + 1);
    if (!counts)
        return FIB_E_NOMEM;
    int64_t *units = counts, *params = counts + a->n_groups;
    int32_t st = fib_base_count(g, a->chosen, units, params, a->n_groups);
    for (int32_t i = 0; st == FIB_OK && i < a->n_groups; i++) {
        a->rows[i].base_units = units[i];
        a->rows[i].base_params = params[i];
    }
    free(counts);
    return st;
}

int analysis_run(const cli_options *o, const fib_graph *g, cli_progress *p,
                 analysis *a)
{
    memset(a, 0, sizeof *a);
    a->graph = g;
    int rc = cli_color(o, g, FIB_SYM_FIBERS, p, &a->fibers);
    if (rc == CLI_EXIT_OK)
        rc = cli_color_from(o, g, FIB_SYM_OPFIBERS, a->fibers, p, &a->opfibers);
    if (rc == CLI_EXIT_OK)
        rc = without_merge_totals(o, g, &a->fibers);
    if (rc == CLI_EXIT_OK)
        rc = widest_group(g) < (INT64_C(1) << 31)
                 ? meet(o, g, a->fibers, a->opfibers, &a->covers)
                 : cli_color(o, g, FIB_SYM_COVERS, p, &a->covers);
    if (rc == CLI_EXIT_OK && o->all_levels)
        rc = hierarchy_run(o, g, &a->hierarchy);
    cli_progress_end(p);
    if (rc != CLI_EXIT_OK)
        return rc;
    a->chosen = o->symmetry == FIB_SYM_FIBERS     ? a->fibers
                : o->symmetry == FIB_SYM_OPFIBERS ? a->opfibers
                                                  : a->covers;
    int32_t st = fib_graph_num_groups(g, &a->n_groups);
    if (st != FIB_OK)
        return cli_fail(o->model, st);
    a->rows = calloc((size_t)a->n_groups, sizeof *a->rows);
    if (!a->rows) {
        fprintf(stderr, "fibration: out of memory\n");
        return CLI_EXIT_FAILURE;
    }
    for (int32_t i = 0; i < a->n_groups && st == FIB_OK; i++) {
        st = fib_coloring_num_classes(a->fibers, i, &a->rows[i].fibers);
        if (st == FIB_OK)
            st = fib_coloring_num_classes(a->opfibers, i, &a->rows[i].opfibers);
    }
    /* compressing by another symmetry, the fibers are no longer needed */
    if (st == FIB_OK && a->chosen != a->fibers) {
        fib_coloring_free(a->fibers);
        a->fibers = NULL;
    }
    /* A model with nothing to merge is its own base: no float64 copy of it
     * (twice the size of a float32 file) is made to count its parameters. */
    bool counted = false;
    if (st == FIB_OK && !cli_nothing_to_merge(g, a->chosen)) {
        st = count_base(g, a);
        counted = st == FIB_OK;
        if (st == FIB_E_UNSUPPORTED)
            st = FIB_OK;
    }
    if (st == FIB_OK && !counted && !cli_nothing_to_merge(g, a->chosen)) {
        /* only counted: made in the dtype compress would write it in */
        fib_compress_options copts;
        fib_compress_options_init(&copts, sizeof copts);
        copts.dtype = cli_model_dtype(g);
        st = fib_compress_ex(g, a->chosen, &copts, &a->base);
        /* a merged weight beyond float32 is still counted */
        if (st == FIB_E_NONFINITE && copts.dtype == FIB_DTYPE_F32)
            st = fib_compress(g, a->chosen, &a->base);
    }
    if (st != FIB_OK)
        return cli_fail(o->model, st);
    for (int32_t i = 0; i < a->n_groups; i++) {
        rc = fill_row(o, a, i, counted, &a->rows[i]);
        if (rc != CLI_EXIT_OK)
            return rc;
        a->params += a->rows[i].params;
        a->base_params += a->rows[i].base_params;
    }
    return CLI_EXIT_OK;
}
