"""The retuning loop of the seed: compress -> fine-tune -> compress harder ->
repeat, with early stopping on a validation split taken from the training set.

    from fibration.torch import retune
    result = retune(model, x_train, y_train, budgets=(0.5, 0.3, 0.17, 0.1))
    result.model        # the smallest model whose validation loss stayed acceptable
    result.rounds       # per round: budget, parameters, validation loss/accuracy

Each round compresses the current model to the next budget (the fraction of
the ORIGINAL model's parameters; fib_compress_to_budget through
compress(budget=...)), then fine-tunes it for `epochs` epochs on the training
part. Fine-tuning itself stops early when the validation loss has not improved
for `patience` evaluations. The loop stops when a round's validation loss
exceeds the first round's best by more than `max_loss_increase` (relative),
and returns the last model that did not.
"""

import copy
from collections import namedtuple

import torch
import torch.nn.functional as F

from .._errors import FibrationError

Round = namedtuple("Round", "round budget parameters fraction loss_before loss_after "
                            "accuracy_after accepted")
RetuneResult = namedtuple("RetuneResult", "model rounds")


def _evaluate(model, x, y, batch=1024):
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out = model(x[i:i + batch])
            loss += float(F.cross_entropy(out, y[i:i + batch], reduction="sum"))
            correct += int((out.argmax(1) == y[i:i + batch]).sum())
    return loss / len(x), correct / len(x)


def _fine_tune(model, x, y, x_val, y_val, epochs, lr, batch, patience, generator):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best = (_evaluate(model, x_val, y_val)[0], copy.deepcopy(model.state_dict()))
    stale = 0
    steps_per_eval = max(1, len(x) // batch // 4)
    step = 0
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), batch):
            model.train()
            idx = perm[i:i + batch]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            step += 1
            if step % steps_per_eval == 0:
                loss = _evaluate(model, x_val, y_val)[0]
                if loss < best[0]:
                    best, stale = (loss, copy.deepcopy(model.state_dict())), 0
                else:
                    stale += 1
                    if stale >= patience:
                        model.load_state_dict(best[1])
                        return best[0]
    model.load_state_dict(best[1])
    return best[0]


def retune(model, x_train, y_train, budgets=(0.5, 0.3, 0.17, 0.1), val_fraction=0.1,
           epochs=1, lr=1e-3, batch=128, patience=3, max_loss_increase=0.1, seed=0,
           calibration_size=0, verbose=False):
    """Compress -> fine-tune rounds at decreasing budgets; see the module doc.
    x_train, y_train: the training set (a validation split of val_fraction is
    held out of it). calibration_size > 0 passes that many training images to
    compress() as its calibration batch. Returns RetuneResult(model, rounds)."""
    from . import compress, count_parameters
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x_train), generator=g)
    n_val = max(1, int(len(x_train) * val_fraction))
    x_val, y_val = x_train[perm[:n_val]], y_train[perm[:n_val]]
    x_fit, y_fit = x_train[perm[n_val:]], y_train[perm[n_val:]]
    total = count_parameters(model)
    current = copy.deepcopy(model)
    reference = _fine_tune(current, x_fit, y_fit, x_val, y_val, 0, lr, batch, patience, g)
    rounds, accepted_model = [], current
    for r, budget in enumerate(sorted(budgets, reverse=True)):
        # the budget is relative to the original model; the current one is smaller
        fraction = budget * total / count_parameters(current)
        if fraction >= 1:
            continue
        cal = x_fit[:calibration_size] if calibration_size else None
        try:
            small, _ = compress(current, x_fit[:4], budget=fraction, calibration=cal)
        except FibrationError as e:  # below the smallest base: nothing more to do
            if verbose:
                print("round %d: budget %.3f not reachable (%s)" % (r, budget, e))
            break
        loss_before = _evaluate(small, x_val, y_val)[0]
        loss_after = _fine_tune(small, x_fit, y_fit, x_val, y_val, epochs, lr, batch,
                                patience, g)
        acc = _evaluate(small, x_val, y_val)[1]
        ok = loss_after <= reference * (1 + max_loss_increase)
        params = count_parameters(small)
        rounds.append(Round(r, budget, params, params / total, loss_before, loss_after, acc, ok))
        if verbose:
            print("round %d: budget %.3f, %d parameters (%.1f%%), val loss %.4f -> %.4f, "
                  "val acc %.2f%%%s" % (r, budget, params, 100 * params / total, loss_before,
                                        loss_after, 100 * acc, "" if ok else "  (stop)"))
        if not ok:
            break
        current = accepted_model = small
    return RetuneResult(accepted_model, rounds)
