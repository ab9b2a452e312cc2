/* Product blocks (gates): the forward pass against the product of its
 * factors' activities (a gate with one position scaling every position),
 * planted duplicates merged exactly and lifted back, factors that disagree
 * kept apart, opfibers, bad inputs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checks.h"
#include "fibration.h"
#include "compress/compress.h"
#include "planted.h"
#include "testing.h"

int test_failures;

enum { N = 5, ROWS = 2, COLS = 3, POS = ROWS * COLS, BATCH = 3 };

/* input (N channels, ROWS x COLS) -> a = dense per position;
 * gate = sigmoid(dense(global average pool of the input)), one position;
 * z = a * gate; out = dense(z). Rows `twin` of a and of the gate copy row 0. */
typedef struct {
    fib_graph *g;
    int32_t in, a, pool, gate, z, out;
    double wa[N * N], wg[N * N], wo[2 * N];
} gated;

static void build(gated *m, uint64_t seed, int twin_a, int twin_gate)
{
    uint64_t rng = seed;
    double *wa = test_random_array(&rng, N * N, -1, 1);
    double *wg = test_random_array(&rng, N * N, -1, 1);
    double *wo = test_random_array(&rng, 2 * N, -1, 1);
    memcpy(m->wa, wa, sizeof m->wa);
    memcpy(m->wg, wg, sizeof m->wg);
    memcpy(m->wo, wo, sizeof m->wo);
    free(wa);
    free(wg);
    free(wo);
    if (twin_a)
        memcpy(m->wa + 3 * N, m->wa, N * sizeof(double));
    if (twin_gate)
        memcpy(m->wg + 3 * N, m->wg, N * sizeof(double));
    CHECK_OK(fib_graph_create(&m->g));
    CHECK_OK(fib_graph_add_input_positions(m->g, N, ROWS, COLS, &m->in));
    CHECK_OK(fib_graph_add_dense(m->g, m->in, N, FIB_DTYPE_F64, m->wa, N, NULL, 0, &m->a));
    CHECK_OK(fib_graph_set_activation(m->g, m->a, FIB_ACT_HARDSWISH, 0));
    CHECK_OK(fib_graph_add_pool(m->g, m->in, FIB_POOL_AVG, ROWS, COLS, 1, 1, 0, 0, &m->pool));
    CHECK_OK(fib_graph_add_dense(m->g, m->pool, N, FIB_DTYPE_F64, m->wg, N, NULL, 0,
                                 &m->gate));
    CHECK_OK(fib_graph_set_activation(m->g, m->gate, FIB_ACT_HARDSIGMOID, 0));
    CHECK_OK(fib_graph_add_product(m->g, m->a, m->gate, &m->z));
    CHECK_OK(fib_graph_add_dense(m->g, m->z, 2, FIB_DTYPE_F64, m->wo, N, NULL, 0, &m->out));
}

static void forward_is_the_product_of_the_factors(void)
{
    gated m;
    build(&m, 11, 0, 0);
    uint64_t rng = 5;
    double *x = test_random_array(&rng, BATCH * POS * N, -3, 3);
    double a[BATCH * POS * N], gate[BATCH * N], z[BATCH * POS * N];
    CHECK_OK(fib_graph_forward_group(m.g, BATCH, FIB_DTYPE_F64, x, m.a, a));
    CHECK_OK(fib_graph_forward_group(m.g, BATCH, FIB_DTYPE_F64, x, m.gate, gate));
    CHECK_OK(fib_graph_forward_group(m.g, BATCH, FIB_DTYPE_F64, x, m.z, z));
    for (int64_t n = 0; n < BATCH; n++)
        for (int64_t p = 0; p < POS; p++)
            for (int64_t i = 0; i < N; i++) {
                int64_t r = (n * POS + p) * N + i;
                CHECK(z[r] == a[r] * gate[n * N + i]);
            }
    int64_t index_a[N], index_b[N];
    CHECK_OK(fib_graph_read_sum(m.g, m.z, index_a, index_b));
    CHECK(index_a[4] == 4 && index_b[4] == 4);
    int32_t op;
    CHECK_OK(fib_graph_group_info(m.g, m.z, &op, NULL, NULL, NULL, NULL, NULL, NULL));
    CHECK(op == FIB_OP_PRODUCT);
    free(x);
    fib_graph_free(m.g);
}

static fib_coloring *fibers_of(const fib_graph *g, int32_t symmetry)
{
    fib_color_options o;
    CHECK_OK(fib_color_options_init(&o, sizeof o));
    o.symmetry = symmetry;
    fib_coloring *c = NULL;
    CHECK_OK(fib_color(g, &o, &c));
    return c;
}

static int64_t classes(const fib_coloring *c, int32_t group)
{
    int64_t k = -1;
    CHECK_OK(fib_coloring_num_classes(c, group, &k));
    return k;
}

static void compare_outputs(const fib_graph *a, const fib_graph *b)
{
    uint64_t rng = 9;
    double *x = test_random_array(&rng, BATCH * POS * N, -3, 3);
    double ya[BATCH * 2 * POS], yb[BATCH * 2 * POS];
    CHECK_OK(fib_graph_forward(a, BATCH, FIB_DTYPE_F64, x, ya));
    CHECK_OK(fib_graph_forward(b, BATCH, FIB_DTYPE_F64, x, yb));
    CHECK(max_rel_diff(ya, yb, BATCH * 2 * POS) < 1e-13);
    free(x);
}

static void planted_products_merge_exactly_and_lift_back(void)
{
    gated m;
    build(&m, 12, 1, 1);
    fib_coloring *c = fibers_of(m.g, FIB_SYM_FIBERS);
    CHECK(classes(c, m.a) == N - 1 && classes(c, m.gate) == N - 1);
    CHECK(classes(c, m.z) == N - 1);
    fib_base *base = NULL;
    CHECK_OK(fib_compress(m.g, c, &base));
    const fib_graph *bg = fib_base_graph(base);
    int64_t full_params, base_params;
    CHECK_OK(fib_graph_num_parameters(m.g, &full_params));
    CHECK_OK(fib_graph_num_parameters(bg, &base_params));
    /* a loses a row and a column of the output dense ... */
    CHECK(base_params == full_params - N - N - 2);
    compare_outputs(m.g, bg);
    fib_graph *lifted = NULL;
    CHECK_OK(fib_lift(base, NULL, &lifted));
    compare_outputs(m.g, lifted);
    fib_graph_free(lifted);
    fib_base_free(base);
    fib_coloring_free(c);
    fib_graph_free(m.g);
}

static void factors_that_differ_keep_the_products_apart(void)
{
    gated m;
    build(&m, 13, 1, 0); /* equal channels of a, different gates */
    fib_coloring *c = fibers_of(m.g, FIB_SYM_FIBERS);
    CHECK(classes(c, m.a) == N - 1);
    CHECK(classes(c, m.z) == N);
    fib_coloring_free(c);
    fib_graph_free(m.g);
}

static void opfibers_and_covers_are_balanced(void)
{
    gated m;
    build(&m, 14, 1, 1);
    for (int32_t symmetry = FIB_SYM_OPFIBERS; symmetry <= FIB_SYM_COVERS; symmetry++) {
        fib_coloring *c = fibers_of(m.g, symmetry);
        int32_t balanced = 0;
        CHECK_OK(fib_coloring_is_balanced(m.g, c, 0.0, &balanced));
        CHECK(balanced);
        fib_coloring_free(c);
    }
    fib_graph_free(m.g);
}

static void bad_inputs(void)
{
    fib_graph *g = NULL;
    int32_t img, other, narrow, out;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, 3, 2, 2, &img));
    CHECK_OK(fib_graph_add_input_positions(g, 3, 2, 1, &other));
    CHECK_OK(fib_graph_add_input(g, 2, &narrow));
    CHECK(fib_graph_add_product(g, img, other, &out) == FIB_E_SHAPE);
    CHECK(fib_graph_add_product(g, img, narrow, &out) == FIB_E_SHAPE);
    CHECK(fib_graph_add_product(g, img, 7, &out) == FIB_E_RANGE);
    CHECK(fib_graph_add_product(g, img, img, NULL) == FIB_E_NULL);
    fib_graph_free(g);
}

int main(void)
{
    RUN(forward_is_the_product_of_the_factors);
    RUN(planted_products_merge_exactly_and_lift_back);
    RUN(factors_that_differ_keep_the_products_apart);
    RUN(opfibers_and_covers_are_balanced);
    RUN(bad_inputs);
    return test_failures ? 1 : 0;
}
