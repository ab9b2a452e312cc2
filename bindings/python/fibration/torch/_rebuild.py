"""Turning a base (fibration.Base) back into an ordinary torch module.

The traced fx graph of the original model is copied node by node: every
nn.Linear becomes a smaller nn.Linear holding the base weights (same
qualified name), every other node is copied as it is, and a residual sum
whose base gathers (z = a[idx_a] + b[idx_b]) gets an index_select on the
operands that need it. The result is a torch.fx.GraphModule made of
standard torch layers, whose state_dict has the original's names.

A new layer kind adds an entry to REBUILDERS (fx node kind -> function).
"""

import copy

import numpy as np
import torch
import torch.fx
import torch.nn as nn


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
    layer = nn.Linear(in_features, out_features, bias=original.bias is not None,
                      device=original.weight.device, dtype=original.weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
        if original.bias is not None:
            layer.bias.copy_(torch.from_numpy(bias))
    layer.train(original.training)
    return layer


def rebuild_dense(ctx, node, layer):
    weight, bias = ctx.base_graph.read_dense(layer.group)
    original = ctx.gm.get_submodule(node.target)
    ctx.add_module(node.target, _linear_from_base(original, weight, bias))
    return ctx.new.call_module(node.target, (ctx.env[node.args[0].name],))


def rebuild_sum(ctx, node, layer):
    index_a, index_b = ctx.base_graph.read_sum(layer.group)
    operands = []
    for arg, index in zip([a for a in node.args if isinstance(a, torch.fx.Node)] +
                          [a for a in node.kwargs.values() if isinstance(a, torch.fx.Node)],
                          (index_a, index_b)):
        value = ctx.env[arg.name]
        width = ctx.base_graph.group(ctx.net.values[arg.name].group).n_units
        if len(index) != width or not np.array_equal(index, np.arange(width)):
            buffer = ctx.add_buffer("%s_gather_%d" % (node.name, len(operands)),
                                    torch.from_numpy(index.astype(np.int64)))
            value = ctx.new.call_function(torch.index_select, (value, 1, buffer))
        operands.append(value)
    return ctx.new.call_function(torch.add, tuple(operands))


REBUILDERS = {"dense": rebuild_dense, "sum": rebuild_sum}


class _Context:
    def __init__(self, net, base):
        self.net = net
        self.gm = net.gm
        self.base_graph = base.graph
        self.new = torch.fx.Graph()
        self.env = {}
        self.root = nn.Module()
        self.modules = set()

    def add_module(self, qualified, module):
        _set_submodule(self.root, qualified, module)
        self.modules.add(qualified)

    def add_buffer(self, name, tensor):
        self.root.register_buffer(name, tensor)
        return self.new.get_attr(name)


def rebuild(net, base, class_name):
    """The compressed nn.Module for a traced network and its base."""
    ctx = _Context(net, base)
    groups_by_node = {l.node: l for l in net.layers if l.kind != "input"}
    for node in net.gm.graph.nodes:
        layer = groups_by_node.get(node.name)
        if layer is not None:
            ctx.env[node.name] = REBUILDERS[layer.kind](ctx, node, layer)
            continue
        if node.op == "call_module" and node.target not in ctx.modules:
            ctx.add_module(node.target, copy.deepcopy(net.gm.get_submodule(node.target)))
        ctx.env[node.name] = ctx.new.node_copy(node, lambda n: ctx.env[n.name])
    module = torch.fx.GraphModule(ctx.root, ctx.new, class_name=class_name)
    module.train(net.model.training)
    return module
