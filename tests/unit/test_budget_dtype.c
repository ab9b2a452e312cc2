/* fib_budget_options.dtype: a budget's base made in float32 is its float64
 * base rounded once, value for value (the same classes and parameters,
 * the outputs to float32 rounding, the same float32 file byte for byte),
 * for the graph budget (a float32 residual CNN with batch norms, whose
 * weighted rows are written into the float32 base) and for a chain whose
 * merged layers the synthetic correction refits, and for a chain whose
 * layers keep more classes than the float32 block is made of at a time
 * (pieces of 128 classes); a float32 base saved in
 * its own dtype is a float32 file; the default and a caller of the
 * previous layout get the float64 base. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checks.h"
#include "fibration.h"
#include "testing.h"

int test_failures;

static char tmpdir[256];

enum { IN_CH = 3, SIDE = 5, C = 16, OUT = 5 };

/* n random float32 values in [lo, hi) (caller frees). */
static float *random_floats(uint64_t *rng, int64_t n, double lo, double hi)
{
    double *x = test_random_array(rng, n, lo, hi);
    float *f = malloc((size_t)n * sizeof *f);
    for (int64_t i = 0; i < n; i++)
        f[i] = (float)x[i];
    free(x);
    return f;
}

/* input, conv - batch norm (ReLU), conv - batch norm (ReLU), conv - batch
 * norm, the sum of the last two (ReLU), average pool, flatten, dense; all
 * float32 */
static fib_graph *float32_resnet(void)
{
    uint64_t rng = 7;
    fib_graph *g = NULL;
    int32_t id[11];
    float *k[3], *s[3], *t[3];
    k[0] = random_floats(&rng, C * IN_CH * 9, -1, 1);
    k[1] = random_floats(&rng, C * C * 9, -0.5, 0.5);
    k[2] = random_floats(&rng, C * C * 9, -0.5, 0.5);
    for (int i = 0; i < 3; i++) {
        s[i] = random_floats(&rng, C, 0.5, 1.5);
        t[i] = random_floats(&rng, C, -0.3, 0.3);
    }
    float *w = random_floats(&rng, OUT * C, -1, 1), *b = random_floats(&rng, OUT, -0.2, 0.2);
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, IN_CH, SIDE, SIDE, &id[0]));
    int32_t from = id[0];
    for (int i = 0; i < 3; i++) {
        CHECK_OK(fib_graph_add_conv(g, from, C, 3, 3, 1, 1, 1, 1, 1, FIB_DTYPE_F32, k[i], NULL,
                                    FIB_COPY, &id[1 + 2 * i]));
        CHECK_OK(fib_graph_add_affine(g, id[1 + 2 * i], FIB_DTYPE_F32, s[i], t[i], FIB_COPY,
                                      &id[2 + 2 * i]));
        if (i < 2)
            CHECK_OK(fib_graph_set_activation(g, id[2 + 2 * i], FIB_ACT_RELU, 0));
        from = id[2 + 2 * i];
    }
    CHECK_OK(fib_graph_add_sum(g, id[6], id[4], &id[7]));
    CHECK_OK(fib_graph_set_activation(g, id[7], FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_pool(g, id[7], FIB_POOL_AVG, SIDE, SIDE, SIDE, SIDE, 0, 0, &id[8]));
    CHECK_OK(fib_graph_add_flatten(g, id[8], &id[9]));
    CHECK_OK(fib_graph_add_dense(g, id[9], OUT, FIB_DTYPE_F32, w, C, b, FIB_COPY, &id[10]));
    for (int i = 0; i < 3; i++)
        free(k[i]), free(s[i]), free(t[i]);
    free(w), free(b);
    return g;
}

/* 12 - 24 - 24 - 4, float32, biases, ReLU: a chain */
/* A float32 ReLU chain of dims[0] inputs and three dense layers of random
 * weights and biases (from seed). */
static fib_graph *float32_chain_of(const int64_t dims[4], uint64_t seed)
{
    uint64_t rng = seed;
    fib_graph *g = NULL;
    int32_t id = 0;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, dims[0], &id));
    for (int l = 0; l < 3; l++) {
        float *w = random_floats(&rng, dims[l + 1] * dims[l], -1, 1);
        float *b = random_floats(&rng, dims[l + 1], -0.2, 0.2);
        CHECK_OK(fib_graph_add_dense(g, id, dims[l + 1], FIB_DTYPE_F32, w, dims[l], b, FIB_COPY,
                                     &id));
        if (l < 2)
            CHECK_OK(fib_graph_set_activation(g, id, FIB_ACT_RELU, 0));
        free(w), free(b);
    }
    return g;
}

static fib_graph *float32_chain(void)
{
    const int64_t dims[4] = {12, 24, 24, 4};
    return float32_chain_of(dims, 11);
}

static int32_t tensor_dtype(const fib_graph *g, int32_t group, int32_t t)
{
    int32_t dtype = 0;
    CHECK_OK(fib_graph_tensor_dtype(g, group, t, &dtype));
    return dtype;
}

/* Every tensor of `narrow` is the same tensor of `wide` (a float64 base)
 * rounded once to float32 where `narrow` holds float32 and `wide` float64,
 * else the same value in the same dtype; returns the number of tensors
 * rounded. */
static int check_rounded_once(const fib_base *wide, const fib_base *narrow)
{
    const fib_graph *a = fib_base_graph(wide), *b = fib_base_graph(narrow);
    int32_t n = 0, m = 0;
    CHECK_OK(fib_graph_num_groups(a, &n));
    CHECK_OK(fib_graph_num_groups(b, &m));
    CHECK(n == m);
    int n_rounded = 0;
    for (int32_t i = 0; i < n && i < m; i++) {
        int64_t wa = test_width(a, i), wb = test_width(b, i);
        CHECK(wa == wb);
        int64_t units = 0;
        CHECK_OK(fib_base_original_units(wide, i, &units));
        int64_t *pa = malloc((size_t)units * sizeof *pa), *pb = malloc((size_t)units * sizeof *pb);
        CHECK_OK(fib_base_projection(wide, i, pa, units));
        CHECK_OK(fib_base_projection(narrow, i, pb, units));
        CHECK(memcmp(pa, pb, (size_t)units * sizeof *pa) == 0);
        free(pa), free(pb);
        for (int32_t t = 0;; t++) {
            int32_t nd = 0, nd_b = 0;
            int64_t shape[4] = {1, 1, 1, 1}, shape_b[4] = {1, 1, 1, 1};
            if (fib_graph_tensor_info(a, i, t, &nd, shape, NULL) != FIB_OK)
                break;
            CHECK_OK(fib_graph_tensor_info(b, i, t, &nd_b, shape_b, NULL));
            CHECK(nd == nd_b && memcmp(shape, shape_b, sizeof shape) == 0);
            int64_t count = shape[0] * shape[1] * shape[2] * shape[3];
            double *x = malloc((size_t)count * sizeof *x), *y = malloc((size_t)count * sizeof *y);
            CHECK_OK(fib_graph_read_tensor(a, i, t, FIB_DTYPE_F64, x, count));
            CHECK_OK(fib_graph_read_tensor(b, i, t, FIB_DTYPE_F64, y, count));
            int32_t da = tensor_dtype(a, i, t), db = tensor_dtype(b, i, t);
            bool rounded = da == FIB_DTYPE_F64 && db == FIB_DTYPE_F32;
            CHECK(rounded || da == db);
            n_rounded += rounded;
            int64_t differ = 0;
            for (int64_t e = 0; e < count; e++)
                differ += y[e] != (rounded ? (double)(float)x[e] : x[e]);
            if (differ)
                fprintf(stderr, "group %d tensor %d: %lld of %lld values not rounded once\n",
                        (int)i, (int)t, (long long)differ, (long long)count);
            CHECK(differ == 0);
            free(x), free(y);
        }
    }
    return n_rounded;
}

static unsigned char *read_file(const char *path, long *size)
{
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc((size_t)*size + 1);
    CHECK(fread(data, 1, (size_t)*size, f) == (size_t)*size);
    fclose(f);
    return data;
}

/* The float32 files of the two bases are one file; the float32 base saved
 * in its own dtype holds its merged blocks as float32. */
static void check_files(const fib_base *wide, const fib_base *narrow, int32_t merged_group)
{
    char pw[400], pn[400], own[400];
    snprintf(pw, sizeof pw, "%s/wide.safetensors", tmpdir);
    snprintf(pn, sizeof pn, "%s/narrow.safetensors", tmpdir);
    snprintf(own, sizeof own, "%s/own.safetensors", tmpdir);
    CHECK_OK(fib_base_save(wide, pw, FIB_DTYPE_F32));
    CHECK_OK(fib_base_save(narrow, pn, FIB_DTYPE_F32));
    long sw = 0, sn = 0;
    unsigned char *a = read_file(pw, &sw), *b = read_file(pn, &sn);
    CHECK(a && b && sw == sn && memcmp(a, b, (size_t)sw) == 0);
    free(a), free(b);
    CHECK_OK(fib_base_save(narrow, own, 0));
    fib_base *loaded = NULL;
    CHECK_OK(fib_base_load(own, NULL, &loaded));
    if (loaded) {
        CHECK(tensor_dtype(fib_base_graph(loaded), merged_group, 0) == FIB_DTYPE_F32);
        CHECK(check_rounded_once(wide, loaded) > 0);
    }
    fib_base_free(loaded);
    unlink(pw), unlink(pn), unlink(own);
}

static fib_base *budget(const fib_graph *g, double fraction, int32_t dtype, double scale,
                        fib_budget_options *o)
{
    fib_budget_options_init(o, sizeof *o);
    o->dtype = dtype;
    o->synthetic_scale = scale;
    fib_base *b = NULL;
    CHECK_OK(fib_compress_to_budget(g, fraction, o, &b));
    return b;
}

static void graph_budget_in_float32_is_the_float64_base_rounded_once(void)
{
    fib_graph *g = float32_resnet();
    fib_budget_options o64, o32, o0;
    fib_base *b64 = budget(g, 0.5, FIB_DTYPE_F64, 0, &o64);
    fib_base *b32 = budget(g, 0.5, FIB_DTYPE_F32, 0, &o32);
    fib_base *b0 = budget(g, 0.5, 0, 0, &o0);
    if (b64 && b32 && b0) {
        /* the budget merged the residual channels: weighted rows written */
        CHECK(test_width(fib_base_graph(b64), 7) < C);
        CHECK(o32.n_parameters == o64.n_parameters && o32.bound == o64.bound);
        int64_t p64 = 0, p32 = 0;
        CHECK_OK(fib_graph_num_parameters(fib_base_graph(b64), &p64));
        CHECK_OK(fib_graph_num_parameters(fib_base_graph(b32), &p32));
        CHECK(p64 == p32);
        /* the three merged convolutions and the dense, weights and biases */
        CHECK(check_rounded_once(b64, b32) >= 4);
        for (int32_t conv = 1; conv <= 5; conv += 2)
            CHECK(tensor_dtype(fib_base_graph(b32), conv, 0) == FIB_DTYPE_F32);
        CHECK(check_rounded_once(b64, b0) == 0); /* the default: float64 */
        double d = test_output_difference(fib_base_graph(b64), fib_base_graph(b32), 3, 4, 1.0);
        CHECK(d <= 1e-5);
        check_files(b64, b32, 5);
    }
    fib_base_free(b64), fib_base_free(b32), fib_base_free(b0);
    fib_graph_free(g);
}

static void corrected_chain_in_float32_is_the_float64_base_rounded_once(void)
{
    fib_graph *g = float32_chain();
    fib_budget_options o64, o32;
    fib_base *b64 = budget(g, 0.5, FIB_DTYPE_F64, 1.0, &o64);
    fib_base *b32 = budget(g, 0.5, FIB_DTYPE_F32, 1.0, &o32);
    if (b64 && b32) {
        CHECK(o64.corrected == 1 && o32.corrected == 1);
        CHECK(o32.n_parameters == o64.n_parameters);
        CHECK(test_width(fib_base_graph(b32), 1) < 24);
        CHECK(check_rounded_once(b64, b32) >= 4);
        CHECK(test_output_difference(fib_base_graph(b64), fib_base_graph(b32), 5, 8, 1.0) <=
              1e-5);
        check_files(b64, b32, 2);
    }
    fib_base_free(b64), fib_base_free(b32);
    /* uncorrected: rounded as each block is made */
    b64 = budget(g, 0.5, FIB_DTYPE_F64, 0, &o64);
    b32 = budget(g, 0.5, FIB_DTYPE_F32, 0, &o32);
    if (b64 && b32)
        CHECK(check_rounded_once(b64, b32) >= 4);
    fib_base_free(b64), fib_base_free(b32);
    fib_graph_free(g);
}

/* A float32 chain 20-300-300-5 at a budget of 0.75, whose first hidden
 * layer keeps about 200 of its 300 units: a float32 base's merged blocks
 * are made 128 classes at a time (the last piece partial), each value the
 * float64 block's rounded once. */
static void wide_chain_in_float32_is_the_float64_base_rounded_once(void)
{
    const int64_t dims[4] = {20, 300, 300, 5};
    fib_graph *g = float32_chain_of(dims, 29);
    fib_budget_options o64, o32;
    fib_base *b64 = budget(g, 0.75, FIB_DTYPE_F64, 0, &o64);
    fib_base *b32 = budget(g, 0.75, FIB_DTYPE_F32, 0, &o32);
    if (b64 && b32) {
        /* the first hidden layer merges (two pieces); the second keeps its
         * 300 units (three pieces) over the first's classes */
        int64_t first = test_width(fib_base_graph(b64), 1);
        CHECK(first > 128 && first < 256 && test_width(fib_base_graph(b64), 2) == 300);
        CHECK(o32.n_parameters == o64.n_parameters && o32.bound == o64.bound);
        CHECK(check_rounded_once(b64, b32) >= 4);
        CHECK(tensor_dtype(fib_base_graph(b32), 2, 0) == FIB_DTYPE_F32);
    }
    fib_base_free(b64), fib_base_free(b32);
    fib_graph_free(g);
}

static void budget_dtype_is_checked_and_absent_from_the_previous_layout(void)
{
    fib_graph *g = float32_chain();
    fib_budget_options o;
    fib_budget_options_init(&o, sizeof o);
    CHECK(o.dtype == 0);
    o.dtype = 3;
    fib_base *b = NULL;
    expect(fib_compress_to_budget(g, 0.5, &o, &b), FIB_E_INVALID, "dtype 3", "dtype 3");
    CHECK(b == NULL);
    /* a caller built against the previous layout has no dtype (what lies
     * beyond its struct_size is not its): float64 */
    fib_base *old = NULL, *wide = budget(g, 0.5, FIB_DTYPE_F64, 0, &o);
    fib_budget_options_init(&o, sizeof o);
    o.struct_size = FIB_BUDGET_OPTIONS_SIZE_3;
    o.dtype = FIB_DTYPE_F32;
    CHECK_OK(fib_compress_to_budget(g, 0.5, &o, &old));
    if (old && wide)
        CHECK(check_rounded_once(wide, old) == 0);
    fib_base_free(old), fib_base_free(wide);
    fib_graph_free(g);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fib-budget-dtype-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(graph_budget_in_float32_is_the_float64_base_rounded_once);
    RUN(corrected_chain_in_float32_is_the_float64_base_rounded_once);
    RUN(wide_chain_in_float32_is_the_float64_base_rounded_once);
    RUN(budget_dtype_is_checked_and_absent_from_the_previous_layout);
    rmdir(tmpdir);
    return test_failures ? 1 : 0;
}
