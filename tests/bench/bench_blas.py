#!/usr/bin/env python3
"""Which BLAS torch's float32 products run on, and how much slower Debian's
reference BLAS makes them: docs/experiments.md (experiment 1) runs the
planted-cover check with `LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/blas`
put first, and this shows that torch then uses that library.

Two child processes, one with the machine's default `libblas.so.3` and one
with the reference BLAS directory first on the library path, each time the
same 1024 x 1024 float32 product (torch.mm, one thread, best of REPS) and
print the BLAS file they mapped; the parent prints both times and their
ratio, measured in the same run.

Usage: bench_blas.py [N [REPS]]   (defaults 1024, 3)"""

import os
import subprocess
import sys
import time

REFERENCE_BLAS_DIR = "/usr/lib/x86_64-linux-gnu/blas"


def mapped_blas():
    """The BLAS shared objects this process has mapped."""
    with open("/proc/self/maps") as fh:
        paths = {line.split()[-1] for line in fh if "blas" in line.lower() and "/" in line}
    return " ".join(sorted(os.path.realpath(p) for p in paths)) or "none"


def child(n, reps):
    import torch
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen)
    b = torch.randn(n, n, generator=gen)
    torch.mm(a, b)  # first call: loads and warms the library
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    print("%.6f %s" % (best, mapped_blas()))


def run(n, reps, env):
    out = subprocess.run([sys.executable, __file__, "--child", str(n), str(reps)], env=env,
                         capture_output=True, text=True, check=True).stdout.split(maxsplit=1)
    return float(out[0]), out[1].strip()


def main():
    args = [a for a in sys.argv[1:] if a != "--child"]
    n = int(args[0]) if args else 1024
    reps = int(args[1]) if len(args) > 1 else 3
    if "--child" in sys.argv:
        child(n, reps)
        return
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    default, default_lib = run(n, reps, env)
    print("torch float32 %d x %d product, one thread, best of %d" % (n, n, reps))
    print("default libblas.so.3: %8.4f s  (%s)" % (default, default_lib))
    if not os.path.isdir(REFERENCE_BLAS_DIR):
        print("reference BLAS: %s missing (Debian package libblas3); skipped"
              % REFERENCE_BLAS_DIR)
        return
    ref_env = dict(env, LD_LIBRARY_PATH=REFERENCE_BLAS_DIR + (
        ":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else ""))
    reference, reference_lib = run(n, reps, ref_env)
    print("reference BLAS first: %8.4f s  (%s)" % (reference, reference_lib))
    print("reference / default: %.1fx" % (reference / default))


if __name__ == "__main__":
    main()
