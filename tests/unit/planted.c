#include "planted.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

uint64_t test_rand(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

double test_uniform(uint64_t *state, double lo, double hi)
{
    return lo + (hi - lo) * (double)(test_rand(state) >> 11) * 0x1.0p-53;
}

/* Every class gets 1..max_class members, then units are shuffled. */
static int64_t *random_classes(uint64_t *rng, int64_t k, int max_class,
                               int64_t *n_out)
{
    int64_t *sizes = malloc((size_t)k * sizeof *sizes), n = 0;
    for (int64_t c = 0; c < k; c++)
        n += sizes[c] = 1 + (int64_t)(test_rand(rng) % (uint64_t)max_class);
    int64_t *cls = malloc((size_t)n * sizeof *cls), u = 0;
    for (int64_t c = 0; c < k; c++)
        for (int64_t s = 0; s < sizes[c]; s++)
            cls[u++] = c;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(test_rand(rng) % (uint64_t)(i + 1));
        int64_t t = cls[i];
        cls[i] = cls[j];
        cls[j] = t;
    }
    free(sizes);
    *n_out = n;
    return cls;
}

static int64_t *identity_classes(int64_t n)
{
    int64_t *cls = malloc((size_t)n * sizeof *cls);
    for (int64_t i = 0; i < n; i++)
        cls[i] = i;
    return cls;
}

static void store(int32_t dtype, void *buf, int64_t i, double v)
{
    if (dtype == FIB_DTYPE_F32)
        ((float *)buf)[i] = (float)v;
    else
        ((double *)buf)[i] = v;
}

void planted_build(planted_mlp *p, uint64_t seed, int n_layers,
                   const int64_t *base, int max_class, int32_t dtype, int pad,
                   int32_t activation, int resplit)
{
    memset(p, 0, sizeof *p);
    uint64_t rng = seed;
    p->n_layers = n_layers;
    p->dtype = dtype;
    size_t es = dtype == FIB_DTYPE_F32 ? sizeof(float) : sizeof(double);
    for (int l = 0; l <= n_layers; l++) {
        p->base_width[l] = base[l];
        bool hidden = l > 0 && l < n_layers;
        if (hidden) {
            p->cls[l] = random_classes(&rng, base[l], max_class, &p->width[l]);
        } else {
            p->width[l] = base[l];
            p->cls[l] = identity_classes(base[l]);
        }
    }
    for (int l = 0; l < n_layers; l++) {
        int64_t ko = base[l + 1], ki = base[l], no = p->width[l + 1], ni = p->width[l];
        p->activation[l] = l + 1 < n_layers ? activation : FIB_ACT_LINEAR;
        p->base_w[l] = malloc((size_t)(ko * ki) * sizeof(double));
        p->base_b[l] = malloc((size_t)ko * sizeof(double));
        for (int64_t x = 0; x < ko * ki; x++)
            p->base_w[l][x] = test_uniform(&rng, -1, 1);
        for (int64_t x = 0; x < ko; x++)
            p->base_b[l][x] = test_uniform(&rng, -0.5, 0.5);
        p->ld[l] = ni + pad;
        p->w[l] = calloc((size_t)(no * p->ld[l]), es);
        p->b[l] = calloc((size_t)no, es);
        double *frac = malloc((size_t)ni * sizeof *frac);
        double *total = calloc((size_t)ki, sizeof *total);
        for (int64_t i = 0; i < no; i++) {
            /* Random positive fractions of each input class, summing to 1. */
            memset(total, 0, (size_t)ki * sizeof *total);
            for (int64_t k = 0; k < ni; k++)
                total[p->cls[l][k]] += frac[k] = resplit ? test_uniform(&rng, 0.5, 1.5) : 1.0;
            int64_t c = p->cls[l + 1][i];
            for (int64_t k = 0; k < ni; k++) {
                int64_t d = p->cls[l][k];
                store(dtype, p->w[l], i * p->ld[l] + k,
                      p->base_w[l][c * ki + d] * frac[k] / total[d]);
            }
            store(dtype, p->b[l], i, p->base_b[l][c]);
        }
        free(frac);
        free(total);
    }
}

void planted_free(planted_mlp *p)
{
    for (int l = 0; l <= p->n_layers; l++)
        free(p->cls[l]);
    for (int l = 0; l < p->n_layers; l++) {
        free(p->base_w[l]);
        free(p->base_b[l]);
        free(p->w[l]);
        free(p->b[l]);
    }
}

fib_graph *planted_graph(const planted_mlp *p, uint32_t flags)
{
    fib_graph *g = NULL;
    int32_t prev, id;
    if (fib_graph_create(&g) || fib_graph_add_input(g, p->width[0], &prev))
        return NULL;
    for (int l = 0; l < p->n_layers; l++) {
        if (fib_graph_add_dense(g, prev, p->width[l + 1], p->dtype, p->w[l], p->ld[l],
                                p->b[l], flags, &id) ||
            fib_graph_set_activation(g, id, p->activation[l], 0.01)) {
            fib_graph_free(g);
            return NULL;
        }
        prev = id;
    }
    return g;
}

void canonical(const int64_t *labels, int64_t n, int64_t *out)
{
    for (int64_t i = 0; i < n; i++) {
        out[i] = -1;
        for (int64_t j = 0; j < i; j++)
            if (labels[j] == labels[i]) {
                out[i] = out[j];
                break;
            }
        if (out[i] < 0) {
            int64_t next = 0;
            for (int64_t j = 0; j < i; j++)
                if (out[j] + 1 > next)
                    next = out[j] + 1;
            out[i] = next;
        }
    }
}

int same_partition(const fib_coloring *c, int32_t group, const int64_t *labels,
                   int64_t n)
{
    int64_t *got = malloc((size_t)n * sizeof *got), *want = malloc((size_t)n * sizeof *want);
    int ok = fib_coloring_colors(c, group, got, n) == FIB_OK;
    canonical(labels, n, want);
    for (int64_t i = 0; ok && i < n; i++)
        ok = got[i] == want[i];
    free(got);
    free(want);
    return ok;
}

double max_rel_diff(const double *a, const double *b, int64_t n)
{
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]) / (1.0 + fabs(b[i]));
        if (!(d <= worst))
            worst = d;
    }
    return worst;
}
