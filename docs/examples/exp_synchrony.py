"""Experiment 5 (seed Fig. 4a): class-conditional synchrony clusters of a
trained MLP and how they relate to fibers.

A 784-128-128-10 ReLU MLP is trained on Fashion-MNIST (SGD, momentum 0.9,
lr 0.05, batch 64), with snapshots early, in the middle and at the end of
training. For each snapshot and for each of three classes, the activity of the
last hidden layer on 500 test images of that class gives a unit x unit
Pearson correlation matrix (units that are constant on those images, dead ones
included, have no correlation; they are one extra cluster). Synchrony
clusters: average-linkage clustering (written here, no scipy) of 1 - correlation, cut at 0.1
(correlation >= 0.9 on average). The same is done on 2,000 test images of all
classes.

Fibers of the same layer with the library: exact (FIB_TOL_EXACT) and with a
per-layer FIB_TOL_ABS eps = c x the std of the layer's weights, c = 2 and 4
(as in exp_emergence.py), and FIB_TOL_COSINE at 0.5 (the seed authors'
criterion) when the library has it. For each class and each fiber colouring the CSV
reports: the number of clusters and of fibers, and how many non-trivial fibers
lie inside one cluster ("fibers are a refinement of the class-conditional
clusters", the seed's claim); the same for a random partition with the same
class sizes as a control. Also a lifted network (exact fibers planted by
copying units), in which the claim must hold exactly.

Machine-dependent: every count (float32 training: the BLAS, the CPU's
kernels, the thread count), and whether the lifted network's planted fibers
stay exact (see exp_emergence.py). --seeds N gives the means and 95%
intervals over seeds (seed_runs.py).

    /usr/bin/python3 docs/examples/exp_synchrony.py [--quick] [--out DIR]
"""

import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "bindings", "python"))

import fashion_data as fd  # noqa: E402
import seed_runs  # noqa: E402
from exp_emergence import colour, cosine_available, lifted_mlp, mlp  # noqa: E402

CLASSES = (1, 7, 8)           # Trouser, Sneaker, Bag
CUT = 0.1                     # 1 - correlation
FIBER_TOLS = (("exact", 0.0), ("rel2", 2.0), ("rel4", 4.0), ("cos0.5", "cos", 0.5))


def last_hidden(model, x):
    with torch.no_grad():
        h = x.flatten(1)
        for m in list(model)[1:-1]:
            h = m(h)
    return h.double().numpy()


def average_linkage(d, cut):
    """Average-linkage agglomerative clustering of the distance matrix d:
    (labels 1.. of the clusters at distance `cut`, dendrogram leaf order)."""
    n = len(d)
    dist = d.astype(float).copy()
    np.fill_diagonal(dist, np.inf)
    members = {i: [i] for i in range(n)}
    labels = None
    while len(members) > 1:
        a, b = np.unravel_index(np.argmin(dist), dist.shape)
        if labels is None and dist[a, b] > cut:
            labels = np.zeros(n, dtype=np.int64)
            for k, m in enumerate(members.values()):
                labels[m] = k + 1
        na, nb = len(members[a]), len(members[b])
        merged = (na * dist[a] + nb * dist[b]) / (na + nb)
        dist[a], dist[:, a] = merged, merged
        dist[a, a] = np.inf
        dist[b], dist[:, b] = np.inf, np.inf
        members[a] = members[a] + members.pop(b)
    if labels is None:
        labels = np.ones(n, dtype=np.int64)
    return labels, np.array(next(iter(members.values())))


def sync_clusters(h):
    """(labels, order, corr) for activity h (samples x units)."""
    std = h.std(0)
    live = np.flatnonzero(std > 1e-12)
    labels = np.zeros(h.shape[1], dtype=np.int64)       # 0: constant units
    corr = np.full((h.shape[1], h.shape[1]), np.nan)
    if len(live) >= 2:
        c = np.corrcoef(h[:, live].T)
        c = np.nan_to_num((c + c.T) / 2)
        corr[np.ix_(live, live)] = c
        sub_labels, leaves = average_linkage(np.clip(1 - c, 0, 2), CUT)
        labels[live] = sub_labels
        order = np.concatenate([live[leaves], np.flatnonzero(std <= 1e-12)])
    else:
        labels[live] = 1
        order = np.arange(h.shape[1])
    return labels, order, corr


def refinement(fibers, clusters, rng):
    """(non-trivial fibers, inside one cluster, same for a random partition with
    the fibers' class sizes)."""
    def count(f):
        total = inside = 0
        for c in np.unique(f):
            members = np.flatnonzero(f == c)
            if len(members) < 2:
                continue
            total += 1
            inside += len(np.unique(clusters[members])) == 1
        return total, inside
    total, inside = count(fibers)
    _, rand_inside = count(rng.permutation(fibers))
    return total, inside, rand_inside


def analyse(name, model, stage, step, data, rows, mats, rng):
    xte, yte = data[2], data[3]
    x = xte[:4]
    tols = [t for t in FIBER_TOLS if len(t) == 2 or cosine_available()]
    fibs = {t[0]: colour(model, x, t) for t in tols}
    layer = list(fibs["exact"])[-2]                    # last hidden layer
    sets = [("all", xte[:2000])] + [(fd.CLASSES[c], xte[yte == c][:500]) for c in CLASSES]
    for cname, xs in sets:
        labels, order, corr = sync_clusters(last_hidden(model, xs))
        if name == "mlp":
            mats[(stage, cname)] = corr[np.ix_(order, order)]
        for tol in fibs:
            fc = fibs[tol][layer][1]
            total, inside, rand_inside = refinement(fc, labels, rng)
            off = corr[~np.eye(len(corr), dtype=bool)]
            mean_abs = float(np.nanmean(np.abs(off))) if np.isfinite(off).any() else 0.0
            rows.append((name, stage, step, cname, tol, len(labels), len(np.unique(labels)),
                         len(np.unique(fc)), total, inside, rand_inside,
                         int((labels == 0).sum()), "%.4f" % mean_abs))


def plot(mats, stages, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = ["all"] + [fd.CLASSES[c] for c in CLASSES]
    fig, axes = plt.subplots(len(stages), len(cols), figsize=(3 * len(cols), 3 * len(stages)),
                             squeeze=False)
    for i, (stage, step) in enumerate(stages):
        for j, cname in enumerate(cols):
            ax = axes[i][j]
            im = ax.imshow(mats[(stage, cname)], vmin=-1, vmax=1, cmap="RdBu_r",
                           interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title("%s, step %d: %s" % (stage, step, cname), fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.6, label="correlation (white: units constant on these inputs)")
    fig.savefig(path, dpi=60)
    plt.close(fig)


def seed_figures(path):
    """One seed's figures for the summary over seeds: per network, snapshot
    and inputs, the synchrony clusters, the units constant on those inputs and
    the mean absolute correlation, and the paired changes (last snapshot
    minus first, one class minus all classes); per fiber colouring, the
    non-trivial fibers and the share of them inside one cluster, beside the
    random partition's."""
    rows = seed_runs.read_rows(path)
    out = []
    for r in rows:
        if r["fiber_tolerance"] == "exact":
            tag = "%s %s %s" % (r["model"], r["stage"], r["inputs"])
            out += [(tag + " clusters", int(r["sync_clusters"])),
                    (tag + " constant units", int(r["constant_units"])),
                    (tag + " mean abs correlation", float(r["mean_abs_correlation"]))]
    clusters = {(r["model"], r["stage"], r["inputs"]): r for r in rows
                if r["fiber_tolerance"] == "exact"}
    first, last = rows[0]["stage"], [r for r in rows if r["model"] == "mlp"][-1]["stage"]
    for what, col in (("clusters", "sync_clusters"), ("mean abs correlation",
                                                      "mean_abs_correlation")):
        out.append(("mlp %s minus %s all %s" % (last, first, what),
                    float(clusters[("mlp", last, "all")][col])
                    - float(clusters[("mlp", first, "all")][col])))
    for (model, stage, inputs), r in clusters.items():
        if inputs != "all":
            out.append(("%s %s %s minus all clusters" % (model, stage, inputs),
                        int(r["sync_clusters"]) - int(clusters[(model, stage, "all")]["sync_clusters"])))
    for r in rows:
        tag = "%s %s %s %s" % (r["model"], r["stage"], r["fiber_tolerance"], r["inputs"])
        n = int(r["nontrivial_fibers"])
        if r["inputs"] == "all":
            out += [("%s %s %s fibers" % (r["model"], r["stage"], r["fiber_tolerance"]),
                     int(r["fibers"])),
                    ("%s %s %s non-trivial fibers" % (r["model"], r["stage"],
                                                      r["fiber_tolerance"]), n)]
        if n:
            out += [(tag + " share of non-trivial fibers inside one cluster",
                     int(r["fibers_inside_one_cluster"]) / n),
                    (tag + " random partition's share inside one cluster",
                     int(r["random_inside_one_cluster"]) / n)]
    return out


def main(argv=None):
    args = fd.experiment_args(__doc__, argv)
    if args.seeds or args.summary:
        return seed_runs.over_seeds(args, argv, main, "synchrony", "synchrony.csv", seed_figures)
    t0 = time.time()
    if args.quick:
        data = fd.load(6000, 2000)
        stages = [("early", 20), ("middle", 100), ("end", 300)]
    else:
        data = fd.load()
        stages = [("early", 100), ("middle", 1000), ("end", 9000)]
    rows, mats = [], {}
    rng = np.random.default_rng(args.seed)
    for name, model in (("mlp", None), ("lifted", None)):
        torch.manual_seed(args.seed)
        model = mlp() if name == "mlp" else lifted_mlp(seed=args.seed)
        done = 0
        for stage, step in stages:
            fd.train(model, data[0], data[1], step - done, lr=0.05, batch=64,
                     seed=args.seed + step)
            done = step
            analyse(name, model, stage, step, data, rows, mats, rng)
            acc = fd.accuracy(model, data[2], data[3])
            print("%s %s (step %d, accuracy %.4f): %s" % (
                name, stage, step, acc, "; ".join(
                    "%s %d clusters" % (r[3], r[6]) for r in rows
                    if r[0] == name and r[1] == stage and r[4] == "exact")))
    header = ("model,stage,step,inputs,fiber_tolerance,units,sync_clusters,fibers,"
              "nontrivial_fibers,fibers_inside_one_cluster,random_inside_one_cluster,"
              "constant_units,mean_abs_correlation")
    csv = os.path.join(args.out, "synchrony.csv")
    with open(csv, "w") as fh:
        fh.write(header + "\n")
        for r in rows:
            fh.write(",".join(str(v) for v in r) + "\n")
    plot(mats, stages, os.path.join(args.out, "synchrony.png"))
    print("\nfibers inside one synchrony cluster (non-trivial fibers; random control):")
    for r in rows:
        if r[4] != "exact" or r[0] == "lifted":
            print("  %-6s %-6s %-10s %-5s clusters %3d fibers %3d: %d/%d inside (random %d)"
                  % (r[0], r[1], r[3], r[4], r[6], r[7], r[9], r[8], r[10]))
    print("wrote %s in %.0f s" % (csv, time.time() - t0))


if __name__ == "__main__":
    main()
