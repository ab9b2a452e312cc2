/* The color layer: fiber and opfiber signatures of a group, grouping,
 * the colouring driver, tolerance modes (linkage.h), the ladders of
 * colourings (ladder.c). Uses the blocks, graphs and model layers. */
#ifndef FIB_COLOR_COLOR_H
#define FIB_COLOR_COLOR_H

#include "blocks/blocks.h"
#include "graphs/graphs.h"
#include "model/model.h"

/* Fiber and opfiber signatures of one group. */
int32_t fib_fiber_signature(const fib_graph *g, int32_t group,
                            const fib_partition *parts, fib_signature *sig);
int32_t fib_opfiber_signature(const fib_graph *g, int32_t group,
                              const fib_partition *parts,
                              const fib_partition *fibers,
                              fib_signature *sig);
/* The same for fib_color: fills on n_threads threads, and a dense group
 * over a discrete source borrows its weight rows, a group read only by a
 * dense block with discrete classes its consumer's weight columns, instead
 * of copying them (see fib_signature.n_direct). */
int32_t fib_fiber_signature_ex(const fib_graph *g, int32_t group,
                               const fib_partition *parts, int32_t n_threads,
                               fib_scratch *scratch, fib_signature *sig);
int32_t fib_opfiber_signature_ex(const fib_graph *g, int32_t group,
                                 const fib_partition *parts,
                                 const fib_partition *fibers,
                                 int32_t n_threads, fib_scratch *scratch,
                                 fib_signature *sig);
/* fib_opfiber_signature_ex for grouping mode `mode` with tolerance eps (as
 * fib_group_signatures_mode takes them): under FIB_TOL_EXACT (or eps < 0)
 * a block may give its narrower exact form (fib_block_ops
 * opfiber_exact_width); the classes are those of fib_opfiber_signature_ex. */
int32_t fib_opfiber_signature_mode(const fib_graph *g, int32_t group,
                                   const fib_partition *parts,
                                   const fib_partition *fibers, int32_t mode, double eps,
                                   int32_t n_threads, fib_scratch *scratch,
                                   fib_signature *sig);

/* grouping.c: partition of the rows of sig. eps < 0: exact (rounding only);
 * otherwise every coordinate spans at most eps (+ rounding) per class. */
int32_t fib_group_signatures(const fib_signature *sig, double eps,
                             fib_partition *out);
/* The same grouping in two steps, for a signature too large to hold whole
 * (color/piecewise_fibers.c). A piece of units (order[start, end)) that has
 * reached coordinate `coord` with the sweep's state (clean: coordinates
 * passed since its last cut; loose: the ABS split coordinate or -1). */
typedef struct fib_pending_piece {
    int64_t start, end, coord, clean, loose;
} fib_pending_piece;
typedef struct fib_pending_pieces {
    fib_pending_piece *pieces;
    int64_t n_pieces;
    int64_t *order; /* the units, piece by piece */
} fib_pending_pieces;
/* Step one: `prefix` holds the first prefix->n_coords of `total`
 * coordinates (materialised, no sum_leading). Units whose class is settled
 * on them (cut off alone) are labelled in out (by a member's index, not
 * canonical); the other pieces are returned in *pending, each stopped at
 * the first coordinate not held, exactly as the whole sweep reaches it. */
int32_t fib_group_signatures_prefix(const fib_signature *prefix, double eps, int64_t total,
                                    fib_partition *out, fib_pending_pieces *pending);
/* Step two for one pending piece: sig holds the whole rows of its members
 * in ascending unit order; the sweep goes on from `state` (start and end
 * ignored). Classes as fib_group_signatures would make them among these
 * units. */
int32_t fib_group_signatures_resume(const fib_signature *sig, double eps,
                                    const fib_pending_piece *state, fib_partition *out);
void fib_pending_pieces_clear(fib_pending_pieces *pending);
/* piecewise_fibers.c: the fiber classes (canonical, into *next, *done true)
 * of a dense group over a source with classes whose whole signature would
 * take at least fib_piecewise_fibers_min_bytes, for the sweep's EXACT and
 * ABS modes, holding only a prefix of every unit's signature and the rows
 * of one piece at a time: the classes of fib_group_signatures_mode on the
 * filled signature. *done false (next untouched): not such a group. */
int32_t fib_piecewise_fibers(const fib_graph *g, int32_t group, const fib_partition *parts,
                             int32_t mode, double eps, int32_t n_threads, fib_coloring *keep,
                             fib_partition *next, bool *done);
/* merge_totals.c, for a colouring that adds the classes up itself (the
 * piecewise fibers): the bytes of merge totals group `group` may keep in c
 * (the rule of fib_merge_totals_keep; 0: none, or c NULL), and the totals
 * (k_out x k_in, made in the merge's order) handed over to c for the
 * partitions parts[group] and of its source (sums is taken over). */
double fib_merge_totals_budget(const fib_coloring *c, const fib_graph *g, int32_t group);
int32_t fib_merge_totals_adopt(fib_coloring *c, const fib_graph *g, int32_t group,
                               const fib_partition *parts, double *sums);
/* The size threshold (tests set it to 0 to take the path on small
 * layers). */
extern int64_t fib_piecewise_fibers_min_bytes;

/* unit_runs.c: splits classes of p so that none spans two of `runs` equal
 * runs of units and every run holds as many classes; *changed tells
 * whether p changed. */
int32_t fib_partition_balance_runs(fib_partition *p, int64_t runs, bool *changed);
/* The same for group `group` just coloured, for its own runs and those of
 * every block that reads it (fib_block_ops.unit_runs), until all hold. */
int32_t fib_color_keep_unit_runs(const fib_graph *g, int32_t group, fib_partition *parts);

/* color.c: fib_color behind its option checks. */
int32_t fib_color_internal(const fib_graph *g, const fib_color_options *o,
                           fib_coloring **out);
/* The fibers and the opfibers they flavour, in one colouring (whatever
 * o->symmetry): each as fib_color_internal makes it alone. */
int32_t fib_color_pair_internal(const fib_graph *g, const fib_color_options *o,
                                fib_coloring **fibers_out, fib_coloring **opfibers_out);

/* automorphisms.c, for the symmetry ladder (ladder.c): the options both
 * accept (EXACT or ABS), and the automorphism level, its node-group orbits
 * starting from `exact_covers` when given (NULL: coloured here). */
int32_t fib_automorphism_options_check(const fib_color_options *o, const char *fn);
int32_t fib_automorphisms_from(const fib_graph *g, const fib_color_options *o,
                               const fib_coloring *exact_covers, fib_coloring **out);

/* merge_totals.c: the merge totals a colouring keeps for compression. */
/* Keeps group's merge totals from its fiber signature `sig` (colour sums,
 * still valid) and its new classes in parts, when it is a dense group over
 * a source with classes and its base is small; FIB_E_NOMEM. */
int32_t fib_merge_totals_keep(fib_coloring *c, const fib_graph *g, int32_t group,
                            const fib_signature *sig, const fib_partition *parts);
/* Before grouping `sig` with `mode`: the sum_leading that lets grouping add
 * the classes up for fib_merge_totals_keep (0: not this group or mode). */
int64_t fib_merge_totals_leading(const fib_coloring *c, const fib_graph *g, int32_t group,
                               const fib_signature *sig, const fib_partition *parts,
                               int32_t mode);
/* The kept totals of `group` if they were made for projection[group] and
 * projection[its source], else NULL. */
const double *fib_merge_totals_find(const fib_coloring *c, const fib_graph *g, int32_t group,
                                  const fib_partition *projection);

#endif
