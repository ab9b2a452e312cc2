/* Benchmark of the general-graph colouring: random and power-law digraphs up
 * to 10^6 nodes and 10^7 arcs. For each graph: the time to parse it from CSV
 * text in memory (node names interned), and the time to colour it (building
 * the arc index included), arcs per second, and the colouring time divided
 * by m log2 n and by n log2 n (flat columns = n log n growth).
 *
 * Usage: bench_graph [MAX_NODES [ARCS_PER_NODE]]   (defaults 1000000, 10)
 *        bench_graph --quick                       (up to 10^5 nodes) */
#include "graphs/edgelist.h"
#include "graphs/refine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t state = 42;

static uint64_t rnd(void)
{
    uint64_t z = (state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static double unit(void)
{
    return (double)(rnd() >> 11) * 0x1p-53;
}

/* Power law: node index u^3 * n concentrates arcs on low indices; the
 * degree of node i falls like i^(-2/3), a tail exponent of 2.5. */
static int64_t pick(int64_t n, int power_law)
{
    if (!power_law)
        return (int64_t)(rnd() % (uint64_t)n);
    double u = unit();
    int64_t i = (int64_t)((double)n * u * u * u);
    return i < n ? i : n - 1;
}

static char *to_csv(int64_t m, const int64_t *src, const int64_t *dst,
                    size_t *len)
{
    size_t cap = (size_t)m * 18 + 64;
    char *text = malloc(cap);
    if (!text)
        return NULL;
    size_t at = (size_t)snprintf(text, cap, "source,target\n");
    for (int64_t i = 0; i < m; i++)
        at += (size_t)snprintf(text + at, cap - at, "%lld,%lld\n",
                               (long long)src[i], (long long)dst[i]);
    *len = at;
    return text;
}

static void run(int64_t n, int64_t m, int power_law, int typed, int weighted,
                int read)
{
    int64_t *src = malloc((size_t)m * sizeof *src);
    int64_t *dst = malloc((size_t)m * sizeof *dst);
    int32_t *type = typed ? malloc((size_t)m * sizeof *type) : NULL;
    double *weight = weighted ? malloc((size_t)m * sizeof *weight) : NULL;
    int64_t *color = malloc((size_t)n * sizeof *color);
    if (!src || !dst || !color || (typed && !type) || (weighted && !weight)) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < m; i++) {
        src[i] = pick(n, power_law);
        dst[i] = pick(n, power_law);
        if (type)
            type[i] = (int32_t)(rnd() % 3);
        if (weight)
            weight[i] = (double)(rnd() % 4) * 0.5 + 0.5;
    }
    double t_read = -1;
    if (read) {
        size_t len = 0;
        char *text = to_csv(m, src, dst, &len);
        if (text) {
            fib_edgelist e;
            double t0 = now();
            int32_t st = fib_edgelist_parse(text, len, FIB_EDGELIST_AUTO,
                                            "bench", &e);
            t_read = now() - t0;
            if (st != FIB_OK || e.n_arcs != m)
                fprintf(stderr, "parse failed: %s\n", fib_last_error());
            fib_edgelist_clear(&e);
            free(text);
        }
    }
    fib_refine_input in;
    fib_refine_input_init(&in);
    in.n_nodes = n;
    in.n_arcs = m;
    in.src = src;
    in.dst = dst;
    in.type = type;
    in.weight = weight;
    int64_t k = 0;
    double t0 = now();
    int32_t st = fib_refine(&in, color, &k);
    double t = now() - t0;
    if (st != FIB_OK) {
        fprintf(stderr, "refine failed: %s\n", fib_last_error());
        exit(1);
    }
    double lg = log2((double)n);
    printf("%-10s %-8s %9lld %10lld %9lld %8.3f %8.3f %10.2e %9.2f %9.2f\n",
           power_law ? "powerlaw" : "random",
           typed ? (weighted ? "typ+wt" : "3 types") :
                   (weighted ? "weights" : "plain"),
           (long long)n, (long long)m, (long long)k, t_read, t,
           (double)m / t, 1e9 * t / ((double)m * lg),
           1e9 * t / ((double)n * lg));
    fflush(stdout);
    free(src);
    free(dst);
    free(type);
    free(weight);
    free(color);
}

int main(int argc, char **argv)
{
    int64_t max_n = 1000000, per = 10;
    if (argc > 1 && strcmp(argv[1], "--quick") == 0)
        max_n = 100000;
    else if (argc > 1)
        max_n = atoll(argv[1]);
    if (argc > 2)
        per = atoll(argv[2]);
    printf("%-10s %-8s %9s %10s %9s %8s %8s %10s %9s %9s\n", "graph", "arcs",
           "n", "m", "classes", "read_s", "color_s", "arcs/s",
           "ns/mlogn", "ns/nlogn");
    for (int pl = 0; pl < 2; pl++)
        for (int64_t n = 1000; n <= max_n; n *= 10)
            run(n, per * n, pl, 0, 0, 1);
    run(max_n, per * max_n, 0, 1, 0, 0);
    run(max_n, per * max_n, 0, 0, 1, 0);
    run(max_n, per * max_n, 1, 1, 1, 0);
    return 0;
}
