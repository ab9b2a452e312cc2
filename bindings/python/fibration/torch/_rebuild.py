"""Turning a base (fibration.Base) back into an ordinary torch module.

The traced fx graph of the original model is copied node by node. A node
that made C groups is rebuilt from the base's blocks (REBUILDERS, keyed by
the kind its converter recorded): Linear -> smaller nn.Linear, Conv ->
nn.Conv1d/2d (regrouped when the base kernel is block-diagonal), batch norm
-> nn.BatchNorm over the base scale/shift, LSTM/GRU -> nn.LSTM/nn.GRU,
attention -> FiberAttention, LayerNorm -> nn.LayerNorm or WeightedLayerNorm,
Transformer encoder layers -> the same computation node by node. Unit-wise
layers that read a class other than their own (a base gathers) get an
index_select on a registered buffer. Every other node is copied as it is.
The result is a torch.fx.GraphModule whose state_dict keeps the original's
names and which prints as its modules (CompressedModule), or, for an
nn.Sequential whose rebuilt graph is still the chain of its children, an
nn.Sequential of the same shape (as_sequential), which can be indexed.

A new layer kind adds an entry to REBUILDERS.
"""

import copy
import operator
from collections import OrderedDict
import types

import numpy as np
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from . import _constants
from ._modules import FiberAttention, InputClassMean, WeightedLayerNorm
from ._relabel import rebuild_moved
from ._values import CHANNEL_DIM


def _set_submodule(root, qualified, module):
    *parents, leaf = qualified.split(".")
    for name in parents:
        child = getattr(root, name, None)
        if child is None:
            child = nn.Module()
            setattr(root, name, child)
        root = child
    setattr(root, leaf, module)


def _linear_from_base(original, weight, bias):
    out_features, in_features = weight.shape
    # skip_init: no random initialisation of tensors overwritten below
    layer = torch.nn.utils.skip_init(nn.Linear, in_features, out_features,
                                     bias=original.bias is not None,
                                     device=original.weight.device, dtype=original.weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
        if original.bias is not None:
            layer.bias.copy_(torch.from_numpy(bias))
    layer.train(original.training)
    return layer


def _tensor(array, like):
    return torch.from_numpy(np.ascontiguousarray(array)).to(dtype=like.dtype,
                                                            device=like.device)


def rebuild_dense(ctx, node, layer):
    weight, bias = ctx.base_graph.read_dense(layer.group)
    original = ctx.gm.get_submodule(node.target)
    ctx.add_module(node.target, _linear_from_base(original, weight, bias))
    x = ctx.env[node.args[0].name]
    source = layer.sources[0]
    if ctx.net.layers[source].kind == "input" and \
            ctx.width(source) < ctx.net.layers[source].width:
        # merged inputs (a budget's merge_inputs): the base reads class means
        name = node.target + "_input_means"
        ctx.add_module(name, InputClassMean(ctx.base.projection(source),
                                            dtype=original.weight.dtype))
        x = ctx.new.call_module(name, (x,))
    return ctx.new.call_module(node.target, (x,))


def rebuild_flatten_view(ctx, node):
    """x.view(n, -1) after convolutions, as a flatten whose width follows
    the merged channels."""
    return ctx.new.call_function(torch.flatten, (ctx.env[node.args[0].name], 1))


def rebuild_product(ctx, node, layer, factors):
    """The gathered factors multiplied (the broadcast gate second)."""
    return ctx.add_gathered(ctx.env[factors[0]], ctx.env[factors[1]], layer, torch.mul)


def rebuild_sum(ctx, node, layer):
    args = [a for a in node.args if isinstance(a, torch.fx.Node)] + \
        [a for a in node.kwargs.values() if isinstance(a, torch.fx.Node)]
    return ctx.add_gathered(ctx.env[args[0].name], ctx.env[args[1].name], layer)


def _block_groups(weight, groups):
    """(groups, weight) of a base convolution the library stored ungrouped
    (it keeps a grouped original's groups itself when it can): when its
    kernel is block-diagonal in the original's `groups` blocks, the grouped
    form (fewer parameters) is returned. A depthwise original stays
    depthwise when its merged base kernel is diagonal."""
    out_ch, in_ch = weight.shape[:2]
    if groups > 1 and (out_ch % groups or in_ch % groups) and out_ch == in_ch:
        groups = in_ch  # depthwise with merged channels: try one per channel
    if groups <= 1 or out_ch % groups or in_ch % groups:
        return 1, weight
    o, i = out_ch // groups, in_ch // groups
    blocks = []
    for g in range(groups):
        rows = weight[g * o:(g + 1) * o]
        outside = np.concatenate([rows[:, :g * i], rows[:, (g + 1) * i:]], axis=1)
        if np.any(outside != 0):
            return 1, weight
        blocks.append(rows[:, g * i:(g + 1) * i])
    return groups, np.concatenate(blocks, axis=0)


def rebuild_conv(ctx, node, layer):
    original = ctx.gm.get_submodule(node.target)
    # read in the model's dtype when the library has it: the same rounding
    # as converting afterwards, without a float64 copy of the kernels
    tensors = ctx.base_graph.tensors(
        layer.group, "float32" if original.weight.dtype == torch.float32 else "float64")
    kr, kc, sr, sc, pr, pc, stored = ctx.base_graph.block_params(layer.group)[:7]
    if stored > 1:  # a grouped block as users build it (a model file read back)
        groups, weight = int(stored), tensors["weight"]
    else:
        groups, weight = _block_groups(tensors["weight"], original.groups)
    out_ch, in_ch = weight.shape[0], weight.shape[1] * groups
    has_bias = original.bias is not None
    like = original.weight
    if isinstance(original, nn.Conv1d):
        conv = torch.nn.utils.skip_init(nn.Conv1d, in_ch, out_ch, int(kc), stride=int(sc),
                                        padding=int(pc), groups=groups, bias=has_bias,
                                        dtype=like.dtype, device=like.device)
        weight = weight[:, :, 0, :]
    else:  # skip_init: no random initialisation of tensors overwritten below
        conv = torch.nn.utils.skip_init(nn.Conv2d, in_ch, out_ch, (int(kr), int(kc)),
                                        stride=(int(sr), int(sc)), padding=(int(pr), int(pc)),
                                        groups=groups, bias=has_bias, dtype=like.dtype,
                                        device=like.device)
    with torch.no_grad():
        conv.weight.copy_(_tensor(weight, like))
        if has_bias:
            conv.bias.copy_(_tensor(tensors["bias"], like))
    conv.train(original.training)
    ctx.add_module(node.target, conv)
    return ctx.new.call_module(node.target, (ctx.env[node.args[0].name],))


def _class_batch_norm(original, projection, n):
    """The original batch norm restricted to one channel per class (its
    weight, bias and running statistics), when every class's channels agree
    on all of them: it then trains as the original does (equal inputs give
    equal batch statistics). None when some class disagrees."""
    projection = np.asarray(projection, dtype=np.int64)
    classes, first = np.unique(projection, return_index=True)  # each class's first channel
    if not np.array_equal(classes, np.arange(n)):
        return None
    index = torch.from_numpy(first).to(original.running_mean.device)
    representative = index[torch.from_numpy(projection).to(index.device)]
    names = ("weight", "bias", "running_mean", "running_var")
    tensors = {k: getattr(original, k).detach() for k in names
               if getattr(original, k) is not None}
    if any(not torch.equal(t, t[representative]) for t in tensors.values()):
        return None
    like = original.running_mean
    norm = type(original)(n, eps=original.eps, momentum=original.momentum,
                          affine=original.affine, track_running_stats=True,
                          dtype=like.dtype, device=like.device)
    with torch.no_grad():
        for k, t in tensors.items():
            getattr(norm, k).copy_(t[index])
        norm.num_batches_tracked.copy_(original.num_batches_tracked)
    return norm


def rebuild_affine(ctx, node, layer, batch_norm=False):
    """Batch norm kept as batch norm. From a traced batch norm whose merged
    channels agree on weight, bias and statistics: the same batch norm, one
    channel per class. Otherwise (or from a model file's scale and shift):
    the base's scale and shift become its weight and bias over running
    statistics mean 0, variance 1 - eps, which is the original in eval mode
    only (recorded in ctx.warnings for a traced batch norm)."""
    original = ctx.gm.get_submodule(node.target)
    tensors = ctx.base_graph.tensors(layer.group)
    n = ctx.width(layer.group)
    like = original.running_mean
    norm = _class_batch_norm(original, ctx.base.projection(layer.group), n) \
        if batch_norm else None
    if norm is None:
        norm = type(original)(n, eps=original.eps, momentum=original.momentum, affine=True,
                              track_running_stats=True, dtype=like.dtype, device=like.device)
        with torch.no_grad():
            norm.weight.copy_(_tensor(tensors["scale"], like))
            norm.bias.copy_(_tensor(tensors.get("shift", np.zeros(n)), like))
            norm.running_mean.zero_()
            norm.running_var.copy_(_tensor(np.full(n, 1.0 - original.eps), like))
        if batch_norm:
            ctx.warnings.append(
                "batch norm %r: channels merged into one class differ in weight, bias or "
                "running statistics, so it is rebuilt as a fixed scale and shift (running "
                "mean 0, variance 1 - eps): the original's outputs in eval mode, but in "
                "train mode it normalises with the batch's statistics and differs from the "
                "original; fine-tune with it in eval mode, or compress with eps=0"
                % node.target)
    norm.train(original.training)
    x = ctx.select(ctx.env[node.args[0].name], ctx.base_graph.block_params(layer.group),
                   1, node.name, ctx.width(layer.sources[0]))
    ctx.add_module(node.target, norm)
    return ctx.new.call_module(node.target, (x,))


def rebuild_pool(ctx, node, layer):
    """The same pooling (module, function or x.mean) of the gathered input."""
    x = ctx.select(ctx.env[node.args[0].name], ctx.base_graph.block_params(layer.group)[7:],
                   1, node.name, ctx.width(layer.sources[0]))
    if node.op != "call_module":
        source = node.args[0]
        return ctx.new.node_copy(node, lambda n: x if n is source else ctx.env[n.name])
    ctx.add_module(node.target, copy.deepcopy(ctx.gm.get_submodule(node.target)))
    return ctx.new.call_module(node.target, (x,))


def rebuild_last_step(ctx, node, layer):
    # the block's params are its gather (the source unit each unit copies);
    # a library that gives none is read through the projections, as the
    # library derives it (the source class of each class's first member)
    step = ctx.new.node_copy(node, lambda n: ctx.env[n.name])
    gather = ctx.base_graph.block_params(layer.group)
    if len(gather) == 0:
        gather = ctx.derived_gather(layer)
    return ctx.select(step, gather, 1, node.name, ctx.width(layer.sources[0]))


def rebuild_recurrent(ctx, node, layers, cell):
    """One nn.LSTM / nn.GRU when every layer keeps one width, else one
    single-layer module per layer ("<name>_l<i>") chained in the graph."""
    original = ctx.gm.get_submodule(node.target)
    cls = nn.LSTM if cell == "lstm" else nn.GRU
    widths = [ctx.width(l.group) for l in layers]
    like = original.weight_ih_l0
    x = ctx.env[node.args[0].name]
    in_size = ctx.width(layers[0].sources[0])

    def make(input_size, hidden, num_layers):
        return cls(input_size, hidden, num_layers=num_layers, bias=original.bias,
                   batch_first=True, dropout=original.dropout if num_layers > 1 else 0.0,
                   dtype=like.dtype, device=like.device)

    def fill(module, index, layer):
        tensors = ctx.base_graph.tensors(layer.group)
        with torch.no_grad():
            for name, value in tensors.items():
                getattr(module, "%s_l%d" % (name, index)).copy_(_tensor(value, like))
        module.train(original.training)

    if len(set(widths)) == 1:
        module = make(in_size, widths[0], len(layers))
        for index, layer in enumerate(layers):
            fill(module, index, layer)
        ctx.add_module(node.target, module)
        return ctx.new.call_module(node.target, (x,))
    out = None
    for index, layer in enumerate(layers):
        module = make(in_size if index == 0 else widths[index - 1], widths[index], 1)
        fill(module, 0, layer)
        name = "%s_l%d" % (node.target, index)
        ctx.add_module(name, module)
        out = ctx.new.call_module(name, (x,))
        x = ctx.new.call_function(operator.getitem, (out, 0))
    return out


def _linear(weight, bias, like):
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                      dtype=like.dtype, device=like.device)
    with torch.no_grad():
        layer.weight.copy_(_tensor(weight, like))
        if bias is not None:
            layer.bias.copy_(_tensor(bias, like))
    return layer


def attention_module(ctx, layers, original):
    """A FiberAttention from the five base groups (q, k, v, core, out)."""
    bg = ctx.base_graph
    like = original.in_proj_weight
    projections = []
    for layer in (layers[0], layers[1], layers[2], layers[4]):
        weight, bias = bg.read_dense(layer.group)
        projections.append(_linear(weight, bias if bg.group(layer.group).has_bias else None,
                                   like))
    core = layers[3].group
    params = bg.block_params(core)
    heads = int(params[0])
    per_head = params[1:1 + heads]
    n_pairs = int(per_head.sum())
    pairs = params[1 + heads:1 + heads + 2 * n_pairs].reshape(-1, 2)
    units = params[1 + heads + 2 * n_pairs:].reshape(-1, 2)
    mult = bg.tensors(core)["pair_multiplicity"]
    standard = _standard_attention(bg, layers, projections, heads, per_head, pairs, units,
                                   mult, bg.block_scalar(core), like)
    if standard is not None:
        standard.train(original.training)
        return standard
    module = FiberAttention(*projections, pairs[:, 0], pairs[:, 1], mult, per_head,
                            units[:, 0], units[:, 1], bg.block_scalar(core))
    module.train(original.training)
    return module.to(like.device)


def _standard_attention(bg, layers, projections, heads, per_head, pairs, units, mult,
                        scale, like):
    """nn.MultiheadAttention when nothing merged (every q/k dimension its own
    pair of multiplicity 1, heads of equal width, the standard scale), else
    None."""
    e = bg.group(layers[0].group).n_units
    widths = {bg.group(l.group).n_units for l in layers} | \
        {bg.group(layers[0].sources[0]).n_units}
    if widths != {e} or e % heads:
        return None
    d = e // heads
    ids = np.arange(e)
    if not (np.all(per_head == d) and np.array_equal(pairs[:, 0], ids)
            and np.array_equal(pairs[:, 1], ids) and np.all(mult == 1)
            and np.array_equal(units[:, 0], ids // d) and np.array_equal(units[:, 1], ids)
            and abs(scale * np.sqrt(d) - 1.0) < 1e-12):
        return None
    biases = [p.bias is not None for p in projections]
    if len(set(biases)) != 1:
        return None
    mha = nn.MultiheadAttention(e, heads, bias=biases[0], batch_first=True,
                                dtype=like.dtype, device=like.device)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([p.weight for p in projections[:3]]))
        mha.out_proj.weight.copy_(projections[3].weight)
        if biases[0]:
            mha.in_proj_bias.copy_(torch.cat([p.bias for p in projections[:3]]))
            mha.out_proj.bias.copy_(projections[3].bias)
    return mha


def rebuild_attention(ctx, node, layers):
    ctx.add_module(node.target, attention_module(ctx, layers, ctx.gm.get_submodule(node.target)))
    query = node.args[0] if node.args else node.kwargs["query"]  # mha(query=x, ...)
    x = ctx.env[query.name]
    return ctx.new.call_module(node.target, (x, x, x))


def norm_module(ctx, layer, original):
    """nn.LayerNorm when nothing merged, else a WeightedLayerNorm."""
    bg = ctx.base_graph
    tensors = bg.tensors(layer.group)
    gather = bg.block_params(layer.group)[1:]
    mult = tensors["multiplicity"]
    like = original.weight if original.weight is not None else torch.zeros(
        1, dtype=torch.get_default_dtype())
    weight = _tensor(tensors["weight"], like) if "weight" in tensors else None
    bias = _tensor(tensors["bias"], like) if "bias" in tensors else None
    n = len(mult)
    identity = len(gather) == n and np.array_equal(gather, np.arange(n)) and \
        ctx.width(layer.sources[0]) == n
    if identity and np.all(mult == 1):
        norm = nn.LayerNorm(n, eps=bg.block_scalar(layer.group),
                            elementwise_affine=weight is not None, dtype=like.dtype,
                            device=like.device)
        if weight is not None:
            with torch.no_grad():
                norm.weight.copy_(weight)
                norm.bias.copy_(bias if bias is not None else torch.zeros_like(weight))
    else:
        norm = WeightedLayerNorm(mult, weight, bias, bg.block_scalar(layer.group),
                                 None if identity else gather)
    norm.train(original.training)
    return norm


def rebuild_norm(ctx, node, layer):
    ctx.add_module(node.target, norm_module(ctx, layer, ctx.gm.get_submodule(node.target)))
    return ctx.new.call_module(node.target, (ctx.env[node.args[0].name],))


def rebuild_norm_function(ctx, node, layer, module_name, like):
    """F.layer_norm over the model's weights -> a module under the weights'
    owner's name (its state_dict keys stay), reading the same input."""
    original = types.SimpleNamespace(
        weight=like, training=ctx.net.model.training)
    ctx.add_module(module_name, norm_module(ctx, layer, original))
    return ctx.new.call_module(module_name, (ctx.env[node.args[0].name],))


def _original_constant(ctx, target):
    owner, _, attr = target.rpartition(".")
    return getattr(ctx.gm.get_submodule(owner) if owner else ctx.gm, attr)


def register_constant(ctx, target, value):
    """Holds `value` (a tensor or an array) under the original's parameter or
    buffer name `target`, as the original holds it; returns its get_attr
    node."""
    like = _original_constant(ctx, target)
    if not torch.is_tensor(value):
        value = _tensor(value, like)
    owner, _, attr = target.rpartition(".")
    parameter = nn.Parameter(value, requires_grad=like.requires_grad) \
        if isinstance(like, nn.Parameter) else value
    holder = ctx.root
    for part in owner.split(".") if owner else []:
        if not hasattr(holder, part):
            setattr(holder, part, nn.Module())
        holder = getattr(holder, part)
    if isinstance(parameter, nn.Parameter):
        holder.register_parameter(attr, parameter)
    else:
        holder.register_buffer(attr, parameter)
    return ctx.new.get_attr(target)


def rebuild_scale(ctx, node, layer, target, shape, scale_first):
    """A layer scale: the base's per-unit scale as the model's parameter
    (same name, the base's width) times the gathered input."""
    tensors = ctx.base_graph.tensors(layer.group)
    x = ctx.env[[a for a in node.args if isinstance(a, torch.fx.Node)][1 if scale_first
                                                                         else 0].name]
    x = ctx.select(x, ctx.base_graph.block_params(layer.group), CHANNEL_DIM[layer.layout],
                   node.name, ctx.width(layer.sources[0]))
    like = _original_constant(ctx, target)
    width = ctx.net.layers[layer.sources[0]].width
    new_shape = [ctx.width(layer.group) if s == width else 1 for s in shape]
    scale = register_constant(ctx, target, _tensor(tensors["scale"], like).reshape(new_shape))
    return ctx.new.call_function(operator.mul, (scale, x) if scale_first else (x, scale))


def _encoder_layer(ctx, x, roles, original, prefix):
    """Emits one Transformer encoder layer from its base groups."""
    layers = ctx.net.layers

    def attention(inp):
        ctx.add_module(prefix + ".self_attn",
                       attention_module(ctx, roles["attn"], original.self_attn))
        out = ctx.new.call_module(prefix + ".self_attn", (inp, inp, inp))
        return ctx.new.call_function(operator.getitem, (out, 0))

    def norm(inp, role):
        ctx.add_module(prefix + "." + role,
                       norm_module(ctx, roles[role], getattr(original, role)))
        return ctx.new.call_module(prefix + "." + role, (inp,))

    def feed_forward(inp):
        for role in ("linear1", "linear2"):
            weight, bias = ctx.base_graph.read_dense(roles[role].group)
            ctx.add_module(prefix + "." + role,
                           _linear_from_base(getattr(original, role), weight, bias))
            inp = ctx.new.call_module(prefix + "." + role, (inp,))
            if role == "linear1":
                act = F.relu if roles[role].activation == "relu" else F.gelu
                inp = ctx.new.call_function(act, (inp,))
        return inp

    if original.norm_first:
        a = attention(norm(x, "norm1"))
        s1 = ctx.add_gathered(x, a, layers[roles["add1"]])
        return ctx.add_gathered(s1, feed_forward(norm(s1, "norm2")), layers[roles["add2"]])
    s1 = ctx.add_gathered(x, attention(x), layers[roles["add1"]])
    n1 = norm(s1, "norm1")
    s2 = ctx.add_gathered(n1, feed_forward(n1), layers[roles["add2"]])
    return norm(s2, "norm2")


def rebuild_encoder(ctx, node, layers, norm):
    original = ctx.gm.get_submodule(node.target)
    x = ctx.env[node.args[0].name]
    if isinstance(original, nn.TransformerEncoderLayer):
        return _encoder_layer(ctx, x, layers[0], original, node.target)
    for i, roles in enumerate(layers):
        x = _encoder_layer(ctx, x, roles, original.layers[i], "%s.layers.%d" % (node.target, i))
    if norm is not None:
        ctx.add_module(node.target + ".norm", norm_module(ctx, norm, original.norm))
        x = ctx.new.call_module(node.target + ".norm", (x,))
    return x


REBUILDERS = {"dense": rebuild_dense, "sum": rebuild_sum, "conv": rebuild_conv,
              "affine": rebuild_affine, "pool": rebuild_pool, "last_step": rebuild_last_step,
              "recurrent": rebuild_recurrent, "attention": rebuild_attention,
              "norm": rebuild_norm, "encoder": rebuild_encoder, "moved": rebuild_moved,
              "product": rebuild_product, "flatten_view": rebuild_flatten_view,
              "norm_function": rebuild_norm_function, "scale": rebuild_scale}
REBUILDERS.update(_constants.REBUILDERS)


class _Context:
    def __init__(self, net, base):
        self.net = net
        self.gm = net.gm
        self.base = base
        self.base_graph = base.graph
        self.new = torch.fx.Graph()
        self.env = {}
        self.root = nn.Module()
        self.modules = set()
        self.warnings = []  # what the rebuilt model does not reproduce (train mode)

    def add_module(self, qualified, module):
        _set_submodule(self.root, qualified, module)
        self.modules.add(qualified)

    def add_buffer(self, name, tensor):
        name = name.replace(".", "_")
        while hasattr(self.root, name):
            name += "_"
        self.root.register_buffer(name, tensor)
        return self.new.get_attr(name)

    def register_constant(self, target, value):
        """register_constant for the rebuilders of lower modules, which
        cannot import this one."""
        return register_constant(self, target, value)

    def width(self, group):
        return self.base_graph.group(group).n_units

    def select(self, value, index, dim, name, source_width=None):
        """value.index_select(dim, index), or value when index is the identity
        over value's source_width units."""
        if index is None:
            return value
        index = np.asarray(index, dtype=np.int64)
        if np.array_equal(index, np.arange(len(index))) and \
                source_width in (None, len(index)):
            return value
        buffer = self.add_buffer("%s_gather" % name, torch.from_numpy(index))
        return self.new.call_function(torch.index_select, (value, dim, buffer))

    def add_gathered(self, a, b, layer, combine=torch.add):
        """a + b for a base sum group (combine(a, b) for a product), gathering
        each operand as it needs."""
        index_a, index_b = self.base_graph.read_sum(layer.group)
        dim = CHANNEL_DIM[layer.layout]
        operands = []
        for value, index, source in zip((a, b), (index_a, index_b), layer.sources):
            width = self.width(source)
            if len(index) != width or not np.array_equal(index, np.arange(width)):
                buffer = self.add_buffer("%s_gather_%d" % (layer.node, len(operands)),
                                         torch.from_numpy(index.astype(np.int64)))
                value = self.new.call_function(torch.index_select, (value, dim, buffer))
            operands.append(value)
        return self.new.call_function(combine, tuple(operands))

    def derived_gather(self, layer):
        """For a unit-wise layer: the source unit each base unit reads (the
        source's base unit of the class's first member)."""
        own = self.base.projection(layer.group)
        source = self.base.projection(layer.sources[0])
        gather = np.zeros(self.width(layer.group), np.int64)
        seen = np.zeros(len(gather), bool)
        for i, c in enumerate(own):
            if not seen[c]:
                seen[c], gather[c] = True, source[i]
        if len(gather) == self.width(layer.sources[0]) and \
                np.array_equal(gather, np.arange(len(gather))):
            return None
        return gather


class CompressedModule(torch.fx.GraphModule):
    """A rebuilt model: a GraphModule that prints as its modules, like any
    nn.Module (the generated forward is `.code`)."""

    def __str__(self):
        return nn.Module.__repr__(self)


def _sequential_leaves(model, prefix=""):
    """Qualified names of an nn.Sequential's children in call order, nested
    plain nn.Sequentials flattened; None for a subclass (its forward may do
    more than chain its children)."""
    if type(model) is not nn.Sequential:
        return None
    names = []
    for name, child in model.named_children():
        if type(child) is nn.Sequential:
            inner = _sequential_leaves(child, prefix + name + ".")
            if inner is None:
                return None
            names += inner
        else:
            names.append(prefix + name)
    return names


def _chain_of(original, rebuilt, prefix):
    """An nn.Sequential shaped like `original` holding rebuilt's modules."""
    return nn.Sequential(OrderedDict(
        (name, _chain_of(child, rebuilt, prefix + name + ".") if type(child) is nn.Sequential
         else rebuilt.get_submodule(prefix + name))
        for name, child in original.named_children()))


def as_sequential(original, rebuilt):
    """rebuilt as a copy of the nn.Sequential `original` with the rebuilt
    children in place, when rebuilt's graph is exactly the chain of
    original's children (one input, each child reading the one before, no
    gather or added module); else None."""
    leaves = _sequential_leaves(original)
    if leaves is None:
        return None
    nodes = list(rebuilt.graph.nodes)
    if len(nodes) != len(leaves) + 2 or nodes[0].op != "placeholder" or \
            nodes[-1].op != "output" or nodes[-1].args != (nodes[-2],):
        return None
    previous = nodes[0]
    for node, name in zip(nodes[1:-1], leaves):
        if node.op != "call_module" or node.target != name or node.args != (previous,) \
                or node.kwargs:
            return None
        previous = node
    chain = _chain_of(original, rebuilt, "")
    if dict(chain.named_buffers()).keys() != dict(rebuilt.named_buffers()).keys():
        return None
    chain.train(rebuilt.training)
    return chain


def rebuild(net, base, class_name):
    """The compressed nn.Module for a traced network and its base: an
    nn.Sequential for an nn.Sequential that stays a chain, else a
    CompressedModule named class_name."""
    ctx = _Context(net, base)
    for node in net.gm.graph.nodes:
        owner = net.owners.get(node.name)
        if owner is not None:
            kind, info = owner
            ctx.env[node.name] = REBUILDERS[kind](ctx, node, **info)
            continue
        if node.op == "call_module" and node.target not in ctx.modules:
            ctx.add_module(node.target, copy.deepcopy(net.gm.get_submodule(node.target)))
        ctx.env[node.name] = ctx.new.node_copy(node, lambda n: ctx.env[n.name])
    module = CompressedModule(ctx.root, ctx.new, class_name=class_name)
    module.train(net.model.training)
    chain = as_sequential(net.model, module)
    if chain is not None:
        module = chain
    module._fibration_warnings = ctx.warnings
    return module
