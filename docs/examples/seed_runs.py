"""Several seeds of one experiment script, and their summary: the means over
seeds with 95% Student t-intervals.

The experiment scripts (exp_emergence.py, exp_lstm.py, exp_transformer.py,
exp_synchrony.py) take `--seeds N`: they run seeds S .. S+N-1 (S = --seed),
one after the other in this process, each into its own folder
<out>/<stem>_seeds/seed<S>/ (its CSV and PNG, as a single run writes them),
skipping a seed whose CSV is already there, so that an interrupted series
resumes. `--summary` starts no run and summarises the seeds already there.

The summary reduces each seed's CSV to named figures (the script's
`seed_figures(path)`: the numbers its docs table reads, and paired
differences computed within a seed, such as "compressed minus the control of
its width") and writes into <out>:
  <stem>_seeds.csv    seed,figure,value: every seed's figures
  <stem>_summary.csv  figure,seeds,mean,ci95,min,max: the mean over seeds and
                      the half-width of its 95% Student t-interval; a paired
                      difference's interval excludes 0 when |mean| > ci95
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from exp_continual import t_interval  # noqa: E402


def seed_folder(out, stem, seed):
    return os.path.join(out, "%s_seeds" % stem, "seed%d" % seed)


def finished_seeds(out, stem, csv_name):
    folder = os.path.join(out, "%s_seeds" % stem)
    if not os.path.isdir(folder):
        return []
    seeds = [int(name[4:]) for name in os.listdir(folder)
             if name.startswith("seed") and name[4:].isdigit()]
    return sorted(s for s in seeds if os.path.exists(os.path.join(folder, "seed%d" % s, csv_name)))


def argv_for_seed(argv, seed, folder):
    """The script's own options with --seeds/--summary/--seed/--out replaced:
    one run of `seed` into `folder`."""
    args = list(sys.argv[1:] if argv is None else argv)
    kept, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if name in ("--seeds", "--seed", "--out"):
            skip = "=" not in a
            continue
        if name == "--summary":
            continue
        kept.append(a)
    return kept + ["--seed", str(seed), "--out", folder]


def over_seeds(args, argv, main, stem, csv_name, seed_figures):
    """Runs the missing seeds args.seed .. args.seed + args.seeds - 1 (none with
    args.summary), then summarises every finished seed."""
    if not args.summary:
        for seed in range(args.seed, args.seed + args.seeds):
            folder = seed_folder(args.out, stem, seed)
            if os.path.exists(os.path.join(folder, csv_name)):
                print("seed %d: %s already there" % (seed, csv_name), flush=True)
                continue
            print("seed %d: running into %s" % (seed, folder), flush=True)
            main(argv_for_seed(argv, seed, folder))
    seeds = finished_seeds(args.out, stem, csv_name)
    if not seeds:
        raise SystemExit("no finished seed in %s" % seed_folder(args.out, stem, 0))
    summarise(args.out, stem, {s: seed_figures(os.path.join(seed_folder(args.out, stem, s),
                                                            csv_name)) for s in seeds})


def summarise(out, stem, figures_by_seed):
    """figures_by_seed: {seed: [(figure, value), ...]}; writes the two CSVs."""
    seeds = sorted(figures_by_seed)
    names = list(dict.fromkeys(name for s in seeds for name, _ in figures_by_seed[s]))
    values = {s: dict(figures_by_seed[s]) for s in seeds}
    with open(os.path.join(out, stem + "_seeds.csv"), "w") as fh:
        fh.write("seed,figure,value\n")
        for s in seeds:
            for name, value in figures_by_seed[s]:
                fh.write("%d,%s,%.6g\n" % (s, quote(name), value))
    path = os.path.join(out, stem + "_summary.csv")
    with open(path, "w") as fh:
        fh.write("figure,seeds,mean,ci95,min,max\n")
        for name in names:
            v = [values[s][name] for s in seeds if name in values[s]]
            mean, half = t_interval(v)
            fh.write("%s,%d,%.6g,%.6g,%.6g,%.6g\n" % (quote(name), len(v), mean, half,
                                                     min(v), max(v)))
    print("summary of seeds %s: %s" % (",".join(map(str, seeds)), path))


def quote(name):
    return '"%s"' % name if "," in name else name


def read_rows(path):
    """A script's CSV as dicts (comment lines, starting with #, skipped)."""
    import csv
    with open(path) as fh:
        return list(csv.DictReader(line for line in fh if not line.startswith("#")))
