#!/usr/bin/env python3
"""Budgets on convolutional networks: trains the two Fashion-MNIST CNNs of
issue 26 (a ResNet with three BasicBlocks of 16/32/64 channels, 77.8 k
parameters; a VGG-style net with four 3x3 convolutions and a 128-unit hidden
layer, 468 k parameters) for several seeds, compresses each with
`ft.compress(model, x, budget=f)` (data-free: no data, no fine-tuning, no
batch-norm re-estimation) and with the data-free peers of cnn_peers.py at the
same budgets on the same networks, and prints the test accuracies with their
mean and 95% interval over the seeds.

    FIBRATION_LIBRARY=build/src/libfibration.so \\
        /usr/bin/python3 docs/examples/cnn_budget_frontier.py --cache /tmp/cnn_frontier
    ... --nets vgg --seeds 0 --out a.csv  # the accuracies to a file (.csv or .json)
    ... --report a.csv,b.csv --plot f.png  # the table (and figure) of several runs
    ... --reestimate-batch-norm 512  # + a column that uses data (below)
    ... --quick                  # one epoch on 6,000 images: checks the mechanism only

Training: `--epochs` epochs (default 1) on the first `--train-images`
training images (default 30,000) of SGD with Nesterov momentum 0.9, learning
rate 0.05 on a cosine schedule, weight decay 5e-4, minibatches of 128, one
network per seed (`--seeds`, default 0,1,2). The trained weights are cached in
`--cache` (a folder outside the repository) and read back on the next run.
Budgets: 10/17/30/50/70/85% of the VGG-style net, 10/30/50/70/85% of the
ResNet (`--budgets`). Every model, the library's and each peer's, is checked
to have at most the budget's parameters. The best peer of a budget is the
peer with the highest mean over the seeds (chosen on the test set: generous
to the peers). Issue 26's own figures (its author's networks, trained
longer) are printed beside them as constants. `--reestimate-batch-norm N`
adds the library's result with its batch norms re-estimated on the first N
training images (`compress(..., reestimate_batch_norm=xb)`), in a column of
its own: it uses data, so it is never a peer's figure nor the data-free
one."""

import argparse
import csv
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bindings", "python"))
sys.path.insert(0, HERE)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import cnn_peers  # noqa: E402
import fashion_data  # noqa: E402
import fibration.torch as ft  # noqa: E402


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stem 16, BasicBlocks 16, 32 (stride 2), 64 (stride 2), global average
    pool, linear: 77,754 parameters."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(16), nn.ReLU())
        self.layer1 = BasicBlock(16, 16, 1)
        self.layer2 = BasicBlock(16, 32, 2)
        self.layer3 = BasicBlock(32, 64, 2)
        self.pool = nn.AvgPool2d(7)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class VGG(nn.Module):
    """Four 3x3 convolutions (32, 32, 64, 64) with batch norm, two max pools,
    a 128-unit hidden layer: 468,202 parameters."""

    def __init__(self):
        super().__init__()

        def block(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
        self.features = nn.Sequential(*block(1, 32), *block(32, 32), nn.MaxPool2d(2),
                                      *block(32, 64), *block(64, 64), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
                                        nn.Linear(128, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


NETS = {"resnet": ResNet, "vgg": VGG}
BUDGETS = {"vgg": (0.10, 0.17, 0.30, 0.50, 0.70, 0.85),
           "resnet": (0.10, 0.30, 0.50, 0.70, 0.85)}
# Issue 26's constants: the best data-free peer (L1 filter pruning, BN-scale
# pruning, channel merging, with and without bias compensation; coupled
# residual channels pruned jointly) at each budget, on the author's networks.
PEERS = {"vgg": {0.10: 79, 0.17: 85, 0.30: 93},
         "resnet": {0.10: 15, 0.30: 20, 0.50: 41, 0.70: 75, 0.85: 90}}


# The library's result after the one step that uses data (its batch norms'
# statistics re-estimated on training images): reported in its own column.
REESTIMATED = "lib:budget+BN-reestimated"


def train(model, x, y, epochs, seed, batch=128, log=print):
    generator = torch.Generator().manual_seed(seed)
    steps = epochs * math.ceil(len(x) / batch)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    start = time.time()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for at in range(0, len(x), batch):
            idx = order[at:at + batch]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            sched.step()
        log("  epoch %d done (%.0f s)" % (epoch + 1, time.time() - start))
    return model.eval()


@torch.no_grad()
def accuracy(model, x, y, batch=250):
    model.eval()
    right = sum(int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
                for i in range(0, len(x), batch))
    return 100.0 * right / len(x)


def trained(name, cache, epochs, seed, x, y, quick):
    torch.manual_seed(seed)
    model = NETS[name]()
    path = None
    if cache:
        os.makedirs(cache, exist_ok=True)
        path = os.path.join(cache, "%s_seed%d_epochs%d_images%d%s.pt" % (
            name, seed, epochs, len(x), "_quick" if quick else ""))
    if path and os.path.exists(path):
        model.load_state_dict(torch.load(path))
        return model.eval()
    print("training %s (%d parameters), seed %d, %d epochs" % (
        name, ft.count_parameters(model), seed, epochs))
    train(model, x, y, epochs, seed)
    if path:
        torch.save(model.state_dict(), path)
    return model


def interval(values):
    """Mean and the half-width of its 95% Student-t interval over seeds."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    t95 = {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78, 6: 2.57, 7: 2.45, 8: 2.36}.get(n, 2.0)
    return mean, t95 * sd / math.sqrt(n)


def peer_models(model, name, budget):
    """Every peer of cnn_peers at the budget: {label: module}."""
    out = {}
    fraction = cnn_peers.fraction_for_budget(model, name, budget)
    for method in cnn_peers.METHODS:
        if fraction is not None:
            out["uniform " + method] = cnn_peers.apply(model, name, fraction, method)
        widths = cnn_peers.global_widths(model, name, budget, method)
        if widths is not None:
            out["global " + method] = cnn_peers.apply(model, name, None, method, widths)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", default="vgg,resnet")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    parser.add_argument("--train-images", type=int, default=30000,
                        help="train on the first N training images")
    parser.add_argument("--test-images", type=int, default=10000,
                        help="score on the first N test images")
    parser.add_argument("--cache", default=None, help="folder for the trained weights")
    parser.add_argument("--budgets", default=None, help="comma-separated fractions")
    parser.add_argument("--no-peers", action="store_true", help="the library only")
    parser.add_argument("--reestimate-batch-norm", type=int, default=0, metavar="N",
                        help="also the library's result with its batch-norm statistics "
                        "re-estimated on the first N training images (uses data: its own "
                        "column, never a peer's or the data-free one)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--out", default=None,
                        help="write the accuracies to this file (.csv or .json)")
    parser.add_argument("--report", default=None,
                        help="comma-separated files of earlier runs (--out): print their table")
    parser.add_argument("--plot", default=None, metavar="PNG",
                        help="also draw accuracy against budget per network to this file")
    args = parser.parse_args(argv)
    if args.report:
        scores = {}
        for path in args.report.split(","):
            for net, budget, method, seed, acc, _ in read_records(path):
                scores.setdefault((net, budget, method), {})[seed] = acc
        seeds = sorted({s for v in scores.values() for s in v})
        scores = {k: [v[s] for s in sorted(v)] for k, v in scores.items()}
        report(scores, seeds)
        if args.plot:
            plot(scores, args.plot)
        return scores
    if not fashion_data.available():
        sys.exit("Fashion-MNIST not found: apt-get install dataset-fashion-mnist")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    x_train, y_train, x_test, y_test = fashion_data.load(
        6000 if args.quick else args.train_images, 1000 if args.quick else args.test_images)
    epochs = 1 if args.quick else args.epochs
    example = x_train[:64]
    seeds = [int(v) for v in args.seeds.split(",")]
    scores = {}  # (net, budget, method) -> [accuracy per seed]
    records = []  # (net, budget, method, seed, accuracy, parameters)

    def record(name, budget, method, seed, module):
        acc = accuracy(module, x_test, y_test)
        scores.setdefault((name, budget, method), []).append(acc)
        records.append((name, budget, method, seed, acc, ft.count_parameters(module)))
        return acc

    # seeds outer: a run stopped early has whole seeds of every network
    for seed in seeds:
        for name in args.nets.split(","):
            budgets = ([float(b) for b in args.budgets.split(",")] if args.budgets
                       else BUDGETS[name])
            model = trained(name, args.cache, epochs, seed, x_train, y_train, args.quick)
            if args.train_only:
                continue
            total = ft.count_parameters(model)
            print("%s seed %d: %d parameters, test accuracy %.2f%%" % (
                name, seed, total, record(name, 1.0, "baseline", seed, model)), flush=True)
            for budget in budgets:
                start = time.time()
                small, plan = ft.compress(model, example, budget=budget)
                seconds = time.time() - start
                with torch.no_grad():
                    # the returned module computes its outputs alone (no hidden state)
                    assert torch.isfinite(small(x_test[:8])).all()
                candidates = {"lib:budget": small}
                if args.reestimate_batch_norm:
                    candidates[REESTIMATED], _ = ft.compress(
                        model, example, budget=budget,
                        reestimate_batch_norm=x_train[:args.reestimate_batch_norm])
                if not args.no_peers:
                    candidates.update(peer_models(model, name, budget))
                line = []
                for method, module in candidates.items():
                    kept = ft.count_parameters(module) / total
                    assert kept <= budget + 1e-12, (method, kept, budget)
                    line.append("%s %.1f" % (method, record(name, budget, method, seed, module)))
                print("  budget %.2f (lib %.1f s): %s" % (budget, seconds, ", ".join(line)),
                      flush=True)
                if args.out:
                    write_records(args.out, records)
    if scores:
        report(scores, seeds)
        if args.plot:
            plot(scores, args.plot)
    return scores


CSV_FIELDS = ("net", "budget", "method", "seed", "accuracy", "parameters")


def write_records(path, records):
    """The accuracies so far, one row per (net, budget, method, seed), as
    CSV (by the file's extension) or JSON; written whole after every budget
    so that a stopped run leaves what it measured."""
    with open(path, "w", newline="") as f:
        if path.endswith(".csv"):
            writer = csv.writer(f)
            writer.writerow(CSV_FIELDS)
            writer.writerows(records)
        else:
            json.dump(records, f)


def read_records(path):
    with open(path, newline="") as f:
        if not path.endswith(".csv"):
            return [tuple(r) + (None,) * (6 - len(r)) for r in json.load(f)]
        return [(r["net"], float(r["budget"]), r["method"], int(r["seed"]),
                 float(r["accuracy"]), int(r["parameters"])) for r in csv.DictReader(f)]


def report(scores, seeds):
    """Per net and budget: the library, the best peer (the peer with the
    highest mean), their paired difference, each as mean +- 95% interval."""
    print("\nseeds %s (where run); mean +- 95%% interval (Student t over seeds)" % (
        ",".join(map(str, seeds))))
    data = any(k[2] == REESTIMATED for k in scores)
    print("| net | budget | seeds | baseline | lib:budget | best peer | lib - best peer | "
          "lib above every peer | issue 26 constant |" +
          (" lib, BN re-estimated (uses data) |" if data else ""))
    print("|---|---|---|---|---|---|---|---|---|" + ("---|" if data else ""))
    nets = sorted({k[0] for k in scores})
    for name in nets:
        base = interval(scores[(name, 1.0, "baseline")])
        for budget in sorted({k[1] for k in scores if k[0] == name and k[1] < 1.0}):
            lib = scores[(name, budget, "lib:budget")]
            peers = {k[2]: v for k, v in scores.items() if k[0] == name and k[1] == budget
                     and not k[2].startswith("lib:") and k[2] != "baseline"}
            cells = ["%.1f +- %.1f" % interval(lib)]
            if peers:
                best = max(peers, key=lambda m: sum(peers[m]) / len(peers[m]))
                gap = [a - b for a, b in zip(lib, peers[best])]
                above = sum(lib[i] > max(v[i] for v in peers.values())
                            for i in range(len(lib)))
                cells += ["%.1f +- %.1f (%s)" % (interval(peers[best]) + (best,)),
                          "%+.1f +- %.1f" % interval(gap), "%d of %d seeds" % (above, len(lib))]
            else:
                cells += ["-", "-", "-"]
            constant = PEERS[name].get(round(budget, 2))
            cells.append("%d" % constant if constant else "-")
            if data:
                reestimated = scores.get((name, budget, REESTIMATED))
                cells.append("%.1f +- %.1f" % interval(reestimated) if reestimated else "-")
            print("| %s | %d%% | %d | %.1f +- %.1f | %s |" % (
                name, round(100 * budget), len(lib), base[0], base[1], " | ".join(cells)))
    for name in nets:
        for budget in sorted({k[1] for k in scores if k[0] == name and k[1] < 1.0}):
            print("%s %d%%: " % (name, round(100 * budget)) + ", ".join(
                "%s %.1f" % (k[2], interval(v)[0]) for k, v in sorted(scores.items())
                if k[0] == name and k[1] == budget))


def plot(scores, path):
    """Per network: test accuracy against the budget for the library, the
    best peer of each budget and, dashed, the batch-norm re-estimated result
    (uses data); means with their 95% intervals over the seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    nets = sorted({k[0] for k in scores})
    fig, axes = plt.subplots(1, len(nets), figsize=(6 * len(nets), 4.5), squeeze=False)
    for ax, name in zip(axes[0], nets):
        budgets = sorted({k[1] for k in scores if k[0] == name and k[1] < 1.0})

        def series(pick):
            points = [(100 * b, interval(v)) for b in budgets for v in [pick(b)] if v]
            return ([p[0] for p in points], [p[1][0] for p in points],
                    [0.0 if math.isnan(p[1][1]) else p[1][1] for p in points])

        def best_peer(b):
            peers = [v for k, v in scores.items() if k[0] == name and k[1] == b
                     and not k[2].startswith("lib:") and k[2] != "baseline"]
            return max(peers, key=lambda v: sum(v) / len(v)) if peers else None
        lines = [("library, data-free", lambda b: scores.get((name, b, "lib:budget")), "-o"),
                 ("best of the twelve peers, data-free", best_peer, "-s"),
                 ("library, BN re-estimated (uses data)",
                  lambda b: scores.get((name, b, REESTIMATED)), "--^")]
        for label, pick, style in lines:
            x, y, err = series(pick)
            if x:
                ax.errorbar(x, y, yerr=err, fmt=style, capsize=3, label=label,
                            lw=2 if label.startswith("library, data") else 1)
        base = interval(scores[(name, 1.0, "baseline")])[0]
        ax.axhline(base, color="gray", ls="--", lw=0.8, label="uncompressed %.1f%%" % base)
        ax.axhline(10, color="gray", ls=":", lw=0.8, label="chance (10 classes)")
        ax.set_title("%s (%d seeds)" % (name, len(scores[(name, 1.0, "baseline")])))
        ax.set_xlabel("budget (% of the parameters kept)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
