"""Operations that only move units: concatenation, chunks, permutations.

`torch.cat`, `chunk`, `split`, slicing, `view`/`reshape`, `permute`,
`transpose` and `contiguous` compute nothing: each output element is some
element of the inputs. They are followed with labels rather than matched
against patterns. Every unit of a group at every position gets a label
(unit id << 24 | position); the operation runs on the label tensor exactly as
it ran on the example's values (ConcreteTracer), and the labels that come out
say where every unit went. A chain of such operations stays a `Labels` value
until a layer reads it; the labels are then read in the layout that layer
needs (units on dim 1 of an image, or last), and must keep every position
where it was. What they say becomes:

- the same group, when nothing moved (`x.permute(0, 2, 3, 1)` before a
  Linear, and back);
- a "relabel" group otherwise (ShuffleNet's channel shuffle, DenseNet's and
  Inception's concatenations, ShuffleNet's split), made in the library's
  graph of one 0/1 selection dense block per source group and their sums,
  which compute exactly the moved units.

The rebuilt model moves the base's units the same way: it concatenates the
sources' base tensors, brought to the reading layout, and gathers the base
units of the relabel group; the gather is read from the base's selection
blocks (one weight 1 per unit), so a base that is not a pure selection (a
scale-aware colouring folding scales into it) is refused, not rebuilt wrong.
Everything that cannot be read this way (positions that move, batch mixed
with units) raises UnsupportedModelError naming the node.
"""

import numpy as np
import torch
import torch.fx

from ._errors import UnsupportedModelError
from ._values import Value

POSITION_BITS = 24
UNIT_DIM = {"plain": 1, "image": 1, "channels1d": 1, "sequence": 2, "nhwc": 3}
# the layout a value of each rank is read in, first choice first
LAYOUTS_BY_RANK = {2: ("plain",), 3: ("sequence", "channels1d"), 4: ("image", "nhwc")}
# how a group's tensor is brought to another layout with the same positions
CONVERSIONS = {("image", "nhwc"): (0, 2, 3, 1), ("nhwc", "image"): (0, 3, 1, 2)}
# layouts whose positions are read as a sequence by a prepend block of no
# constant positions (an image's patches: flatten(2).transpose(1, 2))
SEQUENCE_OF = ("image", "nhwc", "channels1d")


class Labels:
    """A value made only of moved units: its label tensor (the example's
    shape, int64) and, per group whose units it holds, the fx node whose
    value it read."""

    def __init__(self, labels, sources):
        self.labels = labels
        self.sources = sources  # group id -> fx node name


class LabelTuple:
    """A tuple of Labels (chunk, split)."""

    def __init__(self, items):
        self.items = items


def _positions_of(shape, layout):
    dim = UNIT_DIM[layout]
    return [n for i, n in enumerate(shape) if i not in (0, dim)]


def group_labels(b, group, shape):
    """The label tensor of a group's value laid out as torch holds it."""
    layout = b.layers[group].layout
    offset = b.unit_offset(group)
    dim = UNIT_DIM[layout]
    if len(shape) <= dim:
        return None
    units = torch.arange(shape[dim], dtype=torch.int64) + offset
    positions = _positions_of(shape, layout)
    n_pos = int(np.prod(positions)) if positions else 1
    ushape = [1] * len(shape)
    ushape[dim] = shape[dim]
    pshape = [1] + [n for i, n in enumerate(shape) if i != 0]
    pshape[dim] = 1
    pos = torch.arange(n_pos, dtype=torch.int64).reshape(pshape)
    labels = (units.reshape(ushape) << POSITION_BITS) | pos
    return labels.expand(shape).contiguous()


def to_labels(b, node, arg):
    """The Labels of an argument of a unit-moving operation."""
    v = b.values.get(arg.name) if isinstance(arg, torch.fx.Node) else None
    if isinstance(v, Labels):
        return v
    if v is None or not hasattr(v, "group"):
        b.fail(node, "it moves a value that is not computed from the model input by "
                     "supported layers")
    v = b.value(node, arg)
    if b.layers[v.group].kind == "input":
        b.fail(node, "moving the units of a model input is not supported")
    labels = group_labels(b, v.group, b.shape(arg))
    if labels is None:
        b.fail(node, "its input has no unit dimension")
    return Labels(labels, {v.group: arg.name})


def convert_move(b, node, module=None):
    """A unit-moving operation, run on the labels of its tensor arguments."""
    sources = {}

    def swap(a):
        if not isinstance(a, torch.fx.Node):
            return a
        value = b.values.get(a.name)
        if isinstance(value, LabelTuple):
            for item in value.items:
                sources.update(item.sources)
            return tuple(item.labels for item in value.items)
        if value is None and not torch.is_tensor(b.concrete.get(a.name)):
            return b.concrete.get(a.name)  # an integer: the batch size
        labels = to_labels(b, node, a)
        sources.update(labels.sources)
        return labels.labels

    args = torch.fx.node.map_aggregate(node.args, swap)
    kwargs = torch.fx.node.map_aggregate(node.kwargs, swap)
    try:
        if node.op == "call_method":
            out = getattr(args[0], node.target)(*args[1:], **kwargs)
        else:
            out = node.target(*args, **kwargs)
    except Exception as e:  # noqa: BLE001  the labels cannot follow this call
        b.fail(node, "its units cannot be followed (%s: %s)" % (type(e).__name__, e))
    b.own(node, "moved")
    if isinstance(out, (tuple, list)):
        return LabelTuple([Labels(t, dict(sources)) for t in out])
    if not torch.is_tensor(out) or out.dtype != torch.int64:
        b.fail(node, "it does not only move units")
    return Labels(out, sources)


def _read(labels, layout):
    """The global unit of every unit of a label tensor read in `layout`;
    None when a unit is not one unit at every position and in every sample,
    or a position moved."""
    shape = tuple(labels.shape)
    dim = UNIT_DIM[layout]
    if len(shape) <= dim or len(shape) != {"plain": 2, "image": 4, "nhwc": 4}.get(
            layout, 3):
        return None
    arr = labels.movedim(dim, -1)
    if not bool((arr == arr[:1]).all()):
        return None
    arr = arr[0].reshape(-1, shape[dim])
    unit = arr >> POSITION_BITS
    pos = arr & ((1 << POSITION_BITS) - 1)
    if not bool((unit == unit[:1]).all()):
        return None
    if not bool((pos == torch.arange(arr.shape[0]).unsqueeze(1)).all()):
        return None
    return unit[0].numpy(), arr.shape[0]


def materialise(b, node, arg, labels):
    """The Value of the Labels of fx node `arg`, read by `node`: the same
    group when nothing moved, else a new relabel group. The rebuild emits
    the moved tensor at `arg` (b.relabels)."""
    for layout in LAYOUTS_BY_RANK.get(labels.labels.dim(), ()):
        read = _read(labels.labels, layout)
        if read is None:
            continue
        units, n_pos = read
        parts = [b.unit_owner(int(u)) for u in units]
        groups = []
        for g, _ in parts:
            if g not in groups:
                groups.append(g)
        as_sequence = layout == "sequence" and len(groups) == 1 and \
            b.layers[groups[0]].layout in SEQUENCE_OF
        if any(b.graph.positions(g)[0] * b.graph.positions(g)[1] != n_pos or
               (b.layers[g].layout != layout and not as_sequence and
                (b.layers[g].layout, layout) not in CONVERSIONS) for g in groups):
            continue
        local = np.array([u for _, u in parts], dtype=np.int64)
        info = {"layout": layout, "sources": [(g, labels.sources[g]) for g in groups]}
        previous = b.relabels.get(arg.name)
        if previous is not None:
            if previous["layout"] != layout:
                b.fail(node, "%r is read in two layouts" % arg.name)
            return previous["value"]
        g0 = groups[0]
        if as_sequence:
            if not np.array_equal(local, np.arange(b.layers[g0].width)):
                b.fail(node, "the channels of %r are moved while its positions become a "
                             "sequence; only the sequence of its positions, channels in "
                             "order, is supported" % labels.sources[g0])
            value = _sequence_group(b, node, arg, g0)
            info.update(kind="sequence", layer=b.layers[value.group])
            info["value"] = Value(value.group, value.activated)
            b.relabels[arg.name] = info
            return info["value"]
        if len(groups) == 1 and np.array_equal(local, np.arange(b.layers[g0].width)):
            if b.layers[g0].layout == layout:
                value = b.values[labels.sources[g0]]
                info.update(kind="alias")
            else:
                value = _layout_group(b, node, arg, g0, layout)
                info.update(kind="layout", layer=b.layers[value.group])
        else:
            value = _relabel_group(b, node, arg, layout, groups, parts)
            info.update(kind="gather", layer=b.layers[value.group])
        info["value"] = Value(value.group, value.activated)
        b.relabels[arg.name] = info
        return info["value"]
    b.fail(node, "the units it reads (from %r) were moved in a way no layer can read "
                 "(positions moved, or the batch mixed with units): only "
                 "concatenations, chunks and permutations of units at fixed positions "
                 "are supported" % arg.name)


def _layout_group(b, node, arg, group, layout):
    """The same units in another layout (image <-> channels last): an
    identity per-unit map, so that each group keeps one layout."""
    width = b.layers[group].width
    layer = b.new_layer(node, "relabel", width, [group], name=arg.name + ".layout",
                        layout=layout)
    ones = np.ones(width, dtype=np.float32)
    gid = b.graph.add_affine(group, ones, None, copy=True, name=layer.node)
    return b.added(layer, gid)


def _sequence_group(b, node, arg, group):
    """The positions of an image (or of a 1-D signal) as a sequence of the
    same units, in row-major order: a prepend block of no constant
    positions."""
    width = b.layers[group].width
    layer = b.new_layer(node, "relabel", width, [group], name=arg.name + ".sequence",
                        layout="sequence")
    gid = b.graph.add_prepend(group, np.zeros((0, width)), name=layer.node)
    return b.added(layer, gid)


def to_sequence(ctx, value, layout):
    """A (N, T, C) view of a base tensor of a layout with positions."""
    if layout == "image":
        return ctx.new.call_method("transpose", (
            ctx.new.call_method("flatten", (value, 2)), 1, 2))
    if layout == "channels1d":
        return ctx.new.call_method("transpose", (value, 1, 2))
    if layout == "nhwc":
        return ctx.new.call_method("flatten", (value, 1, 2))
    return value


def _relabel_group(b, node, arg, layout, groups, parts):
    """The moved units as a group: one 0/1 selection dense per source
    group, summed."""
    n = len(parts)
    name = arg.name + ".moved"
    total = None
    for index, g in enumerate(groups):
        select = np.zeros((n, b.layers[g].width), dtype=np.float32)
        for i, (pg, u) in enumerate(parts):
            if pg == g:
                select[i, u] = 1.0
        kind = "relabel" if len(groups) == 1 else "select"
        layer = b.new_layer(node, kind, n, [g], layout=layout,
                            name=name if len(groups) == 1 else "%s.%d" % (name, index))
        b.added(layer, b.graph.add_dense(g, select, None, copy=True, name=layer.node))
        if total is None:
            total = layer
            continue
        last = index == len(groups) - 1
        s = b.new_layer(node, "relabel" if last else "select", n, [total.group, layer.group],
                        layout=layout, name=name if last else "%s.sum%d" % (name, index))
        b.added(s, b.graph.add_sum(total.group, layer.group))
        b.graph.set_name(s.group, s.node)
        total = s
    return Value(total.group, False)


# -- rebuild -----------------------------------------------------------------

def _selection(ctx, group):
    """What each base unit of a relabel group reads: arrays (count, source
    group, source base unit, weight) of its nonzero contributions (the
    first one's source, unit and weight; count says how many there are)."""
    bg = ctx.base_graph
    layer = ctx.net.layers[group]
    if len(layer.sources) == 2:  # a sum of two selections
        index_a, index_b = bg.read_sum(group)
        a = [x[index_a] for x in _selection(ctx, layer.sources[0])]
        b = [x[index_b] for x in _selection(ctx, layer.sources[1])]
        first_b = a[0] == 0
        return (a[0] + b[0],) + tuple(np.where(first_b, y, x) for x, y in zip(a[1:], b[1:]))
    source = layer.sources[0]
    if layer.node.endswith(".layout"):  # an identity per-unit map
        tensors = bg.tensors(group)
        gather = np.asarray(bg.block_params(group), dtype=np.int64)
        if len(gather) == 0:
            gather = np.arange(ctx.width(group))
        scale = np.asarray(tensors["scale"], dtype=np.float64)
        shift = tensors.get("shift")
        count = (scale != 0).astype(np.int64)
        if shift is not None:
            count = count + 2 * (np.asarray(shift) != 0)  # a shift: never a selection
        return count, np.full(len(gather), source), gather, scale
    weight, _ = bg.read_dense(group)
    nonzero = weight != 0
    column = np.argmax(nonzero, axis=1)
    return (nonzero.sum(axis=1), np.full(len(column), source), column,
            weight[np.arange(len(column)), column])


def rebuild_moved(ctx, node):
    """Nothing for a node inside a chain of moves; where a layer reads the
    chain, the sources' base tensors moved as the base says."""
    info = ctx.net.relabels.get(node.name)
    if info is None:
        return None
    layout = info["layout"]
    if info["kind"] == "alias":
        (group, source), = info["sources"]
        return ctx.env[source]
    if info["kind"] == "sequence":  # a prepend block of no positions: gathers
        (group, source), = info["sources"]
        value = to_sequence(ctx, ctx.env[source], ctx.net.layers[group].layout)
        layer = info["layer"]
        return ctx.select(value, ctx.base_graph.block_params(layer.group)[1:], 2, node.name,
                          ctx.width(group))
    dim = UNIT_DIM[layout]
    offsets, tensors, start = {}, [], 0
    for group, source in info["sources"]:
        value = ctx.env[source]
        conversion = CONVERSIONS.get((ctx.net.layers[group].layout, layout))
        if conversion is not None:
            value = ctx.new.call_function(torch.permute, (value, conversion))
        tensors.append(value)
        offsets[group] = start
        start += ctx.width(group)
    layer = info["layer"]
    count, groups, units, weights = _selection(ctx, layer.group)
    if not (np.all(count == 1) and np.all(weights == 1.0)):
        raise UnsupportedModelError(
            "node %r: the base of the moved units %r is not a selection of its sources' "
            "base units (a colouring that scales or averages them), which the rebuilt "
            "model cannot move; compress with an exact or unscaled colouring"
            % (node.name, layer.node))
    gather = np.array([offsets[g] for g in groups], dtype=np.int64) + units
    value = tensors[0] if len(tensors) == 1 else \
        ctx.new.call_function(torch.cat, (tuple(tensors), dim))
    return ctx.select(value, np.array(gather), dim, node.name, start)
