"""The correction's ridge over synthetic draws, on the training split: the
protocol behind docs/compression.md, "The correction's ridge".

    python3 docs/examples/ridge_draws.py mlp --ridges 1e-10,1e-6,1e-4,1e-3,1e-2 --draws 3
    python3 docs/examples/ridge_draws.py lenet --ridges 1e-10,1e-4,1e-3,1e-2 --draws 3

Networks trained on the first 50,000 training images (compression_frontier's
recipes and cache), seeds --seeds (default 0-4); each compressed by budget=
without its correction, then corrected by the numpy reference
(_budget.synthetic_refit) with every ridge and the draws 100, 101, ...;
accuracy on the last 10,000 training images. The test set is never read.
Prints each cell, then the mean, lowest and highest accuracy over seeds and
draws per (ridge, budget).

`--csv PATH` appends each finished seed's cells to PATH (a seed with every
ridge, draw and budget asked for already there is not run again, so one
seed per process works) and writes PATH's summary beside it (PATH without
.csv + _summary.csv): per network, ridge and budget, over the seeds in
PATH, the mean of the per-seed means over the draws with the half-width of
its 95% Student t-interval (the seeds are the samples; the draws within a
seed are averaged), and the lowest and highest cell.
"""

import argparse
import csv
import itertools
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "bindings", "python"))

import budget_seeds  # noqa: E402
import compression_frontier as cf  # noqa: E402
import fashion_data  # noqa: E402
import fibration.torch as ft  # noqa: E402
from fibration.torch import _budget  # noqa: E402
from fibration.torch._rebuild import rebuild  # noqa: E402
from exp_continual import t_interval  # noqa: E402

COLUMNS = ("network", "seed", "budget", "ridge", "draw", "accuracy")
BUDGETS = (0.10, 0.17, 0.30)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("network", choices=["lenet", "mlp"])
    ap.add_argument("--ridges", default="1e-10,1e-3")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--samples", type=int, default=8192)
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--csv", metavar="PATH",
                    help="append every seed's cells here (resumes) and write PATH's summary")
    args = ap.parse_args(argv)
    ridges = [float(r) for r in args.ridges.split(",")]
    cells = [("%.2f" % b, "%g" % r, str(d))
             for b, r, d in itertools.product(BUDGETS, ridges, range(args.draws))]
    done = seeds_done(args.csv, args.network, cells) if args.csv else set()
    torch.set_num_threads(1)
    x_tr, y_tr, _, _ = fashion_data.load(60000, 10000)
    x_tr = x_tr.reshape(len(x_tr), -1)
    x_fit, y_fit, x_ev, y_ev = x_tr[:50000], y_tr[:50000], x_tr[50000:], y_tr[50000:]

    def accuracy(m):
        m.eval()
        with torch.no_grad():
            return float((m(x_ev).argmax(1) == y_ev).double().mean() * 100)

    reference = _budget.synthetic_refit
    results = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        if seed in done:
            print("%s seed %d: cells already in %s" % (args.network, seed, args.csv), flush=True)
            continue
        rows = []
        if args.network == "mlp":
            model = cf.train("split-mlp", [784, 500, 500, 500, 10], x_fit, y_fit, False,
                             epochs=1, seed=seed)
        else:
            model = cf.train("split-lenet", [784, 300, 100, 10], x_fit, y_fit, False,
                             epochs=25, seed=seed, recipe="sgd")
        example = x_fit[:256]
        sigma = float(example.double().std())
        net = ft.trace(model, example)
        for budget in BUDGETS:
            base, _ = _budget.base_to_budget(net.graph, budget, merge_inputs=True)
            for ridge, draw in itertools.product(ridges, range(args.draws)):
                small = rebuild(net, base, "Budget")

                def refit(layers, labels, scale, **kw):
                    return reference(layers, labels, scale, n_samples=args.samples,
                                     seed=100 + draw, ridge=ridge, slopes=kw.get("slopes"),
                                     input_labels=kw.get("input_labels"))
                _budget.synthetic_refit = refit
                try:
                    _budget._refit_model(net, model, base, small, sigma)
                finally:
                    _budget.synthetic_refit = reference
                acc = accuracy(small)
                results.setdefault((ridge, budget), []).append(acc)
                rows.append((args.network, seed, "%.2f" % budget, "%g" % ridge, draw,
                             "%.2f" % acc))
                print("%s seed %d budget %.2f ridge %g draw %d: %.2f"
                      % (args.network, seed, budget, ridge, draw, acc), flush=True)
        if args.csv:
            budget_seeds.append_rows(args.csv, rows, COLUMNS)
    if args.csv:
        summarise(args.csv)
        return
    print("ridge budget: mean lowest highest (over seeds and draws)")
    for (ridge, budget), accs in sorted(results.items()):
        print("%-8g %.2f: %.2f %.2f %.2f" % (ridge, budget, np.mean(accs), np.min(accs),
                                              np.max(accs)))



def seeds_done(path, network, cells):
    """Seeds of `network` in `path` that hold every (budget, ridge, draw) cell."""
    have = {}
    for r in budget_seeds.read_csv(path):
        if r["network"] == network:
            have.setdefault(int(r["seed"]), set()).add((r["budget"], r["ridge"], r["draw"]))
    return {seed for seed, got in have.items() if set(cells) <= got}


def summarise(path):
    """Per network, ridge and budget: the seeds, the mean over them of each
    seed's mean over its draws, the half-width of that mean's 95% t-interval,
    and the lowest and highest cell; printed and written to <path without
    .csv>_summary.csv."""
    groups = {}
    for r in budget_seeds.read_csv(path):
        key = (r["network"], float(r["ridge"]), r["budget"])
        groups.setdefault(key, {}).setdefault(int(r["seed"]), []).append(float(r["accuracy"]))
    out = (path[:-4] if path.endswith(".csv") else path) + "_summary.csv"
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(("network", "ridge", "budget", "seeds", "draws", "mean", "ci95", "lowest",
                    "highest"))
        for key in sorted(groups):
            by_seed = groups[key]
            mean, half = t_interval([np.mean(by_seed[s]) for s in sorted(by_seed)])
            cells = [a for accs in by_seed.values() for a in accs]
            draws = sorted({len(accs) for accs in by_seed.values()})
            w.writerow((key[0], "%g" % key[1], key[2], " ".join(map(str, sorted(by_seed))),
                        " ".join(map(str, draws)), "%.2f" % mean, "%.2f" % half,
                        "%.2f" % min(cells), "%.2f" % max(cells)))
            print("%-5s ridge %-6g %s: %.2f +- %.2f (seeds %s; cells %.2f-%.2f)"
                  % (key[0], key[1], key[2], mean, half, " ".join(map(str, sorted(by_seed))),
                     min(cells), max(cells)))
    print("summary: %s" % out)


if __name__ == "__main__":
    main()
