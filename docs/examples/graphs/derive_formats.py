#!/usr/bin/env python3
"""Writes the E. coli graph of test_Ecoli.csv in two more edge-list formats.

    python3 derive_formats.py [OUTPUT_DIR]     (default: this directory)

The readers of libfibration take headerless tab- and space-separated edge
lists as well as CSV; these files give the tests and the documentation the
same graph in those formats:

* ecoli_ids.tsv   ``src<TAB>dst<TAB>type``, no header, 0-based ids that number
                  the gene names in sorted (code point) order;
* ecoli_names.tsv ``name<TAB>id``, one gene a line, in id order;
* ecoli_named.txt ``src_name dst_name type``, space-separated, no header.

Arcs keep the row order of test_Ecoli.csv (its SourceName, TargetName and Type
columns; its own 1-based id columns are not used). Standard library only and
deterministic: the same input gives the same bytes (LF line ends, UTF-8).
tests/graphs/test_shipped_data.py checks that the committed files are what
this script writes.
"""
import csv
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
SOURCE = HERE / "test_Ecoli.csv"
COLUMNS = ("SourceName", "TargetName", "Type")


def read_arcs(path):
    """(source name, target name, type) of every row, in file order."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            sys.exit(f"{path}: no column {', '.join(missing)}")
        arcs = []
        for row in reader:
            arc = tuple(row[c] for c in COLUMNS)
            # The derived formats separate fields by blanks and tabs, so a
            # blank inside a field would silently split it.
            if any(not field or any(ch.isspace() for ch in field) for field in arc):
                sys.exit(f"{path}:{reader.line_num}: empty field or blank in {arc}")
            arcs.append(arc)
    return arcs


def write_lines(path, lines):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(line + "\n" for line in lines)


def derive(output_dir):
    arcs = read_arcs(SOURCE)
    names = sorted({name for src, dst, _ in arcs for name in (src, dst)})
    node_id = {name: i for i, name in enumerate(names)}
    output_dir = pathlib.Path(output_dir)
    write_lines(output_dir / "ecoli_ids.tsv",
                (f"{node_id[s]}\t{node_id[d]}\t{t}" for s, d, t in arcs))
    write_lines(output_dir / "ecoli_names.tsv",
                (f"{name}\t{i}" for i, name in enumerate(names)))
    write_lines(output_dir / "ecoli_named.txt",
                (f"{s} {d} {t}" for s, d, t in arcs))


if __name__ == "__main__":
    if len(sys.argv) > 2:
        sys.exit(__doc__)
    derive(sys.argv[1] if len(sys.argv) == 2 else HERE)
