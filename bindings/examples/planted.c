/*
 * planted.c — colour a planted MLP, compress it, check the base.
 *
 * The same program exists in Python (planted.py), Rust
 * (rust/fibration/examples/planted.rs) and Julia (julia/Fibration/examples/
 * planted.jl); all four print the same text (tests/bindings compares them).
 *
 * A random base network 4 -> 3 (ReLU) -> 2 (tanh) -> 2 is drawn from a
 * splitmix64 generator and lifted by hand: hidden unit i of the first layer
 * copies base unit i % 3 (6 units), of the second i % 2 (6 units), incoming
 * weights from a class split evenly over its members. Fibers must find the
 * planted classes, and the base must compute the same outputs.
 *
 *   cc planted.c -I include -L build/src -lfibration -o planted
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fibration.h"

static uint64_t rng_state = 42;

static double uniform(void) /* splitmix64, then [-1, 1) */
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53 * 2.0 - 1.0;
}

static void fill(double *v, int n)
{
    for (int i = 0; i < n; i++)
        v[i] = uniform();
}

static int fail(const char *what, int32_t status)
{
    fprintf(stderr, "%s: %s: %s\n", what, fib_status_name(status), fib_last_error());
    return 1;
}

#define CHECK(call)                                                          \
    do {                                                                     \
        int32_t status_ = (call);                                            \
        if (status_ != FIB_OK)                                               \
            return fail(#call, status_);                                     \
    } while (0)

enum { N_IN = 4, B1 = 3, B2 = 2, N_OUT = 2, H1 = 6, H2 = 6, BATCH = 3 };

int main(void)
{
    double wb1[B1 * N_IN], bb1[B1], wb2[B2 * B1], bb2[B2], wb3[N_OUT * B2], bb3[N_OUT];
    fill(wb1, B1 * N_IN);
    fill(bb1, B1);
    fill(wb2, B2 * B1);
    fill(bb2, B2);
    fill(wb3, N_OUT * B2);
    fill(bb3, N_OUT);

    /* the lift: unit i of a hidden layer copies base unit i % width */
    double w1[H1 * N_IN], b1[H1], w2[H2 * H1], b2[H2], w3[N_OUT * H2];
    for (int i = 0; i < H1; i++) {
        for (int k = 0; k < N_IN; k++)
            w1[i * N_IN + k] = wb1[(i % B1) * N_IN + k];
        b1[i] = bb1[i % B1];
    }
    for (int i = 0; i < H2; i++) {
        for (int k = 0; k < H1; k++)
            w2[i * H1 + k] = wb2[(i % B2) * B1 + k % B1] / (H1 / B1);
        b2[i] = bb2[i % B2];
    }
    for (int i = 0; i < N_OUT; i++)
        for (int k = 0; k < H2; k++)
            w3[i * H2 + k] = wb3[i * B2 + k % B2] / (H2 / B2);

    fib_graph *g = NULL;
    int32_t x, h1, h2, y;
    CHECK(fib_graph_create(&g));
    CHECK(fib_graph_add_input(g, N_IN, &x));
    CHECK(fib_graph_add_dense(g, x, H1, FIB_DTYPE_F64, w1, N_IN, b1, 0, &h1));
    CHECK(fib_graph_set_activation(g, h1, FIB_ACT_RELU, 0.0));
    CHECK(fib_graph_add_dense(g, h1, H2, FIB_DTYPE_F64, w2, H1, b2, 0, &h2));
    CHECK(fib_graph_set_activation(g, h2, FIB_ACT_TANH, 0.0));
    CHECK(fib_graph_add_dense(g, h2, N_OUT, FIB_DTYPE_F64, w3, H2, bb3, 0, &y));

    fib_coloring *fibers = NULL;
    CHECK(fib_color(g, NULL, &fibers));
    int32_t n_groups = 0;
    CHECK(fib_graph_num_groups(g, &n_groups));
    printf("groups: %d\n", (int)n_groups);
    printf("fibers per group:");
    for (int32_t grp = 0; grp < n_groups; grp++) {
        int64_t n = 0;
        CHECK(fib_coloring_num_classes(fibers, grp, &n));
        printf(" %lld", (long long)n);
    }
    printf("\n");
    int64_t colors[H1];
    CHECK(fib_coloring_colors(fibers, h1, colors, H1));
    printf("classes of h1:");
    for (int i = 0; i < H1; i++)
        printf(" %lld", (long long)colors[i]);
    printf("\n");
    int32_t balanced = 0;
    CHECK(fib_coloring_is_balanced(g, fibers, 0.0, &balanced));
    printf("balanced: %d\n", (int)balanced);

    fib_base *base = NULL;
    CHECK(fib_compress(g, fibers, &base));
    const fib_graph *bg = fib_base_graph(base);
    int64_t p_orig = 0, p_base = 0;
    CHECK(fib_graph_num_parameters(g, &p_orig));
    CHECK(fib_graph_num_parameters(bg, &p_base));
    printf("parameters: %lld => %lld\n", (long long)p_orig, (long long)p_base);

    double inputs[BATCH * N_IN], out[BATCH * N_OUT], out_base[BATCH * N_OUT];
    fill(inputs, BATCH * N_IN);
    CHECK(fib_graph_forward(g, BATCH, FIB_DTYPE_F64, inputs, out));
    CHECK(fib_graph_forward(bg, BATCH, FIB_DTYPE_F64, inputs, out_base));
    double max_diff = 0.0;
    for (int r = 0; r < BATCH; r++) {
        printf("output %d:", r);
        for (int j = 0; j < N_OUT; j++) {
            printf(" %.6f", out_base[r * N_OUT + j]);
            double d = fabs(out[r * N_OUT + j] - out_base[r * N_OUT + j]);
            max_diff = d > max_diff ? d : max_diff;
        }
        printf("\n");
    }
    printf("base equals original: %s\n", max_diff <= 1e-12 ? "yes" : "no");

    fib_base_free(base);
    fib_coloring_free(fibers);
    fib_graph_free(g);
    return max_diff <= 1e-12 && balanced ? 0 : 1;
}
