"""Experiment 1 (seed Fig. 3a): emergence of fibers, opfibers and covers over
training, next to accuracy, and the cover coarse-graining theorem checked on
the recorded trajectory.

Three runs on Fashion-MNIST, plain SGD with momentum (lr 0.05, batch 64):
  mlp     784-128-128-10 ReLU, PyTorch default initialisation
  cnn     conv 8 (3x3) - pool - conv 16 (3x3) - pool - 64 - 10
  lifted  the same MLP initialised as a lift of a random 784-32-32-10 network
          (every base unit copied 4 times, output weights split evenly), so
          that it starts with exact, non-trivial covers

At every record, each layer with parameters is coloured three ways:
  exact   FIB_TOL_EXACT (equal up to rounding)
  rel1    FIB_TOL_ABS with a per-layer eps = 1 x the standard deviation of the
          weights the signature is made of (the layer's own weights for
          fibers, the next layer's for opfibers), recomputed at each record
  rel2    the same with 2 x the standard deviation
  rel4    the same with 4 x the standard deviation
  cos0.3, cos0.5  FIB_TOL_COSINE, the seed authors' criterion (rows
          L2-normalised, 1 - cosine, average linkage cut at eps), when the
          library has it (rows absent otherwise)
Covers are the meet of fibers and opfibers (as in the library).

Coarse-graining check: between two consecutive records, the covers may only
merge: every pair of units in one cover class at the earlier record must still
share a class at the later one. The CSV counts, per layer, the pairs together
before ("pairs_before") and how many of them were separated ("pairs_split").

Whether the planted covers survive float32 training depends on how the
matrix products are summed (the BLAS, the CPU's kernels, the thread count):
two copies of a unit sit at different positions of a GEMM tile and may be
summed in different orders, so their rounding differs. --products ordered
trains a second lifted run ("lifted_ordered") whose linear layers sum every
output in the same order (an elementwise product reduced along the input
axis, forward and backward), so copies stay bit-identical by construction;
--products default runs the BLAS only, --products both (the default) both.

--models picks the runs (default mlp,cnn,lifted; the lifted ones follow
--products), --name the stem of the output files (default emergence).

Machine-dependent: every figure is float32 training, so it depends on the
BLAS, the CPU's kernels and the thread count (the order of each product's
sums); above all whether the lifted run's planted covers split (with
--products ordered they never do). --seeds N gives the means and 95%
intervals over seeds (seed_runs.py).

    /usr/bin/python3 docs/examples/exp_emergence.py [--quick] [--out DIR] [--products both]
"""

import os
import sys
import time
import types

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "bindings", "python"))

import fashion_data as fd  # noqa: E402
import seed_runs  # noqa: E402
from fibration.torch import trace  # noqa: E402

TOLERANCES = (("exact", 0.0), ("rel1", 1.0), ("rel2", 2.0), ("rel4", 4.0),
              ("cos0.3", "cos", 0.3), ("cos0.5", "cos", 0.5))


def cosine_available():
    """FIB_TOL_COSINE (the seed authors' criterion) is in libraries newer than
    the first tolerant one; older ones refuse it."""
    import fibration
    code = getattr(fibration._ffi, "FIB_TOL_COSINE", None)
    if code is None:
        return False
    g = fibration.Graph()
    x = g.add_input(2)
    g.add_dense(x, np.eye(2), np.zeros(2))
    try:
        g.color("fibers", code, 0.1)
        return True
    except fibration.FibrationError:
        return False


def tolerances():
    """The tolerances this library can colour with."""
    cos = cosine_available()
    return tuple(t for t in TOLERANCES if len(t) == 2 or cos)
PARAM_KINDS = ("dense", "conv")


def mlp(width=128):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, width), nn.ReLU(),
                         nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))


def cnn():
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * 49, 64), nn.ReLU(), nn.Linear(64, 10))


def lifted_mlp(base_width=32, copies=4, seed=0):
    """A 784-128-128-10 MLP that is an exact lift of a random 784-32-32-10."""
    torch.manual_seed(seed)
    small, big = mlp(base_width), mlp(base_width * copies)
    p = torch.arange(base_width * copies) % base_width       # unit -> base unit
    lin_s = [m for m in small if isinstance(m, nn.Linear)]
    lin_b = [m for m in big if isinstance(m, nn.Linear)]
    with torch.no_grad():
        lin_b[0].weight.copy_(lin_s[0].weight[p])
        lin_b[0].bias.copy_(lin_s[0].bias[p])
        lin_b[1].weight.copy_(lin_s[1].weight[p][:, p] / copies)
        lin_b[1].bias.copy_(lin_s[1].bias[p])
        lin_b[2].weight.copy_(lin_s[2].weight[:, p] / copies)
        lin_b[2].bias.copy_(lin_s[2].bias)
    return big


def colour(model, x, tol):
    """{layer: (units, fiber colours, opfiber colours, cover colours)} for a
    TOLERANCES entry."""
    import fibration
    net = trace(model, x)
    layers = [l for l in net.layers if l.kind in PARAM_KINDS]
    weights = [model.get_submodule(l.module).weight.detach() for l in layers]
    factor = tol[-1]
    if len(tol) == 3:
        f = net.graph.color("fibers", fibration._ffi.FIB_TOL_COSINE, factor)
        o = net.graph.color("opfibers", fibration._ffi.FIB_TOL_COSINE, factor)
    elif factor == 0:
        f = net.graph.color("fibers", "exact")
        o = net.graph.color("opfibers", "exact")
    else:
        for i, l in enumerate(layers):
            net.graph.set_eps(l.group, factor * float(weights[i].std()))
        f = net.graph.color("fibers", "abs", 1.0)
        for i, l in enumerate(layers):
            nxt = factor * float(weights[i + 1].std()) if i + 1 < len(layers) else 0.0
            net.graph.set_eps(l.group, nxt)
        o = net.graph.color("opfibers", "abs", 1.0)
    out = {}
    for l in layers:
        fc, oc = np.asarray(f.colors(l.group)), np.asarray(o.colors(l.group))
        _, cc = np.unique(np.stack([fc, oc], 1), axis=0, return_inverse=True)
        out[l.node] = (l.width, fc, oc, cc.ravel())
    return out


def n_classes(c):
    return len(np.unique(c))


def pairs_split(before, after):
    """(pairs in one class of `before`, how many of them `after` separates)."""
    together = split = 0
    for c in np.unique(before):
        members = np.flatnonzero(before == c)
        k = len(members)
        if k < 2:
            continue
        together += k * (k - 1) // 2
        _, counts = np.unique(after[members], return_counts=True)
        split += k * (k - 1) // 2 - int(sum(n * (n - 1) // 2 for n in counts))
    return together, split


def record_steps(total, n):
    steps = np.unique(np.round(np.geomspace(10, total, n - 1)).astype(int))
    return [0] + [int(s) for s in steps]


def ordered_linear_forward(self, x):
    """x @ W.T + b with every output summed in the same order: a broadcast
    product reduced along the input axis (its backward reduces along the batch
    and output axes the same way), so equal rows give bit-equal outputs."""
    return (x.unsqueeze(-2) * self.weight).sum(-1) + self.bias


def with_ordered_products(model):
    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.forward = types.MethodType(ordered_linear_forward, m)
    return model


def lift_spread(model, copies=4):
    """For the lifted MLP: the largest spread (max - min) of a first-layer
    weight inside a planted class, divided by the std of that layer."""
    w = model[1].weight.detach().double()
    base = w.shape[0] // copies
    groups = w.reshape(copies, base, -1)
    return float((groups.max(0).values - groups.min(0).values).max() / w.std())


def run(name, model, data, steps, n_records, seed, rows, log):
    xtr, ytr, xte, yte = data
    x = xte[:4]
    records = record_steps(steps, n_records)
    prev_covers = {}
    done = 0
    t0 = time.time()
    for step in records:
        if step > done:
            fd.train(model, xtr, ytr, step - done, lr=0.05, batch=64, seed=seed + step)
            done = step
        acc = fd.accuracy(model, xte, yte)
        for spec in tolerances():
            tol = spec[0]
            res = colour(model, x, spec)
            for layer, (units, fc, oc, cc) in res.items():
                key = (tol, layer)
                pb, ps = pairs_split(prev_covers[key], cc) if key in prev_covers else (0, 0)
                prev_covers[key] = cc
                spread = "%.3g" % lift_spread(model) if name.startswith("lifted") else ""
                rows.append((name, step, round(step * 64 / len(xtr), 3), acc, tol, layer,
                             units, n_classes(fc), n_classes(oc), n_classes(cc), pb, ps, spread))
        log("%-6s step %6d acc %.4f %s %s  (%.0f s)" % (
            name, step, acc, rows[-1][12], " ".join("%s:%d/%d" % (r[5], r[9], r[6]) for r in rows[-len(res):]),
            time.time() - t0))


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(dict.fromkeys(r[0] for r in rows))
    fig, axes = plt.subplots(len(names), 2, figsize=(11, 3.2 * len(names)), squeeze=False)
    for i, name in enumerate(names):
        sub = [r for r in rows if r[0] == name]
        layers = list(dict.fromkeys(r[5] for r in sub))
        for j, (what, col) in enumerate((("fibers", 7), ("covers", 9))):
            ax = axes[i][j]
            for k, layer in enumerate(layers[:-1]):          # output layer: always all distinct
                for tol, style, lw in (("exact", ":", 1), ("rel2", "--", 1), ("rel4", "-", 1),
                                       ("cos0.5", "-", 2.5)):
                    pts = [r for r in sub if r[5] == layer and r[4] == tol]
                    ax.plot([max(r[1], 1) for r in pts], [r[col] / r[6] for r in pts], style,
                            color="C%d" % k, lw=lw, label="layer %s %s" % (layer, tol))
            ax.set_xscale("log")
            ax.set_ylabel("%s / units" % what)
            ax.set_xlabel("SGD step")
            ax.set_title("%s: %s per layer" % (name, what))
            ax2 = ax.twinx()
            pts = [r for r in sub if r[5] == layers[0] and r[4] == "exact"]
            ax2.plot([max(r[1], 1) for r in pts], [r[3] for r in pts], color="black", lw=2)
            ax2.set_ylabel("test accuracy (black)")
            ax2.set_ylim(0, 1)
            if i == 0 and j == 0:
                ax.legend(fontsize=6, loc="lower left", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def seed_figures(path):
    """One seed's figures for the summary over seeds: per run, the final test
    accuracy; per hidden layer and tolerance, the fibers at step 0, the fibers
    and covers at the end, the fewest fibers at any record and the end minus
    that fewest (do they rise again?); per tolerance, the coarse-graining check's pairs and the share split."""
    rows = seed_runs.read_rows(path)
    out = []
    for name in dict.fromkeys(r["model"] for r in rows):
        sub = [r for r in rows if r["model"] == name]
        end = max(int(r["step"]) for r in sub)
        out.append(("%s accuracy end" % name, float(sub[-1]["accuracy"])))
        layers = list(dict.fromkeys(r["layer"] for r in sub))[:-1]    # output: all distinct
        for k, layer in enumerate(layers):
            for tol in dict.fromkeys(r["tolerance"] for r in sub):
                pts = [r for r in sub if r["layer"] == layer and r["tolerance"] == tol]
                last = [r for r in pts if int(r["step"]) == end][0]
                where = "%s layer %d (%s units) %s" % (name, k + 1, last["units"], tol)
                out.append((where + " fibers start", int(pts[0]["fibers"])))
                out.append((where + " fibers end", int(last["fibers"])))
                out.append((where + " covers end", int(last["covers"])))
                fewest = min(int(r["fibers"]) for r in pts)
                out.append((where + " fibers fewest", fewest))
                out.append((where + " fibers end minus fewest", int(last["fibers"]) - fewest))
        for tol in dict.fromkeys(r["tolerance"] for r in sub):
            pts = [r for r in sub if r["tolerance"] == tol]
            together = sum(int(r["pairs_before"]) for r in pts)
            split = sum(int(r["pairs_split"]) for r in pts)
            out.append(("%s %s pairs together" % (name, tol), together))
            out.append(("%s %s pairs split" % (name, tol), split))
            if together:
                out.append(("%s %s share split" % (name, tol), split / together))
        if name.startswith("lifted"):
            out.append(("%s lift spread end" % name, float(sub[-1]["lift_spread"])))
    return out


def main(argv=None):
    def extra(ap):
        ap.add_argument("--products", default="both", choices=("both", "default", "ordered"))
        ap.add_argument("--models", default="mlp,cnn,lifted")
        ap.add_argument("--name", default="emergence")
    args = fd.experiment_args(__doc__, argv, extra=extra)
    if args.seeds or args.summary:
        return seed_runs.over_seeds(args, argv, main, args.name, args.name + ".csv", seed_figures)
    models = args.models.split(",")
    t0 = time.time()
    if args.quick:
        data = fd.load(6000, 2000)
        mlp_steps, cnn_steps, n_records = 300, 150, 5
    else:
        data = fd.load()
        mlp_steps, cnn_steps, n_records = 9000, 3000, 14
    rows = []
    if "mlp" in models:
        torch.manual_seed(args.seed)
        run("mlp", mlp(), data, mlp_steps, n_records, args.seed, rows, print)
    if "cnn" in models:
        torch.manual_seed(args.seed)
        run("cnn", cnn(), data, cnn_steps, n_records, args.seed, rows, print)
    if "lifted" in models and args.products != "ordered":
        run("lifted", lifted_mlp(seed=args.seed), data, mlp_steps, n_records, args.seed, rows,
            print)
    if "lifted" in models and args.products != "default":
        run("lifted_ordered", with_ordered_products(lifted_mlp(seed=args.seed)), data, mlp_steps,
            n_records, args.seed, rows, print)
    header = ("model,step,epoch,accuracy,tolerance,layer,units,fibers,opfibers,covers,"
              "pairs_before,pairs_split,lift_spread")
    csv = os.path.join(args.out, args.name + ".csv")
    with open(csv, "w") as fh:
        fh.write(header + "\n")
        for r in rows:
            fh.write(",".join(str(v) for v in r) + "\n")
    plot(rows, os.path.join(args.out, args.name + ".png"))
    # the theorem check, summarised
    print("\ncoarse-graining (covers only merge): pairs split / pairs together before")
    for name in dict.fromkeys(r[0] for r in rows):
        for spec in tolerances():
            tol = spec[0]
            sub = [r for r in rows if r[0] == name and r[4] == tol]
            pb, ps = sum(r[10] for r in sub), sum(r[11] for r in sub)
            print("  %-6s %-5s %8d / %8d %s" % (name, tol, ps, pb,
                                               "holds" if ps == 0 else "broken"))
    print("wrote %s and %s.png in %.0f s" % (csv, args.name, time.time() - t0))


if __name__ == "__main__":
    main()
