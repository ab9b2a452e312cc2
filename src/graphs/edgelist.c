/* Edge-list reader: one arc per line, node and type names interned. */
#define _DEFAULT_SOURCE /* madvise: sequential reading */
#include "graphs/edgelist.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FIELDS 64
#define MAX_NUMBER 128
/* Node names interned together (a power of two), and how far ahead of
 * the lookup a slot is prefetched. */
#define NAMES_BATCH 1024
#define NAMES_AHEAD 32

/* A hash bucket: one cache line of four slots of 16 bytes, a name's key
 * and its id, so that a lookup of a name of at most 7 bytes (its key is
 * the name itself) reads one cache line: the four keys are compared at
 * once, without a branch a slot (a lookup whose branches depend on its
 * slots' contents is mispredicted often, and each misprediction drops the
 * lookups issued after it). A longer name's key is a tag of its hash,
 * and the name is compared with its bytes when its key matches. A bucket
 * fills from slot 0; a full bucket continues in the next. key 0: an empty
 * slot (name_hash). */
#define BUCKET_SLOTS 4
struct bucket {
    uint64_t key[BUCKET_SLOTS];
    int64_t id[BUCKET_SLOTS];
};

/* A long name's key keeps its hash's top 24 bits. */
#define LONG_KEY_TAG_SHIFT 40

/* Slot i of a table: bucket i / BUCKET_SLOTS, place i % BUCKET_SLOTS. */
#define SLOT_KEY(table, i) ((table)[(i) / BUCKET_SLOTS].key[(i) % BUCKET_SLOTS])
#define SLOT_ID(table, i) ((table)[(i) / BUCKET_SLOTS].id[(i) % BUCKET_SLOTS])

/* The first min(len, 8) bytes at s, byte i at bits 8i (zero above), read
 * without touching a byte past s + len: on a little-endian machine two
 * overlapping 4-byte loads, whose common bytes land on the same bits. */
static inline uint64_t load_word(const char *s, int64_t len)
{
    len = len < 8 ? len : 8;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (len >= 4) {
        uint32_t lo, hi;
        memcpy(&lo, s, 4);
        memcpy(&hi, s + len - 4, 4);
        return (uint64_t)lo | (uint64_t)hi << (8 * (len - 4));
    }
#endif
    uint64_t w = 0;
    for (int64_t i = 0; i < len; i++)
        w |= (uint64_t)(unsigned char)s[i] << (8 * i);
    return w;
}


/* A growable byte arena plus offsets, interned through a hash table. */
typedef struct interner {
    char *bytes;
    int64_t n_bytes;
    int64_t cap_bytes;
    int64_t *off;   /* id -> offset in bytes */
    int64_t count;
    int64_t cap_ids;
    struct bucket *table; /* cache-line aligned in table_block */
    void *table_block;
    int64_t cap_table;    /* slots: BUCKET_SLOTS times a power of two */
    int64_t n_hashed;   /* names in the table */
    /* Names that are canonical decimal numbers below number_limit (digits
     * only, no leading zero but "0" itself) are found by their value,
     * without hashing: by_number[v] is the id of name v plus one (0: not
     * seen). Every such name has one value and every value one such name,
     * so the two indexes never hold the same name. number_limit is fixed
     * for a parse (a share of the text's length, bounding the index by
     * the text's size); 0 turns the index off. Ids fit 31 bits: the index
     * serves texts under 4 GiB, which have fewer than 2^31 names. While
     * lines are read, such a name is only noted in its arc (as -1 - v) and
     * max_number records the largest; resolve_numbers then numbers every
     * name in order of first appearance, with the index lookups
     * prefetched ahead (each is a cache miss otherwise). */
    int32_t *by_number;
    int64_t number_limit;
    int64_t max_number; /* -1: no number noted */
} interner;

typedef struct field {
    const char *ptr;
    int64_t len;
    bool quoted_escape; /* contains "" to unescape */
} field;

typedef struct parser {
    const char *label;
    int64_t line;
    interner nodes;
    interner types;
    int64_t n_arcs;
    int64_t cap_arcs;
    int64_t *src;
    int64_t *dst;
    double *weight;
    int32_t *type;
    char *scratch;      /* unescaped field */
    int64_t cap_scratch;
    /* Node names bound for the hash table wait here, hashed, and are
     * interned in order by batches (intern_waiting_names): a lookup is a
     * cache miss, and only a tight loop of lookups with the slots
     * prefetched a few names ahead keeps many misses in flight (between
     * lines of parsing they are served one at a time). A name is the
     * text's bytes, or for an unescaped quoted name a copy in `held`. */
    struct waiting_name {
        const char *s;  /* NULL: held + off */
        int64_t off, len, arc;
        uint64_t hash, key;
        bool is_target;
    } *waiting; /* NAMES_BATCH of them, allocated with the first */
    int n_waiting, first_waiting;
    char *held;
    int64_t n_held, cap_held;
} parser;


static bool grow(void **p, int64_t *cap, int64_t need, size_t size)
{
    if (need <= *cap)
        return true;
    int64_t ncap = *cap > 0 ? *cap : 16;
    while (ncap < need) {
        if (ncap > INT64_MAX / 2)
            return false;
        ncap *= 2;
    }
    void *np = fib_alloc(ncap, size);
    if (!np)
        return false;
    if (*p && *cap > 0)
        memcpy(np, *p, (size_t)*cap * size);
    fib_free(*p);
    *p = np;
    *cap = ncap;
    return true;
}


/* Eight bytes a step (a name is hashed once per occurrence, so this is on
 * the reader's hot path); the length is mixed in so that names differing
 * only by trailing bytes of a last partial word differ. */
static uint64_t hash_bytes(const char *s, int64_t len)
{
    uint64_t h = (uint64_t)len * UINT64_C(0x9e3779b97f4a7c15);
    int64_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * UINT64_C(0xff51afd7ed558ccd);
        h ^= h >> 32;
    }
    if (i < len)
        h = (h ^ load_word(s + i, len - i)) * UINT64_C(0xc4ceb9fe1a85ec53);
    /* a full avalanche before masking */
    return fib_mix64(h);
}

/* The hash of s[0 .. len) (its low bits pick the home bucket) and its
 * key in a slot, *key: for a name of up to 7 bytes, its bytes plus the
 * length and a set top bit in the top byte (one name, one key, hashed as
 * one word, the bytes read once); for a longer name a marker byte and its
 * hash's top bits (the name is then compared byte by byte). Never 0, the
 * key of an empty slot. */
static inline uint64_t name_hash(const char *s, int64_t len, uint64_t *key)
{
    if (len <= 7) {
        *key = (UINT64_C(0x80) | (uint64_t)len) << 56 | (len > 0 ? load_word(s, len) : 0);
        return fib_mix64(*key);
    }
    uint64_t h = hash_bytes(s, len);
    *key = UINT64_C(0xFF) << 56 | h >> LONG_KEY_TAG_SHIFT;
    return h;
}

uint64_t fib_edgelist_name_hash(const char *s, int64_t len)
{
    uint64_t key;
    return name_hash(s, len, &key);
}

static void interner_free(interner *in)
{
    fib_free(in->bytes);
    fib_free(in->off);
    fib_free(in->table_block);
    fib_free(in->by_number);
    memset(in, 0, sizeof *in);
}

/* Name id's length (its bytes end with a NUL in the arena). */
static int64_t name_length(const interner *in, int64_t id)
{
    int64_t end = id + 1 < in->count ? in->off[id + 1] : in->n_bytes;
    return end - 1 - in->off[id];
}

/* The bucket where a name of hash h starts its search. */
static const struct bucket *home_bucket(const interner *in, uint64_t h)
{
    return &in->table[h & (uint64_t)(in->cap_table / BUCKET_SLOTS - 1)];
}

/* The first empty slot from h's bucket on. */
static int64_t free_slot(const struct bucket *table, int64_t cap, uint64_t h)
{
    int64_t b = (int64_t)(h & (uint64_t)(cap / BUCKET_SLOTS - 1));
    while (table[b].key[BUCKET_SLOTS - 1] != 0)
        b = (b + 1) & (cap / BUCKET_SLOTS - 1);
    int j = 0;
    while (table[b].key[j] != 0)
        j++;
    return b * BUCKET_SLOTS + j;
}

/* A table of ncap slots with every name: the names are hashed again (a
 * slot keeps no hash) in id order, which reads the arena
 * in order; the bucket of the name NAMES_AHEAD ids on is prefetched (the
 * writes land anywhere in the table). Every name of an interner with a
 * table is in it. */
static bool rehash(interner *in, int64_t ncap)
{
    const size_t line = sizeof(struct bucket);
    void *block = fib_calloc(ncap / BUCKET_SLOTS + 1, line);
    if (!block)
        return false;
    struct bucket *nt = (struct bucket *)(((uintptr_t)block + line - 1) & ~(uintptr_t)(line - 1));
    /* lookups land anywhere in the table: on huge pages they miss the TLB
     * far less */
    fib_advise_huge_pages(nt, (size_t)ncap / BUCKET_SLOTS * line);
    /* the hashes and keys of ids i - NAMES_AHEAD .. i - 1 */
    uint64_t hashes[NAMES_AHEAD], keys[NAMES_AHEAD];
    for (int64_t i = 0; i < in->count + NAMES_AHEAD; i++) {
        int64_t id = i - NAMES_AHEAD;
        if (id >= 0) {
            int64_t t = free_slot(nt, ncap, hashes[id % NAMES_AHEAD]);
            SLOT_KEY(nt, t) = keys[id % NAMES_AHEAD];
            SLOT_ID(nt, t) = id;
        }
        if (i < in->count) {
            uint64_t h = name_hash(in->bytes + in->off[i], name_length(in, i),
                                   &keys[i % NAMES_AHEAD]);
            fib_prefetch_range((const char *)&nt[h & (uint64_t)(ncap / BUCKET_SLOTS - 1)], 1);
            hashes[i % NAMES_AHEAD] = h;
        }
    }
    fib_free(in->table_block);
    in->table_block = block;
    in->table = nt;
    in->cap_table = ncap;
    return true;
}

/* The lowest set bit of a bucket's match mask. */
static const int8_t LOWEST_BIT[1 << BUCKET_SLOTS] = {0, 0, 1, 0, 2, 0, 1, 0,
                                                     3, 0, 1, 0, 2, 0, 1, 0};

/* The slot holding s[0 .. len), of hash h and key `key` (name_hash), or
 * the empty slot where it would go. */
static inline int64_t find_slot(const interner *in, const char *s, int64_t len,
                                uint64_t h, uint64_t key)
{
    const int64_t mask = in->cap_table / BUCKET_SLOTS - 1;
    for (int64_t b = (int64_t)(h & (uint64_t)mask);; b = (b + 1) & mask) {
        const struct bucket *e = &in->table[b];
        unsigned match = 0;
        for (int j = 0; j < BUCKET_SLOTS; j++)
            match |= (unsigned)(e->key[j] == key) << j;
        for (; match != 0; match &= match - 1) {
            int j = LOWEST_BIT[match];
            if (len <= 7)
                return b * BUCKET_SLOTS + j;
            const char *name = in->bytes + in->off[e->id[j]];
            if (memcmp(name, s, (size_t)len) == 0 && name[len] == '\0')
                return b * BUCKET_SLOTS + j;
        }
        if (e->key[BUCKET_SLOTS - 1] == 0) {
            int j = 0;
            while (e->key[j] != 0)
                j++;
            return b * BUCKET_SLOTS + j;
        }
    }
}

/* Whether s[0 .. len) is a decimal number of the by_number index: digits
 * only, no sign, no leading zero (but "0"), below the limit; *value is it. */
static inline bool indexed_number(const interner *in, const char *s, int64_t len,
                           int64_t *value)
{
    if (len == 0 || len > 18 || (s[0] == '0' && len > 1))
        return false;
    int64_t v = 0;
    for (int64_t i = 0; i < len; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9)
            return false;
        v = v * 10 + (int64_t)d; /* 18 digits never overflow */
    }
    if (v >= in->number_limit)
        return false;
    *value = v;
    return true;
}

/* Whether s[0 .. len) has been interned in the hash table (a name of the
 * number index is not looked up: before resolve_numbers it is only noted). */
static bool interned(const interner *in, const char *s, int64_t len)
{
    if (in->cap_table == 0)
        return false;
    uint64_t key, h = name_hash(s, len, &key);
    return SLOT_KEY(in->table, find_slot(in, s, len, h, key)) != 0;
}

/* Appends the bytes of a new name; its id, or -1 when out of memory. */
static int64_t add_name(interner *in, const char *s, int64_t len)
{
    if (!grow((void **)&in->bytes, &in->cap_bytes, in->n_bytes + len + 1, 1) ||
        !grow((void **)&in->off, &in->cap_ids, in->count + 1,
              sizeof *in->off))
        return -1;
    memcpy(in->bytes + in->n_bytes, s, (size_t)len);
    in->bytes[in->n_bytes + len] = '\0';
    in->off[in->count] = in->n_bytes;
    in->n_bytes += len + 1;
    return in->count++;
}


/* The id of s[0 .. len), of hash h, added if new; -1 when out of memory.
 * The table exists (cap_table > 0). */
static int64_t intern_hashed(interner *in, const char *s, int64_t len, uint64_t h,
                             uint64_t key)
{
    int64_t slot = find_slot(in, s, len, h, key);
    if (SLOT_KEY(in->table, slot) != 0)
        return SLOT_ID(in->table, slot);
    int64_t id = add_name(in, s, len);
    if (id < 0)
        return -1;
    SLOT_KEY(in->table, slot) = key;
    SLOT_ID(in->table, slot) = id;
    /* at most three quarters full: a bucket is then rarely full */
    if (++in->n_hashed * 4 > in->cap_table * 3 && !rehash(in, in->cap_table * 2))
        return -1;
    return id;
}

/* The id of the string s[0 .. len), added if new; -1 when out of memory. */
static int64_t intern(interner *in, const char *s, int64_t len)
{
    if (in->cap_table == 0 && !rehash(in, 64))
        return -1;
    uint64_t key, h = name_hash(s, len, &key);
    return intern_hashed(in, s, len, h, key);
}

/* ------------------------------------------------------------------------ */
/* Lines and fields                                                         */
/* ------------------------------------------------------------------------ */

/* Splits one line (without its end) into fields; *n_out receives their
 * number. FIB_E_FORMAT on a malformed quote or too many fields. */
static int32_t split_fields(parser *p, const char *s, int64_t len, char delim,
                        field *fields, int max_fields, int *n_out)
{
    int n = 0;
    int64_t i = 0;
    if (delim == ' ') {
        while (i < len) {
            while (i < len && (s[i] == ' ' || s[i] == '\t'))
                i++;
            if (i >= len)
                break;
            int64_t b = i;
            while (i < len && s[i] != ' ' && s[i] != '\t')
                i++;
            if (n == max_fields)
                return fib_error(FIB_E_FORMAT, "%s:%lld: more than %d fields",
                                 p->label, (long long)p->line, max_fields);
            fields[n].ptr = s + b;
            fields[n].len = i - b;
            fields[n].quoted_escape = false;
            n++;
        }
        *n_out = n;
        return FIB_OK;
    }
    for (;;) {
        if (n == max_fields)
            return fib_error(FIB_E_FORMAT, "%s:%lld: more than %d fields",
                             p->label, (long long)p->line, max_fields);
        while (i < len && s[i] == ' ')
            i++;
        field *f = &fields[n++];
        f->quoted_escape = false;
        if (i < len && s[i] == '"') {
            int64_t b = ++i;
            for (;;) {
                if (i >= len)
                    return fib_error(FIB_E_FORMAT, "%s:%lld: unterminated "
                                     "quoted field", p->label,
                                     (long long)p->line);
                if (s[i] == '"') {
                    if (i + 1 < len && s[i + 1] == '"') {
                        f->quoted_escape = true;
                        i += 2;
                        continue;
                    }
                    break;
                }
                i++;
            }
            f->ptr = s + b;
            f->len = i - b;
            i++; /* closing quote */
            while (i < len && s[i] == ' ')
                i++;
            if (i < len && s[i] != delim)
                return fib_error(FIB_E_FORMAT, "%s:%lld: text after a quoted "
                                 "field", p->label, (long long)p->line);
        } else {
            int64_t b = i;
            while (i < len && s[i] != delim)
                i++;
            int64_t e = i;
            while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t'))
                e--;
            f->ptr = s + b;
            f->len = e - b;
        }
        if (i >= len)
            break;
        i++; /* delimiter */
    }
    *n_out = n;
    return FIB_OK;
}

/* The field's text, unescaped when needed (valid until the next call). */
static int32_t field_text(parser *p, const field *f, const char **s,
                          int64_t *len)
{
    if (!f->quoted_escape) {
        *s = f->ptr;
        *len = f->len;
        return FIB_OK;
    }
    if (!grow((void **)&p->scratch, &p->cap_scratch, f->len + 1, 1))
        return fib_error(FIB_E_NOMEM, "%s: out of memory", p->label);
    int64_t k = 0;
    for (int64_t i = 0; i < f->len; i++) {
        p->scratch[k++] = f->ptr[i];
        if (f->ptr[i] == '"')
            i++; /* "" -> " */
    }
    *s = p->scratch;
    *len = k;
    return FIB_OK;
}

static bool field_is(const field *f, const char *const *names)
{
    for (int k = 0; names[k]; k++) {
        size_t n = strlen(names[k]);
        if ((size_t)f->len != n)
            continue;
        size_t j = 0;
        while (j < n && tolower((unsigned char)f->ptr[j]) == names[k][j])
            j++;
        if (j == n)
            return true;
    }
    return false;
}

/* Column of the first name (by priority) found among the fields, or -1. */
static int find_column(const field *fields, int n, const char *const *names)
{
    for (int k = 0; names[k]; k++) {
        const char *one[2] = {names[k], NULL};
        for (int i = 0; i < n; i++)
            if (field_is(&fields[i], one))
                return i;
    }
    return -1;
}

static const char *const SOURCE_NAMES[] = {
    "sourcename", "source_name", "source", "src", "from", "tail", NULL};
static const char *const TARGET_NAMES[] = {
    "targetname", "target_name", "target", "dst", "to", "head", NULL};
static const char *const TYPE_NAMES[] = {
    "type", "edge_type", "edgetype", NULL};
static const char *const WEIGHT_NAMES[] = {"weight", "w", NULL};

/* The '\n' bytes of text[0 .. len), eight bytes a step (a memchr call a
 * line costs more than the scan of a short line). */
static int64_t count_newlines(const char *text, int64_t len)
{
    const uint64_t ones = UINT64_C(0x0101010101010101), low7 = ones * 0x7F;
    int64_t count = 0, i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, text + i, 8);
        uint64_t x = w ^ (ones * '\n');
        /* a byte's top bit set when the byte of x is not zero (exact) */
        uint64_t nonzero = ((x & low7) + low7) | x;
        count += (int64_t)((((~nonzero >> 7) & ones) * ones) >> 56);
    }
    for (; i < len; i++)
        count += text[i] == '\n';
    return count;
}

/* Arrays for one arc a line (an upper bound), so that the arcs are never
 * copied while they grow. */
static int32_t reserve_arcs(parser *p, const char *text, int64_t len)
{
    int64_t lines = count_newlines(text, len) + (len > 0 && text[len - 1] != '\n');
    if (lines == 0)
        return FIB_OK;
    p->src = fib_alloc(lines, sizeof *p->src);
    p->dst = fib_alloc(lines, sizeof *p->dst);
    if (!p->src || !p->dst)
        return fib_error(FIB_E_NOMEM, "%s: out of memory for %lld arcs", p->label,
                         (long long)lines);
    p->cap_arcs = lines;
    return FIB_OK;
}

static int32_t add_arc(parser *p, int64_t s, int64_t d, double w, int32_t t,
                       bool weighted, bool typed)
{
    if (p->n_arcs >= (INT64_C(1) << 52))
        return fib_error(FIB_E_OVERFLOW, "%s:%lld: too many arcs", p->label,
                         (long long)p->line);
    if (weighted && !p->weight && p->cap_arcs > 0 &&
        !(p->weight = fib_alloc(p->cap_arcs, sizeof *p->weight)))
        return fib_error(FIB_E_NOMEM, "%s: out of memory at line %lld",
                         p->label, (long long)p->line);
    if (typed && !p->type && p->cap_arcs > 0 &&
        !(p->type = fib_alloc(p->cap_arcs, sizeof *p->type)))
        return fib_error(FIB_E_NOMEM, "%s: out of memory at line %lld",
                         p->label, (long long)p->line);
    if (p->n_arcs == p->cap_arcs) {
        int64_t cap = p->cap_arcs;
        int64_t need = p->n_arcs + 1;
        int64_t c1 = cap, c2 = cap, c3 = cap, c4 = cap;
        if (!grow((void **)&p->src, &c1, need, sizeof *p->src) ||
            !grow((void **)&p->dst, &c2, need, sizeof *p->dst) ||
            (weighted && !grow((void **)&p->weight, &c3, need,
                               sizeof *p->weight)) ||
            (typed && !grow((void **)&p->type, &c4, need, sizeof *p->type)))
            return fib_error(FIB_E_NOMEM, "%s: out of memory at line %lld",
                             p->label, (long long)p->line);
        p->cap_arcs = c1;
    }
    p->src[p->n_arcs] = s;
    p->dst[p->n_arcs] = d;
    if (weighted)
        p->weight[p->n_arcs] = w;
    if (typed)
        p->type[p->n_arcs] = t;
    p->n_arcs++;
    return FIB_OK;
}

/* A plain decimal [+-]digits[.digits] of at most 19 digits without an
 * exponent, read without strtod (and its locale): the digits as an integer
 * and, when that integer is below 2^53 and there are at most 22 decimals,
 * one division by an exact power of ten, which IEEE arithmetic rounds
 * correctly (Clinger's fast path), so the value is strtod's. false: use
 * strtod (exponents, hexadecimal, inf/nan, long digit strings). */
static bool plain_decimal(const char *s, int64_t len, double *out)
{
    static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    int64_t i = 0;
    bool negative = false;
    if (i < len && (s[i] == '+' || s[i] == '-'))
        negative = s[i++] == '-';
    uint64_t mantissa = 0;
    int digits = 0, decimals = 0;
    bool point = false;
    for (; i < len; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d <= 9) {
            if (++digits > 19)
                return false;
            mantissa = mantissa * 10 + d;
            decimals += point;
        } else if (s[i] == '.' && !point) {
            point = true;
        } else {
            return false;
        }
    }
    if (digits == 0 || mantissa > (UINT64_C(1) << 53) || decimals > 22)
        return false;
    double v = (double)mantissa / POW10[decimals];
    *out = negative ? -v : v;
    return true;
}

static int32_t parse_weight(parser *p, const field *f, double *out)
{
    char buf[MAX_NUMBER];
    const char *s;
    int64_t len;
    int32_t st = field_text(p, f, &s, &len);
    if (st != FIB_OK)
        return st;
    if (plain_decimal(s, len, out))
        return FIB_OK;
    if (len == 0 || len >= MAX_NUMBER)
        return fib_error(FIB_E_FORMAT, "%s:%lld: weight \"%.*s\" is not a "
                         "number", p->label, (long long)p->line,
                         (int)(len < 40 ? len : 40), s);
    memcpy(buf, s, (size_t)len);
    buf[len] = '\0';
    char *end = NULL;
    double v = strtod(buf, &end);
    if (end != buf + len)
        return fib_error(FIB_E_FORMAT, "%s:%lld: weight \"%s\" is not a "
                         "number", p->label, (long long)p->line, buf);
    if (!isfinite(v))
        return fib_error(FIB_E_NONFINITE, "%s:%lld: weight \"%s\" is not "
                         "finite", p->label, (long long)p->line, buf);
    *out = v;
    return FIB_OK;
}

/* Writes id into the arc of the oldest waiting name, which leaves the
 * queue. */
static void waiting_name_done(parser *p, int64_t id)
{
    const struct waiting_name *w = &p->waiting[p->first_waiting];
    (w->is_target ? p->dst : p->src)[w->arc] = id;
    p->first_waiting = (p->first_waiting + 1) % NAMES_BATCH;
    if (--p->n_waiting == 0)
        p->n_held = 0;
}

/* Interns the oldest waiting name and writes its id into its arc. */
static int32_t intern_waiting(parser *p)
{
    const struct waiting_name *w = &p->waiting[p->first_waiting];
    const char *s = w->s ? w->s : p->held + w->off;
    int64_t id = intern_hashed(&p->nodes, s, w->len, w->hash, w->key);
    if (id < 0)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", p->label);
    waiting_name_done(p, id);
    return FIB_OK;
}

/* Interns the waiting names in order, the bucket of the name NAMES_AHEAD
 * places on prefetched. A name already interned (most of them) is found
 * in this loop, whose state stays in locals (the parser's fields could
 * alias the arcs it writes); a new one is added by intern_hashed. */
static int32_t intern_waiting_names(parser *p)
{
    interner *in = &p->nodes;
    const struct waiting_name *queue = p->waiting;
    int64_t *src = p->src, *dst = p->dst;
    int first = p->first_waiting, n = p->n_waiting;
    for (; n > 0; n--, first = (first + 1) % NAMES_BATCH) {
        if (n > NAMES_AHEAD) {
            const struct waiting_name *ahead = &queue[(first + NAMES_AHEAD) % NAMES_BATCH];
            fib_prefetch_range((const char *)home_bucket(in, ahead->hash), 1);
        }
        const struct waiting_name *w = &queue[first];
        const char *s = w->s ? w->s : p->held + w->off;
        int64_t slot = find_slot(in, s, w->len, w->hash, w->key);
        int64_t id = SLOT_KEY(in->table, slot) != 0
                         ? SLOT_ID(in->table, slot)
                         : intern_hashed(in, s, w->len, w->hash, w->key);
        if (id < 0)
            return fib_error(FIB_E_NOMEM, "%s: out of memory", p->label);
        (w->is_target ? dst : src)[w->arc] = id;
    }
    p->first_waiting = first;
    p->n_waiting = 0;
    p->n_held = 0;
    return FIB_OK;
}

/* Appends node name s[0 .. len), an end of the arc being read, to a queue
 * with room; *id is written by intern_waiting. */
static inline struct waiting_name *enqueue_name(parser *p, const char *s, int64_t len,
                                                bool is_target, int64_t *id)
{
    struct waiting_name *w = &p->waiting[(p->first_waiting + p->n_waiting) % NAMES_BATCH];
    w->s = s;
    w->len = len;
    w->arc = p->n_arcs;
    w->hash = name_hash(s, len, &w->key);
    w->is_target = is_target;
    p->n_waiting++;
    *id = 0;
    return w;
}

/* Queues node name s[0 .. len) for the hash table in every case: the first
 * name (the table and the queue are made), a full queue, an unescaped name
 * (copied: the next field overwrites it). */
static int32_t wait_for_slot_slowly(parser *p, const char *s, int64_t len, bool is_target,
                                    int64_t *id)
{
    interner *in = &p->nodes;
    if ((in->cap_table == 0 && !rehash(in, 64)) ||
        (!p->waiting && !(p->waiting = fib_alloc(NAMES_BATCH, sizeof *p->waiting))) ||
        (p->n_waiting == NAMES_BATCH && intern_waiting(p) != FIB_OK))
        return fib_error(FIB_E_NOMEM, "%s: out of memory at line %lld", p->label,
                         (long long)p->line);
    if (s != p->scratch) {
        enqueue_name(p, s, len, is_target, id);
        return FIB_OK;
    }
    /* unescaped: overwritten by the next field, so held from here on */
    if (!grow((void **)&p->held, &p->cap_held, p->n_held + len, 1))
        return fib_error(FIB_E_NOMEM, "%s: out of memory at line %lld", p->label,
                         (long long)p->line);
    memcpy(p->held + p->n_held, s, (size_t)len);
    struct waiting_name *w = enqueue_name(p, s, len, is_target, id);
    w->s = NULL;
    w->off = p->n_held;
    p->n_held += len;
    return FIB_OK;
}

/* wait_for_slot_slowly with the common case inline: a name of the text
 * joining a queue with room. */
static inline int32_t wait_for_slot(parser *p, const char *s, int64_t len, bool is_target,
                                    int64_t *id)
{
    if (!p->waiting || p->n_waiting == NAMES_BATCH || s == p->scratch)
        return wait_for_slot_slowly(p, s, len, is_target, id);
    enqueue_name(p, s, len, is_target, id);
    return FIB_OK;
}

/* The id of node name s[0 .. len), an end of the arc being read: a name of
 * the number index is noted (resolve_numbers numbers it), another queued
 * for the hash table (wait_for_slot). */
static inline int32_t node_name(parser *p, const char *s, int64_t len, bool is_target,
                         int64_t *id)
{
    interner *in = &p->nodes;
    int64_t v;
    if (indexed_number(in, s, len, &v)) {
        *id = -1 - v; /* numbered by resolve_numbers */
        in->max_number = v > in->max_number ? v : in->max_number;
        return FIB_OK;
    }
    return wait_for_slot(p, s, len, is_target, id);
}

static int32_t intern_field(parser *p, interner *in, const field *f,
                            const char *what, int64_t *id)
{
    const char *s;
    int64_t len;
    int32_t st = field_text(p, f, &s, &len);
    if (st != FIB_OK)
        return st;
    if (len == 0 && in == &p->nodes)
        return fib_error(FIB_E_FORMAT, "%s:%lld: empty %s name", p->label,
                         (long long)p->line, what);
    if (in == &p->nodes)
        return node_name(p, s, len, what[0] == 't', id);
    int64_t v;
    if (indexed_number(in, s, len, &v)) {
        *id = -1 - v; /* numbered by resolve_numbers */
        in->max_number = v > in->max_number ? v : in->max_number;
        return FIB_OK;
    }
    *id = intern(in, s, len);
    if (*id < 0)
        return fib_error(FIB_E_NOMEM, "%s: out of memory at line %lld",
                         p->label, (long long)p->line);
    if (in == &p->types && *id > INT32_MAX)
        return fib_error(FIB_E_OVERFLOW, "%s:%lld: more than 2^31 edge types",
                         p->label, (long long)p->line);
    return FIB_OK;
}

/* The id of endpoint x (a hashed name's id, or -1 - v for number name v)
 * in order of first appearance, its name added to `names` when new.
 * first_of_hashed[h]: the id of hashed name h, -1 before it appears. */
static int64_t final_id(interner *names, const interner *hashed,
                        int64_t *first_of_hashed, int64_t x)
{
    if (x >= 0) {
        if (first_of_hashed[x] < 0) {
            int64_t end = x + 1 < hashed->count ? hashed->off[x + 1] : hashed->n_bytes;
            first_of_hashed[x] = add_name(names, hashed->bytes + hashed->off[x],
                                          end - 1 - hashed->off[x]);
        }
        return first_of_hashed[x];
    }
    int64_t v = -1 - x;
    if (names->by_number[v] > 0)
        return names->by_number[v] - 1;
    char digits[24];
    int k = (int)sizeof digits;
    do {
        digits[--k] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    int64_t id = add_name(names, digits + k, (int64_t)sizeof digits - k);
    if (id >= 0)
        names->by_number[-1 - x] = (int32_t)(id + 1);
    return id;
}

/* Numbers the nodes in order of first appearance once the lines are read,
 * when some names were noted as numbers (intern_field); the hashed names'
 * ids are final otherwise. */
static int32_t resolve_numbers(parser *p)
{
    interner *hashed = &p->nodes;
    if (hashed->max_number < 0)
        return FIB_OK;
    interner names;
    memset(&names, 0, sizeof names);
    names.by_number = fib_calloc(hashed->max_number + 1, sizeof *names.by_number);
    int64_t *first_of_hashed = fib_alloc(hashed->count > 0 ? hashed->count : 1,
                                         sizeof *first_of_hashed);
    if (!names.by_number || !first_of_hashed) {
        fib_free(first_of_hashed);
        interner_free(&names);
        return fib_error(FIB_E_NOMEM, "%s: out of memory", p->label);
    }
    fib_advise_huge_pages(names.by_number,
                      (size_t)(hashed->max_number + 1) * sizeof *names.by_number);
    for (int64_t h = 0; h < hashed->count; h++)
        first_of_hashed[h] = -1;
    const int64_t ahead = 16;
    bool failed = false;
    for (int64_t a = 0; a < p->n_arcs && !failed; a++) {
        if (a + ahead < p->n_arcs) {
            int64_t xs = p->src[a + ahead], xd = p->dst[a + ahead];
            fib_prefetch_range(xs < 0 ? (const char *)&names.by_number[-1 - xs]
                                      : (const char *)&first_of_hashed[xs], 1);
            fib_prefetch_range(xd < 0 ? (const char *)&names.by_number[-1 - xd]
                                      : (const char *)&first_of_hashed[xd], 1);
        }
        p->src[a] = final_id(&names, hashed, first_of_hashed, p->src[a]);
        p->dst[a] = final_id(&names, hashed, first_of_hashed, p->dst[a]);
        failed = p->src[a] < 0 || p->dst[a] < 0;
    }
    fib_free(first_of_hashed);
    if (failed) {
        interner_free(&names);
        return fib_error(FIB_E_NOMEM, "%s: out of memory", p->label);
    }
    names.number_limit = hashed->number_limit;
    names.max_number = hashed->max_number;
    interner_free(hashed);
    *hashed = names;
    return FIB_OK;
}

/* The bytes of w (eight bytes of text, the first at the low end) that are
 * below '#' (blanks, control bytes, '!' and the quote) or equal to the
 * delimiter `sep` (repeated in every byte of seps): the lowest flagged byte
 * is the first such byte (bytes above it may be flagged wrongly by a
 * borrow; none is flagged when there is none). */
static uint64_t special_bytes(uint64_t w, uint64_t seps)
{
    const uint64_t ones = UINT64_C(0x0101010101010101), tops = ones << 7;
    uint64_t below = (w - ones * '#') & ~w & tops;
    uint64_t x = w ^ seps;
    return below | ((x - ones) & ~x & tops);
}

/* The index of the lowest flagged byte of a non-zero special_bytes mask. */
static int lowest_flagged_byte(uint64_t mask)
{
#if defined(__GNUC__)
    return __builtin_ctzll(mask) / 8;
#else
    int k = 0;
    while (!(mask & 0x80))
        mask >>= 8, k++;
    return k;
#endif
}

/* Whether the line at `at` has the plainest form, read without splitting
 * it into fields: two non-empty names separated by one `delim`, ended by
 * '\n', "\r\n" or the text's end, with no quote, blank (but a blank
 * delimiter), other control byte or leading '#'. The first name is
 * [at, *cut), the second (*cut + 1, *end); the next line starts at *next.
 * false: the line is read field by field (which also reports its errors).
 * The bytes are tested eight at a time (special_bytes). */
static bool plain_pair(const char *text, int64_t at, int64_t n, char delim, int64_t *cut,
                       int64_t *end, int64_t *next)
{
    if (text[at] == '#')
        return false;
    const unsigned char sep = (unsigned char)delim;
    const uint64_t seps = UINT64_C(0x0101010101010101) * sep;
    int64_t d = -1, i = at;
    for (;; i++) {
        /* to the next byte that is not part of a plain name */
        for (; i + 8 <= n; i += 8) {
            uint64_t w;
            memcpy(&w, text + i, 8);
            uint64_t mask = special_bytes(w, seps);
            if (mask != 0) {
                i += lowest_flagged_byte(mask);
                break;
            }
        }
        while (i < n && (unsigned char)text[i] > '"' && (unsigned char)text[i] != sep)
            i++;
        if (i == n) {
            *next = n;
            break;
        }
        unsigned char c = (unsigned char)text[i];
        if (c == sep) {
            if (d >= 0)
                return false;
            d = i;
        } else if (c == '\n') {
            *next = i + 1;
            break;
        } else if (c == '\r' && (i + 1 == n || text[i + 1] == '\n')) {
            *next = i + 1 < n ? i + 2 : n;
            break;
        } else if (c != '!') {
            return false;
        }
    }
    if (d <= at || d + 1 >= i)
        return false;
    *cut = d;
    *end = i;
    return true;
}

static char sniff_delimiter(const char *s, int64_t len)
{
    bool comma = false;
    for (int64_t i = 0; i < len; i++) {
        if (s[i] == '\t')
            return '\t';
        if (s[i] == ',')
            comma = true;
    }
    return comma ? ',' : ' ';
}

static void parser_free(parser *p)
{
    interner_free(&p->nodes);
    interner_free(&p->types);
    fib_free(p->src);
    fib_free(p->dst);
    fib_free(p->weight);
    fib_free(p->type);
    fib_free(p->scratch);
    fib_free(p->held);
    fib_free(p->waiting);
}

void fib_edgelist_clear(fib_edgelist *e)
{
    if (!e)
        return;
    fib_free(e->src);
    fib_free(e->dst);
    fib_free(e->weight);
    fib_free(e->type);
    fib_free(e->node_names);
    fib_free(e->node_name_off);
    fib_free(e->type_names);
    fib_free(e->type_name_off);
    memset(e, 0, sizeof *e);
}

/* Which column holds what (-1: none) and how many fields every line has. */
typedef struct layout {
    int src, dst, type, weight;
    int n_fields;
} layout;

/* "source,target,type,weight" or with "-" for a column to ignore. */
static int32_t parse_column_list(const char *list, layout *out)
{
    layout l = {-1, -1, -1, -1, 0};
    const char *s = list;
    for (;;) {
        size_t n = strcspn(s, ",");
        int *role = n == 6 && !strncmp(s, "source", n) ? &l.src
                  : n == 6 && !strncmp(s, "target", n) ? &l.dst
                  : n == 4 && !strncmp(s, "type", n) ? &l.type
                  : n == 6 && !strncmp(s, "weight", n) ? &l.weight : NULL;
        if (!role && !(n == 1 && s[0] == '-'))
            return fib_error(FIB_E_INVALID, "edge list: column \"%.*s\" of the column "
                             "list \"%s\" is not source, target, type, weight or -",
                             (int)(n < 40 ? n : 40), s, list);
        if (role && *role >= 0)
            return fib_error(FIB_E_INVALID, "edge list: the column list \"%s\" names "
                             "%.*s twice", list, (int)n, s);
        if (l.n_fields == MAX_FIELDS)
            return fib_error(FIB_E_INVALID, "edge list: the column list \"%s\" has "
                             "more than %d columns", list, MAX_FIELDS);
        if (role)
            *role = l.n_fields;
        l.n_fields++;
        if (s[n] == '\0')
            break;
        s += n + 1;
    }
    if (l.src < 0 || l.dst < 0)
        return fib_error(FIB_E_INVALID, "edge list: the column list \"%s\" needs a "
                         "source and a target column", list);
    *out = l;
    return FIB_OK;
}

/* Whether the field is a number, and whether an integer one. */
static bool field_number(const field *f, bool *integer)
{
    char buf[MAX_NUMBER];
    if (f->len == 0 || f->len >= MAX_NUMBER || f->quoted_escape)
        return false;
    double plain;
    if (plain_decimal(f->ptr, f->len, &plain)) {
        *integer = !memchr(f->ptr, '.', (size_t)f->len);
        return true;
    }
    memcpy(buf, f->ptr, (size_t)f->len);
    buf[f->len] = '\0';
    char *end;
    double v = strtod(buf, &end);
    if (end != buf + f->len)
        return false;
    *integer = isfinite(v) && v == floor(v) && !strpbrk(buf, ".eE");
    return true;
}

/* A copy of a field's text, for messages after the line has gone. */
static char *field_copy(parser *p, const field *f)
{
    const char *s;
    int64_t len;
    if (field_text(p, f, &s, &len) != FIB_OK)
        return NULL;
    char *c = fib_alloc(len + 1, 1);
    if (c) {
        memcpy(c, s, (size_t)len);
        c[len] = '\0';
    }
    return c;
}

/* The first line's layout. Header rules (docs/graphs.md, "Edge-list
 * files"): with a column list, the list; with a header, the columns it
 * names; without, by position: source target [type [weight]], or
 * source target weight with FIB_EDGELIST_THIRD_IS_WEIGHT. *header says
 * whether the line is a header. */
static int32_t first_line(parser *p, const field *fields, int nf, uint32_t flags,
                          const layout *listed, layout *lay, bool *header)
{
    int hs = find_column(fields, nf, SOURCE_NAMES);
    int hd = find_column(fields, nf, TARGET_NAMES);
    bool named = hs >= 0 && hd >= 0 && hs != hd;
    *header = (flags & FIB_EDGELIST_HEADER) ||
              (!(flags & FIB_EDGELIST_NO_HEADER) && named);
    if (listed) {
        if (nf != listed->n_fields)
            return fib_error(FIB_E_FORMAT, "%s:%lld: %d fields, but the column list "
                             "names %d", p->label, (long long)p->line, nf,
                             listed->n_fields);
        *lay = *listed;
        return FIB_OK;
    }
    if (*header) {
        if (!named)
            return fib_error(FIB_E_FORMAT, "%s:%lld: the header names no source and "
                             "target columns", p->label, (long long)p->line);
        *lay = (layout){hs, hd, find_column(fields, nf, TYPE_NAMES),
                        find_column(fields, nf, WEIGHT_NAMES), nf};
        return FIB_OK;
    }
    if (nf < 2)
        return fib_error(FIB_E_FORMAT, "%s:%lld: expected at least 2 fields (source, "
                         "target), found %d", p->label, (long long)p->line, nf);
    bool third_is_weight = flags & FIB_EDGELIST_THIRD_IS_WEIGHT;
    if (nf > (third_is_weight ? 3 : 4))
        return fib_error(FIB_E_FORMAT, "%s:%lld: %d fields without a header, where "
                         "a line is source target %s: name the columns (a header "
                         "line, or a column list such as --columns "
                         "source,target,type,weight,-)", p->label, (long long)p->line,
                         nf, third_is_weight ? "weight" : "[type [weight]]");
    *lay = third_is_weight ? (layout){0, 1, -1, nf == 3 ? 2 : -1, nf}
                           : (layout){0, 1, nf >= 3 ? 2 : -1, nf == 4 ? 3 : -1, nf};
    return FIB_OK;
}

/* fib_edgelist_parse_columns; no_nul: the caller has checked that text
 * holds no NUL byte (a file read or mapped), which spares a pass. */
static int32_t parse_text(const char *text, size_t len, bool no_nul, uint32_t flags,
                          const char *columns, const char *label, fib_edgelist *out)
{
    if (!out)
        return fib_error(FIB_E_NULL, "edge list: output is NULL");
    memset(out, 0, sizeof *out);
    if (!text && len > 0)
        return fib_error(FIB_E_NULL, "edge list: text is NULL");
    if (!label)
        label = "<edge list>";
    const uint32_t known = FIB_EDGELIST_HEADER | FIB_EDGELIST_NO_HEADER |
                           FIB_EDGELIST_COMMA | FIB_EDGELIST_TAB |
                           FIB_EDGELIST_WHITESPACE |
                           FIB_EDGELIST_THIRD_IS_WEIGHT | FIB_EDGELIST_THIRD_IS_TYPE;
    const uint32_t third = FIB_EDGELIST_THIRD_IS_WEIGHT | FIB_EDGELIST_THIRD_IS_TYPE;
    uint32_t delims = flags & (FIB_EDGELIST_COMMA | FIB_EDGELIST_TAB |
                               FIB_EDGELIST_WHITESPACE);
    if ((flags & ~known) ||
        ((flags & FIB_EDGELIST_HEADER) && (flags & FIB_EDGELIST_NO_HEADER)) ||
        (delims & (delims - 1)) || (flags & third) == third ||
        (columns && (flags & third)))
        return fib_error(FIB_E_INVALID, "edge list: invalid flags 0x%x%s",
                         (unsigned)flags, columns && (flags & third)
                         ? " (a column list replaces FIB_EDGELIST_THIRD_IS_*)" : "");
    if ((int64_t)len < 0)
        return fib_error(FIB_E_OVERFLOW, "%s: too large", label);
    layout listed;
    if (columns) {
        int32_t st = parse_column_list(columns, &listed);
        if (st != FIB_OK)
            return st;
    }

    parser p;
    memset(&p, 0, sizeof p);
    p.label = label;
    field fields[MAX_FIELDS];
    int32_t status = FIB_OK;
    char delim = delims == FIB_EDGELIST_COMMA ? ',' :
                 delims == FIB_EDGELIST_TAB ? '\t' :
                 delims == FIB_EDGELIST_WHITESPACE ? ' ' : 0;
    bool first = true, header = false;
    /* after the first line, when lines are two names: lines of the
     * plainest form skip the splitting into fields (plain_pair) */
    bool plain_lines = false;
    layout lay = {0, 1, -1, -1, 0};
    int64_t layout_line = 0;
    /* a header recognised by its names alone, kept to check below that it
     * is not an arc between nodes of those names */
    char *guessed_src = NULL, *guessed_dst = NULL;
    /* a third column read by position as a type: all numbers, some not
     * integers, is more likely a weight; refused below */
    bool positional_type = false, type_all_numbers = true;
    int64_t fraction_line = 0;
    int64_t at = 0, n = (int64_t)len;
    /* a UTF-8 byte order mark (Excel, Notepad) is not part of the first field */
    if (n >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        at = 3;
    /* text holds no NUL byte: one scan finds the first, reported when its
     * line is reached (errors on earlier lines come first) */
    const char *nul = n > 0 && !no_nul ? memchr(text, '\0', (size_t)n) : NULL;
    int64_t nul_at = nul ? (int64_t)(nul - text) : n;
    /* names that are small decimal numbers skip the hash table; the limit
     * keeps that index (4 bytes a value) within half the text's size */
    p.nodes.number_limit = n < (INT64_C(1) << 32) ? n / 8 : 0;
    p.nodes.max_number = -1;
    status = reserve_arcs(&p, text + at, n - at);
    if (status != FIB_OK)
        goto fail;

    while (at < n) {
        int64_t cut, end, next;
        if (plain_lines && plain_pair(text, at, n, delim, &cut, &end, &next)) {
            p.line++;
            /* the source is named first, whatever its column */
            const char *source = text + at, *target = text + cut + 1;
            int64_t source_len = cut - at, target_len = end - cut - 1;
            if (lay.src != 0) {
                source = text + cut + 1, target = text + at;
                source_len = end - cut - 1, target_len = cut - at;
            }
            int64_t s = 0, d = 0;
            status = node_name(&p, source, source_len, false, &s);
            if (status == FIB_OK)
                status = node_name(&p, target, target_len, true, &d);
            if (status == FIB_OK)
                status = add_arc(&p, s, d, 1.0, 0, false, false);
            if (status == FIB_OK && p.n_waiting > NAMES_BATCH - 4)
                status = intern_waiting_names(&p);
            if (status != FIB_OK)
                goto fail;
            at = next;
            continue;
        }
        int64_t b = at;
        const char *eol = memchr(text + at, '\n', (size_t)(n - at));
        at = eol ? (int64_t)(eol - text) : n;
        int64_t e = at;
        if (at < n)
            at++; /* '\n' */
        p.line++;
        if (e > b && text[e - 1] == '\r')
            e--;
        if (nul_at < e) {
            status = fib_error(FIB_E_FORMAT, "%s:%lld: NUL byte", label,
                               (long long)p.line);
            goto fail;
        }
        int64_t k = b;
        while (k < e && (text[k] == ' ' || text[k] == '\t'))
            k++;
        if (k == e || text[b] == '#')
            continue; /* blank line or comment */
        if (delim == 0)
            delim = sniff_delimiter(text + b, e - b);
        int nf = 0;
        status = split_fields(&p, text + b, e - b, delim, fields, MAX_FIELDS,
                              &nf);
        if (status != FIB_OK)
            goto fail;
        if (first) {
            first = false;
            layout_line = p.line;
            status = first_line(&p, fields, nf, flags, columns ? &listed : NULL, &lay,
                                &header);
            if (status != FIB_OK)
                goto fail;
            plain_lines = lay.n_fields == 2 && lay.type < 0 && lay.weight < 0;
            positional_type = !header && !columns && lay.type == 2 &&
                              !(flags & FIB_EDGELIST_THIRD_IS_TYPE);
            if (header && !(flags & FIB_EDGELIST_HEADER)) {
                int hs = find_column(fields, nf, SOURCE_NAMES);
                int hd = find_column(fields, nf, TARGET_NAMES);
                guessed_src = field_copy(&p, &fields[hs]);
                guessed_dst = field_copy(&p, &fields[hd]);
                if (!guessed_src || !guessed_dst) {
                    status = fib_error(FIB_E_NOMEM, "%s: out of memory", label);
                    goto fail;
                }
            }
            if (header)
                continue;
        }
        if (nf != lay.n_fields) {
            if (columns)
                status = fib_error(FIB_E_FORMAT, "%s:%lld: %d fields, but the column "
                                   "list names %d", label, (long long)p.line, nf,
                                   lay.n_fields);
            else
                status = fib_error(FIB_E_FORMAT, "%s:%lld: %d fields, but line %lld "
                                   "has %d: every line has the same columns%s", label,
                                   (long long)p.line, nf, (long long)layout_line,
                                   lay.n_fields, header ? " as the header" :
                                   "; name them (a header line, or a column list "
                                   "such as --columns source,target,type)");
            goto fail;
        }
        int64_t s = 0, d = 0, t = 0;
        double w = 1.0;
        bool integer;
        if (positional_type && type_all_numbers) {
            if (!field_number(&fields[lay.type], &integer))
                type_all_numbers = false;
            else if (!integer && fraction_line == 0)
                fraction_line = p.line;
        }
        status = intern_field(&p, &p.nodes, &fields[lay.src], "source", &s);
        if (status == FIB_OK)
            status = intern_field(&p, &p.nodes, &fields[lay.dst], "target",
                                  &d);
        if (status == FIB_OK && lay.type >= 0)
            status = intern_field(&p, &p.types, &fields[lay.type], "type",
                                  &t);
        if (status == FIB_OK && lay.weight >= 0)
            status = parse_weight(&p, &fields[lay.weight], &w);
        if (status == FIB_OK)
            status = add_arc(&p, s, d, w, (int32_t)t, lay.weight >= 0,
                             lay.type >= 0);
        if (status == FIB_OK)
            status = p.n_waiting > NAMES_BATCH - 4 ? intern_waiting_names(&p) : FIB_OK;
        if (status != FIB_OK)
            goto fail;
    }
    status = intern_waiting_names(&p);
    if (status != FIB_OK)
        goto fail;
    if (positional_type && type_all_numbers && fraction_line > 0) {
        status = fib_error(FIB_E_FORMAT, "%s:%lld: the third column, read as an edge "
                           "type, holds only numbers and some are not integers: are "
                           "they weights? name the columns (source,target,weight or "
                           "source,target,type; --columns or --weight-column 3 in the "
                           "command, FIB_EDGELIST_THIRD_IS_WEIGHT or _TYPE)", label,
                           (long long)fraction_line);
        goto fail;
    }
    if (guessed_src && (interned(&p.nodes, guessed_src, (int64_t)strlen(guessed_src)) ||
                        interned(&p.nodes, guessed_dst, (int64_t)strlen(guessed_dst)))) {
        const char *both = interned(&p.nodes, guessed_src, (int64_t)strlen(guessed_src))
                               ? guessed_src : guessed_dst;
        status = fib_error(FIB_E_FORMAT, "%s:%lld: is the first line a header or an "
                           "arc? It names the columns, but \"%.60s\" is also a node on a "
                           "later line: say which (--header or --no-header in the "
                           "command, FIB_EDGELIST_HEADER or _NO_HEADER)", label,
                           (long long)layout_line, both);
        goto fail;
    }
    fib_free(guessed_src);
    fib_free(guessed_dst);
    guessed_src = guessed_dst = NULL;
    status = resolve_numbers(&p);
    if (status != FIB_OK)
        goto fail;

    out->n_nodes = p.nodes.count;
    out->n_arcs = p.n_arcs;
    out->src = p.src;
    out->dst = p.dst;
    out->weight = p.weight;
    out->type = p.type;
    out->n_types = (int32_t)p.types.count;
    out->node_names = p.nodes.bytes;
    out->node_name_off = p.nodes.off;
    out->type_names = p.types.bytes;
    out->type_name_off = p.types.off;
    fib_free(p.nodes.table_block);
    fib_free(p.nodes.by_number);
    fib_free(p.types.table_block);
    fib_free(p.scratch);
    fib_free(p.held);
    fib_free(p.waiting);
    return FIB_OK;
fail:
    fib_free(guessed_src);
    fib_free(guessed_dst);
    parser_free(&p);
    return status;
}

int32_t fib_edgelist_parse_columns(const char *text, size_t len, uint32_t flags,
                                   const char *columns, const char *label,
                                   fib_edgelist *out)
{
    return parse_text(text, len, false, flags, columns, label, out);
}

int32_t fib_edgelist_parse(const char *text, size_t len, uint32_t flags,
                           const char *label, fib_edgelist *out)
{
    return fib_edgelist_parse_columns(text, len, flags, NULL, label, out);
}

/* Opens an edge list without blocking on a FIFO that has no writer: a
 * regular file, a pipe or FIFO with a writer, or a socket is read; folders
 * and devices (a terminal, /dev/zero, whose reading never ends) are
 * refused, and so is a FIFO with no writer (it would wait forever). */
static int32_t open_edge_list(const char *path, FILE **out)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return fib_error(FIB_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    int32_t st = FIB_OK;
    if (fstat(fd, &sb) != 0)
        st = fib_error(FIB_E_IO, "%s: cannot stat: %s", path, strerror(errno));
    else if (S_ISDIR(sb.st_mode))
        st = fib_error(FIB_E_IO, "%s: is a folder, not an edge list", path);
    else if (S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode))
        st = fib_error(FIB_E_IO, "%s: is a device, not an edge list (a regular "
                       "file, pipe or FIFO is read)", path);
    /* on a FIFO, a non-blocking read returns 0 only when no writer has it
     * open, and fails with EAGAIN while a writer has yet to write */
    char first = 0;
    ssize_t got = -1;
    if (st == FIB_OK && S_ISFIFO(sb.st_mode)) {
        got = read(fd, &first, 1);
        if (got == 0)
            st = fib_error(FIB_E_IO, "%s: a FIFO or pipe with no writer (start "
                           "the writer first)", path);
        else if (got < 0 && errno != EAGAIN && errno != EINTR)
            st = fib_error(FIB_E_IO, "%s: read error: %s", path, strerror(errno));
    }
    if (st == FIB_OK && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0)
        st = fib_error(FIB_E_IO, "%s: cannot read: %s", path, strerror(errno));
    FILE *f = st == FIB_OK ? fdopen(fd, "rb") : NULL;
    if (st == FIB_OK && !f)
        st = fib_error(FIB_E_NOMEM, "%s: out of memory", path);
    if (st != FIB_OK) {
        close(fd);
        return st;
    }
    if (got == 1)
        ungetc((unsigned char)first, f);
    *out = f;
    return FIB_OK;
}

/* The whole of a regular file mapped (read-only, private), or NULL to read
 * it instead: a pipe, an empty file, a stream already moved from its start
 * (standard input left part-read by an earlier command), or a failed map. */
static const char *map_whole(FILE *f, size_t *len)
{
    int fd = fileno(f);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size <= 0 ||
        (uint64_t)sb.st_size > (uint64_t)SIZE_MAX || lseek(fd, 0, SEEK_CUR) != 0)
        return NULL;
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED)
        return NULL;
#ifdef MADV_SEQUENTIAL
    madvise(map, (size_t)sb.st_size, MADV_SEQUENTIAL);
#endif
    *len = (size_t)sb.st_size;
    return map;
}

int32_t fib_edgelist_read_columns(const char *path, uint32_t flags, const char *columns,
                                  fib_edgelist *out)
{
    if (!path || !out)
        return fib_error(FIB_E_NULL, "edge list: NULL argument");
    memset(out, 0, sizeof *out);
    /* "-" is standard input, as for the command's other files */
    bool from_stdin = strcmp(path, "-") == 0;
    const char *label = from_stdin ? "<stdin>" : path;
    FILE *f = stdin;
    if (!from_stdin) {
        int32_t opened = open_edge_list(path, &f);
        if (opened != FIB_OK)
            return opened;
    }
    int32_t status = FIB_OK;
    size_t mapped_len = 0;
    const char *mapped = map_whole(f, &mapped_len);
    if (mapped) {
        if (!from_stdin)
            fclose(f);
        /* a NUL byte is reported before any other error, as when reading */
        const char *nul = memchr(mapped, '\0', mapped_len);
        if (nul) {
            long long line = 1;
            for (const char *c = mapped; (c = memchr(c, '\n', (size_t)(nul - c))); c++)
                line++;
            status = fib_error(FIB_E_FORMAT, "%s:%lld: NUL byte", label, line);
        } else {
            status = parse_text(mapped, mapped_len, true, flags, columns, label, out);
        }
        munmap((void *)mapped, mapped_len);
        return status;
    }
    char *buf = NULL;
    int64_t cap = 0, len = 0;
    for (;;) {
        if (!grow((void **)&buf, &cap, len + 65536, 1)) {
            status = fib_error(FIB_E_NOMEM, "%s: out of memory", label);
            break;
        }
        size_t got = fread(buf + len, 1, (size_t)(cap - len), f);
        /* Text never holds a NUL byte: stopping at the first one keeps an
         * endless binary stream (a pipe from /dev/zero) from filling memory. */
        const char *nul = memchr(buf + len, 0, got);
        len += (int64_t)got;
        if (nul) {
            long long line = 1;
            for (const char *c = buf; c < nul; c++)
                line += *c == '\n';
            status = fib_error(FIB_E_FORMAT, "%s:%lld: NUL byte", label, line);
            break;
        }
        if (got == 0) {
            if (ferror(f))
                status = fib_error(FIB_E_IO, "%s: read error", label);
            break;
        }
    }
    if (!from_stdin)
        fclose(f);
    if (status == FIB_OK)
        status = parse_text(buf, (size_t)len, true, flags, columns, label, out);
    fib_free(buf);
    return status;
}

int32_t fib_edgelist_read(const char *path, uint32_t flags, fib_edgelist *out)
{
    return fib_edgelist_read_columns(path, flags, NULL, out);
}

const char *fib_edgelist_node_name(const fib_edgelist *e, int64_t i)
{
    if (!e || i < 0 || i >= e->n_nodes)
        return "";
    return e->node_names + e->node_name_off[i];
}

const char *fib_edgelist_type_name(const fib_edgelist *e, int32_t t)
{
    if (!e || t < 0 || t >= e->n_types)
        return "";
    return e->type_names + e->type_name_off[t];
}
