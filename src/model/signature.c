/* Signatures: the numbers that must agree for two units to share a class,
 * with the rounding allowance of each; their memory and that allowance.
 * The fiber and opfiber signatures of a group are made in
 * color/fiber_signatures.c. */
#include "model/model.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

int32_t fib_signature_alloc_in(fib_signature *sig, int64_t n_units,
                               int64_t n_coords, fib_scratch *scratch)
{
    int64_t cells, both;
    *sig = (fib_signature){.n_units = n_units, .n_coords = n_coords};
    if (!fib_mul_i64(n_units, n_coords > 0 ? n_coords : 1, &cells) ||
        !fib_mul_i64(cells, 2, &both))
        return fib_error(FIB_E_OVERFLOW, "signature of %lld x %lld overflows",
                         (long long)n_units, (long long)n_coords);
    if (scratch && !scratch->in_use) {
        if (scratch->cells < cells) {
            fib_scratch_clear(scratch);
            scratch->block = fib_alloc(both, sizeof(double));
            if (!scratch->block)
                return fib_error(FIB_E_NOMEM,
                                 "out of memory for a %lld x %lld signature",
                                 (long long)n_units, (long long)n_coords);
            scratch->cells = cells;
        }
        scratch->in_use = true;
        sig->scratch = scratch;
        sig->value = scratch->block;
        sig->tol = scratch->block + cells;
        return FIB_OK;
    }
    sig->value = fib_alloc(cells, sizeof(double));
    sig->tol = fib_alloc(cells, sizeof(double));
    if (!sig->value || !sig->tol) {
        fib_signature_clear(sig);
        return fib_error(FIB_E_NOMEM, "out of memory for a %lld x %lld signature",
                         (long long)n_units, (long long)n_coords);
    }
    return FIB_OK;
}

int32_t fib_signature_alloc(fib_signature *sig, int64_t n_units,
                            int64_t n_coords)
{
    return fib_signature_alloc_in(sig, n_units, n_coords, NULL);
}

void fib_signature_clear(fib_signature *sig)
{
    if (sig->scratch) {
        sig->scratch->in_use = false; /* the memory stays for the next one */
    } else {
        fib_free(sig->value);
        fib_free(sig->tol);
    }
    sig->value = sig->tol = NULL;
    sig->scratch = NULL;
}

void fib_scratch_clear(fib_scratch *scratch)
{
    fib_free(scratch->block);
    scratch->block = NULL;
    scratch->cells = 0;
    scratch->in_use = false;
}

double fib_rounding_tol(int32_t dtype, int64_t terms, double abs_sum)
{
    /* Each stored weight may carry half an ulp of its dtype from however it
     * was computed (a lift splits a sum); the double accumulation adds one
     * 2^-53 per term. The factor 4 leaves room for a second rounding.
     * float16 and bfloat16 weights take float32's allowance: they are
     * exact float32 values, and their colourings are those of the float32
     * copy of the same weights. */
    const double u = dtype == FIB_DTYPE_F64 ? 0x1.0p-53 : 0x1.0p-24;
    return (4.0 * u + (double)(terms + 1) * 0x1.0p-53) * abs_sum;
}

void fib_signature_put_weight(fib_signature *sig, int64_t unit, int64_t coord, int32_t dtype,
                              double value)
{
    sig->value[unit * sig->n_coords + coord] = value;
    sig->tol[unit * sig->n_coords + coord] = fib_rounding_tol(dtype, 1, fabs(value));
}
