/* The automorphism level of the symmetry ladder (ladder.c): twins in
 * network groups, orbits by individualisation and refinement in node
 * groups. */
#include "color/color.h"
#include "graphs/automorphism.h"

#include <math.h>
#include <string.h>

int32_t fib_automorphism_options_check(const fib_color_options *o, const char *fn)
{
    if (o->struct_size < sizeof *o)
        return fib_error(FIB_E_INVALID, "%s: options.struct_size %zu is smaller "
                         "than %zu (call fib_color_options_init)", fn,
                         o->struct_size, sizeof *o);
    if (o->tolerance != FIB_TOL_EXACT && o->tolerance != FIB_TOL_ABS)
        return fib_error(FIB_E_INVALID, "%s: unknown tolerance %d", fn,
                         (int)o->tolerance);
    if (!(o->eps >= 0) || !isfinite(o->eps))
        return fib_error(FIB_E_INVALID, "%s: eps must be finite and >= 0", fn);
    if (o->n_threads < 0 || o->reserved0 != 0)
        return fib_error(FIB_E_INVALID, "%s: n_threads must be >= 0 and "
                         "reserved0 0", fn);
    return FIB_OK;
}

static double group_eps(const fib_graph *g, int32_t group,
                        const fib_color_options *o)
{
    if (o->tolerance == FIB_TOL_EXACT)
        return -1.0;
    double override = g->groups[group].eps_override;
    return override >= 0 ? override : o->eps;
}

static bool is_hidden_unit_group(const fib_graph *g, int32_t i)
{
    return !fib_group_is_nodes(g, i) && !fib_group_is_input(g, i) &&
           !fib_group_is_output(g, i);
}

static int32_t group_rows(const fib_signature *sig, double eps,
                          fib_partition *out)
{
    int32_t status = fib_partition_init(out, sig->n_units);
    if (!status)
        status = fib_group_signatures(sig, eps, out);
    if (status)
        fib_partition_clear(out);
    return status;
}

/* ------------------------------------------------------------------------ */
/* Twins of network groups                                                  */
/* ------------------------------------------------------------------------ */

/* parts: the colouring to fill, discrete on entry. Rows: fiber signatures
 * over discrete sources; columns: opfiber signatures over discrete
 * consumers, flavoured by the row classes (twins share them). */
static int32_t network_twins(const fib_graph *g, const fib_color_options *o,
                             fib_partition *parts)
{
    fib_coloring *discrete = NULL, *rows = NULL;
    int32_t status = fib_coloring_alloc(g, FIB_SYM_FIBERS, &discrete);
    if (!status)
        status = fib_coloring_alloc(g, FIB_SYM_FIBERS, &rows);
    int64_t done = 0, total = 2 * (int64_t)g->n_groups;
    for (int32_t i = 0; i < g->n_groups && !status; i++) {
        if (!fib_group_is_nodes(g, i) && !fib_group_is_input(g, i)) {
            fib_signature sig;
            status = fib_fiber_signature(g, i, discrete->parts, &sig);
            fib_partition next = {0};
            if (!status) {
                status = group_rows(&sig, group_eps(g, i, o), &next);
                fib_signature_clear(&sig);
            }
            if (!status) {
                fib_partition_clear(&rows->parts[i]);
                rows->parts[i] = next;
            }
        }
        if (!status && o->progress && o->progress(o->progress_user, ++done, total))
            status = fib_error(FIB_E_CANCELLED, "fib_automorphisms: cancelled");
    }
    for (int32_t i = 0; i < g->n_groups && !status; i++) {
        if (is_hidden_unit_group(g, i)) {
            fib_signature sig;
            status = fib_opfiber_signature(g, i, discrete->parts, rows->parts, &sig);
            fib_partition columns = {0}, twins = {0};
            if (!status) {
                status = group_rows(&sig, group_eps(g, i, o), &columns);
                fib_signature_clear(&sig);
            }
            if (!status) {
                status = fib_partition_meet(&twins, &rows->parts[i], &columns);
                fib_partition_clear(&columns);
            }
            if (!status) {
                fib_partition_clear(&parts[i]);
                parts[i] = twins;
            }
        }
        if (!status && o->progress && o->progress(o->progress_user, ++done, total))
            status = fib_error(FIB_E_CANCELLED, "fib_automorphisms: cancelled");
    }
    fib_coloring_free(discrete);
    fib_coloring_free(rows);
    return status;
}

/* ------------------------------------------------------------------------ */
/* Node groups as one labelled graph                                        */
/* ------------------------------------------------------------------------ */

typedef struct node_graph {
    fib_aut_input in;
    int64_t *offset; /* per group: first node (-1: not a node group) */
    int64_t *src, *dst, *mult;
    int32_t *type;
    double *weight;
} node_graph;

static void node_graph_clear(node_graph *ng)
{
    fib_free(ng->offset);
    fib_free(ng->src);
    fib_free(ng->dst);
    fib_free(ng->mult);
    fib_free(ng->type);
    fib_free(ng->weight);
    memset(ng, 0, sizeof *ng);
}

/* The arcs of all node groups, read through the quotient of the discrete
 * colouring (one node per class: every arc, parallel arcs merged). */
static int32_t node_graph_build(const fib_graph *g, node_graph *ng)
{
    memset(ng, 0, sizeof *ng);
    ng->offset = fib_alloc(g->n_groups > 0 ? g->n_groups : 1, sizeof *ng->offset);
    if (!ng->offset)
        return fib_error(FIB_E_NOMEM, "automorphisms: out of memory");
    int64_t n = 0;
    for (int32_t i = 0; i < g->n_groups; i++) {
        ng->offset[i] = fib_group_is_nodes(g, i) ? n : -1;
        if (ng->offset[i] >= 0)
            n += g->groups[i].n_units;
    }
    ng->in.n_nodes = n;
    if (n == 0)
        return FIB_OK;
    fib_coloring *discrete = NULL;
    fib_quotient *q = NULL;
    int64_t m = 0;
    int32_t status = fib_coloring_alloc(g, FIB_SYM_FIBERS, &discrete);
    if (!status)
        status = fib_quotient_create(g, discrete, &q);
    if (!status)
        status = fib_quotient_num_arcs(q, &m);
    int32_t *src_group = NULL, *dst_group = NULL;
    if (!status && m > 0) {
        ng->src = fib_alloc(m, sizeof *ng->src);
        ng->dst = fib_alloc(m, sizeof *ng->dst);
        ng->mult = fib_alloc(m, sizeof *ng->mult);
        ng->type = fib_alloc(m, sizeof *ng->type);
        ng->weight = fib_alloc(m, sizeof *ng->weight);
        src_group = fib_alloc(m, sizeof *src_group);
        dst_group = fib_alloc(m, sizeof *dst_group);
        if (!ng->src || !ng->dst || !ng->mult || !ng->type || !ng->weight ||
            !src_group || !dst_group)
            status = fib_error(FIB_E_NOMEM, "automorphisms: out of memory for "
                               "%lld arcs", (long long)m);
        if (!status)
            status = fib_quotient_arcs(q, m, src_group, ng->src, dst_group,
                                       ng->dst, ng->type, ng->weight, ng->mult);
        for (int64_t a = 0; a < m && !status; a++) {
            ng->src[a] += ng->offset[src_group[a]];
            ng->dst[a] += ng->offset[dst_group[a]];
        }
    }
    fib_free(src_group);
    fib_free(dst_group);
    fib_quotient_free(q);
    fib_coloring_free(discrete);
    if (status)
        return status;
    ng->in.n_arcs = m;
    ng->in.src = ng->src;
    ng->in.dst = ng->dst;
    ng->in.type = ng->type;
    ng->in.weight = ng->weight;
    ng->in.mult = ng->mult;
    return FIB_OK;
}

static int32_t node_orbits(const fib_graph *g, const fib_coloring *covers,
                           fib_partition *parts)
{
    node_graph ng;
    int32_t status = node_graph_build(g, &ng);
    int64_t n = ng.in.n_nodes;
    if (status || n == 0) {
        node_graph_clear(&ng);
        return status;
    }
    if (n > FIB_AUT_MAX_NODES) {
        node_graph_clear(&ng);
        return fib_error(FIB_E_OVERFLOW, "fib_automorphisms: the node groups "
                         "have %lld nodes, more than the orbit search's limit "
                         "of %lld (FIB_AUTOMORPHISM_MAX_NODES)", (long long)n,
                         (long long)FIB_AUT_MAX_NODES);
    }
    int64_t *initial = fib_alloc(n, sizeof *initial);
    int64_t *orbit = fib_alloc(n, sizeof *orbit);
    if (!initial || !orbit)
        status = fib_error(FIB_E_NOMEM, "fib_automorphisms: out of memory");
    /* Start from the exact covers: a global class id per node. */
    int64_t class_base = 0;
    for (int32_t i = 0; i < g->n_groups && !status; i++) {
        if (ng.offset[i] < 0)
            continue;
        for (int64_t v = 0; v < g->groups[i].n_units; v++)
            initial[ng.offset[i] + v] = class_base + covers->parts[i].color[v];
        class_base += covers->parts[i].n_classes;
    }
    int64_t n_orbits = 0;
    ng.in.initial = initial;
    if (!status)
        status = fib_aut_orbits(&ng.in, orbit, &n_orbits, NULL);
    for (int32_t i = 0; i < g->n_groups && !status; i++) {
        if (ng.offset[i] < 0)
            continue;
        fib_partition *p = &parts[i];
        memcpy(p->color, orbit + ng.offset[i], (size_t)p->n_units * sizeof *p->color);
        status = fib_partition_canonicalize(p);
    }
    fib_free(initial);
    fib_free(orbit);
    node_graph_clear(&ng);
    return status;
}

int32_t fib_automorphisms_from(const fib_graph *g, const fib_color_options *o,
                               const fib_coloring *exact_covers, fib_coloring **out)
{
    fib_coloring *c = NULL, *covers = NULL;
    int32_t status = fib_coloring_alloc(g, FIB_SYM_AUTOMORPHISMS, &c);
    if (!status)
        status = network_twins(g, o, c->parts);
    bool has_nodes = false;
    for (int32_t i = 0; i < g->n_groups; i++)
        has_nodes = has_nodes || fib_group_is_nodes(g, i);
    if (!status && has_nodes && !exact_covers) {
        fib_color_options exact;
        fib_color_options_init(&exact, sizeof exact);
        exact.symmetry = FIB_SYM_COVERS;
        exact.n_threads = o->n_threads;
        status = fib_color_internal(g, &exact, &covers);
        exact_covers = covers;
    }
    if (!status && has_nodes)
        status = node_orbits(g, exact_covers, c->parts);
    fib_coloring_free(covers);
    if (status) {
        fib_coloring_free(c);
        return status;
    }
    *out = c;
    return FIB_OK;
}

int32_t fib_automorphisms(const fib_graph *g, const fib_color_options *options,
                          fib_coloring **out)
{
    if (!g || !out)
        return fib_error(FIB_E_NULL, "fib_automorphisms: %s is NULL",
                         g ? "out" : "graph");
    fib_color_options defaults;
    if (!options) {
        fib_color_options_init(&defaults, sizeof defaults);
        options = &defaults;
    }
    int32_t status = fib_automorphism_options_check(options, "fib_automorphisms");
    if (status)
        return status;
    return fib_automorphisms_from(g, options, NULL, out);
}

int32_t fib_graph_is_automorphism(const fib_graph *g, int32_t group,
                                  const int64_t *permutation, int64_t n,
                                  int32_t *is_out)
{
    static const char fn[] = "fib_graph_is_automorphism";
    if (!g || !permutation || !is_out)
        return fib_error(FIB_E_NULL, "%s: NULL argument", fn);
    if (group < -1 || group >= g->n_groups)
        return fib_error(FIB_E_RANGE, "%s: group %d out of range (%d groups)",
                         fn, (int)group, (int)g->n_groups);
    if (group >= 0 && !fib_group_is_nodes(g, group))
        return fib_error(FIB_E_UNSUPPORTED, "%s: group %d is not a node group "
                         "(network groups: see fib_automorphisms)", fn, (int)group);
    node_graph ng;
    int32_t status = node_graph_build(g, &ng);
    if (status) {
        node_graph_clear(&ng);
        return status;
    }
    int64_t total = ng.in.n_nodes;
    int64_t expected = group >= 0 ? g->groups[group].n_units : total;
    if (total == 0)
        status = fib_error(FIB_E_UNSUPPORTED, "%s: the graph has no node groups", fn);
    else if (n != expected)
        status = fib_error(FIB_E_SHAPE, "%s: the permutation has %lld entries, "
                           "expected %lld", fn, (long long)n, (long long)expected);
    int64_t *perm = status ? NULL : fib_alloc(total, sizeof *perm);
    int64_t *group_of = status ? NULL : fib_alloc(total, sizeof *group_of);
    if (!status && (!perm || !group_of))
        status = fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    if (!status) {
        for (int32_t i = 0; i < g->n_groups; i++)
            for (int64_t v = 0; ng.offset[i] >= 0 && v < g->groups[i].n_units; v++)
                group_of[ng.offset[i] + v] = i;
        bool valid = true;
        for (int64_t v = 0; v < total; v++)
            perm[v] = v;
        int64_t base = group >= 0 ? ng.offset[group] : 0;
        for (int64_t v = 0; v < n && valid; v++) {
            int64_t p = permutation[v];
            valid = p >= 0 && p < n && group_of[base + p] == group_of[base + v];
            if (valid)
                perm[base + v] = base + p;
        }
        bool is = false;
        if (valid)
            status = fib_aut_check(&ng.in, perm, &is);
        if (!status)
            *is_out = is ? 1 : 0;
    }
    fib_free(perm);
    fib_free(group_of);
    node_graph_clear(&ng);
    return status;
}
