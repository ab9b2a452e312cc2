"""Every tolerance mode of the header is reachable from Python by name, the
scale-aware flag combines as "scaled+NAME", and a bad name says which exist."""
import numpy as np
import pytest

import fibration
from fibration import _core, _ffi


def planted_graph():
    g = fibration.Graph()
    x = g.add_input(3)
    w = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0 + 1e-4], [0.0, 0.0, 1.0], [2.0, 4.0, 6.0]])
    h = g.add_dense(x, w, np.zeros(4))
    g.set_activation(h, "relu")
    g.add_dense(h, np.ones((1, 4)), np.zeros(1))
    return g, h


@pytest.mark.parametrize("name,code", [
    ("exact", _ffi.FIB_TOL_EXACT), ("abs", _ffi.FIB_TOL_ABS), ("rel", _ffi.FIB_TOL_REL),
    ("cosine", _ffi.FIB_TOL_COSINE), ("complete", _ffi.FIB_TOL_COMPLETE),
    ("ward", _ffi.FIB_TOL_WARD), ("scaled+abs", _ffi.FIB_TOL_SCALED | _ffi.FIB_TOL_ABS)])
def test_names_map_to_the_header(name, code):
    assert _core._tolerance(name) == code


def test_modes_colour_and_scaled_merges_multiples():
    g, h = planted_graph()
    assert g.color("fibers", "exact").num_classes(h) == 4
    assert g.color("fibers", "abs", 1e-3).num_classes(h) == 3   # rows 0 and 1 merge
    assert g.color("fibers", "cosine", 1e-3).num_classes(h) == 2  # and row 3 = 2 x row 0
    assert g.color("fibers", "scaled+abs", 1e-3).num_classes(h) == 2


def test_unknown_name():
    g, _ = planted_graph()
    with pytest.raises(ValueError, match="one of"):
        g.color("fibers", "bogus", 0.1)
