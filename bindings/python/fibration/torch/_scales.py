"""The per-unit scales of a colouring (fib_coloring_scales): all 1 but for a
scale-aware tolerance ('scaled+...'), whose base depends on them, so a plan
records them and re-applies them."""

import ctypes

import numpy as np

from .. import check, lib


def coloring_scales(coloring, group):
    """Per-unit scales of a group (fib_coloring_scales; all 1 unless scaled)."""
    n = coloring.graph.group(group).n_units
    out = np.empty(n, np.float64)
    check(lib.fib_coloring_scales(coloring._p(), group,
                                  out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)), n),
          "fib_coloring_scales")
    return out


def set_coloring_scales(coloring, group, scales):
    arr = np.ascontiguousarray(scales, dtype=np.float64)
    check(lib.fib_coloring_set_scales(coloring._p(), group,
                                      arr.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
                                      arr.shape[0]), "fib_coloring_set_scales")
