"""Experiment 2 (seed Fig. 3e): compression during training of a gated
network. An LSTM reads Fashion-MNIST images row by row (28 steps of 28
pixels), its last hidden state feeds a linear classifier.

Three runs from the same initialisation and the same minibatches (Adam,
lr 2e-3, batch 64):
  baseline    trained for all steps, never compressed; at every evaluation
              the size of its fibration base at the eps of the first
              compression is also recorded (does it keep forming fibers?)
  compressed  at step T1 compressed with fibration.torch.compress (fibers,
              FIB_TOL_ABS) at the eps that brings the parameters to about
              `--target` (0.5) of the current model (found by bisection on
              eps), training continues on the base (new Adam state), and at
              step T2 it is compressed again the same way
  small       control: an LSTM with the hidden width of the first base,
              trained from scratch for all steps
  smaller     the same at the width of the second base
With --tolerance cos the compressions use FIB_TOL_COSINE (the seed authors'
criterion: 1 - cosine, average linkage) instead of FIB_TOL_ABS.

Accuracy on 2,000 test images and parameter counts every 1/15 of the steps go to
docs/figures/lstm.csv and lstm.png. With cosine, the model about to be compressed
the first time is also compressed at the fixed eps 0.3 (the seed's), 0.5 and 0.7
(rows "probe": accuracy and parameters of each base, not trained further).

Machine-dependent: every accuracy (float32 LSTM kernels and the BLAS), and
with them the bisected eps and the widths of the bases. --seeds N gives the
means and 95% intervals over seeds (seed_runs.py).

    /usr/bin/python3 docs/examples/exp_lstm.py [--quick] [--out DIR]
"""

import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "bindings", "python"))

import fashion_data as fd  # noqa: E402
import seed_runs  # noqa: E402
import fibration  # noqa: E402
import fibration.torch as ft  # noqa: E402
from fibration.torch import trace  # noqa: E402


class RowLSTM(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.lstm = nn.LSTM(28, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, 10)

    def forward(self, x):
        out = self.lstm(x)
        return self.fc(out[0][:, -1])


def hidden_width(model):
    return model.lstm.hidden_size


PROBE_COSINE_EPS = (0.3, 0.5, 0.7)


def compress_with(model, x, tolerance, eps):
    """(compressed model, plan or None): fibers with FIB_TOL_ABS through
    fibration.torch.compress, or FIB_TOL_COSINE (the seed authors' criterion)
    on the traced graph."""
    if tolerance == "abs":
        return ft.compress(model, x, eps=eps)
    net = trace(model, x)
    coloring = net.graph.color("fibers", fibration._ffi.FIB_TOL_COSINE, eps)
    for layer in net.layers:
        # the last step copies the LSTM's units one to one: give it the
        # LSTM's classes (the clustering may group its copy differently,
        # and the rebuilt model would then need a gather it cannot re-trace)
        if layer.kind == "last_step":
            coloring.set_group(layer.group, coloring.colors(net.layers[layer.sources[0]].group))
    return net.compress(coloring, "CompressedRowLSTM"), None


def compress_to(model, x, target, tolerance="abs"):
    """Bisection on eps for a base with about `target` of the parameters."""
    n = ft.count_parameters(model)
    lo, hi = 0.0, 4.0 if tolerance == "abs" else 2.0
    best = (0.0,) + ft.compress(model, x)
    for _ in range(12):
        mid = (lo + hi) / 2
        small, plan = compress_with(model, x, tolerance, mid)
        ratio = ft.count_parameters(small) / n
        if ratio > target:
            lo = mid
        else:
            hi = mid
            best = (mid, small, plan)
        if abs(ratio - target) < 0.03:
            best = (mid, small, plan)
            break
    return best


def output_name(args):
    name = "lstm" if args.tolerance == "abs" else "lstm_cos"
    return name if args.quick or args.steps == 3000 else "%s_%dsteps" % (name, args.steps)


def seed_figures(path):
    """One seed's figures for the summary over seeds: each compression's eps,
    parameter share, hidden width and accuracy before and after; the final
    accuracies and the paired differences the claims rest on (compressed
    minus baseline, compressed minus the control of its final width); the
    share of the baseline's base at the first eps over training; with
    cosine, the parameter share and accuracy at the fixed eps 0.3, 0.5, 0.7
    (before the first compression)."""
    rows = seed_runs.read_rows(path)
    full = int(rows[0]["params"])
    out = []
    # an event row is step, accuracy after, params before, params after,
    # hidden after, "compress eps=E accuracy_before=A" (one more field than the header)
    for k, e in enumerate(r for r in rows if r["run"] == "event"):
        eps, before = (float(v.split("=")[1]) for v in e[None][0].split()[1:3])
        tag = "compression %d (step %s)" % (k + 1, e["step"])
        out += [(tag + " eps", eps), (tag + " params share", int(e["hidden"]) / full),
                (tag + " hidden", int(e["note"])), (tag + " accuracy before", before),
                (tag + " accuracy after", float(e["accuracy"])),
                (tag + " accuracy drop", before - float(e["accuracy"]))]
    for r in rows:
        if r["run"] == "probe":
            tag = "at the first compression, cosine %s" % r["note"]
            out += [(tag + " params share", int(r["params"]) / full),
                    (tag + " accuracy", float(r["accuracy"]))]
    end = {r["run"]: float(r["accuracy"]) for r in rows if r["run"] not in ("event", "probe")}
    for run in ("baseline", "compressed", "small", "smaller"):
        out.append(("%s accuracy end" % run, end[run]))
    out.append(("compressed minus baseline end", end["compressed"] - end["baseline"]))
    out.append(("compressed minus smaller (control of its final width) end",
                end["compressed"] - end["smaller"]))
    out.append(("small minus baseline end", end["small"] - end["baseline"]))
    probed = [int(r["step"]) for r in rows if r["run"] == "baseline" and r["note"]]
    first_compression = [int(r["step"]) for r in rows if r["run"] == "event"][0]
    marks = {str(min(probed)), str(first_compression), str(max(probed))}
    for r in rows:
        if r["run"] == "baseline" and r["note"] and r["step"] in marks:
            out.append(("baseline base share at the first eps, step %s" % r["step"],
                        int(r["note"]) / full))
    return out


def main(argv=None):
    def extra(ap):
        ap.add_argument("--target", type=float, default=0.5)
        ap.add_argument("--hidden", type=int, default=None)
        ap.add_argument("--steps", type=int, default=3000,
                        help="Adam steps of every run (compressions at 1/3 and 2/3, evaluations "
                             "every 1/15); a value other than 3000 is added to the output "
                             "names (lstm_1500steps.*)")
        ap.add_argument("--tolerance", default="abs", choices=("abs", "cos"),
                        help="abs: FIB_TOL_ABS (fibration.torch.compress); cos: FIB_TOL_COSINE, "
                             "the seed authors' criterion (libraries that have it); outputs "
                             "lstm.* or lstm_cos.*")
    args = fd.experiment_args(__doc__, argv, extra)
    if args.seeds or args.summary:
        name = output_name(args)
        return seed_runs.over_seeds(args, argv, main, name, name + ".csv", seed_figures)
    t0 = time.time()
    if args.quick:
        xtr, ytr, xte, yte = fd.load(6000, 1000)
        hidden, steps, t1, t2, every = args.hidden or 32, 150, 50, 100, 25
    else:
        xtr, ytr, xte, yte = fd.load(60000, 2000)
        steps = args.steps
        hidden, t1, t2, every = args.hidden or 128, steps // 3, 2 * steps // 3, steps // 15
    xtr, xte = xtr[:, 0], xte[:, 0]
    x = xte[:4]
    batches = torch.Generator().manual_seed(args.seed)
    order = [torch.randint(len(xtr), (64,), generator=batches) for _ in range(steps)]
    rows = []

    def acc(m):
        return fd.accuracy(m, xte, yte)

    def train(m, opt, start, stop, run, probe_eps=None):
        m.train()
        for step in range(start + 1, stop + 1):
            idx = order[step - 1]
            opt.zero_grad()
            F.cross_entropy(m(xtr[idx]), ytr[idx]).backward()
            opt.step()
            if step % every == 0:
                extra = ""
                if probe_eps is not None and probe_eps[0]:
                    small, _ = compress_with(m, x, args.tolerance, probe_eps[0])
                    extra = ft.count_parameters(small)
                rows.append((run, step, acc(m), ft.count_parameters(m), hidden_width(m), extra))
                print("%-10s step %5d acc %.4f params %d hidden %d %s (%.0f s)" % (
                    rows[-1] + (time.time() - t0,)), flush=True)
                m.train()

    # compressed run (first, so that the baseline can probe at its eps)
    torch.manual_seed(args.seed)
    model = RowLSTM(hidden)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    rows.append(("compressed", 0, acc(model), ft.count_parameters(model), hidden, ""))
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    train(model, opt, 0, t1, "compressed")
    events = []
    for t_next, t_stop in ((t1, t2), (t2, steps)):
        before = acc(model)
        if t_next == t1 and args.tolerance == "cos":
            # the seed's own cut (0.3) and two coarser ones, beside the bisected eps
            for eps in PROBE_COSINE_EPS:
                probe, _ = compress_with(model, x, "cos", eps)
                rows.append(("probe", t1, acc(probe), ft.count_parameters(probe),
                             hidden_width(probe), "eps=%g" % eps))
        eps, small, plan = compress_to(model, x, args.target, args.tolerance)
        after = acc(small)
        events.append((t_next, eps, ft.count_parameters(model), ft.count_parameters(small),
                       hidden_width(small), before, after))
        print("compress at step %d: eps %.3f, params %d -> %d (hidden %d), accuracy %.4f -> %.4f"
              % events[-1], flush=True)
        model = small
        rows.append(("compressed", t_next, after, ft.count_parameters(model),
                     hidden_width(model), "after compression"))
        opt = torch.optim.Adam(model.parameters(), 2e-3)
        train(model, opt, t_next, t_stop, "compressed")
    # baseline, probing the base size at the first eps
    torch.manual_seed(args.seed)
    base = RowLSTM(hidden)
    base.load_state_dict(init)
    rows.append(("baseline", 0, acc(base), ft.count_parameters(base), hidden, ""))
    train(base, torch.optim.Adam(base.parameters(), 2e-3), 0, steps, "baseline",
          probe_eps=[events[0][1]])
    # controls trained from scratch at the widths of the two bases
    for run, event in (("small", events[0]), ("smaller", events[1])):
        torch.manual_seed(args.seed)
        ctrl = RowLSTM(event[4])
        rows.append((run, 0, acc(ctrl), ft.count_parameters(ctrl), event[4], ""))
        train(ctrl, torch.optim.Adam(ctrl.parameters(), 2e-3), 0, steps, run)

    name = output_name(args)
    csv = os.path.join(args.out, name + ".csv")
    with open(csv, "w") as fh:
        fh.write("run,step,accuracy,params,hidden,note\n")
        for r in rows:
            fh.write(",".join(str(v) for v in r) + "\n")
        for e in events:
            fh.write("event,%d,%.4f,%d,%d,%d,compress eps=%.4f accuracy_before=%.4f\n"
                     % (e[0], e[6], e[2], e[3], e[4], e[1], e[5]))
    plot(rows, events, os.path.join(args.out, name + ".png"), args.tolerance)
    print("wrote %s in %.0f s" % (csv, time.time() - t0))


def plot(rows, events, path, tolerance="abs"):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    ax2 = ax.twinx()
    full = [r for r in rows if r[0] == "baseline"][0][3]
    for k, run in enumerate(("baseline", "compressed", "small", "smaller")):
        sub = [r for r in rows if r[0] == run]
        ax.plot([r[1] for r in sub], [r[2] for r in sub], "-o", ms=3, color="C%d" % k,
                label="%s accuracy" % run)
        ax2.plot([r[1] for r in sub], [r[3] / full for r in sub], "--", color="C%d" % k)
    sub = [r for r in rows if r[0] == "baseline" and r[5] != ""]
    ax2.plot([r[1] for r in sub], [r[5] / full for r in sub], ":", color="C0",
             label="baseline: base size at eps %.2f" % events[0][1])
    for e in events:
        ax.axvline(e[0], color="grey", lw=0.8)
    ax.set_xlabel("Adam step")
    ax.set_ylabel("test accuracy (solid)")
    ax2.set_ylabel("parameters / original (dashed)")
    ax2.set_ylim(0, 1.05)
    ax.legend(loc="lower center", fontsize=8)
    ax2.legend(loc="center right", fontsize=8)
    ax.set_title("Row-by-row LSTM on Fashion-MNIST, compressed (%s) at the grey lines"
                 % {"abs": "FIB_TOL_ABS", "cos": "FIB_TOL_COSINE"}[tolerance])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
