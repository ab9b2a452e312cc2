/* Property tests of the refinement engine against a naive fixed-point
 * refinement written here: thousands of random and lifted digraphs with 1-3
 * edge types, weights, cycles and self-loops, forward and reverse, with and
 * without initial classes, in every convention. Checks: the same partition,
 * balanced, coarsest (merging any two classes breaks balance), the tolerance
 * guarantee, rounding-aware merging of re-split lifted weights, the quotient
 * graph and the building blocks. Usage: test_graph_refine [N_GRAPHS] */
#include "graphs/refine.h"

#include "graph_check.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* A tiny deterministic generator                                           */
/* ------------------------------------------------------------------------ */

static uint64_t rng_state = 0x12345678u;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static int64_t rnd_below(int64_t n)
{
    return (int64_t)(rnd() % (uint64_t)n);
}

static double rnd_unit(void)
{
    return (double)(rnd() >> 11) * 0x1p-53;
}

typedef struct graph {
    int64_t n, m;
    int64_t src[1024], dst[1024];
    double weight[1024];
    int32_t type[1024];
    int64_t initial[128];
    bool weighted, typed, has_initial, reverse;
    int32_t convention;
} graph;

/* ------------------------------------------------------------------------ */
/* Naive refinement                                                         */
/* ------------------------------------------------------------------------ */

typedef struct term {
    int64_t cls;
    int32_t type;
    double sum;
} term;

static int compare_terms(const void *pa, const void *pb)
{
    const term *a = pa, *b = pb;
    if (a->cls != b->cls)
        return a->cls < b->cls ? -1 : 1;
    return (a->type > b->type) - (a->type < b->type);
}

/* The receiving and sending ends of arc i in colouring orientation. */
static int64_t recv_of(const graph *g, int64_t i)
{
    return g->reverse ? g->src[i] : g->dst[i];
}

static int64_t send_of(const graph *g, int64_t i)
{
    return g->reverse ? g->dst[i] : g->src[i];
}

/* Signature of v over the classes `cls`: sorted (class, type, sum) with
 * zero sums dropped. `key` (optional) replaces the class of a sender; with
 * key[u] < 0 the arc is skipped. Returns the term count. */
static int signature(const graph *g, const int64_t *cls, int64_t v,
                     term *out)
{
    int k = 0;
    for (int64_t i = 0; i < g->m; i++) {
        if (recv_of(g, i) != v)
            continue;
        int64_t c = cls[send_of(g, i)];
        if (c < 0)
            continue;
        out[k].cls = c;
        out[k].type = g->typed ? g->type[i] : 0;
        out[k].sum = g->weighted ? g->weight[i] : 1.0;
        k++;
    }
    qsort(out, (size_t)k, sizeof *out, compare_terms);
    int w = 0;
    for (int i = 0; i < k; i++) {
        if (w > 0 && out[w - 1].cls == out[i].cls &&
            out[w - 1].type == out[i].type)
            out[w - 1].sum += out[i].sum;
        else
            out[w++] = out[i];
    }
    int z = 0;
    for (int i = 0; i < w; i++)
        if (out[i].sum != 0)
            out[z++] = out[i];
    return z;
}

static bool same_terms(const term *a, int na, const term *b, int nb)
{
    if (na != nb)
        return false;
    for (int i = 0; i < na; i++)
        if (a[i].cls != b[i].cls || a[i].type != b[i].type ||
            a[i].sum != b[i].sum)
            return false;
    return true;
}

static void canonical(int64_t *labels, int64_t n, int64_t *n_classes)
{
    int64_t map_from[128], map_to[128], k = 0;
    for (int64_t v = 0; v < n; v++) {
        int64_t j = 0;
        while (j < k && map_from[j] != labels[v])
            j++;
        if (j == k) {
            map_from[k] = labels[v];
            map_to[k] = k;
            k++;
        }
        labels[v] = map_to[j];
    }
    *n_classes = k;
}

/* Nodes reachable from each node (n <= 128): reach[u][v]. */
static void reachability(const graph *g, bool reach[128][128])
{
    for (int64_t u = 0; u < g->n; u++)
        for (int64_t v = 0; v < g->n; v++)
            reach[u][v] = u == v;
    for (int64_t i = 0; i < g->m; i++)
        reach[g->src[i]][g->dst[i]] = true;
    for (int64_t k = 0; k < g->n; k++)
        for (int64_t u = 0; u < g->n; u++)
            if (reach[u][k])
                for (int64_t v = 0; v < g->n; v++)
                    if (reach[k][v])
                        reach[u][v] = true;
}

/* Initial labels and extra splitters of a convention, computed naively. */
static int naive_convention(const graph *g, int64_t *label, int64_t *extras)
{
    int n_extras = 0;
    static bool reach[128][128];
    reachability(g, reach);
    int64_t indeg[128] = {0}, loops[128] = {0};
    for (int64_t i = 0; i < g->m; i++) {
        indeg[recv_of(g, i)]++;
        if (g->src[i] == g->dst[i])
            loops[g->src[i]]++;
    }
    for (int64_t v = 0; v < g->n; v++) {
        if (g->convention == FIB_REFINE_PUBLISHED) {
            /* scc = smallest node mutually reachable */
            int64_t s = v;
            for (int64_t u = 0; u < g->n; u++)
                if (reach[u][v] && reach[v][u]) {
                    s = u;
                    break;
                }
            bool input = false, single = true;
            for (int64_t u = 0; u < g->n; u++)
                if (u != v && reach[u][v] && reach[v][u])
                    single = false;
            for (int64_t i = 0; i < g->m; i++) {
                int64_t a = send_of(g, i), b = recv_of(g, i);
                bool b_in = reach[b][v] && reach[v][b];
                bool a_in = reach[a][v] && reach[v][a];
                if (b_in && !a_in)
                    input = true;
            }
            if (input) {
                label[v] = -1;
            } else if (single && indeg[v] > 0) {
                label[v] = -1;
                extras[n_extras++] = v;
            } else {
                label[v] = s;
            }
        } else { /* networkfibers: weakly connected components */
            int64_t comp = v;
            /* smallest node in v's WCC by a naive closure */
            bool seen[128] = {false};
            int64_t stack[128], sp = 0;
            stack[sp++] = v;
            seen[v] = true;
            while (sp > 0) {
                int64_t x = stack[--sp];
                if (x < comp)
                    comp = x;
                for (int64_t i = 0; i < g->m; i++) {
                    int64_t y = g->src[i] == x ? g->dst[i] :
                                g->dst[i] == x ? g->src[i] : -1;
                    if (y >= 0 && !seen[y]) {
                        seen[y] = true;
                        stack[sp++] = y;
                    }
                }
            }
            if (indeg[v] == 0) {
                label[v] = 1000 + v;
            } else {
                label[v] = comp;
                if (loops[v] == indeg[v])
                    extras[n_extras++] = v;
            }
        }
    }
    return n_extras;
}

/* Fixed point: split by (old class, signature over the old classes, the
 * sums from every extra splitter) until nothing changes. */
static int64_t naive(const graph *g, int64_t *cls)
{
    int64_t n = g->n, k = 0;
    int64_t conv[128], extras[128];
    int n_extras = 0;
    if (g->convention != FIB_REFINE_PURE)
        n_extras = naive_convention(g, conv, extras);
    for (int64_t v = 0; v < n; v++) {
        int64_t a = g->has_initial ? g->initial[v] : 0;
        int64_t b = g->convention != FIB_REFINE_PURE ? conv[v] : 0;
        cls[v] = a * 100000 + b; /* labels are small in this test */
    }
    canonical(cls, n, &k);
    static term sig[128][1100], xs[128][1100];
    static int nsig[128], nxs[128];
    /* the extra splitters never change: their sums once */
    for (int64_t v = 0; v < n; v++) {
        int64_t only[128];
        nxs[v] = 0;
        for (int e = 0; e < n_extras; e++) {
            for (int64_t u = 0; u < n; u++)
                only[u] = u == extras[e] ? e : -1;
            term t[1100];
            int nt = signature(g, only, v, t);
            memcpy(&xs[v][nxs[v]], t, (size_t)nt * sizeof *t);
            nxs[v] += nt;
        }
    }
    for (;;) {
        for (int64_t v = 0; v < n; v++)
            nsig[v] = signature(g, cls, v, sig[v]);
        int64_t next[128], k2 = 0;
        for (int64_t v = 0; v < n; v++) {
            next[v] = -1;
            for (int64_t u = 0; u < v; u++) {
                if (cls[u] == cls[v] &&
                    same_terms(sig[u], nsig[u], sig[v], nsig[v]) &&
                    same_terms(xs[u], nxs[u], xs[v], nxs[v])) {
                    next[v] = next[u];
                    break;
                }
            }
            if (next[v] < 0)
                next[v] = k2++;
        }
        memcpy(cls, next, (size_t)n * sizeof *cls);
        if (k2 == k)
            return k;
        k = k2;
    }
}

/* Balanced: every class's members have equal signatures. */
static bool balanced(const graph *g, const int64_t *cls)
{
    static term sig[128][1100];
    static int nsig[128];
    for (int64_t v = 0; v < g->n; v++)
        nsig[v] = signature(g, cls, v, sig[v]);
    for (int64_t v = 0; v < g->n; v++)
        for (int64_t u = 0; u < v; u++)
            if (cls[u] == cls[v] &&
                !same_terms(sig[u], nsig[u], sig[v], nsig[v]))
                return false;
    return true;
}

/* ------------------------------------------------------------------------ */
/* Random graphs                                                            */
/* ------------------------------------------------------------------------ */

static const double DYADIC[] = {-2, -1, -0.5, 0.25, 0.5, 1, 1.5, 2, 3};

static void random_graph(graph *g)
{
    memset(g, 0, sizeof *g);
    g->n = 1 + rnd_below(24);
    g->m = rnd_below(3 * g->n + 1);
    int n_types = 1 + (int)rnd_below(3);
    g->typed = n_types > 1 || rnd_below(2);
    g->weighted = rnd_below(3) == 0;
    for (int64_t i = 0; i < g->m; i++) {
        g->src[i] = rnd_below(g->n);
        g->dst[i] = rnd_below(5) == 0 ? g->src[i] : rnd_below(g->n);
        g->type[i] = 7 * (int32_t)rnd_below(n_types) - 3;
        g->weight[i] = DYADIC[rnd_below(9)];
    }
}

/* A lift of a random base: every base node gets `copies` copies, every copy
 * of a base arc's head receives it from one random copy of its tail. */
static void lifted_graph(graph *g)
{
    memset(g, 0, sizeof *g);
    int64_t base_n = 1 + rnd_below(6), copies = 1 + rnd_below(4);
    int64_t base_m = rnd_below(2 * base_n + 2);
    g->n = base_n * copies;
    int n_types = 1 + (int)rnd_below(3);
    g->typed = n_types > 1;
    g->weighted = rnd_below(2) == 0;
    for (int64_t a = 0; a < base_m && g->m + copies <= 1024; a++) {
        int64_t s = rnd_below(base_n), d = rnd_below(base_n);
        int32_t t = (int32_t)rnd_below(n_types);
        double w = DYADIC[rnd_below(9)];
        for (int64_t c = 0; c < copies; c++) {
            g->src[g->m] = s * copies + rnd_below(copies);
            g->dst[g->m] = d * copies + c;
            g->type[g->m] = 7 * t - 3;
            g->weight[g->m] = w;
            g->m++;
        }
    }
}

static void fill_input(const graph *g, fib_refine_input *in)
{
    fib_refine_input_init(in);
    in->n_nodes = g->n;
    in->n_arcs = g->m;
    in->src = g->src;
    in->dst = g->dst;
    in->weight = g->weighted ? g->weight : NULL;
    in->type = g->typed ? g->type : NULL;
    in->initial = g->has_initial ? g->initial : NULL;
    in->reverse = g->reverse;
    in->convention = g->convention;
}

/* ------------------------------------------------------------------------ */
/* Checks                                                                   */
/* ------------------------------------------------------------------------ */

static void check_quotient(const graph *g, const fib_refine_input *in,
                           const int64_t *color, int64_t k)
{
    fib_qgraph q;
    CHECK_OK(fib_qgraph_build(in, color, k, &q));
    /* every member of a class, not only its representative, gives the
     * quotient's in-arcs (the partition is balanced) */
    for (int64_t v = 0; v < g->n; v++) {
        for (int64_t a = 0; a < q.n_arcs; a++) {
            int64_t recv_cls = g->reverse ? q.src[a] : q.dst[a];
            int64_t send_cls = g->reverse ? q.dst[a] : q.src[a];
            if (recv_cls != color[v])
                continue;
            double sum = 0;
            int64_t mult = 0;
            for (int64_t i = 0; i < g->m; i++) {
                int32_t t = g->typed ? g->type[i] : 0;
                if (recv_of(g, i) == v && color[send_of(g, i)] == send_cls &&
                    t == q.type[a]) {
                    sum += g->weighted ? g->weight[i] : 1.0;
                    mult++;
                }
            }
            CHECK(sum == q.weight[a], "quotient arc %lld: node %lld sums %g "
                  "not %g", (long long)a, (long long)v, sum, q.weight[a]);
            (void)mult;
        }
    }
    for (int64_t a = 1; a < q.n_arcs; a++)
        CHECK(q.src[a - 1] < q.src[a] ||
                  (q.src[a - 1] == q.src[a] && (q.dst[a - 1] < q.dst[a] ||
                   (q.dst[a - 1] == q.dst[a] && q.type[a - 1] < q.type[a]))),
              "quotient arcs not sorted at %lld", (long long)a);
    fib_qgraph_clear(&q);
}

/* Merging any two classes that the initial partition allows to merge breaks
 * balance. */
static void check_coarsest(const graph *g, const int64_t *color, int64_t k)
{
    int64_t merged[128];
    for (int64_t a = 0; a < k; a++) {
        for (int64_t b = a + 1; b < k; b++) {
            bool allowed = true;
            int64_t ia = -1, ib = -1;
            for (int64_t v = 0; v < g->n; v++) {
                if (color[v] == a && ia < 0)
                    ia = v;
                if (color[v] == b && ib < 0)
                    ib = v;
            }
            if (g->has_initial && g->initial[ia] != g->initial[ib])
                allowed = false;
            if (!allowed)
                continue;
            for (int64_t v = 0; v < g->n; v++)
                merged[v] = color[v] == b ? a : color[v];
            CHECK(!balanced(g, merged), "merging classes %lld and %lld stays "
                  "balanced (n=%lld m=%lld)", (long long)a, (long long)b,
                  (long long)g->n, (long long)g->m);
        }
    }
}

static void run_one(graph *g, bool deep)
{
    fib_refine_input in;
    fill_input(g, &in);
    int64_t color[128], want[128], k = -1;
    CHECK_OK(fib_refine(&in, color, &k));
    int64_t kw = naive(g, want);
    bool same = k == kw && memcmp(color, want, (size_t)g->n * sizeof *color) == 0;
    CHECK(same, "differs from naive: %lld vs %lld classes (n=%lld m=%lld "
          "weighted=%d typed=%d reverse=%d conv=%d initial=%d)", (long long)k,
          (long long)kw, (long long)g->n, (long long)g->m, g->weighted,
          g->typed, g->reverse, (int)g->convention, g->has_initial);
    CHECK(balanced(g, color), "not balanced");
    if (g->convention == FIB_REFINE_PURE) {
        check_quotient(g, &in, color, k);
        if (deep)
            check_coarsest(g, color, k);
    }
    /* tolerant mode with eps = 0 processes every piece: same partition for
     * exact (dyadic) sums */
    if (g->convention == FIB_REFINE_PURE && !g->has_initial) {
        int64_t tc[128], tk = -1;
        in.tolerance = FIB_TOL_ABS;
        in.eps = 0;
        CHECK_OK(fib_refine(&in, tc, &tk));
        CHECK(tk == k && memcmp(tc, color, (size_t)g->n * sizeof *tc) == 0,
              "eps = 0 differs: %lld vs %lld classes", (long long)tk,
              (long long)k);
    }
}

/* Tolerance: within every class, every (class, type) input sum spans at
 * most eps. Real weights; the spread is recomputed here. */
static void check_tolerance(void)
{
    graph g;
    static const double EPS[] = {0.01, 0.1, 0.3, 1.0};
    for (int rep = 0; rep < 600; rep++) {
        random_graph(&g);
        if (rep % 2)
            lifted_graph(&g);
        g.weighted = true;
        g.reverse = rnd_below(2);
        for (int64_t i = 0; i < g.m; i++)
            g.weight[i] = 2 * rnd_unit() - 1;
        double eps = EPS[rep % 4];
        fib_refine_input in;
        fill_input(&g, &in);
        in.tolerance = FIB_TOL_ABS;
        in.eps = eps;
        int64_t color[128], k;
        CHECK_OK(fib_refine(&in, color, &k));
        /* sums[v][class][type] */
        static double sums[128][128][3];
        memset(sums, 0, sizeof sums);
        for (int64_t i = 0; i < g.m; i++) {
            int t = g.typed ? (g.type[i] + 3) / 7 : 0;
            sums[recv_of(&g, i)][color[send_of(&g, i)]][t] += g.weight[i];
        }
        double worst = 0;
        for (int64_t c = 0; c < k; c++)
            for (int64_t d = 0; d < k; d++)
                for (int t = 0; t < 3; t++) {
                    double lo = INFINITY, hi = -INFINITY;
                    for (int64_t v = 0; v < g.n; v++) {
                        if (color[v] != c)
                            continue;
                        lo = fmin(lo, sums[v][d][t]);
                        hi = fmax(hi, sums[v][d][t]);
                    }
                    if (hi - lo > worst)
                        worst = hi - lo;
                }
        CHECK(worst <= eps + 1e-12, "tolerance %g violated: spread %g", eps,
              worst);
        /* it is never finer than the exact colouring */
        int64_t exact[128], ke;
        in.tolerance = FIB_TOL_EXACT;
        CHECK_OK(fib_refine(&in, exact, &ke));
        CHECK(k <= ke, "eps %g gives %lld classes, exact %lld", eps,
              (long long)k, (long long)ke);
    }
}

/* Rounding: a lift whose copies receive the base weight re-split into
 * several real parts must keep the copies of one base node together. */
static void check_rounding(void)
{
    graph g;
    for (int rep = 0; rep < 500; rep++) {
        memset(&g, 0, sizeof g);
        int64_t base_n = 2 + rnd_below(5), copies = 2 + rnd_below(3);
        g.n = base_n * copies;
        g.weighted = true;
        for (int64_t a = 0; a < 2 * base_n; a++) {
            int64_t s = rnd_below(base_n), d = rnd_below(base_n);
            double w = 10 * rnd_unit() - 5;
            for (int64_t c = 0; c < copies; c++) {
                /* w = p1 + p2 + p3, each part from a random copy of s */
                double p1 = rnd_unit() * w, p2 = rnd_unit() * (w - p1);
                double parts[3] = {p1, p2, w - p1 - p2};
                for (int j = 0; j < 3; j++) {
                    g.src[g.m] = s * copies + rnd_below(copies);
                    g.dst[g.m] = d * copies + c;
                    g.weight[g.m] = parts[j];
                    g.m++;
                }
            }
        }
        fib_refine_input in;
        fill_input(&g, &in);
        int64_t color[128], k;
        CHECK_OK(fib_refine(&in, color, &k));
        for (int64_t v = 0; v < g.n; v++)
            CHECK(color[v] == color[(v / copies) * copies],
                  "rounding: copy %lld split from its base node", (long long)v);
    }
}

static void check_blocks(void)
{
    /* test_SELF.csv, 0-based: 0->0, 0->2, 0->3, 1->1, 1->4, 1->5 */
    static const int64_t src[] = {0, 0, 0, 1, 1, 1};
    static const int64_t dst[] = {0, 2, 3, 1, 4, 5};
    fib_refine_input in;
    fib_refine_input_init(&in);
    in.n_nodes = 6;
    in.n_arcs = 6;
    in.src = src;
    in.dst = dst;
    int64_t color[6], k;
    fib_fiber_block *b = NULL;
    int64_t nb = 0;
    CHECK_OK(fib_refine(&in, color, &k));
    CHECK_OK(fib_fiber_blocks(&in, color, k, &b, &nb));
    CHECK(nb == 1 && b && b[0].size == 6 && b[0].n_on_cycle == 2,
          "pure blocks of test_SELF");
    fib_free(b);
    in.convention = FIB_REFINE_PUBLISHED;
    CHECK_OK(fib_refine(&in, color, &k));
    CHECK_OK(fib_fiber_blocks(&in, color, k, &b, &nb));
    CHECK(nb == 2 && b && b[0].size == 3 && b[0].n_on_cycle == 1 &&
              b[1].size == 3 && b[1].n_on_cycle == 1,
          "published blocks of test_SELF");
    fib_free(b);
    /* an acyclic fiber: 0 -> 1, 0 -> 2 */
    static const int64_t s2[] = {0, 0}, d2[] = {1, 2};
    in.n_nodes = 3;
    in.n_arcs = 2;
    in.src = s2;
    in.dst = d2;
    in.convention = FIB_REFINE_PURE;
    CHECK_OK(fib_refine(&in, color, &k));
    CHECK_OK(fib_fiber_blocks(&in, color, k, &b, &nb));
    CHECK(k == 2 && nb == 1 && b && b[0].size == 2 && b[0].n_on_cycle == 0,
          "acyclic block");
    fib_free(b);
}

static void check_errors(void)
{
    static const int64_t src[] = {0, 5}, dst[] = {1, 0};
    static const double bad[] = {1, NAN};
    fib_refine_input in;
    fib_refine_input_init(&in);
    int64_t color[8], k;
    in.n_nodes = 3;
    in.n_arcs = 2;
    in.src = src;
    in.dst = dst;
    CHECK(fib_refine(&in, color, &k) == FIB_E_RANGE, "range");
    in.n_nodes = 6;
    in.weight = bad;
    CHECK(fib_refine(&in, color, &k) == FIB_E_NONFINITE, "nonfinite");
    in.weight = NULL;
    in.tolerance = FIB_TOL_ABS;
    in.eps = -1;
    CHECK(fib_refine(&in, color, &k) == FIB_E_INVALID, "eps");
    in.tolerance = 7;
    CHECK(fib_refine(&in, color, &k) == FIB_E_INVALID, "tolerance");
    in.tolerance = FIB_TOL_EXACT;
    in.convention = 9;
    CHECK(fib_refine(&in, color, &k) == FIB_E_INVALID, "convention");
    in.convention = FIB_REFINE_PURE;
    in.src = NULL;
    CHECK(fib_refine(&in, color, &k) == FIB_E_NULL, "null arcs");
    CHECK(fib_refine(NULL, color, &k) == FIB_E_NULL, "null input");
    in.n_arcs = 0;
    in.n_nodes = 0;
    CHECK_OK(fib_refine(&in, color, &k));
    CHECK(k == 0, "empty graph");
    in.n_nodes = 4; /* no arcs: one class */
    CHECK_OK(fib_refine(&in, color, &k));
    CHECK(k == 1, "arc-less graph");
}

static int32_t cancel_now(void *user, int64_t done, int64_t total)
{
    (void)user;
    (void)done;
    (void)total;
    return 1;
}

static void check_cancel(void)
{
    /* a long path: many splitters, so the callback is reached */
    enum { N = 20000 };
    static int64_t src[N], dst[N];
    for (int64_t i = 0; i + 1 < N; i++) {
        src[i] = i;
        dst[i] = i + 1;
    }
    fib_refine_input in;
    fib_refine_input_init(&in);
    in.n_nodes = N;
    in.n_arcs = N - 1;
    in.src = src;
    in.dst = dst;
    in.progress = cancel_now;
    static int64_t color[N];
    int64_t k;
    CHECK(fib_refine(&in, color, &k) == FIB_E_CANCELLED, "cancel");
    in.progress = NULL;
    CHECK_OK(fib_refine(&in, color, &k));
    CHECK(k == N, "a path is discrete: %lld", (long long)k);
}

int main(int argc, char **argv)
{
    int n_graphs = argc > 1 ? atoi(argv[1]) : 4000;
    graph g;
    int deep = 0;
    for (int rep = 0; rep < n_graphs; rep++) {
        if (rep % 2)
            lifted_graph(&g);
        else
            random_graph(&g);
        g.reverse = rnd_below(2);
        int mode = (int)rnd_below(6);
        if (mode == 4)
            g.convention = FIB_REFINE_PUBLISHED;
        else if (mode == 5)
            g.convention = FIB_REFINE_NETWORKFIBERS;
        if (rnd_below(4) == 0) {
            g.has_initial = true;
            for (int64_t v = 0; v < g.n; v++)
                g.initial[v] = 1000 * rnd_below(3) - 7;
        }
        bool d = g.n <= 16 && rep % 4 < 2;
        deep += d;
        run_one(&g, d);
    }
    check_tolerance();
    check_rounding();
    check_blocks();
    check_errors();
    check_cancel();
    printf("%d graphs (%d with the coarsest check), 600 tolerance, 500 "
           "rounding: %d failure(s)\n", n_graphs, deep, check_failures);
    return check_failures ? 1 : 0;
}
