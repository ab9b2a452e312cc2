/* safetensors reader and writer: one malformed file per validation rule
 * (in memory and through a real mapped file), dtype conversion, alignment,
 * and the writer's round trip. Leaks are caught by valgrind / ASan runs. */
#include "compress/compress.h"
#include "io/safetensors.h"
#include "kernels/stored.h"
#include "testing.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int test_failures;

static char tmpdir[256];

/* A file image: 8-byte length (header_len < 0: the header's real length),
 * header text, then `data_len` bytes of data. */
static unsigned char *image(const char *header, int64_t header_len,
                            size_t data_len, size_t *size_out)
{
    size_t h = strlen(header);
    size_t size = 8 + h + data_len;
    unsigned char *b = calloc(1, size);
    uint64_t n = header_len < 0 ? (uint64_t)h : (uint64_t)header_len;
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(n >> (8 * i));
    memcpy(b + 8, header, h);
    for (size_t i = 0; i < data_len; i++)
        b[8 + h + i] = (unsigned char)(i * 7 + 1);
    *size_out = size;
    return b;
}

static void write_bytes(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f)
        return;
    CHECK(fwrite(b, 1, n, f) == n);
    fclose(f);
}

typedef struct bad_case {
    const char *name;
    const char *header;
    int64_t header_len; /* -1: real */
    size_t data_len;
    size_t file_len;    /* 0: whole image; else cut the file here */
    const char *message;
} bad_case;

#define T1 "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"

static const bad_case bad_cases[] = {
    {"truncated", "{}", -1, 0, 5, "truncated: 5 bytes"},
    {"header past EOF", "{" T1 "}", 4096, 8, 0, "runs past the end of the file"},
    {"huge header", "{}", INT64_C(1) << 40, 0, 0, "exceeds the limit"},
    {"short header", "{}", 1, 0, 0, "too short"},
    {"not an object", "[1,2,3]", -1, 0, 0, "does not start with '{'"},
    {"bad JSON", "{\"t\":}", -1, 0, 0, "header: unexpected character '}'"},
    {"bad UTF-8", "{\"t\xff\":{}}", -1, 0, 0, "not valid UTF-8 (byte 3"},
    {"unknown dtype", "{\"t\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[0,2]}}",
     -1, 2, 0, "unsupported dtype 'I8'"},
    {"shape mismatch", "{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
     -1, 8, 0, "does not match shape x dtype"},
    {"overlap", "{" T1 ",\"u\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
     -1, 12, 0, "tensors 't' and 'u' overlap"},
    {"gap", "{" T1 ",\"u\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}",
     -1, 16, 0, "bytes [8, 12) of the data region belong to no tensor"},
    {"trailing data", "{" T1 "}", -1, 12, 0, "4 bytes after the last tensor"},
    {"past data", "{\"t\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
     -1, 8, 0, "past the end of the data region"},
    {"end before begin", "{\"t\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}",
     -1, 8, 0, "is before begin"},
    {"duplicate name", "{" T1 "," T1 "}", -1, 8, 0, "member \"t\" given twice"},
    {"duplicate field", "{\"t\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],"
     "\"data_offsets\":[0,8]}}", -1, 8, 0, "member \"dtype\" given twice"},
    {"missing field", "{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", -1, 8, 0,
     "field 'shape': missing"},
    {"unknown field", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],"
     "\"x\":1}}", -1, 8, 0, "field 'x': unknown field"},
    {"negative dim", "{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}",
     -1, 8, 0, "non-negative integers"},
    {"fractional offset", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],"
     "\"data_offsets\":[0,8.5]}}", -1, 8, 0, "offsets must be non-negative integers"},
    {"too many dims", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],"
     "\"data_offsets\":[0,8]}}", -1, 8, 0, "more than 8 dimensions"},
    {"count overflow", "{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
     "\"data_offsets\":[0,8]}}", -1, 8, 0, "element count overflows"},
    {"entry not object", "{\"t\":[1]}", -1, 0, 0, "entry must be an object, not array"},
    {"metadata not object", "{\"__metadata__\":[1]}", -1, 0, 0,
     "__metadata__ is an array, not an object"},
    {"non-string metadata", "{\"__metadata__\":{\"k\":1}," T1 "}", -1, 8, 0,
     "__metadata__ value of 'k' is a number, not a string"},
    {"duplicate metadata", "{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", -1, 0, 0,
     "member \"k\" given twice"},
    {"data without tensors", "{}", -1, 8, 0, "lists no tensors"},
};

static void check_message(const char *label, const char *file,
                          const char *expected)
{
    const char *msg = fib_last_error();
    if (!strstr(msg, expected) || strncmp(msg, file, strlen(file)) != 0) {
        test_failures++;
        fprintf(stderr, "%s: message '%s' lacks '%s' or the file name\n", label,
                msg, expected);
    }
}

static void test_malformed(void)
{
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        size_t size;
        unsigned char *b = image(c->header, c->header_len, c->data_len, &size);
        if (c->file_len)
            size = c->file_len;
        fib_st_file *f = NULL;
        CHECK(fib_st_parse("mem.safetensors", b, size, &f) == FIB_E_FORMAT);
        CHECK(f == NULL);
        check_message(c->name, "mem.safetensors", c->message);
        /* the same through a mapped file */
        char path[400];
        snprintf(path, sizeof path, "%s/bad%zu.safetensors", tmpdir, i);
        write_bytes(path, b, size);
        CHECK(fib_st_open(path, &f) == FIB_E_FORMAT);
        CHECK(f == NULL);
        check_message(c->name, path, c->message);
        unlink(path);
        free(b);
    }
}

static void test_open_errors(void)
{
    fib_st_file *f = NULL;
    char path[400];
    snprintf(path, sizeof path, "%s/missing.safetensors", tmpdir);
    CHECK(fib_st_open(path, &f) == FIB_E_IO);
    CHECK(strstr(fib_last_error(), "cannot open") != NULL);
    CHECK(fib_st_open(tmpdir, &f) == FIB_E_IO);
    CHECK(strstr(fib_last_error(), "not a regular file") != NULL);
    snprintf(path, sizeof path, "%s/empty.safetensors", tmpdir);
    write_bytes(path, (const unsigned char *)"", 0);
    CHECK(fib_st_open(path, &f) == FIB_E_FORMAT);
    CHECK(strstr(fib_last_error(), "truncated: 0 bytes") != NULL);
    unlink(path);
    CHECK(f == NULL);
}

static void test_half_conversion(void)
{
    CHECK(fib_half_to_float(0x3C00) == 1.0f);
    CHECK(fib_half_to_float(0xC000) == -2.0f);
    CHECK(fib_half_to_float(0x0001) == 5.9604644775390625e-8f); /* subnormal */
    CHECK(fib_half_to_float(0x7BFF) == 65504.0f);
    CHECK(fib_half_to_float(0x7C00) > 1e38f);
    CHECK(fib_bf16_to_float(0x3F80) == 1.0f);
    CHECK(fib_bf16_to_float(0xC040) == -3.0f);
    /* F16 [1, -2] and BF16 [1, -3] in one file */
    const char *h = "{\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
                    "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[4,8]}}";
    size_t size;
    unsigned char *img = image(h, -1, 8, &size);
    unsigned char *d = img + 8 + strlen(h);
    const unsigned char data[8] = {0x00, 0x3C, 0x00, 0xC0, 0x80, 0x3F, 0x40, 0xC0};
    memcpy(d, data, 8);
    fib_st_file *f = NULL;
    CHECK_OK(fib_st_parse("mem", img, size, &f));
    if (f) {
        /* aligned half tensors are held as stored, in place */
        const fib_st_tensor *t = fib_st_find(f, "h");
        CHECK(t && t->dtype == FIB_DTYPE_F16 && t->owned == NULL && t->data == d);
        CHECK(t && fib_load(t->dtype, t->data, 0) == 1.0 &&
              fib_load(t->dtype, t->data, 1) == -2.0);
        t = fib_st_find(f, "b");
        CHECK(t && t->dtype == FIB_DTYPE_BF16 && t->owned == NULL);
        CHECK(t && fib_load(t->dtype, t->data, 0) == 1.0 &&
              fib_load(t->dtype, t->data, 1) == -3.0);
        CHECK(t && t->file_dtype == FIB_ST_BF16);
    }
    fib_st_close(f);
    free(img);
}

/* The branch-free float16 conversion the kernels use gives the reference
 * conversion's float for every one of the 65536 bit patterns (NaN for NaN). */
static void test_half_kernel_conversion_exact(void)
{
    int bad = 0;
    for (uint32_t h = 0; h <= 0xFFFFu; h++) {
        float fast = fib_f16_to_f32((uint16_t)h), ref = fib_half_to_float((uint16_t)h);
        uint32_t a, b;
        memcpy(&a, &fast, 4);
        memcpy(&b, &ref, 4);
        bad += isnan(ref) ? !isnan(fast) : a != b;
        bad += fib_bf16_to_f32((uint16_t)h) != fib_bf16_to_float((uint16_t)h) &&
               !isnan(fib_bf16_to_float((uint16_t)h));
    }
    CHECK(bad == 0);
}

/* A mapped file's misaligned bfloat16 tensor of several pages is converted
 * to float32 and its pages are released (the float32 copy is what stays in
 * memory): the copy and the float32 tensor sharing its last page (a copy
 * too) read right. */
static void test_converted_pages_released(void)
{
    enum { NB = 5000, NF = 3000 };
    char h[256];
    snprintf(h, sizeof h,
             "{\"b\":{\"dtype\":\"BF16\",\"shape\":[%d],\"data_offsets\":[0,%d]},"
             "\"f\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%d,%d]}}",
             NB, 2 * NB, NF, 2 * NB, 2 * NB + 4 * NF);
    size_t pad = (8 - strlen(h) % 8) % 8 + 1; /* data at an odd offset */
    strncat(h, "         ", pad);
    size_t size;
    unsigned char *img = image(h, -1, 2 * NB + 4 * NF, &size);
    unsigned char *d = img + 8 + strlen(h);
    for (int i = 0; i < NB; i++) {
        float v = (float)(i % 251 - 125);
        uint32_t bits;
        memcpy(&bits, &v, 4);
        d[2 * i] = (unsigned char)(bits >> 16);
        d[2 * i + 1] = (unsigned char)(bits >> 24);
    }
    for (int i = 0; i < NF; i++) {
        float v = 0.5f * (float)i;
        memcpy(d + 2 * NB + 4 * i, &v, 4); /* little-endian host assumed */
    }
    char path[400];
    snprintf(path, sizeof path, "%s/bf16.safetensors", tmpdir);
    write_bytes(path, img, size);
    free(img);
    fib_st_file *f = NULL;
    CHECK_OK(fib_st_open(path, &f));
    if (f) {
        CHECK(f->mapped);
        const fib_st_tensor *b = fib_st_find(f, "b"), *t = fib_st_find(f, "f");
        CHECK(b && b->owned && b->dtype == FIB_DTYPE_F32 && t && t->owned);
        int bad = 0;
        for (int i = 0; b && i < NB; i++)
            bad += ((const float *)b->data)[i] != (float)(i % 251 - 125);
        for (int i = 0; t && i < NF; i++)
            bad += ((const float *)t->data)[i] != 0.5f * (float)i;
        CHECK(bad == 0);
    }
    fib_st_close(f);
    unlink(path);
}

static void test_misaligned_f64(void)
{
    /* an F32 of one element puts the F64 at offset 4: read through a copy */
    const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[4,12]}} ";
    size_t size;
    unsigned char *img = image(h, -1, 12, &size);
    double v = -1.25;
    memcpy(img + 8 + strlen(h) + 4, &v, 8); /* little-endian host assumed */
    fib_st_file *f = NULL;
    CHECK_OK(fib_st_parse("mem", img, size, &f));
    if (f) {
        const fib_st_tensor *t = fib_st_find(f, "d");
        CHECK(t && ((uintptr_t)t->data % 8) == 0);
        CHECK(t && ((const double *)t->data)[0] == -1.25);
    }
    fib_st_close(f);
    free(img);
}

static void test_write_round_trip(void)
{
    float a[6] = {1, 2, 3, 4, 5, -6.5f};
    double b[3] = {0.1, -0.2, 1e300};
    float c[1] = {42};
    fib_st_out t[3] = {
        {"layer.a", FIB_DTYPE_F32, 2, {2, 3}, a},
        {"b \"quoted\"", FIB_DTYPE_F64, 1, {3}, b},
        {"scalar", FIB_DTYPE_F32, 0, {0}, c},
    };
    const char *keys[] = {"k", "fibration"};
    const char *values[] = {"v\n\x01", "{}"};
    char path[400];
    snprintf(path, sizeof path, "%s/round.safetensors", tmpdir);
    CHECK_OK(fib_st_write(path, t, 3, keys, values, 2));
    fib_st_file *f = NULL;
    CHECK_OK(fib_st_open(path, &f));
    if (!f)
        return;
    CHECK(f->n_tensors == 3 && f->n_meta == 2);
    CHECK(strcmp(fib_st_meta(f, "k"), "v\n\x01") == 0);
    const fib_st_tensor *ta = fib_st_find(f, "layer.a");
    const fib_st_tensor *tb = fib_st_find(f, "b \"quoted\"");
    const fib_st_tensor *tc = fib_st_find(f, "scalar");
    CHECK(ta && ta->n_dims == 2 && ta->shape[0] == 2 && ta->shape[1] == 3);
    CHECK(ta && memcmp(ta->data, a, sizeof a) == 0 && ta->owned == NULL);
    CHECK(tb && tb->dtype == FIB_DTYPE_F64 && memcmp(tb->data, b, sizeof b) == 0);
    CHECK(tb && tb->owned == NULL && ((uintptr_t)tb->data % 8) == 0);
    CHECK(tc && tc->n_dims == 0 && tc->n_elements == 1 &&
          ((const float *)tc->data)[0] == 42.0f);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--)
        header_len = (header_len << 8) | f->bytes[i];
    CHECK(header_len % 8 == 0); /* the data region starts 8-aligned */
    fib_st_close(f);
    unlink(path);
}

static void test_write_errors(void)
{
    float a[1] = {1};
    fib_st_out dup[2] = {{"x", FIB_DTYPE_F32, 1, {1}, a},
                         {"x", FIB_DTYPE_F32, 1, {1}, a}};
    char path[400];
    snprintf(path, sizeof path, "%s/w.safetensors", tmpdir);
    CHECK(fib_st_write(path, dup, 2, NULL, NULL, 0) == FIB_E_INVALID);
    CHECK(strstr(fib_last_error(), "given twice") != NULL);
    fib_st_out bad = {"x", 7, 1, {1}, a};
    CHECK(fib_st_write(path, &bad, 1, NULL, NULL, 0) == FIB_E_INVALID);
    fib_st_out meta = {"__metadata__", FIB_DTYPE_F32, 1, {1}, a};
    CHECK(fib_st_write(path, &meta, 1, NULL, NULL, 0) == FIB_E_INVALID);
    snprintf(path, sizeof path, "%s/no/such/dir.safetensors", tmpdir);
    CHECK(fib_st_write(path, dup, 1, NULL, NULL, 0) == FIB_E_IO);
    CHECK(strstr(fib_last_error(), "cannot create") != NULL);
    /* an empty file (no tensors, no metadata) is valid */
    snprintf(path, sizeof path, "%s/empty.safetensors", tmpdir);
    CHECK_OK(fib_st_write(path, NULL, 0, NULL, NULL, 0));
    fib_st_file *f = NULL;
    CHECK_OK(fib_st_open(path, &f));
    CHECK(f && f->n_tensors == 0);
    fib_st_close(f);
    unlink(path);
}

/* fib_st_write_produced: the same file as fib_st_write from shapes alone,
 * each tensor made once, in file order (its buffer freed by the writer);
 * an error of the producer leaves the target as it was. */
typedef struct produced_log {
    const fib_st_out *tensors;
    int64_t calls, order[4];
    int64_t fail_at; /* -1: never */
} produced_log;

static int32_t produce_copy(void *ctx, int64_t i, const void **data, void **owned)
{
    produced_log *log = ctx;
    log->order[log->calls++] = i;
    if (i == log->fail_at)
        return fib_error(FIB_E_NOMEM, "tensor %lld: no memory", (long long)i);
    size_t bytes = fib_dtype_size(log->tensors[i].dtype);
    for (int32_t d = 0; d < log->tensors[i].n_dims; d++)
        bytes *= (size_t)log->tensors[i].shape[d];
    void *copy = fib_alloc((int64_t)bytes, 1);
    if (copy)
        memcpy(copy, log->tensors[i].data, bytes);
    *data = copy;
    *owned = copy;
    return copy ? FIB_OK : FIB_E_NOMEM;
}

static unsigned char *whole_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    rewind(f);
    unsigned char *b = malloc(*size ? *size : 1);
    if (b && fread(b, 1, *size, f) != *size) {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

static void test_write_produced_streams_one_tensor_at_a_time(void)
{
    float a[6] = {1, 2, 3, 4, 5, -6.5f};
    double b[3] = {0.1, -0.2, 1e300};
    uint16_t h[2] = {0x3c00, 0xc000};
    fib_st_out t[3] = {
        {"a", FIB_DTYPE_F32, 2, {2, 3}, a},
        {"b", FIB_DTYPE_F64, 1, {3}, b},
        {"h", FIB_DTYPE_BF16, 1, {2}, h},
    };
    const char *keys[] = {"format"}, *values[] = {"pt"};
    char whole[400], streamed[400];
    snprintf(whole, sizeof whole, "%s/whole.safetensors", tmpdir);
    snprintf(streamed, sizeof streamed, "%s/streamed.safetensors", tmpdir);
    CHECK_OK(fib_st_write(whole, t, 3, keys, values, 1));
    fib_st_out described[3];
    memcpy(described, t, sizeof t);
    for (int i = 0; i < 3; i++)
        described[i].data = NULL; /* the header comes from shapes alone */
    produced_log log = {t, 0, {0}, -1};
    CHECK_OK(fib_st_write_produced(streamed, described, 3, keys, values, 1, produce_copy,
                                   &log));
    CHECK(log.calls == 3);
    /* widest first, as fib_st_write places them */
    CHECK(log.order[0] == 1 && log.order[1] == 0 && log.order[2] == 2);
    size_t n1 = 0, n2 = 0;
    unsigned char *f1 = whole_file(whole, &n1), *f2 = whole_file(streamed, &n2);
    CHECK(f1 && f2 && n1 == n2 && memcmp(f1, f2, n1) == 0);
    free(f1);
    free(f2);
    /* a failing producer: the existing target stays as it was */
    produced_log failing = {t, 0, {0}, 0};
    CHECK(fib_st_write_produced(streamed, described, 3, keys, values, 1, produce_copy,
                                &failing) == FIB_E_NOMEM);
    CHECK(strstr(fib_last_error(), "tensor 0: no memory") != NULL);
    f2 = whole_file(streamed, &n2);
    f1 = whole_file(whole, &n1);
    CHECK(f1 && f2 && n1 == n2 && memcmp(f1, f2, n1) == 0);
    free(f1);
    free(f2);
    CHECK(fib_st_write_produced(streamed, described, 3, NULL, NULL, 0, NULL, NULL) ==
          FIB_E_NULL);
    unlink(whole);
    unlink(streamed);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fib-io-test-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_malformed);
    RUN(test_open_errors);
    RUN(test_half_conversion);
    RUN(test_half_kernel_conversion_exact);
    RUN(test_converted_pages_released);
    RUN(test_misaligned_f64);
    RUN(test_write_round_trip);
    RUN(test_write_errors);
    RUN(test_write_produced_streams_one_tensor_at_a_time);
    rmdir(tmpdir);
    return test_failures ? 1 : 0;
}
