#include "checks.h"

#include <stdlib.h>
#include <string.h>

#include "color/color.h"
#include "planted.h"
#include "testing.h"

double *test_random_array(uint64_t *rng, int64_t n, double lo, double hi)
{
    double *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++)
        x[i] = test_uniform(rng, lo, hi);
    return x;
}

fib_coloring *test_color(const fib_graph *g, int32_t symmetry)
{
    fib_color_options o;
    fib_color_options_init(&o, sizeof o);
    o.symmetry = symmetry;
    fib_coloring *c = NULL;
    CHECK_OK(fib_color(g, &o, &c));
    return c;
}

int64_t test_width(const fib_graph *g, int32_t group)
{
    int64_t n = 0;
    CHECK_OK(fib_graph_group_info(g, group, NULL, &n, NULL, NULL, NULL, NULL, NULL));
    return n;
}

int64_t test_num_classes(const fib_coloring *c, int32_t group)
{
    int64_t n = -1;
    CHECK_OK(fib_coloring_num_classes(c, group, &n));
    return n;
}

double test_output_difference(const fib_graph *a, const fib_graph *b, uint64_t seed,
                              int64_t batch, double amplitude)
{
    int64_t n_in = 0, n_out = 0, n_in_b = 0, n_out_b = 0;
    fib_graph_io_width(a, &n_in, &n_out);
    fib_graph_io_width(b, &n_in_b, &n_out_b);
    CHECK(n_in == n_in_b && n_out == n_out_b && n_in > 0 && n_out > 0);
    double *x = test_random_array(&seed, batch * n_in, -amplitude, amplitude);
    double *ya = calloc((size_t)(batch * n_out), sizeof *ya);
    double *yb = calloc((size_t)(batch * n_out), sizeof *yb);
    CHECK_OK(fib_graph_forward(a, batch, FIB_DTYPE_F64, x, ya));
    CHECK_OK(fib_graph_forward(b, batch, FIB_DTYPE_F64, x, yb));
    double d = max_rel_diff(ya, yb, batch * n_out);
    free(x);
    free(ya);
    free(yb);
    return d;
}

void expect(int32_t got, int32_t want, const char *needle, const char *what)
{
    if (got != want || !strstr(fib_last_error(), needle)) {
        test_failures++;
        fprintf(stderr, "%s: got %s \"%s\", want %s containing \"%s\"\n", what,
                fib_status_name(got), fib_last_error(), fib_status_name(want), needle);
    }
}

int32_t test_color_pair(const fib_graph *g, const fib_color_options *options,
                        fib_coloring **fibers, fib_coloring **opfibers)
{
    fib_color_options o;
    if (options)
        o = *options;
    else if (fib_color_options_init(&o, sizeof o))
        return FIB_E_INVALID;
    return fib_color_pair_internal(g, &o, fibers, opfibers);
}

/* Tensors of the two bases that differ in some value (== : -0 is 0). */
int test_differing_tensors(const fib_base *x, const fib_base *y)
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

fib_graph *test_paired_input_chain(const int64_t *dims, int layers, uint64_t seed,
                                   const double *first_bias)
{
    uint64_t rng = seed;
    fib_graph *g = NULL;
    int32_t id = 0;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, dims[0], &id));
    for (int l = 0; l < layers; l++) {
        double *w = test_random_array(&rng, dims[l + 1] * dims[l], -1, 1);
        double *b = test_random_array(&rng, dims[l + 1], -0.2, 0.2);
        if (first_bias)
            b[0] = *first_bias;
        for (int64_t i = 0; l == 0 && i < dims[1]; i++) /* inputs 2a and 2a + 1 alike */
            for (int64_t a = 0; a + 1 < dims[0]; a += 2)
                w[i * dims[0] + a + 1] = w[i * dims[0] + a];
        CHECK_OK(fib_graph_add_dense(g, id, dims[l + 1], FIB_DTYPE_F64, w, dims[l], b, FIB_COPY,
                                     &id));
        if (l < layers - 1)
            CHECK_OK(fib_graph_set_activation(g, id, FIB_ACT_RELU, 0));
        free(w), free(b);
    }
    return g;
}

fib_base *test_uncorrected_budget(const fib_graph *g, double budget)
{
    fib_budget_options o;
    fib_budget_options_init(&o, sizeof o);
    o.merge_inputs = 1;
    o.dtype = FIB_DTYPE_F64;
    fib_base *b = NULL;
    CHECK_OK(fib_compress_to_budget(g, budget, &o, &b));
    return b;
}
