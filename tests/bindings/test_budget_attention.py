"""compress(budget=...) on attention (issue 26): nn.MultiheadAttention and
nn.TransformerEncoderLayer (batch_first) take a budget. A planted model
with copied heads and dimensions keeps its outputs under the budget of its
exact base; a smaller budget is met by a module that computes the C base;
a kind a budget still refuses is named with its torch module."""

import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

import fibration  # noqa: E402
import fibration.torch as ft  # noqa: E402
from fibration.torch import _budget  # noqa: E402

import planted_blocks  # noqa: E402

PLANTED = {
    "attention": planted_blocks.planted_attention,
    "head_copies": planted_blocks.planted_head_copies,
    "encoder_layer": planted_blocks.planted_encoder,
    "encoder_norm_first": lambda: planted_blocks.planted_encoder(norm_first=True),
    "encoder_two_layers_gelu": lambda: planted_blocks.planted_encoder(2, activation="gelu"),
}


def exact_fraction(model, x):
    exact, _ = ft.compress(model, x)
    return ft.count_parameters(exact) / ft.count_parameters(model)


def _sequence_rows(x):
    """The C graph's input layout of a (batch, positions, features) input."""
    return x.double().reshape(len(x), -1).numpy()


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_attention_budget_of_the_exact_base_keeps_the_outputs(name):
    model, x, _ = PLANTED[name]()
    fraction = exact_fraction(model, x)
    assert fraction < 0.75  # the planted copies are a large part of the model
    small, plan = ft.compress(model, x, budget=fraction)
    assert ft.count_parameters(small) <= fraction * ft.count_parameters(model) + 1e-9
    for inputs in (x, torch.randn_like(x)):
        with torch.no_grad():
            gap = (small(inputs) - model(inputs)).abs().max().item()
        assert gap < 1e-4, (name, gap)


def test_copied_heads_merge_whole():
    """Head 2 copies head 0 and head 3's two dimensions copy each other: the
    budget of the exact base keeps 3 heads, of 2, 2 and 1 pairs, and 5 v
    dimensions; the output projection keeps its 8 outputs."""
    model, x, widths = planted_blocks.planted_head_copies()
    small, _ = ft.compress(model, x, budget=exact_fraction(model, x))
    attn = small.mha
    assert sorted(attn.head_start[h + 1] - attn.head_start[h]
                  for h in range(attn.n_heads)) == [1, 2, 2]
    for module, width in widths.items():
        assert small.get_submodule(module).out_features == width, module


@pytest.mark.parametrize("name", sorted(PLANTED))
@pytest.mark.parametrize("shrink", [0.8, 0.5])
def test_attention_budget_below_the_copies_is_met_and_the_module_is_its_base(name, shrink):
    model, x, _ = PLANTED[name]()
    budget = shrink * exact_fraction(model, x)
    net = ft._trace(model, x)
    try:
        base, info = _budget.base_to_budget(net.graph, budget)
    except fibration.FibrationError as e:
        assert "below the smallest base" in str(e)
        return
    assert info["n_parameters"] <= budget * ft.count_parameters(model)
    small, _ = ft.compress(model, x, budget=budget)
    assert ft.count_parameters(small) == info["n_parameters"]
    want = base.graph.forward(_sequence_rows(x))
    with torch.no_grad():
        got = small(x).double().numpy()
        changed = (small(x) - model(x)).abs().max().item()
    assert abs(got.reshape(want.shape) - want).max() < 1e-4
    assert changed > 1e-4  # below the copies something approximate merged
    again, _ = ft.compress(model, x, budget=budget)
    assert ft.verify(small, again, x).max_abs == 0  # deterministic


class PlainAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.attn(x, x, x, need_weights=False)[0][:, -1])


def test_unplanted_attention_budget_is_met():
    """A random attention (no copies): every budget is met with the torch
    count, and the result computes its base."""
    torch.manual_seed(0)
    model, x = PlainAttention().eval(), torch.randn(4, 6, 16)
    total = ft.count_parameters(model)
    for budget in (0.9, 0.6, 0.4):
        net = ft._trace(model, x)
        base, info = _budget.base_to_budget(net.graph, budget)
        small, _ = ft.compress(model, x, budget=budget)
        assert ft.count_parameters(small) == info["n_parameters"] <= budget * total
        want = base.graph.forward(_sequence_rows(x))
        with torch.no_grad():
            got = small(x).double().numpy()
        assert abs(got.reshape(want.shape) - want).max() < 1e-4


class ClassToken(nn.Module):
    """A class token prepended before an attention (a budget refuses the
    prepend block)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(3, 8)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        h = torch.cat([self.cls.expand(x.shape[0], -1, -1), self.embed(x)], dim=1)
        return self.head(self.attn(h, h, h, need_weights=False)[0][:, 0])


def test_budget_refusal_names_the_torch_module():
    torch.manual_seed(0)
    with pytest.raises(fibration.FibrationError) as err:
        ft.compress(ClassToken().eval(), torch.randn(3, 5, 3), budget=0.5)
    message = str(err.value)
    assert "UNSUPPORTED" in message and "prepend" in message
    assert "torch module 'cls'" in message
