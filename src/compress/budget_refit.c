/* The data-free correction of a budget's base (fib_budget_options.
 * synthetic_scale): the representatives re-derived from the original
 * weights, and every merge's consumer refitted by least squares on
 * synthetic Gaussian inputs. The same steps as fibration.torch's
 * refit_chain and synthetic_refit (docs/compression.md, "Budgeted
 * compression"), with this library's own random numbers. */
#include "compress/compress.h"
#include "kernels/fused.h"
#include "kernels/kernels.h"
#include "kernels/parallel.h"

#include <math.h>
#include <string.h>

#define TWO_PI 6.283185307179586476925286766559

/* The synthetic inputs, N(0, scale^2) (Box-Muller, from the seeded
 * generator), drawn a block of samples at a time: the numbers one draw of
 * the whole S x n0 array gives (a block may end between the two numbers of
 * a pair: the second waits for the next block). */
typedef struct gaussian_stream {
    fib_rng rng;
    double scale, spare;
    bool has_spare;
} gaussian_stream;

static void gaussian_next(gaussian_stream *g, double *x, int64_t n)
{
    int64_t i = 0;
    if (n > 0 && g->has_spare) {
        x[i++] = g->spare;
        g->has_spare = false;
    }
    for (; i < n; i += 2) {
        double u = fib_rng_uniform(&g->rng), v = fib_rng_uniform(&g->rng);
        double r = sqrt(-2.0 * log(1.0 - u)), t = TWO_PI * v;
        x[i] = g->scale * r * cos(t);
        if (i + 1 < n)
            x[i + 1] = g->scale * r * sin(t);
        else {
            g->spare = g->scale * r * sin(t);
            g->has_spare = true;
        }
    }
}

/* Samples drawn and carried together through the original network and the
 * base (one block's activations are all the correction holds of the
 * samples). Every sum the correction makes is either within one sample
 * (an element of a product) or over the samples in ascending order (an
 * element of a Gram matrix or of a right-hand side, added to from block to
 * block), so the block size changes no bit; a variable so that tests can
 * show it. 120 rows are whole tiles of 6 rows of the SIMD product kernel,
 * which makes a block's last rows through a tile of scratch otherwise;
 * the block's buffers are a large part of the correction's memory, and
 * fewer rows repack the layers' weights more often for each sample. */
int64_t fib_budget_correction_block = 120;

/* Outputs of a layer widened and packed together for the products below
 * (COLUMNS x the layer's inputs doubles: its rows are read in place). */
#define COLUMNS 64

/* Multiply-adds each thread of a shared product must have: a millisecond
 * or two of the product kernel on one core. Below it, a parallel region's start
 * and barrier cost more than the thread saves, and on a busy host each
 * region may wait for a thread the system has not yet run; the threads'
 * scratch is held for nothing. */
int64_t fib_budget_correction_work = INT64_C(1) << 25;

/* Threads for a product of `madds` multiply-adds in `pieces` pieces:
 * `requested` (0: the OpenMP default), at most one per piece and one per
 * fib_budget_correction_work multiply-adds, at least 1. */
static int work_threads(int32_t requested, int64_t pieces, int64_t madds)
{
    int64_t per = fib_budget_correction_work < 1 ? 1 : fib_budget_correction_work;
    return fib_thread_count(requested, pieces < madds / per ? pieces : madds / per);
}

/* Threads for block_product's c (rows x n_out) = a (rows x n_in) w^T. */
static int product_threads(int32_t requested, int64_t rows, int64_t n_out, int64_t n_in)
{
    return work_threads(requested, (n_out + COLUMNS - 1) / COLUMNS, rows * n_out * n_in);
}

/* The products below ask the budget's progress callback once per block of
 * samples, per column of the Cholesky factor and per SOLVE_ROWS rows of
 * the solution, on the calling thread, so that a cancel acts within a
 * wide layer's product, not after it. */
static int32_t cancelled(void)
{
    return fib_error(FIB_E_CANCELLED, "budget correction cancelled by the progress callback");
}

static int32_t out_of_memory(void)
{
    return fib_error(FIB_E_NOMEM, "budget correction: out of memory");
}

/* Row j of a dense block (output j, n_in weights) in double, exactly. */
static void weight_row(const fib_dense *d, int64_t j, int64_t n_in, double *row)
{
    if (!d->transposed && d->dtype == FIB_DTYPE_F32) {
        const float *w = (const float *)d->weights + j * d->ld;
        for (int64_t k = 0; k < n_in; k++)
            row[k] = w[k];
    } else if (!d->transposed && d->dtype == FIB_DTYPE_F64) {
        memcpy(row, (const double *)d->weights + j * d->ld, (size_t)n_in * sizeof *row);
    } else {
        for (int64_t k = 0; k < n_in; k++)
            row[k] = fib_dense_weight(d, j, k);
    }
}

/* Row j of n of a model's dense block read in a pass over its rows: its
 * pages leave the process FIB_DENSE_DROP_ROWS rows at a time, so that a
 * pass over a layer mapped from the file does not hold the layer (a block
 * not mapped is left alone). */
static void row_read(const fib_graph *g, const fib_dense *d, int64_t j, int64_t n)
{
    if ((j + 1) % FIB_DENSE_DROP_ROWS == 0 || j + 1 == n)
        fib_dense_drop_rows(g, d, j - j % FIB_DENSE_DROP_ROWS, j + 1);
}

/* A dense layer as the block products read it: the original model's block
 * in its own dtype or the base's in float64, read in place, its bias in
 * double, and whether the product kernel gives the fused axpys' bits. */
typedef struct weights {
    const fib_dense *d;
    int64_t n_out, n_in;
    double *bias;
    bool kernel;
    /* the model whose mapped file holds d's weights (the original's
     * layers), or NULL (the base's, owned) */
    const fib_graph *mapped;
    int32_t group;
} weights;

/* Group `group`'s layer as the block products read it (row: n_in doubles
 * of scratch). Its `kernel`: whether skipping a's zeros, as the fused
 * axpys of block_product do, changes no bit of c = bias + a w^T: adding a
 * term 0 * w (w finite) leaves every sum as it is unless the sum is -0,
 * which only a bias of -0 starts (a sum of +0 and of nonzero products is
 * never -0 in round-to-nearest). */
static int32_t weights_of_group(const fib_graph *g, int32_t group, double *row, weights *w)
{
    w->d = fib_group_matrix(g, group);
    w->n_out = g->groups[group].n_units;
    w->n_in = w->d->n_in;
    w->bias = fib_alloc(w->n_out > 0 ? w->n_out : 1, sizeof *w->bias);
    if (!w->bias)
        return out_of_memory();
    w->kernel = true;
    for (int64_t j = 0; j < w->n_out; j++) {
        w->bias[j] = fib_dense_bias(w->d, j);
        weight_row(w->d, j, w->n_in, row);
        w->kernel = w->kernel && !(w->bias[j] == 0 && signbit(w->bias[j]));
        for (int64_t k = 0; w->kernel && k < w->n_in; k++)
            w->kernel = isfinite(row[k]);
        row_read(g, w->d, j, w->n_out);
    }
    return FIB_OK;
}

/* Outputs j0 .. j1 - 1 of w packed for gemm_f64 (p = w's inputs rows of
 * panels, the columns past j1 of the last panel zeros), widened exactly:
 * a panel's outputs read together, input by input, so that the packing is
 * written in order and the rows read stay in the cache for their next
 * inputs (the packing is made for every block of samples). */
static void pack_outputs(const weights *w, int64_t j0, int64_t j1, int64_t panel, double *pack)
{
    const fib_dense *d = w->d;
    int64_t p = w->n_in;
    for (int64_t q0 = j0; q0 < j1; q0 += panel) {
        int64_t cols = j1 - q0 < panel ? j1 - q0 : panel;
        double *dst = pack + fib_gemm_packed_at(p, panel, 0, q0 - j0);
        if (!d->transposed && d->dtype == FIB_DTYPE_F32) {
            const float *src = (const float *)d->weights + q0 * d->ld;
            for (int64_t k = 0; k < p; k++)
                for (int64_t r = 0; r < cols; r++)
                    dst[k * panel + r] = src[r * d->ld + k];
        } else if (!d->transposed && d->dtype == FIB_DTYPE_F64) {
            const double *src = (const double *)d->weights + q0 * d->ld;
            for (int64_t k = 0; k < p; k++)
                for (int64_t r = 0; r < cols; r++)
                    dst[k * panel + r] = src[r * d->ld + k];
        } else {
            for (int64_t k = 0; k < p; k++)
                for (int64_t r = 0; r < cols; r++)
                    dst[k * panel + r] = fib_dense_weight(d, q0 + r, k);
        }
        for (int64_t k = 0; cols < panel && k < p; k++)
            memset(dst + k * panel + cols, 0, (size_t)(panel - cols) * sizeof *dst);
    }
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

/* y[j] = fma(a, x[j], y[j]) for j in [0, n): gemm_f64's terms (each
 * product and sum fused), for the sums that skip zeros of a. */
static void fused_axpy(double *y, double a, const double *x, int64_t n)
{
    fib_fused_active()->axpy(y, a, x, n);
}

/* Each thread's scratch for the products of a block of samples: a weight
 * row (row_len doubles), the packing of COLUMNS outputs (pack_len) and a
 * slab's columns of h' as rows (ht_len), thread t's at t times the length. */
typedef struct scratch {
    int threads;
    double *row, *pack, *ht;
    int64_t row_len, pack_len, ht_len;
} scratch;

/* What a block product does with its outputs once made: copies them to
 * keep (rows of the layer's width) unless NULL, then applies the
 * activation act (FIB_ACT_LINEAR: none). */
typedef struct outputs {
    double *keep;
    int32_t act;
    double slope;
} outputs;

/* Outputs j0 .. j1 - 1 of c (rows x m) = bias + a (rows x p) w^T for one
 * block of samples, w's outputs packed into pack (p x COLUMNS; row: p
 * doubles of scratch), then kept and activated (o). Every element is bias
 * + its terms one at a time in ascending k, each product and sum fused
 * (gemm_f64's contract), so the bits are those of the fused axpys along
 * c's rows, which skip a's zeros (dead ReLU units) and remain for the
 * case weights_of_group excludes. */
static void product_columns(const weights *w, const double *a, int64_t rows, int64_t j0,
                            int64_t j1, const outputs *o, double *row, double *pack, double *c)
{
    const fib_kernels *kern = fib_kernels_active();
    int64_t p = w->n_in, m = w->n_out, width = j1 - j0;
    for (int64_t s = 0; s < rows; s++)
        memcpy(c + s * m + j0, w->bias + j0, (size_t)width * sizeof *c);
    if (w->kernel) {
        pack_outputs(w, j0, j1, kern->gemm_panel, pack);
        /* every block of samples reads the layer again: holding its
         * pages between blocks would hold the file (fib_dense_drop_rows
         * leaves transposed weights to the drop after the product) */
        if (w->mapped)
            fib_dense_drop_rows(w->mapped, w->d, j0, j1);
        kern->gemm_f64(rows, width, p, a, p, pack, c + j0, m);
    } else {
        for (int64_t j = j0; j < j1; j++) {
            weight_row(w->d, j, p, row);
            for (int64_t k = 0; k < p; k++)
                pack[(j - j0) + k * width] = row[k];
        }
        for (int64_t s = 0; s < rows; s++)
            for (int64_t k = 0; k < p; k++) {
                double x = a[s * p + k];
                if (x != 0)
                    fused_axpy(c + s * m + j0, x, pack + k * width, width);
            }
    }
    for (int64_t s = 0; s < rows; s++) {
        if (o->keep)
            memcpy(o->keep + s * m + j0, c + s * m + j0, (size_t)width * sizeof *c);
        activate(c + s * m + j0, width, o->act, o->slope);
    }
}

/* c (rows x m) = bias + a (rows x p) w^T for one block of samples, kept
 * and activated (o), its outputs COLUMNS at a time (whole panels of
 * gemm_f64's packing) shared out among as many of t's threads as the
 * product's work pays for: each element made by one thread, by the same
 * kernel in the same order at every thread count. */
static void block_product(const weights *w, const double *a, int64_t rows, const scratch *t,
                          const outputs *o, double *c)
{
    int64_t pieces = (w->n_out + COLUMNS - 1) / COLUMNS;
    int threads = product_threads(t->threads, rows, w->n_out, w->n_in);
    (void)threads; /* unused without OpenMP */
    FIB_PRAGMA(omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1))
    for (int64_t q = 0; q < pieces; q++) {
        int id = fib_thread_num();
        int64_t j0 = q * COLUMNS, j1 = j0 + COLUMNS < w->n_out ? j0 + COLUMNS : w->n_out;
        product_columns(w, a, rows, j0, j1, o, t->row + id * t->row_len,
                        t->pack + id * t->pack_len, c);
    }
    if (w->mapped)
        fib_group_drop_pages(w->mapped, w->group);
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

/* Row i of a symmetric matrix held as its lower triangle, row by row:
 * entries (i, 0) .. (i, i). Nothing reads the upper triangle. */
static inline double *tri_row(double *g, int64_t i)
{
    return g + i * (i + 1) / 2;
}

/* Column j of the factor, its sums' terms from column j0 on (those before
 * are factor_prefix's), each fused as the product kernel fuses them
 * (fused.h; g - a b is fma(a, -b, g) exactly): 1, or 0 when g is not
 * positive definite, -1 when cancelled. */
static int factor_column(double *g, int64_t n, int64_t j0, int64_t j,
                         const fib_progress_check *check)
{
    if (fib_progress_cancelled(check))
        return -1;
    const fib_fused *fused = fib_fused_active();
    double *gj = tri_row(g, j);
    double s = gj[j];
    const double *gjs = gj + j0;
    fused->dot_sub(&s, &gjs, 1, gj + j0, j - j0);
    if (!(s > 0))
        return 0;
    double l = sqrt(s);
    gj[j] = l;
    int64_t i = j + 1;
    /* four rows at a time: four independent chains of sums, each in
     * its own ascending order */
    for (; i < n; i += 4) {
        int64_t rows = n - i < 4 ? n - i : 4;
        double t[4];
        const double *gi[4];
        for (int64_t r = 0; r < rows; r++) {
            double *row = tri_row(g, i + r);
            t[r] = row[j];
            gi[r] = row + j0;
        }
        fused->dot_sub(t, gi, rows, gj + j0, j - j0);
        for (int64_t r = 0; r < rows; r++)
            tri_row(g, i + r)[j] = t[r] / l;
    }
    return 1;
}

/* Threads for factor_prefix's columns j0 .. j1 - 1 of an n x n factor. */
static int prefix_threads(int threads, int64_t n, int64_t j0, int64_t j1)
{
    int64_t w = j1 - j0;
    return work_threads(threads, (n - j0 + w - 1) / w, (n - j0) * w * j0);
}

/* The first j0 terms of the sums of the factor's columns j0 .. j1 - 1, on
 * every row from j0 on, by the product kernel: g[i][j] = fma(L[i][k],
 * -L[j][k], g[i][j]) for k = 0 .. j0 - 1 in ascending order: the bits of
 * factor_column's loops, whose terms from j0 on come next. The blocks of
 * j1 - j0 rows are shared out among at most `threads` threads
 * (prefix_threads), each element made by one. Scratch: b (the columns'
 * rows, negated and packed), and per thread a (up to j1 - j0 rows of L,
 * `a_len` doubles apart) and c (their block, `c_len` apart). */
static void factor_prefix(double *g, int64_t n, int64_t j0, int64_t j1, int threads, double *a,
                          int64_t a_len, double *b, double *c, int64_t c_len)
{
    const fib_kernels *kern = fib_kernels_active();
    int64_t w = j1 - j0, panel = kern->gemm_panel, n_blocks = (n - j0 + w - 1) / w;
    memset(b, 0, (size_t)fib_gemm_packed_len(j0, w, panel) * sizeof *b);
    for (int64_t j = j0; j < j1; j++) {
        const double *gj = tri_row(g, j);
        double *dst = b + fib_gemm_packed_at(j0, panel, 0, j - j0);
        for (int64_t k = 0; k < j0; k++)
            dst[k * panel] = -gj[k];
    }
    int share = prefix_threads(threads, n, j0, j1);
    (void)share; /* unused without OpenMP */
    FIB_PRAGMA(omp parallel for schedule(dynamic, 1) num_threads(share) if (share > 1))
    for (int64_t q = 0; q < n_blocks; q++) {
        int64_t i0 = j0 + q * w, i1 = i0 + w < n ? i0 + w : n;
        double *at = a + fib_thread_num() * a_len, *ct = c + fib_thread_num() * c_len;
        for (int64_t i = i0; i < i1; i++) {
            const double *gi = tri_row(g, i);
            memcpy(at + (i - i0) * j0, gi, (size_t)j0 * sizeof *at);
            for (int64_t j = j0; j < j1; j++)
                ct[(i - i0) * w + j - j0] = j <= i ? gi[j] : 0.0;
        }
        kern->gemm_f64(i1 - i0, w, j0, at, j0, b, ct, w);
        for (int64_t i = i0; i < i1; i++)
            for (int64_t j = j0; j < j1 && j <= i; j++)
                tri_row(g, i)[j] = ct[(i - i0) * w + j - j0];
    }
}

/* Columns of a right-hand side substituted together (one thread's), and
 * its rows substituted between two questions to the progress callback. */
#define SOLVE_COLUMNS 64
#define SOLVE_ROWS 64

/* Row i of a substitution through the factor's lower triangle (forward:
 * L y = b, the rows before i done; otherwise L^T x = y, those after i) on
 * rhs's columns c0 .. c1 - 1 (rhs: n x m): rhs[i][c] - l * rhs[k][c] is
 * rhs[i][c] + (-l) * rhs[k][c] exactly, so the axpys give each column its
 * bits, in its order of k, whatever the columns taken together. */
static void substitute_row(double *g, int64_t n, double *rhs, int64_t m, int64_t i,
                           bool forward, int64_t c0, int64_t c1)
{
    const fib_kernels *kern = fib_kernels_active();
    double *ri = rhs + i * m + c0;
    if (forward)
        for (int64_t k = 0; k < i; k++)
            kern->axpy_f64(ri, -tri_row(g, i)[k], rhs + k * m + c0, c1 - c0);
    else
        for (int64_t k = i + 1; k < n; k++)
            kern->axpy_f64(ri, -tri_row(g, k)[i], rhs + k * m + c0, c1 - c0);
    double l = tri_row(g, i)[i];
    for (int64_t c = 0; c < c1 - c0; c++)
        ri[c] = ri[c] / l;
}

/* Solves g x = rhs in place (g: n x n symmetric positive definite, its
 * lower triangle (tri_row), rhs: n x m) by Cholesky on `threads` threads:
 * 1, or 0 when g is not positive definite, -1 when cancelled, -2 out of
 * memory. The factor is made `slab` columns at a time: the terms of their
 * sums over the columns before by the product kernel (factor_prefix), the
 * rest column by column; the substitutions SOLVE_ROWS rows at a time,
 * their columns shared out SOLVE_COLUMNS at a time. */
static int cholesky_solve(double *g, int64_t n, double *rhs, int64_t m, int64_t slab,
                          int threads, const fib_progress_check *check)
{
    int64_t panel = fib_kernels_active()->gemm_panel;
    slab = slab < n ? slab : n;
    int most = 1; /* the most threads a factor_prefix shares its rows among */
    for (int64_t j0 = slab; j0 < n; j0 += slab) {
        int share = prefix_threads(threads, n, j0, j0 + slab < n ? j0 + slab : n);
        most = share > most ? share : most;
    }
    double *a = fib_alloc(most * slab * n, sizeof *a);
    double *c = fib_alloc(most * slab * slab, sizeof *c);
    double *b = fib_alloc(fib_gemm_packed_len(n, slab, panel), sizeof *b);
    int done = a && b && c ? 1 : -2;
    for (int64_t j0 = 0; done > 0 && j0 < n; j0 += slab) {
        int64_t j1 = j0 + slab < n ? j0 + slab : n;
        if (j0 > 0)
            factor_prefix(g, n, j0, j1, most, a, slab * n, b, c, slab * slab);
        for (int64_t j = j0; done > 0 && j < j1; j++)
            done = factor_column(g, n, j0, j, check);
    }
    fib_free(a);
    fib_free(b);
    fib_free(c);
    if (done <= 0)
        return done;

    int64_t pieces = (m + SOLVE_COLUMNS - 1) / SOLVE_COLUMNS;
    for (int pass = 0; pass < 2; pass++) /* L y = b, then L^T x = y */
        for (int64_t r0 = 0; r0 < n; r0 += SOLVE_ROWS) {
            if (fib_progress_cancelled(check))
                return -1;
            int64_t r1 = r0 + SOLVE_ROWS < n ? r0 + SOLVE_ROWS : n;
            /* each row's terms: the rows before it (forward), or after */
            int64_t terms = pass == 0 ? r1 : n - r0;
            int share = work_threads(threads, pieces, (r1 - r0) * m * terms);
            (void)share; /* unused without OpenMP */
            FIB_PRAGMA(omp parallel for schedule(dynamic, 1) num_threads(share) if (share > 1))
            for (int64_t q = 0; q < pieces; q++) {
                int64_t c0 = q * SOLVE_COLUMNS;
                int64_t c1 = c0 + SOLVE_COLUMNS < m ? c0 + SOLVE_COLUMNS : m;
                /* the forward pass's rows downwards, the other's upwards */
                for (int64_t r = r0; r < r1; r++)
                    substitute_row(g, n, rhs, m, pass == 0 ? r : n - 1 - r, pass == 0, c0, c1);
            }
        }
    return 1;
}

/* Rows of a Gram matrix made per call of the product kernel below (whole
 * tiles of 6 rows, as the block above), and columns of its Cholesky factor
 * made together: a slab. Each element's sum is its own, in its order, so
 * the slab changes no bit; a variable so that tests can show it. */
int64_t fib_budget_correction_slab = 48;

/* The panel of columns q0 .. q0 + panel - 1 of a block of samples' values
 * (rows x cols; with `ones`, a column of ones after them) packed for
 * gemm_f64 as its right-hand factor (fib_gemm_packed_at: panel by panel,
 * the columns past the last zeros), a sample's row of it at a time. */
static void pack_panel(const double *a, int64_t rows, int64_t cols, bool ones, int64_t panel,
                       int64_t q0, double *packed)
{
    int64_t width = cols - q0 < panel ? cols - q0 : panel;
    width = width > 0 ? width : 0;
    double *dst = packed + q0 * rows; /* panel q0 / panel's rows x panel doubles */
    for (int64_t s = 0; s < rows; s++) {
        memcpy(dst + s * panel, a + s * cols + q0, (size_t)width * sizeof *dst);
        if (width < panel)
            memset(dst + s * panel + width, 0, (size_t)(panel - width) * sizeof *dst);
        if (ones && cols >= q0 && cols < q0 + panel)
            dst[s * panel + cols - q0] = 1.0;
    }
}

/* A Gram matrix (n x n) while its sums are made: in slabs of `slab`
 * rows, each slab's rows as long as its last row's lower triangle (rows
 * i0 .. i1 - 1 of i1 columns, what lies above the diagonal unread), so
 * that the product kernel adds a block's sums to a slab in place. Doubles
 * of the slabs, and where row i starts (the slabs before i's are full). */
static int64_t slabs_len(int64_t n, int64_t slab)
{
    int64_t len = 0;
    for (int64_t i0 = 0; i0 < n; i0 += slab)
        len += (n - i0 < slab ? n - i0 : slab) * (i0 + slab < n ? i0 + slab : n);
    return len;
}

static inline double *slab_row(double *g, int64_t n, int64_t slab, int64_t i)
{
    int64_t b = i / slab, i0 = b * slab, i1 = i0 + slab < n ? i0 + slab : n;
    return g + slab * slab * (b * (b + 1) / 2) + (i - i0) * i1;
}

/* The slabs' lower triangle moved, in place, to tri_row's rows (each row
 * starts no later than in the slabs: rows in ascending order overwrite
 * only what was read). */
static void slabs_to_triangle(double *g, int64_t n, int64_t slab)
{
    for (int64_t i = 0; i < n; i++)
        memmove(tri_row(g, i), slab_row(g, n, slab, i), (size_t)(i + 1) * sizeof *g);
}

/* Threads for accumulate's products on a block of `rows` samples. */
static int accumulate_threads(int32_t requested, int64_t rows, int64_t n, int64_t m,
                              int64_t slab)
{
    return work_threads(requested, (n + slab - 1) / slab, rows * (slabs_len(n, slab) + n * m));
}

/* The least-squares sums of one block of samples (h: rows x k, z: rows x
 * m) added to g (n x n, n = k + 1, in slabs: slab_row) and rhs (n x m):
 * h' = (h, 1), g += h'^T h', rhs += h'^T z, each element's sum over the
 * samples in ascending order. The product kernel adds the products of h's
 * zeros too, which changes no bit of a sum started at +0 when h and z are
 * finite (weights_of_group's reason); otherwise the fused axpys skip them.
 * hp and zp (h' and z packed) and t's ht are scratch. */
static void accumulate(const double *h, int64_t rows, int64_t k, const double *z, int64_t m,
                       int64_t slab, const scratch *t, double *hp, double *zp, double *g,
                       double *rhs)
{
    const fib_kernels *kern = fib_kernels_active();
    int64_t n = k + 1, panel = kern->gemm_panel;
    bool finite = kern->all_finite_f64(h, rows * k) && kern->all_finite_f64(z, rows * m);
    if (!finite) {
        for (int64_t i = 0; i < n; i++) {
            double *gi = slab_row(g, n, slab, i), *ri = rhs + i * m;
            int64_t top = i < k ? i + 1 : k; /* the lower triangle, then the ones column */
            for (int64_t s = 0; s < rows; s++) {
                const double *hs = h + s * k, *zs = z + s * m;
                double ai = i < k ? hs[i] : 1.0;
                if (ai == 0)
                    continue;
                fused_axpy(gi, ai, hs, top);
                if (i == k)
                    gi[k] += 1.0;
                fused_axpy(ri, ai, zs, m);
            }
        }
        return;
    }
    /* h' and z packed a panel at a time, then a slab at a time: its rows
     * of the Gram matrix, then of rhs; both shared out among as many of
     * t's threads as the sums' work pays for, the longest slabs (the last)
     * first */
    int64_t h_panels = (n + panel - 1) / panel, z_panels = (m + panel - 1) / panel;
    int64_t n_slabs = (n + slab - 1) / slab;
    int threads = accumulate_threads(t->threads, rows, n, m, slab);
    (void)threads; /* unused without OpenMP */
    FIB_PRAGMA(omp parallel num_threads(threads) if (threads > 1))
    {
        FIB_PRAGMA(omp for schedule(static))
        for (int64_t q = 0; q < h_panels + z_panels; q++) {
            if (q < h_panels)
                pack_panel(h, rows, k, true, panel, q * panel, hp);
            else
                pack_panel(z, rows, m, false, panel, (q - h_panels) * panel, zp);
        }
        FIB_PRAGMA(omp for schedule(dynamic, 1))
        for (int64_t q = 0; q < n_slabs; q++) {
            int64_t i0 = (n_slabs - 1 - q) * slab, i1 = i0 + slab < n ? i0 + slab : n;
            double *ht = t->ht + fib_thread_num() * t->ht_len;
            for (int64_t i = i0; i < i1; i++)
                for (int64_t s = 0; s < rows; s++)
                    ht[(i - i0) * rows + s] = i < k ? h[s * k + i] : 1.0;
            kern->gemm_f64(i1 - i0, i1, rows, ht, rows, hp, slab_row(g, n, slab, i0), i1);
            kern->gemm_f64(i1 - i0, m, rows, ht, rows, zp, rhs + i0 * m, m);
        }
    }
}

/* A dense layer of the chain in double, n_out x n_in: each output's
 * weights and then its bias (d = n_in + 1 values), output by output (w:
 * n_out x d, refit_step's rows), or as a fit leaves it (by_input): input
 * by input, w d x n_out, its row i input i's weights to every output and
 * its last row the biases. */
typedef struct layer {
    int64_t n_out, n_in;
    double *w;
    bool by_input;
} layer;

static void layer_clear(layer *l)
{
    fib_free(l->w);
    *l = (layer){0};
}

static int32_t layer_alloc(layer *l, int64_t n_out, int64_t n_in)
{
    *l = (layer){.n_out = n_out, .n_in = n_in};
    l->w = fib_calloc(n_out * (n_in + 1) > 0 ? n_out * (n_in + 1) : 1, sizeof *l->w);
    return l->w ? FIB_OK : out_of_memory();
}

/* Output j's weights and bias (n_in + 1 doubles) into dst. */
static void layer_row(const layer *l, int64_t j, double *dst)
{
    int64_t d = l->n_in + 1;
    if (!l->by_input) {
        memcpy(dst, l->w + j * d, (size_t)d * sizeof *dst);
        return;
    }
    for (int64_t i = 0; i < d; i++)
        dst[i] = l->w[i * l->n_out + j];
}

static int32_t layer_of_group(const fib_graph *g, int32_t group, layer *l)
{
    const fib_dense *d = fib_group_matrix(g, group);
    int32_t st = layer_alloc(l, g->groups[group].n_units, d->n_in);
    for (int64_t i = 0; !st && i < l->n_out; i++) {
        for (int64_t k = 0; k < l->n_in; k++)
            l->w[i * (l->n_in + 1) + k] = fib_dense_weight(d, i, k);
        l->w[i * (l->n_in + 1) + l->n_in] = fib_dense_bias(d, i);
        row_read(g, d, i, l->n_out);
    }
    fib_group_drop_pages(g, group);
    return st;
}

/* The model's dense group `group` (read in place) with its columns summed
 * over classes lab (k of them), each scaled by s (per column, may be
 * NULL): the first layer over merged inputs, and refit_chain's consumer,
 * which its fit starts from (its prior). The fit makes the consumer a row
 * at a time where it reads it, so that it is never held beside the fit's
 * right-hand side. */
typedef struct merged_layer {
    const fib_graph *g;
    int32_t group;
    const int64_t *lab;
    int64_t k;
    const double *s;
} merged_layer;

/* Output j of a merged layer (k values into out; in: the group's n_in
 * doubles of scratch): each class's sum over its members in ascending
 * order, from +0. */
static void merged_row(const merged_layer *m, int64_t j, double *in, double *out)
{
    const fib_dense *d = fib_group_matrix(m->g, m->group);
    weight_row(d, j, d->n_in, in);
    row_read(m->g, d, j, m->g->groups[m->group].n_units);
    memset(out, 0, (size_t)m->k * sizeof *out);
    for (int64_t x = 0; x < d->n_in; x++)
        out[m->lab[x]] += in[x] * (m->s ? m->s[x] : 1.0);
}

static int32_t sum_columns(const merged_layer *m, layer *out)
{
    const fib_dense *d = fib_group_matrix(m->g, m->group);
    double *in = fib_alloc(d->n_in > 0 ? d->n_in : 1, sizeof *in);
    int32_t st = in ? layer_alloc(out, m->g->groups[m->group].n_units, m->k) : out_of_memory();
    for (int64_t i = 0; !st && i < out->n_out; i++) {
        merged_row(m, i, in, out->w + i * (m->k + 1));
        out->w[i * (m->k + 1) + m->k] = fib_dense_bias(d, i);
    }
    fib_group_drop_pages(m->g, m->group);
    fib_free(in);
    return st;
}

/* Output j of the base's dense block of `group` written (the base owns
 * its blocks: their weights may be written in place). */
static void store_row(fib_graph *base, int32_t group, int64_t j, const double *w, double b)
{
    fib_dense *d = (fib_dense *)fib_group_matrix(base, group);
    memcpy((double *)d->owned_weights + j * d->ld, w, (size_t)d->n_in * sizeof *w);
    if (d->owned_bias)
        ((double *)d->owned_bias)[j] = b;
}

/* Writes a corrected layer into the base's dense block of `group`
 * (row: n_in + 1 doubles of scratch). */
static void store(fib_graph *base, int32_t group, const layer *l, double *row)
{
    for (int64_t j = 0; j < l->n_out; j++) {
        layer_row(l, j, row);
        store_row(base, group, j, row, row[l->n_in]);
    }
}

/* The prior's value of the fit's unknowns, column c of the solution
 * (rows 0 .. k - 1 the weights, row k the bias), times lam added to rhs,
 * or, when `set`, the prior itself written there. */
static int32_t prior_into(const merged_layer *prior, double *rhs, int64_t m, double lam, bool set)
{
    const fib_dense *d = fib_group_matrix(prior->g, prior->group);
    int64_t k = prior->k;
    double *in = fib_alloc(d->n_in > 0 ? d->n_in : 1, sizeof *in);
    double *row = fib_alloc(k > 0 ? k : 1, sizeof *row);
    if (!in || !row) {
        fib_free(in);
        fib_free(row);
        return out_of_memory();
    }
    for (int64_t c = 0; c < m; c++) {
        merged_row(prior, c, in, row);
        double b = fib_dense_bias(d, c);
        for (int64_t i = 0; i < k; i++)
            rhs[i * m + c] = set ? row[i] : rhs[i * m + c] + lam * row[i];
        rhs[k * m + c] = set ? b : rhs[k * m + c] + lam * b;
    }
    fib_group_drop_pages(prior->g, prior->group);
    fib_free(in);
    fib_free(row);
    return FIB_OK;
}

/* The fit (m outputs over k inputs) minimising |h w^T + b - z|^2 + lam
 * |(w, b) - prior|^2 from the sums g and rhs of accumulate over every
 * sample, lam = ridge times the mean diagonal of the Gram matrix, solved
 * in place of rhs: rhs becomes the fit, by input (layer's by_input). The
 * fit is the prior when g is not positive definite or the solution is not
 * finite (a ridge so large that lam overflows: the prior is its limit);
 * the factor made `slab` columns at a time on `threads` threads. */
static int32_t least_squares_solve(double *g, double *rhs, int64_t m, double ridge,
                                   int64_t slab, int threads, const fib_progress_check *check,
                                   const merged_layer *prior, layer *fit)
{
    int64_t k = prior->k, n = k + 1;
    double trace = 0;
    for (int64_t i = 0; i < n; i++)
        trace += tri_row(g, i)[i];
    double lam = ridge * (trace > 0 ? trace : 1e-300) / (double)n;
    for (int64_t i = 0; i < n; i++)
        tri_row(g, i)[i] += lam;
    int32_t st = prior_into(prior, rhs, m, lam, false); /* towards the prior */
    if (st)
        return st;
    int solved = cholesky_solve(g, n, rhs, m, slab, threads, check);
    for (int64_t i = 0; solved > 0 && i < n * m; i++)
        if (!isfinite(rhs[i]))
            solved = 0;
    if (solved < 0)
        return solved == -2 ? out_of_memory() : cancelled();
    if (solved == 0)
        st = prior_into(prior, rhs, m, lam, true);
    if (!st)
        *fit = (layer){.n_out = m, .n_in = k, .w = rhs, .by_input = true};
    return st;
}

/* refit_chain's step for hidden layer `cur` (its rows over the merged
 * source) with classes lab (k): its representatives written into the
 * base's block of `group`, and the members' scales into s (cur's n_out),
 * with which the model's group `next` (over cur's units) merges into the
 * consumer (merged_layer). The step takes cur's rows (output by output:
 * its own array; a fit's: copied, then cleared), so that the step's
 * largest arrays are not held together. */
static int32_t refit_step(layer *cur, const fib_graph *g, int32_t next, const int64_t *lab,
                          int64_t k, fib_graph *base, int32_t group, double *s)
{
    int64_t n = cur->n_out, n_in = cur->n_in, d = n_in + 1;
    double *rows = cur->by_input ? fib_alloc(n * d, sizeof *rows) : cur->w;
    for (int64_t i = 0; rows && cur->by_input && i < n; i++)
        layer_row(cur, i, rows + i * d);
    if (!cur->by_input)
        cur->w = NULL;
    layer_clear(cur);
    double *reps = fib_alloc(k * d, sizeof *reps);
    double *weight = fib_calloc(n, sizeof *weight), *row = fib_alloc(n, sizeof *row);
    int32_t st = rows && reps && weight && row ? FIB_OK : out_of_memory();
    /* outgoing norms: the consumer's columns */
    const fib_dense *nd = fib_group_matrix(g, next);
    for (int64_t j = 0; !st && j < g->groups[next].n_units; j++) {
        weight_row(nd, j, n, row);
        row_read(g, nd, j, g->groups[next].n_units);
        for (int64_t i = 0; i < n; i++)
            weight[i] += row[i] * row[i];
    }
    fib_group_drop_pages(g, next); /* the fit reads it again, one row at a time */
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
    for (int64_t c = 0; !st && c < k; c++)
        store_row(base, group, c, reps + c * d, reps[c * d + n_in]);
    fib_free(rows);
    fib_free(reps);
    fib_free(weight);
    fib_free(row);
    return st;
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

/* Frees what a pass of fit_consumer holds. */
static void weights_clear(weights *w, int32_t n)
{
    for (int32_t i = 0; w && i < n; i++)
        fib_free(w[i].bias);
    fib_free(w);
}

/* The inputs the base reads for a block of samples x (rows x n0): the
 * means of merged inputs (count: the members of each of inputs' classes),
 * x itself otherwise. */
static void base_inputs(const double *x, int64_t rows, int64_t n0, const fib_partition *inputs,
                        const int64_t *count, int64_t k0, double *h)
{
    memset(h, 0, (size_t)(rows * k0) * sizeof *h);
    for (int64_t s = 0; s < rows; s++)
        for (int64_t k = 0; k < n0; k++) {
            int64_t c = inputs ? inputs->color[k] : k;
            h[s * k0 + c] += x[s * n0 + k] / (inputs ? (double)count[c] : 1.0);
        }
}

/* The original's pre-activations of later fits' layers, made by the first
 * fit's pass through the original and kept for the fits that read them
 * (fib_budget_correct's rule says which): rows[l], S x the units of layer
 * l + 1, the target of fit l, or NULL when fit l makes its own pass. */
typedef struct kept_targets {
    double **rows;
    int32_t deepest; /* the last fit whose target is kept, 0 when none is */
    bool filled;     /* the first pass is done */
} kept_targets;

/* The original's layers from .. to on a block of samples (a: layer from -
 * 1's pre-activations, activated here in place, or the samples when from
 * is 1), each into buf[j % 2]; returns the last one's pre-activations.
 * The first pass copies the pre-activations of the kept targets' layers,
 * from sample s0 on. */
static double *original_layers(const fib_graph *g, const weights *orig, int32_t from,
                               int32_t to, double *a, int64_t rows, const scratch *t,
                               double *const *buf, kept_targets *kept, int64_t s0)
{
    if (from > 1) /* the pre-activations given */
        activate(a, rows * orig[from - 1].n_out, g->groups[from - 1].activation,
                 g->groups[from - 1].act_param);
    for (int32_t j = from; j <= to; j++) {
        double *out = buf[j % 2];
        int64_t n = orig[j].n_out;
        /* every layer's outputs activated as they are made but the last's */
        outputs o = {.keep = !kept->filled && kept->rows[j - 1] ? kept->rows[j - 1] + s0 * n : NULL,
                     .act = j < to ? g->groups[j].activation : FIB_ACT_LINEAR,
                     .slope = g->groups[j].act_param};
        block_product(&orig[j], a, rows, t, &o, out);
        a = out;
    }
    return a;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* The least-squares fit of layer l + 1 over the base's units of layer l
 * (prior: refit_chain's consumer; the fit into *fit, by input): the
 * synthetic samples drawn again, a block at a time, through the base's
 * layers 1 .. l (already corrected) to its activations of layer l, and
 * through the original network to its pre-activations of layer l + 1 (the
 * fit's target), the block's sums added to the Gram matrix. The target is
 * kept's when the first pass kept it; otherwise the original's layers are
 * made again, so that no activation of every sample is held, and the first
 * pass goes on to the deepest kept target. The block's buffers go before
 * the solve. */
static int32_t fit_consumer(const fib_graph *g, const fib_graph *base, int32_t l,
                            const fib_partition *inputs, const int64_t *count, double scale,
                            double ridge, int64_t S, int64_t block, int32_t n_threads,
                            kept_targets *kept, const fib_progress_check *check,
                            const merged_layer *prior, layer *fit)
{
    int64_t n0 = g->groups[0].n_units, k0 = inputs ? inputs->n_classes : n0;
    int64_t k = prior->k, m = g->groups[l + 1].n_units, n = k + 1;
    int64_t panel = fib_kernels_active()->gemm_panel;
    bool given = kept->filled && kept->rows[l];
    /* the original's layers this fit makes: none, to l + 1, or on to the
     * deepest kept target */
    int32_t last = given ? 0 : kept->filled || kept->deepest <= l ? l + 1 : kept->deepest + 1;
    /* each buffer as wide as what it holds (see the loop below), the
     * packing and row as long as the widest input of a layer made, as
     * many as the most threads a product of a full block is shared among */
    int64_t slab = fib_budget_correction_slab < 1 ? 1 : fib_budget_correction_slab;
    int64_t wide[3] = {k0, 1, k}, inner = 1;
    int threads = accumulate_threads(n_threads, block, n, m, slab);
    for (int32_t j = 1; j <= l; j++) {
        int64_t units = base->groups[j].n_units, n_in = fib_group_matrix(base, j)->n_in;
        if (j < l)
            wide[j % 2] = max64(wide[j % 2], units);
        inner = max64(inner, n_in);
        threads = (int)max64(threads, product_threads(n_threads, block, units, n_in));
    }
    for (int32_t j = 1; j <= last; j++) {
        int64_t units = g->groups[j].n_units, n_in = fib_group_matrix(g, j)->n_in;
        wide[j % 2] = max64(wide[j % 2], units);
        inner = max64(inner, n_in);
        threads = (int)max64(threads, product_threads(n_threads, block, units, n_in));
    }
    scratch t = {.threads = threads, .row_len = inner,
                 .pack_len = fib_gemm_packed_len(inner, COLUMNS, panel), .ht_len = slab * block};
    t.row = fib_alloc(threads * t.row_len, sizeof *t.row);
    t.pack = fib_alloc(threads * t.pack_len, sizeof *t.pack);
    t.ht = fib_alloc(threads * t.ht_len, sizeof *t.ht);
    weights *orig = fib_calloc(last + 1, sizeof *orig), *mine = fib_calloc(l + 1, sizeof *mine);
    double *x = fib_alloc(block * n0, sizeof *x);
    double *buf[3] = {fib_alloc(block * wide[0], sizeof(double)),
                      fib_alloc(block * wide[1], sizeof(double)),
                      fib_alloc(block * wide[2], sizeof(double))};
    double *hp = fib_alloc(fib_gemm_packed_len(block, n, panel), sizeof *hp);
    double *zp = fib_alloc(fib_gemm_packed_len(block, m, panel), sizeof *zp);
    double *gram = fib_calloc(slabs_len(n, slab), sizeof *gram);
    double *rhs = fib_calloc(n * m, sizeof *rhs);
    int32_t st = t.row && t.pack && t.ht && orig && mine && x && buf[0] && buf[1] && buf[2] &&
                         hp && zp && gram && rhs
                     ? FIB_OK
                     : out_of_memory();
    for (int32_t j = 1; !st && j <= last; j++) {
        st = weights_of_group(g, j, t.row, &orig[j]);
        orig[j].mapped = g;
        orig[j].group = j;
        fib_group_drop_pages(g, j);
    }
    for (int32_t j = 1; !st && j <= l; j++)
        st = weights_of_group(base, j, t.row, &mine[j]);
    gaussian_stream draw = {.scale = scale};
    fib_rng_seed(&draw.rng, 0);
    for (int64_t s0 = 0; !st && s0 < S; s0 += block) {
        if (fib_progress_cancelled(check)) {
            st = cancelled();
            break;
        }
        int64_t rows = S - s0 < block ? S - s0 : block;
        gaussian_next(&draw, x, rows * n0);
        /* the base: its inputs through its layers 1 .. l, the last into
         * buf[2] (the others in buf[0] and buf[1] in turn) */
        base_inputs(x, rows, n0, inputs, count, k0, buf[0]);
        const double *a = buf[0];
        for (int32_t j = 1; j <= l; j++) {
            double *out = j == l ? buf[2] : buf[j % 2];
            outputs o = {.act = g->groups[j].activation, .slope = g->groups[j].act_param};
            block_product(&mine[j], a, rows, &t, &o, out);
            a = out;
        }
        /* the original: x through layers 1 .. l + 1 (buf[0] and buf[1]
         * in turn), unless kept */
        double *z = given ? kept->rows[l] + s0 * m
                          : original_layers(g, orig, 1, l + 1, x, rows, &t, buf, kept, s0);
        accumulate(buf[2], rows, k, z, m, slab, &t, hp, zp, gram, rhs);
        if (last > l + 1) /* the first pass goes on */
            original_layers(g, orig, l + 2, last, z, rows, &t, buf, kept, s0);
    }
    weights_clear(orig, last + 1);
    weights_clear(mine, l + 1);
    fib_free(t.row);
    fib_free(t.pack);
    fib_free(t.ht);
    fib_free(x);
    for (int i = 0; i < 3; i++)
        fib_free(buf[i]);
    fib_free(hp);
    fib_free(zp);
    if (!st) {
        kept->filled = true;
        slabs_to_triangle(gram, n, slab);
        st = least_squares_solve(gram, rhs, m, ridge, slab, n_threads, check, prior, fit);
    }
    fib_free(gram);
    if (st)
        fib_free(rhs);
    return st;
}

/* Which later fits' targets the first pass keeps (kept->rows, S x the
 * units of layer l + 1 for fit l, allocated here): the deepest first, each
 * while the kept ones together take at most one block of samples' values
 * of the original's widest layer (block x widest doubles, a fourth sample
 * buffer beside the three a fit holds), or fib_budget_correction_kept when
 * a test sets it. A kept target spares its fit a pass through the
 * original's layers 1 .. l + 1, the correction's largest product; the
 * bound keeps the memory a block's, not the samples': it holds a narrow
 * output layer's (a few units for thousands of samples), not a hidden
 * layer's, whose fit makes the pass again. */
int64_t fib_budget_correction_kept = -1;

static int32_t keep_targets(const fib_graph *g, int64_t S, int64_t block, kept_targets *kept)
{
    int32_t n_layers = g->n_groups - 1;
    int64_t widest = 0;
    for (int32_t j = 0; j <= n_layers; j++)
        widest = max64(widest, g->groups[j].n_units);
    int64_t room = fib_budget_correction_kept >= 0 ? fib_budget_correction_kept : block * widest;
    *kept = (kept_targets){.rows = fib_calloc(n_layers, sizeof *kept->rows)};
    if (!kept->rows)
        return out_of_memory();
    for (int32_t l = n_layers - 1; l >= 2; l--) {
        int64_t size = S * g->groups[l + 1].n_units;
        if (size > room)
            continue;
        kept->rows[l] = fib_alloc(size, sizeof **kept->rows);
        if (!kept->rows[l])
            return out_of_memory();
        room -= size;
        kept->deepest = kept->deepest ? kept->deepest : l;
    }
    return FIB_OK;
}

static void kept_clear(kept_targets *kept, int32_t n_layers)
{
    for (int32_t l = 0; kept->rows && l < n_layers; l++)
        fib_free(kept->rows[l]);
    fib_free(kept->rows);
}

int32_t fib_budget_correct(const fib_graph *g, const fib_coloring *col, double scale,
                           int64_t n_samples, double ridge, int32_t n_threads,
                           const fib_progress_check *check, fib_base *base, bool *applied)
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
    int64_t block = fib_budget_correction_block < 1 ? 1 : fib_budget_correction_block;
    block = block < S ? block : S;
    const fib_partition *inputs = col->merge_inputs ? &col->parts[0] : NULL;
    int64_t k0 = inputs ? inputs->n_classes : n0;
    layer cur = {0};
    kept_targets kept = {0};
    /* the base reads the means of merged inputs */
    int64_t *count = inputs ? fib_calloc(k0, sizeof *count) : NULL;
    int32_t st = inputs && !count ? out_of_memory() : FIB_OK;
    for (int64_t x = 0; !st && inputs && x < n0; x++)
        count[inputs->color[x]]++;
    /* cur: layer l's rows over its merged source (the first layer's over
     * the merged inputs, or the original's) */
    merged_layer first = {.g = g, .group = 1, .lab = inputs ? inputs->color : NULL, .k = k0};
    if (!st)
        st = inputs ? sum_columns(&first, &cur) : layer_of_group(g, 1, &cur);
    if (!st)
        st = keep_targets(g, S, block, &kept);
    for (int32_t l = 1; !st && l < n_layers; l++) {
        /* group l is hidden with classes parts[l]; group l + 1 reads it.
         * The consumer refit_chain would give: group l + 1 as it is now
         * (the original's, over layer l's units) merged with the scales s
         * of layer l's members */
        const fib_partition *p = &col->parts[l];
        double *s = fib_alloc(cur.n_out > 0 ? cur.n_out : 1, sizeof *s);
        st = s ? refit_step(&cur, g, l + 1, p->color, p->n_classes, base->graph, l, s)
               : out_of_memory();
        /* the consumer, full width over its own units, fitted to the
         * original's pre-activations; it is the next layer's rows */
        merged_layer consumer = {.g = g, .group = l + 1, .lab = p->color, .k = p->n_classes,
                                 .s = s};
        if (!st)
            st = fit_consumer(g, base->graph, l, inputs, count, scale, ridge, S, block, n_threads,
                              &kept, check, &consumer, &cur);
        fib_free(s);
        fib_free(kept.rows[l]); /* read by fit l only */
        kept.rows[l] = NULL;
    }
    double *row = st ? NULL : fib_alloc(cur.n_in + 1, sizeof *row);
    st = st ? st : row ? FIB_OK : out_of_memory();
    if (!st) {
        store(base->graph, n_layers, &cur, row);
        *applied = true;
    }
    fib_free(row);
    layer_clear(&cur);
    kept_clear(&kept, n_layers);
    fib_free(count);
    return st;
}
