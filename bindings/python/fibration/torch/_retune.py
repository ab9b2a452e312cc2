"""The retuning loop of the seed: compress -> fine-tune -> compress harder ->
repeat, with early stopping on a validation split taken from the training set.
Here the fine-tuning and the result types; the loop, retune(), stands in the
package beside compress(), which each round calls.

    from fibration.torch import retune
    result = retune(model, x_train, y_train, budgets=(0.5, 0.3, 0.17, 0.1))
    result.model        # the smallest model whose validation loss stayed acceptable
    result.rounds       # per round: budget, parameters, validation loss/accuracy

Each round compresses the current model to the next budget (the fraction of
the ORIGINAL model's parameters; fib_compress_to_budget through
compress(budget=...)), then fine-tunes it for `epochs` epochs on the training
part. Fine-tuning itself stops early when the validation loss has not improved
for `patience` evaluations. The loop stops when a round's validation loss
after fine-tuning exceeds the original model's validation loss by more than
`max_loss_increase` (relative), and returns the last model that did not.
"""

import copy
from collections import namedtuple

import torch
import torch.nn.functional as F

Round = namedtuple("Round", "round budget parameters fraction loss_before loss_after "
                            "accuracy_after accepted")
RetuneResult = namedtuple("RetuneResult", "model rounds")


def evaluate(model, x, y, batch=1024):
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out = model(x[i:i + batch])
            loss += float(F.cross_entropy(out, y[i:i + batch], reduction="sum"))
            correct += int((out.argmax(1) == y[i:i + batch]).sum())
    return loss / len(x), correct / len(x)


def fine_tune(model, x, y, x_val, y_val, epochs, lr, batch, patience, generator):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best = (evaluate(model, x_val, y_val)[0], copy.deepcopy(model.state_dict()))
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
                loss = evaluate(model, x_val, y_val)[0]
                if loss < best[0]:
                    best, stale = (loss, copy.deepcopy(model.state_dict())), 0
                else:
                    stale += 1
                    if stale >= patience:
                        model.load_state_dict(best[1])
                        return best[0]
    model.load_state_dict(best[1])
    return best[0]
