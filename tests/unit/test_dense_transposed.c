/* Dense blocks stored transposed (fib_graph_add_dense_transposed: rows per
 * source unit, as GPT-2's Conv1D layers and token embeddings are stored and
 * read in place from a checkpoint) against the same weights in the ordinary
 * layout: identical fibers, opfibers and covers (planted classes in every
 * layer, so every signature path runs: borrowed views over discrete
 * classes, colour sums over merged ones), identical forward outputs,
 * tensors read out in the block's own [out, in] layout, bases computing
 * the same outputs, saved files that load back, and a non-finite weight
 * named by (row, column) of the block, for float64, float32 and bfloat16
 * weights and a leading dimension wider than the block; a tied head over
 * the embedding's stored values is not checked twice, and anything else
 * it reads is. */
#include "blocks/blocks.h"
#include "testing.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int test_failures;

/* input 6 -> 10 (relu) -> 8 (relu) -> 3 */
enum { N0 = 6, N1 = 10, N2 = 8, N3 = 3, PAD = 3, BATCH = 5 };
static const int64_t width[4] = {N0, N1, N2, N3};

static uint64_t state = 0x243f6a8885a308d3u;

static double uniform(void)
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (double)(state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* Layer weights (out x in, row-major), planted: units 7 and 9 copy unit 2
 * of layer 1 (their outgoing columns re-split), units 5 and 6 copy unit 1
 * of layer 2; values are bfloat16 numbers so every dtype holds them. */
static double bf16_round(double x)
{
    float f = (float)x;
    uint32_t bits;
    memcpy(&bits, &f, 4);
    bits &= 0xffff0000u;
    memcpy(&f, &bits, 4);
    return f;
}

static void planted(double *w[3], double *b[3])
{
    for (int l = 0; l < 3; l++) {
        for (int64_t x = 0; x < width[l + 1] * width[l]; x++)
            w[l][x] = bf16_round(uniform());
        for (int64_t i = 0; i < width[l + 1]; i++)
            b[l][i] = bf16_round(0.1 * uniform());
    }
    const int copies[2][3] = {{2, 7, 9}, {1, 5, 6}};
    for (int l = 0; l < 2; l++) {
        int64_t n_in = width[l], n_next = width[l + 2];
        for (int c = 1; c < 3; c++) {
            int64_t i = copies[l][0], j = copies[l][c];
            memcpy(w[l] + j * n_in, w[l] + i * n_in, (size_t)n_in * sizeof(double));
            b[l][j] = b[l][i];
        }
        /* the next layer's columns of the copies: halves of the original's
         * (exact in every dtype: a power of two) */
        for (int64_t r = 0; r < n_next; r++) {
            double *row = w[l + 1] + r * width[l + 1];
            double half = row[copies[l][0]] / 2.0;
            row[copies[l][0]] = half;
            row[copies[l][1]] = half / 2.0;
            row[copies[l][2]] = half / 2.0;
        }
    }
}

static void store(int32_t dtype, void *buf, int64_t i, double v)
{
    if (dtype == FIB_DTYPE_F64) {
        ((double *)buf)[i] = v;
    } else {
        float f = (float)v;
        if (dtype == FIB_DTYPE_F32) {
            ((float *)buf)[i] = f;
        } else {
            uint32_t bits;
            memcpy(&bits, &f, 4);
            ((uint16_t *)buf)[i] = (uint16_t)(bits >> 16);
        }
    }
}

typedef struct layers {
    void *w[3], *b[3]; /* in the dtype and layout of the graph */
} layers;

/* The network with every dense block ordinary or stored transposed (leading
 * dimension out + PAD, the padding NaN: never read). */
static fib_graph *build(int32_t dtype, double *w[3], double *b[3], bool transposed,
                        layers *keep)
{
    size_t esize = dtype == FIB_DTYPE_F64 ? 8 : dtype == FIB_DTYPE_F32 ? 4 : 2;
    fib_graph *g = NULL;
    int32_t id;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, N0, &id));
    for (int l = 0; l < 3; l++) {
        int64_t n_in = width[l], n_out = width[l + 1], ld = transposed ? n_out + PAD : n_in;
        int64_t cells = transposed ? n_in * ld : n_out * n_in;
        keep->w[l] = malloc((size_t)cells * esize);
        keep->b[l] = malloc((size_t)n_out * esize);
        for (int64_t x = 0; x < cells; x++)
            store(dtype, keep->w[l], x, NAN);
        for (int64_t i = 0; i < n_out; i++) {
            store(dtype, keep->b[l], i, b[l][i]);
            for (int64_t k = 0; k < n_in; k++)
                store(dtype, keep->w[l], transposed ? k * ld + i : i * n_in + k,
                      w[l][i * n_in + k]);
        }
        if (transposed)
            CHECK_OK(fib_graph_add_dense_transposed(g, l, n_out, dtype, keep->w[l], ld,
                                                    keep->b[l], 0, &id));
        else
            CHECK_OK(fib_graph_add_dense(g, l, n_out, dtype, keep->w[l], n_in, keep->b[l], 0,
                                         &id));
        if (l < 2)
            CHECK_OK(fib_graph_set_activation(g, id, FIB_ACT_RELU, 0.0));
    }
    return g;
}

static void release(layers *keep)
{
    for (int l = 0; l < 3; l++) {
        free(keep->w[l]);
        free(keep->b[l]);
    }
}

static void same_colors(const fib_coloring *a, const fib_coloring *b, const char *what)
{
    for (int32_t group = 0; group < 4; group++) {
        int64_t ca[N1], cb[N1], n = width[group];
        CHECK_OK(fib_coloring_colors(a, group, ca, n));
        CHECK_OK(fib_coloring_colors(b, group, cb, n));
        bool same = memcmp(ca, cb, (size_t)n * sizeof *ca) == 0;
        if (!same)
            fprintf(stderr, "%s: group %d colours differ\n", what, (int)group);
        CHECK(same);
    }
}

static void forward(const fib_graph *g, const double *x, double *y)
{
    CHECK_OK(fib_graph_forward(g, BATCH, FIB_DTYPE_F64, x, y));
}

static void layouts_agree(int32_t dtype)
{
    double w0[N1 * N0], w1[N2 * N1], w2[N3 * N2], b0[N1], b1[N2], b2[N3];
    double *w[3] = {w0, w1, w2}, *b[3] = {b0, b1, b2};
    planted(w, b);
    layers ka, kb;
    fib_graph *rows = build(dtype, w, b, false, &ka), *cols = build(dtype, w, b, true, &kb);
    /* classes of every symmetry */
    const int32_t symmetries[3] = {FIB_SYM_FIBERS, FIB_SYM_OPFIBERS, FIB_SYM_COVERS};
    fib_coloring *ca = NULL, *cb = NULL;
    for (int s = 0; s < 3; s++) {
        fib_color_options o;
        CHECK_OK(fib_color_options_init(&o, sizeof o));
        o.symmetry = symmetries[s];
        CHECK_OK(fib_color(rows, &o, &ca));
        CHECK_OK(fib_color(cols, &o, &cb));
        same_colors(ca, cb, s == 0 ? "fibers" : s == 1 ? "opfibers" : "covers");
        if (s == 0) { /* the planted classes are found: 10 -> 8, 8 -> 6 */
            int64_t k1 = 0, k2 = 0;
            CHECK_OK(fib_coloring_num_classes(cb, 1, &k1));
            CHECK_OK(fib_coloring_num_classes(cb, 2, &k2));
            CHECK(k1 == N1 - 2 && k2 == N2 - 2);
        }
        if (s < 2) {
            fib_coloring_free(ca);
            fib_coloring_free(cb);
        }
    }
    /* forward: the same sums in the same order */
    double x[BATCH * N0], ya[BATCH * N3], yb[BATCH * N3];
    for (int i = 0; i < BATCH * N0; i++)
        x[i] = uniform();
    forward(rows, x, ya);
    forward(cols, x, yb);
    CHECK(memcmp(ya, yb, sizeof ya) == 0);
    /* tensors read out in the block's [out, in] layout */
    for (int32_t group = 1; group < 4; group++) {
        int64_t n = width[group] * width[group - 1];
        double ta[N1 * N1], tb[N1 * N1], da[N1 * N1], db[N1 * N1];
        CHECK_OK(fib_graph_read_tensor(rows, group, 0, FIB_DTYPE_F64, ta, n));
        CHECK_OK(fib_graph_read_tensor(cols, group, 0, FIB_DTYPE_F64, tb, n));
        CHECK(memcmp(ta, tb, (size_t)n * sizeof *ta) == 0);
        CHECK_OK(fib_graph_read_dense(rows, group, FIB_DTYPE_F64, da, width[group - 1], NULL));
        CHECK_OK(fib_graph_read_dense(cols, group, FIB_DTYPE_F64, db, width[group - 1], NULL));
        CHECK(memcmp(da, db, (size_t)n * sizeof *da) == 0);
    }
    /* bases by covers: the same widths and outputs */
    fib_base *ba = NULL, *bb = NULL;
    CHECK_OK(fib_compress(rows, ca, &ba));
    CHECK_OK(fib_compress(cols, cb, &bb));
    double za[BATCH * N3], zb[BATCH * N3];
    forward(fib_base_graph(ba), x, za);
    forward(fib_base_graph(bb), x, zb);
    for (int i = 0; i < BATCH * N3; i++)
        CHECK(fabs(za[i] - zb[i]) <= 1e-12 * (1.0 + fabs(za[i])) &&
              fabs(zb[i] - ya[i]) <= 1e-9 * (1.0 + fabs(ya[i])));
    /* saved and loaded: the block's layout in the file, the same outputs */
    char path[] = "/tmp/fib_dense_transposed_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    CHECK_OK(fib_model_save(cols, path, 0));
    fib_graph *loaded = NULL;
    CHECK_OK(fib_model_load(path, NULL, &loaded));
    if (loaded) {
        double yl[BATCH * N3];
        forward(loaded, x, yl);
        CHECK(memcmp(yl, ya, sizeof ya) == 0);
        fib_graph_free(loaded);
    }
    remove(path);
    fib_base_free(ba);
    fib_base_free(bb);
    fib_coloring_free(ca);
    fib_coloring_free(cb);
    fib_graph_free(rows);
    fib_graph_free(cols);
    release(&ka);
    release(&kb);
}

static void layouts_agree_f64(void) { layouts_agree(FIB_DTYPE_F64); }
static void layouts_agree_f32(void) { layouts_agree(FIB_DTYPE_F32); }
static void layouts_agree_bf16(void) { layouts_agree(FIB_DTYPE_BF16); }

/* A NaN in the stored matrix is named by the block's (row, column). */
static void nonfinite_named_in_block_terms(void)
{
    fib_graph *g = NULL;
    int32_t in, id;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, 4, &in));
    double stored[4 * 3]; /* [in 4, out 3] */
    for (int i = 0; i < 12; i++)
        stored[i] = 0.25 * i;
    stored[2 * 3 + 1] = NAN; /* from source unit 2 to unit 1 */
    int32_t st = fib_graph_add_dense_transposed(g, in, 3, FIB_DTYPE_F64, stored, 3, NULL, 0,
                                                &id);
    CHECK(st == FIB_E_NONFINITE);
    CHECK(strstr(fib_last_error(), "row 1, column 2") != NULL);
    int32_t n = 0;
    CHECK_OK(fib_graph_num_groups(g, &n));
    CHECK(n == 1);
    CHECK(fib_graph_add_dense_transposed(g, in, 3, FIB_DTYPE_F64, stored, 2, NULL, 0, &id) ==
          FIB_E_SHAPE);
    fib_graph_free(g);
}

/* A tied LM head over the token embedding's stored values: the finiteness
 * pass the embedding made is not repeated for the head (same pointer, same
 * dtype, within the same values); a head reading anything else is checked
 * as any dense block, and its bias always. */
static void head_over_checked_embedding_checks_the_rest(void)
{
    enum { VOCAB = 5, HIDDEN = 4 };
    fib_graph *g = NULL;
    int32_t tokens, emb, head;
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, VOCAB, &tokens));
    float table[(VOCAB + 1) * HIDDEN], bias[VOCAB];
    for (int i = 0; i < (VOCAB + 1) * HIDDEN; i++)
        table[i] = 0.125f * (float)(i % 7) - 0.25f;
    for (int i = 0; i < VOCAB; i++)
        bias[i] = 0.5f;
    table[VOCAB * HIDDEN + 1] = NAN; /* one row past the embedding */

    fib_finite_values checked = {0};
    table[3] = NAN;
    CHECK(fib_token_embedding_add(g, tokens, HIDDEN, FIB_DTYPE_F32, table, 0, &checked,
                                  &emb) == FIB_E_NONFINITE);
    CHECK(checked.data == NULL); /* nothing recorded for a refused table */
    table[3] = 0.5f;
    CHECK_OK(fib_token_embedding_add(g, tokens, HIDDEN, FIB_DTYPE_F32, table, 0, &checked,
                                     &emb));
    CHECK(checked.data == table && checked.dtype == FIB_DTYPE_F32 &&
          checked.n == VOCAB * HIDDEN);
    CHECK_OK(fib_dense_add_over_checked(g, emb, VOCAB, FIB_DTYPE_F32, table, HIDDEN, NULL, 0,
                                        &checked, &head));
    /* the head's weights are the embedding's: row v of the block is token v */
    double w[VOCAB * HIDDEN];
    CHECK_OK(fib_graph_read_dense(g, head, FIB_DTYPE_F64, w, HIDDEN, NULL));
    for (int i = 0; i < VOCAB * HIDDEN; i++)
        CHECK(w[i] == (double)table[i]);

    /* what the record does not cover is checked: one row more, another
     * pointer, another dtype over the same bytes */
    CHECK(fib_dense_add_over_checked(g, emb, VOCAB + 1, FIB_DTYPE_F32, table, HIDDEN, NULL, 0,
                                     &checked, &head) == FIB_E_NONFINITE);
    CHECK(strstr(fib_last_error(), "row 5, column 1") != NULL);
    CHECK(fib_dense_add_over_checked(g, emb, VOCAB, FIB_DTYPE_F32, table + HIDDEN, HIDDEN,
                                     NULL, 0, &checked, &head) == FIB_E_NONFINITE);
    fib_finite_values as_f64 = {table, FIB_DTYPE_F64, VOCAB * HIDDEN};
    uint16_t half[VOCAB * HIDDEN];
    for (int i = 0; i < VOCAB * HIDDEN; i++)
        half[i] = 0x3f80; /* bfloat16 1.0 */
    half[7] = 0x7fc0; /* bfloat16 NaN */
    as_f64.data = half;
    CHECK(fib_dense_add_over_checked(g, emb, VOCAB, FIB_DTYPE_BF16, half, HIDDEN, NULL, 0,
                                     &as_f64, &head) == FIB_E_NONFINITE);
    bias[2] = INFINITY;
    CHECK(fib_dense_add_over_checked(g, emb, VOCAB, FIB_DTYPE_F32, table, HIDDEN, bias, 0,
                                     &checked, &head) == FIB_E_NONFINITE);
    CHECK(strstr(fib_last_error(), "bias 2") != NULL);
    int32_t n = 0;
    CHECK_OK(fib_graph_num_groups(g, &n));
    CHECK(n == 3);
    fib_graph_free(g);
}

int main(void)
{
    RUN(layouts_agree_f64);
    RUN(layouts_agree_f32);
    RUN(layouts_agree_bf16);
    RUN(nonfinite_named_in_block_terms);
    RUN(head_over_checked_embedding_checks_the_rest);
    return test_failures != 0;
}
