"""The experiment scripts docs/examples/exp_*.py run to completion in their
--quick mode (each under about 2 minutes on the 2-core development machine;
the whole file under about 6), write their PNG and CSV, and the numbers they
write have the properties the experiments rest on."""

import csv
import glob
import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT

EXAMPLES = os.path.join(ROOT, "docs", "examples")
sys.path.insert(0, EXAMPLES)

try:
    import torch  # noqa: F401
    import fashion_data
    HAVE_DATA = fashion_data.available()
except ImportError:        # no torch
    HAVE_DATA = False

pytestmark = [
    pytest.mark.skipif(not HAVE_DATA, reason="needs torch and /usr/share/datasets/fashion-mnist"),
]

QUICK_BUDGET = 240   # seconds: a hard limit (the target is 120 on an idle machine)


def run_quick(script, out, *extra):
    import fibration
    env = dict(os.environ, FIBRATION_LIBRARY=os.path.abspath(fibration.library_path))
    start = time.time()
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), "--quick",
                           "--out", str(out)] + list(extra),
                          capture_output=True, text=True, env=env, timeout=QUICK_BUDGET)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout, time.time() - start


def read_csv(path):
    with open(path) as fh:
        return [row for row in csv.DictReader(line for line in fh if not line.startswith("#"))]


def test_emergence_quick(tmp_path):
    out, _ = run_quick("exp_emergence.py", tmp_path)
    assert (tmp_path / "emergence.png").stat().st_size > 0
    rows = read_csv(tmp_path / "emergence.csv")
    # randomly initialised nets start with every unit alone, exactly
    start = [r for r in rows if r["model"] in ("mlp", "cnn") and r["step"] == "0"
             and r["tolerance"] == "exact"]
    assert start and all(r["covers"] == r["units"] for r in start)
    # the lift is found exactly at step 0: 32 classes in each hidden layer
    lifted = [r for r in rows if r["model"] == "lifted" and r["step"] == "0"
              and r["tolerance"] == "exact" and r["units"] == "128"]
    assert len(lifted) == 2 and all(r["fibers"] == "32" and r["covers"] == "32" for r in lifted)
    # with every product summed in one order, copies stay bit-identical: the
    # planted covers never split (they may only merge further)
    ordered = [r for r in rows if r["model"] == "lifted_ordered" and r["tolerance"] == "exact"]
    assert len({r["step"] for r in ordered}) >= 3
    assert all(r["pairs_split"] == "0" for r in ordered)
    assert all(int(r["covers"]) <= 32 for r in ordered if r["units"] == "128")
    assert "coarse-graining" in out


def test_continual_quick(tmp_path):
    out, _ = run_quick("exp_continual.py", tmp_path)
    assert (tmp_path / "continual.png").stat().st_size > 0
    rows = read_csv(tmp_path / "continual.csv")
    methods = {r["method"] for r in rows}
    assert {"sgd", "cbp", "fib", "fib6", "sync", "fibsync"} <= methods   # + fibcos (cosine)
    assert {r["benchmark"] for r in rows} == {"pairs", "permuted"}
    # paired seeds: every method sees the same first task from the same init
    first = {(r["benchmark"], r["seed"]): set() for r in rows}
    for r in rows:
        if r["task"] == "0" and r["method"] in ("sgd", "fib", "sync"):
            first[(r["benchmark"], r["seed"])].add(r["accuracy"])
    assert all(len(v) == 1 for v in first.values())
    assert any(int(r["units_renewed"]) > 0 for r in rows if r["method"] == "sync")


def test_continual_quick_cbp_replaces_units(tmp_path):
    """The quick mode exercises CBP's mechanism: units are replaced and the run
    departs from SGD's on the same seed (same init, tasks and minibatches)."""
    run_quick("exp_continual.py", tmp_path, "--methods", "sgd,cbp")
    rows = read_csv(tmp_path / "continual.csv")
    for bench in ("pairs", "permuted"):
        cbp = [r for r in rows if r["benchmark"] == bench and r["method"] == "cbp"]
        sgd = {(r["seed"], r["task"]): r["accuracy"] for r in rows
               if r["benchmark"] == bench and r["method"] == "sgd"}
        assert sum(int(r["units_renewed"]) for r in cbp) >= 1, bench
        changed = [r for r in cbp if r["accuracy"] != sgd[(r["seed"], r["task"])]]
        assert changed, "CBP's scores equal SGD's on every task of " + bench
        # until its first replacement CBP only keeps statistics: SGD's scores
        assert all(r["accuracy"] == sgd[(r["seed"], r["task"])] for r in cbp
                   if r["task"] == "0" and r["units_renewed"] == "0")
    summary = read_csv(tmp_path / "continual_summary.csv")
    assert {(r["benchmark"], r["method"]) for r in summary} == {
        (b, m) for b in ("pairs", "permuted") for m in ("sgd", "cbp")}
    for r in summary:
        assert r["seeds"] == "2" and float(r["last_ci95"]) >= 0


def test_continual_protocol_quick(tmp_path):
    """--protocol: knobs chosen on the selection seed (the best last-20% score
    of each grid, written with every point's score), then frozen for the
    evaluation seeds, which every method shares; a resumed invocation reruns
    only the missing run and reproduces it."""
    run_quick("exp_continual.py", tmp_path, "--protocol", "2")
    stem = tmp_path / "continual_protocol2"
    knobs = read_csv(str(stem) + "_knobs.csv")
    chosen = {}
    for method in ("cbp", "fibcos", "sync"):
        grid = [r for r in knobs if r["method"] == method]
        assert len(grid) == 2 and {r["select_seed"] for r in grid} == {"100"}
        best = [r for r in grid if r["chosen"] == "yes"]
        assert len(best) == 1
        assert float(best[0]["select_last20"]) == max(float(r["select_last20"]) for r in grid)
        chosen[method] = best[0]["knobs"]
    select = read_csv(str(stem) + "_select.csv")
    assert {r["seed"] for r in select} == {"100"}
    assert {(r["method"], r["knobs"]) for r in select} == {
        (r["method"], r["knobs"]) for r in knobs if r["method"] != "sgd"}
    rows = read_csv(str(stem) + ".csv")
    assert {(r["method"], r["seed"], r["task"]) for r in rows} == {
        (m, s, t) for m in ("sgd", "cbp", "fibcos", "sync") for s in "01" for t in "01"}
    # the same initialisation, first task and minibatches for every method
    # that cannot act before the first boundary
    for seed in "01":
        assert len({r["accuracy"] for r in rows if r["seed"] == seed and r["task"] == "0"
                    and r["method"] != "cbp"}) == 1
    summary = read_csv(str(stem) + "_summary.csv")
    assert {r["method"] for r in summary} == {"sgd", "cbp", "fibcos", "sync"}
    for r in summary:      # the plasticity columns: last - first, paired by seed
        assert abs(float(r["last_minus_first"]) - (float(r["last"]) - float(r["first"]))) < 2e-4
    cost = read_csv(str(stem) + "_cost.csv")
    assert len(cost) == 6 + 4 * 2 and all(float(r["cpu_seconds_per_task"]) > 0 for r in cost)
    runs = tmp_path / "continual_protocol2_runs"
    for method, tag in chosen.items():
        assert (runs / ("eval_%s_%s_s0.csv" % (method, tag))).exists()
    # resume: only the deleted run is made again, with the same rows
    (runs / ("eval_sync_%s_s1.csv" % chosen["sync"])).unlink()
    out, _ = run_quick("exp_continual.py", tmp_path, "--protocol", "2")
    assert out.count(" start ") == 1 and "start eval sync" in out
    assert read_csv(str(stem) + ".csv") == rows


def test_synchrony_quick(tmp_path):
    run_quick("exp_synchrony.py", tmp_path)
    assert (tmp_path / "synchrony.png").stat().st_size > 0
    rows = read_csv(tmp_path / "synchrony.csv")
    # exact fibers of a lifted network synchronise: each lies inside one cluster
    lifted = [r for r in rows if r["model"] == "lifted" and r["fiber_tolerance"] == "exact"]
    assert lifted and all(r["fibers_inside_one_cluster"] == r["nontrivial_fibers"]
                          for r in lifted)
    assert all(int(r["nontrivial_fibers"]) > 0 for r in lifted)


def test_lstm_quick(tmp_path):
    run_quick("exp_lstm.py", tmp_path)
    assert (tmp_path / "lstm.png").stat().st_size > 0
    rows = read_csv(tmp_path / "lstm.csv")
    events = [r for r in rows if r["run"] == "event"]
    assert len(events) == 2
    compressed = [int(r["params"]) for r in rows if r["run"] == "compressed"]
    assert compressed[-1] < compressed[0]
    assert all(b <= a for a, b in zip(compressed, compressed[1:]))   # only shrinks


@pytest.mark.skipif(not glob.glob("/usr/share/vim/vim90/doc/*.txt"),
                    reason="needs the text of Debian's vim-runtime")
def test_transformer_quick(tmp_path):
    out, _ = run_quick("exp_transformer.py", tmp_path)
    assert (tmp_path / "transformer.png").stat().st_size > 0
    rows = read_csv(tmp_path / "transformer.csv")
    assert {r["run"] for r in rows} == {"baseline", "compressed"}
    for r in rows:
        if r["run"] == "compressed":
            base = [b for b in rows if b["run"] == "baseline" and b["d_model"] == r["d_model"]][0]
            assert int(r["core_params"]) <= int(base["core_params"])
    # the quick run compresses for real: every size gets a base with fewer
    # parameters than the original (at most half at the largest factor)
    for d in {r["d_model"] for r in rows}:
        base = [int(r["core_params"]) for r in rows if r["run"] == "baseline" and r["d_model"] == d]
        smallest = min(int(r["core_params"]) for r in rows
                       if r["run"] == "compressed" and r["d_model"] == d)
        assert smallest < base[0] / 2, (d, smallest, base)
    assert "exponents" in out


def test_seeds_summary_means_and_intervals(tmp_path):
    """--seeds N runs seeds 0..N-1 into <out>/<name>_seeds/seed<S>/ and writes
    every seed's figures and their means with 95% Student t-intervals; a paired
    difference is summarised over its per-seed differences; a second
    invocation reruns only a missing seed."""
    from scipy import stats
    out, _ = run_quick("exp_lstm.py", tmp_path, "--seeds", "2")
    for seed in (0, 1):
        assert (tmp_path / "lstm_seeds" / ("seed%d" % seed) / "lstm.csv").exists()
    per_seed = read_csv(tmp_path / "lstm_seeds.csv")
    summary = {r["figure"]: r for r in read_csv(tmp_path / "lstm_summary.csv")}
    values = {}
    for r in per_seed:
        values.setdefault(r["figure"], {})[int(r["seed"])] = float(r["value"])
    assert set(values) == set(summary)
    for figure, by_seed in values.items():
        v = [by_seed[0], by_seed[1]]
        mean = sum(v) / 2
        half = stats.t.ppf(0.975, 1) * abs(v[0] - v[1]) / 2     # sd / sqrt(2) of two values
        assert summary[figure]["seeds"] == "2"
        assert abs(float(summary[figure]["mean"]) - mean) <= 1e-5 * max(1.0, abs(mean))
        assert abs(float(summary[figure]["ci95"]) - half) <= 1e-5 * max(1.0, half)
    # the two seeds are different runs, and the compressed model ends smaller
    assert values["baseline accuracy end"][0] != values["baseline accuracy end"][1]
    paired = values["compressed minus baseline end"]
    for seed in (0, 1):
        assert abs(paired[seed] - (values["compressed accuracy end"][seed]
                                   - values["baseline accuracy end"][seed])) < 1e-6
        assert 0 < values["compression 2 (step 100) params share"][seed] < 1
    # resume: only the deleted seed runs again, and reproduces its figures
    (tmp_path / "lstm_seeds" / "seed1" / "lstm.csv").unlink()
    out, _ = run_quick("exp_lstm.py", tmp_path, "--seeds", "2")
    assert "seed 0: lstm.csv already there" in out and "seed 1: running" in out
    assert read_csv(tmp_path / "lstm_seeds.csv") == per_seed
