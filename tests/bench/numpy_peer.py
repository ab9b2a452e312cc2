#!/usr/bin/env python3
"""NumPy peer of bench_kernels: the same fiber-colouring step on the same
kinds of layers (float32, n x n, 64 or n source colours; exact on a lifted
random base, and on a random layer), done the careful NumPy way: argsort the
columns by colour, np.add.reduceat over the class segments, np.unique over
rows (exact equality: the re-split sums differ in the last bits, so the
planted classes are only found when the sums round alike; the count is
printed). Run next to bench_kernels, which measures the read bandwidth.

Usage: numpy_peer.py [N [REPS]]   (defaults 4096, 3)"""
import sys
import time

import numpy as np


def layer(rng, n, k_in, planted):
    source = np.arange(n) % k_in
    if k_in < n:
        rng.shuffle(source)
    if not planted:
        return rng.uniform(-1, 1, (n, n)).astype(np.float32), source
    sizes = rng.integers(1, 9, n)
    cls = np.repeat(np.arange(n), sizes)[:n]
    rng.shuffle(cls)
    base = rng.uniform(-1, 1, (cls.max() + 1, k_in))
    frac = rng.uniform(0.5, 1.5, (n, n))
    part = np.zeros((n, k_in))
    for c in range(k_in):
        cols = source == c
        part[:, c] = frac[:, cols].sum(axis=1)
    w = base[cls][:, source] * frac / part[:, source]
    return w.astype(np.float32), source


def colour_step(w, source):
    order = np.argsort(source, kind="stable")
    sorted_colours = source[order]
    starts = np.flatnonzero(np.r_[True, sorted_colours[1:] != sorted_colours[:-1]])
    sums = np.add.reduceat(w[:, order].astype(np.float64), starts, axis=1)
    _, labels = np.unique(sums, axis=0, return_inverse=True)
    return labels


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    rng = np.random.default_rng(7)
    print(f"numpy {np.__version__} peer: fiber colouring step of a {n} x {n} float32 layer, best of {reps}")
    print(f"{'case':7} {'colours':>7} {'time ms':>9} {'GB/s':>8} {'classes':>8}")
    for kind in ("exact", "random"):
        for k_in in (64, n):
            w, source = layer(rng, n, k_in, kind == "exact")
            best = float("inf")
            for _ in range(reps):
                t = time.perf_counter()
                labels = colour_step(w, source)
                best = min(best, time.perf_counter() - t)
            print(f"{kind:7} {k_in:7d} {best * 1e3:9.1f} {w.nbytes / best * 1e-9:8.3f} "
                  f"{labels.max() + 1:8d}", flush=True)


if __name__ == "__main__":
    main()
