"""The peer docs/examples/seed_full_method.py (the seed authors' full method:
fibers or opfibers per layer, thresholds searched on training data) merges
exactly what the paper says is exact, and its search meets the budgets."""

import os
import sys

import numpy as np
import pytest

pytest.importorskip("scipy")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "docs", "examples"))

import seed_full_method as sfm  # noqa: E402


def forward(layers, x):
    h = x
    for i, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0)
    return h


def planted(rng, copies_kind):
    """MLP 20-12-8-3 whose first hidden layer holds 4 planted pairs:
    fibers (same incoming row, outgoing columns re-split unevenly) or opfibers
    (incoming rows positive multiples of one row, so their pre-activations
    share a sign, and outgoing columns equal)."""
    w1, b1 = rng.normal(size=(12, 20)), rng.normal(size=12)
    w2, b2 = rng.normal(size=(8, 12)), rng.normal(size=8)
    w3, b3 = rng.normal(size=(3, 8)), rng.normal(size=3)
    for a, c in ((0, 6), (1, 7), (2, 8), (3, 9)):
        if copies_kind == "fibers":
            w1[c], b1[c] = w1[a], b1[a]
            total = w2[:, a] + w2[:, c]
            w2[:, a], w2[:, c] = 0.3 * total, 0.7 * total
        else:
            w1[c], b1[c] = 2.5 * w1[a], 2.5 * b1[a]
            w2[:, c] = w2[:, a]
    return [(w1, b1), (w2, b2), (w3, b3)]


@pytest.mark.parametrize("kind", ["fibers", "opfibers"])
def test_planted_pairs_merge_exactly(kind):
    rng = np.random.default_rng(3)
    layers = planted(rng, kind)
    x = rng.normal(size=(200, 20))
    peer = sfm.SeedFullMethod(layers, x, np.zeros(200, dtype=int))
    base = peer.build([(kind, 8), ("fibers", 8)])
    assert base[0][0].shape == (8, 20)
    np.testing.assert_allclose(forward(base, x), forward(layers, x), rtol=1e-10, atol=1e-10)
    # one class fewer than the planted classes changes the outputs
    coarser = peer.build([(kind, 7), ("fibers", 8)])
    assert np.abs(forward(coarser, x) - forward(layers, x)).max() > 1e-3


def test_path_meets_every_budget_and_stops_near_it():
    rng = np.random.default_rng(5)
    layers = [(rng.normal(size=(30, 16)), rng.normal(size=30)),
              (rng.normal(size=(20, 30)), rng.normal(size=20)),
              (rng.normal(size=(4, 20)), rng.normal(size=4))]
    x = rng.normal(size=(300, 16))
    y = forward(layers, x).argmax(1)
    total = sum(w.size + b.size for w, b in layers)
    found = sfm.SeedFullMethod(layers, x, y).path([0.2, 0.5, 0.8])
    assert set(found) == {0.2, 0.5, 0.8}
    for budget, (net, choice) in found.items():
        n = sum(w.size + b.size for w, b in net)
        assert n <= budget * total
        assert [w.shape[0] for w, _ in net[:-1]] == [k for _, k in choice]
        # the search stops near the budget, not far below it
        assert n >= 0.5 * budget * total
