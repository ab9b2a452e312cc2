"""fibration for torch.nn models.

    import fibration.torch as ft
    report = ft.analyze(model, x)            # fibers / opfibers / covers per layer
    small, plan = ft.compress(model, x)      # an ordinary, smaller nn.Module
    ft.verify(model, small, x)               # (max_abs, max_rel) output difference
    plan.save("plan.json"); ft.compress(model, x, plan=ft.Plan.load("plan.json"))
    big = ft.lift(small, plan, model)        # back to the original shape
    fresh = ft.break_symmetry(model, x, seed=0)
    tracker = ft.FiberTracker(model, x); tracker(accuracy=acc); tracker.plot("f.png")

    ft.save(model, "model.safetensors", x); same = ft.load("model.safetensors")
    ft.analyze(model, x, symmetry="all")     # + automorphism orbits, refinement chain

Supported: nn.Sequential and traced modules (forward code with shape
arithmetic, traced with the example's concrete sizes) made of Linear,
Conv1d/Conv2d (grouped, depthwise), BatchNorm1d/2d (eval), MaxPool/AvgPool
1d/2d, adaptive pooling and x.mean((2, 3)) at fixed sizes, Flatten, Dropout,
stochastic depth, Identity, ReLU, LeakyReLU, Tanh, Sigmoid, GELU (exact and tanh),
SiLU, ReLU6, Hardswish, Hardsigmoid, Mish, Softplus, LayerNorm (also
F.layer_norm and channels-last), LSTM and GRU (batch_first, multi-layer,
out[0] and out[0][:, -1]), MultiheadAttention (self-attention, batch_first),
TransformerEncoderLayer / TransformerEncoder (batch_first, post- or
pre-norm, relu/gelu), residual additions, channel gates (x * s), layer
scales, and concatenations, chunks and permutations of units. Anything else
raises UnsupportedModelError naming the layer and the reason; the
torchvision models each builder gives are listed in docs/python.md.
"""

import copy
import time
from collections import namedtuple

import numpy as np
import torch

from .._errors import FibrationError
from ._entry import _tolerance, _trace, count_parameters, trace
from ._errors import UnsupportedModelError
from ._names import layer_name
from ._plan import Plan, coloring_from_plan, params_line, plan_from
from ._rebuild import rebuild
from ._reestimate import reestimate_batch_norm
from ._retune import RetuneResult, Round, evaluate, fine_tune
from ._safety import (TraceMismatchError, TrainModeWarning, _Unmerged, check_exact,
                      flat_outputs, merges_nothing, warn_train_mode)
from ._ties import keep_ties

__all__ = ["analyze", "compress", "verify", "lift", "break_symmetry", "apply_plan",
           "FiberTracker", "Plan", "Report", "UnsupportedModelError", "TraceMismatchError",
           "TrainModeWarning", "count_parameters", "save", "load", "LlamaDecoder",
           "Gpt2Decoder", "load_decoder", "BertEncoder", "load_encoder", "reestimate_batch_norm"]

Difference = namedtuple("Difference", "max_abs max_rel")


def _ignored_nodes(net, ignored_layers):
    """fx node names of the Linear layers in ignored_layers (modules or names)."""
    by_module = {}
    for name, module in net.model.named_modules():
        by_module[id(module)] = name
    wanted = set()
    for item in ignored_layers:
        wanted.add(item if isinstance(item, str) else by_module.get(id(item), None))
    wanted.discard(None)
    nodes = []
    for layer in net.layers:
        if layer.kind == "dense" and (layer.module in wanted or layer.node in wanted):
            nodes.append(layer.node)
            wanted.discard(layer.module)
            wanted.discard(layer.node)
    if wanted:
        raise ValueError("ignored_layers names layers that are not Linear layers of "
                         "the model: %s" % sorted(wanted))
    return nodes


def _color(net, symmetry, tolerance, eps, ignored_layers=(), progress=None):
    """Colours net.graph; ignored layers keep every unit apart.

    A layer is kept apart by colouring a copy of the graph in which its units
    get distinct biases: the library then also splits whatever downstream
    depended on that layer's classes, so the colouring stays balanced.
    """
    ignored = _ignored_nodes(net, ignored_layers)
    if not ignored:
        return net.graph.color(symmetry, tolerance, eps, progress=progress)
    overrides = {}
    for node in ignored:
        layer = net.layer(node)
        module = net.gm.get_submodule(layer.module)
        spread = torch.arange(layer.width, dtype=module.weight.dtype) * (2 * eps + 1)
        overrides[layer.module] = (module.weight, spread)
    shadow = trace(net.model, net.example_input, weights_override=overrides)
    shadow_coloring = shadow.graph.color(symmetry, tolerance, eps, progress=progress)
    coloring = net.graph.coloring(symmetry)
    for layer in net.layers:
        coloring.set_group(layer.group, shadow_coloring.colors(layer.group))
    return coloring


# -- analyze ---------------------------------------------------------------

class Report:
    """Per-layer symmetry counts; str() is a table."""

    COLUMNS = ("layer", "kind", "units", "fibers", "opfibers", "covers",
               "classes", "params", "base params")
    HIERARCHY_COLUMNS = ("orbits", "chain")

    def __init__(self, rows, params, tolerance, eps, chain=None):
        self.rows = rows          # list of dicts with COLUMNS as keys
        self.params = params      # (original, base by fibers) torch parameter counts
        self.tolerance, self.eps = tolerance, eps
        # symmetry='all': True when orbits <= covers <= fibers and opfibers
        # holds in every group (fib_hierarchy_chain(-1) == FIB_CHAIN_ALL)
        self.chain = chain
        if chain is not None:
            self.COLUMNS = Report.COLUMNS[:6] + Report.HIERARCHY_COLUMNS + Report.COLUMNS[6:]

    def __getitem__(self, layer):
        """The row of a layer, by its shown name ("0", "features.3") or its
        fx node name ("_0")."""
        for row in self.rows:
            if layer in (row["layer"], row["node"]):
                return row
        raise KeyError("no layer %r; the layers are %s" % (layer, [r["layer"] for r in self.rows]))

    def __iter__(self):
        return iter(self.rows)

    def __str__(self):
        cells = [self.COLUMNS] + [tuple("-" if r[c] is None else str(r[c]) for c in self.COLUMNS)
                                  for r in self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.COLUMNS))]
        lines = ["  ".join(c.rjust(w) if i >= 2 else c.ljust(w)
                           for i, (c, w) in enumerate(zip(row, widths))) for row in cells]
        lines.insert(1, "-" * len(lines[0]))
        lines.append("tolerance: %s%s" % (self.tolerance,
                                          ", eps=%g" % self.eps if self.eps else ""))
        lines.append(params_line(*self.params) + "  (compressed by fibers)")
        if self.chain is not None:
            lines.append("refinement chain orbits <= covers <= fibers, opfibers: %s"
                         % ("holds" if self.chain else "BROKEN (see the chain column)"))
        return "\n".join(lines)

    __repr__ = __str__


def _class_summary(sizes):
    """'3x4 1x2 5x1': count x size, largest classes first."""
    counts = {}
    for s in sizes:
        counts[int(s)] = counts.get(int(s), 0) + 1
    return " ".join("%dx%d" % (counts[s], s) for s in sorted(counts, reverse=True))


NOT_PARAMETERS = ("multiplicity", "pair_multiplicity", "pair_frequency")


def _layer_params(graph, layer):
    """Weights and biases of a layer's block in the C graph; none for the
    selections that only move units (concatenations, permutations), which
    are no parameters of the model."""
    if layer.kind in ("relabel", "select"):
        return 0
    return sum(int(np.prod(shape)) for name, shape in graph.tensor_shapes(layer.group)
               if name not in NOT_PARAMETERS)


def _chain_text(hierarchy, group):
    broken = hierarchy.broken_links(group)
    return "ok" if not broken else "broken: " + ",".join(broken)


def _covers_count(colorings, group):
    """Classes of the covers of a group: fib_color's covers are the meet of
    the fibers and the opfibers it colours with the same options, so they
    are counted from those two colourings rather than coloured again."""
    import numpy as np
    fibers, opfibers = colorings["fibers"].colors(group), colorings["opfibers"].colors(group)
    return len(np.unique(np.stack([fibers, opfibers]), axis=1).T)


def analyze(model, example_input, eps=0.0, tolerance="exact", print_table=False,
            symmetry="fibers"):
    """Fibers, opfibers and covers of every layer of `model` (a Report).

    symmetry='all' also computes the automorphism orbits of every layer and
    checks the refinement chain orbits <= covers <= fibers and opfibers
    (fib_hierarchy_create): every row gets 'orbits' (the number of orbits
    of the twin permutations: units with identical input rows, output
    columns and biases) and 'chain' ('ok', or the links that do not hold,
    which only a tolerance can break), and Report.chain says whether the
    chain holds in every group. The default ('fibers') leaves them out."""
    if symmetry not in ("fibers", "all"):
        raise ValueError("symmetry must be 'fibers' (fibers, opfibers and covers) or "
                         "'all' (also automorphism orbits and the refinement chain), "
                         "not %r" % (symmetry,))
    tolerance = _tolerance(eps, tolerance)
    exact = tolerance == "exact" and eps == 0
    net = _trace(model, example_input, result_checked=exact)
    # scale-aware merging is defined for fibers only: their opfibers and
    # covers are reported as None ('-' in the table)
    scaled = tolerance.startswith("scaled+")
    if scaled and symmetry == "all":
        raise ValueError("symmetry='all' needs opfibers and covers, which a scale-aware "
                         "tolerance (%r) does not define" % (tolerance,))
    if scaled:
        colorings = {"fibers": net.graph.color("fibers", tolerance, eps), "opfibers": None}
    else:  # the opfibers flavoured by these fibers, which are coloured once
        colorings = dict(zip(("fibers", "opfibers"),
                             net.graph.color_fibers_opfibers(tolerance, eps)))
    hierarchy = net.graph.hierarchy(tolerance, eps) if symmetry == "all" else None
    # no two units alike: the graph is its own base (what fib_compress
    # would copy)
    discrete = merges_nothing(net.graph, colorings["fibers"])
    base = _Unmerged(net.graph) if discrete else net.base(colorings["fibers"])
    base_graph = base.graph
    rows = []
    for layer in net.layers:
        if layer.kind == "input":
            continue
        rows.append({
            "layer": layer_name(layer), "node": layer.node,
            "kind": layer.kind if layer.kind != "dense" else "linear",
            "units": layer.width,
            "fibers": colorings["fibers"].num_classes(layer.group),
            "opfibers": (colorings["opfibers"].num_classes(layer.group)
                         if colorings["opfibers"] else None),
            "covers": (_covers_count(colorings, layer.group)
                       if colorings["opfibers"] else None),
            "classes": _class_summary(colorings["fibers"].class_sizes(layer.group)),
            "params": _layer_params(net.graph, layer),
            "base params": _layer_params(base_graph, layer),
        })
        if hierarchy is not None:
            rows[-1]["orbits"] = hierarchy.num_classes(layer.group, "automorphisms")
            rows[-1]["chain"] = _chain_text(hierarchy, layer.group)
    compressed = rebuild(net, base, "Compressed" + type(model).__name__)
    keep_ties(net, compressed)
    if exact:  # the check the trace left to this result (_safety)
        check_exact(model, compressed, example_input, net.reference_outputs)
    report = Report(rows, (count_parameters(model), count_parameters(compressed)),
                    tolerance, eps,
                    hierarchy.chain_holds() if hierarchy is not None else None)
    if print_table:
        print(report)
    return report


# -- compress --------------------------------------------------------------

def _step_printer(progress, verbose, what):
    """progress, printing every step first when verbose."""
    if not verbose:
        return progress
    start = time.monotonic()

    def report(done, total):
        print("%s: step %d of %d, %.1f s" % (what, done, total, time.monotonic() - start),
              flush=True)
        return progress(done, total) if progress is not None else False
    return report


def _reestimated(batch, model, compressed, plan):
    """(compressed, plan), its batch norms re-estimated on `batch` if given."""
    if batch is not None:
        plan.budget["reestimated_batch_norms"] = reestimate_batch_norm(compressed, plan, model,
                                                                       batch)
    return compressed, plan


def compress(model, example_input, eps=0.0, symmetry="fibers", ignored_layers=(),
             tolerance="exact", plan=None, verbose=False, budget=None, calibration=None,
             progress=None, reestimate_batch_norm=None):
    """Merges every class of symmetric units into one.

    Returns (compressed, plan): an nn.Module of standard torch layers (an
    nn.Sequential for an nn.Sequential, else a torch.fx.GraphModule that
    prints as its modules) computing the same function as `model` for exact
    fibers or covers, and the Plan of what merged into what. With `plan`
    given, that plan is re-applied instead of colouring the model.
    symmetry: 'fibers' (the smallest base) or 'covers' (the base that gradient
    descent preserves).
    budget: keep at most this fraction of the parameters (fib_compress_to_budget:
    grouping and per-layer tolerance chosen by a data-free bound; chains of
    Linear layers; the merged layers are then refitted without data, on
    synthetic Gaussian inputs whose scale is the standard deviation of
    `example_input`, so pass an input of the real scale); calibration: an
    optional batch of the user's inputs to refine that choice (see
    fibration.torch._budget); its plan re-applies by redoing that choice on
    the same model.
    reestimate_batch_norm: a batch of the user's inputs (never the test
    set) on which every batch norm of the budget's compressed module is
    re-estimated after the data-free compression: its running statistics
    become its input's on the batch, its weight and bias give each channel
    the output mean and deviation of the original's channels it stands for
    (fibration.torch.reestimate_batch_norm; the parameter count does not
    change; plan.budget["reestimated_batch_norms"] counts them). Off by
    default: the budget alone is data-free. Only with budget= (or a budget
    plan); ValueError otherwise.
    progress(done, total): told every step of the library's work (the
    colouring's groups; a budget's clusterings, exchange, colourings and
    correction) and may return True to cancel (FibrationError E_CANCELLED).
    verbose: prints every step and then the plan's summary. Ctrl-C during a
    budget stops it within about a second (KeyboardInterrupt).

    Refused (UnsupportedModelError naming the module): hooks, a module with
    weights called twice, tied tensors the two layers would merge
    differently, and a trace that does not reproduce model(example_input)
    (TraceMismatchError); an exact compression is checked against the
    model's outputs too. Batch norm whose merged channels disagree on their
    statistics cannot train as the original: that is warned and listed in
    plan.warnings (see docs/python.md)."""
    if plan is not None and getattr(plan, "budget", None):
        from ._budget import reapply_budget_plan
        return _reestimated(reestimate_batch_norm, model, *reapply_budget_plan(
            model, example_input, plan, verbose,
            progress=_step_printer(progress, verbose, "budget")))
    if budget is not None:
        from ._budget import compress_to_budget
        return _reestimated(reestimate_batch_norm, model, *compress_to_budget(
            model, example_input, budget, calibration, verbose,
            progress=_step_printer(progress, verbose, "budget")))
    if reestimate_batch_norm is not None:
        raise ValueError("reestimate_batch_norm= applies to a budget (budget=f or a budget "
                         "plan); an exact or eps compression keeps the original's statistics "
                         "(call fibration.torch.reestimate_batch_norm(small, batch) to change "
                         "them)")
    if symmetry not in ("fibers", "covers"):
        raise ValueError("symmetry must be 'fibers' or 'covers' (opfibers alone do "
                         "not give an exact base), not %r" % (symmetry,))
    tolerance = _tolerance(eps, tolerance)
    checked = plan is None and eps == 0 and tolerance in ("exact", "abs")
    net = _trace(model, example_input, result_checked=checked)
    if plan is not None:
        coloring = coloring_from_plan(net, plan)
        symmetry, tolerance, eps = plan.symmetry, plan.tolerance, plan.eps
    else:
        coloring = _color(net, symmetry, tolerance, eps, ignored_layers,
                          _step_printer(progress, verbose, symmetry))
    # nothing merges: the graph is its own base (what fib_compress would
    # copy); only where the result is checked against the model below
    base = _Unmerged(net.graph) if checked and merges_nothing(net.graph, coloring) \
        else net.base(coloring)
    compressed = rebuild(net, base, "Compressed" + type(model).__name__)
    keep_ties(net, compressed)
    if checked:  # the check the trace left to this result (_safety)
        check_exact(model, compressed, example_input, net.reference_outputs)
    compressed._fibration_source = CompressedSource(net, coloring)  # for save()
    params = (count_parameters(model), count_parameters(compressed))
    new_plan = plan_from(net, base, symmetry, tolerance, eps, params, coloring)
    warn_train_mode(new_plan, compressed)
    if verbose:
        print(new_plan.summary())
    return compressed, new_plan


def apply_plan(model, example_input, plan):
    """compress(model, example_input, plan=plan)."""
    return compress(model, example_input, plan=plan)


# -- verify ----------------------------------------------------------------

def verify(original, compressed, inputs):
    """(max_abs, max_rel): the largest absolute output difference between the
    two models on `inputs`, and the same divided by the largest |output| of
    the original. Both models run in eval mode without gradients."""
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    modes = original.training, compressed.training
    original.eval()
    compressed.eval()
    try:
        with torch.no_grad():
            a = flat_outputs(original(*inputs))
            b = flat_outputs(compressed(*inputs))
    finally:
        original.train(modes[0])
        compressed.train(modes[1])
    if [t.shape for t in a] != [t.shape for t in b]:
        raise ValueError("output shapes differ: %s vs %s" % ([tuple(t.shape) for t in a],
                                                            [tuple(t.shape) for t in b]))
    max_abs = max(float((x.double() - y.double()).abs().max()) for x, y in zip(a, b))
    scale = max(float(x.double().abs().max()) for x in a)
    return Difference(max_abs, max_abs / scale if scale > 0 else max_abs)


# -- lift and symmetry breaking -------------------------------------------

def lift(compressed, plan, like):
    """The compressed model (possibly retrained) brought back to the shape of
    `like` (the original architecture): every unit copies its base unit, and
    weights from a merged class are split evenly over its members. Returns a
    copy of `like` with the lifted weights; it computes what `compressed` does.
    """
    other = [(e["node"], e["kind"]) for e in plan.layers
             if e["kind"] not in ("input", "dense", "sum")]
    if other:
        raise UnsupportedModelError(
            "lift() rebuilds Linear layers and residual sums in this version; the plan "
            "also has %s (the C fib_lift lifts every block; the torch side of it is not "
            "written yet)" % ", ".join("%s (%s)" % item for item in other))
    lifted = copy.deepcopy(like)
    sizes = {}
    projections = {}
    for entry in plan.layers:
        p = np.asarray(entry["projection"], dtype=np.int64)
        projections[entry["node"]] = p
        sizes[entry["node"]] = np.bincount(p, minlength=entry["classes"]) if len(p) else p
    with torch.no_grad():
        for entry in plan.layers:
            if entry["kind"] != "dense":
                continue
            source = entry["sources"][0]
            p_out, p_in = projections[entry["node"]], projections[source]
            small = compressed.get_submodule(entry["module"])
            big = lifted.get_submodule(entry["module"])
            w = small.weight.detach().double().cpu().numpy()
            w = w[p_out][:, p_in] / sizes[source][p_in][None, :]
            big.weight.copy_(torch.from_numpy(w))
            if big.bias is not None:
                big.bias.copy_(torch.from_numpy(
                    small.bias.detach().double().cpu().numpy()[p_out]))
    return lifted


def break_symmetry(model, example_input, seed=0, eps=0.0, tolerance="exact"):
    """Symmetry breaking for continual learning (fib_break_symmetry): the model
    is compressed to its covers, then every layer gets back its original width
    with new units (random input weights, zero output weights). Returns a copy
    of `model` with those weights: it computes the same function, with the
    degrees of freedom of the merged units restored."""
    tolerance = _tolerance(eps, tolerance)
    net = _trace(model, example_input)
    coloring = net.graph.color("covers", tolerance, eps)
    result = net.graph.break_symmetry(coloring, seed)
    fresh = copy.deepcopy(model)
    with torch.no_grad():
        for layer in net.layers:
            if layer.kind != "dense":
                continue
            weight, bias = result.read_dense(layer.group)
            target = fresh.get_submodule(layer.module)
            target.weight.copy_(torch.from_numpy(weight))
            if target.bias is not None:
                target.bias.copy_(torch.from_numpy(bias))
    return fresh


# -- retune ----------------------------------------------------------------

def retune(model, x_train, y_train, budgets=(0.5, 0.3, 0.17, 0.1), val_fraction=0.1,
           epochs=1, lr=1e-3, batch=128, patience=3, max_loss_increase=0.1, seed=0,
           calibration_size=0, verbose=False):
    """Compress -> fine-tune rounds at decreasing budgets; see the module doc.
    x_train, y_train: the training set (a validation split of val_fraction is
    held out of it). calibration_size > 0 passes that many training images to
    compress() as its calibration batch. Returns RetuneResult(model, rounds)."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x_train), generator=g)
    n_val = max(1, int(len(x_train) * val_fraction))
    x_val, y_val = x_train[perm[:n_val]], y_train[perm[:n_val]]
    x_fit, y_fit = x_train[perm[n_val:]], y_train[perm[n_val:]]
    total = count_parameters(model)
    current = copy.deepcopy(model)
    reference = fine_tune(current, x_fit, y_fit, x_val, y_val, 0, lr, batch, patience, g)
    rounds, accepted_model = [], current
    for r, budget in enumerate(sorted(budgets, reverse=True)):
        # the budget is relative to the original model; the current one is smaller
        fraction = budget * total / count_parameters(current)
        if fraction >= 1:
            continue
        cal = x_fit[:calibration_size] if calibration_size else None
        try:
            small, _ = compress(current, x_fit[:4], budget=fraction, calibration=cal)
        except FibrationError as e:  # below the smallest base: nothing more to do
            if verbose:
                print("round %d: budget %.3f not reachable (%s)" % (r, budget, e))
            break
        loss_before = evaluate(small, x_val, y_val)[0]
        loss_after = fine_tune(small, x_fit, y_fit, x_val, y_val, epochs, lr, batch,
                                patience, g)
        acc = evaluate(small, x_val, y_val)[1]
        ok = loss_after <= reference * (1 + max_loss_increase)
        params = count_parameters(small)
        rounds.append(Round(r, budget, params, params / total, loss_before, loss_after, acc, ok))
        if verbose:
            print("round %d: budget %.3f, %d parameters (%.1f%%), val loss %.4f -> %.4f, "
                  "val acc %.2f%%%s" % (r, budget, params, 100 * params / total, loss_before,
                                        loss_after, 100 * acc, "" if ok else "  (stop)"))
        if not ok:
            break
        current = accepted_model = small
    return RetuneResult(accepted_model, rounds)


from ._files import CompressedSource, load, save  # noqa: E402
from ._tracker import FiberTracker  # noqa: E402
from ._ladder import tolerance_tree  # noqa: E402
from ._checkpoints import load_decoder  # noqa: E402
from ._decoders import Gpt2Decoder, LlamaDecoder  # noqa: E402
from ._encoder import BertEncoder, load_encoder  # noqa: E402
