/*
 * fibration.h — the public API of libfibration.
 *
 * libfibration finds the local symmetries of neural networks and directed
 * graphs — fibers, flavoured opfibers and covers — and uses them to compress
 * a network without changing what it computes (the base), to lift a base back
 * to full width, and to break symmetry for continual learning.
 *
 * This header is the reference manual. Conventions used throughout:
 *
 *  - Every fallible function returns an int32_t status: FIB_OK (0) or one of
 *    the negative FIB_E_* codes below. Their values are fixed forever; new
 *    codes are only appended. Results come back through out-parameters, which
 *    are left untouched on failure unless stated otherwise.
 *  - After a failing call, fib_last_error() returns a message for the calling
 *    thread that names the group, block and index at fault.
 *  - The library never aborts, exits or prints.
 *  - No C enum appears in any signature: kinds (dtype, activation, symmetry,
 *    tolerance) are int32_t constants defined here as macros.
 *  - Handles are opaque. Every *_free(NULL) is a no-op.
 *  - Weights passed to builder functions are BORROWED unless FIB_COPY is
 *    given: the caller keeps them alive and unchanged while the graph lives.
 *    They are checked (finite) when added. A value changed afterwards is
 *    not seen by fib_color, which reads the weights as they are then (and
 *    keeps class sums that fib_compress uses instead of reading them
 *    again); fib_graph_forward, fib_compress, fib_coloring_is_balanced
 *    and fib_model_save refuse a NaN or infinite weight they meet with
 *    FIB_E_NONFINITE naming the group, tensor and element. Graphs loaded from files borrow the same
 *    way from a memory mapping (fib_load_options.copy).
 *  - Matrices are row-major with a leading dimension `ld` (elements between
 *    the starts of two rows, ld >= number of columns).
 *  - Unit indices are 0-based int64_t; group ids are 0-based int32_t, given
 *    out in creation order.
 *  - Thread safety: distinct handles may be used from different threads;
 *    functions taking a const handle may run concurrently on the same handle.
 *  - What may still change is listed under "Experimental" at the end.
 */
#ifndef FIBRATION_H
#define FIBRATION_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && !defined(FIB_STATIC)
#  ifdef FIB_BUILDING_LIBRARY
#    define FIB_API __declspec(dllexport)
#  else
#    define FIB_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__) && defined(FIB_BUILDING_LIBRARY)
#  define FIB_API __attribute__((visibility("default")))
#else
#  define FIB_API
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                  */
/* ------------------------------------------------------------------------ */

#define FIB_VERSION_MAJOR 0
#define FIB_VERSION_MINOR 2
#define FIB_VERSION_PATCH 0
/* MAJOR * 10000 + MINOR * 100 + PATCH */
#define FIB_VERSION_NUMBER \
    (FIB_VERSION_MAJOR * 10000 + FIB_VERSION_MINOR * 100 + FIB_VERSION_PATCH)

/* The version of the library actually loaded, as FIB_VERSION_NUMBER. */
FIB_API int32_t fib_version(void);
/* The same as a static string, "MAJOR.MINOR.PATCH". */
FIB_API const char *fib_version_string(void);

/* Feature bits returned by fib_features(). */
#define FIB_FEATURE_OPENMP 1u /* built with OpenMP: n_threads > 1 is honoured */
#define FIB_FEATURE_AVX2 2u   /* the AVX2 kernels are the ones in use */
#define FIB_FEATURE_AVX512 4u /* the AVX-512 kernels are the ones in use */

/* What this build and this CPU provide, as FIB_FEATURE_* bits. */
FIB_API uint32_t fib_features(void);

/* ------------------------------------------------------------------------ */
/* Status codes and errors                                                  */
/* ------------------------------------------------------------------------ */

#define FIB_OK 0
#define FIB_E_NULL (-1)        /* a required pointer argument is NULL */
#define FIB_E_INVALID (-2)     /* an argument has no meaning (unknown kind, bad flag, eps < 0) */
#define FIB_E_SHAPE (-3)       /* sizes that must agree do not */
#define FIB_E_NONFINITE (-4)   /* a weight or input is NaN or infinite */
#define FIB_E_OVERFLOW (-5)    /* a size is too large to be represented */
#define FIB_E_NOMEM (-6)       /* an allocation failed; nothing leaked, handles unchanged */
#define FIB_E_RANGE (-7)       /* a group id, unit index or class index is out of range */
#define FIB_E_MISMATCH (-8)    /* handles that do not belong together (colouring of another graph or of its state before a change) */
#define FIB_E_UNSUPPORTED (-9) /* a valid request this version cannot do; the message says what */
#define FIB_E_IO (-10)         /* a file could not be opened, read or written */
#define FIB_E_FORMAT (-11)     /* a file or description is malformed; the message says where */
#define FIB_E_CANCELLED (-12)  /* the progress callback asked to stop */
#define FIB_E_BUFFER (-13)     /* a caller buffer is too small; the required size is reported */

/* The name of a status code ("FIB_E_SHAPE"), or "FIB_E_UNKNOWN". Never NULL. */
FIB_API const char *fib_status_name(int32_t status);

/* The message of the last failing call on this thread, "" if none. The
 * string belongs to the library and is valid until the next call on this
 * thread. At most 4095 bytes: enough for a path of PATH_MAX bytes and the
 * reason after it; a longer message keeps its first 1 KiB and its end (the
 * reason) around " ... ", cut between UTF-8 characters. */
FIB_API const char *fib_last_error(void);

/* ------------------------------------------------------------------------ */
/* Kinds                                                                    */
/* ------------------------------------------------------------------------ */

/* Element types of weight and activity buffers. */
#define FIB_DTYPE_F32 1
#define FIB_DTYPE_F64 2
#define FIB_DTYPE_F16 3  /* IEEE binary16, weights only (see "Half precision") */
#define FIB_DTYPE_BF16 4 /* bfloat16, weights only (see "Half precision") */

/* Activations applied to a group after its block. */
#define FIB_ACT_LINEAR 0
#define FIB_ACT_RELU 1
#define FIB_ACT_LEAKY_RELU 2 /* parameter: the negative slope (PyTorch default 0.01) */
#define FIB_ACT_TANH 3
#define FIB_ACT_SIGMOID 4
#define FIB_ACT_GELU 5       /* exact form 0.5 x (1 + erf(x / sqrt 2)) */
#define FIB_ACT_SILU 6
#define FIB_ACT_RELU6 7        /* min(max(x, 0), 6) */
#define FIB_ACT_HARDSWISH 8    /* x * min(max(x + 3, 0), 6) / 6 */
#define FIB_ACT_HARDSIGMOID 9  /* min(max(x + 3, 0), 6) / 6 */
#define FIB_ACT_MISH 10        /* x * tanh(softplus(x)) */
#define FIB_ACT_SOFTPLUS 11    /* log(1 + exp(x)) (beta 1; x > 20 gives x) */
#define FIB_ACT_GELU_TANH 12   /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
                                  (GPT-2's gelu_new, gelu(approximate='tanh')) */

/* What produces a group (fib_graph_group_info). */
#define FIB_OP_INPUT 0
#define FIB_OP_DENSE 1
#define FIB_OP_SUM 2
#define FIB_OP_CONV 3      /* 2-D convolution over positions; channels are units */
#define FIB_OP_POOL 4      /* max or average pooling, channel by channel */
#define FIB_OP_FLATTEN 5   /* channels x positions -> units, PyTorch order */
#define FIB_OP_AFFINE 6    /* per-unit scale and shift (batch norm) */
#define FIB_OP_LSTM 7      /* LSTM over a sequence (gates i, f, g, o) */
#define FIB_OP_GRU 8       /* GRU over a sequence (gates r, z, n) */
#define FIB_OP_LAST_STEP 9 /* the last position of a sequence */
#define FIB_OP_ATTEND 10   /* multi-head scaled dot-product attention core */
#define FIB_OP_NORM 11     /* LayerNorm / RMSNorm over a group's units */
#define FIB_OP_NODES 12    /* a group of graph nodes (fib_graph_add_nodes) */
#define FIB_OP_PRODUCT 13  /* elementwise product of two groups (a gate) */
#define FIB_OP_PREPEND 14  /* constant positions before a sequence */
#define FIB_OP_POSITION_SHIFT 15 /* a constant added per unit and position */
#define FIB_OP_SELECT_STEP 16    /* one position of a sequence, by index */

/* Pooling kinds (fib_graph_add_pool). */
#define FIB_POOL_MAX 0
#define FIB_POOL_AVG 1

/* Normalisation kinds (fib_graph_add_norm). */
#define FIB_NORM_LAYER 0
#define FIB_NORM_RMS 1

/* Which symmetry a colouring describes. */
#define FIB_SYM_FIBERS 1   /* input trees: computed forward, inputs all distinct */
#define FIB_SYM_OPFIBERS 2 /* flavoured output trees: backward, outputs all distinct */
#define FIB_SYM_COVERS 3   /* fibers meet opfibers */
#define FIB_SYM_AUTOMORPHISMS 4 /* automorphism orbits (fib_automorphisms) */

/* How equal two colour-sum signatures must be to share a class. */
#define FIB_TOL_EXACT 0 /* equal up to the rounding of the sums (see fib_color) */
#define FIB_TOL_ABS 1   /* every coordinate spans at most eps inside a class */
#define FIB_TOL_REL 2   /* FIB_TOL_ABS with eps times the group's scale: the
                           median L2 norm of its signature rows (non-label
                           coordinates), so one eps means the same in every
                           layer */
#define FIB_TOL_COSINE 3 /* the seed authors' method: rows L2-normalised,
                            distance 1 - cosine, average-linkage
                            agglomerative clustering cut at eps. O(n^2)
                            memory and time per group: refused
                            (FIB_E_UNSUPPORTED) above FIB_LINKAGE_MAX_UNITS */
#define FIB_TOL_COMPLETE 4 /* complete linkage on the L-infinity distance:
                              every PAIR of a class is within eps in every
                              coordinate (+ rounding). O(n^2), same bound */
#define FIB_TOL_WARD 5  /* Ward linkage: merges the two classes whose union
                           least increases the weighted residual about the
                           classes' weighted means (with FIB_TOL_SCALED the
                           best rank-1 fit), each row weighted by the L2 norm
                           of its outgoing weights; stops when the square
                           root of that increase exceeds eps times the
                           group's weighted scale (as FIB_TOL_REL). O(n^2),
                           same bound. The grouping of
                           fib_compress_to_budget. fib_compress merges with
                           the plain mean, not the weighted one: a unit with
                           (nearly) zero outgoing weights joins a class at
                           (nearly) no cost yet moves the base's mean, so the
                           residual is not a bound on the base's error */
/* Flag OR'ed with a grouping mode above (FIB_TOL_SCALED | FIB_TOL_ABS, ...):
 * scale-aware merging for positively homogeneous activations (linear, ReLU,
 * leaky ReLU). A unit whose signature is s * r (s > 0) has activity s * h_r,
 * so signatures are grouped after L2 normalisation (eps is then relative)
 * and each unit gets a scale s_i: the class's representative r is the best
 * rank-1 fit of its members' signatures (r = sigma v, the top singular pair,
 * normalised so that the class's scales average 1) and s_i = <sig_i, v> /
 * sigma * mean. The signature of a dense group is its scaled colour sums
 * sum_{k in c} W[i,k] s_k and its bias. fib_compress then builds the base
 * from the representatives and carries the scales into the outgoing
 * weights: W_hat[j, c] = sum_{k in c} W[j,k] s_k for a consumer j. Exact
 * (up to rounding) for planted scaled copies. Groups with another
 * activation keep scale 1 and are grouped without normalisation. Fibers
 * only, and only graphs whose scaled groups are read by dense groups
 * (else FIB_E_UNSUPPORTED). Read the scales with fib_coloring_scales. */
#define FIB_TOL_SCALED 256
/* Largest group FIB_TOL_COSINE, _COMPLETE and _WARD cluster (their pairwise
 * matrix takes n^2 / 2 doubles: 256 MiB at this size). */
#define FIB_LINKAGE_MAX_UNITS 8192

/* Builder flags. */
#define FIB_COPY 1u /* copy the weights instead of borrowing them */

/* ------------------------------------------------------------------------ */
/* Graphs                                                                   */
/* ------------------------------------------------------------------------ */

/* A network: groups of units, each produced by one block (an input, a
 * dense or convolutional block, pooling, flatten, an affine map, a sum,
 * an LSTM or GRU, the last step of a sequence, an attention core, a norm;
 * FIB_OP_*) reading earlier groups, followed by the group's activation; or
 * the node groups of a general directed graph. Groups are created in
 * topological order. A group that no other group reads is an output group. */
typedef struct fib_graph fib_graph;

/* Creates an empty graph.
 * Errors: FIB_E_NULL, FIB_E_NOMEM. */
FIB_API int32_t fib_graph_create(fib_graph **out);
/* Frees a graph and everything it owns. NULL is a no-op. */
FIB_API void fib_graph_free(fib_graph *graph);

/* Adds an input group of n_units units (1 <= n_units <= 2^40).
 * Its id is written to *group_out.
 * Errors: FIB_E_NULL, FIB_E_SHAPE (n_units < 1), FIB_E_OVERFLOW (n_units >
 * 2^40), FIB_E_NOMEM. */
FIB_API int32_t fib_graph_add_input(fib_graph *graph, int64_t n_units,
                                    int32_t *group_out);

/* Adds a dense block: a new group of n_out units computing
 *     z[i] = sum_k weights[i * ld + k] * x[k] + bias[i]
 * over the units x of group `source` (n_in = its width, ld >= n_in). The new
 * group starts with the linear activation (see fib_graph_set_activation).
 * dtype is FIB_DTYPE_F32 or FIB_DTYPE_F64 for both weights and bias; bias may
 * be NULL (no bias). flags: 0 (borrow: weights and bias stay alive and
 * unchanged while the graph lives) or FIB_COPY.
 * Errors: FIB_E_NULL, FIB_E_RANGE (source), FIB_E_INVALID (dtype, flags),
 * FIB_E_SHAPE (n_out < 1, ld < n_in), FIB_E_OVERFLOW, FIB_E_NONFINITE (the
 * message gives row and column), FIB_E_NOMEM. */
FIB_API int32_t fib_graph_add_dense(fib_graph *graph, int32_t source,
                                    int64_t n_out, int32_t dtype,
                                    const void *weights, int64_t ld,
                                    const void *bias, uint32_t flags,
                                    int32_t *group_out);

/* Adds the elementwise sum of two groups of equal width (a residual
 * connection): z[i] = a[i] + b[i]. Errors: FIB_E_RANGE, FIB_E_SHAPE. */
FIB_API int32_t fib_graph_add_sum(fib_graph *graph, int32_t a, int32_t b,
                                  int32_t *group_out);

/* Sets the activation of a non-input group (FIB_ACT_*). `parameter` is the
 * negative slope of FIB_ACT_LEAKY_RELU and ignored otherwise.
 * Errors: FIB_E_RANGE, FIB_E_INVALID (unknown kind, input group, non-finite
 * parameter). */
FIB_API int32_t fib_graph_set_activation(fib_graph *graph, int32_t group,
                                         int32_t activation, double parameter);

/* Gives a group a name (copied; at most 255 bytes) used in reports.
 * Errors: FIB_E_NULL, FIB_E_RANGE (group), FIB_E_INVALID (name too long),
 * FIB_E_NOMEM. */
FIB_API int32_t fib_graph_set_group_name(fib_graph *graph, int32_t group,
                                         const char *name);

/* Adds an input group whose every unit is present at rows x cols positions:
 * an image of n_units channels (rows x cols pixels) or a sequence of
 * n_units features (rows = length, cols = 1). Blocks that act per position
 * (dense, sum, affine, norm) keep the positions of their source; weights are
 * shared by all positions, so positions never change a colouring.
 * Errors: FIB_E_NULL, FIB_E_SHAPE, FIB_E_OVERFLOW. */
FIB_API int32_t fib_graph_add_input_positions(fib_graph *graph, int64_t n_units,
                                              int64_t rows, int64_t cols,
                                              int32_t *group_out);

/* The positions of a group (1 x 1 for plain vectors).
 * Errors: FIB_E_NULL, FIB_E_RANGE (group). */
FIB_API int32_t fib_graph_group_positions(const fib_graph *graph, int32_t group,
                                          int64_t *rows, int64_t *cols);

/* Overrides the tolerance eps used for one group by fib_color with any
 * tolerant mode (FIB_TOL_ABS, _REL, _COSINE, _COMPLETE, _WARD, with or
 * without FIB_TOL_SCALED); eps < 0 removes the override. Errors: FIB_E_RANGE,
 * FIB_E_INVALID (NaN or +infinity). */
FIB_API int32_t fib_graph_set_group_eps(fib_graph *graph, int32_t group,
                                        double eps);

/* Number of groups.
 * Errors: FIB_E_NULL. */
FIB_API int32_t fib_graph_num_groups(const fib_graph *graph, int32_t *n_out);

/* Describes a group. Any out-pointer may be NULL.
 *   op:         FIB_OP_*
 *   n_units:    width
 *   activation: FIB_ACT_*, and its parameter
 *   has_bias:   1 if a dense block has a bias
 *   n_sources:  number of groups read (0 for inputs, 1 dense, 2 sum,
 *               3 attention core: q, k, v)
 *   is_output:  1 if no group reads this one
 * Errors: FIB_E_NULL (graph), FIB_E_RANGE (group). */
FIB_API int32_t fib_graph_group_info(const fib_graph *graph, int32_t group,
                                     int32_t *op, int64_t *n_units,
                                     int32_t *activation, double *parameter,
                                     int32_t *has_bias, int32_t *n_sources,
                                     int32_t *is_output);

/* The i-th source group of a group (0 <= i < n_sources).
 * Errors: FIB_E_NULL, FIB_E_RANGE (group, i). */
FIB_API int32_t fib_graph_group_source(const fib_graph *graph, int32_t group,
                                       int32_t i, int32_t *source_out);

/* The group's name, "" if none was set. Never NULL for a valid group; NULL
 * when graph is NULL or group out of range. Valid while the graph lives. */
FIB_API const char *fib_graph_group_name(const fib_graph *graph,
                                         int32_t group);

/* For a FIB_OP_SUM group: which unit of each source unit i adds, so that
 * z[i] = a[index_a[i]] + b[index_b[i]] (for a FIB_OP_PRODUCT group, the
 * factors of z[i] = a[index_a[i]] * b[index_b[i]]). In a graph built with
 * fib_graph_add_sum both are the identity; a base gathers. Either array may
 * be NULL. Each holds n_units entries.
 * Errors: FIB_E_NULL, FIB_E_RANGE (group), FIB_E_INVALID (not a sum group). */
FIB_API int32_t fib_graph_read_sum(const fib_graph *graph, int32_t group,
                                   int64_t *index_a, int64_t *index_b);

/* Copies a dense group's weights (n_units x n_in, row-major, leading
 * dimension ld >= n_in) and bias (n_units, or NULL to skip) into caller
 * buffers, converted to dtype. A group without bias writes zeros.
 * Errors: FIB_E_RANGE, FIB_E_INVALID (not a dense group, dtype), FIB_E_SHAPE. */
FIB_API int32_t fib_graph_read_dense(const fib_graph *graph, int32_t group,
                                     int32_t dtype, void *weights, int64_t ld,
                                     void *bias);

/* Total number of weights and biases in the graph.
 * Errors: FIB_E_NULL. */
FIB_API int32_t fib_graph_num_parameters(const fib_graph *graph,
                                         int64_t *n_out);

/* Reference forward pass, computed in double precision. `inputs` is
 * batch x (sum of input group activity widths, in group order), row-major;
 * `outputs` is batch x (sum of output group activity widths, in group
 * order). The activity of a group with positions (an image, a sequence) is
 * laid out [position][unit]: for images, channels last (NHWC); for
 * sequences, time-major within a sample (PyTorch's batch_first layout).
 * dtype applies to both buffers. Errors: FIB_E_NULL, FIB_E_SHAPE (batch < 1), FIB_E_INVALID,
 * FIB_E_NONFINITE (an input; or a weight that became NaN or infinite in
 * borrowed memory after it was added: the message names group, tensor and
 * element; a block's values are looked at only when its output is not
 * finite, so this costs nothing otherwise), FIB_E_NOMEM. */
FIB_API int32_t fib_graph_forward(const fib_graph *graph, int64_t batch,
                                  int32_t dtype, const void *inputs,
                                  void *outputs);

/* Like fib_graph_forward, but writes the activity (after activation) of one
 * group `group` into `activity` (batch x its width).
 * Errors: those of fib_graph_forward, and FIB_E_RANGE (group). */
FIB_API int32_t fib_graph_forward_group(const fib_graph *graph, int64_t batch,
                                        int32_t dtype, const void *inputs,
                                        int32_t group, void *activity);

/* Sum of the activity widths (units x positions) of the input groups and
 * of the output groups.
 * Errors: FIB_E_NULL. */
FIB_API int32_t fib_graph_io_width(const fib_graph *graph, int64_t *n_inputs,
                                   int64_t *n_outputs);

/* ------------------------------------------------------------------------ */
/* Convolutional, recurrent, attention and normalisation blocks             */
/* ------------------------------------------------------------------------ */

/* Adds a 2-D convolution (PyTorch Conv2d; Conv1d is rows = 1): a group of
 * n_out channels over the channels of `source`, which must have positions.
 * weights: n_out x (in_channels / groups) x kernel_rows x kernel_cols
 * (OIHW), packed; bias: n_out or NULL. Stride and zero padding per axis;
 * dilation 1. Channels are the units: their colour sums are the kernels
 * summed over each source class. Errors: FIB_E_SHAPE (groups not dividing
 * the channels, kernel larger than the padded input), and as dense. */
FIB_API int32_t fib_graph_add_conv(fib_graph *graph, int32_t source,
                                   int64_t n_out, int64_t kernel_rows,
                                   int64_t kernel_cols, int64_t stride_rows,
                                   int64_t stride_cols, int64_t pad_rows,
                                   int64_t pad_cols, int64_t groups,
                                   int32_t dtype, const void *weights,
                                   const void *bias, uint32_t flags,
                                   int32_t *group_out);

/* Adds pooling (FIB_POOL_MAX or FIB_POOL_AVG; average counts padding as
 * zeros, like PyTorch's default) of every channel of `source`.
 * Errors: FIB_E_SHAPE (padding above half the kernel, which PyTorch
 * refuses too; kernel larger than the padded input), FIB_E_INVALID (kind),
 * FIB_E_OVERFLOW. */
FIB_API int32_t fib_graph_add_pool(fib_graph *graph, int32_t source,
                                   int32_t kind, int64_t kernel_rows,
                                   int64_t kernel_cols, int64_t stride_rows,
                                   int64_t stride_cols, int64_t pad_rows,
                                   int64_t pad_cols, int32_t *group_out);

/* Flattens a group with positions into a plain group of
 * n_units x rows x cols units in PyTorch's order (channel, row, col), so
 * that a dense block can follow a convolution. A flattened channel
 * contributes one unit per position, all of its channel's colour.
 * Errors: FIB_E_NULL, FIB_E_RANGE (source), FIB_E_OVERFLOW, FIB_E_NOMEM. */
FIB_API int32_t fib_graph_add_flatten(fib_graph *graph, int32_t source,
                                      int32_t *group_out);

/* Adds a per-unit affine map z[i] = scale[i] * x[i] + shift[i] (a batch
 * norm in inference mode: scale = gamma / sqrt(var + eps), shift = beta -
 * mean * scale). scale and shift hold n_units values of `source`; shift may
 * be NULL.
 * Errors: FIB_E_NULL, FIB_E_RANGE (source), FIB_E_INVALID (dtype, flags),
 * FIB_E_NONFINITE, FIB_E_OVERFLOW, FIB_E_NOMEM. */
FIB_API int32_t fib_graph_add_affine(fib_graph *graph, int32_t source,
                                     int32_t dtype, const void *scale,
                                     const void *shift, uint32_t flags,
                                     int32_t *group_out);

/* Adds an LSTM layer (PyTorch nn.LSTM, one direction, gate order i, f, g,
 * o) over the sequence `source` (positions rows = length, cols = 1): a
 * group of `hidden` units, present at every step (h_t). w_ih: 4 hidden x
 * in, w_hh: 4 hidden x hidden, b_ih, b_hh: 4 hidden each or NULL. Initial
 * states are zero. A unit is the tuple of its gates; its colouring is the
 * fixed point of refinement through w_hh. Stack layers by reading the
 * previous LSTM group.
 * Errors: FIB_E_NULL, FIB_E_RANGE (source), FIB_E_INVALID (dtype, flags),
 * FIB_E_SHAPE, FIB_E_NONFINITE, FIB_E_OVERFLOW, FIB_E_NOMEM. */
FIB_API int32_t fib_graph_add_lstm(fib_graph *graph, int32_t source,
                                   int64_t hidden, int32_t dtype,
                                   const void *w_ih, const void *w_hh,
                                   const void *b_ih, const void *b_hh,
                                   uint32_t flags, int32_t *group_out);

/* Adds a GRU layer (PyTorch nn.GRU, gate order r, z, n), as the LSTM:
 * w_ih: 3 hidden x in, w_hh: 3 hidden x hidden, biases 3 hidden or NULL.
 * Errors: those of fib_graph_add_lstm. */
FIB_API int32_t fib_graph_add_gru(fib_graph *graph, int32_t source,
                                  int64_t hidden, int32_t dtype,
                                  const void *w_ih, const void *w_hh,
                                  const void *b_ih, const void *b_hh,
                                  uint32_t flags, int32_t *group_out);

/* The last position of a sequence (x[:, -1] in PyTorch): a plain group.
 * Errors: FIB_E_NULL, FIB_E_RANGE (source), FIB_E_SHAPE (source not a
 * sequence), FIB_E_OVERFLOW, FIB_E_NOMEM. */
FIB_API int32_t fib_graph_add_last_step(fib_graph *graph, int32_t source,
                                        int32_t *group_out);

/* Adds multi-head self-attention (PyTorch nn.MultiheadAttention with
 * batch_first, q = k = v = source, no mask) over the sequence `source` of
 * embed_dim = its width E. in_weight: 3E x E (Wq, Wk, Wv stacked, PyTorch's
 * in_proj_weight), in_bias: 3E or NULL, out_weight: E x E, out_bias: E or
 * NULL. Creates five groups in order: q, k, v (dense), the attention core
 * (FIB_OP_ATTEND, one unit per v dimension) and the output projection
 * (dense), whose id is returned. The softmax scale is 1/sqrt(E / n_heads).
 * In a base, a head keeps one q/k dimension per distinct (q class, k class)
 * pair of its dimensions, weighted by the pair's multiplicity, so the score
 * stays exact while the head shrinks. Errors: FIB_E_SHAPE (E not divisible
 * by n_heads), and as dense. */
FIB_API int32_t fib_graph_add_attention(fib_graph *graph, int32_t source,
                                        int64_t n_heads, int32_t dtype,
                                        const void *in_weight,
                                        const void *in_bias,
                                        const void *out_weight,
                                        const void *out_bias, uint32_t flags,
                                        int32_t *group_out);

/* Adds a normalisation over the units of `source` at every position:
 * FIB_NORM_LAYER (LayerNorm) or FIB_NORM_RMS (RMSNorm); weight (gamma) and
 * bias (beta) hold n_units values or are NULL; epsilon > 0. In a base each
 * unit counts with its class size (multiplicity), so the mean and variance
 * stay those of the original.
 * Errors: FIB_E_NULL, FIB_E_RANGE (source), FIB_E_INVALID (kind, dtype,
 * flags, epsilon), FIB_E_NONFINITE, FIB_E_OVERFLOW, FIB_E_NOMEM. */
FIB_API int32_t fib_graph_add_norm(fib_graph *graph, int32_t source,
                                   int32_t kind, int32_t dtype,
                                   const void *weight, const void *bias,
                                   double epsilon, uint32_t flags,
                                   int32_t *group_out);

/* Parameter tensors of a group's block, numbered from 0 (dense: "weight",
 * "bias"; conv: "weight", "bias"; affine: "scale", "shift"; LSTM/GRU:
 * "weight_ih", "weight_hh", "bias_ih", "bias_hh"; norm: "weight", "bias",
 * "multiplicity"; attention core: "pair_multiplicity"). Absent optional
 * tensors are skipped in the numbering. For index >= the count, returns
 * FIB_E_RANGE. shape receives up to 4 dimensions (unused ones are 1); name
 * is a static string. Any out-pointer may be NULL.
 * Errors: FIB_E_NULL, FIB_E_RANGE (group, index). */
FIB_API int32_t fib_graph_tensor_info(const fib_graph *graph, int32_t group,
                                      int32_t index, int32_t *ndim,
                                      int64_t *shape, const char **name);

/* Copies tensor `index` of a group's block, converted to dtype, into out
 * (count >= its number of elements, else FIB_E_BUFFER), packed row-major.
 * Errors: FIB_E_NULL, FIB_E_RANGE (group, index), FIB_E_INVALID (dtype),
 * FIB_E_BUFFER. */
FIB_API int32_t fib_graph_read_tensor(const fib_graph *graph, int32_t group,
                                      int32_t index, int32_t dtype, void *out,
                                      int64_t count);

/* The integer attributes of a group's block, e.g. conv: kernel_rows,
 * kernel_cols, stride_rows, stride_cols, pad_rows, pad_cols, groups; pool:
 * kind, then the same six, then per channel the source channel it pools;
 * affine, last_step: per unit the source unit it reads; norm: kind, then
 * per unit the source unit it reads (a base gathers); attention core:
 * n_heads, then per
 * head its number of q/k pairs, then per pair (q unit, k unit), then per
 * unit its head and its v unit. Writes min(count, capacity) values and the
 * full count to *count_out (0 for blocks without attributes).
 * Errors: FIB_E_NULL, FIB_E_RANGE (group). */
FIB_API int32_t fib_graph_block_params(const fib_graph *graph, int32_t group,
                                       int64_t *params, int64_t capacity,
                                       int64_t *count_out);

/* The norm's epsilon or the attention's softmax scale; 0 for other blocks.
 * Errors: FIB_E_NULL, FIB_E_RANGE (group). */
FIB_API int32_t fib_graph_block_scalar(const fib_graph *graph, int32_t group,
                                       double *value_out);

/* ------------------------------------------------------------------------ */
/* Colourings                                                               */
/* ------------------------------------------------------------------------ */

/* A partition of every group's units into classes. Classes never span
 * groups. Class ids are canonical: numbered 0, 1, ... in the order of their
 * lowest unit index, so equal partitions give equal arrays.
 *
 * A colouring belongs to the graph it was made for (by fib_color,
 * fib_coloring_create, fib_automorphisms, ...), as that graph was then:
 * every call taking a graph and a colouring refuses with FIB_E_MISMATCH a
 * colouring of another graph, even one of the same shape, and one made
 * before the graph was changed by adding a group or arcs,
 * fib_graph_set_activation, fib_graph_set_initial_classes or
 * fib_graph_set_convention (names and per-group eps change nothing it was
 * made from). What a colouring keeps (class sums for fib_compress) was read
 * from that graph's weights. To use classes found on one graph with
 * another, copy them (fib_coloring_colors) into fib_coloring_create(other)
 * with fib_coloring_set_group. */
typedef struct fib_coloring fib_coloring;

/* Progress callback of long calls: `done` of `total` steps are finished.
 * Return 0 to go on, anything else to cancel (the call then returns
 * FIB_E_CANCELLED, frees what it made and leaves its inputs unchanged). */
typedef int32_t (*fib_progress_fn)(void *user, int64_t done, int64_t total);

typedef struct fib_color_options {
    size_t struct_size;     /* sizeof(fib_color_options), set by init */
    int32_t symmetry;       /* FIB_SYM_*; default FIB_SYM_FIBERS */
    int32_t tolerance;      /* FIB_TOL_*; default FIB_TOL_EXACT */
    double eps;             /* for tolerant modes, >= 0; default 0 */
    int32_t n_threads;      /* 0 = library default; results never depend on it */
    int32_t reserved0;      /* must be 0 */
    fib_progress_fn progress; /* may be NULL */
    void *progress_user;
} fib_color_options;

/* Fills *options with the defaults. struct_size must be the caller's
 * sizeof(fib_color_options) (newer fields beyond it are left at defaults).
 * Errors: FIB_E_NULL, FIB_E_INVALID (struct_size too small). */
FIB_API int32_t fib_color_options_init(fib_color_options *options,
                                       size_t struct_size);

/* Colours the graph. options may be NULL for the defaults.
 *
 * FIB_SYM_FIBERS: units of a group share a class iff, for every class c of
 * every source group, their colour sums sum_{k in c} W[i,k] agree, and their
 * biases agree (sum groups: their two source colours agree). Input units are
 * all distinct. The result is the coarsest such partition (for EXACT).
 *
 * FIB_SYM_OPFIBERS: computed backward; output units are all distinct; units
 * share a class iff for every class c' of every group reading them the sums
 * sum_{k in c'} W[k,i] agree, and their flavours agree: the fiber class for
 * a non-linear activation, one flavour for a linear one.
 *
 * FIB_SYM_COVERS: the meet of fibers and opfibers.
 *
 * FIB_TOL_EXACT compares sums up to their rounding: two sums a, b whose terms
 * have absolute sums A, B are equal iff
 *     |a - b| <= (4 u + (t + 1) 2^-53) (A + B),
 * with u the unit roundoff of the weights' dtype (2^-24 for float32, 2^-53
 * for float64) and t the number of terms. A lifted network whose members'
 * weights are permuted or re-split within a class is therefore found.
 * FIB_TOL_ABS guarantees: inside every class, every signature coordinate
 * spans at most eps (max - min), plus the rounding allowance above.
 * Classes are then formed by a deterministic sort-and-sweep; no pair of
 * units further apart than eps in any coordinate ever shares a class.
 * The sweep first cuts only at gaps wider than eps (+ rounding), coordinate
 * by coordinate to a fixed point, then splits what still spans more than
 * eps greedily in sorted order. So units that form clusters of span <= eps
 * in every coordinate, each cluster lying, in some coordinate, more than eps
 * (+ rounding) from every unit outside it, come out exactly as those
 * clusters (planted classes with noise below eps/2 are recovered).
 *
 * The colouring is the same for every options.n_threads and every SIMD
 * level (FIBRATION_SIMD, fib_features): colour sums are added in one fixed
 * order by every kernel. See docs/performance.md.
 *
 * FIB_TOL_REL, _COSINE, _COMPLETE and _WARD (see their definitions) are
 * deterministic as well; the three linkage modes break ties between equal
 * merge costs by the lowest unit indices. Label coordinates (flavours, head
 * and position ids, and the reader's class in the opfiber signature of a unit
 * with one reader through a sum, norm or attention) are never merged by any
 * mode. They apply to network groups only: a graph with node groups accepts
 * EXACT and ABS only.
 *
 * Errors: FIB_E_NULL, FIB_E_INVALID (options), FIB_E_UNSUPPORTED (a linkage
 * mode on a group wider than FIB_LINKAGE_MAX_UNITS; FIB_TOL_SCALED outside
 * what it supports), FIB_E_CANCELLED, FIB_E_NOMEM. */
FIB_API int32_t fib_color(const fib_graph *graph,
                          const fib_color_options *options,
                          fib_coloring **out);

/* Creates a colouring of the given kind in which every unit is its own
 * class, to be filled with fib_coloring_set_group (for checking or
 * compressing with a partition computed elsewhere).
 * Errors: FIB_E_NULL, FIB_E_INVALID (symmetry), FIB_E_NOMEM. */
FIB_API int32_t fib_coloring_create(const fib_graph *graph, int32_t symmetry,
                                    fib_coloring **out);

/* Frees a colouring. NULL is a no-op. */
FIB_API void fib_coloring_free(fib_coloring *coloring);

/* Replaces the partition of one group. `colors` holds n_units class labels
 * (any int64 values; they are renumbered canonically).
 * Errors: FIB_E_RANGE, FIB_E_SHAPE (n_units differs from the group's). */
FIB_API int32_t fib_coloring_set_group(fib_coloring *coloring, int32_t group,
                                       const int64_t *colors, int64_t n_units);

/* The symmetry kind (FIB_SYM_*) of a colouring.
 * Errors: FIB_E_NULL. */
FIB_API int32_t fib_coloring_symmetry(const fib_coloring *coloring,
                                      int32_t *symmetry_out);

/* Number of classes of a group.
 * Errors: FIB_E_NULL, FIB_E_RANGE (group). */
FIB_API int32_t fib_coloring_num_classes(const fib_coloring *coloring,
                                         int32_t group, int64_t *n_out);

/* The class of each unit of a group, into colors[0 .. n_units).
 * Errors: FIB_E_NULL, FIB_E_RANGE (group), FIB_E_BUFFER. */
FIB_API int32_t fib_coloring_colors(const fib_coloring *coloring,
                                    int32_t group, int64_t *colors,
                                    int64_t n_units);

/* The size of each class of a group, into sizes[0 .. n_classes).
 * Errors: FIB_E_NULL, FIB_E_RANGE (group), FIB_E_BUFFER. */
FIB_API int32_t fib_coloring_class_sizes(const fib_coloring *coloring,
                                         int32_t group, int64_t *sizes,
                                         int64_t n_classes);

/* Checks whether a colouring of `graph` is balanced for its kind with
 * tolerance eps (0: up to rounding, as FIB_TOL_EXACT): *balanced_out is 1 or
 * 0. When 0, fib_last_error() describes the first violation found (group,
 * class, units, coordinate). An automorphism colouring is checked as both
 * fibers and opfibers. Input groups (fibers) and output groups
 * (opfibers) are not checked. Errors: FIB_E_MISMATCH (a colouring of another
 * graph, or made before the graph was changed), FIB_E_INVALID (eps),
 * FIB_E_NONFINITE (a weight that became NaN or infinite in borrowed memory,
 * named: it would compare equal to nothing). */
FIB_API int32_t fib_coloring_is_balanced(const fib_graph *graph,
                                         const fib_coloring *coloring,
                                         double eps, int32_t *balanced_out);

/* The scale s_i of every unit of a group (FIB_TOL_SCALED; 1 for every unit
 * of a colouring made otherwise), into scales[0 .. n_units).
 * Errors: FIB_E_NULL, FIB_E_RANGE, FIB_E_BUFFER. */
FIB_API int32_t fib_coloring_scales(const fib_coloring *coloring,
                                    int32_t group, double *scales,
                                    int64_t n_units);

/* Sets the scales of a group (n_units finite values > 0; NULL back to all
 * 1), so that a partition computed elsewhere compresses scale-aware with
 * fib_compress: the group must then be a dense group with a positively
 * homogeneous activation (linear, ReLU, leaky ReLU) read only by dense
 * groups. Errors: FIB_E_RANGE, FIB_E_SHAPE, FIB_E_INVALID (a scale <= 0 or
 * not finite), FIB_E_NOMEM. */
FIB_API int32_t fib_coloring_set_scales(fib_coloring *coloring, int32_t group,
                                        const double *scales, int64_t n_units);

/* ------------------------------------------------------------------------ */
/* Base, lift, symmetry breaking                                            */
/* ------------------------------------------------------------------------ */

/* A compressed network (the base) and the projection of every original unit
 * onto its base unit. */
typedef struct fib_base fib_base;

/* Merges every class of every hidden group into one unit (Eq. 10):
 *     W_hat[c', c] = (1 / |c'|) sum_{i in c'} sum_{k in c} W[i, k]
 * (mean over the output class, sum over the input class); bias = mean over
 * the class. Input and output groups are never merged (nor is the group a
 * flatten output group reads: its units are the flatten's). For a colouring that
 * refines the fibers (exact fibers or covers), the base computes exactly the
 * same outputs, up to rounding. Base weights are owned by the base: float64,
 * but for a dense group that merges nothing (its units and its source's
 * all kept), whose block is a packed copy in its own dtype (the same
 * values; a model with nothing to merge then costs one copy of itself, not
 * a float64 one). A colouring with scales (FIB_TOL_SCALED, fib_coloring_set_scales)
 * merges a scaled dense group by its classes' rank-1 representatives and
 * multiplies each unit's outgoing weights by its scale before summing them
 * (see FIB_TOL_SCALED); exact for planted scaled copies. A colouring made
 * by fib_color keeps, for each dense group whose base block is small (at
 * most 1/16 of the group's weights, or 1 MB), the per-class sums its merge
 * needs; fib_compress then does not read those weights again (the same
 * bits either way).
 * Errors: FIB_E_NULL, FIB_E_MISMATCH, FIB_E_UNSUPPORTED (scales on a group
 * that is not dense, whose activation is not linear, ReLU or leaky ReLU, or
 * that is read by a block that is not dense), FIB_E_NONFINITE (the base
 * would hold a NaN or infinite weight: one of `graph` changed in borrowed
 * memory, named, or merged sums beyond the range of double), FIB_E_NOMEM. */
FIB_API int32_t fib_compress(const fib_graph *graph,
                             const fib_coloring *coloring, fib_base **out);

/* Frees a base and its graph. NULL is a no-op. */
FIB_API void fib_base_free(fib_base *base);

/* The base network, owned by the base (do not free it). */
FIB_API const fib_graph *fib_base_graph(const fib_base *base);

/* For each unit of group `group` of the original graph, the unit of the
 * same group of the base it was merged into: projection[0 .. n_units).
 * Errors: FIB_E_NULL, FIB_E_RANGE (group), FIB_E_BUFFER. */
FIB_API int32_t fib_base_projection(const fib_base *base, int32_t group,
                                    int64_t *projection, int64_t n_units);

/* Lifts a base back to full width: unit i of every group copies base unit
 * projection[i]; incoming weights from a merged class are split evenly over
 * its members. The lift has the original's shape, computes the same outputs
 * as the base, and its fibers are the base's classes. `weights` is either
 * NULL (lift the base's own graph) or a graph of the same structure as
 * fib_base_graph(base) with other weights (for example a retrained base).
 * The result owns its weights. Its dense and convolution blocks are held in
 * the precision of the block they lift: float32 where that holds float32,
 * float16 or bfloat16 weights (each lifted weight made in float64 and
 * rounded once), float64 where it holds float64; fib_lift_dtype chooses
 * otherwise. Its other blocks own float64 weights.
 * Errors: FIB_E_MISMATCH, FIB_E_NOMEM. */
FIB_API int32_t fib_lift(const fib_base *base, const fib_graph *weights,
                         fib_graph **out);

/* Symmetry breaking for continual learning: compresses `graph` by
 * `coloring` (normally its covers; NULL computes exact covers), then brings
 * every hidden group back to its original width with new units whose input
 * weights and bias are drawn uniformly from +-1/sqrt(fan_in) by a generator
 * seeded with `seed`, and whose output weights are zero. The result has the
 * original's shape and computes the same outputs as the base.
 * Errors: FIB_E_UNSUPPORTED (a group that is neither an input nor dense:
 * this version breaks symmetry in dense networks only), FIB_E_MISMATCH,
 * FIB_E_NOMEM. */
FIB_API int32_t fib_break_symmetry(const fib_graph *graph,
                                   const fib_coloring *coloring,
                                   uint64_t seed, fib_graph **out);

/* ------------------------------------------------------------------------ */
/* Budgeted compression                                                     */
/* ------------------------------------------------------------------------ */

typedef struct fib_budget_options {
    size_t struct_size;  /* sizeof(fib_budget_options), set by init */
    int32_t tolerance;   /* grouping: 0 = automatic (FIB_TOL_SCALED |
                            FIB_TOL_WARD when every hidden activation is
                            linear, ReLU or leaky ReLU, else FIB_TOL_WARD),
                            or one of those two */
    int32_t n_threads;   /* 0 = library default; never changes a result */
    double sensitivity_power; /* exponent applied to each gain in the
                            sensitivities; default 1.5 (chosen on the
                            Fashion-MNIST benchmark of docs/compression.md) */
    /* Filled by fib_compress_to_budget: */
    double bound;        /* the data-free bound of the chosen base (below) */
    int64_t n_parameters; /* parameters of the base */
    int32_t chosen_tolerance; /* the grouping used */
    int32_t refine_iterations; /* Lloyd rounds on the rank-1 objective after
                            each scaled cut (units move to the class whose
                            direction captures them best); default 20, 0: none */
    /* Appended to the first layout (FIB_BUDGET_OPTIONS_SIZE_1 bytes); a
     * caller built against that one gets the defaults of what follows: */
    int32_t merge_inputs; /* 1: the input group takes part too, its units
                            clustered by the columns of the block reading it
                            (an opfiber merge); the base then reads the MEAN
                            of each input class (fib_base_projection of the
                            input group gives the classes); default 0 */
    int32_t reserved0;   /* must be 0 */
    double input_sensitivity; /* with merge_inputs: multiplies the input
                            group's sensitivity (> 0); default 3, chosen on
                            the Fashion-MNIST training split
                            (docs/compression.md): the gains alone price
                            input merges too low for images */
    double synthetic_scale; /* > 0, with the scale-aware grouping: after
                            merging, the representatives are re-derived
                            from the original weights and every merge's
                            consumer is refitted by least squares on
                            synthetic_samples inputs drawn from
                            N(0, synthetic_scale^2 I) (pass the inputs'
                            typical standard deviation). Data-free; every
                            dense block needs a bias. Default 0: none */
    int32_t synthetic_samples; /* default 8192 */
    int32_t corrected;   /* filled: 1 if that correction was applied */
    double smallest_fraction; /* filled when the budget is below the
                            smallest base the grouping reaches
                            (FIB_E_UNSUPPORTED): that base's parameters
                            over the graph's, the smallest budget_fraction
                            that succeeds (round it up); else 0 */
    /* Appended to the second layout (FIB_BUDGET_OPTIONS_SIZE_2 bytes); a
     * caller built against it gets no progress: */
    fib_progress_fn progress; /* may be NULL: called after each step (each
                            group's clustering, the exchange, each group's
                            colouring, the correction, the base) and, with
                            `done` unchanged, within every clustering at
                            least once per unit, so that a cancel acts
                            promptly: nonzero returns FIB_E_CANCELLED and
                            makes nothing */
    void *progress_user;
    /* Appended to the third layout (FIB_BUDGET_OPTIONS_SIZE_3 bytes); a
     * caller built against it gets a float64 base, as before: */
    int32_t dtype;       /* of the base's merged dense and convolution
                            blocks, as fib_compress_options.dtype: 0 or
                            FIB_DTYPE_F64 (default) float64; FIB_DTYPE_F32:
                            each rounded to float32 as soon as it is made
                            (and, with synthetic_scale, once corrected),
                            the values a float32 file of the base holds, so
                            that the base never holds float64 copies of
                            them all; the default of the `fibration`
                            command and of fibration.torch's
                            compress(budget=) for float32, float16 and
                            bfloat16 models. A merged value float32 cannot
                            hold is FIB_E_NONFINITE. */
    /* Appended to the fourth layout (FIB_BUDGET_OPTIONS_SIZE_4 bytes); a
     * caller built against it gets the default ridge: */
    double synthetic_ridge; /* with synthetic_scale: the ridge of each
                            least-squares fit, relative to its Gram
                            matrix's mean diagonal, pulling the fit towards
                            the consumer the re-derived representatives
                            give (units the synthetic inputs seldom excite
                            keep weights near it). Finite and >= 0; default
                            1e-3 (chosen on the Fashion-MNIST training
                            split, docs/compression.md). 0: plain least
                            squares; a tiny value such as 1e-10 is in
                            effect none but always solvable. A fit whose
                            Gram matrix is not positive definite or whose
                            solution is not finite keeps that consumer. */
} fib_budget_options;

/* sizeof(fib_budget_options) of its first layout, before merge_inputs;
 * fib_budget_options_init and fib_compress_to_budget accept it. */
#define FIB_BUDGET_OPTIONS_SIZE_1 48
/* sizeof(fib_budget_options) of its second layout, before progress. */
#define FIB_BUDGET_OPTIONS_SIZE_2 88
/* sizeof(fib_budget_options) of its third layout, before dtype. */
#define FIB_BUDGET_OPTIONS_SIZE_3 104
/* sizeof(fib_budget_options) of its fourth layout, before synthetic_ridge. */
#define FIB_BUDGET_OPTIONS_SIZE_4 112

/* Fills *options with the defaults. Errors: FIB_E_NULL, FIB_E_INVALID. */
FIB_API int32_t fib_budget_options_init(fib_budget_options *options,
                                        size_t struct_size);

/* Compresses `graph` (a chain of dense groups, hidden activations linear,
 * ReLU or leaky ReLU for the scaled grouping) to at most budget_fraction of
 * its parameters (0 < budget_fraction <= 1), choosing the grouping and the
 * number of classes of every hidden group itself, data-free:
 *   1. every hidden group is clustered once by FIB_TOL_WARD (on its own
 *      weights, rows weighted by their outgoing norms), giving its merge
 *      error e_l(k) at every class count k;
 *   2. layer sensitivities S_l are products of the typical gains of the
 *      dense blocks upstream of the group and downstream of its consumer;
 *   3. the bound B = sqrt(sum_l S_l^2 e_l(k_l)^2) (an output change per
 *      unit input norm, to first order; independent errors add in
 *      quadrature) is minimised under the parameter budget by a greedy
 *      exchange: repeatedly remove classes where B^2 grows the least per
 *      parameter saved;
 *   4. the groups are then coloured in order with those class counts (each
 *      over the merged classes of its source), refined by Lloyd rounds
 *      (refine_iterations) and compressed;
 *   5. with synthetic_scale > 0 the merged layers are corrected without
 *      data (see synthetic_scale and synthetic_ridge; options.corrected
 *      says whether).
 * With merge_inputs, the input group is one more candidate: its units are
 * clustered by plain Ward on their outgoing weight columns (an input's
 * merge error is the distance of its column to its class's mean column,
 * the sensitivity the gains after the first block, times
 * input_sensitivity), and each merged input
 * class costs nothing but its members' class index, counted as one
 * parameter per input. Eq. 10 then sums the first block over each input
 * class, so the base's inputs are the means of the classes' inputs:
 * exact when the members' columns are equal (inputs in one opfiber). A
 * group of inputs wider than FIB_LINKAGE_MAX_UNITS is left as it is.
 * The "bound" is a first-order estimate, not a worst-case guarantee: the
 * gains g_h are the typical gains ||W_h||_F / sqrt(n_in) (ReLU: / sqrt 2) of
 * the blocks before the group (its input norm) and after its consumer
 * (sensitivity_power is applied to each), e_l(k) the square root of the
 * weighted residual sum of squares of the fit fib_compress makes.
 * options may be NULL (defaults); when given, its output fields are filled.
 * Any other graph of dense, convolution, affine, pool, flatten, sum,
 * product and norm groups is compressed by plain Ward over sets of groups
 * that share one partition (a group reading its source unit by unit joins
 * its source's set, a sum or product both sources'), the errors weighted by
 * each unit's data-free energy towards the outputs; no correction, no
 * merged inputs, FIB_TOL_SCALED refused (docs/compression.md).
 * The base is deterministic. Errors: FIB_E_NULL, FIB_E_INVALID (budget,
 * options), FIB_E_UNSUPPORTED (other block kinds, a group that reorders
 * its source's units, a group wider than FIB_LINKAGE_MAX_UNITS, a budget
 * below the smallest base: every hidden group one class), FIB_E_NOMEM. */
FIB_API int32_t fib_compress_to_budget(const fib_graph *graph,
                                       double budget_fraction,
                                       fib_budget_options *options,
                                       fib_base **base_out);

/* ------------------------------------------------------------------------ */
/* Model files                                                              */
/* ------------------------------------------------------------------------ */

/* Networks are stored as safetensors files (docs/model-files.md): tensors of
 * dtype F32, F64, F16 or BF16, and the structure as JSON in the
 * __metadata__ entry "fibration". Every header field is validated; a
 * malformed or truncated file gives FIB_E_FORMAT with a message naming the
 * file, the tensor and the field, never a crash. */

typedef struct fib_load_options {
    size_t struct_size; /* sizeof(fib_load_options), set by init */
    int32_t activation; /* FIB_ACT_* of the hidden layers of a file without
                           structure metadata (a state dict); default
                           FIB_ACT_RELU. The last layer is always linear. */
    int32_t copy;       /* 0 (default): the graph borrows the tensors from a
                           memory mapping of the file, which it keeps until
                           fib_graph_free; FIB_COPY (1): weights are copied
                           and the file is closed before returning. A
                           mapped file must
                           not be rewritten or truncated in place while the
                           graph lives: rewritten weights are borrowed
                           weights changed (see the conventions at the top),
                           and touching a page past the end of a truncated
                           file raises SIGBUS, a signal from the operating
                           system that the library cannot turn into an
                           error. Replacing the file by rename (as
                           fib_model_save does) is safe: the mapping keeps
                           the old file. Load files that others may change
                           in place with copy = FIB_COPY */
    double parameter;   /* parameter of `activation` (the negative slope of
                           FIB_ACT_LEAKY_RELU); default 0.01 */
} fib_load_options;

/* Fills *options with the defaults. struct_size must be the caller's
 * sizeof(fib_load_options). Errors: FIB_E_NULL, FIB_E_INVALID (struct_size
 * too small). */
FIB_API int32_t fib_load_options_init(fib_load_options *options,
                                      size_t struct_size);

/* Loads a network from a safetensors file. options may be NULL for the
 * defaults.
 *
 * With "fibration" structure metadata (written by fib_model_save or
 * fib_base_save) the graph is rebuilt group by group, with its names,
 * activations and per-group eps. Without it, the file must be the state dict
 * of a PyTorch nn.Sequential of Linear layers: tensors named "<i>.weight"
 * (out x in) and optionally "<i>.bias", i ascending; they load as a chain of
 * dense groups named "<i>" after an input group named "input", with
 * options->activation on every hidden group and a linear last group.
 * F32, F64, F16 and BF16 tensors are borrowed from the mapping as stored
 * (zero copies; the file must then not change in place while the graph
 * lives, see fib_load_options.copy); with copy = 1 each is copied in its
 * own dtype. A tensor the mapping cannot lend (misaligned in the file) is
 * converted to a float32 (float64 for F64) copy owned by the graph.
 * A borrowed mapping reads the file itself: if another program truncates
 * the file while the graph lives, touching the lost pages raises SIGBUS.
 * The library installs no signal handlers; a program that cannot trust its
 * files either loads with copy = 1 (the file is read once, then closed) or
 * handles SIGBUS itself (the `fibration` command reports "the file changed
 * while it was read"). Only regular files are accepted (a FIFO is refused
 * at once, without waiting for a writer), and folders: a folder is read as
 * a Hugging Face checkpoint (config.json with model_type llama, mistral,
 * qwen2, gpt2 or bert, and model.safetensors or the shards of
 * model.safetensors.index.json; see docs/model-files.md for what is read
 * and what is refused by name).
 *
 * Errors: FIB_E_NULL, FIB_E_INVALID (options), FIB_E_IO (cannot open or
 * read), FIB_E_FORMAT (malformed file, missing or mis-shaped tensor; the
 * message says what is missing), FIB_E_UNSUPPORTED (a newer format
 * version), FIB_E_NONFINITE (a weight is NaN or infinite), FIB_E_NOMEM.
 * On failure *out is untouched and nothing is leaked. */
FIB_API int32_t fib_model_load(const char *path,
                               const fib_load_options *options,
                               fib_graph **out);

/* Saves a network with its structure metadata, atomically: written to a
 * temporary file in the folder of the real target (symlinks are followed
 * and stay symlinks), synced, then renamed over it, keeping its mode; a
 * character device, FIFO or /dev/stdout is written in place instead, and a
 * write error (a full disk, /dev/full) is FIB_E_IO (docs/ERRORS.md). Every
 * kind of block is saved (format version 2, docs/model-files.md) and loads
 * back identical: tensors, params, scalars, names, activations, positions.
 * dtype: FIB_DTYPE_F32 or FIB_DTYPE_F64 for all weight tensors, or 0 to
 * keep each block's own dtype (multiplicities are always float64).
 * Tensors are named "<group name>.<tensor>" (e.g. "0.weight") when every
 * group with tensors has a distinct non-empty name (so a saved nn.Sequential
 * state dict keeps its keys), else "groups.<id>.<tensor>".
 * Errors: FIB_E_NULL, FIB_E_INVALID (dtype), FIB_E_UNSUPPORTED (node groups
 * of general graphs), FIB_E_NONFINITE (a weight that became NaN or infinite
 * in borrowed memory, or that float32 cannot hold when saving as float32:
 * the message names group, tensor and element; nothing is written, as the
 * file could not be loaded), FIB_E_IO, FIB_E_NOMEM. */
FIB_API int32_t fib_model_save(const fib_graph *graph, const char *path,
                               int32_t dtype);

/* Saves a base: its network as fib_model_save does, and its projection
 * (which base unit each original unit was merged into), so that
 * fib_base_load and fib_lift can expand it from the file alone.
 * Errors: as fib_model_save. */
FIB_API int32_t fib_base_save(const fib_base *base, const char *path,
                              int32_t dtype);

/* Loads a base saved by fib_base_save. Free it with fib_base_free.
 * Errors: as fib_model_load; FIB_E_FORMAT also when the file has no
 * projection (it was not written by fib_base_save) or the projection does
 * not fit the network. */
FIB_API int32_t fib_base_load(const char *path,
                              const fib_load_options *options,
                              fib_base **out);

/* ------------------------------------------------------------------------ */
/* General directed graphs                                                  */
/* ------------------------------------------------------------------------ */

/* Gene regulatory networks, connectomes, recurrent weights: groups of plain
 * nodes joined by arcs (cycles and self-loops allowed), with optional real
 * weights and integer edge types. fib_color colours all node groups of a
 * graph together, as one directed graph, with the minimal balanced colouring:
 *
 *  FIB_SYM_FIBERS   the coarsest partition (refining the initial classes of
 *                   fib_graph_set_initial_classes) in which every node of a
 *                   class receives, for every class c and edge type t, the
 *                   same number of type-t arcs from c (unweighted arcs), or
 *                   the same sum of their weights (weighted arcs);
 *  FIB_SYM_OPFIBERS the same on out-neighbours (the reversed graph);
 *  FIB_SYM_COVERS   their meet.
 *
 * Classes never span groups. The refinement is Hopcroft's ("process all but
 * the largest piece"): O(m log n) time, O(n + m) memory. Counts and types are
 * exact; weight sums are compared up to rounding as in fib_color
 * (|a - b| <= (4u + (t + 1) 2^-53)(A + B), t the node's in-degree);
 * FIB_TOL_ABS guarantees that inside every class every (class, type) sum
 * spans at most options.eps (a quasi-stable colouring; not necessarily the
 * coarsest one). Results are deterministic. See docs/graphs.md.
 *
 * Node groups take no part in fib_graph_forward, fib_compress or fib_lift
 * (FIB_E_UNSUPPORTED); their compressed form is the quotient graph below. */

/* Conventions for the start of the colouring (fib_graph_set_convention). */
#define FIB_CONVENTION_PURE 0      /* the definition: start from one class per
                                      group (the default) */
#define FIB_CONVENTION_PUBLISHED 1 /* FastFibration's: nodes without inputs
                                      are singletons, every strongly
                                      connected component without inputs
                                      from outside starts as its own class,
                                      and nodes whose only inputs are
                                      self-loops are used as extra splitters;
                                      reproduces published fiber counts
                                      (E. coli: 555 classes, pure: 414) */
#define FIB_CONVENTION_NETWORKFIBERS 2 /* networkfibers': like PUBLISHED, but
                                      the initial classes are the weakly
                                      connected components */

/* Adds a group of n_nodes plain nodes (1 <= n_nodes <= 2^40), op
 * FIB_OP_NODES. Its id is written to *group_out.
 * Errors: FIB_E_NULL, FIB_E_SHAPE, FIB_E_NOMEM. */
FIB_API int32_t fib_graph_add_nodes(fib_graph *graph, int64_t n_nodes,
                                    int32_t *group_out);

/* Adds m arcs src[i] -> dst[i] from node group src_group to node group
 * dst_group (the same group is allowed; arcs may repeat). weight: m finite
 * weights, or NULL for unweighted arcs (each counts 1). type: m edge types
 * (any int32 values; arcs of different types never substitute for each
 * other), or NULL (type 0). Within one graph either every arc set has
 * weights or none has. The arrays are BORROWED unless flags has FIB_COPY.
 * Errors: FIB_E_NULL, FIB_E_RANGE (a group that is not a node group, or a
 * node index out of range: the message gives the arc), FIB_E_SHAPE (m < 0),
 * FIB_E_NONFINITE (the message gives the arc), FIB_E_INVALID (flags, or
 * weights on some arc sets only), FIB_E_NOMEM. Borrowed arrays must stay
 * unchanged while the graph lives. */
FIB_API int32_t fib_graph_add_edges(fib_graph *graph, int32_t src_group,
                                    int32_t dst_group, int64_t m,
                                    const int64_t *src, const int64_t *dst,
                                    const double *weight, const int32_t *type,
                                    uint32_t flags);

/* Classes that must stay apart: nodes of node group `group` with different
 * labels (any int64 values) never share a class. labels holds n_nodes
 * entries and is copied; NULL removes earlier labels.
 * Errors: FIB_E_RANGE (not a node group), FIB_E_SHAPE, FIB_E_NOMEM. */
FIB_API int32_t fib_graph_set_initial_classes(fib_graph *graph, int32_t group,
                                              const int64_t *labels,
                                              int64_t n_nodes);

/* Chooses the convention (FIB_CONVENTION_*) for all node groups of the
 * graph. Errors: FIB_E_NULL, FIB_E_INVALID. */
FIB_API int32_t fib_graph_set_convention(fib_graph *graph, int32_t convention);

/* The quotient (base) graph of the node groups: one node per class; its arcs
 * are the in-arcs (out-arcs for an opfiber colouring) of each class's lowest
 * node with the other end replaced by its class, merged per (source class,
 * target class, type), sorted by (source group, source class, target group,
 * target class, type). For a balanced colouring every member of a class
 * gives the same arcs. */
typedef struct fib_quotient fib_quotient;

/* Builds the quotient of `graph` under `coloring`.
 * Errors: FIB_E_NULL, FIB_E_MISMATCH, FIB_E_NOMEM. */
FIB_API int32_t fib_quotient_create(const fib_graph *graph,
                                    const fib_coloring *coloring,
                                    fib_quotient **out);
/* Frees a quotient. NULL is a no-op. */
FIB_API void fib_quotient_free(fib_quotient *quotient);
/* Number of arcs of the quotient.
 * Errors: FIB_E_NULL. */
FIB_API int32_t fib_quotient_num_arcs(const fib_quotient *quotient,
                                      int64_t *n_arcs_out);
/* Copies the arcs into caller arrays of `capacity` entries; any array may be
 * NULL. weight: the weight sums (the multiplicities for unweighted graphs);
 * multiplicity: the number of arcs merged.
 * Errors: FIB_E_NULL, FIB_E_BUFFER (capacity < number of arcs). */
FIB_API int32_t fib_quotient_arcs(const fib_quotient *quotient,
                                  int64_t capacity, int32_t *src_group,
                                  int64_t *src_class, int32_t *dst_group,
                                  int64_t *dst_class, int32_t *type,
                                  double *weight, int64_t *multiplicity);

/* Fiber building blocks of node group `group`: its non-trivial classes
 * (size > 1) in class order, with their size and how many of their members
 * lie on a directed cycle (0: the fiber is acyclic). *n_blocks_out always
 * receives the count; the arrays (any may be NULL) are filled when capacity
 * allows. Errors: FIB_E_NULL, FIB_E_RANGE (not a node group),
 * FIB_E_MISMATCH, FIB_E_BUFFER (capacity too small for non-NULL arrays),
 * FIB_E_NOMEM. */
FIB_API int32_t fib_coloring_fiber_blocks(const fib_graph *graph,
                                          const fib_coloring *coloring,
                                          int32_t group, int64_t capacity,
                                          int64_t *class_ids, int64_t *sizes,
                                          int64_t *n_on_cycle,
                                          int64_t *n_blocks_out);

/* ------------------------------------------------------------------------ */
/* Edge-list files                                                          */
/* ------------------------------------------------------------------------ */

/* Format flags of fib_graph_read_edgelist (one header choice, one
 * delimiter, options). 0 sniffs both. */
#define FIB_EDGELIST_AUTO 0u
#define FIB_EDGELIST_HEADER 1u           /* the first line is a header */
#define FIB_EDGELIST_NO_HEADER 2u        /* no header: src dst [type [weight]] */
#define FIB_EDGELIST_COMMA 4u            /* fields separated by ',' */
#define FIB_EDGELIST_TAB 8u              /* fields separated by a tab */
#define FIB_EDGELIST_WHITESPACE 16u      /* fields separated by blank runs */
#define FIB_EDGELIST_THIRD_IS_WEIGHT 32u /* no header: src dst weight */
#define FIB_EDGELIST_THIRD_IS_TYPE 64u   /* no header: src dst type [weight], even
                                            when the types are fractional numbers */

/* Reads an edge-list file (CSV, TSV or whitespace-separated; with a header
 * naming the columns source, target and optionally type and weight, in any
 * case and order; node and type names are strings, see docs/graphs.md) into
 * a new node group whose arcs are the file's. Nodes are numbered in order of
 * first appearance; their names stay available (fib_graph_node_name).
 * path "-" reads standard input (name a file called "-" as "./-").
 * Ambiguous files are refused, never guessed (docs/graphs.md: a first line
 * that names the columns but whose names are also nodes, lines with
 * different numbers of fields, a third column of fractional numbers read by
 * position as types).
 * Errors: FIB_E_NULL, FIB_E_IO, FIB_E_FORMAT (the message gives the line),
 * FIB_E_NONFINITE (a weight), FIB_E_INVALID (flags), FIB_E_NOMEM. */
FIB_API int32_t fib_graph_read_edgelist(fib_graph *graph, const char *path,
                                        uint32_t flags, int32_t *group_out);

/* fib_graph_read_edgelist with every column's role listed, in order,
 * comma-separated: "source", "target", "type", "weight", or "-" for a
 * column to ignore (e.g. "source,target,weight" for networkx's
 * `u v weight` files). Every line then has exactly that many fields; a
 * header line (FIB_EDGELIST_HEADER, or recognised as without a list) is
 * skipped, its names unused. columns NULL: as fib_graph_read_edgelist.
 * Errors: those of fib_graph_read_edgelist; FIB_E_INVALID also for a list
 * without source or target, with a role twice or an unknown one, or
 * combined with FIB_EDGELIST_THIRD_IS_WEIGHT. */
FIB_API int32_t fib_graph_read_edgelist_columns(fib_graph *graph, const char *path,
                                                uint32_t flags, const char *columns,
                                                int32_t *group_out);

/* The name of a node of a group read from a file, NULL otherwise. Valid
 * while the graph lives. */
FIB_API const char *fib_graph_node_name(const fib_graph *graph, int32_t group,
                                        int64_t node);

/* Number of edge types of a group read from a file (0: untyped).
 * Errors: FIB_E_NULL, FIB_E_RANGE (group, or not a node group). */
FIB_API int32_t fib_graph_num_edge_types(const fib_graph *graph, int32_t group,
                                         int32_t *n_out);

/* The name of edge type `type` (the ids of fib_graph_add_edges' `type`
 * array) of a group read from a file, NULL otherwise. */
FIB_API const char *fib_graph_edge_type_name(const fib_graph *graph,
                                             int32_t group, int32_t type);

/* ------------------------------------------------------------------------ */
/* Symmetry hierarchy                                                       */
/* ------------------------------------------------------------------------ */

/* From loosest to strictest: fibers and opfibers, covers (their meet),
 * automorphism orbits. Each level refines the ones above it; the functions
 * below compute the strictest level and report the whole ladder with the
 * proof that it is one. See docs/hierarchy.md. */

/* Largest number of nodes (over all node groups) whose orbits
 * fib_automorphisms computes; past it FIB_E_OVERFLOW. */
#define FIB_AUTOMORPHISM_MAX_NODES 20000

/* Links of the refinement chain (fib_hierarchy_chain): bit set = holds. */
#define FIB_CHAIN_ORBITS_IN_COVERS 1   /* every orbit lies inside one cover */
#define FIB_CHAIN_COVERS_IN_FIBERS 2   /* every cover lies inside one fiber */
#define FIB_CHAIN_COVERS_IN_OPFIBERS 4 /* every cover lies inside one opfiber */
#define FIB_CHAIN_ALL 7

/* The automorphism level: a colouring with symmetry FIB_SYM_AUTOMORPHISMS.
 * options may be NULL (exact); its symmetry field is ignored, its tolerance
 * and eps apply to network groups as in fib_color.
 *
 * Network groups (dense, conv, sum, pool, affine, norm, gated, attention):
 * units i and j of a hidden group are TWINS when exchanging them preserves
 * every weight: their input rows agree unit by unit over the same source
 * units (not class sums), their output columns agree unit by unit over the
 * same consumer units, and their biases agree (exact up to the rounding of
 * one stored weight, or within eps for FIB_TOL_ABS) — formally, their
 * fiber and opfiber signatures agree when every other unit is a class of its
 * own. Exact twins form classes, any permutation inside a class preserves
 * every weight, and the classes are the orbits of the group these twin
 * permutations generate. Input and output units are fixed (classes of their
 * own), as for fibers and opfibers. This group can be smaller than the full
 * automorphism group: a permutation that must move units of several groups
 * at once (channels of a convolution together with the pooled and
 * normalised channels they feed, the two summands of a residual sum) is not
 * generated by twins and is not reported.
 *
 * Node groups (general directed graphs): the orbits of the full group of
 * permutations that map every node group to itself, preserve every arc with
 * its type and weight (parallel arcs of one type compare by their number and
 * weight sum), and keep the exact covers (hence the initial classes and the
 * convention) — found by individualisation and refinement. Weights compare
 * exactly (tolerance does not apply). At most FIB_AUTOMORPHISM_MAX_NODES
 * nodes in all node groups (FIB_E_OVERFLOW past it); FIB_E_UNSUPPORTED if
 * the search tree would exceed 200000 nodes (highly regular graphs with
 * huge groups are the only ones known to come near).
 *
 * Errors: FIB_E_NULL, FIB_E_INVALID (options), FIB_E_OVERFLOW,
 * FIB_E_UNSUPPORTED, FIB_E_NOMEM, FIB_E_CANCELLED. */
FIB_API int32_t fib_automorphisms(const fib_graph *graph,
                                  const fib_color_options *options,
                                  fib_coloring **out);

/* Whether `permutation` is an automorphism of the node groups of `graph`:
 * it maps node groups to themselves and every arc u -> v (type t, weight w)
 * onto an arc p(u) -> p(v) of the same type and weight (parallel arcs of one
 * type compare by their number and weight sum). group >= 0: a node group,
 * and permutation[0 .. n) permutes its nodes (other groups fixed); group
 * -1: the nodes of all node groups in group order, n their total.
 * *is_automorphism_out = 1 or 0 (0 too when it is not a permutation of
 * 0 .. n-1 or moves a node to another group). Initial classes are not
 * consulted. Errors: FIB_E_NULL, FIB_E_RANGE (group), FIB_E_SHAPE (n),
 * FIB_E_UNSUPPORTED (group is not a node group, or group -1 in a graph
 * without node groups), FIB_E_NOMEM. */
FIB_API int32_t fib_graph_is_automorphism(const fib_graph *graph,
                                          int32_t group,
                                          const int64_t *permutation,
                                          int64_t n,
                                          int32_t *is_automorphism_out);

/* *refines_out = 1 if every class of `finer` in `group` lies inside one
 * class of `coarser` (group -1: in every group), else 0. Both colourings
 * must fit `graph`. Errors: FIB_E_NULL, FIB_E_RANGE, FIB_E_MISMATCH. */
FIB_API int32_t fib_coloring_refines(const fib_graph *graph,
                                     const fib_coloring *finer,
                                     const fib_coloring *coarser,
                                     int32_t group, int32_t *refines_out);

/* All four levels of one graph, computed with the same options. */
typedef struct fib_hierarchy fib_hierarchy;

/* Computes fibers, opfibers, covers (their meet) and automorphism orbits
 * (fib_automorphisms) with `options` (NULL: exact; the symmetry field is
 * ignored). Errors: those of fib_color and fib_automorphisms. */
FIB_API int32_t fib_hierarchy_create(const fib_graph *graph,
                                     const fib_color_options *options,
                                     fib_hierarchy **out);
/* Frees a hierarchy. NULL is a no-op. */
FIB_API void fib_hierarchy_free(fib_hierarchy *hierarchy);

/* Number of classes of `group` at level `symmetry` (FIB_SYM_FIBERS,
 * _OPFIBERS, _COVERS or _AUTOMORPHISMS).
 * Errors: FIB_E_NULL, FIB_E_RANGE (group), FIB_E_INVALID (symmetry). */
FIB_API int32_t fib_hierarchy_num_classes(const fib_hierarchy *hierarchy,
                                          int32_t group, int32_t symmetry,
                                          int64_t *n_out);

/* The links of the refinement chain that hold for `group` (-1: for every
 * group), as FIB_CHAIN_* bits; FIB_CHAIN_ALL when orbits lie in covers and
 * covers in both fibers and opfibers. Exact colourings always give
 * FIB_CHAIN_ALL; with FIB_TOL_ABS clustering may break a link, which this
 * reports rather than hides. Errors: FIB_E_NULL, FIB_E_RANGE. */
FIB_API int32_t fib_hierarchy_chain(const fib_hierarchy *hierarchy,
                                    int32_t group, int32_t *links_out);

/* A copy of the colouring of level `symmetry`, to free with
 * fib_coloring_free. Errors: FIB_E_NULL, FIB_E_INVALID, FIB_E_NOMEM. */
FIB_API int32_t fib_hierarchy_coloring(const fib_hierarchy *hierarchy,
                                       int32_t symmetry, fib_coloring **out);

/* ------------------------------------------------------------------------ */
/* Nested colourings at increasing tolerance                                */
/* ------------------------------------------------------------------------ */

/* The hierarchy of colourings (bases) of one graph as its tolerance grows:
 * colours `graph` as fib_color does with `options` at every tolerance
 * eps[0] <= eps[1] <= ... <= eps[n_levels - 1], and makes the levels nest:
 * level 0 is the colouring at eps[0]; level t > 0 is the JOIN of the
 * colouring at eps[t] with level t - 1, the finest partition coarser than
 * both (two units share a class when a chain of units links them, each
 * link sharing a class in one of the two). So a class never splits as eps
 * grows: every class of level t - 1 lies inside one class of level t
 * (fib_coloring_refines), and the class counts never increase. When the
 * plain colourings already nest, every level is exactly fib_color's at its
 * eps. A joined level is a partition for reading and compressing
 * (fib_compress); it need not be balanced within eps[t].
 *
 * options is required and must choose a tolerant mode (FIB_TOL_ABS, _REL,
 * _COSINE, _COMPLETE, _WARD, optionally | FIB_TOL_SCALED; FIB_TOL_EXACT has
 * no tolerance to grow); its eps must be 0 (the tolerances are eps[]); its
 * symmetry, n_threads and progress apply to every level (progress counts
 * the steps of all levels, done of total, and can cancel). A per-group
 * override (fib_graph_set_group_eps) replaces every level's eps for that
 * group. With FIB_TOL_SCALED each level keeps the unit scales of its own
 * colouring (fitted to its classes before the join).
 *
 * levels: the caller's array of n_levels pointers; on success levels[t]
 * holds the colouring of level t (symmetry options->symmetry), each to free
 * with fib_coloring_free. On failure nothing is written to it.
 * Errors: FIB_E_NULL (graph, options, eps, levels), FIB_E_SHAPE
 * (n_levels < 1), FIB_E_INVALID (struct_size, FIB_TOL_EXACT, options->eps
 * not 0, an eps that is negative, NaN or infinite, or smaller than the one
 * before it: the message gives its index), and those of fib_color. */
FIB_API int32_t fib_color_nested(const fib_graph *graph,
                                 const fib_color_options *options,
                                 const double *eps, int32_t n_levels,
                                 fib_coloring **levels);

/* Removes the temporary files of the saves in progress in this process
 * (fib_model_save and fib_base_save write a temporary file next to the
 * target and rename it at the end). Async-signal-safe: a program's
 * SIGINT / SIGTERM / SIGHUP handler calls it, then re-raises the signal
 * with its default action, so that a killed save leaves nothing behind; the
 * library installs no handlers itself. A save still running afterwards
 * fails with FIB_E_IO and leaves its target untouched. */
FIB_API void fib_remove_partial_outputs(void);

/* The dtype a group's tensor `index` (numbered as fib_graph_tensor_info)
 * is held in: FIB_DTYPE_F32, FIB_DTYPE_F64, FIB_DTYPE_F16 or FIB_DTYPE_BF16.
 * Model files' float16 and bfloat16 tensors are held as stored (read in
 * place from the mapped file when aligned); fib_graph_read_tensor reads
 * any of them out as float32 or float64 (exact).
 * Errors: FIB_E_NULL, FIB_E_RANGE (group, index). */
FIB_API int32_t fib_graph_tensor_dtype(const fib_graph *graph, int32_t group,
                                       int32_t index, int32_t *dtype_out);

/* ------------------------------------------------------------------------ */
/* Gates and more activations                                               */
/* ------------------------------------------------------------------------ */

/* Adds the elementwise product of two groups of equal width (a gate):
 * z[i] = a[i] * b[i] at every position of a. b has a's positions, or a
 * single position (1 x 1), which then scales every position of its unit
 * (squeeze-and-excitation; gated MLPs such as SwiGLU multiply two groups of
 * the same positions). The new group has a's positions. Fibers: a unit's
 * class is the pair of its factors' classes, as for a sum; opfibers: a
 * factor unit's flavour is its reader's class and the fiber class of the
 * other factor. A base gathers like a sum: read its gathers with
 * fib_graph_read_sum. Errors: FIB_E_NULL, FIB_E_RANGE, FIB_E_SHAPE (widths,
 * positions). */
FIB_API int32_t fib_graph_add_product(fib_graph *graph, int32_t a, int32_t b,
                                      int32_t *group_out);


/* ------------------------------------------------------------------------ */
/* Names of constants                                                       */
/* ------------------------------------------------------------------------ */

/* The name of a FIB_OP_* kind as model files, the command and the bindings
 * spell it ("input", "dense", "sum", "conv", "pool", "flatten", "affine",
 * "lstm", "gru", "last_step", "attend", "norm", "nodes", "product",
 * "prepend", "position_shift", "select_step"): a static string, or NULL
 * when `op` is no FIB_OP_* constant. Errors: none. */
FIB_API const char *fib_op_name(int32_t op);

/* The name of a FIB_ACT_* activation ("linear", "relu", "leaky_relu",
 * "tanh", "sigmoid", "gelu", "silu", "relu6", "hardswish", "hardsigmoid",
 * "mish", "softplus", "gelu_tanh"): a static string, or NULL when
 * `activation` is no FIB_ACT_* constant. Errors: none. */
FIB_API const char *fib_activation_name(int32_t activation);

/* ------------------------------------------------------------------------ */
/* Constant positions and selected steps (Vision Transformers)              */
/* ------------------------------------------------------------------------ */

/* Prepends n_positions >= 0 constant positions to the positions of
 * `source` (a Vision Transformer's class token): a sequence (cols = 1) of
 * n_positions + rows x cols positions of the source's units, whose first
 * positions hold values[p * n_units + i] (n_positions x n_units, copied;
 * NULL when n_positions is 0) and whose others copy the source's positions
 * in row-major order (an image becomes the sequence of its pixels, as
 * x.flatten(2).transpose(1, 2) in PyTorch). Units merge only when their
 * constants are equal; a base unit holds its class's constants. Tensor
 * "values" (k x n_units; none when k is 0); block params: k, then per unit
 * the source unit it copies (a base gathers).
 * Errors: FIB_E_NULL, FIB_E_RANGE (source), FIB_E_SHAPE (n_positions < 0),
 * FIB_E_INVALID (dtype), FIB_E_NONFINITE, FIB_E_OVERFLOW, FIB_E_NOMEM. */
FIB_API int32_t fib_graph_add_prepend(fib_graph *graph, int32_t source,
                                      int64_t n_positions, int32_t dtype,
                                      const void *values, int32_t *group_out);

/* Adds a constant per unit and position to `source`: z[p][i] = x[p][i] +
 * shift[p * n_units + i] (positions x n_units, positions in the layout of
 * fib_graph_forward; copied): a learned position embedding. The new group
 * keeps the source's positions. Units merge only when their shifts are
 * equal at every position. Tensor "shift" (positions x n_units); block
 * params: per unit the source unit it reads (a base gathers).
 * Errors: FIB_E_NULL, FIB_E_RANGE (source), FIB_E_INVALID (dtype),
 * FIB_E_NONFINITE, FIB_E_NOMEM. */
FIB_API int32_t fib_graph_add_position_shift(fib_graph *graph, int32_t source,
                                             int32_t dtype, const void *shift,
                                             int32_t *group_out);

/* One position of a sequence (x[:, position] in PyTorch; a Vision
 * Transformer's class token is x[:, 0]): a plain group. position counts
 * from the start, or from the end when negative (-1 is the last step, as
 * fib_graph_add_last_step). fib_graph_block_params gives the position
 * (from the start), then per unit the source unit it reads.
 * Errors: FIB_E_NULL, FIB_E_RANGE (source, position outside -rows ..
 * rows - 1), FIB_E_SHAPE (source not a sequence), FIB_E_NOMEM. */
FIB_API int32_t fib_graph_add_select_step(fib_graph *graph, int32_t source,
                                          int64_t position,
                                          int32_t *group_out);

/* ------------------------------------------------------------------------ */
/* Half precision                                                           */
/* ------------------------------------------------------------------------ */

/* The half-precision element types (FIB_DTYPE_F16, FIB_DTYPE_BF16, under
 * Kinds) are weights held in place, native endian. Accepted
 * wherever a block borrows or copies weights (fib_graph_add_dense and the
 * other fib_graph_add_* taking a dtype); every value converts exactly to
 * float32, and colourings, allowances and compressions are those of the
 * float32 copy of the same weights, bit for bit. Buffers the library
 * writes for the caller (fib_graph_read_tensor, fib_graph_read_dense,
 * fib_graph_forward, fib_model_save's dtype) stay FIB_DTYPE_F32 or
 * FIB_DTYPE_F64: a half dtype there is FIB_E_INVALID. */

/* ------------------------------------------------------------------------ */
/* Transformer language models: attention with options, embeddings          */
/* ------------------------------------------------------------------------ */

/* Rotary position embeddings (fib_attention_options.rotary). */
#define FIB_ROTARY_NONE 0
#define FIB_ROTARY_HALF 1 /* Llama's rotate_half: dimension d < r/2 of a head
                             turns with dimension d + r/2 (r = rotary_dim) at
                             frequency theta^(-2d/r) per position */

/* Options of fib_graph_add_attention_ex. Call fib_attention_options_init
 * first; fields may be appended in later versions. */
typedef struct fib_attention_options {
    size_t struct_size; /* sizeof(fib_attention_options), set by init */
    int64_t n_heads;    /* query heads (>= 1); default 1 */
    int64_t n_kv_heads; /* key/value heads, dividing n_heads (n_heads / n_kv_heads
                           query heads share each); 0 (default): n_heads */
    int64_t head_dim;   /* dimensions per head; 0 (default): width / n_heads */
    int32_t causal;     /* 1: position t attends only to positions <= t */
    int32_t rotary;     /* FIB_ROTARY_*; default FIB_ROTARY_NONE */
    double rope_theta;  /* base of the rotary frequencies; default 10000 */
    int64_t rotary_dim; /* leading dimensions of a head that rotate (even);
                           0 (default): head_dim */
    double scale;       /* softmax scale; 0 (default): 1 / sqrt(head_dim) */
} fib_attention_options;

/* Fills *options with the defaults. Errors: FIB_E_NULL, FIB_E_INVALID
 * (struct_size smaller than sizeof(fib_attention_options)). */
FIB_API int32_t fib_attention_options_init(fib_attention_options *options,
                                           size_t struct_size);

/* Adds self-attention over the sequence `source` (width E) as decoder and
 * encoder language models hold it: separate q, k, v projections (PyTorch
 * nn.Linear layout [out, in]: q_weight n_heads*head_dim x E, k_weight and
 * v_weight n_kv_heads*head_dim x E, out_weight E x n_heads*head_dim; each
 * bias NULL or of the projection's height), grouped-query attention (query
 * head h reads key/value head h / (n_heads / n_kv_heads)), an optional
 * causal mask and rotary position embeddings of q and k (position t = the
 * index in the sequence, from 0). Creates five groups in order: q, k, v
 * (dense), the attention core (FIB_OP_ATTEND, n_heads*head_dim units) and
 * the output projection (dense), whose id is returned. The rotation lives in
 * the core, so q and k are plain dense groups (see docs/blocks/attention.md
 * for what merges). flags: 0 or FIB_COPY, as fib_graph_add_dense.
 * Errors: FIB_E_NULL, FIB_E_RANGE (source), FIB_E_INVALID (struct_size,
 * rotary kind, rotary_dim without rotary, rope_theta, scale, causal not 0
 * or 1, dtype, flags), FIB_E_SHAPE (n_heads,
 * n_kv_heads not dividing it, head_dim, rotary_dim odd or > head_dim),
 * FIB_E_OVERFLOW, FIB_E_NONFINITE, FIB_E_NOMEM. */
FIB_API int32_t fib_graph_add_attention_ex(fib_graph *graph, int32_t source,
                                           const fib_attention_options *options,
                                           int32_t dtype,
                                           const void *q_weight, const void *q_bias,
                                           const void *k_weight, const void *k_bias,
                                           const void *v_weight, const void *v_bias,
                                           const void *out_weight,
                                           const void *out_bias, uint32_t flags,
                                           int32_t *group_out);

/* Adds a token embedding: `source` is a one-hot token input of vocab units
 * (over positions), `embedding` the matrix [vocab, hidden] as models store
 * it (row v = the vector of token v); the new group of `hidden` units is the
 * dense map x -> embedding^T x, so a one-hot token v gives row v. The
 * library holds the transposed weights in its own copy (dtype of
 * `embedding`); the caller's matrix is not kept. An LM head tied to the
 * embedding is an ordinary dense group over the final norm borrowing the
 * same matrix (fib_graph_add_dense(graph, norm, vocab, dtype, embedding,
 * hidden, NULL, 0, &head)): see docs/blocks/embedding.md for the tie in a
 * base. Errors: FIB_E_NULL, FIB_E_RANGE (source), FIB_E_INVALID (dtype),
 * FIB_E_SHAPE (hidden < 1), FIB_E_OVERFLOW, FIB_E_NONFINITE (row and column
 * of the embedding), FIB_E_NOMEM. */
FIB_API int32_t fib_graph_add_token_embedding(fib_graph *graph, int32_t source,
                                              int64_t hidden, int32_t dtype,
                                              const void *embedding,
                                              int32_t *group_out);

/* ------------------------------------------------------------------------ */
/* Compression options                                                      */
/* ------------------------------------------------------------------------ */

/* Options of fib_compress_ex. Fill with fib_compress_options_init, then
 * set the fields to change. */
typedef struct fib_compress_options {
    size_t struct_size; /* sizeof(fib_compress_options), set by init */
    int32_t dtype;      /* of the merged dense and convolution blocks of
                           the base: 0 or FIB_DTYPE_F64 (default) float64,
                           as fib_compress; FIB_DTYPE_F32: each rounded to
                           float32 as soon as it is made (the values a
                           float32 file of the base holds), so that the
                           base never holds float64 copies of them all;
                           the `fibration` command's default for float32,
                           float16 and bfloat16 models. A merged value
                           float32 cannot hold is FIB_E_NONFINITE. Other
                           blocks are as fib_compress makes them. */
    int32_t borrow;     /* nonzero: a dense group or a convolution that
                           merges nothing (its units and its source's all
                           kept) borrows the model's weights instead of
                           copying them, in the model's dtype (a
                           convolution with its groups), so that such a
                           base costs no copy
                           of the model; the model must then outlive the
                           base and its weights stay unchanged (as the
                           builders' borrowed weights). 0 (default): the
                           base owns copies of all its weights. */
} fib_compress_options;

/* Fills *options with the defaults. struct_size must be the caller's
 * sizeof(fib_compress_options). Errors: FIB_E_NULL, FIB_E_INVALID
 * (struct_size too small). */
FIB_API int32_t fib_compress_options_init(fib_compress_options *options,
                                          size_t struct_size);

/* fib_compress with options (NULL: the defaults, the same base).
 * Errors: those of fib_compress; FIB_E_INVALID (options), FIB_E_NONFINITE
 * (a merged weight float32 cannot hold, with FIB_DTYPE_F32). */
FIB_API int32_t fib_compress_ex(const fib_graph *graph,
                                const fib_coloring *coloring,
                                const fib_compress_options *options,
                                fib_base **out);

/* ------------------------------------------------------------------------ */
/* Budgets: outputs apart from inputs                                       */
/* ------------------------------------------------------------------------ */

/* What fib_compress_to_budget_ex reports about the base it made. The
 * caller sets struct_size to sizeof(fib_budget_result); fields appended in
 * later versions are written only within the caller's struct_size. */
typedef struct fib_budget_result {
    size_t struct_size;       /* set by the caller */
    double bound;             /* the data-free bound of the base (see
                                 fib_compress_to_budget) */
    int64_t n_parameters;     /* parameters of the base */
    int32_t chosen_tolerance; /* the grouping used (FIB_TOL_WARD, or
                                 FIB_TOL_SCALED | FIB_TOL_WARD) */
    int32_t corrected;        /* 1 if the synthetic correction was applied */
    double smallest_fraction; /* on FIB_E_UNSUPPORTED for a budget below the
                                 smallest base: that base's parameters over
                                 the graph's (round it up to succeed); else
                                 0 */
} fib_budget_result;

/* fib_compress_to_budget with its inputs and outputs apart: options (NULL:
 * the defaults) is only read, and its output fields are ignored; the
 * outputs go to *result (may be NULL). On failure every field of *result is
 * 0 except smallest_fraction as described. Errors: those of
 * fib_compress_to_budget; FIB_E_INVALID (result.struct_size below
 * sizeof(fib_budget_result) of this version, options.struct_size below
 * FIB_BUDGET_OPTIONS_SIZE_1). */
FIB_API int32_t fib_compress_to_budget_ex(const fib_graph *graph,
                                          double budget_fraction,
                                          const fib_budget_options *options,
                                          fib_budget_result *result,
                                          fib_base **base_out);

/* ------------------------------------------------------------------------ */
/* Experimental                                                             */
/* ------------------------------------------------------------------------ */

/* What may still change between minor versions. The signatures, the
 * status codes and the guarantees stated with each function stay; these
 * results may differ from one version to the next:
 *  - the base fib_compress_to_budget and fib_compress_to_budget_ex choose
 *    for a given budget (which merges the search takes, the sensitivities,
 *    the defaults of sensitivity_power, input_sensitivity,
 *    refine_iterations and synthetic_ridge): the base stays within the
 *    budget, computes what its graph computes up to its merges, and
 *    `bound` is the estimate for the base returned;
 *  - which graphs FIB_TOL_SCALED and the budgets accept beyond chains of
 *    dense blocks (refused today with FIB_E_UNSUPPORTED, naming the group);
 *  - which Hugging Face configurations fib_model_load accepts in a
 *    checkpoint directory (a key it cannot read is refused today by name,
 *    with FIB_E_FORMAT).
 * Everything else in this header is stable within a major version. */

/* ------------------------------------------------------------------------ */
/* Bases of Hugging Face checkpoint directories                             */
/* ------------------------------------------------------------------------ */

/* What fib_base_save_checkpoint wrote. */
#define FIB_SAVED_CHECKPOINT 1 /* a checkpoint directory in the model's layout */
#define FIB_SAVED_MODEL_FILE 2 /* the library's own model file (fib_base_save) */

/* Saves the base of a model read from the Hugging Face checkpoint directory
 * `model_dir` (`model` is the graph fib_model_load made of it, `base` its
 * base). Where the checkpoint's layout can hold the base (only the MLP's
 * intermediate units merged, alike in every layer: config.json has one
 * intermediate size), `path` becomes a directory in that layout:
 * config.json (the original's, with the new intermediate size) and
 * model.safetensors (the checkpoint's tensor names, each in the model's
 * dtype where it holds the merged values exactly, else float32), written
 * into a temporary folder beside `path` and renamed to it: an existing
 * non-empty `path` is never replaced (FIB_E_IO). Otherwise, or when `path`
 * ends in ".safetensors", the base is saved by fib_base_save(base, path,
 * dtype) and `reason` (may be NULL; reason_size bytes, NUL-terminated)
 * says why the layout could not hold it. *saved_as receives
 * FIB_SAVED_CHECKPOINT or FIB_SAVED_MODEL_FILE.
 * Errors: FIB_E_NULL, FIB_E_MISMATCH (base is not of model), FIB_E_FORMAT
 * (model_dir's config.json), FIB_E_IO, FIB_E_NOMEM, those of
 * fib_base_save. docs/model-files.md, "Bases of checkpoint directories". */
FIB_API int32_t fib_base_save_checkpoint(const fib_base *base,
                                         const fib_graph *model,
                                         const char *model_dir,
                                         const char *path, int32_t dtype,
                                         int32_t *saved_as, char *reason,
                                         size_t reason_size);

/* The size of the base fib_compress(graph, coloring) would make, without
 * making it: for every group g < the graph's groups, units[g] (the base's
 * units of it) and parameters[g] (its parameters, as
 * fib_graph_num_parameters counts them); either array may be NULL. The
 * figures are those of the base fib_compress makes (which may still refuse
 * it, as when a merged weight overflows). Errors: FIB_E_NULL,
 * FIB_E_MISMATCH (coloring not of graph), FIB_E_BUFFER (n_groups below the
 * graph's groups), FIB_E_UNSUPPORTED (a block that cannot count its base
 * without making it, named, or a colouring with scales: count
 * fib_compress's base instead), FIB_E_NOMEM. */
FIB_API int32_t fib_base_count(const fib_graph *graph,
                               const fib_coloring *coloring, int64_t *units,
                               int64_t *parameters, int64_t n_groups);
/* The number of arcs of the quotient fib_quotient_create builds of `graph`
 * under `coloring` (what fib_quotient_num_arcs would report), counted
 * without building the quotient: for a caller that needs only the count, it
 * spares the quotient's arrays.
 * Errors: FIB_E_NULL, FIB_E_MISMATCH, FIB_E_NOMEM. */
FIB_API int32_t fib_quotient_count_arcs(const fib_graph *graph,
                                        const fib_coloring *coloring,
                                        int64_t *n_arcs_out);
/* Saves `graph`, a network with the groups of `model` (read by
 * fib_model_load from the Hugging Face checkpoint directory model_dir) and
 * other MLP widths, such as fib_lift's expansion of a base that
 * fib_base_save_checkpoint wrote as a directory, as fib_base_save_checkpoint
 * saves a base: a checkpoint directory in model_dir's layout (config.json
 * with the graph's intermediate size) where the layout holds it, else the
 * library's model file (fib_model_save(graph, path, dtype)) and `reason`
 * says why. *saved_as receives FIB_SAVED_CHECKPOINT or
 * FIB_SAVED_MODEL_FILE. Errors: FIB_E_NULL, FIB_E_MISMATCH (graph does not
 * have model's groups), FIB_E_FORMAT, FIB_E_IO, FIB_E_NOMEM, those of
 * fib_model_save. docs/model-files.md, "Bases of checkpoint directories". */
FIB_API int32_t fib_graph_save_checkpoint(const fib_graph *graph,
                                          const fib_graph *model,
                                          const char *model_dir,
                                          const char *path, int32_t dtype,
                                          int32_t *saved_as, char *reason,
                                          size_t reason_size);

/* Opfibers or covers (options->symmetry FIB_SYM_OPFIBERS or FIB_SYM_COVERS)
 * flavoured by `fibers`, the FIB_SYM_FIBERS colouring fib_color made of
 * this graph with the same tolerance and eps (per-group eps included): the
 * same classes as fib_color with these options, without colouring the
 * fibers again (half the work when both are wanted). Covers made so keep no
 * class sums: fib_compress reads the weights for them. Errors: those of
 * fib_color; FIB_E_NULL (options too), FIB_E_INVALID (FIB_SYM_FIBERS),
 * FIB_E_MISMATCH (fibers of another graph or of it before a change, not
 * made by fib_color, made by it with another tolerance or eps, or with
 * classes set since by fib_coloring_set_group). */
FIB_API int32_t fib_color_from_fibers(const fib_graph *graph,
                                      const fib_color_options *options,
                                      const fib_coloring *fibers,
                                      fib_coloring **out);

/* The parameters of `graph` as fib_compress_to_budget counts them: those
 * fib_graph_num_parameters counts, except that a selection block (a dense
 * block without bias whose rows copy one unit of its source or are 0: how
 * a concatenation, a split or a permutation of units is held) holds none,
 * as the model it stands for holds none, and tied weights (a group whose
 * weights are the same memory as an earlier group's, as a tied LM head
 * reads the word-embedding matrix in GPT-2 or BERT) are counted once, as
 * torch counts a shared parameter. A budget F keeps at most F times this
 * count, and its n_parameters is this count of the base (with the class
 * indices of merged inputs): a base that keeps both tied groups and their
 * sources whole keeps them tied and counts the matrix once, one that
 * merges either holds two matrices and counts both (docs/compression.md).
 * Errors: FIB_E_NULL. */
FIB_API int32_t fib_graph_budget_parameters(const fib_graph *graph,
                                            int64_t *n_out);

/* fib_lift with the dtype of the lifted dense and convolution blocks
 * chosen: 0 as fib_lift (the precision of the block each lifts),
 * FIB_DTYPE_F32 (every one rounded to float32 as it is made, so that the
 * lift never holds float64 copies of them all), FIB_DTYPE_F64 (every one
 * float64: each base weight divided by its class size, unrounded). Other
 * blocks are as fib_lift makes them. Errors: those of fib_lift;
 * FIB_E_NULL, FIB_E_INVALID (dtype), FIB_E_NONFINITE (a lifted weight
 * float32 cannot hold, with FIB_DTYPE_F32). */
FIB_API int32_t fib_lift_dtype(const fib_base *base, const fib_graph *weights,
                               int32_t dtype, fib_graph **out);

/* The number of units of group `group` of the original graph of `base`,
 * which fib_base_projection fills (a base that fib_base_load read knows it
 * from its file). Errors: FIB_E_NULL, FIB_E_RANGE (group). */
FIB_API int32_t fib_base_original_units(const fib_base *base, int32_t group,
                                        int64_t *n_units);

/* Stored statistics of group `group`'s units on the data, as the model
 * itself stores them: mean[u] and var[u] are the mean and variance of unit
 * u's output (after the group's activation), over the data and over the
 * unit's positions; a batch norm's running mean and variance of its input
 * are those of the group it reads. Copied into the graph (n_units must be
 * the group's unit count); mean and var both NULL remove them. Only
 * fib_compress_to_budget reads them, data-free: it carries them forward
 * through the blocks that follow (docs/compression.md, "Removals from
 * stored statistics") and removes units whose output is nearly constant,
 * their mean taken by their consumers' biases. Statistics do not change
 * what the graph computes or how it is coloured. Errors: FIB_E_NULL (graph;
 * one of mean and var NULL), FIB_E_RANGE (group), FIB_E_SHAPE (n_units not
 * the group's), FIB_E_NONFINITE (a mean or variance NaN or infinite),
 * FIB_E_INVALID (a negative variance); each names the group and unit. */
FIB_API int32_t fib_graph_set_unit_statistics(fib_graph *graph, int32_t group,
                                              const double *mean, const double *var,
                                              int64_t n_units);

#ifdef __cplusplus
}
#endif
#endif /* FIBRATION_H */
