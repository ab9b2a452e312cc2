/* The compress layer: the base of a colouring (Eq. 10), its lift,
 * symmetry breaking, budgets and their data-free correction. Uses the
 * color layer and everything below it. */
#ifndef FIB_COMPRESS_COMPRESS_H
#define FIB_COMPRESS_COMPRESS_H

#include "color/color.h"
#include "color/linkage.h"

/* compress.c */
struct fib_base {
    fib_graph *graph;
    int32_t n_groups;
    fib_partition *projection; /* per original group: unit -> base unit */
};

/* compress.c: a float64 dense or convolution block `group` of a graph the
 * library made (a base, a lift), which owns its weights, rounded to
 * float32 in place; other blocks are left as they are. FIB_E_NONFINITE
 * for a value float32 cannot hold. */
int32_t fib_narrow_block(fib_graph *g, int32_t group);

/* compress.c: fib_compress with fib_compress_options.borrow but for the
 * groups marked in `owned`, whose base blocks own float64 copies (or packed
 * copies in their dtype) that the caller may change. */
int32_t fib_compress_owning(const fib_graph *g, const fib_coloring *c, const bool *owned,
                            fib_base **out);

/* compress.c: copies activation and name of a group to another graph. */
int32_t fib_copy_group_attributes(const fib_graph *from, int32_t group,
                                  fib_graph *to, int32_t to_group);

/* budget_refit.c: the data-free correction of a budget's base (a chain of
 * dense groups merged by `col`, FIB_TOL_SCALED): representatives re-derived
 * and every merge's consumer refitted by least squares on n_samples
 * synthetic inputs N(0, scale^2 I), with `ridge` times each Gram matrix's
 * mean diagonal pulling the fit towards the re-derived consumer, written
 * into the base's blocks; its products on n_threads threads (0: OpenMP's
 * default), the same bits at every count. *applied: false (base
 * unchanged) when a block has no bias or a hidden activation is not
 * linear, ReLU or leaky ReLU. */
int32_t fib_budget_correct(const fib_graph *g, const fib_coloring *col, double scale,
                           int64_t n_samples, double ridge, int32_t n_threads,
                           const fib_progress_check *check, fib_base *base, bool *applied);
/* fib_budget_options.synthetic_ridge's default: units that synthetic
 * inputs seldom excite are poorly determined by the samples alone, and the
 * unregularised fit gives them weights that real inputs then exercise
 * (docs/compression.md, "The correction's ridge", where it was chosen). */
#define FIB_BUDGET_DEFAULT_RIDGE 1e-3
/* Samples the correction carries through the networks together (its
 * memory is a block's activations; tests vary it: it changes no bit). */
extern int64_t fib_budget_correction_block;
/* Doubles of later fits' targets the correction keeps from its first pass
 * through the original (tests set it; negative: its own rule, by the
 * block; it changes no bit). */
extern int64_t fib_budget_correction_kept;
/* Rows of a Gram matrix the correction sums per product, and columns of
 * its Cholesky factor made together (tests vary it: it changes no bit). */
extern int64_t fib_budget_correction_slab;
/* Multiply-adds a thread of the correction's products must have before a
 * product is shared out (tests set it to 1 to share every product: it
 * changes no bit). */
extern int64_t fib_budget_correction_work;

/* One step of a budget done (chains and graphs alike); tells the progress
 * callback, which may cancel (FIB_E_CANCELLED). */
static inline int32_t fib_budget_step(fib_progress_check *check)
{
    check->done++;
    return fib_progress_cancelled(check)
               ? fib_error(FIB_E_CANCELLED, "fib_compress_to_budget: cancelled by the "
                                            "progress callback")
               : FIB_OK;
}

/* budget_graph.c: a graph's parameters as budgets count them (the
 * selections that hold concatenations and splits hold none). */
int64_t fib_budget_counted_parameters(const fib_graph *g);
/* budget_graph.c: whether a group's weights are an earlier group's memory
 * (a tied LM head), which a budget counts once. */
bool fib_budget_has_tied_weights(const fib_graph *g);

/* unit_moments.c: the stored statistics of a graph's units
 * (fib_graph_set_unit_statistics) carried forward through the blocks that
 * say how (budget_moments) and the activations that do (identity, ReLU):
 * per group, each unit's output mean and variance and its pre-activation
 * mean and variance; NULL where unknown (a group with statistics of its
 * own keeps them; its pre-activation's are known for a linear activation).
 * All NULL when no group has statistics. */
typedef struct fib_unit_moments {
    double **mean, **var, **pre_mean, **pre_var; /* per group */
} fib_unit_moments;
int32_t fib_unit_moments_build(const fib_graph *g, fib_unit_moments *m);
void fib_unit_moments_clear(const fib_graph *g, fib_unit_moments *m);

/* budget_graph.c: fib_compress_to_budget on a graph that is not a chain of
 * dense blocks (validated options o); *smallest_out is set when the budget
 * is below the smallest base reached. */
int32_t fib_budget_graph(const fib_graph *g, double budget, const fib_budget_options *o,
                         double *bound_out, int64_t *params_out, int64_t *smallest_out,
                         fib_base **base_out);

#endif
