"""The `fibration` command: help, exit codes, one-line errors, every
output format (DOT rendered by Graphviz), and compress -> lift / break
keeping what the network computes."""
import csv
import io
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

import st_io

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "..", "docs", "examples", "fashion_mlp.safetensors")
CORPUS = os.environ.get("FIBRATION_CORPUS", os.path.join(HERE, "corpus"))
VERBS = ["analyze", "compress", "lift", "break"]


def run(*args):
    return subprocess.run([st_io.cli(), *map(str, args)], capture_output=True,
                          text=True)


@pytest.fixture
def model(tmp_path):
    """A 6-5-4-3 tanh/relu network with structure metadata and a planted
    cover: hidden units 0 and 2 of the first layer are identical and read
    identically."""
    rng = np.random.default_rng(3)
    w0, b0 = rng.normal(size=(5, 6)), rng.normal(size=5)
    w0[2], b0[2] = w0[0], b0[0]
    w1, b1 = rng.normal(size=(4, 5)), rng.normal(size=4)
    w1[:, 2] = w1[:, 0]  # ... and read equally: a cover
    w2 = rng.normal(size=(3, 4))
    structure = {"format": "fibration-model", "version": 1, "groups": [
        {"name": "in", "op": "input", "units": 6},
        {"name": "h1", "op": "dense", "units": 5, "source": 0, "weight": "h1.w",
         "bias": "h1.b", "activation": "tanh"},
        {"name": "h2", "op": "dense", "units": 4, "source": 1, "weight": "h2.w",
         "bias": "h2.b", "activation": "relu"},
        {"name": "out", "op": "dense", "units": 3, "source": 2, "weight": "out.w"},
    ]}
    path = tmp_path / "model.safetensors"
    st_io.write(str(path), {"h1.w": w0, "h1.b": b0, "h2.w": w1, "h2.b": b1,
                            "out.w": w2},
                {"fibration": json.dumps(structure)})
    return path


@pytest.mark.parametrize("verb", VERBS)
def test_help(verb):
    r = run(verb, "--help")
    assert r.returncode == 0
    assert r.stdout.startswith(f"usage: fibration {verb}")
    assert "Exit codes" in r.stdout


def test_top_level():
    r = run("--help")
    assert r.returncode == 0 and all(v in r.stdout for v in VERBS)
    assert run("--version").stdout.startswith("fibration ")
    assert run().returncode == 2
    assert run("frobnicate").returncode == 2


@pytest.mark.parametrize("args", [
    ["analyze"], ["analyze", "--bogus", "m"], ["analyze", "a", "b"],
    ["analyze", "--eps", "-1", "m"], ["analyze", "--symmetry", "orbits", "m"],
    ["analyze", "--tolerance", "exact", "--eps", "0.1", "m"],
    ["compress", "m"], ["lift", "m"], ["break", "m"],
    ["break", "m", "-o", "x", "--seed", "minus"],
])
def test_usage_errors(args):
    r = run(*args)
    assert r.returncode == 2
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1


def test_missing_file(tmp_path):
    r = run("analyze", tmp_path / "nope.safetensors")
    assert r.returncode == 3
    assert "nope.safetensors: cannot open" in r.stderr


def test_unwritable_output(model, tmp_path):
    r = run("compress", model, "-o", tmp_path / "no" / "dir" / "b.safetensors")
    assert r.returncode == 3
    assert len(r.stderr.strip().splitlines()) == 1


def test_corpus_exit_codes():
    files = sorted(f for f in os.listdir(CORPUS) if f.endswith(".safetensors"))
    assert len(files) >= 20
    for name in files:
        path = os.path.join(CORPUS, name)
        r = run("analyze", path)
        assert r.returncode == 4, (name, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and path in lines[0], (name, r.stderr)
        assert r.stdout == ""


def test_table(model):
    r = run("analyze", model)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # no progress when stderr is not a terminal
    assert "h1" in r.stdout and "Params:" in r.stdout


def test_json(model):
    r = run("analyze", "--json", "--symmetry", "fibers", model)
    report = json.loads(r.stdout)
    assert report["symmetry"] == "fibers"
    rows = report["layers"]
    assert [row["name"] for row in rows] == ["in", "h1", "h2", "out"]
    h1 = rows[1]
    assert h1["fibers"] == 4 and h1["nontrivial"] == 1 and h1["largest"] == 2
    assert h1["base_units"] == 4
    assert h1["parameters"] == 5 * 6 + 5 and h1["base_parameters"] == 4 * 6 + 4
    assert report["parameters"] == sum(row["parameters"] for row in rows)


def test_csv(model):
    r = run("analyze", "--csv", "--eps", "0.01", model)
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == 4
    assert rows[0]["layer"] == "in" and rows[1]["units"] == "5"
    assert rows[1]["tolerance"] == "abs" and float(rows[1]["eps"]) == 0.01
    assert set(rows[0]) >= {"fibers", "opfibers", "covers", "trivial",
                            "nontrivial", "largest", "parameters",
                            "base_parameters"}


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed")
@pytest.mark.parametrize("which", ["model", "example"])
def test_dot_renders(model, which, tmp_path):
    path = model if which == "model" else EXAMPLE
    r = run("analyze", "--dot", "--symmetry", "fibers", path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("digraph fibration {")
    assert r.stdout.count("subgraph cluster_") == 4
    svg = subprocess.run(["dot", "-Tsvg"], input=r.stdout, capture_output=True,
                         text=True)
    assert svg.returncode == 0, svg.stderr
    assert "<svg" in svg.stdout
    if which == "model":
        assert 'label="2"' in r.stdout  # the planted class of two units


@pytest.mark.parametrize("symmetry", ["fibers", "covers"])
def test_compress_lift_keep_outputs(model, tmp_path, symmetry):
    base, lifted = tmp_path / "base.safetensors", tmp_path / "lift.safetensors"
    r = run("compress", "--symmetry", symmetry, model, "-o", base)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Params: ")
    x = np.random.default_rng(1).normal(size=(32, 6))
    y = st_io.forward(str(model), x)
    assert np.allclose(st_io.forward(str(base), x), y, atol=1e-9)
    tensors, _ = st_io.read(str(base))
    assert tensors["h1.weight"].shape == (4, 6)
    r = run("lift", base, "-o", lifted)
    assert r.returncode == 0, r.stderr
    assert np.allclose(st_io.forward(str(lifted), x), y, atol=1e-9)
    assert st_io.read(str(lifted))[0]["h1.weight"].shape == (5, 6)
    # a model that is not a base cannot be lifted
    r = run("lift", model, "-o", tmp_path / "x.safetensors")
    assert r.returncode == 4 and "no projection" in r.stderr


def test_compress_json_and_dtype(model, tmp_path):
    base = tmp_path / "base32.safetensors"
    r = run("compress", "--json", "--dtype", "f32", model, "-o", base)
    summary = json.loads(r.stdout)
    assert summary["base_parameters"] < summary["parameters"]
    with open(base, "rb") as f:
        assert b'"F64"' not in f.read(4096)


def test_break_keeps_outputs_and_shape(model, tmp_path):
    out1, out2 = tmp_path / "b1.safetensors", tmp_path / "b2.safetensors"
    assert run("break", model, "-o", out1, "--seed", "5", "-q").returncode == 0
    assert run("break", model, "-o", out2, "--seed", "5", "-q").returncode == 0
    t1, _ = st_io.read(str(out1))
    t2, _ = st_io.read(str(out2))
    assert t1["h1.weight"].shape == (5, 6)
    assert all(np.array_equal(t1[k], t2[k]) for k in t1)  # same seed, same file
    x = np.random.default_rng(2).normal(size=(16, 6))
    assert np.allclose(st_io.forward(str(out1), x), st_io.forward(str(model), x),
                       atol=1e-9)


def test_example_model():
    r = run("analyze", "--json", EXAMPLE)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert [row["units"] for row in report["layers"]] == [784, 64, 32, 10]
    assert report["parameters"] == 784 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10


def test_symmetry_all_reports_the_ladder(model):
    """Hidden units 0 and 2 of h1 are twins (equal rows, bias and columns):
    one automorphism orbit, inside one cover, inside one fiber."""
    r = run("analyze", "--symmetry", "all", "--json", model)
    assert r.returncode == 0, r.stderr
    layers = {layer["name"]: layer for layer in json.loads(r.stdout)["layers"]}
    h1 = layers["h1"]
    assert (h1["fibers"], h1["covers"], h1["orbits"]) == (4, 4, 4)
    assert all(layer["chain_holds"] for layer in layers.values())
    assert all(layer["orbits"] >= layer["covers"] for layer in layers.values())
    table = run("analyze", "--symmetry", "all", model)
    assert "orbits" in table.stdout and "BROKEN" not in table.stdout
    rows = list(csv.DictReader(io.StringIO(run("analyze", "--symmetry", "all", "--csv",
                                               model).stdout)))
    assert rows[1]["orbits"] == "4" and rows[1]["chain_holds"] == "1"
    # Only analyze knows "all".
    assert run("compress", "--symmetry", "all", model, "-o", "x").returncode == 2


def test_every_block_kind_through_the_command(tmp_path):
    """A version-2 file (convolution, batch norm as affine, pooling, flatten,
    dense) with two identical channels: analyze counts every parameter, the
    base merges the channels, and lift restores the shapes."""
    rng = np.random.default_rng(5)
    k = rng.normal(size=(3, 2, 3, 3))
    k[1] = k[0]  # channels 0 and 1 identical
    scale, shift = np.ones(3), np.zeros(3)
    fc = rng.normal(size=(2, 3 * 9))
    structure = {"format": "fibration-model", "version": 2, "groups": [
        {"name": "image", "op": "input", "units": 2, "positions": [6, 6]},
        {"name": "conv", "op": "conv", "units": 3, "sources": [0],
         "activation": "relu", "tensors": {"weight": "conv.weight"},
         "params": [3, 3, 1, 1, 1, 1, 1]},
        {"name": "bn", "op": "affine", "units": 3, "sources": [1],
         "tensors": {"scale": "bn.scale", "shift": "bn.shift"},
         "params": [0, 1, 2]},
        {"name": "pool", "op": "pool", "units": 3, "sources": [2],
         "params": [0, 2, 2, 2, 2, 0, 0, 0, 1, 2]},
        {"name": "flat", "op": "flatten", "units": 27, "sources": [3]},
        {"name": "fc", "op": "dense", "units": 2, "sources": [4],
         "tensors": {"weight": "fc.weight"}}]}
    path, base, lifted = (tmp_path / n for n in ("cnn.safetensors", "base.safetensors",
                                                  "lift.safetensors"))
    st_io.write(str(path), {"conv.weight": k, "bn.scale": scale, "bn.shift": shift,
                            "fc.weight": fc}, {"fibration": json.dumps(structure)})
    r = run("analyze", "--symmetry", "fibers", "--json", path)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["parameters"] == k.size + 6 + fc.size
    conv = report["layers"][1]
    assert conv["op"] == "conv" and conv["fibers"] == 2 and conv["parameters"] == k.size
    r = run("compress", "--symmetry", "fibers", path, "-o", base)
    assert r.returncode == 0, r.stderr
    tensors, meta = st_io.read(str(base))
    assert tensors["conv.weight"].shape == (2, 2, 3, 3)
    groups = json.loads(meta["fibration"])["groups"]
    assert groups[4]["units"] == 18
    r = run("lift", base, "-o", lifted)
    assert r.returncode == 0, r.stderr
    tensors, _ = st_io.read(str(lifted))
    assert tensors["conv.weight"].shape == (3, 2, 3, 3)
    assert tensors["fc.weight"].shape == (2, 27)


@pytest.mark.parametrize("eps", [None, "0.05", "0.2"])
def test_ladder_on_the_trained_example(eps):
    """On a really trained network (the shipped Fashion-MNIST MLP), exact and
    tolerant: orbits <= covers <= fibers and opfibers in every layer."""
    args = ["analyze", "--symmetry", "all", "--json"] + (["--eps", eps] if eps else [])
    r = run(*args, EXAMPLE)
    assert r.returncode == 0, r.stderr
    for layer in json.loads(r.stdout)["layers"]:
        assert layer["chain_holds"], layer
        assert layer["orbits"] >= layer["covers"] >= max(layer["fibers"], layer["opfibers"])
