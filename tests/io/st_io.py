"""Standard-library safetensors reading and writing for the Python tests
(Debian has no safetensors package), and a numpy forward pass of a chain
or graph described by libfibration's structure metadata."""
import json
import os
import struct

import numpy as np

DTYPES = {"F32": "<f4", "F64": "<f8"}


def write(path, tensors, metadata=None):
    """tensors: name -> numpy array (float32 or float64), or an encoded
    tuple (dtype name, shape, little-endian bytes) for dtypes numpy lacks
    (BF16)."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    blobs, offset = [], 0
    for name, array in tensors.items():
        if isinstance(array, tuple):
            dtype, shape, data = array
            array = np.empty(shape, dtype=np.uint8)  # carries the shape only
        else:
            array = np.ascontiguousarray(array)
            dtype = "F64" if array.dtype == np.float64 else "F32"
            data = array.astype(DTYPES[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)


def read(path):
    """(tensors: name -> numpy array, metadata: dict)."""
    with open(path, "rb") as f:
        blob = f.read()
    n, = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    metadata = header.pop("__metadata__", {})
    data = blob[8 + n:]
    tensors = {}
    for name, t in header.items():
        begin, end = t["data_offsets"]
        tensors[name] = np.frombuffer(data[begin:end], dtype=DTYPES[t["dtype"]]) \
            .reshape(t["shape"]).astype(np.float64)
    return tensors, metadata


def forward(path, x):
    """Outputs of a model file with structure metadata on inputs x (batch x
    input width), in float64; only input/dense/sum groups with relu/linear/
    tanh activations (metadata versions 1 and 2)."""
    tensors, metadata = read(path)
    structure = json.loads(metadata["fibration"])
    acts = {"linear": lambda z: z, "relu": lambda z: np.maximum(z, 0),
            "tanh": np.tanh}
    values, consumed = [], set()
    for g in structure["groups"]:
        if g["op"] == "input":
            values.append(x)
            continue
        if g["op"] == "dense":
            # version 1: "source", "weight", "bias"; version 2: "sources"
            # and the tensor names under "tensors"
            src = g["source"] if "source" in g else g["sources"][0]
            names = g.get("tensors", g)
            consumed.add(src)
            z = values[src] @ tensors[names["weight"]].T
            if names.get("bias"):
                z = z + tensors[names["bias"]]
        else:
            a, b = g["sources"]
            consumed.update((a, b))
            ga, gb = g.get("gather", [list(range(g["units"]))] * 2)
            z = values[a][:, ga] + values[b][:, gb]
        values.append(acts[g.get("activation", "linear")](z))
    outs = [v for i, v in enumerate(values) if i not in consumed]
    return np.concatenate(outs, axis=1)


def cli():
    """The fibration executable under test."""
    exe = os.environ.get("FIBRATION_CLI")
    if not exe:
        here = os.path.dirname(os.path.abspath(__file__))
        exe = os.path.join(here, "..", "..", "build", "src", "cli", "fibration")
    return exe
