/* The public API of general directed graphs: node groups, arc sets, initial
 * classes, conventions, fib_color (fibers, opfibers, covers), the balance
 * check, the quotient, building blocks and errors.
 * Usage: test_graph_api [DATA_DIR] */
#include "fibration.h"
#include "graphs/edgelist.h"

#include "graph_check.h"

#include <string.h>

static int64_t classes(const fib_graph *g, int32_t symmetry, int32_t group,
                       fib_coloring **keep)
{
    fib_color_options o;
    fib_color_options_init(&o, sizeof o);
    o.symmetry = symmetry;
    fib_coloring *c = NULL;
    int64_t k = -1;
    CHECK_OK(fib_color(g, &o, &c));
    if (c)
        CHECK_OK(fib_coloring_num_classes(c, group, &k));
    if (keep)
        *keep = c;
    else
        fib_coloring_free(c);
    return k;
}

static void ecoli(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/test_Ecoli.csv", dir);
    fib_edgelist e;
    CHECK_OK(fib_edgelist_read(path, 0, &e));
    fib_graph *g = NULL;
    int32_t a;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_nodes(g, e.n_nodes, &a));
    CHECK_OK(fib_graph_add_edges(g, a, a, e.n_arcs, e.src, e.dst, NULL,
                                 e.type, 0));
    CHECK(classes(g, FIB_SYM_FIBERS, a, NULL) == 414, "E. coli pure");
    fib_coloring *c = NULL;
    int64_t k = classes(g, FIB_SYM_OPFIBERS, a, &c);
    int32_t ok = 0;
    int64_t kc = classes(g, FIB_SYM_COVERS, a, NULL);
    CHECK(k > 0 && kc >= k, "covers %lld refine opfibers %lld",
          (long long)kc, (long long)k);
    CHECK_OK(fib_coloring_is_balanced(g, c, 0, &ok));
    CHECK(ok == 1, "pure opfibers balanced: %s", fib_last_error());
    fib_coloring_free(c);
    CHECK_OK(fib_graph_set_convention(g, FIB_CONVENTION_PUBLISHED));
    CHECK(classes(g, FIB_SYM_FIBERS, a, &c) == 555, "E. coli published");
    CHECK_OK(fib_coloring_is_balanced(g, c, 0, &ok));
    CHECK(ok == 1, "published colouring balanced: %s", fib_last_error());
    int64_t nb = 0;
    CHECK_OK(fib_coloring_fiber_blocks(g, c, a, 0, NULL, NULL, NULL, &nb));
    CHECK(nb == 92, "92 building blocks, got %lld", (long long)nb);
    int64_t small[4];
    CHECK(fib_coloring_fiber_blocks(g, c, a, 4, small, NULL, NULL, &nb) ==
              FIB_E_BUFFER, "blocks buffer");
    fib_coloring_free(c);
    CHECK_OK(fib_graph_set_convention(g, FIB_CONVENTION_PURE));
    CHECK_OK(fib_color(g, NULL, &c));
    CHECK_OK(fib_coloring_is_balanced(g, c, 0, &ok));
    CHECK(ok == 1, "pure colouring balanced");
    /* a non-balanced colouring is reported */
    int64_t *one = calloc((size_t)e.n_nodes, sizeof *one);
    CHECK_OK(fib_coloring_set_group(c, a, one, e.n_nodes));
    CHECK_OK(fib_coloring_is_balanced(g, c, 0, &ok));
    CHECK(ok == 0, "one class is not balanced");
    free(one);
    fib_coloring_free(c);
    fib_graph_free(g);
    fib_edgelist_clear(&e);
}

/* Two node groups A (4 nodes) -> B (4 nodes), weighted, typed, with a cycle
 * back from B to A; initial classes on B. */
static void two_groups(void)
{
    fib_graph *g = NULL;
    int32_t a, b;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_nodes(g, 4, &a));
    CHECK_OK(fib_graph_add_nodes(g, 4, &b));
    /* A_i -> B_i weight 2 type 1; B_i -> A_((i+1)%4) weight 1 type 0 */
    int64_t s[4] = {0, 1, 2, 3}, d[4] = {0, 1, 2, 3}, d2[4] = {1, 2, 3, 0};
    double w2[4] = {2, 2, 2, 2}, w1[4] = {1, 1, 1, 1};
    int32_t t1[4] = {1, 1, 1, 1};
    CHECK_OK(fib_graph_add_edges(g, a, b, 4, s, d, w2, t1, FIB_COPY));
    CHECK_OK(fib_graph_add_edges(g, b, a, 4, s, d2, w1, NULL, 0));
    CHECK(classes(g, FIB_SYM_FIBERS, a, NULL) == 1, "ring A");
    CHECK(classes(g, FIB_SYM_FIBERS, b, NULL) == 1, "ring B");
    int64_t labels[4] = {5, 9, 5, 9};
    CHECK_OK(fib_graph_set_initial_classes(g, b, labels, 4));
    fib_coloring *c = NULL;
    /* B0,B2 vs B1,B3 splits A into A1,A3 vs A0,A2, which is stable */
    CHECK(classes(g, FIB_SYM_FIBERS, b, &c) == 2, "initial classes on B");
    int64_t ka = 0;
    CHECK_OK(fib_coloring_num_classes(c, a, &ka));
    CHECK(ka == 2, "A follows B: %lld", (long long)ka);
    fib_quotient *q = NULL;
    CHECK_OK(fib_quotient_create(g, c, &q));
    int64_t n = 0;
    CHECK_OK(fib_quotient_num_arcs(q, &n));
    CHECK(n == 4, "quotient: 4 arcs, got %lld", (long long)n);
    int32_t sg[8], dg[8], ty[8];
    int64_t sc[8], dc[8], mult[8];
    double wt[8];
    CHECK(fib_quotient_arcs(q, 2, sg, sc, dg, dc, ty, wt, mult) ==
              FIB_E_BUFFER, "quotient buffer");
    CHECK_OK(fib_quotient_arcs(q, 8, sg, sc, dg, dc, ty, wt, mult));
    for (int64_t i = 0; i < n; i++) {
        CHECK(sg[i] != dg[i], "arcs go between the groups");
        CHECK(mult[i] == 1, "multiplicity 1");
        CHECK(wt[i] == (sg[i] == a ? 2.0 : 1.0), "weights");
        CHECK(ty[i] == (sg[i] == a ? 1 : 0), "types");
    }
    fib_quotient_free(q);
    fib_quotient_free(NULL);
    fib_coloring_free(c);
    /* errors */
    CHECK(fib_graph_add_edges(g, a, b, 1, s, d, NULL, NULL, 0) ==
              FIB_E_INVALID, "mixing weighted and unweighted");
    int64_t bad[1] = {4};
    CHECK(fib_graph_add_edges(g, a, b, 1, bad, d, w1, NULL, 0) == FIB_E_RANGE,
          "node out of range");
    CHECK(strstr(fib_last_error(), "arc 0") != NULL, "message names the arc");
    double nan_w[1] = {0.0 / 0.0};
    CHECK(fib_graph_add_edges(g, a, b, 1, s, d, nan_w, NULL, 0) ==
              FIB_E_NONFINITE, "nan weight");
    CHECK(fib_graph_add_edges(g, a, b, 1, s, d, w1, NULL, 8) == FIB_E_INVALID,
          "flags");
    CHECK(fib_graph_add_edges(g, a, 7, 1, s, d, w1, NULL, 0) == FIB_E_RANGE,
          "group");
    CHECK(fib_graph_set_convention(g, 5) == FIB_E_INVALID, "convention");
    /* the linkage modes are for network groups (fib_color's manual) */
    fib_color_options ward;
    fib_color_options_init(&ward, sizeof ward);
    ward.tolerance = FIB_TOL_WARD;
    ward.eps = 0.5;
    fib_coloring *none = NULL;
    CHECK(fib_color(g, &ward, &none) == FIB_E_INVALID && !none, "ward on node groups");
    CHECK(strstr(fib_last_error(), "FIB_TOL_EXACT or FIB_TOL_ABS only") != NULL,
          "the message says which tolerances node groups take");
    CHECK(fib_graph_set_initial_classes(g, a, labels, 3) == FIB_E_SHAPE,
          "labels");
    CHECK(fib_graph_add_nodes(g, 0, &a) == FIB_E_SHAPE, "zero nodes");
    int32_t in;
    CHECK_OK(fib_graph_add_input(g, 3, &in));
    CHECK(fib_graph_add_edges(g, in, a, 1, s, d, w1, NULL, 0) == FIB_E_RANGE,
          "an input group is not a node group");
    fib_graph_free(g);
}

/* The manual: node groups take no part in fib_graph_forward, fib_compress
 * or fib_lift (FIB_E_UNSUPPORTED). */
static void nodes_have_no_forward_pass(void)
{
    fib_graph *g = NULL;
    int32_t a, in, dense;
    double w[2] = {1, 1}, x[2] = {1, 2}, y[8] = {0};
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_nodes(g, 3, &a));
    CHECK(fib_graph_forward(g, 1, FIB_DTYPE_F64, x, y) == FIB_E_UNSUPPORTED,
          "forward over node groups only");
    CHECK_OK(fib_graph_add_input(g, 2, &in));
    CHECK_OK(fib_graph_add_dense(g, in, 1, FIB_DTYPE_F64, w, 2, NULL, 0, &dense));
    CHECK(fib_graph_forward(g, 1, FIB_DTYPE_F64, x, y) == FIB_E_UNSUPPORTED,
          "forward of a graph with a node group");
    CHECK(fib_graph_forward_group(g, 1, FIB_DTYPE_F64, x, dense, y) == FIB_E_UNSUPPORTED,
          "forward_group of a graph with a node group");
    fib_graph_free(g);
}

/* The balance check of an opfiber colouring of a node group follows its
 * out-arcs: node 0 sends two arcs into the class {0, 1, 2}, nodes 1 and 2
 * none, so one class is not balanced; the computed opfibers are. */
static void opfiber_balance_of_nodes(void)
{
    fib_graph *g = NULL;
    int32_t a;
    int64_t s[2] = {0, 0}, d[2] = {1, 2};
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_nodes(g, 3, &a));
    CHECK_OK(fib_graph_add_edges(g, a, a, 2, s, d, NULL, NULL, 0));
    fib_coloring *c = NULL;
    CHECK(classes(g, FIB_SYM_OPFIBERS, a, &c) == 2, "opfibers {0}, {1, 2}");
    int32_t ok = -1;
    CHECK_OK(fib_coloring_is_balanced(g, c, 0, &ok));
    CHECK(ok == 1, "computed opfibers are balanced: %s", fib_last_error());
    int64_t one[3] = {0, 0, 0};
    CHECK_OK(fib_coloring_set_group(c, a, one, 3));
    CHECK_OK(fib_coloring_is_balanced(g, c, 0, &ok));
    CHECK(ok == 0, "one opfiber class is not balanced");
    fib_coloring_free(c);
    fib_graph_free(g);
}

int main(int argc, char **argv)
{
    two_groups();
    nodes_have_no_forward_pass();
    opfiber_balance_of_nodes();
    if (argc > 1)
        ecoli(argv[1]);
    if (check_failures)
        fprintf(stderr, "%d check(s) failed\n", check_failures);
    return check_failures ? 1 : 0;
}
