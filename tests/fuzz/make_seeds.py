#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (tests/fuzz/corpus/<target>/).

Seeds are small valid inputs that reach deep into each reader; the malformed
model files of tests/io/corpus are added to the safetensors seeds. Files
named crash-* in the corpus are regressions found by fuzzing: this script
never touches them."""
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape, values)] -> file bytes."""
    header, blobs, offset = {}, [], 0
    fmt = {"F32": "<f", "F64": "<d", "F16": "<e"}
    for name, dtype, shape, values in tensors:
        blob = b"".join(struct.pack(fmt[dtype], v) for v in values)
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def safetensors_seeds():
    mlp = [("0.weight", "F32", [4, 3], [1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2]),
           ("0.bias", "F32", [4], [0, 0, 1, 1]),
           ("2.weight", "F64", [2, 4], [1, 1, 2, 2, 1, 1, 2, 2])]
    write("safetensors", "state-dict.safetensors", safetensors(mlp))
    write("safetensors", "half.safetensors",
          safetensors([("0.weight", "F16", [2, 2], [1, 1, 1, 1])]))
    write("safetensors", "empty-tensor.safetensors",
          safetensors([("x", "F32", [0, 3], [])], {"k": "v"}))
    write("safetensors", "metadata.safetensors",
          safetensors(mlp, {"fibration": json.dumps(model_mlp())}))
    src = os.path.join(HERE, "..", "io", "corpus")
    for name in sorted(os.listdir(src)):
        shutil.copy(os.path.join(src, name),
                    os.path.join(CORPUS, "safetensors", "io-" + name))


def model_mlp():
    return {"format": "fibration-model", "version": 1, "groups": [
        {"name": "input", "op": "input", "units": 3},
        {"name": "h", "op": "dense", "units": 4, "source": 0,
         "weight": "w43", "bias": "b4", "activation": "relu"},
        {"name": "o", "op": "dense", "units": 2, "source": 1,
         "weight": "w24", "bias": "b2", "activation": "linear"}]}


def model_seeds():
    write("model", "mlp.json", json.dumps(model_mlp()))
    residual = model_mlp()
    residual["groups"][2:] = [
        {"op": "dense", "units": 4, "source": 1, "weight": "w44",
         "activation": "tanh"},
        {"op": "sum", "units": 4, "sources": [1, 2], "activation": "leaky_relu",
         "parameter": 0.1, "eps": 0.001},
        {"op": "dense", "units": 2, "source": 3, "weight": "w24", "bias": None}]
    write("model", "residual.json", json.dumps(residual))
    half = model_mlp()
    half["groups"][1]["weight"] = "h43"
    write("model", "half.json", json.dumps(half))
    base = {"format": "fibration-model", "version": 1, "groups": [
        {"op": "input", "units": 3},
        {"op": "dense", "units": 3, "source": 0, "weight": "w33"},
        {"op": "dense", "units": 2, "source": 1, "weight": "w23", "bias": "b2"}],
        "projection": [[0, 1, 2], [0, 0, 1, 2], [0, 1]]}
    write("model", "base.json", json.dumps(base))
    gather = {"format": "fibration-model", "version": 1, "groups": [
        {"op": "input", "units": 3},
        {"op": "dense", "units": 3, "source": 0, "weight": "b3"},
        {"op": "sum", "units": 3, "sources": [0, 1],
         "gather": [[0, 1, 2], [2, 1, 0]]}]}
    write("model", "gather.json", json.dumps(gather))
    write("model", "newer.json", '{"format":"fibration-model","version":2,"groups":[]}')


def edgelist_seeds():
    write("edgelist", "csv-header", "\x00source,target,type,weight\n"
          "a,b,pos,1\nb,c,neg,2.5\nc,a,pos,1\n\"d,1\",a,pos,-1e3\n")
    write("edgelist", "tsv-typed", "\x02" + "1\t2\tpos\n2\t3\tneg\n3\t1\tpos\n4\t4\tpos\n")
    write("edgelist", "whitespace-weights", "\x05" + "a b 0.5\n  b   c 2\nc a 1\n")
    write("edgelist", "third-weight", "\x06" + "x y 0.25\ny x 4\nx x 1\n")
    write("edgelist", "comments-crlf", "\x01# c\r\nSourceName,TargetName,Type\r\n\r\nu,v,1\r\nv,u,1\r\n")
    write("edgelist", "cycle-published", "\x11" + "".join(
        "n%d n%d\n" % (i, (i + 1) % 6) for i in range(6)) + "n6 n0\nn7 n0\n")


def api_seeds():
    pool = bytes([2, 3, 2, 3, 4, 2, 3, 2, 3, 4, 2, 3, 2, 3, 4, 2])
    # ops: 0 input, 1/2 dense, 3 sum, 4/5 colour, 6 build, 7 forward,
    # 8 set colours, 9 conv, 10 nodes, 11 reset (see fuzz_api.c)
    mlp = bytes([0, 2,            # input of 3 units
                 1, 0, 4, 0, 1, 1, 0,   # dense 5 units over group 0, relu
                 1, 1, 2, 1, 2, 2, 0,   # dense 3 units over group 1
                 4, 0, 0,         # colour: fibres, exact
                 6, 0,            # compress
                 6, 1,            # lift
                 6, 2,            # break symmetry
                 7, 1,            # forward
                 5, 2, 0,         # colour: covers
                 6, 3, 6, 5, 6, 6])
    write("api", "mlp", pool + mlp)
    hostile = bytes([0, 11, 0, 12, 0, 9, 1, 0, 7, 0, 1, 0, 1, 13, 0, 5, 0,
                     3, 0, 0, 4, 33, 1, 4, 255, 5, 9, 3, 0, 2, 7, 6, 0])
    write("api", "hostile-sizes", pool + hostile)
    write("api", "conv", pool + bytes([9, 2, 4, 2, 1, 1, 1, 1, 6, 4, 0, 0,
                                       1, 3, 3, 0, 0, 1, 4, 0, 0, 6, 0, 6, 1]))
    write("api", "nodes", pool + bytes([10, 6, 8, 0, 1, 0, 1, 2, 1, 3, 2, 0, 3,
                                        2, 0, 4, 5, 0, 5, 4, 0, 4, 1, 0, 4, 2,
                                        0, 8, 0, 0, 1, 2, 0, 1, 11]))
    write("api", "cancel", pool + mlp[:14] + bytes([4, 32 + 2, 0, 1, 4, 0, 0]))


if __name__ == "__main__":
    safetensors_seeds()
    model_seeds()
    edgelist_seeds()
    api_seeds()
