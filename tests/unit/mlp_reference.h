/* An MLP forward and backward pass written in the tests, independent of the
 * library, over the weights of a planted network (float64 copies). */
#ifndef FIB_MLP_REFERENCE_H
#define FIB_MLP_REFERENCE_H

#include <stdint.h>

#include "planted.h"

typedef struct mlp_ref {
    int n_layers;
    int64_t width[PLANTED_MAX_LAYERS + 1];
    int32_t activation[PLANTED_MAX_LAYERS];
    double *w[PLANTED_MAX_LAYERS]; /* packed width[l+1] x width[l] */
    double *b[PLANTED_MAX_LAYERS];
    double *z[PLANTED_MAX_LAYERS + 1];     /* pre-activations, one sample */
    double *a[PLANTED_MAX_LAYERS + 1];     /* activities */
    double *delta[PLANTED_MAX_LAYERS + 1]; /* dLoss/dz */
} mlp_ref;

void mlp_ref_from_planted(mlp_ref *m, const planted_mlp *p);
void mlp_ref_free(mlp_ref *m);
/* One sample: x has width[0] entries; activities stored in m->a. */
void mlp_ref_forward(mlp_ref *m, const double *x);
/* Backward from dLoss/dOutput (linear output layer); fills m->delta. */
void mlp_ref_backward(mlp_ref *m, const double *output_error);
/* w -= lr * delta a^T, b -= lr * delta (after forward + backward). */
void mlp_ref_sgd_step(mlp_ref *m, double lr);

#endif
