"""The tolerance ladder of a model's hidden Linear layers (fib_color_nested,
src/color/ladder.c), drawn as a tree of classes: the colourings at growing
tolerances, each joined with the one before, so a class never splits.

    tree = ft.tolerance_tree(model, x, [0.05, 0.1, 0.2], "scaled+ward", path="tree.dot")
"""

import json
import math
import os

from ._budget import tolerance_code
from ._entry import _trace


def nested_colorings(graph, eps_list, tolerance="rel", symmetry="fibers"):
    """Colourings at increasing eps, made to nest by the library
    (fib_color_nested): level t is the join of the colouring at eps_list[t]
    with level t - 1 (the finest partition coarser than both), so a class
    never splits as eps grows. eps_list is sorted here. Returns
    [(eps, {group: labels})] for the hidden groups."""
    eps_list = sorted(float(e) for e in eps_list)
    groups = [g.id for g in graph.groups() if g.sources and not g.is_output]
    levels = graph.color_nested(eps_list, symmetry, tolerance_code(tolerance))
    return [(eps, {g: c.colors(g) for g in groups}) for eps, c in zip(eps_list, levels)]


def _tree(levels, group, n_units):
    """A nested tree: leaves are units; level t's classes are internal nodes
    whose children are level t - 1's classes (units at the first level)."""
    children = [{"unit": u} for u in range(n_units)]
    for eps, labels in levels:
        lab = labels[group]
        nodes = {}
        if len(children) and "unit" in children[0]:
            for u, child in enumerate(children):
                nodes.setdefault(int(lab[u]), []).append(child)
        else:
            for child in children:
                nodes.setdefault(int(lab[child["members"][0]]), []).append(child)
        children = []
        for c in sorted(nodes):
            kids = nodes[c]
            members = sorted(m for k in kids for m in (k["members"] if "members" in k
                                                       else [k["unit"]]))
            children.append({"eps": eps, "class": c, "members": members, "children": kids})
    return {"units": n_units, "levels": [e for e, _ in levels], "classes": children}


def tolerance_tree(model, example_input, eps_list, tolerance="scaled+ward", path=None,
                   symmetry="fibers", dot_max_units=64):
    """The tolerance ladder of every hidden Linear layer as a
    dict {layer: tree} (nested_colorings; the shape `fibration analyze
    --tolerance-tree --json` writes). With `path`, written there: as Graphviz
    DOT when it ends in .dot (tree_dot), as JSON otherwise."""
    net = _trace(model, example_input)
    levels = nested_colorings(net.graph, eps_list, tolerance, symmetry)
    eps = [e for e, _ in levels]
    out = {"symmetry": symmetry, "tolerance": tolerance, "eps": eps, "layers": {}}
    for layer in net.layers:
        if layer.kind != "dense" or layer.group not in levels[0][1]:
            continue
        tree = {"group": layer.group, "op": "dense"}
        tree.update(_tree(levels, layer.group, layer.width))
        tree["classes_per_level"] = [int(len(set(lab[layer.group].tolist())))
                                     for _, lab in levels]
        out["layers"][layer.module or layer.node] = tree
    if path is not None:
        with open(path, "w") as f:
            if os.fspath(path).endswith(".dot"):
                title = "%s: %s, %s tolerance, eps %s" % (
                    type(model).__name__, symmetry, tolerance, ", ".join("%g" % e for e in eps))
                f.write(tree_dot(out, title, dot_max_units))
            else:
                json.dump(out, f)
    return out


_PALETTE = ["#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3", "#fdb462",
            "#b3de69", "#fccde5", "#bc80bd", "#ccebc5", "#ffed6f", "#d9d9d9"]


def _dot_string(text):
    return '"%s"' % str(text).replace("\\", "\\\\").replace('"', '\\"')


def tree_dot(tree, title="tolerance tree", max_units=64):
    """A tolerance tree (tolerance_tree's dict) as Graphviz DOT, drawn as
    `fibration analyze --tolerance-tree --dot` draws it (docs/cli.md): one
    cluster per layer, one node per class per level (g<group>l<level>c<class>,
    labelled with its size), an edge from every class to the class of the
    next level that holds it, and the units as leaves (g<group>u<unit>); a
    layer of more than max_units units gets instead one box per first-level
    class counting its units (g<group>n<class>)."""
    eps = tree["eps"]
    lines = ["digraph tolerance_tree {",
             '  graph [rankdir=BT, fontname="Helvetica", label=%s];' % _dot_string(title),
             '  node [shape=circle, style=filled, fixedsize=true, fontname="Helvetica", '
             'fontsize=9];',
             '  edge [arrowsize=0.4, color="#777777"];']
    for name, layer in tree["layers"].items():
        g, counts, units = layer["group"], layer["classes_per_level"], layer["units"]
        # the classes of every level, in class order, from the top down
        by_level = [None] * len(eps)
        nodes = layer["classes"]
        for t in range(len(eps) - 1, -1, -1):
            by_level[t] = sorted(nodes, key=lambda n: n["class"])
            nodes = [c for n in nodes for c in n["children"] if "class" in c]
        collapsed = units > max_units
        lines += ["  subgraph cluster_%d {" % g, "    label=%s;" % _dot_string(name),
                  '    tooltip="%s, %d units; classes per level %s%s";' % (
                      layer.get("op", "dense"), units, ", ".join(map(str, counts)),
                      "; units counted per first-level class" if collapsed else "")]
        if collapsed:
            for n in by_level[0]:
                s = len(n["members"])
                lines.append('    g%dn%d [shape=box, fixedsize=false, fillcolor="#f0f0f0", '
                             'label="%d unit%s"];' % (g, n["class"], s, "s" if s > 1 else ""))
        else:
            lines += ['    g%du%d [shape=plaintext, style=solid, fixedsize=false, label="%d", '
                      'tooltip="unit %d"];' % (g, u, u, u) for u in range(units)]
        for t, level in enumerate(by_level):
            for n in level:
                s = len(n["members"])
                lines.append('    g%dl%dc%d [width=%.2f, label="%s", fillcolor="%s", '
                             'tooltip="eps %g, class %d: %d unit%s"];'
                             % (g, t, n["class"], 0.25 + 0.12 * math.sqrt(s),
                                s if s > 1 else " ", _PALETTE[t % 12], eps[t], n["class"], s,
                                "s" if s > 1 else ""))
        for n in by_level[0]:
            if collapsed:
                lines.append("    g%dn%d -> g%dl0c%d;" % (g, n["class"], g, n["class"]))
            else:
                lines += ["    g%du%d -> g%dl0c%d;" % (g, u, g, n["class"])
                          for u in n["members"]]
        for t in range(1, len(eps)):
            for n in by_level[t]:
                lines += ["    g%dl%dc%d -> g%dl%dc%d;" % (g, t - 1, c["class"], g, t, n["class"])
                          for c in n["children"]]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"
