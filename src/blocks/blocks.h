/* The blocks layer: one file per block kind, each filling in a
 * fib_block_ops; here the constructors and data the other layers (model
 * files, compression) still reach. Uses the model layer. */
#ifndef FIB_BLOCKS_BLOCKS_H
#define FIB_BLOCKS_BLOCKS_H

#include "model/model.h"

/* Dense block data. */
typedef struct fib_dense {
    int32_t dtype;
    int64_t n_in;
    int64_t ld;
    const void *weights;
    const void *bias; /* NULL: no bias */
    void *owned_weights;
    void *owned_bias;
    /* stored [n_in, ld] (weight (i, k) at k * ld + i), as GPT-2's Conv1D
     * layers and token embeddings keep them, read in place */
    bool transposed;
} fib_dense;

/* Sum block data: z[i] = a[gather_a[i]] + b[gather_b[i]] (NULL: identity). */
typedef struct fib_sum {
    int64_t *gather_a;
    int64_t *gather_b;
} fib_sum;

extern const fib_block_ops fib_dense_ops;
extern const fib_block_ops fib_sum_ops;
extern const fib_block_ops fib_product_ops;
extern const fib_block_ops fib_attend_ops;
extern const fib_block_ops fib_norm_ops;

/* Attention core (attention.c): per head a list of (q unit, k unit,
 * multiplicity) pairs, per unit its head and the v unit it reads; all
 * arrays owned. Pairs of head h are [head_start[h], head_start[h + 1]). */
typedef struct fib_attend {
    int64_t n_heads;
    double scale;
    int64_t n_pairs;
    int64_t *head_start; /* n_heads + 1 */
    int64_t *pair_q, *pair_k;
    double *pair_mult;
    int64_t *unit_head, *unit_v;
    /* Derived by fib_graph_add_attend_owned: units of head h are
     * unit_order[unit_start[h] .. unit_start[h + 1]). */
    int64_t *unit_start, *unit_order;
    /* Causal: position t reads positions t' <= t only. */
    bool causal;
    /* Rotary position embeddings, NULL without: pair p's term is also
     * multiplied by cos(pair_omega[p] (t - t')), or by sin(...) when
     * pair_sin[p] is 1 (see attention.c). */
    double *pair_omega;
    uint8_t *pair_sin;
    /* Derived by fib_graph_add_attend_owned when rotary: pair p's phase
     * (omega, sin) numbered among the core's n_phases distinct ones (the
     * opfiber sums' columns pair them with classes, every colouring). */
    int64_t *pair_phase;
    int64_t n_phases;
} fib_attend;
/* The options item of an attention core's params (after the units). */
#define FIB_ATTEND_CAUSAL 1
#define FIB_ATTEND_ROTARY 2
/* Adds an attention core over groups q, k, v; takes `a` over (freed on
 * failure). */
int32_t fib_graph_add_attend_owned(fib_graph *g, int32_t q, int32_t k,
                                   int32_t v, int64_t n_units, fib_attend *a,
                                   int32_t *group_out);
void fib_attend_free(fib_attend *a);

/* norm.c: adds a norm of n_units units, unit i reading source unit
 * gather[i] (NULL: identity) and counting mult[i] times (NULL: once);
 * weight/bias NULL: absent. Arrays are taken over, also on failure. */
int32_t fib_graph_add_norm_owned(fib_graph *g, int32_t source, int32_t kind,
                                 double epsilon, int64_t n_units,
                                 int64_t *gather, double *weight, double *bias,
                                 double *mult, int32_t *group_out);
extern const fib_block_ops fib_conv_ops;
extern const fib_block_ops fib_pool_ops;
extern const fib_block_ops fib_flatten_ops;
extern const fib_block_ops fib_affine_ops;
extern const fib_block_ops fib_lstm_ops;
extern const fib_block_ops fib_gru_ops;
extern const fib_block_ops fib_last_step_ops;
extern const fib_block_ops fib_select_step_ops;
extern const fib_block_ops fib_prepend_ops;
extern const fib_block_ops fib_position_shift_ops;

/* dense.c: adds a dense group with weights owned as float64. */
int32_t fib_graph_add_dense_owned(fib_graph *g, int32_t source, int64_t n_out,
                                  double *weights, double *bias,
                                  int32_t *group_out);
/* The same with weights (and bias) owned as float32. */
int32_t fib_graph_add_dense_owned_f32(fib_graph *g, int32_t source, int64_t n_out,
                                      float *weights, float *bias, int32_t *group_out);
/* A dense group of n_out units whose weights are stored transposed: row k
 * of `weights` (leading dimension ld >= n_out) holds the weights from
 * source unit k to every unit, as checkpoints store Conv1D layers and
 * token embeddings. Borrowed (flags 0) or copied packed (FIB_COPY); every
 * operation of the dense block reads the layout in place. */
int32_t fib_graph_add_dense_transposed(fib_graph *g, int32_t source, int64_t n_out,
                                       int32_t dtype, const void *weights, int64_t ld,
                                       const void *bias, uint32_t flags,
                                       int32_t *group_out);
/* Stored values a constructor has found finite: n values of dtype from
 * data, contiguous. A block made later over the same stored values (a tied
 * LM head reading the token embedding) need not check them again. */
typedef struct fib_finite_values {
    const void *data;
    int32_t dtype;
    int64_t n;
} fib_finite_values;
/* dense.c: fib_graph_add_dense whose finiteness pass over the weights is
 * left out when `checked` covers every weight it reads (the same pointer
 * and dtype, its rows within checked->n values); the bias is checked. */
int32_t fib_dense_add_over_checked(fib_graph *g, int32_t source, int64_t n_out,
                                   int32_t dtype, const void *weights, int64_t ld,
                                   const void *bias, uint32_t flags,
                                   const fib_finite_values *checked, int32_t *group_out);
/* embedding.c: fib_graph_add_token_embedding borrowing the embedding
 * (flags 0) or copying it (FIB_COPY), in its stored layout; *checked (when
 * not NULL) is then the embedding's values, found finite. */
int32_t fib_token_embedding_add(fib_graph *g, int32_t source, int64_t hidden,
                                int32_t dtype, const void *embedding, uint32_t flags,
                                fib_finite_values *checked, int32_t *group_out);
/* attention.c: fib_graph_add_attention_ex over weights stored transposed
 * (GPT-2's Conv1D): qkv_weight [e, q + 2 kv] holds q, k and v side by
 * side, out_weight [q, e]; qkv_bias [q + 2 kv]. */
int32_t fib_attention_add_transposed(fib_graph *g, int32_t source,
                                     const fib_attention_options *options, int32_t dtype,
                                     const void *qkv_weight, const void *qkv_bias,
                                     const void *out_weight, const void *out_bias,
                                     uint32_t flags, int32_t *group_out);
double fib_dense_weight(const fib_dense *d, int64_t row, int64_t col);
double fib_dense_bias(const fib_dense *d, int64_t row);
/* The mapped pages of rows [begin, end) of d's weights (a block of g) leave
 * the process, for a reader that reads each row once, in order: the file
 * then need not stay resident next to what it makes (nothing for weights
 * stored transposed or not mapped). */
void fib_dense_drop_rows(const fib_graph *g, const fib_dense *d, int64_t begin, int64_t end);
/* The rows per call of fib_dense_drop_rows for such a reader. */
#define FIB_DENSE_DROP_ROWS 64
/* The fiber signature rows of a dense group's units row0 .. row0 + rows - 1
 * (colour sums over its source's classes, then the bias: the block's
 * fiber_fill, row by row the same bits) into signature rows sig_row0 ..,
 * from coordinate `offset`. */
int32_t fib_dense_fiber_rows(const fib_graph *g, int32_t group, const fib_partition *parts,
                             fib_signature *sig, int64_t sig_row0, int64_t offset,
                             int64_t row0, int64_t rows);

/* sum.c: adds a sum group that gathers (arrays are taken over). */
int32_t fib_graph_add_sum_gather(fib_graph *g, int32_t a, int32_t b,
                                 int64_t n_units, int64_t *gather_a,
                                 int64_t *gather_b, int32_t *group_out);

/* product.c: adds a product group that gathers (arrays taken over). */
int32_t fib_graph_add_product_gather(fib_graph *g, int32_t a, int32_t b,
                                     int64_t n_units, int64_t *gather_a,
                                     int64_t *gather_b, int32_t *group_out);

/* pair.c: what blocks of two gathered operands share (sum, product), whose
 * data is a fib_sum. fib_pair_push takes the gathers over, also on failure;
 * fib_pair_check_operands checks two groups of equal width for `fn`;
 * compress and lift make a group of the same kind, with gathers. */
void fib_pair_free(void *block);
int32_t fib_pair_push(fib_graph *g, int32_t op, const fib_block_ops *ops, int32_t a,
                      int32_t b, int64_t n_units, int64_t *gather_a, int64_t *gather_b,
                      int32_t *group_out);
int32_t fib_pair_check_operands(const fib_graph *g, int32_t a, int32_t b,
                                const int32_t *group_out, const char *fn);
int64_t fib_pair_fiber_width(const fib_graph *g, int32_t group, const fib_partition *parts);
int32_t fib_pair_fiber_fill(const fib_graph *g, int32_t group, const fib_partition *parts,
                            fib_signature *sig, int64_t offset);
int32_t fib_pair_compress(const fib_graph *g, int32_t group, const fib_partition *parts,
                          fib_graph *base, const int32_t *base_ids);
int32_t fib_pair_lift(const fib_graph *base, int32_t group, const fib_partition *parts,
                      fib_graph *full, const int32_t *full_ids);
int64_t fib_pair_num_parameters(const fib_graph *g, int32_t group);
/* The forward pass of a sum (multiply false) or a product: z[i] =
 * a[gather_a[i]] + (or x) b[gather_b[i]] at every position; a product's
 * second factor of a single position is read at every position. */
void fib_pair_forward(const fib_graph *g, int32_t group, int64_t batch,
                      double *const *activity, double *out, bool multiply);
/* The build of a sum or a product (fib_block_ops.build) through its
 * constructors without and with gathers; single_second: the second
 * operand may have a single position. */
typedef int32_t (*fib_pair_add_fn)(fib_graph *g, int32_t a, int32_t b, int32_t *group_out);
typedef int32_t (*fib_pair_add_gather_fn)(fib_graph *g, int32_t a, int32_t b, int64_t n_units,
                                          int64_t *gather_a, int64_t *gather_b,
                                          int32_t *group_out);
int32_t fib_pair_build(fib_graph *g, const fib_block_source *S, bool single_second,
                       fib_pair_add_fn add, fib_pair_add_gather_fn add_gather, int32_t *id);
bool fib_pair_gathers(const fib_graph *g, int32_t group, int64_t *const *out);

/* pair.c: budget roles and energies of a sum or a product (fib_block_ops):
 * both sources and the group share one partition when neither gathers. */
int32_t fib_pair_budget_role(const fib_graph *g, int32_t group);
void fib_pair_budget_backward(const fib_graph *g, int32_t group, int32_t source_index,
                              const double *energy, double *src_energy);

/* Constructors with a gather, for model files (arrays taken over, also on
 * failure): pool.c (window: the six numbers of fib_graph_add_pool),
 * affine.c (float64), last_step.c. */
int32_t fib_graph_add_pool_gather(fib_graph *g, int32_t source, int32_t kind,
                                  const int64_t window[6], int64_t n_units,
                                  int64_t *reads, int32_t *group_out);
int32_t fib_graph_add_affine_gather(fib_graph *g, int32_t source, int64_t n_units,
                                    double *scale, double *shift, int64_t *reads,
                                    int32_t *group_out);
int32_t fib_graph_add_last_step_gather(fib_graph *g, int32_t source, int64_t n_units,
                                       int64_t *reads, int32_t *group_out);
int32_t fib_graph_add_select_step_gather(fib_graph *g, int32_t source, int64_t position,
                                         int64_t n_units, int64_t *reads, int32_t *group_out);
/* unit_constants.c: constants held per unit, rows x n_units row-major in
 * dtype (a class token: k rows; a position shift: one row per position),
 * part of each unit's fiber signature. */
typedef struct fib_unit_constants {
    int32_t dtype;
    int64_t rows;
    void *values; /* owned; NULL when rows = 0 */
} fib_unit_constants;
double fib_unit_constant(const fib_unit_constants *t, int64_t n_units, int64_t row,
                         int64_t unit);
void fib_unit_constants_free(fib_unit_constants *t);
/* A copy of users' values, refused (fn names the caller) when one is not
 * finite. */
int32_t fib_unit_constants_copy(fib_unit_constants *t, int32_t dtype, int64_t rows,
                                int64_t n_units, const void *values, const char *fn,
                                int32_t group);
/* Fibers: the class of the source unit read (reads: NULL is i), then the
 * unit's constants. */
int64_t fib_unit_constants_fiber_width(const fib_unit_constants *t);
void fib_unit_constants_fiber_fill(const fib_unit_constants *t, const fib_partition *src,
                                   const int64_t *reads, int64_t n_units, fib_signature *sig,
                                   int64_t offset);
/* Float64 tables of a base (one column per class of own: the class means)
 * and of a lift (one column per unit of own, its class's column). */
int32_t fib_unit_constants_merge(const fib_unit_constants *t, const fib_partition *own,
                                 fib_unit_constants *out);
int32_t fib_unit_constants_lift(const fib_unit_constants *t, int64_t n_classes,
                                const fib_partition *own, fib_unit_constants *out);
/* A block of constants held per unit over one source read through
 * `reads` (NULL: unit i reads source unit i): a prepend, a position shift.
 * `push` is how its kind adds such a block (the kind's shape), taking the
 * constants and the gather over (freed on failure too); its base and lift
 * are made through it. */
typedef int32_t (*fib_unit_constants_push_fn)(fib_graph *g, int32_t source, int64_t n_units,
                                              fib_unit_constants values, int64_t *reads,
                                              int32_t *group_out);
typedef struct fib_unit_constants_block {
    fib_unit_constants values;
    int64_t *reads;
    fib_unit_constants_push_fn push;
} fib_unit_constants_block;
const fib_unit_constants_block *fib_unit_constants_block_of(const fib_graph *g, int32_t group);
/* Pushes `grp` (its op, ops, shape and source) holding a new block of
 * values and reads, both taken over (freed on failure too). */
int32_t fib_unit_constants_block_push(fib_graph *g, fib_group grp, fib_unit_constants values,
                                      int64_t *reads, fib_unit_constants_push_fn push,
                                      int32_t *group_out);
/* The fib_block_ops entries such blocks share. */
void fib_unit_constants_block_free(void *block);
int64_t fib_unit_constants_block_fiber_width(const fib_graph *g, int32_t group,
                                             const fib_partition *parts);
int32_t fib_unit_constants_block_fiber_fill(const fib_graph *g, int32_t group,
                                            const fib_partition *parts, fib_signature *sig,
                                            int64_t offset);
/* The fiber signature with the constants lent in place (fib_block_ops
 * fiber_view): the source unit's class materialised, the table's column of
 * each unit borrowed; false (nothing to lend, or no memory): fill it. */
bool fib_unit_constants_block_fiber_view(const fib_graph *g, int32_t group,
                                         const fib_partition *parts, fib_scratch *scratch,
                                         fib_signature *sig);
int32_t fib_unit_constants_block_opfiber_fill(const fib_graph *g, int32_t group,
                                              int32_t source_index, const fib_partition *parts,
                                              const fib_partition *fibers, fib_signature *sig,
                                              int64_t offset);
/* Its exact form (fib_block_ops opfiber_exact_width, _fill): per source
 * unit (the readers' class, their count) where that is one pair. */
int64_t fib_unit_constants_block_opfiber_exact_width(const fib_graph *g, int32_t group,
                                                     int32_t source_index,
                                                     const fib_partition *parts,
                                                     const fib_partition *fibers);
int32_t fib_unit_constants_block_opfiber_exact_fill(const fib_graph *g, int32_t group,
                                                    int32_t source_index,
                                                    const fib_partition *parts,
                                                    const fib_partition *fibers,
                                                    fib_signature *sig, int64_t offset);
int32_t fib_unit_constants_block_compress(const fib_graph *g, int32_t group,
                                          const fib_partition *parts, fib_graph *base,
                                          const int32_t *base_ids);
int32_t fib_unit_constants_block_lift(const fib_graph *base, int32_t group,
                                      const fib_partition *parts, fib_graph *full,
                                      const int32_t *full_ids);
/* The opfiber width of a block whose source units receive their readers'
 * errors summed per class of the group (dense, affine, copies): one
 * coordinate per class. */
static inline int64_t fib_per_class_opfiber_width(const fib_graph *g, int32_t group,
                                                   int32_t source_index,
                                                   const fib_partition *parts,
                                                   const fib_partition *fibers)
{
    (void)g, (void)source_index, (void)fibers;
    return parts[group].n_classes;
}
/* Opfibers of a block whose unit i passes the error of source unit
 * reads[i] (NULL: i) on unchanged: per source unit, its readers counted per
 * opfiber class of the group. */
int32_t fib_copy_opfiber_fill(const fib_graph *g, int32_t group, const int64_t *reads,
                              const fib_partition *parts, fib_signature *sig, int64_t offset);

/* prepend.c, position_shift.c: float64 constants (n_positions x n_units,
 * positions x n_units) and a gather, taken over. */
int32_t fib_graph_add_prepend_owned(fib_graph *g, int32_t source, int64_t n_positions,
                                    int64_t n_units, double *values, int64_t *reads,
                                    int32_t *group_out);
int32_t fib_graph_add_position_shift_owned(fib_graph *g, int32_t source, int64_t n_units,
                                           double *shift, int64_t *reads, int32_t *group_out);

/* block_source.c: what every kind's build shares (fib_block_ops.build).
 * Tensors are absent when their name is NULL; messages carry the
 * description's context (its fail and rewrap). */
const fib_group *fib_source_group(const fib_graph *g, const fib_block_source *S, int32_t s);
int32_t fib_source_error(const fib_block_source *S, const char *format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
int32_t fib_source_nomem(const fib_block_source *S);
/* FIB_OK, or the constructor's error rewrapped with the context. */
int32_t fib_source_done(const fib_block_source *S, int32_t status);
int32_t fib_source_tensor(const fib_block_source *S, const char *key, bool required,
                          int32_t n_dims, const int64_t *shape, fib_stored_tensor *out);
int32_t fib_source_vector(const fib_block_source *S, const char *key, bool required,
                          int64_t n, fib_stored_tensor *out);
/* Tensors handed to a public constructor: borrowed when they share a
 * dtype, else float64 copies (then the constructor must copy). */
#define FIB_SOURCE_MAX_TENSORS 4
typedef struct fib_source_tensors {
    int32_t dtype;
    const void *data[FIB_SOURCE_MAX_TENSORS];
    void *tmp[FIB_SOURCE_MAX_TENSORS];
    uint32_t flags;
} fib_source_tensors;
int32_t fib_source_tensors_make(const fib_block_source *S, const fib_stored_tensor *t, int n,
                                fib_source_tensors *s);
void fib_source_tensors_free(fib_source_tensors *s);
/* A "weight" of the given shape and an optional "bias" of one value per
 * unit, as a set (data[0] the weight, data[1] the bias or NULL). */
int32_t fib_source_weight_bias(const fib_block_source *S, int32_t n_dims, const int64_t *shape,
                               fib_source_tensors *s);
/* A float64 copy of a tensor for an owned constructor (NULL when absent),
 * every value finite (and > 0 when positive). */
int32_t fib_source_owned_copy(const fib_block_source *S, const char *key,
                              const fib_stored_tensor *t, bool positive, double **out);
int32_t fib_source_expect_params(const fib_block_source *S, int64_t count);
/* A gather: n indices params[from ..] into a group of `width` units,
 * copied (NULL when it is the identity over a group as wide). */
int32_t fib_source_read_gather(const fib_block_source *S, int64_t from, int64_t n,
                               int64_t width, int64_t **out);
/* Refuses params, a scalar or tensors (other than tensor_keys, NULL ended)
 * that the kind does not have. */
int32_t fib_source_no_extras(const fib_block_source *S, bool params_allowed,
                             bool scalar_allowed, const char *const *tensor_keys);
/* The six window numbers params[from ..]: kernel, stride >= 1, pad >= 0. */
int32_t fib_source_check_window(const fib_block_source *S, int64_t from);

/* op_names.c: the number of groups a FIB_OP_* kind reads (fib_op_name is
 * public). */
int32_t fib_op_arity(int32_t op);
/* Whether a FIB_OP_* kind is a block of a network (model files hold
 * networks); graph node groups are not. */
bool fib_op_is_network(int32_t op);
/* kind_table.c: the fib_block_ops of a network's kind; NULL for an input
 * (no block) and for node groups (graphs layer). */
const fib_block_ops *fib_block_ops_of(int32_t op);

#endif
