"""fib_base_count: the units and parameters of every group of the base
fib_compress would make, counted from the classes alone (what `fibration
analyze` reports without making the base), equal those of the base
fib_compress makes, on planted models of every block kind it counts and for
every symmetry; kinds it cannot count are FIB_E_UNSUPPORTED, never a wrong
figure."""
import ctypes

import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

from fibration import _ffi  # noqa: E402
from fibration._lib import lib  # noqa: E402
from fibration.torch import trace  # noqa: E402
import planted_blocks as pb  # noqa: E402

MODELS = {
    "cnn": pb.planted_cnn,
    "conv1d": pb.planted_conv1d,
    "resnet": pb.planted_resnet,
    "dense_concat": pb.planted_dense_concat,
    "mlp_norms": pb.planted_mlp_norms,
    "grouped_conv": pb.planted_grouped_conv,
    "attention": pb.planted_attention,
}


def group_parameters(graph, group):
    """As `fibration analyze` counts them: every tensor but the structure
    tensors (multiplicities, rotary frequencies)."""
    total = 0
    for name, shape in graph.tensor_shapes(group):
        if "multiplicity" in name or name == "pair_frequency":
            continue
        n = 1
        for s in shape:
            n *= s
        total += n
    return total


def base_count(graph, coloring):
    n = graph.num_groups
    units, params = (ctypes.c_int64 * n)(), (ctypes.c_int64 * n)()
    status = lib.fib_base_count(graph._cp(), coloring._p(), units, params, n)
    return status, list(units), list(params)


@pytest.mark.parametrize("symmetry", ["fibers", "opfibers", "covers"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_base_count_equals_the_made_base(name, symmetry):
    model, x = MODELS[name]()[:2]
    graph = trace(model, x).graph
    coloring = graph.color(symmetry)
    status, units, params = base_count(graph, coloring)
    if status == _ffi.FIB_E_UNSUPPORTED:
        assert name in ("grouped_conv", "attention"), lib.fib_last_error()
        return
    assert status == _ffi.FIB_OK
    base = graph.compress(coloring).graph
    merged = 0
    for g in range(graph.num_groups):
        assert units[g] == base.group(g).n_units, (name, g)
        assert params[g] == group_parameters(base, g), (name, g)
        merged += units[g] < graph.group(g).n_units
    assert merged > 0 or symmetry == "opfibers"  # the planted classes are merged


def test_base_count_of_a_planted_chain_is_the_planted_width():
    """Dense layers merged 4 to 1 between kept inputs and outputs."""
    g = torch.Generator().manual_seed(5)
    model = nn.Sequential(nn.Linear(6, 12, bias=False), nn.ReLU(),
                          nn.Linear(12, 12, bias=False), nn.ReLU(), nn.Linear(12, 2))
    p = torch.arange(12) % 3
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(3, 6, generator=g)[p])
        model[2].weight.copy_(torch.randn(3, 3, generator=g)[p][:, p] / 4)
    graph = trace(model.eval(), torch.randn(4, 6, generator=g)).graph
    status, units, params = base_count(graph, graph.color("fibers"))
    assert status == _ffi.FIB_OK
    widths = sorted(units)
    assert widths == [2, 3, 3, 6]
    # 6 -> 3 -> 3 -> 2, a bias on the output layer only
    assert sum(params) == 3 * 6 + 3 * 3 + 2 * 3 + 2


def test_base_count_refuses_a_short_buffer():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    graph = trace(model.eval(), torch.randn(2, 3)).graph
    n = graph.num_groups - 1
    units = (ctypes.c_int64 * n)()
    assert lib.fib_base_count(graph._cp(), graph.color()._p(), units, None, n) \
        == _ffi.FIB_E_BUFFER
