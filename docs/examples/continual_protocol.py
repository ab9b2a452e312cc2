"""The comparison protocol of exp_continual.py --protocol N (online permuted
Fashion-MNIST, N tasks):

1. Knob selection on a separate seed (--select-seed, default 100; never an
   evaluation seed): every point of each method's grid (GRIDS) runs the N
   tasks once; the point with the best score (mean online accuracy over the
   last 20% of the tasks) is chosen, ties to the first in grid order, and
   written with every point's score to <stem>_knobs.csv. A method with one
   grid point (SGD) has nothing to choose.
2. Evaluation with the chosen knobs frozen, on seeds 0..S-1: every method
   gets the same initialisation, task order (permutations and images) and
   minibatches for a seed (they depend on the seed only). No method sees a
   task's images before it is scored on them: scores are online (each
   minibatch scored before its update), CBP works online, the cover breaking
   reads only the weights, and the synchrony breaking at a boundary reads
   the task just finished.

Each run is one process (single-threaded torch), at most --jobs at once; an
evaluation run starts as soon as its method's knobs are chosen. A run writes
one row per task to <runs>/<stage>_<method>_<knobs>_s<seed>.csv.part as the
task ends, renamed to .csv when the run is complete; a second invocation
skips the complete runs (resume), and --collect merges what is complete
without starting anything. The merged files: <stem>.csv (the evaluation,
in exp_continual.py's CSV format), <stem>_select.csv, <stem>_knobs.csv,
<stem>_summary.csv (95% t-intervals), <stem>_cost.csv (CPU seconds
per task of each run: machine- and load-dependent), <stem>.png.
"""

import multiprocessing
import os
import time

import numpy as np
import torch

METHODS = ("sgd", "cbp", "fibcos", "sync")
GRIDS = {
    "sgd": [{}],
    "cbp": [{"cbp_rate": r} for r in (1e-5, 1e-4, 1e-3)],
    "fibcos": [{"cos_eps": e} for e in (0.5, 0.7)],
    "sync": [{"sync_tol": t} for t in (1e-3, 1e-2)],
}
# --quick: two points per grid; CBP's rates high enough to replace units in
# a few hundred steps (maturity 20, from exp_continual.QUICK).
QUICK_GRIDS = {
    "sgd": [{}],
    "cbp": [{"cbp_rate": r} for r in (1e-2, 3e-2)],
    "fibcos": [{"cos_eps": e} for e in (0.5, 0.7)],
    "sync": [{"sync_tol": t} for t in (1e-3, 1e-2)],
}
RUN_HEADER = "task,accuracy,dead_units,units_renewed,cpu_seconds\n"


def knob_tag(knobs):
    return "-".join("%s%g" % kv for kv in sorted(knobs.items())) or "default"


def run_path(runs, stage, method, knobs, seed):
    return os.path.join(runs, "%s_%s_%s_s%d.csv" % (stage, method, knob_tag(knobs), seed))


def read_run(path):
    """Rows (task, accuracy, dead, renewed, cpu_seconds) of a run file."""
    with open(path) as fh:
        next(fh)
        return [(int(t), float(a), int(d), int(u), float(c))
                for t, a, d, u, c in (line.strip().split(",") for line in fh)]


def last_score(rows, tasks):
    """Mean online accuracy over the last 20% of the tasks."""
    tail = max(1, tasks // 5)
    return float(np.mean([r[1] for r in rows if r[0] >= tasks - tail]))


def _run_job(run_permuted, data, cfg, method, knobs, seed, path):
    torch.set_num_threads(1)
    part = path + ".part"
    with open(part, "w") as fh:
        fh.write(RUN_HEADER)
        start = [time.process_time()]

        def on_task(row):
            now = time.process_time()
            fh.write("%d,%.4f,%d,%d,%.3f\n" % (row + (now - start[0],)))
            fh.flush()
            start[0] = now
        run_permuted(method, seed, data, dict(cfg, **knobs), on_task)
    os.replace(part, path)


def choose(method, grid, runs, seed, tasks):
    """(chosen knobs, [(knobs, score)]) once every point has run, else None."""
    scored = []
    for knobs in grid:
        path = run_path(runs, "select", method, knobs, seed)
        if not os.path.exists(path):
            return None
        scored.append((knobs, last_score(read_run(path), tasks)))
    best = max(range(len(scored)), key=lambda i: (scored[i][1], -i))
    return scored[best][0], scored


def write_knobs(path, chosen, seed, tasks):
    with open(path, "w") as fh:
        fh.write("method,knobs,select_seed,select_tasks,select_last20,chosen\n")
        for method in METHODS:
            if method not in chosen:
                continue
            knobs, scored = chosen[method]
            for k, score in scored:
                fh.write("%s,%s,%d,%d,%s,%s\n" % (
                    method, knob_tag(k), seed, tasks,
                    "%.4f" % score if score is not None else "",
                    "yes" if k == knobs else "no"))


def run(run_permuted, data, cfg, grids, seeds, select_seed, jobs, runs, stem, launch, log):
    """Selection then evaluation (see the module docstring); returns the
    merged evaluation rows in exp_continual.py's row format."""
    assert select_seed not in seeds, "the selection seed must not be an evaluation seed"
    tasks = cfg["tasks"]
    os.makedirs(runs, exist_ok=True)
    methods = [m for m in METHODS if m in grids]
    select = [(m, k, select_seed) for m in methods if len(grids[m]) > 1 for k in grids[m]]
    pending = [("select",) + j for j in select] + [
        ("eval", m, None, s) for s in seeds for m in methods]
    chosen = {m: (grids[m][0], [(grids[m][0], None)]) for m in methods if len(grids[m]) == 1}
    ctx = multiprocessing.get_context("fork")
    running = []
    while True:
        for m in methods:
            if m not in chosen:
                c = choose(m, grids[m], runs, select_seed, tasks)
                if c:
                    chosen[m] = c
                    log("chosen on seed %d: %s %s (last-20%% scores %s)" % (
                        select_seed, m, knob_tag(c[0]),
                        " ".join("%s=%.4f" % (knob_tag(k), v) for k, v in c[1])))
        write_knobs(stem + "_knobs.csv", chosen, select_seed, tasks)
        ready = []
        for job in pending:
            stage, m, knobs, seed = job
            if stage == "eval":
                if m not in chosen:
                    continue
                knobs = chosen[m][0]
            path = run_path(runs, stage, m, knobs, seed)
            if os.path.exists(path):
                pending.remove(job)
                break                                  # the list changed: rescan
            if any(p == path for _, p in running):
                continue
            ready.append((job, m, knobs, seed, path))
        else:
            if not launch:
                break
            while ready and len(running) < jobs:
                job, m, knobs, seed, path = ready.pop(0)
                pending.remove(job)
                proc = ctx.Process(target=_run_job,
                                   args=(run_permuted, data, cfg, m, knobs, seed, path))
                proc.start()
                log("start %s %s %s seed %d" % (job[0], m, knob_tag(knobs), seed))
                running.append((proc, path))
            if not running and not pending:
                break
            if not running and not ready:
                raise RuntimeError("jobs left that cannot start: %s" % pending)
            running[0][0].join(timeout=2.0)
            for proc, path in list(running):
                if proc.exitcode is not None:
                    running.remove((proc, path))
                    if proc.exitcode != 0:
                        raise RuntimeError("run failed (exit %d): %s" % (proc.exitcode, path))
                    rows = read_run(path)
                    log("done %s: last-20%% %.4f, %.2f s CPU per task" % (
                        os.path.basename(path), last_score(rows, tasks),
                        np.mean([r[4] for r in rows])))
    return collect(runs, chosen, methods, seeds, select, select_seed, tasks, stem, log)


def collect(runs, chosen, methods, seeds, select, select_seed, tasks, stem, log):
    with open(stem + "_select.csv", "w") as fh:
        fh.write("method,knobs,seed,task,accuracy,dead_units,units_renewed,cpu_seconds\n")
        for m, knobs, seed in select:
            path = run_path(runs, "select", m, knobs, seed)
            if os.path.exists(path):
                for r in read_run(path):
                    fh.write("%s,%s,%d,%d,%.4f,%d,%d,%.3f\n" % ((m, knob_tag(knobs), seed) + r))
    rows = []
    cost = open(stem + "_cost.csv", "w")
    cost.write("stage,method,knobs,seed,tasks,cpu_seconds_per_task\n")
    for stage, m, knobs, seed in [("select",) + j for j in select] + [
            ("eval", m, chosen[m][0], s) for m in methods if m in chosen for s in seeds]:
        path = run_path(runs, stage, m, knobs, seed)
        if not os.path.exists(path):
            continue
        run_rows = read_run(path)
        per_task = np.mean([r[4] for r in run_rows])
        cost.write("%s,%s,%s,%d,%d,%.3f\n" % (stage, m, knob_tag(knobs), seed, len(run_rows),
                                               per_task))
        if stage == "eval":
            rows += [("permuted", m, seed, t, a, d, u) for t, a, d, u, _ in run_rows]
            log("eval %s seed %d: last-20%% %.4f, %.2f s CPU per task" % (
                m, seed, last_score(run_rows, tasks), per_task))
    cost.close()
    with open(stem + ".csv", "w") as fh:
        fh.write("benchmark,method,seed,task,accuracy,dead_units,units_renewed\n")
        for r in rows:
            fh.write("%s,%s,%d,%d,%.4f,%d,%d\n" % r)
    return rows
