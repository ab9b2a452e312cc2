/* fibration lift BASE -o OUT: a base expanded back to full width. */
#include "commands.h"
#include "report.h"

#include <sys/stat.h>

static void help(FILE *f)
{
    fprintf(f,
            "usage: fibration lift [OPTIONS] BASE -o OUT\n"
            "\n"
            "Expands a base written by `fibration compress` back to the original\n"
            "widths, using the projection stored in BASE: every unit copies its\n"
            "base unit, and weights from a merged class are split evenly over its\n"
            "members. OUT computes the same outputs as BASE, and its fibers are\n"
            "the base's classes. BASE may have been retrained in between, as long\n"
            "as its shapes and metadata are unchanged.\n"
            "\n"
            "A BASE folder that `fibration compress` wrote from a Hugging Face\n"
            "checkpoint (in the checkpoint's layout, with its projection) is\n"
            "lifted to a checkpoint folder OUT in the same layout, with the\n"
            "original's widths; OUT is never an existing non-empty folder.\n"
            "\n"
            "options:\n"
            "  -o, --output OUT    the file to write (required)\n"
            "  --dtype D           keep (default), f32 or f64\n"
            "  -q, --quiet         print nothing on success\n"
            "  -h, --help          this text\n"
            "\n"
            "Exit codes: 0 ok, 1 failure, 2 usage, 3 I/O error, 4 bad model file\n"
            "(including a file without a projection).\n");
}

int cmd_lift(int argc, char **argv)
{
    cli_options o;
    int rc = cli_parse(argc, argv, OPT_OUTPUT | OPT_DTYPE, help, &o);
    if (rc >= 0)
        return rc;
    fib_base *base = NULL;
    fib_graph *full = NULL;
    cli_watch_mapped_file(o.model);
    int32_t st = fib_base_load(o.model, NULL, &base);
    if (st != FIB_OK)
        return cli_fail(o.model, st);
    cli_test_hook_after_load();
    /* made in the dtype it is written in (keep: the base's), so that the
     * lift of a float32 base holds no float64 copy of its weights */
    int32_t dtype = o.dtype ? o.dtype : cli_model_dtype(fib_base_graph(base));
    st = fib_lift_dtype(base, NULL, dtype, &full);
    rc = st == FIB_OK ? CLI_EXIT_OK : cli_fail(o.model, st);
    /* a base folder (a checkpoint layout) lifts to a folder in its layout */
    struct stat model_stat;
    bool from_directory = stat(o.model, &model_stat) == 0 && S_ISDIR(model_stat.st_mode);
    int32_t saved_as = FIB_SAVED_MODEL_FILE;
    char why[600] = "";
    if (rc == CLI_EXIT_OK) {
        st = from_directory ? fib_graph_save_checkpoint(full, fib_base_graph(base), o.model,
                                                        o.output, o.dtype, &saved_as, why,
                                                        sizeof why)
                            : fib_model_save(full, o.output, dtype);
        rc = st == FIB_OK ? CLI_EXIT_OK : cli_fail(o.output, st);
    }
    if (rc == CLI_EXIT_OK && !o.quiet) {
        int64_t before = 0, after = 0;
        fib_graph_num_parameters(fib_base_graph(base), &before);
        fib_graph_num_parameters(full, &after);
        char b[32], a[32];
        cli_human(b, sizeof b, (double)before);
        cli_human(a, sizeof a, (double)after);
        printf("Params: %s => %s, written to ", b, a);
        cli_put_clean(stdout, o.output);
        if (from_directory && saved_as == FIB_SAVED_CHECKPOINT)
            printf(" (a checkpoint directory in the model's layout)");
        else if (from_directory)
            printf(" (the library's model format: %s)", why);
        printf("\n");
    }
    fib_graph_free(full);
    fib_base_free(base);
    return rc;
}
