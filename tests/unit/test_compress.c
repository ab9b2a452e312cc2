/* The base (Eq. 10) computes what the original computes; flavoured opfibers
 * synchronise errors; covers survive gradient descent; lift and symmetry
 * breaking keep the function. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checks.h"
#include "fibration.h"
#include "compress/compress.h" /* kept merge totals */
#include "mlp_reference.h"
#include "planted.h"
#include "testing.h"

int test_failures;

static double *random_inputs(uint64_t seed, int64_t batch, int64_t width)
{
    double *x = malloc((size_t)(batch * width) * sizeof *x);
    for (int64_t i = 0; i < batch * width; i++)
        x[i] = test_uniform(&seed, -2, 2);
    return x;
}

/* Max relative difference between two graphs' outputs on random inputs. */
/* Width of every group of a graph. */
static void base_is_exact_and_is_the_planted_base(void)
{
    const int64_t base[] = {6, 5, 7, 4, 3};
    const int32_t acts[] = {FIB_ACT_RELU, FIB_ACT_TANH, FIB_ACT_GELU, FIB_ACT_SIGMOID,
                            FIB_ACT_SILU, FIB_ACT_LEAKY_RELU};
    for (int variant = 0; variant < 6; variant++) {
        int32_t dtype = variant % 2 ? FIB_DTYPE_F64 : FIB_DTYPE_F32;
        planted_mlp p;
        planted_build(&p, 40 + (uint64_t)variant, 4, base, 5, dtype, variant, acts[variant],
                      variant < 3); /* covers are planted only by even splits */
        fib_graph *g = planted_graph(&p, 0);
        fib_coloring *c = test_color(g, variant < 3 ? FIB_SYM_FIBERS : FIB_SYM_COVERS);
        fib_base *b = NULL;
        CHECK_OK(fib_compress(g, c, &b));
        const fib_graph *bg = fib_base_graph(b);
        for (int l = 0; l <= 4; l++)
            CHECK(test_width(bg, l) == base[l]);
        double tol = dtype == FIB_DTYPE_F32 ? 1e-5 : 1e-12;
        CHECK(test_output_difference(g, bg, 1000 + (uint64_t)variant, 32, 2.0) <= tol);
        /* Base weights are the planted ones, up to the renumbering. */
        if (variant < 3) {
            for (int l = 0; l < 4; l++) {
                int64_t ko = base[l + 1], ki = base[l];
                int64_t *canon_out = calloc((size_t)ko, sizeof *canon_out);
                int64_t *canon_in = calloc((size_t)ki, sizeof *canon_in);
                int64_t *proj = malloc((size_t)p.width[l + 1] * sizeof *proj);
                int64_t *proj_in = malloc((size_t)p.width[l] * sizeof *proj_in);
                CHECK_OK(fib_base_projection(b, l + 1, proj, p.width[l + 1]));
                CHECK_OK(fib_base_projection(b, l, proj_in, p.width[l]));
                for (int64_t i = 0; i < p.width[l + 1]; i++)
                    canon_out[p.cls[l + 1][i]] = proj[i];
                for (int64_t i = 0; i < p.width[l]; i++)
                    canon_in[p.cls[l][i]] = proj_in[i];
                double *w = malloc((size_t)(ko * ki) * sizeof *w), *bias = malloc((size_t)ko * sizeof *bias);
                CHECK_OK(fib_graph_read_dense(bg, l + 1, FIB_DTYPE_F64, w, ki, bias));
                double worst = 0;
                for (int64_t c2 = 0; c2 < ko; c2++) {
                    for (int64_t d = 0; d < ki; d++)
                        worst = fmax(worst, fabs(w[canon_out[c2] * ki + canon_in[d]] - p.base_w[l][c2 * ki + d]));
                    worst = fmax(worst, fabs(bias[canon_out[c2]] - p.base_b[l][c2]));
                }
                CHECK(worst <= (dtype == FIB_DTYPE_F32 ? 1e-6 : 1e-14));
                free(w);
                free(bias);
                free(canon_out);
                free(canon_in);
                free(proj);
                free(proj_in);
            }
        }
        int64_t params_full = 0, params_base = 0;
        fib_graph_num_parameters(g, &params_full);
        fib_graph_num_parameters(bg, &params_base);
        CHECK(params_base < params_full);
        fib_base_free(b);
        fib_coloring_free(c);
        fib_graph_free(g);
        planted_free(&p);
    }
}

/* The library's forward pass agrees with the one written here. */
static void forward_matches_reference(void)
{
    const int64_t base[] = {5, 4, 6, 2};
    planted_mlp p;
    planted_build(&p, 77, 3, base, 3, FIB_DTYPE_F32, 2, FIB_ACT_TANH, 1);
    fib_graph *g = planted_graph(&p, 0);
    mlp_ref m;
    mlp_ref_from_planted(&m, &p);
    double *x = random_inputs(5, 1, p.width[0]), y[2];
    CHECK_OK(fib_graph_forward(g, 1, FIB_DTYPE_F64, x, y));
    mlp_ref_forward(&m, x);
    CHECK(max_rel_diff(y, m.a[3], 2) <= 1e-13);
    /* A hidden group through fib_graph_forward_group. */
    double *h = malloc((size_t)p.width[2] * sizeof *h);
    CHECK_OK(fib_graph_forward_group(g, 1, FIB_DTYPE_F64, x, 2, h));
    CHECK(max_rel_diff(h, m.a[2], p.width[2]) <= 1e-13);
    float xf[5], yf[2];
    for (int i = 0; i < 5; i++)
        xf[i] = (float)x[i];
    CHECK_OK(fib_graph_forward(g, 1, FIB_DTYPE_F32, xf, yf));
    CHECK(fabs(yf[0] - y[0]) < 1e-5);
    free(h);
    free(x);
    mlp_ref_free(&m);
    fib_graph_free(g);
    planted_free(&p);
}

/* Check that values are equal (to 1e-12) inside each class of a group. */
static void check_synchronised(const fib_coloring *c, int32_t group, const double *v, int64_t n)
{
    int64_t *col = malloc((size_t)n * sizeof *col);
    CHECK_OK(fib_coloring_colors(c, group, col, n));
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < i; j++)
            if (col[i] == col[j])
                CHECK(fabs(v[i] - v[j]) <= 1e-12 * (1 + fabs(v[i])));
    free(col);
}

/* Eq. 4 and Eq. 6: fibers synchronise activity, flavoured opfibers
 * synchronise the error signal, for any input and any output error. */
static void fibers_sync_activity_opfibers_sync_errors(void)
{
    const int64_t base[] = {5, 4, 5, 3};
    planted_mlp p;
    planted_build(&p, 12, 3, base, 4, FIB_DTYPE_F64, 0, FIB_ACT_TANH, 0);
    fib_graph *g = planted_graph(&p, 0);
    fib_coloring *fib = test_color(g, FIB_SYM_FIBERS);
    fib_coloring *op = test_color(g, FIB_SYM_OPFIBERS);
    mlp_ref m;
    mlp_ref_from_planted(&m, &p);
    uint64_t rng = 3;
    for (int trial = 0; trial < 10; trial++) {
        double *x = random_inputs(rng++, 1, p.width[0]);
        double err[3];
        for (int i = 0; i < 3; i++)
            err[i] = test_uniform(&rng, -1, 1);
        mlp_ref_forward(&m, x);
        mlp_ref_backward(&m, err);
        for (int l = 1; l <= 2; l++) {
            check_synchronised(fib, l, m.a[l], p.width[l]);
            check_synchronised(op, l, m.delta[l], p.width[l]);
        }
        free(x);
    }
    mlp_ref_free(&m);
    fib_coloring_free(fib);
    fib_coloring_free(op);
    fib_graph_free(g);
    planted_free(&p);
}

static fib_graph *graph_of(const mlp_ref *m)
{
    fib_graph *g;
    int32_t prev, id;
    fib_graph_create(&g);
    fib_graph_add_input(g, m->width[0], &prev);
    for (int l = 0; l < m->n_layers; l++) {
        CHECK_OK(fib_graph_add_dense(g, prev, m->width[l + 1], FIB_DTYPE_F64, m->w[l],
                                     m->width[l], m->b[l], FIB_COPY, &id));
        fib_graph_set_activation(g, id, m->activation[l], 0);
        prev = id;
    }
    return g;
}

/* Each class of fine lies inside one class of coarse. */
static int refines(const fib_coloring *fine, const fib_coloring *coarse, int32_t group, int64_t n)
{
    int64_t *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b);
    fib_coloring_colors(fine, group, a, n);
    fib_coloring_colors(coarse, group, b, n);
    int ok = 1;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
            if (a[i] == a[j] && b[i] != b[j])
                ok = 0;
    free(a);
    free(b);
    return ok;
}

/* The cover coarse-graining theorem: after gradient steps the covers of
 * the trained network contain the covers before (they may merge, never
 * split). */
static void covers_survive_gradient_descent(void)
{
    const int64_t base[] = {6, 4, 5, 2};
    planted_mlp p;
    planted_build(&p, 31, 3, base, 4, FIB_DTYPE_F64, 0, FIB_ACT_TANH, 0);
    mlp_ref m;
    mlp_ref_from_planted(&m, &p);
    fib_graph *g0 = graph_of(&m);
    fib_coloring *before = test_color(g0, FIB_SYM_COVERS);
    uint64_t rng = 8;
    for (int step = 0; step < 25; step++) {
        double *x = random_inputs(rng++, 1, p.width[0]), err[2];
        mlp_ref_forward(&m, x);
        for (int i = 0; i < 2; i++)
            err[i] = m.a[3][i] - test_uniform(&rng, -1, 1); /* squared loss */
        mlp_ref_backward(&m, err);
        mlp_ref_sgd_step(&m, 0.05);
        free(x);
    }
    fib_graph *g1 = graph_of(&m);
    fib_coloring *after = test_color(g1, FIB_SYM_COVERS);
    for (int l = 1; l <= 2; l++) {
        CHECK(refines(before, after, l, p.width[l]));
        int64_t k = 0;
        fib_coloring_num_classes(after, l, &k);
        CHECK(k <= base[l]);
    }
    /* The weights did change. */
    CHECK(test_output_difference(g0, g1, 9, 32, 2.0) > 1e-6);
    fib_coloring_free(before);
    fib_coloring_free(after);
    fib_graph_free(g0);
    fib_graph_free(g1);
    mlp_ref_free(&m);
    planted_free(&p);
}

static void lift_round_trip(void)
{
    const int64_t base[] = {4, 3, 5, 2};
    planted_mlp p;
    planted_build(&p, 50, 3, base, 4, FIB_DTYPE_F64, 0, FIB_ACT_RELU, 1);
    fib_graph *g = planted_graph(&p, 0);
    fib_coloring *c = test_color(g, FIB_SYM_FIBERS);
    fib_base *b = NULL;
    CHECK_OK(fib_compress(g, c, &b));
    fib_graph *lifted = NULL;
    CHECK_OK(fib_lift(b, NULL, &lifted));
    for (int l = 0; l <= 3; l++)
        CHECK(test_width(lifted, l) == p.width[l]);
    CHECK(test_output_difference(lifted, fib_base_graph(b), 4, 32, 2.0) <= 1e-12);
    CHECK(test_output_difference(lifted, g, 4, 32, 2.0) <= 1e-12);
    /* The lift's fibers are the projection. */
    fib_coloring *lc = test_color(lifted, FIB_SYM_COVERS);
    for (int l = 1; l <= 2; l++) {
        int64_t *proj = malloc((size_t)p.width[l] * sizeof *proj);
        fib_base_projection(b, l, proj, p.width[l]);
        CHECK(same_partition(lc, l, proj, p.width[l]));
        free(proj);
    }
    /* Lifting other weights of the same structure (a retrained base). */
    const fib_graph *bg = fib_base_graph(b);
    fib_graph *retrained;
    int32_t prev, id;
    fib_graph_create(&retrained);
    fib_graph_add_input(retrained, base[0], &prev);
    for (int l = 0; l < 3; l++) {
        double *w = malloc((size_t)(base[l + 1] * base[l]) * sizeof *w);
        double *bias = malloc((size_t)base[l + 1] * sizeof *bias);
        fib_graph_read_dense(bg, l + 1, FIB_DTYPE_F64, w, base[l], bias);
        for (int64_t x = 0; x < base[l + 1] * base[l]; x++)
            w[x] *= 1.5;
        CHECK_OK(fib_graph_add_dense(retrained, prev, base[l + 1], FIB_DTYPE_F64, w, base[l],
                                     bias, FIB_COPY, &id));
        fib_graph_set_activation(retrained, id, l < 2 ? FIB_ACT_RELU : FIB_ACT_LINEAR, 0);
        prev = id;
        free(w);
        free(bias);
    }
    fib_graph *lifted2 = NULL;
    CHECK_OK(fib_lift(b, retrained, &lifted2));
    CHECK(test_output_difference(lifted2, retrained, 6, 32, 2.0) <= 1e-12);
    CHECK(test_output_difference(lifted2, g, 6, 32, 2.0) > 1e-3);
    /* A graph of another structure is refused. */
    fib_graph *other = NULL;
    CHECK(fib_lift(b, g, &other) == FIB_E_MISMATCH);
    CHECK(other == NULL);
    fib_graph_free(lifted2);
    fib_graph_free(retrained);
    fib_coloring_free(lc);
    fib_graph_free(lifted);
    fib_base_free(b);
    fib_coloring_free(c);
    fib_graph_free(g);
    planted_free(&p);
}

static void symmetry_breaking_keeps_outputs(void)
{
    const int64_t base[] = {5, 3, 4, 2};
    planted_mlp p;
    planted_build(&p, 60, 3, base, 5, FIB_DTYPE_F64, 0, FIB_ACT_RELU, 0);
    fib_graph *g = planted_graph(&p, 0);
    fib_graph *broken = NULL, *again = NULL, *other = NULL;
    CHECK_OK(fib_break_symmetry(g, NULL, 42, &broken));
    CHECK_OK(fib_break_symmetry(g, NULL, 42, &again));
    CHECK_OK(fib_break_symmetry(g, NULL, 43, &other));
    for (int l = 0; l <= 3; l++)
        CHECK(test_width(broken, l) == p.width[l]);
    CHECK(test_output_difference(broken, g, 2, 32, 2.0) <= 1e-12);
    /* New units are distinct: more fibers than the base has. */
    fib_coloring *c = test_color(broken, FIB_SYM_FIBERS);
    int64_t k = 0;
    fib_coloring_num_classes(c, 1, &k);
    CHECK(k > base[1] || p.width[1] == base[1]);
    /* Seeded: same seed, same weights; another seed, others. */
    int64_t n = p.width[1] * p.width[0];
    double *w1 = malloc((size_t)n * sizeof *w1), *w2 = malloc((size_t)n * sizeof *w2), *w3 = malloc((size_t)n * sizeof *w3);
    fib_graph_read_dense(broken, 1, FIB_DTYPE_F64, w1, p.width[0], NULL);
    fib_graph_read_dense(again, 1, FIB_DTYPE_F64, w2, p.width[0], NULL);
    fib_graph_read_dense(other, 1, FIB_DTYPE_F64, w3, p.width[0], NULL);
    CHECK(memcmp(w1, w2, (size_t)n * sizeof *w1) == 0);
    CHECK(memcmp(w1, w3, (size_t)n * sizeof *w1) != 0);
    free(w1);
    free(w2);
    free(w3);
    fib_coloring_free(c);
    fib_graph_free(broken);
    fib_graph_free(again);
    fib_graph_free(other);
    fib_graph_free(g);
    planted_free(&p);
}

/* A residual network whose summands are merged differently: A has 2 classes,
 * B has 3, the sum has their 6 combinations; the base gathers. */
static void residual_base_is_exact(void)
{
    uint64_t rng = 17;
    enum { N = 18, IN = 4, OUT = 3 };
    int64_t ps[N], pa[N], pb[N];
    for (int i = 0; i < N; i++) {
        ps[i] = i % 6;
        pa[i] = ps[i] / 3;
        pb[i] = ps[i] % 3;
    }
    double base_a[2][IN], base_b[3][IN], base_o[OUT][6], wa[N * IN], wb[N * IN], wo[OUT * N];
    for (int c = 0; c < 2; c++)
        for (int k = 0; k < IN; k++)
            base_a[c][k] = test_uniform(&rng, -1, 1);
    for (int c = 0; c < 3; c++)
        for (int k = 0; k < IN; k++)
            base_b[c][k] = test_uniform(&rng, -1, 1);
    for (int o = 0; o < OUT; o++)
        for (int c = 0; c < 6; c++)
            base_o[o][c] = test_uniform(&rng, -1, 1);
    for (int i = 0; i < N; i++)
        for (int k = 0; k < IN; k++) {
            wa[i * IN + k] = base_a[pa[i]][k];
            wb[i * IN + k] = base_b[pb[i]][k];
        }
    for (int o = 0; o < OUT; o++)
        for (int i = 0; i < N; i++)
            wo[o * N + i] = base_o[o][ps[i]] / 3.0; /* each sum class has 3 units */
    fib_graph *g;
    int32_t in, a, b, s, out;
    fib_graph_create(&g);
    fib_graph_add_input(g, IN, &in);
    fib_graph_add_dense(g, in, N, FIB_DTYPE_F64, wa, IN, NULL, 0, &a);
    fib_graph_set_activation(g, a, FIB_ACT_RELU, 0);
    fib_graph_add_dense(g, in, N, FIB_DTYPE_F64, wb, IN, NULL, 0, &b);
    CHECK_OK(fib_graph_add_sum(g, a, b, &s));
    fib_graph_set_activation(g, s, FIB_ACT_TANH, 0);
    fib_graph_add_dense(g, s, OUT, FIB_DTYPE_F64, wo, N, NULL, 0, &out);
    fib_coloring *c = test_color(g, FIB_SYM_FIBERS);
    CHECK(same_partition(c, a, pa, N));
    CHECK(same_partition(c, b, pb, N));
    CHECK(same_partition(c, s, ps, N));
    fib_base *base = NULL;
    CHECK_OK(fib_compress(g, c, &base));
    const fib_graph *bg = fib_base_graph(base);
    CHECK(test_width(bg, a) == 2 && test_width(bg, b) == 3 && test_width(bg, s) == 6);
    CHECK(test_output_difference(g, bg, 3, 32, 2.0) <= 1e-12);
    int64_t ga[6], gb[6];
    CHECK_OK(fib_graph_read_sum(bg, s, ga, gb));
    CHECK(ga[5] == 1 && gb[5] == 2);
    fib_graph *lifted = NULL;
    CHECK_OK(fib_lift(base, NULL, &lifted));
    CHECK(test_output_difference(lifted, g, 3, 32, 2.0) <= 1e-12);
    fib_coloring *covers = test_color(g, FIB_SYM_COVERS);
    fib_base *cb = NULL;
    CHECK_OK(fib_compress(g, covers, &cb));
    CHECK(test_output_difference(g, fib_base_graph(cb), 3, 32, 2.0) <= 1e-12);
    fib_graph *broken = NULL;
    CHECK(fib_break_symmetry(g, NULL, 1, &broken) == FIB_E_UNSUPPORTED);
    fib_base_free(cb);
    fib_coloring_free(covers);
    fib_graph_free(lifted);
    fib_base_free(base);
    fib_coloring_free(c);
    fib_graph_free(g);
}

/* A colouring keeps each dense group's merge totals (src/color/merge_totals.c);
 * fib_compress gives the same base, bit for bit, from a fresh colouring of
 * the same classes that keeps none (it reads the weights again). Re-split
 * planted layers, so that the members' sums differ in their last bits and
 * the order of the adds shows. */
static void kept_totals_give_the_same_base(void)
{
    const int64_t base[] = {6, 5, 7, 4, 3};
    for (int variant = 0; variant < 6; variant++) {
        int32_t dtype = variant % 2 ? FIB_DTYPE_F64 : FIB_DTYPE_F32;
        int32_t symmetry = variant < 2 || variant >= 4 ? FIB_SYM_FIBERS : FIB_SYM_COVERS;
        planted_mlp p;
        planted_build(&p, 70 + (uint64_t)variant, 4, base, 5, dtype, variant, FIB_ACT_RELU, 1);
        fib_graph *g = planted_graph(&p, 0);
        fib_color_options o;
        fib_color_options_init(&o, sizeof o);
        o.symmetry = symmetry;
        if (variant >= 4) { /* ABS: the same classes, found with a tolerance */
            o.tolerance = FIB_TOL_ABS;
            o.eps = 1e-6;
        }
        fib_coloring *kept = NULL, *fresh = NULL;
        CHECK_OK(fib_color(g, &o, &kept));
        int64_t hidden_with_totals = 0;
        for (int32_t l = 1; l <= 4; l++)
            hidden_with_totals += kept->merge_totals && kept->merge_totals[l].sums;
        CHECK(hidden_with_totals >= 2); /* the test bites: totals were kept */
        CHECK_OK(fib_coloring_create(g, symmetry, &fresh));
        for (int32_t l = 0; l <= 4; l++)
            CHECK_OK(fib_coloring_set_group(fresh, l, kept->parts[l].color, p.width[l]));
        fib_base *a = NULL, *b = NULL;
        CHECK_OK(fib_compress(g, kept, &a));
        CHECK_OK(fib_compress(g, fresh, &b));
        for (int32_t l = 1; a && b && l <= 4; l++) {
            int64_t ko = test_width(fib_base_graph(a), l), ki = test_width(fib_base_graph(a), l - 1);
            CHECK(ko == test_width(fib_base_graph(b), l));
            double *wa = malloc((size_t)(ko * ki) * sizeof *wa), *wb = malloc((size_t)(ko * ki) * sizeof *wb);
            double *ba = malloc((size_t)ko * sizeof *ba), *bb = malloc((size_t)ko * sizeof *bb);
            CHECK_OK(fib_graph_read_dense(fib_base_graph(a), l, FIB_DTYPE_F64, wa, ki, ba));
            CHECK_OK(fib_graph_read_dense(fib_base_graph(b), l, FIB_DTYPE_F64, wb, ki, bb));
            CHECK(!memcmp(wa, wb, (size_t)(ko * ki) * sizeof *wa));
            CHECK(!memcmp(ba, bb, (size_t)ko * sizeof *ba));
            free(wa), free(wb), free(ba), free(bb);
        }
        fib_base_free(a);
        fib_base_free(b);
        fib_coloring_free(kept);
        fib_coloring_free(fresh);
        fib_graph_free(g);
        planted_free(&p);
    }
}

/* A model whose dense groups merge nothing (distinct random rows) compresses
 * to a base that holds its weights in their own dtype, float32 and
 * bfloat16, not a float64 copy twice (four times) the model: the same
 * values and the same outputs. */
static void nothing_to_merge_keeps_the_dtype(void)
{
    enum { N_IN = 5, N_H = 7, N_OUT = 3 };
    float w1f[N_H * N_IN], w2f[N_OUT * N_H], b1f[N_H];
    uint16_t w1h[N_H * N_IN], w2h[N_OUT * N_H], b1h[N_H];
    uint64_t seed = 7;
    for (int x = 0; x < N_H * N_IN + N_OUT * N_H + N_H; x++) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        float v = (float)((int)(seed >> 40) % 1000 - 500) / 128.0f; /* bfloat16-exact */
        uint32_t bits;
        memcpy(&bits, &v, 4);
        if (x < N_H * N_IN)
            w1f[x] = v, w1h[x] = (uint16_t)(bits >> 16);
        else if (x < N_H * N_IN + N_OUT * N_H)
            w2f[x - N_H * N_IN] = v, w2h[x - N_H * N_IN] = (uint16_t)(bits >> 16);
        else
            b1f[x - N_H * N_IN - N_OUT * N_H] = v, b1h[x - N_H * N_IN - N_OUT * N_H] =
                                                      (uint16_t)(bits >> 16);
    }
    for (int half = 0; half < 2; half++) {
        int32_t dtype = half ? FIB_DTYPE_BF16 : FIB_DTYPE_F32;
        fib_graph *g = NULL;
        int32_t in, h, out;
        CHECK_OK(fib_graph_create(&g));
        CHECK_OK(fib_graph_add_input(g, N_IN, &in));
        CHECK_OK(fib_graph_add_dense(g, in, N_H, dtype, half ? (void *)w1h : (void *)w1f, N_IN,
                                     half ? (void *)b1h : (void *)b1f, 0, &h));
        CHECK_OK(fib_graph_set_activation(g, h, FIB_ACT_RELU, 0));
        CHECK_OK(fib_graph_add_dense(g, h, N_OUT, dtype, half ? (void *)w2h : (void *)w2f, N_H,
                                     NULL, 0, &out));
        fib_coloring *c = NULL;
        fib_base *base = NULL;
        CHECK_OK(fib_color(g, NULL, &c));
        int64_t k = 0;
        CHECK_OK(fib_coloring_num_classes(c, h, &k));
        CHECK(k == N_H);
        CHECK_OK(fib_compress(g, c, &base));
        const fib_graph *bg = fib_base_graph(base);
        for (int32_t group = h; bg && group <= out; group++) {
            int32_t held = 0;
            CHECK_OK(fib_graph_tensor_dtype(bg, group, 0, &held));
            CHECK(held == dtype);
            double a[N_H * N_IN], b[N_H * N_IN];
            int64_t n = group == h ? N_H * N_IN : N_OUT * N_H;
            CHECK_OK(fib_graph_read_tensor(g, group, 0, FIB_DTYPE_F64, a, n));
            CHECK_OK(fib_graph_read_tensor(bg, group, 0, FIB_DTYPE_F64, b, n));
            CHECK(!memcmp(a, b, (size_t)n * sizeof *a));
        }
        double x[2 * N_IN], ya[2 * N_OUT], yb[2 * N_OUT];
        for (int i = 0; i < 2 * N_IN; i++)
            x[i] = 0.25 * i - 1.0;
        CHECK_OK(fib_graph_forward(g, 2, FIB_DTYPE_F64, x, ya));
        CHECK(bg && fib_graph_forward(bg, 2, FIB_DTYPE_F64, x, yb) == FIB_OK);
        CHECK(!memcmp(ya, yb, sizeof ya));
        fib_base_free(base);
        fib_coloring_free(c);
        fib_graph_free(g);
    }
}

/* 3 inputs -> 4 ReLU units whose rows 0, 1 and rows 2, 3 are equal (two
 * classes of two) -> 2 outputs by w2 [2 x 4] (borrowed), float64. */
static fib_graph *two_pairs_graph(const double *w2, int32_t *h, int32_t *out)
{
    static const double w1[4 * 3] = {0.1, -0.7, 1.0 / 3.0, 0.1, -0.7, 1.0 / 3.0,
                                     2.5, 0.3, -0.9, 2.5, 0.3, -0.9};
    static const double b1[4] = {0.01, 0.01, -0.2, -0.2};
    fib_graph *g = NULL;
    int32_t in;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, 3, &in));
    CHECK_OK(fib_graph_add_dense(g, in, 4, FIB_DTYPE_F64, w1, 3, b1, 0, h));
    CHECK_OK(fib_graph_set_activation(g, *h, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_dense(g, *h, 2, FIB_DTYPE_F64, w2, 4, NULL, 0, out));
    return g;
}

/* fib_compress_ex with FIB_DTYPE_F32 makes every merged dense block
 * float32: each value the float64 merge rounded once (what a float32 file
 * of the float64 base holds); NULL options give fib_compress's base; a
 * merged weight float32 cannot hold is refused, named. */
static void compress_ex_float32_rounds_each_merged_weight_once(void)
{
    double w2[2 * 4] = {0.3, 0.6, -1.1, 0.7, 1.0 / 7.0, 0.2, 0.4, -0.5};
    for (int overflow = 0; overflow < 2; overflow++) {
        w2[0] = overflow ? 3e38 : 0.3;
        w2[1] = overflow ? 3e38 : 0.6; /* summed over a class: 6e38 */
        int32_t h, out;
        fib_graph *g = two_pairs_graph(w2, &h, &out);
        fib_coloring *c = NULL;
        CHECK_OK(fib_color(g, NULL, &c));
        fib_compress_options o;
        CHECK_OK(fib_compress_options_init(&o, sizeof o));
        CHECK(o.dtype == 0);
        fib_base *wide = NULL, *same = NULL, *narrow = NULL;
        CHECK_OK(fib_compress(g, c, &wide));
        CHECK_OK(fib_compress_ex(g, c, NULL, &same));
        o.dtype = FIB_DTYPE_F32;
        int32_t st = fib_compress_ex(g, c, &o, &narrow);
        if (overflow) {
            CHECK(st == FIB_E_NONFINITE && narrow == NULL);
            CHECK(strstr(fib_last_error(), "group 2: merged weight 0 = 6e+38 does not fit in "
                                           "float32") != NULL);
        } else {
            CHECK_OK(st);
        }
        for (int32_t group = h; !overflow && narrow && group <= out; group++)
            for (int32_t t = 0; t < (group == h ? 2 : 1); t++) {
                double a[8], b[8], x[8];
                int64_t shape[4];
                int32_t held = 0;
                CHECK_OK(fib_graph_tensor_info(fib_base_graph(wide), group, t, NULL, shape, NULL));
                int64_t n = shape[0] * shape[1] * shape[2] * shape[3];
                CHECK_OK(fib_graph_tensor_dtype(fib_base_graph(narrow), group, t, &held));
                CHECK(held == FIB_DTYPE_F32);
                CHECK_OK(fib_graph_read_tensor(fib_base_graph(wide), group, t, FIB_DTYPE_F64, a, 8));
                CHECK_OK(fib_graph_read_tensor(fib_base_graph(same), group, t, FIB_DTYPE_F64, x, 8));
                CHECK_OK(fib_graph_read_tensor(fib_base_graph(narrow), group, t, FIB_DTYPE_F64, b, 8));
                int rounded_apart = 0;
                for (int64_t k = 0; k < n; k++) {
                    CHECK(b[k] == (double)(float)a[k] && x[k] == a[k]);
                    rounded_apart += b[k] != a[k];
                }
                CHECK(group == out || rounded_apart > 0); /* float64 sums did round */
            }
        o.dtype = FIB_DTYPE_BF16;
        CHECK(fib_compress_ex(g, c, &o, &narrow) == FIB_E_INVALID);
        o.struct_size = 4;
        CHECK(fib_compress_ex(g, c, &o, &narrow) == FIB_E_INVALID);
        CHECK(fib_compress_options_init(&o, 4) == FIB_E_INVALID);
        fib_base_free(wide);
        fib_base_free(same);
        fib_base_free(narrow);
        fib_coloring_free(c);
        fib_graph_free(g);
    }
}

/* The held dtype of every dense group's tensors (weight, bias) of a lift. */
static bool lift_held(const fib_graph *lifted, int32_t first, int32_t last, int32_t dtype)
{
    bool all = true;
    for (int32_t group = first; group <= last; group++)
        for (int32_t t = 0; t < (group == first ? 2 : 1); t++) {
            int32_t held = 0;
            CHECK_OK(fib_graph_tensor_dtype(lifted, group, t, &held));
            all = all && held == dtype;
        }
    return all;
}

/* fib_lift holds each lifted dense block in the precision of the block it
 * lifts: the lift of a float32 base is float32, each weight the float64
 * lift's rounded once; fib_lift_dtype asks for either. The original's
 * widths are known to the base (fib_base_original_units). */
static void lift_keeps_the_base_precision(void)
{
    /* the lift splits the outgoing weights of the two classes in halves;
     * 1/3 and 1/7 round in float32 */
    double w2[2 * 4] = {0.3, 0.6, -1.1, 0.7, 1.0 / 7.0, 0.2, 0.4, -0.5};
    for (int overflow = 0; overflow < 2; overflow++) {
        w2[0] = overflow ? 1e39 : 0.3; /* lifted: (1e39 + 0.6) / 2, beyond float32 */
        int32_t h, out;
        fib_graph *g = two_pairs_graph(w2, &h, &out);
        fib_coloring *c = NULL;
        CHECK_OK(fib_color(g, NULL, &c));
        fib_compress_options o;
        CHECK_OK(fib_compress_options_init(&o, sizeof o));
        fib_base *wide = NULL, *narrow = NULL;
        CHECK_OK(fib_compress(g, c, &wide));
        o.dtype = FIB_DTYPE_F32;
        if (!overflow)
            CHECK_OK(fib_compress_ex(g, c, &o, &narrow));
        fib_graph *l64 = NULL, *l64_asked = NULL, *l32 = NULL, *l32_asked = NULL;
        CHECK_OK(fib_lift(wide, NULL, &l64));
        CHECK_OK(fib_lift_dtype(wide, NULL, FIB_DTYPE_F64, &l64_asked));
        CHECK(l64 && lift_held(l64, h, out, FIB_DTYPE_F64));
        if (overflow) {
            CHECK(fib_lift_dtype(wide, NULL, FIB_DTYPE_F32, &l32) == FIB_E_NONFINITE);
            CHECK(l32 == NULL);
            CHECK(strstr(fib_last_error(), "fib_lift_dtype: group 2: a lifted weight does "
                                           "not fit in float32") != NULL);
        } else {
            CHECK_OK(fib_lift(narrow, NULL, &l32));
            CHECK_OK(fib_lift_dtype(wide, NULL, FIB_DTYPE_F32, &l32_asked));
            CHECK(l32 && lift_held(l32, h, out, FIB_DTYPE_F32));
            CHECK(l32_asked && lift_held(l32_asked, h, out, FIB_DTYPE_F32));
        }
        for (int32_t group = h; l32 && l32_asked && group <= out; group++)
            for (int32_t t = 0; t < (group == h ? 2 : 1); t++) {
                double a[16], a_asked[16], b[16], b_asked[16];
                int64_t shape[4];
                CHECK_OK(fib_graph_tensor_info(l64, group, t, NULL, shape, NULL));
                int64_t n = shape[0] * shape[1] * shape[2] * shape[3];
                CHECK_OK(fib_graph_read_tensor(l64, group, t, FIB_DTYPE_F64, a, 16));
                CHECK_OK(fib_graph_read_tensor(l64_asked, group, t, FIB_DTYPE_F64, a_asked, 16));
                CHECK_OK(fib_graph_read_tensor(l32, group, t, FIB_DTYPE_F64, b, 16));
                CHECK_OK(fib_graph_read_tensor(l32_asked, group, t, FIB_DTYPE_F64, b_asked, 16));
                int rounded_apart = 0;
                for (int64_t k = 0; k < n; k++) {
                    CHECK(a_asked[k] == a[k] && b[k] == (double)(float)a[k] && b_asked[k] == b[k]);
                    rounded_apart += b[k] != a[k];
                }
                CHECK(rounded_apart > 0); /* 1/3 and 1/7 (split in halves) did round */
            }
        if (l32)
            CHECK(test_output_difference(l32, l64, 4, 32, 2.0) <= 1e-6);
        fib_graph *other = NULL;
        CHECK(fib_lift_dtype(wide, NULL, FIB_DTYPE_BF16, &other) == FIB_E_INVALID);
        CHECK(fib_lift_dtype(NULL, NULL, 0, &other) == FIB_E_NULL && other == NULL);
        const int64_t widths[3] = {3, 4, 2};
        for (int32_t group = 0; group < 3; group++) {
            int64_t units = -1;
            CHECK_OK(fib_base_original_units(wide, group, &units));
            CHECK(units == widths[group]);
        }
        int64_t units = -1;
        CHECK(fib_base_original_units(wide, 3, &units) == FIB_E_RANGE && units == -1);
        CHECK(fib_base_original_units(wide, -1, &units) == FIB_E_RANGE);
        CHECK(fib_base_original_units(wide, 0, NULL) == FIB_E_NULL);
        CHECK(fib_base_original_units(NULL, 0, &units) == FIB_E_NULL);
        fib_graph_free(l64);
        fib_graph_free(l64_asked);
        fib_graph_free(l32);
        fib_graph_free(l32_asked);
        fib_base_free(wide);
        fib_base_free(narrow);
        fib_coloring_free(c);
        fib_graph_free(g);
    }
}

/* fib_compress_options.borrow: a dense group that merges nothing (its units
 * and its source's kept) borrows the model's weights (a change to them is
 * seen by the base), with the values of the owning base; a merged group and
 * a group over a merged source still own their merged copies. */
static void compress_ex_borrow_shares_unmerged_weights_only(void)
{
    /* h1: 3 distinct rows over the inputs (nothing merges); h2: rows 0, 1
     * equal (one class of two); out reads the merged h2 */
    double w1[3 * 2] = {0.5, -1.0, 0.25, 2.0, -0.75, 1.5};
    double b1[3] = {0.1, 0.2, 0.3};
    double w2[3 * 3] = {0.3, -0.2, 0.9, 0.3, -0.2, 0.9, -0.4, 0.6, 0.1};
    double w3[2 * 3] = {1.0, -2.0, 0.5, 0.25, 0.75, -1.5};
    fib_graph *g = NULL;
    int32_t in, h1, h2, out;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, 2, &in));
    CHECK_OK(fib_graph_add_dense(g, in, 3, FIB_DTYPE_F64, w1, 2, b1, 0, &h1));
    CHECK_OK(fib_graph_set_activation(g, h1, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_dense(g, h1, 3, FIB_DTYPE_F64, w2, 3, NULL, 0, &h2));
    CHECK_OK(fib_graph_set_activation(g, h2, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_dense(g, h2, 2, FIB_DTYPE_F64, w3, 3, NULL, 0, &out));
    fib_coloring *c = NULL;
    CHECK_OK(fib_color(g, NULL, &c));
    fib_compress_options o;
    CHECK_OK(fib_compress_options_init(&o, sizeof o));
    CHECK(o.borrow == 0);
    o.borrow = 1;
    fib_base *owning = NULL, *borrowing = NULL;
    CHECK_OK(fib_compress(g, c, &owning));
    CHECK_OK(fib_compress_ex(g, c, &o, &borrowing));
    int64_t k = 0;
    CHECK_OK(fib_graph_group_info(fib_base_graph(borrowing), h2, NULL, &k, NULL, NULL, NULL,
                                  NULL, NULL));
    CHECK(k == 2); /* h2 merged */
    double x[2] = {0.7, -0.3}, y_own[2], y_borrow[2];
    CHECK_OK(fib_graph_forward(fib_base_graph(owning), 1, FIB_DTYPE_F64, x, y_own));
    CHECK_OK(fib_graph_forward(fib_base_graph(borrowing), 1, FIB_DTYPE_F64, x, y_borrow));
    CHECK(y_own[0] == y_borrow[0] && y_own[1] == y_borrow[1]);
    /* a change to the model's weights: seen by the borrowed h1 only */
    w1[0] = 0.625;
    w2[0] = w2[3] = 0.35;
    double a[9], b[9];
    CHECK_OK(fib_graph_read_tensor(fib_base_graph(borrowing), h1, 0, FIB_DTYPE_F64, a, 6));
    CHECK_OK(fib_graph_read_tensor(fib_base_graph(owning), h1, 0, FIB_DTYPE_F64, b, 6));
    CHECK(a[0] == 0.625 && b[0] == 0.5);
    CHECK_OK(fib_graph_read_tensor(fib_base_graph(borrowing), h2, 0, FIB_DTYPE_F64, a, 6));
    CHECK(a[0] == 0.3); /* merged: the base's own copy */
    CHECK_OK(fib_graph_read_tensor(fib_base_graph(borrowing), out, 0, FIB_DTYPE_F64, a, 4));
    CHECK(a[0] == 1.0 - 2.0 && a[1] == 0.5 && a[3] == -1.5); /* summed over h2's class */
    fib_base_free(owning);
    fib_base_free(borrowing);
    fib_coloring_free(c);
    fib_graph_free(g);
}

int main(void)
{
    RUN(base_is_exact_and_is_the_planted_base);
    RUN(compress_ex_borrow_shares_unmerged_weights_only);
    RUN(forward_matches_reference);
    RUN(fibers_sync_activity_opfibers_sync_errors);
    RUN(covers_survive_gradient_descent);
    RUN(lift_round_trip);
    RUN(symmetry_breaking_keeps_outputs);
    RUN(residual_base_is_exact);
    RUN(kept_totals_give_the_same_base);
    RUN(nothing_to_merge_keeps_the_dtype);
    RUN(compress_ex_float32_rounds_each_merged_weight_once);
    RUN(lift_keeps_the_base_precision);
    return test_failures ? 1 : 0;
}
