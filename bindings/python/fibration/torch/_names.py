"""The name a layer shows: the same in reports, plans, saved model files and
the `fibration` command.

A layer made by a module is named after the module's qualified name, as in
the model's state dict ("0", "features.3", "encoder.layers.0.linear1";
suffixed for a layer of a multi-layer LSTM/GRU and for the q, k, v and core
groups of an attention); a layer made by an operation (an input, a residual
sum, a pooling or flatten) by its torch.fx node ("x", "add"). The fx node
name ("_0" for an nn.Sequential's child) stays the key of plan entries
("node"), which Plan.layer accepts as well.
"""

import re

LAYER_SUFFIX = re.compile(r"\.l\d+$")


def layer_name(layer):
    """The shown name of a traced Layer (see the module doc)."""
    if layer.module is None or layer.kind in ("input", "sum", "product", "pool", "flatten",
                                              "last_step"):
        return layer.node
    if layer.kind in ("lstm", "gru"):
        suffix = LAYER_SUFFIX.search(layer.node)
        return layer.module + (suffix.group(0) if suffix else "")
    if layer.kind.startswith("attention."):
        role = layer.kind.split(".", 1)[1]
        return layer.module if role == "out" else "%s.%s" % (layer.module, role)
    return layer.module
