"""BERT checkpoints compressed (docs/model-files.md, "Bases of checkpoint
directories") and run by fibration.torch's reference encoder
(docs/python.md, "Reference decoders"): tiny random checkpoints with the
tensor names and config.json keys of transformers' BertModel /
BertForPreTraining / BertForMaskedLM.

- ft.BertEncoder equals the BERT written from the equations in
  test_hf_bert.py (hidden states and masked-LM logits, float64);
- duplicated intermediate units (intermediate.dense rows copied,
  output.dense columns re-split), as many in every layer: `fibration
  compress DIR -o OUT` writes OUT in the bert layout, and OUT loaded (by
  ft.load_encoder and by the library) gives the original's hidden states
  (and MLM logits) on random token sequences with both token types,
  relative difference <= 1e-5 in float32; the pooler and next-sentence
  heads are copied as stored;
- different numbers per layer: the library's format, loaded with config=;
- the masked-LM head is read, shape-checked and analysed; stored copies of
  its tied tensors that differ are refused by name.

Run: /usr/bin/python3 -m pytest tests/io/test_hf_bert_compress.py"""
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
from test_hf_llama import load, loaded, write_checkpoint  # noqa: E402
from test_transformer_torch import lib, rel_diff  # noqa: E402,F401  (lib is a fixture)

if "FIBRATION_LIBRARY" not in os.environ:
    os.environ["FIBRATION_LIBRARY"] = str(HERE.parents[1] / "build" / "src" / "libfibration.so")
ft = pytest.importorskip("fibration.torch")


def mlm_head(sd, seed, tied=True):
    """BertForMaskedLM's head beside the encoder's tensors (names without
    the bert. prefix, as transformers writes them)."""
    g = torch.Generator().manual_seed(seed)
    out = dict(sd)
    p = "cls.predictions."
    out[p + "transform.dense.weight"] = 0.4 * torch.randn(B.HIDDEN, B.HIDDEN, generator=g)
    out[p + "transform.dense.bias"] = 0.4 * torch.randn(B.HIDDEN, generator=g)
    out[p + "transform.LayerNorm.weight"] = 1.0 + 0.3 * torch.randn(B.HIDDEN, generator=g)
    out[p + "transform.LayerNorm.bias"] = 0.4 * torch.randn(B.HIDDEN, generator=g)
    out[p + "bias"] = 0.4 * torch.randn(B.VOCAB, generator=g)
    if not tied:
        out[p + "decoder.weight"] = 0.4 * torch.randn(B.VOCAB, B.HIDDEN, generator=g)
    return out


def encoder_of(sd, config, mlm):
    enc = ft.BertEncoder(config, mlm_head=mlm)
    enc.load_state_dict({n: t for n, t in sd.items() if not n.startswith(
        ("bert.pooler.", "cls.seq_relationship."))})
    return enc.eval()


@pytest.mark.parametrize("tied", [True, False])
def test_bert_encoder_equals_plain_equations(tied):
    sd = {n: t.double() for n, t in mlm_head(B.random_weights(31), 32, tied).items()}
    config = B.config(tie_word_embeddings=tied)
    enc = encoder_of(sd, config, mlm=True).double()
    tokens, types, _ = B.inputs(3, 33)
    with torch.no_grad():
        hidden = enc(tokens, types).numpy()
        logits = enc.mlm_logits(tokens, types).numpy()
        default_types = enc(tokens).numpy()
    assert rel_diff(hidden, B.reference(sd, tokens, types)) <= 1e-10
    assert rel_diff(logits, B.reference_logits(sd, tokens, types)) <= 1e-10
    zeros = torch.zeros_like(types)
    assert rel_diff(default_types, B.reference(sd, tokens, zeros)) <= 1e-10
    assert rel_diff(default_types, hidden) > 1e-3  # the token types count


def test_bert_encoder_refuses_what_it_does_not_compute():
    with pytest.raises(ft.UnsupportedModelError, match="position_embedding_type"):
        ft.BertEncoder(B.config(position_embedding_type="relative_key"))
    with pytest.raises(ft.UnsupportedModelError, match="no masked-LM head"):
        ft.BertEncoder(B.config()).mlm_logits(torch.zeros(1, 3, dtype=torch.long))


def compress(model_dir, out):
    r = subprocess.run([st_io.cli(), "compress", str(model_dir), "-o", str(out), "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def header(path):
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        tensors = json.loads(fh.read(n))
    tensors.pop("__metadata__", None)
    return tensors


def planted(seed, per_layer, dtype, heads):
    """per_layer[i]: the (kept unit, copy) pairs planted in layer i; heads:
    None, "mlm" (BertForMaskedLM), "mlm_untied" (its decoder weight stored,
    tie_word_embeddings false) or "pretraining" (pooler, MLM and
    next-sentence heads)."""
    sd = B.random_weights(seed)
    for layer, pairs in enumerate(per_layer):
        B.plant_intermediate(sd, layer, pairs, seed + layer)
    if heads in ("mlm", "mlm_untied"):
        sd = mlm_head(sd, seed + 7, tied=heads == "mlm")
    elif heads == "pretraining":
        sd = B.with_heads(sd, seed + 7)
    return B.rounded(sd, dtype)


def same_hidden_states(sd, encoder, seed, mlm):
    tokens, types, _ = B.inputs(4, seed)
    assert (types == 0).any() and (types == 1).any()
    with torch.no_grad():
        got = (encoder.mlm_logits if mlm else encoder)(tokens, types).numpy()
    want = (B.reference_logits if mlm else B.reference)(sd, tokens, types)
    return rel_diff(got, want)


SAME = [[(1, 5), (2, 17)], [(3, 11), (0, 7)]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("shards", [1, 2])
@pytest.mark.parametrize("heads", [None, "mlm", "mlm_untied", "pretraining"])
def test_bert_base_in_checkpoint_layout_gives_same_hidden_states(lib, tmp_path, dtype, shards,
                                                                 heads):
    sd = planted(41, SAME, dtype, heads)
    config = B.config(tie_word_embeddings=heads != "mlm_untied")
    d = write_checkpoint(tmp_path / "ckpt", B.stored(sd, dtype), config, shards)
    out = tmp_path / "base"
    summary = compress(d, out)
    assert summary["format"] == "checkpoint", summary
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["intermediate_size"] == B.INTER - 2
    assert {k: v for k, v in cfg.items() if k != "intermediate_size"} == \
        {k: v for k, v in config.items() if k != "intermediate_size"}
    tensors = header(out / "model.safetensors")
    assert set(tensors) == set(sd)  # every tensor under its name, nothing else
    p = B.layer_names(1)
    assert tensors[p + "output.dense.weight"]["shape"] == [B.HIDDEN, B.INTER - 2]
    assert tensors[p + "intermediate.dense.weight"]["shape"] == [B.INTER - 2, B.HIDDEN]
    stored = {torch.float32: "F32", torch.bfloat16: "BF16"}[dtype]
    assert tensors[p + "attention.self.query.weight"]["dtype"] == stored
    assert tensors[p + "intermediate.dense.weight"]["dtype"] == stored
    if heads == "pretraining":  # the heads outside the graph, as stored
        base_tensors, _ = ft._decoders.read_safetensors(out / "model.safetensors")
        for name in ("bert.pooler.dense.weight", "cls.seq_relationship.bias"):
            assert torch.equal(base_tensors[name], B.stored(sd, dtype)[name])
    mlm = heads is not None
    base = ft.load_encoder(out)
    assert same_hidden_states(sd, base, 42, mlm=False) <= 1e-5
    if mlm:
        assert same_hidden_states(sd, base, 43, mlm=True) <= 1e-5
    assert same_hidden_states(sd, ft.load_decoder(d), 44, mlm=mlm) <= 1e-5
    # the library reads the base directory as any checkpoint
    handle = loaded(lib, out)
    try:
        tokens, types, x = B.inputs(3, 45)
        want = (B.reference_logits if mlm else B.reference)(sd, tokens, types)
        assert rel_diff(B.forward(lib, handle, x), want) <= 1e-5
    finally:
        lib.fib_graph_free(handle)


def test_bert_layers_of_different_widths_give_library_format(lib, tmp_path):
    sd = planted(51, [[(1, 5), (2, 17)], [(3, 11)]], torch.float32, "mlm")
    d = write_checkpoint(tmp_path / "ckpt", sd, B.config())
    out = tmp_path / "base"
    summary = compress(d, out)
    assert summary["format"] == "fibration"
    assert "one 'intermediate_size'" in summary["reason"]
    base = ft.load_encoder(out, config=d)
    assert [layer.intermediate.dense.weight.shape[0] for layer in base.bert.encoder.layer] == \
        [B.INTER - 2, B.INTER - 1]
    assert same_hidden_states(sd, base, 52, mlm=False) <= 1e-5
    assert same_hidden_states(sd, base, 53, mlm=True) <= 1e-5
    with pytest.raises(ft.UnsupportedModelError, match="needs config="):
        ft.load_encoder(out)


def test_bert_mlm_head_units_are_analysed(lib, tmp_path):
    """A planted duplicate in the head's transform (two dense rows and
    biases equal) is found; the LayerNorm after it (weights differ) keeps
    the two apart; the report's residual stream still ends with the last
    layer's LayerNorm, which the head reads."""
    sd = mlm_head(B.random_weights(61), 62)
    p = "cls.predictions.transform."
    sd[p + "dense.weight"][4] = sd[p + "dense.weight"][9]
    sd[p + "dense.bias"][4] = sd[p + "dense.bias"][9]
    d = write_checkpoint(tmp_path / "ckpt", sd, B.config())
    r = subprocess.run([st_io.cli(), "analyze", "--transformer", str(d), "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    groups = report["residual_stream"]["groups"]
    assert B.layer_names(B.LAYERS - 1) + "output.LayerNorm" in groups
    assert not any(g.startswith("cls.") for g in groups)
    r = subprocess.run([st_io.cli(), "analyze", str(d), "--json"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)["layers"]}
    assert rows[p + "dense"]["fibers"] == B.HIDDEN - 1
    assert rows[p + "LayerNorm"]["fibers"] == B.HIDDEN
    assert rows["cls.predictions.decoder"]["fibers"] == B.VOCAB


REFUSALS = [
    (lambda sd: sd.__setitem__("cls.predictions.decoder.weight",
                               sd["bert.embeddings.word_embeddings.weight"] + 1.0),
     {}, "tensor 'cls.predictions.decoder.weight' differs from "
         "'bert.embeddings.word_embeddings.weight'"),
    (lambda sd: sd.__setitem__("cls.predictions.decoder.bias", sd["cls.predictions.bias"] * 2),
     {}, "tensor 'cls.predictions.decoder.bias' differs from 'cls.predictions.bias'"),
    (lambda sd: sd.pop("cls.predictions.transform.dense.bias"), {},
     "tensor 'cls.predictions.transform.dense.bias' is missing"),
    (lambda sd: sd.pop("cls.predictions.bias"), {},
     "tensor 'cls.predictions.decoder.bias' is missing"),
    (lambda sd: None, {"tie_word_embeddings": False},
     "tensor 'cls.predictions.decoder.weight' is missing"),
    (lambda sd: sd.__setitem__("cls.predictions.transform.LayerNorm.weight",
                               torch.ones(B.HIDDEN + 1)), {},
     "tensor 'cls.predictions.transform.LayerNorm.weight' has shape [13], expected [12]"),
]


@pytest.mark.parametrize("case", range(len(REFUSALS)))
def test_bert_mlm_head_refusal_names_what(lib, tmp_path, case):
    change, keys, message = REFUSALS[case]
    sd = mlm_head(B.random_weights(71), 72)
    change(sd)
    d = write_checkpoint(tmp_path / "ckpt", sd, B.config(**keys))
    status, handle = load(lib, d)
    assert status != 0 and not handle.value
    assert message in lib.fib_last_error().decode()


def test_bert_stored_tied_copies_are_read(lib, tmp_path):
    """Older files store the tied decoder weight and bias too: equal
    copies are accepted, and the model is the same."""
    sd = mlm_head(B.random_weights(81), 82)
    sd["cls.predictions.decoder.weight"] = sd["bert.embeddings.word_embeddings.weight"].clone()
    sd["cls.predictions.decoder.bias"] = sd["cls.predictions.bias"].clone()
    d = write_checkpoint(tmp_path / "ckpt", sd, B.config())
    handle = loaded(lib, d)
    try:
        tokens, types, x = B.inputs(2, 83)
        assert rel_diff(B.forward(lib, handle, x), B.reference_logits(sd, tokens, types)) <= 1e-5
    finally:
        lib.fib_graph_free(handle)
    assert same_hidden_states(sd, ft.load_encoder(d), 84, mlm=True) <= 1e-5


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_bert_nan_in_decoder_weight_refused_by_name_once(lib, tmp_path, tied):
    """The tied decoder reads the word table the embedding found finite (it
    is not checked again, tests/io/test_hf_bert_directory.c counts the
    passes): a NaN in it is refused once, named as the word embeddings; an
    untied decoder's own weight is checked and named as the decoder."""
    sd = mlm_head(B.random_weights(91), 92, tied)
    name = ("bert.embeddings.word_embeddings.weight" if tied
            else "cls.predictions.decoder.weight")
    sd[name][B.VOCAB - 1, 5] = float("nan")
    d = write_checkpoint(tmp_path / "ckpt", sd, B.config(tie_word_embeddings=tied))
    status, handle = load(lib, d)
    assert status != 0 and not handle.value
    message = lib.fib_last_error().decode()
    assert message.count("NaN") == 1, message
    if tied:
        assert "bert.embeddings.word_embeddings: " in message
        assert f"embedding[{B.VOCAB - 1}, 5] is NaN" in message
        assert "cls.predictions.decoder" not in message
    else:
        assert "cls.predictions.decoder: " in message and "word_embeddings" not in message


def point_at(path, name, other):
    """Rewrites a safetensors header so that tensor `name` is stored over
    the bytes of `other` (the same data_offsets)."""
    blob = path.read_bytes()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    header[name]["data_offsets"] = header[other]["data_offsets"]
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + blob[8 + n:])


def test_bert_encoder_does_not_compare_a_tie_stored_over_the_same_bytes(tmp_path,
                                                                        monkeypatch):
    """A decoder weight stored over the word table's own bytes is the tied
    tensor itself: ft.load_encoder does not read the two to compare them;
    a separately stored copy is compared, once. Both give the logits."""
    sd = mlm_head(B.random_weights(95), 96)
    sd["cls.predictions.decoder.weight"] = sd["bert.embeddings.word_embeddings.weight"].clone()
    separate = write_checkpoint(tmp_path / "separate", sd, B.config())
    shared = write_checkpoint(tmp_path / "shared", sd, B.config())
    point_at(shared / "model.safetensors", "cls.predictions.decoder.weight",
             "bert.embeddings.word_embeddings.weight")
    real_equal, compared = torch.equal, []
    encoders, comparisons = {}, {}
    for directory in (separate, shared):
        compared.clear()
        with monkeypatch.context() as m:
            m.setattr(torch, "equal",
                      lambda a, b: compared.append(tuple(a.shape)) or real_equal(a, b))
            encoders[directory.name] = ft.load_encoder(directory)
        comparisons[directory.name] = compared.count((B.VOCAB, B.HIDDEN))
    assert comparisons == {"separate": 1, "shared": 0}
    for encoder in encoders.values():
        assert same_hidden_states(sd, encoder, 97, mlm=True) <= 1e-5
