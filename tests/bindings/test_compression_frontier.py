"""docs/examples/compression_frontier.py --quick runs end to end (< 2 min),
writes its CSV and PNG, meets every budget, and the library's budget= beats
every peer at 10% of the parameters on its trained LeNet-300-100."""

import csv
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("scipy")
pytest.importorskip("matplotlib")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "docs", "examples", "compression_frontier.py")
DATA = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


@pytest.mark.skipif(not os.path.exists(DATA), reason="dataset-fashion-mnist not installed")
def test_quick_frontier(tmp_path):
    env = dict(os.environ, FIB_FRONTIER_CACHE=str(tmp_path / "cache"))
    subprocess.run([sys.executable, SCRIPT, "--quick", "--out", str(tmp_path)], check=True,
                   env=env, timeout=300, capture_output=True)
    assert (tmp_path / "compression_frontier.png").stat().st_size > 0
    with open(tmp_path / "compression_frontier.csv") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        assert float(r["kept"]) <= float(r["budget"]) + 1e-9
    at10 = {r["method"]: float(r["accuracy"]) for r in rows if r["budget"] == "0.1"}
    peers = [v for k, v in at10.items() if k.startswith("peer:")]
    assert at10["lib:budget"] > max(peers)
