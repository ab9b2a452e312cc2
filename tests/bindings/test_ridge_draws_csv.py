"""docs/examples/ridge_draws.py --csv: a series over training seeds resumes
(a seed with every budget, ridge and draw asked for is not run again; one
that lacks a cell is) and its summary, per network, ridge and budget, is the
mean over the seeds of each seed's mean over its draws, with the half-width
of the 95% Student t-interval over the seeds, and the lowest and highest
cell. No training: the cells are made here."""

import csv
import os
import sys

import pytest

from conftest import ROOT

pytest.importorskip("torch")
stats = pytest.importorskip("scipy.stats")
sys.path.insert(0, os.path.join(ROOT, "docs", "examples"))

import ridge_draws  # noqa: E402
import budget_seeds  # noqa: E402


def test_ridge_draws_csv_resumes_and_summarises_over_seeds(tmp_path):
    path = str(tmp_path / "ridge.csv")
    cells = {0: [84.0, 83.0], 1: [82.0, 82.5], 2: [85.0, 84.0]}   # seed: draws 0, 1
    for seed, accs in cells.items():
        budget_seeds.append_rows(path, [("mlp", seed, "0.10", "%g" % 1e-3, d, "%.2f" % a)
                                        for d, a in enumerate(accs)], ridge_draws.COLUMNS)
    # seed 3 has draw 0 only; a LeNet seed is not the MLP's
    budget_seeds.append_rows(path, [("mlp", 3, "0.10", "0.001", 0, "70.00"),
                                    ("lenet", 4, "0.10", "0.001", 0, "88.00")],
                             ridge_draws.COLUMNS)
    want = [("0.10", "0.001", "0"), ("0.10", "0.001", "1")]
    assert ridge_draws.seeds_done(path, "mlp", want) == {0, 1, 2}
    assert ridge_draws.seeds_done(path, "mlp", want[:1]) == {0, 1, 2, 3}
    assert ridge_draws.seeds_done(path, "lenet", want) == set()

    os.remove(path)
    for seed, accs in cells.items():
        budget_seeds.append_rows(path, [("mlp", seed, "0.10", "0.001", d, "%.2f" % a)
                                        for d, a in enumerate(accs)], ridge_draws.COLUMNS)
    ridge_draws.summarise(path)
    with open(str(tmp_path / "ridge_summary.csv")) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1
    got = rows[0]
    means = [sum(a) / len(a) for a in cells.values()]
    mean = sum(means) / 3
    sd = (sum((m - mean) ** 2 for m in means) / 2) ** 0.5
    half = stats.t.ppf(0.975, 2) * sd / 3 ** 0.5
    assert got["seeds"] == "0 1 2" and got["draws"] == "2"
    assert abs(float(got["mean"]) - mean) < 0.006 and abs(float(got["ci95"]) - half) < 0.006
    assert (float(got["lowest"]), float(got["highest"])) == (82.0, 85.0)
