/* Tolerance modes REL, COSINE, COMPLETE, WARD and the scale-aware colouring
 * (linkage.c). Internal. */
#ifndef FIB_LINKAGE_H
#define FIB_LINKAGE_H

#include "color/color.h"

/* Signature rows with label coordinates taken out: n x d values and
 * rounding allowances, and per row the class of its label coordinates. */
typedef struct fib_rows {
    int64_t n, d;
    double *value, *tol;
    int64_t *label;
    int32_t n_threads; /* for the linkages and Lloyd rounds on these rows:
                          0 = the OpenMP default; never changes a result */
    bool float_cosines; /* rank-1 Ward only (budgets): the cosines below a
                           bound made in floats (linkage.c) */
    bool search_all;    /* tests: the Lloyd rounds search every unit among
                           all the directions, no bound skipping one */
    /* NULL, or the values held in float32 instead (value NULL): value
     * (i, j) is narrow[i * ld + j] (with a tail, value (i, d - 1) is
     * tail[i]) divided by divisor[i], the bits of the double rows they
     * stand for. Held in their own memory (fib_rows_narrow: owned) or
     * borrowed from a layer's weights (fib_rows_borrow); only the rank-1
     * Ward linkage, the cosine linkage and fib_rows_normalize read them. */
    const float *narrow, *tail;
    int64_t ld;
    float *owned;             /* narrow when held in its own memory */
    const fib_graph *pages;   /* borrowed from this graph's tensors: the
                                 linkage lets their mapped pages go once it
                                 has read them (fib_graph_drop_range) */
    double *divisor;
} fib_rows;

/* An agglomeration: merge s joined cluster b[s] into cluster a[s] < b[s]
 * (clusters named by their lowest unit) at cost height[s]. */
typedef struct fib_merges {
    int64_t n, n_merges;
    int64_t *a, *b;
    double *height;
} fib_merges;

/* n rows of d zeros (values and allowances), labels 0; FIB_E_NOMEM. */
int32_t fib_rows_alloc(fib_rows *r, int64_t n, int64_t d);
int32_t fib_rows_from_signature(const fib_signature *sig, fib_rows *out);
/* The coordinates of sig that are not labels, row i of sig into row i of
 * out from column `at` on (their allowances too when out has them); the
 * number of such coordinates. out has sig's units and room for them. */
int64_t fib_rows_put_signature(const fib_signature *sig, fib_rows *out, int64_t at);
void fib_rows_clear(fib_rows *r);
/* Median of the rows' L2 norms (times weight[i] when given); 1 if 0. */
double fib_rows_scale(const fib_rows *r, const double *weight);
double fib_signature_scale(const fib_signature *sig);
/* Divides every row by its L2 norm (zero rows stay); norms may be NULL.
 * Rows held in float32 (fib_rows_narrow) take it as their divisors: once. */
void fib_rows_normalize(fib_rows *r, double *norms);
/* Holds r's values in float32, in their own memory, when every one is a
 * float32 value (a layer's weights over discrete sources) and r has no
 * allowances: half the memory, the same values read back. False (r
 * unchanged) otherwise. */
bool fib_rows_narrow(fib_rows *r);
/* The rows fib_scaled_dense_values makes for dense group `group` over a
 * discrete source with unit scales (src_scale NULL or all 1), read in
 * place from the group's float32 weights and bias instead: r borrows them
 * (fib_rows_clear leaves them) and reads the same values. False (r
 * cleared) for a source that is not discrete, another dtype, transposed
 * weights or no memory. */
bool fib_rows_borrow(const fib_graph *g, int32_t group, const fib_partition *src,
                     const double *src_scale, fib_rows *r);
/* Sorts v and returns its median. */
double fib_median(double *v, int64_t n);

/* Agglomerates until the next merge would cost more than `stop` (INFINITY:
 * as far as labels allow). method: FIB_TOL_COSINE (average linkage of
 * 1 - cosine), FIB_TOL_COMPLETE (complete linkage of L-infinity minus
 * rounding), FIB_TOL_WARD (classical Ward, masses `mass`, or with rank1 the
 * rank-1 Ward on rows weighted by sqrt(mass)). FIB_E_UNSUPPORTED past
 * FIB_LINKAGE_MAX_UNITS. */
int32_t fib_linkage_run(const fib_rows *r, int32_t method, bool rank1,
                        const double *mass, double stop, fib_merges *out);
/* A long call's link to its caller's progress callback: reports (done,
 * total) unchanged from inside a loop, so that a cancel acts promptly. */
typedef struct fib_progress_check {
    fib_progress_fn fn; /* NULL: never cancels */
    void *user;
    int64_t done, total;
} fib_progress_check;
/* Nonzero when check (may be NULL) asks to cancel. */
bool fib_progress_cancelled(const fib_progress_check *check);
/* fib_linkage_run asking `check` (may be NULL) once per panel of 64 rows
 * of its distance matrix (COSINE, rank-1 Ward) or once per row (the
 * others), and once per merge: FIB_E_CANCELLED when it cancels. */
int32_t fib_linkage_run_checked(const fib_rows *r, int32_t method, bool rank1,
                                const double *mass, double stop,
                                const fib_progress_check *check, fib_merges *out);
/* fib_linkage_run_checked stopping after at most max_merges merges: they
 * are the first merges of the full run (each is chosen from what the ones
 * before it left), for a caller that cuts there. */
int32_t fib_linkage_run_limited(const fib_rows *r, int32_t method, bool rank1,
                                const double *mass, double stop, int64_t max_merges,
                                const fib_progress_check *check, fib_merges *out);
void fib_merges_clear(fib_merges *mg);
/* The partition after the first n_merges merges (out initialised, n units). */
int32_t fib_merges_cut(const fib_merges *mg, int64_t n_merges, fib_partition *out);

/* Groups rows by a tolerance mode (linkage modes; weight: outgoing norms
 * for WARD, may be NULL). */
int32_t fib_group_rows_mode(const fib_rows *r, int32_t mode, double eps,
                            const double *weight, fib_partition *out);
/* fib_group_signatures for any mode (eps < 0: exact). */
int32_t fib_group_signatures_mode(const fib_signature *sig, int32_t mode,
                                  double eps, const double *weight,
                                  fib_partition *out);
/* L2 norms of each unit's outgoing weights over its dense consumers (1 per
 * other consumer; all 1 for a group nobody reads). */
int32_t fib_outgoing_norms(const fib_graph *g, int32_t group, double *w);
bool fib_activation_homogeneous(int32_t activation);
/* Scaled colour sums of a dense group over its source's classes (source
 * scales may be NULL: all 1), bias last. */
int32_t fib_scaled_dense_rows(const fib_graph *g, int32_t group,
                              const fib_partition *src, const double *src_scale,
                              fib_rows *out);
/* The same rows without their rounding allowances (out->tol NULL), for
 * what reads only the values (budgets: rank-1 Ward, Lloyd rounds, scales),
 * reading the block once: its mapped pages go as its rows are made. */
int32_t fib_scaled_dense_values(const fib_graph *g, int32_t group,
                                const fib_partition *src, const double *src_scale,
                                fib_rows *out);
/* Per-unit scales of the best rank-1 fit of each class (rows weighted by
 * weight, may be NULL), normalised to mean 1 per class. */
int32_t fib_class_scales(const fib_rows *r, const fib_partition *p,
                         const double *weight, double *scale);
/* Colours dense group `group` scale-aware (fib_color with FIB_TOL_SCALED):
 * sets parts[group] and, for a homogeneous activation, scales[group]. */
int32_t fib_color_scaled_dense(const fib_graph *g, int32_t group, int32_t mode,
                               double eps, fib_partition *parts,
                               double **scales);
/* Lloyd iterations on the rank-1 objective: each unit moves to the class
 * whose top direction has the largest positive projection of its row; the
 * directions are recomputed; at most `iterations` rounds, deterministic.
 * check (may be NULL) is asked once per unit of each round. */
int32_t fib_rank1_lloyd(const fib_rows *r, const double *weight, int32_t iterations,
                        const fib_progress_check *check, fib_partition *p);
/* Top right singular direction of the weighted rows of `members` (exact
 * from their Gram matrix for a small class, else power iteration from their
 * weighted sum; r->value and r->d only), into v (unit, pointing along the
 * sum); w: scratch of r->d. */
void fib_top_direction(const fib_rows *r, const int64_t *members, int64_t m,
                       const double *weight, double *v, double *w);
#endif
