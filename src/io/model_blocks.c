/* Model files: one loader per kind of block. Each checks the group's
 * tensors (present, named, shaped for the group's widths), integer params
 * (count, kinds, windows, gather and pair indices in range) and scalar
 * against the graph built so far, then calls a constructor: the public one
 * (borrowing the file's float32/float64 tensors in place) for a block as
 * users build it, the internal owned one (float64) for a block that reads
 * through a gather or counts multiplicities, as bases and lifts do. */
#include "io/model_io.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef fib_model_loader loader;
typedef fib_model_group group;

#define MAX_TENSORS 4

/* The tensors a kind of block has, in the order of fib_graph_tensor_info. */
static const char *const *tensor_keys(int32_t op)
{
    static const char *const dense[] = {"weight", "bias", NULL};
    static const char *const affine[] = {"scale", "shift", NULL};
    static const char *const gated[] = {"weight_ih", "weight_hh", "bias_ih",
                                        "bias_hh", NULL};
    static const char *const attend[] = {"pair_multiplicity", "pair_frequency", NULL};
    static const char *const norm[] = {"weight", "bias", "multiplicity", NULL};
    static const char *const prepend[] = {"values", NULL};
    static const char *const position_shift[] = {"shift", NULL};
    static const char *const none[] = {NULL};
    switch (op) {
    case FIB_OP_DENSE:
    case FIB_OP_CONV: return dense;
    case FIB_OP_AFFINE: return affine;
    case FIB_OP_LSTM:
    case FIB_OP_GRU: return gated;
    case FIB_OP_ATTEND: return attend;
    case FIB_OP_NORM: return norm;
    case FIB_OP_PREPEND: return prepend;
    case FIB_OP_POSITION_SHIFT: return position_shift;
    default: return none;
    }
}

static const fib_group *source_of(const loader *L, const group *G, int32_t s)
{
    return &L->graph->groups[G->sources[s]];
}

/* Every key of "tensors" must be a tensor of the block (version 2). */
static int32_t check_tensor_keys(loader *L, const group *G)
{
    if (!G->tensors || G->tensors == G->json)
        return FIB_OK;
    const char *const *keys = tensor_keys(G->op);
    for (int64_t i = 0; i < G->tensors->n_items; i++) {
        const char *k = G->tensors->items[i].key;
        bool known = false;
        for (int x = 0; keys[x] && !known; x++)
            known = strcmp(keys[x], k) == 0;
        if (!known)
            return fib_model_error(L, G->label, "'tensors': a %s block has no "
                                   "tensor '%s'", fib_model_op_name(G->op), k);
    }
    return FIB_OK;
}

/* The file tensor that the group names for `key`, of exactly the shape
 * shape[0 .. n_dims). *out = NULL when it is absent and optional. */
static int32_t tensor_of(loader *L, const group *G, const char *key,
                         bool required, int32_t n_dims, const int64_t *shape,
                         const fib_st_tensor **out)
{
    *out = NULL;
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
    *out = t;
    return FIB_OK;
}

static int32_t vector_of(loader *L, const group *G, const char *key,
                         bool required, int64_t n, const fib_st_tensor **out)
{
    return tensor_of(L, G, key, required, 1, &n, out);
}

/* Tensors handed to a public constructor: borrowed when they share a
 * dtype, else float64 copies (then the constructor must copy). */
typedef struct tensor_set {
    int32_t dtype;
    const void *data[MAX_TENSORS];
    void *tmp[MAX_TENSORS];
    uint32_t flags;
} tensor_set;

static void set_free(tensor_set *s)
{
    for (int x = 0; x < MAX_TENSORS; x++)
        fib_free(s->tmp[x]);
}

static int32_t set_make(loader *L, const fib_st_tensor *const *t, int n,
                        tensor_set *s)
{
    memset(s, 0, sizeof *s);
    s->dtype = 0;
    bool mixed = false;
    for (int x = 0; x < n; x++)
        if (t[x]) {
            if (s->dtype && s->dtype != t[x]->dtype)
                mixed = true;
            s->dtype = t[x]->dtype;
        }
    if (!s->dtype)
        s->dtype = FIB_DTYPE_F64;
    s->flags = L->copy ? FIB_COPY : 0u;
    for (int x = 0; x < n; x++)
        s->data[x] = t[x] ? t[x]->data : NULL;
    if (!mixed)
        return FIB_OK;
    s->dtype = FIB_DTYPE_F64;
    s->flags = FIB_COPY;
    for (int x = 0; x < n; x++) {
        if (!t[x])
            continue;
        double *d = fib_alloc(t[x]->n_elements > 0 ? t[x]->n_elements : 1, sizeof *d);
        if (!d) {
            set_free(s);
            return fib_error(FIB_E_NOMEM, "%s: out of memory", L->path);
        }
        for (int64_t i = 0; i < t[x]->n_elements; i++)
            d[i] = fib_load(t[x]->dtype, t[x]->data, i);
        s->tmp[x] = d;
        s->data[x] = d;
    }
    return FIB_OK;
}

/* A float64 copy of a tensor for an owned constructor (NULL for NULL),
 * every value finite (and > 0 when positive). */
static int32_t owned_copy(loader *L, const group *G, const char *key,
                          const fib_st_tensor *t, bool positive, double **out)
{
    *out = NULL;
    if (!t)
        return FIB_OK;
    double *d = fib_alloc(t->n_elements > 0 ? t->n_elements : 1, sizeof *d);
    if (!d)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", L->path);
    for (int64_t i = 0; i < t->n_elements; i++) {
        d[i] = fib_load(t->dtype, t->data, i);
        if (!isfinite(d[i])) {
            fib_free(d);
            return fib_error(FIB_E_NONFINITE, "%s: structure metadata: %s: "
                             "%s tensor '%s': element %lld is not finite",
                             L->path, G->label, key, t->name, (long long)i);
        }
        if (positive && !(d[i] > 0)) {
            double bad = d[i];
            fib_free(d);
            return fib_model_error(L, G->label, "%s tensor '%s': element %lld "
                                   "is %g; multiplicities must be > 0", key,
                                   t->name, (long long)i, bad);
        }
    }
    *out = d;
    return FIB_OK;
}

static int32_t done(loader *L, const group *G, int32_t st)
{
    return st == FIB_OK ? FIB_OK : fib_model_rewrap(st, L->path, G->label);
}

static int32_t expect_params(loader *L, const group *G, int64_t count)
{
    if (G->n_params != count)
        return fib_model_error(L, G->label, "'params' must hold %lld integers "
                               "for a %s block, not %lld", (long long)count,
                               fib_model_op_name(G->op), (long long)G->n_params);
    return FIB_OK;
}

/* A gather: n indices params[from ..] into a group of `width` units,
 * copied (NULL when it is the identity over a group as wide). */
static int32_t read_gather(loader *L, const group *G, int64_t from, int64_t n,
                           int64_t width, int64_t **out)
{
    *out = NULL;
    bool identity = n == width;
    for (int64_t i = 0; i < n; i++) {
        int64_t v = G->params[from + i];
        if (v < 0 || v >= width)
            return fib_model_error(L, G->label, "'params' item %lld: gather "
                                   "index %lld out of range of source group %d "
                                   "(%lld units)", (long long)(from + i),
                                   (long long)v, (int)G->sources[0],
                                   (long long)width);
        identity = identity && v == i;
    }
    if (identity)
        return FIB_OK;
    int64_t *g = fib_alloc(n, sizeof *g);
    if (!g)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", L->path);
    memcpy(g, G->params + from, (size_t)n * sizeof *g);
    *out = g;
    return FIB_OK;
}

static int32_t no_extras(loader *L, const group *G, bool params_allowed,
                         bool scalar_allowed)
{
    if (!params_allowed && G->n_params > 0)
        return fib_model_error(L, G->label, "'params': a %s block has none",
                               fib_model_op_name(G->op));
    if (!scalar_allowed && G->has_scalar)
        return fib_model_error(L, G->label, "'scalar': a %s block has none",
                               fib_model_op_name(G->op));
    return check_tensor_keys(L, G);
}

/* ---- blocks -------------------------------------------------------------- */

static int32_t load_dense(loader *L, const group *G, int32_t *id)
{
    int64_t n_in = source_of(L, G, 0)->n_units;
    const fib_st_tensor *w, *b;
    int32_t st = no_extras(L, G, false, false);
    if (st == FIB_OK)
        st = tensor_of(L, G, "weight", true, 2, (int64_t[]){G->units, n_in}, &w);
    if (st == FIB_OK)
        st = vector_of(L, G, "bias", false, G->units, &b);
    if (st != FIB_OK)
        return st;
    return fib_model_add_dense(L, G->label, G->sources[0], G->units, w, b, id);
}

/* A sum, or a product (whose second factor may have a single position). */
static int32_t load_sum(loader *L, const group *G, int32_t *id)
{
    int32_t st = no_extras(L, G, false, false);
    if (st != FIB_OK)
        return st;
    const fib_group *a = source_of(L, G, 0), *b = source_of(L, G, 1);
    bool product = G->op == FIB_OP_PRODUCT;
    if ((a->rows != b->rows || a->cols != b->cols) &&
        !(product && b->rows == 1 && b->cols == 1))
        return fib_model_error(L, G->label, "'sources': groups %d and %d have "
                               "different positions", (int)G->sources[0],
                               (int)G->sources[1]);
    const fib_json *gather = fib_json_get(G->json, "gather");
    if (!gather || gather->kind == FIB_JSON_NULL) {
        if (a->n_units != G->units || b->n_units != G->units)
            return fib_model_error(L, G->label, "a sum without 'gather' needs "
                                   "sources as wide as itself");
        return done(L, G, product ? fib_graph_add_product(L->graph, G->sources[0],
                                                          G->sources[1], id)
                                  : fib_graph_add_sum(L->graph, G->sources[0],
                                                      G->sources[1], id));
    }
    if (gather->kind != FIB_JSON_ARRAY || gather->n_items != 2)
        return fib_model_error(L, G->label, "'gather' must hold two arrays of "
                               "'units' unit indices");
    int64_t *idx[2] = {NULL, NULL};
    const int64_t width[2] = {a->n_units, b->n_units};
    for (int s = 0; s < 2 && st == FIB_OK; s++) {
        const fib_json *arr = &gather->items[s];
        if (arr->kind != FIB_JSON_ARRAY || arr->n_items != G->units) {
            st = fib_model_error(L, G->label, "'gather' must hold two arrays "
                                 "of 'units' unit indices");
            break;
        }
        idx[s] = fib_alloc(G->units, sizeof *idx[s]);
        if (!idx[s]) {
            st = fib_error(FIB_E_NOMEM, "%s: out of memory", L->path);
            break;
        }
        for (int64_t i = 0; i < G->units && st == FIB_OK; i++) {
            const fib_json *v = &arr->items[i];
            if (v->kind != FIB_JSON_NUMBER || !v->is_integer || v->integer < 0 ||
                v->integer >= width[s])
                st = fib_model_error(L, G->label, "'gather' index out of range "
                                     "of its source group (gather[%d][%lld])",
                                     s, (long long)i);
            else
                idx[s][i] = v->integer;
        }
    }
    if (st != FIB_OK) {
        fib_free(idx[0]);
        fib_free(idx[1]);
        return st;
    }
    if (product)
        return done(L, G, fib_graph_add_product_gather(L->graph, G->sources[0],
                                                       G->sources[1], G->units, idx[0],
                                                       idx[1], id));
    return done(L, G, fib_graph_add_sum_gather(L->graph, G->sources[0],
                                               G->sources[1], G->units, idx[0],
                                               idx[1], id));
}

/* The six window numbers params[from ..]: kernel, stride >= 1, pad >= 0. */
static int32_t check_window(loader *L, const group *G, int64_t from)
{
    for (int x = 0; x < 6; x++) {
        int64_t v = G->params[from + x], lo = x < 4 ? 1 : 0;
        if (v < lo || v > INT32_MAX)
            return fib_model_error(L, G->label, "'params' item %lld (%s) is "
                                   "%lld; kernel and stride must be in [1, "
                                   "2^31), padding in [0, 2^31)",
                                   (long long)(from + x),
                                   x < 2 ? "kernel" : x < 4 ? "stride" : "padding",
                                   (long long)v);
    }
    return FIB_OK;
}

static int32_t load_conv(loader *L, const group *G, int32_t *id)
{
    int32_t st = no_extras(L, G, true, false);
    if (st == FIB_OK)
        st = expect_params(L, G, 7);
    if (st == FIB_OK)
        st = check_window(L, G, 0);
    if (st != FIB_OK)
        return st;
    const int64_t *p = G->params;
    int64_t in = source_of(L, G, 0)->n_units, groups = p[6];
    if (groups < 1 || in % groups || G->units % groups)
        return fib_model_error(L, G->label, "'params' item 6 (groups) is %lld; "
                               "it must divide both %lld input and %lld output "
                               "channels", (long long)groups, (long long)in,
                               (long long)G->units);
    const fib_st_tensor *t[2];
    st = tensor_of(L, G, "weight", true, 4,
                   (int64_t[]){G->units, in / groups, p[0], p[1]}, &t[0]);
    if (st == FIB_OK)
        st = vector_of(L, G, "bias", false, G->units, &t[1]);
    tensor_set s;
    if (st == FIB_OK)
        st = set_make(L, t, 2, &s);
    if (st != FIB_OK)
        return st;
    st = fib_graph_add_conv(L->graph, G->sources[0], G->units, p[0], p[1], p[2],
                            p[3], p[4], p[5], groups, s.dtype, s.data[0],
                            s.data[1], s.flags, id);
    set_free(&s);
    return done(L, G, st);
}

static int32_t load_pool(loader *L, const group *G, int32_t *id)
{
    int32_t st = no_extras(L, G, true, false);
    if (st == FIB_OK)
        st = expect_params(L, G, 7 + G->units);
    if (st == FIB_OK && G->params[0] != FIB_POOL_MAX && G->params[0] != FIB_POOL_AVG)
        st = fib_model_error(L, G->label, "'params' item 0 (kind) is %lld; "
                             "pooling is 0 (max) or 1 (average)",
                             (long long)G->params[0]);
    if (st == FIB_OK)
        st = check_window(L, G, 1);
    int64_t *reads = NULL;
    if (st == FIB_OK)
        st = read_gather(L, G, 7, G->units, source_of(L, G, 0)->n_units, &reads);
    if (st != FIB_OK)
        return st;
    const int64_t *p = G->params;
    if (!reads)
        st = fib_graph_add_pool(L->graph, G->sources[0], (int32_t)p[0], p[1], p[2],
                                p[3], p[4], p[5], p[6], id);
    else
        st = fib_graph_add_pool_gather(L->graph, G->sources[0], (int32_t)p[0],
                                       p + 1, G->units, reads, id);
    return done(L, G, st);
}

static int32_t load_flatten(loader *L, const group *G, int32_t *id)
{
    int32_t st = no_extras(L, G, false, false);
    if (st != FIB_OK)
        return st;
    const fib_group *src = source_of(L, G, 0);
    int64_t width;
    if (!fib_mul_i64(src->n_units, fib_group_positions(src), &width) ||
        width != G->units)
        return fib_model_error(L, G->label, "'units' is %lld but flattening "
                               "group %d gives %lld x %lld x %lld",
                               (long long)G->units, (int)G->sources[0],
                               (long long)src->n_units, (long long)src->rows,
                               (long long)src->cols);
    return done(L, G, fib_graph_add_flatten(L->graph, G->sources[0], id));
}

static int32_t load_affine(loader *L, const group *G, int32_t *id)
{
    int32_t st = no_extras(L, G, true, false);
    if (st == FIB_OK)
        st = expect_params(L, G, G->units);
    const fib_st_tensor *t[2] = {NULL, NULL};
    if (st == FIB_OK)
        st = vector_of(L, G, "scale", true, G->units, &t[0]);
    if (st == FIB_OK)
        st = vector_of(L, G, "shift", false, G->units, &t[1]);
    int64_t *reads = NULL;
    if (st == FIB_OK)
        st = read_gather(L, G, 0, G->units, source_of(L, G, 0)->n_units, &reads);
    if (st != FIB_OK)
        return st;
    if (!reads) {
        tensor_set s;
        st = set_make(L, t, 2, &s);
        if (st != FIB_OK)
            return st;
        st = fib_graph_add_affine(L->graph, G->sources[0], s.dtype, s.data[0],
                                  s.data[1], s.flags, id);
        set_free(&s);
        return done(L, G, st);
    }
    double *scale = NULL, *shift = NULL;
    st = owned_copy(L, G, "scale", t[0], false, &scale);
    if (st == FIB_OK)
        st = owned_copy(L, G, "shift", t[1], false, &shift);
    if (st != FIB_OK) {
        fib_free(scale);
        fib_free(reads);
        return st;
    }
    return done(L, G, fib_graph_add_affine_gather(L->graph, G->sources[0], G->units,
                                                  scale, shift, reads, id));
}

static int32_t load_gated(loader *L, const group *G, int32_t *id)
{
    int64_t gates = G->op == FIB_OP_LSTM ? 4 : 3, rows;
    int64_t n_in = source_of(L, G, 0)->n_units;
    if (!fib_mul_i64(gates, G->units, &rows))
        return fib_model_error(L, G->label, "'units' is too large");
    int32_t st = no_extras(L, G, false, false);
    const fib_st_tensor *t[4] = {NULL, NULL, NULL, NULL};
    if (st == FIB_OK)
        st = tensor_of(L, G, "weight_ih", true, 2, (int64_t[]){rows, n_in}, &t[0]);
    if (st == FIB_OK)
        st = tensor_of(L, G, "weight_hh", true, 2, (int64_t[]){rows, G->units}, &t[1]);
    if (st == FIB_OK)
        st = vector_of(L, G, "bias_ih", false, rows, &t[2]);
    if (st == FIB_OK)
        st = vector_of(L, G, "bias_hh", false, rows, &t[3]);
    tensor_set s;
    if (st == FIB_OK)
        st = set_make(L, t, 4, &s);
    if (st != FIB_OK)
        return st;
    if (G->op == FIB_OP_LSTM)
        st = fib_graph_add_lstm(L->graph, G->sources[0], G->units, s.dtype,
                                s.data[0], s.data[1], s.data[2], s.data[3],
                                s.flags, id);
    else
        st = fib_graph_add_gru(L->graph, G->sources[0], G->units, s.dtype,
                               s.data[0], s.data[1], s.data[2], s.data[3],
                               s.flags, id);
    set_free(&s);
    return done(L, G, st);
}

static int32_t not_a_sequence(loader *L, const group *G, const fib_group *src)
{
    return fib_model_error(L, G->label, "source group %d is not a sequence (positions "
                           "[%lld, %lld]; a sequence has cols = 1)", (int)G->sources[0],
                           (long long)src->rows, (long long)src->cols);
}

static int32_t load_last_step(loader *L, const group *G, int32_t *id)
{
    int32_t st = no_extras(L, G, true, false);
    if (st != FIB_OK)
        return st;
    const fib_group *src = source_of(L, G, 0);
    if (src->cols != 1)
        return not_a_sequence(L, G, src);
    /* params may be left out for the identity */
    int64_t *reads = NULL;
    if (G->n_params > 0 || G->units != src->n_units) {
        st = expect_params(L, G, G->units);
        if (st == FIB_OK)
            st = read_gather(L, G, 0, G->units, src->n_units, &reads);
        if (st != FIB_OK)
            return st;
    }
    if (!reads)
        return done(L, G, fib_graph_add_last_step(L->graph, G->sources[0], id));
    return done(L, G, fib_graph_add_last_step_gather(L->graph, G->sources[0],
                                                     G->units, reads, id));
}

/* params: n_heads, per head its pair count, per pair (q unit, k unit), per
 * unit (head, v unit); then, for a causal or rotary core only, its options
 * (FIB_ATTEND_CAUSAL | FIB_ATTEND_ROTARY) and, when rotary, per pair its
 * phase kind (0 cos, 1 sin); scalar: the softmax scale; tensors
 * pair_multiplicity (one value per pair, > 0 without rotary) and, when
 * rotary, pair_frequency (one finite value per pair). */
static int32_t check_attend_params(loader *L, const group *G, int64_t *n_heads,
                                   int64_t *n_pairs, int64_t *options)
{
    const int64_t *p = G->params;
    int64_t n = G->n_params;
    if (n < 1 || p[0] < 1 || p[0] > n - 1)
        return fib_model_error(L, G->label, "'params' must start with the "
                               "number of heads (>= 1) and a pair count per "
                               "head");
    int64_t heads = p[0], pairs = 0;
    for (int64_t h = 0; h < heads; h++) {
        int64_t c = p[1 + h];
        if (c < 0 || c > n)
            return fib_model_error(L, G->label, "'params' item %lld: head %lld "
                                   "has %lld pairs", (long long)(1 + h),
                                   (long long)h, (long long)c);
        pairs += c;
        if (pairs > n)
            return fib_model_error(L, G->label, "'params': more pairs than "
                                   "the array holds");
    }
    int64_t want = 1 + heads + 2 * pairs + 2 * G->units;
    *options = n > want ? p[want] : 0;
    if (n > want && (*options < 1 || *options > (FIB_ATTEND_CAUSAL | FIB_ATTEND_ROTARY)))
        return fib_model_error(L, G->label, "'params' item %lld (options) is %lld; "
                               "1 (causal), 2 (rotary) or 3 (both)", (long long)want,
                               (long long)*options);
    int64_t extra = n > want ? 1 + (*options & FIB_ATTEND_ROTARY ? pairs : 0) : 0;
    if (n != want + extra)
        return fib_model_error(L, G->label, "'params' must hold %lld integers "
                               "for %lld heads, %lld pairs and %lld units, not "
                               "%lld", (long long)(want + extra), (long long)heads,
                               (long long)pairs, (long long)G->units,
                               (long long)n);
    for (int64_t x = 0; x < extra - 1; x++)
        if (p[want + 1 + x] != 0 && p[want + 1 + x] != 1)
            return fib_model_error(L, G->label, "'params': pair %lld's phase kind is "
                                   "%lld; 0 (cos) or 1 (sin)", (long long)x,
                                   (long long)p[want + 1 + x]);
    int64_t nq = source_of(L, G, 0)->n_units, nk = source_of(L, G, 1)->n_units;
    int64_t nv = source_of(L, G, 2)->n_units;
    const int64_t *pq = p + 1 + heads, *pu = pq + 2 * pairs;
    for (int64_t x = 0; x < pairs; x++)
        if (pq[2 * x] < 0 || pq[2 * x] >= nq || pq[2 * x + 1] < 0 ||
            pq[2 * x + 1] >= nk)
            return fib_model_error(L, G->label, "'params': pair %lld (q unit "
                                   "%lld, k unit %lld) out of range of the q "
                                   "group (%lld units) or the k group (%lld)",
                                   (long long)x, (long long)pq[2 * x],
                                   (long long)pq[2 * x + 1], (long long)nq,
                                   (long long)nk);
    for (int64_t u = 0; u < G->units; u++)
        if (pu[2 * u] < 0 || pu[2 * u] >= heads || pu[2 * u + 1] < 0 ||
            pu[2 * u + 1] >= nv)
            return fib_model_error(L, G->label, "'params': unit %lld (head "
                                   "%lld, v unit %lld) out of range of %lld "
                                   "heads or the v group (%lld units)",
                                   (long long)u, (long long)pu[2 * u],
                                   (long long)pu[2 * u + 1], (long long)heads,
                                   (long long)nv);
    *n_heads = heads;
    *n_pairs = pairs;
    return FIB_OK;
}

static int32_t load_attend(loader *L, const group *G, int32_t *id)
{
    int32_t st = no_extras(L, G, true, true);
    if (st != FIB_OK)
        return st;
    const fib_group *q = source_of(L, G, 0), *k = source_of(L, G, 1),
                    *v = source_of(L, G, 2);
    if (q->rows != k->rows || q->cols != k->cols || q->rows != v->rows ||
        q->cols != v->cols)
        return fib_model_error(L, G->label, "'sources': the q, k and v groups "
                               "must have the same positions");
    if (!G->has_scalar)
        return fib_model_error(L, G->label, "'scalar' (the softmax scale) is "
                               "missing");
    int64_t heads = 0, pairs = 0, options = 0;
    st = check_attend_params(L, G, &heads, &pairs, &options);
    bool rotary = options & FIB_ATTEND_ROTARY;
    const fib_st_tensor *t = NULL, *tf = NULL;
    if (st == FIB_OK)
        st = vector_of(L, G, "pair_multiplicity", pairs > 0, pairs, &t);
    if (st == FIB_OK)
        st = vector_of(L, G, "pair_frequency", rotary && pairs > 0, pairs, &tf);
    if (st == FIB_OK && tf && !rotary)
        st = fib_model_error(L, G->label, "tensor 'pair_frequency' without the rotary "
                             "option in 'params'");
    double *mult = NULL, *omega = NULL;
    /* a rotary core's sin pairs carry negative multiplicities */
    if (st == FIB_OK)
        st = owned_copy(L, G, "pair_multiplicity", t, !rotary, &mult);
    if (st == FIB_OK)
        st = owned_copy(L, G, "pair_frequency", tf, false, &omega);
    if (st != FIB_OK) {
        fib_free(mult);
        return st;
    }
    fib_attend *a = fib_calloc(1, sizeof *a);
    if (a) {
        int64_t np = pairs > 0 ? pairs : 1;
        a->n_heads = heads;
        a->n_pairs = pairs;
        a->scale = G->scalar;
        a->head_start = fib_alloc(heads + 1, sizeof *a->head_start);
        a->pair_q = fib_alloc(np, sizeof *a->pair_q);
        a->pair_k = fib_alloc(np, sizeof *a->pair_k);
        a->pair_mult = mult;
        a->unit_head = fib_alloc(G->units, sizeof *a->unit_head);
        a->unit_v = fib_alloc(G->units, sizeof *a->unit_v);
        if (!a->pair_mult)
            a->pair_mult = fib_calloc(1, sizeof *a->pair_mult);
        mult = NULL;
        a->causal = options & FIB_ATTEND_CAUSAL;
        if (rotary) {
            a->pair_omega = omega ? omega : fib_calloc(1, sizeof *a->pair_omega);
            a->pair_sin = fib_alloc(pairs > 0 ? pairs : 1, sizeof *a->pair_sin);
            omega = NULL;
        }
    }
    if (!a || !a->head_start || !a->pair_q || !a->pair_k || !a->pair_mult ||
        !a->unit_head || !a->unit_v || (rotary && (!a->pair_omega || !a->pair_sin))) {
        fib_free(mult);
        fib_free(omega);
        fib_attend_free(a);
        return fib_error(FIB_E_NOMEM, "%s: out of memory", L->path);
    }
    const int64_t *p = G->params;
    const int64_t *pq = p + 1 + heads, *pu = pq + 2 * pairs;
    a->head_start[0] = 0;
    for (int64_t h = 0; h < heads; h++)
        a->head_start[h + 1] = a->head_start[h] + p[1 + h];
    for (int64_t x = 0; x < pairs; x++) {
        a->pair_q[x] = pq[2 * x];
        a->pair_k[x] = pq[2 * x + 1];
    }
    for (int64_t u = 0; u < G->units; u++) {
        a->unit_head[u] = pu[2 * u];
        a->unit_v[u] = pu[2 * u + 1];
    }
    for (int64_t x = 0; rotary && x < pairs; x++)
        a->pair_sin[x] = (uint8_t)pu[2 * G->units + 1 + x];
    return done(L, G, fib_graph_add_attend_owned(L->graph, G->sources[0],
                                                 G->sources[1], G->sources[2],
                                                 G->units, a, id));
}

static int32_t load_norm(loader *L, const group *G, int32_t *id)
{
    int32_t st = no_extras(L, G, true, true);
    if (st == FIB_OK)
        st = expect_params(L, G, 1 + G->units);
    if (st != FIB_OK)
        return st;
    int64_t kind = G->params[0];
    if (kind != FIB_NORM_LAYER && kind != FIB_NORM_RMS)
        return fib_model_error(L, G->label, "'params' item 0 (kind) is %lld; a "
                               "norm is 0 (LayerNorm) or 1 (RMSNorm)",
                               (long long)kind);
    if (!G->has_scalar || !(G->scalar > 0))
        return fib_model_error(L, G->label, "'scalar' (epsilon) must be a "
                               "finite number > 0");
    const fib_st_tensor *t[3] = {NULL, NULL, NULL};
    st = vector_of(L, G, "weight", false, G->units, &t[0]);
    if (st == FIB_OK)
        st = vector_of(L, G, "bias", false, G->units, &t[1]);
    if (st == FIB_OK)
        st = vector_of(L, G, "multiplicity", false, G->units, &t[2]);
    double *mult = NULL;
    if (st == FIB_OK)
        st = owned_copy(L, G, "multiplicity", t[2], true, &mult);
    int64_t *gather = NULL;
    if (st == FIB_OK)
        st = read_gather(L, G, 1, G->units, source_of(L, G, 0)->n_units, &gather);
    if (st != FIB_OK) {
        fib_free(mult);
        return st;
    }
    bool plain = !gather;
    for (int64_t i = 0; plain && mult && i < G->units; i++)
        plain = mult[i] == 1.0;
    if (plain) {
        fib_free(mult);
        tensor_set s;
        st = set_make(L, t, 2, &s);
        if (st != FIB_OK)
            return st;
        st = fib_graph_add_norm(L->graph, G->sources[0], (int32_t)kind, s.dtype,
                                s.data[0], s.data[1], G->scalar, s.flags, id);
        set_free(&s);
        return done(L, G, st);
    }
    double *weight = NULL, *bias = NULL;
    st = owned_copy(L, G, "weight", t[0], false, &weight);
    if (st == FIB_OK)
        st = owned_copy(L, G, "bias", t[1], false, &bias);
    if (st != FIB_OK) {
        fib_free(weight);
        fib_free(mult);
        fib_free(gather);
        return st;
    }
    return done(L, G, fib_graph_add_norm_owned(L->graph, G->sources[0],
                                               (int32_t)kind, G->scalar, G->units,
                                               gather, weight, bias, mult, id));
}

/* params: the number k of prepended positions, then per unit its source
 * unit; tensor values: k x units (absent when k is 0). */
static int32_t load_prepend(loader *L, const group *G, int32_t *id)
{
    int32_t st = no_extras(L, G, true, false);
    if (st == FIB_OK)
        st = expect_params(L, G, 1 + G->units);
    if (st != FIB_OK)
        return st;
    int64_t k = G->params[0];
    const fib_group *src = source_of(L, G, 0);
    if (k < 0 || k > FIB_MAX_UNITS || k * G->units > FIB_MAX_UNITS)
        return fib_model_error(L, G->label, "'params' item 0: %lld prepended positions",
                               (long long)k);
    const fib_st_tensor *t = NULL;
    if (k > 0)
        st = tensor_of(L, G, "values", true, 2, (int64_t[]){k, G->units}, &t);
    else if (G->tensors && G->tensors != G->json && G->tensors->n_items > 0)
        st = fib_model_error(L, G->label, "'tensors': a prepend of 0 positions has none");
    int64_t *reads = NULL;
    double *values = NULL;
    if (st == FIB_OK)
        st = read_gather(L, G, 1, G->units, src->n_units, &reads);
    if (st == FIB_OK && !reads) /* as users build it: the file's dtype */
        return done(L, G, fib_graph_add_prepend(L->graph, G->sources[0], k,
                                                t ? t->dtype : FIB_DTYPE_F64,
                                                t ? t->data : NULL, id));
    if (st == FIB_OK)
        st = owned_copy(L, G, "values", t, false, &values);
    if (st != FIB_OK) {
        fib_free(reads);
        return st;
    }
    return done(L, G, fib_graph_add_prepend_owned(L->graph, G->sources[0], k, G->units,
                                                  values, reads, id));
}

/* params: per unit its source unit; tensor shift: positions x units. */
static int32_t load_position_shift(loader *L, const group *G, int32_t *id)
{
    int32_t st = no_extras(L, G, true, false);
    if (st == FIB_OK)
        st = expect_params(L, G, G->units);
    const fib_group *src = source_of(L, G, 0);
    const fib_st_tensor *t = NULL;
    if (st == FIB_OK)
        st = tensor_of(L, G, "shift", true, 2,
                       (int64_t[]){fib_group_positions(src), G->units}, &t);
    int64_t *reads = NULL;
    double *shift = NULL;
    if (st == FIB_OK)
        st = read_gather(L, G, 0, G->units, src->n_units, &reads);
    if (st == FIB_OK && !reads) /* as users build it: the file's dtype */
        return done(L, G, fib_graph_add_position_shift(L->graph, G->sources[0], t->dtype,
                                                       t->data, id));
    if (st == FIB_OK)
        st = owned_copy(L, G, "shift", t, false, &shift);
    if (st != FIB_OK) {
        fib_free(reads);
        return st;
    }
    return done(L, G, fib_graph_add_position_shift_owned(L->graph, G->sources[0], G->units,
                                                         shift, reads, id));
}

/* params: the position (from the start), then per unit its source unit. */
static int32_t load_select_step(loader *L, const group *G, int32_t *id)
{
    int32_t st = no_extras(L, G, true, false);
    if (st == FIB_OK)
        st = expect_params(L, G, 1 + G->units);
    if (st != FIB_OK)
        return st;
    const fib_group *src = source_of(L, G, 0);
    if (src->cols != 1)
        return not_a_sequence(L, G, src);
    if (G->params[0] < 0 || G->params[0] >= src->rows)
        return fib_model_error(L, G->label, "'params' item 0: position %lld is outside "
                               "the %lld steps of group %d", (long long)G->params[0],
                               (long long)src->rows, (int)G->sources[0]);
    int64_t *reads = NULL;
    st = read_gather(L, G, 1, G->units, src->n_units, &reads);
    if (st != FIB_OK)
        return st;
    return done(L, G, fib_graph_add_select_step_gather(L->graph, G->sources[0], G->params[0],
                                                       G->units, reads, id));
}

int32_t fib_model_add_block(loader *L, const group *G, int32_t *id)
{
    switch (G->op) {
    case FIB_OP_DENSE: return load_dense(L, G, id);
    case FIB_OP_SUM:
    case FIB_OP_PRODUCT: return load_sum(L, G, id);
    case FIB_OP_CONV: return load_conv(L, G, id);
    case FIB_OP_POOL: return load_pool(L, G, id);
    case FIB_OP_FLATTEN: return load_flatten(L, G, id);
    case FIB_OP_AFFINE: return load_affine(L, G, id);
    case FIB_OP_LSTM:
    case FIB_OP_GRU: return load_gated(L, G, id);
    case FIB_OP_LAST_STEP: return load_last_step(L, G, id);
    case FIB_OP_ATTEND: return load_attend(L, G, id);
    case FIB_OP_NORM: return load_norm(L, G, id);
    case FIB_OP_PREPEND: return load_prepend(L, G, id);
    case FIB_OP_POSITION_SHIFT: return load_position_shift(L, G, id);
    case FIB_OP_SELECT_STEP: return load_select_step(L, G, id);
    default:
        return fib_model_error(L, G->label, "op %d cannot be read", (int)G->op);
    }
}
