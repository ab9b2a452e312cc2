/* Activation functions: names, linearity (for opfiber flavours), and the
 * reference implementation used by the forward pass. */
#include "model/model.h"

#include <math.h>

bool fib_activation_valid(int32_t activation)
{
    return activation >= FIB_ACT_LINEAR && activation <= FIB_ACT_GELU_TANH;
}

bool fib_activation_is_linear(int32_t activation)
{
    return activation == FIB_ACT_LINEAR;
}

const char *fib_activation_name(int32_t activation)
{
    static const char *const names[] = {"linear", "relu", "leaky_relu", "tanh",
                                         "sigmoid", "gelu", "silu", "relu6",
                                         "hardswish", "hardsigmoid", "mish",
                                         "softplus", "gelu_tanh"};
    return fib_activation_valid(activation) ? names[activation] : NULL;
}

static double sigmoid(double x)
{
    return 1.0 / (1.0 + exp(-x));
}

static double relu6(double x)
{
    return x < 0 ? 0.0 : x > 6 ? 6.0 : x;
}

/* PyTorch's softplus (beta 1, threshold 20): linear above the threshold. */
static double softplus(double x)
{
    return x > 20 ? x : log1p(exp(x));
}

/* GELU with PyTorch's tanh approximation (GPT-2's gelu_new). */
static double gelu_tanh(double x)
{
    const double k = 0.79788456080286535588; /* sqrt(2 / pi) */
    return 0.5 * x * (1.0 + tanh(k * (x + 0.044715 * x * x * x)));
}

void fib_activation_apply(int32_t activation, double param, double *z,
                          int64_t count)
{
    switch (activation) {
    case FIB_ACT_RELU:
        for (int64_t i = 0; i < count; i++)
            z[i] = z[i] > 0 ? z[i] : 0.0;
        break;
    case FIB_ACT_LEAKY_RELU:
        for (int64_t i = 0; i < count; i++)
            z[i] = z[i] > 0 ? z[i] : param * z[i];
        break;
    case FIB_ACT_TANH:
        for (int64_t i = 0; i < count; i++)
            z[i] = tanh(z[i]);
        break;
    case FIB_ACT_SIGMOID:
        for (int64_t i = 0; i < count; i++)
            z[i] = sigmoid(z[i]);
        break;
    case FIB_ACT_GELU:
        for (int64_t i = 0; i < count; i++)
            z[i] = 0.5 * z[i] * (1.0 + erf(z[i] * 0.70710678118654752440));
        break;
    case FIB_ACT_SILU:
        for (int64_t i = 0; i < count; i++)
            z[i] = z[i] * sigmoid(z[i]);
        break;
    case FIB_ACT_RELU6:
        for (int64_t i = 0; i < count; i++)
            z[i] = relu6(z[i]);
        break;
    case FIB_ACT_HARDSWISH:
        for (int64_t i = 0; i < count; i++)
            z[i] = z[i] * relu6(z[i] + 3.0) / 6.0;
        break;
    case FIB_ACT_HARDSIGMOID:
        for (int64_t i = 0; i < count; i++)
            z[i] = relu6(z[i] + 3.0) / 6.0;
        break;
    case FIB_ACT_MISH:
        for (int64_t i = 0; i < count; i++)
            z[i] = z[i] * tanh(softplus(z[i]));
        break;
    case FIB_ACT_SOFTPLUS:
        for (int64_t i = 0; i < count; i++)
            z[i] = softplus(z[i]);
        break;
    case FIB_ACT_GELU_TANH:
        for (int64_t i = 0; i < count; i++)
            z[i] = gelu_tanh(z[i]);
        break;
    default:
        break;
    }
}

double fib_normal_pdf(double x)
{
    return 0.39894228040143267794 * exp(-0.5 * x * x);
}

double fib_normal_cdf(double x)
{
    return 0.5 * erfc(-x * 0.70710678118654752440);
}

bool fib_activation_moments(int32_t activation, double *mean, double *var)
{
    if (activation == FIB_ACT_LINEAR)
        return true;
    if (activation != FIB_ACT_RELU)
        return false;
    double m = *mean, v = *var;
    if (!(v > 0)) { /* a constant: exactly its rectified value */
        *mean = m > 0 ? m : 0.0;
        *var = 0;
        return true;
    }
    /* relu(z), z ~ N(m, s^2), a = m / s: E = m Phi(a) + s phi(a),
     * E[relu(z)^2] = (m^2 + s^2) Phi(a) + m s phi(a) */
    double s = sqrt(v), a = m / s;
    double cdf = fib_normal_cdf(a), pdf = fib_normal_pdf(a);
    double e1 = m * cdf + s * pdf, e2 = (m * m + v) * cdf + m * s * pdf;
    *mean = e1 > 0 ? e1 : 0.0;
    double spread = e2 - e1 * e1;
    *var = spread > 0 ? spread : 0.0;
    return true;
}
