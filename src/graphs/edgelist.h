/* Edge-list files: CSV / TSV / whitespace-separated, with or without a
 * header, node names as strings (see docs/graphs.md, "Edge-list files"). */
#ifndef FIB_GRAPHS_EDGELIST_H
#define FIB_GRAPHS_EDGELIST_H

#include "model/model.h"

#include <stddef.h>
#include <stdint.h>

/* Format flags: FIB_EDGELIST_* in fibration.h. */

typedef struct fib_edgelist {
    int64_t n_nodes;
    int64_t n_arcs;
    int64_t *src;        /* n_arcs node ids, numbered by first appearance */
    int64_t *dst;
    double *weight;      /* NULL when the file has no weight column */
    int32_t *type;       /* NULL when the file has no type column; else ids
                            numbered by first appearance of the type string */
    int32_t n_types;     /* 0 when untyped */
    char *node_names;    /* node i: node_names + node_name_off[i] */
    int64_t *node_name_off;
    char *type_names;    /* type t: type_names + type_name_off[t] */
    int64_t *type_name_off;
} fib_edgelist;

/* Parses `len` bytes of text. `label` names the source in messages (a file
 * name). On failure *out is empty and fib_last_error() names the line.
 * Errors: FIB_E_NULL, FIB_E_INVALID (flags), FIB_E_FORMAT (malformed line,
 * NUL byte, missing column, bad weight), FIB_E_NONFINITE (NaN/inf weight),
 * FIB_E_OVERFLOW, FIB_E_NOMEM. */
int32_t fib_edgelist_parse(const char *text, size_t len, uint32_t flags,
                           const char *label, fib_edgelist *out);

/* The same with the columns' roles listed ("source,target,weight", "-" for
 * a column to ignore; NULL: from the header or by position). Every line
 * must then have that many fields. FIB_E_INVALID for a bad list. */
int32_t fib_edgelist_parse_columns(const char *text, size_t len, uint32_t flags,
                                   const char *columns, const char *label,
                                   fib_edgelist *out);

/* Reads a whole file ("-": standard input) and parses it. Errors: those of
 * fib_edgelist_parse and FIB_E_IO. */
int32_t fib_edgelist_read(const char *path, uint32_t flags, fib_edgelist *out);
int32_t fib_edgelist_read_columns(const char *path, uint32_t flags, const char *columns,
                                  fib_edgelist *out);

/* Frees the arrays and zeroes *e. NULL is a no-op. */
void fib_edgelist_clear(fib_edgelist *e);

/* The hash the reader's name table files s[0 .. len) under (its low bits
 * pick the bucket; for a name of more than 7 bytes its top 24 bits are the
 * tag kept in the slot): tests build names that collide in the table with
 * it. */
uint64_t fib_edgelist_name_hash(const char *s, int64_t len);

/* Name of node i or type t ("" when out of range). */
const char *fib_edgelist_node_name(const fib_edgelist *e, int64_t i);
const char *fib_edgelist_type_name(const fib_edgelist *e, int32_t t);

#endif
