#!/usr/bin/env python3
"""planted.py — colour a planted MLP, compress it, check the base.

The Python twin of planted.c (same generator, same network, same output).
Run from the repository: python3 bindings/examples/planted.py
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

import numpy as np  # noqa: E402

import fibration  # noqa: E402

MASK = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed):
        self.state = seed

    def uniform(self):
        """The next double in [-1, 1)."""
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        z ^= z >> 31
        return (z >> 11) * 2.0 ** -53 * 2.0 - 1.0

    def fill(self, *shape):
        n = int(np.prod(shape))
        return np.array([self.uniform() for _ in range(n)]).reshape(shape)


N_IN, B1, B2, N_OUT, H1, H2, BATCH = 4, 3, 2, 2, 6, 6, 3


def main():
    rng = SplitMix64(42)
    wb1, bb1 = rng.fill(B1, N_IN), rng.fill(B1)
    wb2, bb2 = rng.fill(B2, B1), rng.fill(B2)
    wb3, bb3 = rng.fill(N_OUT, B2), rng.fill(N_OUT)

    # the lift: unit i of a hidden layer copies base unit i % width
    p1, p2 = np.arange(H1) % B1, np.arange(H2) % B2
    w1, b1 = wb1[p1], bb1[p1]
    w2 = np.ascontiguousarray(wb2[p2][:, p1] / (H1 // B1))
    b2 = bb2[p2]
    w3 = np.ascontiguousarray(wb3[:, p2] / (H2 // B2))

    g = fibration.Graph()
    x = g.add_input(N_IN)
    h1 = g.add_dense(x, w1, b1, activation="relu")
    h2 = g.add_dense(h1, w2, b2, activation="tanh")
    g.add_dense(h2, w3, bb3)

    fibers = g.color("fibers")
    print("groups: %d" % g.num_groups)
    print("fibers per group:" + "".join(" %d" % fibers.num_classes(k)
                                        for k in range(g.num_groups)))
    print("classes of h1:" + "".join(" %d" % c for c in fibers.colors(h1)))
    balanced, _ = fibers.is_balanced()
    print("balanced: %d" % balanced)

    base = g.compress(fibers)
    print("parameters: %d => %d" % (g.num_parameters, base.graph.num_parameters))

    inputs = rng.fill(BATCH, N_IN)
    out, out_base = g.forward(inputs), base.graph.forward(inputs)
    for r in range(BATCH):
        print("output %d:" % r + "".join(" %.6f" % v for v in out_base[r]))
    same = np.abs(out - out_base).max() <= 1e-12
    print("base equals original: %s" % ("yes" if same else "no"))
    return 0 if same and balanced else 1


if __name__ == "__main__":
    sys.exit(main())
