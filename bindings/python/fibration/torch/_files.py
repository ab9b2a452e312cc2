"""save / load of torch models as safetensors model files with libfibration's
structure metadata (fib_model_save / fib_base_save / fib_model_load,
docs/model-files.md), the files the `fibration` command reads.

save() traces the model (the same trace analyze and compress use), names
every group after its module, so the file's tensors are named like the state
dict ("features.0.weight", "rnn.l1.weight_ih"), and lets the C writer store
every block kind. A model made by compress() is saved from its base
(fib_base_save: gathers, pair and norm multiplicities, and the projection
`fibration lift` needs) as long as its weights are still those compress()
gave; after retraining it is traced like any other model, which works when
it is made of standard layers only.

load() reads the file (fib_model_load) and turns it into a torch module with
the rebuild compress() uses (_rebuild.py): the file's graph plays the base,
and a skeleton fx graph made from the file's groups plays the traced
original (which modules, in which order, of which dtype). Layers come back as
standard torch layers where torch has them (Linear, Conv1d/2d, BatchNorm1d/2d,
MaxPool/AvgPool, LSTM/GRU, MultiheadAttention, LayerNorm) and as the
package's own small modules otherwise (FiberAttention, WeightedLayerNorm,
index_select gathers).
"""

import json
import operator
import struct
from types import SimpleNamespace

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from .. import FibrationError, Graph, _ffi
from ._names import LAYER_SUFFIX, layer_name
from ._rebuild import rebuild
from ._safety import check_trace
from ._trace import Layer, UnsupportedModelError, trace

ACTIVATIONS = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "gelu": F.gelu,
               "silu": F.silu, "leaky_relu": F.leaky_relu, "relu6": F.relu6,
               "hardswish": F.hardswish, "hardsigmoid": F.hardsigmoid, "mish": F.mish,
               "softplus": F.softplus,
               "gelu_tanh": lambda x: F.gelu(x, approximate="tanh")}
# tensors that are structure, not weights: they say nothing of the dtype
STRUCTURE_TENSORS = ("multiplicity", "pair_multiplicity", "pair_frequency")


# -- save ------------------------------------------------------------------

class CompressedSource:
    """What compress() attaches to the module it returns: the traced original
    and the colouring, from which save() writes the base. Not copied with
    the module (deepcopy shares it, pickling drops it)."""

    def __init__(self, net, coloring):
        self.net, self.coloring = net, coloring

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        return (_dropped, ())

    def base_if_unchanged(self, module):
        """The base with groups named after their modules, when `module`
        still holds exactly the weights compress() gave it; else None."""
        _name_groups(self.net)
        base = self.net.graph.compress(self.coloring)
        fresh = rebuild(self.net, base, "Check").state_dict()
        current = module.state_dict()
        if list(fresh) != list(current):
            return None
        for key, value in fresh.items():
            other = current[key]
            if value.shape != other.shape or value.dtype != other.dtype \
                    or not torch.equal(value, other.to(value.device)):
                return None
        return base


def _dropped():
    return None


def _example_for(model):
    first = next((m for m in model.modules() if isinstance(m, nn.Linear)), None)
    if first is None:
        raise ValueError("give example_input: the model has no Linear layer to infer "
                         "its input width from")
    return torch.zeros(1, first.in_features, dtype=first.weight.dtype)


def _name_groups(net):
    """Every group named as its layer shows (_names.layer_name)."""
    for layer in net.layers:
        net.graph.set_name(layer.group, layer_name(layer))


def _parameter_dtype(model):
    p = next((p for p in model.parameters() if p.is_floating_point()), None)
    return "float32" if p is not None and p.dtype == torch.float32 else "float64"


def _write(writer, path, dtype):
    try:
        writer(str(path), dtype)
    except FibrationError as e:
        if e.code == _ffi.FIB_E_UNSUPPORTED:
            raise UnsupportedModelError(str(e)) from e
        raise


def save(model, path, example_input=None, dtype=0):
    """Writes `model` to `path` (safetensors + structure metadata).

    Every module kind the package converts is stored (Linear, Conv1d/2d,
    BatchNorm1d/2d as a per-channel affine map, pooling, flatten, LSTM/GRU,
    last steps, MultiheadAttention, LayerNorm, Transformer encoders, residual
    sums, activations). A module returned by compress() is written as its
    base (fib_base_save), with gathers, multiplicities and the projection,
    while its weights are those compress() gave it.

    example_input: as for analyze (default: a zero vector as wide as the
    first Linear layer's input). dtype: 'float32', 'float64' or 0: the
    model's own (for a compressed model, the dtype of its parameters).
    Tensors are named "<module name>.<tensor>" ("fc.weight", "conv1.bias",
    "rnn.l1.weight_hh", "attn.q.weight"). Layers that cannot be traced or
    stored raise UnsupportedModelError naming them."""
    source = getattr(model, "_fibration_source", None)
    if isinstance(source, CompressedSource):
        base = source.base_if_unchanged(model)
        if base is not None:
            _write(base.save, path, dtype or _parameter_dtype(model))
            return
    from ._modules import InputClassMean
    pooled = [name for name, m in model.named_modules() if isinstance(m, InputClassMean)]
    if pooled:
        raise UnsupportedModelError(
            "%s: the means of merged input classes (a budget's merge_inputs) have no block "
            "in the model file format of this version; compress with merge_inputs=False to "
            "save the result, or save the original model" % ", ".join(repr(n) for n in pooled))
    example = example_input if example_input is not None else _example_for(model)
    try:
        net = trace(model, example)
        check_trace(net, example)
    except UnsupportedModelError as e:
        if isinstance(source, CompressedSource):
            raise UnsupportedModelError(
                "this compressed model's weights changed since compress(), so it cannot "
                "be written as its base, and it holds merged units only a base stores "
                "(%s), which cannot be traced (%s); save it before changing its weights"
                % (", ".join(_merged_parts(model)) or "gathers", e)) from e
        raise
    _name_groups(net)
    _write(net.graph.save, path, dtype)


def _merged_parts(model):
    from ._modules import FiberAttention, WeightedLayerNorm
    parts = ["%s %r" % (type(m).__name__, name) for name, m in model.named_modules()
             if isinstance(m, (FiberAttention, WeightedLayerNorm))]
    parts += ["index_select gather %r" % name for name, _ in model.named_buffers()
              if "gather" in name and "." not in name]
    return parts


# -- load ------------------------------------------------------------------

def _header(path):
    """(tensor dtypes {name: 'F32'...}, the structure metadata's groups)."""
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(length))
    metadata = header.pop("__metadata__", {}) or {}
    dtypes = {k: v["dtype"] for k, v in header.items()}
    groups = None
    if "fibration" in metadata:
        groups = json.loads(metadata["fibration"]).get("groups")
    return dtypes, groups


class _Like(nn.Module):
    """A stand-in original for blocks whose rebuilder only asks for the
    dtype (attention: in_proj_weight)."""

    def __init__(self, dtype):
        super().__init__()
        self.in_proj_weight = nn.Parameter(torch.empty(0, dtype=dtype))


class _Skeleton:
    """The fx graph and layers of a loaded file, at the file's widths, with
    modules that carry only configuration (sizes, strides, bias or not,
    dtype). rebuild() fills them from the file's graph."""

    def __init__(self, graph, path):
        self.graph = graph
        self.path = str(path)
        self.infos = graph.groups()
        self.tensor_dtypes, meta = _header(path)
        self.meta = meta or [{} for _ in self.infos]
        self.consumers = {g.id: [] for g in self.infos}
        for info in self.infos:
            for s in info.sources:
                self.consumers[s].append(info.id)
        self.fx = torch.fx.Graph()
        self.root = nn.Module()
        self.layers = [None] * len(self.infos)
        self.values = {}
        self.owners = {}
        self.used = set()
        self.dtypes = {}

    # -- helpers --------------------------------------------------------
    def fail(self, info, why):
        raise UnsupportedModelError("%s: group %d (%r, %s): %s" % (
            self.path, info.id, info.name, info.op, why))

    def dtype(self, info):
        names = [v for k, v in (self.meta[info.id].get("tensors") or {}).items()
                 if v is not None and k not in STRUCTURE_TENSORS]
        if names:
            stored = self.tensor_dtypes.get(names[0])
            dtype = torch.float64 if stored == "F64" else torch.float32
        elif info.sources:
            dtype = self.dtypes[info.sources[0]]
        else:
            dtype = None   # an input: the dtype of what reads it
        self.dtypes[info.id] = dtype
        return dtype

    def tensor_keys(self, info):
        return {k for k, v in (self.meta[info.id].get("tensors") or {}).items()
                if v is not None}

    def name(self, info, name=None):
        name = name if name is not None else info.name
        ok = name and all(part.isidentifier() for part in name.split(".")
                          if not part.isdigit()) and name not in self.used \
            and not any(u.startswith(name + ".") or name.startswith(u + ".")
                        for u in self.used)
        if not ok:
            name = "group%d" % info.id
        self.used.add(name)
        return name

    def layout(self, group):
        return self.layers[group].layout

    def value(self, info, source):
        if source not in self.values:
            self.fail(info, "it reads group %d, which is not a value of its own in torch "
                            "(a part of an attention)" % source)
        return self.values[source]

    def layer(self, info, kind, layout, node_name, module=None):
        layer = Layer(info.id, node_name, kind, info.n_units, list(info.sources), module,
                      fx_node=node_name, layout=layout, activation=info.activation,
                      activation_parameter=info.parameter)
        self.layers[info.id] = layer
        return layer

    def module(self, name, module):
        *parents, leaf = name.split(".")
        root = self.root
        for part in parents:
            child = getattr(root, part, None)
            if child is None:
                child = nn.Module()
                setattr(root, part, child)
            root = child
        setattr(root, leaf, module)

    def activate(self, info, node):
        if info.activation != "linear":
            act = ACTIVATIONS[info.activation]
            args = (node, info.parameter) if info.activation == "leaky_relu" else (node,)
            node = self.fx.call_function(act, args)
        self.values[info.id] = node

    def input_layout(self, info):
        rows, cols = self.graph.positions(info.id)
        ops = {self.infos[c].op for c in self.consumers[info.id]}
        if ops & {"conv", "pool", "flatten"} or ("affine" in ops and (rows, cols) != (1, 1)):
            return "channels1d" if rows == 1 and cols > 1 else "image"
        if (rows, cols) == (1, 1):
            return "plain"
        return "sequence"

    # -- the groups -----------------------------------------------------
    def build(self):
        i = 0
        while i < len(self.infos):
            info = self.infos[i]
            if info.op == "dense" and self._is_attention(i):
                self.attention(i)
                i += 5
                continue
            if info.op in ("lstm", "gru"):
                i += self.recurrent(i)
                continue
            handler = getattr(self, "op_" + info.op, None)
            if handler is None:
                self.fail(info, "load() has no torch module for this op")
            handler(info)
            i += 1
        for info in self.infos:
            if self.layers[info.id] is None or info.is_output and info.id not in self.values:
                self.fail(info, "not rebuilt")
        for info in self.infos:
            if info.op == "input" and self.dtypes.get(info.id) is None:
                self.dtypes[info.id] = torch.float32
        outputs = [self.values[g.id] for g in self.infos if g.is_output]
        self.fx.output(outputs[0] if len(outputs) == 1 else tuple(outputs))
        gm = torch.fx.GraphModule(self.root, self.fx, class_name="Skeleton")
        return SimpleNamespace(gm=gm, layers=self.layers, owners=self.owners,
                               model=SimpleNamespace(training=False))

    def op_input(self, info):
        layout = self.input_layout(info)
        name = info.name if info.name.isidentifier() and info.name not in self.used \
            else "x%d" % info.id
        self.used.add(name)
        node = self.fx.placeholder(name)
        self.layer(info, "input", layout, node.name)
        self.dtype(info)
        self.values[info.id] = node

    def _own(self, node, kind, **extra):
        self.owners[node.name] = (kind, extra)

    def op_dense(self, info):
        source = info.sources[0]
        layout = self.layout(source)
        if layout not in ("plain", "sequence"):
            self.fail(info, "a dense layer over a %s has no torch Linear form" % layout)
        name = self.name(info)
        dtype = self.dtype(info)
        n_in = self.infos[source].n_units
        self.module(name, nn.utils.skip_init(nn.Linear, n_in, info.n_units,
                                             bias=info.has_bias, dtype=dtype))
        node = self.fx.call_module(name, (self.value(info, source),))
        self._own(node, "dense", layer=self.layer(info, "dense", layout, node.name, name))
        self.activate(info, node)

    def op_sum(self, info):
        a, b = info.sources
        node = self.fx.call_function(torch.add, (self.value(info, a), self.value(info, b)))
        self.dtype(info)
        self._own(node, "sum", layer=self.layer(info, "sum", self.layout(a), node.name))
        self.activate(info, node)

    def op_product(self, info):
        a, b = info.sources
        va, vb = self.value(info, a), self.value(info, b)
        node = self.fx.call_function(torch.mul, (va, vb))
        self.dtype(info)
        self._own(node, "product", factors=(va.name, vb.name),
                  layer=self.layer(info, "product", self.layout(a), node.name))
        self.activate(info, node)

    def op_conv(self, info):
        source = info.sources[0]
        layout = self.layout(source)
        kr, kc, sr, sc, pr, pc, groups = (int(v) for v in self.graph.block_params(info.id)[:7])
        n_in, dtype = self.infos[source].n_units, self.dtype(info)
        bias = "bias" in self.tensor_keys(info) or info.has_bias
        if layout == "channels1d" and kr == 1 and sr == 1 and pr == 0:
            conv = nn.utils.skip_init(nn.Conv1d, n_in, info.n_units, kc, stride=sc,
                                      padding=pc, groups=groups, bias=bias, dtype=dtype)
        elif layout == "image":
            conv = nn.utils.skip_init(nn.Conv2d, n_in, info.n_units, (kr, kc),
                                      stride=(sr, sc), padding=(pr, pc), groups=groups,
                                      bias=bias, dtype=dtype)
        else:
            self.fail(info, "a convolution over a %s" % layout)
        name = self.name(info)
        self.module(name, conv)
        node = self.fx.call_module(name, (self.value(info, source),))
        self._own(node, "conv", layer=self.layer(info, "conv", layout, node.name, name))
        self.activate(info, node)

    def op_affine(self, info):
        source = info.sources[0]
        layout = self.layout(source)
        cls = nn.BatchNorm2d if layout == "image" else nn.BatchNorm1d
        if layout == "sequence":
            self.fail(info, "a per-unit affine map over a sequence has no torch batch norm "
                            "form")
        name = self.name(info)
        self.module(name, cls(info.n_units, dtype=self.dtype(info)))
        node = self.fx.call_module(name, (self.value(info, source),))
        self._own(node, "affine", layer=self.layer(info, "affine", layout, node.name, name))
        self.activate(info, node)

    def op_pool(self, info):
        source = info.sources[0]
        layout = self.layout(source)
        kind, kr, kc, sr, sc, pr, pc = (int(v) for v in self.graph.block_params(info.id)[:7])
        if layout == "channels1d" and kr == 1 and sr == 1 and pr == 0:
            pool = nn.MaxPool1d(kc, sc, pc) if kind == 0 else nn.AvgPool1d(kc, sc, pc)
        elif layout == "image":
            pool = nn.MaxPool2d((kr, kc), (sr, sc), (pr, pc)) if kind == 0 else \
                nn.AvgPool2d((kr, kc), (sr, sc), (pr, pc))
        else:
            self.fail(info, "pooling over a %s" % layout)
        self.dtype(info)
        name = self.name(info)
        self.module(name, pool)
        node = self.fx.call_module(name, (self.value(info, source),))
        self._own(node, "pool", layer=self.layer(info, "pool", layout, node.name, name))
        self.activate(info, node)

    def op_flatten(self, info):
        source = info.sources[0]
        self.dtype(info)
        node = self.fx.call_function(torch.flatten, (self.value(info, source), 1))
        self.layer(info, "flatten", "plain", node.name)
        self.activate(info, node)

    def op_last_step(self, info):
        source = info.sources[0]
        if self.layout(source) != "sequence":
            self.fail(info, "a last step of a %s" % self.layout(source))
        self.dtype(info)
        node = self.fx.call_function(operator.getitem, (self.value(info, source),
                                                        (slice(None), -1)))
        self._own(node, "last_step",
                  layer=self.layer(info, "last_step", "plain", node.name))
        self.activate(info, node)

    def op_select_step(self, info):
        source = info.sources[0]
        if self.layout(source) != "sequence":
            self.fail(info, "a selected step of a %s" % self.layout(source))
        self.dtype(info)
        position = int(self.graph.block_params(info.id)[0])
        node = self.fx.call_function(operator.getitem, (self.value(info, source),
                                                        (slice(None), position)))
        self._own(node, "select_step",
                  layer=self.layer(info, "select_step", "plain", node.name))
        self.activate(info, node)

    def _constant(self, info, shape):
        """A parameter of the group's name and `shape`, which the rebuild
        fills from the file (class token, position embedding), and its
        get_attr node (emitted by the rebuild of the block reading it)."""
        name = self.name(info)
        self.module(name, nn.Parameter(torch.empty(shape, dtype=self.dtype(info))))
        node = self.fx.get_attr(name)
        self._own(node, "constant")
        return name, node

    def op_prepend(self, info):
        source = info.sources[0]
        layout = self.layout(source)
        if layout == "plain":
            self.fail(info, "positions prepended to a group without positions")
        k = int(self.graph.block_params(info.id)[0])
        name, token = self._constant(info, (1, k, info.n_units))
        x = self.value(info, source)
        node = self.fx.call_function(torch.cat, ((token, x),), {"dim": 1})
        self._own(node, "prepend", source=x.name, target=name, expanded=True,
                  layer=self.layer(info, "prepend", "sequence", node.name, name))
        self.activate(info, node)

    def op_position_shift(self, info):
        source = info.sources[0]
        layout = self.layout(source)
        rows, cols = self.graph.positions(source)
        x_shape = {"plain": (1, info.n_units), "sequence": (1, rows, info.n_units),
                   "image": (1, info.n_units, rows, cols),
                   "channels1d": (1, info.n_units, cols)}[layout]
        name, shift = self._constant(info, x_shape)
        x = self.value(info, source)
        node = self.fx.call_function(operator.add, (x, shift))
        self._own(node, "position_shift", source=x.name, target=name, shape=x_shape,
                  x_shape=x_shape, constant_first=False,
                  layer=self.layer(info, "position_shift", layout, node.name, name))
        self.activate(info, node)

    def op_norm(self, info):
        source = info.sources[0]
        layout = self.layout(source)
        params = self.graph.block_params(info.id)
        if int(params[0]) != 0:
            self.fail(info, "RMSNorm has no torch module in torch %s" % torch.__version__)
        if layout not in ("plain", "sequence"):
            self.fail(info, "a norm over a %s" % layout)
        name = self.name(info)
        self.module(name, nn.LayerNorm(info.n_units, dtype=self.dtype(info)))
        node = self.fx.call_module(name, (self.value(info, source),))
        self._own(node, "norm", layer=self.layer(info, "norm", layout, node.name, name))
        self.activate(info, node)

    def recurrent(self, start):
        """One module for a chain of LSTM/GRU groups named X.l0, X.l1, ...
        (a multi-layer module), else one per group. Returns the groups used."""
        first = self.infos[start]
        chain = [first]
        match = LAYER_SUFFIX.search(first.name)
        if match and match.group(0) == ".l0":
            stem = first.name[:match.start()]
            while start + len(chain) < len(self.infos):
                prev, nxt = chain[-1], self.infos[start + len(chain)]
                if nxt.op != first.op or nxt.name != "%s.l%d" % (stem, len(chain)) \
                        or nxt.sources != (prev.id,) or self.consumers[prev.id] != [nxt.id] \
                        or prev.activation != "linear" or nxt.has_bias != first.has_bias:
                    break
                chain.append(nxt)
            name = self.name(first, stem if len(chain) > 1 else None)
        else:
            name = self.name(first)
        source = first.sources[0]
        if self.layout(source) != "sequence":
            self.fail(first, "a recurrent layer over a %s" % self.layout(source))
        biases = [self.tensor_keys(g) & {"bias_ih", "bias_hh"} for g in chain]
        if any(b and len(b) != 2 for b in biases) or len({len(b) for b in biases}) != 1:
            self.fail(first, "torch LSTM/GRU layers have both biases or neither")
        dtype = self.dtype(first)
        for g in chain[1:]:
            self.dtype(g)
        cls = nn.LSTM if first.op == "lstm" else nn.GRU
        module = cls(self.infos[source].n_units, first.n_units, num_layers=len(chain),
                     bias=bool(biases[0]), batch_first=True, dtype=dtype)
        self.module(name, module)
        node = self.fx.call_module(name, (self.value(first, source),))
        layers = [self.layer(g, g.op, "sequence", node.name, name) for g in chain]
        self._own(node, "recurrent", layers=layers, cell=first.op)
        out = self.fx.call_function(operator.getitem, (node, 0))
        self.activate(chain[-1], out)
        return len(chain)

    def _is_attention(self, i):
        if i + 4 >= len(self.infos):
            return False
        core, out = self.infos[i + 3], self.infos[i + 4]
        return core.op == "attend" and core.sources == (i, i + 1, i + 2) \
            and out.op == "dense" and out.sources == (i + 3,)

    def attention(self, i):
        q, k, v, core, out = self.infos[i:i + 5]
        source = q.sources[0]
        if k.sources != (source,) or v.sources != (source,):
            self.fail(core, "q, k and v read different groups (cross-attention)")
        for g in (q, k, v, core):
            if g.activation != "linear" or len(self.consumers[g.id]) != 1:
                self.fail(g, "a part of an attention that is activated or read elsewhere")
        if self.layout(source) != "sequence":
            self.fail(core, "attention over a %s" % self.layout(source))
        params = self.graph.block_params(core.id)
        heads = int(params[0])
        plain = 1 + heads + 2 * int(params[1:1 + heads].sum()) + 2 * core.n_units
        if len(params) > plain:
            options = int(params[plain])
            self.fail(core, "a %s attention core: fibration.torch has no module for it"
                      % " and ".join(w for bit, w in ((1, "causal"), (2, "rotary"))
                                     if options & bit))
        dtype = self.dtype(q)
        for g in (k, v, core, out):
            self.dtype(g)
        name = self.name(out)
        self.module(name, _Like(dtype))
        x = self.value(q, source)
        node = self.fx.call_module(name, (x, x, x))
        roles = ("q", "k", "v", "core", "out")
        layers = [self.layer(g, "attention." + r, "sequence", node.name, name)
                  for g, r in zip((q, k, v, core, out), roles)]
        self._own(node, "attention", layers=layers)
        self.activate(out, self.fx.call_function(operator.getitem, (node, 0)))


def load(path):
    """Reads a model file (fib_model_load; files written by save(), by the
    `fibration` command and by the C API) into a torch.fx.GraphModule, built
    by the rebuild compress() uses: standard torch layers where torch has
    them, FiberAttention / WeightedLayerNorm / index_select gathers where a
    base needs them. Parameters are float64 when stored so, else float32 (F16
    and BF16 files load as float32). Inputs are taken as the trace took them:
    (batch, features), images (N, C, H, W), 1-D signals (N, C, L) when a
    convolution or pooling reads a single row, sequences (batch, time,
    features). With several outputs the module returns them in group order.
    A group torch has no module for (RMSNorm, a dense layer over an image)
    raises UnsupportedModelError naming it."""
    graph = Graph.load(str(path))
    net = _Skeleton(graph, path).build()
    base = SimpleNamespace(graph=graph, projection=None)
    module = rebuild(net, base, "LoadedModel")
    return module.eval()
