/* A constant added per unit and position: z[p][i] = x[p][reads[i]] +
 * shift[p][i] (learned position embeddings: a Vision Transformer's, GPT-2's).
 * Units of one class have equal shifts at every position (unit_constants.c:
 * the shifts are part of the fiber signature, one row per position). */
#include "blocks/blocks.h"
#include "model/gather.h"


/* The block's constants are the shifts, one row of n_units per position. */
static const fib_unit_constants_block *shift_of(const fib_graph *g, int32_t group)
{
    return fib_unit_constants_block_of(g, group);
}

/* Takes `shift` and `reads` over (freed on failure too). */
static int32_t push_shift(fib_graph *g, int32_t source, int64_t n_units,
                          fib_unit_constants shift, int64_t *reads, int32_t *group_out)
{
    fib_group grp = {.op = FIB_OP_POSITION_SHIFT, .n_units = n_units,
                     .activation = FIB_ACT_LINEAR, .n_sources = 1, .sources = {source, 0},
                     .ops = &fib_position_shift_ops};
    return fib_unit_constants_block_push(g, grp, shift, reads, push_shift, group_out);
}

int32_t fib_graph_add_position_shift(fib_graph *g, int32_t source, int32_t dtype,
                                     const void *shift, int32_t *group_out)
{
    static const char fn[] = "fib_graph_add_position_shift";
    int32_t status = fib_graph_check_group(g, source, fn);
    if (status)
        return status;
    int32_t group = g->n_groups;
    if (!shift || !group_out)
        return fib_error(FIB_E_NULL, "%s: %s is NULL", fn, shift ? "group_out" : "shift");
    if (!fib_dtype_size(dtype))
        return fib_error(FIB_E_INVALID, "%s: group %d: unknown dtype %d", fn, (int)group,
                         (int)dtype);
    const fib_group *src = &g->groups[source];
    fib_unit_constants copy;
    status = fib_unit_constants_copy(&copy, dtype, fib_group_positions(src), src->n_units,
                                     shift, fn, group);
    if (status)
        return status;
    return push_shift(g, source, src->n_units, copy, NULL, group_out);
}

/* Model files: float64 shifts (positions x n_units) and a gather, taken
 * over. */
int32_t fib_graph_add_position_shift_owned(fib_graph *g, int32_t source, int64_t n_units,
                                           double *shift, int64_t *reads, int32_t *group_out)
{
    fib_unit_constants table = {.dtype = FIB_DTYPE_F64,
                                .rows = fib_group_positions(&g->groups[source]),
                                .values = shift};
    return push_shift(g, source, n_units, table, reads, group_out);
}

static void shift_forward(const fib_graph *g, int32_t group, int64_t batch,
                          double *const *activity, double *out)
{
    const fib_group *grp = &g->groups[group];
    const fib_unit_constants_block *s = shift_of(g, group);
    const double *x = activity[grp->sources[0]];
    int64_t n = grp->n_units, n_src = g->groups[grp->sources[0]].n_units;
    int64_t positions = fib_group_positions(grp);
    for (int64_t b = 0; b < batch; b++)
        for (int64_t p = 0; p < positions; p++) {
            const double *xp = x + (b * positions + p) * n_src;
            double *yp = out + (b * positions + p) * n;
            for (int64_t i = 0; i < n; i++)
                yp[i] = xp[fib_gather_at(s->reads, i)] + fib_unit_constant(&s->values, n, p, i);
        }
}

static int64_t shift_num_parameters(const fib_graph *g, int32_t group)
{
    return fib_group_activity_width(&g->groups[group]);
}

static bool shift_tensor(const fib_graph *g, int32_t group, int32_t index, fib_tensor_view *out)
{
    const fib_unit_constants *t = &shift_of(g, group)->values;
    int64_t n = g->groups[group].n_units;
    if (index != 0)
        return false;
    *out = (fib_tensor_view){"shift", t->dtype, t->values, 2, {t->rows, n, 1, 1}, n, 0};
    return true;
}

/* Per unit, the source unit it reads. */
static int64_t shift_params(const fib_graph *g, int32_t group, int64_t *out, int64_t capacity)
{
    const int64_t *reads = shift_of(g, group)->reads;
    int64_t n = g->groups[group].n_units;
    for (int64_t i = 0; i < n && i < capacity; i++)
        out[i] = fib_gather_at(reads, i);
    return n;
}

/* ---- budgets ------------------------------------------------------------ */

/* Unit i adds its shifts to source unit i: it follows the source's classes
 * (a base's shift is its class's mean, fib_unit_constants_merge); a shift
 * that reads its source in another order takes no budget. */
static int32_t shift_budget_role(const fib_graph *g, int32_t group)
{
    int64_t n = g->groups[group].n_units;
    return fib_gather_is_identity(shift_of(g, group)->reads, n,
                                  g->groups[g->groups[group].sources[0]].n_units)
               ? FIB_BUDGET_FOLLOWS : 0;
}

/* One shift per unit and position, as torch counts a position embedding. */
static int64_t shift_budget_parameters(const fib_graph *g, int32_t group, const int64_t *width)
{
    return width[group] * fib_group_positions(&g->groups[group]);
}

static void shift_budget_backward(const fib_graph *g, int32_t group, int32_t source_index,
                                  const double *energy, double *src_energy)
{
    (void)source_index;
    for (int64_t i = 0; i < g->groups[group].n_units; i++)
        src_energy[i] += energy[i];
}

static const char *const position_shift_tensor_keys[] = {"shift", NULL};

/* params: per unit its source unit; tensor shift: positions x units. */
static int32_t position_shift_build(fib_graph *g, const fib_block_source *S, int32_t *id)
{
    int32_t st = fib_source_no_extras(S, true, false, position_shift_tensor_keys);
    if (st == FIB_OK)
        st = fib_source_expect_params(S, S->units);
    const fib_group *src = fib_source_group(g, S, 0);
    fib_stored_tensor t = {0};
    if (st == FIB_OK)
        st = fib_source_tensor(S, "shift", true, 2,
                               (int64_t[]){fib_group_positions(src), S->units}, &t);
    int64_t *reads = NULL;
    double *shift = NULL;
    if (st == FIB_OK)
        st = fib_source_read_gather(S, 0, S->units, src->n_units, &reads);
    if (st == FIB_OK && !reads) /* as users build it: the file's dtype */
        return fib_source_done(S, fib_graph_add_position_shift(g, S->sources[0], t.dtype,
                                                               t.data, id));
    if (st == FIB_OK)
        st = fib_source_owned_copy(S, "shift", &t, false, &shift);
    if (st != FIB_OK) {
        fib_free(reads);
        return st;
    }
    return fib_source_done(S, fib_graph_add_position_shift_owned(g, S->sources[0], S->units,
                                                                 shift, reads, id));
}

const fib_block_ops fib_position_shift_ops = {
    .name = "position_shift",
    .build = position_shift_build,
    /* fibers: the source unit's colour and the unit's shift at every
     * position; the error passes unchanged to the unit read */
    .free_block = fib_unit_constants_block_free,
    .fiber_width = fib_unit_constants_block_fiber_width,
    .fiber_fill = fib_unit_constants_block_fiber_fill,
    .fiber_view = fib_unit_constants_block_fiber_view,
    .opfiber_width = fib_per_class_opfiber_width,
    .opfiber_fill = fib_unit_constants_block_opfiber_fill,
    .opfiber_exact_width = fib_unit_constants_block_opfiber_exact_width,
    .opfiber_exact_fill = fib_unit_constants_block_opfiber_exact_fill,
    .forward = shift_forward,
    .compress = fib_unit_constants_block_compress,
    .lift = fib_unit_constants_block_lift,
    .num_parameters = shift_num_parameters,
    .tensor = shift_tensor,
    .params = shift_params,
    .budget_role = shift_budget_role,
    .budget_parameters = shift_budget_parameters,
    .budget_backward = shift_budget_backward,
};
