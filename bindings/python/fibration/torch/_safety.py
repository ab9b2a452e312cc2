"""What keeps fibration.torch from returning a silently wrong model.

torch.fx tracing reads the class's forward() once, with the example input;
anything it does not see would make the compressed model compute something
else. So, before any colouring:

- forward hooks and pre-hooks (per module, or global) are refused: tracing
  does not run them and the compressed model would not have them;
- a module with weights that is called more than once (weight sharing, a
  loop over one layer) is refused: its calls become separate layers that
  may merge differently, but one module can hold only one set of classes;
- the traced reproduction must compute the model's own outputs on the
  example input, both as the library's graph (fib_graph_forward) and as the
  rebuilt model before any merge (every unit its own class); otherwise
  TraceMismatchError says how far they differ. An exact compression (and
  an exact analysis) checks its rebuilt result against the model's outputs
  instead of the library graph's forward pass: that later check covers
  everything the graph's pass would catch (a graph that computes something
  else either rebuilds wrong or merges units the model does not make
  equal, and either shows in the result's outputs), and the graph's pass is
  a float64 forward through every layer, the largest part of the library's
  time on a CNN. Every other entry point (a tolerance, a re-applied plan,
  save, the tracker) runs it, since nothing checks its result afterwards.

After the rebuild, a tensor that two layers share (tied parameters) stays
shared when both layers' compressed tensors are equal, and is refused when
they are not, so the compressed model never unties (and grows) it; an exact
compression is checked against the model's outputs once more.

The tolerance of every comparison is relative to the largest output of the
model: the square root of the output dtype's machine epsilon (3.5e-4 in
float32, 1.5e-8 in float64), far above the rounding of a reordered sum and
far below any real mismatch.
"""

import warnings

import numpy as np
import torch
from torch.nn.modules import module as _torch_module

from ._errors import UnsupportedModelError
from ._rebuild import rebuild
from ._trace import _as_tuple


class TrainModeWarning(UserWarning):
    """The compressed model computes the original's outputs in eval mode but
    not in train mode (a batch norm whose merged channels disagree on their
    statistics); the same text is in plan.warnings."""


class TraceMismatchError(UnsupportedModelError):
    """The traced reproduction of a model (or its exact compression) does
    not compute the model's own outputs on the example input. The message
    says which reproduction, how far and what usually causes it."""


def output_tolerance(dtype):
    """Relative tolerance for comparing outputs of `dtype`: sqrt(machine eps)."""
    return float(np.sqrt(torch.finfo(dtype).eps))


# -- before colouring ------------------------------------------------------

# hooks torch itself registers, and how to remove them
TORCH_HOOKS = {"WeightNorm": "torch.nn.utils.remove_weight_norm(module)",
               "SpectralNorm": "torch.nn.utils.remove_spectral_norm(module)"}


def _hook_name(hook):
    name = getattr(hook, "__qualname__", None) or getattr(hook, "__name__", None)
    if name is None:
        name = type(hook).__name__
        if name in TORCH_HOOKS:
            name += " (remove it with %s)" % TORCH_HOOKS[name]
    return name


def refuse_hooks(model):
    """UnsupportedModelError naming every forward hook and pre-hook of the
    model (global ones too)."""
    found = []
    for kind, table in (("global forward pre-hook", "_global_forward_pre_hooks"),
                        ("global forward hook", "_global_forward_hooks")):
        found += ["%s %s" % (kind, _hook_name(h))
                  for h in getattr(_torch_module, table, {}).values()]
    for name, module in model.named_modules():
        where = "module %r (%s)" % (name, type(module).__name__) if name else \
            "the model itself (%s)" % type(model).__name__
        for kind, hooks in (("forward pre-hook", module._forward_pre_hooks),
                            ("forward hook", module._forward_hooks)):
            found += ["%s %s on %s" % (kind, _hook_name(h), where) for h in hooks.values()]
    if found:
        raise UnsupportedModelError(
            "the model has %s: tracing does not run hooks and the compressed model would "
            "not have them, so it could compute something else; remove them "
            "(handle.remove()) before analysing, compressing or saving, and register "
            "them again on the result if needed" % "; ".join(found))


def _holds_tensors(module):
    return any(t is not None for table in (module._parameters, module._buffers)
               for t in table.values())


def refuse_shared_modules(net):
    """UnsupportedModelError for a module with weights that more than one fx
    node runs: called at two places of forward(), or called directly and
    inside a traced layer (fx names a module registered under two names by
    its first name)."""
    users = {}  # id(module) -> (qualified name, fx nodes)
    for node in net.gm.graph.nodes:
        if node.op != "call_module":
            continue
        for name, module in net.gm.get_submodule(node.target).named_modules(
                remove_duplicate=False):
            if _holds_tensors(module):
                qualified = node.target + ("." + name if name else "")
                _, nodes = users.setdefault(id(module), (qualified, []))
                if node.name not in nodes:
                    nodes.append(node.name)
    for qualified, nodes in users.values():
        if len(nodes) > 1:
            module = net.gm.get_submodule(qualified)
            raise UnsupportedModelError(
                "module %r (%s) is called %d times (fx nodes %s): each call is a layer of "
                "its own whose units may merge differently, but the module has one set of "
                "weights, so its classes cannot follow both; weight sharing and loops over "
                "one layer are not supported (use one module per call)"
                % (qualified, type(module).__name__, len(nodes), ", ".join(nodes)))


def flat_outputs(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in flat_outputs(o)]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in flat_outputs(out[k])]
    raise TypeError("model output of type %s" % type(out).__name__)


def _outputs(module, inputs):
    """The flat list of output tensors of `module` in eval mode, no gradients."""
    training = module.training
    module.eval()
    try:
        with torch.no_grad():
            return [t.detach() for t in flat_outputs(module(*inputs))]
    finally:
        module.train(training)


def _difference(reference, other):
    """(max_abs, scale): the largest absolute difference, and the largest
    |reference| output; max_abs is inf when the shapes differ."""
    if len(reference) != len(other) or \
            any(a.shape != b.shape for a, b in zip(reference, other)):
        return float("inf"), 1.0
    max_abs = max(float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
                  for a, b in zip(reference, other))
    scale = max(float(a.double().abs().max()) if a.numel() else 0.0 for a in reference)
    return max_abs, scale


def _replaced_forwards(model):
    return ["module %r" % name if name else "the model itself"
            for name, m in model.named_modules() if "forward" in vars(m)]


def _mismatch(what, reference, other, model, hint):
    max_abs, scale = _difference(reference, other)
    dtype = reference[0].dtype
    tolerance = output_tolerance(dtype)
    if max_abs <= tolerance * (scale if scale > 0 else 1.0):
        return
    replaced = _replaced_forwards(model)
    if replaced:
        hint = "forward is assigned on the instance of %s, but tracing reads the " \
               "class's forward(). %s" % (", ".join(replaced), hint)
    shapes = "" if np.isfinite(max_abs) else " (output shapes %s against %s)" % (
        [tuple(t.shape) for t in other], [tuple(t.shape) for t in reference])
    raise TraceMismatchError(
        "%s does not compute %s(example_input): the outputs differ by %.3g (relative %.3g; "
        "the %s tolerance is %.1g relative)%s. %s"
        % (what, type(model).__name__, max_abs, max_abs / scale if scale else max_abs,
           str(dtype).replace("torch.", ""), tolerance, shapes, hint))


TRACE_HINT = ("Usually forward() does something torch.fx tracing does not see: it reads "
              "Python state that changes between calls, branches on values, draws random "
              "numbers in eval mode, or relies on a hook; nothing was compressed.")


def _c_layout(tensor, layout):
    """A torch tensor as fib_graph_forward lays out a group: (batch, row-major
    [position][unit])."""
    if layout == "image":
        tensor = tensor.permute(0, 2, 3, 1)
    elif layout == "channels1d":
        tensor = tensor.permute(0, 2, 1)
    return tensor.reshape(tensor.shape[0], -1)


def _graph_forward(net, inputs, reference):
    """(reference, graph outputs), both laid out as fib_graph_forward lays
    out groups, or None when the outputs are not one tensor per group."""
    if len(reference) != len(net.outputs) or len(inputs) != len(net.inputs) or \
            not all(torch.is_tensor(x) and x.is_floating_point() for x in inputs):
        return None
    rows = torch.cat([_c_layout(x.detach().double(), net.layers[g].layout)
                      for x, g in zip(inputs, net.inputs)], 1).contiguous()
    flat = torch.from_numpy(net.graph.forward(rows.numpy()))
    offsets, start = {}, 0
    for group in sorted(set(net.outputs)):  # the graph's outputs, in group order
        rows_, cols = net.graph.positions(group)
        width = rows_ * cols * net.graph.group(group).n_units
        offsets[group] = (start, width)
        start += width
    expected, outs = [], []
    for tensor, group in zip(reference, net.outputs):
        begin, width = offsets[group]
        expected.append(_c_layout(tensor, net.layers[group].layout))
        if expected[-1].shape[1] != width:
            return None
        outs.append(flat[:, begin:begin + width])
    return expected, outs


class _Unmerged:
    """The traced graph as its own base (every unit its own class, which
    is what fib_compress of the discrete colouring gives, without copying
    every weight to float64): the rebuild reads its blocks as they are."""

    def __init__(self, graph):
        self.graph = graph

    def projection(self, group):
        return np.arange(self.graph.group(group).n_units, dtype=np.int64)


def merges_nothing(graph, coloring):
    """True when `coloring` of `graph` keeps every unit in its own class,
    numbered in unit order: fib_compress would then project every group by
    the identity and make every block from classes of one (one term added
    to 0.0, divided by 1: the block's own values), so _Unmerged(graph) is
    that base, unit for unit. Only for a colouring without unit scales
    (scale-aware tolerances), which would rescale even a class of one."""
    return all(np.array_equal(coloring.colors(g), np.arange(graph.group(g).n_units))
               for g in range(len(graph)))


def check_reproduction(net, example_input, graph_forward=True):
    """TraceMismatchError unless the library's graph (when graph_forward)
    and the rebuilt, unmerged model both compute the model's outputs on the
    example input."""
    inputs = _as_tuple(example_input)
    reference = _outputs(net.model, inputs)
    net.reference_outputs = reference  # check_exact compares against them again
    if not reference or not all(t.is_floating_point() for t in reference):
        raise UnsupportedModelError("%s returns %s; floating-point tensors are needed"
                                    % (type(net.model).__name__,
                                       [t.dtype for t in reference]))
    if not all(bool(torch.isfinite(t).all()) for t in reference):
        raise UnsupportedModelError(
            "%s(example_input) is not finite; the trace cannot be checked against it "
            "(pass an example input whose outputs are finite)" % type(net.model).__name__)
    graph = _graph_forward(net, inputs, reference) if graph_forward else None
    if graph is not None:
        _mismatch("the library's graph of the traced model (fib_graph_forward)",
                  graph[0], graph[1], net.model, TRACE_HINT)
    # the new modules' initialisation draws from torch's generator: a check
    # (FiberTracker, during a seeded training) must not move the user's draws
    with torch.random.fork_rng(devices=[]):
        unmerged = rebuild(net, _Unmerged(net.graph), "Unmerged")
    outputs = _outputs(unmerged, inputs)
    # the copy (once more the model's weights) is released now: a
    # GraphModule and its graph refer to each other, so it would otherwise
    # stay until Python's cycle collector runs, through colouring and
    # compression
    unmerged.to_empty(device="meta")
    _mismatch("the traced model rebuilt without merging", reference, outputs, net.model,
              TRACE_HINT)


def check_trace(net, example_input, graph_forward=True):
    """Every check before colouring: hooks, shared modules, reproduction
    (graph_forward=False: without the library graph's forward pass, for a
    caller that runs check_exact on its result)."""
    refuse_hooks(net.model)
    refuse_shared_modules(net)
    check_reproduction(net, example_input, graph_forward)


# -- after the rebuild -----------------------------------------------------

def check_exact(model, compressed, example_input, reference=None):
    """TraceMismatchError unless an exact compression computes the model's
    outputs on the example input. reference: those outputs, when already
    computed (check_reproduction keeps them on the traced Network)."""
    inputs = _as_tuple(example_input)
    if reference is None:
        reference = _outputs(model, inputs)
    _mismatch("the compressed model (an exact colouring)", reference,
              _outputs(compressed, inputs), model,
              "An exact compression must keep the outputs; this is a defect of "
              "fibration.torch for this model: please report it with the model.")


def warn_train_mode(plan, compressed):
    """Moves the rebuild's notes on train mode into plan.warnings and warns."""
    for note in getattr(compressed, "_fibration_warnings", ()):
        plan.warnings.append(note)
        warnings.warn(note, TrainModeWarning, stacklevel=3)
