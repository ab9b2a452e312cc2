/* Constant positions prepended to a sequence (a Vision Transformer's class
 * token): z[p][i] = values[p][i] for the first k positions, then source
 * unit reads[i] at the source's positions in row-major order. The new group
 * is a sequence (cols = 1) of k + rows x cols positions, so an image source
 * becomes the sequence of its patches (torchvision's reshape and permute
 * after the patch convolution). Units of one class carry the same constants
 * (unit_constants.c: they are part of the fiber signature). */
#include "blocks/blocks.h"
#include "model/gather.h"


/* The block's constants are the k = values.rows prepended rows of n_units. */
static const fib_unit_constants_block *prepend_of(const fib_graph *g, int32_t group)
{
    return fib_unit_constants_block_of(g, group);
}

/* Takes `values` and `reads` over (freed on failure too). */
static int32_t push_prepend(fib_graph *g, int32_t source, int64_t n_units,
                            fib_unit_constants values, int64_t *reads, int32_t *group_out)
{
    int64_t k = values.rows, steps = fib_group_positions(&g->groups[source]);
    if (k > FIB_MAX_UNITS || steps > FIB_MAX_UNITS - k) {
        fib_unit_constants_free(&values);
        fib_free(reads);
        return fib_error(FIB_E_OVERFLOW, "group %d: %lld prepended positions overflow",
                         (int)g->n_groups, (long long)k);
    }
    fib_group grp = {.op = FIB_OP_PREPEND, .n_units = n_units, .rows = k + steps, .cols = 1,
                     .activation = FIB_ACT_LINEAR, .n_sources = 1, .sources = {source, 0},
                     .ops = &fib_prepend_ops};
    return fib_unit_constants_block_push(g, grp, values, reads, push_prepend, group_out);
}

int32_t fib_graph_add_prepend(fib_graph *g, int32_t source, int64_t n_positions,
                              int32_t dtype, const void *values, int32_t *group_out)
{
    static const char fn[] = "fib_graph_add_prepend";
    int32_t status = fib_graph_check_group(g, source, fn);
    if (status)
        return status;
    int32_t group = g->n_groups;
    if (!group_out || (n_positions > 0 && !values))
        return fib_error(FIB_E_NULL, "%s: %s is NULL", fn, group_out ? "values" : "group_out");
    if (n_positions < 0)
        return fib_error(FIB_E_SHAPE, "%s: group %d: %lld prepended positions (at least 0)",
                         fn, (int)group, (long long)n_positions);
    if (n_positions > 0 && !fib_dtype_size(dtype))
        return fib_error(FIB_E_INVALID, "%s: group %d: unknown dtype %d", fn, (int)group,
                         (int)dtype);
    int64_t n = g->groups[source].n_units, count;
    if (!fib_mul_i64(n_positions, n, &count) || count > FIB_MAX_UNITS)
        return fib_error(FIB_E_OVERFLOW, "%s: group %d: %lld x %lld values exceed 2^40", fn,
                         (int)group, (long long)n_positions, (long long)n);
    fib_unit_constants copy;
    status = fib_unit_constants_copy(&copy, dtype, n_positions, n, values, fn, group);
    if (status)
        return status;
    return push_prepend(g, source, n, copy, NULL, group_out);
}

/* Model files: float64 values (k x n_units) and a gather, taken over. */
int32_t fib_graph_add_prepend_owned(fib_graph *g, int32_t source, int64_t n_positions,
                                    int64_t n_units, double *values, int64_t *reads,
                                    int32_t *group_out)
{
    fib_unit_constants table = {.dtype = FIB_DTYPE_F64, .rows = n_positions,
                                .values = values};
    return push_prepend(g, source, n_units, table, reads, group_out);
}

static void prepend_forward(const fib_graph *g, int32_t group, int64_t batch,
                            double *const *activity, double *out)
{
    const fib_group *grp = &g->groups[group];
    const fib_group *src = &g->groups[grp->sources[0]];
    const fib_unit_constants_block *p = prepend_of(g, group);
    const double *x = activity[grp->sources[0]];
    int64_t n = grp->n_units, n_src = src->n_units, steps = fib_group_positions(src);
    int64_t k = p->values.rows;
    for (int64_t b = 0; b < batch; b++) {
        double *yb = out + b * fib_group_activity_width(grp);
        for (int64_t q = 0; q < k; q++)
            for (int64_t i = 0; i < n; i++)
                yb[q * n + i] = fib_unit_constant(&p->values, n, q, i);
        for (int64_t t = 0; t < steps; t++) {
            const double *xt = x + (b * steps + t) * n_src;
            double *yt = yb + (k + t) * n;
            for (int64_t i = 0; i < n; i++)
                yt[i] = xt[fib_gather_at(p->reads, i)];
        }
    }
}

static int64_t prepend_num_parameters(const fib_graph *g, int32_t group)
{
    return prepend_of(g, group)->values.rows * g->groups[group].n_units;
}

static bool prepend_tensor(const fib_graph *g, int32_t group, int32_t index,
                           fib_tensor_view *out)
{
    const fib_unit_constants *t = &prepend_of(g, group)->values;
    int64_t n = g->groups[group].n_units;
    if (index != 0 || t->rows == 0)
        return false;
    *out = (fib_tensor_view){"values", t->dtype, t->values, 2, {t->rows, n, 1, 1}, n, 0};
    return true;
}

/* The number of prepended positions, then per unit the source unit read. */
static int64_t prepend_params(const fib_graph *g, int32_t group, int64_t *out,
                              int64_t capacity)
{
    const fib_unit_constants_block *p = prepend_of(g, group);
    int64_t n = g->groups[group].n_units;
    for (int64_t x = 0; x < 1 + n && x < capacity; x++)
        out[x] = x == 0 ? p->values.rows : fib_gather_at(p->reads, x - 1);
    return 1 + n;
}

static const char *const prepend_tensor_keys[] = {"values", NULL};

/* params: the number k of prepended positions, then per unit its source
 * unit; tensor values: k x units (absent when k is 0). */
static int32_t prepend_build(fib_graph *g, const fib_block_source *S, int32_t *id)
{
    int32_t st = fib_source_no_extras(S, true, false, prepend_tensor_keys);
    if (st == FIB_OK)
        st = fib_source_expect_params(S, 1 + S->units);
    if (st != FIB_OK)
        return st;
    int64_t k = S->params[0];
    const fib_group *src = fib_source_group(g, S, 0);
    if (k < 0 || k > FIB_MAX_UNITS || k * S->units > FIB_MAX_UNITS)
        return fib_source_error(S, "'params' item 0: %lld prepended positions",
                                (long long)k);
    fib_stored_tensor t = {0};
    if (k > 0)
        st = fib_source_tensor(S, "values", true, 2, (int64_t[]){k, S->units}, &t);
    else if (S->names_tensors)
        st = fib_source_error(S, "'tensors': a prepend of 0 positions has none");
    int64_t *reads = NULL;
    double *values = NULL;
    if (st == FIB_OK)
        st = fib_source_read_gather(S, 1, S->units, src->n_units, &reads);
    if (st == FIB_OK && !reads) /* as users build it: the file's dtype */
        return fib_source_done(S, fib_graph_add_prepend(g, S->sources[0], k,
                                                        t.name ? t.dtype : FIB_DTYPE_F64,
                                                        t.name ? t.data : NULL, id));
    if (st == FIB_OK)
        st = fib_source_owned_copy(S, "values", &t, false, &values);
    if (st != FIB_OK) {
        fib_free(reads);
        return st;
    }
    return fib_source_done(S, fib_graph_add_prepend_owned(g, S->sources[0], k, S->units,
                                                          values, reads, id));
}

const fib_block_ops fib_prepend_ops = {
    .name = "prepend",
    .build = prepend_build,
    /* fibers: the source unit's colour and the unit's constants */
    .free_block = fib_unit_constants_block_free,
    .fiber_width = fib_unit_constants_block_fiber_width,
    .fiber_fill = fib_unit_constants_block_fiber_fill,
    .fiber_view = fib_unit_constants_block_fiber_view,
    .opfiber_width = fib_per_class_opfiber_width,
    .opfiber_fill = fib_unit_constants_block_opfiber_fill,
    .opfiber_exact_width = fib_unit_constants_block_opfiber_exact_width,
    .opfiber_exact_fill = fib_unit_constants_block_opfiber_exact_fill,
    .forward = prepend_forward,
    .compress = fib_unit_constants_block_compress,
    .lift = fib_unit_constants_block_lift,
    .num_parameters = prepend_num_parameters,
    .tensor = prepend_tensor,
    .params = prepend_params,
};
