#include "model/gather.h"

int32_t fib_gather_for_base(const fib_partition *parts, int32_t group,
                            int32_t source, const int64_t *reads,
                            int64_t **gather_out)
{
    const fib_partition *own = &parts[group];
    int64_t *first = fib_alloc(own->n_classes, sizeof *first);
    int64_t *gather = fib_alloc(own->n_classes, sizeof *gather);
    if (!first || !gather) {
        fib_free(first);
        fib_free(gather);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory merging", (int)group);
    }
    fib_partition_first_units(own, first);
    bool identity = parts[source].n_classes == own->n_classes;
    for (int64_t c = 0; c < own->n_classes; c++) {
        gather[c] = parts[source].color[fib_gather_at(reads, first[c])];
        identity = identity && gather[c] == c;
    }
    fib_free(first);
    if (identity) {
        fib_free(gather);
        gather = NULL;
    }
    *gather_out = gather;
    return FIB_OK;
}

int32_t fib_gather_for_lift(const fib_partition *parts, int32_t group,
                            int32_t source, const int64_t *base_reads,
                            int64_t **gather_out)
{
    const fib_partition *own = &parts[group], *src = &parts[source];
    int64_t n = own->n_units;
    int64_t *first = fib_alloc(src->n_classes, sizeof *first);
    int64_t *gather = fib_alloc(n, sizeof *gather);
    if (!first || !gather) {
        fib_free(first);
        fib_free(gather);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory lifting", (int)group);
    }
    fib_partition_first_units(src, first);
    bool identity = src->n_units == n;
    for (int64_t i = 0; i < n; i++) {
        int64_t want = fib_gather_at(base_reads, own->color[i]);
        gather[i] = (src->n_units == n && src->color[i] == want) ? i : first[want];
        identity = identity && gather[i] == i;
    }
    fib_free(first);
    if (identity) {
        fib_free(gather);
        gather = NULL;
    }
    *gather_out = gather;
    return FIB_OK;
}

int32_t fib_gather_single_reader(const int64_t *map, int64_t n, int64_t n_source)
{
    if (!map)
        return 1;
    bool *read = fib_calloc(n_source > 0 ? n_source : 1, sizeof *read);
    if (!read)
        return fib_error(FIB_E_NOMEM, "out of memory checking the readers of %lld units",
                         (long long)n_source);
    int32_t single = 1;
    for (int64_t i = 0; i < n && single; i++) {
        single = !read[map[i]];
        read[map[i]] = true;
    }
    fib_free(read);
    return single;
}

bool fib_gather_is_identity(const int64_t *map, int64_t n, int64_t n_source)
{
    if (n != n_source)
        return false;
    for (int64_t i = 0; map && i < n; i++)
        if (map[i] != i)
            return false;
    return true;
}
