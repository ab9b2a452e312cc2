#!/usr/bin/env python3
"""The C correction of `fibration.torch.compress(budget=)` per budget, next
to peers measured in the same run (docs/compression.md, "The correction in
C"). One thread (OMP_NUM_THREADS=1, torch.set_num_threads(1)); CPU times of
this process, so the other jobs of a busy host do not count.

Per network and budget (10%, 17%, 30%), best of RUNS runs of each:
  compress      ft.compress(model, x, budget=b): the whole call
  C corrected   its fib_compress_to_budget call (merged inputs, synthetic
                inputs of the example's standard deviation: the C
                correction), timed inside that same call
  C plain       the same fib_compress_to_budget call without the correction
                (synthetic_scale 0): the budget alone
  correction    C corrected - C plain
and the peers the correction is printed as a ratio to:
  / budget      C plain: the budget's own work
  / forward     one float64 forward pass of the original model on the
                correction's samples (8,192 x inputs; PyTorch's BLAS, one
                thread): the products with the samples made once

Networks: LeNet-300-100 and the 784-500-500-500-10 MLP of
docs/compression.md, and the shipped Fashion-MNIST MLP 784-64-32-10
(docs/examples/fashion_mlp.safetensors). The first two are the frontier's
seed-0 networks when docs/examples/compression_frontier.py has trained them
or docs/examples/budget_seeds.py --evaluate test has trained them (their
cache, FIB_FRONTIER_CACHE, default TMPDIR/libfibration-frontier), else
PyTorch's default initialisation with seed 0 (printed as `init`): the
budget's widths, and so the correction's least squares, depend on the
weights. The example input is the first 256 Fashion-MNIST training images
when docs/examples/fashion_data.py finds them, else uniform [0, 1) images.

Usage: bench_correction.py [RUNS]   (the meson benchmark `correction`)
"""

import copy
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "..", "docs", "examples")
sys.path.insert(0, os.path.join(HERE, "..", "..", "bindings", "python"))
sys.path.insert(0, EXAMPLES)

import torch  # noqa: E402

import fibration  # noqa: E402
import fibration.torch as ft  # noqa: E402
from fibration.torch import _budget  # noqa: E402

import compression_frontier as cf  # noqa: E402
import fashion_data  # noqa: E402

RUNS = 3
BUDGETS = (0.10, 0.17, 0.30)
SAMPLES = 8192  # fib_budget_options.synthetic_samples' default


class BudgetClock:
    """CPU time spent inside fib_compress_to_budget, however it is called."""

    def __init__(self):
        self.cpu = 0.0
        function = fibration.lib.fib_compress_to_budget
        clock = self

        def call(*args):
            start = time.process_time()
            try:
                return function(*args)
            finally:
                clock.cpu += time.process_time() - start
        fibration.lib.fib_compress_to_budget = call


def best_cpu(work, runs):
    """Least CPU time of `runs` calls of work() and the value of the last."""
    best, value = float("inf"), None
    for _ in range(runs):
        start = time.process_time()
        value = work()
        best = min(best, time.process_time() - start)
    return best, value


def networks():
    """(name, model, origin) of the three networks."""
    out = []
    # the cache names of compression_frontier.py, then of budget_seeds.py
    # --evaluate test (the same recipe on the same 60,000 images)
    for name, widths, files in (
            ("lenet-300-100", [784, 300, 100, 10],
             (("lenet-300-100-sgdcos-wd5e-4-e25-seed0.pt", "frontier seed 0"),
              ("full-lenet-sgdcos-wd5e-4-e25-seed0.pt", "seeds seed 0"))),
            ("mlp-500x3", [784, 500, 500, 500, 10],
             (("mlp-500x3-e1-seed0.pt", "frontier seed 0"),
              ("full-mlp-e1-seed0.pt", "seeds seed 0")))):
        torch.manual_seed(0)
        model = cf.mlp(widths)
        origin = "init"
        for file, trained in files:
            path = os.path.join(cf.CACHE, file)
            if os.path.exists(path):
                model.load_state_dict(torch.load(path))
                origin = trained
                break
        out.append((name, model, origin))
    shipped = ft.load(os.path.join(EXAMPLES, "fashion_mlp.safetensors"))
    out.append(("fashion-mlp-64-32", shipped, "shipped"))
    return out


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else RUNS
    torch.set_num_threads(1)
    if fashion_data.available():
        example = fashion_data.load(256, 1)[0].reshape(256, -1)
        source = "Fashion-MNIST training images 0-255"
    else:
        example = torch.rand(256, 784, generator=torch.Generator().manual_seed(0))
        source = "uniform [0, 1) images"
    scale = _budget._input_scale(example)
    clock = BudgetClock()
    print("fibration.torch.compress(budget=) and its C correction; one thread, CPU seconds, "
          "best of %d runs; example input: %s (sigma %.3f); %d synthetic samples"
          % (runs, source, scale, SAMPLES))
    print("%-18s %-15s %6s %9s %9s %9s %10s %9s %9s %9s  widths"
          % ("network", "weights", "budget", "compress", "C corr", "C plain", "correction",
             "forward", "/ budget", "/ forward"))
    for name, model, origin in networks():
        model = model.eval()
        samples = scale * torch.randn(SAMPLES, example.shape[1], dtype=torch.float64,
                                      generator=torch.Generator().manual_seed(0))
        double = copy.deepcopy(model).double()
        with torch.no_grad():
            forward, _ = best_cpu(lambda: double(samples), runs)
        net = ft.trace(model, example)
        for budget in BUDGETS:
            whole, corrected = float("inf"), float("inf")
            for _ in range(runs):
                clock.cpu = 0.0
                start = time.process_time()
                small, plan = ft.compress(model, example, budget=budget)
                whole = min(whole, time.process_time() - start)
                corrected = min(corrected, clock.cpu)
            if not plan.budget["corrected"]:
                sys.exit("%s at %g: the C correction did not run" % (name, budget))
            clock.cpu = 0.0
            plain, _ = best_cpu(lambda: _budget.base_to_budget(
                net.graph, budget, merge_inputs=True, synthetic_scale=0.0,
                dtype=net.base_dtype()), runs)
            correction = corrected - plain
            widths = [m.out_features for m in small.modules() if isinstance(m, torch.nn.Linear)]
            print("%-18s %-15s %6.2f %9.3f %9.3f %9.3f %10.3f %9.4f %9.2f %9.1f  %s"
                  % (name, origin, budget, whole, corrected, plain, correction, forward,
                     correction / plain, correction / forward, "-".join(map(str, widths))),
                  flush=True)


if __name__ == "__main__":
    main()
