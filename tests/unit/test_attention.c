/* Attention blocks: the forward pass against an independent reference,
 * planted symmetry (random bases lifted, and a real multi-head attention
 * with duplicated projection rows) found exactly and merged into a smaller
 * exact base whose heads have fewer q/k dimensions; opfibers checked
 * against numerical error signals; a 2-layer Transformer encoder built from
 * blocks; bad inputs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checks.h"
#include "fibration.h"
#include "compress/compress.h"
#include "plant_lift.h"
#include "planted.h"
#include "testing.h"

int test_failures;

/* Max relative difference of two graphs' outputs on the same random inputs. */
/* Independent multi-head attention (PyTorch's definition) on one sample:
 * x is len x e, out len x e. */
static void reference_mha(int64_t len, int64_t e, int64_t heads, const double *in_w,
                          const double *in_b, const double *out_w, const double *out_b,
                          const double *x, double *out)
{
    int64_t dh = e / heads;
    double *qkv = calloc((size_t)(3 * e * len), sizeof *qkv);
    double *ctx = calloc((size_t)(e * len), sizeof *ctx);
    double *p = calloc((size_t)len, sizeof *p);
    for (int64_t t = 0; t < len; t++)
        for (int64_t r = 0; r < 3 * e; r++) {
            double z = in_b ? in_b[r] : 0.0;
            for (int64_t c = 0; c < e; c++)
                z += in_w[r * e + c] * x[t * e + c];
            qkv[t * 3 * e + r] = z;
        }
    for (int64_t h = 0; h < heads; h++)
        for (int64_t t = 0; t < len; t++) {
            double top = -INFINITY, sum = 0.0;
            for (int64_t s = 0; s < len; s++) {
                double d = 0.0;
                for (int64_t j = h * dh; j < (h + 1) * dh; j++)
                    d += qkv[t * 3 * e + j] * qkv[s * 3 * e + e + j];
                p[s] = d / sqrt((double)dh);
                top = p[s] > top ? p[s] : top;
            }
            for (int64_t s = 0; s < len; s++)
                sum += p[s] = exp(p[s] - top);
            for (int64_t j = h * dh; j < (h + 1) * dh; j++) {
                double z = 0.0;
                for (int64_t s = 0; s < len; s++)
                    z += p[s] / sum * qkv[s * 3 * e + 2 * e + j];
                ctx[t * e + j] = z;
            }
        }
    for (int64_t t = 0; t < len; t++)
        for (int64_t r = 0; r < e; r++) {
            double z = out_b ? out_b[r] : 0.0;
            for (int64_t c = 0; c < e; c++)
                z += out_w[r * e + c] * ctx[t * e + c];
            out[t * e + r] = z;
        }
    free(qkv);
    free(ctx);
    free(p);
}

static void forward_matches_reference(void)
{
    const int64_t e = 6, heads = 3, len = 5, batch = 2;
    uint64_t rng = 11;
    double *in_w = test_random_array(&rng, 3 * e * e, -1, 1);
    double *in_b = test_random_array(&rng, 3 * e, -1, 1);
    double *out_w = test_random_array(&rng, e * e, -1, 1);
    double *out_b = test_random_array(&rng, e, -1, 1);
    double *x = test_random_array(&rng, batch * len * e, -2, 2);
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        fib_graph *g = NULL;
        int32_t in, out, n_groups = 0;
        CHECK_OK(fib_graph_create(&g));
        CHECK_OK(fib_graph_add_input_positions(g, e, len, 1, &in));
        CHECK_OK(fib_graph_add_attention(g, in, heads, FIB_DTYPE_F64, in_w,
                                         with_bias ? in_b : NULL, out_w,
                                         with_bias ? out_b : NULL, FIB_COPY, &out));
        CHECK_OK(fib_graph_num_groups(g, &n_groups));
        CHECK(n_groups == 6 && out == 5);
        int32_t op = -1, n_sources = 0;
        CHECK_OK(fib_graph_group_info(g, 4, &op, NULL, NULL, NULL, NULL, &n_sources, NULL));
        CHECK(op == FIB_OP_ATTEND && n_sources == 3);
        double scale = 0;
        CHECK_OK(fib_graph_block_scalar(g, 4, &scale));
        CHECK(fabs(scale - 1.0 / sqrt(2.0)) < 1e-15);
        double *y = malloc((size_t)(batch * len * e) * sizeof *y);
        double *ref = malloc((size_t)(batch * len * e) * sizeof *ref);
        CHECK_OK(fib_graph_forward(g, batch, FIB_DTYPE_F64, x, y));
        for (int64_t b = 0; b < batch; b++)
            reference_mha(len, e, heads, in_w, with_bias ? in_b : NULL, out_w,
                          with_bias ? out_b : NULL, x + b * len * e, ref + b * len * e);
        CHECK(max_rel_diff(y, ref, batch * len * e) < 1e-12);
        /* The read-out: n_heads, pairs per head, pairs, units. */
        int64_t count = 0, params[64];
        CHECK_OK(fib_graph_block_params(g, 4, params, 64, &count));
        CHECK(count == 1 + heads + 2 * e + 2 * e);
        CHECK(params[0] == heads && params[1] == 2 && params[2] == 2 && params[3] == 2);
        CHECK(params[4] == 0 && params[5] == 0 && params[6] == 1 && params[7] == 1);
        CHECK(params[1 + heads + 2 * e + 2 * 5] == 2 && params[1 + heads + 2 * e + 2 * 5 + 1] == 5);
        const char *name = NULL;
        int64_t shape[4];
        CHECK_OK(fib_graph_tensor_info(g, 4, 0, NULL, shape, &name));
        CHECK(name && strcmp(name, "pair_multiplicity") == 0 && shape[0] == e);
        CHECK(fib_graph_tensor_info(g, 4, 1, NULL, NULL, NULL) == FIB_E_RANGE);
        free(y);
        free(ref);
        fib_graph_free(g);
    }
    free(in_w);
    free(in_b);
    free(out_w);
    free(out_b);
    free(x);
}

/* ---- opfibers against numerical error signals ------------------------- */

/* Sets row i of a dense group's weights to keep + delta (the tests own
 * these graphs, borrowed or copied, so the weights are writable). */
static void shift_row(fib_graph *g, int32_t group, int64_t i, const double *keep,
                      double delta)
{
    fib_dense *d = g->groups[group].block;
    CHECK(g->groups[group].op == FIB_OP_DENSE && d->dtype == FIB_DTYPE_F64);
    for (int64_t k = 0; k < d->n_in; k++)
        ((double *)d->weights)[i * d->ld + k] = keep[k] + delta;
}

/* L = sum_o r_o y_o over a batch of inputs x. */
static double loss(const fib_graph *g, int64_t batch, const double *x, const double *r)
{
    int64_t n_in = 0, n_out = 0;
    fib_graph_io_width(g, &n_in, &n_out);
    double *y = calloc((size_t)(batch * n_out), sizeof *y), l = 0.0;
    CHECK_OK(fib_graph_forward(g, batch, FIB_DTYPE_F64, x, y));
    for (int64_t i = 0; i < batch * n_out; i++)
        l += r[i] * y[i];
    free(y);
    return l;
}

/* sum_k dL/dW[i,k] = sum over positions and samples of unit i's error
 * times the sum of its inputs, for every unit i of a dense group, by central differences (the
 * bias would not do: softmax ignores k's bias). Units of one opfiber class must receive the same error.
 * Returns the number of classes with more than one unit (0 when the check
 * could not bite). */
static int64_t check_opfiber_errors(fib_graph *g, const fib_coloring *opf, int32_t group,
                                    uint64_t seed)
{
    int64_t n_in = 0, n_out = 0, batch = 2, n = test_width(g, group);
    fib_graph_io_width(g, &n_in, &n_out);
    double *x = test_random_array(&seed, batch * n_in, -1.5, 1.5);
    double *r = test_random_array(&seed, batch * n_out, -1, 1);
    double *grad = malloc((size_t)n * sizeof *grad);
    const double h = 1e-5;
    for (int64_t i = 0; i < n; i++) {
        fib_dense *d = g->groups[group].block;
        double keep[64];
        CHECK(d->n_in <= 64);
        memcpy(keep, (double *)d->weights + i * d->ld, (size_t)d->n_in * sizeof *keep);
        shift_row(g, group, i, keep, h);
        double up = loss(g, batch, x, r);
        shift_row(g, group, i, keep, -h);
        double down = loss(g, batch, x, r);
        shift_row(g, group, i, keep, 0.0);
        grad[i] = (up - down) / (2 * h);
    }
    int64_t *cls = malloc((size_t)n * sizeof *cls), merged = 0;
    CHECK_OK(fib_coloring_colors(opf, group, cls, n));
    double scale = 0.0;
    for (int64_t i = 0; i < n; i++)
        scale = fabs(grad[i]) > scale ? fabs(grad[i]) : scale;
    for (int64_t i = 0; i < n; i++) {
        int first = 1;
        for (int64_t j = 0; j < n; j++) {
            if (cls[j] == cls[i] && j < i)
                first = 0;
            if (cls[j] == cls[i] && j != i && fabs(grad[i] - grad[j]) > 1e-6 * (1 + scale)) {
                test_failures++;
                fprintf(stderr, "group %d: units %lld and %lld share opfiber class %lld but "
                        "receive errors %.12g and %.12g\n", (int)group, (long long)i,
                        (long long)j, (long long)cls[i], grad[i], grad[j]);
            }
        }
        if (first) {
            int64_t size = 0;
            for (int64_t j = 0; j < n; j++)
                size += cls[j] == cls[i];
            merged += size > 1;
        }
    }
    if (!(scale > 1e-6))
        fprintf(stderr, "group %d: all errors zero\n", (int)group);
    CHECK(scale > 1e-6); /* the check bites: errors are not all zero */
    free(x);
    free(r);
    free(grad);
    free(cls);
    return merged;
}

/* ---- a real multi-head attention with duplicated projection rows ------- */

/* E = 8, 2 heads of 4: Wq and Wk rows 0 and 1 are equal (q0 = q1, k0 = k1),
 * Wq row 4 equals row 0 (a q class across heads), Wv rows 2 and 3 are equal
 * and so are Wo columns 2 and 3 (core units 2 and 3 merge in covers too). */
static void duplicated_rows_merge_exactly(void)
{
    const int64_t e = 8, heads = 2, len = 6;
    uint64_t rng = 21;
    double *in_w = test_random_array(&rng, 3 * e * e, -1, 1);
    double *in_b = test_random_array(&rng, 3 * e, -0.5, 0.5);
    double *out_w = test_random_array(&rng, e * e, -1, 1);
    double *out_b = test_random_array(&rng, e, -0.5, 0.5);
    for (int64_t c = 0; c < e; c++) {
        in_w[1 * e + c] = in_w[0 * e + c];         /* q1 = q0 */
        in_w[4 * e + c] = in_w[0 * e + c];         /* q4 = q0 (head 1) */
        in_w[(e + 1) * e + c] = in_w[e * e + c];   /* k1 = k0 */
        in_w[(2 * e + 3) * e + c] = in_w[(2 * e + 2) * e + c]; /* v3 = v2 */
        out_w[c * e + 3] = out_w[c * e + 2];
    }
    in_b[1] = in_b[4] = in_b[0];
    in_b[e + 1] = in_b[e];
    in_b[2 * e + 3] = in_b[2 * e + 2];
    fib_graph *g = NULL;
    int32_t in, out;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, e, len, 1, &in));
    CHECK_OK(fib_graph_add_attention(g, in, heads, FIB_DTYPE_F64, in_w, in_b, out_w, out_b, 0,
                                     &out));
    /* groups: 0 input, 1 q, 2 k, 3 v, 4 core, 5 out */
    fib_coloring *fib = test_color(g, FIB_SYM_FIBERS);
    const int64_t q_cls[] = {0, 0, 1, 2, 0, 3, 4, 5};
    const int64_t k_cls[] = {0, 0, 1, 2, 3, 4, 5, 6};
    const int64_t v_cls[] = {0, 1, 2, 2, 3, 4, 5, 6};
    CHECK(same_partition(fib, 1, q_cls, e));
    CHECK(same_partition(fib, 2, k_cls, e));
    CHECK(same_partition(fib, 3, v_cls, e));
    CHECK(same_partition(fib, 4, v_cls, e)); /* core: (head, v class) */
    fib_base *b = NULL;
    CHECK_OK(fib_compress(g, fib, &b));
    const fib_graph *bg = fib_base_graph(b);
    CHECK(test_width(bg, 1) == 6 && test_width(bg, 2) == 7 && test_width(bg, 3) == 7 && test_width(bg, 4) == 7);
    /* Head 0 keeps 3 (q, k) pairs instead of 4: (q0,k0) twice became one
     * pair of multiplicity 2. The scale stays 1/sqrt(4). */
    int64_t params[64], count = 0;
    CHECK_OK(fib_graph_block_params(bg, 4, params, 64, &count));
    CHECK(params[0] == 2 && params[1] == 3 && params[2] == 4);
    double mult[16] = {0}, scale = 0;
    CHECK_OK(fib_graph_read_tensor(bg, 4, 0, FIB_DTYPE_F64, mult, 16));
    CHECK(mult[0] == 2.0 && mult[1] == 1.0 && mult[3] == 1.0);
    CHECK_OK(fib_graph_block_scalar(bg, 4, &scale));
    CHECK(scale == 0.5);
    CHECK(test_output_difference(g, bg, 5, 3, 2.0) < 1e-10);

    /* Opfibers: q0 ~ q1 (same head, each pairs once with k class {0,1}),
     * k0 ~ k1, v2 ~ v3; their error signals agree. */
    fib_coloring *opf = test_color(g, FIB_SYM_OPFIBERS);
    int64_t cls[8];
    CHECK_OK(fib_coloring_colors(opf, 1, cls, e));
    CHECK(cls[0] == cls[1] && cls[0] != cls[4]);
    CHECK_OK(fib_coloring_colors(opf, 2, cls, e));
    CHECK(cls[0] == cls[1]);
    CHECK_OK(fib_coloring_colors(opf, 3, cls, e));
    CHECK(cls[2] == cls[3]);
    for (int32_t grp = 1; grp <= 3; grp++)
        CHECK(check_opfiber_errors(g, opf, grp, 70 + (uint64_t)grp) >= 1);
    /* Covers: still exact, and smaller than the graph. */
    fib_coloring *cov = test_color(g, FIB_SYM_COVERS);
    fib_base *cb = NULL;
    CHECK_OK(fib_compress(g, cov, &cb));
    CHECK(test_width(fib_base_graph(cb), 1) == 7);
    CHECK(test_output_difference(g, fib_base_graph(cb), 6, 3, 2.0) < 1e-10);
    /* A base of the base is the base. */
    fib_coloring *again = test_color(bg, FIB_SYM_FIBERS);
    fib_base *bb = NULL;
    CHECK_OK(fib_compress(bg, again, &bb));
    CHECK(test_width(fib_base_graph(bb), 1) == 6 && test_width(fib_base_graph(bb), 4) == 7);
    CHECK(test_output_difference(bg, fib_base_graph(bb), 7, 3, 2.0) < 1e-10);
    /* Lifting the base back gives the function of the original. */
    fib_graph *lifted = NULL;
    CHECK_OK(fib_lift(b, NULL, &lifted));
    CHECK(test_width(lifted, 1) == e && test_width(lifted, 4) == e);
    CHECK(test_output_difference(g, lifted, 8, 3, 2.0) < 1e-10);
    fib_graph_free(lifted);
    fib_base_free(bb);
    fib_coloring_free(again);
    fib_base_free(cb);
    fib_coloring_free(cov);
    fib_coloring_free(opf);
    fib_base_free(b);
    fib_coloring_free(fib);
    fib_graph_free(g);
    free(in_w);
    free(in_b);
    free(out_w);
    free(out_b);
}

/* ---- planted by lifting random bases ------------------------------------ */

typedef struct plant {
    fib_graph *base, *full;
    int64_t **proj;   /* per group */
    int64_t *widths;  /* full widths */
    int32_t n_groups;
} plant;

static void plant_free(plant *p)
{
    for (int32_t i = 0; i < p->n_groups; i++)
        free(p->proj[i]);
    free(p->proj);
    free(p->widths);
    fib_graph_free(p->base);
    fib_graph_free(p->full);
}

/* Random projections for every group of p->base: identity for inputs and
 * outputs, shared by the groups of `same` (same[i] = the group whose
 * projection group i reuses, or -1). */
static void plant_lift_all(plant *p, uint64_t *rng, const int32_t *same, int max_class)
{
    CHECK_OK(fib_graph_num_groups(p->base, &p->n_groups));
    p->proj = calloc((size_t)p->n_groups, sizeof *p->proj);
    p->widths = calloc((size_t)p->n_groups, sizeof *p->widths);
    for (int32_t i = 0; i < p->n_groups; i++) {
        int64_t k = test_width(p->base, i);
        int32_t op = 0, is_output = 0;
        CHECK_OK(fib_graph_group_info(p->base, i, &op, NULL, NULL, NULL, NULL, NULL, &is_output));
        if (same && same[i] >= 0) {
            p->widths[i] = p->widths[same[i]];
            p->proj[i] = malloc((size_t)p->widths[i] * sizeof *p->proj[i]);
            memcpy(p->proj[i], p->proj[same[i]], (size_t)p->widths[i] * sizeof *p->proj[i]);
        } else if (op == FIB_OP_INPUT || is_output) {
            p->widths[i] = k;
            p->proj[i] = malloc((size_t)k * sizeof *p->proj[i]);
            for (int64_t u = 0; u < k; u++)
                p->proj[i][u] = u;
        } else {
            p->proj[i] = random_projection(rng, k, max_class, &p->widths[i]);
        }
    }
    p->full = plant_by_lift(p->base, p->proj, p->widths);
    if (!p->full)
        fprintf(stderr, "plant_by_lift: %s\n", fib_last_error());
    CHECK(p->full != NULL);
}

/* The planted classes are found exactly, the base has the planted widths
 * and computes the lifted network's function. */
static void check_planted(const plant *p, int32_t symmetry, uint64_t seed)
{
    fib_coloring *c = test_color(p->full, symmetry);
    for (int32_t i = 0; i < p->n_groups; i++) {
        int32_t op = 0, is_output = 0;
        CHECK_OK(fib_graph_group_info(p->full, i, &op, NULL, NULL, NULL, NULL, NULL, &is_output));
        if (op == FIB_OP_INPUT || is_output)
            continue;
        if (!same_partition(c, i, p->proj[i], p->widths[i])) {
            test_failures++;
            fprintf(stderr, "group %d: %lld classes found, %lld planted\n", (int)i,
                    (long long)test_num_classes(c, i), (long long)test_width(p->base, i));
        }
    }
    fib_base *b = NULL;
    CHECK_OK(fib_compress(p->full, c, &b));
    for (int32_t i = 0; i < p->n_groups; i++)
        CHECK(test_width(fib_base_graph(b), i) == test_width(p->base, i));
    CHECK(test_output_difference(p->full, fib_base_graph(b), seed, 3, 2.0) < 1e-10);
    CHECK(test_output_difference(p->base, fib_base_graph(b), seed + 1, 3, 2.0) < 1e-10);
    fib_base_free(b);
    fib_coloring_free(c);
}

static int32_t add_random_dense(fib_graph *g, uint64_t *rng, int32_t source, int64_t n_out,
                                int32_t activation, double **keep)
{
    int64_t n_in = test_width(g, source);
    double *w = test_random_array(rng, n_out * n_in, -1, 1), *b = test_random_array(rng, n_out, -0.5, 0.5);
    int32_t id = -1;
    CHECK_OK(fib_graph_add_dense(g, source, n_out, FIB_DTYPE_F64, w, n_in, b, FIB_COPY, &id));
    CHECK_OK(fib_graph_set_activation(g, id, activation, 0.0));
    free(w);
    free(b);
    (void)keep;
    return id;
}

static int32_t add_random_attention(fib_graph *g, uint64_t *rng, int32_t source, int64_t heads)
{
    int64_t e = test_width(g, source);
    double *in_w = test_random_array(rng, 3 * e * e, -1, 1), *in_b = test_random_array(rng, 3 * e, -0.5, 0.5);
    double *out_w = test_random_array(rng, e * e, -1, 1), *out_b = test_random_array(rng, e, -0.5, 0.5);
    int32_t id = -1;
    CHECK_OK(fib_graph_add_attention(g, source, heads, FIB_DTYPE_F64, in_w, in_b, out_w, out_b,
                                     FIB_COPY, &id));
    free(in_w);
    free(in_b);
    free(out_w);
    free(out_b);
    return id;
}

static int32_t add_random_norm(fib_graph *g, uint64_t *rng, int32_t source, int32_t kind)
{
    int64_t e = test_width(g, source);
    double *w = test_random_array(rng, e, 0.5, 1.5), *b = test_random_array(rng, e, -0.5, 0.5);
    int32_t id = -1;
    CHECK_OK(fib_graph_add_norm(g, source, kind, FIB_DTYPE_F64, w, b, 1e-5, FIB_COPY, &id));
    free(w);
    free(b);
    return id;
}

/* input -> embedding -> attention -> output dense: every group between
 * planted by independent random projections. */
static void planted_attention_found_and_merged(void)
{
    for (int variant = 0; variant < 4; variant++) {
        uint64_t rng = 100 + (uint64_t)variant;
        plant p = {0};
        int32_t in, emb, att, head;
        CHECK_OK(fib_graph_create(&p.base));
        CHECK_OK(fib_graph_add_input_positions(p.base, 3, 5, 1, &in));
        emb = add_random_dense(p.base, &rng, in, 4, FIB_ACT_TANH, NULL);
        att = add_random_attention(p.base, &rng, emb, variant % 2 ? 2 : 1);
        CHECK_OK(fib_graph_set_activation(p.base, att, FIB_ACT_RELU, 0));
        head = add_random_dense(p.base, &rng, att, 2, FIB_ACT_LINEAR, NULL);
        (void)head;
        /* The core reads v unit by unit, so they share a projection (as in a
         * real attention, where core unit d reads v unit d); k shares q's in
         * half of the variants (the lift then pairs (d, d) like an original). */
        int32_t same[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
        same[att - 1] = att - 2;
        if (variant < 2)
            same[att - 3] = att - 4;
        plant_lift_all(&p, &rng, same, 4);
        if (!p.full) {
            plant_free(&p);
            continue;
        }
        /* The lift has heads with several q dims of one class. */
        CHECK(test_width(p.full, 2) > test_width(p.base, 2) || test_width(p.full, 3) > test_width(p.base, 3));
        check_planted(&p, FIB_SYM_FIBERS, 300 + (uint64_t)variant);
        check_planted(&p, FIB_SYM_COVERS, 400 + (uint64_t)variant);
        /* Error signals of q, k, v and the embedding agree inside opfibers,
         * and the lift planted opfibers: some classes have several units. */
        fib_coloring *opf = test_color(p.full, FIB_SYM_OPFIBERS);
        int64_t merged = 0;
        for (int32_t grp = 1; grp <= 4; grp++)
            merged += check_opfiber_errors(p.full, opf, grp, 500 + (uint64_t)grp);
        CHECK(merged >= 1);
        fib_coloring_free(opf);
        plant_free(&p);
    }
}

/* A 2-layer post-norm Transformer encoder (PyTorch's norm_first=False):
 *   x1 = norm1(x + attn(x)), out = norm2(x1 + ff2(act(ff1(x1))))
 * after an embedding, then a linear head; the residual stream shares one
 * projection, every other hidden group its own. */
static void planted_transformer_encoder(void)
{
    for (int variant = 0; variant < 3; variant++) {
        uint64_t rng = 900 + (uint64_t)variant;
        plant p = {0};
        int32_t same[64];
        for (int i = 0; i < 64; i++)
            same[i] = -1;
        int32_t in, x;
        int32_t kind = variant == 2 ? FIB_NORM_RMS : FIB_NORM_LAYER;
        CHECK_OK(fib_graph_create(&p.base));
        CHECK_OK(fib_graph_add_input_positions(p.base, 3, 4, 1, &in));
        x = add_random_dense(p.base, &rng, in, 4, FIB_ACT_LINEAR, NULL);
        int32_t stream = x;
        for (int layer = 0; layer < 2; layer++) {
            int32_t att = add_random_attention(p.base, &rng, x, 2), s1, s2;
            same[att] = stream;
            same[att - 1] = att - 2; /* core reads v unit by unit */
            if (variant == 0)
                same[att - 3] = att - 4; /* k shares q's projection */
            CHECK_OK(fib_graph_add_sum(p.base, x, att, &s1));
            same[s1] = stream;
            int32_t n1 = add_random_norm(p.base, &rng, s1, kind);
            same[n1] = stream;
            int32_t f1 = add_random_dense(p.base, &rng, n1, 5,
                                          variant == 1 ? FIB_ACT_GELU : FIB_ACT_RELU, NULL);
            int32_t f2 = add_random_dense(p.base, &rng, f1, 4, FIB_ACT_LINEAR, NULL);
            same[f2] = stream;
            CHECK_OK(fib_graph_add_sum(p.base, n1, f2, &s2));
            same[s2] = stream;
            x = add_random_norm(p.base, &rng, s2, kind);
            same[x] = stream;
        }
        add_random_dense(p.base, &rng, x, 2, FIB_ACT_LINEAR, NULL);
        plant_lift_all(&p, &rng, same, 3);
        if (!p.full) {
            plant_free(&p);
            continue;
        }
        check_planted(&p, FIB_SYM_FIBERS, 1300 + (uint64_t)variant);
        check_planted(&p, FIB_SYM_COVERS, 1400 + (uint64_t)variant);
        /* Errors agree inside opfibers through norms, sums and attention:
         * the embedding, the first q/k/v, the first feed-forward layer. */
        fib_coloring *opf = test_color(p.full, FIB_SYM_OPFIBERS);
        int64_t merged = 0;
        const int32_t groups[] = {1, 2, 3, 4, 9, 10};
        for (int x2 = 0; x2 < 6; x2++)
            merged += check_opfiber_errors(p.full, opf, groups[x2], 1500 + (uint64_t)x2);
        CHECK(merged >= 1);
        fib_coloring_free(opf);
        plant_free(&p);
    }
}

static void bad_inputs(void)
{
    fib_graph *g = NULL;
    int32_t in, out, n_groups = 0;
    double w[3 * 36] = {0}, ow[36] = {0}, bias[18] = {0};
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, 6, 3, 1, &in));
    CHECK(fib_graph_add_attention(g, in, 4, FIB_DTYPE_F64, w, NULL, ow, NULL, 0, &out) == FIB_E_SHAPE);
    CHECK(fib_graph_add_attention(g, in, 0, FIB_DTYPE_F64, w, NULL, ow, NULL, 0, &out) == FIB_E_SHAPE);
    CHECK(fib_graph_add_attention(NULL, in, 2, FIB_DTYPE_F64, w, NULL, ow, NULL, 0, &out) == FIB_E_NULL);
    CHECK(fib_graph_add_attention(g, in, 2, FIB_DTYPE_F64, NULL, NULL, ow, NULL, 0, &out) == FIB_E_NULL);
    CHECK(fib_graph_add_attention(g, in, 2, FIB_DTYPE_F64, w, NULL, NULL, NULL, 0, &out) == FIB_E_NULL);
    CHECK(fib_graph_add_attention(g, in, 2, FIB_DTYPE_F64, w, NULL, ow, NULL, 0, NULL) == FIB_E_NULL);
    CHECK(fib_graph_add_attention(g, 7, 2, FIB_DTYPE_F64, w, NULL, ow, NULL, 0, &out) == FIB_E_RANGE);
    CHECK(fib_graph_add_attention(g, in, 2, 9, w, NULL, ow, NULL, 0, &out) == FIB_E_INVALID);
    CHECK(fib_graph_add_attention(g, in, 2, FIB_DTYPE_F64, w, NULL, ow, NULL, 8u, &out) == FIB_E_INVALID);
    /* A NaN anywhere (the v rows, the output bias) fails as a whole: no
     * group is left behind. */
    w[2 * 36 + 7] = NAN;
    CHECK(fib_graph_add_attention(g, in, 2, FIB_DTYPE_F64, w, NULL, ow, NULL, 0, &out) == FIB_E_NONFINITE);
    w[2 * 36 + 7] = 0;
    bias[17] = NAN;
    CHECK(fib_graph_add_attention(g, in, 2, FIB_DTYPE_F64, w, bias, ow, NULL, 0, &out) == FIB_E_NONFINITE);
    bias[17] = 0;
    ow[5] = INFINITY;
    CHECK(fib_graph_add_attention(g, in, 2, FIB_DTYPE_F64, w, bias, ow, NULL, 0, &out) == FIB_E_NONFINITE);
    ow[5] = 0;
    CHECK_OK(fib_graph_num_groups(g, &n_groups));
    CHECK(n_groups == 1);
    int32_t consumers_ok = 0;
    CHECK_OK(fib_graph_group_info(g, in, NULL, NULL, NULL, NULL, NULL, NULL, &consumers_ok));
    CHECK(consumers_ok == 1); /* the input is still an output: nothing reads it */
    /* float32 weights work. */
    float wf[3 * 36] = {0}, owf[36] = {0};
    CHECK_OK(fib_graph_add_attention(g, in, 3, FIB_DTYPE_F32, wf, NULL, owf, NULL, 0, &out));
    CHECK(out == 5);
    fib_graph_free(g);
}

int main(void)
{
    RUN(forward_matches_reference);
    RUN(duplicated_rows_merge_exactly);
    RUN(planted_attention_found_and_merged);
    RUN(planted_transformer_encoder);
    RUN(bad_inputs);
    return test_failures ? 1 : 0;
}
