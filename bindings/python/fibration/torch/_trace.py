"""Reading a torch model's data flow into a fibration.Graph.

The model is traced with torch.fx (standard torch.nn layers are leaves), the
shapes of every value are found by running the example input through it, and
each fx node is handed to a converter chosen by module type, function or
method name. A converter maps the node onto the C graph: a new group
(Linear -> fib_graph_add_dense, `+` -> fib_graph_add_sum), an activation of
an existing group (fib_graph_set_activation), or an alias (Dropout, Flatten,
Identity: the same units).

Values with positions keep torch's layout; the C graph's groups are
channels-last. Each layer records its layout ("plain" (batch, units), "image"
(N, C, H, W), "channels1d" (N, C, L) or "sequence" (N, T, F), batch first),
so the rebuild knows which axis holds the units.

New layer kinds plug in by registering a converter here (MODULES, FUNCTIONS,
METHODS; the converters for layers with positions are in _convert.py) and a
rebuilder in _rebuild.py; nothing else changes.
"""

import math
import operator
from dataclasses import dataclass, field
from typing import List, Optional

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp

from .. import Graph
from . import _constants, _convert, _relabel
from ._concrete import concrete_trace
from ._errors import UnsupportedModelError
from ._rebuild import rebuild
from ._ties import keep_ties
from ._values import CHANNEL_DIM, Constant, TupleValue, Value  # noqa: F401 (re-exported)


@dataclass
class Layer:
    """One group of the C graph."""
    group: int
    node: str                    # fx node name: the key in plans and reports
    kind: str                    # "input", "dense", "sum", "conv", "lstm", ...
    width: int
    sources: List[int] = field(default_factory=list)
    module: Optional[str] = None       # qualified name of the nn.Linear
    fx_node: str = ""                  # the fx node that made it
    layout: str = "plain"              # plain | image | channels1d | sequence
    activation: str = "linear"
    activation_parameter: float = 0.0
    activated: bool = False
    read_before_activation: bool = False


class Network:
    """A traced model and the C graph built from it."""

    def __init__(self, model, gm, graph, layers, values, outputs, inputs, owners=None,
                 relabels=None):
        self.owners = owners or {}  # fx node name -> (rebuild kind, info dict)
        self.relabels = relabels or {}  # fx node name -> moved units read there (_relabel)
        self.model = model
        self.gm = gm              # the fx GraphModule
        self.graph = graph        # fibration.Graph (borrows the model's weights)
        self.layers = layers      # by group id
        self.values = values      # fx node name -> Value
        self.outputs = outputs    # group ids, in the model's output order
        self.inputs = inputs      # group ids of the placeholders

    def layer(self, node_name):
        return next(l for l in self.layers if l.node == node_name)

    def base(self, coloring):
        """The base of self.graph by `coloring` (fib_compress): layers that
        merge nothing borrow the model's weights; merged Linear and
        convolution layers are float32 when every parameter of the model
        is (each float64 merge rounded once, the value the rebuilt float32
        layer holds either way), else float64."""
        return self.graph.compress(coloring, self.base_dtype())

    def base_dtype(self):
        """'float32' when every parameter of the model is float32 (the
        dtype of its merged layers in a base), else 'float64'."""
        float32 = all(p.dtype == torch.float32 for p in self.model.parameters())
        return "float32" if float32 else "float64"

    def compress(self, coloring, class_name=None):
        """The compressed model (ordinary nn.Modules) for any colouring of
        self.graph: one made by self.graph.color(...) with any tolerance,
        edited with Coloring.set_group, or built by hand. The base is Eq. 10
        of the colouring (fib_compress); class_name defaults to
        'Compressed' + the model's class name. Tied tensors stay tied, or
        UnsupportedModelError (_ties.keep_ties)."""
        compressed = rebuild(self, self.base(coloring),
                             class_name or "Compressed" + type(self.model).__name__)
        keep_ties(self, compressed)
        return compressed


def _describe(node, gm):
    if node.op == "call_module":
        return "module %r (%s)" % (node.target, type(gm.get_submodule(node.target)).__name__)
    if node.op == "call_function":
        return "function %s" % getattr(node.target, "__name__", node.target)
    if node.op == "call_method":
        return "method .%s()" % node.target
    return "%s %s" % (node.op, node.target)


class _Builder:
    """State shared by the converters while one model is read."""

    def __init__(self, gm, graph, weights_override=None):
        self.gm = gm
        self.graph = graph
        self.layers = []
        self.values = {}
        self.owners = {}
        self.weights_override = weights_override or {}
        self.relabels = {}
        self.concrete = {}
        self._unit_offsets = {}   # group -> first global unit id (_relabel labels)
        self._unit_starts = []    # (first global unit id, group), ascending

    def unit_offset(self, group):
        """The global id of the group's first unit, for labels."""
        if group not in self._unit_offsets:
            start = sum(self.layers[g].width for g in self._unit_offsets)
            self._unit_offsets[group] = start
            self._unit_starts.append((start, group))
        return self._unit_offsets[group]

    def unit_owner(self, unit):
        """(group, unit) of a global unit id."""
        for start, group in reversed(self._unit_starts):
            if unit >= start:
                return group, unit - start
        raise AssertionError(unit)

    def own(self, node, kind, **info):
        """Marks fx node `node` as rebuilt by REBUILDERS[kind] with `info`."""
        self.owners[node.name] = (kind, info)

    # -- helpers for converters -------------------------------------------
    def fail(self, node, why):
        raise UnsupportedModelError("%s at node %r: %s" % (_describe(node, self.gm),
                                                           node.name, why))

    def shape(self, node):
        meta = node.meta.get("tensor_meta")
        if meta is None or not hasattr(meta, "shape"):
            return None
        return tuple(meta.shape)

    def value(self, node, arg, purpose="read"):
        """The Value an argument node carries; records the read."""
        if not isinstance(arg, torch.fx.Node) or arg.name not in self.values:
            self.fail(node, "its input %r is not a tensor computed from the model "
                            "input by supported layers" % (arg,))
        v = self.values[arg.name]
        if isinstance(v, _relabel.Labels):
            v = _relabel.materialise(self, node, arg, v)
        if isinstance(v, (_relabel.LabelTuple, Constant)):
            self.fail(node, "it reads %s" % ("a tuple of moved units; index it first"
                                            if isinstance(v, _relabel.LabelTuple) else
                                            "a tensor stored on the model (%r) as a layer "
                                            "input" % arg.target))
        if isinstance(v, TupleValue):
            self.fail(node, "it reads a tuple returned by a layer; index it first "
                            "(for example out, _ = lstm(x))")
        layer = self.layers[v.group]
        if layer.activated and not v.activated:
            self.fail(node, "it reads the pre-activation value of %r, whose "
                            "activation is also used; a group has one activation"
                      % layer.node)
        if not v.activated and purpose == "read":
            layer.read_before_activation = True
        return v

    def flat_width(self, node, arg):
        shape = self.shape(arg)
        if shape is None or len(shape) < 2:
            self.fail(node, "expects a batch of vectors, got shape %s" % (shape,))
        return int(math.prod(shape[1:]))

    def require_matrix(self, node, arg):
        shape = self.shape(arg)
        if shape is None or len(shape) != 2:
            self.fail(node, "reads a tensor of shape %s; only (batch, features) "
                            "inputs are supported here" % (shape,))
        return shape[1]

    def require_layout(self, node, value, layouts, what):
        layout = self.layers[value.group].layout
        if layout not in layouts:
            self.fail(node, "%s reads a %s tensor (%s); it needs %s"
                      % (what, layout, LAYOUT_TEXT[layout],
                         " or ".join("%s (%s)" % (l, LAYOUT_TEXT[l]) for l in layouts)))
        return layout

    def new_layer(self, node, kind, width, sources, module=None, name=None, layout=None):
        if layout is None:
            layout = self.layers[sources[0]].layout if sources else "plain"
        layer = Layer(len(self.layers), name or node.name, kind, width, list(sources), module,
                      fx_node=node.name, layout=layout)
        self.layers.append(layer)
        return layer

    def added(self, layer, group):
        """Checks that the C group id is the layer's index (one list for both)."""
        if group != layer.group:
            raise AssertionError("group %d made for layer %d" % (group, layer.group))
        return Value(group, False)

    def activate(self, node, arg, activation, parameter=0.0):
        v = self.value(node, arg, purpose="activate")
        layer = self.layers[v.group]
        if layer.kind == "input":
            self.fail(node, "an activation applied directly to a model input "
                            "has no group to belong to")
        if v.activated or layer.activated:
            self.fail(node, "%r already has an activation (%s); two activations "
                            "in a row are not supported" % (layer.node, layer.activation))
        if layer.read_before_activation:
            self.fail(node, "the value before this activation is also used "
                            "elsewhere; a group has one activation")
        self.graph.set_activation(layer.group, activation, parameter)
        layer.activation, layer.activation_parameter = activation, float(parameter)
        layer.activated = True
        return Value(layer.group, True)

    def alias(self, node, arg):
        v = self.values.get(arg.name) if isinstance(arg, torch.fx.Node) else None
        if isinstance(v, _relabel.Labels):
            v = _relabel.materialise(self, node, arg, v)
        if v is None or isinstance(v, (_relabel.LabelTuple, Constant)):
            self.fail(node, "its input is not a tensor computed by supported layers")
        return v


# -- converters ------------------------------------------------------------
# Each takes (builder, node, module_or_None) and returns the Value of the node.

LAYOUT_TEXT = {"plain": "batch, features", "image": "N, C, H, W", "nhwc": "N, H, W, C",
               "channels1d": "N, C, L", "sequence": "batch, time, features"}


def convert_linear(b, node, module):
    arg = node.args[0]
    v = b.value(node, arg)
    b.require_layout(node, v, ("plain", "sequence", "nhwc"), "Linear")
    weight, bias = b.weights_override.get(node.target, (module.weight, module.bias))
    weight = weight.detach()
    bias = bias.detach() if bias is not None else None
    if weight.dtype not in (torch.float32, torch.float64):
        b.fail(node, "weights of dtype %s; libfibration reads float32 and float64"
               % weight.dtype)
    layer = b.new_layer(node, "dense", module.out_features, [v.group], module=node.target)
    group = b.graph.add_dense(v.group, weight, bias, name=node.name)
    b.own(node, "dense", layer=layer)
    return b.added(layer, group)


def convert_add(b, node, module=None):
    args = [a for a in node.args] + list(node.kwargs.values())
    constants = [a for a in args if _constants.constant_of(b, a) is not None]
    if len(args) == 2 and len(constants) == 1 and not node.kwargs:
        x = args[1] if constants[0] is args[0] else args[0]
        return _constants.convert_add_constant(b, node, x, _constants.constant_of(b, constants[0]))
    if len(args) != 2 or not all(isinstance(a, torch.fx.Node) for a in args) \
            or node.kwargs.get("alpha", 1) != 1:
        b.fail(node, "only the sum of two tensors (a residual connection) is "
                     "supported, not adding constants or scaled tensors")
    sa, sb = b.shape(args[0]), b.shape(args[1])
    if sa != sb or sa is None or len(sa) < 2:
        b.fail(node, "adds tensors of shapes %s and %s; residual sums of equal "
                     "shapes are supported (no broadcasting)" % (sa, sb))
    va, vb = b.value(node, args[0]), b.value(node, args[1])
    if b.layers[va.group].layout != b.layers[vb.group].layout:
        b.fail(node, "adds a %s tensor to a %s one" % (b.layers[va.group].layout,
                                                      b.layers[vb.group].layout))
    layer = b.new_layer(node, "sum", b.layers[va.group].width, [va.group, vb.group])
    group = b.graph.add_sum(va.group, vb.group)
    b.graph.set_name(group, node.name)
    b.own(node, "sum", layer=layer)
    return b.added(layer, group)


def _activation(kind, parameter=None):
    def convert(b, node, module=None):
        value = parameter(node, module) if parameter else 0.0
        return b.activate(node, node.args[0], kind, value)
    return convert


def _gelu_module(b, node, module):
    approximate = getattr(module, "approximate", "none")
    if approximate not in ("none", "tanh"):
        b.fail(node, "GELU(approximate=%r): 'none' (FIB_ACT_GELU) and 'tanh' "
                     "(FIB_ACT_GELU_TANH) are supported" % approximate)
    return b.activate(node, node.args[0], "gelu" if approximate == "none" else "gelu_tanh")


def _gelu_function(b, node, module=None):
    approximate = node.kwargs.get("approximate", node.args[1] if len(node.args) > 1 else "none")
    if approximate not in ("none", "tanh"):
        b.fail(node, "gelu(approximate=%r): 'none' (FIB_ACT_GELU) and 'tanh' "
                     "(FIB_ACT_GELU_TANH) are supported" % (approximate,))
    return b.activate(node, node.args[0], "gelu" if approximate == "none" else "gelu_tanh")


def _leaky_slope(node, module):
    if module is not None:
        return module.negative_slope
    if len(node.args) > 1:
        return node.args[1]
    return node.kwargs.get("negative_slope", 0.01)


def convert_alias(b, node, module=None):
    return b.alias(node, node.args[0])


def convert_flatten(b, node, module=None):
    if module is not None:
        start, end = module.start_dim, module.end_dim
    else:
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        if node.op == "call_function" and start == 0:
            b.fail(node, "torch.flatten(x) with start_dim=0 mixes the batch into "
                         "the features; use start_dim=1")
    out = b.shape(node)
    if out is not None and len(out) > 2 and module is None:
        return _relabel.convert_move(b, node)  # x.flatten(2): positions become a sequence
    if out is None or len(out) != 2 or end not in (-1, len(b.shape(node.args[0])) - 1):
        b.fail(node, "only flattening everything but the batch dimension is supported")
    v = b.alias(node, node.args[0])
    source = b.layers[v.group]
    if source.layout == "plain":
        return v
    if source.layout == "sequence":
        b.fail(node, "flattening a (batch, time, features) sequence is not supported "
                     "(take its last step, x[:, -1], instead)")
    v = b.value(node, node.args[0])
    layer = b.new_layer(node, "flatten", out[1], [v.group], layout="plain")
    return b.added(layer, b.graph.add_flatten(v.group, name=node.name))


def convert_reshape(b, node, module=None):
    # x.view(x.size(0), -1) on a model input is a flatten; on a hidden layer
    # its explicit sizes would no longer fit once units are merged.
    v = b.values.get(node.args[0].name) if isinstance(node.args[0], torch.fx.Node) else None
    out, source_shape = b.shape(node), b.shape(node.args[0])
    if isinstance(v, Value) and b.layers[v.group].layout in ("image", "channels1d") and \
            out is not None and len(out) == 2 and source_shape is not None and \
            out[1] == math.prod(source_shape[1:]):
        # x.view(x.size(0), -1) after convolutions: a flatten, rebuilt as
        # torch.flatten(x, 1) (its sizes follow the merged channels)
        v = b.value(node, node.args[0])
        layer = b.new_layer(node, "flatten", out[1], [v.group], layout="plain")
        b.own(node, "flatten_view")
        return b.added(layer, b.graph.add_flatten(v.group, name=node.name))
    if isinstance(v, (_relabel.Labels, _relabel.LabelTuple)) or \
            (isinstance(v, Value) and b.layers[v.group].kind != "input"):
        return _relabel.convert_move(b, node)
    v = b.alias(node, node.args[0])
    out = b.shape(node)
    if out is None or len(out) != 2 or b.layers[v.group].kind != "input" \
            or b.layers[v.group].layout != "plain":
        b.fail(node, "view/reshape is only supported on a model input, to a "
                     "(batch, features) shape (use nn.Flatten elsewhere)")
    return v


def convert_contiguous(b, node, module=None):
    if isinstance(b.values.get(node.args[0].name), _relabel.Labels):
        return _relabel.convert_move(b, node)
    return b.alias(node, node.args[0])


def convert_dropout_function(b, node, module=None):
    return b.alias(node, node.args[0])


def _is_last_step_index(index):
    """x[:, -1] or x[:, -1, :]."""
    if not isinstance(index, tuple) or len(index) not in (2, 3):
        return False
    full = slice(None, None, None)
    return index[0] == full and index[1] == -1 and (len(index) == 2 or index[2] == full)


def convert_getitem(b, node, module=None):
    arg, index = node.args[0], node.args[1]
    v = b.values.get(arg.name) if isinstance(arg, torch.fx.Node) else None
    if v is None:
        b.fail(node, "it indexes a value that is not computed by supported layers")
    if isinstance(v, TupleValue):
        if isinstance(index, int) and v.items.get(index) is not None:
            return v.items[index]
        if not node.users:
            # an item nobody reads (out, _ = lstm(x)): nothing to map or emit
            b.own(node, "moved")
            return None
        b.fail(node, "item %r of this tuple is not supported: %s" % (index, v.why))
    if isinstance(v, (_relabel.Labels, _relabel.LabelTuple)):
        return _relabel.convert_move(b, node)
    if b.layers[v.group].layout == "sequence" and _is_last_step_index(index):
        v = b.value(node, arg)
        layer = b.new_layer(node, "last_step", b.layers[v.group].width, [v.group],
                            layout="plain")
        b.own(node, "last_step", layer=layer)
        return b.added(layer, b.graph.add_last_step(v.group, name=node.name))
    if b.layers[v.group].layout == "sequence" and _constants.step_index(index) is not None:
        return _constants.convert_select_step(b, node, arg, _constants.step_index(index))
    return _relabel.convert_move(b, node)


def _softplus_module(b, node, module):
    if module.beta != 1 or module.threshold != 20:
        b.fail(node, "Softplus(beta=%g, threshold=%g): FIB_ACT_SOFTPLUS is beta 1, "
                     "threshold 20" % (module.beta, module.threshold))
    return b.activate(node, node.args[0], "softplus")


def _softplus_function(b, node, module=None):
    if len(node.args) > 1 or any(k in node.kwargs and node.kwargs[k] != d
                                 for k, d in (("beta", 1), ("threshold", 20))):
        b.fail(node, "softplus with beta or threshold other than 1 and 20")
    return b.activate(node, node.args[0], "softplus")


def _hardtanh_module(b, node, module):
    if (module.min_val, module.max_val) != (0.0, 6.0):
        b.fail(node, "Hardtanh(%g, %g): only ReLU6 (0, 6) has a C activation"
               % (module.min_val, module.max_val))
    return b.activate(node, node.args[0], "relu6")


MODULES = {
    nn.Linear: convert_linear,
    nn.ReLU: _activation("relu"),
    nn.LeakyReLU: _activation("leaky_relu", _leaky_slope),
    nn.Tanh: _activation("tanh"),
    nn.Sigmoid: _activation("sigmoid"),
    nn.GELU: _gelu_module,
    nn.SiLU: _activation("silu"),
    nn.Hardtanh: _hardtanh_module,  # nn.ReLU6 is a Hardtanh(0, 6)
    nn.Hardswish: _activation("hardswish"),
    nn.Hardsigmoid: _activation("hardsigmoid"),
    nn.Mish: _activation("mish"),
    nn.Softplus: _softplus_module,
    nn.Identity: convert_alias,
    nn.Dropout: convert_alias,
    nn.Flatten: convert_flatten,
}
MODULES.update(_convert.MODULES)  # the converters for layers with positions

FUNCTIONS = {
    operator.add: convert_add,
    operator.iadd: convert_add,
    torch.add: convert_add,
    F.relu: _activation("relu"),
    torch.relu: _activation("relu"),
    F.leaky_relu: _activation("leaky_relu", _leaky_slope),
    torch.tanh: _activation("tanh"),
    F.tanh: _activation("tanh"),
    torch.sigmoid: _activation("sigmoid"),
    F.sigmoid: _activation("sigmoid"),
    F.gelu: _gelu_function,
    F.silu: _activation("silu"),
    F.relu6: _activation("relu6"),
    F.hardswish: _activation("hardswish"),
    F.hardsigmoid: _activation("hardsigmoid"),
    F.mish: _activation("mish"),
    F.softplus: _softplus_function,
    torch.flatten: convert_flatten,
    F.dropout: convert_dropout_function,
    operator.getitem: convert_getitem,
    torch.cat: _constants.convert_cat,
    torch.concat: _constants.convert_cat,
    torch.permute: _relabel.convert_move,
    torch.transpose: _relabel.convert_move,
    torch.reshape: convert_reshape,
    torch.chunk: _relabel.convert_move,
    torch.split: _relabel.convert_move,
}

FUNCTIONS.update(_convert.FUNCTIONS)
# functions of optional packages, by module and name
FUNCTIONS_BY_NAME = dict(_convert.FUNCTIONS_BY_NAME)


def _function_converter(target):
    convert = FUNCTIONS.get(target)
    if convert is None:
        name = "%s.%s" % (getattr(target, "__module__", ""), getattr(target, "__name__", ""))
        convert = FUNCTIONS_BY_NAME.get(name)
    return convert


METHODS = {
    "add": convert_add,
    "relu": _activation("relu"),
    "tanh": _activation("tanh"),
    "sigmoid": _activation("sigmoid"),
    "flatten": convert_flatten,
    "view": convert_reshape,
    "reshape": convert_reshape,
    "contiguous": convert_contiguous,
    "permute": _relabel.convert_move,
    "transpose": _relabel.convert_move,
    "chunk": _relabel.convert_move,
    "split": _relabel.convert_move,
    "expand": _constants.convert_expand,
}
METHODS.update(_convert.METHODS)

# Modules known to be unsupported, with the reason shown to the user.
NOT_YET = {
    "Conv3d": "3-D convolutions have no C builder (fib_graph_add_conv is 2-D)",
    "ConvTranspose2d": "transposed convolutions have no C builder",
    "BatchNorm3d": "3-D batch norm has no C builder",
    "GroupNorm": "group norm mixes channels in groups; only LayerNorm (and batch norm "
                 "as a per-channel affine map) have C builders",
    "InstanceNorm2d": "instance norm has no C builder",
    "RNN": "plain (Elman) RNNs have no C builder; LSTM and GRU do",
    "Embedding": "nn.Embedding reads integer token ids, which this tracer does not map "
                 "(the C token embedding, fib_graph_add_token_embedding, reads one-hot "
                 "inputs; Hugging Face checkpoints load with fibration.Graph.load)",
    "TransformerDecoderLayer": "cross-attention has no C builder (self-attention only)",
}


def _module_converter(module):
    for cls in type(module).__mro__:
        if cls in MODULES:
            return MODULES[cls]
    return None


def _as_tuple(example_input):
    return tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)


def trace(model, example_input, weights_override=None):
    """Traces `model` and builds its fibration.Graph. Returns a Network.
    weights_override: {linear qualified name: (weight, bias)} used instead of
    the module's own (for colouring with modified biases)."""
    inputs = _as_tuple(example_input)
    try:
        gm, concrete = concrete_trace(model, inputs)
    except Exception as e:  # torch.fx raises many kinds; all mean "not traceable"
        raise UnsupportedModelError(
            "%s cannot be traced by torch.fx (%s: %s); data-dependent control "
            "flow in forward() is not supported" % (type(model).__name__,
                                                   type(e).__name__, e)) from e
    was_training = gm.training
    gm.eval()
    with torch.no_grad():
        ShapeProp(gm).propagate(*inputs)
    gm.train(was_training)

    graph = Graph()
    b = _Builder(gm, graph, weights_override)
    b.concrete = concrete
    outputs, input_groups = [], []
    for node in gm.graph.nodes:
        if node.op == "placeholder" and len(input_groups) >= len(inputs):
            continue  # an argument the example does not give: its default
        if node.op == "placeholder":
            shape = b.shape(node)
            if shape is None:
                b.fail(node, "model inputs must be tensors")
            layout = _input_layout(b, node, shape)
            if layout == "plain":
                width = int(math.prod(shape[1:])) if len(shape) > 1 else 1
                group = graph.add_input(width)
            elif layout == "image":
                width = shape[1]
                group = graph.add_input_positions(shape[1], shape[2], shape[3])
            elif layout == "channels1d":
                width = shape[1]
                group = graph.add_input_positions(shape[1], 1, shape[2])
            else:
                width = shape[2]
                group = graph.add_input_positions(shape[2], shape[1], 1)
            b.new_layer(node, "input", width, [], layout=layout)
            graph.set_name(group, node.name)
            b.values[node.name] = Value(group, False)
            input_groups.append(group)
        elif node.op == "output":
            result = node.args[0]
            results = list(result) if isinstance(result, (tuple, list)) else [result]
            for r in results:
                outputs.append(b.value(node, r).group)
                if r.name in b.relabels:
                    b.relabels[r.name]["output"] = True
        elif node.op == "get_attr":
            b.values[node.name] = Constant(node.target, concrete.get(node.name))
            b.own(node, "moved")  # emitted by the converter that folds it, if any
        elif not torch.is_tensor(concrete.get(node.name)) and \
                not isinstance(concrete.get(node.name), (tuple, list)):
            continue  # integers for view/reshape (the batch size)
        else:
            if node.op == "call_module":
                module = gm.get_submodule(node.target)
                convert = _module_converter(module)
                if convert is None:
                    why = NOT_YET.get(type(module).__name__,
                                      "no converter is registered for this layer type")
                    b.fail(node, why)
            elif node.op == "call_function":
                module, convert = None, _function_converter(node.target)
            else:
                module, convert = None, METHODS.get(node.target)
            if convert is None:
                b.fail(node, "this operation has no mapping onto libfibration's "
                             "graph (see docs/python.md for the supported layers)")
            b.values[node.name] = convert(b, node, module)
    # the C graph's outputs are the groups nobody reads; they must be exactly
    # the model's outputs, or an output could be merged
    read = {s for layer in b.layers for s in layer.sources}
    c_outputs = [l.group for l in b.layers if l.group not in read]
    if sorted(set(outputs)) != c_outputs or len(set(outputs)) != len(outputs):
        names = [b.layers[g].node for g in outputs]
        raise UnsupportedModelError(
            "the model's outputs %s must be exactly the layers that no other layer "
            "reads (%s); returning an intermediate layer is not supported"
            % (names, [b.layers[g].node for g in c_outputs]))
    for layer in b.layers:
        if layer.kind == "input" and layer.group in outputs:
            raise UnsupportedModelError("model input %r is returned unchanged" % layer.node)
    for layer in b.layers:
        if layer.kind in LABEL_ONLY:
            # Their signatures are only the classes they read (labels),
            # which fib_color never merges; an eps of 0 for these groups
            # says so to the library as well, whatever eps the others get.
            graph.set_eps(layer.group, 0.0)
    return Network(model, gm, graph, b.layers, b.values, outputs, input_groups, b.owners,
                   b.relabels)


LABEL_ONLY = ("pool", "flatten", "last_step", "select_step", "sum", "relabel", "select")


FLATTENING = ("flatten", "view", "reshape")


def _input_layout(b, node, shape):
    """How a model input is laid out: a (batch, features) matrix (also any
    input that is only flattened), an image, a (N, C, L) signal read by 1-D
    layers, or a (batch, time, features) sequence."""
    if len(shape) == 2:
        return "plain"
    kinds = []
    for user in node.users:
        if user.op == "call_module":
            kinds.append(type(b.gm.get_submodule(user.target)).__name__)
        else:
            kinds.append(getattr(user.target, "__name__", str(user.target)))
    if kinds and all(k.lower() in FLATTENING for k in kinds):
        return "plain"
    if len(shape) == 4:
        return "image"
    if len(shape) == 3:
        if any(k in CHANNELS_FIRST_1D for k in kinds):
            return "channels1d"
        return "sequence"
    reasons = ["%s: %s" % (k, NOT_YET[k]) for k in kinds if k in NOT_YET]
    b.fail(node, "model inputs of shape %s are not supported (read by %s)%s"
           % (shape, ", ".join(kinds), "; " + "; ".join(reasons) if reasons else ""))


CHANNELS_FIRST_1D = ("Conv1d", "MaxPool1d", "AvgPool1d", "BatchNorm1d")
