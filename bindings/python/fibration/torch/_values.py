"""What a traced fx node computes (Value, TupleValue, Constant) and which axis of a
layout holds the units (CHANNEL_DIM): shared by the tracer (_trace.py), the
converters for layers with positions (_convert.py) and the rebuild
(_rebuild.py), so that none of them imports another to get them.
"""

from dataclasses import dataclass


@dataclass
class Value:
    """What an fx node computes: the units of a group, before or after the
    group's activation."""
    group: int
    activated: bool


@dataclass
class TupleValue:
    """A tuple returned by a layer (LSTM: (output, (h_n, c_n)); attention:
    (output, weights)): the items that are groups, and why the others are not
    supported."""
    items: dict
    why: str = ""


@dataclass
class Constant:
    """A tensor stored on the model (a get_attr node): read only by the
    converters that fold it into a block (layer scale, norm weights, class
    token, position embedding). batch_expanded: made by .expand() over the
    batch (a class token)."""
    target: str
    tensor: object
    batch_expanded: bool = False


CHANNEL_DIM = {"plain": 1, "image": 1, "channels1d": 1, "sequence": 2, "nhwc": 3}
