/* The exact form of an attention core's opfiber sums (fib_block_ops
 * opfiber_exact_width: a unit's nonzero columns as (label, sum) pairs
 * instead of a mostly-zero row over every (head, class, phase) column)
 * must give exactly the classes of the full form under FIB_TOL_EXACT, on
 * planted rotary heads, for q, k and v, at 1 and 2 threads; every other
 * mode keeps the full form. Planted: q units whose pairs turn alike (same
 * frequency, same key classes, same signs) merge; units turning at
 * another frequency, or with the sine's other sign, do not. */
#include "blocks/blocks.h"
#include "color/color.h"
#include "color/linkage.h"
#include "testing.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int test_failures;

#define E 8
#define LEN 3

static uint64_t state = 0x2545f4914f6cdd1du;

static double uniform(void)
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (double)(state >> 11) / 9007199254740992.0 - 0.5;
}

/* n x E random rows; rows[r] = rows[copy[r]] when copy[r] >= 0. */
static void planted_rows(double *w, int n, const int *copy)
{
    for (int r = 0; r < n; r++)
        for (int c = 0; c < E; c++)
            w[r * E + c] = copy && copy[r] >= 0 ? w[copy[r] * E + c] : uniform();
}

/* The classes of group `group` from its opfiber signature, full
 * (fib_opfiber_signature_ex) or by mode; *coords: the signature's width. */
static void opfiber_classes(const fib_graph *g, int32_t group, const fib_partition *parts,
                            const fib_partition *fibers, bool by_mode, int32_t mode,
                            double eps, int32_t threads, fib_partition *out, int64_t *coords)
{
    fib_scratch scratch = {0};
    fib_signature sig;
    int32_t status =
        by_mode ? fib_opfiber_signature_mode(g, group, parts, fibers, mode, eps, threads,
                                             &scratch, &sig)
                : fib_opfiber_signature_ex(g, group, parts, fibers, threads, &scratch, &sig);
    CHECK_OK(status);
    *coords = status ? -1 : sig.n_coords;
    CHECK_OK(fib_partition_init(out, g->groups[group].n_units));
    if (!status) {
        CHECK_OK(fib_group_signatures_mode(&sig, mode, eps, NULL, out));
        fib_signature_clear(&sig);
    }
    fib_scratch_clear(&scratch);
}

static bool same_partition(const fib_partition *a, const fib_partition *b)
{
    return a->n_units == b->n_units && a->n_classes == b->n_classes &&
           memcmp(a->color, b->color, (size_t)a->n_units * sizeof *a->color) == 0;
}

/* For every source of the core (q, k, v) and threads 1 and 2: the exact
 * form gives the full form's classes, q and k in exact_width[0], [1]
 * coordinates (two per cell of the longest row; the full form has at least
 * full_at_least); ABS keeps the full form. Returns the classes of q (exact
 * form, 1 thread) in q_classes. */
static void compare_forms(const fib_graph *g, int32_t core, int64_t full_at_least,
                          const int64_t exact_width[2], fib_partition *q_classes)
{
    fib_coloring *fibers = NULL, *opfibers = NULL;
    fib_color_options o;
    CHECK_OK(fib_color_options_init(&o, sizeof o));
    o.symmetry = FIB_SYM_FIBERS;
    CHECK_OK(fib_color(g, &o, &fibers));
    o.symmetry = FIB_SYM_OPFIBERS;
    CHECK_OK(fib_color(g, &o, &opfibers));
    if (!fibers || !opfibers) {
        fib_coloring_free(fibers);
        fib_coloring_free(opfibers);
        return;
    }
    for (int32_t s = 0; s < 3; s++) {
        int32_t src = g->groups[core].sources[s];
        for (int32_t threads = 1; threads <= 2; threads++) {
            fib_partition full, exact, abs_full, abs_mode;
            int64_t full_w, exact_w, abs_w, abs_mode_w;
            opfiber_classes(g, src, opfibers->parts, fibers->parts, false, FIB_TOL_EXACT, -1.0,
                            threads, &full, &full_w);
            opfiber_classes(g, src, opfibers->parts, fibers->parts, true, FIB_TOL_EXACT, -1.0,
                            threads, &exact, &exact_w);
            CHECK(same_partition(&full, &exact));
            /* the exact form is the path under test */
            if (s < 2)
                CHECK(full_w >= full_at_least && exact_w == exact_width[s]);
            CHECK(exact_w <= full_w);
            /* and what fib_color found for the group */
            CHECK(same_partition(&exact, &opfibers->parts[src]));
            /* a tolerance mode measures distances on the full form */
            opfiber_classes(g, src, opfibers->parts, fibers->parts, false, FIB_TOL_ABS, 0.5,
                            threads, &abs_full, &abs_w);
            opfiber_classes(g, src, opfibers->parts, fibers->parts, true, FIB_TOL_ABS, 0.5,
                            threads, &abs_mode, &abs_mode_w);
            CHECK(abs_mode_w == abs_w && same_partition(&abs_full, &abs_mode));
            if (s == 0 && threads == 1)
                CHECK_OK(fib_partition_copy(q_classes, &exact));
            fib_partition_clear(&full);
            fib_partition_clear(&exact);
            fib_partition_clear(&abs_full);
            fib_partition_clear(&abs_mode);
        }
    }
    fib_coloring_free(fibers);
    fib_coloring_free(opfibers);
}

static int32_t find_core(const fib_graph *g)
{
    for (int32_t i = 0; i < g->n_groups; i++)
        if (g->groups[i].n_sources == 3)
            return i;
    return -1;
}

/* Llama's core (rotate_half), 2 query heads sharing 1 key/value head,
 * head_dim 8, the first 4 dimensions rotating (pairs (0, 2) and (1, 3)),
 * 4 to 7 not. Keys: k2 = k0 (a rotating pair's partners alike), k4 = k5 =
 * k6; queries: q4 = q5 in each head. */
static void test_llama_core_exact_form_matches_full_form(void)
{
    enum { HEADS = 2, HD = 8 };
    static const int k_copy[HD] = {-1, -1, 0, -1, -1, 4, 4, -1};
    int q_copy[HEADS * HD];
    for (int r = 0; r < HEADS * HD; r++)
        q_copy[r] = r % HD == 5 ? r - 1 : -1;
    double wq[HEADS * HD * E], wk[HD * E], wv[HD * E], wo[E * HEADS * HD];
    planted_rows(wq, HEADS * HD, q_copy);
    planted_rows(wk, HD, k_copy);
    planted_rows(wv, HD, NULL);
    for (int i = 0; i < E * HEADS * HD; i++)
        wo[i] = uniform();
    fib_graph *g = NULL;
    int32_t in, out;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, E, LEN, 1, &in));
    fib_attention_options ao;
    CHECK_OK(fib_attention_options_init(&ao, sizeof ao));
    ao.n_heads = HEADS;
    ao.n_kv_heads = 1;
    ao.head_dim = HD;
    ao.causal = 1;
    ao.rotary = FIB_ROTARY_HALF;
    ao.rotary_dim = 4;
    CHECK_OK(fib_graph_add_attention_ex(g, in, &ao, FIB_DTYPE_F64, wq, NULL, wk, NULL, wv,
                                        NULL, wo, NULL, 0, &out));
    int32_t core = find_core(g);
    CHECK(core >= 0);
    if (core < 0) {
        fib_graph_free(g);
        return;
    }
    fib_partition q = {0};
    /* full: a column per (head, key class, phase) that occurs */
    /* exact: a q unit has at most 2 cells (cos, sin), a k unit 2 per head */
    static const int64_t exact_width[2] = {4, 8};
    compare_forms(g, core, 8 * HEADS, exact_width, &q);
    if (q.color) {
        for (int h = 0; h < HEADS; h++) {
            const int64_t *c = q.color + h * HD;
            /* not turning, alike keys: one class */
            CHECK(c[4] == c[5] && c[5] == c[6]);
            CHECK(c[7] != c[4]);
            /* turning: 0 and 2 share a frequency and keys alike, but their
             * sine terms have opposite signs; 1 and 3 their own keys */
            for (int d = 0; d < 4; d++)
                for (int d2 = 0; d2 < HD; d2++)
                    CHECK(d2 == d || c[d] != c[d2]);
        }
        /* heads are never merged by the opfibers of q */
        CHECK(q.color[4] != q.color[HD + 4]);
    }
    fib_partition_clear(&q);
    fib_graph_free(g);
}

/* A core built as a base holds it: one head, q0 and q1 turn at frequency
 * 0.5 with alike keys (k1 = k0, k3 = k2), q2 at 0.25, q3 at 0.5 with the
 * sine's other sign. */
static void test_pairs_that_turn_alike_merge(void)
{
    static const int k_copy[4] = {-1, 0, -1, 2};
    double wq[4 * E], wk[4 * E], wv[4 * E];
    planted_rows(wq, 4, NULL);
    planted_rows(wk, 4, k_copy);
    planted_rows(wv, 4, NULL);
    fib_graph *g = NULL;
    int32_t in, q, k, v, core;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, E, LEN, 1, &in));
    CHECK_OK(fib_graph_add_dense(g, in, 4, FIB_DTYPE_F64, wq, E, NULL, 0, &q));
    CHECK_OK(fib_graph_add_dense(g, in, 4, FIB_DTYPE_F64, wk, E, NULL, 0, &k));
    CHECK_OK(fib_graph_add_dense(g, in, 4, FIB_DTYPE_F64, wv, E, NULL, 0, &v));
    static const int64_t pq[8] = {0, 0, 1, 1, 2, 2, 3, 3}, pk[8] = {0, 2, 1, 3, 0, 2, 1, 3};
    static const double mult[8] = {1, 1, 1, 1, 1, 1, 1, -1};
    static const double omega[8] = {0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.5, 0.5};
    fib_attend *a = fib_calloc(1, sizeof *a);
    CHECK(a != NULL);
    if (!a) {
        fib_graph_free(g);
        return;
    }
    a->n_heads = 1;
    a->n_pairs = 8;
    a->scale = 0.5;
    a->head_start = fib_calloc(2, sizeof *a->head_start);
    a->pair_q = fib_alloc(8, sizeof *a->pair_q);
    a->pair_k = fib_alloc(8, sizeof *a->pair_k);
    a->pair_mult = fib_alloc(8, sizeof *a->pair_mult);
    a->pair_omega = fib_alloc(8, sizeof *a->pair_omega);
    a->pair_sin = fib_alloc(8, sizeof *a->pair_sin);
    a->unit_head = fib_calloc(4, sizeof *a->unit_head);
    a->unit_v = fib_alloc(4, sizeof *a->unit_v);
    CHECK(a->head_start && a->pair_q && a->pair_k && a->pair_mult && a->pair_omega &&
          a->pair_sin && a->unit_head && a->unit_v);
    if (!(a->head_start && a->pair_q && a->pair_k && a->pair_mult && a->pair_omega &&
          a->pair_sin && a->unit_head && a->unit_v)) {
        fib_attend_free(a);
        fib_graph_free(g);
        return;
    }
    a->head_start[1] = 8;
    for (int p = 0; p < 8; p++) {
        a->pair_q[p] = pq[p];
        a->pair_k[p] = pk[p];
        a->pair_mult[p] = mult[p];
        a->pair_omega[p] = omega[p];
        a->pair_sin[p] = (uint8_t)(p % 2);
    }
    for (int u = 0; u < 4; u++)
        a->unit_v[u] = u;
    CHECK_OK(fib_graph_add_attend_owned(g, q, k, v, 4, a, &core));
    fib_partition qc = {0};
    /* full: (k class, phase) columns 0.5 cos, 0.5 sin, 0.25 cos, 0.25 sin */
    static const int64_t exact_width[2] = {4, 4};
    compare_forms(g, core, 4, exact_width, &qc);
    if (qc.color) {
        CHECK(qc.color[0] == qc.color[1]);
        CHECK(qc.color[2] != qc.color[0] && qc.color[3] != qc.color[0] &&
              qc.color[2] != qc.color[3]);
    }
    fib_partition_clear(&qc);
    fib_graph_free(g);
}

/* Every core numbers its pairs' phases once, when added: two pairs share
 * a number iff they share (omega, sin), and the numbers are 0 .. n_phases
 * - 1. Two layers of different frequencies (rope_theta, rotary_dim) and
 * weights in one graph: each core's numbering is its own, and each core's
 * exact form still gives the full form's classes. */
static void test_phases_numbered_per_core(void)
{
    enum { HEADS = 2, HD = 8 };
    static const int k_copy[HD] = {-1, -1, 0, -1, -1, 4, 4, -1};
    static const double theta[2] = {10000.0, 500.0};
    static const int64_t rotary_dim[2] = {4, 8};
    fib_graph *g = NULL;
    int32_t x;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, E, LEN, 1, &x));
    for (int layer = 0; layer < 2; layer++) {
        double wq[HEADS * HD * E], wk[HD * E], wv[HD * E], wo[E * HEADS * HD];
        planted_rows(wq, HEADS * HD, NULL);
        planted_rows(wk, HD, k_copy);
        planted_rows(wv, HD, NULL);
        for (int i = 0; i < E * HEADS * HD; i++)
            wo[i] = uniform();
        fib_attention_options ao;
        CHECK_OK(fib_attention_options_init(&ao, sizeof ao));
        ao.n_heads = HEADS;
        ao.n_kv_heads = 1;
        ao.head_dim = HD;
        ao.causal = 1;
        ao.rotary = FIB_ROTARY_HALF;
        ao.rope_theta = theta[layer];
        ao.rotary_dim = rotary_dim[layer];
        CHECK_OK(fib_graph_add_attention_ex(g, x, &ao, FIB_DTYPE_F64, wq, NULL, wk, NULL, wv,
                                            NULL, wo, NULL, FIB_COPY, &x));
    }
    int n_cores = 0;
    double first_omega = 0.0;
    for (int32_t core = 0; core < g->n_groups; core++) {
        if (g->groups[core].n_sources != 3)
            continue;
        const fib_attend *a = g->groups[core].block;
        CHECK(a->pair_phase != NULL);
        if (!a->pair_phase)
            continue;
        int64_t seen = 0;
        for (int64_t p = 0; p < a->n_pairs; p++) {
            CHECK(a->pair_phase[p] >= 0 && a->pair_phase[p] < a->n_phases);
            seen = a->pair_phase[p] >= seen ? a->pair_phase[p] + 1 : seen;
            for (int64_t p2 = 0; p2 < a->n_pairs; p2++)
                CHECK((a->pair_phase[p] == a->pair_phase[p2]) ==
                      (a->pair_omega[p] == a->pair_omega[p2] &&
                       a->pair_sin[p] == a->pair_sin[p2]));
        }
        CHECK(seen == a->n_phases);
        /* rotating dimensions 4 and 8 of 8: 2 and 4 frequencies, each cos
         * and sin, and the non-rotating ones (omega 0, cos) */
        CHECK(a->n_phases == (n_cores == 0 ? 2 * 2 + 1 : 4 * 2));
        /* the second layer's frequencies are not the first's */
        double lowest = INFINITY;
        for (int64_t p = 0; p < a->n_pairs; p++)
            if (a->pair_omega[p] > 0 && a->pair_omega[p] < lowest)
                lowest = a->pair_omega[p];
        if (n_cores == 0)
            first_omega = lowest;
        else
            CHECK(lowest != first_omega);
        /* q: at most 2 cells (cos, sin); k: 2 per query head reading it */
        static const int64_t exact_width[2] = {4, 8};
        fib_partition q = {0};
        compare_forms(g, core, 8 * HEADS, exact_width, &q);
        fib_partition_clear(&q);
        n_cores++;
    }
    CHECK(n_cores == 2);
    fib_graph_free(g);
}

int main(void)
{
    RUN(test_llama_core_exact_form_matches_full_form);
    RUN(test_pairs_that_turn_alike_merge);
    RUN(test_phases_numbered_per_core);
    return test_failures ? 1 : 0;
}
