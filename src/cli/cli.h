/* Shared pieces of the `fibration` command: options, errors, exit codes,
 * progress, and the per-layer analysis that several verbs report.
 * The command uses only the public API (fibration.h). */
#ifndef FIB_CLI_H
#define FIB_CLI_H

#include "fibration.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes (documented in docs/cli.md). */
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAILURE 1 /* the computation failed (out of memory, ...) */
#define CLI_EXIT_USAGE 2   /* bad command line */
#define CLI_EXIT_IO 3      /* a file could not be read or written */
#define CLI_EXIT_FORMAT 4  /* the model file is malformed or unsupported */
#define CLI_EXIT_NOTHING 5 /* compress: nothing to merge, nothing written */

/* Which options a verb accepts (bits). */
#define OPT_SYMMETRY 0x001u   /* --symmetry, --eps, --tolerance */
#define OPT_ACTIVATION 0x002u /* --activation (state-dict fallback) */
#define OPT_OUTPUT 0x004u     /* -o / --output (required) */
#define OPT_FORMATS 0x008u    /* --json, --csv, --dot, --dot-max-classes */
#define OPT_SEED 0x010u       /* --seed */
#define OPT_DTYPE 0x020u      /* --dtype */
#define OPT_TREE 0x040u       /* --tolerance-tree (analyze) */
#define OPT_BUDGET 0x080u     /* --budget, --merge-inputs (compress) */
#define OPT_EDGELIST 0x100u   /* --convention, --header, --no-header, --columns,
                                 --weight-column (graph: the input is an edge
                                 list, default symmetry fibers) */

/* Most tolerances of --tolerance-tree. */
#define CLI_MAX_LEVELS 64

/* Report formats. */
#define FORMAT_TABLE 0
#define FORMAT_JSON 1
#define FORMAT_CSV 2
#define FORMAT_DOT 3

typedef struct cli_options {
    const char *verb;
    const char *model;      /* the one positional argument (graph: the edge
                               list, "-" for standard input) */
    const char *output;
    int32_t symmetry;       /* FIB_SYM_*, default fibers */
    int32_t tolerance;      /* FIB_TOL_* */
    double eps;
    int32_t activation;     /* for files without structure metadata */
    double act_param;
    int32_t format;         /* FORMAT_* */
    int64_t dot_max_classes;
    uint64_t seed;
    int32_t dtype;          /* 0: keep, or FIB_DTYPE_* */
    bool quiet;
    bool all_levels;        /* --symmetry all: add automorphism orbits */
    int32_t n_levels;       /* --tolerance-tree: number of tolerances (0: none) */
    double levels[CLI_MAX_LEVELS]; /* ... sorted, smallest first */
    double budget;          /* --budget: fraction of parameters kept (0: none) */
    bool merge_inputs;      /* --merge-inputs (with --budget) */
    double input_scale;     /* --input-scale (with --budget): the correction's
                               synthetic input scale, 0: no correction */
    double correction_ridge; /* --correction-ridge (with --input-scale): the
                               correction's ridge, < 0: the library's default */
    int32_t convention;     /* --convention: FIB_CONVENTION_* */
    uint32_t edgelist_flags; /* --header, --no-header: FIB_EDGELIST_* */
    const char *columns;    /* --columns or --weight-column: the columns' roles */
    bool transformer;       /* analyze --transformer: the report by parts */
} cli_options;

/* Parses argv[1 ..] of a verb. Returns -1 to go on, or an exit code (after
 * --help, or a usage error already printed). */
int cli_parse(int argc, char **argv, unsigned accepted, void (*help)(FILE *),
              cli_options *o);

/* Prints "fibration: <message>" for a failed library call on one line
 * (naming `file` unless the message already starts with it) and returns the
 * exit code for the status. */
int cli_fail(const char *file, int32_t status);
/* Prints a usage error and returns CLI_EXIT_USAGE. */
int cli_usage(const char *verb, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Progress on stderr: only when stderr is a terminal, not --quiet, and the
 * work has taken more than a second (docs/cli.md). */
typedef struct cli_progress {
    bool enabled;
    bool shown;
    bool noted;
    double start;
    double delay; /* seconds before the first report */
    double last_time; /* of the last report, whose step was last_done: a
                         cancel check repeats its step many times a second */
    int64_t last_done;
    const char *phase;
    int64_t weights; /* parameters in the graph, for throughput; 0: none */
} cli_progress;

void cli_progress_init(cli_progress *p, const cli_options *o,
                       const fib_graph *graph);
int32_t cli_progress_cb(void *user, int64_t done, int64_t total);
/* A phase that reports no steps ("reading EDGES"), shown until the next
 * report and erased by cli_progress_end if nothing followed. */
void cli_progress_note(cli_progress *p, const char *what, const char *name);
void cli_progress_end(cli_progress *p);

/* Loads the model named on the command line. Returns an exit code. */
int cli_load(const cli_options *o, fib_graph **out);
/* cli_load, then the progress report started on the loaded graph. */
int cli_load_with_progress(const cli_options *o, fib_graph **out, cli_progress *progress);
/* Colours the graph with the options' tolerance; symmetry as given. */
int cli_color(const cli_options *o, const fib_graph *g, int32_t symmetry,
              cli_progress *progress, fib_coloring **out);
/* The same for opfibers or covers, flavoured by `fibers` cli_color made
 * (fib_color_from_fibers): the fibers are not coloured again. */
int cli_color_from(const cli_options *o, const fib_graph *g, int32_t symmetry,
                   const fib_coloring *fibers, cli_progress *progress,
                   fib_coloring **out);

const char *cli_symmetry_name(int32_t symmetry);
/* "exact", "abs", ..., "scaled+ward" (FIB_TOL_* with FIB_TOL_SCALED). */
const char *cli_tolerance_name(int32_t tolerance);
/* fib_activation_name and fib_op_name, "unknown" for no constant. */
const char *cli_activation_name(int32_t activation);
const char *cli_op_name(int32_t op);

/* Parameters of one group's block (its tensors but multiplicities; 0 for inputs, sums, pools). */
int64_t cli_group_parameters(const fib_graph *g, int32_t group);
/* The dtype a base of g is written in by default: FIB_DTYPE_F64 if any of
 * g's tensors is float64, else FIB_DTYPE_F32 (float16 and bfloat16
 * tensors are written as float32: exact, and merged weights are sums). */
int32_t cli_model_dtype(const fib_graph *g);
/* True when every hidden group (neither input nor output) of g has as many
 * classes in c as units: the model is its own base. */
bool cli_nothing_to_merge(const fib_graph *g, const fib_coloring *c);
/* "52.65 K" */
void cli_human(char *buf, size_t size, double count);

/* signals.c: SIGINT / SIGTERM / SIGHUP remove the partial output file and
 * kill as usual; SIGBUS from a truncated mapped file exits CLI_EXIT_IO with
 * "the file changed while it was read", naming the file watched last. */
void cli_install_signal_handlers(void);
void cli_watch_mapped_file(const char *path);
/* Test-only: stops the process (SIGSTOP) after a model is loaded when
 * FIBRATION_TEST_STOP_AFTER_LOAD is set (docs/cli.md). */
void cli_test_hook_after_load(void);

/* Prints a string with control characters replaced (one-line messages). */
void cli_put_clean(FILE *f, const char *s);

/* Items 0 .. n-1 listed by their label in 0 .. k-1, increasing within a
 * label: label c holds items[start[c] .. start[c + 1]) (lists.c). */
typedef struct lists {
    int64_t *start, *items;
} lists;

/* false when out of memory (free with lists_free all the same). */
bool lists_build(const int64_t *label, int64_t n, int64_t k, lists *l);
void lists_free(lists *l);

/* Names from files in outputs (escape.c). Table text: control characters
 * and bytes that are not UTF-8 as \xNN, a backslash as \\. */
void cli_put_text(FILE *f, const char *s);
/* The same into buf (at most size - 1 bytes, never cutting an escape). */
const char *cli_text(char *buf, size_t size, const char *s);
/* A JSON string literal that is valid JSON whatever the bytes: control
 * characters as \u00NN, a byte that is not UTF-8 as \udcNN (PEP 383). */
void cli_put_json_string(FILE *f, const char *s);

#endif
