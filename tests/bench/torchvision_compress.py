"""Where the time of `fibration.torch.compress` goes on a torchvision model.

    OMP_NUM_THREADS=1 python3 tests/bench/torchvision_compress.py [resnet50] [size] [repeats]

Prints, per run: the whole compress call, the library's own time (every
call into libfibration: building the graph, fib_graph_forward of the trace
check, colouring, fib_compress, reading the base) and the rest (PyTorch's
tracing, the reference forwards and the rebuild). Random weights, eval
mode, batch 1. The library time is measured by wrapping the ctypes
functions, so it includes their argument conversion.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bindings", "python"))

import torch  # noqa: E402
import torchvision  # noqa: E402

import fibration  # noqa: E402
import fibration.torch as ft  # noqa: E402


class LibraryClock:
    """Sums the wall time spent inside libfibration's functions."""

    def __init__(self):
        self.seconds = 0.0
        self.by_function = {}

    def wrap(self):
        from fibration import _ffi
        lib = fibration.lib
        for name, _, _ in _ffi.FUNCTIONS:
            function = getattr(lib, name, None)
            if function is None:
                continue
            if getattr(function, "_timed", False):
                continue
            setattr(lib, name, self._timed(name, function))

    def _timed(self, name, function):
        clock = self

        def call(*args):
            start = time.perf_counter()
            try:
                return function(*args)
            finally:
                spent = time.perf_counter() - start
                clock.seconds += spent
                clock.by_function[name] = clock.by_function.get(name, 0.0) + spent
        call._timed = True
        return call


def main(argv):
    name = argv[0] if argv else "resnet50"
    size = int(argv[1]) if len(argv) > 1 else 224
    repeats = int(argv[2]) if len(argv) > 2 else 3
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    x = torch.randn(1, 3, size, size)
    clock = LibraryClock()
    clock.wrap()
    for run in range(repeats):
        clock.seconds, clock.by_function = 0.0, {}
        start = time.perf_counter()
        ft.compress(model, x)
        total = time.perf_counter() - start
        top = sorted(clock.by_function.items(), key=lambda kv: -kv[1])[:4]
        print("%s %dx%d run %d: compress %.2f s, library %.2f s (%s), rest %.2f s"
              % (name, size, size, run, total, clock.seconds,
                 ", ".join("%s %.2f" % kv for kv in top), total - clock.seconds), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
