/* Dense blocks: z = W x + b. Colour sums over the source classes (fibers),
 * column sums over the consumer's classes (opfibers), Eq. 10 merging, lift
 * and the reference forward pass. */
#include "blocks/blocks.h"
#include "kernels/kernels.h"
#include "kernels/stored.h"
#include "kernels/parallel.h"

#include <math.h>
#include <string.h>

static const fib_dense *dense_of(const fib_graph *g, int32_t group)
{
    return (const fib_dense *)g->groups[group].block;
}

double fib_dense_weight(const fib_dense *d, int64_t row, int64_t col)
{
    return fib_load(d->dtype, d->weights, d->transposed ? col * d->ld + row : row * d->ld + col);
}

double fib_dense_bias(const fib_dense *d, int64_t row)
{
    return fib_load_or(d->dtype, d->bias, row, 0.0);
}

void fib_dense_drop_rows(const fib_graph *g, const fib_dense *d, int64_t begin, int64_t end)
{
    if (d->transposed || end <= begin)
        return;
    size_t size = fib_dtype_size(d->dtype);
    fib_graph_drop_range(g, (const char *)d->weights + (size_t)(begin * d->ld) * size,
                         (size_t)((end - begin) * d->ld) * size);
}

static void dense_free(void *block)
{
    fib_dense *d = block;
    if (!d)
        return;
    fib_free(d->owned_weights);
    fib_free(d->owned_bias);
    fib_free(d);
}

/* Whether row i of the weights and its bias are all finite. */
static bool row_finite(const fib_kernels *kernels, int64_t n_in, int32_t dtype,
                       const void *w, int64_t ld, const void *bias, int64_t i)
{
    bool ok = fib_all_finite_stored(kernels, dtype,
                                    (const char *)w + (size_t)(i * ld) * fib_dtype_size(dtype),
                                    n_in);
    return ok && (!bias || isfinite(fib_load(dtype, bias, i)));
}

/* Finds the first non-finite weight or bias, for a message naming it. Rows
 * are first checked by a fast pass (on the OpenMP default number of threads
 * for a large block: the pass is one read of the weights); only the first
 * row that fails it is searched. */
static int32_t check_finite(int32_t group, int64_t n_out, int64_t n_in,
                            int32_t dtype, const void *w, int64_t ld,
                            const void *bias, bool transposed)
{
    const fib_kernels *kernels = fib_kernels_active();
    int64_t first_bad = n_out;
    int threads = fib_thread_count(0, n_out * n_in / (INT64_C(1) << 20));
    (void)threads; /* without OpenMP */
    FIB_PRAGMA(omp parallel for num_threads(threads) schedule(static) reduction(min : first_bad) if (threads > 1))
    for (int64_t i = 0; i < n_out; i++)
        if (i < first_bad && !row_finite(kernels, n_in, dtype, w, ld, bias, i))
            first_bad = i;
    for (int64_t i = first_bad; i < n_out; i++) {
        if (row_finite(kernels, n_in, dtype, w, ld, bias, i))
            continue;
        for (int64_t k = 0; k < n_in; k++)
            if (!isfinite(fib_load(dtype, w, i * ld + k)))
                return fib_error(FIB_E_NONFINITE,
                                 "dense block of group %d: weight at row %lld, column %lld is %s",
                                 (int)group, (long long)(transposed ? k : i),
                                 (long long)(transposed ? i : k),
                                 isnan(fib_load(dtype, w, i * ld + k)) ? "NaN" : "infinite");
        if (bias && !isfinite(fib_load(dtype, bias, i)))
            return fib_error(FIB_E_NONFINITE,
                             "dense block of group %d: bias %lld is not finite",
                             (int)group, (long long)i);
    }
    return FIB_OK;
}

/* A dense block over weights checked by the caller: `rows` stored rows of
 * `cols` values, leading dimension ld (rows per unit, or per source unit
 * when transposed). Borrowed, or copied packed (ld becomes cols) with
 * FIB_COPY. NULL (the error raised) when out of memory. */
static fib_dense *d_new(int32_t dtype, int64_t n_in, const void *weights, int64_t ld,
                        const void *bias, uint32_t flags, bool transposed, int64_t rows,
                        int64_t cols, const char *fn, int32_t group)
{
    size_t esize = fib_dtype_size(dtype);
    int64_t n_out = transposed ? cols : rows;
    fib_dense *d = fib_calloc(1, sizeof *d);
    if (!d) {
        fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
        return NULL;
    }
    d->dtype = dtype;
    d->n_in = n_in;
    d->ld = ld;
    d->weights = weights;
    d->bias = bias;
    d->transposed = transposed;
    if (!(flags & FIB_COPY))
        return d;
    d->owned_weights = fib_alloc(rows * cols, esize);
    d->owned_bias = bias ? fib_alloc(n_out, esize) : NULL;
    if (!d->owned_weights || (bias && !d->owned_bias)) {
        dense_free(d);
        fib_error(FIB_E_NOMEM, "%s: group %d: out of memory copying weights", fn, (int)group);
        return NULL;
    }
    for (int64_t r = 0; r < rows; r++)
        memcpy((char *)d->owned_weights + (size_t)(r * cols) * esize,
               (const char *)weights + (size_t)(r * ld) * esize, (size_t)cols * esize);
    if (bias)
        memcpy(d->owned_bias, bias, (size_t)n_out * esize);
    d->weights = d->owned_weights;
    d->bias = d->owned_bias;
    d->ld = cols;
    return d;
}

static int32_t push_dense(fib_graph *g, int32_t source, int64_t n_out,
                          fib_dense *d, int32_t *group_out)
{
    if (!d) /* d_new has said why */
        return FIB_E_NOMEM;
    fib_group grp = {.op = FIB_OP_DENSE, .n_units = n_out,
                     .activation = FIB_ACT_LINEAR, .n_sources = 1,
                     .sources = {source, 0}, .ops = &fib_dense_ops,
                     .block = d};
    int32_t status = fib_graph_push_group(g, &grp, group_out);
    if (status)
        dense_free(d);
    return status;
}

/* The arguments both dense constructors take: the weights are stored as
 * `rows` x `cols` with leading dimension ld (n_out x n_in, or n_in x n_out
 * stored transposed). */
static int32_t check_dense_args(const fib_graph *g, int32_t source, int64_t n_out,
                                int32_t dtype, const void *weights, int64_t ld,
                                uint32_t flags, const int32_t *group_out, bool transposed,
                                const char *fn)
{
    int32_t status = fib_graph_check_group(g, source, fn);
    if (status)
        return status;
    if (!weights || !group_out)
        return fib_error(FIB_E_NULL, "%s: %s is NULL", fn,
                         weights ? "group_out" : "weights");
    int32_t group = g->n_groups;
    size_t esize;
    status = fib_check_dtype_and_flags(fn, group, dtype, flags, &esize);
    if (status)
        return status;
    int64_t n_in = g->groups[source].n_units;
    if (n_out < 1)
        return fib_error(FIB_E_SHAPE, "%s: group %d: n_out %lld must be at least 1",
                         fn, (int)group, (long long)n_out);
    if (n_out > FIB_MAX_UNITS)
        return fib_error(FIB_E_OVERFLOW, "%s: group %d: n_out %lld exceeds 2^40",
                         fn, (int)group, (long long)n_out);
    int64_t rows = transposed ? n_in : n_out, cols = transposed ? n_out : n_in;
    if (ld < cols)
        return fib_error(FIB_E_SHAPE,
                         "%s: group %d: leading dimension %lld is less than the %s %lld",
                         fn, (int)group, (long long)ld,
                         transposed ? "block's width" : "source width", (long long)cols);
    int64_t span;
    size_t bytes;
    if (!fib_mul_i64(rows - 1, ld, &span) || span > INT64_MAX - cols ||
        !fib_bytes(span + cols, esize, &bytes))
        return fib_error(FIB_E_OVERFLOW,
                         "%s: group %d: %lld rows of leading dimension %lld overflow",
                         fn, (int)group, (long long)rows, (long long)ld);
    return FIB_OK;
}

/* The first non-finite value of a bias, named. */
static int32_t check_bias(int32_t group, int64_t n_out, int32_t dtype, const void *bias)
{
    for (int64_t i = 0; bias && i < n_out; i++)
        if (!isfinite(fib_load(dtype, bias, i)))
            return fib_error(FIB_E_NONFINITE, "dense block of group %d: bias %lld is not "
                             "finite", (int)group, (long long)i);
    return FIB_OK;
}

/* fib_graph_add_dense and its transposed form: the arguments and every
 * weight and bias checked, then the block pushed. The finiteness pass over
 * the weights is left out when `checked` (or NULL) covers every weight an
 * ordinary block reads. */
static int32_t add_dense_stored(fib_graph *g, int32_t source, int64_t n_out, int32_t dtype,
                                const void *weights, int64_t ld, const void *bias,
                                uint32_t flags, bool transposed,
                                const fib_finite_values *checked, const char *fn,
                                int32_t *group_out)
{
    int32_t status = check_dense_args(g, source, n_out, dtype, weights, ld, flags, group_out,
                                      transposed, fn);
    if (status)
        return status;
    int32_t group = g->n_groups;
    int64_t n_in = g->groups[source].n_units;
    /* stored rows and columns: transposed, stored row k is column k of the
     * block, checked a stored row at a time and the bias apart */
    int64_t rows = transposed ? n_in : n_out, cols = transposed ? n_out : n_in;
    /* an ordinary block reads (n_out - 1) ld + n_in values from weights (a
     * span check_dense_args has bounded) */
    bool covered = !transposed && checked && weights == checked->data &&
                   dtype == checked->dtype && checked->n >= n_in &&
                   n_out - 1 <= (checked->n - n_in) / ld;
    if (covered)
        status = check_bias(group, n_out, dtype, bias);
    else
        status = check_finite(group, rows, cols, dtype, weights, ld, transposed ? NULL : bias,
                              transposed);
    if (!status && transposed)
        status = check_bias(group, n_out, dtype, bias);
    if (status)
        return status;
    return push_dense(g, source, n_out, d_new(dtype, n_in, weights, ld, bias, flags, transposed,
                                              rows, cols, fn, group),
                      group_out);
}

int32_t fib_graph_add_dense(fib_graph *g, int32_t source, int64_t n_out,
                            int32_t dtype, const void *weights, int64_t ld,
                            const void *bias, uint32_t flags,
                            int32_t *group_out)
{
    return add_dense_stored(g, source, n_out, dtype, weights, ld, bias, flags, false, NULL,
                            "fib_graph_add_dense", group_out);
}

int32_t fib_dense_add_over_checked(fib_graph *g, int32_t source, int64_t n_out,
                                   int32_t dtype, const void *weights, int64_t ld,
                                   const void *bias, uint32_t flags,
                                   const fib_finite_values *checked, int32_t *group_out)
{
    return add_dense_stored(g, source, n_out, dtype, weights, ld, bias, flags, false, checked,
                            "fib_graph_add_dense", group_out);
}

int32_t fib_graph_add_dense_transposed(fib_graph *g, int32_t source, int64_t n_out,
                                       int32_t dtype, const void *weights, int64_t ld,
                                       const void *bias, uint32_t flags,
                                       int32_t *group_out)
{
    return add_dense_stored(g, source, n_out, dtype, weights, ld, bias, flags, true, NULL,
                            "fib_graph_add_dense_transposed", group_out);
}

static int32_t add_dense_owned(fib_graph *g, int32_t source, int64_t n_out, int32_t dtype,
                               void *weights, void *bias, int32_t *group_out)
{
    fib_dense *d = fib_calloc(1, sizeof *d);
    if (!d) {
        fib_free(weights);
        fib_free(bias);
        return fib_error(FIB_E_NOMEM, "out of memory adding a dense block");
    }
    d->dtype = dtype;
    d->n_in = g->groups[source].n_units;
    d->ld = d->n_in;
    d->weights = d->owned_weights = weights;
    d->bias = d->owned_bias = bias;
    return push_dense(g, source, n_out, d, group_out);
}

int32_t fib_graph_add_dense_owned(fib_graph *g, int32_t source, int64_t n_out,
                                  double *weights, double *bias,
                                  int32_t *group_out)
{
    return add_dense_owned(g, source, n_out, FIB_DTYPE_F64, weights, bias, group_out);
}

int32_t fib_graph_add_dense_owned_f32(fib_graph *g, int32_t source, int64_t n_out,
                                      float *weights, float *bias, int32_t *group_out)
{
    return add_dense_owned(g, source, n_out, FIB_DTYPE_F32, weights, bias, group_out);
}

int32_t fib_graph_read_dense(const fib_graph *g, int32_t group, int32_t dtype,
                             void *weights, int64_t ld, void *bias)
{
    static const char fn[] = "fib_graph_read_dense";
    int32_t status = fib_graph_check_group(g, group, fn);
    if (status)
        return status;
    if (g->groups[group].op != FIB_OP_DENSE)
        return fib_error(FIB_E_INVALID, "%s: group %d is not a dense group", fn,
                         (int)group);
    if (!fib_dtype_writable(dtype))
        return fib_error(FIB_E_INVALID, "%s: dtype %d: FIB_DTYPE_F32 or FIB_DTYPE_F64 expected",
                         fn, (int)dtype);
    const fib_dense *d = dense_of(g, group);
    if (ld < d->n_in)
        return fib_error(FIB_E_SHAPE,
                         "%s: group %d: leading dimension %lld is less than %lld columns",
                         fn, (int)group, (long long)ld, (long long)d->n_in);
    if (!weights && !bias)
        return fib_error(FIB_E_NULL, "%s: weights and bias are both NULL", fn);
    int64_t n_out = g->groups[group].n_units;
    for (int64_t i = 0; i < n_out; i++) {
        if (weights)
            for (int64_t k = 0; k < d->n_in; k++)
                fib_store(dtype, weights, i * ld + k, fib_dense_weight(d, i, k));
        if (bias)
            fib_store(dtype, bias, i, fib_dense_bias(d, i));
    }
    return FIB_OK;
}

/* ---- colouring ---------------------------------------------------------- */

static int64_t dense_fiber_width(const fib_graph *g, int32_t group,
                                 const fib_partition *parts)
{
    int32_t source = g->groups[group].sources[0];
    return parts[source].n_classes + (dense_of(g, group)->bias ? 1 : 0);
}

static int32_t class_sums_by_column(const fib_dense *d, int64_t n_rows, int64_t n_cols,
                                   const fib_partition *own, fib_signature *sig,
                                   int64_t offset, int32_t group);

/* Colour sums of the weight rows (fib_color_rows), then the bias. Stored
 * transposed, a unit's row is a column of the stored matrix: its colour
 * sums are the stored rows' sums over the source's classes, column by
 * column (what the opfiber pass makes of an ordinary block), for all the
 * units at once. */
int32_t fib_dense_fiber_rows(const fib_graph *g, int32_t group, const fib_partition *parts,
                             fib_signature *sig, int64_t sig_row0, int64_t offset,
                             int64_t row0, int64_t rows)
{
    const fib_dense *d = dense_of(g, group);
    const fib_partition *src = &parts[g->groups[group].sources[0]];
    int64_t k = src->n_classes;
    double *coef = NULL;
    int32_t status = FIB_OK;
    if (d->transposed) {
        if (sig_row0 != 0 || row0 != 0 || rows != g->groups[group].n_units)
            return fib_error(FIB_E_UNSUPPORTED,
                             "group %d: a transposed matrix's rows are summed all at once",
                             (int)group);
        status = class_sums_by_column(d, d->n_in, rows, src, sig, offset, group);
    } else if (!(status = fib_color_coefficients(src, d->dtype, &coef)))
        status = fib_color_rows(sig, sig_row0, offset, d->dtype,
                                (const char *)d->weights +
                                    (size_t)(row0 * d->ld) * fib_dtype_size(d->dtype),
                                d->ld, rows, d->n_in, src->color, k, coef, group);
    fib_free(coef);
    for (int64_t r = 0; !status && d->bias && r < rows; r++) {
        double *v = sig->value + (sig_row0 + r) * sig->n_coords + offset;
        double *e = sig->tol + (sig_row0 + r) * sig->n_coords + offset;
        v[k] = fib_dense_bias(d, row0 + r);
        e[k] = fib_rounding_tol(d->dtype, 1, fabs(v[k]));
    }
    return status;
}

static int32_t dense_fiber_fill(const fib_graph *g, int32_t group,
                                const fib_partition *parts, fib_signature *sig,
                                int64_t offset)
{
    return fib_dense_fiber_rows(g, group, parts, sig, 0, offset, 0, g->groups[group].n_units);
}

/* Column sums over the consumer's classes, made a tile at a time: a tile is
 * OPF_CLASSES consecutive classes x OPF_COLUMNS columns. Each class's rows
 * (ascending, fib_color_order) are summed a few dozen columns at a time in
 * registers (every weight is read once, by runs of a KB along a few dozen
 * rows), then the tile is written into the
 * signature a whole cache line (8 classes of one column) at a time. Tiles
 * are spread over threads; every sum keeps its order (ascending rows from
 * 0.0), so the bits do not depend on the tiling or the thread count. */
#define OPF_CLASSES 8
#define OPF_COLUMNS 256

/* For every column j of the stored matrix (n_rows x n_cols, leading
 * dimension d->ld) and class c of `own` (over the rows): the sum of the
 * rows of c at j, into signature row j from coordinate `offset`. */
static int32_t class_sums_by_column(const fib_dense *d, int64_t n_rows, int64_t n_cols,
                                   const fib_partition *own, fib_signature *sig,
                                   int64_t offset, int32_t group)
{
    int64_t k = own->n_classes, n_out = n_rows;
    int64_t n_class_tiles = (k + OPF_CLASSES - 1) / OPF_CLASSES;
    int64_t n_col_tiles = (n_cols + OPF_COLUMNS - 1) / OPF_COLUMNS;
    int64_t n_tiles = n_class_tiles * n_col_tiles;
    int threads = fib_thread_count(sig->n_threads, n_tiles);
    const int64_t tile_len = 2 * OPF_CLASSES * OPF_COLUMNS;
    int64_t *rows = fib_alloc(n_out, sizeof *rows);
    int64_t *start = fib_alloc(k + 1, sizeof *start);
    double *coef = NULL;
    double *scratch = fib_alloc(tile_len * threads, sizeof *scratch);
    if (!rows || !start || !scratch || fib_color_coefficients(own, d->dtype, &coef)) {
        fib_free(rows);
        fib_free(start);
        fib_free(coef);
        fib_free(scratch);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory for column sums",
                         (int)group);
    }
    fib_color_order(own->color, n_out, k, rows, start);
    const fib_kernels *kernels = fib_kernels_active();
    size_t esize = fib_dtype_size(d->dtype);
    FIB_PRAGMA(omp parallel for num_threads(threads) schedule(static) if (threads > 1))
    for (int64_t t = 0; t < n_tiles; t++) {
        int64_t c0 = (t / n_col_tiles) * OPF_CLASSES;
        int64_t col0 = (t % n_col_tiles) * OPF_COLUMNS;
        int64_t c1 = c0 + OPF_CLASSES < k ? c0 + OPF_CLASSES : k;
        int64_t cols = n_cols - col0 < OPF_COLUMNS ? n_cols - col0 : OPF_COLUMNS;
        double *sum = scratch + tile_len * fib_thread_num();
        double *abs_sum = sum + OPF_CLASSES * OPF_COLUMNS;
        for (int64_t c = c0; c < c1; c++) {
            double *cs = sum + (c - c0) * OPF_COLUMNS, *ca = abs_sum + (c - c0) * OPF_COLUMNS;
            const int64_t *members = rows + start[c];
            int64_t size = start[c + 1] - start[c];
            /* the next class's rows (the tile's first class at the next
             * columns after its last) are elsewhere in the matrix: ask for
             * their pieces now (tests/bench/bench_pipeline: the opfiber
             * pass; figures in docs/performance.md) */
            int64_t next = c + 1 < c1 ? c + 1 : c0;
            int64_t next_col = c + 1 < c1 ? col0 : col0 + OPF_COLUMNS;
            int64_t next_cols = n_cols - next_col < OPF_COLUMNS ? n_cols - next_col : OPF_COLUMNS;
            for (int64_t x = start[next]; next_cols > 0 && x < start[next + 1]; x++)
                fib_prefetch_range((const char *)d->weights +
                                       (size_t)(rows[x] * d->ld + next_col) * esize,
                                   (size_t)next_cols * esize);
            fib_row_sums_stored(kernels, d->dtype,
                                (const char *)d->weights + (size_t)col0 * esize, d->ld,
                                members, size, cols, cs, ca);
        }
        for (int64_t i = 0; i < cols; i++) {
            double *value = sig->value + (col0 + i) * sig->n_coords + offset;
            double *tol = sig->tol + (col0 + i) * sig->n_coords + offset;
            for (int64_t c = c0; c < c1; c++) {
                value[c] = sum[(c - c0) * OPF_COLUMNS + i];
                tol[c] = coef[c] * abs_sum[(c - c0) * OPF_COLUMNS + i];
            }
        }
    }
    fib_free(rows);
    fib_free(start);
    fib_free(coef);
    fib_free(scratch);
    return FIB_OK;
}

/* Column sums over the consumer's classes. Stored transposed, a column of
 * the block is a stored row: its sums over the block's classes are the
 * stored rows' colour sums (fib_color_rows). */
static int32_t dense_opfiber_fill(const fib_graph *g, int32_t group,
                                  int32_t source_index,
                                  const fib_partition *parts,
                                  const fib_partition *fibers,
                                  fib_signature *sig, int64_t offset)
{
    (void)source_index, (void)fibers;
    const fib_dense *d = dense_of(g, group);
    const fib_partition *own = &parts[group];
    int64_t n_out = g->groups[group].n_units;
    if (!d->transposed)
        return class_sums_by_column(d, n_out, d->n_in, own, sig, offset, group);
    double *coef = NULL;
    int32_t status = fib_color_coefficients(own, d->dtype, &coef);
    if (!status)
        status = fib_color_rows(sig, 0, offset, d->dtype, d->weights, d->ld, d->n_in, n_out,
                                own->color, own->n_classes, coef, group);
    fib_free(coef);
    return status;
}

/* ---- forward, compress, lift ------------------------------------------- */

/* The fiber signature over a discrete source (every column its own class,
 * in column order): its colour sums are its weights, so the signature
 * borrows the rows and only the bias coordinate is materialised. */
static bool dense_fiber_view(const fib_graph *g, int32_t group,
                             const fib_partition *parts, fib_scratch *scratch,
                             fib_signature *sig)
{
    const fib_group *grp = &g->groups[group];
    const fib_dense *d = grp->block;
    const fib_partition *src = &parts[grp->sources[0]];
    if (src->n_classes != src->n_units || src->n_units != d->n_in)
        return false;
    for (int64_t k = 0; k < src->n_units; k++)
        if (src->color[k] != k)
            return false;
    int32_t status = fib_signature_alloc_in(sig, grp->n_units, d->bias ? 1 : 0, scratch);
    if (status)
        return false;
    sig->n_coords += d->n_in;
    sig->n_direct = d->n_in;
    sig->n_blocks = 1;
    sig->blocks[0] = d->transposed ? (fib_direct_block){d->weights, d->dtype, 1, d->ld, d->n_in, 0}
                                   : (fib_direct_block){d->weights, d->dtype, d->ld, 1, d->n_in, 0};
    for (int64_t i = 0; d->bias && i < grp->n_units; i++) {
        sig->value[i] = fib_dense_bias(d, i);
        sig->tol[i] = fib_rounding_tol(d->dtype, 1, fabs(sig->value[i]));
    }
    return true;
}

/* The contribution to its source's opfiber signature when the block's own
 * classes are discrete (every row its own class, in row order): the column
 * sums are the weight columns, lent in place. */
static bool dense_opfiber_view(const fib_graph *g, int32_t group,
                               const fib_partition *parts, fib_direct_block *out)
{
    const fib_group *grp = &g->groups[group];
    const fib_dense *d = grp->block;
    const fib_partition *own = &parts[group];
    if (own->n_classes != own->n_units || d->n_in != g->groups[grp->sources[0]].n_units)
        return false;
    for (int64_t r = 0; r < own->n_units; r++)
        if (own->color[r] != r)
            return false;
    *out = d->transposed ? (fib_direct_block){d->weights, d->dtype, d->ld, 1, own->n_units, 0}
                         : (fib_direct_block){d->weights, d->dtype, 1, d->ld, own->n_units, 0};
    return true;
}

static void dense_forward(const fib_graph *g, int32_t group, int64_t batch,
                          double *const *activity, double *out)
{
    const fib_dense *d = dense_of(g, group);
    const double *x = activity[g->groups[group].sources[0]];
    int64_t n_out = g->groups[group].n_units;
    int64_t rows = batch * fib_group_positions(&g->groups[group]);
    for (int64_t b = 0; b < rows && d->transposed; b++) {
        /* stored row k adds input k to every unit: each unit's sum still
         * runs over ascending k from its bias */
        const double *xb = x + b * d->n_in;
        double *z = out + b * n_out;
        for (int64_t i = 0; i < n_out; i++)
            z[i] = fib_dense_bias(d, i);
        for (int64_t k = 0; k < d->n_in; k++)
            for (int64_t i = 0; i < n_out; i++)
                z[i] += fib_load(d->dtype, d->weights, k * d->ld + i) * xb[k];
    }
    for (int64_t b = 0; b < rows && !d->transposed; b++) {
        const double *xb = x + b * d->n_in;
        for (int64_t i = 0; i < n_out; i++) {
            double z = fib_dense_bias(d, i);
            if (fib_dtype_is_half(d->dtype)) {
                for (int64_t k = 0; k < d->n_in; k++)
                    z += fib_dense_weight(d, i, k) * xb[k];
            } else if (d->dtype == FIB_DTYPE_F32) {
                const float *row = (const float *)d->weights + i * d->ld;
                for (int64_t k = 0; k < d->n_in; k++)
                    z += (double)row[k] * xb[k];
            } else {
                const double *row = (const double *)d->weights + i * d->ld;
                for (int64_t k = 0; k < d->n_in; k++)
                    z += row[k] * xb[k];
            }
            out[b * n_out + i] = z;
        }
    }
}

/* True when every column of the dense block is its own source class, in
 * column order (its colour sums are its weights). */
static bool source_discrete(const fib_partition *src, int64_t n_in)
{
    return src->n_units == n_in && fib_partition_is_discrete(src);
}

/* Eq. 10 merging. Base weight (c, c') is the mean over the members i of
 * output class c of their colour sums over source class c' (the kernels'
 * sums: ascending columns from 0.0); the members' sums are added in
 * ascending row order from 0.0, then multiplied by 1 / |c|. A chunk of rows
 * has its colour sums computed a tile per thread, then added into the class
 * rows in row order, column ranges spread over threads: every base weight
 * is made by one thread in the same order, so the bits depend on neither the
 * thread count nor the SIMD level. Over a discrete source the colour sums
 * are the weights themselves (the same bits), read in place. */
/* The end of Eq. 10 for a dense group: sums (k_out x k_in) holds the
 * members' colour sums added per class; w[c][k] = sums[c][k] / |c| (w may
 * be sums itself; w is taken over), the biases averaged likewise, and the
 * base block added. The rows are shared over threads: w is often fresh
 * memory, and faulting its pages in on one thread kept compress from
 * speeding up with threads (docs/performance.md). */
static int32_t merge_finish(const fib_graph *g, int32_t group, const fib_partition *out_p,
                           int64_t k_in, const double *sums, double *w, fib_graph *base,
                           const int32_t *base_ids)
{
    const fib_dense *d = dense_of(g, group);
    int64_t k_out = out_p->n_classes;
    double *b = d->bias ? fib_calloc(k_out, sizeof *b) : NULL;
    int64_t *sizes = fib_alloc(k_out, sizeof *sizes);
    if ((d->bias && !b) || !sizes) {
        fib_free(w);
        fib_free(b);
        fib_free(sizes);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory merging", (int)group);
    }
    fib_partition_class_sizes(out_p, sizes);
    for (int64_t i = 0; b && i < out_p->n_units; i++)
        b[out_p->color[i]] += fib_dense_bias(d, i);
    int threads = fib_thread_count(0, (k_out * k_in) >> 17);
    (void)threads; /* unused without OpenMP */
    FIB_PRAGMA(omp parallel for num_threads(threads) schedule(static) if (threads > 1))
    for (int64_t c = 0; c < k_out; c++) {
        double inv = 1.0 / (double)sizes[c];
        for (int64_t k = 0; k < k_in; k++)
            w[c * k_in + k] = sums[c * k_in + k] * inv;
    }
    for (int64_t c = 0; b && c < k_out; c++)
        b[c] *= 1.0 / (double)sizes[c];
    fib_free(sizes);
    int32_t id;
    return fib_graph_add_dense_owned(base, base_ids[g->groups[group].sources[0]], k_out, w, b,
                                     &id);
}

/* Eq. 10 for a block stored transposed: one pass over the stored rows
 * (ascending source units), each adding into its source class's column of
 * the class rows. The base block is ordinary (rows per unit): bases are
 * made, narrowed and refitted in that layout. */
static int32_t compress_transposed(const fib_graph *g, int32_t group,
                                   const fib_partition *parts, fib_graph *base,
                                   const int32_t *base_ids)
{
    const fib_dense *d = dense_of(g, group);
    int32_t source = g->groups[group].sources[0];
    const fib_partition *out_p = &parts[group], *in_p = &parts[source];
    int64_t k_out = out_p->n_classes, k_in = in_p->n_classes;
    int64_t n_out = g->groups[group].n_units;
    if (source_discrete(in_p, d->n_in) && source_discrete(out_p, n_out)) {
        /* nothing merges: a packed copy in the block's own dtype, rows per
         * unit, gathered a tile of stored rows at a time */
        size_t esize = fib_dtype_size(d->dtype);
        char *w = fib_alloc(n_out * d->n_in, esize);
        if (!w)
            return fib_error(FIB_E_NOMEM, "group %d: out of memory merging", (int)group);
        enum { TILE = 64 };
        for (int64_t k0 = 0; k0 < d->n_in; k0 += TILE)
            for (int64_t i = 0; i < n_out; i++)
                for (int64_t k = k0; k < k0 + TILE && k < d->n_in; k++)
                    memcpy(w + (size_t)(i * d->n_in + k) * esize,
                           (const char *)d->weights + (size_t)(k * d->ld + i) * esize, esize);
        int32_t id;
        int32_t status = fib_graph_add_dense(base, base_ids[source], n_out, d->dtype, w,
                                             d->n_in, d->bias, FIB_COPY, &id);
        fib_free(w);
        if (status == FIB_E_NONFINITE && fib_group_find_nonfinite(g, group, "fib_compress"))
            return FIB_E_NONFINITE;
        return status;
    }
    double *w = fib_calloc(k_out * k_in, sizeof *w);
    if (!w)
        return fib_error(FIB_E_NOMEM, "group %d: out of memory merging", (int)group);
    for (int64_t k = 0; k < d->n_in; k++) {
        double *column = w + in_p->color[k];
        for (int64_t i = 0; i < n_out; i++)
            column[out_p->color[i] * k_in] += fib_load(d->dtype, d->weights, k * d->ld + i);
    }
    return merge_finish(g, group, out_p, k_in, w, w, base, base_ids);
}

static int32_t dense_compress(const fib_graph *g, int32_t group,
                              const fib_partition *parts, fib_graph *base,
                              const int32_t *base_ids)
{
    const fib_dense *d = dense_of(g, group);
    if (d->transposed)
        return compress_transposed(g, group, parts, base, base_ids);
    int32_t source = g->groups[group].sources[0];
    const fib_partition *out_p = &parts[group], *in_p = &parts[source];
    int64_t k_out = out_p->n_classes, k_in = in_p->n_classes;
    int64_t n_out = g->groups[group].n_units;
    const fib_kernels *kernels = fib_kernels_active();
    bool discrete = source_discrete(in_p, d->n_in);
    if (discrete && source_discrete(out_p, n_out)) {
        /* nothing merges: Eq. 10 adds one weight to 0.0 and divides by 1,
         * the weight itself, so the base block is a packed copy in the
         * block's own dtype (a float64 one would double a float32 model) */
        int32_t id;
        int32_t status = fib_graph_add_dense(base, base_ids[source], n_out, d->dtype,
                                             d->weights, d->ld, d->bias, FIB_COPY, &id);
        /* a weight changed in borrowed memory: named as fib_compress names it */
        if (status == FIB_E_NONFINITE && fib_group_find_nonfinite(g, group, "fib_compress"))
            return FIB_E_NONFINITE;
        return status;
    }
    int64_t tile = kernels->tile_rows;
    /* rows per chunk: whole tiles, about 4 MB of sums (merging needs no
     * absolute sums: the kernels skip them) */
    int64_t chunk = discrete ? 0 : ((INT64_C(1) << 19) / k_in) / tile * tile;
    if (!discrete && chunk < tile)
        chunk = tile;
    if (chunk > n_out)
        chunk = n_out;
    int threads = fib_thread_count(0, discrete ? 1 : (chunk + tile - 1) / tile);
    double *w = fib_calloc(k_out * k_in, sizeof *w);
    double *sums = discrete ? NULL : fib_alloc(chunk * k_in, sizeof *sums);
    int64_t scratch_len = fib_color_scratch_len_stored(d->dtype, d->n_in, k_in);
    double *scratch = discrete ? NULL : fib_alloc(scratch_len * threads, sizeof *scratch);
    int64_t *perm = discrete ? NULL : fib_alloc(d->n_in, sizeof *perm);
    int64_t *start = discrete ? NULL : fib_alloc(k_in + 1, sizeof *start);
    if (!w || (!discrete && (!sums || !scratch || !perm || !start))) {
        fib_free(w);
        fib_free(sums);
        fib_free(scratch);
        fib_free(perm);
        fib_free(start);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory merging", (int)group);
    }
    if (!discrete)
        fib_color_order(in_p->color, d->n_in, k_in, perm, start);
    /* column ranges of the base for the adds: about 1024 columns each */
    int64_t span = k_in < 1024 ? k_in : 1024;
    int64_t n_spans = (k_in + span - 1) / span;
    int add_threads = fib_thread_count(0, n_spans);
    (void)add_threads; /* unused without OpenMP */
    int64_t step = discrete ? n_out : chunk;
    for (int64_t r0 = 0; r0 < n_out; r0 += step) {
        int64_t rows = n_out - r0 < step ? n_out - r0 : step;
        if (!discrete) {
            int64_t n_tiles = (rows + tile - 1) / tile;
            FIB_PRAGMA(omp parallel for num_threads(threads) schedule(static) if (threads > 1))
            for (int64_t t = 0; t < n_tiles; t++) {
                int64_t row0 = t * tile, n = rows - row0 < tile ? rows - row0 : tile;
                double *own = scratch + scratch_len * fib_thread_num();
                double *val = sums + row0 * k_in;
                fib_color_sums_stored(kernels, d->dtype,
                                       (const char *)d->weights +
                                           (size_t)((r0 + row0) * d->ld) *
                                               fib_dtype_size(d->dtype),
                                       d->ld, n, d->n_in, in_p->color, perm, start, k_in,
                                       own, val, NULL, k_in);
            }
        }
        FIB_PRAGMA(omp parallel for num_threads(add_threads) schedule(static) if (add_threads > 1))
        for (int64_t sp = 0; sp < n_spans; sp++) {
            int64_t j0 = sp * span, j1 = j0 + span < k_in ? j0 + span : k_in;
            for (int64_t r = 0; r < rows; r++) {
                double *row = w + out_p->color[r0 + r] * k_in;
                if (!discrete) {
                    const double *x = sums + r * k_in;
                    for (int64_t j = j0; j < j1; j++)
                        row[j] += x[j];
                } else if (fib_dtype_is_half(d->dtype)) {
                    for (int64_t j = j0; j < j1; j++)
                        row[j] += fib_dense_weight(d, r0 + r, j);
                } else if (d->dtype == FIB_DTYPE_F32) {
                    const float *x = (const float *)d->weights + (r0 + r) * d->ld;
                    for (int64_t j = j0; j < j1; j++)
                        row[j] += (double)x[j];
                } else {
                    const double *x = (const double *)d->weights + (r0 + r) * d->ld;
                    for (int64_t j = j0; j < j1; j++)
                        row[j] += x[j];
                }
            }
        }
    }
    fib_free(sums);
    fib_free(scratch);
    fib_free(perm);
    fib_free(start);
    return merge_finish(g, group, out_p, k_in, w, w, base, base_ids);
}

/* W_hat[c', c] = sum_{i in c'} s_i sum_{k in c} W[i,k] t_k / sum_{i in c'} s_i^2
 * (t: the source's scales), the least-squares representative of the class
 * given its scales; all scales 1 gives Eq. 10. Input and output groups have
 * discrete projections and are never scaled. */

/* Classes per piece of a float32 block: their float64 rows are made, then
 * rounded, a piece at a time. */
#define SCALED_CLASS_PIECE 128

/* Rows [c0, c1) of W_hat (and of its bias) into w and b, from row c0 on:
 * each class's sums over its members in ascending unit order, then divided
 * by the sum of their squared scales. Reads the members' rows, the block's
 * mapped pages going FIB_DENSE_DROP_ROWS units at a time. */
static void scaled_class_rows(const fib_graph *g, int32_t group, const fib_partition *out_p,
                              const fib_partition *in_p, const double *s, const double *t,
                              int64_t c0, int64_t c1, double *w, double *b, double *norm)
{
    const fib_dense *d = g->groups[group].block;
    int64_t k_in = in_p->n_classes, n_out = g->groups[group].n_units;
    memset(w, 0, (size_t)((c1 - c0) * k_in) * sizeof *w);
    memset(norm, 0, (size_t)(c1 - c0) * sizeof *norm);
    if (b)
        memset(b, 0, (size_t)(c1 - c0) * sizeof *b);
    for (int64_t i = 0; i < n_out; i++) {
        int64_t c = out_p->color[i];
        if (c >= c0 && c < c1) {
            double si = s ? s[i] : 1.0;
            double *row = w + (c - c0) * k_in;
            for (int64_t k = 0; k < d->n_in; k++)
                row[in_p->color[k]] += si * fib_dense_weight(d, i, k) * (t ? t[k] : 1.0);
            if (b)
                b[c - c0] += si * fib_dense_bias(d, i);
            norm[c - c0] += si * si;
        }
        if ((i + 1) % FIB_DENSE_DROP_ROWS == 0 || i + 1 == n_out)
            fib_dense_drop_rows(g, d, i - i % FIB_DENSE_DROP_ROWS, i + 1);
    }
    for (int64_t c = 0; c < c1 - c0; c++) {
        double inv = 1.0 / norm[c];
        for (int64_t k = 0; k < k_in; k++)
            w[c * k_in + k] *= inv;
        if (b)
            b[c] *= inv;
    }
}

/* A float32 base's block: made SCALED_CLASS_PIECE classes at a time in
 * float64 and rounded, so that the float64 block is never held whole; each
 * value is the one fib_narrow_block rounds. */
static int32_t dense_compress_scaled_f32(const fib_graph *g, int32_t group,
                                         const fib_partition *out_p, const fib_partition *in_p,
                                         const double *s, const double *t, fib_graph *base,
                                         int32_t base_source)
{
    const fib_dense *d = g->groups[group].block;
    int64_t k_out = out_p->n_classes, k_in = in_p->n_classes;
    int64_t piece = k_out < SCALED_CLASS_PIECE ? k_out : SCALED_CLASS_PIECE;
    float *wf = fib_alloc(k_out * k_in, sizeof *wf);
    float *bf = d->bias ? fib_alloc(k_out, sizeof *bf) : NULL;
    double *w = fib_alloc(piece * k_in, sizeof *w);
    double *b = d->bias ? fib_alloc(piece, sizeof *b) : NULL;
    double *norm = fib_alloc(piece, sizeof *norm);
    int32_t status = FIB_OK;
    if (!wf || (d->bias && (!bf || !b)) || !w || !norm)
        status = fib_error(FIB_E_NOMEM, "group %d: out of memory merging", (int)group);
    for (int64_t c0 = 0; c0 < k_out && !status; c0 += piece) {
        int64_t c1 = k_out - c0 < piece ? k_out : c0 + piece;
        scaled_class_rows(g, group, out_p, in_p, s, t, c0, c1, w, b, norm);
        status = fib_narrow_values(w, (c1 - c0) * k_in, wf + c0 * k_in, c0 * k_in, group,
                                   "weight");
        if (!status && b)
            status = fib_narrow_values(b, c1 - c0, bf + c0, c0, group, "bias");
    }
    fib_free(w);
    fib_free(b);
    fib_free(norm);
    if (status) {
        fib_free(wf);
        fib_free(bf);
        return status;
    }
    int32_t id;
    return fib_graph_add_dense_owned_f32(base, base_source, k_out, wf, bf, &id);
}

static int32_t dense_compress_scaled(const fib_graph *g, int32_t group,
                                     const fib_partition *parts, double *const *scales,
                                     int32_t dtype, fib_graph *base, const int32_t *base_ids)
{
    const fib_dense *d = g->groups[group].block;
    int32_t source = g->groups[group].sources[0];
    const fib_partition *out_p = &parts[group], *in_p = &parts[source];
    bool own_scaled = !fib_group_is_input(g, group) && !fib_group_is_output(g, group);
    const double *s = own_scaled ? scales[group] : NULL;
    const double *t = fib_group_is_input(g, source) ? NULL : scales[source];
    int64_t k_out = out_p->n_classes, k_in = in_p->n_classes;
    if (dtype == FIB_DTYPE_F32)
        return dense_compress_scaled_f32(g, group, out_p, in_p, s, t, base, base_ids[source]);
    double *w = fib_alloc(k_out * k_in, sizeof *w);
    double *b = d->bias ? fib_alloc(k_out, sizeof *b) : NULL;
    double *norm = fib_alloc(k_out, sizeof *norm);
    if (!w || (d->bias && !b) || !norm) {
        fib_free(w);
        fib_free(b);
        fib_free(norm);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory merging", (int)group);
    }
    scaled_class_rows(g, group, out_p, in_p, s, t, 0, k_out, w, b, norm);
    fib_free(norm);
    int32_t id;
    return fib_graph_add_dense_owned(base, base_ids[source], k_out, w, b, &id);
}

static int32_t dense_compress_totals(const fib_graph *g, int32_t group,
                                  const fib_partition *parts, const double *totals,
                                  fib_graph *base, const int32_t *base_ids)
{
    const fib_partition *out_p = &parts[group];
    int64_t k_in = parts[g->groups[group].sources[0]].n_classes;
    double *w = fib_alloc(out_p->n_classes * k_in, sizeof *w);
    if (!w)
        return fib_error(FIB_E_NOMEM, "group %d: out of memory merging", (int)group);
    return merge_finish(g, group, out_p, k_in, totals, w, base, base_ids);
}

static int32_t dense_lift(const fib_graph *base, int32_t group,
                          const fib_partition *parts, fib_graph *full,
                          const int32_t *full_ids)
{
    const fib_dense *bd = dense_of(base, group);
    int32_t source = base->groups[group].sources[0];
    const fib_partition *out_p = &parts[group], *in_p = &parts[source];
    int64_t n_out = out_p->n_units, n_in = in_p->n_units;
    double *w = fib_alloc(n_out * n_in, sizeof *w);
    double *b = bd->bias ? fib_alloc(n_out, sizeof *b) : NULL;
    int64_t *sizes = fib_alloc(in_p->n_classes, sizeof *sizes);
    if (!w || (bd->bias && !b) || !sizes) {
        fib_free(w);
        fib_free(b);
        fib_free(sizes);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory lifting", (int)group);
    }
    fib_partition_class_sizes(in_p, sizes);
    for (int64_t i = 0; i < n_out; i++) {
        int64_t c = out_p->color[i];
        for (int64_t k = 0; k < n_in; k++) {
            int64_t ck = in_p->color[k];
            w[i * n_in + k] = fib_dense_weight(bd, c, ck) / (double)sizes[ck];
        }
        if (b)
            b[i] = fib_dense_bias(bd, c);
    }
    fib_free(sizes);
    int32_t id;
    return fib_graph_add_dense_owned(full, full_ids[source], n_out, w, b, &id);
}

static bool dense_has_bias(const fib_graph *g, int32_t group)
{
    return dense_of(g, group)->bias != NULL;
}

static int64_t dense_num_parameters(const fib_graph *g, int32_t group)
{
    const fib_dense *d = dense_of(g, group);
    int64_t n_out = g->groups[group].n_units;
    return n_out * d->n_in + (d->bias ? n_out : 0);
}

static bool dense_tensor(const fib_graph *g, int32_t group, int32_t index,
                         fib_tensor_view *out)
{
    const fib_dense *d = dense_of(g, group);
    int64_t n_out = g->groups[group].n_units;
    if (index == 0 && d->transposed)
        *out = (fib_tensor_view){"weight", d->dtype, d->weights, 2, {n_out, d->n_in, 1, 1}, 1,
                                 d->ld};
    else if (index == 0)
        *out = (fib_tensor_view){"weight", d->dtype, d->weights, 2, {n_out, d->n_in, 1, 1}, d->ld, 0};
    else if (index == 1 && d->bias)
        *out = (fib_tensor_view){"bias", d->dtype, d->bias, 1, {n_out, 1, 1, 1}, 1, 0};
    else
        return false;
    return true;
}

static const fib_dense *dense_matrix(const fib_graph *g, int32_t group)
{
    return dense_of(g, group);
}

/* ---- budgets ------------------------------------------------------------ */

/* The source unit row `row` copies (its only nonzero weight, exactly 1),
 * -1 for a zero row, -2 when the row is not a copy. */
static int64_t copied_unit(const fib_dense *d, int64_t row)
{
    int64_t found = -1;
    for (int64_t k = 0; k < d->n_in; k++) {
        double w = fib_dense_weight(d, row, k);
        if (w == 0)
            continue;
        if (w != 1 || found >= 0)
            return -2;
        found = k;
    }
    return found;
}

/* A block without bias whose rows copy one source unit or are 0 is a
 * selection (how concatenations, splits and permutations of units are
 * held): its classes come from its source's, never from a clustering. */
static int32_t dense_budget_role(const fib_graph *g, int32_t group)
{
    const fib_dense *d = dense_of(g, group);
    if (d->bias)
        return FIB_BUDGET_CLUSTERED;
    for (int64_t i = 0; i < g->groups[group].n_units; i++)
        if (copied_unit(d, i) == -2)
            return FIB_BUDGET_CLUSTERED;
    return FIB_BUDGET_SELECTS;
}

static int64_t dense_budget_selected(const fib_graph *g, int32_t group, int64_t unit)
{
    int64_t k = copied_unit(dense_of(g, group), unit);
    return k >= 0 ? k : -1;
}

static int64_t dense_budget_parameters(const fib_graph *g, int32_t group, const int64_t *width)
{
    int64_t out = width[group];
    return out * width[g->groups[group].sources[0]] + (dense_of(g, group)->bias ? out : 0);
}

static void dense_budget_backward(const fib_graph *g, int32_t group, int32_t source_index,
                                  const double *energy, double *src_energy)
{
    (void)source_index;
    const fib_dense *d = dense_of(g, group);
    for (int64_t i = 0; i < g->groups[group].n_units; i++)
        for (int64_t k = 0; k < d->n_in; k++) {
            double w = fib_dense_weight(d, i, k);
            src_energy[k] += w * w * energy[i];
        }
}

/* A unit whose incoming weights are zero outputs its bias. */
static double dense_budget_constant(const fib_graph *g, int32_t group, int64_t unit,
                                    const double *source_values)
{
    (void)source_values;
    return fib_dense_bias(dense_of(g, group), unit);
}

static bool dense_budget_absorbs(const fib_graph *g, int32_t group, int32_t source_index,
                                 double value)
{
    (void)source_index;
    return value == 0 || dense_of(g, group)->bias != NULL;
}

static int32_t dense_budget_absorb(fib_graph *g, int32_t group, int32_t source_index,
                                   const double *values)
{
    (void)source_index;
    fib_dense *d = g->groups[group].block;
    bool moves = false;
    for (int64_t k = 0; k < d->n_in; k++)
        moves |= !isnan(values[k]) && values[k] != 0;
    if (!d->owned_weights || (moves && !d->owned_bias))
        return fib_error(FIB_E_UNSUPPORTED, "group %d: a dense block that borrows its "
                         "weights cannot take a removed unit's constant", (int)group);
    for (int64_t i = 0; i < g->groups[group].n_units; i++) {
        double shift = 0;
        for (int64_t k = 0; k < d->n_in; k++) {
            if (isnan(values[k]))
                continue;
            int64_t at = d->transposed ? k * d->ld + i : i * d->ld + k;
            shift += values[k] * fib_load(d->dtype, d->owned_weights, at);
            fib_store(d->dtype, d->owned_weights, at, 0.0);
        }
        if (shift != 0)
            fib_store(d->dtype, d->owned_bias, i, fib_dense_bias(d, i) + shift);
    }
    return FIB_OK;
}

/* mean = W mu + b; standard deviation sum |W| sd, the largest the inputs'
 * correlations can make it (a trained layer's inputs are correlated:
 * taken independent, sum W^2 var, the spread comes out far below the
 * data's, and live units look dead). */
static bool dense_budget_moments(const fib_graph *g, int32_t group, const double *const *mean,
                                 const double *const *var, double *pre_mean, double *pre_var)
{
    const fib_dense *d = dense_of(g, group);
    for (int64_t i = 0; i < g->groups[group].n_units; i++) {
        double m = 0, v = 0;
        for (int64_t k = 0; k < d->n_in; k++) {
            double w = fib_dense_weight(d, i, k);
            m += w * mean[0][k];
            v += fabs(w) * sqrt(var[0][k]);
        }
        pre_mean[i] = m + fib_dense_bias(d, i);
        pre_var[i] = v * v;
    }
    return true;
}

static const char *const dense_tensor_keys[] = {"weight", "bias", NULL};

static int32_t dense_build(fib_graph *g, const fib_block_source *S, int32_t *id)
{
    int64_t n_in = fib_source_group(g, S, 0)->n_units;
    int32_t st = fib_source_no_extras(S, false, false, dense_tensor_keys);
    fib_source_tensors s;
    if (st == FIB_OK)
        st = fib_source_weight_bias(S, 2, (int64_t[]){S->units, n_in}, &s);
    if (st != FIB_OK)
        return st;
    st = fib_graph_add_dense(g, S->sources[0], S->units, s.dtype, s.data[0], n_in, s.data[1],
                             s.flags, id);
    fib_source_tensors_free(&s);
    return fib_source_done(S, st);
}

const fib_block_ops fib_dense_ops = {
    .tensor = dense_tensor,
    .name = "dense",
    .build = dense_build,
    .free_block = dense_free,
    .fiber_width = dense_fiber_width,
    .fiber_fill = dense_fiber_fill,
    .opfiber_width = fib_per_class_opfiber_width,
    .opfiber_fill = dense_opfiber_fill,
    .fiber_view = dense_fiber_view,
    .opfiber_view = dense_opfiber_view,
    .forward = dense_forward,
    .compress = dense_compress,
    .lift = dense_lift,
    .compress_scaled = dense_compress_scaled,
    .compress_totals = dense_compress_totals,
    .has_bias = dense_has_bias,
    .num_parameters = dense_num_parameters,
    .matrix = dense_matrix,
    .budget_role = dense_budget_role,
    .budget_parameters = dense_budget_parameters,
    .budget_backward = dense_budget_backward,
    .budget_selected = dense_budget_selected,
    .budget_constant = dense_budget_constant,
    .budget_absorbs = dense_budget_absorbs,
    .budget_absorb = dense_budget_absorb,
    .budget_moments = dense_budget_moments,
};
