/* fib_compress_to_budget_ex: the outputs of a budget in fib_budget_result,
 * the options only read. The same base and the same outputs as
 * fib_compress_to_budget, stale outputs in the options ignored, a budget
 * below the smallest base reported through smallest_fraction alone, and a
 * result of an unknown size refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checks.h"
#include "fibration.h"
#include "testing.h"

int test_failures;

enum { N_IN = 6, N_H = 12, N_OUT = 3 };

/* A random chain input - dense (ReLU) - dense (ReLU) - dense. */
static fib_graph *chain(uint64_t seed)
{
    uint64_t rng = seed;
    int64_t widths[4] = {N_IN, N_H, N_H, N_OUT};
    fib_graph *g;
    int32_t id;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, N_IN, &id));
    for (int l = 1; l < 4; l++) {
        double *w = test_random_array(&rng, widths[l] * widths[l - 1], -1, 1);
        double *b = test_random_array(&rng, widths[l], -0.2, 0.2);
        CHECK_OK(fib_graph_add_dense(g, id, widths[l], FIB_DTYPE_F64, w, widths[l - 1], b,
                                     FIB_COPY, &id));
        if (l < 3)
            CHECK_OK(fib_graph_set_activation(g, id, FIB_ACT_RELU, 0));
        free(w), free(b);
    }
    return g;
}

static int64_t parameters(const fib_base *base)
{
    int64_t n = -1;
    CHECK_OK(fib_graph_num_parameters(fib_base_graph(base), &n));
    return n;
}

static void same_base_and_outputs_as_the_options_form(void)
{
    fib_graph *g = chain(7);
    fib_budget_options o, before;
    CHECK_OK(fib_budget_options_init(&o, sizeof o));
    o.synthetic_scale = 1.0;
    before = o;
    fib_budget_result r = {.struct_size = sizeof r};
    fib_base *a = NULL, *b = NULL;
    CHECK_OK(fib_compress_to_budget_ex(g, 0.5, &o, &r, &a));
    CHECK(memcmp(&o, &before, sizeof o) == 0); /* only read */
    CHECK_OK(fib_compress_to_budget(g, 0.5, &o, &b));
    CHECK(a && b);
    if (a && b) {
        CHECK(r.struct_size == sizeof r);
        CHECK(r.n_parameters == o.n_parameters);
        CHECK(r.n_parameters == parameters(a));
        CHECK(parameters(a) == parameters(b));
        CHECK(r.bound == o.bound && r.bound > 0);
        CHECK(r.chosen_tolerance == o.chosen_tolerance && r.chosen_tolerance != 0);
        CHECK(r.corrected == o.corrected);
        CHECK(r.smallest_fraction == 0);
        int64_t total = 0;
        CHECK_OK(fib_graph_num_parameters(g, &total));
        CHECK(r.n_parameters <= 0.5 * (double)total);
    }
    fib_base_free(a), fib_base_free(b);
    /* NULL options and NULL result: the defaults, the same base */
    fib_budget_options d;
    CHECK_OK(fib_budget_options_init(&d, sizeof d));
    CHECK_OK(fib_compress_to_budget(g, 0.5, &d, &b));
    CHECK_OK(fib_compress_to_budget_ex(g, 0.5, NULL, NULL, &a));
    if (a && b)
        CHECK(parameters(a) == parameters(b));
    fib_base_free(a), fib_base_free(b);
    fib_graph_free(g);
}

static void stale_outputs_in_the_options_are_no_input(void)
{
    fib_graph *g = chain(8);
    fib_budget_options o;
    CHECK_OK(fib_budget_options_init(&o, sizeof o));
    fib_budget_result clean = {.struct_size = sizeof clean}, stale = clean;
    fib_base *a = NULL, *b = NULL;
    CHECK_OK(fib_compress_to_budget_ex(g, 0.6, &o, &clean, &a));
    o.bound = 123.0, o.n_parameters = 5, o.chosen_tolerance = 99, o.corrected = 1;
    o.smallest_fraction = 0.75;
    CHECK_OK(fib_compress_to_budget_ex(g, 0.6, &o, &stale, &b));
    CHECK(memcmp(&clean, &stale, sizeof clean) == 0);
    fib_base_free(a), fib_base_free(b);
    fib_graph_free(g);
}

static void budget_below_the_smallest_base_fills_smallest_fraction_only(void)
{
    fib_graph *g = chain(9);
    fib_budget_options o;
    CHECK_OK(fib_budget_options_init(&o, sizeof o));
    fib_budget_result r = {.struct_size = sizeof r, .bound = 1, .n_parameters = 1};
    fib_base *a = NULL;
    CHECK(fib_compress_to_budget_ex(g, 0.001, &o, &r, &a) == FIB_E_UNSUPPORTED);
    CHECK(a == NULL);
    CHECK(fib_compress_to_budget(g, 0.001, &o, &a) == FIB_E_UNSUPPORTED);
    CHECK(r.smallest_fraction > 0.001 && r.smallest_fraction < 1);
    CHECK(r.smallest_fraction == o.smallest_fraction);
    CHECK(r.bound == 0 && r.n_parameters == 0 && r.chosen_tolerance == 0 && r.corrected == 0);
    fib_graph_free(g);
}

static void sizes_below_this_version_are_refused(void)
{
    fib_graph *g = chain(10);
    fib_base *a = NULL;
    fib_budget_result r = {.struct_size = sizeof r - 1};
    CHECK(fib_compress_to_budget_ex(g, 0.5, NULL, &r, &a) == FIB_E_INVALID);
    CHECK(strstr(fib_last_error(), "result.struct_size") != NULL);
    fib_budget_options o;
    CHECK_OK(fib_budget_options_init(&o, sizeof o));
    o.struct_size = FIB_BUDGET_OPTIONS_SIZE_1 - 8;
    r.struct_size = sizeof r;
    CHECK(fib_compress_to_budget_ex(g, 0.5, &o, &r, &a) == FIB_E_INVALID);
    CHECK(strstr(fib_last_error(), "options.struct_size") != NULL);
    CHECK(a == NULL);
    /* a caller of the first options layout gets the defaults of the rest */
    o.struct_size = FIB_BUDGET_OPTIONS_SIZE_1;
    CHECK_OK(fib_compress_to_budget_ex(g, 0.5, &o, &r, &a));
    CHECK(a != NULL && r.n_parameters == (a ? parameters(a) : -1));
    fib_base_free(a);
    fib_graph_free(g);
}

int main(void)
{
    RUN(same_base_and_outputs_as_the_options_form);
    RUN(stale_outputs_in_the_options_are_no_input);
    RUN(budget_below_the_smallest_base_fills_smallest_fraction_only);
    RUN(sizes_below_this_version_are_refused);
    return test_failures ? 1 : 0;
}
