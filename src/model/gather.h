/* Unit-wise blocks (pooling, affine, last step, norms) read unit i of their
 * source. In a base, a class reads the source class of its first member; in
 * a lift, unit i reads itself when its class allows, else the first member
 * of the right source class. These two maps are shared here. */
#ifndef FIB_GATHER_H
#define FIB_GATHER_H

#include "model/model.h"

/* gather[c] for every class c of parts[group]: the class, in
 * parts[source], of the source unit that c's first member reads
 * (reads = NULL: unit i reads source unit i). *gather_out = NULL when
 * that is class c for every c. Caller frees. */
int32_t fib_gather_for_base(const fib_partition *parts, int32_t group,
                            int32_t source, const int64_t *reads,
                            int64_t **gather_out);

/* For the lift of a base group whose unit c reads base source unit
 * base_reads[c] (NULL: identity): full unit i reads *gather_out[i], or
 * *gather_out = NULL when that is unit i for every i. */
int32_t fib_gather_for_lift(const fib_partition *parts, int32_t group,
                            int32_t source, const int64_t *base_reads,
                            int64_t **gather_out);

/* Whether each of the n_source source units is read by at most one of the
 * n readers (reader i reads map[i]; NULL map: reader i reads unit i, n <=
 * n_source). Returns 1 or 0, or FIB_E_NOMEM after fib_error. */
int32_t fib_gather_single_reader(const int64_t *map, int64_t n, int64_t n_source);

/* Whether reader i reads unit i for each of the n readers of n_source
 * units, n == n_source (NULL map: yes). */
bool fib_gather_is_identity(const int64_t *map, int64_t n, int64_t n_source);

static inline int64_t fib_gather_at(const int64_t *map, int64_t i)
{
    return map ? map[i] : i;
}

/* Coordinate `offset` of every unit i of a unit-wise group: the class, in
 * its source's partition, of the source unit i reads (a label; the first
 * coordinate of such a block's fibers). */
static inline void fib_gather_label_fill(const fib_graph *g, int32_t group,
                                         const fib_partition *parts, const int64_t *reads,
                                         fib_signature *sig, int64_t offset)
{
    const fib_partition *src = &parts[g->groups[group].sources[0]];
    for (int64_t i = 0; i < g->groups[group].n_units; i++)
        fib_signature_put_label(sig, i, offset, src->color[fib_gather_at(reads, i)]);
}

#endif
