/* The fibers of a dense layer over merged sources found without holding its
 * whole signature (color/piecewise_fibers.c: a prefix of every unit's
 * signature, then one piece's rows at a time) must be exactly the classes of
 * the filled signature: every tolerance mode the sweep serves (EXACT, ABS),
 * float32 and float64 weights, differences at the rounding allowance and at
 * eps, pairs of classes that agree on the whole prefix and part only later,
 * fibers and covers, 1 and 2 threads; and the merge totals it keeps give
 * the same base. */
#include "color/color.h"
#include "testing.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

int test_failures;

#define N_IN 24
#define N_H1 96 /* classes of 4 consecutive units: 24 source classes */
#define N_H2 120
#define N_OUT 5

static uint64_t state = 0x2545f4914f6cdd1du;

static double uniform(void)
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (double)(state >> 11) / 9007199254740992.0;
}

typedef struct layers {
    double w1[N_H1 * N_IN], w2[N_H2 * N_H1], b2[N_H2], w3[N_OUT * N_H2];
    float w1f[N_H1 * N_IN], w2f[N_H2 * N_H1], b2f[N_H2], w3f[N_OUT * N_H2];
} layers;

/* h2's rows come in classes of 3 (members differ by `noise`, relative);
 * class c + 1 copies class c's weights on the h1 units of the first 16
 * source classes (the prefix) when c is even, so that the two part only
 * after it. */
static void make_layers(layers *l, double noise)
{
    for (int i = 0; i < N_H1 * N_IN; i++)
        l->w1[i] = uniform() - 0.5;
    for (int r = 0; r < N_H1; r++)
        for (int k = 0; k < N_IN; k++)
            l->w1[r * N_IN + k] = l->w1[(r - r % 4) * N_IN + k];
    for (int r = 0; r < N_H2; r += 3) {
        int c = r / 3;
        for (int i = 0; i < N_H1; i++) {
            double v = uniform() - 0.5;
            if (c % 2 == 1 && i < 16 * 4)
                v = l->w2[(r - 3) * N_H1 + i];
            for (int m = 0; m < 3; m++)
                l->w2[(r + m) * N_H1 + i] = v * (1.0 + noise * (uniform() - 0.5));
        }
        double b = uniform() - 0.5;
        for (int m = 0; m < 3; m++)
            l->b2[r + m] = b;
    }
    for (int i = 0; i < N_OUT * N_H2; i++)
        l->w3[i] = uniform() - 0.5;
    for (int i = 0; i < N_H1 * N_IN; i++)
        l->w1f[i] = (float)l->w1[i];
    for (int i = 0; i < N_H2 * N_H1; i++)
        l->w2f[i] = (float)l->w2[i];
    for (int i = 0; i < N_H2; i++)
        l->b2f[i] = (float)l->b2[i];
    for (int i = 0; i < N_OUT * N_H2; i++)
        l->w3f[i] = (float)l->w3[i];
}

static fib_graph *build(const layers *l, int32_t dtype)
{
    bool f32 = dtype == FIB_DTYPE_F32;
    fib_graph *g = NULL;
    int32_t in, h1, h2, out;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, N_IN, &in));
    CHECK_OK(fib_graph_add_dense(g, in, N_H1, dtype, f32 ? (const void *)l->w1f : l->w1, N_IN,
                                 NULL, 0, &h1));
    CHECK_OK(fib_graph_set_activation(g, h1, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_dense(g, h1, N_H2, dtype, f32 ? (const void *)l->w2f : l->w2, N_H1,
                                 f32 ? (const void *)l->b2f : l->b2, 0, &h2));
    CHECK_OK(fib_graph_set_activation(g, h2, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_dense(g, h2, N_OUT, dtype, f32 ? (const void *)l->w3f : l->w3, N_H2,
                                 NULL, 0, &out));
    return g;
}

static fib_coloring *color(const fib_graph *g, int32_t symmetry, int32_t tolerance, double eps,
                           int32_t threads, int64_t min_bytes)
{
    fib_piecewise_fibers_min_bytes = min_bytes;
    fib_color_options o;
    CHECK_OK(fib_color_options_init(&o, sizeof o));
    o.symmetry = symmetry;
    o.tolerance = tolerance;
    o.eps = eps;
    o.n_threads = threads;
    fib_coloring *c = NULL;
    CHECK_OK(fib_color(g, &o, &c));
    return c;
}

/* The piecewise colouring keeps h2's merge totals (made per piece, in the
 * merge's order): its base is the whole colouring's, bit for bit. */
static void check_same_base(const fib_graph *g, const fib_coloring *whole,
                            const fib_coloring *pieces)
{
    CHECK(pieces->merge_totals && pieces->merge_totals[2].sums);
    fib_base *a = NULL, *b = NULL;
    CHECK_OK(fib_compress(g, whole, &a));
    CHECK_OK(fib_compress(g, pieces, &b));
    for (int32_t group = 1; a && b && group < 4; group++)
        for (int32_t t = 0; t < 2; t++) {
            static double x[N_H2 * N_H1], y[N_H2 * N_H1];
            int64_t shape[4] = {0, 0, 0, 0}, other[4] = {0, 0, 0, 0};
            if (fib_graph_tensor_info(fib_base_graph(a), group, t, NULL, shape, NULL) != FIB_OK)
                break;
            CHECK_OK(fib_graph_tensor_info(fib_base_graph(b), group, t, NULL, other, NULL));
            CHECK(memcmp(shape, other, sizeof shape) == 0);
            int64_t count = shape[0] * (shape[1] ? shape[1] : 1);
            CHECK_OK(fib_graph_read_tensor(fib_base_graph(a), group, t, FIB_DTYPE_F64, x, count));
            CHECK_OK(fib_graph_read_tensor(fib_base_graph(b), group, t, FIB_DTYPE_F64, y, count));
            CHECK(memcmp(x, y, (size_t)count * sizeof *x) == 0);
        }
    fib_base_free(a);
    fib_base_free(b);
}

static void piecewise_fibers_equal_the_whole_signature(void)
{
    static const double noises[] = {0.0, 1e-16, 1e-7, 1e-3};
    static const int32_t tolerances[] = {FIB_TOL_EXACT, FIB_TOL_ABS, FIB_TOL_ABS, FIB_TOL_ABS};
    static const double epsilons[] = {0.0, 1e-6, 1e-3, 0.3};
    static const int32_t symmetries[] = {FIB_SYM_FIBERS, FIB_SYM_COVERS};
    static layers l;
    int checked = 0, merged = 0, parted_late = 0;
    for (int n = 0; n < 4; n++) {
        make_layers(&l, noises[n]);
        for (int f32 = 0; f32 < 2; f32++) {
            fib_graph *g = build(&l, f32 ? FIB_DTYPE_F32 : FIB_DTYPE_F64);
            for (int t = 0; t < 4; t++)
                for (int s = 0; s < 2; s++)
                    for (int32_t threads = 1; threads <= 2; threads++) {
                        fib_coloring *whole = color(g, symmetries[s], tolerances[t],
                                                    epsilons[t], threads, INT64_MAX);
                        fib_coloring *pieces = color(g, symmetries[s], tolerances[t],
                                                     epsilons[t], threads, 0);
                        for (int32_t group = 0; group < 4; group++) {
                            int64_t a[N_H2], b[N_H2];
                            int64_t n_units = group == 0 ? N_IN : group == 1 ? N_H1
                                              : group == 2 ? N_H2 : N_OUT;
                            CHECK_OK(fib_coloring_colors(whole, group, a, n_units));
                            CHECK_OK(fib_coloring_colors(pieces, group, b, n_units));
                            CHECK(memcmp(a, b, (size_t)n_units * sizeof *a) == 0);
                            /* a class of 3 found, parted from the class that
                             * agrees with it on the prefix */
                            if (group == 2 && b[0] == b[1] && b[1] == b[2]) {
                                merged++;
                                parted_late += b[0] != b[3];
                            }
                        }
                        if (symmetries[s] == FIB_SYM_FIBERS)
                            check_same_base(g, whole, pieces);
                        checked++;
                        fib_coloring_free(whole);
                        fib_coloring_free(pieces);
                    }
            fib_graph_free(g);
        }
    }
    fib_piecewise_fibers_min_bytes = INT64_C(8) << 20;
    CHECK(checked == 4 * 2 * 4 * 2 * 2);
    CHECK(merged > checked / 4);
    CHECK(parted_late == merged);
}

int main(void)
{
    RUN(piecewise_fibers_equal_the_whole_signature);
    return test_failures != 0;
}
