"""docs/examples/graphs holds verbatim copies of published data and files
derived from them by derive_formats.py: every data file has the sha256 its
README records, every data file is listed there, and re-running the script
reproduces the derived files byte for byte."""
import hashlib
import pathlib
import re
import subprocess
import sys

DATA = pathlib.Path(__file__).resolve().parents[2] / "docs" / "examples" / "graphs"
SCRIPT = DATA / "derive_formats.py"
DERIVED = ("ecoli_ids.tsv", "ecoli_names.tsv", "ecoli_named.txt")


def test_shipped_graphs_are_the_files_the_readme_lists():
    readme = (DATA / "README.md").read_text()
    listed = dict((name, digest) for digest, name in
                  re.findall(r"^([0-9a-f]{64})  (\S+)$", readme, re.M))
    present = {p.name for p in DATA.iterdir() if p.name not in ("README.md", SCRIPT.name)}
    assert present == set(listed) and len(listed) == 10
    assert set(DERIVED) <= present
    for name, digest in listed.items():
        assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == digest, name


def test_derive_formats_reproduces_the_committed_ecoli_files(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(DERIVED)
    for name in DERIVED:
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name


def test_derived_ecoli_files_hold_the_arcs_of_test_ecoli_csv():
    """The three derived files describe the graph of test_Ecoli.csv: the same
    typed arcs in the same order, the ids numbering the sorted gene names."""
    rows = (DATA / "test_Ecoli.csv").read_text().splitlines()
    assert rows[0].split(",")[:3] == ["SourceName", "TargetName", "Type"]
    arcs = [tuple(r.split(",")[:3]) for r in rows[1:]]
    assert len(arcs) == 1835
    names = [line.split("\t") for line in (DATA / "ecoli_names.tsv").read_text().splitlines()]
    assert [int(i) for _, i in names] == list(range(879))
    assert [n for n, _ in names] == sorted({x for a in arcs for x in a[:2]})
    name_of = {i: n for n, i in names}
    by_id = [line.split("\t") for line in (DATA / "ecoli_ids.tsv").read_text().splitlines()]
    assert [(name_of[s], name_of[d], t) for s, d, t in by_id] == arcs
    named = [tuple(line.split(" ")) for line in (DATA / "ecoli_named.txt").read_text().splitlines()]
    assert named == arcs
