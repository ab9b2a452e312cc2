"""docs/tutorial-graphs.md runs as written: its ```python blocks, in order,
as one script, print what its ```text blocks show (414 classes from the
edge list and from networkx) and write the DOT picture."""
import os
import pathlib
import re
import subprocess
import sys

import fibration

ROOT = pathlib.Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial-graphs.md"


def blocks(text, language):
    return re.findall(r"^```%s\n(.*?)^```" % language, text, re.S | re.M)


def test_graph_tutorial_runs_and_prints_what_it_shows(tmp_path):
    text = TUTORIAL.read_text()
    script = tmp_path / "tutorial.py"
    script.write_text("\n".join(blocks(text, "python")))
    # the tutorial runs from the repository root; its files are written to
    # the working folder, so give it a folder of its own that sees docs/
    (tmp_path / "docs").symlink_to(ROOT / "docs")
    env = dict(os.environ, FIBRATION_LIBRARY=os.path.abspath(fibration.library_path),
               PYTHONPATH=os.pathsep.join([str(ROOT / "bindings" / "python"),
                                           os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    printed = out.stdout.splitlines()
    assert "edge list: 414 classes of 879 genes" in printed
    assert "networkx: 414 classes" in printed
    # every line the tutorial shows is printed, in the order shown
    shown = [line for block in blocks(text, "text") for line in block.splitlines()]
    assert len(shown) >= 10
    position = 0
    for line in shown:
        assert line in printed[position:], "%r not printed (after line %d)" % (line, position)
        position = printed.index(line, position) + 1
    dot = (tmp_path / "ecoli_fiber.dot").read_text()
    assert dot.startswith("digraph base {") and dot.count("->") >= 3
