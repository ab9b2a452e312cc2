"""Every classification builder of torchvision through fibration.torch.

For each builder of `torchvision.models.list_models(module=torchvision.models)`
(random weights, eval mode) `check(name)` compresses the model exactly and
returns one of

- "exact": the compressed model's outputs on a fresh input equal the
  original's (max relative difference <= 1e-5, relative to the largest
  output) and it has no more parameters;
- "refused": UnsupportedModelError (or its TraceMismatchError) naming the
  module and the operation;
- "WRONG": anything else (a different output, more parameters, another
  exception) — never acceptable.

Inputs are as small as each architecture allows: the smallest square size
at which every ceil_mode pooling computes what floor mode does and every
adaptive pooling divides its input (found with the rule in INPUT_SIZE's
comment). The test runs the builders in QUICK by default and all of them
with FIBRATION_TORCHVISION_SLOW=1.

Run as a script for the table of docs/python.md:
`python3 tests/bindings/torchvision_builders.py --log results.jsonl [names...]`,
then `... --log results.jsonl --from-log --docs docs/python.md`.
"""

import json
import os
import sys
import time
import traceback
import warnings

import torch

# The smallest input size (1 x 3 x S x S) that every layer of the family
# accepts and at which ceil_mode pools and adaptive pools are fixed pools:
# (size - kernel + 2 padding) divisible by the stride, the input of an
# adaptive pool a multiple of its output. AlexNet and VGG end in an
# adaptive pool to 6 x 6 and 7 x 7, which only their full 224 input meets.
INPUT_SIZE = {"alexnet": 224, "vgg": 224, "squeezenet1_0": 35, "squeezenet1_1": 32,
              "googlenet": 45, "inception_v3": 75, "vit_h_14": 28, "maxvit_t": 224}
DEFAULT_SIZE = 32
# builders whose image size is an argument (ViT checks it)
IMAGE_SIZE_ARGUMENT = ("vit_",)
# builders that torchvision starts with weight matrices of zeros (ViT's class
# token and head): their outputs would be zero whatever the compressed model
# computed, so those weights get small random values (make())
ZERO_STARTED = ("vit_",)
# The default test (and so CI) runs the builders that took at most 20 s each
# on the project's 2-core host under load, and the smallest of every family
# (43 builders, about 8 minutes there); the others, wider or deeper versions
# of the same blocks (VGG at 224 x 224, the largest EfficientNets, RegNets,
# ResNeXts, ConvNeXts, Swins and ViTs, up to 632 million parameters), run with
# FIBRATION_TORCHVISION_SLOW=1 (docs/python.md has the figures).
QUICK = {"alexnet", "convnext_tiny", "densenet121", "densenet161", "efficientnet_b0",
         "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_v2_s",
         "googlenet", "inception_v3", "maxvit_t", "mnasnet0_5", "mnasnet0_75", "mnasnet1_0",
         "mnasnet1_3", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
         "regnet_x_16gf", "regnet_x_1_6gf", "regnet_x_3_2gf", "regnet_x_400mf",
         "regnet_x_800mf", "regnet_x_8gf", "regnet_y_1_6gf", "regnet_y_3_2gf",
         "regnet_y_400mf", "regnet_y_800mf", "regnet_y_8gf", "resnet18", "resnet34",
         "resnet50", "resnext50_32x4d", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0",
         "shufflenet_v2_x1_5", "shufflenet_v2_x2_0", "squeezenet1_0", "squeezenet1_1",
         "swin_t", "swin_v2_t", "vit_b_32"}


def is_slow(name):
    return name not in QUICK


TOLERANCE = 1e-5


def builders():
    import torchvision
    return sorted(torchvision.models.list_models(module=torchvision.models))


def input_size(name):
    for prefix, size in INPUT_SIZE.items():
        if name == prefix or name.startswith(prefix):
            return size
    return DEFAULT_SIZE


def make(name):
    import torchvision
    size = input_size(name)
    kwargs = {}
    if name.startswith(IMAGE_SIZE_ARGUMENT):
        kwargs["image_size"] = size
    if name in ("googlenet", "inception_v3"):
        kwargs["init_weights"] = True  # silences torchvision's FutureWarning
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
    if name.startswith(ZERO_STARTED):
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.dim() >= 2 and not parameter.any():
                    parameter.normal_(0, 0.02)
    return model, size


def relative_difference(reference, other):
    scale = float(reference.abs().max())
    return float((reference.double() - other.double()).abs().max()) / (scale or 1.0)


def check(name):
    """(status, detail) for one builder; see the module's docstring."""
    import fibration.torch as ft
    try:
        model, size = make(name)
    except Exception as e:  # noqa: BLE001  (the test's own setup, not the package)
        return "WRONG", "the builder failed at this input size: %s: %s" % (type(e).__name__, e)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    try:
        small, _ = ft.compress(model, x)
    except ft.UnsupportedModelError as e:
        return "refused", str(e)
    except MemoryError as e:  # the machine's limit, not the package's answer
        return "no memory", "out of memory on this machine (%s)" % e
    except Exception as e:  # noqa: BLE001  (anything else is a defect)
        if "FIB_E_NOMEM" in str(e) or "can't allocate memory" in str(e):
            return "no memory", "out of memory on this machine (%s)" % e
        return "WRONG", "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc())
    fresh = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference, out = model(fresh), small.eval()(fresh)
    if out.shape != reference.shape:
        return "WRONG", "output shape %s, expected %s" % (tuple(out.shape),
                                                         tuple(reference.shape))
    diff = relative_difference(reference, out)
    params = (ft.count_parameters(model), ft.count_parameters(small))
    if not diff <= TOLERANCE or params[1] > params[0]:
        return "WRONG", "relative difference %.3g, parameters %d -> %d" % (diff, *params)
    return "exact", "relative difference %.1g, %d parameters" % (diff, params[1])


def short_reason(detail):
    """The first clause of a refusal: the module and the operation."""
    text = detail.splitlines()[0] if detail else ""
    return text if len(text) <= 150 else text[:147] + "..."


def table(results):
    lines = ["| builder | input | status | detail |", "|---|---|---|---|"]
    for name, (status, detail, seconds) in sorted(results.items()):
        slow = " (slow)" if is_slow(name) else ""
        lines.append("| %s%s | %d | %s | %s |" % (
            name, slow, input_size(name), status,
            short_reason(detail).replace("|", "\\|")))
    return "\n".join(lines)


BEGIN, END = "<!-- torchvision table begin -->", "<!-- torchvision table end -->"


def update_docs(path, text):
    with open(path) as f:
        doc = f.read()
    if BEGIN not in doc:
        raise SystemExit("%s has no %s marker" % (path, BEGIN))
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w") as f:
        f.write(head + BEGIN + "\n" + text + "\n" + END + tail)


def main(argv):
    """[--docs FILE] [--log FILE] [--from-log] [names...]: checks the builders
    (all by default), appends each result to the --log file (JSON lines),
    and writes the table of every builder into --docs (from the log's
    latest result per builder with --from-log, so runs can be split)."""
    options = {}
    while argv and argv[0].startswith("--"):
        flag = argv.pop(0)
        options[flag] = True if flag == "--from-log" else argv.pop(0)
    results = {}
    names = [] if options.get("--from-log") else (argv or builders())
    for name in names:
        start = time.time()
        status, detail = check(name)
        results[name] = (status, detail, time.time() - start)
        print("%-22s %-8s %5.1fs %s" % (name, status, time.time() - start,
                                        short_reason(detail)), flush=True)
        if "--log" in options:
            with open(options["--log"], "a") as f:
                f.write(json.dumps([name] + list(results[name])) + "\n")
    if options.get("--from-log"):
        with open(options["--log"]) as f:
            for line in f:
                name, status, detail, seconds = json.loads(line)
                results[name] = (status, detail, seconds)
        for name in sorted(set(builders()) - set(results)):
            results[name] = ("not run", "not run for this table (it did not finish on the "
                             "machine that made it); FIBRATION_TORCHVISION_SLOW=1 runs it", 0.0)
    counts = {}
    for status, _, _ in results.values():
        counts[status] = counts.get(status, 0) + 1
    summary = ", ".join("%d %s" % (n, s) for s, n in sorted(counts.items()))
    print(summary)
    if "--docs" in options:
        update_docs(options["--docs"], table(results) + "\n\n" + summary + ".")
    return 1 if "WRONG" in counts else 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bindings", "python"))
    sys.exit(main(sys.argv[1:]))
