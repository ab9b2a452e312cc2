/* Read-out of every block's parameters, integer attributes and scalar, so
 * that bindings can rebuild a base in their own framework. */
#include "model/model.h"
#include "kernels/stored.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int32_t view_of(const fib_graph *g, int32_t group, int32_t index,
                       fib_tensor_view *view, const char *fn)
{
    int32_t status = fib_graph_check_group(g, group, fn);
    if (status)
        return status;
    const fib_group *grp = &g->groups[group];
    if (index < 0 || !grp->ops || !grp->ops->tensor ||
        !grp->ops->tensor(g, group, index, view))
        return fib_error(FIB_E_RANGE, "%s: group %d has no tensor %d", fn, (int)group,
                         (int)index);
    return FIB_OK;
}

static int64_t elements(const fib_tensor_view *v)
{
    return v->shape[0] * v->shape[1] * v->shape[2] * v->shape[3];
}

int32_t fib_graph_tensor_info(const fib_graph *g, int32_t group, int32_t index,
                              int32_t *ndim, int64_t *shape, const char **name)
{
    fib_tensor_view v;
    int32_t status = view_of(g, group, index, &v, "fib_graph_tensor_info");
    if (status)
        return status;
    if (ndim)
        *ndim = v.ndim;
    if (shape)
        for (int d = 0; d < 4; d++)
            shape[d] = v.shape[d];
    if (name)
        *name = v.name;
    return FIB_OK;
}

int32_t fib_graph_tensor_dtype(const fib_graph *g, int32_t group, int32_t index,
                               int32_t *dtype_out)
{
    fib_tensor_view v;
    int32_t status = view_of(g, group, index, &v, "fib_graph_tensor_dtype");
    if (status)
        return status;
    if (!dtype_out)
        return fib_error(FIB_E_NULL, "fib_graph_tensor_dtype: dtype_out is NULL");
    *dtype_out = v.dtype;
    return FIB_OK;
}

/* n elements from `in` (dtype from) to `out` (dtype to), rounded to
 * nearest; the float32 and float64 pairs in typed loops (a base's tensors
 * are read whole into the rebuilt model). */
static void convert_row(int32_t from, const void *in, int32_t to, void *out, int64_t n)
{
    if (from == FIB_DTYPE_F64 && to == FIB_DTYPE_F32)
        for (int64_t x = 0; x < n; x++)
            ((float *)out)[x] = (float)((const double *)in)[x];
    else if (from == FIB_DTYPE_F32 && to == FIB_DTYPE_F64)
        for (int64_t x = 0; x < n; x++)
            ((double *)out)[x] = (double)((const float *)in)[x];
    else if (from == to && (from == FIB_DTYPE_F32 || from == FIB_DTYPE_F64))
        memcpy(out, in, (size_t)n * fib_dtype_size(from));
    else
        for (int64_t x = 0; x < n; x++)
            fib_store(to, out, x, fib_load(from, in, x));
}

int32_t fib_graph_read_tensor(const fib_graph *g, int32_t group, int32_t index,
                              int32_t dtype, void *out, int64_t count)
{
    static const char fn[] = "fib_graph_read_tensor";
    fib_tensor_view v;
    int32_t status = view_of(g, group, index, &v, fn);
    if (status)
        return status;
    if (!out)
        return fib_error(FIB_E_NULL, "%s: out is NULL", fn);
    if (!fib_dtype_writable(dtype))
        return fib_error(FIB_E_INVALID, "%s: dtype %d: FIB_DTYPE_F32 or FIB_DTYPE_F64 expected",
                         fn, (int)dtype);
    int64_t n = elements(&v), per_row = n / v.shape[0];
    if (count < n)
        return fib_error(FIB_E_BUFFER, "%s: tensor %s of group %d has %lld elements, got %lld",
                         fn, v.name, (int)group, (long long)n, (long long)count);
    size_t in_size = fib_dtype_size(v.dtype), out_size = fib_dtype_size(dtype);
    for (int64_t r = 0; r < v.shape[0] && v.col_stride > 1; r++)
        for (int64_t x = 0; x < per_row; x++)
            fib_store(dtype, out, r * per_row + x, fib_load(v.dtype, v.data, fib_view_at(&v, r, x)));
    for (int64_t r = 0; r < v.shape[0] && v.col_stride <= 1; r++)
        convert_row(v.dtype, (const char *)v.data + (size_t)(r * v.row_stride) * in_size, dtype,
                    (char *)out + (size_t)(r * per_row) * out_size, per_row);
    return FIB_OK;
}

int32_t fib_graph_block_params(const fib_graph *g, int32_t group, int64_t *params,
                               int64_t capacity, int64_t *count_out)
{
    int32_t status = fib_graph_check_group(g, group, "fib_graph_block_params");
    if (status)
        return status;
    if (!count_out || (capacity > 0 && !params))
        return fib_error(FIB_E_NULL, "fib_graph_block_params: NULL argument");
    const fib_group *grp = &g->groups[group];
    *count_out = grp->ops && grp->ops->params
                     ? grp->ops->params(g, group, params, capacity < 0 ? 0 : capacity)
                     : 0;
    return FIB_OK;
}

int32_t fib_graph_block_scalar(const fib_graph *g, int32_t group, double *value_out)
{
    int32_t status = fib_graph_check_group(g, group, "fib_graph_block_scalar");
    if (status)
        return status;
    if (!value_out)
        return fib_error(FIB_E_NULL, "fib_graph_block_scalar: value_out is NULL");
    const fib_group *grp = &g->groups[group];
    *value_out = grp->ops && grp->ops->scalar ? grp->ops->scalar(g, group) : 0.0;
    return FIB_OK;
}

void fib_tensor_index_text(const fib_tensor_view *v, int64_t flat,
                           char text[FIB_TENSOR_INDEX_TEXT])
{
    int64_t stride = elements(v);
    int len = 0;
    text[0] = '\0';
    for (int d = 0; d < v->ndim && d < 4; d++) {
        stride /= v->shape[d] > 0 ? v->shape[d] : 1;
        len += snprintf(text + len, FIB_TENSOR_INDEX_TEXT - (size_t)len, "%s%lld",
                        d ? ", " : "[", (long long)(flat / stride));
        flat %= stride;
    }
    if (len)
        snprintf(text + len, FIB_TENSOR_INDEX_TEXT - (size_t)len, "]");
}

/* The flat index of the first NaN or infinite element of a view, or -1. */
static int64_t first_nonfinite(const fib_tensor_view *v)
{
    int64_t per_row = v->shape[0] > 0 ? elements(v) / v->shape[0] : 0;
    if (v->col_stride > 1) { /* a block stored transposed: element by element */
        for (int64_t r = 0; r < v->shape[0]; r++)
            for (int64_t x = 0; x < per_row; x++)
                if (!isfinite(fib_load(v->dtype, v->data, fib_view_at(v, r, x))))
                    return r * per_row + x;
        return -1;
    }
    for (int64_t r = 0; r < v->shape[0]; r++) {
        bool bad = false;
        if (fib_dtype_is_half(v->dtype)) {
            bad = !fib_all_finite_stored(fib_kernels_active(), v->dtype,
                                         (const uint16_t *)v->data + r * v->row_stride,
                                         per_row);
        } else if (v->dtype == FIB_DTYPE_F32) {
            const float *row = (const float *)v->data + r * v->row_stride;
            for (int64_t x = 0; x < per_row; x++)
                bad |= !isfinite(row[x]);
        } else {
            const double *row = (const double *)v->data + r * v->row_stride;
            for (int64_t x = 0; x < per_row; x++)
                bad |= !isfinite(row[x]);
        }
        for (int64_t x = 0; bad && x < per_row; x++)
            if (!isfinite(fib_load(v->dtype, v->data, r * v->row_stride + x)))
                return r * per_row + x;
    }
    return -1;
}

int32_t fib_group_find_nonfinite(const fib_graph *g, int32_t group, const char *what)
{
    const fib_group *grp = &g->groups[group];
    fib_tensor_view v;
    for (int32_t t = 0; grp->ops && grp->ops->tensor && grp->ops->tensor(g, group, t, &v); t++) {
        int64_t flat = first_nonfinite(&v);
        if (flat < 0)
            continue;
        int64_t per_row = elements(&v) / v.shape[0];
        double value = fib_load(v.dtype, v.data, fib_view_at(&v, flat / per_row, flat % per_row));
        char index[FIB_TENSOR_INDEX_TEXT];
        fib_tensor_index_text(&v, flat, index);
        return fib_error(FIB_E_NONFINITE,
                         "%s: group %d%s%s%s: %s %s is %s (it was finite when the block was "
                         "added: borrowed weights must not change while the graph lives)",
                         what, (int)group, grp->name ? " ('" : "", grp->name ? grp->name : "",
                         grp->name ? "')" : "", v.name, index, isnan(value) ? "NaN" : "infinite");
    }
    return FIB_OK;
}

void fib_group_drop_pages(const fib_graph *g, int32_t group)
{
    bool mapped = false;
    for (int32_t i = 0; i < g->n_resources; i++)
        mapped = mapped || g->resources[i].drop_pages;
    const fib_group *grp = &g->groups[group];
    fib_tensor_view v;
    for (int32_t t = 0; mapped && grp->ops && grp->ops->tensor && grp->ops->tensor(g, group, t, &v);
         t++) {
        int64_t n = elements(&v);
        if (n <= 0 || v.row_stride < 0 || v.col_stride < 0)
            continue;
        /* from the first element to the last, whatever the strides */
        int64_t per_row = n / v.shape[0];
        int64_t last = fib_view_at(&v, v.shape[0] - 1, per_row - 1);
        fib_graph_drop_range(g, v.data, (size_t)(last + 1) * fib_dtype_size(v.dtype));
    }
}

void fib_graph_drop_range(const fib_graph *g, const void *at, size_t bytes)
{
    for (int32_t i = 0; i < g->n_resources; i++)
        if (g->resources[i].drop_pages)
            g->resources[i].drop_pages(g->resources[i].handle, at, bytes);
}

int32_t fib_narrow_values(const double *wide, int64_t count, float *narrow, int64_t first,
                          int32_t group, const char *what)
{
    /* front to back: in place, float x is written below double x + 1, unread */
    for (int64_t x = 0; x < count; x++) {
        double v = wide[x];
        narrow[x] = (float)v;
        if (!isfinite(narrow[x]))
            return fib_error(FIB_E_NONFINITE,
                             "fib_compress: group %d: merged %s %lld = %g does not fit in "
                             "float32 (compress to float64)", (int)group, what,
                             (long long)(first + x), v);
    }
    return FIB_OK;
}

int32_t fib_narrow_owned(void **buffer, int64_t count, int32_t group, const char *what)
{
    int32_t status = fib_narrow_values(*buffer, count, *buffer, 0, group, what);
    if (status)
        return status;
    size_t bytes;
    if (count > 0 && fib_bytes(count, sizeof(float), &bytes)) {
        void *shrunk = realloc(*buffer, bytes);
        if (shrunk)
            *buffer = shrunk;
    }
    return FIB_OK;
}
