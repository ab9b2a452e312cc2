"""`fibration compress DIR -o OUT` and fib_base_save_checkpoint on Hugging
Face checkpoint directories (docs/model-files.md, "Bases of checkpoint
directories"): tiny random llama and GPT-2 checkpoints with planted
duplicated MLP units.

- the same number of merged units in every layer: OUT is a checkpoint
  directory in the model's layout (config.json with the new intermediate
  size, the checkpoint's tensor names, the model's dtype where exact);
- different numbers per layer: OUT is the library's own model file, and
  the summary says why;
- either base, loaded into fibration.torch's reference decoder (and by the
  library itself), gives the original's logits (relative difference
  <= 1e-5 in float32) on random token sequences;
- an existing non-empty OUT, or a file at OUT, is never replaced.

Run: /usr/bin/python3 -m pytest tests/io/test_hf_compress.py
(library from $FIBRATION_LIBRARY, command from $FIBRATION_CLI)."""
import ctypes
import json
import os
import pathlib
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "bindings" / "python"))
sys.path.insert(0, str(HERE.parent / "blocks"))
sys.path.insert(0, str(HERE))
import st_io  # noqa: E402
import test_hf_gpt2 as G  # noqa: E402
import test_hf_llama as L  # noqa: E402
from test_transformer_torch import (  # noqa: E402,F401  (lib is a fixture)
    P, check, lib, lib_forward, one_hot_tokens, plant_mlp, rel_diff)

if "FIBRATION_LIBRARY" not in os.environ:
    os.environ["FIBRATION_LIBRARY"] = str(HERE.parents[1] / "build" / "src" / "libfibration.so")
ft = pytest.importorskip("fibration.torch")


def compress(model_dir, out):
    r = subprocess.run([st_io.cli(), "compress", str(model_dir), "-o", str(out), "--json"],
                       capture_output=True, text=True)
    return r.returncode, (json.loads(r.stdout) if r.returncode == 0 else None), r.stderr


def llama_checkpoint(tmp_path, dtype, per_layer, shards=1, seed=22):
    """per_layer[i]: the (kept unit, copy) pairs planted in layer i."""
    model = L.model_in(dtype, seed)
    for i, pairs in enumerate(per_layer):
        mlp = model.layers[i].mlp
        with torch.no_grad():
            plant_mlp([mlp.gate_proj.weight, mlp.up_proj.weight], mlp.down_proj.weight,
                      pairs, seed + i)
            for p in mlp.parameters():
                p.copy_(p.to(dtype).to(torch.float32))
    d = L.write_checkpoint(tmp_path / "ckpt", L.tensors_of(model, dtype), L.config(), shards)
    return model, d


def gpt2_checkpoint(tmp_path, dtype, per_layer, seed=5):
    model = G.model_in(dtype, seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block, pairs in zip(model.h, per_layer):
            for i, j in pairs:  # Conv1D [in, out]: unit j is column j of c_fc
                block.c_fc.weight[:, j] = block.c_fc.weight[:, i]
                block.c_fc.bias[j] = block.c_fc.bias[i]
                total = block.mlp_proj.weight[i].clone()
                split = torch.rand(G.HIDDEN, generator=g)
                block.mlp_proj.weight[i] = split * total
                block.mlp_proj.weight[j] = (1 - split) * total
        for p in model.parameters():
            p.copy_(p.to(dtype).to(torch.float32))
    d = G.write_checkpoint(tmp_path / "ckpt", G.tensors_of(model, dtype), G.config())
    return model, d


def same_logits(reference, decoder, vocab, length, seed):
    tokens = torch.randint(0, vocab, (3, length), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        want, got = reference(tokens).numpy(), decoder(tokens).numpy()
    return rel_diff(got, want)


def header(path):
    tensors = {}
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        tensors = json.loads(fh.read(n))
    tensors.pop("__metadata__", None)
    return tensors


LLAMA_SAME = [[(3, 11), (4, 12)], [(3, 11), (5, 6)]]
LLAMA_DIFFERENT = [[(3, 11), (4, 12)], [(3, 11)]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16],
                         ids=["f32", "f16", "bf16"])
@pytest.mark.parametrize("shards", [1, 2])
def test_llama_base_in_checkpoint_layout_gives_same_logits(lib, tmp_path, dtype, shards):
    model, d = llama_checkpoint(tmp_path, dtype, LLAMA_SAME, shards)
    out = tmp_path / "base"
    rc, summary, err = compress(d, out)
    assert rc == 0, err
    assert summary["format"] == "checkpoint"
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["intermediate_size"] == L.INTER - 2
    assert {k: v for k, v in cfg.items() if k != "intermediate_size"} == \
        {k: v for k, v in L.config().items() if k != "intermediate_size"}
    tensors = header(out / "model.safetensors")
    assert set(tensors) == set(L.tensors_of(model, dtype))
    stored = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}[dtype]
    # unmerged tensors and the merged gate/up rows (copies) stay in the
    # model's dtype; the summed down columns are exact in float32
    assert tensors["model.layers.0.self_attn.q_proj.weight"]["dtype"] == stored
    assert tensors["model.layers.1.mlp.gate_proj.weight"]["dtype"] == stored
    assert tensors["model.layers.1.mlp.down_proj.weight"]["shape"] == [L.HIDDEN, L.INTER - 2]
    base = ft.load_decoder(out)
    assert same_logits(model, base, L.VOCAB, L.POSITIONS, 1) <= 1e-5
    assert same_logits(ft.load_decoder(d), base, L.VOCAB, 20, 2) <= 1e-5
    # the library reads the base directory as a checkpoint too
    handle = L.loaded(lib, out)
    try:
        tokens, x = one_hot_tokens(L.VOCAB, 2, L.POSITIONS, 3)
        with torch.no_grad():
            want = model(tokens).numpy()
        assert rel_diff(lib_forward(lib, handle, x), want) <= 1e-5
    finally:
        lib.fib_graph_free(handle)


def test_llama_layers_of_different_widths_give_library_format(lib, tmp_path):
    model, d = llama_checkpoint(tmp_path, torch.float32, LLAMA_DIFFERENT)
    out = tmp_path / "base"
    rc, summary, err = compress(d, out)
    assert rc == 0, err
    assert summary["format"] == "fibration"
    assert "MLP widths of the layers differ (22, then 23" in summary["reason"]
    assert out.is_file()
    base = ft.load_decoder(out, config=d)
    assert [layer.mlp.down_proj.weight.shape[1] for layer in base.model.layers] == \
        [L.INTER - 2, L.INTER - 1]
    assert same_logits(model, base, L.VOCAB, L.POSITIONS, 4) <= 1e-5
    assert same_logits(model, base, L.VOCAB, 24, 5) <= 1e-5


def test_output_named_safetensors_is_the_library_format(lib, tmp_path):
    model, d = llama_checkpoint(tmp_path, torch.float32, LLAMA_SAME)
    rc, summary, err = compress(d, tmp_path / "base.safetensors")
    assert rc == 0, err
    assert summary["format"] == "fibration"
    assert "ends in .safetensors" in summary["reason"]
    base = ft.load_decoder(tmp_path / "base.safetensors", config=d / "config.json")
    assert same_logits(model, base, L.VOCAB, L.POSITIONS, 6) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_gpt2_base_in_checkpoint_layout_gives_same_logits(lib, tmp_path, dtype):
    model, d = gpt2_checkpoint(tmp_path, dtype, [[(0, 9), (4, 30)], [(1, 2), (7, 40)]])
    out = tmp_path / "base"
    rc, summary, err = compress(d, out)
    assert rc == 0, err
    assert summary["format"] == "checkpoint"
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["n_inner"] == 4 * G.HIDDEN - 2
    tensors = header(out / "model.safetensors")
    assert tensors["transformer.h.0.mlp.c_fc.weight"]["shape"] == [G.HIDDEN, 4 * G.HIDDEN - 2]
    assert tensors["transformer.h.0.attn.c_attn.weight"]["shape"] == [G.HIDDEN, 3 * G.HIDDEN]
    assert "lm_head.weight" not in tensors  # tied, as the original
    # a block's tensors share a dtype: the summed c_proj weight is float32,
    # so its bias is too (the reader refuses mixed dtypes in a block)
    proj = tensors["transformer.h.0.mlp.c_proj.weight"]["dtype"]
    assert tensors["transformer.h.0.mlp.c_proj.bias"]["dtype"] == proj
    base = ft.load_decoder(out)
    assert same_logits(model, base, G.VOCAB, G.N_POS, 7) <= 1e-5
    assert same_logits(ft.load_decoder(d), base, G.VOCAB, G.N_POS, 8) <= 1e-5
    # the library reads the base directory as a checkpoint too
    handle = L.loaded(lib, out)
    try:
        tokens, x = one_hot_tokens(G.VOCAB, 2, G.N_POS, 3)
        with torch.no_grad():
            want = model(tokens).numpy()
        assert rel_diff(lib_forward(lib, handle, x), want) <= 1e-5
    finally:
        lib.fib_graph_free(handle)


def test_gpt2_layers_of_different_widths_give_library_format(lib, tmp_path):
    model, d = gpt2_checkpoint(tmp_path, torch.float32, [[(0, 9), (4, 30)], [(1, 2)]])
    out = tmp_path / "base"
    rc, summary, err = compress(d, out)
    assert rc == 0, err
    assert summary["format"] == "fibration" and "'n_inner'" in summary["reason"]
    base = ft.load_decoder(out, config=d)
    assert same_logits(model, base, G.VOCAB, G.N_POS, 9) <= 1e-5


def test_existing_output_is_never_replaced(lib, tmp_path):
    _, d = llama_checkpoint(tmp_path, torch.float32, LLAMA_SAME)
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    rc, _, err = compress(d, full)
    assert rc == 3 and "exists and is not empty; not replaced" in err
    assert os.listdir(full) == ["keep.txt"] and (full / "keep.txt").read_text() == "mine"
    a_file = tmp_path / "afile"
    a_file.write_text("mine")
    rc, _, err = compress(d, a_file)
    assert rc == 3 and "not a folder; not replaced" in err
    assert a_file.read_text() == "mine"
    # no temporary folder is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "ckpt", "full"]
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, summary, err = compress(d, empty)
    assert rc == 0 and summary["format"] == "checkpoint", err


def test_c_api_reports_what_it_wrote(lib, tmp_path):
    _, d = llama_checkpoint(tmp_path, torch.float32, LLAMA_DIFFERENT)
    lib.fib_base_save_checkpoint.argtypes = [P, P, ctypes.c_char_p, ctypes.c_char_p,
                                             ctypes.c_int32, ctypes.POINTER(ctypes.c_int32),
                                             ctypes.c_char_p, ctypes.c_size_t]
    handle = L.loaded(lib, d)
    coloring, base = P(), P()
    try:
        check(lib, lib.fib_color(handle, None, ctypes.byref(coloring)))
        check(lib, lib.fib_compress(handle, coloring, ctypes.byref(base)))
        saved, why = ctypes.c_int32(), ctypes.create_string_buffer(300)
        check(lib, lib.fib_base_save_checkpoint(base, handle, str(d).encode(),
                                                str(tmp_path / "b").encode(), 0,
                                                ctypes.byref(saved), why, 300))
        assert saved.value == 2  # FIB_SAVED_MODEL_FILE
        assert b"config.json holds one 'intermediate_size'" in why.value
        assert lib.fib_base_save_checkpoint(base, None, str(d).encode(), b"x", 0,
                                            ctypes.byref(saved), None, 0) != 0
        assert not (tmp_path / "x").exists()
    finally:
        lib.fib_base_free(base)
        lib.fib_coloring_free(coloring)
        lib.fib_graph_free(handle)


def test_python_base_save_checkpoint(lib, tmp_path):
    """fibration.Base.save_checkpoint: the C call from Python, both formats."""
    import fibration
    for per_layer, want in ((LLAMA_SAME, "checkpoint"), (LLAMA_DIFFERENT, "fibration")):
        model, d = llama_checkpoint(tmp_path / want, torch.float32, per_layer)
        g = fibration.Graph.load(str(d))
        base = g.compress(g.color())
        kind, reason = base.save_checkpoint(d, tmp_path / want / "base")
        assert kind == want and (reason == "") == (want == "checkpoint")
        decoder = ft.load_decoder(tmp_path / want / "base", config=d)
        assert same_logits(model, decoder, L.VOCAB, L.POSITIONS, 10) <= 1e-5
