"""docs/examples/budget_seeds.py --csv: a series of training seeds resumes
(a seed whose rows hold every variant asked for is not run again; one that
lacks a variant is) and its summary is the mean over the seeds in the CSV
with the half-width of the 95% Student t-interval, per network, evaluation,
variant and budget, and of the baselines. No training: the rows are made
here."""

import csv
import os
import sys

import pytest

from conftest import ROOT

pytest.importorskip("torch")
stats = pytest.importorskip("scipy.stats")
sys.path.insert(0, os.path.join(ROOT, "docs", "examples"))

import budget_seeds  # noqa: E402


def row(network, evaluate, seed, baseline, variant, budget, accuracy):
    return (network, evaluate, seed, "%.2f" % baseline, variant, "%.2f" % budget,
            "%.2f" % accuracy, "-", "300 100 10")


def write_series(path, values):
    """Rows of LeNet's split series at 10% (baseline 89.0) for
    {variant: {seed: accuracy}}."""
    for variant, by_seed in values.items():
        for seed, acc in by_seed.items():
            budget_seeds.append_rows(path, [row("lenet", "split", seed, 89.0, variant, 0.10,
                                                acc)])


def summary_by_variant(path, versus):
    """The summary of the series in path, differences to `versus`, by variant."""
    budget_seeds.summarise(path, versus=versus)
    with open(os.path.splitext(path)[0] + "_summary.csv") as fh:
        return {r["variant"]: r for r in csv.DictReader(fh)}


def test_budget_seeds_csv_resumes_and_summarises(tmp_path):
    path = str(tmp_path / "seeds.csv")
    accuracies = {0: 88.10, 1: 86.40, 2: 87.25}
    for seed, acc in accuracies.items():
        budget_seeds.append_rows(path, [row("lenet", "test", seed, 89.0 + seed / 10, "python",
                                            0.10, acc)])
    # seed 3 has only one of the two variants asked for below; another
    # evaluation's seed 4 is not this series'
    budget_seeds.append_rows(path, [row("lenet", "test", 3, 89.5, "c", 0.10, 80.0),
                                    row("lenet", "split", 4, 89.5, "python", 0.10, 70.0)])
    with open(path) as fh:
        assert sum(1 for line in fh if line.startswith("network,")) == 1   # one header
    assert budget_seeds.seeds_done(path, "lenet", "test", ["python"]) == {0, 1, 2}
    assert budget_seeds.seeds_done(path, "lenet", "test", ["python", "c"]) == set()
    assert budget_seeds.seeds_done(path, "mlp", "test", ["python"]) == set()
    assert budget_seeds.seeds_done(str(tmp_path / "none.csv"), "lenet", "test", ["python"]) == set()

    budget_seeds.summarise(path)
    with open(str(tmp_path / "seeds_summary.csv")) as fh:
        summary = {(r["network"], r["evaluate"], r["variant"], r["budget"]): r
                   for r in csv.DictReader(fh)}
    got = summary[("lenet", "test", "python", "0.10")]
    v = list(accuracies.values())
    mean = sum(v) / 3
    sd = (sum((a - mean) ** 2 for a in v) / 2) ** 0.5
    half = stats.t.ppf(0.975, 2) * sd / 3 ** 0.5
    assert got["seeds"] == "0 1 2"
    assert abs(float(got["mean"]) - mean) < 0.006 and abs(float(got["ci95"]) - half) < 0.006
    assert (float(got["min"]), float(got["max"])) == (min(v), max(v))
    baseline = summary[("lenet", "test", "baseline", "1.00")]
    assert baseline["seeds"] == "0 1 2 3" and abs(float(baseline["mean"]) - 89.2) < 0.006
    lone = summary[("lenet", "split", "python", "0.10")]
    assert lone["seeds"] == "4" and lone["ci95"] == "nan"    # one seed has no interval
    assert got["versus"] == "" and baseline["versus"] == ""   # no difference to itself


def test_budget_seeds_summary_pairs_variants_by_seed(tmp_path):
    """The summary's difference to the --versus variant is the mean of the
    per-seed differences over the seeds both variants have, with its own
    t-interval (narrower than the two variants' when the seeds move them
    together)."""
    path = str(tmp_path / "seeds.csv")
    reference = {0: 88.0, 1: 86.0, 2: 87.0, 3: 85.5}
    other = {0: 87.5, 1: 85.0, 2: 86.75}          # seed 3 lacks this variant
    write_series(path, {"python s=3": reference, "python s=2": other})
    summary = summary_by_variant(path, "python s=3")
    diffs = [other[s] - reference[s] for s in other]
    mean = sum(diffs) / 3
    sd = (sum((d - mean) ** 2 for d in diffs) / 2) ** 0.5
    half = stats.t.ppf(0.975, 2) * sd / 3 ** 0.5
    got = summary["python s=2"]
    assert got["versus"] == "python s=3"
    assert abs(float(got["minus_versus"]) - mean) < 0.006
    assert abs(float(got["ci95_minus_versus"]) - half) < 0.006
    assert float(got["ci95_minus_versus"]) < float(got["ci95"])
    assert summary["python s=3"]["minus_versus"] == ""
    summary = summary_by_variant(path, "baseline")
    to_baseline = sum(other.values()) / 3 - 89.0
    assert abs(float(summary["python s=2"]["minus_versus"]) - to_baseline) < 0.006


def test_budget_seeds_summary_pairs_unmerged_stages_on_their_own_inputs(tmp_path):
    """A stage on classes without merged inputs is paired with the --versus
    stage on the same inputs, not with the merged one; a power without the
    correction with the --versus power without it."""
    path = str(tmp_path / "seeds.csv")
    values = {"refit": {0: 86.0, 1: 85.0, 2: 87.0},
              "every-consumer": {0: 87.0, 1: 86.5, 2: 88.0},
              "refit unmerged-inputs": {0: 78.0, 1: 80.0, 2: 76.0},
              "every-consumer unmerged-inputs": {0: 82.0, 1: 83.0, 2: 81.5}}
    write_series(path, values)
    summary = summary_by_variant(path, "refit")
    got = summary["every-consumer unmerged-inputs"]
    diffs = [values["every-consumer unmerged-inputs"][s] - values["refit unmerged-inputs"][s]
             for s in range(3)]
    assert got["versus"] == "refit unmerged-inputs"
    assert abs(float(got["minus_versus"]) - sum(diffs) / 3) < 0.006
    assert summary["every-consumer"]["versus"] == "refit"
    assert abs(float(summary["every-consumer"]["minus_versus"]) - 1.1667) < 0.006
    assert summary["refit unmerged-inputs"]["versus"] == ""     # itself: no difference

    path = str(tmp_path / "powers.csv")
    values = {"p=1.5": {0: 87.0, 1: 86.0}, "p=1": {0: 86.0, 1: 85.5},
              "p=1.5 refit": {0: 80.0, 1: 81.0}, "p=1 refit": {0: 82.0, 1: 82.5}}
    write_series(path, values)
    summary = summary_by_variant(path, "p=1.5")
    assert summary["p=1 refit"]["versus"] == "p=1.5 refit"
    assert abs(float(summary["p=1 refit"]["minus_versus"]) - 1.75) < 0.006
    assert summary["p=1"]["versus"] == "p=1.5"
    assert abs(float(summary["p=1"]["minus_versus"]) + 0.75) < 0.006
