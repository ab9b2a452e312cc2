#include "model/window.h"

int32_t fib_window_check(const fib_window *w, int64_t rows, int64_t cols,
                         const char *what, int32_t group, int64_t *out_rows,
                         int64_t *out_cols)
{
    if (w->kernel_rows < 1 || w->kernel_cols < 1 || w->stride_rows < 1 ||
        w->stride_cols < 1 || w->pad_rows < 0 || w->pad_cols < 0)
        return fib_error(FIB_E_SHAPE,
                         "%s of group %d: kernel %lldx%lld, stride %lldx%lld, padding "
                         "%lldx%lld: kernel and stride must be >= 1, padding >= 0",
                         what, (int)group, (long long)w->kernel_rows,
                         (long long)w->kernel_cols, (long long)w->stride_rows,
                         (long long)w->stride_cols, (long long)w->pad_rows,
                         (long long)w->pad_cols);
    if (w->kernel_rows > FIB_MAX_UNITS || w->kernel_cols > FIB_MAX_UNITS ||
        w->pad_rows > FIB_MAX_UNITS || w->pad_cols > FIB_MAX_UNITS ||
        w->stride_rows > FIB_MAX_UNITS || w->stride_cols > FIB_MAX_UNITS ||
        w->kernel_rows * w->kernel_cols > FIB_MAX_UNITS)
        return fib_error(FIB_E_OVERFLOW, "%s of group %d: window sizes exceed 2^40", what,
                         (int)group);
    int64_t padded_rows = rows + 2 * w->pad_rows, padded_cols = cols + 2 * w->pad_cols;
    if (padded_rows < w->kernel_rows || padded_cols < w->kernel_cols)
        return fib_error(FIB_E_SHAPE,
                         "%s of group %d: kernel %lldx%lld is larger than the padded input %lldx%lld",
                         what, (int)group, (long long)w->kernel_rows,
                         (long long)w->kernel_cols, (long long)padded_rows,
                         (long long)padded_cols);
    *out_rows = (padded_rows - w->kernel_rows) / w->stride_rows + 1;
    *out_cols = (padded_cols - w->kernel_cols) / w->stride_cols + 1;
    return FIB_OK;
}

void fib_window_params(const fib_window *w, int64_t *out)
{
    out[0] = w->kernel_rows;
    out[1] = w->kernel_cols;
    out[2] = w->stride_rows;
    out[3] = w->stride_cols;
    out[4] = w->pad_rows;
    out[5] = w->pad_cols;
}
