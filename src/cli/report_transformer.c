/* fibration analyze --transformer: the symmetries of a transformer by its
 * parts, per layer the classes of the MLP's intermediate units and of each
 * head's query, key and value/output dimensions, and once the classes of
 * the residual stream, which every layer reads and adds to; exact and over
 * the tolerance ladder of --tolerance-tree. The parts are found from the
 * graph's structure (attention cores, sums, norms), so any graph built from
 * the library's blocks is read, whatever its names. The output is
 * documented in docs/cli.md; keep the two in step. */
#include "report.h"

#include <stdlib.h>
#include <string.h>

/* The structure of one group. */
typedef struct tf_group {
    int32_t op, n_sources, is_output;
    int32_t sources[3];
    int64_t units;
} tf_group;

/* One head of an attention core: its q, k and core (value/output) units,
 * each list sorted. */
typedef struct tf_head {
    int64_t n_q, n_k, n_vo;
    int64_t *q, *k, *vo;
} tf_head;

typedef struct tf_layer {
    int32_t core, q, k, v; /* groups */
    int32_t mlp;           /* the MLP's intermediate group, -1 if none */
    int64_t n_heads;
    tf_head *heads;
} tf_layer;

typedef struct pair_index {
    int64_t a, b, unit;
} pair_index;

typedef struct run {
    int64_t first;         /* its first member */
    int64_t start, length; /* in the members sorted by (colour, position) */
} run;

typedef struct tf_model {
    int32_t n_groups;
    tf_group *groups;
    int32_t n_layers;
    tf_layer *layers;
    int32_t n_stream;      /* groups of the residual stream */
    int32_t *stream;
    int64_t stream_units;
    int32_t n_levels;      /* exact, then the ladder */
    fib_coloring **levels;
    int64_t **stream_meet; /* per level: the meet over the stream's groups */
    /* scratch of the widest group's size, for counting and listing classes */
    int64_t *scratch;
    pair_index *members;
    run *runs;
} tf_model;

static int out_of_memory(void)
{
    fprintf(stderr, "fibration: out of memory for the transformer report\n");
    return CLI_EXIT_FAILURE;
}

static void model_free(tf_model *m)
{
    for (int32_t l = 0; m->layers && l < m->n_layers; l++) {
        for (int64_t h = 0; m->layers[l].heads && h < m->layers[l].n_heads; h++) {
            free(m->layers[l].heads[h].q);
            free(m->layers[l].heads[h].k);
            free(m->layers[l].heads[h].vo);
        }
        free(m->layers[l].heads);
    }
    for (int32_t v = 0; m->levels && v < m->n_levels; v++) {
        fib_coloring_free(m->levels[v]);
        if (m->stream_meet)
            free(m->stream_meet[v]);
    }
    free(m->levels);
    free(m->stream_meet);
    free(m->scratch);
    free(m->members);
    free(m->runs);
    free(m->layers);
    free(m->stream);
    free(m->groups);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Sorts list[0 .. n) and drops repeats; returns the new length. */
static int64_t sorted_unique(int64_t *list, int64_t n)
{
    qsort(list, (size_t)n, sizeof *list, cmp_i64);
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if (k == 0 || list[k - 1] != list[i])
            list[k++] = list[i];
    return k;
}

/* The heads of an attention core from its block parameters: n_heads, per
 * head its number of pairs, per pair (q unit, k unit), per core unit (head,
 * v unit) (fibration.h, fib_graph_block_params). */
static int read_heads(const cli_options *o, const fib_graph *g, tf_layer *l, int64_t units)
{
    int64_t count = 0;
    int32_t st = fib_graph_block_params(g, l->core, NULL, 0, &count);
    if (st != FIB_OK)
        return cli_fail(o->model, st);
    int64_t *p = malloc((size_t)(count > 0 ? count : 1) * sizeof *p);
    if (!p)
        return out_of_memory();
    if ((st = fib_graph_block_params(g, l->core, p, count, &count)) != FIB_OK) {
        free(p);
        return cli_fail(o->model, st);
    }
    l->n_heads = p[0];
    l->heads = calloc((size_t)l->n_heads, sizeof *l->heads);
    int rc = l->heads ? CLI_EXIT_OK : out_of_memory();
    const int64_t *pairs = p + 1 + l->n_heads;
    for (int64_t h = 0; h < l->n_heads && rc == CLI_EXIT_OK; h++) {
        tf_head *hd = &l->heads[h];
        int64_t n = p[1 + h];
        hd->q = malloc((size_t)(n > 0 ? n : 1) * sizeof *hd->q);
        hd->k = malloc((size_t)(n > 0 ? n : 1) * sizeof *hd->k);
        hd->vo = malloc((size_t)(units > 0 ? units : 1) * sizeof *hd->vo);
        if (!hd->q || !hd->k || !hd->vo) {
            rc = out_of_memory();
            break;
        }
        for (int64_t i = 0; i < n; i++) {
            hd->q[i] = pairs[2 * i];
            hd->k[i] = pairs[2 * i + 1];
        }
        pairs += 2 * n;
        hd->n_q = sorted_unique(hd->q, n);
        hd->n_k = sorted_unique(hd->k, n);
    }
    /* per core unit (head, v unit), after the pairs */
    for (int64_t u = 0; u < units && rc == CLI_EXIT_OK; u++) {
        int64_t h = pairs[2 * u];
        if (h >= 0 && h < l->n_heads)
            l->heads[h].vo[l->heads[h].n_vo++] = u;
    }
    free(p);
    return rc;
}

/* A dense group that feeds a sum (an MLP's down projection) reading g. */
static bool read_by_projection_to_sum(const tf_model *m, int32_t g)
{
    for (int32_t d = g + 1; d < m->n_groups; d++) {
        if (m->groups[d].op != FIB_OP_DENSE || m->groups[d].sources[0] != g)
            continue;
        for (int32_t s = d + 1; s < m->n_groups; s++)
            if (m->groups[s].op == FIB_OP_SUM &&
                (m->groups[s].sources[0] == d || m->groups[s].sources[1] == d))
                return true;
    }
    return false;
}

static bool summand(const tf_model *m, int32_t g)
{
    for (int32_t s = g + 1; s < m->n_groups; s++)
        if (m->groups[s].op == FIB_OP_SUM &&
            (m->groups[s].sources[0] == g || m->groups[s].sources[1] == g))
            return true;
    return false;
}

/* A sum adding to a norm's output (post-norm: the stream arrives
 * normalised), so that the norm after it is the stream again even when a
 * head, not a later sum, reads it (BERT's last layer under its MLM head). */
static bool post_norm_sum(const tf_model *m, int32_t sum)
{
    const tf_group *t = &m->groups[sum];
    return (t->sources[0] >= 0 && m->groups[t->sources[0]].op == FIB_OP_NORM) ||
           (t->sources[1] >= 0 && m->groups[t->sources[1]].op == FIB_OP_NORM);
}

/* Whether a sum or norm reads its source unit i into unit i (a graph as
 * built; a base gathers, and its unit i is no longer dimension i of the
 * stream). */
static bool elementwise(const fib_graph *g, int32_t group, int32_t op, int64_t units)
{
    int64_t *a = malloc((size_t)(units + 1) * sizeof *a);
    int64_t *b = malloc((size_t)(units + 1) * sizeof *b);
    int64_t count = 0;
    bool same = a && b;
    if (same && op == FIB_OP_SUM)
        same = fib_graph_read_sum(g, group, a, b) == FIB_OK;
    else if (same) /* norm: its kind, then per unit the source unit */
        same = fib_graph_block_params(g, group, a, units + 1, &count) == FIB_OK &&
               count == units + 1;
    for (int64_t i = 0; same && i < units; i++)
        same = op == FIB_OP_SUM ? a[i] == i && b[i] == i : a[1 + i] == i;
    free(a);
    free(b);
    return same;
}

/* Layers are the attention cores in order; a layer's MLP is the first dense
 * or product group after its core (before the next) that a dense group
 * adding to a sum reads. The residual stream is every sum, and every norm
 * reading a sum whose output is the stream again (post-norm: a summand of
 * a later sum, the model's output, or after a sum that adds to a norm). */
static int find_parts(const cli_options *o, const fib_graph *g, tf_model *m)
{
    int32_t st = fib_graph_num_groups(g, &m->n_groups);
    if (st != FIB_OK)
        return cli_fail(o->model, st);
    m->groups = calloc((size_t)m->n_groups, sizeof *m->groups);
    m->layers = calloc((size_t)m->n_groups, sizeof *m->layers);
    m->stream = calloc((size_t)m->n_groups, sizeof *m->stream);
    if (!m->groups || !m->layers || !m->stream)
        return out_of_memory();
    for (int32_t i = 0; i < m->n_groups; i++) {
        tf_group *t = &m->groups[i];
        t->sources[0] = t->sources[1] = t->sources[2] = -1;
        st = fib_graph_group_info(g, i, &t->op, &t->units, NULL, NULL, NULL, &t->n_sources,
                                  &t->is_output);
        for (int32_t s = 0; st == FIB_OK && s < t->n_sources && s < 3; s++)
            st = fib_graph_group_source(g, i, s, &t->sources[s]);
        if (st != FIB_OK)
            return cli_fail(o->model, st);
    }
    for (int32_t i = 0; i < m->n_groups; i++) {
        const tf_group *t = &m->groups[i];
        if (t->op == FIB_OP_ATTEND) {
            tf_layer *l = &m->layers[m->n_layers++];
            l->core = i;
            l->q = t->sources[0], l->k = t->sources[1], l->v = t->sources[2];
            l->mlp = -1;
            int rc = read_heads(o, g, l, t->units);
            if (rc != CLI_EXIT_OK)
                return rc;
        } else if ((t->op == FIB_OP_DENSE || t->op == FIB_OP_PRODUCT) && m->n_layers > 0 &&
                   m->layers[m->n_layers - 1].mlp < 0 && read_by_projection_to_sum(m, i)) {
            m->layers[m->n_layers - 1].mlp = i;
        }
        bool stream = t->op == FIB_OP_SUM ||
                      (t->op == FIB_OP_NORM && m->groups[t->sources[0]].op == FIB_OP_SUM &&
                       (t->is_output || summand(m, i) || post_norm_sum(m, t->sources[0])));
        if (stream) {
            m->stream[m->n_stream++] = i;
            m->stream_units = t->units;
        }
    }
    /* sums of different widths, or gathering (a base): no one stream */
    for (int32_t s = 0; s < m->n_stream; s++)
        if (m->groups[m->stream[s]].units != m->stream_units ||
            !elementwise(g, m->stream[s], m->groups[m->stream[s]].op, m->stream_units)) {
            m->n_stream = 0;
            break;
        }
    return CLI_EXIT_OK;
}

/* ---- colourings ---- */

static int cmp_pair(const void *x, const void *y)
{
    const pair_index *p = x, *q = y;
    if (p->a != q->a)
        return (p->a > q->a) - (p->a < q->a);
    if (p->b != q->b)
        return (p->b > q->b) - (p->b < q->b);
    return (p->unit > q->unit) - (p->unit < q->unit);
}

/* meet[i] := the class of (meet[i], colors[i]), numbered from 0. */
static bool meet_with(int64_t *meet, const int64_t *colors, int64_t n)
{
    pair_index *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
    if (!p)
        return false;
    for (int64_t i = 0; i < n; i++)
        p[i] = (pair_index){meet[i], colors[i], i};
    qsort(p, (size_t)n, sizeof *p, cmp_pair);
    int64_t c = -1;
    for (int64_t i = 0; i < n; i++) {
        if (i == 0 || p[i].a != p[i - 1].a || p[i].b != p[i - 1].b)
            c++;
        meet[p[i].unit] = c;
    }
    free(p);
    return true;
}

static int color_levels(const cli_options *o, const fib_graph *g, cli_progress *progress,
                        tf_model *m)
{
    m->n_levels = 1 + o->n_levels;
    m->levels = calloc((size_t)m->n_levels, sizeof *m->levels);
    m->stream_meet = calloc((size_t)m->n_levels, sizeof *m->stream_meet);
    if (!m->levels || !m->stream_meet)
        return out_of_memory();
    fib_color_options co;
    fib_color_options_init(&co, sizeof co);
    co.symmetry = o->symmetry;
    co.progress = cli_progress_cb;
    co.progress_user = progress;
    progress->phase = "exact";
    int32_t st = fib_color(g, &co, &m->levels[0]);
    if (st == FIB_OK && o->n_levels > 0) {
        co.tolerance = o->tolerance;
        progress->phase = "tolerance ladder";
        st = fib_color_nested(g, &co, o->levels, o->n_levels, m->levels + 1);
    }
    cli_progress_end(progress);
    if (st != FIB_OK)
        return cli_fail(o->model, st);
    int64_t *colors = malloc((size_t)(m->stream_units > 0 ? m->stream_units : 1) *
                             sizeof *colors);
    if (!colors)
        return out_of_memory();
    int rc = CLI_EXIT_OK;
    for (int32_t v = 0; v < m->n_levels && rc == CLI_EXIT_OK && m->n_stream > 0; v++) {
        m->stream_meet[v] = calloc((size_t)m->stream_units, sizeof **m->stream_meet);
        if (!m->stream_meet[v]) {
            rc = out_of_memory();
            break;
        }
        for (int32_t s = 0; s < m->n_stream && rc == CLI_EXIT_OK; s++) {
            st = fib_coloring_colors(m->levels[v], m->stream[s], colors, m->stream_units);
            if (st != FIB_OK)
                rc = cli_fail(o->model, st);
            else if (!meet_with(m->stream_meet[v], colors, m->stream_units))
                rc = out_of_memory();
        }
    }
    free(colors);
    return rc;
}

/* The classes of units[0 .. n) of a group at a level: their colours
 * (colors[i] of units[i]). */
typedef struct part_classes {
    int64_t n;
    int64_t *colors;
} part_classes;

static int part_read(const cli_options *o, const tf_model *m, int32_t v, int32_t group,
                     const int64_t *units, int64_t n, int64_t *all, part_classes *out)
{
    int32_t st = fib_coloring_colors(m->levels[v], group, all, m->groups[group].units);
    if (st != FIB_OK)
        return cli_fail(o->model, st);
    out->n = n;
    out->colors = malloc((size_t)(n > 0 ? n : 1) * sizeof *out->colors);
    if (!out->colors)
        return out_of_memory();
    for (int64_t i = 0; i < n; i++)
        out->colors[i] = all[units ? units[i] : i];
    return CLI_EXIT_OK;
}

/* Number of distinct colours. */
static int64_t count_classes(const tf_model *m, const part_classes *p)
{
    memcpy(m->scratch, p->colors, (size_t)p->n * sizeof *m->scratch);
    return sorted_unique(m->scratch, p->n);
}

static int cmp_run(const void *x, const void *y)
{
    int64_t a = ((const run *)x)->first, b = ((const run *)y)->first;
    return (a > b) - (a < b);
}

/* [[i, j, ...], ...]: the classes of two or more members, by position in
 * the part (0 .. n-1), each in increasing order, classes by first member. */
static void json_merged(FILE *f, const tf_model *tm, const part_classes *p)
{
    pair_index *m = tm->members;
    run *runs = tm->runs;
    for (int64_t i = 0; i < p->n; i++)
        m[i] = (pair_index){p->colors[i], 0, i};
    qsort(m, (size_t)p->n, sizeof *m, cmp_pair);
    int64_t n_runs = 0;
    for (int64_t i = 0, j; i < p->n; i = j) {
        for (j = i + 1; j < p->n && m[j].a == m[i].a; j++)
            ;
        if (j - i >= 2)
            runs[n_runs++] = (run){m[i].unit, i, j - i};
    }
    qsort(runs, (size_t)n_runs, sizeof *runs, cmp_run);
    fputc('[', f);
    for (int64_t r = 0; r < n_runs; r++) {
        fputs(r ? ", [" : "[", f);
        for (int64_t k = 0; k < runs[r].length; k++)
            fprintf(f, k ? ", %lld" : "%lld", (long long)m[runs[r].start + k].unit);
        fputc(']', f);
    }
    fputc(']', f);
}

static bool holds_color(const part_classes *p, int64_t color)
{
    for (int64_t i = 0; i < p->n; i++)
        if (p->colors[i] == color)
            return true;
    return false;
}

/* The first head before h whose value/output units fall in the same set
 * of classes at level v (a duplicated head), -1 if none. vo holds every
 * head's levels in a row: head e at level v is vo[e * n_levels + v]. */
static int64_t same_as_head(const part_classes *vo, int32_t n_levels, int64_t h, int32_t v)
{
    const part_classes *a = &vo[h * n_levels + v];
    for (int64_t e = 0; e < h; e++) {
        const part_classes *b = &vo[e * n_levels + v];
        bool same = a->n > 0 && b->n > 0;
        for (int64_t i = 0; same && i < a->n; i++)
            same = holds_color(b, a->colors[i]);
        for (int64_t j = 0; same && j < b->n; j++)
            same = holds_color(a, b->colors[j]);
        if (same)
            return e;
    }
    return -1;
}

/* ---- one part over every level ---- */

typedef struct part {
    const char *kind;  /* "mlp", "query", "key", "value_output" */
    int32_t group;
    const int64_t *units; /* NULL: all units of the group */
    int64_t n;
} part;

/* Reads one part at every level into classes[0 .. n_levels). */
static int part_levels(const cli_options *o, const tf_model *m, const part *p, int64_t *all,
                       part_classes *classes)
{
    for (int32_t v = 0; v < m->n_levels; v++) {
        int rc = part_read(o, m, v, p->group, p->units, p->n, all, &classes[v]);
        if (rc != CLI_EXIT_OK)
            return rc;
    }
    return CLI_EXIT_OK;
}

static void parts_free(part_classes *c, int32_t n)
{
    for (int32_t v = 0; v < n; v++) {
        free(c[v].colors);
        c[v].colors = NULL;
    }
}

/* "classes": [count per level], "merged": [per level, its classes of two
 * or more members] */
static void json_levels_of(FILE *f, const tf_model *m, const part_classes *c)
{
    fputs("\"classes\": [", f);
    for (int32_t v = 0; v < m->n_levels; v++)
        fprintf(f, v ? ", %lld" : "%lld", (long long)count_classes(m, &c[v]));
    fputs("], \"merged\": [", f);
    for (int32_t v = 0; v < m->n_levels; v++) {
        if (v)
            fputs(", ", f);
        json_merged(f, m, &c[v]);
    }
    fputc(']', f);
}

static void json_part(FILE *f, const tf_model *m, const fib_graph *g, const part *p,
                      const part_classes *c)
{
    fprintf(f, "{\"group\": ");
    put_json_string(f, fib_graph_group_name(g, p->group));
    fprintf(f, ", \"units\": %lld, ", (long long)p->n);
    json_levels_of(f, m, c);
    fputc('}', f);
}

static void table_row(FILE *f, const tf_model *m, const char *layer, const char *what,
                      int64_t units, const part_classes *c, const char *note)
{
    fprintf(f, "%-6s %-16s %8lld", layer, what, (long long)units);
    for (int32_t v = 0; v < m->n_levels; v++)
        fprintf(f, " %10lld", (long long)count_classes(m, &c[v]));
    if (note && note[0])
        fprintf(f, "  %s", note);
    fputc('\n', f);
}

/* ---- the report ---- */

static void level_header(FILE *f, const cli_options *o, const tf_model *m)
{
    for (int32_t v = 0; v < m->n_levels; v++) {
        char head[40];
        if (v == 0)
            snprintf(head, sizeof head, "exact");
        else
            snprintf(head, sizeof head, "eps=%g", o->levels[v - 1]);
        fprintf(f, " %10s", head);
    }
    fputc('\n', f);
}

static void json_levels(FILE *f, const cli_options *o, const tf_model *m)
{
    fputs("\"levels\": [{\"tolerance\": \"exact\", \"eps\": 0}", f);
    for (int32_t v = 1; v < m->n_levels; v++) {
        fprintf(f, ", {\"tolerance\": \"%s\", \"eps\": ", cli_tolerance_name(o->tolerance));
        put_double(f, o->levels[v - 1]);
        fputc('}', f);
    }
    fputc(']', f);
}

static int write_stream(FILE *f, const cli_options *o, const fib_graph *g, const tf_model *m)
{
    part_classes c[CLI_MAX_LEVELS + 1];
    for (int32_t v = 0; v < m->n_levels; v++)
        c[v] = (part_classes){m->stream_units, m->stream_meet[v]};
    if (o->format == FORMAT_JSON) {
        fprintf(f, "  \"residual_stream\": {\"units\": %lld, \"groups\": [",
                (long long)m->stream_units);
        for (int32_t s = 0; s < m->n_stream; s++) {
            if (s)
                fputs(", ", f);
            put_json_string(f, fib_graph_group_name(g, m->stream[s]));
        }
        fputs("], ", f);
        json_levels_of(f, m, c);
        fputs("},\n", f);
        return CLI_EXIT_OK;
    }
    fprintf(f, "residual stream: one group shared by all layers (the meet of its %d "
               "sums and norms)\n", (int)m->n_stream);
    table_row(f, m, "all", "residual", m->stream_units, c, "");
    fputc('\n', f);
    return CLI_EXIT_OK;
}

static int write_layer(FILE *f, const cli_options *o, const fib_graph *g, const tf_model *m,
                       int32_t index, int64_t *all)
{
    const tf_layer *l = &m->layers[index];
    part_classes c[CLI_MAX_LEVELS + 1];
    memset(c, 0, sizeof c);
    char layer[32];
    snprintf(layer, sizeof layer, "%d", (int)index);
    int rc = CLI_EXIT_OK;
    bool json = o->format == FORMAT_JSON;
    if (json) {
        fprintf(f, "    {\"layer\": %d, \"attention\": ", (int)index);
        put_json_string(f, fib_graph_group_name(g, l->core));
        fprintf(f, ", \"n_heads\": %lld,\n     \"mlp\": ", (long long)l->n_heads);
    }
    if (l->mlp >= 0) {
        part p = {"mlp", l->mlp, NULL, m->groups[l->mlp].units};
        rc = part_levels(o, m, &p, all, c);
        if (rc == CLI_EXIT_OK && json)
            json_part(f, m, g, &p, c);
        else if (rc == CLI_EXIT_OK)
            table_row(f, m, layer, "mlp", p.n, c, fib_graph_group_name(g, l->mlp));
        parts_free(c, m->n_levels);
    } else if (json) {
        fputs("null", f);
    }
    if (json)
        fputs(",\n     \"heads\": [", f);
    /* the value/output classes of every head at every level, for
     * same_as_head */
    part_classes *vo = calloc((size_t)(l->n_heads * m->n_levels + 1), sizeof *vo);
    if (!vo)
        return out_of_memory();
    for (int64_t h = 0; h < l->n_heads && rc == CLI_EXIT_OK; h++) {
        const tf_head *hd = &l->heads[h];
        part p = {"value_output", l->core, hd->vo, hd->n_vo};
        rc = part_levels(o, m, &p, all, vo + h * m->n_levels);
    }
    for (int64_t h = 0; h < l->n_heads && rc == CLI_EXIT_OK; h++) {
        const tf_head *hd = &l->heads[h];
        const part parts[3] = {{"query", l->q, hd->q, hd->n_q}, {"key", l->k, hd->k, hd->n_k},
                               {"value_output", l->core, hd->vo, hd->n_vo}};
        if (json)
            fprintf(f, "%s\n      {\"head\": %lld", h ? "," : "", (long long)h);
        for (int i = 0; i < 3 && rc == CLI_EXIT_OK; i++) {
            part_classes *pc = c;
            if (i == 2)
                pc = vo + h * m->n_levels;
            else
                rc = part_levels(o, m, &parts[i], all, c);
            if (rc != CLI_EXIT_OK) {
                parts_free(c, m->n_levels);
                break;
            }
            if (json) {
                fprintf(f, ", \"%s\": ", parts[i].kind);
                json_part(f, m, g, &parts[i], pc);
            } else {
                char what[64], note[64] = "";
                snprintf(what, sizeof what, "head %lld %s", (long long)h,
                         i == 0 ? "q" : i == 1 ? "k" : "v/o");
                int64_t e = i == 2 ? same_as_head(vo, m->n_levels, h, 0) : -1;
                if (e >= 0)
                    snprintf(note, sizeof note, "same as head %lld (exact)", (long long)e);
                table_row(f, m, layer, what, parts[i].n, pc, note);
            }
            if (i < 2)
                parts_free(c, m->n_levels);
        }
        if (json && rc == CLI_EXIT_OK) {
            fputs(", \"same_as_head\": [", f);
            for (int32_t v = 0; v < m->n_levels; v++) {
                int64_t e = same_as_head(vo, m->n_levels, h, v);
                if (e >= 0)
                    fprintf(f, v ? ", %lld" : "%lld", (long long)e);
                else
                    fputs(v ? ", null" : "null", f);
            }
            fputs("]}", f);
        }
    }
    for (int64_t h = 0; h < l->n_heads; h++)
        parts_free(vo + h * m->n_levels, m->n_levels);
    free(vo);
    if (json && rc == CLI_EXIT_OK)
        fprintf(f, "\n     ]}%s\n", index + 1 < m->n_layers ? "," : "");
    return rc;
}

int report_transformer(FILE *f, const cli_options *o, const fib_graph *g,
                       cli_progress *progress)
{
    tf_model m;
    memset(&m, 0, sizeof m);
    int rc = find_parts(o, g, &m);
    if (rc == CLI_EXIT_OK && m.n_layers == 0) {
        fprintf(stderr, "fibration: %s: no attention block: --transformer reports "
                        "transformers (attention layers with their MLPs and a "
                        "residual stream)\n", o->model);
        rc = CLI_EXIT_FORMAT;
    }
    if (rc == CLI_EXIT_OK)
        rc = color_levels(o, g, progress, &m);
    int64_t widest = 1;
    for (int32_t i = 0; m.groups && i < m.n_groups; i++)
        if (m.groups[i].units > widest)
            widest = m.groups[i].units;
    int64_t *all = rc == CLI_EXIT_OK ? malloc((size_t)widest * sizeof *all) : NULL;
    m.scratch = malloc((size_t)widest * sizeof *m.scratch);
    m.members = malloc((size_t)widest * sizeof *m.members);
    m.runs = malloc((size_t)widest * sizeof *m.runs);
    if (rc == CLI_EXIT_OK && (!all || !m.scratch || !m.members || !m.runs))
        rc = out_of_memory();
    if (rc == CLI_EXIT_OK) {
        if (o->format == FORMAT_JSON) {
            fputs("{\n  \"model\": ", f);
            put_json_string(f, o->model);
            fprintf(f, ",\n  \"symmetry\": \"%s\",\n  ", cli_symmetry_name(o->symmetry));
            json_levels(f, o, &m);
            fputs(",\n", f);
        } else {
            fputs("model: ", f);
            cli_put_clean(f, o->model);
            fprintf(f, "\ntransformer report: %s; classes at every level (exact, then the "
                       "%s ladder)\n\n", cli_symmetry_name(o->symmetry),
                    m.n_levels > 1 ? cli_tolerance_name(o->tolerance) : "no");
            fprintf(f, "%-6s %-16s %8s", "layer", "part", "units");
            level_header(f, o, &m);
        }
    }
    if (rc == CLI_EXIT_OK && m.n_stream > 0)
        rc = write_stream(f, o, g, &m);
    else if (rc == CLI_EXIT_OK && o->format == FORMAT_JSON)
        fputs("  \"residual_stream\": null,\n", f);
    if (rc == CLI_EXIT_OK && o->format == FORMAT_JSON)
        fputs("  \"layers\": [\n", f);
    for (int32_t l = 0; l < m.n_layers && rc == CLI_EXIT_OK; l++)
        rc = write_layer(f, o, g, &m, l, all);
    if (rc == CLI_EXIT_OK && o->format == FORMAT_JSON)
        fputs("  ]\n}\n", f);
    free(all);
    model_free(&m);
    return rc;
}
