"""The seed authors' compression method in its full form, as a peer: fibers
AND opfibers, with a threshold chosen per layer on training data.

The seed paper compresses with the seed's cosine criterion (1 - cosine,
average linkage) and reports its best figures with layer-specific thresholds
and both symmetries. It does not spell out how fibers and opfibers are
combined in one network, so this peer makes the choice a demanding reader
would accept, and docs/experiments.md states it:

- Every hidden layer is compressed by ONE symmetry, fibers or opfibers,
  chosen per layer, with its own threshold. A threshold is a cut of the
  layer's average-linkage tree; it is searched as the number of classes the
  cut leaves, which is the same family of partitions.
- Fibers (input trees): rows [colour sums of the incoming weights | bias],
  the colour sums taken over the classes already chosen for the previous
  layer. Base (Eq. 10 of the paper): a class's incoming row and bias are the
  mean of its members', its outgoing column is the sum of theirs.
- Opfibers (output trees): the columns of the next layer's weights (the
  output trees one level deep; the next layer's classes are still singletons
  when this is taken, and at the output every unit is its own class, so the
  flavours split nothing). Base: a class's outgoing column is the mean of
  its members' columns, its incoming row and bias are the members' rows
  summed with weights |v_i| / mean |v| (v_i: member i's outgoing column).
  For members whose columns are positive multiples of one direction this is
  exact when their pre-activations share a sign, as in the linear case of
  the paper; otherwise it approximates.
- The search is greedy on training accuracy (images the test set never
  sees): from the full network, each step tries, for every layer and both
  symmetries, a cut with 15% fewer classes (at least one fewer), and takes
  the try that loses the least training accuracy per parameter removed
  (a smaller step where one already reaches the budget), until the network
  fits the budget. One path serves every budget: the
  network kept for a budget is the first on the path within it.

Data-dependent by construction (the thresholds are read off training
accuracy), unlike the library's data-free `budget=`.
"""

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

FIBERS, OPFIBERS = "fibers", "opfibers"
SHRINK = 0.85


def _count(layers):
    return sum(w.size + b.size for w, b in layers)


def _accuracy(layers, x, y):
    h = x
    for i, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0)
    return float((h.argmax(1) == y).mean() * 100)


def _tree(vectors):
    """Average-linkage tree on 1 - cosine (the seed's criterion)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.maximum(norms, 1e-12)
    return linkage(unit, method="average", metric="cosine")


def _cut(tree, n, k):
    if k >= n:
        return np.arange(n)
    lab = fcluster(tree, t=k, criterion="maxclust") - 1
    _, lab = np.unique(lab, return_inverse=True)
    return lab


class SeedFullMethod:
    """Greedy per-layer search over (symmetry, number of classes) for a
    ReLU MLP given as [(W, b)] in float64 numpy."""

    def __init__(self, layers, x_train, y_train):
        self.layers = [(w.astype(np.float64), b.astype(np.float64)) for w, b in layers]
        self.x = np.asarray(x_train, dtype=np.float64)
        self.y = np.asarray(y_train)
        self.hidden = len(layers) - 1
        # opfiber trees read only the original next layer: one per layer
        self.op_trees = [_tree(self.layers[i + 1][0].T) for i in range(self.hidden)]
        self.fiber_trees = {}

    def build(self, choice):
        """The base network for choice = [(symmetry, classes)] per hidden layer."""
        out = []
        w_next, b_next = self.layers[0]
        for i in range(self.hidden):
            w, b = w_next, b_next
            n = w.shape[0]
            mode, k = choice[i]
            w_after, b_after = self.layers[i + 1]
            if mode == FIBERS:
                key = tuple(choice[:i])
                if key not in self.fiber_trees:
                    self.fiber_trees[key] = _tree(np.concatenate([w, b[:, None]], 1))
                lab = _cut(self.fiber_trees[key], n, k)
            else:
                lab = _cut(self.op_trees[i], n, k)
            k = lab.max() + 1
            cnt = np.bincount(lab, minlength=k).astype(np.float64)
            if mode == FIBERS:
                scale = 1.0 / cnt[lab]            # mean of rows
                column = np.ones(n)               # sum of columns
            else:
                v = np.linalg.norm(w_after, axis=0)
                mean_v = np.bincount(lab, weights=v, minlength=k) / cnt
                scale = v / np.maximum(mean_v[lab], 1e-300)  # weighted sum of rows
                column = 1.0 / cnt[lab]                      # mean of columns
            wk = np.zeros((k, w.shape[1]))
            np.add.at(wk, lab, w * scale[:, None])
            bk = np.bincount(lab, weights=b * scale, minlength=k)
            out.append((wk, bk))
            ws = np.zeros((w_after.shape[0], k))
            np.add.at(ws.T, lab, (w_after * column[None, :]).T)
            w_next, b_next = ws, b_after
        out.append((w_next, b_next))
        return out

    def _count_for(self, widths):
        """Parameters of the base with these hidden widths."""
        sizes = [self.layers[0][0].shape[1]] + list(widths) + [self.layers[-1][0].shape[0]]
        return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))

    def path(self, budgets):
        """{budget: (layers, choice)} for each budget (a fraction of the
        original parameter count), all from one greedy path."""
        total = _count(self.layers)
        sizes = [w.shape[0] for w, _ in self.layers[:-1]]
        choice = [(FIBERS, n) for n in sizes]
        current = self.build(choice)
        acc = _accuracy(current, self.x, self.y)
        found = {}
        pending = sorted(budgets, reverse=True)
        while pending:
            while pending and _count(current) <= pending[0] * total:
                found[pending.pop(0)] = (current, list(choice))
            if not pending:
                break
            best = None
            for i in range(self.hidden):
                k = choice[i][1]
                if k <= 1:
                    continue
                k_new = max(min(k - 1, int(k * SHRINK)), 1)
                # a smaller step that already fits the budget is taken instead
                for k_fit in range(k - 1, k_new, -1):
                    widths = [c for _, c in choice]
                    widths[i] = k_fit
                    if self._count_for(widths) <= pending[0] * total:
                        k_new = k_fit
                        break
                for mode in (FIBERS, OPFIBERS):
                    trial = list(choice)
                    trial[i] = (mode, k_new)
                    net = self.build(trial)
                    removed = _count(current) - _count(net)
                    if removed <= 0:
                        continue
                    a = _accuracy(net, self.x, self.y)
                    score = (acc - a) / removed
                    if best is None or score < best[0]:
                        best = (score, trial, net, a)
            if best is None:
                break  # every layer at one class: budgets below are out of reach
            _, choice, current, acc = best
        return found
