"""The data-free peers of issue 26 on the frontier script's two CNNs
(cnn_budget_frontier.py): structured pruning and channel merging of whole
output channels, at a parameter budget, without data.

Every layer's output channels form a *channel set*; the channels a residual
sum adds (the stem and the first stage's second convolution; a stage's second
convolution and its shortcut) are one set and are pruned or merged jointly,
as Torch-Pruning's dependency groups do. A set's *producers* are the
convolutions (or the linear layer) computing its channels, with their batch
norms; its *consumers* are the layers reading them (a convolution, or a
linear layer reading `positions` flattened values per channel).

- `l1`: keep the channels of largest summed L1 norm of their producers'
  filters (Li et al. 2017; Torch-Pruning's MagnitudeImportance, p=1).
- `bn`: keep the channels of largest summed |gamma| of their producers'
  batch norms (network slimming; a set without batch norm, the VGG's hidden
  layer, falls back to L1).
- `merge`: Ward clustering of each channel's folded producer rows (batch-norm
  scale times filter, and the folded shift) into k classes; the class's
  representative is the mean of its members' rows weighted by their
  outgoing norms (the norm of what the consumers read from them), and each
  consumer sums its members' columns.
- `+bc`: bias compensation from the stored batch-norm statistics: every
  channel's pre-activation is taken as N(beta, |gamma|) (a residual sum adds
  the moments of its terms, a linear layer propagates them), its consumed
  value as the rectified Gaussian's mean (the expected maximum of four for a
  2x2 max pool), and each consumer's bias (or its batch norm's running mean)
  gets back the expected input it lost.

Allocation, two of them: `uniform`, one fraction kept for every set
(Torch-Pruning's default), the largest on a grid of 1/512 whose model has at
most the budget's parameters; `global`, Torch-Pruning's global pruning (scores
divided by their set's mean, lowest removed first until the budget is met).
Every peer meets the budget exactly as the library must."""

import copy
import math

import numpy as np
import torch
import torch.nn as nn

METHODS = ("l1", "l1+bc", "bn", "bn+bc", "merge", "merge+bc")


class ChannelSet:
    def __init__(self, producers, consumers, stats):
        self.producers = producers  # [(conv or linear name, batch norm name or None)]
        self.consumers = consumers  # [(name, positions per channel, max-pool window, stats key)]
        self.stats = stats          # {key: (mean, std) of the pre-activation read}


def _get(model, name):
    return model.get_submodule(name)


def _folded(model, producer, bn):
    """Rows (out x fan-in) and shifts of the producer with its batch norm folded."""
    layer = _get(model, producer)
    w = layer.weight.detach().double().reshape(layer.weight.shape[0], -1)
    b = (layer.bias.detach().double() if layer.bias is not None
         else torch.zeros(w.shape[0], dtype=torch.double))
    if bn is None:
        return w, b
    norm = _get(model, bn)
    scale = norm.weight.detach().double() / torch.sqrt(norm.running_var.double() + norm.eps)
    shift = norm.bias.detach().double() - scale * norm.running_mean.double()
    return w * scale[:, None], b * scale + shift


def _consumer_columns(model, name, positions):
    """The consumer's weight as (out, channels, rest): the columns per channel."""
    w = _get(model, name).weight.detach().double()
    if isinstance(_get(model, name), nn.Linear):
        return w.reshape(w.shape[0], -1, positions)
    return w.reshape(w.shape[0], w.shape[1], -1)


def _rectified_mean(mu, sd, window):
    """E[max(0, z_1..z_window)], z_j ~ N(mu, sd^2) independent, per channel."""
    mu = np.asarray(mu, dtype=float)
    sd = np.maximum(np.asarray(sd, dtype=float), 1e-12)
    if window == 1:
        a = mu / sd
        phi = np.exp(-a * a / 2) / math.sqrt(2 * math.pi)
        Phi = 0.5 * (1 + np.vectorize(math.erf)(a / math.sqrt(2)))
        return mu * Phi + sd * phi
    # integral over t >= 0 of P(max > t) = 1 - Phi((t - mu) / sd)^window
    t = np.linspace(0, 1, 2001)[None, :] * (np.abs(mu) + 8 * sd)[:, None]
    Phi = 0.5 * (1 + np.vectorize(math.erf)((t - mu[:, None]) / (sd[:, None] * math.sqrt(2))))
    return np.trapz(1 - Phi ** window, t, axis=1)


def _bn_moments(model, bn):
    norm = _get(model, bn)
    return norm.bias.detach().double().numpy(), np.abs(norm.weight.detach().double().numpy())


def resnet_sets(model):
    """The ResNet of cnn_budget_frontier.py: three residual sets (stem +
    layer1, layer2, layer3) and each block's inner convolution."""
    m0, s0 = _bn_moments(model, "stem.1")
    stem_out = _rectified_mean(m0, s0, 1)
    stem_var = np.maximum(m0 ** 2 + s0 ** 2 - stem_out ** 2, 0)  # upper bound of relu's variance
    stats = {}
    sets = []

    def residual(mu_a, sd_a, mu_b, sd_b):
        return mu_a + mu_b, np.sqrt(sd_a ** 2 + sd_b ** 2)

    m, s = _bn_moments(model, "layer1.bn2")
    stats["l1_out"] = residual(m, s, stem_out, np.sqrt(stem_var))
    stats["stem"] = (m0, s0)
    sets.append(ChannelSet([("stem.0", "stem.1"), ("layer1.conv2", "layer1.bn2")],
                           [("layer1.conv1", 1, 1, "stem"), ("layer2.conv1", 1, 1, "l1_out"),
                            ("layer2.shortcut.0", 1, 1, "l1_out")], stats))
    for layer in ("layer1", "layer2", "layer3"):
        sets.append(ChannelSet([(layer + ".conv1", layer + ".bn1")],
                               [(layer + ".conv2", 1, 1, "in")],
                               {"in": _bn_moments(model, layer + ".bn1")}))
    for layer, consumers in (("layer2", [("layer3.conv1", 1, 1, "out"),
                                         ("layer3.shortcut.0", 1, 1, "out")]),
                             ("layer3", [("fc", 1, 1, "out")])):
        m, s = _bn_moments(model, layer + ".bn2")
        ms, ss = _bn_moments(model, layer + ".shortcut.1")
        sets.append(ChannelSet([(layer + ".conv2", layer + ".bn2"),
                                (layer + ".shortcut.0", layer + ".shortcut.1")],
                               consumers, {"out": residual(m, s, ms, ss)}))
    return sets


def vgg_sets(model):
    """The VGG-style net: four convolutions and the hidden linear layer."""
    sets = []
    convs = [("features.0", "features.1", "features.3", 1),
             ("features.3", "features.4", "features.7", 4),
             ("features.7", "features.8", "features.10", 1),
             ("features.10", "features.11", "classifier.1", 4)]
    for conv, bn, consumer, window in convs:
        positions = 49 if consumer == "classifier.1" else 1
        sets.append(ChannelSet([(conv, bn)], [(consumer, positions, window, "in")],
                               {"in": _bn_moments(model, bn)}))
    # the hidden layer's pre-activation moments, propagated from the last
    # convolution's pooled outputs (inputs taken independent)
    mu, sd = _bn_moments(model, "features.11")
    pooled = np.repeat(_rectified_mean(mu, sd, 4), 49)
    var_in = np.repeat(mu ** 2 + sd ** 2, 49) - pooled ** 2
    lin = _get(model, "classifier.1")
    w = lin.weight.detach().double().numpy()
    hid_mu = w @ pooled + lin.bias.detach().double().numpy()
    hid_sd = np.sqrt(np.maximum((w ** 2) @ np.maximum(var_in, 0), 1e-12))
    sets.append(ChannelSet([("classifier.1", None)], [("classifier.3", 1, 1, "in")],
                           {"in": (hid_mu, hid_sd)}))
    return sets


SETS = {"resnet": resnet_sets, "vgg": vgg_sets}


def _scores(model, cs, method):
    score = 0
    for producer, bn in cs.producers:
        if method.startswith("bn") and bn is not None:
            score = score + _get(model, bn).weight.detach().double().abs()
        else:
            w = _get(model, producer).weight.detach().double()
            score = score + w.abs().reshape(w.shape[0], -1).sum(1)
    return score


def _outgoing_norms(model, cs):
    total = 0
    for name, positions, _, _ in cs.consumers:
        cols = _consumer_columns(model, name, positions)
        total = total + (cols ** 2).sum(dim=(0, 2))
    return torch.sqrt(total)


def _classes(model, cs, k, method):
    """Class index of every channel (-1: removed) and the representative
    weights (n): the mean of a class's rows is weighted by them."""
    n = _get(model, cs.producers[0][0]).weight.shape[0]
    if method.startswith("merge"):
        from scipy.cluster.hierarchy import fcluster, linkage
        rows = torch.cat([torch.cat([w, b[:, None]], 1) for w, b in
                          (_folded(model, p, bn) for p, bn in cs.producers)], 1).numpy()
        if k >= n:
            labels = np.arange(n)
        else:
            labels = fcluster(linkage(rows, "ward"), k, "maxclust") - 1
            _, labels = np.unique(labels, return_inverse=True)
        return torch.as_tensor(labels), _outgoing_norms(model, cs) + 1e-12
    keep = torch.argsort(_scores(model, cs, method), descending=True)[:k]
    labels = torch.full((n,), -1, dtype=torch.long)
    labels[torch.sort(keep).values] = torch.arange(k)
    return labels, torch.ones(n, dtype=torch.double)


def _set_producer(model, producer, bn, rows, shifts):
    layer = _get(model, producer)
    k = rows.shape[0]
    shape = (k,) + tuple(layer.weight.shape[1:])
    layer.weight = nn.Parameter(rows.reshape(shape).to(layer.weight.dtype))
    if isinstance(layer, nn.Linear):
        layer.out_features = k
    else:
        layer.out_channels = k
    if bn is None:
        layer.bias = nn.Parameter(shifts.to(layer.weight.dtype))
        return
    if layer.bias is not None:  # folded into the batch norm's shift
        layer.bias = nn.Parameter(torch.zeros(k, dtype=layer.weight.dtype))
    norm = _get(model, bn)
    dtype = norm.weight.dtype
    # the folded affine map in the batch norm: scale 1 on unit variance
    norm.num_features = k
    norm.weight = nn.Parameter(torch.ones(k, dtype=dtype))
    norm.bias = nn.Parameter(shifts.to(dtype))
    norm.running_mean = torch.zeros(k, dtype=dtype)
    norm.running_var = torch.full((k,), 1 - norm.eps, dtype=dtype)


def _set_consumer(model, name, positions, columns, shift):
    """columns: (out, k, rest); shift: what to add to each output (the
    bias, or minus the batch norm's running mean that follows)."""
    layer = _get(model, name)
    dtype = layer.weight.dtype
    if isinstance(layer, nn.Linear):
        layer.weight = nn.Parameter(columns.reshape(columns.shape[0], -1).to(dtype))
        layer.in_features = layer.weight.shape[1]
    else:
        shape = (columns.shape[0], columns.shape[1]) + tuple(layer.weight.shape[2:])
        layer.weight = nn.Parameter(columns.reshape(shape).to(dtype))
        layer.in_channels = columns.shape[1]
    if shift is None:
        return
    if layer.bias is not None:
        layer.bias = nn.Parameter(layer.bias.detach() + shift.to(dtype))
    else:
        norm = _following_bn(model, name)
        norm.running_mean = norm.running_mean - shift.to(norm.running_mean.dtype)


def _following_bn(model, name):
    parent, _, last = name.rpartition(".")
    if last.startswith("conv"):
        return _get(model, (parent + "." if parent else "") + "bn" + last[4:])
    return _get(model, (parent + "." if parent else "") + str(int(last) + 1))


def apply(model, name, fraction, method, k_of=None):
    """A copy of `model` with every set cut to round(fraction * n) channels
    (at least 1), or to k_of[i] for set i."""
    out = copy.deepcopy(model)
    sets = SETS[name](model)
    compensate = method.endswith("+bc")
    # sets in forward order, each read from the copy as the sets before left it
    for i, cs in enumerate(sets):
        n = _get(out, cs.producers[0][0]).weight.shape[0]
        k = k_of[i] if k_of else max(1, int(round(fraction * n)))
        if k >= n and not method.startswith("merge"):
            continue
        labels, weights = _classes(out, cs, k, method)
        k = int(labels.max()) + 1
        member = torch.zeros(k, n, dtype=torch.double)
        alive = labels >= 0
        member[labels[alive], torch.arange(n)[alive]] = 1.0
        mean = member * weights[None, :]
        mean = mean / mean.sum(1, keepdim=True)
        for producer, bn in cs.producers:
            w, b = _folded(out, producer, bn)
            _set_producer(out, producer, bn, mean @ w, mean @ b)
        for cname, positions, window, key in cs.consumers:
            cols = _consumer_columns(out, cname, positions)
            new_cols = torch.einsum("ocr,kc->okr", cols, member)
            shift = None
            if compensate:
                mu, sd = cs.stats[key]
                before = torch.as_tensor(_rectified_mean(mu, sd, window))
                m_new = mean.numpy() @ mu
                s_new = mean.numpy() @ sd
                after = torch.as_tensor(_rectified_mean(m_new, s_new, window))
                shift = (torch.einsum("ocr,c->o", cols, before)
                         - torch.einsum("okr,k->o", new_cols, after))
            _set_consumer(out, cname, positions, new_cols, shift)
    return out.eval()


def count(model):
    return sum(p.numel() for p in model.parameters())


def fraction_for_budget(model, name, budget):
    """The largest uniform fraction (on a grid of 1/512) whose pruned model
    has at most budget * the parameters, or None."""
    total = count(model)
    sets = SETS[name](model)
    widths = [_get(model, cs.producers[0][0]).weight.shape[0] for cs in sets]
    for step in range(512, 0, -1):
        f = step / 512
        ks = [max(1, int(round(f * n))) for n in widths]
        if _params_at(model, name, sets, ks) <= budget * total + 1e-6:
            return f
    return None


def global_widths(model, name, budget, method):
    """Torch-Pruning's global pruning: every channel's score divided by its
    set's mean score, channels removed lowest first (at least one left per
    set) until the model has at most the budget's parameters; the widths,
    or None. Merging takes the widths of the BN-scale ranking."""
    total = count(model)
    sets = SETS[name](model)
    scorer = "l1" if method.startswith("l1") else "bn"
    ranked = []
    for i, cs in enumerate(sets):
        score = _scores(model, cs, scorer)
        score = score / score.mean()
        ranked += [(float(v), i) for v in score]
    ranked.sort()
    ks = [_get(model, cs.producers[0][0]).weight.shape[0] for cs in sets]
    for _, i in ranked:
        if _params_at(model, name, sets, ks) <= budget * total + 1e-6:
            return ks
        if ks[i] > 1:
            ks[i] -= 1
    return None


def _params_at(model, name, sets, ks):
    """Parameters of the model with set i at ks[i] channels."""
    width = {}
    for cs, k in zip(sets, ks):
        for producer, bn in cs.producers:
            width[producer] = k
    total = 0
    for mod_name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            w = module.weight.shape
            out_w = width.get(mod_name, w[0])
            in_w = w[1]
            for cs, k in zip(sets, ks):
                for cname, positions, _, _ in cs.consumers:
                    if cname == mod_name:
                        in_w = k * positions
            total += out_w * in_w * int(np.prod(w[2:])) + (out_w if module.bias is not None
                                                           else 0)
    for cs, k in zip(sets, ks):
        for _, bn in cs.producers:
            if bn is not None:
                total += 2 * k
    return total
