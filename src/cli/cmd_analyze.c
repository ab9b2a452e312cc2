/* fibration analyze MODEL: per layer, the classes of fibers, opfibers and
 * covers, and the parameters of the base; with --tolerance-tree, the nested
 * tolerance ladder instead (tolerance_tree.c). */
#include "commands.h"
#include "report.h"

#include <string.h>

static void help(FILE *f)
{
    fprintf(f,
            "usage: fibration analyze [OPTIONS] MODEL\n"
            "\n"
            "Reports, for every layer (group) of MODEL (a safetensors file, or a\n"
            "Hugging Face checkpoint folder: llama, mistral, qwen2, gpt2, bert), its\n"
            "units and the number of classes of fibers, opfibers and covers; for\n"
            "the symmetry chosen by --symmetry, the classes of one unit (trivial),\n"
            "of two or more (nontrivial), the largest class, and the parameters\n"
            "of the layer before and after compression by it.\n"
            "\n"
            "With --tolerance-tree EPS1,EPS2,... it reports instead the hierarchy\n"
            "of colourings of every hidden layer at those tolerances, made to nest\n"
            "(a class never splits as eps grows): class counts per level (table),\n"
            "the tree of classes down to the units (--json), or its drawing (--dot).\n"
            "\n"
            "options:\n"
            "  --symmetry S        fibers, opfibers or covers (default fibers); all\n"
            "                      adds the automorphism orbits of every layer and\n"
            "                      checks orbits <= covers <= fibers and opfibers\n"
            "  --tolerance T       exact (default) or abs; with --tolerance-tree abs\n"
            "                      (default), rel, cosine, complete, ward or\n"
            "                      scaled+MODE (scaled modes colour fibers)\n"
            "  --eps E             abs tolerance; --eps alone implies --tolerance abs\n"
            "  --tolerance-tree L  the nested hierarchy at the comma-separated\n"
            "                      tolerances L (sorted for you; at most 64)\n"
            "  --transformer       per attention layer the classes of the MLP's\n"
            "                      intermediate units and of every head's query,\n"
            "                      key and value/output dimensions, and the\n"
            "                      residual stream's classes (one group for all\n"
            "                      layers); exact, and with --tolerance-tree at\n"
            "                      each of its tolerances (table or --json)\n"
            "  --activation A      hidden activation of a state dict without\n"
            "                      structure metadata: relu (default), linear,\n"
            "                      leaky_relu[:SLOPE], tanh, sigmoid, gelu, silu\n"
            "  --json              one JSON document\n"
            "  --csv               one row per layer, with a header row\n"
            "  --dot               the coloured quotient graph for Graphviz\n"
            "  --format F          table, json, csv or dot (the same as the above)\n"
            "  --dot-max-classes N draw a layer with more classes as one box\n"
            "                      (default 64); in a tolerance tree, a layer with\n"
            "                      more units gets one leaf per first-level class\n"
            "                      counting its units instead of one per unit\n"
            "  -q, --quiet         no progress on stderr\n"
            "  -h, --help          this text\n"
            "\n"
            "Exit codes: 0 ok, 1 failure, 2 usage, 3 I/O error, 4 bad model file.\n");
}

int cmd_analyze(int argc, char **argv)
{
    cli_options o;
    int rc = cli_parse(argc, argv,
                       OPT_SYMMETRY | OPT_ACTIVATION | OPT_FORMATS | OPT_TREE, help, &o);
    if (rc >= 0)
        return rc;
    fib_graph *g = NULL;
    cli_progress progress;
    rc = cli_load_with_progress(&o, &g, &progress);
    if (rc != CLI_EXIT_OK)
        return rc;
    analysis a;
    memset(&a, 0, sizeof a);
    if (o.transformer)
        rc = report_transformer(stdout, &o, g, &progress);
    else if (o.n_levels > 0)
        rc = report_tolerance_tree(stdout, &o, g, &progress);
    else
        rc = analysis_run(&o, g, &progress, &a);
    if (rc == CLI_EXIT_OK && o.n_levels == 0 && !o.transformer) {
        switch (o.format) {
        case FORMAT_JSON: report_json(stdout, &o, &a); break;
        case FORMAT_CSV: report_csv(stdout, &o, &a); break;
        case FORMAT_DOT: rc = report_dot(stdout, &o, &a); break;
        default: report_table(stdout, &o, &a); break;
        }
    }
    analysis_free(&a);
    fib_graph_free(g);
    return rc;
}
