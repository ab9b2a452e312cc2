/* fib_color_from_fibers: opfibers and covers flavoured by fibers fib_color
 * made must be exactly fib_color's own (every group, exact and tolerant,
 * on a network whose fibers and opfibers differ and on planted lifts), and
 * fibers that could flavour them otherwise are refused: another symmetry,
 * classes set by hand, another tolerance or eps (a group's eps changed
 * since included), another graph. */
#include "fibration.h"
#include "planted.h"
#include "testing.h"

#include <stdlib.h>
#include <string.h>

int test_failures;

/* input 4 -> hidden 7 (activation) -> output 3: unit 2 copies unit 0's
 * row but not its column (one fiber, two opfibers), unit 5 copies unit 3's
 * column but not its row, units 1, 4, 6 are twins. */
static fib_graph *twin_mlp(double *w1, double *w2, int32_t activation)
{
    uint64_t seed = 7;
    for (int i = 0; i < 7 * 4; i++)
        w1[i] = test_uniform(&seed, -1, 1);
    for (int i = 0; i < 3 * 7; i++)
        w2[i] = test_uniform(&seed, -1, 1);
    for (int k = 0; k < 4; k++) {
        w1[4 * 4 + k] = w1[6 * 4 + k] = w1[1 * 4 + k];
        w1[2 * 4 + k] = w1[0 * 4 + k];
    }
    for (int o = 0; o < 3; o++) {
        w2[o * 7 + 4] = w2[o * 7 + 6] = w2[o * 7 + 1];
        w2[o * 7 + 5] = w2[o * 7 + 3];
    }
    fib_graph *g = NULL;
    int32_t in, h, out;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, 4, &in));
    CHECK_OK(fib_graph_add_dense(g, in, 7, FIB_DTYPE_F64, w1, 4, NULL, 0, &h));
    CHECK_OK(fib_graph_set_activation(g, h, activation, 0));
    CHECK_OK(fib_graph_add_dense(g, h, 3, FIB_DTYPE_F64, w2, 7, NULL, 0, &out));
    return g;
}

static fib_color_options options(int32_t symmetry, int32_t tolerance, double eps)
{
    fib_color_options o;
    fib_color_options_init(&o, sizeof o);
    o.symmetry = symmetry;
    o.tolerance = tolerance;
    o.eps = eps;
    return o;
}

/* True when every group of a and b has the same classes. */
static int same_coloring(const fib_graph *g, const fib_coloring *a, const fib_coloring *b)
{
    int32_t n_groups = 0;
    CHECK_OK(fib_graph_num_groups(g, &n_groups));
    int same = 1;
    for (int32_t i = 0; i < n_groups; i++) {
        int64_t n = 0;
        CHECK_OK(fib_graph_group_info(g, i, NULL, &n, NULL, NULL, NULL, NULL, NULL));
        int64_t *x = calloc((size_t)n, sizeof *x), *y = calloc((size_t)n, sizeof *y);
        CHECK_OK(fib_coloring_colors(a, i, x, n));
        CHECK_OK(fib_coloring_colors(b, i, y, n));
        same = same && memcmp(x, y, (size_t)n * sizeof *x) == 0;
        free(x);
        free(y);
    }
    return same;
}

static int64_t classes(const fib_coloring *c, int32_t group)
{
    int64_t k = -1;
    CHECK_OK(fib_coloring_num_classes(c, group, &k));
    return k;
}

/* fib_color_from_fibers(sym) equals fib_color(sym) for OPFIBERS and
 * COVERS under this tolerance; returns fib_color's opfibers. */
static fib_coloring *check_same(const fib_graph *g, int32_t tolerance, double eps)
{
    fib_color_options of = options(FIB_SYM_FIBERS, tolerance, eps);
    fib_coloring *fibers = NULL, *opfibers = NULL;
    CHECK_OK(fib_color(g, &of, &fibers));
    for (int32_t sym = FIB_SYM_OPFIBERS; sym <= FIB_SYM_COVERS; sym++) {
        fib_color_options o = options(sym, tolerance, eps);
        fib_coloring *made = NULL, *given = NULL;
        CHECK_OK(fib_color(g, &o, &made));
        CHECK_OK(fib_color_from_fibers(g, &o, fibers, &given));
        CHECK(made && given && same_coloring(g, made, given));
        int32_t symmetry = 0;
        CHECK_OK(fib_coloring_symmetry(given, &symmetry));
        CHECK(symmetry == sym);
        fib_coloring_free(given);
        if (sym == FIB_SYM_OPFIBERS)
            opfibers = made;
        else
            fib_coloring_free(made);
    }
    /* the fibers are unchanged by serving */
    fib_coloring *again = NULL;
    CHECK_OK(fib_color(g, &of, &again));
    CHECK(again && same_coloring(g, fibers, again));
    fib_coloring_free(again);
    fib_coloring_free(fibers);
    return opfibers;
}

static void test_same_classes_as_fib_color(void)
{
    double w1[7 * 4], w2[3 * 7];
    fib_graph *g = twin_mlp(w1, w2, FIB_ACT_RELU);
    fib_coloring *op = check_same(g, FIB_TOL_EXACT, 0);
    /* the flavours matter here: unit 5 has unit 3's column but another
     * fiber (4 fiber classes), so another opfiber (5 opfiber classes) */
    CHECK(classes(op, 1) == 5);
    fib_coloring_free(op);
    fib_coloring_free(check_same(g, FIB_TOL_ABS, 1e-3));
    fib_coloring_free(check_same(g, FIB_TOL_REL, 1e-3));
    fib_graph_free(g);

    /* a linear unit has one flavour: 3 and 5 share an opfiber, not a
     * fiber, so the covers are neither the fibers nor the opfibers */
    g = twin_mlp(w1, w2, FIB_ACT_LINEAR);
    op = check_same(g, FIB_TOL_EXACT, 0);
    fib_color_options co = options(FIB_SYM_COVERS, FIB_TOL_EXACT, 0);
    fib_coloring *covers = NULL;
    CHECK_OK(fib_color(g, &co, &covers));
    CHECK(classes(op, 1) == 4 && classes(covers, 1) == 5);
    fib_coloring_free(covers);
    fib_coloring_free(op);
    fib_graph_free(g);

    for (int resplit = 0; resplit <= 1; resplit++) {
        planted_mlp p;
        const int64_t base[] = {6, 5, 4, 3};
        planted_build(&p, 40 + (uint64_t)resplit, 3, base, 3, FIB_DTYPE_F32, 1,
                      FIB_ACT_TANH, resplit);
        fib_graph *pg = planted_graph(&p, 0);
        fib_coloring *pop = check_same(pg, FIB_TOL_EXACT, 0);
        /* without re-split weights the lift plants opfibers too */
        if (!resplit)
            CHECK(classes(pop, 1) < p.width[1]);
        fib_coloring_free(pop);
        fib_coloring_free(check_same(pg, FIB_TOL_ABS, 1e-4));
        fib_graph_free(pg);
        planted_free(&p);
    }
}

static void test_refuses_other_fibers(void)
{
    double w1[7 * 4], w2[3 * 7];
    fib_graph *g = twin_mlp(w1, w2, FIB_ACT_RELU);
    fib_color_options exact_fibers = options(FIB_SYM_FIBERS, FIB_TOL_EXACT, 0);
    fib_color_options exact_op = options(FIB_SYM_OPFIBERS, FIB_TOL_EXACT, 0);
    fib_color_options abs_fibers = options(FIB_SYM_FIBERS, FIB_TOL_ABS, 1e-3);
    fib_color_options abs_op = options(FIB_SYM_OPFIBERS, FIB_TOL_ABS, 1e-3);
    fib_coloring *fibers = NULL, *abs = NULL, *op = NULL, *out = NULL;
    CHECK_OK(fib_color(g, &exact_fibers, &fibers));
    CHECK_OK(fib_color(g, &abs_fibers, &abs));
    CHECK_OK(fib_color(g, &exact_op, &op));

    CHECK(fib_color_from_fibers(NULL, &exact_op, fibers, &out) == FIB_E_NULL);
    CHECK(fib_color_from_fibers(g, NULL, fibers, &out) == FIB_E_NULL);
    CHECK(fib_color_from_fibers(g, &exact_op, NULL, &out) == FIB_E_NULL);
    CHECK(fib_color_from_fibers(g, &exact_op, fibers, NULL) == FIB_E_NULL);
    CHECK(fib_color_from_fibers(g, &exact_fibers, fibers, &out) == FIB_E_INVALID);
    /* another symmetry, another tolerance, another eps */
    CHECK(fib_color_from_fibers(g, &exact_op, op, &out) == FIB_E_MISMATCH);
    CHECK(fib_color_from_fibers(g, &exact_op, abs, &out) == FIB_E_MISMATCH);
    CHECK(fib_color_from_fibers(g, &abs_op, fibers, &out) == FIB_E_MISMATCH);
    fib_color_options wider = abs_op;
    wider.eps = 2e-3;
    CHECK(fib_color_from_fibers(g, &wider, abs, &out) == FIB_E_MISMATCH);
    CHECK_OK(fib_color_from_fibers(g, &abs_op, abs, &out));
    fib_coloring_free(out);
    out = NULL;
    /* a group's own eps changed since: the fibers no longer match */
    CHECK_OK(fib_graph_set_group_eps(g, 1, 0.5));
    CHECK(fib_color_from_fibers(g, &abs_op, abs, &out) == FIB_E_MISMATCH);
    /* exact fibers ignore eps altogether */
    CHECK_OK(fib_color_from_fibers(g, &exact_op, fibers, &out));
    fib_coloring_free(out);
    out = NULL;

    /* classes set by hand, even to the same ones; a copy made by hand */
    int64_t colors[7];
    CHECK_OK(fib_coloring_colors(fibers, 1, colors, 7));
    CHECK_OK(fib_coloring_set_group(fibers, 1, colors, 7));
    CHECK(fib_color_from_fibers(g, &exact_op, fibers, &out) == FIB_E_MISMATCH);
    fib_coloring *copy = NULL;
    CHECK_OK(fib_coloring_create(g, FIB_SYM_FIBERS, &copy));
    CHECK(fib_color_from_fibers(g, &exact_op, copy, &out) == FIB_E_MISMATCH);
    fib_coloring_free(copy);

    /* fibers of another graph of the same shape */
    double v1[7 * 4], v2[3 * 7];
    fib_graph *other = twin_mlp(v1, v2, FIB_ACT_RELU);
    fib_coloring *theirs = NULL;
    CHECK_OK(fib_color(other, &exact_fibers, &theirs));
    CHECK(fib_color_from_fibers(g, &exact_op, theirs, &out) == FIB_E_MISMATCH);
    CHECK(out == NULL);
    fib_coloring_free(theirs);
    fib_graph_free(other);

    fib_coloring_free(fibers);
    fib_coloring_free(abs);
    fib_coloring_free(op);
    fib_graph_free(g);
}

int main(void)
{
    RUN(test_same_classes_as_fib_color);
    RUN(test_refuses_other_fibers);
    return test_failures != 0;
}
