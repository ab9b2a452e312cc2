"""The two small modules a compressed model needs where torch has none.

FiberAttention: multi-head self-attention whose heads keep one q/k
dimension per distinct (q class, k class) pair, weighted by the pair's
multiplicity, with the original softmax scale; v dimensions and the output
projection are ordinary Linear layers.

WeightedLayerNorm: LayerNorm over merged units, each counted with its class
size (multiplicity), so mean and variance stay those of the original width.

InputClassMean: the mean of each class of inputs, for a base whose input
units were merged (budgets' merge_inputs).
"""

import torch
import torch.nn as nn


class FiberAttention(nn.Module):
    """score_h(t, s) = scale * sum_{p in head h} mult[p] q[t, pair_q[p]] k[s, pair_k[p]];
    core unit u of head h averages v[:, unit_v[u]] with softmax(score_h);
    the output is out_proj(core). Called like nn.MultiheadAttention for
    self-attention: forward(x, x, x) returns (output, None)."""

    def __init__(self, q_proj, k_proj, v_proj, out_proj, pair_q, pair_k, pair_multiplicity,
                 pairs_per_head, unit_head, unit_v, scale):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = q_proj, k_proj, v_proj, out_proj
        self.scale = float(scale)
        self.n_heads = len(pairs_per_head)
        self.head_start = [0]
        for n in pairs_per_head:
            self.head_start.append(self.head_start[-1] + int(n))
        unit_head = torch.as_tensor(unit_head, dtype=torch.long)
        order = torch.argsort(unit_head, stable=True)
        self.head_units = [int((unit_head == h).sum()) for h in range(self.n_heads)]
        self.register_buffer("pair_q", torch.as_tensor(pair_q, dtype=torch.long))
        self.register_buffer("pair_k", torch.as_tensor(pair_k, dtype=torch.long))
        self.register_buffer("pair_multiplicity", torch.as_tensor(
            pair_multiplicity, dtype=q_proj.weight.dtype))
        # v columns read by the core units in head order, and the inverse order
        self.register_buffer("v_order", torch.as_tensor(unit_v, dtype=torch.long)[order])
        self.register_buffer("unit_order", torch.argsort(order))

    def forward(self, query, key=None, value=None, *args, **kwargs):
        q = self.q_proj(query)[..., self.pair_q] * self.pair_multiplicity
        k = self.k_proj(query)[..., self.pair_k]
        v = self.v_proj(query)[..., self.v_order]
        parts, first = [], 0
        for h in range(self.n_heads):
            a, b = self.head_start[h], self.head_start[h + 1]
            scores = torch.matmul(q[..., a:b], k[..., a:b].transpose(-1, -2)) * self.scale
            weights = torch.softmax(scores, dim=-1)
            parts.append(torch.matmul(weights, v[..., first:first + self.head_units[h]]))
            first += self.head_units[h]
        core = torch.cat(parts, dim=-1)[..., self.unit_order]
        return self.out_proj(core), None

    def extra_repr(self):
        return "heads=%d, pairs=%s, scale=%g (1/sqrt(%g))" % (
            self.n_heads, [b - a for a, b in zip(self.head_start, self.head_start[1:])],
            self.scale, 1 / self.scale ** 2)


class WeightedLayerNorm(nn.Module):
    """LayerNorm whose unit i counts multiplicity[i] times in the mean and the
    variance; `gather` (optional) picks the input unit each one reads."""

    def __init__(self, multiplicity, weight=None, bias=None, eps=1e-5, gather=None):
        super().__init__()
        multiplicity = torch.as_tensor(multiplicity)
        dtype = weight.dtype if weight is not None else torch.get_default_dtype()
        self.eps = float(eps)
        self.counted = int(multiplicity.sum())
        self.register_buffer("share", (multiplicity / multiplicity.sum()).to(dtype))
        self.register_buffer("gather", None if gather is None
                             else torch.as_tensor(gather, dtype=torch.long))
        self.weight = nn.Parameter(weight) if weight is not None else None
        self.bias = nn.Parameter(bias) if bias is not None else None

    def forward(self, x):
        if self.gather is not None:
            x = x[..., self.gather]
        mean = (x * self.share).sum(-1, keepdim=True)
        centred = x - mean
        var = (centred * centred * self.share).sum(-1, keepdim=True)
        y = centred / torch.sqrt(var + self.eps)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y

    def extra_repr(self):
        return "%d units standing for %d, eps=%g" % (self.share.numel(), self.counted,
                                                     self.eps)


class InputClassMean(nn.Module):
    """The mean of each input class over the last dimension: input k goes to
    class classes[k]. The class index is a buffer, not a parameter (a
    budget counts it as one parameter per input)."""

    def __init__(self, classes, dtype=None):
        super().__init__()
        classes = torch.as_tensor(classes, dtype=torch.long)
        self.n_classes = int(classes.max()) + 1
        counts = torch.bincount(classes, minlength=self.n_classes)
        self.register_buffer("classes", classes)
        self.register_buffer("inverse_count",
                             (1.0 / counts.double()).to(dtype or torch.get_default_dtype()))

    def forward(self, x):
        out = x.new_zeros(x.shape[:-1] + (self.n_classes,))
        return out.index_add_(x.dim() - 1, self.classes, x) * self.inverse_count

    def extra_repr(self):
        return "%d inputs -> %d class means" % (self.classes.numel(), self.n_classes)
