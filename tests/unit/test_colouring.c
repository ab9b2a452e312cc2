/* Fibers, opfibers and covers of planted networks; balance, coarseness and
 * tolerance guarantees. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fibration.h"
#include "planted.h"
#include "testing.h"

int test_failures;

static fib_coloring *color(const fib_graph *g, int32_t symmetry, int32_t tolerance,
                           double eps)
{
    fib_color_options o;
    fib_color_options_init(&o, sizeof o);
    o.symmetry = symmetry;
    o.tolerance = tolerance;
    o.eps = eps;
    fib_coloring *c = NULL;
    CHECK_OK(fib_color(g, &o, &c));
    return c;
}

/* Fibers of a planted network are exactly the planted classes, in float32
 * and float64, borrowed with padded rows or copied. */
static void planted_fibers_are_found(void)
{
    const int64_t base[] = {7, 5, 6, 4, 3};
    for (int variant = 0; variant < 4; variant++) {
        int32_t dtype = variant & 1 ? FIB_DTYPE_F64 : FIB_DTYPE_F32;
        planted_mlp p;
        planted_build(&p, 100 + (uint64_t)variant, 4, base, 6, dtype, variant * 3,
                      variant < 2 ? FIB_ACT_RELU : FIB_ACT_TANH, 1);
        fib_graph *g = planted_graph(&p, variant & 2 ? FIB_COPY : 0);
        CHECK(g != NULL);
        fib_coloring *c = color(g, FIB_SYM_FIBERS, FIB_TOL_EXACT, 0);
        for (int l = 1; l < 4; l++) {
            CHECK(same_partition(c, l, p.cls[l], p.width[l]));
            int64_t k = 0;
            fib_coloring_num_classes(c, l, &k);
            CHECK(k == base[l]);
        }
        fib_coloring_free(c);
        fib_graph_free(g);
        planted_free(&p);
    }
}

/* In a lift, column sums over output classes agree too, so opfibers and
 * covers equal the planted classes. The last hidden layer is read only by
 * the output layer, whose units are all distinct: its opfibers are grouped
 * on the output weights' columns in place (float32 and float64, padded
 * rows). */
static void planted_opfibers_and_covers(void)
{
    const int64_t base[] = {5, 4, 6, 3};
    for (int variant = 0; variant < 4; variant++) {
        planted_mlp p;
        planted_build(&p, 7 + (uint64_t)variant, 3, base, 5,
                      variant & 1 ? FIB_DTYPE_F32 : FIB_DTYPE_F64, variant * 2, FIB_ACT_RELU, 0);
        fib_graph *g = planted_graph(&p, 0);
        fib_coloring *op = color(g, FIB_SYM_OPFIBERS, FIB_TOL_EXACT, 0);
        fib_coloring *cov = color(g, FIB_SYM_COVERS, FIB_TOL_EXACT, 0);
        for (int l = 1; l < 3; l++) {
            CHECK(same_partition(op, l, p.cls[l], p.width[l]));
            CHECK(same_partition(cov, l, p.cls[l], p.width[l]));
        }
        int32_t sym = 0;
        fib_coloring_symmetry(cov, &sym);
        CHECK(sym == FIB_SYM_COVERS);
        /* Outputs are all distinct for opfibers. */
        int64_t k = 0;
        fib_coloring_num_classes(op, 3, &k);
        CHECK(k == base[3]);
        fib_coloring_free(op);
        fib_coloring_free(cov);
        fib_graph_free(g);
        planted_free(&p);
    }
}

/* A linear hidden layer gives one flavour: opfibers may then merge units of
 * different fibers; a non-linear one never does. */
static void flavour_follows_linearity(void)
{
    /* 2 inputs -> 2 hidden -> 1 output, hidden rows differ, output column
     * weights equal: opfibers merge the hidden units only when linear. */
    const double w1[] = {1.0, 0.0, 0.0, 2.0};
    const double w2[] = {0.5, 0.5};
    for (int linear = 0; linear < 2; linear++) {
        fib_graph *g;
        int32_t in, h, out;
        fib_graph_create(&g);
        fib_graph_add_input(g, 2, &in);
        fib_graph_add_dense(g, in, 2, FIB_DTYPE_F64, w1, 2, NULL, 0, &h);
        fib_graph_set_activation(g, h, linear ? FIB_ACT_LINEAR : FIB_ACT_RELU, 0);
        fib_graph_add_dense(g, h, 1, FIB_DTYPE_F64, w2, 2, NULL, 0, &out);
        fib_coloring *op = color(g, FIB_SYM_OPFIBERS, FIB_TOL_EXACT, 0);
        int64_t k = 0;
        fib_coloring_num_classes(op, h, &k);
        CHECK(k == (linear ? 1 : 2));
        fib_coloring_free(op);
        fib_graph_free(g);
    }
}

static void colour_array(const fib_coloring *c, int32_t group, int64_t n, int64_t *out)
{
    CHECK_OK(fib_coloring_colors(c, group, out, n));
}

/* The colouring found is balanced, and merging any two classes of a group
 * breaks balance: it is the coarsest. Moving one unit also breaks it. */
static void fibers_are_balanced_and_coarsest(void)
{
    const int64_t base[] = {6, 5, 4, 3};
    planted_mlp p;
    planted_build(&p, 11, 3, base, 4, FIB_DTYPE_F32, 1, FIB_ACT_RELU, 1);
    fib_graph *g = planted_graph(&p, 0);
    fib_coloring *c = color(g, FIB_SYM_FIBERS, FIB_TOL_EXACT, 0);
    int32_t ok = -1;
    CHECK_OK(fib_coloring_is_balanced(g, c, 0, &ok));
    CHECK(ok == 1);
    for (int32_t l = 1; l <= 2; l++) {
        int64_t n = p.width[l], k = 0;
        fib_coloring_num_classes(c, l, &k);
        int64_t *col = malloc((size_t)n * sizeof *col), *merged = malloc((size_t)n * sizeof *merged);
        colour_array(c, l, n, col);
        for (int64_t a = 0; a < k; a++)
            for (int64_t b = a + 1; b < k; b++) {
                for (int64_t i = 0; i < n; i++)
                    merged[i] = col[i] == b ? a : col[i];
                fib_coloring *m = color(g, FIB_SYM_FIBERS, FIB_TOL_EXACT, 0);
                CHECK_OK(fib_coloring_set_group(m, l, merged, n));
                int32_t bal = -1;
                CHECK_OK(fib_coloring_is_balanced(g, m, 0, &bal));
                CHECK(bal == 0);
                fib_coloring_free(m);
            }
        free(col);
        free(merged);
    }
    fib_coloring_free(c);
    fib_graph_free(g);
    planted_free(&p);
}

/* ABS: noise of eps/4 on every weight; the planted classes are recovered
 * and every class respects the span guarantee. */
static void abs_tolerance_recovers_noisy_classes(void)
{
    const int64_t base[] = {8, 6, 5, 3};
    const double eps = 1e-3;
    planted_mlp p;
    planted_build(&p, 21, 3, base, 5, FIB_DTYPE_F64, 0, FIB_ACT_RELU, 1);
    uint64_t rng = 99;
    for (int l = 0; l < 3; l++) {
        /* Noise per row is split over the row so colour sums move < eps/4. */
        for (int64_t i = 0; i < p.width[l + 1]; i++)
            for (int64_t k = 0; k < p.width[l]; k++)
                ((double *)p.w[l])[i * p.ld[l] + k] +=
                    test_uniform(&rng, -eps / 4, eps / 4) / (double)p.width[l];
    }
    fib_graph *g = planted_graph(&p, 0);
    fib_coloring *exact = color(g, FIB_SYM_FIBERS, FIB_TOL_EXACT, 0);
    int64_t k = 0;
    fib_coloring_num_classes(exact, 1, &k);
    CHECK(k == p.width[1]); /* noise destroys exact fibers */
    fib_coloring *c = color(g, FIB_SYM_FIBERS, FIB_TOL_ABS, eps);
    for (int l = 1; l < 3; l++)
        CHECK(same_partition(c, l, p.cls[l], p.width[l]));
    int32_t ok = -1;
    CHECK_OK(fib_coloring_is_balanced(g, c, eps, &ok));
    CHECK(ok == 1);
    CHECK_OK(fib_coloring_is_balanced(g, c, 0, &ok));
    CHECK(ok == 0);
    /* A per-group override of 0 keeps group 1 exact. */
    CHECK_OK(fib_graph_set_group_eps(g, 1, 0.0));
    fib_coloring *o = color(g, FIB_SYM_FIBERS, FIB_TOL_ABS, eps);
    fib_coloring_num_classes(o, 1, &k);
    CHECK(k == p.width[1]);
    fib_coloring_free(o);
    fib_coloring_free(c);
    fib_coloring_free(exact);
    fib_graph_free(g);
    planted_free(&p);
}

/* Random, unplanted layers under a tolerance: the guarantee holds (checked
 * by brute force over all pairs in the test). */
static void abs_guarantee_on_random_layers(void)
{
    uint64_t rng = 5;
    for (int trial = 0; trial < 20; trial++) {
        int64_t n_in = 1 + (int64_t)(test_rand(&rng) % 6), n_out = 1 + (int64_t)(test_rand(&rng) % 60);
        double *w = malloc((size_t)(n_in * n_out) * sizeof *w);
        for (int64_t x = 0; x < n_in * n_out; x++)
            w[x] = test_uniform(&rng, -1, 1);
        double eps = test_uniform(&rng, 0.05, 0.8);
        fib_graph *g;
        int32_t in, h, out;
        double one = 1.0;
        fib_graph_create(&g);
        fib_graph_add_input(g, n_in, &in);
        fib_graph_add_dense(g, in, n_out, FIB_DTYPE_F64, w, n_in, NULL, 0, &h);
        fib_graph_add_dense(g, h, 1, FIB_DTYPE_F64, &one, 1, NULL, 0, &out);
        (void)out;
        fib_coloring *c = color(g, FIB_SYM_FIBERS, FIB_TOL_ABS, eps);
        int64_t *col = malloc((size_t)n_out * sizeof *col);
        colour_array(c, h, n_out, col);
        for (int64_t i = 0; i < n_out; i++)
            for (int64_t j = 0; j < n_out; j++)
                if (col[i] == col[j])
                    for (int64_t k = 0; k < n_in; k++)
                        CHECK(fabs(w[i * n_in + k] - w[j * n_in + k]) <= eps * (1 + 1e-12));
        /* Deterministic: the same call gives the same classes. */
        fib_coloring *again = color(g, FIB_SYM_FIBERS, FIB_TOL_ABS, eps);
        int64_t *col2 = malloc((size_t)n_out * sizeof *col2);
        colour_array(again, h, n_out, col2);
        CHECK(memcmp(col, col2, (size_t)n_out * sizeof *col) == 0);
        free(col);
        free(col2);
        fib_coloring_free(c);
        fib_coloring_free(again);
        fib_graph_free(g);
        free(w);
    }
}

/* Results do not depend on the thread count. */
static void thread_count_does_not_matter(void)
{
    const int64_t base[] = {9, 7, 5, 2};
    planted_mlp p;
    planted_build(&p, 3, 3, base, 8, FIB_DTYPE_F32, 0, FIB_ACT_SILU, 1);
    fib_graph *g = planted_graph(&p, 0);
    fib_color_options o;
    fib_color_options_init(&o, sizeof o);
    o.symmetry = FIB_SYM_COVERS;
    fib_coloring *c1 = NULL, *c4 = NULL;
    o.n_threads = 1;
    CHECK_OK(fib_color(g, &o, &c1));
    o.n_threads = 4;
    CHECK_OK(fib_color(g, &o, &c4));
    for (int32_t l = 0; l <= 3; l++) {
        int64_t n = p.width[l];
        int64_t *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b);
        colour_array(c1, l, n, a);
        colour_array(c4, l, n, b);
        CHECK(memcmp(a, b, (size_t)n * sizeof *a) == 0);
        free(a);
        free(b);
    }
    fib_coloring_free(c1);
    fib_coloring_free(c4);
    fib_graph_free(g);
    planted_free(&p);
}

typedef struct cancel_state {
    int64_t calls, cancel_at;
} cancel_state;

static int32_t cancel_after(void *user, int64_t done, int64_t total)
{
    cancel_state *s = user;
    (void)done, (void)total;
    return ++s->calls >= s->cancel_at;
}

static void progress_can_cancel(void)
{
    const int64_t base[] = {4, 3, 3, 2};
    planted_mlp p;
    planted_build(&p, 8, 3, base, 3, FIB_DTYPE_F64, 0, FIB_ACT_RELU, 1);
    fib_graph *g = planted_graph(&p, 0);
    fib_color_options o;
    fib_color_options_init(&o, sizeof o);
    o.symmetry = FIB_SYM_COVERS;
    cancel_state s = {0, 3};
    o.progress = cancel_after;
    o.progress_user = &s;
    fib_coloring *c = NULL;
    CHECK(fib_color(g, &o, &c) == FIB_E_CANCELLED);
    CHECK(c == NULL);
    CHECK(strstr(fib_last_error(), "cancel") != NULL);
    s.cancel_at = 1000;
    s.calls = 0;
    CHECK_OK(fib_color(g, &o, &c));
    CHECK(s.calls == 8); /* 4 groups forward, 4 backward */
    fib_coloring_free(c);
    fib_graph_free(g);
    planted_free(&p);
}

/* A residual block: h = relu(W2 relu(W1 x)); y = relu(x' + h) where x' is a
 * dense projection; the sum's classes are the meet of its summands'. */
static void residual_sum_takes_the_meet(void)
{
    /* Hand-built: a has classes {0,1},{2}; b has classes {0},{1,2}. */
    const double wa[] = {1, 2, 1, 2, 3, 4};   /* 3 x 2 */
    const double wb[] = {5, 1, 6, 0, 6, 0};   /* 3 x 2 */
    const double wo[] = {1, 1, 1};
    fib_graph *g;
    int32_t in, a, b, s, out;
    fib_graph_create(&g);
    fib_graph_add_input(g, 2, &in);
    fib_graph_add_dense(g, in, 3, FIB_DTYPE_F64, wa, 2, NULL, 0, &a);
    fib_graph_add_dense(g, in, 3, FIB_DTYPE_F64, wb, 2, NULL, 0, &b);
    CHECK_OK(fib_graph_add_sum(g, a, b, &s));
    fib_graph_set_activation(g, s, FIB_ACT_RELU, 0);
    fib_graph_add_dense(g, s, 1, FIB_DTYPE_F64, wo, 3, NULL, 0, &out);
    fib_coloring *c = color(g, FIB_SYM_FIBERS, FIB_TOL_EXACT, 0);
    int64_t ka, kb, ks;
    fib_coloring_num_classes(c, a, &ka);
    fib_coloring_num_classes(c, b, &kb);
    fib_coloring_num_classes(c, s, &ks);
    CHECK(ka == 2 && kb == 2 && ks == 3);
    fib_coloring_free(c);
    fib_graph_free(g);
}

/* A group read by two dense layers whose units are all distinct (outputs):
 * its opfibers are grouped on both readers' weight columns in place.
 * Hidden units 0, 1 and 2, 3 have equal rows and equal columns in both
 * readers; changing one column of the second reader splits {2, 3}. */
static void opfibers_on_two_readers_columns(void)
{
    const double wh[] = {1, 2, 0, 1, 2, 0, 3, 1, 1, 3, 1, 1, 0, 0, 5, 2, 2, 2};  /* 6 x 3 */
    double wa[] = {1, 1, 4, 4, 2, 7, 3, 3, 5, 5, 1, 0};                           /* 2 x 6 */
    double wb[] = {2, 2, 1, 1, 0, 3, 4, 4, 6, 6, 9, 1, 5, 5, 7, 7, 8, 2};         /* 3 x 6 */
    for (int split = 0; split < 2; split++) {
        wb[15] = split ? 7.5 : 7.0;
        fib_graph *g;
        int32_t in, h, a, b;
        fib_graph_create(&g);
        fib_graph_add_input(g, 3, &in);
        fib_graph_add_dense(g, in, 6, FIB_DTYPE_F64, wh, 3, NULL, 0, &h);
        fib_graph_set_activation(g, h, FIB_ACT_RELU, 0);
        fib_graph_add_dense(g, h, 2, FIB_DTYPE_F64, wa, 6, NULL, 0, &a);
        fib_graph_add_dense(g, h, 3, FIB_DTYPE_F64, wb, 6, NULL, 0, &b);
        fib_coloring *op = color(g, FIB_SYM_OPFIBERS, FIB_TOL_EXACT, 0);
        const int64_t merged[] = {0, 0, 1, 1, 2, 3}, apart[] = {0, 0, 1, 2, 3, 4};
        CHECK(same_partition(op, h, split ? apart : merged, 6));
        int32_t balanced = 0;
        CHECK_OK(fib_coloring_is_balanced(g, op, 0.0, &balanced));
        CHECK(balanced);
        fib_coloring_free(op);
        fib_graph_free(g);
    }
}

/* Labels (class ids of summands, flavours) are never merged by a tolerance,
 * however large: x + x over distinct inputs stays distinct at eps = 10. */
static void labels_ignore_the_tolerance(void)
{
    const double w[] = {1, 1, 1};
    fib_graph *g;
    int32_t in, s, out;
    fib_graph_create(&g);
    fib_graph_add_input(g, 3, &in);
    CHECK_OK(fib_graph_add_sum(g, in, in, &s));
    fib_graph_set_activation(g, s, FIB_ACT_RELU, 0);
    fib_graph_add_dense(g, s, 1, FIB_DTYPE_F64, w, 3, NULL, 0, &out);
    fib_coloring *c = color(g, FIB_SYM_COVERS, FIB_TOL_ABS, 10.0);
    int64_t k = 0;
    fib_coloring_num_classes(c, s, &k);
    CHECK(k == 3);
    int32_t ok = 0;
    CHECK_OK(fib_coloring_is_balanced(g, c, 10.0, &ok));
    CHECK(ok == 1);
    /* Merging two sum units is not balanced at any eps. */
    int64_t merged[3] = {0, 0, 1};
    fib_coloring *m = color(g, FIB_SYM_FIBERS, FIB_TOL_ABS, 10.0);
    CHECK_OK(fib_coloring_set_group(m, s, merged, 3));
    CHECK_OK(fib_coloring_is_balanced(g, m, 10.0, &ok));
    CHECK(ok == 0);
    fib_coloring_free(m);
    fib_coloring_free(c);
    fib_graph_free(g);
}

/* fib_coloring_set_group renumbers any labels canonically (classes by
 * their lowest unit): labels within [0, n) take a one-pass path, others a
 * sort; both must give the same classes. */
static void labels_are_renumbered_canonically(void)
{
    fib_graph *g = NULL;
    int32_t in, h;
    enum { n = 9 };
    double w[n * 2];
    for (int i = 0; i < n * 2; i++)
        w[i] = i;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, 2, &in));
    CHECK_OK(fib_graph_add_dense(g, in, n, FIB_DTYPE_F64, w, 2, NULL, 0, &h));
    fib_coloring *c = NULL;
    CHECK_OK(fib_coloring_create(g, FIB_SYM_FIBERS, &c));
    static const int64_t in_range[n] = {7, 3, 7, 0, 3, 8, 8, 0, 1};
    static const int64_t outside[n] = {-5, 1000, -5, INT64_MAX, 1000, 9, 9, INT64_MAX, INT64_MIN};
    static const int64_t want[n] = {0, 1, 0, 2, 1, 3, 3, 2, 4};
    const int64_t *cases[] = {in_range, outside, want};
    for (int t = 0; t < 3; t++) {
        int64_t got[n], k = 0;
        CHECK_OK(fib_coloring_set_group(c, h, cases[t], n));
        CHECK_OK(fib_coloring_colors(c, h, got, n));
        CHECK_OK(fib_coloring_num_classes(c, h, &k));
        CHECK(k == 5);
        CHECK(memcmp(got, want, sizeof got) == 0);
    }
    fib_coloring_free(c);
    fib_graph_free(g);
}

int main(void)
{
    RUN(labels_ignore_the_tolerance);
    RUN(planted_fibers_are_found);
    RUN(planted_opfibers_and_covers);
    RUN(flavour_follows_linearity);
    RUN(fibers_are_balanced_and_coarsest);
    RUN(abs_tolerance_recovers_noisy_classes);
    RUN(abs_guarantee_on_random_layers);
    RUN(thread_count_does_not_matter);
    RUN(progress_can_cancel);
    RUN(residual_sum_takes_the_meet);
    RUN(opfibers_on_two_readers_columns);
    RUN(labels_are_renumbered_canonically);
    return test_failures ? 1 : 0;
}
