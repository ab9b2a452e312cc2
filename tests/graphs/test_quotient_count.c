/* fib_quotient_count_arcs gives the number of arcs of the quotient that
 * fib_quotient_create builds, on random graphs with multi-arcs, self-loops,
 * weights, edge types, two node groups and initial classes, under every
 * symmetry; and refuses what fib_quotient_create refuses. */
#include "fibration.h"

#include "graph_check.h"

#include <stdbool.h>
#include <string.h>

/* A small deterministic generator (xorshift64*). */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static int64_t rnd(int64_t n)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (int64_t)((rng_state * 0x2545f4914f6cdd1dull) >> 33) % n;
}

/* Arcs drawn from few sources so that classes form and arcs merge. */
static void add_random_arcs(fib_graph *g, int32_t from, int64_t n_from,
                            int32_t to, int64_t n_to, int64_t m, bool weighted,
                            bool typed)
{
    int64_t *s = malloc((size_t)m * sizeof *s), *d = malloc((size_t)m * sizeof *d);
    double *w = malloc((size_t)m * sizeof *w);
    int32_t *t = malloc((size_t)m * sizeof *t);
    for (int64_t i = 0; i < m; i++) {
        s[i] = rnd(n_from > 3 ? n_from / 3 + 1 : n_from);
        d[i] = rnd(n_to);
        if (from == to && rnd(8) == 0)
            d[i] = s[i]; /* a self-loop */
        if (i > 0 && rnd(4) == 0) {
            s[i] = s[i - 1]; /* a multi-arc */
            d[i] = d[i - 1];
        }
        w[i] = (double)(1 + rnd(2));
        t[i] = (int32_t)rnd(3);
    }
    CHECK_OK(fib_graph_add_edges(g, from, to, m, s, d, weighted ? w : NULL,
                                 typed ? t : NULL, FIB_COPY));
    free(s), free(d), free(w), free(t);
}

static int64_t merged_cases;

static void compare(const fib_graph *g, int32_t symmetry, const char *what)
{
    fib_color_options o;
    fib_color_options_init(&o, sizeof o);
    o.symmetry = symmetry;
    fib_coloring *c = NULL;
    CHECK_OK(fib_color(g, &o, &c));
    fib_quotient *q = NULL;
    CHECK_OK(fib_quotient_create(g, c, &q));
    int64_t built = -1, counted = -2;
    CHECK_OK(fib_quotient_num_arcs(q, &built));
    CHECK_OK(fib_quotient_count_arcs(g, c, &counted));
    CHECK(counted == built, "%s, symmetry %d: counted %lld base arcs, the built "
          "base has %lld", what, (int)symmetry, (long long)counted, (long long)built);
    if (built > 0) {
        int64_t *mult = malloc((size_t)built * sizeof *mult);
        CHECK_OK(fib_quotient_arcs(q, built, NULL, NULL, NULL, NULL, NULL, NULL, mult));
        for (int64_t a = 0; a < built; a++)
            if (mult[a] > 1) {
                merged_cases++;
                break;
            }
        free(mult);
    }
    fib_quotient_free(q);
    fib_coloring_free(c);
}

static void random_graphs(void)
{
    for (int trial = 0; trial < 60; trial++) {
        bool weighted = trial % 2, typed = trial % 3 == 0, two = trial % 5 == 0;
        int64_t n = 2 + rnd(40), m = 1 + rnd(4 * n);
        fib_graph *g = NULL;
        int32_t a, b = -1;
        CHECK_OK(fib_graph_create(&g));
        CHECK_OK(fib_graph_add_nodes(g, n, &a));
        add_random_arcs(g, a, n, a, n, m, weighted, typed);
        if (two) {
            CHECK_OK(fib_graph_add_nodes(g, n, &b));
            add_random_arcs(g, a, n, b, n, m, weighted, typed);
            add_random_arcs(g, b, n, a, n, m / 2 + 1, weighted, typed);
        }
        if (trial % 7 == 0) {
            int64_t *labels = malloc((size_t)n * sizeof *labels);
            for (int64_t v = 0; v < n; v++)
                labels[v] = rnd(2);
            CHECK_OK(fib_graph_set_initial_classes(g, a, labels, n));
            free(labels);
        }
        if (trial % 4 == 1)
            CHECK_OK(fib_graph_set_convention(g, FIB_CONVENTION_PUBLISHED));
        char what[64];
        snprintf(what, sizeof what, "trial %d (%lld nodes, %lld arcs)", trial,
                 (long long)n, (long long)m);
        compare(g, FIB_SYM_FIBERS, what);
        compare(g, FIB_SYM_OPFIBERS, what);
        compare(g, FIB_SYM_COVERS, what);
        fib_graph_free(g);
    }
    /* the property is only tested if some bases merged several arcs */
    CHECK(merged_cases > 10, "only %lld bases merged arcs", (long long)merged_cases);
}

/* More classes than one partition of the count's grouping holds (4096),
 * classes of one node and of many, a hub receiving hundreds of arcs (a
 * class's arcs sorted by qsort) and repeated arcs to merge. */
static void many_classes(void)
{
    for (int typed = 0; typed < 2; typed++) {
        const int64_t n = 20000, m = 90000;
        int64_t *s = malloc((size_t)m * sizeof *s), *d = malloc((size_t)m * sizeof *d);
        int32_t *t = malloc((size_t)m * sizeof *t);
        for (int64_t i = 0; i < m; i++) {
            s[i] = rnd(n);
            d[i] = rnd(10) == 0 ? 7 : rnd(n); /* node 7: the hub */
            if (i >= 10000 && i < 20000) {
                s[i] = i - 10000; /* a path through the first 10000 nodes */
                d[i] = i - 9999;
            }
            if (i > 0 && rnd(5) == 0) {
                s[i] = s[i - 1];
                d[i] = d[i - 1];
            }
            t[i] = (int32_t)rnd(3);
        }
        fib_graph *g = NULL;
        int32_t a;
        CHECK_OK(fib_graph_create(&g));
        CHECK_OK(fib_graph_add_nodes(g, n, &a));
        CHECK_OK(fib_graph_add_edges(g, a, a, m, s, d, NULL, typed ? t : NULL, FIB_COPY));
        compare(g, FIB_SYM_FIBERS, typed ? "many classes, typed" : "many classes");
        compare(g, FIB_SYM_OPFIBERS, typed ? "many classes, typed" : "many classes");
        fib_graph_free(g);
        free(s), free(d), free(t);
    }
}

/* Nodes without arcs: an empty base. */
static void no_arcs(void)
{
    fib_graph *g = NULL;
    int32_t a;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_nodes(g, 5, &a));
    compare(g, FIB_SYM_FIBERS, "no arcs");
    fib_graph_free(g);
}

static void refusals(void)
{
    fib_graph *g = NULL, *other = NULL;
    int32_t a;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_nodes(g, 3, &a));
    int64_t s[2] = {0, 1}, d[2] = {1, 2};
    CHECK_OK(fib_graph_add_edges(g, a, a, 2, s, d, NULL, NULL, FIB_COPY));
    CHECK_OK(fib_graph_create(&other));
    CHECK_OK(fib_graph_add_nodes(other, 4, &a));
    fib_color_options o;
    fib_color_options_init(&o, sizeof o);
    fib_coloring *c = NULL;
    CHECK_OK(fib_color(g, &o, &c));
    int64_t n = 0;
    CHECK(fib_quotient_count_arcs(NULL, c, &n) == FIB_E_NULL, "NULL graph");
    CHECK(fib_quotient_count_arcs(g, NULL, &n) == FIB_E_NULL, "NULL colouring");
    CHECK(fib_quotient_count_arcs(g, c, NULL) == FIB_E_NULL, "NULL output");
    fib_quotient *q = NULL;
    int32_t built = fib_quotient_create(other, c, &q);
    CHECK(built != FIB_OK, "another graph's colouring is refused by the build");
    CHECK(fib_quotient_count_arcs(other, c, &n) == built,
          "and by the count, with the same status");
    fib_quotient_free(q);
    fib_coloring_free(c);
    fib_graph_free(g);
    fib_graph_free(other);
}

int main(void)
{
    random_graphs();
    many_classes();
    no_arcs();
    refusals();
    if (check_failures)
        fprintf(stderr, "%d check(s) failed\n", check_failures);
    return check_failures ? 1 : 0;
}
