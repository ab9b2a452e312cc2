/* Rows held in float32 (fib_rows_narrow, what a budget's first clustering
 * of a layer's float32 weights reads): normalised and agglomerated by the
 * rank-1 Ward linkage and the cosine linkage they give the norms and the
 * merges, heights bit for bit, of the same rows held in double, near-
 * parallel rows (whose cosines are made again from the rows), a zero row
 * and negative zeros included; rows with a value float32 does not hold or
 * with allowances stay in double; the linkages that read rows directly
 * refuse float32 ones. A float32 layer's rows over a discrete source, read
 * in place from its weights (fib_rows_borrow), give the norms and merges
 * of the rows made from them, bit for bit, also for a layer wide enough
 * that the borrowed rows' cosines are made in several sweeps of partial
 * chunks, over two pieces of coordinates, on 1 and 2 threads (the made
 * rows' cosines come from unit rows held whole); so does a budget of a
 * float32 model file, mapped (its pages let go and read again) or copied,
 * and of the same values in float64 (whose rows are made). */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checks.h"
#include "color/linkage.h"
#include "testing.h"

int test_failures;

enum { N = 160, D = 48 };

/* N x D float32 values: random rows, every fifth a near copy of the one
 * before (cosine above 0.5), row 7 zero, some negative zeros. */
static void fill_rows(fib_rows *r)
{
    uint64_t rng = 5;
    CHECK_OK(fib_rows_alloc(r, N, D));
    fib_free(r->tol); /* a budget's rows have no allowances */
    r->tol = NULL;
    double *x = test_random_array(&rng, N * D, -1, 1);
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < D; j++) {
            float v = (float)x[i * D + j];
            if (i % 5 == 4)
                v = (float)r->value[(i - 1) * D + j] * 1.5f + 0.01f * v;
            if (i == 7)
                v = 0.0f;
            if ((i * D + j) % 97 == 3)
                v = -0.0f;
            r->value[i * D + j] = v;
        }
    free(x);
    r->float_cosines = true;
    r->n_threads = 1;
}

static void check_same_merges(const fib_merges *a, const fib_merges *b)
{
    CHECK(a->n_merges == b->n_merges && a->n_merges > 0);
    size_t m = (size_t)a->n_merges;
    CHECK(memcmp(a->a, b->a, m * sizeof *a->a) == 0);
    CHECK(memcmp(a->b, b->b, m * sizeof *a->b) == 0);
    CHECK(memcmp(a->height, b->height, m * sizeof *a->height) == 0);
}

static void narrow_rows_give_the_merges_of_double_rows(void)
{
    fib_rows wide, narrow;
    fill_rows(&wide);
    fill_rows(&narrow);
    CHECK(fib_rows_narrow(&narrow));
    CHECK(narrow.value == NULL && narrow.narrow != NULL);
    double mass[N];
    for (int64_t i = 0; i < N; i++)
        mass[i] = 0.5 + (double)(i % 7);
    /* the cosine linkage on the rows as they are */
    fib_merges ca, cb;
    CHECK_OK(fib_linkage_run(&wide, FIB_TOL_COSINE, false, NULL, INFINITY, &ca));
    CHECK_OK(fib_linkage_run(&narrow, FIB_TOL_COSINE, false, NULL, INFINITY, &cb));
    check_same_merges(&ca, &cb);
    fib_merges_clear(&ca);
    fib_merges_clear(&cb);
    /* the rank-1 Ward linkage on the normalised rows, as budgets make it */
    double na[N], nb[N];
    fib_rows_normalize(&wide, na);
    fib_rows_normalize(&narrow, nb);
    CHECK(memcmp(na, nb, sizeof na) == 0);
    CHECK(na[7] == 0 && na[0] > 0);
    fib_merges a, b;
    CHECK_OK(fib_linkage_run(&wide, FIB_TOL_WARD, true, mass, INFINITY, &a));
    CHECK_OK(fib_linkage_run(&narrow, FIB_TOL_WARD, true, mass, INFINITY, &b));
    check_same_merges(&a, &b);
    fib_merges_clear(&a);
    fib_merges_clear(&b);
    /* the linkages reading rows directly take double rows only */
    expect(fib_linkage_run(&narrow, FIB_TOL_COMPLETE, false, NULL, INFINITY, &a),
           FIB_E_INVALID, "float32", "complete linkage of float32 rows");
    fib_rows_clear(&wide);
    fib_rows_clear(&narrow);
}

static void rows_float32_cannot_hold_stay_double(void)
{
    fib_rows r;
    fill_rows(&r);
    r.value[3 * D + 5] = 0.1; /* not a float32 */
    CHECK(!fib_rows_narrow(&r));
    CHECK(r.value != NULL && r.narrow == NULL && r.value[3 * D + 5] == 0.1);
    fib_rows_clear(&r);
    CHECK_OK(fib_rows_alloc(&r, N, D)); /* with allowances */
    CHECK(!fib_rows_narrow(&r));
    CHECK(r.value != NULL && r.narrow == NULL);
    fib_rows_clear(&r);
}

enum { PAD = 3 };

/* N x (D + PAD) float32 weights (a padding of huge values no row holds,
 * so that a read past a row's D values shows) and N biases, with the
 * rows of fill_rows and negative zeros in both. */
static void fill_layer(float *w, float *b)
{
    fib_rows r;
    fill_rows(&r);
    for (int64_t i = 0; i < N; i++) {
        for (int64_t j = 0; j < D; j++)
            w[i * (D + PAD) + j] = (float)r.value[i * D + j];
        for (int64_t j = D; j < D + PAD; j++)
            w[i * (D + PAD) + j] = 1e30f;
        b[i] = i % 11 == 5 ? -0.0f : (float)(0.01 * (double)(i % 13) - 0.05);
    }
    b[7] = 0.0f; /* row 7 stays a zero row */
    fib_rows_clear(&r);
}

static void same_rows_and_merges(fib_rows *made, fib_rows *borrowed)
{
    double na[N], nb[N], mass[N];
    fib_rows_normalize(made, na);
    fib_rows_normalize(borrowed, nb);
    CHECK(memcmp(na, nb, sizeof na) == 0);
    CHECK(na[7] == 0 && na[0] > 0);
    for (int64_t i = 0; i < N; i++)
        mass[i] = 0.5 + (double)(i % 7);
    for (int threads = 1; threads <= 2; threads++) {
        made->n_threads = borrowed->n_threads = threads;
        made->float_cosines = borrowed->float_cosines = true;
        fib_merges a, b;
        CHECK_OK(fib_linkage_run(made, FIB_TOL_WARD, true, mass, INFINITY, &a));
        CHECK_OK(fib_linkage_run(borrowed, FIB_TOL_WARD, true, mass, INFINITY, &b));
        check_same_merges(&a, &b);
        fib_merges_clear(&a);
        fib_merges_clear(&b);
    }
}

static void borrowed_rows_give_the_merges_of_made_rows(void)
{
    float *w = malloc(sizeof(float) * N * (D + PAD)), *b = malloc(sizeof(float) * N);
    CHECK(w && b);
    fill_layer(w, b);
    fib_graph *g = NULL;
    int32_t in = 0, layer = 0;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, D, &in));
    CHECK_OK(fib_graph_add_dense(g, in, N, FIB_DTYPE_F32, w, D + PAD, b, 0, &layer));
    fib_partition src;
    CHECK_OK(fib_partition_init(&src, D));
    fib_partition_discrete(&src);
    double ones[D];
    for (int64_t j = 0; j < D; j++)
        ones[j] = 1.0;
    for (int scaled = 0; scaled <= 1; scaled++) {
        const double *scale = scaled ? ones : NULL;
        fib_rows made, borrowed;
        CHECK_OK(fib_scaled_dense_values(g, layer, &src, scale, &made));
        CHECK(fib_rows_borrow(g, layer, &src, scale, &borrowed));
        CHECK(borrowed.value == NULL && borrowed.owned == NULL && borrowed.narrow == w);
        CHECK(borrowed.n == N && borrowed.d == D + 1);
        same_rows_and_merges(&made, &borrowed);
        fib_rows_clear(&made);
        fib_rows_clear(&borrowed);
    }
    /* rows that are not the weights themselves are made, not borrowed */
    fib_rows r;
    ones[3] = 2.0;
    CHECK(!fib_rows_borrow(g, layer, &src, ones, &r) && r.narrow == NULL);
    src.color[1] = 0;
    src.n_classes = D - 1;
    for (int64_t j = 2; j < D; j++)
        src.color[j] = j - 1;
    CHECK(!fib_rows_borrow(g, layer, &src, NULL, &r) && r.narrow == NULL);
    fib_partition_clear(&src);
    fib_graph_free(g);
    free(w);
    free(b);
}

enum { WIDE_N = 700, WIDE_D = 300, WIDE_LD = 303 };

/* Rows borrowed in place have their cosines made a few panels at a time
 * from the weights (every row after a sweep read again, in chunks); rows
 * made from the same weights hold their unit rows whole. A layer of 700
 * units (sweeps of 128 rows and a partial one, chunks cut by the sweeps)
 * over 300 inputs and a bias (two pieces of coordinates), with near-copies
 * (cosines made again in double), a zero row and negative zeros: the same
 * merges and heights, bit for bit, on 1 and 2 threads. */
static void wide_borrowed_rows_give_the_merges_of_made_rows(void)
{
    uint64_t rng = 17;
    double *x = test_random_array(&rng, WIDE_N * WIDE_LD + WIDE_N, -1, 1);
    float *w = malloc(sizeof(float) * WIDE_N * WIDE_LD), *b = malloc(sizeof(float) * WIDE_N);
    double *na = malloc(sizeof(double) * WIDE_N), *nb = malloc(sizeof(double) * WIDE_N);
    double *mass = malloc(sizeof(double) * WIDE_N);
    CHECK(x && w && b && na && nb && mass);
    for (int64_t i = 0; i < WIDE_N; i++) {
        for (int64_t j = 0; j < WIDE_LD; j++) {
            float v = j < WIDE_D ? (float)x[i * WIDE_LD + j] : 1e30f;
            if (j < WIDE_D && i % 6 == 5) /* a near-copy of the row before */
                v = w[(i - 1) * WIDE_LD + j] * 0.75f + 0.02f * v;
            if (j < WIDE_D && (i == 300 || (i * WIDE_LD + j) % 89 == 7))
                v = i == 300 ? 0.0f : -0.0f;
            w[i * WIDE_LD + j] = v;
        }
        b[i] = i == 300 ? 0.0f : (float)(0.1 * x[WIDE_N * WIDE_LD + i]);
    }
    fib_graph *g = NULL;
    int32_t in = 0, layer = 0;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, WIDE_D, &in));
    CHECK_OK(fib_graph_add_dense(g, in, WIDE_N, FIB_DTYPE_F32, w, WIDE_LD, b, 0, &layer));
    fib_partition src;
    CHECK_OK(fib_partition_init(&src, WIDE_D));
    fib_partition_discrete(&src);
    fib_rows made, borrowed;
    CHECK_OK(fib_scaled_dense_values(g, layer, &src, NULL, &made));
    CHECK(fib_rows_borrow(g, layer, &src, NULL, &borrowed));
    CHECK(borrowed.narrow == w && borrowed.d == WIDE_D + 1);
    fib_rows_normalize(&made, na);
    fib_rows_normalize(&borrowed, nb);
    CHECK(memcmp(na, nb, sizeof(double) * WIDE_N) == 0 && na[300] == 0);
    for (int64_t i = 0; i < WIDE_N; i++)
        mass[i] = 0.25 + (double)(i % 5);
    for (int threads = 1; threads <= 2; threads++) {
        made.n_threads = borrowed.n_threads = threads;
        made.float_cosines = borrowed.float_cosines = true;
        fib_merges ma, mb;
        CHECK_OK(fib_linkage_run(&made, FIB_TOL_WARD, true, mass, INFINITY, &ma));
        CHECK_OK(fib_linkage_run(&borrowed, FIB_TOL_WARD, true, mass, INFINITY, &mb));
        CHECK(ma.n_merges == WIDE_N - 1);
        check_same_merges(&ma, &mb);
        fib_merges_clear(&ma);
        fib_merges_clear(&mb);
    }
    fib_rows_clear(&made);
    fib_rows_clear(&borrowed);
    fib_partition_clear(&src);
    fib_graph_free(g);
    free(x);
    free(w);
    free(b);
    free(na);
    free(nb);
    free(mass);
}

/* A float64 layer's rows are made: its values are not float32. */
static void float64_rows_are_not_borrowed(void)
{
    double w[4 * 3] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    fib_graph *g = NULL;
    int32_t in = 0, layer = 0;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, 3, &in));
    CHECK_OK(fib_graph_add_dense(g, in, 4, FIB_DTYPE_F64, w, 3, NULL, 0, &layer));
    fib_partition src;
    CHECK_OK(fib_partition_init(&src, 3));
    fib_partition_discrete(&src);
    fib_rows r;
    CHECK(!fib_rows_borrow(g, layer, &src, NULL, &r) && r.narrow == NULL);
    fib_partition_clear(&src);
    fib_graph_free(g);
}

/* A float32 chain 24-160-96-5 (ReLU) with near-copies among its hidden
 * rows and negative zeros, saved in float32 and in float64. */
static void save_chain(const char *f32, const char *f64)
{
    const int64_t width[4] = {24, 160, 96, 5};
    uint64_t rng = 11;
    fib_graph *g = NULL;
    int32_t id = 0;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, width[0], &id));
    for (int l = 1; l < 4; l++) {
        int64_t n = width[l], m = width[l - 1];
        double *x = test_random_array(&rng, n * m + n, -1, 1);
        float *w = malloc(sizeof(float) * (size_t)(n * m + n));
        CHECK(w != NULL);
        for (int64_t i = 0; i < n * m + n; i++)
            w[i] = (float)(x[i] / sqrt((double)m));
        for (int64_t i = 3; i < n; i += 4) /* a near-copy of the row before */
            for (int64_t j = 0; j < m; j++)
                w[i * m + j] = 1.25f * w[(i - 1) * m + j] + 0.001f * w[i * m + j];
        for (int64_t i = 0; i < n * m; i += 37)
            w[i] = -0.0f;
        CHECK_OK(fib_graph_add_dense(g, id, n, FIB_DTYPE_F32, w, m, w + n * m, FIB_COPY, &id));
        if (l < 3)
            CHECK_OK(fib_graph_set_activation(g, id, FIB_ACT_RELU, 0));
        free(w);
        free(x);
    }
    CHECK_OK(fib_model_save(g, f32, FIB_DTYPE_F32));
    CHECK_OK(fib_model_save(g, f64, FIB_DTYPE_F64));
    fib_graph_free(g);
}

typedef struct budget_outcome {
    double bound;
    int64_t params;
    int64_t projection[24 + 160 + 96 + 5];
} budget_outcome;

static void budget_of(const char *path, int32_t copy, budget_outcome *out)
{
    fib_load_options lo;
    CHECK_OK(fib_load_options_init(&lo, sizeof lo));
    lo.activation = FIB_ACT_RELU;
    lo.copy = copy;
    fib_graph *g = NULL;
    CHECK_OK(fib_model_load(path, &lo, &g));
    fib_budget_options o;
    CHECK_OK(fib_budget_options_init(&o, sizeof o));
    o.n_threads = 1;
    fib_base *b = NULL;
    CHECK_OK(fib_compress_to_budget(g, 0.3, &o, &b));
    memset(out, 0, sizeof *out);
    out->bound = o.bound;
    out->params = o.n_parameters;
    static const int64_t width[4] = {24, 160, 96, 5};
    for (int32_t group = 0, at = 0; b && group < 4; at += (int32_t)width[group++])
        CHECK_OK(fib_base_projection(b, group, out->projection + at, width[group]));
    fib_base_free(b);
    fib_graph_free(g);
}

static void budget_reads_borrowed_rows_as_made_ones(void)
{
    char dir[] = "/tmp/fib-narrow-rows-XXXXXX", f32[64], f64[64];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(f32, sizeof f32, "%s/f32.safetensors", dir);
    snprintf(f64, sizeof f64, "%s/f64.safetensors", dir);
    save_chain(f32, f64);
    budget_outcome mapped, copied, wide;
    budget_of(f32, 0, &mapped);
    budget_of(f32, 1, &copied);
    budget_of(f64, 0, &wide);
    CHECK(mapped.params > 0 && isfinite(mapped.bound) && mapped.bound > 0);
    CHECK(memcmp(&mapped, &copied, sizeof mapped) == 0);
    CHECK(memcmp(&mapped, &wide, sizeof mapped) == 0);
    remove(f32);
    remove(f64);
    rmdir(dir);
}

int main(void)
{
    RUN(narrow_rows_give_the_merges_of_double_rows);
    RUN(rows_float32_cannot_hold_stay_double);
    RUN(borrowed_rows_give_the_merges_of_made_rows);
    RUN(wide_borrowed_rows_give_the_merges_of_made_rows);
    RUN(float64_rows_are_not_borrowed);
    RUN(budget_reads_borrowed_rows_as_made_ones);
    return test_failures ? 1 : 0;
}
