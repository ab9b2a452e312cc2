#include "plant_lift.h"

#include <stdlib.h>

#include "compress/compress.h"
#include "planted.h"

int64_t *random_projection(uint64_t *rng, int64_t k, int max_class, int64_t *n_out)
{
    int64_t n = 0;
    int64_t *sizes = malloc((size_t)k * sizeof *sizes);
    for (int64_t c = 0; c < k; c++)
        n += sizes[c] = 1 + (int64_t)(test_rand(rng) % (uint64_t)max_class);
    int64_t *proj = malloc((size_t)n * sizeof *proj), u = 0;
    for (int64_t c = 0; c < k; c++)
        for (int64_t s = 0; s < sizes[c]; s++)
            proj[u++] = c;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(test_rand(rng) % (uint64_t)(i + 1)), t = proj[i];
        proj[i] = proj[j];
        proj[j] = t;
    }
    free(sizes);
    *n_out = n;
    return proj;
}

fib_graph *plant_by_lift(const fib_graph *base, int64_t *const *proj,
                         const int64_t *widths)
{
    fib_partition *parts = calloc((size_t)base->n_groups, sizeof *parts);
    for (int32_t i = 0; i < base->n_groups; i++) {
        parts[i].n_units = widths[i];
        parts[i].n_classes = base->groups[i].n_units;
        parts[i].color = proj[i];
    }
    fib_base b = {.graph = (fib_graph *)base, .n_groups = base->n_groups, .projection = parts};
    fib_graph *out = NULL;
    if (fib_lift(&b, NULL, &out) != FIB_OK)
        out = NULL;
    free(parts);
    return out;
}
