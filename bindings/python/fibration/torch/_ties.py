"""Tied tensors: a parameter or buffer that two or more layers of a model
read stays one tensor in the compressed model, or the compression is
refused naming it (keep_ties)."""

import torch

from ._errors import UnsupportedModelError


def _owned_tensors(module):
    """(local name, tensor) of every parameter and buffer under `module`, by
    every name it has."""
    for prefix, sub in module.named_modules(remove_duplicate=False):
        for table in (sub._parameters, sub._buffers):
            for name, tensor in table.items():
                if tensor is not None:
                    yield (prefix + "." if prefix else "") + name, tensor


def shared_tensors(net):
    """[[qualified name, ...]] of every parameter or buffer read by two or
    more layers of the trace (one list per tensor, in trace order)."""
    users = {}
    for node in net.gm.graph.nodes:
        if node.op != "call_module":
            continue
        for name, tensor in _owned_tensors(net.gm.get_submodule(node.target)):
            names = users.setdefault(id(tensor), [])
            qualified = node.target + "." + name
            if qualified not in names:
                names.append(qualified)
    return [names for names in users.values()
            if len({n.rsplit(".", 1)[0] for n in names}) > 1]


def _slot(module, qualified):
    """(owning module, table, attribute) of a parameter or buffer, or None."""
    owner_name, _, attr = qualified.rpartition(".")
    try:
        owner = module.get_submodule(owner_name) if owner_name else module
    except AttributeError:
        return None
    for table in (owner._parameters, owner._buffers):
        if table.get(attr) is not None:
            return owner, table, attr
    return None


def keep_ties(net, compressed):
    """Ties the compressed model's tensors as the original's are tied (the
    first user's tensor becomes every user's) when every user's compressed
    tensor is equal; UnsupportedModelError naming them otherwise."""
    for names in shared_tensors(net):
        owners = [n.rsplit(".", 1)[0] for n in names]
        nested = [a for a in owners for b in owners if a != b and b.startswith(a + ".")]
        slots = [_slot(compressed, n) for n in names]
        why = None
        if nested:
            why = "%r holds the other users, so the tie has no name of its own" % nested[0]
        elif any(s is None for s in slots):
            why = "the compressed model has no tensor %r" % names[slots.index(None)]
        else:
            first = slots[0][1][slots[0][2]]
            for name, (owner, table, attr) in zip(names[1:], slots[1:]):
                other = table[attr]
                if other.shape != first.shape or other.dtype != first.dtype or \
                        not torch.equal(other, first):
                    why = "the layers merged differently: %r became %s, %r %s" % (
                        names[0], tuple(first.shape), name, tuple(other.shape)) \
                        if other.shape != first.shape else \
                        "the layers merged differently: %r and %r became different " \
                        "tensors" % (names[0], name)
                    break
        if why is not None:
            raise UnsupportedModelError(
                "tensor shared by %s (tied weights) cannot stay shared: %s; compressing "
                "would untie it (a different and larger model). Untie it in the model "
                "first, or compress with a colouring that merges both layers alike"
                % (", ".join(repr(n) for n in names), why))
        first = slots[0][1][slots[0][2]]
        for owner, table, attr in slots[1:]:
            table[attr] = first
