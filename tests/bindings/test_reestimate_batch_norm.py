"""compress(model, x, budget=f, reestimate_batch_norm=xb) (issue 26, item 2):
the one option of a budget that uses data. Without it the result is the
data-free one; with it only the batch norms change: their running
statistics become those of their inputs on the batch and each channel's
output on the batch gets the original's moments; the returned module
computes its outputs from its own state."""

import copy

import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

import fibration.torch as ft  # noqa: E402
from fibration.torch import _budget  # noqa: E402


def small_cnn(seed=0):
    """Two convolutions with batch norm whose stored statistics are not
    those of the inputs below (as after training on other data)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(),
                          nn.Conv2d(12, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12 * 4 * 4, 16), nn.ReLU(),
                          nn.Linear(16, 4))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for norm in (model[1], model[4]):
            norm.weight.copy_(torch.rand(12, generator=g) + 0.5)
            norm.bias.copy_(torch.randn(12, generator=g) * 0.3)
            norm.running_mean.copy_(torch.randn(12, generator=g) * 0.5)
            norm.running_var.copy_(torch.rand(12, generator=g) * 2 + 0.5)
    return model.eval()


def inputs(n, seed):
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def norms(module):
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def per_channel(x):
    x = x.double().transpose(0, 1).reshape(x.shape[1], -1)
    return x.mean(1), x.var(1, unbiased=False)


def batch_statistics(module, batch, outputs=False):
    """Per batch norm of `module` in eval mode: the mean and variance of its
    input (or output) on the batch, per channel."""
    seen = []

    def hook(norm, args, out=None):
        seen.append(per_channel(out if outputs else args[0]))
    handles = [n.register_forward_hook(hook) if outputs else n.register_forward_pre_hook(hook)
               for n in norms(module)]
    with torch.no_grad():
        module.eval()(batch)
    for h in handles:
        h.remove()
    return seen


def test_without_the_option_the_budget_is_data_free():
    model = small_cnn()
    x, batch = inputs(8, 1), inputs(64, 2)
    before = copy.deepcopy(model.state_dict())
    plain, plan = ft.compress(model, x, budget=0.5)
    reference, _ = _budget.compress_to_budget(model, x, 0.5)
    assert "reestimated_batch_norms" not in plan.budget
    for (name, a), (_, b) in zip(plain.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), name
    # the stored statistics of the data-free result are not the batch's
    got = batch_statistics(plain, batch)
    assert any((norm.running_mean.double() - mean).abs().max() > 0.05
               for norm, (mean, _) in zip(norms(plain), got))
    ft.compress(model, x, budget=0.5, reestimate_batch_norm=batch)
    for name, value in model.state_dict().items():  # the model given is untouched
        assert torch.equal(value, before[name]), name
    assert not model.training


def test_statistics_are_the_batch_s_and_outputs_have_the_original_s_moments():
    model = small_cnn()
    x, batch = inputs(8, 1), inputs(64, 2)
    plain, _ = ft.compress(model, x, budget=0.5)
    small, plan = ft.compress(model, x, budget=0.5, reestimate_batch_norm=batch)
    assert plan.budget["reestimated_batch_norms"] == 2
    assert not small.training
    assert ft.count_parameters(small) == ft.count_parameters(plain)
    assert ft.count_parameters(small) <= 0.5 * ft.count_parameters(model)
    for (name, a), (_, b) in zip(plain.named_parameters(), small.named_parameters()):
        if not name.startswith(("1.", "4.")):  # only the batch norms change
            assert torch.equal(a, b), name
    for norm, (mean, var) in zip(norms(small), batch_statistics(small, batch)):
        assert (norm.running_mean.double() - mean).abs().max() < 1e-5
        assert ((norm.running_var.double() - var).abs() / var).max() < 1e-5
    assert any((a.running_mean - b.running_mean).abs().max() > 0.05
               for a, b in zip(norms(plain), norms(small)))
    # each channel's output moments are the mean over its class of the original's
    original = batch_statistics(model, batch, outputs=True)
    for k, (mean, var) in enumerate(batch_statistics(small, batch, outputs=True)):
        projection = torch.tensor(plan.projection(["1", "4"][k]))
        n = int(projection.max()) + 1
        assert n < 12 or k == 1  # the first batch norm merges channels
        for c in range(n):
            members = projection == c
            want_mean = original[k][0][members].mean()
            want_std = original[k][1][members].sqrt().mean()
            assert abs(mean[c] - want_mean) < 1e-4 * (1 + abs(want_mean))
            assert abs(var[c].sqrt() - want_std) < 1e-4 * (1 + want_std)


def test_a_batch_norm_reading_what_the_original_read_keeps_its_function():
    """With nothing merged (a budget the model already meets), every batch
    norm reads the original's inputs: re-estimating changes no output."""
    model = small_cnn()
    x, batch, fresh = inputs(8, 1), inputs(64, 2), inputs(16, 3)
    small, plan = ft.compress(model, x, budget=1.0, reestimate_batch_norm=batch)
    assert ft.count_parameters(small) == ft.count_parameters(model)
    assert plan.budget["reestimated_batch_norms"] == 2
    with torch.no_grad():
        assert (small(fresh) - model(fresh)).abs().max().item() < 1e-4
    assert (norms(small)[0].running_mean - model[1].running_mean).abs().max() > 0.05


def test_outputs_are_those_of_the_returned_module():
    """Everything the outputs depend on is in the module's state: no hook or
    other hidden state is left behind, and a copy of the data-free result
    given the re-estimated state computes the same outputs."""
    model = small_cnn()
    x, batch, fresh = inputs(8, 1), inputs(64, 2), inputs(16, 3)
    small, _ = ft.compress(model, x, budget=0.5, reestimate_batch_norm=batch)
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in small.modules())
    other, _ = ft.compress(model, x, budget=0.5)
    other.load_state_dict(small.state_dict())
    with torch.no_grad():
        assert torch.equal(small(fresh), other(fresh))
        assert torch.equal(small(fresh), copy.deepcopy(small)(fresh))


def test_refused_where_it_would_change_an_exact_result_or_nothing():
    model = small_cnn()
    x, batch = inputs(8, 1), inputs(64, 2)
    with pytest.raises(ValueError, match="budget"):
        ft.compress(model, x, reestimate_batch_norm=batch)
    dense = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 3)).eval()
    with pytest.raises(ValueError, match="no batch norm"):
        ft.compress(dense, torch.randn(4, 6), budget=0.6,
                    reestimate_batch_norm=torch.randn(16, 6))
    small, plan = ft.compress(model, x, budget=0.5)
    with pytest.raises(ValueError, match="two samples"):
        ft.reestimate_batch_norm(small, plan, model, batch[:1])


def test_a_budget_plan_reapplied_with_the_option_gives_the_same_module():
    model = small_cnn()
    x, batch = inputs(8, 1), inputs(64, 2)
    small, plan = ft.compress(model, x, budget=0.5, reestimate_batch_norm=batch)
    again, plan2 = ft.compress(model, x, plan=plan, reestimate_batch_norm=batch)
    assert plan2.budget["reestimated_batch_norms"] == 2
    for (name, a), (_, b) in zip(small.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    plain, _ = ft.compress(model, x, plan=plan)  # without it: the data-free result
    assert any(not torch.equal(a.weight, b.weight) for a, b in zip(norms(plain), norms(small)))
