"""fibration.torch on planted-symmetry models: exact compression to the
planted size, plans, lift, symmetry breaking, reports and errors."""

import json

import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

import fibration.torch as ft  # noqa: E402
from planted_models import ResidualMLP, planted_mlp  # noqa: E402


def hidden_widths(module):
    return [m.out_features for m in module.modules() if isinstance(m, nn.Linear)][:-1]


ACTIVATIONS = [nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.Identity,
               lambda: nn.LeakyReLU(0.2), nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.Mish,
               nn.Softplus, lambda: nn.GELU(approximate="tanh")]


@pytest.mark.parametrize("activation", ACTIVATIONS,
                         ids=["relu", "tanh", "sigmoid", "gelu", "silu", "identity", "leaky",
                              "relu6", "hardswish", "hardsigmoid", "mish", "softplus",
                              "gelu_tanh"])
def test_planted_mlp_compresses_to_the_planted_size(activation):
    model, _ = planted_mlp(activation)
    x = torch.randn(64, 10)
    small, plan = ft.compress(model, x)
    assert hidden_widths(small) == [3, 4]
    diff = ft.verify(model, small, x)
    assert diff.max_rel < 1e-5, diff
    assert plan.params[1] < plan.params[0]
    assert isinstance(small, nn.Module)
    assert all(type(m).__module__.startswith("torch.nn") for m in small.modules()
               if m is not small and not isinstance(m, torch.fx.GraphModule)
               and type(m) is not nn.Module)


def test_float64_model_is_exact_to_rounding():
    model, _ = planted_mlp(nn.Tanh, dtype=torch.float64)
    x = torch.randn(32, 10, dtype=torch.float64)
    small, _ = ft.compress(model, x)
    assert ft.verify(model, small, x).max_rel < 1e-13


def test_residual_block_compresses():
    model = ResidualMLP().eval()
    x = torch.randn(32, 12)
    small, plan = ft.compress(model, x)
    assert [small.inp.out_features, small.get_submodule("block.0").out_features,
            small.get_submodule("block.2").out_features] == [2, 2, 2]
    assert ft.verify(model, small, x).max_rel < 1e-5
    report = ft.analyze(model, x)
    assert report["add"]["fibers"] == 2 and report["add"]["kind"] == "sum"


def test_residual_sum_with_an_unmerged_input_gathers():
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 6)
            self.head = nn.Linear(6, 2)
            g = torch.Generator().manual_seed(3)
            from planted_models import lifted_linear
            lifted_linear(self.fc, 2, None, g)

        def forward(self, x):
            return self.head(torch.relu(x + self.fc(x)))

    model = Skip().eval()
    x = torch.randn(16, 6)
    small, plan = ft.compress(model, x)
    assert small.fc.out_features == 2                  # merged, then gathered
    assert ft.verify(model, small, x).max_rel < 1e-5


def test_covers_and_ignored_layers():
    model, _ = planted_mlp(nn.ReLU)
    x = torch.randn(16, 10)
    small, plan = ft.compress(model, x, symmetry="covers")
    assert ft.verify(model, small, x).max_rel < 1e-5
    assert plan.symmetry == "covers"
    kept, plan = ft.compress(model, x, ignored_layers=[model[1]])
    assert hidden_widths(kept)[0] == 12
    assert ft.verify(model, kept, x).max_rel < 1e-5
    kept_by_name, _ = ft.compress(model, x, ignored_layers=["1"])
    assert hidden_widths(kept_by_name) == hidden_widths(kept)
    with pytest.raises(ValueError, match="not Linear layers"):
        ft.compress(model, x, ignored_layers=["nope"])


def test_plan_saves_and_reapplies(tmp_path):
    model, _ = planted_mlp(nn.ReLU)
    x = torch.randn(16, 10)
    small, plan = ft.compress(model, x)
    path = tmp_path / "plan.json"
    plan.save(path)
    data = json.loads(path.read_text())
    assert data["format"] == "fibration-plan" and data["layers"][1]["classes"] == 3
    loaded = ft.Plan.load(path)
    assert loaded == plan
    again, plan2 = ft.compress(model, x, plan=loaded)
    assert plan2 == plan
    for a, b in zip(small.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    # the same plan on another instance of the architecture
    other, _ = planted_mlp(nn.ReLU, seed=7)
    applied, _ = ft.apply_plan(other, x, loaded)
    assert ft.verify(other, applied, x).max_rel < 1e-5
    with pytest.raises(ValueError, match="architecture|units"):
        ft.compress(planted_mlp(nn.ReLU, bases=(2, 4), mult=(5, 3))[0], x, plan=loaded)


def test_lift_returns_the_original_shape():
    model, _ = planted_mlp(nn.ReLU)
    x = torch.randn(16, 10)
    small, plan = ft.compress(model, x)
    with torch.no_grad():                   # "retrain" the base a little
        for p in small.parameters():
            p.add_(0.01 * torch.randn_like(p))
    big = ft.lift(small, plan, model)
    assert hidden_widths(big) == hidden_widths(model)
    assert ft.verify(small, big, x).max_rel < 1e-5
    small2, _ = ft.compress(big, x)
    assert hidden_widths(small2) == [3, 4]


def test_break_symmetry():
    model, _ = planted_mlp(nn.ReLU)
    x = torch.randn(16, 10)
    fresh = ft.break_symmetry(model, x, seed=1)
    assert hidden_widths(fresh) == hidden_widths(model)
    assert ft.verify(model, fresh, x).max_rel < 1e-5
    assert ft.analyze(fresh, x)["_1"]["fibers"] == 12   # new units are distinct
    with pytest.raises(Exception):                      # sums: FIB_E_UNSUPPORTED
        ft.break_symmetry(ResidualMLP(), torch.randn(4, 12))


def test_analyze_report_and_params_line(capsys):
    model, _ = planted_mlp(nn.ReLU)
    report = ft.analyze(model, torch.randn(8, 10), print_table=True)
    out = capsys.readouterr().out
    assert "fibers" in out and "opfibers" in out and "covers" in out
    row = report["_1"]
    assert (row["units"], row["fibers"], row["classes"]) == (12, 3, "3x4")
    assert row["covers"] <= 12 and row["params"] == 12 * 10 + 12
    assert "Params:" in str(report)
    from fibration.torch._plan import params_line
    assert params_line(270000, 49950) == "Params: 0.27 M => 0.05 M (18.5%)"


def test_tolerance_merges_near_copies():
    model, _ = planted_mlp(nn.ReLU)
    with torch.no_grad():
        model[1].weight.add_(1e-4 * torch.randn_like(model[1].weight))
    x = torch.randn(16, 10)
    assert ft.analyze(model, x)["_1"]["fibers"] == 12
    assert ft.analyze(model, x, eps=1e-2)["_1"]["fibers"] == 3
    small, plan = ft.compress(model, x, eps=1e-2)
    assert hidden_widths(small)[0] == 3 and plan.tolerance == "abs"
    assert ft.verify(model, small, x).max_abs < 0.05


def scaled_planted_mlp(seed=0):
    """10 -> 12 -> 4 ReLU MLP whose hidden units are 3 rows, each copied 4
    times with a positive scale s on its incoming weights and bias and 1/s
    on its outgoing column: the same function as the 3-unit base."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    base = nn.Sequential(nn.Linear(10, 3), nn.ReLU(), nn.Linear(3, 4)).double()
    big = nn.Sequential(nn.Linear(10, 12), nn.ReLU(), nn.Linear(12, 4)).double()
    with torch.no_grad():
        for i in range(12):
            s = 0.5 + torch.rand(1, generator=g, dtype=torch.float64).item()
            big[0].weight[i] = s * base[0].weight[i % 3]
            big[0].bias[i] = s * base[0].bias[i % 3]
            big[2].weight[:, i] = base[2].weight[:, i % 3] / (4 * s)
        big[2].bias.copy_(base[2].bias)
    return big


@pytest.mark.parametrize("tolerance", ["scaled+complete", "scaled+ward", "scaled+abs"])
def test_compress_takes_every_tolerance_by_name(tolerance):
    big = scaled_planted_mlp()
    x = torch.randn(16, 10, dtype=torch.float64)
    # plain exact merging sees twelve different units ...
    assert ft.analyze(big, x)["_0"]["fibers"] == 12
    # ... the scale-aware modes see the three planted ones and keep the function
    small, plan = ft.compress(big, x, eps=1e-6, tolerance=tolerance)
    assert hidden_widths(small) == [3] and plan.tolerance == tolerance
    assert ft.verify(big, small, x).max_abs < 1e-9
    report = ft.analyze(big, x, eps=1e-6, tolerance=tolerance)
    assert report["_0"]["fibers"] == 3 and report["_0"]["covers"] is None
    assert " - " in str(report)  # opfibers and covers are not scale-aware


@pytest.mark.parametrize("tolerance", ["rel", "cosine", "complete", "ward"])
def test_every_grouping_finds_exact_copies(tolerance):
    model, _ = planted_mlp(nn.ReLU)
    x = torch.randn(16, 10)
    small, plan = ft.compress(model, x, eps=1e-6, tolerance=tolerance)
    assert hidden_widths(small)[0] == 3 and plan.tolerance == tolerance
    assert ft.verify(model, small, x).max_abs < 1e-4


def test_trace_colour_edit_and_compress_by_hand():
    model, _ = planted_mlp(nn.ReLU)
    x = torch.randn(16, 10)
    net = ft.trace(model, x)
    hidden = next(layer for layer in net.layers if layer.kind == "dense" and
                  layer.group not in net.outputs)
    coloring = net.graph.color("fibers", "cosine", 1e-6)
    assert coloring.num_classes(hidden.group) == 3
    small = net.compress(coloring)
    assert hidden_widths(small)[0] == 3 and ft.verify(model, small, x).max_abs < 1e-4
    # a colouring edited by hand: every unit its own class is the model again
    coloring.set_group(hidden.group, list(range(hidden.width)))
    same = net.compress(coloring, "Same")
    # an nn.Sequential stays one (the class name is that of a CompressedModule)
    assert type(same) is nn.Sequential and hidden_widths(same)[0] == hidden.width
    assert ft.verify(model, same, x).max_abs < 1e-5


def test_unknown_tolerance_names_the_known_ones():
    model, _ = planted_mlp(nn.ReLU)
    with pytest.raises(ValueError, match="cosine"):
        ft.compress(model, torch.randn(4, 10), tolerance="cosinus")


def test_fiber_tracker(tmp_path):
    model, _ = planted_mlp(nn.ReLU)
    x = torch.randn(8, 10)
    tracker = ft.FiberTracker(model, x)
    assert tracker(accuracy=0.5)["1"] == 3
    with torch.no_grad():
        model[1].weight.add_(torch.randn_like(model[1].weight))
    assert tracker(accuracy=0.6)["1"] == 12
    assert tracker.fibers["1"] == [3, 12]
    pytest.importorskip("matplotlib")
    tracker.plot(tmp_path / "fibers.png")
    assert (tmp_path / "fibers.png").stat().st_size > 1000


def test_fiber_tracker_legend_names_every_layer_of_a_sequential():
    pytest.importorskip("matplotlib")
    model, _ = planted_mlp(nn.ReLU)
    tracker = ft.FiberTracker(model, torch.randn(8, 10))
    tracker(accuracy=0.5)
    fig = tracker.plot()
    legend = fig.axes[0].get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert len(labels) == len(tracker.fibers) >= 2
    for name in tracker.fibers:
        assert any(name in label for label in labels)
    import matplotlib.pyplot as plt
    plt.close(fig)


class Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 2, 3)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


@pytest.mark.parametrize("model,x,match", [
    (Conv(), torch.randn(2, 1, 4, 4, 3), r"Conv3d: 3-D convolutions have no C builder"),
    (nn.Sequential(nn.Linear(3, 3), nn.ELU(), nn.Linear(3, 1)), torch.randn(2, 3),
     r"ELU.*no converter"),
    (nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.ReLU()), torch.randn(2, 3),
     "already has an activation"),
    (nn.Sequential(nn.Linear(3, 3)), torch.randn(2, 1, 5, 3), r"Linear reads a image"),
    (nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 1)), torch.tensor([[0, 4]]),
     r"\(Embedding\).*integer token ids.*fib_graph_add_token_embedding"),
])
def test_unsupported_models_name_the_layer(model, x, match):
    with pytest.raises(ft.UnsupportedModelError, match=match):
        ft.compress(model, x)


def test_returning_an_intermediate_layer_is_refused():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

        def forward(self, x):
            h = self.a(x)
            return self.b(h), h

    with pytest.raises(ft.UnsupportedModelError, match="intermediate"):
        ft.compress(Two(), torch.randn(2, 3))
