/* The blocks of transformer language models: attention with options
 * (separate q/k/v projections, grouped-query and multi-query attention, the
 * causal mask, rotary position embeddings) against an independent reference
 * written from the published equations (Llama's rotate_half); planted
 * duplicated heads and key/value dimensions found exactly, merged into an
 * exact smaller base, opfibers checked against numerical error signals,
 * lifted back; the token embedding and an LM head tied to it; the
 * tanh-approximated GELU; bad inputs named. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checks.h"
#include "fibration.h"
#include "planted.h"
#include "testing.h"

int test_failures;

typedef struct attn {
    int64_t e, heads, kv, hd;
    int32_t causal;
    int64_t rotary_dim; /* 0: no rotary */
    double theta;
    double *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo; /* biases may be NULL */
} attn;

static void attn_random(attn *w, uint64_t *rng, int with_bias)
{
    int64_t nq = w->heads * w->hd, nkv = w->kv * w->hd;
    w->wq = test_random_array(rng, nq * w->e, -1, 1);
    w->wk = test_random_array(rng, nkv * w->e, -1, 1);
    w->wv = test_random_array(rng, nkv * w->e, -1, 1);
    w->wo = test_random_array(rng, w->e * nq, -1, 1);
    w->bq = with_bias ? test_random_array(rng, nq, -0.5, 0.5) : NULL;
    w->bk = with_bias ? test_random_array(rng, nkv, -0.5, 0.5) : NULL;
    w->bv = with_bias ? test_random_array(rng, nkv, -0.5, 0.5) : NULL;
    w->bo = with_bias ? test_random_array(rng, w->e, -0.5, 0.5) : NULL;
}

static void attn_free(attn *w)
{
    free(w->wq), free(w->wk), free(w->wv), free(w->wo);
    free(w->bq), free(w->bk), free(w->bv), free(w->bo);
}

static void project(int64_t len, int64_t n_in, int64_t n_out, const double *w, const double *b,
                    const double *x, double *y)
{
    for (int64_t t = 0; t < len; t++)
        for (int64_t r = 0; r < n_out; r++) {
            double z = b ? b[r] : 0.0;
            for (int64_t c = 0; c < n_in; c++)
                z += w[r * n_in + c] * x[t * n_in + c];
            y[t * n_out + r] = z;
        }
}

/* Llama's apply_rotary_pos_emb on the first r dimensions of every head of
 * a len x (n_heads * hd) sequence: x * cos + rotate_half(x) * sin with
 * rotate_half(x) = (-x2, x1) and angle t * theta^(-2i/r) for i < r/2. */
static void rotate_half(int64_t len, int64_t n_heads, int64_t hd, int64_t r, double theta,
                        double *x)
{
    int64_t half = r / 2;
    for (int64_t t = 0; t < len; t++)
        for (int64_t h = 0; h < n_heads; h++) {
            double *v = x + t * n_heads * hd + h * hd;
            for (int64_t i = 0; i < half; i++) {
                double angle = (double)t / pow(theta, 2.0 * (double)i / (double)r);
                double x1 = v[i], x2 = v[i + half];
                v[i] = x1 * cos(angle) - x2 * sin(angle);
                v[i + half] = x2 * cos(angle) + x1 * sin(angle);
            }
        }
}

/* The reference: q, k, v projections, rotary, repeat_kv, scaled dot
 * product with the causal mask, softmax, output projection. */
static void reference_attention(const attn *w, int64_t len, const double *x, double *out)
{
    int64_t nq = w->heads * w->hd, nkv = w->kv * w->hd, group = w->heads / w->kv;
    double *q = malloc((size_t)(len * nq) * sizeof *q), *k = malloc((size_t)(len * nkv) * sizeof *k);
    double *v = malloc((size_t)(len * nkv) * sizeof *v), *ctx = calloc((size_t)(len * nq), sizeof *ctx);
    double *p = malloc((size_t)len * sizeof *p);
    project(len, w->e, nq, w->wq, w->bq, x, q);
    project(len, w->e, nkv, w->wk, w->bk, x, k);
    project(len, w->e, nkv, w->wv, w->bv, x, v);
    if (w->rotary_dim) {
        rotate_half(len, w->heads, w->hd, w->rotary_dim, w->theta, q);
        rotate_half(len, w->kv, w->hd, w->rotary_dim, w->theta, k);
    }
    for (int64_t h = 0; h < w->heads; h++) {
        int64_t g = h / group;
        for (int64_t t = 0; t < len; t++) {
            int64_t seen = w->causal ? t + 1 : len;
            double top = -INFINITY, sum = 0.0;
            for (int64_t s = 0; s < seen; s++) {
                double d = 0.0;
                for (int64_t j = 0; j < w->hd; j++)
                    d += q[t * nq + h * w->hd + j] * k[s * nkv + g * w->hd + j];
                p[s] = d / sqrt((double)w->hd);
                top = p[s] > top ? p[s] : top;
            }
            for (int64_t s = 0; s < seen; s++)
                sum += p[s] = exp(p[s] - top);
            for (int64_t j = 0; j < w->hd; j++)
                for (int64_t s = 0; s < seen; s++)
                    ctx[t * nq + h * w->hd + j] += p[s] / sum * v[s * nkv + g * w->hd + j];
        }
    }
    project(len, nq, w->e, w->wo, w->bo, ctx, out);
    free(q), free(k), free(v), free(ctx), free(p);
}

static fib_graph *attn_graph(const attn *w, int64_t len, uint32_t flags)
{
    fib_graph *g = NULL;
    int32_t in, out;
    fib_attention_options o;
    CHECK_OK(fib_attention_options_init(&o, sizeof o));
    o.n_heads = w->heads;
    o.n_kv_heads = w->kv;
    o.head_dim = w->hd;
    o.causal = w->causal;
    if (w->rotary_dim) {
        o.rotary = FIB_ROTARY_HALF;
        o.rotary_dim = w->rotary_dim;
        o.rope_theta = w->theta;
    }
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, w->e, len, 1, &in));
    CHECK_OK(fib_graph_add_attention_ex(g, in, &o, FIB_DTYPE_F64, w->wq, w->bq, w->wk, w->bk,
                                        w->wv, w->bv, w->wo, w->bo, flags, &out));
    return g;
}

/* Every combination of heads (multi-head, grouped-query, multi-query),
 * mask, rotary (full, partial, none) and biases equals the reference. */
static void forward_matches_reference(void)
{
    const int64_t len = 6, batch = 2;
    const int64_t shapes[][4] = {{8, 2, 2, 4}, {8, 4, 2, 4}, {6, 4, 1, 2}, {8, 2, 1, 6}};
    int cases = 0;
    for (int s = 0; s < 4; s++)
        for (int variant = 0; variant < 6; variant++) {
            uint64_t rng = 31 + (uint64_t)(10 * s + variant);
            attn w = {shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], variant % 2,
                      0, 10000.0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
            int rot = variant / 2; /* 0 none, 1 full, 2 the first 2 dimensions */
            w.rotary_dim = rot == 0 ? 0 : rot == 1 ? w.hd : 2;
            w.theta = rot == 2 ? 500000.0 : 10000.0;
            attn_random(&w, &rng, variant % 3 != 0);
            fib_graph *g = attn_graph(&w, len, 0);
            double *x = test_random_array(&rng, batch * len * w.e, -2, 2);
            double *want = malloc((size_t)(batch * len * w.e) * sizeof *want);
            double *got = malloc((size_t)(batch * len * w.e) * sizeof *got);
            for (int64_t b = 0; b < batch; b++)
                reference_attention(&w, len, x + b * len * w.e, want + b * len * w.e);
            CHECK_OK(fib_graph_forward(g, batch, FIB_DTYPE_F64, x, got));
            double d = max_rel_diff(got, want, batch * len * w.e);
            if (!(d < 1e-12)) {
                test_failures++;
                fprintf(stderr, "shape %d variant %d: relative difference %g\n", s, variant, d);
            }
            /* The mask bites: position 0 of a causal attention ignores the rest. */
            if (w.causal) {
                double *x2 = malloc((size_t)(len * w.e) * sizeof *x2);
                double *y2 = malloc((size_t)(len * w.e) * sizeof *y2);
                memcpy(x2, x, (size_t)(len * w.e) * sizeof *x2);
                for (int64_t i = w.e; i < len * w.e; i++)
                    x2[i] += 1.0;
                CHECK_OK(fib_graph_forward(g, 1, FIB_DTYPE_F64, x2, y2));
                CHECK(max_rel_diff(y2, got, w.e) < 1e-12);
                CHECK(max_rel_diff(y2 + w.e, got + w.e, (len - 1) * w.e) > 1e-6);
                free(x2);
                free(y2);
            }
            cases++;
            free(x), free(want), free(got);
            fib_graph_free(g);
            attn_free(&w);
        }
    CHECK(cases == 24);
}

/* ---- opfibers against numerical error signals --------------------------- */

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

/* The error of every unit of a dense group whose weights `w` (n x n_in) the
 * graph borrows: sum_k dL/dW[i,k] by central differences (moving row i of
 * the caller's array). Units of one opfiber class must receive the same
 * error. Returns the number of classes with more than one unit. */
static int64_t check_opfiber_errors(const fib_graph *g, const fib_coloring *opf, int32_t group,
                                    double *w, int64_t n, int64_t n_in, uint64_t seed)
{
    int64_t in = 0, out = 0, batch = 2;
    fib_graph_io_width(g, &in, &out);
    double *x = test_random_array(&seed, batch * in, -1.5, 1.5);
    double *r = test_random_array(&seed, batch * out, -1, 1);
    double *grad = malloc((size_t)n * sizeof *grad), scale = 0.0;
    const double h = 1e-5;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t k = 0; k < n_in; k++)
            w[i * n_in + k] += h;
        double up = loss(g, batch, x, r);
        for (int64_t k = 0; k < n_in; k++)
            w[i * n_in + k] -= 2 * h;
        double down = loss(g, batch, x, r);
        for (int64_t k = 0; k < n_in; k++)
            w[i * n_in + k] += h;
        grad[i] = (up - down) / (2 * h);
        scale = fabs(grad[i]) > scale ? fabs(grad[i]) : scale;
    }
    int64_t *cls = malloc((size_t)n * sizeof *cls), merged = 0;
    CHECK_OK(fib_coloring_colors(opf, group, cls, n));
    for (int64_t i = 0; i < n; i++) {
        int64_t size = 0, first = 1;
        for (int64_t j = 0; j < n; j++) {
            size += cls[j] == cls[i];
            first = first && !(cls[j] == cls[i] && j < i);
            if (cls[j] == cls[i] && fabs(grad[i] - grad[j]) > 1e-6 * (1 + scale)) {
                test_failures++;
                fprintf(stderr, "group %d: units %lld and %lld share opfiber class %lld but "
                        "receive errors %.12g and %.12g\n", (int)group, (long long)i,
                        (long long)j, (long long)cls[i], grad[i], grad[j]);
            }
        }
        merged += size > 1 && first;
    }
    CHECK(scale > 1e-6); /* the check bites: errors are not all zero */
    free(x), free(r), free(grad), free(cls);
    return merged;
}

static void copy_row(double *w, int64_t n_in, int64_t to, int64_t from)
{
    memcpy(w + to * n_in, w + from * n_in, (size_t)n_in * sizeof *w);
}

/* ---- planted: duplicated heads and key/value dimensions ----------------- */

/* E = 8, 4 query heads of 6 dimensions over 2 key/value heads (query heads
 * 0, 1 read kv head 0; 2, 3 read kv head 1), causal, rotary over the first
 * 2 dimensions of a head (0 turns with 1), the other 4 plain. Planted:
 *  - head 1 duplicates head 0 (equal q rows): the same pattern over the
 *    same values, so core units 6..11 merge with 0..5;
 *  - kv head 1's dimensions 1 and 2 (one turning, one plain) and 4 and 5
 *    (both plain) are duplicated in k and v, consistently in both query
 *    heads reading them (q rows 1 = 2 and 4 = 5 in heads 2 and 3), and
 *    the output projection's columns of core units 4 and 5 of heads 2 and
 *    3 are equal (so they also share error signals). */
static const int64_t planted_q_cls[] = {0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5,
                                        12, 13, 13, 15, 16, 16, 18, 19, 19, 21, 22, 22};
static const int64_t planted_kv_cls[] = {0, 1, 2, 3, 4, 5, 6, 7, 7, 9, 10, 10};

/* Copies row `from` of w (n_in wide) to row `to`, plus noise in [-noise, noise). */
static void copy_row_noisy(double *w, int64_t n_in, int64_t to, int64_t from, double noise,
                           uint64_t *rng)
{
    for (int64_t c = 0; c < n_in; c++)
        w[to * n_in + c] = w[from * n_in + c] + (noise > 0 ? test_uniform(rng, -noise, noise) : 0);
}

static void plant_heads_and_kv_dims(attn *w, uint64_t *rng, double noise)
{
    attn_random(w, rng, 1);
    const int64_t e = w->e, hd = w->hd, nq = 24;
    for (int64_t d = 0; d < hd; d++) {
        copy_row_noisy(w->wq, e, hd + d, d, noise, rng);
        w->bq[hd + d] = w->bq[d];
    }
    const int64_t dup[2][2] = {{1, 2}, {4, 5}};
    for (int x = 0; x < 2; x++) {
        int64_t from = dup[x][0], to = dup[x][1];
        copy_row_noisy(w->wk, e, hd + to, hd + from, noise, rng);
        copy_row_noisy(w->wv, e, hd + to, hd + from, noise, rng);
        w->bk[hd + to] = w->bk[hd + from];
        w->bv[hd + to] = w->bv[hd + from];
        for (int64_t h = 2; h < 4; h++) {
            copy_row_noisy(w->wq, e, h * hd + to, h * hd + from, noise, rng);
            w->bq[h * hd + to] = w->bq[h * hd + from];
        }
    }
    for (int64_t r = 0; r < e; r++)
        for (int64_t h = 2; h < 4; h++)
            w->wo[r * nq + h * hd + 5] = w->wo[r * nq + h * hd + 4];
}

static void planted_heads_and_kv_dims(void)
{
    uint64_t rng = 77;
    const int64_t len = 5;
    attn w = {8, 4, 2, 6, 1, 2, 100.0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    plant_heads_and_kv_dims(&w, &rng, 0.0);
    const int64_t e = w.e;
    fib_graph *g = attn_graph(&w, len, 0);
    /* groups: 0 input, 1 q, 2 k, 3 v, 4 core, 5 out */
    fib_coloring *fib = test_color(g, FIB_SYM_FIBERS);
    CHECK(same_partition(fib, 1, planted_q_cls, 24));
    CHECK(same_partition(fib, 2, planted_kv_cls, 12));
    CHECK(same_partition(fib, 3, planted_kv_cls, 12));
    CHECK(same_partition(fib, 4, planted_q_cls, 24));
    fib_base *b = NULL;
    CHECK_OK(fib_compress(g, fib, &b));
    const fib_graph *bg = fib_base_graph(b);
    CHECK(test_width(bg, 1) == 14 && test_width(bg, 2) == 10 && test_width(bg, 3) == 10 &&
          test_width(bg, 4) == 14);
    /* The duplicated head is gone: 3 heads; options (causal | rotary) kept. */
    int64_t count = 0;
    CHECK_OK(fib_graph_block_params(bg, 4, NULL, 0, &count));
    int64_t *params = malloc((size_t)count * sizeof *params);
    CHECK_OK(fib_graph_block_params(bg, 4, params, count, &count));
    CHECK(params[0] == 3);
    int64_t pairs = params[1] + params[2] + params[3];
    CHECK(count == 1 + 3 + 2 * pairs + 2 * 14 + 1 + pairs);
    CHECK(params[1 + 3 + 2 * pairs + 2 * 14] == 3);
    free(params);
    CHECK(test_output_difference(g, bg, 5, 3, 2.0) < 1e-10);

    /* Opfibers: error signals agree inside every class, and the planted
     * plain duplicates (4 and 5) share classes in q, k and v. Dimensions 1
     * and 2 do not: one turns, so their errors differ. */
    fib_coloring *opf = test_color(g, FIB_SYM_OPFIBERS);
    CHECK(check_opfiber_errors(g, opf, 1, w.wq, 24, e, 81) == 2);
    CHECK(check_opfiber_errors(g, opf, 2, w.wk, 12, e, 82) == 1);
    CHECK(check_opfiber_errors(g, opf, 3, w.wv, 12, e, 83) == 1);
    fib_coloring *cov = test_color(g, FIB_SYM_COVERS);
    fib_base *cb = NULL;
    CHECK_OK(fib_compress(g, cov, &cb));
    CHECK(test_width(fib_base_graph(cb), 2) == 11);
    CHECK(test_output_difference(g, fib_base_graph(cb), 6, 3, 2.0) < 1e-10);
    /* A base of the base is the base; the lift computes the original. */
    fib_coloring *again = test_color(bg, FIB_SYM_FIBERS);
    fib_base *bb = NULL;
    CHECK_OK(fib_compress(bg, again, &bb));
    CHECK(test_width(fib_base_graph(bb), 1) == 14 && test_width(fib_base_graph(bb), 4) == 14);
    CHECK(test_output_difference(bg, fib_base_graph(bb), 7, 3, 2.0) < 1e-10);
    fib_graph *lifted = NULL;
    CHECK_OK(fib_lift(b, NULL, &lifted));
    CHECK(test_width(lifted, 1) == 24 && test_width(lifted, 4) == 24);
    CHECK(test_output_difference(g, lifted, 8, 3, 2.0) < 1e-10);
    fib_coloring *lifted_fib = test_color(lifted, FIB_SYM_FIBERS);
    CHECK(test_num_classes(lifted_fib, 1) == 14 && test_num_classes(lifted_fib, 4) == 14);
    fib_coloring_free(lifted_fib);
    fib_graph_free(lifted);
    fib_base_free(bb);
    fib_coloring_free(again);
    fib_base_free(cb);
    fib_coloring_free(cov);
    fib_coloring_free(opf);
    fib_base_free(b);
    fib_coloring_free(fib);
    fib_graph_free(g);
    attn_free(&w);
}

/* The same plant with every copied row off by up to 1e-9: exact fibers see
 * no duplicate, an absolute tolerance of 1e-6 finds the planted classes
 * (head labels included), and its base is within the tolerance's reach. */
static void tolerance_finds_near_duplicates(void)
{
    uint64_t rng = 78;
    attn w = {8, 4, 2, 6, 1, 2, 100.0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    plant_heads_and_kv_dims(&w, &rng, 1e-9);
    fib_graph *g = attn_graph(&w, 5, 0);
    fib_coloring *exact = test_color(g, FIB_SYM_FIBERS);
    CHECK(test_num_classes(exact, 1) == 24 && test_num_classes(exact, 4) == 24);
    fib_color_options o;
    CHECK_OK(fib_color_options_init(&o, sizeof o));
    o.tolerance = FIB_TOL_ABS;
    o.eps = 1e-6;
    fib_coloring *near = NULL;
    CHECK_OK(fib_color(g, &o, &near));
    CHECK(same_partition(near, 1, planted_q_cls, 24));
    CHECK(same_partition(near, 2, planted_kv_cls, 12));
    CHECK(same_partition(near, 3, planted_kv_cls, 12));
    CHECK(same_partition(near, 4, planted_q_cls, 24));
    fib_base *b = NULL;
    CHECK_OK(fib_compress(g, near, &b));
    double d = test_output_difference(g, fib_base_graph(b), 10, 3, 2.0);
    CHECK(d < 1e-6 && d > 0.0);
    fib_base_free(b);
    fib_coloring_free(near);
    fib_coloring_free(exact);
    fib_graph_free(g);
    attn_free(&w);
}

/* One kv head read by two query heads that differ only in the order of two
 * dimensions whose k rows are equal: unrotated they attend alike (their core
 * units merge); rotated they do not (dimensions 0 and 1 turn at other
 * frequencies), and their units stay apart. Both bases are exact. */
static void rotation_keeps_permuted_heads_apart(void)
{
    for (int rot = 0; rot < 2; rot++) {
        uint64_t rng = 91;
        attn w = {4, 2, 1, 4, 0, rot ? 4 : 0, 10000.0, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                  NULL};
        attn_random(&w, &rng, 0);
        /* k rows 0 and 1 equal; head 1's q rows are head 0's with 0 and 1
         * swapped: the unrotated scores agree term by term. */
        copy_row(w.wk, w.e, 1, 0);
        copy_row(w.wq, w.e, 4, 1);
        copy_row(w.wq, w.e, 5, 0);
        copy_row(w.wq, w.e, 6, 2);
        copy_row(w.wq, w.e, 7, 3);
        fib_graph *g = attn_graph(&w, 5, 0);
        fib_coloring *fib = test_color(g, FIB_SYM_FIBERS);
        int64_t cls[8];
        CHECK_OK(fib_coloring_colors(fib, 4, cls, 8));
        /* core units of head 1 read the same v dims as head 0's */
        CHECK(rot ? cls[4] != cls[0] : cls[4] == cls[0]);
        fib_base *b = NULL;
        CHECK_OK(fib_compress(g, fib, &b));
        CHECK(test_output_difference(g, fib_base_graph(b), 9, 3, 2.0) < 1e-10);
        fib_base_free(b);
        fib_coloring_free(fib);
        fib_graph_free(g);
        attn_free(&w);
    }
}

/* ---- token embedding and a tied LM head -------------------------------- */

/* vocab 6, hidden 4: tokens -> embedding -> RMSNorm -> LM head borrowing
 * the embedding matrix. Hidden dimensions 1 and 2 are duplicated (equal
 * columns of E and equal norm weights): they merge in the embedding and the
 * norm, and the base's two maps still hold one matrix: the head's weights
 * are the embedding's transposed, scaled by the class sizes. */
static void token_embedding_and_tied_head(void)
{
    const int64_t vocab = 6, hidden = 4, len = 3;
    uint64_t rng = 55;
    double *emb = test_random_array(&rng, vocab * hidden, -1, 1);
    for (int64_t v = 0; v < vocab; v++)
        emb[v * hidden + 2] = emb[v * hidden + 1];
    double gamma[4] = {1.2, 0.7, 0.7, 0.9};
    fib_graph *g = NULL;
    int32_t in, e, n, head;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, vocab, len, 1, &in));
    CHECK_OK(fib_graph_add_token_embedding(g, in, hidden, FIB_DTYPE_F64, emb, &e));
    CHECK_OK(fib_graph_add_norm(g, e, FIB_NORM_RMS, FIB_DTYPE_F64, gamma, NULL, 1e-6, 0, &n));
    CHECK_OK(fib_graph_add_dense(g, n, vocab, FIB_DTYPE_F64, emb, hidden, NULL, 0, &head));
    /* One-hot tokens 3, 0, 5 give those rows of E (the copy is the
     * library's: changing the caller's matrix afterwards changes the head
     * only). */
    double x[3 * 6] = {0}, weights[4 * 6];
    x[0 * vocab + 3] = x[1 * vocab + 0] = x[2 * vocab + 5] = 1.0;
    CHECK_OK(fib_graph_read_dense(g, e, FIB_DTYPE_F64, weights, vocab, NULL));
    for (int64_t v = 0; v < vocab; v++)
        for (int64_t d = 0; d < hidden; d++)
            CHECK(weights[d * vocab + v] == emb[v * hidden + d]);
    double y[3 * 6];
    CHECK_OK(fib_graph_forward(g, 1, FIB_DTYPE_F64, x, y));
    const int64_t tokens[3] = {3, 0, 5};
    for (int64_t t = 0; t < len; t++) {
        const double *row = emb + tokens[t] * hidden;
        double ms = 0.0;
        for (int64_t d = 0; d < hidden; d++)
            ms += row[d] * row[d] / (double)hidden;
        for (int64_t o = 0; o < vocab; o++) {
            double z = 0.0;
            for (int64_t d = 0; d < hidden; d++)
                z += emb[o * hidden + d] * gamma[d] * row[d] / sqrt(ms + 1e-6);
            CHECK(fabs(y[t * vocab + o] - z) < 1e-12 * (1 + fabs(z)));
        }
    }
    fib_coloring *fib = test_color(g, FIB_SYM_FIBERS);
    const int64_t h_cls[] = {0, 1, 1, 3};
    CHECK(same_partition(fib, e, h_cls, hidden));
    CHECK(same_partition(fib, n, h_cls, hidden));
    fib_base *b = NULL;
    CHECK_OK(fib_compress(g, fib, &b));
    const fib_graph *bg = fib_base_graph(b);
    CHECK(test_width(bg, e) == 3);
    CHECK(test_output_difference(g, bg, 4, 2, 1.0) < 1e-10);
    double be[3 * 6], bh[6 * 3];
    const double class_size[3] = {1, 2, 1};
    CHECK_OK(fib_graph_read_dense(bg, e, FIB_DTYPE_F64, be, vocab, NULL));
    CHECK_OK(fib_graph_read_dense(bg, head, FIB_DTYPE_F64, bh, 3, NULL));
    for (int64_t v = 0; v < vocab; v++)
        for (int64_t c = 0; c < 3; c++)
            CHECK(fabs(bh[v * 3 + c] - class_size[c] * be[c * vocab + v]) < 1e-12);
    fib_base_free(b);
    fib_coloring_free(fib);
    fib_graph_free(g);
    free(emb);
}

/* PyTorch's gelu(approximate='tanh') at a few points, and its name. */
static void gelu_tanh_values(void)
{
    fib_graph *g = NULL;
    int32_t in, d;
    double w = 1.0, x[5] = {-3.0, -0.5, 0.0, 0.7, 2.5}, y[5];
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, 1, &in));
    CHECK_OK(fib_graph_add_dense(g, in, 1, FIB_DTYPE_F64, &w, 1, NULL, 0, &d));
    CHECK_OK(fib_graph_set_activation(g, d, FIB_ACT_GELU_TANH, 0.0));
    CHECK_OK(fib_graph_forward(g, 5, FIB_DTYPE_F64, x, y));
    const double pi = 3.14159265358979323846;
    for (int i = 0; i < 5; i++) {
        double z = 0.5 * x[i] * (1 + tanh(sqrt(2 / pi) * (x[i] + 0.044715 * pow(x[i], 3))));
        CHECK(fabs(y[i] - z) < 1e-15);
    }
    /* it is not the exact GELU */
    CHECK(fabs(y[3] - 0.5 * 0.7 * (1 + erf(0.7 / sqrt(2.0)))) > 1e-5);
    fib_graph_free(g);
}

static void bad_inputs(void)
{
    uint64_t rng = 5;
    attn w = {8, 4, 2, 2, 0, 0, 10000.0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    attn_random(&w, &rng, 0);
    fib_graph *g = NULL;
    int32_t in, out, n_groups = 0;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, 8, 3, 1, &in));
    fib_attention_options o;
    expect(fib_attention_options_init(&o, sizeof o - 1), FIB_E_INVALID, "struct_size",
           "options too small");
    CHECK_OK(fib_attention_options_init(&o, sizeof o));
    CHECK(o.n_heads == 1 && o.rope_theta == 10000.0 && o.rotary == FIB_ROTARY_NONE);
    o.n_heads = 4;
    o.n_kv_heads = 3;
    expect(fib_graph_add_attention_ex(g, in, &o, FIB_DTYPE_F64, w.wq, NULL, w.wk, NULL, w.wv,
                                      NULL, w.wo, NULL, 0, &out),
           FIB_E_SHAPE, "n_kv_heads 3", "kv heads not dividing");
    o.n_kv_heads = 2;
    o.rotary_dim = 2;
    expect(fib_graph_add_attention_ex(g, in, &o, FIB_DTYPE_F64, w.wq, NULL, w.wk, NULL, w.wv,
                                      NULL, w.wo, NULL, 0, &out),
           FIB_E_INVALID, "rotary_dim 2 without rotary", "rotary_dim alone");
    o.rotary = FIB_ROTARY_HALF;
    o.rotary_dim = 3;
    expect(fib_graph_add_attention_ex(g, in, &o, FIB_DTYPE_F64, w.wq, NULL, w.wk, NULL, w.wv,
                                      NULL, w.wo, NULL, 0, &out),
           FIB_E_SHAPE, "rotary_dim 3", "odd rotary_dim");
    o.rotary_dim = 0;
    o.rope_theta = NAN;
    expect(fib_graph_add_attention_ex(g, in, &o, FIB_DTYPE_F64, w.wq, NULL, w.wk, NULL, w.wv,
                                      NULL, w.wo, NULL, 0, &out),
           FIB_E_INVALID, "rope_theta", "NaN theta");
    o.rope_theta = 10000.0;
    o.rotary = 7;
    expect(fib_graph_add_attention_ex(g, in, &o, FIB_DTYPE_F64, w.wq, NULL, w.wk, NULL, w.wv,
                                      NULL, w.wo, NULL, 0, &out),
           FIB_E_INVALID, "rotary kind 7", "unknown rotary");
    o.rotary = FIB_ROTARY_HALF;
    o.causal = 2;
    expect(fib_graph_add_attention_ex(g, in, &o, FIB_DTYPE_F64, w.wq, NULL, w.wk, NULL, w.wv,
                                      NULL, w.wo, NULL, 0, &out),
           FIB_E_INVALID, "causal", "causal not 0 or 1");
    o.causal = 1;
    expect(fib_graph_add_attention_ex(g, in, &o, FIB_DTYPE_F64, w.wq, NULL, NULL, NULL, w.wv,
                                      NULL, w.wo, NULL, 0, &out),
           FIB_E_NULL, "k_weight", "NULL k");
    /* A NaN in v fails after q and k were added: no group is left behind. */
    w.wv[3] = NAN;
    expect(fib_graph_add_attention_ex(g, in, &o, FIB_DTYPE_F64, w.wq, NULL, w.wk, NULL, w.wv,
                                      NULL, w.wo, NULL, 0, &out),
           FIB_E_NONFINITE, "NaN", "NaN in v");
    CHECK_OK(fib_graph_num_groups(g, &n_groups));
    CHECK(n_groups == 1);
    w.wv[3] = 0.5;
    o.struct_size = 8;
    expect(fib_graph_add_attention_ex(g, in, &o, FIB_DTYPE_F64, w.wq, NULL, w.wk, NULL, w.wv,
                                      NULL, w.wo, NULL, 0, &out),
           FIB_E_INVALID, "struct_size", "struct_size not set");
    o.struct_size = sizeof o;
    CHECK_OK(fib_graph_add_attention_ex(g, in, &o, FIB_DTYPE_F64, w.wq, NULL, w.wk, NULL, w.wv,
                                        NULL, w.wo, NULL, 0, &out));
    /* Embedding: a NaN is named in the caller's layout [token, dimension]. */
    double emb[8 * 3];
    for (int i = 0; i < 24; i++)
        emb[i] = 0.1 * i;
    emb[5 * 3 + 2] = INFINITY;
    expect(fib_graph_add_token_embedding(g, in, 3, FIB_DTYPE_F64, emb, &out), FIB_E_NONFINITE,
           "embedding[5, 2]", "infinite embedding");
    expect(fib_graph_add_token_embedding(g, in, 0, FIB_DTYPE_F64, emb, &out), FIB_E_SHAPE,
           "hidden 0", "no hidden");
    expect(fib_graph_add_token_embedding(g, in, 3, FIB_DTYPE_F64, NULL, &out), FIB_E_NULL,
           "embedding", "NULL embedding");
    expect(fib_graph_add_token_embedding(g, 99, 3, FIB_DTYPE_F64, emb, &out), FIB_E_RANGE,
           "group 99", "bad source");
    fib_graph_free(g);
    attn_free(&w);
}

int main(void)
{
    RUN(forward_matches_reference);
    RUN(planted_heads_and_kv_dims);
    RUN(tolerance_finds_near_duplicates);
    RUN(rotation_keeps_permuted_heads_apart);
    RUN(token_embedding_and_tied_head);
    RUN(gelu_tanh_values);
    RUN(bad_inputs);
    return test_failures ? 1 : 0;
}
