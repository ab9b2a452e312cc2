/* A small strict JSON parser (RFC 8259) for safetensors headers and our
 * structure metadata, and a string builder for writing JSON.
 *
 * Strict: no comments, no trailing commas, no leading zeros, no NaN/Infinity,
 * strings must be valid UTF-8 (no overlong forms, no surrogates) and escaped
 * control characters; \u escapes must form valid pairs. Restrictions of ours:
 * strings may not contain U+0000 (names are C strings) and nesting is limited
 * (FIB_JSON_MAX_DEPTH) and a member name may appear only once per object.
 * Every error is FIB_E_FORMAT with a message
 * "<context>: <problem> at byte B (line L, column C)". */
#ifndef FIB_IO_JSON_H
#define FIB_IO_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FIB_JSON_MAX_DEPTH 64

#define FIB_JSON_NULL 0
#define FIB_JSON_BOOL 1
#define FIB_JSON_NUMBER 2
#define FIB_JSON_STRING 3
#define FIB_JSON_ARRAY 4
#define FIB_JSON_OBJECT 5

typedef struct fib_json fib_json;

struct fib_json {
    int32_t kind;       /* FIB_JSON_* */
    bool boolean;       /* BOOL */
    bool is_integer;    /* NUMBER: written without fraction/exponent and fits int64 */
    int64_t integer;    /* NUMBER with is_integer */
    double number;      /* NUMBER (also set for integers) */
    char *string;       /* STRING: NUL-terminated, `length` bytes */
    size_t length;
    char *key;          /* member name when this value sits in an object */
    int64_t n_items;    /* ARRAY / OBJECT: children in document order */
    fib_json *items;
    size_t offset;      /* byte offset of the value in the source text */
};

/* Parses text[0 .. size) as one JSON value (surrounding whitespace allowed).
 * `context` prefixes error messages (for example "model.st: header").
 * On success *out is a tree to free with fib_json_free. Errors:
 * FIB_E_FORMAT, FIB_E_NOMEM. */
int32_t fib_json_parse(const char *text, size_t size, const char *context,
                       fib_json **out);
void fib_json_free(fib_json *value);

/* Object member by name, NULL if absent (fib_json_parse refuses an object
 * with a member name twice). */
const fib_json *fib_json_get(const fib_json *object, const char *key);
/* The first member name of an object that occurs twice, NULL if none (or
 * out of memory): for trees built other than by fib_json_parse. */
const fib_json *fib_json_find_duplicate(const fib_json *object);
/* Line and column (1-based) of a byte offset, for messages. */
void fib_json_position(const char *text, size_t size, size_t offset,
                       int64_t *line, int64_t *column);
/* "object", "array", ... */
const char *fib_json_kind_name(int32_t kind);

/* Checks that bytes[0 .. n) is valid UTF-8 (RFC 3629). On failure
 * *bad_offset is the offset of the first invalid byte. */
bool fib_utf8_valid(const unsigned char *bytes, size_t n, size_t *bad_offset);

/* A growing string for writing JSON. All functions are no-ops once an
 * allocation has failed; fib_jbuf_finish reports it. */
typedef struct fib_jbuf {
    char *data;
    size_t length;
    size_t capacity;
    bool failed;
} fib_jbuf;

void fib_jbuf_init(fib_jbuf *b);
void fib_jbuf_free(fib_jbuf *b);
void fib_jbuf_raw(fib_jbuf *b, const char *s);
void fib_jbuf_bytes(fib_jbuf *b, const char *s, size_t n);
/* A quoted, escaped JSON string. */
void fib_jbuf_string(fib_jbuf *b, const char *s);
void fib_jbuf_int(fib_jbuf *b, int64_t v);
/* A finite double that reads back exactly ("%.17g", always with '.' as the
 * decimal point whatever the locale). */
void fib_jbuf_double(fib_jbuf *b, double v);
/* FIB_OK, or FIB_E_NOMEM if any append failed. */
int32_t fib_jbuf_status(const fib_jbuf *b);

#endif
