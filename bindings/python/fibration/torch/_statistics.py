"""Batch norms' stored statistics in a traced graph: every BatchNorm's
running mean and variance (the model's own buffers, no data) attached to
the group it reads (Graph.set_unit_statistics), which budgets read
(docs/compression.md, "Removals from stored statistics")."""

from .._errors import FibrationError


def batch_norm_statistics(net):
    """[(group, running_mean, running_var, module name)] of every batch norm
    of a traced model that has running statistics: the stored distribution
    of the group it reads, over the data the model was trained on (the
    model's own buffers, no data read here). A batch norm that read a
    group's value before the group's non-linear activation is left out: its
    statistics are not those of the group's outputs."""
    found = []
    for node in net.gm.graph.nodes:
        kind, info = net.owners.get(node.name, (None, {}))
        if kind != "affine" or not info.get("batch_norm") or node.op != "call_module":
            continue
        module = net.gm.get_submodule(node.target)
        source = net.values.get(node.args[0].name) if node.args else None
        group = getattr(source, "group", None)
        if module.running_mean is None or group is None:
            continue
        if net.graph.group(group).activation != "linear" and \
                not getattr(source, "activated", False):
            continue
        found.append((group, module.running_mean.detach().double().cpu().numpy(),
                      module.running_var.detach().double().cpu().numpy(), node.target))
    return found


def attach_batch_norm_statistics(net):
    """Every batch norm's running statistics attached to the group it reads
    (Graph.set_unit_statistics), for budgets: data-free, the model's own
    buffers. A batch norm whose statistics the library refuses (a NaN
    running variance) names its module."""
    for group, mean, var, name in batch_norm_statistics(net):
        try:
            net.graph.set_unit_statistics(group, mean, var)
        except FibrationError as e:
            message = "%s [torch module %r, running statistics]" % (e.message, name)
            raise FibrationError(e.code, e.name, message, e.function) from None
