/* The colouring object: one partition per group of a graph, with the
 * scales and kept merge totals the colouring driver may attach; its
 * allocation, its check against a graph and the public accessors. */
#include "model/model.h"

#include <string.h>

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
    fib_merge_totals_free(c);
    fib_free(c->made_eps);
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

void fib_merge_totals_free(fib_coloring *c)
{
    if (!c->merge_totals)
        return;
    for (int32_t i = 0; i < c->n_groups; i++) {
        fib_free(c->merge_totals[i].sums);
        fib_free(c->merge_totals[i].out_labels);
        fib_free(c->merge_totals[i].in_labels);
    }
    fib_free(c->merge_totals);
    c->merge_totals = NULL;
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
    fib_free(c->made_eps); /* no longer fib_color's fibers */
    c->made_eps = NULL;
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
