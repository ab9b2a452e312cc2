/* The strict JSON parser: accepted documents, and one rejected document per
 * rule with the message it must give. */
#include "compress/compress.h"
#include "io/json.h"
#include "testing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int test_failures;

static fib_json *parse(const char *text)
{
    fib_json *v = NULL;
    int32_t st = fib_json_parse(text, strlen(text), "t", &v);
    if (st != FIB_OK)
        fprintf(stderr, "unexpected failure on %s: %s\n", text, fib_last_error());
    return v;
}

static void test_values(void)
{
    fib_json *v = parse(" {\"a\": [1, -2, 3.5, 1e3, true, false, null, \"x\"],"
                        " \"b\": {}, \"c\": []} ");
    CHECK(v && v->kind == FIB_JSON_OBJECT && v->n_items == 3);
    if (!v)
        return;
    const fib_json *a = fib_json_get(v, "a");
    CHECK(a && a->kind == FIB_JSON_ARRAY && a->n_items == 8);
    CHECK(a->items[0].is_integer && a->items[0].integer == 1);
    CHECK(a->items[1].is_integer && a->items[1].integer == -2);
    CHECK(!a->items[2].is_integer && a->items[2].number == 3.5);
    CHECK(!a->items[3].is_integer && a->items[3].number == 1000.0);
    CHECK(a->items[4].kind == FIB_JSON_BOOL && a->items[4].boolean);
    CHECK(a->items[5].kind == FIB_JSON_BOOL && !a->items[5].boolean);
    CHECK(a->items[6].kind == FIB_JSON_NULL);
    CHECK(a->items[7].kind == FIB_JSON_STRING && strcmp(a->items[7].string, "x") == 0);
    CHECK(fib_json_get(v, "b")->n_items == 0);
    CHECK(fib_json_get(v, "zz") == NULL);
    CHECK(fib_json_find_duplicate(v) == NULL);
    fib_json_free(v);
}

static void test_strings(void)
{
    fib_json *v = parse("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\xc3\xa9\"");
    CHECK(v && v->kind == FIB_JSON_STRING);
    if (v) {
        CHECK(strcmp(v->string, "\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80\xc3\xa9") == 0);
        fib_json_free(v);
    }
}

static void test_integers(void)
{
    fib_json *v = parse("[9223372036854775807, -9223372036854775808, "
                        "9223372036854775808]");
    CHECK(v != NULL);
    if (!v)
        return;
    CHECK(v->items[0].is_integer && v->items[0].integer == INT64_MAX);
    CHECK(v->items[1].is_integer && v->items[1].integer == INT64_MIN);
    CHECK(!v->items[2].is_integer && v->items[2].number == 9223372036854775808.0);
    fib_json_free(v);
}

/* A member name twice in any object, at any depth, is refused with the
 * name and both places ("units": 3, "units": 7 must not read as 3). */
static void test_duplicate_keys_refused(void)
{
    static const char *const texts[] = {
        "{\"a\": 1, \"b\": 2, \"a\": 3}",
        "{\"groups\": [{\"units\": 3, \"op\": \"dense\", \"units\": 7}]}",
        "{\"x\": {\"y\": {\"a\\u0062\": 1, \"ab\": 2}}}", /* equal once decoded */
    };
    static const char *const keys[] = {"\"a\" given twice", "\"units\" given twice",
                                       "\"ab\" given twice"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        fib_json *v = NULL;
        int32_t st = fib_json_parse(texts[i], strlen(texts[i]), "t", &v);
        CHECK(st == FIB_E_FORMAT && v == NULL);
        CHECK(strstr(fib_last_error(), keys[i]) != NULL);
        CHECK(strstr(fib_last_error(), "first at line 1") != NULL);
    }
    /* distinct names that share prefixes are fine */
    fib_json *v = parse("{\"a\": 1, \"ab\": 2, \"b\": {\"a\": 3}}");
    CHECK(v != NULL && fib_json_find_duplicate(v) == NULL);
    fib_json_free(v);
}

/* The duplicate check sorts the names: an object of 400k members parses in
 * well under a second, where comparing every pair (8e10 comparisons) would
 * run for minutes and time the test out. */
static void test_duplicate_check_is_not_quadratic(void)
{
    const int n = 400000;
    size_t cap = (size_t)n * 24 + 32, len = 0; /* ,"k399999":399999 */
    char *text = malloc(cap);
    CHECK(text != NULL);
    if (!text)
        return;
    text[len++] = '{';
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(text + len, cap - len, "%s\"k%d\":%d", i ? "," : "", i, i);
    text[len++] = '}';
    fib_json *v = NULL;
    CHECK(fib_json_parse(text, len, "big", &v) == FIB_OK && v && v->n_items == n);
    fib_json_free(v);
    /* the same with the last name repeating the first: found, named */
    len--;
    len += (size_t)snprintf(text + len, cap - len, ",\"k0\":1}");
    CHECK(fib_json_parse(text, len, "big", &v) == FIB_E_FORMAT);
    CHECK(strstr(fib_last_error(), "\"k0\" given twice") != NULL);
    free(text);
}

typedef struct bad_case {
    const char *text;
    size_t length; /* 0: strlen */
    const char *message;
} bad_case;

static void test_rejections(void)
{
    static const bad_case cases[] = {
        {"", 0, "unexpected end of text"},
        {"{", 0, "unexpected end in object"},
        {"[1,]", 0, "trailing comma"},
        {"{\"a\":1,}", 0, "trailing comma"},
        {"{\"a\" 1}", 0, "':' expected"},
        {"{1: 2}", 0, "member name"},
        {"[1 2]", 0, "',' or ']' expected"},
        {"01", 0, "leading zero"},
        {"1.", 0, "digit expected after '.'"},
        {"1e", 0, "digit expected in exponent"},
        {"-", 0, "invalid number"},
        {"1e999", 0, "number out of range"},
        {"NaN", 0, "unexpected character 'N'"},
        {"tru", 0, "unknown literal"},
        {"\"abc", 0, "unterminated string"},
        {"\"a\tb\"", 0, "unescaped control character"},
        {"\"\\x\"", 0, "unknown escape"},
        {"\"\\u12g4\"", 0, "bad hex digit"},
        {"\"\\ud800\"", 0, "high surrogate without a low surrogate"},
        {"\"\\udc00\"", 0, "lone low surrogate"},
        {"\"\\u0000\"", 0, "U+0000"},
        {"\"\xc0\xaf\"", 0, "invalid UTF-8"},
        {"\"\xed\xa0\x80\"", 0, "invalid UTF-8"},
        {"\"\xf4\x90\x80\x80\"", 0, "invalid UTF-8"},
        {"\"\xe2\x82\"", 0, "invalid UTF-8"},
        {"1 2", 0, "text after the end"},
        {"[1]\x00", 4, "text after the end"},
        {"\x01", 0, "unexpected byte 0x01"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *c = &cases[i];
        size_t n = c->length ? c->length : strlen(c->text);
        fib_json *v = NULL;
        int32_t st = fib_json_parse(c->text, n, "ctx", &v);
        CHECK(st == FIB_E_FORMAT && v == NULL);
        const char *msg = fib_last_error();
        if (!strstr(msg, c->message) || strncmp(msg, "ctx: ", 5) != 0 ||
            !strstr(msg, "line 1, column")) {
            test_failures++;
            fprintf(stderr, "case %zu: message '%s' lacks '%s'\n", i, msg,
                    c->message);
        }
        fib_json_free(v);
    }
}

static void test_depth(void)
{
    char deep[2 * FIB_JSON_MAX_DEPTH + 8];
    size_t n = 0;
    for (int i = 0; i <= FIB_JSON_MAX_DEPTH; i++)
        deep[n++] = '[';
    for (int i = 0; i <= FIB_JSON_MAX_DEPTH; i++)
        deep[n++] = ']';
    fib_json *v = NULL;
    CHECK(fib_json_parse(deep, n, "ctx", &v) == FIB_E_FORMAT);
    CHECK(strstr(fib_last_error(), "nesting deeper than") != NULL);
    /* one level less is fine */
    CHECK_OK(fib_json_parse(deep + 1, n - 2, "ctx", &v));
    fib_json_free(v);
}

static void test_position(void)
{
    fib_json *v = NULL;
    const char *text = "{\n  \"a\": 1,\n  \"b\": x\n}";
    CHECK(fib_json_parse(text, strlen(text), "ctx", &v) == FIB_E_FORMAT);
    CHECK(strstr(fib_last_error(), "line 3, column 8") != NULL);
}

static void test_writer(void)
{
    fib_jbuf b;
    fib_jbuf_init(&b);
    fib_jbuf_raw(&b, "[");
    fib_jbuf_string(&b, "q\"\\\n\x01\xc3\xa9");
    fib_jbuf_raw(&b, ",");
    fib_jbuf_int(&b, -42);
    fib_jbuf_raw(&b, ",");
    fib_jbuf_double(&b, 0.1);
    fib_jbuf_raw(&b, ",");
    fib_jbuf_double(&b, 3.0);
    fib_jbuf_raw(&b, "]");
    CHECK_OK(fib_jbuf_status(&b));
    fib_json *v = NULL;
    CHECK_OK(fib_json_parse(b.data, b.length, "ctx", &v));
    if (v) {
        CHECK(strcmp(v->items[0].string, "q\"\\\n\x01\xc3\xa9") == 0);
        CHECK(v->items[1].integer == -42);
        CHECK(v->items[2].number == 0.1);
        CHECK(v->items[3].number == 3.0 && !v->items[3].is_integer);
    }
    fib_json_free(v);
    fib_jbuf_free(&b);
}

int main(void)
{
    RUN(test_values);
    RUN(test_strings);
    RUN(test_integers);
    RUN(test_duplicate_keys_refused);
    RUN(test_duplicate_check_is_not_quadratic);
    RUN(test_rejections);
    RUN(test_depth);
    RUN(test_position);
    RUN(test_writer);
    return test_failures ? 1 : 0;
}
