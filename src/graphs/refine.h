/* Minimal balanced colouring of general directed graphs by partition
 * refinement (see docs/graphs.md for the algorithm and its guarantees).
 *
 * Internal to the library: the public entry points in fibration.h and the
 * command-line tool build on these. */
#ifndef FIB_GRAPHS_REFINE_H
#define FIB_GRAPHS_REFINE_H

#include "model/model.h"

#include <stdbool.h>
#include <stdint.h>

/* Conventions for the initial partition (fib_refine_input.convention). */
#define FIB_REFINE_PURE 0          /* the definition: refine from one class */
#define FIB_REFINE_PUBLISHED 1     /* FastFibration: in-degree 0 nodes are
                                      singletons, input-less SCCs start as
                                      their own classes, self-loop-only nodes
                                      are extra splitters */
#define FIB_REFINE_NETWORKFIBERS 2 /* networkfibers: in-degree 0 singletons,
                                      weakly connected components as initial
                                      classes, self-loop-only splitters */

typedef struct fib_refine_input {
    int64_t n_nodes;
    int64_t n_arcs;
    const int64_t *src;      /* n_arcs arc tails, 0 <= src < n_nodes */
    const int64_t *dst;      /* n_arcs arc heads */
    const double *weight;    /* n_arcs finite weights, or NULL: count arcs */
    const int32_t *type;     /* n_arcs edge types (any values), or NULL */
    const int64_t *initial;  /* n_nodes class labels (any values), or NULL */
    bool reverse;            /* colour on out-neighbours (opfibers) */
    int32_t convention;      /* FIB_REFINE_* */
    int32_t tolerance;       /* FIB_TOL_EXACT or FIB_TOL_ABS */
    double eps;              /* FIB_TOL_ABS: >= 0 */
    double weight_unit;      /* unit roundoff of the weights' origin:
                                2^-53 (float64, the default when 0) or 2^-24 */
    fib_progress_fn progress;  /* may be NULL */
    void *progress_user;
} fib_refine_input;

/* Defaults: no arrays, pure convention, exact, forward. */
void fib_refine_input_init(fib_refine_input *in);

/* Checks the arrays of `in` (NULLs, ranges, finite weights, options). */
int32_t fib_refine_check(const fib_refine_input *in);

/* The coarsest balanced colouring refining the initial partition (EXACT), or
 * the quasi-stable one of FIB_TOL_ABS. color[0 .. n_nodes) receives
 * canonical class ids (numbered by lowest node), *n_classes their count.
 * Errors: FIB_E_NULL, FIB_E_RANGE, FIB_E_NONFINITE, FIB_E_INVALID,
 * FIB_E_OVERFLOW, FIB_E_NOMEM, FIB_E_CANCELLED. */
int32_t fib_refine(const fib_refine_input *in, int64_t *color,
                   int64_t *n_classes);

/* The quotient (base) graph: one node per class; the in-arcs (out-arcs when
 * reverse) of each class's lowest node, with their tails (heads) replaced by
 * their classes, merged per (source class, target class, type). Arcs are
 * sorted by (src, dst, type). */
typedef struct fib_qgraph {
    int64_t n_classes;
    int64_t n_arcs;
    int64_t *src;
    int64_t *dst;
    int32_t *type;          /* the caller's type values; all 0 if untyped */
    double *weight;         /* weight sums; multiplicities if unweighted */
    int64_t *multiplicity;  /* number of arcs merged */
} fib_qgraph;

int32_t fib_qgraph_build(const fib_refine_input *in, const int64_t *color,
                           int64_t n_classes, fib_qgraph *out);
void fib_qgraph_clear(fib_qgraph *q);

/* The number of arcs fib_qgraph_build gives (same arguments, same errors),
 * counted without building them: one array of the merged arcs' ends where
 * the build holds several copies of the arcs and the merged graph. */
int32_t fib_qgraph_count_arcs(const fib_refine_input *in, const int64_t *color,
                              int64_t n_classes, int64_t *n_arcs);

/* A fiber building block: one non-trivial class (size > 1). */
typedef struct fib_fiber_block {
    int64_t class_id;
    int64_t size;
    int64_t n_on_cycle; /* members lying on a directed cycle (an SCC with a
                           cycle: size > 1 or a self-loop) */
} fib_fiber_block;

/* The non-trivial classes in class order. *blocks is NULL when there are
 * none; free it with fib_free. */
int32_t fib_fiber_blocks(const fib_refine_input *in, const int64_t *color,
                         int64_t n_classes, fib_fiber_block **blocks,
                         int64_t *n_blocks);

/* Strongly connected components of the graph of `in` (direction ignored by
 * the result): scc[v] in [0, *n_scc), and on_cycle[v] = 1 iff v lies on a
 * directed cycle. Either output may be NULL. Iterative (no recursion). */
int32_t fib_graph_scc(int64_t n_nodes, int64_t n_arcs, const int64_t *src,
                      const int64_t *dst, int64_t *scc, int64_t *n_scc,
                      uint8_t *on_cycle);

/* The same over an out-arc CSR (off: n + 1 offsets, head: arc targets). */
int32_t fib_scc_csr(int64_t n_nodes, const int64_t *off, const int64_t *head,
                    int64_t *scc, int64_t *n_scc, uint8_t *on_cycle);

/* Dense relabelling: ids[i] in [0, *n_ids) numbered by first appearance of
 * the key (a[i], b[i]); b may be NULL. */
int32_t fib_relabel_pairs(int64_t n, const int64_t *a, const int64_t *b,
                          int64_t *ids, int64_t *n_ids);

#endif
