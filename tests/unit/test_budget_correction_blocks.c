/* The synthetic correction (fib_budget_options.synthetic_scale) draws its
 * samples and carries them through the networks a block at a time
 * (fib_budget_correction_block). Its sums are within one sample or over
 * the samples in ascending order, so the base must not depend on the block:
 * one block of every sample (what the correction held before it streamed)
 * and blocks of 1, 7 and 64 samples give the same base value for value,
 * on a chain whose odd input width makes blocks end between the two
 * numbers of a Gaussian pair. A lifted chain (planted classes, merged by
 * the budget at the base's size) stays exact when streamed. The targets of
 * later fits the correction keeps from its first pass through the original
 * (fib_budget_correction_kept) give the bits of the passes it would make
 * again: none kept, the last fit's only, and every later fit's; so do the
 * slabs its Gram matrices are summed and factored in, and the number of
 * threads that share its products out (fib_budget_correction_work). */
#include <stdlib.h>

#include "checks.h"
#include "compress/compress.h"
#include "fibration.h"
#include "planted.h"
#include "testing.h"

int test_failures;

enum { LAYERS = 3, SAMPLES = 300 };
static const int64_t dims[LAYERS + 1] = {15, 40, 40, 4};

static fib_base *corrected_on(const fib_graph *g, double budget, int merge_inputs,
                              int64_t block, int64_t kept, int32_t threads)
{
    fib_budget_options o;
    fib_budget_options_init(&o, sizeof o);
    o.n_threads = threads;
    o.merge_inputs = merge_inputs;
    o.synthetic_scale = 1.0;
    o.synthetic_samples = SAMPLES;
    o.dtype = FIB_DTYPE_F64;
    int64_t saved = fib_budget_correction_block, saved_kept = fib_budget_correction_kept;
    fib_budget_correction_block = block;
    fib_budget_correction_kept = kept;
    fib_base *b = NULL;
    CHECK_OK(fib_compress_to_budget(g, budget, &o, &b));
    fib_budget_correction_block = saved;
    fib_budget_correction_kept = saved_kept;
    CHECK(o.corrected == 1);
    return b;
}

static fib_base *corrected_keeping(const fib_graph *g, double budget, int merge_inputs,
                                   int64_t block, int64_t kept)
{
    return corrected_on(g, budget, merge_inputs, block, kept, 0);
}

/* The correction with its own rule for the kept targets. */
static fib_base *corrected(const fib_graph *g, double budget, int merge_inputs, int64_t block)
{
    return corrected_keeping(g, budget, merge_inputs, block, -1);
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

/* The Gram matrices summed a slab of rows at a time and factored a slab of
 * columns at a time (fib_budget_correction_slab): slabs of 1, 5 and 48
 * give the base of one slab of every row, on a chain whose fits have more
 * than 48 unknowns (blocks of 7 samples and of all of them). */
static void gram_slabs_give_one_slabs_base(void)
{
    static const int64_t wide[] = {15, 120, 120, 4};
    fib_graph *g = test_paired_input_chain(wide, LAYERS, 47, NULL);
    int64_t saved = fib_budget_correction_slab;
    fib_budget_correction_slab = 1000;
    fib_base *whole = corrected(g, 0.5, 1, SAMPLES);
    for (int32_t j = 1; whole && j < LAYERS; j++)
        CHECK(test_width(fib_base_graph(whole), j) > 48);
    const int64_t slabs[] = {1, 5, 48};
    for (int i = 0; whole && i < 3; i++)
        for (int64_t block = 7; block <= SAMPLES; block += SAMPLES - 7) {
            fib_budget_correction_slab = slabs[i];
            fib_base *b = corrected(g, 0.5, 1, block);
            if (!b)
                continue;
            CHECK(test_differing_tensors(whole, b) == 0);
            fib_base_free(b);
        }
    fib_budget_correction_slab = saved;
    fib_base_free(whole);
    fib_graph_free(g);
}

/* Four layers: fits 1, 2 and 3, whose targets are layer 2's (40 units)
 * and layer 3's and 4's pre-activations. Kept: nothing (every fit makes its
 * own pass), the last fit's target only (the first pass goes on through a
 * layer whose fit makes its pass again), both later targets; in blocks
 * that end between the pairs of the Gaussian draw and in one block. */
static void kept_targets_give_the_passes_bits(void)
{
    static const int64_t deep[] = {15, 40, 40, 40, 4};
    fib_graph *g = test_paired_input_chain(deep, 4, 43, NULL);
    fib_base *made = corrected_keeping(g, 0.2, 1, SAMPLES, 0);
    const int64_t kept[] = {0, SAMPLES * deep[4], SAMPLES * (deep[3] + deep[4])};
    for (int i = 0; made && i < 3; i++)
        for (int64_t block = 7; block <= SAMPLES; block += SAMPLES - 7) {
            fib_base *b = corrected_keeping(g, 0.2, 1, block, kept[i]);
            if (!b)
                continue;
            for (int32_t j = 1; j < 4; j++) /* hidden layers merged */
                CHECK(test_width(fib_base_graph(b), j) < deep[j]);
            CHECK(test_differing_tensors(made, b) == 0);
            fib_base_free(b);
        }
    fib_base_free(made);
    fib_graph_free(g);
}

/* The block products (64 outputs a piece), the Gram slabs and the factor's
 * row blocks (48 rows) and the substitutions (64 columns a piece) shared
 * out among 2 and 3 threads give one thread's base value for value, on a
 * chain whose layers and fits have several pieces of each (the first fit
 * more than 64 outputs and 48 unknowns), in blocks of 7 samples and of
 * all of them. Every product is shared, however small
 * (fib_budget_correction_work 1), and, with the correction's own floor,
 * only those whose work pays for it. */
static void threads_give_one_threads_base(void)
{
    static const int64_t wide[] = {15, 200, 150, 4};
    fib_graph *g = test_paired_input_chain(wide, LAYERS, 53, NULL);
    fib_base *one = corrected_on(g, 0.5, 1, SAMPLES, -1, 1);
    for (int32_t j = 1; one && j < LAYERS; j++)
        CHECK(test_width(fib_base_graph(one), j) > 48);
    int64_t own = fib_budget_correction_work;
    const int64_t floors[] = {1, own};
    for (int f = 0; f < 2; f++) {
        fib_budget_correction_work = floors[f];
        for (int32_t threads = 2; one && threads <= 3; threads++)
            for (int64_t block = 7; block <= SAMPLES; block += SAMPLES - 7) {
                fib_base *b = corrected_on(g, 0.5, 1, block, -1, threads);
                if (!b)
                    continue;
                CHECK(test_differing_tensors(one, b) == 0);
                fib_base_free(b);
            }
    }
    fib_budget_correction_work = own;
    fib_base_free(one);
    fib_graph_free(g);
}

int main(void)
{
    RUN(streamed_blocks_give_one_blocks_base);
    RUN(planted_copies_stay_exact_when_streamed);
    RUN(gram_slabs_give_one_slabs_base);
    RUN(kept_targets_give_the_passes_bits);
    RUN(threads_give_one_threads_base);
    return test_failures ? 1 : 0;
}
