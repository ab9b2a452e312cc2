/* Model files: the entry points (fib_model_load, fib_base_load) and the
 * nn.Sequential state-dict fallback. The structure metadata is read in
 * model_load.c and model_blocks.c and written in model_save.c, with the
 * helpers of model_shared.c; the format is documented in
 * docs/model-files.md: keep them in step. */
#include "io/model_io.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int32_t fib_load_options_init(fib_load_options *o, size_t struct_size)
{
    int32_t status = fib_options_clear(o, struct_size, sizeof *o, sizeof *o,
                                       "fib_load_options_init");
    if (status)
        return status;
    o->struct_size = sizeof *o;
    o->activation = FIB_ACT_RELU;
    o->copy = 0;
    o->parameter = 0.01;
    return FIB_OK;
}


/* ------------------------------------------------------------------------ */
/* Loading                                                                  */
/* ------------------------------------------------------------------------ */

typedef fib_model_loader loader;
#define rewrap fib_model_rewrap

static void release_file(void *handle)
{
    fib_st_close(handle);
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

/* A state-dict tensor by its layer index, in file order within a layer. */
typedef struct seq_tensor {
    int64_t index;
    int64_t position; /* in the file */
    bool is_bias;
    const fib_st_tensor *tensor;
} seq_tensor;

static int compare_seq_tensors(const void *a, const void *b)
{
    const seq_tensor *x = a, *y = b;
    if (x->index != y->index)
        return (x->index > y->index) - (x->index < y->index);
    return (x->position > y->position) - (x->position < y->position);
}

/* Groups the tensors into layers by sorting them by index (a search per
 * tensor would make a file of many layers quadratic to read). */
static int32_t collect_layers(loader *L, seq_layer *layers, int64_t *n_out)
{
    const fib_st_file *f = L->file;
    seq_tensor *named = fib_alloc(f->n_tensors, sizeof *named);
    if (!named)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", L->path);
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const fib_st_tensor *t = &f->tensors[i];
        if (t->name[0] == '0' && t->name[1] >= '0' && t->name[1] <= '9') {
            fib_free(named);
            /* "01.weight" next to "1.weight" would be one layer read twice
             * or one tensor ignored: PyTorch writes indices without zeros */
            return fib_error(FIB_E_FORMAT, "%s: tensor '%s': a layer index with a "
                             "leading zero; an nn.Sequential state dict numbers its "
                             "layers 0, 1, 2, ... (two spellings of one index would "
                             "leave one tensor unread)", L->path, t->name);
        }
        named[i].position = i;
        named[i].tensor = t;
        if (!sequential_name(t->name, &named[i].index, &named[i].is_bias)) {
            fib_free(named);
            return fib_error(FIB_E_FORMAT,
                             "%s: no '" FIB_MODEL_META_KEY "' structure metadata, and tensor "
                             "'%s' is not part of an nn.Sequential state dict of "
                             "Linear layers (only '<i>.weight' and '<i>.bias' "
                             "names can be read without it; see "
                             "docs/model-files.md)", L->path, t->name);
        }
    }
    qsort(named, (size_t)f->n_tensors, sizeof *named, compare_seq_tensors);
    int64_t n = 0;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        if (n == 0 || layers[n - 1].index != named[i].index) {
            layers[n].index = named[i].index;
            layers[n].weight = layers[n].bias = NULL;
            n++;
        }
        const fib_st_tensor **slot =
            named[i].is_bias ? &layers[n - 1].bias : &layers[n - 1].weight;
        if (*slot) {
            /* one spelling per index makes this unreachable; it keeps a
             * looser name rule from leaving a tensor unread */
            int32_t st = fib_error(FIB_E_FORMAT, "%s: tensors '%s' and '%s' are the "
                                   "same layer's %s", L->path, (*slot)->name,
                                   named[i].tensor->name,
                                   named[i].is_bias ? "bias" : "weight");
            fib_free(named);
            return st;
        }
        *slot = named[i].tensor;
    }
    fib_free(named);
    for (int64_t k = 0; k < n; k++) {
        if (!layers[k].weight)
            return fib_error(FIB_E_FORMAT, "%s: state dict has '%lld.bias' but "
                             "no '%lld.weight'", L->path,
                             (long long)layers[k].index,
                             (long long)layers[k].index);
        const fib_st_tensor *w = layers[k].weight;
        if (w->n_dims != 2)
            return fib_error(FIB_E_FORMAT,
                             "%s: tensor '%s' has %d dimensions; without '" FIB_MODEL_META_KEY
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
                         FIB_MODEL_META_KEY "' structure metadata", L->path);
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
        st = fib_model_add_dense(L, label, source, layers[k].weight->shape[0],
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
    if (!fib_activation_name(o->activation))
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
/* A base checkpoint directory (fib_base_save_checkpoint): the checkpoint
 * read as any, and the projection its model.safetensors records. */
static int32_t load_hf_base(const char *path, bool copy, fib_graph **out,
                            fib_partition **projection_out)
{
    char file[4200];
    if (snprintf(file, sizeof file, "%s/model.safetensors", path) >= (int)sizeof file)
        return fib_error(FIB_E_INVALID, "%s: path too long", path);
    fib_st_file *f = NULL;
    int32_t st = fib_st_open(file, &f);
    if (st != FIB_OK)
        return fib_error(FIB_E_FORMAT, "%s: a folder (a Hugging Face checkpoint) is a "
                         "model, not a base: no model.safetensors with '"
                         FIB_HF_PROJECTION_KEY "' metadata (what fib_base_save_checkpoint "
                         "and `fibration compress` write)", path);
    const char *text = fib_st_meta(f, FIB_HF_PROJECTION_KEY);
    fib_json *projection = NULL;
    if (!text)
        st = fib_error(FIB_E_FORMAT, "%s: no '" FIB_HF_PROJECTION_KEY "' metadata: a "
                       "folder (a Hugging Face checkpoint) is a model, not a base written "
                       "by fib_base_save_checkpoint or `fibration compress`", file);
    else
        st = fib_json_parse(text, strlen(text), file, &projection);
    fib_graph *graph = NULL;
    if (st == FIB_OK)
        st = fib_model_load_hf(path, copy, &graph);
    if (st == FIB_OK) {
        loader L = {file, NULL, graph, copy, 0, projection};
        st = fib_model_read_projection(&L, projection_out);
    }
    fib_json_free(projection);
    fib_st_close(f);
    if (st != FIB_OK) {
        fib_graph_free(graph);
        return st;
    }
    *out = graph;
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
    if (fib_model_is_directory(path)) {
        if (projection_out)
            return load_hf_base(path, options->copy == 1, out, projection_out);
        return fib_model_load_hf(path, options->copy == 1, out);
    }
    loader L = {path, NULL, NULL, options->copy == 1, 0, NULL};
    st = fib_st_open(path, &L.file);
    if (st != FIB_OK)
        return st;
    st = fib_graph_create(&L.graph);
    if (st != FIB_OK) {
        fib_st_close(L.file);
        return st;
    }
    if (!L.copy) {
        st = fib_graph_attach_mapping(L.graph, L.file, release_file, fib_st_drop_pages);
        if (st != FIB_OK) {
            fib_st_close(L.file);
            fib_graph_free(L.graph);
            return st;
        }
    }
    const char *meta = fib_st_meta(L.file, FIB_MODEL_META_KEY);
    fib_json *root = NULL;
    if (meta)
        st = fib_model_load_structure(&L, meta, &root);
    else if (projection_out)
        st = fib_error(FIB_E_FORMAT, "%s: no '" FIB_MODEL_META_KEY "' structure metadata: "
                       "not a base written by fib_base_save or `fibration "
                       "compress`", path);
    else
        st = load_state_dict(&L, options);
    fib_partition *projection = NULL;
    if (st == FIB_OK && projection_out)
        st = fib_model_read_projection(&L, &projection);
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

