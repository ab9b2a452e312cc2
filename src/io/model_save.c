/* Model files: writing a graph (and a base's projection) as safetensors
 * with the structure metadata, version FIB_MODEL_VERSION. Every block is
 * described generically: op, sources, units, positions, activation, its
 * tensors by name, its integer params and its scalar, exactly as
 * fib_graph_tensor_info, fib_graph_block_params and fib_graph_block_scalar
 * give them; model_blocks.c reads them back. */
#include "io/model_io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TENSORS 4

static int compare_strings(const void *a, const void *b)
{
    const char *const *x = a;
    const char *const *y = b;
    return strcmp(*x, *y);
}

static int32_t n_tensors_of(const fib_graph *g, int32_t i)
{
    const fib_group *grp = &g->groups[i];
    fib_tensor_view v;
    int32_t n = 0;
    while (n < MAX_TENSORS && grp->ops && grp->ops->tensor &&
           grp->ops->tensor(g, i, n, &v))
        n++;
    return n;
}

/* Whether every group with tensors has a distinct, non-empty name (then
 * tensors are named after the groups: "<group>.<tensor>"). */
static bool names_usable(const fib_graph *g)
{
    int64_t n = 0;
    for (int32_t i = 0; i < g->n_groups; i++)
        if (n_tensors_of(g, i) > 0) {
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
        if (n_tensors_of(g, i) > 0)
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
    int64_t capacity;
    int32_t n_out;
    fib_st_out *tensors;
    int32_t *data_dtypes; /* what each tensor's data is held in */
    void **buffers;
    char **names;
} saver;

static void saver_free(saver *s)
{
    for (int64_t i = 0; i < s->capacity; i++) {
        if (s->buffers)
            fib_free(s->buffers[i]);
        if (s->names)
            fib_free(s->names[i]);
    }
    fib_free(s->buffers);
    fib_free(s->data_dtypes);
    fib_free(s->names);
    fib_free(s->tensors);
}

/* Multiplicities and rotary frequencies are structure, not weights: always
 * float64. A "multiplicity" tensor of ones (a norm as users build it) is
 * the file format's default and not written. */
static bool is_multiplicity(const char *name)
{
    return strcmp(name, "multiplicity") == 0 ||
           strcmp(name, "pair_multiplicity") == 0 || strcmp(name, "pair_frequency") == 0;
}

static bool all_ones(const fib_tensor_view *v)
{
    int64_t n = v->shape[0] * v->shape[1] * v->shape[2] * v->shape[3];
    for (int64_t i = 0; i < n; i++)
        if (fib_load(v->dtype, v->data, i) != 1.0)
            return false;
    return true;
}

/* A file the loader would refuse is not written: a value that is NaN or
 * infinite in the graph (borrowed weights changed after the graph was
 * built), or that overflows the file's dtype, gives FIB_E_NONFINITE. */
static int32_t check_finite(const saver *s, const fib_graph *g, int32_t i,
                            const fib_tensor_view *v, int32_t dt, const void *values,
                            int32_t values_dtype, int64_t count)
{
    for (int64_t x = 0; x < count; x++) {
        double y = fib_load(values_dtype, values, x);
        if (isfinite(dt == FIB_DTYPE_F32 ? (double)(float)y : y))
            continue;
        int32_t st = fib_group_find_nonfinite(g, i, s->path);
        if (st != FIB_OK)
            return st;
        int64_t per_row = count / v->shape[0];
        double value = fib_load(v->dtype, v->data, fib_view_at(v, x / per_row, x % per_row));
        char index[FIB_TENSOR_INDEX_TEXT];
        fib_tensor_index_text(v, x, index);
        const char *name = g->groups[i].name;
        return fib_error(FIB_E_NONFINITE,
                         "%s: group %d%s%s%s: %s %s = %g does not fit in float32 (save it "
                         "as float64)", s->path, (int)i, name ? " ('" : "", name ? name : "",
                         name ? "')" : "", v->name, index, value);
    }
    return FIB_OK;
}

/* Adds tensor `index` of group i to the file and to the group's
 * "tensors" object. */
static int32_t add_tensor(saver *s, const fib_graph *g, int32_t i, int32_t index,
                          int32_t dtype, bool use_names, fib_jbuf *j,
                          bool *first)
{
    const fib_group *grp = &g->groups[i];
    fib_tensor_view v;
    grp->ops->tensor(g, i, index, &v);
    if (strcmp(v.name, "multiplicity") == 0 && all_ones(&v))
        return FIB_OK;
    /* half tensors are written as float32 (exact) when their dtype is kept */
    int32_t dt = is_multiplicity(v.name)         ? FIB_DTYPE_F64
                 : dtype                         ? dtype
                 : fib_dtype_writable(v.dtype)   ? v.dtype
                                                 : FIB_DTYPE_F32;
    int64_t count = 1;
    for (int d = 0; d < 4; d++)
        if (!fib_mul_i64(count, v.shape[d], &count))
            return fib_error(FIB_E_OVERFLOW, "%s: group %d: tensor '%s' is too "
                             "large", s->path, (int)i, v.name);
    int32_t k = s->n_out;
    size_t len = (use_names ? strlen(grp->name) : 0) + strlen(v.name) + 32;
    s->names[k] = fib_alloc((int64_t)len, 1);
    /* a packed tensor is written from where it is, converted on the way
     * (no copy of the base or model is held); a strided one is gathered */
    bool packed = v.col_stride <= 1 && (v.shape[0] <= 1 || v.row_stride * v.shape[0] == count);
    s->buffers[k] = packed ? NULL : fib_alloc(count > 0 ? count : 1, fib_dtype_size(dt));
    if (!s->names[k] || (!packed && !s->buffers[k]))
        return fib_error(FIB_E_NOMEM, "%s: out of memory for group %d", s->path,
                         (int)i);
    if (use_names)
        snprintf(s->names[k], len, "%s.%s", grp->name, v.name);
    else
        snprintf(s->names[k], len, "groups.%d.%s", (int)i, v.name);
    int32_t st = packed ? FIB_OK : fib_graph_read_tensor(g, i, index, dt, s->buffers[k], count);
    if (st != FIB_OK)
        return fib_model_rewrap(st, s->path, "saving");
    st = check_finite(s, g, i, &v, dt, packed ? v.data : s->buffers[k],
                      packed ? v.dtype : dt, count);
    if (st != FIB_OK)
        return st;
    fib_st_out *t = &s->tensors[k];
    memset(t, 0, sizeof *t);
    t->name = s->names[k];
    t->dtype = dt;
    t->n_dims = v.ndim;
    for (int d = 0; d < v.ndim; d++)
        t->shape[d] = v.shape[d];
    t->data = packed ? v.data : s->buffers[k];
    s->data_dtypes[k] = packed ? v.dtype : dt;
    s->n_out++;
    fib_jbuf_raw(j, *first ? "" : ",");
    *first = false;
    fib_jbuf_string(j, v.name);
    fib_jbuf_raw(j, ":");
    fib_jbuf_string(j, s->names[k]);
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

/* The gathers a block reads its sources through (fib_block_ops.gathers),
 * under "gather" when not every one is the identity. */
static int32_t write_gathers(const fib_graph *g, int32_t i, const char *path,
                             fib_jbuf *j)
{
    const fib_group *grp = &g->groups[i];
    int64_t n = grp->n_units;
    int64_t *lists[3] = {NULL, NULL, NULL};
    int32_t st = FIB_OK;
    for (int32_t x = 0; x < grp->n_sources && st == FIB_OK; x++)
        if (!(lists[x] = fib_alloc(n, sizeof *lists[x])))
            st = fib_error(FIB_E_NOMEM, "%s: out of memory", path);
    if (st == FIB_OK && grp->ops->gathers(g, i, lists)) {
        fib_jbuf_raw(j, ",\"gather\":[");
        for (int32_t x = 0; x < grp->n_sources; x++) {
            if (x)
                fib_jbuf_raw(j, ",");
            write_index_array(j, lists[x], n);
        }
        fib_jbuf_raw(j, "]");
    }
    for (int32_t x = 0; x < grp->n_sources; x++)
        fib_free(lists[x]);
    return st;
}

static int32_t write_params(const fib_graph *g, int32_t i, const char *path,
                            fib_jbuf *j)
{
    int64_t n = 0;
    fib_graph_block_params(g, i, NULL, 0, &n);
    if (n == 0)
        return FIB_OK;
    int64_t *p = fib_alloc(n, sizeof *p);
    if (!p)
        return fib_error(FIB_E_NOMEM, "%s: out of memory for group %d", path,
                         (int)i);
    fib_graph_block_params(g, i, p, n, &n);
    fib_jbuf_raw(j, ",\"params\":");
    write_index_array(j, p, n);
    fib_free(p);
    return FIB_OK;
}

static int32_t write_group(saver *s, const fib_graph *g, int32_t i, int32_t dtype,
                           bool use_names, fib_jbuf *j)
{
    const fib_group *grp = &g->groups[i];
    fib_jbuf_raw(j, i ? ",{" : "{");
    if (grp->name && grp->name[0]) {
        fib_jbuf_raw(j, "\"name\":");
        fib_jbuf_string(j, grp->name);
        fib_jbuf_raw(j, ",");
    }
    fib_jbuf_raw(j, "\"op\":");
    fib_jbuf_string(j, fib_model_op_name(grp->op));
    fib_jbuf_raw(j, ",\"units\":");
    fib_jbuf_int(j, grp->n_units);
    fib_jbuf_raw(j, ",\"positions\":[");
    fib_jbuf_int(j, grp->rows);
    fib_jbuf_raw(j, ",");
    fib_jbuf_int(j, grp->cols);
    fib_jbuf_raw(j, "]");
    int32_t st = FIB_OK;
    if (!fib_group_is_input(g, i)) {
        fib_jbuf_raw(j, ",\"sources\":[");
        for (int32_t x = 0; x < grp->n_sources; x++) {
            if (x)
                fib_jbuf_raw(j, ",");
            fib_jbuf_int(j, grp->sources[x]);
        }
        fib_jbuf_raw(j, "]");
        const char *act_name = fib_activation_name(grp->activation);
        if (act_name) {
            fib_jbuf_raw(j, ",\"activation\":");
            fib_jbuf_string(j, act_name);
        }
        if (grp->activation == FIB_ACT_LEAKY_RELU || grp->act_param != 0) {
            fib_jbuf_raw(j, ",\"parameter\":");
            fib_jbuf_double(j, grp->act_param);
        }
        int32_t n = n_tensors_of(g, i);
        bool first = true;
        fib_jbuf t;
        fib_jbuf_init(&t);
        for (int32_t x = 0; x < n && st == FIB_OK; x++)
            st = add_tensor(s, g, i, x, dtype, use_names, &t, &first);
        if (st == FIB_OK)
            st = fib_jbuf_status(&t);
        if (st == FIB_OK && !first) { /* something was written */
            fib_jbuf_raw(j, ",\"tensors\":{");
            fib_jbuf_raw(j, t.data);
            fib_jbuf_raw(j, "}");
        }
        fib_jbuf_free(&t);
        if (st == FIB_OK)
            st = write_params(g, i, s->path, j);
        if (st == FIB_OK && grp->ops->scalar) {
            fib_jbuf_raw(j, ",\"scalar\":");
            fib_jbuf_double(j, grp->ops->scalar(g, i));
        }
        if (st == FIB_OK && grp->ops->gathers)
            st = write_gathers(g, i, s->path, j);
    }
    if (grp->eps_override >= 0) {
        fib_jbuf_raw(j, ",\"eps\":");
        fib_jbuf_double(j, grp->eps_override);
    }
    fib_jbuf_raw(j, "}");
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
    for (int32_t i = 0; i < g->n_groups; i++)
        if (!fib_model_op_name(g->groups[i].op))
            return fib_error(FIB_E_UNSUPPORTED, "%s: group %d is a %s group; "
                             "model files hold networks (input, dense, sum, "
                             "conv, pool, flatten, affine, lstm, gru, "
                             "last_step, attention, norm, product, prepend, "
                             "position_shift and select_step groups), not node "
                             "groups of general graphs", path, (int)i,
                             g->groups[i].ops ? g->groups[i].ops->name : "node");
    saver s = {path, (int64_t)MAX_TENSORS * g->n_groups + 1, 0, NULL, NULL, NULL, NULL};
    s.tensors = fib_calloc(s.capacity, sizeof(fib_st_out));
    s.data_dtypes = fib_calloc(s.capacity, sizeof(int32_t));
    s.buffers = fib_calloc(s.capacity, sizeof(void *));
    s.names = fib_calloc(s.capacity, sizeof(char *));
    fib_jbuf j;
    fib_jbuf_init(&j);
    int32_t st = FIB_OK;
    if (!s.tensors || !s.data_dtypes || !s.buffers || !s.names)
        st = fib_error(FIB_E_NOMEM, "%s: out of memory", path);
    bool use_names = names_usable(g);
    fib_jbuf_raw(&j, "{\"format\":\"" FIB_MODEL_FORMAT "\",\"version\":");
    fib_jbuf_int(&j, FIB_MODEL_VERSION);
    fib_jbuf_raw(&j, ",\"producer\":");
    char producer[64];
    snprintf(producer, sizeof producer, "libfibration %s", fib_version_string());
    fib_jbuf_string(&j, producer);
    fib_jbuf_raw(&j, ",\"groups\":[");
    for (int32_t i = 0; i < g->n_groups && st == FIB_OK; i++)
        st = write_group(&s, g, i, dtype, use_names, &j);
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
        const char *keys[] = {FIB_MODEL_META_KEY};
        const char *values[] = {j.data};
        st = fib_st_write_converting(path, s.tensors, s.data_dtypes, s.n_out, keys, values, 1);
    }
    fib_jbuf_free(&j);
    saver_free(&s);
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
