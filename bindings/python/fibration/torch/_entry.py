"""What every entry point of fibration.torch does first: read the tolerance
it was given, trace the model and check the trace (_safety), count
parameters. Below every entry point, so that each may use it."""

from .. import _core
from . import _statistics
from ._safety import check_trace
from ._trace import trace as _unchecked_trace


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


def _tolerance(eps, tolerance):
    """The tolerance to colour with: any mode the library knows by name
    ('exact', 'abs', 'rel', 'cosine', 'complete', 'ward', optionally
    'scaled+' one of them); 'exact' with eps > 0 means 'abs', as it always
    has here."""
    if not isinstance(tolerance, str):
        raise ValueError("tolerance must be a name such as 'abs' or 'scaled+ward', not %r"
                         % (tolerance,))
    tolerance = tolerance.lower().replace(" ", "")
    _core._tolerance(tolerance)  # ValueError naming the known modes
    if not eps >= 0:
        raise ValueError("eps must be >= 0")
    return "abs" if eps > 0 and tolerance == "exact" else tolerance


def trace(model, example_input, weights_override=None, result_checked=False):
    """The traced Network of `model` (see _trace.trace), checked as every
    entry point checks it (_safety: hooks, modules with weights called
    twice, the reproduction of model(example_input)). With weights_override
    (a colouring aid whose graph differs from the model on purpose) it is
    not checked. result_checked: the caller runs _safety.check_exact on
    what it returns, which stands in for the library graph's forward pass
    (see _safety)."""
    net = _unchecked_trace(model, example_input, weights_override)
    if weights_override is None:
        check_trace(net, example_input, graph_forward=not result_checked)
    return net


def _trace(model, example_input, result_checked=False):
    """trace() for the entry points: the graph also carries every batch
    norm's running statistics (_budget.attach_batch_norm_statistics), which
    budgets read (_statistics.attach_batch_norm_statistics)."""
    net = trace(model, example_input, result_checked=result_checked)
    net.example_input = example_input
    _statistics.attach_batch_norm_statistics(net)
    return net
