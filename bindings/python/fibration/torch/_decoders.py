"""Reference decoders: GPT-2-style and Llama-style causal language models
written from the published equations, loading a Hugging Face checkpoint
directory as stored (config.json, model.safetensors or shards) or the base
`fibration compress DIR -o BASE` wrote (a checkpoint directory, or a file
in the library's own format), so that a base can be run and evaluated
without the `transformers` package (docs/python.md, "Reference decoders").

    dec = ft.load_decoder("llama_dir")                  # the original
    small = ft.load_decoder("base_dir")                 # its base, same layout
    small = ft.load_decoder("base.safetensors", config="llama_dir")
    logits = dec(tokens)                                # tokens: [batch, length]

Every MLP has its own width (a base's layers may differ); a base in the
library's format may also gather its gated product (unit c multiplies gate
unit gate_index[c] by up unit up_index[c]). Bases whose residual stream or
attention were merged are refused by name: `fib_graph_forward` (or
`fibration.Graph.forward`) runs those."""

import json
import math
import os
import struct

import torch
import torch.nn.functional as F
from torch import nn

from ._errors import UnsupportedModelError

_DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16,
           "BF16": torch.bfloat16}
_SIZES = {"F32": 4, "F64": 8, "F16": 2, "BF16": 2}


def read_safetensors(path):
    """(tensors: name -> torch tensor in its stored dtype, metadata: dict)."""
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(length))
        data = bytearray(fh.read())
    metadata = header.pop("__metadata__", {}) or {}
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        dtype = _DTYPES.get(entry["dtype"])
        if dtype is None:
            raise UnsupportedModelError(f"{path}: tensor '{name}': dtype {entry['dtype']}")
        if end > begin:
            t = torch.frombuffer(data, dtype=dtype, offset=begin,
                                 count=(end - begin) // _SIZES[entry["dtype"]])
        else:
            t = torch.empty(0, dtype=dtype)
        tensors[name] = t.reshape(entry["shape"])
    return tensors, metadata


def _checkpoint_tensors(directory):
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as fh:
            files = sorted(set(json.load(fh)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    tensors = {}
    for name in files:
        tensors.update(read_safetensors(os.path.join(directory, name))[0])
    return tensors


# ---- the equations -----------------------------------------------------------

class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight."""

    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class LayerNorm(nn.Module):
    """(x - mean) / sqrt(var + eps) * weight + bias (biased variance)."""

    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))
        self.eps = eps

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = (x - mean).pow(2).mean(-1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


def _causal_attention(q, k, v, scale):
    """softmax(q k^T * scale, future masked) v over [batch, heads, length, dim]."""
    t = q.shape[-2]
    scores = (q @ k.transpose(-1, -2)) * scale
    future = torch.triu(torch.ones(t, t, dtype=torch.bool, device=q.device), diagonal=1)
    return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ v


def _rotate_half(x, theta):
    """Rotary position embedding, rotate_half convention: dimension i and
    i + d/2 turn together by position * theta^(-2i/d)."""
    d, t = x.shape[-1], x.shape[-2]
    inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    angles = torch.outer(torch.arange(t, dtype=torch.float64), inv_freq)
    cos = torch.cat((angles, angles), -1).cos().to(x.dtype)
    sin = torch.cat((angles, angles), -1).sin().to(x.dtype)
    half = d // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), -1) * sin


class LlamaAttention(nn.Module):
    def __init__(self, hidden, heads, kv_heads, head_dim, theta, qkv_bias, o_bias):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim, self.theta = heads, kv_heads, head_dim, theta
        self.q_proj = nn.Linear(hidden, heads * head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(hidden, kv_heads * head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(hidden, kv_heads * head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(heads * head_dim, hidden, bias=o_bias)

    def forward(self, x):
        b, t, _ = x.shape

        def split(y, n):
            return y.view(b, t, n, self.head_dim).transpose(1, 2)
        q = _rotate_half(split(self.q_proj(x), self.heads), self.theta)
        k = _rotate_half(split(self.k_proj(x), self.kv_heads), self.theta)
        v = split(self.v_proj(x), self.kv_heads)
        share = self.heads // self.kv_heads  # query head h reads key/value head h // share
        k, v = k.repeat_interleave(share, 1), v.repeat_interleave(share, 1)
        out = _causal_attention(q, k, v, 1.0 / math.sqrt(self.head_dim))
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))


class GatedMLP(nn.Module):
    """down(silu(gate(x))[gate_index] * up(x)[up_index]); the indices are
    the identity unless a base gathers."""

    def __init__(self, hidden, gate_units, up_units, units, bias):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, gate_units, bias=bias)
        self.up_proj = nn.Linear(hidden, up_units, bias=bias)
        self.down_proj = nn.Linear(units, hidden, bias=bias)
        self.register_buffer("gate_index", torch.arange(units), persistent=False)
        self.register_buffer("up_index", torch.arange(units), persistent=False)

    def forward(self, x):
        gate = F.silu(self.gate_proj(x))[..., self.gate_index]
        return self.down_proj(gate * self.up_proj(x)[..., self.up_index])


class LlamaLayer(nn.Module):
    def __init__(self, c, units):
        super().__init__()
        self.input_layernorm = RMSNorm(c["hidden"], c["eps"])
        self.self_attn = LlamaAttention(c["hidden"], c["heads"], c["kv_heads"], c["head_dim"],
                                        c["theta"], c["qkv_bias"], c["o_bias"])
        self.post_attention_layernorm = RMSNorm(c["hidden"], c["eps"])
        self.mlp = GatedMLP(c["hidden"], units, units, units, c["mlp_bias"])

    def forward(self, x):
        h = x + self.self_attn(self.input_layernorm(x))
        return h + self.mlp(self.post_attention_layernorm(h))


class _LlamaBody(nn.Module):
    def __init__(self, c, widths):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab"], c["hidden"])
        self.layers = nn.ModuleList(LlamaLayer(c, w) for w in widths)
        self.norm = RMSNorm(c["hidden"], c["eps"])


class LlamaDecoder(nn.Module):
    """Llama (and Mistral, Qwen2 without a sliding window): RMSNorm, causal
    grouped-query attention with rotary embeddings (rotate_half over the
    whole head), SwiGLU MLP, final RMSNorm, LM head (tied or not). The
    parameters carry transformers' LlamaForCausalLM names. `widths`: the
    MLP width of each layer (default: intermediate_size everywhere)."""

    def __init__(self, config, widths=None):
        super().__init__()
        c = _llama_settings(config)
        widths = list(widths or [c["intermediate"]] * c["layers"])
        self.settings, self.tied = c, c["tied"]
        self.model = _LlamaBody(c, widths)
        if not self.tied:
            self.lm_head = nn.Linear(c["hidden"], c["vocab"], bias=False)

    def forward(self, tokens):
        x = self.model.embed_tokens(tokens)
        for layer in self.model.layers:
            x = layer(x)
        x = self.model.norm(x)
        head = self.model.embed_tokens.weight if self.tied else self.lm_head.weight
        return x @ head.T


class Conv1D(nn.Module):
    """GPT-2's linear map with the weight stored [in, out]: x W + b."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return x @ self.weight + self.bias


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


_GPT2_ACTIVATIONS = {"gelu_new": _gelu_tanh, "gelu_pytorch_tanh": _gelu_tanh,
                     "gelu": F.gelu, "relu": F.relu, "silu": F.silu, "swish": F.silu,
                     "tanh": torch.tanh, "sigmoid": torch.sigmoid}


class _Gpt2Attention(nn.Module):
    def __init__(self, e, heads, scaled):
        super().__init__()
        self.heads, self.scaled = heads, scaled
        self.c_attn = Conv1D(e, 3 * e)
        self.c_proj = Conv1D(e, e)

    def forward(self, x):
        b, t, e = x.shape
        d = e // self.heads
        q, k, v = (y.view(b, t, self.heads, d).transpose(1, 2)
                   for y in self.c_attn(x).split(e, dim=-1))
        out = _causal_attention(q, k, v, 1.0 / math.sqrt(d) if self.scaled else 1.0)
        return self.c_proj(out.transpose(1, 2).reshape(b, t, e))


class _Gpt2MLP(nn.Module):
    def __init__(self, e, units, activation):
        super().__init__()
        self.c_fc = Conv1D(e, units)
        self.c_proj = Conv1D(units, e)
        self.activation = activation

    def forward(self, x):
        return self.c_proj(self.activation(self.c_fc(x)))


class Gpt2Block(nn.Module):
    def __init__(self, c, units):
        super().__init__()
        self.ln_1 = LayerNorm(c["hidden"], c["eps"])
        self.attn = _Gpt2Attention(c["hidden"], c["heads"], c["scaled"])
        self.ln_2 = LayerNorm(c["hidden"], c["eps"])
        self.mlp = _Gpt2MLP(c["hidden"], units, _GPT2_ACTIVATIONS[c["activation"]])

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class _Gpt2Body(nn.Module):
    def __init__(self, c, widths):
        super().__init__()
        self.wte = nn.Embedding(c["vocab"], c["hidden"])
        self.wpe = nn.Embedding(c["positions"], c["hidden"])
        self.h = nn.ModuleList(Gpt2Block(c, w) for w in widths)
        self.ln_f = LayerNorm(c["hidden"], c["eps"])


class Gpt2Decoder(nn.Module):
    """GPT-2: learned token and position embeddings, pre-norm blocks of
    causal multi-head attention (fused c_attn, Conv1D layout) and an MLP,
    final LayerNorm, LM head (tied to wte unless the config says not). The
    parameters carry GPT2LMHeadModel's names."""

    def __init__(self, config, widths=None):
        super().__init__()
        c = _gpt2_settings(config)
        widths = list(widths or [c["intermediate"]] * c["layers"])
        self.settings, self.tied = c, c["tied"]
        self.transformer = _Gpt2Body(c, widths)
        if not self.tied:
            self.lm_head = nn.Linear(c["hidden"], c["vocab"], bias=False)

    def forward(self, tokens):
        body = self.transformer
        x = body.wte(tokens) + body.wpe.weight[:tokens.shape[1]]
        for block in body.h:
            x = block(x)
        x = body.ln_f(x)
        head = body.wte.weight if self.tied else self.lm_head.weight
        return x @ head.T


# ---- settings from config.json -----------------------------------------------

def _refuse(config, key, allowed):
    value = config.get(key)
    if value not in allowed:
        raise UnsupportedModelError(f"config.json: {key} {value!r} is not supported by the "
                                    f"reference decoder")


def _llama_settings(config):
    _refuse(config, "model_type", ("llama", "mistral", "qwen2"))
    _refuse(config, "hidden_act", (None, "silu"))
    _refuse(config, "rope_scaling", (None,))
    heads = config["num_attention_heads"]
    hidden = config["hidden_size"]
    qwen2 = config["model_type"] == "qwen2"
    return {"vocab": config["vocab_size"], "hidden": hidden, "heads": heads,
            "kv_heads": config.get("num_key_value_heads") or heads,
            "head_dim": config.get("head_dim") or hidden // heads,
            "intermediate": config["intermediate_size"],
            "layers": config["num_hidden_layers"],
            "eps": config.get("rms_norm_eps", 1e-6), "theta": config.get("rope_theta", 10000.0),
            "tied": bool(config.get("tie_word_embeddings", False)),
            "qkv_bias": bool(config.get("attention_bias", False)) or qwen2,
            "o_bias": bool(config.get("attention_bias", False)),
            "mlp_bias": bool(config.get("mlp_bias", False))}


def _gpt2_settings(config):
    _refuse(config, "model_type", ("gpt2",))
    _refuse(config, "activation_function", (None, *_GPT2_ACTIVATIONS))
    _refuse(config, "scale_attn_by_inverse_layer_idx", (None, False))
    e = config["n_embd"]
    return {"vocab": config["vocab_size"], "hidden": e, "heads": config["n_head"],
            "layers": config["n_layer"], "positions": config["n_positions"],
            "intermediate": config.get("n_inner") or 4 * e,
            "eps": config.get("layer_norm_epsilon", 1e-5),
            "activation": config.get("activation_function") or "gelu_new",
            "scaled": config.get("scale_attn_weights", True) is not False,
            "tied": config.get("tie_word_embeddings", True) is not False}


def _read_config(config):
    if isinstance(config, dict):
        return config
    path = os.path.join(config, "config.json") if os.path.isdir(config) else config
    with open(path) as fh:
        return json.load(fh)


# ---- loading -----------------------------------------------------------------

def _load_directory(directory):
    config = _read_config(directory)
    tensors = _checkpoint_tensors(directory)
    if config.get("model_type") == "gpt2":
        if not any(n.startswith("transformer.") for n in tensors):
            tensors = {("" if n.startswith("lm_head") else "transformer.") + n: t
                       for n, t in tensors.items()}
        tensors = {n: t for n, t in tensors.items()
                   if not n.endswith((".attn.bias", ".attn.masked_bias"))}
        layers = config["n_layer"]
        widths = [tensors[f"transformer.h.{i}.mlp.c_fc.weight"].shape[1] for i in range(layers)]
        module = Gpt2Decoder(config, widths)
    else:
        layers = config["num_hidden_layers"]
        widths = [tensors[f"model.layers.{i}.mlp.gate_proj.weight"].shape[0]
                  for i in range(layers)]
        module = LlamaDecoder(config, widths)
    module.load_state_dict({n: t.to(torch.float32) for n, t in tensors.items()})
    return module.eval()


def _is_identity(projection):
    return all(p == i for i, p in enumerate(projection))


def base_file_groups(path, mergeable, module):
    """A base file in the library's format whose only merged groups end in
    `mergeable`: (its groups by name, tensor(group name, key) -> float32
    tensor or None). Other merges are refused, naming the group."""
    tensors, metadata = read_safetensors(path)
    if "fibration" not in metadata:
        raise UnsupportedModelError(f"{path}: no 'fibration' structure metadata; a checkpoint "
                                    f"directory is loaded by its folder")
    structure = json.loads(metadata["fibration"])
    groups = structure["groups"]
    projection = structure.get("projection") or [None] * len(groups)
    by_name = {}
    for group, proj in zip(groups, projection):
        name = group.get("name", "")
        by_name[name] = group
        if proj is not None and not name.endswith(mergeable) and not _is_identity(proj):
            raise UnsupportedModelError(
                f"{path}: group '{name}' was merged ({len(proj)} -> {group['units']} units); "
                f"the reference {module} runs bases whose residual stream and attention are "
                f"unmerged (fib_graph_forward runs this one)")

    def tensor(group_name, key):
        ref = (by_name[group_name].get("tensors") or {}).get(key)
        return None if ref is None else tensors[ref].to(torch.float32)
    return by_name, tensor


def _load_base_file(path, config):
    """A base in the library's format: groups carry the checkpoint's names."""
    config = _read_config(config)
    gpt2 = config.get("model_type") == "gpt2"
    mergeable = (".mlp.c_fc",) if gpt2 else (".mlp.gate_proj", ".mlp.up_proj", ".mlp.product")
    by_name, tensor = base_file_groups(path, mergeable, "decoder")
    config = dict(config, tie_word_embeddings=False)  # the base holds its head
    sd = {}
    if gpt2:
        pre = "transformer." if "transformer.wte" in by_name else ""
        layers = config["n_layer"]
        widths = [by_name[f"{pre}h.{i}.mlp.c_fc"]["units"] for i in range(layers)]
        module = Gpt2Decoder(config, widths)
        sd["transformer.wte.weight"] = tensor(f"{pre}wte", "weight").T
        sd["transformer.wpe.weight"] = tensor(f"{pre}wpe", "shift")
        for i in range(layers):
            h, to = f"{pre}h.{i}", f"transformer.h.{i}"
            for ln in ("ln_1", "ln_2"):
                sd[f"{to}.{ln}.weight"] = tensor(f"{h}.{ln}", "weight")
                sd[f"{to}.{ln}.bias"] = tensor(f"{h}.{ln}", "bias")
            sd[f"{to}.attn.c_attn.weight"] = torch.cat(
                [tensor(f"{h}.attn.{p}", "weight").T for p in "qkv"], 1)
            sd[f"{to}.attn.c_attn.bias"] = torch.cat(
                [tensor(f"{h}.attn.{p}", "bias") for p in "qkv"])
            for part in ("attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
                sd[f"{to}.{part}.weight"] = tensor(f"{h}.{part}", "weight").T
                sd[f"{to}.{part}.bias"] = tensor(f"{h}.{part}", "bias")
        sd["transformer.ln_f.weight"] = tensor(f"{pre}ln_f", "weight")
        sd["transformer.ln_f.bias"] = tensor(f"{pre}ln_f", "bias")
        sd["lm_head.weight"] = tensor("lm_head", "weight")
    else:
        layers = config["num_hidden_layers"]
        module = LlamaDecoder(config, [1] * layers)
        sd["model.embed_tokens.weight"] = tensor("model.embed_tokens", "weight").T
        for i in range(layers):
            layer = f"model.layers.{i}"
            for norm in ("input_layernorm", "post_attention_layernorm"):
                sd[f"{layer}.{norm}.weight"] = tensor(f"{layer}.{norm}.weight", "weight")
            for part in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                         "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"):
                for key in ("weight", "bias"):
                    t = tensor(f"{layer}.{part}", key)
                    if t is not None:
                        sd[f"{layer}.{part}.{key}"] = t
            s = module.settings
            gate, up = sd[f"{layer}.mlp.gate_proj.weight"], sd[f"{layer}.mlp.up_proj.weight"]
            product = by_name[f"{layer}.mlp.product"]
            mlp = GatedMLP(s["hidden"], gate.shape[0], up.shape[0], product["units"],
                           s["mlp_bias"])
            gather = product.get("gather")
            if gather:
                mlp.gate_index = torch.tensor(gather[0])
                mlp.up_index = torch.tensor(gather[1])
            module.model.layers[i].mlp = mlp
        sd["model.norm.weight"] = tensor("model.norm.weight", "weight")
        sd["lm_head.weight"] = tensor("lm_head", "weight")
    module.load_state_dict(sd)
    return module.eval()


def load_decoder(path, config=None):
    """A LlamaDecoder or Gpt2Decoder (float32, eval mode) holding a
    checkpoint directory's weights (the original, or a base written in its
    layout), or a base file in the library's format; the latter needs
    `config`: the original directory, its config.json, or its dict."""
    if os.path.isdir(path):
        return _load_directory(path)
    if config is None:
        raise UnsupportedModelError(f"{path}: a base file in the library's format needs "
                                    f"config= (the original checkpoint directory)")
    return _load_base_file(path, config)
