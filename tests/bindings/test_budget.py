"""compress(budget=...), the scale-aware colouring from Python, the nested
tolerance tree and the retuning loop."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

import fibration.torch as ft  # noqa: E402
from fibration.torch import _budget  # noqa: E402


def mlp(seed=0, widths=(12, 40, 30, 4)):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def scaled_copies(seed=0):
    """A 12-5-4 ReLU base lifted to 12-20-16-4, every member's incoming
    weights and bias multiplied by s > 0 and its outgoing weights divided."""
    g = torch.Generator().manual_seed(seed)
    base = mlp(seed, (12, 5, 4, 3))
    big = mlp(seed, (12, 20, 16, 3))
    p1, p2 = torch.arange(20) % 5, torch.arange(16) % 4
    s1 = 0.5 + 1.5 * torch.rand(20, generator=g)
    s2 = 0.5 + 1.5 * torch.rand(16, generator=g)
    c1, c2 = torch.bincount(p1).float(), torch.bincount(p2).float()
    with torch.no_grad():
        big[0].weight.copy_(base[0].weight[p1] * s1[:, None])
        big[0].bias.copy_(base[0].bias[p1] * s1)
        big[2].weight.copy_(base[2].weight[p2][:, p1] / (c1[p1] * s1)[None, :] * s2[:, None])
        big[2].bias.copy_(base[2].bias[p2] * s2)
        big[4].weight.copy_(base[4].weight[:, p2] / (c2[p2] * s2)[None, :])
        big[4].bias.copy_(base[4].bias)
    return big


@pytest.mark.parametrize("budget", [0.1, 0.3, 0.6])
def test_budget_is_met(budget):
    model = mlp()
    x = torch.randn(16, 12)
    small, plan = ft.compress(model, x, budget=budget)
    assert ft.count_parameters(small) <= budget * ft.count_parameters(model)
    # merged inputs' class index counts as one parameter per input
    index = _budget.input_index_size(small)
    assert ft.count_parameters(small) + index <= budget * ft.count_parameters(model)
    assert plan.budget["n_parameters"] == ft.count_parameters(small) + index
    assert plan.budget["tolerance"] in ("scaled+ward", "ward")
    again, _ = ft.compress(model, x, budget=budget)
    assert ft.verify(small, again, x).max_abs == 0  # deterministic


def test_budget_with_calibration_is_no_worse_on_it():
    model = mlp(1)
    cal = torch.randn(256, 12)
    small, plan = ft.compress(model, cal[:4], budget=0.3)
    tuned, tplan = ft.compress(model, cal[:4], budget=0.3, calibration=cal)
    with torch.no_grad():
        ref = model(cal)
        e0 = float(((small(cal) - ref) ** 2).mean())
        e1 = float(((tuned(cal) - ref) ** 2).mean())
    assert e1 <= e0 + 1e-12
    # the variant kept says how it was made: the C correction or not
    assert tplan.budget["corrected"] == (tplan.budget["synthetic_scale"] is not None)
    assert tplan.budget["calibration_mse"] == pytest.approx(e1, rel=1e-4)
    assert ft.count_parameters(tuned) <= 0.3 * ft.count_parameters(model)
    with pytest.raises(ValueError):
        ft.compress(model, cal[:4], budget=1.5)


def test_scaled_copies_compress_exactly():
    big = scaled_copies()
    x = torch.randn(64, 12)
    net = ft._trace(big, x)
    coloring = net.graph.color("fibers", _budget.tolerance_code("scaled+exact"), 0.0)
    assert [coloring.num_classes(g) for g in (1, 2)] == [5, 4]
    assert np.ptp(_budget.coloring_scales(coloring, 1)) > 0.1
    from fibration.torch._rebuild import rebuild
    small = rebuild(net, net.graph.compress(coloring), "Small")
    assert ft.verify(big, small, x).max_rel < 1e-5
    # the budget finds the same base at its size
    exact = (12 * 5 + 5 + 5 * 4 + 4 + 4 * 3 + 3) / ft.count_parameters(big)
    small2, plan = ft.compress(big, x, budget=exact)
    assert ft.verify(big, small2, x).max_rel < 1e-5
    assert plan.budget["tolerance"] == "scaled+ward"
    assert plan.budget["corrected"] is True  # the C correction keeps it exact


def test_tolerance_tree_nests(tmp_path):
    model = mlp(2)
    x = torch.randn(4, 12)
    path = tmp_path / "tree.json"
    tree = ft.tolerance_tree(model, x, [0.8, 0.2, 0.4], "rel", path=str(path))
    assert json.loads(path.read_text())["eps"] == [0.2, 0.4, 0.8]
    for layer, t in tree["layers"].items():
        counts = t["classes_per_level"]
        assert counts == sorted(counts, reverse=True)
        # every level's classes are unions of the previous level's
        def walk(node):
            if "children" in node:
                members = sorted(m for c in node["children"]
                                 for m in (c.get("members") or [c["unit"]]))
                assert members == node["members"]
                for c in node["children"]:
                    walk(c)
        for node in t["classes"]:
            walk(node)
        assert sorted(m for c in t["classes"] for m in c["members"]) == list(range(t["units"]))


def test_retune_reports_rounds():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 12, generator=g)
    w = torch.randn(12, 4, generator=g)
    y = (x @ w).argmax(1)
    model = mlp(3)
    result = ft.retune(model, x, y, budgets=(0.6, 0.3), epochs=1, batch=64)
    assert 1 <= len(result.rounds) <= 2
    for r in result.rounds:
        assert r.parameters <= r.budget * ft.count_parameters(model) + 1
        assert r.loss_after <= r.loss_before + 1e-9
    assert ft.count_parameters(result.model) <= ft.count_parameters(model)


def test_refit_chain_is_exact_on_scaled_copies():
    big = scaled_copies()
    layers = [(m.weight.detach().double().numpy(), m.bias.detach().double().numpy())
              for m in big if isinstance(m, nn.Linear)]
    labels = [np.arange(20) % 5, np.arange(16) % 4]
    small = _budget.refit_chain(layers, labels)
    assert [w.shape for w, _ in small] == [(5, 12), (4, 5), (3, 4)]
    x = torch.randn(64, 12, dtype=torch.float64).numpy()
    ref, out = _run(layers, x), _run(small, x)
    assert np.abs(out - ref).max() <= 1e-9 * max(1.0, np.abs(ref).max())


def test_budget_refit_is_default_and_optional():
    model = mlp(2)
    x = torch.randn(8, 12)
    small, plan = ft.compress(model, x, budget=0.3)
    assert plan.budget["refit"] is True
    plain, pplan = _budget.compress_to_budget(model, x, 0.3, refit=False)
    assert pplan.budget["refit"] is False and pplan.budget["corrected"] is False
    assert ft.count_parameters(small) == ft.count_parameters(plain)


def _reference_join(a, b):
    """The join written independently: smallest reachable unit as label."""
    n = len(a)
    label = list(range(n))
    changed = True
    while changed:
        changed = False
        for u in range(n):
            for v in range(n):
                if (a[u] == a[v] or b[u] == b[v]) and label[v] < label[u]:
                    label[u], changed = label[v], True
    first = {}
    return [first.setdefault(x, len(first)) for x in label]


def test_color_nested_is_the_join_of_the_plain_colourings():
    import fibration
    net = mlp(4)
    graph = _trace_graph(net)
    eps = [0.35, 0.45, 0.55, 0.7]  # plain colourings that do not nest by themselves
    levels = graph.color_nested(eps, "fibers", "abs")
    assert len(levels) == 4
    hidden = [g.id for g in graph.groups() if g.sources and not g.is_output]
    previous, joined = None, 0
    for e, level in zip(eps, levels):
        plain = graph.color("fibers", "abs", e)
        for g in hidden:
            want = plain.colors(g) if previous is None else \
                _reference_join(plain.colors(g), previous.colors(g))
            assert level.colors(g).tolist() == list(want)
            joined += level.num_classes(g) < plain.num_classes(g)
        previous = level
    assert joined > 0
    with pytest.raises(fibration.FibrationError, match="smallest first"):
        graph.color_nested([0.2, 0.1])
    with pytest.raises(fibration.FibrationError, match="FIB_TOL_EXACT"):
        graph.color_nested([0.1], tolerance="exact")


def _trace_graph(model):
    from fibration.torch import _trace
    return _trace(model, torch.randn(2, 12)).graph


def test_tolerance_tree_dot(tmp_path):
    """path=*.dot draws the tree: a cluster per layer, a node per class per
    level, every edge between declared nodes, one edge up from every node
    below the top; the same drawing as `fibration analyze --tolerance-tree
    --dot` of the saved model."""
    import os
    import re
    import subprocess
    model = mlp(5)
    x = torch.randn(4, 12)
    path = tmp_path / "tree.dot"
    eps = [0.1, 0.3, 0.9]
    tree = ft.tolerance_tree(model, x, eps, "ward", path=str(path))
    text = path.read_text()
    assert text.startswith("digraph tolerance_tree {") and text.endswith("}\n")
    outside = re.sub(r'"(\\.|[^"\\])*"', '""', text)
    assert outside.count("{") == outside.count("}")
    nodes = set(re.findall(r"^\s*(\w+) \[", outside, re.M)) - {"graph", "node", "edge"}
    edges = re.findall(r"^\s*(\w+) -> (\w+)", outside, re.M)
    assert edges and all(a in nodes and b in nodes for a, b in edges)
    assert text.count("subgraph cluster_") == len(tree["layers"]) == 2
    up = {}
    for a, b in edges:
        up.setdefault(a, []).append(b)
    for layer in tree["layers"].values():
        g, top = layer["group"], len(eps) - 1
        assert sum(n.startswith("g%dl" % g) for n in nodes) == sum(layer["classes_per_level"])
        assert sum(n.startswith("g%du" % g) for n in nodes) == layer["units"]
        for n in nodes:
            if n.startswith("g%d" % g) and not n.startswith("g%dl%d" % (g, top)):
                assert len(up[n]) == 1
    # wide layers: one box per first-level class instead of one leaf per unit
    ft.tolerance_tree(model, x, eps, "ward", path=str(path), dot_max_units=8)
    assert "units counted per first-level class" in path.read_text()
    assert not re.search(r"^\s*g\d+u\d+ \[", path.read_text(), re.M)
    # the command draws the same tree of the saved model
    import fibration
    cli = os.path.join(os.path.dirname(os.path.abspath(fibration.library_path)), "cli",
                       "fibration")
    if not os.path.exists(cli):
        pytest.skip("no fibration command beside the library")
    saved = tmp_path / "model.safetensors"
    ft.save(model, str(saved), x)
    ft.tolerance_tree(model, x, eps, "ward", path=str(path))
    args = [cli, "analyze", "-q", str(saved), "--tolerance-tree", "0.1,0.3,0.9",
            "--tolerance", "ward", "--symmetry", "fibers"]
    drawn = subprocess.run(args + ["--dot"], capture_output=True, text=True, check=True).stdout
    assert drawn.splitlines()[2:] == path.read_text().splitlines()[2:]
    report = json.loads(subprocess.run(args + ["--json"], capture_output=True, text=True,
                                       check=True).stdout)
    assert report["layers"] == json.loads(json.dumps(tree["layers"]))


def _run(ls, x):
    h = x
    for i, (w, b) in enumerate(ls):
        h = h @ w.T + b
        if i < len(ls) - 1:
            h = np.maximum(h, 0)
    return h


def _layers(model):
    return [(m.weight.detach().double().numpy(), m.bias.detach().double().numpy())
            for m in model if isinstance(m, nn.Linear)]


def test_synthetic_refit_stays_exact_on_scaled_copies():
    layers = _layers(scaled_copies())
    labels = [np.arange(20) % 5, np.arange(16) % 4]
    small = _budget.synthetic_refit(layers, labels, 1.0)
    assert [w.shape for w, _ in small] == [(5, 12), (4, 5), (3, 4)]
    x = np.random.default_rng(1).standard_normal((64, 12))
    ref = _run(layers, x)
    assert np.abs(_run(small, x) - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())


def test_synthetic_refit_is_least_squares_on_its_inputs():
    """One hidden layer: the same merged layer as refit_chain, and an output
    layer that is the least-squares fit on the synthetic inputs, so its
    outputs there are at least as close to the original's."""
    layers = _layers(mlp(4, (12, 40, 4)))
    labels = [np.arange(40) % 7]
    plain = _budget.refit_chain(layers, labels)
    fixed = _budget.synthetic_refit(layers, labels, 0.5)
    assert [w.shape for w, _ in fixed] == [w.shape for w, _ in plain]
    assert np.array_equal(fixed[0][0], plain[0][0]) and np.array_equal(fixed[0][1], plain[0][1])
    x = 0.5 * np.random.default_rng(0).standard_normal((8192, 12))  # its samples
    ref = _run(layers, x)
    assert ((_run(fixed, x) - ref) ** 2).mean() < ((_run(plain, x) - ref) ** 2).mean()
    # deeper: closer on fresh inputs of that scale too
    layers = _layers(mlp(4, (12, 40, 30, 4)))
    labels = [np.arange(40) % 7, np.arange(30) % 9]
    plain = _budget.refit_chain(layers, labels)
    fixed = _budget.synthetic_refit(layers, labels, 0.5)
    x = 0.5 * np.random.default_rng(5).standard_normal((4096, 12))
    ref = _run(layers, x)
    assert ((_run(fixed, x) - ref) ** 2).mean() < ((_run(plain, x) - ref) ** 2).mean()
    # no usable scale: refit_chain
    for scale in (0.0, None, float("nan")):
        out = _budget.synthetic_refit(layers, labels, scale)
        assert all(np.array_equal(a[0], b[0]) for a, b in zip(out, plain))


def test_budget_synthetic_refit_is_default_and_optional():
    model = mlp(2)
    x = torch.randn(8, 12)
    small, plan = ft.compress(model, x, budget=0.3)
    assert plan.budget["refit"] is True
    assert plan.budget["synthetic_scale"] == pytest.approx(float(x.double().std()))
    assert plan.budget["corrected"] is True  # by the C library
    plain, pplan = _budget.compress_to_budget(model, x, 0.3, synthetic=False)
    assert pplan.budget["refit"] is True and pplan.budget["synthetic_scale"] is None
    assert pplan.budget["corrected"] is False
    assert ft.count_parameters(small) == ft.count_parameters(plain)
    assert ft.verify(small, plain, x).max_abs > 0
    # an example input without spread (or not floating point) has no scale:
    # the plain refit
    assert _budget._input_scale(torch.zeros(4, 12)) is None
    assert _budget._input_scale(torch.ones(4, 12, dtype=torch.int64)) is None


def test_budget_synthetic_ridge_reaches_c():
    """synthetic_ridge is fib_budget_options.synthetic_ridge: None is the
    library's 1e-3 to the bit, another ridge gives another corrected model
    with the same classes, the plan records it and re-applies with it, a
    negative one is refused by C, and scaled copies stay exact at any."""
    import fibration
    model = mlp(2)
    x = torch.randn(8, 12)

    def weights(m):
        return [t.detach().clone() for t in m.state_dict().values()]

    default, plan = _budget.compress_to_budget(model, x, 0.3)
    assert plan.budget["corrected"] is True and plan.budget["synthetic_ridge"] == 1e-3
    explicit, _ = _budget.compress_to_budget(model, x, 0.3, synthetic_ridge=1e-3)
    assert all(torch.equal(a, b) for a, b in zip(weights(default), weights(explicit)))
    bare, bplan = _budget.compress_to_budget(model, x, 0.3, synthetic_ridge=1e-10)
    assert bplan.budget["synthetic_ridge"] == 1e-10
    assert [t.shape for t in weights(bare)] == [t.shape for t in weights(default)]
    assert ft.verify(default, bare, x).max_abs > 1e-9
    again, aplan = ft.compress(model, x, plan=bplan)
    assert aplan.budget["synthetic_ridge"] == 1e-10
    assert all(torch.equal(a, b) for a, b in zip(weights(bare), weights(again)))
    plain, pplan = _budget.compress_to_budget(model, x, 0.3, synthetic=False)
    assert pplan.budget["synthetic_ridge"] is None
    with pytest.raises(fibration.FibrationError, match="synthetic_ridge -1"):
        _budget.compress_to_budget(model, x, 0.3, synthetic_ridge=-1.0)
    big = scaled_copies()
    exact = (12 * 5 + 5 + 5 * 4 + 4 + 4 * 3 + 3) / ft.count_parameters(big)
    for ridge in (0.0, 1e-10, 10.0):
        small, splan = _budget.compress_to_budget(big, x, exact, synthetic_ridge=ridge)
        assert splan.budget["corrected"] is True
        assert ft.verify(big, small, x).max_rel < 1e-5


def test_synthetic_refit_follows_leaky_relu():
    """Scaled copies stay exact under any positively homogeneous activation;
    the synthetic inputs go through the network's own (leaky) activation."""
    layers = _layers(scaled_copies())
    labels = [np.arange(20) % 5, np.arange(16) % 4]

    def run(ls, x, slope):
        h = x
        for i, (w, b) in enumerate(ls):
            h = h @ w.T + b
            if i < len(ls) - 1:
                h = np.where(h > 0, h, slope * h)
        return h
    small = _budget.synthetic_refit(layers, labels, 1.0, slopes=[0.1, 0.1])
    x = np.random.default_rng(2).standard_normal((64, 12))
    ref = run(layers, x, 0.1)
    assert np.abs(run(small, x, 0.1) - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())
    model = nn.Sequential(nn.Linear(12, 40), nn.LeakyReLU(0.1), nn.Linear(40, 30),
                          nn.LeakyReLU(0.1), nn.Linear(30, 4))
    small, plan = ft.compress(model, torch.randn(8, 12), budget=0.3)
    assert plan.budget["tolerance"] == "scaled+ward" and plan.budget["synthetic_scale"]
    assert plan.budget["corrected"] is True  # C follows the leaky slope too
    assert ft.count_parameters(small) <= 0.3 * ft.count_parameters(model)



def test_synthetic_refit_samples_and_ridge():
    """The least squares are fitted on n_samples synthetic inputs: a wide
    consumer fitted on few samples overfits them (worse on fresh inputs of the
    same scale) and more samples do better; the ridge pulls towards
    refit_chain's consumer, so planted scaled copies stay exact with any
    ridge, and a huge ridge gives refit_chain itself."""
    import inspect
    params = inspect.signature(_budget.synthetic_refit).parameters
    assert params["n_samples"].default == 8192 and params["ridge"].default == 1e-3
    # the C correction's default ridge, fib_budget_options.synthetic_ridge
    import ctypes
    opts = _budget._ffi.fib_budget_options()
    assert _budget.lib.fib_budget_options_init(ctypes.byref(opts), ctypes.sizeof(opts)) == 0
    assert opts.synthetic_ridge == params["ridge"].default
    layers = _layers(mlp(6, (12, 300, 200, 4)))
    labels = [np.arange(300) % 150, np.arange(200) % 120]
    x = 0.5 * np.random.default_rng(9).standard_normal((4096, 12))
    ref = _run(layers, x)

    def err(**kw):
        return ((_run(_budget.synthetic_refit(layers, labels, 0.5, **kw), x) - ref) ** 2).mean()
    few, some, many = err(n_samples=400), err(), err(n_samples=32768, ridge=1e-3)
    assert many < some < few
    plain = _budget.refit_chain(layers, labels)
    huge = _budget.synthetic_refit(layers, labels, 0.5, ridge=1e9)
    for (a, b), (c, d) in zip(huge, plain):
        assert np.allclose(a, c, atol=1e-6) and np.allclose(b, d, atol=1e-6)
    planted = _layers(scaled_copies())
    plabels = [np.arange(20) % 5, np.arange(16) % 4]
    xs = np.random.default_rng(1).standard_normal((64, 12))
    pref = _run(planted, xs)
    for ridge in (1e-10, 1e-3, 1.0):
        small = _budget.synthetic_refit(planted, plabels, 1.0, ridge=ridge)
        assert np.abs(_run(small, xs) - pref).max() <= 1e-5 * max(1.0, np.abs(pref).max())


def planted_inputs(seed=0, n_in=24, k_in=6):
    """A 24-16-8-3 ReLU MLP whose inputs come in 6 opfiber classes: the
    first Linear's columns are equal within each class."""
    model = mlp(seed, (n_in, 16, 8, 3))
    cls = (torch.arange(n_in) * 5) % k_in
    with torch.no_grad():
        reps = torch.randn(16, k_in, generator=torch.Generator().manual_seed(seed))
        model[0].weight.copy_(reps[:, cls])
    return model, cls


def test_budget_merges_planted_inputs():
    from fibration.torch._modules import InputClassMean
    model, cls = planted_inputs()
    x = torch.randn(64, 24)
    own = (6 * 16 + 16 + 16 * 8 + 8 + 8 * 3 + 3 + 24) / ft.count_parameters(model)
    small, plan = ft.compress(model, x, budget=own)
    means = [m for m in small.modules() if isinstance(m, InputClassMean)]
    assert len(means) == 1 and means[0].n_classes == 6
    got = means[0].classes.numpy()
    assert all((got[a] == got[b]) == bool(cls[a] == cls[b])
               for a in range(24) for b in range(24))
    assert plan.budget["merge_inputs"] is True
    assert plan.budget["n_parameters"] == ft.count_parameters(small) + 24
    assert ft.verify(model, small, x).max_rel < 1e-5  # the same function
    # lift brings it back to the original shape; the file format cannot hold
    # the input means yet and says so
    big = ft.lift(small, plan, model)
    assert ft.verify(small, big, x).max_rel < 1e-5
    with pytest.raises(ft.UnsupportedModelError, match="merge_inputs"):
        ft.save(small, "never-written.safetensors", x)
    # its plan re-applies by redoing the budget's choice: the same model
    again, _ = ft.compress(model, x, plan=plan)
    assert ft.verify(small, again, x).max_abs == 0
    # without its budget record (an older plan) the merged inputs cannot be
    # re-applied, and that is said
    plan.budget = None
    with pytest.raises(ValueError, match="merges inputs"):
        ft.compress(model, x, plan=plan)
    # without the option the inputs stay
    plain, pplan = _budget.compress_to_budget(model, x, 0.6, merge_inputs=False)
    assert not any(isinstance(m, InputClassMean) for m in plain.modules())
    assert pplan.budget["merge_inputs"] is False


def test_refits_read_input_class_means():
    model, cls = planted_inputs(1)
    layers = _layers(model)
    labels = [np.arange(16), np.arange(8)]  # hidden units all kept
    x = np.random.default_rng(2).standard_normal((32, 24))
    ref = _run(layers, x)
    xm = _budget.input_means(x, cls.numpy())
    assert xm.shape == (32, 6)
    for small in (_budget.refit_chain(layers, labels, cls.numpy()),
                  _budget.synthetic_refit(layers, labels, 1.0, input_labels=cls.numpy())):
        assert small[0][0].shape == (16, 6)
        assert np.abs(_run(small, xm) - ref).max() <= 1e-6 * max(1.0, np.abs(ref).max())


def test_c_synthetic_correction_matches_the_numpy_reference():
    """compress(budget=) runs the C correction (fib_budget_options.
    synthetic_scale): its model is the C-corrected base rebuilt, nothing
    more. Against synthetic_refit (numpy, the reference) with the same
    classes: both move the outputs towards the original's on fresh inputs of
    that scale, further than refit_chain alone, by about as much, and the two
    models differ by far less than either differs from the original. They
    cannot agree exactly: C draws its synthetic inputs from the library's
    generator (seed 0), numpy from its own, so the least squares see
    different samples. On planted scaled copies both are exact
    (test_scaled_copies_compress_exactly and
    test_synthetic_refit_stays_exact_on_scaled_copies)."""
    from fibration.torch._rebuild import rebuild
    model = mlp(5, (12, 40, 30, 4))
    x = torch.randn(64, 12, generator=torch.Generator().manual_seed(5))
    scale = _budget._input_scale(x)
    small, plan = ft.compress(model, x, budget=0.3)
    assert plan.budget["corrected"] is True and plan.budget["refit"] is True
    assert plan.budget["synthetic_scale"] == pytest.approx(scale)
    net = ft.trace(model, x)
    plain_base, info = _budget.base_to_budget(net.graph, 0.3, merge_inputs=True)
    assert info["corrected"] is False
    c_base, c_info = _budget.base_to_budget(net.graph, 0.3, merge_inputs=True,
                                            synthetic_scale=scale)
    assert c_info["corrected"] is True
    for g in (0, 1, 2):  # the same classes
        assert np.array_equal(plain_base.projection(g), c_base.projection(g))
    assert ft.verify(small, rebuild(net, c_base, "C"), x).max_abs == 0
    plain = rebuild(net, plain_base, "Plain")
    refit = rebuild(net, plain_base, "Refit")
    assert _budget._refit_model(net, model, plain_base, refit)
    numpy_fixed = rebuild(net, plain_base, "Numpy")
    assert _budget._refit_model(net, model, plain_base, numpy_fixed, scale)
    fresh = scale * torch.randn(4096, 12, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        ref = model(fresh)
        out = {name: m(fresh) for name, m in (("plain", plain), ("refit", refit),
                                              ("c", small), ("numpy", numpy_fixed))}
    err = {name: float(((o - ref) ** 2).mean()) for name, o in out.items()}
    assert err["c"] < err["refit"] < err["plain"] and err["numpy"] < err["refit"], err
    assert err["c"] < 1.5 * err["numpy"] and err["numpy"] < 1.5 * err["c"], err
    # the two draws' models: 1% of the error apart here
    assert float(((out["c"] - out["numpy"]) ** 2).mean()) < 0.05 * err["numpy"], err
    # lift brings the corrected model back to the original shape
    assert ft.verify(small, ft.lift(small, plan, model), x).max_rel < 1e-5


def test_budget_falls_back_where_c_does_not_correct():
    """Where fib_budget_correct does not apply, compress(budget=) does what
    it did before the C correction: a Linear without bias keeps Eq. 10's base
    (no refit); a hidden activation that is not positively homogeneous (tanh
    under an explicit scale-aware grouping) gets refit_chain alone."""
    from fibration.torch._rebuild import rebuild
    x = torch.randn(16, 12, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(3)
    no_bias = nn.Sequential(nn.Linear(12, 40, bias=False), nn.ReLU(), nn.Linear(40, 30),
                            nn.ReLU(), nn.Linear(30, 4))
    small, plan = ft.compress(no_bias, x, budget=0.3)
    assert plan.budget["tolerance"] == "scaled+ward"
    assert plan.budget["corrected"] is False and plan.budget["refit"] is False
    assert plan.budget["synthetic_scale"] is None
    net = ft.trace(no_bias, x)
    base, _ = _budget.base_to_budget(net.graph, 0.3, merge_inputs=True)
    assert ft.verify(small, rebuild(net, base, "Plain"), x).max_abs == 0
    tanh = nn.Sequential(nn.Linear(12, 40), nn.Tanh(), nn.Linear(40, 30), nn.ReLU(),
                         nn.Linear(30, 4))
    small, plan = _budget.compress_to_budget(tanh, x, 0.3, tolerance="scaled+ward")
    assert plan.budget["tolerance"] == "scaled+ward"
    assert plan.budget["corrected"] is False and plan.budget["refit"] is True
    assert plan.budget["synthetic_scale"] is None
    net = ft.trace(tanh, x)
    base, info = _budget.base_to_budget(net.graph, 0.3, "scaled+ward", merge_inputs=True,
                                        synthetic_scale=1.0)
    assert info["corrected"] is False
    refit = rebuild(net, base, "Refit")
    assert _budget._refit_model(net, tanh, base, refit)
    assert ft.verify(small, refit, x).max_abs == 0
