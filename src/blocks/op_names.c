/* What is said of a FIB_OP_* kind before any block of it exists: its name
 * (fib_op_name, for model files, the command and the bindings), how many
 * groups it reads and whether it is a network's (for model files). Kinds
 * are named here, in the blocks layer, since a name stands for a block
 * kind. */
#include "blocks/blocks.h"

static const char *const op_names[] = {
    [FIB_OP_INPUT] = "input",   [FIB_OP_DENSE] = "dense",
    [FIB_OP_SUM] = "sum",       [FIB_OP_CONV] = "conv",
    [FIB_OP_POOL] = "pool",     [FIB_OP_FLATTEN] = "flatten",
    [FIB_OP_AFFINE] = "affine", [FIB_OP_LSTM] = "lstm",
    [FIB_OP_GRU] = "gru",       [FIB_OP_LAST_STEP] = "last_step",
    [FIB_OP_ATTEND] = "attend", [FIB_OP_NORM] = "norm",
    [FIB_OP_NODES] = "nodes",   [FIB_OP_PRODUCT] = "product",
    [FIB_OP_PREPEND] = "prepend", [FIB_OP_POSITION_SHIFT] = "position_shift",
    [FIB_OP_SELECT_STEP] = "select_step",
};

const char *fib_op_name(int32_t op)
{
    return op >= 0 && op < (int32_t)(sizeof op_names / sizeof op_names[0]) ? op_names[op]
                                                                            : NULL;
}

int32_t fib_op_arity(int32_t op)
{
    switch (op) {
    case FIB_OP_INPUT: return 0;
    case FIB_OP_SUM:
    case FIB_OP_PRODUCT: return 2;
    case FIB_OP_ATTEND: return 3;
    default: return 1;
    }
}

bool fib_op_is_network(int32_t op)
{
    return fib_op_name(op) && op != FIB_OP_NODES;
}
