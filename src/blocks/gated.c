/* Gated recurrent blocks: LSTM (gates i, f, g, o) and GRU (gates r, z, n),
 * PyTorch semantics, one direction, zero initial state.
 *
 * A unit j is the tuple of its gates (rows q * H + j of both weight
 * matrices, for every gate q) with its cell and hidden state. Its fiber
 * signature holds, for every gate, the colour sums of its w_ih row over the
 * source's classes and of its w_hh row over the group's OWN current classes,
 * and the biases that matter (LSTM: b_ih + b_hh per gate; GRU: the sum for
 * r and z, b_in and b_hn apart because b_hn is multiplied by r). Because of
 * w_hh the group reads itself: color/color.c refines it from one class to the
 * fixed point, the coarsest balanced partition. Units of one class then
 * have identical h_t and c_t at every step (induction over t, zero initial
 * state), so merging a class (Eq. 10, gate by gate) is exact.
 *
 * Opfibers: a unit's error comes from the consumers of the group (handled by
 * color/fiber_signatures.c), and, through the recurrence, from every gate of
 * every unit at the next step: the recurrent contribution (source_index -1)
 * is the fiber class (gates are non-linear: the flavour) and, per gate, the
 * column sums of w_hh over the group's own current opfiber classes. The
 * group's contribution to its source is, per gate, the column sums of w_ih
 * over the group's opfiber classes. */
#include "blocks/blocks.h"

#include <math.h>
#include <string.h>

typedef struct fib_gated {
    int32_t op;      /* FIB_OP_LSTM or FIB_OP_GRU */
    int32_t n_gates; /* 4 or 3 */
    int32_t dtype;
    int64_t n_in;
    const void *w_ih; /* n_gates H x n_in, packed */
    const void *w_hh; /* n_gates H x H, packed */
    const void *b_ih; /* n_gates H or NULL */
    const void *b_hh; /* n_gates H or NULL */
    void *owned[4];
} fib_gated;


static const fib_gated *gated_of(const fib_graph *g, int32_t group)
{
    return (const fib_gated *)g->groups[group].block;
}

static double w_ih(const fib_gated *d, int64_t row, int64_t col)
{
    return fib_load(d->dtype, d->w_ih, row * d->n_in + col);
}

static double w_hh(const fib_gated *d, int64_t hidden, int64_t row, int64_t col)
{
    return fib_load(d->dtype, d->w_hh, row * hidden + col);
}

static double b_ih(const fib_gated *d, int64_t row)
{
    return fib_load_or(d->dtype, d->b_ih, row, 0.0);
}

static double b_hh(const fib_gated *d, int64_t row)
{
    return fib_load_or(d->dtype, d->b_hh, row, 0.0);
}

static void gated_free(void *block)
{
    fib_gated *d = block;
    if (!d)
        return;
    for (int x = 0; x < 4; x++)
        fib_free(d->owned[x]);
    fib_free(d);
}

/* ---- building ----------------------------------------------------------- */

static int32_t push_gated(fib_graph *g, int32_t source, int64_t hidden,
                          fib_gated *d, int32_t *group_out)
{
    fib_group grp = {.op = d->op, .n_units = hidden,
                     .activation = FIB_ACT_LINEAR, .n_sources = 1,
                     .sources = {source, 0},
                     .ops = d->op == FIB_OP_LSTM ? &fib_lstm_ops : &fib_gru_ops,
                     .block = d};
    int32_t status = fib_graph_push_group(g, &grp, group_out);
    if (status)
        gated_free(d);
    return status;
}

/* Names the first non-finite entry of a packed rows x cols tensor. */
static int32_t check_finite(const char *fn, const char *kind, int32_t group,
                            const char *tensor, int32_t dtype, const void *x,
                            int64_t rows, int64_t cols)
{
    if (!x)
        return FIB_OK;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            double v = fib_load(dtype, x, r * cols + c);
            if (!isfinite(v)) {
                if (cols == 1)
                    return fib_error(FIB_E_NONFINITE, "%s: %s block of group %d: %s[%lld] is %s",
                                     fn, kind, (int)group, tensor, (long long)r,
                                     isnan(v) ? "NaN" : "infinite");
                return fib_error(FIB_E_NONFINITE,
                                 "%s: %s block of group %d: %s at row %lld, column %lld is %s",
                                 fn, kind, (int)group, tensor, (long long)r, (long long)c,
                                 isnan(v) ? "NaN" : "infinite");
            }
        }
    return FIB_OK;
}

static int32_t add_gated(fib_graph *g, int32_t op, int32_t source,
                         int64_t hidden, int32_t dtype, const void *wi,
                         const void *wh, const void *bi, const void *bh,
                         uint32_t flags, int32_t *group_out)
{
    const char *fn = op == FIB_OP_LSTM ? "fib_graph_add_lstm" : "fib_graph_add_gru";
    const char *kind = op == FIB_OP_LSTM ? "LSTM" : "GRU";
    int64_t n_gates = op == FIB_OP_LSTM ? 4 : 3;
    int32_t status = fib_graph_check_group(g, source, fn);
    if (status)
        return status;
    if (!wi || !wh || !group_out)
        return fib_error(FIB_E_NULL, "%s: %s is NULL", fn,
                         !wi ? "w_ih" : !wh ? "w_hh" : "group_out");
    int32_t group = g->n_groups;
    size_t esize;
    status = fib_check_dtype_and_flags(fn, group, dtype, flags, &esize);
    if (status)
        return status;
    if (hidden < 1)
        return fib_error(FIB_E_SHAPE, "%s: group %d: hidden size %lld must be at least 1",
                         fn, (int)group, (long long)hidden);
    const fib_group *src = &g->groups[source];
    if (src->cols != 1)
        return fib_error(FIB_E_SHAPE,
                         "%s: group %d: source group %d is not a sequence (%lld x %lld positions; "
                         "a sequence has cols = 1)",
                         fn, (int)group, (int)source, (long long)src->rows, (long long)src->cols);
    int64_t n_in = src->n_units, rows, in_cells, hh_cells, width;
    size_t bytes;
    if (hidden > FIB_MAX_UNITS || !fib_mul_i64(n_gates, hidden, &rows) ||
        !fib_mul_i64(rows, n_in, &in_cells) || !fib_mul_i64(rows, hidden, &hh_cells) ||
        !fib_bytes(in_cells, esize, &bytes) || !fib_bytes(hh_cells, esize, &bytes) ||
        !fib_mul_i64(hidden, src->rows, &width) || width > FIB_MAX_UNITS)
        return fib_error(FIB_E_OVERFLOW, "%s: group %d: hidden size %lld overflows", fn,
                         (int)group, (long long)hidden);
    status = check_finite(fn, kind, group, "w_ih", dtype, wi, rows, n_in);
    if (!status)
        status = check_finite(fn, kind, group, "w_hh", dtype, wh, rows, hidden);
    if (!status)
        status = check_finite(fn, kind, group, "b_ih", dtype, bi, rows, 1);
    if (!status)
        status = check_finite(fn, kind, group, "b_hh", dtype, bh, rows, 1);
    if (status)
        return status;

    fib_gated *d = fib_calloc(1, sizeof *d);
    if (!d)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    *d = (fib_gated){.op = op, .n_gates = (int32_t)n_gates, .dtype = dtype, .n_in = n_in,
                     .w_ih = wi, .w_hh = wh, .b_ih = bi, .b_hh = bh};
    if (flags & FIB_COPY) {
        const void *from[4] = {wi, wh, bi, bh};
        const int64_t count[4] = {in_cells, hh_cells, rows, rows};
        for (int x = 0; x < 4; x++) {
            if (!from[x])
                continue;
            d->owned[x] = fib_alloc(count[x], esize);
            if (!d->owned[x]) {
                gated_free(d);
                return fib_error(FIB_E_NOMEM, "%s: group %d: out of memory copying weights",
                                 fn, (int)group);
            }
            memcpy(d->owned[x], from[x], (size_t)count[x] * esize);
        }
        d->w_ih = d->owned[0];
        d->w_hh = d->owned[1];
        d->b_ih = d->owned[2];
        d->b_hh = d->owned[3];
    }
    return push_gated(g, source, hidden, d, group_out);
}

int32_t fib_graph_add_lstm(fib_graph *g, int32_t source, int64_t hidden,
                           int32_t dtype, const void *wi, const void *wh,
                           const void *bi, const void *bh, uint32_t flags,
                           int32_t *group_out)
{
    return add_gated(g, FIB_OP_LSTM, source, hidden, dtype, wi, wh, bi, bh, flags,
                     group_out);
}

int32_t fib_graph_add_gru(fib_graph *g, int32_t source, int64_t hidden,
                          int32_t dtype, const void *wi, const void *wh,
                          const void *bi, const void *bh, uint32_t flags,
                          int32_t *group_out)
{
    return add_gated(g, FIB_OP_GRU, source, hidden, dtype, wi, wh, bi, bh, flags,
                     group_out);
}

static const char *const gated_tensor_keys[] = {"weight_ih", "weight_hh", "bias_ih",
                                                "bias_hh", NULL};

static int32_t gated_build(fib_graph *g, const fib_block_source *S, int32_t *id)
{
    int64_t gates = S->op == FIB_OP_LSTM ? 4 : 3, rows;
    int64_t n_in = fib_source_group(g, S, 0)->n_units;
    if (!fib_mul_i64(gates, S->units, &rows))
        return fib_source_error(S, "'units' is too large");
    int32_t st = fib_source_no_extras(S, false, false, gated_tensor_keys);
    fib_stored_tensor t[4] = {{0}};
    if (st == FIB_OK)
        st = fib_source_tensor(S, "weight_ih", true, 2, (int64_t[]){rows, n_in}, &t[0]);
    if (st == FIB_OK)
        st = fib_source_tensor(S, "weight_hh", true, 2, (int64_t[]){rows, S->units}, &t[1]);
    if (st == FIB_OK)
        st = fib_source_vector(S, "bias_ih", false, rows, &t[2]);
    if (st == FIB_OK)
        st = fib_source_vector(S, "bias_hh", false, rows, &t[3]);
    fib_source_tensors s;
    if (st == FIB_OK)
        st = fib_source_tensors_make(S, t, 4, &s);
    if (st != FIB_OK)
        return st;
    if (S->op == FIB_OP_LSTM)
        st = fib_graph_add_lstm(g, S->sources[0], S->units, s.dtype,
                                s.data[0], s.data[1], s.data[2], s.data[3],
                                s.flags, id);
    else
        st = fib_graph_add_gru(g, S->sources[0], S->units, s.dtype,
                               s.data[0], s.data[1], s.data[2], s.data[3],
                               s.flags, id);
    fib_source_tensors_free(&s);
    return fib_source_done(S, st);
}

/* A block of float64 arrays taken over (freed on failure too). */
static int32_t add_gated_owned(fib_graph *g, int32_t op, int32_t source,
                               int64_t hidden, double *wi, double *wh,
                               double *bi, double *bh)
{
    fib_gated *d = fib_calloc(1, sizeof *d);
    if (!d) {
        fib_free(wi);
        fib_free(wh);
        fib_free(bi);
        fib_free(bh);
        return fib_error(FIB_E_NOMEM, "out of memory adding a gated block");
    }
    *d = (fib_gated){.op = op, .n_gates = op == FIB_OP_LSTM ? 4 : 3,
                     .dtype = FIB_DTYPE_F64, .n_in = g->groups[source].n_units,
                     .w_ih = wi, .w_hh = wh, .b_ih = bi, .b_hh = bh,
                     .owned = {wi, wh, bi, bh}};
    int32_t id;
    return push_gated(g, source, hidden, d, &id);
}

/* ---- fibers ------------------------------------------------------------- */

/* Bias coordinates: one per gate, and one more for the GRU's b_hn. */
static int64_t bias_coords(const fib_gated *d)
{
    return d->n_gates + (d->op == FIB_OP_GRU ? 1 : 0);
}

static int64_t gated_fiber_width(const fib_graph *g, int32_t group,
                                 const fib_partition *parts)
{
    const fib_gated *d = gated_of(g, group);
    int64_t ks = parts[g->groups[group].sources[0]].n_classes;
    int64_t k = parts[group].n_classes;
    return d->n_gates * (ks + k) + bias_coords(d);
}

/* Each gate's rows of w_ih (over the source's classes) and of w_hh (over
 * the group's own classes) are colour sums (fib_color_rows) at their
 * places in the unit's signature; then the biases. */
static int32_t gated_fiber_fill(const fib_graph *g, int32_t group,
                                const fib_partition *parts, fib_signature *sig,
                                int64_t offset)
{
    const fib_gated *d = gated_of(g, group);
    const fib_partition *src = &parts[g->groups[group].sources[0]];
    const fib_partition *own = &parts[group];
    int64_t ks = src->n_classes, k = own->n_classes, h = own->n_units;
    int64_t stride = ks + k;
    double *coef_s = NULL, *coef_o = NULL;
    int32_t status = fib_color_coefficients(src, d->dtype, &coef_s);
    if (!status)
        status = fib_color_coefficients(own, d->dtype, &coef_o);
    size_t esize = fib_dtype_size(d->dtype);
    for (int64_t q = 0; !status && q < d->n_gates; q++) {
        status = fib_color_rows(sig, 0, offset + q * stride, d->dtype,
                                 (const char *)d->w_ih + (size_t)(q * h * d->n_in) * esize,
                                 d->n_in, h, d->n_in, src->color, ks, coef_s, group);
        if (!status)
            status = fib_color_rows(sig, 0, offset + q * stride + ks, d->dtype,
                                     (const char *)d->w_hh + (size_t)(q * h * h) * esize,
                                     h, h, h, own->color, k, coef_o, group);
    }
    fib_free(coef_s);
    fib_free(coef_o);
    for (int64_t j = 0; !status && j < h; j++) {
        double *vb = sig->value + j * sig->n_coords + offset + d->n_gates * stride;
        double *tb = sig->tol + j * sig->n_coords + offset + d->n_gates * stride;
        for (int64_t q = 0; q < d->n_gates; q++) {
            int64_t row = q * h + j;
            bool apart = d->op == FIB_OP_GRU && q == 2; /* b_hn is gated by r */
            vb[q] = apart ? b_ih(d, row) : b_ih(d, row) + b_hh(d, row);
            tb[q] = fib_rounding_tol(d->dtype, apart ? 1 : 2,
                                     fabs(b_ih(d, row)) + (apart ? 0.0 : fabs(b_hh(d, row))));
        }
        if (d->op == FIB_OP_GRU) {
            vb[3] = b_hh(d, 2 * h + j);
            tb[3] = fib_rounding_tol(d->dtype, 1, fabs(vb[3]));
        }
    }
    return status;
}

/* ---- opfibers ----------------------------------------------------------- */

static int64_t gated_opfiber_width(const fib_graph *g, int32_t group,
                                   int32_t source_index,
                                   const fib_partition *parts,
                                   const fib_partition *fibers)
{
    (void)fibers;
    const fib_gated *d = gated_of(g, group);
    return d->n_gates * parts[group].n_classes + (source_index < 0 ? 1 : 0);
}

/* Column sums of every gate block of w_ih (source_index 0: into the
 * source's signature) or w_hh (-1: into the group's own, after its
 * flavour) over the group's current opfiber classes. */
static int32_t gated_opfiber_fill(const fib_graph *g, int32_t group,
                                  int32_t source_index,
                                  const fib_partition *parts,
                                  const fib_partition *fibers,
                                  fib_signature *sig, int64_t offset)
{
    const fib_gated *d = gated_of(g, group);
    const fib_partition *own = &parts[group];
    int64_t k = own->n_classes, h = own->n_units;
    bool recurrent = source_index < 0;
    int64_t n_cols = recurrent ? h : d->n_in;
    int64_t width = d->n_gates * k;
    int64_t *sizes = fib_alloc(k, sizeof *sizes);
    if (!sizes)
        return fib_error(FIB_E_NOMEM, "group %d: out of memory for column sums", (int)group);
    fib_partition_class_sizes(own, sizes);
    if (recurrent) {
        /* The flavour: gates are non-linear, so the fiber class. */
        for (int64_t i = 0; i < h; i++) {
            sig->value[i * sig->n_coords + offset] = (double)fibers[group].color[i];
            sig->tol[i * sig->n_coords + offset] = FIB_TOL_LABEL;
        }
        offset++;
    }
    for (int64_t i = 0; i < n_cols; i++) {
        memset(sig->value + i * sig->n_coords + offset, 0, (size_t)width * sizeof(double));
        memset(sig->tol + i * sig->n_coords + offset, 0, (size_t)width * sizeof(double));
    }
    for (int64_t q = 0; q < d->n_gates; q++)
        for (int64_t r = 0; r < h; r++) {
            int64_t row = q * h + r, cell = offset + q * k + own->color[r];
            for (int64_t i = 0; i < n_cols; i++) {
                double w = recurrent ? w_hh(d, h, row, i) : w_ih(d, row, i);
                sig->value[i * sig->n_coords + cell] += w;
                sig->tol[i * sig->n_coords + cell] += fabs(w);
            }
        }
    for (int64_t i = 0; i < n_cols; i++) {
        double *tol = sig->tol + i * sig->n_coords + offset;
        for (int64_t q = 0; q < d->n_gates; q++)
            for (int64_t c = 0; c < k; c++)
                tol[q * k + c] = fib_rounding_tol(d->dtype, sizes[c], tol[q * k + c]);
    }
    fib_free(sizes);
    return FIB_OK;
}

/* ---- forward ------------------------------------------------------------ */

static double sigmoid(double x)
{
    return 1.0 / (1.0 + exp(-x));
}

/* Dot product of row `row` of a packed matrix with n columns and x. */
static double dot(int32_t dtype, const void *w, int64_t row, int64_t n, const double *x)
{
    double z = 0.0;
    if (dtype != FIB_DTYPE_F32 && dtype != FIB_DTYPE_F64) {
        for (int64_t k = 0; k < n; k++)
            z += fib_load(dtype, w, row * n + k) * x[k];
    } else if (dtype == FIB_DTYPE_F32) {
        const float *r = (const float *)w + row * n;
        for (int64_t k = 0; k < n; k++)
            z += (double)r[k] * x[k];
    } else {
        const double *r = (const double *)w + row * n;
        for (int64_t k = 0; k < n; k++)
            z += r[k] * x[k];
    }
    return z;
}

/* The forward pass needs no scratch memory (it cannot fail): h_{t-1} is
 * read from the output at step t - 1, and the LSTM's cell state c_t is kept
 * in the output slot of step t + 1 until unit j of step t + 1 has read its
 * own c_t and overwrites it with h_{t+1}. */
static void gated_forward(const fib_graph *g, int32_t group, int64_t batch,
                          double *const *activity, double *out)
{
    const fib_gated *d = gated_of(g, group);
    const fib_group *grp = &g->groups[group];
    int64_t h = grp->n_units, steps = grp->rows, n_in = d->n_in;
    const double *x = activity[grp->sources[0]];
    for (int64_t b = 0; b < batch; b++) {
        for (int64_t t = 0; t < steps; t++) {
            const double *xt = x + (b * steps + t) * n_in;
            const double *prev = t > 0 ? out + (b * steps + t - 1) * h : NULL;
            double *cur = out + (b * steps + t) * h;
            double *next = t + 1 < steps ? out + (b * steps + t + 1) * h : NULL;
            for (int64_t j = 0; j < h; j++) {
                double a[4], rec[4] = {0, 0, 0, 0};
                for (int64_t q = 0; q < d->n_gates; q++) {
                    int64_t row = q * h + j;
                    a[q] = b_ih(d, row) + dot(d->dtype, d->w_ih, row, n_in, xt);
                    if (prev)
                        rec[q] = dot(d->dtype, d->w_hh, row, h, prev);
                    rec[q] += b_hh(d, row);
                }
                if (d->op == FIB_OP_LSTM) {
                    double c_prev = prev ? cur[j] : 0.0; /* c_{t-1}, parked here */
                    double in = sigmoid(a[0] + rec[0]), forget = sigmoid(a[1] + rec[1]);
                    double cand = tanh(a[2] + rec[2]), o = sigmoid(a[3] + rec[3]);
                    double c = forget * c_prev + in * cand;
                    cur[j] = o * tanh(c);
                    if (next)
                        next[j] = c;
                } else {
                    double r = sigmoid(a[0] + rec[0]), z = sigmoid(a[1] + rec[1]);
                    double n = tanh(a[2] + r * rec[2]);
                    cur[j] = (1.0 - z) * n + z * (prev ? prev[j] : 0.0);
                }
            }
        }
    }
}

/* ---- compress and lift -------------------------------------------------- */

typedef struct gated_arrays {
    double *wi, *wh, *bi, *bh;
} gated_arrays;

static int32_t arrays_alloc(gated_arrays *a, const fib_gated *d, int64_t rows,
                            int64_t n_in, int64_t hidden, int32_t group)
{
    a->wi = fib_calloc(rows * n_in, sizeof(double));
    a->wh = fib_calloc(rows * hidden, sizeof(double));
    a->bi = d->b_ih ? fib_calloc(rows, sizeof(double)) : NULL;
    a->bh = d->b_hh ? fib_calloc(rows, sizeof(double)) : NULL;
    if (!a->wi || !a->wh || (d->b_ih && !a->bi) || (d->b_hh && !a->bh)) {
        fib_free(a->wi);
        fib_free(a->wh);
        fib_free(a->bi);
        fib_free(a->bh);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory for gated weights",
                         (int)group);
    }
    return FIB_OK;
}

/* Eq. 10 gate by gate: row (q, c) of the base is the mean over the class c
 * of the rows (q, i), each summed over the source classes (w_ih) and over
 * the group's own classes (w_hh); biases are means. */
static int32_t gated_compress(const fib_graph *g, int32_t group,
                              const fib_partition *parts, fib_graph *base,
                              const int32_t *base_ids)
{
    const fib_gated *d = gated_of(g, group);
    int32_t source = g->groups[group].sources[0];
    const fib_partition *own = &parts[group], *src = &parts[source];
    int64_t k = own->n_classes, ks = src->n_classes, h = own->n_units;
    int64_t *sizes = fib_alloc(k, sizeof *sizes);
    gated_arrays a;
    int32_t status = sizes ? arrays_alloc(&a, d, d->n_gates * k, ks, k, group)
                           : fib_error(FIB_E_NOMEM, "group %d: out of memory merging",
                                       (int)group);
    if (status) {
        fib_free(sizes);
        return status;
    }
    fib_partition_class_sizes(own, sizes);
    for (int64_t q = 0; q < d->n_gates; q++)
        for (int64_t i = 0; i < h; i++) {
            int64_t row = q * h + i, brow = q * k + own->color[i];
            for (int64_t c = 0; c < d->n_in; c++)
                a.wi[brow * ks + src->color[c]] += w_ih(d, row, c);
            for (int64_t c = 0; c < h; c++)
                a.wh[brow * k + own->color[c]] += w_hh(d, h, row, c);
            if (a.bi)
                a.bi[brow] += b_ih(d, row);
            if (a.bh)
                a.bh[brow] += b_hh(d, row);
        }
    for (int64_t q = 0; q < d->n_gates; q++)
        for (int64_t c = 0; c < k; c++) {
            int64_t brow = q * k + c;
            double inv = 1.0 / (double)sizes[c];
            for (int64_t x = 0; x < ks; x++)
                a.wi[brow * ks + x] *= inv;
            for (int64_t x = 0; x < k; x++)
                a.wh[brow * k + x] *= inv;
            if (a.bi)
                a.bi[brow] *= inv;
            if (a.bh)
                a.bh[brow] *= inv;
        }
    fib_free(sizes);
    return add_gated_owned(base, d->op, base_ids[source], k, a.wi, a.wh, a.bi, a.bh);
}

/* The inverse: full row (q, i) copies base row (q, class of i), its weight
 * on a merged class split evenly over the class's members. */
static int32_t gated_lift(const fib_graph *base, int32_t group,
                          const fib_partition *parts, fib_graph *full,
                          const int32_t *full_ids)
{
    const fib_gated *d = gated_of(base, group);
    int32_t source = base->groups[group].sources[0];
    const fib_partition *own = &parts[group], *src = &parts[source];
    int64_t k = base->groups[group].n_units, n = own->n_units, n_in = src->n_units;
    int64_t *size_s = fib_alloc(src->n_classes, sizeof *size_s);
    int64_t *size_o = fib_alloc(own->n_classes, sizeof *size_o);
    gated_arrays a;
    int32_t status = size_s && size_o
                         ? arrays_alloc(&a, d, d->n_gates * n, n_in, n, group)
                         : fib_error(FIB_E_NOMEM, "group %d: out of memory lifting",
                                     (int)group);
    if (status) {
        fib_free(size_s);
        fib_free(size_o);
        return status;
    }
    fib_partition_class_sizes(src, size_s);
    fib_partition_class_sizes(own, size_o);
    for (int64_t q = 0; q < d->n_gates; q++)
        for (int64_t i = 0; i < n; i++) {
            int64_t row = q * n + i, brow = q * k + own->color[i];
            for (int64_t c = 0; c < n_in; c++)
                a.wi[row * n_in + c] = w_ih(d, brow, src->color[c]) / (double)size_s[src->color[c]];
            for (int64_t c = 0; c < n; c++)
                a.wh[row * n + c] = w_hh(d, k, brow, own->color[c]) / (double)size_o[own->color[c]];
            if (a.bi)
                a.bi[row] = b_ih(d, brow);
            if (a.bh)
                a.bh[row] = b_hh(d, brow);
        }
    fib_free(size_s);
    fib_free(size_o);
    return add_gated_owned(full, d->op, full_ids[source], n, a.wi, a.wh, a.bi, a.bh);
}

/* ---- read-out ----------------------------------------------------------- */

static int64_t gated_num_parameters(const fib_graph *g, int32_t group)
{
    const fib_gated *d = gated_of(g, group);
    int64_t h = g->groups[group].n_units, rows = d->n_gates * h;
    return rows * (d->n_in + h) + (d->b_ih ? rows : 0) + (d->b_hh ? rows : 0);
}

static bool gated_tensor(const fib_graph *g, int32_t group, int32_t index,
                         fib_tensor_view *out)
{
    const fib_gated *d = gated_of(g, group);
    int64_t h = g->groups[group].n_units, rows = d->n_gates * h;
    if (index == 0) {
        *out = (fib_tensor_view){"weight_ih", d->dtype, d->w_ih, 2, {rows, d->n_in, 1, 1}, d->n_in, 0};
        return true;
    }
    if (index == 1) {
        *out = (fib_tensor_view){"weight_hh", d->dtype, d->w_hh, 2, {rows, h, 1, 1}, h, 0};
        return true;
    }
    /* Absent biases are skipped in the numbering. */
    int32_t next = 2;
    if (d->b_ih && index == next++) {
        *out = (fib_tensor_view){"bias_ih", d->dtype, d->b_ih, 1, {rows, 1, 1, 1}, 1, 0};
        return true;
    }
    if (d->b_hh && index == next) {
        *out = (fib_tensor_view){"bias_hh", d->dtype, d->b_hh, 1, {rows, 1, 1, 1}, 1, 0};
        return true;
    }
    return false;
}

/* ---- budgets ------------------------------------------------------------ */

/* A unit's classes are clustered on its gates' rows (over the source's
 * units and the group's own); at given widths the block has every gate's
 * rows over the source's and its own classes. */
static int32_t gated_budget_role(const fib_graph *g, int32_t group)
{
    (void)g, (void)group;
    return FIB_BUDGET_CLUSTERED;
}

static int64_t gated_budget_parameters(const fib_graph *g, int32_t group, const int64_t *width)
{
    const fib_gated *d = gated_of(g, group);
    int64_t h = width[group], rows = d->n_gates * h;
    int64_t in = width[g->groups[group].sources[0]];
    return rows * (in + h) + (d->b_ih ? rows : 0) + (d->b_hh ? rows : 0);
}

/* Every gate's input weights carry the unit's energy to the source (the
 * recurrence is left out: the energies are a data-free weighting). */
static void gated_budget_backward(const fib_graph *g, int32_t group, int32_t source_index,
                                  const double *energy, double *src_energy)
{
    (void)source_index;
    const fib_gated *d = gated_of(g, group);
    int64_t h = g->groups[group].n_units;
    for (int64_t q = 0; q < d->n_gates; q++)
        for (int64_t j = 0; j < h; j++)
            for (int64_t k = 0; k < d->n_in; k++) {
                double w = w_ih(d, q * h + j, k);
                src_energy[k] += w * w * energy[j];
            }
}

/* LSTM and GRU differ only in their name and gate count (gated_of); they
 * share every entry. */
#define GATED_OPS(kind_name)                                \
    {                                                       \
        .name = kind_name,                                  \
        .build = gated_build,                               \
        .free_block = gated_free,                           \
        .fiber_width = gated_fiber_width,                   \
        .fiber_fill = gated_fiber_fill,                     \
        .opfiber_width = gated_opfiber_width,               \
        .opfiber_fill = gated_opfiber_fill,                 \
        .recurrent = true,                                  \
        .forward = gated_forward,                           \
        .compress = gated_compress,                         \
        .lift = gated_lift,                                 \
        .num_parameters = gated_num_parameters,             \
        .tensor = gated_tensor,                             \
        .budget_role = gated_budget_role,                   \
        .budget_parameters = gated_budget_parameters,       \
        .budget_backward = gated_budget_backward,           \
    }

const fib_block_ops fib_lstm_ops = GATED_OPS("lstm");
const fib_block_ops fib_gru_ops = GATED_OPS("gru");
