/* Model files: fib_graph <-> safetensors with our structure metadata, and
 * the nn.Sequential state-dict fallback. The format is documented in
 * docs/model-files.md; keep the two in step. */
#include "internal.h"
#include "io/json.h"
#include "io/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define META_KEY "fibration"
#define FORMAT_NAME "fibration-model"
#define FORMAT_VERSION 1

static const struct {
    const char *name;
    int32_t id;
} activation_names[] = {
    {"linear", FIB_ACT_LINEAR},       {"relu", FIB_ACT_RELU},
    {"leaky_relu", FIB_ACT_LEAKY_RELU}, {"tanh", FIB_ACT_TANH},
    {"sigmoid", FIB_ACT_SIGMOID},     {"gelu", FIB_ACT_GELU},
    {"silu", FIB_ACT_SILU},
};
#define N_ACTIVATIONS (sizeof activation_names / sizeof activation_names[0])

static const char *activation_to_name(int32_t id)
{
    for (size_t i = 0; i < N_ACTIVATIONS; i++)
        if (activation_names[i].id == id)
            return activation_names[i].name;
    return NULL;
}

static bool activation_from_name(const char *name, int32_t *id)
{
    for (size_t i = 0; i < N_ACTIVATIONS; i++)
        if (strcmp(activation_names[i].name, name) == 0) {
            *id = activation_names[i].id;
            return true;
        }
    return false;
}

int32_t fib_load_options_init(fib_load_options *o, size_t struct_size)
{
    if (!o)
        return fib_error(FIB_E_NULL, "fib_load_options_init: options is NULL");
    if (struct_size < sizeof *o)
        return fib_error(FIB_E_INVALID,
                         "fib_load_options_init: struct_size %zu is smaller than %zu",
                         struct_size, sizeof *o);
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->activation = FIB_ACT_RELU;
    o->copy = 0;
    o->parameter = 0.01;
    return FIB_OK;
}

/* Re-raises the last error with the file (and what was being done) in
 * front. Library-side shape problems of a file are format errors. */
static int32_t rewrap(int32_t status, const char *path, const char *what)
{
    char inner[400];
    snprintf(inner, sizeof inner, "%s", fib_last_error());
    if (status == FIB_E_SHAPE || status == FIB_E_RANGE ||
        status == FIB_E_INVALID || status == FIB_E_OVERFLOW)
        status = FIB_E_FORMAT;
    return fib_error(status, "%s: %s: %s", path, what, inner);
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct loader {
    const char *path;
    fib_st_file *file;
    fib_graph *graph;
    bool copy;
    const fib_json *projection; /* "projection" of the metadata, if any */
} loader;

static void release_file(void *handle)
{
    fib_st_close(handle);
}

static void shape_text(const fib_st_tensor *t, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int32_t d = 0; d < t->n_dims && n < size; d++)
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", d ? ", " : "",
                              (long long)t->shape[d]);
    if (n < size)
        snprintf(buf + n, size - n, "]");
}

/* Adds a dense group over `source` from weight (units x n_in) and optional
 * bias (units) tensors. `label` names the group in messages. */
static int32_t add_dense(loader *L, const char *label, int32_t source,
                         int64_t units, const fib_st_tensor *w,
                         const fib_st_tensor *b, int32_t *id)
{
    int64_t n_in;
    int32_t st = fib_graph_group_info(L->graph, source, NULL, &n_in, NULL, NULL,
                                      NULL, NULL, NULL);
    if (st != FIB_OK)
        return rewrap(st, L->path, label);
    char shape[128];
    shape_text(w, shape, sizeof shape);
    if (w->n_dims != 2 || w->shape[0] != units || w->shape[1] != n_in)
        return fib_error(FIB_E_FORMAT,
                         "%s: %s: weight tensor '%s' has shape %s, expected "
                         "[%lld, %lld]", L->path, label, w->name, shape,
                         (long long)units, (long long)n_in);
    if (b) {
        shape_text(b, shape, sizeof shape);
        if (b->n_dims != 1 || b->shape[0] != units)
            return fib_error(FIB_E_FORMAT,
                             "%s: %s: bias tensor '%s' has shape %s, expected "
                             "[%lld]", L->path, label, b->name, shape,
                             (long long)units);
    }
    uint32_t flags = L->copy ? FIB_COPY : 0u;
    if (!b || b->dtype == w->dtype) {
        st = fib_graph_add_dense(L->graph, source, units, w->dtype, w->data, n_in,
                                 b ? b->data : NULL, flags, id);
    } else {
        /* weight and bias of different dtypes: copy both as float64 */
        double *wd = fib_alloc(w->n_elements, sizeof *wd);
        double *bd = fib_alloc(units, sizeof *bd);
        if (!wd || !bd) {
            st = fib_error(FIB_E_NOMEM, "out of memory");
        } else {
            for (int64_t i = 0; i < w->n_elements; i++)
                wd[i] = fib_load(w->dtype, w->data, i);
            for (int64_t i = 0; i < units; i++)
                bd[i] = fib_load(b->dtype, b->data, i);
            st = fib_graph_add_dense(L->graph, source, units, FIB_DTYPE_F64, wd,
                                     n_in, bd, FIB_COPY, id);
        }
        fib_free(wd);
        fib_free(bd);
    }
    return st == FIB_OK ? FIB_OK : rewrap(st, L->path, label);
}

static int32_t meta_error(const loader *L, int64_t group, const char *problem)
{
    if (group < 0)
        return fib_error(FIB_E_FORMAT, "%s: structure metadata: %s", L->path,
                         problem);
    return fib_error(FIB_E_FORMAT, "%s: structure metadata: group %lld: %s",
                     L->path, (long long)group, problem);
}

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

static const fib_st_tensor *named_tensor(loader *L, const fib_json *g,
                                         int64_t index, const char *key,
                                         bool required, int32_t *st)
{
    const fib_json *v = fib_json_get(g, key);
    *st = FIB_OK;
    if (!v || v->kind == FIB_JSON_NULL) {
        if (required)
            *st = fib_error(FIB_E_FORMAT, "%s: structure metadata: group %lld: "
                            "'%s' (a tensor name) is missing", L->path,
                            (long long)index, key);
        return NULL;
    }
    if (v->kind != FIB_JSON_STRING) {
        *st = fib_error(FIB_E_FORMAT, "%s: structure metadata: group %lld: '%s' "
                        "must be a tensor name (a string)", L->path,
                        (long long)index, key);
        return NULL;
    }
    const fib_st_tensor *t = fib_st_find(L->file, v->string);
    if (!t)
        *st = fib_error(FIB_E_FORMAT, "%s: structure metadata: group %lld: %s "
                        "tensor '%s' is not in the file", L->path,
                        (long long)index, key, v->string);
    return t;
}

/* Reads one "gather" index array of a sum group. */
static int32_t read_gather(loader *L, int64_t index, const fib_json *arr,
                           int64_t units, int64_t source_width, int64_t **out)
{
    if (!arr || arr->kind != FIB_JSON_ARRAY || arr->n_items != units)
        return meta_error(L, index, "'gather' must hold two arrays of 'units' "
                          "unit indices");
    int64_t *idx = fib_alloc(units, sizeof *idx);
    if (!idx)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", L->path);
    for (int64_t i = 0; i < units; i++) {
        const fib_json *v = &arr->items[i];
        if (v->kind != FIB_JSON_NUMBER || !v->is_integer || v->integer < 0 ||
            v->integer >= source_width) {
            fib_free(idx);
            return meta_error(L, index, "'gather' index out of range of its "
                              "source group");
        }
        idx[i] = v->integer;
    }
    *out = idx;
    return FIB_OK;
}

static int32_t add_sum(loader *L, int64_t index, const fib_json *g,
                       int64_t units, int32_t *id)
{
    const fib_json *src = fib_json_get(g, "sources");
    if (!src || src->kind != FIB_JSON_ARRAY || src->n_items != 2)
        return meta_error(L, index, "'sources' must be an array of two earlier "
                          "group indices");
    int64_t s[2], width[2];
    for (int i = 0; i < 2; i++) {
        const fib_json *v = &src->items[i];
        if (v->kind != FIB_JSON_NUMBER || !v->is_integer || v->integer < 0 ||
            v->integer >= index)
            return meta_error(L, index, "'sources' must be an array of two "
                              "earlier group indices");
        s[i] = v->integer;
        fib_graph_group_info(L->graph, (int32_t)s[i], NULL, &width[i], NULL, NULL,
                             NULL, NULL, NULL);
    }
    const fib_json *gather = fib_json_get(g, "gather");
    if (!gather || gather->kind == FIB_JSON_NULL) {
        if (width[0] != units || width[1] != units)
            return meta_error(L, index, "a sum without 'gather' needs sources as "
                              "wide as itself");
        int32_t st = fib_graph_add_sum(L->graph, (int32_t)s[0], (int32_t)s[1], id);
        return st == FIB_OK ? FIB_OK : rewrap(st, L->path, "sum group");
    }
    if (gather->kind != FIB_JSON_ARRAY || gather->n_items != 2)
        return meta_error(L, index, "'gather' must hold two arrays of 'units' "
                          "unit indices");
    int64_t *ga = NULL, *gb = NULL;
    int32_t st = read_gather(L, index, &gather->items[0], units, width[0], &ga);
    if (st == FIB_OK)
        st = read_gather(L, index, &gather->items[1], units, width[1], &gb);
    if (st != FIB_OK) {
        fib_free(ga);
        return st;
    }
    st = fib_graph_add_sum_gather(L->graph, (int32_t)s[0], (int32_t)s[1], units,
                                  ga, gb, id); /* takes the arrays over */
    return st == FIB_OK ? FIB_OK : rewrap(st, L->path, "sum group");
}

static int32_t set_attributes(loader *L, int64_t index, const fib_json *g,
                              int32_t id, bool is_input)
{
    const fib_json *name = fib_json_get(g, "name");
    const fib_json *act = fib_json_get(g, "activation");
    const fib_json *par = fib_json_get(g, "parameter");
    const fib_json *eps = fib_json_get(g, "eps");
    char what[64];
    snprintf(what, sizeof what, "group %lld", (long long)index);
    if (name && name->kind != FIB_JSON_NULL) {
        if (name->kind != FIB_JSON_STRING)
            return meta_error(L, index, "'name' must be a string");
        int32_t st = fib_graph_set_group_name(L->graph, id, name->string);
        if (st != FIB_OK)
            return rewrap(st, L->path, what);
    }
    int32_t activation = FIB_ACT_LINEAR;
    double parameter = 0.0;
    if (act && act->kind != FIB_JSON_NULL) {
        if (act->kind != FIB_JSON_STRING || !activation_from_name(act->string,
                                                                  &activation))
            return meta_error(L, index, "'activation' must be one of linear, "
                              "relu, leaky_relu, tanh, sigmoid, gelu, silu");
    }
    if (par && par->kind != FIB_JSON_NULL) {
        if (par->kind != FIB_JSON_NUMBER)
            return meta_error(L, index, "'parameter' must be a number");
        parameter = par->number;
    } else if (activation == FIB_ACT_LEAKY_RELU) {
        parameter = 0.01;
    }
    if (is_input) {
        if (activation != FIB_ACT_LINEAR)
            return meta_error(L, index, "an input group has no activation");
    } else {
        int32_t st = fib_graph_set_activation(L->graph, id, activation, parameter);
        if (st != FIB_OK)
            return rewrap(st, L->path, what);
    }
    if (eps && eps->kind != FIB_JSON_NULL) {
        if (eps->kind != FIB_JSON_NUMBER || eps->number < 0)
            return meta_error(L, index, "'eps' must be a number >= 0");
        int32_t st = fib_graph_set_group_eps(L->graph, id, eps->number);
        if (st != FIB_OK)
            return rewrap(st, L->path, what);
    }
    return FIB_OK;
}

static int32_t add_group(loader *L, int64_t index, const fib_json *g)
{
    if (g->kind != FIB_JSON_OBJECT)
        return meta_error(L, index, "not an object");
    const fib_json *op = fib_json_get(g, "op");
    if (!op || op->kind != FIB_JSON_STRING)
        return meta_error(L, index, "'op' (input, dense or sum) is missing");
    int64_t units;
    if (!get_int(g, "units", 1, FIB_MAX_UNITS, &units))
        return meta_error(L, index, "'units' must be an integer in [1, 2^40]");
    int32_t id = -1, st;
    bool is_input = false;
    char label[64];
    snprintf(label, sizeof label, "group %lld", (long long)index);
    if (strcmp(op->string, "input") == 0) {
        is_input = true;
        st = fib_graph_add_input(L->graph, units, &id);
        if (st != FIB_OK)
            return rewrap(st, L->path, label);
    } else if (strcmp(op->string, "dense") == 0) {
        int64_t source;
        if (!get_int(g, "source", 0, index - 1, &source))
            return meta_error(L, index, "'source' must be the index of an "
                              "earlier group");
        const fib_st_tensor *w = named_tensor(L, g, index, "weight", true, &st);
        if (st != FIB_OK)
            return st;
        const fib_st_tensor *b = named_tensor(L, g, index, "bias", false, &st);
        if (st != FIB_OK)
            return st;
        st = add_dense(L, label, (int32_t)source, units, w, b, &id);
        if (st != FIB_OK)
            return st;
    } else if (strcmp(op->string, "sum") == 0) {
        st = add_sum(L, index, g, units, &id);
        if (st != FIB_OK)
            return st;
    } else {
        return fib_error(FIB_E_FORMAT, "%s: structure metadata: group %lld: "
                         "unknown op '%s' (input, dense or sum expected)",
                         L->path, (long long)index, op->string);
    }
    return set_attributes(L, index, g, id, is_input);
}

static int32_t load_structured(loader *L, const char *meta, fib_json **root_out)
{
    char context[300];
    snprintf(context, sizeof context, "%s: __metadata__ '" META_KEY "'", L->path);
    fib_json *root = NULL;
    int32_t st = fib_json_parse(meta, strlen(meta), context, &root);
    if (st != FIB_OK)
        return st;
    *root_out = root;
    if (root->kind != FIB_JSON_OBJECT)
        return meta_error(L, -1, "not a JSON object");
    const fib_json *format = fib_json_get(root, "format");
    if (!format || format->kind != FIB_JSON_STRING ||
        strcmp(format->string, FORMAT_NAME) != 0)
        return meta_error(L, -1, "'format' is not \"" FORMAT_NAME "\"");
    int64_t version;
    if (!get_int(root, "version", 1, INT32_MAX, &version))
        return meta_error(L, -1, "'version' must be a positive integer");
    if (version > FORMAT_VERSION)
        return fib_error(FIB_E_UNSUPPORTED, "%s: structure metadata version %lld "
                         "is newer than this library reads (%d)", L->path,
                         (long long)version, FORMAT_VERSION);
    const fib_json *groups = fib_json_get(root, "groups");
    if (!groups || groups->kind != FIB_JSON_ARRAY || groups->n_items == 0)
        return meta_error(L, -1, "'groups' must be a non-empty array");
    if (groups->n_items > INT32_MAX)
        return meta_error(L, -1, "too many groups");
    if (groups->items[0].kind != FIB_JSON_OBJECT ||
        !fib_json_get(&groups->items[0], "op") ||
        fib_json_get(&groups->items[0], "op")->kind != FIB_JSON_STRING ||
        strcmp(fib_json_get(&groups->items[0], "op")->string, "input") != 0)
        return meta_error(L, 0, "the first group must be an input");
    for (int64_t i = 0; i < groups->n_items && st == FIB_OK; i++)
        st = add_group(L, i, &groups->items[i]);
    L->projection = fib_json_get(root, "projection");
    return st;
}

/* "<digits>.weight" / "<digits>.bias": the layer index and which one. */
static bool sequential_name(const char *name, int64_t *index, bool *is_bias)
{
    const char *p = name;
    int64_t v = 0;
    if (*p < '0' || *p > '9')
        return false;
    while (*p >= '0' && *p <= '9') {
        if (v > 100000000)
            return false;
        v = v * 10 + (*p - '0');
        p++;
    }
    if (strcmp(p, ".weight") == 0)
        *is_bias = false;
    else if (strcmp(p, ".bias") == 0)
        *is_bias = true;
    else
        return false;
    *index = v;
    return true;
}

typedef struct seq_layer {
    int64_t index;
    const fib_st_tensor *weight;
    const fib_st_tensor *bias;
} seq_layer;

static int compare_layers(const void *a, const void *b)
{
    const seq_layer *x = a, *y = b;
    return (x->index > y->index) - (x->index < y->index);
}

static int32_t collect_layers(loader *L, seq_layer *layers, int64_t *n_out)
{
    const fib_st_file *f = L->file;
    int64_t n = 0;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const fib_st_tensor *t = &f->tensors[i];
        int64_t index;
        bool is_bias;
        if (!sequential_name(t->name, &index, &is_bias))
            return fib_error(FIB_E_FORMAT,
                             "%s: no '" META_KEY "' structure metadata, and tensor "
                             "'%s' is not part of an nn.Sequential state dict of "
                             "Linear layers (only '<i>.weight' and '<i>.bias' "
                             "names can be read without it; see "
                             "docs/model-files.md)", L->path, t->name);
        int64_t k = 0;
        while (k < n && layers[k].index != index)
            k++;
        if (k == n) {
            layers[n].index = index;
            layers[n].weight = layers[n].bias = NULL;
            n++;
        }
        if (is_bias)
            layers[k].bias = t;
        else
            layers[k].weight = t;
    }
    qsort(layers, (size_t)n, sizeof *layers, compare_layers);
    for (int64_t k = 0; k < n; k++) {
        if (!layers[k].weight)
            return fib_error(FIB_E_FORMAT, "%s: state dict has '%lld.bias' but "
                             "no '%lld.weight'", L->path,
                             (long long)layers[k].index,
                             (long long)layers[k].index);
        const fib_st_tensor *w = layers[k].weight;
        if (w->n_dims != 2)
            return fib_error(FIB_E_FORMAT,
                             "%s: tensor '%s' has %d dimensions; without '" META_KEY
                             "' structure metadata only Linear layers (2-d "
                             "weights, out x in) can be read", L->path, w->name,
                             (int)w->n_dims);
        if (w->shape[0] < 1 || w->shape[1] < 1)
            return fib_error(FIB_E_FORMAT, "%s: tensor '%s' is empty", L->path,
                             w->name);
        if (k > 0 && w->shape[1] != layers[k - 1].weight->shape[0])
            return fib_error(FIB_E_FORMAT,
                             "%s: tensor '%s' takes %lld inputs but the layer "
                             "before it ('%s') gives %lld outputs; not a chain "
                             "of Linear layers", L->path, w->name,
                             (long long)w->shape[1], layers[k - 1].weight->name,
                             (long long)layers[k - 1].weight->shape[0]);
    }
    *n_out = n;
    return FIB_OK;
}

static int32_t load_state_dict(loader *L, const fib_load_options *o)
{
    if (L->file->n_tensors == 0)
        return fib_error(FIB_E_FORMAT, "%s: the file holds no tensors and no '"
                         META_KEY "' structure metadata", L->path);
    seq_layer *layers = fib_calloc(L->file->n_tensors, sizeof *layers);
    if (!layers)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", L->path);
    int64_t n = 0;
    int32_t st = collect_layers(L, layers, &n);
    int32_t id = -1;
    if (st == FIB_OK) {
        st = fib_graph_add_input(L->graph, layers[0].weight->shape[1], &id);
        if (st == FIB_OK)
            st = fib_graph_set_group_name(L->graph, id, "input");
        if (st != FIB_OK)
            st = rewrap(st, L->path, "input");
    }
    for (int64_t k = 0; k < n && st == FIB_OK; k++) {
        char label[64];
        snprintf(label, sizeof label, "layer '%lld'", (long long)layers[k].index);
        int32_t source = id;
        st = add_dense(L, label, source, layers[k].weight->shape[0],
                       layers[k].weight, layers[k].bias, &id);
        if (st != FIB_OK)
            break;
        char name[32];
        snprintf(name, sizeof name, "%lld", (long long)layers[k].index);
        st = fib_graph_set_group_name(L->graph, id, name);
        if (st == FIB_OK && k + 1 < n)
            st = fib_graph_set_activation(L->graph, id, o->activation,
                                          o->parameter);
        if (st != FIB_OK)
            st = rewrap(st, L->path, label);
    }
    fib_free(layers);
    return st;
}

static int32_t check_load_options(const fib_load_options *o)
{
    if (o->struct_size < sizeof *o)
        return fib_error(FIB_E_INVALID, "fib_model_load: options.struct_size %zu "
                         "is smaller than %zu (call fib_load_options_init)",
                         o->struct_size, sizeof *o);
    if (!activation_to_name(o->activation))
        return fib_error(FIB_E_INVALID, "fib_model_load: unknown activation %d",
                         (int)o->activation);
    if (!isfinite(o->parameter))
        return fib_error(FIB_E_INVALID, "fib_model_load: parameter is not finite");
    if (o->copy != 0 && o->copy != 1)
        return fib_error(FIB_E_INVALID, "fib_model_load: copy must be 0 or 1");
    return FIB_OK;
}

/* Loads the graph; when projection_out is given, the file's projection is
 * validated and returned as partitions (one per group). */
static int32_t load(const char *path, const fib_load_options *options,
                    fib_graph **out, fib_partition **projection_out);

static int32_t read_projection(loader *L, fib_partition **out)
{
    const fib_json *pj = L->projection;
    int32_t n_groups = L->graph->n_groups;
    if (!pj)
        return fib_error(FIB_E_FORMAT, "%s: no projection in the structure "
                         "metadata: not a base written by fib_base_save or "
                         "`fibration compress`", L->path);
    if (pj->kind != FIB_JSON_ARRAY || pj->n_items != n_groups)
        return meta_error(L, -1, "'projection' must hold one array per group");
    fib_partition *parts = fib_calloc(n_groups, sizeof *parts);
    if (!parts)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", L->path);
    int32_t st = FIB_OK;
    int32_t done = 0;
    for (int32_t g = 0; g < n_groups && st == FIB_OK; g++) {
        const fib_json *a = &pj->items[g];
        int64_t base_units = L->graph->groups[g].n_units;
        if (a->kind != FIB_JSON_ARRAY || a->n_items < base_units ||
            a->n_items > FIB_MAX_UNITS) {
            st = meta_error(L, g, "projection must map at least as many "
                            "original units as the base group has");
            break;
        }
        st = fib_partition_init(&parts[g], a->n_items);
        if (st != FIB_OK)
            break;
        done = g + 1;
        bool keep = fib_group_is_input(L->graph, g) ||
                    fib_group_is_output(L->graph, g);
        int64_t next_new = 0;
        for (int64_t i = 0; i < a->n_items; i++) {
            const fib_json *v = &a->items[i];
            if (v->kind != FIB_JSON_NUMBER || !v->is_integer || v->integer < 0 ||
                v->integer > next_new || v->integer >= base_units ||
                (keep && v->integer != i)) {
                st = meta_error(L, g, keep ? "projection of an input or output "
                                             "group must be the identity"
                                           : "projection must number base units "
                                             "in order of first use");
                break;
            }
            if (v->integer == next_new)
                next_new++;
            parts[g].color[i] = v->integer;
        }
        if (st == FIB_OK && next_new != base_units)
            st = meta_error(L, g, "projection leaves a base unit unused");
        parts[g].n_classes = base_units;
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

static int32_t load(const char *path, const fib_load_options *options,
                    fib_graph **out, fib_partition **projection_out)
{
    if (!path || !out)
        return fib_error(FIB_E_NULL, "fib_model_load: %s is NULL",
                         path ? "out" : "path");
    fib_load_options defaults;
    if (!options) {
        fib_load_options_init(&defaults, sizeof defaults);
        options = &defaults;
    }
    int32_t st = check_load_options(options);
    if (st != FIB_OK)
        return st;
    loader L = {path, NULL, NULL, options->copy == 1, NULL};
    st = fib_st_open(path, &L.file);
    if (st != FIB_OK)
        return st;
    st = fib_graph_create(&L.graph);
    if (st != FIB_OK) {
        fib_st_close(L.file);
        return st;
    }
    if (!L.copy) {
        st = fib_graph_attach_resource(L.graph, L.file, release_file);
        if (st != FIB_OK) {
            fib_st_close(L.file);
            fib_graph_free(L.graph);
            return st;
        }
    }
    const char *meta = fib_st_meta(L.file, META_KEY);
    fib_json *root = NULL;
    if (meta)
        st = load_structured(&L, meta, &root);
    else if (projection_out)
        st = fib_error(FIB_E_FORMAT, "%s: no '" META_KEY "' structure metadata: "
                       "not a base written by fib_base_save or `fibration "
                       "compress`", path);
    else
        st = load_state_dict(&L, options);
    fib_partition *projection = NULL;
    if (st == FIB_OK && projection_out)
        st = read_projection(&L, &projection);
    fib_json_free(root);
    if (L.copy)
        fib_st_close(L.file);
    if (st != FIB_OK) {
        fib_graph_free(L.graph);
        return st;
    }
    *out = L.graph;
    if (projection_out)
        *projection_out = projection;
    return FIB_OK;
}

int32_t fib_model_load(const char *path, const fib_load_options *options,
                       fib_graph **out)
{
    return load(path, options, out, NULL);
}

int32_t fib_base_load(const char *path, const fib_load_options *options,
                      fib_base **out)
{
    if (!out)
        return fib_error(FIB_E_NULL, "fib_base_load: out is NULL");
    fib_base *b = fib_calloc(1, sizeof *b);
    if (!b)
        return fib_error(FIB_E_NOMEM, "fib_base_load: out of memory");
    int32_t st = load(path, options, &b->graph, &b->projection);
    if (st != FIB_OK) {
        fib_free(b);
        return st;
    }
    b->n_groups = b->graph->n_groups;
    *out = b;
    return FIB_OK;
}

/* ------------------------------------------------------------------------ */
/* Saving                                                                   */
/* ------------------------------------------------------------------------ */

static int compare_strings(const void *a, const void *b)
{
    const char *const *x = a;
    const char *const *y = b;
    return strcmp(*x, *y);
}

/* Whether every dense group has a distinct, non-empty name (then tensors
 * are named after the groups). */
static bool names_usable(const fib_graph *g)
{
    int64_t n = 0;
    for (int32_t i = 0; i < g->n_groups; i++)
        if (g->groups[i].op == FIB_OP_DENSE) {
            if (!g->groups[i].name || g->groups[i].name[0] == '\0')
                return false;
            n++;
        }
    if (n < 2)
        return true;
    const char **names = fib_alloc(n, sizeof *names);
    if (!names)
        return false;
    n = 0;
    for (int32_t i = 0; i < g->n_groups; i++)
        if (g->groups[i].op == FIB_OP_DENSE)
            names[n++] = g->groups[i].name;
    qsort(names, (size_t)n, sizeof *names, compare_strings);
    bool ok = true;
    for (int64_t i = 1; i < n && ok; i++)
        ok = strcmp(names[i - 1], names[i]) != 0;
    fib_free(names);
    return ok;
}

typedef struct saver {
    const char *path;
    int32_t n_out;
    fib_st_out *tensors;  /* two per dense group at most */
    void **buffers;
    char **names;
} saver;

static void saver_free(saver *s, int32_t capacity)
{
    for (int32_t i = 0; i < capacity; i++) {
        if (s->buffers)
            fib_free(s->buffers[i]);
        if (s->names)
            fib_free(s->names[i]);
    }
    fib_free(s->buffers);
    fib_free(s->names);
    fib_free(s->tensors);
}

/* Adds one tensor (a copy of the group's weights or bias) to the file. */
static int32_t add_tensor(saver *s, const char *group_name, int32_t group,
                          const char *suffix, int32_t dtype, int32_t n_dims,
                          int64_t rows, int64_t cols, void *data)
{
    int32_t k = s->n_out;
    size_t len = (group_name ? strlen(group_name) : 0) + 48;
    s->names[k] = fib_alloc((int64_t)len, 1);
    if (!s->names[k]) {
        fib_free(data);
        return fib_error(FIB_E_NOMEM, "%s: out of memory", s->path);
    }
    if (group_name)
        snprintf(s->names[k], len, "%s.%s", group_name, suffix);
    else
        snprintf(s->names[k], len, "groups.%d.%s", (int)group, suffix);
    s->buffers[k] = data;
    fib_st_out *t = &s->tensors[k];
    memset(t, 0, sizeof *t);
    t->name = s->names[k];
    t->dtype = dtype;
    t->n_dims = n_dims;
    t->shape[0] = rows;
    t->shape[1] = cols;
    t->data = data;
    s->n_out++;
    return FIB_OK;
}

static int32_t add_dense_tensors(saver *s, const fib_graph *g, int32_t i,
                                 int32_t dtype, bool use_names, fib_jbuf *j)
{
    const fib_group *grp = &g->groups[i];
    const fib_dense *d = grp->block;
    int32_t dt = dtype ? dtype : d->dtype;
    int64_t rows = grp->n_units, cols = d->n_in, count;
    if (!fib_mul_i64(rows, cols, &count))
        return fib_error(FIB_E_OVERFLOW, "%s: group %d too large", s->path, (int)i);
    void *w = fib_alloc(count, fib_dtype_size(dt));
    void *b = d->bias ? fib_alloc(rows, fib_dtype_size(dt)) : NULL;
    if (!w || (d->bias && !b)) {
        fib_free(w);
        fib_free(b);
        return fib_error(FIB_E_NOMEM, "%s: out of memory for group %d", s->path,
                         (int)i);
    }
    int32_t st = fib_graph_read_dense(g, i, dt, w, cols, b);
    if (st != FIB_OK) {
        fib_free(w);
        fib_free(b);
        return rewrap(st, s->path, "saving");
    }
    const char *gname = use_names ? grp->name : NULL;
    st = add_tensor(s, gname, i, "weight", dt, 2, rows, cols, w);
    if (st != FIB_OK) {
        fib_free(b);
        return st;
    }
    fib_jbuf_raw(j, ",\"source\":");
    fib_jbuf_int(j, grp->sources[0]);
    fib_jbuf_raw(j, ",\"weight\":");
    fib_jbuf_string(j, s->names[s->n_out - 1]);
    if (b) {
        st = add_tensor(s, gname, i, "bias", dt, 1, rows, 0, b);
        if (st != FIB_OK)
            return st;
        fib_jbuf_raw(j, ",\"bias\":");
        fib_jbuf_string(j, s->names[s->n_out - 1]);
    }
    return FIB_OK;
}

static void write_index_array(fib_jbuf *j, const int64_t *v, int64_t n)
{
    fib_jbuf_raw(j, "[");
    for (int64_t i = 0; i < n; i++) {
        if (i)
            fib_jbuf_raw(j, ",");
        fib_jbuf_int(j, v[i]);
    }
    fib_jbuf_raw(j, "]");
}

static int32_t write_sum(const fib_graph *g, int32_t i, const char *path,
                         fib_jbuf *j)
{
    const fib_group *grp = &g->groups[i];
    fib_jbuf_raw(j, ",\"sources\":[");
    fib_jbuf_int(j, grp->sources[0]);
    fib_jbuf_raw(j, ",");
    fib_jbuf_int(j, grp->sources[1]);
    fib_jbuf_raw(j, "]");
    int64_t n = grp->n_units;
    int64_t *a = fib_alloc(n, sizeof *a), *b = fib_alloc(n, sizeof *b);
    int32_t st = (a && b) ? fib_graph_read_sum(g, i, a, b)
                          : fib_error(FIB_E_NOMEM, "%s: out of memory", path);
    if (st == FIB_OK) {
        bool identity = g->groups[grp->sources[0]].n_units == n &&
                        g->groups[grp->sources[1]].n_units == n;
        for (int64_t k = 0; k < n && identity; k++)
            identity = a[k] == k && b[k] == k;
        if (!identity) {
            fib_jbuf_raw(j, ",\"gather\":[");
            write_index_array(j, a, n);
            fib_jbuf_raw(j, ",");
            write_index_array(j, b, n);
            fib_jbuf_raw(j, "]");
        }
    }
    fib_free(a);
    fib_free(b);
    return st;
}

static int32_t save(const fib_graph *g, const fib_base *base, const char *path,
                    int32_t dtype)
{
    if (!g || !path)
        return fib_error(FIB_E_NULL, "fib_model_save: %s is NULL",
                         g ? "path" : "graph");
    if (dtype != 0 && dtype != FIB_DTYPE_F32 && dtype != FIB_DTYPE_F64)
        return fib_error(FIB_E_INVALID, "fib_model_save: dtype %d is not 0, "
                         "FIB_DTYPE_F32 or FIB_DTYPE_F64", (int)dtype);
    int32_t capacity = 2 * g->n_groups + 1;
    saver s = {path, 0, fib_calloc(capacity, sizeof(fib_st_out)),
               fib_calloc(capacity, sizeof(void *)),
               fib_calloc(capacity, sizeof(char *))};
    fib_jbuf j;
    fib_jbuf_init(&j);
    int32_t st = FIB_OK;
    if (!s.tensors || !s.buffers || !s.names)
        st = fib_error(FIB_E_NOMEM, "%s: out of memory", path);
    for (int32_t i = 0; i < g->n_groups && st == FIB_OK; i++)
        if (g->groups[i].op > FIB_OP_SUM)
            st = fib_error(FIB_E_UNSUPPORTED, "%s: group %d is a %s group; model "
                           "files of this version hold input, dense and sum "
                           "groups only", path, (int)i,
                           g->groups[i].ops ? g->groups[i].ops->name : "new");
    bool use_names = names_usable(g);
    fib_jbuf_raw(&j, "{\"format\":\"" FORMAT_NAME "\",\"version\":");
    fib_jbuf_int(&j, FORMAT_VERSION);
    fib_jbuf_raw(&j, ",\"producer\":");
    char producer[64];
    snprintf(producer, sizeof producer, "libfibration %s", fib_version_string());
    fib_jbuf_string(&j, producer);
    fib_jbuf_raw(&j, ",\"groups\":[");
    for (int32_t i = 0; i < g->n_groups && st == FIB_OK; i++) {
        const fib_group *grp = &g->groups[i];
        static const char *const ops[] = {"input", "dense", "sum"};
        fib_jbuf_raw(&j, i ? ",{" : "{");
        if (grp->name && grp->name[0]) {
            fib_jbuf_raw(&j, "\"name\":");
            fib_jbuf_string(&j, grp->name);
            fib_jbuf_raw(&j, ",");
        }
        fib_jbuf_raw(&j, "\"op\":\"");
        fib_jbuf_raw(&j, ops[grp->op]);
        fib_jbuf_raw(&j, "\",\"units\":");
        fib_jbuf_int(&j, grp->n_units);
        if (grp->op == FIB_OP_DENSE)
            st = add_dense_tensors(&s, g, i, dtype, use_names, &j);
        else if (grp->op == FIB_OP_SUM)
            st = write_sum(g, i, path, &j);
        const char *act_name = activation_to_name(grp->activation);
        if (grp->op != FIB_OP_INPUT && act_name) {
            fib_jbuf_raw(&j, ",\"activation\":\"");
            fib_jbuf_raw(&j, act_name);
            fib_jbuf_raw(&j, "\"");
            if (grp->activation == FIB_ACT_LEAKY_RELU) {
                fib_jbuf_raw(&j, ",\"parameter\":");
                fib_jbuf_double(&j, grp->act_param);
            }
        }
        if (grp->eps_override >= 0) {
            fib_jbuf_raw(&j, ",\"eps\":");
            fib_jbuf_double(&j, grp->eps_override);
        }
        fib_jbuf_raw(&j, "}");
    }
    fib_jbuf_raw(&j, "]");
    if (base && st == FIB_OK) {
        fib_jbuf_raw(&j, ",\"projection\":[");
        for (int32_t i = 0; i < base->n_groups; i++) {
            if (i)
                fib_jbuf_raw(&j, ",");
            write_index_array(&j, base->projection[i].color,
                              base->projection[i].n_units);
        }
        fib_jbuf_raw(&j, "]");
    }
    fib_jbuf_raw(&j, "}");
    if (st == FIB_OK)
        st = fib_jbuf_status(&j);
    if (st == FIB_OK) {
        const char *keys[] = {META_KEY};
        const char *values[] = {j.data};
        st = fib_st_write(path, s.tensors, s.n_out, keys, values, 1);
    }
    fib_jbuf_free(&j);
    saver_free(&s, capacity);
    return st;
}

int32_t fib_model_save(const fib_graph *graph, const char *path, int32_t dtype)
{
    return save(graph, NULL, path, dtype);
}

int32_t fib_base_save(const fib_base *base, const char *path, int32_t dtype)
{
    if (!base)
        return fib_error(FIB_E_NULL, "fib_base_save: base is NULL");
    return save(base->graph, base, path, dtype);
}
