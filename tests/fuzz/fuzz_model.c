/* Fuzz target: the structure-metadata reader. The input is the text of the
 * "fibration" metadata; the target wraps it in a valid safetensors file with
 * a fixed set of small tensors (F32, F64, F16) and loads that as a model and
 * as a base. Any outcome but a graph or a clean error naming the file is a
 * bug; a graph that loads is coloured, compressed and lifted. */
#include "fuzz.h"
#include "compress/compress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

typedef struct fixed_tensor {
    const char *name;
    const char *dtype;
    int64_t rows, cols; /* cols 0: a vector */
} fixed_tensor;

/* Shapes that fit small MLPs over 3 or 4 inputs; values repeat so that
 * colourings are non-trivial. */
static const fixed_tensor tensors[] = {
    {"w43", "F32", 4, 3}, {"w34", "F32", 3, 4}, {"w44", "F64", 4, 4},
    {"w24", "F32", 2, 4}, {"w23", "F64", 2, 3}, {"h43", "F16", 4, 3},
    {"b4", "F32", 4, 0},  {"b3", "F64", 3, 0},  {"b2", "BF16", 2, 0},
};
#define N_TENSORS (sizeof tensors / sizeof tensors[0])

static size_t dtype_bytes(const char *dtype)
{
    return dtype[1] == '6' ? 8 : dtype[0] == 'F' && dtype[1] == '3' ? 4 : 2;
}

/* Appends to a growing buffer; returns 0 when out of memory. */
typedef struct buffer {
    char *data;
    size_t length, capacity;
} buffer;

static int put(buffer *b, const void *bytes, size_t n)
{
    if (b->length + n > b->capacity) {
        size_t cap = (b->length + n) * 2 + 64;
        char *more = realloc(b->data, cap);
        if (!more)
            return 0;
        b->data = more;
        b->capacity = cap;
    }
    memcpy(b->data + b->length, bytes, n);
    b->length += n;
    return 1;
}

static int puts_(buffer *b, const char *s)
{
    return put(b, s, strlen(s));
}

/* The safetensors image: header with the fixed tensors and the metadata
 * string (JSON-escaped), then the data region. */
static int build_file(const uint8_t *meta, size_t n, buffer *file)
{
    buffer header = {0};
    char text[160];
    uint64_t offset = 0;
    int ok = puts_(&header, "{");
    for (size_t t = 0; t < N_TENSORS; t++) {
        const fixed_tensor *f = &tensors[t];
        uint64_t count = (uint64_t)f->rows * (uint64_t)(f->cols ? f->cols : 1);
        uint64_t end = offset + count * dtype_bytes(f->dtype);
        if (f->cols)
            snprintf(text, sizeof text,
                     "\"%s\":{\"dtype\":\"%s\",\"shape\":[%d,%d],"
                     "\"data_offsets\":[%llu,%llu]},", f->name, f->dtype,
                     (int)f->rows, (int)f->cols, (unsigned long long)offset,
                     (unsigned long long)end);
        else
            snprintf(text, sizeof text,
                     "\"%s\":{\"dtype\":\"%s\",\"shape\":[%d],"
                     "\"data_offsets\":[%llu,%llu]},", f->name, f->dtype,
                     (int)f->rows, (unsigned long long)offset,
                     (unsigned long long)end);
        ok = ok && puts_(&header, text);
        offset = end;
    }
    ok = ok && puts_(&header, "\"__metadata__\":{\"fibration\":\"");
    for (size_t i = 0; ok && i < n; i++) {
        uint8_t c = meta[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            ok = put(&header, esc, 2);
        } else if (c < 0x20) {
            snprintf(text, sizeof text, "\\u%04x", c);
            ok = puts_(&header, text);
        } else {
            ok = put(&header, &c, 1);
        }
    }
    ok = ok && puts_(&header, "\"}}");
    uint8_t length[8];
    for (int i = 0; i < 8; i++)
        length[i] = (uint8_t)((uint64_t)header.length >> (8 * i));
    ok = ok && put(file, length, 8) && put(file, header.data, header.length);
    /* Data: small values with repeats (1, 2, 1, 2, ...), little-endian. */
    for (size_t t = 0; ok && t < N_TENSORS; t++) {
        const fixed_tensor *f = &tensors[t];
        int64_t count = f->rows * (f->cols ? f->cols : 1);
        for (int64_t i = 0; ok && i < count; i++) {
            double v = (double)(1 + (i & 1));
            uint8_t bytes[8];
            size_t w = dtype_bytes(f->dtype);
            if (w == 8) {
                uint64_t bits;
                memcpy(&bits, &v, 8);
                for (int k = 0; k < 8; k++)
                    bytes[k] = (uint8_t)(bits >> (8 * k));
            } else if (w == 4) {
                float x = (float)v;
                uint32_t bits;
                memcpy(&bits, &x, 4);
                for (int k = 0; k < 4; k++)
                    bytes[k] = (uint8_t)(bits >> (8 * k));
            } else { /* 1.0 and 2.0 as F16 and BF16 */
                uint16_t bits = f->dtype[0] == 'B'
                                    ? (v == 1 ? 0x3f80 : 0x4000)
                                    : (v == 1 ? 0x3c00 : 0x4000);
                bytes[0] = (uint8_t)bits;
                bytes[1] = (uint8_t)(bits >> 8);
            }
            ok = put(file, bytes, w);
        }
    }
    free(header.data);
    return ok;
}

static char path[64];
static int fd = -1;

static void remove_file(void)
{
    if (fd >= 0)
        unlink(path);
}

/* Colours, compresses and lifts a small loaded graph. */
static void exercise(const fib_graph *g)
{
    int64_t n_params = 0;
    int32_t n_groups = 0;
    if (fib_graph_num_parameters(g, &n_params) != FIB_OK ||
        fib_graph_num_groups(g, &n_groups) != FIB_OK)
        return;
    for (int32_t i = 0; i < n_groups; i++) {
        int64_t units = 0;
        fib_graph_group_info(g, i, NULL, &units, NULL, NULL, NULL, NULL, NULL);
        if (units > 4096)
            return; /* a legal but huge input group: not worth the time */
    }
    fib_coloring *c = NULL;
    if (fib_color(g, NULL, &c) != FIB_OK)
        return;
    fib_base *base = NULL;
    if (fib_compress(g, c, &base) == FIB_OK) {
        fib_graph *lifted = NULL;
        if (fib_lift(base, NULL, &lifted) == FIB_OK)
            fib_graph_free(lifted);
        fib_base_free(base);
    }
    fib_coloring_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fd < 0) {
        snprintf(path, sizeof path, "/tmp/fuzz-model-%ld.safetensors",
                 (long)getpid());
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (fd < 0)
            return 0;
        atexit(remove_file);
    }
    buffer file = {0};
    if (!build_file(data, size, &file) || ftruncate(fd, 0) != 0 ||
        pwrite(fd, file.data, file.length, 0) != (ssize_t)file.length) {
        free(file.data);
        return 0;
    }
    free(file.data);

    for (int32_t copy = 0; copy <= 1; copy++) {
        fib_load_options options;
        fib_load_options_init(&options, sizeof options);
        options.copy = copy;
        fib_graph *g = NULL;
        int32_t st = fib_model_load(path, &options, &g);
        if (st == FIB_OK) {
            FUZZ_ASSERT(g != NULL);
            if (copy == 0)
                exercise(g);
            fib_graph_free(g);
        } else {
            FUZZ_ASSERT(g == NULL);
            FUZZ_ASSERT(st != FIB_E_IO);
            FUZZ_ASSERT(strncmp(fib_last_error(), path, strlen(path)) == 0);
        }
        fib_base *base = NULL;
        st = fib_base_load(path, &options, &base);
        if (st == FIB_OK) {
            fib_graph *lifted = NULL;
            if (fib_lift(base, NULL, &lifted) == FIB_OK)
                fib_graph_free(lifted);
            fib_base_free(base);
        } else {
            FUZZ_ASSERT(base == NULL);
        }
    }
    return 0;
}
