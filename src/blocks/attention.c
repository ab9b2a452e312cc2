/* Multi-head self-attention: q, k, v and the output projection are dense
 * groups; the attention core (FIB_OP_ATTEND) reads q, k and v.
 *
 * The core of head h, over positions t, t' of a sequence:
 *     score[t,t'] = scale * sum_{pairs (a, b, m) of h} m * q_a[t] * k_b[t'] * phase(t - t')
 *     out_u[t]    = sum_t' softmax_t'(score[t,.])[t'] * v_{v(u)}[t']
 * for every core unit u of head h, over t' <= t only when causal. phase is
 * 1 without rotary embeddings, else cos(omega_p (t - t')) or
 * sin(omega_p (t - t')): rotating q at t and k at t' by the same frequency
 * leaves their product a function of t - t', so the rotation lives here and
 * q, k stay plain dense groups. An original head has the pairs of its
 * dimensions; a base head has one pair per distinct (q class, k class,
 * phase) with the summed multiplicity, so it is smaller and exact (see
 * docs/blocks/attention.md). */
#include "blocks/blocks.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const fib_attend *attend_of(const fib_graph *g, int32_t group)
{
    return (const fib_attend *)g->groups[group].block;
}

void fib_attend_free(fib_attend *a)
{
    if (!a)
        return;
    fib_free(a->head_start);
    fib_free(a->pair_q);
    fib_free(a->pair_k);
    fib_free(a->pair_mult);
    fib_free(a->unit_head);
    fib_free(a->unit_v);
    fib_free(a->unit_start);
    fib_free(a->unit_order);
    fib_free(a->pair_omega);
    fib_free(a->pair_sin);
    fib_free(a->pair_phase);
    fib_free(a);
}

static void attend_free(void *block)
{
    fib_attend_free(block);
}

/* Allocates the arrays of a core with n_pairs pairs and n_units units,
 * with the pairs' phases when rotary. */
static fib_attend *attend_alloc(int64_t n_heads, int64_t n_pairs, int64_t n_units,
                                bool rotary)
{
    fib_attend *a = fib_calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->n_heads = n_heads;
    a->n_pairs = n_pairs;
    a->head_start = fib_calloc(n_heads + 1, sizeof *a->head_start);
    a->pair_q = fib_alloc(n_pairs > 0 ? n_pairs : 1, sizeof *a->pair_q);
    a->pair_k = fib_alloc(n_pairs > 0 ? n_pairs : 1, sizeof *a->pair_k);
    a->pair_mult = fib_alloc(n_pairs > 0 ? n_pairs : 1, sizeof *a->pair_mult);
    a->unit_head = fib_alloc(n_units, sizeof *a->unit_head);
    a->unit_v = fib_alloc(n_units, sizeof *a->unit_v);
    if (rotary) {
        a->pair_omega = fib_alloc(n_pairs > 0 ? n_pairs : 1, sizeof *a->pair_omega);
        a->pair_sin = fib_alloc(n_pairs > 0 ? n_pairs : 1, sizeof *a->pair_sin);
    }
    if (!a->head_start || !a->pair_q || !a->pair_k || !a->pair_mult ||
        !a->unit_head || !a->unit_v || (rotary && (!a->pair_omega || !a->pair_sin))) {
        fib_attend_free(a);
        return NULL;
    }
    return a;
}

static int64_t phase_ids(const fib_attend *a, int64_t *ids);

int32_t fib_graph_add_attend_owned(fib_graph *g, int32_t q, int32_t k,
                                   int32_t v, int64_t n_units, fib_attend *a,
                                   int32_t *group_out)
{
    if (a->pair_omega) {
        a->pair_phase = fib_alloc(a->n_pairs > 0 ? a->n_pairs : 1, sizeof *a->pair_phase);
        a->n_phases = a->pair_phase ? phase_ids(a, a->pair_phase) : FIB_E_NOMEM;
        if (a->n_phases < 0) {
            fib_attend_free(a);
            return fib_error(FIB_E_NOMEM, "out of memory adding an attention core");
        }
    }
    /* Units listed head by head (counting sort), for the forward pass. */
    a->unit_start = fib_calloc(a->n_heads + 1, sizeof *a->unit_start);
    a->unit_order = fib_alloc(n_units, sizeof *a->unit_order);
    if (!a->unit_start || !a->unit_order) {
        fib_attend_free(a);
        return fib_error(FIB_E_NOMEM, "out of memory adding an attention core");
    }
    for (int64_t u = 0; u < n_units; u++)
        a->unit_start[a->unit_head[u] + 1]++;
    for (int64_t h = 0; h < a->n_heads; h++)
        a->unit_start[h + 1] += a->unit_start[h];
    for (int64_t u = 0; u < n_units; u++)
        a->unit_order[a->unit_start[a->unit_head[u]]++] = u;
    for (int64_t h = a->n_heads; h > 0; h--)
        a->unit_start[h] = a->unit_start[h - 1];
    a->unit_start[0] = 0;
    fib_group grp = {.op = FIB_OP_ATTEND, .n_units = n_units,
                     .activation = FIB_ACT_LINEAR, .n_sources = 3,
                     .sources = {q, k, v}, .ops = &fib_attend_ops, .block = a};
    int32_t status = fib_graph_push_group(g, &grp, group_out);
    if (status)
        fib_attend_free(a);
    return status;
}

/* Removes the groups added since the graph had n0 of them (a builder that
 * adds several groups fails as a whole). */
static void pop_groups(fib_graph *g, int32_t n0)
{
    while (g->n_groups > n0) {
        fib_group *grp = &g->groups[--g->n_groups];
        for (int32_t s = 0; s < grp->n_sources; s++)
            g->groups[grp->sources[s]].n_consumers--;
        if (grp->ops && grp->ops->free_block)
            grp->ops->free_block(grp->block);
        fib_free(grp->name);
    }
}

int32_t fib_graph_add_attention(fib_graph *g, int32_t source, int64_t n_heads,
                                int32_t dtype, const void *in_weight,
                                const void *in_bias, const void *out_weight,
                                const void *out_bias, uint32_t flags,
                                int32_t *group_out)
{
    static const char fn[] = "fib_graph_add_attention";
    int32_t status = fib_graph_check_group(g, source, fn);
    if (status)
        return status;
    if (!in_weight || !out_weight || !group_out)
        return fib_error(FIB_E_NULL, "%s: %s is NULL", fn,
                         !in_weight ? "in_weight" : !out_weight ? "out_weight" : "group_out");
    size_t esize = fib_dtype_size(dtype);
    if (!esize)
        return fib_error(FIB_E_INVALID, "%s: unknown dtype %d", fn, (int)dtype);
    int64_t e = g->groups[source].n_units;
    if (n_heads < 1 || e % n_heads != 0)
        return fib_error(FIB_E_SHAPE,
                         "%s: embed_dim %lld is not divisible by %lld heads", fn,
                         (long long)e, (long long)n_heads);
    int64_t ee;
    if (!fib_mul_i64(e, e, &ee) || ee > INT64_MAX / 3)
        return fib_error(FIB_E_OVERFLOW, "%s: embed_dim %lld is too large", fn,
                         (long long)e);
    int32_t n0 = g->n_groups, q, k, v, core, out;
    const char *w = in_weight, *b = in_bias;
    size_t block = (size_t)ee * esize, row = (size_t)e * esize;
    status = fib_graph_add_dense(g, source, e, dtype, w, e, b, flags, &q);
    if (!status)
        status = fib_graph_add_dense(g, source, e, dtype, w + block, e,
                                     b ? b + row : NULL, flags, &k);
    if (!status)
        status = fib_graph_add_dense(g, source, e, dtype, w + 2 * block, e,
                                     b ? b + 2 * row : NULL, flags, &v);
    if (!status) {
        int64_t dh = e / n_heads;
        fib_attend *a = attend_alloc(n_heads, e, e, false);
        if (!a) {
            status = fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
        } else {
            a->scale = 1.0 / sqrt((double)dh);
            for (int64_t h = 0; h <= n_heads; h++)
                a->head_start[h] = h * dh;
            for (int64_t d = 0; d < e; d++) {
                a->pair_q[d] = a->pair_k[d] = a->unit_v[d] = d;
                a->pair_mult[d] = 1.0;
                a->unit_head[d] = d / dh;
            }
            status = fib_graph_add_attend_owned(g, q, k, v, e, a, &core);
        }
    }
    if (!status)
        status = fib_graph_add_dense(g, core, e, dtype, out_weight, e, out_bias,
                                     flags, &out);
    if (status) {
        pop_groups(g, n0);
        return status;
    }
    *group_out = out;
    return FIB_OK;
}

int32_t fib_attention_options_init(fib_attention_options *o, size_t struct_size)
{
    int32_t status = fib_options_clear(o, struct_size, sizeof *o, sizeof *o,
                                       "fib_attention_options_init");
    if (status)
        return status;
    o->struct_size = sizeof *o;
    o->n_heads = 1;
    o->rotary = FIB_ROTARY_NONE;
    o->rope_theta = 10000.0;
    return FIB_OK;
}

/* The shape an options struct asks for over a source of width e: heads,
 * key/value heads, head and rotary dimensions, scale; or an error naming
 * the field. */
typedef struct attention_shape {
    int64_t heads, kv_heads, head_dim, rotary_dim, q_width, kv_width;
    double scale;
} attention_shape;

static int32_t attention_shape_of(const fib_attention_options *o, int64_t e,
                                  const char *fn, attention_shape *sh)
{
    if (o->struct_size < sizeof *o)
        return fib_error(FIB_E_INVALID, "%s: options.struct_size %zu is smaller than %zu "
                         "(call fib_attention_options_init)", fn, o->struct_size, sizeof *o);
    sh->heads = o->n_heads;
    sh->kv_heads = o->n_kv_heads ? o->n_kv_heads : o->n_heads;
    if (sh->heads < 1 || sh->kv_heads < 1 || sh->heads % sh->kv_heads != 0)
        return fib_error(FIB_E_SHAPE, "%s: n_kv_heads %lld must divide n_heads %lld (>= 1)",
                         fn, (long long)o->n_kv_heads, (long long)o->n_heads);
    if (o->head_dim == 0 && e % sh->heads != 0)
        return fib_error(FIB_E_SHAPE, "%s: width %lld is not divisible by %lld heads "
                         "(set head_dim)", fn, (long long)e, (long long)sh->heads);
    sh->head_dim = o->head_dim ? o->head_dim : e / sh->heads;
    if (sh->head_dim < 1)
        return fib_error(FIB_E_SHAPE, "%s: head_dim %lld < 1", fn, (long long)o->head_dim);
    if (!fib_mul_i64(sh->heads, sh->head_dim, &sh->q_width) || sh->q_width > FIB_MAX_UNITS)
        return fib_error(FIB_E_OVERFLOW, "%s: %lld heads of %lld dimensions are too many",
                         fn, (long long)sh->heads, (long long)sh->head_dim);
    sh->kv_width = sh->kv_heads * sh->head_dim;
    if (o->causal != 0 && o->causal != 1)
        return fib_error(FIB_E_INVALID, "%s: causal is %d (0 or 1)", fn, (int)o->causal);
    if (o->rotary != FIB_ROTARY_NONE && o->rotary != FIB_ROTARY_HALF)
        return fib_error(FIB_E_INVALID, "%s: unknown rotary kind %d", fn, (int)o->rotary);
    sh->rotary_dim = 0;
    if (o->rotary == FIB_ROTARY_NONE && o->rotary_dim != 0)
        return fib_error(FIB_E_INVALID, "%s: rotary_dim %lld without rotary (set rotary to "
                         "FIB_ROTARY_HALF)", fn, (long long)o->rotary_dim);
    if (o->rotary == FIB_ROTARY_HALF) {
        if (!(o->rope_theta > 1.0) || !isfinite(o->rope_theta))
            return fib_error(FIB_E_INVALID, "%s: rope_theta %g must be finite and > 1", fn,
                             o->rope_theta);
        sh->rotary_dim = o->rotary_dim ? o->rotary_dim : sh->head_dim;
        if (sh->rotary_dim < 2 || sh->rotary_dim % 2 || sh->rotary_dim > sh->head_dim)
            return fib_error(FIB_E_SHAPE, "%s: rotary_dim %lld must be even, >= 2 and at most "
                             "head_dim %lld", fn, (long long)sh->rotary_dim,
                             (long long)sh->head_dim);
    }
    if (!(o->scale >= 0.0) || !isfinite(o->scale))
        return fib_error(FIB_E_INVALID, "%s: scale %g must be finite and >= 0 (0: "
                         "1/sqrt(head_dim))", fn, o->scale);
    sh->scale = o->scale > 0.0 ? o->scale : 1.0 / sqrt((double)sh->head_dim);
    return FIB_OK;
}

/* The core of an original attention: query head h reads key/value head
 * h / (heads / kv_heads); with rotary embeddings, dimension d < r/2 of a
 * head turns with d + r/2 at frequency omega = theta^(-2d/r) (Llama's
 * rotate_half), so with e = d + r/2 and D = t - t'
 *     q'_t . k'_t' over (d, e) = cos(omega D) (q_d k_d + q_e k_e)
 *                              + sin(omega D) (q_d k_e - q_e k_d)
 * and dimensions from r on do not turn (a plain pair, omega 0). */
static fib_attend *original_core(const attention_shape *sh, bool causal, double theta)
{
    int64_t hd = sh->head_dim, r = sh->rotary_dim, half = r / 2;
    int64_t per_head = hd + r, group = sh->heads / sh->kv_heads;
    fib_attend *a = attend_alloc(sh->heads, sh->heads * per_head, sh->q_width, r > 0);
    if (!a)
        return NULL;
    a->scale = sh->scale;
    a->causal = causal;
    int64_t p = 0;
    for (int64_t h = 0; h < sh->heads; h++) {
        int64_t qh = h * hd, kh = (h / group) * hd;
        for (int64_t d = 0; d < hd; d++) {
            a->unit_head[qh + d] = h;
            a->unit_v[qh + d] = kh + d;
            double omega = d < r ? pow(theta, -2.0 * (double)(d % half) / (double)r) : 0.0;
            a->pair_q[p] = qh + d;
            a->pair_k[p] = kh + d;
            a->pair_mult[p] = 1.0;
            if (r > 0) {
                a->pair_omega[p] = omega;
                a->pair_sin[p] = 0;
            }
            p++;
            if (d < r) {
                int64_t partner = d < half ? d + half : d - half;
                a->pair_q[p] = qh + d;
                a->pair_k[p] = kh + partner;
                a->pair_mult[p] = d < half ? 1.0 : -1.0;
                a->pair_omega[p] = omega;
                a->pair_sin[p] = 1;
                p++;
            }
        }
        a->head_start[h + 1] = p;
    }
    return a;
}

/* The projections as dense groups: rows per unit (leading dimension the
 * source width), or stored transposed (rows per source unit, q, k and v
 * side by side in one matrix of leading dimension qkv_ld). */
typedef struct projections {
    bool transposed;
    int64_t qkv_ld;
} projections;

static int32_t add_projection(fib_graph *g, int32_t source, int64_t n_out, int32_t dtype,
                              const void *w, int64_t ld, const void *bias, uint32_t flags,
                              const projections *p, int32_t *id)
{
    if (p->transposed)
        return fib_graph_add_dense_transposed(g, source, n_out, dtype, w, ld, bias, flags, id);
    return fib_graph_add_dense(g, source, n_out, dtype, w, ld, bias, flags, id);
}

static int32_t add_attention(fib_graph *g, int32_t source,
                             const fib_attention_options *options, int32_t dtype,
                             const void *q_weight, const void *q_bias,
                             const void *k_weight, const void *k_bias,
                             const void *v_weight, const void *v_bias,
                             const void *out_weight, const void *out_bias,
                             uint32_t flags, const projections *p, int32_t *group_out)
{
    static const char fn[] = "fib_graph_add_attention_ex";
    int32_t status = fib_graph_check_group(g, source, fn);
    if (status)
        return status;
    if (!options || !q_weight || !k_weight || !v_weight || !out_weight || !group_out)
        return fib_error(FIB_E_NULL, "%s: %s is NULL", fn,
                         !options ? "options" : !q_weight ? "q_weight" : !k_weight ? "k_weight"
                         : !v_weight ? "v_weight" : !out_weight ? "out_weight" : "group_out");
    if (!fib_dtype_size(dtype))
        return fib_error(FIB_E_INVALID, "%s: unknown dtype %d", fn, (int)dtype);
    int64_t e = g->groups[source].n_units;
    attention_shape sh;
    status = attention_shape_of(options, e, fn, &sh);
    if (status)
        return status;
    int32_t n0 = g->n_groups, q, k, v, core, out;
    int64_t ld = p->transposed ? p->qkv_ld : e;
    if (p->transposed && ld != sh.q_width + 2 * sh.kv_width)
        return fib_error(FIB_E_SHAPE, "%s: fused q, k, v of %lld columns, expected %lld", fn,
                         (long long)ld, (long long)(sh.q_width + 2 * sh.kv_width));
    status = add_projection(g, source, sh.q_width, dtype, q_weight, ld, q_bias, flags, p, &q);
    if (!status)
        status = add_projection(g, source, sh.kv_width, dtype, k_weight, ld, k_bias, flags, p,
                                &k);
    if (!status)
        status = add_projection(g, source, sh.kv_width, dtype, v_weight, ld, v_bias, flags, p,
                                &v);
    if (!status) {
        fib_attend *a = original_core(&sh, options->causal == 1, options->rope_theta);
        status = a ? fib_graph_add_attend_owned(g, q, k, v, sh.q_width, a, &core)
                   : fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    }
    if (!status)
        status = add_projection(g, core, e, dtype, out_weight, p->transposed ? e : sh.q_width,
                                out_bias, flags, p, &out);
    if (status) {
        pop_groups(g, n0);
        return status;
    }
    *group_out = out;
    return FIB_OK;
}

int32_t fib_graph_add_attention_ex(fib_graph *g, int32_t source,
                                   const fib_attention_options *options, int32_t dtype,
                                   const void *q_weight, const void *q_bias,
                                   const void *k_weight, const void *k_bias,
                                   const void *v_weight, const void *v_bias,
                                   const void *out_weight, const void *out_bias,
                                   uint32_t flags, int32_t *group_out)
{
    projections rows = {false, 0};
    return add_attention(g, source, options, dtype, q_weight, q_bias, k_weight, k_bias,
                         v_weight, v_bias, out_weight, out_bias, flags, &rows, group_out);
}

int32_t fib_attention_add_transposed(fib_graph *g, int32_t source,
                                     const fib_attention_options *options, int32_t dtype,
                                     const void *qkv_weight, const void *qkv_bias,
                                     const void *out_weight, const void *out_bias,
                                     uint32_t flags, int32_t *group_out)
{
    static const char fn[] = "fib_graph_add_attention_ex";
    int32_t status = fib_graph_check_group(g, source, fn);
    if (status)
        return status;
    attention_shape sh;
    if (!options || !qkv_weight)
        return fib_error(FIB_E_NULL, "%s: %s is NULL", fn, options ? "qkv_weight" : "options");
    status = attention_shape_of(options, g->groups[source].n_units, fn, &sh);
    if (status)
        return status;
    size_t esize = fib_dtype_size(dtype);
    if (!esize)
        return fib_error(FIB_E_INVALID, "%s: unknown dtype %d", fn, (int)dtype);
    /* q, k and v are the column ranges of the stored rows */
    const char *w = qkv_weight, *b = qkv_bias;
    size_t k_at = (size_t)sh.q_width * esize, v_at = (size_t)(sh.q_width + sh.kv_width) * esize;
    projections stored = {true, sh.q_width + 2 * sh.kv_width};
    return add_attention(g, source, options, dtype, w, b, w + k_at, b ? b + k_at : NULL,
                         w + v_at, b ? b + v_at : NULL, out_weight, out_bias, flags, &stored,
                         group_out);
}

/* ---- phases and terms ----------------------------------------------------- */

/* The factor of pair p's term at the offset D = t - t' of two positions. */
static double phase_at(const fib_attend *a, int64_t p, double offset)
{
    if (!a->pair_omega)
        return 1.0;
    return a->pair_sin[p] ? sin(a->pair_omega[p] * offset) : cos(a->pair_omega[p] * offset);
}

/* A pair over classes: (q class, k class, phase) and its multiplicity. */
typedef struct term {
    int64_t q, k;
    double omega;
    int32_t sin;
    double mult;
} term;

static int cmp_term_key(const term *a, const term *b)
{
    if (a->q != b->q)
        return a->q < b->q ? -1 : 1;
    if (a->k != b->k)
        return a->k < b->k ? -1 : 1;
    if (a->omega != b->omega)
        return a->omega < b->omega ? -1 : 1;
    return (a->sin > b->sin) - (a->sin < b->sin);
}

static int cmp_term(const void *x, const void *y)
{
    const term *a = x, *b = y;
    int c = cmp_term_key(a, b);
    return c ? c : (a->mult > b->mult) - (a->mult < b->mult);
}

/* The pairs of every head over the classes qcolor and kcolor: sorted by
 * (q class, k class, phase), equal keys merged with their multiplicities
 * summed (in sorted order, so equal multisets give equal sums), sums of 0
 * dropped (such a term adds nothing to the score). Head h's terms are
 * t[ends[h] .. ends[h + 1]); t holds a->n_pairs terms, ends n_heads + 1. */
static void class_terms(const fib_attend *a, const int64_t *qcolor, const int64_t *kcolor,
                        term *t, int64_t *ends)
{
    int64_t n = 0;
    ends[0] = 0;
    for (int64_t h = 0; h < a->n_heads; h++) {
        int64_t p0 = a->head_start[h], p1 = a->head_start[h + 1], start = n;
        for (int64_t p = p0; p < p1; p++)
            t[start + p - p0] = (term){qcolor[a->pair_q[p]], kcolor[a->pair_k[p]],
                                       a->pair_omega ? a->pair_omega[p] : 0.0,
                                       a->pair_omega ? a->pair_sin[p] : 0, a->pair_mult[p]};
        qsort(t + start, (size_t)(p1 - p0), sizeof *t, cmp_term);
        for (int64_t x = start; x < start + (p1 - p0); x++) {
            if (n > start && cmp_term_key(&t[n - 1], &t[x]) == 0)
                t[n - 1].mult += t[x].mult;
            else
                t[n++] = t[x];
        }
        int64_t kept = start;
        for (int64_t x = start; x < n; x++)
            if (t[x].mult != 0.0)
                t[kept++] = t[x];
        n = kept;
        ends[h + 1] = n;
    }
}

/* label[h] = the lowest head whose terms equal head h's: such heads have
 * the same scores for every input (their q units, and their k units, are
 * synchronised class by class), hence the same attention pattern. */
static void head_labels(const fib_attend *a, const term *t, const int64_t *ends,
                        int64_t *label)
{
    for (int64_t h = 0; h < a->n_heads; h++) {
        label[h] = h;
        int64_t n = ends[h + 1] - ends[h];
        for (int64_t h2 = 0; h2 < h; h2++) {
            if (label[h2] != h2 || ends[h2 + 1] - ends[h2] != n)
                continue;
            int64_t x = 0;
            while (x < n && cmp_term(&t[ends[h] + x], &t[ends[h2] + x]) == 0)
                x++;
            if (x == n) {
                label[h] = h2;
                break;
            }
        }
    }
}

/* head_labels over the classes of the q and k groups in parts. */
static int32_t head_labels_of(const fib_graph *g, int32_t group, const fib_partition *parts,
                              int64_t *label)
{
    const fib_attend *a = attend_of(g, group);
    const fib_group *grp = &g->groups[group];
    term *t = fib_alloc(a->n_pairs > 0 ? a->n_pairs : 1, sizeof *t);
    int64_t *ends = fib_alloc(a->n_heads + 1, sizeof *ends);
    if (!t || !ends) {
        fib_free(t);
        fib_free(ends);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory comparing heads", (int)group);
    }
    class_terms(a, parts[grp->sources[0]].color, parts[grp->sources[1]].color, t, ends);
    head_labels(a, t, ends, label);
    fib_free(t);
    fib_free(ends);
    return FIB_OK;
}

/* ---- colouring ---------------------------------------------------------- */

/* Fibers: units of heads with the same terms share the attention pattern,
 * so a unit is fixed by its head's label and the class of the v unit it
 * reads (duplicated heads merge). */
static int64_t attend_fiber_width(const fib_graph *g, int32_t group,
                                  const fib_partition *parts)
{
    (void)g, (void)group, (void)parts;
    return 2;
}

static int32_t attend_fiber_fill(const fib_graph *g, int32_t group,
                                 const fib_partition *parts, fib_signature *sig,
                                 int64_t offset)
{
    const fib_attend *a = attend_of(g, group);
    const fib_partition *pv = &parts[g->groups[group].sources[2]];
    int64_t *label = fib_alloc(a->n_heads, sizeof *label);
    if (!label)
        return fib_error(FIB_E_NOMEM, "group %d: out of memory comparing heads", (int)group);
    int32_t status = head_labels_of(g, group, parts, label);
    for (int64_t u = 0; !status && u < g->groups[group].n_units; u++) {
        double *val = sig->value + u * sig->n_coords + offset;
        double *tol = sig->tol + u * sig->n_coords + offset;
        val[0] = (double)label[a->unit_head[u]];
        val[1] = (double)pv->color[a->unit_v[u]];
        tol[0] = tol[1] = FIB_TOL_LABEL;
    }
    fib_free(label);
    return status;
}

/* Opfibers. The error of q unit a at position t is
 *     scale * sum_h sum_{pairs (a, b, m) of h} m * sum_t' G_h[t,t'] phase_p(t - t') k_b[t'],
 * with G_h the error of head h's scores, shared by the whole head; units of
 * one fiber class of k are synchronised, so the error is fixed by the
 * multiplicities summed per (head, fiber class of k, phase): one coordinate
 * each.
 * Likewise for k with q. A v unit receives, from each reader u, head h(u)'s
 * pattern applied to u's error: it is fixed by the count of its readers per
 * (head, opfiber class of the core). Only the combinations that occur get a
 * column (a side's sums are sparse: one nonzero per q or k unit and head).
 * When every unit of the side has at most one nonzero column (one head per
 * unit, as in a graph built by users), the row is two coordinates instead:
 * the column, a label (-1 for a unit with nothing there), and its value;
 * the same classes under EXACT, and linear in the units. */

/* A side's columns: one per (head, class) combination that occurs,
 * numbered in order of first occurrence (heads ascending, then the head's
 * items in order). Item p of head h (bounds[h] <= p < bounds[h + 1]) has
 * class color[item[p]] and adds to the row of unit self[p] (of n_self);
 * column[p] receives its column when not NULL, and *single whether every
 * unit has at most one column. Returns the number of columns, or
 * FIB_E_NOMEM. */
static int64_t side_columns(const int64_t *bounds, int64_t n_heads,
                            const int64_t *item, const int64_t *color,
                            int64_t n_classes, const int64_t *self, int64_t n_self,
                            int64_t *column, bool *single)
{
    int64_t *seen = fib_alloc(n_classes > 0 ? n_classes : 1, sizeof *seen);
    int64_t *unit_column = fib_alloc(n_self > 0 ? n_self : 1, sizeof *unit_column);
    if (!seen || !unit_column) {
        fib_free(seen);
        fib_free(unit_column);
        return fib_error(FIB_E_NOMEM, "out of memory for attention opfiber columns");
    }
    for (int64_t c = 0; c < n_classes; c++)
        seen[c] = -1;
    for (int64_t u = 0; u < n_self; u++)
        unit_column[u] = -1;
    int64_t n = 0;
    *single = true;
    for (int64_t h = 0; h < n_heads; h++) {
        int64_t head_first = n;
        for (int64_t p = bounds[h]; p < bounds[h + 1]; p++) {
            int64_t c = color[item[p]];
            if (seen[c] < head_first)
                seen[c] = n++;
            if (column)
                column[p] = seen[c];
            int64_t *uc = &unit_column[self[p]];
            *single = *single && (*uc < 0 || *uc == seen[c]);
            *uc = seen[c];
        }
    }
    fib_free(seen);
    fib_free(unit_column);
    return n;
}

/* The layout of one side's opfiber sums: q and k pair with the fiber
 * classes of the other side; v units are counted per (head, opfiber class
 * of the core) of their readers. Items, their units and their classes. */
typedef struct side {
    const int64_t *bounds, *item, *color, *self;
    int64_t n_classes, n_self;
    const double *mult;  /* per item; NULL: 1 (counts) */
    int64_t *owned_self; /* v: the unit each reader reads */
    /* q, k with rotary phases: item p is pair p, its class the pair
     * (class of the other side, phase) numbered class * n_phases + phase */
    int64_t *owned_item, *owned_color;
} side;

static void side_clear(side *sd)
{
    fib_free(sd->owned_self);
    fib_free(sd->owned_item);
    fib_free(sd->owned_color);
    *sd = (side){0};
}

typedef struct phase_key {
    double omega;
    int32_t sin;
    int64_t p;
} phase_key;

static int cmp_phase_key(const void *x, const void *y)
{
    const phase_key *a = x, *b = y;
    if (a->omega != b->omega)
        return a->omega < b->omega ? -1 : 1;
    return (a->sin > b->sin) - (a->sin < b->sin);
}

/* ids[p] = the number of pair p's phase (omega, sin) among the distinct
 * phases of the core; returns their count, or FIB_E_NOMEM. */
static int64_t phase_ids(const fib_attend *a, int64_t *ids)
{
    phase_key *keys = fib_alloc(a->n_pairs > 0 ? a->n_pairs : 1, sizeof *keys);
    if (!keys)
        return fib_error(FIB_E_NOMEM, "out of memory numbering rotary phases");
    for (int64_t p = 0; p < a->n_pairs; p++)
        keys[p] = (phase_key){a->pair_omega[p], a->pair_sin[p], p};
    qsort(keys, (size_t)a->n_pairs, sizeof *keys, cmp_phase_key);
    int64_t n = 0;
    for (int64_t x = 0; x < a->n_pairs; x++) {
        if (x > 0 && cmp_phase_key(&keys[x - 1], &keys[x]) != 0)
            n++;
        ids[keys[x].p] = n;
    }
    fib_free(keys);
    return a->n_pairs > 0 ? n + 1 : 0;
}

/* Gives a q or k side the classes (class of the other side, phase). */
static int32_t side_add_phases(const fib_attend *a, int32_t group, side *sd)
{
    int64_t n = a->n_pairs > 0 ? a->n_pairs : 1;
    sd->owned_item = fib_alloc(n, sizeof *sd->owned_item);
    sd->owned_color = fib_alloc(n, sizeof *sd->owned_color);
    if (!sd->owned_item || !sd->owned_color)
        return fib_error(FIB_E_NOMEM, "group %d: out of memory for opfiber sums", (int)group);
    int64_t n_phases = a->n_phases, n_keys;
    if (!fib_mul_i64(sd->n_classes, n_phases > 0 ? n_phases : 1, &n_keys))
        return fib_error(FIB_E_OVERFLOW, "group %d: too many (class, phase) combinations",
                         (int)group);
    for (int64_t p = 0; p < a->n_pairs; p++) {
        sd->owned_item[p] = p;
        sd->owned_color[p] = sd->color[sd->item[p]] * n_phases + a->pair_phase[p];
    }
    sd->item = sd->owned_item;
    sd->color = sd->owned_color;
    sd->n_classes = n_keys;
    return FIB_OK;
}

/* The side of the core's source `source_index`; on failure nothing is left
 * to clear. */
static int32_t side_of(const fib_graph *g, int32_t group, int32_t source_index,
                       const fib_partition *parts, const fib_partition *fibers,
                       side *sd)
{
    const fib_attend *a = attend_of(g, group);
    const fib_group *grp = &g->groups[group];
    *sd = (side){.n_self = g->groups[grp->sources[source_index]].n_units};
    if (source_index == 2) {
        int64_t n = a->unit_start[a->n_heads];
        sd->owned_self = fib_alloc(n > 0 ? n : 1, sizeof *sd->owned_self);
        if (!sd->owned_self)
            return fib_error(FIB_E_NOMEM, "group %d: out of memory for opfiber counts",
                             (int)group);
        for (int64_t s = 0; s < n; s++)
            sd->owned_self[s] = a->unit_v[a->unit_order[s]];
        sd->bounds = a->unit_start;
        sd->item = a->unit_order;
        sd->self = sd->owned_self;
        sd->color = parts[group].color;
        sd->n_classes = parts[group].n_classes;
        return FIB_OK;
    }
    const fib_partition *po = &fibers[grp->sources[source_index == 0 ? 1 : 0]];
    sd->bounds = a->head_start;
    sd->item = source_index == 0 ? a->pair_k : a->pair_q;
    sd->self = source_index == 0 ? a->pair_q : a->pair_k;
    sd->color = po->color;
    sd->n_classes = po->n_classes;
    sd->mult = a->pair_mult;
    int32_t status = a->pair_omega ? side_add_phases(a, group, sd) : FIB_OK;
    if (status)
        side_clear(sd);
    return status;
}

static int64_t attend_opfiber_width(const fib_graph *g, int32_t group,
                                    int32_t source_index,
                                    const fib_partition *parts,
                                    const fib_partition *fibers)
{
    const fib_attend *a = attend_of(g, group);
    side sd;
    int32_t status = side_of(g, group, source_index, parts, fibers, &sd);
    if (status)
        return status;
    bool single;
    int64_t width = side_columns(sd.bounds, a->n_heads, sd.item, sd.color, sd.n_classes,
                                 sd.self, sd.n_self, NULL, &single);
    side_clear(&sd);
    return width < 0 ? width : single ? 2 : width;
}

static int32_t attend_opfiber_fill(const fib_graph *g, int32_t group,
                                   int32_t source_index,
                                   const fib_partition *parts,
                                   const fib_partition *fibers,
                                   fib_signature *sig, int64_t offset)
{
    const fib_attend *a = attend_of(g, group);
    side sd;
    int32_t status = side_of(g, group, source_index, parts, fibers, &sd);
    if (status)
        return status;
    int64_t n_items = sd.bounds[a->n_heads];
    int64_t *column = fib_alloc(n_items > 0 ? n_items : 1, sizeof *column);
    if (!column) {
        side_clear(&sd);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory for opfiber sums", (int)group);
    }
    bool single;
    int64_t width = side_columns(sd.bounds, a->n_heads, sd.item, sd.color, sd.n_classes,
                                 sd.self, sd.n_self, column, &single);
    if (width < 0) {
        fib_free(column);
        side_clear(&sd);
        return (int32_t)width;
    }
    /* the rounding of sum_{pairs} m (a q or k row's sums have at most a
     * head's pairs as terms; counts are exact) */
    int64_t max_terms = 1;
    for (int64_t h = 0; sd.mult && h < a->n_heads; h++)
        if (sd.bounds[h + 1] - sd.bounds[h] > max_terms)
            max_terms = sd.bounds[h + 1] - sd.bounds[h];
    int64_t used = single ? 2 : width;
    for (int64_t j = 0; j < sig->n_units; j++) {
        memset(sig->value + j * sig->n_coords + offset, 0, (size_t)used * sizeof(double));
        memset(sig->tol + j * sig->n_coords + offset, 0, (size_t)used * sizeof(double));
    }
    for (int64_t p = 0; p < n_items; p++) {
        double m = sd.mult ? sd.mult[p] : 1.0;
        int64_t row = sd.self[p] * sig->n_coords + offset;
        int64_t cell = row + (single ? 1 : column[p]);
        if (single)
            sig->value[row] = (double)column[p];
        sig->value[cell] += m;
        sig->tol[cell] += fabs(m);
    }
    for (int64_t j = 0; j < sig->n_units; j++) {
        double *val = sig->value + j * sig->n_coords + offset;
        double *tol = sig->tol + j * sig->n_coords + offset;
        for (int64_t x = single ? 1 : 0; x < used; x++)
            tol[x] = sd.mult ? fib_rounding_tol(FIB_DTYPE_F64, max_terms, tol[x]) : 0.0;
        if (single) {
            /* nothing there (unread, or multiplicities summing to 0): the
             * all-zero row of the sparse form */
            if (val[1] == 0.0)
                val[0] = -1.0;
            tol[0] = FIB_TOL_LABEL;
        }
    }
    fib_free(column);
    side_clear(&sd);
    return FIB_OK;
}

/* The exact form of a side's opfiber sums. A q or k unit of a rotary core
 * has one nonzero column per pair it is in (two: its frequency's cos and
 * sin terms), a v unit one per reading head, so the full form is mostly
 * zeros (q of a Llama layer: 2048 units x 4096 columns). Here a unit's row
 * is instead its nonzero columns in ascending order, each as two
 * coordinates (the column: a label; its sum), padded with (-1, 0) to the
 * longest row's length. Two such rows are equal iff the full rows are, and
 * under FIB_TOL_EXACT the full rows' classes are their equality classes
 * when every sum is an integer whose allowance is below 1/4 (integer
 * multiplicities, as every core the library builds has) and the core is
 * the side's only reader (no other coordinate chains units across
 * values): then both forms give the same classes. Otherwise, and for a
 * side whose units have at most one column each (already two coordinates),
 * width 0: the full form is used. */

/* A side's nonzero cells, unit by unit: cells start[u] .. start[u + 1] of
 * unit u, ascending by column, each (column, summed multiplicity, summed
 * |multiplicity|); zero sums are dropped. */
typedef struct sparse_rows {
    int64_t *start;
    int64_t *column;
    double *sum, *abs_sum;
    int64_t longest; /* cells of the longest row */
    int64_t max_terms;
    bool counts;    /* the sums count readers (v): exact */
    double max_abs; /* the largest summed |multiplicity| of a cell, dropped
                       ones included (their allowance in the full form) */
} sparse_rows;

static void sparse_rows_clear(sparse_rows *r)
{
    fib_free(r->start);
    fib_free(r->column);
    fib_free(r->sum);
    fib_free(r->abs_sum);
}

/* Builds the rows of side sd (its items' columns from side_columns):
 * items are taken unit by unit in item order and merged by column, so a
 * cell adds its terms in the order the full form adds them. */
static int32_t sparse_rows_of(const side *sd, int64_t n_heads, const int64_t *item_column,
                              sparse_rows *r)
{
    int64_t n_items = sd->bounds[n_heads], n = sd->n_self;
    *r = (sparse_rows){0};
    r->start = fib_calloc(n + 1, sizeof *r->start);
    r->column = fib_alloc(n_items > 0 ? n_items : 1, sizeof *r->column);
    r->sum = fib_alloc(n_items > 0 ? n_items : 1, sizeof *r->sum);
    r->abs_sum = fib_alloc(n_items > 0 ? n_items : 1, sizeof *r->abs_sum);
    int64_t *fill = fib_alloc(n > 0 ? n : 1, sizeof *fill);
    if (!r->start || !r->column || !r->sum || !r->abs_sum || !fill) {
        fib_free(fill);
        sparse_rows_clear(r);
        return fib_error(FIB_E_NOMEM, "out of memory for attention opfiber rows");
    }
    for (int64_t p = 0; p < n_items; p++)
        r->start[sd->self[p] + 1]++;
    r->max_terms = 1;
    r->counts = !sd->mult;
    for (int64_t h = 0; sd->mult && h < n_heads; h++)
        if (sd->bounds[h + 1] - sd->bounds[h] > r->max_terms)
            r->max_terms = sd->bounds[h + 1] - sd->bounds[h];
    for (int64_t u = 0; u < n; u++)
        r->start[u + 1] += r->start[u];
    memcpy(fill, r->start, (size_t)n * sizeof *fill);
    for (int64_t p = 0; p < n_items; p++) {
        /* insertion by column, after the unit's cells of equal column */
        int64_t u = sd->self[p], c = item_column[p], x = fill[u]++;
        double m = sd->mult ? sd->mult[p] : 1.0;
        while (x > r->start[u] && r->column[x - 1] > c) {
            r->column[x] = r->column[x - 1];
            r->sum[x] = r->sum[x - 1];
            x--;
        }
        r->column[x] = c;
        r->sum[x] = m;
    }
    /* merge equal columns (terms in item order: the insertion is stable),
     * drop zero sums, compact */
    int64_t out = 0;
    for (int64_t u = 0; u < n; u++) {
        int64_t from = r->start[u], to = r->start[u + 1];
        r->start[u] = out;
        for (int64_t x = from; x < to;) {
            int64_t c = r->column[x];
            double sum = 0.0, abs_sum = 0.0;
            for (; x < to && r->column[x] == c; x++) {
                sum += r->sum[x];
                abs_sum += fabs(r->sum[x]);
            }
            if (abs_sum > r->max_abs)
                r->max_abs = abs_sum;
            if (sum != 0.0) {
                r->column[out] = c;
                r->sum[out] = sum;
                r->abs_sum[out++] = abs_sum;
            }
        }
        if (out - r->start[u] > r->longest)
            r->longest = out - r->start[u];
    }
    r->start[n] = out;
    fib_free(fill);
    return FIB_OK;
}

/* Whether every sum of the full form (zeros of cancelled terms included)
 * is an integer whose allowance is below 1/4. */
static bool integer_sums(const side *sd, const sparse_rows *r, int64_t n_items)
{
    for (int64_t p = 0; sd->mult && p < n_items; p++)
        if (sd->mult[p] != nearbyint(sd->mult[p]) || fabs(sd->mult[p]) > 1048576.0)
            return false;
    return fib_rounding_tol(FIB_DTYPE_F64, r->max_terms, r->max_abs) < 0.25;
}

/* The exact form's rows of side source_index, or r->longest 0 when the
 * full form is to be used. */
static int32_t exact_rows(const fib_graph *g, int32_t group, int32_t source_index,
                          const fib_partition *parts, const fib_partition *fibers,
                          sparse_rows *r)
{
    *r = (sparse_rows){0};
    const fib_attend *a = attend_of(g, group);
    const fib_group *src = &g->groups[g->groups[group].sources[source_index]];
    if (src->n_consumers != 1 || (src->ops && src->ops->recurrent))
        return FIB_OK;
    side sd;
    int32_t status = side_of(g, group, source_index, parts, fibers, &sd);
    int64_t n_items = status ? 0 : sd.bounds[a->n_heads];
    int64_t *column = status ? NULL : fib_alloc(n_items > 0 ? n_items : 1, sizeof *column);
    if (!status && !column)
        status = fib_error(FIB_E_NOMEM, "group %d: out of memory for opfiber sums", (int)group);
    bool single = true;
    if (!status) {
        int64_t width = side_columns(sd.bounds, a->n_heads, sd.item, sd.color, sd.n_classes,
                                     sd.self, sd.n_self, column, &single);
        status = width < 0 ? (int32_t)width : FIB_OK;
    }
    if (!status && !single) {
        status = sparse_rows_of(&sd, a->n_heads, column, r);
        if (!status && !integer_sums(&sd, r, n_items)) {
            sparse_rows_clear(r);
            *r = (sparse_rows){0};
        }
    }
    fib_free(column);
    side_clear(&sd);
    return status;
}

static int64_t attend_opfiber_exact_width(const fib_graph *g, int32_t group,
                                          int32_t source_index,
                                          const fib_partition *parts,
                                          const fib_partition *fibers)
{
    sparse_rows r;
    int32_t status = exact_rows(g, group, source_index, parts, fibers, &r);
    int64_t width = 2 * r.longest;
    sparse_rows_clear(&r);
    return status ? status : width;
}

static int32_t attend_opfiber_exact_fill(const fib_graph *g, int32_t group,
                                         int32_t source_index,
                                         const fib_partition *parts,
                                         const fib_partition *fibers,
                                         fib_signature *sig, int64_t offset)
{
    sparse_rows r;
    int32_t status = exact_rows(g, group, source_index, parts, fibers, &r);
    for (int64_t u = 0; !status && u < sig->n_units; u++) {
        double *val = sig->value + u * sig->n_coords + offset;
        double *tol = sig->tol + u * sig->n_coords + offset;
        int64_t x = 0;
        for (int64_t cell = r.start[u]; cell < r.start[u + 1]; cell++, x++) {
            val[2 * x] = (double)r.column[cell];
            tol[2 * x] = FIB_TOL_LABEL;
            val[2 * x + 1] = r.sum[cell];
            /* as the full form: counts are exact */
            tol[2 * x + 1] = r.counts ? 0.0
                             : fib_rounding_tol(FIB_DTYPE_F64, r.max_terms, r.abs_sum[cell]);
        }
        for (; x < r.longest; x++) {
            val[2 * x] = -1.0;
            tol[2 * x] = FIB_TOL_LABEL;
            val[2 * x + 1] = tol[2 * x + 1] = 0.0;
        }
    }
    sparse_rows_clear(&r);
    return status;
}

/* ---- forward ------------------------------------------------------------ */

/* Head h's score of query position t over key position t2. */
static double score(const fib_attend *a, int64_t h, const double *qt,
                    const double *kt, int64_t t, int64_t t2)
{
    double s = 0.0, offset = (double)(t - t2);
    for (int64_t p = a->head_start[h]; p < a->head_start[h + 1]; p++)
        s += a->pair_mult[p] * qt[a->pair_q[p]] * kt[a->pair_k[p]] * phase_at(a, p, offset);
    return a->scale * s;
}

static void attend_forward(const fib_graph *g, int32_t group, int64_t batch,
                           double *const *activity, double *out)
{
    const fib_group *grp = &g->groups[group];
    const fib_attend *a = attend_of(g, group);
    int64_t nq = g->groups[grp->sources[0]].n_units;
    int64_t nk = g->groups[grp->sources[1]].n_units;
    int64_t nv = g->groups[grp->sources[2]].n_units;
    int64_t n = grp->n_units, len = fib_group_positions(grp);
    for (int64_t b = 0; b < batch; b++) {
        const double *q = activity[grp->sources[0]] + b * len * nq;
        const double *k = activity[grp->sources[1]] + b * len * nk;
        const double *v = activity[grp->sources[2]] + b * len * nv;
        double *o = out + b * len * n;
        for (int64_t t = 0; t < len; t++)
            for (int64_t h = 0; h < a->n_heads; h++) {
                const int64_t *units = a->unit_order + a->unit_start[h];
                int64_t n_h = a->unit_start[h + 1] - a->unit_start[h];
                double top = -INFINITY, total = 0.0;
                int64_t seen = a->causal ? t + 1 : len;
                for (int64_t t2 = 0; t2 < seen; t2++) {
                    double s = score(a, h, q + t * nq, k + t2 * nk, t, t2);
                    if (s > top)
                        top = s;
                }
                for (int64_t x = 0; x < n_h; x++)
                    o[t * n + units[x]] = 0.0;
                for (int64_t t2 = 0; t2 < seen; t2++) {
                    double w = exp(score(a, h, q + t * nq, k + t2 * nk, t, t2) - top);
                    total += w;
                    for (int64_t x = 0; x < n_h; x++)
                        o[t * n + units[x]] += w * v[t2 * nv + a->unit_v[units[x]]];
                }
                for (int64_t x = 0; x < n_h; x++)
                    o[t * n + units[x]] /= total;
            }
    }
}

/* ---- compress, lift ------------------------------------------------------ */

/* What compressing or lifting an attention group reads besides its core:
 * the group, and the partitions of the group and of its q, k and v sources. */
typedef struct attend_inputs {
    const fib_group *grp;
    const fib_partition *own, *q, *k, *v;
} attend_inputs;

static attend_inputs attend_inputs_of(const fib_graph *g, int32_t group,
                                    const fib_partition *parts)
{
    const fib_group *grp = &g->groups[group];
    return (attend_inputs){.grp = grp, .own = &parts[group], .q = &parts[grp->sources[0]],
                          .k = &parts[grp->sources[1]], .v = &parts[grp->sources[2]]};
}

/* A base: one unit per class of the core; a class may span heads only when
 * their terms are equal (then they compute the same pattern), and takes the
 * head of its first member. Heads that no class keeps are dropped; a kept
 * head has one pair per distinct (q class, k class, phase) of its pairs,
 * multiplicities summed: the score is unchanged because the q units of a
 * class are synchronised, and so are the k units. */
static int32_t attend_compress(const fib_graph *g, int32_t group,
                               const fib_partition *parts, fib_graph *base,
                               const int32_t *base_ids)
{
    const fib_attend *a = attend_of(g, group);
    attend_inputs in = attend_inputs_of(g, group, parts);
    int64_t kc = in.own->n_classes;
    int64_t *first = fib_alloc(kc, sizeof *first);
    int64_t *ends = fib_alloc(a->n_heads + 1, sizeof *ends);
    int64_t *label = fib_alloc(a->n_heads, sizeof *label);
    int64_t *new_head = fib_alloc(a->n_heads, sizeof *new_head);
    term *t = fib_alloc(a->n_pairs > 0 ? a->n_pairs : 1, sizeof *t);
    fib_attend *b = NULL;
    int32_t status = FIB_OK;
    if (!first || !ends || !label || !new_head || !t) {
        status = fib_error(FIB_E_NOMEM, "group %d: out of memory merging", (int)group);
        goto done;
    }
    fib_partition_first_units(in.own, first);
    class_terms(a, in.q->color, in.k->color, t, ends);
    head_labels(a, t, ends, label);
    for (int64_t u = 0; u < in.grp->n_units; u++) {
        int64_t f = first[in.own->color[u]];
        if (label[a->unit_head[u]] != label[a->unit_head[f]]) {
            status = fib_error(FIB_E_UNSUPPORTED,
                               "group %d: attention units %lld (head %lld) and %lld (head "
                               "%lld) share a class but their heads attend differently; "
                               "their base would not be exact",
                               (int)group, (long long)f, (long long)a->unit_head[f],
                               (long long)u, (long long)a->unit_head[u]);
            goto done;
        }
    }
    for (int64_t h = 0; h < a->n_heads; h++)
        new_head[h] = -1;
    for (int64_t c = 0; c < kc; c++)
        new_head[a->unit_head[first[c]]] = 0;
    int64_t n_kept = 0, n_base = 0;
    for (int64_t h = 0; h < a->n_heads; h++)
        if (new_head[h] == 0) {
            new_head[h] = n_kept++;
            n_base += ends[h + 1] - ends[h];
        }
    b = attend_alloc(n_kept, n_base, kc, a->pair_omega != NULL);
    if (!b) {
        status = fib_error(FIB_E_NOMEM, "group %d: out of memory merging", (int)group);
        goto done;
    }
    b->scale = a->scale;
    b->causal = a->causal;
    int64_t x = 0;
    for (int64_t h = 0; h < a->n_heads; h++) {
        if (new_head[h] < 0)
            continue;
        for (int64_t y = ends[h]; y < ends[h + 1]; y++, x++) {
            b->pair_q[x] = t[y].q;
            b->pair_k[x] = t[y].k;
            b->pair_mult[x] = t[y].mult;
            if (b->pair_omega) {
                b->pair_omega[x] = t[y].omega;
                b->pair_sin[x] = (uint8_t)t[y].sin;
            }
        }
        b->head_start[new_head[h] + 1] = x;
    }
    for (int64_t c = 0; c < kc; c++) {
        b->unit_head[c] = new_head[a->unit_head[first[c]]];
        b->unit_v[c] = in.v->color[a->unit_v[first[c]]];
    }
done:
    fib_free(first);
    fib_free(ends);
    fib_free(label);
    fib_free(new_head);
    fib_free(t);
    if (status)
        return status;
    int32_t id;
    return fib_graph_add_attend_owned(base, base_ids[in.grp->sources[0]],
                                      base_ids[in.grp->sources[1]],
                                      base_ids[in.grp->sources[2]], kc, b, &id);
}

/* Units of each class listed together: members[start[c] .. start[c + 1]). */
static int64_t class_size(const fib_class_lists *l, int64_t c)
{
    return l->start[c + 1] - l->start[c];
}

/* A base pair (a, b, m) becomes, over the members A of q class a and B of
 * k class b, the pairs (A_i, B_i, m / |A|) when |A| = |B|, else every
 * (A_i, B_j, m / (|A| |B|)): the same score, and every member of A (of B)
 * carries the same multiplicity, so the lift has the base's symmetry. */
static int64_t lifted_pairs(const fib_class_lists *lq, const fib_class_lists *lk,
                            int64_t a, int64_t b)
{
    int64_t na = class_size(lq, a), nb = class_size(lk, b);
    return na == nb ? na : na * nb;
}

static void copy_phase(fib_attend *to, int64_t x, const fib_attend *from, int64_t p)
{
    if (from->pair_omega) {
        to->pair_omega[x] = from->pair_omega[p];
        to->pair_sin[x] = from->pair_sin[p];
    }
}

static int32_t attend_lift(const fib_graph *base, int32_t group,
                           const fib_partition *parts, fib_graph *full,
                           const int32_t *full_ids)
{
    const fib_attend *a = attend_of(base, group);
    attend_inputs in = attend_inputs_of(base, group, parts);
    int64_t n = in.own->n_units;
    fib_class_lists lq = {0}, lk = {0};
    int64_t *first_v = fib_alloc(in.v->n_classes, sizeof *first_v);
    if (!first_v || fib_class_lists_build(in.q, &lq) || fib_class_lists_build(in.k, &lk)) {
        fib_free(first_v);
        fib_class_lists_clear(&lq);
        fib_class_lists_clear(&lk);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory lifting", (int)group);
    }
    fib_partition_first_units(in.v, first_v);
    int64_t total = 0;
    for (int64_t p = 0; p < a->n_pairs; p++)
        total += lifted_pairs(&lq, &lk, a->pair_q[p], a->pair_k[p]);
    fib_attend *f = attend_alloc(a->n_heads, total, n, a->pair_omega != NULL);
    if (!f) {
        fib_free(first_v);
        fib_class_lists_clear(&lq);
        fib_class_lists_clear(&lk);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory lifting", (int)group);
    }
    f->scale = a->scale;
    f->causal = a->causal;
    int64_t x = 0;
    for (int64_t h = 0; h < a->n_heads; h++) {
        for (int64_t p = a->head_start[h]; p < a->head_start[h + 1]; p++) {
            int64_t ca = a->pair_q[p], cb = a->pair_k[p];
            int64_t na = class_size(&lq, ca), nb = class_size(&lk, cb);
            const int64_t *ma = lq.members + lq.start[ca], *mb = lk.members + lk.start[cb];
            if (na == nb) {
                for (int64_t i = 0; i < na; i++, x++) {
                    f->pair_q[x] = ma[i];
                    f->pair_k[x] = mb[i];
                    f->pair_mult[x] = a->pair_mult[p] / (double)na;
                    copy_phase(f, x, a, p);
                }
            } else {
                for (int64_t i = 0; i < na; i++)
                    for (int64_t j = 0; j < nb; j++, x++) {
                        f->pair_q[x] = ma[i];
                        f->pair_k[x] = mb[j];
                        f->pair_mult[x] = a->pair_mult[p] / ((double)na * (double)nb);
                        copy_phase(f, x, a, p);
                    }
            }
        }
        f->head_start[h + 1] = x;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t c = in.own->color[i], bv = a->unit_v[c];
        f->unit_head[i] = a->unit_head[c];
        /* Prefer v unit i itself when it lies in the right class. */
        f->unit_v[i] = (in.v->n_units == n && in.v->color[i] == bv) ? i : first_v[bv];
    }
    fib_free(first_v);
    fib_class_lists_clear(&lq);
    fib_class_lists_clear(&lk);
    int32_t id;
    return fib_graph_add_attend_owned(full, full_ids[in.grp->sources[0]],
                                      full_ids[in.grp->sources[1]],
                                      full_ids[in.grp->sources[2]], n, f, &id);
}

/* ---- read-out ------------------------------------------------------------ */

static int64_t attend_num_parameters(const fib_graph *g, int32_t group)
{
    (void)g, (void)group;
    return 0;
}

/* pair_multiplicity, and with rotary embeddings pair_frequency (omega). */
static bool attend_tensor(const fib_graph *g, int32_t group, int32_t index,
                          fib_tensor_view *out)
{
    const fib_attend *a = attend_of(g, group);
    if (a->n_pairs < 1 || index < 0 || index > (a->pair_omega ? 1 : 0))
        return false;
    *out = (fib_tensor_view){index ? "pair_frequency" : "pair_multiplicity", FIB_DTYPE_F64,
                             index ? a->pair_omega : a->pair_mult, 1,
                             {a->n_pairs, 1, 1, 1}, 1, 0};
    return true;
}

/* n_heads, per head its pair count, per pair (q, k), per unit (head, v);
 * then, only for a causal or rotary core, its options (1 causal | 2 rotary)
 * and, when rotary, per pair its phase kind (0 cos, 1 sin). */
static int64_t attend_params(const fib_graph *g, int32_t group, int64_t *out,
                             int64_t capacity)
{
    const fib_attend *a = attend_of(g, group);
    int64_t n = g->groups[group].n_units, count = 0;
#define PUT(value)                     \
    do {                               \
        if (count < capacity)          \
            out[count] = (value);      \
        count++;                       \
    } while (0)
    PUT(a->n_heads);
    for (int64_t h = 0; h < a->n_heads; h++)
        PUT(a->head_start[h + 1] - a->head_start[h]);
    for (int64_t p = 0; p < a->n_pairs; p++) {
        PUT(a->pair_q[p]);
        PUT(a->pair_k[p]);
    }
    for (int64_t u = 0; u < n; u++) {
        PUT(a->unit_head[u]);
        PUT(a->unit_v[u]);
    }
    if (a->causal || a->pair_omega)
        PUT((a->causal ? FIB_ATTEND_CAUSAL : 0) | (a->pair_omega ? FIB_ATTEND_ROTARY : 0));
    for (int64_t p = 0; a->pair_omega && p < a->n_pairs; p++)
        PUT(a->pair_sin[p]);
#undef PUT
    return count;
}

static double attend_scalar(const fib_graph *g, int32_t group)
{
    return attend_of(g, group)->scale;
}

/* params: n_heads, per head its pair count, per pair (q unit, k unit), per
 * unit (head, v unit); then, for a causal or rotary core only, its options
 * (FIB_ATTEND_CAUSAL | FIB_ATTEND_ROTARY) and, when rotary, per pair its
 * phase kind (0 cos, 1 sin); scalar: the softmax scale; tensors
 * pair_multiplicity (one value per pair, > 0 without rotary) and, when
 * rotary, pair_frequency (one finite value per pair). */
static int32_t check_attend_params(const fib_graph *g, const fib_block_source *S, int64_t *n_heads,
                                   int64_t *n_pairs, int64_t *options)
{
    const int64_t *p = S->params;
    int64_t n = S->n_params;
    if (n < 1 || p[0] < 1 || p[0] > n - 1)
        return fib_source_error(S, "'params' must start with the "
                                "number of heads (>= 1) and a pair count per "
                                "head");
    int64_t heads = p[0], pairs = 0;
    for (int64_t h = 0; h < heads; h++) {
        int64_t c = p[1 + h];
        if (c < 0 || c > n)
            return fib_source_error(S, "'params' item %lld: head %lld "
                                    "has %lld pairs", (long long)(1 + h),
                                    (long long)h, (long long)c);
        pairs += c;
        if (pairs > n)
            return fib_source_error(S, "'params': more pairs than "
                                    "the array holds");
    }
    int64_t want = 1 + heads + 2 * pairs + 2 * S->units;
    *options = n > want ? p[want] : 0;
    if (n > want && (*options < 1 || *options > (FIB_ATTEND_CAUSAL | FIB_ATTEND_ROTARY)))
        return fib_source_error(S, "'params' item %lld (options) is %lld; "
                                "1 (causal), 2 (rotary) or 3 (both)", (long long)want,
                                (long long)*options);
    int64_t extra = n > want ? 1 + (*options & FIB_ATTEND_ROTARY ? pairs : 0) : 0;
    if (n != want + extra)
        return fib_source_error(S, "'params' must hold %lld integers "
                                "for %lld heads, %lld pairs and %lld units, not "
                                "%lld", (long long)(want + extra), (long long)heads,
                                (long long)pairs, (long long)S->units,
                                (long long)n);
    for (int64_t x = 0; x < extra - 1; x++)
        if (p[want + 1 + x] != 0 && p[want + 1 + x] != 1)
            return fib_source_error(S, "'params': pair %lld's phase kind is "
                                    "%lld; 0 (cos) or 1 (sin)", (long long)x,
                                    (long long)p[want + 1 + x]);
    int64_t nq = fib_source_group(g, S, 0)->n_units, nk = fib_source_group(g, S, 1)->n_units;
    int64_t nv = fib_source_group(g, S, 2)->n_units;
    const int64_t *pq = p + 1 + heads, *pu = pq + 2 * pairs;
    for (int64_t x = 0; x < pairs; x++)
        if (pq[2 * x] < 0 || pq[2 * x] >= nq || pq[2 * x + 1] < 0 ||
            pq[2 * x + 1] >= nk)
            return fib_source_error(S, "'params': pair %lld (q unit "
                                    "%lld, k unit %lld) out of range of the q "
                                    "group (%lld units) or the k group (%lld)",
                                    (long long)x, (long long)pq[2 * x],
                                    (long long)pq[2 * x + 1], (long long)nq,
                                    (long long)nk);
    for (int64_t u = 0; u < S->units; u++)
        if (pu[2 * u] < 0 || pu[2 * u] >= heads || pu[2 * u + 1] < 0 ||
            pu[2 * u + 1] >= nv)
            return fib_source_error(S, "'params': unit %lld (head "
                                    "%lld, v unit %lld) out of range of %lld "
                                    "heads or the v group (%lld units)",
                                    (long long)u, (long long)pu[2 * u],
                                    (long long)pu[2 * u + 1], (long long)heads,
                                    (long long)nv);
    *n_heads = heads;
    *n_pairs = pairs;
    return FIB_OK;
}

/* ---- budgets ------------------------------------------------------------ */

/* Whether a budget can merge this core's dimensions: every head's pairs are
 * (q unit i, k unit i) of multiplicity 1 without rotary phases, each q unit
 * in one pair, and core unit i reads v unit i in the head of q unit i (an
 * original multi-head attention, causal or not). Grouped key/value heads,
 * rotary embeddings and cores already merged are kept as they are. */
static bool plain_heads(const fib_graph *g, int32_t group)
{
    const fib_attend *a = attend_of(g, group);
    const fib_group *grp = &g->groups[group];
    int64_t n = grp->n_units;
    if (a->pair_omega || a->n_pairs != n || g->groups[grp->sources[0]].n_units != n ||
        g->groups[grp->sources[1]].n_units != n || g->groups[grp->sources[2]].n_units != n)
        return false;
    for (int64_t h = 0; h < a->n_heads; h++)
        for (int64_t p = a->head_start[h]; p < a->head_start[h + 1]; p++)
            if (a->pair_q[p] != a->pair_k[p] || a->pair_mult[p] != 1.0 ||
                a->unit_head[a->pair_q[p]] != h)
                return false;
    for (int64_t u = 0; u < n; u++)
        if (a->unit_v[u] != u)
            return false;
    /* each unit in one pair: n pairs whose q units are all in their heads */
    bool *seen = fib_calloc(n, sizeof *seen);
    bool once = seen != NULL;
    for (int64_t p = 0; once && p < a->n_pairs; p++) {
        once = !seen[a->pair_q[p]];
        seen[a->pair_q[p]] = true;
    }
    fib_free(seen);
    return once;
}

static int32_t attend_budget_role(const fib_graph *g, int32_t group)
{
    return plain_heads(g, group) ? FIB_BUDGET_ATTENDS : FIB_BUDGET_PINS;
}

/* The squared norm of a projection's row with its bias: the variance of
 * the unit over inputs of unit variance (1 when the source is not a
 * weight matrix). */
static double row_energy(const fib_graph *g, int32_t group, int64_t row)
{
    const fib_block_ops *ops = g->groups[group].ops;
    const fib_dense *d = ops && ops->matrix ? ops->matrix(g, group) : NULL;
    if (!d)
        return 1.0;
    double b = d->bias ? fib_dense_bias(d, row) : 0.0, out = b * b;
    for (int64_t k = 0; k < d->n_in; k++) {
        double w = fib_dense_weight(d, row, k);
        out += w * w;
    }
    return out;
}

/* A core unit averages its v unit over positions: v gets the unit's energy.
 * An error in q unit a moves head h's scores by scale m k_b, and the
 * softmax passes that change to the head's outputs as much as the v units
 * vary: q's energy is scale^2 m^2 |k_b|^2 sum_{u of h} E_u |v_u|^2 (rows
 * as variances, inputs of unit variance), k's the same with q. */
static void attend_budget_backward(const fib_graph *g, int32_t group, int32_t source_index,
                                   const double *energy, double *src_energy)
{
    const fib_attend *a = attend_of(g, group);
    const fib_group *grp = &g->groups[group];
    if (source_index == 2) {
        for (int64_t u = 0; u < grp->n_units; u++)
            src_energy[a->unit_v[u]] += energy[u];
        return;
    }
    int32_t other = grp->sources[source_index == 0 ? 1 : 0];
    for (int64_t h = 0; h < a->n_heads; h++) {
        double head = 0.0;
        for (int64_t x = a->unit_start[h]; x < a->unit_start[h + 1]; x++) {
            int64_t u = a->unit_order[x];
            head += energy[u] * row_energy(g, grp->sources[2], a->unit_v[u]);
        }
        for (int64_t p = a->head_start[h]; p < a->head_start[h + 1]; p++) {
            int64_t self = source_index == 0 ? a->pair_q[p] : a->pair_k[p];
            int64_t partner = source_index == 0 ? a->pair_k[p] : a->pair_q[p];
            double m = a->scale * a->pair_mult[p];
            src_energy[self] += m * m * row_energy(g, other, partner) * head;
        }
    }
}

/* Whether rows i and j of projection `group` are equal (weights and bias). */
static bool equal_rows(const fib_graph *g, int32_t group, int64_t i, int64_t j)
{
    const fib_block_ops *ops = g->groups[group].ops;
    const fib_dense *d = ops && ops->matrix ? ops->matrix(g, group) : NULL;
    if (!d)
        return i == j;
    if (d->bias && fib_dense_bias(d, i) != fib_dense_bias(d, j))
        return false;
    for (int64_t k = 0; k < d->n_in; k++)
        if (fib_dense_weight(d, i, k) != fib_dense_weight(d, j, k))
            return false;
    return true;
}

/* Bins are classes of heads: heads whose q, k and v rows are equal
 * dimension by dimension (copies of a head) share one, every other head has
 * its own. A budget merges dimensions within a bin only: within one head
 * any merge keeps a valid core, and copied heads merge their dimensions
 * pairwise first (exactly), so they keep one attention pattern. */
static int32_t attend_budget_bins(const fib_graph *g, int32_t group, int64_t *bin)
{
    const fib_attend *a = attend_of(g, group);
    const fib_group *grp = &g->groups[group];
    int64_t *head_bin = fib_alloc(a->n_heads, sizeof *head_bin);
    if (!head_bin)
        return fib_error(FIB_E_NOMEM, "group %d: out of memory comparing heads", (int)group);
    for (int64_t h = 0; h < a->n_heads; h++) {
        head_bin[h] = h;
        int64_t p0 = a->head_start[h], n = a->head_start[h + 1] - p0;
        for (int64_t h2 = 0; h2 < h && head_bin[h] == h; h2++) {
            int64_t p2 = a->head_start[h2];
            if (head_bin[h2] != h2 || a->head_start[h2 + 1] - p2 != n)
                continue;
            bool same = true;
            for (int64_t x = 0; same && x < n; x++) {
                int64_t i = a->pair_q[p0 + x], j = a->pair_q[p2 + x];
                for (int32_t s = 0; same && s < 3; s++)
                    same = equal_rows(g, grp->sources[s], i, j);
            }
            if (same)
                head_bin[h] = h2;
        }
    }
    for (int64_t u = 0; u < grp->n_units; u++)
        bin[u] = head_bin[a->unit_head[u]];
    fib_free(head_bin);
    return FIB_OK;
}

static const char *const attend_tensor_keys[] = {"pair_multiplicity", "pair_frequency", NULL};

static int32_t attend_build(fib_graph *g, const fib_block_source *S, int32_t *id)
{
    int32_t st = fib_source_no_extras(S, true, true, attend_tensor_keys);
    if (st != FIB_OK)
        return st;
    const fib_group *q = fib_source_group(g, S, 0), *k = fib_source_group(g, S, 1),
                    *v = fib_source_group(g, S, 2);
    if (q->rows != k->rows || q->cols != k->cols || q->rows != v->rows ||
        q->cols != v->cols)
        return fib_source_error(S, "'sources': the q, k and v groups "
                                "must have the same positions");
    if (!S->has_scalar)
        return fib_source_error(S, "'scalar' (the softmax scale) is "
                                "missing");
    int64_t heads = 0, pairs = 0, options = 0;
    st = check_attend_params(g, S, &heads, &pairs, &options);
    bool rotary = options & FIB_ATTEND_ROTARY;
    fib_stored_tensor t = {0}, tf = {0};
    if (st == FIB_OK)
        st = fib_source_vector(S, "pair_multiplicity", pairs > 0, pairs, &t);
    if (st == FIB_OK)
        st = fib_source_vector(S, "pair_frequency", rotary && pairs > 0, pairs, &tf);
    if (st == FIB_OK && tf.name && !rotary)
        st = fib_source_error(S, "tensor 'pair_frequency' without the rotary "
                              "option in 'params'");
    double *mult = NULL, *omega = NULL;
    /* a rotary core's sin pairs carry negative multiplicities */
    if (st == FIB_OK)
        st = fib_source_owned_copy(S, "pair_multiplicity", &t, !rotary, &mult);
    if (st == FIB_OK)
        st = fib_source_owned_copy(S, "pair_frequency", &tf, false, &omega);
    if (st != FIB_OK) {
        fib_free(mult);
        return st;
    }
    fib_attend *a = fib_calloc(1, sizeof *a);
    if (a) {
        int64_t np = pairs > 0 ? pairs : 1;
        a->n_heads = heads;
        a->n_pairs = pairs;
        a->scale = S->scalar;
        a->head_start = fib_alloc(heads + 1, sizeof *a->head_start);
        a->pair_q = fib_alloc(np, sizeof *a->pair_q);
        a->pair_k = fib_alloc(np, sizeof *a->pair_k);
        a->pair_mult = mult;
        a->unit_head = fib_alloc(S->units, sizeof *a->unit_head);
        a->unit_v = fib_alloc(S->units, sizeof *a->unit_v);
        if (!a->pair_mult)
            a->pair_mult = fib_calloc(1, sizeof *a->pair_mult);
        mult = NULL;
        a->causal = options & FIB_ATTEND_CAUSAL;
        if (rotary) {
            a->pair_omega = omega ? omega : fib_calloc(1, sizeof *a->pair_omega);
            a->pair_sin = fib_alloc(pairs > 0 ? pairs : 1, sizeof *a->pair_sin);
            omega = NULL;
        }
    }
    if (!a || !a->head_start || !a->pair_q || !a->pair_k || !a->pair_mult ||
        !a->unit_head || !a->unit_v || (rotary && (!a->pair_omega || !a->pair_sin))) {
        fib_free(mult);
        fib_free(omega);
        fib_attend_free(a);
        return fib_source_nomem(S);
    }
    const int64_t *p = S->params;
    const int64_t *pq = p + 1 + heads, *pu = pq + 2 * pairs;
    a->head_start[0] = 0;
    for (int64_t h = 0; h < heads; h++)
        a->head_start[h + 1] = a->head_start[h] + p[1 + h];
    for (int64_t x = 0; x < pairs; x++) {
        a->pair_q[x] = pq[2 * x];
        a->pair_k[x] = pq[2 * x + 1];
    }
    for (int64_t u = 0; u < S->units; u++) {
        a->unit_head[u] = pu[2 * u];
        a->unit_v[u] = pu[2 * u + 1];
    }
    for (int64_t x = 0; rotary && x < pairs; x++)
        a->pair_sin[x] = (uint8_t)pu[2 * S->units + 1 + x];
    return fib_source_done(S, fib_graph_add_attend_owned(g, S->sources[0],
                                                         S->sources[1], S->sources[2],
                                                         S->units, a, id));
}

const fib_block_ops fib_attend_ops = {
    .name = "attention",
    .build = attend_build,
    .free_block = attend_free,
    .fiber_width = attend_fiber_width,
    .fiber_fill = attend_fiber_fill,
    .opfiber_width = attend_opfiber_width,
    .opfiber_fill = attend_opfiber_fill,
    .opfiber_exact_width = attend_opfiber_exact_width,
    .opfiber_exact_fill = attend_opfiber_exact_fill,
    .forward = attend_forward,
    .compress = attend_compress,
    .lift = attend_lift,
    .num_parameters = attend_num_parameters,
    .tensor = attend_tensor,
    .params = attend_params,
    .scalar = attend_scalar,
    .budget_role = attend_budget_role,
    .budget_backward = attend_budget_backward,
    .budget_bins = attend_budget_bins,
};
