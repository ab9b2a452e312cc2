#!/usr/bin/env python3
"""Budgets on convolutional networks: trains the two Fashion-MNIST CNNs of
issue 26 (a ResNet with three BasicBlocks of 16/32/64 channels, 77.8 k
parameters; a VGG-style net with four 3x3 convolutions and a 128-unit hidden
layer, 468 k parameters), compresses each with `ft.compress(model, x,
budget=f)` (data-free: no data, no fine-tuning, no batch-norm re-estimation)
and prints the test accuracy and the fraction of parameters kept.

    FIBRATION_LIBRARY=build/src/libfibration.so \\
        /usr/bin/python3 docs/examples/cnn_budget_frontier.py --cache /tmp/cnn_frontier
    ... --quick      # a few hundred steps on 6,000 images: checks the mechanism only

Training is one seed (`--seed`, default 0) and `--epochs` epochs (default 4)
of SGD with Nesterov momentum 0.9, learning rate 0.05 on a cosine schedule,
weight decay 5e-4, minibatches of 128, on the whole training set. The trained
weights are cached in `--cache` (a folder outside the repository) and read
back on the next run. The peers' figures printed beside ours are the
constants of issue 26 (measured by the issue's author on networks of the
same shapes, not run here)."""

import argparse
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
BUDGETS = {"vgg": (0.10, 0.17, 0.30, 0.50), "resnet": (0.10, 0.30, 0.50, 0.70, 0.85)}
# Issue 26's constants: the best data-free peer (L1 filter pruning, BN-scale
# pruning, channel merging, with and without bias compensation; coupled
# residual channels pruned jointly) at each budget, on the author's networks.
PEERS = {"vgg": {0.10: 79, 0.17: 85, 0.30: 93},
         "resnet": {0.10: 15, 0.30: 20, 0.50: 41, 0.70: 75, 0.85: 90}}


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
def accuracy(model, x, y, batch=1000):
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
        path = os.path.join(cache, "%s_seed%d_epochs%d%s.pt" % (name, seed, epochs,
                                                                 "_quick" if quick else ""))
    if path and os.path.exists(path):
        model.load_state_dict(torch.load(path))
        return model.eval()
    print("training %s (%d parameters), seed %d, %d epochs" % (
        name, ft.count_parameters(model), seed, epochs))
    train(model, x, y, epochs, seed)
    if path:
        torch.save(model.state_dict(), path)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", default="vgg,resnet")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=None, help="folder for the trained weights")
    parser.add_argument("--budgets", default=None, help="comma-separated fractions")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--train-only", action="store_true")
    args = parser.parse_args(argv)
    if not fashion_data.available():
        sys.exit("Fashion-MNIST not found: apt-get install dataset-fashion-mnist")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    x_train, y_train, x_test, y_test = fashion_data.load(6000 if args.quick else 60000,
                                                         1000 if args.quick else 10000)
    epochs = 1 if args.quick else args.epochs
    example = x_train[:64]
    rows = []
    for name in args.nets.split(","):
        model = trained(name, args.cache, epochs, args.seed, x_train, y_train, args.quick)
        if args.train_only:
            continue
        total = ft.count_parameters(model)
        base_acc = accuracy(model, x_test, y_test)
        print("%s: %d parameters, test accuracy %.2f%%" % (name, total, base_acc))
        budgets = ([float(b) for b in args.budgets.split(",")] if args.budgets
                   else BUDGETS[name])
        for budget in budgets:
            start = time.time()
            small, plan = ft.compress(model, example, budget=budget)
            seconds = time.time() - start
            with torch.no_grad():
                # the returned module computes its outputs alone (no hidden state)
                assert torch.isfinite(small(x_test[:8])).all()
            kept = ft.count_parameters(small) / total
            assert kept <= budget + 1e-12, (kept, budget)
            acc = accuracy(small, x_test, y_test)
            peer = PEERS[name].get(round(budget, 2))
            rows.append((name, budget, acc, kept, peer))
            print("  budget %.2f: %.2f%% (%.3f of the parameters kept; best peer %s) "
                  "in %.1f s" % (budget, acc, kept, "%d%%" % peer if peer else "-", seconds))
    if rows:
        print("\n| net | budget | lib:budget | kept | best peer (issue 26) |")
        print("|---|---|---|---|---|")
        for name, budget, acc, kept, peer in rows:
            print("| %s | %d%% | %.1f | %.3f | %s |" % (name, round(100 * budget), acc, kept,
                                                        "%d" % peer if peer else "-"))
    return rows


if __name__ == "__main__":
    main()
