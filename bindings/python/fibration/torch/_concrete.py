"""Tracing a model with the example input's concrete shapes.

torch.fx's symbolic tracing cannot follow `n, c, h, w = x.shape`, a
`view(n, groups, c // groups, h, w)` or `torch._assert(h == size)`: the
sizes are proxies. ConcreteTracer is a torch.fx.Tracer that runs every
recorded operation on the example input as it traces (leaf modules and
functions alike), so that

- `x.shape`, `x.size()`, `x.size(d)`, `x.dim()` and `x.ndim` answer with the
  example's sizes as Python integers, except the batch size of a tensor
  computed from the model's inputs, which stays a graph value (an `x.size(0)`
  node), so the traced model still takes any batch size;
- every node carries its concrete value while the graph is built
  (ConcreteTracer.values), for the converters that need more than shapes.

Shapes other than the batch are fixed to the example's: the traced graph
computes the model for inputs of the example's size (a model with no shape
arithmetic in forward() still takes any size).

Branching on a tensor's values (`if x.sum() > 0`) is still refused, as
torch.fx refuses it. The model is traced in eval mode (the mode every check
compares in), with gradients off and torch's random generator restored
afterwards, so tracing changes nothing in the model or in the user's draws.

Only public torch.fx API is used (Tracer.create_proxy, Tracer.proxy,
Tracer.is_leaf_module, Proxy, GraphModule), the same in PyTorch 1.13 and 2.x.
"""

import inspect

import torch
import torch.fx
from torch.fx.node import map_aggregate

SHAPE_METHODS = ("size", "dim")


class _ConcreteProxy(torch.fx.Proxy):
    """A proxy whose shape attributes are the example's integers."""

    def __getattr__(self, name):
        if name in ("shape", "ndim"):
            return self.tracer.shape_attribute(self, name)
        return super().__getattr__(name)

    def __iter__(self):
        # a tuple or list (x.chunk(2, dim=1), a layer's output pair) unpacks
        # into its items; iterating over a tensor stays refused
        value = self.tracer.values.get(self.node)
        if isinstance(value, (tuple, list)):
            return iter([self[i] for i in range(len(value))])
        return super().__iter__()

    def __len__(self):
        value = self.tracer.values.get(self.node)
        if isinstance(value, (tuple, list)):
            return len(value)
        return super().__len__()


class ConcreteTracer(torch.fx.Tracer):
    """torch.fx.Tracer that computes each node on the example input."""

    def __init__(self, example_inputs, leaf_types=()):
        super().__init__()
        self.example_inputs = list(example_inputs)
        self.leaf_types = tuple(leaf_types)
        self.values = {}        # fx node -> concrete value
        self.batched = set()    # fx nodes computed from the model's inputs
        self.batch = None       # the example's batch size
        self.placeholders = 0
        self.computing = False

    def is_leaf_module(self, module, qualified_name):
        return isinstance(module, self.leaf_types) or \
            super().is_leaf_module(module, qualified_name)

    def proxy(self, node):
        return _ConcreteProxy(node, self)

    # While a node's value is computed, modules run their own forward and
    # attributes are the tensors themselves: nothing enters the graph.
    def call_module(self, module, forward, args, kwargs):
        if self.computing:
            return forward(*args, **kwargs)
        return super().call_module(module, forward, args, kwargs)

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        if self.computing:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    # -- concrete shapes ---------------------------------------------------
    def _batch_size(self, proxy):
        """A `size(0)` node of the first model input, standing for the batch
        size (of the first input, so that it never reads a value that the
        rebuilt model computes otherwise)."""
        size = super().create_proxy("call_method", "size", (self.proxy(self.first_input), 0),
                                    {})
        self.values[size.node] = self.batch
        self.batched.add(size.node)
        return size

    def _size(self, proxy, dim=None):
        value = self.values[proxy.node]
        sizes = list(value.shape)
        batched = proxy.node in self.batched and sizes and sizes[0] == self.batch
        if dim is not None:
            dim = dim % len(sizes)
            if dim == 0 and batched:
                return self._batch_size(proxy)
            return sizes[dim]
        if batched:
            sizes[0] = self._batch_size(proxy)
        return tuple(sizes)

    def shape_attribute(self, proxy, name):
        if name == "ndim":
            return self.values[proxy.node].dim()
        return self._size(proxy)

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None,
                     proxy_factory_fn=None):
        if kind == "call_method" and target in SHAPE_METHODS and args and \
                isinstance(args[0], torch.fx.Proxy) and \
                torch.is_tensor(self.values.get(args[0].node)):
            if target == "dim":
                return self.values[args[0].node].dim()
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            return self._size(args[0], dim)
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr,
                                     proxy_factory_fn)
        self._compute(proxy.node, kind, target, args, kwargs)
        return proxy

    # -- concrete values ---------------------------------------------------
    def _concrete(self, a):
        if isinstance(a, torch.fx.Proxy):
            return self.values[a.node]
        if isinstance(a, torch.fx.Node):
            return self.values[a]
        return a

    def _compute(self, node, kind, target, args, kwargs):
        carried = []

        def concrete(a):
            if isinstance(a, (torch.fx.Proxy, torch.fx.Node)):
                carried.append((a.node if isinstance(a, torch.fx.Proxy) else a) in self.batched)
            return self._concrete(a)

        cargs = map_aggregate(args, concrete)
        ckwargs = map_aggregate(kwargs, concrete)
        if kind == "placeholder":
            # torch.fx also makes placeholders for the concrete arguments
            # (_defaults_not_given): they hold their defaults
            value = self.example_inputs[self.placeholders] \
                if self.placeholders < len(self.example_inputs) else (cargs[0] if cargs else None)
            self.placeholders += 1
            if self.batch is None and torch.is_tensor(value) and value.dim() > 0:
                self.batch = value.shape[0]
                self.first_input = node
            self.batched.add(node)
        else:
            self.computing = True
            try:
                if kind == "get_attr":
                    value = self.root
                    for part in target.split("."):
                        value = getattr(value, part)
                elif kind == "call_module":
                    value = self.root.get_submodule(target)(*cargs, **ckwargs)
                elif kind == "call_function":
                    value = target(*cargs, **ckwargs)
                elif kind == "call_method":
                    value = getattr(cargs[0], target)(*cargs[1:], **ckwargs)
                else:
                    value = None
            finally:
                self.computing = False
        if any(carried):
            self.batched.add(node)
        self.values[node] = value


def _defaults_not_given(model, example_inputs):
    """{name: default} of forward's parameters after those the example
    gives: traced as the constants they are when the model is called with
    the example alone."""
    parameters = list(inspect.signature(model.forward).parameters.values())
    return {p.name: p.default for p in parameters[len(example_inputs):]
            if p.default is not inspect.Parameter.empty and
            p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} or None


def concrete_trace(model, example_inputs, leaf_types=()):
    """(GraphModule, {node name: concrete value}) of `model` traced in eval
    mode on example_inputs (a tuple)."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            tracer = ConcreteTracer(example_inputs, leaf_types)
            graph = tracer.trace(model, concrete_args=_defaults_not_given(model,
                                                                         example_inputs))
    finally:
        model.train(training)
    gm = torch.fx.GraphModule(tracer.root, graph, type(model).__name__)
    gm.train(training)
    values = {node.name: tracer.values.get(node) for node in graph.nodes}
    return gm, values
