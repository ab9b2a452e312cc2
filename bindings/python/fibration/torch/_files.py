"""save / load of torch models as safetensors model files with libfibration's
structure metadata (fib_model_save / fib_model_load, docs/model-files.md),
the files the `fibration` command reads.

The C side stores input, dense and sum groups in this version, so models of
Linear layers, the supported activations and residual additions round-trip;
a model with any other layer raises UnsupportedModelError naming it.
"""

import numpy as np
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from .. import FibrationError, Graph, _ffi
from ._trace import UnsupportedModelError, trace

ACTIVATIONS = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "gelu": F.gelu,
               "silu": F.silu, "leaky_relu": F.leaky_relu}
STORABLE = ("input", "dense", "sum")


def _example_for(model):
    first = next((m for m in model.modules() if isinstance(m, nn.Linear)), None)
    if first is None:
        raise ValueError("give example_input: the model has no Linear layer to infer "
                         "its input width from")
    return torch.zeros(1, first.in_features, dtype=first.weight.dtype)


def save(model, path, example_input=None, dtype=0):
    """Writes `model` to `path` (safetensors + structure metadata) through
    fib_model_save. example_input defaults to a zero vector as wide as the
    first Linear layer's input. dtype: 'float32', 'float64' or 0 (keep).
    Tensors are named "<module name>.weight" / ".bias", as in the state dict."""
    net = trace(model, example_input if example_input is not None else _example_for(model))
    other = [(l.node, l.kind) for l in net.layers if l.kind not in STORABLE]
    if other:
        raise UnsupportedModelError(
            "model files of this libfibration version hold Linear layers, activations and "
            "residual sums only (fib_model_save: input, dense and sum groups); this model "
            "also has %s" % ", ".join("%s (%s)" % item for item in other))
    for layer in net.layers:
        if layer.kind == "dense":
            net.graph.set_name(layer.group, layer.module)
    try:
        net.graph.save(str(path), dtype)
    except FibrationError as e:
        if e.code == _ffi.FIB_E_UNSUPPORTED:
            raise UnsupportedModelError(str(e)) from e
        raise


def _module_name(graph, info, used):
    name = info.name or "group%d" % info.id
    if not all(part.isidentifier() or part.isdigit() for part in name.split(".")) \
            or name in used:
        name = "group%d" % info.id
    used.add(name)
    return name


def load(path):
    """Reads a model file (fib_model_load) into a torch.fx.GraphModule of
    Linear layers, activations and residual sums, with the file's tensor
    names as state-dict keys. Weights are float64 when stored so, else float32
(F16 and BF16 files load as float32, as fib_model_load reads them)."""
    graph = Graph.load(str(path))
    dtypes = _tensor_dtypes(path)
    fx = torch.fx.Graph()
    root = nn.Module()
    values, used, outputs = {}, set(), []
    for info in graph.groups():
        if info.op == "input":
            values[info.id] = fx.placeholder(info.name or "x%d" % info.id)
        elif info.op == "dense":
            weight, bias = graph.read_dense(info.id)
            stored = dtypes.get("%s.weight" % info.name, dtypes.get("groups.%d.weight" % info.id))
            dtype = torch.float64 if stored == "F64" else torch.float32
            linear = nn.Linear(weight.shape[1], weight.shape[0], bias=info.has_bias,
                               dtype=dtype)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(weight))
                if info.has_bias:
                    linear.bias.copy_(torch.from_numpy(bias))
            name = _module_name(graph, info, used)
            _set(root, name, linear)
            values[info.id] = fx.call_module(name, (values[info.sources[0]],))
        elif info.op == "sum":
            index_a, index_b = graph.read_sum(info.id)
            operands = []
            for source, index in zip(info.sources, (index_a, index_b)):
                value = values[source]
                width = graph.group(source).n_units
                if len(index) != width or not np.array_equal(index, np.arange(width)):
                    buffer = "gather%d_%d" % (info.id, len(operands))
                    root.register_buffer(buffer, torch.from_numpy(index.astype(np.int64)))
                    value = fx.call_function(torch.index_select,
                                             (value, 1, fx.get_attr(buffer)))
                operands.append(value)
            values[info.id] = fx.call_function(torch.add, tuple(operands))
        else:
            raise UnsupportedModelError("group %d (%r) is a %s group; load() rebuilds input, "
                                        "dense and sum groups" % (info.id, info.name, info.op))
        if info.op != "input" and info.activation != "linear":
            act = ACTIVATIONS[info.activation]
            args = (values[info.id], info.parameter) if info.activation == "leaky_relu" \
                else (values[info.id],)
            values[info.id] = fx.call_function(act, args)
        if info.is_output:
            outputs.append(values[info.id])
    fx.output(outputs[0] if len(outputs) == 1 else tuple(outputs))
    module = torch.fx.GraphModule(root, fx, class_name="LoadedModel")
    return module.eval()


def _tensor_dtypes(path):
    """{tensor name: safetensors dtype} from the file's header (the C API
    does not report a block's dtype)."""
    import json
    import struct
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(length))
    return {k: v["dtype"] for k, v in header.items() if k != "__metadata__"}


def _set(root, qualified, module):
    *parents, leaf = qualified.split(".")
    for name in parents:
        child = getattr(root, name, None)
        if child is None:
            child = nn.Module()
            setattr(root, name, child)
        root = child
    setattr(root, leaf, module)
