#!/usr/bin/env python3
"""The `fibration` command on whole model files, trained-like next to
planted: for each case, the time of `analyze` and `compress` against one
warm read of the same file, and their peak RSS against the file's size,
measured in the same run (docs/performance.md opens with these figures).

Cases (chains of `LAYERS` dense d x d layers, an nn.Sequential state dict):
  random-f32   random normal float32 weights: no exact symmetry, every
               class is one unit (what a trained network looks like)
  planted-f32  float32 weights in classes of 8 rows and 8 columns: exact
               fibers and covers of 8, a base 64 times smaller
  random-bf16  random normal bfloat16 weights (held as stored, read in
               place from the mapped file)
  random-f16   random normal float16 weights (likewise)
  planted-bf16 the planted chain in bfloat16

For each case the library's own path is measured too (`library` lines): a
Python child maps the file (Graph.load(copy=False)), colours it and
compresses it (Graph.compress: unmerged layers borrowed, merged ones the
base's float64 blocks); its peak RSS (ru_maxrss) counts the Python image.

A warm read is the best of 5 reads of the file into one 8 MiB buffer after
a first read has put it in the page cache; each command is run 3 times (the
best time and the largest peak RSS are printed) with OMP_NUM_THREADS = 1
and 2. Peak RSS is the child's own (wait4).

Usage: bench_models.py FIBRATION [FOLDER]
Environment: FIBRATION_LIBRARY (default: FIBRATION's build tree's
src/libfibration.so) for the library lines; FIB_BENCH_MODEL_MIB, the float32 file size in MiB (default 32:
8 x 1024 x 1024; 512 gives 8 x 4096 x 4096, the figures of issue 22).
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

LAYERS = 8
CLASS = 8
RUNS = 3


def random_layers(rng, d):
    for _ in range(LAYERS):
        yield rng.standard_normal((d, d), dtype=np.float32)


def planted_layers(rng, d):
    """Rows equal in classes of CLASS (not in the output layer) and columns
    equal in classes of CLASS (not in the first layer, which reads the
    inputs, kept unit by unit)."""
    for i in range(LAYERS):
        rows = d if i == LAYERS - 1 else d // CLASS
        cols = d if i == 0 else d // CLASS
        w = rng.standard_normal((rows, cols), dtype=np.float32)
        if rows < d:
            w = np.repeat(w, CLASS, axis=0)
        if cols < d:
            w = np.repeat(w, CLASS, axis=1)
        yield w


def write_state_dict(path, layers, d, dtype):
    """One layer at a time (the generator never holds the model); BF16 is
    float32 truncated, F16 float32 rounded."""
    size = 2 if dtype in ("BF16", "F16") else 4
    header, offset = {}, 0
    for i in range(LAYERS):
        n = d * d * size
        header[f"{2 * i}.weight"] = {"dtype": dtype, "shape": [d, d],
                                     "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for w in layers:
            if dtype == "BF16":
                (w.view(np.uint32) >> 16).astype(np.uint16).tofile(f)
            elif dtype == "F16":
                w.astype(np.float16).tofile(f)
            else:
                w.tofile(f)


def warm_read(path):
    """Best of 5 reads of the whole file into one buffer, after a first."""
    buf = bytearray(8 << 20)
    view = memoryview(buf)
    best = math.inf
    for attempt in range(6):
        start = time.perf_counter()
        with open(path, "rb", buffering=0) as f:
            while f.readinto(view):
                pass
        if attempt:
            best = min(best, time.perf_counter() - start)
    return best


def run(args, threads):
    """(best seconds, largest peak RSS in bytes, exit status) over RUNS."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    best, rss, status = math.inf, 0, None
    for _ in range(RUNS):
        start = time.perf_counter()
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        _, raw, usage = os.wait4(proc.pid, 0)
        best = min(best, time.perf_counter() - start)
        rss = max(rss, usage.ru_maxrss * 1024)
        status = os.waitstatus_to_exitcode(raw)
        proc.returncode = status
        if status not in (0, 5):  # 5: compress had nothing to merge
            sys.exit(f"{' '.join(args)}: exit {status}: {proc.stderr.read().decode()}")
        proc.stderr.close()
    return best, rss, status


LIBRARY_PATH = """
import os, resource, sys, time
sys.path.insert(0, sys.argv[2])
import fibration
start = time.perf_counter()
g = fibration.Graph.load(sys.argv[1], copy=False)
base = g.compress(g.color())
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def library_path(path, library):
    """(seconds, peak RSS in bytes) of load + color + compress in Python."""
    package = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bindings",
                           "python")
    env = dict(os.environ, OMP_NUM_THREADS="1", FIBRATION_LIBRARY=library)
    out = subprocess.run([sys.executable, "-c", LIBRARY_PATH, path, package], env=env,
                         check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1])


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cli = sys.argv[1]
    library = os.environ.get("FIBRATION_LIBRARY") or os.path.join(
        os.path.dirname(os.path.abspath(cli)), "..", "libfibration.so")
    folder = sys.argv[2] if len(sys.argv) > 2 else "."
    mib = float(os.environ.get("FIB_BENCH_MODEL_MIB", "32"))
    d = int(math.sqrt(mib * 2 ** 20 / 4 / LAYERS)) // 64 * 64
    rng = np.random.default_rng(22)
    cases = [("random-f32", random_layers, "F32"), ("planted-f32", planted_layers, "F32"),
             ("random-bf16", random_layers, "BF16"), ("random-f16", random_layers, "F16"),
             ("planted-bf16", planted_layers, "BF16")]
    print(f"fibration on chains of {LAYERS} dense {d} x {d} layers "
          f"(FIB_BENCH_MODEL_MIB={mib:g}); best of {RUNS} runs")
    _, baseline, _ = run([cli, "--version"], 1)
    # a child's peak counts from the fork, before exec: never below the
    # image of this Python process
    print(f"peak RSS of `fibration --version` here: {baseline / 1e6:.1f} MB (the floor of "
          f"every RSS below: it weighs in the RSS / file of small files)")
    print(f"{'case':<12} {'command':<9} {'threads':>7} {'time s':>8} {'/ read':>7} "
          f"{'RSS MB':>8} {'/ file':>7}  read s   file MB  exit")
    for name, layers, dtype in cases:
        path = os.path.join(folder, f"bench_models_{name}.safetensors")
        out = os.path.join(folder, f"bench_models_{name}_base.safetensors")
        write_state_dict(path, layers(rng, d), d, dtype)
        size = os.path.getsize(path)
        try:
            read = warm_read(path)
            for verb in ("analyze", "compress"):
                args = [cli, verb, "-q", path] + (["-o", out] if verb == "compress" else [])
                for threads in (1, 2):
                    seconds, rss, status = run(args, threads)
                    print(f"{name:<12} {verb:<9} {threads:>7} {seconds:8.3f} "
                          f"{seconds / read:7.2f} {rss / 1e6:8.1f} {rss / size:7.3f}  "
                          f"{read:.4f} {size / 1e6:9.1f}  {status}", flush=True)
            if os.path.exists(library):
                seconds, rss = library_path(path, library)
                print(f"{name:<12} {'library':<9} {1:>7} {seconds:8.3f} "
                      f"{seconds / read:7.2f} {rss / 1e6:8.1f} {rss / size:7.3f}  "
                      f"{read:.4f} {size / 1e6:9.1f}", flush=True)
        finally:
            for p in (path, out):
                if os.path.exists(p):
                    os.remove(p)


if __name__ == "__main__":
    main()
