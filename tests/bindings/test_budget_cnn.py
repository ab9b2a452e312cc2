"""compress(budget=...) on convolutional and residual networks (issue 26):
convolutions with batch norm, pooling, flatten, residual sums,
concatenations, gates (squeeze-excitation), norms; the budget is met,
planted copies are removed exactly, so are channels of batch-norm scale 0
(their constants taken into the consumers' biases), and the progress
callback can cancel (attention: test_budget_attention.py)."""

import json
import os
import subprocess

import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

import fibration  # noqa: E402
import fibration.torch as ft  # noqa: E402
from fibration.torch import _budget  # noqa: E402

import planted_blocks  # noqa: E402

PLANTED = ["planted_cnn", "planted_resnet", "planted_conv1d", "planted_mlp_norms",
           "planted_dense_concat", "planted_densenet", "planted_squeeze_excite"]


def exact_fraction(model, x):
    """The fraction of parameters of the exact base (the planted one)."""
    exact, _ = ft.compress(model, x)
    return ft.count_parameters(exact) / ft.count_parameters(model)


@pytest.mark.parametrize("name", PLANTED)
def test_budget_that_only_removes_copies_keeps_the_outputs(name):
    model, x, widths = getattr(planted_blocks, name)()
    fraction = exact_fraction(model, x)
    assert fraction < 0.6  # the planted copies are a large part of the model
    small, plan = ft.compress(model, x, budget=fraction)
    assert ft.count_parameters(small) <= fraction * ft.count_parameters(model) + 1e-9
    fresh = torch.randn_like(x)
    for inputs in (x, fresh):
        with torch.no_grad():
            gap = (small(inputs) - model(inputs)).abs().max().item()
        assert gap < 1e-4, (name, gap)
    for module, width in widths.items():
        layer = small.get_submodule(module)
        got = getattr(layer, "out_channels", getattr(layer, "out_features",
                                                     getattr(layer, "num_features", None)))
        assert got == width, (module, got, width)


@pytest.mark.parametrize("name", PLANTED)
@pytest.mark.parametrize("shrink", [0.8, 0.5])
def test_budget_below_the_copies_is_met_and_the_module_is_its_base(name, shrink):
    model, x, _ = getattr(planted_blocks, name)()
    budget = shrink * exact_fraction(model, x)
    net = ft._trace(model, x)
    try:
        base, info = _budget.base_to_budget(net.graph, budget)
    except fibration.FibrationError as e:
        # below the smallest base: the message says so and gives that base's size
        assert "below the smallest base" in str(e)
        return
    assert info["n_parameters"] <= budget * ft.count_parameters(model)
    assert info["tolerance"] == "ward" and not info["corrected"]
    small, plan = ft.compress(model, x, budget=budget)
    assert ft.count_parameters(small) == info["n_parameters"]
    # the returned module computes what the C base computes: no hidden state
    want = base.graph.forward(x.double().permute(0, *range(2, x.dim()), 1)
                              .reshape(len(x), -1).numpy())
    with torch.no_grad():
        got = small(x).double().numpy()
    assert abs(got.reshape(want.shape) - want).max() < 1e-4
    again, _ = ft.compress(model, x, budget=budget)
    assert ft.verify(small, again, x).max_abs == 0  # deterministic


def test_budget_base_keeps_the_model_dtype():
    """compress(budget=) of a float32 model makes its base in float32
    (fib_budget_options.dtype): each value the float64 base's rounded once,
    the same classes, the same compressed module, parameter for parameter."""
    import ctypes
    import numpy as np
    from fibration import _ffi, lib
    from fibration.torch._rebuild import rebuild
    model, x, _ = planted_blocks.planted_resnet()
    budget = 0.6 * exact_fraction(model, x)
    net = ft._trace(model, x)
    assert net.base_dtype() == "float32"
    wide, info64 = _budget.base_to_budget(net.graph, budget)
    narrow, info32 = _budget.base_to_budget(net.graph, budget, dtype=net.base_dtype())
    assert info32["n_parameters"] == info64["n_parameters"]
    rounded = 0
    for group in range(net.graph.num_groups):
        assert (narrow.projection(group) == wide.projection(group)).all()
        a, b = wide.graph.tensors(group), narrow.graph.tensors(group)
        for index, name in enumerate(a):
            code = ctypes.c_int32()
            assert lib.fib_graph_tensor_dtype(narrow.graph._cp(), group, index,
                                              ctypes.byref(code)) == 0
            if code.value == _ffi.FIB_DTYPE_F32:
                rounded += 1
                assert (b[name] == a[name].astype(np.float32)).all(), (group, name)
            else:
                assert (b[name] == a[name]).all(), (group, name)
    assert rounded >= 4  # the merged convolutions and the dense
    small, _ = ft.compress(model, x, budget=budget)
    from_wide = rebuild(net, wide, "Wide")
    for (name, p), (_, q) in zip(small.state_dict().items(), from_wide.state_dict().items()):
        assert torch.equal(p, q), name
    with pytest.raises(ValueError, match="dtype"):
        _budget.base_to_budget(net.graph, budget, dtype="float16")


def test_residual_channels_merge_together():
    """The channels a residual sum adds are one set: the stem, the block's
    second convolution and their batch norms get one partition."""
    model, x, _ = planted_blocks.planted_resnet()
    budget = 0.6 * exact_fraction(model, x)
    net = ft._trace(model, x)
    base, _ = _budget.base_to_budget(net.graph, budget)
    by_module = {layer.module: layer.group for layer in net.layers if layer.module}
    stem = list(base.projection(by_module["stem.0"]))
    for module in ("stem.1", "layer1.conv2", "layer1.bn2"):
        assert list(base.projection(by_module[module])) == stem, module


def constant_channels_vgg():
    """A VGG-style net whose batch norms give channels of scale exactly 0
    (constants of both signs after the ReLU's: shifts +0.4 / -0.3 and +0.7
    / -0.2) and a hidden unit without incoming weights (bias 0.5); the
    second convolution reads the first without padding, so that it takes
    a constant exactly."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(8 * 3 * 3, 16), nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        for bn in (model[1], model[4]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
        model[1].weight[[2, 5]] = 0
        model[1].bias[[2, 5]] = torch.tensor([0.4, -0.3])
        model[4].weight[[1, 6]] = 0
        model[4].bias[[1, 6]] = torch.tensor([0.7, -0.2])
        model[8].weight[3] = 0
        model[8].bias[3] = 0.5
    return model.eval(), torch.randn(16, 1, 8, 8)


def _vgg_parameters(n1, n2, hidden):
    """Parameters of constant_channels_vgg at these widths."""
    return (n1 * 10 + 2 * n1 + n2 * (n1 * 9 + 1) + 2 * n2 + hidden * (n2 * 9 + 1)
            + 4 * (hidden + 1))


def test_budget_removing_constant_channels_keeps_the_outputs():
    """Channels whose batch-norm scale is 0 output a constant; removed, with
    the constant taken into the consumers' biases, they cost nothing: the
    budget of the net without them removes them alone, and the outputs stay
    to rounding."""
    model, x = constant_channels_vgg()
    total = ft.count_parameters(model)
    assert total == _vgg_parameters(8, 8, 16)
    kept = _vgg_parameters(6, 6, 15)
    small, _ = ft.compress(model, x, budget=kept / total)
    assert ft.count_parameters(small) == kept
    for inputs in (x, torch.randn_like(x)):
        with torch.no_grad():
            assert (small(inputs) - model(inputs)).abs().max().item() < 1e-5
    assert [small[0].out_channels, small[3].out_channels, small[8].out_features] == [6, 6, 15]


@pytest.mark.parametrize("budget", [0.6, 0.4, 0.25])
def test_budget_below_the_constant_channels_is_met(budget):
    model, x = constant_channels_vgg()
    small, _ = ft.compress(model, x, budget=budget)
    assert ft.count_parameters(small) <= budget * ft.count_parameters(model)
    with torch.no_grad():
        assert torch.isfinite(small(torch.randn_like(x))).all()


class Gate(nn.Module):
    """x -> conv, and a sigmoid gate of it multiplied in (a product)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 8, 3, padding=1)
        self.gate = nn.Conv2d(8, 8, 1)
        self.head = nn.Linear(8 * 4 * 4, 3)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.head(torch.flatten(h * torch.sigmoid(self.gate(h)), 1))


def test_gated_convolution_meets_its_budget():
    torch.manual_seed(0)
    model = Gate().eval()
    x = torch.randn(4, 2, 4, 4)
    small, plan = ft.compress(model, x, budget=0.5)
    assert ft.count_parameters(small) <= 0.5 * ft.count_parameters(model)
    with torch.no_grad():
        assert torch.isfinite(small(x)).all()


def _hidden_sizes(model):
    return [m.hidden_size for m in model.modules() if isinstance(m, nn.RNNBase)]


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("widths", [(3, 3), (2, 4)])
def test_recurrent_budget_that_only_removes_copies_keeps_the_outputs(kind, widths):
    """An LSTM's or GRU's hidden units are a budget's allocation units: the
    budget of the exact base keeps the planted widths and the outputs."""
    model, x, _ = planted_blocks.planted_recurrent(kind, widths)
    fraction = exact_fraction(model, x)
    small, _ = ft.compress(model, x, budget=fraction)
    assert ft.count_parameters(small) <= fraction * ft.count_parameters(model) + 1e-9
    assert _hidden_sizes(small) in ([widths[0]], list(widths))  # equal widths: one module
    fresh = torch.randn_like(x)
    with torch.no_grad():
        assert (small(fresh) - model(fresh)).abs().max().item() < 1e-4


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_recurrent_budget_below_the_copies_is_the_modules_base(kind):
    model, x, _ = planted_blocks.planted_recurrent(kind, (3, 3))
    budget = 0.6 * exact_fraction(model, x)
    net = ft._trace(model, x)
    base, info = _budget.base_to_budget(net.graph, budget)
    small, _ = ft.compress(model, x, budget=budget)
    assert ft.count_parameters(small) == info["n_parameters"] <= \
        budget * ft.count_parameters(model)
    assert sum(_hidden_sizes(small)) < 6
    want = base.graph.forward(x.double().reshape(len(x), -1).numpy())
    with torch.no_grad():
        got = small(x).double().numpy()
    assert abs(got.reshape(want.shape) - want).max() < 1e-5


def test_cnn_budget_progress_can_cancel():
    model, x, _ = planted_blocks.planted_resnet()
    net = ft._trace(model, x)
    calls = []

    def progress(done, total):
        calls.append((done, total))
        return done >= 2

    with pytest.raises(fibration.FibrationError) as err:
        _budget.base_to_budget(net.graph, 0.3, progress=progress)
    assert "CANCELLED" in str(err.value)
    assert calls and all(total == calls[0][1] and done <= total for done, total in calls)
    seen = []
    _budget.base_to_budget(net.graph, 0.3, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1][0] == seen[-1][1]  # every step reported


def _classes(projection):
    """The partition of a projection as a set of frozensets of units."""
    members = {}
    for unit, cls in enumerate(projection):
        members.setdefault(int(cls), set()).add(unit)
    return {frozenset(m) for m in members.values()}


def test_concatenation_classes_are_the_union_of_its_sources():
    """A concatenation is held as 0/1 selection blocks: a budget never
    clusters them, their classes are those of the units they copy (so its
    merges come from the producing layers), and they count no parameters:
    the library's count is the torch modules' count."""
    model, x, _ = planted_blocks.planted_densenet()
    net = ft._trace(model, x)
    budget = 0.7 * exact_fraction(model, x)
    base, info = _budget.base_to_budget(net.graph, budget)
    small, _ = ft.compress(model, x, budget=budget)
    assert info["n_parameters"] == ft.count_parameters(small) <= \
        budget * ft.count_parameters(model)
    moved = [layer for layer in net.layers if layer.kind in ("relabel", "select")]
    assert moved
    by_module = {layer.module: layer.group for layer in net.layers if layer.module}
    parts = {m: list(base.projection(by_module[m])) for m in ("stem.0", "conv1", "conv2")}
    # the second concatenation [a, b, c] feeds norm3: its classes are the
    # sources' classes side by side, none across two sources
    offset, expected = 0, set()
    for m in ("stem.0", "conv1", "conv2"):
        expected |= {frozenset(u + offset for u in c) for c in _classes(parts[m])}
        offset += len(parts[m])
    assert _classes(base.projection(by_module["norm3"])) == expected
    assert sum(len(c) > 1 for c in expected) > 0  # something was merged through it


@pytest.mark.parametrize("name", ["planted_densenet", "planted_squeeze_excite"])
def test_cli_budget_counts_a_concatenation_as_torch_does(name, tmp_path, library_dir):
    """`fibration compress --budget` on a saved model with concatenations
    and gates: its counts are the torch modules' (the selections that hold
    a concatenation in the file count none), the base meets the budget of
    the planted copies and computes the model's outputs."""
    cli = os.path.join(library_dir, "cli", "fibration")
    if not os.access(cli, os.X_OK):
        pytest.skip("no fibration command beside the library")
    model, x, _ = getattr(planted_blocks, name)()
    path, out = str(tmp_path / "m.safetensors"), str(tmp_path / "b.safetensors")
    ft.save(model, path, x)
    fraction = exact_fraction(model, x)
    r = subprocess.run([cli, "compress", "--json", "--budget", repr(fraction), path, "-o", out],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    total = ft.count_parameters(model)
    assert got["parameters"] == total
    assert got["base_parameters"] <= fraction * total + 1e-9
    graph = fibration.Graph.load(out)
    want = model(x).detach().double().numpy()
    outputs = graph.forward(x.double().permute(0, 2, 3, 1).reshape(len(x), -1).numpy())
    assert abs(outputs.reshape(want.shape) - want).max() < 1e-4
