/* Sum groups (residual connections): z[i] = a[gather_a[i]] + b[gather_b[i]].
 * A graph built by users adds elementwise; a base gathers, because the two
 * summands may have been merged into different classes. */
#include "blocks/blocks.h"
#include "model/gather.h"

#include <string.h>

static const fib_sum *sum_of(const fib_graph *g, int32_t group)
{
    return (const fib_sum *)g->groups[group].block;
}

static void sum_free(void *block)
{
    fib_sum *s = block;
    if (!s)
        return;
    fib_free(s->gather_a);
    fib_free(s->gather_b);
    fib_free(s);
}

int32_t fib_graph_add_sum_gather(fib_graph *g, int32_t a, int32_t b,
                                 int64_t n_units, int64_t *gather_a,
                                 int64_t *gather_b, int32_t *group_out)
{
    fib_sum *s = fib_calloc(1, sizeof *s);
    if (!s) {
        fib_free(gather_a);
        fib_free(gather_b);
        return fib_error(FIB_E_NOMEM, "out of memory adding a sum");
    }
    s->gather_a = gather_a;
    s->gather_b = gather_b;
    fib_group grp = {.op = FIB_OP_SUM, .n_units = n_units,
                     .activation = FIB_ACT_LINEAR, .n_sources = 2,
                     .sources = {a, b}, .ops = &fib_sum_ops, .block = s};
    int32_t status = fib_graph_push_group(g, &grp, group_out);
    if (status)
        sum_free(s);
    return status;
}

int32_t fib_graph_add_sum(fib_graph *g, int32_t a, int32_t b,
                          int32_t *group_out)
{
    int32_t status = fib_graph_check_group(g, a, "fib_graph_add_sum");
    if (!status)
        status = fib_graph_check_group(g, b, "fib_graph_add_sum");
    if (status)
        return status;
    if (!group_out)
        return fib_error(FIB_E_NULL, "fib_graph_add_sum: group_out is NULL");
    if (g->groups[a].n_units != g->groups[b].n_units)
        return fib_error(FIB_E_SHAPE,
                         "fib_graph_add_sum: group %d has %lld units but group %d has %lld",
                         (int)a, (long long)g->groups[a].n_units, (int)b,
                         (long long)g->groups[b].n_units);
    if (fib_group_positions(&g->groups[a]) != fib_group_positions(&g->groups[b]))
        return fib_error(FIB_E_SHAPE,
                         "fib_graph_add_sum: groups %d and %d have different positions",
                         (int)a, (int)b);
    return fib_graph_add_sum_gather(g, a, b, g->groups[a].n_units, NULL, NULL,
                                    group_out);
}

int32_t fib_graph_read_sum(const fib_graph *g, int32_t group, int64_t *index_a,
                           int64_t *index_b)
{
    int32_t status = fib_graph_check_group(g, group, "fib_graph_read_sum");
    if (status)
        return status;
    if (g->groups[group].op != FIB_OP_SUM && g->groups[group].op != FIB_OP_PRODUCT)
        return fib_error(FIB_E_INVALID,
                         "fib_graph_read_sum: group %d is not a sum or a product",
                         (int)group);
    const fib_sum *s = sum_of(g, group);
    for (int64_t i = 0; i < g->groups[group].n_units; i++) {
        if (index_a)
            index_a[i] = fib_gather_at(s->gather_a, i);
        if (index_b)
            index_b[i] = fib_gather_at(s->gather_b, i);
    }
    return FIB_OK;
}

/* Fibers: a unit's colour is the meet of its summands' colours. */
static int64_t sum_fiber_width(const fib_graph *g, int32_t group,
                               const fib_partition *parts)
{
    (void)g, (void)group, (void)parts;
    return 2;
}

static int32_t sum_fiber_fill(const fib_graph *g, int32_t group,
                              const fib_partition *parts, fib_signature *sig,
                              int64_t offset)
{
    const fib_group *grp = &g->groups[group];
    const fib_sum *s = sum_of(g, group);
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

/* Opfibers: a summand unit receives the error of every sum unit that reads
 * it, so its signature counts those readers per class of the sum. When
 * every summand unit has at most one reader (a residual connection), the
 * counts are one-hot and the signature is one label instead: the reader's
 * class, or -1 for a unit nobody reads. Equal labels are equal counts, and
 * a width of one instead of the sum's class count keeps the signature (and
 * its grouping) linear in the units. Under a tolerance, reader classes
 * never merge (they are structure, not weights). */
static const int64_t *summand_map(const fib_sum *s, int32_t source_index)
{
    return source_index == 0 ? s->gather_a : s->gather_b;
}

static int32_t single_reader(const fib_graph *g, int32_t group, int32_t source_index)
{
    const fib_group *grp = &g->groups[group];
    return fib_gather_single_reader(summand_map(sum_of(g, group), source_index),
                                    grp->n_units, g->groups[grp->sources[source_index]].n_units);
}

static int64_t sum_opfiber_width(const fib_graph *g, int32_t group,
                                 int32_t source_index,
                                 const fib_partition *parts,
                                 const fib_partition *fibers)
{
    (void)fibers;
    int32_t single = single_reader(g, group, source_index);
    return single < 0 ? single : single ? 1 : parts[group].n_classes;
}

static int32_t sum_opfiber_fill(const fib_graph *g, int32_t group,
                                int32_t source_index,
                                const fib_partition *parts,
                                const fib_partition *fibers, fib_signature *sig,
                                int64_t offset)
{
    (void)fibers;
    const fib_group *grp = &g->groups[group];
    const int64_t *map = summand_map(sum_of(g, group), source_index);
    const int64_t *color = parts[group].color;
    int32_t single = single_reader(g, group, source_index);
    if (single < 0)
        return single;
    if (single) {
        for (int64_t j = 0; j < sig->n_units; j++) {
            sig->value[j * sig->n_coords + offset] = -1.0;
            sig->tol[j * sig->n_coords + offset] = FIB_TOL_LABEL;
        }
        for (int64_t i = 0; i < grp->n_units; i++)
            sig->value[fib_gather_at(map, i) * sig->n_coords + offset] = (double)color[i];
        return FIB_OK;
    }
    int64_t k = parts[group].n_classes;
    for (int64_t j = 0; j < sig->n_units; j++) {
        memset(sig->value + j * sig->n_coords + offset, 0, (size_t)k * sizeof(double));
        memset(sig->tol + j * sig->n_coords + offset, 0, (size_t)k * sizeof(double));
    }
    for (int64_t i = 0; i < grp->n_units; i++)
        sig->value[fib_gather_at(map, i) * sig->n_coords + offset + color[i]] += 1.0;
    return FIB_OK;
}

static void sum_forward(const fib_graph *g, int32_t group, int64_t batch,
                        double *const *activity, double *out)
{
    const fib_group *grp = &g->groups[group];
    const fib_sum *s = sum_of(g, group);
    int64_t na = g->groups[grp->sources[0]].n_units;
    int64_t nb = g->groups[grp->sources[1]].n_units;
    const double *a = activity[grp->sources[0]], *b = activity[grp->sources[1]];
    int64_t rows = batch * fib_group_positions(grp);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < grp->n_units; i++)
            out[r * grp->n_units + i] = a[r * na + fib_gather_at(s->gather_a, i)] +
                                        b[r * nb + fib_gather_at(s->gather_b, i)];
}

/* The merged block of a sum or a product: base unit c reads the classes of
 * its first member's summands (factors); `add` makes the group. */
int32_t fib_pair_compress(const fib_graph *g, int32_t group, const fib_partition *parts,
                          fib_graph *base, const int32_t *base_ids, fib_pair_add_fn add)
{
    const fib_group *grp = &g->groups[group];
    const fib_sum *s = sum_of(g, group);
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
    return add(base, base_ids[grp->sources[0]], base_ids[grp->sources[1]], k, ga, gb, &id);
}

static int32_t sum_compress(const fib_graph *g, int32_t group,
                            const fib_partition *parts, fib_graph *base,
                            const int32_t *base_ids)
{
    return fib_pair_compress(g, group, parts, base, base_ids, fib_graph_add_sum_gather);
}

/* The lifted block of a sum or a product: full unit i reads the first
 * member of the class its base unit reads (unit i itself when it lies in
 * that class); `add` makes the group. */
int32_t fib_pair_lift(const fib_graph *base, int32_t group, const fib_partition *parts,
                      fib_graph *full, const int32_t *full_ids, fib_pair_add_fn add)
{
    const fib_group *grp = &base->groups[group];
    const fib_sum *s = sum_of(base, group);
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
    return add(full, full_ids[grp->sources[0]], full_ids[grp->sources[1]], n, ga, gb, &id);
}

static int32_t sum_lift(const fib_graph *base, int32_t group,
                        const fib_partition *parts, fib_graph *full,
                        const int32_t *full_ids)
{
    return fib_pair_lift(base, group, parts, full, full_ids, fib_graph_add_sum_gather);
}

static int64_t sum_num_parameters(const fib_graph *g, int32_t group)
{
    (void)g, (void)group;
    return 0;
}

/* ---- budgets ------------------------------------------------------------ */

int32_t fib_pair_budget_role(const fib_graph *g, int32_t group)
{
    const fib_group *grp = &g->groups[group];
    const fib_sum *s = sum_of(g, group);
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
    const fib_sum *s = sum_of(g, group);
    const int64_t *gather = source_index == 0 ? s->gather_a : s->gather_b;
    for (int64_t i = 0; i < g->groups[group].n_units; i++)
        src_energy[fib_gather_at(gather, i)] += energy[i];
}

const fib_block_ops fib_sum_ops = {
    .name = "sum",
    .free_block = sum_free,
    .fiber_width = sum_fiber_width,
    .fiber_fill = sum_fiber_fill,
    .opfiber_width = sum_opfiber_width,
    .opfiber_fill = sum_opfiber_fill,
    .forward = sum_forward,
    .compress = sum_compress,
    .lift = sum_lift,
    .num_parameters = sum_num_parameters,
    .budget_role = fib_pair_budget_role,
    .budget_backward = fib_pair_budget_backward,
};
