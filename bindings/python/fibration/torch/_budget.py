"""Compression to a parameter budget, scale-aware colourings and the
hierarchy of colourings at increasing tolerance.

    small, plan = ft.compress(model, x, budget=0.17)              # data-free
    small, plan = ft.compress(model, x, budget=0.17, calibration=xb)  # refined
    tree = ft.tolerance_tree(model, x, [0.05, 0.1, 0.2], "scaled+ward")

The budget is the fraction of parameters kept. fib_compress_to_budget (C)
chooses the grouping (scale-aware rank-1 Ward or plain Ward) and the number of
classes of every hidden layer by minimising a data-free bound on the output
change (merge errors weighted by the operator norms downstream). With a
calibration batch (the user's data, never the test set) a few variants of that
choice are compressed and the one whose outputs stay closest to the original
model's on the batch is kept.
"""

import ctypes
import json

import numpy as np
import torch

from .. import _ffi, check, lib

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


def coloring_scales(coloring, group):
    """Per-unit scales of a group (fib_coloring_scales; all 1 unless scaled)."""
    n = coloring.graph.group(group).n_units
    out = np.empty(n, np.float64)
    check(lib.fib_coloring_scales(coloring._p(), group,
                                  out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)), n),
          "fib_coloring_scales")
    return out


def set_coloring_scales(coloring, group, scales):
    arr = np.ascontiguousarray(scales, dtype=np.float64)
    check(lib.fib_coloring_set_scales(coloring._p(), group,
                                      arr.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
                                      arr.shape[0]), "fib_coloring_set_scales")


def base_to_budget(graph, budget, tolerance=0, sensitivity_power=1.5, refine_iterations=None):
    """fib_compress_to_budget on a fibration.Graph: (Base, info dict)."""
    from .._core import Base
    opts = _ffi.fib_budget_options()
    check(lib.fib_budget_options_init(ctypes.byref(opts), ctypes.sizeof(opts)),
          "fib_budget_options_init")
    opts.tolerance = tolerance_code(tolerance)
    opts.sensitivity_power = float(sensitivity_power)
    if refine_iterations is not None:
        opts.refine_iterations = int(refine_iterations)
    out = ctypes.POINTER(_ffi.fib_base)()
    check(lib.fib_compress_to_budget(graph._cp(), float(budget), ctypes.byref(opts),
                                     ctypes.byref(out)), "fib_compress_to_budget")
    info = {"bound": opts.bound, "n_parameters": opts.n_parameters,
            "tolerance": tolerance_name(opts.chosen_tolerance),
            "sensitivity_power": float(sensitivity_power)}
    return Base._adopt(out, graph), info


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


def refit_chain(layers, labels):
    """Re-derives a compressed chain of dense layers from the original weights
    and the classes of every hidden layer (positively homogeneous activations):
    layer by layer, each class's representative is the outgoing-norm-weighted
    rank-1 fit of its members' rows (over the already merged inputs), each unit
    is replaced by s_i r_c with s_i = max(<f_i, r_c> / |r_c|^2, 0), and the next
    layer's weights become sum_{i in c} W[:, i] s_i. Data-free; returns
    [(W, b)] of the compressed chain. `layers`: [(W, b)] float64, the last one
    the output layer; `labels`: one class array per hidden layer."""
    out, carry = [], None
    for l, (w, b) in enumerate(layers):
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


def _refit_model(net, model, base, compressed):
    """refit_chain applied to a rebuilt chain of nn.Linear (in place)."""
    dense = [layer for layer in net.layers if layer.kind == "dense"]
    mods = [model.get_submodule(layer.module) for layer in dense]
    if not dense or any(not isinstance(m, torch.nn.Linear) or m.bias is None for m in mods):
        return False
    layers = [(m.weight.detach().double().numpy(), m.bias.detach().double().numpy())
              for m in mods]
    labels = [base.projection(layer.group) for layer in dense[:-1]]
    new = refit_chain(layers, labels)
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


# Variants tried with a calibration batch: (grouping, sensitivity power).
CALIBRATION_VARIANTS = [(0, 1.5), ("scaled+ward", 1.0), ("scaled+ward", 2.0),
                        ("ward", 1.0), ("ward", 1.5), ("ward", 2.0)]


def compress_to_budget(model, example_input, budget, calibration=None, verbose=False,
                       tolerance=0, sensitivity_power=1.5, refit=True):
    """(compressed, plan) with at most `budget` of the parameters kept."""
    from . import _plan_from, _trace, count_parameters
    from ._rebuild import rebuild
    if not (0 < float(budget) <= 1):
        raise ValueError("budget is the fraction of parameters kept, in (0, 1]; got %r"
                         % (budget,))
    net = _trace(model, example_input)
    if calibration is None:
        variants = [(tolerance, sensitivity_power)]
    else:
        variants = CALIBRATION_VARIANTS
        reference = _outputs(model, calibration)
    best = None
    for tol, power in variants:
        base, info = base_to_budget(net.graph, budget, tol, power)
        # with the scale-aware grouping, the representatives are re-derived
        # (refit_chain); with a calibration batch both are scored
        tries = [False]
        if refit and info["tolerance"].startswith("scaled+"):
            tries = [True, False] if calibration is not None else [True]
        for use_refit in tries:
            compressed = rebuild(net, base, "Compressed" + type(model).__name__)
            done = use_refit and _refit_model(net, model, base, compressed)
            info = dict(info, refit=bool(done))
            if calibration is not None:
                info["calibration_mse"] = float(
                    ((_outputs(compressed, calibration) - reference) ** 2).mean())
                score = info["calibration_mse"]
            else:
                score = 0.0
            if best is None or score < best[0]:
                best = (score, base, compressed, info)
    _, base, compressed, info = best
    params = (count_parameters(model), count_parameters(compressed))
    plan = _plan_from(net, base, "fibers", info["tolerance"], 0.0, params)
    plan.budget = dict(info, budget=float(budget))
    if verbose:
        print(plan.summary())
        print("budget %.3f: %s" % (budget, info))
    return compressed, plan


# -- hierarchy --------------------------------------------------------------

def _join(a, b):
    """The finest partition coarser than both a and b (label arrays):
    connected components of 'same class in a or in b'."""
    n = len(a)
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for labels in (a, b):
        first = {}
        for u, c in enumerate(labels):
            c = int(c)
            if c in first:
                ra, rb = find(first[c]), find(u)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
            else:
                first[c] = u
    roots = [find(u) for u in range(n)]
    names = {}
    return np.array([names.setdefault(r, len(names)) for r in roots], np.int64)


def nested_colorings(graph, eps_list, tolerance="rel", symmetry="fibers"):
    """Colourings at increasing eps, made to nest: level t is the join of the
    colouring at eps_list[t] and level t - 1, so a class never splits as eps
    grows. Returns [(eps, {group: labels})] for the hidden groups."""
    eps_list = sorted(float(e) for e in eps_list)
    code = tolerance_code(tolerance)
    groups = [g.id for g in graph.groups() if g.sources and not g.is_output]
    levels, previous = [], None
    for eps in eps_list:
        coloring = graph.color(symmetry, code, eps)
        labels = {}
        for g in groups:
            lab = coloring.colors(g)
            labels[g] = lab if previous is None else _join(previous[g], lab)
        levels.append((eps, labels))
        previous = labels
    return levels


def _tree(levels, group, n_units):
    """A nested tree: leaves are units; level t's classes are internal nodes
    whose children are level t - 1's classes (units at the first level)."""
    children = [{"unit": u} for u in range(n_units)]
    for eps, labels in levels:
        lab = labels[group]
        nodes = {}
        if len(children) and "unit" in children[0]:
            for u, child in enumerate(children):
                nodes.setdefault(int(lab[u]), []).append(child)
        else:
            for child in children:
                nodes.setdefault(int(lab[child["members"][0]]), []).append(child)
        children = []
        for c in sorted(nodes):
            kids = nodes[c]
            members = sorted(m for k in kids for m in (k["members"] if "members" in k
                                                       else [k["unit"]]))
            children.append({"eps": eps, "class": c, "members": members, "children": kids})
    return {"units": n_units, "levels": [e for e, _ in levels], "classes": children}


def tolerance_tree(model, example_input, eps_list, tolerance="scaled+ward", path=None):
    """The nested hierarchy of colourings of every hidden Linear layer as a
    dict {layer: tree} (written as JSON to `path` when given)."""
    from . import _trace
    net = _trace(model, example_input)
    levels = nested_colorings(net.graph, eps_list, tolerance)
    out = {"tolerance": tolerance, "eps": sorted(float(e) for e in eps_list), "layers": {}}
    for layer in net.layers:
        if layer.kind != "dense" or layer.group not in levels[0][1]:
            continue
        tree = _tree(levels, layer.group, layer.width)
        tree["classes_per_level"] = [int(len(set(lab[layer.group].tolist())))
                                     for _, lab in levels]
        out["layers"][layer.module or layer.node] = tree
    if path is not None:
        with open(path, "w") as f:
            json.dump(out, f)
    return out
