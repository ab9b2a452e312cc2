/* fibration break MODEL -o OUT --seed N: symmetry breaking for continual
 * learning. */
#include "commands.h"
#include "report.h"

static void help(FILE *f)
{
    fprintf(f,
            "usage: fibration break [OPTIONS] MODEL -o OUT [--seed N]\n"
            "\n"
            "Compresses MODEL by its covers, then brings every hidden layer back\n"
            "to its original width with new units: random input weights and bias\n"
            "(uniform in +-1/sqrt(fan_in), from a generator seeded with N) and\n"
            "zero output weights. OUT has MODEL's shape, computes the same\n"
            "outputs, and has its degrees of freedom back for further training.\n"
            "\n"
            "options:\n"
            "  -o, --output OUT    the file to write (required)\n"
            "  --seed N            seed of the generator (default 0)\n"
            "  --tolerance T       exact (default) or abs, for the covers\n"
            "  --eps E             abs tolerance; --eps alone implies --tolerance abs\n"
            "  --activation A      hidden activation of a state dict (default relu)\n"
            "  --dtype D           keep (default), f32 or f64\n"
            "  -q, --quiet         print nothing on success\n"
            "  -h, --help          this text\n"
            "\n"
            "Exit codes: 0 ok, 1 failure, 2 usage, 3 I/O error, 4 bad model file.\n");
}

int cmd_break(int argc, char **argv)
{
    cli_options o;
    int rc = cli_parse(argc, argv,
                       OPT_SYMMETRY | OPT_ACTIVATION | OPT_OUTPUT | OPT_SEED |
                           OPT_DTYPE,
                       help, &o);
    if (rc >= 0)
        return rc;
    if (o.symmetry != FIB_SYM_COVERS)
        return cli_usage(o.verb, "symmetry breaking always uses the covers");
    fib_graph *g = NULL;
    cli_progress progress;
    rc = cli_load_with_progress(&o, &g, &progress);
    if (rc != CLI_EXIT_OK)
        return rc;
    fib_coloring *c = NULL;
    fib_graph *broken = NULL;
    rc = cli_color(&o, g, FIB_SYM_COVERS, &progress, &c);
    cli_progress_end(&progress);
    if (rc == CLI_EXIT_OK) {
        int32_t st = fib_break_symmetry(g, c, o.seed, &broken);
        rc = st == FIB_OK ? CLI_EXIT_OK : cli_fail(o.model, st);
    }
    if (rc == CLI_EXIT_OK) {
        int32_t st = fib_model_save(broken, o.output, o.dtype);
        rc = st == FIB_OK ? CLI_EXIT_OK : cli_fail(o.output, st);
    }
    if (rc == CLI_EXIT_OK && !o.quiet) {
        printf("symmetry broken with seed %llu, written to ",
               (unsigned long long)o.seed);
        cli_put_clean(stdout, o.output);
        printf("\n");
    }
    fib_graph_free(broken);
    fib_coloring_free(c);
    fib_graph_free(g);
    return rc;
}
