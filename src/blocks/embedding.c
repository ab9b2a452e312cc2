/* Token embedding: the matrix E [vocab, hidden] of a language model as the
 * first dense map of a one-hot token input, x -> E^T x, so that token v
 * gives row v. E as stored is the dense block's weights stored transposed
 * (row v holds the weights from token v to every hidden unit), so the
 * block reads it in place: borrowed by the checkpoint readers, copied in
 * its stored layout by the public constructor. From there on the embedding
 * is an ordinary dense group (coloured, merged, lifted and read out as
 * one). */
#include "blocks/blocks.h"

#include <math.h>
#include <string.h>

int32_t fib_token_embedding_add(fib_graph *g, int32_t source, int64_t hidden, int32_t dtype,
                                const void *embedding, uint32_t flags,
                                fib_finite_values *checked, int32_t *group_out)
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
    status = fib_graph_add_dense_transposed(g, source, hidden, dtype, embedding, hidden, NULL,
                                            flags, group_out);
    if (status == FIB_OK && checked) /* the constructor's finiteness pass read them all */
        *checked = (fib_finite_values){.data = embedding, .dtype = dtype, .n = cells};
    if (status != FIB_E_NONFINITE)
        return status;
    /* named in the caller's layout, not the dense block's */
    for (int64_t v = 0; v < vocab; v++)
        for (int64_t d = 0; d < hidden; d++) {
            double x = fib_load(dtype, embedding, v * hidden + d);
            if (!isfinite(x))
                return fib_error(FIB_E_NONFINITE, "%s: embedding[%lld, %lld] is %s", fn,
                                 (long long)v, (long long)d, isnan(x) ? "NaN" : "infinite");
        }
    return status;
}

int32_t fib_graph_add_token_embedding(fib_graph *g, int32_t source, int64_t hidden,
                                      int32_t dtype, const void *embedding,
                                      int32_t *group_out)
{
    return fib_token_embedding_add(g, source, hidden, dtype, embedding, FIB_COPY, NULL,
                                   group_out);
}
