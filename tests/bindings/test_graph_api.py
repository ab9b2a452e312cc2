"""The Python graph API (Graph.from_edges / from_networkx / from_scipy /
read_edgelist, node names, the quotient as networkx): E. coli gives the
command's partition node for node from every source; small circuits give
the fibers their definition implies."""
import csv
import json
import os
import pathlib
import subprocess

import networkx as nx
import numpy as np
import pytest
import scipy.sparse

import fibration
from fibration import FibrationError, Graph

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / "docs" / "examples" / "graphs"
ECOLI = DATA / "test_Ecoli.csv"
EXE = pathlib.Path(fibration.library_path).parent / "cli" / "fibration"


def ecoli_rows():
    """(source name, target name, type) of test_Ecoli.csv, in file order."""
    with open(ECOLI, newline="") as f:
        return [(r["SourceName"], r["TargetName"], r["Type"]) for r in csv.DictReader(f)]


def ecoli_networkx():
    G = nx.MultiDiGraph()
    for u, v, t in ecoli_rows():
        G.add_edge(u, v, kind=t)
    return G


def ecoli_arrays():
    """Node ids by first appearance, as the library's reader numbers them."""
    ids = {}
    src, dst, types = [], [], []
    for u, v, t in ecoli_rows():
        src.append(ids.setdefault(u, len(ids)))
        dst.append(ids.setdefault(v, len(ids)))
        types.append(t)
    return list(ids), np.array(src), np.array(dst), np.array(types)


def ecoli_scipy():
    """E. coli as one sparse matrix: type k weighs 1000**k, so a weight sum
    from a class encodes its count of arcs of each type (counts < 1000), and
    weighted fibers are the typed fibers."""
    names, src, dst, types = ecoli_arrays()
    code = {t: 1000.0 ** k for k, t in enumerate(sorted(set(types.tolist())))}
    weights = np.array([code[t] for t in types.tolist()])
    # duplicate (i, j) entries of a COO matrix are summed: parallel arcs of
    # different types become one arc whose weight still encodes both
    n = len(names)
    return names, scipy.sparse.coo_matrix((weights, (src, dst)), shape=(n, n))


def command_classes(path, convention):
    if not EXE.exists():
        pytest.skip("needs the built command")
    out = subprocess.run([str(EXE), "graph", "--json", "--convention", convention,
                          str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["node_class"]


def classes_by_name(graph, convention):
    graph.set_convention(convention)
    colors = graph.color().colors(0)
    names = graph.node_names(0)
    assert names is not None and len(names) == len(colors) == 879
    return dict(zip(names, colors.tolist()))


def graph_from(source):
    if source == "file":
        return Graph.read_edgelist(ECOLI)
    if source == "networkx":
        return Graph.from_networkx(ecoli_networkx(), edge_type="kind")
    if source == "numpy":
        names, src, dst, types = ecoli_arrays()
        return Graph.from_edges(src, dst, types=types, node_names=names)
    names, matrix = ecoli_scipy()
    return Graph.from_scipy(matrix, node_names=names)


@pytest.mark.parametrize("source", ["file", "networkx", "numpy", "scipy"])
@pytest.mark.parametrize("convention,count", [("pure", 414), ("published", 555)])
def test_ecoli_matches_the_command_node_for_node(source, convention, count):
    got = classes_by_name(graph_from(source), convention)
    assert len(set(got.values())) == count
    assert got == command_classes(ECOLI, convention)


def test_ecoli_from_networkx_keeps_node_order_and_names():
    G = ecoli_networkx()
    g = Graph.from_networkx(G, edge_type="kind")
    assert g.node_names(0) == list(G.nodes)
    assert g.group(0).n_units == G.number_of_nodes() == 879
    assert sorted(g.edge_type_names(0)) == ["dual", "negative", "positive"]


def test_ecoli_quotient_as_networkx_matches_the_command_base():
    g = Graph.read_edgelist(ECOLI)
    c = g.color()
    q = c.quotient_networkx()
    assert q.number_of_nodes() == 414
    sizes = c.class_sizes(0)
    assert [q.nodes[k]["size"] for k in range(414)] == sizes.tolist()
    # every member listed once, under its own class
    colors = dict(zip(g.node_names(0), c.colors(0).tolist()))
    for k, data in q.nodes(data=True):
        assert all(colors[name] == k for name in data["members"])
    # the base arcs of `fibration graph --json`, as a multiset
    out = subprocess.run([str(EXE), "graph", "--json", str(ECOLI)], capture_output=True,
                         text=True) if EXE.exists() else None
    if out is None:
        pytest.skip("needs the built command")
    base = sorted((a["source"], a["target"], a["type"], a["multiplicity"])
                  for a in json.loads(out.stdout)["base"])
    ours = sorted((u, v, d["type"], d["multiplicity"]) for u, v, d in q.edges(data=True))
    assert ours == base
    # in a balanced colouring every member receives its class's arcs: the
    # in-degree of a class in the quotient is each member's in-degree
    G = ecoli_networkx()
    for k, data in q.nodes(data=True):
        indeg = sum(d["multiplicity"] for _, _, d in q.in_edges(k, data=True))
        assert all(G.in_degree(name) == indeg for name in data["members"])


def partition(graph, group=0, symmetry="fibers"):
    colors = graph.color(symmetry=symmetry).colors(group)
    classes = {}
    for node, k in enumerate(colors.tolist()):
        classes.setdefault(k, []).append(node)
    return sorted(classes.values())


def test_star_leaves_share_a_fiber():
    g = Graph.from_edges([0, 0, 0], [1, 2, 3])
    assert partition(g) == [[0], [1, 2, 3]]
    # opfibers look at out-arcs: the leaves (no out-arcs) share a class
    assert partition(g, symmetry="opfibers") == [[0], [1, 2, 3]]


def test_cycle_is_one_fiber_and_an_input_breaks_it():
    assert partition(Graph.from_edges([0, 1, 2], [1, 2, 0])) == [[0, 1, 2]]
    # 3 -> 0 gives 0 two inputs; then 1 reads a class 2 does not
    assert partition(Graph.from_edges([0, 1, 2, 3], [1, 2, 0, 0])) == [[0], [1], [2], [3]]


def test_types_separate_what_counts_join():
    assert partition(Graph.from_edges([0, 0], [1, 2])) == [[0], [1, 2]]
    typed = Graph.from_edges([0, 0], [1, 2], types=["activates", "represses"])
    assert partition(typed) == [[0], [1], [2]]
    assert typed.edge_type_names(0) == ["activates", "represses"]
    assert partition(Graph.from_edges([0, 0], [1, 2], types=[4, 4])) == [[0], [1, 2]]


def test_weights_are_summed_per_class():
    # 1 gets 2.0 from {0, 3}; 2 gets 1.0 + 1.0 from the same class
    src, dst = [0, 0, 3], [1, 2, 2]
    assert partition(Graph.from_edges(src, dst, weights=[2.0, 1.0, 1.0])) == [[0, 3], [1, 2]]
    assert partition(Graph.from_edges(src, dst)) == [[0, 3], [1], [2]]
    m = scipy.sparse.csr_matrix(([2.0, 1.0, 1.0], (src, dst)), shape=(4, 4))
    assert partition(Graph.from_scipy(m)) == [[0, 3], [1, 2]]


def test_isolated_nodes_come_from_n_nodes():
    g = Graph.from_edges([0], [1], n_nodes=4)
    assert g.group(0).n_units == 4
    assert partition(g) == [[0, 2, 3], [1]]


def test_small_circuits_from_the_shipped_files():
    # the data README's counts, from the file and from networkx alike
    for name, pure, published in [("test_1.csv", 6, 6), ("test_3SCC.csv", 5, 6),
                                  ("test_SELF.csv", 1, 2)]:
        g = Graph.read_edgelist(DATA / name)
        assert g.color().num_classes(0) == pure
        g.set_convention("published")
        assert g.color().num_classes(0) == published
        with open(DATA / name, newline="") as f:
            G = nx.MultiDiGraph()
            rows = list(csv.DictReader(f))
            for r in rows:
                G.add_edge(r["Source"], r["Target"], type=r.get("Type", ""))
        h = Graph.from_networkx(G, edge_type="type")
        assert h.color().num_classes(0) == pure
        assert h.node_names(0) == g.node_names(0)


def test_networkx_node_objects_and_weights():
    G = nx.DiGraph()
    G.add_edge(("a", 1), "b", w=0.5)
    G.add_edge(("a", 1), 7, w=0.5)
    g = Graph.from_networkx(G, weight="w")
    assert g.node_names(0) == [("a", 1), "b", 7]
    q = g.color().quotient_networkx()
    # classes are numbered by their lowest node; members in node order
    assert [q.nodes[k]["members"] for k in range(2)] == [[("a", 1)], ["b", 7]]
    (u, v, d), = q.edges(data=True)
    assert d["weight"] == 0.5 and d["multiplicity"] == 1


def test_names_absent_for_plain_arrays():
    g = Graph.from_edges([0], [1])
    assert g.node_names(0) is None and g.edge_type_names(0) is None
    q = g.color().quotient_networkx()
    assert [d["members"] for _, d in sorted(q.nodes(data=True))] == [[0], [1]]


def test_refusals_name_the_problem(tmp_path):
    with pytest.raises(TypeError, match="directed"):
        Graph.from_networkx(nx.Graph([(0, 1)]))
    G = nx.DiGraph([(0, 1)])
    G.add_edge(1, 2, w=1.0)
    with pytest.raises(ValueError, match=r"edge 0 -> 1 has no 'w'"):
        Graph.from_networkx(G, weight="w")
    with pytest.raises(TypeError, match="integer node indices"):
        Graph.from_edges([0.5], [1])
    with pytest.raises(ValueError, match="targets 2"):
        Graph.from_edges([0], [1, 2])
    with pytest.raises(FibrationError) as e:
        Graph.from_edges([0, 5], [1, 1], n_nodes=3)
    assert e.value.code == fibration.E_RANGE
    with pytest.raises(FibrationError) as e:
        Graph.from_edges([0], [1], weights=[float("nan")])
    assert e.value.code == fibration.E_NONFINITE
    with pytest.raises(ValueError, match="square"):
        Graph.from_scipy(scipy.sparse.csr_matrix((2, 3)))
    with pytest.raises(FibrationError) as e:
        Graph.read_edgelist(tmp_path / "missing.csv")
    assert e.value.code == fibration.E_IO and "missing.csv" in str(e.value)
    with pytest.raises(ValueError, match="convention"):
        Graph.from_edges([0], [1]).set_convention("peer")


def test_headerless_third_column_as_weight(tmp_path):
    path = tmp_path / "w.txt"
    path.write_text("x y 2.0\nx z 1.0\nu z 1.0\n")
    g = Graph.read_edgelist(path, header=False, third="weight")
    assert g.node_names(0) == ["x", "y", "z", "u"]
    assert partition(g) == [[0, 3], [1, 2]]
    typed = Graph.read_edgelist(path, header=False, third="type")
    assert typed.edge_type_names(0) == ["2.0", "1.0"]
    # unsaid, fractional numbers are neither guessed types nor weights
    with pytest.raises(fibration.FibrationError, match="are they weights"):
        Graph.read_edgelist(path, header=False)


def test_named_types_mean_one_type_across_arc_sets():
    g = Graph()
    a, b = g.add_nodes(2), g.add_nodes(2)
    g.add_edges(a, b, [0], [0], types=["x"])
    g.add_edges(a, b, [1], [1], types=["y"])
    g.add_edges(b, a, [0, 1], [0, 1], types=["y", "y"])
    # "x" and "y" stay two types although each arc set starts its own list
    assert g.edge_type_names(b) == ["x", "y"]
    c = g.color()
    # with one type the two pairs would be alike (one class per group)
    assert c.num_classes(a) == c.num_classes(b) == 2
    q = c.quotient_networkx()
    assert {(u, v, k) for u, v, k in q.edges(keys=True)} == {
        ((a, 0), (b, 0), "x"), ((a, 1), (b, 1), "y"),
        ((b, 0), (a, 0), "y"), ((b, 1), (a, 1), "y")}


def test_named_types_never_share_ids_with_other_arcs():
    g = Graph.from_edges([0], [1], n_nodes=3)
    with pytest.raises(ValueError, match="untyped"):
        g.add_edges(0, 0, [1], [2], types=["x"])
    h = Graph.from_edges([0], [1], types=["x"])
    with pytest.raises(ValueError, match="share"):
        h.add_edges(0, 0, [1], [0], types=[0])
    with pytest.raises(ValueError, match="share"):
        h.add_edges(0, 0, [1], [0])
    f = Graph.read_edgelist(DATA / "test_3SCC.csv")  # untyped file: type 0
    with pytest.raises(ValueError, match="file"):
        f.add_edges(0, 0, [0], [1], types=["x"])


def test_mixed_type_values_stay_distinct():
    # 1 and "1" are two edge types, as networkx attributes would be
    g = Graph.from_edges([0, 0], [1, 2], types=[1, "1"])
    assert g.edge_type_names(0) == [1, "1"]
    assert partition(g) == [[0], [1], [2]]


def test_word_and_number_names_give_the_same_colouring(tmp_path):
    """The same graph with its nodes named by numbers (the number index) and
    by words of every length (the hash table; plain lines, quoted names,
    CRLF, no final line end) reads with the same numbering, by first
    appearance, and so colours the same; the command, which may use
    several threads, prints the same classes for both."""
    rng = np.random.default_rng(6)
    n, m = 3000, 12000
    # sources feeding copies of a few input patterns make non-trivial fibers
    src = rng.integers(0, n, size=m)
    dst = rng.integers(0, n, size=m)
    dst[: m // 2] = rng.integers(0, 200, size=m // 2) * 15 % n
    words = [f"w{i}" if i % 3 == 0 else f"gene_{i}_" + "x" * (i % 40) for i in range(n)]
    words[7] = "L" * 5000 + "7"
    numbered = tmp_path / "numbers.csv"
    numbered.write_text("source,target\n" + "".join(f"{u},{v}\n" for u, v in zip(src, dst)))
    lines = []
    for k, (u, v) in enumerate(zip(src, dst)):
        a, b = words[u], words[v]
        if k % 11 == 5:
            a = '"' + a + '"'
        lines.append(f"{a},{b}" + ("\r\n" if k % 7 == 2 else "\n"))
    named = tmp_path / "words.csv"
    named.write_text("source,target\n" + "".join(lines).rstrip("\r\n"), newline="")

    by_number, by_word = Graph.read_edgelist(numbered), Graph.read_edgelist(named)
    order = list(dict.fromkeys(int(x) for pair in zip(src, dst) for x in pair))
    assert by_number.node_names(0) == [str(i) for i in order]
    assert by_word.node_names(0) == [words[i] for i in order]
    numbers_colors = by_number.color().colors(0)
    words_colors = by_word.color().colors(0)
    assert np.array_equal(numbers_colors, words_colors)
    assert len(set(numbers_colors.tolist())) < len(order)  # some non-trivial class

    def classes(path):
        out = subprocess.run([str(EXE), "graph", "--csv", str(path)], check=True,
                             capture_output=True, text=True).stdout.splitlines()[1:]
        return [line.rsplit(",", 3)[1:] for line in out]

    assert classes(numbered) == classes(named)
