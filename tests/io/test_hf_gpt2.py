"""Hugging Face checkpoint directories of model type "gpt2" read as stored
(docs/model-files.md): tiny random checkpoints with the tensor names
(with and without the "transformer." prefix), Conv1D shapes [in, out] and
config.json keys of transformers' GPT2LMHeadModel, single-file and sharded,
float32 and bfloat16.

- the library's forward equals a GPT-2 reference written from the
  equations (tests/blocks/test_transformer_torch.py, plus the learned
  position embedding wpe);
- duplicated MLP units (c_fc columns copied, c_proj rows re-split) are
  found as exactly the planted classes;
- the graph spans all n_positions: residual units equal on the first 8
  rows of wpe but not later stay apart;
- refusals name the key or tensor; a NaN in the tied wte is named once,
  as wte (the tied head does not check the same stored values again).

Run: /usr/bin/python3 -m pytest tests/io/test_hf_gpt2.py"""
import ctypes
import json
import pathlib
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "blocks"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from test_hf_llama import (  # noqa: E402
    group_ids, load, loaded, write_checkpoint)
from test_transformer_torch import (  # noqa: E402,F401  (lib is a fixture)
    P, Gpt2Model, check, classes, expected_labels, lib, lib_forward, one_hot_tokens,
    randomise, rel_diff)

VOCAB, HIDDEN, HEADS, LAYERS, N_POS = 11, 12, 3, 2, 16


class Gpt2WithPositions(Gpt2Model):
    def __init__(self):
        super().__init__(VOCAB, HIDDEN, HEADS, LAYERS)
        self.wpe = torch.nn.Embedding(N_POS, HIDDEN)

    def forward(self, tokens):
        x = self.wte(tokens) + self.wpe.weight[:tokens.shape[1]]
        for block in self.h:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.T


def config(**changes):
    c = {"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"],
         "attn_pdrop": 0.1, "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256,
         "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "model_type": "gpt2",
         "n_ctx": N_POS, "n_embd": HIDDEN, "n_head": HEADS, "n_inner": None,
         "n_layer": LAYERS, "n_positions": N_POS, "resid_pdrop": 0.1,
         "summary_activation": None, "summary_first_dropout": 0.1,
         "summary_proj_to_labels": True, "summary_type": "cls_index", "summary_use_proj": True,
         "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
         "vocab_size": VOCAB}
    c.update(changes)
    return c


def model_in(dtype, seed):
    model = randomise(Gpt2WithPositions(), seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).to(torch.float32))
    return model.eval()


def tensors_of(model, dtype, prefix="transformer.", buffers=False):
    """GPT2LMHeadModel's names (lm_head tied: not stored)."""
    rename = {"c_attn": "attn.c_attn", "c_proj": "attn.c_proj", "c_fc": "mlp.c_fc",
              "mlp_proj": "mlp.c_proj"}
    out = {}
    for name, t in model.state_dict().items():
        parts = name.split(".")
        if parts[0] == "h":
            parts[2] = rename.get(parts[2], parts[2])
        out[prefix + ".".join(parts)] = t.detach().clone().to(dtype)
    if buffers:  # the causal-mask buffers of the hub's original files
        for i in range(LAYERS):
            out[f"{prefix}h.{i}.attn.bias"] = torch.tril(
                torch.ones(N_POS, N_POS)).view(1, 1, N_POS, N_POS).to(dtype)
            out[f"{prefix}h.{i}.attn.masked_bias"] = torch.tensor(-1e4).to(dtype)
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("layout", ["single", "sharded", "hub"])
def test_gpt2_directory_forward_equals_reference(lib, tmp_path, dtype, layout):
    model = model_in(dtype, 3)
    if layout == "hub":
        sd = tensors_of(model, dtype, prefix="", buffers=True)
    else:
        sd = tensors_of(model, dtype)
    d = write_checkpoint(tmp_path / "ckpt", sd, config(), 3 if layout == "sharded" else 1)
    handle = loaded(lib, d)
    try:
        tokens, x = one_hot_tokens(VOCAB, 3, N_POS, 4)
        with torch.no_grad():
            want = model(tokens).numpy()
        assert rel_diff(lib_forward(lib, handle, x), want) <= 1e-5
    finally:
        lib.fib_graph_free(handle)


def test_gpt2_directory_planted_mlp_classes_found(lib, tmp_path):
    model = model_in(torch.float32, 5)
    block = model.h[0]
    pairs, inner = [(0, 9), (4, 30), (4, 31)], 4 * HIDDEN
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for i, j in pairs:  # Conv1D [in, out]: unit j is column j of c_fc
            block.c_fc.weight[:, j] = block.c_fc.weight[:, i]
            block.c_fc.bias[j] = block.c_fc.bias[i]
            split = torch.rand(HIDDEN, generator=g)
            total = block.mlp_proj.weight[i].clone()
            block.mlp_proj.weight[i], block.mlp_proj.weight[j] = split * total, (1 - split) * total
    d = write_checkpoint(tmp_path / "ckpt", tensors_of(model, torch.float32), config(), 2)
    handle = loaded(lib, d)
    coloring = P()
    try:
        tokens, x = one_hot_tokens(VOCAB, 2, N_POS, 6)
        with torch.no_grad():
            want = model(tokens).numpy()
        assert rel_diff(lib_forward(lib, handle, x), want) <= 1e-5
        check(lib, lib.fib_color(handle, None, ctypes.byref(coloring)))
        ids = group_ids(lib, handle)
        got = classes(lib, coloring, ids["transformer.h.0.mlp.c_fc"], inner)
        assert np.array_equal(got, expected_labels(inner, pairs))
        got = classes(lib, coloring, ids["transformer.h.1.mlp.c_fc"], inner)
        assert len(set(got)) == inner
    finally:
        lib.fib_coloring_free(coloring)
        lib.fib_graph_free(handle)


def set_key(key, value):
    def change(sd, cfg):
        cfg[key] = value
    return change


REFUSALS = [
    (set_key("scale_attn_by_inverse_layer_idx", True),
     "key 'scale_attn_by_inverse_layer_idx' is not supported"),
    (set_key("add_cross_attention", True), "key 'add_cross_attention' is not supported"),
    (set_key("activation_function", "quick_gelu"),
     "activation_function 'quick_gelu' is not supported"),
    (set_key("rotary_dim", 4), "key 'rotary_dim' is not supported"),
    (lambda sd, cfg: sd.pop("transformer.h.1.attn.c_attn.bias"),
     "tensor 'transformer.h.1.attn.c_attn.bias' is missing"),
    (lambda sd, cfg: sd.__setitem__("transformer.h.0.mlp.c_fc.weight",
                                    sd["transformer.h.0.mlp.c_fc.weight"].T.contiguous()),
     "tensor 'transformer.h.0.mlp.c_fc.weight' has shape [48, 12], expected [12, 48]"),
    (lambda sd, cfg: sd.__setitem__("lm_head.weight", torch.zeros(VOCAB, HIDDEN)),
     "tensor 'lm_head.weight' is not part of the model"),
]


@pytest.mark.parametrize("case", range(len(REFUSALS)))
def test_gpt2_directory_refusal_names_what(lib, tmp_path, case):
    change, message = REFUSALS[case]
    sd, cfg = tensors_of(model_in(torch.float32, 8), torch.float32), config()
    change(sd, cfg)
    d = write_checkpoint(tmp_path / "ckpt", sd, cfg)
    status, handle = load(lib, d)
    assert status != 0 and not handle.value
    assert message in lib.fib_last_error().decode()


def test_gpt2_untied_head_and_unscaled_attention(lib, tmp_path):
    """tie_word_embeddings false reads lm_head.weight; scale_attn_weights
    false drops the 1/sqrt(d) of the scores."""
    model = model_in(torch.float32, 9)
    head = 0.4 * torch.randn(VOCAB, HIDDEN, generator=torch.Generator().manual_seed(9))
    sd = tensors_of(model, torch.float32)
    sd["lm_head.weight"] = head
    d = write_checkpoint(tmp_path / "ckpt", sd, config(tie_word_embeddings=False,
                                                        scale_attn_weights=False))
    handle = loaded(lib, d)
    try:
        tokens, x = one_hot_tokens(VOCAB, 2, N_POS, 10)
        import test_transformer_torch as tt
        plain = tt.attend

        def unscaled(q, k, v, causal):
            return plain(q * (q.shape[-1] ** 0.5), k, v, causal)
        tt.attend = unscaled
        try:
            with torch.no_grad():
                x_tok = model.wte(tokens) + model.wpe.weight[:tokens.shape[1]]
                for block in model.h:
                    x_tok = block(x_tok)
                want = (model.ln_f(x_tok) @ head.T).numpy()
        finally:
            tt.attend = plain
        assert rel_diff(lib_forward(lib, handle, x), want) <= 1e-5
    finally:
        lib.fib_graph_free(handle)


def test_gpt2_position_embedding_counts_at_every_position(lib, tmp_path):
    """Residual dimensions 2 and 7 duplicated everywhere except in a late
    row of wpe: they must stay apart (a merge would be wrong for sequences
    that reach that row)."""
    model = model_in(torch.float32, 12)
    with torch.no_grad():
        for emb in (model.wte.weight, model.wpe.weight):
            emb[:, 7] = emb[:, 2]
        model.wpe.weight[N_POS - 1, 7] += 0.5
    d = write_checkpoint(tmp_path / "ckpt", tensors_of(model, torch.float32), config())
    handle = loaded(lib, d)
    coloring = P()
    try:
        check(lib, lib.fib_color(handle, None, ctypes.byref(coloring)))
        ids = group_ids(lib, handle)
        wte = classes(lib, coloring, ids["transformer.wte"], HIDDEN)
        wpe = classes(lib, coloring, ids["transformer.wpe"], HIDDEN)
        assert wte[2] == wte[7]  # the token embedding alone duplicates them
        assert wpe[2] != wpe[7]
    finally:
        lib.fib_coloring_free(coloring)
        lib.fib_graph_free(handle)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("row", [0, VOCAB - 1])
def test_gpt2_nan_in_tied_embedding_refused_by_name_once(lib, tmp_path, dtype, row):
    """wte is the token embedding and the tied LM head: its values are
    checked once (the head borrows the stored tensor the embedding found
    finite), and a NaN anywhere in it is still refused, named as wte."""
    sd = tensors_of(model_in(torch.float32, 8), dtype)
    sd["transformer.wte.weight"][row, 5] = float("nan")
    d = write_checkpoint(tmp_path / "ckpt", sd, config())
    status, handle = load(lib, d)
    assert status != 0 and not handle.value
    message = lib.fib_last_error().decode()
    assert "transformer.wte: " in message and f"embedding[{row}, 5] is NaN" in message
    assert message.count("NaN") == 1 and "lm_head" not in message
