"""Batch norms re-estimated on a batch of the user's inputs: the one step of
a budget that uses data, and only when asked
(compress(..., budget=f, reestimate_batch_norm=xb)).

A lossy compression changes what the batch norms after a merged layer read,
while their stored statistics are the original network's; and a batch norm
whose merged channels disagreed is rebuilt as a fixed scale and shift over
statistics 0 and 1 (_rebuild.rebuild_affine), so replacing its running
statistics alone would undo that scale. Each batch norm of the compressed
module is therefore re-estimated as a whole: its running mean and variance
become the mean and variance of its input on the batch, per channel, and its
weight and bias are set so that each channel's output on the batch has the
mean and standard deviation of the original's outputs of the channels its
class stands for (their averages), both models in eval mode and every batch
norm before it already re-estimated. A batch norm that reads what the
original's read (nothing merged before it or in it) keeps its function
exactly. The parameter count does not change.
"""

import torch


def _norms(module):
    return {name: m for name, m in module.named_modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
            and m.track_running_stats and m.running_mean is not None}


def _moments(x):
    """Per channel (dimension 1), over the batch and every position: the
    mean and the (population) variance, in float64."""
    flat = x.detach().transpose(0, 1).reshape(x.shape[1], -1).double()
    return flat.mean(1), flat.var(1, unbiased=False)


def _eval_forward(module, batch, hooks, kind):
    """module(batch) in eval mode with a hook on each named module; the
    module's mode and hooks as they were afterwards."""
    was_training = module.training
    module.eval()
    handles = [getattr(m, "register_forward_%shook" % kind)(h) for m, h in hooks]
    try:
        with torch.no_grad():
            module(batch)
    finally:
        for handle in handles:
            handle.remove()
        module.train(was_training)


def _class_targets(model, names, plan, batch):
    """{name: (mean, std) per class}: the original's output moments on the
    batch averaged over each class's channels (plan's projection)."""
    original = _norms(model)
    seen = {}
    hooks = [(original[name], (lambda name: lambda m, args, out: seen.__setitem__(
        name, _moments(out)))(name)) for name in names if name in original]
    _eval_forward(model, batch, hooks, "")
    by_module = {e.get("module"): e for e in plan.layers}
    targets = {}
    for name in names:
        entry = by_module.get(name)
        if name not in seen or entry is None:
            raise ValueError("reestimate_batch_norm: batch norm %r of the compressed module "
                             "has no counterpart in the original model and the plan" % name)
        projection = torch.tensor(entry["projection"], dtype=torch.int64)
        n = int(projection.max()) + 1
        count = torch.zeros(n, dtype=torch.float64).index_add_(
            0, projection, torch.ones(len(projection), dtype=torch.float64))
        mean, var = seen[name]
        targets[name] = tuple(torch.zeros(n, dtype=torch.float64).index_add_(
            0, projection, v) / count for v in (mean, var.sqrt()))
    return targets


def reestimate_batch_norm(compressed, plan, model, batch):
    """Re-estimates every batch norm of `compressed` (the result of
    compress(model, x, budget=...) with its `plan`) on `batch`, in place, as
    the module's docstring says; returns how many. ValueError if it has no
    batch norm with running statistics (nothing would change), a batch norm
    has no counterpart in `model`, or the batch has fewer than two samples."""
    norms = _norms(compressed)
    if not norms:
        raise ValueError("reestimate_batch_norm: the compressed module has no batch norm with "
                         "running statistics (nothing to re-estimate)")
    if not torch.is_tensor(batch) or batch.dim() == 0 or batch.shape[0] < 2:
        raise ValueError("reestimate_batch_norm: the batch must be a tensor of at least two "
                         "samples, got %s" % ((tuple(batch.shape),) if torch.is_tensor(batch)
                                              else type(batch).__name__))
    targets = _class_targets(model, list(norms), plan, batch)

    def match(name):
        def hook(norm, args):
            mean, var = _moments(args[0])
            want_mean, want_std = targets[name]
            like = norm.running_mean
            spread = var > 1e-12 * (1.0 + mean * mean)
            norm.running_mean.copy_(mean.to(like.dtype))
            # a constant input stays constant: only its level moves
            norm.running_var.copy_(torch.where(spread, var, norm.running_var.double())
                                   .to(like.dtype))
            if norm.weight is not None:
                sign = torch.where(norm.weight.double() < 0, -1.0, 1.0)
                scale = sign * want_std * ((var + norm.eps) / var.clamp_min(1e-300)).sqrt()
                norm.weight.copy_(torch.where(spread, scale, norm.weight.double()).to(like.dtype))
                norm.bias.copy_(want_mean.to(like.dtype))
            if norm.num_batches_tracked is not None:
                norm.num_batches_tracked.fill_(1)
        return hook

    _eval_forward(compressed, batch, [(norm, match(name)) for name, norm in norms.items()],
                  "pre_")
    return len(norms)
