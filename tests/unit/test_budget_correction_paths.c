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

/* The chain, bias 0 of every layer `zero` (+0 or -0). */
static fib_graph *chain(double zero)
{
    return test_paired_input_chain(dims, LAYERS, 23, &zero);
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
        fib_base *b0 = test_uncorrected_budget(plus, 0.3);
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
