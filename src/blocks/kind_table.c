/* The fib_block_ops of each network kind, for what knows a block only by
 * its kind before it exists (a model file's group is built by its kind's
 * build). Apart from op_names.c, so that the blocks, which name their
 * kinds there, do not call back into this table of all of them. */
#include "blocks/blocks.h"

const fib_block_ops *fib_block_ops_of(int32_t op)
{
    switch (op) {
    case FIB_OP_DENSE: return &fib_dense_ops;
    case FIB_OP_SUM: return &fib_sum_ops;
    case FIB_OP_CONV: return &fib_conv_ops;
    case FIB_OP_POOL: return &fib_pool_ops;
    case FIB_OP_FLATTEN: return &fib_flatten_ops;
    case FIB_OP_AFFINE: return &fib_affine_ops;
    case FIB_OP_LSTM: return &fib_lstm_ops;
    case FIB_OP_GRU: return &fib_gru_ops;
    case FIB_OP_LAST_STEP: return &fib_last_step_ops;
    case FIB_OP_ATTEND: return &fib_attend_ops;
    case FIB_OP_NORM: return &fib_norm_ops;
    case FIB_OP_PRODUCT: return &fib_product_ops;
    case FIB_OP_PREPEND: return &fib_prepend_ops;
    case FIB_OP_POSITION_SHIFT: return &fib_position_shift_ops;
    case FIB_OP_SELECT_STEP: return &fib_select_step_ops;
    default: return NULL;
    }
}
