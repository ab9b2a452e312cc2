/* fibration graph EDGES: the minimal balanced colouring (fibers) of a
 * directed graph read from an edge list, with node names. */
#include "commands.h"
#include "report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *f)
{
    fprintf(f,
            "usage: fibration graph [OPTIONS] EDGES\n"
            "\n"
            "Colours a directed graph given as an edge list (CSV, TSV or whitespace;\n"
            "header `source,target[,type][,weight]`, node names as strings; `-`\n"
            "reads standard input) by its minimal balanced colouring: the coarsest\n"
            "partition in which every node of a class receives, for every class and\n"
            "edge type, the same number of arcs (or the same weight sum). Prints the\n"
            "non-trivial fibers with their nodes' names and whether they lie on a\n"
            "cycle. Ambiguous files are refused, never guessed: see docs/graphs.md.\n"
            "\n"
            "options:\n"
            "  --convention C      pure (default: the definition), published\n"
            "                      (FastFibration's; reproduces published counts)\n"
            "                      or networkfibers\n"
            "  --symmetry S        fibers (in-arcs, default), opfibers (out-arcs),\n"
            "                      covers\n"
            "  --eps E             tolerance for weighted graphs: inside a class\n"
            "                      every (class, type) input sum spans at most E\n"
            "  --tolerance T       exact (default) or abs (--eps alone means abs)\n"
            "  --header            the first line is a header\n"
            "  --no-header         the file has no header: src dst [type [weight]]\n"
            "  --columns LIST      every column's role, in order: source, target,\n"
            "                      type, weight or - (ignored), e.g.\n"
            "                      source,target,weight\n"
            "  --weight-column N   headerless weights: 3 (source target weight) or\n"
            "                      4 (source target type weight)\n"
            "  --format F          table (default), json, csv or dot\n"
            "  --json, --csv, --dot  the same as --format json, csv, dot\n"
            "  -q, --quiet         print nothing but errors\n"
            "  -h, --help          this text\n"
            "\n"
            "Exit codes: 0 ok, 1 failure, 2 usage, 3 I/O error, 4 malformed file.\n");
}

typedef struct graph_result {
    int64_t n, k, m, n_blocks;
    int64_t *colors, *sizes, *block_class, *block_size, *block_cycle;
    int64_t n_arcs;
    int64_t *qsrc, *qdst, *qmult;
    int32_t *qtype;
    double *qweight;
} graph_result;

static void result_free(graph_result *r)
{
    free(r->colors), free(r->sizes), free(r->block_class), free(r->block_size);
    free(r->block_cycle), free(r->qsrc), free(r->qdst), free(r->qmult);
    free(r->qtype), free(r->qweight);
}

/* What of the base graph an output prints: nothing (CSV), its number of
 * arcs (the table), or its arcs (JSON, DOT). */
enum base_need { BASE_NONE, BASE_COUNT, BASE_ARCS };

/* The classes and fiber blocks, and the base graph as far as `base` asks. */
static int32_t collect(const fib_graph *g, int32_t group, const fib_coloring *c,
                       enum base_need base, graph_result *r)
{
    int32_t st = fib_graph_group_info(g, group, NULL, &r->n, NULL, NULL, NULL, NULL, NULL);
    if (!st)
        st = fib_coloring_num_classes(c, group, &r->k);
    if (st)
        return st;
    r->colors = malloc((size_t)r->n * sizeof *r->colors);
    r->sizes = malloc((size_t)r->k * sizeof *r->sizes);
    r->block_class = malloc((size_t)r->k * sizeof *r->block_class);
    r->block_size = malloc((size_t)r->k * sizeof *r->block_size);
    r->block_cycle = malloc((size_t)r->k * sizeof *r->block_cycle);
    if (!r->colors || !r->sizes || !r->block_class || !r->block_size || !r->block_cycle)
        return FIB_E_NOMEM;
    st = fib_coloring_colors(c, group, r->colors, r->n);
    if (!st)
        st = fib_coloring_class_sizes(c, group, r->sizes, r->k);
    if (!st)
        st = fib_coloring_fiber_blocks(g, c, group, r->k, r->block_class, r->block_size,
                                       r->block_cycle, &r->n_blocks);
    fib_quotient *q = NULL;
    /* the table's count needs no base graph: its arrays would be the
     * largest this command allocates */
    if (!st && base == BASE_COUNT)
        st = fib_quotient_count_arcs(g, c, &r->n_arcs);
    if (!st && base == BASE_ARCS)
        st = fib_quotient_create(g, c, &q);
    if (!st && q)
        st = fib_quotient_num_arcs(q, &r->n_arcs);
    if (!st && base == BASE_ARCS && r->n_arcs > 0) {
        size_t a = (size_t)r->n_arcs;
        r->qsrc = malloc(a * sizeof *r->qsrc);
        r->qdst = malloc(a * sizeof *r->qdst);
        r->qmult = malloc(a * sizeof *r->qmult);
        r->qtype = malloc(a * sizeof *r->qtype);
        r->qweight = malloc(a * sizeof *r->qweight);
        st = r->qsrc && r->qdst && r->qmult && r->qtype && r->qweight
                 ? fib_quotient_arcs(q, r->n_arcs, NULL, r->qsrc, NULL, r->qdst, r->qtype,
                                     r->qweight, r->qmult)
                 : FIB_E_NOMEM;
    }
    fib_quotient_free(q);
    return st;
}

static const char *type_name(const fib_graph *g, int32_t group, int32_t type)
{
    const char *name = fib_graph_edge_type_name(g, group, type);
    return name ? name : "";
}


static void print_table(const fib_graph *g, int32_t group, const cli_options *o,
                        const graph_result *r, const lists *m)
{
    int64_t largest = 0, in_blocks = 0;
    for (int64_t b = 0; b < r->n_blocks; b++) {
        largest = r->block_size[b] > largest ? r->block_size[b] : largest;
        in_blocks += r->block_size[b];
    }
    printf("graph: ");
    cli_put_text(stdout, o->model);
    printf("\nnodes %lld, classes %lld, non-trivial %lld, largest %lld, nodes in "
           "non-trivial %lld, base arcs %lld\n\n",
           (long long)r->n, (long long)r->k, (long long)r->n_blocks, (long long)largest,
           (long long)in_blocks, (long long)r->n_arcs);
    for (int64_t b = 0; b < r->n_blocks; b++) {
        int64_t c = r->block_class[b];
        printf("class %lld (%lld nodes, %s):", (long long)c,
               (long long)r->block_size[b], r->block_cycle[b] ? "on a cycle" : "acyclic");
        for (int64_t j = m->start[c]; j < m->start[c + 1]; j++) {
            putchar(' ');
            cli_put_text(stdout, fib_graph_node_name(g, group, m->items[j]));
        }
        putchar('\n');
    }
}

static void print_json(const fib_graph *g, int32_t group, const cli_options *o,
                       const graph_result *r)
{
    printf("{\"graph\": ");
    cli_put_json_string(stdout, o->model);
    printf(", \"nodes\": %lld, \"classes\": %lld,\n \"node_class\": {", (long long)r->n,
           (long long)r->k);
    for (int64_t i = 0; i < r->n; i++) {
        printf(i ? ", " : "");
        cli_put_json_string(stdout, fib_graph_node_name(g, group, i));
        printf(": %lld", (long long)r->colors[i]);
    }
    printf("},\n \"class_sizes\": [");
    for (int64_t c = 0; c < r->k; c++)
        printf("%s%lld", c ? ", " : "", (long long)r->sizes[c]);
    printf("],\n \"fibers\": [");
    for (int64_t b = 0; b < r->n_blocks; b++)
        printf("%s{\"class\": %lld, \"size\": %lld, \"on_cycle\": %lld}", b ? ", " : "",
               (long long)r->block_class[b], (long long)r->block_size[b],
               (long long)r->block_cycle[b]);
    printf("],\n \"base\": [");
    for (int64_t a = 0; a < r->n_arcs; a++) {
        printf("%s{\"source\": %lld, \"target\": %lld, \"type\": ", a ? ", " : "",
               (long long)r->qsrc[a], (long long)r->qdst[a]);
        cli_put_json_string(stdout, type_name(g, group, r->qtype[a]));
        printf(", \"weight\": %.17g, \"multiplicity\": %lld}", r->qweight[a],
               (long long)r->qmult[a]);
    }
    printf("]}\n");
}

/* A CSV field (RFC 4180), quoted when it holds a comma, quote or line end,
 * or starts with a blank; the name's bytes unchanged otherwise, so that the
 * rows join the input file's names. */
static void put_csv_name(const char *s)
{
    if (!strpbrk(s, ",\"\r\n") && s[0] != ' ' && s[0] != '\t') {
        fputs(s, stdout);
        return;
    }
    putchar('"');
    for (; *s; s++) {
        if (*s == '"')
            putchar('"');
        putchar(*s);
    }
    putchar('"');
}

/* One row per node, in the file's order: its class, the class's size and
 * whether the class is a fiber with members on a cycle. */
static int32_t print_csv(const fib_graph *g, int32_t group, const graph_result *r)
{
    int64_t *on_cycle = calloc((size_t)r->k + 1, sizeof *on_cycle);
    if (!on_cycle)
        return FIB_E_NOMEM;
    for (int64_t b = 0; b < r->n_blocks; b++)
        on_cycle[r->block_class[b]] = r->block_cycle[b] > 0;
    puts("node,class,class_size,on_cycle");
    for (int64_t i = 0; i < r->n; i++) {
        int64_t c = r->colors[i];
        put_csv_name(fib_graph_node_name(g, group, i));
        printf(",%lld,%lld,%d\n", (long long)c, (long long)r->sizes[c], (int)on_cycle[c]);
    }
    free(on_cycle);
    return FIB_OK;
}

/* A DOT string: the name as table text (control characters and bytes that
 * are not UTF-8 as visible \xNN), with its quotes and backslashes escaped. */
static void put_dot_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            putchar('\\');
        putchar(*s);
    }
    putchar('"');
}

static int32_t print_dot(const fib_graph *g, int32_t group, const graph_result *r,
                         const lists *m)
{
    char *text = NULL;
    size_t cap = 0;
    printf("digraph base {\n  node [shape=circle];\n");
    for (int64_t c = 0; c < r->k; c++) {
        /* Label a class by its first node's name and its size. */
        const char *name = fib_graph_node_name(g, group, m->items[m->start[c]]);
        size_t need = 4 * strlen(name) + 1; /* an escape is at most 4 bytes a byte */
        if (need > cap) {
            free(text);
            cap = need > 2 * cap ? need : 2 * cap;
            text = malloc(cap);
            if (!text)
                return FIB_E_NOMEM;
        }
        printf("  c%lld [label=", (long long)c);
        put_dot_string(cli_text(text, cap, name));
        printf(" xlabel=\"%lld\" width=%.2f];\n", (long long)r->sizes[c],
               0.3 + 0.1 * (double)(r->sizes[c] > 30 ? 30 : r->sizes[c]));
    }
    free(text);
    for (int64_t a = 0; a < r->n_arcs; a++) {
        printf("  c%lld -> c%lld [label=", (long long)r->qsrc[a], (long long)r->qdst[a]);
        put_dot_string(type_name(g, group, r->qtype[a]));
        printf("];\n");
    }
    printf("}\n");
    return FIB_OK;
}

int cmd_graph(int argc, char **argv)
{
    cli_options o;
    int rc = cli_parse(argc, argv, OPT_SYMMETRY | OPT_FORMATS | OPT_EDGELIST, help, &o);
    if (rc >= 0)
        return rc;
    fib_graph *g = NULL;
    fib_coloring *c = NULL;
    graph_result r = {0};
    lists m = {0};
    int32_t group = -1;
    cli_progress progress;
    cli_progress_init(&progress, &o, NULL);
    cli_progress_note(&progress, "reading", o.model);
    /* a regular file (standard input too) is mapped */
    cli_watch_mapped_file(strcmp(o.model, "-") ? o.model : "<stdin>");
    int32_t st = fib_graph_create(&g);
    if (!st)
        st = fib_graph_read_edgelist_columns(g, o.model, o.edgelist_flags, o.columns, &group);
    if (!st)
        st = fib_graph_set_convention(g, o.convention);
    fib_color_options co;
    fib_color_options_init(&co, sizeof co);
    co.symmetry = o.symmetry;
    co.tolerance = o.tolerance;
    co.eps = o.eps;
    co.progress = cli_progress_cb;
    co.progress_user = &progress;
    progress.phase = cli_symmetry_name(o.symmetry);
    if (!st)
        cli_progress_note(&progress, "colouring", o.model);
    if (!st)
        st = fib_color(g, &co, &c);
    cli_progress_end(&progress);
    /* the classes' lists, blocks and base graph are only for printing */
    if (!st && !o.quiet) {
        cli_progress_note(&progress, "finding the fibers' cycles and the base graph of",
                          o.model);
        st = collect(g, group, c, o.format == FORMAT_CSV ? BASE_NONE
                                  : o.format == FORMAT_TABLE ? BASE_COUNT : BASE_ARCS,
                     &r);
        cli_progress_end(&progress);
    }
    if (st == FIB_E_INVALID) {
        /* the flags and the column list come from the command line */
        fprintf(stderr, "fibration graph: ");
        cli_put_clean(stderr, fib_last_error());
        fprintf(stderr, " (see 'fibration graph --help')\n");
        rc = CLI_EXIT_USAGE;
    } else if (st) {
        /* the reader calls standard input "<stdin>" */
        rc = cli_fail(strcmp(o.model, "-") ? o.model : "<stdin>", st);
    } else if (!o.quiet) {
        /* the members of every class, for the table's fibers and the DOT
         * labels: listed once, so that no writer scans the nodes per class */
        bool ok = (o.format != FORMAT_TABLE && o.format != FORMAT_DOT) ||
                  lists_build(r.colors, r.n, r.k, &m);
        if (ok && o.format == FORMAT_JSON)
            print_json(g, group, &o, &r);
        else if (ok && o.format == FORMAT_CSV)
            ok = print_csv(g, group, &r) == FIB_OK;
        else if (ok && o.format == FORMAT_DOT)
            ok = print_dot(g, group, &r, &m) == FIB_OK;
        else if (ok)
            print_table(g, group, &o, &r, &m);
        if (!ok) {
            fprintf(stderr, "fibration: out of memory writing the result\n");
            rc = CLI_EXIT_FAILURE;
        }
    }
    lists_free(&m);
    result_free(&r);
    fib_coloring_free(c);
    fib_graph_free(g);
    return rc < 0 ? CLI_EXIT_OK : rc;
}
