"""Experiment 3 (seed Fig. 3f): continual learning on Fashion-MNIST with plain
SGD, Continual Backpropagation and two kinds of symmetry breaking.

Benchmarks (reduced, see docs/experiments.md):
  pairs     a sequence of binary tasks: each task is a random pair of
            Fashion-MNIST classes (random label order), 1,200 training images
            (600 per class), several epochs; the 2-unit head is re-initialised
            at every task (as in continual ImageNet); the score of a task is its
            test accuracy (2,000 test images of the pair) at the end of it.
  permuted  online permuted Fashion-MNIST: every task a new pixel permutation,
            each image seen once; the score is the online accuracy (mean over
            the task's minibatches, measured before each update).

Network: 784-H-H-out ReLU MLP, plain SGD (no momentum); the same seed gives
every method the same initialisation, the same task sequence and the same
minibatches.

Methods:
  sgd    plain SGD.
  cbp    Continual Backpropagation (Dohare et al., Nature 2024): per hidden
         unit a running mean of its activity f and a running mean-corrected
         contribution utility |h - f| * sum|w_out| (decay 0.99, both
         bias-corrected for their age) and an age; every step,
         replacement_rate (1e-4) x the number of mature units (age >
         maturity, 100) is accumulated, and when it reaches 1 the mature unit
         of lowest utility is re-initialised (input weights and bias from the
         initial distribution, output weights zero, age, mean and utility
         zero), its mean contribution w_out * f moved into the next layer's
         bias so that the outputs stay the same on average.
  fib    fibration symmetry breaking at every task boundary, with the library:
         covers (fibers meet flavoured opfibers) with FIB_TOL_ABS and a
         per-layer eps = 3 x the std of the layer's weights ("fib") or 6 x
         ("fib6"; exact covers, eps = 0, never form here), then
         fib_break_symmetry: exact lifting of the cover base, every merged unit
         replaced by a new one with random input weights and zero output weights.
  sync   symmetry breaking on activity-synchrony classes at every task
         boundary, measured on 512 training images of the task just finished
         (never on the next task's data, which is scored later): units whose
         activities on that batch are equal (max difference <= 1e-3 x the
         layer's largest activity; dead units, all zero, are one class). One
         unit per class is kept, the output weights of the class are summed onto
         it (so the network computes the same function on the batch), the other
         members get new random input weights and zero output weights. The
         threshold 1e-3 was set by hand when the method was written (no search
         on record, not chosen on a held-out seed); it groups the dead units
         (exactly zero) and units that agree to within rounding-size noise.
  fibcos   "fib" with the seed authors' criterion for the covers:
         FIB_TOL_COSINE at eps 0.5 (libraries that have it; skipped otherwise)
  fibsync  both at every task boundary: "fib" (eps 3 x std), then "sync".

--quick keeps every mechanism working on a tiny run: CBP with a replacement
rate of 1e-2 and maturity 20 (so that units are replaced within the few
hundred steps), the rest as above.

--summary writes, per benchmark, a CSV of the last-20%-of-tasks score of each
method over the seeds with a 95% t-interval, and the paired differences to SGD
and to CBP with theirs (continual*_summary.csv).

--protocol N runs the comparison of issue 25 on N permuted tasks (module
continual_protocol.py): SGD, CBP, the seed's cover breaking (fibcos) and
activity-synchrony breaking (sync); each method's knob chosen on a separate
seed (--select-seed, 100) from a small grid and frozen, then --seeds paired
seeds; the permuted benchmark's 3,000 images per task and H = 256 unless
--per-task / --hidden say otherwise; --jobs processes at once, one row per
task written as it ends, resumable, --collect to merge the complete runs.

    /usr/bin/python3 docs/examples/exp_continual.py [--quick] [--bench pairs|permuted|all]
    /usr/bin/python3 docs/examples/exp_continual.py --protocol 200 [--hidden 128 --per-task 2000]
"""

import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "bindings", "python"))

import fashion_data as fd  # noqa: E402
from fibration.torch import trace  # noqa: E402

METHODS = ("sgd", "cbp", "fib", "fib6", "fibcos", "sync", "fibsync")
FIB_EPS = {"fib": 3.0, "fib6": 6.0, "fibcos": "cos"}
SYNC_TOL = 1e-3


def make_net(hidden, out, seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, out))


def linears(net):
    return [m for m in net if isinstance(m, nn.Linear)]


def hidden_activations(net, x):
    """Activations after each hidden ReLU."""
    acts = []
    h = x
    for m in net:
        h = m(h)
        if isinstance(m, nn.ReLU):
            acts.append(h)
    return acts, h


def reinit_rows(layer, rows, generator):
    """Input weights and bias of `rows` drawn like nn.Linear's default init."""
    bound = 1.0 / np.sqrt(layer.in_features)
    n = len(rows)
    layer.weight[rows] = (torch.rand(n, layer.in_features, generator=generator) * 2 - 1) * bound
    layer.bias[rows] = (torch.rand(n, generator=generator) * 2 - 1) * bound


# -- Continual Backpropagation ---------------------------------------------

class CBP:
    def __init__(self, net, rate=1e-4, maturity=100, decay=0.99, seed=0):
        self.lin = linears(net)
        self.rate, self.maturity, self.decay = rate, maturity, decay
        self.util = [torch.zeros(l.out_features) for l in self.lin[:-1]]
        self.mean = [torch.zeros(l.out_features) for l in self.lin[:-1]]
        self.born = [torch.zeros(l.out_features, dtype=torch.long) for l in self.lin[:-1]]
        self.recent = [[] for _ in self.util]     # steps of replacements still immature
        self.pending = [0.0] * len(self.util)
        self.steps = 0
        self.replaced = 0
        self.generator = torch.Generator().manual_seed(seed + 12345)

    def _corrected(self, values, i, units):
        """A running mean divided by 1 - decay^age (its bias at young ages)."""
        age = (self.steps - self.born[i][units]).clamp(min=1).double()
        return values[units].double() / (1 - self.decay ** age)

    @torch.no_grad()
    def after_step(self, acts):
        self.steps += 1
        for i, h in enumerate(acts):
            h = h.detach()
            every = torch.arange(len(self.mean[i]))
            self.mean[i].mul_(self.decay).add_(h.mean(0), alpha=1 - self.decay)
            f = self._corrected(self.mean[i], i, every).float()
            contribution = (h - f).abs().mean(0) * self.lin[i + 1].weight.abs().sum(0)
            self.util[i].mul_(self.decay).add_(contribution, alpha=1 - self.decay)
            # mature units: age = steps - born > maturity (ages kept implicitly)
            if self.steps <= self.maturity:
                continue
            self.recent[i] = [s for s in self.recent[i] if self.steps - s <= self.maturity]
            n_mature = len(self.util[i]) - sum(1 for _ in self.recent[i])
            self.pending[i] += self.rate * n_mature
            k = int(self.pending[i])
            if k == 0:
                continue
            self.pending[i] -= k
            mature = torch.nonzero(self.steps - self.born[i] > self.maturity).flatten()
            if len(mature) == 0:
                continue
            corrected = self._corrected(self.util[i], i, mature)
            worst = mature[torch.argsort(corrected)[:k]]
            # The next layer keeps the removed units' mean contribution.
            nxt = self.lin[i + 1]
            if nxt.bias is not None:
                nxt.bias += nxt.weight[:, worst] @ f[worst]
            reinit_rows(self.lin[i], worst, self.generator)
            nxt.weight[:, worst] = 0
            self.util[i][worst] = 0
            self.mean[i][worst] = 0
            self.born[i][worst] = self.steps
            self.recent[i].extend([self.steps] * len(worst))
            self.replaced += len(worst)


def make_cbp(net, seed, cfg):
    return CBP(net, rate=cfg.get("cbp_rate", 1e-4), maturity=cfg.get("cbp_maturity", 100),
               seed=seed)


# -- symmetry breaking ------------------------------------------------------

COSINE_EPS = 0.5


def cosine_available():
    import fibration
    code = getattr(fibration._ffi, "FIB_TOL_COSINE", None)
    if code is None:
        return False
    g = fibration.Graph()
    g.add_dense(g.add_input(2), np.eye(2), np.zeros(2))
    try:
        g.color("fibers", code, 0.1)
        return True
    except fibration.FibrationError:
        return False


@torch.no_grad()
def fib_break(net, seed, factor, cos_eps=COSINE_EPS):
    """Covers with a per-layer tolerance (factor x std, or FIB_TOL_COSINE at
    cos_eps when factor is "cos"), then fib_break_symmetry (library).
    Returns the number of units renewed."""
    import fibration
    x = torch.zeros(2, 784)
    g = trace(net, x)
    dense = [l for l in g.layers if l.kind == "dense"]
    lin = linears(net)
    if factor == "cos":
        coloring = g.graph.color("covers", fibration._ffi.FIB_TOL_COSINE, cos_eps)
    else:
        for l, m in zip(dense, lin):
            g.graph.set_eps(l.group, factor * float(m.weight.std()))
        coloring = g.graph.color("covers", "abs", 1.0)
    renewed = sum(l.width - coloring.num_classes(l.group) for l in dense[:-1])
    if renewed == 0:
        return 0
    result = g.graph.break_symmetry(coloring, seed)
    for l, m in zip(dense, lin):
        w, b = result.read_dense(l.group)
        m.weight.copy_(torch.from_numpy(w))
        m.bias.copy_(torch.from_numpy(b))
    return renewed


def sync_classes(h, tol=SYNC_TOL):
    """Classes of units with equal activity on the batch (h: batch x units)."""
    h = h.double()
    scale = float(h.abs().max()) or 1.0
    n = h.shape[1]
    label = -np.ones(n, dtype=np.int64)
    dead = (h.abs().max(0).values <= 0).numpy()
    nxt = 0
    if dead.any():
        label[dead] = nxt
        nxt += 1
    alive = np.flatnonzero(~dead)
    if len(alive):
        a = h[:, alive].T                                  # units x batch
        dist = torch.cdist(a, a, p=float("inf")).numpy() <= tol * scale
        for i in range(len(alive)):
            if label[alive[i]] >= 0:
                continue
            members = alive[dist[i] & (label[alive] < 0)]
            label[members] = nxt
            nxt += 1
    return label


@torch.no_grad()
def sync_break(net, x, generator, tol=SYNC_TOL):
    acts, _ = hidden_activations(net, x)
    lin = linears(net)
    renewed = 0
    for i, h in enumerate(acts):
        label = sync_classes(h, tol)
        rows = []
        for c in np.unique(label):
            members = np.flatnonzero(label == c)
            if len(members) < 2:
                continue
            keep, rest = members[0], members[1:]
            lin[i + 1].weight[:, keep] = lin[i + 1].weight[:, members].sum(1)
            lin[i + 1].weight[:, rest] = 0
            rows.extend(rest.tolist())
        if rows:
            reinit_rows(lin[i], torch.tensor(rows), generator)
            renewed += len(rows)
        acts, _ = hidden_activations(net, x)               # the next layer sees the new units
    return renewed


def at_boundary(method, net, x, seed, generator, cfg):
    """Symmetry breaking at a task boundary; the number of units renewed.
    cfg may override the knobs: cos_eps (fibcos), sync_tol (sync, fibsync)."""
    renewed = 0
    if method in FIB_EPS or method == "fibsync":
        renewed += fib_break(net, seed, FIB_EPS.get(method, FIB_EPS["fib"]),
                             cfg.get("cos_eps", COSINE_EPS))
    if method in ("sync", "fibsync"):
        renewed += sync_break(net, x, generator, cfg.get("sync_tol", SYNC_TOL))
    return renewed


def dead_units(net, x):
    with torch.no_grad():
        acts, _ = hidden_activations(net, x)
    return int(sum(int((h.max(0).values <= 0).sum()) for h in acts))


# -- the benchmarks ---------------------------------------------------------

def run_pairs(method, seed, data, cfg):
    xtr, ytr, xte, yte = data
    rng = np.random.default_rng(seed)
    net = make_net(cfg["hidden"], 2, seed)
    gen = torch.Generator().manual_seed(seed)
    cbp = make_cbp(net, seed, cfg) if method == "cbp" else None
    rows = []
    seen = None                                            # images of the task just finished
    for task in range(cfg["tasks"]):
        a, b = rng.choice(10, 2, replace=False)
        tr = np.concatenate([rng.choice(np.flatnonzero(ytr == a), cfg["per_class"], replace=False),
                             rng.choice(np.flatnonzero(ytr == b), cfg["per_class"], replace=False)])
        te = np.flatnonzero((yte == a) | (yte == b))
        x, y = xtr[tr], (ytr[tr] == b).long()
        renewed = 0
        with torch.no_grad():                              # new head for the new task
            reinit_rows(net[-1], torch.arange(2), gen)
        if task > 0:
            renewed = at_boundary(method, net, seen, seed * 100000 + task, gen, cfg)
        replaced = cbp.replaced if cbp else 0
        opt = torch.optim.SGD(net.parameters(), lr=cfg["lr"])
        for _ in range(cfg["epochs"]):
            order = torch.randperm(len(x), generator=gen)
            for s in range(0, len(x), cfg["batch"]):
                idx = order[s:s + cfg["batch"]]
                acts, out = hidden_activations(net, x[idx])
                opt.zero_grad()
                F.cross_entropy(out, y[idx]).backward()
                opt.step()
                if cbp:
                    cbp.after_step(acts)
        with torch.no_grad():
            acc = float((net(xte[te]).argmax(1) == (yte[te] == b).long()).float().mean())
        renewed += cbp.replaced - replaced if cbp else 0
        seen = x[:512]
        rows.append((task, acc, dead_units(net, seen), renewed))
    return rows


def run_permuted(method, seed, data, cfg, on_task=None):
    """One run; on_task(row) is called as each task ends (rows are written as
    they come, so an interrupted run leaves its finished tasks)."""
    xtr, ytr = data[0], data[1]
    rng = np.random.default_rng(seed)
    net = make_net(cfg["hidden"], 10, seed)
    gen = torch.Generator().manual_seed(seed)
    cbp = make_cbp(net, seed, cfg) if method == "cbp" else None
    opt = torch.optim.SGD(net.parameters(), lr=cfg["lr"])
    rows = []
    seen = None                                            # images of the task just finished
    for task in range(cfg["tasks"]):
        perm = torch.from_numpy(rng.permutation(784))
        idx = torch.from_numpy(rng.choice(len(xtr), cfg["per_task"], replace=False))
        x, y = xtr[idx][:, perm], ytr[idx]
        renewed = 0
        if task > 0:
            renewed = at_boundary(method, net, seen, seed * 100000 + task, gen, cfg)
        replaced = cbp.replaced if cbp else 0
        right = 0
        for s in range(0, len(x), cfg["batch"]):
            xb, yb = x[s:s + cfg["batch"]], y[s:s + cfg["batch"]]
            acts, out = hidden_activations(net, xb)
            right += int((out.argmax(1) == yb).sum())
            opt.zero_grad()
            F.cross_entropy(out, yb).backward()
            opt.step()
            if cbp:
                cbp.after_step(acts)
        renewed += cbp.replaced - replaced if cbp else 0
        seen = x[:512]
        rows.append((task, right / len(x), dead_units(net, seen), renewed))
        if on_task:
            on_task(rows[-1])
    return rows


CONFIGS = {
    "pairs": dict(hidden=100, tasks=100, per_class=600, epochs=3, batch=32, lr=0.05),
    "permuted": dict(hidden=256, tasks=100, per_task=3000, batch=16, lr=0.1),
}
QUICK = {
    "pairs": dict(hidden=32, tasks=6, per_class=100, epochs=2, batch=32, lr=0.05,
                  cbp_rate=1e-2, cbp_maturity=20),
    "permuted": dict(hidden=32, tasks=4, per_task=400, batch=16, lr=0.1,
                     cbp_rate=1e-2, cbp_maturity=20),
}


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    benches = list(dict.fromkeys(r[0] for r in rows))
    fig, axes = plt.subplots(3, len(benches), figsize=(6.5 * len(benches), 10), squeeze=False)
    for j, bench in enumerate(benches):
        seeds = sorted(set(r[2] for r in rows if r[0] == bench))
        tasks = sorted(set(r[3] for r in rows if r[0] == bench))
        w = max(1, len(tasks) // 10)                      # smoothing window (tasks)
        kern = np.ones(w) / w
        x = tasks[w - 1:]

        def table(method, col):
            t = {(r[2], r[3]): r[col] for r in rows if r[0] == bench and r[1] == method}
            if not t:
                return None
            return np.array([[t[(s, k)] for s in seeds] for k in tasks])   # tasks x seeds
        sgd = table("sgd", 4)
        for k, method in enumerate(METHODS):
            acc = table(method, 4)
            if acc is None:
                continue
            smooth = np.array([np.convolve(acc[:, i], kern, "valid") for i in range(len(seeds))])
            axes[0][j].plot(x, smooth.mean(0), color="C%d" % k, label=method)
            if sgd is not None and method != "sgd":
                diff = np.array([np.convolve(acc[:, i] - sgd[:, i], kern, "valid")
                                 for i in range(len(seeds))])
                axes[1][j].plot(x, diff.mean(0), color="C%d" % k, label=method)
                axes[1][j].fill_between(x, diff.min(0), diff.max(0), color="C%d" % k, alpha=0.12)
            axes[2][j].plot(tasks, table(method, 5).mean(1), color="C%d" % k, label=method)
        axes[1][j].axhline(0, color="C0", lw=0.8)
        axes[0][j].set_title("%s: %s per task, mean of %d seeds, %d-task window"
                             % (bench, "test accuracy" if bench == "pairs" else
                                "online accuracy", len(seeds), w), fontsize=9)
        axes[0][j].set_ylabel("accuracy")
        axes[1][j].set_ylabel("accuracy - SGD's (same seed)")
        axes[1][j].set_title("paired difference to SGD: mean, min-max over seeds", fontsize=9)
        axes[2][j].set_ylabel("dead hidden units (on 512 task images)")
        axes[2][j].set_xlabel("task")
        axes[0][j].legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=85)
    plt.close(fig)


def read_rows(path):
    rows = []
    with open(path) as fh:
        next(fh)
        for line in fh:
            b, m, s, t, a, d, u = line.strip().split(",")
            rows.append((b, m, int(s), int(t), float(a), int(d), int(u)))
    return rows


def summarise(rows, log):
    out = []
    for bench in dict.fromkeys(r[0] for r in rows):
        seeds = sorted(set(r[2] for r in rows if r[0] == bench))
        n = max(r[3] for r in rows if r[0] == bench) + 1
        tail = max(1, n // 5)
        base = {}
        for method in METHODS:
            per_seed = []
            for s in seeds:
                sub = [r for r in rows if r[0] == bench and r[1] == method and r[2] == s]
                if not sub:
                    continue
                first = np.mean([r[4] for r in sub if r[3] < tail])
                last = np.mean([r[4] for r in sub if r[3] >= n - tail])
                per_seed.append((first, last, sub[-1][5], sum(r[6] for r in sub)))
            if not per_seed:
                continue
            p = np.array(per_seed)
            if method == "sgd":
                base = p[:, 1]
            diff = p[:, 1] - base if len(base) == len(p) else p[:, 1] * np.nan
            line = ("%-8s %-4s first %d tasks %.4f  last %d tasks %.4f (seeds %s)  "
                    "last - sgd %+.4f (per seed %s)  dead at end %.1f  units renewed %.0f"
                    % (bench, method, tail, p[:, 0].mean(), tail, p[:, 1].mean(),
                       " ".join("%.4f" % v for v in p[:, 1]), np.mean(diff),
                       " ".join("%+.4f" % v for v in diff), p[:, 2].mean(), p[:, 3].mean()))
            log(line)
            out.append(line)
    return out


def t_interval(values):
    """Mean and half-width of the 95% Student t interval over seeds."""
    from scipy import stats
    v = np.asarray(values, float)
    if len(v) < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def write_summary(rows, path):
    """Per benchmark and method: the mean score over the last 20% of the tasks,
    over seeds, and its paired differences to SGD and to CBP, each with a 95%
    t-interval (half-width); a difference whose interval excludes 0 is marked.
    Then the loss of plasticity: the score over the first 20% of the tasks and
    the paired change last - first, with theirs; and the means over seeds of
    the dead units after the last task and of the units renewed in the run,
    their 95% t half-widths in the last two columns."""
    with open(path, "w") as fh:
        fh.write("benchmark,method,seeds,last,last_ci95,minus_sgd,minus_sgd_ci95,"
                 "minus_sgd_excludes_0,minus_cbp,minus_cbp_ci95,minus_cbp_excludes_0,"
                 "first,first_ci95,last_minus_first,last_minus_first_ci95,"
                 "dead_at_end,units_renewed,dead_at_end_ci95,units_renewed_ci95\n")
        for bench in dict.fromkeys(r[0] for r in rows):
            n = max(r[3] for r in rows if r[0] == bench) + 1
            tail = max(1, n // 5)
            last, first, dead, renewed = {}, {}, {}, {}
            for r in rows:
                if r[0] != bench:
                    continue
                if r[3] >= n - tail:
                    last.setdefault(r[1], {}).setdefault(r[2], []).append(r[4])
                if r[3] < tail:
                    first.setdefault(r[1], {}).setdefault(r[2], []).append(r[4])
                if r[3] == n - 1:
                    dead.setdefault(r[1], []).append(r[5])
                renewed.setdefault(r[1], {}).setdefault(r[2], []).append(r[6])
            last = {m: {s: np.mean(v) for s, v in per.items()} for m, per in last.items()}
            first = {m: {s: np.mean(v) for s, v in per.items()} for m, per in first.items()}
            for method in [m for m in METHODS if m in last]:
                seeds = sorted(last[method])
                cells = [bench, method, str(len(seeds))]
                cells += ["%.4f" % x for x in t_interval([last[method][s] for s in seeds])]
                for ref in ("sgd", "cbp"):
                    common = [s for s in seeds if s in last.get(ref, {})]
                    if ref == method or not common:
                        cells += ["", "", ""]
                        continue
                    mean, half = t_interval([last[method][s] - last[ref][s] for s in common])
                    cells += ["%+.4f" % mean, "%.4f" % half,
                              "yes" if abs(mean) > half else "no"]
                cells += ["%.4f" % x for x in t_interval([first[method][s] for s in seeds])]
                mean, half = t_interval([last[method][s] - first[method][s] for s in seeds])
                cells += ["%+.4f" % mean, "%.4f" % half]
                dead_mean, dead_half = t_interval(dead.get(method, [np.nan]))
                renewed_mean, renewed_half = t_interval([sum(v) for v in
                                                         renewed[method].values()])
                cells += ["%.1f" % dead_mean, "%.1f" % renewed_mean,
                          "%.1f" % dead_half, "%.1f" % renewed_half]
                fh.write(",".join(cells) + "\n")


def main_protocol(args):
    import continual_protocol as cp
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    cfg = dict((QUICK if args.quick else CONFIGS)["permuted"], tasks=args.protocol)
    cfg["per_task"] = args.per_task or cfg["per_task"]
    cfg["hidden"] = args.hidden or cfg["hidden"]
    grids = cp.QUICK_GRIDS if args.quick else cp.GRIDS
    methods = args.methods.split(",") if args.methods != ",".join(METHODS) else cp.METHODS
    grids = {m: grids[m] for m in methods}
    seeds = list(range(args.first_seed, args.first_seed + (2 if args.quick else args.seeds or 5)))
    stem = os.path.join(args.out, args.name or "continual_protocol%d" % args.protocol)
    data = fd.load(12000, 2000) if args.quick else fd.load()
    data = (data[0].flatten(1), data[1])
    t0 = time.time()

    def log(line):
        print("%6.0f s  %s" % (time.time() - t0, line), flush=True)
    log("protocol: %d tasks of %d images, H %d, batch %d, lr %g; select on seed %d, "
        "evaluate on seeds %s" % (cfg["tasks"], cfg["per_task"], cfg["hidden"], cfg["batch"],
                                  cfg["lr"], args.select_seed, seeds))
    rows = cp.run(run_permuted, data, cfg, grids, seeds, args.select_seed, args.jobs,
                  args.runs or stem + "_runs", stem, not args.collect, log)
    # the figure and the summary pair seeds: only seeds every method has finished
    methods = set(r[1] for r in rows)
    paired = [s for s in seeds if all(any(r[1] == m and r[2] == s for r in rows)
                                      for m in methods)]
    if paired != seeds:
        log("seeds finished by every method: %s (the others are left out)" % paired)
    rows = [r for r in rows if r[2] in paired]
    if rows:
        plot(rows, stem + ".png")
        summarise(rows, log)
        write_summary(rows, stem + "_summary.csv")
    log("wrote %s.csv (%d rows)" % (stem, len(rows)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--bench", default="all", choices=("all", "pairs", "permuted"))
    ap.add_argument("--seeds", type=int, help="paired seeds (default 3; --protocol: 5)")
    ap.add_argument("--tasks", type=int, default=None, help="override the number of tasks")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", default=os.path.join(HERE, "..", "figures"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--name", help="stem of the output files (default continual[_BENCH])")
    ap.add_argument("--summary", action="store_true",
                    help="also write continual*_summary.csv (means, 95%% t-intervals)")
    ap.add_argument("--replot", metavar="CSV", help="redraw the PNG of a CSV written before")
    ap.add_argument("--protocol", type=int, metavar="N",
                    help="the comparison protocol on N permuted tasks (continual_protocol.py): "
                         "knobs chosen on --select-seed, then frozen, on --seeds seeds")
    ap.add_argument("--per-task", type=int, help="--protocol: images per task (3000)")
    ap.add_argument("--hidden", type=int, help="--protocol: hidden width H (256)")
    ap.add_argument("--select-seed", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=2, help="--protocol: runs at once")
    ap.add_argument("--runs", help="--protocol: folder of the per-run files "
                                   "(default <out>/<name>_runs)")
    ap.add_argument("--collect", action="store_true",
                    help="--protocol: merge the complete runs, start none")
    args = ap.parse_args(argv)
    if args.protocol:
        return main_protocol(args)
    if args.replot:
        rows = read_rows(args.replot)
        plot(rows, args.replot[:-4] + ".png")
        summarise(rows, print)
        if args.summary:
            write_summary(rows, args.replot[:-4] + "_summary.csv")
        return
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    configs = QUICK if args.quick else CONFIGS
    seeds = 2 if args.quick else args.seeds or 3
    benches = ("pairs", "permuted") if args.bench == "all" else (args.bench,)
    data = fd.load(12000, 2000) if args.quick else fd.load()
    data = (data[0].flatten(1), data[1], data[2].flatten(1), data[3])
    t0 = time.time()
    rows = []
    for bench in benches:
        cfg = dict(configs[bench])
        if args.tasks:
            cfg["tasks"] = args.tasks
        methods = [m for m in args.methods.split(",") if m != "fibcos" or cosine_available()]
        for seed in range(args.first_seed, args.first_seed + seeds):
            for method in methods:
                t = time.time()
                fn = run_pairs if bench == "pairs" else run_permuted
                for task, acc, dead, renewed in fn(method, seed, data, cfg):
                    rows.append((bench, method, seed, task, acc, dead, renewed))
                sub = [r for r in rows if r[0] == bench and r[1] == method and r[2] == seed]
                print("%s %s seed %d: mean acc %.4f, last task %.4f, dead %d, renewed %d (%.0f s)"
                      % (bench, method, seed, np.mean([r[4] for r in sub]), sub[-1][4],
                         sub[-1][5], sum(r[6] for r in sub), time.time() - t), flush=True)
    stem = args.name or "continual" + ("" if args.bench == "all" else "_" + args.bench)
    csv = os.path.join(args.out, stem + ".csv")
    with open(csv, "w") as fh:
        fh.write("benchmark,method,seed,task,accuracy,dead_units,units_renewed\n")
        for r in rows:
            fh.write("%s,%s,%d,%d,%.4f,%d,%d\n" % r)
    plot(rows, os.path.join(args.out, stem + ".png"))
    summarise(rows, print)
    if args.summary or args.quick:
        write_summary(rows, os.path.join(args.out, stem + "_summary.csv"))
    print("wrote %s in %.0f s" % (csv, time.time() - t0))


if __name__ == "__main__":
    main()
