"""Strict reading of model files by the command: no silent misreads
(two spellings of one layer index, a structure key given twice), names
escaped in the table, and a budget that cannot be met is the command
line's fault (exit 2) with the smallest budget that works."""
import json
import os
import re
import subprocess

import numpy as np

import st_io

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "..", "docs", "examples", "fashion_mlp.safetensors")


def run(*args):
    return subprocess.run([st_io.cli(), *map(str, args)], capture_output=True)


def refused(r, *words):
    err = r.stderr.decode()
    assert r.returncode == 4, err
    assert r.stdout == b"" and len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)


def chain(rng, sizes):
    return [(rng.normal(size=(o, i)), rng.normal(size=o)) for i, o in zip(sizes, sizes[1:])]


def test_state_dict_index_with_a_leading_zero_is_refused(tmp_path):
    """1.weight and 01.weight (or 0 and 00) are one index spelled twice:
    reading one and ignoring the other would analyse a different network."""
    rng = np.random.default_rng(1)
    (w0, b0), (w1, b1) = chain(rng, [4, 3, 2])
    for clash in ("01", "00"):
        path = tmp_path / f"sd{clash}.safetensors"
        st_io.write(str(path), {"0.weight": w0, "0.bias": b0, "1.weight": w1,
                                "1.bias": b1, f"{clash}.weight": w1})
        refused(run("analyze", path), f"'{clash}.weight'", "leading zero")
    # the canonical spelling alone still reads
    good = tmp_path / "sd.safetensors"
    st_io.write(str(good), {"0.weight": w0, "0.bias": b0, "1.weight": w1, "1.bias": b1})
    assert run("analyze", good).returncode == 0


def structure_text(units_twice):
    units = '"units": 3, "units": 7' if units_twice else '"units": 3'
    return ('{"format": "fibration-model", "version": 1, "groups": ['
            '{"name": "in", "op": "input", "units": 4}, '
            '{"name": "h", "op": "dense", ' + units + ', "source": 0, "weight": "h.w", '
            '"bias": "h.b", "activation": "relu"}, '
            '{"name": "out", "op": "dense", "units": 2, "source": 1, "weight": "o.w"}]}')


def test_structure_key_given_twice_is_refused(tmp_path):
    rng = np.random.default_rng(2)
    tensors = {"h.w": rng.normal(size=(3, 4)), "h.b": rng.normal(size=3),
               "o.w": rng.normal(size=(2, 3))}
    path = tmp_path / "dup.safetensors"
    st_io.write(str(path), tensors, {"fibration": structure_text(True)})
    refused(run("analyze", path), '"units" given twice')
    st_io.write(str(path), tensors, {"fibration": structure_text(False)})
    assert run("analyze", path).returncode == 0


def test_layer_names_with_control_characters_are_escaped(tmp_path):
    rng = np.random.default_rng(3)
    name = "h\x1b[2J\x07"
    structure = json.loads(structure_text(False))
    structure["groups"][1]["name"] = name
    path = tmp_path / "names.safetensors"
    st_io.write(str(path), {"h.w": rng.normal(size=(3, 4)), "h.b": rng.normal(size=3),
                            "o.w": rng.normal(size=(2, 3))},
                {"fibration": json.dumps(structure)})
    r = run("analyze", path)
    assert r.returncode == 0
    assert b"\x1b" not in r.stdout and b"\x07" not in r.stdout
    assert b"h\\x1b[2J\\x07" in r.stdout
    doc = json.loads(run("analyze", "--json", path).stdout)
    assert name in [layer["name"] for layer in doc["layers"]]
    tree = run("analyze", "--tolerance-tree", "0.1,1", path)
    assert tree.returncode == 0 and b"\x1b" not in tree.stdout


def test_budget_below_the_smallest_base_is_a_usage_error(tmp_path):
    """--budget 0.01 on a good file: exit 2 (not 4, "malformed file"), with
    the smallest budget possible, and that budget then works."""
    out = tmp_path / "base.safetensors"
    r = run("compress", "--budget", "0.01", EXAMPLE, "-o", out)
    err = r.stderr.decode()
    assert r.returncode == 2 and r.stdout == b"", err
    assert len(err.strip().splitlines()) == 1 and "smallest" in err
    smallest = float(re.search(r"--budget ([0-9.e-]+) or more", err).group(1))
    assert 0.01 < smallest < 1
    assert not out.exists()
    r = run("compress", "--json", "--budget", smallest, EXAMPLE, "-o", out)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["base_parameters"] <= smallest * summary["parameters"]
