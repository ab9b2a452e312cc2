"""fibration.Graph's builders for language models: add_token_embedding and
add_attention_ex (grouped-query, causal, rotary) against a numpy reference
written from Llama's equations; a duplicated query head found and merged
exactly; bad options named."""
import numpy as np
import pytest

import fibration


def rotate(x, theta):
    """Llama's rotate_half rotation of x [T, heads, d] at positions 0..T-1."""
    t, _, d = x.shape
    half = d // 2
    angle = np.arange(t)[:, None] / theta ** (2 * np.arange(half) / d)[None, :]
    cos, sin = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def reference(tokens, emb, wq, wk, wv, wo, heads, kv_heads, theta):
    x = emb[tokens]                          # [T, E]
    t, d = len(tokens), wq.shape[0] // heads
    q = rotate((x @ wq.T).reshape(t, heads, d), theta)
    k = rotate((x @ wk.T).reshape(t, kv_heads, d), theta)
    v = (x @ wv.T).reshape(t, kv_heads, d)
    rep = heads // kv_heads
    out = np.zeros((t, heads, d))
    for h in range(heads):
        s = q[:, h] @ k[:, h // rep].T / np.sqrt(d)
        s[np.triu_indices(t, 1)] = -np.inf
        p = np.exp(s - s.max(axis=1, keepdims=True))
        out[:, h] = (p / p.sum(axis=1, keepdims=True)) @ v[:, h // rep]
    return out.reshape(t, -1) @ wo.T


def build(vocab, length, emb, wq, wk, wv, wo, heads, kv_heads, theta):
    g = fibration.Graph()
    tokens = g.add_input_positions(vocab, length, 1)
    x = g.add_token_embedding(tokens, emb)
    out = g.add_attention_ex(x, wq, wk, wv, wo, heads, n_kv_heads=kv_heads, causal=True,
                             rotary="half", rope_theta=theta)
    return g, out


def weights(seed, vocab=9, e=8, heads=4, kv_heads=2):
    rng = np.random.default_rng(seed)
    d = e // heads
    return (rng.normal(size=(vocab, e)), rng.normal(size=(heads * d, e)),
            rng.normal(size=(kv_heads * d, e)), rng.normal(size=(kv_heads * d, e)),
            rng.normal(size=(e, heads * d)))


def test_graph_builders_equal_the_reference():
    vocab, length = 9, 5
    emb, wq, wk, wv, wo = weights(1)
    g, _ = build(vocab, length, emb, wq, wk, wv, wo, 4, 2, 100.0)
    tokens = np.array([3, 0, 8, 3, 5])
    x = np.eye(vocab)[tokens].reshape(1, -1)
    got = g.forward(x).reshape(length, -1)
    want = reference(tokens, emb, wq, wk, wv, wo, 4, 2, 100.0)
    assert np.max(np.abs(got - want) / (1 + np.abs(want))) < 1e-12


def test_duplicated_query_head_merges():
    emb, wq, wk, wv, wo = weights(2)
    wq[2:4] = wq[0:2]  # query head 1 copies head 0 (both read kv head 0)
    g, out = build(9, 5, emb, wq, wk, wv, wo, 4, 2, 10000.0)
    coloring = g.color()
    core = out - 1
    assert coloring.num_classes(core) == 6 and coloring.num_classes(out - 4) == 6
    base = g.compress(coloring)
    x = np.random.default_rng(3).random((2, 9 * 5))
    assert np.max(np.abs(base.graph.forward(x) - g.forward(x))) < 1e-10
    assert base.graph.block_params(core)[0] == 3  # the duplicated head is dropped


def test_bad_options_are_named():
    emb, wq, wk, wv, wo = weights(4)
    g = fibration.Graph()
    x = g.add_token_embedding(g.add_input_positions(9, 3, 1), emb)
    with pytest.raises(fibration.FibrationError, match="n_kv_heads 3"):
        g.add_attention_ex(x, wq, wk, wv, wo, 4, n_kv_heads=3)
    with pytest.raises(ValueError, match="rotary must be None or 'half'"):
        g.add_attention_ex(x, wq, wk, wv, wo, 4, rotary="neox")
    with pytest.raises(fibration.FibrationError, match=r"embedding\[1, 2\] is NaN"):
        bad = emb.copy()
        bad[1, 2] = np.nan
        g.add_token_embedding(0, bad)
