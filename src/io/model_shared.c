/* Helpers shared by the model-file sources (model.c, model_load.c,
 * model_blocks.c, model_save.c): activations and ops from their names, error
 * messages that name the file, and a dense group made from two tensors. */
#include "io/model_io.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Activation names are fib_activation_name's (model/activation.c). */
bool fib_model_activation_from_name(const char *name, int32_t *id)
{
    for (int32_t a = 0; fib_activation_name(a); a++)
        if (strcmp(fib_activation_name(a), name) == 0) {
            *id = a;
            return true;
        }
    return false;
}

/* Writes every activation name, comma-separated, into out[0 .. size): the
 * list a message gives of what is accepted, made from fib_activation_name
 * so that it names every activation the library has. */
void fib_model_activation_names(char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (int32_t a = 0; fib_activation_name(a) && used < size; a++) {
        int n = snprintf(out + used, size - used, "%s%s", a ? ", " : "",
                         fib_activation_name(a));
        used += n > 0 ? (size_t)n : 0;
    }
}

/* Re-raises the last error with the file (and what was being done) in
 * front. Library-side shape problems of a file are format errors. */
int32_t fib_model_rewrap(int32_t status, const char *path, const char *what)
{
    char inner[FIB_MESSAGE_SIZE];
    snprintf(inner, sizeof inner, "%s", fib_last_error());
    if (status == FIB_E_SHAPE || status == FIB_E_RANGE ||
        status == FIB_E_INVALID || status == FIB_E_OVERFLOW)
        status = FIB_E_FORMAT;
    return fib_error(status, "%s: %s: %s", path, what, inner);
}

const char *fib_model_op_name(int32_t op)
{
    return fib_op_is_network(op) ? fib_op_name(op) : NULL;
}

int32_t fib_model_op_from_name(const char *name)
{
    for (int32_t op = 0; fib_op_name(op); op++)
        if (fib_model_op_name(op) && strcmp(fib_model_op_name(op), name) == 0)
            return op;
    return -1;
}

int32_t fib_model_error(const fib_model_loader *L, const char *label,
                        const char *format, ...)
{
    char problem[600];
    va_list ap;
    va_start(ap, format);
    vsnprintf(problem, sizeof problem, format, ap);
    va_end(ap);
    if (!label)
        return fib_error(FIB_E_FORMAT, "%s: structure metadata: %s", L->path,
                         problem);
    return fib_error(FIB_E_FORMAT, "%s: structure metadata: %s: %s", L->path,
                     label, problem);
}

void fib_model_shape_text(int32_t n_dims, const int64_t *shape, char *buf,
                          size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int32_t d = 0; d < n_dims && n < size; d++)
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", d ? ", " : "",
                              (long long)shape[d]);
    if (n < size)
        snprintf(buf + n, size - n, "]");
}

typedef fib_model_loader loader;
#define rewrap fib_model_rewrap

/* Adds a dense group over `source` from weight (units x n_in) and optional
 * bias (units) tensors. `label` names the group in messages. */
int32_t fib_model_add_dense(loader *L, const char *label, int32_t source,
                         int64_t units, const fib_st_tensor *w,
                         const fib_st_tensor *b, int32_t *id)
{
    int64_t n_in;
    int32_t st = fib_graph_group_info(L->graph, source, NULL, &n_in, NULL, NULL,
                                      NULL, NULL, NULL);
    if (st != FIB_OK)
        return rewrap(st, L->path, label);
    char shape[128];
    fib_model_shape_text(w->n_dims, w->shape, shape, sizeof shape);
    if (w->n_dims != 2 || w->shape[0] != units || w->shape[1] != n_in)
        return fib_error(FIB_E_FORMAT,
                         "%s: %s: weight tensor '%s' has shape %s, expected "
                         "[%lld, %lld]", L->path, label, w->name, shape,
                         (long long)units, (long long)n_in);
    if (b) {
        fib_model_shape_text(b->n_dims, b->shape, shape, sizeof shape);
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
    if (st == FIB_OK)
        fib_model_block_added(L->graph, *id);
    return st == FIB_OK ? FIB_OK : rewrap(st, L->path, label);
}

void fib_model_block_added(const fib_graph *g, int32_t group)
{
    fib_group_drop_pages(g, group);
}
