/* Gated recurrent blocks (LSTM, GRU) and the last step: planted symmetry is
 * found exactly (fibers, opfibers, covers), the base is exact, the
 * recurrent colouring is a true fixed point, bad inputs give their codes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checks.h"
#include "fibration.h"
#include "plant_lift.h"
#include "planted.h"
#include "testing.h"

int test_failures;

#define N_FEAT 5
#define LENGTH 7
#define N_OUT 2

static int64_t gates(int32_t op)
{
    return op == FIB_OP_LSTM ? 4 : 3;
}

static int32_t add_rnn(fib_graph *g, int32_t op, int32_t source, int64_t hidden,
                       int32_t dtype, const void *wi, const void *wh, const void *bi,
                       const void *bh, uint32_t flags, int32_t *id)
{
    return op == FIB_OP_LSTM
               ? fib_graph_add_lstm(g, source, hidden, dtype, wi, wh, bi, bh, flags, id)
               : fib_graph_add_gru(g, source, hidden, dtype, wi, wh, bi, bh, flags, id);
}

/* Adds a random recurrent layer (weights copied into the graph). */
static int32_t add_random_rnn(fib_graph *g, int32_t op, int32_t source, int64_t n_in,
                              int64_t hidden, uint64_t *rng, int biases)
{
    int64_t rows = gates(op) * hidden;
    double *wi = test_random_array(rng, rows * n_in, -(1.0), 1.0), *wh = test_random_array(rng, rows * hidden, -(1.0), 1.0);
    double *bi = test_random_array(rng, rows, -(0.5), 0.5), *bh = test_random_array(rng, rows, -(0.5), 0.5);
    int32_t id = -1;
    CHECK_OK(add_rnn(g, op, source, hidden, FIB_DTYPE_F64, wi, wh, biases ? bi : NULL,
                     biases ? bh : NULL, FIB_COPY, &id));
    free(wi), free(wh), free(bi), free(bh);
    return id;
}

/* input (N_FEAT x LENGTH) -> rnn (h1) -> rnn (h2) -> last step -> dense head:
 * groups 0 .. 4. */
static fib_graph *random_net(int32_t op, uint64_t seed, int64_t h1, int64_t h2)
{
    uint64_t rng = seed;
    fib_graph *g = NULL;
    int32_t in, r1, r2, last, head;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, N_FEAT, LENGTH, 1, &in));
    r1 = add_random_rnn(g, op, in, N_FEAT, h1, &rng, 1);
    r2 = add_random_rnn(g, op, r1, h1, h2, &rng, 1);
    CHECK_OK(fib_graph_add_last_step(g, r2, &last));
    double *w = test_random_array(&rng, N_OUT * h2, -(1.0), 1.0), *b = test_random_array(&rng, N_OUT, -(0.5), 0.5);
    CHECK_OK(fib_graph_add_dense(g, last, N_OUT, FIB_DTYPE_F64, w, h2, b, FIB_COPY, &head));
    free(w), free(b);
    CHECK(in == 0 && r1 == 1 && r2 == 2 && last == 3 && head == 4);
    return g;
}

/* Max relative difference of two graphs' outputs on random sequences. */
static int64_t *identity(int64_t n)
{
    int64_t *p = malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; i < n; i++)
        p[i] = i;
    return p;
}

typedef struct planted_rnn {
    fib_graph *base, *full;
    int64_t *proj[5];
    int64_t widths[5];
} planted_rnn;

/* A random base lifted by random projections: the recurrent groups get
 * classes of 1..4 units; the last step follows its sequence. */
static void plant(planted_rnn *p, int32_t op, uint64_t seed, int64_t h1, int64_t h2)
{
    uint64_t rng = seed * 7919 + 1;
    p->base = random_net(op, seed, h1, h2);
    p->proj[0] = identity(N_FEAT);
    p->widths[0] = N_FEAT;
    p->proj[1] = random_projection(&rng, h1, 4, &p->widths[1]);
    p->proj[2] = random_projection(&rng, h2, 4, &p->widths[2]);
    p->widths[3] = p->widths[2];
    p->proj[3] = malloc((size_t)p->widths[3] * sizeof(int64_t));
    memcpy(p->proj[3], p->proj[2], (size_t)p->widths[3] * sizeof(int64_t));
    p->proj[4] = identity(N_OUT);
    p->widths[4] = N_OUT;
    p->full = plant_by_lift(p->base, p->proj, p->widths);
    CHECK(p->full != NULL);
}

static void plant_free(planted_rnn *p)
{
    fib_graph_free(p->base);
    fib_graph_free(p->full);
    for (int i = 0; i < 5; i++)
        free(p->proj[i]);
}

/* Reads tensor `index` of a group into a new array. */
static double *read_tensor(const fib_graph *g, int32_t group, int32_t index, int64_t *shape)
{
    int32_t ndim = 0;
    const char *name = NULL;
    CHECK_OK(fib_graph_tensor_info(g, group, index, &ndim, shape, &name));
    int64_t n = shape[0] * shape[1] * shape[2] * shape[3];
    double *x = malloc((size_t)n * sizeof *x);
    CHECK_OK(fib_graph_read_tensor(g, group, index, FIB_DTYPE_F64, x, n));
    return x;
}

/* The compressed recurrent group's weights are the planted base's, up to
 * the renumbering of classes (canonical class c = planted base unit
 * map[c]). */
static void check_base_weights(const fib_graph *planted, const fib_graph *found,
                               int32_t group, int64_t n_gates, const int64_t *map_own,
                               const int64_t *map_src)
{
    int64_t k = test_width(planted, group);
    for (int32_t t = 0; t < 4; t++) {
        int64_t sp[4], sf[4];
        double *a = read_tensor(planted, group, t, sp), *b = read_tensor(found, group, t, sf);
        CHECK(memcmp(sp, sf, sizeof sp) == 0);
        double worst = 0;
        for (int64_t q = 0; q < n_gates; q++)
            for (int64_t c = 0; c < k; c++)
                for (int64_t x = 0; x < sp[1]; x++) {
                    const int64_t *cols = t == 0 ? map_src : map_own;
                    double want = a[(q * k + map_own[c]) * sp[1] + (t < 2 ? cols[x] : 0)];
                    double got = b[(q * k + c) * sp[1] + x];
                    worst = fmax(worst, fabs(want - got) / (1 + fabs(want)));
                }
        CHECK(worst < 1e-12);
        free(a), free(b);
    }
}

/* Canonical class -> planted label, from a colouring equal to the labels. */
static int64_t *class_map(const int64_t *labels, int64_t n, int64_t k)
{
    int64_t *canon = malloc((size_t)n * sizeof *canon), *map = malloc((size_t)k * sizeof *map);
    canonical(labels, n, canon);
    for (int64_t i = 0; i < n; i++)
        map[canon[i]] = labels[i];
    free(canon);
    return map;
}

static void planted_classes_are_found_and_base_is_exact(void)
{
    const int32_t ops[] = {FIB_OP_LSTM, FIB_OP_GRU};
    for (int v = 0; v < 6; v++) {
        int32_t op = ops[v % 2];
        planted_rnn p;
        plant(&p, op, 100 + (uint64_t)v, 4, 3);
        if (!p.full) {
            plant_free(&p);
            continue;
        }
        CHECK(test_width(p.full, 1) > 4 || test_width(p.full, 2) > 3);
        /* The lift computes what the base computes. */
        CHECK(test_output_difference(p.full, p.base, 7 + (uint64_t)v, 9, 2.0) < 1e-10);
        const int32_t syms[] = {FIB_SYM_FIBERS, FIB_SYM_OPFIBERS, FIB_SYM_COVERS};
        for (int s = 0; s < 3; s++) {
            fib_coloring *c = test_color(p.full, syms[s]);
            for (int32_t grp = 1; grp <= 3; grp++)
                CHECK(same_partition(c, grp, p.proj[grp], p.widths[grp]));
            int32_t balanced = 0;
            CHECK_OK(fib_coloring_is_balanced(p.full, c, 0, &balanced));
            CHECK(balanced == 1);
            fib_base *b = NULL;
            CHECK_OK(fib_compress(p.full, c, &b));
            const fib_graph *bg = fib_base_graph(b);
            const int64_t base_widths[] = {N_FEAT, 4, 3, 3, N_OUT};
            for (int32_t grp = 0; grp < 5; grp++)
                CHECK(test_width(bg, grp) == base_widths[grp]);
            int64_t rows = 0, cols = 0;
            CHECK_OK(fib_graph_group_positions(bg, 2, &rows, &cols));
            CHECK(rows == LENGTH && cols == 1);
            double d = test_output_difference(p.full, bg, 50 + (uint64_t)v, 9, 2.0);
            CHECK(d < 1e-10);
            if (s == 0) {
                int64_t *m1 = class_map(p.proj[1], p.widths[1], 4);
                int64_t *m2 = class_map(p.proj[2], p.widths[2], 3);
                int64_t *m0 = identity(N_FEAT);
                check_base_weights(p.base, bg, 1, gates(op), m1, m0);
                check_base_weights(p.base, bg, 2, gates(op), m2, m1);
                /* The base lifted again is the planted network's function. */
                fib_graph *lifted = NULL;
                CHECK_OK(fib_lift(b, NULL, &lifted));
                CHECK(lifted && test_width(lifted, 1) == p.widths[1]);
                if (lifted)
                    CHECK(test_output_difference(lifted, p.full, 3, 9, 2.0) < 1e-10);
                fib_graph_free(lifted);
                free(m0), free(m1), free(m2);
            }
            fib_base_free(b);
            fib_coloring_free(c);
        }
        plant_free(&p);
    }
}

/* Rebuilds a 5-group recurrent net from its tensors, with the first
 * recurrent layer's w_hh replaced. */
static fib_graph *rebuild(const fib_graph *g, int32_t op, const double *wh1)
{
    fib_graph *r = NULL;
    int32_t id;
    CHECK_OK(fib_graph_create(&r));
    CHECK_OK(fib_graph_add_input_positions(r, N_FEAT, LENGTH, 1, &id));
    for (int32_t grp = 1; grp <= 2; grp++) {
        int64_t s[4][4];
        double *t[4];
        for (int x = 0; x < 4; x++)
            t[x] = read_tensor(g, grp, x, s[x]);
        CHECK_OK(add_rnn(r, op, grp - 1, test_width(g, grp), FIB_DTYPE_F64, t[0],
                         grp == 1 ? wh1 : t[1], t[2], t[3], FIB_COPY, &id));
        for (int x = 0; x < 4; x++)
            free(t[x]);
    }
    CHECK_OK(fib_graph_add_last_step(r, 2, &id));
    int64_t s[4];
    double *w = read_tensor(g, 4, 0, s), *b = read_tensor(g, 4, 1, s);
    CHECK_OK(fib_graph_add_dense(r, 3, N_OUT, FIB_DTYPE_F64, w, test_width(g, 3), b, FIB_COPY, &id));
    free(w), free(b);
    return r;
}

/* Re-splitting w_hh by random positive parts inside each class keeps the
 * colour sums (fibers) but not the column sums (opfibers): covers are
 * strictly finer than fibers, and the cover base is still exact. */
static void covers_finer_than_fibers(void)
{
    const int32_t ops[] = {FIB_OP_LSTM, FIB_OP_GRU};
    for (int v = 0; v < 2; v++) {
        int32_t op = ops[v];
        planted_rnn p;
        plant(&p, op, 300 + (uint64_t)v, 4, 3);
        int64_t n = p.widths[1], s[4];
        double *wh = read_tensor(p.full, 1, 1, s);
        uint64_t rng = 99;
        for (int64_t row = 0; row < gates(op) * n; row++)
            for (int64_t c = 0; c < 4; c++) {
                double total = 0, parts = 0, w[64];
                int64_t members = 0;
                for (int64_t k = 0; k < n; k++)
                    if (p.proj[1][k] == c) {
                        total += wh[row * n + k];
                        parts += w[members++] = test_uniform(&rng, 0.2, 1.0);
                    }
                for (int64_t k = 0, m = 0; k < n; k++)
                    if (p.proj[1][k] == c)
                        wh[row * n + k] = total * w[m++] / parts;
            }
        fib_graph *g = rebuild(p.full, op, wh);
        free(wh);
        fib_coloring *fib = test_color(g, FIB_SYM_FIBERS), *cov = test_color(g, FIB_SYM_COVERS);
        CHECK(same_partition(fib, 1, p.proj[1], n));
        CHECK(test_num_classes(cov, 1) > test_num_classes(fib, 1));
        int32_t balanced = 0;
        CHECK_OK(fib_coloring_is_balanced(g, cov, 0, &balanced));
        CHECK(balanced == 1);
        fib_base *b = NULL;
        CHECK_OK(fib_compress(g, cov, &b));
        CHECK(test_width(fib_base_graph(b), 1) == test_num_classes(cov, 1));
        CHECK(test_output_difference(g, fib_base_graph(b), 11, 9, 2.0) < 1e-10);
        fib_base_free(b);
        CHECK_OK(fib_compress(g, fib, &b));
        CHECK(test_width(fib_base_graph(b), 1) == 4);
        CHECK(test_output_difference(g, fib_base_graph(b), 12, 9, 2.0) < 1e-10);
        fib_base_free(b);
        fib_coloring_free(fib);
        fib_coloring_free(cov);
        fib_graph_free(g);
        plant_free(&p);
    }
}

static void random_network_has_no_symmetry(void)
{
    const int32_t ops[] = {FIB_OP_LSTM, FIB_OP_GRU};
    for (int v = 0; v < 2; v++) {
        fib_graph *g = random_net(ops[v], 500 + (uint64_t)v, 10, 6);
        const int32_t syms[] = {FIB_SYM_FIBERS, FIB_SYM_OPFIBERS, FIB_SYM_COVERS};
        for (int s = 0; s < 3; s++) {
            fib_coloring *c = test_color(g, syms[s]);
            CHECK(test_num_classes(c, 1) == 10);
            CHECK(test_num_classes(c, 2) == 6);
            CHECK(test_num_classes(c, 3) == 6);
            fib_coloring_free(c);
        }
        fib_graph_free(g);
    }
}

/* Two identical chains through w_hh: unit p of a chain reads unit p - 1 of
 * its own chain. Every unit sees the same input and biases, so only the
 * recurrence tells positions apart, one more per refinement round: the
 * fixed point pairs position p of chain A with position p of chain B, and
 * needs CHAIN rounds. A fixed number of passes (say 5) would stop at 6
 * classes. */
#define CHAIN 9
static void fixed_point_needs_many_rounds(void)
{
    const int32_t ops[] = {FIB_OP_LSTM, FIB_OP_GRU};
    for (int v = 0; v < 2; v++) {
        int32_t op = ops[v];
        int64_t h = 2 * CHAIN, n_gates = gates(op), rows = n_gates * h;
        /* Scramble: unit perm[2p + chain] is position p of the chain. */
        int64_t perm[2 * CHAIN], expect[2 * CHAIN];
        uint64_t rng = 77 + (uint64_t)v;
        for (int64_t i = 0; i < h; i++)
            perm[i] = i;
        for (int64_t i = h - 1; i > 0; i--) {
            int64_t j = (int64_t)(test_rand(&rng) % (uint64_t)(i + 1)), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        double *wi = malloc((size_t)(rows * N_FEAT) * sizeof *wi);
        double *wh = calloc((size_t)(rows * h), sizeof *wh);
        double *bi = malloc((size_t)rows * sizeof *bi);
        double *gate_w = test_random_array(&rng, n_gates * N_FEAT, -(1.0), 1.0);
        double *gate_b = test_random_array(&rng, n_gates, -(0.5), 0.5);
        for (int64_t q = 0; q < n_gates; q++)
            for (int64_t j = 0; j < h; j++) {
                for (int64_t k = 0; k < N_FEAT; k++)
                    wi[(q * h + j) * N_FEAT + k] = gate_w[q * N_FEAT + k];
                bi[q * h + j] = gate_b[q];
            }
        for (int64_t p = 0; p < CHAIN; p++)
            for (int64_t chain = 0; chain < 2; chain++) {
                int64_t unit = perm[2 * p + chain];
                expect[unit] = p;
                if (p > 0) /* every gate reads the predecessor */
                    for (int64_t q = 0; q < n_gates; q++)
                        wh[(q * h + unit) * h + perm[2 * (p - 1) + chain]] = 0.9 + 0.1 * (double)q;
            }
        fib_graph *g = NULL;
        int32_t in, r, last, head;
        CHECK_OK(fib_graph_create(&g));
        CHECK_OK(fib_graph_add_input_positions(g, N_FEAT, LENGTH, 1, &in));
        CHECK_OK(add_rnn(g, op, in, h, FIB_DTYPE_F64, wi, wh, bi, NULL, 0, &r));
        CHECK_OK(fib_graph_add_last_step(g, r, &last));
        double *w = test_random_array(&rng, N_OUT * h, -(1.0), 1.0);
        CHECK_OK(fib_graph_add_dense(g, last, N_OUT, FIB_DTYPE_F64, w, h, NULL, 0, &head));
        fib_coloring *c = test_color(g, FIB_SYM_FIBERS);
        CHECK(test_num_classes(c, r) == CHAIN);
        CHECK(same_partition(c, r, expect, h));
        fib_base *b = NULL;
        CHECK_OK(fib_compress(g, c, &b));
        CHECK(test_width(fib_base_graph(b), r) == CHAIN);
        CHECK(test_output_difference(g, fib_base_graph(b), 5, 9, 2.0) < 1e-10);
        fib_base_free(b);
        fib_coloring_free(c);
        fib_graph_free(g);
        free(wi), free(wh), free(bi), free(gate_w), free(gate_b), free(w);
    }
}

/* A recurrent layer whose units all compute the same thing: per gate, one
 * w_ih row and one bias for every unit, and a constant w_hh. */
static int32_t add_uniform_rnn(fib_graph *g, int32_t op, int32_t source, int64_t n_in,
                               int64_t hidden, uint64_t *rng, int distinct_inputs)
{
    int64_t n_gates = gates(op), rows = n_gates * hidden;
    double *wi = malloc((size_t)(rows * n_in) * sizeof *wi);
    double *wh = malloc((size_t)(rows * hidden) * sizeof *wh);
    double *bi = malloc((size_t)rows * sizeof *bi);
    for (int64_t q = 0; q < n_gates; q++) {
        double row_w[16], hh = test_uniform(rng, -0.5, 0.5), bias = test_uniform(rng, -0.5, 0.5);
        for (int64_t k = 0; k < n_in; k++)
            row_w[k] = test_uniform(rng, -1, 1);
        for (int64_t j = 0; j < hidden; j++) {
            for (int64_t k = 0; k < n_in; k++)
                wi[(q * hidden + j) * n_in + k] =
                    distinct_inputs ? test_uniform(rng, -1, 1) : row_w[k];
            for (int64_t k = 0; k < hidden; k++)
                wh[(q * hidden + j) * hidden + k] = hh;
            bi[q * hidden + j] = bias;
        }
    }
    int32_t id = -1;
    CHECK_OK(add_rnn(g, op, source, hidden, FIB_DTYPE_F64, wi, wh, bi, NULL, FIB_COPY, &id));
    free(wi), free(wh), free(bi);
    return id;
}

/* Adds a dense head over `source` (n_in units): columns all equal or all
 * distinct. */
static int32_t add_head(fib_graph *g, int32_t source, int64_t n_in, uint64_t *rng, int distinct)
{
    double w[N_OUT * 16];
    for (int64_t o = 0; o < N_OUT; o++) {
        double same = test_uniform(rng, -1, 1);
        for (int64_t k = 0; k < n_in; k++)
            w[o * n_in + k] = distinct ? test_uniform(rng, -1, 1) : same;
    }
    int32_t id = -1;
    CHECK_OK(fib_graph_add_dense(g, source, N_OUT, FIB_DTYPE_F64, w, n_in, NULL, FIB_COPY, &id));
    return id;
}

/* Every path of the error reaches the opfibers: units alike going forward
 * are told apart by what reads them (the last step and its head; the next
 * layer's w_ih), and units alike going backward by their flavour (their
 * fiber class: gates are non-linear). */
static void opfibers_see_every_error_path(void)
{
    const int32_t ops[] = {FIB_OP_LSTM, FIB_OP_GRU};
    for (int v = 0; v < 2; v++) {
        int32_t op = ops[v], in, r1, r2, last;
        uint64_t rng = 900 + (uint64_t)v;
        /* (a) identical units, read by a head with distinct columns. */
        fib_graph *g = NULL;
        CHECK_OK(fib_graph_create(&g));
        CHECK_OK(fib_graph_add_input_positions(g, N_FEAT, LENGTH, 1, &in));
        r1 = add_uniform_rnn(g, op, in, N_FEAT, 4, &rng, 0);
        CHECK_OK(fib_graph_add_last_step(g, r1, &last));
        add_head(g, last, 4, &rng, 1);
        fib_coloring *f = test_color(g, FIB_SYM_FIBERS), *o = test_color(g, FIB_SYM_OPFIBERS);
        CHECK(test_num_classes(f, r1) == 1 && test_num_classes(f, last) == 1);
        CHECK(test_num_classes(o, r1) == 4 && test_num_classes(o, last) == 4);
        fib_coloring_free(f), fib_coloring_free(o);
        fib_graph_free(g);
        /* (b) identical units, read by a next layer with distinct columns. */
        CHECK_OK(fib_graph_create(&g));
        CHECK_OK(fib_graph_add_input_positions(g, N_FEAT, LENGTH, 1, &in));
        r1 = add_uniform_rnn(g, op, in, N_FEAT, 4, &rng, 0);
        r2 = add_random_rnn(g, op, r1, 4, 3, &rng, 1);
        CHECK_OK(fib_graph_add_last_step(g, r2, &last));
        add_head(g, last, 3, &rng, 1);
        f = test_color(g, FIB_SYM_FIBERS), o = test_color(g, FIB_SYM_OPFIBERS);
        CHECK(test_num_classes(f, r1) == 1 && test_num_classes(o, r1) == 4);
        fib_coloring_free(f), fib_coloring_free(o);
        fib_graph_free(g);
        /* (c) distinct inputs, but every error path alike: the flavour. */
        CHECK_OK(fib_graph_create(&g));
        CHECK_OK(fib_graph_add_input_positions(g, N_FEAT, LENGTH, 1, &in));
        r1 = add_uniform_rnn(g, op, in, N_FEAT, 4, &rng, 1);
        CHECK_OK(fib_graph_add_last_step(g, r1, &last));
        add_head(g, last, 4, &rng, 0);
        f = test_color(g, FIB_SYM_FIBERS), o = test_color(g, FIB_SYM_OPFIBERS);
        CHECK(test_num_classes(f, r1) == 4 && test_num_classes(o, r1) == 4);
        CHECK(test_num_classes(o, last) == 1); /* the last step is linear */
        fib_coloring_free(f), fib_coloring_free(o);
        fib_graph_free(g);
    }
}

/* GRU: b_hn is multiplied by r, so units whose b_in + b_hn agree but whose
 * parts differ compute different things and must not merge. */
static void gru_candidate_biases_stay_apart(void)
{
    uint64_t rng = 31;
    int64_t h = 2;
    double wi[3 * 2 * N_FEAT], wh[3 * 2 * 2], bi[6], bh[6];
    for (int64_t q = 0; q < 3; q++) {
        double r[N_FEAT], hh = test_uniform(&rng, -1, 1);
        for (int64_t k = 0; k < N_FEAT; k++)
            r[k] = test_uniform(&rng, -1, 1);
        for (int64_t j = 0; j < h; j++) {
            for (int64_t k = 0; k < N_FEAT; k++)
                wi[(q * h + j) * N_FEAT + k] = r[k];
            wh[(q * h + j) * h] = wh[(q * h + j) * h + 1] = hh;
            bi[q * h + j] = 0.25;
            bh[q * h + j] = -0.5;
        }
    }
    bi[2 * h + 1] = 0.75, bh[2 * h + 1] = -1.0; /* same sum, other parts */
    fib_graph *g = NULL;
    int32_t in, r, last;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, N_FEAT, LENGTH, 1, &in));
    CHECK_OK(fib_graph_add_gru(g, in, h, FIB_DTYPE_F64, wi, wh, bi, bh, 0, &r));
    CHECK_OK(fib_graph_add_last_step(g, r, &last));
    add_head(g, last, h, &rng, 1);
    fib_coloring *c = test_color(g, FIB_SYM_FIBERS);
    CHECK(test_num_classes(c, r) == 2);
    fib_coloring_free(c);
    /* With equal parts the two units merge. */
    bi[2 * h + 1] = 0.25, bh[2 * h + 1] = -0.5;
    c = test_color(g, FIB_SYM_FIBERS);
    CHECK(test_num_classes(c, r) == 1);
    fib_base *b = NULL;
    CHECK_OK(fib_compress(g, c, &b));
    CHECK(test_output_difference(g, fib_base_graph(b), 4, 9, 2.0) < 1e-10);
    fib_base_free(b);
    fib_coloring_free(c);
    fib_graph_free(g);
}

/* Tensor read-out: names, shapes, values; absent biases are skipped. */
static void tensors_read_back(void)
{
    uint64_t rng = 5;
    int64_t h = 3, rows = 4 * h;
    float *wi = malloc((size_t)(rows * N_FEAT) * sizeof *wi), *wh = malloc((size_t)(rows * h) * sizeof *wh);
    float bh[12];
    for (int64_t i = 0; i < rows * N_FEAT; i++)
        wi[i] = (float)test_uniform(&rng, -1, 1);
    for (int64_t i = 0; i < rows * h; i++)
        wh[i] = (float)test_uniform(&rng, -1, 1);
    for (int64_t i = 0; i < rows; i++)
        bh[i] = (float)i;
    fib_graph *g = NULL;
    int32_t in, r, op = -1, nd = 0;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, N_FEAT, LENGTH, 1, &in));
    CHECK_OK(fib_graph_add_lstm(g, in, h, FIB_DTYPE_F32, wi, wh, NULL, bh, 0, &r));
    CHECK_OK(fib_graph_group_info(g, r, &op, NULL, NULL, NULL, NULL, NULL, NULL));
    CHECK(op == FIB_OP_LSTM);
    const char *name = NULL;
    int64_t shape[4];
    CHECK_OK(fib_graph_tensor_info(g, r, 0, &nd, shape, &name));
    CHECK(nd == 2 && shape[0] == rows && shape[1] == N_FEAT && strcmp(name, "weight_ih") == 0);
    CHECK_OK(fib_graph_tensor_info(g, r, 1, &nd, shape, &name));
    CHECK(nd == 2 && shape[0] == rows && shape[1] == h && strcmp(name, "weight_hh") == 0);
    CHECK_OK(fib_graph_tensor_info(g, r, 2, &nd, shape, &name));
    CHECK(nd == 1 && shape[0] == rows && strcmp(name, "bias_hh") == 0);
    CHECK(fib_graph_tensor_info(g, r, 3, &nd, shape, &name) == FIB_E_RANGE);
    float back[60];
    CHECK_OK(fib_graph_read_tensor(g, r, 1, FIB_DTYPE_F32, back, 60));
    CHECK(memcmp(back, wh, (size_t)(rows * h) * sizeof *wh) == 0);
    CHECK(fib_graph_read_tensor(g, r, 0, FIB_DTYPE_F32, back, 59) == FIB_E_BUFFER);
    int64_t n_par = 0;
    CHECK_OK(fib_graph_num_parameters(g, &n_par));
    CHECK(n_par == rows * (N_FEAT + h) + rows);
    int32_t last;
    CHECK_OK(fib_graph_add_last_step(g, r, &last));
    CHECK_OK(fib_graph_group_info(g, last, &op, NULL, NULL, NULL, NULL, NULL, NULL));
    CHECK(op == FIB_OP_LAST_STEP);
    int64_t pr = 0, pc = 0;
    CHECK_OK(fib_graph_group_positions(g, last, &pr, &pc));
    CHECK(pr == 1 && pc == 1);
    CHECK_OK(fib_graph_group_positions(g, r, &pr, &pc));
    CHECK(pr == LENGTH && pc == 1);
    /* float32 weights give the same forward pass as their float64 values. */
    double wi64[60], wh64[36], bh64[12];
    for (int64_t i = 0; i < rows * N_FEAT; i++)
        wi64[i] = wi[i];
    for (int64_t i = 0; i < rows * h; i++)
        wh64[i] = wh[i];
    for (int64_t i = 0; i < rows; i++)
        bh64[i] = bh[i];
    fib_graph *g64 = NULL;
    CHECK_OK(fib_graph_create(&g64));
    CHECK_OK(fib_graph_add_input_positions(g64, N_FEAT, LENGTH, 1, &in));
    CHECK_OK(fib_graph_add_lstm(g64, in, h, FIB_DTYPE_F64, wi64, wh64, NULL, bh64, 0, &r));
    CHECK_OK(fib_graph_add_last_step(g64, r, &last));
    CHECK(test_output_difference(g, g64, 1, 9, 2.0) == 0.0);
    fib_graph_free(g64);
    fib_graph_free(g);
    free(wi), free(wh);
}

static void bad_inputs_give_their_codes(void)
{
    double w[4 * 2 * N_FEAT] = {0}, wh[4 * 2 * 2] = {0}, b[8] = {0};
    fib_graph *g = NULL;
    int32_t in, img, id = -7, plain;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, N_FEAT, LENGTH, 1, &in));
    CHECK_OK(fib_graph_add_input_positions(g, N_FEAT, 3, 3, &img));
    CHECK_OK(fib_graph_add_input(g, N_FEAT, &plain));
    CHECK(fib_graph_add_lstm(NULL, in, 2, FIB_DTYPE_F64, w, wh, b, b, 0, &id) == FIB_E_NULL);
    CHECK(fib_graph_add_lstm(g, in, 2, FIB_DTYPE_F64, NULL, wh, b, b, 0, &id) == FIB_E_NULL);
    CHECK(fib_graph_add_gru(g, in, 2, FIB_DTYPE_F64, w, NULL, b, b, 0, &id) == FIB_E_NULL);
    CHECK(fib_graph_add_lstm(g, in, 2, FIB_DTYPE_F64, w, wh, b, b, 0, NULL) == FIB_E_NULL);
    CHECK(fib_graph_add_lstm(g, 9, 2, FIB_DTYPE_F64, w, wh, b, b, 0, &id) == FIB_E_RANGE);
    CHECK(fib_graph_add_lstm(g, -1, 2, FIB_DTYPE_F64, w, wh, b, b, 0, &id) == FIB_E_RANGE);
    CHECK(fib_graph_add_lstm(g, in, 2, 99, w, wh, b, b, 0, &id) == FIB_E_INVALID);
    CHECK(fib_graph_add_gru(g, in, 2, FIB_DTYPE_F64, w, wh, b, b, 4, &id) == FIB_E_INVALID);
    CHECK(fib_graph_add_lstm(g, in, 0, FIB_DTYPE_F64, w, wh, b, b, 0, &id) == FIB_E_SHAPE);
    CHECK(fib_graph_add_lstm(g, img, 2, FIB_DTYPE_F64, w, wh, b, b, 0, &id) == FIB_E_SHAPE);
    CHECK(strstr(fib_last_error(), "not a sequence") != NULL);
    CHECK(fib_graph_add_lstm(g, in, INT64_C(1) << 41, FIB_DTYPE_F64, w, wh, b, b, 0, &id) ==
          FIB_E_OVERFLOW);
    CHECK(fib_graph_add_gru(g, in, INT64_MAX / 2, FIB_DTYPE_F64, w, wh, b, b, 0, &id) ==
          FIB_E_OVERFLOW);
    /* The sequence of 7 steps times 2^38 units exceeds 2^40 activities. */
    CHECK(fib_graph_add_gru(g, in, INT64_C(1) << 38, FIB_DTYPE_F64, w, wh, b, b, 0, &id) ==
          FIB_E_OVERFLOW);
    wh[1 * 2 + 1] = NAN; /* w_hh row 1, column 1 */
    CHECK(fib_graph_add_lstm(g, in, 2, FIB_DTYPE_F64, w, wh, b, b, 0, &id) == FIB_E_NONFINITE);
    CHECK(strstr(fib_last_error(), "w_hh at row 1, column 1 is NaN") != NULL);
    wh[3] = 0;
    w[5 * N_FEAT + 2] = INFINITY;
    CHECK(fib_graph_add_gru(g, in, 2, FIB_DTYPE_F64, w, wh, b, b, 0, &id) == FIB_E_NONFINITE);
    CHECK(strstr(fib_last_error(), "w_ih at row 5, column 2 is infinite") != NULL);
    w[5 * N_FEAT + 2] = 0;
    b[6] = NAN;
    CHECK(fib_graph_add_lstm(g, in, 2, FIB_DTYPE_F64, w, wh, b, NULL, 0, &id) == FIB_E_NONFINITE);
    CHECK(strstr(fib_last_error(), "b_ih[6]") != NULL);
    CHECK(fib_graph_add_lstm(g, in, 2, FIB_DTYPE_F64, w, wh, NULL, b, 0, &id) == FIB_E_NONFINITE);
    CHECK(strstr(fib_last_error(), "b_hh[6]") != NULL);
    b[6] = 0;
    CHECK(id == -7);
    int32_t n_groups = 0;
    CHECK_OK(fib_graph_num_groups(g, &n_groups));
    CHECK(n_groups == 3);
    CHECK(fib_graph_add_last_step(NULL, in, &id) == FIB_E_NULL);
    CHECK(fib_graph_add_last_step(g, in, NULL) == FIB_E_NULL);
    CHECK(fib_graph_add_last_step(g, 17, &id) == FIB_E_RANGE);
    CHECK(fib_graph_add_last_step(g, img, &id) == FIB_E_SHAPE);
    /* Good calls still work, borrowed and copied; a plain vector is a
     * sequence of one step. */
    CHECK_OK(fib_graph_add_lstm(g, in, 2, FIB_DTYPE_F64, w, wh, b, b, 0, &id));
    CHECK_OK(fib_graph_add_gru(g, plain, 2, FIB_DTYPE_F32, w, wh, NULL, NULL, FIB_COPY, &id));
    fib_graph_free(g);
}

int main(void)
{
    RUN(planted_classes_are_found_and_base_is_exact);
    RUN(covers_finer_than_fibers);
    RUN(random_network_has_no_symmetry);
    RUN(fixed_point_needs_many_rounds);
    RUN(opfibers_see_every_error_path);
    RUN(gru_candidate_biases_stay_apart);
    RUN(tensors_read_back);
    RUN(bad_inputs_give_their_codes);
    return test_failures ? 1 : 0;
}
