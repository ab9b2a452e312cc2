/* Output formats of `fibration analyze`: table, JSON, CSV and DOT. The
 * formats are documented in docs/cli.md; keep the two in step. */
#include "report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void put_json_string(FILE *f, const char *s)
{
    cli_put_json_string(f, s);
}

/* The shortest "%g" form that reads back as the same double. */
void put_double(FILE *f, double v)
{
    char buf[40];
    for (int digits = 6; digits <= 17; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    fputs(buf, f);
}

static double percent(int64_t part, int64_t whole)
{
    return whole > 0 ? 100.0 * (double)part / (double)whole : 100.0;
}

/* ---- table ---- */

void report_table(FILE *f, const cli_options *o, const analysis *a)
{
    fprintf(f, "model: ");
    cli_put_clean(f, o->model);
    fprintf(f, "\ntolerance: %s", cli_tolerance_name(o->tolerance));
    if (o->tolerance == FIB_TOL_ABS)
        fprintf(f, " (eps %g)", o->eps);
    fprintf(f, "; class statistics and base by %s\n\n",
            cli_symmetry_name(o->symmetry));
    int width = 5;
    char buf[32], shown[41]; /* the column's 40 bytes, whole escapes only */
    for (int32_t i = 0; i < a->n_groups; i++) {
        int n = (int)strlen(cli_text(shown, sizeof shown,
                                     layer_label(&a->rows[i], buf, sizeof buf)));
        if (n > width)
            width = n < 40 ? n : 40;
    }
    int op_width = 6; /* "position_shift" and "select_step" are longer */
    for (int32_t i = 0; i < a->n_groups; i++)
        if ((int)strlen(cli_op_name(a->rows[i].op)) > op_width)
            op_width = (int)strlen(cli_op_name(a->rows[i].op));
    fprintf(f, "%-*s %-*s %-10s %8s %8s %8s %8s %8s %10s %8s %10s %10s", width,
            "layer", op_width, "op", "activation", "units", "fibers", "opfibers", "covers",
            "trivial", "nontrivial", "largest", "params", "base");
    fprintf(f, o->all_levels ? " %8s %6s\n" : "\n", "orbits", "chain");
    for (int32_t i = 0; i < a->n_groups; i++) {
        const layer_row *r = &a->rows[i];
        fprintf(f, "%-*.*s %-*s %-10s %8lld %8lld %8lld %8lld %8lld %10lld "
                   "%8lld %10lld %10lld",
                width, width, cli_text(shown, sizeof shown, layer_label(r, buf, sizeof buf)),
                op_width, cli_op_name(r->op),
                r->op == FIB_OP_INPUT ? "-" : cli_activation_name(r->activation),
                (long long)r->units, (long long)r->fibers,
                (long long)r->opfibers, (long long)r->covers,
                (long long)r->trivial, (long long)r->nontrivial,
                (long long)r->largest, (long long)r->params,
                (long long)r->base_params);
        if (o->all_levels)
            fprintf(f, " %8lld %6s", (long long)r->orbits,
                    r->chain == FIB_CHAIN_ALL ? "holds" : "BROKEN");
        fputc('\n', f);
    }
    char before[32], after[32];
    cli_human(before, sizeof before, (double)a->params);
    cli_human(after, sizeof after, (double)a->base_params);
    fprintf(f, "\nParams: %s => %s (%.1f%%) by %s\n", before, after,
            percent(a->base_params, a->params), cli_symmetry_name(o->symmetry));
}

/* ---- JSON ---- */

void report_json(FILE *f, const cli_options *o, const analysis *a)
{
    char buf[32];
    fprintf(f, "{\n  \"model\": ");
    put_json_string(f, o->model);
    fprintf(f, ",\n  \"symmetry\": \"%s\",\n  \"tolerance\": \"%s\",\n"
               "  \"eps\": ",
            cli_symmetry_name(o->symmetry), cli_tolerance_name(o->tolerance));
    put_double(f, o->tolerance == FIB_TOL_ABS ? o->eps : 0.0);
    fprintf(f, ",\n  \"parameters\": %lld,\n"
               "  \"base_parameters\": %lld,\n  \"layers\": [",
            (long long)a->params, (long long)a->base_params);
    for (int32_t i = 0; i < a->n_groups; i++) {
        const layer_row *r = &a->rows[i];
        fprintf(f, "%s\n    {\"index\": %d, \"name\": ", i ? "," : "", (int)i);
        put_json_string(f, layer_label(r, buf, sizeof buf));
        fprintf(f, ", \"op\": \"%s\", \"activation\": \"%s\", \"units\": %lld, "
                   "\"fibers\": %lld, \"opfibers\": %lld, \"covers\": %lld, "
                   "\"trivial\": %lld, \"nontrivial\": %lld, \"largest\": %lld, "
                   "\"parameters\": %lld, \"base_units\": %lld, "
                   "\"base_parameters\": %lld",
                cli_op_name(r->op), cli_activation_name(r->activation),
                (long long)r->units, (long long)r->fibers,
                (long long)r->opfibers, (long long)r->covers,
                (long long)r->trivial, (long long)r->nontrivial,
                (long long)r->largest, (long long)r->params,
                (long long)r->base_units, (long long)r->base_params);
        if (o->all_levels)
            fprintf(f, ", \"orbits\": %lld, \"chain_holds\": %s", (long long)r->orbits,
                    r->chain == FIB_CHAIN_ALL ? "true" : "false");
        fputc('}', f);
    }
    fprintf(f, "\n  ]\n}\n");
}

/* ---- CSV (RFC 4180) ---- */

static void put_csv_field(FILE *f, const char *s)
{
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

void report_csv(FILE *f, const cli_options *o, const analysis *a)
{
    char buf[32];
    fputs("model,index,layer,op,activation,units,fibers,opfibers,covers,"
          "symmetry,tolerance,eps,trivial,nontrivial,largest,parameters,"
          "base_units,base_parameters,orbits,chain_holds\n", f);
    for (int32_t i = 0; i < a->n_groups; i++) {
        const layer_row *r = &a->rows[i];
        put_csv_field(f, o->model);
        fprintf(f, ",%d,", (int)i);
        put_csv_field(f, layer_label(r, buf, sizeof buf));
        fprintf(f, ",%s,%s,%lld,%lld,%lld,%lld,%s,%s,",
                cli_op_name(r->op), cli_activation_name(r->activation),
                (long long)r->units, (long long)r->fibers,
                (long long)r->opfibers, (long long)r->covers,
                cli_symmetry_name(o->symmetry), cli_tolerance_name(o->tolerance));
        put_double(f, o->tolerance == FIB_TOL_ABS ? o->eps : 0.0);
        fprintf(f, ",%lld,%lld,%lld,%lld,%lld,%lld,",
                (long long)r->trivial, (long long)r->nontrivial,
                (long long)r->largest, (long long)r->params,
                (long long)r->base_units, (long long)r->base_params);
        /* Empty cells unless --symmetry all computed the orbits. */
        if (o->all_levels)
            fprintf(f, "%lld,%d\n", (long long)r->orbits, r->chain == FIB_CHAIN_ALL);
        else
            fputs(",\n", f);
    }
}

/* ---- DOT: the coloured quotient graph ---- */

static const char *const palette[] = {
    "#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3", "#fdb462",
    "#b3de69", "#fccde5", "#bc80bd", "#ccebc5", "#ffed6f", "#d9d9d9",
};

const char *dot_fill(int64_t k)
{
    return palette[k % 12];
}

/* Classes of one group as drawn: the chosen colouring's, or a single node
 * when there are more than --dot-max-classes. */
typedef struct drawn_group {
    int64_t units;
    int64_t n_nodes;   /* 1 when collapsed */
    bool collapsed;
    int64_t *node_of;  /* unit -> node */
    int64_t *size;     /* node -> units */
} drawn_group;

static void drawn_free(drawn_group *d, int32_t n)
{
    if (!d)
        return;
    for (int32_t i = 0; i < n; i++) {
        free(d[i].node_of);
        free(d[i].size);
    }
    free(d);
}

static int draw_group(const cli_options *o, const analysis *a, int32_t i,
                      drawn_group *d)
{
    const layer_row *r = &a->rows[i];
    int64_t classes = r->fibers;
    fib_coloring_num_classes(a->chosen, i, &classes);
    d->units = r->units;
    d->collapsed = classes > o->dot_max_classes;
    d->n_nodes = d->collapsed ? 1 : classes;
    d->node_of = calloc((size_t)r->units, sizeof *d->node_of);
    d->size = calloc((size_t)d->n_nodes, sizeof *d->size);
    if (!d->node_of || !d->size) {
        fprintf(stderr, "fibration: out of memory drawing the graph\n");
        return CLI_EXIT_FAILURE;
    }
    if (!d->collapsed) {
        int32_t st = fib_coloring_colors(a->chosen, i, d->node_of, r->units);
        if (st != FIB_OK)
            return cli_fail(o->model, st);
    }
    for (int64_t u = 0; u < r->units; u++)
        d->size[d->node_of[u]]++;
    return CLI_EXIT_OK;
}

static void dot_nodes(FILE *f, const analysis *a, int32_t i,
                      const drawn_group *d)
{
    char buf[32];
    const layer_row *r = &a->rows[i];
    fprintf(f, "  subgraph cluster_%d {\n    label=", (int)i);
    put_json_string(f, layer_label(r, buf, sizeof buf));
    fprintf(f, ";\n    tooltip=\"%s, %lld units, %lld classes\";\n",
            cli_op_name(r->op), (long long)r->units,
            (long long)(r->trivial + r->nontrivial));
    if (d->collapsed) {
        fprintf(f, "    g%d [shape=box, fixedsize=false, fillcolor=\"#f0f0f0\", "
                   "label=\"%lld units\\n%lld classes\"];\n",
                (int)i, (long long)r->units,
                (long long)(r->trivial + r->nontrivial));
    }
    int64_t color = 0;
    for (int64_t c = 0; c < d->n_nodes && !d->collapsed; c++) {
        int64_t s = d->size[c];
        double width = 0.25 + 0.12 * sqrt((double)s);
        fprintf(f, "    g%dc%lld [width=%.2f, label=\"%s", (int)i, (long long)c,
                width, s > 1 ? "" : " ");
        if (s > 1)
            fprintf(f, "%lld", (long long)s);
        fprintf(f, "\", fillcolor=\"%s\", tooltip=\"class %lld: %lld unit%s\"];\n",
                s > 1 ? palette[color++ % 12] : "#ffffff", (long long)c,
                (long long)s, s > 1 ? "s" : "");
    }
    fprintf(f, "  }\n");
}

static void node_name(char *buf, size_t size, int32_t g, const drawn_group *d,
                      int64_t node)
{
    if (d->collapsed)
        snprintf(buf, size, "g%d", (int)g);
    else
        snprintf(buf, size, "g%dc%lld", (int)g, (long long)node);
}

/* Edges of a dense group: the quotient weights
 * W_hat[c', c] = (1/|c'|) sum_{i in c'} sum_{k in c} W[i, k]. */
static int dot_dense_edges(FILE *f, const cli_options *o, const analysis *a,
                           int32_t i, int32_t s, const drawn_group *dg,
                           const drawn_group *ds)
{
    int64_t rows = dg->units, cols = ds->units;
    double *w = malloc((size_t)rows * (size_t)cols * sizeof *w);
    double *q = calloc((size_t)dg->n_nodes * (size_t)ds->n_nodes, sizeof *q);
    if (!w || !q) {
        free(w);
        free(q);
        fprintf(stderr, "fibration: out of memory drawing the graph\n");
        return CLI_EXIT_FAILURE;
    }
    int32_t st = fib_graph_read_dense(a->graph, i, FIB_DTYPE_F64, w, cols, NULL);
    if (st != FIB_OK) {
        free(w);
        free(q);
        return cli_fail(o->model, st);
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < cols; k++)
            q[dg->node_of[r] * ds->n_nodes + ds->node_of[k]] += w[r * cols + k];
    double max_abs = 0;
    for (int64_t c = 0; c < dg->n_nodes; c++)
        for (int64_t k = 0; k < ds->n_nodes; k++) {
            q[c * ds->n_nodes + k] /= (double)dg->size[c];
            max_abs = fmax(max_abs, fabs(q[c * ds->n_nodes + k]));
        }
    for (int64_t c = 0; c < dg->n_nodes; c++)
        for (int64_t k = 0; k < ds->n_nodes; k++) {
            double v = q[c * ds->n_nodes + k];
            if (v == 0.0)
                continue;
            char from[48], to[48];
            node_name(from, sizeof from, s, ds, k);
            node_name(to, sizeof to, i, dg, c);
            fprintf(f, "  %s -> %s [color=\"%s\", penwidth=%.2f, tooltip=\"%.6g\"];\n",
                    from, to, v > 0 ? "#1f77b4a0" : "#d62728a0",
                    0.2 + 2.8 * fabs(v) / max_abs, v);
        }
    free(w);
    free(q);
    return CLI_EXIT_OK;
}

static int dot_sum_edges(FILE *f, const cli_options *o, const analysis *a,
                         int32_t i, const drawn_group *drawn)
{
    const drawn_group *dg = &drawn[i];
    int64_t *idx = malloc((size_t)dg->units * sizeof *idx);
    if (!idx) {
        fprintf(stderr, "fibration: out of memory drawing the graph\n");
        return CLI_EXIT_FAILURE;
    }
    for (int32_t side = 0; side < 2; side++) {
        int32_t s;
        int32_t st = fib_graph_group_source(a->graph, i, side, &s);
        if (st == FIB_OK)
            st = fib_graph_read_sum(a->graph, i, side ? NULL : idx,
                                    side ? idx : NULL);
        if (st != FIB_OK) {
            free(idx);
            return cli_fail(o->model, st);
        }
        const drawn_group *ds = &drawn[s];
        bool *seen = calloc((size_t)dg->n_nodes * (size_t)ds->n_nodes, 1);
        if (!seen) {
            free(idx);
            fprintf(stderr, "fibration: out of memory drawing the graph\n");
            return CLI_EXIT_FAILURE;
        }
        for (int64_t u = 0; u < dg->units; u++) {
            int64_t c = dg->node_of[u], k = ds->node_of[idx[u]];
            if (seen[c * ds->n_nodes + k])
                continue;
            seen[c * ds->n_nodes + k] = true;
            char from[48], to[48];
            node_name(from, sizeof from, s, ds, k);
            node_name(to, sizeof to, i, dg, c);
            fprintf(f, "  %s -> %s [style=dashed, color=\"#555555\"];\n", from, to);
        }
        free(seen);
    }
    free(idx);
    return CLI_EXIT_OK;
}

int report_dot(FILE *f, const cli_options *o, const analysis *a)
{
    drawn_group *drawn = calloc((size_t)a->n_groups, sizeof *drawn);
    if (!drawn) {
        fprintf(stderr, "fibration: out of memory drawing the graph\n");
        return CLI_EXIT_FAILURE;
    }
    int rc = CLI_EXIT_OK;
    for (int32_t i = 0; i < a->n_groups && rc == CLI_EXIT_OK; i++)
        rc = draw_group(o, a, i, &drawn[i]);
    if (rc != CLI_EXIT_OK) {
        drawn_free(drawn, a->n_groups);
        return rc;
    }
    fprintf(f, "digraph fibration {\n  graph [rankdir=LR, fontname=\"Helvetica\", "
               "label=");
    char title[512];
    snprintf(title, sizeof title, "%s: %s (%s tolerance)", o->model,
             cli_symmetry_name(o->symmetry), cli_tolerance_name(o->tolerance));
    put_json_string(f, title);
    fprintf(f, "];\n  node [shape=circle, style=filled, fixedsize=true, "
               "fontname=\"Helvetica\", fontsize=9];\n"
               "  edge [arrowsize=0.4];\n");
    for (int32_t i = 0; i < a->n_groups; i++)
        dot_nodes(f, a, i, &drawn[i]);
    for (int32_t i = 0; i < a->n_groups && rc == CLI_EXIT_OK; i++) {
        int32_t s;
        if (a->rows[i].op == FIB_OP_DENSE &&
            fib_graph_group_source(a->graph, i, 0, &s) == FIB_OK)
            rc = dot_dense_edges(f, o, a, i, s, &drawn[i], &drawn[s]);
        else if (a->rows[i].op == FIB_OP_SUM)
            rc = dot_sum_edges(f, o, a, i, drawn);
    }
    fprintf(f, "}\n");
    drawn_free(drawn, a->n_groups);
    return rc;
}
