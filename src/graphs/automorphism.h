/* Automorphisms of labelled directed graphs: the exact check of a
 * permutation, and the orbit partition by individualisation and refinement.
 *
 * Internal to the library (see docs/hierarchy.md). The engine is
 * self-contained: it owns its equitable refinement (cells kept in an ordered
 * array, split in an order that depends only on the structure, never on
 * node numbers), so that two nodes exchanged by an automorphism always see
 * the same refinement trace. The public entry points (fib_automorphisms,
 * fib_graph_is_automorphism) feed it the node groups of a graph, starting
 * from their exact covers. */
#ifndef FIB_AUTOMORPHISM_H
#define FIB_AUTOMORPHISM_H

#include "model/model.h"

#include <stdbool.h>
#include <stdint.h>

/* Largest graph the orbit search accepts (FIB_E_OVERFLOW past it). */
#define FIB_AUT_MAX_NODES INT64_C(20000)
/* Default number of search-tree nodes before FIB_E_UNSUPPORTED. */
#define FIB_AUT_DEFAULT_BUDGET INT64_C(200000)

/* A directed multigraph with arc labels (type, weight, multiplicity) and
 * node colours. An automorphism maps nodes to nodes of the same colour and
 * the multiset of labelled arcs onto itself; weights compare exactly
 * (-0 equals +0). */
typedef struct fib_aut_input {
    int64_t n_nodes;
    int64_t n_arcs;
    const int64_t *src;     /* n_arcs tails in [0, n_nodes) */
    const int64_t *dst;     /* n_arcs heads */
    const int32_t *type;    /* n_arcs or NULL (all 0) */
    const double *weight;   /* n_arcs finite, or NULL (all 1) */
    const int64_t *mult;    /* n_arcs or NULL (all 1) */
    const int64_t *initial; /* n_nodes colours (any values), or NULL */
    int64_t budget;         /* search-tree nodes; 0: the default */
} fib_aut_input;

/* The orbits of the automorphism group: orbit[v] numbered canonically
 * (by lowest node), *n_orbits their count, *n_generators the number of
 * automorphisms found (generators of the group; may be NULL).
 * Errors: FIB_E_OVERFLOW (more than FIB_AUT_MAX_NODES nodes),
 * FIB_E_UNSUPPORTED (the search needed more than budget nodes),
 * FIB_E_NOMEM. */
int32_t fib_aut_orbits(const fib_aut_input *in, int64_t *orbit,
                       int64_t *n_orbits, int64_t *n_generators);

/* *is_out = whether perm (n_nodes entries) is an automorphism. Not a
 * permutation: false. Errors: FIB_E_NOMEM. */
int32_t fib_aut_check(const fib_aut_input *in, const int64_t *perm,
                      bool *is_out);

#endif
