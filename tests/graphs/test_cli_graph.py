"""`fibration graph` on the real networks of docs/examples/graphs: the pure and
published fiber counts, node names, JSON, DOT and errors."""
import json
import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / "docs" / "examples" / "graphs"
LIB = pathlib.Path(os.environ.get("FIBRATION_LIBRARY", ROOT / "build" / "src" / "libfibration.so"))
EXE = LIB.parent / "cli" / "fibration"

pytestmark = pytest.mark.skipif(not EXE.exists(), reason="needs the built command")


def run(*args):
    return subprocess.run([str(EXE), "graph", *map(str, args)], capture_output=True, text=True)


def classes(path, *options):
    out = run("--json", *options, path)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("name,pure,published", [
    ("test_1.csv", 6, 6), ("test_3SCC.csv", 5, 6), ("test_3SCC_2.csv", 6, 6),
    ("test_6SCC.csv", 14, 14), ("test_6SCC2.csv", 13, 13), ("test_SELF.csv", 1, 2),
    ("test_Ecoli.csv", 414, 555)])
def test_counts_of_the_data_readme(name, pure, published):
    assert classes(DATA / name)["classes"] == pure
    assert classes(DATA / name, "--convention", "published")["classes"] == published


def test_ecoli_fibers_by_name_and_base():
    doc = classes(DATA / "test_Ecoli.csv")
    sizes = sorted((f["size"] for f in doc["fibers"]), reverse=True)
    assert len(sizes) == 80 and sizes[0] == 69 and sum(sizes) == 545
    # Node names are the genes'; every node has a class.
    assert len(doc["node_class"]) == 879 and "lexa" in doc["node_class"]
    # The base is the quotient: its arcs join classes.
    assert all(0 <= a["source"] < 414 and 0 <= a["target"] < 414 for a in doc["base"])
    assert {a["type"] for a in doc["base"]} == {"positive", "negative", "dual"}


def test_headerless_file_gives_the_same_partition():
    with_header = classes(DATA / "test_Ecoli.csv")
    headerless = classes(DATA / "ecoli_ids.tsv", "--no-header")
    assert headerless["classes"] == with_header["classes"]


def test_table_lists_fibers_with_names():
    out = run(DATA / "test_1.csv")
    assert out.returncode == 0
    assert "classes 6, non-trivial 2" in out.stdout
    assert "class 2 (2 nodes, on a cycle): 3 4" in out.stdout


@pytest.mark.parametrize("name", ["test_1.csv", "test_3SCC.csv", "test_6SCC2.csv",
                                  "test_SELF.csv", "test_Ecoli.csv"])
@pytest.mark.parametrize("options", [(), ("--convention", "published"),
                                     ("--symmetry", "opfibers"), ("--symmetry", "covers")])
def test_table_base_arcs_count_the_json_base(name, options):
    # The table counts the base's arcs without building the base: the count
    # is the number of arcs of the base JSON prints.
    base = classes(DATA / name, *options)["base"]
    out = run(*options, DATA / name)
    assert out.returncode == 0, out.stderr
    assert f"base arcs {len(base)}\n" in out.stdout
    assert len(base) > 0


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz not installed")
def test_dot_renders(tmp_path):
    out = run("--dot", DATA / "test_Ecoli.csv")
    assert out.returncode == 0
    svg = subprocess.run(["dot", "-Tsvg"], input=out.stdout, capture_output=True, text=True)
    assert svg.returncode == 0 and "<svg" in svg.stdout


def test_errors(tmp_path):
    missing = run(tmp_path / "missing.csv")
    assert missing.returncode == 3 and "missing.csv" in missing.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("source,target\na,b\nc\n")
    out = run(bad)
    assert out.returncode == 4 and ":3" in out.stderr and len(out.stderr.splitlines()) == 1
    assert run("--convention", "odd", bad).returncode == 2
