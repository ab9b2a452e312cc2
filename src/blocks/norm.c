/* LayerNorm and RMSNorm over the units of a group, at every position:
 *     y_i = gamma_i * (x_{g(i)} - mu) / sqrt(var + eps) + beta_i
 * with mu = sum_i m_i x_{g(i)} / sum_i m_i and var likewise (RMSNorm: no
 * mean, var = the weighted mean square). In a graph built by users g is the
 * identity and every multiplicity m_i is 1; in a base, unit i stands for a
 * class of m_i original units and may read a merged source unit (g gathers),
 * so the statistics are those of the original (docs/blocks/norm.md). */
#include "blocks/blocks.h"
#include "model/gather.h"

#include <math.h>
#include <string.h>

typedef struct fib_norm {
    int32_t kind;
    int32_t dtype;
    double epsilon;
    const void *weight; /* NULL: gamma = 1 */
    const void *bias;   /* NULL: beta = 0 */
    double *mult;       /* owned, n_units */
    int64_t *gather;    /* owned; NULL: identity */
    void *owned_weight;
    void *owned_bias;
} fib_norm;

static const fib_norm *norm_of(const fib_graph *g, int32_t group)
{
    return (const fib_norm *)g->groups[group].block;
}

static double gamma_of(const fib_norm *n, int64_t i)
{
    return fib_load_or(n->dtype, n->weight, i, 1.0);
}

static double beta_of(const fib_norm *n, int64_t i)
{
    return fib_load_or(n->dtype, n->bias, i, 0.0);
}

static void norm_free(void *block)
{
    fib_norm *n = block;
    if (!n)
        return;
    fib_free(n->mult);
    fib_free(n->gather);
    fib_free(n->owned_weight);
    fib_free(n->owned_bias);
    fib_free(n);
}

static int32_t push_norm(fib_graph *g, int32_t source, int64_t n_units,
                         fib_norm *n, int32_t *group_out)
{
    fib_group grp = {.op = FIB_OP_NORM, .n_units = n_units,
                     .activation = FIB_ACT_LINEAR, .n_sources = 1,
                     .sources = {source, 0, 0}, .ops = &fib_norm_ops, .block = n};
    int32_t status = fib_graph_push_group(g, &grp, group_out);
    if (status)
        norm_free(n);
    return status;
}

int32_t fib_graph_add_norm_owned(fib_graph *g, int32_t source, int32_t kind,
                                 double epsilon, int64_t n_units,
                                 int64_t *gather_map, double *weight, double *bias,
                                 double *mult, int32_t *group_out)
{
    fib_norm *n = fib_calloc(1, sizeof *n);
    if (!n) {
        fib_free(gather_map);
        fib_free(weight);
        fib_free(bias);
        fib_free(mult);
        return fib_error(FIB_E_NOMEM, "out of memory adding a norm");
    }
    n->kind = kind;
    n->dtype = FIB_DTYPE_F64;
    n->epsilon = epsilon;
    n->weight = n->owned_weight = weight;
    n->bias = n->owned_bias = bias;
    n->gather = gather_map;
    n->mult = mult;
    if (!mult) {
        n->mult = fib_alloc(n_units, sizeof *n->mult);
        if (!n->mult) {
            norm_free(n);
            return fib_error(FIB_E_NOMEM, "out of memory adding a norm");
        }
        for (int64_t i = 0; i < n_units; i++)
            n->mult[i] = 1.0;
    }
    return push_norm(g, source, n_units, n, group_out);
}

int32_t fib_graph_add_norm(fib_graph *g, int32_t source, int32_t kind,
                           int32_t dtype, const void *weight, const void *bias,
                           double epsilon, uint32_t flags, int32_t *group_out)
{
    static const char fn[] = "fib_graph_add_norm";
    int32_t status = fib_graph_check_group(g, source, fn);
    if (status)
        return status;
    if (!group_out)
        return fib_error(FIB_E_NULL, "%s: group_out is NULL", fn);
    int32_t group = g->n_groups;
    if (kind != FIB_NORM_LAYER && kind != FIB_NORM_RMS)
        return fib_error(FIB_E_INVALID, "%s: group %d: unknown norm kind %d", fn,
                         (int)group, (int)kind);
    size_t esize;
    status = fib_check_dtype_and_flags(fn, group, dtype, flags, &esize);
    if (status)
        return status;
    if (!(epsilon > 0) || !isfinite(epsilon))
        return fib_error(FIB_E_INVALID, "%s: group %d: epsilon must be finite and > 0",
                         fn, (int)group);
    int64_t n_units = g->groups[source].n_units;
    for (int64_t i = 0; i < n_units; i++) {
        if (weight && !isfinite(fib_load(dtype, weight, i)))
            return fib_error(FIB_E_NONFINITE, "%s: group %d: weight %lld is not finite",
                             fn, (int)group, (long long)i);
        if (bias && !isfinite(fib_load(dtype, bias, i)))
            return fib_error(FIB_E_NONFINITE, "%s: group %d: bias %lld is not finite",
                             fn, (int)group, (long long)i);
    }
    fib_norm *n = fib_calloc(1, sizeof *n);
    if (n)
        n->mult = fib_alloc(n_units, sizeof *n->mult);
    if (n && n->mult && (flags & FIB_COPY)) {
        n->owned_weight = weight ? fib_alloc(n_units, esize) : NULL;
        n->owned_bias = bias ? fib_alloc(n_units, esize) : NULL;
    }
    if (!n || !n->mult ||
        ((flags & FIB_COPY) && ((weight && !n->owned_weight) || (bias && !n->owned_bias)))) {
        norm_free(n);
        return fib_error(FIB_E_NOMEM, "%s: group %d: out of memory", fn, (int)group);
    }
    n->kind = kind;
    n->dtype = dtype;
    n->epsilon = epsilon;
    n->weight = weight;
    n->bias = bias;
    if (flags & FIB_COPY) {
        if (weight)
            memcpy(n->owned_weight, weight, (size_t)n_units * esize);
        if (bias)
            memcpy(n->owned_bias, bias, (size_t)n_units * esize);
        n->weight = n->owned_weight;
        n->bias = n->owned_bias;
    }
    for (int64_t i = 0; i < n_units; i++)
        n->mult[i] = 1.0;
    return push_norm(g, source, n_units, n, group_out);
}

/* ---- colouring ---------------------------------------------------------- */

/* Fibers: the statistics are shared by all units, so unit i is fixed by the
 * class of what it reads, its gamma and its beta. */
static int64_t norm_fiber_width(const fib_graph *g, int32_t group,
                                const fib_partition *parts)
{
    (void)g, (void)group, (void)parts;
    return 3;
}

static int32_t norm_fiber_fill(const fib_graph *g, int32_t group,
                               const fib_partition *parts, fib_signature *sig,
                               int64_t offset)
{
    const fib_norm *n = norm_of(g, group);
    fib_gather_label_fill(g, group, parts, n->gather, sig, offset);
    for (int64_t i = 0; i < g->groups[group].n_units; i++) {
        fib_signature_put_weight(sig, i, offset + 1, n->dtype, gamma_of(n, i));
        fib_signature_put_weight(sig, i, offset + 2, n->dtype, beta_of(n, i));
    }
    return FIB_OK;
}

/* Opfibers. With e_i the error of norm unit i, n_i its normalised value and
 * s the standard deviation (root mean square), source unit j receives
 *     (1/s) [ sum_{i reads j} gamma_i e_i - (w_j / M) (S1 + nhat_j S2) ]
 * where w_j = sum_{i reads j} m_i, M = sum m, and S1 = sum gamma e,
 * S2 = sum gamma e n are shared (LayerNorm; RMSNorm has no S1). So j is
 * fixed by gamma summed per opfiber class of its readers (one column per
 * class), by w_j, and by its own fiber class (nhat_j). When every source
 * unit has at most one reader (a graph built by users), the per-class gamma
 * sums are one-hot, and the signature is [the reader's class (a label; -1
 * when unread or gamma is 0), gamma, w_j, nhat_j]: the same classes under
 * EXACT, four coordinates instead of k + 2. */
static int64_t norm_opfiber_width(const fib_graph *g, int32_t group,
                                  int32_t source_index, const fib_partition *parts,
                                  const fib_partition *fibers)
{
    (void)fibers, (void)source_index;
    const fib_group *grp = &g->groups[group];
    int32_t single = fib_gather_single_reader(norm_of(g, group)->gather, grp->n_units,
                                              g->groups[grp->sources[0]].n_units);
    return single < 0 ? single : single ? 4 : parts[group].n_classes + 2;
}

static int32_t single_reader_fill(const fib_graph *g, int32_t group,
                                  const fib_partition *parts,
                                  const fib_partition *fibers, fib_signature *sig,
                                  int64_t offset)
{
    const fib_norm *n = norm_of(g, group);
    const fib_partition *own = &parts[group];
    const fib_partition *src = &fibers[g->groups[group].sources[0]];
    for (int64_t j = 0; j < sig->n_units; j++) {
        double *val = sig->value + j * sig->n_coords + offset;
        double *tol = sig->tol + j * sig->n_coords + offset;
        val[0] = -1.0, tol[0] = FIB_TOL_LABEL;
        val[1] = val[2] = tol[1] = tol[2] = 0.0;
        val[3] = (double)src->color[j], tol[3] = FIB_TOL_LABEL;
    }
    for (int64_t i = 0; i < g->groups[group].n_units; i++) {
        int64_t j = fib_gather_at(n->gather, i);
        double *val = sig->value + j * sig->n_coords + offset;
        double *tol = sig->tol + j * sig->n_coords + offset;
        double gm = gamma_of(n, i);
        val[0] = gm != 0.0 ? (double)own->color[i] : -1.0;
        val[1] = gm;
        tol[1] = fib_rounding_tol(n->dtype, 1, fabs(gm));
        val[2] = n->mult[i];
        tol[2] = fib_rounding_tol(n->dtype, 1, fabs(n->mult[i]));
    }
    return FIB_OK;
}

static int32_t norm_opfiber_fill(const fib_graph *g, int32_t group,
                                 int32_t source_index, const fib_partition *parts,
                                 const fib_partition *fibers, fib_signature *sig,
                                 int64_t offset)
{
    (void)source_index;
    const fib_norm *n = norm_of(g, group);
    const fib_partition *own = &parts[group];
    const fib_partition *src = &fibers[g->groups[group].sources[0]];
    int32_t single = fib_gather_single_reader(n->gather, g->groups[group].n_units,
                                              sig->n_units);
    if (single)
        return single < 0 ? single : single_reader_fill(g, group, parts, fibers, sig, offset);
    int64_t k = own->n_classes, width = k + 2;
    int64_t *terms = fib_calloc(sig->n_units, sizeof *terms);
    if (!terms)
        return fib_error(FIB_E_NOMEM, "group %d: out of memory for opfiber sums", (int)group);
    for (int64_t j = 0; j < sig->n_units; j++) {
        memset(sig->value + j * sig->n_coords + offset, 0, (size_t)width * sizeof(double));
        memset(sig->tol + j * sig->n_coords + offset, 0, (size_t)width * sizeof(double));
    }
    for (int64_t i = 0; i < g->groups[group].n_units; i++) {
        int64_t j = fib_gather_at(n->gather, i);
        double *val = sig->value + j * sig->n_coords + offset;
        double *tol = sig->tol + j * sig->n_coords + offset;
        double gm = gamma_of(n, i);
        val[own->color[i]] += gm;
        tol[own->color[i]] += fabs(gm);
        val[k] += n->mult[i];
        tol[k] += fabs(n->mult[i]);
        terms[j]++;
    }
    for (int64_t j = 0; j < sig->n_units; j++) {
        double *val = sig->value + j * sig->n_coords + offset;
        double *tol = sig->tol + j * sig->n_coords + offset;
        for (int64_t c = 0; c <= k; c++)
            tol[c] = fib_rounding_tol(n->dtype, terms[j], tol[c]);
        val[k + 1] = (double)src->color[j];
        tol[k + 1] = FIB_TOL_LABEL;
    }
    fib_free(terms);
    return FIB_OK;
}

/* ---- forward, compress, lift ------------------------------------------- */

static void norm_forward(const fib_graph *g, int32_t group, int64_t batch,
                         double *const *activity, double *out)
{
    const fib_group *grp = &g->groups[group];
    const fib_norm *n = norm_of(g, group);
    int64_t n_in = g->groups[grp->sources[0]].n_units, w = grp->n_units;
    const double *x = activity[grp->sources[0]];
    int64_t rows = batch * fib_group_positions(grp);
    double total = 0.0;
    for (int64_t i = 0; i < w; i++)
        total += n->mult[i];
    for (int64_t r = 0; r < rows; r++) {
        const double *xr = x + r * n_in;
        double mean = 0.0, var = 0.0;
        if (n->kind == FIB_NORM_LAYER) {
            for (int64_t i = 0; i < w; i++)
                mean += n->mult[i] * xr[fib_gather_at(n->gather, i)];
            mean /= total;
        }
        for (int64_t i = 0; i < w; i++) {
            double d = xr[fib_gather_at(n->gather, i)] - mean;
            var += n->mult[i] * d * d;
        }
        var /= total;
        double inv = 1.0 / sqrt(var + n->epsilon);
        for (int64_t i = 0; i < w; i++)
            out[r * w + i] = gamma_of(n, i) * ((xr[fib_gather_at(n->gather, i)] - mean) * inv) + beta_of(n, i);
    }
}

/* The block of a base or of a lift, made in `out`. Base unit c: gamma and
 * beta the class means, multiplicity the class sum, reading the source's
 * class of its first member. Full unit i of base class c: gamma_c, beta_c,
 * multiplicity m_c / |c|, reading a member of the source class that c
 * reads (i itself if it is one). */
static int32_t remake(const fib_graph *g, int32_t group, const fib_partition *parts,
                      fib_graph *out, const int32_t *out_ids, bool lift)
{
    const fib_norm *n = norm_of(g, group);
    int32_t source = g->groups[group].sources[0];
    const fib_partition *own = &parts[group];
    int64_t k = own->n_classes, count = lift ? own->n_units : k;
    int64_t *map = NULL;
    int64_t *sizes = fib_alloc(k, sizeof *sizes);
    double *gm = n->weight ? fib_calloc(count, sizeof *gm) : NULL;
    double *bt = n->bias ? fib_calloc(count, sizeof *bt) : NULL;
    double *mult = fib_calloc(count, sizeof *mult);
    int32_t status = lift ? fib_gather_for_lift(parts, group, source, n->gather, &map)
                          : fib_gather_for_base(parts, group, source, n->gather, &map);
    if (!status && (!sizes || (n->weight && !gm) || (n->bias && !bt) || !mult))
        status = fib_error(FIB_E_NOMEM, "group %d: out of memory %s", (int)group,
                           lift ? "lifting" : "merging");
    if (status) {
        fib_free(sizes);
        fib_free(map);
        fib_free(gm);
        fib_free(bt);
        fib_free(mult);
        return status;
    }
    fib_partition_class_sizes(own, sizes);
    for (int64_t i = 0; i < own->n_units; i++) {
        int64_t c = own->color[i];
        if (lift) {
            if (gm)
                gm[i] = gamma_of(n, c);
            if (bt)
                bt[i] = beta_of(n, c);
            mult[i] = n->mult[c] / (double)sizes[c];
            continue;
        }
        if (gm)
            gm[c] += gamma_of(n, i);
        if (bt)
            bt[c] += beta_of(n, i);
        mult[c] += n->mult[i];
    }
    for (int64_t c = 0; !lift && c < k; c++) {
        if (gm)
            gm[c] /= (double)sizes[c];
        if (bt)
            bt[c] /= (double)sizes[c];
    }
    fib_free(sizes);
    int32_t id;
    return fib_graph_add_norm_owned(out, out_ids[source], n->kind, n->epsilon, count, map,
                                    gm, bt, mult, &id);
}

static int32_t norm_compress(const fib_graph *g, int32_t group,
                             const fib_partition *parts, fib_graph *base,
                             const int32_t *base_ids)
{
    return remake(g, group, parts, base, base_ids, false);
}

static int32_t norm_lift(const fib_graph *base, int32_t group,
                         const fib_partition *parts, fib_graph *full,
                         const int32_t *full_ids)
{
    return remake(base, group, parts, full, full_ids, true);
}

/* ---- read-out ------------------------------------------------------------ */

static int64_t norm_num_parameters(const fib_graph *g, int32_t group)
{
    const fib_norm *n = norm_of(g, group);
    int64_t w = g->groups[group].n_units;
    return (n->weight ? w : 0) + (n->bias ? w : 0);
}

static bool norm_tensor(const fib_graph *g, int32_t group, int32_t index,
                        fib_tensor_view *out)
{
    const fib_norm *n = norm_of(g, group);
    int64_t w = g->groups[group].n_units;
    const char *names[3] = {"weight", "bias", "multiplicity"};
    const void *data[3] = {n->weight, n->bias, n->mult};
    int32_t dtypes[3] = {n->dtype, n->dtype, FIB_DTYPE_F64};
    for (int x = 0; x < 3; x++) {
        if (!data[x])
            continue;
        if (index-- == 0) {
            *out = (fib_tensor_view){names[x], dtypes[x], data[x], 1, {w, 1, 1, 1}, 1, 0};
            return true;
        }
    }
    return false;
}

/* kind, then per unit the source unit it reads. */
static int64_t norm_params(const fib_graph *g, int32_t group, int64_t *out,
                           int64_t capacity)
{
    const fib_norm *n = norm_of(g, group);
    int64_t w = g->groups[group].n_units;
    if (capacity > 0)
        out[0] = n->kind;
    for (int64_t i = 0; i < w; i++)
        if (i + 1 < capacity)
            out[i + 1] = fib_gather_at(n->gather, i);
    return w + 1;
}

static double norm_scalar(const fib_graph *g, int32_t group)
{
    return norm_of(g, group)->epsilon;
}

/* ---- budgets ------------------------------------------------------------ */

/* A norm follows its source unit by unit; its multiplicities keep the
 * statistics of a merged base those of the original. */
static int32_t norm_budget_role(const fib_graph *g, int32_t group)
{
    const fib_norm *n = norm_of(g, group);
    bool same = fib_gather_is_identity(n->gather, g->groups[group].n_units,
                                       g->groups[g->groups[group].sources[0]].n_units);
    for (int64_t i = 0; same && n->mult && i < g->groups[group].n_units; i++)
        same = n->mult[i] == 1.0;
    return same ? FIB_BUDGET_FOLLOWS : 0;
}

static int64_t norm_budget_parameters(const fib_graph *g, int32_t group, const int64_t *width)
{
    const fib_norm *n = norm_of(g, group);
    return (n->weight ? width[group] : 0) + (n->bias ? width[group] : 0);
}

static void norm_budget_backward(const fib_graph *g, int32_t group, int32_t source_index,
                                 const double *energy, double *src_energy)
{
    (void)source_index;
    const fib_norm *n = norm_of(g, group);
    for (int64_t i = 0; i < g->groups[group].n_units; i++) {
        double w = gamma_of(n, i);
        src_energy[fib_gather_at(n->gather, i)] += w * w * energy[i];
    }
}

static const char *const norm_tensor_keys[] = {"weight", "bias", "multiplicity", NULL};

static int32_t norm_build(fib_graph *g, const fib_block_source *S, int32_t *id)
{
    int32_t st = fib_source_no_extras(S, true, true, norm_tensor_keys);
    if (st == FIB_OK)
        st = fib_source_expect_params(S, 1 + S->units);
    if (st != FIB_OK)
        return st;
    int64_t kind = S->params[0];
    if (kind != FIB_NORM_LAYER && kind != FIB_NORM_RMS)
        return fib_source_error(S, "'params' item 0 (kind) is %lld; a "
                                "norm is 0 (LayerNorm) or 1 (RMSNorm)",
                                (long long)kind);
    if (!S->has_scalar || !(S->scalar > 0))
        return fib_source_error(S, "'scalar' (epsilon) must be a "
                                "finite number > 0");
    fib_stored_tensor t[3] = {{0}};
    st = fib_source_vector(S, "weight", false, S->units, &t[0]);
    if (st == FIB_OK)
        st = fib_source_vector(S, "bias", false, S->units, &t[1]);
    if (st == FIB_OK)
        st = fib_source_vector(S, "multiplicity", false, S->units, &t[2]);
    double *mult = NULL;
    if (st == FIB_OK)
        st = fib_source_owned_copy(S, "multiplicity", &t[2], true, &mult);
    int64_t *gather = NULL;
    if (st == FIB_OK)
        st = fib_source_read_gather(S, 1, S->units, fib_source_group(g, S, 0)->n_units, &gather);
    if (st != FIB_OK) {
        fib_free(mult);
        return st;
    }
    bool plain = !gather;
    for (int64_t i = 0; plain && mult && i < S->units; i++)
        plain = mult[i] == 1.0;
    if (plain) {
        fib_free(mult);
        fib_source_tensors s;
        st = fib_source_tensors_make(S, t, 2, &s);
        if (st != FIB_OK)
            return st;
        st = fib_graph_add_norm(g, S->sources[0], (int32_t)kind, s.dtype,
                                s.data[0], s.data[1], S->scalar, s.flags, id);
        fib_source_tensors_free(&s);
        return fib_source_done(S, st);
    }
    double *weight = NULL, *bias = NULL;
    st = fib_source_owned_copy(S, "weight", &t[0], false, &weight);
    if (st == FIB_OK)
        st = fib_source_owned_copy(S, "bias", &t[1], false, &bias);
    if (st != FIB_OK) {
        fib_free(weight);
        fib_free(mult);
        fib_free(gather);
        return st;
    }
    return fib_source_done(S, fib_graph_add_norm_owned(g, S->sources[0],
                                                       (int32_t)kind, S->scalar, S->units,
                                                       gather, weight, bias, mult, id));
}

const fib_block_ops fib_norm_ops = {
    .name = "norm",
    .build = norm_build,
    .free_block = norm_free,
    .fiber_width = norm_fiber_width,
    .fiber_fill = norm_fiber_fill,
    .opfiber_width = norm_opfiber_width,
    .opfiber_fill = norm_opfiber_fill,
    .forward = norm_forward,
    .compress = norm_compress,
    .lift = norm_lift,
    .num_parameters = norm_num_parameters,
    .tensor = norm_tensor,
    .params = norm_params,
    .scalar = norm_scalar,
    .budget_role = norm_budget_role,
    .budget_parameters = norm_budget_parameters,
    .budget_backward = norm_budget_backward,
};
