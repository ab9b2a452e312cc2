"""The low-level Python layer: handles, arrays, errors, lifetimes."""

import gc
import os

import numpy as np
import pytest

import fibration
from fibration import FibrationError, Graph


def planted_graph(dtype=np.float64):
    """4 inputs -> 6 hidden (3 planted classes of 2, ReLU) -> 2 outputs."""
    rng = np.random.default_rng(1)
    p = np.arange(6) % 3
    w1, b1 = rng.normal(size=(3, 4))[p].astype(dtype), rng.normal(size=3)[p].astype(dtype)
    w2 = np.ascontiguousarray(rng.normal(size=(2, 3))[:, p] / 2).astype(dtype)
    g = Graph()
    x = g.add_input(4)
    h = g.add_dense(x, w1, b1, activation="relu", name="hidden")
    y = g.add_dense(h, w2)
    return g, x, h, y


def test_version_and_features():
    assert fibration.library_version()[:2] >= fibration.HEADER_VERSION[:2]
    assert fibration.lib.fib_version_string().decode() == "%d.%d.%d" % fibration.library_version()
    assert isinstance(fibration.features(), list)


def test_graph_description():
    g, x, h, y = planted_graph()
    assert g.num_groups == 3 and len(g) == 3
    info = g.group(h)
    assert (info.op, info.n_units, info.activation, info.has_bias, info.sources,
            info.is_output, info.name) == ("dense", 6, "relu", True, (0,), False, "hidden")
    assert g.group(y).is_output
    assert g.io_width == (4, 2)
    assert g.num_parameters == 6 * 4 + 6 + 2 * 6
    w, b = g.read_dense(h)
    assert w.shape == (6, 4) and b.shape == (6,)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fibers_compress_lift(dtype):
    g, x, h, y = planted_graph(dtype)
    fibers = g.color("fibers")
    assert fibers.symmetry == "fibers"
    assert list(fibers.colors(h)) == [0, 1, 2, 0, 1, 2]
    assert list(fibers.class_sizes(h)) == [2, 2, 2]
    assert fibers.is_balanced() == (True, "")
    base = g.compress(fibers)
    assert base.graph.group(h).n_units == 3
    assert list(base.projection(h)) == [0, 1, 2, 0, 1, 2]
    inputs = np.random.default_rng(2).normal(size=(5, 4)).astype(dtype)
    out = g.forward(inputs)
    assert out.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(base.graph.forward(inputs), out, atol=tol)
    np.testing.assert_allclose(base.lift().forward(inputs), out, atol=tol)
    np.testing.assert_allclose(g.forward(inputs, group=h),
                               np.maximum(inputs.astype(np.float64) @ g.read_dense(h)[0].T
                                          + g.read_dense(h)[1], 0), atol=tol)


def held_dtypes(graph, groups):
    """The dtype each group's weight (tensor 0) is held in."""
    import ctypes
    names = {fibration.DTYPE_F32: "float32", fibration.DTYPE_F64: "float64"}
    out = []
    for group in groups:
        held = ctypes.c_int32()
        fibration.check(fibration.lib.fib_graph_tensor_dtype(graph._cp(), group, 0,
                                                             ctypes.byref(held)), "dtype")
        out.append(names.get(held.value, held.value))
    return out


def test_lift_of_a_float32_base_is_float32():
    """A float32 model's base lifts to float32 layers (the precision of the
    layers it lifts), each weight the float64 lift's rounded once, so its
    outputs are the float64 lift's to float32 rounding; dtype="float64"
    is that float64 lift, and a float64 base lifts to float64."""
    g, x, h, y = planted_graph(np.float32)
    base = g.compress(g.color(), dtype="float32")
    lifted, wide = base.lift(), base.lift(dtype="float64")
    assert held_dtypes(lifted, (h, y)) == ["float32", "float32"]
    assert held_dtypes(wide, (h, y)) == ["float64", "float64"]
    for group in (h, y):
        for narrow, exact in zip(lifted.tensors(group).values(), wide.tensors(group).values()):
            np.testing.assert_array_equal(narrow, exact.astype(np.float32).astype(np.float64))
    inputs = np.random.default_rng(4).normal(size=(6, 4)).astype(np.float32)
    out = g.forward(inputs)
    np.testing.assert_allclose(lifted.forward(inputs), wide.forward(inputs), rtol=1e-6,
                               atol=1e-6 * np.abs(out).max())
    np.testing.assert_allclose(lifted.forward(inputs), out, atol=1e-5 * np.abs(out).max())
    assert held_dtypes(base.lift(dtype="float32"), (h, y)) == ["float32", "float32"]
    assert held_dtypes(g.compress(g.color()).lift(), (h, y)) == ["float64", "float64"]
    with pytest.raises(ValueError, match="dtype"):
        base.lift(dtype="float16")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_base_load_gives_the_saved_base(tmp_path, dtype):
    """Base.save then Base.load (copied or mapped): the same base network
    (its forward equal bit for bit), the same projection of every group,
    and the same lift, without the original graph."""
    g, x, h, y = planted_graph(np.float32)
    base = g.compress(g.color(), dtype=dtype)
    path = str(tmp_path / "base.safetensors")
    base.save(path, dtype)
    inputs = np.random.default_rng(5).normal(size=(6, 4))
    for copy in (True, False):
        loaded = fibration.Base.load(path, copy=copy)
        assert loaded.original is None
        np.testing.assert_array_equal(loaded.graph.forward(inputs), base.graph.forward(inputs))
        for group in (x, h, y):
            np.testing.assert_array_equal(loaded.projection(group), base.projection(group))
        assert len(loaded.projection(h)) == 6 and loaded.graph.group(h).n_units == 3
        lifted = loaded.lift()
        assert held_dtypes(lifted, (h, y)) == [dtype, dtype]
        np.testing.assert_array_equal(lifted.forward(inputs), base.lift().forward(inputs))
        loaded.close()


def test_base_load_refusals_are_fibration_errors(tmp_path):
    g, x, h, y = planted_graph()
    model = str(tmp_path / "model.safetensors")
    g.save(model)
    with pytest.raises(FibrationError) as e:
        fibration.Base.load(model)
    assert e.value.code == fibration.E_FORMAT and e.value.function == "fib_base_load"
    assert "not a base written by fib_base_save" in e.value.message
    with pytest.raises(FibrationError) as e:
        fibration.Base.load(str(tmp_path / "missing.safetensors"))
    assert e.value.code == fibration.E_IO and "missing.safetensors" in e.value.message
    base = g.compress(g.color())
    with pytest.raises(FibrationError) as e:
        base.projection(7)
    assert e.value.code == fibration.E_RANGE


def test_manual_coloring_and_balance_message():
    g, x, h, y = planted_graph()
    c = g.coloring("fibers")
    c.set_group(h, [0, 0, 0, 1, 1, 1])     # not balanced: mixes planted classes
    ok, message = c.is_balanced()
    assert not ok and message
    c.set_group(h, [5, 7, 9, 5, 7, 9])
    assert c.num_classes(h) == 3 and list(c.colors(h)) == [0, 1, 2, 0, 1, 2]
    assert c.is_balanced()[0]


def test_errors_map_to_exceptions():
    g = Graph()
    with pytest.raises(FibrationError) as e:
        g.add_dense(3, np.ones((2, 2)))
    assert e.value.code == fibration.E_RANGE == -7
    assert e.value.name == "FIB_E_RANGE"
    assert e.value.message and e.value.function == "fib_graph_add_dense"
    x = g.add_input(2)
    with pytest.raises(FibrationError) as e:
        g.add_dense(x, np.array([[1.0, np.nan]]))
    assert e.value.code == fibration.E_NONFINITE
    with pytest.raises(FibrationError) as e:
        g.set_activation(x, "relu")            # an input group has no activation
    assert e.value.code == fibration.E_INVALID
    with pytest.raises(FibrationError) as e:
        g.add_sum(x, g.add_dense(x, np.ones((3, 2))))
    assert e.value.code == fibration.E_SHAPE
    with pytest.raises(ValueError):
        g.color(symmetry="nonsense")


def test_array_checks():
    g = Graph()
    x = g.add_input(3)
    with pytest.raises(TypeError, match="float32 or float64"):
        g.add_dense(x, np.ones((2, 3), dtype=np.int32))
    with pytest.raises(ValueError, match="contiguous"):
        g.add_dense(x, np.ones((3, 2)).T)        # column-major
    with pytest.raises(TypeError, match="dtype of the weights"):
        g.add_dense(x, np.ones((2, 3)), np.ones(2, dtype=np.float32))
    with pytest.raises(ValueError, match="dimension"):
        g.add_dense(x, np.ones(3))
    # a row-sliced view has a leading dimension larger than its width: zero-copy
    big = np.arange(20.0).reshape(4, 5)
    h = g.add_dense(x, big[:2, :3])
    np.testing.assert_array_equal(g.read_dense(h)[0], big[:2, :3])


def test_torch_tensors_zero_copy():
    torch = pytest.importorskip("torch")
    g = Graph()
    x = g.add_input(3)
    w = torch.randn(4, 3)
    h = g.add_dense(x, w, torch.zeros(4))
    np.testing.assert_allclose(g.read_dense(h)[0], w.numpy(), rtol=1e-7)
    with pytest.raises(ValueError, match="contiguous"):
        g.add_dense(x, torch.randn(3, 4).t())
    with pytest.raises(TypeError, match="float16"):
        g.add_dense(x, torch.randn(4, 3).half())
    out = g.forward(torch.randn(2, 3))
    assert out.shape == (2, 4)


def test_borrowed_weights_stay_alive():
    g = Graph()
    x = g.add_input(3)
    h = g.add_dense(x, np.full((2, 3), 0.5), np.zeros(2))   # only the graph holds them
    gc.collect()
    for _ in range(3):
        np.ones((2, 3)) * 7.0                                 # reuse freed memory if any
    np.testing.assert_allclose(g.forward(np.ones((1, 3))), [[1.5, 1.5]])
    copied = np.full((2, 3), 0.25)
    g2 = Graph()
    g2.add_dense(g2.add_input(3), copied, copy=True)
    copied[:] = 100.0                                          # the copy is unaffected
    np.testing.assert_allclose(g2.forward(np.ones((1, 3))), [[0.75, 0.75]])


def test_close_is_idempotent_and_views_keep_owners():
    g, x, h, y = planted_graph()
    base = g.compress(g.color())
    view = base.graph
    del base
    gc.collect()
    assert view.group(h).n_units == 3          # the view keeps the base alive
    g.close()
    g.close()
    assert g.closed
    with pytest.raises(ValueError, match="closed"):
        g.num_groups
    with Graph() as g2:
        g2.add_input(1)
    assert g2.closed


def test_closing_a_graph_waits_for_the_base_borrowing_its_weights(tmp_path):
    """A layer that merges nothing is borrowed by the base (no copy of the
    model): closing the graph first must not unmap weights the base reads."""
    rng = np.random.default_rng(3)
    built = Graph()
    x = built.add_input(4)
    h = built.add_dense(x, rng.normal(size=(5, 4)), activation="relu")   # 5 distinct rows
    built.add_dense(h, rng.normal(size=(2, 5)))
    built.save(str(tmp_path / "m.safetensors"))
    g = Graph.load(str(tmp_path / "m.safetensors"), copy=False)          # mapped
    inputs = rng.normal(size=(3, 4))
    expected = g.forward(inputs)
    base = g.compress(g.color())
    assert base.graph.group(h).n_units == 5                  # nothing merged
    g.close()
    assert g.closed
    with pytest.raises(ValueError, match="closed"):
        g.num_groups
    gc.collect()
    np.testing.assert_array_equal(base.graph.forward(inputs), expected)
    np.testing.assert_array_equal(base.graph.read_dense(h)[0], base.lift().read_dense(h)[0])
    del base
    gc.collect()


def test_progress_callback_and_cancel():
    g, x, h, y = planted_graph()
    calls = []
    g.color(progress=lambda done, total: calls.append((done, total)))
    if not calls:
        pytest.skip("the library reported no progress for this small graph")
    with pytest.raises(FibrationError) as e:
        g.color(progress=lambda done, total: True)
    assert e.value.code == fibration.E_CANCELLED
    with pytest.raises(ZeroDivisionError):       # the callback's own exception
        g.color(progress=lambda done, total: 1 / 0)


def test_break_symmetry_keeps_the_function():
    g, x, h, y = planted_graph()
    fresh = g.break_symmetry(seed=5)
    inputs = np.random.default_rng(3).normal(size=(4, 4))
    np.testing.assert_allclose(fresh.forward(inputs), g.forward(inputs), atol=1e-12)
    assert fresh.color().num_classes(h) == 6      # the new units are distinct


def _rss_bytes():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_no_handle_leaks_over_10000_cycles():
    def cycle():
        g, x, h, y = planted_graph()
        c = g.color()
        b = g.compress(c)
        b.lift()
        b.graph.num_parameters

    for _ in range(500):        # warm up allocators and caches
        cycle()
    gc.collect()
    before = _rss_bytes()
    for _ in range(10000):
        cycle()
    gc.collect()
    grown = _rss_bytes() - before
    assert grown < 8 * 2**20, "RSS grew by %.1f MiB over 10,000 cycles" % (grown / 2**20)
