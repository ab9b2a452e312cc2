"""`fibration lift BASE_DIR -o OUT` on base checkpoint directories that
`fibration compress DIR -o BASE_DIR` wrote in the model's layout
(docs/model-files.md, "Bases of checkpoint directories"; docs/cli.md):

- the base directory records its projection (model.safetensors metadata
  "fibration_projection"), and the lift is a checkpoint directory in the
  same layout with the original's widths and tensor names, computing the
  original's function (llama, GPT-2, BERT with its heads);
- a base changed in place (as by fine-tuning) lifts to a model computing
  the changed base's function, with the original's widths;
- a checkpoint folder without a projection is refused by name, and an
  existing non-empty OUT is never replaced.

Run: /usr/bin/python3 -m pytest tests/io/test_hf_lift.py"""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "bindings" / "python"))
sys.path.insert(0, str(HERE.parent / "blocks"))
sys.path.insert(0, str(HERE))
import st_io  # noqa: E402
import test_hf_bert as B  # noqa: E402
import test_hf_bert_compress as BC  # noqa: E402
import test_hf_compress as C  # noqa: E402
import test_hf_gpt2 as G  # noqa: E402
import test_hf_llama as L  # noqa: E402
from test_transformer_torch import lib  # noqa: E402,F401  (lib is a fixture)

if "FIBRATION_LIBRARY" not in os.environ:
    os.environ["FIBRATION_LIBRARY"] = str(HERE.parents[1] / "build" / "src" / "libfibration.so")
ft = pytest.importorskip("fibration.torch")


def run(*args):
    return subprocess.run([st_io.cli(), *map(str, args)], capture_output=True, text=True)


def compressed_and_lifted(d, tmp_path):
    base, lifted = tmp_path / "base", tmp_path / "lifted"
    summary = C.compress(d, base)[1]
    assert summary["format"] == "checkpoint", summary
    r = run("lift", base, "-o", lifted)
    assert r.returncode == 0, r.stderr
    assert "a checkpoint directory in the model's layout" in r.stdout
    assert sorted(os.listdir(lifted)) == ["config.json", "model.safetensors"]
    return base, lifted


def same_layout(original, lifted):
    """The lift has the original's config (its MLP width stated: GPT-2's
    n_inner null means 4 n_embd) and every tensor under its name and shape
    (no projection: it is a model, not a base)."""
    widths = ("n_inner", "intermediate_size")
    got_cfg = json.loads((lifted / "config.json").read_text())
    want_cfg = json.loads((original / "config.json").read_text())
    assert {k: v for k, v in got_cfg.items() if k not in widths} == \
        {k: v for k, v in want_cfg.items() if k not in widths}
    want = {}
    for f in original.glob("*.safetensors"):
        want.update({n: t["shape"] for n, t in C.header(f).items()})
    got = {n: t["shape"] for n, t in C.header(lifted / "model.safetensors").items()}
    assert got == want
    with open(lifted / "model.safetensors", "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        assert "fibration_projection" not in json.loads(fh.read(n)).get("__metadata__", {})


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_llama_base_directory_lifts_to_original_layout(lib, tmp_path, dtype):
    model, d = C.llama_checkpoint(tmp_path, dtype, C.LLAMA_SAME, shards=2)
    base, lifted = compressed_and_lifted(d, tmp_path)
    with open(base / "model.safetensors", "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        meta = json.loads(fh.read(n))["__metadata__"]
    assert meta["format"] == "pt" and len(json.loads(meta["fibration_projection"])) > 0
    same_layout(d, lifted)
    assert C.same_logits(model, ft.load_decoder(lifted), L.VOCAB, L.POSITIONS, 11) <= 1e-5


def test_gpt2_base_directory_lifts_to_original_layout(lib, tmp_path):
    model, d = C.gpt2_checkpoint(tmp_path, torch.bfloat16, [[(0, 9), (4, 30)], [(1, 2), (7, 40)]])
    _, lifted = compressed_and_lifted(d, tmp_path)
    same_layout(d, lifted)
    assert C.same_logits(model, ft.load_decoder(lifted), G.VOCAB, G.N_POS, 12) <= 1e-5


def test_bert_base_directory_lifts_to_original_layout(lib, tmp_path):
    sd = BC.planted(91, BC.SAME, torch.float32, "pretraining")
    d = L.write_checkpoint(tmp_path / "ckpt", sd, B.config())
    _, lifted = compressed_and_lifted(d, tmp_path)
    same_layout(d, lifted)
    enc = ft.load_encoder(lifted)
    assert BC.same_hidden_states(sd, enc, 92, mlm=False) <= 1e-5
    assert BC.same_hidden_states(sd, enc, 93, mlm=True) <= 1e-5


def test_changed_base_directory_lifts_to_its_function(lib, tmp_path):
    """A base whose weights changed in place (shapes and metadata kept, as
    after fine-tuning) lifts to the changed base's function at the
    original's widths."""
    model, d = C.llama_checkpoint(tmp_path, torch.float32, C.LLAMA_SAME)
    base = tmp_path / "base"
    assert C.compress(d, base)[1]["format"] == "checkpoint"
    path = base / "model.safetensors"
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        entry = json.loads(fh.read(n))["model.layers.1.mlp.down_proj.weight"]
    assert entry["dtype"] == "F32"
    begin, end = entry["data_offsets"]
    data = np.memmap(path, dtype=np.float32, mode="r+", offset=8 + n + begin,
                     shape=((end - begin) // 4,))
    data *= 1.5  # the "fine-tuned" down projection
    data.flush()
    del data
    changed = ft.load_decoder(base)
    lifted = tmp_path / "lifted"
    r = run("lift", base, "-o", lifted)
    assert r.returncode == 0, r.stderr
    lifted_model = ft.load_decoder(lifted)
    assert [layer.mlp.down_proj.weight.shape[1] for layer in lifted_model.model.layers] == \
        [L.INTER] * L.LAYERS
    assert C.same_logits(changed, lifted_model, L.VOCAB, L.POSITIONS, 13) <= 1e-5
    assert C.same_logits(model, lifted_model, L.VOCAB, L.POSITIONS, 14) > 1e-3


def test_lift_refuses_a_checkpoint_without_projection_and_never_replaces(lib, tmp_path):
    _, d = C.llama_checkpoint(tmp_path, torch.float32, C.LLAMA_SAME)
    r = run("lift", d, "-o", tmp_path / "out")
    assert r.returncode == 4
    assert "no 'fibration_projection' metadata" in r.stderr and str(d) in r.stderr
    assert not (tmp_path / "out").exists()
    base = tmp_path / "base"
    C.compress(d, base)
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    r = run("lift", base, "-o", full)
    assert r.returncode == 3 and "exists and is not empty; not replaced" in r.stderr
    assert os.listdir(full) == ["keep.txt"]


def test_python_lifts_a_base_directory_into_the_layout(lib, tmp_path):
    """fibration.Graph.save_checkpoint: the lift of a base directory's
    weights (Base.lift(Graph.load(BASE_DIR))) written in the layout."""
    import fibration
    model, d = C.llama_checkpoint(tmp_path, torch.float32, C.LLAMA_SAME)
    g = fibration.Graph.load(str(d))
    base = g.compress(g.color())
    assert base.save_checkpoint(d, tmp_path / "base") == ("checkpoint", "")
    weights = fibration.Graph.load(str(tmp_path / "base"))
    lifted = base.lift(weights)
    kind, reason = lifted.save_checkpoint(weights, tmp_path / "base", tmp_path / "lifted")
    assert (kind, reason) == ("checkpoint", "")
    same_layout(d, tmp_path / "lifted")
    assert C.same_logits(model, ft.load_decoder(tmp_path / "lifted"), L.VOCAB, L.POSITIONS,
                         15) <= 1e-5


def test_python_base_load_lifts_a_base_directory(lib, tmp_path):
    """fibration.Base.load(BASE_DIR) reads a base directory with its
    projection, without the original graph: its lift (float32 layers, as
    the float32 checkpoint) written in the layout is the directory
    `fibration lift BASE_DIR` writes and computes the original's logits,
    and saved again from the original directory it is the base directory."""
    import ctypes
    import fibration
    model, d = C.llama_checkpoint(tmp_path, torch.float32, C.LLAMA_SAME)
    g = fibration.Graph.load(str(d))
    base = g.compress(g.color(), dtype="float32")  # as `fibration compress` makes it
    assert base.save_checkpoint(d, tmp_path / "base") == ("checkpoint", "")
    loaded = fibration.Base.load(str(tmp_path / "base"))
    assert loaded.original is None
    for group in range(g.num_groups):
        np.testing.assert_array_equal(loaded.projection(group), base.projection(group))
    lifted = loaded.lift()
    for group in range(lifted.num_groups):
        if lifted.group(group).op == "dense":
            held = ctypes.c_int32()
            fibration.check(fibration.lib.fib_graph_tensor_dtype(
                lifted._cp(), group, 0, ctypes.byref(held)), "fib_graph_tensor_dtype")
            assert held.value == fibration.DTYPE_F32, lifted.group(group).name
    assert lifted.save_checkpoint(loaded.graph, tmp_path / "base", tmp_path / "lifted") == \
        ("checkpoint", "")
    r = run("lift", tmp_path / "base", "-o", tmp_path / "by_cli")
    assert r.returncode == 0, r.stderr
    for name in ("config.json", "model.safetensors"):
        assert (tmp_path / "lifted" / name).read_bytes() == \
            (tmp_path / "by_cli" / name).read_bytes()
    assert C.same_logits(model, ft.load_decoder(tmp_path / "lifted"), L.VOCAB, L.POSITIONS,
                         16) <= 1e-5
    assert loaded.save_checkpoint(d, tmp_path / "again") == ("checkpoint", "")
    for name in ("config.json", "model.safetensors"):
        assert (tmp_path / "again" / name).read_bytes() == \
            (tmp_path / "base" / name).read_bytes()
