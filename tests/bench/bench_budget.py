#!/usr/bin/env python3
"""`fibration compress --budget` on whole model files: for each case, the
time of the budget against one warm read of the same file, and its peak
RSS against the file's size, measured in the same run (docs/performance.md
opens with these figures; issue 22 item 5 sets the targets).

Cases (float32 safetensors, ReLU between the layers):
  trained-mlp    the shipped Fashion-MNIST MLP, 784-64-32-10 (trained
                 weights: docs/examples/fashion_mlp.safetensors)
  random-mlp     784-2048-2048-10 with biases, weights N(0, 1 / fan_in):
                 5.8 M parameters, no exact symmetry (issue 22: 3 s on one
                 core); then the same file with the synthetic correction
                 (`--input-scale 1 --merge-inputs`, 8,192 samples: the
                 line random-mlp+corr)
  random-chain   LAYERS dense d x d layers of random normal weights, the
                 chain of bench_models.py (FIB_BENCH_MODEL_MIB=512 gives
                 8 x 4096 x 4096, issue 22: 30 s)

Each command is run RUNS times (FIB_BENCH_RUNS, default 3; the best time,
the least CPU time (user + system, wait4) and the largest peak RSS are
printed) with OMP_NUM_THREADS = 1 and 2. On a busy host the CPU time is
the steadier figure: the elapsed time counts the other jobs' turns.

Usage: bench_budget.py FIBRATION [FOLDER]
Environment: FIB_BENCH_MODEL_MIB (the chain's float32 size in MiB, default
32: 8 x 1024 x 1024), FIB_BENCH_BUDGET (default 0.3), FIB_BENCH_RUNS.
The files are written to FOLDER (default: the current directory) and
deleted at the end."""
import json
import math
import os
import struct
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_models  # noqa: E402  (warm_read, run, the chain's writer)

HERE = os.path.dirname(os.path.abspath(__file__))
TRAINED = os.path.join(HERE, "..", "..", "docs", "examples", "fashion_mlp.safetensors")


def write_mlp(path, dims, rng):
    """An nn.Sequential state dict of Linear layers with biases."""
    header, offset, tensors = {}, 0, []
    for i in range(len(dims) - 1):
        w = (rng.standard_normal((dims[i + 1], dims[i])) / math.sqrt(dims[i])).astype(np.float32)
        b = (0.1 * rng.standard_normal(dims[i + 1])).astype(np.float32)
        for name, t in ((f"{2 * i}.weight", w), (f"{2 * i}.bias", b)):
            header[name] = {"dtype": "F32", "shape": list(t.shape),
                            "data_offsets": [offset, offset + t.nbytes]}
            offset += t.nbytes
            tensors.append(t)
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for t in tensors:
            t.tofile(f)


# A child of this process starts as a copy of it, and Linux counts the
# copy's resident pages (this Python, 40-some MB with numpy) in the child's
# peak RSS even after exec: a small command would show the Python image.
# /usr/bin/time in between is a small process whose child's peak it prints
# (%M, KiB); the CPU time from wait4 counts that child too.
TIME = "/usr/bin/time"


def run(args, threads):
    """(best seconds, least CPU seconds, largest peak RSS in bytes) over RUNS."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    best, cpu, rss = math.inf, math.inf, 0
    wrapped = os.access(TIME, os.X_OK)
    for _ in range(bench_models.RUNS):
        start = time.perf_counter()
        proc = subprocess.Popen([TIME, "-f", "%M"] + args if wrapped else args, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, raw, usage = os.wait4(proc.pid, 0)
        best = min(best, time.perf_counter() - start)
        cpu = min(cpu, usage.ru_utime + usage.ru_stime)
        err = proc.stderr.read().decode()
        proc.stderr.close()
        status = os.waitstatus_to_exitcode(raw)
        proc.returncode = status
        if status != 0:
            sys.exit(f"{' '.join(args)}: exit {status}: {err}")
        rss = max(rss, int(err.split()[-1]) * 1024 if wrapped else usage.ru_maxrss * 1024)
    return best, cpu, rss


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cli = sys.argv[1]
    folder = sys.argv[2] if len(sys.argv) > 2 else "."
    mib = float(os.environ.get("FIB_BENCH_MODEL_MIB", "32"))
    budget = os.environ.get("FIB_BENCH_BUDGET", "0.3")
    bench_models.RUNS = int(os.environ.get("FIB_BENCH_RUNS", "3"))
    d = int(math.sqrt(mib * 2 ** 20 / 4 / bench_models.LAYERS)) // 64 * 64
    rng = np.random.default_rng(22)
    print(f"fibration compress --budget {budget}; best of {bench_models.RUNS} runs")
    print(f"{'case':<15} {'threads':>7} {'time s':>8} {'CPU s':>8} {'/ read':>8} {'RSS MB':>8} "
          f"{'/ file':>7}  read s   file MB  shape")
    corrected = ["--input-scale", "1", "--merge-inputs"]
    cases = [("trained-mlp", None, "784-64-32-10", [[]]),
             ("random-mlp", [784, 2048, 2048, 10], "784-2048-2048-10", [[], corrected]),
             ("random-chain", "chain", f"{bench_models.LAYERS} x {d} x {d}", [[]])]
    for name, dims, shape, variants in cases:
        path = TRAINED if dims is None else os.path.join(folder, f"bench_budget_{name}.safetensors")
        out = os.path.join(folder, f"bench_budget_{name}_base.safetensors")
        if dims == "chain":
            bench_models.write_state_dict(path, bench_models.random_layers(rng, d), d, "F32")
        elif dims is not None:
            write_mlp(path, dims, rng)
        size = os.path.getsize(path)
        try:
            read = bench_models.warm_read(path)
            for extra in variants:
                args = [cli, "compress", "-q", "--budget", budget] + extra + [path, "-o", out]
                label = name + ("+corr" if extra else "")
                for threads in (1, 2):
                    seconds, cpu, rss = run(args, threads)
                    print(f"{label:<15} {threads:>7} {seconds:8.3f} {cpu:8.3f} "
                          f"{seconds / read:8.1f} {rss / 1e6:8.1f} {rss / size:7.2f}  {read:.4f} "
                          f"{size / 1e6:9.1f}  {shape}", flush=True)
        finally:
            for p in ((path, out) if dims is not None else (out,)):
                if os.path.exists(p):
                    os.remove(p)


if __name__ == "__main__":
    main()
