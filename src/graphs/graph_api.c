/* The public API of general directed graphs: node groups, arc sets, initial
 * classes, the convention, colouring all node groups with the refinement
 * engine, the quotient graph and the fiber building blocks. */
#include "graphs/edgelist.h"
#include "graphs/graphs.h"
#include "graphs/refine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Arcs into a node group from node group src_group. */
typedef struct edge_set {
    int32_t src_group;
    int64_t m;
    const int64_t *src;
    const int64_t *dst;
    const double *weight;
    const int32_t *type;
    void *owned[4];
} edge_set;

typedef struct fib_nodes {
    int64_t n_sets;
    int64_t cap_sets;
    edge_set *sets;
    int64_t *initial; /* NULL or n_units labels */
    fib_edgelist *file; /* names and arcs of a group read from a file */
} fib_nodes;

static void nodes_free(void *block)
{
    fib_nodes *b = block;
    if (!b)
        return;
    for (int64_t s = 0; s < b->n_sets; s++)
        for (int k = 0; k < 4; k++)
            fib_free(b->sets[s].owned[k]);
    fib_free(b->sets);
    fib_free(b->initial);
    fib_edgelist_clear(b->file);
    fib_free(b->file);
    fib_free(b);
}

static bool is_nodes(const fib_graph *g, int32_t group)
{
    return g->groups[group].op == FIB_OP_NODES;
}

/* ------------------------------------------------------------------------ */
/* All node groups as one directed graph                                    */
/* ------------------------------------------------------------------------ */

typedef struct combined {
    fib_refine_input in;
    int64_t *offset;   /* per group: first global node (-1: not nodes) */
    int64_t *src, *dst, *initial;
    double *weight;
    int32_t *type;
} combined;

static void combined_free(combined *c)
{
    fib_free(c->offset);
    fib_free(c->src);
    fib_free(c->dst);
    fib_free(c->initial);
    fib_free(c->weight);
    fib_free(c->type);
    memset(c, 0, sizeof *c);
}

/* One node group with one set of arcs among its own nodes and no initial
 * classes (a graph read from one file): its arrays are the combined graph
 * as they stand, so they are borrowed rather than copied. */
static bool borrow_single_set(const fib_graph *g, combined *c)
{
    int32_t only = -1;
    for (int32_t i = 0; i < g->n_groups; i++) {
        if (!is_nodes(g, i))
            continue;
        if (only >= 0)
            return false;
        only = i;
    }
    const fib_nodes *b = g->groups[only].block;
    if (b->initial || b->n_sets != 1 || b->sets[0].src_group != only)
        return false;
    c->in.src = b->sets[0].src;
    c->in.dst = b->sets[0].dst;
    c->in.weight = b->sets[0].weight;
    c->in.type = b->sets[0].type;
    return true;
}

static int32_t combine(const fib_graph *g, combined *c)
{
    memset(c, 0, sizeof *c);
    fib_refine_input_init(&c->in);
    c->offset = fib_alloc(g->n_groups > 0 ? g->n_groups : 1, sizeof *c->offset);
    if (!c->offset)
        return fib_error(FIB_E_NOMEM, "graph: out of memory");
    int64_t n = 0, m = 0;
    bool weighted = false, typed = false, labelled = false;
    for (int32_t i = 0; i < g->n_groups; i++) {
        c->offset[i] = -1;
        if (!is_nodes(g, i))
            continue;
        const fib_nodes *b = g->groups[i].block;
        c->offset[i] = n;
        n += g->groups[i].n_units;
        labelled = labelled || b->initial;
        for (int64_t s = 0; s < b->n_sets; s++) {
            m += b->sets[s].m;
            weighted = weighted || b->sets[s].weight;
            typed = typed || b->sets[s].type;
        }
    }
    c->in.n_nodes = n;
    c->in.n_arcs = m;
    c->in.convention = g->convention;
    if (n == 0)
        return FIB_OK;
    if (borrow_single_set(g, c))
        return FIB_OK;
    int64_t cap = m > 0 ? m : 1;
    c->src = fib_alloc(cap, sizeof *c->src);
    c->dst = fib_alloc(cap, sizeof *c->dst);
    c->weight = weighted ? fib_alloc(cap, sizeof *c->weight) : NULL;
    c->type = typed ? fib_alloc(cap, sizeof *c->type) : NULL;
    int64_t *group_of = fib_alloc(n, sizeof *group_of);
    int64_t *label = fib_alloc(n, sizeof *label);
    c->initial = fib_alloc(n, sizeof *c->initial);
    int32_t status = FIB_OK;
    if (!c->src || !c->dst || (weighted && !c->weight) ||
        (typed && !c->type) || !group_of || !label || !c->initial) {
        status = fib_error(FIB_E_NOMEM, "graph: out of memory for %lld arcs",
                           (long long)m);
        goto done;
    }
    int64_t k = 0;
    for (int32_t i = 0; i < g->n_groups; i++) {
        if (c->offset[i] < 0)
            continue;
        const fib_nodes *b = g->groups[i].block;
        for (int64_t v = 0; v < g->groups[i].n_units; v++) {
            group_of[c->offset[i] + v] = i;
            label[c->offset[i] + v] = b->initial ? b->initial[v] : 0;
        }
        for (int64_t s = 0; s < b->n_sets; s++) {
            const edge_set *e = &b->sets[s];
            int64_t so = c->offset[e->src_group], dof = c->offset[i];
            for (int64_t a = 0; a < e->m; a++, k++) {
                c->src[k] = so + e->src[a];
                c->dst[k] = dof + e->dst[a];
                if (c->weight)
                    c->weight[k] = e->weight ? e->weight[a] : 1.0;
                if (c->type)
                    c->type[k] = e->type ? e->type[a] : 0;
            }
        }
    }
    /* classes never span groups: the initial classes are (group, label) */
    int64_t n_ids;
    status = fib_relabel_pairs(n, group_of, label, c->initial, &n_ids);
    c->in.src = c->src;
    c->in.dst = c->dst;
    c->in.weight = c->weight;
    c->in.type = c->type;
    c->in.initial = n_ids > 1 ? c->initial : NULL;
    (void)labelled;
done:
    fib_free(group_of);
    fib_free(label);
    if (status)
        combined_free(c);
    return status;
}

int32_t fib_color_node_groups(const fib_graph *g, const fib_color_options *o,
                              bool reverse, fib_partition *parts)
{
    bool any = false;
    for (int32_t i = 0; i < g->n_groups && !any; i++)
        any = is_nodes(g, i);
    if (!any)
        return FIB_OK;
    combined c;
    int32_t status = combine(g, &c);
    if (status)
        return status;
    c.in.reverse = reverse;
    c.in.tolerance = o->tolerance;
    c.in.eps = o->eps;
    c.in.progress = o->progress;
    c.in.progress_user = o->progress_user;
    int64_t *color = fib_alloc(c.in.n_nodes, sizeof *color);
    int64_t n_classes = 0;
    if (!color)
        status = fib_error(FIB_E_NOMEM, "graph: out of memory");
    else
        status = fib_refine(&c.in, color, &n_classes);
    for (int32_t i = 0; i < g->n_groups && !status; i++) {
        if (c.offset[i] < 0)
            continue;
        fib_partition next;
        status = fib_partition_init(&next, g->groups[i].n_units);
        if (status)
            break;
        memcpy(next.color, color + c.offset[i],
               (size_t)g->groups[i].n_units * sizeof *color);
        status = fib_partition_canonicalize(&next);
        if (status) {
            fib_partition_clear(&next);
            break;
        }
        fib_partition_clear(&parts[i]);
        parts[i] = next;
    }
    fib_free(color);
    combined_free(&c);
    return status;
}

/* ------------------------------------------------------------------------ */
/* Block operations of a node group                                         */
/* ------------------------------------------------------------------------ */

/* Signature coordinates (for fib_coloring_is_balanced): one per (group,
 * type, class) over the distinct (group, type) pairs of the arcs that count:
 * fibers, the arcs into the group keyed by their source group and the
 * source's class; opfibers (reverse), the arcs out of it keyed by their
 * target group and the target's class. */
typedef struct coord_key {
    int32_t group;
    int32_t type;
} coord_key;

static int compare_keys(const void *pa, const void *pb)
{
    const coord_key *a = pa, *b = pb;
    if (a->group != b->group)
        return a->group < b->group ? -1 : 1;
    return (a->type > b->type) - (a->type < b->type);
}

/* The arc sets that count for `group`: its own (in-arcs), or those of every
 * node group d whose source is `group` (out-arcs). *d_out: the set's node
 * group. Iterate with *g_at = group or 0 (reverse) and *s_at = 0. */
static const edge_set *next_set(const fib_graph *g, int32_t group, bool reverse,
                                int32_t *g_at, int64_t *s_at, int32_t *d_out)
{
    for (; *g_at < g->n_groups; ++*g_at, *s_at = 0) {
        if (!is_nodes(g, *g_at) || (!reverse && *g_at != group))
            continue;
        const fib_nodes *b = g->groups[*g_at].block;
        while (*s_at < b->n_sets) {
            const edge_set *e = &b->sets[(*s_at)++];
            if (!reverse || e->src_group == group) {
                *d_out = *g_at;
                return e;
            }
        }
    }
    return NULL;
}

/* Distinct (group, type) pairs, sorted; *keys NULL when there are none. */
static int32_t coord_keys(const fib_graph *g, int32_t group, bool reverse,
                          coord_key **keys, int64_t *n)
{
    int64_t total = 0, s_at = 0;
    int32_t g_at = reverse ? 0 : group, d;
    for (const edge_set *e; (e = next_set(g, group, reverse, &g_at, &s_at, &d));)
        total += e->type ? e->m : 1;
    *keys = NULL;
    *n = 0;
    if (total == 0)
        return FIB_OK;
    coord_key *k = fib_alloc(total, sizeof *k);
    if (!k)
        return fib_error(FIB_E_NOMEM, "graph: out of memory");
    int64_t at = 0;
    s_at = 0;
    g_at = reverse ? 0 : group;
    for (const edge_set *e; (e = next_set(g, group, reverse, &g_at, &s_at, &d));) {
        int32_t other = reverse ? d : e->src_group;
        for (int64_t a = 0; a < (e->type ? e->m : 1); a++) {
            k[at].group = other;
            k[at++].type = e->type ? e->type[a] : 0;
        }
    }
    qsort(k, (size_t)at, sizeof *k, compare_keys);
    int64_t distinct = 0;
    for (int64_t i = 0; i < at; i++)
        if (distinct == 0 || compare_keys(&k[distinct - 1], &k[i]) != 0)
            k[distinct++] = k[i];
    *keys = k;
    *n = distinct;
    return FIB_OK;
}

static int64_t arcs_width(const fib_graph *g, int32_t group, bool reverse,
                          const fib_partition *parts)
{
    coord_key *keys;
    int64_t n, width = 0;
    if (coord_keys(g, group, reverse, &keys, &n))
        return 0;
    for (int64_t i = 0; i < n; i++)
        width += parts[keys[i].group].n_classes;
    fib_free(keys);
    return width;
}

/* Weight sums of the arcs that count per (group, type, class). */
static int32_t arcs_fill(const fib_graph *g, int32_t group, bool reverse,
                         const fib_partition *parts, fib_signature *sig,
                         int64_t offset)
{
    coord_key *keys;
    int64_t n_keys;
    int32_t status = coord_keys(g, group, reverse, &keys, &n_keys);
    if (status)
        return status;
    int64_t *base = fib_alloc(n_keys > 0 ? n_keys : 1, sizeof *base);
    int64_t width = arcs_width(g, group, reverse, parts);
    int64_t *terms = fib_calloc(sig->n_units * (width > 0 ? width : 1),
                                sizeof *terms);
    if (!base || !terms) {
        fib_free(keys);
        fib_free(base);
        fib_free(terms);
        return fib_error(FIB_E_NOMEM, "graph: out of memory");
    }
    for (int64_t i = 0, at = 0; i < n_keys; i++) {
        base[i] = at;
        at += parts[keys[i].group].n_classes;
    }
    int64_t ld = sig->n_coords - sig->n_direct;
    for (int64_t u = 0; u < sig->n_units; u++)
        for (int64_t j = 0; j < width; j++) {
            sig->value[u * ld + offset + j] = 0;
            sig->tol[u * ld + offset + j] = 0; /* abs sums first */
        }
    int64_t s_at = 0;
    int32_t g_at = reverse ? 0 : group, d;
    for (const edge_set *e; (e = next_set(g, group, reverse, &g_at, &s_at, &d));) {
        int32_t other = reverse ? d : e->src_group;
        for (int64_t a = 0; a < e->m; a++) {
            coord_key key = {other, e->type ? e->type[a] : 0};
            coord_key *hit = bsearch(&key, keys, (size_t)n_keys, sizeof *keys,
                                     compare_keys);
            int64_t row = reverse ? e->src[a] : e->dst[a];
            int64_t end = reverse ? e->dst[a] : e->src[a];
            int64_t j = base[hit - keys] + parts[other].color[end];
            int64_t at = row * ld + offset + j;
            double w = e->weight ? e->weight[a] : 1.0;
            sig->value[at] += w;
            sig->tol[at] += fabs(w);
            terms[row * width + j]++;
        }
    }
    for (int64_t u = 0; u < sig->n_units; u++)
        for (int64_t j = 0; j < width; j++) {
            int64_t at = u * ld + offset + j;
            sig->tol[at] = fib_rounding_tol(FIB_DTYPE_F64,
                                            terms[u * width + j],
                                            sig->tol[at]);
        }
    fib_free(keys);
    fib_free(base);
    fib_free(terms);
    return FIB_OK;
}

static int64_t nodes_fiber_width(const fib_graph *g, int32_t group,
                                 const fib_partition *parts)
{
    return arcs_width(g, group, false, parts);
}

static int32_t nodes_fiber_fill(const fib_graph *g, int32_t group,
                                const fib_partition *parts,
                                fib_signature *sig, int64_t offset)
{
    return arcs_fill(g, group, false, parts, sig, offset);
}

int32_t fib_nodes_opfiber_signature(const fib_graph *g, int32_t group,
                                    const fib_partition *parts,
                                    fib_signature *sig)
{
    int32_t status = fib_signature_alloc(sig, g->groups[group].n_units,
                                         arcs_width(g, group, true, parts));
    if (!status && sig->n_coords > 0)
        status = arcs_fill(g, group, true, parts, sig, 0);
    if (status)
        fib_signature_clear(sig);
    return status;
}

static int32_t nodes_compress(const fib_graph *g, int32_t group,
                              const fib_partition *parts, fib_graph *base,
                              const int32_t *base_ids)
{
    (void)g;
    (void)parts;
    (void)base;
    (void)base_ids;
    return fib_error(FIB_E_UNSUPPORTED, "group %d is a node group: use "
                     "fib_quotient_create for its base", (int)group);
}

static int32_t nodes_lift(const fib_graph *base, int32_t group,
                          const fib_partition *parts, fib_graph *full,
                          const int32_t *full_ids)
{
    (void)base;
    (void)parts;
    (void)full;
    (void)full_ids;
    return fib_error(FIB_E_UNSUPPORTED, "group %d is a node group: it cannot "
                     "be lifted", (int)group);
}

static int64_t nodes_num_parameters(const fib_graph *g, int32_t group)
{
    const fib_nodes *b = g->groups[group].block;
    int64_t total = 0;
    for (int64_t s = 0; s < b->n_sets; s++)
        if (b->sets[s].weight)
            total += b->sets[s].m;
    return total;
}

static const fib_block_ops fib_nodes_ops = {
    .name = "nodes",
    .free_block = nodes_free,
    .fiber_width = nodes_fiber_width,
    .fiber_fill = nodes_fiber_fill,
    /* no forward: fib_graph_forward refuses node groups */
    .compress = nodes_compress,
    .lift = nodes_lift,
    .num_parameters = nodes_num_parameters,
    .node_set = true,
};

/* ------------------------------------------------------------------------ */
/* Builders                                                                 */
/* ------------------------------------------------------------------------ */

int32_t fib_graph_add_nodes(fib_graph *g, int64_t n_nodes, int32_t *group_out)
{
    if (!g || !group_out)
        return fib_error(FIB_E_NULL, "fib_graph_add_nodes: %s is NULL",
                         g ? "group_out" : "graph");
    if (n_nodes < 1 || n_nodes > FIB_MAX_UNITS)
        return fib_error(FIB_E_SHAPE, "fib_graph_add_nodes: %lld nodes (must "
                         "be 1 .. 2^40)", (long long)n_nodes);
    fib_nodes *b = fib_calloc(1, sizeof *b);
    if (!b)
        return fib_error(FIB_E_NOMEM, "fib_graph_add_nodes: out of memory");
    fib_group grp;
    memset(&grp, 0, sizeof grp);
    grp.op = FIB_OP_NODES;
    grp.n_units = n_nodes;
    grp.rows = 1;
    grp.cols = 1;
    grp.activation = FIB_ACT_LINEAR;
    grp.ops = &fib_nodes_ops;
    grp.block = b;
    int32_t status = fib_graph_push_group(g, &grp, group_out);
    if (status)
        nodes_free(b);
    return status;
}

static int32_t check_nodes_group(const fib_graph *g, int32_t group,
                                 const char *fn)
{
    int32_t status = fib_graph_check_group(g, group, fn);
    if (status)
        return status;
    if (!is_nodes(g, group))
        return fib_error(FIB_E_RANGE, "%s: group %d is not a node group", fn,
                         (int)group);
    return FIB_OK;
}

static void *copy_of(const void *p, int64_t m, size_t size, bool *failed)
{
    if (!p)
        return NULL;
    void *q = fib_alloc(m, size);
    if (!q) {
        *failed = true;
        return NULL;
    }
    memcpy(q, p, (size_t)m * size);
    return q;
}

int32_t fib_graph_add_edges(fib_graph *g, int32_t src_group, int32_t dst_group,
                            int64_t m, const int64_t *src, const int64_t *dst,
                            const double *weight, const int32_t *type,
                            uint32_t flags)
{
    static const char fn[] = "fib_graph_add_edges";
    int32_t status = check_nodes_group(g, src_group, fn);
    if (!status)
        status = check_nodes_group(g, dst_group, fn);
    if (status)
        return status;
    if (m < 0)
        return fib_error(FIB_E_SHAPE, "%s: m = %lld is negative", fn,
                         (long long)m);
    if (flags & ~FIB_COPY)
        return fib_error(FIB_E_INVALID, "%s: unknown flags 0x%x", fn,
                         (unsigned)flags);
    if (m == 0)
        return FIB_OK;
    if (!src || !dst)
        return fib_error(FIB_E_NULL, "%s: src or dst is NULL", fn);
    int64_t ns = g->groups[src_group].n_units;
    int64_t nd = g->groups[dst_group].n_units;
    for (int64_t a = 0; a < m; a++) {
        if (src[a] < 0 || src[a] >= ns || dst[a] < 0 || dst[a] >= nd)
            return fib_error(FIB_E_RANGE, "%s: arc %lld (%lld -> %lld) is "
                             "outside groups %d (%lld nodes) -> %d (%lld "
                             "nodes)", fn, (long long)a, (long long)src[a],
                             (long long)dst[a], (int)src_group,
                             (long long)ns, (int)dst_group, (long long)nd);
        if (weight && !isfinite(weight[a]))
            return fib_error(FIB_E_NONFINITE, "%s: the weight of arc %lld is "
                             "not finite", fn, (long long)a);
    }
    for (int32_t i = 0; i < g->n_groups; i++) {
        if (!is_nodes(g, i))
            continue;
        const fib_nodes *b = g->groups[i].block;
        for (int64_t s = 0; s < b->n_sets; s++)
            if ((b->sets[s].weight != NULL) != (weight != NULL))
                return fib_error(FIB_E_INVALID, "%s: %s arcs, but earlier "
                                 "arcs into group %d are %s", fn,
                                 weight ? "weighted" : "unweighted", (int)i,
                                 weight ? "unweighted" : "weighted");
    }
    fib_nodes *b = g->groups[dst_group].block;
    if (b->n_sets == b->cap_sets) {
        int64_t cap = b->cap_sets ? 2 * b->cap_sets : 4;
        edge_set *grown = fib_alloc(cap, sizeof *grown);
        if (!grown)
            return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
        if (b->n_sets)
            memcpy(grown, b->sets, (size_t)b->n_sets * sizeof *grown);
        fib_free(b->sets);
        b->sets = grown;
        b->cap_sets = cap;
    }
    edge_set e;
    memset(&e, 0, sizeof e);
    e.src_group = src_group;
    e.m = m;
    if (flags & FIB_COPY) {
        bool failed = false;
        e.owned[0] = copy_of(src, m, sizeof *src, &failed);
        e.owned[1] = copy_of(dst, m, sizeof *dst, &failed);
        e.owned[2] = copy_of(weight, m, sizeof *weight, &failed);
        e.owned[3] = copy_of(type, m, sizeof *type, &failed);
        if (failed) {
            for (int k = 0; k < 4; k++)
                fib_free(e.owned[k]);
            return fib_error(FIB_E_NOMEM, "%s: out of memory copying %lld "
                             "arcs", fn, (long long)m);
        }
        e.src = e.owned[0];
        e.dst = e.owned[1];
        e.weight = e.owned[2];
        e.type = e.owned[3];
    } else {
        e.src = src;
        e.dst = dst;
        e.weight = weight;
        e.type = type;
    }
    b->sets[b->n_sets++] = e;
    fib_graph_changed(g);
    return FIB_OK;
}

int32_t fib_graph_set_initial_classes(fib_graph *g, int32_t group,
                                      const int64_t *labels, int64_t n_nodes)
{
    static const char fn[] = "fib_graph_set_initial_classes";
    int32_t status = check_nodes_group(g, group, fn);
    if (status)
        return status;
    fib_nodes *b = g->groups[group].block;
    if (!labels) {
        fib_free(b->initial);
        b->initial = NULL;
        fib_graph_changed(g);
        return FIB_OK;
    }
    if (n_nodes != g->groups[group].n_units)
        return fib_error(FIB_E_SHAPE, "%s: group %d has %lld nodes, got %lld",
                         fn, (int)group, (long long)g->groups[group].n_units,
                         (long long)n_nodes);
    int64_t *copy = fib_alloc(n_nodes, sizeof *copy);
    if (!copy)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    memcpy(copy, labels, (size_t)n_nodes * sizeof *copy);
    fib_free(b->initial);
    b->initial = copy;
    fib_graph_changed(g);
    return FIB_OK;
}

int32_t fib_graph_set_convention(fib_graph *g, int32_t convention)
{
    if (!g)
        return fib_error(FIB_E_NULL, "fib_graph_set_convention: graph is NULL");
    if (convention < FIB_CONVENTION_PURE ||
        convention > FIB_CONVENTION_NETWORKFIBERS)
        return fib_error(FIB_E_INVALID, "fib_graph_set_convention: unknown "
                         "convention %d", (int)convention);
    g->convention = convention;
    fib_graph_changed(g);
    return FIB_OK;
}

/* ------------------------------------------------------------------------ */
/* Quotient and building blocks                                             */
/* ------------------------------------------------------------------------ */

struct fib_quotient {
    int64_t n_arcs;
    int32_t *src_group;
    int64_t *src_class;
    int32_t *dst_group;
    int64_t *dst_class;
    int32_t *type;
    double *weight;
    int64_t *multiplicity;
};

void fib_quotient_free(fib_quotient *q)
{
    if (!q)
        return;
    fib_free(q->src_group);
    fib_free(q->src_class);
    fib_free(q->dst_group);
    fib_free(q->dst_class);
    fib_free(q->type);
    fib_free(q->weight);
    fib_free(q->multiplicity);
    fib_free(q);
}

/* Global class ids of the node groups: class c of group i is
 * class_offset[i] + c; color receives every node's global class. */
static int32_t global_classes(const fib_graph *g, const fib_coloring *c,
                              const combined *cg, int64_t *class_offset,
                              int64_t *color, int64_t *n_classes)
{
    int64_t at = 0;
    for (int32_t i = 0; i < g->n_groups; i++) {
        class_offset[i] = at;
        if (cg->offset[i] < 0)
            continue;
        const fib_partition *p = &c->parts[i];
        for (int64_t v = 0; v < p->n_units; v++)
            color[cg->offset[i] + v] = at + p->color[v];
        at += p->n_classes;
    }
    *n_classes = at;
    return FIB_OK;
}

static int32_t prepare(const fib_graph *g, const fib_coloring *c,
                       combined *cg, int64_t **class_offset, int64_t **color,
                       int64_t *n_classes)
{
    int32_t status = fib_coloring_check_graph(g, c);
    if (status)
        return status;
    status = combine(g, cg);
    if (status)
        return status;
    *class_offset = fib_alloc(g->n_groups > 0 ? g->n_groups : 1,
                              sizeof **class_offset);
    *color = fib_alloc(cg->in.n_nodes > 0 ? cg->in.n_nodes : 1,
                       sizeof **color);
    if (!*class_offset || !*color) {
        fib_free(*class_offset);
        fib_free(*color);
        combined_free(cg);
        return fib_error(FIB_E_NOMEM, "graph: out of memory");
    }
    cg->in.reverse = c->symmetry == FIB_SYM_OPFIBERS;
    return global_classes(g, c, cg, *class_offset, *color, n_classes);
}

/* The (group, class) of a global class id. */
static void split_class(const fib_graph *g, const int64_t *class_offset,
                        const combined *cg, int64_t global, int32_t *group,
                        int64_t *cls)
{
    int32_t lo = 0;
    for (int32_t i = 0; i < g->n_groups; i++)
        if (cg->offset[i] >= 0 && class_offset[i] <= global)
            lo = i;
    *group = lo;
    *cls = global - class_offset[lo];
}

/* The node group when the graph has exactly one, else -1. */
static int32_t single_nodes_group(const fib_graph *g, const combined *cg)
{
    int32_t only = -1;
    for (int32_t i = 0; i < g->n_groups; i++) {
        if (cg->offset[i] < 0)
            continue;
        if (only >= 0)
            return -1;
        only = i;
    }
    return only;
}

/* Hands *from to *to, whose old array is freed; *from becomes NULL. */
static void swap_out(void **to, void **from)
{
    fib_free(*to);
    *to = *from;
    *from = NULL;
}

int32_t fib_quotient_create(const fib_graph *g, const fib_coloring *c,
                            fib_quotient **out)
{
    if (!g || !c || !out)
        return fib_error(FIB_E_NULL, "fib_quotient_create: NULL argument");
    combined cg;
    int64_t *class_offset, *color, n_classes;
    int32_t status = prepare(g, c, &cg, &class_offset, &color, &n_classes);
    if (status)
        return status;
    fib_qgraph qg;
    memset(&qg, 0, sizeof qg);
    fib_quotient *q = fib_calloc(1, sizeof *q);
    if (!q)
        status = fib_error(FIB_E_NOMEM, "fib_quotient_create: out of memory");
    if (!status && cg.in.n_nodes > 0)
        status = fib_qgraph_build(&cg.in, color, n_classes, &qg);
    if (!status && qg.n_arcs > 0) {
        int64_t n = qg.n_arcs;
        q->n_arcs = n;
        q->src_group = fib_alloc(n, sizeof *q->src_group);
        q->src_class = fib_alloc(n, sizeof *q->src_class);
        q->dst_group = fib_alloc(n, sizeof *q->dst_group);
        q->dst_class = fib_alloc(n, sizeof *q->dst_class);
        q->type = fib_alloc(n, sizeof *q->type);
        q->weight = fib_alloc(n, sizeof *q->weight);
        q->multiplicity = fib_alloc(n, sizeof *q->multiplicity);
        if (!q->src_group || !q->src_class || !q->dst_group ||
            !q->dst_class || !q->type || !q->weight || !q->multiplicity) {
            status = fib_error(FIB_E_NOMEM, "fib_quotient_create: out of "
                               "memory");
        } else if (single_nodes_group(g, &cg) >= 0) {
            /* global classes are the group's own: the arrays are moved */
            int32_t group = single_nodes_group(g, &cg);
            for (int64_t a = 0; a < n; a++)
                q->src_group[a] = q->dst_group[a] = group;
            swap_out((void **)&q->src_class, (void **)&qg.src);
            swap_out((void **)&q->dst_class, (void **)&qg.dst);
            swap_out((void **)&q->type, (void **)&qg.type);
            swap_out((void **)&q->weight, (void **)&qg.weight);
            swap_out((void **)&q->multiplicity, (void **)&qg.multiplicity);
        } else {
            for (int64_t a = 0; a < n; a++) {
                split_class(g, class_offset, &cg, qg.src[a], &q->src_group[a],
                            &q->src_class[a]);
                split_class(g, class_offset, &cg, qg.dst[a], &q->dst_group[a],
                            &q->dst_class[a]);
                q->type[a] = qg.type[a];
                q->weight[a] = qg.weight[a];
                q->multiplicity[a] = qg.multiplicity[a];
            }
        }
    }
    fib_qgraph_clear(&qg);
    fib_free(class_offset);
    fib_free(color);
    combined_free(&cg);
    if (status) {
        fib_quotient_free(q);
        return status;
    }
    *out = q;
    return FIB_OK;
}

int32_t fib_quotient_num_arcs(const fib_quotient *q, int64_t *n_arcs_out)
{
    if (!q || !n_arcs_out)
        return fib_error(FIB_E_NULL, "fib_quotient_num_arcs: NULL argument");
    *n_arcs_out = q->n_arcs;
    return FIB_OK;
}

int32_t fib_quotient_count_arcs(const fib_graph *g, const fib_coloring *c,
                                int64_t *n_arcs_out)
{
    if (!g || !c || !n_arcs_out)
        return fib_error(FIB_E_NULL, "fib_quotient_count_arcs: NULL argument");
    combined cg;
    int64_t *class_offset, *color, n_classes;
    int32_t status = prepare(g, c, &cg, &class_offset, &color, &n_classes);
    if (status)
        return status;
    int64_t n_arcs = 0;
    if (cg.in.n_nodes > 0)
        status = fib_qgraph_count_arcs(&cg.in, color, n_classes, &n_arcs);
    fib_free(class_offset);
    fib_free(color);
    combined_free(&cg);
    if (!status)
        *n_arcs_out = n_arcs;
    return status;
}

int32_t fib_quotient_arcs(const fib_quotient *q, int64_t capacity,
                          int32_t *src_group, int64_t *src_class,
                          int32_t *dst_group, int64_t *dst_class,
                          int32_t *type, double *weight,
                          int64_t *multiplicity)
{
    if (!q)
        return fib_error(FIB_E_NULL, "fib_quotient_arcs: quotient is NULL");
    if (capacity < q->n_arcs)
        return fib_error(FIB_E_BUFFER, "fib_quotient_arcs: %lld arcs, "
                         "capacity %lld", (long long)q->n_arcs,
                         (long long)capacity);
    size_t n = (size_t)q->n_arcs;
    if (n == 0)
        return FIB_OK;
    if (src_group)
        memcpy(src_group, q->src_group, n * sizeof *src_group);
    if (src_class)
        memcpy(src_class, q->src_class, n * sizeof *src_class);
    if (dst_group)
        memcpy(dst_group, q->dst_group, n * sizeof *dst_group);
    if (dst_class)
        memcpy(dst_class, q->dst_class, n * sizeof *dst_class);
    if (type)
        memcpy(type, q->type, n * sizeof *type);
    if (weight)
        memcpy(weight, q->weight, n * sizeof *weight);
    if (multiplicity)
        memcpy(multiplicity, q->multiplicity, n * sizeof *multiplicity);
    return FIB_OK;
}

int32_t fib_coloring_fiber_blocks(const fib_graph *g, const fib_coloring *c,
                                  int32_t group, int64_t capacity,
                                  int64_t *class_ids, int64_t *sizes,
                                  int64_t *n_on_cycle, int64_t *n_blocks_out)
{
    static const char fn[] = "fib_coloring_fiber_blocks";
    if (!c || !n_blocks_out)
        return fib_error(FIB_E_NULL, "%s: NULL argument", fn);
    int32_t status = check_nodes_group(g, group, fn);
    if (status)
        return status;
    combined cg;
    int64_t *class_offset, *color, n_classes;
    status = prepare(g, c, &cg, &class_offset, &color, &n_classes);
    if (status)
        return status;
    fib_fiber_block *blocks = NULL;
    int64_t n_blocks = 0;
    status = fib_fiber_blocks(&cg.in, color, n_classes, &blocks, &n_blocks);
    if (!status) {
        int64_t lo = class_offset[group];
        int64_t hi = lo + c->parts[group].n_classes;
        int64_t count = 0;
        for (int64_t b = 0; b < n_blocks; b++)
            count += blocks[b].class_id >= lo && blocks[b].class_id < hi;
        *n_blocks_out = count;
        bool want = class_ids || sizes || n_on_cycle;
        if (want && capacity < count) {
            status = fib_error(FIB_E_BUFFER, "%s: group %d has %lld blocks, "
                               "capacity %lld", fn, (int)group,
                               (long long)count, (long long)capacity);
        } else if (want) {
            int64_t k = 0;
            for (int64_t b = 0; b < n_blocks; b++) {
                if (blocks[b].class_id < lo || blocks[b].class_id >= hi)
                    continue;
                if (class_ids)
                    class_ids[k] = blocks[b].class_id - lo;
                if (sizes)
                    sizes[k] = blocks[b].size;
                if (n_on_cycle)
                    n_on_cycle[k] = blocks[b].n_on_cycle;
                k++;
            }
        }
    }
    fib_free(blocks);
    fib_free(class_offset);
    fib_free(color);
    combined_free(&cg);
    return status;
}

/* ------------------------------------------------------------------------ */
/* Edge-list files                                                          */
/* ------------------------------------------------------------------------ */

int32_t fib_graph_read_edgelist(fib_graph *g, const char *path, uint32_t flags,
                                int32_t *group_out)
{
    return fib_graph_read_edgelist_columns(g, path, flags, NULL, group_out);
}

int32_t fib_graph_read_edgelist_columns(fib_graph *g, const char *path, uint32_t flags,
                                        const char *columns, int32_t *group_out)
{
    static const char fn[] = "fib_graph_read_edgelist";
    if (!g || !path || !group_out)
        return fib_error(FIB_E_NULL, "%s: %s is NULL", fn,
                         !g ? "graph" : !path ? "path" : "group_out");
    fib_edgelist *file = fib_calloc(1, sizeof *file);
    if (!file)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    int32_t status = fib_edgelist_read_columns(path, flags, columns, file);
    if (!status && file->n_nodes == 0)
        status = fib_error(FIB_E_FORMAT, "%s: no arcs", strcmp(path, "-") ? path : "<stdin>");
    int32_t before = g->n_groups, group = -1;
    if (!status)
        status = fib_graph_add_nodes(g, file->n_nodes, &group);
    /* The group borrows the file's arrays and owns the file. */
    if (!status)
        status = fib_graph_add_edges(g, group, group, file->n_arcs, file->src, file->dst,
                                     file->weight, file->type, 0);
    if (status) {
        if (g->n_groups > before) { /* drop the half-built group */
            g->n_groups = before;
            nodes_free(g->groups[before].block);
        }
        fib_edgelist_clear(file);
        fib_free(file);
        return status;
    }
    ((fib_nodes *)g->groups[group].block)->file = file;
    *group_out = group;
    return FIB_OK;
}

static const fib_edgelist *file_of(const fib_graph *g, int32_t group)
{
    if (!g || group < 0 || group >= g->n_groups || !is_nodes(g, group))
        return NULL;
    return ((const fib_nodes *)g->groups[group].block)->file;
}

const char *fib_graph_node_name(const fib_graph *g, int32_t group, int64_t node)
{
    const fib_edgelist *file = file_of(g, group);
    if (!file || node < 0 || node >= file->n_nodes)
        return NULL;
    return fib_edgelist_node_name(file, node);
}

int32_t fib_graph_num_edge_types(const fib_graph *g, int32_t group, int32_t *n_out)
{
    int32_t status = check_nodes_group(g, group, "fib_graph_num_edge_types");
    if (status)
        return status;
    if (!n_out)
        return fib_error(FIB_E_NULL, "fib_graph_num_edge_types: n_out is NULL");
    const fib_edgelist *file = file_of(g, group);
    *n_out = file ? file->n_types : 0;
    return FIB_OK;
}

const char *fib_graph_edge_type_name(const fib_graph *g, int32_t group, int32_t type)
{
    const fib_edgelist *file = file_of(g, group);
    if (!file || type < 0 || type >= file->n_types)
        return NULL;
    return fib_edgelist_type_name(file, type);
}
