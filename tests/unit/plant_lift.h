/* Planting symmetry in any block kind: lift a random base network with a
 * random projection (the library's fib_lift, itself checked against an
 * independent lift of dense networks in test_compress). */
#ifndef FIB_PLANT_LIFT_H
#define FIB_PLANT_LIFT_H

#include <stdint.h>

#include "fibration.h"

/* Each of the k base units gets 1..max_class members, shuffled; returns the
 * unit -> base unit map and its length in *n_out (free with free()). */
int64_t *random_projection(uint64_t *rng, int64_t k, int max_class, int64_t *n_out);

/* Lifts `base`: group i gets width widths[i], unit u copying base unit
 * proj[i][u]. Input and output groups must map identically. NULL on error
 * (message in fib_last_error()). */
fib_graph *plant_by_lift(const fib_graph *base, int64_t *const *proj,
                         const int64_t *widths);

#endif
