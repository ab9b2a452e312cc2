"""fibration.torch.save / load (fib_model_save / fib_base_save /
fib_model_load) for every block kind, of originals and of compressed models
(bases), the `fibration` command on saved files, and errors for what model
files cannot hold or what cannot be traced."""

import json
import os
import subprocess

import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

import fibration  # noqa: E402
import fibration.torch as ft  # noqa: E402
import planted_blocks as pb  # noqa: E402
from planted_models import ResidualMLP, planted_mlp  # noqa: E402


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_save_load_round_trip(tmp_path, dtype):
    model, _ = planted_mlp(nn.Tanh, dtype=dtype)
    path = tmp_path / "mlp.safetensors"
    ft.save(model, path)
    loaded = ft.load(path)
    x = torch.randn(8, 10, dtype=dtype)
    assert ft.verify(model, loaded, x).max_abs == 0.0
    # tensors keep the state dict's names
    assert set(loaded.state_dict()) == set(model.state_dict())
    assert next(loaded.parameters()).dtype == dtype


def test_compressed_model_saves_and_the_command_line_format_reads_it(tmp_path):
    model, _ = planted_mlp(nn.ReLU)
    x = torch.randn(8, 10)
    small, plan = ft.compress(model, x)
    ft.save(small, tmp_path / "small.safetensors", x)
    graph = fibration.Graph.load(tmp_path / "small.safetensors")
    assert [g.n_units for g in graph.groups()] == [10, 3, 4, 5]
    assert ft.verify(model, ft.load(tmp_path / "small.safetensors"), x).max_rel < 1e-6


def test_residual_sums_round_trip(tmp_path):
    model = ResidualMLP().eval()
    x = torch.randn(4, 12)
    ft.save(model, tmp_path / "res.safetensors")
    assert ft.verify(model, ft.load(tmp_path / "res.safetensors"), x).max_rel < 1e-6
    small, _ = ft.compress(model, x)          # a base with gathering sums
    ft.save(small, tmp_path / "small.safetensors", x)
    assert ft.verify(model, ft.load(tmp_path / "small.safetensors"), x).max_rel < 1e-5


@pytest.mark.parametrize("model,x,match", [
    (nn.Sequential(nn.LSTM(3, 4)), torch.randn(2, 5, 3), "batch_first=False"),
    (nn.Sequential(nn.GRU(3, 4, batch_first=True, bidirectional=True)), torch.randn(2, 5, 3),
     "bidirectional"),
    (nn.Sequential(nn.Conv2d(2, 3, 3, dilation=2)), torch.randn(1, 2, 8, 8), "dilation"),
    (nn.Sequential(nn.Conv2d(2, 3, 3, padding="same")), torch.randn(1, 2, 8, 8),
     "explicit zero padding"),
    (nn.Sequential(nn.Conv2d(2, 3, 3), nn.MaxPool2d(2, ceil_mode=True)),
     torch.randn(1, 2, 9, 9), "ceil_mode"),
    (nn.Sequential(nn.Conv2d(2, 3, 3), nn.AvgPool2d(2, count_include_pad=False)),
     torch.randn(1, 2, 9, 9), "count_include_pad"),
    (nn.Sequential(nn.Conv2d(2, 3, 3), nn.GroupNorm(1, 3)), torch.randn(1, 2, 5, 5),
     "GroupNorm.*group norm"),
    (nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(5)), torch.randn(2, 5, 3),
     "BatchNorm1d reads a sequence"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.LayerNorm(2)), torch.randn(1, 1, 4, 4),
     "LayerNorm reads a image"),
])
def test_unsupported_layers_raise_naming_them(model, x, match):
    with pytest.raises(ft.UnsupportedModelError, match=match):
        ft.compress(model.eval(), x)


class CrossAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.mha = nn.MultiheadAttention(4, 2, batch_first=True)

    def forward(self, x):
        return self.mha(self.a(x), x, x)[0]


class HiddenState(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        out = self.lstm(x)
        return self.head(out[1][0][-1])


class NotBatchFirstAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(4, 2)

    def forward(self, x):
        return self.mha(x, x, x)[0]


@pytest.mark.parametrize("model,x,match", [
    (CrossAttention(), torch.randn(2, 3, 4), "only self-attention"),
    (HiddenState(), torch.randn(2, 3, 3), "item 1 of this tuple.*out\\[0\\]\\[:, -1\\]"),
    (NotBatchFirstAttention(), torch.randn(2, 3, 4), "batch_first=False"),
])
def test_unsupported_uses_raise_naming_them(model, x, match):
    with pytest.raises(ft.UnsupportedModelError, match=match):
        ft.compress(model.eval(), x)


def test_lift_of_a_cnn_plan_says_what_is_missing():
    model, x, _ = pb.planted_cnn()
    small, plan = ft.compress(model, x)
    with pytest.raises(ft.UnsupportedModelError, match="lift"):
        ft.lift(small, plan, model)


# -- every block kind -------------------------------------------------------

KINDS = {
    "cnn": pb.planted_cnn,                               # conv, batch norm, max pool, flatten
    "grouped_conv": pb.planted_grouped_conv,
    "conv1d": pb.planted_conv1d,                         # Conv1d, BatchNorm1d, AvgPool1d
    "resnet": pb.planted_resnet,                         # residual sums of images
    "mlp_norms": pb.planted_mlp_norms,                   # BatchNorm1d, LayerNorm
    "lstm": lambda: pb.planted_recurrent("lstm"),        # 2-layer LSTM, last step
    "gru": lambda: pb.planted_recurrent("gru", base_widths=(2, 3)),
    "attention": pb.planted_attention,                   # MultiheadAttention wrapper
    "encoder_layer": pb.planted_encoder,                 # TransformerEncoderLayer
    "encoder": lambda: pb.planted_encoder(n_layers=2, activation="gelu", norm_first=True),
}
ROUND_TRIP = {torch.float64: 1e-12, torch.float32: 1e-6}
DTYPES = pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])


def kind_model(kind, dtype):
    model, x = KINDS[kind]()[:2]
    return model.to(dtype).eval(), x.to(dtype)


def module_types(module):
    return {type(m).__name__ for m in module.modules()}


@DTYPES
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_round_trips(tmp_path, kind, dtype):
    model, x = kind_model(kind, dtype)
    path = tmp_path / ("%s.safetensors" % kind)
    ft.save(model, path, x)
    loaded = ft.load(path)
    assert ft.verify(model, loaded, x).max_rel <= ROUND_TRIP[dtype]
    assert ft.verify(model, loaded, torch.randn_like(x)).max_rel <= ROUND_TRIP[dtype]
    assert next(loaded.parameters()).dtype == dtype
    # nothing merged: standard torch layers only
    assert not module_types(loaded) & {"FiberAttention", "WeightedLayerNorm"}
    # the file is the library's: the same groups as the traced model
    graph = fibration.Graph.load(path)
    traced = ft._trace(model, x).graph
    assert [(g.op, g.n_units) for g in graph.groups()] == \
        [(g.op, g.n_units) for g in traced.groups()]


@pytest.mark.parametrize("kind", ["cnn", "lstm", "gru", "conv1d"])
def test_state_dict_names_survive(tmp_path, kind):
    model, x = kind_model(kind, torch.float32)
    ft.save(model, tmp_path / "m.safetensors", x)
    loaded = ft.load(tmp_path / "m.safetensors")
    assert set(loaded.state_dict()) == set(model.state_dict())


@DTYPES
@pytest.mark.parametrize("kind", ["cnn", "resnet", "mlp_norms", "lstm", "attention",
                                  "encoder"])
def test_compressed_base_round_trips(tmp_path, kind, dtype):
    model, x = kind_model(kind, dtype)
    small, plan = ft.compress(model, x)
    path = tmp_path / "small.safetensors"
    ft.save(small, path, x)
    loaded = ft.load(path)
    assert ft.verify(small, loaded, x).max_rel <= ROUND_TRIP[dtype]
    assert ft.verify(model, loaded, x).max_rel <= {torch.float64: 1e-9,
                                                   torch.float32: 1e-5}[dtype]
    assert ft.count_parameters(loaded) == plan.params[1]
    assert next(loaded.parameters()).dtype == dtype
    # written as a base: the projection of every original group is there
    with open(path, "rb") as fh:
        length = int.from_bytes(fh.read(8), "little")
        meta = json.loads(json.loads(fh.read(length))["__metadata__"]["fibration"])
    assert len(meta["projection"]) == len(plan.layers)
    if kind in ("attention", "encoder"):
        assert "FiberAttention" in module_types(loaded)


def test_retrained_base_with_gathers_names_why_it_cannot_be_saved(tmp_path):
    model, x = kind_model("attention", torch.float64)
    small, _ = ft.compress(model, x)
    with torch.no_grad():
        next(small.parameters()).add_(1.0)
    with pytest.raises(ft.UnsupportedModelError, match="changed since compress.*FiberAttention 'mha'"):
        ft.save(small, tmp_path / "small.safetensors", x)
    assert not (tmp_path / "small.safetensors").exists()


def test_retrained_compressed_mlp_is_saved_by_tracing(tmp_path):
    model, _ = planted_mlp(nn.ReLU, dtype=torch.float64)
    x = torch.randn(4, 10, dtype=torch.float64)
    small, _ = ft.compress(model, x)
    with torch.no_grad():
        next(small.parameters()).mul_(2.0)
    ft.save(small, tmp_path / "small.safetensors", x)
    assert ft.verify(small, ft.load(tmp_path / "small.safetensors"), x).max_abs == 0.0


def test_save_names_layers_it_cannot_store(tmp_path):
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.GroupNorm(1, 3)).eval()
    with pytest.raises(ft.UnsupportedModelError, match="GroupNorm.*group norm"):
        ft.save(model, tmp_path / "m.safetensors", torch.randn(1, 2, 5, 5))
    assert not (tmp_path / "m.safetensors").exists()


def test_load_names_groups_torch_has_no_module_for(tmp_path):
    graph = fibration.Graph()
    x = graph.add_input_positions(4, 3, 1)
    graph.add_norm(x, "rms", torch.ones(4, dtype=torch.float64), None, 1e-6, name="rms")
    graph.save(str(tmp_path / "rms.safetensors"))
    with pytest.raises(ft.UnsupportedModelError, match=r"group 1 \('rms', norm\).*RMSNorm"):
        ft.load(tmp_path / "rms.safetensors")


# -- the command line on saved files ----------------------------------------

def command(library_dir):
    path = os.path.join(library_dir, "cli", "fibration")
    if not os.path.exists(path):
        pytest.skip("no fibration command beside the library (%s)" % path)
    return path


@pytest.mark.parametrize("kind,counts", [
    # (op, units, fibers) per group, as the planted models give them
    ("cnn", [("input", 2, 2), ("conv", 8, 3), ("affine", 8, 3), ("pool", 8, 3),
             ("conv", 6, 2), ("flatten", 24, 8), ("dense", 4, 4)]),
    ("lstm", [("input", 5, 5), ("lstm", 6, 3), ("lstm", 6, 3), ("last_step", 6, 3),
              ("dense", 3, 3)]),
])
def test_fibration_analyze_reads_saved_models(tmp_path, library_dir, kind, counts):
    model, x = kind_model(kind, torch.float32)
    path = tmp_path / ("%s.safetensors" % kind)
    ft.save(model, path, x)
    done = subprocess.run([command(library_dir), "analyze", "-q", "--json", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    layers = json.loads(done.stdout)["layers"]
    assert [(l["op"], l["units"], l["fibers"]) for l in layers] == counts
    report = ft.analyze(model, x)
    assert [r["fibers"] for r in report] == [c[2] for c in counts[1:]]
