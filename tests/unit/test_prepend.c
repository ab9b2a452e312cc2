/* The blocks of a Vision Transformer's input and output: prepended constant
 * positions (the class token), a position shift (the position embedding)
 * and a selected step (x[:, 0]). The forward pass against their definition,
 * planted duplicate channels merged exactly (with equal constants) and
 * lifted back, unequal constants kept apart, balanced opfibers, model files
 * that load back identical (graph and base), bad arguments. */
#include "checks.h"
#include "testing.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int test_failures;

enum { N = 5, ROWS = 2, COLS = 3, POS = ROWS * COLS, K = 1, SEQ = K + POS, BATCH = 3,
       TWIN = 3 };

/* input (N channels, ROWS x COLS) -> a = dense per position -> prepend K
 * token positions -> + shift (SEQ x N) -> d = tanh(dense) -> x[:, 0] ->
 * out = dense (2). With `twin`, channel TWIN of a copies channel 0 (its
 * row, its token, its shifts); d reads the two unevenly. */
typedef struct {
    fib_graph *g;
    int32_t in, a, pre, shift, d, step, out;
    double wa[N * N], token[K * N], pos[SEQ * N], wd[N * N], wo[2 * N];
} vit;

static void build(vit *m, uint64_t seed, bool twin, bool token_differs, bool shift_differs)
{
    uint64_t rng = seed;
    double *arrays[5];
    int64_t sizes[5] = {N * N, K * N, SEQ * N, N * N, 2 * N};
    double *dest[5] = {m->wa, m->token, m->pos, m->wd, m->wo};
    for (int x = 0; x < 5; x++) {
        arrays[x] = test_random_array(&rng, sizes[x], -1, 1);
        memcpy(dest[x], arrays[x], (size_t)sizes[x] * sizeof(double));
        free(arrays[x]);
    }
    if (twin) {
        memcpy(m->wa + TWIN * N, m->wa, N * sizeof(double));
        for (int p = 0; p < K; p++)
            m->token[p * N + TWIN] = m->token[p * N] + (token_differs ? 0.25 : 0.0);
        for (int p = 0; p < SEQ; p++)
            m->pos[p * N + TWIN] = m->pos[p * N] + (shift_differs && p == SEQ - 1 ? 0.25 : 0.0);
    }
    CHECK_OK(fib_graph_create(&m->g));
    CHECK_OK(fib_graph_add_input_positions(m->g, N, ROWS, COLS, &m->in));
    CHECK_OK(fib_graph_add_dense(m->g, m->in, N, FIB_DTYPE_F64, m->wa, N, NULL, 0, &m->a));
    CHECK_OK(fib_graph_add_prepend(m->g, m->a, K, FIB_DTYPE_F64, m->token, &m->pre));
    CHECK_OK(fib_graph_add_position_shift(m->g, m->pre, FIB_DTYPE_F64, m->pos, &m->shift));
    CHECK_OK(fib_graph_add_dense(m->g, m->shift, N, FIB_DTYPE_F64, m->wd, N, NULL, 0, &m->d));
    CHECK_OK(fib_graph_set_activation(m->g, m->d, FIB_ACT_TANH, 0));
    CHECK_OK(fib_graph_add_select_step(m->g, m->d, 0, &m->step));
    CHECK_OK(fib_graph_add_dense(m->g, m->step, 2, FIB_DTYPE_F64, m->wo, N, NULL, 0, &m->out));
}

static void forward_prepends_shifts_and_selects(void)
{
    vit m;
    build(&m, 21, false, false, false);
    int64_t rows = 0, cols = 0;
    CHECK_OK(fib_graph_group_positions(m.g, m.pre, &rows, &cols));
    CHECK(rows == SEQ && cols == 1);
    uint64_t rng = 4;
    double *x = test_random_array(&rng, BATCH * POS * N, -2, 2);
    double a[BATCH * POS * N], pre[BATCH * SEQ * N], shifted[BATCH * SEQ * N];
    double d[BATCH * SEQ * N], step[BATCH * N];
    CHECK_OK(fib_graph_forward_group(m.g, BATCH, FIB_DTYPE_F64, x, m.a, a));
    CHECK_OK(fib_graph_forward_group(m.g, BATCH, FIB_DTYPE_F64, x, m.pre, pre));
    CHECK_OK(fib_graph_forward_group(m.g, BATCH, FIB_DTYPE_F64, x, m.shift, shifted));
    CHECK_OK(fib_graph_forward_group(m.g, BATCH, FIB_DTYPE_F64, x, m.d, d));
    CHECK_OK(fib_graph_forward_group(m.g, BATCH, FIB_DTYPE_F64, x, m.step, step));
    for (int64_t n = 0; n < BATCH; n++)
        for (int64_t p = 0; p < SEQ; p++)
            for (int64_t i = 0; i < N; i++) {
                int64_t r = (n * SEQ + p) * N + i;
                double want = p < K ? m.token[p * N + i] : a[(n * POS + p - K) * N + i];
                CHECK(pre[r] == want);
                CHECK(shifted[r] == want + m.pos[p * N + i]);
                if (p == 0)
                    CHECK(step[n * N + i] == d[r]);
            }
    int64_t params[1 + N], count = 0;
    CHECK_OK(fib_graph_block_params(m.g, m.step, params, 1 + N, &count));
    CHECK(count == 1 + N && params[0] == 0 && params[N] == N - 1);
    CHECK_OK(fib_graph_block_params(m.g, m.pre, params, 1 + N, &count));
    CHECK(count == 1 + N && params[0] == K && params[1] == 0);
    int32_t op = -1;
    CHECK_OK(fib_graph_group_info(m.g, m.shift, &op, NULL, NULL, NULL, NULL, NULL, NULL));
    CHECK(op == FIB_OP_POSITION_SHIFT);
    int64_t n_params = 0;
    CHECK_OK(fib_graph_num_parameters(m.g, &n_params));
    CHECK(n_params == N * N + K * N + SEQ * N + N * N + 2 * N);
    /* a negative position counts from the end: -1 is the last step */
    int32_t last, minus_one;
    CHECK_OK(fib_graph_add_last_step(m.g, m.d, &last));
    CHECK_OK(fib_graph_add_select_step(m.g, m.d, -1, &minus_one));
    double y_last[BATCH * N], y_minus[BATCH * N];
    CHECK_OK(fib_graph_forward_group(m.g, BATCH, FIB_DTYPE_F64, x, last, y_last));
    CHECK_OK(fib_graph_forward_group(m.g, BATCH, FIB_DTYPE_F64, x, minus_one, y_minus));
    CHECK(memcmp(y_last, y_minus, sizeof y_last) == 0);
    CHECK(y_last[N + 1] == d[(1 * SEQ + SEQ - 1) * N + 1]);
    free(x);
    fib_graph_free(m.g);
}

static void planted_channel_merges_exactly_and_lifts_back(void)
{
    vit m;
    build(&m, 22, true, false, false);
    fib_coloring *c = test_color(m.g, FIB_SYM_FIBERS);
    CHECK(test_num_classes(c, m.a) == N - 1);
    CHECK(test_num_classes(c, m.pre) == N - 1);
    CHECK(test_num_classes(c, m.shift) == N - 1);
    CHECK(test_num_classes(c, m.d) == N);
    fib_base *base = NULL;
    CHECK_OK(fib_compress(m.g, c, &base));
    const fib_graph *bg = fib_base_graph(base);
    int64_t full_params = 0, base_params = 0;
    CHECK_OK(fib_graph_num_parameters(m.g, &full_params));
    CHECK_OK(fib_graph_num_parameters(bg, &base_params));
    /* a loses a row, the token and the shifts one unit each, d a column */
    CHECK(base_params == full_params - N - K - SEQ - N);
    CHECK(test_output_difference(m.g, bg, 31, BATCH, 2.0) < 1e-13);
    fib_graph *lifted = NULL;
    CHECK_OK(fib_lift(base, NULL, &lifted));
    CHECK(test_output_difference(m.g, lifted, 32, BATCH, 2.0) < 1e-13);
    fib_graph_free(lifted);
    fib_base_free(base);
    fib_coloring_free(c);
    fib_graph_free(m.g);
}

static void unequal_constants_keep_the_copies_apart(void)
{
    for (int which = 0; which < 2; which++) {
        vit m;
        build(&m, 23, true, which == 0, which == 1);
        fib_coloring *c = test_color(m.g, FIB_SYM_FIBERS);
        CHECK(test_num_classes(c, m.a) == N - 1);
        CHECK(test_num_classes(c, m.pre) == (which == 0 ? N : N - 1));
        CHECK(test_num_classes(c, m.shift) == N);
        fib_coloring_free(c);
        fib_graph_free(m.g);
    }
}

static void opfibers_and_covers_are_balanced(void)
{
    vit m;
    build(&m, 24, true, false, false);
    for (int32_t symmetry = FIB_SYM_OPFIBERS; symmetry <= FIB_SYM_COVERS; symmetry++) {
        fib_coloring *c = test_color(m.g, symmetry);
        int32_t balanced = 0;
        CHECK_OK(fib_coloring_is_balanced(m.g, c, 0.0, &balanced));
        CHECK(balanced);
        fib_coloring_free(c);
    }
    fib_graph_free(m.g);
}

static void model_files_load_back_identical(void)
{
    char dir[] = "/tmp/fib-prepend-XXXXXX", path[64], base_path[64];
    if (!mkdtemp(dir)) {
        CHECK(!"mkdtemp");
        return;
    }
    snprintf(path, sizeof path, "%s/vit.safetensors", dir);
    snprintf(base_path, sizeof base_path, "%s/base.safetensors", dir);
    vit m;
    build(&m, 25, true, false, false);
    CHECK_OK(fib_model_save(m.g, path, 0));
    fib_graph *loaded = NULL;
    CHECK_OK(fib_model_load(path, NULL, &loaded));
    if (loaded) {
        CHECK(test_output_difference(m.g, loaded, 33, BATCH, 2.0) == 0.0);
        int32_t op = -1;
        CHECK_OK(fib_graph_group_info(loaded, m.step, &op, NULL, NULL, NULL, NULL, NULL,
                                      NULL));
        CHECK(op == FIB_OP_SELECT_STEP);
    }
    fib_coloring *c = test_color(m.g, FIB_SYM_FIBERS);
    fib_base *base = NULL;
    CHECK_OK(fib_compress(m.g, c, &base));
    CHECK_OK(fib_base_save(base, base_path, 0));
    fib_base *read = NULL;
    CHECK_OK(fib_base_load(base_path, NULL, &read));
    if (read) {
        CHECK(test_output_difference(fib_base_graph(base), fib_base_graph(read), 34, BATCH,
                                     2.0) == 0.0);
        fib_graph *lifted = NULL;
        CHECK_OK(fib_lift(read, NULL, &lifted));
        CHECK(test_output_difference(m.g, lifted, 35, BATCH, 2.0) < 1e-13);
        fib_graph_free(lifted);
    }
    fib_base_free(read);
    fib_base_free(base);
    fib_coloring_free(c);
    fib_graph_free(loaded);
    fib_graph_free(m.g);
    unlink(path);
    unlink(base_path);
    rmdir(dir);
}

static void bad_arguments(void)
{
    fib_graph *g = NULL;
    int32_t img, seq, out;
    double v[2 * 3] = {0};
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input_positions(g, 3, 2, 2, &img));
    CHECK_OK(fib_graph_add_input_positions(g, 3, 4, 1, &seq));
    expect(fib_graph_add_prepend(g, img, -1, FIB_DTYPE_F64, v, &out), FIB_E_SHAPE,
           "prepended positions", "negative count");
    expect(fib_graph_add_prepend(g, img, 1, FIB_DTYPE_F64, NULL, &out), FIB_E_NULL, "values",
           "no values");
    expect(fib_graph_add_prepend(g, img, 1, 99, v, &out), FIB_E_INVALID, "dtype",
           "bad dtype");
    v[1] = NAN;
    expect(fib_graph_add_prepend(g, img, 1, FIB_DTYPE_F64, v, &out), FIB_E_NONFINITE,
           "[0, 1]", "NaN token");
    expect(fib_graph_add_position_shift(g, seq, FIB_DTYPE_F64, NULL, &out), FIB_E_NULL,
           "shift", "no shift");
    expect(fib_graph_add_position_shift(g, 9, FIB_DTYPE_F64, v, &out), FIB_E_RANGE, "9",
           "bad source");
    expect(fib_graph_add_select_step(g, seq, 4, &out), FIB_E_RANGE, "position 4",
           "past the end");
    expect(fib_graph_add_select_step(g, seq, -5, &out), FIB_E_RANGE, "position -5",
           "before the start");
    expect(fib_graph_add_select_step(g, img, 0, &out), FIB_E_SHAPE, "not a sequence",
           "an image");
    /* zero prepended positions: the image as the sequence of its pixels */
    CHECK_OK(fib_graph_add_prepend(g, img, 0, FIB_DTYPE_F64, NULL, &out));
    int64_t rows = 0, cols = 0, n_params = -1;
    CHECK_OK(fib_graph_group_positions(g, out, &rows, &cols));
    CHECK(rows == 4 && cols == 1);
    CHECK_OK(fib_graph_num_parameters(g, &n_params));
    CHECK(n_params == 0);
    fib_graph_free(g);
}

int main(void)
{
    RUN(forward_prepends_shifts_and_selects);
    RUN(planted_channel_merges_exactly_and_lifts_back);
    RUN(unequal_constants_keep_the_copies_apart);
    RUN(opfibers_and_covers_are_balanced);
    RUN(model_files_load_back_identical);
    RUN(bad_arguments);
    return test_failures ? 1 : 0;
}
