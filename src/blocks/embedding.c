/* Token embedding: the matrix E [vocab, hidden] of a language model as the
 * first dense map of a one-hot token input, x -> E^T x, so that token v
 * gives row v. The dense block reads its weights row by row (one row per
 * output unit), so the library holds E^T in a copy that the graph owns;
 * from there on the embedding is an ordinary dense group (coloured,
 * merged, lifted and read out as one). */
#include "blocks/blocks.h"

#include <math.h>
#include <string.h>

static void release_copy(void *handle)
{
    fib_free(handle);
}

int32_t fib_graph_add_token_embedding(fib_graph *g, int32_t source, int64_t hidden,
                                      int32_t dtype, const void *embedding,
                                      int32_t *group_out)
{
    static const char fn[] = "fib_graph_add_token_embedding";
    int32_t status = fib_graph_check_group(g, source, fn);
    if (status)
        return status;
    if (!embedding || !group_out)
        return fib_error(FIB_E_NULL, "%s: %s is NULL", fn, !embedding ? "embedding" : "group_out");
    size_t esize = fib_dtype_size(dtype);
    if (!esize)
        return fib_error(FIB_E_INVALID, "%s: unknown dtype %d", fn, (int)dtype);
    if (hidden < 1)
        return fib_error(FIB_E_SHAPE, "%s: hidden %lld < 1", fn, (long long)hidden);
    int64_t vocab = g->groups[source].n_units, cells;
    if (hidden > FIB_MAX_UNITS || !fib_mul_i64(vocab, hidden, &cells) ||
        cells > INT64_MAX / (int64_t)esize)
        return fib_error(FIB_E_OVERFLOW, "%s: an embedding of %lld x %lld is too large", fn,
                         (long long)vocab, (long long)hidden);
    /* Named in the caller's layout: the dense block would name the copy's. */
    for (int64_t v = 0; v < vocab; v++)
        for (int64_t d = 0; d < hidden; d++) {
            double x = fib_load(dtype, embedding, v * hidden + d);
            if (!isfinite(x))
                return fib_error(FIB_E_NONFINITE, "%s: embedding[%lld, %lld] is %s", fn,
                                 (long long)v, (long long)d, isnan(x) ? "NaN" : "infinite");
        }
    char *copy = fib_alloc(cells > 0 ? cells : 1, esize);
    if (!copy)
        return fib_error(FIB_E_NOMEM, "%s: out of memory for a %lld x %lld embedding", fn,
                         (long long)vocab, (long long)hidden);
    const char *from = embedding;
    for (int64_t v = 0; v < vocab; v++)
        for (int64_t d = 0; d < hidden; d++)
            memcpy(copy + ((size_t)(d * vocab + v)) * esize,
                   from + ((size_t)(v * hidden + d)) * esize, esize);
    /* The graph owns the copy from here; a failing dense block takes it
     * back off (it is the last resource attached), so that a failed call
     * leaves the graph as it was. */
    status = fib_graph_attach_resource(g, copy, release_copy);
    if (status) {
        fib_free(copy);
        return status;
    }
    status = fib_graph_add_dense(g, source, hidden, dtype, copy, vocab, NULL, 0, group_out);
    if (status) {
        g->n_resources--;
        fib_free(copy);
    }
    return status;
}
