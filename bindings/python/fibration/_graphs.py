"""General directed graphs from the objects network scientists hold: arrays
of arcs, networkx graphs, scipy sparse matrices; and their quotient back as a
networkx graph.

Everything here turns its input into plain arc arrays (sources, targets,
weights, type ids) checked on the Python side only for what C cannot see
(lengths, integer-ness, attribute names); node ranges and finiteness are
checked by fib_graph_add_edges, whose message names the arc.
"""

from collections import namedtuple

# types: an int32 array, or a 1-D array of names numbered later against the
# graph's table (type_ids), or None
Arcs = namedtuple("Arcs", "n_nodes sources targets weights types node_names")
FiberBlock = namedtuple("FiberBlock", "class_id size n_on_cycle")

INT32_MIN, INT32_MAX = -2 ** 31, 2 ** 31 - 1


def _index_array(values, what):
    import numpy as np
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError("%s must be 1-D, not shape %s" % (what, arr.shape))
    if arr.size and arr.dtype.kind not in "iu":
        raise TypeError("%s must hold integer node indices, not dtype %s"
                        % (what, arr.dtype))
    return np.ascontiguousarray(arr, dtype=np.int64)


def checked_types(types, n_arcs):
    """Integer types as int32, names (strings, any hashable values) as they
    are, for type_ids."""
    import numpy as np
    if types is None:
        return None
    # a sequence keeps its values whole (numpy would turn [1, "1"] into
    # two equal strings)
    arr = types if isinstance(types, np.ndarray) else _object_array(list(types))
    if arr.ndim != 1 or arr.shape[0] != n_arcs:
        raise ValueError("types has shape %s; expected one type per arc (%d)"
                         % (arr.shape, n_arcs))
    if arr.dtype.kind in "iu":
        if arr.size and (arr.min() < INT32_MIN or arr.max() > INT32_MAX):
            raise ValueError("integer edge types must fit in int32")
        return np.ascontiguousarray(arr, dtype=np.int32)
    if arr.dtype.kind in "fcb":
        raise TypeError("edge types are integers or names (strings), not dtype %s"
                        % arr.dtype)
    return arr


def is_named(types):
    return types is not None and types.dtype.kind not in "iu"


def type_ids(names, table):
    """int32 ids of type names from `table` (name -> id, one per graph so
    that a name means one type in every arc set), extended in order of
    first appearance."""
    import numpy as np
    out = np.empty(len(names), np.int32)
    for i, value in enumerate(names.tolist()):
        code = table.get(value)
        if code is None:
            code = table[value] = len(table)
        out[i] = code
    return out


def from_edges(sources, targets, weights=None, types=None, n_nodes=None):
    import numpy as np
    src = _index_array(sources, "sources")
    dst = _index_array(targets, "targets")
    if src.shape != dst.shape:
        raise ValueError("sources has %d entries, targets %d"
                         % (src.shape[0], dst.shape[0]))
    w = None
    if weights is not None:
        w = np.ascontiguousarray(weights, dtype=np.float64)
        if w.shape != src.shape:
            raise ValueError("weights has shape %s; expected one weight per arc (%d)"
                             % (w.shape, src.shape[0]))
    t = checked_types(types, src.shape[0])
    if n_nodes is None:
        if not src.size:
            raise ValueError("no arcs: give n_nodes")
        n_nodes = int(max(src.max(), dst.max())) + 1
    return Arcs(int(n_nodes), src, dst, w, t, None)


def from_networkx(graph, weight=None, edge_type=None):
    """Arcs of a networkx DiGraph / MultiDiGraph; nodes in graph.nodes order."""
    if not graph.is_directed():
        raise TypeError("fibers need a directed graph; for an undirected one, "
                        "pass G.to_directed() (every edge as two arcs)")
    nodes = list(graph.nodes)
    index = {node: i for i, node in enumerate(nodes)}
    sources, targets, weights, types = [], [], [], []
    for u, v, data in graph.edges(data=True):
        sources.append(index[u])
        targets.append(index[v])
        # A missing attribute is refused rather than given a default: a
        # weight of 1 or a type of None would silently join classes.
        if weight is not None:
            if weight not in data:
                raise ValueError("edge %r -> %r has no %r attribute" % (u, v, weight))
            weights.append(data[weight])
        if edge_type is not None:
            if edge_type not in data:
                raise ValueError("edge %r -> %r has no %r attribute"
                                 % (u, v, edge_type))
            types.append(data[edge_type])
    if not nodes:
        raise ValueError("the graph has no nodes")
    arcs = from_edges(sources, targets, weights if weight is not None else None,
                      _object_array(types) if edge_type is not None else None,
                      n_nodes=len(nodes))
    return arcs._replace(node_names=nodes)


def _object_array(values):
    """Edge-type values as an array that keeps strings and mixed values whole."""
    import numpy as np
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.int64)
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def from_scipy(matrix):
    """Arcs of a square sparse adjacency matrix: stored entry (i, j) = arc
    i -> j with that weight (explicit zeros are arcs of weight 0; duplicate
    COO entries are summed first, as scipy does)."""
    import numpy as np
    import scipy.sparse
    if not scipy.sparse.issparse(matrix):
        raise TypeError("expected a scipy.sparse matrix or array, not %s"
                        % type(matrix).__name__)
    rows, cols = matrix.shape
    if rows != cols:
        raise ValueError("an adjacency matrix is square, not %d x %d" % (rows, cols))
    if matrix.dtype.kind not in "biuf":
        raise TypeError("adjacency entries must be real, not dtype %s" % matrix.dtype)
    coo = scipy.sparse.coo_matrix(matrix, copy=True)
    coo.sum_duplicates()
    return Arcs(int(rows), coo.row.astype(np.int64), coo.col.astype(np.int64),
                np.ascontiguousarray(coo.data, dtype=np.float64), None, None)


def quotient_networkx(coloring, arcs, graph):
    """The quotient of `graph` under `coloring` as a networkx MultiDiGraph.

    arcs: the columns of fib_quotient_arcs. Nodes are class ids (one node
    group) or (group, class) pairs, with attributes group, class_id, size,
    members (node names, or indices without names) and label (the first
    member). Edges are keyed by edge type (its name when the graph has
    names) and carry type, weight (the weight sum; the multiplicity for an
    unweighted graph) and multiplicity (arcs merged)."""
    import networkx as nx
    node_groups = [g.id for g in graph.groups() if g.op == "nodes"]
    single = len(node_groups) == 1

    def key(group, cls):
        return int(cls) if single else (int(group), int(cls))

    q = nx.MultiDiGraph()
    for group in node_groups:
        names = graph.node_names(group)
        colors = coloring.colors(group)
        members = [[] for _ in range(coloring.num_classes(group))]
        for node, cls in enumerate(colors.tolist()):
            members[cls].append(names[node] if names is not None else node)
        for cls, who in enumerate(members):
            q.add_node(key(group, cls), group=group, class_id=cls, size=len(who),
                       members=who, label=who[0])
    src_group, src_class, dst_group, dst_class, types, weights, mult = arcs
    for a in range(len(src_class)):
        type_name = graph.edge_type_name(int(src_group[a]), int(types[a]))
        q.add_edge(key(src_group[a], src_class[a]), key(dst_group[a], dst_class[a]),
                   key=type_name, type=type_name, weight=float(weights[a]),
                   multiplicity=int(mult[a]))
    return q
