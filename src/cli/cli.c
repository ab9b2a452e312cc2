/* Option parsing, errors, progress and loading shared by the verbs. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *cli_activation_name(int32_t activation)
{
    const char *name = fib_activation_name(activation);
    return name ? name : "unknown";
}

const char *cli_symmetry_name(int32_t symmetry)
{
    switch (symmetry) {
    case FIB_SYM_FIBERS: return "fibers";
    case FIB_SYM_OPFIBERS: return "opfibers";
    case FIB_SYM_COVERS: return "covers";
    default: return "unknown";
    }
}

/* Tolerance modes by FIB_TOL_* code, plain and with FIB_TOL_SCALED. */
static const char *const tolerance_names[2][6] = {
    {"exact", "abs", "rel", "cosine", "complete", "ward"},
    {"scaled+exact", "scaled+abs", "scaled+rel", "scaled+cosine", "scaled+complete",
     "scaled+ward"},
};

const char *cli_tolerance_name(int32_t tolerance)
{
    int32_t mode = tolerance & ~FIB_TOL_SCALED;
    if (mode < FIB_TOL_EXACT || mode > FIB_TOL_WARD)
        return "unknown";
    return tolerance_names[(tolerance & FIB_TOL_SCALED) != 0][mode];
}

const char *cli_op_name(int32_t op)
{
    const char *name = fib_op_name(op);
    return name ? name : "unknown";
}

void cli_put_clean(FILE *f, const char *s)
{
    for (; *s; s++)
        fputc((unsigned char)*s < 0x20 ? '?' : *s, f);
}

int cli_usage(const char *verb, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "fibration%s%s: ", verb ? " " : "", verb ? verb : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'fibration %s%s--help')\n", verb ? verb : "",
            verb ? " " : "");
    return CLI_EXIT_USAGE;
}

int cli_fail(const char *file, int32_t status)
{
    const char *msg = fib_last_error();
    fputs("fibration: ", stderr);
    if (file && strncmp(msg, file, strlen(file)) != 0) {
        cli_put_clean(stderr, file);
        fputs(": ", stderr);
    }
    cli_put_clean(stderr, msg[0] ? msg : fib_status_name(status));
    fputc('\n', stderr);
    switch (status) {
    case FIB_E_IO: return CLI_EXIT_IO;
    case FIB_E_FORMAT:
    case FIB_E_UNSUPPORTED:
    case FIB_E_NONFINITE: return CLI_EXIT_FORMAT;
    default: return CLI_EXIT_FAILURE;
    }
}

/* ---- option parsing ---- */

static bool parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno != 0 || !isfinite(v))
        return false;
    *out = v;
    return true;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || errno != 0)
        return false;
    *out = (uint64_t)v;
    return true;
}

/* "abs", "ward", "scaled+ward", ...: a mode, optionally with "scaled+". */
static bool parse_tolerance(const char *s, int32_t *out)
{
    for (int scaled = 0; scaled < 2; scaled++)
        for (int32_t mode = FIB_TOL_EXACT; mode <= FIB_TOL_WARD; mode++)
            if (strcmp(s, tolerance_names[scaled][mode]) == 0) {
                *out = mode | (scaled ? FIB_TOL_SCALED : 0);
                return true;
            }
    return false;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* "0.05,0.1,0.2": 1 to CLI_MAX_LEVELS numbers >= 0, sorted on return. */
static bool parse_levels(const char *s, cli_options *o)
{
    o->n_levels = 0;
    while (*s) {
        char item[64];
        size_t n = strcspn(s, ",");
        if (n == 0 || n >= sizeof item || o->n_levels == CLI_MAX_LEVELS)
            return false;
        memcpy(item, s, n);
        item[n] = '\0';
        double v;
        if (!parse_double(item, &v) || v < 0)
            return false;
        o->levels[o->n_levels++] = v;
        s += n;
        if (*s == ',' && *++s == '\0')
            return false; /* a trailing comma */
    }
    qsort(o->levels, (size_t)o->n_levels, sizeof *o->levels, cmp_double);
    return o->n_levels > 0;
}

static bool parse_activation(const char *s, int32_t *act, double *param)
{
    size_t n = strcspn(s, ":");
    for (int32_t i = 0; fib_activation_name(i); i++) {
        if (strlen(fib_activation_name(i)) == n &&
            strncmp(s, fib_activation_name(i), n) == 0) {
            *act = i;
            if (s[n] == ':')
                return i == FIB_ACT_LEAKY_RELU && parse_double(s + n + 1, param);
            return true;
        }
    }
    return false;
}

/* Every activation --activation takes, comma-separated, from the library's
 * names (so that the message names each one the library has). */
static void activation_names(char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (int32_t i = 0; fib_activation_name(i) && used < size; i++) {
        int n = snprintf(out + used, size - used, "%s%s%s", i ? ", " : "",
                         fib_activation_name(i), i == FIB_ACT_LEAKY_RELU ? "[:SLOPE]" : "");
        used += n > 0 ? (size_t)n : 0;
    }
}

/* Matches "--name" or "--name=value"; the value comes from the next argument
 * when not attached. Returns 1 on a match with a value, 0 no match, -1 error. */
static int option_value(int argc, char **argv, int *i, const char *name,
                        const char **value)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *value = argv[++*i];
    return 1;
}

static void defaults(cli_options *o, const char *verb)
{
    memset(o, 0, sizeof *o);
    o->verb = verb;
    /* fibers, as in the library and in Python (docs/concepts.md says why);
     * symmetry breaking is defined on the covers */
    o->symmetry = strcmp(verb, "break") == 0 ? FIB_SYM_COVERS : FIB_SYM_FIBERS;
    o->tolerance = FIB_TOL_EXACT;
    o->activation = FIB_ACT_RELU;
    o->act_param = 0.01;
    o->format = FORMAT_TABLE;
    o->dot_max_classes = 64;
    o->correction_ridge = -1;
}

/* Which options were given, for the checks after parsing. */
typedef struct given {
    bool tolerance, eps, symmetry;
} given;

/* One option with a value; returns -1 if `a` is not it, else an exit code
 * or -2 to go on. */
static int value_option(int argc, char **argv, int *i, unsigned accepted,
                        cli_options *o, given *seen)
{
    const char *verb = o->verb, *v = NULL;
    int r;
#define VALUE(name, bit)                                                      \
    (((accepted & (bit)) != 0) &&                                             \
     ((r = option_value(argc, argv, i, name, &v)) != 0))
    if (VALUE("--symmetry", OPT_SYMMETRY)) {
        if (r < 0)
            return cli_usage(verb, "--symmetry needs a value");
        if (strcmp(v, "fibers") == 0)
            o->symmetry = FIB_SYM_FIBERS;
        else if (strcmp(v, "opfibers") == 0)
            o->symmetry = FIB_SYM_OPFIBERS;
        else if (strcmp(v, "covers") == 0)
            o->symmetry = FIB_SYM_COVERS;
        else if (strcmp(v, "all") == 0 && strcmp(verb, "analyze") == 0)
            o->symmetry = FIB_SYM_COVERS, o->all_levels = true;
        else
            return cli_usage(verb, "--symmetry must be fibers, opfibers or covers%s",
                             strcmp(verb, "analyze") == 0 ? " (or all)" : "");
        seen->symmetry = true;
    } else if (VALUE("--tolerance-tree", OPT_TREE)) {
        if (r < 0 || !parse_levels(v, o))
            return cli_usage(verb, "--tolerance-tree needs a comma-separated list of "
                             "1 to %d numbers >= 0", CLI_MAX_LEVELS);
    } else if (VALUE("--tolerance", OPT_SYMMETRY)) {
        if (r < 0 || !parse_tolerance(v, &o->tolerance) ||
            (!(accepted & OPT_TREE) && o->tolerance != FIB_TOL_EXACT &&
             o->tolerance != FIB_TOL_ABS))
            return cli_usage(verb, "--tolerance must be exact or abs%s",
                             (accepted & OPT_TREE) ? " (with --tolerance-tree also rel, "
                             "cosine, complete, ward or scaled+MODE)" : "");
        seen->tolerance = true;
    } else if (VALUE("--eps", OPT_SYMMETRY)) {
        if (r < 0 || !parse_double(v, &o->eps) || o->eps < 0)
            return cli_usage(verb, "--eps needs a number >= 0");
        seen->eps = true;
    } else if (VALUE("--format", OPT_FORMATS)) {
        static const char *const formats[] = {"table", "json", "csv", "dot"}; /* FORMAT_* */
        o->format = -1;
        for (int32_t k = 0; r > 0 && k < 4; k++)
            if (strcmp(v, formats[k]) == 0)
                o->format = k;
        if (o->format < 0)
            return cli_usage(verb, "--format must be table, json, csv or dot");
    } else if (VALUE("--activation", OPT_ACTIVATION)) {
        if (r < 0 || !parse_activation(v, &o->activation, &o->act_param)) {
            char names[256];
            activation_names(names, sizeof names);
            return cli_usage(verb, "--activation must be one of %s", names);
        }
    } else if (VALUE("--output", OPT_OUTPUT) || VALUE("-o", OPT_OUTPUT)) {
        if (r < 0 || !v[0])
            return cli_usage(verb, "-o needs a file name (or - for stdout)");
        o->output = strcmp(v, "-") == 0 ? "/dev/stdout" : v;
    } else if (VALUE("--budget", OPT_BUDGET)) {
        if (r < 0 || !parse_double(v, &o->budget) || !(o->budget > 0 && o->budget <= 1))
            return cli_usage(verb, "--budget needs a fraction of the parameters in (0, 1]");
    } else if (VALUE("--input-scale", OPT_BUDGET)) {
        if (r < 0 || !parse_double(v, &o->input_scale) || !(o->input_scale > 0) ||
            !isfinite(o->input_scale))
            return cli_usage(verb, "--input-scale needs a number > 0 (the inputs' typical "
                             "standard deviation)");
    } else if (VALUE("--correction-ridge", OPT_BUDGET)) {
        if (r < 0 || !parse_double(v, &o->correction_ridge) || !(o->correction_ridge >= 0) ||
            !isfinite(o->correction_ridge))
            return cli_usage(verb, "--correction-ridge needs a number >= 0 (relative to the "
                             "Gram matrix's mean diagonal)");
    } else if (VALUE("--seed", OPT_SEED)) {
        if (r < 0 || !parse_u64(v, &o->seed))
            return cli_usage(verb, "--seed needs a non-negative integer");
    } else if (VALUE("--dtype", OPT_DTYPE)) {
        if (r < 0)
            return cli_usage(verb, "--dtype needs a value");
        if (strcmp(v, "keep") == 0)
            o->dtype = 0;
        else if (strcmp(v, "f32") == 0)
            o->dtype = FIB_DTYPE_F32;
        else if (strcmp(v, "f64") == 0)
            o->dtype = FIB_DTYPE_F64;
        else
            return cli_usage(verb, "--dtype must be keep, f32 or f64");
    } else if (VALUE("--convention", OPT_EDGELIST)) {
        if (r > 0 && strcmp(v, "pure") == 0)
            o->convention = FIB_CONVENTION_PURE;
        else if (r > 0 && strcmp(v, "published") == 0)
            o->convention = FIB_CONVENTION_PUBLISHED;
        else if (r > 0 && strcmp(v, "networkfibers") == 0)
            o->convention = FIB_CONVENTION_NETWORKFIBERS;
        else
            return cli_usage(verb, "--convention must be pure, published or networkfibers");
    } else if (VALUE("--columns", OPT_EDGELIST)) {
        if (r < 0 || o->columns)
            return cli_usage(verb, r < 0 ? "--columns needs a list such as "
                             "source,target,weight" : "--columns and --weight-column "
                             "exclude each other (give --columns once)");
        o->columns = v;
    } else if (VALUE("--weight-column", OPT_EDGELIST)) {
        /* a headerless file's weight column: 3 (source target weight) or 4
         * (source target type weight); any other layout says --columns */
        if (r > 0 && o->columns)
            return cli_usage(verb, "--columns and --weight-column exclude each other");
        if (r > 0 && strcmp(v, "3") == 0)
            o->columns = "source,target,weight";
        else if (r > 0 && strcmp(v, "4") == 0)
            o->columns = "source,target,type,weight";
        else
            return cli_usage(verb, "--weight-column needs 3 (source target weight) or 4 "
                             "(source target type weight); say other layouts with "
                             "--columns");
    } else if (VALUE("--dot-max-classes", (accepted & OPT_EDGELIST) ? 0 : OPT_FORMATS)) {
        uint64_t n;
        if (r < 0 || !parse_u64(v, &n) || n < 1 || n > 100000)
            return cli_usage(verb, "--dot-max-classes needs an integer in "
                             "[1, 100000]");
        o->dot_max_classes = (int64_t)n;
    } else {
        return -1;
    }
#undef VALUE
    return -2;
}

/* --tolerance-tree: the tolerances are its list; the mode must have one
 * (abs unless given); scaled modes colour fibers. */
static int tree_checks(cli_options *o, const given *seen)
{
    const char *verb = o->verb;
    if (seen->eps)
        return cli_usage(verb, "--eps and --tolerance-tree exclude each other (the "
                         "tree's tolerances are its list)");
    if (o->all_levels)
        return cli_usage(verb, "--symmetry all does not combine with --tolerance-tree");
    if (o->format == FORMAT_CSV)
        return cli_usage(verb, "--tolerance-tree writes a table, JSON or DOT, not CSV");
    if (!seen->tolerance)
        o->tolerance = FIB_TOL_ABS;
    if ((o->tolerance & ~FIB_TOL_SCALED) == FIB_TOL_EXACT)
        return cli_usage(verb, "--tolerance-tree needs a tolerance that grows: abs, rel, "
                         "cosine, complete, ward or scaled+MODE, not %s",
                         cli_tolerance_name(o->tolerance));
    if (o->tolerance & FIB_TOL_SCALED) {
        if (seen->symmetry && o->symmetry != FIB_SYM_FIBERS)
            return cli_usage(verb, "--tolerance %s colours fibers only (--symmetry fibers)",
                             cli_tolerance_name(o->tolerance));
        o->symmetry = FIB_SYM_FIBERS;
    }
    return -1;
}

int cli_parse(int argc, char **argv, unsigned accepted, void (*help)(FILE *),
              cli_options *o)
{
    const char *verb = argv[0];
    defaults(o, verb);
    given seen = {false, false, false};
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options_done || a[0] != '-' || strcmp(a, "-") == 0) {
            if (o->model)
                return cli_usage(verb, "one %s file expected, got '%s' too",
                                 (accepted & OPT_EDGELIST) ? "edge-list" : "model", a);
            o->model = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            options_done = true;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            help(stdout);
            return CLI_EXIT_OK;
        } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            o->quiet = true;
        } else if ((accepted & OPT_FORMATS) && strcmp(a, "--json") == 0) {
            o->format = FORMAT_JSON;
        } else if ((accepted & OPT_FORMATS) && strcmp(a, "--csv") == 0) {
            o->format = FORMAT_CSV;
        } else if ((accepted & OPT_FORMATS) && strcmp(a, "--dot") == 0) {
            o->format = FORMAT_DOT;
        } else if ((accepted & OPT_TREE) && strcmp(a, "--transformer") == 0) {
            o->transformer = true;
        } else if ((accepted & OPT_BUDGET) && strcmp(a, "--merge-inputs") == 0) {
            o->merge_inputs = true;
        } else if ((accepted & OPT_EDGELIST) && strcmp(a, "--header") == 0) {
            o->edgelist_flags |= FIB_EDGELIST_HEADER;
        } else if ((accepted & OPT_EDGELIST) && strcmp(a, "--no-header") == 0) {
            o->edgelist_flags |= FIB_EDGELIST_NO_HEADER;
        } else {
            int r = value_option(argc, argv, &i, accepted, o, &seen);
            if (r == -1)
                return cli_usage(verb, "unknown option '%s'", a);
            if (r != -2)
                return r;
        }
    }
    if (!o->model)
        return cli_usage(verb, (accepted & OPT_EDGELIST)
                                   ? "an edge-list file is required ('-' reads standard input)"
                                   : "a model file is required");
    if ((o->edgelist_flags & FIB_EDGELIST_HEADER) && (o->edgelist_flags & FIB_EDGELIST_NO_HEADER))
        return cli_usage(verb, "--header and --no-header exclude each other");
    if ((accepted & OPT_OUTPUT) && !o->output)
        return cli_usage(verb, "an output file is required (-o FILE)");
    /* the file goes to stdout: a summary there would corrupt it */
    if (o->output && (strcmp(o->output, "/dev/stdout") == 0 ||
                      strcmp(o->output, "/dev/fd/1") == 0 ||
                      strcmp(o->output, "/proc/self/fd/1") == 0))
        o->quiet = true;
    /* the transformer report: a table or JSON, exact and the tree's ladder */
    if (o->transformer && (o->format == FORMAT_CSV || o->format == FORMAT_DOT))
        return cli_usage(verb, "--transformer writes a table or JSON, not %s",
                         o->format == FORMAT_CSV ? "CSV" : "DOT");
    if (o->transformer && o->all_levels)
        return cli_usage(verb, "--symmetry all does not combine with --transformer");
    if (o->transformer && (seen.eps || seen.tolerance) && o->n_levels == 0)
        return cli_usage(verb, "--transformer reports the exact classes and the "
                         "ladder of --tolerance-tree; give the tolerances there");
    if (o->n_levels > 0)
        return tree_checks(o, &seen);
    if ((o->merge_inputs || o->input_scale > 0) && !(o->budget > 0))
        return cli_usage(verb, "--merge-inputs and --input-scale need --budget");
    if (o->correction_ridge >= 0 && !(o->input_scale > 0))
        return cli_usage(verb, "--correction-ridge needs --input-scale (the correction)");
    /* a budget chooses its grouping and every layer's classes itself */
    if (o->budget > 0 && (seen.symmetry || seen.tolerance || seen.eps))
        return cli_usage(verb, "--budget chooses the classes itself: no --symmetry, "
                         "--tolerance or --eps with it");
    if (o->tolerance != FIB_TOL_EXACT && o->tolerance != FIB_TOL_ABS)
        return cli_usage(verb, "--tolerance %s needs --tolerance-tree; the per-layer "
                         "report takes exact or abs", cli_tolerance_name(o->tolerance));
    /* --eps alone means the absolute tolerance */
    if (!seen.tolerance && o->eps > 0)
        o->tolerance = FIB_TOL_ABS;
    if (seen.tolerance && o->tolerance == FIB_TOL_EXACT && o->eps > 0)
        return cli_usage(verb, "--eps is meaningless with --tolerance exact");
    return -1;
}

/* ---- progress ---- */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_progress_init(cli_progress *p, const cli_options *o,
                       const fib_graph *graph)
{
    memset(p, 0, sizeof *p);
    p->enabled = !o->quiet && isatty(STDERR_FILENO);
    p->start = now_seconds();
    /* test-only (docs/cli.md): report from the first step */
    p->delay = getenv("FIBRATION_TEST_PROGRESS_AT_ONCE") ? 0.0 : 1.0;
    p->phase = "";
    if (graph)
        fib_graph_num_parameters(graph, &p->weights);
}

int32_t cli_progress_cb(void *user, int64_t done, int64_t total)
{
    cli_progress *p = user;
    if (!p->enabled)
        return 0;
    double elapsed = now_seconds() - p->start;
    if (elapsed < p->delay || total <= 0)
        return 0;
    if (p->shown && done == p->last_done && elapsed - p->last_time < 0.5)
        return 0;
    p->last_done = done;
    p->last_time = elapsed;
    if (p->weights <= 0) {
        fprintf(stderr, "\r%s: step %lld of %lld, %.0f s\033[K", p->phase, (long long)done,
                (long long)total, elapsed);
        fflush(stderr);
        p->shown = true;
        return 0;
    }
    double weights = (double)p->weights * (double)done / (double)total;
    char seen[32], all[32], rate[32];
    cli_human(seen, sizeof seen, weights);
    cli_human(all, sizeof all, (double)p->weights);
    cli_human(rate, sizeof rate, weights / elapsed);
    fprintf(stderr, "\r%s: step %lld of %lld, %s of %s weights, %s weights/s   ",
            p->phase, (long long)done, (long long)total, seen, all, rate);
    fflush(stderr);
    p->shown = true;
    return 0;
}

void cli_progress_note(cli_progress *p, const char *what, const char *name)
{
    if (!p->enabled)
        return;
    fprintf(stderr, "\r%s ", what);
    cli_put_clean(stderr, name);
    fputs(" ...\033[K", stderr);
    fflush(stderr);
    p->noted = true;
}

void cli_progress_end(cli_progress *p)
{
    if (p->shown)
        fputc('\n', stderr);
    else if (p->noted)
        fputs("\r\033[K", stderr); /* a note alone leaves no line behind */
    p->shown = p->noted = false;
}

/* ---- helpers ---- */

void cli_human(char *buf, size_t size, double count)
{
    const char *unit = "";
    double v = count;
    if (count >= 1e9) {
        v = count / 1e9;
        unit = " G";
    } else if (count >= 1e6) {
        v = count / 1e6;
        unit = " M";
    } else if (count >= 1e3) {
        v = count / 1e3;
        unit = " K";
    }
    if (unit[0])
        snprintf(buf, size, "%.2f%s", v, unit);
    else
        snprintf(buf, size, "%.0f", v);
}

/* Multiplicities a base keeps and an attention core's rotary frequencies
 * are structure, not weights (always float64). */
static bool is_structure_tensor(const char *name)
{
    return strstr(name, "multiplicity") || strcmp(name, "pair_frequency") == 0;
}

int64_t cli_group_parameters(const fib_graph *g, int32_t group)
{
    /* Every tensor of the block is a parameter, except the structure
     * tensors, as in fib_graph_num_parameters. */
    int64_t total = 0;
    for (int32_t t = 0;; t++) {
        int32_t ndim = 0;
        int64_t shape[4];
        const char *name = NULL;
        if (fib_graph_tensor_info(g, group, t, &ndim, shape, &name) != FIB_OK)
            break;
        if (is_structure_tensor(name))
            continue;
        total += shape[0] * shape[1] * shape[2] * shape[3];
    }
    return total;
}

int32_t cli_model_dtype(const fib_graph *g)
{
    int32_t n_groups = 0;
    fib_graph_num_groups(g, &n_groups);
    for (int32_t i = 0; i < n_groups; i++)
        for (int32_t t = 0;; t++) {
            int32_t dtype = 0;
            const char *name = NULL;
            if (fib_graph_tensor_info(g, i, t, NULL, NULL, &name) != FIB_OK ||
                fib_graph_tensor_dtype(g, i, t, &dtype) != FIB_OK)
                break;
            if (dtype == FIB_DTYPE_F64 && !is_structure_tensor(name))
                return FIB_DTYPE_F64;
        }
    return FIB_DTYPE_F32;
}

bool cli_nothing_to_merge(const fib_graph *g, const fib_coloring *c)
{
    int32_t n_groups = 0;
    fib_graph_num_groups(g, &n_groups);
    for (int32_t i = 0; i < n_groups; i++) {
        int32_t op = 0, is_output = 0;
        int64_t units = 0, classes = 0;
        if (fib_graph_group_info(g, i, &op, &units, NULL, NULL, NULL, NULL, &is_output) !=
                FIB_OK ||
            fib_coloring_num_classes(c, i, &classes) != FIB_OK)
            return false;
        if (op != FIB_OP_INPUT && !is_output && classes != units)
            return false;
    }
    return true;
}

int cli_load(const cli_options *o, fib_graph **out)
{
    fib_load_options lo;
    fib_load_options_init(&lo, sizeof lo);
    lo.activation = o->activation;
    lo.parameter = o->act_param;
    cli_watch_mapped_file(o->model);
    int32_t st = fib_model_load(o->model, &lo, out);
    if (st != FIB_OK)
        return cli_fail(o->model, st);
    cli_test_hook_after_load();
    return CLI_EXIT_OK;
}

int cli_load_with_progress(const cli_options *o, fib_graph **out, cli_progress *progress)
{
    int rc = cli_load(o, out);
    if (rc == CLI_EXIT_OK)
        cli_progress_init(progress, o, *out);
    return rc;
}

int cli_color(const cli_options *o, const fib_graph *g, int32_t symmetry,
              cli_progress *progress, fib_coloring **out)
{
    return cli_color_from(o, g, symmetry, NULL, progress, out);
}

int cli_color_from(const cli_options *o, const fib_graph *g, int32_t symmetry,
                   const fib_coloring *fibers, cli_progress *progress,
                   fib_coloring **out)
{
    fib_color_options co;
    fib_color_options_init(&co, sizeof co);
    co.symmetry = symmetry;
    co.tolerance = o->tolerance;
    co.eps = o->eps;
    co.progress = cli_progress_cb;
    co.progress_user = progress;
    progress->phase = cli_symmetry_name(symmetry);
    int32_t st = fibers ? fib_color_from_fibers(g, &co, fibers, out) : fib_color(g, &co, out);
    return st == FIB_OK ? CLI_EXIT_OK : cli_fail(o->model, st);
}
