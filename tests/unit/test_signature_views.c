/* The no-symmetry fast path: a dense group over a discrete source borrows
 * its weight rows as its fiber signature, and a group read by a dense block
 * with discrete classes borrows that block's weight columns as its opfiber
 * signature (fib_signature.n_direct), instead of materialising float64
 * colour sums. Both must give exactly the classes of the filled signatures,
 * for every tolerance mode, float32 and float64 weights, planted and random
 * layers, and any thread count. */
#include "compress/compress.h"
#include "testing.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int test_failures;

#define N_IN 24
#define N_H 40
#define N_OUT 6
#define CLASS 4

static uint64_t state = 0x9e3779b97f4a7c15u;

static double uniform(void)
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (double)(state >> 11) / 9007199254740992.0;
}

static double normal(void)
{
    double u = uniform() + 1e-300, v = uniform();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* Weights of input -> hidden (N_H x N_IN, bias) -> output (N_OUT x N_H).
 * planted: hidden rows (and biases) in classes of CLASS consecutive units,
 * equal up to `noise`, and the output's columns likewise. */
typedef struct layers {
    double w1[N_H * N_IN], b1[N_H], w2[N_OUT * N_H];
    float w1f[N_H * N_IN], b1f[N_H], w2f[N_OUT * N_H];
} layers;

static void make_layers(layers *l, bool planted, double noise)
{
    for (int i = 0; i < N_H * N_IN; i++)
        l->w1[i] = normal();
    for (int i = 0; i < N_H; i++)
        l->b1[i] = normal();
    for (int i = 0; i < N_OUT * N_H; i++)
        l->w2[i] = normal();
    for (int r = 0; planted && r < N_H; r++) {
        int first = r - r % CLASS;
        for (int k = 0; k < N_IN; k++)
            l->w1[r * N_IN + k] = l->w1[first * N_IN + k] + noise * (uniform() - 0.5);
        l->b1[r] = l->b1[first] + noise * (uniform() - 0.5);
        for (int o = 0; o < N_OUT; o++)
            l->w2[o * N_H + r] = l->w2[o * N_H + first] + noise * (uniform() - 0.5);
    }
    for (int i = 0; i < N_H * N_IN; i++)
        l->w1f[i] = (float)l->w1[i];
    for (int i = 0; i < N_H; i++)
        l->b1f[i] = (float)l->b1[i];
    for (int i = 0; i < N_OUT * N_H; i++)
        l->w2f[i] = (float)l->w2[i];
}

static fib_graph *build(const layers *l, int32_t dtype)
{
    fib_graph *g = NULL;
    int32_t in, h, out;
    bool f32 = dtype == FIB_DTYPE_F32;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, N_IN, &in));
    CHECK_OK(fib_graph_add_dense(g, in, N_H, dtype, f32 ? (const void *)l->w1f : l->w1, N_IN,
                                 f32 ? (const void *)l->b1f : l->b1, 0, &h));
    CHECK_OK(fib_graph_set_activation(g, h, FIB_ACT_TANH, 0));
    CHECK_OK(fib_graph_add_dense(g, h, N_OUT, dtype, f32 ? (const void *)l->w2f : l->w2, N_H,
                                 NULL, 0, &out));
    return g;
}

/* The classes of the hidden group from its fiber (fibers == NULL) or
 * opfiber signature, borrowed (view) or filled. */
static void classes(const fib_graph *g, const fib_partition *parts, const fib_partition *fibers,
                    bool view, int32_t threads, int32_t mode, double eps, fib_partition *out)
{
    fib_scratch scratch = {0};
    fib_signature sig;
    int32_t status;
    if (fibers)
        status = view ? fib_opfiber_signature_ex(g, 1, parts, fibers, threads, &scratch, &sig)
                      : fib_opfiber_signature(g, 1, parts, fibers, &sig);
    else
        status = view ? fib_fiber_signature_ex(g, 1, parts, threads, &scratch, &sig)
                      : fib_fiber_signature(g, 1, parts, &sig);
    CHECK_OK(status);
    if (status) {
        fib_scratch_clear(&scratch);
        return;
    }
    /* the view is the path under test; the filled one its reference */
    CHECK(view ? sig.n_direct > 0 : sig.n_direct == 0);
    double weight[N_H];
    if ((mode & ~FIB_TOL_SCALED) == FIB_TOL_WARD)
        CHECK_OK(fib_outgoing_norms(g, 1, weight));
    CHECK_OK(fib_partition_init(out, N_H));
    CHECK_OK(fib_group_signatures_mode(&sig, mode, eps, weight, out));
    fib_signature_clear(&sig);
    fib_scratch_clear(&scratch);
}

static bool same_partition(const fib_partition *a, const fib_partition *b)
{
    return a->n_classes == b->n_classes &&
           memcmp(a->color, b->color, (size_t)a->n_units * sizeof *a->color) == 0;
}

typedef struct mode_case {
    int32_t mode;
    double eps; /* < 0: exact */
} mode_case;

static const mode_case modes[] = {
    {FIB_TOL_EXACT, -1.0},   {FIB_TOL_ABS, 0.05},      {FIB_TOL_ABS, 4.0},
    {FIB_TOL_REL, 0.05},     {FIB_TOL_COSINE, 0.05},   {FIB_TOL_COMPLETE, 0.05},
    {FIB_TOL_COMPLETE, 2.0}, {FIB_TOL_WARD, 0.05},     {FIB_TOL_WARD, 3.0},
};

/* Every mode, both directions, threads 1 and 2: the view's classes are the
 * filled signature's. Returns the fiber classes at the first mode. */
static int64_t compare_paths(const fib_graph *g)
{
    fib_partition parts[3];
    CHECK_OK(fib_partition_init(&parts[0], N_IN));
    CHECK_OK(fib_partition_init(&parts[1], N_H));
    CHECK_OK(fib_partition_init(&parts[2], N_OUT));
    fib_partition_discrete(&parts[0]);
    fib_partition_single(&parts[1]);
    fib_partition_discrete(&parts[2]);
    int64_t exact_classes = -1;
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++)
        for (int32_t threads = 1; threads <= 2; threads++) {
            fib_partition filled = {0}, view = {0}, op_filled = {0}, op_view = {0};
            classes(g, parts, NULL, false, threads, modes[m].mode, modes[m].eps, &filled);
            classes(g, parts, NULL, true, threads, modes[m].mode, modes[m].eps, &view);
            CHECK(filled.color && view.color && same_partition(&filled, &view));
            if (m == 0)
                exact_classes = filled.n_classes;
            /* opfibers: the flavour from the fibers just found */
            fib_partition fibers[3] = {parts[0], filled, parts[2]};
            classes(g, parts, fibers, false, threads, modes[m].mode, modes[m].eps, &op_filled);
            classes(g, parts, fibers, true, threads, modes[m].mode, modes[m].eps, &op_view);
            CHECK(op_filled.color && op_view.color && same_partition(&op_filled, &op_view));
            if (!same_partition(&filled, &view) || !same_partition(&op_filled, &op_view))
                fprintf(stderr, "  mode %d eps %g threads %d: fibers %lld / %lld, "
                        "opfibers %lld / %lld classes (filled / view)\n",
                        (int)modes[m].mode, modes[m].eps, (int)threads,
                        (long long)filled.n_classes, (long long)view.n_classes,
                        (long long)op_filled.n_classes, (long long)op_view.n_classes);
            fib_partition_clear(&filled);
            fib_partition_clear(&view);
            fib_partition_clear(&op_filled);
            fib_partition_clear(&op_view);
        }
    for (int i = 0; i < 3; i++)
        fib_partition_clear(&parts[i]);
    return exact_classes;
}

static void test_view_equals_filled(void)
{
    layers *l = malloc(sizeof *l);
    CHECK(l);
    if (!l)
        return;
    const int32_t dtypes[] = {FIB_DTYPE_F32, FIB_DTYPE_F64};
    for (int d = 0; d < 2; d++) {
        /* planted, exact: the planted classes, by either path */
        make_layers(l, true, 0.0);
        fib_graph *g = build(l, dtypes[d]);
        CHECK(compare_paths(g) == N_H / CLASS);
        fib_graph_free(g);
        /* planted with noise a tolerance sees and EXACT does not */
        make_layers(l, true, 1e-2);
        g = build(l, dtypes[d]);
        CHECK(compare_paths(g) == N_H);
        fib_graph_free(g);
        /* random: every unit its own class at EXACT */
        make_layers(l, false, 0.0);
        g = build(l, dtypes[d]);
        CHECK(compare_paths(g) == N_H);
        fib_graph_free(g);
    }
    free(l);
}

/* Position shifts and prepended positions lend their table's columns as
 * the units' constants, the source unit's class materialised beside them:
 * the classes are the filled signature's for every mode, dtype and thread
 * count. Units 0..U-1 of a source in classes of 2, constants in classes of
 * 3 (equal up to `noise`): exact classes are the meet, 8 of 12. */
#define U 12
#define POS 5

static void constants_classes(const fib_graph *g, int32_t group, const fib_partition *parts,
                              bool view, int32_t threads, int32_t mode, double eps,
                              fib_partition *out)
{
    fib_scratch scratch = {0};
    fib_signature sig;
    int32_t status = view ? fib_fiber_signature_ex(g, group, parts, threads, &scratch, &sig)
                          : fib_fiber_signature(g, group, parts, &sig);
    CHECK_OK(status);
    *out = (fib_partition){0};
    if (!status) {
        CHECK(view ? sig.n_direct == POS && sig.n_coords == POS + 1 : sig.n_direct == 0);
        double weight[U];
        if ((mode & ~FIB_TOL_SCALED) == FIB_TOL_WARD)
            CHECK_OK(fib_outgoing_norms(g, group, weight));
        CHECK_OK(fib_partition_init(out, U));
        CHECK_OK(fib_group_signatures_mode(&sig, mode, eps, weight, out));
        fib_signature_clear(&sig);
    }
    fib_scratch_clear(&scratch);
}

static void test_constants_view_equals_filled(void)
{
    const int32_t dtypes[] = {FIB_DTYPE_F32, FIB_DTYPE_F64, FIB_DTYPE_BF16};
    const double noises[] = {0.0, 1e-2};
    for (int d = 0; d < 3; d++)
        for (int nz = 0; nz < 2; nz++)
            for (int prepend = 0; prepend <= 1; prepend++) {
                double table[POS * U];
                float table_f[POS * U];
                uint16_t table_h[POS * U];
                for (int p = 0; p < POS; p++)
                    for (int i = 0; i < U; i++) {
                        int first = i - i % 3;
                        table[p * U + i] = i == first ? normal()
                                                      : table[p * U + first] +
                                                        noises[nz] * (uniform() - 0.5);
                    }
                for (int x = 0; x < POS * U; x++) {
                    table_f[x] = (float)table[x];
                    uint32_t bits;
                    memcpy(&bits, &table_f[x], sizeof bits);
                    table_h[x] = (uint16_t)(bits >> 16);
                }
                /* bfloat16 keeps the top half: exact planted columns stay equal */
                const void *values = dtypes[d] == FIB_DTYPE_F32   ? (const void *)table_f
                                     : dtypes[d] == FIB_DTYPE_F64 ? (const void *)table
                                                                  : (const void *)table_h;
                fib_graph *g = NULL;
                int32_t in, grp;
                CHECK_OK(fib_graph_create(&g));
                CHECK_OK(fib_graph_add_input_positions(g, U, prepend ? 2 : POS, 1, &in));
                CHECK_OK(prepend ? fib_graph_add_prepend(g, in, POS, dtypes[d], values, &grp)
                                 : fib_graph_add_position_shift(g, in, dtypes[d], values, &grp));
                fib_partition parts[2];
                CHECK_OK(fib_partition_init(&parts[0], U));
                CHECK_OK(fib_partition_init(&parts[1], U));
                for (int i = 0; i < U; i++)
                    parts[0].color[i] = i / 2;
                parts[0].n_classes = U / 2;
                fib_partition_single(&parts[1]);
                for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++)
                    for (int32_t threads = 1; threads <= 2; threads++) {
                        fib_partition filled, view;
                        constants_classes(g, grp, parts, false, threads, modes[m].mode,
                                          modes[m].eps, &filled);
                        constants_classes(g, grp, parts, true, threads, modes[m].mode,
                                          modes[m].eps, &view);
                        CHECK(filled.color && view.color && same_partition(&filled, &view));
                        if (m == 0 && filled.color)
                            CHECK(filled.n_classes == (nz ? U : 8));
                        fib_partition_clear(&filled);
                        fib_partition_clear(&view);
                    }
                fib_partition_clear(&parts[0]);
                fib_partition_clear(&parts[1]);
                fib_graph_free(g);
            }
}

/* The classes of source group `src` from its opfiber signature under
 * EXACT: the exact forms of its readers (exact) or the full ones; *coords:
 * the signature's width. */
static void copy_source_classes(const fib_graph *g, int32_t src, const fib_partition *parts,
                                bool exact, fib_partition *out, int64_t *coords)
{
    fib_scratch scratch = {0};
    fib_signature sig;
    int32_t status =
        exact ? fib_opfiber_signature_mode(g, src, parts, parts, FIB_TOL_EXACT, -1.0, 1,
                                           &scratch, &sig)
              : fib_opfiber_signature_ex(g, src, parts, parts, 1, &scratch, &sig);
    CHECK_OK(status);
    *out = (fib_partition){0};
    *coords = -1;
    if (!status) {
        *coords = sig.n_coords;
        CHECK_OK(fib_partition_init(out, g->groups[src].n_units));
        CHECK_OK(fib_group_signatures_mode(&sig, FIB_TOL_EXACT, -1.0, NULL, out));
        fib_signature_clear(&sig);
    }
    fib_scratch_clear(&scratch);
}

/* A position shift passes each error back to the unit it reads: under
 * EXACT its source's opfiber rows are given as one (class, count) pair
 * per unit instead of a row over every class. Same classes as the full
 * rows: readers planted in classes of 3 (sources merge likewise), a
 * gather whose units share sources (counts 2 and 3, one source unread),
 * and the full form where a source's readers differ in class or the
 * source has a second reader. */
static const int64_t copy_gather[9] = {0, 0, 1, 1, 2, 2, 3, 3, 3};
static void test_copy_exact_form_equals_full(void)
{
    enum { N = 9, POS_N = 4 };
    double shift[POS_N * N];
    for (int x = 0; x < POS_N * N; x++)
        shift[x] = normal();
    for (int layout = 0; layout < 4; layout++) {
        fib_graph *g = NULL;
        int32_t in, grp, other;
        int64_t n_src = layout == 1 || layout == 2 ? 5 : N, n = N;
        CHECK_OK(fib_graph_create(&g));
        CHECK_OK(fib_graph_add_input_positions(g, n_src, POS_N, 1, &in));
        if (layout == 0 || layout == 3) {
            CHECK_OK(fib_graph_add_position_shift(g, in, FIB_DTYPE_F64, shift, &grp));
            if (layout == 3)
                CHECK_OK(fib_graph_add_position_shift(g, in, FIB_DTYPE_F64, shift, &other));
        } else {
            /* source 4 unread */
            int64_t *reads = malloc(N * sizeof *reads);
            double *table = malloc(POS_N * N * sizeof *table);
            CHECK(reads && table);
            memcpy(reads, copy_gather, sizeof copy_gather);
            memcpy(table, shift, POS_N * N * sizeof *table);
            CHECK_OK(fib_graph_add_position_shift_owned(g, in, n, table, reads, &grp));
        }
        int32_t n_groups = g->n_groups;
        fib_partition parts[3];
        for (int32_t i = 0; i < n_groups; i++)
            CHECK_OK(fib_partition_init(&parts[i], g->groups[i].n_units));
        fib_partition_discrete(&parts[0]);
        /* the shift's classes: 0-2, 3-5, 6-8 over the input; over the
         * gather, class 0 reading sources 0 and 1, class 1 the others
         * (layout 2: unit 4 apart, so source 2's readers differ) */
        for (int64_t i = 0; i < n; i++)
            parts[1].color[i] = layout == 0 || layout == 3 ? i / 3
                                : layout == 2 && i == 4  ? 2
                                                         : copy_gather[i] >= 2;
        parts[1].n_classes = layout == 0 || layout == 3 ? 3 : layout == 2 ? 3 : 2;
        if (n_groups > 2)
            fib_partition_single(&parts[2]);
        fib_partition full, exact;
        int64_t full_w, exact_w;
        copy_source_classes(g, in, parts, false, &full, &full_w);
        copy_source_classes(g, in, parts, true, &exact, &exact_w);
        CHECK(full.color && exact.color && same_partition(&full, &exact));
        /* the pairs where they apply, the full rows elsewhere */
        CHECK(exact_w == (layout == 0 || layout == 1 ? 2 : full_w));
        CHECK(full_w == parts[1].n_classes + (n_groups > 2 ? 1 : 0));
        if (full.color && layout == 0)
            for (int64_t i = 0; i < N; i++)
                CHECK(full.color[i] == full.color[i - i % 3]);
        /* sources 0 and 1: 2 readers of class 0 each; 2 and 3: 2 and 3
         * of class 1; 4 none */
        if (full.color && layout == 1)
            CHECK(full.n_classes == 4 && full.color[0] == full.color[1]);
        fib_partition_clear(&full);
        fib_partition_clear(&exact);
        for (int32_t i = 0; i < n_groups; i++)
            fib_partition_clear(&parts[i]);
        fib_graph_free(g);
    }
}

int main(void)
{
    RUN(test_view_equals_filled);
    RUN(test_constants_view_equals_filled);
    RUN(test_copy_exact_form_equals_full);
    return test_failures ? 1 : 0;
}
