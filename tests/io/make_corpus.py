#!/usr/bin/python3
"""Writes the corpus of malformed model files replayed by test_corpus.c and
test_cli.py. Each file name starts with the status the loader must give
(format-, unsupported-, nonfinite-). Deterministic: rerunning it rewrites the
same bytes.

    /usr/bin/python3 tests/io/make_corpus.py [DIR]
"""
import json
import os
import struct
import sys


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def raw(header, data=b"", header_len=None):
    """A file image; header is bytes (or a JSON-able object)."""
    if not isinstance(header, bytes):
        header = json.dumps(header, separators=(",", ":")).encode()
    n = len(header) if header_len is None else header_len
    return struct.pack("<Q", n) + header + data


def tensor(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def with_structure(structure, tensors):
    """A valid safetensors file with our metadata; tensors: name -> list."""
    header = {"__metadata__": {"fibration": json.dumps(structure)}}
    data, off = b"", 0
    for name, (shape, values) in tensors.items():
        blob = f32(values)
        header[name] = tensor("F32", shape, off, off + len(blob))
        data += blob
        off += len(blob)
    return raw(header, data)


def state_dict(tensors):
    header, data, off = {}, b"", 0
    for name, (shape, values) in tensors.items():
        blob = f32(values)
        header[name] = tensor("F32", shape, off, off + len(blob))
        data += blob
        off += len(blob)
    return raw(header, data)


T = {"t": tensor("F32", [2], 0, 8)}
EIGHT = f32([1.0, 2.0])
IN = {"op": "input", "units": 2}


def structure(*groups, version=1):
    return {"format": "fibration-model", "version": version, "groups": list(groups)}


CASES = {
    "format-empty": b"",
    "format-truncated-length": b"\x10\x00\x00",
    "format-header-past-eof": raw(T, EIGHT, header_len=4096),
    "format-huge-header-length": raw(T, EIGHT, header_len=1 << 62),
    "format-header-too-short": raw(b"{", b"", header_len=1),
    "format-header-not-object": raw(b"[1, 2]"),
    "format-bad-json": raw(b'{"t": {"dtype": "F32",}}'),
    "format-bad-utf8": raw(b'{"t\xc3\x28": 1}'),
    "format-deep-nesting": raw(b'{"t":' + b"[" * 200 + b"]" * 200 + b"}"),
    "format-unknown-dtype": raw({"t": tensor("I64", [1], 0, 8)}, EIGHT),
    "format-shape-offset-mismatch": raw({"t": tensor("F32", [3], 0, 8)}, EIGHT),
    "format-overlapping-offsets": raw({"a": tensor("F32", [2], 0, 8),
                                       "b": tensor("F32", [1], 4, 8)}, EIGHT),
    "format-gapped-offsets": raw({"a": tensor("F32", [1], 0, 4),
                                  "b": tensor("F32", [0], 8, 8)}, EIGHT),
    "format-trailing-data": raw(T, EIGHT + b"\x00" * 4),
    "format-offset-past-data": raw({"t": tensor("F32", [4], 0, 16)}, EIGHT),
    "format-duplicate-names": raw(b'{"t":' + json.dumps(T["t"]).encode() +
                                  b',"t":' + json.dumps(T["t"]).encode() + b"}", EIGHT),
    "format-non-string-metadata": raw({"__metadata__": {"fibration": 1}, **T}, EIGHT),
    "format-metadata-not-object": raw({"__metadata__": "x", **T}, EIGHT),
    "format-negative-shape": raw({"t": tensor("F32", [-2], 0, 8)}, EIGHT),
    "format-shape-overflow": raw({"t": tensor("F32", [1 << 32, 1 << 32], 0, 8)}, EIGHT),
    "format-no-tensors": raw({}),
    "format-not-a-state-dict": state_dict({"encoder.weight": ([2, 2], [1, 2, 3, 4])}),
    "format-conv-state-dict": state_dict({"0.weight": ([1, 1, 2, 2], [1, 2, 3, 4])}),
    "format-broken-chain": state_dict({"0.weight": ([2, 2], [1, 2, 3, 4]),
                                       "2.weight": ([1, 3], [1, 2, 3])}),
    "format-metadata-bad-json": raw({"__metadata__": {"fibration": "{\"groups\": ["},
                                     **T}, EIGHT),
    "format-metadata-missing-tensor": with_structure(
        structure(IN, {"op": "dense", "units": 2, "source": 0, "weight": "w"}),
        {"t": ([2], [1, 2])}),
    "format-metadata-wrong-shape": with_structure(
        structure(IN, {"op": "dense", "units": 1, "source": 0, "weight": "w"}),
        {"w": ([2, 2], [1, 2, 3, 4])}),
    "format-metadata-forward-source": with_structure(
        structure(IN, {"op": "dense", "units": 2, "source": 1, "weight": "w"}),
        {"w": ([2, 2], [1, 2, 3, 4])}),
    "format-metadata-unknown-op": with_structure(
        structure(IN, {"op": "lstm", "units": 2}), {"w": ([2, 2], [1, 2, 3, 4])}),
    "unsupported-metadata-version": with_structure(
        structure(IN, {"op": "dense", "units": 2, "source": 0, "weight": "w"},
                  version=9), {"w": ([2, 2], [1, 2, 3, 4])}),
    "nonfinite-weight": state_dict({"0.weight": ([2, 2], [1, float("nan"), 3, 4])}),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(out, exist_ok=True)
    for name, data in sorted(CASES.items()):
        with open(os.path.join(out, name + ".safetensors"), "wb") as f:
            f.write(data)
    print(f"wrote {len(CASES)} files to {out}")


if __name__ == "__main__":
    main()
