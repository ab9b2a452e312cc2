"""Class tokens, position embeddings and selected steps: the library's
blocks (fib_graph_add_prepend, _position_shift, _select_step) against
PyTorch's cat / add / x[:, k] on the same values, and fibration.torch's
tracing and rebuild of them (the constants broadcast over the batch, kept
under the model's own names and shapes, with fewer units), and the
refusals, by node, of what they do not cover."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import fibration  # noqa: E402
import fibration.torch as ft  # noqa: E402


def test_blocks_compute_what_pytorch_computes():
    gen = torch.Generator().manual_seed(0)
    c, h, w, k = 4, 2, 3, 2
    x = torch.randn(3, c, h, w, generator=gen, dtype=torch.float64)
    token = torch.randn(1, k, c, generator=gen, dtype=torch.float64)
    pos = torch.randn(1, k + h * w, c, generator=gen, dtype=torch.float64)
    seq = torch.cat([token.expand(3, -1, -1), x.flatten(2).transpose(1, 2)], dim=1) + pos
    g = fibration.Graph()
    image = g.add_input_positions(c, h, w)
    pre = g.add_prepend(image, token[0])
    shifted = g.add_position_shift(pre, pos[0])
    first = g.add_select_step(shifted, 0)
    second = g.add_select_step(shifted, 1)
    last = g.add_select_step(shifted, -1)
    assert g.positions(pre) == (k + h * w, 1)
    inputs = x.permute(0, 2, 3, 1).reshape(3, -1).numpy()  # channels last
    out = g.forward(inputs)
    expected = torch.cat([seq[:, 0], seq[:, 1], seq[:, -1]], dim=1).numpy()
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)
    assert g.num_parameters == k * c + (k + h * w) * c
    del first, second, last


class TinyViT(nn.Module):
    """A Vision Transformer's data flow, written as torchvision writes it."""

    def __init__(self, c=8, classes=3, patch=2, size=4):
        super().__init__()
        self.conv_proj = nn.Conv2d(3, c, patch, stride=patch)
        self.class_token = nn.Parameter(torch.randn(1, 1, c))
        self.pos_embedding = nn.Parameter(torch.randn(1, (size // patch) ** 2 + 1, c))
        self.mlp = nn.Linear(c, 2 * c)
        self.out = nn.Linear(2 * c, c)
        self.head = nn.Linear(c, classes)

    def forward(self, x):
        n, c = x.shape[0], self.conv_proj.out_channels
        x = self.conv_proj(x).reshape(n, c, -1).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        x = x + self.pos_embedding
        x = x + self.out(torch.relu(self.mlp(x)))
        return self.head(x[:, 0])


def _plant(model, i=1, j=5):
    """Channel j of the residual stream copies channel i; readers re-split."""
    with torch.no_grad():
        for m in (model.conv_proj, model.out):
            m.weight[j] = m.weight[i]
            m.bias[j] = m.bias[i]
        for constant in (model.class_token, model.pos_embedding):
            constant[..., j] = constant[..., i]
        for m in (model.mlp, model.head):
            total = m.weight[:, i] + m.weight[:, j]
            m.weight[:, i], m.weight[:, j] = 0.2 * total, 0.8 * total


def _compare(model, small, shape=(2, 3, 4, 4)):
    fresh = torch.randn(*shape, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        reference, out = model(fresh), small(fresh)
    assert out.shape == reference.shape
    assert float((reference - out).abs().max()) <= 1e-5 * float(reference.abs().max())


def test_planted_channel_of_a_tiny_vit_is_merged_with_its_constants():
    torch.manual_seed(1)
    model = TinyViT().eval()
    _plant(model)
    small, _ = ft.compress(model, torch.randn(2, 3, 4, 4))
    _compare(model, small)
    state = small.state_dict()
    # the constants keep their names and shapes, with one unit less
    assert tuple(state["class_token"].shape) == (1, 1, 7)
    assert tuple(state["pos_embedding"].shape) == (1, 5, 7)
    # conv row + bias, token, 5 shifts, mlp column, out row + bias, head column
    removed = 12 + 1 + 1 + 5 + 16 + 16 + 1 + 3
    assert ft.count_parameters(model) - ft.count_parameters(small) == removed


def test_unequal_class_tokens_keep_the_copies_apart():
    torch.manual_seed(2)
    model = TinyViT().eval()
    _plant(model)
    with torch.no_grad():
        model.class_token[0, 0, 5] += 0.5
    report = ft.analyze(model, torch.randn(2, 3, 4, 4))
    rows = {r["layer"]: r for r in report.rows}
    assert rows["conv_proj"]["fibers"] == 7       # the convolution's copies merge
    assert rows["class_token"]["fibers"] == 8     # not once their tokens differ
    small, _ = ft.compress(model, torch.randn(2, 3, 4, 4))
    _compare(model, small)


class Broadcasts(nn.Module):
    """Constants broadcast over positions or units, added on either side,
    and a step other than the first or last."""

    def __init__(self, c=6):
        super().__init__()
        self.fc = nn.Linear(c, c)
        self.per_unit = nn.Parameter(torch.randn(c))          # (C,): every position
        self.per_position = nn.Parameter(torch.randn(4, 1))   # (T, 1): every unit
        self.head = nn.Linear(c, 2)

    def forward(self, x):
        x = self.fc(x)
        x = self.per_unit + x
        x = x + self.per_position
        return self.head(x[:, 2])


def test_broadcast_constants_keep_their_shapes():
    torch.manual_seed(3)
    model = Broadcasts().eval()
    with torch.no_grad():
        model.fc.weight[4] = model.fc.weight[0]
        model.fc.bias[4] = model.fc.bias[0]
        model.per_unit[4] = model.per_unit[0]
        total = model.head.weight[:, 0] + model.head.weight[:, 4]
        model.head.weight[:, 0], model.head.weight[:, 4] = 0.3 * total, 0.7 * total
    x = torch.randn(2, 4, 6)
    small, _ = ft.compress(model, x)
    _compare(model, small, (3, 4, 6))
    state = small.state_dict()
    assert tuple(state["per_unit"].shape) == (5,)
    assert tuple(state["per_position"].shape) == (4, 1)
    # fc row + bias, the constant's unit, the head's column
    assert ft.count_parameters(model) - ft.count_parameters(small) == 6 + 1 + 1 + 2


class Appended(nn.Module):
    def __init__(self, c=4):
        super().__init__()
        self.fc = nn.Linear(c, c)
        self.token = nn.Parameter(torch.randn(1, 1, c))

    def forward(self, x):
        x = torch.cat([self.fc(x), self.token.expand(x.shape[0], -1, -1)], dim=1)
        return x[:, -1]


class PerSample(nn.Module):
    def __init__(self, c=4):
        super().__init__()
        self.fc = nn.Linear(c, c)
        self.table = nn.Parameter(torch.randn(2, 3, c))

    def forward(self, x):
        return (self.fc(x) + self.table)[:, 0]


class ExpandedLayer(nn.Module):
    def __init__(self, c=4):
        super().__init__()
        self.fc = nn.Linear(c, c)

    def forward(self, x):
        return self.fc(x)[:, :1].expand(-1, 3, -1)[:, 0]


@pytest.mark.parametrize("model, x, where", [
    (Appended(), torch.randn(2, 3, 4), "node 'cat'"),
    (PerSample(), torch.randn(2, 3, 4), "node 'add'"),
    (ExpandedLayer(), torch.randn(2, 3, 4), "node 'expand'"),
], ids=["token-after-the-sequence", "constant-per-sample", "expanded-layer"])
def test_what_is_not_covered_is_refused_by_node(model, x, where):
    with pytest.raises(ft.UnsupportedModelError, match=where):
        ft.compress(model.eval(), x)


def test_saved_vit_and_its_base_load_back_with_equal_outputs(tmp_path):
    torch.manual_seed(4)
    model = TinyViT().eval()
    _plant(model)
    x = torch.randn(2, 3, 4, 4)
    ft.save(model, tmp_path / "vit.safetensors", x)
    loaded = ft.load(tmp_path / "vit.safetensors")
    _compare(model, loaded)
    assert tuple(loaded.state_dict()["class_token"].shape) == (1, 1, 8)
    small, _ = ft.compress(model, x)
    ft.save(small, tmp_path / "base.safetensors")
    base = ft.load(tmp_path / "base.safetensors")
    _compare(model, base)
    assert ft.count_parameters(base) == ft.count_parameters(small)


class ImageConstants(nn.Module):
    """Constants added to an image: a per-channel (1, C, 1, 1) one on the
    left, a (C, H, W) one on the right."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bias = nn.Parameter(torch.randn(1, 6, 1, 1))
        self.pos = nn.Parameter(torch.randn(6, 4, 4))
        self.fc = nn.Linear(96, 2)

    def forward(self, x):
        y = self.bias + self.conv(x)
        y = y + self.pos
        return self.fc(torch.flatten(torch.relu(y), 1))


def test_constants_added_to_an_image_follow_its_channels():
    torch.manual_seed(5)
    model = ImageConstants().eval()
    with torch.no_grad():
        model.conv.weight[4] = model.conv.weight[1]
        model.conv.bias[4] = model.conv.bias[1]
        model.bias[0, 4] = model.bias[0, 1]
        model.pos[4] = model.pos[1]
    small, _ = ft.compress(model, torch.randn(2, 3, 4, 4))
    _compare(model, small)
    state = small.state_dict()
    assert tuple(state["bias"].shape) == (1, 5, 1, 1)
    assert tuple(state["pos"].shape) == (5, 4, 4)
    # a kernel and its bias, the two constants' channel, 16 columns of fc per output
    assert ft.count_parameters(model) - ft.count_parameters(small) == 27 + 1 + 1 + 16 + 2 * 16


class Patches(nn.Module):
    """An image's patches read as a sequence, without a class token."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 2, stride=2)
        self.norm = nn.LayerNorm(6)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        x = self.conv(x).flatten(2).transpose(1, 2)
        return self.fc(self.norm(x)[:, 1])


def test_patches_of_an_image_become_a_sequence_without_a_class_token(tmp_path):
    torch.manual_seed(6)
    model = Patches().eval()
    with torch.no_grad():
        for m in (model.conv, model.norm):
            m.weight[4] = m.weight[1]
            m.bias[4] = m.bias[1]
        total = model.fc.weight[:, 1] + model.fc.weight[:, 4]
        model.fc.weight[:, 1], model.fc.weight[:, 4] = 0.3 * total, 0.7 * total
    x = torch.randn(2, 3, 4, 4)
    small, _ = ft.compress(model, x)
    _compare(model, small)
    # a kernel and its bias, the norm's weight and bias, the head's column
    assert ft.count_parameters(model) - ft.count_parameters(small) == 12 + 1 + 2 + 2
    ft.save(model, tmp_path / "patches.safetensors", x)
    _compare(model, ft.load(tmp_path / "patches.safetensors"))
