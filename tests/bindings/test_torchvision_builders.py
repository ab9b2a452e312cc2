"""Every torchvision classification builder (torchvision_builders.py):
compressed exactly, or refused naming the module and the operation; never
a wrong model. Builders outside torchvision_builders.QUICK run with
FIBRATION_TORCHVISION_SLOW=1."""

import os

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")

import torchvision_builders as tb  # noqa: E402

# families that must compress exactly (the rest may still be refused, by name)
MUST_BE_EXACT = ("resnet", "resnext", "wide_resnet", "vgg", "alexnet", "squeezenet",
                 "densenet", "googlenet", "inception_v3", "mnasnet", "shufflenet",
                 "regnet", "convnext", "mobilenet", "efficientnet", "vit_")

SLOW_ENABLED = os.environ.get("FIBRATION_TORCHVISION_SLOW") == "1"


def _params():
    for name in tb.builders():
        marks = []
        if tb.is_slow(name) and not SLOW_ENABLED:
            marks.append(pytest.mark.skip(reason="slow: set FIBRATION_TORCHVISION_SLOW=1"))
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", list(_params()))
def test_builder_is_compressed_exactly_or_refused_by_name(name):
    status, detail = tb.check(name)
    assert status != "WRONG", detail
    if name.startswith(MUST_BE_EXACT):
        assert status == "exact", detail
    if status == "refused":
        # the refusal names the module, function or method and the fx node
        assert " at node " in detail or "cannot be traced" in detail, detail


def test_the_table_lists_every_builder():
    names = tb.builders()
    assert len(names) == len(set(names)) >= 80
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "python.md")) as f:
        doc = f.read()
    table = doc.split(tb.BEGIN, 1)[1].split(tb.END, 1)[0]
    for name in names:
        assert "| %s " % name in table, name
