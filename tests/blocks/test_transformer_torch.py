"""Transformer language models built from the library's blocks equal
reference PyTorch modules written here from the published equations:

- a Llama-style decoder (token embedding, pre-norm RMSNorm, attention with
  separate q/k/v projections, grouped-query heads, rotary position
  embeddings (rotate_half, theta from the config) and the causal mask, a
  SwiGLU MLP down(silu(gate(x)) * up(x)), final norm, LM head);
- a GPT-2-style decoder (LayerNorm, fused c_attn in Conv1D layout [in, out]
  split by the caller, causal attention, gelu_new MLP, LM head tied to the
  token embedding);
- a BERT-style encoder (post-norm LayerNorm, bidirectional attention with
  biases, exact GELU).

Random float32 weights: the library's forward equals the reference to a
relative difference of 1e-5. Planted symmetry (duplicated MLP intermediate
units with re-split down-projections, a duplicated head, key/value
dimensions duplicated consistently across the query heads that read them):
the fibers are exactly the planted classes, and the compressed base gives
the same logits.

Run: /usr/bin/python3 -m pytest tests/blocks/test_transformer_torch.py
(library from $FIBRATION_LIBRARY, default <repo>/build/src/libfibration.so)."""
import ctypes
import json
import math
import os
import pathlib
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

ROOT = pathlib.Path(__file__).resolve().parents[2]
LIB_PATH = os.environ.get("FIBRATION_LIBRARY", str(ROOT / "build" / "src" / "libfibration.so"))

F32 = 1
NORM_LAYER, NORM_RMS = 0, 1
ACT = {"linear": 0, "gelu": 5, "silu": 6, "gelu_tanh": 12}
ROTARY_HALF = 1
I32, I64, P, D = ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p, ctypes.c_double


class AttentionOptions(ctypes.Structure):
    """fib_attention_options as include/fibration.h declares it."""
    _fields_ = [("struct_size", ctypes.c_size_t), ("n_heads", I64), ("n_kv_heads", I64),
                ("head_dim", I64), ("causal", I32), ("rotary", I32), ("rope_theta", D),
                ("rotary_dim", I64), ("scale", D)]


@pytest.fixture(scope="module")
def lib():
    if not os.path.exists(LIB_PATH):
        pytest.skip(f"library not built at {LIB_PATH}")
    lib = ctypes.CDLL(LIB_PATH)
    pi32, pi64 = ctypes.POINTER(I32), ctypes.POINTER(I64)
    lib.fib_graph_create.argtypes = [ctypes.POINTER(P)]
    lib.fib_graph_free.argtypes = [P]
    lib.fib_graph_free.restype = None
    lib.fib_graph_add_input_positions.argtypes = [P, I64, I64, I64, pi32]
    lib.fib_graph_add_dense.argtypes = [P, I32, I64, I32, P, I64, P, ctypes.c_uint32, pi32]
    lib.fib_attention_options_init.argtypes = [ctypes.POINTER(AttentionOptions), ctypes.c_size_t]
    lib.fib_graph_add_attention_ex.argtypes = [P, I32, ctypes.POINTER(AttentionOptions), I32,
                                               P, P, P, P, P, P, P, P, ctypes.c_uint32, pi32]
    lib.fib_graph_add_token_embedding.argtypes = [P, I32, I64, I32, P, pi32]
    lib.fib_graph_add_norm.argtypes = [P, I32, I32, I32, P, P, D, ctypes.c_uint32, pi32]
    lib.fib_graph_add_sum.argtypes = [P, I32, I32, pi32]
    lib.fib_graph_add_product.argtypes = [P, I32, I32, pi32]
    lib.fib_graph_set_activation.argtypes = [P, I32, I32, D]
    lib.fib_graph_forward.argtypes = [P, I64, I32, P, P]
    lib.fib_graph_io_width.argtypes = [P, pi64, pi64]
    lib.fib_graph_group_info.argtypes = [P, I32, pi32, pi64, pi32, ctypes.POINTER(D), pi32,
                                         pi32, pi32]
    lib.fib_color.argtypes = [P, P, ctypes.POINTER(P)]
    lib.fib_coloring_free.argtypes = [P]
    lib.fib_coloring_free.restype = None
    lib.fib_coloring_colors.argtypes = [P, I32, pi64, I64]
    lib.fib_compress.argtypes = [P, P, ctypes.POINTER(P)]
    lib.fib_base_graph.argtypes = [P]
    lib.fib_base_graph.restype = P
    lib.fib_base_free.argtypes = [P]
    lib.fib_base_free.restype = None
    lib.fib_model_save.argtypes = [P, ctypes.c_char_p, I32]
    lib.fib_model_load.argtypes = [P, P, ctypes.POINTER(P)]
    lib.fib_graph_tensor_dtype.argtypes = [P, I32, I32, pi32]
    lib.fib_last_error.restype = ctypes.c_char_p
    return lib


def check(lib, status):
    if status != 0:
        raise RuntimeError(f"status {status}: {lib.fib_last_error().decode()}")


# ---- reference modules, from the published equations -------------------------

class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight (Llama)."""

    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(x, theta):
    """Llama's apply_rotary_pos_emb for positions 0..T-1; x is [B, H, T, D]."""
    d, t = x.shape[-1], x.shape[-2]
    inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    freqs = torch.outer(torch.arange(t, dtype=torch.float64), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
    return x * cos + rotate_half(x) * sin


def attend(q, k, v, causal):
    """softmax(q k^T / sqrt(d) + mask) v over [B, H, T, D]; k, v already
    repeated to the query heads."""
    t = q.shape[-2]
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if causal:
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
        scores = scores.masked_fill(mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


class LlamaAttention(nn.Module):
    def __init__(self, hidden, heads, kv_heads, theta):
        super().__init__()
        self.heads, self.kv_heads, self.theta = heads, kv_heads, theta
        self.head_dim = hidden // heads
        self.q_proj = nn.Linear(hidden, heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(heads * self.head_dim, hidden, bias=False)

    def forward(self, x):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, self.theta), apply_rotary(k, self.theta)
        rep = self.heads // self.kv_heads  # repeat_kv: head h reads kv head h // rep
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        out = attend(q, k, v, causal=True).transpose(1, 2).reshape(b, t, -1)
        return self.o_proj(out)


class LlamaMLP(nn.Module):
    def __init__(self, hidden, intermediate):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaLayer(nn.Module):
    def __init__(self, hidden, heads, kv_heads, intermediate, theta):
        super().__init__()
        self.input_layernorm = RMSNorm(hidden)
        self.self_attn = LlamaAttention(hidden, heads, kv_heads, theta)
        self.post_attention_layernorm = RMSNorm(hidden)
        self.mlp = LlamaMLP(hidden, intermediate)

    def forward(self, x):
        h = x + self.self_attn(self.input_layernorm(x))
        return h + self.mlp(self.post_attention_layernorm(h))


class LlamaModel(nn.Module):
    def __init__(self, vocab=13, hidden=16, heads=4, kv_heads=2, intermediate=24, layers=2,
                 theta=500000.0):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, hidden)
        self.layers = nn.ModuleList(LlamaLayer(hidden, heads, kv_heads, intermediate, theta)
                                    for _ in range(layers))
        self.norm = RMSNorm(hidden)
        self.lm_head = nn.Linear(hidden, vocab, bias=False)

    def forward(self, tokens):
        x = self.embed_tokens(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.norm(x))


def gelu_new(x):
    """GPT-2's gelu_new."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


class Conv1D(nn.Module):
    """GPT-2's Conv1D: y = x @ weight + bias, weight stored [in, out]."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out) * 0.3)
        self.bias = nn.Parameter(torch.randn(n_out) * 0.1)

    def forward(self, x):
        return x @ self.weight + self.bias


class Gpt2Block(nn.Module):
    def __init__(self, hidden, heads):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(hidden, eps=1e-5)
        self.c_attn = Conv1D(hidden, 3 * hidden)
        self.c_proj = Conv1D(hidden, hidden)
        self.ln_2 = nn.LayerNorm(hidden, eps=1e-5)
        self.c_fc = Conv1D(hidden, 4 * hidden)
        self.mlp_proj = Conv1D(4 * hidden, hidden)

    def attention(self, x):
        b, t, e = x.shape
        q, k, v = self.c_attn(x).split(e, dim=2)
        q, k, v = (z.view(b, t, self.heads, e // self.heads).transpose(1, 2) for z in (q, k, v))
        return self.c_proj(attend(q, k, v, causal=True).transpose(1, 2).reshape(b, t, e))

    def forward(self, x):
        x = x + self.attention(self.ln_1(x))
        return x + self.mlp_proj(gelu_new(self.c_fc(self.ln_2(x))))


class Gpt2Model(nn.Module):
    """GPT-2 without its learned position embedding (wpe): that is a separate
    block (see docs/blocks/embedding.md)."""

    def __init__(self, vocab=11, hidden=12, heads=3, layers=2):
        super().__init__()
        self.wte = nn.Embedding(vocab, hidden)
        self.h = nn.ModuleList(Gpt2Block(hidden, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(hidden, eps=1e-5)

    def forward(self, tokens):
        x = self.wte(tokens)
        for block in self.h:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.T  # lm_head tied to wte


class BertLayer(nn.Module):
    """BERT's post-norm encoder layer: bidirectional attention with biases,
    exact GELU."""

    def __init__(self, hidden, heads, intermediate):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))
        self.attention_output = nn.Linear(hidden, hidden)
        self.attention_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.intermediate = nn.Linear(hidden, intermediate)
        self.output = nn.Linear(intermediate, hidden)
        self.output_norm = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x):
        b, t, e = x.shape
        q, k, v = (m(x).view(b, t, self.heads, e // self.heads).transpose(1, 2)
                   for m in (self.query, self.key, self.value))
        att = attend(q, k, v, causal=False).transpose(1, 2).reshape(b, t, e)
        x = self.attention_norm(x + self.attention_output(att))
        return self.output_norm(x + self.output(F.gelu(self.intermediate(x))))


class BertModel(nn.Module):
    """Word embeddings, their LayerNorm and encoder layers (the position and
    token-type embeddings are a separate block: see docs/blocks/embedding.md)."""

    def __init__(self, vocab=10, hidden=12, heads=3, intermediate=20, layers=2):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, hidden)
        self.embeddings_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.layers = nn.ModuleList(BertLayer(hidden, heads, intermediate)
                                    for _ in range(layers))

    def forward(self, tokens):
        x = self.embeddings_norm(self.word_embeddings(tokens))
        for layer in self.layers:
            x = layer(x)
        return x


def randomise(model, seed):
    """Random weights of a visible size (norm weights and biases too)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.dim() == 1:
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.4 * torch.randn(p.shape, generator=g))
    return model


# ---- the library's graphs -------------------------------------------------------

class Graph:
    """A fib_graph in float32; keeps the borrowed arrays alive and records
    group ids by name."""

    def __init__(self, lib, vocab, length):
        self.lib, self.keep, self.ids = lib, [], {}
        self.handle = P()
        check(lib, lib.fib_graph_create(ctypes.byref(self.handle)))
        self.input = self._out(lambda g: lib.fib_graph_add_input_positions(
            self.handle, vocab, length, 1, g))

    def __del__(self):
        self.lib.fib_graph_free(self.handle)

    def _out(self, call):
        g = I32()
        check(self.lib, call(ctypes.byref(g)))
        return g.value

    def ptr(self, t):
        if t is None:
            return None
        a = np.ascontiguousarray(t.detach().numpy(), dtype=np.float32)
        self.keep.append(a)
        return a.ctypes.data

    def dense(self, source, weight, bias=None, activation="linear"):
        """weight [out, in] (nn.Linear layout)."""
        out, n_in = weight.shape
        g = self._out(lambda g: self.lib.fib_graph_add_dense(
            self.handle, source, out, F32, self.ptr(weight), n_in, self.ptr(bias), 0, g))
        check(self.lib, self.lib.fib_graph_set_activation(self.handle, g, ACT[activation], 0.0))
        return g

    def embedding(self, source, weight):
        return self._out(lambda g: self.lib.fib_graph_add_token_embedding(
            self.handle, source, weight.shape[1], F32, self.ptr(weight), g))

    def norm(self, source, kind, weight, bias, eps):
        return self._out(lambda g: self.lib.fib_graph_add_norm(
            self.handle, source, kind, F32, self.ptr(weight), self.ptr(bias), eps, 0, g))

    def add(self, a, b):
        return self._out(lambda g: self.lib.fib_graph_add_sum(self.handle, a, b, g))

    def product(self, a, b):
        return self._out(lambda g: self.lib.fib_graph_add_product(self.handle, a, b, g))

    def attention(self, source, heads, kv_heads, weights, biases, rotary_theta=None):
        """weights: q, k, v, out in nn.Linear layout; returns the output
        projection's id (q, k, v, core are the four groups before it)."""
        o = AttentionOptions()
        check(self.lib, self.lib.fib_attention_options_init(ctypes.byref(o), ctypes.sizeof(o)))
        o.n_heads, o.n_kv_heads, o.causal = heads, kv_heads, 1
        if rotary_theta is not None:
            o.rotary, o.rope_theta = ROTARY_HALF, rotary_theta
        ptrs = []
        for w, b in zip(weights, biases):
            ptrs += [self.ptr(w), self.ptr(b)]
        return self._out(lambda g: self.lib.fib_graph_add_attention_ex(
            self.handle, source, ctypes.byref(o), F32, *ptrs, 0, g))


def llama_graph(lib, model, length):
    vocab = model.embed_tokens.num_embeddings
    g = Graph(lib, vocab, length)
    x = g.embedding(g.input, model.embed_tokens.weight)
    for i, layer in enumerate(model.layers):
        a = layer.self_attn
        n1 = g.norm(x, NORM_RMS, layer.input_layernorm.weight, None, layer.input_layernorm.eps)
        att = g.attention(n1, a.heads, a.kv_heads,
                          [a.q_proj.weight, a.k_proj.weight, a.v_proj.weight, a.o_proj.weight],
                          [None] * 4, rotary_theta=a.theta)
        g.ids[f"attn{i}"] = att
        h = g.add(x, att)
        n2 = g.norm(h, NORM_RMS, layer.post_attention_layernorm.weight, None,
                    layer.post_attention_layernorm.eps)
        gate = g.dense(n2, layer.mlp.gate_proj.weight, activation="silu")
        up = g.dense(n2, layer.mlp.up_proj.weight)
        prod = g.product(gate, up)
        g.ids[f"mlp{i}"] = (gate, up, prod)
        x = g.add(h, g.dense(prod, layer.mlp.down_proj.weight))
    n = g.norm(x, NORM_RMS, model.norm.weight, None, model.norm.eps)
    g.dense(n, model.lm_head.weight)
    return g


def gpt2_graph(lib, model, length):
    vocab, e = model.wte.weight.shape
    g = Graph(lib, vocab, length)
    x = g.embedding(g.input, model.wte.weight)
    for i, block in enumerate(model.h):
        n1 = g.norm(x, NORM_LAYER, block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)
        w, b = block.c_attn.weight.T, block.c_attn.bias  # Conv1D [in, out] -> [out, in]
        att = g.attention(n1, block.heads, block.heads,
                          [w[:e], w[e:2 * e], w[2 * e:], block.c_proj.weight.T],
                          [b[:e], b[e:2 * e], b[2 * e:], block.c_proj.bias])
        g.ids[f"attn{i}"] = att
        x = g.add(x, att)
        n2 = g.norm(x, NORM_LAYER, block.ln_2.weight, block.ln_2.bias, block.ln_2.eps)
        fc = g.dense(n2, block.c_fc.weight.T, block.c_fc.bias, activation="gelu_tanh")
        g.ids[f"mlp{i}"] = (fc,)
        x = g.add(x, g.dense(fc, block.mlp_proj.weight.T, block.mlp_proj.bias))
    n = g.norm(x, NORM_LAYER, model.ln_f.weight, model.ln_f.bias, model.ln_f.eps)
    g.dense(n, model.wte.weight)  # the tied LM head borrows the embedding matrix
    return g


def bert_graph(lib, model, length):
    vocab = model.word_embeddings.num_embeddings
    g = Graph(lib, vocab, length)
    ln = model.embeddings_norm
    x = g.norm(g.embedding(g.input, model.word_embeddings.weight), NORM_LAYER, ln.weight,
               ln.bias, ln.eps)
    for i, layer in enumerate(model.layers):
        lin = (layer.query, layer.key, layer.value, layer.attention_output)
        o = AttentionOptions()
        check(lib, lib.fib_attention_options_init(ctypes.byref(o), ctypes.sizeof(o)))
        o.n_heads = layer.heads
        ptrs = []
        for m in lin:
            ptrs += [g.ptr(m.weight), g.ptr(m.bias)]
        att = g._out(lambda out: lib.fib_graph_add_attention_ex(
            g.handle, x, ctypes.byref(o), F32, *ptrs, 0, out))
        g.ids[f"attn{i}"] = att
        an = layer.attention_norm
        x = g.norm(g.add(x, att), NORM_LAYER, an.weight, an.bias, an.eps)
        h = g.dense(x, layer.intermediate.weight, layer.intermediate.bias, activation="gelu")
        on = layer.output_norm
        x = g.norm(g.add(x, g.dense(h, layer.output.weight, layer.output.bias)), NORM_LAYER,
                   on.weight, on.bias, on.eps)
    return g


def one_hot_tokens(vocab, batch, length, seed):
    tokens = torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))
    return tokens, F.one_hot(tokens, vocab).to(torch.float32).numpy()


def lib_forward(lib, handle, x):
    n_in, n_out = I64(), I64()
    check(lib, lib.fib_graph_io_width(handle, ctypes.byref(n_in), ctypes.byref(n_out)))
    xs = np.ascontiguousarray(x.reshape(x.shape[0], -1), dtype=np.float32)
    assert xs.shape[1] == n_in.value
    out = np.zeros((x.shape[0], n_out.value), dtype=np.float32)
    check(lib, lib.fib_graph_forward(handle, x.shape[0], F32, xs.ctypes.data, out.ctypes.data))
    return out.reshape(x.shape[0], x.shape[1], -1)


def rel_diff(a, b):
    return float(np.max(np.abs(a - b) / (1.0 + np.abs(b))))


def classes(lib, coloring, group, n):
    out = np.zeros(n, dtype=np.int64)
    check(lib, lib.fib_coloring_colors(coloring, group, out.ctypes.data_as(ctypes.POINTER(I64)),
                                       n))
    return out


def canonical(labels):
    """Classes numbered in the order of their lowest unit (as the library)."""
    number = {}
    return np.array([number.setdefault(int(x), len(number)) for x in labels])


def width(lib, handle, group):
    n = I64()
    check(lib, lib.fib_graph_group_info(handle, group, None, ctypes.byref(n), None, None, None,
                                        None, None))
    return n.value


def compressed(lib, g):
    """Fibers of g and its base: (coloring, base); free both with release()."""
    coloring, base = P(), P()
    check(lib, lib.fib_color(g.handle, None, ctypes.byref(coloring)))
    check(lib, lib.fib_compress(g.handle, coloring, ctypes.byref(base)))
    return coloring, base


def release(lib, coloring, base):
    lib.fib_base_free(base)
    lib.fib_coloring_free(coloring)


# ---- planting ----------------------------------------------------------------

def plant_mlp(gate_rows, down_cols, pairs, seed):
    """Intermediate unit j copies unit i (rows of every map into the
    intermediate layer) and the down-projection's column of i is re-split
    between i and j (their sum unchanged)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for i, j in pairs:
            for w in gate_rows:
                w[j] = w[i]
            split = torch.rand(down_cols.shape[0], generator=g)
            total = down_cols[:, i].clone()
            down_cols[:, i], down_cols[:, j] = split * total, (1 - split) * total


def expected_labels(n, pairs):
    labels = np.arange(n)
    for i, j in pairs:
        labels[j] = labels[i]
    return canonical(labels)


# ---- tests ---------------------------------------------------------------------

LENGTH, BATCH = 6, 3


@pytest.mark.parametrize("seed", [0, 1])
def test_llama_decoder_equals_reference(lib, seed):
    model = randomise(LlamaModel(), seed).eval()
    tokens, x = one_hot_tokens(13, BATCH, LENGTH, seed)
    with torch.no_grad():
        want = model(tokens).numpy()
    g = llama_graph(lib, model, LENGTH)
    got = lib_forward(lib, g.handle, x)
    assert rel_diff(got, want) <= 1e-5


@pytest.mark.parametrize("seed", [0, 1])
def test_gpt2_decoder_equals_reference(lib, seed):
    model = randomise(Gpt2Model(), seed).eval()
    tokens, x = one_hot_tokens(11, BATCH, LENGTH, seed)
    with torch.no_grad():
        want = model(tokens).numpy()
    g = gpt2_graph(lib, model, LENGTH)
    got = lib_forward(lib, g.handle, x)
    assert rel_diff(got, want) <= 1e-5


@pytest.mark.parametrize("seed", [0, 1])
def test_bert_encoder_equals_reference(lib, seed):
    model = randomise(BertModel(), seed).eval()
    tokens, x = one_hot_tokens(10, BATCH, LENGTH, seed)
    with torch.no_grad():
        want = model(tokens).numpy()
    g = bert_graph(lib, model, LENGTH)
    assert rel_diff(lib_forward(lib, g.handle, x), want) <= 1e-5


def test_reference_modules_agree_with_torch():
    """The hand-written equations against torch's own modules where torch
    has one: gelu(approximate='tanh'), MultiheadAttention with a causal
    mask for a GPT-2 attention, TransformerEncoderLayer (post-norm, gelu)
    for a BERT layer."""
    x = torch.linspace(-4, 4, 101)
    assert torch.allclose(gelu_new(x), F.gelu(x, approximate="tanh"), atol=1e-6)
    torch.manual_seed(3)
    block = randomise(Gpt2Block(12, 3), 3)
    mha = nn.MultiheadAttention(12, 3, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(block.c_attn.weight.T)
        mha.in_proj_bias.copy_(block.c_attn.bias)
        mha.out_proj.weight.copy_(block.c_proj.weight.T)
        mha.out_proj.bias.copy_(block.c_proj.bias)
        h = torch.randn(2, 5, 12)
        mask = torch.triu(torch.ones(5, 5, dtype=torch.bool), diagonal=1)
        want, _ = mha(h, h, h, attn_mask=mask, need_weights=False)
        assert torch.allclose(block.attention(h), want, atol=1e-5)
    bert = randomise(BertLayer(12, 3, 20), 4).eval()
    ref = nn.TransformerEncoderLayer(12, 3, 20, dropout=0.0, activation="gelu",
                                     layer_norm_eps=1e-12, batch_first=True).eval()
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(torch.cat([bert.query.weight, bert.key.weight,
                                                      bert.value.weight]))
        ref.self_attn.in_proj_bias.copy_(torch.cat([bert.query.bias, bert.key.bias,
                                                    bert.value.bias]))
        for mine, theirs in ((bert.attention_output, ref.self_attn.out_proj),
                             (bert.intermediate, ref.linear1), (bert.output, ref.linear2),
                             (bert.attention_norm, ref.norm1), (bert.output_norm, ref.norm2)):
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)
        h = torch.randn(2, 5, 12)
        assert torch.allclose(bert(h), ref(h), atol=1e-5)


def test_llama_planted_symmetry_found_and_compressed(lib):
    """Layer 0: MLP units (1, 5) and (2, 17) duplicated; query head 1
    duplicates head 0 (both read kv head 0); kv head 1's dimensions 0 and 3
    (they rotate at different frequencies) duplicated in k and v, and in the
    q rows of both query heads reading it (2 and 3)."""
    model = randomise(LlamaModel(), 7).eval()
    layer = model.layers[0]
    a, hd = layer.self_attn, layer.self_attn.head_dim
    mlp_pairs = [(1, 5), (2, 17)]
    with torch.no_grad():
        plant_mlp([layer.mlp.gate_proj.weight, layer.mlp.up_proj.weight],
                  layer.mlp.down_proj.weight, mlp_pairs, 7)
        a.q_proj.weight[hd:2 * hd] = a.q_proj.weight[:hd]
        kv_pair = (hd + 0, hd + 3)
        for w in (a.k_proj.weight, a.v_proj.weight):
            w[kv_pair[1]] = w[kv_pair[0]]
        q_pairs = [(h * hd + 0, h * hd + 3) for h in (2, 3)]
        for i, j in q_pairs:
            a.q_proj.weight[j] = a.q_proj.weight[i]
    tokens, x = one_hot_tokens(13, BATCH, LENGTH, 8)
    with torch.no_grad():
        want = model(tokens).numpy()
    g = llama_graph(lib, model, LENGTH)
    assert rel_diff(lib_forward(lib, g.handle, x), want) <= 1e-5
    coloring, base = compressed(lib, g)
    try:
        att = g.ids["attn0"]
        q, k, v, core = att - 4, att - 3, att - 2, att - 1
        n_q, n_kv = 4 * hd, 2 * hd
        head_pairs = [(d, hd + d) for d in range(hd)]
        assert np.array_equal(classes(lib, coloring, q, n_q),
                              expected_labels(n_q, head_pairs + q_pairs))
        assert np.array_equal(classes(lib, coloring, k, n_kv), expected_labels(n_kv, [kv_pair]))
        assert np.array_equal(classes(lib, coloring, v, n_kv), expected_labels(n_kv, [kv_pair]))
        assert np.array_equal(classes(lib, coloring, core, n_q),
                              expected_labels(n_q, head_pairs + q_pairs))
        for group in g.ids["mlp0"]:
            assert np.array_equal(classes(lib, coloring, group, 24), expected_labels(24, mlp_pairs))
        # Layer 1 has nothing planted: every unit its own class.
        for group in g.ids["mlp1"]:
            assert len(set(classes(lib, coloring, group, 24))) == 24
        bg = lib.fib_base_graph(base)
        assert width(lib, bg, q) == n_q - hd - 2 and width(lib, bg, k) == n_kv - 1
        assert width(lib, bg, g.ids["mlp0"][2]) == 24 - 2
        assert rel_diff(lib_forward(lib, bg, x), want) <= 1e-5
    finally:
        release(lib, coloring, base)


def test_gpt2_planted_symmetry_found_and_compressed(lib):
    """Block 1: MLP units (0, 9), (3, 40) duplicated with re-split c_proj
    columns; head 2 duplicates head 1 (q, k and v)."""
    model = randomise(Gpt2Model(), 9).eval()
    block = model.h[1]
    e, hd = 12, 4
    mlp_pairs = [(0, 9), (3, 40)]
    with torch.no_grad():
        fc_rows = block.c_fc.weight.T  # a view: [out, in]
        plant_mlp([fc_rows], block.mlp_proj.weight.T, mlp_pairs, 9)
        block.c_fc.bias[9], block.c_fc.bias[40] = block.c_fc.bias[0], block.c_fc.bias[3]
        for part in range(3):
            cols = block.c_attn.weight[:, part * e:(part + 1) * e]
            cols[:, 2 * hd:3 * hd] = cols[:, hd:2 * hd]
            bias = block.c_attn.bias[part * e:(part + 1) * e]
            bias[2 * hd:3 * hd] = bias[hd:2 * hd]
    tokens, x = one_hot_tokens(11, BATCH, LENGTH, 10)
    with torch.no_grad():
        want = model(tokens).numpy()
    g = gpt2_graph(lib, model, LENGTH)
    assert rel_diff(lib_forward(lib, g.handle, x), want) <= 1e-5
    coloring, base = compressed(lib, g)
    try:
        att = g.ids["attn1"]
        head_pairs = [(hd + d, 2 * hd + d) for d in range(hd)]
        for group in (att - 4, att - 3, att - 2, att - 1):
            assert np.array_equal(classes(lib, coloring, group, e), expected_labels(e, head_pairs))
        fc = g.ids["mlp1"][0]
        assert np.array_equal(classes(lib, coloring, fc, 48), expected_labels(48, mlp_pairs))
        assert len(set(classes(lib, coloring, g.ids["mlp0"][0], 48))) == 48
        bg = lib.fib_base_graph(base)
        assert width(lib, bg, att - 1) == e - hd and width(lib, bg, fc) == 46
        assert rel_diff(lib_forward(lib, bg, x), want) <= 1e-5
    finally:
        release(lib, coloring, base)


def cli():
    exe = os.environ.get("FIBRATION_CLI")
    if exe:
        return exe
    built = pathlib.Path(LIB_PATH).resolve().parent / "cli" / "fibration"
    return str(built if built.exists() else ROOT / "build" / "src" / "cli" / "fibration")


def test_cli_analyzes_and_compresses_a_saved_decoder(lib, tmp_path):
    """A Llama-style decoder saved as a model file: `fibration analyze`
    reads it and reports the planted MLP classes; `fibration compress`
    writes a float32 base (the rotary frequencies, float64 structure, do not
    make it a float64 model) whose logits are the reference's."""
    if not os.path.exists(cli()):
        pytest.skip("fibration command not built")
    model = randomise(LlamaModel(layers=1), 11).eval()
    mlp = model.layers[0].mlp
    with torch.no_grad():
        plant_mlp([mlp.gate_proj.weight, mlp.up_proj.weight], mlp.down_proj.weight,
                  [(0, 4), (0, 9), (3, 20)], 11)
    g = llama_graph(lib, model, LENGTH)
    path = tmp_path / "decoder.safetensors"
    check(lib, lib.fib_model_save(g.handle, str(path).encode(), 0))
    report = subprocess.run([cli(), "analyze", str(path), "--json"], capture_output=True,
                            text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    groups = {layer["index"]: layer for layer in json.loads(report.stdout)["layers"]}
    gate, up, prod = g.ids["mlp0"]
    assert all(groups[i]["fibers"] == 24 - 3 for i in (gate, up, prod))
    out = tmp_path / "base.safetensors"
    done = subprocess.run([cli(), "compress", str(path), "-o", str(out), "-q"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    base = P()
    check(lib, lib.fib_model_load(str(out).encode(), None, ctypes.byref(base)))
    try:
        assert width(lib, base, prod) == 21
        dtype = I32()
        check(lib, lib.fib_graph_tensor_dtype(base, gate, 0, ctypes.byref(dtype)))
        assert dtype.value == F32
        tokens, x = one_hot_tokens(13, BATCH, LENGTH, 12)
        with torch.no_grad():
            want = model(tokens).numpy()
        assert rel_diff(lib_forward(lib, base, x), want) <= 1e-5
    finally:
        lib.fib_graph_free(base)


def test_torch_load_refuses_a_causal_attention_by_name(lib, tmp_path):
    """fibration.torch.load has no module for a causal (or rotary) core: it
    names the group instead of loading a bidirectional attention."""
    import sys
    sys.path.insert(0, str(ROOT / "bindings" / "python"))
    os.environ.setdefault("FIBRATION_LIBRARY", LIB_PATH)
    ft = pytest.importorskip("fibration.torch")
    model = randomise(Gpt2Model(layers=1), 13).eval()
    g = gpt2_graph(lib, model, LENGTH)
    path = tmp_path / "gpt2.safetensors"
    check(lib, lib.fib_model_save(g.handle, str(path).encode(), 0))
    core = g.ids["attn0"] - 1
    with pytest.raises(ft.UnsupportedModelError,
                       match=r"group %d .*a causal attention core" % core):
        ft.load(path)
