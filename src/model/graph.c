/* The graph: groups of units in topological order, each produced by one
 * block, and what the graph keeps alive for borrowed weights. */
#include "model/model.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

/* Graph identities: a counter rather than the address, which a freed
 * graph's successor may get again. */
static atomic_uint_fast64_t last_identity;

int32_t fib_graph_create(fib_graph **out)
{
    if (!out)
        return fib_error(FIB_E_NULL, "fib_graph_create: out is NULL");
    fib_graph *g = fib_calloc(1, sizeof *g);
    if (!g)
        return fib_error(FIB_E_NOMEM, "fib_graph_create: out of memory");
    g->identity = atomic_fetch_add(&last_identity, 1) + 1;
    *out = g;
    return FIB_OK;
}

void fib_graph_changed(fib_graph *g)
{
    g->generation++;
}

void fib_graph_free(fib_graph *g)
{
    if (!g)
        return;
    for (int32_t i = 0; i < g->n_groups; i++) {
        fib_group *grp = &g->groups[i];
        if (grp->ops && grp->ops->free_block)
            grp->ops->free_block(grp->block);
        fib_free(grp->name);
        fib_free(grp->unit_mean);
        fib_free(grp->unit_var);
    }
    fib_free(g->groups);
    for (int32_t i = 0; i < g->n_resources; i++)
        g->resources[i].release(g->resources[i].handle);
    fib_free(g->resources);
    fib_free(g);
}

int32_t fib_graph_attach_resource(fib_graph *g, void *handle,
                                  void (*release)(void *handle))
{
    return fib_graph_attach_mapping(g, handle, release, NULL);
}

int32_t fib_graph_attach_mapping(fib_graph *g, void *handle, void (*release)(void *handle),
                                 void (*drop_pages)(void *handle, const void *at,
                                                    size_t bytes))
{
    fib_resource *grown =
        fib_alloc((int64_t)g->n_resources + 1, sizeof *grown);
    if (!grown)
        return fib_error(FIB_E_NOMEM, "out of memory attaching a resource");
    if (g->n_resources)
        memcpy(grown, g->resources, (size_t)g->n_resources * sizeof *grown);
    grown[g->n_resources].handle = handle;
    grown[g->n_resources].release = release;
    grown[g->n_resources].drop_pages = drop_pages;
    fib_free(g->resources);
    g->resources = grown;
    g->n_resources++;
    return FIB_OK;
}

int32_t fib_graph_check_group(const fib_graph *g, int32_t group,
                              const char *what)
{
    if (!g)
        return fib_error(FIB_E_NULL, "%s: graph is NULL", what);
    if (group < 0 || group >= g->n_groups)
        return fib_error(FIB_E_RANGE,
                         "%s: group %d out of range (the graph has %d groups)",
                         what, (int)group, (int)g->n_groups);
    return FIB_OK;
}

int32_t fib_check_dtype_and_flags(const char *fn, int32_t group, int32_t dtype, uint32_t flags,
                                  size_t *esize)
{
    size_t size = fib_dtype_size(dtype);
    if (!size)
        return fib_error(FIB_E_INVALID, "%s: group %d: unknown dtype %d", fn, (int)group,
                         (int)dtype);
    if (flags & ~FIB_COPY)
        return fib_error(FIB_E_INVALID, "%s: group %d: unknown flags 0x%x", fn, (int)group,
                         (unsigned)flags);
    if (esize)
        *esize = size;
    return FIB_OK;
}

/* Appends a group; on success the graph owns group->block and name. */
int32_t fib_graph_push_group(fib_graph *g, const fib_group *group,
                             int32_t *id_out)
{
    if (g->n_groups == INT32_MAX)
        return fib_error(FIB_E_OVERFLOW, "too many groups");
    /* positions follow the first source unless the block sets them */
    const fib_group *first = group->n_sources ? &g->groups[group->sources[0]] : NULL;
    int64_t rows = group->rows ? group->rows : first ? first->rows : 1;
    int64_t cols = group->rows ? group->cols : first ? first->cols : 1;
    int64_t positions, width;
    if (!fib_mul_i64(rows, cols, &positions) || !fib_mul_i64(positions, group->n_units, &width) ||
        width > FIB_MAX_UNITS)
        return fib_error(FIB_E_OVERFLOW,
                         "group %d: %lld units x %lld x %lld positions exceed 2^40",
                         (int)g->n_groups, (long long)group->n_units, (long long)rows,
                         (long long)cols);
    if (g->n_groups == g->cap_groups) {
        int32_t cap = g->cap_groups ? g->cap_groups : 8;
        cap = cap > INT32_MAX / 2 ? INT32_MAX : cap * 2;
        fib_group *grown = fib_alloc(cap, sizeof *grown);
        if (!grown)
            return fib_error(FIB_E_NOMEM, "out of memory adding group %d",
                             (int)g->n_groups);
        if (g->n_groups)
            memcpy(grown, g->groups, (size_t)g->n_groups * sizeof *grown);
        fib_free(g->groups);
        g->groups = grown;
        g->cap_groups = cap;
    }
    int32_t id = g->n_groups++;
    g->groups[id] = *group;
    g->groups[id].rows = rows;
    g->groups[id].cols = cols;
    g->groups[id].n_consumers = 0;
    g->groups[id].unit_mean = g->groups[id].unit_var = NULL; /* set apart */
    g->groups[id].eps_override = -1.0;
    for (int32_t s = 0; s < group->n_sources; s++)
        g->groups[group->sources[s]].n_consumers++;
    fib_graph_changed(g);
    *id_out = id;
    return FIB_OK;
}

int64_t fib_group_positions(const fib_group *grp)
{
    return grp->rows * grp->cols;
}

int64_t fib_group_activity_width(const fib_group *grp)
{
    return grp->n_units * grp->rows * grp->cols;
}

bool fib_group_is_input(const fib_graph *g, int32_t group)
{
    return g->groups[group].op == FIB_OP_INPUT;
}

bool fib_group_is_output(const fib_graph *g, int32_t group)
{
    return g->groups[group].n_consumers == 0;
}

bool fib_group_is_nodes(const fib_graph *g, int32_t group)
{
    const fib_block_ops *ops = g->groups[group].ops;
    return ops && ops->node_set;
}

const struct fib_dense *fib_group_matrix(const fib_graph *g, int32_t group)
{
    const fib_block_ops *ops = g->groups[group].ops;
    return ops && ops->matrix ? ops->matrix(g, group) : NULL;
}

static int32_t check_width(int64_t n, const char *what)
{
    if (n < 1)
        return fib_error(FIB_E_SHAPE, "%s: width %lld must be at least 1", what,
                         (long long)n);
    if (n > FIB_MAX_UNITS)
        return fib_error(FIB_E_OVERFLOW, "%s: width %lld exceeds 2^40", what,
                         (long long)n);
    return FIB_OK;
}

int32_t fib_graph_add_input(fib_graph *g, int64_t n_units, int32_t *group_out)
{
    if (!g || !group_out)
        return fib_error(FIB_E_NULL, "fib_graph_add_input: %s is NULL",
                         g ? "group_out" : "graph");
    int32_t status = check_width(n_units, "fib_graph_add_input");
    if (status)
        return status;
    fib_group grp = {.op = FIB_OP_INPUT, .n_units = n_units,
                     .activation = FIB_ACT_LINEAR};
    return fib_graph_push_group(g, &grp, group_out);
}

int32_t fib_graph_add_input_positions(fib_graph *g, int64_t n_units, int64_t rows,
                                      int64_t cols, int32_t *group_out)
{
    static const char fn[] = "fib_graph_add_input_positions";
    if (!g || !group_out)
        return fib_error(FIB_E_NULL, "%s: %s is NULL", fn, g ? "group_out" : "graph");
    int32_t status = check_width(n_units, fn);
    if (status)
        return status;
    int64_t positions, width;
    if (rows < 1 || cols < 1)
        return fib_error(FIB_E_SHAPE, "%s: %lld x %lld positions: both must be at least 1",
                         fn, (long long)rows, (long long)cols);
    if (!fib_mul_i64(rows, cols, &positions) || !fib_mul_i64(positions, n_units, &width) ||
        width > FIB_MAX_UNITS)
        return fib_error(FIB_E_OVERFLOW, "%s: %lld units x %lld x %lld positions exceed 2^40",
                         fn, (long long)n_units, (long long)rows, (long long)cols);
    fib_group grp = {.op = FIB_OP_INPUT, .n_units = n_units, .rows = rows,
                     .cols = cols, .activation = FIB_ACT_LINEAR};
    return fib_graph_push_group(g, &grp, group_out);
}

int32_t fib_graph_group_positions(const fib_graph *g, int32_t group, int64_t *rows,
                                  int64_t *cols)
{
    int32_t status = fib_graph_check_group(g, group, "fib_graph_group_positions");
    if (status)
        return status;
    if (rows)
        *rows = g->groups[group].rows;
    if (cols)
        *cols = g->groups[group].cols;
    return FIB_OK;
}

int32_t fib_graph_set_activation(fib_graph *g, int32_t group,
                                 int32_t activation, double parameter)
{
    int32_t status = fib_graph_check_group(g, group, "fib_graph_set_activation");
    if (status)
        return status;
    if (!fib_activation_valid(activation))
        return fib_error(FIB_E_INVALID,
                         "fib_graph_set_activation: group %d: unknown activation %d",
                         (int)group, (int)activation);
    if (fib_group_is_input(g, group))
        return fib_error(FIB_E_INVALID,
                         "fib_graph_set_activation: group %d is an input",
                         (int)group);
    if (!isfinite(parameter))
        return fib_error(FIB_E_INVALID,
                         "fib_graph_set_activation: group %d: parameter is not finite",
                         (int)group);
    g->groups[group].activation = activation;
    g->groups[group].act_param =
        activation == FIB_ACT_LEAKY_RELU ? parameter : 0.0;
    fib_graph_changed(g);
    return FIB_OK;
}

int32_t fib_graph_set_group_name(fib_graph *g, int32_t group, const char *name)
{
    int32_t status = fib_graph_check_group(g, group, "fib_graph_set_group_name");
    if (status)
        return status;
    if (!name)
        return fib_error(FIB_E_NULL, "fib_graph_set_group_name: name is NULL");
    if (strlen(name) > FIB_MAX_NAME)
        return fib_error(FIB_E_INVALID,
                         "fib_graph_set_group_name: group %d: name longer than %d bytes",
                         (int)group, FIB_MAX_NAME);
    char *copy = fib_strdup(name);
    if (!copy)
        return fib_error(FIB_E_NOMEM, "fib_graph_set_group_name: out of memory");
    fib_free(g->groups[group].name);
    g->groups[group].name = copy;
    return FIB_OK;
}

int32_t fib_graph_set_unit_statistics(fib_graph *g, int32_t group, const double *mean,
                                      const double *var, int64_t n_units)
{
    static const char fn[] = "fib_graph_set_unit_statistics";
    int32_t status = fib_graph_check_group(g, group, fn);
    if (status)
        return status;
    fib_group *grp = &g->groups[group];
    if (!mean && !var) {
        fib_free(grp->unit_mean);
        fib_free(grp->unit_var);
        grp->unit_mean = grp->unit_var = NULL;
        return FIB_OK;
    }
    const char *name = grp->name ? grp->name : "unnamed";
    if (!mean || !var)
        return fib_error(FIB_E_NULL, "%s: group %d (%s): %s is NULL (both NULL remove the "
                         "statistics)", fn, (int)group, name, mean ? "var" : "mean");
    if (n_units != grp->n_units)
        return fib_error(FIB_E_SHAPE, "%s: group %d (%s): %lld statistics for %lld units", fn,
                         (int)group, name, (long long)n_units, (long long)grp->n_units);
    for (int64_t u = 0; u < n_units; u++) {
        if (!isfinite(mean[u]) || !isfinite(var[u]))
            return fib_error(FIB_E_NONFINITE, "%s: group %d (%s): unit %lld: %s is %g", fn,
                             (int)group, name, (long long)u,
                             isfinite(mean[u]) ? "variance" : "mean",
                             isfinite(mean[u]) ? var[u] : mean[u]);
        if (var[u] < 0)
            return fib_error(FIB_E_INVALID, "%s: group %d (%s): unit %lld: variance %g is "
                             "negative", fn, (int)group, name, (long long)u, var[u]);
    }
    double *m = fib_alloc(n_units > 0 ? n_units : 1, sizeof *m);
    double *v = fib_alloc(n_units > 0 ? n_units : 1, sizeof *v);
    if (!m || !v) {
        fib_free(m);
        fib_free(v);
        return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    }
    memcpy(m, mean, (size_t)n_units * sizeof *m);
    memcpy(v, var, (size_t)n_units * sizeof *v);
    fib_free(grp->unit_mean);
    fib_free(grp->unit_var);
    grp->unit_mean = m;
    grp->unit_var = v;
    return FIB_OK;
}

int32_t fib_graph_set_group_eps(fib_graph *g, int32_t group, double eps)
{
    int32_t status = fib_graph_check_group(g, group, "fib_graph_set_group_eps");
    if (status)
        return status;
    if (isnan(eps) || eps == INFINITY)
        return fib_error(FIB_E_INVALID,
                         "fib_graph_set_group_eps: group %d: eps is %s", (int)group,
                         isnan(eps) ? "NaN" : "infinite");
    g->groups[group].eps_override = eps < 0 ? -1.0 : eps;
    return FIB_OK;
}

int32_t fib_graph_num_groups(const fib_graph *g, int32_t *n_out)
{
    if (!g || !n_out)
        return fib_error(FIB_E_NULL, "fib_graph_num_groups: NULL argument");
    *n_out = g->n_groups;
    return FIB_OK;
}

int32_t fib_graph_group_info(const fib_graph *g, int32_t group, int32_t *op,
                             int64_t *n_units, int32_t *activation,
                             double *parameter, int32_t *has_bias,
                             int32_t *n_sources, int32_t *is_output)
{
    int32_t status = fib_graph_check_group(g, group, "fib_graph_group_info");
    if (status)
        return status;
    const fib_group *grp = &g->groups[group];
    if (op)
        *op = grp->op;
    if (n_units)
        *n_units = grp->n_units;
    if (activation)
        *activation = grp->activation;
    if (parameter)
        *parameter = grp->act_param;
    if (has_bias)
        *has_bias = grp->ops && grp->ops->has_bias && grp->ops->has_bias(g, group);
    if (n_sources)
        *n_sources = grp->n_sources;
    if (is_output)
        *is_output = fib_group_is_output(g, group);
    return FIB_OK;
}

int32_t fib_graph_group_source(const fib_graph *g, int32_t group, int32_t i,
                               int32_t *source_out)
{
    int32_t status = fib_graph_check_group(g, group, "fib_graph_group_source");
    if (status)
        return status;
    if (!source_out)
        return fib_error(FIB_E_NULL, "fib_graph_group_source: source_out is NULL");
    if (i < 0 || i >= g->groups[group].n_sources)
        return fib_error(FIB_E_RANGE,
                         "fib_graph_group_source: group %d has %d sources, asked for %d",
                         (int)group, (int)g->groups[group].n_sources, (int)i);
    *source_out = g->groups[group].sources[i];
    return FIB_OK;
}

const char *fib_graph_group_name(const fib_graph *g, int32_t group)
{
    if (!g || group < 0 || group >= g->n_groups)
        return NULL;
    return g->groups[group].name ? g->groups[group].name : "";
}

int32_t fib_graph_io_width(const fib_graph *g, int64_t *n_inputs,
                           int64_t *n_outputs)
{
    if (!g)
        return fib_error(FIB_E_NULL, "fib_graph_io_width: graph is NULL");
    int64_t in = 0, out = 0;
    for (int32_t i = 0; i < g->n_groups; i++) {
        if (fib_group_is_input(g, i))
            in += fib_group_activity_width(&g->groups[i]);
        else if (fib_group_is_output(g, i))
            out += fib_group_activity_width(&g->groups[i]);
    }
    if (n_inputs)
        *n_inputs = in;
    if (n_outputs)
        *n_outputs = out;
    return FIB_OK;
}

int32_t fib_graph_num_parameters(const fib_graph *g, int64_t *n_out)
{
    if (!g || !n_out)
        return fib_error(FIB_E_NULL, "fib_graph_num_parameters: NULL argument");
    int64_t total = 0;
    for (int32_t i = 0; i < g->n_groups; i++)
        if (g->groups[i].ops && g->groups[i].ops->num_parameters)
            total += g->groups[i].ops->num_parameters(g, i);
    *n_out = total;
    return FIB_OK;
}
