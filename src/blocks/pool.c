/* Pooling, channel by channel: a pooled channel has the colour of its
 * source channel. Max pooling routes the error by activity, so the source's
 * fiber class joins its opfiber signature (a flavour). */
#include "blocks/blocks.h"
#include "model/gather.h"
#include "model/window.h"

#include <math.h>

typedef struct fib_pool {
    int32_t kind;
    fib_window win;
    int64_t *reads; /* channel c pools source channel reads[c]; NULL: c */
} fib_pool;

static const fib_pool *pool_of(const fib_graph *g, int32_t group)
{
    return (const fib_pool *)g->groups[group].block;
}

static void pool_free(void *block)
{
    fib_pool *p = block;
    if (p)
        fib_free(p->reads);
    fib_free(p);
}

static int32_t add_pool(fib_graph *g, int32_t source, int32_t kind, const fib_window *win,
                        int64_t n_units, int64_t *reads, int32_t *group_out)
{
    int64_t rows, cols;
    int32_t status = fib_window_check(win, g->groups[source].rows, g->groups[source].cols,
                                      "pooling", g->n_groups, &rows, &cols);
    /* as PyTorch: a window wholly in the padding would pool nothing */
    if (!status && (win->pad_rows > win->kernel_rows / 2 || win->pad_cols > win->kernel_cols / 2))
        status = fib_error(FIB_E_SHAPE,
                           "pooling of group %d: padding %lldx%lld exceeds half the kernel "
                           "%lldx%lld", (int)g->n_groups, (long long)win->pad_rows,
                           (long long)win->pad_cols, (long long)win->kernel_rows,
                           (long long)win->kernel_cols);
    fib_pool *p = status ? NULL : fib_calloc(1, sizeof *p);
    if (!status && !p)
        status = fib_error(FIB_E_NOMEM, "out of memory adding pooling");
    if (status) {
        fib_free(reads);
        return status;
    }
    *p = (fib_pool){.kind = kind, .win = *win, .reads = reads};
    fib_group grp = {.op = FIB_OP_POOL, .n_units = n_units, .rows = rows, .cols = cols,
                     .activation = FIB_ACT_LINEAR, .n_sources = 1, .sources = {source, 0},
                     .ops = &fib_pool_ops, .block = p};
    status = fib_graph_push_group(g, &grp, group_out);
    if (status)
        pool_free(p);
    return status;
}

int32_t fib_graph_add_pool(fib_graph *g, int32_t source, int32_t kind, int64_t kernel_rows,
                           int64_t kernel_cols, int64_t stride_rows, int64_t stride_cols,
                           int64_t pad_rows, int64_t pad_cols, int32_t *group_out)
{
    int32_t status = fib_graph_check_group(g, source, "fib_graph_add_pool");
    if (status)
        return status;
    if (!group_out)
        return fib_error(FIB_E_NULL, "fib_graph_add_pool: group_out is NULL");
    if (kind != FIB_POOL_MAX && kind != FIB_POOL_AVG)
        return fib_error(FIB_E_INVALID, "fib_graph_add_pool: group %d: unknown pooling kind %d",
                         (int)g->n_groups, (int)kind);
    fib_window win = {kernel_rows, kernel_cols, stride_rows, stride_cols, pad_rows, pad_cols};
    return add_pool(g, source, kind, &win, g->groups[source].n_units, NULL, group_out);
}

/* Pooling of n_units channels, channel c pooling source channel reads[c]
 * (NULL: c), taken over (model files: bases read through a gather). */
int32_t fib_graph_add_pool_gather(fib_graph *g, int32_t source, int32_t kind,
                                  const int64_t window[6], int64_t n_units,
                                  int64_t *reads, int32_t *group_out)
{
    fib_window win = {window[0], window[1], window[2], window[3], window[4], window[5]};
    return add_pool(g, source, kind, &win, n_units, reads, group_out);
}

static int64_t pool_fiber_width(const fib_graph *g, int32_t group, const fib_partition *parts)
{
    (void)g, (void)group, (void)parts;
    return 1;
}

static int32_t pool_fiber_fill(const fib_graph *g, int32_t group, const fib_partition *parts,
                               fib_signature *sig, int64_t offset)
{
    fib_gather_label_fill(g, group, parts, pool_of(g, group)->reads, sig, offset);
    return FIB_OK;
}

/* Per source channel: the classes of the pooled channels reading it (a
 * count per class) and, for max pooling, its own fiber class. */
static int64_t pool_opfiber_width(const fib_graph *g, int32_t group, int32_t source_index,
                                  const fib_partition *parts,
                                  const fib_partition *fibers)
{
    (void)fibers;
    (void)source_index;
    return parts[group].n_classes + (pool_of(g, group)->kind == FIB_POOL_MAX ? 1 : 0);
}

static int32_t pool_opfiber_fill(const fib_graph *g, int32_t group, int32_t source_index,
                                 const fib_partition *parts, const fib_partition *fibers,
                                 fib_signature *sig, int64_t offset)
{
    const fib_pool *p = pool_of(g, group);
    int32_t source = g->groups[group].sources[0];
    int64_t width = pool_opfiber_width(g, group, source_index, parts, fibers);
    for (int64_t j = 0; j < sig->n_units; j++)
        for (int64_t x = 0; x < width; x++) {
            sig->value[j * sig->n_coords + offset + x] = 0.0;
            sig->tol[j * sig->n_coords + offset + x] = 0.0;
        }
    for (int64_t c = 0; c < g->groups[group].n_units; c++)
        sig->value[fib_gather_at(p->reads, c) * sig->n_coords + offset + parts[group].color[c]] += 1.0;
    if (p->kind == FIB_POOL_MAX)
        for (int64_t j = 0; j < sig->n_units; j++) {
            sig->value[j * sig->n_coords + offset + width - 1] = (double)fibers[source].color[j];
            sig->tol[j * sig->n_coords + offset + width - 1] = FIB_TOL_LABEL;
        }
    return FIB_OK;
}

/* The exact form of that contribution: a source channel read by at most
 * one pooled channel has a count of 1 in that channel's class and zeros
 * elsewhere, so the class (a label; -1 when unread) says what the row
 * does: equal labels iff equal rows, and counts are compared exactly by
 * every mode. Used under FIB_TOL_EXACT when the pooling is the source's
 * only reader (then no other coordinate cuts the units in between) and its
 * gather reads each channel at most once; otherwise width 0: the full
 * form. Max pooling keeps its fiber class label after it. */
static int64_t pool_opfiber_exact_width(const fib_graph *g, int32_t group, int32_t source_index,
                                        const fib_partition *parts,
                                        const fib_partition *fibers)
{
    (void)source_index, (void)parts, (void)fibers;
    const fib_group *grp = &g->groups[group];
    const fib_group *src = &g->groups[grp->sources[0]];
    if (src->n_consumers != 1 || (src->ops && src->ops->recurrent))
        return 0;
    const fib_pool *p = pool_of(g, group);
    int32_t single = fib_gather_single_reader(p->reads, grp->n_units, src->n_units);
    return single < 0 ? single : single ? (p->kind == FIB_POOL_MAX ? 2 : 1) : 0;
}

static int32_t pool_opfiber_exact_fill(const fib_graph *g, int32_t group, int32_t source_index,
                                       const fib_partition *parts, const fib_partition *fibers,
                                       fib_signature *sig, int64_t offset)
{
    (void)source_index;
    const fib_pool *p = pool_of(g, group);
    int32_t source = g->groups[group].sources[0];
    for (int64_t j = 0; j < sig->n_units; j++)
        fib_signature_put_label(sig, j, offset, -1);
    for (int64_t c = 0; c < g->groups[group].n_units; c++)
        fib_signature_put_label(sig, fib_gather_at(p->reads, c), offset, parts[group].color[c]);
    for (int64_t j = 0; p->kind == FIB_POOL_MAX && j < sig->n_units; j++)
        fib_signature_put_label(sig, j, offset + 1, fibers[source].color[j]);
    return FIB_OK;
}

static void pool_forward(const fib_graph *g, int32_t group, int64_t batch,
                         double *const *activity, double *out)
{
    const fib_group *grp = &g->groups[group], *src = &g->groups[grp->sources[0]];
    const fib_pool *p = pool_of(g, group);
    const fib_window *w = &p->win;
    const double *x = activity[grp->sources[0]];
    int64_t n = grp->n_units, cin = src->n_units;
    for (int64_t b = 0; b < batch; b++) {
        const double *xb = x + b * fib_group_activity_width(src);
        double *yb = out + b * fib_group_activity_width(grp);
        for (int64_t r = 0; r < grp->rows; r++)
            for (int64_t col = 0; col < grp->cols; col++)
                for (int64_t c = 0; c < n; c++) {
                    int64_t j = fib_gather_at(p->reads, c);
                    double acc = p->kind == FIB_POOL_MAX ? -INFINITY : 0.0;
                    for (int64_t kr = 0; kr < w->kernel_rows; kr++) {
                        int64_t ir = r * w->stride_rows - w->pad_rows + kr;
                        for (int64_t kc = 0; kc < w->kernel_cols; kc++) {
                            int64_t ic = col * w->stride_cols - w->pad_cols + kc;
                            if (ir < 0 || ir >= src->rows || ic < 0 || ic >= src->cols)
                                continue; /* padding: ignored by max, zero for average */
                            double v = xb[(ir * src->cols + ic) * cin + j];
                            acc = p->kind == FIB_POOL_MAX ? fmax(acc, v) : acc + v;
                        }
                    }
                    if (p->kind == FIB_POOL_AVG)
                        acc /= (double)(w->kernel_rows * w->kernel_cols);
                    yb[(r * grp->cols + col) * n + c] = acc;
                }
    }
}

/* The block of a base (a class reads the source class its first member
 * reads) or of a lift, made in `out`. */
static int32_t remake(const fib_graph *g, int32_t group, const fib_partition *parts,
                      fib_graph *out, const int32_t *out_ids, bool lift)
{
    const fib_pool *p = pool_of(g, group);
    int32_t source = g->groups[group].sources[0];
    int64_t *reads;
    int32_t status = lift ? fib_gather_for_lift(parts, group, source, p->reads, &reads)
                          : fib_gather_for_base(parts, group, source, p->reads, &reads);
    if (status)
        return status;
    int32_t id;
    return add_pool(out, out_ids[source], p->kind, &p->win,
                    lift ? parts[group].n_units : parts[group].n_classes, reads, &id);
}

static int32_t pool_compress(const fib_graph *g, int32_t group, const fib_partition *parts,
                             fib_graph *base, const int32_t *base_ids)
{
    return remake(g, group, parts, base, base_ids, false);
}

static int32_t pool_lift(const fib_graph *base, int32_t group, const fib_partition *parts,
                         fib_graph *full, const int32_t *full_ids)
{
    return remake(base, group, parts, full, full_ids, true);
}

static int64_t pool_num_parameters(const fib_graph *g, int32_t group)
{
    (void)g, (void)group;
    return 0;
}

/* kind, the six window numbers, then per channel the source channel. */
static int64_t pool_params(const fib_graph *g, int32_t group, int64_t *out, int64_t capacity)
{
    const fib_pool *p = pool_of(g, group);
    int64_t head[7], n = g->groups[group].n_units;
    head[0] = p->kind;
    fib_window_params(&p->win, head + 1);
    for (int64_t x = 0; x < 7 + n && x < capacity; x++)
        out[x] = x < 7 ? head[x] : fib_gather_at(p->reads, x - 7);
    return 7 + n;
}

/* ---- budgets ------------------------------------------------------------ */

static int32_t pool_budget_role(const fib_graph *g, int32_t group)
{
    bool same = fib_gather_is_identity(pool_of(g, group)->reads, g->groups[group].n_units,
                                       g->groups[g->groups[group].sources[0]].n_units);
    return same ? FIB_BUDGET_FOLLOWS : 0;
}

static void pool_budget_backward(const fib_graph *g, int32_t group, int32_t source_index,
                                 const double *energy, double *src_energy)
{
    (void)source_index;
    const fib_pool *p = pool_of(g, group);
    /* per position, errors independent across positions: an average passes
     * 1 / window^2 of a position's energy to each of the windows holding it,
     * a maximum all of it to the windows it wins (about one position in
     * positions_in / positions_out) */
    double share = (double)fib_group_positions(&g->groups[group]) /
                   (double)fib_group_positions(&g->groups[g->groups[group].sources[0]]);
    if (p->kind == FIB_POOL_AVG)
        share /= (double)(p->win.kernel_rows * p->win.kernel_cols);
    for (int64_t i = 0; i < g->groups[group].n_units; i++)
        src_energy[fib_gather_at(p->reads, i)] += share * energy[i];
}

/* A constant channel pools to itself: a maximum ignores the padding, an
 * average over zero padding does not. */
static double pool_budget_constant(const fib_graph *g, int32_t group, int64_t unit,
                                   const double *source_values)
{
    const fib_pool *p = pool_of(g, group);
    double in = source_values ? source_values[fib_gather_at(p->reads, unit)] : NAN;
    if (p->kind == FIB_POOL_AVG && (p->win.pad_rows > 0 || p->win.pad_cols > 0))
        return NAN;
    return in;
}

/* The mean and variance of the largest of k independent standard normal
 * values (k >= 1), by the trapezoid rule on [-12, 12]: the density of the
 * maximum is k phi(x) Phi(x)^(k - 1). */
static void largest_of_normals(int64_t k, double *mean, double *var)
{
    const int steps = 4800;
    double h = 24.0 / steps, m = 0, m2 = 0;
    for (int i = 0; i <= steps; i++) {
        double x = -12.0 + h * i, w = (i == 0 || i == steps) ? 0.5 : 1.0;
        double f = (double)k * fib_normal_pdf(x) * pow(fib_normal_cdf(x), (double)(k - 1));
        m += w * h * x * f;
        m2 += w * h * x * x * f;
    }
    *mean = m;
    *var = m2 - m * m;
}

/* Approximations, both moments of a channel's positions: a maximum over a
 * window of k positions is taken as the largest of k independent normal
 * values of the channel's mean and variance (the inputs' correlation
 * across positions and a rectified input's shape are not seen); an
 * average keeps the channel's mean and variance (positions taken fully
 * correlated, so that an average never looks more constant than its
 * input), zero padding not told apart. */
static bool pool_budget_moments(const fib_graph *g, int32_t group, const double *const *mean,
                                const double *const *var, double *pre_mean, double *pre_var)
{
    const fib_pool *p = pool_of(g, group);
    double top = 0, spread = 1;
    if (p->kind == FIB_POOL_MAX)
        largest_of_normals(p->win.kernel_rows * p->win.kernel_cols, &top, &spread);
    for (int64_t i = 0; i < g->groups[group].n_units; i++) {
        int64_t k = fib_gather_at(p->reads, i);
        double v = var[0][k];
        pre_mean[i] = v > 0 ? mean[0][k] + sqrt(v) * top : mean[0][k];
        pre_var[i] = v * spread;
    }
    return true;
}

static int32_t pool_build(fib_graph *g, const fib_block_source *S, int32_t *id)
{
    int32_t st = fib_source_no_extras(S, true, false, NULL);
    if (st == FIB_OK)
        st = fib_source_expect_params(S, 7 + S->units);
    if (st == FIB_OK && S->params[0] != FIB_POOL_MAX && S->params[0] != FIB_POOL_AVG)
        st = fib_source_error(S, "'params' item 0 (kind) is %lld; "
                              "pooling is 0 (max) or 1 (average)",
                              (long long)S->params[0]);
    if (st == FIB_OK)
        st = fib_source_check_window(S, 1);
    int64_t *reads = NULL;
    if (st == FIB_OK)
        st = fib_source_read_gather(S, 7, S->units, fib_source_group(g, S, 0)->n_units, &reads);
    if (st != FIB_OK)
        return st;
    const int64_t *p = S->params;
    if (!reads)
        st = fib_graph_add_pool(g, S->sources[0], (int32_t)p[0], p[1], p[2],
                                p[3], p[4], p[5], p[6], id);
    else
        st = fib_graph_add_pool_gather(g, S->sources[0], (int32_t)p[0],
                                       p + 1, S->units, reads, id);
    return fib_source_done(S, st);
}

const fib_block_ops fib_pool_ops = {
    .name = "pool",
    .build = pool_build,
    .free_block = pool_free,
    .fiber_width = pool_fiber_width,
    .fiber_fill = pool_fiber_fill,
    .opfiber_width = pool_opfiber_width,
    .opfiber_fill = pool_opfiber_fill,
    .forward = pool_forward,
    .compress = pool_compress,
    .lift = pool_lift,
    .num_parameters = pool_num_parameters,
    .params = pool_params,
    .budget_role = pool_budget_role,
    .budget_backward = pool_budget_backward,
    .budget_constant = pool_budget_constant,
    .budget_moments = pool_budget_moments,
    .opfiber_exact_width = pool_opfiber_exact_width,
    .opfiber_exact_fill = pool_opfiber_exact_fill,
};
