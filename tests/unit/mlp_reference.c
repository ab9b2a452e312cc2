#include "mlp_reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double act(int32_t kind, double z)
{
    switch (kind) {
    case FIB_ACT_RELU: return z > 0 ? z : 0;
    case FIB_ACT_TANH: return tanh(z);
    case FIB_ACT_SIGMOID: return 1 / (1 + exp(-z));
    default: return z;
    }
}

static double act_derivative(int32_t kind, double z)
{
    switch (kind) {
    case FIB_ACT_RELU: return z > 0 ? 1 : 0;
    case FIB_ACT_TANH: return 1 - tanh(z) * tanh(z);
    case FIB_ACT_SIGMOID: {
        double s = 1 / (1 + exp(-z));
        return s * (1 - s);
    }
    default: return 1;
    }
}

void mlp_ref_from_planted(mlp_ref *m, const planted_mlp *p)
{
    memset(m, 0, sizeof *m);
    m->n_layers = p->n_layers;
    for (int l = 0; l <= p->n_layers; l++) {
        m->width[l] = p->width[l];
        m->z[l] = calloc((size_t)p->width[l], sizeof(double));
        m->a[l] = calloc((size_t)p->width[l], sizeof(double));
        m->delta[l] = calloc((size_t)p->width[l], sizeof(double));
    }
    for (int l = 0; l < p->n_layers; l++) {
        int64_t no = p->width[l + 1], ni = p->width[l];
        m->activation[l] = p->activation[l];
        m->w[l] = malloc((size_t)(no * ni) * sizeof(double));
        m->b[l] = malloc((size_t)no * sizeof(double));
        for (int64_t i = 0; i < no; i++) {
            for (int64_t k = 0; k < ni; k++)
                m->w[l][i * ni + k] = p->dtype == FIB_DTYPE_F32
                                          ? ((float *)p->w[l])[i * p->ld[l] + k]
                                          : ((double *)p->w[l])[i * p->ld[l] + k];
            m->b[l][i] = p->dtype == FIB_DTYPE_F32 ? ((float *)p->b[l])[i]
                                                   : ((double *)p->b[l])[i];
        }
    }
}

void mlp_ref_free(mlp_ref *m)
{
    for (int l = 0; l <= m->n_layers; l++) {
        free(m->z[l]);
        free(m->a[l]);
        free(m->delta[l]);
    }
    for (int l = 0; l < m->n_layers; l++) {
        free(m->w[l]);
        free(m->b[l]);
    }
}

void mlp_ref_forward(mlp_ref *m, const double *x)
{
    memcpy(m->a[0], x, (size_t)m->width[0] * sizeof *x);
    memcpy(m->z[0], x, (size_t)m->width[0] * sizeof *x);
    for (int l = 0; l < m->n_layers; l++) {
        int64_t no = m->width[l + 1], ni = m->width[l];
        for (int64_t i = 0; i < no; i++) {
            double z = m->b[l][i];
            for (int64_t k = 0; k < ni; k++)
                z += m->w[l][i * ni + k] * m->a[l][k];
            m->z[l + 1][i] = z;
            m->a[l + 1][i] = act(m->activation[l], z);
        }
    }
}

void mlp_ref_backward(mlp_ref *m, const double *output_error)
{
    int L = m->n_layers;
    for (int64_t i = 0; i < m->width[L]; i++)
        m->delta[L][i] = output_error[i] * act_derivative(m->activation[L - 1], m->z[L][i]);
    for (int l = L - 1; l >= 1; l--) {
        int64_t no = m->width[l + 1], ni = m->width[l];
        for (int64_t k = 0; k < ni; k++) {
            double s = 0;
            for (int64_t i = 0; i < no; i++)
                s += m->w[l][i * ni + k] * m->delta[l + 1][i];
            m->delta[l][k] = s * act_derivative(m->activation[l - 1], m->z[l][k]);
        }
    }
}

void mlp_ref_sgd_step(mlp_ref *m, double lr)
{
    for (int l = 0; l < m->n_layers; l++) {
        int64_t no = m->width[l + 1], ni = m->width[l];
        for (int64_t i = 0; i < no; i++) {
            for (int64_t k = 0; k < ni; k++)
                m->w[l][i * ni + k] -= lr * m->delta[l + 1][i] * m->a[l][k];
            m->b[l][i] -= lr * m->delta[l + 1][i];
        }
    }
}
