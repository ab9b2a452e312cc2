/* Convolutional networks: a planted CNN (conv - batch norm - ReLU - max
 * pool - conv - ReLU - flatten - dense) is coloured exactly and its base
 * computes the same outputs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checks.h"
#include "fibration.h"
#include "kernels/kernels.h"
#include "plant_lift.h"
#include "planted.h"
#include "testing.h"

int test_failures;

enum { IN_CH = 3, SIDE = 8, C1 = 4, C2 = 3, OUT = 5 };

typedef struct cnn_ids {
    int32_t in, conv1, bn, pool, conv2, flat, dense;
} cnn_ids;

/* The base CNN, with weights owned by the graph (FIB_COPY). */
static fib_graph *base_cnn(uint64_t seed, int32_t pool_kind, cnn_ids *ids)
{
    uint64_t rng = seed;
    fib_graph *g;
    double *k1 = test_random_array(&rng, C1 * IN_CH * 9, -1, 1), *b1 = test_random_array(&rng, C1, -.2, .2);
    double *scale = test_random_array(&rng, C1, 0.5, 1.5), *shift = test_random_array(&rng, C1, -.3, .3);
    double *k2 = test_random_array(&rng, C2 * C1 * 9, -1, 1), *b2 = test_random_array(&rng, C2, -.2, .2);
    double *w = test_random_array(&rng, OUT * C2 * 4, -1, 1), *b = test_random_array(&rng, OUT, -.2, .2);
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, IN_CH, SIDE, SIDE, &ids->in));
    CHECK_OK(fib_graph_add_conv(g, ids->in, C1, 3, 3, 1, 1, 1, 1, 1, FIB_DTYPE_F64, k1, b1,
                                FIB_COPY, &ids->conv1));
    CHECK_OK(fib_graph_add_affine(g, ids->conv1, FIB_DTYPE_F64, scale, shift, FIB_COPY, &ids->bn));
    CHECK_OK(fib_graph_set_activation(g, ids->bn, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_pool(g, ids->bn, pool_kind, 2, 2, 2, 2, 0, 0, &ids->pool));
    CHECK_OK(fib_graph_add_conv(g, ids->pool, C2, 3, 3, 1, 1, 0, 0, 1, FIB_DTYPE_F64, k2, b2,
                                FIB_COPY, &ids->conv2));
    CHECK_OK(fib_graph_set_activation(g, ids->conv2, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_flatten(g, ids->conv2, &ids->flat));
    CHECK_OK(fib_graph_add_dense(g, ids->flat, OUT, FIB_DTYPE_F64, w, C2 * 4, b, FIB_COPY,
                                 &ids->dense));
    free(k1), free(b1), free(scale), free(shift), free(k2), free(b2), free(w), free(b);
    return g;
}

static int64_t *identity(int64_t n)
{
    int64_t *p = malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; i < n; i++)
        p[i] = i;
    return p;
}

static int64_t *copy_of(const int64_t *a, int64_t n)
{
    int64_t *p = malloc((size_t)n * sizeof *p);
    memcpy(p, a, (size_t)n * sizeof *p);
    return p;
}

static void planted_cnn(int32_t pool_kind, int32_t symmetry)
{
    cnn_ids ids;
    fib_graph *base = base_cnn(7 + (uint64_t)pool_kind, pool_kind, &ids);
    uint64_t rng = 1;
    int64_t n1, n2;
    int64_t *p1 = random_projection(&rng, C1, 3, &n1);
    int64_t *p2 = random_projection(&rng, C2, 3, &n2);
    CHECK(n1 > C1 && n2 > C2); /* both convolutions really are lifted */
    int64_t *pflat = malloc((size_t)(n2 * 4) * sizeof *pflat);
    for (int64_t u = 0; u < n2 * 4; u++)
        pflat[u] = p2[u / 4] * 4 + u % 4;
    int64_t *proj[7] = {identity(IN_CH), p1, copy_of(p1, n1), copy_of(p1, n1), p2, pflat,
                        identity(OUT)};
    int64_t widths[7] = {IN_CH, n1, n1, n1, n2, n2 * 4, OUT};
    fib_graph *g = plant_by_lift(base, proj, widths);
    CHECK(g != NULL);
    if (!g) {
        fprintf(stderr, "%s\n", fib_last_error());
        return;
    }
    fib_color_options o;
    fib_color_options_init(&o, sizeof o);
    o.symmetry = symmetry;
    fib_coloring *c = NULL;
    CHECK_OK(fib_color(g, &o, &c));
    CHECK(same_partition(c, ids.conv1, p1, n1));
    CHECK(same_partition(c, ids.bn, p1, n1));
    CHECK(same_partition(c, ids.pool, p1, n1));
    CHECK(same_partition(c, ids.conv2, p2, n2));
    fib_base *b = NULL;
    CHECK_OK(fib_compress(g, c, &b));
    const fib_graph *bg = fib_base_graph(b);
    int64_t w1 = 0, w2 = 0, wf = 0;
    fib_graph_group_info(bg, ids.conv1, NULL, &w1, NULL, NULL, NULL, NULL, NULL);
    fib_graph_group_info(bg, ids.conv2, NULL, &w2, NULL, NULL, NULL, NULL, NULL);
    fib_graph_group_info(bg, ids.flat, NULL, &wf, NULL, NULL, NULL, NULL, NULL);
    CHECK(w1 == C1 && w2 == C2 && wf == C2 * 4);
    CHECK(test_output_difference(g, bg, 11, 4, 1.0) <= 1e-10);
    CHECK(test_output_difference(g, base, 11, 4, 1.0) <= 1e-10);
    int32_t balanced = 0;
    CHECK_OK(fib_coloring_is_balanced(g, c, 0, &balanced));
    CHECK(balanced == 1);
    fib_base_free(b);
    fib_coloring_free(c);
    fib_graph_free(g);
    fib_graph_free(base);
    for (int i = 0; i < 7; i++)
        free(proj[i]);
}

static void planted_cnn_max_pool_fibers(void) { planted_cnn(FIB_POOL_MAX, FIB_SYM_FIBERS); }
static void planted_cnn_avg_pool_covers(void) { planted_cnn(FIB_POOL_AVG, FIB_SYM_COVERS); }

/* A random, unplanted CNN has no symmetry: every channel is its own class. */
static void random_cnn_is_discrete(void)
{
    cnn_ids ids;
    fib_graph *g = base_cnn(99, FIB_POOL_MAX, &ids);
    fib_coloring *c = NULL;
    CHECK_OK(fib_color(g, NULL, &c));
    int64_t k1 = 0, k2 = 0;
    fib_coloring_num_classes(c, ids.conv1, &k1);
    fib_coloring_num_classes(c, ids.conv2, &k2);
    CHECK(k1 == C1 && k2 == C2);
    fib_coloring_free(c);
    fib_graph_free(g);
}

/* A grouped convolution: channels of different groups never share inputs;
 * its base stays grouped (never more parameters than the original) and
 * exact. */
static void grouped_conv_base_stays_grouped_and_exact(void)
{
    uint64_t rng = 5;
    /* 4 input channels, 2 groups of 2; output channels 0, 1 read group 0
     * with identical kernels, and 2, 3 read group 1 likewise. */
    double *k = test_random_array(&rng, 4 * 2 * 4, -1, 1);
    memcpy(k + 8, k, 8 * sizeof *k);       /* channel 1 = channel 0 */
    memcpy(k + 24, k + 16, 8 * sizeof *k); /* channel 3 = channel 2 */
    double head[2 * 4 * 9];
    for (int i = 0; i < 72; i++)
        head[i] = test_uniform(&rng, -1, 1);
    fib_graph *g;
    int32_t in, conv, flat, out;
    fib_graph_create(&g);
    fib_graph_add_input_positions(g, 4, 3, 3, &in);
    CHECK_OK(fib_graph_add_conv(g, in, 4, 2, 2, 1, 1, 0, 0, 2, FIB_DTYPE_F64, k, NULL, 0, &conv));
    fib_graph_set_activation(g, conv, FIB_ACT_TANH, 0);
    fib_graph_add_flatten(g, conv, &flat);
    fib_graph_add_dense(g, flat, 2, FIB_DTYPE_F64, head, 16, NULL, 0, &out);
    fib_coloring *c = NULL;
    CHECK_OK(fib_color(g, NULL, &c));
    int64_t kc = 0;
    fib_coloring_num_classes(c, conv, &kc);
    CHECK(kc == 2); /* {0, 1} and {2, 3}: same group, same kernels */
    fib_base *b = NULL;
    CHECK_OK(fib_compress(g, c, &b));
    int64_t params[7], count = 0;
    CHECK_OK(fib_graph_block_params(fib_base_graph(b), conv, params, 7, &count));
    CHECK(count == 7 && params[6] == 2); /* one class per group: still 2 groups */
    int64_t full_params = 0, base_params = 0;
    CHECK_OK(fib_graph_num_parameters(g, &full_params));
    CHECK_OK(fib_graph_num_parameters(fib_base_graph(b), &base_params));
    /* the conv keeps 2 kernels of 2 x 4 (not 2 x 4 x 4), the head reads 2 of
     * 4 channels at 4 positions */
    CHECK(base_params == full_params - 2 * 2 * 4 - 2 * 2 * 4);
    CHECK(test_output_difference(g, fib_base_graph(b), 8, 4, 1.0) <= 1e-12);
    fib_base_free(b);
    fib_coloring_free(c);
    fib_graph_free(g);
    free(k);
}

/* fib_compress_options.borrow: a convolution that merges nothing (its
 * channels and its source's kept) borrows the model's kernels in their
 * dtype and keeps its groups (a change to them is seen by the base), with
 * the owning base's outputs; a convolution whose channels merge still owns
 * its merged float64 copy. */
static void compress_ex_borrow_shares_unmerged_conv_kernels(void)
{
    uint64_t rng = 11;
    /* conv1: 4 -> 4 channels in 2 groups, distinct float32 kernels;
     * conv2: 1 x 1, 4 -> 2 channels with equal kernels and biases (merged) */
    float k1[4 * 2 * 4], b1[4], k2[2 * 4], b2[2] = {0.25f, 0.25f};
    for (int i = 0; i < 32; i++)
        k1[i] = (float)test_uniform(&rng, -1, 1);
    for (int i = 0; i < 4; i++) {
        b1[i] = (float)test_uniform(&rng, -.2, .2);
        k2[i] = k2[4 + i] = (float)test_uniform(&rng, -1, 1);
    }
    double head[3 * 2 * 4];
    for (int i = 0; i < 24; i++)
        head[i] = test_uniform(&rng, -1, 1);
    fib_graph *g;
    int32_t in, conv1, conv2, flat, out;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, 4, 3, 3, &in));
    CHECK_OK(fib_graph_add_conv(g, in, 4, 2, 2, 1, 1, 0, 0, 2, FIB_DTYPE_F32, k1, b1, 0,
                                &conv1));
    CHECK_OK(fib_graph_set_activation(g, conv1, FIB_ACT_TANH, 0));
    CHECK_OK(fib_graph_add_conv(g, conv1, 2, 1, 1, 1, 1, 0, 0, 1, FIB_DTYPE_F32, k2, b2, 0,
                                &conv2));
    CHECK_OK(fib_graph_set_activation(g, conv2, FIB_ACT_TANH, 0));
    CHECK_OK(fib_graph_add_flatten(g, conv2, &flat));
    CHECK_OK(fib_graph_add_dense(g, flat, 3, FIB_DTYPE_F64, head, 8, NULL, 0, &out));
    fib_coloring *c = NULL;
    CHECK_OK(fib_color(g, NULL, &c));
    int64_t kc1 = 0, kc2 = 0;
    CHECK_OK(fib_coloring_num_classes(c, conv1, &kc1));
    CHECK_OK(fib_coloring_num_classes(c, conv2, &kc2));
    CHECK(kc1 == 4 && kc2 == 1);
    fib_compress_options o;
    CHECK_OK(fib_compress_options_init(&o, sizeof o));
    o.borrow = 1;
    fib_base *owning = NULL, *borrowing = NULL;
    CHECK_OK(fib_compress(g, c, &owning));
    CHECK_OK(fib_compress_ex(g, c, &o, &borrowing));
    const fib_graph *bg = fib_base_graph(borrowing);
    int32_t dtype = 0;
    CHECK_OK(fib_graph_tensor_dtype(bg, conv1, 0, &dtype));
    CHECK(dtype == FIB_DTYPE_F32);
    CHECK_OK(fib_graph_tensor_dtype(bg, conv2, 0, &dtype));
    CHECK(dtype == FIB_DTYPE_F64); /* merged: the base's own sum */
    int64_t params[7], count = 0;
    CHECK_OK(fib_graph_block_params(bg, conv1, params, 7, &count));
    CHECK(count == 7 && params[6] == 2);
    int64_t own_params = 0, borrowed_params = 0;
    CHECK_OK(fib_graph_num_parameters(fib_base_graph(owning), &own_params));
    CHECK_OK(fib_graph_num_parameters(bg, &borrowed_params));
    CHECK(borrowed_params == own_params);
    CHECK(test_output_difference(fib_base_graph(owning), bg, 4, 4, 1.0) == 0.0);
    CHECK(test_output_difference(g, bg, 4, 4, 1.0) <= 1e-6);
    /* a change to the model's kernels: seen by the borrowed conv1 only */
    k1[0] = 0.5f;
    k2[0] = k2[4] = 0.75f;
    double a[32], b[32];
    CHECK_OK(fib_graph_read_tensor(bg, conv1, 0, FIB_DTYPE_F64, a, 32));
    CHECK_OK(fib_graph_read_tensor(fib_base_graph(owning), conv1, 0, FIB_DTYPE_F64, b, 32));
    CHECK(a[0] == 0.5 && b[0] != 0.5);
    CHECK_OK(fib_graph_read_tensor(bg, conv2, 0, FIB_DTYPE_F64, a, 4));
    CHECK(a[0] != 0.75);
    fib_base_free(owning);
    fib_base_free(borrowing);
    fib_coloring_free(c);
    fib_graph_free(g);
}

/* fib_compress_options.dtype FIB_DTYPE_F32: merged convolutions of the
 * base (here conv1, whose channels 0 and 1 merge, and conv2, which sums
 * conv1's merged input channels) hold float32 kernels and biases, each the
 * float64 base's value rounded once. */
static void compress_ex_float32_rounds_each_merged_conv_kernel_once(void)
{
    uint64_t rng = 23;
    double k1[3 * 2 * 4], b1[3], k2[2 * 3 * 4], b2[2];
    for (int i = 0; i < 24; i++)
        k1[i] = test_uniform(&rng, -1, 1), k2[i] = test_uniform(&rng, -1, 1);
    memcpy(k1 + 8, k1, 8 * sizeof *k1); /* channel 1 = channel 0 */
    b1[0] = b1[1] = 0.1, b1[2] = -0.3, b2[0] = 0.2, b2[1] = -0.1;
    fib_graph *g;
    int32_t in, conv1, conv2, flat, out;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, 2, 3, 3, &in));
    CHECK_OK(fib_graph_add_conv(g, in, 3, 2, 2, 1, 1, 0, 0, 1, FIB_DTYPE_F64, k1, b1, 0, &conv1));
    CHECK_OK(fib_graph_set_activation(g, conv1, FIB_ACT_TANH, 0));
    CHECK_OK(fib_graph_add_conv(g, conv1, 2, 2, 2, 1, 1, 1, 1, 1, FIB_DTYPE_F64, k2, b2, 0,
                                &conv2));
    CHECK_OK(fib_graph_add_flatten(g, conv2, &flat));
    double head[2 * 2 * 9];
    for (int i = 0; i < 36; i++)
        head[i] = test_uniform(&rng, -1, 1);
    CHECK_OK(fib_graph_add_dense(g, flat, 2, FIB_DTYPE_F64, head, 18, NULL, 0, &out));
    fib_coloring *c = NULL;
    CHECK_OK(fib_color(g, NULL, &c));
    int64_t k = 0;
    CHECK_OK(fib_coloring_num_classes(c, conv1, &k));
    CHECK(k == 2);
    fib_compress_options o;
    CHECK_OK(fib_compress_options_init(&o, sizeof o));
    o.dtype = FIB_DTYPE_F32;
    fib_base *wide = NULL, *narrow = NULL;
    CHECK_OK(fib_compress(g, c, &wide));
    CHECK_OK(fib_compress_ex(g, c, &o, &narrow));
    int rounded_apart = 0;
    for (int32_t group = conv1; group <= conv2; group++)
        for (int32_t t = 0; t < 2; t++) {
            int32_t held = 0, ndim = 0;
            int64_t shape[4] = {1, 1, 1, 1};
            CHECK_OK(fib_graph_tensor_info(fib_base_graph(narrow), group, t, &ndim, shape, NULL));
            int64_t n = 1;
            for (int32_t d = 0; d < ndim; d++)
                n *= shape[d];
            double a[24], b[24];
            CHECK(n <= 24);
            CHECK_OK(fib_graph_tensor_dtype(fib_base_graph(narrow), group, t, &held));
            CHECK(held == FIB_DTYPE_F32);
            CHECK_OK(fib_graph_read_tensor(fib_base_graph(wide), group, t, FIB_DTYPE_F64, a, n));
            CHECK_OK(fib_graph_read_tensor(fib_base_graph(narrow), group, t, FIB_DTYPE_F64, b, n));
            for (int64_t x = 0; x < n; x++) {
                CHECK(b[x] == (double)(float)a[x]);
                rounded_apart += b[x] != a[x];
            }
        }
    CHECK(rounded_apart > 0); /* float64 kernels did round */
    CHECK(test_output_difference(fib_base_graph(wide), fib_base_graph(narrow), 3, 4, 1.0) <= 1e-5);
    fib_base_free(wide);
    fib_base_free(narrow);
    fib_coloring_free(c);
    fib_graph_free(g);
}

/* Output (r, col, o) of a convolution by its definition: the bias, then
 * kernel tap by tap (rows, then columns), input channel by input channel
 * of o's group, one term at a time, its product and sum fused (fma(), as
 * the product kernel gemm_f64 makes them); taps in the padding add
 * nothing. */
static double conv_by_definition(const double *x, int64_t rows, int64_t cols, int64_t cin,
                                 const double *k, const double *bias, int64_t n_out,
                                 int64_t groups, int64_t kr_n, int64_t kc_n, int64_t stride,
                                 int64_t pad, int64_t r, int64_t col, int64_t o)
{
    int64_t ipg = cin / groups, first = (o / (n_out / groups)) * ipg;
    double z = bias ? bias[o] : 0.0;
    for (int64_t kr = 0; kr < kr_n; kr++)
        for (int64_t kc = 0; kc < kc_n; kc++) {
            int64_t ir = r * stride - pad + kr, ic = col * stride - pad + kc;
            if (ir < 0 || ir >= rows || ic < 0 || ic >= cols)
                continue;
            for (int64_t j = 0; j < ipg; j++)
                z = fma(k[((o * ipg + j) * kr_n + kr) * kc_n + kc],
                        x[(ir * cols + ic) * cin + first + j], z);
        }
    return z;
}

/* The reference forward pass of convolutions is their definition, to the
 * bit, at every SIMD level: a 3 x 3 convolution large enough to be split
 * into several pieces of work (the registered test also runs it on 2
 * threads), a 1 x 1 convolution that reads its input rows as they are, a
 * grouped, strided one whose output channels do not fill a panel (the
 * matrix product) and two depthwise ones (output by output), with float32
 * and float64 kernels. */
static void conv_forward_follows_its_definition(void)
{
    enum { CIN = 16, SIDE_IN = 48, A = 24, C = 36 };
    uint64_t rng = 21;
    double *ka = test_random_array(&rng, A * CIN * 9, -1, 1), *ba = test_random_array(&rng, A, -1, 1);
    double *kb = test_random_array(&rng, A * A, -1, 1);
    double *kc = test_random_array(&rng, C * (A / 4) * 9, -1, 1);
    double *kd = test_random_array(&rng, C * 9, -1, 1), *bd = test_random_array(&rng, C, -1, 1);
    double *ke = test_random_array(&rng, C * 9, -1, 1);
    float *kd32 = malloc(C * 9 * sizeof *kd32);
    for (int64_t x = 0; x < C * 9; x++) {
        kd32[x] = (float)kd[x];
        kd[x] = kd32[x];
    }
    float *kc32 = malloc(C * (A / 4) * 9 * sizeof *kc32);
    for (int64_t x = 0; x < C * (A / 4) * 9; x++) {
        kc32[x] = (float)kc[x];
        kc[x] = kc32[x];
    }
    int64_t n_in = CIN * SIDE_IN * SIDE_IN;
    double *input = test_random_array(&rng, n_in, -2, 2);
    fib_graph *g;
    int32_t in, a, b, c, d, e;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, CIN, SIDE_IN, SIDE_IN, &in));
    CHECK_OK(fib_graph_add_conv(g, in, A, 3, 3, 1, 1, 1, 1, 1, FIB_DTYPE_F64, ka, ba, 0, &a));
    CHECK_OK(fib_graph_add_conv(g, a, A, 1, 1, 1, 1, 0, 0, 1, FIB_DTYPE_F64, kb, NULL, 0, &b));
    CHECK_OK(fib_graph_add_conv(g, b, C, 3, 3, 2, 2, 1, 1, 4, FIB_DTYPE_F32, kc32, NULL, 0, &c));
    CHECK_OK(fib_graph_add_conv(g, c, C, 3, 3, 1, 1, 1, 1, C, FIB_DTYPE_F32, kd32, NULL, 0, &d));
    CHECK_OK(fib_graph_add_conv(g, d, C, 3, 3, 1, 1, 1, 1, C, FIB_DTYPE_F64, ke, bd, 0, &e));
    int64_t side_c = SIDE_IN / 2;
    double *ya = malloc(A * SIDE_IN * SIDE_IN * sizeof *ya);
    double *yb = malloc(A * SIDE_IN * SIDE_IN * sizeof *yb);
    double *yc = malloc(C * side_c * side_c * sizeof *yc);
    double *yd = malloc(C * side_c * side_c * sizeof *yd);
    double *ye = malloc(C * side_c * side_c * sizeof *ye);
    for (int32_t level = FIB_SIMD_SCALAR; level <= FIB_SIMD_AVX512; level++) {
        if (fib_kernels_override(level) != 0)
            continue;
        CHECK_OK(fib_graph_forward_group(g, 1, FIB_DTYPE_F64, input, a, ya));
        CHECK_OK(fib_graph_forward_group(g, 1, FIB_DTYPE_F64, input, b, yb));
        CHECK_OK(fib_graph_forward_group(g, 1, FIB_DTYPE_F64, input, c, yc));
        CHECK_OK(fib_graph_forward_group(g, 1, FIB_DTYPE_F64, input, d, yd));
        CHECK_OK(fib_graph_forward_group(g, 1, FIB_DTYPE_F64, input, e, ye));
        int64_t wrong = 0;
        for (int64_t p = 0; p < SIDE_IN * SIDE_IN; p++)
            for (int64_t o = 0; o < A; o++) {
                int64_t r = p / SIDE_IN, col = p % SIDE_IN;
                wrong += ya[p * A + o] != conv_by_definition(input, SIDE_IN, SIDE_IN, CIN, ka, ba,
                                                             A, 1, 3, 3, 1, 1, r, col, o);
                wrong += yb[p * A + o] != conv_by_definition(ya, SIDE_IN, SIDE_IN, A, kb, NULL,
                                                             A, 1, 1, 1, 1, 0, r, col, o);
            }
        for (int64_t p = 0; p < side_c * side_c; p++)
            for (int64_t o = 0; o < C; o++)
            {
                wrong += yc[p * C + o] != conv_by_definition(yb, SIDE_IN, SIDE_IN, A, kc, NULL, C,
                                                             4, 3, 3, 2, 1, p / side_c,
                                                             p % side_c, o);
                wrong += yd[p * C + o] != conv_by_definition(yc, side_c, side_c, C, kd, NULL, C,
                                                             C, 3, 3, 1, 1, p / side_c,
                                                             p % side_c, o);
                wrong += ye[p * C + o] != conv_by_definition(yd, side_c, side_c, C, ke, bd, C, C,
                                                             3, 3, 1, 1, p / side_c, p % side_c,
                                                             o);
            }
        CHECK(wrong == 0);
    }
    fib_kernels_override(-1);
    fib_graph_free(g);
    free(ka), free(ba), free(kb), free(kc), free(kc32), free(input), free(ya), free(yb), free(yc);
    free(kd), free(bd), free(yd), free(ke), free(kd32), free(ye);
}

/* Elements of a block's weight tensor (tensor 0). */
static int64_t weight_elements(const fib_graph *g, int32_t group)
{
    int32_t ndim = 0;
    int64_t shape[4] = {1, 1, 1, 1}, n = 1;
    const char *name = NULL;
    CHECK_OK(fib_graph_tensor_info(g, group, 0, &ndim, shape, &name));
    for (int32_t d = 0; d < ndim; d++)
        n *= shape[d];
    return n;
}

/* A grouped convolution (4 groups of 2 inputs and 4 outputs) whose
 * channels are duplicated unevenly per group, reading a convolution whose
 * duplicated channels span two of its groups: left alone, the fibers give
 * the grouped one 8 classes (2, 2, 3, 1 per group) over 3 input classes
 * (a class spanning groups 1 and 2), whose only base would be ungrouped,
 * with 8 x 3 kernels where the original has 16 x 2. The fibers keep every
 * class within one group, equally many per group: the source's spanning
 * class is cut in two (4 classes, 1 per group), the grouped convolution's
 * groups hold 3 classes each (units leave the classes of groups with
 * fewer), so its base keeps 4 groups and 12 x 1 kernels, and computes the
 * original's outputs. Covers keep the groups too, or are refused by name. */
static void grouped_conv_uneven_classes_stay_grouped(void)
{
    enum { CIN = 3, C1 = 8, C2 = 16, G = 4, SIDE_IN = 5, OUT = 3 };
    uint64_t rng = 33;
    double *k1 = test_random_array(&rng, C1 * CIN * 9, -1, 1), *b1 = test_random_array(&rng, C1, -1, 1);
    double *k2 = test_random_array(&rng, C2 * (C1 / G) * 9, -1, 1);
    double *head = test_random_array(&rng, OUT * C2 * SIDE_IN * SIDE_IN, -1, 1);
    /* conv1: {0, 1}, {2, 3, 4, 5} (spans conv2's groups 1 and 2), {6, 7} */
    static const int copy1[][2] = {{1, 0}, {3, 2}, {4, 2}, {5, 2}, {7, 6}};
    for (size_t x = 0; x < sizeof copy1 / sizeof copy1[0]; x++) {
        memcpy(k1 + copy1[x][0] * CIN * 9, k1 + copy1[x][1] * CIN * 9, CIN * 9 * sizeof *k1);
        b1[copy1[x][0]] = b1[copy1[x][1]];
    }
    /* conv2, per group of 4 outputs: {0, 1} {2, 3} | {4, 5, 6} {7} |
     * {8} {9} {10, 11} | {12, 13, 14, 15}; a copy has the same kernel */
    static const int copy2[][2] = {{1, 0}, {3, 2}, {5, 4}, {6, 4}, {11, 10},
                                   {13, 12}, {14, 12}, {15, 12}};
    for (size_t x = 0; x < sizeof copy2 / sizeof copy2[0]; x++)
        memcpy(k2 + copy2[x][0] * (C1 / G) * 9, k2 + copy2[x][1] * (C1 / G) * 9,
               (C1 / G) * 9 * sizeof *k2);
    fib_graph *g;
    int32_t in, conv1, conv2, flat, out;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, CIN, SIDE_IN, SIDE_IN, &in));
    CHECK_OK(fib_graph_add_conv(g, in, C1, 3, 3, 1, 1, 1, 1, 1, FIB_DTYPE_F64, k1, b1, 0, &conv1));
    CHECK_OK(fib_graph_set_activation(g, conv1, FIB_ACT_TANH, 0));
    CHECK_OK(fib_graph_add_conv(g, conv1, C2, 3, 3, 1, 1, 1, 1, G, FIB_DTYPE_F64, k2, NULL, 0,
                                &conv2));
    CHECK_OK(fib_graph_set_activation(g, conv2, FIB_ACT_TANH, 0));
    CHECK_OK(fib_graph_add_flatten(g, conv2, &flat));
    CHECK_OK(fib_graph_add_dense(g, flat, OUT, FIB_DTYPE_F64, head, C2 * SIDE_IN * SIDE_IN,
                                 NULL, 0, &out));
    for (int32_t symmetry = FIB_SYM_FIBERS; symmetry <= FIB_SYM_COVERS; symmetry++) {
        if (symmetry == FIB_SYM_OPFIBERS)
            continue;
        fib_color_options o;
        fib_color_options_init(&o, sizeof o);
        o.symmetry = symmetry;
        fib_coloring *c = NULL;
        CHECK_OK(fib_color(g, &o, &c));
        int64_t k_1 = 0, k_2 = 0;
        fib_coloring_num_classes(c, conv1, &k_1);
        fib_coloring_num_classes(c, conv2, &k_2);
        if (symmetry == FIB_SYM_FIBERS)
            CHECK(k_1 == 4 && k_2 == 12);
        fib_base *b = NULL;
        int32_t status = fib_compress(g, c, &b);
        if (symmetry == FIB_SYM_COVERS && status != FIB_OK) {
            CHECK(status == FIB_E_UNSUPPORTED && strstr(fib_last_error(), "group 2") != NULL);
            fib_coloring_free(c);
            continue;
        }
        CHECK_OK(status);
        const fib_graph *bg = fib_base_graph(b);
        int64_t params[7], count = 0;
        CHECK_OK(fib_graph_block_params(bg, conv2, params, 7, &count));
        CHECK(count == 7 && params[6] == G);
        CHECK(weight_elements(bg, conv2) <= weight_elements(g, conv2));
        CHECK(weight_elements(bg, conv1) <= weight_elements(g, conv1));
        if (symmetry == FIB_SYM_FIBERS)
            CHECK(weight_elements(bg, conv2) == 12 * 1 * 9);
        CHECK(test_output_difference(g, bg, 17, 3, 1.0) <= 1e-12);
        fib_base_free(b);
        fib_coloring_free(c);
    }
    fib_graph_free(g);
    free(k1), free(b1), free(k2), free(head);
}

/* The signature of a grouped convolution spans only each channel group's
 * own source classes, after the group as a label: its classes equal those
 * of the same convolution written ungrouped, with zero kernels between
 * its groups, whose signature spans every source class. Planted: in each
 * of 3 groups, input channels {a, a+1} {a+2} {a+3} and outputs {o, o+1}
 * {o+2} {o+3}; output 6 has the kernel of output 2 over the same local
 * classes, so only its group tells them apart. Exact and ABS, 1 and 2
 * threads. */
static void grouped_conv_signature_per_group_keeps_classes(void)
{
    enum { CIN = 3, C = 12, G = 3, PER = C / G, SIDE = 5, OUT = 2 };
    uint64_t rng = 71;
    double *k1 = test_random_array(&rng, C * CIN * 9, -1, 1), *b1 = test_random_array(&rng, C, -1, 1);
    double *k2 = test_random_array(&rng, C * PER * 9, -1, 1), *b2 = test_random_array(&rng, C, -1, 1);
    double *full = calloc(C * C * 9, sizeof *full);
    double *head = test_random_array(&rng, OUT * C * SIDE * SIDE, -1, 1);
    for (int cg = 0; cg < G; cg++) {
        int a = cg * PER;
        memcpy(k1 + (a + 1) * CIN * 9, k1 + a * CIN * 9, CIN * 9 * sizeof *k1);
        b1[a + 1] = b1[a];
        memcpy(k2 + (a + 1) * PER * 9, k2 + a * PER * 9, PER * 9 * sizeof *k2);
        b2[a + 1] = b2[a];
    }
    memcpy(k2 + 6 * PER * 9, k2 + 2 * PER * 9, PER * 9 * sizeof *k2);
    b2[6] = b2[2];
    for (int o = 0; o < C; o++)
        for (int jl = 0; jl < PER; jl++)
            memcpy(full + (o * C + (o / PER) * PER + jl) * 9, k2 + (o * PER + jl) * 9,
                   9 * sizeof *full);
    fib_graph *g[2];
    int32_t conv1, conv2;
    for (int ungrouped = 0; ungrouped < 2; ungrouped++) {
        int32_t in, flat, out;
        CHECK_OK(fib_graph_create(&g[ungrouped]));
        CHECK_OK(fib_graph_add_input_positions(g[ungrouped], CIN, SIDE, SIDE, &in));
        CHECK_OK(fib_graph_add_conv(g[ungrouped], in, C, 3, 3, 1, 1, 1, 1, 1, FIB_DTYPE_F64, k1,
                                    b1, 0, &conv1));
        CHECK_OK(fib_graph_set_activation(g[ungrouped], conv1, FIB_ACT_TANH, 0));
        CHECK_OK(fib_graph_add_conv(g[ungrouped], conv1, C, 3, 3, 1, 1, 1, 1, ungrouped ? 1 : G,
                                    FIB_DTYPE_F64, ungrouped ? full : k2, b2, 0, &conv2));
        CHECK_OK(fib_graph_set_activation(g[ungrouped], conv2, FIB_ACT_TANH, 0));
        CHECK_OK(fib_graph_add_flatten(g[ungrouped], conv2, &flat));
        CHECK_OK(fib_graph_add_dense(g[ungrouped], flat, OUT, FIB_DTYPE_F64, head,
                                     C * SIDE * SIDE, NULL, 0, &out));
    }
    for (int threads = 1; threads <= 2; threads++)
        for (int abs = 0; abs < 2; abs++) {
            fib_coloring *c[2] = {NULL, NULL};
            for (int ungrouped = 0; ungrouped < 2; ungrouped++) {
                fib_color_options o;
                fib_color_options_init(&o, sizeof o);
                o.n_threads = threads;
                o.tolerance = abs ? FIB_TOL_ABS : FIB_TOL_EXACT;
                o.eps = abs ? 1e-9 : 0.0;
                CHECK_OK(fib_color(g[ungrouped], &o, &c[ungrouped]));
            }
            int64_t k[2][2] = {{0}}, colors[2][C];
            for (int ungrouped = 0; ungrouped < 2; ungrouped++) {
                fib_coloring_num_classes(c[ungrouped], conv1, &k[ungrouped][0]);
                fib_coloring_num_classes(c[ungrouped], conv2, &k[ungrouped][1]);
                CHECK_OK(fib_coloring_colors(c[ungrouped], conv2, colors[ungrouped], C));
            }
            CHECK(k[0][0] == 9 && k[0][1] == 9);
            CHECK(k[1][0] == k[0][0] && k[1][1] == k[0][1]);
            CHECK(memcmp(colors[0], colors[1], sizeof colors[0]) == 0);
            CHECK(colors[0][6] != colors[0][2]);
            /* outputs 2 and 6 in one class (the other groups discrete):
             * their kernel sums are equal, their source channels are not */
            for (int ungrouped = 0; threads == 1 && !abs && ungrouped < 2; ungrouped++) {
                fib_coloring *merged = NULL;
                int32_t balanced = 1;
                int64_t joined[C];
                memcpy(joined, colors[ungrouped], sizeof joined);
                joined[6] = joined[2];
                CHECK_OK(fib_coloring_create(g[ungrouped], FIB_SYM_FIBERS, &merged));
                CHECK_OK(fib_coloring_set_group(merged, conv2, joined, C));
                CHECK_OK(fib_coloring_is_balanced(g[ungrouped], merged, 0.0, &balanced));
                CHECK(balanced == 0 && strstr(fib_last_error(), "fibers of group 2") != NULL);
                fib_coloring_free(merged);
            }
            fib_base *b = NULL;
            CHECK_OK(fib_compress(g[0], c[0], &b));
            int64_t params[7], count = 0;
            CHECK_OK(fib_graph_block_params(fib_base_graph(b), conv2, params, 7, &count));
            CHECK(count == 7 && params[6] == G);
            CHECK(test_output_difference(g[0], fib_base_graph(b), 17, 3, 1.0) <= 1e-12);
            fib_base_free(b);
            fib_coloring_free(c[0]);
            fib_coloring_free(c[1]);
        }
    fib_graph_free(g[0]);
    fib_graph_free(g[1]);
    free(k1), free(b1), free(k2), free(b2), free(full), free(head);
}

static void bad_conv_inputs(void)
{
    fib_graph *g;
    int32_t in, plain, id;
    double k[2 * 3 * 9] = {0};
    fib_graph_create(&g);
    fib_graph_add_input_positions(g, 3, 4, 4, &in);
    fib_graph_add_input(g, 3, &plain);
    CHECK(fib_graph_add_conv(g, in, 2, 5, 5, 1, 1, 0, 0, 1, FIB_DTYPE_F64, k, NULL, 0, &id) ==
          FIB_E_SHAPE); /* kernel larger than the input */
    CHECK(fib_graph_add_conv(g, in, 2, 3, 3, 1, 1, 0, 0, 2, FIB_DTYPE_F64, k, NULL, 0, &id) ==
          FIB_E_SHAPE); /* groups do not divide 3 channels */
    CHECK(strstr(fib_last_error(), "groups") != NULL);
    CHECK(fib_graph_add_conv(g, in, 2, 3, 3, 0, 1, 0, 0, 1, FIB_DTYPE_F64, k, NULL, 0, &id) ==
          FIB_E_SHAPE); /* stride 0 */
    k[20] = NAN;
    CHECK(fib_graph_add_conv(g, in, 2, 3, 3, 1, 1, 0, 0, 1, FIB_DTYPE_F64, k, NULL, 0, &id) ==
          FIB_E_NONFINITE);
    CHECK(strstr(fib_last_error(), "[0, 2, 2]") != NULL);
    CHECK(fib_graph_add_pool(g, in, 7, 2, 2, 2, 2, 0, 0, &id) == FIB_E_INVALID);
    CHECK(fib_graph_add_conv(g, in, 2, 3, 3, 1, 1, 0, 0, 1, FIB_DTYPE_F64, NULL, NULL, 0, &id) ==
          FIB_E_NULL);
    double scale[3] = {1, INFINITY, 1};
    CHECK(fib_graph_add_affine(g, plain, FIB_DTYPE_F64, scale, NULL, 0, &id) == FIB_E_NONFINITE);
    CHECK(strstr(fib_last_error(), "scale 1") != NULL);
    int32_t n = 0;
    fib_graph_num_groups(g, &n);
    CHECK(n == 2);
    fib_graph_free(g);
}

/* PyTorch refuses pooling whose padding exceeds half the kernel: a window
 * lying wholly in the padding would have no input (max: -inf). */
static void pool_padding_at_most_half_the_kernel(void)
{
    fib_graph *g;
    int32_t in, id;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, 1, 1, 1, &in));
    CHECK(fib_graph_add_pool(g, in, FIB_POOL_MAX, 1, 1, 1, 1, 1, 1, &id) == FIB_E_SHAPE);
    CHECK(fib_graph_add_pool(g, in, FIB_POOL_AVG, 2, 2, 1, 1, 1, 2, &id) == FIB_E_SHAPE);
    CHECK_OK(fib_graph_add_pool(g, in, FIB_POOL_MAX, 2, 2, 1, 1, 1, 1, &id));
    double x = -3.0, y[4];
    CHECK_OK(fib_graph_forward(g, 1, FIB_DTYPE_F64, &x, y));
    for (int i = 0; i < 4; i++)
        CHECK(y[i] == -3.0);
    fib_graph_free(g);
}

/* Output positions times channels must fit the size limit, or every
 * activity size computed from them overflows. */
static void huge_padding_overflows(void)
{
    fib_graph *g;
    int32_t in, id;
    double k[1] = {1.0};
    int64_t pad = INT64_C(1) << 39;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, 1, 1, 1, &in));
    CHECK(fib_graph_add_conv(g, in, 1, 1, 1, 1, 1, pad, pad, 1, FIB_DTYPE_F64, k, NULL, 0,
                             &id) == FIB_E_OVERFLOW);
    int32_t n = 0;
    fib_graph_num_groups(g, &n);
    CHECK(n == 1);
    fib_graph_free(g);
}

/* Output groups are never merged: a flatten that is an output keeps every
 * (channel, position) unit, so the convolution it reads keeps its channels
 * even when they are symmetric. */
static void output_flatten_keeps_its_units(void)
{
    double k[2] = {0.5, 0.5};
    fib_graph *g;
    int32_t in, conv, flat;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, 1, 2, 2, &in));
    CHECK_OK(fib_graph_add_conv(g, in, 2, 1, 1, 1, 1, 0, 0, 1, FIB_DTYPE_F64, k, NULL, 0, &conv));
    CHECK_OK(fib_graph_set_activation(g, conv, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_flatten(g, conv, &flat));
    fib_coloring *c = NULL;
    CHECK_OK(fib_color(g, NULL, &c));
    int64_t kc = 0;
    fib_coloring_num_classes(c, conv, &kc);
    CHECK(kc == 1); /* the two channels are symmetric */
    fib_base *b = NULL;
    CHECK_OK(fib_compress(g, c, &b));
    int64_t n_out = 0, base_out = 0;
    fib_graph_io_width(g, NULL, &n_out);
    if (b)
        fib_graph_io_width(fib_base_graph(b), NULL, &base_out);
    CHECK(n_out == 8 && base_out == 8);
    if (b && base_out == n_out)
        CHECK(test_output_difference(g, fib_base_graph(b), 3, 4, 1.0) <= 1e-12);
    fib_base_free(b);
    fib_coloring_free(c);
    fib_graph_free(g);
}

int main(void)
{
    RUN(planted_cnn_max_pool_fibers);
    RUN(planted_cnn_avg_pool_covers);
    RUN(random_cnn_is_discrete);
    RUN(grouped_conv_base_stays_grouped_and_exact);
    RUN(compress_ex_borrow_shares_unmerged_conv_kernels);
    RUN(compress_ex_float32_rounds_each_merged_conv_kernel_once);
    RUN(conv_forward_follows_its_definition);
    RUN(grouped_conv_uneven_classes_stay_grouped);
    RUN(grouped_conv_signature_per_group_keeps_classes);
    RUN(bad_conv_inputs);
    RUN(pool_padding_at_most_half_the_kernel);
    RUN(huge_padding_overflows);
    RUN(output_flatten_keeps_its_units);
    return test_failures ? 1 : 0;
}
