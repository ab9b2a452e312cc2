/* Fuzz target: random sequences of API calls decoded from the input — build
 * a graph with hostile sizes, colour, compress, lift, break symmetry, run it
 * forward, free — checking the promises of include/fibration.h: a failing
 * call returns a negative FIB_E_* with a message and leaves its out-pointer
 * alone; sizes that the manual forbids are refused before any buffer is
 * read; nothing crashes or leaks (ASan/LSan). Weights come from a pool whose
 * values are small integers, so colourings have real classes. */
#include "fuzz.h"
#include "fibration.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POOL 4096
static double pool64[POOL];
static float pool32[POOL];
static double io_in[POOL], io_out[POOL];
static int64_t labels[POOL];

static const int64_t sizes[] = {
    1, 2, 3, 4, 5, 8, 16, 0, -1, INT64_MIN, INT64_MAX,
    (int64_t)1 << 40, ((int64_t)1 << 40) + 1, (int64_t)1 << 62,
    (int64_t)1 << 31, 6,
};
#define N_SIZES (int)(sizeof sizes / sizeof sizes[0])

static const double reals[] = {0, 0.01, 1e-9, 1, -1, 1e300, NAN, INFINITY};

typedef struct state {
    fib_graph *g;
    fib_coloring *col;
    fib_base *base;
    fib_graph *lifted;
    fib_graph *broken;
    int32_t cancel_after; /* progress callback: cancel at this step, or -1 */
    int32_t steps;
} state;

static int64_t pick_size(fuzz_input *in)
{
    return sizes[fuzz_u8(in) % N_SIZES];
}

/* A failing call: negative status, a message, out-pointer untouched. */
static void check_status(int32_t st)
{
    FUZZ_ASSERT(st <= 0 && st >= FIB_E_BUFFER);
    FUZZ_ASSERT(strcmp(fib_status_name(st), "FIB_E_UNKNOWN") != 0);
    if (st != FIB_OK)
        FUZZ_ASSERT(fib_last_error()[0] != '\0');
}

static int64_t width(const fib_graph *g, int32_t group)
{
    int64_t n = -1;
    if (fib_graph_group_info(g, group, NULL, &n, NULL, NULL, NULL, NULL,
                             NULL) != FIB_OK)
        return -1;
    return n;
}

static int32_t n_groups(const fib_graph *g)
{
    int32_t n = 0;
    fib_graph_num_groups(g, &n);
    return n;
}

static int32_t progress(void *user, int64_t done, int64_t total)
{
    state *s = user;
    FUZZ_ASSERT(done >= 0 && done <= total);
    return s->cancel_after >= 0 && s->steps++ >= s->cancel_after;
}

static void op_dense(state *s, fuzz_input *in)
{
    int32_t source = (int32_t)(fuzz_u8(in) % (n_groups(s->g) + 1));
    int64_t n_out = pick_size(in);
    int64_t n_in = width(s->g, source);
    int64_t ld = n_in + fuzz_u8(in) % 3;
    if (fuzz_u8(in) % 8 == 0)
        ld = pick_size(in);
    uint8_t kind = fuzz_u8(in);
    int32_t dtype = kind % 5 == 4 ? 7 : kind % 2 ? FIB_DTYPE_F32 : FIB_DTYPE_F64;
    uint32_t flags = kind & 8 ? FIB_COPY : 0;
    if (kind % 23 == 0)
        flags = 0x10;
    const void *w = dtype == FIB_DTYPE_F32 ? (const void *)pool32 : pool64;
    const void *bias = kind & 16 ? NULL : w;
    /* Sizes the manual forbids must be refused without reading a weight;
     * sizes it allows are only tried when the pool holds them. */
    int forbidden = n_in < 0 || n_out < 1 || ld < n_in ||
                    n_out > ((int64_t)1 << 40) ||
                    (ld > 0 && n_out > INT64_MAX / ld);
    if (!forbidden && (n_out * ld > POOL || n_out > POOL))
        return;
    int32_t id = -77;
    int32_t st = fib_graph_add_dense(s->g, source, n_out, dtype, w, ld, bias,
                                     flags, &id);
    check_status(st);
    if (forbidden)
        FUZZ_ASSERT(st < 0);
    if (st < 0)
        FUZZ_ASSERT(id == -77);
    else
        fib_graph_set_activation(s->g, id, fuzz_u8(in) % 8,
                                 reals[fuzz_u8(in) % 8]);
}

static void op_color(state *s, fuzz_input *in)
{
    fib_color_options o;
    fib_color_options_init(&o, sizeof o);
    uint8_t k = fuzz_u8(in);
    o.symmetry = k % 5;
    o.tolerance = (k / 5) % 3;
    o.eps = reals[fuzz_u8(in) % 8];
    o.n_threads = k / 64;
    s->cancel_after = (k & 32) ? (int32_t)(fuzz_u8(in) % 4) : -1;
    s->steps = 0;
    o.progress = progress;
    o.progress_user = s;
    fib_coloring *c = (fib_coloring *)&o; /* a sentinel: must stay */
    int32_t st = fib_color(s->g, k == 255 ? NULL : &o, &c);
    check_status(st);
    if (st < 0) {
        FUZZ_ASSERT(c == (fib_coloring *)&o);
        return;
    }
    int32_t groups = n_groups(s->g);
    for (int32_t i = 0; i < groups; i++) {
        int64_t n = width(s->g, i), classes = 0;
        FUZZ_ASSERT(fib_coloring_num_classes(c, i, &classes) == FIB_OK);
        FUZZ_ASSERT(classes >= 1 && classes <= n);
        if (n <= POOL && fib_coloring_colors(c, i, labels, n) == FIB_OK)
            for (int64_t u = 0; u < n; u++)
                FUZZ_ASSERT(labels[u] >= 0 && labels[u] < classes &&
                            labels[u] <= u);
    }
    fib_coloring_free(s->col);
    s->col = c;
}

static void op_forward(state *s, fuzz_input *in)
{
    int64_t n_in = 0, n_out = 0, batch = 1 + fuzz_u8(in) % 3;
    if (fib_graph_io_width(s->g, &n_in, &n_out) != FIB_OK ||
        n_in * batch > POOL || n_out * batch > POOL)
        return;
    for (int64_t i = 0; i < n_in * batch; i++)
        io_in[i] = pool64[i];
    check_status(fib_graph_forward(s->g, batch, FIB_DTYPE_F64, io_in, io_out));
}

static void op_set_colors(state *s, fuzz_input *in)
{
    fib_coloring *c = NULL;
    int32_t st = fib_coloring_create(s->g, 1 + fuzz_u8(in) % 3, &c);
    check_status(st);
    if (st < 0)
        return;
    int32_t group = (int32_t)(fuzz_u8(in) % (n_groups(s->g) + 1));
    int64_t n = width(s->g, group);
    if (fuzz_u8(in) % 4 == 0)
        n = pick_size(in);
    if (n >= 0 && n <= POOL) {
        for (int64_t u = 0; u < n; u++)
            labels[u] = fuzz_u8(in) % 3;
        check_status(fib_coloring_set_group(c, group, labels, n));
    }
    fib_coloring_free(s->col);
    s->col = c;
}

static void op_conv(state *s, fuzz_input *in)
{
    int64_t channels = 1 + fuzz_u8(in) % 4, rows = 1 + fuzz_u8(in) % 6;
    int32_t input, conv = -1;
    if (fuzz_u8(in) % 8 == 0) {
        check_status(fib_graph_add_input_positions(s->g, pick_size(in),
                                                   pick_size(in), pick_size(in),
                                                   &input));
        return;
    }
    if (fib_graph_add_input_positions(s->g, channels, rows, rows, &input))
        return;
    int64_t n_out = 1 + fuzz_u8(in) % 4, k = 1 + fuzz_u8(in) % 3;
    int64_t stride = 1 + fuzz_u8(in) % 2, pad = fuzz_u8(in) % 2;
    int64_t groups = fuzz_u8(in) % 2 ? channels : 1;
    if (n_out % groups)
        n_out = groups;
    if (n_out * channels * k * k > POOL)
        return;
    uint8_t kind = fuzz_u8(in);
    int32_t st = fib_graph_add_conv(s->g, input, n_out, k, k, stride, stride,
                                    pad, pad, groups, FIB_DTYPE_F32, pool32,
                                    kind & 1 ? NULL : pool32, FIB_COPY, &conv);
    check_status(st);
    if (st < 0)
        return;
    int32_t next = conv;
    if (kind & 2)
        check_status(fib_graph_add_pool(s->g, conv, kind % 2, 2, 2, 2, 2, 0, 0,
                                        &next));
    if (kind & 4)
        check_status(fib_graph_add_affine(s->g, next, FIB_DTYPE_F64, pool64,
                                          kind & 8 ? pool64 : NULL, FIB_COPY,
                                          &next));
    int32_t flat;
    check_status(fib_graph_add_flatten(s->g, next, &flat));
}

static void op_nodes(state *s, fuzz_input *in)
{
    int32_t group;
    int64_t n = fuzz_u8(in) % 9;
    if (fib_graph_add_nodes(s->g, n, &group) != FIB_OK)
        return;
    int64_t m = fuzz_u8(in) % 16, src[16], dst[16];
    double weight[16];
    for (int64_t i = 0; i < m; i++) {
        src[i] = fuzz_u8(in) % (n + 1); /* n is out of range */
        dst[i] = fuzz_u8(in) % (n + 1);
        weight[i] = reals[fuzz_u8(in) % 8];
    }
    int32_t st = fib_graph_add_edges(s->g, group, group, m, src, dst,
                                     fuzz_u8(in) % 2 ? weight : NULL, NULL,
                                     FIB_COPY);
    check_status(st);
}

static void op_build(state *s, fuzz_input *in)
{
    fib_graph_free(s->lifted);
    s->lifted = NULL;
    fib_graph_free(s->broken);
    s->broken = NULL;
    uint8_t k = fuzz_u8(in);
    if (k % 3 == 0 && s->g && s->col) {
        fib_base *b = NULL;
        int32_t st = fib_compress(s->g, s->col, &b);
        check_status(st);
        if (st == FIB_OK) {
            fib_base_free(s->base);
            s->base = b;
        }
    } else if (k % 3 == 1 && s->base) {
        const fib_graph *weights = k & 4 ? fib_base_graph(s->base) : s->g;
        check_status(fib_lift(s->base, weights, &s->lifted));
        if (s->lifted) {
            fib_coloring *c = NULL;
            if (fib_color(s->lifted, NULL, &c) == FIB_OK)
                fib_coloring_free(c);
        }
    } else if (s->g) {
        check_status(fib_break_symmetry(s->g, k & 4 ? s->col : NULL,
                                        (uint64_t)k, &s->broken));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size, 0};
    /* Pool values: small integers taken from the first bytes, repeating. */
    uint8_t seed[16];
    for (int i = 0; i < 16; i++)
        seed[i] = fuzz_u8(&in);
    for (int i = 0; i < POOL; i++) {
        pool64[i] = (double)(seed[i % 16] % 5) - 2;
        pool32[i] = (float)pool64[i];
    }
    state s = {0};
    if (fib_graph_create(&s.g) != FIB_OK)
        return 0;
    for (int n_ops = 0; fuzz_more(&in) && n_ops < 64; n_ops++) {
        int32_t id;
        switch (fuzz_u8(&in) % 12) {
        case 0:
            check_status(fib_graph_add_input(s.g, pick_size(&in), &id));
            break;
        case 1:
        case 2:
            op_dense(&s, &in);
            break;
        case 3:
            check_status(fib_graph_add_sum(s.g, fuzz_u8(&in) % 8,
                                           fuzz_u8(&in) % 8, &id));
            break;
        case 4:
        case 5:
            op_color(&s, &in);
            break;
        case 6:
            op_build(&s, &in);
            break;
        case 7:
            op_forward(&s, &in);
            break;
        case 8:
            op_set_colors(&s, &in);
            break;
        case 9:
            op_conv(&s, &in);
            break;
        case 10:
            op_nodes(&s, &in);
            break;
        case 11: { /* start over; a colouring of the old graph is kept */
            int32_t balanced;
            if (s.col)
                check_status(fib_coloring_is_balanced(s.g, s.col, 0,
                                                      &balanced));
            fib_graph_free(s.g);
            if (fib_graph_create(&s.g) != FIB_OK)
                s.g = NULL;
            break;
        }
        }
        if (!s.g)
            break;
    }
    fib_graph_free(s.g);
    fib_coloring_free(s.col);
    fib_base_free(s.base);
    fib_graph_free(s.lifted);
    fib_graph_free(s.broken);
    return 0;
}
