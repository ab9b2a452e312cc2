"""Torch models with planted fibration symmetry for every layer kind.

Every weight is the lift of a random narrow base: output unit i copies base
unit p_out[i] (its row), and the columns of an input class are split evenly
over its members. Each builder returns (model, example input, expected
widths {qualified module name or attribute path: width after compression}).
Random base weights have no symmetry of their own, so the exact fibers are
the planted classes and compression must find exactly the base widths."""

import torch
import torch.nn as nn


def classes(n, k):
    """Unit i of n in class i % k."""
    return torch.arange(n) % k


def lift(base, p_out, p_in, extra=()):
    """base: (n_out_base, n_in_base, *extra) -> (len(p_out), len(p_in), *extra);
    p_in None: the columns are not merged (base has all of them)."""
    w = base[p_out]
    if p_in is None:
        return w
    counts = torch.bincount(p_in).to(base.dtype)
    w = w[:, p_in] / counts[p_in].reshape(-1, *([1] * (base.dim() - 2)))
    return w


def _rand(g, *shape):
    return torch.rand(*shape, generator=g) * 2 - 1


def set_linear(linear, p_out, p_in, g):
    n_out_b = int(p_out.max()) + 1
    n_in_b = linear.in_features if p_in is None else int(p_in.max()) + 1
    with torch.no_grad():
        linear.weight.copy_(lift(_rand(g, n_out_b, n_in_b), p_out, p_in))
        if linear.bias is not None:
            linear.bias.copy_(_rand(g, n_out_b)[p_out])


def set_conv(conv, p_out, p_in, g):
    n_out_b = int(p_out.max()) + 1
    n_in_b = conv.weight.shape[1] if p_in is None else int(p_in.max()) + 1
    base = _rand(g, n_out_b, n_in_b, *conv.weight.shape[2:])
    with torch.no_grad():
        conv.weight.copy_(lift(base, p_out, p_in))
        if conv.bias is not None:
            conv.bias.copy_(_rand(g, n_out_b)[p_out])


def set_batch_norm(bn, p, g):
    k = int(p.max()) + 1
    with torch.no_grad():
        bn.weight.copy_((torch.rand(k, generator=g) + 0.5)[p])
        bn.bias.copy_(_rand(g, k)[p])
        bn.running_mean.copy_(_rand(g, k)[p] * 0.3)
        bn.running_var.copy_((torch.rand(k, generator=g) + 0.5)[p])


def set_layer_norm(norm, p, g):
    k = int(p.max()) + 1
    with torch.no_grad():
        norm.weight.copy_((torch.rand(k, generator=g) + 0.5)[p])
        norm.bias.copy_(_rand(g, k)[p] * 0.5)


def set_recurrent(rnn, projections, g, n_gates):
    """projections[l]: the classes of layer l's hidden units."""
    p_in = None
    for index, p in enumerate(projections):
        k = int(p.max()) + 1
        rows = torch.cat([gate * k + p for gate in range(n_gates)])
        n_in_b = rnn.input_size if p_in is None else int(p_in.max()) + 1
        with torch.no_grad():
            getattr(rnn, "weight_ih_l%d" % index).copy_(lift(_rand(g, n_gates * k, n_in_b),
                                                             rows, p_in))
            getattr(rnn, "weight_hh_l%d" % index).copy_(lift(_rand(g, n_gates * k, k), rows, p))
            for name in ("bias_ih_l%d", "bias_hh_l%d"):
                getattr(rnn, name % index).copy_(_rand(g, n_gates * k)[rows])
        p_in = p


# q, k, v classes of an 8-dim, 2-head attention (4 dims per head): q dims 0, 1
# of head 0 are copies and so are k dims 0, 1 (the pair (q0, k0) then counts
# twice: 3 pairs in head 0), q dims 0 and 2 of head 1; v dims 2, 3 and 6, 7.
# The v classes never cross heads, so the core has the v classes.
Q_CLASSES = torch.tensor([0, 0, 1, 2, 3, 4, 3, 5])
K_CLASSES = torch.tensor([0, 0, 1, 2, 3, 4, 5, 6])
V_CLASSES = torch.tensor([0, 1, 2, 2, 3, 4, 5, 5])
ATTENTION_WIDTHS = {"q_proj": 6, "k_proj": 7, "v_proj": 6}


def set_attention(mha, p_in, p_out, g):
    e = mha.embed_dim
    n_in_b = int(p_in.max()) + 1
    rows = []
    for p, offset in ((Q_CLASSES, 0), (K_CLASSES, 7), (V_CLASSES, 14)):
        rows.append(p + offset)
    rows = torch.cat(rows)
    with torch.no_grad():
        mha.in_proj_weight.copy_(lift(_rand(g, 21, n_in_b), rows, p_in))
        mha.in_proj_bias.copy_(_rand(g, 21)[rows] * 0.5)
        n_out_b = int(p_out.max()) + 1
        mha.out_proj.weight.copy_(lift(_rand(g, n_out_b, 6), p_out, V_CLASSES))
        mha.out_proj.bias.copy_(_rand(g, n_out_b)[p_out])
    assert e == 8 and mha.num_heads == 2


# -- models ------------------------------------------------------------------

class SmallCNN(nn.Module):
    def __init__(self, pool=nn.MaxPool2d):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), pool(2),
            nn.Conv2d(8, 6, 3, stride=2, padding=1), nn.Tanh(), nn.Dropout(0.2))
        self.flatten = nn.Flatten()
        self.head = nn.Linear(6 * 2 * 2, 4)

    def forward(self, x):
        return self.head(self.flatten(self.features(x)))


def planted_cnn(pool=nn.MaxPool2d, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = SmallCNN(pool)
    p1, p2 = classes(8, 3), classes(6, 2)
    set_conv(m.features[0], p1, None, g)
    set_batch_norm(m.features[1], p1, g)
    set_conv(m.features[4], p2, p1, g)
    flat = p2.repeat_interleave(4) * 4 + torch.arange(24) % 4   # (channel, position)
    set_linear(m.head, torch.arange(4), flat, g)
    x = torch.randn(6, 2, 8, 8, generator=g)
    return m.eval(), x, {"features.0": 3, "features.1": 3, "features.4": 2}


def planted_grouped_conv(seed=0):
    """Conv2d(4, 8, groups=2) whose channels 2, 3 copy 0, 1 and 6, 7 copy 4, 5."""
    g = torch.Generator().manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, groups=2), nn.ReLU(),
                      nn.Conv2d(8, 3, 3), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    p = torch.tensor([0, 1, 0, 1, 2, 3, 2, 3])
    with torch.no_grad():
        base = _rand(g, 4, 2, 3, 3)
        m[0].weight.copy_(base[p])
        m[0].bias.copy_(_rand(g, 4)[p])
    set_conv(m[2], torch.arange(3), p, g)
    x = torch.randn(5, 4, 6, 6, generator=g)
    return m.eval(), x, {"0": 4}


def planted_conv1d(seed=0):
    g = torch.Generator().manual_seed(seed)
    m = nn.Sequential(nn.Conv1d(3, 6, 5, stride=2, padding=2), nn.BatchNorm1d(6), nn.ReLU(),
                      nn.AvgPool1d(2), nn.Conv1d(6, 4, 3), nn.Flatten(), nn.Linear(4 * 2, 2))
    p1, p2 = classes(6, 2), classes(4, 3)
    set_conv(m[0], p1, None, g)
    set_batch_norm(m[1], p1, g)
    set_conv(m[4], p2, p1, g)
    set_linear(m[6], torch.arange(2), p2.repeat_interleave(2) * 2 + torch.arange(8) % 2, g)
    x = torch.randn(5, 3, 16, generator=g)
    return m.eval(), x, {"0": 2, "1": 2, "4": 3}


class BasicBlock(nn.Module):
    """The ResNet basic block, written the usual way."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + x)


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.layer1 = BasicBlock(8)
        self.pool = nn.AvgPool2d(4)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layer1(self.stem(x))), 1))


def planted_resnet(seed=0):
    g = torch.Generator().manual_seed(seed)
    m = TinyResNet()
    p = classes(8, 4)
    set_conv(m.stem[0], p, None, g)
    set_batch_norm(m.stem[1], p, g)
    set_conv(m.layer1.conv1, p, p, g)
    set_batch_norm(m.layer1.bn1, p, g)
    set_conv(m.layer1.conv2, p, p, g)
    set_batch_norm(m.layer1.bn2, p, g)
    set_linear(m.fc, torch.arange(5), p, g)
    x = torch.randn(4, 3, 4, 4, generator=g)
    return m.eval(), x, {"stem.0": 4, "layer1.conv1": 4, "layer1.conv2": 4}


class DenseConcatCNN(nn.Module):
    """A DenseNet-style block: the stem's channels and a convolution's are
    concatenated before a 1x1 transition."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.conv = nn.Conv2d(6, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.trans = nn.Conv2d(10, 5, 1)
        self.pool = nn.AvgPool2d(4)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        a = self.stem(x)
        b = torch.relu(self.bn(self.conv(a)))
        y = torch.relu(self.trans(torch.cat([a, b], 1)))
        return self.fc(torch.flatten(self.pool(y), 1))


def planted_dense_concat(seed=0):
    """Stem channels 3-5 copy 0-2, the convolution's 2-3 copy 0-1; the
    concatenation carries both sets of copies to the transition."""
    g = torch.Generator().manual_seed(seed)
    m = DenseConcatCNN()
    pa, pb = classes(6, 3), classes(4, 2)
    set_conv(m.stem[0], pa, None, g)
    set_batch_norm(m.stem[1], pa, g)
    set_conv(m.conv, pb, pa, g)
    set_batch_norm(m.bn, pb, g)
    set_conv(m.trans, torch.arange(5), torch.cat([pa, pb + 3]), g)
    set_linear(m.fc, torch.arange(3), torch.arange(5), g)
    x = torch.randn(4, 2, 4, 4, generator=g)
    return m.eval(), x, {"stem.0": 3, "conv": 2, "trans": 5}


class DenseNetLike(nn.Module):
    """Two DenseNet layers (batch norm, ReLU, convolution on the
    concatenation of everything before) and a transition."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.norm1, self.conv1 = nn.BatchNorm2d(6), nn.Conv2d(6, 4, 3, padding=1)
        self.norm2, self.conv2 = nn.BatchNorm2d(10), nn.Conv2d(10, 4, 3, padding=1)
        self.norm3, self.trans = nn.BatchNorm2d(14), nn.Conv2d(14, 5, 1)
        self.pool = nn.AvgPool2d(4)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        a = self.stem(x)
        b = self.conv1(torch.relu(self.norm1(a)))
        c = self.conv2(torch.relu(self.norm2(torch.cat([a, b], 1))))
        y = torch.relu(self.trans(torch.relu(self.norm3(torch.cat([a, b, c], 1)))))
        return self.fc(torch.flatten(self.pool(y), 1))


def planted_densenet(seed=0):
    """Stem channels 3-5 copy 0-2, conv1's 2-3 copy 0-1, conv2's 3 copies
    1; every batch norm of a concatenation treats the copies alike."""
    g = torch.Generator().manual_seed(seed)
    m = DenseNetLike()
    pa, pb, pc = classes(6, 3), classes(4, 2), torch.tensor([0, 1, 2, 1])
    set_conv(m.stem[0], pa, None, g)
    set_batch_norm(m.stem[1], pa, g)
    set_batch_norm(m.norm1, pa, g)
    set_conv(m.conv1, pb, pa, g)
    ab = torch.cat([pa, pb + 3])
    set_batch_norm(m.norm2, ab, g)
    set_conv(m.conv2, pc, ab, g)
    abc = torch.cat([ab, pc + 5])
    set_batch_norm(m.norm3, abc, g)
    set_conv(m.trans, torch.arange(5), abc, g)
    set_linear(m.fc, torch.arange(3), torch.arange(5), g)
    x = torch.randn(4, 2, 4, 4, generator=g)
    return m.eval(), x, {"stem.0": 3, "conv1": 2, "conv2": 3, "trans": 5}


class SqueezeExciteCNN(nn.Module):
    """A convolution gated by its own squeeze-excitation (a product of the
    channels and a sigmoid of their pooled summary)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.squeeze = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 1)
        self.out = nn.Conv2d(8, 6, 3, padding=1)
        self.pool = nn.AvgPool2d(4)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(self.squeeze(h)))))
        y = torch.relu(self.out(h * gate))
        return self.fc(torch.flatten(self.pool(y), 1))


def planted_squeeze_excite(seed=0):
    """Channels 4-7 copy 0-3 in the convolution, its batch norm and the
    gate's second layer; out's 3-5 copy 0-2."""
    g = torch.Generator().manual_seed(seed)
    m = SqueezeExciteCNN()
    pa, pb = classes(8, 4), classes(6, 3)
    set_conv(m.conv, pa, None, g)
    set_batch_norm(m.bn, pa, g)
    set_conv(m.fc1, torch.arange(4), pa, g)
    set_conv(m.fc2, pa, torch.arange(4), g)
    set_conv(m.out, pb, pa, g)
    set_linear(m.fc, torch.arange(3), pb, g)
    x = torch.randn(4, 2, 4, 4, generator=g)
    return m.eval(), x, {"conv": 4, "fc2": 4, "out": 3}


class MLPWithNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, 12), nn.BatchNorm1d(12), nn.ReLU(),
                                 nn.Dropout(0.5), nn.Linear(12, 8), nn.LayerNorm(8),
                                 nn.GELU(), nn.Linear(8, 3))

    def forward(self, x):
        return self.net(x)


def planted_mlp_norms(seed=0):
    g = torch.Generator().manual_seed(seed)
    m = MLPWithNorm()
    p1, p2 = classes(12, 3), classes(8, 4)
    set_linear(m.net[0], p1, None, g)
    set_batch_norm(m.net[1], p1, g)
    set_linear(m.net[4], p2, p1, g)
    set_layer_norm(m.net[5], p2, g)
    set_linear(m.net[7], torch.arange(3), p2, g)
    return m.eval(), torch.randn(16, 10, generator=g), {"net.0": 3, "net.1": 3, "net.4": 4}


class Recurrent(nn.Module):
    def __init__(self, kind, layers):
        super().__init__()
        cls = nn.LSTM if kind == "lstm" else nn.GRU
        self.rnn = cls(5, 6, num_layers=layers, batch_first=True)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


def planted_recurrent(kind="lstm", base_widths=(3, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    m = Recurrent(kind, len(base_widths))
    projections = [classes(6, k) for k in base_widths]
    set_recurrent(m.rnn, projections, g, 4 if kind == "lstm" else 3)
    set_linear(m.head, torch.arange(3), projections[-1], g)
    x = torch.randn(4, 7, 5, generator=g)
    return m.eval(), x, {"rnn": list(base_widths)}


class SelfAttention(nn.Module):
    """A wrapper calling mha(x, x, x)[0] on an embedded sequence."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(3, 8)
        self.mha = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        h = torch.tanh(self.embed(x))
        return self.head(self.mha(h, h, h)[0][:, -1])


def planted_attention(seed=0):
    g = torch.Generator().manual_seed(seed)
    m = SelfAttention()
    p_e, p_o = classes(8, 4), classes(8, 3)
    set_linear(m.embed, p_e, None, g)
    set_attention(m.mha, p_e, p_o, g)
    set_linear(m.head, torch.arange(2), p_o, g)
    x = torch.randn(3, 5, 3, generator=g)
    widths = {"embed": 4, "mha.out_proj": 3}
    widths.update({"mha." + k: v for k, v in ATTENTION_WIDTHS.items()})
    return m.eval(), x, widths


class HeadCopies(nn.Module):
    """A 4-head attention over an embedded sequence."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(3, 8)
        self.mha = nn.MultiheadAttention(8, 4, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        h = torch.tanh(self.embed(x))
        return self.head(self.mha(h, h, h, need_weights=False)[0][:, -1])


def planted_head_copies(seed=0):
    """Heads of 2 dimensions: head 2 copies head 0 (its q, k and v rows,
    dimension by dimension; its output columns are its own), and the two
    dimensions of head 3 are copies of each other (q, k and v): the exact
    base keeps 3 heads, head 3 with one dimension."""
    g = torch.Generator().manual_seed(seed)
    m = HeadCopies()
    set_linear(m.embed, torch.arange(8), None, g)
    dims = torch.tensor([0, 1, 2, 3, 0, 1, 4, 4])
    rows = torch.cat([dims + 5 * part for part in range(3)])
    with torch.no_grad():
        m.mha.in_proj_weight.copy_(_rand(g, 15, 8)[rows])
        m.mha.in_proj_bias.copy_(_rand(g, 15)[rows] * 0.5)
        m.mha.out_proj.weight.copy_(_rand(g, 8, 8))
        m.mha.out_proj.bias.copy_(_rand(g, 8))
    set_linear(m.head, torch.arange(2), None, g)
    x = torch.randn(3, 5, 3, generator=g)
    return m.eval(), x, {"mha.q_proj": 5, "mha.v_proj": 5, "mha.out_proj": 8}


class Encoder(nn.Module):
    def __init__(self, n_layers=None, activation="relu", norm_first=False):
        super().__init__()
        self.embed = nn.Linear(3, 8)
        layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, dropout=0.1,
                                           activation=activation, batch_first=True,
                                           norm_first=norm_first)
        if n_layers is None:
            self.encoder = layer
        else:
            self.encoder = nn.TransformerEncoder(layer, n_layers, norm=nn.LayerNorm(8),
                                                 enable_nested_tensor=False)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x))[:, -1])


def _set_encoder_layer(layer, p_e, g):
    p_f = classes(12, 5)
    set_attention(layer.self_attn, p_e, p_e, g)
    set_layer_norm(layer.norm1, p_e, g)
    set_linear(layer.linear1, p_f, p_e, g)
    set_linear(layer.linear2, p_e, p_f, g)
    set_layer_norm(layer.norm2, p_e, g)


def planted_encoder(n_layers=None, activation="relu", norm_first=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = Encoder(n_layers, activation, norm_first)
    p_e = classes(8, 4)
    set_linear(m.embed, p_e, None, g)
    layers = [m.encoder] if n_layers is None else list(m.encoder.layers)
    prefixes = ["encoder"] if n_layers is None else ["encoder.layers.%d" % i
                                                     for i in range(n_layers)]
    widths = {"embed": 4}
    for layer, prefix in zip(layers, prefixes):
        _set_encoder_layer(layer, p_e, g)
        widths.update({prefix + ".linear1": 5, prefix + ".linear2": 4,
                       prefix + ".self_attn.out_proj": 4})
        widths.update({prefix + ".self_attn." + k: v for k, v in ATTENTION_WIDTHS.items()})
    if n_layers is not None:
        set_layer_norm(m.encoder.norm, p_e, g)
    set_linear(m.head, torch.arange(2), p_e, g)
    x = torch.randn(3, 5, 3, generator=g)
    return m.eval(), x, widths
