/* Items listed by their label (a counting sort): the members of every
 * class in one pass, so that writers stay linear in the units or nodes. */
#include "cli.h"

#include <stdlib.h>

bool lists_build(const int64_t *label, int64_t n, int64_t k, lists *l)
{
    l->start = calloc((size_t)k + 1, sizeof *l->start);
    l->items = malloc((size_t)n * sizeof *l->items);
    if (!l->start || !l->items)
        return false;
    for (int64_t i = 0; i < n; i++)
        l->start[label[i] + 1]++;
    for (int64_t c = 0; c < k; c++)
        l->start[c + 1] += l->start[c];
    for (int64_t i = 0; i < n; i++)
        l->items[l->start[label[i]]++] = i;
    for (int64_t c = k; c > 0; c--)
        l->start[c] = l->start[c - 1];
    l->start[0] = 0;
    return true;
}

void lists_free(lists *l)
{
    free(l->start);
    free(l->items);
}
