"""The compression plan: which units of which layer merged into which.

A plan is plain data, saved as JSON:

    {"format": "fibration-plan", "version": 1,
     "symmetry": "fibers", "tolerance": "exact", "eps": 0.0,
     "model": "MLP",
     "layers": [{"node": "fc1", "kind": "dense", "module": "fc1",
                 "sources": ["x"], "units": 64, "classes": 12,
                 "projection": [0, 1, 0, ...]}, ...]}

`projection[i]` is the base unit that original unit i of the layer merged
into (input layers map to themselves). Layers are keyed by their torch.fx
node name, which is the same for every instance of an architecture.

Version 2 adds what the model depends on beyond the classes, so that a
reader of version 1 refuses such a plan instead of building another model:
"scales" in a layer (a scale-aware tolerance's unit scales) and "budget"
(compress(budget=)'s choices, which re-applying redoes). "warnings" lists
what the compressed model does not reproduce (train-mode batch norm).
"""

import json

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
        for entry in self.layers:
            if entry["node"] == node:
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
                lines.append("  %-20s %6d => %d units" % (entry["node"], entry["units"],
                                                         entry["classes"]))
        lines.append(self.summary())
        lines += ["warning: " + w for w in self.warnings]
        return "\n".join(lines)

    __repr__ = __str__


def params_line(before, after):
    """'Params: 0.27 M => 0.05 M (18.5%)': the percentage is what remains."""
    share = 100.0 * after / before if before else 100.0
    return "Params: %.2f M => %.2f M (%.1f%%)" % (before / 1e6, after / 1e6, share)
