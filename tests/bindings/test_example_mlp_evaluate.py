"""docs/examples/train_example_mlp.py --evaluate: the README's figures of
the shipped network's bases (test accuracy, largest logit change) come
from it. A network compared with itself changes nothing and keeps the
accuracy stored in its metadata; a tolerant base made by the command
changes the logits and is scored on the same images."""

import json
import os
import struct
import subprocess
import sys

import pytest

from conftest import ROOT

torch = pytest.importorskip("torch")
EXAMPLES = os.path.join(ROOT, "docs", "examples")
SHIPPED = os.path.join(EXAMPLES, "fashion_mlp.safetensors")
DATA = "/usr/share/datasets/fashion-mnist"
pytestmark = pytest.mark.skipif(not os.path.isdir(DATA), reason="needs dataset-fashion-mnist")


def stored_accuracy(path):
    with open(path, "rb") as fh:
        size, = struct.unpack("<Q", fh.read(8))
        return float(json.loads(fh.read(size))["__metadata__"]["test_accuracy"])


def run(*args):
    out = subprocess.run([sys.executable, os.path.join(EXAMPLES, "train_example_mlp.py"),
                          "--evaluate"] + list(args), capture_output=True, text=True,
                         check=True, env=dict(os.environ)).stdout
    return out.strip().split("\n")


def test_the_network_against_itself_changes_nothing():
    first, itself = run(SHIPPED)
    want = "test accuracy %.4f" % stored_accuracy(SHIPPED)
    assert first.endswith(want)
    assert itself.endswith(want + ", largest logit change 0.0% of the largest logit")


def test_a_tolerant_base_of_the_command(library_dir, tmp_path):
    command = os.path.join(library_dir, "cli", "fibration")
    if not os.path.exists(command):
        pytest.skip("no fibration command beside the library")
    base = str(tmp_path / "base.safetensors")
    subprocess.run([command, "compress", "--eps", "0.3", SHIPPED, "-o", base], check=True,
                   capture_output=True)
    original, line = run(base)
    accuracy = float(line.split("test accuracy ")[1].split(",")[0])
    change = float(line.split("largest logit change ")[1].split("%")[0])
    assert 0 < accuracy < stored_accuracy(SHIPPED)
    assert change > 0
