/* The synthetic correction (fib_budget_options.synthetic_scale) draws its
 * samples and carries them through the networks a block at a time
 * (fib_budget_correction_block). Its sums are within one sample or over
 * the samples in ascending order, so the base must not depend on the block:
 * one block of every sample (what the correction held before it streamed)
 * and blocks of 1, 7 and 64 samples give the same base value for value,
 * on a chain whose odd input width makes blocks end between the two
 * numbers of a Gaussian pair. A lifted chain (planted classes, merged by
 * the budget at the base's size) stays exact when streamed. */
#include <stdlib.h>

#include "checks.h"
#include "compress/compress.h"
#include "fibration.h"
#include "planted.h"
#include "testing.h"

int test_failures;

enum { LAYERS = 3, SAMPLES = 300 };
static const int64_t dims[LAYERS + 1] = {15, 40, 40, 4};

static fib_base *corrected(const fib_graph *g, double budget, int merge_inputs, int64_t block)
{
    fib_budget_options o;
    fib_budget_options_init(&o, sizeof o);
    o.merge_inputs = merge_inputs;
    o.synthetic_scale = 1.0;
    o.synthetic_samples = SAMPLES;
    o.dtype = FIB_DTYPE_F64;
    int64_t saved = fib_budget_correction_block;
    fib_budget_correction_block = block;
    fib_base *b = NULL;
    CHECK_OK(fib_compress_to_budget(g, budget, &o, &b));
    fib_budget_correction_block = saved;
    CHECK(o.corrected == 1);
    return b;
}

static void streamed_blocks_give_one_blocks_base(void)
{
    fib_graph *g = test_paired_input_chain(dims, LAYERS, 41, NULL);
    fib_base *whole = corrected(g, 0.2, 1, SAMPLES);
    for (int64_t block = 1; whole && block <= 64; block = block == 1 ? 7 : block * 9) {
        fib_base *b = corrected(g, 0.2, 1, block);
        if (!b)
            continue;
        for (int32_t i = 0; i < LAYERS; i++) /* inputs and hidden layers merged */
            CHECK(test_width(fib_base_graph(b), i) < dims[i]);
        CHECK(test_differing_tensors(whole, b) == 0);
        CHECK(test_output_difference(fib_base_graph(whole), fib_base_graph(b), 3, 16, 1.0) ==
              0.0);
        fib_base_free(b);
    }
    /* the correction moved the base: blocks that dropped samples would too,
     * but not all alike (the comparison above would fail) */
    fib_base *plain = test_uncorrected_budget(g, 0.2);
    if (whole && plain)
        CHECK(test_output_difference(fib_base_graph(whole), fib_base_graph(plain), 3, 16, 1.0) >
              1e-6);
    fib_base_free(plain);
    fib_base_free(whole);
    fib_graph_free(g);
}

static void planted_copies_stay_exact_when_streamed(void)
{
    static const int64_t base[] = {10, 6, 5, 3};
    planted_mlp p;
    planted_build(&p, 7, 3, base, 3, FIB_DTYPE_F64, 0, FIB_ACT_RELU, 0);
    fib_graph *g = planted_graph(&p, FIB_COPY);
    double small = 0, big = 0;
    for (int l = 0; l < p.n_layers; l++) {
        small += (double)(p.base_width[l + 1] * (p.base_width[l] + 1));
        big += (double)(p.width[l + 1] * (p.width[l] + 1));
    }
    CHECK(p.width[1] > base[1] && p.width[2] > base[2]);
    for (int64_t block = 7; block <= SAMPLES; block += SAMPLES - 7) {
        fib_base *b = corrected(g, small / big, 0, block);
        if (!b)
            continue;
        for (int32_t i = 1; i < p.n_layers; i++)
            CHECK(test_width(fib_base_graph(b), i) == base[i]);
        double diff = test_output_difference(g, fib_base_graph(b), 5, 32, 1.0);
        CHECK(diff < 1e-9);
        if (!(diff < 1e-9))
            fprintf(stderr, "block %lld: outputs differ by %g\n", (long long)block, diff);
        fib_base_free(b);
    }
    fib_graph_free(g);
    planted_free(&p);
}

int main(void)
{
    RUN(streamed_blocks_give_one_blocks_base);
    RUN(planted_copies_stay_exact_when_streamed);
    return test_failures ? 1 : 0;
}
