"""The library's forward pass for gated recurrent blocks equals PyTorch's on
the same weights: nn.LSTM and nn.GRU (batch_first, multi-layer stacks as one
library group per layer, with and without biases, float64 and float32
weights), and the last step followed by a dense head.

Run: /usr/bin/python3 -m pytest tests/blocks/test_gated_torch.py
(library from $FIBRATION_LIBRARY, default <repo>/build/src/libfibration.so)."""
import ctypes
import os
import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

ROOT = pathlib.Path(__file__).resolve().parents[2]
LIB_PATH = os.environ.get("FIBRATION_LIBRARY", str(ROOT / "build" / "src" / "libfibration.so"))

F32, F64 = 1, 2
OP_LSTM, OP_GRU, OP_LAST_STEP = 7, 8, 9
I32, I64, P = ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p


@pytest.fixture(scope="module")
def lib():
    if not os.path.exists(LIB_PATH):
        pytest.skip(f"library not built at {LIB_PATH}")
    lib = ctypes.CDLL(LIB_PATH)
    pi32 = ctypes.POINTER(I32)
    lib.fib_graph_create.argtypes = [ctypes.POINTER(P)]
    lib.fib_graph_free.argtypes = [P]
    lib.fib_graph_free.restype = None
    lib.fib_graph_add_input_positions.argtypes = [P, I64, I64, I64, pi32]
    for name in ("fib_graph_add_lstm", "fib_graph_add_gru"):
        getattr(lib, name).argtypes = [P, I32, I64, I32, P, P, P, P, ctypes.c_uint32, pi32]
    lib.fib_graph_add_last_step.argtypes = [P, I32, pi32]
    lib.fib_graph_add_dense.argtypes = [P, I32, I64, I32, P, I64, P, ctypes.c_uint32, pi32]
    lib.fib_graph_forward.argtypes = [P, I64, I32, P, P]
    lib.fib_graph_io_width.argtypes = [P, ctypes.POINTER(I64), ctypes.POINTER(I64)]
    lib.fib_graph_group_info.argtypes = [P, I32, pi32, ctypes.POINTER(I64), pi32,
                                         ctypes.POINTER(ctypes.c_double), pi32, pi32, pi32]
    lib.fib_last_error.restype = ctypes.c_char_p
    return lib


def check(lib, status):
    if status != 0:
        raise RuntimeError(f"status {status}: {lib.fib_last_error().decode()}")


class Graph:
    """A fib_graph mirroring a torch model; keeps the weight arrays alive
    (the graph borrows them)."""

    def __init__(self, lib):
        self.lib = lib
        self.handle = P()
        self.keep = []
        check(lib, lib.fib_graph_create(ctypes.byref(self.handle)))

    def __del__(self):
        self.lib.fib_graph_free(self.handle)

    def arr(self, t, dtype=np.float64):
        if t is None:
            return None
        a = np.ascontiguousarray(t.detach().numpy().astype(dtype))
        self.keep.append(a)
        return a.ctypes.data_as(P)

    def _out(self, call, *args):
        gid = I32()
        check(self.lib, call(self.handle, *args, ctypes.byref(gid)))
        return gid.value

    def sequence(self, features, length):
        return self._out(self.lib.fib_graph_add_input_positions, features, length, 1)

    def recurrent(self, kind, source, module, layer, dtype=F64):
        """Layer `layer` of an nn.LSTM / nn.GRU as one library group."""
        npt = np.float32 if dtype == F32 else np.float64
        get = lambda name: getattr(module, f"{name}_l{layer}", None)
        call = self.lib.fib_graph_add_lstm if kind == "lstm" else self.lib.fib_graph_add_gru
        return self._out(call, source, module.hidden_size, dtype,
                         self.arr(get("weight_ih"), npt), self.arr(get("weight_hh"), npt),
                         self.arr(get("bias_ih"), npt), self.arr(get("bias_hh"), npt), 0)

    def last_step(self, source):
        return self._out(self.lib.fib_graph_add_last_step, source)

    def dense(self, source, linear):
        return self._out(self.lib.fib_graph_add_dense, source, linear.out_features, F64,
                         self.arr(linear.weight), linear.in_features, self.arr(linear.bias), 0)

    def forward(self, x):
        x = np.ascontiguousarray(x.detach().numpy().reshape(x.shape[0], -1), dtype=np.float64)
        n_in, n_out = I64(), I64()
        check(self.lib, self.lib.fib_graph_io_width(self.handle, ctypes.byref(n_in),
                                                    ctypes.byref(n_out)))
        assert n_in.value == x.shape[1]
        y = np.zeros((x.shape[0], n_out.value))
        check(self.lib, self.lib.fib_graph_forward(self.handle, x.shape[0], F64,
                                                   x.ctypes.data_as(P), y.ctypes.data_as(P)))
        return y


def make(kind, n_in, hidden, layers, bias, seed):
    torch.manual_seed(seed)
    cls = torch.nn.LSTM if kind == "lstm" else torch.nn.GRU
    module = cls(n_in, hidden, num_layers=layers, bias=bias, batch_first=True).double()
    with torch.no_grad():  # larger weights than the default init: saturating gates
        for p in module.parameters():
            p.uniform_(-1.0, 1.0)
    return module


def build_stack(lib, kind, module, n_in, length, dtype=F64):
    g = Graph(lib)
    group = g.sequence(n_in, length)
    for layer in range(module.num_layers):
        group = g.recurrent(kind, group, module, layer, dtype)
    return g, group


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("bias", [True, False])
def test_stack_equals_torch(lib, kind, bias):
    n_in, hidden, length, batch = 5, 6, 9, 4
    module = make(kind, n_in, hidden, 2, bias, seed=1 + bias)
    g, top = build_stack(lib, kind, module, n_in, length)
    op = I32()
    n_units = I64()
    check(lib, lib.fib_graph_group_info(g.handle, top, ctypes.byref(op), ctypes.byref(n_units),
                                        None, None, None, None, None))
    assert op.value == (OP_LSTM if kind == "lstm" else OP_GRU) and n_units.value == hidden
    x = torch.randn(batch, length, n_in, dtype=torch.float64) * 2
    with torch.no_grad():
        want, _ = module(x)
    got = g.forward(x).reshape(batch, length, hidden)
    np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_float32_weights(lib, kind):
    """float32 weights are read exactly and computed in double."""
    n_in, hidden, length, batch = 3, 4, 6, 3
    module = make(kind, n_in, hidden, 1, True, seed=7)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.float().double())  # the values float32 can hold
    g, _ = build_stack(lib, kind, module, n_in, length, dtype=F32)
    x = torch.randn(batch, length, n_in, dtype=torch.float64)
    with torch.no_grad():
        want, _ = module(x)
    np.testing.assert_allclose(g.forward(x).reshape(batch, length, hidden), want.numpy(),
                               rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_last_step_and_head(lib, kind):
    """A sequence classifier: 2-layer recurrent stack, x[:, -1], Linear."""
    n_in, hidden, length, batch = 5, 7, 8, 5
    module = make(kind, n_in, hidden, 2, True, seed=3)
    torch.manual_seed(4)
    head = torch.nn.Linear(hidden, 3).double()
    g, top = build_stack(lib, kind, module, n_in, length)
    g.dense(g.last_step(top), head)
    x = torch.randn(batch, length, n_in, dtype=torch.float64)
    with torch.no_grad():
        seq, _ = module(x)
        want = head(seq[:, -1])
    np.testing.assert_allclose(g.forward(x), want.numpy(), rtol=0, atol=1e-10)


def test_length_one_and_plain_input(lib):
    """A plain vector is a sequence of one step."""
    module = make("lstm", 4, 3, 1, True, seed=9)
    g = Graph(lib)
    src = g._out(lib.fib_graph_add_input_positions, 4, 1, 1)
    g.recurrent("lstm", src, module, 0)
    x = torch.randn(2, 1, 4, dtype=torch.float64)
    with torch.no_grad():
        want, _ = module(x)
    np.testing.assert_allclose(g.forward(x).reshape(2, 1, 3), want.numpy(), rtol=0, atol=1e-10)
