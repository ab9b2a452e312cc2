"""The budget's knobs over training seeds: the protocol of docs/compression.md
("Merging inputs", "The correction in C", "Over training seeds").

    python3 docs/examples/budget_seeds.py lenet [--input-sensitivity 1,2,3]
    python3 docs/examples/budget_seeds.py mlp --c-correction
    python3 docs/examples/budget_seeds.py lenet --evaluate test

By default the networks are trained on the first 50,000 training images and
evaluated on the last 10,000 (the training split: knobs are chosen there,
never on the test set). `--evaluate test` trains on all 60,000 and reads the
test set, for a report after every knob is fixed. LeNet-300-100 gets the
frontier's SGD recipe, the MLP one epoch of Adam (compression_frontier.train;
its cache, FIB_FRONTIER_CACHE, is shared). Rows: network, seed, baseline,
variant, budget, accuracy, input classes, layer widths; then the means.

Variants: `python`: fibration.torch.compress(budget=) with merge_inputs and
the given input_sensitivity (the library's default when not given);
`--c-correction` adds `c` (fib_compress_to_budget with its own correction,
synthetic_scale, rebuilt as it is) and `c-plain` (no correction). `python`
runs that C correction too, so with the default input_sensitivity `c` is
the same model; the numpy correction of the "Python (numpy)" column of
docs/compression.md is now only the tests' reference (_budget.synthetic_refit).
"""

import argparse
import os
import sys

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "bindings", "python"))

import compression_frontier as cf  # noqa: E402
import fashion_data  # noqa: E402
import fibration.torch as ft  # noqa: E402
from fibration.torch import _budget  # noqa: E402
from fibration.torch._modules import InputClassMean  # noqa: E402
from fibration.torch._rebuild import rebuild  # noqa: E402

BUDGETS = (0.10, 0.17, 0.30)


def accuracy(module, x, y):
    module.eval()
    with torch.no_grad():
        return float((module(x).argmax(1) == y).double().mean() * 100)


def shape(module):
    inputs = [m.n_classes for m in module.modules() if isinstance(m, InputClassMean)]
    widths = [m.out_features for m in module.modules() if isinstance(m, nn.Linear)]
    return (inputs[0] if inputs else "-"), widths


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("network", choices=["lenet", "mlp"])
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--input-sensitivity", default="",
                    help="comma-separated factors to compare (default: the library's)")
    ap.add_argument("--c-correction", action="store_true")
    ap.add_argument("--evaluate", choices=["split", "test"], default="split")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    x_tr, y_tr, x_te, y_te = fashion_data.load(60000, 10000)
    x_tr, x_te = x_tr.reshape(len(x_tr), -1), x_te.reshape(len(x_te), -1)
    if args.evaluate == "split":
        x_fit, y_fit, x_ev, y_ev, tag = x_tr[:50000], y_tr[:50000], x_tr[50000:], y_tr[50000:], "split-"
    else:
        x_fit, y_fit, x_ev, y_ev, tag = x_tr, y_tr, x_te, y_te, "full-"
    factors = [float(f) for f in args.input_sensitivity.split(",") if f] or [None]
    means = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        if args.network == "lenet":
            model = cf.train(tag + "lenet", [784, 300, 100, 10], x_fit, y_fit, False, epochs=25,
                             seed=seed, recipe="sgd")
        else:
            model = cf.train(tag + "mlp", [784, 500, 500, 500, 10], x_fit, y_fit, False,
                             epochs=1, seed=seed)
        example = x_fit[:256]
        base_acc = accuracy(model, x_ev, y_ev)
        net = ft.trace(model, example)
        for budget in BUDGETS:
            runs = []
            for factor in factors:
                small, _ = _budget.compress_to_budget(model, example, budget,
                                                      input_sensitivity=factor)
                runs.append(("python" if factor is None else "python s=%g" % factor, small))
            if args.c_correction:
                scale = _budget._input_scale(example)
                for name, sigma in (("c", scale), ("c-plain", 0.0)):
                    base, _ = _budget.base_to_budget(net.graph, budget, merge_inputs=True,
                                                     synthetic_scale=sigma)
                    runs.append((name, rebuild(net, base, "Budget")))
            for name, small in runs:
                acc = accuracy(small, x_ev, y_ev)
                means.setdefault((name, budget), []).append(acc)
                inputs, widths = shape(small)
                print("%s seed %d baseline %.2f  %-12s %.2f: %.2f  inputs %s  widths %s"
                      % (args.network, seed, base_acc, name, budget, acc, inputs, widths),
                      flush=True)
    print("means over seeds (%s):" % args.evaluate)
    for (name, budget), accs in sorted(means.items()):
        print("  %-12s %.2f: %.2f  (%s)" % (name, budget, float(np.mean(accs)),
                                           " ".join("%.2f" % a for a in accs)))


if __name__ == "__main__":
    main()
