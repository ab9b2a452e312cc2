/* Convolution blocks (PyTorch Conv2d, OIHW kernels): channels are the
 * units. A channel's colour sums are its kernels summed over each source
 * class; the base kernel is the mean over the output class of those sums.
 * A base convolution always has groups = 1. */
#include "blocks/blocks.h"
#include "model/window.h"

#include <math.h>
#include <string.h>

typedef struct fib_conv {
    int32_t dtype;
    int64_t in_channels; /* the source's width */
    int64_t groups;
    fib_window win;
    const void *weights; /* n_out x (in_channels / groups) x kernel, packed */
    const void *bias;
    void *owned_weights;
    void *owned_bias;
} fib_conv;

static const fib_conv *conv_of(const fib_graph *g, int32_t group)
{
    return (const fib_conv *)g->groups[group].block;
}

static int64_t kernel_size(const fib_conv *c)
{
    return c->win.kernel_rows * c->win.kernel_cols;
}

static int64_t in_per_group(const fib_conv *c)
{
    return c->in_channels / c->groups;
}

/* Kernel element q of output channel o, input channel j (within its group). */
static double kernel_at(const fib_conv *c, int64_t o, int64_t j_local, int64_t q)
{
    return fib_load(c->dtype, c->weights, (o * in_per_group(c) + j_local) * kernel_size(c) + q);
}

static void conv_free(void *block)
{
    fib_conv *c = block;
    if (!c)
        return;
    fib_free(c->owned_weights);
    fib_free(c->owned_bias);
    fib_free(c);
}

static int32_t push_conv(fib_graph *g, int32_t source, int64_t n_out, fib_conv *c,
                         int32_t *group_out)
{
    int64_t rows, cols;
    int32_t status = fib_window_check(&c->win, g->groups[source].rows,
                                      g->groups[source].cols, "convolution", g->n_groups,
                                      &rows, &cols);
    if (status) {
        conv_free(c);
        return status;
    }
    fib_group grp = {.op = FIB_OP_CONV, .n_units = n_out, .rows = rows, .cols = cols,
                     .activation = FIB_ACT_LINEAR, .n_sources = 1,
                     .sources = {source, 0}, .ops = &fib_conv_ops, .block = c};
    status = fib_graph_push_group(g, &grp, group_out);
    if (status)
        conv_free(c);
    return status;
}

static int32_t check_conv_args(const fib_graph *g, int32_t source, int64_t n_out,
                               int64_t groups, int32_t dtype, const void *weights,
                               uint32_t flags, int64_t kernel, int64_t *count_out)
{
    static const char fn[] = "fib_graph_add_conv";
    int32_t group = g->n_groups;
    int64_t in = g->groups[source].n_units;
    if (!fib_dtype_size(dtype))
        return fib_error(FIB_E_INVALID, "%s: group %d: unknown dtype %d", fn, (int)group,
                         (int)dtype);
    if (flags & ~FIB_COPY)
        return fib_error(FIB_E_INVALID, "%s: group %d: unknown flags 0x%x", fn, (int)group,
                         (unsigned)flags);
    if (!weights)
        return fib_error(FIB_E_NULL, "%s: group %d: weights is NULL", fn, (int)group);
    if (n_out < 1 || n_out > FIB_MAX_UNITS)
        return fib_error(n_out < 1 ? FIB_E_SHAPE : FIB_E_OVERFLOW,
                         "%s: group %d: n_out %lld must be in [1, 2^40]", fn, (int)group,
                         (long long)n_out);
    if (groups < 1 || in % groups || n_out % groups)
        return fib_error(FIB_E_SHAPE,
                         "%s: group %d: groups %lld must divide both %lld input and %lld output channels",
                         fn, (int)group, (long long)groups, (long long)in, (long long)n_out);
    int64_t per_out;
    if (!fib_mul_i64(in / groups, kernel, &per_out) || !fib_mul_i64(per_out, n_out, count_out) ||
        *count_out > INT64_MAX / 8)
        return fib_error(FIB_E_OVERFLOW, "%s: group %d: kernel tensor size overflows", fn,
                         (int)group);
    return FIB_OK;
}

static int32_t check_finite(int32_t group, const fib_conv *c, int64_t n_out)
{
    int64_t per_out = in_per_group(c) * kernel_size(c);
    for (int64_t o = 0; o < n_out; o++) {
        for (int64_t x = 0; x < per_out; x++)
            if (!isfinite(fib_load(c->dtype, c->weights, o * per_out + x)))
                return fib_error(FIB_E_NONFINITE,
                                 "convolution of group %d: weight [%lld, %lld, %lld] is not finite",
                                 (int)group, (long long)o, (long long)(x / kernel_size(c)),
                                 (long long)(x % kernel_size(c)));
        if (c->bias && !isfinite(fib_load(c->dtype, c->bias, o)))
            return fib_error(FIB_E_NONFINITE, "convolution of group %d: bias %lld is not finite",
                             (int)group, (long long)o);
    }
    return FIB_OK;
}

int32_t fib_graph_add_conv(fib_graph *g, int32_t source, int64_t n_out,
                           int64_t kernel_rows, int64_t kernel_cols, int64_t stride_rows,
                           int64_t stride_cols, int64_t pad_rows, int64_t pad_cols,
                           int64_t groups, int32_t dtype, const void *weights,
                           const void *bias, uint32_t flags, int32_t *group_out)
{
    int32_t status = fib_graph_check_group(g, source, "fib_graph_add_conv");
    if (status)
        return status;
    if (!group_out)
        return fib_error(FIB_E_NULL, "fib_graph_add_conv: group_out is NULL");
    fib_window win = {kernel_rows, kernel_cols, stride_rows, stride_cols, pad_rows, pad_cols};
    int64_t rows, cols, count;
    status = fib_window_check(&win, g->groups[source].rows, g->groups[source].cols,
                              "convolution", g->n_groups, &rows, &cols);
    if (!status)
        status = check_conv_args(g, source, n_out, groups, dtype, weights, flags,
                                 kernel_rows * kernel_cols, &count);
    if (status)
        return status;
    fib_conv probe = {.dtype = dtype, .in_channels = g->groups[source].n_units,
                      .groups = groups, .win = win, .weights = weights, .bias = bias};
    status = check_finite(g->n_groups, &probe, n_out);
    if (status)
        return status;
    fib_conv *c = fib_calloc(1, sizeof *c);
    if (!c)
        return fib_error(FIB_E_NOMEM, "fib_graph_add_conv: out of memory");
    *c = probe;
    if (flags & FIB_COPY) {
        size_t es = fib_dtype_size(dtype);
        c->owned_weights = fib_alloc(count, es);
        c->owned_bias = bias ? fib_alloc(n_out, es) : NULL;
        if (!c->owned_weights || (bias && !c->owned_bias)) {
            conv_free(c);
            return fib_error(FIB_E_NOMEM, "fib_graph_add_conv: out of memory copying weights");
        }
        memcpy(c->owned_weights, weights, (size_t)count * es);
        if (bias)
            memcpy(c->owned_bias, bias, (size_t)n_out * es);
        c->weights = c->owned_weights;
        c->bias = c->owned_bias;
    }
    return push_conv(g, source, n_out, c, group_out);
}

/* A float64 convolution with groups = 1 owning its kernels (bases, lifts). */
static int32_t add_conv_owned(fib_graph *g, int32_t source, int64_t n_out, int64_t groups,
                              const fib_window *win, double *weights, double *bias)
{
    fib_conv *c = fib_calloc(1, sizeof *c);
    if (!c) {
        fib_free(weights);
        fib_free(bias);
        return fib_error(FIB_E_NOMEM, "out of memory adding a convolution");
    }
    *c = (fib_conv){.dtype = FIB_DTYPE_F64, .in_channels = g->groups[source].n_units,
                    .groups = groups, .win = *win, .weights = weights, .bias = bias,
                    .owned_weights = weights, .owned_bias = bias};
    int32_t id;
    return push_conv(g, source, n_out, c, &id);
}

/* ---- colouring ---------------------------------------------------------- */

static int64_t conv_fiber_width(const fib_graph *g, int32_t group, const fib_partition *parts)
{
    const fib_conv *c = conv_of(g, group);
    return parts[g->groups[group].sources[0]].n_classes * kernel_size(c) + (c->bias ? 1 : 0);
}

/* An output channel's kernel is a row of in_per_group x kernel weights
 * whose element (j, q) belongs to coordinate (class of input j, q): the
 * colour sums of fib_colour_rows, one call per convolution group (each
 * reads its own input channels), then the bias. */
static int32_t conv_fiber_fill(const fib_graph *g, int32_t group, const fib_partition *parts,
                               fib_signature *sig, int64_t offset)
{
    const fib_conv *c = conv_of(g, group);
    const fib_partition *src = &parts[g->groups[group].sources[0]];
    int64_t kk = kernel_size(c), width = src->n_classes * kk, per_in = in_per_group(c);
    int64_t n_out = g->groups[group].n_units, out_per_group = n_out / c->groups;
    double *coef = NULL, *coef_kk = fib_alloc(width, sizeof *coef_kk);
    int64_t *color = fib_alloc(per_in * kk, sizeof *color);
    int32_t status = coef_kk && color
        ? fib_colour_coefficients(src, c->dtype, &coef)
        : fib_error(FIB_E_NOMEM, "group %d: out of memory for kernel sums", (int)group);
    for (int64_t x = 0; !status && x < width; x++)
        coef_kk[x] = coef[x / kk];
    size_t esize = fib_dtype_size(c->dtype);
    for (int64_t cg = 0; !status && cg < c->groups; cg++) {
        for (int64_t j = 0; j < per_in; j++)
            for (int64_t q = 0; q < kk; q++)
                color[j * kk + q] = src->color[cg * per_in + j] * kk + q;
        int64_t o0 = cg * out_per_group;
        status = fib_colour_rows(sig, o0, offset, c->dtype,
                                 (const char *)c->weights + (size_t)(o0 * per_in * kk) * esize,
                                 per_in * kk, out_per_group, per_in * kk, color, width, coef_kk,
                                 group);
    }
    fib_free(coef);
    fib_free(coef_kk);
    fib_free(color);
    for (int64_t o = 0; !status && c->bias && o < n_out; o++) {
        double *val = sig->value + o * sig->n_coords + offset;
        double *tol = sig->tol + o * sig->n_coords + offset;
        val[width] = fib_load(c->dtype, c->bias, o);
        tol[width] = fib_rounding_tol(c->dtype, 1, fabs(val[width]));
    }
    return status;
}

static int64_t conv_opfiber_width(const fib_graph *g, int32_t group, int32_t source_index,
                                  const fib_partition *parts,
                                  const fib_partition *fibers)
{
    (void)fibers;
    (void)source_index;
    return parts[group].n_classes * kernel_size(conv_of(g, group));
}

static int32_t conv_opfiber_fill(const fib_graph *g, int32_t group, int32_t source_index,
                                 const fib_partition *parts, const fib_partition *fibers,
                                 fib_signature *sig, int64_t offset)
{
    (void)source_index, (void)fibers;
    const fib_conv *c = conv_of(g, group);
    const fib_partition *own = &parts[group];
    int64_t kk = kernel_size(c), width = own->n_classes * kk;
    int64_t n_out = g->groups[group].n_units, out_per_group = n_out / c->groups;
    int64_t *sizes = fib_alloc(own->n_classes, sizeof *sizes);
    if (!sizes)
        return fib_error(FIB_E_NOMEM, "group %d: out of memory for kernel sums", (int)group);
    fib_partition_class_sizes(own, sizes);
    for (int64_t j = 0; j < c->in_channels; j++) {
        memset(sig->value + j * sig->n_coords + offset, 0, (size_t)width * sizeof(double));
        memset(sig->tol + j * sig->n_coords + offset, 0, (size_t)width * sizeof(double));
    }
    for (int64_t o = 0; o < n_out; o++) {
        int64_t first_in = (o / out_per_group) * in_per_group(c);
        int64_t base = offset + own->color[o] * kk;
        for (int64_t jl = 0; jl < in_per_group(c); jl++) {
            double *val = sig->value + (first_in + jl) * sig->n_coords + base;
            double *tol = sig->tol + (first_in + jl) * sig->n_coords + base;
            for (int64_t q = 0; q < kk; q++) {
                double w = kernel_at(c, o, jl, q);
                val[q] += w;
                tol[q] += fabs(w);
            }
        }
    }
    for (int64_t j = 0; j < c->in_channels; j++) {
        double *tol = sig->tol + j * sig->n_coords + offset;
        for (int64_t x = 0; x < width; x++)
            tol[x] = fib_rounding_tol(c->dtype, sizes[x / kk], tol[x]);
    }
    fib_free(sizes);
    return FIB_OK;
}

/* ---- forward, compress, lift -------------------------------------------- */

/* The kernel as doubles laid out [o][q][jl] (the input channels of a tap
 * contiguous), so the inner product of the forward pass is one contiguous
 * loop without per-element conversion. NULL when out of memory. */
static double *kernel_by_tap(const fib_conv *c, int64_t n_out)
{
    int64_t ipg = in_per_group(c), kk = kernel_size(c);
    double *k = fib_alloc(n_out * kk * ipg, sizeof *k);
    if (!k)
        return NULL;
    for (int64_t o = 0; o < n_out; o++)
        for (int64_t jl = 0; jl < ipg; jl++)
            for (int64_t q = 0; q < kk; q++)
                k[(o * kk + q) * ipg + jl] = kernel_at(c, o, jl, q);
    return k;
}

/* A dot product in four interleaved partial sums (the compiler vectorises
 * them; a single running sum is a chain of dependent additions). */
static double dot(const double *a, const double *b, int64_t n)
{
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++)
        s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

static void conv_forward(const fib_graph *g, int32_t group, int64_t batch,
                         double *const *activity, double *out)
{
    const fib_group *grp = &g->groups[group];
    const fib_group *src = &g->groups[grp->sources[0]];
    const fib_conv *c = conv_of(g, group);
    const double *x = activity[grp->sources[0]];
    const fib_window *w = &c->win;
    int64_t n_out = grp->n_units, out_per_group = n_out / c->groups, cin = c->in_channels;
    int64_t ipg = in_per_group(c), kk = kernel_size(c);
    double *taps = kernel_by_tap(c, n_out);
    for (int64_t b = 0; b < batch; b++) {
        const double *xb = x + b * fib_group_activity_width(src);
        double *yb = out + b * fib_group_activity_width(grp);
        for (int64_t r = 0; r < grp->rows; r++)
            for (int64_t col = 0; col < grp->cols; col++)
                for (int64_t o = 0; o < n_out; o++) {
                    double z = c->bias ? fib_load(c->dtype, c->bias, o) : 0.0;
                    int64_t first_in = (o / out_per_group) * ipg;
                    for (int64_t kr = 0; kr < w->kernel_rows; kr++) {
                        int64_t ir = r * w->stride_rows - w->pad_rows + kr;
                        if (ir < 0 || ir >= src->rows)
                            continue;
                        for (int64_t kc = 0; kc < w->kernel_cols; kc++) {
                            int64_t ic = col * w->stride_cols - w->pad_cols + kc;
                            if (ic < 0 || ic >= src->cols)
                                continue;
                            const double *px = xb + (ir * src->cols + ic) * cin + first_in;
                            int64_t q = kr * w->kernel_cols + kc;
                            if (taps) {
                                z += dot(taps + (o * kk + q) * ipg, px, ipg);
                            } else {
                                for (int64_t jl = 0; jl < ipg; jl++)
                                    z += kernel_at(c, o, jl, q) * px[jl];
                            }
                        }
                    }
                    yb[(r * grp->cols + col) * n_out + o] = z;
                }
    }
    fib_free(taps);
}

/* The groups a base keeps: the original's, or for a depthwise original
 * whose classes no longer divide by its groups, one per class; 1 when the
 * class counts do not divide. Whether the merged kernel really is
 * block-diagonal in them is checked while it is summed (conv_compress). */
static int64_t base_groups(const fib_conv *c, int64_t n_out, int64_t n_in, int64_t k_out,
                           int64_t k_in)
{
    int64_t groups = c->groups;
    if (groups > 1 && (k_out % groups || k_in % groups) && c->groups == n_out &&
        n_out == n_in && k_out == k_in)
        groups = k_out; /* depthwise: one block per class */
    if (groups <= 1 || k_out % groups || k_in % groups)
        return 1;
    return groups;
}

/* Sums the original kernels into the base kernel w (k_out x k_in / groups
 * x kk: each out class reads the in classes of its block) and the biases
 * into b; false when an out class reads an in class outside its block
 * (the merged kernel is not block-diagonal in `groups`). */
static bool sum_kernels(const fib_conv *c, int64_t n_out, const fib_partition *out_p,
                        const fib_partition *in_p, int64_t groups, double *w, double *b)
{
    int64_t kk = kernel_size(c), k_in = in_p->n_classes;
    int64_t opg = out_p->n_classes / groups, ipg = k_in / groups;
    int64_t out_per_group = n_out / c->groups;
    for (int64_t o = 0; o < n_out; o++) {
        int64_t co = out_p->color[o], first_in = (o / out_per_group) * in_per_group(c);
        for (int64_t jl = 0; jl < in_per_group(c); jl++) {
            int64_t cj = in_p->color[first_in + jl];
            if (cj / ipg != co / opg)
                return false;
            double *dst = w + (co * ipg + cj % ipg) * kk;
            for (int64_t q = 0; q < kk; q++)
                dst[q] += kernel_at(c, o, jl, q);
        }
        if (b)
            b[co] += fib_load(c->dtype, c->bias, o);
    }
    return true;
}

/* The base kernel is the class mean of the members' kernels, summed over
 * each source class; a grouped original keeps its groups when the merged
 * kernel is block-diagonal in them (base_groups), so that a base never has
 * more parameters than its original, and is ungrouped otherwise. */
static int32_t conv_compress(const fib_graph *g, int32_t group, const fib_partition *parts,
                             fib_graph *base, const int32_t *base_ids)
{
    const fib_conv *c = conv_of(g, group);
    int32_t source = g->groups[group].sources[0];
    const fib_partition *out_p = &parts[group], *in_p = &parts[source];
    int64_t kk = kernel_size(c), k_out = out_p->n_classes, k_in = in_p->n_classes;
    int64_t n_out = g->groups[group].n_units;
    int64_t groups = base_groups(c, n_out, g->groups[source].n_units, k_out, k_in);
    double *w = NULL, *b = NULL;
    int64_t *sizes = fib_alloc(k_out, sizeof *sizes);
    for (;;) {
        w = fib_calloc(k_out * (k_in / groups) * kk, sizeof *w);
        b = c->bias ? fib_calloc(k_out, sizeof *b) : NULL;
        if (!w || (c->bias && !b) || !sizes) {
            fib_free(w);
            fib_free(b);
            fib_free(sizes);
            return fib_error(FIB_E_NOMEM, "group %d: out of memory merging", (int)group);
        }
        if (sum_kernels(c, n_out, out_p, in_p, groups, w, b) || groups == 1)
            break;
        fib_free(w);
        fib_free(b);
        groups = 1; /* not block-diagonal: an ungrouped base */
    }
    fib_partition_class_sizes(out_p, sizes);
    for (int64_t cls = 0; cls < k_out; cls++) {
        for (int64_t x = 0; x < (k_in / groups) * kk; x++)
            w[cls * (k_in / groups) * kk + x] /= (double)sizes[cls];
        if (b)
            b[cls] /= (double)sizes[cls];
    }
    fib_free(sizes);
    return add_conv_owned(base, base_ids[source], k_out, groups, &c->win, w, b);
}

static int32_t conv_lift(const fib_graph *base, int32_t group, const fib_partition *parts,
                         fib_graph *full, const int32_t *full_ids)
{
    const fib_conv *bc = conv_of(base, group);
    int32_t source = base->groups[group].sources[0];
    const fib_partition *out_p = &parts[group], *in_p = &parts[source];
    int64_t kk = kernel_size(bc), n_out = out_p->n_units, n_in = in_p->n_units;
    int64_t base_out_per_group = base->groups[group].n_units / bc->groups;
    double *w = fib_calloc(n_out * n_in * kk, sizeof *w);
    double *b = bc->bias ? fib_alloc(n_out, sizeof *b) : NULL;
    int64_t *sizes = fib_alloc(in_p->n_classes, sizeof *sizes);
    if (!w || (bc->bias && !b) || !sizes) {
        fib_free(w);
        fib_free(b);
        fib_free(sizes);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory lifting", (int)group);
    }
    fib_partition_class_sizes(in_p, sizes);
    for (int64_t o = 0; o < n_out; o++) {
        int64_t co = out_p->color[o];
        int64_t first_in = (co / base_out_per_group) * in_per_group(bc);
        for (int64_t j = 0; j < n_in; j++) {
            int64_t cj = in_p->color[j] - first_in;
            if (cj < 0 || cj >= in_per_group(bc))
                continue; /* not connected in a grouped base */
            for (int64_t q = 0; q < kk; q++)
                w[(o * n_in + j) * kk + q] = kernel_at(bc, co, cj, q) / (double)sizes[in_p->color[j]];
        }
        if (b)
            b[o] = fib_load(bc->dtype, bc->bias, co);
    }
    fib_free(sizes);
    return add_conv_owned(full, full_ids[source], n_out, 1, &bc->win, w, b);
}

static int64_t conv_num_parameters(const fib_graph *g, int32_t group)
{
    const fib_conv *c = conv_of(g, group);
    int64_t n_out = g->groups[group].n_units;
    return n_out * in_per_group(c) * kernel_size(c) + (c->bias ? n_out : 0);
}

static bool conv_tensor(const fib_graph *g, int32_t group, int32_t index, fib_tensor_view *out)
{
    const fib_conv *c = conv_of(g, group);
    int64_t n_out = g->groups[group].n_units;
    if (index == 0)
        *out = (fib_tensor_view){"weight", c->dtype, c->weights, 4,
                                 {n_out, in_per_group(c), c->win.kernel_rows, c->win.kernel_cols},
                                 in_per_group(c) * kernel_size(c)};
    else if (index == 1 && c->bias)
        *out = (fib_tensor_view){"bias", c->dtype, c->bias, 1, {n_out, 1, 1, 1}, 1};
    else
        return false;
    return true;
}

static int64_t conv_params(const fib_graph *g, int32_t group, int64_t *out, int64_t capacity)
{
    const fib_conv *c = conv_of(g, group);
    int64_t all[7];
    fib_window_params(&c->win, all);
    all[6] = c->groups;
    for (int64_t x = 0; x < 7 && x < capacity; x++)
        out[x] = all[x];
    return 7;
}

/* ---- budgets ------------------------------------------------------------ */

/* A depthwise convolution follows its source channel by channel (its base
 * stays depthwise); another grouped one keeps its channels and its
 * source's, so that it stays grouped as it is. */
static bool is_depthwise(const fib_graph *g, int32_t group)
{
    const fib_conv *c = conv_of(g, group);
    return c->groups > 1 && c->groups == c->in_channels && c->groups == g->groups[group].n_units;
}

static int32_t conv_budget_role(const fib_graph *g, int32_t group)
{
    if (conv_of(g, group)->groups == 1)
        return FIB_BUDGET_CLUSTERED;
    return is_depthwise(g, group) ? FIB_BUDGET_FOLLOWS : FIB_BUDGET_PINS;
}

static int64_t conv_budget_parameters(const fib_graph *g, int32_t group, const int64_t *width)
{
    const fib_conv *c = conv_of(g, group);
    int64_t out = width[group], bias = c->bias ? out : 0;
    if (c->groups == 1)
        return out * width[g->groups[group].sources[0]] * kernel_size(c) + bias;
    if (is_depthwise(g, group))
        return out * kernel_size(c) + bias;
    return conv_num_parameters(g, group);
}

static void conv_budget_backward(const fib_graph *g, int32_t group, int32_t source_index,
                                 const double *energy, double *src_energy)
{
    (void)source_index;
    const fib_conv *c = conv_of(g, group);
    int64_t n_out = g->groups[group].n_units, out_per_group = n_out / c->groups;
    /* energies are per position: an input position feeds each tap at
     * positions_out / positions_in of the output positions (a stride) */
    double share = (double)fib_group_positions(&g->groups[group]) /
                   (double)fib_group_positions(&g->groups[g->groups[group].sources[0]]);
    for (int64_t o = 0; o < n_out; o++) {
        int64_t first_in = (o / out_per_group) * in_per_group(c);
        for (int64_t jl = 0; jl < in_per_group(c); jl++)
            for (int64_t q = 0; q < kernel_size(c); q++) {
                double w = kernel_at(c, o, jl, q);
                src_energy[first_in + jl] += share * w * w * energy[o];
            }
    }
}

const fib_block_ops fib_conv_ops = {
    .name = "conv",
    .free_block = conv_free,
    .fiber_width = conv_fiber_width,
    .fiber_fill = conv_fiber_fill,
    .opfiber_width = conv_opfiber_width,
    .opfiber_fill = conv_opfiber_fill,
    .forward = conv_forward,
    .compress = conv_compress,
    .lift = conv_lift,
    .num_parameters = conv_num_parameters,
    .tensor = conv_tensor,
    .params = conv_params,
    .budget_role = conv_budget_role,
    .budget_parameters = conv_budget_parameters,
    .budget_backward = conv_budget_backward,
};
