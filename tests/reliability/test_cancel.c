/* Cancellation: fib_color (fib_color_options.progress) and
 * fib_compress_to_budget (fib_budget_options.progress) take a progress
 * callback. For every step at which the callback can
 * stop it — dense MLP, CNN, each symmetry, and the partition refinement of
 * a large node graph — cancelling returns FIB_E_CANCELLED with a message,
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

/* 1 if two bases have the same projection of every group. */
static int same_bases(const fib_graph *g, const fib_base *a, const fib_base *b)
{
    int32_t n_groups = 0;
    fib_graph_num_groups(g, &n_groups);
    int same = 1;
    for (int32_t i = 0; i < n_groups && same; i++) {
        int64_t n = 0;
        fib_graph_group_info(g, i, NULL, &n, NULL, NULL, NULL, NULL, NULL);
        int64_t pa[256], pb[256];
        same = n <= 256 && fib_base_projection(a, i, pa, n) == FIB_OK &&
               fib_base_projection(b, i, pb, n) == FIB_OK &&
               memcmp(pa, pb, (size_t)n * sizeof *pa) == 0;
    }
    return same;
}

/* fib_compress_to_budget reports its steps (fib_budget_options.progress)
 * and stops at each of them on request, with *base_out untouched; a later
 * call gives the base of an uncancelled run. */
static void budget(void)
{
    planted_mlp p;
    mlp_build(&p, 5);
    fib_graph *g = NULL;
    CHECK_OK(mlp_graph(&p, 0, &g));
    fib_budget_options o;
    fib_budget_options_init(&o, sizeof o);
    counter full = {.stop_at = -1, .monotone = 1};
    o.progress = count_and_stop;
    o.progress_user = &full;
    fib_base *reference = NULL;
    CHECK_OK(fib_compress_to_budget(g, 0.5, &o, &reference));
    CHECK(full.calls >= 3 && !full.bad_range && full.monotone);
    CHECK(full.last_done == full.total); /* the last step reports the end */
    for (int64_t stop = 1; stop <= full.calls; stop++) {
        counter c = {.stop_at = stop, .monotone = 1};
        o.progress_user = &c;
        fib_base *out = (fib_base *)&c; /* must stay untouched */
        CHECK(fib_compress_to_budget(g, 0.5, &o, &out) == FIB_E_CANCELLED);
        CHECK(out == (fib_base *)&c);
        CHECK(c.calls == stop);
        CHECK(strstr(fib_last_error(), "cancel") != NULL);
    }
    full = (counter){.stop_at = -1, .monotone = 1};
    o.progress_user = &full;
    fib_base *again = NULL;
    CHECK_OK(fib_compress_to_budget(g, 0.5, &o, &again));
    CHECK(reference && again && same_bases(g, reference, again));
    printf("     budget: cancelled at each of %lld progress calls\n", (long long)full.calls);
    fib_base_free(again);
    fib_base_free(reference);
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

int main(void)
{
    RUN(dense_mlp);
    RUN(budget);
    RUN(cnn);
    RUN(node_graph);
    return test_failures != 0;
}
