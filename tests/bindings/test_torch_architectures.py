"""fibration.torch on the forward code of real architectures: shape
arithmetic, concatenation, chunks, channel shuffles, channels-last blocks,
global and adaptive pooling. Each model plants duplicated units, so that an
exact compression has something to merge: it must find them, remove
parameters and keep the outputs."""

import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import fibration  # noqa: E402
import fibration.torch as ft  # noqa: E402


def _plant_conv(conv, pairs):
    """Channel j computes what channel i does (same kernel and bias)."""
    with torch.no_grad():
        for i, j in pairs:
            conv.weight[j] = conv.weight[i]
            if conv.bias is not None:
                conv.bias[j] = conv.bias[i]


def _plant_linear(linear, pairs):
    with torch.no_grad():
        for i, j in pairs:
            linear.weight[j] = linear.weight[i]
            if linear.bias is not None:
                linear.bias[j] = linear.bias[i]


def _compress_checked(model, x, fewer_by=None):
    model.eval()
    small, _ = ft.compress(model, x)
    fresh = torch.randn(5, *x.shape[1:], generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        reference, out = model(fresh), small(fresh)
    scale = float(reference.abs().max())
    assert float((reference - out).abs().max()) <= 1e-5 * scale
    removed = ft.count_parameters(model) - ft.count_parameters(small)
    assert removed > 0
    if fewer_by is not None:
        assert removed == fewer_by
    return small


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, padding=1)
        self.b = nn.Conv2d(3, 5, 1)
        self.mix = nn.Conv2d(11, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        y = torch.cat([F.relu(self.a(x)), torch.tanh(self.b(x))], 1)
        return self.head(F.adaptive_avg_pool2d(F.relu(self.mix(y)), 1).flatten(1))


def test_concatenated_duplicates_merge_exactly():
    torch.manual_seed(0)
    model = Concat()
    _plant_conv(model.a, [(0, 3), (1, 4)])  # two duplicates inside branch a
    # the mix conv reads 11 channels; merging 2 of them removes 2 * 4 * 9 weights,
    # and branch a loses 2 kernels (3 * 9 weights + bias each)
    _compress_checked(model, torch.randn(2, 3, 8, 8), fewer_by=2 * 4 * 9 + 2 * (27 + 1))


def channel_shuffle(x, groups):
    n, c, h, w = x.size()
    x = x.view(n, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(n, -1, h, w)


class Shuffle(nn.Module):
    """ShuffleNet V2's unit: a chunk, a branch, a concatenation, a shuffle."""

    def __init__(self):
        super().__init__()
        self.branch = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), nn.ReLU(),
                                    nn.Conv2d(4, 4, 3, padding=1, groups=4),
                                    nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1), nn.ReLU())
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.out = nn.Conv2d(8, 5, 1)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x1, x2 = x.chunk(2, dim=1)
        x = channel_shuffle(torch.cat((x1, self.branch(x2)), dim=1), 2)
        return self.out(x).mean([2, 3])


def test_channel_shuffle_with_planted_duplicates_compresses_exactly():
    torch.manual_seed(2)
    model = Shuffle()
    for bn in (model.branch[1], model.branch[4]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    _plant_conv(model.stem, [(0, 1)])        # inside the first chunk
    _plant_conv(model.branch[5], [(1, 3)])   # at the end of the branch
    small = _compress_checked(model, torch.randn(2, 3, 6, 6))
    # the compressed model still takes other image sizes and batch sizes: the
    # shuffle's sizes are not baked into it for the example's
    with torch.no_grad():
        z = torch.randn(3, 3, 6, 6)
        assert torch.allclose(model.eval()(z), small(z), atol=1e-5)


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class NextBlock(nn.Module):
    """ConvNeXt's block: depthwise conv, channels-last norm and MLP, layer scale."""

    def __init__(self, dim=6, hidden=12):
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 2, stride=2)
        self.norm0 = LayerNorm2d(dim)
        self.dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)
        self.layer_scale = nn.Parameter(torch.rand(dim, 1, 1) + 0.5)
        self.head = nn.Linear(dim, 2)

    def forward(self, x):
        x = self.norm0(self.stem(x))
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.down(F.gelu(self.up(self.norm(y)))).permute(0, 3, 1, 2)
        x = x + self.layer_scale * y
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))


def test_channels_last_block_with_planted_hidden_units_compresses_exactly():
    torch.manual_seed(3)
    model = NextBlock()
    _plant_linear(model.up, [(0, 5), (2, 7), (2, 9)])
    # three hidden units merge into others: 3 rows of up (6 + 1) and 3
    # columns of down (6)
    small = _compress_checked(model, torch.randn(2, 3, 8, 8), fewer_by=3 * (6 + 1) + 3 * 6)
    assert small.layer_scale.shape == model.layer_scale.shape


def test_layer_scale_follows_merged_channels():
    torch.manual_seed(4)
    model = NextBlock()
    _plant_conv(model.stem, [(0, 4)])
    with torch.no_grad():
        model.norm0.weight[4] = model.norm0.weight[0]
        model.norm0.bias[4] = model.norm0.bias[0]
    # a layer norm mixes its channels: equal stem channels stay equal after
    # it only with equal gammas and betas, and then the whole residual
    # stream keeps them equal only if the block's outputs agree too
    with torch.no_grad():
        model.dw.weight[4] = model.dw.weight[0]
        model.dw.bias[4] = model.dw.bias[0]
        model.norm.weight[4] = model.norm.weight[0]
        model.norm.bias[4] = model.norm.bias[0]
        model.down.weight[4] = model.down.weight[0]
        model.down.bias[4] = model.down.bias[0]
        model.layer_scale[4] = model.layer_scale[0]
    small = _compress_checked(model, torch.randn(2, 3, 8, 8))
    assert small.layer_scale.shape == (5, 1, 1)


class Pools(nn.Module):
    def __init__(self, ceil=True):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=ceil)
        self.adaptive = nn.AdaptiveAvgPool2d((2, 2))
        self.fc = nn.Linear(24, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.adaptive(self.pool(F.relu(self.conv(x)))), 1))


def test_ceil_and_adaptive_pooling_at_fixed_sizes_compress_exactly():
    torch.manual_seed(5)
    model = Pools()
    _plant_conv(model.conv, [(1, 2)])
    # 11 x 11 -> conv 9 x 9 -> ceil pool 4 x 4 (as floor) -> adaptive 2 x 2
    _compress_checked(model, torch.randn(2, 3, 11, 11), fewer_by=3 * 9 + 1 + 4 * 3)


@pytest.mark.parametrize("size,what", [(12, "ceil_mode"), (13, "adaptive")])
def test_pooling_that_no_fixed_pool_computes_is_refused_by_name(size, what):
    # 12: conv 10, ceil pool over 10 adds a window in the padding;
    # 13: conv 11, pool 5 x 5, adaptive to 2 x 2 overlaps
    model = Pools().eval()
    with pytest.raises(ft.UnsupportedModelError, match=what) as info:
        ft.compress(model, torch.randn(2, 3, size, size))
    assert "'pool'" in str(info.value) or "'adaptive'" in str(info.value)


def test_scaled_tolerance_through_a_concatenation_is_not_rebuilt_wrong():
    torch.manual_seed(6)
    model = Concat().eval()
    with torch.no_grad():  # channel 3 of a is twice channel 0 (ReLU commutes with it)
        model.a.weight[3] = 2 * model.a.weight[0]
        model.a.bias[3] = 2 * model.a.bias[0]
    x = torch.randn(2, 3, 8, 8)
    try:
        small, _ = ft.compress(model, x, tolerance="scaled+abs", eps=1e-6)
    except (ft.UnsupportedModelError, fibration.FibrationError) as e:
        assert "FIB_TOL_SCALED" in str(e) or "scale" in str(e)
        return  # refused, naming why: fine
    with torch.no_grad():
        assert torch.allclose(model(x), small(x), atol=1e-5)


def test_a_gate_over_positions_instead_of_channels_is_refused_by_name():
    class SpatialGate(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.fc = nn.Conv2d(4, 1, 1)

        def forward(self, x):
            y = self.conv(x)
            return (y * torch.sigmoid(self.fc(y))).mean((2, 3))

    with pytest.raises(ft.UnsupportedModelError, match="function mul at node 'mul'.*"
                                                      "equal shapes"):
        ft.compress(SpatialGate().eval(), torch.randn(2, 3, 4, 4))


class SqueezeExcite(nn.Module):
    """MobileNetV3 / EfficientNet / RegNetY: a gate computed from the pooled
    channels scales every position of its channel."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc1 = nn.Conv2d(8, 4, 1)
        self.fc2 = nn.Conv2d(4, 8, 1)
        self.out = nn.Conv2d(8, 5, 1)

    def forward(self, x):
        x = F.hardswish(self.conv(x))
        s = F.adaptive_avg_pool2d(x, 1)
        s = F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))
        return self.out(x * s).mean((2, 3))


def test_gated_channels_with_planted_duplicates_compress_exactly():
    torch.manual_seed(8)
    model = SqueezeExcite()
    _plant_conv(model.conv, [(0, 5)])   # a channel and its copy ...
    _plant_conv(model.fc2, [(0, 5)])    # ... gated alike: the products merge
    _plant_conv(model.fc1, [(1, 3)])    # a hidden unit of the gate merges too
    # conv loses a kernel (27 + 1), fc1 a row (8 + 1) and fc2 a column (8)
    # and a row (3 + 1), fc1 a column, out a column (5)
    small = _compress_checked(model, torch.randn(2, 3, 6, 6))
    assert small.conv.out_channels == 7 and small.fc1.out_channels == 3
    assert small.fc2.out_channels == 7 and small.out.in_channels == 7


def test_a_gate_whose_factors_differ_keeps_the_channels_apart():
    torch.manual_seed(9)
    model = SqueezeExcite()
    _plant_conv(model.conv, [(0, 5)])   # equal channels, but different gates
    model.eval()
    small, _ = ft.compress(model, torch.randn(2, 3, 6, 6))
    assert small.conv.out_channels == 7  # the conv's own copies merge
    assert small.out.in_channels == 8    # the gated products do not


@pytest.mark.parametrize("module,name", [(nn.ReLU6(), "relu6"), (nn.Hardswish(), "hardswish"),
                                         (nn.Hardsigmoid(), "hardsigmoid"), (nn.Mish(), "mish"),
                                         (nn.Softplus(), "softplus")])
def test_new_activations_compute_what_pytorch_does(module, name):
    import numpy as np
    g = fibration.Graph()
    x = g.add_input(1)
    h = g.add_dense(x, np.ones((1, 1)), None, activation=name)
    assert g.group(h).activation == name
    values = torch.linspace(-30, 30, 2401, dtype=torch.float64).reshape(-1, 1)
    out = torch.from_numpy(g.forward(values.numpy()))
    assert torch.allclose(out, module(values), rtol=1e-12, atol=1e-12)


def test_gated_model_saved_loads_and_is_read_by_the_command(tmp_path, library_dir):
    import json
    import os
    import subprocess
    torch.manual_seed(10)
    model = SqueezeExcite()
    _plant_conv(model.conv, [(0, 5)])
    _plant_conv(model.fc2, [(0, 5)])
    model.eval()
    x = torch.randn(2, 3, 6, 6)
    path = tmp_path / "gated.safetensors"
    ft.save(model, path, x)
    again = ft.load(path)
    with torch.no_grad():
        assert torch.allclose(again(x), model(x), atol=1e-6)
    small, _ = ft.compress(model, x)
    ft.save(small, tmp_path / "small.safetensors", x)  # its base: gathers of a product
    with torch.no_grad():
        assert torch.allclose(ft.load(tmp_path / "small.safetensors")(x), model(x), atol=1e-5)
    cli = os.path.join(library_dir, "cli", "fibration")
    if not os.path.exists(cli):
        pytest.skip("no fibration command beside the library")
    done = subprocess.run([cli, "analyze", "-q", "--json", str(path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    products = [l for l in json.loads(done.stdout)["layers"] if l["op"] == "product"]
    assert [(l["units"], l["fibers"]) for l in products] == [(8, 7)]


def test_unpacking_a_layers_tuple_leaves_the_unused_items_alone():
    class Reader(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(3, 6, batch_first=True)
            self.head = nn.Linear(6, 2)

        def forward(self, x):
            out, _ = self.lstm(x)          # (h_n, c_n) unused
            return self.head(out[:, -1])

    torch.manual_seed(11)
    model = Reader().eval()
    with torch.no_grad():  # hidden unit 4 copies unit 1 in every gate
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            t = getattr(model.lstm, name)
            for gate in range(4):
                t[gate * 6 + 4] = t[gate * 6 + 1]
        model.lstm.weight_hh_l0[:, 4] = model.lstm.weight_hh_l0[:, 1] = \
            model.lstm.weight_hh_l0[:, 1] / 2
    _compress_checked(model, torch.randn(2, 5, 3))


def test_view_after_convolutions_is_a_flatten_that_follows_merged_channels():
    class ViewNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 3)
            self.fc = nn.Linear(6 * 4 * 4, 2)

        def forward(self, x):
            x = F.relu(self.conv(x))
            return self.fc(x.view(x.size(0), 6 * 4 * 4))  # explicit sizes

    torch.manual_seed(12)
    model = ViewNet()
    _plant_conv(model.conv, [(2, 4)])
    # one kernel (27 + 1) and one channel's 16 columns of fc (2 x 16)
    _compress_checked(model, torch.randn(2, 3, 6, 6), fewer_by=28 + 32)


def test_arguments_the_example_does_not_give_take_their_defaults():
    class WithDefault(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(4, 6)
            self.fc2 = nn.Linear(6, 2)

        def forward(self, x, scale=None):
            h = F.relu(self.fc1(x))
            return self.fc2(h) if scale is None else self.fc2(h) * scale

    torch.manual_seed(13)
    model = WithDefault()
    _plant_linear(model.fc1, [(0, 3)])
    _compress_checked(model, torch.randn(3, 4), fewer_by=4 + 1 + 2)
