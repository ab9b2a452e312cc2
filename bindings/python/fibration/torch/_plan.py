"""The compression plan: which units of which layer merged into which.

A plan is plain data, saved as JSON:

    {"format": "fibration-plan", "version": 1,
     "symmetry": "fibers", "tolerance": "exact", "eps": 0.0,
     "model": "MLP",
     "layers": [{"node": "fc1", "name": "fc1", "kind": "dense", "module": "fc1",
                 "sources": ["x"], "units": 64, "classes": 12,
                 "projection": [0, 1, 0, ...]}, ...]}

`projection[i]` is the base unit that original unit i of the layer merged
into (input layers map to themselves). Layers are keyed by their torch.fx
node name, which is the same for every instance of an architecture; "name"
is the name the layer shows (_names.layer_name: "0" where the node is
"_0"), absent from plans saved before it, and Plan.layer accepts either.

Version 2 adds what the model depends on beyond the classes, so that a
reader of version 1 refuses such a plan instead of building another model:
"scales" in a layer (a scale-aware tolerance's unit scales) and "budget"
(compress(budget=)'s choices, which re-applying redoes). "warnings" lists
what the compressed model does not reproduce (train-mode batch norm).
"""

import json

from ._names import layer_name
from ._scales import coloring_scales, set_coloring_scales

FORMAT = "fibration-plan"
VERSION = 2


class Plan:
    def __init__(self, layers, symmetry="fibers", tolerance="exact", eps=0.0,
                 model="", params=(0, 0)):
        self.layers = layers          # list of dicts as in the module doc
        self.symmetry = symmetry
        self.tolerance = tolerance
        self.eps = float(eps)
        self.model = model
        self.params = tuple(params)   # (original, compressed) torch parameter counts
        self.budget = None            # compress(budget=)'s choices (a dict), else None
        self.warnings = []            # what the compressed model does not reproduce

    def layer(self, node):
        """The entry of a layer, by its fx node name or its shown name."""
        for entry in self.layers:
            if entry["node"] == node:
                return entry
        for entry in self.layers:
            if entry.get("name") == node:
                return entry
        raise KeyError(node)

    def projection(self, node):
        return self.layer(node)["projection"]

    def to_dict(self):
        needs_2 = self.budget is not None or any("scales" in e for e in self.layers)
        data = {"format": FORMAT, "version": VERSION if needs_2 else 1,
                "symmetry": self.symmetry, "tolerance": self.tolerance, "eps": self.eps,
                "model": self.model, "params": list(self.params), "layers": self.layers}
        if self.budget is not None:
            data["budget"] = self.budget
        if self.warnings:
            data["warnings"] = list(self.warnings)
        return data

    @classmethod
    def from_dict(cls, data):
        if data.get("format") != FORMAT:
            raise ValueError("not a fibration plan (format %r)" % data.get("format"))
        if data.get("version", 0) > VERSION:
            raise ValueError("plan version %s is newer than this fibration (%d)"
                             % (data.get("version"), VERSION))
        plan = cls(data["layers"], data.get("symmetry", "fibers"),
                   data.get("tolerance", "exact"), data.get("eps", 0.0),
                   data.get("model", ""), data.get("params", (0, 0)))
        plan.budget = data.get("budget")
        plan.warnings = list(data.get("warnings", ()))
        return plan

    def save(self, path):
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=1)
            fh.write("\n")

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh))

    def __eq__(self, other):
        return isinstance(other, Plan) and self.to_dict() == other.to_dict()

    def summary(self):
        return params_line(*self.params)

    def __str__(self):
        lines = ["Plan (%s, %s, eps=%g):" % (self.symmetry, self.tolerance, self.eps)]
        for entry in self.layers:
            if entry["kind"] != "input":
                lines.append("  %-20s %6d => %d units" % (entry.get("name", entry["node"]),
                                                         entry["units"], entry["classes"]))
        lines.append(self.summary())
        lines += ["warning: " + w for w in self.warnings]
        return "\n".join(lines)

    __repr__ = __str__


def params_line(before, after):
    """'Params: 0.27 M => 0.05 M (18.5%)': the percentage is what remains."""
    share = 100.0 * after / before if before else 100.0
    return "Params: %.2f M => %.2f M (%.1f%%)" % (before / 1e6, after / 1e6, share)


def plan_from(net, base, symmetry, tolerance, eps, params, coloring=None):
    """The Plan of a base; with the colouring of a scale-aware tolerance,
    every layer's unit scales too (the base depends on them)."""
    scaled = coloring is not None and tolerance.startswith("scaled+")
    layers = []
    for layer in net.layers:
        # inputs: their own units, or their classes when a budget merged them
        projection = [int(p) for p in base.projection(layer.group)]
        entry = {"node": layer.node, "name": layer_name(layer), "kind": layer.kind,
                 "units": layer.width,
                 "classes": (max(projection) + 1) if projection else 0,
                 "sources": [net.layers[s].node for s in layer.sources],
                 "projection": projection}
        if layer.module is not None:
            entry["module"] = layer.module
        if scaled and layer.kind != "input":
            entry["scales"] = [float(v) for v in coloring_scales(coloring, layer.group)]
        layers.append(entry)
    return Plan(layers, symmetry, tolerance, eps, type(net.model).__name__, params)


def coloring_from_plan(net, plan):
    coloring = net.graph.coloring(plan.symmetry)
    for layer in net.layers:
        try:
            entry = plan.layer(layer.node)
        except KeyError:
            raise ValueError("the plan has no layer %r: it was made for another "
                             "architecture" % layer.node) from None
        if entry["units"] != layer.width or entry["kind"] != layer.kind:
            raise ValueError("plan layer %r is a %s of %d units; the model's is a %s of %d"
                             % (layer.node, entry["kind"], entry["units"], layer.kind,
                                layer.width))
        if layer.kind != "input":
            coloring.set_group(layer.group, entry["projection"])
            if "scales" in entry:
                set_coloring_scales(coloring, layer.group, entry["scales"])
            elif plan.tolerance.startswith("scaled+"):
                raise ValueError("plan layer %r has no unit scales, which its scale-aware "
                                 "tolerance (%s) needs: the plan was saved by an older "
                                 "fibration (a budget plan without its budget record, or a "
                                 "plan of version 1); compress again to make a new one"
                                 % (layer.node, plan.tolerance))
        elif entry["classes"] < entry["units"]:
            raise ValueError("plan layer %r merges inputs (a budget's merge_inputs); such a "
                             "plan cannot be re-applied in this version: compress with the "
                             "budget again" % layer.node)
    return coloring
