"""Experiment 4 (seed Fig. 3g-h): compression of small character-level
Transformers with per-layer eps and retuning; loss versus parameters.

Text: the Vim help files, /usr/share/vim/vim90/doc/*.txt from the Debian
package vim-runtime (already on the machine; about 9.5 MB of English
technical prose), sorted by name, printable ASCII and newlines only; the first
90% of the first 2 MB for training, the last 10% for validation.

Model: next-character prediction from a 32-character window: character and
position embeddings (not counted, as in the seed's Fig. 3h), a pre-norm
nn.TransformerEncoder (4 heads, FFN 4 d, no dropout, no mask: only the last
position is read), then a linear head from the last position. Sizes d = 24,
32, 48, 64 with 2 layers. Adam lr 1e-3, batch 32.

Compression of the encoder + head (fibration.torch, fibers, FIB_TOL_ABS) with
a per-layer eps = c x the std of the layer's weights (set on each group of
the traced graph), for several c; every compressed model is retuned (Adam,
lr 5e-4, embeddings frozen) for a few hundred steps; the uncompressed model
gets the same extra steps (the baseline's loss is after them). Reported: validation loss (nats/char)
before and after retuning against the non-embedding parameter count, and
power laws L = a N^-alpha fitted to the baselines and to the most compressed
retuned model of each size.

Machine-dependent: every loss (float32, the BLAS and the thread count) and
the text (the vim90 help files of the installed vim-runtime). --seeds N
gives the means and 95% intervals over seeds (seed_runs.py).

    /usr/bin/python3 docs/examples/exp_transformer.py [--quick] [--out DIR]
"""

import glob
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "bindings", "python"))

import fashion_data as fd  # noqa: E402 (the shared experiment options)
import seed_runs  # noqa: E402
from fibration.torch import trace  # noqa: E402

TEXT = "/usr/share/vim/vim90/doc/*.txt"
CONTEXT = 32


def load_text(limit):
    parts = []
    size = 0
    for path in sorted(glob.glob(TEXT)):
        with open(path, "rb") as fh:
            data = fh.read()
        parts.append(data)
        size += len(data)
        if size >= limit:
            break
    raw = np.frombuffer(b"".join(parts)[:limit], np.uint8)
    keep = (raw == 10) | ((raw >= 32) & (raw < 127))
    raw = raw[keep]
    codes = np.where(raw == 10, 0, raw - 31).astype(np.int64)   # 0: newline, 1..95
    return torch.from_numpy(codes), 96


class Core(nn.Module):
    """What fibration compresses: encoder layers and the head."""

    def __init__(self, d, layers, vocab):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, vocab)

    def forward(self, h):
        return self.head(self.enc(h)[:, -1])


class CharModel(nn.Module):
    def __init__(self, d, layers, vocab):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(CONTEXT, d) * 0.02)
        self.core = Core(d, layers, vocab)

    def embed(self, idx):
        return self.tok(idx) + self.pos

    def forward(self, idx):
        return self.core(self.embed(idx))


def core_params(model):
    return sum(p.numel() for p in model.core.parameters())


def batch(data, n, generator):
    start = torch.randint(len(data) - CONTEXT - 1, (n,), generator=generator)
    idx = start[:, None] + torch.arange(CONTEXT + 1)
    chunk = data[idx]
    return chunk[:, :-1], chunk[:, -1]


def train(model, data, steps, lr, seed, params=None):
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(params if params is not None else model.parameters(), lr)
    model.train()
    for _ in range(steps):
        x, y = batch(data, 32, gen)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()


def evaluate(model, val):
    gen = torch.Generator().manual_seed(1234)
    losses = []
    with torch.no_grad():
        for _ in range(20):
            x, y = batch(val, 128, gen)
            losses.append(float(F.cross_entropy(model(x), y)))
    return float(np.mean(losses))


def compress_core(model, c):
    """Fibers of the core with eps = c x std of each layer's weights."""
    x = model.embed(torch.zeros(2, CONTEXT, dtype=torch.long)).detach()
    net = trace(model.core, x)
    for layer in net.layers:
        if layer.module is None or layer.kind in ("input", "sum", "norm", "last_step"):
            continue
        module = model.core.get_submodule(layer.module)
        weights = [p.detach().flatten() for p in module.parameters() if p.dim() >= 2]
        if weights:
            net.graph.set_eps(layer.group, c * float(torch.cat(weights).std()))
    coloring = net.graph.color("fibers", "abs", 0.0)
    small = net.compress(coloring, "CompressedCore")
    out = CharModel.__new__(CharModel)
    nn.Module.__init__(out)
    out.tok, out.pos, out.core = model.tok, model.pos, small
    out.embed = model.embed
    return out


def fit(n, loss):
    slope, intercept = np.polyfit(np.log(n), np.log(loss), 1)
    return -slope, float(np.exp(intercept))


def seed_figures(path):
    """One seed's figures for the summary over seeds: per width, the baseline's
    loss; per width and factor c, the parameter share and the loss before and
    after retuning, and after retuning minus the baseline; the two fitted
    exponents and their difference."""
    rows = seed_runs.read_rows(path)
    out = []
    base = {r["d_model"]: r for r in rows if r["run"] == "baseline"}
    for d, b in base.items():
        out.append(("d %s baseline params" % d, int(b["core_params"])))
        out.append(("d %s baseline loss" % d, float(b["val_loss_after_retune"])))
    for r in rows:
        if r["run"] != "compressed":
            continue
        b = base[r["d_model"]]
        tag = "d %s c %g" % (r["d_model"], float(r["c"]))
        out += [(tag + " params share", int(r["core_params"]) / int(b["core_params"])),
                (tag + " loss before retuning", float(r["val_loss_before_retune"])),
                (tag + " loss after retuning", float(r["val_loss_after_retune"])),
                (tag + " loss after retuning minus baseline",
                 float(r["val_loss_after_retune"]) - float(b["val_loss_after_retune"]))]
    with open(path) as fh:
        fit_line = [line for line in fh if line.startswith("# exponent")][0]
    a_base = float(fit_line.split("baseline ")[1].split(",")[0])
    a_comp = float(fit_line.split("most compressed ")[1])
    out += [("exponent baseline", a_base), ("exponent most compressed", a_comp),
            ("exponent most compressed minus baseline", a_comp - a_base)]
    return out


def main(argv=None):
    def extra(ap):
        ap.add_argument("--steps", type=int, default=2000,
                        help="training steps of every size (retuning: 3/20 of them); a value "
                             "other than 2000 is added to the output names "
                             "(transformer_1000steps.*)")
    args = fd.experiment_args(__doc__, argv, extra)
    name = ("transformer" if args.quick or args.steps == 2000
            else "transformer_%dsteps" % args.steps)
    if args.seeds or args.summary:
        return seed_runs.over_seeds(args, argv, main, name, name + ".csv", seed_figures)
    t0 = time.time()
    if args.quick:
        # c = 8 merges in every layer, so the quick run exercises a smaller base
        sizes, steps, retune, factors, limit = (16, 24), 150, 40, (2.0, 8.0), 200000
    else:
        sizes, factors, limit = (24, 32, 48, 64), (2.0, 4.0, 8.0), 2000000
        steps, retune = args.steps, args.steps * 3 // 20
    data, vocab = load_text(limit)
    split = int(0.9 * len(data))
    tr, val = data[:split], data[split:]
    rows = []
    for d in sizes:
        torch.manual_seed(args.seed)
        model = CharModel(d, 2, vocab)
        t = time.time()
        train(model, tr, steps, 1e-3, args.seed)
        loss = evaluate(model, val)
        n = core_params(model)
        # control: the uncompressed model trained for the retuning steps too
        control = CharModel(d, 2, vocab)
        control.load_state_dict(model.state_dict())
        train(control, tr, retune, 5e-4, args.seed + 1, params=control.core.parameters())
        retuned = evaluate(control, val)
        rows.append((d, "baseline", 0.0, n, loss, retuned))
        print("d=%d baseline: %d core params, val loss %.4f, %.4f after the retuning steps "
              "(%.0f s)" % (d, n, loss, retuned, time.time() - t), flush=True)
        for c in factors:
            small = compress_core(model, c)
            before = evaluate(small, val)
            # retune a copy of the compressed core (embeddings frozen)
            train(small, tr, retune, 5e-4, args.seed + 1, params=small.core.parameters())
            after = evaluate(small, val)
            rows.append((d, "compressed", c, core_params(small), before, after))
            print("  c=%.1f: %d params (%.1f%%), loss %.4f -> retuned %.4f" % (
                c, core_params(small), 100.0 * core_params(small) / n, before, after), flush=True)
    # fits
    base = [r for r in rows if r[1] == "baseline"]
    a_base, _ = fit([r[3] for r in base], [r[5] for r in base])
    most = []
    for d in sizes:
        sub = [r for r in rows if r[0] == d and r[1] == "compressed"]
        most.append(min(sub, key=lambda r: r[3]))
    a_comp, _ = fit([r[3] for r in most], [r[5] for r in most])
    csv = os.path.join(args.out, name + ".csv")
    with open(csv, "w") as fh:
        fh.write("d_model,run,c,core_params,val_loss_before_retune,val_loss_after_retune\n")
        for r in rows:
            fh.write("%d,%s,%.2f,%d,%.4f,%.4f\n" % r)
        fh.write("# exponent alpha (L = a N^-alpha): baseline %.4f, most compressed %.4f\n"
                 % (a_base, a_comp))
    plot(rows, sizes, a_base, a_comp, os.path.join(args.out, name + ".png"))
    print("exponents: baseline %.4f, most compressed (retuned) %.4f" % (a_base, a_comp))
    print("wrote %s in %.0f s" % (csv, time.time() - t0))


def plot(rows, sizes, a_base, a_comp, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for k, d in enumerate(sizes):
        sub = [r for r in rows if r[0] == d]
        sub.sort(key=lambda r: -r[3])
        axes[0].plot([r[3] for r in sub], [r[5] for r in sub], "-o", color="C%d" % k,
                     label="d=%d retuned" % d)
        axes[0].plot([r[3] for r in sub], [r[4] for r in sub], ":x", color="C%d" % k)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("non-embedding parameters")
    axes[0].set_ylabel("validation loss (nats/char)")
    axes[0].set_title("compression (dotted: before retuning, solid: after)", fontsize=9)
    axes[0].legend(fontsize=8)
    base = [r for r in rows if r[1] == "baseline"]
    most = [min([r for r in rows if r[0] == d and r[1] == "compressed"], key=lambda r: r[3])
            for d in sizes]
    for pts, label, a, style in ((base, "baseline", a_base, "k"), (most, "most compressed", a_comp, "C3")):
        n = np.array([r[3] for r in pts], float)
        loss = np.array([r[5] for r in pts])
        axes[1].loglog(n, loss, "o", color=style)
        slope, icpt = np.polyfit(np.log(n), np.log(loss), 1)
        grid = np.geomspace(n.min() * 0.8, n.max() * 1.2, 20)
        axes[1].loglog(grid, np.exp(icpt) * grid ** slope, "--", color=style,
                       label="%s: alpha = %.3f" % (label, -slope))
    axes[1].set_xlabel("non-embedding parameters")
    axes[1].set_ylabel("validation loss")
    axes[1].set_title("power-law fits L = a N^-alpha", fontsize=9)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
