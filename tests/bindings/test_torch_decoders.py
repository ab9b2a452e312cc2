"""fibration.torch's reference decoders (LlamaDecoder, Gpt2Decoder) against
a second, independent implementation written here in plain tensor code
from the published equations, on random weights: rotary embeddings as
complex rotations of (i, i + d/2) pairs, attention as explicit per-head
loops, GPT-2's Conv1D as x @ W, RMSNorm and LayerNorm written out.

Run: /usr/bin/python3 -m pytest tests/bindings/test_torch_decoders.py"""
import math

import pytest

torch = pytest.importorskip("torch")
ft = pytest.importorskip("fibration.torch")


def randomised(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.4 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module.eval()


def rms(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(((x - mu) ** 2).mean(-1, keepdim=True) + eps) * w + b


def rope(x, theta):
    """x [T, d]: dims (i, i + d/2) are the real and imaginary parts of a
    complex number turned by position * theta^(-2i/d)."""
    t, d = x.shape
    z = torch.complex(x[:, :d // 2].double(), x[:, d // 2:].double())
    freq = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    z = z * torch.polar(torch.ones(t, d // 2, dtype=torch.float64),
                        torch.arange(t, dtype=torch.float64)[:, None] * freq)
    return torch.cat((z.real, z.imag), -1).to(x.dtype)


def causal_head(q, k, v, scale):
    out = torch.zeros_like(v)
    for i in range(q.shape[0]):  # position i sees 0..i
        s = torch.stack([(q[i] * k[j]).sum() * scale for j in range(i + 1)])
        p = torch.exp(s - s.max())
        out[i] = (p[:, None] * v[:i + 1]).sum(0) / p.sum()
    return out


def plain_llama(sd, c, tokens):
    hid, heads, kv, d = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], \
        c["hidden_size"] // c["num_attention_heads"]
    eps, theta = c["rms_norm_eps"], c["rope_theta"]
    out = []
    for seq in tokens:
        x = sd["model.embed_tokens.weight"][seq]
        for i in range(c["num_hidden_layers"]):
            p = f"model.layers.{i}."

            def lin(name, y):
                b = sd.get(p + name + ".bias")
                return y @ sd[p + name + ".weight"].T + (0 if b is None else b)
            h = rms(x, sd[p + "input_layernorm.weight"], eps)
            q, k, v = lin("self_attn.q_proj", h), lin("self_attn.k_proj", h), \
                lin("self_attn.v_proj", h)
            heads_out = []
            for a in range(heads):
                g = a * kv // heads  # the key/value head this query head shares
                heads_out.append(causal_head(rope(q[:, a * d:(a + 1) * d], theta),
                                             rope(k[:, g * d:(g + 1) * d], theta),
                                             v[:, g * d:(g + 1) * d], 1 / math.sqrt(d)))
            x = x + lin("self_attn.o_proj", torch.cat(heads_out, -1))
            h = rms(x, sd[p + "post_attention_layernorm.weight"], eps)
            gate = lin("mlp.gate_proj", h)
            x = x + lin("mlp.down_proj", gate * torch.sigmoid(gate) * lin("mlp.up_proj", h))
        head = sd.get("lm_head.weight", sd["model.embed_tokens.weight"])
        out.append(rms(x, sd["model.norm.weight"], eps) @ head.T)
    return torch.stack(out)


def plain_gpt2(sd, c, tokens):
    e, heads = c["n_embd"], c["n_head"]
    d, eps = e // heads, c["layer_norm_epsilon"]

    def gelu_new(y):
        return 0.5 * y * (1 + torch.tanh(math.sqrt(2 / math.pi) * (y + 0.044715 * y ** 3)))
    out = []
    for seq in tokens:
        t = len(seq)
        x = sd["transformer.wte.weight"][seq] + sd["transformer.wpe.weight"][:t]
        for i in range(c["n_layer"]):
            p = f"transformer.h.{i}."

            def conv(name, y):
                return y @ sd[p + name + ".weight"] + sd[p + name + ".bias"]
            h = layer_norm(x, sd[p + "ln_1.weight"], sd[p + "ln_1.bias"], eps)
            qkv = conv("attn.c_attn", h)
            q, k, v = qkv[:, :e], qkv[:, e:2 * e], qkv[:, 2 * e:]
            att = torch.cat([causal_head(q[:, a * d:(a + 1) * d], k[:, a * d:(a + 1) * d],
                                         v[:, a * d:(a + 1) * d], 1 / math.sqrt(d))
                             for a in range(heads)], -1)
            x = x + conv("attn.c_proj", att)
            h = layer_norm(x, sd[p + "ln_2.weight"], sd[p + "ln_2.bias"], eps)
            x = x + conv("mlp.c_proj", gelu_new(conv("mlp.c_fc", h)))
        h = layer_norm(x, sd["transformer.ln_f.weight"], sd["transformer.ln_f.bias"], eps)
        out.append(h @ sd.get("lm_head.weight", sd["transformer.wte.weight"]).T)
    return torch.stack(out)


LLAMA = {"model_type": "llama", "hidden_size": 16, "intermediate_size": 24,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "vocab_size": 13,
         "tie_word_embeddings": False}


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("changes", [{}, {"tie_word_embeddings": True},
                                     {"model_type": "qwen2"},
                                     {"attention_bias": True, "mlp_bias": True},
                                     {"num_key_value_heads": 1}, {"num_key_value_heads": 4}],
                         ids=["gqa", "tied", "qwen2-bias", "biases", "mqa", "mha"])
def test_llama_decoder_equals_plain_equations(changes):
    c = dict(LLAMA, **changes)
    dec = randomised(ft.LlamaDecoder(c, widths=[24, 19]), 1)
    tokens = torch.randint(0, 13, (2, 9), generator=torch.Generator().manual_seed(2))
    sd = {n: t.double() for n, t in dec.state_dict().items()}
    with torch.no_grad():
        want = plain_llama(sd, c, tokens)
        got = dec.double()(tokens)
    assert rel(got, want) <= 1e-10


GPT2 = {"model_type": "gpt2", "n_embd": 12, "n_head": 3, "n_layer": 2, "n_positions": 16,
        "vocab_size": 11, "layer_norm_epsilon": 1e-5}


@pytest.mark.parametrize("tied", [True, False])
def test_gpt2_decoder_equals_plain_equations(tied):
    c = dict(GPT2, tie_word_embeddings=tied)
    dec = randomised(ft.Gpt2Decoder(c, widths=[48, 30]), 3)
    tokens = torch.randint(0, 11, (2, 16), generator=torch.Generator().manual_seed(4))
    sd = {n: t.double() for n, t in dec.state_dict().items()}
    with torch.no_grad():
        want = plain_gpt2(sd, c, tokens)
        got = dec.double()(tokens)
    assert rel(got, want) <= 1e-10


def test_decoders_refuse_what_they_do_not_compute():
    with pytest.raises(ft.UnsupportedModelError, match="rope_scaling"):
        ft.LlamaDecoder(dict(LLAMA, rope_scaling={"type": "linear", "factor": 2.0}))
    with pytest.raises(ft.UnsupportedModelError, match="activation_function 'quick_gelu'"):
        ft.Gpt2Decoder(dict(GPT2, activation_function="quick_gelu"))
