"""The library's forward pass for attention, norms and a Transformer encoder
layer equals PyTorch's on the same weights (float64, to 1e-10):
nn.MultiheadAttention (batch_first, with and without biases, 1, 2 and 4
heads), nn.LayerNorm, and nn.TransformerEncoderLayer (batch_first,
dropout 0, eval mode, post-norm, relu and gelu) composed from the library's
blocks (attention, sum, norm, dense). A layer with planted duplicate
dimensions is compressed, and its smaller base still equals PyTorch.

Run: /usr/bin/python3 -m pytest tests/blocks/test_attention_torch.py
(library from $FIBRATION_LIBRARY, default <repo>/build/src/libfibration.so)."""
import ctypes
import os
import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

ROOT = pathlib.Path(__file__).resolve().parents[2]
LIB_PATH = os.environ.get("FIBRATION_LIBRARY", str(ROOT / "build" / "src" / "libfibration.so"))

F64 = 2
OP_ATTEND, OP_NORM = 10, 11
NORM_LAYER = 0
ACT = {"linear": 0, "relu": 1, "gelu": 5}
SYM_FIBERS = 1
I32, I64, P, D = ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p, ctypes.c_double


@pytest.fixture(scope="module")
def lib():
    if not os.path.exists(LIB_PATH):
        pytest.skip(f"library not built at {LIB_PATH}")
    lib = ctypes.CDLL(LIB_PATH)
    pi32, pi64 = ctypes.POINTER(I32), ctypes.POINTER(I64)
    lib.fib_graph_create.argtypes = [ctypes.POINTER(P)]
    lib.fib_graph_free.argtypes = [P]
    lib.fib_graph_free.restype = None
    lib.fib_graph_add_input_positions.argtypes = [P, I64, I64, I64, pi32]
    lib.fib_graph_add_dense.argtypes = [P, I32, I64, I32, P, I64, P, ctypes.c_uint32, pi32]
    lib.fib_graph_add_attention.argtypes = [P, I32, I64, I32, P, P, P, P, ctypes.c_uint32, pi32]
    lib.fib_graph_add_norm.argtypes = [P, I32, I32, I32, P, P, D, ctypes.c_uint32, pi32]
    lib.fib_graph_add_sum.argtypes = [P, I32, I32, pi32]
    lib.fib_graph_set_activation.argtypes = [P, I32, I32, D]
    lib.fib_graph_forward.argtypes = [P, I64, I32, P, P]
    lib.fib_graph_io_width.argtypes = [P, pi64, pi64]
    lib.fib_graph_group_info.argtypes = [P, I32, pi32, pi64, pi32, ctypes.POINTER(D), pi32,
                                         pi32, pi32]
    lib.fib_graph_block_params.argtypes = [P, I32, pi64, I64, pi64]
    lib.fib_graph_block_scalar.argtypes = [P, I32, ctypes.POINTER(D)]
    lib.fib_color.argtypes = [P, P, ctypes.POINTER(P)]
    lib.fib_coloring_free.argtypes = [P]
    lib.fib_coloring_free.restype = None
    lib.fib_compress.argtypes = [P, P, ctypes.POINTER(P)]
    lib.fib_base_graph.argtypes = [P]
    lib.fib_base_graph.restype = P
    lib.fib_base_free.argtypes = [P]
    lib.fib_base_free.restype = None
    lib.fib_last_error.restype = ctypes.c_char_p
    return lib


def check(lib, status):
    if status != 0:
        raise RuntimeError(f"status {status}: {lib.fib_last_error().decode()}")


def array(t):
    """A contiguous float64 copy of a tensor (kept alive by the caller)."""
    return np.ascontiguousarray(t.detach().numpy(), dtype=np.float64)


class Graph:
    """A fib_graph built from torch modules; keeps the borrowed weights alive."""

    def __init__(self, lib):
        self.lib = lib
        self.handle = P()
        self.keep = []
        check(lib, lib.fib_graph_create(ctypes.byref(self.handle)))

    def __del__(self):
        self.lib.fib_graph_free(self.handle)

    def ptr(self, t):
        if t is None:
            return None
        a = array(t)
        self.keep.append(a)
        return a.ctypes.data

    def input(self, width, length):
        g = I32()
        check(self.lib, self.lib.fib_graph_add_input_positions(self.handle, width, length, 1,
                                                               ctypes.byref(g)))
        return g.value

    def dense(self, source, linear, activation="linear"):
        g = I32()
        check(self.lib, self.lib.fib_graph_add_dense(
            self.handle, source, linear.out_features, F64, self.ptr(linear.weight),
            linear.in_features, self.ptr(linear.bias), 0, ctypes.byref(g)))
        check(self.lib, self.lib.fib_graph_set_activation(self.handle, g.value,
                                                          ACT[activation], 0.0))
        return g.value

    def attention(self, source, mha):
        g = I32()
        check(self.lib, self.lib.fib_graph_add_attention(
            self.handle, source, mha.num_heads, F64, self.ptr(mha.in_proj_weight),
            self.ptr(mha.in_proj_bias), self.ptr(mha.out_proj.weight),
            self.ptr(mha.out_proj.bias), 0, ctypes.byref(g)))
        return g.value

    def norm(self, source, ln):
        g = I32()
        check(self.lib, self.lib.fib_graph_add_norm(
            self.handle, source, NORM_LAYER, F64, self.ptr(ln.weight), self.ptr(ln.bias),
            ln.eps, 0, ctypes.byref(g)))
        return g.value

    def add(self, a, b):
        g = I32()
        check(self.lib, self.lib.fib_graph_add_sum(self.handle, a, b, ctypes.byref(g)))
        return g.value

    def encoder_layer(self, source, layer, activation):
        """Post-norm: x1 = norm1(x + attn(x)); out = norm2(x1 + ff2(act(ff1(x1))))."""
        att = self.attention(source, layer.self_attn)
        x1 = self.norm(self.add(source, att), layer.norm1)
        hidden = self.dense(x1, layer.linear1, activation)
        ff = self.dense(hidden, layer.linear2)
        return self.norm(self.add(x1, ff), layer.norm2)


def forward(lib, handle, x):
    """The graph's outputs for x (batch x length x width), as (batch, length, -1)."""
    n_in, n_out = I64(), I64()
    check(lib, lib.fib_graph_io_width(handle, ctypes.byref(n_in), ctypes.byref(n_out)))
    xs = np.ascontiguousarray(x.reshape(x.shape[0], -1), dtype=np.float64)
    assert xs.shape[1] == n_in.value
    out = np.zeros((x.shape[0], n_out.value))
    check(lib, lib.fib_graph_forward(handle, x.shape[0], F64, xs.ctypes.data, out.ctypes.data))
    return out.reshape(x.shape[0], x.shape[1], -1)


def rel_diff(a, b):
    return float(np.max(np.abs(a - b) / (1.0 + np.abs(b))))


@pytest.mark.parametrize("heads", [1, 2, 4])
@pytest.mark.parametrize("bias", [True, False])
def test_multihead_attention(lib, heads, bias):
    torch.manual_seed(heads + 10 * bias)
    e, length, batch = 8, 5, 3
    mha = torch.nn.MultiheadAttention(e, heads, bias=bias, batch_first=True,
                                      dtype=torch.float64).eval()
    if bias:
        with torch.no_grad():  # PyTorch initialises the biases to zero
            mha.in_proj_bias.uniform_(-0.5, 0.5)
            mha.out_proj.bias.uniform_(-0.5, 0.5)
    x = torch.randn(batch, length, e, dtype=torch.float64)
    # With gradients on, torch 1.13 takes its reference path (its fast path
    # rejects bias=False).
    want = mha(x, x, x, need_weights=False)[0].detach().numpy()
    g = Graph(lib)
    out = g.attention(g.input(e, length), mha)
    got = forward(lib, g.handle, x.numpy())
    assert rel_diff(got, want) < 1e-10
    scale = D()
    check(lib, lib.fib_graph_block_scalar(g.handle, out - 1, ctypes.byref(scale)))
    assert scale.value == pytest.approx((e / heads) ** -0.5, rel=1e-15)


def test_layer_norm(lib):
    torch.manual_seed(5)
    ln = torch.nn.LayerNorm(6, eps=1e-4, dtype=torch.float64)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.uniform_(-1, 1)
    x = torch.randn(2, 4, 6, dtype=torch.float64)
    g = Graph(lib)
    g.norm(g.input(6, 4), ln)
    with torch.no_grad():
        assert rel_diff(forward(lib, g.handle, x.numpy()), ln(x).numpy()) < 1e-12


def make_layer(seed, e, heads, ff, activation):
    torch.manual_seed(seed)
    layer = torch.nn.TransformerEncoderLayer(e, heads, dim_feedforward=ff, dropout=0.0,
                                             activation=activation, batch_first=True,
                                             dtype=torch.float64).eval()
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if "norm" in name and "weight" in name:
                p.uniform_(0.5, 1.5)
            elif "bias" in name:
                p.uniform_(-0.5, 0.5)
    return layer


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_transformer_encoder_layer(lib, activation):
    e, heads, ff, length, batch = 8, 2, 16, 6, 3
    layer = make_layer(3, e, heads, ff, activation)
    x = torch.randn(batch, length, e, dtype=torch.float64)
    with torch.no_grad():
        want = layer(x).numpy()
    g = Graph(lib)
    g.encoder_layer(g.input(e, length), layer, activation)
    assert rel_diff(forward(lib, g.handle, x.numpy()), want) < 1e-10


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_two_layer_encoder(lib, activation):
    e, heads, ff, length, batch = 8, 4, 12, 4, 2
    layers = [make_layer(20 + i, e, heads, ff, activation) for i in range(2)]
    x = torch.randn(batch, length, e, dtype=torch.float64)
    with torch.no_grad():
        want = layers[1](layers[0](x)).numpy()
    g = Graph(lib)
    h = g.input(e, length)
    for layer in layers:
        h = g.encoder_layer(h, layer, activation)
    assert rel_diff(forward(lib, g.handle, x.numpy()), want) < 1e-10


def test_compressed_layer_still_equals_torch(lib):
    """Duplicate q/k dimensions inside a head and duplicate feed-forward
    units: the base has smaller heads and hidden layer and still computes
    PyTorch's output."""
    e, heads, ff, length, batch = 8, 2, 10, 5, 2
    layer = make_layer(7, e, heads, ff, "relu")
    with torch.no_grad():
        w, b = layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias
        for off in (0, e):  # q1 = q0, k1 = k0 (head 0)
            w[off + 1] = w[off]
            b[off + 1] = b[off]
        layer.linear1.weight[3] = layer.linear1.weight[2]  # ff unit 3 = ff unit 2
        layer.linear1.bias[3] = layer.linear1.bias[2]
    x = torch.randn(batch, length, e, dtype=torch.float64)
    with torch.no_grad():
        want = layer(x).numpy()
    g = Graph(lib)
    g.encoder_layer(g.input(e, length), layer, "relu")
    coloring, base = P(), P()
    check(lib, lib.fib_color(g.handle, None, ctypes.byref(coloring)))
    check(lib, lib.fib_compress(g.handle, coloring, ctypes.byref(base)))
    try:
        bg = lib.fib_base_graph(base)
        widths = []
        for group in (1, 2, 4, 8):  # q, k, core, feed-forward hidden
            n = I64()
            check(lib, lib.fib_graph_group_info(bg, group, None, ctypes.byref(n), None, None,
                                                None, None, None))
            widths.append(n.value)
        assert widths == [e - 1, e - 1, e, ff - 1]
        params = (I64 * 64)()
        count = I64()
        check(lib, lib.fib_graph_block_params(bg, 4, params, 64, ctypes.byref(count)))
        assert params[0] == heads and params[1] == 3 and params[2] == 4  # pairs per head
        assert rel_diff(forward(lib, bg, x.numpy()), want) < 1e-10
    finally:
        lib.fib_base_free(base)
        lib.fib_coloring_free(coloring)
