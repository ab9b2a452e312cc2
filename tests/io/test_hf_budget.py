"""`fibration compress --budget F DIR -o OUT` on GPT-2, BERT and Llama
checkpoint directories (attention in budgets, issue 26;
docs/compression.md, "Attention"):

- a GPT-2 with a copied head (q, k and v columns of head 2 those of head
  0 in every layer) keeps its logits (relative difference <= 1e-5 in
  float32) under the budget of its exact base, the copied head merged
  whole;
- smaller budgets are met on GPT-2 (causal attention through Conv1D
  weights), BERT and Llama (rotary, grouped key/value heads: their
  projections keep their units), the written base counting what the
  summary says.

Run: /usr/bin/python3 -m pytest tests/io/test_hf_budget.py
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
import test_hf_bert as B  # noqa: E402
import test_hf_gpt2 as G  # noqa: E402
import test_hf_llama as L  # noqa: E402
from test_transformer_torch import (  # noqa: E402,F401  (lib is a fixture)
    I64, check, lib, lib_forward, one_hot_tokens, rel_diff)

if "FIBRATION_LIBRARY" not in os.environ:
    os.environ["FIBRATION_LIBRARY"] = str(HERE.parents[1] / "build" / "src" / "libfibration.so")


def compress(model_dir, out, *options):
    r = subprocess.run([st_io.cli(), "compress", "--json", *options, str(model_dir),
                        "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def width(lib, handle, name):
    n = I64()
    check(lib, lib.fib_graph_group_info(handle, L.group_ids(lib, handle)[name], None,
                                        ctypes.byref(n), None, None, None, None, None))
    return n.value


def counted(lib, handle):
    n = I64()
    check(lib, lib.fib_graph_budget_parameters(handle, ctypes.byref(n)))
    return n.value


def counted_base(lib, handle, original):
    """What the summary counts of a written base: a tied LM head's matrix
    counts once while the embedding keeps its units (the tie stays), but
    the library's own file stores it again."""
    n = I64()
    check(lib, lib.fib_graph_num_parameters(original, ctypes.byref(n)))
    shared = n.value - counted(lib, original)  # the tied matrix, counted once
    names = L.group_ids(lib, original)
    embedding = [e for e in ("transformer.wte", "bert.embeddings.word_embeddings") if e in names]
    kept = embedding and width(lib, handle, embedding[0]) == width(lib, original, embedding[0])
    return counted(lib, handle) - (shared if kept else 0)


def gpt2_with_copied_head(seed=31):
    model = G.model_in(torch.float32, seed)
    e, d = G.HIDDEN, G.HIDDEN // G.HEADS
    with torch.no_grad():
        for block in model.h:
            for part in range(3):  # q, k, v columns of head 2 = head 0's
                at = part * e
                block.c_attn.weight[:, at + 2 * d:at + 3 * d] = block.c_attn.weight[:, at:at + d]
                block.c_attn.bias[at + 2 * d:at + 3 * d] = block.c_attn.bias[at:at + d]
    return model


def test_gpt2_copied_head_merges_under_the_budget_of_its_exact_base(lib, tmp_path):
    model = gpt2_with_copied_head()
    d = L.write_checkpoint(tmp_path / "ckpt", G.tensors_of(model, torch.float32), G.config())
    exact = compress(d, tmp_path / "exact.safetensors")
    fraction = exact["base_parameters"] / exact["parameters"]
    assert fraction < 0.95
    got = compress(d, tmp_path / "budget.safetensors", "--budget", repr(fraction))
    assert got["base_parameters"] <= exact["base_parameters"]
    handle = L.loaded(lib, tmp_path / "budget.safetensors")
    try:
        original = L.loaded(lib, d)
        try:
            assert counted(lib, original) == sum(p.numel() for p in model.parameters())
            assert counted_base(lib, handle, original) == got["base_parameters"]
        finally:
            lib.fib_graph_free(original)
        hd = G.HIDDEN // G.HEADS
        for i in range(G.LAYERS):  # the copied head merged whole: one head fewer
            assert width(lib, handle, "transformer.h.%d.attn.core" % i) == G.HIDDEN - hd
        tokens, x = one_hot_tokens(G.VOCAB, 3, G.N_POS, 32)
        with torch.no_grad():
            want = model(tokens).numpy()
        assert rel_diff(lib_forward(lib, handle, x), want) <= 1e-5
    finally:
        lib.fib_graph_free(handle)


def bert_directory(tmp_path):
    return L.write_checkpoint(tmp_path / "ckpt", B.random_weights(3), B.config())


def gpt2_directory(tmp_path):
    return L.write_checkpoint(tmp_path / "ckpt", G.tensors_of(G.model_in(torch.float32, 3),
                                                              torch.float32), G.config())


def llama_directory(tmp_path):
    return L.write_checkpoint(tmp_path / "ckpt", L.tensors_of(L.model_in(torch.float32, 3),
                                                              torch.float32), L.config())


@pytest.mark.parametrize("make", [gpt2_directory, bert_directory, llama_directory],
                         ids=["gpt2", "bert", "llama"])
@pytest.mark.parametrize("budget", [0.6, 0.4])
def test_budget_on_transformer_checkpoints_is_met(lib, tmp_path, make, budget):
    d = make(tmp_path)
    got = compress(d, tmp_path / "base.safetensors", "--budget", repr(budget))
    assert got["base_parameters"] <= budget * got["parameters"]
    original, handle = L.loaded(lib, d), L.loaded(lib, tmp_path / "base.safetensors")
    try:
        assert counted(lib, original) == got["parameters"]
        assert counted_base(lib, handle, original) == got["base_parameters"]
        if make is llama_directory:  # rotary, grouped key/value heads: kept whole
            for part in ("q_proj", "k_proj", "v_proj", "core"):
                name = "model.layers.0.self_attn." + part
                assert width(lib, handle, name) == width(lib, original, name)
    finally:
        lib.fib_graph_free(handle)
        lib.fib_graph_free(original)


@pytest.mark.parametrize("copy", [True, False], ids=["copied", "mapped"])
def test_tied_head_counts_once_however_loaded(tmp_path, copy):
    """A tied LM head (GPT-2's, a tied Llama's) reads the embedding's matrix
    in the graph whether the file is mapped or copied: a budget counts it
    once, as torch counts the model's parameters."""
    import fibration
    gpt2 = G.model_in(torch.float32, 3)
    llama = L.model_in(torch.float32, 3, tied=True)
    dirs = [(gpt2, L.write_checkpoint(tmp_path / "gpt2", G.tensors_of(gpt2, torch.float32),
                                      G.config())),
            (llama, L.write_checkpoint(tmp_path / "llama",
                                       L.tensors_of(llama, torch.float32, tied=True),
                                       L.config(tie_word_embeddings=True)))]
    for model, d in dirs:
        graph = fibration.Graph.load(str(d), copy=copy)
        n = ctypes.c_int64()
        fibration.check(fibration.lib.fib_graph_budget_parameters(graph._cp(), ctypes.byref(n)),
                        "fib_graph_budget_parameters")
        assert n.value == sum(p.numel() for p in model.parameters()) < graph.num_parameters
