"""docs/examples/budget_seeds.py --stages / --unmerged-inputs: the variants
behind docs/compression.md's stages of the correction (the C representatives,
refit alone, the first consumer corrected, every consumer corrected) and the
budget without merged inputs. The first-consumer stage corrects exactly the
first merge's consumer: it fits that consumer at least as well as
refit_chain does, keeps planted copies exact, and leaves every later layer
to refit_chain."""

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
from fibration.torch._rebuild import rebuild  # noqa: E402


def forward(layers, x, upto=None):
    """Pre-activations of layer `upto` (default: the outputs)."""
    h = x
    last = len(layers) - 1 if upto is None else upto
    for i, (w, b) in enumerate(layers[:last + 1]):
        h = h @ w.T + b
        if i < last:
            h = np.maximum(h, 0)
    return h


def chain(rng, widths):
    return [(rng.normal(size=(b, a)) / np.sqrt(a), rng.normal(size=b) * 0.1)
            for a, b in zip(widths[:-1], widths[1:])]


def test_first_consumer_fits_its_consumer_and_leaves_later_layers_to_refit_chain():
    rng = np.random.default_rng(3)
    layers = chain(rng, [12, 10, 9, 8, 3])
    labels = [np.arange(10) % 6, np.arange(9) % 5, np.arange(8) % 4]   # lossy merges
    scale = 0.7
    first = budget_seeds.first_consumer_refit(layers, labels, scale)
    every = budget_seeds.REFERENCE_REFIT(layers, labels, scale)
    plain = _budget.refit_chain(layers, labels)
    assert [w.shape for w, _ in first] == [w.shape for w, _ in plain]
    # the first merge is refit_chain's in all three; the correction starts at its consumer
    np.testing.assert_allclose(first[0][0], plain[0][0], atol=1e-12)
    np.testing.assert_allclose(every[0][0], plain[0][0], atol=1e-12)
    # the first consumer's pre-activations on the synthetic draw: the
    # least squares fit the original's at least as well as refit_chain's
    x = scale * np.random.default_rng(0).standard_normal((8192, 12))
    target = forward(layers, x, upto=1)

    def err(compressed):
        return float(((forward(compressed, x, upto=1)[:, :9] - target) ** 2).mean())
    # refit_chain's second layer is already merged; compare the unmerged consumer
    consumer = budget_seeds.REFERENCE_REFIT(layers[:2], labels[:1], scale)
    uncorrected = _budget.refit_chain(layers[:2], labels[:1])
    assert err(consumer) < 0.9 * err(uncorrected)
    # later layers: refit_chain from the corrected consumer, not corrected again
    rest = _budget.refit_chain(consumer[1:] + layers[2:], labels[1:])
    for (w, b), (w_rest, b_rest) in zip(first[1:], rest):
        np.testing.assert_allclose(w, w_rest, atol=1e-12)
        np.testing.assert_allclose(b, b_rest, atol=1e-12)
    assert max(float(np.abs(a[0] - b[0]).max()) for a, b in zip(first[2:], every[2:])) > 1e-3


def test_first_consumer_equals_every_consumer_with_one_hidden_layer():
    rng = np.random.default_rng(4)
    layers = chain(rng, [7, 6, 3])
    labels = [np.array([0, 1, 2, 0, 1, 3])]
    first = budget_seeds.first_consumer_refit(layers, labels, 0.5)
    every = budget_seeds.REFERENCE_REFIT(layers, labels, 0.5)
    for (w, b), (w2, b2) in zip(first, every):
        np.testing.assert_array_equal(w, w2)
        np.testing.assert_array_equal(b, b2)


def test_first_consumer_keeps_planted_scaled_copies_exact():
    rng = np.random.default_rng(5)
    layers = chain(rng, [10, 6, 5, 3])
    (w1, b1), (w2, b2), (w3, b3) = layers
    # hidden layer 1: units 3-5 are 2x, 0.5x, 3x copies of units 0-2
    w1 = np.concatenate([w1[:3], w1[:3] * np.array([[2.0], [0.5], [3.0]])])
    b1 = np.concatenate([b1[:3], b1[:3] * np.array([2.0, 0.5, 3.0])])
    w2 = rng.normal(size=(5, 6))
    # hidden layer 2: unit 4 a 1.5x copy of unit 0
    w2[4], b2[4] = 1.5 * w2[0], 1.5 * b2[0]
    layers = [(w1, b1), (w2, b2), (w3, b3)]
    labels = [np.array([0, 1, 2, 0, 1, 2]), np.array([0, 1, 2, 3, 0])]
    first = budget_seeds.first_consumer_refit(layers, labels, 0.8)
    x = rng.normal(size=(200, 10))
    np.testing.assert_allclose(forward(first, x), forward(layers, x), atol=1e-7)


def small_network():
    """(model, example): a 16-12-10-4 ReLU network and inputs of scale 0.4
    (test_budget_seeds_checks.py's too)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 12), torch.nn.ReLU(),
                                torch.nn.Linear(12, 10), torch.nn.ReLU(),
                                torch.nn.Linear(10, 4))
    return model, torch.randn(64, 16) * 0.4


def test_stage_variants_and_the_reference_restored():
    model, example = small_network()
    net = ft.trace(model, example)
    base, _ = _budget.base_to_budget(net.graph, 0.5, merge_inputs=True)
    scale = _budget._input_scale(example)
    got = {stage: budget_seeds.corrected_by_stage(net, model, base, stage, scale)
           for stage in ("representatives",) + budget_seeds.STAGES}
    assert _budget.synthetic_refit is budget_seeds.REFERENCE_REFIT
    # every-consumer is the numpy reference's correction as _refit_model applies it
    direct = rebuild(net, base, "Budget")
    assert _budget._refit_model(net, model, base, direct, scale)
    x = torch.randn(32, 16) * 0.4
    with torch.no_grad():
        np.testing.assert_allclose(got["every-consumer"](x).numpy(), direct(x).numpy(),
                                   atol=1e-6)
        outs = {k: m(x).numpy() for k, m in got.items()}
    assert not np.allclose(outs["refit"], outs["every-consumer"], atol=1e-4)
    # representatives: the C base as it is, which refit_chain then re-derives
    with torch.no_grad():
        np.testing.assert_array_equal(outs["representatives"],
                                      rebuild(net, base, "Budget")(x).numpy())
    assert not np.allclose(outs["representatives"], outs["refit"], atol=1e-4)

    class Args:
        input_sensitivity = ""
        c_correction = True
        stages = True
        unmerged_inputs = True
    assert budget_seeds.requested_variants(Args) == [
        "python", "c", "c-plain", "refit", "first-consumer", "every-consumer",
        "refit unmerged-inputs", "first-consumer unmerged-inputs",
        "every-consumer unmerged-inputs", "unmerged-inputs"]
    Args.representatives = True
    Args.unmerged_inputs = Args.c_correction = False
    assert budget_seeds.requested_variants(Args) == [
        "python", "representatives", "refit", "first-consumer", "every-consumer"]
    Args.stages = Args.representatives = False
    assert budget_seeds.requested_variants(Args) == ["python"]
    Args.powers = "1,1.5"
    assert budget_seeds.requested_variants(Args) == ["python", "p=1", "p=1 refit", "p=1.5",
                                                     "p=1.5 refit"]
    Args.powers, Args.c_correction, Args.ridges = "", True, "1e-10,0.01"
    assert budget_seeds.requested_variants(Args) == ["python", "c", "c-plain",
                                                     "c ridge=1e-10", "c ridge=0.01"]
    with pytest.raises(SystemExit):   # the ridges are the C correction's
        budget_seeds.main(["mlp", "--ridges", "1e-10"])
