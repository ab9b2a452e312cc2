"""Tensors stored on the model that enter the data flow: a Vision
Transformer's class token and position embedding, and the position it
classifies from.

- `token.expand(n, -1, -1)` of a parameter of shape (1, k, C) stays a
  Constant (broadcast over the batch);
- `torch.cat([token, x], dim=1)` of that constant and a sequence (or of the
  patches of an image, x.flatten(2).transpose(1, 2) or the equivalent
  reshape and permute) -> fib_graph_add_prepend: k constant positions
  before x's positions;
- `x + embedding` with a parameter broadcast over the batch ->
  fib_graph_add_position_shift (a constant per unit and position);
- `x[:, k]` of a sequence -> fib_graph_add_select_step (x[:, -1] stays the
  last step).

The rebuilt model holds the base's constants under the original's names and
shapes (with fewer units), so its state dict reads like the original's.
"""

import operator

import numpy as np
import torch
import torch.fx

from . import _relabel
from ._values import CHANNEL_DIM, Constant, Value


def constant_of(b, arg):
    value = b.values.get(arg.name) if isinstance(arg, torch.fx.Node) else None
    return value if isinstance(value, Constant) else None


def _float_tensor(b, node, tensor):
    if tensor.dtype not in (torch.float32, torch.float64):
        b.fail(node, "a tensor of dtype %s; libfibration reads float32 and float64"
               % tensor.dtype)
    return tensor.detach()


# -- expand ------------------------------------------------------------------

def convert_expand(b, node, module=None):
    """token.expand(n, -1, -1): the parameter broadcast over the batch, kept
    as a Constant for the concatenation that reads it."""
    constant = constant_of(b, node.args[0])
    out = b.shape(node)
    if constant is None:
        b.fail(node, "expanding a layer's output is not supported (only a tensor "
                     "stored on the model, broadcast over the batch: a class token)")
    shape = tuple(constant.tensor.shape)
    if out is None or len(shape) != len(out) or shape[0] != 1 or tuple(out[1:]) != shape[1:]:
        b.fail(node, "expands %r of shape %s to %s: only a broadcast over the batch "
                     "(the first dimension, of size 1) is supported"
                     % (constant.target, shape, tuple(out or ())))
    b.own(node, "moved")
    return Constant(constant.target, constant.tensor, batch_expanded=True)


# -- concatenation with constant positions (class token) ---------------------

def _positions_of_labels(b, node, arg, labels):
    """(group, fx node) when the Labels are every unit of one group, in
    order, at its positions in row-major order as a (N, T, C) sequence."""
    read = _relabel._read(labels.labels, "sequence")
    if read is not None:
        units, n_pos = read
        parts = [b.unit_owner(int(u)) for u in units]
        group = parts[0][0]
        rows, cols = b.graph.positions(group)
        if all(g == group for g, _ in parts) and rows * cols == n_pos and \
                np.array_equal([u for _, u in parts], np.arange(b.layers[group].width)):
            return group, labels.sources[group]
    value = b.value(node, arg)  # moved units: a relabel group, in sequence layout
    return value.group, arg.name


def convert_cat(b, node, module=None):
    """torch.cat with a class token: fib_graph_add_prepend; any other
    concatenation only moves units (_relabel)."""
    tensors = node.args[0] if node.args else node.kwargs.get("tensors")
    if not isinstance(tensors, (list, tuple)) or \
            not any(constant_of(b, t) is not None for t in tensors):
        return _relabel.convert_move(b, node)
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    out = b.shape(node)
    constant = constant_of(b, tensors[0])
    if len(tensors) != 2 or constant is None or constant_of(b, tensors[1]) is not None or \
            out is None or len(out) != 3 or dim not in (1, -2):
        b.fail(node, "concatenates tensors stored on the model: only "
                     "torch.cat([constant, x], dim=1) of a constant (1, k, C) broadcast "
                     "over the batch before a (N, T, C) sequence (a class token) is "
                     "supported")
    x = tensors[1]
    v = b.values.get(x.name) if isinstance(x, torch.fx.Node) else None
    if isinstance(v, _relabel.Labels):
        group, source = _positions_of_labels(b, node, x, v)
    else:
        value = b.value(node, x)
        group, source = value.group, x.name
        if b.layers[group].layout != "sequence":
            b.fail(node, "a class token before a %s tensor: a (batch, time, features) "
                         "sequence is needed" % b.layers[group].layout)
    if b.layers[group].kind == "input":
        b.fail(node, "a class token before a model input has no group to belong to")
    tensor = _float_tensor(b, node, constant.tensor)
    width = b.layers[group].width
    if tensor.dim() != 3 or tensor.shape[0] != 1 or tensor.shape[2] != width or \
            out[1] != tensor.shape[1] + b.graph.positions(group)[0] * b.graph.positions(group)[1]:
        b.fail(node, "a constant of shape %s before %d units: a (1, k, %d) tensor is "
                     "needed" % (tuple(tensor.shape), width, width))
    values = tensor.reshape(tensor.shape[1], width)
    layer = b.new_layer(node, "prepend", width, [group], module=constant.target,
                        layout="sequence")
    gid = b.graph.add_prepend(group, values, name=node.name)
    b.own(node, "prepend", layer=layer, source=source, target=constant.target,
          expanded=constant.batch_expanded)
    return b.added(layer, gid)


# -- a constant added over the batch (position embeddings) -------------------

def convert_add_constant(b, node, x, constant):
    """x + constant, the constant broadcast over the batch only:
    fib_graph_add_position_shift with the constant at every position."""
    v = b.value(node, x)
    layer_in = b.layers[v.group]
    shape, tensor = b.shape(x), _float_tensor(b, node, constant.tensor)
    if shape is None or b.shape(node) != shape or \
            not _over_the_batch_only(tuple(tensor.shape), shape):
        b.fail(node, "adds a tensor stored on the model of shape %s to a value of shape "
                     "%s: only a constant broadcast over the batch (a position embedding) "
                     "is supported" % (tuple(tensor.shape), shape))
    if layer_in.kind == "input":
        b.fail(node, "a constant added to a model input has no group to belong to")
    dim = CHANNEL_DIM[layer_in.layout]
    full = tensor.expand((1,) + tuple(shape[1:]))[0]          # shape without the batch
    shift = full.movedim(dim - 1, -1).reshape(-1, layer_in.width)  # positions x units
    layer = b.new_layer(node, "position_shift", layer_in.width, [v.group],
                        module=constant.target)
    gid = b.graph.add_position_shift(v.group, shift, name=node.name)
    b.own(node, "position_shift", layer=layer, source=x.name, target=constant.target,
          shape=tuple(tensor.shape), x_shape=tuple(shape), constant_first=node.args[0] is not x)
    return b.added(layer, gid)


def _over_the_batch_only(constant_shape, shape):
    """Whether a constant of constant_shape added to a value of `shape`
    broadcasts over the batch and nowhere beyond the value's own shape."""
    sample = (1,) + tuple(shape[1:])
    try:
        return len(constant_shape) <= len(shape) and \
            torch.broadcast_shapes(tuple(constant_shape), sample) == sample
    except RuntimeError:
        return False


# -- x[:, k] -------------------------------------------------------------------

def step_index(index):
    """k for x[:, k] or x[:, k, :] (an int), else None."""
    if not isinstance(index, tuple) or len(index) not in (2, 3):
        return None
    full = slice(None, None, None)
    if index[0] != full or not isinstance(index[1], int) or isinstance(index[1], bool) or \
            (len(index) == 3 and index[2] != full):
        return None
    return index[1]


def convert_select_step(b, node, arg, position):
    v = b.value(node, arg)
    layer = b.new_layer(node, "select_step", b.layers[v.group].width, [v.group],
                        layout="plain")
    b.own(node, "select_step", layer=layer)
    return b.added(layer, b.graph.add_select_step(v.group, position, name=node.name))


# -- rebuild -------------------------------------------------------------------

def _constant_like(ctx, target, array, shape):
    """The base's constant as the original's parameter or buffer `target`,
    of the original's shape with the base's units."""
    return ctx.register_constant(target, array.reshape(shape))


def rebuild_prepend(ctx, node, layer, source, target, expanded):
    bg = ctx.base_graph
    params = bg.block_params(layer.group)
    k, gather = int(params[0]), params[1:]
    x = _relabel.to_sequence(ctx, ctx.env[source], ctx.net.layers[layer.sources[0]].layout)
    x = ctx.select(x, gather, 2, node.name, ctx.width(layer.sources[0]))
    if k == 0:  # only the positions as a sequence (a model file's relabel)
        return x
    width = ctx.width(layer.group)
    token = _constant_like(ctx, target, bg.tensors(layer.group)["values"], (1, k, width))
    if expanded:
        batch = ctx.new.call_method("size", (x, 0))
        token = ctx.new.call_method("expand", (token, batch, -1, -1))
    return ctx.new.call_function(torch.cat, ((token, x),), {"dim": 1})


def rebuild_position_shift(ctx, node, layer, source, target, shape, x_shape,
                           constant_first):
    """x + the base's shifts, held as the original's constant: of its shape
    (broadcast dimensions kept at 1) with the base's units."""
    bg = ctx.base_graph
    x = ctx.select(ctx.env[source], bg.block_params(layer.group), CHANNEL_DIM[layer.layout],
                   node.name, ctx.width(layer.sources[0]))
    width = ctx.width(layer.group)
    dim = CHANNEL_DIM[layer.layout] - 1                  # the unit axis without the batch
    full_shape = list(x_shape[1:])
    full_shape[dim] = width
    moved = full_shape[:dim] + full_shape[dim + 1:] + [width]
    full = np.moveaxis(np.asarray(bg.tensors(layer.group)["shift"]).reshape(moved), -1, dim)
    n, c = len(x_shape), len(shape)
    # where the original broadcasts (size 1 or absent), every value is equal: keep one
    keep = tuple(slice(None) if d - (n - c) >= 0 and shape[d - (n - c)] != 1 else slice(0, 1)
                 for d in range(1, n))
    full = full[keep]
    new_shape = tuple(1 if j + n - c == 0 else full.shape[j + n - c - 1] for j in range(c))
    constant = _constant_like(ctx, target, full, new_shape)
    return ctx.new.call_function(operator.add, (constant, x) if constant_first else (x, constant))


def rebuild_select_step(ctx, node, layer):
    step = ctx.new.node_copy(node, lambda n: ctx.env[n.name])
    gather = ctx.base_graph.block_params(layer.group)[1:]
    return ctx.select(step, gather, 1, node.name, ctx.width(layer.sources[0]))


def rebuild_constant(ctx, node):
    """A tensor stored on the model: emitted by the block that reads it."""
    return None


REBUILDERS = {"prepend": rebuild_prepend, "position_shift": rebuild_position_shift,
              "select_step": rebuild_select_step, "constant": rebuild_constant}
