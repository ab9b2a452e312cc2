"""Planted symmetry in real torchvision architectures: duplicated channels or
hidden units (incoming weights and norm parameters copied; the outgoing
weights stay as they are, so the copies' contributions differ) are found,
exactly the planted number of parameters is removed, and the compressed
model computes the original's outputs."""

import json
import os
import subprocess

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import fibration.torch as ft  # noqa: E402


def _copy_rows(module, i, j, names=("weight", "bias", "running_mean", "running_var")):
    with torch.no_grad():
        for name in names:
            tensor = getattr(module, name, None)
            if tensor is not None:
                tensor[j] = tensor[i]


def _check(model, x, removed, tmp_path=None, library_dir=None):
    """Compresses, compares, counts; analyze prints its table; with
    tmp_path, ft.save writes a file the fibration command analyzes."""
    model.eval()
    small, _ = ft.compress(model, x)
    fresh = torch.randn(3, *x.shape[1:], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        reference, out = model(fresh), small(fresh)
    assert float((reference - out).abs().max()) <= 1e-5 * float(reference.abs().max())
    assert ft.count_parameters(model) - ft.count_parameters(small) == removed
    report = ft.analyze(model, x)
    assert "fibers" in str(report)
    if tmp_path is not None:
        path = tmp_path / "model.safetensors"
        ft.save(model, path, x)
        cli = os.path.join(library_dir, "cli", "fibration")
        if os.path.exists(cli):
            done = subprocess.run([cli, "analyze", "-q", "--json", str(path)],
                                  capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr
            layers = json.loads(done.stdout)["layers"]
            assert sum(l["units"] - l["fibers"] for l in layers) == \
                sum(r["units"] - r["fibers"] for r in report.rows)
    return report


def _row(report, layer):
    return next(r for r in report.rows if r["layer"] == layer)


def test_resnet18_duplicated_channel(tmp_path, library_dir):
    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    block = model.layer1[0]
    _copy_rows(block.conv1, 5, 9)
    _copy_rows(block.bn1, 5, 9)
    # conv1 loses a 64 x 3 x 3 kernel, bn1 a weight and a bias, conv2 reads
    # one input channel less (64 x 3 x 3)
    report = _check(model, torch.randn(2, 3, 32, 32), 576 + 2 + 576, tmp_path, library_dir)
    assert _row(report, "layer1.0.conv1")["fibers"] == 63
    assert _row(report, "layer1.0.conv2")["fibers"] == 64


def test_mobilenet_v3_small_duplicated_gated_channel(tmp_path, library_dir):
    torch.manual_seed(1)
    model = torchvision.models.mobilenet_v3_small()
    stem, block = model.features[0], model.features[1].block
    _copy_rows(stem[0], 2, 7)
    _copy_rows(stem[1], 2, 7)
    _copy_rows(block[0][0], 2, 7)  # the depthwise kernel of the copy
    _copy_rows(block[0][1], 2, 7)
    _copy_rows(block[1].fc2, 2, 7)  # the copy is gated alike
    # stem conv 3 x 3 x 3 + bn 2, depthwise 3 x 3 + bn 2, gate fc1 one input
    # column (8), fc2 one row and bias (8 + 1), projection one column (16)
    _check(model, torch.randn(2, 3, 32, 32), 27 + 2 + 9 + 2 + 8 + 9 + 16, tmp_path,
           library_dir)


def test_densenet121_duplicated_stem_channel_through_the_concatenations(tmp_path,
                                                                        library_dir):
    torch.manual_seed(2)
    model = torchvision.models.densenet121()
    _copy_rows(model.features.conv0, 10, 20)
    _copy_rows(model.features.norm0, 10, 20)
    # the copy travels through every concatenation of the first dense block
    # (6 layers: norm1 weight + bias, conv1 one input column of 128) and the
    # first transition (norm 2, conv one column of 128); conv0 7 x 7 x 3 + 2
    _check(model, torch.randn(2, 3, 32, 32), 147 + 2 + 6 * (2 + 128) + 2 + 128, tmp_path,
           library_dir)


def test_convnext_tiny_duplicated_hidden_unit(tmp_path, library_dir):
    torch.manual_seed(3)
    model = torchvision.models.convnext_tiny()
    mlp = model.features[1][0].block
    _copy_rows(mlp[3], 4, 100)
    # the hidden unit's row and bias (96 + 1), the second Linear's column (96)
    _check(model, torch.randn(2, 3, 32, 32), 96 + 1 + 96, tmp_path, library_dir)
