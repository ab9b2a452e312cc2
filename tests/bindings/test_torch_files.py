"""fibration.torch.save / load (fib_model_save / fib_model_load), and errors
for what the model files of this version cannot hold or what cannot be
traced."""

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


def test_save_names_what_model_files_cannot_hold(tmp_path):
    model, x, _ = pb.planted_cnn()
    with pytest.raises(ft.UnsupportedModelError, match=r"features_0 \(conv\)"):
        ft.save(model, tmp_path / "cnn.safetensors", x)
    assert not (tmp_path / "cnn.safetensors").exists()


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
