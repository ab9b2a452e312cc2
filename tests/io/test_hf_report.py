"""`fibration analyze DIR --transformer` (docs/cli.md): the report by parts
of a transformer checkpoint, on tiny checkpoints with planted symmetry.

- BERT (post-norm): duplicated residual dimensions (embedding columns,
  rows of every projection adding to the stream, LayerNorm parameters) are
  reported once as the residual stream's classes; duplicated query/key
  dimensions, value dimensions and a duplicated head are reported under
  their layer and head, and nothing else merges; the base the command
  writes computes the reference encoder's outputs;
- Llama (grouped-query, rotary): the MLP part is the gate/up product, and
  planted key dimensions of a kv head are reported under every query head
  that reads it;
- the tolerance ladder: one count per level, never increasing, the exact
  level first;
- usage errors.

Run: /usr/bin/python3 -m pytest tests/io/test_hf_report.py"""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "blocks"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import st_io  # noqa: E402
import test_hf_bert as bert  # noqa: E402
import test_hf_llama as llama  # noqa: E402
from test_transformer_torch import lib, plant_mlp, rel_diff  # noqa: E402,F401

D = bert.HIDDEN // bert.HEADS  # BERT's head_dim


def report(directory, *args):
    r = subprocess.run([st_io.cli(), "analyze", "--transformer", "--json", str(directory),
                        *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def plant_residual(sd, i, j):
    """Residual dimension j duplicates i everywhere the stream is made:
    embedding columns, rows of the projections adding to it, LayerNorms."""
    e = "bert.embeddings."
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        w = sd[e + name + ".weight"]
        w[:, j] = w[:, i]
    norms = [e + "LayerNorm"]
    for layer in range(bert.LAYERS):
        p = bert.layer_names(layer)
        for proj in ("attention.output.dense", "output.dense"):
            sd[p + proj + ".weight"][j] = sd[p + proj + ".weight"][i]
            sd[p + proj + ".bias"][j] = sd[p + proj + ".bias"][i]
        norms += [p + "attention.output.LayerNorm", p + "output.LayerNorm"]
    for n in norms:
        sd[n + ".weight"][j] = sd[n + ".weight"][i]
        sd[n + ".bias"][j] = sd[n + ".bias"][i]


def copy_rows(sd, name, pairs):
    for i, j in pairs:
        sd[name + ".weight"][j] = sd[name + ".weight"][i]
        sd[name + ".bias"][j] = sd[name + ".bias"][i]


def planted_bert(seed):
    """Residual {2, 7}; layer 0: intermediate {1, 5}, head 1 value dims
    {1, 2}; layer 1: head 2 query and key dims {0, 3}, head 1 a copy of
    head 0."""
    sd = bert.random_weights(seed)
    bert.plant_intermediate(sd, 0, [(1, 5)], seed)
    plant_residual(sd, 2, 7)  # after the re-split: rows 2 and 7 of output.dense equal
    p0, p1 = bert.layer_names(0), bert.layer_names(1)
    copy_rows(sd, p0 + "attention.self.value", [(D + 1, D + 2)])
    for m in ("query", "key"):
        copy_rows(sd, p1 + "attention.self." + m, [(2 * D, 2 * D + 3)])
    for m in ("query", "key", "value"):
        copy_rows(sd, p1 + "attention.self." + m, [(d, D + d) for d in range(D)])
    return sd


def only(layer_report, expected):
    """Every part of every head merges nothing, except expected:
    {(head, part): merged lists at the exact level}."""
    for h, head in enumerate(layer_report["heads"]):
        for part in ("query", "key", "value_output"):
            want = expected.get((h, part), [])
            assert head[part]["merged"][0] == want, (h, part)
            assert head[part]["classes"][0] == head[part]["units"] - sum(
                len(c) - 1 for c in want), (h, part)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_bert_report_finds_planted_parts_under_their_layer_and_head(tmp_path, dtype):
    sd = bert.rounded(planted_bert(31), dtype)
    d = llama.write_checkpoint(tmp_path / "ckpt", bert.stored(sd, dtype), bert.config(), 2)
    r = report(d)
    assert [lv["tolerance"] for lv in r["levels"]] == ["exact"]
    stream = r["residual_stream"]
    assert stream["units"] == bert.HIDDEN
    assert stream["merged"][0] == [[2, 7]] and stream["classes"][0] == bert.HIDDEN - 1
    assert "bert.encoder.layer.1.output.LayerNorm" in stream["groups"]
    assert len(r["layers"]) == bert.LAYERS
    l0, l1 = r["layers"]
    assert l0["attention"] == "bert.encoder.layer.0.attention.self.core"
    assert l0["mlp"]["group"] == "bert.encoder.layer.0.intermediate.dense"
    assert l0["mlp"]["merged"][0] == [[1, 5]]
    assert l1["mlp"]["merged"][0] == []
    only(l0, {(1, "value_output"): [[1, 2]]})
    only(l1, {(2, "query"): [[0, 3]], (2, "key"): [[0, 3]]})
    assert [h["same_as_head"][0] for h in l0["heads"]] == [None, None, None]
    assert [h["same_as_head"][0] for h in l1["heads"]] == [None, 0, None]


def test_bert_planted_residual_base_equals_reference(lib, tmp_path):
    """Merging residual dimensions of a post-norm stream is exact: the base
    (residual, head and MLP merges) computes the reference's outputs."""
    sd = planted_bert(32)
    d = llama.write_checkpoint(tmp_path / "ckpt", sd, bert.config())
    handle = bert.compressed_base(lib, d, tmp_path / "base.safetensors")
    try:
        ids = llama.group_ids(lib, handle)
        # the last LayerNorm is the output, never merged; the stream before it is
        for name in ("bert.embeddings.LayerNorm", "bert.encoder.layer.1.mlp_residual",
                     "bert.encoder.layer.1.attention.output.LayerNorm"):
            assert bert.group_width(lib, handle, ids[name]) == bert.HIDDEN - 1, name
        assert bert.group_width(lib, handle, ids["bert.encoder.layer.1.attention.self.core"]) \
            < bert.HIDDEN
        tokens, types, x = bert.inputs(3, 33)
        assert rel_diff(bert.forward(lib, handle, x), bert.reference(sd, tokens, types)) <= 1e-5
    finally:
        lib.fib_graph_free(handle)
    # the base's sums gather: no one stream to report, its parts still are
    r = report(tmp_path / "base.safetensors")
    assert r["residual_stream"] is None and len(r["layers"]) == bert.LAYERS
    assert r["layers"][0]["mlp"]["units"] == bert.INTER - 1


def test_bert_report_ladder_levels_nest(tmp_path):
    sd = planted_bert(34)
    d = llama.write_checkpoint(tmp_path / "ckpt", sd, bert.config())
    r = report(d, "--tolerance-tree", "1,0.05,0.3")
    assert [(lv["tolerance"], lv["eps"]) for lv in r["levels"]] == [
        ("exact", 0), ("abs", 0.05), ("abs", 0.3), ("abs", 1)]
    parts = [r["residual_stream"]]
    for layer in r["layers"]:
        parts.append(layer["mlp"])
        for head in layer["heads"]:
            parts += [head["query"], head["key"], head["value_output"]]
            assert len(head["same_as_head"]) == 4
    for part in parts:
        counts = part["classes"]
        assert len(counts) == 4 and len(part["merged"]) == 4
        assert all(a >= b for a, b in zip(counts[1:], counts[2:])), part
        assert counts[0] >= counts[1], part
    for v in range(4):  # the planted classes hold at every level
        assert any({2, 7} <= set(c) for c in r["residual_stream"]["merged"][v]), v
        assert any({1, 5} <= set(c) for c in r["layers"][0]["mlp"]["merged"][v]), v
        assert r["layers"][1]["heads"][1]["same_as_head"][v] == 0, v
    # a wide tolerance merges more than the plants somewhere
    assert any(p["classes"][3] < p["classes"][0] for p in parts)


def test_llama_report_kv_dims_under_every_reading_head(tmp_path):
    """Grouped-query attention (4 query heads, 2 kv heads): key dimensions
    3 and 1 of kv head 1 duplicated appear under query heads 2 and 3; the
    MLP part is the gate/up product with its planted classes."""
    model = llama.model_in(torch.float32, 35)
    hd = llama.HIDDEN // llama.HEADS
    attn, mlp = model.layers[1].self_attn, model.layers[0].mlp
    with torch.no_grad():
        attn.k_proj.weight[hd + 3] = attn.k_proj.weight[hd + 1]
        plant_mlp([mlp.gate_proj.weight, mlp.up_proj.weight], mlp.down_proj.weight,
                  [(2, 9), (2, 11)], 35)
    d = llama.write_checkpoint(tmp_path / "ckpt", llama.tensors_of(model, torch.float32),
                               llama.config(), 2)
    r = report(d)
    l0, l1 = r["layers"]
    assert l0["mlp"]["group"] == "model.layers.0.mlp.product"
    assert l0["mlp"]["merged"][0] == [[2, 9, 11]]
    assert l1["mlp"]["merged"][0] == []
    assert [h["key"]["merged"][0] for h in l1["heads"]] == [[], [], [[1, 3]], [[1, 3]]]
    assert all(h["key"]["merged"][0] == [] for h in l0["heads"])
    assert all(h["query"]["merged"][0] == [] for h in l0["heads"] + l1["heads"])
    assert r["residual_stream"]["merged"][0] == []
    assert r["residual_stream"]["groups"] == [
        f"model.layers.{i}.{s}_residual" for i in range(llama.LAYERS) for s in ("attention", "mlp")]


def test_report_table_and_usage(tmp_path):
    sd = planted_bert(36)
    d = llama.write_checkpoint(tmp_path / "ckpt", sd, bert.config())
    r = subprocess.run([st_io.cli(), "analyze", "--transformer", str(d), "--tolerance-tree",
                        "0.1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    row = next(line for line in lines if line.startswith("all    residual"))
    assert row.split()[2:4] == [str(bert.HIDDEN), str(bert.HIDDEN - 1)]
    row = next(line for line in lines if line.startswith("1      head 1 v/o"))
    assert "same as head 0" in row
    for args, message in ((["--csv"], "--transformer writes a table or JSON, not CSV"),
                          (["--eps", "0.1"], "give the tolerances there"),
                          (["--symmetry", "all"], "does not combine with --transformer")):
        r = subprocess.run([st_io.cli(), "analyze", "--transformer", str(d), *args],
                           capture_output=True, text=True)
        assert r.returncode == 2 and message in r.stderr, r.stderr
    # a model without attention
    mlp = tmp_path / "mlp.safetensors"
    st_io.write(mlp, {"0.weight": np.ones((3, 2), np.float32), "2.weight": np.ones((1, 3),
                                                                                   np.float32)})
    r = subprocess.run([st_io.cli(), "analyze", "--transformer", str(mlp)], capture_output=True,
                       text=True)
    assert r.returncode == 4 and "no attention block" in r.stderr


def test_gpt2_report_duplicated_head_and_mlp(tmp_path):
    """GPT-2 (pre-norm, fused c_attn): head 2 of block 1 copies head 0 (its
    q, k and v columns of c_attn): same_as_head 0 there only; the MLP part
    is mlp.c_fc; the residual stream is the sums."""
    import test_hf_gpt2 as gpt2
    model = gpt2.model_in(torch.float32, 37)
    e, hd = gpt2.HIDDEN, gpt2.HIDDEN // gpt2.HEADS
    block = model.h[1]
    with torch.no_grad():
        for part in range(3):  # q, k, v columns of the Conv1D [in, 3E]
            src = part * e + torch.arange(hd)
            block.c_attn.weight[:, src + 2 * hd] = block.c_attn.weight[:, src]
            block.c_attn.bias[src + 2 * hd] = block.c_attn.bias[src]
    d = llama.write_checkpoint(tmp_path / "ckpt", gpt2.tensors_of(model, torch.float32),
                               gpt2.config(), 2)
    r = report(d)
    l0, l1 = r["layers"]
    assert l1["mlp"]["group"] == "transformer.h.1.mlp.c_fc"
    assert [h["same_as_head"][0] for h in l0["heads"]] == [None] * gpt2.HEADS
    assert [h["same_as_head"][0] for h in l1["heads"]] == [None, None, 0]
    for layer in (l0, l1):
        only(layer, {})
    assert r["residual_stream"]["groups"] == [
        f"transformer.h.{i}.{s}_residual" for i in range(gpt2.LAYERS)
        for s in ("attention", "mlp")]
