/* The checks every kind's build (fib_block_ops.build) shares when it reads
 * a block's description (fib_block_source): tensors of a given shape,
 * float64 copies, integer params (their count, gathers, windows), and the
 * tensors handed to a public constructor. Messages carry the holder's
 * context through the description's fail and rewrap. */
#include "blocks/blocks.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const fib_group *fib_source_group(const fib_graph *g, const fib_block_source *S, int32_t s)
{
    return &g->groups[S->sources[s]];
}

int32_t fib_source_error(const fib_block_source *S, const char *format, ...)
{
    char problem[600];
    va_list ap;
    va_start(ap, format);
    vsnprintf(problem, sizeof problem, format, ap);
    va_end(ap);
    return S->fail(S, FIB_E_FORMAT, problem);
}

int32_t fib_source_nomem(const fib_block_source *S)
{
    return fib_error(FIB_E_NOMEM, "%s: out of memory", S->path);
}

int32_t fib_source_done(const fib_block_source *S, int32_t status)
{
    return status == FIB_OK ? FIB_OK : S->rewrap(S, status);
}

int32_t fib_source_tensor(const fib_block_source *S, const char *key, bool required,
                          int32_t n_dims, const int64_t *shape, fib_stored_tensor *out)
{
    memset(out, 0, sizeof *out);
    return S->tensor(S, key, required, n_dims, shape, out);
}

int32_t fib_source_vector(const fib_block_source *S, const char *key, bool required,
                          int64_t n, fib_stored_tensor *out)
{
    return fib_source_tensor(S, key, required, 1, &n, out);
}

void fib_source_tensors_free(fib_source_tensors *s)
{
    for (int x = 0; x < FIB_SOURCE_MAX_TENSORS; x++)
        fib_free(s->tmp[x]);
}

int32_t fib_source_tensors_make(const fib_block_source *S, const fib_stored_tensor *t, int n,
                                fib_source_tensors *s)
{
    memset(s, 0, sizeof *s);
    s->dtype = 0;
    bool mixed = false;
    for (int x = 0; x < n; x++)
        if (t[x].name) {
            if (s->dtype && s->dtype != t[x].dtype)
                mixed = true;
            s->dtype = t[x].dtype;
        }
    if (!s->dtype)
        s->dtype = FIB_DTYPE_F64;
    s->flags = S->copy ? FIB_COPY : 0u;
    for (int x = 0; x < n; x++)
        s->data[x] = t[x].name ? t[x].data : NULL;
    if (!mixed)
        return FIB_OK;
    s->dtype = FIB_DTYPE_F64;
    s->flags = FIB_COPY;
    for (int x = 0; x < n; x++) {
        if (!t[x].name)
            continue;
        double *d = fib_alloc(t[x].n_elements > 0 ? t[x].n_elements : 1, sizeof *d);
        if (!d) {
            fib_source_tensors_free(s);
            return fib_source_nomem(S);
        }
        for (int64_t i = 0; i < t[x].n_elements; i++)
            d[i] = fib_load(t[x].dtype, t[x].data, i);
        s->tmp[x] = d;
        s->data[x] = d;
    }
    return FIB_OK;
}

int32_t fib_source_weight_bias(const fib_block_source *S, int32_t n_dims, const int64_t *shape,
                               fib_source_tensors *s)
{
    fib_stored_tensor t[2] = {{0}};
    int32_t st = fib_source_tensor(S, "weight", true, n_dims, shape, &t[0]);
    if (st == FIB_OK)
        st = fib_source_vector(S, "bias", false, S->units, &t[1]);
    if (st == FIB_OK)
        st = fib_source_tensors_make(S, t, 2, s);
    return st;
}

int32_t fib_source_owned_copy(const fib_block_source *S, const char *key,
                              const fib_stored_tensor *t, bool positive, double **out)
{
    *out = NULL;
    if (!t->name)
        return FIB_OK;
    double *d = fib_alloc(t->n_elements > 0 ? t->n_elements : 1, sizeof *d);
    if (!d)
        return fib_source_nomem(S);
    for (int64_t i = 0; i < t->n_elements; i++) {
        d[i] = fib_load(t->dtype, t->data, i);
        if (!isfinite(d[i])) {
            fib_free(d);
            char problem[600];
            snprintf(problem, sizeof problem, "%s tensor '%s': element %lld is not finite",
                     key, t->name, (long long)i);
            return S->fail(S, FIB_E_NONFINITE, problem);
        }
        if (positive && !(d[i] > 0)) {
            double bad = d[i];
            fib_free(d);
            return fib_source_error(S, "%s tensor '%s': element %lld "
                                    "is %g; multiplicities must be > 0", key,
                                    t->name, (long long)i, bad);
        }
    }
    *out = d;
    return FIB_OK;
}

int32_t fib_source_expect_params(const fib_block_source *S, int64_t count)
{
    if (S->n_params != count)
        return fib_source_error(S, "'params' must hold %lld integers "
                                "for a %s block, not %lld", (long long)count,
                                fib_op_name(S->op), (long long)S->n_params);
    return FIB_OK;
}

int32_t fib_source_read_gather(const fib_block_source *S, int64_t from, int64_t n,
                               int64_t width, int64_t **out)
{
    *out = NULL;
    bool identity = n == width;
    for (int64_t i = 0; i < n; i++) {
        int64_t v = S->params[from + i];
        if (v < 0 || v >= width)
            return fib_source_error(S, "'params' item %lld: gather "
                                    "index %lld out of range of source group %d "
                                    "(%lld units)", (long long)(from + i),
                                    (long long)v, (int)S->sources[0],
                                    (long long)width);
        identity = identity && v == i;
    }
    if (identity)
        return FIB_OK;
    int64_t *g = fib_alloc(n, sizeof *g);
    if (!g)
        return fib_source_nomem(S);
    memcpy(g, S->params + from, (size_t)n * sizeof *g);
    *out = g;
    return FIB_OK;
}

int32_t fib_source_no_extras(const fib_block_source *S, bool params_allowed,
                             bool scalar_allowed, const char *const *tensor_keys)
{
    if (!params_allowed && S->n_params > 0)
        return fib_source_error(S, "'params': a %s block has none", fib_op_name(S->op));
    if (!scalar_allowed && S->has_scalar)
        return fib_source_error(S, "'scalar': a %s block has none", fib_op_name(S->op));
    return S->check_tensor_names(S, tensor_keys);
}

int32_t fib_source_check_window(const fib_block_source *S, int64_t from)
{
    for (int x = 0; x < 6; x++) {
        int64_t v = S->params[from + x], lo = x < 4 ? 1 : 0;
        if (v < lo || v > INT32_MAX)
            return fib_source_error(S, "'params' item %lld (%s) is "
                                    "%lld; kernel and stride must be in [1, "
                                    "2^31), padding in [0, 2^31)",
                                    (long long)(from + x),
                                    x < 2 ? "kernel" : x < 4 ? "stride" : "padding",
                                    (long long)v);
    }
    return FIB_OK;
}
