"""GPT-2 checkpoints read in place (docs/model-files.md, "Memory"): the
Conv1D projections ([in, out]) and the token embedding are dense blocks
stored transposed, read from the mapping in their stored dtype; loading
with fib_load_options.copy = 1 (every tensor copied, the files closed)
gives the same graph: the same forward outputs, colourings and tensors
read out, and both equal the GPT-2 reference.

Run: /usr/bin/python3 -m pytest tests/io/test_hf_in_place.py"""
import ctypes
import pathlib
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "blocks"))
sys.path.insert(0, str(HERE))
import test_hf_gpt2 as G  # noqa: E402
from test_hf_llama import group_ids  # noqa: E402
from test_transformer_torch import (  # noqa: E402,F401  (lib is a fixture)
    I32, I64, P, check, classes, lib, lib_forward, one_hot_tokens, rel_diff)

BF16 = 4


class LoadOptions(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("activation", I32), ("copy", I32),
                ("parameter", ctypes.c_double)]


def load(lib, directory, copy):
    lib.fib_graph_group_name.argtypes = [P, I32]
    lib.fib_graph_group_name.restype = ctypes.c_char_p
    options = LoadOptions()
    lib.fib_load_options_init.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    check(lib, lib.fib_load_options_init(ctypes.byref(options), ctypes.sizeof(options)))
    options.copy = copy
    lib.fib_model_load.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(P)]
    handle = P()
    check(lib, lib.fib_model_load(str(directory).encode(), ctypes.byref(options),
                                  ctypes.byref(handle)))
    return handle


def read(lib, handle, group, n):
    out = np.zeros(n)
    lib.fib_graph_read_tensor.argtypes = [P, I32, I32, I32, ctypes.c_void_p, I64]
    check(lib, lib.fib_graph_read_tensor(handle, group, 0, 2, out.ctypes.data, n))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_gpt2_mapped_and_copied_graphs_agree(lib, tmp_path, dtype):
    model = G.model_in(dtype, 31)
    sd = G.tensors_of(model, dtype)
    d = G.write_checkpoint(tmp_path / "ckpt", sd, G.config(), 2)
    mapped, copied = load(lib, d, 0), load(lib, d, 1)
    coloring = [P(), P()]
    try:
        tokens, x = one_hot_tokens(G.VOCAB, 2, G.N_POS, 32)
        with torch.no_grad():
            want = model(tokens).numpy()
        got = [lib_forward(lib, h, x) for h in (mapped, copied)]
        assert np.array_equal(got[0], got[1])
        assert rel_diff(got[0], want) <= 1e-5
        ids = group_ids(lib, mapped)
        e = G.HIDDEN
        # tensors read out in the dense layout [out, in]: Conv1D transposed
        c_fc = sd["transformer.h.1.mlp.c_fc.weight"].to(torch.float64).numpy()
        for h in (mapped, copied):
            assert np.array_equal(read(lib, h, ids["transformer.h.1.mlp.c_fc"], 4 * e * e)
                                  .reshape(4 * e, e), c_fc.T)
            wte = sd["transformer.wte.weight"].to(torch.float64).numpy()
            assert np.array_equal(read(lib, h, ids["transformer.wte"], G.VOCAB * e)
                                  .reshape(e, G.VOCAB), wte.T)
            k = read(lib, h, ids["transformer.h.0.attn.k"], e * e).reshape(e, e)
            c_attn = sd["transformer.h.0.attn.c_attn.weight"].to(torch.float64).numpy()
            assert np.array_equal(k, c_attn[:, e:2 * e].T)
        held = I32()
        lib.fib_graph_tensor_dtype.argtypes = [P, I32, I32, ctypes.POINTER(I32)]
        check(lib, lib.fib_graph_tensor_dtype(mapped, ids["transformer.h.0.attn.q"], 0,
                                              ctypes.byref(held)))
        assert (held.value == BF16) == (dtype == torch.bfloat16)
        for i, h in enumerate((mapped, copied)):
            check(lib, lib.fib_color(h, None, ctypes.byref(coloring[i])))
        for name in ("transformer.h.0.mlp.c_fc", "transformer.wte", "transformer.h.1.attn.v"):
            n = 4 * e if name.endswith("c_fc") else e
            assert np.array_equal(classes(lib, coloring[0], ids[name], n),
                                  classes(lib, coloring[1], ids[name], n))
    finally:
        for c in coloring:
            lib.fib_coloring_free(c)
        lib.fib_graph_free(mapped)
        lib.fib_graph_free(copied)
