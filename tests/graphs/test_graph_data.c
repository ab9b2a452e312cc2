/* The real networks of docs/examples/graphs: every fiber count of the table
 * in its README, for the pure definition and both published conventions,
 * and node-for-node agreement of the three copies of the E. coli network.
 * Usage: test_graph_data DATA_DIR (the data ships with the repository, so a
 * missing directory is a failure). */
#include "graphs/edgelist.h"
#include "graphs/refine.h"

#include "graph_check.h"

#include <string.h>
#include <sys/stat.h>

typedef struct expected {
    const char *file;
    int64_t n, m;
    class_stats pure, networkfibers, published;
} expected;

/* docs/examples/graphs/README.md, "Fiber counts" */
static const expected TABLE[] = {
    {"test_1.csv", 8, 11, {6, 2, 2, 4}, {6, 2, 2, 4}, {6, 2, 2, 4}},
    {"test_3SCC.csv", 8, 10, {5, 1, 4, 4}, {5, 1, 4, 4}, {6, 1, 3, 3}},
    {"test_3SCC_2.csv", 8, 14, {6, 1, 3, 3}, {6, 1, 3, 3}, {6, 1, 3, 3}},
    {"test_6SCC.csv", 16, 26, {14, 2, 2, 4}, {14, 2, 2, 4}, {14, 2, 2, 4}},
    {"test_6SCC2.csv", 16, 25, {13, 3, 2, 6}, {13, 3, 2, 6}, {13, 3, 2, 6}},
    {"test_SELF.csv", 6, 6, {1, 1, 6, 6}, {2, 2, 3, 6}, {2, 2, 3, 6}},
    {"test_Ecoli.csv", 879, 1835, {414, 80, 69, 545}, {555, 92, 28, 416},
     {555, 92, 28, 416}},
    {"ecoli_ids.tsv", 879, 1835, {414, 80, 69, 545}, {555, 92, 28, 416},
     {555, 92, 28, 416}},
    {"ecoli_named.txt", 879, 1835, {414, 80, 69, 545}, {555, 92, 28, 416},
     {555, 92, 28, 416}},
};

static void path_of(char *buf, size_t size, const char *dir, const char *file)
{
    snprintf(buf, size, "%s/%s", dir, file);
}

static int64_t *colour(const fib_edgelist *e, int32_t convention,
                       int64_t *n_classes)
{
    fib_refine_input in;
    fib_refine_input_init(&in);
    in.n_nodes = e->n_nodes;
    in.n_arcs = e->n_arcs;
    in.src = e->src;
    in.dst = e->dst;
    in.type = e->type;
    in.convention = convention;
    int64_t *color = malloc((size_t)e->n_nodes * sizeof *color);
    if (!color)
        abort();
    CHECK_OK(fib_refine(&in, color, n_classes));
    return color;
}

static void check_stats(const char *file, const char *what, class_stats got,
                        class_stats want)
{
    CHECK(got.colours == want.colours && got.nontrivial == want.nontrivial &&
              got.largest == want.largest &&
              got.in_nontrivial == want.in_nontrivial,
          "%s %s: got %lld / %lld / %lld / %lld, want %lld / %lld / %lld / %lld",
          file, what, (long long)got.colours, (long long)got.nontrivial,
          (long long)got.largest, (long long)got.in_nontrivial,
          (long long)want.colours, (long long)want.nontrivial,
          (long long)want.largest, (long long)want.in_nontrivial);
    printf("%-18s %-14s %lld / %lld / %lld / %lld\n", file, what,
           (long long)got.colours, (long long)got.nontrivial,
           (long long)got.largest, (long long)got.in_nontrivial);
}

/* Same partition under a node bijection given by names. */
static int same_partition_by_name(const fib_edgelist *a, const int64_t *ca,
                                  const fib_edgelist *b, const int64_t *cb,
                                  const char *const *b_names)
{
    if (a->n_nodes != b->n_nodes)
        return 0;
    int64_t n = a->n_nodes;
    /* map a's classes to b's and back through matching names */
    int64_t *fwd = malloc((size_t)n * sizeof *fwd);
    int64_t *bwd = malloc((size_t)n * sizeof *bwd);
    if (!fwd || !bwd)
        abort();
    for (int64_t i = 0; i < n; i++)
        fwd[i] = bwd[i] = -1;
    int ok = 1;
    for (int64_t j = 0; j < n && ok; j++) {
        const char *name = b_names ? b_names[j] : fib_edgelist_node_name(b, j);
        int64_t i = -1;
        for (int64_t k = 0; k < n; k++)
            if (strcmp(fib_edgelist_node_name(a, k), name) == 0) {
                i = k;
                break;
            }
        if (i < 0) {
            ok = 0;
            break;
        }
        int64_t x = ca[i], y = cb[j];
        if ((fwd[x] >= 0 && fwd[x] != y) || (bwd[y] >= 0 && bwd[y] != x))
            ok = 0;
        fwd[x] = y;
        bwd[y] = x;
    }
    free(fwd);
    free(bwd);
    return ok;
}

/* ecoli_names.tsv: "name<TAB>id" lines -> names indexed by the numeric id,
 * re-indexed to the node order of the parsed ecoli_ids.tsv. */
static char **ecoli_names(const char *dir, const fib_edgelist *e)
{
    char path[4096];
    path_of(path, sizeof path, dir, "ecoli_names.tsv");
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char **by_id = calloc(4096, sizeof *by_id);
    char line[1024];
    while (by_id && fgets(line, sizeof line, f)) {
        char name[512];
        long id;
        if (sscanf(line, "%511s %ld", name, &id) == 2 && id >= 0 && id < 4096)
            by_id[id] = strdup(name);
    }
    fclose(f);
    char **names = calloc((size_t)e->n_nodes, sizeof *names);
    for (int64_t v = 0; names && v < e->n_nodes; v++) {
        long id = strtol(fib_edgelist_node_name(e, v), NULL, 10);
        names[v] = id >= 0 && id < 4096 && by_id[id] ? strdup(by_id[id])
                                                       : strdup("?");
    }
    for (int i = 0; i < 4096; i++)
        free(by_id[i]);
    free(by_id);
    return names;
}

int main(int argc, char **argv)
{
    struct stat st;
    if (argc < 2 || stat(argv[1], &st) != 0) {
        fprintf(stderr, "data directory missing: %s\n",
                argc < 2 ? "(none given)" : argv[1]);
        return 1;
    }
    const char *dir = argv[1];
    const int32_t conventions[3] = {FIB_REFINE_PURE, FIB_REFINE_NETWORKFIBERS,
                                    FIB_REFINE_PUBLISHED};
    const char *conv_names[3] = {"pure", "networkfibers", "published"};

    fib_edgelist ecoli[3];
    int64_t *ecoli_color[3][3];
    int n_ecoli = 0;
    for (size_t f = 0; f < sizeof TABLE / sizeof TABLE[0]; f++) {
        const expected *x = &TABLE[f];
        char path[4096];
        path_of(path, sizeof path, dir, x->file);
        fib_edgelist e;
        int32_t status = fib_edgelist_read(path, FIB_EDGELIST_AUTO, &e);
        CHECK(status == FIB_OK, "%s: %s", path, fib_last_error());
        if (status != FIB_OK)
            continue;
        CHECK(e.n_nodes == x->n && e.n_arcs == x->m,
              "%s: %lld nodes %lld arcs", x->file, (long long)e.n_nodes,
              (long long)e.n_arcs);
        const class_stats *want[3] = {&x->pure, &x->networkfibers,
                                      &x->published};
        bool is_ecoli = x->n == 879;
        for (int c = 0; c < 3; c++) {
            int64_t k = 0;
            int64_t *color = colour(&e, conventions[c], &k);
            check_stats(x->file, conv_names[c], stats_of(color, e.n_nodes, k),
                        *want[c]);
            if (is_ecoli)
                ecoli_color[n_ecoli][c] = color;
            else
                free(color);
        }
        if (is_ecoli)
            ecoli[n_ecoli++] = e;
        else
            fib_edgelist_clear(&e);
    }
    /* the three E. coli files: the same partitions, node for node by name
     * (test_Ecoli.csv and ecoli_named.txt carry names; ecoli_ids.tsv ids are
     * mapped through ecoli_names.tsv) */
    if (n_ecoli == 3) {
        char **names = ecoli_names(dir, &ecoli[1]);
        CHECK(names != NULL, "ecoli_names.tsv unreadable");
        for (int c = 0; c < 3; c++) {
            CHECK(same_partition_by_name(&ecoli[0], ecoli_color[0][c],
                                         &ecoli[2], ecoli_color[2][c], NULL),
                  "test_Ecoli.csv vs ecoli_named.txt differ (%s)",
                  conv_names[c]);
            if (names)
                CHECK(same_partition_by_name(&ecoli[0], ecoli_color[0][c],
                                             &ecoli[1], ecoli_color[1][c],
                                             (const char *const *)names),
                      "test_Ecoli.csv vs ecoli_ids.tsv differ (%s)",
                      conv_names[c]);
        }
        for (int64_t v = 0; names && v < ecoli[1].n_nodes; v++)
            free(names[v]);
        free(names);
    }
    for (int i = 0; i < n_ecoli; i++) {
        for (int c = 0; c < 3; c++)
            free(ecoli_color[i][c]);
        fib_edgelist_clear(&ecoli[i]);
    }
    if (check_failures)
        fprintf(stderr, "%d check(s) failed\n", check_failures);
    return check_failures ? 1 : 0;
}
