/* Networks shared by the reliability tests: a planted dense MLP (from
 * tests/unit/planted.c) and a small CNN with repeated kernels, plus a large
 * node graph whose colouring takes many refinement steps. */
#ifndef FIB_RELIABILITY_NETWORKS_H
#define FIB_RELIABILITY_NETWORKS_H

#include "fibration.h"
#include "planted.h"

/* A 3-layer planted MLP (float32, even split: fibers and opfibers). */
void mlp_build(planted_mlp *p, uint64_t seed);

/* conv(2 -> 4 channels, 3x3) -> max pool -> flatten -> dense 3 on a 2 x 8 x
 * 8 image; kernels of output channels 0/1 and 2/3 are equal. The weights
 * are copied. Returns FIB_OK or the first failing status (then *out is
 * NULL and nothing leaks). */
int32_t cnn_build(fib_graph **out);

/* The planted MLP as a graph (weights copied with FIB_COPY); like cnn_build
 * on failure. */
int32_t mlp_graph(const planted_mlp *p, uint32_t flags, fib_graph **out);

/* A directed cycle of n nodes with chords every 7 nodes (weighted). */
int32_t ring_build(int64_t n, fib_graph **out);

/* 1 if two colourings of the same graph give equal partitions everywhere. */
int same_colorings(const fib_graph *g, const fib_coloring *a,
                   const fib_coloring *b);

#endif
