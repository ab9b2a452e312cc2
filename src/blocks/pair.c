/* Blocks of two operands gathered unit by unit (sum, product): the block
 * data is a fib_sum, z[i] = a[gather_a[i]] (op) b[gather_b[i]]. What does
 * not depend on the operation is here: the data's life, the checks of a
 * constructor, the fibers (the meet of the operands' colours), and how a
 * base merges and a lift gathers. */
#include "blocks/blocks.h"
#include "model/gather.h"

static const fib_sum *pair_of(const fib_graph *g, int32_t group)
{
    return (const fib_sum *)g->groups[group].block;
}

void fib_pair_free(void *block)
{
    fib_sum *s = block;
    if (!s)
        return;
    fib_free(s->gather_a);
    fib_free(s->gather_b);
    fib_free(s);
}

int32_t fib_pair_push(fib_graph *g, int32_t op, const fib_block_ops *ops, int32_t a,
                      int32_t b, int64_t n_units, int64_t *gather_a, int64_t *gather_b,
                      int32_t *group_out)
{
    fib_sum *s = fib_calloc(1, sizeof *s);
    if (!s) {
        fib_free(gather_a);
        fib_free(gather_b);
        return fib_error(FIB_E_NOMEM, "out of memory adding a %s", ops->name);
    }
    s->gather_a = gather_a;
    s->gather_b = gather_b;
    fib_group grp = {.op = op, .n_units = n_units,
                     .activation = FIB_ACT_LINEAR, .n_sources = 2,
                     .sources = {a, b}, .ops = ops, .block = s};
    int32_t status = fib_graph_push_group(g, &grp, group_out);
    if (status)
        fib_pair_free(s);
    return status;
}

int32_t fib_pair_check_operands(const fib_graph *g, int32_t a, int32_t b,
                                const int32_t *group_out, const char *fn)
{
    int32_t status = fib_graph_check_group(g, a, fn);
    if (!status)
        status = fib_graph_check_group(g, b, fn);
    if (status)
        return status;
    if (!group_out)
        return fib_error(FIB_E_NULL, "%s: group_out is NULL", fn);
    if (g->groups[a].n_units != g->groups[b].n_units)
        return fib_error(FIB_E_SHAPE, "%s: group %d has %lld units but group %d has %lld",
                         fn, (int)a, (long long)g->groups[a].n_units, (int)b,
                         (long long)g->groups[b].n_units);
    return FIB_OK;
}

/* Fibers: a unit's colour is the meet of its operands' colours. */
int64_t fib_pair_fiber_width(const fib_graph *g, int32_t group, const fib_partition *parts)
{
    (void)g, (void)group, (void)parts;
    return 2;
}

int32_t fib_pair_fiber_fill(const fib_graph *g, int32_t group, const fib_partition *parts,
                            fib_signature *sig, int64_t offset)
{
    const fib_group *grp = &g->groups[group];
    const fib_sum *s = pair_of(g, group);
    const fib_partition *pa = &parts[grp->sources[0]], *pb = &parts[grp->sources[1]];
    for (int64_t i = 0; i < grp->n_units; i++) {
        double *val = sig->value + i * sig->n_coords + offset;
        double *tol = sig->tol + i * sig->n_coords + offset;
        val[0] = (double)pa->color[fib_gather_at(s->gather_a, i)];
        val[1] = (double)pb->color[fib_gather_at(s->gather_b, i)];
        tol[0] = tol[1] = FIB_TOL_LABEL;
    }
    return FIB_OK;
}

/* The merged block of a sum or a product: base unit c reads the classes of
 * its first member's operands. */
int32_t fib_pair_compress(const fib_graph *g, int32_t group, const fib_partition *parts,
                          fib_graph *base, const int32_t *base_ids)
{
    const fib_group *grp = &g->groups[group];
    const fib_sum *s = pair_of(g, group);
    const fib_partition *own = &parts[group];
    int64_t k = own->n_classes;
    int64_t *first = fib_alloc(k, sizeof *first);
    int64_t *ga = fib_alloc(k, sizeof *ga);
    int64_t *gb = fib_alloc(k, sizeof *gb);
    if (!first || !ga || !gb) {
        fib_free(first);
        fib_free(ga);
        fib_free(gb);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory merging", (int)group);
    }
    fib_partition_first_units(own, first);
    for (int64_t c = 0; c < k; c++) {
        ga[c] = parts[grp->sources[0]].color[fib_gather_at(s->gather_a, first[c])];
        gb[c] = parts[grp->sources[1]].color[fib_gather_at(s->gather_b, first[c])];
    }
    fib_free(first);
    int32_t id;
    return fib_pair_push(base, grp->op, grp->ops, base_ids[grp->sources[0]],
                         base_ids[grp->sources[1]], k, ga, gb, &id);
}

/* The lifted block of a sum or a product: full unit i reads the first
 * member of the class its base unit reads (unit i itself when it lies in
 * that class). */
int32_t fib_pair_lift(const fib_graph *base, int32_t group, const fib_partition *parts,
                      fib_graph *full, const int32_t *full_ids)
{
    const fib_group *grp = &base->groups[group];
    const fib_sum *s = pair_of(base, group);
    const fib_partition *own = &parts[group];
    const fib_partition *pa = &parts[grp->sources[0]], *pb = &parts[grp->sources[1]];
    int64_t n = own->n_units;
    int64_t *first_a = fib_alloc(pa->n_classes, sizeof *first_a);
    int64_t *first_b = fib_alloc(pb->n_classes, sizeof *first_b);
    int64_t *ga = fib_alloc(n, sizeof *ga);
    int64_t *gb = fib_alloc(n, sizeof *gb);
    if (!first_a || !first_b || !ga || !gb) {
        fib_free(first_a);
        fib_free(first_b);
        fib_free(ga);
        fib_free(gb);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory lifting", (int)group);
    }
    fib_partition_first_units(pa, first_a);
    fib_partition_first_units(pb, first_b);
    bool identity = pa->n_units == n && pb->n_units == n;
    for (int64_t i = 0; i < n; i++) {
        int64_t c = own->color[i];
        int64_t ca = fib_gather_at(s->gather_a, c), cb = fib_gather_at(s->gather_b, c);
        /* Prefer unit i itself when it lies in the right class. */
        ga[i] = (pa->n_units == n && pa->color[i] == ca) ? i : first_a[ca];
        gb[i] = (pb->n_units == n && pb->color[i] == cb) ? i : first_b[cb];
        identity = identity && ga[i] == i && gb[i] == i;
    }
    fib_free(first_a);
    fib_free(first_b);
    if (identity) {
        fib_free(ga);
        fib_free(gb);
        ga = gb = NULL;
    }
    int32_t id;
    return fib_pair_push(full, grp->op, grp->ops, full_ids[grp->sources[0]],
                         full_ids[grp->sources[1]], n, ga, gb, &id);
}

int64_t fib_pair_num_parameters(const fib_graph *g, int32_t group)
{
    (void)g, (void)group;
    return 0;
}

/* ---- budgets ------------------------------------------------------------ */

int32_t fib_pair_budget_role(const fib_graph *g, int32_t group)
{
    const fib_group *grp = &g->groups[group];
    const fib_sum *s = pair_of(g, group);
    bool same = fib_gather_is_identity(s->gather_a, grp->n_units,
                                       g->groups[grp->sources[0]].n_units) &&
                fib_gather_is_identity(s->gather_b, grp->n_units,
                                       g->groups[grp->sources[1]].n_units);
    return same ? FIB_BUDGET_COUPLES : 0;
}

/* Both summands (factors) carry the energy of the units they make. */
void fib_pair_budget_backward(const fib_graph *g, int32_t group, int32_t source_index,
                              const double *energy, double *src_energy)
{
    const fib_sum *s = pair_of(g, group);
    const int64_t *gather = source_index == 0 ? s->gather_a : s->gather_b;
    for (int64_t i = 0; i < g->groups[group].n_units; i++)
        src_energy[fib_gather_at(gather, i)] += energy[i];
}

void fib_pair_forward(const fib_graph *g, int32_t group, int64_t batch,
                      double *const *activity, double *out, bool multiply)
{
    const fib_group *grp = &g->groups[group];
    const fib_sum *s = pair_of(g, group);
    int64_t na = g->groups[grp->sources[0]].n_units;
    int64_t nb = g->groups[grp->sources[1]].n_units;
    int64_t positions = fib_group_positions(grp);
    bool broadcast = multiply && fib_group_positions(&g->groups[grp->sources[1]]) == 1;
    const double *a = activity[grp->sources[0]], *b = activity[grp->sources[1]];
    for (int64_t r = 0; r < batch * positions; r++) {
        const double *arow = a + r * na, *brow = b + (broadcast ? r / positions : r) * nb;
        double *z = out + r * grp->n_units;
        if (multiply)
            for (int64_t i = 0; i < grp->n_units; i++)
                z[i] = arow[fib_gather_at(s->gather_a, i)] * brow[fib_gather_at(s->gather_b, i)];
        else
            for (int64_t i = 0; i < grp->n_units; i++)
                z[i] = arow[fib_gather_at(s->gather_a, i)] + brow[fib_gather_at(s->gather_b, i)];
    }
}

int32_t fib_pair_build(fib_graph *g, const fib_block_source *S, bool single_second,
                       fib_pair_add_fn add, fib_pair_add_gather_fn add_gather, int32_t *id)
{
    int32_t st = fib_source_no_extras(S, false, false, NULL);
    if (st != FIB_OK)
        return st;
    const fib_group *a = fib_source_group(g, S, 0), *b = fib_source_group(g, S, 1);
    if ((a->rows != b->rows || a->cols != b->cols) &&
        !(single_second && b->rows == 1 && b->cols == 1))
        return fib_source_error(S, "'sources': groups %d and %d have "
                                "different positions", (int)S->sources[0],
                                (int)S->sources[1]);
    int64_t *idx[2] = {NULL, NULL};
    const int64_t width[2] = {a->n_units, b->n_units};
    bool present;
    st = S->gathers(S, width, idx, &present);
    if (st != FIB_OK)
        return st;
    if (!present) {
        if (a->n_units != S->units || b->n_units != S->units)
            return fib_source_error(S, "a sum without 'gather' needs "
                                    "sources as wide as itself");
        return fib_source_done(S, add(g, S->sources[0], S->sources[1], id));
    }
    return fib_source_done(S, add_gather(g, S->sources[0], S->sources[1], S->units, idx[0],
                                         idx[1], id));
}

bool fib_pair_gathers(const fib_graph *g, int32_t group, int64_t *const *out)
{
    const fib_group *grp = &g->groups[group];
    const fib_sum *s = pair_of(g, group);
    int64_t n = grp->n_units;
    bool identity = g->groups[grp->sources[0]].n_units == n &&
                    g->groups[grp->sources[1]].n_units == n;
    for (int64_t i = 0; i < n; i++) {
        out[0][i] = fib_gather_at(s->gather_a, i);
        out[1][i] = fib_gather_at(s->gather_b, i);
        identity = identity && out[0][i] == i && out[1][i] == i;
    }
    return !identity;
}
