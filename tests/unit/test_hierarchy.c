/* The symmetry hierarchy of networks: planted twins are automorphism
 * orbits, lifted networks with re-split weights have fibers but no
 * automorphisms, and orbits <= covers <= fibers, opfibers on random and
 * planted networks (dense, conv, sum). */
#include "fibration.h"
#include "planted.h"
#include "testing.h"

#include <stdlib.h>
#include <string.h>

int test_failures;

static int64_t count(const fib_hierarchy *h, int32_t group, int32_t symmetry)
{
    int64_t k = -1;
    CHECK_OK(fib_hierarchy_num_classes(h, group, symmetry, &k));
    return k;
}

static int32_t chain(const fib_hierarchy *h, int32_t group)
{
    int32_t links = -1;
    CHECK_OK(fib_hierarchy_chain(h, group, &links));
    return links;
}

/* input 4 -> hidden 7 (relu) -> output 3. Hidden units 1, 4 and 6 are exact
 * twins; unit 2 copies unit 0's row but not its column (same fiber, its own
 * opfiber), unit 5 copies unit 3's column but not its row (its own fiber,
 * hence its own flavour and opfiber). */
static fib_graph *twin_mlp(double *w1, double *b1, double *w2)
{
    uint64_t seed = 11;
    for (int i = 0; i < 7 * 4; i++)
        w1[i] = test_uniform(&seed, -1, 1);
    for (int i = 0; i < 7; i++)
        b1[i] = test_uniform(&seed, -1, 1);
    for (int i = 0; i < 3 * 7; i++)
        w2[i] = test_uniform(&seed, -1, 1);
    for (int k = 0; k < 4; k++) {
        w1[4 * 4 + k] = w1[6 * 4 + k] = w1[1 * 4 + k];
        w1[2 * 4 + k] = w1[0 * 4 + k];
    }
    b1[4] = b1[6] = b1[1];
    b1[2] = b1[0];
    for (int o = 0; o < 3; o++) {
        w2[o * 7 + 4] = w2[o * 7 + 6] = w2[o * 7 + 1];
        w2[o * 7 + 5] = w2[o * 7 + 3];
    }
    fib_graph *g = NULL;
    int32_t in, h, out;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, 4, &in));
    CHECK_OK(fib_graph_add_dense(g, in, 7, FIB_DTYPE_F64, w1, 4, b1, 0, &h));
    CHECK_OK(fib_graph_set_activation(g, h, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_dense(g, h, 3, FIB_DTYPE_F64, w2, 7, NULL, 0, &out));
    return g;
}

static void planted_twins_dense(void)
{
    double w1[28], b1[7], w2[21];
    fib_graph *g = twin_mlp(w1, b1, w2);
    fib_coloring *c = NULL;
    CHECK_OK(fib_automorphisms(g, NULL, &c));
    int64_t colors[7], expect[7] = {0, 1, 2, 3, 1, 4, 1};
    CHECK_OK(fib_coloring_colors(c, 1, colors, 7));
    CHECK(memcmp(colors, expect, sizeof colors) == 0);
    int64_t k = 0;
    CHECK_OK(fib_coloring_num_classes(c, 0, &k));
    CHECK(k == 4); /* inputs fixed */
    CHECK_OK(fib_coloring_num_classes(c, 2, &k));
    CHECK(k == 3); /* outputs fixed */
    fib_coloring_free(c);

    fib_hierarchy *h = NULL;
    CHECK_OK(fib_hierarchy_create(g, NULL, &h));
    if (h) {
        CHECK(count(h, 1, FIB_SYM_FIBERS) == 4);       /* {0,2} {1,4,6} 3 5 */
        CHECK(count(h, 1, FIB_SYM_OPFIBERS) == 5);     /* 0 2 {1,4,6} 3 5 */
        CHECK(count(h, 1, FIB_SYM_COVERS) == 5);
        CHECK(count(h, 1, FIB_SYM_AUTOMORPHISMS) == 5);
        CHECK(chain(h, -1) == FIB_CHAIN_ALL);
        fib_coloring *a = NULL, *cov = NULL;
        CHECK_OK(fib_hierarchy_coloring(h, FIB_SYM_AUTOMORPHISMS, &a));
        CHECK_OK(fib_hierarchy_coloring(h, FIB_SYM_COVERS, &cov));
        int32_t refines = -1;
        CHECK_OK(fib_coloring_refines(g, a, cov, -1, &refines));
        CHECK(refines == 1);
        CHECK_OK(fib_coloring_refines(g, cov, a, 1, &refines));
        CHECK(refines == 1); /* here orbits and covers coincide */
        fib_coloring_free(a);
        fib_coloring_free(cov);
    }
    fib_hierarchy_free(h);

    /* Within eps: nudge one twin's weight by 1e-9. */
    w1[6 * 4 + 2] += 1e-9;
    fib_graph_free(g);
    int32_t in, hid, out;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, 4, &in));
    CHECK_OK(fib_graph_add_dense(g, in, 7, FIB_DTYPE_F64, w1, 4, b1, 0, &hid));
    CHECK_OK(fib_graph_set_activation(g, hid, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_dense(g, hid, 3, FIB_DTYPE_F64, w2, 7, NULL, 0, &out));
    CHECK_OK(fib_automorphisms(g, NULL, &c));
    CHECK_OK(fib_coloring_num_classes(c, hid, &k));
    CHECK(k == 6); /* exact: unit 6 is no longer a twin */
    fib_coloring_free(c);
    fib_color_options o;
    fib_color_options_init(&o, sizeof o);
    o.tolerance = FIB_TOL_ABS;
    o.eps = 1e-6;
    CHECK_OK(fib_automorphisms(g, &o, &c));
    CHECK_OK(fib_coloring_num_classes(c, hid, &k));
    CHECK(k == 5); /* within eps */
    fib_coloring_free(c);
    fib_graph_free(g);
}

/* A lift with even splits (fib_lift's) gives members identical rows and
 * columns: every planted class is a twin class. Re-split weights keep the
 * fibers but leave no automorphism. */
static void lifted_networks(void)
{
    const int64_t base[4] = {5, 4, 3, 2};
    for (int resplit = 0; resplit < 2; resplit++) {
        for (uint64_t seed = 1; seed <= 5; seed++) {
            planted_mlp p;
            planted_build(&p, seed, 3, base, 4, FIB_DTYPE_F64, 0, FIB_ACT_TANH,
                          resplit);
            fib_graph *g = planted_graph(&p, 0);
            fib_hierarchy *h = NULL;
            CHECK_OK(fib_hierarchy_create(g, NULL, &h));
            if (!h) {
                fib_graph_free(g);
                planted_free(&p);
                continue;
            }
            CHECK(chain(h, -1) == FIB_CHAIN_ALL);
            for (int32_t l = 1; l < 3; l++) {
                int64_t fibers = count(h, l, FIB_SYM_FIBERS);
                int64_t orbits = count(h, l, FIB_SYM_AUTOMORPHISMS);
                CHECK(fibers == base[l]);
                if (resplit) {
                    CHECK(orbits == p.width[l]); /* all distinct */
                    CHECK(fibers < p.width[l] || p.width[l] == base[l]);
                } else {
                    CHECK(orbits == base[l]);
                }
            }
            fib_hierarchy_free(h);
            fib_graph_free(g);
            planted_free(&p);
        }
    }
}

/* Random networks, with and without planted duplicates: the chain holds. */
static void random_chain(void)
{
    uint64_t seed = 99;
    for (int trial = 0; trial < 20; trial++) {
        int64_t n0 = 3 + (int64_t)(test_rand(&seed) % 4);
        int64_t n1 = 4 + (int64_t)(test_rand(&seed) % 6);
        int64_t n2 = 2 + (int64_t)(test_rand(&seed) % 3);
        double *w1 = malloc((size_t)(n1 * n0) * sizeof *w1);
        double *w2 = malloc((size_t)(n2 * n1) * sizeof *w2);
        /* weights from a small alphabet so that coincidences happen */
        for (int64_t i = 0; i < n1 * n0; i++)
            w1[i] = (double)(test_rand(&seed) % 2);
        for (int64_t i = 0; i < n2 * n1; i++)
            w2[i] = (double)(test_rand(&seed) % 2);
        fib_graph *g = NULL;
        int32_t in, h1, out;
        CHECK_OK(fib_graph_create(&g));
        CHECK_OK(fib_graph_add_input(g, n0, &in));
        CHECK_OK(fib_graph_add_dense(g, in, n1, FIB_DTYPE_F64, w1, n0, NULL, 0, &h1));
        CHECK_OK(fib_graph_set_activation(g, h1, trial % 2 ? FIB_ACT_RELU : FIB_ACT_LINEAR, 0));
        CHECK_OK(fib_graph_add_dense(g, h1, n2, FIB_DTYPE_F64, w2, n1, NULL, 0, &out));
        fib_hierarchy *h = NULL;
        CHECK_OK(fib_hierarchy_create(g, NULL, &h));
        if (h) {
            CHECK(chain(h, -1) == FIB_CHAIN_ALL);
            CHECK(count(h, h1, FIB_SYM_AUTOMORPHISMS) >= count(h, h1, FIB_SYM_COVERS));
            /* brute force: twins are units with equal rows and columns */
            int64_t twins_classes = 0;
            for (int64_t i = 0; i < n1; i++) {
                int first = 1;
                for (int64_t j = 0; j < i && first; j++) {
                    int same = 1;
                    for (int64_t k = 0; k < n0; k++)
                        same = same && w1[i * n0 + k] == w1[j * n0 + k];
                    for (int64_t o = 0; o < n2; o++)
                        same = same && w2[o * n1 + i] == w2[o * n1 + j];
                    first = !same;
                }
                twins_classes += first;
            }
            CHECK(count(h, h1, FIB_SYM_AUTOMORPHISMS) == twins_classes);
        }
        fib_hierarchy_free(h);
        fib_graph_free(g);
        free(w1);
        free(w2);
    }
}

/* Conv: output channels 0 and 2 have the same kernels and bias, and the next
 * convolution reads them with the same kernels: they are twins. A residual
 * sum fixes the units it adds (documented limit), and the chain holds. */
static void conv_and_sum(void)
{
    uint64_t seed = 5;
    enum { C0 = 2, C1 = 4, C2 = 3, K = 3 };
    double k1[C1 * C0 * K * K], b1[C1], k2[C2 * C1 * K * K];
    for (int i = 0; i < C1 * C0 * K * K; i++)
        k1[i] = test_uniform(&seed, -1, 1);
    for (int i = 0; i < C1; i++)
        b1[i] = test_uniform(&seed, -1, 1);
    for (int i = 0; i < C2 * C1 * K * K; i++)
        k2[i] = test_uniform(&seed, -1, 1);
    memcpy(k1 + 2 * C0 * K * K, k1, sizeof(double) * C0 * K * K);
    b1[2] = b1[0];
    for (int o = 0; o < C2; o++)
        memcpy(k2 + (o * C1 + 2) * K * K, k2 + (o * C1 + 0) * K * K,
               sizeof(double) * K * K);
    fib_graph *g = NULL;
    int32_t in, c1, c2;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, C0, 6, 6, &in));
    CHECK_OK(fib_graph_add_conv(g, in, C1, K, K, 1, 1, 1, 1, 1, FIB_DTYPE_F64,
                                k1, b1, 0, &c1));
    CHECK_OK(fib_graph_set_activation(g, c1, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_conv(g, c1, C2, K, K, 1, 1, 1, 1, 1, FIB_DTYPE_F64,
                                k2, NULL, 0, &c2));
    fib_hierarchy *h = NULL;
    CHECK_OK(fib_hierarchy_create(g, NULL, &h));
    if (h) {
        CHECK(count(h, c1, FIB_SYM_AUTOMORPHISMS) == 3);
        CHECK(count(h, c1, FIB_SYM_COVERS) == 3);
        CHECK(chain(h, -1) == FIB_CHAIN_ALL);
    }
    fib_hierarchy_free(h);
    fib_graph_free(g);

    /* Residual: x (4) -> dense a (4, twins 0 and 1) -> sum with x -> out. */
    double wa[16] = {1, 2, 3, 4, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3};
    double wo[8] = {1, 1, 2, 3, 4, 4, 5, 6};
    int32_t x, a, s, out;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, 4, &x));
    CHECK_OK(fib_graph_add_dense(g, x, 4, FIB_DTYPE_F64, wa, 4, NULL, 0, &a));
    CHECK_OK(fib_graph_set_activation(g, a, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_sum(g, a, x, &s));
    CHECK_OK(fib_graph_add_dense(g, s, 2, FIB_DTYPE_F64, wo, 4, NULL, 0, &out));
    CHECK_OK(fib_hierarchy_create(g, NULL, &h));
    if (h) {
        /* a's units 0, 1 have equal rows (same fiber), but they feed
         * distinct sum units: not twins */
        CHECK(count(h, a, FIB_SYM_FIBERS) == 3);
        CHECK(count(h, a, FIB_SYM_AUTOMORPHISMS) == 4);
        CHECK(count(h, s, FIB_SYM_AUTOMORPHISMS) == 4);
        CHECK(chain(h, -1) == FIB_CHAIN_ALL);
    }
    fib_hierarchy_free(h);
    fib_graph_free(g);
}

static void errors(void)
{
    fib_hierarchy *h = NULL;
    CHECK(fib_hierarchy_create(NULL, NULL, &h) == FIB_E_NULL);
    fib_hierarchy_free(NULL);
    double w[4] = {1, 1, 1, 1};
    fib_graph *g = NULL;
    int32_t in, out;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, 2, &in));
    CHECK_OK(fib_graph_add_dense(g, in, 2, FIB_DTYPE_F64, w, 2, NULL, 0, &out));
    fib_color_options o;
    fib_color_options_init(&o, sizeof o);
    o.eps = -1;
    CHECK(fib_hierarchy_create(g, &o, &h) == FIB_E_INVALID);
    CHECK_OK(fib_hierarchy_create(g, NULL, &h));
    int64_t k;
    int32_t links;
    CHECK(fib_hierarchy_num_classes(h, 5, FIB_SYM_FIBERS, &k) == FIB_E_RANGE);
    CHECK(fib_hierarchy_num_classes(h, 0, 9, &k) == FIB_E_INVALID);
    CHECK(fib_hierarchy_chain(h, 7, &links) == FIB_E_RANGE);
    fib_coloring *c = NULL;
    CHECK(fib_hierarchy_coloring(h, 0, &c) == FIB_E_INVALID);
    int64_t perm[2] = {1, 0};
    int32_t is;
    CHECK(fib_graph_is_automorphism(g, 1, perm, 2, &is) == FIB_E_UNSUPPORTED);
    CHECK(fib_graph_is_automorphism(g, -1, perm, 2, &is) == FIB_E_UNSUPPORTED);
    fib_hierarchy_free(h);
    fib_graph_free(g);
}

/* Orbits are balanced both ways: merging two hidden units that share their
 * outgoing columns (opfiber-balanced, linear) but not their rows must not
 * pass the balance check of an automorphism colouring. */
static void orbit_balance_checks_fibers(void)
{
    double w1[4] = {1, 0, 0, 1}, w2[2] = {1, 1};
    fib_graph *g = NULL;
    int32_t in, h, out;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, 2, &in));
    CHECK_OK(fib_graph_add_dense(g, in, 2, FIB_DTYPE_F64, w1, 2, NULL, 0, &h));
    CHECK_OK(fib_graph_add_dense(g, h, 1, FIB_DTYPE_F64, w2, 2, NULL, 0, &out));
    fib_coloring *c = NULL;
    CHECK_OK(fib_automorphisms(g, NULL, &c));
    int32_t balanced = -1;
    CHECK_OK(fib_coloring_is_balanced(g, c, 0.0, &balanced));
    CHECK(balanced == 1);
    int64_t one_class[2] = {0, 0};
    CHECK_OK(fib_coloring_set_group(c, h, one_class, 2));
    CHECK_OK(fib_coloring_is_balanced(g, c, 0.0, &balanced));
    CHECK(balanced == 0);
    fib_coloring_free(c);
    fib_graph_free(g);
}

int main(void)
{
    RUN(planted_twins_dense);
    RUN(lifted_networks);
    RUN(random_chain);
    RUN(conv_and_sum);
    RUN(errors);
    RUN(orbit_balance_checks_fibers);
    return test_failures ? 1 : 0;
}
