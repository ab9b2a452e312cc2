/* One position of a sequence (x[:, -1] or x[:, 0] in PyTorch): a plain
 * group whose unit i copies unit reads[i] of the source at that position.
 * Two kinds share the code: the last step (FIB_OP_LAST_STEP) and a step
 * chosen by index (FIB_OP_SELECT_STEP), which differ only in the op and in
 * their params. A graph built by users copies unit i (reads = NULL); a base
 * gathers, because its unit c copies the source class of c's first member. */
#include "blocks/blocks.h"
#include "model/gather.h"


typedef struct fib_last_step {
    int64_t position; /* 0 <= position < the source's rows */
    int64_t *reads;   /* NULL: identity */
} fib_last_step;


static bool is_select(const fib_graph *g, int32_t group)
{
    return g->groups[group].ops == &fib_select_step_ops;
}

static int64_t position_of(const fib_graph *g, int32_t group)
{
    return ((const fib_last_step *)g->groups[group].block)->position;
}

static const int64_t *reads_of(const fib_graph *g, int32_t group)
{
    return ((const fib_last_step *)g->groups[group].block)->reads;
}

static void last_step_free(void *block)
{
    fib_last_step *s = block;
    if (!s)
        return;
    fib_free(s->reads);
    fib_free(s);
}

/* Takes `reads` over (freed on failure too). select: a FIB_OP_SELECT_STEP
 * group at `position`, else the last step. */
static int32_t push_step(fib_graph *g, int32_t source, bool select, int64_t position,
                         int64_t n_units, int64_t *reads, int32_t *group_out)
{
    fib_last_step *s = fib_calloc(1, sizeof *s);
    if (!s) {
        fib_free(reads);
        return fib_error(FIB_E_NOMEM, "out of memory adding a last step");
    }
    s->reads = reads;
    s->position = select ? position : g->groups[source].rows - 1;
    fib_group grp = {.op = select ? FIB_OP_SELECT_STEP : FIB_OP_LAST_STEP, .n_units = n_units,
                     .rows = 1, .cols = 1, .activation = FIB_ACT_LINEAR, .n_sources = 1,
                     .sources = {source, 0},
                     .ops = select ? &fib_select_step_ops : &fib_last_step_ops, .block = s};
    int32_t status = fib_graph_push_group(g, &grp, group_out);
    if (status)
        last_step_free(s);
    return status;
}

/* Checks that `source` is a sequence; fn names the caller. */
static int32_t check_sequence(const fib_graph *g, int32_t source, const int32_t *group_out,
                              const char *fn)
{
    int32_t status = fib_graph_check_group(g, source, fn);
    if (status)
        return status;
    if (!group_out)
        return fib_error(FIB_E_NULL, "%s: group_out is NULL", fn);
    const fib_group *src = &g->groups[source];
    if (src->cols != 1)
        return fib_error(FIB_E_SHAPE,
                         "%s: group %d: source group %d is not a sequence (%lld x %lld positions; "
                         "a sequence has cols = 1)",
                         fn, (int)g->n_groups, (int)source, (long long)src->rows,
                         (long long)src->cols);
    return FIB_OK;
}

int32_t fib_graph_add_last_step(fib_graph *g, int32_t source, int32_t *group_out)
{
    int32_t status = check_sequence(g, source, group_out, "fib_graph_add_last_step");
    if (status)
        return status;
    return push_step(g, source, false, 0, g->groups[source].n_units, NULL, group_out);
}

int32_t fib_graph_add_select_step(fib_graph *g, int32_t source, int64_t position,
                                  int32_t *group_out)
{
    static const char fn[] = "fib_graph_add_select_step";
    int32_t status = check_sequence(g, source, group_out, fn);
    if (status)
        return status;
    int64_t steps = g->groups[source].rows;
    if (position < -steps || position >= steps)
        return fib_error(FIB_E_RANGE, "%s: group %d: position %lld is outside the %lld "
                         "steps of group %d (-%lld .. %lld)", fn, (int)g->n_groups,
                         (long long)position, (long long)steps, (int)source,
                         (long long)steps, (long long)steps - 1);
    return push_step(g, source, true, position < 0 ? steps + position : position,
                     g->groups[source].n_units, NULL, group_out);
}

/* Fibers: the colour of the source unit copied. */
static int64_t last_step_fiber_width(const fib_graph *g, int32_t group,
                                     const fib_partition *parts)
{
    (void)g, (void)group, (void)parts;
    return 1;
}

static int32_t last_step_fiber_fill(const fib_graph *g, int32_t group,
                                    const fib_partition *parts, fib_signature *sig,
                                    int64_t offset)
{
    fib_gather_label_fill(g, group, parts, reads_of(g, group), sig, offset);
    return FIB_OK;
}

/* Opfibers: a source unit receives, at the selected position, the errors of
 * the units that copy it (with the identity map, just the class of unit i). */
static int32_t last_step_opfiber_fill(const fib_graph *g, int32_t group,
                                      int32_t source_index,
                                      const fib_partition *parts,
                                      const fib_partition *fibers,
                                      fib_signature *sig, int64_t offset)
{
    (void)source_index, (void)fibers;
    return fib_copy_opfiber_fill(g, group, reads_of(g, group), parts, sig, offset);
}

static void last_step_forward(const fib_graph *g, int32_t group, int64_t batch,
                              double *const *activity, double *out)
{
    const fib_group *grp = &g->groups[group];
    const fib_group *src = &g->groups[grp->sources[0]];
    const int64_t *reads = reads_of(g, group);
    const double *x = activity[grp->sources[0]];
    int64_t steps = src->rows, n_src = src->n_units, at = position_of(g, group);
    for (int64_t b = 0; b < batch; b++)
        for (int64_t i = 0; i < grp->n_units; i++)
            out[b * grp->n_units + i] = x[(b * steps + at) * n_src + fib_gather_at(reads, i)];
}

/* The block of a base (base unit c copies the source class of c's first
 * member) or of a lift (full unit i copies itself when its source unit lies
 * in the class its base unit copies, else the first member of that class),
 * made in `out`. */
static int32_t remake(const fib_graph *g, int32_t group, const fib_partition *parts,
                      fib_graph *out, const int32_t *out_ids, bool lift)
{
    int32_t source = g->groups[group].sources[0];
    int64_t *gather;
    int32_t status = lift ? fib_gather_for_lift(parts, group, source, reads_of(g, group), &gather)
                          : fib_gather_for_base(parts, group, source, reads_of(g, group), &gather);
    if (status)
        return status;
    int32_t id;
    return push_step(out, out_ids[source], is_select(g, group), position_of(g, group),
                     lift ? parts[group].n_units : parts[group].n_classes, gather, &id);
}

static int32_t last_step_compress(const fib_graph *g, int32_t group,
                                  const fib_partition *parts, fib_graph *base,
                                  const int32_t *base_ids)
{
    return remake(g, group, parts, base, base_ids, false);
}

static int32_t last_step_lift(const fib_graph *base, int32_t group,
                              const fib_partition *parts, fib_graph *full,
                              const int32_t *full_ids)
{
    return remake(base, group, parts, full, full_ids, true);
}

/* A last step whose unit i copies source unit reads[i] (NULL: i), taken
 * over (model files: bases gather). */
int32_t fib_graph_add_last_step_gather(fib_graph *g, int32_t source, int64_t n_units,
                                       int64_t *reads, int32_t *group_out)
{
    return push_step(g, source, false, 0, n_units, reads, group_out);
}

/* The same for a step chosen by index (0 <= position < the source's rows). */
int32_t fib_graph_add_select_step_gather(fib_graph *g, int32_t source, int64_t position,
                                         int64_t n_units, int64_t *reads, int32_t *group_out)
{
    return push_step(g, source, true, position, n_units, reads, group_out);
}

static int32_t not_a_sequence(const fib_block_source *S, const fib_group *src)
{
    return fib_source_error(S, "source group %d is not a sequence (positions "
                            "[%lld, %lld]; a sequence has cols = 1)", (int)S->sources[0],
                            (long long)src->rows, (long long)src->cols);
}

static int32_t last_step_build(fib_graph *g, const fib_block_source *S, int32_t *id)
{
    int32_t st = fib_source_no_extras(S, true, false, NULL);
    if (st != FIB_OK)
        return st;
    const fib_group *src = fib_source_group(g, S, 0);
    if (src->cols != 1)
        return not_a_sequence(S, src);
    /* params may be left out for the identity */
    int64_t *reads = NULL;
    if (S->n_params > 0 || S->units != src->n_units) {
        st = fib_source_expect_params(S, S->units);
        if (st == FIB_OK)
            st = fib_source_read_gather(S, 0, S->units, src->n_units, &reads);
        if (st != FIB_OK)
            return st;
    }
    if (!reads)
        return fib_source_done(S, fib_graph_add_last_step(g, S->sources[0], id));
    return fib_source_done(S, fib_graph_add_last_step_gather(g, S->sources[0],
                                                             S->units, reads, id));
}

/* params: the position (from the start), then per unit its source unit. */
static int32_t select_step_build(fib_graph *g, const fib_block_source *S, int32_t *id)
{
    int32_t st = fib_source_no_extras(S, true, false, NULL);
    if (st == FIB_OK)
        st = fib_source_expect_params(S, 1 + S->units);
    if (st != FIB_OK)
        return st;
    const fib_group *src = fib_source_group(g, S, 0);
    if (src->cols != 1)
        return not_a_sequence(S, src);
    if (S->params[0] < 0 || S->params[0] >= src->rows)
        return fib_source_error(S, "'params' item 0: position %lld is outside "
                                "the %lld steps of group %d", (long long)S->params[0],
                                (long long)src->rows, (int)S->sources[0]);
    int64_t *reads = NULL;
    st = fib_source_read_gather(S, 1, S->units, src->n_units, &reads);
    if (st != FIB_OK)
        return st;
    return fib_source_done(S, fib_graph_add_select_step_gather(g, S->sources[0], S->params[0],
                                                               S->units, reads, id));
}

/* Per unit, the source unit it copies (a select step: its position first). */
static int64_t last_step_params(const fib_graph *g, int32_t group, int64_t *out,
                                int64_t capacity)
{
    const int64_t *reads = reads_of(g, group);
    int64_t n = g->groups[group].n_units, head = is_select(g, group) ? 1 : 0;
    for (int64_t x = 0; x < head + n && x < capacity; x++)
        out[x] = x < head ? position_of(g, group) : fib_gather_at(reads, x - head);
    return head + n;
}

static int64_t last_step_num_parameters(const fib_graph *g, int32_t group)
{
    (void)g, (void)group;
    return 0;
}

/* Budgets: a step that copies every source unit in place follows its
 * source's classes, and hands each unit's energy to the unit it copies. */
static int32_t last_step_budget_role(const fib_graph *g, int32_t group)
{
    int64_t n_src = g->groups[g->groups[group].sources[0]].n_units;
    return fib_gather_is_identity(reads_of(g, group), g->groups[group].n_units, n_src)
               ? FIB_BUDGET_FOLLOWS
               : 0;
}

static void last_step_budget_backward(const fib_graph *g, int32_t group, int32_t source_index,
                                      const double *energy, double *src_energy)
{
    (void)source_index;
    const int64_t *reads = reads_of(g, group);
    for (int64_t i = 0; i < g->groups[group].n_units; i++)
        src_energy[fib_gather_at(reads, i)] += energy[i];
}

/* The two kinds differ only in their name and in whether the position is
 * chosen (is_select); they share every entry. */
#define STEP_OPS(kind_name, build_fn)                       \
    {                                                       \
        .name = kind_name,                                  \
        .build = build_fn,                                  \
        .free_block = last_step_free,                       \
        .fiber_width = last_step_fiber_width,               \
        .fiber_fill = last_step_fiber_fill,                 \
        .opfiber_width = fib_per_class_opfiber_width,       \
        .opfiber_fill = last_step_opfiber_fill,             \
        .forward = last_step_forward,                       \
        .compress = last_step_compress,                     \
        .lift = last_step_lift,                             \
        .num_parameters = last_step_num_parameters,         \
        .params = last_step_params,                         \
        .budget_role = last_step_budget_role,               \
        .budget_backward = last_step_budget_backward,       \
    }

const fib_block_ops fib_last_step_ops = STEP_OPS("last_step", last_step_build);
const fib_block_ops fib_select_step_ops = STEP_OPS("select_step", select_step_build);
