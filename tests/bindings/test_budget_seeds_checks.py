"""docs/examples/budget_seeds.py --checks: the variants behind
docs/compression.md's checks of the synthetic correction, on a small
network. The scale variant at the example's own scale is the default
compress(budget=); the numpy chains are the networks the refits describe;
the data-based bias correction leaves no mean error on its rows; a merge
site kept alone leaves every other layer exact; the rescaled first layer
at scale 1 and the chosen power are compress(budget=) models; the summary
pairs a variant with several references."""

import csv
import os
import sys

import numpy as np
import pytest

from conftest import ROOT

torch = pytest.importorskip("torch")
pytest.importorskip("scipy")
sys.path.insert(0, os.path.join(ROOT, "docs", "examples"))

import budget_seeds  # noqa: E402
import fibration.torch as ft  # noqa: E402
from fibration.torch import _budget  # noqa: E402
from test_budget_seeds_stages import small_network  # noqa: E402


def outputs(module, x):
    module.eval()
    with torch.no_grad():
        return module(x).double().numpy()


def test_check_runs(monkeypatch):
    model, example = small_network()
    scale = _budget._input_scale(example)
    monkeypatch.setattr(budget_seeds, "CHECK_SIGMAS", (scale, 1.0))
    monkeypatch.setattr(budget_seeds, "ORACLE_IMAGES", 200)
    fit = torch.randn(300, 16) * 0.4
    net = ft.trace(model, example)
    logged = []
    runs = budget_seeds.check_runs(net, model, example, 0.5, fit, log=logged.append)
    assert [name for name, _ in runs] == budget_seeds.check_variants()
    got = dict(runs)
    x = torch.randn(128, 16) * 0.4
    default, _ = _budget.compress_to_budget(model, example, 0.5)
    # the C correction at the example's own scale is the default model
    np.testing.assert_array_equal(outputs(got["sigma=%g" % scale], x), outputs(default, x))
    assert not np.allclose(outputs(got["sigma=1"], x), outputs(default, x), atol=1e-4)

    # a numpy chain's module is the network rebuild() makes of the same weights
    base, _ = _budget._module_base_to_budget(net, 0.5, merge_inputs=True)
    _, layers, labels, input_labels, slopes = _budget.dense_chain(net, model, base)
    refit = budget_seeds.chain_module(_budget.refit_chain(layers, labels, input_labels),
                                      input_labels, slopes)
    np.testing.assert_allclose(outputs(refit, x), outputs(got["refit"], x), atol=1e-5)

    # the data-based bias correction: no mean output error on its rows (the
    # output layer is the last consumer), where the refit alone has one
    rows = fit[:200]
    original = outputs(model, rows)
    assert np.abs((outputs(got["data bias"], rows) - original).mean(0)).max() < 1e-5
    assert np.abs((outputs(got["refit"], rows) - original).mean(0)).max() > 1e-3
    assert not np.allclose(outputs(got["data bias"], x), outputs(got["oracle every-consumer"], x),
                           atol=1e-4)

    # one merge site alone: the plan's classes there, every other layer whole
    widths = [m.out_features for m in got["only layer 1"].modules()
              if isinstance(m, torch.nn.Linear)]
    assert widths == [len(set(labels[0])), 10, 4] and len(set(labels[0])) < 12
    widths = [m.out_features for m in got["only layer 2 refit"].modules()
              if isinstance(m, torch.nn.Linear)]
    assert widths == [12, len(set(labels[1])), 4] and len(set(labels[1])) < 10
    plain, _ = _budget._module_base_to_budget(net, 0.5, merge_inputs=False)
    plain_labels = _budget.dense_chain(net, model, plain)[2]
    widths = [m.out_features for m in got["only layer 1 unmerged-inputs"].modules()
              if isinstance(m, torch.nn.Linear)]
    assert widths == [len(set(plain_labels[0])), 10, 4]
    unmerged, no_inputs = budget_seeds.only_one_merge(labels, None, "inputs")
    whole = budget_seeds.chain_module(_budget.refit_chain(layers, unmerged, no_inputs))
    np.testing.assert_allclose(outputs(whole, x), outputs(model, x), atol=1e-5)

    # the chosen power's model is compress(budget=) at one of the powers, as logged
    assert logged[0] == "example input at 0.50: sigma %.3f, mean %.3f" % (
        scale, float(example.double().mean()))
    power = float(logged[1].rsplit(": ", 1)[1])
    assert power in budget_seeds.CHECK_POWERS
    at_power, _ = _budget.compress_to_budget(model, example, 0.5, sensitivity_power=power)
    np.testing.assert_array_equal(outputs(got["power chosen"], x), outputs(at_power, x))


def test_rescaled_first_layer_is_the_default_at_scale_one():
    model, example = small_network()
    before = [p.detach().clone() for p in model.parameters()]
    once = budget_seeds.first_layer_rescaled(model, example, 0.5, 1.0)
    default, _ = _budget.compress_to_budget(model, example, 0.5)
    x = torch.randn(32, 16) * 0.4
    np.testing.assert_array_equal(outputs(once, x), outputs(default, x))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    # at the example's scale it is another model of the same budget
    rescaled = budget_seeds.first_layer_rescaled(model, example, 0.5,
                                                 _budget._input_scale(example))
    assert not np.allclose(outputs(rescaled, x), outputs(default, x), atol=1e-4)


def test_summary_pairs_with_several_references(tmp_path):
    path = str(tmp_path / "checks.csv")
    values = {"python": {0: 87.0, 1: 86.0, 2: 88.0},
              "refit": {0: 85.0, 1: 85.5, 2: 86.0},
              "oracle first-consumer": {0: 88.0, 1: 87.5, 2: 88.5}}
    for variant, by_seed in values.items():
        for seed, acc in by_seed.items():
            budget_seeds.append_rows(path, [("lenet", "split", seed, "89.00", variant, "0.10",
                                             "%.2f" % acc, "-", "30 20 10")])
    budget_seeds.summarise(path, versus="python,refit")
    with open(str(tmp_path / "checks_summary.csv")) as fh:
        rows = [(r["variant"], r["versus"], r["minus_versus"]) for r in csv.DictReader(fh)
                if r["budget"] == "0.10"]
    # the first reference's row always, the others' where there is a pair
    assert sorted(rows) == sorted([("python", "", ""), ("python", "refit", "1.50"),
                                   ("refit", "python", "-1.50"),
                                   ("oracle first-consumer", "python", "1.00"),
                                   ("oracle first-consumer", "refit", "2.50")])
