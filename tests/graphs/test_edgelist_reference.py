"""The edge-list reader against a reference reader written here (Python's
csv module and str.split, names interned in order of first appearance,
weights by float()): on the shipped graphs and on random files, the library
must give the same node names and the same colourings (fibers, opfibers) and
base-graph weights as the same arcs handed over by from_edges. This guards
the reader's fast paths: names that are decimal numbers (numbered after
the read), weights read without strtod, the mapped file."""
import csv
import io
import pathlib
import random

import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bindings" / "python"))
import fibration  # noqa: E402  (the in-tree package; FIBRATION_LIBRARY picks the build)

GRAPHS = ROOT / "docs" / "examples" / "graphs"


def reference(text, delimiter):
    """(names, src, dst, type ids or None, weights or None) of a file with
    a header naming its columns (csv) or none (src dst [type]); comments,
    blank lines and a CRLF line end as docs/graphs.md describes."""
    lines = [l for l in text.replace("\r\n", "\n").split("\n")
             if l.strip() and not l.startswith("#")]
    if delimiter == ",":
        rows = list(csv.reader(io.StringIO("\n".join(lines))))
        rows = [[f.strip() for f in r] for r in rows]
    else:
        rows = [l.split("\t") if delimiter == "\t" else l.split() for l in lines]
    head = [h.lower() for h in rows[0]]
    if "source" in head or "sourcename" in head:
        pick = lambda *names: next((head.index(n) for n in names if n in head), None)
        s, d = pick("sourcename", "source"), pick("targetname", "target")
        t, w = pick("type"), pick("weight")
        rows = rows[1:]
    else:
        s, d, t, w = 0, 1, 2 if len(rows[0]) > 2 else None, None
    names, types = {}, {}
    src, dst, typ, wts = [], [], [], []
    for r in rows:
        src.append(names.setdefault(r[s], len(names)))
        dst.append(names.setdefault(r[d], len(names)))
        if t is not None:
            typ.append(types.setdefault(r[t], len(types)))
        if w is not None:
            wts.append(float(r[w]))
    return (list(names), np.array(src), np.array(dst),
            np.array(typ, dtype=np.int32) if t is not None else None,
            np.array(wts) if w is not None else None)


def assert_same_graph(path, delimiter):
    text = pathlib.Path(path).read_text(encoding="utf-8")
    names, src, dst, types, weights = reference(text, delimiter)
    read = fibration.Graph.read_edgelist(str(path))
    assert read.node_names(0) == names
    given = fibration.Graph.from_edges(src, dst, weights=weights, types=types,
                                       n_nodes=len(names))
    for symmetry in ("fibers", "opfibers"):
        a, b = read.color(symmetry=symmetry), given.color(symmetry=symmetry)
        assert list(a.colors(0)) == list(b.colors(0)), symmetry
        qa, qb = a.quotient_arcs(), b.quotient_arcs()
        assert repr(qa) == repr(qb), symmetry


@pytest.mark.parametrize("name", sorted(p.name for p in GRAPHS.iterdir()
                                        if p.suffix in (".csv", ".tsv", ".txt")
                                        and p.name != "ecoli_names.tsv"))
def test_shipped_graphs_read_as_the_reference_reads_them(name):
    assert_same_graph(GRAPHS / name, {".csv": ",", ".tsv": "\t"}.get(name[-4:], " "))


def random_name(r):
    k = r.random()
    if k < 0.55:
        return str(r.randrange(400))                 # the number index
    if k < 0.62:
        return str(r.randrange(10 ** 6, 10 ** 7))    # above its limit: hashed
    if k < 0.67:
        return str(r.randrange(10 ** 19, 10 ** 22))  # past 2^64
    if k < 0.75:
        return "0" + str(r.randrange(40))            # leading zero: a word
    if k < 0.8:
        return '"' + str(r.randrange(400)) + '"'     # quoted number
    if k < 0.83:
        return '"q""' + str(r.randrange(30)) + '"'   # escaped quote: q"N
    return r.choice(["g", "gene_name_longer_than_a_word_", "Ä"]) + str(r.randrange(60))


def random_weight(r):
    return r.choice([str(r.randrange(-9, 9)), f"{r.uniform(-50, 50):.{r.randrange(1, 19)}f}",
                     f"{r.uniform(-1, 1):.6e}", "-0", ".25", "3.", "+1.5",
                     str(r.randrange(2 ** 53, 2 ** 60))])


@pytest.mark.parametrize("seed", range(12))
def test_random_files_read_as_the_reference_reads_them(tmp_path, seed):
    r = random.Random(seed)
    weighted = seed % 2 == 1
    lines = ["source,target,weight" if weighted else "source,target"]
    for i in range(r.randrange(50, 3000)):
        if r.random() < 0.02:
            lines.append("# comment " + str(i))
        elif r.random() < 0.02:
            lines.append("")
        else:
            fields = [random_name(r), random_name(r)]
            lines.append(",".join(fields + ([random_weight(r)] if weighted else [])))
    text = ("\r\n" if seed % 3 == 0 else "\n").join(lines)
    if seed % 4 < 2:
        text += "\n"
    path = tmp_path / "random.csv"
    path.write_text(text, encoding="utf-8")
    assert_same_graph(path, ",")


def test_a_large_numbered_file_reads_as_the_reference_reads_it(tmp_path):
    """Enough arcs that the names go through the number index in volume."""
    rng = np.random.default_rng(3)
    arcs = rng.integers(0, 20000, size=(200000, 2))
    path = tmp_path / "large.tsv"
    with open(path, "w") as f:
        np.savetxt(f, arcs, fmt="%d", delimiter="\t")
    assert_same_graph(path, "\t")


def word_name(r, pool):
    """A name for the hash table: short (packed into a slot), exactly 7 or
    8 bytes, sharing its first 7 bytes with others, long, with UTF-8 or
    odd bytes (control characters, a quote escaped), most drawn again from
    a pool of earlier names (duplicates)."""
    if pool and r.random() < 0.8:
        return r.choice(pool)
    k = r.random()
    if k < 0.3:
        name = "n" + str(r.randrange(10 ** 6))
    elif k < 0.45:
        name = "abcdefg"[:r.randrange(1, 8)] + "xyz"[:r.randrange(0, 3)]
    elif k < 0.6:
        name = "prefix_" + str(r.randrange(100)) * r.randrange(1, 4)
    elif k < 0.7:
        name = r.choice(["é", "Ä", "日本", "a\x01b", "tab\x7f", "~!@$%^&*"]) + str(r.randrange(50))
    elif k < 0.8:
        name = '"q""' + str(r.randrange(30)) + '"'
    else:
        name = "long_gene_name_" * r.randrange(1, 5) + str(r.randrange(1000))
    pool.append(name)
    return name


@pytest.mark.parametrize("seed", range(4))
def test_a_large_word_named_file_reads_as_the_reference_reads_it(tmp_path, seed):
    """Names that go through the hash table in volume: many times the
    reader's batch of waiting names, the table grown several times, with
    duplicates, names of 7 and 8 bytes that share their first 7, long and
    odd names, comments, blank lines and CRLF line ends."""
    r = random.Random(100 + seed)
    pool = []
    lines = ["source,target"]
    for i in range(60000):
        if r.random() < 0.01:
            lines.append("# comment " + str(i))
        elif r.random() < 0.01:
            lines.append("")
        else:
            lines.append(word_name(r, pool) + "," + word_name(r, pool))
    text = ("\r\n" if seed % 2 else "\n").join(lines) + "\n"
    path = tmp_path / "words.csv"
    path.write_bytes(text.encode("utf-8"))
    assert len(set(pool)) > 5000
    assert_same_graph(path, ",")


@pytest.mark.parametrize("symmetry", ["fibers", "opfibers"])
def test_base_graph_equals_the_definition_with_hubs(symmetry):
    """The base graph against docs/graphs.md's definition computed here:
    each class's lowest node's in-arcs (out-arcs for opfibers), the other
    end replaced by its class, merged per (source class, target class,
    type) with weights summed in arc order, sorted. Hubs give some classes
    hundreds of base arcs (the sort's large groups), typed and weighted."""
    rng = np.random.default_rng(8)
    n = 600
    src = np.concatenate([np.zeros(400, int), rng.integers(0, n, 3000), np.arange(1, 401)])
    dst = np.concatenate([np.arange(1, 401), rng.integers(0, n, 3000), np.full(400, 7)])
    types = rng.integers(0, 3, src.size).astype(np.int32)
    weights = rng.choice([0.5, 1.25, -2.0, 0.1], src.size)
    g = fibration.Graph.from_edges(src, dst, weights=weights, types=types, n_nodes=n)
    c = g.color(symmetry=symmetry)
    colors = np.asarray(c.colors(0))
    rep = {}
    for v in range(n):
        rep.setdefault(int(colors[v]), v)
    receiver, other = (src, dst) if symmetry == "opfibers" else (dst, src)
    expected = {}
    for a in range(src.size):
        if rep[int(colors[receiver[a]])] != receiver[a]:
            continue
        key = (int(colors[src[a]]), int(colors[dst[a]]), int(types[a]))
        w, k = expected.get(key, (0.0, 0))
        expected[key] = (w + weights[a], k + 1)
    _, qs, _, qd, qt, qw, qm = c.quotient_arcs()
    got = [((int(s), int(d), int(t)), (float(w), int(k)))
           for s, d, t, w, k in zip(qs, qd, qt, qw, qm)]
    assert got == sorted(expected.items())
    per_source = {}
    for (s, _, _), _ in got:
        per_source[s] = per_source.get(s, 0) + 1
    assert max(per_source.values()) > 32  # a group the sort hands to qsort
