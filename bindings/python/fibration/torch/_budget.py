"""Compression to a parameter budget and scale-aware colourings.

    small, plan = ft.compress(model, x, budget=0.17)              # data-free
    small, plan = ft.compress(model, x, budget=0.17, calibration=xb)  # refined

The budget is the fraction of parameters kept. fib_compress_to_budget (C)
chooses the grouping (scale-aware rank-1 Ward or plain Ward) and the number of
classes of every hidden layer by minimising a data-free bound on the output
change (merge errors weighted by the operator norms downstream). With the
scale-aware grouping the same C call then corrects the merged layers without
data (fib_budget_options.synthetic_scale, src/compress/budget_refit.c): the
representatives are re-derived from the original weights and every merge's
consumer is refitted by least squares on synthetic Gaussian inputs as large
as the example input. Where C does not correct (a hidden activation that
is not positively homogeneous, no hidden layer) the representatives are
re-derived here (refit_chain); a Linear without bias keeps Eq. 10's base.
With a calibration batch (the user's data, never the test set) a few
variants of that choice are compressed and the one whose outputs stay
closest to the original model's on the batch is kept. synthetic_refit is
the numpy version of the C correction, kept as the tests' reference.
"""

import ctypes
import re

import numpy as np
import torch

from .. import _ffi, check, lib
from .._core import _DTYPE_CODES
from .._errors import FibrationError
from ._entry import _trace, count_parameters
from ._plan import plan_from
from ._scales import coloring_scales  # noqa: F401 (read by tests as _budget.coloring_scales)
from ._ties import keep_ties

# Tolerance modes by name; "scaled+<mode>" adds the FIB_TOL_SCALED flag.
TOLERANCE_CODES = {"exact": _ffi.FIB_TOL_EXACT, "abs": _ffi.FIB_TOL_ABS,
                   "rel": _ffi.FIB_TOL_REL, "cosine": _ffi.FIB_TOL_COSINE,
                   "complete": _ffi.FIB_TOL_COMPLETE, "ward": _ffi.FIB_TOL_WARD}


def tolerance_code(name):
    """'rel' -> FIB_TOL_REL, 'scaled+ward' -> FIB_TOL_SCALED | FIB_TOL_WARD;
    ints pass through."""
    if not isinstance(name, str):
        return int(name)
    parts = name.lower().split("+")
    code = 0
    for p in parts:
        if p == "scaled":
            code |= _ffi.FIB_TOL_SCALED
        elif p in TOLERANCE_CODES:
            code |= TOLERANCE_CODES[p]
        else:
            raise ValueError("unknown tolerance %r; one of %s, optionally 'scaled+'"
                             % (name, sorted(TOLERANCE_CODES)))
    return code


def tolerance_name(code):
    names = {v: k for k, v in TOLERANCE_CODES.items()}
    base = names.get(code & ~_ffi.FIB_TOL_SCALED, str(code))
    return ("scaled+" if code & _ffi.FIB_TOL_SCALED else "") + base


def base_to_budget(graph, budget, tolerance=0, sensitivity_power=1.5, refine_iterations=None,
                   merge_inputs=False, input_sensitivity=None, synthetic_scale=0.0,
                   progress=None, dtype="float64", synthetic_ridge=None):
    """fib_compress_to_budget on a fibration.Graph: (Base, info dict).
    synthetic_ridge: the correction's ridge (fib_budget_options.
    synthetic_ridge, relative to each Gram matrix's mean diagonal; None: the
    library's default; 0: plain least squares); info["synthetic_ridge"] is
    the one in effect.
    dtype of the base's merged Linear and convolution blocks
    (fib_budget_options.dtype): 'float64', or 'float32' (each rounded once
    as it is made, so that the base never holds float64 copies of them).
    progress(done, total) is told the budget's steps and may return True to
    cancel (FibrationError E_CANCELLED); Ctrl-C stops the call promptly
    (KeyboardInterrupt), see fibration._cancel."""
    from .._cancel import CancellableCall
    from .._core import Base
    opts = _ffi.fib_budget_options()
    check(lib.fib_budget_options_init(ctypes.byref(opts), ctypes.sizeof(opts)),
          "fib_budget_options_init")
    opts.tolerance = tolerance_code(tolerance)
    opts.sensitivity_power = float(sensitivity_power)
    if refine_iterations is not None:
        opts.refine_iterations = int(refine_iterations)
    opts.merge_inputs = int(bool(merge_inputs))
    if input_sensitivity is not None:
        opts.input_sensitivity = float(input_sensitivity)
    opts.synthetic_scale = float(synthetic_scale or 0.0)
    if synthetic_ridge is not None:
        opts.synthetic_ridge = float(synthetic_ridge)
    if dtype not in _DTYPE_CODES:
        raise ValueError("dtype must be 'float32' or 'float64', not %r" % (dtype,))
    opts.dtype = _DTYPE_CODES[dtype]
    out = ctypes.POINTER(_ffi.fib_base)()
    with CancellableCall(progress) as call:
        opts.progress = call.callback
        status = lib.fib_compress_to_budget(graph._cp(), float(budget), ctypes.byref(opts),
                                            ctypes.byref(out))
    call.raise_pending()
    check(status, "fib_compress_to_budget")
    info = {"bound": opts.bound, "n_parameters": opts.n_parameters,
            "tolerance": tolerance_name(opts.chosen_tolerance),
            "sensitivity_power": float(sensitivity_power), "merge_inputs": bool(merge_inputs),
            "input_sensitivity": float(opts.input_sensitivity),
            "corrected": bool(opts.corrected),
            "synthetic_ridge": float(opts.synthetic_ridge)}
    return Base._adopt(out, graph), info


def _module_base_to_budget(net, *args, **kwargs):
    """base_to_budget on a traced model: an error naming a group of the C
    graph also names the torch module that group comes from (the C graph
    names a module's output group only)."""
    try:
        return base_to_budget(net.graph, *args, dtype=net.base_dtype(), **kwargs)
    except FibrationError as e:
        found = re.search(r"group (\d+)", e.message or "")
        modules = [layer for layer in net.layers
                   if found and layer.group == int(found.group(1)) and layer.module]
        if not modules:
            raise
        message = "%s [torch module %r, %s]" % (e.message, modules[0].module, modules[0].kind)
        raise FibrationError(e.code, e.name, message, e.function) from None


def _class_representatives(rows, labels, weight):
    """Rank-1 representative of every class: r_c = v <f, v>_avg, v the top right
    singular vector of the members' rows weighted by their outgoing norms, the
    average of the projections weighted by the squared outgoing norms (the
    units that matter downstream set the scale)."""
    k = int(labels.max()) + 1
    reps = np.zeros((k, rows.shape[1]))
    for c in range(k):
        idx = np.flatnonzero(labels == c)
        if len(idx) == 1:
            reps[c] = rows[idx[0]]
            continue
        w = weight[idx]
        _, _, vt = np.linalg.svd(rows[idx] * w[:, None], full_matrices=False)
        v = vt[0]
        proj = rows[idx] @ v
        if proj @ (w * w) < 0:
            v, proj = -v, -proj
        wsum = float((w * w).sum())
        scale = float(proj @ (w * w)) / wsum if wsum > 0 else float(proj.mean())
        reps[c] = v * max(scale, 0.0)
    return reps


def _input_sums(w, input_labels):
    """w's columns summed over each input class (Eq. 10 over merged inputs,
    whose base values are the classes' means); w itself without input
    classes."""
    if input_labels is None:
        return w
    lab = np.asarray(input_labels, np.int64)
    out = np.zeros((w.shape[0], int(lab.max()) + 1))
    np.add.at(out.T, lab, w.T)
    return out


def input_means(x, input_labels):
    """The base's inputs for merged input classes: the mean of each class."""
    if input_labels is None:
        return x
    return _input_sums(x, input_labels) / np.bincount(np.asarray(input_labels, np.int64))


def refit_chain(layers, labels, input_labels=None):
    """Re-derives a compressed chain of dense layers from the original weights
    and the classes of every hidden layer (positively homogeneous activations):
    layer by layer, each class's representative is the outgoing-norm-weighted
    rank-1 fit of its members' rows (over the already merged inputs), each unit
    is replaced by s_i r_c with s_i = max(<f_i, r_c> / |r_c|^2, 0), and the next
    layer's weights become sum_{i in c} W[:, i] s_i. Data-free; returns
    [(W, b)] of the compressed chain. `layers`: [(W, b)] float64, the last one
    the output layer; `labels`: one class array per hidden layer;
    `input_labels`: the classes of merged inputs (None: inputs not merged)."""
    out, carry = [], None
    for l, (w, b) in enumerate(layers):
        if l == 0:
            w = _input_sums(w, input_labels)
        if carry is not None:
            w = w @ carry
        if l == len(layers) - 1:
            out.append((w, b))
            break
        rows = np.concatenate([w, b[:, None]], 1)
        lab = np.asarray(labels[l], np.int64)
        reps = _class_representatives(rows, lab, np.linalg.norm(layers[l + 1][0], axis=0))
        norm2 = (reps * reps).sum(1)
        s = (rows * reps[lab]).sum(1) / np.maximum(norm2[lab], 1e-300)
        s = np.where(norm2[lab] > 0, np.maximum(s, 0.0), 0.0)
        carry = np.zeros((rows.shape[0], reps.shape[0]))
        carry[np.arange(rows.shape[0]), lab] = s
        out.append((reps[:, :-1], reps[:, -1]))
    return out


def _least_squares(h, z, ridge=1e-3, prior=None):
    """(W, b) minimising |h W^T + b - z|^2 + lam |(W, b) - prior|^2, lam =
    `ridge` times the mean diagonal of the Gram matrix; `prior` (W0, b0)
    (default zero): the ridge pulls towards it, so a prior that already fits
    exactly is returned unchanged."""
    a = np.concatenate([h, np.ones((len(h), 1))], 1)
    gram = a.T @ a
    lam = ridge * max(np.trace(gram), 1e-300) / len(gram)
    gram += lam * np.eye(len(gram))
    rhs = a.T @ z
    if prior is not None:
        rhs += lam * np.concatenate([prior[0].T, prior[1][None, :]], 0)
    sol = np.linalg.solve(gram, rhs)
    return sol[:-1].T, sol[-1]


def _act(z, slope):
    return np.maximum(z, 0) if slope == 0 else np.where(z > 0, z, slope * z)


def synthetic_refit(layers, labels, scale, n_samples=8192, seed=0, slopes=None, ridge=1e-3,
                    input_labels=None, inputs=None):
    """The numpy version of the C correction (fib_budget_options.
    synthetic_scale, src/compress/budget_refit.c), kept as the tests' reference
    only: compress(budget=) runs the C one, whose draws come from the
    library's own generator (seed 0), so the two agree up to the spread
    between draws. refit_chain, then a data-free least-squares correction
    of every merge's consumer: on synthetic inputs x ~ N(0, scale^2 I)
    (n_samples, a fixed seed), layer by layer, the hidden layer is merged (refit_chain's
    representatives over the layer's current rows) and the next block is
    refitted by least squares so that its pre-activations over the merged
    activations match the original network's on the same x; that refitted
    block (full width) is what the next merge clusters. Same classes and
    shapes as refit_chain; returns [(W, b)]. `layers`: the original [(W, b)]
    float64, the last one the output layer; `labels`: one class array per
    hidden layer; `slopes`: the negative-side slope of every hidden layer's
    activation (0: ReLU, the default; a: leaky ReLU; 1: linear); `ridge`: the
    least squares' ridge (times the mean diagonal of their Gram matrix),
    pulling towards refit_chain's consumer, not towards zero, so planted
    scaled copies stay exact with any ridge (1e-3, the default of
    fib_budget_options.synthetic_ridge: docs/compression.md, "The
    correction's ridge");
    `input_labels`: the classes of merged inputs, whose means the compressed
    chain reads; `inputs`: the rows the least squares are fitted on instead
    of the synthetic draw (docs/examples/budget_seeds.py --checks: data, or
    another distribution). A scale that is not positive and finite gives
    refit_chain."""
    if len(layers) < 2 or not (scale is not None and scale > 0 and np.isfinite(scale)):
        return refit_chain(layers, labels, input_labels)
    slopes = [0.0] * (len(layers) - 1) if slopes is None else list(slopes)
    x = scale * np.random.default_rng(seed).standard_normal((n_samples, layers[0][0].shape[1])) \
        if inputs is None else np.asarray(inputs, np.float64)
    # h_ref: the original network's activations; h: the compressed chain's
    current, out, h, h_ref = list(layers), [], input_means(x, input_labels), x
    for l in range(len(layers) - 1):
        h_ref = _act(h_ref @ layers[l][0].T + layers[l][1], slopes[l])
        (r, c), consumer = refit_chain(current[l:l + 2], [labels[l]],
                                       input_labels if l == 0 else None)
        out.append((r, c))
        h = _act(h @ r.T + c, slopes[l])
        target = h_ref @ layers[l + 1][0].T + layers[l + 1][1]
        current[l + 1] = _least_squares(h, target, ridge, prior=consumer)
    out.append(current[-1])
    return out


def dense_chain(net, model, base):
    """The chain of nn.Linear of a traced model as the numpy refits take it:
    (dense, layers, labels, input_labels, slopes), `dense` the traced dense
    layers, `layers` their original [(W, b)] in float64, `labels` the base's
    classes of every hidden layer, `input_labels` those of merged inputs
    (None: inputs not merged), `slopes` every hidden activation's
    negative-side slope (None: not positively homogeneous); None when a
    dense layer is not an nn.Linear with bias."""
    dense = [layer for layer in net.layers if layer.kind == "dense"]
    mods = [model.get_submodule(layer.module) for layer in dense]
    if not dense or any(not isinstance(m, torch.nn.Linear) or m.bias is None for m in mods):
        return None
    layers = [(m.weight.detach().double().numpy(), m.bias.detach().double().numpy())
              for m in mods]
    labels = [base.projection(layer.group) for layer in dense[:-1]]
    first_source = dense[0].sources[0]
    input_labels = base.projection(first_source) \
        if base.graph.group(first_source).n_units < layers[0][0].shape[1] else None
    slopes = {"relu": 0.0, "linear": 1.0}
    hidden = [slopes.get(layer.activation, layer.activation_parameter
                         if layer.activation == "leaky_relu" else None) for layer in dense[:-1]]
    return dense, layers, labels, input_labels, hidden


def _refit_model(net, model, base, compressed, synthetic_scale=None):
    """refit_chain applied to a rebuilt chain of nn.Linear (in place); False
    when it does not apply (a Linear without bias). With synthetic_scale:
    synthetic_refit instead, the numpy reference of the C correction (the
    tests'; compress(budget=) passes none). Hidden activations that are not
    positively homogeneous get refit_chain either way."""
    chain = dense_chain(net, model, base)
    if chain is None:
        return False
    dense, layers, labels, input_labels, hidden = chain
    if synthetic_scale is None or any(a is None for a in hidden):
        new = refit_chain(layers, labels, input_labels)
    else:
        new = synthetic_refit(layers, labels, synthetic_scale, slopes=hidden,
                              input_labels=input_labels)
    with torch.no_grad():
        for layer, (w, b) in zip(dense, new):
            m = compressed.get_submodule(layer.module)
            if tuple(m.weight.shape) != w.shape:
                return False
        for layer, (w, b) in zip(dense, new):
            m = compressed.get_submodule(layer.module)
            m.weight.copy_(torch.as_tensor(w, dtype=m.weight.dtype))
            m.bias.copy_(torch.as_tensor(b, dtype=m.bias.dtype))
    return True


def _outputs(model, x):
    model.eval()
    with torch.no_grad():
        return model(x).double()


# Variants tried with a calibration batch: (grouping, sensitivity power,
# merge inputs); the last one asks the user's data whether merging inputs
# pays on this network.
CALIBRATION_VARIANTS = [(0, 1.5, True), ("scaled+ward", 1.0, True), ("scaled+ward", 2.0, True),
                        ("ward", 1.0, True), ("ward", 1.5, True), ("ward", 2.0, True),
                        (0, 1.5, False)]


def _input_scale(example_input):
    """The standard deviation of the example input (one number), the scale of
    the synthetic inputs of the correction (synthetic_scale); None if it is not a
    floating-point tensor with spread."""
    if not torch.is_tensor(example_input) or not example_input.is_floating_point() \
            or example_input.numel() < 2:
        return None
    scale = float(example_input.double().std())
    return scale if scale > 0 and np.isfinite(scale) else None


def input_index_size(module):
    """The class indices of a compressed model's merged inputs (one per
    input), which a budget counts as parameters."""
    from ._modules import InputClassMean
    return sum(m.classes.numel() for m in module.modules() if isinstance(m, InputClassMean))


def _check_within_budget(model, compressed, budget):
    """(original, compressed) parameter counts; the compressed one counts
    the class indices of merged inputs. The library counts what the torch
    modules hold (a concatenation's selections hold nothing); a result above
    the budget all the same is refused, never returned."""
    from ._errors import UnsupportedModelError
    params = (count_parameters(model), count_parameters(compressed) + input_index_size(compressed))
    if params[1] > budget * params[0] + 1e-6:
        raise UnsupportedModelError(
            "compress(budget=%g): the compressed model holds %d parameters, above the "
            "budget's %d of %d: a layer counts parameters the library does not see"
            % (budget, params[1], int(budget * params[0]), params[0]))
    return params


def compress_to_budget(model, example_input, budget, calibration=None, verbose=False,
                       tolerance=0, sensitivity_power=1.5, refit=True, synthetic=True,
                       merge_inputs=True, input_sensitivity=None, progress=None,
                       synthetic_ridge=None):
    """(compressed, plan) with at most `budget` of the parameters kept.
    refit: re-derive the representatives from the original weights
    (refit_chain); synthetic: and refit every merge's consumer by least
    squares on synthetic Gaussian inputs scaled like the example input. With
    both (the default) and the scale-aware grouping that is the C library's
    correction (fib_budget_options.synthetic_scale; plan.budget["corrected"]);
    where C does not correct, refit_chain alone. Both data-free; with a
    calibration batch every combination is scored and the closest to the
    original kept.
    merge_inputs: the inputs are candidates too (fib_budget_options.
    merge_inputs): the compressed model then starts with an InputClassMean
    of its first Linear's input, and the budget counts its class index as
    one parameter per input; input_sensitivity and synthetic_ridge: the C
    options' (None: their defaults; plan.budget["synthetic_ridge"] is the
    ridge of a C correction, else None). progress: as for base_to_budget,
    for every C call."""
    from ._rebuild import rebuild
    if not (0 < float(budget) <= 1):
        raise ValueError("budget is the fraction of parameters kept, in (0, 1]; got %r"
                         % (budget,))
    net = _trace(model, example_input)
    if calibration is None:
        variants = [(tolerance, sensitivity_power, merge_inputs)]
    else:
        # merge_inputs=False: the same variants, none merging inputs
        variants = list(dict.fromkeys((t, p, m and merge_inputs)
                                      for t, p, m in CALIBRATION_VARIANTS))
        reference = _outputs(model, calibration)
    # the C correction's scale (it corrects only the scale-aware grouping)
    scale = _input_scale(example_input) if refit and synthetic else None
    best = None
    for tol, power, merge in variants:
        knobs = dict(merge_inputs=merge, input_sensitivity=input_sensitivity,
                     synthetic_ridge=synthetic_ridge)
        base, info = _module_base_to_budget(net, budget, tol, power, synthetic_scale=scale,
                                            progress=progress, **knobs)
        corrected = base if info["corrected"] else None
        if corrected is not None and calibration is not None:
            # the same classes uncorrected, for the other variants
            base, info = _module_base_to_budget(net, budget, tol, power, progress=progress,
                                                **knobs)
        # (base, refit here): the C-corrected base as it is; without it, the
        # representatives re-derived here (refit_chain) with the scale-aware
        # grouping; with a calibration batch the uncorrected ones are scored too
        tries = [(base, False)]
        if refit and info["tolerance"].startswith("scaled+"):
            tries = [(corrected, False)] if corrected is not None else [(base, True)]
            if calibration is not None:
                tries += ([(base, True)] if corrected is not None else []) + [(base, False)]
        for chosen, use_refit in tries:
            compressed = rebuild(net, chosen, "Compressed" + type(model).__name__)
            done = use_refit and _refit_model(net, model, chosen, compressed)
            fixed = chosen is corrected
            info = dict(info, corrected=fixed, refit=bool(done or fixed),
                        synthetic_scale=scale if fixed else None,
                        synthetic_ridge=info["synthetic_ridge"] if fixed else None)
            if calibration is not None:
                info["calibration_mse"] = float(
                    ((_outputs(compressed, calibration) - reference) ** 2).mean())
                score = info["calibration_mse"]
            else:
                score = 0.0
            if best is None or score < best[0]:
                best = (score, chosen, compressed, info)
    _, base, compressed, info = best
    keep_ties(net, compressed)
    params = _check_within_budget(model, compressed, float(budget))
    plan = plan_from(net, base, "fibers", info["tolerance"], 0.0, params)
    plan.budget = dict(info, budget=float(budget))
    if verbose:
        print(plan.summary())
        print("budget %.3f: %s" % (budget, info))
    return compressed, plan


def reapply_budget_plan(model, example_input, plan, verbose=False, progress=None):
    """compress(model, x, plan=plan) for a plan of compress(budget=): the
    choice recorded in plan.budget (grouping, sensitivity power, input
    merging, correction and its scale) is made again, which is
    deterministic, so the model it was made on gets the same compressed
    model. ValueError when the classes come out different (other weights):
    the representatives and the correction belong to the weights they were
    derived from."""
    from ._rebuild import rebuild
    info = plan.budget
    try:
        budget, tolerance = float(info["budget"]), info["tolerance"]
        corrected, refit = bool(info["corrected"]), bool(info["refit"])
        # a plan made before the ridge was an option was made with its default
        ridge = info.get("synthetic_ridge")
        knobs = dict(merge_inputs=bool(info["merge_inputs"]),
                     input_sensitivity=float(info["input_sensitivity"]),
                     synthetic_scale=float(info["synthetic_scale"]) if corrected else 0.0,
                     synthetic_ridge=float(ridge) if corrected and ridge is not None else None)
        power = float(info["sensitivity_power"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError("the plan's budget record is incomplete (%s); compress with "
                         "budget= again" % e) from None
    net = _trace(model, example_input)
    base, got = _module_base_to_budget(net, budget, tolerance, power, progress=progress,
                                       **knobs)
    compressed = rebuild(net, base, "Compressed" + type(model).__name__)
    done = refit and not corrected and _refit_model(net, model, base, compressed)
    for layer in net.layers:
        try:
            wanted = plan.projection(layer.node)
        except KeyError:
            wanted = None
        if got["corrected"] != corrected or bool(done or corrected) != refit or \
                wanted is None or list(base.projection(layer.group)) != list(wanted):
            raise ValueError(
                "the budget plan does not re-apply to this model: budget=%g gives other "
                "classes (layer %r) or another correction here, because the plan's "
                "representatives and correction were derived from other weights; a budget "
                "plan re-applies only to the model it was made on (compress with "
                "budget=%g instead)" % (budget, layer.node, budget))
    keep_ties(net, compressed)
    params = (count_parameters(model), count_parameters(compressed) + input_index_size(compressed))
    again = plan_from(net, base, "fibers", got["tolerance"], 0.0, params)
    again.budget = dict(got, corrected=corrected, refit=refit,
                        synthetic_scale=knobs["synthetic_scale"] or None,
                        synthetic_ridge=got["synthetic_ridge"] if corrected else None,
                        budget=budget)
    if verbose:
        print(again.summary())
    return compressed, again
