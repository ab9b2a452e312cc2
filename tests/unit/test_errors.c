/* The bad-input table: every case gives its own status and a message that
 * names what was wrong, and leaves the graph as it was. Run under valgrind
 * (meson test --setup valgrind) to see that nothing leaks. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "checks.h"
#include "fibration.h"
#include "testing.h"

int test_failures;

static void builder_errors(void)
{
    fib_graph *g = NULL;
    int32_t in = -1, id = -1, n = 0;
    double w[12] = {0}, bias[3] = {0};
    CHECK_OK(fib_graph_create(&g));
    CHECK_OK(fib_graph_add_input(g, 4, &in));

    expect(fib_graph_create(NULL), FIB_E_NULL, "out", "create NULL");
    expect(fib_graph_add_input(NULL, 4, &id), FIB_E_NULL, "graph", "input NULL graph");
    expect(fib_graph_add_input(g, 0, &id), FIB_E_SHAPE, "width 0", "input width 0");
    expect(fib_graph_add_input(g, INT64_C(1) << 41, &id), FIB_E_OVERFLOW, "2^40", "input too wide");
    expect(fib_graph_add_dense(g, 5, 3, FIB_DTYPE_F64, w, 4, NULL, 0, &id), FIB_E_RANGE,
           "group 5", "dense source range");
    expect(fib_graph_add_dense(g, in, 3, FIB_DTYPE_F64, NULL, 4, NULL, 0, &id), FIB_E_NULL,
           "weights", "dense NULL weights");
    expect(fib_graph_add_dense(g, in, 3, 7, w, 4, NULL, 0, &id), FIB_E_INVALID, "dtype 7",
           "dense dtype");
    expect(fib_graph_add_dense(g, in, 3, FIB_DTYPE_F64, w, 4, NULL, 0x10, &id), FIB_E_INVALID,
           "flags", "dense flags");
    expect(fib_graph_add_dense(g, in, 3, FIB_DTYPE_F64, w, 3, NULL, 0, &id), FIB_E_SHAPE,
           "leading dimension 3", "dense ld");
    expect(fib_graph_add_dense(g, in, 0, FIB_DTYPE_F64, w, 4, NULL, 0, &id), FIB_E_SHAPE,
           "n_out 0", "dense n_out 0");
    expect(fib_graph_add_dense(g, in, INT64_C(1) << 40, FIB_DTYPE_F64, w, INT64_C(1) << 40,
                               NULL, 0, &id),
           FIB_E_OVERFLOW, "overflow", "dense size overflow");
    w[1 * 4 + 2] = NAN;
    expect(fib_graph_add_dense(g, in, 3, FIB_DTYPE_F64, w, 4, NULL, 0, &id), FIB_E_NONFINITE,
           "row 1, column 2 is NaN", "dense NaN weight");
    w[1 * 4 + 2] = 0;
    bias[2] = INFINITY;
    expect(fib_graph_add_dense(g, in, 3, FIB_DTYPE_F64, w, 4, bias, 0, &id), FIB_E_NONFINITE,
           "bias 2", "dense Inf bias");
    float wf[12] = {0};
    wf[11] = -INFINITY;
    expect(fib_graph_add_dense(g, in, 3, FIB_DTYPE_F32, wf, 4, NULL, 0, &id), FIB_E_NONFINITE,
           "row 2, column 3 is infinite", "dense Inf float weight");
    uint16_t half[12] = {0};
    half[6] = 0x7E00; /* NaN in float16 */
    expect(fib_graph_add_dense(g, in, 3, FIB_DTYPE_F16, half, 4, NULL, 0, &id), FIB_E_NONFINITE,
           "row 1, column 2 is NaN", "dense NaN float16 weight");
    half[6] = 0;
    half[3] = 0xFF80; /* -infinity in bfloat16 */
    expect(fib_graph_add_dense(g, in, 3, FIB_DTYPE_BF16, half, 4, NULL, 0, &id),
           FIB_E_NONFINITE, "row 0, column 3 is infinite", "dense Inf bfloat16 weight");
    expect(fib_graph_set_activation(g, in, FIB_ACT_RELU, 0), FIB_E_INVALID, "input",
           "activation on input");
    int32_t h = -1, h2 = -1, s = -1;
    CHECK_OK(fib_graph_add_dense(g, in, 3, FIB_DTYPE_F64, w, 4, NULL, 0, &h));
    expect(fib_graph_set_activation(g, h, 99, 0), FIB_E_INVALID, "unknown activation 99",
           "unknown activation");
    /* half dtypes are held and read, never written into caller buffers */
    double out[12];
    expect(fib_graph_read_tensor(g, h, 0, FIB_DTYPE_BF16, out, 12), FIB_E_INVALID,
           "FIB_DTYPE_F32 or FIB_DTYPE_F64", "read_tensor as bfloat16");
    expect(fib_graph_read_dense(g, h, FIB_DTYPE_F16, out, 4, NULL), FIB_E_INVALID,
           "FIB_DTYPE_F32 or FIB_DTYPE_F64", "read_dense as float16");
    expect(fib_graph_forward(g, 1, FIB_DTYPE_F16, half, out), FIB_E_INVALID,
           "FIB_DTYPE_F32 or FIB_DTYPE_F64", "forward in float16");
    expect(fib_graph_set_activation(g, h, FIB_ACT_LEAKY_RELU, NAN), FIB_E_INVALID,
           "not finite", "activation parameter");
    expect(fib_graph_add_sum(g, in, h, &s), FIB_E_SHAPE, "4 units", "sum widths");
    expect(fib_graph_set_group_name(g, h, NULL), FIB_E_NULL, "name", "name NULL");
    char long_name[300];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = 0;
    expect(fib_graph_set_group_name(g, h, long_name), FIB_E_INVALID, "255", "name long");
    expect(fib_graph_set_group_eps(g, h, NAN), FIB_E_INVALID, "NaN", "eps NaN");
    expect(fib_graph_set_group_eps(g, h, INFINITY), FIB_E_INVALID, "infinite", "eps inf");
    double stat_mean[3] = {0, 0, 0}, stat_var[3] = {1, -1, 1};
    expect(fib_graph_set_unit_statistics(g, h, stat_mean, stat_var, 2), FIB_E_SHAPE,
           "2 statistics for 3 units", "statistics count");
    expect(fib_graph_set_unit_statistics(g, h, stat_mean, stat_var, 3), FIB_E_INVALID,
           "unit 1: variance -1 is negative", "statistics negative variance");
    stat_var[1] = NAN;
    expect(fib_graph_set_unit_statistics(g, h, stat_mean, stat_var, 3), FIB_E_NONFINITE,
           "unit 1: variance is nan", "statistics NaN");
    expect(fib_graph_read_dense(g, in, FIB_DTYPE_F64, w, 4, NULL), FIB_E_INVALID,
           "not a dense", "read input as dense");
    expect(fib_graph_read_dense(g, h, FIB_DTYPE_F64, w, 2, NULL), FIB_E_SHAPE, "leading",
           "read ld");
    expect(fib_graph_read_sum(g, h, NULL, NULL), FIB_E_INVALID, "not a sum", "read sum");
    expect(fib_graph_group_source(g, h, 1, &s), FIB_E_RANGE, "1 sources", "source index");
    CHECK(fib_graph_group_name(g, 99) == NULL);
    CHECK(strcmp(fib_graph_group_name(g, h), "") == 0);
    /* Nothing was added by the failing calls. */
    CHECK_OK(fib_graph_num_groups(g, &n));
    CHECK(n == 2);
    CHECK_OK(fib_graph_add_dense(g, h, 2, FIB_DTYPE_F64, w, 3, NULL, 0, &h2));
    fib_graph_free(g);
}

static void colouring_errors(void)
{
    fib_graph *g = NULL, *other = NULL;
    int32_t in, h, out;
    double w[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    fib_graph_create(&g);
    fib_graph_add_input(g, 4, &in);
    fib_graph_add_dense(g, in, 3, FIB_DTYPE_F64, w, 4, NULL, 0, &h);
    fib_graph_add_dense(g, h, 2, FIB_DTYPE_F64, w, 3, NULL, 0, &out);
    fib_graph_create(&other);
    fib_graph_add_input(other, 5, &in);

    fib_color_options o;
    fib_coloring *c = NULL;
    expect(fib_color_options_init(NULL, sizeof o), FIB_E_NULL, "options", "init NULL");
    expect(fib_color_options_init(&o, 4), FIB_E_INVALID, "struct_size 4", "init small");
    fib_color_options_init(&o, sizeof o);
    o.struct_size = 8;
    expect(fib_color(g, &o, &c), FIB_E_INVALID, "struct_size", "color struct_size");
    fib_color_options_init(&o, sizeof o);
    o.symmetry = 9;
    expect(fib_color(g, &o, &c), FIB_E_INVALID, "symmetry 9", "color symmetry");
    fib_color_options_init(&o, sizeof o);
    o.tolerance = 99;
    expect(fib_color(g, &o, &c), FIB_E_INVALID, "tolerance 99", "color tolerance");
    fib_color_options_init(&o, sizeof o);
    o.eps = NAN;
    expect(fib_color(g, &o, &c), FIB_E_INVALID, "eps", "color eps NaN");
    o.eps = -1;
    expect(fib_color(g, &o, &c), FIB_E_INVALID, "eps", "color eps negative");
    fib_color_options_init(&o, sizeof o);
    o.n_threads = -2;
    expect(fib_color(g, &o, &c), FIB_E_INVALID, "n_threads", "color threads");
    expect(fib_color(NULL, NULL, &c), FIB_E_NULL, "graph", "color NULL graph");
    CHECK(c == NULL);

    CHECK_OK(fib_color(g, NULL, &c));
    int64_t colors[4], sizes[1];
    expect(fib_coloring_colors(c, h, colors, 2), FIB_E_BUFFER, "needs 3", "colors buffer");
    expect(fib_coloring_class_sizes(c, h, sizes, 0), FIB_E_BUFFER, "needs", "sizes buffer");
    expect(fib_coloring_colors(c, 7, colors, 4), FIB_E_RANGE, "group 7", "colors range");
    expect(fib_coloring_set_group(c, h, colors, 4), FIB_E_SHAPE, "3 units", "set_group shape");
    fib_base *b = NULL;
    expect(fib_compress(other, c, &b), FIB_E_MISMATCH, "groups", "compress mismatch");
    int32_t bal;
    expect(fib_coloring_is_balanced(other, c, 0, &bal), FIB_E_MISMATCH, "groups",
           "balanced mismatch");
    expect(fib_coloring_is_balanced(g, c, -1, &bal), FIB_E_INVALID, "eps", "balanced eps");
    CHECK(b == NULL);

    double x[4] = {1, 2, 3, NAN}, y[2];
    expect(fib_graph_forward(g, 0, FIB_DTYPE_F64, x, y), FIB_E_SHAPE, "batch 0", "forward batch");
    expect(fib_graph_forward(g, 1, FIB_DTYPE_F64, x, y), FIB_E_NONFINITE, "input 3",
           "forward NaN");
    expect(fib_graph_forward(g, 1, 3, x, y), FIB_E_INVALID, "dtype", "forward dtype");
    expect(fib_graph_forward(g, 1, FIB_DTYPE_F64, NULL, y), FIB_E_NULL, "inputs", "forward NULL");
    expect(fib_lift(NULL, NULL, &other), FIB_E_NULL, "base", "lift NULL");
    fib_coloring_free(c);
    fib_graph_free(g);
    fib_graph_free(other);
}

static void names_versions_and_null_frees(void)
{
    const int32_t codes[] = {FIB_OK, FIB_E_NULL, FIB_E_INVALID, FIB_E_SHAPE, FIB_E_NONFINITE,
                             FIB_E_OVERFLOW, FIB_E_NOMEM, FIB_E_RANGE, FIB_E_MISMATCH,
                             FIB_E_UNSUPPORTED, FIB_E_IO, FIB_E_FORMAT, FIB_E_CANCELLED,
                             FIB_E_BUFFER};
    size_t count = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < count; i++) {
        CHECK(codes[i] == -(int32_t)i); /* values are fixed forever */
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(fib_status_name(codes[i]), fib_status_name(codes[j])) != 0);
    }
    CHECK(strcmp(fib_status_name(-99), "FIB_E_UNKNOWN") == 0);
    CHECK(fib_version() == FIB_VERSION_NUMBER);
    char expected[32];
    snprintf(expected, sizeof expected, "%d.%d.%d", FIB_VERSION_MAJOR, FIB_VERSION_MINOR,
             FIB_VERSION_PATCH);
    CHECK(strcmp(fib_version_string(), expected) == 0);
    (void)fib_features();
    fib_graph_free(NULL);
    fib_coloring_free(NULL);
    fib_base_free(NULL);
    CHECK(fib_base_graph(NULL) == NULL);
}

/* fib_op_name and fib_activation_name: the spelling of every constant
 * (the one model files and the command use), distinct, NULL past them. */
static void op_and_activation_names(void)
{
    static const struct { int32_t code; const char *name; } ops[] = {
        {FIB_OP_INPUT, "input"}, {FIB_OP_DENSE, "dense"}, {FIB_OP_SUM, "sum"},
        {FIB_OP_CONV, "conv"}, {FIB_OP_POOL, "pool"}, {FIB_OP_FLATTEN, "flatten"},
        {FIB_OP_AFFINE, "affine"}, {FIB_OP_LSTM, "lstm"}, {FIB_OP_GRU, "gru"},
        {FIB_OP_LAST_STEP, "last_step"}, {FIB_OP_ATTEND, "attend"}, {FIB_OP_NORM, "norm"},
        {FIB_OP_NODES, "nodes"}, {FIB_OP_PRODUCT, "product"}};
    static const struct { int32_t code; const char *name; } acts[] = {
        {FIB_ACT_LINEAR, "linear"}, {FIB_ACT_RELU, "relu"},
        {FIB_ACT_LEAKY_RELU, "leaky_relu"}, {FIB_ACT_TANH, "tanh"},
        {FIB_ACT_SIGMOID, "sigmoid"}, {FIB_ACT_GELU, "gelu"}, {FIB_ACT_SILU, "silu"},
        {FIB_ACT_RELU6, "relu6"}, {FIB_ACT_HARDSWISH, "hardswish"},
        {FIB_ACT_HARDSIGMOID, "hardsigmoid"}, {FIB_ACT_MISH, "mish"},
        {FIB_ACT_SOFTPLUS, "softplus"}};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        const char *name = fib_op_name(ops[i].code);
        CHECK(name && strcmp(name, ops[i].name) == 0);
        for (size_t j = 0; name && j < i; j++)
            CHECK(strcmp(name, fib_op_name(ops[j].code)) != 0);
    }
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
        const char *name = fib_activation_name(acts[i].code);
        CHECK(name && strcmp(name, acts[i].name) == 0);
        for (size_t j = 0; name && j < i; j++)
            CHECK(strcmp(name, fib_activation_name(acts[j].code)) != 0);
    }
    CHECK(fib_op_name(-1) == NULL && fib_op_name(INT32_MAX) == NULL);
    CHECK(fib_activation_name(-1) == NULL && fib_activation_name(INT32_MAX) == NULL);
}

/* Strict UTF-8 structure: every lead byte followed by its continuation
 * bytes, nothing else. */
static bool valid_utf8(const char *text)
{
    const unsigned char *s = (const unsigned char *)text;
    while (*s) {
        int more = *s < 0x80 ? 0 : *s >= 0xF0 && *s < 0xF8 ? 3 : *s >= 0xE0 ? 2
                 : *s >= 0xC0 ? 1 : -1;
        if (more < 0)
            return false;
        s++;
        for (int k = 0; k < more; k++, s++)
            if ((*s & 0xC0) != 0x80)
                return false;
    }
    return true;
}

static bool ends_with(const char *text, const char *end)
{
    size_t n = strlen(text), m = strlen(end);
    return n >= m && strcmp(text + n - m, end) == 0;
}

/* A path of `n_chars` copies of `ch` in directories of 50 characters,
 * after `shift` ASCII bytes, under a directory that does not exist. */
static char *long_path(const char *ch, int n_chars, int shift)
{
    size_t size = strlen("/fib-no-such-dir/") + (size_t)shift + (size_t)n_chars * (strlen(ch) + 1) + 1;
    char *path = malloc(size);
    strcpy(path, "/fib-no-such-dir/");
    for (int k = 0; k < shift; k++)
        strcat(path, "x");
    for (int k = 0; k < n_chars; k++) {
        strcat(path, ch);
        if (k % 50 == 49)
            strcat(path, "/");
    }
    return path;
}

/* fib_last_error used to be cut at 511 bytes, losing the reason after a
 * long path. A path of PATH_MAX bytes fits whole; a longer message keeps
 * its start and its reason, elided in the middle, and stays valid UTF-8
 * wherever the cuts fall inside multi-byte characters. */
static void long_path_keeps_the_reason(void)
{
    fib_graph *g = NULL;
    char *path = long_path("d", 3900, 0);
    CHECK(fib_model_load(path, NULL, &g) == FIB_E_IO);
    CHECK(strncmp(fib_last_error(), path, strlen(path)) == 0);
    CHECK(strstr(fib_last_error(), "cannot open") != NULL);
    CHECK(ends_with(fib_last_error(), "No such file or directory"));
    free(path);

    const char *chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"}; /* é € 😀 */
    for (int c = 0; c < 3; c++)
        for (int shift = 0; shift < 4; shift++) {
            path = long_path(chars[c], 5000, shift);
            CHECK(fib_model_load(path, NULL, &g) == FIB_E_IO);
            const char *message = fib_last_error();
            CHECK(strlen(message) < 4096);
            CHECK(strlen(message) > 3000); /* the buffer is used, not cut short */
            CHECK(valid_utf8(message));
            CHECK(strncmp(message, "/fib-no-such-dir/", 17) == 0);
            CHECK(strstr(message, " ... ") != NULL);
            CHECK(ends_with(message, ": cannot open: File name too long"));
            free(path);
        }
    CHECK(g == NULL);
}

int main(void)
{
    RUN(builder_errors);
    RUN(colouring_errors);
    RUN(names_versions_and_null_frees);
    RUN(op_and_activation_names);
    RUN(long_path_keeps_the_reason);
    return test_failures ? 1 : 0;
}
