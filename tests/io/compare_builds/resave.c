/* resave IN OUT: loads a base (fib_base_load) or else a model file and
 * saves it again (dtype 0): compare_builds.sh compares what two builds make
 * of the same file. */
#include "fibration.h"
#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc != 3) return 2;
    fib_load_options o;
    fib_load_options_init(&o, sizeof o);
    fib_base *b = NULL;
    if (fib_base_load(argv[1], &o, &b) == FIB_OK) {
        int32_t st = fib_base_save(b, argv[2], 0);
        fib_base_free(b);
        if (st) { fprintf(stderr, "%s\n", fib_last_error()); return 1; }
        return 0;
    }
    fib_graph *g = NULL;
    if (fib_model_load(argv[1], &o, &g) != FIB_OK) { fprintf(stderr, "%s\n", fib_last_error()); return 1; }
    int32_t st = fib_model_save(g, argv[2], 0);
    fib_graph_free(g);
    if (st) { fprintf(stderr, "%s\n", fib_last_error()); return 1; }
    return 0;
}
