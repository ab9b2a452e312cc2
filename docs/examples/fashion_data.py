"""Fashion-MNIST from the Debian package dataset-fashion-mnist
(/usr/share/datasets/fashion-mnist), as float tensors in [0, 1], and the
small training and evaluation loops the examples share."""

import gzip
import os

import numpy as np
import torch
import torch.nn.functional as F

DATA = os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
CLASSES = ("T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot")


def read_idx(name):
    with gzip.open(os.path.join(DATA, name)) as fh:
        data = fh.read()
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(data[3])]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def available():
    return os.path.exists(os.path.join(DATA, "train-images-idx3-ubyte.gz"))


def load(n_train=60000, n_test=10000):
    """(x_train, y_train, x_test, y_test); images are (N, 1, 28, 28)."""
    def images(name, n):
        return torch.from_numpy(read_idx(name)[:n].astype(np.float32) / 255).unsqueeze(1)

    def labels(name, n):
        return torch.from_numpy(read_idx(name)[:n].astype(np.int64))
    return (images("train-images-idx3-ubyte.gz", n_train),
            labels("train-labels-idx1-ubyte.gz", n_train),
            images("t10k-images-idx3-ubyte.gz", n_test),
            labels("t10k-labels-idx1-ubyte.gz", n_test))


def train(model, x, y, steps, lr=0.05, batch=64, seed=0, every=None, callback=None):
    """SGD with momentum for `steps` minibatches; callback(step) every
    `every` steps."""
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    for step in range(1, steps + 1):
        idx = torch.randint(len(x), (batch,), generator=generator)
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
        if callback is not None and every and step % every == 0:
            model.eval()
            callback(step)
            model.train()
    return model.eval()


def accuracy(model, x, y, batch=2000):
    model.eval()
    with torch.no_grad():
        right = sum(int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
                    for i in range(0, len(x), batch))
    return right / len(x)


def experiment_args(doc, argv=None, extra=None):
    """The options every experiment script takes (--quick, --out, --threads,
    --seed, --seeds, --summary), plus what `extra(parser)` adds; parses argv,
    applies --threads and makes the --out folder."""
    import argparse
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "..", "figures"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, metavar="N",
                    help="run seeds SEED .. SEED+N-1 into <out>/<name>_seeds/ (resumes), then "
                         "summarise them (seed_runs.py)")
    ap.add_argument("--summary", action="store_true",
                    help="start no run: summarise the seeds already in <out>/<name>_seeds/")
    if extra is not None:
        extra(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    return args
