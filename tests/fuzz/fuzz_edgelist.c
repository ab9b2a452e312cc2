/* Fuzz target: the edge-list reader (src/graphs/edgelist.c). The first byte
 * picks the format flags, the rest is the file's text. A parse either fails
 * cleanly (empty output, a message naming the source) or gives ids in range;
 * a parsed list is then built into a node graph, coloured every way, and
 * its quotient and fiber blocks read back. */
#include "fuzz.h"
#include "graphs/edgelist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint32_t flag_choices[] = {
    FIB_EDGELIST_AUTO,
    FIB_EDGELIST_HEADER,
    FIB_EDGELIST_NO_HEADER,
    FIB_EDGELIST_HEADER | FIB_EDGELIST_COMMA,
    FIB_EDGELIST_NO_HEADER | FIB_EDGELIST_TAB,
    FIB_EDGELIST_NO_HEADER | FIB_EDGELIST_WHITESPACE,
    FIB_EDGELIST_NO_HEADER | FIB_EDGELIST_THIRD_IS_WEIGHT,
    FIB_EDGELIST_HEADER | FIB_EDGELIST_NO_HEADER, /* invalid */
    0xffffffffu,                                  /* invalid */
};

static void colour_and_read(const fib_edgelist *e, int32_t symmetry)
{
    fib_graph *g = NULL;
    int32_t group;
    if (fib_graph_create(&g) != FIB_OK)
        return;
    if (fib_graph_add_nodes(g, e->n_nodes, &group) != FIB_OK ||
        fib_graph_add_edges(g, group, group, e->n_arcs, e->src, e->dst,
                            e->weight, e->type, 0) != FIB_OK) {
        fib_graph_free(g);
        return;
    }
    fib_graph_set_convention(g, symmetry % 3);
    fib_color_options options;
    fib_color_options_init(&options, sizeof options);
    options.symmetry = 1 + symmetry % 3;
    fib_coloring *c = NULL;
    if (fib_color(g, &options, &c) == FIB_OK) {
        int64_t n_classes = 0;
        FUZZ_ASSERT(fib_coloring_num_classes(c, group, &n_classes) == FIB_OK);
        FUZZ_ASSERT(n_classes >= 1 && n_classes <= e->n_nodes);
        fib_quotient *q = NULL;
        if (fib_quotient_create(g, c, &q) == FIB_OK) {
            int64_t n_arcs = 0;
            fib_quotient_num_arcs(q, &n_arcs);
            FUZZ_ASSERT(n_arcs <= e->n_arcs);
            fib_quotient_free(q);
        }
        int64_t n_blocks = 0;
        fib_coloring_fiber_blocks(g, c, group, 0, NULL, NULL, NULL, &n_blocks);
        FUZZ_ASSERT(n_blocks <= n_classes);
        fib_coloring_free(c);
    }
    fib_graph_free(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint32_t flags = flag_choices[data[0] % (sizeof flag_choices /
                                             sizeof flag_choices[0])];
    fib_edgelist e;
    int32_t st = fib_edgelist_parse((const char *)data + 1, size - 1, flags,
                                    "fuzz.csv", &e);
    if (st != FIB_OK) {
        FUZZ_ASSERT(e.src == NULL && e.n_arcs == 0 && e.n_nodes == 0);
        FUZZ_ASSERT(st == FIB_E_INVALID || strstr(fib_last_error(), "fuzz.csv"));
        fib_edgelist_clear(&e);
        return 0;
    }
    for (int64_t i = 0; i < e.n_arcs; i++) {
        FUZZ_ASSERT(e.src[i] >= 0 && e.src[i] < e.n_nodes);
        FUZZ_ASSERT(e.dst[i] >= 0 && e.dst[i] < e.n_nodes);
        FUZZ_ASSERT(!e.type || (e.type[i] >= 0 && e.type[i] < e.n_types));
    }
    for (int64_t i = 0; i < e.n_nodes; i++)
        FUZZ_ASSERT(fib_edgelist_node_name(&e, i) != NULL);
    if (e.n_nodes > 0)
        colour_and_read(&e, data[0] / 16);
    fib_edgelist_clear(&e);
    return 0;
}
