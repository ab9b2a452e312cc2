"""The data-free peers of docs/examples/cnn_peers.py (issue 26's frontier):
every peer meets the budget's parameter count, merging at full width keeps
the outputs, and bias compensation from the stored batch-norm statistics
restores exactly what constant channels contributed."""

import os
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("scipy")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "docs", "examples"))

import cnn_budget_frontier as frontier  # noqa: E402
import cnn_peers  # noqa: E402


def trained_like(name, seed=0):
    """A network with random weights and random batch-norm statistics."""
    torch.manual_seed(seed)
    model = frontier.NETS[name]()
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            with torch.no_grad():
                module.weight.copy_(torch.rand(n, generator=g) + 0.5)
                module.bias.copy_(torch.randn(n, generator=g) * 0.3)
                module.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                module.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model.eval()


@pytest.mark.parametrize("name", ["resnet", "vgg"])
def test_every_peer_meets_the_budget(name):
    model = trained_like(name)
    total = cnn_peers.count(model)
    x = torch.randn(2, 1, 28, 28)
    for budget in (min(frontier.BUDGETS[name]), max(frontier.BUDGETS[name])):
        peers = frontier.peer_models(model, name, budget)
        assert len(peers) == 2 * len(cnn_peers.METHODS)
        for label, small in peers.items():
            kept = cnn_peers.count(small)
            assert kept <= budget * total, (label, budget, kept)
            assert kept >= 0.8 * budget * total, (label, budget, kept)  # not far below it
            with torch.no_grad():
                assert torch.isfinite(small(x)).all()


@pytest.mark.parametrize("name", ["resnet", "vgg"])
def test_merging_at_full_width_keeps_the_outputs(name):
    model = trained_like(name)
    same = cnn_peers.apply(model, name, 1.0, "merge+bc")
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert (same(x) - model(x)).abs().max().item() < 1e-4


def test_bias_compensation_restores_constant_channels():
    """Half of the last convolution's channels have batch-norm scale 0 (a
    constant after the ReLU and the max pool): BN-scale pruning removes
    them, and the compensation gives the hidden layer their contribution
    back exactly; without it the outputs move."""
    model = trained_like("vgg")
    with torch.no_grad():
        model.features[11].weight[:32] = 0
        model.features[11].bias[:32] = torch.rand(32) + 0.1
    widths = [32, 32, 64, 32, 128]
    x = torch.randn(4, 1, 28, 28)
    compensated = cnn_peers.apply(model, "vgg", None, "bn+bc", widths)
    plain = cnn_peers.apply(model, "vgg", None, "bn", widths)
    assert compensated.features[10].out_channels == 32
    with torch.no_grad():
        want = model(x)
        assert (compensated(x) - want).abs().max().item() < 1e-4
        assert (plain(x) - want).abs().max().item() > 1e-2


def test_the_reestimated_result_is_its_own_column_never_a_peer(capsys):
    """The library's result with batch-norm statistics re-estimated on data
    is printed in its own column; the best peer, the paired difference and
    the seeds above every peer are those of the data-free methods."""
    scores = {("vgg", 1.0, "baseline"): [90.0, 91.0],
              ("vgg", 0.3, "lib:budget"): [80.0, 82.0],
              ("vgg", 0.3, "uniform l1"): [70.0, 71.0],
              ("vgg", 0.3, "global bn"): [60.0, 90.0],
              ("vgg", 0.3, frontier.REESTIMATED): [95.0, 96.0]}
    frontier.report(scores, [0, 1])
    header, _, row = [line for line in capsys.readouterr().out.splitlines()
                      if line.startswith("|")][:3]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert header.count("|") == row.count("|")
    assert "global bn" in cells[5] and "reestimated" not in cells[5]
    assert cells[6].startswith("+6.0")  # 81.0 - 75.0, paired
    assert cells[7] == "1 of 2 seeds"
    assert cells[-1].startswith("95.5")


def test_records_round_trip_through_csv(tmp_path):
    records = [("resnet", 1.0, "baseline", 0, 86.25, 77754),
               ("resnet", 0.5, "uniform bn+bc", 0, 27.5, 38000),
               ("resnet", 0.5, frontier.REESTIMATED, 1, 80.0, 38800)]
    path = str(tmp_path / "frontier.csv")
    frontier.write_records(path, records)
    assert frontier.read_records(path) == records


def test_the_plot_draws_one_seed_and_several(tmp_path):
    """One seed has no interval (drawn without error bars); the file is a PNG."""
    pytest.importorskip("matplotlib")
    for seeds in ([80.0], [80.0, 84.0]):
        n = len(seeds)
        scores = {("resnet", 1.0, "baseline"): [89.0] * n,
                  ("resnet", 0.5, "lib:budget"): seeds,
                  ("resnet", 0.5, "uniform bn+bc"): [30.0] * n,
                  ("resnet", 0.5, frontier.REESTIMATED): [86.0] * n}
        path = tmp_path / ("f%d.png" % n)
        frontier.plot(scores, str(path))
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
