"""The state-dict fallback on a real torch.nn.Sequential: its state dict,
written to safetensors with standard-library code, is analysed by
`fibration analyze --json`, and the counts must match a colouring computed
here independently (planted duplicate and permuted rows)."""
import json
import subprocess

import numpy as np
import pytest
import torch

import st_io


def plant(model):
    """Planted symmetry: units 1, 3, 5 of layer 0 identical; unit 4 of layer
    2 equal to unit 0 after permuting its weights inside that class."""
    with torch.no_grad():
        w0, b0 = model[0].weight, model[0].bias
        for r in (3, 5):
            w0[r] = w0[1]
            b0[r] = b0[1]
        w2, b2 = model[2].weight, model[2].bias
        w2[4] = w2[0]
        w2[4, 1], w2[4, 3], w2[4, 5] = w2[0, 3], w2[0, 5], w2[0, 1]
        b2[4] = b2[0]
        # the output layer reads units 0 and 4 of layer 2 equally, and
        # units 2, 3 too: opfibers can merge them
        w4 = model[4].weight
        w4[:, 4] = w4[:, 0]
        w4[:, 3] = w4[:, 2]


def classes_of(signatures, tol=1e-9):
    """Partition of rows whose signatures agree within tol (planted data is
    exact up to rounding); canonical labels in order of first unit."""
    labels, reps = [], []
    for s in signatures:
        for k, r in enumerate(reps):
            if s.shape == r.shape and np.all(np.abs(s - r) <= tol * (1 + np.abs(r))):
                labels.append(k)
                break
        else:
            reps.append(s)
            labels.append(len(reps) - 1)
    return np.array(labels)


def colour_sums(w, labels):
    n = labels.max() + 1
    return np.stack([w[:, labels == c].sum(axis=1) for c in range(n)], axis=1)


def independent_colouring(layers, relu):
    """layers: [(W, b)] of a chain; relu[l]: whether group l+1 is non-linear.
    Returns per group (input first) fibers, opfibers, covers labels."""
    n_in = layers[0][0].shape[1]
    fibers = [np.arange(n_in)]
    for w, b in layers:
        sig = np.concatenate([colour_sums(w, fibers[-1]), b[:, None]], axis=1)
        fibers.append(classes_of(list(sig)))
    n_groups = len(layers) + 1
    opfibers = [None] * n_groups
    opfibers[-1] = np.arange(layers[-1][0].shape[0])
    for g in range(n_groups - 2, -1, -1):
        w_next = layers[g][0]  # reads group g
        sums = colour_sums(w_next.T, opfibers[g + 1])
        flavour = fibers[g] if (g > 0 and relu[g - 1]) else np.zeros(len(fibers[g]))
        sig = np.concatenate([sums, flavour[:, None]], axis=1)
        opfibers[g] = classes_of(list(sig), tol=1e-9)
    covers = [classes_of(list(np.stack([f, o], axis=1).astype(float)))
              for f, o in zip(fibers, opfibers)]
    return fibers, opfibers, covers


@pytest.fixture
def planted_model(tmp_path):
    torch.manual_seed(7)
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 6), torch.nn.ReLU(),
        torch.nn.Linear(6, 5), torch.nn.ReLU(),
        torch.nn.Linear(5, 3))
    plant(model)
    path = tmp_path / "sequential.safetensors"
    st_io.write(str(path), {k: v.detach().numpy()
                            for k, v in model.state_dict().items()})
    return model, path


def analyze(path, *args):
    out = subprocess.run([st_io.cli(), "analyze", "--json", *args, str(path)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_state_dict_counts_match_independent_colouring(planted_model):
    model, path = planted_model
    layers = [(m.weight.detach().double().numpy(), m.bias.detach().double().numpy())
              for m in model if isinstance(m, torch.nn.Linear)]
    fibers, opfibers, covers = independent_colouring(layers, [True, True, False])
    report = analyze(path)
    assert [g["name"] for g in report["layers"]] == ["input", "0", "2", "4"]
    assert [g["units"] for g in report["layers"]] == [8, 6, 5, 3]
    for g, row in enumerate(report["layers"]):
        assert row["fibers"] == fibers[g].max() + 1, (g, row)
        assert row["opfibers"] == opfibers[g].max() + 1, (g, row)
        assert row["covers"] == covers[g].max() + 1, (g, row)
    # the planted classes are really there
    assert report["layers"][1]["fibers"] == 4
    assert report["layers"][2]["fibers"] == 4
    fibers_report = analyze(path, "--symmetry", "fibers")
    assert fibers_report["layers"][1]["largest"] == 3
    assert fibers_report["layers"][1]["nontrivial"] == 1


def test_state_dict_activation_option(planted_model):
    model, path = planted_model
    relu = analyze(path)
    linear = analyze(path, "--activation", "linear")
    assert [g["activation"] for g in relu["layers"][1:]] == ["relu", "relu", "linear"]
    assert [g["activation"] for g in linear["layers"][1:]] == ["linear"] * 3
    # with one flavour everywhere, opfibers can only get coarser
    for a, b in zip(relu["layers"], linear["layers"]):
        assert b["opfibers"] <= a["opfibers"]


def test_compressed_state_dict_computes_the_same(planted_model, tmp_path):
    model, path = planted_model
    base = tmp_path / "base.safetensors"
    subprocess.run([st_io.cli(), "compress", "-q", "--symmetry", "fibers",
                    str(path), "-o", str(base)], check=True)
    x = np.random.default_rng(0).normal(size=(64, 8))
    with torch.no_grad():
        expected = model(torch.from_numpy(x).float()).double().numpy()
    got = st_io.forward(str(base), x)
    assert got.shape == expected.shape
    assert np.allclose(got, expected, atol=1e-5)
    tensors, _ = st_io.read(str(base))
    assert tensors["0.weight"].shape == (4, 8)
