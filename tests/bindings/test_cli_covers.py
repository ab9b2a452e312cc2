"""`fibration analyze` meets fibers and opfibers itself for its covers column
(two colourings, not three): its counts equal the library's own covers."""
import json
import os
import subprocess

import pytest

import fibration

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "..", "docs", "examples", "fashion_mlp.safetensors")


@pytest.mark.parametrize("eps", [0.0, 0.05, 0.2, 0.5])
def test_cli_covers_equal_library_covers(library_dir, eps):
    cli = os.path.join(library_dir, "cli", "fibration")
    if not os.path.exists(cli):
        pytest.skip("no fibration command beside the library")
    args = [cli, "analyze", "-q", "--json", EXAMPLE] + (["--eps", str(eps)] if eps else [])
    report = json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)
    graph = fibration.Graph.load(EXAMPLE)
    tolerance = "abs" if eps else "exact"
    covers = graph.color("covers", tolerance, eps)
    for layer in report["layers"]:
        assert layer["covers"] == covers.num_classes(layer["index"]), layer
