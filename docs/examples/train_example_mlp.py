#!/usr/bin/python3
"""Trains the example network shipped as docs/examples/fashion_mlp.safetensors.

A 784-64-32-10 ReLU MLP on Fashion-MNIST (Debian package
dataset-fashion-mnist), fixed seed, a few epochs on the CPU (about a minute
on two cores). The weights are written with libfibration's structure
metadata by a few lines of standard-library Python (Debian has no
safetensors package); the format is described in docs/model-files.md.

    /usr/bin/python3 docs/examples/train_example_mlp.py [-o OUT] [--epochs N]

`--evaluate BASE...` trains nothing: it reads the network at -o and each
base written from it (`fibration compress ... -o BASE`) with
fibration.torch.load and prints, on the 10,000 test images, each one's
accuracy and the largest change of a logit as a share of the network's
largest logit (the figures of the README's main job).
"""
import argparse
import gzip
import json
import os
import struct
import sys

import numpy as np
import torch

DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    """An IDX file (images or labels) as a numpy array."""
    with gzip.open(path, "rb") as f:
        magic, = struct.unpack(">I", f.read(4))
        n_dims = magic & 0xFF
        shape = struct.unpack(">" + "I" * n_dims, f.read(4 * n_dims))
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(shape)


def load_split(kind):
    images = read_idx(os.path.join(DATA, f"{kind}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(DATA, f"{kind}-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)
    return x, torch.from_numpy(labels.astype(np.int64))


def save_safetensors(path, tensors, metadata):
    """tensors: name -> float32 torch tensor; metadata: str -> str."""
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name, t in tensors.items():
        data = t.detach().cpu().contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # keep the data region 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)
    os.replace(tmp, path)


def structure(model):
    """libfibration's structure metadata for an nn.Sequential of Linear/ReLU."""
    groups = [{"name": "input", "op": "input",
               "units": model[0].in_features}]
    layers = [(i, m) for i, m in enumerate(model) if isinstance(m, torch.nn.Linear)]
    for k, (i, m) in enumerate(layers):
        relu = i + 1 < len(model) and isinstance(model[i + 1], torch.nn.ReLU)
        groups.append({"name": str(i), "op": "dense", "units": m.out_features,
                       "source": k, "weight": f"{i}.weight", "bias": f"{i}.bias",
                       "activation": "relu" if relu else "linear"})
    return {"format": "fibration-model", "version": 1,
            "producer": "docs/examples/train_example_mlp.py", "groups": groups}


def evaluate(original, bases, x_test, y_test):
    """Test accuracy of `original` and of each base, and each base's largest
    logit change over the test images / the original's largest |logit|."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                    "bindings", "python"))
    import fibration.torch as ft
    with torch.no_grad():
        reference = ft.load(original)(x_test)
        print(f"{original}: test accuracy {accuracy_of(reference, y_test):.4f}")
        for path in bases:
            out = ft.load(path)(x_test)
            change = float((out - reference).abs().max() / reference.abs().max())
            print(f"{path}: test accuracy {accuracy_of(out, y_test):.4f}, "
                  f"largest logit change {change:.1%} of the largest logit")


def accuracy_of(logits, labels):
    return (logits.argmax(1) == labels).float().mean().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("-o", "--output", default=os.path.join(
        here, "fashion_mlp.safetensors"))
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--evaluate", nargs="+", metavar="BASE",
                    help="compare these bases of the network at -o on the test set")
    args = ap.parse_args()
    if args.evaluate:
        evaluate(args.output, args.evaluate, *load_split("t10k"))
        return

    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    x_train, y_train = load_split("train")
    x_test, y_test = load_split("t10k")

    model = torch.nn.Sequential(
        torch.nn.Linear(784, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 32), torch.nn.ReLU(),
        torch.nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        order = torch.randperm(len(x_train), generator=gen)
        total = 0.0
        for start in range(0, len(order), 128):
            idx = order[start:start + 128]
            opt.zero_grad()
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}: train loss {total / len(x_train):.4f}",
              file=sys.stderr)

    with torch.no_grad():
        accuracy = accuracy_of(model(x_test), y_test)
    print(f"test accuracy: {accuracy:.4f}")
    tensors = {k: v for k, v in model.state_dict().items()}
    save_safetensors(args.output, tensors,
                     {"fibration": json.dumps(structure(model)),
                      "test_accuracy": f"{accuracy:.4f}",
                      "trained_by": "docs/examples/train_example_mlp.py "
                                    f"--epochs {args.epochs} --seed {args.seed}"})
    print(f"wrote {os.path.normpath(args.output)}")


if __name__ == "__main__":
    main()
