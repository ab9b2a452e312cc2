#!/usr/bin/env python3
"""The layer order of src/, checked.

Every folder of src/ is a layer; a file may use its own layer and the lower
layers MAY_USE lists for it, never one above. Two graphs are checked:

- the #include graph of src/ (from the sources): no include of a higher
  (or unlisted) layer's header, no circle of includes;
- with --objects, the call graph of the built library (which object file
  uses a symbol another defines, from `nm`): no call into a higher layer,
  and no circle between files (two files calling each other, directly or
  around a ring).

And one rule of the blocks layer: a block kind (a FIB_OP_* constant or a
fib_<kind>_ops table) is named only in src/blocks/, where each kind has its
file; elsewhere a decision that depends on the kind asks fib_block_ops.
KIND_NAMES_ALLOWED lists the few places that still name kinds, each with
its reason.

    layers.py SRC_DIR [--objects BUILD_DIR] [--python PACKAGE_DIR]
                                              exit 1 and a list on a breach
    layers.py --self-test SRC_DIR [--python PACKAGE_DIR]
                                              plants breaches in a copy of
                                              SRC_DIR (and PACKAGE_DIR) and
                                              checks they fail

With --python, the Python package is checked too: no circle of imports
between its modules, counting the imports inside functions (a lazy import
hides a circle, it does not break it) and `from . import name` of a name
the package's __init__ defines (which imports the __init__).
"""
import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile

# Lowest first: no layer uses one after it.
LAYERS = ["kernels", "model", "blocks", "graphs", "color", "compress", "io", "cli"]
# What each layer may use besides itself (docs/design.md, "Layers"): graphs
# stands beside blocks, not on it; the command uses only the public header.
MAY_USE = {
    "kernels": set(),
    "model": {"kernels"},
    "blocks": {"model", "kernels"},
    "graphs": {"model", "kernels"},
    "color": {"graphs", "blocks", "model", "kernels"},
    "compress": {"color", "graphs", "blocks", "model", "kernels"},
    "io": {"compress", "color", "graphs", "blocks", "model", "kernels"},
    "cli": set(),
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)

# A block kind named in code: FIB_OP_<KIND> or fib_<kind>_ops (not the type
# fib_block_ops). Comments are left out before matching.
KIND_NAME = re.compile(r"\bFIB_OP_[A-Z0-9_]+\b|\bfib_(?!block_)[a-z0-9_]+_ops\b")
COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
# Files outside src/blocks/ that may name kinds: {path: (kinds or "*", why)}.
KIND_NAMES_ALLOWED = {
    "model/graph.c": ({"FIB_OP_INPUT"},
                      "input groups carry no block (ops NULL): this file makes them "
                      "and answers fib_group_is_input"),
    "graphs/graph_api.c": ({"FIB_OP_NODES", "fib_nodes_ops"},
                           "the node-group kind's own file (the graphs layer stands "
                           "beside blocks and may not use it)"),
    "cli/cli.c": ("*", "the command is a client of the public header, where the "
                  "FIB_OP_* constants are public"),
    "cli/report.c": ("*", "the command is a client of the public header"),
    "cli/tolerance_tree.c": ("*", "the command is a client of the public header"),
    "cli/report_transformer.c": ("*", "the command is a client of the public header"),
}


def layer_of(rel):
    """The layer of a path relative to src/ (None: not in a layer)."""
    top = rel.split("/")[0]
    return top if top in LAYERS else None


def sources(src):
    out = []
    for root, _, files in os.walk(src):
        for f in files:
            if f.endswith((".c", ".h")):
                out.append(os.path.relpath(os.path.join(root, f), src).replace(os.sep, "/"))
    return sorted(out)


def include_graph(src):
    """{file: [included file]} for includes that resolve inside src/ (the
    public header and system headers are outside every layer)."""
    graph = {}
    for rel in sources(src):
        with open(os.path.join(src, rel), encoding="utf-8") as fh:
            text = fh.read()
        targets = []
        for name in INCLUDE.findall(text):
            here = os.path.normpath(os.path.join(os.path.dirname(rel), name)).replace(os.sep, "/")
            if os.path.isfile(os.path.join(src, name)):
                targets.append(os.path.normpath(name).replace(os.sep, "/"))
            elif os.path.isfile(os.path.join(src, here)):
                targets.append(here)
        graph[rel] = targets
    return graph


def call_graph(src, build):
    """{source file: {source file it calls into}} from the library's
    objects under BUILD/src (meson names an object after its path, with
    '/' as '_')."""
    by_object_name = {rel.replace("/", "_") + ".o": rel for rel in sources(src) if rel.endswith(".c")}
    objects = {}
    for root, _, files in os.walk(os.path.join(build, "src")):
        if "libfibration" not in os.path.basename(root) or "cli" in root.split(os.sep):
            continue
        for f in files:
            if f in by_object_name:
                objects.setdefault(by_object_name[f], os.path.join(root, f))
    defined, used = {}, {}
    for rel, path in objects.items():
        out = subprocess.run(["nm", path], capture_output=True, text=True, check=True).stdout
        used[rel] = set()
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in "TDRB":
                defined[parts[2]] = rel
            elif len(parts) == 2 and parts[0] == "U":
                used[rel].add(parts[1])
    return {rel: {defined[s] for s in syms if s in defined and defined[s] != rel}
            for rel, syms in used.items()}


def circles(graph):
    """Strongly connected components with more than one member (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def breaches(graph, verb):
    """Upward uses and circles of a file graph, as messages."""
    found = []
    for user in sorted(graph):
        lu = layer_of(user)
        for used in sorted(graph[user]):
            lt = layer_of(used)
            if lu is None or lt is None:
                found.append(f"{user} {verb} {used}: outside the declared layers {LAYERS}")
            elif LAYERS.index(lt) > LAYERS.index(lu):
                found.append(f"{user} ({lu}) {verb} {used} ({lt}), a higher layer")
            elif lt != lu and lt not in MAY_USE[lu]:
                found.append(f"{user} ({lu}) {verb} {used} ({lt}), a layer it may not use")
    for comp in circles(graph):
        found.append(f"circle of files ({verb}): {' <-> '.join(comp)}")
    return found


def kind_names(src):
    """Kind names outside src/blocks/ that KIND_NAMES_ALLOWED does not
    allow, as messages."""
    found = []
    for rel in sources(src):
        if layer_of(rel) == "blocks":
            continue
        with open(os.path.join(src, rel), encoding="utf-8") as fh:
            code = COMMENT.sub(" ", fh.read())
        allowed = KIND_NAMES_ALLOWED.get(rel, (set(), ""))[0]
        names = sorted(set(KIND_NAME.findall(code)))
        stray = names if allowed != "*" else []
        stray = [n for n in stray if n not in allowed]
        if stray:
            found.append(f"{rel} names the block kind(s) {', '.join(stray)} outside "
                         f"src/blocks/: ask fib_block_ops (or allow it in "
                         f"KIND_NAMES_ALLOWED with a reason)")
    return found


def python_modules(package):
    """{dotted module name: (path, is a package __init__)} of a package."""
    root = os.path.dirname(os.path.abspath(package))
    modules = {}
    for folder, _, files in os.walk(package):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                dotted = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                if f == "__init__.py":
                    dotted = dotted[:-len(".__init__")]
                modules[dotted] = (path, f == "__init__.py")
    return modules


def python_import_graph(package):
    """{module: [module it imports]} inside the package, from every import
    statement (at the top or in a function)."""
    modules = python_modules(package)
    graph = {}
    for name, (path, is_init) in modules.items():
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
        here = name if is_init else name.rpartition(".")[0]
        used = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                parts = here.split(".")
                parts = parts[:len(parts) - (node.level - 1)]
                target = ".".join(parts + ([node.module] if node.module else []))
                for alias in node.names:
                    sub = target + "." + alias.name
                    used.add(sub if sub in modules else target)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in getattr(node, "names", ()):
                    if isinstance(node, ast.Import) and alias.name in modules:
                        used.add(alias.name)
                if isinstance(node, ast.ImportFrom) and node.module in modules:
                    used.add(node.module)
        used.discard(name)
        graph[name] = sorted(u for u in used if u in modules)
    return graph


def python_circles(package):
    return [f"circle of Python imports: {' <-> '.join(comp)}"
            for comp in circles(python_import_graph(package))]


def check(src, build=None):
    found = breaches(include_graph(src), "includes")
    found += kind_names(src)
    if build:
        calls = call_graph(src, build)
        if not calls:
            found.append(f"no library objects found under {build}/src")
        found += breaches(calls, "calls")
    return found


def self_test(src, package=None):
    """The check must pass on src and fail on each planted breach."""
    failures = []
    if package:
        failures += python_self_test(package)
    if check(src):
        failures.append("the tree itself has breaches: " + "; ".join(check(src)))
    plants = [
        # an upward include: a model file reaching the compress layer
        ("model/partition.c", '#include "compress/compress.h"\n', "a higher layer"),
        # a circle of headers within one layer
        ("model/gather.h", '#include "model/window.h"\n', "circle"),
        ("model/window.h", '#include "model/gather.h"\n', "circle"),
        # a file outside every layer
        ("stray/stray.c", '#include "model/model.h"\n', "outside the declared layers"),
        # a lower layer, but not one graphs may use
        ("graphs/structure.c", '#include "blocks/blocks.h"\n', "a layer it may not use"),
        # a kind test outside src/blocks/, and a kind's ops table named there
        ("color/color.c", "static int dense_only(int op) { return op == FIB_OP_DENSE; }\n",
         "names the block kind"),
        ("compress/compress.c", "static const void *dense_table = &fib_dense_ops;\n",
         "names the block kind"),
    ]
    for start in (0, 1, 3, 4, 5, 6):
        group = plants[start:start + 2] if start == 1 else plants[start:start + 1]
        with tempfile.TemporaryDirectory() as tmp:
            copy = os.path.join(tmp, "src")
            shutil.copytree(src, copy)
            for rel, line, _ in group:
                path = os.path.join(copy, rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "a", encoding="utf-8") as fh:
                    fh.write(line)
            found = check(copy)
            want = group[0][2]
            if not any(want in msg for msg in found):
                failures.append(f"planting {[g[0] for g in group]} was not caught "
                                f"(wanted '{want}', got {found})")
    # the cycle finder on a ring of three and a chain of three
    if circles({"a": ["b"], "b": ["c"], "c": ["a"]}) != [["a", "b", "c"]]:
        failures.append("a ring of three files is not one circle")
    if circles({"a": ["b"], "b": ["c"], "c": []}):
        failures.append("a chain of three files is taken for a circle")
    return failures


def python_self_test(package):
    """The package has no circle; a lazy import planted back into the
    package's __init__, and one between two modules, are each caught."""
    failures = [f"the package itself: {m}" for m in python_circles(package)]
    modules = python_modules(package)
    inits = sorted(n for n, (_, is_init) in modules.items() if is_init and "." in n)
    top = inits[0] if inits else None
    if top is None:
        return failures + [f"no subpackage in {package} to plant a circle in"]
    below = sorted(n for n in modules if n.startswith(top + ".") and
                   not modules[n][1] and n.count(".") == top.count(".") + 1)
    imported = set(python_import_graph(package)[top])
    victim = next((n for n in below if n in imported), None)
    plants = [[(victim, "\ndef _planted():\n    from . import _planted_name\n")],
              [(below[0], f"\nfrom . import {below[1].rpartition('.')[2]}\n"),
               (below[1], f"\ndef _planted():\n    from . import "
                          f"{below[0].rpartition('.')[2]}\n")]]
    for plant in plants:
        if any(m is None for m, _ in plant):
            failures.append("no module of the package to plant a circle in")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            copy = os.path.join(tmp, os.path.basename(os.path.abspath(package)))
            shutil.copytree(package, copy)
            root = os.path.dirname(os.path.abspath(package))
            for module, text in plant:
                rel = os.path.relpath(modules[module][0], root)
                with open(os.path.join(tmp, rel), "a", encoding="utf-8") as fh:
                    fh.write(text)
            if not python_circles(copy):
                failures.append(f"planting {[m for m, _ in plant]} was not caught")
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("--objects", metavar="BUILD_DIR")
    ap.add_argument("--python", metavar="PACKAGE_DIR")
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    if a.self_test:
        found = self_test(a.src, a.python)
    else:
        found = check(a.src, a.objects) + (python_circles(a.python) if a.python else [])
    for msg in found:
        print(msg)
    if not found and a.self_test:
        print("layers self-test: every planted breach was caught")
    elif not found:
        print("layers: " + " < ".join(LAYERS) + ": no upward use, no circle" +
              ("; Python package: no circle of imports" if a.python else ""))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
