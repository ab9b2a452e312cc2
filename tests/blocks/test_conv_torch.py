"""The library's forward pass for convolutional blocks equals PyTorch's on
the same weights: Conv2d (stride, padding, groups), batch norm as an affine
map, max and average pooling, flatten and a dense head."""
import ctypes
import os
import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

ROOT = pathlib.Path(__file__).resolve().parents[2]
LIB_PATH = os.environ.get("FIBRATION_LIBRARY", str(ROOT / "build" / "src" / "libfibration.so"))

F64 = 2
ACT = {"linear": 0, "relu": 1, "tanh": 3}
POOL = {"max": 0, "avg": 1}


@pytest.fixture(scope="module")
def lib():
    if not os.path.exists(LIB_PATH):
        pytest.skip(f"library not built at {LIB_PATH}")
    return ctypes.CDLL(LIB_PATH)


def check(lib, status):
    if status != 0:
        lib.fib_last_error.restype = ctypes.c_char_p
        raise RuntimeError(lib.fib_last_error().decode())


def ptr(a):
    return a.ctypes.data_as(ctypes.c_void_p) if a is not None else None


class Builder:
    """Mirrors a torch model into a fib_graph; keeps the arrays alive."""

    def __init__(self, lib):
        self.lib = lib
        self.graph = ctypes.c_void_p()
        self.keep = []
        check(lib, lib.fib_graph_create(ctypes.byref(self.graph)))

    def arr(self, t):
        a = np.ascontiguousarray(t.detach().double().numpy())
        self.keep.append(a)
        return a

    def out(self, call, *args):
        gid = ctypes.c_int32()
        check(self.lib, call(self.graph, *args, ctypes.byref(gid)))
        return gid.value

    def input(self, channels, rows, cols):
        return self.out(self.lib.fib_graph_add_input_positions, ctypes.c_int64(channels),
                        ctypes.c_int64(rows), ctypes.c_int64(cols))

    def conv(self, src, m):
        kr, kc = m.kernel_size
        w = self.arr(m.weight)
        b = self.arr(m.bias) if m.bias is not None else None
        i64 = ctypes.c_int64
        return self.out(self.lib.fib_graph_add_conv, ctypes.c_int32(src), i64(m.out_channels),
                        i64(kr), i64(kc), i64(m.stride[0]), i64(m.stride[1]),
                        i64(m.padding[0]), i64(m.padding[1]), i64(m.groups),
                        ctypes.c_int32(F64), ptr(w), ptr(b), ctypes.c_uint32(0))

    def batch_norm(self, src, m):
        scale = (m.weight / torch.sqrt(m.running_var + m.eps)).detach()
        shift = (m.bias - m.running_mean * scale).detach()
        s, t = self.arr(scale), self.arr(shift)
        return self.out(self.lib.fib_graph_add_affine, ctypes.c_int32(src), ctypes.c_int32(F64),
                        ptr(s), ptr(t), ctypes.c_uint32(0))

    def pool(self, src, kind, k, stride, pad):
        i64 = ctypes.c_int64
        return self.out(self.lib.fib_graph_add_pool, ctypes.c_int32(src), ctypes.c_int32(POOL[kind]),
                        i64(k), i64(k), i64(stride), i64(stride), i64(pad), i64(pad))

    def flatten(self, src):
        return self.out(self.lib.fib_graph_add_flatten, ctypes.c_int32(src))

    def dense(self, src, m):
        w, b = self.arr(m.weight), self.arr(m.bias)
        return self.out(self.lib.fib_graph_add_dense, ctypes.c_int32(src),
                        ctypes.c_int64(m.out_features), ctypes.c_int32(F64), ptr(w),
                        ctypes.c_int64(m.in_features), ptr(b), ctypes.c_uint32(0))

    def activation(self, group, kind):
        check(self.lib, self.lib.fib_graph_set_activation(self.graph, ctypes.c_int32(group),
                                                         ctypes.c_int32(ACT[kind]),
                                                         ctypes.c_double(0)))

    def forward(self, x_nhwc, n_out):
        x = np.ascontiguousarray(x_nhwc, dtype=np.float64)
        y = np.zeros((x.shape[0], n_out))
        check(self.lib, self.lib.fib_graph_forward(self.graph, ctypes.c_int64(x.shape[0]),
                                                   ctypes.c_int32(F64), ptr(x), ptr(y)))
        return y

    def close(self):
        self.lib.fib_graph_free(self.graph)


@pytest.mark.parametrize("pool_kind", ["max", "avg"])
@pytest.mark.parametrize("groups,stride,pad", [(1, 1, 1), (2, 2, 0), (1, 2, 2)])
def test_cnn_forward_matches_torch(lib, pool_kind, groups, stride, pad):
    torch.manual_seed(groups * 10 + stride + pad)
    conv1 = torch.nn.Conv2d(4, 6, 3, stride=stride, padding=pad, groups=groups).double()
    bn = torch.nn.BatchNorm2d(6).double().eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    pool = (torch.nn.MaxPool2d(2, 2, 0) if pool_kind == "max" else torch.nn.AvgPool2d(2, 2, 0))
    conv2 = torch.nn.Conv2d(6, 3, (2, 3), stride=1, padding=(1, 0), bias=False).double()
    x = torch.randn(3, 4, 15, 15, dtype=torch.float64)
    features = torch.nn.Sequential(conv1, bn, torch.nn.ReLU(), pool, conv2, torch.nn.Tanh())
    with torch.no_grad():
        n_flat = features(x).flatten(1).shape[1]
    head = torch.nn.Linear(n_flat, 5).double()
    model = torch.nn.Sequential(features, torch.nn.Flatten(), head).eval()

    b = Builder(lib)
    g = b.input(4, 15, 15)
    g = b.conv(g, conv1)
    g = b.batch_norm(g, bn)
    b.activation(g, "relu")
    g = b.pool(g, pool_kind, 2, 2, 0)
    g = b.conv(g, conv2)
    b.activation(g, "tanh")
    g = b.flatten(g)
    b.dense(g, head)
    with torch.no_grad():
        want = model(x).numpy()
    got = b.forward(x.permute(0, 2, 3, 1).reshape(3, -1).numpy(), 5)
    b.close()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_conv1d_is_conv_with_one_row(lib):
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(3, 4, 5, stride=2, padding=2).double()
    x = torch.randn(2, 3, 17, dtype=torch.float64)
    b = Builder(lib)
    g = b.input(3, 1, 17)
    kr = ctypes.c_int64
    w = b.arr(conv.weight.unsqueeze(2))  # O x I x 1 x k
    bias = b.arr(conv.bias)
    g = b.out(lib.fib_graph_add_conv, ctypes.c_int32(g), kr(4), kr(1), kr(5), kr(1), kr(2),
              kr(0), kr(2), kr(1), ctypes.c_int32(F64), ptr(w), ptr(bias), ctypes.c_uint32(0))
    with torch.no_grad():
        want = conv(x)  # N x C x L
    n_out = want.shape[1] * want.shape[2]
    got = b.forward(x.permute(0, 2, 1).reshape(2, -1).numpy(), n_out)
    b.close()
    np.testing.assert_allclose(got, want.permute(0, 2, 1).reshape(2, -1).numpy(), rtol=1e-10,
                               atol=1e-10)
