/* An ungrouped convolution lends its kernels instead of filling float64
 * copies: as rows, the fiber signature of its own group when its source is
 * discrete (conv fiber_view), and as runs of taps, one per output channel
 * (fib_direct_block.run), the opfiber signature of the group it reads when
 * its own classes are discrete (conv opfiber_view). The classes must be
 * exactly those of the filled signatures in every tolerance mode, for 1 x 1
 * and 3 x 3 kernels, float32 and float64, at 1 and 2 threads. Planted:
 * equal kernels (merged), kernels one rounding apart (merged up to
 * rounding), negated kernels (not merged). A grouped convolution, or one
 * whose classes are not discrete, is filled. */
#include "blocks/blocks.h"
#include "color/color.h"
#include "checks.h"
#include "color/linkage.h"
#include "testing.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


int test_failures;

#define C_IN 3
#define C_MID 12
#define C_OUT 6

static uint64_t state = 0x13198a2e03707344u;

static double uniform(void)
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (double)(state >> 11) / 9007199254740992.0 - 0.5;
}

/* input (C_IN channels, 4 x 4) -> 1 x 1 convolution (C_MID) -> convolution
 * (k x k, padding k / 2, C_OUT, `groups`) -> 1 x 1 convolution (2),
 * weights copied. The reading convolution's kernels of input channels 1
 * and 5 are those of 0 and 4, 3 is 2's one rounding up, 7 is -6; with
 * `alike_rows`, the last convolution reads its channels 0 and 1 alike
 * (then its classes are not discrete). Returns the middle group. */
static fib_graph *build(int32_t dtype, int64_t k, int64_t groups, bool alike_rows, int32_t *mid)
{
    int64_t kk = k * k, ipg = C_MID / groups;
    double w1[C_MID * C_IN], w2[C_OUT * C_MID * 9];
    float w1f[C_MID * C_IN], w2f[C_OUT * C_MID * 9];
    for (int i = 0; i < C_MID * C_IN; i++)
        w1f[i] = (float)(w1[i] = uniform());
    for (int64_t i = 0; i < C_OUT * ipg * kk; i++)
        w2[i] = (double)(float)uniform();
    for (int64_t o = 0; o < C_OUT; o++)
        for (int64_t q = 0; q < kk; q++) {
            double *w = w2 + o * ipg * kk + q;
            static const int copy[][2] = {{0, 1}, {4, 5}};
            for (int p = 0; p < 2; p++)
                if (copy[p][1] < ipg)
                    w[copy[p][1] * kk] = w[copy[p][0] * kk];
            if (3 < ipg)
                w[3 * kk] = dtype == FIB_DTYPE_F32
                                ? (double)nextafterf((float)w[2 * kk], 1.0f)
                                : nextafter(w[2 * kk], 1.0);
            if (7 < ipg)
                w[7 * kk] = -w[6 * kk];
        }
    double w3[2 * C_OUT];
    float w3f[2 * C_OUT];
    for (int i = 0; i < 2 * C_OUT; i++)
        w3[i] = uniform();
    if (alike_rows) {
        w3[1] = w3[0];
        w3[C_OUT + 1] = w3[C_OUT];
    }
    for (int i = 0; i < 2 * C_OUT; i++)
        w3f[i] = (float)w3[i];
    for (int64_t i = 0; i < C_OUT * ipg * kk; i++)
        w2f[i] = (float)w2[i];
    bool f32 = dtype == FIB_DTYPE_F32;
    fib_graph *g = NULL;
    int32_t in, out, last;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, C_IN, 4, 4, &in));
    CHECK_OK(fib_graph_add_conv(g, in, C_MID, 1, 1, 1, 1, 0, 0, 1, dtype,
                                f32 ? (const void *)w1f : w1, NULL, FIB_COPY, mid));
    CHECK_OK(fib_graph_add_conv(g, *mid, C_OUT, k, k, 1, 1, k / 2, k / 2, groups, dtype,
                                f32 ? (const void *)w2f : w2, NULL, FIB_COPY, &out));
    CHECK_OK(fib_graph_add_conv(g, out, 2, 1, 1, 1, 1, 0, 0, 1, dtype,
                                f32 ? (const void *)w3f : w3, NULL, FIB_COPY, &last));
    return g;
}

static bool same_partition(const fib_partition *a, const fib_partition *b)
{
    return a->n_units == b->n_units && a->n_classes == b->n_classes &&
           memcmp(a->color, b->color, (size_t)a->n_units * sizeof *a->color) == 0;
}

/* The middle group's opfiber classes from the borrowed (scratch given) and
 * the filled signature, every mode, 1 and 2 threads; *borrowed: whether
 * the kernels were lent. Returns the EXACT classes in *exact. */
static void compare(const fib_graph *g, int32_t mid, bool *borrowed, fib_partition *exact)
{
    fib_coloring *fibers = NULL, *opfibers = NULL;
    CHECK_OK(test_color_pair(g, NULL, &fibers, &opfibers));
    if (!fibers || !opfibers)
        return;
    static const int32_t modes[] = {FIB_TOL_EXACT, FIB_TOL_ABS, FIB_TOL_REL, FIB_TOL_COSINE,
                                    FIB_TOL_COMPLETE, FIB_TOL_WARD};
    *borrowed = true;
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++)
        for (double eps = m ? 1e-3 : -1.0; eps < 1.0; eps = eps < 0 ? 2.0 : eps * 100)
            for (int32_t threads = 1; threads <= 2; threads++) {
                fib_scratch scratch = {0};
                fib_signature lent, filled;
                CHECK_OK(fib_opfiber_signature_ex(g, mid, opfibers->parts, fibers->parts,
                                                  threads, &scratch, &lent));
                CHECK_OK(fib_opfiber_signature(g, mid, opfibers->parts, fibers->parts,
                                               &filled));
                filled.n_threads = threads;
                *borrowed = *borrowed && lent.n_direct > 0;
                CHECK(lent.n_coords == filled.n_coords && filled.n_direct == 0);
                fib_partition a, b;
                CHECK_OK(fib_partition_init(&a, C_MID));
                CHECK_OK(fib_partition_init(&b, C_MID));
                CHECK_OK(fib_group_signatures_mode(&lent, modes[m], eps, NULL, &a));
                CHECK_OK(fib_group_signatures_mode(&filled, modes[m], eps, NULL, &b));
                CHECK(same_partition(&a, &b));
                if (m == 0 && threads == 1)
                    CHECK_OK(fib_partition_copy(exact, &a));
                fib_partition_clear(&a);
                fib_partition_clear(&b);
                fib_signature_clear(&lent);
                fib_signature_clear(&filled);
                fib_scratch_clear(&scratch);
            }
    fib_coloring_free(fibers);
    fib_coloring_free(opfibers);
}

static void test_borrowed_kernels_group_as_filled(void)
{
    for (int32_t dtype = FIB_DTYPE_F32; dtype <= FIB_DTYPE_F64; dtype++)
        for (int64_t k = 1; k <= 3; k += 2) {
            int32_t mid;
            fib_graph *g = build(dtype, k, 1, false, &mid);
            bool borrowed = false;
            fib_partition c = {0};
            compare(g, mid, &borrowed, &c);
            CHECK(borrowed);
            if (c.color) {
                CHECK(c.color[0] == c.color[1] && c.color[4] == c.color[5]);
                CHECK(c.color[2] == c.color[3] && c.color[6] != c.color[7]);
                CHECK(c.n_classes == C_MID - 3);
            }
            fib_partition_clear(&c);
            fib_graph_free(g);
        }
}

static void test_grouped_or_merged_readers_are_filled(void)
{
    for (int pass = 0; pass < 2; pass++) {
        int32_t mid;
        fib_graph *g = pass ? build(FIB_DTYPE_F64, 3, 2, false, &mid)
                            : build(FIB_DTYPE_F64, 3, 1, true, &mid);
        bool borrowed = true;
        fib_partition c = {0};
        compare(g, mid, &borrowed, &c);
        CHECK(!borrowed);
        fib_partition_clear(&c);
        fib_graph_free(g);
    }
}

/* The fiber side: input (C_IN channels, 4 x 4) -> k x k convolution
 * (C_MID, with bias) -> 1 x 1 convolution, the first over a discrete
 * source (the input) lending its kernels as its fiber signature. Its
 * output channel 1 copies 0 (kernel and bias), 3 is 2 one rounding up, 5
 * is -4. Same classes as the filled signature in every mode. */
static void check_fiber_view(int32_t dtype, int64_t k)
{
    int64_t kk = k * k, row = C_IN * kk;
    double w[C_MID * C_IN * 9], b[C_MID], w2[C_OUT * C_MID];
    float wf[C_MID * C_IN * 9], bf[C_MID], w2f[C_OUT * C_MID];
    for (int64_t i = 0; i < C_MID * row; i++)
        w[i] = (double)(float)uniform();
    for (int i = 0; i < C_MID; i++)
        b[i] = (double)(float)uniform();
    for (int i = 0; i < C_OUT * C_MID; i++)
        w2f[i] = (float)(w2[i] = uniform());
    for (int64_t x = 0; x < row; x++) {
        w[row + x] = w[x];
        w[3 * row + x] = dtype == FIB_DTYPE_F32 ? (double)nextafterf((float)w[2 * row + x], 1.0f)
                                                : nextafter(w[2 * row + x], 1.0);
        w[5 * row + x] = -w[4 * row + x];
    }
    b[1] = b[0];
    b[3] = b[2];
    b[5] = -b[4];
    for (int64_t i = 0; i < C_MID * row; i++)
        wf[i] = (float)w[i];
    for (int i = 0; i < C_MID; i++)
        bf[i] = (float)b[i];
    bool f32 = dtype == FIB_DTYPE_F32;
    fib_graph *g = NULL;
    int32_t in, mid, out;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, C_IN, 4, 4, &in));
    CHECK_OK(fib_graph_add_conv(g, in, C_MID, k, k, 1, 1, k / 2, k / 2, 1, dtype,
                                f32 ? (const void *)wf : w, f32 ? (const void *)bf : b,
                                FIB_COPY, &mid));
    CHECK_OK(fib_graph_add_conv(g, mid, C_OUT, 1, 1, 1, 1, 0, 0, 1, dtype,
                                f32 ? (const void *)w2f : w2, NULL, FIB_COPY, &out));
    fib_partition parts[3];
    for (int i = 0; i < 3; i++)
        CHECK_OK(fib_partition_init(&parts[i], g->groups[i].n_units));
    static const int32_t modes[] = {FIB_TOL_EXACT, FIB_TOL_ABS, FIB_TOL_REL, FIB_TOL_COSINE,
                                    FIB_TOL_COMPLETE, FIB_TOL_WARD};
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++)
        for (double eps = m ? 1e-3 : -1.0; eps < 1.0; eps = eps < 0 ? 2.0 : eps * 100)
            for (int32_t threads = 1; threads <= 2; threads++) {
                fib_scratch scratch = {0};
                fib_signature lent, filled;
                CHECK_OK(fib_fiber_signature_ex(g, mid, parts, threads, &scratch, &lent));
                CHECK_OK(fib_fiber_signature(g, mid, parts, &filled));
                filled.n_threads = threads;
                CHECK(lent.n_direct == row && filled.n_direct == 0);
                CHECK(lent.n_coords == filled.n_coords);
                fib_partition a, c;
                CHECK_OK(fib_partition_init(&a, C_MID));
                CHECK_OK(fib_partition_init(&c, C_MID));
                CHECK_OK(fib_group_signatures_mode(&lent, modes[m], eps, NULL, &a));
                CHECK_OK(fib_group_signatures_mode(&filled, modes[m], eps, NULL, &c));
                CHECK(same_partition(&a, &c));
                if (m == 0)
                    CHECK(a.color[0] == a.color[1] && a.color[2] == a.color[3] &&
                          a.color[4] != a.color[5] && a.n_classes == C_MID - 2);
                fib_partition_clear(&a);
                fib_partition_clear(&c);
                fib_signature_clear(&lent);
                fib_signature_clear(&filled);
                fib_scratch_clear(&scratch);
            }
    for (int i = 0; i < 3; i++)
        fib_partition_clear(&parts[i]);
    fib_graph_free(g);
}

static void test_lent_kernel_rows_group_as_filled(void)
{
    for (int32_t dtype = FIB_DTYPE_F32; dtype <= FIB_DTYPE_F64; dtype++)
        for (int64_t k = 1; k <= 3; k += 2)
            check_fiber_view(dtype, k);
}

int main(void)
{
    RUN(test_borrowed_kernels_group_as_filled);
    RUN(test_grouped_or_merged_readers_are_filled);
    RUN(test_lent_kernel_rows_group_as_filled);
    return test_failures != 0;
}
