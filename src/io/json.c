/* Strict JSON: a recursive-descent parser with a depth limit, and a string
 * builder for writing. See json.h. */
#include "io/json.h"

#include "model/model.h"

#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NUMBER_CHARS 320

typedef struct parser {
    const char *text;
    size_t size;
    size_t pos;
    const char *context;
    int depth;
} parser;

void fib_json_position(const char *text, size_t size, size_t offset,
                       int64_t *line, int64_t *column)
{
    int64_t l = 1, c = 1;
    for (size_t i = 0; i < offset && i < size; i++) {
        if (text[i] == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
            c++; /* count code points, not continuation bytes */
        }
    }
    *line = l;
    *column = c;
}

static int32_t fail_at(const parser *p, size_t offset, const char *fmt, ...)
    FIB_PRINTF(3, 4);

static int32_t fail_at(const parser *p, size_t offset, const char *fmt, ...)
{
    char problem[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof problem, fmt, ap);
    va_end(ap);
    int64_t line, column;
    fib_json_position(p->text, p->size, offset, &line, &column);
    return fib_error(FIB_E_FORMAT, "%s: %s at byte %zu (line %lld, column %lld)",
                     p->context, problem, offset, (long long)line,
                     (long long)column);
}

const char *fib_json_kind_name(int32_t kind)
{
    switch (kind) {
    case FIB_JSON_NULL: return "null";
    case FIB_JSON_BOOL: return "boolean";
    case FIB_JSON_NUMBER: return "number";
    case FIB_JSON_STRING: return "string";
    case FIB_JSON_ARRAY: return "array";
    case FIB_JSON_OBJECT: return "object";
    default: return "unknown";
    }
}

/* Length of the valid UTF-8 sequence at s[0 .. n), 0 if invalid. */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07u;
    } else {
        return 0; /* continuation byte, overlong 2-byte lead, or > U+10FFFF */
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

bool fib_utf8_valid(const unsigned char *bytes, size_t n, size_t *bad_offset)
{
    size_t i = 0;
    while (i < n) {
        size_t len = utf8_sequence(bytes + i, n - i);
        if (len == 0) {
            if (bad_offset)
                *bad_offset = i;
            return false;
        }
        i += len;
    }
    return true;
}

static void skip_space(parser *p)
{
    while (p->pos < p->size) {
        char c = p->text[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

static void free_contents(fib_json *v)
{
    fib_free(v->string);
    fib_free(v->key);
    for (int64_t i = 0; i < v->n_items; i++)
        free_contents(&v->items[i]);
    fib_free(v->items);
}

void fib_json_free(fib_json *value)
{
    if (!value)
        return;
    free_contents(value);
    fib_free(value);
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int32_t read_hex4(parser *p, size_t at, uint32_t *out)
{
    if (at + 4 > p->size)
        return fail_at(p, at, "truncated \\u escape");
    uint32_t v = 0;
    for (size_t i = 0; i < 4; i++) {
        int d = hex_digit(p->text[at + i]);
        if (d < 0)
            return fail_at(p, at + i, "bad hex digit in \\u escape");
        v = (v << 4) | (uint32_t)d;
    }
    *out = v;
    return FIB_OK;
}

static size_t put_utf8(char *dst, uint32_t cp)
{
    if (cp < 0x80) {
        dst[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        dst[0] = (char)(0xC0 | (cp >> 6));
        dst[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        dst[0] = (char)(0xE0 | (cp >> 12));
        dst[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        dst[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    dst[0] = (char)(0xF0 | (cp >> 18));
    dst[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    dst[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    dst[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decodes one escape starting at the backslash p->pos; appends to dst. */
static int32_t decode_escape(parser *p, char *dst, size_t *dst_len)
{
    size_t at = p->pos;
    if (at + 1 >= p->size)
        return fail_at(p, at, "unterminated string");
    char e = p->text[at + 1];
    const char *simple = "\"\\/bfnrt";
    const char *value = "\"\\/\b\f\n\r\t";
    const char *hit = strchr(simple, e);
    if (e != '\0' && hit) {
        dst[(*dst_len)++] = value[hit - simple];
        p->pos += 2;
        return FIB_OK;
    }
    if (e != 'u')
        return fail_at(p, at, "unknown escape '\\%c'", e);
    uint32_t cp;
    int32_t st = read_hex4(p, at + 2, &cp);
    if (st != FIB_OK)
        return st;
    p->pos = at + 6;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return fail_at(p, at, "lone low surrogate in \\u escape");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        uint32_t low;
        if (p->pos + 1 >= p->size || p->text[p->pos] != '\\' ||
            p->text[p->pos + 1] != 'u')
            return fail_at(p, at, "high surrogate without a low surrogate");
        st = read_hex4(p, p->pos + 2, &low);
        if (st != FIB_OK)
            return st;
        if (low < 0xDC00 || low > 0xDFFF)
            return fail_at(p, p->pos, "high surrogate without a low surrogate");
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        p->pos += 6;
    }
    if (cp == 0)
        return fail_at(p, at, "string contains U+0000");
    *dst_len += put_utf8(dst + *dst_len, cp);
    return FIB_OK;
}

/* p->pos is at the opening quote. */
static int32_t parse_string(parser *p, char **out, size_t *out_len)
{
    size_t start = p->pos + 1;
    size_t end = start;
    while (end < p->size && p->text[end] != '"') {
        if (p->text[end] == '\\')
            end++;
        end++;
    }
    if (end >= p->size)
        return fail_at(p, p->pos, "unterminated string");
    /* Escapes never expand, so the span bounds the decoded length. */
    char *dst = fib_alloc((int64_t)(end - start) + 1, 1);
    if (!dst)
        return fib_error(FIB_E_NOMEM, "%s: out of memory reading a string",
                         p->context);
    size_t len = 0;
    p->pos = start;
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->text[p->pos];
        int32_t st = FIB_OK;
        if (c == '\\') {
            st = decode_escape(p, dst, &len);
        } else if (c < 0x20) {
            st = fail_at(p, p->pos, "unescaped control character 0x%02x in string",
                         c);
        } else {
            size_t n = utf8_sequence((const unsigned char *)p->text + p->pos,
                                     end - p->pos);
            if (n == 0) {
                st = fail_at(p, p->pos, "invalid UTF-8 byte 0x%02x in string", c);
            } else {
                memcpy(dst + len, p->text + p->pos, n);
                len += n;
                p->pos += n;
            }
        }
        if (st != FIB_OK) {
            fib_free(dst);
            return st;
        }
    }
    dst[len] = '\0';
    p->pos = end + 1;
    *out = dst;
    *out_len = len;
    return FIB_OK;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int32_t parse_number(parser *p, fib_json *v)
{
    size_t start = p->pos, i = p->pos;
    const char *t = p->text;
    bool integral = true;
    if (i < p->size && t[i] == '-')
        i++;
    if (i >= p->size || !is_digit(t[i]))
        return fail_at(p, start, "invalid number");
    if (t[i] == '0') {
        i++;
        if (i < p->size && is_digit(t[i]))
            return fail_at(p, start, "number with a leading zero");
    } else {
        while (i < p->size && is_digit(t[i]))
            i++;
    }
    if (i < p->size && t[i] == '.') {
        integral = false;
        i++;
        if (i >= p->size || !is_digit(t[i]))
            return fail_at(p, i, "digit expected after '.'");
        while (i < p->size && is_digit(t[i]))
            i++;
    }
    if (i < p->size && (t[i] == 'e' || t[i] == 'E')) {
        integral = false;
        i++;
        if (i < p->size && (t[i] == '+' || t[i] == '-'))
            i++;
        if (i >= p->size || !is_digit(t[i]))
            return fail_at(p, i, "digit expected in exponent");
        while (i < p->size && is_digit(t[i]))
            i++;
    }
    size_t n = i - start;
    if (n > MAX_NUMBER_CHARS)
        return fail_at(p, start, "number longer than %d characters",
                       MAX_NUMBER_CHARS);
    v->kind = FIB_JSON_NUMBER;
    p->pos = i;
    if (integral) {
        bool negative = t[start] == '-';
        uint64_t mag = 0, limit = negative ? (uint64_t)INT64_MAX + 1u
                                           : (uint64_t)INT64_MAX;
        bool fits = true;
        for (size_t k = start + (negative ? 1 : 0); k < i; k++) {
            uint64_t d = (uint64_t)(t[k] - '0');
            if (mag > (limit - d) / 10) {
                fits = false;
                break;
            }
            mag = mag * 10 + d;
        }
        if (fits) {
            v->is_integer = true;
            v->integer = negative ? (mag == (uint64_t)INT64_MAX + 1u
                                         ? INT64_MIN
                                         : -(int64_t)mag)
                                  : (int64_t)mag;
            v->number = (double)v->integer;
            return FIB_OK;
        }
    }
    /* strtod follows LC_NUMERIC: give it the locale's decimal point. */
    char buf[MAX_NUMBER_CHARS + 8];
    memcpy(buf, t + start, n);
    buf[n] = '\0';
    const char *point = localeconv()->decimal_point;
    char *dot = strchr(buf, '.');
    if (dot && point && point[0] != '\0' && point[0] != '.' && point[1] == '\0')
        *dot = point[0];
    char *endp;
    double d = strtod(buf, &endp);
    if (!isfinite(d))
        return fail_at(p, start, "number out of range");
    v->number = d;
    return FIB_OK;
}

static int32_t parse_value(parser *p, fib_json *v);

static int32_t grow_items(parser *p, fib_json **items, int64_t n,
                          int64_t *cap)
{
    if (n < *cap)
        return FIB_OK;
    int64_t new_cap = *cap ? *cap * 2 : 4;
    fib_json *bigger = fib_calloc(new_cap, sizeof *bigger);
    if (!bigger)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", p->context);
    if (n > 0)
        memcpy(bigger, *items, (size_t)n * sizeof *bigger);
    fib_free(*items);
    *items = bigger;
    *cap = new_cap;
    return FIB_OK;
}

static int compare_keys(const void *a, const void *b)
{
    const fib_json *const *x = a;
    const fib_json *const *y = b;
    int c = strcmp((*x)->key, (*y)->key);
    if (c != 0)
        return c;
    /* ties by position so the first duplicate reported is deterministic */
    return (*x)->offset < (*y)->offset ? -1 : (*x)->offset > (*y)->offset;
}

/* The member whose name occurs earlier in the object too, the first such
 * in document order (*dup NULL if none): sorted by name, O(k log k). */
static int32_t find_duplicate(const fib_json *object, const fib_json **dup)
{
    *dup = NULL;
    if (object->n_items < 2)
        return FIB_OK;
    const fib_json **sorted = fib_alloc(object->n_items, sizeof *sorted);
    if (!sorted)
        return FIB_E_NOMEM;
    for (int64_t i = 0; i < object->n_items; i++)
        sorted[i] = &object->items[i];
    qsort(sorted, (size_t)object->n_items, sizeof *sorted, compare_keys);
    for (int64_t i = 1; i < object->n_items; i++) {
        if (strcmp(sorted[i - 1]->key, sorted[i]->key) == 0 &&
            (!*dup || sorted[i]->offset < (*dup)->offset))
            *dup = sorted[i];
    }
    fib_free(sorted);
    return FIB_OK;
}

/* A member name given twice would leave the reader to pick one value
 * silently (RFC 8259 leaves it open): refused in every object. */
static int32_t refuse_duplicates(const parser *p, const fib_json *object)
{
    const fib_json *dup;
    if (find_duplicate(object, &dup) != FIB_OK)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", p->context);
    if (!dup)
        return FIB_OK;
    const fib_json *first = fib_json_get(object, dup->key);
    int64_t line, column;
    fib_json_position(p->text, p->size, first->offset, &line, &column);
    return fail_at(p, dup->offset, "member \"%.80s\" given twice (first at line %lld, "
                   "column %lld)", dup->key, (long long)line, (long long)column);
}

/* Arrays and objects; p->pos is at '[' or '{'. */
static int32_t parse_container(parser *p, fib_json *v, bool object)
{
    char close = object ? '}' : ']';
    size_t open_at = p->pos;
    if (++p->depth > FIB_JSON_MAX_DEPTH)
        return fail_at(p, open_at, "nesting deeper than %d",
                       FIB_JSON_MAX_DEPTH);
    v->kind = object ? FIB_JSON_OBJECT : FIB_JSON_ARRAY;
    p->pos++;
    int64_t cap = 0;
    int32_t st = FIB_OK;
    skip_space(p);
    if (p->pos < p->size && p->text[p->pos] == close) {
        p->pos++;
        p->depth--;
        return FIB_OK;
    }
    for (;;) {
        st = grow_items(p, &v->items, v->n_items, &cap);
        if (st != FIB_OK)
            return st;
        fib_json *item = &v->items[v->n_items];
        memset(item, 0, sizeof *item);
        v->n_items++; /* counted now so that a failure frees it */
        skip_space(p);
        if (object) {
            if (p->pos >= p->size || p->text[p->pos] != '"')
                return fail_at(p, p->pos, p->pos >= p->size
                                              ? "unexpected end in object"
                                              : "member name (a string) expected");
            size_t key_len;
            st = parse_string(p, &item->key, &key_len);
            if (st != FIB_OK)
                return st;
            skip_space(p);
            if (p->pos >= p->size || p->text[p->pos] != ':')
                return fail_at(p, p->pos, "':' expected after member name");
            p->pos++;
            skip_space(p);
        }
        st = parse_value(p, item);
        if (st != FIB_OK)
            return st;
        skip_space(p);
        if (p->pos >= p->size)
            return fail_at(p, p->pos, "unexpected end in %s",
                           object ? "object" : "array");
        char c = p->text[p->pos];
        if (c == close) {
            p->pos++;
            p->depth--;
            return object ? refuse_duplicates(p, v) : FIB_OK;
        }
        if (c != ',')
            return fail_at(p, p->pos, "',' or '%c' expected", close);
        p->pos++;
        skip_space(p);
        if (p->pos < p->size && p->text[p->pos] == close)
            return fail_at(p, p->pos, "trailing comma");
    }
}

static bool literal(parser *p, const char *word)
{
    size_t n = strlen(word);
    if (p->size - p->pos < n || memcmp(p->text + p->pos, word, n) != 0)
        return false;
    p->pos += n;
    return true;
}

static int32_t parse_value(parser *p, fib_json *v)
{
    v->offset = p->pos;
    if (p->pos >= p->size)
        return fail_at(p, p->pos, "unexpected end of text, value expected");
    char c = p->text[p->pos];
    switch (c) {
    case '{': return parse_container(p, v, true);
    case '[': return parse_container(p, v, false);
    case '"':
        v->kind = FIB_JSON_STRING;
        return parse_string(p, &v->string, &v->length);
    case 't':
    case 'f':
    case 'n':
        if (literal(p, "true")) {
            v->kind = FIB_JSON_BOOL;
            v->boolean = true;
            return FIB_OK;
        }
        if (literal(p, "false")) {
            v->kind = FIB_JSON_BOOL;
            return FIB_OK;
        }
        if (literal(p, "null")) {
            v->kind = FIB_JSON_NULL;
            return FIB_OK;
        }
        return fail_at(p, p->pos, "unknown literal");
    default:
        if (c == '-' || is_digit(c))
            return parse_number(p, v);
        if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7F)
            return fail_at(p, p->pos, "unexpected character '%c'", c);
        return fail_at(p, p->pos, "unexpected byte 0x%02x", (unsigned char)c);
    }
}

int32_t fib_json_parse(const char *text, size_t size, const char *context,
                       fib_json **out)
{
    if (!text || !out)
        return fib_error(FIB_E_NULL, "fib_json_parse: NULL argument");
    parser p = {text, size, 0, context ? context : "JSON", 0};
    fib_json *root = fib_calloc(1, sizeof *root);
    if (!root)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", p.context);
    skip_space(&p);
    int32_t st = parse_value(&p, root);
    if (st == FIB_OK) {
        skip_space(&p);
        if (p.pos != size)
            st = fail_at(&p, p.pos, "text after the end of the JSON value");
    }
    if (st != FIB_OK) {
        fib_json_free(root);
        return st;
    }
    *out = root;
    return FIB_OK;
}

const fib_json *fib_json_get(const fib_json *object, const char *key)
{
    if (!object || object->kind != FIB_JSON_OBJECT)
        return NULL;
    for (int64_t i = 0; i < object->n_items; i++)
        if (strcmp(object->items[i].key, key) == 0)
            return &object->items[i];
    return NULL;
}

const fib_json *fib_json_find_duplicate(const fib_json *object)
{
    const fib_json *dup = NULL;
    if (!object || object->kind != FIB_JSON_OBJECT || find_duplicate(object, &dup) != FIB_OK)
        return NULL;
    return dup;
}

/* ---- writing ---- */

void fib_jbuf_init(fib_jbuf *b)
{
    memset(b, 0, sizeof *b);
}

void fib_jbuf_free(fib_jbuf *b)
{
    fib_free(b->data);
    memset(b, 0, sizeof *b);
}

void fib_jbuf_bytes(fib_jbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->length + n + 1 > b->capacity) {
        size_t cap = b->capacity ? b->capacity : 256;
        while (cap < b->length + n + 1) {
            if (cap > SIZE_MAX / 2) {
                b->failed = true;
                return;
            }
            cap *= 2;
        }
        if (cap > (size_t)INT64_MAX) {
            b->failed = true;
            return;
        }
        char *bigger = fib_alloc((int64_t)cap, 1);
        if (!bigger) {
            b->failed = true;
            return;
        }
        if (b->length)
            memcpy(bigger, b->data, b->length);
        fib_free(b->data);
        b->data = bigger;
        b->capacity = cap;
    }
    memcpy(b->data + b->length, s, n);
    b->length += n;
    b->data[b->length] = '\0';
}

void fib_jbuf_raw(fib_jbuf *b, const char *s)
{
    fib_jbuf_bytes(b, s, strlen(s));
}

void fib_jbuf_string(fib_jbuf *b, const char *s)
{
    fib_jbuf_raw(b, "\"");
    const char *run = s;
    for (const char *c = s; *c; c++) {
        unsigned char u = (unsigned char)*c;
        const char *esc = NULL;
        char hex[8];
        if (u == '"')
            esc = "\\\"";
        else if (u == '\\')
            esc = "\\\\";
        else if (u == '\n')
            esc = "\\n";
        else if (u == '\t')
            esc = "\\t";
        else if (u == '\r')
            esc = "\\r";
        else if (u < 0x20) {
            snprintf(hex, sizeof hex, "\\u%04x", u);
            esc = hex;
        }
        if (esc) {
            fib_jbuf_bytes(b, run, (size_t)(c - run));
            fib_jbuf_raw(b, esc);
            run = c + 1;
        }
    }
    fib_jbuf_raw(b, run);
    fib_jbuf_raw(b, "\"");
}

void fib_jbuf_int(fib_jbuf *b, int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    fib_jbuf_raw(b, buf);
}

void fib_jbuf_double(fib_jbuf *b, double v)
{
    char buf[64];
    if (!isfinite(v))
        v = 0.0; /* callers validate; JSON has no NaN */
    snprintf(buf, sizeof buf, "%.17g", v);
    /* undo a locale decimal comma, and mark the number as non-integral */
    bool has_point = false;
    for (char *c = buf; *c; c++) {
        if (*c == ',' || *c == '.') {
            *c = '.';
            has_point = true;
        } else if (*c == 'e' || *c == 'E') {
            has_point = true;
        }
    }
    fib_jbuf_raw(b, buf);
    if (!has_point)
        fib_jbuf_raw(b, ".0");
}

int32_t fib_jbuf_status(const fib_jbuf *b)
{
    if (b->failed)
        return fib_error(FIB_E_NOMEM, "out of memory writing JSON");
    return FIB_OK;
}
