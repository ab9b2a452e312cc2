#!/usr/bin/env python3
"""Train a small CNN on Fashion-MNIST, watch its fibers with FiberTracker,
compress it by its fibers (exactly at eps = 0, approximately at --eps),
verify, and print accuracy before and after with the Params line.

    /usr/bin/python3 docs/examples/fashion_cnn_compress.py            # ~1 minute on 2 cores
    /usr/bin/python3 docs/examples/fashion_cnn_compress.py --quick    # ~15 seconds

Needs Debian's python3-torch and dataset-fashion-mnist, and the library
(FIBRATION_LIBRARY=build/src/libfibration.so, or a build*/ directory).
Prints the accuracy before and after each compression and its Params line."""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bindings", "python"))
sys.path.insert(0, HERE)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import fashion_data  # noqa: E402
import fibration.torch as ft  # noqa: E402


class SmallCNN(nn.Module):
    """conv-BN-ReLU-pool, conv-ReLU-pool, dropout, linear: 8 and 16 channels."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(16 * 7 * 7, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, test subset")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--eps", type=float, default=0.5,
                        help="abs tolerance of the approximate compression (default 0.5)")
    parser.add_argument("--plot", default=None, help="save the fiber plot (PNG) here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not fashion_data.available():
        sys.exit("Fashion-MNIST not found: apt-get install dataset-fashion-mnist")
    torch.manual_seed(args.seed)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    steps = args.steps or (300 if args.quick else 1500)
    x_train, y_train, x_test, y_test = fashion_data.load(12000 if args.quick else 60000,
                                                         2000 if args.quick else 10000)
    model = SmallCNN()
    example = x_test[:64]
    tracker = ft.FiberTracker(model, example, eps=args.eps)
    tracker(accuracy=fashion_data.accuracy(model, x_test, y_test), step=0)

    def record(step):
        counts = tracker(accuracy=fashion_data.accuracy(model, x_test, y_test), step=step)
        print("step %4d  accuracy %.4f  fibers at eps=%g: %s" % (
            step, tracker.accuracy[-1], args.eps,
            " ".join("%s=%d/%d" % (k, v, tracker.units[k]) for k, v in counts.items()
                     if tracker.units[k] < 100)))

    fashion_data.train(model, x_train, y_train, steps, lr=0.05, seed=args.seed,
                       every=max(steps // 4, 1), callback=record)
    before = fashion_data.accuracy(model, x_test, y_test)
    print("accuracy of the trained CNN: %.4f" % before)

    print("\n-- exact (eps = 0): the same function, by construction")
    exact, plan = ft.compress(model, example)
    diff = ft.verify(model, exact, x_test[:500])
    print(plan.summary())
    print("verify: max abs %.3g, max rel %.3g" % diff)
    print("accuracy %.4f -> %.4f" % (before, fashion_data.accuracy(exact, x_test, y_test)))

    print("\n-- approximate (abs tolerance, eps = %g)" % args.eps)
    small, plan = ft.compress(model, example, eps=args.eps)
    print(plan)
    diff = ft.verify(model, small, x_test[:500])
    print("verify: max abs %.3g, max rel %.3g" % diff)
    print("accuracy %.4f -> %.4f" % (before, fashion_data.accuracy(small, x_test, y_test)))
    print(nn.Module.__repr__(small))   # the layers, without the generated code
    if args.plot:
        tracker.plot(args.plot, title="CNN fibers (eps=%g) over training" % args.eps)
        print("plot written to", args.plot)
    return before


if __name__ == "__main__":
    main()
