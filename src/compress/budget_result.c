/* fib_compress_to_budget_ex: the budgeted compression with its outputs in
 * a result struct, so that the options the caller passes are only read.
 * It runs fib_compress_to_budget on a private copy of the options. */
#include "compress/compress.h"

#include <string.h>

int32_t fib_compress_to_budget_ex(const fib_graph *g, double budget_fraction,
                                  const fib_budget_options *options, fib_budget_result *result,
                                  fib_base **base_out)
{
    static const char fn[] = "fib_compress_to_budget_ex";
    if (result && result->struct_size < sizeof *result)
        return fib_error(FIB_E_INVALID, "%s: result.struct_size %zu is smaller than %zu (set "
                         "it to sizeof(fib_budget_result))", fn, result->struct_size,
                         sizeof *result);
    fib_budget_options local;
    fib_budget_options_init(&local, sizeof local);
    if (options) {
        /* the caller's fields over the defaults: a caller of an earlier
         * layout has only its bytes; a size below the first layout is
         * kept, for fib_compress_to_budget to refuse */
        memcpy(&local, options,
               options->struct_size < sizeof local ? options->struct_size : sizeof local);
        local.struct_size = options->struct_size < FIB_BUDGET_OPTIONS_SIZE_1
                                ? options->struct_size : sizeof local;
        /* outputs of an earlier call in the caller's options are no input */
        local.bound = 0;
        local.n_parameters = 0;
        local.chosen_tolerance = 0;
        local.corrected = 0;
        local.smallest_fraction = 0;
    }
    int32_t status = fib_compress_to_budget(g, budget_fraction, &local, base_out);
    if (result) {
        fib_budget_result out = {.struct_size = result->struct_size,
                                 .smallest_fraction = local.smallest_fraction};
        if (status == FIB_OK) {
            out.bound = local.bound;
            out.n_parameters = local.n_parameters;
            out.chosen_tolerance = local.chosen_tolerance;
            out.corrected = local.corrected;
        }
        memcpy(result, &out, sizeof out);
    }
    return status;
}
