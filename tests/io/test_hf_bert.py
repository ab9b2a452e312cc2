"""Hugging Face checkpoint directories of model type "bert" read as stored
(docs/model-files.md): tiny random checkpoints with the tensor names (with
and without the "bert." prefix) and config.json keys of transformers'
BertModel / BertForPreTraining, single-file and sharded, float32 and
bfloat16.

- the library's forward (inputs: input_ids and token_type_ids, one-hot)
  equals a BERT encoder written here from the published equations
  (embeddings summed, LayerNorm; post-norm layers, exact GELU,
  bidirectional attention), both token types used;
- duplicated intermediate units (intermediate.dense rows copied,
  output.dense columns re-split) are found as exactly the planted classes;
- `fibration compress DIR` gives a base whose outputs equal the
  reference's;
- refusals name the key or tensor.

Run: /usr/bin/python3 -m pytest tests/io/test_hf_bert.py"""
import ctypes
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "blocks"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import st_io  # noqa: E402
from test_hf_llama import group_ids, load, loaded, write_checkpoint  # noqa: E402
from test_transformer_torch import (  # noqa: E402,F401  (lib is a fixture)
    F32, I64, P, check, classes, expected_labels, lib, rel_diff)

VOCAB, HIDDEN, HEADS, INTER, LAYERS, N_POS, TYPES = 11, 12, 3, 20, 2, 10, 2
EPS = 1e-12


def config(**changes):
    c = {"architectures": ["BertForPreTraining"], "attention_probs_dropout_prob": 0.1,
         "classifier_dropout": None, "gradient_checkpointing": False, "hidden_act": "gelu",
         "hidden_dropout_prob": 0.1, "hidden_size": HIDDEN, "initializer_range": 0.02,
         "intermediate_size": INTER, "layer_norm_eps": EPS,
         "max_position_embeddings": N_POS, "model_type": "bert",
         "num_attention_heads": HEADS, "num_hidden_layers": LAYERS, "pad_token_id": 0,
         "position_embedding_type": "absolute", "torch_dtype": "float32",
         "transformers_version": "4.44.0", "type_vocab_size": TYPES, "use_cache": True,
         "vocab_size": VOCAB}
    c.update(changes)
    return c


def layer_names(i, prefix="bert."):
    return f"{prefix}encoder.layer.{i}."


def random_weights(seed, prefix="bert."):
    """BertModel's tensors by their checkpoint names, random (norm weights
    near 1)."""
    g = torch.Generator().manual_seed(seed)

    def w(*shape):
        return 0.4 * torch.randn(*shape, generator=g)

    def gamma():
        return 1.0 + 0.3 * torch.randn(HIDDEN, generator=g)

    e = prefix + "embeddings."
    sd = {e + "word_embeddings.weight": w(VOCAB, HIDDEN),
          e + "position_embeddings.weight": w(N_POS, HIDDEN),
          e + "token_type_embeddings.weight": w(TYPES, HIDDEN),
          e + "LayerNorm.weight": gamma(), e + "LayerNorm.bias": w(HIDDEN)}
    for i in range(LAYERS):
        p = layer_names(i, prefix)
        for m in ("attention.self.query", "attention.self.key", "attention.self.value",
                  "attention.output.dense"):
            sd[p + m + ".weight"], sd[p + m + ".bias"] = w(HIDDEN, HIDDEN), w(HIDDEN)
        sd[p + "intermediate.dense.weight"] = w(INTER, HIDDEN)
        sd[p + "intermediate.dense.bias"] = w(INTER)
        sd[p + "output.dense.weight"], sd[p + "output.dense.bias"] = w(HIDDEN, INTER), w(HIDDEN)
        for m in ("attention.output.LayerNorm", "output.LayerNorm"):
            sd[p + m + ".weight"], sd[p + m + ".bias"] = gamma(), w(HIDDEN)
    return sd


def rounded(sd, dtype):
    """The weights as dtype holds them, in float32 (both sides compute
    with the same values)."""
    return {n: t.to(dtype).to(torch.float32) for n, t in sd.items()}


def stored(sd, dtype):
    return {n: t.to(dtype) for n, t in sd.items()}


def reference(sd, tokens, types, prefix="bert."):
    """BERT's encoder from the equations (Devlin et al. 2019; transformers'
    BertModel with token_type_ids, no padding mask): the last hidden state
    [batch, positions, hidden]."""
    def lin(x, name):
        return x @ sd[name + ".weight"].T + sd[name + ".bias"]

    def layer_norm(x, name):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + EPS) * sd[name + ".weight"] + sd[name + ".bias"]

    def gelu(x):
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))

    e = prefix + "embeddings."
    with torch.no_grad():
        b, t = tokens.shape
        x = (sd[e + "word_embeddings.weight"][tokens] +
             sd[e + "token_type_embeddings.weight"][types] +
             sd[e + "position_embeddings.weight"][:t])
        x = layer_norm(x, e + "LayerNorm")
        d = HIDDEN // HEADS
        for i in range(LAYERS):
            p = layer_names(i, prefix)

            def heads(name):
                return lin(x, p + name).view(b, t, HEADS, d).transpose(1, 2)
            q, k, v = (heads("attention.self." + m) for m in ("query", "key", "value"))
            a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1) @ v
            a = a.transpose(1, 2).reshape(b, t, HIDDEN)
            x = layer_norm(x + lin(a, p + "attention.output.dense"),
                           p + "attention.output.LayerNorm")
            h = gelu(lin(x, p + "intermediate.dense"))
            x = layer_norm(x + lin(h, p + "output.dense"), p + "output.LayerNorm")
        return x.numpy()


def reference_logits(sd, tokens, types, prefix="bert."):
    """The masked-LM head on the reference's last hidden state: transform
    dense, GELU, LayerNorm, then the decoder (the word embeddings unless
    cls.predictions.decoder.weight is given) plus cls.predictions.bias."""
    p = "cls.predictions."
    h = torch.from_numpy(reference(sd, tokens, types, prefix))
    with torch.no_grad():
        x = h @ sd[p + "transform.dense.weight"].T + sd[p + "transform.dense.bias"]
        x = 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        x = ((x - mu) / torch.sqrt(var + EPS) * sd[p + "transform.LayerNorm.weight"] +
             sd[p + "transform.LayerNorm.bias"])
        w = sd.get(p + "decoder.weight", sd[prefix + "embeddings.word_embeddings.weight"])
        return (x @ w.T + sd[p + "bias"]).numpy()


def inputs(batch, seed):
    """Random token ids and token types (both types), and the library's
    input rows: input_ids one-hot then token_type_ids one-hot, each
    position-major."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, VOCAB, (batch, N_POS), generator=g)
    types = torch.randint(0, TYPES, (batch, N_POS), generator=g)
    one_hot = torch.nn.functional.one_hot
    x = torch.cat([one_hot(tokens, VOCAB).reshape(batch, -1),
                   one_hot(types, TYPES).reshape(batch, -1)], dim=1)
    return tokens, types, x.to(torch.float32).numpy()


def forward(lib, handle, x):
    n_in, n_out = I64(), I64()
    check(lib, lib.fib_graph_io_width(handle, ctypes.byref(n_in), ctypes.byref(n_out)))
    xs = np.ascontiguousarray(x, dtype=np.float32)
    assert xs.shape[1] == n_in.value
    out = np.zeros((x.shape[0], n_out.value), dtype=np.float32)
    check(lib, lib.fib_graph_forward(handle, x.shape[0], F32, xs.ctypes.data, out.ctypes.data))
    return out.reshape(x.shape[0], N_POS, -1)


def with_heads(sd, seed, prefix="bert."):
    """BertForPreTraining's pooler, masked-LM and next-sentence heads (the
    decoder tied to the word embeddings, as transformers stores it)."""
    g = torch.Generator().manual_seed(seed)
    out = dict(sd)
    for name, shape in ((prefix + "pooler.dense.weight", (HIDDEN, HIDDEN)),
                        (prefix + "pooler.dense.bias", (HIDDEN,)),
                        ("cls.predictions.bias", (VOCAB,)),
                        ("cls.predictions.transform.dense.weight", (HIDDEN, HIDDEN)),
                        ("cls.predictions.transform.dense.bias", (HIDDEN,)),
                        ("cls.predictions.transform.LayerNorm.weight", (HIDDEN,)),
                        ("cls.predictions.transform.LayerNorm.bias", (HIDDEN,)),
                        ("cls.seq_relationship.weight", (2, HIDDEN)),
                        ("cls.seq_relationship.bias", (2,))):
        out[name] = torch.randn(*shape, generator=g)
    out["cls.predictions.transform.LayerNorm.weight"] += 1.0
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16],
                         ids=["f32", "f16", "bf16"])
@pytest.mark.parametrize("layout", ["single", "sharded", "unprefixed", "pretraining"])
def test_bert_directory_forward_equals_reference(lib, tmp_path, dtype, layout):
    prefix = "" if layout == "unprefixed" else "bert."
    sd = rounded(random_weights(3, prefix), dtype)
    files = with_heads(sd, 4, prefix) if layout == "pretraining" else sd
    d = write_checkpoint(tmp_path / "ckpt", stored(files, dtype), config(),
                         3 if layout == "sharded" else 1)
    handle = loaded(lib, d)
    try:
        tokens, types, x = inputs(3, 5)
        assert (types == 1).any() and (types == 0).any()
        if layout == "pretraining":  # the masked-LM head is part of the model
            want = reference_logits(rounded(files, dtype), tokens, types, prefix)
        else:
            want = reference(sd, tokens, types, prefix)
        assert rel_diff(forward(lib, handle, x), want) <= 1e-5
        ids = group_ids(lib, handle)
        for name in ("input_ids", "token_type_ids", "embeddings.LayerNorm",
                     "encoder.layer.1.attention.self.core", "encoder.layer.1.output.LayerNorm"):
            assert (name if name.endswith("_ids") else prefix + name) in ids, name
    finally:
        lib.fib_graph_free(handle)


def plant_intermediate(sd, layer, pairs, seed):
    """Intermediate unit j copies unit i (intermediate.dense row and bias);
    output.dense's column i is re-split between i and j."""
    g = torch.Generator().manual_seed(seed)
    p = layer_names(layer)
    up, up_b = sd[p + "intermediate.dense.weight"], sd[p + "intermediate.dense.bias"]
    down = sd[p + "output.dense.weight"]
    for i, j in pairs:
        up[j], up_b[j] = up[i], up_b[i]
        split = torch.rand(HIDDEN, generator=g)
        total = down[:, i].clone()
        down[:, i], down[:, j] = split * total, (1 - split) * total


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_bert_directory_planted_intermediate_classes_found(lib, tmp_path, dtype):
    sd = random_weights(21)
    pairs = [(1, 5), (2, 17), (2, 19)]
    plant_intermediate(sd, 0, pairs, 21)
    sd = rounded(sd, dtype)
    d = write_checkpoint(tmp_path / "ckpt", stored(sd, dtype), config(), shards=2)
    handle = loaded(lib, d)
    coloring = P()
    try:
        check(lib, lib.fib_color(handle, None, ctypes.byref(coloring)))
        ids = group_ids(lib, handle)
        got = classes(lib, coloring, ids["bert.encoder.layer.0.intermediate.dense"], INTER)
        assert np.array_equal(got, expected_labels(INTER, pairs))
        got = classes(lib, coloring, ids["bert.encoder.layer.1.intermediate.dense"], INTER)
        assert len(set(got)) == INTER
    finally:
        lib.fib_coloring_free(coloring)
        lib.fib_graph_free(handle)


def group_width(lib, handle, group):
    n = I64()
    check(lib, lib.fib_graph_group_info(handle, group, None, ctypes.byref(n), None, None, None,
                                        None, None))
    return n.value


def compressed_base(lib, directory, base):
    """`fibration compress DIRECTORY -o BASE`, the base loaded."""
    r = subprocess.run([st_io.cli(), "compress", str(directory), "-o", str(base)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return loaded(lib, base)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("shards", [1, 2])
def test_bert_compressed_base_equals_reference(lib, tmp_path, dtype, shards):
    """`fibration compress DIR -o BASE`: the planted intermediate units are
    merged and the base computes the reference encoder's outputs."""
    sd = random_weights(22)
    pairs = [(3, 11), (3, 12), (0, 7)]
    plant_intermediate(sd, 1, pairs, 22)
    sd = rounded(sd, dtype)
    d = write_checkpoint(tmp_path / "ckpt", stored(sd, dtype), config(), shards)
    handle = compressed_base(lib, d, tmp_path / "base.safetensors")
    try:
        ids = group_ids(lib, handle)
        assert group_width(lib, handle, ids["bert.encoder.layer.1.intermediate.dense"]) == \
            INTER - len(pairs)
        assert group_width(lib, handle, ids["bert.encoder.layer.0.intermediate.dense"]) == INTER
        tokens, types, x = inputs(4, 23)
        assert rel_diff(forward(lib, handle, x), reference(sd, tokens, types)) <= 1e-5
    finally:
        lib.fib_graph_free(handle)


def set_key(key, value):
    def change(sd, cfg):
        cfg[key] = value
    return change


REFUSALS = [
    (set_key("position_embedding_type", "relative_key"),
     "key 'position_embedding_type' is not supported"),
    (set_key("is_decoder", True), "key 'is_decoder' is not supported"),
    (set_key("add_cross_attention", True), "key 'add_cross_attention' is not supported"),
    (set_key("pruned_heads", {"0": [1]}), "key 'pruned_heads' is not supported"),
    (set_key("hidden_act", "quick_gelu"), "hidden_act 'quick_gelu' is not supported"),
    (set_key("num_attention_heads", 5), "hidden_size 12 is not a multiple"),
    (set_key("rotary_dim", 4), "key 'rotary_dim' is not supported"),
    (lambda sd, cfg: cfg.pop("max_position_embeddings"),
     "key 'max_position_embeddings' is missing"),
    (lambda sd, cfg: sd.pop("bert.embeddings.token_type_embeddings.weight"),
     "tensor 'bert.embeddings.token_type_embeddings.weight' is missing"),
    (lambda sd, cfg: sd.pop("bert.encoder.layer.1.attention.output.LayerNorm.bias"),
     "tensor 'bert.encoder.layer.1.attention.output.LayerNorm.bias' is missing"),
    (lambda sd, cfg: sd.__setitem__("bert.embeddings.position_embeddings.weight",
                                    torch.zeros(N_POS - 1, HIDDEN)),
     "tensor 'bert.embeddings.position_embeddings.weight' has shape [9, 12], "
     "expected [10, 12]"),
    (lambda sd, cfg: sd.__setitem__("bert.pooler.dense.weight", torch.zeros(HIDDEN, 3)),
     "tensor 'bert.pooler.dense.weight' has shape [12, 3], expected [12, 12]"),
    (lambda sd, cfg: sd.__setitem__("classifier.weight", torch.zeros(2, HIDDEN)),
     "tensor 'classifier.weight' is not part of the model"),
    (lambda sd, cfg: sd.__setitem__(
        "bert.encoder.layer.0.attention.self.key.bias",
        sd["bert.encoder.layer.0.attention.self.key.bias"].to(torch.bfloat16)),
     "'bert.encoder.layer.0.attention.self.key.bias' is BF16 but"),
]


@pytest.mark.parametrize("case", range(len(REFUSALS)))
def test_bert_directory_refusal_names_what(lib, tmp_path, case):
    change, message = REFUSALS[case]
    sd, cfg = random_weights(8), config()
    change(sd, cfg)
    d = write_checkpoint(tmp_path / "ckpt", sd, cfg)
    status, handle = load(lib, d)
    assert status != 0 and not handle.value
    error = lib.fib_last_error().decode()
    assert message in error
    assert str(d) in error


def test_bert_token_type_counts_for_every_type(lib, tmp_path):
    """Embedding dimensions 2 and 7 equal in the word and position tables
    and in token type 0, but not in token type 1: they stay apart (a merge
    would be wrong for the second segment of a sentence pair)."""
    sd = random_weights(9)
    e = "bert.embeddings."
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        sd[e + name + ".weight"][:, 7] = sd[e + name + ".weight"][:, 2]
    sd[e + "token_type_embeddings.weight"][1, 7] += 0.5
    for name in ("LayerNorm.weight", "LayerNorm.bias"):
        sd[e + name][7] = sd[e + name][2]
    d = write_checkpoint(tmp_path / "ckpt", sd, config())
    handle = loaded(lib, d)
    coloring = P()
    try:
        check(lib, lib.fib_color(handle, None, ctypes.byref(coloring)))
        ids = group_ids(lib, handle)
        words = classes(lib, coloring, ids[e + "word_embeddings"], HIDDEN)
        types = classes(lib, coloring, ids[e + "token_type_embeddings"], HIDDEN)
        summed = classes(lib, coloring, ids[e + "LayerNorm"], HIDDEN)
        assert words[2] == words[7]  # the word table alone duplicates them
        assert types[2] != types[7] and summed[2] != summed[7]
    finally:
        lib.fib_coloring_free(coloring)
        lib.fib_graph_free(handle)
