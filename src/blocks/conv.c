/* Convolution blocks (PyTorch Conv2d, OIHW kernels): channels are the
 * units. A channel's colour sums are its kernels summed over each source
 * class; the base kernel is the mean over the output class of those sums.
 * A base convolution keeps the original's groups (or, depthwise, one group
 * per class) and never has more parameters than the original. */
#include "blocks/blocks.h"
#include "kernels/fused.h"
#include "kernels/kernels.h"
#include "kernels/parallel.h"
#include "kernels/stored.h"
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
    int32_t status = fib_check_dtype_and_flags(fn, group, dtype, flags, NULL);
    if (status)
        return status;
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
    /* one vector pass over the whole kernel; element by element only to
     * name the first weight that is not finite */
    const fib_kernels *kernels = fib_kernels_active();
    if (fib_all_finite_stored(kernels, c->dtype, c->weights, n_out * per_out) &&
        (!c->bias || fib_all_finite_stored(kernels, c->dtype, c->bias, n_out)))
        return FIB_OK;
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

/* The most source classes one channel group of a grouped convolution reads
 * (at least 1), when every source class lies within one channel group, as
 * fib_color_keep_unit_runs keeps them: classes are numbered by their lowest
 * unit, so channel group cg reads the range [first, first + count) and the
 * ranges follow each other. 0 when a class spans two channel groups, or for
 * an ungrouped or depthwise convolution, whose output classes may span
 * channel groups: their signatures span all source classes. */
static int64_t classes_per_channel_group(const fib_conv *c, const fib_partition *src)
{
    int64_t per_in = in_per_group(c), most = 0, prev_last = -1;
    if (c->groups <= 1 || per_in <= 1)
        return 0;
    for (int64_t cg = 0; cg < c->groups; cg++) {
        int64_t first = INT64_MAX, last = -1;
        for (int64_t j = cg * per_in; j < (cg + 1) * per_in; j++) {
            first = src->color[j] < first ? src->color[j] : first;
            last = src->color[j] > last ? src->color[j] : last;
        }
        if (first <= prev_last)
            return 0;
        prev_last = last;
        most = last - first + 1 > most ? last - first + 1 : most;
    }
    return most;
}

/* A grouped convolution whose source classes stay within its channel
 * groups (classes_per_channel_group > 0) has a compact signature: the
 * channel group as a label, then the kernel sums over the group's own
 * classes (local class x tap), then the bias. Channels of different groups
 * never share a class: the colouring cuts a grouped convolution's classes
 * at its channel groups anyway (color/unit_runs.c). Otherwise the sums
 * span every source class (class x tap). */
static int64_t conv_fiber_width(const fib_graph *g, int32_t group, const fib_partition *parts)
{
    const fib_conv *c = conv_of(g, group);
    const fib_partition *src = &parts[g->groups[group].sources[0]];
    int64_t per_group = classes_per_channel_group(c, src);
    int64_t sums = per_group ? 1 + per_group * kernel_size(c) : src->n_classes * kernel_size(c);
    return sums + (c->bias ? 1 : 0);
}

/* An output channel's kernel is a row of in_per_group x kernel weights
 * whose element (j, q) belongs to coordinate (class of input j, q), or in a
 * compact signature (conv_fiber_width) to (class of input j - the group's
 * first class, q) after the group label: the colour sums of fib_color_rows,
 * one call per convolution group (each reads its own input channels), then
 * the bias. */
static int32_t conv_fiber_fill(const fib_graph *g, int32_t group, const fib_partition *parts,
                               fib_signature *sig, int64_t offset)
{
    const fib_conv *c = conv_of(g, group);
    const fib_partition *src = &parts[g->groups[group].sources[0]];
    int64_t kk = kernel_size(c), per_in = in_per_group(c);
    int64_t per_group = classes_per_channel_group(c, src), label = per_group ? 1 : 0;
    int64_t width = (per_group ? per_group : src->n_classes) * kk;
    int64_t n_out = g->groups[group].n_units, out_per_group = n_out / c->groups;
    double *coef = NULL, *coef_kk = fib_alloc(width, sizeof *coef_kk);
    int64_t *color = fib_alloc(per_in * kk, sizeof *color);
    int32_t status = coef_kk && color
        ? fib_color_coefficients(src, c->dtype, &coef)
        : fib_error(FIB_E_NOMEM, "group %d: out of memory for kernel sums", (int)group);
    size_t esize = fib_dtype_size(c->dtype);
    for (int64_t cg = 0; !status && cg < c->groups; cg++) {
        /* the compact signature's classes start at the group's first */
        int64_t first = 0;
        if (per_group) {
            first = INT64_MAX;
            for (int64_t j = 0; j < per_in; j++)
                first = src->color[cg * per_in + j] < first ? src->color[cg * per_in + j] : first;
        }
        if (cg == 0 || per_group)
            for (int64_t x = 0; x < width; x++)
                coef_kk[x] = first + x / kk < src->n_classes ? coef[first + x / kk] : 0.0;
        for (int64_t j = 0; j < per_in; j++)
            for (int64_t q = 0; q < kk; q++)
                color[j * kk + q] = (src->color[cg * per_in + j] - first) * kk + q;
        int64_t o0 = cg * out_per_group;
        for (int64_t o = o0; label && o < o0 + out_per_group; o++)
            fib_signature_put_label(sig, o, offset, cg);
        status = fib_color_rows(sig, o0, offset + label, c->dtype,
                                 (const char *)c->weights + (size_t)(o0 * per_in * kk) * esize,
                                 per_in * kk, out_per_group, per_in * kk, color, width, coef_kk,
                                 group);
    }
    fib_free(coef);
    fib_free(coef_kk);
    fib_free(color);
    for (int64_t o = 0; !status && c->bias && o < n_out; o++) {
        double *val = sig->value + o * sig->n_coords + offset + label;
        double *tol = sig->tol + o * sig->n_coords + offset + label;
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
    double *factor = fib_alloc(own->n_classes, sizeof *factor);
    if (!sizes || !factor) {
        fib_free(sizes);
        fib_free(factor);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory for kernel sums", (int)group);
    }
    fib_partition_class_sizes(own, sizes);
    /* fib_rounding_tol is a factor for the class's size times the sum of
     * |w|: the factor is made once per class */
    for (int64_t k = 0; k < own->n_classes; k++)
        factor[k] = fib_rounding_tol(c->dtype, sizes[k], 1.0);
    /* Row by row (input channel j): the row is written while it is in cache
     * and the kernels are read down their columns; each cell still adds its
     * outputs' weights in ascending output order. */
    int64_t ipg = in_per_group(c);
    for (int64_t j = 0; j < c->in_channels; j++) {
        double *val = sig->value + j * sig->n_coords + offset;
        double *tol = sig->tol + j * sig->n_coords + offset;
        memset(val, 0, (size_t)width * sizeof(double));
        memset(tol, 0, (size_t)width * sizeof(double));
        int64_t cg = j / ipg, jl = j % ipg;
        for (int64_t o = cg * out_per_group; o < (cg + 1) * out_per_group; o++) {
            double *v = val + own->color[o] * kk, *t = tol + own->color[o] * kk;
            if (c->dtype == FIB_DTYPE_F32) {
                const float *w32 = (const float *)c->weights + (o * ipg + jl) * kk;
                for (int64_t q = 0; q < kk; q++) {
                    v[q] += (double)w32[q];
                    t[q] += fabs((double)w32[q]);
                }
            } else {
                for (int64_t q = 0; q < kk; q++) {
                    double w = kernel_at(c, o, jl, q);
                    v[q] += w;
                    t[q] += fabs(w);
                }
            }
        }
        for (int64_t k = 0; k < own->n_classes; k++)
            for (int64_t q = 0; q < kk; q++)
                tol[k * kk + q] *= factor[k];
    }
    fib_free(sizes);
    fib_free(factor);
    return FIB_OK;
}

/* The fiber signature of an ungrouped convolution over a discrete source
 * (every input channel its own class, in order): coordinate (class j, tap
 * q) of output channel o is the single weight w[o, j, q], so the kernels
 * are lent in place as the rows and only the bias is materialised. */
static bool conv_fiber_view(const fib_graph *g, int32_t group, const fib_partition *parts,
                            fib_scratch *scratch, fib_signature *sig)
{
    const fib_group *grp = &g->groups[group];
    const fib_conv *c = grp->block;
    const fib_partition *src = &parts[grp->sources[0]];
    if (c->groups != 1 || src->n_classes != src->n_units || src->n_units != c->in_channels)
        return false;
    for (int64_t k = 0; k < src->n_units; k++)
        if (src->color[k] != k)
            return false;
    if (fib_signature_alloc_in(sig, grp->n_units, c->bias ? 1 : 0, scratch))
        return false;
    int64_t row = c->in_channels * kernel_size(c);
    sig->n_coords += row;
    sig->n_direct = row;
    sig->n_blocks = 1;
    sig->blocks[0] = (fib_direct_block){c->weights, c->dtype, row, 1, row, 0};
    for (int64_t o = 0; c->bias && o < grp->n_units; o++) {
        sig->value[o] = fib_load(c->dtype, c->bias, o);
        sig->tol[o] = fib_rounding_tol(c->dtype, 1, fabs(sig->value[o]));
    }
    return true;
}

/* The contribution to its source's opfiber signature when the convolution
 * is ungrouped and its own classes are discrete (every output channel its
 * own class, in order): coordinate (class o, tap q) of input channel j is
 * the single weight w[o, j, q], lent in place as runs of the kernel's taps,
 * one run per output channel, in the filled order. */
static bool conv_opfiber_view(const fib_graph *g, int32_t group, const fib_partition *parts,
                              fib_direct_block *out)
{
    const fib_conv *c = conv_of(g, group);
    const fib_partition *own = &parts[group];
    if (c->groups != 1 || own->n_classes != own->n_units ||
        c->in_channels != g->groups[g->groups[group].sources[0]].n_units)
        return false;
    for (int64_t o = 0; o < own->n_units; o++)
        if (own->color[o] != o)
            return false;
    int64_t kk = kernel_size(c);
    *out = (fib_direct_block){c->weights, c->dtype, kk, c->in_channels * kk,
                              own->n_units * kk, kk};
    return true;
}

/* ---- forward, compress, lift -------------------------------------------- */

/* The kernel of each convolution group as a (kernel x in_per_group) x
 * out_per_group matrix, row q * in_per_group + jl holding tap q of input
 * jl for the group's outputs, packed for gemm_f64 in panels of `panel`
 * columns: a row of input patches laid out [q][jl] times it gives the
 * group's outputs. NULL when out of memory. */
static double *kernel_matrices(const fib_conv *c, int64_t n_out, int64_t panel)
{
    int64_t ipg = in_per_group(c), kk = kernel_size(c), opg = n_out / c->groups;
    int64_t rows = kk * ipg, len = fib_gemm_packed_len(rows, opg, panel);
    double *k = fib_calloc(len * c->groups, sizeof *k);
    if (!k)
        return NULL;
    /* panel by panel, row by row: the packing is written in order, while
     * the kernels are read as `panel` streams advancing together */
    for (int64_t cg = 0; cg < c->groups; cg++)
        for (int64_t j0 = 0; j0 < opg; j0 += panel) {
            double *dst = k + cg * len + fib_gemm_packed_at(rows, panel, 0, j0);
            int64_t width = opg - j0 < panel ? opg - j0 : panel;
            for (int64_t q = 0; q < kk; q++)
                for (int64_t jl = 0; jl < ipg; jl++, dst += panel)
                    for (int64_t t = 0; t < width; t++) {
                        int64_t o = cg * opg + j0 + t;
                        dst[t] = c->dtype == FIB_DTYPE_F32
                                     ? (double)((const float *)c->weights)[(o * ipg + jl) * kk + q]
                                     : kernel_at(c, o, jl, q);
                    }
        }
    return k;
}

/* Patches of convolution group cg for output positions [p0, p1): row p -
 * p0 holds, tap by tap, the group's inputs under that tap (zeros in the
 * padding). */
static void fill_patches(const fib_conv *c, const fib_group *src, int64_t out_cols,
                         const double *x, int64_t cg, int64_t p0, int64_t p1, double *patch)
{
    const fib_window *w = &c->win;
    int64_t ipg = in_per_group(c), kk = kernel_size(c);
    for (int64_t p = p0; p < p1; p++) {
        int64_t r = p / out_cols, col = p % out_cols;
        for (int64_t kr = 0; kr < w->kernel_rows; kr++) {
            int64_t ir = r * w->stride_rows - w->pad_rows + kr;
            for (int64_t kc = 0; kc < w->kernel_cols; kc++) {
                int64_t ic = col * w->stride_cols - w->pad_cols + kc;
                double *dst = patch + ((p - p0) * kk + kr * w->kernel_cols + kc) * ipg;
                if (ir < 0 || ir >= src->rows || ic < 0 || ic >= src->cols)
                    memset(dst, 0, (size_t)ipg * sizeof *dst);
                else
                    memcpy(dst, x + (ir * src->cols + ic) * c->in_channels + cg * ipg,
                           (size_t)ipg * sizeof *dst);
            }
        }
    }
}

/* Output positions per piece of work: about 2 MB of patches. */
static int64_t positions_per_chunk(int64_t patch_len)
{
    int64_t n = ((int64_t)1 << 18) / patch_len;
    return n < 1 ? 1 : n;
}

/* Output by output, in gemm_f64's order and with its fused terms (fused.h),
 * so with its bits: for convolutions with few outputs per group
 * (depthwise), whose panels would be mostly padding, and without memory
 * for the kernel matrices or patches. */
static void conv_forward_plain(const fib_conv *c, const fib_group *grp, const fib_group *src,
                               const double *xb, double *yb)
{
    const fib_window *w = &c->win;
    const fib_fused *fused = fib_fused_active();
    int64_t n_out = grp->n_units, opg = n_out / c->groups, ipg = in_per_group(c);
    for (int64_t p = 0; p < grp->rows * grp->cols; p++)
        for (int64_t o = 0; o < n_out; o++) {
            int64_t r = p / grp->cols, col = p % grp->cols;
            double z = yb[p * n_out + o];
            for (int64_t kr = 0; kr < w->kernel_rows; kr++)
                for (int64_t kc = 0; kc < w->kernel_cols; kc++) {
                    int64_t ir = r * w->stride_rows - w->pad_rows + kr;
                    int64_t ic = col * w->stride_cols - w->pad_cols + kc;
                    if (ir < 0 || ir >= src->rows || ic < 0 || ic >= src->cols)
                        continue;
                    const double *px = xb + (ir * src->cols + ic) * c->in_channels +
                                       (o / opg) * ipg;
                    int64_t q = kr * w->kernel_cols + kc;
                    int64_t at = o * ipg * kernel_size(c) + q;
                    if (c->dtype == FIB_DTYPE_F32)
                        z = fused->dot_f32(z, (const float *)c->weights + at, kernel_size(c),
                                           px, ipg);
                    else if (c->dtype == FIB_DTYPE_F64)
                        z = fused->dot(z, (const double *)c->weights + at, kernel_size(c),
                                       px, ipg);
                    else
                        for (int64_t jl = 0; jl < ipg; jl++)
                            z = fused->term(kernel_at(c, o, jl, q), px[jl], z);
                }
            yb[p * n_out + o] = z;
        }
}

/* Each output is its bias plus the products of its kernel with its patch,
 * added tap by tap and input by input (gemm_f64's order): one piece of work
 * per chunk of output positions, so every thread count gives the same bits.
 * A 1 x 1 convolution of stride 1 without padding reads its input rows as
 * they are. */
static void conv_forward(const fib_graph *g, int32_t group, int64_t batch,
                         double *const *activity, double *out)
{
    const fib_group *grp = &g->groups[group];
    const fib_group *src = &g->groups[grp->sources[0]];
    const fib_conv *c = conv_of(g, group);
    const fib_window *w = &c->win;
    int64_t n_out = grp->n_units, opg = n_out / c->groups, ipg = in_per_group(c);
    int64_t patch_len = kernel_size(c) * ipg, positions = grp->rows * grp->cols;
    bool direct = kernel_size(c) == 1 && w->stride_rows == 1 && w->stride_cols == 1 &&
                  w->pad_rows == 0 && w->pad_cols == 0;
    int64_t chunk = positions_per_chunk(patch_len);
    int64_t n_chunks = (positions + chunk - 1) / chunk;
    int threads = fib_thread_count(0, n_chunks);
    const fib_kernels *kernels = fib_kernels_active();
    int64_t matrix_len = fib_gemm_packed_len(patch_len, opg, kernels->gemm_panel);
    bool thin = opg * 4 < kernels->gemm_panel;
    double *matrices = thin ? NULL : kernel_matrices(c, n_out, kernels->gemm_panel);
    double *patches = direct || thin ? NULL
                                     : fib_alloc(chunk * patch_len * threads, sizeof *patches);
    for (int64_t b = 0; b < batch; b++) {
        const double *xb = activity[grp->sources[0]] + b * fib_group_activity_width(src);
        double *yb = out + b * fib_group_activity_width(grp);
        for (int64_t p = 0; p < positions; p++)
            for (int64_t o = 0; o < n_out; o++)
                yb[p * n_out + o] = fib_load_or(c->dtype, c->bias, o, 0.0);
        if (!matrices || (!direct && !patches)) {
            conv_forward_plain(c, grp, src, xb, yb);
            continue;
        }
        FIB_PRAGMA(omp parallel for num_threads(threads) schedule(static) if (threads > 1))
        for (int64_t t = 0; t < n_chunks; t++) {
            int64_t p0 = t * chunk, p1 = p0 + chunk < positions ? p0 + chunk : positions;
            double *patch = direct ? NULL : patches + chunk * patch_len * fib_thread_num();
            for (int64_t cg = 0; cg < c->groups; cg++) {
                if (!direct)
                    fill_patches(c, src, grp->cols, xb, cg, p0, p1, patch);
                const double *a = direct ? xb + p0 * c->in_channels + cg * ipg : patch;
                kernels->gemm_f64(p1 - p0, opg, patch_len, a,
                                  direct ? c->in_channels : patch_len, matrices + cg * matrix_len,
                                  yb + p0 * n_out + cg * opg, n_out);
            }
        }
    }
    fib_free(matrices);
    fib_free(patches);
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
        int64_t block = co / opg;
        for (int64_t jl = 0; jl < in_per_group(c); jl++) {
            int64_t cj = in_p->color[first_in + jl];
            /* one block (groups 1) needs no division per kernel */
            if (groups > 1 && cj / ipg != block)
                return false;
            double *dst = w + (co * ipg + (groups > 1 ? cj % ipg : cj)) * kk;
            if (c->dtype == FIB_DTYPE_F32) {
                const float *kernel = (const float *)c->weights + (o * in_per_group(c) + jl) * kk;
                for (int64_t q = 0; q < kk; q++)
                    dst[q] += (double)kernel[q];
            } else {
                for (int64_t q = 0; q < kk; q++)
                    dst[q] += kernel_at(c, o, jl, q);
            }
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
    if (c->groups > 1 && groups == 1 && k_out * k_in > n_out * in_per_group(c)) {
        fib_free(w);
        fib_free(b);
        fib_free(sizes);
        return fib_error(FIB_E_UNSUPPORTED,
                         "group %d: the classes of grouped convolution (%lld groups) do not "
                         "form equal groups (%lld output and %lld input classes): its base "
                         "would have more parameters than the original (%lld x %lld kernels "
                         "against %lld x %lld); colour with fibers, which keep a grouped "
                         "convolution's classes within equal groups",
                         (int)group, (long long)c->groups, (long long)k_out, (long long)k_in,
                         (long long)k_out, (long long)k_in, (long long)n_out,
                         (long long)in_per_group(c));
    }
    fib_partition_class_sizes(out_p, sizes);
    for (int64_t cls = 0; cls < k_out; cls++) {
        for (int64_t x = 0; sizes[cls] > 1 && x < (k_in / groups) * kk; x++)
            w[cls * (k_in / groups) * kk + x] /= (double)sizes[cls];
        if (b)
            b[cls] /= (double)sizes[cls];
    }
    fib_free(sizes);
    return add_conv_owned(base, base_ids[source], k_out, groups, &c->win, w, b);
}

/* fib_compress_options.borrow: a convolution whose channels and source
 * channels are all kept is its own kernels, with its own groups; the base
 * block reads them where the original holds them. */
static int32_t conv_compress_borrowed(const fib_graph *g, int32_t group, fib_graph *base,
                                      const int32_t *base_ids)
{
    const fib_conv *c = conv_of(g, group);
    fib_conv *b = fib_calloc(1, sizeof *b);
    if (!b)
        return fib_error(FIB_E_NOMEM, "group %d: out of memory", (int)group);
    *b = (fib_conv){.dtype = c->dtype, .in_channels = c->in_channels, .groups = c->groups,
                    .win = c->win, .weights = c->weights, .bias = c->bias};
    int32_t id;
    return push_conv(base, base_ids[g->groups[group].sources[0]], g->groups[group].n_units, b,
                     &id);
}

/* fib_compress_options.dtype FIB_DTYPE_F32: a merged base kernel and bias
 * (float64, owned) rounded to float32 in their own memory. */
static int32_t conv_narrow(fib_graph *base, int32_t group)
{
    fib_conv *c = (fib_conv *)base->groups[group].block;
    if (c->dtype != FIB_DTYPE_F64 || !c->owned_weights || (c->bias && !c->owned_bias))
        return FIB_OK;
    int64_t n_out = base->groups[group].n_units;
    /* each pointer follows its buffer at once: a failure frees the base */
    int32_t status = fib_narrow_owned(&c->owned_weights, n_out * in_per_group(c) * kernel_size(c),
                                      group, "weight");
    c->weights = c->owned_weights;
    if (!status && c->bias) {
        status = fib_narrow_owned(&c->owned_bias, n_out, group, "bias");
        c->bias = c->owned_bias;
    }
    if (!status)
        c->dtype = FIB_DTYPE_F32;
    return status;
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

/* A grouped convolution keeps its groups in the base when its classes
 * and its source's stay within its channel groups, equally many in each
 * (color/unit_runs.c). A depthwise one keeps one group per class instead
 * (base_groups), which asks nothing of the classes. */
static int64_t conv_unit_runs(const fib_graph *g, int32_t group)
{
    const fib_conv *c = conv_of(g, group);
    return in_per_group(c) > 1 ? c->groups : 1;
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
                                 in_per_group(c) * kernel_size(c), 0};
    else if (index == 1 && c->bias)
        *out = (fib_tensor_view){"bias", c->dtype, c->bias, 1, {n_out, 1, 1, 1}, 1, 0};
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

/* A channel whose kernel is zero outputs its bias. */
static double conv_budget_constant(const fib_graph *g, int32_t group, int64_t unit,
                                   const double *source_values)
{
    (void)source_values;
    const fib_conv *c = conv_of(g, group);
    return c->groups == 1 ? fib_load_or(c->dtype, c->bias, unit, 0.0) : NAN;
}

/* A constant input channel adds the same to every output position only
 * where no tap reads the zero padding: with padding, only 0 is exact. */
static bool conv_budget_absorbs(const fib_graph *g, int32_t group, int32_t source_index,
                                double value)
{
    (void)source_index;
    const fib_conv *c = conv_of(g, group);
    if (c->groups != 1)
        return false;
    return value == 0 || (c->bias && c->win.pad_rows == 0 && c->win.pad_cols == 0);
}

static int32_t conv_budget_absorb(fib_graph *g, int32_t group, int32_t source_index,
                                  const double *values)
{
    (void)source_index;
    fib_conv *c = g->groups[group].block;
    int64_t kk = kernel_size(c), n_in = c->in_channels;
    bool moves = false;
    for (int64_t j = 0; j < n_in; j++)
        moves |= !isnan(values[j]) && values[j] != 0;
    if (c->groups != 1 || !c->owned_weights || (moves && !c->owned_bias))
        return fib_error(FIB_E_UNSUPPORTED, "group %d: a convolution that is grouped or "
                         "borrows its weights cannot take a removed channel's constant",
                         (int)group);
    for (int64_t o = 0; o < g->groups[group].n_units; o++) {
        double shift = 0;
        for (int64_t j = 0; j < n_in; j++) {
            if (isnan(values[j]))
                continue;
            for (int64_t q = 0; q < kk; q++) {
                int64_t at = (o * n_in + j) * kk + q;
                shift += values[j] * fib_load(c->dtype, c->owned_weights, at);
                fib_store(c->dtype, c->owned_weights, at, 0.0);
            }
        }
        if (shift != 0)
            fib_store(c->dtype, c->owned_bias, o, fib_load(c->dtype, c->owned_bias, o) + shift);
    }
    return FIB_OK;
}

/* mean = the taps' sum of W mu + b; standard deviation the taps' sum of
 * |W| sd, the largest the inputs' correlations can make it (as for dense
 * blocks); every tap reading a channel (the zero padding at the border is
 * not told apart). */
static bool conv_budget_moments(const fib_graph *g, int32_t group, const double *const *mean,
                                const double *const *var, double *pre_mean, double *pre_var)
{
    const fib_conv *c = conv_of(g, group);
    int64_t n_out = g->groups[group].n_units, out_per_group = n_out / c->groups;
    for (int64_t o = 0; o < n_out; o++) {
        int64_t first_in = (o / out_per_group) * in_per_group(c);
        double m = 0, v = 0;
        for (int64_t jl = 0; jl < in_per_group(c); jl++)
            for (int64_t q = 0; q < kernel_size(c); q++) {
                double w = kernel_at(c, o, jl, q);
                m += w * mean[0][first_in + jl];
                v += fabs(w) * sqrt(var[0][first_in + jl]);
            }
        pre_mean[o] = m + fib_load_or(c->dtype, c->bias, o, 0.0);
        pre_var[o] = v * v;
    }
    return true;
}

static const char *const conv_tensor_keys[] = {"weight", "bias", NULL};

static int32_t conv_build(fib_graph *g, const fib_block_source *S, int32_t *id)
{
    int32_t st = fib_source_no_extras(S, true, false, conv_tensor_keys);
    if (st == FIB_OK)
        st = fib_source_expect_params(S, 7);
    if (st == FIB_OK)
        st = fib_source_check_window(S, 0);
    if (st != FIB_OK)
        return st;
    const int64_t *p = S->params;
    int64_t in = fib_source_group(g, S, 0)->n_units, groups = p[6];
    if (groups < 1 || in % groups || S->units % groups)
        return fib_source_error(S, "'params' item 6 (groups) is %lld; "
                                "it must divide both %lld input and %lld output "
                                "channels", (long long)groups, (long long)in,
                                (long long)S->units);
    fib_source_tensors s;
    st = fib_source_weight_bias(S, 4, (int64_t[]){S->units, in / groups, p[0], p[1]}, &s);
    if (st != FIB_OK)
        return st;
    st = fib_graph_add_conv(g, S->sources[0], S->units, p[0], p[1], p[2],
                            p[3], p[4], p[5], groups, s.dtype, s.data[0],
                            s.data[1], s.flags, id);
    fib_source_tensors_free(&s);
    return fib_source_done(S, st);
}

const fib_block_ops fib_conv_ops = {
    .name = "conv",
    .build = conv_build,
    .free_block = conv_free,
    .fiber_width = conv_fiber_width,
    .fiber_fill = conv_fiber_fill,
    .opfiber_width = conv_opfiber_width,
    .opfiber_fill = conv_opfiber_fill,
    .fiber_view = conv_fiber_view,
    .opfiber_view = conv_opfiber_view,
    .forward = conv_forward,
    .compress = conv_compress,
    .compress_borrowed = conv_compress_borrowed,
    .narrow = conv_narrow,
    .lift = conv_lift,
    .num_parameters = conv_num_parameters,
    .tensor = conv_tensor,
    .params = conv_params,
    .unit_runs = conv_unit_runs,
    .budget_role = conv_budget_role,
    .budget_parameters = conv_budget_parameters,
    .budget_backward = conv_budget_backward,
    .budget_constant = conv_budget_constant,
    .budget_absorbs = conv_budget_absorbs,
    .budget_absorb = conv_budget_absorb,
    .budget_moments = conv_budget_moments,
};
