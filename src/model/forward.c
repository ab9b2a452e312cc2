/* The reference forward pass, in double precision, so that users and tests
 * can check that a base computes what the original computes. */
#include "model/model.h"

#include <math.h>

void fib_activity_free(const fib_graph *g, double **activity)
{
    if (!activity)
        return;
    for (int32_t i = 0; i < g->n_groups; i++)
        fib_free(activity[i]);
    fib_free(activity);
}

static int32_t check_call(const fib_graph *g, int64_t batch, int32_t dtype,
                          const void *inputs, const void *outputs, const char *fn)
{
    if (!g || !inputs || !outputs)
        return fib_error(FIB_E_NULL, "%s: %s is NULL", fn,
                         !g ? "graph" : !inputs ? "inputs" : "outputs");
    if (batch < 1)
        return fib_error(FIB_E_SHAPE, "%s: batch %lld must be at least 1", fn, (long long)batch);
    if (!fib_dtype_writable(dtype))
        return fib_error(FIB_E_INVALID, "%s: dtype %d: FIB_DTYPE_F32 or FIB_DTYPE_F64 expected",
                         fn, (int)dtype);
    for (int32_t i = 0; i < g->n_groups; i++)
        if (fib_group_is_nodes(g, i))
            return fib_error(FIB_E_UNSUPPORTED,
                             "%s: group %d is a node group: graphs of nodes have no forward pass",
                             fn, (int)i);
    return FIB_OK;
}

static bool all_finite(const double *x, int64_t n)
{
    /* x - x is 0 for finite x and NaN otherwise: one branch per call */
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += x[i] - x[i];
    return sum == 0.0;
}

int32_t fib_forward_all(const fib_graph *g, int64_t batch, int32_t dtype,
                        const void *inputs, double ***activity_out)
{
    int64_t n_inputs = 0;
    fib_graph_io_width(g, &n_inputs, NULL);
    double **activity = fib_calloc(g->n_groups > 0 ? g->n_groups : 1, sizeof *activity);
    if (!activity)
        return fib_error(FIB_E_NOMEM, "forward: out of memory");
    int64_t column = 0;
    for (int32_t i = 0; i < g->n_groups; i++) {
        const fib_group *grp = &g->groups[i];
        int64_t cells, width = fib_group_activity_width(grp);
        if (!fib_mul_i64(batch, width, &cells)) {
            fib_activity_free(g, activity);
            return fib_error(FIB_E_OVERFLOW, "forward: batch %lld x %lld units overflows",
                             (long long)batch, (long long)width);
        }
        activity[i] = fib_alloc(cells, sizeof(double));
        if (!activity[i]) {
            fib_activity_free(g, activity);
            return fib_error(FIB_E_NOMEM, "forward: out of memory for group %d", (int)i);
        }
        if (fib_group_is_input(g, i)) {
            for (int64_t b = 0; b < batch; b++)
                for (int64_t u = 0; u < width; u++) {
                    double x = fib_load(dtype, inputs, b * n_inputs + column + u);
                    if (!isfinite(x)) {
                        fib_activity_free(g, activity);
                        return fib_error(FIB_E_NONFINITE,
                                         "forward: input %lld of sample %lld is not finite",
                                         (long long)(column + u), (long long)b);
                    }
                    activity[i][b * width + u] = x;
                }
            column += width;
            continue;
        }
        grp->ops->forward(g, i, batch, activity, activity[i]);
        /* Inputs are finite, so a NaN or infinity here comes from a weight
         * changed in borrowed memory (or from overflow, which is let
         * through); checked before the activation, which may hide it
         * (ReLU of NaN is 0). */
        if (!all_finite(activity[i], cells)) {
            int32_t status = fib_group_find_nonfinite(g, i, "forward");
            if (status) {
                fib_activity_free(g, activity);
                return status;
            }
        }
        fib_activation_apply(grp->activation, grp->act_param, activity[i], cells);
    }
    *activity_out = activity;
    return FIB_OK;
}

/* The activities of every group for the public call `fn`, its arguments
 * (and `group`, when one is asked for) checked first. */
static int32_t checked_forward(const fib_graph *g, int64_t batch, int32_t dtype,
                               const void *inputs, void *out, bool one_group, int32_t group,
                               const char *fn, double ***activity)
{
    int32_t status = check_call(g, batch, dtype, inputs, out, fn);
    if (!status && one_group)
        status = fib_graph_check_group(g, group, fn);
    if (status)
        return status;
    return fib_forward_all(g, batch, dtype, inputs, activity);
}

int32_t fib_graph_forward(const fib_graph *g, int64_t batch, int32_t dtype,
                          const void *inputs, void *outputs)
{
    double **activity;
    int32_t status = checked_forward(g, batch, dtype, inputs, outputs, false, 0,
                                     "fib_graph_forward", &activity);
    if (status)
        return status;
    int64_t n_outputs = 0, column = 0;
    fib_graph_io_width(g, NULL, &n_outputs);
    for (int32_t i = 0; i < g->n_groups; i++) {
        if (fib_group_is_input(g, i) || !fib_group_is_output(g, i))
            continue;
        int64_t n = fib_group_activity_width(&g->groups[i]);
        for (int64_t b = 0; b < batch; b++)
            for (int64_t u = 0; u < n; u++)
                fib_store(dtype, outputs, b * n_outputs + column + u, activity[i][b * n + u]);
        column += n;
    }
    fib_activity_free(g, activity);
    return FIB_OK;
}

int32_t fib_graph_forward_group(const fib_graph *g, int64_t batch, int32_t dtype,
                                const void *inputs, int32_t group, void *out)
{
    double **activity;
    int32_t status = checked_forward(g, batch, dtype, inputs, out, true, group,
                                     "fib_graph_forward_group", &activity);
    if (status)
        return status;
    int64_t n = fib_group_activity_width(&g->groups[group]);
    for (int64_t x = 0; x < batch * n; x++)
        fib_store(dtype, out, x, activity[group][x]);
    fib_activity_free(g, activity);
    return FIB_OK;
}
