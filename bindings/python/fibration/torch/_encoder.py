"""Reference BERT encoder written from the published equations (Devlin et
al. 2019, transformers' BertModel without a padding mask), loading a
Hugging Face checkpoint directory of model type "bert" as stored or the
base `fibration compress DIR -o BASE` wrote (a checkpoint directory, or a
file in the library's own format), so that a base can be run and evaluated
without the `transformers` package (docs/python.md, "Reference decoders").

    enc = ft.load_encoder("bert_dir")                   # the original
    small = ft.load_encoder("base_dir")                 # its base, same layout
    hidden = enc(input_ids, token_type_ids)             # [batch, length, hidden]
    logits = enc.mlm_logits(input_ids, token_type_ids)  # with the masked-LM head

Every MLP has its own width (a base's layers may differ). The pooler and
next-sentence heads are not part of the module (the library leaves them
out of the analysed function). Bases whose residual stream or attention
were merged are refused by name: `fib_graph_forward` runs those."""

import math
import os

import torch
from torch import nn

from ._decoders import (_GPT2_ACTIVATIONS, LayerNorm, _checkpoint_tensors, _read_config,
                        _refuse, base_file_groups)
from ._errors import UnsupportedModelError

_HEADS_LEFT_OUT = ("pooler.", "cls.seq_relationship.")


def _bert_settings(config):
    _refuse(config, "model_type", ("bert",))
    _refuse(config, "hidden_act", (None, *_GPT2_ACTIVATIONS))
    _refuse(config, "position_embedding_type", (None, "absolute"))
    _refuse(config, "is_decoder", (None, False))
    _refuse(config, "add_cross_attention", (None, False))
    if config.get("pruned_heads"):
        raise UnsupportedModelError("config.json: pruned_heads is not supported by the "
                                    "reference encoder (only {})")
    return {"vocab": config["vocab_size"], "hidden": config["hidden_size"],
            "heads": config["num_attention_heads"], "layers": config["num_hidden_layers"],
            "intermediate": config["intermediate_size"],
            "positions": config["max_position_embeddings"],
            "types": config.get("type_vocab_size") or 2,
            "eps": config.get("layer_norm_eps", 1e-12),
            "activation": _GPT2_ACTIVATIONS[config.get("hidden_act") or "gelu"],
            "tied": config.get("tie_word_embeddings", True) is not False}


class _Embeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.word_embeddings = nn.Embedding(c["vocab"], c["hidden"])
        self.position_embeddings = nn.Embedding(c["positions"], c["hidden"])
        self.token_type_embeddings = nn.Embedding(c["types"], c["hidden"])
        self.LayerNorm = LayerNorm(c["hidden"], c["eps"])


class _SelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.heads = c["heads"]
        self.query = nn.Linear(c["hidden"], c["hidden"])
        self.key = nn.Linear(c["hidden"], c["hidden"])
        self.value = nn.Linear(c["hidden"], c["hidden"])

    def forward(self, x):
        b, t, e = x.shape
        d = e // self.heads
        q, k, v = (y(x).view(b, t, self.heads, d).transpose(1, 2)
                   for y in (self.query, self.key, self.value))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)  # bidirectional: no mask
        return (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, t, e)


class _DenseNorm(nn.Module):
    """dense, then LayerNorm of the residual plus its output (post-norm)."""

    def __init__(self, n_in, c):
        super().__init__()
        self.dense = nn.Linear(n_in, c["hidden"])
        self.LayerNorm = LayerNorm(c["hidden"], c["eps"])

    def forward(self, x, residual):
        return self.LayerNorm(residual + self.dense(x))


class _Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self = _SelfAttention(c)
        self.output = _DenseNorm(c["hidden"], c)

    def forward(self, x):
        return self.output(self.self(x), x)


class _Intermediate(nn.Module):
    def __init__(self, c, units):
        super().__init__()
        self.dense = nn.Linear(c["hidden"], units)
        self.activation = c["activation"]

    def forward(self, x):
        return self.activation(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, c, units):
        super().__init__()
        self.attention = _Attention(c)
        self.intermediate = _Intermediate(c, units)
        self.output = _DenseNorm(units, c)

    def forward(self, x):
        x = self.attention(x)
        return self.output(self.intermediate(x), x)


class _Encoder(nn.Module):
    def __init__(self, c, widths):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(c, w) for w in widths)


class _Body(nn.Module):
    def __init__(self, c, widths):
        super().__init__()
        self.embeddings = _Embeddings(c)
        self.encoder = _Encoder(c, widths)


class _Transform(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden"], c["hidden"])
        self.LayerNorm = LayerNorm(c["hidden"], c["eps"])
        self.activation = c["activation"]

    def forward(self, x):
        return self.LayerNorm(self.activation(self.dense(x)))


class _Predictions(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.transform = _Transform(c)
        self.bias = nn.Parameter(torch.zeros(c["vocab"]))
        if not c["tied"]:
            self.decoder = nn.Linear(c["hidden"], c["vocab"], bias=False)


class _Head(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.predictions = _Predictions(c)


class BertEncoder(nn.Module):
    """BERT's post-norm encoder: word, learned position and token-type
    embeddings summed and normalised, then layers of bidirectional
    multi-head attention and an MLP, each added to the stream and followed
    by a LayerNorm. `forward(input_ids, token_type_ids=None)` is the last
    hidden state (token type 0 when not given); with `mlm_head=True` the
    masked-LM head (transform dense + hidden_act + LayerNorm, decoder tied to
    the word embeddings unless tie_word_embeddings is false, bias) gives
    `mlm_logits(...)`. The parameters carry BertForMaskedLM's names.
    `widths`: the MLP width of each layer (default: intermediate_size)."""

    def __init__(self, config, widths=None, mlm_head=False):
        super().__init__()
        c = _bert_settings(config)
        widths = list(widths or [c["intermediate"]] * c["layers"])
        self.settings, self.tied = c, c["tied"]
        self.bert = _Body(c, widths)
        if mlm_head:
            self.cls = _Head(c)

    def forward(self, input_ids, token_type_ids=None):
        e = self.bert.embeddings
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = (e.word_embeddings(input_ids) + e.token_type_embeddings(token_type_ids) +
             e.position_embeddings.weight[:input_ids.shape[1]])
        x = e.LayerNorm(x)
        for layer in self.bert.encoder.layer:
            x = layer(x)
        return x

    def mlm_logits(self, input_ids, token_type_ids=None):
        if not hasattr(self, "cls"):
            raise UnsupportedModelError("this encoder has no masked-LM head (its checkpoint "
                                        "stores no cls.predictions tensors)")
        p = self.cls.predictions
        h = p.transform(self(input_ids, token_type_ids))
        head = self.bert.embeddings.word_embeddings.weight if self.tied else p.decoder.weight
        return h @ head.T + p.bias


# ---- loading -----------------------------------------------------------------

def _same(a, b):
    """Whether two stored tensors hold the same values. Two names over the
    same stored bytes are one tensor: not read to be compared."""
    if a.shape != b.shape:
        return False
    if a.dtype == b.dtype:
        return (a.data_ptr() == b.data_ptr() and a.stride() == b.stride()) or torch.equal(a, b)
    return torch.equal(a.to(torch.float64), b.to(torch.float64))


def _load_bert_directory(directory, config):
    tensors = {}
    for name, t in _checkpoint_tensors(directory).items():
        if not name.startswith(("bert.", "cls.")):
            name = "bert." + name
        if not name.replace("bert.", "", 1).startswith(_HEADS_LEFT_OUT):
            tensors[name] = t
    tied = config.get("tie_word_embeddings", True) is not False
    words = tensors["bert.embeddings.word_embeddings.weight"]
    for copy, kept in (("cls.predictions.decoder.weight", words if tied else None),
                       ("cls.predictions.decoder.bias", tensors.get("cls.predictions.bias"))):
        if copy in tensors and kept is not None:
            if not _same(tensors[copy], kept):
                raise UnsupportedModelError(f"{directory}: tensor '{copy}' differs from the "
                                            f"tensor it is tied to")
            del tensors[copy]
    if "cls.predictions.decoder.bias" in tensors:  # the bias stored under the decoder only
        tensors["cls.predictions.bias"] = tensors.pop("cls.predictions.decoder.bias")
    layers = config["num_hidden_layers"]
    widths = [tensors[f"bert.encoder.layer.{i}.intermediate.dense.weight"].shape[0]
              for i in range(layers)]
    head = any(n.startswith("cls.predictions.") for n in tensors)
    module = BertEncoder(config, widths, mlm_head=head)
    module.load_state_dict({n: t.to(torch.float32) for n, t in tensors.items()})
    return module.eval()


def _load_bert_base_file(path, config):
    """A base in the library's format: groups carry the checkpoint's names."""
    by_name, tensor = base_file_groups(path, (".intermediate.dense",), "encoder")
    pre = "bert." if "bert.embeddings.word_embeddings" in by_name else ""
    layers = config["num_hidden_layers"]
    widths = [by_name[f"{pre}encoder.layer.{i}.intermediate.dense"]["units"]
              for i in range(layers)]
    head = "cls.predictions.decoder" in by_name
    # the base holds its own decoder: untied
    module = BertEncoder(dict(config, tie_word_embeddings=False), widths, mlm_head=head)
    sd = {}
    e, to = f"{pre}embeddings", "bert.embeddings"
    for table in ("word_embeddings", "token_type_embeddings"):
        sd[f"{to}.{table}.weight"] = tensor(f"{e}.{table}", "weight").T
    sd[f"{to}.position_embeddings.weight"] = tensor(f"{e}.position_embeddings", "shift")
    norms = ["embeddings.LayerNorm"]
    denses = []
    for i in range(layers):
        layer = f"encoder.layer.{i}"
        norms += [f"{layer}.attention.output.LayerNorm", f"{layer}.output.LayerNorm"]
        denses += [f"{layer}.attention.self.query", f"{layer}.attention.self.key",
                   f"{layer}.attention.self.value", f"{layer}.attention.output.dense",
                   f"{layer}.intermediate.dense", f"{layer}.output.dense"]
    for name in norms + denses:
        for key in ("weight", "bias"):
            sd[f"bert.{name}.{key}"] = tensor(f"{pre}{name}", key)
    if head:
        p = "cls.predictions"
        for name in ("transform.dense", "transform.LayerNorm"):
            for key in ("weight", "bias"):
                sd[f"{p}.{name}.{key}"] = tensor(f"{p}.{name}", key)
        sd[f"{p}.decoder.weight"] = tensor(f"{p}.decoder", "weight")
        sd[f"{p}.bias"] = tensor(f"{p}.decoder", "bias")
    module.load_state_dict(sd)
    return module.eval()


def load_encoder(path, config=None):
    """A BertEncoder (float32, eval mode) holding a checkpoint directory's
    weights (the original, or a base written in its layout), with its
    masked-LM head when the checkpoint stores one, or a base file in the
    library's format; the latter needs `config`: the original directory,
    its config.json, or its dict."""
    if os.path.isdir(path):
        return _load_bert_directory(path, _read_config(path))
    if config is None:
        raise UnsupportedModelError(f"{path}: a base file in the library's format needs "
                                    f"config= (the original checkpoint directory)")
    return _load_bert_base_file(path, _read_config(config))
