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


# the placement of a concatenation's parts ('select' layers: the units
# outside a part are constant zeros, one class) is not a layer of the model
PLACEMENT = ("select",)


def _merged_classes(plan):
    """{layer: [sorted units of each class with more than one]} of a plan's
    layers (not the placements of concatenated parts)."""
    merged = {}
    for entry in plan.layers:
        if entry["kind"] in PLACEMENT:
            continue
        members = {}
        for unit, cls in enumerate(entry["projection"]):
            members.setdefault(cls, []).append(unit)
        classes = sorted(m for m in members.values() if len(m) > 1)
        if classes:
            merged[entry["node"]] = classes
    return merged


def _check(model, x, removed, tmp_path=None, library_dir=None, pairs=()):
    """Compresses, compares, counts; every merged class is one of the
    planted pairs of units (and there is one); analyze prints its table
    (a row per layer, the planted classes among them); with tmp_path,
    ft.save writes a file the fibration command analyzes."""
    model.eval()
    small, plan = ft.compress(model, x)
    fresh = torch.randn(3, *x.shape[1:], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        reference, out = model(fresh), small(fresh)
    assert float((reference - out).abs().max()) <= 1e-5 * float(reference.abs().max())
    assert ft.count_parameters(model) - ft.count_parameters(small) == removed
    merged = _merged_classes(plan)
    assert merged, "no planted class found"
    for node, classes in merged.items():
        assert all(tuple(c) in pairs for c in classes), (node, classes, pairs)
    report = ft.analyze(model, x)
    table = str(report)
    assert all(row["layer"] in table for row in report.rows)
    assert {row["node"] for row in report.rows
            if row["fibers"] < row["units"] and row["kind"] not in PLACEMENT} == set(merged)
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
    report = _check(model, torch.randn(2, 3, 32, 32), 576 + 2 + 576, tmp_path, library_dir,
                    pairs={(5, 9)})
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
           library_dir, pairs={(2, 7)})


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
           library_dir, pairs={(10, 20)})


def test_convnext_tiny_duplicated_hidden_unit(tmp_path, library_dir):
    torch.manual_seed(3)
    model = torchvision.models.convnext_tiny()
    mlp = model.features[1][0].block
    _copy_rows(mlp[3], 4, 100)
    # the hidden unit's row and bias (96 + 1), the second Linear's column (96)
    _check(model, torch.randn(2, 3, 32, 32), 96 + 1 + 96, tmp_path, library_dir,
           pairs={(4, 100)})


def _resplit(weight, i, j, share=0.3):
    """Columns i and j of a reader re-split unevenly (their sum kept): the
    copies' contributions differ, their total does not."""
    total = weight[:, i] + weight[:, j]
    weight[:, i] = share * total
    weight[:, j] = (1 - share) * total


def _plant_vit(model, channel, hidden):
    """Residual channel channel[1] copies channel[0] everywhere it is made
    (patch convolution, class token, position embedding, every attention
    output and MLP output row, every LayerNorm's weight and bias); every
    reader of a LayerNorm (q/k/v projections, first MLP layers, the head)
    re-splits the two columns. Hidden unit hidden[1] of the first MLP
    copies hidden[0] (row and bias), re-split in the second Linear."""
    i, j = channel
    with torch.no_grad():
        # torchvision starts the class token and the head at zero: values that
        # make the copied token and the re-split head columns count
        model.class_token.normal_(0, 0.02)
        model.heads.head.weight.normal_(0, 0.02)
        _copy_rows(model.conv_proj, i, j)
        for constant in (model.class_token, model.encoder.pos_embedding):
            constant[..., j] = constant[..., i]
        norms, readers = [model.encoder.ln], [model.heads.head.weight]
        for layer in model.encoder.layers:
            attention = layer.self_attention
            norms += [layer.ln_1, layer.ln_2]
            readers += [attention.in_proj_weight, layer.mlp[0].weight]
            _copy_rows(attention.out_proj, i, j)
            _copy_rows(layer.mlp[3], i, j)
        for norm in norms:
            norm.weight.normal_(1, 0.1)
            norm.bias.normal_(0, 0.1)
            _copy_rows(norm, i, j)
        for weight in readers:
            _resplit(weight, i, j)
        mlp = model.encoder.layers[0].mlp
        _copy_rows(mlp[0], *hidden)
        _resplit(mlp[3].weight, *hidden)


def _vit_removed(model, positions):
    """The parameters the planted copies make redundant."""
    e = model.hidden_dim
    mlp_dim = model.encoder.layers[0].mlp[0].out_features
    per_layer = (2 + 3 * e            # ln_1, the q/k/v column
                 + e + 1 + 2          # out_proj row and bias, ln_2
                 + mlp_dim            # the first MLP Linear's column
                 + mlp_dim + 1)       # the second's row and bias
    channel = (3 * 16 * 16 + 1 + 1 + positions + len(model.encoder.layers) * per_layer
               + 2 + model.heads.head.out_features)  # conv, token, embedding, ln, head
    hidden = (e + 1 - 1) + (e - 1)    # a row and bias, a column; each crosses the channel
    return channel + hidden


def _check_vit(model, tmp_path, library_dir):
    _plant_vit(model, (3, 11), (5, 40))
    size = 32
    positions = (size // model.patch_size) ** 2 + 1
    report = _check(model, torch.randn(2, 3, size, size), _vit_removed(model, positions),
                    tmp_path, library_dir, pairs={(3, 11), (5, 40)})
    e = model.hidden_dim
    assert _row(report, "conv_proj")["fibers"] == e - 1
    assert _row(report, "encoder.layers.encoder_layer_0.mlp.0")["fibers"] == \
        model.encoder.layers[0].mlp[0].out_features - 1
    assert _row(report, "encoder.layers.encoder_layer_1.mlp.0")["fibers"] == \
        model.encoder.layers[1].mlp[0].out_features
    assert _row(report, "heads.head")["fibers"] == model.heads.head.out_features


def test_vit_b_16_duplicated_residual_channel_and_hidden_unit(tmp_path, library_dir):
    """vit_b_16's shapes (patch 16, 768 channels, 12 heads, MLP 3072, 1000
    classes) with 2 of its 12 encoder layers, at 32 x 32 (4 patches and the
    class token); the whole builder with FIBRATION_TORCHVISION_SLOW=1."""
    from torchvision.models.vision_transformer import VisionTransformer
    torch.manual_seed(4)
    if os.environ.get("FIBRATION_TORCHVISION_SLOW") == "1":
        model = torchvision.models.vit_b_16(image_size=32)
    else:
        model = VisionTransformer(image_size=32, patch_size=16, num_layers=2, num_heads=12,
                                  hidden_dim=768, mlp_dim=3072)
    _check_vit(model, tmp_path, library_dir)
