#!/usr/bin/env python3
"""fibration.torch on torchvision's resnet50 (random weights, eval mode, one
1 x 3 x 224 x 224 input, one thread): the library's time next to
PyTorch's, measured in the same run (docs/performance.md, "resnet50").

Per case, best of RUNS runs of each line:
  model(x)       PyTorch's own forward pass of the model
  torch tracing  fibration.torch's trace of the model (torch.fx tracing with
                 the example's concrete shapes, then shape propagation),
                 without the library calls that build its graph
  analyze        ft.analyze(model, x): the whole call, and its library part
  compress       ft.compress(model, x): the whole call, and its library part
The library part is the time spent inside libfibration's functions (every
ctypes function is wrapped), CPU time of this process: on one thread
(OMP_NUM_THREADS=1, torch.set_num_threads(1)) it is the work done,
whatever else the host runs; wall times are printed too. The library
parts are printed as ratios to torch tracing and to model(x).

Cases:
  resnet50          random weights: nothing merges, every check runs
  resnet50-planted  in every bottleneck, the first convolution's channels
                    0, 2, 4, ... of its first quarter copied to the next
                    one (kernel and batch norm): those pairs merge

Usage: bench_torchvision.py [RUNS]   (the meson benchmark `torchvision`)
"""

import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bindings", "python"))

import torch  # noqa: E402
import torchvision  # noqa: E402

import fibration  # noqa: E402
import fibration.torch as ft  # noqa: E402
from fibration import _ffi  # noqa: E402

RUNS = 3


class LibraryClock:
    """Sums the CPU and wall time spent inside libfibration's functions."""

    def __init__(self):
        self.cpu = self.wall = 0.0
        for name, _, _ in _ffi.FUNCTIONS:
            function = getattr(fibration.lib, name, None)
            if function is not None and not getattr(function, "_timed", False):
                setattr(fibration.lib, name, self._timed(function))

    def _timed(self, function):
        clock = self

        def call(*args):
            cpu, wall = time.process_time(), time.perf_counter()
            try:
                return function(*args)
            finally:
                clock.cpu += time.process_time() - cpu
                clock.wall += time.perf_counter() - wall
        call._timed = True
        return call


def measure(clock, work):
    """(cpu, wall, library cpu, library wall) of the best of RUNS runs (by
    CPU time)."""
    best = None
    for _ in range(RUNS):
        clock.cpu = clock.wall = 0.0
        cpu, wall = time.process_time(), time.perf_counter()
        work()
        result = (time.process_time() - cpu, time.perf_counter() - wall, clock.cpu, clock.wall)
        best = result if best is None or result[0] < best[0] else best
    return best


def plant(model):
    from torchvision.models.resnet import Bottleneck
    with torch.no_grad():
        for block in model.modules():
            if isinstance(block, Bottleneck):
                for i in range(0, block.conv1.out_channels // 4, 2):
                    block.conv1.weight[i + 1] = block.conv1.weight[i]
                    for t in (block.bn1.weight, block.bn1.bias, block.bn1.running_mean,
                              block.bn1.running_var):
                        t[i + 1] = t[i]
    return model


def case(name, model, x, clock):
    with torch.no_grad():
        forward = measure(clock, lambda: model(x))
    from fibration.torch._trace import trace as _unchecked_trace
    tracing = measure(clock, lambda: _unchecked_trace(model, x, None))
    torch_tracing = tracing[0] - tracing[2]
    print("%s, 1 x 3 x 224 x 224, 1 thread (CPU s; wall s in brackets):" % name)
    print("  model(x)        %6.2f (%.2f)" % forward[:2])
    print("  torch tracing   %6.2f (%.2f)   [its library calls %.2f]"
          % (torch_tracing, tracing[1] - tracing[3], tracing[2]))
    for what, work in (("analyze", lambda: ft.analyze(model, x)),
                       ("compress", lambda: ft.compress(model, x))):
        cpu, wall, lib_cpu, lib_wall = measure(clock, work)
        print("  %-9s whole %6.2f (%.2f), library %.2f (%.2f) = %.2fx torch tracing, "
              "%.2fx model(x); the rest %.2f" % (what, cpu, wall, lib_cpu, lib_wall,
                                                 lib_cpu / torch_tracing, lib_cpu / forward[0],
                                                 cpu - lib_cpu), flush=True)


def main(argv):
    global RUNS
    if argv:
        RUNS = int(argv[0])
    torch.set_num_threads(1)
    clock = LibraryClock()
    torch.manual_seed(0)
    x = torch.randn(1, 3, 224, 224)
    case("resnet50", torchvision.models.resnet50().eval(), x, clock)
    torch.manual_seed(0)
    case("resnet50-planted", plant(torchvision.models.resnet50().eval()), x, clock)


if __name__ == "__main__":
    main(sys.argv[1:])
