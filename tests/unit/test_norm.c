/* LayerNorm and RMSNorm: the forward pass against an independent
 * reference, exact bases whose units count with their class sizes
 * (including a norm class finer than its source's class, which the base
 * gathers), planted norms lifted from random bases, read-out, bad inputs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checks.h"
#include "fibration.h"
#include "compress/compress.h"
#include "plant_lift.h"
#include "planted.h"
#include "testing.h"

int test_failures;

/* PyTorch's LayerNorm / RMSNorm of one row. */
static void reference_norm(int32_t kind, int64_t n, const double *x, const double *gamma,
                           const double *beta, double eps, double *y)
{
    double mean = 0.0, var = 0.0;
    if (kind == FIB_NORM_LAYER) {
        for (int64_t i = 0; i < n; i++)
            mean += x[i];
        mean /= (double)n;
    }
    for (int64_t i = 0; i < n; i++)
        var += (x[i] - mean) * (x[i] - mean);
    var /= (double)n;
    for (int64_t i = 0; i < n; i++)
        y[i] = (gamma ? gamma[i] : 1.0) * (x[i] - mean) / sqrt(var + eps) + (beta ? beta[i] : 0.0);
}

static void forward_matches_reference(void)
{
    const int64_t n = 7, len = 3, batch = 2;
    uint64_t rng = 3;
    double *gamma = test_random_array(&rng, n, 0.5, 2), *beta = test_random_array(&rng, n, -1, 1);
    float gamma32[7], beta32[7];
    for (int64_t i = 0; i < n; i++) {
        gamma32[i] = (float)gamma[i];
        beta32[i] = (float)beta[i];
        gamma[i] = gamma32[i];
        beta[i] = beta32[i];
    }
    double *x = test_random_array(&rng, batch * len * n, -3, 3);
    for (int variant = 0; variant < 6; variant++) {
        int32_t kind = variant % 2 ? FIB_NORM_RMS : FIB_NORM_LAYER;
        int affine = variant / 2; /* 0: none, 1: f64, 2: f32 copied */
        fib_graph *g = NULL;
        int32_t in, out;
        CHECK_OK(fib_graph_create(&g));
        CHECK_OK(fib_graph_add_input_positions(g, n, len, 1, &in));
        if (affine == 2)
            CHECK_OK(fib_graph_add_norm(g, in, kind, FIB_DTYPE_F32, gamma32, beta32, 1e-5,
                                        FIB_COPY, &out));
        else
            CHECK_OK(fib_graph_add_norm(g, in, kind, FIB_DTYPE_F64, affine ? gamma : NULL,
                                        affine ? beta : NULL, 1e-5, 0, &out));
        double y[42], ref[42];
        CHECK_OK(fib_graph_forward(g, batch, FIB_DTYPE_F64, x, y));
        for (int64_t r = 0; r < batch * len; r++)
            reference_norm(kind, n, x + r * n, affine ? gamma : NULL, affine ? beta : NULL,
                           1e-5, ref + r * n);
        CHECK(max_rel_diff(y, ref, batch * len * n) < 1e-13);
        /* Read-out: tensors weight, bias, multiplicity; params kind + gather;
         * scalar epsilon. */
        const char *name = NULL;
        int64_t shape[4], count = 0, params[16];
        int32_t n_tensors = 0;
        while (fib_graph_tensor_info(g, out, n_tensors, NULL, shape, &name) == FIB_OK)
            n_tensors++;
        CHECK(n_tensors == (affine ? 3 : 1));
        CHECK_OK(fib_graph_tensor_info(g, out, n_tensors - 1, NULL, shape, &name));
        CHECK(strcmp(name, "multiplicity") == 0 && shape[0] == n);
        CHECK_OK(fib_graph_block_params(g, out, params, 16, &count));
        CHECK(count == 1 + n && params[0] == kind && params[1] == 0 && params[n] == n - 1);
        double eps = 0;
        CHECK_OK(fib_graph_block_scalar(g, out, &eps));
        CHECK(eps == 1e-5);
        int64_t n_params = 0;
        CHECK_OK(fib_graph_num_parameters(g, &n_params));
        CHECK(n_params == (affine ? 2 * n : 0));
        fib_graph_free(g);
    }
    free(gamma);
    free(beta);
    free(x);
}

/* input(5) -> dense(9, duplicated rows) -> norm -> dense(3). Dense classes
 * {0,3,7} {1,5} {2} {4,8} {6}; unit 7 has its own gamma, so the norm has six
 * classes, two of which read the same merged dense unit. The base norm
 * counts each unit with its class size and stays exact. */
static void multiplicities_keep_the_statistics(void)
{
    const int64_t n_in = 5, n = 9, n_out = 3;
    const int64_t dense_cls[9] = {0, 1, 2, 0, 3, 1, 4, 0, 3};
    const int64_t norm_cls[9] = {0, 1, 2, 0, 3, 1, 4, 5, 3};
    const double sizes[6] = {2, 2, 1, 2, 1, 1};
    for (int variant = 0; variant < 4; variant++) {
        int32_t kind = variant % 2 ? FIB_NORM_RMS : FIB_NORM_LAYER;
        uint64_t rng = 50 + (uint64_t)variant;
        double *rows = test_random_array(&rng, 5 * n_in, -1, 1), *rb = test_random_array(&rng, 5, -1, 1);
        double *ng = test_random_array(&rng, 6, 0.5, 1.5), *nb = test_random_array(&rng, 6, -1, 1);
        double w[9 * 5], b[9], gamma[9], beta[9];
        for (int64_t i = 0; i < n; i++) {
            memcpy(w + i * n_in, rows + dense_cls[i] * n_in, (size_t)n_in * sizeof *w);
            b[i] = rb[dense_cls[i]];
            gamma[i] = ng[norm_cls[i]];
            beta[i] = nb[norm_cls[i]];
        }
        double *ow = test_random_array(&rng, n_out * n, -1, 1);
        fib_graph *g = NULL;
        int32_t in, h, nm, out;
        CHECK_OK(fib_graph_create(&g));
        CHECK_OK(fib_graph_add_input_positions(g, n_in, 2, 1, &in));
        CHECK_OK(fib_graph_add_dense(g, in, n, FIB_DTYPE_F64, w, n_in, b, 0, &h));
        CHECK_OK(fib_graph_set_activation(g, h, FIB_ACT_TANH, 0));
        CHECK_OK(fib_graph_add_norm(g, h, kind, FIB_DTYPE_F64, gamma, variant < 2 ? beta : NULL,
                                    1e-6, 0, &nm));
        CHECK_OK(fib_graph_add_dense(g, nm, n_out, FIB_DTYPE_F64, ow, n, NULL, 0, &out));
        fib_coloring *c = test_color(g, FIB_SYM_FIBERS);
        CHECK(same_partition(c, h, dense_cls, n));
        CHECK(same_partition(c, nm, norm_cls, n));
        fib_base *base = NULL;
        CHECK_OK(fib_compress(g, c, &base));
        const fib_graph *bg = fib_base_graph(base);
        CHECK(test_width(bg, h) == 5 && test_width(bg, nm) == 6);
        double mult[6] = {0};
        int32_t last = variant < 2 ? 2 : 1;
        const char *name = NULL;
        CHECK_OK(fib_graph_tensor_info(bg, nm, last, NULL, NULL, &name));
        CHECK(name && strcmp(name, "multiplicity") == 0);
        CHECK_OK(fib_graph_read_tensor(bg, nm, last, FIB_DTYPE_F64, mult, 6));
        CHECK(memcmp(mult, sizes, sizeof sizes) == 0);
        int64_t params[8], count = 0;
        CHECK_OK(fib_graph_block_params(bg, nm, params, 8, &count));
        CHECK(count == 7 && params[6] == 0); /* base unit 5 (unit 7) reads class 0 */
        CHECK(test_output_difference(g, bg, 60 + (uint64_t)variant, 4, 2.0) < 1e-10);
        /* Covers: the out columns are random, so the norm keeps only what
         * the opfibers allow; still exact. */
        fib_coloring *cov = test_color(g, FIB_SYM_COVERS);
        fib_base *cb = NULL;
        CHECK_OK(fib_compress(g, cov, &cb));
        CHECK(test_output_difference(g, fib_base_graph(cb), 70 + (uint64_t)variant, 4, 2.0) < 1e-10);
        /* Lift of the base: the original's function again. */
        fib_graph *lifted = NULL;
        CHECK_OK(fib_lift(base, NULL, &lifted));
        CHECK(test_width(lifted, nm) == n);
        CHECK(test_output_difference(g, lifted, 80 + (uint64_t)variant, 4, 2.0) < 1e-10);
        fib_graph_free(lifted);
        fib_base_free(cb);
        fib_coloring_free(cov);
        fib_base_free(base);
        fib_coloring_free(c);
        fib_graph_free(g);
        free(rows);
        free(rb);
        free(ng);
        free(nb);
        free(ow);
    }
}

/* The same network with the multiplicities of the base's norm replaced by
 * ones computes something else: the multiplicities are what keep it exact. */
static void ones_instead_of_multiplicities_differ(void)
{
    const int64_t dense_cls[6] = {0, 0, 0, 1, 2, 2};
    uint64_t rng = 9;
    double *rows = test_random_array(&rng, 3 * 4, -1, 1), w[6 * 4];
    for (int64_t i = 0; i < 6; i++)
        memcpy(w + i * 4, rows + dense_cls[i] * 4, 4 * sizeof *w);
    double *ow = test_random_array(&rng, 2 * 6, -1, 1);
    fib_graph *g = NULL, *plain = NULL;
    int32_t in, h, nm, out;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, 4, &in));
    CHECK_OK(fib_graph_add_dense(g, in, 6, FIB_DTYPE_F64, w, 4, NULL, 0, &h));
    CHECK_OK(fib_graph_add_norm(g, h, FIB_NORM_LAYER, FIB_DTYPE_F64, NULL, NULL, 1e-5, 0, &nm));
    CHECK_OK(fib_graph_add_dense(g, nm, 2, FIB_DTYPE_F64, ow, 6, NULL, 0, &out));
    fib_coloring *c = test_color(g, FIB_SYM_FIBERS);
    fib_base *base = NULL;
    CHECK_OK(fib_compress(g, c, &base));
    const fib_graph *bg = fib_base_graph(base);
    CHECK(test_width(bg, nm) == 3);
    CHECK(test_output_difference(g, bg, 1, 4, 2.0) < 1e-10);
    /* Rebuild the base with a plain (unweighted) norm. */
    double bw[3 * 4], bo[2 * 3];
    CHECK_OK(fib_graph_read_dense(bg, h, FIB_DTYPE_F64, bw, 4, NULL));
    CHECK_OK(fib_graph_read_dense(bg, out, FIB_DTYPE_F64, bo, 3, NULL));
    CHECK_OK(fib_graph_create(&plain));
    CHECK_OK(fib_graph_add_input(plain, 4, &in));
    CHECK_OK(fib_graph_add_dense(plain, in, 3, FIB_DTYPE_F64, bw, 4, NULL, 0, &h));
    CHECK_OK(fib_graph_add_norm(plain, h, FIB_NORM_LAYER, FIB_DTYPE_F64, NULL, NULL, 1e-5, 0, &nm));
    CHECK_OK(fib_graph_add_dense(plain, nm, 2, FIB_DTYPE_F64, bo, 3, NULL, 0, &out));
    CHECK(test_output_difference(g, plain, 1, 4, 2.0) > 1e-3);
    fib_graph_free(plain);
    fib_base_free(base);
    fib_coloring_free(c);
    fib_graph_free(g);
    free(rows);
    free(ow);
}

/* A random base (input -> dense -> norm -> dense -> norm -> dense) whose
 * norms count with the planted class sizes, lifted: the lifted norms are
 * ordinary norms (every multiplicity 1), the planted classes are found,
 * and the base computes the lifted network's function. */
static void planted_norms_by_lift(void)
{
    for (int variant = 0; variant < 4; variant++) {
        int32_t kind = variant % 2 ? FIB_NORM_RMS : FIB_NORM_LAYER;
        uint64_t rng = 700 + (uint64_t)variant;
        const int64_t base_w[6] = {3, 4, 4, 5, 5, 2};
        int64_t *proj[6], widths[6];
        for (int i = 0; i < 6; i++) {
            if (i == 0 || i == 5) {
                widths[i] = base_w[i];
                proj[i] = malloc((size_t)base_w[i] * sizeof *proj[i]);
                for (int64_t u = 0; u < base_w[i]; u++)
                    proj[i][u] = u;
            } else if (i == 2 || i == 4) { /* a norm shares its source's projection */
                widths[i] = widths[i - 1];
                proj[i] = malloc((size_t)widths[i] * sizeof *proj[i]);
                memcpy(proj[i], proj[i - 1], (size_t)widths[i] * sizeof *proj[i]);
            } else {
                proj[i] = random_projection(&rng, base_w[i], 4, &widths[i]);
            }
        }
        fib_graph *base = NULL;
        int32_t id;
        CHECK_OK(fib_graph_create(&base));
        CHECK_OK(fib_graph_add_input_positions(base, 3, 2, 1, &id));
        for (int i = 1; i < 6; i++) {
            int64_t k = base_w[i];
            if (i == 2 || i == 4) {
                double *gm = test_random_array(&rng, k, 0.5, 1.5), *bt = test_random_array(&rng, k, -1, 1);
                double *mult = calloc((size_t)k, sizeof *mult);
                for (int64_t u = 0; u < widths[i]; u++)
                    mult[proj[i][u]] += 1.0;
                CHECK_OK(fib_graph_add_norm_owned(base, i - 1, kind, 1e-5, k, NULL, gm, bt,
                                                  mult, &id));
            } else {
                double *w = test_random_array(&rng, k * base_w[i - 1], -1, 1);
                double *b = test_random_array(&rng, k, -0.5, 0.5);
                CHECK_OK(fib_graph_add_dense(base, i - 1, k, FIB_DTYPE_F64, w, base_w[i - 1], b,
                                             FIB_COPY, &id));
                if (i < 5)
                    CHECK_OK(fib_graph_set_activation(base, id, FIB_ACT_SILU, 0));
                free(w);
                free(b);
            }
        }
        fib_graph *full = plant_by_lift(base, proj, widths);
        CHECK(full != NULL);
        if (full) {
            double ones[64];
            for (int32_t grp = 2; grp <= 4; grp += 2) {
                int32_t mi = 2;
                CHECK_OK(fib_graph_read_tensor(full, grp, mi, FIB_DTYPE_F64, ones, 64));
                for (int64_t u = 0; u < widths[grp]; u++)
                    CHECK(fabs(ones[u] - 1.0) < 1e-15);
            }
            for (int sym = 0; sym < 2; sym++) {
                fib_coloring *c = test_color(full, sym ? FIB_SYM_COVERS : FIB_SYM_FIBERS);
                for (int32_t grp = 1; grp <= 4; grp++)
                    CHECK(same_partition(c, grp, proj[grp], widths[grp]));
                fib_base *b = NULL;
                CHECK_OK(fib_compress(full, c, &b));
                for (int32_t grp = 0; grp < 6; grp++)
                    CHECK(test_width(fib_base_graph(b), grp) == base_w[grp]);
                CHECK(test_output_difference(full, fib_base_graph(b), 710 + (uint64_t)variant, 4, 2.0) < 1e-10);
                CHECK(test_output_difference(base, fib_base_graph(b), 720 + (uint64_t)variant, 4, 2.0) < 1e-10);
                fib_base_free(b);
                fib_coloring_free(c);
            }
        }
        fib_graph_free(full);
        fib_graph_free(base);
        for (int i = 0; i < 6; i++)
            free(proj[i]);
    }
}

static void bad_inputs(void)
{
    fib_graph *g = NULL;
    int32_t in, out, n_groups = 0;
    double gamma[4] = {1, 1, 1, 1}, beta[4] = {0, 0, 0, 0};
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, 4, &in));
    CHECK(fib_graph_add_norm(g, in, FIB_NORM_LAYER, FIB_DTYPE_F64, gamma, beta, 0.0, 0, &out) == FIB_E_INVALID);
    CHECK(fib_graph_add_norm(g, in, FIB_NORM_LAYER, FIB_DTYPE_F64, gamma, beta, -1e-5, 0, &out) == FIB_E_INVALID);
    CHECK(fib_graph_add_norm(g, in, FIB_NORM_LAYER, FIB_DTYPE_F64, gamma, beta, NAN, 0, &out) == FIB_E_INVALID);
    CHECK(fib_graph_add_norm(g, in, FIB_NORM_LAYER, FIB_DTYPE_F64, gamma, beta, INFINITY, 0, &out) == FIB_E_INVALID);
    CHECK(fib_graph_add_norm(g, in, 7, FIB_DTYPE_F64, gamma, beta, 1e-5, 0, &out) == FIB_E_INVALID);
    CHECK(fib_graph_add_norm(g, in, FIB_NORM_RMS, 0, gamma, beta, 1e-5, 0, &out) == FIB_E_INVALID);
    CHECK(fib_graph_add_norm(g, in, FIB_NORM_RMS, FIB_DTYPE_F64, gamma, beta, 1e-5, 4u, &out) == FIB_E_INVALID);
    CHECK(fib_graph_add_norm(g, in, FIB_NORM_RMS, FIB_DTYPE_F64, gamma, beta, 1e-5, 0, NULL) == FIB_E_NULL);
    CHECK(fib_graph_add_norm(NULL, in, FIB_NORM_RMS, FIB_DTYPE_F64, gamma, beta, 1e-5, 0, &out) == FIB_E_NULL);
    CHECK(fib_graph_add_norm(g, 3, FIB_NORM_RMS, FIB_DTYPE_F64, gamma, beta, 1e-5, 0, &out) == FIB_E_RANGE);
    gamma[2] = NAN;
    CHECK(fib_graph_add_norm(g, in, FIB_NORM_LAYER, FIB_DTYPE_F64, gamma, beta, 1e-5, 0, &out) == FIB_E_NONFINITE);
    gamma[2] = 1;
    beta[3] = -INFINITY;
    CHECK(fib_graph_add_norm(g, in, FIB_NORM_LAYER, FIB_DTYPE_F64, gamma, beta, 1e-5, 0, &out) == FIB_E_NONFINITE);
    CHECK_OK(fib_graph_num_groups(g, &n_groups));
    CHECK(n_groups == 1);
    fib_graph_free(g);
}

int main(void)
{
    RUN(forward_matches_reference);
    RUN(multiplicities_keep_the_statistics);
    RUN(ones_instead_of_multiplicities_differ);
    RUN(planted_norms_by_lift);
    RUN(bad_inputs);
    return test_failures ? 1 : 0;
}
