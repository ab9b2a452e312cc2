/* fibration compress MODEL -o BASE: the base, with its projection. */
#include "commands.h"
#include "report.h"

#include <math.h>
#include <sys/stat.h>

static void help(FILE *f)
{
    fprintf(f,
            "usage: fibration compress [OPTIONS] MODEL -o BASE\n"
            "\n"
            "Merges every class of every hidden layer of MODEL into one unit and\n"
            "writes the smaller network (the base) to BASE as safetensors, with\n"
            "its structure and the projection of every original unit onto its\n"
            "base unit, so that `fibration lift` can expand it again. With exact\n"
            "fibers or covers the base computes the same outputs as MODEL.\n"
            "\n"
            "options:\n"
            "  -o, --output BASE   the file to write (required)\n"
            "  --symmetry S        fibers, opfibers or covers (default fibers:\n"
            "                      the smallest base computing the same outputs;\n"
            "                      covers give a larger base that also trains\n"
            "                      like MODEL)\n"
            "  --tolerance T       exact (default) or abs\n"
            "  --eps E             abs tolerance; --eps alone implies --tolerance abs\n"
            "  --activation A      hidden activation of a state dict (default relu)\n"
            "  --budget F          keep at most the fraction F of the parameters:\n"
            "                      the grouping and every layer's number of classes\n"
            "                      are chosen by a data-free bound (dense chains,\n"
            "                      convolutions, batch norms, pooling, residual\n"
            "                      sums, concatenations, gates, norms, LSTM and\n"
            "                      GRU; not attention; no --symmetry, --tolerance\n"
            "                      or --eps); the parameters counted without the\n"
            "                      selections that hold concatenations\n"
            "  --merge-inputs      with --budget: merge inputs too; the base then\n"
            "                      reads the mean of each input class\n"
            "  --input-scale S     with --budget: correct the merged layers without\n"
            "                      data, by least squares on synthetic inputs of\n"
            "                      standard deviation S (the inputs' typical one)\n"
            "  --correction-ridge R\n"
            "                      with --input-scale: the ridge of the correction's\n"
            "                      least squares, times the Gram matrix's mean\n"
            "                      diagonal (default 1e-3; 0: plain least squares)\n"
            "  --dtype D           keep (default: the model's dtype, float32 unless\n"
            "                      MODEL holds float64), f32 or f64\n"
            "  --json              print the summary as JSON\n"
            "  -q, --quiet         print nothing on success\n"
            "  -h, --help          this text\n"
            "\n"
            "A MODEL that is a Hugging Face checkpoint directory gives a BASE\n"
            "directory in the same layout (config.json, model.safetensors) when\n"
            "that layout holds the base: only MLP units merged, alike in every\n"
            "layer. Otherwise, and when BASE ends in .safetensors, BASE is a file\n"
            "in the library's format; the summary says which and why. An existing\n"
            "non-empty BASE directory is never replaced.\n"
            "\n"
            "A MODEL with nothing to merge (every hidden layer keeps all its units)\n"
            "is its own base: BASE is not written, the summary says so, exit code 5.\n"
            "\n"
            "Exit codes: 0 ok, 1 failure, 2 usage, 3 I/O error, 4 bad model file,\n"
            "5 nothing to merge (nothing written).\n");
}

/* Whether every group of the base has the units of the model's group. */
static bool same_units(const fib_graph *g, const fib_graph *base)
{
    int32_t n_groups = 0;
    fib_graph_num_groups(g, &n_groups);
    for (int32_t i = 0; i < n_groups; i++) {
        int64_t n = 0, k = -1;
        fib_graph_group_info(g, i, NULL, &n, NULL, NULL, NULL, NULL, NULL);
        fib_graph_group_info(base, i, NULL, &k, NULL, NULL, NULL, NULL, NULL);
        if (n != k)
            return false;
    }
    return true;
}

int cmd_compress(int argc, char **argv)
{
    cli_options o;
    int rc = cli_parse(argc, argv,
                       OPT_SYMMETRY | OPT_ACTIVATION | OPT_OUTPUT | OPT_DTYPE |
                           OPT_FORMATS | OPT_BUDGET,
                       help, &o);
    if (rc >= 0)
        return rc;
    if (o.format == FORMAT_CSV || o.format == FORMAT_DOT)
        return cli_usage(o.verb, "only --json is a summary format here");
    fib_graph *g = NULL;
    cli_progress progress;
    rc = cli_load_with_progress(&o, &g, &progress);
    if (rc != CLI_EXIT_OK)
        return rc;
    fib_coloring *c = NULL;
    fib_base *base = NULL;
    fib_budget_options budget;
    fib_budget_options_init(&budget, sizeof budget);
    fib_budget_result made = {.struct_size = sizeof made};
    int32_t dtype = o.dtype ? o.dtype : cli_model_dtype(g);
    if (o.budget > 0) {
        budget.merge_inputs = o.merge_inputs;
        budget.synthetic_scale = o.input_scale;
        if (o.correction_ridge >= 0)
            budget.synthetic_ridge = o.correction_ridge;
        /* the base is made in the dtype it is written in, as below */
        budget.dtype = dtype;
        /* the budget's steps are clusterings, not shares of the weights */
        progress.phase = "budget";
        progress.weights = 0;
        budget.progress = cli_progress_cb;
        budget.progress_user = &progress;
        int32_t st = fib_compress_to_budget_ex(g, o.budget, &budget, &made, &base);
        if (st != FIB_OK && made.smallest_fraction > 0) {
            /* a budget the model cannot meet is a bad command line, not a
             * bad file; rounded up so that the budget shown succeeds */
            double smallest = ceil(made.smallest_fraction * 1e4) / 1e4;
            rc = cli_usage(o.verb, "--budget %g is below the smallest base this model "
                           "reaches: give --budget %.4g or more", o.budget,
                           smallest > 1 ? 1.0 : smallest);
        } else {
            rc = st == FIB_OK ? CLI_EXIT_OK : cli_fail(o.model, st);
        }
    } else {
        rc = cli_color(&o, g, o.symmetry, &progress, &c);
    }
    cli_progress_end(&progress);
    /* Nothing to merge: the model is its own base; no float64 copy of it is
     * made or written. */
    bool nothing = rc == CLI_EXIT_OK && (base ? same_units(g, fib_base_graph(base))
                                              : cli_nothing_to_merge(g, c));
    if (rc == CLI_EXIT_OK && !base && !nothing) {
        /* merged blocks are made in the dtype they are written in: no
         * float64 copy of the base is held (the same file) */
        fib_compress_options copts;
        fib_compress_options_init(&copts, sizeof copts);
        copts.dtype = dtype;
        int32_t st = fib_compress_ex(g, c, &copts, &base);
        rc = st == FIB_OK ? CLI_EXIT_OK : cli_fail(o.model, st);
    }
    /* the colouring's merge totals are spent: not held while saving */
    fib_coloring_free(c);
    c = NULL;
    /* a checkpoint directory's base is written in its layout when it fits */
    struct stat model_stat;
    bool from_directory = stat(o.model, &model_stat) == 0 && S_ISDIR(model_stat.st_mode);
    int32_t saved_as = FIB_SAVED_MODEL_FILE;
    char why[600] = "";
    if (rc == CLI_EXIT_OK && !nothing) {
        int32_t st = from_directory
                         ? fib_base_save_checkpoint(base, g, o.model, o.output, dtype,
                                                    &saved_as, why, sizeof why)
                         : fib_base_save(base, o.output, dtype);
        rc = st == FIB_OK ? CLI_EXIT_OK : cli_fail(o.output, st);
    }
    if (rc == CLI_EXIT_OK && !o.quiet) {
        int64_t before = 0, after = 0;
        fib_graph_num_parameters(g, &before);
        after = before;
        if (!nothing)
            fib_graph_num_parameters(fib_base_graph(base), &after);
        /* a budget counts merged inputs' class index too, and no weights
         * of the selections that hold concatenations: both counts as it
         * counts them */
        if (o.budget > 0) {
            fib_graph_budget_parameters(g, &before);
            after = made.n_parameters;
        }
        const char *by = o.budget > 0 ? "budget" : cli_symmetry_name(o.symmetry);
        if (o.format == FORMAT_JSON) {
            printf("{\"model\": ");
            put_json_string(stdout, o.model);
            printf(", \"base\": ");
            put_json_string(stdout, o.output);
            printf(", \"symmetry\": \"%s\", \"parameters\": %lld, "
                   "\"base_parameters\": %lld, \"written\": %s",
                   o.budget > 0 ? "fibers" : cli_symmetry_name(o.symmetry),
                   (long long)before, (long long)after, nothing ? "false" : "true");
            if (from_directory && !nothing) {
                printf(", \"format\": \"%s\"",
                       saved_as == FIB_SAVED_CHECKPOINT ? "checkpoint" : "fibration");
                if (why[0]) {
                    printf(", \"reason\": ");
                    put_json_string(stdout, why);
                }
            }
            if (o.budget > 0)
                printf(", \"budget\": %.17g, \"grouping\": \"%s\", \"bound\": %.17g, "
                       "\"merge_inputs\": %s, \"corrected\": %s",
                       o.budget, cli_tolerance_name(made.chosen_tolerance), made.bound,
                       o.merge_inputs ? "true" : "false", made.corrected ? "true" : "false");
            printf("}\n");
        } else {
            char b[32], a[32];
            cli_human(b, sizeof b, (double)before);
            cli_human(a, sizeof a, (double)after);
            printf("Params: %s => %s (%.1f%%) by %s, ", b, a,
                   before ? 100.0 * (double)after / (double)before : 100.0, by);
            if (nothing)
                printf("nothing to merge: ");
            else
                printf("written to ");
            cli_put_clean(stdout, o.output);
            if (from_directory && !nothing && saved_as == FIB_SAVED_CHECKPOINT)
                printf(" (a checkpoint directory in the model's layout)");
            else if (from_directory && !nothing)
                printf(" (the library's model format: %s)", why);
            printf(nothing ? " not written\n" : "\n");
        }
    }
    fib_base_free(base);
    fib_coloring_free(c);
    fib_graph_free(g);
    return rc == CLI_EXIT_OK && nothing ? CLI_EXIT_NOTHING : rc;
}
