/* Checks shared by the unit tests: colour a graph, read widths and class
 * counts, and compare two graphs' outputs on the same random inputs. Each
 * failing call is counted by the harness in testing.h. */
#ifndef FIB_TEST_CHECKS_H
#define FIB_TEST_CHECKS_H

#include <stdint.h>

#include "fibration.h"

/* n uniform numbers in [lo, hi) (caller frees). */
double *test_random_array(uint64_t *rng, int64_t n, double lo, double hi);
/* The exact colouring of one kind (NULL on failure, counted). */
fib_coloring *test_color(const fib_graph *g, int32_t symmetry);
int64_t test_width(const fib_graph *g, int32_t group);
/* Fibers and the opfibers they flavour, as fib_color makes each (the
 * library's fib_color_pair_internal; NULL options: the defaults). */
int32_t test_color_pair(const fib_graph *g, const fib_color_options *options,
                        fib_coloring **fibers, fib_coloring **opfibers);
int64_t test_num_classes(const fib_coloring *c, int32_t group);
/* Max |a - b| / (1 + |b|) of the two graphs' outputs (float64 forward) on
 * `batch` samples of inputs uniform in [-amplitude, amplitude). The graphs
 * must have the same input and output widths (counted if not). */
/* Counts a failure unless `got` is `want` and fib_last_error() contains
 * `needle`; `what` names the case in the message. */
void expect(int32_t got, int32_t want, const char *needle, const char *what);
double test_output_difference(const fib_graph *a, const fib_graph *b, uint64_t seed,
                              int64_t batch, double amplitude);

/* Tensors (and projections) of the two bases that differ in some value
 * (== : -0 is 0), each named on stderr. */
int test_differing_tensors(const fib_base *x, const fib_base *y);

/* A float64 ReLU chain of `layers` dense layers (widths dims[0 ..
 * layers]), weights uniform in [-1, 1) and biases in [-0.2, 0.2) from
 * seed, whose inputs 2a and 2a + 1 have equal columns (they merge); bias 0
 * of every layer *first_bias unless NULL. */
fib_graph *test_paired_input_chain(const int64_t *dims, int layers, uint64_t seed,
                                   const double *first_bias);

/* g's budget base at `budget` without the synthetic correction, inputs
 * merged, in float64: what a corrected base is compared with to show that
 * the correction moved it (NULL on failure, counted). */
fib_base *test_uncorrected_budget(const fib_graph *g, double budget);

#endif
