/* The exact forms of opfiber contributions (fib_block_ops
 * opfiber_exact_width) must give exactly the classes of the full forms
 * under FIB_TOL_EXACT, at 1 and 2 threads. Affine: a source unit's one
 * nonzero column as (class label, scale) instead of a row over every class
 * of the affine (for a convolution read by its batch norm, n units x n
 * classes), on planted equal scales, zero and negative zero scales
 * (all-zero rows), opposite signs, scales one rounding apart, float32 and
 * float64. Pooling: the pooled channel's class as one label instead of a
 * count per class, average and max. Where they cannot apply (another reader
 * of the source, a gather reading a unit twice) and in every tolerance mode
 * the full form is used. The fibers-then-opfibers pair gives what fib_color
 * gives for fibers and for opfibers. */
#include "blocks/blocks.h"
#include "color/color.h"
#include "checks.h"
#include "color/linkage.h"
#include "testing.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


int test_failures;

#define N_IN 6
#define N_H 16
#define N_OUT 5

static uint64_t state = 0x243f6a8885a308d3u;

static double uniform(void)
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (double)(state >> 11) / 9007199254740992.0 - 0.5;
}

/* Scales of the hidden units: 0 = 1 and 2 = 3 (their input rows and output
 * columns alike: they merge), 4 and 5 alike rows and columns but other
 * scales; 6, 7 zero and 8 negative zero (all-zero rows: one class, though
 * their readers differ); 9 =
 * -10; 11 and 12 one rounding apart (merged up to rounding), 13 far from
 * both. */
static void planted_scales(double *scale, double *in_w, double *out_w)
{
    for (int i = 0; i < N_H; i++)
        scale[i] = 0.5 + uniform();
    scale[1] = scale[0];
    scale[3] = scale[2];
    scale[6] = scale[7] = 0.0;
    scale[8] = -0.0;
    scale[9] = -scale[10];
    scale[12] = nextafter(scale[11], 2.0);
    scale[13] = scale[11] * (1 + 1e-3);
    for (int o = 0; o < N_OUT; o++)
        for (int i = 0; i < N_H; i++)
            out_w[o * N_H + i] = uniform();
    /* 6, 7 and 8 read by units of different classes (their own columns) */
    static const int alike[][2] = {{0, 1}, {2, 3}, {4, 5}, {9, 10}, {11, 12}, {11, 13},
                                   {6, 7}, {6, 8}};
    for (size_t p = 0; p < sizeof alike / sizeof alike[0] - 2; p++)
        for (int o = 0; o < N_OUT; o++)
            out_w[o * N_H + alike[p][1]] = out_w[o * N_H + alike[p][0]];
    for (size_t p = 0; p < sizeof alike / sizeof alike[0]; p++)
        memcpy(in_w + alike[p][1] * N_IN, in_w + alike[p][0] * N_IN, N_IN * sizeof *in_w);
}

/* input -> dense (linear: no flavour) -> affine (tanh) -> dense out, the
 * weights copied; with
 * `second_reader`, another dense block reads the first dense group too.
 * Returns the first dense group; *affine its reader. */
static fib_graph *build(int32_t dtype, bool second_reader, int32_t *hidden, int32_t *affine)
{
    double w1[N_H * N_IN], scale[N_H], shift[N_H], w2[N_OUT * N_H];
    float w1f[N_H * N_IN], scalef[N_H], shiftf[N_H], w2f[N_OUT * N_H];
    for (int i = 0; i < N_H * N_IN; i++)
        w1[i] = uniform();
    for (int i = 0; i < N_H; i++)
        shiftf[i] = (float)(shift[i] = 0.0);
    planted_scales(scale, w1, w2);
    for (int i = 0; i < N_H * N_IN; i++)
        w1f[i] = (float)w1[i];
    if (dtype == FIB_DTYPE_F32) /* one float32 rounding apart */
        scale[12] = (double)nextafterf((float)scale[11], 2.0f);
    for (int i = 0; i < N_H; i++)
        scalef[i] = (float)scale[i];
    for (int i = 0; i < N_OUT * N_H; i++)
        w2f[i] = (float)w2[i];
    bool f32 = dtype == FIB_DTYPE_F32;
    fib_graph *g = NULL;
    int32_t in, out, other;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, N_IN, &in));
    CHECK_OK(fib_graph_add_dense(g, in, N_H, dtype, f32 ? (const void *)w1f : w1, N_IN, NULL,
                                 FIB_COPY, hidden));
    CHECK_OK(fib_graph_add_affine(g, *hidden, dtype, f32 ? (const void *)scalef : scale,
                                  f32 ? (const void *)shiftf : shift, FIB_COPY, affine));
    CHECK_OK(fib_graph_set_activation(g, *affine, FIB_ACT_TANH, 0));
    CHECK_OK(fib_graph_add_dense(g, *affine, N_OUT, dtype, f32 ? (const void *)w2f : w2, N_H,
                                 NULL, FIB_COPY, &out));
    if (second_reader)
        CHECK_OK(fib_graph_add_dense(g, *hidden, N_OUT, dtype, f32 ? (const void *)w2f : w2,
                                     N_H, NULL, FIB_COPY, &other));
    return g;
}

/* The classes of group `group` from its opfiber signature, full
 * (fib_opfiber_signature_ex) or by mode; *coords: the signature's width. */
static void opfiber_classes(const fib_graph *g, int32_t group, const fib_coloring *opfibers,
                            const fib_coloring *fibers, bool by_mode, int32_t mode,
                            double eps, int32_t threads, fib_partition *out, int64_t *coords)
{
    fib_scratch scratch = {0};
    fib_signature sig;
    int32_t status =
        by_mode ? fib_opfiber_signature_mode(g, group, opfibers->parts, fibers->parts, mode,
                                             eps, threads, &scratch, &sig)
                : fib_opfiber_signature_ex(g, group, opfibers->parts, fibers->parts, threads,
                                           &scratch, &sig);
    CHECK_OK(status);
    *coords = status ? -1 : sig.n_coords;
    CHECK_OK(fib_partition_init(out, g->groups[group].n_units));
    if (!status) {
        CHECK_OK(fib_group_signatures_mode(&sig, mode, eps, NULL, out));
        fib_signature_clear(&sig);
    }
    fib_scratch_clear(&scratch);
}

static bool same_partition(const fib_partition *a, const fib_partition *b)
{
    return a->n_units == b->n_units && a->n_classes == b->n_classes &&
           memcmp(a->color, b->color, (size_t)a->n_units * sizeof *a->color) == 0;
}

/* For threads 1 and 2: EXACT by mode gives the full form's classes, in
 * exact_width coordinates (0: the full form's), and what fib_color found;
 * ABS keeps the full form. Returns the EXACT classes in *classes. */
static void compare_forms(const fib_graph *g, int32_t group, int64_t exact_width,
                          fib_partition *classes)
{
    fib_coloring *fibers = NULL, *opfibers = NULL;
    CHECK_OK(test_color_pair(g, NULL, &fibers, &opfibers));
    if (!fibers || !opfibers)
        return;
    for (int32_t threads = 1; threads <= 2; threads++) {
        fib_partition full, exact, abs_full, abs_mode;
        int64_t full_w, exact_w, abs_w, abs_mode_w;
        opfiber_classes(g, group, opfibers, fibers, false, FIB_TOL_EXACT, -1.0, threads, &full,
                        &full_w);
        opfiber_classes(g, group, opfibers, fibers, true, FIB_TOL_EXACT, -1.0, threads, &exact,
                        &exact_w);
        CHECK(same_partition(&full, &exact));
        CHECK(same_partition(&exact, &opfibers->parts[group]));
        CHECK(exact_w == (exact_width ? exact_width : full_w));
        opfiber_classes(g, group, opfibers, fibers, false, FIB_TOL_ABS, 1e-3, threads,
                        &abs_full, &abs_w);
        opfiber_classes(g, group, opfibers, fibers, true, FIB_TOL_ABS, 1e-3, threads,
                        &abs_mode, &abs_mode_w);
        CHECK(abs_mode_w == abs_w && same_partition(&abs_full, &abs_mode));
        if (threads == 1)
            CHECK_OK(fib_partition_copy(classes, &exact));
        fib_partition_clear(&full);
        fib_partition_clear(&exact);
        fib_partition_clear(&abs_full);
        fib_partition_clear(&abs_mode);
    }
    fib_coloring_free(fibers);
    fib_coloring_free(opfibers);
}

static void test_exact_form_matches_full_form(void)
{
    for (int32_t dtype = FIB_DTYPE_F32; dtype <= FIB_DTYPE_F64; dtype++) {
        if (dtype != FIB_DTYPE_F32 && dtype != FIB_DTYPE_F64)
            continue;
        int32_t hidden, affine;
        fib_graph *g = build(dtype, false, &hidden, &affine);
        fib_partition c = {0};
        compare_forms(g, hidden, 2, &c);
        if (c.color) {
            const int64_t *k = c.color;
            CHECK(k[0] == k[1] && k[2] == k[3] && k[11] == k[12]);
            CHECK(k[6] == k[7] && k[7] == k[8]);
            CHECK(k[4] != k[5] && k[9] != k[10] && k[11] != k[13] && k[0] != k[2]);
            CHECK(c.n_classes == N_H - 5);
        }
        fib_partition_clear(&c);
        fib_graph_free(g);
    }
}

static void test_another_reader_keeps_the_full_form(void)
{
    int32_t hidden, affine;
    fib_graph *g = build(FIB_DTYPE_F64, true, &hidden, &affine);
    fib_partition c = {0};
    compare_forms(g, hidden, 0, &c);
    fib_partition_clear(&c);
    fib_graph_free(g);
}

/* An affine whose gather reads source unit 0 twice gives it two nonzero
 * columns: the full form is used. */
static void test_gather_reading_twice_keeps_the_full_form(void)
{
    double w1[N_H * N_IN], w2[N_OUT * (N_H + 1)];
    for (int i = 0; i < N_H * N_IN; i++)
        w1[i] = uniform();
    for (int i = 0; i < N_OUT * (N_H + 1); i++)
        w2[i] = uniform();
    double *scale = fib_alloc(N_H + 1, sizeof *scale), *shift = fib_alloc(N_H + 1, sizeof *shift);
    int64_t *reads = fib_alloc(N_H + 1, sizeof *reads);
    for (int i = 0; i <= N_H; i++) {
        scale[i] = 0.5 + uniform();
        shift[i] = 0.0;
        reads[i] = i < N_H ? i : 0;
    }
    fib_graph *g = NULL;
    int32_t in, hidden, affine, out;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, N_IN, &in));
    CHECK_OK(fib_graph_add_dense(g, in, N_H, FIB_DTYPE_F64, w1, N_IN, NULL, FIB_COPY, &hidden));
    CHECK_OK(fib_graph_add_affine_gather(g, hidden, N_H + 1, scale, shift, reads, &affine));
    CHECK_OK(fib_graph_add_dense(g, affine, N_OUT, FIB_DTYPE_F64, w2, N_H + 1, NULL, FIB_COPY, &out));
    fib_partition c = {0};
    compare_forms(g, hidden, 0, &c);
    fib_partition_clear(&c);
    fib_graph_free(g);
}

/* Pooling's exact form: channels (C of them, 2 x 2 positions) -> 1 x 1
 * convolution -> pooling of all 4 positions (avg or max) -> flatten ->
 * dense, whose columns of pooled channels 0 and 1 are alike (their pooled
 * channels merge, so do the convolution's channels 0 and 1) and 2 and 3
 * too; with `twice`, a gather pools convolution channel 0 a second time
 * (the full form). The convolution group's classes: the full form's, in 1
 * or 2 coordinates (avg, max), under FIB_TOL_EXACT. */
static void check_pool_form(int32_t kind, bool twice)
{
    enum { C = 8 };
    int64_t n_pooled = twice ? C + 1 : C;
    double conv_w[C * C], dense_w[N_OUT * (C + 1)];
    for (int i = 0; i < C * C; i++)
        conv_w[i] = uniform();
    for (int i = 0; i < N_OUT * (C + 1); i++)
        dense_w[i] = uniform();
    for (int o = 0; o < N_OUT; o++) {
        dense_w[o * n_pooled + 1] = dense_w[o * n_pooled];
        dense_w[o * n_pooled + 3] = dense_w[o * n_pooled + 2];
    }
    /* alike incoming rows too, so that a max pooling's fiber label agrees */
    memcpy(conv_w + C, conv_w, C * sizeof *conv_w);
    memcpy(conv_w + 3 * C, conv_w + 2 * C, C * sizeof *conv_w);
    fib_graph *g = NULL;
    int32_t in, conv, pool, flat, out;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, C, 2, 2, &in));
    CHECK_OK(fib_graph_add_conv(g, in, C, 1, 1, 1, 1, 0, 0, 1, FIB_DTYPE_F64, conv_w, NULL,
                                FIB_COPY, &conv));
    if (twice) {
        int64_t *reads = fib_alloc(n_pooled, sizeof *reads);
        for (int64_t c = 0; c < n_pooled; c++)
            reads[c] = c < C ? c : 0;
        static const int64_t window[6] = {2, 2, 2, 2, 0, 0};
        CHECK_OK(fib_graph_add_pool_gather(g, conv, kind, window, n_pooled, reads, &pool));
    } else {
        CHECK_OK(fib_graph_add_pool(g, conv, kind, 2, 2, 2, 2, 0, 0, &pool));
    }
    CHECK_OK(fib_graph_add_flatten(g, pool, &flat));
    CHECK_OK(fib_graph_add_dense(g, flat, N_OUT, FIB_DTYPE_F64, dense_w, n_pooled, NULL,
                                 FIB_COPY, &out));
    fib_partition c = {0};
    compare_forms(g, conv, twice ? 0 : kind == FIB_POOL_MAX ? 2 : 1, &c);
    if (c.color && !twice) {
        CHECK(c.color[0] == c.color[1] && c.color[2] == c.color[3]);
        CHECK(c.n_classes == C - 2);
    }
    fib_partition_clear(&c);
    fib_graph_free(g);
}

static void test_pool_exact_form_matches_full_form(void)
{
    check_pool_form(FIB_POOL_AVG, false);
    check_pool_form(FIB_POOL_MAX, false);
    check_pool_form(FIB_POOL_AVG, true);
}

/* The pair of colourings ft.analyze asks for (fibers, then the opfibers
 * they flavour): fib_color's fibers and opfibers, the same options, every
 * thread count. */
static void test_fibers_opfibers_are_fib_colors(void)
{
    int32_t hidden, affine;
    fib_graph *g = build(FIB_DTYPE_F32, false, &hidden, &affine);
    static const int32_t modes[] = {FIB_TOL_EXACT, FIB_TOL_ABS};
    for (int m = 0; m < 2; m++)
        for (int32_t threads = 1; threads <= 2; threads++) {
            fib_color_options o;
            CHECK_OK(fib_color_options_init(&o, sizeof o));
            o.tolerance = modes[m];
            o.eps = m ? 0.05 : 0.0;
            o.n_threads = threads;
            o.symmetry = FIB_SYM_COVERS; /* not read */
            fib_coloring *pair[2] = {NULL, NULL}, *alone[2] = {NULL, NULL};
            CHECK_OK(test_color_pair(g, &o, &pair[0], &pair[1]));
            o.symmetry = FIB_SYM_FIBERS;
            CHECK_OK(fib_color(g, &o, &alone[0]));
            o.symmetry = FIB_SYM_OPFIBERS;
            CHECK_OK(fib_color(g, &o, &alone[1]));
            for (int k = 0; k < 2 && pair[k] && alone[k]; k++) {
                int32_t s_pair, s_alone;
                CHECK_OK(fib_coloring_symmetry(pair[k], &s_pair));
                CHECK_OK(fib_coloring_symmetry(alone[k], &s_alone));
                CHECK(s_pair == s_alone);
                for (int32_t i = 0; i < g->n_groups; i++)
                    CHECK(same_partition(&pair[k]->parts[i], &alone[k]->parts[i]));
            }
            for (int k = 0; k < 2; k++) {
                fib_coloring_free(pair[k]);
                fib_coloring_free(alone[k]);
            }
        }
    fib_graph_free(g);
}

int main(void)
{
    RUN(test_exact_form_matches_full_form);
    RUN(test_another_reader_keeps_the_full_form);
    RUN(test_gather_reading_twice_keeps_the_full_form);
    RUN(test_pool_exact_form_matches_full_form);
    RUN(test_fibers_opfibers_are_fib_colors);
    return test_failures != 0;
}
