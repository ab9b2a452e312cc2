/* Stored statistics carried forward: a batch norm's running mean and
 * variance describe the outputs of the group it reads
 * (fib_graph_set_unit_statistics); each block that can say how its units'
 * pre-activations are distributed given its sources' outputs
 * (budget_moments) and each activation that can say what it makes of a
 * Gaussian (fib_activation_moments) carry them to the groups after it,
 * data-free. A budget then tells a unit whose output hardly varies (a
 * hidden unit that never fires) from one that does. */
#include "compress/compress.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char fn[] = "fib_compress_to_budget";

/* Forgets group i's moments (unknown). */
static void forget_group(fib_unit_moments *m, int32_t i)
{
    fib_free(m->mean[i]);
    fib_free(m->var[i]);
    fib_free(m->pre_mean[i]);
    fib_free(m->pre_var[i]);
    m->mean[i] = m->var[i] = m->pre_mean[i] = m->pre_var[i] = NULL;
}

void fib_unit_moments_clear(const fib_graph *g, fib_unit_moments *m)
{
    for (int32_t i = 0; m->mean && m->var && m->pre_mean && m->pre_var && i < g->n_groups;
         i++)
        forget_group(m, i);
    fib_free(m->mean);
    fib_free(m->var);
    fib_free(m->pre_mean);
    fib_free(m->pre_var);
    m->mean = m->var = m->pre_mean = m->pre_var = NULL;
}

/* Group i's moments from its own statistics or from its sources'. */
static int32_t group_moments(const fib_graph *g, int32_t i, fib_unit_moments *m)
{
    const fib_group *grp = &g->groups[i];
    int64_t n = grp->n_units, size = n > 0 ? n : 1;
    bool own = grp->unit_mean != NULL, from_sources = !own && !fib_group_is_input(g, i) &&
                                                      grp->ops->budget_moments;
    const double *mean[3] = {NULL}, *var[3] = {NULL};
    for (int32_t s = 0; from_sources && s < grp->n_sources; s++) {
        mean[s] = m->mean[grp->sources[s]];
        var[s] = m->var[grp->sources[s]];
        from_sources = mean[s] != NULL;
    }
    if (!own && !from_sources)
        return FIB_OK;
    /* stored statistics are the outputs': the pre-activation's are known
     * only for a linear activation */
    bool pre = !own || grp->activation == FIB_ACT_LINEAR;
    m->mean[i] = fib_alloc(size, sizeof **m->mean);
    m->var[i] = fib_alloc(size, sizeof **m->var);
    m->pre_mean[i] = pre ? fib_alloc(size, sizeof **m->pre_mean) : NULL;
    m->pre_var[i] = pre ? fib_alloc(size, sizeof **m->pre_var) : NULL;
    if (!m->mean[i] || !m->var[i] || (pre && (!m->pre_mean[i] || !m->pre_var[i])))
        return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    if (own) {
        memcpy(m->mean[i], grp->unit_mean, (size_t)n * sizeof **m->mean);
        memcpy(m->var[i], grp->unit_var, (size_t)n * sizeof **m->var);
        if (pre) {
            memcpy(m->pre_mean[i], grp->unit_mean, (size_t)n * sizeof **m->mean);
            memcpy(m->pre_var[i], grp->unit_var, (size_t)n * sizeof **m->var);
        }
        return FIB_OK;
    }
    bool known = grp->ops->budget_moments(g, i, mean, var, m->pre_mean[i], m->pre_var[i]);
    for (int64_t u = 0; known && u < n; u++) {
        m->mean[i][u] = m->pre_mean[i][u];
        m->var[i][u] = m->pre_var[i][u];
        known = fib_activation_moments(grp->activation, &m->mean[i][u], &m->var[i][u]) &&
                isfinite(m->mean[i][u]) && isfinite(m->var[i][u]);
    }
    if (!known)
        forget_group(m, i);
    return FIB_OK;
}

int32_t fib_unit_moments_build(const fib_graph *g, fib_unit_moments *m)
{
    m->mean = m->var = m->pre_mean = m->pre_var = NULL;
    bool any = false;
    for (int32_t i = 0; i < g->n_groups; i++)
        any |= g->groups[i].unit_mean != NULL;
    if (!any)
        return FIB_OK;
    int32_t n = g->n_groups;
    m->mean = fib_calloc(n, sizeof *m->mean);
    m->var = fib_calloc(n, sizeof *m->var);
    m->pre_mean = fib_calloc(n, sizeof *m->pre_mean);
    m->pre_var = fib_calloc(n, sizeof *m->pre_var);
    int32_t status = m->mean && m->var && m->pre_mean && m->pre_var
                         ? FIB_OK : fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    for (int32_t i = 0; i < n && !status; i++)
        status = group_moments(g, i, m);
    if (status)
        fib_unit_moments_clear(g, m);
    return status;
}
