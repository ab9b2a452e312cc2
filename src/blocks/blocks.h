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
} fib_attend;
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

/* dense.c: adds a dense group with weights owned as float64. */
int32_t fib_graph_add_dense_owned(fib_graph *g, int32_t source, int64_t n_out,
                                  double *weights, double *bias,
                                  int32_t *group_out);
double fib_dense_weight(const fib_dense *d, int64_t row, int64_t col);
double fib_dense_bias(const fib_dense *d, int64_t row);

/* sum.c: adds a sum group that gathers (arrays are taken over). */
int32_t fib_graph_add_sum_gather(fib_graph *g, int32_t a, int32_t b,
                                 int64_t n_units, int64_t *gather_a,
                                 int64_t *gather_b, int32_t *group_out);

/* product.c: adds a product group that gathers (arrays taken over). */
int32_t fib_graph_add_product_gather(fib_graph *g, int32_t a, int32_t b,
                                     int64_t n_units, int64_t *gather_a,
                                     int64_t *gather_b, int32_t *group_out);

/* sum.c: compress and lift of a two-source block whose data is a fib_sum
 * (sum, product); `add` is its gathering constructor. */
typedef int32_t (*fib_pair_add_fn)(fib_graph *g, int32_t a, int32_t b, int64_t n_units,
                                   int64_t *gather_a, int64_t *gather_b,
                                   int32_t *group_out);
int32_t fib_pair_compress(const fib_graph *g, int32_t group, const fib_partition *parts,
                          fib_graph *base, const int32_t *base_ids, fib_pair_add_fn add);
int32_t fib_pair_lift(const fib_graph *base, int32_t group, const fib_partition *parts,
                      fib_graph *full, const int32_t *full_ids, fib_pair_add_fn add);

/* sum.c: budget roles and energies of a sum or a product (fib_block_ops):
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


#endif
