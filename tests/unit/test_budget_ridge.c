/* The correction's ridge (fib_budget_options.synthetic_ridge): checked
 * (finite and >= 0, else FIB_E_INVALID naming it), its default the one the
 * correction always had (an explicit 1e-3 gives the same base value for
 * value, and so does a caller of the layout before the field, whatever
 * lies beyond its struct_size), and it reaches every fit: another ridge
 * gives other weights on the same classes, through fib_compress_to_budget
 * and fib_compress_to_budget_ex alike, and a ridge so large that the
 * least squares overflow keeps the consumer the ridge pulls towards (the
 * limit of ever larger ridges) instead of writing non-finite weights. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>

#include "checks.h"
#include "fibration.h"
#include "testing.h"

int test_failures;

enum { LAYERS = 3, SAMPLES = 300 };
static const int64_t dims[LAYERS + 1] = {15, 40, 40, 4};
static const double BUDGET = 0.2;

static void corrected_options(fib_budget_options *o)
{
    fib_budget_options_init(o, sizeof *o);
    o->merge_inputs = 1;
    o->synthetic_scale = 1.0;
    o->synthetic_samples = SAMPLES;
}

static fib_base *with_ridge(const fib_graph *g, double ridge)
{
    fib_budget_options o;
    corrected_options(&o);
    o.synthetic_ridge = ridge;
    fib_base *b = NULL;
    CHECK_OK(fib_compress_to_budget(g, BUDGET, &o, &b));
    CHECK(o.corrected == 1);
    return b;
}

static bool same_widths(const fib_base *a, const fib_base *b)
{
    for (int32_t i = 0; i <= LAYERS; i++)
        if (test_width(fib_base_graph(a), i) != test_width(fib_base_graph(b), i))
            return false;
    return true;
}

static void ridge_is_checked(void)
{
    fib_graph *g = test_paired_input_chain(dims, LAYERS, 41, NULL);
    fib_budget_options o;
    corrected_options(&o);
    CHECK(o.synthetic_ridge == 1e-3);
    static const double bad[] = {-1.0, -1e-300, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        o.synthetic_ridge = bad[i];
        fib_base *b = NULL;
        expect(fib_compress_to_budget(g, BUDGET, &o, &b), FIB_E_INVALID,
               "synthetic_ridge", "a ridge below 0 or not finite");
        CHECK(b == NULL);
        fib_budget_result r = {.struct_size = sizeof r};
        expect(fib_compress_to_budget_ex(g, BUDGET, &o, &r, &b), FIB_E_INVALID,
               "synthetic_ridge", "the same through fib_compress_to_budget_ex");
        CHECK(b == NULL);
    }
    fib_graph_free(g);
}

static void default_is_an_explicit_thousandth(void)
{
    fib_graph *g = test_paired_input_chain(dims, LAYERS, 41, NULL);
    fib_budget_options o;
    corrected_options(&o);
    fib_base *by_default = NULL, *old = NULL;
    CHECK_OK(fib_compress_to_budget(g, BUDGET, &o, &by_default));
    fib_base *explicit = with_ridge(g, 1e-3);
    /* a caller of the previous layout: what lies beyond is not its */
    corrected_options(&o);
    o.struct_size = FIB_BUDGET_OPTIONS_SIZE_4;
    o.synthetic_ridge = -5;
    CHECK_OK(fib_compress_to_budget(g, BUDGET, &o, &old));
    if (by_default && explicit && old) {
        CHECK(test_differing_tensors(by_default, explicit) == 0);
        CHECK(test_differing_tensors(by_default, old) == 0);
    }
    fib_base_free(by_default);
    fib_base_free(explicit);
    fib_base_free(old);
    fib_graph_free(g);
}

static void another_ridge_moves_the_weights_not_the_classes(void)
{
    fib_graph *g = test_paired_input_chain(dims, LAYERS, 41, NULL);
    fib_base *thousandth = with_ridge(g, 1e-3);
    static const double others[] = {0.0, 1e-10, 1.0};
    for (size_t i = 0; thousandth && i < sizeof others / sizeof *others; i++) {
        fib_base *b = with_ridge(g, others[i]);
        if (!b)
            continue;
        CHECK(same_widths(b, thousandth));
        double moved = test_output_difference(fib_base_graph(b), fib_base_graph(thousandth),
                                              3, 16, 1.0);
        CHECK(moved > 1e-9);
        if (!(moved > 1e-9))
            fprintf(stderr, "ridge %g: outputs differ by %g from ridge 1e-3\n", others[i], moved);
        /* fib_compress_to_budget_ex reads the ridge too */
        fib_budget_options o;
        corrected_options(&o);
        o.synthetic_ridge = others[i];
        fib_budget_result r = {.struct_size = sizeof r};
        fib_base *ex = NULL;
        CHECK_OK(fib_compress_to_budget_ex(g, BUDGET, &o, &r, &ex));
        CHECK(r.corrected == 1);
        if (ex)
            CHECK(test_differing_tensors(b, ex) == 0);
        fib_base_free(ex);
        fib_base_free(b);
    }
    fib_base_free(thousandth);
    fib_graph_free(g);
}

static void an_overflowing_ridge_keeps_the_prior(void)
{
    fib_graph *g = test_paired_input_chain(dims, LAYERS, 41, NULL);
    fib_base *huge = with_ridge(g, 1e308), *large = with_ridge(g, 1e200);
    fib_base *plain = test_uncorrected_budget(g, BUDGET);
    if (huge && large && plain) {
        CHECK(same_widths(huge, large));
        double limit = test_output_difference(fib_base_graph(huge), fib_base_graph(large),
                                              3, 16, 1.0);
        CHECK(isfinite(limit) && limit < 1e-9);
        if (!(limit < 1e-9))
            fprintf(stderr, "ridge 1e308 against 1e200: outputs differ by %g\n", limit);
        /* the prior is the re-derived representatives', not Eq. 10's base */
        CHECK(test_output_difference(fib_base_graph(huge), fib_base_graph(plain), 3, 16, 1.0) >
              1e-6);
    }
    fib_base_free(huge);
    fib_base_free(large);
    fib_base_free(plain);
    fib_graph_free(g);
}

int main(void)
{
    RUN(ridge_is_checked);
    RUN(default_is_an_explicit_thousandth);
    RUN(another_ridge_moves_the_weights_not_the_classes);
    RUN(an_overflowing_ridge_keeps_the_prior);
    return test_failures ? 1 : 0;
}
