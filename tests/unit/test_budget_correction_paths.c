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

/* Tensors of the two bases that differ in some value (== : -0 is 0). */
static int differing_tensors(const fib_base *x, const fib_base *y)
{
    const fib_graph *a = fib_base_graph(x), *b = fib_base_graph(y);
    int32_t n = 0;
    CHECK_OK(fib_graph_num_groups(a, &n));
    int differ = 0;
    for (int32_t i = 0; i < n; i++) {
        int64_t units = 0;
        CHECK_OK(fib_base_original_units(x, i, &units));
        int64_t *pa = malloc((size_t)units * sizeof *pa), *pb = malloc((size_t)units * sizeof *pb);
        CHECK_OK(fib_base_projection(x, i, pa, units));
        CHECK_OK(fib_base_projection(y, i, pb, units));
        differ += memcmp(pa, pb, (size_t)units * sizeof *pa) != 0;
        free(pa), free(pb);
        for (int32_t t = 0;; t++) {
            int32_t nd = 0;
            int64_t shape[4] = {1, 1, 1, 1}, shape_b[4] = {1, 1, 1, 1};
            if (fib_graph_tensor_info(a, i, t, &nd, shape, NULL) != FIB_OK)
                break;
            CHECK_OK(fib_graph_tensor_info(b, i, t, &nd, shape_b, NULL));
            CHECK(memcmp(shape, shape_b, sizeof shape) == 0);
            int64_t count = shape[0] * shape[1] * shape[2] * shape[3];
            double *u = malloc((size_t)count * sizeof *u), *v = malloc((size_t)count * sizeof *v);
            CHECK_OK(fib_graph_read_tensor(a, i, t, FIB_DTYPE_F64, u, count));
            CHECK_OK(fib_graph_read_tensor(b, i, t, FIB_DTYPE_F64, v, count));
            int64_t values = 0;
            for (int64_t e = 0; e < count; e++)
                values += u[e] != v[e];
            if (values)
                fprintf(stderr, "group %d tensor %d: %lld of %lld values differ\n", (int)i,
                        (int)t, (long long)values, (long long)count);
            differ += values > 0;
            free(u), free(v);
        }
    }
    return differ;
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
        CHECK(differing_tensors(bp, bm) == 0);
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
