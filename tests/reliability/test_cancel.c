/* Cancellation: fib_color and fib_compress_to_budget take a progress
 * callback (fib_color_options.progress, fib_budget_options.progress). For
 * every step at which the callback can stop them — dense MLP, CNN, each
 * symmetry, the partition refinement of a large node graph, and a budget's
 * clusterings, exchange, colourings, correction and base — cancelling returns FIB_E_CANCELLED with a message,
 * leaves *out untouched, leaks nothing (run under ASan or valgrind), and a
 * later call on the same graph gives the colouring of an uncancelled run. */
#include "networks.h"
#include "testing.h"

#include <stdio.h>
#include <string.h>

int test_failures;

typedef struct counter {
    int64_t calls, stop_at, last_done, total;
    int monotone, bad_range;
} counter;

static int32_t count_and_stop(void *user, int64_t done, int64_t total)
{
    counter *c = user;
    if (done < c->last_done)
        c->monotone = 0;
    if (done < 0 || done > total)
        c->bad_range = 1;
    c->last_done = done;
    c->total = total;
    return ++c->calls == c->stop_at;
}

/* monotone: whether `done` must never decrease. The node-graph refinement
 * reports (cells so far, nodes) between fib_color's own (groups done,
 * steps) reports, so its `done` does not; see the report of issue 9. */
static void cancel_every_step(const fib_graph *g, int32_t symmetry,
                              int monotone, const char *label)
{
    fib_color_options o;
    fib_color_options_init(&o, sizeof o);
    o.symmetry = symmetry;
    counter full = {.stop_at = -1, .monotone = 1};
    o.progress = count_and_stop;
    o.progress_user = &full;
    fib_coloring *reference = NULL;
    CHECK_OK(fib_color(g, &o, &reference));
    CHECK(full.calls >= 1 && !full.bad_range);
    CHECK(full.monotone || !monotone);
    for (int64_t stop = 1; stop <= full.calls; stop++) {
        counter c = {.stop_at = stop, .monotone = 1};
        o.progress_user = &c;
        fib_coloring *out = (fib_coloring *)&c; /* must stay untouched */
        int32_t st = fib_color(g, &o, &out);
        CHECK(st == FIB_E_CANCELLED);
        CHECK(out == (fib_coloring *)&c);
        CHECK(c.calls == stop); /* no call after the one that cancelled */
        CHECK(strstr(fib_last_error(), "cancel") != NULL);
        /* the same graph, again, to the end */
        c = (counter){.stop_at = -1, .monotone = 1};
        out = NULL;
        CHECK_OK(fib_color(g, &o, &out));
        CHECK(out && same_colorings(g, reference, out));
        fib_coloring_free(out);
    }
    printf("     %s: cancelled at each of %lld progress calls\n", label,
           (long long)full.calls);
    fib_coloring_free(reference);
}

static void dense_mlp(void)
{
    planted_mlp p;
    mlp_build(&p, 5);
    fib_graph *g = NULL;
    CHECK_OK(mlp_graph(&p, 0, &g));
    cancel_every_step(g, FIB_SYM_FIBERS, 1, "MLP fibers");
    cancel_every_step(g, FIB_SYM_OPFIBERS, 1, "MLP opfibers");
    cancel_every_step(g, FIB_SYM_COVERS, 1, "MLP covers");
    fib_graph_free(g);
    planted_free(&p);
}

static void cnn(void)
{
    fib_graph *g = NULL;
    CHECK_OK(cnn_build(&g));
    cancel_every_step(g, FIB_SYM_FIBERS, 1, "CNN fibers");
    cancel_every_step(g, FIB_SYM_COVERS, 1, "CNN covers");
    fib_graph_free(g);
}

static void node_graph(void)
{
    /* large enough for several progress reports of the refinement */
    fib_graph *g = NULL;
    CHECK_OK(ring_build(30000, &g));
    cancel_every_step(g, FIB_SYM_FIBERS, 0, "node graph fibers");
    cancel_every_step(g, FIB_SYM_COVERS, 0, "node graph covers");
    fib_graph_free(g);
}

/* The same for a budget (with its correction): cancelled at many calls
 * (each clustering, the exchange, each colouring and refinement, the
 * correction's products and solves), nothing made; `done` never decreases and reaches `total`; a later call
 * gives the base of an uncancelled run. */
static void budget(void)
{
    planted_mlp p;
    mlp_build(&p, 5);
    fib_graph *g = NULL;
    CHECK_OK(mlp_graph(&p, 0, &g));
    fib_budget_options o;
    CHECK_OK(fib_budget_options_init(&o, sizeof o));
    CHECK(o.progress == NULL && o.progress_user == NULL);
    o.synthetic_scale = 1.0;
    counter full = {.stop_at = -1, .monotone = 1};
    o.progress = count_and_stop;
    o.progress_user = &full;
    fib_base *reference = NULL;
    CHECK_OK(fib_compress_to_budget(g, 0.5, &o, &reference));
    CHECK(full.calls >= 4 && full.monotone && !full.bad_range);
    CHECK(full.last_done == full.total);
    int64_t want = 0;
    if (reference)
        CHECK_OK(fib_graph_num_parameters(fib_base_graph(reference), &want));
    /* every call up to 64, then about 100 spread over the rest (the
     * correction checks once per 8 samples: thousands of calls) */
    int64_t stride = full.calls > 64 ? (full.calls - 64) / 100 + 1 : 1;
    for (int64_t stop = 1; stop <= full.calls; stop += stop < 64 ? 1 : stride) {
        counter c = {.stop_at = stop, .monotone = 1};
        o.progress_user = &c;
        fib_base *out = (fib_base *)&c; /* must stay untouched */
        int32_t st = fib_compress_to_budget(g, 0.5, &o, &out);
        CHECK(st == FIB_E_CANCELLED);
        CHECK(out == (fib_base *)&c);
        CHECK(c.calls == stop); /* no call after the one that cancelled */
        CHECK(strstr(fib_last_error(), "cancel") != NULL);
    }
    counter again = {.stop_at = -1, .monotone = 1};
    o.progress_user = &again;
    fib_base *out = NULL;
    CHECK_OK(fib_compress_to_budget(g, 0.5, &o, &out));
    int64_t got = -1;
    if (out)
        CHECK_OK(fib_graph_num_parameters(fib_base_graph(out), &got));
    CHECK(got == want && again.calls == full.calls);
    printf("     budget: cancelled at 64 + 1 in %lld of %lld progress calls\n",
           (long long)stride, (long long)full.calls);
    fib_base_free(out);
    fib_base_free(reference);
    fib_graph_free(g);
    planted_free(&p);
}

/* A budget on layers wider than one panel of the pairwise cosines (64
 * units) with two threads: a cancel asked for inside a clustering (before
 * a panel, a merge, a unit of a Lloyd round) or between steps returns
 * FIB_E_CANCELLED, makes nothing and calls back no more; run under ASan
 * or valgrind, nothing leaks from the threads' scratch. */
static void budget_wide_two_threads(void)
{
    enum { n_in = 100, h1 = 150, h2 = 130, n_out = 4 };
    static double w1[h1 * n_in], b1[h1], w2[h2 * h1], b2[h2], w3[n_out * h2];
    uint64_t state = 7;
    double *all[] = {w1, b1, w2, b2, w3};
    int64_t sizes[] = {h1 * n_in, h1, h2 * h1, h2, n_out * h2};
    for (int a = 0; a < 5; a++)
        for (int64_t i = 0; i < sizes[a]; i++) {
            state = state * 6364136223846793005ULL + 1442695040888963407ULL;
            all[a][i] = (double)(state >> 11) / 9007199254740992.0 - 0.5;
        }
    fib_graph *g = NULL;
    int32_t in, g1, g2, g3;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, n_in, &in));
    CHECK_OK(fib_graph_add_dense(g, in, h1, FIB_DTYPE_F64, w1, n_in, b1, 0, &g1));
    CHECK_OK(fib_graph_set_activation(g, g1, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_dense(g, g1, h2, FIB_DTYPE_F64, w2, h1, b2, 0, &g2));
    CHECK_OK(fib_graph_set_activation(g, g2, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_dense(g, g2, n_out, FIB_DTYPE_F64, w3, h2, NULL, 0, &g3));
    fib_budget_options o;
    CHECK_OK(fib_budget_options_init(&o, sizeof o));
    o.n_threads = 2;
    counter full = {.stop_at = -1, .monotone = 1};
    o.progress = count_and_stop;
    o.progress_user = &full;
    fib_base *reference = NULL;
    CHECK_OK(fib_compress_to_budget(g, 0.3, &o, &reference));
    CHECK(full.calls > 300 && full.monotone && !full.bad_range);
    int64_t stride = full.calls > 64 ? (full.calls - 64) / 60 + 1 : 1;
    for (int64_t stop = 1; stop <= full.calls; stop += stop < 64 ? 1 : stride) {
        counter c = {.stop_at = stop, .monotone = 1};
        o.progress_user = &c;
        fib_base *out = (fib_base *)&c; /* must stay untouched */
        CHECK(fib_compress_to_budget(g, 0.3, &o, &out) == FIB_E_CANCELLED);
        CHECK(out == (fib_base *)&c);
        CHECK(c.calls == stop); /* no call after the one that cancelled */
        CHECK(strstr(fib_last_error(), "cancel") != NULL);
    }
    printf("     wide budget, 2 threads: cancelled at 64 + 1 in %lld of %lld progress calls\n",
           (long long)stride, (long long)full.calls);
    fib_base_free(reference);
    fib_graph_free(g);
}

int main(void)
{
    RUN(budget);
    RUN(budget_wide_two_threads);
    RUN(dense_mlp);
    RUN(cnn);
    RUN(node_graph);
    return test_failures != 0;
}
