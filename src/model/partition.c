/* Partitions of a group's units into classes, always kept canonical:
 * classes are numbered 0, 1, ... in the order of their lowest unit. */
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

int32_t fib_partition_init(fib_partition *p, int64_t n_units)
{
    p->n_units = n_units;
    p->n_classes = n_units;
    p->color = fib_alloc(n_units, sizeof *p->color);
    if (!p->color)
        return fib_error(FIB_E_NOMEM, "out of memory for a partition of %lld units",
                         (long long)n_units);
    fib_partition_discrete(p);
    return FIB_OK;
}

void fib_partition_clear(fib_partition *p)
{
    if (!p)
        return;
    fib_free(p->color);
    p->color = NULL;
    p->n_units = p->n_classes = 0;
}

void fib_partition_discrete(fib_partition *p)
{
    for (int64_t i = 0; i < p->n_units; i++)
        p->color[i] = i;
    p->n_classes = p->n_units;
}

bool fib_partition_is_discrete(const fib_partition *p)
{
    if (p->n_classes != p->n_units)
        return false;
    for (int64_t i = 0; i < p->n_units; i++)
        if (p->color[i] != i)
            return false;
    return true;
}

void fib_partition_single(fib_partition *p)
{
    memset(p->color, 0, (size_t)p->n_units * sizeof *p->color);
    p->n_classes = 1;
}

/* Labels may be any int64 values: sort (label, unit) pairs, then number the
 * label groups by their lowest unit. */
typedef struct label_unit {
    int64_t label;
    int64_t unit;
} label_unit;

static int cmp_label_unit(const void *x, const void *y)
{
    const label_unit *a = x, *b = y;
    if (a->label != b->label)
        return a->label < b->label ? -1 : 1;
    return (a->unit > b->unit) - (a->unit < b->unit);
}

/* Labels all in [0, n): number them by their first (lowest) unit in one
 * pass, no sort. Returns false, p unchanged, when some label is outside. */
static bool canonicalize_small_labels(fib_partition *p, int32_t *status)
{
    int64_t n = p->n_units;
    for (int64_t i = 0; i < n; i++)
        if (p->color[i] < 0 || p->color[i] >= n)
            return false;
    int64_t *number = fib_alloc(n > 0 ? n : 1, sizeof *number); /* label -> id */
    if (!number) {
        *status = fib_error(FIB_E_NOMEM, "out of memory renumbering classes");
        return true;
    }
    for (int64_t c = 0; c < n; c++)
        number[c] = -1;
    int64_t next = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t *id = &number[p->color[i]];
        if (*id < 0)
            *id = next++;
        p->color[i] = *id;
    }
    p->n_classes = next;
    fib_free(number);
    *status = FIB_OK;
    return true;
}

int32_t fib_partition_canonicalize(fib_partition *p)
{
    int64_t n = p->n_units;
    int32_t small_status;
    if (canonicalize_small_labels(p, &small_status))
        return small_status;
    label_unit *pairs = fib_alloc(n, sizeof *pairs);
    int64_t *first = fib_alloc(n, sizeof *first); /* group -> lowest unit */
    int64_t *rank = fib_alloc(n, sizeof *rank);   /* unit -> group */
    if (!pairs || !first || !rank) {
        fib_free(pairs);
        fib_free(first);
        fib_free(rank);
        return fib_error(FIB_E_NOMEM, "out of memory renumbering classes");
    }
    for (int64_t i = 0; i < n; i++) {
        pairs[i].label = p->color[i];
        pairs[i].unit = i;
    }
    qsort(pairs, (size_t)n, sizeof *pairs, cmp_label_unit);
    int64_t groups = 0;
    for (int64_t i = 0; i < n; i++) {
        if (i == 0 || pairs[i].label != pairs[i - 1].label)
            first[groups++] = pairs[i].unit; /* sorted by unit within a label */
        rank[pairs[i].unit] = groups - 1;
    }
    /* Number groups by their lowest unit: walk units in order. */
    int64_t *number = (int64_t *)pairs; /* reuse: group -> canonical id */
    for (int64_t g = 0; g < groups; g++)
        number[g] = -1;
    int64_t next = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t g = rank[i];
        if (number[g] < 0)
            number[g] = next++;
        p->color[i] = number[g];
    }
    p->n_classes = groups;
    fib_free(pairs);
    fib_free(first);
    fib_free(rank);
    return FIB_OK;
}

int32_t fib_partition_copy(fib_partition *dst, const fib_partition *src)
{
    int32_t status = fib_partition_init(dst, src->n_units);
    if (status)
        return status;
    memcpy(dst->color, src->color, (size_t)src->n_units * sizeof *src->color);
    dst->n_classes = src->n_classes;
    return FIB_OK;
}

typedef struct pair_unit {
    int64_t a, b, unit;
} pair_unit;

static int cmp_pair_unit(const void *x, const void *y)
{
    const pair_unit *p = x, *q = y;
    if (p->a != q->a)
        return p->a < q->a ? -1 : 1;
    if (p->b != q->b)
        return p->b < q->b ? -1 : 1;
    return (p->unit > q->unit) - (p->unit < q->unit);
}

int32_t fib_partition_meet(fib_partition *p, const fib_partition *a,
                           const fib_partition *b)
{
    int64_t n = a->n_units;
    /* with one class on a side the meet is the other side (a feed-forward
     * group's new classes met with its single starting class): no sort */
    if (a->n_classes == 1 || b->n_classes == 1) {
        int32_t status = fib_partition_copy(p, a->n_classes == 1 ? b : a);
        if (!status && (status = fib_partition_canonicalize(p)))
            fib_partition_clear(p);
        return status;
    }
    pair_unit *pairs = fib_alloc(n, sizeof *pairs);
    int32_t status = pairs ? fib_partition_init(p, n)
                           : fib_error(FIB_E_NOMEM, "out of memory for a meet");
    if (status) {
        fib_free(pairs);
        return status;
    }
    for (int64_t i = 0; i < n; i++)
        pairs[i] = (pair_unit){a->color[i], b->color[i], i};
    qsort(pairs, (size_t)n, sizeof *pairs, cmp_pair_unit);
    /* Label each unit by the position of its pair group, then renumber. */
    int64_t label = -1;
    for (int64_t i = 0; i < n; i++) {
        if (i == 0 || pairs[i].a != pairs[i - 1].a || pairs[i].b != pairs[i - 1].b)
            label++;
        p->color[pairs[i].unit] = label;
    }
    fib_free(pairs);
    status = fib_partition_canonicalize(p);
    if (status)
        fib_partition_clear(p);
    return status;
}

int32_t fib_partition_join(fib_partition *p, const fib_partition *a,
                           const fib_partition *b)
{
    int64_t n = a->n_units;
    int64_t *uf = fib_alloc(n, sizeof *uf);
    int64_t *first = fib_alloc(n, sizeof *first); /* class -> lowest unit */
    int32_t status = uf && first ? fib_partition_init(p, n)
                                 : fib_error(FIB_E_NOMEM, "out of memory for a join");
    if (status) {
        fib_free(uf);
        fib_free(first);
        return status;
    }
    for (int64_t u = 0; u < n; u++)
        uf[u] = u;
    /* Every unit joins the lowest unit of its class in a, then in b. */
    const fib_partition *sides[2] = {a, b};
    for (int side = 0; side < 2; side++) {
        fib_partition_first_units(sides[side], first);
        for (int64_t u = 0; u < n; u++)
            fib_uf_union(uf, first[sides[side]->color[u]], u);
    }
    /* Roots are the lowest members, so numbering units in order gives the
     * canonical labels: a unit's root was numbered before it. */
    int64_t next = 0;
    for (int64_t u = 0; u < n; u++) {
        int64_t root = fib_uf_find(uf, u);
        p->color[u] = root == u ? next++ : p->color[root];
    }
    p->n_classes = next;
    fib_free(uf);
    fib_free(first);
    return FIB_OK;
}

void fib_partition_class_sizes(const fib_partition *p, int64_t *sizes)
{
    memset(sizes, 0, (size_t)p->n_classes * sizeof *sizes);
    for (int64_t i = 0; i < p->n_units; i++)
        sizes[p->color[i]]++;
}

void fib_partition_first_units(const fib_partition *p, int64_t *first)
{
    /* Works for any labels in [0, n_classes), canonical or not (projections
     * loaded from files or given by callers need not be canonical). */
    for (int64_t c = 0; c < p->n_classes; c++)
        first[c] = -1;
    for (int64_t i = p->n_units - 1; i >= 0; i--)
        first[p->color[i]] = i;
}

int32_t fib_class_lists_build(const fib_partition *p, fib_class_lists *l)
{
    l->start = fib_calloc(p->n_classes + 1, sizeof *l->start);
    l->members = fib_alloc(p->n_units, sizeof *l->members);
    if (!l->start || !l->members) {
        fib_class_lists_clear(l);
        return fib_error(FIB_E_NOMEM, "out of memory listing %lld classes",
                         (long long)p->n_classes);
    }
    /* Counting sort: sizes, prefix sums, then members in unit order. */
    for (int64_t i = 0; i < p->n_units; i++)
        l->start[p->color[i] + 1]++;
    for (int64_t c = 0; c < p->n_classes; c++)
        l->start[c + 1] += l->start[c];
    for (int64_t i = 0; i < p->n_units; i++)
        l->members[l->start[p->color[i]]++] = i;
    for (int64_t c = p->n_classes; c > 0; c--)
        l->start[c] = l->start[c - 1];
    l->start[0] = 0;
    return FIB_OK;
}

void fib_class_lists_clear(fib_class_lists *l)
{
    fib_free(l->start);
    fib_free(l->members);
    l->start = l->members = NULL;
}
