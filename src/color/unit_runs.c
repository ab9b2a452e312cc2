/* Classes kept within runs of units: a grouped convolution's base stays
 * grouped only if no class of its channels, nor of the channels it reads,
 * spans two of its channel groups, and if every channel group holds the
 * same number of classes (a grouped base has equal groups). fib_color
 * splits the fibers of such groups as soon as they are coloured, before
 * any group that reads them is: a finer partition of a group that has not
 * been read yet keeps the colouring a fibration, so the base stays exact,
 * and a base with G groups of a <= n_out / G classes reading b <= n_in / G
 * classes each never has more parameters than the original. */
#include "color/color.h"

/* Splits classes of p so that none spans two of `runs` equal runs of units
 * and every run holds as many classes as the run holding most: first each
 * class is cut at the run boundaries, then in a run with fewer classes
 * units leave classes of two or more, in unit order, to become classes of
 * their own (possible: a run of n / runs units holds at most n / runs
 * classes). *changed tells whether p changed. */
int32_t fib_partition_balance_runs(fib_partition *p, int64_t runs, bool *changed)
{
    int64_t n = p->n_units, per_run = n / runs, k_before = p->n_classes;
    *changed = false;
    if (runs <= 1 || n % runs)
        return FIB_OK;
    if (p->n_classes > INT64_MAX / runs)
        return fib_error(FIB_E_OVERFLOW, "%lld classes x %lld channel groups overflow",
                         (long long)p->n_classes, (long long)runs);
    for (int64_t u = 0; u < n; u++)
        p->color[u] = p->color[u] * runs + u / per_run;
    int32_t status = fib_partition_canonicalize(p);
    int64_t *sizes = fib_alloc(p->n_classes + n, sizeof *sizes);
    int64_t *count = fib_calloc(runs, sizeof *count);
    if (!status && (!sizes || !count))
        status = fib_error(FIB_E_NOMEM, "out of memory keeping classes within channel groups");
    if (status) {
        fib_free(sizes);
        fib_free(count);
        return status;
    }
    fib_partition_class_sizes(p, sizes);
    int64_t most = 0, next = p->n_classes;
    /* classes are numbered by their lowest unit: a class is new when its
     * number is the next one */
    for (int64_t u = 0, seen = 0; u < n; u++)
        if (p->color[u] == seen) {
            seen++;
            count[u / per_run]++;
        }
    for (int64_t r = 0; r < runs; r++)
        most = count[r] > most ? count[r] : most;
    for (int64_t u = 0, seen = 0; u < n; u++) {
        bool first = p->color[u] == seen;
        seen += first;
        if (!first && count[u / per_run] < most && sizes[p->color[u]] > 1) {
            sizes[p->color[u]]--;
            count[u / per_run]++;
            p->color[u] = next++;
        }
    }
    fib_free(sizes);
    fib_free(count);
    status = fib_partition_canonicalize(p);
    *changed = p->n_classes != k_before;
    return status;
}

int32_t fib_color_keep_unit_runs(const fib_graph *g, int32_t group, fib_partition *parts)
{
    bool changed = true;
    while (changed) {
        changed = false;
        for (int32_t h = group; h < g->n_groups; h++) {
            const fib_group *reader = &g->groups[h];
            if (!reader->ops || !reader->ops->unit_runs ||
                (h != group && (reader->n_sources < 1 || reader->sources[0] != group)))
                continue;
            int64_t runs = reader->ops->unit_runs(g, h);
            bool split = false;
            int32_t status = fib_partition_balance_runs(&parts[group], runs, &split);
            if (status)
                return status;
            changed = changed || split;
        }
    }
    return FIB_OK;
}
