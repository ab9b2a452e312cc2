/* Automorphisms of general directed graphs: the exact check of a
 * permutation and the orbit partition (individualisation and refinement)
 * on graphs whose automorphism groups are known. */
#include "fibration.h"
#include "graph_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rand_next(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* An arc list under construction. */
typedef struct arcs {
    int64_t m, cap;
    int64_t *src, *dst;
    double *w;
} arcs;

static void arc(arcs *a, int64_t u, int64_t v, double w)
{
    if (a->m == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 64;
        a->src = realloc(a->src, (size_t)a->cap * sizeof *a->src);
        a->dst = realloc(a->dst, (size_t)a->cap * sizeof *a->dst);
        a->w = realloc(a->w, (size_t)a->cap * sizeof *a->w);
    }
    a->src[a->m] = u;
    a->dst[a->m] = v;
    a->w[a->m] = w;
    a->m++;
}

static void edge(arcs *a, int64_t u, int64_t v)
{
    arc(a, u, v, 1.0);
    arc(a, v, u, 1.0);
}

static void arcs_free(arcs *a)
{
    free(a->src);
    free(a->dst);
    free(a->w);
}

/* A graph of one node group from an arc list (weighted or not). */
static fib_graph *graph_of(int64_t n, const arcs *a, int weighted)
{
    fib_graph *g = NULL;
    int32_t id;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_nodes(g, n, &id));
    CHECK_OK(fib_graph_add_edges(g, id, id, a->m, a->src, a->dst,
                                 weighted ? a->w : NULL, NULL, FIB_COPY));
    return g;
}

/* Orbits of group 0; returns their count, colours in orbit (may be NULL). */
static int64_t orbits(const fib_graph *g, int64_t *orbit, int64_t n)
{
    fib_coloring *c = NULL;
    int64_t k = -1;
    CHECK_OK(fib_automorphisms(g, NULL, &c));
    if (c) {
        int32_t sym = 0;
        CHECK_OK(fib_coloring_symmetry(c, &sym));
        CHECK(sym == FIB_SYM_AUTOMORPHISMS, "symmetry %d", (int)sym);
        CHECK_OK(fib_coloring_num_classes(c, 0, &k));
        if (orbit)
            CHECK_OK(fib_coloring_colors(c, 0, orbit, n));
    }
    fib_coloring_free(c);
    return k;
}

static int32_t is_aut(const fib_graph *g, const int64_t *perm, int64_t n)
{
    int32_t is = -1;
    CHECK_OK(fib_graph_is_automorphism(g, 0, perm, n, &is));
    return is;
}

static void test_cycles(void)
{
    for (int undirected = 0; undirected < 2; undirected++) {
        for (int64_t n = 3; n <= 12; n += 3) {
            arcs a = {0};
            for (int64_t i = 0; i < n; i++) {
                if (undirected)
                    edge(&a, i, (i + 1) % n);
                else
                    arc(&a, i, (i + 1) % n, 1.0);
            }
            fib_graph *g = graph_of(n, &a, 0);
            CHECK(orbits(g, NULL, n) == 1, "cycle %lld one orbit", (long long)n);
            int64_t perm[12];
            for (int64_t i = 0; i < n; i++)
                perm[i] = (i + 1) % n; /* rotation */
            CHECK(is_aut(g, perm, n) == 1, "rotation of C%lld", (long long)n);
            for (int64_t i = 0; i < n; i++)
                perm[i] = (n - i) % n; /* reflection */
            CHECK(is_aut(g, perm, n) == undirected,
                  "reflection of C%lld (undirected %d)", (long long)n, undirected);
            fib_graph_free(g);
            /* one heavier arc 0 -> 1 fixes 0 and 1: no symmetry left */
            a.w[0] = 2.0;
            g = graph_of(n, &a, 1);
            int64_t got = orbits(g, NULL, n);
            CHECK(got == n, "weighted C%lld (undirected %d): %lld orbits",
                  (long long)n, undirected, (long long)got);
            fib_graph_free(g);
            arcs_free(&a);
        }
    }
}

static void test_bipartite(void)
{
    int64_t sizes[][2] = {{2, 3}, {3, 3}, {1, 5}, {4, 6}};
    for (int k = 0; k < 4; k++) {
        int64_t p = sizes[k][0], q = sizes[k][1], n = p + q;
        arcs a = {0};
        for (int64_t i = 0; i < p; i++)
            for (int64_t j = 0; j < q; j++)
                edge(&a, i, p + j);
        fib_graph *g = graph_of(n, &a, 0);
        int64_t orbit[10];
        int64_t got = orbits(g, orbit, n);
        CHECK(got == (p == q ? 1 : 2), "K%lld,%lld: %lld orbits", (long long)p,
              (long long)q, (long long)got);
        for (int64_t i = 1; i < n; i++)
            if (p != q)
                CHECK((orbit[i] == orbit[0]) == (i < p), "K%lld,%lld side",
                      (long long)p, (long long)q);
        /* directed K_{p,q} (all arcs one way): the sides never mix */
        arcs d = {0};
        for (int64_t i = 0; i < p; i++)
            for (int64_t j = 0; j < q; j++)
                arc(&d, i, p + j, 1.0);
        fib_graph *gd = graph_of(n, &d, 0);
        CHECK(orbits(gd, NULL, n) == 2, "directed K%lld,%lld", (long long)p,
              (long long)q);
        fib_graph_free(gd);
        arcs_free(&d);
        fib_graph_free(g);
        arcs_free(&a);
    }
}

static void petersen_arcs(arcs *a)
{
    for (int64_t i = 0; i < 5; i++) {
        edge(a, i, (i + 1) % 5);          /* outer 5-cycle */
        edge(a, i, 5 + i);                /* spokes */
        edge(a, 5 + i, 5 + (i + 2) % 5);  /* inner pentagram */
    }
}

static void test_petersen(void)
{
    arcs a = {0};
    petersen_arcs(&a);
    fib_graph *g = graph_of(10, &a, 0);
    CHECK(orbits(g, NULL, 10) == 1, "Petersen is vertex-transitive");
    /* swapping outer and inner (i <-> 5 + 2i mod 5 style) is an automorphism:
     * the map i -> 5 + (2i mod 5), 5 + i -> (2i mod 5)... check rotation */
    int64_t rot[10];
    for (int64_t i = 0; i < 5; i++) {
        rot[i] = (i + 1) % 5;
        rot[5 + i] = 5 + (i + 1) % 5;
    }
    CHECK(is_aut(g, rot, 10) == 1, "Petersen rotation");
    /* random permutations are (almost surely) not automorphisms */
    uint64_t seed = 42;
    int rejected = 0;
    for (int t = 0; t < 20; t++) {
        int64_t perm[10];
        for (int64_t i = 0; i < 10; i++)
            perm[i] = i;
        for (int64_t i = 9; i > 0; i--) {
            int64_t j = (int64_t)(rand_next(&seed) % (uint64_t)(i + 1));
            int64_t tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
        }
        rejected += is_aut(g, perm, 10) == 0;
    }
    /* |Aut| = 120 of 10! = 3628800 permutations */
    CHECK(rejected == 20, "random permutations rejected: %d of 20", rejected);
    /* not a permutation */
    int64_t bad[10] = {0, 0, 2, 3, 4, 5, 6, 7, 8, 9};
    CHECK(is_aut(g, bad, 10) == 0, "repeated image");
    int32_t is;
    CHECK(fib_graph_is_automorphism(g, 0, rot, 9, &is) == FIB_E_SHAPE, "length");
    CHECK(fib_graph_is_automorphism(g, 3, rot, 10, &is) == FIB_E_RANGE, "group");
    CHECK(fib_graph_is_automorphism(g, 0, NULL, 10, &is) == FIB_E_NULL, "NULL");
    fib_graph_free(g);
    arcs_free(&a);
}

static void test_path(void)
{
    int64_t n = 9;
    arcs a = {0};
    for (int64_t i = 0; i + 1 < n; i++)
        edge(&a, i, i + 1);
    fib_graph *g = graph_of(n, &a, 0);
    int64_t orbit[9];
    CHECK(orbits(g, orbit, n) == (n + 1) / 2, "path orbits");
    for (int64_t i = 0; i < n; i++)
        CHECK(orbit[i] == orbit[n - 1 - i], "reversal pairs %lld", (long long)i);
    int64_t rev[9], shift[9];
    for (int64_t i = 0; i < n; i++) {
        rev[i] = n - 1 - i;
        shift[i] = (i + 1) % n;
    }
    CHECK(is_aut(g, rev, n) == 1, "reversal");
    CHECK(is_aut(g, shift, n) == 0, "shift");
    fib_graph_free(g);
    arcs_free(&a);
    /* a directed path has no symmetry */
    arcs d = {0};
    for (int64_t i = 0; i + 1 < n; i++)
        arc(&d, i, i + 1, 1.0);
    g = graph_of(n, &d, 0);
    CHECK(orbits(g, NULL, n) == n, "directed path");
    fib_graph_free(g);
    arcs_free(&d);
}

/* Edge types: a 4-cycle with alternating types keeps only even rotations
 * and the reflections preserving types. */
static void test_types(void)
{
    int64_t src[8], dst[8];
    int32_t type[8];
    for (int64_t i = 0; i < 4; i++) {
        src[2 * i] = i;
        dst[2 * i] = (i + 1) % 4;
        src[2 * i + 1] = (i + 1) % 4;
        dst[2 * i + 1] = i;
        type[2 * i] = type[2 * i + 1] = (int32_t)(i % 2);
    }
    fib_graph *g = NULL;
    int32_t id;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_nodes(g, 4, &id));
    CHECK_OK(fib_graph_add_edges(g, id, id, 8, src, dst, NULL, type, FIB_COPY));
    int64_t rot1[4] = {1, 2, 3, 0}, rot2[4] = {2, 3, 0, 1}, refl[4] = {1, 0, 3, 2};
    CHECK(is_aut(g, rot1, 4) == 0, "odd rotation swaps types");
    CHECK(is_aut(g, rot2, 4) == 1, "even rotation");
    CHECK(is_aut(g, refl, 4) == 1, "reflection across a type-0 edge");
    CHECK(orbits(g, NULL, 4) == 1, "typed 4-cycle is still transitive");
    fib_graph_free(g);
}

/* Two node groups: a permutation must keep each group; orbits never span. */
static void test_two_groups(void)
{
    fib_graph *g = NULL;
    int32_t a, b;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_nodes(g, 3, &a));
    CHECK_OK(fib_graph_add_nodes(g, 3, &b));
    int64_t s[3] = {0, 1, 2}, d[3] = {0, 1, 2};
    CHECK_OK(fib_graph_add_edges(g, a, b, 3, s, d, NULL, NULL, FIB_COPY));
    fib_coloring *c = NULL;
    CHECK_OK(fib_automorphisms(g, NULL, &c));
    int64_t k = 0;
    CHECK_OK(fib_coloring_num_classes(c, a, &k));
    CHECK(k == 1, "group a: one orbit, got %lld", (long long)k);
    CHECK_OK(fib_coloring_num_classes(c, b, &k));
    CHECK(k == 1, "group b: one orbit, got %lld", (long long)k);
    fib_coloring_free(c);
    int64_t all[6] = {1, 2, 0, 4, 5, 3}, half[6] = {1, 2, 0, 3, 4, 5};
    int64_t cross[6] = {3, 4, 5, 0, 1, 2};
    int32_t is = -1;
    CHECK_OK(fib_graph_is_automorphism(g, -1, all, 6, &is));
    CHECK(is == 1, "both groups rotated");
    CHECK_OK(fib_graph_is_automorphism(g, -1, half, 6, &is));
    CHECK(is == 0, "only a rotated");
    CHECK_OK(fib_graph_is_automorphism(g, -1, cross, 6, &is));
    CHECK(is == 0, "groups exchanged");
    fib_graph_free(g);
}

/* Random graphs: every orbit lies inside a cover; orbits found are real
 * (a random relabelling of the graph has the same orbit sizes). */
static void test_random_and_large(void)
{
    uint64_t seed = 7;
    int64_t n = 3000;
    arcs a = {0};
    for (int64_t i = 0; i < 3 * n; i++)
        arc(&a, (int64_t)(rand_next(&seed) % (uint64_t)n),
            (int64_t)(rand_next(&seed) % (uint64_t)n), 1.0);
    fib_graph *g = graph_of(n, &a, 0);
    clock_t t0 = clock();
    fib_hierarchy *h = NULL;
    CHECK_OK(fib_hierarchy_create(g, NULL, &h));
    int32_t links = 0;
    if (h)
        CHECK_OK(fib_hierarchy_chain(h, -1, &links));
    CHECK(links == FIB_CHAIN_ALL, "random graph chain %d", (int)links);
    int64_t ko = 0, kc = 0;
    if (h) {
        CHECK_OK(fib_hierarchy_num_classes(h, 0, FIB_SYM_AUTOMORPHISMS, &ko));
        CHECK_OK(fib_hierarchy_num_classes(h, 0, FIB_SYM_COVERS, &kc));
    }
    CHECK(ko >= kc && ko <= n, "orbits %lld covers %lld", (long long)ko,
          (long long)kc);
    fib_hierarchy_free(h);
    fib_graph_free(g);
    arcs_free(&a);
    /* large symmetric graphs must finish in seconds: an undirected cycle, a
     * 50 x 60 torus grid and an empty graph of 3000 nodes */
    arcs c = {0};
    for (int64_t i = 0; i < n; i++)
        edge(&c, i, (i + 1) % n);
    g = graph_of(n, &c, 0);
    CHECK(orbits(g, NULL, n) == 1, "C3000");
    fib_graph_free(g);
    arcs_free(&c);
    arcs t = {0};
    for (int64_t r = 0; r < 50; r++)
        for (int64_t q = 0; q < 60; q++) {
            edge(&t, r * 60 + q, r * 60 + (q + 1) % 60);
            edge(&t, r * 60 + q, ((r + 1) % 50) * 60 + q);
        }
    g = graph_of(3000, &t, 0);
    CHECK(orbits(g, NULL, 3000) == 1, "torus");
    fib_graph_free(g);
    arcs_free(&t);
    arcs p = {0};
    for (int64_t i = 0; i + 1 < n; i++)
        edge(&p, i, i + 1);
    g = graph_of(n, &p, 0);
    CHECK(orbits(g, NULL, n) == n / 2, "P3000");
    fib_graph_free(g);
    arcs_free(&p);
    double seconds = (double)(clock() - t0) / CLOCKS_PER_SEC;
    printf("large graphs (3000 nodes, 4 kinds): %.2f s\n", seconds);
    CHECK(seconds < 20.0, "took %.2f s", seconds);
}


/* Twins and big groups: a star of 2000 leaves, K_{40,40}, an empty graph
 * of 3000 nodes and a relabelled Petersen graph. */
static void test_twins(void)
{
    int64_t n = 2001;
    arcs a = {0};
    for (int64_t i = 1; i < n; i++)
        arc(&a, 0, i, 1.0);
    fib_graph *g = graph_of(n, &a, 0);
    CHECK(orbits(g, NULL, n) == 2, "star");
    fib_graph_free(g);
    arcs_free(&a);
    arcs k = {0};
    for (int64_t i = 0; i < 40; i++)
        for (int64_t j = 0; j < 40; j++)
            edge(&k, i, 40 + j);
    g = graph_of(80, &k, 0);
    CHECK(orbits(g, NULL, 80) == 1, "K40,40");
    fib_graph_free(g);
    arcs_free(&k);
    fib_graph *e = NULL;
    int32_t id;
    CHECK_OK(fib_graph_create(&e));
    CHECK_OK(fib_graph_add_nodes(e, 3000, &id));
    CHECK(orbits(e, NULL, 3000) == 1, "empty graph");
    fib_graph_free(e);
    arcs p = {0}, q = {0};
    petersen_arcs(&p);
    int64_t relabel[10];
    for (int64_t i = 0; i < 10; i++)
        relabel[i] = (7 * i + 3) % 10;
    for (int64_t i = 0; i < p.m; i++)
        arc(&q, relabel[p.src[i]], relabel[p.dst[i]], 1.0);
    g = graph_of(10, &q, 0);
    CHECK(orbits(g, NULL, 10) == 1, "relabelled Petersen");
    fib_graph_free(g);
    arcs_free(&p);
    arcs_free(&q);
}

static void test_limits(void)
{
    fib_graph *g = NULL;
    int32_t id;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_nodes(g, FIB_AUTOMORPHISM_MAX_NODES + 1, &id));
    fib_coloring *c = NULL;
    CHECK(fib_automorphisms(g, NULL, &c) == FIB_E_OVERFLOW, "size limit");
    CHECK(c == NULL, "no colouring on failure");
    CHECK(fib_automorphisms(NULL, NULL, &c) == FIB_E_NULL, "NULL graph");
    fib_graph_free(g);
}

int main(void)
{
    test_cycles();
    test_bipartite();
    test_petersen();
    test_path();
    test_types();
    test_two_groups();
    test_random_and_large();
    test_twins();
    test_limits();
    if (check_failures)
        fprintf(stderr, "%d failures\n", check_failures);
    else
        printf("all automorphism graph tests passed\n");
    return check_failures ? 1 : 0;
}
