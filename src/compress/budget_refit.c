/* The data-free correction of a budget's base (fib_budget_options.
 * synthetic_scale): the representatives re-derived from the original
 * weights, and every merge's consumer refitted by least squares on
 * synthetic Gaussian inputs. The same steps as fibration.torch's
 * refit_chain and synthetic_refit (docs/compression.md, "Budgeted
 * compression"), with this library's own random numbers. */
#include "compress/compress.h"
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

/* The ridge, times the Gram matrix's mean diagonal, pulling each fit towards
 * refit_chain's consumer. Units that synthetic inputs seldom excite are
 * poorly determined by the samples alone; with 1e-10 the fit's accuracy on
 * real data swung by up to 7 points with the draw (docs/compression.md,
 * "The correction's ridge"), 1e-3 was chosen on the training split. */
#define LS_RIDGE 1e-3
#define TWO_PI 6.283185307179586476925286766559

/* n numbers N(0, scale^2) (Box-Muller, from the seeded generator). */
static void gaussian_fill(fib_rng *rng, double *x, int64_t n, double scale)
{
    for (int64_t i = 0; i < n; i += 2) {
        double u = fib_rng_uniform(rng), v = fib_rng_uniform(rng);
        double r = sqrt(-2.0 * log(1.0 - u)), t = TWO_PI * v;
        x[i] = scale * r * cos(t);
        if (i + 1 < n)
            x[i + 1] = scale * r * sin(t);
    }
}

/* Samples handled together by the products below, and columns of c per
 * pass: each row of b^T (or of the Gram matrix) is then read once for
 * BLOCK samples, not once per sample; the axpys are the dispatched kernel
 * (the budget call on the 784-500-500-500 MLP of docs/compression.md;
 * figures in docs/performance.md), and each original layer's product is
 * made once, below. The per-element
 * order of the sums is still the samples', or the inner products',
 * ascending order, so neither changes a bit. */
#define BLOCK 8
#define COLUMNS 256

/* The products below ask the budget's progress callback once per block of
 * samples or per column of the Cholesky factor and row of the solution, so
 * that a cancel acts within a wide layer's product, not after it. */
static int32_t cancelled(void)
{
    return fib_error(FIB_E_CANCELLED, "budget correction cancelled by the progress callback");
}

/* Whether skipping a's zeros, as times_transposed's axpys do, changes no
 * bit of c = bias + a b^T: adding a product 0 * b (b finite) leaves every
 * sum as it is unless the sum is -0, which only a bias of -0 starts (a sum
 * of +0 and of nonzero products is never -0 in round-to-nearest). */
static bool zeros_add_nothing(const double *b, int64_t count, const double *bias, int64_t m)
{
    for (int64_t j = 0; bias && j < m; j++)
        if (bias[j] == 0 && signbit(bias[j]))
            return false;
    for (int64_t x = 0; x < count; x++)
        if (!isfinite(b[x]))
            return false;
    return true;
}

/* Rows of c made together by times_transposed: one block of the
 * matrix-product kernel's rows (it keeps them in L2 while b's panels pass). */
#define GEMM_ROWS 96

/* c (rows x m) = a (rows x p) b^T (b: m x p) + bias (m, may be NULL). b^T
 * is packed once for the matrix-product kernel, which keeps tiles of c in
 * registers; every element is still bias + its products one at a time in
 * ascending k, each product and sum rounded (gemm_f64's contract), so the
 * bits are those of the axpys along c's rows, which skip a's zeros (dead
 * ReLU units) and remain for the case zeros_add_nothing excludes. c may
 * be a itself when m <= p: each block of c's rows is made in a buffer and
 * copied once the block's rows of a are read, and row s of c then lies
 * over rows of a no later than s, so the original network's activations
 * and the next layer's pre-activations share one S x width array (the
 * correction's largest). */
static int32_t times_transposed(const double *a, int64_t rows, int64_t p, const double *b,
                                int64_t m, const double *bias, const fib_progress_check *check,
                                double *c)
{
    const fib_kernels *kern = fib_kernels_active();
    bool packed = zeros_add_nothing(b, m * p, bias, m);
    int64_t panel = kern->gemm_panel, per_block = packed ? GEMM_ROWS : BLOCK;
    int64_t len = packed ? fib_gemm_packed_len(p, m, panel) : p * m;
    double *bt = packed ? fib_calloc(len > 0 ? len : 1, sizeof *bt)
                        : fib_alloc(len > 0 ? len : 1, sizeof *bt);
    double *block = fib_alloc(per_block * m > 0 ? per_block * m : 1, sizeof *block);
    if (!bt || !block) {
        fib_free(bt);
        fib_free(block);
        return fib_error(FIB_E_NOMEM, "budget correction: out of memory");
    }
    for (int64_t j = 0; j < m; j++)
        for (int64_t k = 0; k < p; k++)
            bt[packed ? fib_gemm_packed_at(p, panel, k, j) : k * m + j] = b[j * p + k];
    for (int64_t s0 = 0; s0 < rows; s0 += per_block) {
        if (fib_progress_cancelled(check)) {
            fib_free(bt);
            fib_free(block);
            return cancelled();
        }
        int64_t s1 = s0 + per_block < rows ? s0 + per_block : rows;
        for (int64_t s = s0; s < s1; s++)
            for (int64_t j = 0; j < m; j++)
                block[(s - s0) * m + j] = bias ? bias[j] : 0.0;
        if (packed)
            kern->gemm_f64(s1 - s0, m, p, a + s0 * p, p, bt, block, m);
        for (int64_t j0 = 0; !packed && j0 < m; j0 += COLUMNS) {
            int64_t j1 = j0 + COLUMNS < m ? j0 + COLUMNS : m;
            for (int64_t k = 0; k < p; k++) {
                const double *row = bt + k * m;
                for (int64_t s = s0; s < s1; s++) {
                    double x = a[s * p + k];
                    if (x == 0)
                        continue;
                    kern->axpy_f64(block + (s - s0) * m + j0, x, row + j0, j1 - j0);
                }
            }
        }
        memcpy(c + s0 * m, block, (size_t)((s1 - s0) * m) * sizeof *c);
    }
    fib_free(bt);
    fib_free(block);
    return FIB_OK;
}

/* The hidden activation, positively homogeneous (linear, ReLU, leaky). */
static void activate(double *z, int64_t n, int32_t act, double slope)
{
    if (act == FIB_ACT_LINEAR)
        return;
    double neg = act == FIB_ACT_LEAKY_RELU ? slope : 0.0;
    for (int64_t i = 0; i < n; i++)
        z[i] = z[i] > 0 ? z[i] : neg * z[i];
}

/* reps (k x d): each class's rank-1 representative v <row, v>_avg, v the
 * top right singular vector of its rows weighted by `weight`, the average
 * of the projections weighted by weight^2 (a class of one: its row). */
static int32_t representatives(const double *rows, int64_t n, int64_t d, const int64_t *lab,
                               int64_t k, const double *weight, double *reps)
{
    int64_t *order = fib_alloc(n, sizeof *order), *start = fib_calloc(k + 1, sizeof *start);
    double *w = fib_alloc(d > 0 ? d : 1, sizeof *w);
    if (!order || !start || !w) {
        fib_free(order);
        fib_free(start);
        fib_free(w);
        return fib_error(FIB_E_NOMEM, "budget correction: out of memory");
    }
    fib_color_order(lab, n, k, order, start); /* members class by class */
    fib_rows view = {.n = n, .d = d, .value = (double *)rows};
    for (int64_t c = 0; c < k; c++) {
        const int64_t *mem = order + start[c];
        int64_t m = start[c + 1] - start[c];
        double *rep = reps + c * d;
        if (m == 1) {
            memcpy(rep, rows + mem[0] * d, (size_t)d * sizeof *rep);
            continue;
        }
        fib_top_direction(&view, mem, m, weight, rep, w);
        double pw = 0, ww = 0, plain = 0;
        for (int64_t x = 0; x < m; x++) {
            const double *row = rows + mem[x] * d;
            double proj = 0;
            for (int64_t j = 0; j < d; j++)
                proj += row[j] * rep[j];
            pw += proj * weight[mem[x]] * weight[mem[x]];
            ww += weight[mem[x]] * weight[mem[x]];
            plain += proj;
        }
        double sign = pw < 0 ? -1.0 : 1.0;
        double scale = ww > 0 ? sign * pw / ww : sign * plain / (double)m;
        scale = scale > 0 ? scale : 0.0;
        for (int64_t j = 0; j < d; j++)
            rep[j] *= sign * scale;
    }
    fib_free(order);
    fib_free(start);
    fib_free(w);
    return FIB_OK;
}

/* Solves g x = rhs in place (g: n x n symmetric positive definite, rhs:
 * n x m) by Cholesky: 1, or 0 when g is not positive definite, -1 when
 * cancelled. */
static int cholesky_solve(double *g, int64_t n, double *rhs, int64_t m,
                          const fib_progress_check *check)
{
    for (int64_t j = 0; j < n; j++) {
        if (fib_progress_cancelled(check))
            return -1;
        double s = g[j * n + j];
        for (int64_t k = 0; k < j; k++)
            s -= g[j * n + k] * g[j * n + k];
        if (!(s > 0))
            return 0;
        double l = sqrt(s);
        g[j * n + j] = l;
        const double *gj = g + j * n;
        int64_t i = j + 1;
        /* four rows at a time: four independent chains of sums, each in
         * its own ascending order */
        for (; i + 4 <= n; i += 4) {
            double *g0 = g + i * n, *g1 = g0 + n, *g2 = g1 + n, *g3 = g2 + n;
            double t0 = g0[j], t1 = g1[j], t2 = g2[j], t3 = g3[j];
            for (int64_t k = 0; k < j; k++) {
                double q = gj[k];
                t0 -= g0[k] * q;
                t1 -= g1[k] * q;
                t2 -= g2[k] * q;
                t3 -= g3[k] * q;
            }
            g0[j] = t0 / l;
            g1[j] = t1 / l;
            g2[j] = t2 / l;
            g3[j] = t3 / l;
        }
        for (; i < n; i++) {
            double t = g[i * n + j];
            for (int64_t k = 0; k < j; k++)
                t -= g[i * n + k] * gj[k];
            g[i * n + j] = t / l;
        }
    }
    /* every column of rhs at once, row by row: rhs[i][c] - g * rhs[k][c]
     * is rhs[i][c] + (-g) * rhs[k][c] exactly, so the axpys give each
     * column's substitution its bits, in its order of k */
    const fib_kernels *kern = fib_kernels_active();
    for (int64_t i = 0; i < n; i++) { /* L y = b */
        if (fib_progress_cancelled(check))
            return -1;
        double *ri = rhs + i * m;
        for (int64_t k = 0; k < i; k++)
            kern->axpy_f64(ri, -g[i * n + k], rhs + k * m, m);
        for (int64_t c = 0; c < m; c++)
            ri[c] = ri[c] / g[i * n + i];
    }
    for (int64_t i = n - 1; i >= 0; i--) { /* L^T x = y */
        if (fib_progress_cancelled(check))
            return -1;
        double *ri = rhs + i * m;
        for (int64_t k = i + 1; k < n; k++)
            kern->axpy_f64(ri, -g[k * n + i], rhs + k * m, m);
        for (int64_t c = 0; c < m; c++)
            ri[c] = ri[c] / g[i * n + i];
    }
    return 1;
}

/* (w: m x k, b: m) minimising |h w^T + b - z|^2 + lam |(w, b) - prior|^2
 * over the samples (h: S x k, z: S x m), lam = LS_RIDGE times the mean
 * diagonal of the Gram matrix; w, b hold the prior on entry. */
static int32_t least_squares(const double *h, int64_t S, int64_t k, const double *z, int64_t m,
                             const fib_progress_check *check, double *w, double *b)
{
    int64_t n = k + 1;
    double *g = fib_calloc(n * n, sizeof *g), *rhs = fib_calloc(n * m, sizeof *rhs);
    if (!g || !rhs) {
        fib_free(g);
        fib_free(rhs);
        return fib_error(FIB_E_NOMEM, "budget correction: out of memory");
    }
    const fib_kernels *kern = fib_kernels_active();
    for (int64_t s0 = 0; s0 < S; s0 += BLOCK) {
        if (fib_progress_cancelled(check)) {
            fib_free(g);
            fib_free(rhs);
            return cancelled();
        }
        int64_t s1 = s0 + BLOCK < S ? s0 + BLOCK : S;
        for (int64_t i = 0; i < n; i++) {
            double *gi = g + i * n, *ri = rhs + i * m;
            int64_t top = i < k ? i + 1 : k; /* the lower triangle, then the ones column */
            for (int64_t s = s0; s < s1; s++) {
                const double *hs = h + s * k, *zs = z + s * m;
                double ai = i < k ? hs[i] : 1.0;
                if (ai == 0)
                    continue;
                kern->axpy_f64(gi, ai, hs, top);
                if (i == k)
                    gi[k] += 1.0;
                kern->axpy_f64(ri, ai, zs, m);
            }
        }
    }
    double trace = 0;
    for (int64_t i = 0; i < n; i++) {
        trace += g[i * n + i];
        for (int64_t j = 0; j < i; j++)
            g[j * n + i] = g[i * n + j];
    }
    double lam = LS_RIDGE * (trace > 0 ? trace : 1e-300) / (double)n;
    for (int64_t i = 0; i < n; i++) {
        g[i * n + i] += lam;
        for (int64_t c = 0; c < m; c++) /* towards the prior */
            rhs[i * m + c] += lam * (i < k ? w[c * k + i] : b[c]);
    }
    int solved = cholesky_solve(g, n, rhs, m, check);
    if (solved > 0)
        for (int64_t c = 0; c < m; c++) {
            for (int64_t i = 0; i < k; i++)
                w[c * k + i] = rhs[i * m + c];
            b[c] = rhs[k * m + c];
        }
    /* else: the prior (refit_chain's consumer) stays */
    fib_free(g);
    fib_free(rhs);
    return solved < 0 ? cancelled() : FIB_OK;
}

/* A dense layer of the chain in double: weights (n_out x n_in), bias. */
typedef struct layer {
    int64_t n_out, n_in;
    double *w, *b;
} layer;

static void layer_clear(layer *l)
{
    fib_free(l->w);
    fib_free(l->b);
    l->w = l->b = NULL;
}

static int32_t layer_alloc(layer *l, int64_t n_out, int64_t n_in)
{
    l->n_out = n_out;
    l->n_in = n_in;
    l->w = fib_calloc(n_out * n_in > 0 ? n_out * n_in : 1, sizeof *l->w);
    l->b = fib_calloc(n_out > 0 ? n_out : 1, sizeof *l->b);
    if (!l->w || !l->b) {
        layer_clear(l);
        return fib_error(FIB_E_NOMEM, "budget correction: out of memory");
    }
    return FIB_OK;
}

static int32_t layer_of_group(const fib_graph *g, int32_t group, layer *l)
{
    const fib_dense *d = fib_group_matrix(g, group);
    int32_t st = layer_alloc(l, g->groups[group].n_units, d->n_in);
    for (int64_t i = 0; !st && i < l->n_out; i++) {
        for (int64_t k = 0; k < l->n_in; k++)
            l->w[i * l->n_in + k] = fib_dense_weight(d, i, k);
        l->b[i] = fib_dense_bias(d, i);
    }
    return st;
}

/* Sums w's columns over classes lab (k of them): (n_out x k), scaled by
 * s (per column, may be NULL). */
static int32_t sum_columns(const layer *l, const int64_t *lab, int64_t k, const double *s,
                           layer *out)
{
    int32_t st = layer_alloc(out, l->n_out, k);
    for (int64_t i = 0; !st && i < l->n_out; i++) {
        for (int64_t x = 0; x < l->n_in; x++)
            out->w[i * k + lab[x]] += l->w[i * l->n_in + x] * (s ? s[x] : 1.0);
        out->b[i] = l->b[i];
    }
    return st;
}

/* refit_chain's step for hidden layer `cur` (its rows over the merged
 * source) with classes lab (k): its representatives into rep (k rows) and
 * the consumer `next` (over cur's units) merged with the members' scales
 * into consumer. */
static int32_t refit_step(const layer *cur, const layer *next, const int64_t *lab, int64_t k,
                          layer *rep, layer *consumer)
{
    int64_t n = cur->n_out, d = cur->n_in + 1;
    double *rows = fib_alloc(n * d, sizeof *rows), *reps = fib_alloc(k * d, sizeof *reps);
    double *weight = fib_calloc(n, sizeof *weight), *s = fib_alloc(n, sizeof *s);
    int32_t st = rows && reps && weight && s ? FIB_OK
                                           : fib_error(FIB_E_NOMEM, "budget correction: out of memory");
    for (int64_t i = 0; !st && i < n; i++) {
        memcpy(rows + i * d, cur->w + i * cur->n_in, (size_t)cur->n_in * sizeof *rows);
        rows[i * d + cur->n_in] = cur->b[i];
    }
    /* outgoing norms: the consumer's columns */
    for (int64_t j = 0; !st && j < next->n_out; j++)
        for (int64_t i = 0; i < n; i++)
            weight[i] += next->w[j * n + i] * next->w[j * n + i];
    for (int64_t i = 0; !st && i < n; i++)
        weight[i] = sqrt(weight[i]);
    if (!st)
        st = representatives(rows, n, d, lab, k, weight, reps);
    for (int64_t i = 0; !st && i < n; i++) {
        const double *r = reps + lab[i] * d, *f = rows + i * d;
        double dot = 0, norm2 = 0;
        for (int64_t j = 0; j < d; j++) {
            dot += f[j] * r[j];
            norm2 += r[j] * r[j];
        }
        double si = norm2 > 0 ? dot / norm2 : 0.0;
        s[i] = si > 0 ? si : 0.0;
    }
    if (!st)
        st = layer_alloc(rep, k, cur->n_in);
    for (int64_t c = 0; !st && c < k; c++) {
        memcpy(rep->w + c * cur->n_in, reps + c * d, (size_t)cur->n_in * sizeof *reps);
        rep->b[c] = reps[c * d + cur->n_in];
    }
    if (!st)
        st = sum_columns(next, lab, k, s, consumer);
    fib_free(rows);
    fib_free(reps);
    fib_free(weight);
    fib_free(s);
    return st;
}

/* *h (S x *width) becomes act(*h l^T + b) of group grp (S x l->n_out). */
static int32_t advance(double **h, int64_t S, int64_t *width, const layer *l,
                       const fib_group *grp, const fib_progress_check *check)
{
    double *z = fib_alloc(S * l->n_out > 0 ? S * l->n_out : 1, sizeof *z);
    if (!z)
        return fib_error(FIB_E_NOMEM, "budget correction: out of memory");
    int32_t st = times_transposed(*h, S, *width, l->w, l->n_out, l->b, check, z);
    if (st) {
        fib_free(z);
        return st;
    }
    activate(z, S * l->n_out, grp->activation, grp->act_param);
    fib_free(*h);
    *h = z;
    *width = l->n_out;
    return FIB_OK;
}

/* Writes a corrected layer into the base's dense block of `group`. */
static void store(fib_graph *base, int32_t group, const layer *l)
{
    /* the base owns its blocks: their weights may be written in place */
    fib_dense *d = (fib_dense *)fib_group_matrix(base, group);
    double *w = d->owned_weights, *b = d->owned_bias;
    for (int64_t i = 0; i < l->n_out; i++) {
        memcpy(w + i * d->ld, l->w + i * l->n_in, (size_t)l->n_in * sizeof *w);
        if (b)
            b[i] = l->b[i];
    }
}

/* A base block fib_compress copied in the model's dtype (a layer that
 * merges nothing) made float64, exactly, so that it can be corrected in
 * place like the merged ones. */
static int32_t widen_to_f64(fib_graph *base, int32_t group)
{
    fib_dense *d = (fib_dense *)fib_group_matrix(base, group);
    if (d->dtype == FIB_DTYPE_F64 || !d->owned_weights)
        return FIB_OK;
    int64_t n_out = base->groups[group].n_units, cells = n_out * d->ld;
    double *w = fib_alloc(cells, sizeof *w);
    double *b = d->bias ? fib_alloc(n_out, sizeof *b) : NULL;
    if (!w || (d->bias && !b)) {
        fib_free(w);
        fib_free(b);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory correcting the base",
                         (int)group);
    }
    for (int64_t x = 0; x < cells; x++)
        w[x] = fib_load(d->dtype, d->weights, x);
    for (int64_t i = 0; b && i < n_out; i++)
        b[i] = fib_load(d->dtype, d->bias, i);
    fib_free(d->owned_weights);
    fib_free(d->owned_bias);
    d->weights = d->owned_weights = w;
    d->bias = d->owned_bias = b;
    d->dtype = FIB_DTYPE_F64;
    return FIB_OK;
}

int32_t fib_budget_correct(const fib_graph *g, const fib_coloring *col, double scale,
                           int64_t n_samples, const fib_progress_check *check,
                           fib_base *base, bool *applied)
{
    *applied = false;
    int32_t n_layers = g->n_groups - 1; /* a chain: input, then dense groups */
    for (int32_t i = 1; i < g->n_groups; i++) {
        int32_t status = widen_to_f64(base->graph, i);
        if (status)
            return status;
        const fib_dense *bd = fib_group_matrix(base->graph, i);
        bool hidden = !fib_group_is_output(g, i);
        if (!fib_group_matrix(g, i)->bias || !bd->owned_weights ||
            !bd->owned_bias || bd->dtype != FIB_DTYPE_F64 ||
            (hidden && !fib_activation_homogeneous(g->groups[i].activation)))
            return FIB_OK; /* the correction needs biases and homogeneous units */
    }
    if (n_layers < 2 || !(scale > 0) || !isfinite(scale) || n_samples < 1)
        return FIB_OK;
    int64_t S = n_samples, n0 = g->groups[0].n_units;
    const fib_partition *inputs = col->merge_inputs ? &col->parts[0] : NULL;
    int64_t k0 = inputs ? inputs->n_classes : n0;
    layer orig = {0}, orig_next = {0}, cur = {0}, rep = {0}, consumer = {0};
    double *x = fib_alloc(S * n0, sizeof *x), *h = fib_calloc(S * k0, sizeof *h);
    double *h_ref = NULL, *target = NULL, *pre = NULL;
    int32_t st = x && h ? FIB_OK : fib_error(FIB_E_NOMEM, "budget correction: out of memory");
    if (!st) {
        fib_rng rng;
        fib_rng_seed(&rng, 0);
        gaussian_fill(&rng, x, S * n0, scale);
        /* the base reads the means of merged inputs */
        int64_t *count = inputs ? fib_calloc(k0, sizeof *count) : NULL;
        if (inputs && !count)
            st = fib_error(FIB_E_NOMEM, "budget correction: out of memory");
        for (int64_t k = 0; !st && inputs && k < n0; k++)
            count[inputs->color[k]]++;
        for (int64_t s = 0; !st && s < S; s++)
            for (int64_t k = 0; k < n0; k++) {
                int64_t c = inputs ? inputs->color[k] : k;
                h[s * k0 + c] += x[s * n0 + k] / (inputs ? (double)count[c] : 1.0);
            }
        fib_free(count);
    }
    h_ref = x; /* the original network's activations */
    x = NULL;
    /* orig: the original layer l, read once; cur: layer l's rows over its
     * merged source (none yet for the first layer over unmerged inputs:
     * then they are orig's) */
    if (!st)
        st = layer_of_group(g, 1, &orig);
    if (!st && inputs)
        st = sum_columns(&orig, inputs->color, k0, NULL, &cur);
    int64_t width_ref = n0, width = k0;
    for (int32_t l = 1; !st && l < n_layers; l++) {
        /* group l is hidden with classes parts[l]; group l + 1 reads it */
        const fib_partition *p = &col->parts[l];
        const fib_group *grp = &g->groups[l];
        const layer *rows = cur.w ? &cur : &orig;
        st = layer_of_group(g, l + 1, &orig_next);
        /* h_ref through the original layer l: its pre-activations are the
         * previous step's target, made once (for the first layer, made
         * here) */
        if (!st && pre) {
            activate(pre, S * orig.n_out, grp->activation, grp->act_param);
            fib_free(h_ref);
            h_ref = pre;
            pre = NULL;
            width_ref = orig.n_out;
        } else if (!st) {
            st = advance(&h_ref, S, &width_ref, &orig, grp, check);
        }
        /* the original's pre-activations of layer l + 1, made before the
         * base's activations of layer l so that h_ref is gone by then (the
         * two are the correction's largest arrays): over h_ref when it is
         * as wide, then moved to an array of their own size when that is
         * at most half of it */
        if (!st) {
            const double *ref = h_ref;
            int64_t m = orig_next.n_out;
            bool in_place = m <= width_ref;
            target = in_place ? h_ref : fib_alloc(S * m, sizeof *target);
            if (in_place)
                h_ref = NULL;
            st = target ? times_transposed(ref, S, width_ref, orig_next.w, m, orig_next.b,
                                           check, target)
                        : fib_error(FIB_E_NOMEM, "budget correction: out of memory");
            fib_free(h_ref);
            h_ref = NULL;
            double *fit = !st && in_place && 2 * m <= width_ref ? fib_alloc(S * m, sizeof *fit)
                                                                : NULL;
            if (fit) {
                memcpy(fit, target, (size_t)(S * m) * sizeof *fit);
                fib_free(target);
                target = fit;
            }
        }
        /* the consumer refit_chain would give: next is layer l + 1 as it
         * is now (the original's, over layer l's units) */
        if (!st)
            st = refit_step(rows, &orig_next, p->color, p->n_classes, &rep, &consumer);
        if (!st) {
            store(base->graph, l, &rep);
            st = advance(&h, S, &width, &rep, grp, check);
        }
        /* the consumer, full width over its own units, fitted to the
         * original's pre-activations; it is the next layer's rows */
        if (!st)
            st = least_squares(h, S, width, target, consumer.n_out, check, consumer.w,
                               consumer.b);
        fib_free(pre); /* NULL unless an error came before it was used */
        pre = target;
        target = NULL;
        layer_clear(&cur);
        layer_clear(&rep);
        layer_clear(&orig);
        orig = orig_next;
        orig_next = (layer){0};
        cur = consumer;
        consumer = (layer){0};
    }
    if (!st) {
        store(base->graph, n_layers, &cur);
        *applied = true;
    }
    layer_clear(&orig);
    layer_clear(&orig_next);
    layer_clear(&cur);
    layer_clear(&rep);
    layer_clear(&consumer);
    fib_free(x);
    fib_free(h);
    fib_free(h_ref);
    fib_free(target);
    fib_free(pre);
    return st;
}
