#include "networks.h"

#include <stdlib.h>

void mlp_build(planted_mlp *p, uint64_t seed)
{
    const int64_t base[] = {5, 4, 3, 2};
    planted_build(p, seed, 3, base, 3, FIB_DTYPE_F32, 1, FIB_ACT_RELU, 0);
}

int32_t cnn_build(fib_graph **out)
{
    float kernel[4 * 2 * 3 * 3], bias[4] = {0.5f, 0.5f, -1, -1};
    for (int o = 0; o < 4; o++)
        for (int i = 0; i < 18; i++)
            kernel[o * 18 + i] = (float)((o / 2 + 1) * ((i % 5) - 2));
    /* flatten gives 4 x 3 x 3 = 36 units */
    double dense[3 * 36];
    for (int i = 0; i < 3 * 36; i++)
        dense[i] = (double)((i % 4) - 1);
    fib_graph *g = NULL;
    int32_t in, conv, pool, flat, fc;
    int32_t st = fib_graph_create(&g);
    if (st == FIB_OK)
        st = fib_graph_add_input_positions(g, 2, 8, 8, &in);
    if (st == FIB_OK)
        st = fib_graph_add_conv(g, in, 4, 3, 3, 1, 1, 0, 0, 1, FIB_DTYPE_F32,
                                kernel, bias, FIB_COPY, &conv);
    if (st == FIB_OK)
        st = fib_graph_set_activation(g, conv, FIB_ACT_RELU, 0);
    if (st == FIB_OK)
        st = fib_graph_add_pool(g, conv, FIB_POOL_MAX, 2, 2, 2, 2, 0, 0, &pool);
    if (st == FIB_OK)
        st = fib_graph_add_flatten(g, pool, &flat);
    if (st == FIB_OK)
        st = fib_graph_add_dense(g, flat, 3, FIB_DTYPE_F64, dense, 36, NULL,
                                 FIB_COPY, &fc);
    if (st != FIB_OK) {
        fib_graph_free(g);
        g = NULL;
    }
    *out = g;
    return st;
}

int32_t ring_build(int64_t n, fib_graph **out)
{
    int64_t m = n + (n + 6) / 7;
    int64_t *src = malloc((size_t)m * sizeof *src);
    int64_t *dst = malloc((size_t)m * sizeof *dst);
    double *w = malloc((size_t)m * sizeof *w);
    fib_graph *g = NULL;
    int32_t group, st = src && dst && w ? fib_graph_create(&g) : FIB_E_NOMEM;
    for (int64_t i = 0, k = 0; st == FIB_OK && i < n; i++) {
        src[k] = i, dst[k] = (i + 1) % n, w[k++] = 1;
        if (i % 7 == 0 && k < m)
            src[k] = i, dst[k] = (i * 3 + 1) % n, w[k++] = 0.5 + (double)(i % 3);
    }
    if (st == FIB_OK)
        st = fib_graph_add_nodes(g, n, &group);
    if (st == FIB_OK)
        st = fib_graph_add_edges(g, group, group, m, src, dst, w, NULL,
                                 FIB_COPY);
    free(src);
    free(dst);
    free(w);
    if (st != FIB_OK) {
        fib_graph_free(g);
        g = NULL;
    }
    *out = g;
    return st;
}

int same_colorings(const fib_graph *g, const fib_coloring *a,
                   const fib_coloring *b)
{
    int32_t n_groups = 0;
    fib_graph_num_groups(g, &n_groups);
    for (int32_t i = 0; i < n_groups; i++) {
        int64_t n = 0;
        fib_graph_group_info(g, i, NULL, &n, NULL, NULL, NULL, NULL, NULL);
        int64_t *ca = malloc((size_t)n * sizeof *ca);
        int64_t *cb = malloc((size_t)n * sizeof *cb);
        int same = ca && cb && fib_coloring_colors(a, i, ca, n) == FIB_OK &&
                   fib_coloring_colors(b, i, cb, n) == FIB_OK;
        for (int64_t u = 0; same && u < n; u++)
            same = ca[u] == cb[u];
        free(ca);
        free(cb);
        if (!same)
            return 0;
    }
    return 1;
}

int32_t mlp_graph(const planted_mlp *p, uint32_t flags, fib_graph **out)
{
    fib_graph *g = NULL;
    int32_t prev, id;
    int32_t st = fib_graph_create(&g);
    if (st == FIB_OK)
        st = fib_graph_add_input(g, p->width[0], &prev);
    for (int l = 0; st == FIB_OK && l < p->n_layers; l++) {
        st = fib_graph_add_dense(g, prev, p->width[l + 1], p->dtype, p->w[l],
                                 p->ld[l], p->b[l], flags, &id);
        if (st == FIB_OK)
            st = fib_graph_set_activation(g, id, p->activation[l], 0.01);
        prev = id;
    }
    if (st != FIB_OK) {
        fib_graph_free(g);
        g = NULL;
    }
    *out = g;
    return st;
}
