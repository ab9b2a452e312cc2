/* The per-layer analysis of `fibration analyze` and its output formats. */
#ifndef FIB_CLI_REPORT_H
#define FIB_CLI_REPORT_H

#include "cli.h"

typedef struct layer_row {
    int32_t group;
    const char *name;      /* the group's name, "" if none */
    int32_t op;            /* FIB_OP_* */
    int32_t activation;    /* FIB_ACT_* */
    int64_t units;
    int64_t fibers, opfibers, covers; /* number of classes */
    int64_t trivial;       /* classes of one unit (chosen symmetry) */
    int64_t nontrivial;    /* classes of two or more units */
    int64_t largest;       /* units in the largest class */
    int64_t params;        /* weights + biases of the group's block */
    int64_t base_units;
    int64_t base_params;
    int64_t orbits;        /* automorphism orbits, -1 unless --symmetry all */
    int32_t chain;         /* FIB_CHAIN_* links that hold (with orbits) */
} layer_row;

typedef struct analysis {
    const fib_graph *graph;
    fib_coloring *fibers, *opfibers, *covers;
    const fib_coloring *chosen; /* one of the three, per --symmetry */
    fib_base *base;             /* compressed by `chosen` */
    fib_hierarchy *hierarchy;   /* --symmetry all only */
    int32_t n_groups;
    layer_row *rows;
    int64_t params, base_params;
} analysis;

/* Colours the graph three ways and compresses it. Returns an exit code. */
int analysis_run(const cli_options *o, const fib_graph *g, cli_progress *p,
                 analysis *a);
void analysis_free(analysis *a);

/* "fc1", or "group3" for an unnamed group (buf holds at least 32 bytes). */
const char *layer_label(const layer_row *r, char *buf, size_t size);

void report_table(FILE *f, const cli_options *o, const analysis *a);
void report_json(FILE *f, const cli_options *o, const analysis *a);
void report_csv(FILE *f, const cli_options *o, const analysis *a);
/* Returns an exit code (reading weights can fail). */
int report_dot(FILE *f, const cli_options *o, const analysis *a);

/* JSON string literal, escaped. */
void put_json_string(FILE *f, const char *s);
/* The shortest "%g" form that reads back as the same double. */
void put_double(FILE *f, double v);
/* Fill colour number k of the DOT palette (12 colours, repeating). */
const char *dot_fill(int64_t k);

/* --tolerance-tree: colours the graph at every tolerance of the list, made
 * to nest (fib_color_nested), and writes the tree of every hidden layer in
 * the chosen format (table, JSON or DOT). Returns an exit code. */
int report_tolerance_tree(FILE *f, const cli_options *o, const fib_graph *g,
                          cli_progress *progress);

/* --transformer: per layer the classes of the MLP's intermediate units and
 * of each head's query, key and value/output dimensions, and the residual
 * stream's classes once for all layers; exact, then every level of
 * --tolerance-tree (table or JSON). Returns an exit code. */
int report_transformer(FILE *f, const cli_options *o, const fib_graph *g,
                       cli_progress *progress);

#endif
