/* Concurrency: several threads at once colour their own graphs and one
 * shared read-only graph (the header promises that const handles may be
 * used concurrently), compress the shared graph, and run it forward; every
 * result must equal the one computed alone beforehand. Built for
 * ThreadSanitizer by tests/ci_checks.sh. */
#include "networks.h"
#include "testing.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

int test_failures;

#define N_THREADS 4
#define ROUNDS 6

typedef struct shared {
    const fib_graph *mlp;       /* read by every thread */
    const fib_coloring *mlp_fibers;
    const fib_coloring *mlp_covers;
    const fib_graph *ring;
    const fib_coloring *ring_fibers;
    const planted_mlp *planted;
    const double *outputs;      /* forward of the shared MLP, batch 1 */
    int64_t n_in, n_out;
} shared;

typedef struct worker {
    const shared *s;
    int index;
    int failures;
} worker;

static int color_matches(const fib_graph *g, int32_t symmetry,
                         const fib_coloring *reference)
{
    fib_color_options o;
    fib_color_options_init(&o, sizeof o);
    o.symmetry = symmetry;
    fib_coloring *c = NULL;
    int ok = fib_color(g, &o, &c) == FIB_OK && same_colorings(g, reference, c);
    fib_coloring_free(c);
    return ok;
}

static void *work(void *arg)
{
    worker *w = arg;
    const shared *s = w->s;
    double *x = calloc((size_t)s->n_in, sizeof *x);
    double *y = calloc((size_t)s->n_out, sizeof *y);
    for (int r = 0; r < ROUNDS; r++) {
        /* the shared graph, in turn with this thread's own copy */
        int ok = color_matches(s->mlp, FIB_SYM_FIBERS, s->mlp_fibers) &&
                 color_matches(s->mlp, FIB_SYM_COVERS, s->mlp_covers);
        fib_graph *own = NULL;
        ok = ok && mlp_graph(s->planted, FIB_COPY, &own) == FIB_OK &&
             color_matches(own, FIB_SYM_COVERS, s->mlp_covers);
        fib_graph_free(own);
        if ((r + w->index) % 2 == 0)
            ok = ok && color_matches(s->ring, FIB_SYM_FIBERS, s->ring_fibers);
        fib_base *base = NULL;
        ok = ok && fib_compress(s->mlp, s->mlp_fibers, &base) == FIB_OK;
        fib_base_free(base);
        for (int64_t i = 0; x && i < s->n_in; i++)
            x[i] = (double)(i % 5) - 2;
        ok = ok && x && y &&
             fib_graph_forward(s->mlp, 1, FIB_DTYPE_F64, x, y) == FIB_OK;
        for (int64_t i = 0; ok && i < s->n_out; i++)
            ok = y[i] == s->outputs[i];
        if (!ok) {
            fprintf(stderr, "thread %d round %d: %s\n", w->index, r,
                    fib_last_error());
            w->failures++;
        }
    }
    free(x);
    free(y);
    return NULL;
}

static void threads_agree_with_one(void)
{
    planted_mlp p;
    mlp_build(&p, 3);
    shared s = {.planted = &p};
    fib_graph *mlp = NULL, *ring = NULL;
    fib_coloring *fibers = NULL, *covers = NULL, *ring_fibers = NULL;
    fib_color_options o;
    fib_color_options_init(&o, sizeof o);
    o.symmetry = FIB_SYM_COVERS;
    CHECK_OK(mlp_graph(&p, 0, &mlp));
    CHECK_OK(ring_build(5000, &ring));
    CHECK_OK(fib_color(mlp, NULL, &fibers));
    CHECK_OK(fib_color(mlp, &o, &covers));
    CHECK_OK(fib_color(ring, NULL, &ring_fibers));
    CHECK_OK(fib_graph_io_width(mlp, &s.n_in, &s.n_out));
    double *x = calloc((size_t)s.n_in, sizeof *x);
    double *y = calloc((size_t)s.n_out, sizeof *y);
    for (int64_t i = 0; i < s.n_in; i++)
        x[i] = (double)(i % 5) - 2;
    CHECK_OK(fib_graph_forward(mlp, 1, FIB_DTYPE_F64, x, y));
    s.mlp = mlp, s.mlp_fibers = fibers, s.mlp_covers = covers;
    s.ring = ring, s.ring_fibers = ring_fibers, s.outputs = y;

    pthread_t tid[N_THREADS];
    worker workers[N_THREADS];
    for (int t = 0; t < N_THREADS; t++) {
        workers[t] = (worker){.s = &s, .index = t};
        CHECK(pthread_create(&tid[t], NULL, work, &workers[t]) == 0);
    }
    for (int t = 0; t < N_THREADS; t++) {
        pthread_join(tid[t], NULL);
        CHECK(workers[t].failures == 0);
    }
    free(x);
    free(y);
    fib_coloring_free(fibers);
    fib_coloring_free(covers);
    fib_coloring_free(ring_fibers);
    fib_graph_free(mlp);
    fib_graph_free(ring);
    planted_free(&p);
}

int main(void)
{
    RUN(threads_agree_with_one);
    return test_failures != 0;
}
