/* The sliding window of convolutions and pooling: kernel, stride, zero
 * padding per axis, and the output positions it gives. */
#ifndef FIB_WINDOW_H
#define FIB_WINDOW_H

#include "model/model.h"

typedef struct fib_window {
    int64_t kernel_rows, kernel_cols;
    int64_t stride_rows, stride_cols;
    int64_t pad_rows, pad_cols;
} fib_window;

/* Checks the window against a source of rows x cols positions and gives
 * the output positions. `what` and `group` name the block in messages. */
int32_t fib_window_check(const fib_window *w, int64_t rows, int64_t cols,
                         const char *what, int32_t group, int64_t *out_rows,
                         int64_t *out_cols);

/* Writes the six numbers in header order (kernel, stride, padding). */
void fib_window_params(const fib_window *w, int64_t *out);

#endif
