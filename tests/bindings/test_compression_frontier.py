"""docs/examples/compression_frontier.py --quick runs end to end (< 2 min),
writes its CSV and PNG, meets every budget, and the library's data-free
budget= (refit and synthetic least squares) beats every peer at every budget
on its trained LeNet-300-100 and stays within 2 points of the baseline at 30%."""

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
    baseline = [float(r["accuracy"]) for r in rows if r["method"] == "baseline"][0]
    assert baseline > 80  # the training worked (SGD recipe on 12,000 images: measured 86.6)
    for budget in ("0.1", "0.17", "0.3"):
        at = {r["method"]: r for r in rows if r["budget"] == budget}
        peers = [float(v["accuracy"]) for k, v in at.items() if k.startswith("peer:")]
        assert float(at["lib:budget"]["accuracy"]) > max(peers)
        assert "refit synthetic" in at["lib:budget"]["knob"]
    at30 = [r for r in rows if r["budget"] == "0.3" and r["method"] == "lib:budget"][0]
    assert float(at30["accuracy"]) >= baseline - 2


def test_summary_over_per_seed_runs(tmp_path):
    """--summary joins runs made one seed per process: the union holds every
    row of each, and each cell's mean (and its difference to lib:budget) is
    over the seeds of all the files."""
    columns = ["network", "seed", "method", "budget", "kept", "accuracy", "knob"]
    accuracies = {0: {"lib:budget": 88.0, "peer:l2-prune": 30.0},
                  1: {"lib:budget": 87.0, "peer:l2-prune": 40.0},
                  2: {"lib:budget": 86.5, "peer:l2-prune": 35.5}}
    paths = []
    for seed, by_method in accuracies.items():
        path = tmp_path / ("seed%d.csv" % seed)
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            for method, acc in by_method.items():
                w.writerow(dict(network="lenet-300-100", seed=seed, method=method, budget=0.1,
                                kept=0.099, accuracy=acc, knob=""))
        paths.append(str(path))
    union = tmp_path / "union.csv"
    out = subprocess.run([sys.executable, SCRIPT, "--summary", ",".join(reversed(paths)),
                          "--union", str(union)], check=True, timeout=120,
                         capture_output=True, text=True).stdout
    with open(union) as f:
        rows = list(csv.DictReader(f))
    assert sorted((int(r["seed"]), r["method"]) for r in rows) == \
        sorted((s, m) for s, by in accuracies.items() for m in by)
    lines = {line.split()[1]: line.split() for line in out.splitlines()
             if line.startswith("lenet-300-100")}
    for method in ("lib:budget", "peer:l2-prune"):
        values = [by[method] for by in accuracies.values()]
        assert lines[method][3] == "3"  # seeds
        assert abs(float(lines[method][4]) - sum(values) / 3) < 0.006
    diffs = [by["peer:l2-prune"] - by["lib:budget"] for by in accuracies.values()]
    assert abs(float(lines["peer:l2-prune"][7]) - sum(diffs) / 3) < 0.006
