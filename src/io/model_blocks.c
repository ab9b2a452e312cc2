/* Model files: a group's block, built by its kind (fib_block_ops.build)
 * from a description of the group (fib_block_source) that this file
 * answers: its tensors, looked up by name in the file and checked for the
 * shape the kind asks, its gathers, and messages that name the file and
 * the group. The format is docs/model-files.md. */
#include "io/model_io.h"

#include <stdio.h>
#include <string.h>

typedef fib_model_loader loader;
typedef fib_model_group group;

/* What a description's lookups read: the file and the group. */
typedef struct holder {
    loader *L;
    const group *G;
} holder;

static const holder *holder_of(const fib_block_source *S)
{
    return S->holder;
}

static int32_t fail(const fib_block_source *S, int32_t status, const char *problem)
{
    const holder *h = holder_of(S);
    return fib_error(status, "%s: structure metadata: %s: %s", h->L->path, h->G->label,
                     problem);
}

static int32_t rewrap(const fib_block_source *S, int32_t status)
{
    const holder *h = holder_of(S);
    return fib_model_rewrap(status, h->L->path, h->G->label);
}

/* Every key of "tensors" must be a tensor of the block (version 2). */
static int32_t check_tensor_names(const fib_block_source *S, const char *const *keys)
{
    loader *L = holder_of(S)->L;
    const group *G = holder_of(S)->G;
    if (!G->tensors || G->tensors == G->json)
        return FIB_OK;
    for (int64_t i = 0; i < G->tensors->n_items; i++) {
        const char *k = G->tensors->items[i].key;
        bool known = false;
        for (int x = 0; keys && keys[x] && !known; x++)
            known = strcmp(keys[x], k) == 0;
        if (!known)
            return fib_model_error(L, G->label, "'tensors': a %s block has no "
                                   "tensor '%s'", fib_model_op_name(G->op), k);
    }
    return FIB_OK;
}

/* The file tensor that the group names for `key`, of exactly the shape
 * shape[0 .. n_dims); absent (out->name NULL) when optional. */
static int32_t tensor_of(const fib_block_source *S, const char *key, bool required,
                         int32_t n_dims, const int64_t *shape, fib_stored_tensor *out)
{
    loader *L = holder_of(S)->L;
    const group *G = holder_of(S)->G;
    const fib_json *v = G->tensors ? fib_json_get(G->tensors, key) : NULL;
    if (!v || v->kind == FIB_JSON_NULL) {
        if (required)
            return fib_model_error(L, G->label, "tensor '%s' is missing", key);
        return FIB_OK;
    }
    if (v->kind != FIB_JSON_STRING)
        return fib_model_error(L, G->label, "tensor '%s' must be named by a "
                               "string", key);
    const fib_st_tensor *t = fib_st_find(L->file, v->string);
    if (!t)
        return fib_model_error(L, G->label, "%s tensor '%s' is not in the file",
                               key, v->string);
    bool same = t->n_dims == n_dims;
    for (int32_t d = 0; same && d < n_dims; d++)
        same = t->shape[d] == shape[d];
    if (!same) {
        char got[160], want[160];
        fib_model_shape_text(t->n_dims, t->shape, got, sizeof got);
        fib_model_shape_text(n_dims, shape, want, sizeof want);
        return fib_model_error(L, G->label, "%s tensor '%s' has shape %s, "
                               "expected %s", key, t->name, got, want);
    }
    *out = (fib_stored_tensor){.name = t->name, .dtype = t->dtype, .data = t->data,
                               .n_elements = t->n_elements};
    return FIB_OK;
}

/* "gather": per source an array of 'units' indices into it. */
static int32_t gathers_of(const fib_block_source *S, const int64_t *widths, int64_t **out,
                          bool *present)
{
    loader *L = holder_of(S)->L;
    const group *G = holder_of(S)->G;
    static const char *const count[] = {"no", "one", "two", "three"};
    const char *n = count[G->n_sources];
    for (int32_t s = 0; s < G->n_sources; s++)
        out[s] = NULL;
    const fib_json *gather = fib_json_get(G->json, "gather");
    *present = gather && gather->kind != FIB_JSON_NULL;
    if (!*present)
        return FIB_OK;
    if (gather->kind != FIB_JSON_ARRAY || gather->n_items != G->n_sources)
        return fib_model_error(L, G->label, "'gather' must hold %s arrays of "
                               "'units' unit indices", n);
    int32_t st = FIB_OK;
    for (int s = 0; s < G->n_sources && st == FIB_OK; s++) {
        const fib_json *arr = &gather->items[s];
        if (arr->kind != FIB_JSON_ARRAY || arr->n_items != G->units) {
            st = fib_model_error(L, G->label, "'gather' must hold %s arrays "
                                 "of 'units' unit indices", n);
            break;
        }
        out[s] = fib_alloc(G->units, sizeof *out[s]);
        if (!out[s]) {
            st = fib_error(FIB_E_NOMEM, "%s: out of memory", L->path);
            break;
        }
        for (int64_t i = 0; i < G->units && st == FIB_OK; i++) {
            const fib_json *v = &arr->items[i];
            if (v->kind != FIB_JSON_NUMBER || !v->is_integer || v->integer < 0 ||
                v->integer >= widths[s])
                st = fib_model_error(L, G->label, "'gather' index out of range "
                                     "of its source group (gather[%d][%lld])",
                                     s, (long long)i);
            else
                out[s][i] = v->integer;
        }
    }
    if (st != FIB_OK)
        for (int32_t s = 0; s < G->n_sources; s++) {
            fib_free(out[s]);
            out[s] = NULL;
        }
    return st;
}

int32_t fib_model_add_block(loader *L, const group *G, int32_t *id)
{
    const fib_block_ops *ops = fib_block_ops_of(G->op);
    if (!ops || !ops->build)
        return fib_model_error(L, G->label, "op %d cannot be read", (int)G->op);
    holder h = {L, G};
    fib_block_source S = {
        .op = G->op, .units = G->units, .n_sources = G->n_sources,
        .sources = G->sources, .n_params = G->n_params, .params = G->params,
        .has_scalar = G->has_scalar, .scalar = G->scalar,
        .names_tensors = G->tensors && G->tensors != G->json && G->tensors->n_items > 0,
        .copy = L->copy, .path = L->path, .label = G->label, .holder = &h,
        .tensor = tensor_of, .check_tensor_names = check_tensor_names,
        .gathers = gathers_of, .fail = fail, .rewrap = rewrap,
    };
    int32_t st = ops->build(L->graph, &S, id);
    if (st == FIB_OK)
        fib_model_block_added(L->graph, *id);
    return st;
}
