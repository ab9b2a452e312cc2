/* The scales of a colouring (FIB_TOL_SCALED) and fib_compress_to_budget:
 * per-group class counts chosen under a parameter budget by a data-free
 * bound. */
#include "compress/compress.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

/* ---- scales of a colouring ---------------------------------------------- */

int32_t fib_coloring_scales(const fib_coloring *c, int32_t group, double *scales,
                            int64_t n_units)
{
    static const char fn[] = "fib_coloring_scales";
    if (!c || !scales)
        return fib_error(FIB_E_NULL, "%s: NULL argument", fn);
    if (group < 0 || group >= c->n_groups)
        return fib_error(FIB_E_RANGE, "%s: group %d out of range (%d groups)", fn, (int)group,
                         (int)c->n_groups);
    int64_t n = c->parts[group].n_units;
    if (n_units < n)
        return fib_error(FIB_E_BUFFER, "%s: group %d needs %lld entries, got %lld", fn,
                         (int)group, (long long)n, (long long)n_units);
    const double *s = c->scales ? c->scales[group] : NULL;
    for (int64_t i = 0; i < n; i++)
        scales[i] = s ? s[i] : 1.0;
    return FIB_OK;
}

int32_t fib_coloring_set_scales(fib_coloring *c, int32_t group, const double *scales,
                                int64_t n_units)
{
    static const char fn[] = "fib_coloring_set_scales";
    if (!c)
        return fib_error(FIB_E_NULL, "%s: colouring is NULL", fn);
    if (group < 0 || group >= c->n_groups)
        return fib_error(FIB_E_RANGE, "%s: group %d out of range (%d groups)", fn, (int)group,
                         (int)c->n_groups);
    int64_t n = c->parts[group].n_units;
    if (!scales) {
        if (c->scales) {
            fib_free(c->scales[group]);
            c->scales[group] = NULL;
        }
        return FIB_OK;
    }
    if (n_units != n)
        return fib_error(FIB_E_SHAPE, "%s: group %d has %lld units, got %lld", fn, (int)group,
                         (long long)n, (long long)n_units);
    for (int64_t i = 0; i < n; i++)
        if (!(scales[i] > 0) || !isfinite(scales[i]))
            return fib_error(FIB_E_INVALID, "%s: group %d: scale %lld is %g (must be > 0)", fn,
                             (int)group, (long long)i, scales[i]);
    if (!c->scales) {
        c->scales = fib_calloc(c->n_groups, sizeof *c->scales);
        if (!c->scales)
            return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    }
    double *s = fib_alloc(n, sizeof *s);
    if (!s)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    memcpy(s, scales, (size_t)n * sizeof *s);
    fib_free(c->scales[group]);
    c->scales[group] = s;
    return FIB_OK;
}

/* ---- budget ------------------------------------------------------------- */

_Static_assert(offsetof(fib_budget_options, merge_inputs) == FIB_BUDGET_OPTIONS_SIZE_1,
               "the first layout of fib_budget_options ends where merge_inputs starts");
_Static_assert(offsetof(fib_budget_options, progress) == FIB_BUDGET_OPTIONS_SIZE_2,
               "the second layout of fib_budget_options ends where progress starts");
_Static_assert(offsetof(fib_budget_options, dtype) == FIB_BUDGET_OPTIONS_SIZE_3,
               "the third layout of fib_budget_options ends where dtype starts");
_Static_assert(offsetof(fib_budget_options, synthetic_ridge) == FIB_BUDGET_OPTIONS_SIZE_4,
               "the fourth layout of fib_budget_options ends where synthetic_ridge starts");

int32_t fib_budget_options_init(fib_budget_options *o, size_t struct_size)
{
    /* a caller built against the first layout owns only its bytes */
    size_t size = struct_size < sizeof *o ? struct_size : sizeof *o;
    int32_t status = fib_options_clear(o, struct_size, FIB_BUDGET_OPTIONS_SIZE_1, size,
                                       "fib_budget_options_init");
    if (status)
        return status;
    o->struct_size = size;
    o->sensitivity_power = 1.5;
    o->refine_iterations = 20;
    if (size >= offsetof(fib_budget_options, input_sensitivity) + sizeof(double))
        o->input_sensitivity = 3.0;
    if (size >= offsetof(fib_budget_options, synthetic_samples) + sizeof(int32_t))
        o->synthetic_samples = 8192;
    if (size >= offsetof(fib_budget_options, synthetic_ridge) + sizeof(double))
        o->synthetic_ridge = FIB_BUDGET_DEFAULT_RIDGE;
    return FIB_OK;
}

/* Typical gain of a dense block on a random input direction:
 * ||W||_F / sqrt(n_in), halved in energy by a ReLU (1/sqrt 2). Data-free;
 * the spectral norm (the worst case) overweights early layers so much that
 * the greedy exchange would empty the last hidden layer. */
static double typical_gain(const fib_graph *g, int32_t group)
{
    const fib_dense *d = fib_group_matrix(g, group);
    double f = 0;
    for (int64_t i = 0; i < g->groups[group].n_units; i++)
        for (int64_t k = 0; k < d->n_in; k++) {
            double x = fib_dense_weight(d, i, k);
            f += x * x;
        }
    double gain = sqrt(f / (double)d->n_in);
    int32_t act = g->groups[group].activation;
    if (act == FIB_ACT_RELU || act == FIB_ACT_LEAKY_RELU)
        gain *= sqrt(0.5);
    return gain;
}

typedef struct budget_layer {
    int32_t group;
    int64_t n;          /* units */
    int64_t k;          /* classes chosen */
    double sens;        /* downstream operator norm product */
    double *err;        /* err[k] for k = 1 .. n: sqrt of the merge costs */
    fib_merges first;   /* the agglomeration behind err, kept for step 4 */
} budget_layer;

/* Parameters of the base with class counts `width` per group (outputs keep
 * their width; merged inputs cost one class index per input). */
static int64_t budget_params(const fib_graph *g, const int64_t *width)
{
    int64_t total = 0;
    for (int32_t i = 0; i < g->n_groups; i++) {
        if (fib_group_is_input(g, i)) {
            /* merged inputs: each input's class index */
            if (width[i] < g->groups[i].n_units)
                total += g->groups[i].n_units;
            continue;
        }
        const fib_dense *d = fib_group_matrix(g, i);
        int64_t in = width[g->groups[i].sources[0]];
        total += width[i] * in + (d->bias ? width[i] : 0);
    }
    return total;
}

/* Rows and weights of group i for clustering with `scaled`; parts/scales
 * give the source's classes. narrow: only the rank-1 linkage reads them,
 * so the float32 weights over a discrete source are read in place
 * (fib_rows_borrow) and other rows of float32 values held as such
 * (fib_rows_narrow). */
static int32_t layer_rows(const fib_graph *g, int32_t i, const fib_partition *parts,
                          double **scales, bool scaled, bool narrow, fib_rows *r,
                          double *weight, double *norms)
{
    /* the consumer's pages go once its columns are summed: they need not
     * stay next to the rows */
    fib_outgoing_norms(g, i, weight);
    if (i + 1 < g->n_groups)
        fib_group_drop_pages(g, i + 1);
    int32_t src = g->groups[i].sources[0];
    if (!(scaled && narrow && fib_rows_borrow(g, i, &parts[src], scales[src], r))) {
        int32_t status = fib_scaled_dense_values(g, i, &parts[src], scales[src], r);
        if (status)
            return status;
        if (scaled && narrow)
            fib_rows_narrow(r);
    }
    if (scaled) {
        fib_rows_normalize(r, norms);
        for (int64_t u = 0; u < r->n; u++)
            weight[u] *= norms[u];
    }
    return FIB_OK;
}

/* Rows of the input group (merge_inputs): every input's column of the
 * dense block reading it, the next group of the chain; weights all 1. */
static int32_t input_rows(const fib_graph *g, int32_t input, fib_rows *r, double *weight)
{
    const fib_dense *d = fib_group_matrix(g, input + 1);
    int64_t n = g->groups[input].n_units, dd = g->groups[input + 1].n_units;
    int32_t status = fib_rows_alloc(r, n, dd);
    if (status)
        return status;
    for (int64_t i = 0; i < dd; i++)
        for (int64_t k = 0; k < n; k++)
            r->value[k * dd + i] = fib_dense_weight(d, i, k);
    for (int64_t k = 0; k < n; k++)
        weight[k] = 1.0;
    return FIB_OK;
}

/* The rows a budget clusters for group i: an input group's columns, or a
 * hidden group's rows over its source's classes. */
static int32_t candidate_rows(const fib_graph *g, int32_t i, const fib_partition *parts,
                              double **scales, bool scaled, bool narrow, fib_rows *r,
                              double *weight, double *norms)
{
    if (fib_group_is_input(g, i))
        return input_rows(g, i, r, weight);
    return layer_rows(g, i, parts, scales, scaled, narrow, r, weight, norms);
}

/* The blocks candidate_rows read for group i (its own and its consumer's,
 * the next group of the chain) leave a mapped model file's resident pages:
 * the file need not stay resident next to a layer's working set (the
 * agglomeration's unit rows and cosines). Rows borrowed from the weights
 * bring their pages back as the agglomeration reads them, and it lets
 * them go again. */
static void drop_read_blocks(const fib_graph *g, int32_t i)
{
    fib_group_drop_pages(g, i);
    if (i + 1 < g->n_groups)
        fib_group_drop_pages(g, i + 1);
}

/* True when the rows candidate_rows makes for group i over the classes and
 * scales of c are those over discrete sources: an input group, or a source
 * whose unit u is still class u with scale 1 (x * 1 is x). */
static bool source_unmerged(const fib_graph *g, int32_t i, const fib_coloring *c)
{
    if (fib_group_is_input(g, i))
        return true;
    int32_t src = g->groups[i].sources[0];
    const fib_partition *p = &c->parts[src];
    if (!fib_partition_is_discrete(p))
        return false;
    for (int64_t u = 0; u < p->n_units && c->scales && c->scales[src]; u++)
        if (c->scales[src][u] != 1.0)
            return false;
    return true;
}

/* The agglomeration of group i, its first max_merges merges at most;
 * err[k] (k = 1 .. n) = sqrt of the cumulative cost of the first n - k
 * merges (INFINITY past the last). */
static int32_t layer_merges(const fib_rows *r, bool scaled, const double *weight,
                            int64_t max_merges, const fib_progress_check *check,
                            fib_merges *mg, double *err)
{
    double *mass = fib_alloc(r->n, sizeof *mass);
    if (!mass)
        return fib_error(FIB_E_NOMEM, "out of memory for a budget");
    for (int64_t u = 0; u < r->n; u++)
        mass[u] = weight[u] * weight[u];
    int32_t status = fib_linkage_run_limited(r, FIB_TOL_WARD, scaled, mass, INFINITY, max_merges,
                                             check, mg);
    fib_free(mass);
    if (status || !err)
        return status;
    int64_t n = r->n;
    double acc = 0;
    err[n] = 0;
    for (int64_t s = 0; s < n - 1; s++) {
        int64_t k = n - 1 - s;
        if (s < mg->n_merges) {
            acc += mg->height[s] > 0 ? mg->height[s] : 0;
            err[k] = sqrt(acc);
        } else {
            err[k] = INFINITY;
        }
    }
    return FIB_OK;
}

/* *out = sqrt(sum_i w_i^2 |x_i - s_i r_c|^2) with r_c = sum s x / sum s^2 per
 * class: the weighted residual of the fit fib_compress makes. */
static int32_t residual(const fib_rows *r, const fib_partition *p, const double *w,
                        const double *s, double *out)
{
    int64_t n = r->n, d = r->d, k = p->n_classes;
    double total = 0;
    if (k == n) {
        /* every unit alone in its class: the class's sums are the unit's
         * own terms, made as below (0 + term) without holding them */
        for (int64_t i = 0; i < n; i++) {
            double ssi = 0.0 + s[i] * s[i], e = 0;
            for (int64_t j = 0; j < d; j++) {
                double rep = 0.0 + s[i] * r->value[i * d + j];
                double x = r->value[i * d + j] - s[i] * rep / ssi;
                e += x * x;
            }
            total += w[i] * w[i] * e;
        }
        *out = sqrt(total);
        return FIB_OK;
    }
    double *rep = fib_calloc(k * (d > 0 ? d : 1), sizeof *rep), *ss = fib_calloc(k, sizeof *ss);
    if (!rep || !ss) {
        fib_free(rep);
        fib_free(ss);
        return fib_error(FIB_E_NOMEM, "fib_compress_to_budget: out of memory");
    }
    /* written before it is added into: its fresh pages come on that write,
     * not as the zero page copied on the first write after a read */
    memset(rep, 0, (size_t)(k * (d > 0 ? d : 1)) * sizeof *rep);
    for (int64_t i = 0; i < n; i++) {
        int64_t c = p->color[i];
        for (int64_t j = 0; j < d; j++)
            rep[c * d + j] += s[i] * r->value[i * d + j];
        ss[c] += s[i] * s[i];
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t c = p->color[i];
        double e = 0;
        for (int64_t j = 0; j < d; j++) {
            double x = r->value[i * d + j] - s[i] * rep[c * d + j] / ss[c];
            e += x * x;
        }
        total += w[i] * w[i] * e;
    }
    fib_free(rep);
    fib_free(ss);
    *out = sqrt(total);
    return FIB_OK;
}

static void free_layers(budget_layer *L, int32_t n)
{
    for (int32_t x = 0; L && x < n; x++) {
        fib_free(L[x].err);
        fib_merges_clear(&L[x].first);
    }
    fib_free(L);
}

/* Parameters of a base, with one class index per input of a merged input
 * group (the base cannot read its inputs without them). */
static int32_t base_parameters(const fib_graph *g, const fib_base *b, int64_t *out)
{
    int32_t status = fib_graph_num_parameters(b->graph, out);
    for (int32_t i = 0; !status && i < g->n_groups; i++)
        if (fib_group_is_input(g, i) && b->projection[i].n_classes < g->groups[i].n_units)
            *out += g->groups[i].n_units;
    return status;
}

/* One budget attempt with one grouping (the knobs in o, validated);
 * fills *bound, *corrected and the base. */
static int32_t budget_attempt(const fib_graph *g, double budget, bool scaled_mode,
                              const fib_budget_options *o, bool *corrected, double *bound_out,
                              int64_t *params_out, int64_t *smallest_out, fib_base **base_out)
{
    double power = o->sensitivity_power;
    bool merge_inputs = o->merge_inputs != 0;
    /* the candidates: hidden groups, and with merge_inputs the input group
     * (group 0 of the chain) when the linkage can take it */
    bool *candidate = fib_calloc(g->n_groups > 0 ? g->n_groups : 1, sizeof *candidate);
    if (!candidate)
        return fib_error(FIB_E_NOMEM, "fib_compress_to_budget: out of memory");
    int32_t n_layers = 0;
    for (int32_t i = 0; i < g->n_groups; i++) {
        if (fib_group_is_input(g, i))
            candidate[i] = merge_inputs && g->groups[i].n_units > 1 &&
                           g->groups[i].n_units <= FIB_LINKAGE_MAX_UNITS;
        else
            candidate[i] = !fib_group_is_output(g, i);
        n_layers += candidate[i];
    }
    budget_layer *L = fib_calloc(n_layers > 0 ? n_layers : 1, sizeof *L);
    int64_t *width = fib_alloc(g->n_groups, sizeof *width);
    double *sigma = fib_alloc(g->n_groups, sizeof *sigma);
    fib_coloring *col = NULL;
    int32_t status = FIB_OK;
    if (!L || !width || !sigma) {
        status = fib_error(FIB_E_NOMEM, "fib_compress_to_budget: out of memory");
        goto done;
    }
    status = fib_coloring_alloc(g, FIB_SYM_FIBERS, &col);
    if (status)
        goto done;
    col->scales = fib_calloc(g->n_groups, sizeof *col->scales);
    if (!col->scales) {
        status = fib_error(FIB_E_NOMEM, "fib_compress_to_budget: out of memory");
        goto done;
    }
    for (int32_t i = 0; i < g->n_groups; i++) {
        width[i] = g->groups[i].n_units;
        sigma[i] = fib_group_is_input(g, i) ? 1.0 : typical_gain(g, i);
        fib_group_drop_pages(g, i);
    }
    /* steps: each group's clustering, the exchange, each group's colouring,
     * the correction, the base */
    bool correcting = scaled_mode && o->synthetic_scale > 0;
    fib_progress_check check = {o->progress, o->progress_user, 0,
                                2 * (int64_t)n_layers + 2 + correcting};
    /* 1-2: per-layer errors on the original weights, sensitivities */
    for (int32_t i = 0, x = 0; i < g->n_groups && !status; i++) {
        if (!candidate[i])
            continue;
        budget_layer *l = &L[x++];
        l->group = i;
        l->n = l->k = g->groups[i].n_units;
        l->err = fib_alloc(l->n + 1, sizeof *l->err);
        double *weight = fib_alloc(l->n, sizeof *weight), *norms = fib_alloc(l->n, sizeof *norms);
        if (!l->err || !weight || !norms) {
            fib_free(weight);
            fib_free(norms);
            status = fib_error(FIB_E_NOMEM, "fib_compress_to_budget: out of memory");
            break;
        }
        /* inputs merge by their plain mean column (no scales: the base's
         * inputs are the classes' means) */
        bool scaled = scaled_mode && !fib_group_is_input(g, i) &&
                      fib_activation_homogeneous(g->groups[i].activation);
        fib_rows r;
        fib_partition *discrete = col->parts; /* still discrete here */
        /* read by the agglomeration alone: float32 weights held as such */
        status = candidate_rows(g, i, discrete, col->scales, scaled, true, &r, weight, norms);
        drop_read_blocks(g, i);
        r.n_threads = o->n_threads;
        r.float_cosines = true;
        if (!status) {
            status = layer_merges(&r, scaled, weight, INT64_MAX, &check, &l->first, l->err);
            fib_rows_clear(&r);
        }
        if (!status)
            status = fib_budget_step(&check);
        fib_free(weight);
        fib_free(norms);
        /* sensitivity: the typical norm of the group's input (the gains of
         * the blocks before it) times the gains of the blocks after its
         * consumer (for the input group: after the first block) */
        double sens = 1.0;
        for (int32_t h = 1; h < i; h++)
            sens *= pow(sigma[h], power);
        for (int32_t h = i + 2; h < g->n_groups; h++)
            sens *= pow(sigma[h], power);
        l->sens = fib_group_is_input(g, i) ? sens * o->input_sensitivity : sens;
    }
    if (status)
        goto done;
    /* 3: greedy exchange */
    int64_t total = 0;
    status = fib_graph_num_parameters(g, &total);
    if (status)
        goto done;
    double target = budget * (double)total;
    while ((double)budget_params(g, width) > target) {
        int32_t best = -1;
        double best_ratio = INFINITY;
        int64_t best_k = 0;
        int64_t now = budget_params(g, width);
        for (int32_t x = 0; x < n_layers; x++) {
            budget_layer *l = &L[x];
            if (l->k <= 1)
                continue;
            int64_t step = l->k / 64 > 1 ? l->k / 64 : 1;
            int64_t k2 = l->k, saved = 0;
            /* the first merge of the inputs pays their class index: step on
             * until something is saved */
            while (saved <= 0 && k2 - step >= 1) {
                k2 -= step;
                width[l->group] = k2;
                saved = now - budget_params(g, width);
            }
            width[l->group] = l->k;
            if (k2 == l->k || isinf(l->err[k2]))
                continue;
            /* independent errors add in quadrature: B^2 = sum S_l^2 e_l^2 */
            double cost = l->sens * l->sens *
                          (l->err[k2] * l->err[k2] - l->err[l->k] * l->err[l->k]);
            double ratio = saved > 0 ? cost / (double)saved : INFINITY;
            if (ratio < best_ratio) {
                best_ratio = ratio;
                best = x;
                best_k = k2;
            }
        }
        if (best < 0)
            break;
        L[best].k = best_k;
        width[L[best].group] = best_k;
    }
    status = fib_budget_step(&check);
    if (status)
        goto done;
    if ((double)budget_params(g, width) > target) {
        *smallest_out = budget_params(g, width);
        status = fib_error(FIB_E_UNSUPPORTED,
                           "fib_compress_to_budget: a budget of %g of %lld parameters is below "
                           "the smallest base this grouping reaches (%lld)", budget,
                           (long long)total, (long long)budget_params(g, width));
        goto done;
    }
    /* 4: colour in order with those counts, over the merged sources */
    double bound = 0;
    for (int32_t x = 0; x < n_layers && !status; x++) {
        budget_layer *l = &L[x];
        int32_t i = l->group;
        bool scaled = scaled_mode && !fib_group_is_input(g, i) &&
                      fib_activation_homogeneous(g->groups[i].activation);
        double *weight = fib_alloc(l->n, sizeof *weight), *norms = fib_alloc(l->n, sizeof *norms);
        fib_rows r = {0};
        fib_merges mg = {0};
        if (!weight || !norms)
            status = fib_error(FIB_E_NOMEM, "fib_compress_to_budget: out of memory");
        if (!status)
            status = candidate_rows(g, i, col->parts, col->scales, scaled, false, &r, weight,
                                    norms);
        drop_read_blocks(g, i);
        r.n_threads = o->n_threads;
        r.float_cosines = true;
        /* rows over an unmerged source are those of step 1: so are the
         * merges; a group that keeps every unit merges nothing; the cut
         * takes the first n - k merges, the agglomeration stops there */
        if (!status && l->first.a && source_unmerged(g, i, col))
            status = fib_merges_cut(&l->first, l->n - l->k, &col->parts[i]);
        else if (!status && l->k == l->n)
            fib_partition_discrete(&col->parts[i]);
        else if (!status)
            status = layer_merges(&r, scaled, weight, l->n - l->k, &check, &mg, NULL);
        if (!status && mg.a)
            status = fib_merges_cut(&mg, l->n - l->k, &col->parts[i]);
        /* with one class, or a class per unit, no unit can move (a unit
         * leaving a class of one stays: test_budget_precision) */
        int64_t classes = col->parts[i].n_classes;
        if (!status && scaled && o->refine_iterations > 0 && classes > 1 && classes < l->n)
            status = fib_rank1_lloyd(&r, weight, o->refine_iterations, &check,
                                     &col->parts[i]);
        if (!status && !scaled) {
            for (int64_t u = 0; u < l->n; u++)
                norms[u] = 1.0; /* scales of the mean fit */
            double e = 0;
            status = residual(&r, &col->parts[i], weight, norms, &e);
            e *= l->sens;
            bound += e * e;
        }
        if (!status && scaled) {
            double *s = fib_alloc(l->n, sizeof *s);
            if (!s)
                status = fib_error(FIB_E_NOMEM, "fib_compress_to_budget: out of memory");
            for (int64_t u = 0; !status && u < l->n; u++) {
                for (int64_t j = 0; j < r.d; j++)
                    r.value[u * r.d + j] *= norms[u];
                weight[u] = norms[u] > 0 ? weight[u] / norms[u] : weight[u];
            }
            if (!status)
                status = fib_class_scales(&r, &col->parts[i], weight, s);
            double e = 0;
            if (!status)
                status = residual(&r, &col->parts[i], weight, s, &e);
            if (!status) {
                e *= l->sens;
                bound += e * e;
                col->scales[i] = s;
            } else {
                fib_free(s);
            }
        }
        fib_rows_clear(&r);
        fib_merges_clear(&mg);
        fib_free(weight);
        fib_free(norms);
        if (!status)
            status = fib_budget_step(&check);
    }
    col->merge_inputs = merge_inputs;
    /* a float32 base is rounded block by block as it is made; the
     * correction refits a float64 base, rounded once it is done */
    fib_compress_options copts;
    fib_compress_options_init(&copts, sizeof copts);
    copts.dtype = correcting ? FIB_DTYPE_F64 : o->dtype;
    if (!status)
        status = fib_compress_ex(g, col, &copts, base_out);
    if (!status)
        status = fib_budget_step(&check);
    *corrected = false;
    if (!status && correcting)
        status = fib_budget_correct(g, col, o->synthetic_scale, o->synthetic_samples,
                                    o->synthetic_ridge, o->n_threads, &check, *base_out,
                                    corrected);
    for (int32_t k = 0; !status && correcting && o->dtype == FIB_DTYPE_F32 &&
                        k < (*base_out)->graph->n_groups; k++)
        status = fib_narrow_block((*base_out)->graph, k);
    if (!status && correcting)
        status = fib_budget_step(&check);
    if (status && *base_out) {
        fib_base_free(*base_out);
        *base_out = NULL;
    }
    if (!status) {
        /* the classes reached (a layer may have stopped short of its count) */
        int64_t reached = 0;
        status = base_parameters(g, *base_out, &reached);
        *bound_out = (double)reached <= target ? sqrt(bound) : INFINITY;
        *params_out = reached;
    }
done:
    free_layers(L, n_layers);
    fib_free(candidate);
    fib_free(width);
    fib_free(sigma);
    fib_coloring_free(col);
    return status;
}

/* A graph that is not a chain of dense blocks (budget_graph.c): plain
 * Ward on every set of coupled groups, no correction; merge_inputs and
 * synthetic_scale apply to chains only. */
static int32_t graph_budget(const fib_graph *g, double budget, const fib_budget_options *o,
                            fib_budget_options *options, fib_base **base_out)
{
    if (o->tolerance == (FIB_TOL_SCALED | FIB_TOL_WARD))
        return fib_error(FIB_E_UNSUPPORTED, "fib_compress_to_budget: the scale-aware grouping "
                         "(FIB_TOL_SCALED) takes chains of dense blocks in this version; "
                         "this graph takes 0 or FIB_TOL_WARD");
    double bound = 0;
    int64_t params = 0, smallest = 0;
    int32_t status = fib_budget_graph(g, budget, o, &bound, &params, &smallest, base_out);
    bool has_smallest = options && options->struct_size >=
                        offsetof(fib_budget_options, smallest_fraction) + sizeof(double);
    if (status && smallest > 0 && has_smallest) {
        int64_t total = fib_budget_counted_parameters(g);
        if (total > 0)
            options->smallest_fraction = (double)smallest / (double)total;
    }
    if (status || !options)
        return status;
    options->bound = bound;
    options->n_parameters = params;
    options->chosen_tolerance = FIB_TOL_WARD;
    if (options->struct_size >= offsetof(fib_budget_options, corrected) + sizeof(int32_t))
        options->corrected = 0;
    return FIB_OK;
}

int32_t fib_compress_to_budget(const fib_graph *g, double budget,
                               fib_budget_options *options, fib_base **base_out)
{
    static const char fn[] = "fib_compress_to_budget";
    if (!g || !base_out)
        return fib_error(FIB_E_NULL, "%s: %s is NULL", fn, g ? "base_out" : "graph");
    /* the caller's fields over the defaults: a caller of the first layout
     * has only its bytes */
    fib_budget_options local;
    fib_budget_options_init(&local, sizeof local);
    if (options) {
        if (options->struct_size < FIB_BUDGET_OPTIONS_SIZE_1)
            return fib_error(FIB_E_INVALID, "%s: options.struct_size %zu is smaller than %d "
                             "(call fib_budget_options_init)", fn, options->struct_size,
                             FIB_BUDGET_OPTIONS_SIZE_1);
        memcpy(&local, options,
               options->struct_size < sizeof local ? options->struct_size : sizeof local);
        if (options->struct_size >= offsetof(fib_budget_options, smallest_fraction) +
                                        sizeof(double))
            options->smallest_fraction = 0;
    }
    const fib_budget_options *o = &local;
    if (o->refine_iterations < 0)
        return fib_error(FIB_E_INVALID, "%s: refine_iterations %d is negative", fn,
                         (int)o->refine_iterations);
    if (o->n_threads < 0)
        return fib_error(FIB_E_INVALID, "%s: n_threads %d is negative", fn, (int)o->n_threads);
    if (o->merge_inputs != 0 && o->merge_inputs != 1)
        return fib_error(FIB_E_INVALID, "%s: merge_inputs %d must be 0 or 1", fn,
                         (int)o->merge_inputs);
    if (o->reserved0 != 0)
        return fib_error(FIB_E_INVALID, "%s: reserved0 must be 0", fn);
    if (o->dtype != 0 && o->dtype != FIB_DTYPE_F32 && o->dtype != FIB_DTYPE_F64)
        return fib_error(FIB_E_INVALID, "%s: dtype %d is not 0, FIB_DTYPE_F32 or FIB_DTYPE_F64",
                         fn, (int)o->dtype);
    if (!(o->input_sensitivity > 0) || !isfinite(o->input_sensitivity))
        return fib_error(FIB_E_INVALID, "%s: input_sensitivity %g must be finite and > 0", fn,
                         o->input_sensitivity);
    if (!(o->synthetic_scale >= 0) || !isfinite(o->synthetic_scale) || o->synthetic_samples < 1)
        return fib_error(FIB_E_INVALID, "%s: synthetic_scale %g must be finite and >= 0 and "
                         "synthetic_samples %d at least 1", fn, o->synthetic_scale,
                         (int)o->synthetic_samples);
    if (!(o->synthetic_ridge >= 0) || !isfinite(o->synthetic_ridge))
        return fib_error(FIB_E_INVALID, "%s: synthetic_ridge %g must be finite and >= 0", fn,
                         o->synthetic_ridge);
    int32_t tol = o->tolerance;
    if (tol != 0 && tol != FIB_TOL_WARD && tol != (FIB_TOL_SCALED | FIB_TOL_WARD))
        return fib_error(FIB_E_INVALID,
                         "%s: tolerance %d: 0 (automatic), FIB_TOL_WARD or FIB_TOL_SCALED | "
                         "FIB_TOL_WARD", fn, (int)tol);
    if (!(budget > 0 && budget <= 1))
        return fib_error(FIB_E_INVALID, "%s: budget_fraction %g must be in (0, 1]", fn, budget);
    double power = o->sensitivity_power;
    if (!isfinite(power) || power < 0)
        return fib_error(FIB_E_INVALID, "%s: sensitivity_power %g", fn, power);
    /* a selection (a permutation of units) is no layer of a chain; weights
     * shared by two groups count once, which budget_graph.c counts */
    bool chain = !fib_budget_has_tied_weights(g);
    for (int32_t i = 0; i < g->n_groups && chain; i++)
        chain = (fib_group_is_input(g, i) && i == 0) ||
                (fib_group_matrix(g, i) && g->groups[i].sources[0] == i - 1 &&
                 !(g->groups[i].ops->budget_role &&
                   g->groups[i].ops->budget_role(g, i) == FIB_BUDGET_SELECTS));
    if (!chain)
        return graph_budget(g, budget, o, options, base_out);
    for (int32_t i = 0; i < g->n_groups; i++) {
        const fib_group *grp = &g->groups[i];
        if (fib_group_is_input(g, i) && i == 0)
            continue;
        if (grp->n_units > FIB_LINKAGE_MAX_UNITS && !fib_group_is_output(g, i))
            return fib_error(FIB_E_UNSUPPORTED, "%s: group %d: %lld units, above "
                             "FIB_LINKAGE_MAX_UNITS", fn, (int)i, (long long)grp->n_units);
    }
    /* automatic: the scale-aware grouping whenever every hidden group is
     * positively homogeneous (its rank-1 fit never fits worse than the mean
     * for a given partition), else plain Ward */
    bool homogeneous = true;
    for (int32_t i = 1; i < g->n_groups; i++)
        if (!fib_group_is_output(g, i))
            homogeneous = homogeneous && fib_activation_homogeneous(g->groups[i].activation);
    int32_t modes[1];
    int n_modes = 1;
    modes[0] = tol != 0 ? tol
               : homogeneous ? (FIB_TOL_SCALED | FIB_TOL_WARD) : FIB_TOL_WARD;
    fib_base *best = NULL;
    double best_bound = INFINITY;
    int64_t best_params = 0;
    int32_t best_mode = 0, status = FIB_OK;
    bool best_corrected = false;
    for (int m = 0; m < n_modes; m++) {
        fib_base *b = NULL;
        double bound = 0;
        int64_t params = 0;
        bool corrected = false;
        int64_t smallest = 0;
        status = budget_attempt(g, budget, (modes[m] & FIB_TOL_SCALED) != 0, o, &corrected,
                                &bound, &params, &smallest, &b);
        /* a budget below the smallest base: say which budget would do */
        if (status && smallest > 0 && options &&
            options->struct_size >= offsetof(fib_budget_options, smallest_fraction) +
                                        sizeof(double)) {
            int64_t total = 0;
            if (fib_graph_num_parameters(g, &total) == FIB_OK && total > 0)
                options->smallest_fraction = (double)smallest / (double)total;
        }
        if (status)
            break;
        if (!best || bound < best_bound) {
            fib_base_free(best);
            best = b;
            best_bound = bound;
            best_params = params;
            best_mode = modes[m];
            best_corrected = corrected;
        } else {
            fib_base_free(b);
        }
    }
    if (!status && !isfinite(best_bound))
        status = fib_error(FIB_E_UNSUPPORTED, "%s: no grouping reached the budget %g (%lld "
                           "parameters at best)", fn, budget, (long long)best_params);
    if (status) {
        fib_base_free(best);
        return status;
    }
    if (options) {
        options->bound = best_bound;
        options->n_parameters = best_params;
        options->chosen_tolerance = best_mode;
        if (options->struct_size >= offsetof(fib_budget_options, corrected) + sizeof(int32_t))
            options->corrected = best_corrected;
    }
    *base_out = best;
    return FIB_OK;
}
