// The public header alone, as C++: extern "C" linkage, no C-only syntax.
#include "fibration.h"

int header_cxx_uses();
int header_cxx_uses()
{
    fib_color_options options;
    fib_graph *graph = nullptr;
    fib_coloring *coloring = nullptr;
    int ok = fib_color_options_init(&options, sizeof options) == FIB_OK;
    ok = ok && fib_graph_create(&graph) == FIB_OK;
    ok = ok && fib_color(graph, &options, &coloring) <= FIB_OK;
    fib_coloring_free(coloring);
    fib_graph_free(graph);
    return ok;
}
