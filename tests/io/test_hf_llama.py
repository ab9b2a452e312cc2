"""Hugging Face checkpoint directories of model type "llama" (and "mistral",
"qwen2", which share its layout) read as stored
(docs/model-files.md): tiny random checkpoints with the tensor names,
shapes and config.json keys of transformers' LlamaForCausalLM, single-file
and sharded, float32 and bfloat16.

- the library's forward on the loaded graph equals a Llama reference
  written from the equations (tests/blocks/test_transformer_torch.py);
- bfloat16 weights are held as bfloat16 (no widened copy);
- duplicated MLP intermediate units (gate/up rows copied, down columns
  re-split) are found as exactly the planted classes;
- `fibration analyze DIR` reports the layers by their checkpoint names;
- every refusal names the key, tensor or file.

Run: /usr/bin/python3 -m pytest tests/io/test_hf_llama.py
(library from $FIBRATION_LIBRARY, command from $FIBRATION_CLI)."""
import ctypes
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "blocks"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import st_io  # noqa: E402
from test_transformer_torch import (  # noqa: E402,F401  (lib is a fixture)
    I32, I64, P, LlamaModel, canonical, check, classes, expected_labels, lib,
    lib_forward, one_hot_tokens, plant_mlp, randomise, rel_diff)

POSITIONS = 8  # the analysed sequence length of a checkpoint directory
F16, BF16 = 3, 4
VOCAB, HIDDEN, HEADS, KV_HEADS, INTER, LAYERS, THETA = 13, 16, 4, 2, 24, 2, 500000.0


def config(**changes):
    c = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
         "hidden_size": HIDDEN, "intermediate_size": INTER, "num_hidden_layers": LAYERS,
         "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
         "rms_norm_eps": 1e-6, "rope_theta": THETA, "vocab_size": VOCAB,
         "tie_word_embeddings": False, "hidden_act": "silu", "attention_bias": False,
         "mlp_bias": False, "rope_scaling": None, "max_position_embeddings": 64,
         "torch_dtype": "float32", "bos_token_id": 1, "eos_token_id": 2,
         "transformers_version": "4.44.0", "initializer_range": 0.02, "use_cache": True,
         "attention_dropout": 0.0, "pretraining_tp": 1}
    c.update(changes)
    return c


def state_dict(model):
    """The names transformers gives LlamaForCausalLM's tensors."""
    out = {}
    for name, t in model.state_dict().items():
        out[name if name.startswith("lm_head") else "model." + name] = t.detach().clone()
    return out


def write_safetensors(path, tensors):
    """tensors: name -> torch tensor (float32, float16 or bfloat16)."""
    def encoded(t):
        t = t.contiguous()
        if t.dtype == torch.bfloat16:
            return "BF16", list(t.shape), t.view(torch.int16).numpy().tobytes()
        if t.dtype == torch.float16:
            return "F16", list(t.shape), t.numpy().astype("<f2").tobytes()
        return t.to(torch.float32).numpy()
    st_io.write(path, {n: encoded(t) for n, t in tensors.items()})


def write_checkpoint(directory, tensors, cfg, shards=1):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(cfg, indent=2))
    names = list(tensors)
    if shards == 1:
        write_safetensors(directory / "model.safetensors", tensors)
        return directory
    weight_map = {}
    for k in range(shards):
        file = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        part = names[k::shards]
        write_safetensors(directory / file, {n: tensors[n] for n in part})
        weight_map.update({n: file for n in part})
    (directory / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": 0}, "weight_map": weight_map}))
    return directory


def model_in(dtype, seed, tied=False):
    """A random reference model whose weights are exactly representable in
    dtype (bfloat16 weights are the rounded ones, so both sides compute
    with the same values)."""
    model = randomise(LlamaModel(VOCAB, HIDDEN, HEADS, KV_HEADS, INTER, LAYERS, THETA), seed)
    with torch.no_grad():
        if tied:
            model.lm_head.weight = model.embed_tokens.weight
        for p in model.parameters():
            p.copy_(p.to(dtype).to(torch.float32))
    return model.eval()


def tensors_of(model, dtype, tied=False):
    sd = state_dict(model)
    if tied:
        del sd["lm_head.weight"]
    return {n: t.to(dtype) for n, t in sd.items()}


def load(lib, directory):
    lib.fib_graph_group_name.argtypes = [P, I32]
    lib.fib_graph_group_name.restype = ctypes.c_char_p
    handle = P()
    status = lib.fib_model_load(str(directory).encode(), None, ctypes.byref(handle))
    return status, handle


def loaded(lib, directory):
    status, handle = load(lib, directory)
    check(lib, status)
    return handle


def group_ids(lib, handle):
    n = I32()
    lib.fib_graph_num_groups.argtypes = [P, ctypes.POINTER(I32)]
    check(lib, lib.fib_graph_num_groups(handle, ctypes.byref(n)))
    return {lib.fib_graph_group_name(handle, i).decode(): i for i in range(n.value)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16],
                         ids=["f32", "f16", "bf16"])
@pytest.mark.parametrize("shards", [1, 3])
def test_llama_directory_forward_equals_reference(lib, tmp_path, dtype, shards):
    model = model_in(dtype, 11)
    d = write_checkpoint(tmp_path / "ckpt", tensors_of(model, dtype), config(), shards)
    handle = loaded(lib, d)
    try:
        tokens, x = one_hot_tokens(VOCAB, 3, POSITIONS, 5)
        with torch.no_grad():
            want = model(tokens).numpy()
        assert rel_diff(lib_forward(lib, handle, x), want) <= 1e-5
        ids = group_ids(lib, handle)
        assert "model.layers.1.mlp.down_proj" in ids and "lm_head" in ids
        if dtype != torch.float32:  # held as stored, not widened
            got = I32()
            for name in ("model.layers.0.mlp.gate_proj", "model.layers.0.self_attn.q_proj",
                         "lm_head"):
                check(lib, lib.fib_graph_tensor_dtype(handle, ids[name], 0, ctypes.byref(got)))
                assert got.value == (BF16 if dtype == torch.bfloat16 else F16), name
    finally:
        lib.fib_graph_free(handle)


def test_llama_directory_tied_head_equals_reference(lib, tmp_path):
    model = model_in(torch.float32, 12, tied=True)
    d = write_checkpoint(tmp_path / "ckpt", tensors_of(model, torch.float32, tied=True),
                         config(tie_word_embeddings=True))
    handle = loaded(lib, d)
    try:
        tokens, x = one_hot_tokens(VOCAB, 2, POSITIONS, 6)
        with torch.no_grad():
            want = model(tokens).numpy()
        assert rel_diff(lib_forward(lib, handle, x), want) <= 1e-5
    finally:
        lib.fib_graph_free(handle)


def test_llama_nan_in_tied_embedding_refused_by_name_once(lib, tmp_path):
    """The tied head reads the embedding's stored values, which the
    embedding checked: a NaN in them is refused once, named as the
    embedding."""
    sd = tensors_of(model_in(torch.float32, 12, tied=True), torch.bfloat16, tied=True)
    sd["model.embed_tokens.weight"][VOCAB - 1, 2] = float("nan")
    d = write_checkpoint(tmp_path / "ckpt", sd, config(tie_word_embeddings=True))
    status, handle = load(lib, d)
    assert status != 0 and not handle.value
    message = lib.fib_last_error().decode()
    assert "model.embed_tokens: " in message and f"embedding[{VOCAB - 1}, 2] is NaN" in message
    assert message.count("NaN") == 1 and "lm_head" not in message


def test_llama_directory_biases_and_head_dim_equal_reference(lib, tmp_path):
    """attention_bias and mlp_bias add .bias tensors; head_dim other than
    hidden / heads."""
    hd = 6
    model = model_in(torch.float32, 13)
    gen = torch.Generator().manual_seed(13)
    sd = state_dict(model)
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        for proj, rows, cols in (("q_proj", HEADS * hd, HIDDEN), ("k_proj", KV_HEADS * hd, HIDDEN),
                                 ("v_proj", KV_HEADS * hd, HIDDEN), ("o_proj", HIDDEN, HEADS * hd)):
            sd[p + f"self_attn.{proj}.weight"] = 0.4 * torch.randn(rows, cols, generator=gen)
            sd[p + f"self_attn.{proj}.bias"] = 0.4 * torch.randn(rows, generator=gen)
        for proj, rows in (("gate_proj", INTER), ("up_proj", INTER), ("down_proj", HIDDEN)):
            sd[p + f"mlp.{proj}.bias"] = 0.4 * torch.randn(rows, generator=gen)
    d = write_checkpoint(tmp_path / "ckpt", sd, config(head_dim=hd, attention_bias=True,
                                                       mlp_bias=True), shards=2)
    handle = loaded(lib, d)
    try:
        tokens, x = one_hot_tokens(VOCAB, 2, POSITIONS, 7)
        want = reference_logits(sd, tokens, hd)
        assert rel_diff(lib_forward(lib, handle, x), want) <= 1e-5
    finally:
        lib.fib_graph_free(handle)


def reference_logits(sd, tokens, hd):
    """Llama with biases and an explicit head_dim, from the equations."""
    from test_transformer_torch import apply_rotary, attend
    F = torch.nn.functional

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w

    def lin(x, name):
        return F.linear(x, sd[name + ".weight"], sd.get(name + ".bias"))

    with torch.no_grad():
        x = sd["model.embed_tokens.weight"][tokens]
        b, t, _ = x.shape
        for i in range(LAYERS):
            p = f"model.layers.{i}."
            n = rms(x, sd[p + "input_layernorm.weight"])
            q = lin(n, p + "self_attn.q_proj").view(b, t, HEADS, hd).transpose(1, 2)
            k = lin(n, p + "self_attn.k_proj").view(b, t, KV_HEADS, hd).transpose(1, 2)
            v = lin(n, p + "self_attn.v_proj").view(b, t, KV_HEADS, hd).transpose(1, 2)
            q, k = apply_rotary(q, THETA), apply_rotary(k, THETA)
            rep = HEADS // KV_HEADS
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            a = attend(q, k, v, causal=True).transpose(1, 2).reshape(b, t, -1)
            x = x + lin(a, p + "self_attn.o_proj")
            n = rms(x, sd[p + "post_attention_layernorm.weight"])
            x = x + lin(F.silu(lin(n, p + "mlp.gate_proj")) * lin(n, p + "mlp.up_proj"),
                        p + "mlp.down_proj")
        return lin(rms(x, sd["model.norm.weight"]), "lm_head").numpy()


def test_mistral_and_qwen2_directories_equal_reference(lib, tmp_path):
    """mistral: llama's layout with a sliding window (here wider than the
    analysed positions); qwen2: biases on q, k and v only."""
    hd = HIDDEN // HEADS
    for model_type in ("mistral", "qwen2"):
        model = model_in(torch.float32, 14)
        sd = state_dict(model)
        cfg = config(model_type=model_type, sliding_window=4096)
        for k in ("attention_bias", "mlp_bias", "pretraining_tp"):
            del cfg[k]
        if model_type == "qwen2":
            cfg.update(use_sliding_window=False, max_window_layers=LAYERS, sliding_window=2,
                       use_mrope=False)
            gen = torch.Generator().manual_seed(15)
            for i in range(LAYERS):
                for proj, rows in (("q_proj", HEADS * hd), ("k_proj", KV_HEADS * hd),
                                   ("v_proj", KV_HEADS * hd)):
                    sd[f"model.layers.{i}.self_attn.{proj}.bias"] = 0.4 * torch.randn(
                        rows, generator=gen)
        d = write_checkpoint(tmp_path / model_type, sd, cfg, shards=2)
        handle = loaded(lib, d)
        try:
            tokens, x = one_hot_tokens(VOCAB, 2, POSITIONS, 16)
            want = reference_logits(sd, tokens, hd)
            assert rel_diff(lib_forward(lib, handle, x), want) <= 1e-5, model_type
        finally:
            lib.fib_graph_free(handle)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_llama_directory_planted_mlp_classes_found(lib, tmp_path, dtype):
    model = model_in(dtype, 21)
    pairs = [(1, 5), (2, 17), (2, 20)]
    mlp = model.layers[0].mlp
    with torch.no_grad():
        plant_mlp([mlp.gate_proj.weight, mlp.up_proj.weight], mlp.down_proj.weight, pairs, 21)
        mlp.down_proj.weight.copy_(mlp.down_proj.weight.to(dtype).to(torch.float32))
    sd = tensors_of(model, dtype)
    # the re-split columns round separately in bfloat16: the rows copied
    # exactly are what makes the classes; the down columns only need a sum
    d = write_checkpoint(tmp_path / "ckpt", sd, config(), shards=2)
    handle = loaded(lib, d)
    coloring = P()
    try:
        check(lib, lib.fib_color(handle, None, ctypes.byref(coloring)))
        ids = group_ids(lib, handle)
        want = expected_labels(INTER, pairs)
        for part in ("gate_proj", "up_proj", "product"):
            got = classes(lib, coloring, ids[f"model.layers.0.mlp.{part}"], INTER)
            assert np.array_equal(got, want), part
            got = classes(lib, coloring, ids[f"model.layers.1.mlp.{part}"], INTER)
            assert len(set(got)) == INTER, part
    finally:
        lib.fib_coloring_free(coloring)
        lib.fib_graph_free(handle)


def test_cli_analyze_directory(tmp_path):
    model = model_in(torch.bfloat16, 31)
    d = write_checkpoint(tmp_path / "ckpt", tensors_of(model, torch.bfloat16), config(), 2)
    r = subprocess.run([st_io.cli(), "analyze", "--json", str(d)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    text = json.dumps(report)
    for name in ("model.embed_tokens", "model.layers.1.mlp.gate_proj",
                 "model.layers.0.self_attn.core", "lm_head"):
        assert name in text
    empty = tmp_path / "empty"
    empty.mkdir()
    r = subprocess.run([st_io.cli(), "analyze", str(empty)], capture_output=True, text=True)
    assert r.returncode == 3
    assert "config.json: cannot open: No such file or directory" in r.stderr


# ---- refusals -------------------------------------------------------------------

def remove(name):
    return lambda sd, cfg: sd.pop(name)


def reshape(name):
    def change(sd, cfg):
        sd[name] = sd[name][:-1]
    return change


def extra(name):
    def change(sd, cfg):
        sd[name] = torch.zeros(3)
    return change


def set_key(key, value):
    def change(sd, cfg):
        cfg[key] = value
    return change


def retype(name):
    def change(sd, cfg):
        sd[name] = sd[name].to(torch.bfloat16)
    return change


REFUSALS = [
    (set_key("model_type", "gpt_neox"), "model_type 'gpt_neox' is not supported"),
    (set_key("use_sliding_window", True), "key 'use_sliding_window' is not supported"),
    (set_key("rope_scaling", {"type": "linear", "factor": 2.0}),
     "key 'rope_scaling' is not supported"),
    (set_key("sliding_window", 4), "key 'sliding_window' is not supported"),
    (set_key("hidden_act", "gelu"), "hidden_act 'gelu' is not supported"),
    (set_key("partial_rotary_factor", 0.5), "key 'partial_rotary_factor' is not supported"),
    (set_key("num_key_value_heads", 3), "num_attention_heads 4 is not a multiple"),
    (set_key("rms_norm_eps", -1), "key 'rms_norm_eps' must be a positive number"),
    (lambda sd, cfg: cfg.pop("vocab_size"), "key 'vocab_size' is missing"),
    (remove("model.layers.1.mlp.up_proj.weight"),
     "tensor 'model.layers.1.mlp.up_proj.weight' is missing"),
    (remove("lm_head.weight"), "tensor 'lm_head.weight' is missing"),
    (reshape("model.layers.0.self_attn.k_proj.weight"),
     "tensor 'model.layers.0.self_attn.k_proj.weight' has shape [7, 16], expected [8, 16]"),
    (reshape("model.norm.weight"), "tensor 'model.norm.weight' has shape [15], expected [16]"),
    (extra("model.layers.0.self_attn.rotary_emb.inv_freq"),
     "tensor 'model.layers.0.self_attn.rotary_emb.inv_freq' is not part of the model"),
    (extra("model.layers.0.mlp.gate_proj.bias"),
     "tensor 'model.layers.0.mlp.gate_proj.bias' is not part of the model"),
    (retype("model.layers.0.self_attn.v_proj.weight"),
     "'model.layers.0.self_attn.v_proj.weight' is BF16 but"),
]


@pytest.mark.parametrize("case", range(len(REFUSALS)))
def test_llama_directory_refusal_names_what(lib, tmp_path, case):
    change, message = REFUSALS[case]
    model = model_in(torch.float32, 41)
    sd, cfg = tensors_of(model, torch.float32), config()
    change(sd, cfg)
    d = write_checkpoint(tmp_path / "ckpt", sd, cfg)
    status, handle = load(lib, d)
    assert status != 0 and not handle.value
    error = lib.fib_last_error().decode()
    assert message in error
    assert str(d) in error  # names the directory or the file


def test_llama_shard_index_refusals(lib, tmp_path):
    model = model_in(torch.float32, 42)
    sd = tensors_of(model, torch.float32)
    d = write_checkpoint(tmp_path / "ckpt", sd, config(), shards=2)
    index = d / "model.safetensors.index.json"
    doc = json.loads(index.read_text())
    # a tensor of a shard not listed in the index
    moved = dict(doc["weight_map"])
    name = "model.norm.weight"
    del moved[name]
    index.write_text(json.dumps({"weight_map": moved}))
    status, _ = load(lib, d)
    assert status != 0
    assert f"tensor '{name}' is not listed under this file" in lib.fib_last_error().decode()
    # a missing shard
    index.write_text(json.dumps(doc))
    (d / "model-00002-of-00002.safetensors").unlink()
    status, _ = load(lib, d)
    assert status != 0
    assert "model-00002-of-00002.safetensors" in lib.fib_last_error().decode()
    # both layouts at once
    write_safetensors(d / "model.safetensors", sd)
    status, _ = load(lib, d)
    assert status != 0 and "ambiguous" in lib.fib_last_error().decode()
    # a folder is a model, never a base
    (d / "model.safetensors").unlink()
    index.write_text(json.dumps(doc))
    write_checkpoint(d, sd, config(), shards=2)
    check(lib, load(lib, d)[0])
    lib.fib_base_load.argtypes = [ctypes.c_char_p, P, ctypes.POINTER(P)]
    base = P()
    assert lib.fib_base_load(str(d).encode(), None, ctypes.byref(base)) != 0
    assert "is a model, not a base" in lib.fib_last_error().decode()


def test_qwen2_window_refused_when_used(lib, tmp_path):
    model = model_in(torch.float32, 43)
    sd = tensors_of(model, torch.float32)
    for i in range(LAYERS):
        for proj, rows in (("q_proj", HIDDEN), ("k_proj", HIDDEN // 2), ("v_proj", HIDDEN // 2)):
            sd[f"model.layers.{i}.self_attn.{proj}.bias"] = torch.zeros(rows)
    cfg = config(model_type="qwen2", use_sliding_window=True, sliding_window=4)
    status, _ = load(lib, write_checkpoint(tmp_path / "ckpt", sd, cfg))
    assert status != 0
    assert "key 'sliding_window' is not supported below the 8" in lib.fib_last_error().decode()
    cfg = config(model_type="qwen2", use_mrope=True)
    status, _ = load(lib, write_checkpoint(tmp_path / "ckpt", sd, cfg))
    assert status != 0
    assert "key 'use_mrope' is not supported (only false)" in lib.fib_last_error().decode()


def test_cli_compress_directory_base_gives_same_logits(lib, tmp_path):
    """`fibration compress DIR -o BASE` writes the base in the library's own
    format: the planted MLP units are merged, and the base computes the
    checkpoint's logits."""
    model = model_in(torch.bfloat16, 22)
    pairs = [(3, 11), (3, 12)]
    mlp = model.layers[1].mlp
    with torch.no_grad():
        plant_mlp([mlp.gate_proj.weight, mlp.up_proj.weight], mlp.down_proj.weight, pairs, 22)
    d = write_checkpoint(tmp_path / "ckpt", tensors_of(model, torch.float32), config(), 2)
    base = tmp_path / "base.safetensors"
    r = subprocess.run([st_io.cli(), "compress", str(d), "-o", str(base)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    handle = loaded(lib, base)
    try:
        ids = group_ids(lib, handle)
        n = I64()
        check(lib, lib.fib_graph_group_info(handle, ids["model.layers.1.mlp.product"], None,
                                            ctypes.byref(n), None, None, None, None, None))
        assert n.value == INTER - len(pairs)
        tokens, x = one_hot_tokens(VOCAB, 2, POSITIONS, 23)
        with torch.no_grad():
            want = model(tokens).numpy()
        assert rel_diff(lib_forward(lib, handle, x), want) <= 1e-5
    finally:
        lib.fib_graph_free(handle)
