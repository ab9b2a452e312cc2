/* fib_compress_to_budget on a residual CNN (conv - batch norm - ReLU,
 * conv - batch norm, a residual sum, average pool, flatten, dense): a
 * budget that only removes planted channel copies keeps the outputs, a
 * smaller one is met, the progress callback can cancel, an LSTM's units
 * take a budget, an attention's heads and dimensions take one (copies
 * exactly), and a kind budgets do not take is refused by name. A concatenation (0/1 selection blocks and
 * their sum) takes the classes of the units it copies and counts no
 * parameters. Units that output a constant (a batch-norm scale of 0) are
 * removed, their constants taken by their consumers' biases. Stored
 * statistics (fib_graph_set_unit_statistics) carried forward make hidden
 * units that never fire the first removed, and are validated. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "checks.h"
#include "fibration.h"
#include "plant_lift.h"
#include "testing.h"

int test_failures;

enum { IN_CH = 2, SIDE = 6, C = 4, OUT = 3 };

/* Groups: input, conv1, bn1 (ReLU), conv2, bn2 (ReLU), conv3, bn3, sum
 * (ReLU, bn2 + bn3), pool, flatten, dense: the residual channels are those
 * of bn2, bn3 and the sum. */
static fib_graph *base_resnet(uint64_t seed)
{
    uint64_t rng = seed;
    fib_graph *g;
    int32_t id[12];
    double *k1 = test_random_array(&rng, C * IN_CH * 9, -1, 1);
    double *k2 = test_random_array(&rng, C * C * 9, -1, 1);
    double *k3 = test_random_array(&rng, C * C * 9, -1, 1);
    double *s[3], *t[3];
    for (int i = 0; i < 3; i++) {
        s[i] = test_random_array(&rng, C, 0.5, 1.5);
        t[i] = test_random_array(&rng, C, -0.3, 0.3);
    }
    double *w = test_random_array(&rng, OUT * C, -1, 1), *b = test_random_array(&rng, OUT, -.2, .2);
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, IN_CH, SIDE, SIDE, &id[0]));
    CHECK_OK(fib_graph_add_conv(g, id[0], C, 3, 3, 1, 1, 1, 1, 1, FIB_DTYPE_F64, k1, NULL,
                                FIB_COPY, &id[1]));
    CHECK_OK(fib_graph_add_affine(g, id[1], FIB_DTYPE_F64, s[0], t[0], FIB_COPY, &id[2]));
    CHECK_OK(fib_graph_set_activation(g, id[2], FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_conv(g, id[2], C, 3, 3, 1, 1, 1, 1, 1, FIB_DTYPE_F64, k2, NULL,
                                FIB_COPY, &id[3]));
    CHECK_OK(fib_graph_add_affine(g, id[3], FIB_DTYPE_F64, s[1], t[1], FIB_COPY, &id[4]));
    CHECK_OK(fib_graph_set_activation(g, id[4], FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_conv(g, id[4], C, 3, 3, 1, 1, 1, 1, 1, FIB_DTYPE_F64, k3, NULL,
                                FIB_COPY, &id[5]));
    CHECK_OK(fib_graph_add_affine(g, id[5], FIB_DTYPE_F64, s[2], t[2], FIB_COPY, &id[6]));
    CHECK_OK(fib_graph_add_sum(g, id[6], id[4], &id[7]));
    CHECK_OK(fib_graph_set_activation(g, id[7], FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_pool(g, id[7], FIB_POOL_AVG, SIDE, SIDE, SIDE, SIDE, 0, 0, &id[8]));
    CHECK_OK(fib_graph_add_flatten(g, id[8], &id[9]));
    CHECK_OK(fib_graph_add_dense(g, id[9], OUT, FIB_DTYPE_F64, w, C, b, FIB_COPY, &id[10]));
    free(k1), free(k2), free(k3), free(w), free(b);
    for (int i = 0; i < 3; i++)
        free(s[i]), free(t[i]);
    return g;
}

static int64_t *identity(int64_t n)
{
    int64_t *p = malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; i < n; i++)
        p[i] = i;
    return p;
}

static int64_t *copy_of(const int64_t *a, int64_t n)
{
    int64_t *p = malloc((size_t)n * sizeof *p);
    memcpy(p, a, (size_t)n * sizeof *p);
    return p;
}

/* The base lifted: the first block's channels by one projection, the
 * residual channels by another. */
static fib_graph *planted_resnet(fib_graph **base_out)
{
    fib_graph *base = base_resnet(3);
    uint64_t rng = 2;
    int64_t n1, n2;
    int64_t *p1 = random_projection(&rng, C, 3, &n1);
    int64_t *p2 = random_projection(&rng, C, 3, &n2);
    CHECK(n1 > C && n2 > C);
    int64_t *proj[11] = {identity(IN_CH), p1, copy_of(p1, n1), p2, copy_of(p2, n2),
                         copy_of(p2, n2), copy_of(p2, n2), copy_of(p2, n2), copy_of(p2, n2),
                         copy_of(p2, n2), identity(OUT)};
    int64_t widths[11] = {IN_CH, n1, n1, n2, n2, n2, n2, n2, n2, n2, OUT};
    /* conv3 reads the residual channels and writes them */
    fib_graph *g = plant_by_lift(base, proj, widths);
    for (int i = 0; i < 11; i++)
        free(proj[i]);
    CHECK(g != NULL);
    *base_out = base;
    return g;
}

static double fraction_of(const fib_graph *small, const fib_graph *big)
{
    int64_t a = 0, b = 0;
    fib_graph_num_parameters(small, &a);
    fib_graph_num_parameters(big, &b);
    return (double)a / (double)b;
}

/* A budget of exactly the base's size removes the copies and nothing
 * else: the outputs stay. */
static void budget_removing_copies_keeps_residual_cnn_outputs(void)
{
    fib_graph *base = NULL, *g = planted_resnet(&base);
    if (!g)
        return;
    fib_budget_options o;
    fib_budget_options_init(&o, sizeof o);
    fib_base *b = NULL;
    double own = fraction_of(base, g);
    CHECK(own < 0.7);
    CHECK_OK(fib_compress_to_budget(g, own, &o, &b));
    if (b) {
        CHECK(test_output_difference(g, fib_base_graph(b), 5, 4, 1.0) <= 1e-9);
        CHECK(fraction_of(fib_base_graph(b), g) <= own + 1e-12);
        int64_t kept = 0;
        fib_graph_num_parameters(fib_base_graph(b), &kept);
        CHECK(o.n_parameters == kept);
        CHECK(o.chosen_tolerance == FIB_TOL_WARD && o.corrected == 0);
        int64_t width = 0;
        fib_graph_group_info(fib_base_graph(b), 7, NULL, &width, NULL, NULL, NULL, NULL, NULL);
        CHECK(width == C);
    }
    fib_base_free(b);
    /* smaller: met, the sum's two summands merged alike */
    b = NULL;
    CHECK_OK(fib_compress_to_budget(g, 0.6 * own, &o, &b));
    if (b) {
        CHECK(fraction_of(fib_base_graph(b), g) <= 0.6 * own + 1e-12);
        int64_t p4[64], p6[64], p7[64], n = 0;
        fib_graph_group_info(g, 7, NULL, &n, NULL, NULL, NULL, NULL, NULL);
        CHECK(n <= 64);
        CHECK_OK(fib_base_projection(b, 4, p4, 64));
        CHECK_OK(fib_base_projection(b, 6, p6, 64));
        CHECK_OK(fib_base_projection(b, 7, p7, 64));
        CHECK(memcmp(p4, p7, (size_t)n * sizeof *p4) == 0);
        CHECK(memcmp(p6, p7, (size_t)n * sizeof *p6) == 0);
    }
    fib_base_free(b);
    /* below the smallest base: refused, the smallest budget reported */
    b = NULL;
    CHECK(fib_compress_to_budget(g, 1e-4, &o, &b) == FIB_E_UNSUPPORTED && b == NULL);
    CHECK(o.smallest_fraction > 1e-4 && o.smallest_fraction < 1);
    /* the scale-aware grouping is for dense chains */
    o.tolerance = FIB_TOL_SCALED | FIB_TOL_WARD;
    expect(fib_compress_to_budget(g, own, &o, &b), FIB_E_UNSUPPORTED, "chains of dense",
           "scaled grouping on a CNN");
    fib_graph_free(g);
    fib_graph_free(base);
}

static int stop_at;
static int32_t cancel_at(void *user, int64_t done, int64_t total)
{
    (void)user;
    CHECK(done <= total);
    return done >= stop_at;
}

static void budget_on_cnn_can_be_cancelled(void)
{
    fib_graph *base = NULL, *g = planted_resnet(&base);
    if (!g)
        return;
    fib_budget_options o;
    fib_budget_options_init(&o, sizeof o);
    o.progress = cancel_at;
    stop_at = 1;
    fib_base *b = NULL;
    CHECK(fib_compress_to_budget(g, 0.3, &o, &b) == FIB_E_CANCELLED && b == NULL);
    stop_at = 1 << 30;
    CHECK_OK(fib_compress_to_budget(g, 0.3, &o, &b));
    fib_base_free(b);
    fib_graph_free(g);
    fib_graph_free(base);
}

/* An LSTM's hidden units are a budget's: a budget is met. */
static void budget_takes_lstm(void)
{
    fib_graph *g;
    int32_t in, lstm, out;
    enum { H = 6, F = 2, E = 4 };
    double w_ih[4 * H * F], w_hh[4 * H * H], w[2 * H];
    for (int i = 0; i < 4 * H * F; i++)
        w_ih[i] = 0.1 * (i % 5) - 0.2;
    for (int i = 0; i < 4 * H * H; i++)
        w_hh[i] = 0.05 * (i % 7) - 0.15;
    for (int i = 0; i < 2 * H; i++)
        w[i] = 0.3 * (i % 3) - 0.3;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, F, 4, 1, &in));
    CHECK_OK(fib_graph_add_lstm(g, in, H, FIB_DTYPE_F64, w_ih, w_hh, NULL, NULL, FIB_COPY,
                                &lstm));
    CHECK_OK(fib_graph_add_last_step(g, lstm, &out));
    CHECK_OK(fib_graph_add_dense(g, out, 2, FIB_DTYPE_F64, w, H, NULL, FIB_COPY, &out));
    fib_budget_options o;
    fib_budget_options_init(&o, sizeof o);
    fib_base *b = NULL;
    int64_t total = 0, width = 0;
    fib_graph_num_parameters(g, &total);
    CHECK_OK(fib_compress_to_budget(g, 0.5, &o, &b));
    CHECK(b != NULL && o.n_parameters <= total / 2);
    if (b) {
        fib_graph_group_info(fib_base_graph(b), lstm, NULL, &width, NULL, NULL, NULL, NULL, NULL);
        CHECK(width < H && width >= 1);
    }
    fib_base_free(b);
    fib_graph_free(g);
}

/* A causal attention of 4 heads of 2 dimensions over 5 positions (GPT-2's
 * shape): head 2 copies head 0 (q, k, v rows), the 2 dimensions of head 3
 * copy each other, and with `one_sided` head 1's 2 q rows are equal while
 * its k rows differ (the pair still merges exactly: q_0 k_0 + q_0 k_1 =
 * 2 q_0 mean(k)); then a dense ReLU layer and a dense output. */
enum { AE = 8, AH = 4, AT = 5, AF = 6, AO = 3 };

static fib_graph *attention_graph(bool causal, bool one_sided, const fib_attention_options *shape)
{
    uint64_t rng = 17;
    double *w[4], *bias[4];
    for (int i = 0; i < 4; i++) {
        w[i] = test_random_array(&rng, AE * AE, -1, 1);
        bias[i] = test_random_array(&rng, AE, -.5, .5);
    }
    int dims[AE] = {0, 1, 2, 3, 0, 1, 6, 6};
    for (int p = 0; p < 3; p++)
        for (int u = 0; u < AE; u++) {
            int from = p == 0 && one_sided && u == 3 ? 2 : dims[u];
            memmove(w[p] + u * AE, w[p] + from * AE, AE * sizeof(double));
            bias[p][u] = bias[p][from];
        }
    double *wf = test_random_array(&rng, AF * AE, -1, 1), *bf = test_random_array(&rng, AF, -.2, .2);
    double *wo = test_random_array(&rng, AO * AF, -1, 1), *bo = test_random_array(&rng, AO, -.2, .2);
    fib_attention_options o;
    fib_attention_options_init(&o, sizeof o);
    o.n_heads = AH;
    o.causal = causal;
    if (shape)
        o = *shape;
    fib_graph *g;
    int32_t in, att, hid, out;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, AE, AT, 1, &in));
    CHECK_OK(fib_graph_add_attention_ex(g, in, &o, FIB_DTYPE_F64, w[0], bias[0], w[1], bias[1],
                                        w[2], bias[2], w[3], bias[3], FIB_COPY, &att));
    CHECK_OK(fib_graph_set_group_name(g, att, "attn"));
    CHECK_OK(fib_graph_add_dense(g, att, AF, FIB_DTYPE_F64, wf, AE, bf, FIB_COPY, &hid));
    CHECK_OK(fib_graph_set_activation(g, hid, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_dense(g, hid, AO, FIB_DTYPE_F64, wo, AF, bo, FIB_COPY, &out));
    for (int i = 0; i < 4; i++)
        free(w[i]), free(bias[i]);
    free(wf), free(bf), free(wo), free(bo);
    return g;
}

/* The parameters of the exact base (fibers) of g. */
static int64_t exact_base_parameters(const fib_graph *g)
{
    fib_coloring *col = test_color(g, FIB_SYM_FIBERS);
    fib_base *base = NULL;
    int64_t n = -1;
    if (col && fib_compress(g, col, &base) == FIB_OK)
        fib_graph_num_parameters(fib_base_graph(base), &n);
    fib_base_free(base);
    fib_coloring_free(col);
    return n;
}

/* Groups of attention_graph: 0 input, 1 q, 2 k, 3 v, 4 core, 5 out. */
static int64_t base_width(const fib_base *b, int32_t group)
{
    int64_t width = 0;
    fib_graph_group_info(fib_base_graph(b), group, NULL, &width, NULL, NULL, NULL, NULL, NULL);
    return width;
}

/* The budget of the exact base keeps the outputs (copied heads merge
 * whole, copied dimensions pairwise, one-sided q copies too); below it
 * the budget is met and counted as the base's parameters. */
static void budget_merges_attention_heads_and_dimensions(void)
{
    for (int one_sided = 0; one_sided < 2; one_sided++) {
        fib_graph *g = attention_graph(true, one_sided, NULL);
        int64_t total = 0, exact = exact_base_parameters(g);
        fib_graph_num_parameters(g, &total);
        CHECK(exact > 0 && exact < total);
        fib_budget_options o;
        fib_budget_options_init(&o, sizeof o);
        fib_base *b = NULL;
        CHECK_OK(fib_compress_to_budget(g, (double)exact / (double)total, &o, &b));
        if (b) {
            CHECK(o.n_parameters <= exact);
            CHECK(test_output_difference(g, fib_base_graph(b), 3, 4, 1.0) <= 1e-9);
            /* heads 0 and 2 one, head 3 one dimension: 5 q/k and v units;
             * head 1's one-sided pair: one unit fewer in q and k */
            CHECK(base_width(b, 1) == 5 - one_sided && base_width(b, 2) == 5 - one_sided);
            CHECK(base_width(b, 3) == 5 && base_width(b, 4) == 5);
        }
        fib_base_free(b);
        for (int shrink = 1; shrink <= 2; shrink++) {
            double budget = (1.0 - 0.25 * shrink) * (double)exact / (double)total;
            b = NULL;
            int32_t status = fib_compress_to_budget(g, budget, &o, &b);
            CHECK(status == FIB_OK || strstr(fib_last_error(), "below the smallest base"));
            int64_t counted = -1;
            if (b)
                fib_graph_num_parameters(fib_base_graph(b), &counted);
            CHECK(!b || (o.n_parameters <= budget * (double)total && counted == o.n_parameters));
            CHECK(!b || test_output_difference(g, fib_base_graph(b), 3, 4, 1.0) > 1e-9);
            fib_base_free(b);
        }
        fib_graph_free(g);
    }
}

/* Grouped key/value heads and rotary embeddings (Llama's) keep their
 * projections' units; the output projection and the layers after it still
 * take the budget. */
static void budget_keeps_grouped_and_rotary_attention_whole(void)
{
    for (int kind = 0; kind < 2; kind++) {
        fib_attention_options shape;
        fib_attention_options_init(&shape, sizeof shape);
        shape.n_heads = AH;
        shape.causal = 1;
        if (kind == 0)
            shape.rotary = FIB_ROTARY_HALF;
        else
            shape.n_kv_heads = 2;
        fib_graph *g = attention_graph(true, false, &shape);
        int64_t total = 0;
        fib_graph_num_parameters(g, &total);
        fib_budget_options o;
        fib_budget_options_init(&o, sizeof o);
        fib_base *b = NULL;
        CHECK_OK(fib_compress_to_budget(g, 0.9, &o, &b));
        if (b) {
            CHECK(o.n_parameters <= 0.9 * (double)total);
            for (int32_t group = 1; group <= 4; group++) {
                int64_t width = 0;
                fib_graph_group_info(g, group, NULL, &width, NULL, NULL, NULL, NULL, NULL);
                CHECK(base_width(b, group) == width);
            }
            CHECK(base_width(b, 5) + base_width(b, 6) < AE + AF); /* out, hidden */
        }
        fib_base_free(b);
        fib_graph_free(g);
    }
}

/* x (4) -> a (3, ReLU) -> h (2, ReLU) -> d (3) -> y (4): a and y share one
 * matrix (y's weights are a's memory read as 4 x 3, as a tied LM head reads
 * the token embedding): it counts once, as torch counts a shared
 * parameter, in the total and in a base that keeps both groups whole;
 * a base that merges a's units (or y's source's) holds two matrices, each
 * counted. */
static void budget_counts_tied_weights_once(void)
{
    uint64_t rng = 23;
    double *w = test_random_array(&rng, 12, -1, 1), *ba = test_random_array(&rng, 3, -.2, .2);
    double *wh = test_random_array(&rng, 6, -1, 1), *bh = test_random_array(&rng, 2, -.2, .2);
    double *wd = test_random_array(&rng, 6, -1, 1), *bd = test_random_array(&rng, 3, -.2, .2);
    fib_graph *g;
    int32_t x, a, h, d, y;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, 4, &x));
    CHECK_OK(fib_graph_add_dense(g, x, 3, FIB_DTYPE_F64, w, 4, ba, 0, &a));
    CHECK_OK(fib_graph_set_activation(g, a, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_dense(g, a, 2, FIB_DTYPE_F64, wh, 3, bh, FIB_COPY, &h));
    CHECK_OK(fib_graph_set_activation(g, h, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_dense(g, h, 3, FIB_DTYPE_F64, wd, 2, bd, FIB_COPY, &d));
    CHECK_OK(fib_graph_add_dense(g, d, 4, FIB_DTYPE_F64, w, 3, NULL, 0, &y));
    int64_t all = 0, counted = 0;
    fib_graph_num_parameters(g, &all);
    CHECK_OK(fib_graph_budget_parameters(g, &counted));
    CHECK(all == 12 + 3 + 6 + 2 + 6 + 3 + 12 && counted == all - 12);
    int kept = 0;
    for (int step = 1; step <= 4; step++) {
        double budget = 1.0 - 0.15 * step;
        fib_budget_options o;
        fib_budget_options_init(&o, sizeof o);
        fib_base *b = NULL;
        int32_t status = fib_compress_to_budget(g, budget, &o, &b);
        CHECK(status == FIB_OK || strstr(fib_last_error(), "below the smallest base"));
        if (!b)
            continue;
        int64_t in_base = 0, wa = 0, wd_ = 0;
        fib_graph_num_parameters(fib_base_graph(b), &in_base);
        fib_graph_group_info(fib_base_graph(b), a, NULL, &wa, NULL, NULL, NULL, NULL, NULL);
        fib_graph_group_info(fib_base_graph(b), d, NULL, &wd_, NULL, NULL, NULL, NULL, NULL);
        bool tie_stays = wa == 3 && wd_ == 3;
        kept += tie_stays;
        CHECK(o.n_parameters == in_base - (tie_stays ? 12 : 0));
        CHECK(o.n_parameters <= budget * (double)counted);
        fib_base_free(b);
    }
    CHECK(kept > 0); /* the hidden layer alone went: the tie stayed, counted once */
    fib_graph_free(g);
    free(w), free(ba), free(wh), free(bh), free(wd), free(bd);
}

/* A kind budgets do not take, in a group without a name, is refused
 * naming the named group it feeds (the block it belongs to). */
static void budget_refusal_names_the_block_of_an_unnamed_group(void)
{
    fib_graph *g;
    int32_t in, pre, out;
    double values[2] = {0.5, -0.5}, w[4] = {1, 2, 3, 4};
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, 2, 3, 1, &in));
    CHECK_OK(fib_graph_add_prepend(g, in, 1, FIB_DTYPE_F64, values, &pre));
    CHECK_OK(fib_graph_add_dense(g, pre, 2, FIB_DTYPE_F64, w, 2, NULL, FIB_COPY, &out));
    CHECK_OK(fib_graph_set_group_name(g, out, "encoder"));
    fib_base *b = NULL;
    expect(fib_compress_to_budget(g, 0.5, NULL, &b), FIB_E_UNSUPPORTED, "unnamed, in encoder",
           "prepend budget");
    CHECK(strstr(fib_last_error(), "prepend") != NULL && b == NULL);
    fib_graph_free(g);
}

/* x -> a (6 units, 3-5 copy 0-2) and b (4 units, 2-3 copy 0-1), both
 * ReLU; their concatenation (a selection block from each, summed) -> a
 * dense output whose columns for the copies differ. */
enum { CX = 3, CA = 6, CB = 4, CO = 2, CN = CA + CB };

static fib_graph *concat_graph(int32_t *sum_out)
{
    uint64_t rng = 11;
    double *wa = test_random_array(&rng, CA * CX, -1, 1), *ba = test_random_array(&rng, CA, -.2, .2);
    double *wb = test_random_array(&rng, CB * CX, -1, 1), *bb = test_random_array(&rng, CB, -.2, .2);
    double *wo = test_random_array(&rng, CO * CN, -1, 1), *bo = test_random_array(&rng, CO, -.2, .2);
    for (int i = 3; i < 6; i++) {
        memcpy(wa + i * CX, wa + (i - 3) * CX, CX * sizeof *wa);
        ba[i] = ba[i - 3];
    }
    for (int i = 2; i < 4; i++) {
        memcpy(wb + i * CX, wb + (i - 2) * CX, CX * sizeof *wb);
        bb[i] = bb[i - 2];
    }
    double sel_a[CN * CA] = {0}, sel_b[CN * CB] = {0};
    for (int i = 0; i < CA; i++)
        sel_a[i * CA + i] = 1;
    for (int i = 0; i < CB; i++)
        sel_b[(CA + i) * CB + i] = 1;
    fib_graph *g;
    int32_t x, a, b, sa, sb, sum, out;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, CX, &x));
    CHECK_OK(fib_graph_add_dense(g, x, CA, FIB_DTYPE_F64, wa, CX, ba, FIB_COPY, &a));
    CHECK_OK(fib_graph_set_activation(g, a, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_dense(g, x, CB, FIB_DTYPE_F64, wb, CX, bb, FIB_COPY, &b));
    CHECK_OK(fib_graph_set_activation(g, b, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_dense(g, a, CN, FIB_DTYPE_F64, sel_a, CA, NULL, FIB_COPY, &sa));
    CHECK_OK(fib_graph_add_dense(g, b, CN, FIB_DTYPE_F64, sel_b, CB, NULL, FIB_COPY, &sb));
    CHECK_OK(fib_graph_add_sum(g, sa, sb, &sum));
    CHECK_OK(fib_graph_add_dense(g, sum, CO, FIB_DTYPE_F64, wo, CN, bo, FIB_COPY, &out));
    free(wa), free(ba), free(wb), free(bb), free(wo), free(bo);
    *sum_out = sum;
    return g;
}

/* The budget of the exact base (a: 3 units, b: 2, the concatenation 5)
 * removes only the copies and keeps the outputs; the selections count no
 * parameters (62 in the model: a 24, b 16, the output 22; 32 in the base);
 * the concatenation's classes are a's and b's side by side. */
static void budget_through_a_concatenation_counts_no_selection(void)
{
    int32_t sum = 0;
    fib_graph *g = concat_graph(&sum);
    fib_budget_options o;
    fib_budget_options_init(&o, sizeof o);
    fib_base *b = NULL;
    CHECK_OK(fib_compress_to_budget(g, 32.0 / 62.0, &o, &b));
    if (b) {
        CHECK(o.n_parameters == 32);
        CHECK(test_output_difference(g, fib_base_graph(b), 5, 4, 1.0) <= 1e-9);
        int64_t pa[CA], pb[CB], ps[CN];
        CHECK_OK(fib_base_projection(b, 1, pa, CA));
        CHECK_OK(fib_base_projection(b, 2, pb, CB));
        CHECK_OK(fib_base_projection(b, sum, ps, CN));
        for (int i = 0; i < CA; i++)
            CHECK(pa[i] == i % 3 && ps[i] == pa[i]);
        for (int i = 0; i < CB; i++)
            CHECK(pb[i] == i % 2 && ps[CA + i] == 3 + pb[i]);
    }
    fib_base_free(b);
    /* one parameter fewer than the exact base: something more merges, the
     * count stays within the budget */
    b = NULL;
    CHECK_OK(fib_compress_to_budget(g, 31.0 / 62.0, &o, &b));
    CHECK(b != NULL && o.n_parameters <= 31);
    fib_base_free(b);
    fib_graph_free(g);
}

/* Groups: input (1 x 6 x 6), conv1 (5, 3x3, padding 1), bn1 (ReLU), conv2
 * (5, 3x3, padding pad2), bn2 (ReLU), 2x2 max pool, flatten, dense (6,
 * ReLU), dense (3). Batch-norm scales of 0 make bn1's channels 1 (shift
 * 0.4) and 3 (shift -0.3) and bn2's channels 2 (0.6) and 4 (-0.5)
 * constant; the hidden unit 5 has no incoming weights (bias 0.3). */
static fib_graph *constant_units_cnn(int64_t pad2)
{
    uint64_t rng = 11;
    fib_graph *g;
    int32_t id[10];
    int64_t side2 = 6 - 2 + 2 * pad2, flat = 5 * (side2 / 2) * (side2 / 2);
    double *k1 = test_random_array(&rng, 5 * 9, -1, 1), *c1 = test_random_array(&rng, 5, -.2, .2);
    double *k2 = test_random_array(&rng, 5 * 5 * 9, -1, 1), *c2 = test_random_array(&rng, 5, -.2, .2);
    double *s1 = test_random_array(&rng, 5, 0.5, 1.5), *t1 = test_random_array(&rng, 5, -.3, .3);
    double *s2 = test_random_array(&rng, 5, 0.5, 1.5), *t2 = test_random_array(&rng, 5, -.3, .3);
    double *w1 = test_random_array(&rng, 6 * flat, -1, 1), *b1 = test_random_array(&rng, 6, -.2, .2);
    double *w2 = test_random_array(&rng, 3 * 6, -1, 1), *b2 = test_random_array(&rng, 3, -.2, .2);
    s1[1] = s1[3] = s2[2] = s2[4] = 0;
    t1[1] = 0.4, t1[3] = -0.3, t2[2] = 0.6, t2[4] = -0.5;
    for (int64_t x = 0; x < flat; x++)
        w1[5 * flat + x] = 0;
    b1[5] = 0.3;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, 1, 6, 6, &id[0]));
    CHECK_OK(fib_graph_add_conv(g, id[0], 5, 3, 3, 1, 1, 1, 1, 1, FIB_DTYPE_F64, k1, c1,
                                FIB_COPY, &id[1]));
    CHECK_OK(fib_graph_add_affine(g, id[1], FIB_DTYPE_F64, s1, t1, FIB_COPY, &id[2]));
    CHECK_OK(fib_graph_set_activation(g, id[2], FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_conv(g, id[2], 5, 3, 3, 1, 1, pad2, pad2, 1, FIB_DTYPE_F64, k2, c2,
                                FIB_COPY, &id[3]));
    CHECK_OK(fib_graph_add_affine(g, id[3], FIB_DTYPE_F64, s2, t2, FIB_COPY, &id[4]));
    CHECK_OK(fib_graph_set_activation(g, id[4], FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_pool(g, id[4], FIB_POOL_MAX, 2, 2, 2, 2, 0, 0, &id[5]));
    CHECK_OK(fib_graph_add_flatten(g, id[5], &id[6]));
    CHECK_OK(fib_graph_add_dense(g, id[6], 6, FIB_DTYPE_F64, w1, flat, b1, FIB_COPY, &id[7]));
    CHECK_OK(fib_graph_set_activation(g, id[7], FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_dense(g, id[7], 3, FIB_DTYPE_F64, w2, 6, b2, FIB_COPY, &id[8]));
    free(k1), free(c1), free(k2), free(c2), free(s1), free(t1), free(s2), free(t2);
    free(w1), free(b1), free(w2), free(b2);
    return g;
}

/* Parameters of constant_units_cnn with n1, n2 and h units in its layers. */
static int64_t constant_units_parameters(int64_t pad2, int64_t n1, int64_t n2, int64_t h)
{
    int64_t side2 = 6 - 2 + 2 * pad2, flat = n2 * (side2 / 2) * (side2 / 2);
    return n1 * 10 + 2 * n1 + n2 * (n1 * 9 + 1) + 2 * n2 + h * (flat + 1) + 3 * (h + 1);
}

/* Channels whose batch-norm scale is 0 and a hidden unit without incoming
 * weights output constants, of both signs: a budget of the network without
 * them removes them, their consumers' biases take the constants, and the
 * outputs stay. A convolution over zero padding takes only a constant 0:
 * bn1's channel of constant 0.4 then stays. The same with stored
 * statistics of conv1's channels: the constants are the same, exactly. */
static void budget_removing_constant_units_keeps_outputs(void)
{
    for (int64_t run = 0; run < 4; run++) {
        int64_t pad2 = run % 2;
        fib_graph *g = constant_units_cnn(pad2);
        double mean[5] = {0.3, -0.1, 0.2, 0.0, 0.5}, var[5] = {0.7, 1.2, 0.4, 0.9, 2.0};
        if (run >= 2)
            CHECK_OK(fib_graph_set_unit_statistics(g, 1, mean, var, 5));
        int64_t total = 0, n1 = pad2 ? 4 : 3;
        fib_graph_num_parameters(g, &total);
        CHECK(total == constant_units_parameters(pad2, 5, 5, 6));
        int64_t kept = constant_units_parameters(pad2, n1, 3, 5);
        fib_budget_options o;
        fib_budget_options_init(&o, sizeof o);
        fib_base *b = NULL;
        CHECK_OK(fib_compress_to_budget(g, (double)kept / (double)total, &o, &b));
        if (b) {
            CHECK(o.n_parameters == kept);
            CHECK(test_output_difference(g, fib_base_graph(b), 5, 4, 1.0) <= 1e-9);
            int64_t w1 = 0, w2 = 0, h = 0;
            fib_graph_group_info(fib_base_graph(b), 1, NULL, &w1, NULL, NULL, NULL, NULL, NULL);
            fib_graph_group_info(fib_base_graph(b), 3, NULL, &w2, NULL, NULL, NULL, NULL, NULL);
            fib_graph_group_info(fib_base_graph(b), 7, NULL, &h, NULL, NULL, NULL, NULL, NULL);
            CHECK(w1 == n1 && w2 == 3 && h == 5);
        }
        fib_base_free(b);
        /* smaller budgets: met, by a base that computes */
        for (double budget = 0.8; budget > 0.2; budget -= 0.2) {
            b = NULL;
            int32_t status = fib_compress_to_budget(g, budget * kept / total, &o, &b);
            CHECK(status == FIB_OK || strstr(fib_last_error(), "below the smallest base"));
            int64_t counted = 0;
            if (b)
                fib_graph_num_parameters(fib_base_graph(b), &counted);
            CHECK(!b || (counted <= budget * kept && counted == o.n_parameters));
            CHECK(!b || isfinite(test_output_difference(g, fib_base_graph(b), 5, 4, 1.0)));
            fib_base_free(b);
        }
        fib_graph_free(g);
    }
}

/* Groups: input (1 x 6 x 6), conv (4, 3x3, padding 1), bn (ReLU), 2x2
 * max pool, flatten (36), dense (8, ReLU), dense (3). Hidden units 0-2 have
 * a bias of -1000 and three times the others' weights: they never fire on
 * inputs in [-1, 1], but their rows are the farthest from the rest, so
 * that by the weights alone they are the last a budget would touch. */
static fib_graph *dead_units_cnn(void)
{
    uint64_t rng = 23;
    fib_graph *g;
    int32_t id[7];
    double *k = test_random_array(&rng, 4 * 9, -1, 1), *c = test_random_array(&rng, 4, -.2, .2);
    double *sc = test_random_array(&rng, 4, 0.5, 1.5), *sh = test_random_array(&rng, 4, -.3, .3);
    double *w1 = test_random_array(&rng, 8 * 36, -1, 1), *b1 = test_random_array(&rng, 8, 0, .5);
    double *w2 = test_random_array(&rng, 3 * 8, -1, 1), *b2 = test_random_array(&rng, 3, -.2, .2);
    for (int64_t u = 0; u < 3; u++) {
        b1[u] = -1000;
        for (int64_t x = 0; x < 36; x++)
            w1[u * 36 + x] *= 3;
    }
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, 1, 6, 6, &id[0]));
    CHECK_OK(fib_graph_add_conv(g, id[0], 4, 3, 3, 1, 1, 1, 1, 1, FIB_DTYPE_F64, k, c,
                                FIB_COPY, &id[1]));
    CHECK_OK(fib_graph_add_affine(g, id[1], FIB_DTYPE_F64, sc, sh, FIB_COPY, &id[2]));
    CHECK_OK(fib_graph_set_activation(g, id[2], FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_pool(g, id[2], FIB_POOL_MAX, 2, 2, 2, 2, 0, 0, &id[3]));
    CHECK_OK(fib_graph_add_flatten(g, id[3], &id[4]));
    CHECK_OK(fib_graph_add_dense(g, id[4], 8, FIB_DTYPE_F64, w1, 36, b1, FIB_COPY, &id[5]));
    CHECK_OK(fib_graph_set_activation(g, id[5], FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_add_dense(g, id[5], 3, FIB_DTYPE_F64, w2, 8, b2, FIB_COPY, &id[6]));
    free(k), free(c), free(sc), free(sh), free(w1), free(b1), free(w2), free(b2);
    return g;
}

/* Parameters of dead_units_cnn with h hidden units. */
static int64_t dead_units_parameters(int64_t h)
{
    return 4 * 10 + 4 * 2 + h * 37 + 3 * (h + 1);
}

/* The hidden units the stored statistics of the convolution (a batch
 * norm's running mean and variance of its input) predict never to fire
 * are removed before any live unit merges or goes, their constant (0)
 * taken by the output's bias: the base computes the original's outputs.
 * Without the statistics the same budget keeps them. */
static void budget_removes_units_stored_statistics_predict_dead(void)
{
    fib_graph *g = dead_units_cnn();
    int64_t total = 0;
    fib_graph_num_parameters(g, &total);
    CHECK(total == dead_units_parameters(8));
    double budget = (double)dead_units_parameters(5) / (double)total;
    double mean[4] = {0.1, -0.2, 0.05, 0.3}, var[4] = {1.0, 0.5, 2.0, 0.8};
    for (int with = 0; with <= 1; with++) {
        CHECK_OK(fib_graph_set_unit_statistics(g, 1, with ? mean : NULL, with ? var : NULL, 4));
        fib_budget_options o;
        fib_budget_options_init(&o, sizeof o);
        fib_base *b = NULL;
        CHECK_OK(fib_compress_to_budget(g, budget, &o, &b));
        if (!b)
            continue;
        int64_t hidden[8], conv[4];
        CHECK_OK(fib_base_projection(b, 5, hidden, 8));
        CHECK_OK(fib_base_projection(b, 1, conv, 4));
        /* the live units 3-7 keep a class each, and so do the channels */
        bool live_apart = true, channels_whole = true;
        for (int64_t u = 3; u < 8; u++)
            for (int64_t v = u + 1; v < 8; v++)
                live_apart &= hidden[u] != hidden[v];
        for (int64_t u = 0; u < 4; u++)
            for (int64_t v = u + 1; v < 4; v++)
                channels_whole &= conv[u] != conv[v];
        double diff = test_output_difference(g, fib_base_graph(b), 5, 4, 1.0);
        if (with) {
            CHECK(o.n_parameters == dead_units_parameters(5));
            CHECK(live_apart && channels_whole);
            CHECK(diff <= 1e-12);
        } else {
            /* by the weights alone a live unit merges or goes first */
            CHECK(!live_apart || !channels_whole);
            CHECK(o.n_parameters <= dead_units_parameters(5));
        }
        fib_base_free(b);
    }
    fib_graph_free(g);
}

/* Statistics that cannot describe a group are refused, naming it; NULL
 * for both removes them. */
static void unit_statistics_are_validated_by_group(void)
{
    fib_graph *g = dead_units_cnn();
    CHECK_OK(fib_graph_set_group_name(g, 1, "conv"));
    double mean[4] = {0, 0, 0, 0}, var[4] = {1, 1, 1, 1};
    CHECK(fib_graph_set_unit_statistics(g, 7, mean, var, 4) == FIB_E_RANGE);
    CHECK(fib_graph_set_unit_statistics(NULL, 1, mean, var, 4) == FIB_E_NULL);
    CHECK(fib_graph_set_unit_statistics(g, 1, mean, NULL, 4) == FIB_E_NULL);
    CHECK(strstr(fib_last_error(), "group 1 (conv)") != NULL);
    CHECK(fib_graph_set_unit_statistics(g, 1, mean, var, 3) == FIB_E_SHAPE);
    CHECK(strstr(fib_last_error(), "3 statistics for 4 units") != NULL);
    var[2] = -0.5;
    CHECK(fib_graph_set_unit_statistics(g, 1, mean, var, 4) == FIB_E_INVALID);
    CHECK(strstr(fib_last_error(), "group 1 (conv): unit 2") != NULL);
    var[2] = 1;
    mean[3] = NAN;
    CHECK(fib_graph_set_unit_statistics(g, 1, mean, var, 4) == FIB_E_NONFINITE);
    CHECK(strstr(fib_last_error(), "unit 3: mean") != NULL);
    mean[3] = 0;
    CHECK_OK(fib_graph_set_unit_statistics(g, 1, mean, var, 4));
    CHECK_OK(fib_graph_set_unit_statistics(g, 1, NULL, NULL, 0));
    fib_graph_free(g);
}

int main(void)
{
    RUN(budget_through_a_concatenation_counts_no_selection);
    RUN(budget_removing_copies_keeps_residual_cnn_outputs);
    RUN(budget_on_cnn_can_be_cancelled);
    RUN(budget_takes_lstm);
    RUN(budget_merges_attention_heads_and_dimensions);
    RUN(budget_keeps_grouped_and_rotary_attention_whole);
    RUN(budget_counts_tied_weights_once);
    RUN(budget_refusal_names_the_block_of_an_unnamed_group);
    RUN(budget_removing_constant_units_keeps_outputs);
    RUN(budget_removes_units_stored_statistics_predict_dead);
    RUN(unit_statistics_are_validated_by_group);
    return test_failures ? 1 : 0;
}
