"""fibration.torch.analyze(..., symmetry='all'): automorphism orbits per layer
and the refinement chain orbits <= covers <= fibers, opfibers
(Graph.hierarchy over fib_hierarchy_create / _num_classes / _chain)."""

import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

import fibration.torch as ft  # noqa: E402
from planted_models import planted_mlp  # noqa: E402


def twins_model():
    """Hidden units 0 = 1 and 2 = 3 of `0` are twins: identical input rows,
    biases and output columns. Hidden layer `2` has no twins."""
    g = torch.Generator().manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 4), nn.Tanh(),
                          nn.Linear(4, 2)).double().eval()
    with torch.no_grad():
        for lin in model[0], model[2], model[4]:
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g))
            lin.bias.copy_(torch.randn(lin.bias.shape, generator=g))
        for a, b in ((0, 1), (2, 3)):
            model[0].weight[b] = model[0].weight[a]
            model[0].bias[b] = model[0].bias[a]
            model[2].weight[:, b] = model[2].weight[:, a]
    return model, torch.randn(3, 5, dtype=torch.float64)


def resplit(model, seed=0):
    """The planted (lifted) MLP with every weight row's share of a merged
    input class re-split at random: the class sums, hence the fibers, stay;
    no two units keep identical rows and columns."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for lin in [m for m in model if isinstance(m, nn.Linear)][1:]:
            w = lin.weight
            n_in = w.shape[1]
            base = 3 if n_in == 12 else 4
            for k in range(base):
                members = list(range(k, n_in, base))
                share = torch.rand(w.shape[0], len(members), generator=g, dtype=w.dtype) + 0.5
                share = share / share.sum(1, keepdim=True)
                total = w[:, members].sum(1, keepdim=True)
                w[:, members] = total * share
    return model


def test_planted_twins_are_orbits():
    model, x = twins_model()
    report = ft.analyze(model, x, symmetry="all")
    assert report["_0"]["orbits"] == 4          # {0,1} {2,3} {4} {5}
    assert report["_0"]["fibers"] == 4
    assert report["_2"]["orbits"] == 4
    assert report.chain is True
    assert all(row["chain"] == "ok" for row in report)
    text = str(report)
    assert "orbits" in text and "chain" in text and "holds" in text


def test_lifted_model_with_resplit_weights_has_fibers_but_no_orbits():
    model, _ = planted_mlp(nn.Tanh, dtype=torch.float64)
    resplit(model)
    x = torch.randn(4, 10, dtype=torch.float64)
    report = ft.analyze(model, x, symmetry="all")
    hidden = [row for row in report if row["kind"] == "linear"][:2]
    assert [row["fibers"] for row in hidden] == [3, 4]
    assert [row["orbits"] for row in hidden] == [12, 12]     # every unit alone
    assert report.chain is True
    # the re-split model still compresses exactly to its fibers
    small, _ = ft.compress(model, x)
    assert ft.verify(model, small, x).max_rel < 1e-9


def test_evenly_split_lift_has_orbits_as_large_as_its_fibers():
    model, _ = planted_mlp(nn.Tanh, dtype=torch.float64)
    report = ft.analyze(model, torch.randn(2, 10, dtype=torch.float64), symmetry="all")
    for row in report:
        assert row["orbits"] >= row["covers"]
    hidden = [row for row in report if row["kind"] == "linear"][:2]
    assert [row["orbits"] for row in hidden] == [3, 4]


def test_default_report_has_no_hierarchy_columns():
    model, x = twins_model()
    report = ft.analyze(model, x)
    assert report.chain is None and "orbits" not in report.rows[0]
    assert "orbits" not in str(report)
    with pytest.raises(ValueError, match="symmetry"):
        ft.analyze(model, x, symmetry="orbits")


def test_graph_hierarchy_wrapper():
    model, x = twins_model()
    net = ft._trace(model, x)
    h = net.graph.hierarchy()
    assert h.num_classes(1, "automorphisms") == 4
    assert h.num_classes(1, "fibers") == 4
    assert h.chain_holds() and h.broken_links() == []
    assert h.coloring("automorphisms").symmetry == "automorphisms"
    h.close()
