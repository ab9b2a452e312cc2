"""The correction's ridge over synthetic draws, on the training split: the
protocol behind docs/compression.md, "The correction's ridge".

    python3 docs/examples/ridge_draws.py mlp --ridges 1e-10,1e-6,1e-4,1e-3,1e-2 --draws 3
    python3 docs/examples/ridge_draws.py lenet --ridges 1e-10,1e-4,1e-3,1e-2 --draws 3

Networks trained on the first 50,000 training images (compression_frontier's
recipes and cache), seeds 0-3; each compressed by budget= without its
correction, then corrected by the numpy reference (_budget.synthetic_refit)
with every ridge and the draws 100, 101, ...; accuracy on the last 10,000
training images. The test set is never read. Prints each cell, then the
mean, lowest and highest accuracy over seeds and draws per (ridge, budget).
"""

import argparse
import itertools
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "bindings", "python"))

import compression_frontier as cf  # noqa: E402
import fashion_data  # noqa: E402
import fibration.torch as ft  # noqa: E402
from fibration.torch import _budget  # noqa: E402
from fibration.torch._rebuild import rebuild  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("network", choices=["lenet", "mlp"])
    ap.add_argument("--ridges", default="1e-10,1e-3")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--samples", type=int, default=8192)
    args = ap.parse_args(argv)
    ridges = [float(r) for r in args.ridges.split(",")]
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
    for seed in range(4):
        if args.network == "mlp":
            model = cf.train("split-mlp", [784, 500, 500, 500, 10], x_fit, y_fit, False,
                             epochs=1, seed=seed)
        else:
            model = cf.train("split-lenet", [784, 300, 100, 10], x_fit, y_fit, False,
                             epochs=25, seed=seed, recipe="sgd")
        example = x_fit[:256]
        sigma = float(example.double().std())
        net = ft.trace(model, example)
        for budget in (0.10, 0.17, 0.30):
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
                print("%s seed %d budget %.2f ridge %g draw %d: %.2f"
                      % (args.network, seed, budget, ridge, draw, acc), flush=True)
    print("ridge budget: mean lowest highest (over seeds and draws)")
    for (ridge, budget), accs in sorted(results.items()):
        print("%-8g %.2f: %.2f %.2f %.2f" % (ridge, budget, np.mean(accs), np.min(accs),
                                              np.max(accs)))


if __name__ == "__main__":
    main()
