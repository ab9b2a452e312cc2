/* The model layer: the graph of groups and the table a block kind fills in
 * (fib_block_ops), partitions, signatures, colourings, the forward pass.
 * Uses only the kernels below it. Nothing here is part of the ABI. */
#ifndef FIB_MODEL_MODEL_H
#define FIB_MODEL_MODEL_H

#include "fibration.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/util.h"

/* Largest width of a group: keeps every index product inside int64_t. */
#define FIB_MAX_UNITS (INT64_C(1) << 40)
#define FIB_MAX_NAME 255

typedef struct fib_partition {
    int64_t n_units;
    int64_t n_classes;
    int64_t *color; /* canonical: classes numbered by their lowest unit */
} fib_partition;

/* A signature matrix under construction: n units x d coordinates, with the
 * rounding allowance of each coordinate (two coordinates a, b are equal up
 * to rounding iff |a - b| <= tol_a + tol_b). Row-major. */
/* Memory for one signature at a time, reused from group to group by one
 * colouring, so that each group does not map and fault in fresh pages (a
 * large signature is an mmap of its own in most allocators). It lives in
 * the call that colours (color/color.c), never in static state. */
typedef struct fib_scratch {
    double *block; /* value cells, then tol cells */
    int64_t cells; /* capacity: cells of each */
    bool in_use;   /* held by a live signature */
} fib_scratch;

/* A borrowed block of a signature: coordinate j < n of unit i is element
 * i * ld + j * step of `data` (dtype): a weight row (fibers over a
 * discrete source, step 1) or column (opfibers under a discrete consumer,
 * ld 1). With run > 1 the coordinates come in runs of `run` consecutive
 * elements, `step` apart: coordinate j is element i * ld + (j / run) *
 * step + j % run (the taps of a kernel, output after output). */
#define FIB_MAX_DIRECT_BLOCKS 4
typedef struct fib_direct_block {
    const void *data;
    int32_t dtype;
    int64_t ld, step, n;
    int64_t run; /* 0 or 1: no runs */
} fib_direct_block;

/* The element of coordinate j of a borrowed block, from its unit's first. */
static inline int64_t fib_direct_offset(const fib_direct_block *b, int64_t j)
{
    return b->run > 1 ? (j / b->run) * b->step + j % b->run : j * b->step;
}

typedef struct fib_signature {
    int64_t n_units;
    int64_t n_coords;
    double *value;
    double *tol;
    /* Borrowed leading coordinates (the _ex signatures only; 0 elsewhere):
     * n_direct of them, from n_blocks borrowed weight blocks in order (see
     * fib_direct_block). Each is a sum of one term whose allowance is
     * fib_rounding_tol(dtype, 1, |value|). value and tol then hold the other
     * coordinates, n_coords - n_direct per row. */
    int64_t n_direct;
    int32_t n_blocks;
    fib_direct_block blocks[FIB_MAX_DIRECT_BLOCKS];
    /* When > 0 (n_direct 0): fib_group_signatures also adds up, for each
     * class it finds, the first sum_leading values of its members' rows, in
     * ascending unit order from 0.0, into the row of its first member
     * (fib_merge_totals_keep reads them there); those values are consumed. */
    int64_t sum_leading;
    /* Threads for filling and grouping (0: the default); never changes a
     * result. */
    int32_t n_threads;
    /* Where value and tol came from (NULL: their own allocations). */
    fib_scratch *scratch;
} fib_signature;

/* The block holding borrowed coordinate j < n_direct; *j becomes its
 * coordinate in that block. */
static inline const fib_direct_block *fib_direct_find(const fib_signature *sig, int64_t *j)
{
    const fib_direct_block *b = sig->blocks;
    while (*j >= b->n) {
        *j -= b->n;
        b++;
    }
    return b;
}

/* Borrowed coordinate j < n_direct of unit i. */
static inline double fib_direct_value(const fib_signature *sig, int64_t i, int64_t j)
{
    const fib_direct_block *b = fib_direct_find(sig, &j);
    return fib_load(b->dtype, b->data, i * b->ld + fib_direct_offset(b, j));
}

/* The allowance of a coordinate that is a label (a class id, a head, a
 * position, a flavour): labels are equal or not, whatever the tolerance.
 * A label coordinate is a whole column: every unit's allowance there is
 * FIB_TOL_LABEL (grouping and linkage find the label columns in row 0). */
#define FIB_TOL_LABEL (-1.0)
/* The largest difference two coordinates may have to count as equal. */
static inline double fib_allowance(double eps, double tol_a, double tol_b)
{
    return tol_a < 0 || tol_b < 0 ? 0.0 : eps + tol_a + tol_b;
}

typedef struct fib_group fib_group;

/* A parameter tensor of a block, read in place: `shape[0]` rows of
 * `row_stride` elements, each row holding shape[1] x shape[2] x shape[3]
 * contiguous elements. */
typedef struct fib_tensor_view {
    const char *name;
    int32_t dtype;
    const void *data;
    int32_t ndim;
    int64_t shape[4];
    int64_t row_stride;
    int64_t col_stride; /* 0 or 1: contiguous rows; else element (r, x) at
                           r * row_stride + x * col_stride (fib_view_at) */
} fib_tensor_view;

/* The offset of element x of row r of a view. */
static inline int64_t fib_view_at(const fib_tensor_view *v, int64_t r, int64_t x)
{
    return r * v->row_stride + x * (v->col_stride > 1 ? v->col_stride : 1);
}

/* A block described elsewhere (a model file's group), to be built by its
 * kind (fib_block_ops.build) without the kind knowing where the
 * description is held: the holder gives the widths, integer params and
 * scalar, and answers two lookups (tensors by name, gathers) and its
 * messages. */
typedef struct fib_stored_tensor {
    const char *name; /* where it is held, for messages */
    int32_t dtype;
    const void *data;
    int64_t n_elements;
} fib_stored_tensor;

typedef struct fib_block_source fib_block_source;
struct fib_block_source {
    int32_t op;        /* FIB_OP_* */
    int64_t units;
    int32_t n_sources;
    const int32_t *sources;
    int64_t n_params;
    const int64_t *params;
    bool has_scalar;
    double scalar;
    bool names_tensors; /* the description names at least one tensor */
    bool copy;          /* constructors copy the tensors (FIB_COPY) */
    const char *path;   /* what holds it, for messages */
    const char *label;  /* the block in messages: "group 3 ('conv1')" */
    void *holder;       /* the holder's state for the lookups */
    /* The held tensor named `key`, of exactly the shape shape[0 .. n_dims);
     * out->data NULL when it is absent and not required. */
    int32_t (*tensor)(const fib_block_source *s, const char *key, bool required,
                      int32_t n_dims, const int64_t *shape, fib_stored_tensor *out);
    /* Refuses a tensor the description names that is not in keys (NULL
     * ended; NULL: none): the tensors the kind has. */
    int32_t (*check_tensor_names)(const fib_block_source *s, const char *const *keys);
    /* The block's gathers, one per source, each `units` indices below
     * widths[source] (owned, to fib_free); *present false (and out NULL)
     * when the description has none. */
    int32_t (*gathers)(const fib_block_source *s, const int64_t *widths, int64_t **out,
                       bool *present);
    /* The error `status` with the holder's context (path, label) before
     * `problem`. */
    int32_t (*fail)(const fib_block_source *s, int32_t status, const char *problem);
    /* The last error again, with the holder's context in front. */
    int32_t (*rewrap)(const fib_block_source *s, int32_t status);
};

/* The two steps of a block's opfiber contribution (fib_block_ops
 * opfiber_width / opfiber_fill and their exact forms): how many columns it
 * writes, then the columns. */
typedef int64_t fib_opfiber_width_fn(const fib_graph *g, int32_t group, int32_t source_index,
                                     const fib_partition *parts, const fib_partition *fibers);
typedef int32_t fib_opfiber_fill_fn(const fib_graph *g, int32_t group, int32_t source_index,
                                    const fib_partition *parts, const fib_partition *fibers,
                                    fib_signature *sig, int64_t offset);

/* What a kind of block must provide. Signature callbacks write columns
 * [offset, offset + width) of every row of `sig`. */
typedef struct fib_block_ops {
    const char *name;
    void (*free_block)(void *block);
    /* Forward colour sums of the group's units over its sources' classes. */
    int64_t (*fiber_width)(const fib_graph *g, int32_t group,
                           const fib_partition *parts);
    int32_t (*fiber_fill)(const fib_graph *g, int32_t group,
                          const fib_partition *parts, fib_signature *sig,
                          int64_t offset);
    /* Backward contribution of consumer group `group` to the signature of its
     * source number `source_index`, over the consumer's opfiber classes
     * `parts`; `fibers` are the finished fiber classes (for flavours).
     * opfiber_width may return a (negative) status after fib_error. */
    fib_opfiber_width_fn *opfiber_width;
    fib_opfiber_fill_fn *opfiber_fill;
    /* Optional: the fiber signature lent from the block's own weights
     * instead of filled (fib_signature.n_direct), when the source's classes
     * allow it; false: fill it. */
    bool (*fiber_view)(const fib_graph *g, int32_t group,
                       const fib_partition *parts, fib_scratch *scratch,
                       fib_signature *sig);
    /* Optional: the block's contribution to its source's opfiber
     * signature as one borrowed block of weight columns, when its own
     * classes allow it; false: fill it. */
    bool (*opfiber_view)(const fib_graph *g, int32_t group,
                         const fib_partition *parts, fib_direct_block *out);
    /* The group reads itself (recurrence): it is coloured to a fixed point,
     * its fills read parts[group] (the current classes of the group), and
     * its own backward contribution is asked with source_index = -1. */
    bool recurrent;
    /* Pre-activation of the group for a batch: activities are laid out
     * [batch][position][unit]; out is batch x positions x width. */
    void (*forward)(const fib_graph *g, int32_t group, int64_t batch,
                    double *const *activity, double *out);
    /* Adds the merged block to `base` (parts: classes of every group of g;
     * base_ids: the base's id of every group of g). */
    int32_t (*compress)(const fib_graph *g, int32_t group,
                        const fib_partition *parts, fib_graph *base,
                        const int32_t *base_ids);
    /* Adds the lifted block of base group `group` to `full`; parts[group]
     * maps the full units of every group to base units. */
    int32_t (*lift)(const fib_graph *base, int32_t group,
                    const fib_partition *parts, fib_graph *full,
                    const int32_t *full_ids);
    /* Optional: compress with per-unit scales (FIB_TOL_SCALED): scales[h]
     * for every group h (NULL: all 1); a block without it takes no scales
     * and reads no scaled group.
     * dtype: FIB_DTYPE_F32 lets the block be made in float32 at once, each
     * value the float64 merge rounded once (what `narrow` would make of it).
     */
    int32_t (*compress_scaled)(const fib_graph *g, int32_t group,
                               const fib_partition *parts, double *const *scales,
                               int32_t dtype, fib_graph *base, const int32_t *base_ids);
    /* Optional: compress from the merge totals its colouring kept
     * (color/merge_totals.c). */
    int32_t (*compress_totals)(const fib_graph *g, int32_t group,
                               const fib_partition *parts, const double *totals,
                               fib_graph *base, const int32_t *base_ids);
    /* Optional: whether the block has a bias (fib_graph_group_info); NULL:
     * it has none. */
    bool (*has_bias)(const fib_graph *g, int32_t group);
    int64_t (*num_parameters)(const fib_graph *g, int32_t group);
    /* Parameter tensor `index` (false past the last one). May be NULL. */
    bool (*tensor)(const fib_graph *g, int32_t group, int32_t index,
                   fib_tensor_view *out);
    /* Integer attributes: writes up to capacity, returns the count. */
    int64_t (*params)(const fib_graph *g, int32_t group, int64_t *out,
                      int64_t capacity);
    /* The block's scalar attribute (norm epsilon, attention scale). */
    double (*scalar)(const fib_graph *g, int32_t group);
    /* Adds the block `src` describes (its tensors, params and scalar, as
     * tensor, params and scalar give them), every part checked against the
     * graph built so far. */
    int32_t (*build)(fib_graph *g, const fib_block_source *src, int32_t *group_out);
    /* Optional: the gathers through which the block reads its sources,
     * one array of n_units indices per source, written to out[source];
     * false when each is the identity over a source as wide. */
    bool (*gathers)(const fib_graph *g, int32_t group, int64_t *const *out);
    /* For blocks whose classes are fixed by their source's (flatten): sets
     * parts[group] from the source's classes when a base is made. */
    int32_t (*derive_projection)(const fib_graph *g, int32_t group,
                                 fib_partition *parts);
    /* Optional: the block as one weight matrix over its one source,
     * y = W x + b (blocks/blocks.h). What only knows weight matrices
     * (budgets, symmetry breaking, outgoing norms) refuses a block without
     * it, naming the block. */
    const struct fib_dense *(*matrix)(const fib_graph *g, int32_t group);
    /* The group is a set of graph nodes (graphs/graph_api.c): coloured by
     * its arcs in the graphs layer, not by signatures, and it has no
     * forward pass (fib_group_is_nodes). */
    bool node_set;
    /* Optional: the number of equal runs that the block's units and its
     * source's units fall into and that its base keeps (a grouped
     * convolution's channel groups; see color/unit_runs.c); 1: none. */
    int64_t (*unit_runs)(const fib_graph *g, int32_t group);
    /* Budgets on graphs (compress/budget_graph.c), all optional: a kind
     * without budget_role is refused by name. The role is one of
     * FIB_BUDGET_* below, or 0 when this group cannot take part (a block
     * that gathers its sources' units in another order or repeats them). */
    int32_t (*budget_role)(const fib_graph *g, int32_t group);
    /* The group's parameters when every group h has width[h] units (NULL:
     * none). */
    int64_t (*budget_parameters)(const fib_graph *g, int32_t group, const int64_t *width);
    /* Adds to src_energy (the units of source `source_index`) the share of
     * the group's unit energies `energy` (how strongly an error in a unit's
     * pre-activation reaches the outputs) that each source unit carries:
     * squared weights times the energy of the units they feed. */
    void (*budget_backward)(const fib_graph *g, int32_t group, int32_t source_index,
                            const double *energy, double *src_energy);
    /* Budgets, optional for a kind that follows its source: the factor by
     * which unit i multiplies its source unit (batch norm's scale); NULL:
     * 1. A budget's base weighs the members of a class by it. */
    double (*budget_scale)(const fib_graph *g, int32_t group, int64_t unit);
    /* Optional: a narrower form of the block's opfiber contribution
     * (arguments as opfiber_width / opfiber_fill) that gives its source
     * exactly the classes of the full one under FIB_TOL_EXACT, the only mode
     * that asks for it (fib_opfiber_signature_mode); a width of 0: not
     * available for this source, the full one is filled. */
    fib_opfiber_width_fn *opfiber_exact_width;
    fib_opfiber_fill_fn *opfiber_exact_fill;
    /* Optional: adds to `base` the block of a group whose units and whose
     * sources' units are all kept, borrowing the group's tensors where they
     * are (same dtype, same memory) instead of merging copies of them: by
     * Eq. 10 such a block is its own weights (fib_compress_options.borrow).
     * NULL: a block with `matrix` borrows through it, another is merged. */
    int32_t (*compress_borrowed)(const fib_graph *g, int32_t group, fib_graph *base,
                                 const int32_t *base_ids);
    /* Optional: rounds the float64 tensors a base block owns (its merged
     * weights) to float32 in their own memory, each value once
     * (fib_compress_options.dtype FIB_DTYPE_F32; fib_narrow_owned). NULL: a
     * block with `matrix` is narrowed through it, another keeps its dtype. */
    int32_t (*narrow)(fib_graph *base, int32_t group);
    /* Budgets, for a group of role FIB_BUDGET_SELECTS: the source unit that
     * unit `unit` copies, or -1 when the unit is 0 (another selection of a
     * concatenation gives it). */
    int64_t (*budget_selected)(const fib_graph *g, int32_t group, int64_t unit);
    /* Budgets, for a group of role FIB_BUDGET_ATTENDS: writes bin[u] for
     * each of its units (unit u of each source pairs with it); units of
     * different bins never share a class (an attention's heads, copied
     * heads sharing one). */
    int32_t (*budget_bins)(const fib_graph *g, int32_t group, int64_t *bin);
    /* Budgets, for removing a unit whose output is a constant (a channel
     * whose batch-norm scale is 0, a unit without incoming weights): unit
     * `unit`'s pre-activation when its incoming weights are zero (a
     * clustered block: its bias, source_values NULL) or when every source
     * unit u outputs source_values[u] at every position (a follower, a
     * derived group; a derived group's unit is then its source unit's
     * value); NAN when it is then not one constant (an average pool over
     * zero padding). NULL: no unit of a set holding the group is removed. */
    double (*budget_constant)(const fib_graph *g, int32_t group, int64_t unit,
                              const double *source_values);
    /* Budgets, for a block that reads removed units: whether a source
     * unit of source `source_index` that outputs `value` at every position
     * can be replaced exactly by the block's bias (a convolution over zero
     * padding cannot, but for 0). NULL: no source unit it reads is removed. */
    bool (*budget_absorbs)(const fib_graph *g, int32_t group, int32_t source_index,
                           double value);
    /* Replaces the contribution of every source unit u of source
     * `source_index` with a finite values[u] by that constant: values[u]
     * times its weights added to the bias, its weights set to 0 (NAN: kept).
     * Only on a graph the library made (its blocks own their weights). */
    int32_t (*budget_absorb)(fib_graph *g, int32_t group, int32_t source_index,
                             const double *values);
    /* Budgets, for removals from stored statistics: the mean and variance
     * of each unit's pre-activation over the data and its positions, from
     * those of its sources' outputs (mean[s][u], var[s][u] for unit u of
     * source s), a weighted sum's spread the largest its inputs'
     * correlations allow; false when the kind cannot say (the statistics
     * stop there). NULL: false. */
    bool (*budget_moments)(const fib_graph *g, int32_t group, const double *const *mean,
                           const double *const *var, double *pre_mean, double *pre_var);
} fib_block_ops;

/* How a budget treats a group's classes (fib_block_ops.budget_role). */
#define FIB_BUDGET_CLUSTERED 1 /* its own incoming weights: its classes are clustered */
#define FIB_BUDGET_FOLLOWS 2   /* unit i reads source unit i: the source's classes */
#define FIB_BUDGET_COUPLES 3   /* its sources and it share one partition (sum, product) */
#define FIB_BUDGET_DERIVED 4   /* classes derived from the source's (derive_projection) */
#define FIB_BUDGET_PINS 5      /* keeps its units and its source's (grouped convolution) */
#define FIB_BUDGET_SELECTS 6   /* unit i copies one source unit or is 0 (a concatenation's or
                                * a split's selection): classes from the source's, no
                                * parameters (the model it stands for holds none) */
#define FIB_BUDGET_ATTENDS 7   /* its first two sources share one partition (unit i of one
                                * pairs with unit i of the other), it follows its third
                                * source unit by unit, and classes stay within the bins
                                * budget_bins gives (an attention core's heads) */

struct fib_group {
    int32_t op;            /* FIB_OP_* */
    int64_t n_units;
    int64_t rows, cols;    /* every unit is present at rows x cols positions */
    int32_t activation;    /* FIB_ACT_* */
    double act_param;
    int32_t n_sources;
    int32_t sources[3]; /* at most 3: the attention core reads q, k and v */
    int32_t n_consumers;
    double eps_override;   /* < 0: none */
    char *name;
    const fib_block_ops *ops; /* NULL for inputs */
    void *block;
    /* fib_graph_set_unit_statistics: each unit's output mean and variance
     * on the data (NULL: none) */
    double *unit_mean, *unit_var;
};

/* Something the graph keeps alive for borrowed weights (a mapped file). */
typedef struct fib_resource {
    void *handle;
    void (*release)(void *handle);
    /* Optional (NULL: nothing to drop): the pages of [at, at + bytes) that
     * lie in what handle maps read-only leave the process's memory; they
     * come back from the file when read again. */
    void (*drop_pages)(void *handle, const void *at, size_t bytes);
} fib_resource;

struct fib_graph {
    int32_t n_groups;
    int32_t cap_groups;
    fib_group *groups;
    int32_t n_resources;
    fib_resource *resources;
    int32_t convention; /* FIB_CONVENTION_* for the node groups */
    /* Which graph this is (unique in the process, never reused) and how
     * many times its blocks, activations, arcs or classes were changed: a
     * colouring records both and is refused (FIB_E_MISMATCH) with any other
     * graph or after a change, since what it keeps (class sums, balance)
     * was derived from the graph as it was. */
    uint64_t identity;
    uint64_t generation;
};

/* graph.c */
int32_t fib_graph_check_group(const fib_graph *g, int32_t group,
                              const char *what);
/* A builder's dtype (FIB_DTYPE_*) and flags (FIB_COPY or 0): FIB_E_INVALID
 * naming fn and the group being added when either is unknown; else the
 * dtype's element size into *esize (NULL: not wanted). */
int32_t fib_check_dtype_and_flags(const char *fn, int32_t group, int32_t dtype, uint32_t flags,
                                  size_t *esize);
/* Records a change of what the graph computes or how it is coloured:
 * colourings made before it no longer fit (fib_coloring_check_graph). */
void fib_graph_changed(fib_graph *g);
/* tensor.c: FIB_E_NONFINITE naming `what`, the group, tensor and element
 * of the first NaN or infinite parameter of the group's block; FIB_OK if
 * there is none. The builders refuse such values, but borrowed memory (the
 * caller's, or a mapped file) can change afterwards: readers that meet a
 * non-finite value ask this for the culprit. */
int32_t fib_group_find_nonfinite(const fib_graph *g, int32_t group, const char *what);
/* tensor.c: the pages of the group's tensors that lie in a file the graph
 * maps (fib_graph_attach_mapping) leave the process's resident memory, for
 * a reader done with the group for now: a model file then need not stay
 * resident while one layer's working set is. The values do not change; a
 * later read brings the pages back from the page cache. Tensors in any
 * other memory are left alone. */
void fib_group_drop_pages(const fib_graph *g, int32_t group);
/* The same for the whole pages of [at, at + bytes) (any tensor's memory;
 * nothing outside a mapping the graph may let go). */
void fib_graph_drop_range(const fib_graph *g, const void *at, size_t bytes);
/* tensor.c: the `count` float64 values of *buffer, owned by a block of a
 * base, rounded to float32 at the front of the same buffer (the rest handed
 * back, so *buffer may move), each value once: the values a float32 file
 * of the base holds. FIB_E_NONFINITE naming the group and `what` ("weight",
 * "bias") for a value float32 cannot hold. */
int32_t fib_narrow_owned(void **buffer, int64_t count, int32_t group, const char *what);
/* tensor.c: wide[x] rounded to float32 into narrow[x] for x < count, with
 * fib_narrow_owned's error, which names value first + x. */
int32_t fib_narrow_values(const double *wide, int64_t count, float *narrow, int64_t first,
                          int32_t group, const char *what);
/* tensor.c: element `flat` (packed row-major) of a view as "[i, j, ...]". */
#define FIB_TENSOR_INDEX_TEXT 96
void fib_tensor_index_text(const fib_tensor_view *v, int64_t flat,
                           char text[FIB_TENSOR_INDEX_TEXT]);
int32_t fib_graph_push_group(fib_graph *g, const fib_group *group,
                             int32_t *id_out);
bool fib_group_is_input(const fib_graph *g, int32_t group);
bool fib_group_is_output(const fib_graph *g, int32_t group);
bool fib_group_is_nodes(const fib_graph *g, int32_t group);
/* The group's block as one weight matrix over its one source (the block's
 * `matrix` capability); NULL for a block without it and for an input. */
const struct fib_dense *fib_group_matrix(const fib_graph *g, int32_t group);
/* Number of positions (rows x cols) of a group, and its activity width. */
int64_t fib_group_positions(const fib_group *grp);
int64_t fib_group_activity_width(const fib_group *grp);
/* Makes the graph release `handle` when it is freed (after its groups).
 * On failure release(handle) is NOT called; the caller still owns it. */
int32_t fib_graph_attach_resource(fib_graph *g, void *handle,
                                  void (*release)(void *handle));
/* The same for a mapped file whose pages fib_group_drop_pages may let go. */
int32_t fib_graph_attach_mapping(fib_graph *g, void *handle, void (*release)(void *handle),
                                 void (*drop_pages)(void *handle, const void *at,
                                                    size_t bytes));

/* activation.c */
bool fib_activation_valid(int32_t activation);
bool fib_activation_is_linear(int32_t activation);
void fib_activation_apply(int32_t activation, double param, double *z,
                          int64_t count);
/* The mean and variance of the activation's output for a Gaussian
 * pre-activation of mean *mean and variance *var, in place: exact for the
 * identity and ReLU (a rectified Gaussian); false for another activation. */
bool fib_activation_moments(int32_t activation, double *mean, double *var);
/* The standard normal density and distribution function at x. */
double fib_normal_pdf(double x);
double fib_normal_cdf(double x);
/* fib_activation_name is public (fibration.h). */

/* partition.c */
int32_t fib_partition_init(fib_partition *p, int64_t n_units);
void fib_partition_clear(fib_partition *p);
void fib_partition_discrete(fib_partition *p);
/* True when every unit is its own class, in unit order (what
 * fib_partition_discrete makes): colour sums over it are the weights. */
bool fib_partition_is_discrete(const fib_partition *p);
void fib_partition_single(fib_partition *p);
/* Renumbers arbitrary labels in p->color canonically; needs n_units scratch. */
int32_t fib_partition_canonicalize(fib_partition *p);
/* p = meet of a and b (same n_units). */
int32_t fib_partition_meet(fib_partition *p, const fib_partition *a,
                           const fib_partition *b);
/* p = join of a and b (same n_units): the finest partition coarser than
 * both, i.e. the connected components of "same class in a or in b". */
int32_t fib_partition_join(fib_partition *p, const fib_partition *a,
                           const fib_partition *b);
/* Union-find over uf[0 .. n) (uf[v] = v to start): the root of a set is
 * its lowest member, and every parent is lower than its child. */
static inline int64_t fib_uf_find(int64_t *uf, int64_t v)
{
    while (uf[v] != v) {
        uf[v] = uf[uf[v]];
        v = uf[v];
    }
    return v;
}
static inline void fib_uf_union(int64_t *uf, int64_t a, int64_t b)
{
    a = fib_uf_find(uf, a);
    b = fib_uf_find(uf, b);
    if (a < b)
        uf[b] = a;
    else if (b < a)
        uf[a] = b;
}
int32_t fib_partition_copy(fib_partition *dst, const fib_partition *src);
/* sizes[0 .. n_classes) */
void fib_partition_class_sizes(const fib_partition *p, int64_t *sizes);
/* The members of every class, listed together: class c holds
 * members[start[c] .. start[c + 1]) in increasing unit order. */
typedef struct fib_class_lists {
    int64_t *start;   /* n_classes + 1 */
    int64_t *members; /* n_units */
} fib_class_lists;
int32_t fib_class_lists_build(const fib_partition *p, fib_class_lists *l);
void fib_class_lists_clear(fib_class_lists *l);

/* first[c] = lowest unit of class c (-1 if the class is empty), for c in
 * [0, n_classes); labels need not be canonical. */
void fib_partition_first_units(const fib_partition *p, int64_t *first);

/* signature.c */
int32_t fib_signature_alloc(fib_signature *sig, int64_t n_units,
                            int64_t n_coords);
void fib_signature_clear(fib_signature *sig);
/* Like fib_signature_alloc, taking the memory from `scratch` when it is
 * free (scratch may be NULL). */
int32_t fib_signature_alloc_in(fib_signature *sig, int64_t n_units,
                               int64_t n_coords, fib_scratch *scratch);
/* Frees the scratch's memory (no signature may still use it). */
void fib_scratch_clear(fib_scratch *scratch);
/* The rounding allowance of a sum of `terms` numbers of absolute sum
 * abs_sum, stored in `dtype`. */
double fib_rounding_tol(int32_t dtype, int64_t terms, double abs_sum);
/* Coordinate `coord` of a unit's signature row: a weight stored in dtype
 * (one term: its rounding allowance), or a label (a class, equal or not). */
void fib_signature_put_weight(fib_signature *sig, int64_t unit, int64_t coord, int32_t dtype,
                              double value);
static inline void fib_signature_put_label(fib_signature *sig, int64_t unit, int64_t coord,
                                           int64_t label)
{
    sig->value[unit * sig->n_coords + coord] = (double)label;
    sig->tol[unit * sig->n_coords + coord] = FIB_TOL_LABEL;
}
/* coef[c] = fib_rounding_tol(dtype, |class c of src|, 1.0), so that the
 * allowance of a colour sum of absolute sum a is coef[c] * a (the same
 * bits). Caller frees *coef_out. */
int32_t fib_color_coefficients(const fib_partition *src, int32_t dtype, double **coef_out);
/* src/color_rows.c: the colour sums of `rows` rows of a row-major block
 * (dtype; row r at w + r * ld, n columns, column x of class color[x] <
 * k_classes) into signature rows sig_row0 .. sig_row0 + rows - 1 from
 * coordinate `offset`: value = the sum over a class's columns, tol =
 * coef[class] * the sum of their |w|, with the kernels' summation order
 * (ascending columns from 0.0) on sig->n_threads threads. */
int32_t fib_color_rows(fib_signature *sig, int64_t sig_row0, int64_t offset,
                        int32_t dtype, const void *w, int64_t ld, int64_t rows,
                        int64_t n, const int64_t *color, int64_t k_classes,
                        const double *coef, int32_t group);

/* A dense group's merge totals (color/merge_totals.c), kept by its fiber
 * colouring: sums[c * k_in + c'] = the sum over the members of class c
 * (rows ascending, from 0.0) of their colour sums over source class c',
 * made for the partitions out_labels (the group) and in_labels (its
 * source). */
typedef struct fib_merge_totals {
    double *sums;
    int64_t *out_labels, *in_labels;
} fib_merge_totals;

struct fib_coloring {
    int32_t symmetry;
    int32_t n_groups;
    fib_partition *parts;
    /* Per group, the unit scales of FIB_TOL_SCALED (linkage.c), or NULL
     * (every scale 1); NULL array when no group has scales. */
    double **scales;
    /* Per group, merge totals kept from colouring (NULL: none kept). */
    fib_merge_totals *merge_totals;
    /* Set by budgets (merge_inputs): fib_compress merges input groups by
     * their classes too, the base's inputs being the classes' means. */
    bool merge_inputs;
    /* The graph it was made for and its generation then (fib_graph). */
    uint64_t graph_identity;
    uint64_t graph_generation;
    /* Fibers as fib_color made them: its tolerance and each group's eps
     * then (-1: EXACT), which fib_color_from_fibers compares with its own;
     * made_eps NULL for any other colouring, and once its classes are set
     * by hand. */
    int32_t made_tolerance;
    double *made_eps;
};

/* coloring.c: the colouring object (the public accessors are in fibration.h). */
int32_t fib_coloring_alloc(const fib_graph *g, int32_t symmetry,
                           fib_coloring **out);
int32_t fib_coloring_check_graph(const fib_graph *g, const fib_coloring *c);
void fib_merge_totals_free(fib_coloring *c);

/* rng.c: splitmix64 seeded xoshiro256** */
typedef struct fib_rng { uint64_t s[4]; } fib_rng;
void fib_rng_seed(fib_rng *r, uint64_t seed);
uint64_t fib_rng_next(fib_rng *r);
double fib_rng_uniform(fib_rng *r); /* [0, 1) */

/* forward.c: activity of every group (caller frees with fib_activity_free). */
int32_t fib_forward_all(const fib_graph *g, int64_t batch, int32_t dtype,
                        const void *inputs, double ***activity_out);
void fib_activity_free(const fib_graph *g, double **activity);

#endif
