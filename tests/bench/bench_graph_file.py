#!/usr/bin/env python3
"""`fibration graph` end to end on a big edge-list file, against the
refinement alone and `wc -l` of the same file, measured in the same run
(docs/performance.md and docs/graphs.md quote these figures).

The file: ARCS random arcs over ARCS / 10 nodes named by their numbers
(`source,target` header, one `u,v` line an arc; 10^7 arcs make the 138 MB
CSV of issue 22), written to FOLDER and deleted at the end.

Printed, each the best of RUNS runs after a first read has put the file in
the page cache, as wall and CPU seconds (on a shared host the wall time
also counts the neighbours; ratios divide CPU times):
  wc -l            the floor: one pass over the bytes
  read             fib_graph_read_edgelist (Graph.read_edgelist): MB/s
  refine           fib_color on the graph already in memory (the
                   refinement's own time, its arc index included)
  graph -q         the command, nothing printed: time / refine, peak RSS
                   (wait4) and peak RSS per arc
  graph (table)    the command printing its table to /dev/null (adds the
                   fiber blocks' cycles and the base graph)

Usage: bench_graph_file.py FIBRATION LIBRARY [FOLDER]
Environment: FIB_BENCH_GRAPH_ARCS (default 10000000); FIB_BENCH_GRAPH_PREFIX,
a prefix that makes the names words (`n` gives n0, n1, ...: the hash table
instead of the number index)."""
import math
import os
import subprocess
import sys
import time

import numpy as np

RUNS = 3


def write_edge_list(path, n_arcs, n_nodes, prefix):
    rng = np.random.default_rng(22)
    with open(path, "w") as f:
        f.write("source,target\n")
        chunk = 1_000_000
        for start in range(0, n_arcs, chunk):
            k = min(chunk, n_arcs - start)
            arcs = rng.integers(0, n_nodes, size=(k, 2))
            np.savetxt(f, arcs, fmt=f"{prefix}%d", delimiter=",")


def best_of(fn):
    """(best wall seconds, best CPU seconds) of fn() in this process."""
    wall = cpu = math.inf
    for _ in range(RUNS):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        cpu = min(cpu, time.process_time() - start_cpu)
        wall = min(wall, time.perf_counter() - start)
    return wall, cpu


TIME = "/usr/bin/time"


def run(args):
    """(best wall seconds, best CPU seconds, largest peak RSS in bytes) of a
    command over RUNS. The peak RSS is read by /usr/bin/time when present:
    a child forked from this Python starts from its image (wait4 counts
    it); /usr/bin/time's own child starts small."""
    wall = cpu = math.inf
    rss = 0
    timed = os.access(TIME, os.X_OK)
    for _ in range(RUNS):
        start = time.perf_counter()
        full = [TIME, "-f", "%M", *args] if timed else args
        proc = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, raw, usage = os.wait4(proc.pid, 0)
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, usage.ru_utime + usage.ru_stime)
        err = proc.stderr.read().decode()
        proc.stderr.close()
        if os.waitstatus_to_exitcode(raw) != 0:
            sys.exit(f"{' '.join(args)}: {err}")
        rss = max(rss, int(err.split()[-1]) * 1024 if timed else usage.ru_maxrss * 1024)
    return wall, cpu, rss


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    cli, library = sys.argv[1], sys.argv[2]
    folder = sys.argv[3] if len(sys.argv) > 3 else "."
    os.environ["FIBRATION_LIBRARY"] = library
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                    "bindings", "python"))
    import fibration

    n_arcs = int(os.environ.get("FIB_BENCH_GRAPH_ARCS", "10000000"))
    n_nodes = max(1, n_arcs // 10)
    path = os.path.join(folder, "bench_graph_file.csv")
    prefix = os.environ.get("FIB_BENCH_GRAPH_PREFIX", "")
    write_edge_list(path, n_arcs, n_nodes, prefix)
    size = os.path.getsize(path)
    try:
        subprocess.run(["wc", "-l", path], stdout=subprocess.DEVNULL, check=True)
        wc, wc_cpu, _ = run(["wc", "-l", path])
        graphs = []
        read, read_cpu = best_of(lambda: graphs.append(fibration.Graph.read_edgelist(path)))
        graph = graphs[-1]
        del graphs[:]
        refine, refine_cpu = best_of(graph.color)
        del graph
        quiet = run([cli, "graph", "-q", path])
        table = run([cli, "graph", path])
        baseline = run([cli, "--version"])[2]
    finally:
        os.remove(path)
    mb = size / 1e6
    named = f" named {prefix}0 .. {prefix}{n_nodes - 1}" if prefix else ""
    print(f"fibration graph on {n_arcs} random arcs over {n_nodes} nodes{named} ({mb:.1f} MB "
          f"CSV); best of {RUNS} runs, page cache warm; wall and CPU (user + system) "
          f"seconds: on a loaded host the CPU time is the program's own")
    print(f"  {'':<14} {'wall s':>8} {'CPU s':>8} {'MB/s CPU':>9} {'/ refine':>9} "
          f"{'RSS MB':>8} {'bytes/arc':>10}")
    print(f"  {'wc -l':<14} {wc:8.3f} {wc_cpu:8.3f} {mb / max(wc_cpu, 1e-3):9.0f}")
    print(f"  {'read':<14} {read:8.3f} {read_cpu:8.3f} {mb / read_cpu:9.0f}   "
          f"(fib_graph_read_edgelist)")
    print(f"  {'refine':<14} {refine:8.3f} {refine_cpu:8.3f} {'':>9} {1:9.2f}   "
          f"(fib_color, graph in memory)")
    for name, (wall, cpu, rss) in (("graph -q", quiet), ("graph (table)", table)):
        print(f"  {name:<14} {wall:8.3f} {cpu:8.3f} {'':>9} {cpu / refine_cpu:9.2f} "
              f"{rss / 1e6:8.1f} {rss / n_arcs:10.1f}")
    print(f"  (peak RSS of `fibration --version`: {baseline / 1e6:.1f} MB; / refine "
          f"divides CPU times)")


if __name__ == "__main__":
    main()
