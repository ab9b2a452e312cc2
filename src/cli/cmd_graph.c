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
            "header `source,target[,type][,weight]`, node names as strings) by its\n"
            "minimal balanced colouring: the coarsest partition in which every node\n"
            "of a class receives, for every class and edge type, the same number of\n"
            "arcs (or the same weight sum). Prints the non-trivial fibers with their\n"
            "nodes' names and whether they lie on a cycle.\n"
            "\n"
            "options:\n"
            "  --convention C      pure (default: the definition), published\n"
            "                      (FastFibration's; reproduces published counts)\n"
            "                      or networkfibers\n"
            "  --symmetry S        fibers (in-arcs, default), opfibers (out-arcs),\n"
            "                      covers\n"
            "  --eps E             tolerance for weighted graphs: inside a class\n"
            "                      every (class, type) input sum spans at most E\n"
            "  --no-header         the file has no header: src dst [type [weight]]\n"
            "  --json              every node's class by name, the classes, the base\n"
            "  --dot               the base (quotient) graph in Graphviz DOT\n"
            "  -q, --quiet         print nothing but errors\n"
            "  -h, --help          this text\n"
            "\n"
            "Exit codes: 0 ok, 1 failure, 2 usage, 3 I/O error, 4 malformed file.\n");
}

typedef struct graph_options {
    const char *path;
    int32_t convention;
    int32_t symmetry;
    double eps;
    uint32_t flags;
    int32_t format;
    bool quiet;
} graph_options;

static int parse(int argc, char **argv, graph_options *o)
{
    *o = (graph_options){.symmetry = FIB_SYM_FIBERS, .format = FORMAT_TABLE};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help(stdout);
            return CLI_EXIT_OK;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            o->quiet = true;
        } else if (!strcmp(a, "--json")) {
            o->format = FORMAT_JSON;
        } else if (!strcmp(a, "--dot")) {
            o->format = FORMAT_DOT;
        } else if (!strcmp(a, "--no-header")) {
            o->flags |= FIB_EDGELIST_NO_HEADER;
        } else if (!strcmp(a, "--convention") && value) {
            i++;
            if (!strcmp(value, "pure"))
                o->convention = FIB_CONVENTION_PURE;
            else if (!strcmp(value, "published"))
                o->convention = FIB_CONVENTION_PUBLISHED;
            else if (!strcmp(value, "networkfibers"))
                o->convention = FIB_CONVENTION_NETWORKFIBERS;
            else
                return cli_usage("graph", "unknown convention '%s'", value);
        } else if (!strcmp(a, "--symmetry") && value) {
            i++;
            if (!strcmp(value, "fibers"))
                o->symmetry = FIB_SYM_FIBERS;
            else if (!strcmp(value, "opfibers"))
                o->symmetry = FIB_SYM_OPFIBERS;
            else if (!strcmp(value, "covers"))
                o->symmetry = FIB_SYM_COVERS;
            else
                return cli_usage("graph", "unknown symmetry '%s'", value);
        } else if (!strcmp(a, "--eps") && value) {
            i++;
            char *end;
            o->eps = strtod(value, &end);
            if (*end || !(o->eps >= 0) || !isfinite(o->eps))
                return cli_usage("graph", "--eps needs a number >= 0, got '%s'", value);
        } else if (a[0] == '-' && a[1]) {
            return cli_usage("graph", "unknown option '%s' (or a missing value)", a);
        } else if (!o->path) {
            o->path = a;
        } else {
            return cli_usage("graph", "one edge-list file expected, got '%s' too", a);
        }
    }
    if (!o->path)
        return cli_usage("graph", "no edge-list file given");
    return -1;
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
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

static int32_t collect(const fib_graph *g, int32_t group, const fib_coloring *c,
                       graph_result *r)
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
    if (!st)
        st = fib_quotient_create(g, c, &q);
    if (!st)
        st = fib_quotient_num_arcs(q, &r->n_arcs);
    if (!st && r->n_arcs > 0) {
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

static void print_table(const fib_graph *g, int32_t group, const graph_options *o,
                        const graph_result *r)
{
    int64_t largest = 0, in_blocks = 0;
    for (int64_t b = 0; b < r->n_blocks; b++) {
        largest = r->block_size[b] > largest ? r->block_size[b] : largest;
        in_blocks += r->block_size[b];
    }
    printf("graph: ");
    cli_put_clean(stdout, o->path);
    printf("\nnodes %lld, classes %lld, non-trivial %lld, largest %lld, nodes in "
           "non-trivial %lld, base arcs %lld\n\n",
           (long long)r->n, (long long)r->k, (long long)r->n_blocks, (long long)largest,
           (long long)in_blocks, (long long)r->n_arcs);
    for (int64_t b = 0; b < r->n_blocks; b++) {
        printf("class %lld (%lld nodes, %s):", (long long)r->block_class[b],
               (long long)r->block_size[b], r->block_cycle[b] ? "on a cycle" : "acyclic");
        for (int64_t i = 0; i < r->n; i++)
            if (r->colors[i] == r->block_class[b]) {
                putchar(' ');
                cli_put_clean(stdout, fib_graph_node_name(g, group, i));
            }
        putchar('\n');
    }
}

static void print_json(const fib_graph *g, int32_t group, const graph_options *o,
                       const graph_result *r)
{
    printf("{\"graph\": ");
    json_string(stdout, o->path);
    printf(", \"nodes\": %lld, \"classes\": %lld,\n \"node_class\": {", (long long)r->n,
           (long long)r->k);
    for (int64_t i = 0; i < r->n; i++) {
        printf(i ? ", " : "");
        json_string(stdout, fib_graph_node_name(g, group, i));
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
        json_string(stdout, type_name(g, group, r->qtype[a]));
        printf(", \"weight\": %.17g, \"multiplicity\": %lld}", r->qweight[a],
               (long long)r->qmult[a]);
    }
    printf("]}\n");
}

static void print_dot(const fib_graph *g, int32_t group, const graph_result *r)
{
    printf("digraph base {\n  node [shape=circle];\n");
    for (int64_t c = 0; c < r->k; c++) {
        /* Label a class by its first node's name and its size. */
        int64_t first = 0;
        while (first < r->n && r->colors[first] != c)
            first++;
        printf("  c%lld [label=", (long long)c);
        json_string(stdout, fib_graph_node_name(g, group, first));
        printf(" xlabel=\"%lld\" width=%.2f];\n", (long long)r->sizes[c],
               0.3 + 0.1 * (double)(r->sizes[c] > 30 ? 30 : r->sizes[c]));
    }
    for (int64_t a = 0; a < r->n_arcs; a++) {
        printf("  c%lld -> c%lld [label=", (long long)r->qsrc[a], (long long)r->qdst[a]);
        json_string(stdout, type_name(g, group, r->qtype[a]));
        printf("];\n");
    }
    printf("}\n");
}

int cmd_graph(int argc, char **argv)
{
    graph_options o;
    int rc = parse(argc, argv, &o);
    if (rc >= 0)
        return rc;
    fib_graph *g = NULL;
    fib_coloring *c = NULL;
    graph_result r = {0};
    int32_t group = -1;
    int32_t st = fib_graph_create(&g);
    if (!st)
        st = fib_graph_read_edgelist(g, o.path, o.flags, &group);
    if (!st)
        st = fib_graph_set_convention(g, o.convention);
    fib_color_options co;
    fib_color_options_init(&co, sizeof co);
    co.symmetry = o.symmetry;
    co.tolerance = o.eps > 0 ? FIB_TOL_ABS : FIB_TOL_EXACT;
    co.eps = o.eps;
    if (!st)
        st = fib_color(g, &co, &c);
    if (!st)
        st = collect(g, group, c, &r);
    if (st) {
        rc = cli_fail(o.path, st);
    } else if (!o.quiet) {
        if (o.format == FORMAT_JSON)
            print_json(g, group, &o, &r);
        else if (o.format == FORMAT_DOT)
            print_dot(g, group, &r);
        else
            print_table(g, group, &o, &r);
    }
    result_free(&r);
    fib_coloring_free(c);
    fib_graph_free(g);
    return rc < 0 ? CLI_EXIT_OK : rc;
}
