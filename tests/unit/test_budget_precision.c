/* The budget's shortcuts that change which sums are made, not what they
 * mean: a small class's top direction from its m x m Gram matrix (exact,
 * where the power iteration stalls on members nearly orthogonal and of
 * similar weight), the rank-1 linkage's cosines in floats
 * (fib_rows.float_cosines: near-parallel and duplicate rows exact, the
 * rest within float rounding) and the Lloyd rounds' dot products in floats
 * with every possible move checked in double (the same classes as the
 * double path); and the work it skips: the merges past its cut, the Lloyd
 * rounds of a group with one class or a class per unit. Results identical
 * at 1 and 2 threads. */
#include "compress/compress.h"
#include "testing.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int test_failures;

static uint64_t state = 0x243f6a8885a308d3u;

static double uniform(void)
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (double)(state >> 11) / 9007199254740992.0;
}

static double normal(void)
{
    double u = uniform() + 1e-300, v = uniform();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* sum_x om_x^2 (row_x . v)^2 / |v|^2: the energy the direction captures. */
static double captured(const fib_rows *r, const int64_t *mem, int64_t m, const double *om,
                       const double *v)
{
    double e = 0, vv = 0;
    for (int64_t j = 0; j < r->d; j++)
        vv += v[j] * v[j];
    for (int64_t x = 0; x < m; x++) {
        double s = 0;
        for (int64_t j = 0; j < r->d; j++)
            s += r->value[mem[x] * r->d + j] * v[j];
        e += om[mem[x]] * om[mem[x]] * s * s;
    }
    return e / vv;
}

/* Two members at cosine 1e-4 with weights equal to 1e-9: the top
 * eigenvalues of their Gram matrix are nearly equal, the closed form gives
 * the largest, and the direction must capture it; three members: no random
 * direction captures more than the one found. */
static void test_small_class_direction_is_the_top_one(void)
{
    int64_t d = 64;
    fib_rows r;
    CHECK_OK(fib_rows_alloc(&r, 3, d));
    for (int64_t j = 0; j < d; j++) {
        r.value[j] = j == 0 ? 1.0 : 0.0;
        r.value[d + j] = j == 0 ? 1e-4 : j == 1 ? sqrt(1 - 1e-8) : 0.0;
        r.value[2 * d + j] = normal();
    }
    double om[3] = {1.0, 1.0 + 1e-9, 0.7}, v[64], w[64];
    int64_t mem[3] = {0, 1, 2};
    fib_top_direction(&r, mem, 2, om, v, w);
    double a = om[0] * om[0], c = om[1] * om[1], b = om[0] * om[1] * 1e-4;
    double top = 0.5 * (a + c) + sqrt(0.25 * (a - c) * (a - c) + b * b);
    CHECK(fabs(captured(&r, mem, 2, om, v) - top) <= 1e-12 * top);
    double unit = 0;
    for (int64_t j = 0; j < d; j++)
        unit += v[j] * v[j];
    CHECK(fabs(unit - 1) < 1e-12);
    fib_top_direction(&r, mem, 3, om, v, w);
    double best = captured(&r, mem, 3, om, v);
    for (int trial = 0; trial < 200; trial++) {
        double x[64];
        for (int64_t j = 0; j < d; j++)
            x[j] = v[j] + (trial < 100 ? 1e-3 : 1.0) * normal();
        CHECK(captured(&r, mem, 3, om, x) <= best * (1 + 1e-12));
    }
    fib_rows_clear(&r);
}

/* Rows: n random directions in d dimensions, some exact duplicates (scaled)
 * and near duplicates. */
static void random_rows(fib_rows *r, int64_t n, int64_t d)
{
    CHECK_OK(fib_rows_alloc(r, n, d));
    for (int64_t i = 0; i < n; i++) {
        double *row = r->value + i * d;
        if (i % 7 == 3) { /* a duplicate of the row before, scaled */
            for (int64_t j = 0; j < d; j++)
                row[j] = 2.5 * row[j - d];
        } else if (i % 7 == 5) { /* a near duplicate */
            for (int64_t j = 0; j < d; j++)
                row[j] = row[j - d] + 1e-3 * normal();
        } else {
            for (int64_t j = 0; j < d; j++)
                row[j] = normal();
        }
    }
}

/* The cost of the first s merges, for every s. */
static void cumulative(const fib_merges *mg, double *acc)
{
    double t = 0;
    for (int64_t s = 0; s < mg->n_merges; s++)
        acc[s] = t += mg->height[s] > 0 ? mg->height[s] : 0;
}

static void test_float_cosines_keep_the_costs(void)
{
    int64_t n = 300, d = 700;
    fib_rows r;
    random_rows(&r, n, d);
    double *mass = malloc((size_t)n * sizeof *mass);
    for (int64_t i = 0; i < n; i++)
        mass[i] = 0.5 + uniform();
    fib_merges exact, single, two;
    r.n_threads = 1;
    CHECK_OK(fib_linkage_run(&r, FIB_TOL_WARD, true, mass, INFINITY, &exact));
    r.float_cosines = true;
    CHECK_OK(fib_linkage_run(&r, FIB_TOL_WARD, true, mass, INFINITY, &single));
    r.n_threads = 2;
    CHECK_OK(fib_linkage_run(&r, FIB_TOL_WARD, true, mass, INFINITY, &two));
    CHECK(exact.n_merges == n - 1 && single.n_merges == n - 1 && two.n_merges == n - 1);
    /* the same merges at any thread count */
    CHECK(memcmp(single.a, two.a, (size_t)(n - 1) * sizeof *two.a) == 0);
    CHECK(memcmp(single.b, two.b, (size_t)(n - 1) * sizeof *two.b) == 0);
    CHECK(memcmp(single.height, two.height, (size_t)(n - 1) * sizeof *two.height) == 0);
    /* duplicates merge first, at the costs of the double path (their
     * cosines are made again in double: nothing but its rounding); the
     * error curve (what the budget reads) within 1e-4 of the double
     * path's */
    int64_t dups = n / 7 + (n % 7 > 3);
    for (int64_t s = 0; s < dups; s++) {
        CHECK(single.height[s] == exact.height[s]);
        CHECK(single.height[s] <= 1e-6);
        CHECK(single.a[s] == exact.a[s] && single.b[s] == exact.b[s]);
    }
    double *ea = malloc((size_t)n * sizeof *ea), *sa = malloc((size_t)n * sizeof *sa);
    cumulative(&exact, ea);
    cumulative(&single, sa);
    for (int64_t s = 0; s < n - 1; s++)
        CHECK(fabs(ea[s] - sa[s]) <= 1e-4 * ea[s] + 1e-12 * ea[n - 2]);
    free(ea);
    free(sa);
    free(mass);
    fib_merges_clear(&exact);
    fib_merges_clear(&single);
    fib_merges_clear(&two);
    fib_rows_clear(&r);
}

/* Lloyd rounds in floats give the classes of the double path: every move
 * the float values allow is checked in double. */
static void test_float_lloyd_same_classes(void)
{
    int64_t n = 400, d = 300;
    fib_rows r;
    random_rows(&r, n, d);
    fib_rows_normalize(&r, NULL);
    double *weight = malloc((size_t)n * sizeof *weight);
    for (int64_t i = 0; i < n; i++)
        weight[i] = 0.5 + uniform();
    fib_merges mg;
    r.n_threads = 1;
    CHECK_OK(fib_linkage_run(&r, FIB_TOL_WARD, true, NULL, INFINITY, &mg));
    for (int64_t k = 20; k <= 200; k += 90) {
        fib_partition p[3];
        for (int v = 0; v < 3; v++) {
            CHECK_OK(fib_partition_init(&p[v], n));
            CHECK_OK(fib_merges_cut(&mg, n - k, &p[v]));
            r.float_cosines = v > 0;
            r.n_threads = v == 2 ? 2 : 1;
            CHECK_OK(fib_rank1_lloyd(&r, weight, 20, NULL, &p[v]));
        }
        CHECK(p[0].n_classes == p[1].n_classes && p[1].n_classes == p[2].n_classes);
        CHECK(memcmp(p[0].color, p[1].color, (size_t)n * sizeof *p[0].color) == 0);
        CHECK(memcmp(p[1].color, p[2].color, (size_t)n * sizeof *p[1].color) == 0);
        int64_t moved = 0;
        fib_partition cut;
        CHECK_OK(fib_partition_init(&cut, n));
        CHECK_OK(fib_merges_cut(&mg, n - k, &cut));
        for (int64_t i = 0; i < n; i++)
            moved += cut.color[i] != p[0].color[i];
        CHECK(moved > 0); /* the rounds did something to compare */
        fib_partition_clear(&cut);
        for (int v = 0; v < 3; v++)
            fib_partition_clear(&p[v]);
    }
    fib_merges_clear(&mg);
    free(weight);
    fib_rows_clear(&r);
}

/* An agglomeration stopped after s merges takes the first s merges of the
 * full one, costs included (step 4 of a budget cuts there), at 1 and 2
 * threads, with float cosines and without. */
static void test_limited_linkage_is_the_full_ones_prefix(void)
{
    int64_t n = 240, d = 90;
    fib_rows r;
    random_rows(&r, n, d);
    double *mass = malloc((size_t)n * sizeof *mass);
    for (int64_t i = 0; i < n; i++)
        mass[i] = 0.5 + uniform();
    for (int v = 0; v < 4; v++) {
        r.float_cosines = v % 2;
        r.n_threads = v < 2 ? 1 : 2;
        fib_merges full;
        CHECK_OK(fib_linkage_run(&r, FIB_TOL_WARD, true, mass, INFINITY, &full));
        CHECK(full.n_merges == n - 1);
        int64_t limits[] = {0, 1, 17, n / 2, n - 2, n - 1, n + 5};
        for (size_t x = 0; x < sizeof limits / sizeof *limits; x++) {
            fib_merges part;
            CHECK_OK(fib_linkage_run_limited(&r, FIB_TOL_WARD, true, mass, INFINITY, limits[x],
                                             NULL, &part));
            int64_t s = limits[x] < n - 1 ? limits[x] : n - 1;
            CHECK(part.n_merges == s && part.n == n);
            for (int64_t m = 0; m < s && m < part.n_merges; m++)
                CHECK(part.a[m] == full.a[m] && part.b[m] == full.b[m] &&
                      part.height[m] == full.height[m]);
            fib_merges_clear(&part);
        }
        fib_merges_clear(&full);
    }
    free(mass);
    fib_rows_clear(&r);
}

/* The budget skips the Lloyd rounds of a group with one class or with a
 * class per unit: they cannot change either partition, even with dead
 * units (weight 0: a direction of zeros), a zero row and duplicate rows
 * (checked here on the rounds themselves, in floats and in double, at 1
 * and 2 threads). */
static void test_lloyd_keeps_one_class_and_singletons(void)
{
    int64_t n = 150, d = 40;
    fib_rows r;
    random_rows(&r, n, d);
    for (int64_t j = 0; j < d; j++)
        r.value[11 * d + j] = 0; /* a zero row */
    double *weight = malloc((size_t)n * sizeof *weight);
    for (int64_t i = 0; i < n; i++)
        weight[i] = i % 9 == 4 ? 0.0 : 0.5 + uniform();
    for (int v = 0; v < 4; v++) {
        r.float_cosines = v % 2;
        r.n_threads = v < 2 ? 1 : 2;
        fib_partition p;
        CHECK_OK(fib_partition_init(&p, n));
        CHECK_OK(fib_rank1_lloyd(&r, weight, 20, NULL, &p));
        CHECK(p.n_classes == n);
        for (int64_t i = 0; i < n; i++)
            CHECK(p.color[i] == i);
        for (int64_t i = 0; i < n; i++)
            p.color[i] = 0;
        p.n_classes = 1;
        CHECK_OK(fib_rank1_lloyd(&r, weight, 20, NULL, &p));
        CHECK(p.n_classes == 1);
        for (int64_t i = 0; i < n; i++)
            CHECK(p.color[i] == 0);
        fib_partition_clear(&p);
    }
    free(weight);
    fib_rows_clear(&r);
}

/* The Lloyd rounds' bounds (a unit whose bound on every other direction is
 * below its own stays; a unit alone in its class whose own dot product
 * clears |row| times the longest direction stays) give the classes of
 * searching every unit in every round: cuts from a few merges (mostly
 * units alone) to many, dead units (weight 0) and duplicates, in floats
 * and in double, at 1 and 2 threads. */
static void test_lloyd_bounds_give_the_exhaustive_classes(void)
{
    int64_t n = 260, d = 120;
    fib_rows r;
    random_rows(&r, n, d);
    double *weight = malloc((size_t)n * sizeof *weight);
    for (int64_t i = 0; i < n; i++)
        weight[i] = i % 13 == 6 ? 0.0 : 0.5 + uniform();
    fib_rows_normalize(&r, NULL);
    for (int64_t i = 0; i < n; i += 5) /* rows of other lengths too */
        for (int64_t j = 0; j < d; j++)
            r.value[i * d + j] *= 0.25 + 3 * uniform();
    fib_merges mg;
    r.n_threads = 1;
    CHECK_OK(fib_linkage_run(&r, FIB_TOL_WARD, true, NULL, INFINITY, &mg));
    int64_t moved_total = 0;
    for (int64_t k = 8; k < n; k += k < n - 40 ? 61 : 13) {
        fib_partition all, cut;
        CHECK_OK(fib_partition_init(&cut, n));
        CHECK_OK(fib_merges_cut(&mg, n - k, &cut));
        for (int v = 0; v < 4; v++) {
            CHECK_OK(fib_partition_init(&all, n));
            CHECK_OK(fib_merges_cut(&mg, n - k, &all));
            r.float_cosines = v % 2;
            r.n_threads = 1;
            r.search_all = true;
            CHECK_OK(fib_rank1_lloyd(&r, weight, 20, NULL, &all));
            r.search_all = false;
            for (int threads = 1; threads <= 2; threads++) {
                fib_partition p;
                CHECK_OK(fib_partition_init(&p, n));
                CHECK_OK(fib_merges_cut(&mg, n - k, &p));
                r.n_threads = threads;
                CHECK_OK(fib_rank1_lloyd(&r, weight, 20, NULL, &p));
                CHECK(p.n_classes == all.n_classes);
                CHECK(memcmp(p.color, all.color, (size_t)n * sizeof *p.color) == 0);
                fib_partition_clear(&p);
            }
            for (int64_t i = 0; i < n; i++)
                moved_total += all.color[i] != cut.color[i];
            fib_partition_clear(&all);
        }
        fib_partition_clear(&cut);
    }
    CHECK(moved_total > 0); /* the rounds did something to compare */
    fib_merges_clear(&mg);
    free(weight);
    fib_rows_clear(&r);
}

int main(void)
{
    RUN(test_small_class_direction_is_the_top_one);
    RUN(test_float_cosines_keep_the_costs);
    RUN(test_float_lloyd_same_classes);
    RUN(test_limited_linkage_is_the_full_ones_prefix);
    RUN(test_lloyd_keeps_one_class_and_singletons);
    RUN(test_lloyd_bounds_give_the_exhaustive_classes);
    return test_failures ? 1 : 0;
}
