"""Torch models with planted fibration symmetry: each hidden layer is the lift
of a narrow base layer (unit i copies base unit i % base_width; incoming
weights from a merged class are split evenly), so its exact fibers are the
planted classes and compression must find exactly the base width."""

import torch
import torch.nn as nn


def lifted_linear(linear, base_out, base_in, generator):
    """Writes a lifted weight into `linear`: out unit i copies base unit
    i % base_out; input column k belongs to class k % base_in (None: the
    inputs are not merged)."""
    out_f, in_f = linear.weight.shape
    p_out = torch.arange(out_f) % base_out
    with torch.no_grad():
        if base_in is None:
            w = torch.randn(base_out, in_f, generator=generator)[p_out]
        else:
            p_in = torch.arange(in_f) % base_in
            w = torch.randn(base_out, base_in, generator=generator)[p_out][:, p_in]
            w = w / (in_f // base_in)
        linear.weight.copy_(w)
        if linear.bias is not None:
            linear.bias.copy_(torch.randn(base_out, generator=generator)[p_out])


def planted_mlp(activation=nn.ReLU, n_in=10, bases=(3, 4), mult=(4, 3), n_out=5, seed=0,
                dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    widths = [b * m for b, m in zip(bases, mult)]
    layers, prev, prev_base = [], n_in, None
    for w, b in zip(widths, bases):
        lin = nn.Linear(prev, w)
        lifted_linear(lin, b, prev_base, g)
        layers += [lin, activation()]
        prev, prev_base = w, b
    head = nn.Linear(prev, n_out)
    lifted_linear(head, n_out, prev_base, g)
    head.weight.data  # outputs are never merged: n_out classes of one
    model = nn.Sequential(nn.Flatten(), *layers, nn.Dropout(0.1), head).to(dtype)
    return model.eval(), sum(bases)


class ResidualMLP(nn.Module):
    """x -> inp -> ReLU -> [fc1 -> ReLU -> fc2] + skip -> ReLU -> head."""

    def __init__(self, n_in=12, width=8, base=2, n_out=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.inp = nn.Linear(n_in, width)
        self.block = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))
        self.head = nn.Linear(width, n_out)
        lifted_linear(self.inp, base, None, g)
        lifted_linear(self.block[0], base, base, g)
        lifted_linear(self.block[2], base, base, g)
        lifted_linear(self.head, n_out, base, g)
        self.act = nn.SiLU()

    def forward(self, x):
        h = torch.relu(self.inp(x))
        h = h + self.block(h)
        return self.head(self.act(h))
