"""`fibration graph` reading strictly and writing safely, on small files
made here (no shared data): ambiguous edge lists refused with a hint,
--columns / --weight-column / stdin, --format, the shared option parser,
names escaped in every format, and writers linear in the nodes."""
import csv
import io
import json
import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
LIB = pathlib.Path(os.environ.get("FIBRATION_LIBRARY", ROOT / "build" / "src" / "libfibration.so"))
EXE = pathlib.Path(os.environ.get("FIBRATION_CLI", LIB.parent / "cli" / "fibration"))

pytestmark = pytest.mark.skipif(not EXE.exists(), reason="needs the built command")


def run(*args, stdin=None, timeout=None):
    return subprocess.run([str(EXE), "graph", *map(str, args)], capture_output=True,
                          input=stdin, timeout=timeout)


def ok_json(*args, stdin=None):
    r = run("--json", *args, stdin=stdin)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def refused(r, *words):
    """Exit 4 with one line on stderr holding every word."""
    err = r.stderr.decode()
    assert r.returncode == 4, err
    assert r.stdout == b"" and len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)


# ---- ambiguous edge lists ------------------------------------------------

def test_byte_order_mark_does_not_turn_the_header_into_an_arc(tmp_path):
    path = write(tmp_path, "bom.csv", b"\xef\xbb\xbfsource,target\na,b\nb,c\n")
    doc = ok_json(path)
    assert doc["nodes"] == 3 and set(doc["node_class"]) == {"a", "b", "c"}


def test_mixed_field_counts_are_refused_not_truncated(tmp_path):
    path = write(tmp_path, "mixed.txt", "a b\nb c t\nc a t\n")
    refused(run(path), "mixed.txt:2:", "3 fields, but line 1 has 2", "--columns")
    # named, the same file reads: the first line lacks the type column
    refused(run("--columns", "source,target,type", path), "mixed.txt:1:")


def test_first_line_naming_nodes_is_refused_with_the_way_out(tmp_path):
    path = write(tmp_path, "fromto.txt", "from to\nto from\nx from\n")
    refused(run(path), "fromto.txt:1:", "header or an arc", "--header", "--no-header")
    assert ok_json("--no-header", path)["nodes"] == 3       # 3 arcs, "from" a node
    doc = ok_json("--header", path)
    assert set(doc["node_class"]) == {"to", "from", "x"} and len(doc["base"]) <= 2


def test_fractional_third_column_is_not_read_as_types(tmp_path):
    path = write(tmp_path, "w.txt", "a b 0.5\nb c 1.5\nc a 2\n")
    refused(run(path), "third column", "--columns", "--weight-column 3")


def test_endless_binary_pipe_is_refused_at_its_first_nul_byte():
    """`cat /dev/zero | fibration graph -` must stop at once, not fill memory."""
    with open("/dev/zero", "rb") as zero:
        r = subprocess.run([str(EXE), "graph", "-"], stdin=zero, capture_output=True,
                           timeout=60)
    refused(r, "<stdin>:1: NUL byte")


# ---- naming the columns, stdin ------------------------------------------

def test_weight_column_reads_networkx_weighted_edgelists(tmp_path):
    """u v weight: two nodes a, b feeding c with equal weights are a fiber
    only when the third column is read as a weight sum."""
    text = "s a 2\ns b 1\ns b 1\na c 1\nb d 1\n"
    path = write(tmp_path, "nx.txt", text)
    by_flag = ok_json("--weight-column", "3", path)
    by_list = ok_json("--columns", "source,target,weight", path)
    assert by_flag == by_list
    cls = by_flag["node_class"]
    assert cls["a"] == cls["b"]          # 2 == 1 + 1
    weights = sorted(a["weight"] for a in by_flag["base"])
    assert 2.0 in weights                # the weight sums reach the base
    # with the weights as types the two are different
    typed = ok_json("--columns", "source,target,type", path)["node_class"]
    assert typed["a"] != typed["b"]


def test_columns_in_any_order_with_ignored_ones(tmp_path):
    path = write(tmp_path, "cols.csv", "id,dst,src\n1,b,a\n2,c,a\n")
    doc = ok_json("--columns", "-,target,source", "--header", path)
    assert doc["nodes"] == 3 and doc["classes"] == 2  # b, c: one fiber
    bad = run("--columns", "source,dest", path)
    assert bad.returncode == 2 and b'"dest"' in bad.stderr  # the command line's fault


def test_stdin_is_read_with_dash(tmp_path):
    text = b"source,target\na,b\na,c\n"
    doc = ok_json("-", stdin=text)
    assert doc["graph"] == "-" and doc["nodes"] == 3 and doc["classes"] == 2
    assert ok_json(write(tmp_path, "same.csv", text)) == {**doc, "graph": str(tmp_path / "same.csv")}
    empty = run("-", stdin=b"")
    assert empty.returncode == 4 and empty.stderr == b"fibration: <stdin>: no arcs\n"
    bad = run("-", stdin=b"a b\nb c t\n")
    assert bad.returncode == 4 and bad.stderr.startswith(b"fibration: <stdin>:2: 3 fields")


# ---- formats -----------------------------------------------------------

def test_format_option_matches_the_old_flags(tmp_path):
    path = write(tmp_path, "g.csv", "source,target\na,b\na,c\nb,d\nc,e\n")
    for flag, fmt in (("--json", "json"), ("--dot", "dot"), ("--csv", "csv")):
        assert run(flag, path).stdout == run("--format", fmt, path).stdout
        assert run(f"--format={fmt}", path).stdout == run(flag, path).stdout
    assert run("--format", "table", path).stdout == run(path).stdout
    rows = list(csv.DictReader(io.StringIO(run("--csv", path).stdout.decode())))
    assert [r["node"] for r in rows] == ["a", "b", "c", "d", "e"]
    by_node = {r["node"]: r for r in rows}
    assert by_node["b"]["class"] == by_node["c"]["class"] and by_node["b"]["class_size"] == "2"
    assert run("--format", "xml", path).returncode == 2


# ---- the shared option parser ---------------------------------------------

def test_graph_takes_the_common_option_syntax(tmp_path):
    path = write(tmp_path, "g.csv", "source,target,weight\na,b,1\na,c,1.05\n")
    assert ok_json("--eps=0.1", path)["classes"] == 2
    assert ok_json("--eps", "0.1", "--", path)["classes"] == 2
    assert ok_json(path)["classes"] == 3
    write(tmp_path, "-x.csv", "source,target\na,b\n")  # after --, not an option
    r = subprocess.run([str(EXE), "graph", "--json", "--", "-x.csv"], capture_output=True,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("args", [
    ["--eps", ""], ["--eps", "x"], ["--eps=-1"], ["--symmetry", "orbits"],
    ["--convention", "odd"], ["--columns"], ["--weight-column", "5"],
    ["--header", "--no-header"], ["--dot-max-classes", "3"], ["--bogus"],
    ["--tolerance", "ward"], [],
])
def test_usage_errors(tmp_path, args):
    path = write(tmp_path, "g.csv", "source,target\na,b\n")
    r = run(*args, *([path] if args else []))
    assert r.returncode == 2, r.stderr
    assert r.stdout == b"" and len(r.stderr.strip().splitlines()) == 1


def test_help_of_an_unknown_verb_is_a_usage_error():
    r = subprocess.run([str(EXE), "help", "nope"], capture_output=True, text=True)
    assert r.returncode == 2 and "nope" in r.stderr and r.stdout == ""
    assert subprocess.run([str(EXE), "help", "graph"], capture_output=True).returncode == 0


# ---- names escaped ---------------------------------------------------------

NAMES = b"source,target\n\"a\x1b[31m\",hub\n\"b\x07\",hub\nl\xe9on,hub\nl\xe8on,hub\nok\\x,hub\n"


def test_table_escapes_control_characters_and_bad_bytes(tmp_path):
    path = write(tmp_path, "names.csv", NAMES)
    out = run(path).stdout
    assert b"\x1b" not in out and b"\x07" not in out and b"\xe9" not in out
    text = out.decode("utf-8")  # valid UTF-8 whatever the names
    for shown in ("a\\x1b[31m", "b\\x07", "l\\xe9on", "l\\xe8on", "ok\\\\x"):
        assert shown in text, (shown, text)


def test_json_is_valid_and_keeps_distinct_names_distinct(tmp_path):
    path = write(tmp_path, "names.csv", NAMES)
    r = run("--json", path)
    assert r.returncode == 0
    r.stdout.decode("utf-8")  # strict UTF-8
    doc = json.loads(r.stdout)
    names = set(doc["node_class"])
    assert len(names) == 6   # no two names merged by escaping
    raw = {n.encode("utf-8", "surrogateescape") for n in names}
    assert raw == {b"a\x1b[31m", b"b\x07", b"l\xe9on", b"l\xe8on", b"ok\\x", b"hub"}


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz not installed")
def test_dot_with_odd_names_renders(tmp_path):
    path = write(tmp_path, "names.csv", NAMES + b"\"q\"\"uote\",l\xe9on\n")
    r = run("--dot", path)
    assert r.returncode == 0 and b"\x1b" not in r.stdout
    svg = subprocess.run(["dot", "-Tsvg"], input=r.stdout, capture_output=True)
    assert svg.returncode == 0, svg.stderr


# ---- writers linear in the nodes ---------------------------------------------

def test_writers_are_not_quadratic_on_large_graphs(tmp_path):
    """A path of 10^6 nodes (10^6 classes) and 3 x 10^5 fibers of 3: the
    table once scanned every node per fiber and DOT every node per class
    (3 x 10^11 and 5 x 10^11 steps, hours); linear writers take seconds.
    The generous timeout only stops a regression from hanging the suite."""
    n = 10 ** 6
    path = tmp_path / "path.txt"
    path.write_text("".join(f"n{i} n{i + 1}\n" for i in range(n - 1)))
    r = run("--dot", path, timeout=300)
    assert r.returncode == 0
    assert r.stdout.count(b" -> ") == n - 1 and r.stdout.count(b"[label=") == 2 * n - 1
    fibers = tmp_path / "fibers.txt"
    k = 3 * 10 ** 5
    fibers.write_text("".join(f"h{j} a{j}\nh{j} b{j}\n" + (f"h{j - 1} h{j}\n" if j else "")
                              for j in range(k)))
    r = run(fibers, timeout=300)
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert sum(1 for line in lines if line.startswith(b"class ")) == k
    assert b"class 1 (3 nodes, acyclic): a0 b0 h1" in r.stdout
