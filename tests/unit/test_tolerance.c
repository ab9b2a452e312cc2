/* Tolerance modes REL, COSINE, COMPLETE, WARD, the FIB_TOL_SCALED flag and
 * fib_compress_to_budget: determinism, guarantees, planted recovery, exact
 * scaled merging, budgets met. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fibration.h"
#include "testing.h"

int test_failures = 0;

static uint64_t rng_state = 12345;
static double uniform(void) /* [-1, 1) */
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* A planted network: input 6 -> hidden h1 -> hidden h2 -> 3 outputs, ReLU,
 * lifted from a base of k1, k2 units (unit u of layer l copies base unit
 * u % k). With `scaled`, each member's incoming weights and bias are
 * multiplied by s_u in [0.5, 2] and its outgoing weights divided by s_u.
 * `noise` is added to every weight and bias of the lifted hidden layers. */
typedef struct planted {
    fib_graph *g;
    double *w1, *b1, *w2, *b2, *w3, *b3;
    int64_t h1, h2, k1, k2;
} planted;

static void plant(planted *p, int64_t k1, int64_t k2, int64_t h1, int64_t h2, bool scaled,
                  double noise)
{
    const int64_t n_in = 6, n_out = 3;
    double B1[64 * 6], c1[64], B2[64 * 64], c2[64], B3[3 * 64], c3[3];
    for (int64_t i = 0; i < k1 * n_in; i++) B1[i] = uniform();
    for (int64_t i = 0; i < k1; i++) c1[i] = 0.5 * uniform();
    for (int64_t i = 0; i < k2 * k1; i++) B2[i] = uniform();
    for (int64_t i = 0; i < k2; i++) c2[i] = 0.5 * uniform();
    for (int64_t i = 0; i < n_out * k2; i++) B3[i] = uniform();
    for (int64_t i = 0; i < n_out; i++) c3[i] = uniform();
    p->h1 = h1, p->h2 = h2, p->k1 = k1, p->k2 = k2;
    p->w1 = malloc(sizeof(double) * (size_t)(h1 * n_in));
    p->b1 = malloc(sizeof(double) * (size_t)h1);
    p->w2 = malloc(sizeof(double) * (size_t)(h2 * h1));
    p->b2 = malloc(sizeof(double) * (size_t)h2);
    p->w3 = malloc(sizeof(double) * (size_t)(n_out * h2));
    p->b3 = malloc(sizeof(double) * (size_t)n_out);
    double s1[256], s2[256];
    int64_t cnt1[64] = {0}, cnt2[64] = {0};
    for (int64_t u = 0; u < h1; u++) {
        s1[u] = scaled ? 1.25 + 0.75 * uniform() : 1.0;
        cnt1[u % k1]++;
    }
    for (int64_t u = 0; u < h2; u++) {
        s2[u] = scaled ? 1.25 + 0.75 * uniform() : 1.0;
        cnt2[u % k2]++;
    }
    for (int64_t u = 0; u < h1; u++) {
        for (int64_t k = 0; k < n_in; k++)
            p->w1[u * n_in + k] = B1[(u % k1) * n_in + k] * s1[u] + noise * uniform();
        p->b1[u] = c1[u % k1] * s1[u] + noise * uniform();
    }
    for (int64_t v = 0; v < h2; v++) {
        for (int64_t u = 0; u < h1; u++)
            p->w2[v * h1 + u] = B2[(v % k2) * k1 + u % k1] / ((double)cnt1[u % k1] * s1[u]) *
                                s2[v] + noise * uniform();
        p->b2[v] = c2[v % k2] * s2[v] + noise * uniform();
    }
    for (int64_t o = 0; o < n_out; o++) {
        for (int64_t v = 0; v < h2; v++)
            p->w3[o * h2 + v] = B3[o * k2 + v % k2] / ((double)cnt2[v % k2] * s2[v]);
        p->b3[o] = c3[o];
    }
    int32_t in, g1, g2, g3;
    CHECK_OK(fib_graph_create(&p->g));
    CHECK_OK(fib_graph_add_input(p->g, n_in, &in));
    CHECK_OK(fib_graph_add_dense(p->g, in, h1, FIB_DTYPE_F64, p->w1, n_in, p->b1, 0, &g1));
    CHECK_OK(fib_graph_set_activation(p->g, g1, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_dense(p->g, g1, h2, FIB_DTYPE_F64, p->w2, h1, p->b2, 0, &g2));
    CHECK_OK(fib_graph_set_activation(p->g, g2, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_dense(p->g, g2, n_out, FIB_DTYPE_F64, p->w3, h2, p->b3, 0, &g3));
}

static void unplant(planted *p)
{
    fib_graph_free(p->g);
    free(p->w1), free(p->b1), free(p->w2), free(p->b2), free(p->w3), free(p->b3);
}

static fib_coloring *color(const fib_graph *g, int32_t symmetry, int32_t tol, double eps,
                           int32_t threads)
{
    fib_color_options o;
    fib_color_options_init(&o, sizeof o);
    o.symmetry = symmetry;
    o.tolerance = tol;
    o.eps = eps;
    o.n_threads = threads;
    fib_coloring *c = NULL;
    CHECK_OK(fib_color(g, &o, &c));
    return c;
}

static int64_t classes(const fib_coloring *c, int32_t group)
{
    int64_t n = -1;
    if (c)
        CHECK_OK(fib_coloring_num_classes(c, group, &n));
    return n;
}

/* Largest |output difference| between graph and base on random inputs. */
static double output_gap(const fib_graph *g, const fib_graph *b)
{
    enum { batch = 64 };
    double x[batch * 6], y1[batch * 3], y2[batch * 3], gap = 0;
    for (int i = 0; i < batch * 6; i++)
        x[i] = 2 * uniform();
    CHECK_OK(fib_graph_forward(g, batch, FIB_DTYPE_F64, x, y1));
    CHECK_OK(fib_graph_forward(b, batch, FIB_DTYPE_F64, x, y2));
    for (int i = 0; i < batch * 3; i++)
        gap = fmax(gap, fabs(y1[i] - y2[i]));
    return gap;
}

static const int32_t modes[] = {FIB_TOL_REL, FIB_TOL_COSINE, FIB_TOL_COMPLETE, FIB_TOL_WARD,
                                FIB_TOL_SCALED | FIB_TOL_EXACT, FIB_TOL_SCALED | FIB_TOL_ABS,
                                FIB_TOL_SCALED | FIB_TOL_COMPLETE,
                                FIB_TOL_SCALED | FIB_TOL_WARD};

static void planted_recovered_by_every_mode(void)
{
    planted p;
    plant(&p, 5, 4, 17, 13, false, 1e-4);
    static const double eps[] = {0.01, 0.001, 0.002, 0.01, 0, 0.01, 0.01, 0.01};
    for (size_t m = 0; m < sizeof modes / sizeof *modes; m++) {
        double e = modes[m] == (FIB_TOL_SCALED | FIB_TOL_EXACT) ? 0 : eps[m];
        if (modes[m] == (FIB_TOL_SCALED | FIB_TOL_EXACT))
            continue; /* noisy copies are not exact */
        fib_coloring *c = color(p.g, FIB_SYM_FIBERS, modes[m], e, 1);
        if (classes(c, 1) != 5 || classes(c, 2) != 4)
            fprintf(stderr, "mode %d: %lld, %lld classes\n", (int)modes[m],
                    (long long)classes(c, 1), (long long)classes(c, 2));
        CHECK(classes(c, 1) == 5);
        CHECK(classes(c, 2) == 4);
        fib_coloring_free(c);
    }
    unplant(&p);
}

static void deterministic(void)
{
    planted p;
    plant(&p, 6, 5, 40, 30, true, 0.05);
    for (size_t m = 0; m < sizeof modes / sizeof *modes; m++) {
        fib_coloring *a = color(p.g, FIB_SYM_FIBERS, modes[m], 0.1, 1);
        fib_coloring *b = color(p.g, FIB_SYM_FIBERS, modes[m], 0.1, 2);
        for (int32_t gr = 1; a && b && gr <= 2; gr++) {
            int64_t ca[64], cb[64];
            CHECK_OK(fib_coloring_colors(a, gr, ca, 64));
            CHECK_OK(fib_coloring_colors(b, gr, cb, 64));
            CHECK(memcmp(ca, cb, sizeof(int64_t) * (size_t)(gr == 1 ? 40 : 30)) == 0);
        }
        fib_coloring_free(a);
        fib_coloring_free(b);
    }
    unplant(&p);
}

/* COMPLETE: every pair of a class of the first hidden layer is within eps
 * in every weight and the bias; ABS-like modes nest as eps grows. */
static void complete_guarantee_and_nesting(void)
{
    planted p;
    plant(&p, 6, 5, 40, 30, false, 0.2);
    double eps = 0.3;
    fib_coloring *c = color(p.g, FIB_SYM_FIBERS, FIB_TOL_COMPLETE, eps, 1);
    int64_t col[64];
    CHECK_OK(fib_coloring_colors(c, 1, col, 64));
    for (int64_t u = 0; u < 40; u++)
        for (int64_t v = u + 1; v < 40; v++) {
            if (col[u] != col[v])
                continue;
            for (int k = 0; k < 6; k++)
                CHECK(fabs(p.w1[u * 6 + k] - p.w1[v * 6 + k]) <= eps + 1e-12);
            CHECK(fabs(p.b1[u] - p.b1[v]) <= eps + 1e-12);
        }
    CHECK(classes(c, 1) < 40);
    static const int32_t linkage[] = {FIB_TOL_COSINE, FIB_TOL_COMPLETE, FIB_TOL_WARD};
    for (int m = 0; m < 3; m++) {
        fib_coloring *lo = color(p.g, FIB_SYM_FIBERS, linkage[m], 0.05, 1);
        fib_coloring *hi = color(p.g, FIB_SYM_FIBERS, linkage[m], 0.5, 1);
        int32_t refines = 0;
        CHECK_OK(fib_coloring_refines(p.g, lo, hi, 1, &refines));
        CHECK(refines == 1);
        fib_coloring_free(lo);
        fib_coloring_free(hi);
    }
    fib_coloring_free(c);
    unplant(&p);
}

/* REL: multiplying a layer by 10 leaves its classes unchanged. */
static void rel_is_scale_free(void)
{
    planted p;
    plant(&p, 6, 5, 40, 30, false, 0.1);
    fib_coloring *a = color(p.g, FIB_SYM_FIBERS, FIB_TOL_REL, 0.1, 1);
    for (int64_t i = 0; i < 40 * 6; i++)
        p.w1[i] *= 10;
    for (int64_t i = 0; i < 40; i++)
        p.b1[i] *= 10;
    fib_coloring *b = color(p.g, FIB_SYM_FIBERS, FIB_TOL_REL, 0.1, 1);
    int64_t ca[64], cb[64];
    CHECK_OK(fib_coloring_colors(a, 1, ca, 64));
    CHECK_OK(fib_coloring_colors(b, 1, cb, 64));
    CHECK(memcmp(ca, cb, sizeof(int64_t) * 40) == 0);
    fib_coloring_free(a);
    fib_coloring_free(b);
    unplant(&p);
}

/* A colouring of g made by hand with the classes and scales of groups 1
 * and 2 of c (23 and 19 units). */
static fib_coloring *scaled_by_hand(const fib_graph *g, const fib_coloring *c)
{
    fib_coloring *h = NULL;
    CHECK_OK(fib_coloring_create(g, FIB_SYM_FIBERS, &h));
    for (int32_t gr = 1; gr <= 2; gr++) {
        int64_t col[64];
        double sc[64];
        CHECK_OK(fib_coloring_colors(c, gr, col, 64));
        CHECK_OK(fib_coloring_scales(c, gr, sc, 64));
        CHECK_OK(fib_coloring_set_group(h, gr, col, gr == 1 ? 23 : 19));
        CHECK_OK(fib_coloring_set_scales(h, gr, sc, gr == 1 ? 23 : 19));
    }
    return h;
}

/* SCALED: planted scaled copies merge exactly; the plain modes cannot. */
static void scaled_is_exact(void)
{
    planted p;
    plant(&p, 5, 4, 23, 19, true, 0);
    fib_coloring *c = color(p.g, FIB_SYM_FIBERS, FIB_TOL_SCALED | FIB_TOL_EXACT, 0, 1);
    CHECK(classes(c, 1) == 5);
    CHECK(classes(c, 2) == 4);
    double s[64];
    CHECK_OK(fib_coloring_scales(c, 1, s, 64));
    bool varied = false;
    for (int i = 0; i < 23; i++) {
        CHECK(s[i] > 0);
        varied = varied || fabs(s[i] - 1) > 1e-3;
    }
    CHECK(varied);
    fib_base *b = NULL;
    CHECK_OK(fib_compress(p.g, c, &b));
    if (b) {
        double gap = output_gap(p.g, fib_base_graph(b));
        if (gap > 1e-9)
            fprintf(stderr, "scaled gap %g\n", gap);
        CHECK(gap <= 1e-9);
        int64_t n = 0;
        CHECK_OK(fib_graph_num_parameters(fib_base_graph(b), &n));
        CHECK(n == 5 * 6 + 5 + 4 * 5 + 4 + 3 * 4 + 3);
    }
    fib_base_free(b);
    /* any grouping with the flag, and the rank-1 Ward */
    fib_coloring *w = color(p.g, FIB_SYM_FIBERS, FIB_TOL_SCALED | FIB_TOL_WARD, 1e-6, 1);
    CHECK(classes(w, 1) == 5);
    CHECK(classes(w, 2) == 4);
    CHECK_OK(fib_compress(p.g, w, &b));
    if (b)
        CHECK(output_gap(p.g, fib_base_graph(b)) <= 1e-9);
    fib_base_free(b);
    fib_coloring_free(w);
    /* exact plain fibers see every scaled member apart */
    fib_coloring *e = color(p.g, FIB_SYM_FIBERS, FIB_TOL_EXACT, 0, 1);
    CHECK(classes(e, 1) == 23);
    fib_coloring_free(e);
    /* scales set by hand on the same partition give the same base */
    fib_coloring *h = scaled_by_hand(p.g, c);
    CHECK_OK(fib_compress(p.g, h, &b));
    if (b)
        CHECK(output_gap(p.g, fib_base_graph(b)) <= 1e-9);
    fib_base_free(b);
    /* tanh(s z) != s tanh(z): scales on a tanh group are refused (by a
     * colouring made after the change; h belongs to the graph before it). */
    CHECK_OK(fib_graph_set_activation(p.g, 1, FIB_ACT_TANH, 0));
    b = NULL;
    CHECK(fib_compress(p.g, h, &b) == FIB_E_MISMATCH && b == NULL);
    fib_coloring_free(h);
    h = scaled_by_hand(p.g, c);
    CHECK(fib_compress(p.g, h, &b) == FIB_E_UNSUPPORTED && b == NULL);
    CHECK(strstr(fib_last_error(), "tanh") != NULL);
    CHECK_OK(fib_graph_set_activation(p.g, 1, FIB_ACT_RELU, 0));
    double bad = -1;
    CHECK(fib_coloring_set_scales(h, 1, &bad, 1) == FIB_E_SHAPE);
    fib_coloring_free(h);
    fib_coloring_free(c);
    /* opfibers are not scale-aware */
    fib_color_options o;
    fib_color_options_init(&o, sizeof o);
    o.symmetry = FIB_SYM_COVERS;
    o.tolerance = FIB_TOL_SCALED | FIB_TOL_ABS;
    fib_coloring *x = NULL;
    CHECK(fib_color(p.g, &o, &x) == FIB_E_UNSUPPORTED);
    unplant(&p);
}

/* Labels (flavours of opfibers) never merge, whatever the linkage. */
static void labels_never_merge(void)
{
    planted p;
    plant(&p, 6, 5, 40, 30, false, 0.3);
    static const int32_t linkage[] = {FIB_TOL_COSINE, FIB_TOL_COMPLETE, FIB_TOL_WARD, FIB_TOL_REL};
    static const double eps[] = {0.5, 1.0, 2.0, 1.0};
    for (int m = 0; m < 4; m++) {
        /* the flavours of opfibers are the fibers of the same call */
        fib_coloring *f = color(p.g, FIB_SYM_FIBERS, linkage[m], eps[m], 1);
        fib_coloring *o = color(p.g, FIB_SYM_OPFIBERS, linkage[m], eps[m], 1);
        int32_t refines = 0;
        CHECK(classes(f, 1) > 1);
        CHECK_OK(fib_coloring_refines(p.g, o, f, 1, &refines));
        CHECK(refines == 1);
        fib_coloring_free(f);
        fib_coloring_free(o);
    }
    unplant(&p);
}

static void linkage_bounded(void)
{
    fib_graph *g = NULL;
    int32_t in, h;
    const int64_t n = FIB_LINKAGE_MAX_UNITS + 1;
    double *w = calloc((size_t)n, sizeof *w);
    for (int64_t i = 0; i < n; i++)
        w[i] = (double)i;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, 1, &in));
    CHECK_OK(fib_graph_add_dense(g, in, n, FIB_DTYPE_F64, w, 1, NULL, 0, &h));
    int32_t out;
    CHECK_OK(fib_graph_add_dense(g, h, 1, FIB_DTYPE_F64, w, n, NULL, 0, &out));
    fib_color_options o;
    fib_color_options_init(&o, sizeof o);
    o.tolerance = FIB_TOL_COSINE;
    o.eps = 0.1;
    fib_coloring *c = NULL;
    CHECK(fib_color(g, &o, &c) == FIB_E_UNSUPPORTED);
    CHECK(c == NULL);
    o.tolerance = FIB_TOL_REL; /* the sweep has no such bound */
    CHECK_OK(fib_color(g, &o, &c));
    fib_coloring_free(c);
    fib_graph_free(g);
    free(w);
}

static void budget_met(void)
{
    planted p;
    plant(&p, 12, 10, 60, 50, true, 0.05);
    int64_t total = 0;
    CHECK_OK(fib_graph_num_parameters(p.g, &total));
    static const double budgets[] = {0.1, 0.3, 0.6};
    for (int i = 0; i < 3; i++) {
        fib_budget_options o;
        CHECK_OK(fib_budget_options_init(&o, sizeof o));
        fib_base *b = NULL, *b2 = NULL;
        CHECK_OK(fib_compress_to_budget(p.g, budgets[i], &o, &b));
        int64_t n = 0;
        if (b) {
            CHECK_OK(fib_graph_num_parameters(fib_base_graph(b), &n));
            CHECK(n == o.n_parameters);
            CHECK((double)n <= budgets[i] * (double)total);
            CHECK(o.bound >= 0 && isfinite(o.bound));
            CHECK(o.chosen_tolerance == (FIB_TOL_SCALED | FIB_TOL_WARD) ||
                  o.chosen_tolerance == FIB_TOL_WARD);
        }
        /* deterministic */
        CHECK_OK(fib_compress_to_budget(p.g, budgets[i], NULL, &b2));
        if (b && b2)
            CHECK(output_gap(fib_base_graph(b), fib_base_graph(b2)) == 0);
        fib_base_free(b);
        fib_base_free(b2);
    }
    /* the planted scaled base itself: exact at its own size */
    fib_base *b = NULL;
    fib_budget_options o;
    fib_budget_options_init(&o, sizeof o);
    double own = (double)(12 * 6 + 12 + 10 * 12 + 10 + 3 * 10 + 3) / (double)total;
    CHECK_OK(fib_compress_to_budget(p.g, own, &o, &b));
    CHECK(o.chosen_tolerance == (FIB_TOL_SCALED | FIB_TOL_WARD));
    fib_base_free(b);
    CHECK(fib_compress_to_budget(p.g, 0.0, NULL, &b) == FIB_E_INVALID);
    CHECK(fib_compress_to_budget(p.g, 1e-6, NULL, &b) == FIB_E_UNSUPPORTED);
    unplant(&p);
}

/* merge_inputs: inputs in planted opfiber classes (equal columns of the
 * first block) are merged exactly: the base, fed the classes' means, gives
 * the original's outputs; the index is counted; without the option, or from
 * a caller of the first layout, inputs stay. */
static void budget_merges_inputs(void)
{
    enum { n_in = 40, k_in = 8, n_h = 6, n_out = 3, batch = 32 };
    double w1[n_h * n_in], w2[n_out * n_h], b1[n_h], b2[n_out], r[n_h * k_in];
    int64_t cls[n_in];
    for (int k = 0; k < n_in; k++)
        cls[k] = (k * 5 + k / 7) % k_in; /* every class used, members spread */
    for (int i = 0; i < n_h * k_in; i++)
        r[i] = uniform() - 0.5;
    for (int i = 0; i < n_h; i++) {
        b1[i] = uniform() - 0.5;
        for (int k = 0; k < n_in; k++)
            w1[i * n_in + k] = r[i * k_in + cls[k]];
    }
    for (int i = 0; i < n_out * n_h; i++)
        w2[i] = uniform() - 0.5;
    for (int i = 0; i < n_out; i++)
        b2[i] = uniform() - 0.5;
    fib_graph *g = NULL;
    int32_t in, h, out;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, n_in, &in));
    CHECK_OK(fib_graph_add_dense(g, in, n_h, FIB_DTYPE_F64, w1, n_in, b1, 0, &h));
    CHECK_OK(fib_graph_set_activation(g, h, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_dense(g, h, n_out, FIB_DTYPE_F64, w2, n_h, b2, 0, &out));
    int64_t total = 0;
    CHECK_OK(fib_graph_num_parameters(g, &total));
    /* the exact input merge and every hidden unit: k_in * n_h + n_h + ...
     * plus the n_in indices */
    int64_t own = k_in * n_h + n_h + n_out * n_h + n_out + n_in;
    fib_budget_options o;
    CHECK_OK(fib_budget_options_init(&o, sizeof o));
    CHECK(o.merge_inputs == 0 && o.reserved0 == 0 && o.input_sensitivity == 3.0);
    o.merge_inputs = 1;
    fib_base *b = NULL;
    CHECK_OK(fib_compress_to_budget(g, (double)own / (double)total, &o, &b));
    if (b) {
        const fib_graph *bg = fib_base_graph(b);
        int64_t n = 0, proj[n_in];
        CHECK_OK(fib_graph_num_parameters(bg, &n));
        CHECK(n + n_in == o.n_parameters);
        CHECK(o.n_parameters <= own);
        CHECK_OK(fib_base_projection(b, in, proj, n_in));
        for (int a = 0; a < n_in; a++) /* the planted classes */
            for (int c = 0; c < n_in; c++)
                CHECK((proj[a] == proj[c]) == (cls[a] == cls[c]));
        CHECK(o.bound < 1e-9);
        /* the base on the class means = the original */
        double x[batch * n_in], xm[batch * k_in], y1[batch * n_out], y2[batch * n_out];
        for (int i = 0; i < batch * n_in; i++)
            x[i] = 2 * uniform() - 0.5;
        memset(xm, 0, sizeof xm);
        int64_t count[k_in] = {0};
        for (int k = 0; k < n_in; k++)
            count[proj[k]]++;
        for (int s = 0; s < batch; s++)
            for (int k = 0; k < n_in; k++)
                xm[s * k_in + proj[k]] += x[s * n_in + k] / (double)count[proj[k]];
        CHECK_OK(fib_graph_forward(g, batch, FIB_DTYPE_F64, x, y1));
        CHECK_OK(fib_graph_forward(bg, batch, FIB_DTYPE_F64, xm, y2));
        double gap = 0;
        for (int i = 0; i < batch * n_out; i++)
            gap = fmax(gap, fabs(y1[i] - y2[i]));
        if (gap > 1e-12)
            fprintf(stderr, "merged inputs: gap %g\n", gap);
        CHECK(gap <= 1e-12);
    }
    fib_base_free(b);
    b = NULL;
    /* a caller of the first layout: its bytes only, inputs stay */
    union { fib_budget_options o; unsigned char bytes[sizeof(fib_budget_options)]; } old;
    memset(&old, 0xAB, sizeof old);
    CHECK_OK(fib_budget_options_init(&old.o, FIB_BUDGET_OPTIONS_SIZE_1));
    CHECK(old.o.struct_size == FIB_BUDGET_OPTIONS_SIZE_1);
    for (size_t i = FIB_BUDGET_OPTIONS_SIZE_1; i < sizeof old; i++)
        CHECK(old.bytes[i] == 0xAB);
    CHECK_OK(fib_compress_to_budget(g, 0.9, &old.o, &b));
    int64_t p0[n_in];
    if (b) {
        CHECK_OK(fib_base_projection(b, in, p0, n_in));
        for (int k = 0; k < n_in; k++)
            CHECK(p0[k] == k);
    }
    fib_base_free(b);
    b = NULL;
    CHECK(fib_budget_options_init(&old.o, FIB_BUDGET_OPTIONS_SIZE_1 - 1) == FIB_E_INVALID);
    fib_budget_options_init(&o, sizeof o);
    o.merge_inputs = 2;
    CHECK(fib_compress_to_budget(g, 0.5, &o, &b) == FIB_E_INVALID);
    o.merge_inputs = 1;
    o.reserved0 = 1;
    CHECK(fib_compress_to_budget(g, 0.5, &o, &b) == FIB_E_INVALID);
    o.reserved0 = 0;
    o.input_sensitivity = 0;
    CHECK(fib_compress_to_budget(g, 0.5, &o, &b) == FIB_E_INVALID);
    o.input_sensitivity = NAN;
    CHECK(fib_compress_to_budget(g, 0.5, &o, &b) == FIB_E_INVALID);
    CHECK(b == NULL);
    fib_graph_free(g);
}

/* Mean squared output difference between graph and base on n fresh
 * inputs N(0, 1) (both read the same inputs: no merged inputs). */
static double output_mse(const fib_graph *g, const fib_graph *b)
{
    enum { batch = 512 };
    static double x[batch * 6], y1[batch * 3], y2[batch * 3];
    for (int i = 0; i < batch * 6; i += 2) { /* Box-Muller */
        double u = (uniform() + 1) / 2, v = (uniform() + 1) / 2;
        double r = sqrt(-2 * log(1 - u));
        x[i] = r * cos(6.283185307179586 * v);
        x[i + 1] = r * sin(6.283185307179586 * v);
    }
    CHECK_OK(fib_graph_forward(g, batch, FIB_DTYPE_F64, x, y1));
    CHECK_OK(fib_graph_forward(b, batch, FIB_DTYPE_F64, x, y2));
    double e = 0;
    for (int i = 0; i < batch * 3; i++)
        e += (y1[i] - y2[i]) * (y1[i] - y2[i]);
    return e / (batch * 3);
}

/* synthetic_scale: exact on planted scaled copies at any ridge
 * (synthetic_ridge), closer to the original than Eq. 10's base on fresh
 * inputs of that scale, deterministic, and not applied (base unchanged)
 * when a block has no bias. */
static void budget_synthetic_correction(void)
{
    planted p;
    plant(&p, 12, 10, 60, 50, true, 0.0);
    int64_t total = 0;
    CHECK_OK(fib_graph_num_parameters(p.g, &total));
    double own = (double)(12 * 6 + 12 + 10 * 12 + 10 + 3 * 10 + 3) / (double)total;
    fib_budget_options o;
    CHECK_OK(fib_budget_options_init(&o, sizeof o));
    CHECK(o.synthetic_scale == 0 && o.synthetic_samples == 8192 && o.corrected == 0);
    /* with any ridge: it pulls towards a consumer that already fits them */
    static const double ridges[] = {1e-3 /* the default */, 0.0, 1e-10, 10.0};
    fib_base *b = NULL;
    for (size_t r = 0; r < sizeof ridges / sizeof *ridges; r++) {
        o.synthetic_scale = 1.0;
        o.synthetic_ridge = ridges[r];
        CHECK_OK(fib_compress_to_budget(p.g, own, &o, &b));
        CHECK(o.corrected == 1);
        if (b) {
            double gap = output_gap(p.g, fib_base_graph(b));
            if (gap > 1e-6)
                fprintf(stderr, "corrected planted base, ridge %g: gap %g\n", ridges[r], gap);
            CHECK(gap <= 1e-6);
        }
        fib_base_free(b);
        b = NULL;
    }
    unplant(&p);

    /* noisy copies squeezed to 30%: the correction fits the outputs better */
    plant(&p, 12, 10, 60, 50, true, 0.2);
    fib_base *plain = NULL, *fixed = NULL, *again = NULL;
    fib_budget_options_init(&o, sizeof o);
    CHECK_OK(fib_compress_to_budget(p.g, 0.3, &o, &plain));
    CHECK(o.corrected == 0);
    o.synthetic_scale = 1.0;
    CHECK_OK(fib_compress_to_budget(p.g, 0.3, &o, &fixed));
    CHECK(o.corrected == 1);
    CHECK_OK(fib_compress_to_budget(p.g, 0.3, &o, &again));
    if (plain && fixed && again) {
        double e_plain = output_mse(p.g, fib_base_graph(plain));
        double e_fixed = output_mse(p.g, fib_base_graph(fixed));
        if (!(e_fixed < e_plain))
            fprintf(stderr, "correction: mse %g, without %g\n", e_fixed, e_plain);
        CHECK(e_fixed < e_plain);
        CHECK(output_gap(fib_base_graph(fixed), fib_base_graph(again)) == 0);
        int64_t n1 = 0, n2 = 0;
        CHECK_OK(fib_graph_num_parameters(fib_base_graph(plain), &n1));
        CHECK_OK(fib_graph_num_parameters(fib_base_graph(fixed), &n2));
        CHECK(n1 == n2); /* the same classes */
    }
    fib_base_free(plain);
    fib_base_free(fixed);
    fib_base_free(again);
    /* without biases the correction is not applied: Eq. 10's base */
    fib_graph *nb = NULL;
    int32_t in, h1, h2, out;
    CHECK_OK(fib_graph_create(&nb));
    CHECK_OK(fib_graph_add_input(nb, 6, &in));
    CHECK_OK(fib_graph_add_dense(nb, in, p.h1, FIB_DTYPE_F64, p.w1, 6, NULL, 0, &h1));
    CHECK_OK(fib_graph_set_activation(nb, h1, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_dense(nb, h1, p.h2, FIB_DTYPE_F64, p.w2, p.h1, NULL, 0, &h2));
    CHECK_OK(fib_graph_set_activation(nb, h2, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_dense(nb, h2, 3, FIB_DTYPE_F64, p.w3, p.h2, NULL, 0, &out));
    fib_budget_options_init(&o, sizeof o);
    CHECK_OK(fib_compress_to_budget(nb, 0.3, &o, &plain));
    o.synthetic_scale = 1.0;
    CHECK_OK(fib_compress_to_budget(nb, 0.3, &o, &fixed));
    CHECK(o.corrected == 0);
    if (plain && fixed)
        CHECK(output_gap(fib_base_graph(plain), fib_base_graph(fixed)) == 0);
    fib_base_free(plain);
    fib_base_free(fixed);
    fib_graph_free(nb);
    o.synthetic_scale = NAN;
    CHECK(fib_compress_to_budget(p.g, 0.3, &o, &b) == FIB_E_INVALID);
    o.synthetic_scale = 1.0;
    o.synthetic_samples = 0;
    CHECK(fib_compress_to_budget(p.g, 0.3, &o, &b) == FIB_E_INVALID);
    unplant(&p);
}

/* A budget is the same at every thread count: a random ReLU MLP wide
 * enough for several panels of the pairwise cosines (more than 64 units),
 * several pieces of their coordinates (more than 256 inputs) and Lloyd
 * rounds over several blocks of units. For n_threads 1, 2 and 3, with and
 * without merged inputs, the projections and every weight of the base are
 * equal bit for bit, and its parameters are within the budget. */
static void budget_same_at_every_thread_count(void)
{
    enum { n_in = 300, h1 = 150, h2 = 130, n_out = 5 };
    static double w1[h1 * n_in], b1[h1], w2[h2 * h1], b2[h2], w3[n_out * h2], b3[n_out];
    for (int64_t i = 0; i < h1 * n_in; i++) w1[i] = uniform() / sqrt(n_in);
    for (int64_t i = 0; i < h1; i++) b1[i] = 0.1 * uniform();
    for (int64_t i = 0; i < h2 * h1; i++) w2[i] = uniform() / sqrt(h1);
    for (int64_t i = 0; i < h2; i++) b2[i] = 0.1 * uniform();
    for (int64_t i = 0; i < n_out * h2; i++) w3[i] = uniform() / sqrt(h2);
    for (int64_t i = 0; i < n_out; i++) b3[i] = 0.1 * uniform();
    fib_graph *g = NULL;
    int32_t in, g1, g2, g3;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, n_in, &in));
    CHECK_OK(fib_graph_add_dense(g, in, h1, FIB_DTYPE_F64, w1, n_in, b1, 0, &g1));
    CHECK_OK(fib_graph_set_activation(g, g1, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_dense(g, g1, h2, FIB_DTYPE_F64, w2, h1, b2, 0, &g2));
    CHECK_OK(fib_graph_set_activation(g, g2, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_dense(g, g2, n_out, FIB_DTYPE_F64, w3, h2, b3, 0, &g3));
    int64_t total = 0;
    CHECK_OK(fib_graph_num_parameters(g, &total));
    static const int64_t units[4] = {n_in, h1, h2, n_out};
    for (int merge = 0; merge <= 1; merge++) {
        static int64_t want[4][n_in], got[4][n_in];
        static double want_w[4][h1 * n_in], got_w[4][h1 * n_in];
        int64_t classes[4] = {0};
        for (int32_t threads = 1; threads <= 3; threads++) {
            fib_budget_options o;
            CHECK_OK(fib_budget_options_init(&o, sizeof o));
            o.n_threads = threads;
            o.merge_inputs = merge;
            fib_base *b = NULL;
            CHECK_OK(fib_compress_to_budget(g, 0.3, &o, &b));
            if (!b)
                continue;
            CHECK(o.n_parameters <= (int64_t)(0.3 * (double)total));
            const fib_graph *bg = fib_base_graph(b);
            for (int32_t gr = 0; gr < 4; gr++) {
                int64_t *proj = threads == 1 ? want[gr] : got[gr];
                CHECK_OK(fib_base_projection(b, gr, proj, units[gr]));
                int64_t k = 0;
                for (int64_t u = 0; u < units[gr]; u++)
                    k = proj[u] + 1 > k ? proj[u] + 1 : k;
                if (threads == 1)
                    classes[gr] = k;
                CHECK(k == classes[gr]);
                CHECK(memcmp(want[gr], got[gr], sizeof(int64_t) * (size_t)units[gr]) == 0 ||
                      threads == 1);
                if (gr == 0 || k != classes[gr])
                    continue;
                int64_t src = gr == 1 ? (merge ? classes[0] : n_in) : classes[gr - 1];
                double *w = threads == 1 ? want_w[gr] : got_w[gr];
                CHECK_OK(fib_graph_read_dense(bg, gr, FIB_DTYPE_F64, w, src, NULL));
                CHECK(threads == 1 ||
                      memcmp(want_w[gr], got_w[gr], sizeof(double) * (size_t)(k * src)) == 0);
            }
            /* something was merged in both hidden layers or the test is idle */
            CHECK(classes[1] < h1 || classes[2] < h2);
            fib_base_free(b);
        }
    }
    fib_graph_free(g);
}

int main(void)
{
    RUN(planted_recovered_by_every_mode);
    RUN(deterministic);
    RUN(complete_guarantee_and_nesting);
    RUN(rel_is_scale_free);
    RUN(scaled_is_exact);
    RUN(labels_never_merge);
    RUN(linkage_bounded);
    RUN(budget_met);
    RUN(budget_merges_inputs);
    RUN(budget_synthetic_correction);
    RUN(budget_same_at_every_thread_count);
    return test_failures != 0;
}
