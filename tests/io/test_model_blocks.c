/* Model files hold every kind of block (format version 2): each block kind,
 * a CNN, a 2-layer LSTM with a head, a GRU, a 2-layer Transformer encoder,
 * and the bases of planted versions of each (gathers, attention pairs and
 * multiplicities) go through save -> load and come back identical: groups,
 * ops, activations, names, positions, tensors (bit for bit, same dtype),
 * params, scalars, colourings and forward outputs; a loaded base lifts to
 * the same network as the original base. Hostile metadata gives
 * FIB_E_FORMAT naming the group and the field. */
#include "checks.h"
#include "compress/compress.h"
#include "io/safetensors.h"
#include "plant_lift.h"
#include "planted.h"
#include "testing.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int test_failures;

static char tmpdir[256];
static int n_round_trips, n_base_round_trips, n_hostile;

static void tmp_path(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", tmpdir, name);
}

static void *rand_array(uint64_t *rng, int64_t n, int32_t dtype, double lo, double hi)
{
    void *a = malloc((size_t)n * (dtype == FIB_DTYPE_F32 ? 4 : 8));
    for (int64_t i = 0; i < n; i++) {
        double v = test_uniform(rng, lo, hi);
        if (dtype == FIB_DTYPE_F32)
            ((float *)a)[i] = (float)v;
        else
            ((double *)a)[i] = v;
    }
    return a;
}

static int64_t width(const fib_graph *g, int32_t group)
{
    int64_t n = 0;
    fib_graph_group_info(g, group, NULL, &n, NULL, NULL, NULL, NULL, NULL);
    return n;
}

/* ---- builders ------------------------------------------------------------ */

static int32_t dense(fib_graph *g, uint64_t *rng, int32_t dt, int32_t src, int64_t n,
                     int32_t act, const char *name)
{
    int64_t in = width(g, src);
    void *w = rand_array(rng, n * in, dt, -1, 1), *b = rand_array(rng, n, dt, -0.5, 0.5);
    int32_t id = -1;
    CHECK_OK(fib_graph_add_dense(g, src, n, dt, w, in, b, FIB_COPY, &id));
    CHECK_OK(fib_graph_set_activation(g, id, act, act == FIB_ACT_LEAKY_RELU ? 0.2 : 0));
    if (name)
        CHECK_OK(fib_graph_set_group_name(g, id, name));
    free(w);
    free(b);
    return id;
}

/* input 6 -> dense -> dense -> sum (residual) -> dense 3 */
static fib_graph *build_mlp(int32_t dt, uint64_t seed)
{
    uint64_t rng = seed;
    fib_graph *g = NULL;
    int32_t in, h1, h2, s;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, 6, &in));
    h1 = dense(g, &rng, dt, in, 5, FIB_ACT_RELU, "h1");
    h2 = dense(g, &rng, dt, h1, 5, FIB_ACT_LEAKY_RELU, "h2");
    CHECK_OK(fib_graph_add_sum(g, h1, h2, &s));
    CHECK_OK(fib_graph_set_activation(g, s, FIB_ACT_TANH, 0));
    CHECK_OK(fib_graph_set_group_eps(g, s, 0.125));
    dense(g, &rng, dt, s, 3, FIB_ACT_LINEAR, "out");
    return g;
}

/* 2 channels 6x6 -> conv (groups 2) -> affine -> max pool -> conv -> avg
 * pool (padded) -> flatten -> dense 3 */
static fib_graph *build_cnn(int32_t dt, uint64_t seed, int64_t c1, int64_t c2)
{
    uint64_t rng = seed;
    fib_graph *g = NULL;
    int32_t in, a, b, c, d, e, f;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, 2, 6, 6, &in));
    int64_t groups = c1 % 2 == 0 ? 2 : 1;
    void *w1 = rand_array(&rng, c1 * (2 / groups) * 9, dt, -1, 1);
    void *b1 = rand_array(&rng, c1, dt, -0.5, 0.5);
    CHECK_OK(fib_graph_add_conv(g, in, c1, 3, 3, 1, 1, 1, 1, groups, dt, w1, b1, FIB_COPY, &a));
    CHECK_OK(fib_graph_set_activation(g, a, FIB_ACT_RELU, 0));
    CHECK_OK(fib_graph_set_group_name(g, a, "conv1"));
    void *sc = rand_array(&rng, c1, dt, 0.5, 1.5), *sh = rand_array(&rng, c1, dt, -0.5, 0.5);
    CHECK_OK(fib_graph_add_affine(g, a, dt, sc, sh, FIB_COPY, &b));
    CHECK_OK(fib_graph_add_pool(g, b, FIB_POOL_MAX, 2, 2, 2, 2, 0, 0, &c));
    void *w2 = rand_array(&rng, c2 * c1 * 4, dt, -1, 1);
    CHECK_OK(fib_graph_add_conv(g, c, c2, 2, 2, 1, 1, 0, 0, 1, dt, w2, NULL, FIB_COPY, &d));
    CHECK_OK(fib_graph_set_activation(g, d, FIB_ACT_SILU, 0));
    CHECK_OK(fib_graph_add_pool(g, d, FIB_POOL_AVG, 2, 2, 1, 1, 1, 1, &e));
    CHECK_OK(fib_graph_add_flatten(g, e, &f));
    dense(g, &rng, dt, f, 3, FIB_ACT_LINEAR, NULL);
    free(w1), free(b1), free(sc), free(sh), free(w2);
    return g;
}

static int32_t gated(fib_graph *g, uint64_t *rng, int32_t dt, int32_t op, int32_t src,
                     int64_t h, bool biases)
{
    int64_t in = width(g, src), rows = (op == FIB_OP_LSTM ? 4 : 3) * h;
    void *wi = rand_array(rng, rows * in, dt, -1, 1), *wh = rand_array(rng, rows * h, dt, -1, 1);
    void *bi = rand_array(rng, rows, dt, -0.5, 0.5), *bh = rand_array(rng, rows, dt, -0.5, 0.5);
    int32_t id = -1;
    if (op == FIB_OP_LSTM)
        CHECK_OK(fib_graph_add_lstm(g, src, h, dt, wi, wh, bi, biases ? bh : NULL, FIB_COPY, &id));
    else
        CHECK_OK(fib_graph_add_gru(g, src, h, dt, wi, wh, biases ? bi : NULL, bh, FIB_COPY, &id));
    free(wi), free(wh), free(bi), free(bh);
    return id;
}

/* sequence of 5 steps x 3 features -> rnn -> rnn -> last step -> dense 2 */
static fib_graph *build_rnn(int32_t dt, int32_t op, uint64_t seed, int64_t h1, int64_t h2)
{
    uint64_t rng = seed;
    fib_graph *g = NULL;
    int32_t in, l1, l2, last;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, 3, 5, 1, &in));
    l1 = gated(g, &rng, dt, op, in, h1, true);
    l2 = gated(g, &rng, dt, op, l1, h2, false);
    CHECK_OK(fib_graph_add_last_step(g, l2, &last));
    CHECK_OK(fib_graph_set_group_name(g, last, "last"));
    dense(g, &rng, dt, last, 2, FIB_ACT_SIGMOID, "head");
    return g;
}

static int32_t attention(fib_graph *g, uint64_t *rng, int32_t dt, int32_t src, int64_t heads)
{
    int64_t e = width(g, src);
    void *iw = rand_array(rng, 3 * e * e, dt, -1, 1), *ib = rand_array(rng, 3 * e, dt, -0.5, 0.5);
    void *ow = rand_array(rng, e * e, dt, -1, 1), *ob = rand_array(rng, e, dt, -0.5, 0.5);
    int32_t id = -1;
    CHECK_OK(fib_graph_add_attention(g, src, heads, dt, iw, ib, ow, ob, FIB_COPY, &id));
    free(iw), free(ib), free(ow), free(ob);
    return id;
}

static int32_t norm(fib_graph *g, uint64_t *rng, int32_t dt, int32_t src, int32_t kind,
                    bool affine)
{
    int64_t e = width(g, src);
    void *w = rand_array(rng, e, dt, 0.5, 1.5), *b = rand_array(rng, e, dt, -0.5, 0.5);
    int32_t id = -1;
    CHECK_OK(fib_graph_add_norm(g, src, kind, dt, affine ? w : NULL, affine ? b : NULL,
                                1e-5, FIB_COPY, &id));
    free(w), free(b);
    return id;
}

/* A 2-layer post-norm Transformer encoder (LayerNorm, then RMSNorm). */
static fib_graph *build_transformer(int32_t dt, uint64_t seed, int64_t e, int64_t ff)
{
    uint64_t rng = seed;
    fib_graph *g = NULL;
    int32_t in, x;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, 3, 4, 1, &in));
    x = dense(g, &rng, dt, in, e, FIB_ACT_LINEAR, NULL);
    for (int layer = 0; layer < 2; layer++) {
        int32_t kind = layer ? FIB_NORM_RMS : FIB_NORM_LAYER, s1, s2;
        int32_t att = attention(g, &rng, dt, x, 2);
        CHECK_OK(fib_graph_add_sum(g, x, att, &s1));
        int32_t n1 = norm(g, &rng, dt, s1, kind, true);
        int32_t f1 = dense(g, &rng, dt, n1, ff, FIB_ACT_GELU, NULL);
        int32_t f2 = dense(g, &rng, dt, f1, e, FIB_ACT_LINEAR, NULL);
        CHECK_OK(fib_graph_add_sum(g, n1, f2, &s2));
        x = norm(g, &rng, dt, s2, kind, layer == 0);
    }
    dense(g, &rng, dt, x, 2, FIB_ACT_LINEAR, NULL);
    return g;
}

/* A Llama/Qwen2-style decoder layer: one-hot tokens (vocab 7) -> token
 * embedding 8 -> RMSNorm -> attention (4 query heads of 2 over 2 kv heads,
 * causal, rotary, q/k/v biases) -> residual -> RMSNorm -> gated MLP
 * (gate gelu_tanh, up, product, down; or, not gated, gelu_tanh and down)
 * -> residual -> RMSNorm -> an LM head holding the embedding matrix. The
 * planted bases use the MLP without a gate: a random lift makes the
 * product's factors read twice, whose opfibers are not defined. */
static fib_graph *build_decoder(int32_t dt, uint64_t seed, bool gated_mlp)
{
    uint64_t rng = seed;
    const int64_t vocab = 7, e = 8;
    fib_graph *g = NULL;
    int32_t in, x, att, s1, gate, up, prod, s2;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, vocab, 5, 1, &in));
    void *emb = rand_array(&rng, vocab * e, dt, -1, 1);
    CHECK_OK(fib_graph_add_token_embedding(g, in, e, dt, emb, &x));
    int32_t n1 = norm(g, &rng, dt, x, FIB_NORM_RMS, false);
    fib_attention_options o;
    CHECK_OK(fib_attention_options_init(&o, sizeof o));
    o.n_heads = 4;
    o.n_kv_heads = 2;
    o.causal = 1;
    o.rotary = FIB_ROTARY_HALF;
    void *wq = rand_array(&rng, e * e, dt, -1, 1), *bq = rand_array(&rng, e, dt, -0.5, 0.5);
    void *wk = rand_array(&rng, e / 2 * e, dt, -1, 1), *bk = rand_array(&rng, e / 2, dt, -0.5, 0.5);
    void *wv = rand_array(&rng, e / 2 * e, dt, -1, 1), *bv = rand_array(&rng, e / 2, dt, -0.5, 0.5);
    void *wo = rand_array(&rng, e * e, dt, -1, 1);
    CHECK_OK(fib_graph_add_attention_ex(g, n1, &o, dt, wq, bq, wk, bk, wv, bv, wo, NULL,
                                        FIB_COPY, &att));
    CHECK_OK(fib_graph_add_sum(g, x, att, &s1));
    int32_t n2 = norm(g, &rng, dt, s1, FIB_NORM_RMS, false);
    gate = dense(g, &rng, dt, n2, 6, FIB_ACT_GELU_TANH, NULL);
    prod = gate;
    if (gated_mlp) {
        up = dense(g, &rng, dt, n2, 6, FIB_ACT_LINEAR, NULL);
        CHECK_OK(fib_graph_add_product(g, gate, up, &prod));
    }
    CHECK_OK(fib_graph_add_sum(g, s1, dense(g, &rng, dt, prod, e, FIB_ACT_LINEAR, NULL), &s2));
    int32_t nf = norm(g, &rng, dt, s2, FIB_NORM_RMS, false), head;
    CHECK_OK(fib_graph_add_dense(g, nf, vocab, dt, emb, e, NULL, FIB_COPY, &head));
    free(emb), free(wq), free(bq), free(wk), free(bk), free(wv), free(bv), free(wo);
    return g;
}

/* A Vision Transformer's ends: patches (a dense per pixel), a class token,
 * a position embedding, self-attention, the class token's position. */
static fib_graph *build_vit(int32_t dt, uint64_t seed)
{
    uint64_t rng = seed;
    fib_graph *g = NULL;
    int32_t in, pre, shifted, sum, step;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, 3, 2, 2, &in));
    int32_t x = dense(g, &rng, dt, in, 4, FIB_ACT_LINEAR, NULL);
    void *token = rand_array(&rng, 4, dt, -1, 1), *pos = rand_array(&rng, 5 * 4, dt, -1, 1);
    CHECK_OK(fib_graph_add_prepend(g, x, 1, dt, token, &pre));
    CHECK_OK(fib_graph_add_position_shift(g, pre, dt, pos, &shifted));
    free(token), free(pos);
    int32_t att = attention(g, &rng, dt, shifted, 2);
    CHECK_OK(fib_graph_add_sum(g, shifted, att, &sum));
    CHECK_OK(fib_graph_add_select_step(g, sum, 2, &step));
    dense(g, &rng, dt, step, 2, FIB_ACT_LINEAR, NULL);
    return g;
}

/* ---- comparison ---------------------------------------------------------- */

static bool same_bits(const void *a, const void *b, size_t n)
{
    return memcmp(a, b, n) == 0;
}

static void check_same_colorings(const fib_graph *a, const fib_graph *b)
{
    const int32_t syms[] = {FIB_SYM_FIBERS, FIB_SYM_OPFIBERS, FIB_SYM_COVERS};
    int32_t n = a->n_groups;
    for (int s = 0; s < 3; s++) {
        fib_coloring *ca = test_color(a, syms[s]), *cb = test_color(b, syms[s]);
        for (int32_t i = 0; ca && cb && i < n; i++) {
            int64_t w = width(a, i);
            int64_t *x = malloc((size_t)w * sizeof *x), *y = malloc((size_t)w * sizeof *y);
            CHECK_OK(fib_coloring_colors(ca, i, x, w));
            CHECK_OK(fib_coloring_colors(cb, i, y, w));
            if (!same_bits(x, y, (size_t)w * sizeof *x)) {
                test_failures++;
                fprintf(stderr, "group %d: colourings (symmetry %d) differ\n", (int)i,
                        (int)syms[s]);
            }
            free(x), free(y);
        }
        fib_coloring_free(ca);
        fib_coloring_free(cb);
    }
}

static void check_same_outputs(const fib_graph *a, const fib_graph *b, uint64_t seed)
{
    int64_t n_in = 0, n_out = 0, n_in2 = 0, n_out2 = 0, batch = 3;
    CHECK_OK(fib_graph_io_width(a, &n_in, &n_out));
    CHECK_OK(fib_graph_io_width(b, &n_in2, &n_out2));
    CHECK(n_in == n_in2 && n_out == n_out2);
    if (n_in != n_in2 || n_out != n_out2)
        return;
    uint64_t rng = seed;
    double *x = rand_array(&rng, batch * n_in, FIB_DTYPE_F64, -1, 1);
    double *ya = calloc((size_t)(batch * n_out), sizeof *ya);
    double *yb = calloc((size_t)(batch * n_out), sizeof *yb);
    CHECK_OK(fib_graph_forward(a, batch, FIB_DTYPE_F64, x, ya));
    CHECK_OK(fib_graph_forward(b, batch, FIB_DTYPE_F64, x, yb));
    CHECK(same_bits(ya, yb, (size_t)(batch * n_out) * sizeof *ya));
    free(x), free(ya), free(yb);
}

/* Everything the API shows of a group, and the internals it does not. */
static void check_identical(const fib_graph *a, const fib_graph *b, const char *what)
{
    int before = test_failures;
    CHECK(a->n_groups == b->n_groups);
    if (a->n_groups != b->n_groups)
        return;
    for (int32_t i = 0; i < a->n_groups; i++) {
        const fib_group *x = &a->groups[i], *y = &b->groups[i];
        CHECK(x->op == y->op && x->n_units == y->n_units && x->rows == y->rows &&
              x->cols == y->cols && x->activation == y->activation &&
              same_bits(&x->act_param, &y->act_param, sizeof(double)) &&
              x->n_sources == y->n_sources && x->n_consumers == y->n_consumers &&
              same_bits(&x->eps_override, &y->eps_override, sizeof(double)));
        for (int32_t s = 0; s < x->n_sources && s < 3; s++)
            CHECK(x->sources[s] == y->sources[s]);
        CHECK(strcmp(fib_graph_group_name(a, i), fib_graph_group_name(b, i)) == 0);
        int32_t hx = -1, hy = -2;
        CHECK_OK(fib_graph_group_info(a, i, NULL, NULL, NULL, NULL, &hx, NULL, NULL));
        CHECK_OK(fib_graph_group_info(b, i, NULL, NULL, NULL, NULL, &hy, NULL, NULL));
        CHECK(hx == hy);
        /* tensors: names, shapes, dtypes, values bit for bit */
        for (int32_t t = 0;; t++) {
            fib_tensor_view vx, vy;
            bool hasx = x->ops && x->ops->tensor && x->ops->tensor(a, i, t, &vx);
            bool hasy = y->ops && y->ops->tensor && y->ops->tensor(b, i, t, &vy);
            CHECK(hasx == hasy);
            if (!hasx || !hasy)
                break;
            CHECK(strcmp(vx.name, vy.name) == 0 && vx.ndim == vy.ndim &&
                  same_bits(vx.shape, vy.shape, sizeof vx.shape));
            /* multiplicities are float64 in every graph */
            CHECK(vx.dtype == vy.dtype);
            int64_t n = vx.shape[0] * vx.shape[1] * vx.shape[2] * vx.shape[3];
            double *dx = malloc((size_t)n * sizeof *dx), *dy = malloc((size_t)n * sizeof *dy);
            CHECK_OK(fib_graph_read_tensor(a, i, t, FIB_DTYPE_F64, dx, n));
            CHECK_OK(fib_graph_read_tensor(b, i, t, FIB_DTYPE_F64, dy, n));
            CHECK(same_bits(dx, dy, (size_t)n * sizeof *dx));
            free(dx), free(dy);
        }
        int64_t nx = 0, ny = 0;
        CHECK_OK(fib_graph_block_params(a, i, NULL, 0, &nx));
        CHECK_OK(fib_graph_block_params(b, i, NULL, 0, &ny));
        CHECK(nx == ny);
        if (nx == ny && nx > 0) {
            int64_t *px = malloc((size_t)nx * sizeof *px), *py = malloc((size_t)nx * sizeof *py);
            CHECK_OK(fib_graph_block_params(a, i, px, nx, &nx));
            CHECK_OK(fib_graph_block_params(b, i, py, ny, &ny));
            CHECK(same_bits(px, py, (size_t)nx * sizeof *px));
            free(px), free(py);
        }
        double sx = 1, sy = 2;
        CHECK_OK(fib_graph_block_scalar(a, i, &sx));
        CHECK_OK(fib_graph_block_scalar(b, i, &sy));
        CHECK(same_bits(&sx, &sy, sizeof sx));
    }
    check_same_colorings(a, b);
    check_same_outputs(a, b, 77);
    if (test_failures != before)
        fprintf(stderr, "  (in %s)\n", what);
}

/* ---- round trips --------------------------------------------------------- */

/* The whole of a small file (NULL when it cannot be read); *size its length. */
static char *file_bytes(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *data = NULL;
    *size = 0;
    for (size_t cap = 0;;) {
        if (*size == cap) {
            cap = cap ? 2 * cap : 65536;
            char *more = realloc(data, cap);
            if (!more)
                break;
            data = more;
        }
        size_t n = fread(data + *size, 1, cap - *size, f);
        if (n == 0)
            break;
        *size += n;
    }
    fclose(f);
    return data;
}

/* A loaded model file saves to the bytes it was read from: what a kind's
 * build reads back is exactly what its tensor, params, scalar and gathers
 * wrote. */
static void check_saves_same_bytes(const fib_graph *back, const char *path, int32_t dtype,
                                   const char *what)
{
    char again[400];
    tmp_path(again, sizeof again, "rt-again.safetensors");
    CHECK_OK(fib_model_save(back, again, dtype));
    size_t na = 0, nb = 0;
    char *a = file_bytes(path, &na), *b = file_bytes(again, &nb);
    CHECK(a && b && na == nb && same_bits(a, b, na));
    if (!(a && b && na == nb && same_bits(a, b, na)))
        fprintf(stderr, "  %s: saving the loaded model gives other bytes (%zu, %zu)\n", what,
                na, nb);
    free(a);
    free(b);
    unlink(again);
}

static fib_graph *round_trip(const fib_graph *g, const char *what, int32_t dtype, int32_t copy)
{
    char path[400];
    tmp_path(path, sizeof path, "rt.safetensors");
    CHECK_OK(fib_model_save(g, path, dtype));
    fib_load_options lo;
    fib_load_options_init(&lo, sizeof lo);
    lo.copy = copy;
    fib_graph *back = NULL;
    CHECK_OK(fib_model_load(path, &lo, &back));
    if (back) {
        check_identical(g, back, what);
        check_saves_same_bytes(back, path, dtype, what);
        n_round_trips++;
    }
    unlink(path);
    return back;
}

static void check_graph(fib_graph *g, const char *what)
{
    for (int copy = 0; copy < 2; copy++)
        fib_graph_free(round_trip(g, what, 0, copy));
    fib_graph_free(g);
}

static void each_block_kind(void)
{
    check_graph(build_mlp(FIB_DTYPE_F64, 1), "mlp f64");
    check_graph(build_mlp(FIB_DTYPE_F32, 2), "mlp f32");
    check_graph(build_cnn(FIB_DTYPE_F32, 3, 4, 3), "cnn f32");
    check_graph(build_cnn(FIB_DTYPE_F64, 4, 3, 2), "cnn f64 (groups 1)");
    check_graph(build_rnn(FIB_DTYPE_F32, FIB_OP_LSTM, 5, 4, 3), "lstm f32");
    check_graph(build_rnn(FIB_DTYPE_F64, FIB_OP_GRU, 6, 3, 4), "gru f64");
    check_graph(build_transformer(FIB_DTYPE_F64, 7, 4, 6), "transformer f64");
    check_graph(build_transformer(FIB_DTYPE_F32, 8, 6, 5), "transformer f32");
    check_graph(build_decoder(FIB_DTYPE_F64, 9, true), "decoder f64");
    check_graph(build_decoder(FIB_DTYPE_F32, 10, true), "decoder f32");
    check_graph(build_vit(FIB_DTYPE_F32, 9), "vit f32");
    check_graph(build_vit(FIB_DTYPE_F64, 10), "vit f64");
}

/* Saving as float32 converts every weight; multiplicities stay float64. */
static void saved_as_f32(void)
{
    fib_graph *g = build_transformer(FIB_DTYPE_F32, 9, 4, 4);
    fib_graph *back = round_trip(g, "transformer saved as f32", FIB_DTYPE_F32, 0);
    fib_graph_free(back);
    fib_graph_free(g);
}

/* ---- bases of planted networks ------------------------------------------- */

/* Random projections for every group (identity for inputs and outputs, a
 * flatten's follows its source), then the lift of `base`. */
static fib_graph *plant(const fib_graph *base, uint64_t seed, int64_t ***proj_out,
                        int64_t **widths_out)
{
    uint64_t rng = seed;
    int32_t n = base->n_groups;
    int64_t **proj = calloc((size_t)n, sizeof *proj);
    int64_t *widths = calloc((size_t)n, sizeof *widths);
    for (int32_t i = 0; i < n; i++) {
        const fib_group *grp = &base->groups[i];
        int64_t k = grp->n_units;
        if (grp->op == FIB_OP_FLATTEN) {
            int32_t s = grp->sources[0];
            int64_t p = base->groups[s].rows * base->groups[s].cols;
            widths[i] = widths[s] * p;
            proj[i] = malloc((size_t)widths[i] * sizeof *proj[i]);
            for (int64_t u = 0; u < widths[i]; u++)
                proj[i][u] = proj[s][u / p] * p + u % p;
        } else if (grp->op == FIB_OP_INPUT || grp->n_consumers == 0) {
            widths[i] = k;
            proj[i] = malloc((size_t)k * sizeof *proj[i]);
            for (int64_t u = 0; u < k; u++)
                proj[i][u] = u;
        } else {
            /* numbered canonically (in order of first use), as the library's
             * projections are: another lift of the same random base */
            proj[i] = random_projection(&rng, k, 3, &widths[i]);
            int64_t *rename = malloc((size_t)k * sizeof *rename), next = 0;
            for (int64_t c = 0; c < k; c++)
                rename[c] = -1;
            for (int64_t u = 0; u < widths[i]; u++) {
                if (rename[proj[i][u]] < 0)
                    rename[proj[i][u]] = next++;
                proj[i][u] = rename[proj[i][u]];
            }
            free(rename);
        }
    }
    fib_graph *full = plant_by_lift(base, proj, widths);
    if (!full)
        fprintf(stderr, "plant_by_lift: %s\n", fib_last_error());
    *proj_out = proj;
    *widths_out = widths;
    return full;
}

static bool has_gather(const fib_graph *g)
{
    for (int32_t i = 0; i < g->n_groups; i++) {
        const fib_group *grp = &g->groups[i];
        int64_t n = 0;
        if (grp->op != FIB_OP_POOL && grp->op != FIB_OP_AFFINE && grp->op != FIB_OP_NORM &&
            grp->op != FIB_OP_LAST_STEP && grp->op != FIB_OP_SUM)
            continue;
        if (grp->op == FIB_OP_SUM) {
            const fib_sum *s = grp->block;
            if (s->gather_a || s->gather_b)
                return true;
            continue;
        }
        fib_graph_block_params(g, i, NULL, 0, &n);
        int64_t *p = malloc((size_t)n * sizeof *p);
        fib_graph_block_params(g, i, p, n, &n);
        int64_t skip = grp->op == FIB_OP_POOL ? 7 : grp->op == FIB_OP_NORM ? 1 : 0;
        int64_t src = g->groups[grp->sources[0]].n_units;
        bool gathers = n - skip != src;
        for (int64_t u = skip; u < n && !gathers; u++)
            gathers = p[u] != u - skip;
        free(p);
        if (gathers)
            return true;
    }
    return false;
}

/* Planted network -> colouring -> base -> file -> base: the same base
 * (graph and projection), and lifts of both are the same network. */
static void check_base(fib_graph *base_net, uint64_t seed, const char *what, bool want_gather)
{
    int64_t **proj = NULL, *widths = NULL;
    fib_graph *full = plant(base_net, seed, &proj, &widths);
    CHECK(full != NULL);
    if (full) {
        /* the planted network itself reads through gathers (its unit-wise
         * blocks got projections of their own) */
        if (!has_gather(full)) {
            test_failures++;
            fprintf(stderr, "%s: the planted network has no gather to test\n", what);
        }
        fib_graph_free(round_trip(full, what, 0, 0));
    }
    for (int32_t sym = FIB_SYM_FIBERS; full && sym <= FIB_SYM_COVERS; sym += 2) {
        fib_coloring *c = test_color(full, sym);
        fib_base *b = NULL;
        CHECK_OK(fib_compress(full, c, &b));
        fib_coloring_free(c);
        if (!b)
            continue;
        const fib_graph *bg = fib_base_graph(b);
        if (want_gather && sym == FIB_SYM_FIBERS && !has_gather(bg)) {
            test_failures++;
            fprintf(stderr, "%s: the base has no gather to test\n", what);
        }
        char path[400];
        tmp_path(path, sizeof path, "base.safetensors");
        CHECK_OK(fib_base_save(b, path, 0));
        fib_base *back = NULL;
        CHECK_OK(fib_base_load(path, NULL, &back));
        unlink(path);
        if (back) {
            n_base_round_trips++;
            check_identical(bg, fib_base_graph(back), what);
            for (int32_t i = 0; i < full->n_groups; i++) {
                int64_t n = width(full, i);
                int64_t *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
                CHECK_OK(fib_base_projection(b, i, x, n));
                CHECK_OK(fib_base_projection(back, i, y, n));
                CHECK(same_bits(x, y, (size_t)n * sizeof *x));
                free(x), free(y);
            }
            fib_graph *l1 = NULL, *l2 = NULL;
            CHECK_OK(fib_lift(b, NULL, &l1));
            CHECK_OK(fib_lift(back, NULL, &l2));
            if (l1 && l2) {
                check_identical(l1, l2, what);
                /* and the lift itself goes through a file */
                fib_graph_free(round_trip(l2, what, 0, 1));
            }
            fib_graph_free(l1);
            fib_graph_free(l2);
            /* the loaded base computes what the planted network does */
            int64_t n_in, n_out, batch = 2;
            fib_graph_io_width(full, &n_in, &n_out);
            uint64_t rng = seed + 5;
            double *xin = rand_array(&rng, batch * n_in, FIB_DTYPE_F64, -1, 1);
            double *ya = malloc((size_t)(batch * n_out) * sizeof *ya);
            double *yb = malloc((size_t)(batch * n_out) * sizeof *yb);
            CHECK_OK(fib_graph_forward(full, batch, FIB_DTYPE_F64, xin, ya));
            CHECK_OK(fib_graph_forward(fib_base_graph(back), batch, FIB_DTYPE_F64, xin, yb));
            double worst = 0;
            for (int64_t k = 0; k < batch * n_out; k++)
                worst = fmax(worst, fabs(ya[k] - yb[k]) / (1 + fabs(ya[k])));
            CHECK(worst < 1e-9);
            free(xin), free(ya), free(yb);
        }
        fib_base_free(back);
        fib_base_free(b);
    }
    for (int32_t i = 0; i < base_net->n_groups; i++)
        free(proj[i]);
    free(proj);
    free(widths);
    fib_graph_free(full);
    fib_graph_free(base_net);
}

static void planted_bases(void)
{
    check_base(build_mlp(FIB_DTYPE_F64, 11), 101, "planted mlp", true);
    /* unit-wise blocks of these bases read their source's classes in order
     * (no gather); their lifts and planted networks do gather */
    check_base(build_cnn(FIB_DTYPE_F64, 12, 4, 3), 102, "planted cnn", false);
    check_base(build_cnn(FIB_DTYPE_F64, 13, 3, 2), 103, "planted cnn (groups 1)", false);
    check_base(build_rnn(FIB_DTYPE_F64, FIB_OP_LSTM, 14, 3, 3), 104, "planted lstm", false);
    check_base(build_rnn(FIB_DTYPE_F64, FIB_OP_GRU, 15, 3, 2), 105, "planted gru", false);
    check_base(build_transformer(FIB_DTYPE_F64, 16, 4, 3), 106, "planted transformer", true);
    check_base(build_decoder(FIB_DTYPE_F64, 17, false), 107, "planted decoder", true);
}

/* ---- hostile metadata ---------------------------------------------------- */

/* Rewrites a saved model with its metadata edited: every occurrence of
 * `find` replaced by `repl` (which must occur). Tensors are kept; when
 * `drop` is given, that tensor is left out. */
static bool mutate(const char *from, const char *to, const char *find, const char *repl,
                   const char *drop)
{
    fib_st_file *f = NULL;
    if (fib_st_open(from, &f) != FIB_OK)
        return false;
    const char *meta = fib_st_meta(f, "fibration");
    size_t fl = strlen(find), rl = strlen(repl), n = 0;
    for (const char *p = strstr(meta, find); p; p = strstr(p + fl, find))
        n++;
    char *out = malloc(strlen(meta) + n * rl + 1), *o = out;
    const char *p = meta;
    for (const char *q = strstr(p, find); q; q = strstr(p, find)) {
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        memcpy(o, repl, rl);
        o += rl;
        p = q + fl;
    }
    strcpy(o, p);
    fib_st_out *t = calloc((size_t)f->n_tensors + 1, sizeof *t);
    int64_t k = 0;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const fib_st_tensor *s = &f->tensors[i];
        if (drop && strcmp(s->name, drop) == 0)
            continue;
        t[k].name = s->name;
        t[k].dtype = s->dtype;
        t[k].n_dims = s->n_dims;
        memcpy(t[k].shape, s->shape, sizeof s->shape);
        t[k].data = s->data;
        k++;
    }
    const char *keys[] = {"fibration"};
    const char *values[] = {out};
    bool ok = n > 0 && fib_st_write(to, t, k, keys, values, 1) == FIB_OK;
    if (n == 0)
        fprintf(stderr, "mutate: '%s' not in the metadata\n", find);
    free(t);
    free(out);
    fib_st_close(f);
    return ok;
}

typedef struct hostile {
    const char *name;
    int model;         /* 0 cnn, 1 rnn, 2 transformer, 3 cnn base, 4 transformer base */
    const char *find, *repl, *drop;
    int32_t status;
    const char *message;
} hostile;

static void print_meta(const char *path)
{
    fib_st_file *f = NULL;
    if (fib_st_open(path, &f) == FIB_OK) {
        fprintf(stderr, "%s\n", fib_st_meta(f, "fibration"));
        fib_st_close(f);
    }
}

static void hostile_metadata(void)
{
    static const hostile cases[] = {
        {"unknown op", 0, "\"op\":\"pool\"", "\"op\":\"pooling\"", NULL, FIB_E_FORMAT,
         "group 3: unknown op 'pooling'"},
        {"gather index out of range", 0, "\"params\":[0,2,2,2,2,0,0,0,1,2,3]",
         "\"params\":[0,2,2,2,2,0,0,0,1,2,9]", NULL, FIB_E_FORMAT,
         "group 3: 'params' item 10: gather index 9 out of range of source group 2 (4 units)"},
        {"pair index out of range", 4, "\"op\":\"attend\",\"units\":", "\"op\":\"attend\",\"units\":",
         NULL, FIB_E_FORMAT, ""},
        {"wrong tensor shape", 0, "\"weight\":\"groups.4.weight\"", "\"weight\":\"groups.1.weight\"",
         NULL, FIB_E_FORMAT, "group 4: weight tensor 'groups.1.weight' has shape [4, 1, 3, 3], "
                             "expected [3, 4, 2, 2]"},
        {"missing tensor", 1, "\"weight_hh\":\"groups.2.weight_hh\",", "", NULL, FIB_E_FORMAT,
         "group 2: tensor 'weight_hh' is missing"},
        {"tensor not in file", 1, "\"op\":\"gru\"", "\"op\":\"gru\"", "groups.1.weight_ih",
         FIB_E_FORMAT, "group 1: weight_ih tensor 'groups.1.weight_ih' is not in the file"},
        {"NaN scalar (string)", 2, "\"scalar\":1.0000000000000001e-05",
         "\"scalar\":\"NaN\"", NULL, FIB_E_FORMAT, "group 8: 'scalar' must be a finite number"},
        {"NaN scalar (bare)", 2, "\"scalar\":1.0000000000000001e-05", "\"scalar\":NaN", NULL,
         FIB_E_FORMAT, "__metadata__ 'fibration'"},
        {"zero epsilon", 2, "\"scalar\":1.0000000000000001e-05", "\"scalar\":0", NULL,
         FIB_E_FORMAT, "group 8: 'scalar' (epsilon) must be a finite number > 0"},
        {"params count", 0, "\"params\":[3,3,1,1,1,1,2]", "\"params\":[3,3,1,1,1,1]", NULL,
         FIB_E_FORMAT, "group 1 ('conv1'): 'params' must hold 7 integers for a conv block, not 6"},
        {"conv groups", 0, "\"params\":[3,3,1,1,1,1,2]", "\"params\":[3,3,1,1,1,1,3]", NULL,
         FIB_E_FORMAT, "'params' item 6 (groups) is 3"},
        {"pool kind", 0, "\"params\":[0,2,2", "\"params\":[7,2,2", NULL, FIB_E_FORMAT,
         "group 3: 'params' item 0 (kind) is 7"},
        {"window", 0, "\"params\":[3,3,1,1,1,1,2]", "\"params\":[3,3,0,1,1,1,2]", NULL,
         FIB_E_FORMAT, "'params' item 2 (stride) is 0"},
        {"unknown tensor key", 0, "\"shift\":", "\"shifts\":", NULL, FIB_E_FORMAT,
         "group 2: 'tensors': a affine block has no tensor 'shifts'"},
        {"tensor of a kind without tensors", 0, "\"op\":\"flatten\",\"units\":27",
         "\"op\":\"flatten\",\"tensors\":{\"weight\":\"groups.1.weight\"},\"units\":27",
         NULL, FIB_E_FORMAT, "group 6: 'tensors': a flatten block has no tensor 'weight'"},
        {"positions", 0, "\"positions\":[3,3]", "\"positions\":[3,4]", NULL, FIB_E_FORMAT,
         "'positions' is [3, 4] but the block gives [3, 3]"},
        {"flatten width", 0, "\"op\":\"flatten\",\"units\":27", "\"op\":\"flatten\",\"units\":26",
         NULL, FIB_E_FORMAT, "group 6: 'units' is 26 but flattening group 5 gives"},
        {"source later", 0, "\"sources\":[5]", "\"sources\":[6]", NULL, FIB_E_FORMAT,
         "group 6: 'sources' must be an array of 1 earlier group index"},
        {"norm kind", 2, "\"params\":[0,0,1,2,3],\"scalar\"", "\"params\":[2,0,1,2,3],\"scalar\"",
         NULL, FIB_E_FORMAT, "group 8: 'params' item 0 (kind) is 2"},
        {"last step of an image", 0, "\"op\":\"flatten\"", "\"op\":\"last_step\"", NULL,
         FIB_E_FORMAT, "group 6: source group 5 is not a sequence"},
        {"conv in version 1", 0, "\"version\":2", "\"version\":1", NULL, FIB_E_FORMAT,
         "group 1 ('conv1'): unknown op 'conv' (input, dense or sum in version 1 expected)"},
    };
    char good[5][400], bad[400];
    const char *names[5] = {"cnn.st", "rnn.st", "tf.st", "cnnb.st", "tfb.st"};
    fib_graph *g[3] = {build_cnn(FIB_DTYPE_F32, 21, 4, 3),
                       build_rnn(FIB_DTYPE_F32, FIB_OP_GRU, 22, 3, 2),
                       build_transformer(FIB_DTYPE_F64, 23, 4, 3)};
    for (int m = 0; m < 5; m++)
        tmp_path(good[m], sizeof good[m], names[m]);
    tmp_path(bad, sizeof bad, "bad.st");
    for (int m = 0; m < 3; m++)
        CHECK_OK(fib_model_save(g[m], good[m], 0));
    /* bases of planted versions: gathers, pairs, multiplicities */
    char base_meta[2][600];
    for (int m = 0; m < 2; m++) {
        fib_graph *net = m ? build_transformer(FIB_DTYPE_F64, 24, 4, 3)
                           : build_cnn(FIB_DTYPE_F64, 25, 4, 3);
        int64_t **proj, *widths;
        fib_graph *full = plant(net, 200 + (uint64_t)m, &proj, &widths);
        fib_coloring *c = test_color(full, FIB_SYM_FIBERS);
        fib_base *b = NULL;
        CHECK_OK(fib_compress(full, c, &b));
        CHECK_OK(fib_base_save(b, good[3 + m], 0));
        /* the first attention core's pairs, and the first norm's group */
        const fib_graph *bg = fib_base_graph(b);
        base_meta[m][0] = '\0';
        for (int32_t i = 0; i < bg->n_groups; i++) {
            if (m && bg->groups[i].op == FIB_OP_ATTEND && !base_meta[m][0]) {
                int64_t n = 0;
                fib_graph_block_params(bg, i, NULL, 0, &n);
                int64_t *p = malloc((size_t)n * sizeof *p);
                fib_graph_block_params(bg, i, p, n, &n);
                /* "params":[heads,count...,q0,k0 */
                int len = snprintf(base_meta[m], sizeof base_meta[m], "\"params\":[%lld",
                                   (long long)p[0]);
                for (int64_t h = 0; h < p[0]; h++)
                    len += snprintf(base_meta[m] + len, sizeof base_meta[m] - (size_t)len,
                                    ",%lld", (long long)p[1 + h]);
                snprintf(base_meta[m] + len, sizeof base_meta[m] - (size_t)len, ",%lld,",
                         (long long)p[1 + p[0]]);
                free(p);
            }
        }
        for (int32_t i = 0; i < net->n_groups; i++)
            free(proj[i]);
        free(proj), free(widths);
        fib_coloring_free(c);
        fib_base_free(b);
        fib_graph_free(full);
        fib_graph_free(net);
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hostile h = cases[i];
        char find[700], repl[700];
        if (strcmp(h.name, "pair index out of range") == 0) {
            /* the first pair's q unit becomes 99 */
            snprintf(find, sizeof find, "%s", base_meta[1]);
            size_t n = strlen(find);
            char *last = find + n - 1; /* ends "...,q0," */
            *last = '\0';
            char *comma = strrchr(find, ',');
            snprintf(repl, sizeof repl, "%.*s,99,", (int)(comma - find), find);
            *last = ',';
            h.find = find;
            h.repl = repl;
            h.message = "'params': pair 0 (q unit 99, k unit";
        }
        n_hostile++;
        if (!mutate(good[h.model], bad, h.find, h.repl, h.drop)) {
            test_failures++;
            fprintf(stderr, "%s: could not make the file\n", h.name);
            print_meta(good[h.model]);
            continue;
        }
        fib_graph *out = NULL;
        int32_t st = h.model >= 3 ? fib_base_load(bad, NULL, (fib_base **)&out)
                                  : fib_model_load(bad, NULL, &out);
        if (st != h.status || !strstr(fib_last_error(), h.message) ||
            strncmp(fib_last_error(), bad, strlen(bad)) != 0) {
            test_failures++;
            fprintf(stderr, "%s: got %s '%s', wanted '%s'\n", h.name, fib_status_name(st),
                    fib_last_error(), h.message);
        }
        CHECK(out == NULL);
    }
    for (int m = 0; m < 3; m++)
        fib_graph_free(g[m]);
    for (int m = 0; m < 5; m++)
        unlink(good[m]);
    unlink(bad);
}

/* A class token or a selected step that does not fit its sequence. */
static void vit_metadata_refused(void)
{
    static const hostile cases[] = {
        {"step past the end", 0, "\"params\":[2,0,1,2,3]", "\"params\":[9,0,1,2,3]", NULL,
         FIB_E_FORMAT, "'params' item 0: position 9 is outside the 5 steps of group 9"},
        {"token of another length", 0, "\"params\":[1,0,1,2,3]", "\"params\":[2,0,1,2,3]",
         NULL, FIB_E_FORMAT, "has shape [1, 4], expected [2, 4]"},
    };
    char good[400], bad[400];
    tmp_path(good, sizeof good, "vit.st");
    tmp_path(bad, sizeof bad, "bad.st");
    fib_graph *g = build_vit(FIB_DTYPE_F32, 11);
    CHECK_OK(fib_model_save(g, good, 0));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hostile h = cases[i];
        n_hostile++;
        if (!mutate(good, bad, h.find, h.repl, h.drop)) {
            test_failures++;
            fprintf(stderr, "%s: could not make the file\n", h.name);
            print_meta(good);
            continue;
        }
        fib_graph *out = NULL;
        int32_t st = fib_model_load(bad, NULL, &out);
        if (st != h.status || !strstr(fib_last_error(), h.message)) {
            test_failures++;
            fprintf(stderr, "%s: got %s '%s', wanted '%s'\n", h.name, fib_status_name(st),
                    fib_last_error(), h.message);
        }
        CHECK(out == NULL);
    }
    fib_graph_free(g);
    unlink(good);
    unlink(bad);
}

/* Hand-written files for what a save never produces: negative and NaN
 * multiplicities, a pair list of the wrong length, a flatten whose
 * projection does not follow its source. */
static void write_file(const char *path, const char *meta, const fib_st_out *t, int64_t n)
{
    const char *keys[] = {"fibration"};
    const char *values[] = {meta};
    CHECK_OK(fib_st_write(path, t, n, keys, values, 1));
}

static void expect_format(const char *path, const char *message, bool base)
{
    n_hostile++;
    void *out = NULL;
    int32_t st = base ? fib_base_load(path, NULL, (fib_base **)&out)
                      : fib_model_load(path, NULL, (fib_graph **)&out);
    if (st != FIB_E_FORMAT || !strstr(fib_last_error(), message)) {
        test_failures++;
        fprintf(stderr, "got %s '%s', wanted '%s'\n", fib_status_name(st), fib_last_error(),
                message);
    }
    CHECK(out == NULL);
}

#define HEAD "{\"format\":\"fibration-model\",\"version\":2,\"groups\":[" \
             "{\"op\":\"input\",\"units\":2,\"positions\":[3,1]},"

static void hand_written(void)
{
    char path[400];
    tmp_path(path, sizeof path, "hand.st");
    double m[2] = {2, -1}, w[2] = {1, 1}, pm[2] = {1, 1}, pneg[2] = {1, -0.5};
    double wd[4] = {1, 0, 0, 1};
    fib_st_out t[4] = {{"m", FIB_DTYPE_F64, 1, {2}, m},
                       {"w", FIB_DTYPE_F64, 1, {2}, w},
                       {"pm", FIB_DTYPE_F64, 1, {2}, pm},
                       {"wd", FIB_DTYPE_F64, 2, {2, 2}, wd}};
    write_file(path, HEAD "{\"op\":\"norm\",\"units\":2,\"sources\":[0],\"params\":[0,0,1],"
               "\"scalar\":1e-5,\"tensors\":{\"weight\":\"w\",\"multiplicity\":\"m\"}}]}", t, 4);
    expect_format(path, "group 1: multiplicity tensor 'm': element 1 is -1; multiplicities "
                        "must be > 0", false);
    write_file(path, HEAD "{\"op\":\"norm\",\"units\":2,\"sources\":[0],\"params\":[0,0,2],"
               "\"scalar\":1e-5}]}", t, 4);
    expect_format(path, "group 1: 'params' item 2: gather index 2 out of range of source "
                        "group 0 (2 units)", false);
    /* attention: q, k, v dense over the input, then a core */
    const char *qkv = "{\"op\":\"dense\",\"units\":2,\"sources\":[0],\"tensors\":{\"weight\":\"wd\"}},"
                      "{\"op\":\"dense\",\"units\":2,\"sources\":[0],\"tensors\":{\"weight\":\"wd\"}},"
                      "{\"op\":\"dense\",\"units\":2,\"sources\":[0],\"tensors\":{\"weight\":\"wd\"}},";
    char meta[1200];
    snprintf(meta, sizeof meta, HEAD "%s{\"op\":\"attend\",\"units\":2,\"sources\":[1,2,3],"
             "\"params\":[1,2,0,0,1,1,0,0,0,1],\"scalar\":0.5,"
             "\"tensors\":{\"pair_multiplicity\":\"pm\"}}]}", qkv);
    write_file(path, meta, t, 4);
    void *ok = NULL;
    CHECK_OK(fib_model_load(path, NULL, (fib_graph **)&ok)); /* the valid one */
    fib_graph_free(ok);
    snprintf(meta, sizeof meta, HEAD "%s{\"op\":\"attend\",\"units\":2,\"sources\":[1,2,3],"
             "\"params\":[1,2,0,0,1,5,0,0,0,1],\"scalar\":0.5,"
             "\"tensors\":{\"pair_multiplicity\":\"pm\"}}]}", qkv);
    write_file(path, meta, t, 4);
    expect_format(path, "group 4: 'params': pair 1 (q unit 1, k unit 5) out of range", false);
    snprintf(meta, sizeof meta, HEAD "%s{\"op\":\"attend\",\"units\":2,\"sources\":[1,2,3],"
             "\"params\":[1,2,0,0,1,1,0,0,3,1],\"scalar\":0.5,"
             "\"tensors\":{\"pair_multiplicity\":\"pm\"}}]}", qkv);
    write_file(path, meta, t, 4);
    expect_format(path, "group 4: 'params': unit 1 (head 3, v unit 1) out of range", false);
    snprintf(meta, sizeof meta, HEAD "%s{\"op\":\"attend\",\"units\":2,\"sources\":[1,2,3],"
             "\"params\":[1,3,0,0,1,1,0,0,0,1],\"scalar\":0.5,"
             "\"tensors\":{\"pair_multiplicity\":\"pm\"}}]}", qkv);
    write_file(path, meta, t, 4);
    expect_format(path, "group 4: 'params' must hold 12 integers for 1 heads, 3 pairs", false);
    snprintf(meta, sizeof meta, HEAD "%s{\"op\":\"attend\",\"units\":2,\"sources\":[1,2,3],"
             "\"params\":[1,2,0,0,1,1,0,0,0,1],\"scalar\":0.5,"
             "\"tensors\":{\"pair_multiplicity\":\"m\"}}]}", qkv);
    write_file(path, meta, t, 4);
    expect_format(path, "group 4: pair_multiplicity tensor 'm': element 1 is -1", false);
    t[2].data = pneg;
    snprintf(meta, sizeof meta, HEAD "%s{\"op\":\"attend\",\"units\":2,\"sources\":[1,2,3],"
             "\"params\":[1,2,0,0,1,1,0,0,0,1],\"scalar\":0.5,"
             "\"tensors\":{\"pair_multiplicity\":\"pm\"}}]}", qkv);
    write_file(path, meta, t, 4);
    expect_format(path, "group 4: pair_multiplicity tensor 'pm': element 1 is -0.5", false);
    t[2].data = pm;
    snprintf(meta, sizeof meta, HEAD "%s{\"op\":\"attend\",\"units\":2,\"sources\":[1,2,3],"
             "\"params\":[1,2,0,0,1,1,0,0,0,1],\"scalar\":0.5}]}", qkv);
    write_file(path, meta, t, 4);
    expect_format(path, "group 4: tensor 'pair_multiplicity' is missing", false);
    snprintf(meta, sizeof meta, HEAD "%s{\"op\":\"attend\",\"units\":2,\"sources\":[1,2,3],"
             "\"params\":[1,2,0,0,1,1,0,0,0,1],"
             "\"tensors\":{\"pair_multiplicity\":\"pm\"}}]}", qkv);
    write_file(path, meta, t, 4);
    expect_format(path, "group 4: 'scalar' (the softmax scale) is missing", false);
    /* a pooled 1x1 channel: an affine with a gather, then a flatten whose
     * projection is not its source's */
    write_file(path, HEAD "{\"op\":\"affine\",\"units\":1,\"sources\":[0],\"params\":[1],"
               "\"tensors\":{\"scale\":\"w\"}}]}", t, 4);
    expect_format(path, "group 1: scale tensor 'w' has shape [2], expected [1]", false);
    write_file(path, HEAD "{\"op\":\"affine\",\"units\":2,\"sources\":[0],\"params\":[1,0],"
               "\"tensors\":{\"scale\":\"w\"}},{\"op\":\"flatten\",\"units\":6,\"sources\":[1]},"
               "{\"op\":\"dense\",\"units\":2,\"sources\":[2],\"tensors\":{\"weight\":\"wd\"}}],"
               "\"projection\":[[0,1],[0,0],[0,1,2,0,1,2],[0,1]]}", t, 4);
    expect_format(path, "group 3: weight tensor 'wd' has shape [2, 2], expected [2, 6]", true);
    double w6[12] = {0};
    fib_st_out t6[2] = {{"w", FIB_DTYPE_F64, 1, {2}, w}, {"w6", FIB_DTYPE_F64, 2, {2, 6}, w6}};
    write_file(path, HEAD "{\"op\":\"affine\",\"units\":2,\"sources\":[0],\"params\":[1,0],"
               "\"tensors\":{\"scale\":\"w\"}},{\"op\":\"flatten\",\"units\":6,\"sources\":[1]},"
               "{\"op\":\"dense\",\"units\":2,\"sources\":[2],\"tensors\":{\"weight\":\"w6\"}}],"
               "\"projection\":[[0,1],[0,1,1],[0,1,2,3,4,5,3,4,5],[0,1]]}", t6, 2);
    void *b = NULL;
    CHECK_OK(fib_base_load(path, NULL, (fib_base **)&b)); /* the valid one */
    fib_base_free(b);
    write_file(path, HEAD "{\"op\":\"affine\",\"units\":2,\"sources\":[0],\"params\":[1,0],"
               "\"tensors\":{\"scale\":\"w\"}},{\"op\":\"flatten\",\"units\":6,\"sources\":[1]},"
               "{\"op\":\"dense\",\"units\":2,\"sources\":[2],\"tensors\":{\"weight\":\"w6\"}}],"
               "\"projection\":[[0,1],[0,1,1],[0,1,2,3,4,5],[0,1]]}", t6, 2);
    expect_format(path, "projection of group 2 (a flatten) must follow the projection of "
                        "its source", true);
    /* a flatten projection of another size than its source's positions
     * (the check asks the block, which must refuse it, not read past it) */
    write_file(path, HEAD "{\"op\":\"affine\",\"units\":2,\"sources\":[0],\"params\":[1,0],"
               "\"tensors\":{\"scale\":\"w\"}},{\"op\":\"flatten\",\"units\":6,\"sources\":[1]},"
               "{\"op\":\"dense\",\"units\":2,\"sources\":[2],\"tensors\":{\"weight\":\"w6\"}}],"
               "\"projection\":[[0,1],[0,1,1],[0,1,2,3,4,5,3,4,5,3,4,5],[0,1]]}", t6, 2);
    expect_format(path, "projection of group 2 (a flatten) must follow the projection of "
                        "its source", true);
    /* a sum of groups with different positions */
    write_file(path, HEAD "{\"op\":\"input\",\"units\":2},"
               "{\"op\":\"sum\",\"units\":2,\"sources\":[0,1]}]}", t, 4);
    expect_format(path, "group 2: 'sources': groups 0 and 1 have different positions", false);
    unlink(path);
}

/* The options of a causal rotary attention core in a file: a bad options
 * item, a bad phase kind, a missing frequency tensor, frequencies without
 * the rotary option. */
static void hostile_attention_options(void)
{
    char good[400], bad[400], find[600], repl[600];
    tmp_path(good, sizeof good, "decoder.st");
    tmp_path(bad, sizeof bad, "bad.st");
    fib_graph *g = build_decoder(FIB_DTYPE_F64, 31, false);
    CHECK_OK(fib_model_save(g, good, 0));
    int32_t core = -1;
    for (int32_t i = 0; i < g->n_groups && core < 0; i++)
        if (g->groups[i].op == FIB_OP_ATTEND)
            core = i;
    int64_t n = 0;
    CHECK_OK(fib_graph_block_params(g, core, NULL, 0, &n));
    int64_t *p = malloc((size_t)n * sizeof *p);
    CHECK_OK(fib_graph_block_params(g, core, p, n, &n));
    /* the tail of the params: units' last (head, v), options, phase kinds */
    int64_t pairs = 0;
    for (int64_t h = 0; h < p[0]; h++)
        pairs += p[1 + h];
    int64_t at = n - pairs - 1; /* the options item */
    CHECK(p[at] == 3);
    int len = snprintf(find, sizeof find, "%lld,%lld,3", (long long)p[at - 2],
                       (long long)p[at - 1]);
    for (int64_t x = 0; x < 4; x++)
        len += snprintf(find + len, sizeof find - (size_t)len, ",%lld", (long long)p[at + 1 + x]);
    snprintf(repl, sizeof repl, "%lld,%lld,5%s", (long long)p[at - 2], (long long)p[at - 1],
             strchr(strchr(strchr(find, ',') + 1, ',') + 1, ','));
    char message[200];
    snprintf(message, sizeof message, "'params' item %lld (options) is 5", (long long)at);
    if (mutate(good, bad, find, repl, NULL))
        expect_format(bad, message, false);
    else
        print_meta(good);
    /* first phase kind (0: pair 0 is a cos pair) becomes 2 */
    snprintf(repl, sizeof repl, "%lld,%lld,3,2%s", (long long)p[at - 2], (long long)p[at - 1],
             strchr(strchr(strchr(strchr(find, ',') + 1, ',') + 1, ',') + 1, ','));
    if (mutate(good, bad, find, repl, NULL))
        expect_format(bad, "pair 0's phase kind is 2", false);
    snprintf(find, sizeof find, ",\"pair_frequency\":\"groups.%d.pair_frequency\"", (int)core);
    if (mutate(good, bad, find, "", NULL))
        expect_format(bad, "tensor 'pair_frequency' is missing", false);
    /* causal only, but the frequencies still there */
    len = snprintf(find, sizeof find, "%lld,%lld,3", (long long)p[at - 2], (long long)p[at - 1]);
    for (int64_t x = 0; x < pairs; x++)
        len += snprintf(find + len, sizeof find - (size_t)len, ",%lld", (long long)p[at + 1 + x]);
    snprintf(repl, sizeof repl, "%lld,%lld,1", (long long)p[at - 2], (long long)p[at - 1]);
    if (mutate(good, bad, find, repl, NULL))
        expect_format(bad, "'pair_frequency' without the rotary option", false);
    unlink(good);
    unlink(bad);
    free(p);
    fib_graph_free(g);
}

static void node_groups_unsupported(void)
{
    fib_graph *g = NULL;
    int32_t a;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_nodes(g, 3, &a));
    char path[400];
    tmp_path(path, sizeof path, "nodes.st");
    CHECK(fib_model_save(g, path, 0) == FIB_E_UNSUPPORTED);
    CHECK(strstr(fib_last_error(), "not node groups") != NULL);
    CHECK(access(path, F_OK) != 0);
    fib_graph_free(g);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fib-model-blocks-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(each_block_kind);
    RUN(saved_as_f32);
    RUN(planted_bases);
    RUN(hostile_metadata);
    RUN(vit_metadata_refused);
    RUN(hand_written);
    RUN(hostile_attention_options);
    RUN(node_groups_unsupported);
    printf("     %d graph round trips, %d base round trips, %d hostile files\n", n_round_trips,
           n_base_round_trips, n_hostile);
    rmdir(tmpdir);
    return test_failures ? 1 : 0;
}
