/* The graphs layer: general directed graphs (node groups, edge lists,
 * refinement, quotients, automorphisms), as the colouring driver sees
 * them. Uses the model layer. */
#ifndef FIB_GRAPHS_GRAPHS_H
#define FIB_GRAPHS_GRAPHS_H

#include "model/model.h"

/* graphs/graph_api.c: colours every FIB_OP_NODES group of g together into
 * parts (fibers; opfibers when reverse). A no-op without node groups. */
int32_t fib_color_node_groups(const fib_graph *g, const fib_color_options *o,
                              bool reverse, fib_partition *parts);
/* graphs/graph_api.c: the opfiber signature of node group `group`: per
 * (target group, type, target class) the weight sum of its out-arcs. */
int32_t fib_nodes_opfiber_signature(const fib_graph *g, int32_t group,
                                    const fib_partition *parts,
                                    fib_signature *sig);

#endif
