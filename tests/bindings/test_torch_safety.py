"""fibration.torch never returns a silently wrong model: what tracing cannot
follow is refused with an error naming it (a module called twice, hooks, a
forward that tracing does not see, tied weights merged differently), a
budget plan re-applies to the same model exactly, and batch norm trains as
the original when its merged channels agree (else the plan says it does
not)."""

import json
import warnings

import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

import fibration.torch as ft  # noqa: E402
from planted_models import lifted_linear, planted_mlp  # noqa: E402


def planted_linear(n_in, n_out, base_out, base_in, seed):
    layer = nn.Linear(n_in, n_out)
    lifted_linear(layer, base_out, base_in, torch.Generator().manual_seed(seed))
    return layer


# -- a module called twice -------------------------------------------------

class SharedLayer(nn.Module):
    """fc1 has planted classes (3 of 2 units); `shared` is called on fc1's
    output and again on its own: the two calls would merge differently."""

    def __init__(self):
        super().__init__()
        self.fc1 = planted_linear(6, 6, 3, None, 0)
        self.shared = nn.Linear(6, 6)
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        h = torch.relu(self.shared(h))
        return self.out(torch.relu(self.shared(h)))


class LoopOverOneLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = planted_linear(6, 8, 4, None, 1)
        self.step = nn.Linear(8, 8)
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        for _ in range(3):
            h = torch.tanh(self.step(h))
        return self.out(h)


@pytest.mark.parametrize("model_class", [SharedLayer, LoopOverOneLayer], ids=["shared", "loop"])
def test_module_called_twice_is_refused_naming_it(model_class, tmp_path):
    model = model_class().eval()
    x = torch.randn(5, 6)
    name = "shared" if model_class is SharedLayer else "step"
    calls = 2 if model_class is SharedLayer else 3
    for call in (lambda: ft.compress(model, x), lambda: ft.analyze(model, x),
                 lambda: ft.compress(model, x, eps=0.5),
                 lambda: ft.save(model, tmp_path / "m.safetensors", x)):
        with pytest.raises(ft.UnsupportedModelError,
                           match=r"module '%s' \(Linear\) is called %d times" % (name, calls)):
            call()
    assert not (tmp_path / "m.safetensors").exists()


class CalledInsideAndOutsideALayer(nn.Module):
    """The encoder layer's linear1 is also called directly (registered
    first under its own name: fx names it after the encoder)."""

    def __init__(self):
        super().__init__()
        self.enc = nn.TransformerEncoderLayer(8, 2, dim_feedforward=8, batch_first=True)
        self.extra = self.enc.linear1

    def forward(self, x):
        return self.extra(self.enc(x))


def test_module_called_inside_a_layer_and_directly_is_refused():
    model = CalledInsideAndOutsideALayer().eval()
    with pytest.raises(ft.UnsupportedModelError,
                       match=r"module 'enc.linear1' \(Linear\) is called 2 times"):
        ft.compress(model, torch.randn(2, 5, 8))


class SharedActivation(nn.Module):
    """One ReLU and one pooling module used at several places: modules
    without weights may be shared."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        with torch.no_grad():
            self.conv1.weight[2:] = self.conv1.weight[:2]
            self.conv1.bias[2:] = self.conv1.bias[:2]
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(4 * 2 * 2, 3)

    def forward(self, x):
        h = self.pool(self.act(self.conv1(x)))
        h = self.pool(self.act(self.conv2(h)))
        return self.head(torch.flatten(h, 1))


def test_modules_without_weights_may_be_called_twice():
    model = SharedActivation().eval()
    x = torch.randn(4, 1, 8, 8)
    small, plan = ft.compress(model, x)
    assert plan.layer("conv1")["classes"] == 2
    assert ft.verify(model, small, x).max_rel < 1e-5


# -- hooks -----------------------------------------------------------------

def mlp():
    return planted_mlp(nn.ReLU)[0]


def doubling_hook(module, inputs, output):
    return output * 2


def shifting_pre_hook(module, inputs):
    return (inputs[0] + 1,)


@pytest.mark.parametrize("kind", ["forward", "pre"])
def test_forward_hooks_are_refused_naming_the_module(kind):
    model = mlp()
    x = torch.randn(8, 10)
    if kind == "forward":
        handle = model[1].register_forward_hook(doubling_hook)
        text = r"forward hook doubling_hook on module '1' \(Linear\)"
    else:
        handle = model[3].register_forward_pre_hook(shifting_pre_hook)
        text = r"forward pre-hook shifting_pre_hook on module '3' \(Linear\)"
    for call in (lambda: ft.compress(model, x), lambda: ft.analyze(model, x),
                 lambda: ft.compress(model, x, budget=0.5), lambda: ft.trace(model, x)):
        with pytest.raises(ft.UnsupportedModelError, match=text):
            call()
    handle.remove()
    small, _ = ft.compress(model, x)  # without the hook: the ordinary compression
    assert ft.verify(model, small, x).max_rel < 1e-5


def test_weight_norm_hook_is_refused_saying_how_to_remove_it():
    model = mlp()
    torch.nn.utils.weight_norm(model[3])
    x = torch.randn(8, 10)
    with pytest.raises(ft.UnsupportedModelError, match=r"pre-hook WeightNorm \(remove it "
                                                       r"with torch.nn.utils.remove_weight_norm"):
        ft.compress(model, x)
    torch.nn.utils.remove_weight_norm(model[3])
    small, _ = ft.compress(model, x)
    assert ft.verify(model, small, x).max_rel < 1e-5


def test_hook_on_the_model_itself_is_refused():
    model = mlp()
    handle = model.register_forward_hook(doubling_hook)
    try:
        with pytest.raises(ft.UnsupportedModelError, match="on the model itself"):
            ft.compress(model, torch.randn(8, 10))
    finally:
        handle.remove()


def test_global_forward_hooks_are_refused():
    from torch.nn.modules.module import (register_module_forward_hook,
                                         register_module_forward_pre_hook)
    model = mlp()
    for register, text in ((register_module_forward_hook, "global forward hook"),
                           (register_module_forward_pre_hook, "global forward pre-hook")):
        handle = register(doubling_hook if "pre" not in text else shifting_pre_hook)
        try:
            with pytest.raises(ft.UnsupportedModelError, match=text):
                ft.compress(model, torch.randn(8, 10))
        finally:
            handle.remove()


# -- the safety net: the trace must reproduce the model --------------------

class ReadsACounter(nn.Module):
    """forward() picks its activation from a Python counter: tracing sees
    the first call (tanh), the model's next calls alternate."""

    def __init__(self):
        super().__init__()
        self.fc1 = planted_linear(10, 12, 4, None, 2)
        self.fc2 = nn.Linear(12, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        act = torch.tanh if self.calls % 2 else torch.relu
        return self.fc2(act(self.fc1(x)))


def test_trace_that_does_not_reproduce_the_model_is_refused(tmp_path):
    x = torch.randn(16, 10)
    for call in (lambda m: ft.compress(m, x), lambda m: ft.analyze(m, x),
                 lambda m: ft.compress(m, x, eps=0.3),
                 lambda m: ft.save(m, tmp_path / "m.safetensors", x)):
        with pytest.raises(ft.TraceMismatchError, match="does not compute ReadsACounter"):
            call(ReadsACounter().eval())
    assert issubclass(ft.TraceMismatchError, ft.UnsupportedModelError)
    assert not (tmp_path / "m.safetensors").exists()


def test_forward_replaced_on_the_instance_is_refused_and_named():
    model = mlp()
    x = torch.randn(8, 10)
    model.forward = lambda inp: nn.Sequential.forward(model, inp) * 0.5
    for call in (ft.compress, ft.analyze):
        with pytest.raises(ft.TraceMismatchError,
                           match="forward is assigned on the instance of the model itself"):
            call(model, x)


def shifted_dense_rebuild(monkeypatch, only_when_merged):
    """Makes the Linear rebuild wrong (its bias shifted by 0.5), always or
    only for layers whose units merged: a defect the checks must catch."""
    from fibration.torch import _rebuild
    original = _rebuild.REBUILDERS["dense"]

    def wrong(ctx, node, layer):
        out = original(ctx, node, layer)
        linear = ctx.root.get_submodule(node.target)
        if not only_when_merged or linear.out_features < layer.width:
            with torch.no_grad():
                linear.bias += 0.5
        return out
    monkeypatch.setitem(_rebuild.REBUILDERS, "dense", wrong)


def test_rebuild_defect_is_caught_before_colouring(monkeypatch):
    shifted_dense_rebuild(monkeypatch, only_when_merged=False)
    with pytest.raises(ft.TraceMismatchError, match="rebuilt without merging"):
        ft.compress(mlp(), torch.randn(8, 10))


def test_exact_compression_is_checked_against_the_model(monkeypatch):
    shifted_dense_rebuild(monkeypatch, only_when_merged=True)
    with pytest.raises(ft.TraceMismatchError, match="the compressed model"):
        ft.compress(mlp(), torch.randn(8, 10))


class ResidualCnn(nn.Module):
    """Convolution, batch norm, a residual sum, pooling and a Linear head:
    with random weights no two units alike."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(11)
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.conv = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(6, 4)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x):
        h = torch.relu(self.bn(self.stem(x)))
        h = torch.relu(h + self.conv(h))
        return self.head(torch.flatten(self.pool(h), 1))


def forbid_fib_compress(monkeypatch):
    import fibration

    def refused(*args):
        raise AssertionError("fib_compress called")
    for name in ("fib_compress", "fib_compress_ex"):
        monkeypatch.setattr(fibration.lib, name, refused)


def test_exact_compression_without_symmetry_is_the_model_without_fib_compress(
        monkeypatch):
    """Nothing merges: compress returns the model as its own base without
    asking fib_compress to copy it, with the same outputs and parameters,
    an identity plan, and still checked against the model (a rebuild
    defect is refused); where units merge fib_compress is needed, which
    shows that the patch below is in effect."""
    forbid_fib_compress(monkeypatch)
    cases = [(mlp_without_symmetry(), torch.randn(8, 10), torch.randn(32, 10)),
             (ResidualCnn().eval(), torch.randn(2, 3, 8, 8), torch.randn(5, 3, 8, 8))]
    for model, x, fresh in cases:
        small, plan = ft.compress(model, x)
        assert ft.verify(model, small, fresh).max_rel < 1e-6
        assert ft.count_parameters(small) == ft.count_parameters(model)
        for entry in plan.layers:
            assert entry["projection"] == list(range(entry["units"])), entry["node"]
    with pytest.raises(AssertionError, match="fib_compress called"):
        ft.compress(mlp(), torch.randn(8, 10))
    shifted_dense_rebuild(monkeypatch, only_when_merged=False)
    with pytest.raises(ft.TraceMismatchError):
        ft.compress(mlp_without_symmetry(), torch.randn(8, 10))


def mlp_without_symmetry():
    torch.manual_seed(12)
    return nn.Sequential(nn.Linear(10, 12), nn.ReLU(), nn.Linear(12, 7), nn.Tanh(),
                         nn.Linear(7, 5)).eval()


def test_wrong_colouring_of_the_trace_is_caught_by_the_exact_check(monkeypatch):
    """An exact compression or analysis does not run the library graph's
    forward pass (_safety): a graph that makes units equal which the model
    does not (here: every exact colouring answered with a huge absolute
    tolerance) must still be refused, by the check of the result."""
    from fibration import _core
    original = _core.Graph.color
    original_pair = _core.Graph.color_fibers_opfibers

    def too_coarse(self, symmetry="fibers", tolerance="exact", eps=0.0, *args, **kwargs):
        return original(self, symmetry, "abs", 1e3, *args, **kwargs)

    def pair_too_coarse(self, tolerance="exact", eps=0.0, *args, **kwargs):
        return original_pair(self, "abs", 1e3, *args, **kwargs)
    monkeypatch.setattr(_core.Graph, "color", too_coarse)
    monkeypatch.setattr(_core.Graph, "color_fibers_opfibers", pair_too_coarse)
    x = torch.randn(8, 10)
    for call in (lambda m: ft.compress(m, x), lambda m: ft.analyze(m, x)):
        with pytest.raises(ft.TraceMismatchError, match="the compressed model"):
            call(mlp())


def test_graph_that_computes_something_else_is_refused_where_nothing_checks_later(
        monkeypatch, tmp_path):
    """Where no result is checked against the model afterwards (a tolerance,
    a re-applied plan, save), the library graph's forward pass is checked
    before colouring: a graph whose forward pass is off by 1 is refused."""
    from fibration import _core
    original = _core.Graph.forward
    x = torch.randn(8, 10)
    _, plan = ft.compress(mlp(), x)
    monkeypatch.setattr(_core.Graph, "forward",
                        lambda self, *args, **kwargs: original(self, *args, **kwargs) + 1.0)
    for call in (lambda m: ft.compress(m, x, eps=0.3), lambda m: ft.compress(m, x, plan=plan),
                 lambda m: ft.save(m, tmp_path / "m.safetensors", x)):
        with pytest.raises(ft.TraceMismatchError, match="the library's graph"):
            call(mlp())
    assert not (tmp_path / "m.safetensors").exists()


def test_safety_net_accepts_float64_and_float32_rounding():
    for dtype in (torch.float32, torch.float64):
        model = planted_mlp(nn.Tanh, dtype=dtype)[0]
        x = torch.randn(32, 10, dtype=dtype)
        small, _ = ft.compress(model, x)  # exact: checked against the model
        bound = 1e-9 if dtype == torch.float64 else 1e-5
        assert ft.verify(model, small, x).max_rel < bound


def test_checks_leave_torch_random_draws_alone():
    model = mlp()
    x = torch.randn(8, 10)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    ft.trace(model, x)
    assert torch.equal(torch.rand(3), expected)


def test_output_tolerance_follows_the_dtype():
    from fibration.torch._safety import output_tolerance
    assert 1e-4 < output_tolerance(torch.float32) < 1e-3
    assert 1e-9 < output_tolerance(torch.float64) < 1e-7


# -- re-applying a budget plan ---------------------------------------------

def budget_mlp(seed=1):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, 5)).eval()


@pytest.mark.parametrize("calibrated", [False, True], ids=["data-free", "calibrated"])
def test_budget_plan_reapplies_to_the_same_model(calibrated, tmp_path):
    model = budget_mlp()
    x = torch.randn(64, 20)
    calibration = torch.randn(128, 20) if calibrated else None
    small, plan = ft.compress(model, x, budget=0.4, calibration=calibration)
    assert plan.budget["refit"]  # a correction was made: Eq. 10 alone is another model
    plan.save(tmp_path / "plan.json")
    assert json.loads((tmp_path / "plan.json").read_text())["version"] == 2
    for again_plan in (plan, ft.Plan.load(tmp_path / "plan.json")):
        again, plan2 = ft.compress(model, x, plan=again_plan)
        for a, b in zip(small.state_dict().values(), again.state_dict().values()):
            assert torch.equal(a, b)
        assert ft.verify(small, again, torch.randn(32, 20)).max_abs == 0
        assert plan2.budget["budget"] == plan.budget["budget"]
        assert [e["projection"] for e in plan2.layers] == [e["projection"] for e in plan.layers]


def test_budget_plan_on_other_weights_is_refused():
    x = torch.randn(64, 20)
    _, plan = ft.compress(budget_mlp(1), x, budget=0.4)
    with pytest.raises(ValueError, match="re-applies only to the model it was made on"):
        ft.compress(budget_mlp(2), x, plan=plan)


def test_scale_aware_plan_keeps_its_scales(tmp_path):
    model = budget_mlp()
    x = torch.randn(64, 20)
    small, plan = ft.compress(model, x, eps=0.5, tolerance="scaled+ward")
    assert plan.params[1] < plan.params[0]
    plan.save(tmp_path / "plan.json")
    again, _ = ft.compress(model, x, plan=ft.Plan.load(tmp_path / "plan.json"))
    assert ft.verify(small, again, x).max_abs == 0
    # a plan without the scales (as version 1 saved it) is refused, not re-applied
    data = json.loads((tmp_path / "plan.json").read_text())
    for entry in data["layers"]:
        entry.pop("scales", None)
    with pytest.raises(ValueError, match="no unit scales"):
        ft.compress(model, x, plan=ft.Plan.from_dict(data))


def test_plain_plans_stay_version_1():
    model = mlp()
    _, plan = ft.compress(model, torch.randn(8, 10))
    assert plan.to_dict()["version"] == 1 and plan.budget is None


# -- batch norm in train mode ----------------------------------------------

def cnn_with_batch_norm(agree=True):
    """Conv channels 2, 3 copy 0, 1; the batch norm's weight, bias and
    statistics agree within those classes (agree) or its running means and
    biases differ by a little (not agree: classes only within a tolerance)."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    conv, bn = model[0], model[1]
    with torch.no_grad():
        conv.weight[2:] = conv.weight[:2]
        conv.bias[2:] = conv.bias[:2]
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
        for t in (bn.running_mean, bn.running_var, bn.weight, bn.bias):
            t[2:] = t[:2]
        if not agree:
            bn.running_mean[2:] += 0.02
            bn.bias[2:] += 0.01
        bn.num_batches_tracked.fill_(7)
    return model.eval()


def test_batch_norm_trains_as_the_original_when_merged_channels_agree():
    model = cnn_with_batch_norm()
    x = torch.randn(16, 1, 6, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ft.TrainModeWarning)
        small, plan = ft.compress(model, x)
    assert plan.layer("_1")["classes"] == 2 and plan.warnings == []
    bn = small.get_submodule("1")
    assert isinstance(bn, nn.BatchNorm2d) and bn.num_features == 2
    assert ft.verify(model, small, x).max_rel < 1e-5
    # train mode: batch statistics, and the running statistics move alike
    model.train()
    small.train()
    for step in range(3):
        batch = torch.randn(16, 1, 6, 6) * (1 + step)
        a, b = model(batch), small(batch)
        assert float((a - b).abs().max()) <= 1e-5 * float(a.abs().max())
    original = model[1]
    for name in ("running_mean", "running_var"):
        got = getattr(bn, name)
        assert torch.allclose(got, getattr(original, name)[:2], rtol=1e-5, atol=1e-6)
    assert int(bn.num_batches_tracked) == int(original.num_batches_tracked) == 10


def test_batch_norm_whose_merged_channels_disagree_warns_and_says_so_in_the_plan(tmp_path):
    model = cnn_with_batch_norm(agree=False)
    x = torch.randn(16, 1, 6, 6)
    with pytest.warns(ft.TrainModeWarning, match="batch norm '1'.*train mode"):
        small, plan = ft.compress(model, x, eps=0.05)
    assert plan.layer("_1")["classes"] == 2
    assert len(plan.warnings) == 1 and "'1'" in plan.warnings[0]
    plan.save(tmp_path / "plan.json")
    assert ft.Plan.load(tmp_path / "plan.json").warnings == plan.warnings
    assert "warning: batch norm '1'" in str(plan)
    # what the warning says: close in eval mode, not in train mode
    assert ft.verify(model, small, x).max_rel < 0.05
    model.train()
    small.train()
    a, b = model(x), small(x)
    assert float((a - b).abs().max()) > 0.1 * float(a.abs().max())


# -- tied parameters -------------------------------------------------------

class TiedPair(nn.Module):
    """b's weight is a's (one nn.Parameter); `planted`: a and b read and
    write the same classes (2 of 4 units), so both merge alike; else b
    reads a's merged output while a reads the unmerged input."""

    def __init__(self, planted=True):
        super().__init__()
        self.planted = planted
        if planted:
            self.inp = planted_linear(6, 8, 2, None, 4)
            self.a = planted_linear(8, 8, 2, 2, 5)
        else:
            self.a = planted_linear(8, 8, 2, None, 5)
        self.b = nn.Linear(8, 8)
        self.b.weight = self.a.weight
        with torch.no_grad():
            self.b.bias.copy_(self.a.bias * 0.5)  # biases not tied, same classes
        self.head = planted_linear(8, 3, 3, 2, 6)

    def forward(self, x):
        h = torch.relu(self.inp(x)) if self.planted else x
        return self.head(torch.relu(self.b(torch.relu(self.a(h)))))


def test_tied_weights_stay_tied_when_both_layers_merge_alike():
    model = TiedPair().eval()
    x = torch.randn(16, 6)
    small, plan = ft.compress(model, x)
    assert small.get_submodule("a").weight is small.get_submodule("b").weight
    assert small.get_submodule("a").weight.shape == (2, 2)
    assert ft.count_parameters(small) < ft.count_parameters(model)
    assert plan.params == (ft.count_parameters(model), ft.count_parameters(small))
    assert ft.verify(model, small, x).max_rel < 1e-5
    report = ft.analyze(model, x)
    assert report.params[1] == ft.count_parameters(small)
    net = ft.trace(model, x)  # colouring by hand keeps the tie too
    by_hand = net.compress(net.graph.color("fibers"))
    assert by_hand.get_submodule("a").weight is by_hand.get_submodule("b").weight


def test_tied_weights_that_merge_differently_are_refused():
    model = TiedPair(planted=False).eval()
    x = torch.randn(16, 8)
    for call in (ft.compress, ft.analyze):
        with pytest.raises(ft.UnsupportedModelError,
                           match=r"tensor shared by 'a.weight', 'b.weight'.*merged differently"):
            call(model, x)


def test_tied_weights_without_merges_never_grow_the_model():
    model = TiedPair(planted=False).eval()
    with torch.no_grad():
        model.a.weight.normal_()  # nothing merges
    x = torch.randn(16, 8)
    small, plan = ft.compress(model, x)
    assert small.get_submodule("a").weight is small.get_submodule("b").weight
    assert ft.count_parameters(small) == ft.count_parameters(model)
