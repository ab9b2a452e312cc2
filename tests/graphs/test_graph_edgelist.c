/* The edge-list reader: formats, header sniffing, quoting, and hostile input
 * (clear errors with line numbers, never a crash: a random-mutation fuzz).
 * Usage: test_graph_edgelist [DATA_DIR] */
#include "graphs/edgelist.h"

#include "graph_check.h"

#include <stdbool.h>
#include <string.h>

static int32_t parse(const char *text, uint32_t flags, fib_edgelist *e)
{
    return fib_edgelist_parse(text, strlen(text), flags, "t.csv", e);
}

static void expect_error(const char *text, uint32_t flags, int32_t status,
                         const char *where)
{
    fib_edgelist e;
    int32_t st = parse(text, flags, &e);
    CHECK(st == status, "%s: got %s (%s)", where, fib_status_name(st),
          fib_last_error());
    if (st != FIB_OK)
        CHECK(strstr(fib_last_error(), where) != NULL,
              "message \"%s\" lacks \"%s\"", fib_last_error(), where);
    CHECK(e.src == NULL && e.n_arcs == 0, "output not empty on failure");
    fib_edgelist_clear(&e);
}

static void formats(void)
{
    fib_edgelist e;
    /* header with weight and type, case-insensitive, extra column, CRLF,
     * comments, blank lines, quoted names with a comma and a quote */
    const char *csv = "# a comment\r\n"
                      "Weight,Note,SOURCE,Target,type\r\n"
                      "\r\n"
                      "0.5,x,a,b,pos\r\n"
                      "-2,y,\"c,1\",a,neg\r\n"
                      "1e1,z,b,\"q\"\"t\",pos\n";
    CHECK_OK(parse(csv, FIB_EDGELIST_AUTO, &e));
    CHECK(e.n_nodes == 4 && e.n_arcs == 3 && e.n_types == 2, "csv shape");
    CHECK(e.weight && e.weight[0] == 0.5 && e.weight[1] == -2 &&
              e.weight[2] == 10, "csv weights");
    CHECK(e.type && e.type[0] == 0 && e.type[1] == 1 && e.type[2] == 0,
          "csv types");
    CHECK(strcmp(fib_edgelist_node_name(&e, 2), "c,1") == 0, "quoted comma");
    CHECK(strcmp(fib_edgelist_node_name(&e, 3), "q\"t") == 0, "quoted quote");
    CHECK(strcmp(fib_edgelist_type_name(&e, 1), "neg") == 0, "type name");
    CHECK(e.src[1] == 2 && e.dst[1] == 0, "csv ids");
    fib_edgelist_clear(&e);

    /* name columns win over id columns (FastFibration's E. coli file) */
    CHECK_OK(parse("SourceName,TargetName,Type,Source,Target\n"
                   "x,y,positive,7,9\n", 0, &e));
    CHECK(strcmp(fib_edgelist_node_name(&e, 0), "x") == 0, "name columns");
    fib_edgelist_clear(&e);

    /* headerless TSV: src dst type (networkfibers) */
    CHECK_OK(parse("4\t4\tnegative\n13\t10\tpositive\n", 0, &e));
    CHECK(e.n_nodes == 3 && e.n_arcs == 2 && e.n_types == 2 && !e.weight,
          "tsv");
    fib_edgelist_clear(&e);

    /* whitespace, headerless, with weights in column 4 */
    CHECK_OK(parse("a b t 1.5\n  b   c t 2\n", 0, &e));
    CHECK(e.n_arcs == 2 && e.weight && e.weight[1] == 2 && e.type, "spaces");
    fib_edgelist_clear(&e);

    /* src dst weight with the explicit flag */
    CHECK_OK(parse("a b 0.25\nb a 4\n", FIB_EDGELIST_THIRD_IS_WEIGHT, &e));
    CHECK(!e.type && e.weight && e.weight[0] == 0.25, "third is weight");
    fib_edgelist_clear(&e);

    /* forced header / no header */
    CHECK_OK(parse("source,target\n1,2\n", FIB_EDGELIST_NO_HEADER, &e));
    CHECK(e.n_arcs == 2 && e.n_nodes == 4, "forced no header");
    fib_edgelist_clear(&e);

    /* empty input and header only: a graph with no arcs */
    CHECK_OK(parse("", 0, &e));
    CHECK(e.n_arcs == 0 && e.n_nodes == 0, "empty");
    fib_edgelist_clear(&e);
    CHECK_OK(parse("source,target\n", 0, &e));
    CHECK(e.n_arcs == 0, "header only");
    fib_edgelist_clear(&e);
}

static void errors(void)
{
    expect_error("source,target,weight\na,b,1\nc,d,x\n", 0, FIB_E_FORMAT,
                 ":3:");
    expect_error("source,target,weight\na,b,nan\n", 0, FIB_E_NONFINITE, ":2:");
    expect_error("source,target,weight\na,b,1e999\n", 0, FIB_E_NONFINITE,
                 ":2:");
    expect_error("source,target,type\na,b,t\nc\n", 0, FIB_E_FORMAT, ":3:");
    expect_error("a,b\n\"x,y\n", 0, FIB_E_FORMAT, ":2:");
    expect_error("a,b\n\"x\"z,y\n", 0, FIB_E_FORMAT, ":2:");
    expect_error("a,b\n,y\n", 0, FIB_E_FORMAT, ":2:");
    expect_error("lonely\n", 0, FIB_E_FORMAT, ":1:");
    expect_error("src;dst\n1;2\n", FIB_EDGELIST_WHITESPACE, FIB_E_FORMAT,
                 ":1:");
    expect_error("foo,bar\n", FIB_EDGELIST_HEADER, FIB_E_FORMAT, ":1:");
    expect_error("a,b\n", 0x1000u, FIB_E_INVALID, "flags");
    expect_error("a,b\n", FIB_EDGELIST_HEADER | FIB_EDGELIST_NO_HEADER,
                 FIB_E_INVALID, "flags");
    expect_error("a,b\n", FIB_EDGELIST_COMMA | FIB_EDGELIST_TAB,
                 FIB_E_INVALID, "flags");
    /* NUL byte inside a line */
    fib_edgelist e;
    const char nul[] = "a,b\nc,\0d\n";
    CHECK(fib_edgelist_parse(nul, sizeof nul - 1, 0, "t.csv", &e) ==
              FIB_E_FORMAT && strstr(fib_last_error(), ":2:"), "NUL byte");
    /* too many fields */
    char wide[1024] = "a";
    for (int i = 0; i < 100; i++)
        strcat(wide, ",a");
    expect_error(wide, 0, FIB_E_FORMAT, ":1:");
    CHECK(fib_edgelist_parse(NULL, 3, 0, NULL, &e) == FIB_E_NULL, "null");
    CHECK(fib_edgelist_parse("a", 1, 0, NULL, NULL) == FIB_E_NULL, "null");
    CHECK(fib_edgelist_read("/nonexistent/x.csv", 0, &e) == FIB_E_IO, "io");
    fib_edgelist_clear(NULL);
}

static int32_t parse_columns(const char *text, uint32_t flags, const char *columns,
                             fib_edgelist *e)
{
    return fib_edgelist_parse_columns(text, strlen(text), flags, columns, "t.csv", e);
}

/* A UTF-8 byte order mark is not part of the first column's name: the
 * header is still recognised and no arc "\xEF\xBB\xBFsource -> target"
 * appears. */
static void byte_order_mark_is_skipped(void)
{
    fib_edgelist e;
    CHECK_OK(parse("\xEF\xBB\xBFsource,target\na,b\nb,c\n", 0, &e));
    CHECK(e.n_arcs == 2 && e.n_nodes == 3, "BOM: %lld arcs", (long long)e.n_arcs);
    CHECK(strcmp(fib_edgelist_node_name(&e, 0), "a") == 0, "BOM: first node");
    fib_edgelist_clear(&e);
    /* headerless: the first node's name has no BOM */
    CHECK_OK(parse("\xEF\xBB\xBF" "a b\nb c\n", 0, &e));
    CHECK(strcmp(fib_edgelist_node_name(&e, 0), "a") == 0, "BOM: headerless name");
    fib_edgelist_clear(&e);
}

/* Every line has the first line's number of fields: a headerless file
 * whose first line has 2 and later lines 3 would lose the types. */
static void field_counts_must_agree(void)
{
    expect_error("a b\nb c t\n", 0, FIB_E_FORMAT, ":2: 3 fields, but line 1 has 2");
    expect_error("a b t\nb c\n", 0, FIB_E_FORMAT, ":2: 2 fields, but line 1 has 3");
    expect_error("source,target\na,b\nb,c,t\n", 0, FIB_E_FORMAT, ":3:");
    expect_error("a,b,t\nb,c,t,1,x\n", 0, FIB_E_FORMAT, ":2:");
    /* more than source target type weight without a header: name them */
    expect_error("a b t 1 x\n", 0, FIB_E_FORMAT, "name the columns");
    expect_error("a b 1 2\n", FIB_EDGELIST_THIRD_IS_WEIGHT, FIB_E_FORMAT, ":1:");
}

/* A first line that names the columns is a header unless its names are
 * also nodes: "from to" then "to from" is refused, not guessed. */
static void ambiguous_header_is_refused(void)
{
    expect_error("from to\nto from\na from\n", 0, FIB_E_FORMAT, "header or an arc");
    expect_error("source,target\nsource,x\n", 0, FIB_E_FORMAT, "\"source\"");
    fib_edgelist e;
    CHECK_OK(parse("from to\nto from\n", FIB_EDGELIST_NO_HEADER, &e));
    CHECK(e.n_arcs == 2, "forced no header keeps the first arc");
    fib_edgelist_clear(&e);
    CHECK_OK(parse("from to\nto from\n", FIB_EDGELIST_HEADER, &e));
    CHECK(e.n_arcs == 1, "forced header");
    fib_edgelist_clear(&e);
    /* names that are not nodes: a header */
    CHECK_OK(parse("from to\na b\n", 0, &e));
    CHECK(e.n_arcs == 1 && e.n_nodes == 2, "from/to header");
    fib_edgelist_clear(&e);
}

/* A third column read by position as a type but holding fractional
 * numbers is refused (weights?); integers stay types. */
static void fractional_third_column_is_refused(void)
{
    expect_error("a b 0.5\nb c 1.5\n", 0, FIB_E_FORMAT, ":1: the third column");
    expect_error("a b 1\nb c 2.25\n", 0, FIB_E_FORMAT, ":2: the third column");
    fib_edgelist e;
    CHECK_OK(parse("a b 1\nb c 2\nc a 1\n", 0, &e));
    CHECK(e.n_types == 2 && !e.weight, "integer types");
    fib_edgelist_clear(&e);
    CHECK_OK(parse("a b 0.5\nb c 1.5\n", FIB_EDGELIST_THIRD_IS_TYPE, &e)); /* said */
    CHECK(e.n_types == 2 && !e.weight, "types said");
    fib_edgelist_clear(&e);
    expect_error("a b 1\n", FIB_EDGELIST_THIRD_IS_TYPE | FIB_EDGELIST_THIRD_IS_WEIGHT,
                 FIB_E_INVALID, "flags");
    CHECK_OK(parse("a b 0.5\nb c x\n", 0, &e)); /* not all numbers: types */
    CHECK(e.n_types == 2, "mixed types");
    fib_edgelist_clear(&e);
}

/* The columns named by the caller: weights in the third column, roles in
 * any order, ignored columns, the header skipped; bad lists refused. */
static void column_list(void)
{
    fib_edgelist e;
    CHECK_OK(parse_columns("a b 0.5\nb c 1.5\n", 0, "source,target,weight", &e));
    CHECK(e.n_arcs == 2 && !e.type && e.weight && e.weight[1] == 1.5, "u v weight");
    fib_edgelist_clear(&e);
    CHECK_OK(parse_columns("x,0.5,b,a,t\ny,2,c,b,u\n", 0, "-,weight,target,source,type",
                           &e));
    CHECK(strcmp(fib_edgelist_node_name(&e, 0), "a") == 0 && e.src[0] == 0 &&
              e.dst[0] == 1 && e.weight[0] == 0.5 && e.n_types == 2, "reordered");
    fib_edgelist_clear(&e);
    CHECK_OK(parse_columns("from,to,cost\na,b,3\n", 0, "source,target,weight", &e));
    CHECK(e.n_arcs == 1 && e.weight[0] == 3, "header skipped");
    fib_edgelist_clear(&e);
    CHECK(parse_columns("a b 1\n", 0, "source,target,weight", &e) == FIB_OK, "ok");
    fib_edgelist_clear(&e);
    CHECK(parse_columns("a b 1\nb c\n", 0, "source,target,weight", &e) == FIB_E_FORMAT &&
              strstr(fib_last_error(), ":2: 2 fields, but the column list names 3"),
          "%s", fib_last_error());
    CHECK(parse_columns("a b\n", 0, "source,weight", &e) == FIB_E_INVALID &&
              strstr(fib_last_error(), "needs a source and a target"), "no target");
    CHECK(parse_columns("a b\n", 0, "source,source", &e) == FIB_E_INVALID &&
              strstr(fib_last_error(), "names source twice"), "twice");
    CHECK(parse_columns("a b\n", 0, "source,dest", &e) == FIB_E_INVALID &&
              strstr(fib_last_error(), "\"dest\""), "unknown role");
    CHECK(parse_columns("a b\n", FIB_EDGELIST_THIRD_IS_WEIGHT, "source,target", &e) ==
              FIB_E_INVALID, "list with THIRD_IS_WEIGHT");
}

/* Random mutations of valid files: every outcome is OK or a clean error. */
static void fuzz(void)
{
    static const char *seeds[] = {
        "source,target,type,weight\na,b,p,1\nb,c,n,-2.5\n\"q,\",a,p,3e2\n",
        "4\t4\tnegative\n13\t10\tpositive\n10\t13\tdual\n",
        "SourceName,TargetName,Type,Source,Target\nx,y,positive,1,2\n",
    };
    static const char alphabet[] = ",\t\n\r \"#0123456789.e-+abxyNnaI\0";
    uint64_t state = 7;
    char buf[256];
    int ok = 0, failed = 0;
    for (int rep = 0; rep < 20000; rep++) {
        const char *seed = seeds[rep % 3];
        size_t len = strlen(seed);
        memcpy(buf, seed, len);
        int edits = 1 + rep % 6;
        for (int k = 0; k < edits; k++) {
            state = state * 6364136223846793005u + 1442695040888963407u;
            size_t at = (size_t)(state >> 33) % (len + 1);
            char c = alphabet[(state >> 20) % (sizeof alphabet - 1)];
            int op = (int)((state >> 10) % 3);
            if (op == 0 && at < len) {
                buf[at] = c;
            } else if (op == 1 && len < sizeof buf - 1) {
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = c;
                len++;
            } else if (at < len) {
                memmove(buf + at, buf + at + 1, len - at - 1);
                len--;
            }
        }
        fib_edgelist e;
        int32_t st = fib_edgelist_parse(buf, len, 0, "fuzz", &e);
        CHECK(st == FIB_OK || st == FIB_E_FORMAT || st == FIB_E_NONFINITE,
              "fuzz status %s", fib_status_name(st));
        if (st == FIB_OK) {
            ok++;
            for (int64_t i = 0; i < e.n_arcs; i++)
                CHECK(e.src[i] >= 0 && e.src[i] < e.n_nodes &&
                          e.dst[i] >= 0 && e.dst[i] < e.n_nodes,
                      "fuzz ids");
        } else {
            failed++;
            CHECK(strstr(fib_last_error(), "fuzz:") != NULL, "fuzz message");
        }
        fib_edgelist_clear(&e);
    }
    printf("fuzz: %d parsed, %d rejected\n", ok, failed);
}

static uint64_t next_random(uint64_t *state)
{
    *state = *state * 6364136223846793005u + 1442695040888963407u;
    return *state >> 17;
}

/* Weights read without strtod (plain decimals) must be strtod's doubles bit
 * for bit, sign of zero included; the other forms still go to strtod. */
static void weights_equal_strtod(void)
{
    static const char *fixed[] = {
        "-0", "0", "+0.0", "-0.000", "0.1", "0.30000000000000004", ".5", "5.", "+.5",
        "-7.", "9007199254740992", "9007199254740993", "9007199254740992.5",
        "18446744073709551615", "18446744073709551616", "1234567890123456789",
        "12345678901234567890", "0.0000000000000000000001", "0.00000000000000000000001",
        "123456789012345678901234567890", "1e22", "1e23", "2.5E-3", "0x1p-2",
        "  3.25", "4503599627370497.5", "0.1000000000000000055511151231257827"};
    uint64_t state = 11;
    char text[160], number[80];
    for (int rep = 0; rep < 20000 + (int)(sizeof fixed / sizeof fixed[0]); rep++) {
        if (rep < (int)(sizeof fixed / sizeof fixed[0])) {
            snprintf(number, sizeof number, "%s", fixed[rep]);
        } else {
            /* random sign, 1-24 digits with a point anywhere or none */
            int at = 0, digits = 1 + (int)(next_random(&state) % 24);
            int point = (int)(next_random(&state) % (uint64_t)(digits + 2)) - 1;
            uint64_t sign = next_random(&state) % 3;
            if (sign)
                number[at++] = sign == 1 ? '-' : '+';
            for (int d = 0; d < digits; d++) {
                if (d == point)
                    number[at++] = '.';
                number[at++] = (char)('0' + next_random(&state) % 10);
            }
            if (point == digits)
                number[at++] = '.';
            number[at] = '\0';
        }
        snprintf(text, sizeof text, "a,b,%s\n", number);
        fib_edgelist e;
        int32_t st = parse(text, FIB_EDGELIST_THIRD_IS_WEIGHT, &e);
        char *end;
        double expected = strtod(number, &end);
        if (*end != '\0') {
            CHECK(st == FIB_E_FORMAT, "\"%s\" is not a number: %s", number,
                  fib_status_name(st));
        } else {
            CHECK(st == FIB_OK && e.n_arcs == 1 &&
                      memcmp(&e.weight[0], &expected, sizeof expected) == 0,
                  "weight \"%s\": %a, strtod %a", number,
                  st == FIB_OK ? e.weight[0] : 0.0, expected);
        }
        fib_edgelist_clear(&e);
    }
}

/* Names that are decimal numbers (read through the number index when small,
 * through the hash table otherwise) keep their first-appearance order and
 * stay distinct from look-alikes: 007 and 7, "7" quoted and 7 the same. */
static void number_names_in_order_of_appearance(void)
{
    fib_edgelist e;
    const char *text = "source,target\n7,007\n007,7\n0,x\n"
                       "123456789012345678901234567890,7\n\"7\",8\n"
                       "18446744073709551616,99999999999\n+8,-8\n8,99999999999\r\n"
                       "# 5,6\n0,123456789012345678901234567890";
    CHECK_OK(parse(text, 0, &e));
    static const char *names[] = {"7", "007", "0", "x", "123456789012345678901234567890",
                                  "8", "18446744073709551616", "99999999999", "+8", "-8"};
    static const int64_t src[] = {0, 1, 2, 4, 0, 6, 8, 5, 2};
    static const int64_t dst[] = {1, 0, 3, 0, 5, 7, 9, 7, 4};
    CHECK(e.n_nodes == 10 && e.n_arcs == 9, "%lld nodes, %lld arcs", (long long)e.n_nodes,
          (long long)e.n_arcs);
    for (int64_t i = 0; i < e.n_nodes && i < 10; i++)
        CHECK(strcmp(fib_edgelist_node_name(&e, i), names[i]) == 0, "node %lld: %s",
              (long long)i, fib_edgelist_node_name(&e, i));
    for (int64_t a = 0; a < e.n_arcs && a < 9; a++)
        CHECK(e.src[a] == src[a] && e.dst[a] == dst[a], "arc %lld", (long long)a);
    fib_edgelist_clear(&e);

    /* random files mixing small numbers, large ones, leading zeros and words
     * against a reference interning by linear search */
    uint64_t state = 5;
    enum { LINES = 3000, NAMES = 1000 };
    static char text_buf[LINES * 48];
    static char ref_names[NAMES * 2][32];
    static int64_t ref_src[LINES], ref_dst[LINES];
    for (int rep = 0; rep < 20; rep++) {
        int at = 0, n_ref = 0, lines = 1 + (int)(next_random(&state) % LINES);
        for (int l = 0; l < lines; l++) {
            for (int end = 0; end < 2; end++) {
                char name[32];
                uint64_t kind = next_random(&state) % 5, v = next_random(&state) % 600;
                if (kind == 0)
                    snprintf(name, sizeof name, "%llu", (unsigned long long)v * 1000003u);
                else if (kind == 1)
                    snprintf(name, sizeof name, "0%llu", (unsigned long long)v % 50);
                else if (kind == 2)
                    snprintf(name, sizeof name, "g%llu", (unsigned long long)v % 90);
                else
                    snprintf(name, sizeof name, "%llu", (unsigned long long)v);
                int id = 0;
                while (id < n_ref && strcmp(ref_names[id], name) != 0)
                    id++;
                if (id == n_ref)
                    snprintf(ref_names[n_ref++], sizeof ref_names[0], "%s", name);
                (end ? ref_dst : ref_src)[l] = id;
                at += snprintf(text_buf + at, sizeof text_buf - (size_t)at, "%s%s", name,
                               end ? (l % 7 == 3 ? "\r\n" : "\n") : " ");
            }
        }
        if (rep % 2)
            at--; /* no final line end */
        CHECK_OK(fib_edgelist_parse(text_buf, (size_t)at, FIB_EDGELIST_NO_HEADER, "r", &e));
        CHECK(e.n_nodes == n_ref && e.n_arcs == lines, "random %d: %lld nodes, %d expected",
              rep, (long long)e.n_nodes, n_ref);
        for (int64_t i = 0; i < e.n_nodes && i < n_ref; i++)
            CHECK(strcmp(fib_edgelist_node_name(&e, i), ref_names[i]) == 0,
                  "random %d: node %lld", rep, (long long)i);
        for (int64_t a = 0; a < e.n_arcs && a < lines; a++)
            CHECK(e.src[a] == ref_src[a] && e.dst[a] == ref_dst[a], "random %d: arc %lld",
                  rep, (long long)a);
        fib_edgelist_clear(&e);
    }

    /* nothing to read: no arcs, no nodes */
    CHECK_OK(fib_edgelist_parse("", 0, 0, "empty", &e));
    CHECK(e.n_arcs == 0 && e.n_nodes == 0, "empty text");
    fib_edgelist_clear(&e);
    CHECK_OK(parse("# only a comment\r\n\n", 0, &e));
    CHECK(e.n_arcs == 0 && e.n_nodes == 0, "comments only");
    fib_edgelist_clear(&e);
}

/* A reference numbering: names by linear search, in order of first
 * appearance. */
typedef struct reference {
    char **names;
    int64_t n_names;
    int64_t *src, *dst;
} reference;

static int64_t reference_id(reference *r, const char *name)
{
    int64_t id = 0;
    while (id < r->n_names && strcmp(r->names[id], name) != 0)
        id++;
    if (id == r->n_names) {
        r->names[id] = malloc(strlen(name) + 1);
        strcpy(r->names[id], name);
        r->n_names++;
    }
    return id;
}

static void reference_free(reference *r)
{
    for (int64_t i = 0; i < r->n_names; i++)
        free(r->names[i]);
    r->n_names = 0;
}

/* The reader's numbering of text equals the reference's. */
static void check_against_reference(const char *text, size_t len, uint32_t flags,
                                    const reference *r, int64_t lines, const char *what)
{
    fib_edgelist e;
    int32_t st = fib_edgelist_parse(text, len, flags, "r", &e);
    CHECK(st == FIB_OK, "%s: %s", what, fib_last_error());
    if (st != FIB_OK)
        return;
    CHECK(e.n_nodes == r->n_names && e.n_arcs == lines, "%s: %lld nodes, %lld expected",
          what, (long long)e.n_nodes, (long long)r->n_names);
    for (int64_t i = 0; i < e.n_nodes && i < r->n_names; i++)
        CHECK(strcmp(fib_edgelist_node_name(&e, i), r->names[i]) == 0, "%s: node %lld",
              what, (long long)i);
    for (int64_t a = 0; a < e.n_arcs && a < lines; a++)
        CHECK(e.src[a] == r->src[a] && e.dst[a] == r->dst[a], "%s: arc %lld", what,
              (long long)a);
    fib_edgelist_clear(&e);
}

/* Names that are words (through the hash table) keep their first-appearance
 * order whatever the form of their lines: plain lines (read without
 * splitting into fields), quoted names, blanks around fields, CRLF, no
 * final line end, comma, tab or blank delimiters, a header naming the
 * target first (the source is still numbered first); names of 1 to 7 bytes
 * (packed into their slot), longer ones, very long ones (thousands of
 * bytes) and names differing only in their last byte or their length; up
 * to 1500 names, so that the table grows many times. */
static void word_names_in_order_of_appearance(void)
{
    enum { LINES = 3000, POOL = 1500, LONG = 3000 };
    static char pool[POOL][LONG + 16];
    uint64_t state = 23;
    for (int k = 0; k < POOL; k++) {
        int kind = k % 6;
        if (kind == 0)
            snprintf(pool[k], sizeof pool[k], "w%d", k);
        else if (kind == 1)
            snprintf(pool[k], sizeof pool[k], "%c%c", 'a' + k % 26, 'a' + (k / 26) % 26);
        else if (kind == 2)
            snprintf(pool[k], sizeof pool[k], "gene_name_%d", k); /* > 7 bytes */
        else if (kind == 3) /* shares 8 bytes with the others of its kind */
            snprintf(pool[k], sizeof pool[k], "prefix__%d", k % 7 == 0 ? k / 7 : k);
        else if (kind == 4) /* differs from n%d only by its length */
            snprintf(pool[k], sizeof pool[k], "n%dx", k);
        else { /* very long: only the last bytes differ */
            int len = k % 12 == 5 ? LONG : 40 + k % 30;
            memset(pool[k], 'L', (size_t)len);
            snprintf(pool[k] + len, sizeof pool[k] - (size_t)len, "%d", k);
        }
        pool[k][sizeof pool[k] - 1] = '\0';
    }
    static char *ref_names[POOL];
    static int64_t ref_src[LINES], ref_dst[LINES];
    reference r = {ref_names, 0, ref_src, ref_dst};
    char *text = malloc((size_t)LINES * 2 * (LONG + 24) + 64);
    static const char delims[] = {',', '\t', ' '};
    for (int rep = 0; rep < 12; rep++) {
        char delim = delims[rep % 3];
        bool target_first = rep % 4 == 1 && delim != ' ';
        int lines = 1 + (int)(next_random(&state) % LINES);
        int names = 2 + (int)(next_random(&state) % POOL);
        size_t at = 0;
        if (delim != ' ')
            at += (size_t)sprintf(text, target_first ? "target%csource\n" : "source%ctarget\n",
                                  delim);
        for (int l = 0; l < lines; l++) {
            const char *ends[2];
            for (int k = 0; k < 2; k++)
                ends[k] = pool[next_random(&state) % (uint64_t)names];
            r.src[l] = reference_id(&r, ends[0]);
            r.dst[l] = reference_id(&r, ends[1]);
            const char *first = target_first ? ends[1] : ends[0];
            const char *second = target_first ? ends[0] : ends[1];
            int form = (int)(next_random(&state) % 8);
            if (form == 0 && delim == ',')
                at += (size_t)sprintf(text + at, "\"%s\",%s", first, second);
            else if (form == 1 && delim != ' ')
                at += (size_t)sprintf(text + at, " %s%c%s ", first, delim, second);
            else if (form == 2 && delim == ' ')
                at += (size_t)sprintf(text + at, "%s \t %s", first, second);
            else
                at += (size_t)sprintf(text + at, "%s%c%s", first, delim, second);
            at += (size_t)sprintf(text + at, "%s", form == 3 ? "\r\n" : "\n");
            if (form == 4 && l + 1 < lines)
                at += (size_t)sprintf(text + at, "# a comment\n\n");
        }
        if (rep % 2)
            at -= text[at - 2] == '\r' ? 2 : 1; /* no final line end */
        char what[64];
        snprintf(what, sizeof what, "words %d (%d lines, delimiter %d)", rep, lines, delim);
        check_against_reference(text, at,
                                delim == ' ' ? FIB_EDGELIST_NO_HEADER | FIB_EDGELIST_WHITESPACE : 0, &r,
                                lines, what);
        reference_free(&r);
    }
    free(text);
}

/* Names whose hashes agree in the table's tag and in their low bits (the
 * bucket of every table up to 16 buckets) are told apart by their bytes,
 * and names sharing a home bucket in every table up to 4096 buckets fill
 * it and the buckets after it: their numbering stays by first appearance.
 * The colliding names are found by sorting many candidates by those bits
 * (a birthday search). */
static int compare_keyed(const void *pa, const void *pb)
{
    const uint64_t *a = pa, *b = pb;
    return (a[0] > b[0]) - (a[0] < b[0]);
}

/* Up to `wanted` names of more than 7 bytes, in pairs agreeing in the top
 * 24 bits of their hash (the tag of their slot) and its low 4 bits; their
 * number. */
static int colliding_pairs(char (*names)[64], int wanted)
{
    enum { CANDIDATES = 1 << 17 };
    uint64_t (*keyed)[2] = malloc(sizeof *keyed * CANDIDATES);
    char name[64];
    for (int k = 0; k < CANDIDATES; k++) {
        int len = snprintf(name, sizeof name, "colliding_name_%d", k);
        uint64_t h = fib_edgelist_name_hash(name, len);
        keyed[k][0] = (h >> 40) << 4 | (h & 15);
        keyed[k][1] = (uint64_t)k;
    }
    qsort(keyed, CANDIDATES, sizeof *keyed, compare_keyed);
    int n = 0;
    for (int k = 1; k < CANDIDATES && n + 2 <= wanted; k++)
        if (keyed[k][0] == keyed[k - 1][0]) {
            snprintf(names[n++], 64, "colliding_name_%d", (int)keyed[k - 1][1]);
            snprintf(names[n++], 64, "colliding_name_%d", (int)keyed[k][1]);
            k++;
        }
    free(keyed);
    return n;
}

static void names_colliding_in_the_hash(void)
{
    enum { WANTED = 40 };
    char name[64];
    static char pair_names[WANTED][64];
    int n_pair = colliding_pairs(pair_names, WANTED);
    CHECK(n_pair >= 8, "only %d names collide in tag and bucket", n_pair);
    /* names (short and long) sharing their low 12 bits: one home bucket */
    static char bucket_names[WANTED * 4][64];
    int n_bucket = 0;
    uint64_t low = fib_edgelist_name_hash("b0", 2) & 4095;
    for (int k = 0; k < (1 << 24) && n_bucket < WANTED * 4; k++) {
        int len = snprintf(name, sizeof name, k % 2 ? "b%d" : "bucket_mate_%d", k);
        if ((fib_edgelist_name_hash(name, len) & 4095) == low)
            snprintf(bucket_names[n_bucket++], 64, "%s", name);
    }
    CHECK(n_bucket == WANTED * 4, "%d names share a bucket", n_bucket);

    enum { LINES = 2000 };
    static char *ref_names[WANTED * 5];
    static int64_t ref_src[LINES], ref_dst[LINES];
    reference r = {ref_names, 0, ref_src, ref_dst};
    static char text[LINES * 140];
    uint64_t state = 31;
    for (int rep = 0; rep < 2; rep++) {
        size_t at = 0;
        for (int l = 0; l < LINES; l++) {
            const char *ends[2];
            for (int k = 0; k < 2; k++) {
                /* the first file: the pairs alone (a table of 64 slots) */
                uint64_t pick = next_random(&state);
                ends[k] = rep == 0 || pick % 2 ? pair_names[pick / 2 % (uint64_t)n_pair]
                                               : bucket_names[pick / 2 % (uint64_t)n_bucket];
            }
            r.src[l] = reference_id(&r, ends[0]);
            r.dst[l] = reference_id(&r, ends[1]);
            at += (size_t)snprintf(text + at, sizeof text - at, "%s,%s\n", ends[0], ends[1]);
        }
        check_against_reference(text, at, FIB_EDGELIST_NO_HEADER, &r, LINES,
                                rep ? "colliding and bucket-sharing names" : "colliding names");
        reference_free(&r);
    }
}

/* The word name of node v of word_and_number_names_read_the_same: names of
 * 1 to 7 bytes (their own keys), of 7 and 8 bytes exactly, with bytes that
 * are not UTF-8, long and very long names, names colliding in the hash
 * (pairs[]), names with a quote (written quoted and escaped: the reader
 * unescapes them into a copy). */
static const char *word_name(int64_t v, char (*pairs)[64], int n_pairs, char *buf)
{
    switch (v % 8) {
    case 0: sprintf(buf, "w%lld", (long long)v); break;
    case 1: sprintf(buf, "x%06lld", (long long)(v % 1000000)); break;
    case 2: sprintf(buf, "y%07lld", (long long)(v % 10000000)); break;
    case 3: sprintf(buf, "\xff\xc3%lld\x80", (long long)v); break;
    case 4: sprintf(buf, "gene_%lld_%.*s", (long long)v, (int)(v % 50), "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"); break;
    case 5:
        if (v % 1000 == 5) {
            memset(buf, 'L', 4000);
            sprintf(buf + 4000, "%lld", (long long)v);
        } else {
            sprintf(buf, "q%lld", (long long)v);
        }
        break;
    case 6:
        if (v / 8 < n_pairs)
            return pairs[v / 8];
        sprintf(buf, "c%lld", (long long)v);
        break;
    default: sprintf(buf, v % 3 ? "prefix__%lld" : "quo\"te%lld", (long long)v); break;
    }
    return buf;
}

/* One random graph with its nodes named by numbers (the number index) and
 * by words of every kind (word_name: the hash table, on plain lines, quoted
 * and CRLF ones) reads as the same arcs with the same numbering, by first
 * appearance, with the names matching; 40000 names, so that the table
 * grows to thousands of buckets. */
static void word_and_number_names_read_the_same(void)
{
    enum { N = 40000, M = 200000, PAIRS = 40 };
    static char pairs[PAIRS][64];
    int n_pairs = colliding_pairs(pairs, PAIRS);
    CHECK(n_pairs >= 8, "only %d names collide in tag and bucket", n_pairs);
    uint64_t state = 41;
    int64_t *src = malloc(M * sizeof *src), *dst = malloc(M * sizeof *dst);
    for (int64_t a = 0; a < M; a++) {
        src[a] = (int64_t)(next_random(&state) % N);
        /* the colliding names often, so that they meet in the table */
        dst[a] = a % 5 == 0 ? (int64_t)(next_random(&state) % (uint64_t)n_pairs) * 8 + 6
                            : (int64_t)(next_random(&state) % N);
    }
    size_t cap = (size_t)M * 2 * 64 + (size_t)(N / 1000 + 1) * 2 * 4100 * 40;
    char *numbers = malloc(cap), *words = malloc(cap), buf[2][4100];
    size_t at_n = 0, at_w = 0;
    for (int64_t a = 0; a < M; a++) {
        at_n += (size_t)sprintf(numbers + at_n, "%lld,%lld\n", (long long)src[a],
                                (long long)dst[a]);
        const char *s = word_name(src[a], pairs, n_pairs, buf[0]);
        const char *d = word_name(dst[a], pairs, n_pairs, buf[1]);
        if (strchr(s, '"'))
            at_w += (size_t)sprintf(words + at_w, "\"quo\"\"%s\",", s + 4);
        else
            at_w += (size_t)sprintf(words + at_w, a % 11 == 3 ? "\"%s\"," : "%s,", s);
        at_w += (size_t)sprintf(words + at_w, strchr(d, '"') ? "\"quo\"\"%s\"" : "%s",
                                strchr(d, '"') ? d + 4 : d);
        at_w += (size_t)sprintf(words + at_w, a % 7 == 2 ? "\r\n" : "\n");
    }
    fib_edgelist by_number, by_word;
    CHECK_OK(fib_edgelist_parse(numbers, at_n, FIB_EDGELIST_NO_HEADER, "numbers", &by_number));
    CHECK_OK(fib_edgelist_parse(words, at_w, FIB_EDGELIST_NO_HEADER, "words", &by_word));
    CHECK(by_word.n_nodes == by_number.n_nodes && by_word.n_arcs == M &&
          by_number.n_arcs == M, "%lld and %lld nodes", (long long)by_word.n_nodes,
          (long long)by_number.n_nodes);
    int differ = 0;
    for (int64_t a = 0; a < M && a < by_word.n_arcs && a < by_number.n_arcs; a++)
        differ += by_word.src[a] != by_number.src[a] || by_word.dst[a] != by_number.dst[a];
    CHECK(differ == 0, "%d arcs differ", differ);
    for (int64_t i = 0; i < by_word.n_nodes && i < by_number.n_nodes; i++) {
        int64_t v = atoll(fib_edgelist_node_name(&by_number, i));
        if (strcmp(fib_edgelist_node_name(&by_word, i), word_name(v, pairs, n_pairs, buf[0]))) {
            CHECK(false, "node %lld: \"%.40s\" is not node %lld's name", (long long)i,
                  fib_edgelist_node_name(&by_word, i), (long long)v);
            break;
        }
    }
    fib_edgelist_clear(&by_number);
    fib_edgelist_clear(&by_word);
    free(numbers), free(words), free(src), free(dst);
}

static void data_files(const char *dir)
{
    static const char *files[] = {"test_1.csv", "test_Ecoli.csv",
                                  "ecoli_ids.tsv", "ecoli_named.txt"};
    static const int64_t nodes[] = {8, 879, 879, 879};
    static const int64_t arcs[] = {11, 1835, 1835, 1835};
    for (int i = 0; i < 4; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        fib_edgelist e;
        int32_t st = fib_edgelist_read(path, 0, &e);
        CHECK(st == FIB_OK && e.n_nodes == nodes[i] && e.n_arcs == arcs[i],
              "%s", files[i]);
        CHECK(i == 0 ? e.n_types == 2 : e.n_types == 3, "%s types", files[i]);
        fib_edgelist_clear(&e);
    }
}

int main(int argc, char **argv)
{
    formats();
    errors();
    byte_order_mark_is_skipped();
    field_counts_must_agree();
    ambiguous_header_is_refused();
    fractional_third_column_is_refused();
    column_list();
    weights_equal_strtod();
    number_names_in_order_of_appearance();
    word_names_in_order_of_appearance();
    names_colliding_in_the_hash();
    word_and_number_names_read_the_same();
    fuzz();
    if (argc > 1)
        data_files(argv[1]);
    if (check_failures)
        fprintf(stderr, "%d check(s) failed\n", check_failures);
    return check_failures ? 1 : 0;
}
