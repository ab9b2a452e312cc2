"""compress(budget=) reads every batch norm's running statistics (the
model's own buffers, no data): carried forward through the ReLU, the max
pool and the hidden layer, they tell hidden units that never fire from live
ones, and the budget removes those first, their mean taken by the next
layer's bias. Graph.set_unit_statistics validates what it is given."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

import fibration  # noqa: E402
import fibration.torch as ft  # noqa: E402
from fibration.torch import _budget, _statistics  # noqa: E402

DEAD = 6


def dead_units_cnn():
    """conv-BN-ReLU-maxpool-flatten-Linear(16)-ReLU-Linear(4), the batch
    norm's running statistics those of the training inputs; hidden units
    0-5 have a bias of -1000 (they never fire) and three times the others'
    weights, so that by the weights alone they are the last to go."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8, momentum=None),
                          nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 16),
                          nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.3, 0.3)
        model.train()
        model(torch.randn(256, 1, 8, 8))  # the running statistics of these inputs
        model[5].weight[:DEAD] *= 3
        model[5].bias[:DEAD] = -1000
    return model.eval(), torch.randn(16, 1, 8, 8)


def _parameters(hidden):
    return 8 * 10 + 8 * 2 + hidden * (8 * 16 + 1) + 4 * (hidden + 1)


def _hidden_classes(model, x, budget):
    net = ft._trace(model, x)  # with the batch norms' statistics
    base, _ = _budget.base_to_budget(net.graph, budget)
    group = next(layer.group for layer in net.layers if layer.module == "5")
    return list(base.projection(group)), base


def test_budget_removes_hidden_units_the_batch_norm_statistics_predict_dead():
    model, x = dead_units_cnn()
    total = ft.count_parameters(model)
    assert total == _parameters(16)
    budget = _parameters(16 - DEAD) / total
    small, plan = ft.compress(model, x, budget=budget)
    assert ft.count_parameters(small) <= budget * total + 1e-9
    assert [small[0].out_channels, small[5].out_features] == [8, 16 - DEAD]
    # the dead units went, each live unit keeps a class of its own
    classes, base = _hidden_classes(model, x, budget)
    assert len(set(classes[DEAD:])) == 16 - DEAD
    for inputs in (x, torch.randn_like(x)):
        with torch.no_grad():
            assert (small(inputs) - model(inputs)).abs().max().item() < 1e-5
    # the module computes what the returned graph computes
    want = base.graph.forward(x.double().permute(0, 2, 3, 1).reshape(len(x), -1).numpy())
    with torch.no_grad():
        got = small(x).double().numpy()
    assert abs(got.reshape(want.shape) - want).max() < 1e-5


def test_without_the_batch_norm_statistics_the_dead_units_stay(monkeypatch):
    """The control: the weights alone cannot tell the dead units, so the
    same budget changes the outputs."""
    model, x = dead_units_cnn()
    monkeypatch.setattr(_statistics, "attach_batch_norm_statistics", lambda net: None)
    budget = _parameters(16 - DEAD) / ft.count_parameters(model)
    small, _ = ft.compress(model, x, budget=budget)
    with torch.no_grad():
        assert (small(x) - model(x)).abs().max().item() > 1e-3


def test_batch_norm_statistics_are_the_running_buffers_of_the_group_read():
    model, x = dead_units_cnn()
    net = ft._trace(model, x)
    found = _statistics.batch_norm_statistics(net)
    assert len(found) == 1
    group, mean, var, name = found[0]
    assert name == "1" and net.graph.group(group).op == "conv"
    assert np.array_equal(mean, model[1].running_mean.double().numpy())
    assert np.array_equal(var, model[1].running_var.double().numpy())


@pytest.mark.parametrize("mean, var, code, words", [
    ([0.0] * 7, [1.0] * 7, "FIB_E_SHAPE", "7 statistics for 8 units"),
    ([0.0] * 8, [1.0] * 7 + [-1.0], "FIB_E_INVALID", "unit 7: variance -1 is negative"),
    ([0.0] * 3 + [float("nan")] + [0.0] * 4, [1.0] * 8, "FIB_E_NONFINITE", "unit 3: mean"),
    ([0.0] * 8, [1.0] * 2 + [float("inf")] + [1.0] * 5, "FIB_E_NONFINITE", "unit 2: variance"),
])
def test_unit_statistics_are_refused_by_group_and_unit(mean, var, code, words):
    model, x = dead_units_cnn()
    net = ft._trace(model, x)
    with pytest.raises(fibration.FibrationError) as e:
        net.graph.set_unit_statistics(1, mean, var)
    assert e.value.name == code and "group 1" in str(e.value) and words in str(e.value)


def test_unit_statistics_need_both_arrays_and_none_removes_them():
    model, x = dead_units_cnn()
    net = ft._trace(model, x)
    with pytest.raises(ValueError):
        net.graph.set_unit_statistics(1, [0.0] * 8, None)
    with pytest.raises(fibration.FibrationError) as e:
        net.graph.set_unit_statistics(99, [0.0], [1.0])
    assert e.value.name == "FIB_E_RANGE"
    net.graph.set_unit_statistics(1, [0.0] * 8, [1.0] * 8)
    net.graph.set_unit_statistics(1, None, None)
