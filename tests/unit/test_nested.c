/* fib_color_nested: the levels nest (every class of a level lies in one
 * class of the next, class counts never increase) on a trained-like random
 * network in every tolerant mode and on a planted one; each level is the
 * join of the plain colouring at its eps with the level before (checked
 * against a join written here); levels that already nest come back as
 * fib_color's; progress spans all levels and cancels; bad input. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checks.h"
#include "fibration.h"
#include "planted.h"
#include "testing.h"

int test_failures;

#define MAX_LEVELS 8
#define MAX_UNITS 64

static fib_color_options options(int32_t symmetry, int32_t tolerance)
{
    fib_color_options o;
    fib_color_options_init(&o, sizeof o);
    o.symmetry = symmetry;
    o.tolerance = tolerance;
    return o;
}

static fib_coloring *plain(const fib_graph *g, fib_color_options o, double eps)
{
    o.eps = eps;
    fib_coloring *c = NULL;
    CHECK_OK(fib_color(g, &o, &c));
    return c;
}

static int32_t n_groups(const fib_graph *g)
{
    int32_t n = 0;
    CHECK_OK(fib_graph_num_groups(g, &n));
    return n;
}

static void colors(const fib_coloring *c, int32_t group, int64_t n, int64_t *out)
{
    CHECK_OK(fib_coloring_colors(c, group, out, n));
}

/* The join written independently: every unit takes the smallest label
 * reachable through "same class in a or in b", to a fixed point. */
static void reference_join(const int64_t *a, const int64_t *b, int64_t n, int64_t *out)
{
    int64_t label[MAX_UNITS];
    for (int64_t u = 0; u < n; u++)
        label[u] = u;
    for (int changed = 1; changed;) {
        changed = 0;
        for (int64_t u = 0; u < n; u++)
            for (int64_t v = 0; v < n; v++)
                if ((a[u] == a[v] || b[u] == b[v]) && label[v] < label[u]) {
                    label[u] = label[v];
                    changed = 1;
                }
    }
    canonical(label, n, out);
}

static int same_coloring(const fib_graph *g, const fib_coloring *x, const fib_coloring *y)
{
    int32_t refines_xy = 0, refines_yx = 0;
    CHECK_OK(fib_coloring_refines(g, x, y, -1, &refines_xy));
    CHECK_OK(fib_coloring_refines(g, y, x, -1, &refines_yx));
    return refines_xy && refines_yx;
}

/* Checks every promise of the levels of g at eps[0 .. n); returns the
 * number of (level, group) pairs the join changed. */
static int check_levels(const fib_graph *g, fib_color_options o, const double *eps, int n)
{
    fib_coloring *levels[MAX_LEVELS] = {0};
    CHECK_OK(fib_color_nested(g, &o, eps, n, levels));
    int joined = 0;
    for (int t = 0; t < n && levels[0]; t++) {
        int32_t symmetry = 0;
        CHECK_OK(fib_coloring_symmetry(levels[t], &symmetry));
        CHECK(symmetry == o.symmetry);
        fib_coloring *p = plain(g, o, eps[t]);
        int32_t refines = 0;
        CHECK_OK(fib_coloring_refines(g, p, levels[t], -1, &refines));
        CHECK(refines); /* the join is coarser than the plain colouring */
        if (t == 0)
            CHECK(same_coloring(g, p, levels[0]));
        for (int32_t i = 0; t > 0 && i < n_groups(g); i++) {
            int64_t w = test_width(g, i), a[MAX_UNITS], b[MAX_UNITS], got[MAX_UNITS],
                    want[MAX_UNITS];
            CHECK_OK(fib_coloring_refines(g, levels[t - 1], levels[t], i, &refines));
            CHECK(refines); /* a class never splits as eps grows */
            CHECK(test_num_classes(levels[t], i) <= test_num_classes(levels[t - 1], i));
            colors(p, i, w, a);
            colors(levels[t - 1], i, w, b);
            colors(levels[t], i, w, got);
            reference_join(a, b, w, want);
            CHECK(memcmp(got, want, (size_t)w * sizeof *got) == 0);
            joined += test_num_classes(p, i) != test_num_classes(levels[t], i);
        }
        fib_coloring_free(p);
    }
    for (int t = 0; t < n; t++)
        fib_coloring_free(levels[t]);
    return joined;
}

/* A random 10-48-32-6 ReLU network: no exact symmetry, classes only with
 * tolerance, and (typically) colourings that do not nest by themselves. */
typedef struct random_net {
    fib_graph *g;
    double *w[3], *b[3];
} random_net;

static void random_build(random_net *r, uint64_t seed)
{
    static const int64_t width[4] = {10, 48, 32, 6};
    int32_t prev = 0, id = 0;
    CHECK_OK(fib_graph_create(&r->g));
    CHECK_OK(fib_graph_add_input(r->g, width[0], &prev));
    for (int l = 0; l < 3; l++) {
        double scale = 1.0 / sqrt((double)width[l]);
        r->w[l] = test_random_array(&seed, width[l + 1] * width[l], -scale, scale);
        r->b[l] = test_random_array(&seed, width[l + 1], -0.1, 0.1);
        CHECK_OK(fib_graph_add_dense(r->g, prev, width[l + 1], FIB_DTYPE_F64, r->w[l],
                                     width[l], r->b[l], 0, &id));
        if (l < 2)
            CHECK_OK(fib_graph_set_activation(r->g, id, FIB_ACT_RELU, 0));
        prev = id;
    }
}

static void random_free(random_net *r)
{
    fib_graph_free(r->g);
    for (int l = 0; l < 3; l++)
        free(r->w[l]), free(r->b[l]);
}

static void trained_like_network_nests(void)
{
    random_net r;
    random_build(&r, 2024);
    static const struct {
        int32_t symmetry, tolerance;
        double eps[5];
    } cases[] = {
        {FIB_SYM_FIBERS, FIB_TOL_ABS, {0.02, 0.05, 0.1, 0.15, 0.3}},
        {FIB_SYM_COVERS, FIB_TOL_ABS, {0.02, 0.05, 0.1, 0.15, 0.3}},
        {FIB_SYM_OPFIBERS, FIB_TOL_ABS, {0.02, 0.05, 0.1, 0.15, 0.3}},
        {FIB_SYM_FIBERS, FIB_TOL_REL, {0.05, 0.1, 0.2, 0.3, 0.5}},
        {FIB_SYM_FIBERS, FIB_TOL_COMPLETE, {0.05, 0.1, 0.2, 0.3, 0.5}},
        {FIB_SYM_FIBERS, FIB_TOL_WARD, {0.05, 0.1, 0.2, 0.3, 0.5}},
        {FIB_SYM_FIBERS, FIB_TOL_SCALED | FIB_TOL_WARD, {0.05, 0.1, 0.2, 0.3, 0.5}},
    };
    int joined = 0;
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++)
        joined += check_levels(r.g, options(cases[k].symmetry, cases[k].tolerance),
                               cases[k].eps, 5);
    printf("     the join changed %d (level, group) pairs\n", joined);
    CHECK(joined > 0); /* the plain colourings of this network do not all nest */
    random_free(&r);
}

/* An exactly lifted network: tiny tolerances give the planted classes, a
 * huge one a single class per hidden layer; these nest by themselves, so
 * every level is fib_color's. */
static void planted_network_nests(void)
{
    planted_mlp p;
    static const int64_t base[4] = {6, 5, 4, 3};
    planted_build(&p, 77, 3, base, 5, FIB_DTYPE_F64, 0, FIB_ACT_RELU, 0);
    fib_graph *g = planted_graph(&p, 0);
    static const double eps[3] = {1e-9, 1e-6, 1e9};
    fib_color_options o = options(FIB_SYM_COVERS, FIB_TOL_ABS);
    fib_coloring *levels[3] = {0};
    CHECK_OK(fib_color_nested(g, &o, eps, 3, levels));
    for (int t = 0; t < 3 && levels[0]; t++) {
        fib_coloring *q = plain(g, o, eps[t]);
        CHECK(same_coloring(g, q, levels[t]));
        fib_coloring_free(q);
        for (int32_t l = 1; l < 3; l++) {
            if (t < 2)
                CHECK(same_partition(levels[t], l, p.cls[l], p.width[l]));
            else
                CHECK(test_num_classes(levels[t], l) == 1);
        }
    }
    for (int t = 0; t < 3; t++)
        fib_coloring_free(levels[t]);
    CHECK(check_levels(g, o, eps, 3) == 0);
    fib_graph_free(g);
    planted_free(&p);
}

/* One level, and equal tolerances: each level is the plain colouring. */
static void one_level_and_repeats(void)
{
    random_net r;
    random_build(&r, 5);
    fib_color_options o = options(FIB_SYM_FIBERS, FIB_TOL_ABS);
    static const double eps[3] = {0.1, 0.1, 0.1};
    fib_coloring *levels[3] = {0};
    CHECK_OK(fib_color_nested(r.g, &o, eps, 3, levels));
    fib_coloring *q = plain(r.g, o, 0.1);
    for (int t = 0; t < 3 && levels[t]; t++)
        CHECK(same_coloring(r.g, q, levels[t]));
    fib_coloring_free(q);
    for (int t = 0; t < 3; t++)
        fib_coloring_free(levels[t]);
    random_free(&r);
}

typedef struct seen {
    int64_t calls, last_done, last_total, cancel_at;
    int monotone;
} seen;

static int32_t record(void *user, int64_t done, int64_t total)
{
    seen *s = user;
    s->calls++;
    s->monotone = s->monotone && done > s->last_done && done <= total &&
                  (s->last_total == 0 || total == s->last_total);
    s->last_done = done;
    s->last_total = total;
    return s->cancel_at > 0 && s->calls == s->cancel_at;
}

static void progress_spans_levels_and_cancels(void)
{
    random_net r;
    random_build(&r, 9);
    static const double eps[3] = {0.05, 0.1, 0.2};
    fib_color_options o = options(FIB_SYM_COVERS, FIB_TOL_ABS);
    seen s = {0, 0, 0, 0, 1};
    o.progress = record;
    o.progress_user = &s;
    fib_coloring *levels[3] = {0};
    CHECK_OK(fib_color_nested(r.g, &o, eps, 3, levels));
    CHECK(s.monotone);
    CHECK(s.last_done == s.last_total && s.calls == s.last_total);
    CHECK(s.last_total == 3 * 2 * n_groups(r.g)); /* covers: two passes a level */
    for (int t = 0; t < 3; t++)
        fib_coloring_free(levels[t]);
    int64_t steps = s.calls;
    for (int64_t k = 1; k <= steps; k++) {
        s = (seen){0, 0, 0, k, 1};
        fib_coloring *none[3] = {NULL, NULL, NULL};
        CHECK(fib_color_nested(r.g, &o, eps, 3, none) == FIB_E_CANCELLED);
        CHECK(none[0] == NULL && none[1] == NULL && none[2] == NULL);
        CHECK(s.calls == k);
    }
    random_free(&r);
}

static void bad_input(void)
{
    random_net r;
    random_build(&r, 3);
    fib_graph *g = r.g;
    fib_color_options o = options(FIB_SYM_FIBERS, FIB_TOL_ABS), x;
    double eps[3] = {0.1, 0.2, 0.3};
    fib_coloring *sentinel = (fib_coloring *)&o;
    fib_coloring *levels[3] = {sentinel, sentinel, sentinel};
    expect(fib_color_nested(NULL, &o, eps, 3, levels), FIB_E_NULL, "graph is NULL",
           "nested NULL graph");
    expect(fib_color_nested(g, NULL, eps, 3, levels), FIB_E_NULL, "options is NULL",
           "nested NULL options");
    expect(fib_color_nested(g, &o, NULL, 3, levels), FIB_E_NULL, "eps is NULL",
           "nested NULL eps");
    expect(fib_color_nested(g, &o, eps, 3, NULL), FIB_E_NULL, "levels is NULL",
           "nested NULL levels");
    expect(fib_color_nested(g, &o, eps, 0, levels), FIB_E_SHAPE, "n_levels 0",
           "nested no levels");
    expect(fib_color_nested(g, &o, eps, -2, levels), FIB_E_SHAPE, "n_levels -2",
           "nested negative levels");
    x = o;
    x.struct_size = 8;
    expect(fib_color_nested(g, &x, eps, 3, levels), FIB_E_INVALID, "struct_size 8",
           "nested struct_size");
    x = options(FIB_SYM_FIBERS, FIB_TOL_EXACT);
    expect(fib_color_nested(g, &x, eps, 3, levels), FIB_E_INVALID, "FIB_TOL_EXACT",
           "nested exact");
    x.tolerance = FIB_TOL_EXACT | FIB_TOL_SCALED;
    expect(fib_color_nested(g, &x, eps, 3, levels), FIB_E_INVALID, "FIB_TOL_EXACT",
           "nested scaled exact");
    x = o;
    x.eps = 0.5;
    expect(fib_color_nested(g, &x, eps, 3, levels), FIB_E_INVALID, "options.eps must be 0",
           "nested options eps");
    eps[1] = -0.1;
    expect(fib_color_nested(g, &o, eps, 3, levels), FIB_E_INVALID, "eps[1] = -0.1",
           "nested negative eps");
    eps[1] = NAN;
    expect(fib_color_nested(g, &o, eps, 3, levels), FIB_E_INVALID, "eps[1] = nan",
           "nested NaN eps");
    eps[1] = INFINITY;
    expect(fib_color_nested(g, &o, eps, 3, levels), FIB_E_INVALID, "must be finite",
           "nested infinite eps");
    eps[1] = 0.05;
    expect(fib_color_nested(g, &o, eps, 3, levels), FIB_E_INVALID,
           "eps[1] = 0.05 is smaller than eps[0] = 0.1", "nested unsorted eps");
    eps[1] = 0.2;
    x = o;
    x.symmetry = 9;
    expect(fib_color_nested(g, &x, eps, 3, levels), FIB_E_INVALID, "unknown symmetry 9",
           "nested symmetry");
    x = options(FIB_SYM_COVERS, FIB_TOL_SCALED | FIB_TOL_WARD);
    expect(fib_color_nested(g, &x, eps, 3, levels), FIB_E_UNSUPPORTED, "fibers only",
           "nested scaled covers");
    CHECK(levels[0] == sentinel && levels[1] == sentinel && levels[2] == sentinel);
    random_free(&r);
}

int main(void)
{
    RUN(trained_like_network_nests);
    RUN(planted_network_nests);
    RUN(one_level_and_repeats);
    RUN(progress_spans_levels_and_cancels);
    RUN(bad_input);
    return test_failures ? 1 : 0;
}
