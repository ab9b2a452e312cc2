"""Converters for layers with positions: convolutions, batch norm, pooling,
LSTM/GRU, multi-head self-attention, LayerNorm and Transformer encoders.

Each maps one fx node onto C builder calls (fib_graph_add_conv, _affine,
_pool, _lstm, _gru, _attention, _norm, _sum, _dense) and records how the
node is rebuilt (Builder.own). _trace.py adds MODULES, FUNCTIONS, METHODS
and FUNCTIONS_BY_NAME to its own tables.
"""

import operator

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._values import CHANNEL_DIM, Constant, TupleValue, Value


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _check_dtype(b, node, tensor):
    if tensor.dtype not in (torch.float32, torch.float64):
        b.fail(node, "weights of dtype %s; libfibration reads float32 and float64"
               % tensor.dtype)


def _single_input(b, node, what):
    extra = [a for a in list(node.args[1:]) + list(node.kwargs.values()) if a is not None]
    if extra:
        b.fail(node, "%s is called with more than its input (%r); initial states, "
                     "masks and extra arguments are not supported" % (what, extra))
    return b.value(node, node.args[0])


# -- convolution, batch norm, pooling ---------------------------------------

def convert_conv(b, node, module):
    one_d = isinstance(module, nn.Conv1d)
    v = _single_input(b, node, type(module).__name__)
    b.require_layout(node, v, ("channels1d",) if one_d else ("image",), type(module).__name__)
    if isinstance(module.padding, str) or module.padding_mode != "zeros":
        b.fail(node, "padding=%r, padding_mode=%r: only explicit zero padding is "
                     "supported" % (module.padding, module.padding_mode))
    if any(d != 1 for d in module.dilation):
        b.fail(node, "dilation %s: the C convolution has dilation 1" % (module.dilation,))
    weight = module.weight.detach()
    _check_dtype(b, node, weight)
    bias = module.bias.detach() if module.bias is not None else None
    if one_d:
        weight = weight.unsqueeze(2)
        stride, padding = (1, module.stride[0]), (0, module.padding[0])
    else:
        stride, padding = _pair(module.stride), _pair(module.padding)
    layer = b.new_layer(node, "conv", module.out_channels, [v.group], module=node.target)
    group = b.graph.add_conv(v.group, weight.contiguous(), bias, stride, padding,
                             module.groups, name=node.name)
    b.own(node, "conv", layer=layer)
    return b.added(layer, group)


def batch_norm_affine(module):
    """(scale, shift) of a batch norm in eval mode, in the weights' dtype."""
    var, mean = module.running_var.double(), module.running_mean.double()
    scale = 1.0 / torch.sqrt(var + module.eps)
    if module.weight is not None:
        scale = scale * module.weight.detach().double()
    shift = -mean * scale
    if module.bias is not None:
        shift = shift + module.bias.detach().double()
    dtype = module.running_mean.dtype
    return scale.to(dtype).contiguous(), shift.to(dtype).contiguous()


def convert_batch_norm(b, node, module):
    v = _single_input(b, node, type(module).__name__)
    layouts = ("image",) if isinstance(module, nn.BatchNorm2d) else ("plain", "channels1d")
    b.require_layout(node, v, layouts, type(module).__name__)
    if module.running_mean is None:
        b.fail(node, "batch norm without running statistics (track_running_stats="
                     "False) computes with the batch; it has no fixed per-channel map")
    scale, shift = batch_norm_affine(module)
    layer = b.new_layer(node, "affine", module.num_features, [v.group], module=node.target)
    group = b.graph.add_affine(v.group, scale, shift, name=node.name)
    b.own(node, "affine", layer=layer, batch_norm=True)
    return b.added(layer, group)


def _floor_equals_ceil(size, kernel, stride, padding):
    """True when a ceil_mode pool over `size` positions has the floor mode's
    output size (no window starts in the padding on the right)."""
    return (size + 2 * padding - kernel) % stride == 0


def _add_pool(b, node, v, is_max, kernel, stride, padding):
    layer = b.new_layer(node, "pool", b.layers[v.group].width, [v.group])
    group = b.graph.add_pool(v.group, "max" if is_max else "avg", kernel, stride, padding,
                             name=node.name)
    b.own(node, "pool", layer=layer)
    return b.added(layer, group)


def _pool_options(node, names, defaults):
    """{name: value} of a functional pooling call's arguments."""
    options = dict(zip(names, list(node.args[1:])))
    for name, default in zip(names, defaults):
        options.setdefault(name, node.kwargs.get(name, default))
    return options


def _check_pool(b, node, v, one_d, is_max, kernel, stride, padding, ceil_mode, dilation,
                return_indices, count_include_pad, divisor_override):
    kernel, stride, padding = _pair(kernel), _pair(stride or kernel), _pair(padding)
    if one_d:
        kernel, stride, padding = (1, kernel[0]), (1, stride[0]), (0, padding[0])
    if ceil_mode:
        shape = b.shape(node.args[0])
        sizes = (1, shape[2]) if one_d else shape[2:4]
        if not all(_floor_equals_ceil(n, k, s, p)
                   for n, k, s, p in zip(sizes, kernel, stride, padding)):
            b.fail(node, "ceil_mode=True over %s positions adds a window that starts in the "
                         "padding, which the C pooling does not have (it computes what "
                         "ceil_mode=False does only when (size + 2 padding - kernel) is a "
                         "multiple of the stride)" % (tuple(sizes),))
    if is_max and (return_indices or any(d != 1 for d in _pair(dilation))):
        b.fail(node, "max pooling with dilation or return_indices is not supported")
    if not is_max and (not count_include_pad or divisor_override is not None):
        b.fail(node, "average pooling must count padding as zeros "
                     "(count_include_pad=True, no divisor_override)")
    return _add_pool(b, node, v, is_max, kernel, stride, padding)


def convert_pool(b, node, module):
    one_d = isinstance(module, (nn.MaxPool1d, nn.AvgPool1d))
    is_max = isinstance(module, (nn.MaxPool1d, nn.MaxPool2d))
    v = _single_input(b, node, type(module).__name__)
    b.require_layout(node, v, ("channels1d",) if one_d else ("image",), type(module).__name__)
    return _check_pool(b, node, v, one_d, is_max, module.kernel_size, module.stride,
                       module.padding, module.ceil_mode, getattr(module, "dilation", 1),
                       getattr(module, "return_indices", False),
                       getattr(module, "count_include_pad", True),
                       getattr(module, "divisor_override", None))


def _functional_pool(is_max):
    names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices") \
        if is_max else ("kernel_size", "stride", "padding", "ceil_mode",
                        "count_include_pad", "divisor_override")
    defaults = (None, None, 0, 1, False, False) if is_max else \
        (None, None, 0, False, True, None)

    def convert(b, node, module=None):
        v = b.value(node, node.args[0])
        b.require_layout(node, v, ("image",), "%s_pool2d" % ("max" if is_max else "avg"))
        o = _pool_options(node, names, defaults)
        return _check_pool(b, node, v, False, is_max, o["kernel_size"], o["stride"],
                           o["padding"], o["ceil_mode"], o.get("dilation", 1),
                           o.get("return_indices", False), o.get("count_include_pad", True),
                           o.get("divisor_override"))
    return convert


def _adaptive_pool(b, node, v, is_max):
    """An adaptive pool over the example's positions is a fixed pool when
    every output cell reads an equal, disjoint window: the input size a
    multiple of the output size."""
    b.require_layout(node, v, ("image",), "adaptive pooling")
    sizes, out = b.shape(node.args[0])[2:4], b.shape(node)[2:4]
    if any(n % o for n, o in zip(sizes, out)):
        b.fail(node, "adaptive pooling of %s positions to %s: the windows overlap or differ "
                     "in size (the input is not a multiple of the output), which no fixed "
                     "pooling computes; use an input size that is a multiple of the output"
                     % (tuple(sizes), tuple(out)))
    kernel = tuple(n // o for n, o in zip(sizes, out))
    return _add_pool(b, node, v, is_max, kernel, kernel, (0, 0))


def convert_adaptive_pool(b, node, module=None):
    is_max = isinstance(module, nn.AdaptiveMaxPool2d) if module is not None else \
        node.target is F.adaptive_max_pool2d
    if is_max and (getattr(module, "return_indices", False) or
                   node.kwargs.get("return_indices") or len(node.args) > 2):
        b.fail(node, "adaptive max pooling with return_indices is not supported")
    return _adaptive_pool(b, node, b.value(node, node.args[0]), is_max)


def convert_mean(b, node, module=None):
    """x.mean((2, 3)) / torch.mean(x, dim=(-2, -1), keepdim): global average
    pooling of an image (then flattened to its channels without keepdim)."""
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    v = b.value(node, node.args[0])
    shape = b.shape(node.args[0])
    dims = {d % len(shape) for d in (dims if isinstance(dims, (tuple, list)) else (dims,))} \
        if dims is not None else None
    if b.layers[v.group].layout != "image" or dims != {2, 3} or \
            node.kwargs.get("dtype") is not None:
        b.fail(node, "mean over dims %s of a %s tensor: only the mean over the positions of "
                     "an image (dims 2 and 3) is supported" % (dims, b.layers[v.group].layout))
    pooled = _add_pool(b, node, v, False, tuple(shape[2:4]), tuple(shape[2:4]), (0, 0))
    if keepdim:
        return pooled
    layer = b.new_layer(node, "flatten", shape[1], [pooled.group], layout="plain",
                        name=node.name + ".flatten")
    return b.added(layer, b.graph.add_flatten(pooled.group, name=layer.node))


# -- LSTM and GRU -----------------------------------------------------------

def convert_recurrent(b, node, module):
    kind = "lstm" if isinstance(module, nn.LSTM) else "gru"
    name = type(module).__name__
    v = _single_input(b, node, name)
    b.require_layout(node, v, ("sequence",), name)
    if not module.batch_first:
        b.fail(node, "batch_first=False: only batch_first=True recurrent layers are "
                     "supported (the sequence must be (batch, time, features))")
    if module.bidirectional:
        b.fail(node, "bidirectional layers are not supported (the C builders run forward)")
    if getattr(module, "proj_size", 0):
        b.fail(node, "LSTM with proj_size is not supported")
    layers, source = [], v.group
    add = b.graph.add_lstm if kind == "lstm" else b.graph.add_gru
    for index in range(module.num_layers):
        get = lambda what: getattr(module, "%s_l%d" % (what, index), None)  # noqa: E731
        _check_dtype(b, node, get("weight_ih"))
        tensors = [t.detach() if t is not None else None
                   for t in (get("weight_ih"), get("weight_hh"), get("bias_ih"),
                             get("bias_hh"))]
        name_l = node.name if module.num_layers == 1 else "%s.l%d" % (node.name, index)
        layer = b.new_layer(node, kind, module.hidden_size, [source], module=node.target,
                            name=name_l)
        group = add(source, module.hidden_size, *tensors, name=name_l)
        b.added(layer, group)
        layers.append(layer)
        source = group
    b.own(node, "recurrent", layers=layers, cell=kind)
    return TupleValue({0: Value(source, False)},
                      "only the output sequence out[0] (all steps of the last layer) is; "
                      "use out[0][:, -1] for the last step instead of h_n")


# -- attention, norms, Transformer encoders ---------------------------------

def add_attention(b, node, source, mha, name, module_name):
    """The five groups of a self-attention over group `source`; returns
    their layers (q, k, v, core, out)."""
    if not mha.batch_first:
        b.fail(node, "MultiheadAttention(batch_first=False): only batch_first=True is "
                     "supported (the sequence must be (batch, time, features))")
    if not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn:
        b.fail(node, "MultiheadAttention with kdim/vdim, add_bias_kv or add_zero_attn is "
                     "not supported")
    _check_dtype(b, node, mha.in_proj_weight)
    e = mha.embed_dim
    detach = lambda t: t.detach() if t is not None else None  # noqa: E731
    out = b.graph.add_attention(source, mha.num_heads, detach(mha.in_proj_weight),
                                detach(mha.in_proj_bias), detach(mha.out_proj.weight),
                                detach(mha.out_proj.bias))
    layers = []
    for offset, role in zip(range(4, -1, -1), ("q", "k", "v", "core", "out")):
        layer = b.new_layer(node, "attention." + role, e, [source] if role in "qkv" else [],
                            module=module_name, name=name if role == "out" else
                            "%s.%s" % (name, role), layout="sequence")
        if role == "core":
            layer.sources = [out - 4, out - 3, out - 2]
        elif role == "out":
            layer.sources = [out - 1]
        b.added(layer, out - offset)
        layers.append(layer)
    b.graph.set_name(out, name)
    return layers


def convert_attention(b, node, module):
    args = list(node.args) + [node.kwargs.get(k) for k in ("query", "key", "value")
                              if k in node.kwargs]
    q, k, v = (args + [None, None, None])[:3]
    if not (q is k is v) or q is None:
        b.fail(node, "only self-attention mha(x, x, x) is supported (cross-attention "
                     "has no C builder)")
    positional = dict(zip(("query", "key", "value", "key_padding_mask", "need_weights",
                           "attn_mask"), node.args))
    for key in ("key_padding_mask", "attn_mask"):
        if node.kwargs.get(key) is not None or positional.get(key) is not None:
            b.fail(node, "%s is not supported (the C attention has no masks)" % key)
    value = b.value(node, q)
    b.require_layout(node, value, ("sequence",), "MultiheadAttention")
    layers = add_attention(b, node, value.group, module, node.name, node.target)
    b.own(node, "attention", layers=layers)
    return TupleValue({0: Value(layers[-1].group, False)},
                      "the attention weights (item 1) are not a group of units")


def add_layer_norm(b, node, source, norm, name, module_name):
    if len(norm.normalized_shape) != 1:
        b.fail(node, "LayerNorm over %s: only the last dimension is supported"
               % (tuple(norm.normalized_shape),))
    weight = norm.weight.detach() if norm.weight is not None else None
    bias = norm.bias.detach() if norm.bias is not None else None
    layer = b.new_layer(node, "norm", norm.normalized_shape[0], [source], module=module_name,
                        name=name)
    group = b.graph.add_norm(source, "layer", weight, bias, norm.eps, name=name)
    b.added(layer, group)
    return layer


def convert_layer_norm(b, node, module):
    v = _single_input(b, node, "LayerNorm")
    b.require_layout(node, v, ("plain", "sequence", "nhwc"), "LayerNorm")
    layer = add_layer_norm(b, node, v.group, module, node.name, node.target)
    b.own(node, "norm", layer=layer)
    return Value(layer.group, False)


def _encoder_activation(b, node, layer):
    act = layer.activation
    code = getattr(layer, "activation_relu_or_gelu", 0)
    if act is F.relu or isinstance(act, nn.ReLU) or code == 1:
        return "relu"
    if act is F.gelu or (isinstance(act, nn.GELU) and act.approximate == "none") or code == 2:
        return "gelu"
    b.fail(node, "encoder activation %r: relu and gelu are supported" % (act,))


def add_encoder_layer(b, node, source, layer, name, module_name):
    """The groups of one TransformerEncoderLayer (post-norm or pre-norm) over
    group `source`; returns (roles, output group)."""
    def sub(role):
        return "%s.%s" % (name, role), "%s.%s" % (module_name, role)

    def add_sum(x, y, role):
        nm = "%s.%s" % (name, role)
        s = b.new_layer(node, "sum", b.layers[x].width, [x, y], name=nm)
        b.added(s, b.graph.add_sum(x, y))
        b.graph.set_name(s.group, nm)
        return s.group

    def feed_forward(x):
        f1 = b.new_layer(node, "dense", layer.linear1.out_features, [x], name=sub("linear1")[0],
                         module=sub("linear1")[1])
        b.added(f1, b.graph.add_dense(x, layer.linear1.weight.detach(),
                                      _detach(layer.linear1.bias), name=f1.node,
                                      activation=_encoder_activation(b, node, layer)))
        f1.activation, f1.activated = _encoder_activation(b, node, layer), True
        f2 = b.new_layer(node, "dense", layer.linear2.out_features, [f1.group],
                         name=sub("linear2")[0], module=sub("linear2")[1])
        b.added(f2, b.graph.add_dense(f1.group, layer.linear2.weight.detach(),
                                      _detach(layer.linear2.bias), name=f2.node))
        return f1, f2

    roles = {}
    x = source
    if layer.norm_first:
        roles["norm1"] = add_layer_norm(b, node, x, layer.norm1, *sub("norm1"))
        roles["attn"] = add_attention(b, node, roles["norm1"].group, layer.self_attn,
                                      *sub("self_attn"))
        roles["add1"] = add_sum(x, roles["attn"][-1].group, "add1")
        roles["norm2"] = add_layer_norm(b, node, roles["add1"], layer.norm2, *sub("norm2"))
        roles["linear1"], roles["linear2"] = feed_forward(roles["norm2"].group)
        roles["add2"] = add_sum(roles["add1"], roles["linear2"].group, "add2")
        return roles, roles["add2"]
    roles["attn"] = add_attention(b, node, x, layer.self_attn, *sub("self_attn"))
    roles["add1"] = add_sum(x, roles["attn"][-1].group, "add1")
    roles["norm1"] = add_layer_norm(b, node, roles["add1"], layer.norm1, *sub("norm1"))
    roles["linear1"], roles["linear2"] = feed_forward(roles["norm1"].group)
    roles["add2"] = add_sum(roles["norm1"].group, roles["linear2"].group, "add2")
    roles["norm2"] = add_layer_norm(b, node, roles["add2"], layer.norm2, *sub("norm2"))
    return roles, roles["norm2"].group


def _detach(t):
    return t.detach() if t is not None else None


def convert_encoder_layer(b, node, module):
    v = _single_input(b, node, "TransformerEncoderLayer")
    b.require_layout(node, v, ("sequence",), "TransformerEncoderLayer")
    roles, out = add_encoder_layer(b, node, v.group, module, node.name, node.target)
    b.own(node, "encoder", layers=[roles], norm=None)
    return Value(out, False)


def convert_encoder(b, node, module):
    v = _single_input(b, node, "TransformerEncoder")
    b.require_layout(node, v, ("sequence",), "TransformerEncoder")
    all_roles, x = [], v.group
    for i, layer in enumerate(module.layers):
        roles, x = add_encoder_layer(b, node, x, layer, "%s.layers.%d" % (node.name, i),
                                     "%s.layers.%d" % (node.target, i))
        all_roles.append(roles)
    norm = None
    if module.norm is not None:
        if not isinstance(module.norm, nn.LayerNorm):
            b.fail(node, "the encoder's final norm is a %s; LayerNorm is supported"
                   % type(module.norm).__name__)
        norm = add_layer_norm(b, node, x, module.norm, node.name + ".norm",
                              node.target + ".norm")
        x = norm.group
    b.own(node, "encoder", layers=all_roles, norm=norm)
    return Value(x, False)


MODULES = {
    nn.Conv1d: convert_conv,
    nn.Conv2d: convert_conv,
    nn.BatchNorm1d: convert_batch_norm,
    nn.BatchNorm2d: convert_batch_norm,
    nn.MaxPool1d: convert_pool,
    nn.MaxPool2d: convert_pool,
    nn.AvgPool1d: convert_pool,
    nn.AvgPool2d: convert_pool,
    nn.AdaptiveAvgPool2d: convert_adaptive_pool,
    nn.AdaptiveMaxPool2d: convert_adaptive_pool,
    nn.LSTM: convert_recurrent,
    nn.GRU: convert_recurrent,
    nn.MultiheadAttention: convert_attention,
    nn.LayerNorm: convert_layer_norm,
    nn.TransformerEncoderLayer: convert_encoder_layer,
    nn.TransformerEncoder: convert_encoder,
}

FUNCTIONS = {
    F.adaptive_avg_pool2d: convert_adaptive_pool,
    F.adaptive_max_pool2d: convert_adaptive_pool,
    F.max_pool2d: _functional_pool(True),
    F.avg_pool2d: _functional_pool(False),
    torch.mean: convert_mean,
}

METHODS = {"mean": convert_mean}


# -- layer norm as a function, constant scales (ConvNeXt) ----------------------

def _constant(b, node, arg):
    value = b.values.get(arg.name) if isinstance(arg, torch.fx.Node) else None
    return value if isinstance(value, Constant) else None


def convert_layer_norm_function(b, node, module=None):
    """F.layer_norm(x, (C,), weight, bias, eps) over the units of x with the
    model's own weight and bias (ConvNeXt's LayerNorm2d)."""
    names = ("normalized_shape", "weight", "bias", "eps")
    o = dict(zip(names, node.args[1:]))
    for name in names:
        o.setdefault(name, node.kwargs.get(name))
    v = b.value(node, node.args[0])
    layout = b.require_layout(node, v, ("plain", "sequence", "nhwc"), "layer_norm")
    shape = tuple(o["normalized_shape"] or ())
    weight, bias = (_constant(b, node, o[k]) if o[k] is not None else None
                    for k in ("weight", "bias"))
    if len(shape) != 1 or shape[0] != b.layers[v.group].width or \
            (o["weight"] is not None and weight is None) or \
            (o["bias"] is not None and bias is None):
        b.fail(node, "layer_norm over %s with weight %r: only the units (the last "
                     "dimension), with weights stored on the model, are supported"
                     % (shape, o["weight"]))
    owner = weight.target.rsplit(".", 1)[0] if weight is not None else node.name
    layer = b.new_layer(node, "norm", shape[0], [v.group], module=owner, layout=layout)
    group = b.graph.add_norm(v.group, "layer", weight.tensor.detach() if weight else None,
                             bias.tensor.detach() if bias else None,
                             o["eps"] if o["eps"] is not None else 1e-5, name=node.name)
    b.own(node, "norm_function", layer=layer, module_name=owner,
          like=weight.tensor if weight else None)
    return b.added(layer, group)


def convert_mul(b, node, module=None):
    """A tensor stored on the model times a layer's output, broadcast over
    positions (ConvNeXt's layer scale): a per-unit affine map."""
    args = list(node.args)
    constants = [a for a in args if _constant(b, node, a) is not None]
    others = [a for a in args if _constant(b, node, a) is None]
    if len(args) == 2 and not constants and not node.kwargs and \
            all(isinstance(a, torch.fx.Node) for a in args):
        return convert_product(b, node)
    if len(args) != 2 or len(constants) != 1 or not isinstance(others[0], torch.fx.Node):
        b.fail(node, "only a layer's output times a per-unit tensor stored on the model "
                     "(a layer scale) is supported; the product of two layers' outputs "
                     "(gates, squeeze-and-excitation) has no C block yet")
    scale = _constant(b, node, constants[0])
    v = b.value(node, others[0])
    layout = b.layers[v.group].layout
    width = b.layers[v.group].width
    shape = b.shape(others[0])
    dim = CHANNEL_DIM[layout]
    expected = [1] * (len(shape) - 1)
    expected[dim - 1] = width
    tensor = scale.tensor.detach()
    if list(tensor.shape) not in (expected, expected[dim - 1:]) and \
            list(tensor.shape) != [width]:
        b.fail(node, "a tensor of shape %s times a %s value of shape %s: only a per-unit "
                     "scale (one value per unit, broadcast over positions) is supported"
                     % (tuple(tensor.shape), layout, tuple(shape)))
    _check_dtype(b, node, tensor)
    layer = b.new_layer(node, "affine", width, [v.group], module=scale.target)
    group = b.graph.add_affine(v.group, tensor.reshape(width).contiguous(), None,
                               name=node.name)
    b.own(node, "scale", layer=layer, target=scale.target, shape=tuple(tensor.shape),
          scale_first=args[0] is constants[0])
    return b.added(layer, group)


def convert_product(b, node):
    """The product of two layers' outputs (a gate): equal shapes, or one of
    them (N, C, 1, 1) over an image (squeeze-and-excitation)."""
    x, y = node.args
    vx, vy = b.value(node, x), b.value(node, y)
    sx, sy = b.shape(x), b.shape(y)
    lx, ly = b.layers[vx.group].layout, b.layers[vy.group].layout
    px, py = b.graph.positions(vx.group), b.graph.positions(vy.group)
    if py != px and px == (1, 1):  # the broadcast factor goes second
        (x, vx, sx, lx, px), (y, vy, sy, ly, py) = (y, vy, sy, ly, py), (x, vx, sx, lx, px)
    width = b.layers[vx.group].width
    if lx != ly or b.layers[vy.group].width != width or \
            (sx != sy and (lx != "image" or tuple(sy) != (sx[0], width, 1, 1))):
        b.fail(node, "multiplies tensors of shapes %s and %s (%s and %s): a product of two "
                     "layers needs equal shapes, or a (N, C, 1, 1) gate over an image"
                     % (tuple(sx), tuple(sy), lx, ly))
    layer = b.new_layer(node, "product", width, [vx.group, vy.group])
    group = b.graph.add_product(vx.group, vy.group)
    b.graph.set_name(group, node.name)
    b.own(node, "product", layer=layer, factors=(x.name, y.name))
    return b.added(layer, group)


FUNCTIONS.update({
    F.layer_norm: convert_layer_norm_function,
    operator.mul: convert_mul,
    torch.mul: convert_mul,
})
METHODS.update({"mul": convert_mul})


def convert_stochastic_depth(b, node, module=None):
    """torchvision.ops.stochastic_depth: the identity unless it trains."""
    names = ("p", "mode", "training")
    o = dict(zip(names, node.args[1:]))
    for name in names:
        o.setdefault(name, node.kwargs.get(name, True if name == "training" else None))
    if o["training"] and o["p"]:
        b.fail(node, "stochastic depth in training mode drops samples at random; "
                     "trace the model in eval mode")
    return b.alias(node, node.args[0])


# by qualified name: torchvision is not imported for this
FUNCTIONS_BY_NAME = {
    "torchvision.ops.stochastic_depth.stochastic_depth": convert_stochastic_depth,
}
