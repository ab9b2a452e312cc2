/* The synthetic correction (fib_budget_options.synthetic_scale) makes its
 * products with the matrix-product kernel, and with axpys that skip zero
 * activations where a bias of -0 would make the two differ in the sign of
 * a zero. A chain whose biases are -0 in one unit per layer takes the
 * axpys for the original network's products; the same chain with +0
 * there takes the kernel: their corrected bases, inputs merged, are the
 * same value for value (the projections, every weight and bias, the
 * outputs). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checks.h"
#include "fibration.h"
#include "testing.h"

int test_failures;

enum { LAYERS = 3 };
static const int64_t dims[LAYERS + 1] = {16, 40, 40, 4};

/* A float64 ReLU chain whose inputs merge in pairs (equal columns), bias
 * 0 of every layer `zero` (+0 or -0). */
static fib_graph *chain(double zero)
{
    uint64_t rng = 23;
    fib_graph *g = NULL;
    int32_t id = 0;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, dims[0], &id));
    for (int l = 0; l < LAYERS; l++) {
        double *w = test_random_array(&rng, dims[l + 1] * dims[l], -1, 1);
        double *b = test_random_array(&rng, dims[l + 1], -0.2, 0.2);
        b[0] = zero;
        for (int64_t i = 0; l == 0 && i < dims[1]; i++) /* inputs 2a and 2a + 1 alike */
            for (int64_t a = 0; a + 1 < dims[0]; a += 2)
                w[i * dims[0] + a + 1] = w[i * dims[0] + a];
        CHECK_OK(fib_graph_add_dense(g, id, dims[l + 1], FIB_DTYPE_F64, w, dims[l], b, FIB_COPY,
                                     &id));
        if (l < LAYERS - 1)
            CHECK_OK(fib_graph_set_activation(g, id, FIB_ACT_RELU, 0));
        free(w), free(b);
    }
    return g;
}

static fib_base *corrected(const fib_graph *g, fib_budget_options *o)
{
    fib_budget_options_init(o, sizeof *o);
    o->merge_inputs = 1;
    o->synthetic_scale = 1.0;
    o->synthetic_samples = 512;
    o->dtype = FIB_DTYPE_F64;
    fib_base *b = NULL;
    CHECK_OK(fib_compress_to_budget(g, 0.3, o, &b));
    return b;
}

static void kernel_products_give_the_axpys_base(void)
{
    fib_graph *plus = chain(0.0), *minus = chain(-0.0);
    fib_budget_options op, om;
    fib_base *bp = corrected(plus, &op), *bm = corrected(minus, &om);
    if (bp && bm) {
        CHECK(op.corrected == 1 && om.corrected == 1);
        /* inputs and both hidden layers merged */
        for (int32_t i = 0; i < LAYERS; i++)
            CHECK(test_width(fib_base_graph(bp), i) < dims[i]);
        CHECK(test_differing_tensors(bp, bm) == 0);
        CHECK(test_output_difference(fib_base_graph(bp), fib_base_graph(bm), 3, 16, 1.0) == 0.0);
        /* and the correction moved the base: it is not Eq. 10's */
        fib_budget_options o0;
        fib_budget_options_init(&o0, sizeof o0);
        o0.merge_inputs = 1;
        o0.dtype = FIB_DTYPE_F64;
        fib_base *b0 = NULL;
        CHECK_OK(fib_compress_to_budget(plus, 0.3, &o0, &b0));
        if (b0)
            CHECK(test_output_difference(fib_base_graph(bp), fib_base_graph(b0), 3, 16, 1.0) >
                  1e-6);
        fib_base_free(b0);
    }
    fib_base_free(bp), fib_base_free(bm);
    fib_graph_free(plus), fib_graph_free(minus);
}

int main(void)
{
    RUN(kernel_products_give_the_axpys_base);
    return test_failures ? 1 : 0;
}
