"""The budget's knobs over training seeds: the protocol of docs/compression.md
("Merging inputs", "The correction in C", "Over training seeds").

    python3 docs/examples/budget_seeds.py lenet [--input-sensitivity 1,2,3]
    python3 docs/examples/budget_seeds.py mlp --c-correction
    python3 docs/examples/budget_seeds.py mlp --c-correction --ridges 1e-10 --versus c
    python3 docs/examples/budget_seeds.py lenet --evaluate test

By default the networks are trained on the first 50,000 training images and
evaluated on the last 10,000 (the training split: knobs are chosen there,
never on the test set). `--evaluate test` trains on all 60,000 and reads the
test set, for a report after every knob is fixed. LeNet-300-100 gets the
frontier's SGD recipe, the MLP one epoch of Adam (compression_frontier.train;
its cache, FIB_FRONTIER_CACHE, is shared). Rows: network, seed, baseline,
variant, budget, accuracy, input classes, layer widths; then the means.

`--csv PATH` appends each finished seed's rows to PATH (a seed whose rows of
every variant asked for are already there is not run again, so a series
resumes, and seeds can be added later) and writes PATH's summary beside it,
PATH without .csv + _summary.csv: per variant and budget (and the baseline)
the mean over every seed in PATH, the half-width of its 95% Student
t-interval, min and max, and the variant minus `--versus` (default
`python`; `baseline`: the uncompressed network) paired by seed, with its
interval.

Variants: `python`: fibration.torch.compress(budget=) with merge_inputs and
the given input_sensitivity (the library's default when not given);
`--c-correction` adds `c` (fib_compress_to_budget with its own correction,
synthetic_scale, rebuilt as it is) and `c-plain` (no correction). `python`
runs that C correction too, so with the default input_sensitivity `c` is
the same model; the numpy correction (_budget.synthetic_refit) is now only
the tests' reference and that of the stages below.
`--ridges 1e-10,...` (with `--c-correction`) adds `c ridge=1e-10`, ...: `c`
with that ridge (fib_budget_options.synthetic_ridge; `c` has the library's
default, 1e-3; 1e-10 is in effect none).
`--stages` adds the correction's stages on the same C classes (merged
inputs, no C correction): `refit` (refit_chain alone), `first-consumer`
(the numpy correction of the first merge's consumer only, refit_chain
after it) and `every-consumer` (the numpy correction of every consumer,
_budget.synthetic_refit), each from the same synthetic draw;
`--representatives` adds, before them, `representatives` (the C base
rebuilt as it is, its own least-squares representatives: what `refit`
starts from); `--unmerged-inputs` adds `unmerged-inputs` (compress(budget=)
with merge_inputs=False) and, with the stages, each stage on classes
without merged inputs too (`refit unmerged-inputs`, ...). `--powers
0.5,1,...` adds compress(budget=) at each sensitivity_power, with its
correction (`p=0.5`) and without (`p=0.5 refit`: refit_chain alone).
`--checks` adds the correction's checks (check_runs): the C correction at
absolute input scales (`sigma=0.15`, ...), and on the same C classes the
refit alone (`refit`), the numpy correction on N(mu, sigma^2 I)
(`mean-inputs`), least squares on the first 5,000 training images of the
fitting part (`oracle first-consumer`, `oracle every-consumer`), a
data-based bias correction (`data bias`), the plan's classes at one merge
site alone (`only inputs`, `only layer 1`, `only layer 2`, corrected and
with ` refit`), the first layer clustered on [W, b / sigma] (`b/sigma`)
and the power chosen by the output error on held-out synthetic inputs
(`power chosen`). `--chosen-powers PATH` runs only that choice and appends
which power it chose at each seed and budget to PATH, with its model's
accuracy (the `power chosen` row's).
"""

import argparse
import copy
import csv
import os
import sys

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "bindings", "python"))

import compression_frontier as cf  # noqa: E402
import fashion_data  # noqa: E402
import fibration.torch as ft  # noqa: E402
from fibration.torch import _budget  # noqa: E402
from fibration.torch._modules import InputClassMean  # noqa: E402
from fibration.torch._rebuild import rebuild  # noqa: E402
from exp_continual import t_interval  # noqa: E402

BUDGETS = (0.10, 0.17, 0.30)
STAGES = ("refit", "first-consumer", "every-consumer")
UNMERGED = " unmerged-inputs"   # a stage's name suffix on classes without merged inputs
REFIT_ONLY = " refit"           # a power's name suffix without the synthetic correction
RIDGE = "c ridge=%g"            # the C correction at another ridge
# the numpy correction of every consumer, before --stages swaps in its own
REFERENCE_REFIT = _budget.synthetic_refit


def accuracy(module, x, y):
    module.eval()
    with torch.no_grad():
        return float((module(x).argmax(1) == y).double().mean() * 100)


def shape(module):
    inputs = [m.n_classes for m in module.modules() if isinstance(m, InputClassMean)]
    widths = [m.out_features for m in module.modules() if isinstance(m, nn.Linear)]
    return (inputs[0] if inputs else "-"), widths


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("network", choices=["lenet", "mlp"])
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--input-sensitivity", default="",
                    help="comma-separated factors to compare (default: the library's)")
    ap.add_argument("--c-correction", action="store_true")
    ap.add_argument("--ridges", default="",
                    help="with --c-correction: comma-separated ridges of the C correction, "
                         "variants c ridge=R")
    ap.add_argument("--stages", action="store_true",
                    help="add refit, first-consumer and every-consumer (numpy)")
    ap.add_argument("--representatives", action="store_true",
                    help="add the C base rebuilt as it is (no refit, no correction)")
    ap.add_argument("--unmerged-inputs", action="store_true",
                    help="add compress(budget=) without merged inputs")
    ap.add_argument("--powers", default="",
                    help="comma-separated sensitivity powers: p=P (corrected) and p=P refit")
    ap.add_argument("--checks", action="store_true",
                    help="add the correction's checks (check_variants)")
    ap.add_argument("--chosen-powers", metavar="PATH",
                    help="only the power the held-out synthetic error chooses (--checks' "
                         "`power chosen`): a row per seed and budget appended to PATH")
    ap.add_argument("--evaluate", choices=["split", "test"], default="split")
    ap.add_argument("--csv", metavar="PATH",
                    help="append every seed's rows here (resumes) and write PATH's summary")
    ap.add_argument("--versus", default="python", metavar="VARIANT",
                    help="the summary's paired differences are to this variant, or to "
                         "the uncompressed network: baseline (default: python); several, "
                         "comma-separated: a row for each")
    args = ap.parse_args(argv)
    if ridges_of(args) and not args.c_correction:
        ap.error("--ridges adds variants of the C correction: give --c-correction too")
    torch.set_num_threads(1)
    x_tr, y_tr, x_te, y_te = fashion_data.load(60000, 10000)
    x_tr, x_te = x_tr.reshape(len(x_tr), -1), x_te.reshape(len(x_te), -1)
    if args.evaluate == "split":
        x_fit, y_fit, x_ev, y_ev, tag = x_tr[:50000], y_tr[:50000], x_tr[50000:], y_tr[50000:], "split-"
    else:
        x_fit, y_fit, x_ev, y_ev, tag = x_tr, y_tr, x_te, y_te, "full-"
    factors = [float(f) for f in args.input_sensitivity.split(",") if f] or [None]
    means = {}
    variants = requested_variants(args)
    done = seeds_done(args.csv, args.network, args.evaluate, variants) if args.csv else set()
    for seed in (int(s) for s in args.seeds.split(",")):
        if seed in done:
            print("%s seed %d: rows already in %s" % (args.network, seed, args.csv), flush=True)
            continue
        rows = []
        if args.network == "lenet":
            model = cf.train(tag + "lenet", [784, 300, 100, 10], x_fit, y_fit, False, epochs=25,
                             seed=seed, recipe="sgd")
        else:
            model = cf.train(tag + "mlp", [784, 500, 500, 500, 10], x_fit, y_fit, False,
                             epochs=1, seed=seed)
        example = x_fit[:256]
        base_acc = accuracy(model, x_ev, y_ev)
        net = ft.trace(model, example)
        if args.chosen_powers:
            append_chosen_powers(args, seed, model, example, base_acc, x_ev, y_ev)
            continue
        for budget in BUDGETS:
            runs = []
            for factor in factors:
                small, _ = _budget.compress_to_budget(model, example, budget,
                                                      input_sensitivity=factor)
                runs.append(("python" if factor is None else "python s=%g" % factor, small))
            if args.c_correction:
                scale = _budget._input_scale(example)
                c_runs = [("c", scale, None), ("c-plain", 0.0, None)]
                c_runs += [(RIDGE % ridge, scale, ridge) for ridge in ridges_of(args)]
                for name, sigma, ridge in c_runs:
                    base, info = _budget.base_to_budget(net.graph, budget, merge_inputs=True,
                                                        synthetic_scale=sigma,
                                                        synthetic_ridge=ridge)
                    if ridge is not None and not info["corrected"]:
                        raise RuntimeError("budget_seeds: the C correction does not apply")
                    runs.append((name, rebuild(net, base, "Budget")))
            if stages_of(args):
                scale = _budget._input_scale(example)
                for merge in (True, False) if args.unmerged_inputs else (True,):
                    base, _ = _budget.base_to_budget(net.graph, budget, merge_inputs=merge)
                    runs += [(stage if merge else stage + UNMERGED,
                              corrected_by_stage(net, model, base, stage, scale))
                             for stage in stages_of(args)]
            if args.unmerged_inputs:
                small, _ = _budget.compress_to_budget(model, example, budget, merge_inputs=False)
                runs.append(("unmerged-inputs", small))
            if args.checks:
                runs += check_runs(net, model, example, budget, x_fit,
                                   log=lambda text: print("%s seed %d %s" % (args.network, seed,
                                                                             text), flush=True))
            for power in powers_of(args):
                for synthetic in (True, False):
                    small, _ = _budget.compress_to_budget(model, example, budget,
                                                          sensitivity_power=power,
                                                          synthetic=synthetic)
                    runs.append(("p=%g%s" % (power, "" if synthetic else REFIT_ONLY), small))
            for name, small in dict(runs).items():   # a variant asked for twice runs once
                acc = accuracy(small, x_ev, y_ev)
                means.setdefault((name, budget), []).append(acc)
                inputs, widths = shape(small)
                rows.append((args.network, args.evaluate, seed, "%.2f" % base_acc, name,
                             "%.2f" % budget, "%.2f" % acc, inputs,
                             " ".join(map(str, widths))))
                print("%s seed %d baseline %.2f  %-12s %.2f: %.2f  inputs %s  widths %s"
                      % (args.network, seed, base_acc, name, budget, acc, inputs, widths),
                      flush=True)
        if args.csv:
            append_rows(args.csv, rows)
    if args.csv:
        summarise(args.csv, args.versus)
        return
    print("means over seeds (%s):" % args.evaluate)
    for (name, budget), accs in sorted(means.items()):
        print("  %-12s %.2f: %.2f  (%s)" % (name, budget, float(np.mean(accs)),
                                           " ".join("%.2f" % a for a in accs)))


def requested_variants(args):
    """The variants' names, in the order their rows are written."""
    factors = [float(f) for f in args.input_sensitivity.split(",") if f] or [None]
    variants = ["python" if f is None else "python s=%g" % f for f in factors]
    if args.c_correction:
        variants += ["c", "c-plain"] + [RIDGE % ridge for ridge in ridges_of(args)]
    variants += list(stages_of(args))
    if args.unmerged_inputs:
        variants += [stage + UNMERGED for stage in stages_of(args)] + ["unmerged-inputs"]
    if getattr(args, "checks", False):
        variants += check_variants()
    for power in powers_of(args):
        variants += ["p=%g" % power, "p=%g%s" % (power, REFIT_ONLY)]
    return list(dict.fromkeys(variants))


def stages_of(args):
    """The correction's stages asked for, in the order their rows are written."""
    return (("representatives",) if getattr(args, "representatives", False) else ()) + \
        (STAGES if args.stages else ())


def ridges_of(args):
    return [float(r) for r in getattr(args, "ridges", "").split(",") if r]


def powers_of(args):
    return [float(p) for p in getattr(args, "powers", "").split(",") if p]


def first_consumer_refit(layers, labels, scale, n_samples=8192, seed=0, slopes=None,
                         ridge=1e-3, input_labels=None, inputs=None):
    """_budget.synthetic_refit's correction of the first merge's consumer
    only: the first hidden layer merged and its consumer refitted on the
    synthetic inputs (or on `inputs`), every later layer by refit_chain
    from that consumer."""
    if len(layers) < 3:
        return REFERENCE_REFIT(layers, labels, scale, n_samples, seed, slopes, ridge,
                               input_labels, inputs)
    head = REFERENCE_REFIT(layers[:2], labels[:1], scale, n_samples, seed,
                           None if slopes is None else slopes[:1], ridge, input_labels, inputs)
    return head[:1] + _budget.refit_chain(head[1:] + list(layers[2:]), labels[1:])


def corrected_by_stage(net, model, base, stage, scale):
    """`base` (C classes, no C correction) rebuilt and corrected up to
    `stage` (one of STAGES) in numpy; the synthetic draw is
    synthetic_refit's default seed for both correcting stages.
    `representatives` is the rebuilt base itself."""
    small = rebuild(net, base, "Budget")
    if stage == "representatives":
        return small
    _budget.synthetic_refit = first_consumer_refit if stage == "first-consumer" \
        else REFERENCE_REFIT
    try:
        done = _budget._refit_model(net, model, base, small,
                                    None if stage == "refit" else scale)
    finally:
        _budget.synthetic_refit = REFERENCE_REFIT
    if not done:
        raise RuntimeError("budget_seeds: %s does not apply to this network" % stage)
    return small


# --checks: the correction's checks (docs/compression.md, "The correction's checks")
CHECK_SIGMAS = (0.15, 0.3, 0.5, 1.0)   # absolute scales of the synthetic inputs
CHECK_POWERS = (1.0, 1.5, 2.0)         # the powers the held-out synthetic error chooses from
ORACLE_IMAGES = 5000                   # the first training images: the data-based fits' rows
ONLY = ("inputs", "layer 1", "layer 2")   # the merge sites kept one at a time
RESCALED = "b/sigma"                   # the first layer clustered on [W, b / sigma]


def check_variants():
    """The variants of --checks, in the order their rows are written."""
    return (["sigma=%g" % s for s in CHECK_SIGMAS]
            + ["refit", "mean-inputs", "oracle first-consumer", "oracle every-consumer",
               "data bias"]
            + ["only %s%s" % (site, suffix) for site in ONLY for suffix in ("", REFIT_ONLY)]
            + ["only %s%s%s" % (site, suffix, UNMERGED) for site in ONLY[1:]
               for suffix in ("", REFIT_ONLY)]
            + [RESCALED, "power chosen"])


def check_runs(net, model, example, budget, fit_images, log=print):
    """[(variant, module)] of --checks at `budget` (check_variants' order):
    the C correction at every absolute scale of CHECK_SIGMAS; on the same C
    classes (merged inputs, no C correction) the refit alone, the numpy
    correction on N(mu, sigma^2 I) (the example's mean and standard
    deviation; the default draw shifted by mu), the least squares of the
    first consumer / of every consumer on the first ORACLE_IMAGES rows of
    `fit_images` (data: an oracle), only the consumers' biases moved on those
    rows, and the plan's classes at one merge site alone, every other layer
    unmerged, corrected and refit alone, and likewise for the hidden layers
    of the plan without merged inputs; the first layer clustered on
    [W, b / sigma]; the power of CHECK_POWERS whose outputs on held-out
    synthetic inputs stay closest to the original's (logged)."""
    scale = _budget._input_scale(example)
    mean = float(example.double().mean())
    log("example input at %.2f: sigma %.3f, mean %.3f" % (budget, scale, mean))
    runs = []
    for sigma in CHECK_SIGMAS:
        base, _ = _budget._module_base_to_budget(net, budget, merge_inputs=True,
                                                 synthetic_scale=sigma)
        runs.append(("sigma=%g" % sigma, rebuild(net, base, "Budget")))
    base, _ = _budget._module_base_to_budget(net, budget, merge_inputs=True)
    runs.append(("refit", corrected_by_stage(net, model, base, "refit", scale)))
    _, layers, labels, input_labels, slopes = _budget.dense_chain(net, model, base)
    data = fit_images[:ORACLE_IMAGES].double().numpy()
    data = data.reshape(len(data), -1)
    draw = scale * np.random.default_rng(0).standard_normal((8192, layers[0][0].shape[1]))
    knobs = dict(slopes=slopes, input_labels=input_labels)
    chains = [("mean-inputs",
               REFERENCE_REFIT(layers, labels, scale, inputs=draw + mean, **knobs), input_labels),
              ("oracle first-consumer",
               first_consumer_refit(layers, labels, scale, inputs=data, **knobs), input_labels),
              ("oracle every-consumer",
               REFERENCE_REFIT(layers, labels, scale, inputs=data, **knobs), input_labels)]
    _budget._least_squares = bias_only_fit
    try:
        chains.append(("data bias", REFERENCE_REFIT(layers, labels, scale, inputs=data, **knobs),
                       input_labels))
    finally:
        _budget._least_squares = LEAST_SQUARES
    plain, _ = _budget._module_base_to_budget(net, budget, merge_inputs=False)
    plan_labels = _budget.dense_chain(net, model, plain)[2]
    for sites, plan, suffix in ((ONLY, labels, ""), (ONLY[1:], plan_labels, UNMERGED)):
        for site in sites:
            kept, kept_inputs = only_one_merge(plan, input_labels, site)
            chains += [("only " + site + suffix,
                        REFERENCE_REFIT(layers, kept, scale, slopes=slopes,
                                        input_labels=kept_inputs), kept_inputs),
                       ("only " + site + REFIT_ONLY + suffix,
                        _budget.refit_chain(layers, kept, kept_inputs), kept_inputs)]
    runs += [(name, chain_module(chain, inputs, slopes)) for name, chain, inputs in chains]
    runs.append((RESCALED, first_layer_rescaled(model, example, budget, scale)))
    power, small = power_by_synthetic_error(model, example, budget, scale)
    log("power chosen at %.2f by the held-out synthetic error: %g" % (budget, power))
    runs.append(("power chosen", small))
    return runs


LEAST_SQUARES = _budget._least_squares


def bias_only_fit(h, z, ridge=1e-3, prior=None):
    """In place of _budget._least_squares for "data bias": the consumer's
    weights stay refit_chain's (`prior`), its bias moves by the mean
    residual (a mean correction)."""
    w, b = prior
    return w, b + (z - h @ w.T - b).mean(0)


def only_one_merge(labels, input_labels, site):
    """(hidden labels, input labels) with the plan's classes at `site`
    alone ("inputs" or "layer k", the k-th hidden layer), every other layer
    unmerged (one class a unit) and the inputs unmerged unless `site`."""
    kept = [np.arange(len(lab)) for lab in labels]
    if site == "inputs":
        return kept, input_labels
    k = int(site.split()[1]) - 1
    if k < len(labels):
        kept[k] = labels[k]
    return kept, None


def chain_module(layers, input_labels=None, slopes=None):
    """nn.Sequential of a numpy chain [(W, b)] (the refits'), reading the
    means of the input classes when `input_labels` is given; hidden
    activations by their negative-side slope (0: ReLU)."""
    mods = [InputClassMean(input_labels)] if input_labels is not None else []
    for i, (w, b) in enumerate(layers):
        linear = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(w))
            linear.bias.copy_(torch.as_tensor(b))
        mods.append(linear)
        if i < len(layers) - 1:
            slope = 0.0 if slopes is None else slopes[i]
            mods.append(nn.ReLU() if slope == 0 else nn.LeakyReLU(slope))
    return nn.Sequential(*mods)


class InputScale(nn.Module):
    """x times a constant factor."""

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def first_layer_rescaled(model, example, budget, scale):
    """compress(budget=) of the same function written with inputs x / sigma
    and the first Linear's weights times sigma, read through x / sigma: its
    first layer is clustered on [sigma W, b], i.e. [W, b / sigma] up to a
    factor (the allocation and the input merges see the rescaled weights
    too); the correction's scale becomes 1, the same inputs as sigma."""
    rescaled = copy.deepcopy(model)
    first = next(m for m in rescaled.modules() if isinstance(m, nn.Linear))
    with torch.no_grad():
        first.weight.mul_(scale)
    small, _ = _budget.compress_to_budget(rescaled, example / scale, budget)
    return nn.Sequential(InputScale(1.0 / scale), small)


def power_by_synthetic_error(model, example, budget, scale, n_samples=8192, seed=1):
    """(power, compressed): compress(budget=) at the power of CHECK_POWERS
    whose outputs on held-out synthetic inputs (N(0, sigma^2 I), a draw of
    its own) are closest (MSE) to the original's."""
    z = scale * torch.randn((n_samples,) + tuple(example.shape[1:]), dtype=example.dtype,
                            generator=torch.Generator().manual_seed(seed))
    reference = _budget._outputs(model, z)
    best = None
    for power in CHECK_POWERS:
        small, _ = _budget.compress_to_budget(model, example, budget, sensitivity_power=power)
        err = float(((_budget._outputs(small, z) - reference) ** 2).mean())
        if best is None or err < best[0]:
            best = (err, power, small)
    return best[1], best[2]


COLUMNS = ("network", "evaluate", "seed", "baseline", "variant", "budget", "accuracy",
           "input_classes", "widths")


CHOSEN_POWER_COLUMNS = ("network", "evaluate", "seed", "baseline", "budget", "power",
                        "accuracy")


def append_chosen_powers(args, seed, model, example, base_acc, x_ev, y_ev):
    """--chosen-powers: the power power_by_synthetic_error picks at every
    budget, with the accuracy of its model (the `power chosen` rows of
    --checks), appended to args.chosen_powers."""
    scale = _budget._input_scale(example)
    rows = []
    for budget in BUDGETS:
        power, small = power_by_synthetic_error(model, example, budget, scale)
        acc = accuracy(small, x_ev, y_ev)
        rows.append((args.network, args.evaluate, seed, "%.2f" % base_acc, "%.2f" % budget,
                     "%g" % power, "%.2f" % acc))
        print("%s seed %d %.2f: power %g chosen, %.2f" % (args.network, seed, budget, power, acc),
              flush=True)
    append_rows(args.chosen_powers, rows, CHOSEN_POWER_COLUMNS)


def read_csv(path):
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return list(csv.DictReader(fh))


def seeds_done(path, network, evaluate, variants):
    """Seeds of `network` read with `evaluate` whose rows hold every variant."""
    have = {}
    for r in read_csv(path):
        if r["network"] == network and r["evaluate"] == evaluate:
            have.setdefault(int(r["seed"]), set()).add(r["variant"])
    return {seed for seed, names in have.items() if set(variants) <= names}


def append_rows(path, rows, columns=COLUMNS):
    new = not os.path.exists(path)
    with open(path, "a", newline="") as fh:
        w = csv.writer(fh)
        if new:
            w.writerow(columns)
        w.writerows(rows)


def summarise(path, versus="python"):
    """Mean, 95% t half-width, min and max over the seeds in `path`, per
    network, evaluation, variant and budget, and of the baselines; and each
    variant minus `versus` at the same budget ("baseline": minus the
    uncompressed network), paired by seed (mean and 95% t half-width over
    the seeds both have; empty where there is no such pair); a stage on
    classes without merged inputs (`refit unmerged-inputs`, ...) is paired
    with `versus` on the same inputs when the CSV has it (`versus
    unmerged-inputs`), and a power without the correction (`p=1 refit`)
    with `versus refit` likewise; printed and written to <path without
    .csv>_summary.csv. `versus` may name several variants, comma-separated:
    a row is then written for every one of them a variant has a pair with
    (and always for the first)."""
    groups = {}
    baselines = {}
    for r in read_csv(path):
        key = (r["network"], r["evaluate"])
        baselines.setdefault(key, {})[int(r["seed"])] = float(r["baseline"])
        groups.setdefault(key + (r["variant"], r["budget"]), {})[int(r["seed"])] = \
            float(r["accuracy"])
    out = (path[:-4] if path.endswith(".csv") else path) + "_summary.csv"
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(("network", "evaluate", "variant", "budget", "seeds", "mean", "ci95",
                    "min", "max", "versus", "minus_versus", "ci95_minus_versus"))
        for key in sorted(baselines):
            groups[key + ("baseline", "1.00")] = baselines[key]
        for key in sorted(groups):
            by_seed = groups[key]
            values = [by_seed[s] for s in sorted(by_seed)]
            mean, half = t_interval(values)
            for n, reference in enumerate(versus.split(",")):
                ref = reference
                for suffix in (UNMERGED, REFIT_ONLY):
                    if key[2].endswith(suffix) and key[:2] + (reference + suffix, key[3]) in groups:
                        ref = reference + suffix
                other = (baselines[key[:2]] if ref == "baseline"
                         else groups.get(key[:2] + (ref, key[3]), {}))
                paired = sorted(set(by_seed) & set(other))
                diff = ("", "", "")
                if key[2] not in (ref, "baseline") and paired:
                    d, dh = t_interval([by_seed[s] - other[s] for s in paired])
                    diff = (ref, "%.2f" % d, "%.2f" % dh)
                elif n:
                    continue
                w.writerow(key + (" ".join(map(str, sorted(by_seed))), "%.2f" % mean,
                                  "%.2f" % half, "%.2f" % min(values), "%.2f" % max(values))
                           + diff)
                print("%-5s %-5s %-12s %s: %.2f +- %.2f (seeds %s; %.2f-%.2f)%s"
                      % (key + (mean, half, " ".join(map(str, sorted(by_seed))), min(values),
                                max(values), "  minus %s: %s +- %s" % diff if diff[0] else "")))
    print("summary: %s" % out)


if __name__ == "__main__":
    main()
