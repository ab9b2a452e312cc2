/* Model files: reading the structure metadata (every version up to
 * FIB_MODEL_VERSION) group by group — the fields every group has (op,
 * units, positions, sources, name, activation, eps, params, scalar) — and
 * the projection of a base. The blocks themselves are built by
 * model_blocks.c. */
#include "io/model_io.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef fib_model_loader loader;

static bool get_int(const fib_json *obj, const char *key, int64_t lo,
                    int64_t hi, int64_t *out)
{
    const fib_json *v = fib_json_get(obj, key);
    if (!v || v->kind != FIB_JSON_NUMBER || !v->is_integer || v->integer < lo ||
        v->integer > hi)
        return false;
    *out = v->integer;
    return true;
}

static bool present(const fib_json *v)
{
    return v && v->kind != FIB_JSON_NULL;
}

/* "sources" (an array of earlier group indices, as many as the op reads),
 * or "source" (one index) for blocks reading one group. */
static int32_t read_sources(loader *L, fib_model_group *G)
{
    int32_t arity = fib_op_arity(G->op);
    G->n_sources = arity;
    const fib_json *one = fib_json_get(G->json, "source");
    const fib_json *many = fib_json_get(G->json, "sources");
    if (!present(many) && arity == 1 && present(one)) {
        if (!get_int(G->json, "source", 0, G->index - 1, &(int64_t){0}))
            return fib_model_error(L, G->label, "'source' must be the index of "
                                   "an earlier group");
        G->sources[0] = (int32_t)one->integer;
        return FIB_OK;
    }
    if (!present(many) || many->kind != FIB_JSON_ARRAY || many->n_items != arity)
        return fib_model_error(L, G->label, "'sources' must be an array of %d "
                               "earlier group ind%s", (int)arity,
                               arity == 1 ? "ex" : "ices");
    for (int32_t s = 0; s < arity; s++) {
        const fib_json *v = &many->items[s];
        if (v->kind != FIB_JSON_NUMBER || !v->is_integer || v->integer < 0 ||
            v->integer >= G->index)
            return fib_model_error(L, G->label, "'sources' must be an array of "
                                   "%d earlier group ind%s", (int)arity,
                                   arity == 1 ? "ex" : "ices");
        G->sources[s] = (int32_t)v->integer;
    }
    return FIB_OK;
}

/* "params": an array of integers (owned by the caller through *buf). */
static int32_t read_params(loader *L, fib_model_group *G, int64_t **buf)
{
    const fib_json *p = fib_json_get(G->json, "params");
    if (!present(p))
        return FIB_OK;
    if (p->kind != FIB_JSON_ARRAY)
        return fib_model_error(L, G->label, "'params' must be an array of "
                               "integers");
    int64_t *v = fib_alloc(p->n_items > 0 ? p->n_items : 1, sizeof *v);
    if (!v)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", L->path);
    for (int64_t i = 0; i < p->n_items; i++) {
        const fib_json *x = &p->items[i];
        if (x->kind != FIB_JSON_NUMBER || !x->is_integer) {
            fib_free(v);
            return fib_model_error(L, G->label, "'params' item %lld is not an "
                                   "integer", (long long)i);
        }
        v[i] = x->integer;
    }
    *buf = v;
    G->params = v;
    G->n_params = p->n_items;
    return FIB_OK;
}

static int32_t read_scalar(loader *L, fib_model_group *G)
{
    const fib_json *s = fib_json_get(G->json, "scalar");
    if (!present(s))
        return FIB_OK;
    if (s->kind != FIB_JSON_NUMBER || !isfinite(s->number))
        return fib_model_error(L, G->label, "'scalar' must be a finite number");
    G->has_scalar = true;
    G->scalar = s->number;
    return FIB_OK;
}

/* "positions": [rows, cols]. */
static int32_t read_positions(loader *L, const fib_model_group *G, bool *has,
                              int64_t *rows, int64_t *cols)
{
    const fib_json *p = fib_json_get(G->json, "positions");
    *has = present(p);
    *rows = *cols = 1;
    if (!*has)
        return FIB_OK;
    if (p->kind != FIB_JSON_ARRAY || p->n_items != 2)
        return fib_model_error(L, G->label, "'positions' must be [rows, cols]");
    for (int i = 0; i < 2; i++) {
        const fib_json *v = &p->items[i];
        if (v->kind != FIB_JSON_NUMBER || !v->is_integer || v->integer < 1 ||
            v->integer > FIB_MAX_UNITS)
            return fib_model_error(L, G->label, "'positions' must be [rows, "
                                   "cols], each in [1, 2^40]");
    }
    *rows = p->items[0].integer;
    *cols = p->items[1].integer;
    return FIB_OK;
}

static int32_t set_attributes(loader *L, const fib_model_group *G, int32_t id,
                              bool is_input)
{
    const fib_json *name = fib_json_get(G->json, "name");
    const fib_json *act = fib_json_get(G->json, "activation");
    const fib_json *par = fib_json_get(G->json, "parameter");
    const fib_json *eps = fib_json_get(G->json, "eps");
    if (present(name)) {
        if (name->kind != FIB_JSON_STRING)
            return fib_model_error(L, G->label, "'name' must be a string");
        int32_t st = fib_graph_set_group_name(L->graph, id, name->string);
        if (st != FIB_OK)
            return fib_model_rewrap(st, L->path, G->label);
    }
    int32_t activation = FIB_ACT_LINEAR;
    double parameter = 0.0;
    if (present(act) &&
        (act->kind != FIB_JSON_STRING ||
         !fib_model_activation_from_name(act->string, &activation))) {
        char names[256];
        fib_model_activation_names(names, sizeof names);
        return fib_model_error(L, G->label, "'activation' must be one of %s", names);
    }
    if (present(par)) {
        if (par->kind != FIB_JSON_NUMBER)
            return fib_model_error(L, G->label, "'parameter' must be a number");
        parameter = par->number;
    } else if (activation == FIB_ACT_LEAKY_RELU) {
        parameter = 0.01;
    }
    if (is_input) {
        if (activation != FIB_ACT_LINEAR)
            return fib_model_error(L, G->label, "an input group has no "
                                   "activation");
    } else {
        int32_t st = fib_graph_set_activation(L->graph, id, activation, parameter);
        if (st != FIB_OK)
            return fib_model_rewrap(st, L->path, G->label);
    }
    if (present(eps)) {
        if (eps->kind != FIB_JSON_NUMBER || eps->number < 0)
            return fib_model_error(L, G->label, "'eps' must be a number >= 0");
        int32_t st = fib_graph_set_group_eps(L->graph, id, eps->number);
        if (st != FIB_OK)
            return fib_model_rewrap(st, L->path, G->label);
    }
    return FIB_OK;
}

/* The kinds a version 1 file holds (docs/model-files.md). */
static bool version_1_op(const char *name)
{
    return strcmp(name, "input") == 0 || strcmp(name, "dense") == 0 ||
           strcmp(name, "sum") == 0;
}

static void make_label(fib_model_group *G)
{
    const fib_json *name = fib_json_get(G->json, "name");
    if (name && name->kind == FIB_JSON_STRING && name->length > 0 &&
        name->length <= FIB_MAX_NAME)
        snprintf(G->label, sizeof G->label, "group %lld ('%s')",
                 (long long)G->index, name->string);
    else
        snprintf(G->label, sizeof G->label, "group %lld", (long long)G->index);
}

static int32_t add_group(loader *L, int64_t index, const fib_json *g)
{
    fib_model_group G = {.index = index, .json = g};
    snprintf(G.label, sizeof G.label, "group %lld", (long long)index);
    if (g->kind != FIB_JSON_OBJECT)
        return fib_model_error(L, G.label, "not an object");
    make_label(&G);
    const fib_json *op = fib_json_get(g, "op");
    if (!op || op->kind != FIB_JSON_STRING)
        return fib_model_error(L, G.label, "'op' is missing");
    G.op = fib_model_op_from_name(op->string);
    if (G.op < 0 || (L->version < 2 && !version_1_op(op->string)))
        return fib_model_error(L, G.label, "unknown op '%s' (%s expected)",
                               op->string,
                               L->version < 2
                                   ? "input, dense or sum in version 1"
                                   : "input, dense, sum, conv, pool, flatten, "
                                     "affine, lstm, gru, last_step, attend, "
                                     "norm, product, prepend, position_shift or "
                                     "select_step");
    if (!get_int(g, "units", 1, FIB_MAX_UNITS, &G.units))
        return fib_model_error(L, G.label, "'units' must be an integer in "
                               "[1, 2^40]");
    bool has_positions;
    int64_t rows, cols;
    int32_t st = read_positions(L, &G, &has_positions, &rows, &cols);
    if (st != FIB_OK)
        return st;
    int32_t id = -1;
    if (fib_op_arity(G.op) == 0) { /* an input: it reads no group, has no block */
        st = fib_graph_add_input_positions(L->graph, G.units, rows, cols, &id);
        if (st != FIB_OK)
            return fib_model_rewrap(st, L->path, G.label);
        return set_attributes(L, &G, id, true);
    }
    st = read_sources(L, &G);
    if (st != FIB_OK)
        return st;
    /* version 1 keeps a dense group's tensor names in the group itself */
    const fib_json *tensors = fib_json_get(g, "tensors");
    if (present(tensors)) {
        if (tensors->kind != FIB_JSON_OBJECT)
            return fib_model_error(L, G.label, "'tensors' must be an object of "
                                   "tensor names");
        G.tensors = tensors;
    } else if (L->version < 2) {
        G.tensors = g;
    }
    int64_t *params = NULL;
    st = read_params(L, &G, &params);
    if (st == FIB_OK)
        st = read_scalar(L, &G);
    if (st == FIB_OK)
        st = fib_model_add_block(L, &G, &id);
    fib_free(params);
    if (st != FIB_OK)
        return st;
    const fib_group *made = &L->graph->groups[id];
    if (made->n_units != G.units)
        return fib_model_error(L, G.label, "'units' is %lld but the block gives "
                               "%lld", (long long)G.units,
                               (long long)made->n_units);
    if (has_positions && (made->rows != rows || made->cols != cols))
        return fib_model_error(L, G.label, "'positions' is [%lld, %lld] but the "
                               "block gives [%lld, %lld]", (long long)rows,
                               (long long)cols, (long long)made->rows,
                               (long long)made->cols);
    return set_attributes(L, &G, id, false);
}

int32_t fib_model_load_structure(loader *L, const char *meta, fib_json **root_out)
{
    char context[300];
    snprintf(context, sizeof context, "%s: __metadata__ '" FIB_MODEL_META_KEY "'",
             L->path);
    fib_json *root = NULL;
    int32_t st = fib_json_parse(meta, strlen(meta), context, &root);
    if (st != FIB_OK)
        return st;
    *root_out = root;
    if (root->kind != FIB_JSON_OBJECT)
        return fib_model_error(L, NULL, "not a JSON object");
    const fib_json *format = fib_json_get(root, "format");
    if (!format || format->kind != FIB_JSON_STRING ||
        strcmp(format->string, FIB_MODEL_FORMAT) != 0)
        return fib_model_error(L, NULL, "'format' is not \"" FIB_MODEL_FORMAT "\"");
    int64_t version;
    if (!get_int(root, "version", 1, INT32_MAX, &version))
        return fib_model_error(L, NULL, "'version' must be a positive integer");
    if (version > FIB_MODEL_VERSION)
        return fib_error(FIB_E_UNSUPPORTED, "%s: structure metadata version %lld "
                         "is newer than this library reads (%d)", L->path,
                         (long long)version, FIB_MODEL_VERSION);
    L->version = version;
    const fib_json *groups = fib_json_get(root, "groups");
    if (!groups || groups->kind != FIB_JSON_ARRAY || groups->n_items == 0)
        return fib_model_error(L, NULL, "'groups' must be a non-empty array");
    if (groups->n_items > INT32_MAX)
        return fib_model_error(L, NULL, "too many groups");
    const fib_json *first = &groups->items[0];
    const fib_json *op0 = first->kind == FIB_JSON_OBJECT ? fib_json_get(first, "op")
                                                         : NULL;
    if (!op0 || op0->kind != FIB_JSON_STRING || strcmp(op0->string, "input") != 0)
        return fib_model_error(L, "group 0", "the first group must be an input");
    for (int64_t i = 0; i < groups->n_items && st == FIB_OK; i++)
        st = add_group(L, i, &groups->items[i]);
    L->projection = fib_json_get(root, "projection");
    return st;
}

/* ------------------------------------------------------------------------ */
/* The projection of a base                                                 */
/* ------------------------------------------------------------------------ */

/* A group whose classes its source's fix (a flatten: derive_projection);
 * a lift relies on it, so a file must say exactly that. */
static int32_t check_derived(loader *L, fib_partition *parts, int32_t g)
{
    const fib_group *grp = &L->graph->groups[g];
    fib_partition read = parts[g];
    int64_t *color = fib_alloc(read.n_units > 0 ? read.n_units : 1, sizeof *color);
    if (!color)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", L->path);
    parts[g] = (fib_partition){.n_units = read.n_units, .color = color};
    int32_t st = grp->ops->derive_projection(L->graph, g, parts);
    bool ok = st == FIB_OK && parts[g].n_classes == read.n_classes &&
              memcmp(color, read.color, (size_t)read.n_units * sizeof *color) == 0;
    fib_free(color);
    parts[g] = read;
    if (!ok)
        return fib_model_error(L, NULL, "projection of group %d (a %s) "
                               "must follow the projection of its source, "
                               "position by position", (int)g, grp->ops->name);
    return FIB_OK;
}

int32_t fib_model_read_projection(loader *L, fib_partition **out)
{
    const fib_json *pj = L->projection;
    int32_t n_groups = L->graph->n_groups;
    if (!pj)
        return fib_error(FIB_E_FORMAT, "%s: no projection in the structure "
                         "metadata: not a base written by fib_base_save or "
                         "`fibration compress`", L->path);
    if (pj->kind != FIB_JSON_ARRAY || pj->n_items != n_groups)
        return fib_model_error(L, NULL, "'projection' must hold one array per "
                               "group");
    fib_partition *parts = fib_calloc(n_groups, sizeof *parts);
    if (!parts)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", L->path);
    int32_t st = FIB_OK;
    int32_t done = 0;
    for (int32_t g = 0; g < n_groups && st == FIB_OK; g++) {
        const fib_json *a = &pj->items[g];
        int64_t base_units = L->graph->groups[g].n_units;
        char label[64];
        snprintf(label, sizeof label, "group %d", (int)g);
        if (a->kind != FIB_JSON_ARRAY || a->n_items < base_units ||
            a->n_items > FIB_MAX_UNITS) {
            st = fib_model_error(L, label, "projection must map at least as "
                                 "many original units as the base group has");
            break;
        }
        st = fib_partition_init(&parts[g], a->n_items);
        if (st != FIB_OK)
            break;
        done = g + 1;
        /* outputs keep their units; inputs too unless a budget merged them
         * (merge_inputs: the base reads their classes' means) */
        bool keep = fib_group_is_output(L->graph, g);
        int64_t next_new = 0;
        for (int64_t i = 0; i < a->n_items; i++) {
            const fib_json *v = &a->items[i];
            if (v->kind != FIB_JSON_NUMBER || !v->is_integer || v->integer < 0 ||
                v->integer > next_new || v->integer >= base_units ||
                (keep && v->integer != i)) {
                st = fib_model_error(L, label,
                                     keep ? "projection of an output group "
                                            "must be the identity"
                                          : "projection must number base "
                                            "units in order of first use");
                break;
            }
            if (v->integer == next_new)
                next_new++;
            parts[g].color[i] = v->integer;
        }
        if (st == FIB_OK && next_new != base_units)
            st = fib_model_error(L, label, "projection leaves a base unit "
                                 "unused");
        parts[g].n_classes = base_units;
        if (st == FIB_OK && L->graph->groups[g].ops &&
            L->graph->groups[g].ops->derive_projection)
            st = check_derived(L, parts, g);
    }
    if (st != FIB_OK) {
        for (int32_t g = 0; g < done; g++)
            fib_partition_clear(&parts[g]);
        fib_free(parts);
        return st;
    }
    *out = parts;
    return FIB_OK;
}
