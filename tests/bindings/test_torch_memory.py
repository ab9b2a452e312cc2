"""What an exact ft.compress holds besides the model: the compressed copy
it returns and, briefly, the trace check's unmerged copy; never a float64
base of layers that merge nothing (they borrow the model's weights) nor a
second copy kept past the check. See "Memory" in docs/python.md."""

import gc
import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

import fibration.torch as ft  # noqa: E402
from fibration.torch import _safety  # noqa: E402


class GroupedBlock(nn.Module):
    """A RegNet-like residual block: 1x1 conv, batch norm, grouped 3x3
    conv, 1x1 conv with bias, added to its input (a GraphModule when
    rebuilt, not an nn.Sequential)."""

    def __init__(self, width, groups):
        super().__init__()
        self.a = nn.Conv2d(width, width, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.b = nn.Conv2d(width, width, 3, padding=1, groups=groups, bias=False)
        self.c = nn.Conv2d(width, width, 1)

    def forward(self, x):
        return x + self.c(torch.relu(self.b(torch.relu(self.bn(self.a(x))))))


def grouped_cnn(width, blocks, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
                         *[GroupedBlock(width, width // 64) for _ in range(blocks)],
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10)).eval()


def test_trace_check_releases_its_unmerged_copy_before_colouring(monkeypatch):
    """The check's unmerged rebuild copies every weight; it holds none of
    them once the check is done, even while Python's cycle collector does
    not run (a GraphModule and its graph refer to each other)."""
    made = []
    real = _safety.rebuild

    def spy(*args, **kwargs):
        module = real(*args, **kwargs)
        made.append(module)
        return module
    monkeypatch.setattr(_safety, "rebuild", spy)
    model = grouped_cnn(64, 2)
    x = torch.randn(2, 3, 4, 4)
    enabled = gc.isenabled()
    gc.disable()
    try:
        ft.trace(model, x)
        assert len(made) == 1 and isinstance(made[0], torch.fx.GraphModule)
        tensors = list(made[0].parameters())
        assert len(tensors) == len(list(model.parameters()))
        assert all(t.is_meta for t in tensors)
    finally:
        if enabled:
            gc.enable()
    small, _ = ft.compress(model, x)  # the compressed model's own weights are real
    assert not any(p.is_meta for p in small.parameters())
    assert ft.verify(model, small, torch.randn(3, 3, 4, 4)).max_rel <= 1e-5


def test_base_of_convolutions_that_merge_nothing_reads_the_model_weights():
    """A convolution (grouped too) and a Linear layer whose units merge
    nothing are borrowed by the base, in float32: a change to the model's
    weights shows in the base, so the base holds no copy of them."""
    model = grouped_cnn(128, 1)
    net = ft.trace(model, torch.randn(2, 3, 4, 4))
    base = net.graph.compress(net.graph.color("fibers"))
    for name in ("2.a", "2.b", "5"):
        layer = next(l for l in net.layers if l.module == name)
        assert base.graph.group(layer.group).n_units == layer.width  # nothing merged
        module = model.get_submodule(name)
        with torch.no_grad():
            module.weight.view(-1)[7] = 0.625
        weight = base.graph.tensors(layer.group, "float32")["weight"]
        assert weight.reshape(-1)[7] == 0.625
        assert tuple(weight.shape) == tuple(module.weight.shape)  # 2.b keeps its groups


def held_dtype(graph, group, tensor=0):
    """The dtype a block of a fibration.Graph holds a tensor in
    (fib_graph_tensor_dtype)."""
    import ctypes
    from fibration import _ffi
    from fibration._lib import lib
    code = ctypes.c_int32()
    assert lib.fib_graph_tensor_dtype(graph._cp(), group, tensor, ctypes.byref(code)) == 0
    return {_ffi.FIB_DTYPE_F32: "float32", _ffi.FIB_DTYPE_F64: "float64"}[code.value]


def planted_grouped_cnn():
    """Channels 0 = 1 and 4 = 5 of the first convolution (one class each,
    inside each channel group of the grouped convolution that reads them)."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.ReLU(),
                          nn.Conv2d(8, 6, 1), nn.Flatten(), nn.Linear(6 * 16, 5)).eval()
    with torch.no_grad():
        for a, b in ((0, 1), (4, 5)):
            model[0].weight[b] = model[0].weight[a]
            model[0].bias[b] = model[0].bias[a]
    return model


def test_merged_layers_of_a_float32_model_get_a_float32_base_with_the_same_result():
    """A float32 model's merged convolutions are float32 in its base, each
    the float64 merge rounded once, so the compressed model is the one a
    float64 base gives, to the bit; a float64 model keeps a float64 base."""
    from fibration.torch._rebuild import rebuild
    model = planted_grouped_cnn()
    x = torch.randn(2, 3, 4, 4)
    net = ft.trace(model, x)
    coloring = net.graph.color("fibers")
    narrow, wide = net.base(coloring), net.graph.compress(coloring, "float64")
    groups = {l.module: l.group for l in net.layers if l.kind == "conv"}
    assert narrow.graph.group(groups["0"]).n_units == 6  # merged
    assert narrow.graph.group(groups["2"]).n_units == 8  # reads merged channels
    for name in ("0", "2"):
        assert held_dtype(narrow.graph, groups[name]) == "float32"
        assert held_dtype(wide.graph, groups[name]) == "float64"
        a = wide.graph.tensors(groups[name])["weight"]
        b = narrow.graph.tensors(groups[name])["weight"]
        assert (b == a.astype("float32").astype("float64")).all()
        assert name == "0" or (b != a).any()  # "2" sums float32 kernels: rounded
    assert held_dtype(narrow.graph, groups["4"]) == "float32"  # borrowed, unmerged
    small, same = rebuild(net, narrow, "A"), rebuild(net, wide, "B")
    assert small.state_dict().keys() == same.state_dict().keys()
    assert all(torch.equal(t, same.state_dict()[k]) for k, t in small.state_dict().items())
    assert ft.verify(model, small, torch.randn(3, 3, 4, 4)).max_rel <= 1e-5
    assert small.get_submodule("2").groups == 2
    net64 = ft.trace(planted_grouped_cnn().double(), x.double())
    base64 = net64.base(net64.graph.color("fibers"))
    assert held_dtype(base64.graph, [l.group for l in net64.layers if l.module == "0"][0]) \
        == "float64"


PEAK_SCRIPT = r"""
import json, sys
import torch
torch.set_num_threads(1)
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import fibration.torch as ft
from test_torch_memory import grouped_cnn

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

model = grouped_cnn(1024, 6)
x = torch.randn(2, 3, 4, 4)
with torch.no_grad():
    model(x)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) starts again from the current resident size
before = status("VmRSS")
small, _ = ft.compress(model, x)
weights = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps({"weights": weights, "extra": status("VmHWM") - before,
                  "max_rel": ft.verify(model, small, torch.randn(3, 3, 4, 4)).max_rel}))
"""


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK),
                    reason="needs Linux's /proc/self/clear_refs to reset the peak")
def test_exact_compress_of_a_float32_cnn_needs_at_most_twice_its_weights_more():
    """Peak resident memory of ft.compress on a float32 CNN that merges
    nothing (65 MB of weights), above what the loaded model takes: the
    compressed copy (once the weights), the trace check's copy (freed
    before the colouring) and the colouring's signatures; about 1.5x the
    weights, where a float64 base and a check copy kept alive took 4.4x."""
    here = os.path.dirname(os.path.abspath(__file__))
    package = os.path.join(here, "..", "..", "bindings", "python")
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, package, here],
                         capture_output=True, text=True, timeout=600, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["max_rel"] <= 1e-5
    assert result["extra"] <= 2.0 * result["weights"], result
