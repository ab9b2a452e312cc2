"""docs/examples/graphs holds verbatim copies of published data: every file
has the sha256 its README records, and every data file is listed there."""
import hashlib
import pathlib
import re

DATA = pathlib.Path(__file__).resolve().parents[2] / "docs" / "examples" / "graphs"


def test_shipped_graphs_are_the_verbatim_copies_the_readme_lists():
    readme = (DATA / "README.md").read_text()
    listed = dict((name, digest) for digest, name in
                  re.findall(r"^([0-9a-f]{64})  (\S+)$", readme, re.M))
    present = {p.name for p in DATA.iterdir() if p.name != "README.md"}
    assert present == set(listed) and len(listed) == 10
    for name, digest in listed.items():
        assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == digest, name
