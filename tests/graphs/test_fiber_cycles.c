/* fib_coloring_fiber_blocks counts a block's members on a directed cycle as
 * a search from every member would: on random graphs (multi-arcs,
 * self-loops, two node groups, initial classes, every convention), graphs
 * whose blocks are sources or sinks, and long chains listed against their
 * direction (the cases where the search is restricted to the nodes around
 * the blocks, and where it is not), under every symmetry. */
#include "fibration.h"

#include "graph_check.h"

#include <stdbool.h>
#include <string.h>

/* A small deterministic generator (xorshift64*). */
static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static int64_t rnd(int64_t n)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (int64_t)((rng_state * 0x2545f4914f6cdd1dull) >> 33) % n;
}

/* All arcs of the graph over global node ids (group offsets added). */
typedef struct arc_list {
    int64_t n, m, cap;
    int64_t *src, *dst;
} arc_list;

static void push_arc(arc_list *l, int64_t s, int64_t d)
{
    if (l->m == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->src = realloc(l->src, (size_t)l->cap * sizeof *l->src);
        l->dst = realloc(l->dst, (size_t)l->cap * sizeof *l->dst);
    }
    l->src[l->m] = s;
    l->dst[l->m] = d;
    l->m++;
}

/* Whether v reaches itself by one arc or more: a search from v. */
static bool reaches_itself(const arc_list *l, int64_t v, uint8_t *seen, int64_t *queue)
{
    memset(seen, 0, (size_t)l->n);
    int64_t head = 0, tail = 0;
    queue[tail++] = v;
    while (head < tail) {
        int64_t u = queue[head++];
        for (int64_t a = 0; a < l->m; a++) {
            if (l->src[a] != u)
                continue;
            if (l->dst[a] == v)
                return true;
            if (!seen[l->dst[a]]) {
                seen[l->dst[a]] = 1;
                queue[tail++] = l->dst[a];
            }
        }
    }
    return false;
}

static int64_t blocks_on_cycle, blocks_acyclic;

/* Compares every group's blocks with the search from each member. */
static void compare(const fib_graph *g, const arc_list *l, const int64_t *group_start,
                    int32_t n_groups, int32_t symmetry, const char *what)
{
    fib_color_options o;
    fib_color_options_init(&o, sizeof o);
    o.symmetry = symmetry;
    fib_coloring *c = NULL;
    CHECK_OK(fib_color(g, &o, &c));
    uint8_t *seen = malloc((size_t)l->n + 1);
    int64_t *queue = malloc(((size_t)l->n + 1) * sizeof *queue);
    for (int32_t group = 0; group < n_groups; group++) {
        int64_t n = group_start[group + 1] - group_start[group], k = 0, n_blocks = -1;
        CHECK_OK(fib_coloring_num_classes(c, group, &k));
        int64_t *colors = malloc((size_t)n * sizeof *colors);
        int64_t *ids = malloc((size_t)k * sizeof *ids), *sizes = malloc((size_t)k * sizeof *sizes);
        int64_t *on_cycle = malloc((size_t)k * sizeof *on_cycle);
        int64_t *expected = calloc((size_t)k, sizeof *expected);
        CHECK_OK(fib_coloring_colors(c, group, colors, n));
        CHECK_OK(fib_coloring_fiber_blocks(g, c, group, k, ids, sizes, on_cycle, &n_blocks));
        for (int64_t v = 0; v < n; v++)
            expected[colors[v]] += reaches_itself(l, group_start[group] + v, seen, queue);
        for (int64_t b = 0; b < n_blocks; b++) {
            CHECK(on_cycle[b] == expected[ids[b]], "%s, symmetry %d, group %d: class %lld "
                  "(%lld nodes) has %lld members on a cycle, the search finds %lld", what,
                  (int)symmetry, (int)group, (long long)ids[b], (long long)sizes[b],
                  (long long)on_cycle[b], (long long)expected[ids[b]]);
            if (on_cycle[b] > 0)
                blocks_on_cycle++;
            else
                blocks_acyclic++;
        }
        free(colors), free(ids), free(sizes), free(on_cycle), free(expected);
    }
    free(seen);
    free(queue);
    fib_coloring_free(c);
}

static void compare_all(const fib_graph *g, const arc_list *l, const int64_t *group_start,
                        int32_t n_groups, const char *what)
{
    compare(g, l, group_start, n_groups, FIB_SYM_FIBERS, what);
    compare(g, l, group_start, n_groups, FIB_SYM_OPFIBERS, what);
    compare(g, l, group_start, n_groups, FIB_SYM_COVERS, what);
}

/* Adds arcs from group `from` to group `to` (global offsets fo, to_off). */
static void add_arcs(fib_graph *g, arc_list *l, int32_t from, int64_t fo, int32_t to,
                     int64_t to_off, int64_t m, const int64_t *s, const int64_t *d)
{
    CHECK_OK(fib_graph_add_edges(g, from, to, m, s, d, NULL, NULL, FIB_COPY));
    for (int64_t i = 0; i < m; i++)
        push_arc(l, fo + s[i], to_off + d[i]);
}

/* Random arcs from few sources (classes form), self-loops and multi-arcs;
 * some nodes only send (sources) or only receive (sinks). */
static void random_arcs(int64_t n_from, int64_t n_to, int64_t m, bool same, int64_t *s,
                        int64_t *d)
{
    for (int64_t i = 0; i < m; i++) {
        s[i] = rnd(n_from > 3 ? n_from / 3 + 1 : n_from);
        d[i] = rnd(n_to);
        if (same && rnd(10) == 0)
            d[i] = s[i];
        if (i > 0 && rnd(5) == 0) {
            s[i] = s[i - 1];
            d[i] = d[i - 1];
        }
    }
}

static void random_graphs(void)
{
    for (int trial = 0; trial < 80; trial++) {
        bool two = trial % 5 == 0;
        int64_t n = 3 + rnd(40), m = 1 + rnd(3 * n);
        arc_list l = {0};
        fib_graph *g = NULL;
        int32_t a, b;
        CHECK_OK(fib_graph_create(&g));
        CHECK_OK(fib_graph_add_nodes(g, n, &a));
        int64_t *s = malloc((size_t)m * sizeof *s), *d = malloc((size_t)m * sizeof *d);
        random_arcs(n, n, m, true, s, d);
        add_arcs(g, &l, a, 0, a, 0, m, s, d);
        int64_t start[3] = {0, n, n};
        if (two) {
            CHECK_OK(fib_graph_add_nodes(g, n, &b));
            random_arcs(n, n, m, false, s, d);
            add_arcs(g, &l, a, 0, b, n, m, s, d);
            random_arcs(n, n, m / 2 + 1, false, s, d);
            add_arcs(g, &l, b, n, a, 0, m / 2 + 1, s, d);
            start[2] = 2 * n;
        }
        free(s), free(d);
        l.n = two ? 2 * n : n;
        if (trial % 7 == 0) {
            int64_t *labels = malloc((size_t)n * sizeof *labels);
            for (int64_t v = 0; v < n; v++)
                labels[v] = rnd(2);
            CHECK_OK(fib_graph_set_initial_classes(g, a, labels, n));
            free(labels);
        }
        if (trial % 4 == 1)
            CHECK_OK(fib_graph_set_convention(g, FIB_CONVENTION_PUBLISHED));
        if (trial % 4 == 2)
            CHECK_OK(fib_graph_set_convention(g, FIB_CONVENTION_NETWORKFIBERS));
        char what[64];
        snprintf(what, sizeof what, "trial %d (%lld nodes, %lld arcs)", trial,
                 (long long)l.n, (long long)l.m);
        compare_all(g, &l, start, two ? 2 : 1, what);
        fib_graph_free(g);
        free(l.src), free(l.dst);
    }
}

/* One node group of n nodes with the m arcs s -> d, compared. */
static void compare_one_group(int64_t n, int64_t m, const int64_t *s, const int64_t *d,
                              const char *what)
{
    arc_list l = {.n = n};
    fib_graph *g = NULL;
    int32_t a;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_nodes(g, n, &a));
    add_arcs(g, &l, a, 0, a, 0, m, s, d);
    int64_t start[2] = {0, n};
    compare_all(g, &l, start, 1, what);
    fib_graph_free(g);
    free(l.src), free(l.dst);
}

/* A strongly connected core (a random graph of out-degree 3 over a ring)
 * with blocks of sources feeding it and sinks fed by it: the search is
 * restricted to the blocks' surroundings. Sources and sinks point at or
 * hang off the same core node so that they share a class. */
static void sources_and_sinks(void)
{
    for (int trial = 0; trial < 20; trial++) {
        int64_t core = 5 + rnd(60), extra = 2 + rnd(6), n = core + 2 * extra;
        int64_t *s = malloc((size_t)(5 * n) * sizeof *s), *d = malloc((size_t)(5 * n) * sizeof *d);
        int64_t m = 0;
        for (int64_t v = 0; v < core; v++) {
            s[m] = v, d[m++] = (v + 1) % core;
            s[m] = v, d[m++] = rnd(core);
            s[m] = v, d[m++] = rnd(core);
        }
        int64_t fed = rnd(core), feeding = rnd(core);
        for (int64_t i = 0; i < extra; i++) {
            s[m] = core + i, d[m++] = fed;                   /* a source */
            s[m] = feeding, d[m++] = core + extra + i;       /* a sink */
        }
        if (trial % 3 == 0) /* a self-loop on a source: then on a cycle */
            s[m] = core, d[m++] = core;
        char what[64];
        snprintf(what, sizeof what, "sources and sinks %d (%lld nodes)", trial, (long long)n);
        compare_one_group(n, m, s, d, what);
        free(s), free(d);
    }
}

/* Two twins q1, q2 between a long chain that reaches them and a long
 * chain they reach, both listed against the direction in which the
 * search's passes grow them (one node a pass), and, when `closed`, the
 * far ends joined into one cycle: the whole graph is then searched. */
static void long_chains(void)
{
    for (int trial = 0; trial < 8; trial++) {
        int64_t len = 4 + 6 * trial, n = 2 * len + 2;
        bool closed = trial % 2 == 0;
        int64_t *s = malloc((size_t)(2 * n + 4) * sizeof *s);
        int64_t *d = malloc((size_t)(2 * n + 4) * sizeof *d);
        int64_t m = 0, q1 = 2 * len, q2 = 2 * len + 1;
        /* upstream x0 -> x1 -> ... -> x(len-1) -> q1, q2, listed x0 first */
        for (int64_t i = 0; i + 1 < len; i++)
            s[m] = i, d[m++] = i + 1;
        s[m] = len - 1, d[m++] = q1;
        s[m] = len - 1, d[m++] = q2;
        /* downstream q1, q2 -> y0 -> ... -> y(len-1), listed y(len-1) first */
        for (int64_t i = len - 2; i >= 0; i--)
            s[m] = len + i, d[m++] = len + i + 1;
        s[m] = q1, d[m++] = len;
        s[m] = q2, d[m++] = len;
        if (closed)
            s[m] = 2 * len - 1, d[m++] = 0;
        char what[64];
        snprintf(what, sizeof what, "chains of %lld%s", (long long)len,
                 closed ? ", closed" : "");
        compare_one_group(n, m, s, d, what);
        free(s), free(d);
    }
}

int main(void)
{
    random_graphs();
    sources_and_sinks();
    long_chains();
    /* the comparison means something only if both answers occur often */
    CHECK(blocks_on_cycle > 50 && blocks_acyclic > 50, "blocks on a cycle %lld, acyclic %lld",
          (long long)blocks_on_cycle, (long long)blocks_acyclic);
    printf("blocks on a cycle %lld, acyclic %lld\n", (long long)blocks_on_cycle,
           (long long)blocks_acyclic);
    if (check_failures)
        fprintf(stderr, "%d check(s) failed\n", check_failures);
    return check_failures ? 1 : 0;
}
