"""The `fibration` command: help, exit codes, one-line errors, every
output format (DOT rendered by Graphviz), compress -> lift / break keeping
what the network computes, and the nested tolerance tree (JSON and DOT)."""
import csv
import io
import json
import os
import re
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
    ["analyze", "--format", "xml", "m"], ["analyze", "--tolerance", "ward", "m"],
    ["compress", "--tolerance", "rel", "m", "-o", "x"],
    ["analyze", "--tolerance-tree", "0.1,x", "m"], ["analyze", "--tolerance-tree", "0.1,", "m"],
    ["analyze", "--tolerance-tree", "-0.1", "m"], ["analyze", "--tolerance-tree", "", "m"],
    ["analyze", "--tolerance-tree", "0.1", "--eps", "0.1", "m"],
    ["analyze", "--tolerance-tree", "0.1", "--tolerance", "exact", "m"],
    ["analyze", "--tolerance-tree", "0.1", "--csv", "m"],
    ["analyze", "--tolerance-tree", "0.1", "--symmetry", "all", "m"],
    ["analyze", "--tolerance-tree", "0.1", "--tolerance", "scaled+ward", "--symmetry",
     "covers", "m"],
    ["compress", "--tolerance-tree", "0.1", "m", "-o", "x"],
    ["compress", "--merge-inputs", "m", "-o", "x"],
    ["compress", "--budget", "0", "m", "-o", "x"],
    ["compress", "--budget", "1.5", "m", "-o", "x"],
    ["compress", "--budget", "0.5", "--eps", "0.1", "m", "-o", "x"],
    ["compress", "--budget", "0.5", "--symmetry", "covers", "m", "-o", "x"],
    ["analyze", "--budget", "0.5", "m"],
    ["compress", "--input-scale", "0.3", "m", "-o", "x"],
    ["compress", "--budget", "0.5", "--input-scale", "0", "m", "-o", "x"],
    ["compress", "--budget", "0.5", "--correction-ridge", "0.1", "m", "-o", "x"],
    ["compress", "--budget", "0.5", "--input-scale", "0.3", "--correction-ridge", "-1", "m",
     "-o", "x"],
    ["compress", "--budget", "0.5", "--input-scale", "0.3", "--correction-ridge", "nan", "m",
     "-o", "x"],
])
def test_usage_errors(args):
    r = run(*args)
    assert r.returncode == 2
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1


def test_unknown_activation_lists_every_activation(model):
    r = run("analyze", "--activation", "swish", model)
    assert r.returncode == 2
    assert ("--activation must be one of linear, relu, leaky_relu[:SLOPE], tanh, sigmoid, "
            "gelu, silu, relu6, hardswish, hardsigmoid, mish, softplus, gelu_tanh") in r.stderr


def test_missing_file(tmp_path):
    r = run("analyze", tmp_path / "nope.safetensors")
    assert r.returncode == 3
    assert "nope.safetensors: cannot open" in r.stderr


def test_device_refusal_does_not_say_folders_are_refused(tmp_path):
    """A folder is read as a checkpoint, so refusing a device must not
    say folders are refused; an empty folder is read as one and fails on
    its config.json."""
    r = run("analyze", "/dev/zero")
    assert r.returncode == 3
    assert "/dev/zero: not a regular file (a character device)" in r.stderr
    assert "folder" not in r.stderr
    r = run("analyze", tmp_path)
    assert r.returncode == 3
    assert "config.json: cannot open" in r.stderr
    assert "not a regular file" not in r.stderr


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


# -- the tolerance tree (analyze --tolerance-tree) ---------------------------

def walk_tree(node, level):
    """Checks one class of a tolerance tree and everything below it: its
    members are exactly its children's, children sit one level down, and
    units are the leaves. Returns the units below it."""
    assert "class" in node and node["members"] == sorted(node["members"])
    units = []
    for child in node["children"]:
        if "unit" in child:
            assert level == 0
            units.append(child["unit"])
        else:
            assert level > 0
            units += walk_tree(child, level - 1)
    assert sorted(units) == node["members"]
    return node["members"]


def check_tree_json(report, eps, hidden):
    assert report["eps"] == sorted(eps)
    assert list(report["layers"]) == hidden
    for name, layer in report["layers"].items():
        assert layer["levels"] == sorted(eps)
        counts = layer["classes_per_level"]
        assert len(counts) == len(eps) and counts == sorted(counts, reverse=True)
        assert len(layer["classes"]) == counts[-1]
        top = len(eps) - 1
        units = []
        for node in layer["classes"]:
            assert node["eps"] == max(eps)
            units += walk_tree(node, top)
        assert sorted(units) == list(range(layer["units"]))  # a partition
        # level t's classes, found at depth top - t, number counts[t]
        nodes = layer["classes"]
        for t in range(top, -1, -1):
            assert len(nodes) == counts[t]
            assert all(n["eps"] == sorted(eps)[t] for n in nodes)
            nodes = [c for n in nodes for c in n["children"] if "class" in c]
        assert nodes == []


def test_tolerance_tree_json(model):
    eps = [0.8, 0.05, 0.3, 3.0]
    r = run("analyze", "--tolerance-tree", ",".join(map(str, eps)), "--format", "json",
            "--symmetry", "fibers", model)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert (report["symmetry"], report["tolerance"]) == ("fibers", "abs")
    check_tree_json(report, eps, ["h1", "h2"])
    h1 = report["layers"]["h1"]
    assert h1["group"] == 1 and h1["op"] == "dense" and h1["units"] == 5
    assert h1["classes_per_level"][0] == 4  # the planted pair at the smallest eps
    level = h1["classes"]
    for _ in eps[1:]:
        level = [c for n in level for c in n["children"]]
    assert [0, 2] in [c["members"] for c in level]
    # every tolerant mode nests, and --json is --format json
    for mode in ["rel", "cosine", "complete", "ward", "scaled+ward"]:
        r = run("analyze", "--tolerance-tree", "0.1,0.5,2", "--tolerance", mode, "--json",
                model)
        assert r.returncode == 0, (mode, r.stderr)
        check_tree_json(json.loads(r.stdout), [0.1, 0.5, 2], ["h1", "h2"])
    table = run("analyze", "--tolerance-tree", "0.05,0.3", model)
    assert table.returncode == 0 and "eps=0.05" in table.stdout and "h2" in table.stdout


def check_dot(text):
    """Structural checks of a DOT file: balanced braces outside strings,
    statements closed, every edge's endpoints declared as nodes."""
    outside = re.sub(r'"(\\.|[^"\\])*"', '""', text)
    depth = 0
    for ch in outside:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    nodes = set(re.findall(r"^\s*(\w+) \[", outside, re.M)) - {"graph", "node", "edge"}
    edges = re.findall(r"^\s*(\w+) -> (\w+)", outside, re.M)
    for a, b in edges:
        assert a in nodes and b in nodes, (a, b)
    return nodes, edges


@pytest.mark.parametrize("wide", [False, True])
def test_tolerance_tree_dot(model, wide):
    args = ["analyze", "--tolerance-tree", "0.05,0.8,3", "--format", "dot",
            "--symmetry", "fibers", model] + (["--dot-max-classes", "3"] if wide else [])
    r = run(*args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("digraph tolerance_tree {")
    nodes, edges = check_dot(r.stdout)
    assert r.stdout.count("subgraph cluster_") == 2  # h1 and h2
    counts = json.loads(run(*args[:3], "--json", "--symmetry", "fibers", model).stdout)
    for group, name in ((1, "h1"), (2, "h2")):
        per_level = counts["layers"][name]["classes_per_level"]
        for t, k in enumerate(per_level):
            assert {"g%dl%dc%d" % (group, t, c) for c in range(k)} <= nodes
        out = {}
        for a, b in edges:
            out.setdefault(a, []).append(b)
        mine = [n for n in nodes if n.startswith("g%d" % group)]
        top = "g%dl%d" % (group, len(per_level) - 1)
        for n in mine:  # a tree: one edge up from every node below the top
            assert len(out.get(n, [])) == (0 if n.startswith(top) else 1), n
        leaves = [n for n in mine if "l" not in n[1:]]
        if wide:  # one box per first-level class, counting its units
            assert len(leaves) == per_level[0]
            assert not any(re.match(r"g\d+u\d", n) for n in leaves)
        else:
            assert sorted(leaves) == sorted("g%du%d" % (group, u) for u in
                                            range(5 if group == 1 else 4))
    if shutil.which("dot"):
        svg = subprocess.run(["dot", "-Tsvg"], input=r.stdout, capture_output=True,
                             text=True)
        assert svg.returncode == 0 and "<svg" in svg.stdout, svg.stderr


def test_compress_budget_merges_planted_inputs(tmp_path):
    """--budget F --merge-inputs on a network whose 24 inputs come in 6
    classes (equal columns of the first layer): the base reads the classes'
    means and computes the original's outputs; lift brings it back."""
    rng = np.random.default_rng(7)
    cls = (np.arange(24) * 5) % 6
    w0 = rng.normal(size=(16, 6))[:, cls]
    b0, w1, b1 = rng.normal(size=16), rng.normal(size=(3, 16)), rng.normal(size=3)
    structure = {"format": "fibration-model", "version": 1, "groups": [
        {"name": "in", "op": "input", "units": 24},
        {"name": "h", "op": "dense", "units": 16, "source": 0, "weight": "h.w",
         "bias": "h.b", "activation": "relu"},
        {"name": "out", "op": "dense", "units": 3, "source": 1, "weight": "out.w",
         "bias": "out.b"},
    ]}
    model = tmp_path / "planted.safetensors"
    st_io.write(str(model), {"h.w": w0, "h.b": b0, "out.w": w1, "out.b": b1},
                {"fibration": json.dumps(structure)})
    total = 16 * 24 + 16 + 3 * 16 + 3
    own = (6 * 16 + 16 + 3 * 16 + 3 + 24) / total
    base, lifted = tmp_path / "base.safetensors", tmp_path / "lift.safetensors"
    r = run("compress", "--json", "--budget", own, "--merge-inputs", model, "-o", base)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["merge_inputs"] is True and summary["grouping"] == "scaled+ward"
    assert summary["base_parameters"] <= own * total
    _, metadata = st_io.read(str(base))
    projection = json.loads(metadata["fibration"])["projection"][0]
    assert len(set(projection)) == 6
    assert all((projection[a] == projection[b]) == (cls[a] == cls[b])
               for a in range(24) for b in range(24))
    x = rng.normal(size=(32, 24))
    means = np.zeros((32, 6))
    np.add.at(means.T, projection, x.T)
    means /= np.bincount(projection)
    y = st_io.forward(str(model), x)
    assert np.allclose(st_io.forward(str(base), means), y, atol=1e-9)
    r = run("lift", base, "-o", lifted)
    assert r.returncode == 0, r.stderr
    assert np.allclose(st_io.forward(str(lifted), x), y, atol=1e-9)
    # without --merge-inputs the inputs stay
    r = run("compress", "--budget", "0.6", model, "-o", base)
    assert r.returncode == 0 and r.stdout.startswith("Params: ") and "by budget" in r.stdout
    _, metadata = st_io.read(str(base))
    assert json.loads(metadata["fibration"])["projection"][0] == list(range(24))


def test_compress_budget_input_scale_corrects(tmp_path):
    """--input-scale: the merged layers corrected on synthetic inputs of that
    scale come closer to the original on fresh inputs of that scale."""
    plain, fixed = tmp_path / "plain.safetensors", tmp_path / "fixed.safetensors"
    r = run("compress", "--json", "--budget", "0.3", EXAMPLE, "-o", plain)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["corrected"] is False
    r = run("compress", "--json", "--budget", "0.3", "--input-scale", "0.3", EXAMPLE, "-o", fixed)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["corrected"] is True
    x = 0.3 * np.random.default_rng(4).normal(size=(2048, 784))
    y = st_io.forward(EXAMPLE, x)
    err = [float(((st_io.forward(str(f), x) - y) ** 2).mean()) for f in (plain, fixed)]
    assert err[1] < err[0], err


def test_compress_budget_correction_ridge(tmp_path):
    """--correction-ridge: 1e-3 writes the default's file byte for byte,
    another ridge another file of the same parameters."""
    paths = {r: tmp_path / ("ridge-%s.safetensors" % r) for r in ("default", "1e-3", "1e-10")}
    for ridge, path in paths.items():
        extra = [] if ridge == "default" else ["--correction-ridge", ridge]
        r = run("compress", "--json", "--budget", "0.3", "--input-scale", "0.3", *extra,
                EXAMPLE, "-o", path)
        assert r.returncode == 0, r.stderr
        summary = json.loads(r.stdout)
        assert summary["corrected"] is True and summary["base_parameters"] > 0
    data = {r: p.read_bytes() for r, p in paths.items()}
    assert data["1e-3"] == data["default"]
    assert data["1e-10"] != data["default"] and len(data["1e-10"]) == len(data["default"])


def float32_chain(path, widths, twins, seed=4):
    """A float32 state dict of Linear layers; with twins, hidden units 0 and
    1 of the first layer are equal and read equally (a cover to merge)."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        tensors[f"{2 * i}.weight"] = rng.normal(size=(b, a)).astype(np.float32)
        tensors[f"{2 * i}.bias"] = rng.normal(size=b).astype(np.float32)
    if twins:
        for name in ("0.weight", "0.bias"):
            tensors[name][1] = tensors[name][0]
        tensors["2.weight"][:, 1] = tensors["2.weight"][:, 0]
    st_io.write(str(path), tensors)
    return path


def test_compress_nothing_to_merge_writes_nothing(tmp_path):
    """Random weights have no exact symmetry: the model is its own base, so
    compress writes no (float64, doubled) copy, leaves an existing file
    alone, says so and exits 5; analyze reports the base as the model."""
    model = float32_chain(tmp_path / "m.safetensors", [12, 10, 8, 3], twins=False)
    out = tmp_path / "base.safetensors"
    out.write_bytes(b"precious")
    r = run("compress", model, "-o", out)
    assert r.returncode == 5, r.stderr
    assert "nothing to merge" in r.stdout and "not written" in r.stdout
    assert out.read_bytes() == b"precious"
    r = run("compress", "--json", model, "-o", out)
    assert r.returncode == 5, r.stderr
    summary = json.loads(r.stdout)
    assert summary["written"] is False
    assert summary["base_parameters"] == summary["parameters"] == 12 * 10 + 10 + 10 * 8 + 8 + 8 * 3 + 3
    assert out.read_bytes() == b"precious"
    report = json.loads(run("analyze", "--json", model).stdout)
    assert report["base_parameters"] == report["parameters"]
    assert [row["base_units"] for row in report["layers"]] == [12, 10, 8, 3]
    # a budget that keeps every parameter merges nothing either
    r = run("compress", "--budget", "1", model, "-o", out)
    assert r.returncode == 5, r.stderr
    assert "nothing to merge" in r.stdout and out.read_bytes() == b"precious"
    # a tolerance that merges: written, exit 0
    r = run("compress", "--eps", "100", model, "-o", out, "-q")
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() != b"precious"


def weight_dtypes(path):
    """The dtypes of a safetensors file's weight and bias tensors."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    return {t["dtype"] for k, t in header.items() if k.endswith((".weight", ".bias"))}


def test_compress_keeps_the_model_dtype(tmp_path):
    """A float32 model gives a float32 base by default (the outputs of the
    float64 base to float32 rounding); --dtype f64 asks for float64."""
    model = float32_chain(tmp_path / "m.safetensors", [12, 10, 8, 3], twins=True)
    base32, base64 = tmp_path / "b32.safetensors", tmp_path / "b64.safetensors"
    r = run("compress", "--json", model, "-o", base32)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["written"] is True
    assert run("compress", "--dtype", "f64", model, "-o", base64, "-q").returncode == 0
    assert st_io.read(str(base32))[0]["0.weight"].shape == (9, 12)
    for path, dtype in ((base32, "F32"), (base64, "F64")):
        assert weight_dtypes(path) == {dtype}, path
    x = np.random.default_rng(1).normal(size=(16, 12))
    y = st_io.forward(str(base64), x)  # the state dict has no structure to run
    assert np.allclose(st_io.forward(str(base32), x), y, rtol=1e-5, atol=1e-5)
    assert np.abs(y).max() > 0.1
    # a budget's base alike: float32 by default, float64 by --dtype f64
    budget32, budget64 = tmp_path / "u32.safetensors", tmp_path / "u64.safetensors"
    assert run("compress", "--budget", "0.5", model, "-o", budget32, "-q").returncode == 0
    assert run("compress", "--budget", "0.5", "--dtype", "f64", model, "-o", budget64,
               "-q").returncode == 0
    for path, dtype in ((budget32, "F32"), (budget64, "F64")):
        assert weight_dtypes(path) == {dtype}, path
    y = st_io.forward(str(budget64), x)
    assert np.allclose(st_io.forward(str(budget32), x), y, rtol=1e-5, atol=1e-5)
