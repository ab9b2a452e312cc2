/* fibration analyze MODEL: per layer, the classes of fibers, opfibers and
 * covers, and the parameters of the base. */
#include "commands.h"
#include "report.h"

static void help(FILE *f)
{
    fprintf(f,
            "usage: fibration analyze [OPTIONS] MODEL\n"
            "\n"
            "Reports, for every layer (group) of MODEL (a safetensors file), its\n"
            "units and the number of classes of fibers, opfibers and covers; for\n"
            "the symmetry chosen by --symmetry, the classes of one unit (trivial),\n"
            "of two or more (nontrivial), the largest class, and the parameters\n"
            "of the layer before and after compression by it.\n"
            "\n"
            "options:\n"
            "  --symmetry S        fibers, opfibers or covers (default covers); all\n"
            "                      adds the automorphism orbits of every layer and\n"
            "                      checks orbits <= covers <= fibers and opfibers\n"
            "  --tolerance T       exact (default) or abs\n"
            "  --eps E             abs tolerance; --eps alone implies --tolerance abs\n"
            "  --activation A      hidden activation of a state dict without\n"
            "                      structure metadata: relu (default), linear,\n"
            "                      leaky_relu[:SLOPE], tanh, sigmoid, gelu, silu\n"
            "  --json              one JSON document\n"
            "  --csv               one row per layer, with a header row\n"
            "  --dot               the coloured quotient graph for Graphviz\n"
            "  --dot-max-classes N draw a layer with more classes as one box\n"
            "                      (default 64)\n"
            "  -q, --quiet         no progress on stderr\n"
            "  -h, --help          this text\n"
            "\n"
            "Exit codes: 0 ok, 1 failure, 2 usage, 3 I/O error, 4 bad model file.\n");
}

int cmd_analyze(int argc, char **argv)
{
    cli_options o;
    int rc = cli_parse(argc, argv,
                       OPT_SYMMETRY | OPT_ACTIVATION | OPT_FORMATS, help, &o);
    if (rc >= 0)
        return rc;
    fib_graph *g = NULL;
    rc = cli_load(&o, &g);
    if (rc != CLI_EXIT_OK)
        return rc;
    cli_progress progress;
    cli_progress_init(&progress, &o, g);
    analysis a;
    rc = analysis_run(&o, g, &progress, &a);
    if (rc == CLI_EXIT_OK) {
        switch (o.format) {
        case FORMAT_JSON: report_json(stdout, &o, &a); break;
        case FORMAT_CSV: report_csv(stdout, &o, &a); break;
        case FORMAT_DOT: rc = report_dot(stdout, &o, &a); break;
        default: report_table(stdout, &o, &a); break;
        }
        if (fflush(stdout) != 0 || ferror(stdout)) {
            fprintf(stderr, "fibration: cannot write the report to stdout\n");
            rc = CLI_EXIT_IO;
        }
    }
    analysis_free(&a);
    fib_graph_free(g);
    return rc;
}
