/* Networks with planted fibration symmetry for tests: a random base MLP
 * lifted to a larger one, written independently of the library's own lift.
 * Members' incoming weights from a class are re-split by random positive
 * fractions (sums equal, bits not), and units are shuffled across classes. */
#ifndef FIB_PLANTED_H
#define FIB_PLANTED_H

#include <stdint.h>

#include "fibration.h"

#define PLANTED_MAX_LAYERS 6

typedef struct planted_mlp {
    int n_layers;                            /* dense layers */
    int32_t dtype;
    int64_t base_width[PLANTED_MAX_LAYERS + 1]; /* [0] = inputs */
    int64_t width[PLANTED_MAX_LAYERS + 1];
    int64_t ld[PLANTED_MAX_LAYERS];
    int32_t activation[PLANTED_MAX_LAYERS];
    int64_t *cls[PLANTED_MAX_LAYERS + 1];    /* unit -> planted class */
    double *base_w[PLANTED_MAX_LAYERS];      /* base_width[l+1] x base_width[l] */
    double *base_b[PLANTED_MAX_LAYERS];
    void *w[PLANTED_MAX_LAYERS];             /* width[l+1] x ld[l], dtype */
    void *b[PLANTED_MAX_LAYERS];
} planted_mlp;

/* Test random numbers (splitmix64). */
uint64_t test_rand(uint64_t *state);
double test_uniform(uint64_t *state, double lo, double hi);

/* Builds the network: base widths base[0..n_layers], hidden classes of 1 to
 * max_class units, leading dimensions padded by `pad` elements. With resplit,
 * each member's weights from a class are random positive parts of the base
 * weight (fibers planted, opfibers not); without, they are even parts (both
 * planted: the lift of fib_lift). */
void planted_build(planted_mlp *p, uint64_t seed, int n_layers,
                   const int64_t *base, int max_class, int32_t dtype, int pad,
                   int32_t activation, int resplit);
void planted_free(planted_mlp *p);
/* Adds the network to a new graph; group ids are 0 (input) .. n_layers. */
fib_graph *planted_graph(const planted_mlp *p, uint32_t flags);

/* Canonical form of labels (classes numbered by lowest unit). */
void canonical(const int64_t *labels, int64_t n, int64_t *out);
/* True if the colouring of group equals the labels as partitions. */
int same_partition(const fib_coloring *c, int32_t group, const int64_t *labels,
                   int64_t n);
/* Max |a - b| / (1 + |b|) over n entries. */
double max_rel_diff(const double *a, const double *b, int64_t n);

#endif
