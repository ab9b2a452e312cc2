/* fib_break_symmetry: the cover base brought back to the original widths
 * with fresh units (random input weights, zero output weights), so that the
 * network computes what the base computes but can learn again. */
#include "compress/compress.h"

#include <math.h>

static double draw(fib_rng *rng, double bound)
{
    return (2.0 * fib_rng_uniform(rng) - 1.0) * bound;
}

/* Dense group of the broken network: base rows first, reading the base
 * units of the source (new source units get weight 0, which is their zero
 * output weight), then the new units, reading every source unit. */
static int32_t broken_dense(const fib_graph *g, int32_t group,
                            const fib_graph *base, fib_graph *out,
                            fib_rng *rng)
{
    const fib_dense *bd = fib_group_matrix(base, group);
    int32_t source = g->groups[group].sources[0];
    int64_t n = g->groups[group].n_units, k = base->groups[group].n_units;
    int64_t n_in = g->groups[source].n_units, k_in = base->groups[source].n_units;
    if (fib_group_is_output(g, group))
        n = k; /* outputs keep their units */
    double *w = fib_calloc(n * n_in, sizeof *w);
    double *b = bd->bias ? fib_calloc(n, sizeof *b) : NULL;
    if (!w || (bd->bias && !b)) {
        fib_free(w);
        fib_free(b);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory breaking symmetry", (int)group);
    }
    for (int64_t c = 0; c < k; c++) {
        for (int64_t j = 0; j < k_in; j++)
            w[c * n_in + j] = fib_dense_weight(bd, c, j);
        if (b)
            b[c] = fib_dense_bias(bd, c);
    }
    double bound = 1.0 / sqrt((double)n_in);
    for (int64_t r = k; r < n; r++) {
        for (int64_t j = 0; j < n_in; j++)
            w[r * n_in + j] = draw(rng, bound);
        if (b)
            b[r] = draw(rng, bound);
    }
    int32_t id;
    return fib_graph_add_dense_owned(out, source, n, w, b, &id);
}

int32_t fib_break_symmetry(const fib_graph *g, const fib_coloring *coloring,
                           uint64_t seed, fib_graph **out)
{
    if (!g || !out)
        return fib_error(FIB_E_NULL, "fib_break_symmetry: %s is NULL", g ? "out" : "graph");
    for (int32_t i = 0; i < g->n_groups; i++)
        if (!fib_group_is_input(g, i) && !fib_group_matrix(g, i))
            return fib_error(FIB_E_UNSUPPORTED,
                             "fib_break_symmetry: group %d is a %s group; only dense networks "
                             "are supported in this version",
                             (int)i, g->groups[i].ops->name);
    fib_coloring *covers = NULL;
    int32_t status = FIB_OK;
    if (!coloring) {
        fib_color_options o;
        fib_color_options_init(&o, sizeof o);
        o.symmetry = FIB_SYM_COVERS;
        status = fib_color_internal(g, &o, &covers);
        coloring = covers;
    }
    fib_base *base = NULL;
    fib_graph *broken = NULL;
    if (!status)
        status = fib_compress(g, coloring, &base);
    if (!status)
        status = fib_graph_create(&broken);
    fib_rng rng;
    fib_rng_seed(&rng, seed);
    for (int32_t i = 0; i < g->n_groups && !status; i++) {
        int32_t id = i;
        if (fib_group_is_input(g, i))
            status = fib_graph_add_input(broken, g->groups[i].n_units, &id);
        else
            status = broken_dense(g, i, base->graph, broken, &rng);
        if (!status)
            status = fib_copy_group_attributes(g, i, broken, i);
    }
    fib_coloring_free(covers);
    fib_base_free(base);
    if (status) {
        fib_graph_free(broken);
        return status;
    }
    *out = broken;
    return FIB_OK;
}
