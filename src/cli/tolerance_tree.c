/* fibration analyze --tolerance-tree: the tolerance ladder of every
 * hidden layer as the tolerance grows (fib_color_nested: the levels nest,
 * a class never splits), as a table of class counts, as JSON (the shape
 * fibration.torch.tolerance_tree writes) or as a DOT tree. The formats are
 * documented in docs/cli.md; keep the two in step. */
#include "report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One hidden layer: per level its class count, the units of every class,
 * and (levels t > 0) the classes of level t - 1 inside every class. */
typedef struct tree_layer {
    int32_t group, op;
    const char *label;
    char fallback[32];
    int64_t units;
    int64_t *n_classes;
    lists *members;
    lists *children; /* [0] unused */
} tree_layer;

typedef struct tree {
    int32_t n_levels;
    const double *eps;
    int32_t n_layers;
    tree_layer *layers;
} tree;

static void tree_free(tree *t)
{
    for (int32_t i = 0; t->layers && i < t->n_layers; i++) {
        tree_layer *l = &t->layers[i];
        for (int32_t v = 0; v < t->n_levels; v++) {
            if (l->members)
                lists_free(&l->members[v]);
            if (l->children)
                lists_free(&l->children[v]);
        }
        free(l->n_classes);
        free(l->members);
        free(l->children);
    }
    free(t->layers);
}

static int out_of_memory(void)
{
    fprintf(stderr, "fibration: out of memory for the tolerance tree\n");
    return CLI_EXIT_FAILURE;
}

/* A JSON key and DOT label for the layer: its name, or "groupN" when it
 * has none or an earlier layer has the same one. */
static void name_layer(const fib_graph *g, tree *t, tree_layer *l)
{
    snprintf(l->fallback, sizeof l->fallback, "group%d", (int)l->group);
    const char *name = fib_graph_group_name(g, l->group);
    l->label = name && name[0] ? name : l->fallback;
    for (int32_t i = 0; i < t->n_layers; i++)
        if (strcmp(t->layers[i].label, l->label) == 0)
            l->label = l->fallback;
}

/* Reads the levels of one group into l. Returns an exit code. */
static int read_layer(const cli_options *o, fib_coloring *const *levels, int32_t n_levels,
                      tree_layer *l)
{
    l->n_classes = calloc((size_t)n_levels, sizeof *l->n_classes);
    l->members = calloc((size_t)n_levels, sizeof *l->members);
    l->children = calloc((size_t)n_levels, sizeof *l->children);
    int64_t *colors = malloc((size_t)l->units * sizeof *colors);
    int64_t *parent = malloc((size_t)l->units * sizeof *parent);
    int rc = l->n_classes && l->members && l->children && colors && parent
                 ? CLI_EXIT_OK : out_of_memory();
    for (int32_t v = 0; v < n_levels && rc == CLI_EXIT_OK; v++) {
        int32_t st = fib_coloring_num_classes(levels[v], l->group, &l->n_classes[v]);
        if (st == FIB_OK)
            st = fib_coloring_colors(levels[v], l->group, colors, l->units);
        if (st != FIB_OK) {
            rc = cli_fail(o->model, st);
            break;
        }
        if (!lists_build(colors, l->units, l->n_classes[v], &l->members[v]))
            rc = out_of_memory();
        /* The class of level v holding each class of level v - 1: the class
         * of its first unit (the levels nest). */
        for (int64_t c = 0; v > 0 && rc == CLI_EXIT_OK && c < l->n_classes[v - 1]; c++)
            parent[c] = colors[l->members[v - 1].items[l->members[v - 1].start[c]]];
        if (v > 0 && rc == CLI_EXIT_OK &&
            !lists_build(parent, l->n_classes[v - 1], l->n_classes[v], &l->children[v]))
            rc = out_of_memory();
    }
    free(colors);
    free(parent);
    return rc;
}

/* Colours the graph at every level and reads every hidden group. */
static int tree_build(const cli_options *o, const fib_graph *g, cli_progress *progress,
                      tree *t)
{
    memset(t, 0, sizeof *t);
    t->n_levels = o->n_levels;
    t->eps = o->levels;
    fib_coloring *levels[CLI_MAX_LEVELS] = {NULL};
    fib_color_options co;
    fib_color_options_init(&co, sizeof co);
    co.symmetry = o->symmetry;
    co.tolerance = o->tolerance;
    co.progress = cli_progress_cb;
    co.progress_user = progress;
    progress->phase = "tolerance tree";
    int32_t n_groups = 0;
    int32_t st = fib_graph_num_groups(g, &n_groups);
    if (st == FIB_OK)
        st = fib_color_nested(g, &co, o->levels, o->n_levels, levels);
    cli_progress_end(progress);
    if (st != FIB_OK)
        return cli_fail(o->model, st);
    int rc = CLI_EXIT_OK;
    t->layers = calloc((size_t)n_groups, sizeof *t->layers);
    if (!t->layers)
        rc = out_of_memory();
    for (int32_t i = 0; i < n_groups && rc == CLI_EXIT_OK; i++) {
        tree_layer l;
        memset(&l, 0, sizeof l);
        int32_t is_output = 0;
        st = fib_graph_group_info(g, i, &l.op, &l.units, NULL, NULL, NULL, NULL,
                                  &is_output);
        if (st != FIB_OK) {
            rc = cli_fail(o->model, st);
            break;
        }
        if (l.op == FIB_OP_INPUT || is_output)
            continue;
        l.group = i;
        name_layer(g, t, &l);
        t->layers[t->n_layers++] = l;
        rc = read_layer(o, levels, o->n_levels, &t->layers[t->n_layers - 1]);
    }
    for (int32_t v = 0; v < o->n_levels; v++)
        fib_coloring_free(levels[v]);
    return rc;
}

/* ---- table ---- */

static void tree_table(FILE *f, const cli_options *o, const tree *t)
{
    fprintf(f, "model: ");
    cli_put_clean(f, o->model);
    fprintf(f, "\ntolerance tree: %s, %s; classes per level (they nest: a class never "
               "splits as eps grows)\n\n",
            cli_symmetry_name(o->symmetry), cli_tolerance_name(o->tolerance));
    int width = 5;
    char shown[41]; /* the column's 40 bytes, whole escapes only */
    for (int32_t i = 0; i < t->n_layers; i++) {
        int n = (int)strlen(cli_text(shown, sizeof shown, t->layers[i].label));
        if (n > width)
            width = n < 40 ? n : 40;
    }
    fprintf(f, "%-*s %-6s %8s", width, "layer", "op", "units");
    for (int32_t v = 0; v < t->n_levels; v++) {
        char head[40];
        snprintf(head, sizeof head, "eps=%g", t->eps[v]);
        fprintf(f, " %10s", head);
    }
    fputc('\n', f);
    for (int32_t i = 0; i < t->n_layers; i++) {
        const tree_layer *l = &t->layers[i];
        fprintf(f, "%-*.*s %-6s %8lld", width, width, cli_text(shown, sizeof shown, l->label),
                cli_op_name(l->op),
                (long long)l->units);
        for (int32_t v = 0; v < t->n_levels; v++)
            fprintf(f, " %10lld", (long long)l->n_classes[v]);
        fputc('\n', f);
    }
}

/* ---- JSON ---- */

static void put_eps_list(FILE *f, const tree *t)
{
    fputc('[', f);
    for (int32_t v = 0; v < t->n_levels; v++) {
        if (v)
            fputs(", ", f);
        put_double(f, t->eps[v]);
    }
    fputc(']', f);
}

/* Class c of level v and, below it, the classes it holds down to the
 * units: {"eps", "class", "members", "children"}; units are {"unit": u}. */
static void json_class(FILE *f, const tree *t, const tree_layer *l, int32_t v, int64_t c,
                       int depth)
{
    const lists *m = &l->members[v];
    fprintf(f, "%*s{\"eps\": ", 2 * depth, "");
    put_double(f, t->eps[v]);
    fprintf(f, ", \"class\": %lld, \"members\": [", (long long)c);
    for (int64_t k = m->start[c]; k < m->start[c + 1]; k++)
        fprintf(f, "%s%lld", k > m->start[c] ? ", " : "", (long long)m->items[k]);
    fputs("], \"children\": [", f);
    if (v == 0) {
        for (int64_t k = m->start[c]; k < m->start[c + 1]; k++)
            fprintf(f, "%s{\"unit\": %lld}", k > m->start[c] ? ", " : "",
                    (long long)m->items[k]);
        fputs("]}", f);
        return;
    }
    const lists *ch = &l->children[v];
    for (int64_t k = ch->start[c]; k < ch->start[c + 1]; k++) {
        fputs(k > ch->start[c] ? ",\n" : "\n", f);
        json_class(f, t, l, v - 1, ch->items[k], depth + 1);
    }
    fprintf(f, "\n%*s]}", 2 * depth, "");
}

static void tree_json(FILE *f, const cli_options *o, const tree *t)
{
    fprintf(f, "{\n  \"model\": ");
    put_json_string(f, o->model);
    fprintf(f, ",\n  \"symmetry\": \"%s\",\n  \"tolerance\": \"%s\",\n  \"eps\": ",
            cli_symmetry_name(o->symmetry), cli_tolerance_name(o->tolerance));
    put_eps_list(f, t);
    fprintf(f, ",\n  \"layers\": {");
    int32_t top = t->n_levels - 1;
    for (int32_t i = 0; i < t->n_layers; i++) {
        const tree_layer *l = &t->layers[i];
        fprintf(f, "%s\n    ", i ? "," : "");
        put_json_string(f, l->label);
        fprintf(f, ": {\"group\": %d, \"op\": \"%s\", \"units\": %lld, \"levels\": ",
                (int)l->group, cli_op_name(l->op), (long long)l->units);
        put_eps_list(f, t);
        fprintf(f, ", \"classes_per_level\": [");
        for (int32_t v = 0; v < t->n_levels; v++)
            fprintf(f, "%s%lld", v ? ", " : "", (long long)l->n_classes[v]);
        fprintf(f, "], \"classes\": [");
        for (int64_t c = 0; c < l->n_classes[top]; c++) {
            fputs(c ? ",\n" : "\n", f);
            json_class(f, t, l, top, c, 3);
        }
        fprintf(f, "\n    ]}");
    }
    fprintf(f, "\n  }\n}\n");
}

/* ---- DOT ---- */

/* One cluster per layer: leaves (units, or per first-level class one box
 * counting its units when the layer is wider than --dot-max-classes), one
 * node per class per level, edges from each node to the class of the next
 * level that holds it. */
static void dot_layer(FILE *f, const cli_options *o, const tree *t, const tree_layer *l)
{
    int g = (int)l->group;
    bool collapsed = l->units > o->dot_max_classes;
    fprintf(f, "  subgraph cluster_%d {\n    label=", g);
    put_json_string(f, l->label);
    fprintf(f, ";\n    tooltip=\"%s, %lld units; classes per level", cli_op_name(l->op),
            (long long)l->units);
    for (int32_t v = 0; v < t->n_levels; v++)
        fprintf(f, "%s%lld", v ? ", " : " ", (long long)l->n_classes[v]);
    fprintf(f, "%s\";\n", collapsed ? "; units counted per first-level class" : "");
    const lists *first = &l->members[0];
    if (collapsed) {
        for (int64_t c = 0; c < l->n_classes[0]; c++) {
            int64_t s = first->start[c + 1] - first->start[c];
            fprintf(f, "    g%dn%lld [shape=box, fixedsize=false, fillcolor=\"#f0f0f0\", "
                       "label=\"%lld unit%s\"];\n",
                    g, (long long)c, (long long)s, s > 1 ? "s" : "");
        }
    } else {
        for (int64_t u = 0; u < l->units; u++)
            fprintf(f, "    g%du%lld [shape=plaintext, style=solid, fixedsize=false, "
                       "label=\"%lld\", tooltip=\"unit %lld\"];\n",
                    g, (long long)u, (long long)u, (long long)u);
    }
    for (int32_t v = 0; v < t->n_levels; v++) {
        const lists *m = &l->members[v];
        for (int64_t c = 0; c < l->n_classes[v]; c++) {
            int64_t s = m->start[c + 1] - m->start[c];
            fprintf(f, "    g%dl%dc%lld [width=%.2f, label=\"", g, (int)v, (long long)c,
                    0.25 + 0.12 * sqrt((double)s));
            if (s > 1)
                fprintf(f, "%lld", (long long)s);
            else
                fputc(' ', f);
            fprintf(f, "\", fillcolor=\"%s\", tooltip=\"eps %g, class %lld: %lld unit%s\"];\n",
                    dot_fill(v), t->eps[v], (long long)c, (long long)s, s > 1 ? "s" : "");
        }
    }
    /* Leaves into the first level, then each level into the next. */
    for (int64_t c = 0; c < l->n_classes[0]; c++) {
        if (collapsed) {
            fprintf(f, "    g%dn%lld -> g%dl0c%lld;\n", g, (long long)c, g, (long long)c);
            continue;
        }
        for (int64_t k = first->start[c]; k < first->start[c + 1]; k++)
            fprintf(f, "    g%du%lld -> g%dl0c%lld;\n", g, (long long)first->items[k], g,
                    (long long)c);
    }
    for (int32_t v = 1; v < t->n_levels; v++) {
        const lists *ch = &l->children[v];
        for (int64_t c = 0; c < l->n_classes[v]; c++)
            for (int64_t k = ch->start[c]; k < ch->start[c + 1]; k++)
                fprintf(f, "    g%dl%dc%lld -> g%dl%dc%lld;\n", g, (int)(v - 1),
                        (long long)ch->items[k], g, (int)v, (long long)c);
    }
    fprintf(f, "  }\n");
}

static void tree_dot(FILE *f, const cli_options *o, const tree *t)
{
    char title[4096];
    int n = snprintf(title, sizeof title, "%s: %s, %s tolerance, eps", o->model,
                     cli_symmetry_name(o->symmetry), cli_tolerance_name(o->tolerance));
    for (int32_t v = 0; v < t->n_levels && n > 0 && (size_t)n < sizeof title; v++)
        n += snprintf(title + n, sizeof title - (size_t)n, "%s%g", v ? ", " : " ",
                      t->eps[v]);
    fprintf(f, "digraph tolerance_tree {\n  graph [rankdir=BT, fontname=\"Helvetica\", "
               "label=");
    put_json_string(f, title);
    fprintf(f, "];\n  node [shape=circle, style=filled, fixedsize=true, "
               "fontname=\"Helvetica\", fontsize=9];\n"
               "  edge [arrowsize=0.4, color=\"#777777\"];\n");
    for (int32_t i = 0; i < t->n_layers; i++)
        dot_layer(f, o, t, &t->layers[i]);
    fprintf(f, "}\n");
}

int report_tolerance_tree(FILE *f, const cli_options *o, const fib_graph *g,
                          cli_progress *progress)
{
    tree t;
    int rc = tree_build(o, g, progress, &t);
    if (rc == CLI_EXIT_OK) {
        switch (o->format) {
        case FORMAT_JSON: tree_json(f, o, &t); break;
        case FORMAT_DOT: tree_dot(f, o, &t); break;
        default: tree_table(f, o, &t); break;
        }
    }
    tree_free(&t);
    return rc;
}
