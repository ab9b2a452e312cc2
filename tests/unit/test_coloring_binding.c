/* A colouring belongs to the graph it was made for, as that graph was:
 * every call taking a graph and a colouring refuses (FIB_E_MISMATCH) a
 * colouring of another graph, even one of the same shape, and one made
 * before the graph was changed. A colouring of graph A used on a graph B of
 * A's shape used to give a base of A's weights (the colouring's kept class
 * sums) and "balanced". */
#include "checks.h"
#include "planted.h"
#include "testing.h"

#include <stdlib.h>
#include <string.h>

int test_failures;

/* A graph of p's shape and symmetry whose first block's weights are
 * `scale` times p's (so it computes something else). */
static fib_graph *scaled_copy(const planted_mlp *p, double scale)
{
    fib_graph *g = NULL;
    int32_t id = -1;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, p->width[0], &id));
    for (int l = 0; l < p->n_layers; l++) {
        int64_t n_in = p->width[l], n_out = p->width[l + 1];
        double *w = malloc((size_t)(n_in * n_out) * sizeof *w);
        double *b = malloc((size_t)n_out * sizeof *b);
        fib_graph *from = planted_graph(p, 0);
        CHECK_OK(fib_graph_read_dense(from, l + 1, FIB_DTYPE_F64, w, n_in, b));
        fib_graph_free(from);
        for (int64_t x = 0; l == 0 && x < n_in * n_out; x++)
            w[x] *= scale;
        CHECK_OK(fib_graph_add_dense(g, id, n_out, FIB_DTYPE_F64, w, n_in, b, FIB_COPY,
                                     &id));
        CHECK_OK(fib_graph_set_activation(g, id, p->activation[l], 0.01));
        free(w);
        free(b);
    }
    return g;
}

/* A colouring made for `g` holding the classes of `c` (same shape). */
static fib_coloring *classes_copied_to(const fib_graph *g, const fib_coloring *c)
{
    int32_t n_groups = 0, symmetry = 0;
    fib_coloring *copy = NULL;
    CHECK_OK(fib_graph_num_groups(g, &n_groups));
    CHECK_OK(fib_coloring_symmetry(c, &symmetry));
    CHECK_OK(fib_coloring_create(g, symmetry, &copy));
    for (int32_t i = 0; i < n_groups && copy; i++) {
        int64_t n = test_width(g, i);
        int64_t *colors = malloc((size_t)n * sizeof *colors);
        CHECK_OK(fib_coloring_colors(c, i, colors, n));
        CHECK_OK(fib_coloring_set_group(copy, i, colors, n));
        free(colors);
    }
    return copy;
}

static void colouring_of_another_graph_of_the_same_shape_is_refused(void)
{
    planted_mlp p;
    const int64_t base[] = {5, 4, 3, 2};
    planted_build(&p, 19, 3, base, 4, FIB_DTYPE_F64, 0, FIB_ACT_RELU, 0);
    fib_graph *a = planted_graph(&p, 0);
    fib_graph *b = scaled_copy(&p, 2.0);
    fib_coloring *of_a = test_color(a, FIB_SYM_FIBERS);
    fib_coloring *covers_of_a = test_color(a, FIB_SYM_COVERS);
    /* B computes something else than A, so a base of A's weights is wrong */
    CHECK(test_output_difference(a, b, 3, 8, 1.0) > 0.1);

    fib_base *base_out = NULL;
    expect(fib_compress(b, of_a, &base_out), FIB_E_MISMATCH, "another graph",
           "compress B with A's colouring");
    CHECK(base_out == NULL);
    int32_t flag = -1;
    expect(fib_coloring_is_balanced(b, of_a, 0.0, &flag), FIB_E_MISMATCH, "another graph",
           "is_balanced of B with A's colouring");
    CHECK(flag == -1);
    fib_graph *broken = NULL;
    expect(fib_break_symmetry(b, covers_of_a, 1, &broken), FIB_E_MISMATCH, "another graph",
           "break_symmetry of B with A's covers");
    CHECK(broken == NULL);
    expect(fib_coloring_refines(b, of_a, of_a, -1, &flag), FIB_E_MISMATCH, "another graph",
           "refines on B with A's colourings");
    fib_coloring *of_b = test_color(b, FIB_SYM_FIBERS);
    expect(fib_coloring_refines(a, of_a, of_b, -1, &flag), FIB_E_MISMATCH, "another graph",
           "refines on A with B's colouring");
    CHECK(flag == -1);

    /* A's classes copied into a colouring made for B compress B itself: the
     * base computes B's outputs, not A's. */
    fib_coloring *for_b = classes_copied_to(b, of_a);
    CHECK_OK(fib_coloring_is_balanced(b, for_b, 0.0, &flag));
    CHECK(flag == 1);
    CHECK_OK(fib_compress(b, for_b, &base_out));
    if (base_out) {
        CHECK(test_output_difference(fib_base_graph(base_out), b, 4, 8, 1.0) < 1e-9);
        CHECK(test_output_difference(fib_base_graph(base_out), a, 4, 8, 1.0) > 0.1);
    }
    fib_base_free(base_out);
    /* and A's own colouring still compresses A */
    CHECK_OK(fib_compress(a, of_a, &base_out));
    if (base_out)
        CHECK(test_output_difference(fib_base_graph(base_out), a, 4, 8, 1.0) < 1e-9);
    fib_base_free(base_out);

    fib_coloring_free(for_b);
    fib_coloring_free(of_b);
    fib_coloring_free(covers_of_a);
    fib_coloring_free(of_a);
    fib_graph_free(b);
    fib_graph_free(a);
    planted_free(&p);
}

/* A graph freed and a new one of the same shape (perhaps at the same
 * address) is another graph. */
static void colouring_outliving_its_graph_is_refused(void)
{
    planted_mlp p;
    const int64_t base[] = {4, 3, 2};
    planted_build(&p, 5, 2, base, 3, FIB_DTYPE_F32, 0, FIB_ACT_TANH, 0);
    fib_graph *a = planted_graph(&p, FIB_COPY);
    fib_coloring *of_a = test_color(a, FIB_SYM_FIBERS);
    fib_graph_free(a);
    fib_graph *again = planted_graph(&p, FIB_COPY);
    fib_base *base_out = NULL;
    expect(fib_compress(again, of_a, &base_out), FIB_E_MISMATCH, "another graph",
           "compress a new graph with a freed graph's colouring");
    fib_coloring_free(of_a);
    fib_graph_free(again);
    planted_free(&p);
}

static void colouring_made_before_a_change_is_refused(void)
{
    planted_mlp p;
    const int64_t base[] = {4, 3, 3, 2};
    planted_build(&p, 8, 3, base, 3, FIB_DTYPE_F64, 0, FIB_ACT_RELU, 0);
    fib_graph *g = planted_graph(&p, 0);
    fib_coloring *before = test_color(g, FIB_SYM_FIBERS);
    fib_base *base_out = NULL;
    int32_t flag = -1;

    /* names and per-group eps change nothing the colouring was made from */
    CHECK_OK(fib_graph_set_group_name(g, 1, "hidden"));
    CHECK_OK(fib_graph_set_group_eps(g, 1, 0.5));
    CHECK_OK(fib_coloring_is_balanced(g, before, 0.0, &flag));
    CHECK(flag == 1);

    /* an activation changes the function and the opfibers' flavours */
    CHECK_OK(fib_graph_set_activation(g, 1, FIB_ACT_TANH, 0));
    expect(fib_compress(g, before, &base_out), FIB_E_MISMATCH, "changed",
           "compress after set_activation");
    expect(fib_coloring_is_balanced(g, before, 0.0, &flag), FIB_E_MISMATCH, "changed",
           "is_balanced after set_activation");
    CHECK(base_out == NULL);
    /* a colouring made now fits */
    fib_coloring *after = test_color(g, FIB_SYM_FIBERS);
    CHECK_OK(fib_compress(g, after, &base_out));
    if (base_out)
        CHECK(test_output_difference(fib_base_graph(base_out), g, 6, 8, 1.0) < 1e-9);
    fib_base_free(base_out);
    base_out = NULL;

    /* a new group changes the shape as well */
    int32_t extra = -1;
    const double w[2 * 2] = {1, 0, 0, 1};
    CHECK_OK(fib_graph_add_dense(g, 3, 2, FIB_DTYPE_F64, w, 2, NULL, FIB_COPY, &extra));
    expect(fib_compress(g, after, &base_out), FIB_E_MISMATCH, "groups",
           "compress after a group was added");
    CHECK(base_out == NULL);

    fib_coloring_free(after);
    fib_coloring_free(before);
    fib_graph_free(g);
    planted_free(&p);
}

/* Node groups: arcs, initial classes and the convention all decide the
 * colouring. */
static void node_colouring_made_before_a_change_is_refused(void)
{
    fib_graph *g = NULL;
    int32_t group = -1;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_nodes(g, 4, &group));
    const int64_t src[] = {0, 0, 1, 2}, dst[] = {1, 2, 3, 3};
    CHECK_OK(fib_graph_add_edges(g, group, group, 4, src, dst, NULL, NULL, FIB_COPY));

    fib_coloring *c = test_color(g, FIB_SYM_FIBERS);
    fib_quotient *q = NULL;
    int64_t n_blocks = 0;
    CHECK_OK(fib_quotient_create(g, c, &q));
    fib_quotient_free(q);
    q = NULL;
    const int64_t more_src[] = {3}, more_dst[] = {0};
    CHECK_OK(fib_graph_add_edges(g, group, group, 1, more_src, more_dst, NULL, NULL, FIB_COPY));
    expect(fib_quotient_create(g, c, &q), FIB_E_MISMATCH, "changed",
           "quotient after add_edges");
    CHECK(q == NULL);
    expect(fib_coloring_fiber_blocks(g, c, group, 0, NULL, NULL, NULL, &n_blocks),
           FIB_E_MISMATCH, "changed", "fiber_blocks after add_edges");
    fib_coloring_free(c);

    c = test_color(g, FIB_SYM_FIBERS);
    const int64_t labels[] = {0, 1, 1, 0};
    CHECK_OK(fib_graph_set_initial_classes(g, group, labels, 4));
    expect(fib_quotient_create(g, c, &q), FIB_E_MISMATCH, "changed",
           "quotient after set_initial_classes");
    fib_coloring_free(c);

    c = test_color(g, FIB_SYM_FIBERS);
    CHECK_OK(fib_graph_set_convention(g, FIB_CONVENTION_PUBLISHED));
    expect(fib_coloring_fiber_blocks(g, c, group, 0, NULL, NULL, NULL, &n_blocks),
           FIB_E_MISMATCH, "changed", "fiber_blocks after set_convention");
    fib_coloring_free(c);
    fib_graph_free(g);
}

/* Colourings the library copies (fib_hierarchy_coloring) stay bound. */
static void hierarchy_copies_stay_bound(void)
{
    planted_mlp p;
    const int64_t base[] = {3, 3, 2};
    planted_build(&p, 2, 2, base, 3, FIB_DTYPE_F64, 0, FIB_ACT_RELU, 0);
    fib_graph *a = planted_graph(&p, 0);
    fib_graph *b = scaled_copy(&p, 3.0);
    fib_hierarchy *h = NULL;
    CHECK_OK(fib_hierarchy_create(a, NULL, &h));
    fib_coloring *covers = NULL;
    CHECK_OK(fib_hierarchy_coloring(h, FIB_SYM_COVERS, &covers));
    fib_base *base_out = NULL;
    CHECK_OK(fib_compress(a, covers, &base_out));
    fib_base_free(base_out);
    base_out = NULL;
    expect(fib_compress(b, covers, &base_out), FIB_E_MISMATCH, "another graph",
           "compress B with a hierarchy colouring of A");
    fib_coloring_free(covers);
    fib_hierarchy_free(h);
    fib_graph_free(b);
    fib_graph_free(a);
    planted_free(&p);
}

int main(void)
{
    RUN(colouring_of_another_graph_of_the_same_shape_is_refused);
    RUN(colouring_outliving_its_graph_is_refused);
    RUN(colouring_made_before_a_change_is_refused);
    RUN(node_colouring_made_before_a_change_is_refused);
    RUN(hierarchy_copies_stay_bound);
    return test_failures ? 1 : 0;
}
