"""Fibers and opfibers of torchvision's resnet18, random and planted, on the
paths ft.analyze takes: Graph.color_fibers_opfibers (the opfibers flavoured
by fibers coloured once), the kernels lent as signatures (conv fiber_view,
opfiber_view) and the exact forms of batch norm and pooling. The classes
must be those fib_color gives for each symmetry alone, and on the planted
model exactly the planted pairs, in EXACT and ABS, at 1 and 2 threads.

Planted: in every basic block, for the even channels i of the first
quarter, conv1's kernel and bn1's parameters of channel i + 1 are copied
from i (fibers merge them in conv1 and bn1), and conv2 reads input channel
i + 1 with channel i's kernels (so their opfibers merge too: bn1's through
conv2's alike columns, conv1's through bn1's equal scales)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import fibration.torch as ft  # noqa: E402


def _planted_pairs(model):
    """{id(bn1 module): [(i, i + 1), ...]} after planting them."""
    from torchvision.models.resnet import BasicBlock
    pairs = {}
    with torch.no_grad():
        for block in model.modules():
            if not isinstance(block, BasicBlock):
                continue
            n = block.conv1.out_channels
            pairs[block] = [(i, i + 1) for i in range(0, n // 4, 2)]
            for i, j in pairs[block]:
                block.conv1.weight[j] = block.conv1.weight[i]
                for t in (block.bn1.weight, block.bn1.bias, block.bn1.running_mean,
                          block.bn1.running_var):
                    t[j] = t[i]
                block.conv2.weight[:, j] = block.conv2.weight[:, i]
    return pairs


def _network(planted):
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    pairs = _planted_pairs(model) if planted else {}
    x = torch.randn(1, 3, 64, 64)
    return model, ft._trace(model, x), pairs


def _classes(coloring, net):
    return {layer.group: coloring.colors(layer.group) for layer in net.layers}


def _merged_pairs(colors):
    """Sorted (first, second) of every class of exactly two units; None
    when a class has more."""
    _, inverse, counts = np.unique(colors, return_inverse=True, return_counts=True)
    if counts.max() > 2:
        return None
    return sorted(tuple(np.flatnonzero(inverse == k)) for k in np.flatnonzero(counts == 2))


@pytest.mark.parametrize("planted", [False, True], ids=["random", "planted"])
@pytest.mark.parametrize("tolerance,eps", [("exact", 0.0), ("abs", 1e-3)])
@pytest.mark.parametrize("threads", [1, 2])
def test_fibers_opfibers_are_each_symmetry_alone(planted, tolerance, eps, threads):
    model, net, _ = _network(planted)
    g = net.graph
    fibers, opfibers = g.color_fibers_opfibers(tolerance, eps, n_threads=threads)
    assert fibers.symmetry == "fibers" and opfibers.symmetry == "opfibers"
    for pair, symmetry in ((fibers, "fibers"), (opfibers, "opfibers")):
        alone = g.color(symmetry, tolerance, eps, n_threads=threads)
        got, want = _classes(pair, net), _classes(alone, net)
        assert all(np.array_equal(got[k], want[k]) for k in want), symmetry
    # ft.analyze's table counts those very classes
    report = ft.analyze(model, torch.randn(1, 3, 64, 64), eps=eps, tolerance=tolerance)
    by_node = {layer.node: layer.group for layer in net.layers}
    for row in report.rows:
        group = by_node[row["node"]]
        assert row["fibers"] == fibers.num_classes(group)
        assert row["opfibers"] == opfibers.num_classes(group)


@pytest.mark.parametrize("tolerance,eps", [("exact", 0.0), ("abs", 1e-3)])
@pytest.mark.parametrize("threads", [1, 2])
def test_planted_pairs_are_the_only_classes(tolerance, eps, threads):
    model, net, pairs = _network(True)
    fibers, opfibers = net.graph.color_fibers_opfibers(tolerance, eps, n_threads=threads)
    module_group = {layer.module: layer.group for layer in net.layers if layer.module}
    names = {m: n for n, m in model.named_modules()}
    expected = {}
    for block, planted in pairs.items():
        for part in ("conv1", "bn1"):
            expected[module_group[names[getattr(block, part)]]] = planted
    assert len(expected) == 2 * len(pairs) == 16
    for layer in net.layers:
        want = expected.get(layer.group, [])
        assert _merged_pairs(fibers.colors(layer.group)) == want, layer.node
        assert _merged_pairs(opfibers.colors(layer.group)) == want, layer.node


def test_analyze_without_symmetry_reports_the_model_as_its_base(monkeypatch):
    """No two units alike (random weights): the report's base is the model
    itself, made without fib_compress (which would copy every weight to
    float64), and still checked against the model's outputs; with planted
    pairs, fib_compress makes the base and the merged layers shrink."""
    from fibration import _core
    compress = _core.Graph.compress
    calls = []

    def counted(self, *args, **kwargs):
        calls.append(1)
        return compress(self, *args, **kwargs)
    monkeypatch.setattr(_core.Graph, "compress", counted)
    x = torch.randn(1, 3, 64, 64)
    for planted in (False, True):
        model, _, _ = _network(planted)
        report = ft.analyze(model, x)
        assert len(calls) == planted
        shrunk = [row for row in report.rows if row["base params"] < row["params"]]
        assert all(row["base params"] <= row["params"] for row in report.rows)
        if planted:
            # conv1 (kernels and rows), bn1 of the 8 blocks, conv2 reading them
            assert len(shrunk) == 24 and report.params[1] < report.params[0]
        else:
            assert not shrunk and report.params[0] == report.params[1]
