/* Allocation failure (built with -Dalloc_failure=true): for every k, the
 * k-th allocation of a whole run — build, colour (fibers, covers), compress,
 * lift, break symmetry, forward, save and load — fails. The failing call
 * must return FIB_E_NOMEM with a message, leave its out-pointer alone, and
 * leave its inputs usable: the same call retried without failures succeeds
 * and gives the result of a clean run. Leaks are caught by running this
 * under ASan/LSan or valgrind (tests/ci_checks.sh does both). */
#include "networks.h"
#include "testing.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int test_failures;

/* The hook in src/model/util.c (FIB_ALLOC_FAILURE builds only). */
void fib_test_fail_alloc(int64_t k);
int64_t fib_test_alloc_calls(void);

typedef struct run {
    const planted_mlp *mlp; /* NULL: the CNN */
    const char *path;       /* model file for save / load */
    fib_graph *g, *lifted, *broken, *loaded;
    fib_coloring *fibers, *covers;
    fib_base *base;
} run;

static int32_t step_build(run *r)
{
    return r->mlp ? mlp_graph(r->mlp, FIB_COPY, &r->g) : cnn_build(&r->g);
}

static int32_t step_fibers(run *r)
{
    return fib_color(r->g, NULL, &r->fibers);
}

static int32_t step_covers(run *r)
{
    fib_color_options o;
    fib_color_options_init(&o, sizeof o);
    o.symmetry = FIB_SYM_COVERS;
    return fib_color(r->g, &o, &r->covers);
}

static int32_t step_compress(run *r)
{
    return fib_compress(r->g, r->fibers, &r->base);
}

static int32_t step_lift(run *r)
{
    return fib_lift(r->base, NULL, &r->lifted);
}

static int32_t step_break(run *r)
{
    /* fib_break_symmetry does not take graphs with positions (CNN). */
    if (!r->mlp)
        return FIB_OK;
    return fib_break_symmetry(r->g, r->covers, 7, &r->broken);
}

static int32_t step_forward(run *r)
{
    int64_t n_in = 0, n_out = 0;
    fib_graph_io_width(r->g, &n_in, &n_out);
    double *x = calloc((size_t)(2 * n_in), sizeof *x);
    double *y = calloc((size_t)(2 * n_out), sizeof *y);
    for (int64_t i = 0; x && i < 2 * n_in; i++)
        x[i] = (double)(i % 7) - 3;
    int32_t st = x && y ? fib_graph_forward(r->lifted, 2, FIB_DTYPE_F64, x, y)
                        : FIB_E_NOMEM;
    free(x);
    free(y);
    return st;
}

static int32_t step_save_load(run *r)
{
    if (!r->mlp)
        return FIB_OK; /* the model format holds dense and sum groups */
    fib_load_options lo;
    fib_load_options_init(&lo, sizeof lo);
    lo.copy = 1;
    int32_t st = fib_model_save(r->g, r->path, 0);
    return st == FIB_OK ? fib_model_load(r->path, &lo, &r->loaded) : st;
}

typedef int32_t (*step_fn)(run *r);
static const struct {
    const char *name;
    step_fn fn;
    size_t out; /* offset of the out-pointer in run */
} steps[] = {
    {"build", step_build, offsetof(run, g)},
    {"colour fibers", step_fibers, offsetof(run, fibers)},
    {"colour covers", step_covers, offsetof(run, covers)},
    {"compress", step_compress, offsetof(run, base)},
    {"lift", step_lift, offsetof(run, lifted)},
    {"break symmetry", step_break, offsetof(run, broken)},
    {"forward", step_forward, 0},
    {"save and load", step_save_load, offsetof(run, loaded)},
};
#define N_STEPS (int)(sizeof steps / sizeof steps[0])

static void run_free(run *r)
{
    fib_graph_free(r->g);
    fib_graph_free(r->lifted);
    fib_graph_free(r->broken);
    fib_graph_free(r->loaded);
    fib_coloring_free(r->fibers);
    fib_coloring_free(r->covers);
    fib_base_free(r->base);
}

/* One run whose k-th allocation fails (k = 0: none). Returns the number of
 * allocations of a clean run (k = 0), else 1 if some call failed. */
static int64_t run_once(const planted_mlp *mlp, const char *path, int64_t k,
                        const fib_coloring **reference_out, run *clean)
{
    run r = {.mlp = mlp, .path = path};
    int failed = 0;
    fib_test_fail_alloc(k);
    for (int s = 0; s < N_STEPS; s++) {
        int32_t st = steps[s].fn(&r);
        if (st == FIB_OK)
            continue;
        failed = 1;
        void **out = steps[s].out ? (void **)((char *)&r + steps[s].out) : NULL;
        if (st != FIB_E_NOMEM || fib_last_error()[0] == '\0' ||
            (out && *out != NULL)) {
            test_failures++;
            fprintf(stderr, "k=%lld, %s: %s '%s' (out %s)\n", (long long)k,
                    steps[s].name, fib_status_name(st), fib_last_error(),
                    out && *out ? "set" : "untouched");
        }
        /* Retry on the same handles without failures: must succeed. */
        fib_test_fail_alloc(0);
        st = steps[s].fn(&r);
        if (st != FIB_OK) {
            test_failures++;
            fprintf(stderr, "k=%lld, %s retried: %s '%s'\n", (long long)k,
                    steps[s].name, fib_status_name(st), fib_last_error());
            break;
        }
    }
    int64_t calls = fib_test_alloc_calls();
    fib_test_fail_alloc(0);
    if (clean && k == 0) {
        *clean = r;
        return calls;
    }
    if (reference_out && *reference_out && r.fibers)
        CHECK(same_colorings(r.g, *reference_out, r.fibers));
    run_free(&r);
    return failed;
}

static void every_allocation_fails_once(const planted_mlp *mlp,
                                        const char *label)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/fib-alloc-%ld.safetensors",
             (long)getpid());
    run clean;
    int64_t total = run_once(mlp, path, 0, NULL, &clean);
    const fib_coloring *reference = clean.fibers;
    CHECK(total > 10 && clean.lifted != NULL);
    int64_t failures = 0;
    for (int64_t k = 1; k <= total; k++) {
        int64_t failed = run_once(mlp, path, k, &reference, NULL);
        failures += failed;
    }
    /* A few failures are absorbed by a documented fallback (the direct
     * dense signature falls back to the general one); the run then gives
     * the same results, which run_once checks. Most must reach the caller. */
    CHECK(failures > total / 2);
    CHECK(run_once(mlp, path, total + 1, &reference, NULL) == 0);
    printf("     %s: %lld allocations, each failed once: %lld gave "
           "FIB_E_NOMEM, %lld were absorbed by a fallback\n", label,
           (long long)total, (long long)failures,
           (long long)(total - failures));
    run_free(&clean);
    unlink(path);
}

static void dense_mlp(void)
{
    planted_mlp p;
    mlp_build(&p, 11);
    every_allocation_fails_once(&p, "dense MLP");
    planted_free(&p);
}

static void cnn(void)
{
    every_allocation_fails_once(NULL, "CNN");
}

static void node_graph(void)
{
    fib_graph *g = NULL;
    CHECK_OK(ring_build(200, &g));
    fib_test_fail_alloc(0);
    fib_coloring *ref = NULL;
    CHECK_OK(fib_color(g, NULL, &ref));
    int64_t total = fib_test_alloc_calls();
    for (int64_t k = 1; k <= total; k++) {
        fib_coloring *c = NULL;
        fib_test_fail_alloc(k);
        int32_t st = fib_color(g, NULL, &c);
        fib_test_fail_alloc(0);
        CHECK(st == FIB_E_NOMEM && c == NULL);
        CHECK_OK(fib_color(g, NULL, &c));
        CHECK(c && same_colorings(g, ref, c));
        fib_coloring_free(c);
    }
    printf("     node graph: %lld allocations, each failed once\n",
           (long long)total);
    fib_coloring_free(ref);
    fib_graph_free(g);
}

/* The calls outside the main run: linkage groupings, the automorphism
 * level, the hierarchy, budgets and nested levels. Each failing allocation
 * reaches the caller as FIB_E_NOMEM (or is absorbed: FIB_OK). */
static int32_t call_ward(const fib_graph *g)
{
    fib_color_options o;
    fib_color_options_init(&o, sizeof o);
    o.tolerance = FIB_TOL_WARD | FIB_TOL_SCALED;
    o.eps = 0.3;
    fib_coloring *c = NULL;
    int32_t st = fib_color(g, &o, &c);
    fib_coloring_free(c);
    return st;
}

static int32_t call_hierarchy(const fib_graph *g)
{
    fib_hierarchy *h = NULL;
    int32_t st = fib_hierarchy_create(g, NULL, &h);
    fib_hierarchy_free(h);
    return st;
}

static int32_t call_budget(const fib_graph *g)
{
    fib_base *b = NULL;
    int32_t st = fib_compress_to_budget(g, 0.5, NULL, &b);
    fib_base_free(b);
    return st;
}

static int32_t call_budget_merging_inputs(const fib_graph *g)
{
    fib_budget_options o;
    fib_budget_options_init(&o, sizeof o);
    o.merge_inputs = 1;
    o.synthetic_scale = 1.0; /* and the data-free correction */
    o.synthetic_samples = 64;
    fib_base *b = NULL;
    int32_t st = fib_compress_to_budget(g, 0.5, &o, &b);
    fib_base_free(b);
    return st;
}

static int32_t call_nested(const fib_graph *g)
{
    fib_color_options o;
    fib_color_options_init(&o, sizeof o);
    o.symmetry = FIB_SYM_COVERS;
    o.tolerance = FIB_TOL_ABS;
    static const double eps[3] = {0.05, 0.2, 0.5};
    fib_coloring *levels[3] = {NULL, NULL, NULL};
    int32_t st = fib_color_nested(g, &o, eps, 3, levels);
    for (int t = 0; t < 3; t++)
        fib_coloring_free(levels[t]);
    return st;
}

static void other_calls(void)
{
    planted_mlp p;
    mlp_build(&p, 11);
    fib_graph *g = NULL;
    CHECK_OK(mlp_graph(&p, FIB_COPY, &g));
    int32_t (*const calls[])(const fib_graph *) = {call_ward, call_hierarchy, call_budget,
                                                  call_budget_merging_inputs, call_nested};
    const char *names[] = {"scaled Ward", "hierarchy", "budget", "budget merging inputs, corrected",
                           "nested levels"};
    for (int x = 0; g && x < 5; x++) {
        fib_test_fail_alloc(0);
        int32_t clean = calls[x](g);
        CHECK(clean == FIB_OK);
        int64_t total = fib_test_alloc_calls();
        for (int64_t k = 1; k <= total; k++) {
            fib_test_fail_alloc(k);
            int32_t st = calls[x](g);
            fib_test_fail_alloc(0);
            if (st != FIB_OK && st != FIB_E_NOMEM) {
                test_failures++;
                fprintf(stderr, "%s, k=%lld: %s '%s'\n", names[x], (long long)k,
                        fib_status_name(st), fib_last_error());
            }
        }
        printf("     %s: %lld allocations, each failed once\n", names[x], (long long)total);
    }
    fib_graph_free(g);
    planted_free(&p);
}

int main(void)
{
    RUN(dense_mlp);
    RUN(cnn);
    RUN(node_graph);
    RUN(other_calls);
    return test_failures != 0;
}
