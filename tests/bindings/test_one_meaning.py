"""One meaning for one word (issue 23): Python and the `fibration` command
default to the same symmetry and name layers alike, and compressing an
nn.Sequential gives an nn.Sequential; every compressed model prints as its
modules, not as generated code."""

import json
import os
import subprocess

import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

import fibration.torch as ft  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "..", "docs", "examples", "fashion_mlp.safetensors")


@pytest.fixture
def cli(library_dir):
    path = os.path.join(library_dir, "cli", "fibration")
    if not os.path.exists(path):
        pytest.skip("no fibration command beside the library")
    return path


def nested_sequential(seed=0):
    """6-8-8-3 with units 0 and 1 of the first hidden layer planted equal
    (a fiber; their outgoing weights differ, so they are no cover)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(),
                          nn.Sequential(nn.Linear(8, 8), nn.Tanh()), nn.Linear(8, 3))
    with torch.no_grad():
        model[0].weight[1] = model[0].weight[0]
        model[0].bias[1] = model[0].bias[0]
    return model


def test_python_and_command_default_to_the_same_symmetry(cli, tmp_path):
    model, x = nested_sequential(), torch.randn(16, 6)
    path = tmp_path / "m.safetensors"
    ft.save(model, str(path), x)
    run = subprocess.run([cli, "compress", str(path), "-o", str(tmp_path / "b.safetensors"),
                          "--json"], capture_output=True, text=True, check=True)
    summary = json.loads(run.stdout)
    small, plan = ft.compress(model, x)
    assert summary["symmetry"] == plan.symmetry == "fibers"
    assert summary["base_parameters"] == ft.count_parameters(small)
    # the planted fiber is merged by default: it is no cover
    assert ft.count_parameters(small) < ft.count_parameters(model)
    covers, _ = ft.compress(model, x, symmetry="covers")
    assert ft.count_parameters(covers) > ft.count_parameters(small)


def test_python_and_command_default_alike_on_the_shipped_example(cli):
    run = subprocess.run([cli, "analyze", EXAMPLE, "--eps", "0.3", "--json"],
                         capture_output=True, text=True, check=True)
    summary = json.loads(run.stdout)
    model = ft.load(EXAMPLE).double()
    x = torch.rand(8, 784, dtype=torch.float64)
    small, plan = ft.compress(model, x, eps=0.3)
    assert summary["symmetry"] == plan.symmetry
    assert summary["base_parameters"] == ft.count_parameters(small)


def test_layer_names_are_the_command_names(cli, tmp_path):
    model, x = nested_sequential(), torch.randn(16, 6)
    path = tmp_path / "m.safetensors"
    ft.save(model, str(path), x)
    run = subprocess.run([cli, "analyze", str(path), "--json"], capture_output=True,
                         text=True, check=True)
    command = [layer["name"] for layer in json.loads(run.stdout)["layers"]
               if layer["op"] != "input"]
    report = ft.analyze(model, x)
    assert [row["layer"] for row in report] == command == ["0", "2.0", "3"]
    assert report["2.0"] is report["_2_0"]  # the fx node name still finds it
    _, plan = ft.compress(model, x)
    assert plan.layer("2.0") is plan.layer("_2_0")
    assert "2.0" in str(plan) and "_2_0" not in str(plan)
    tracker = ft.FiberTracker(model, x)
    assert set(tracker()) == {"0", "2.0", "3"}


def test_compressed_sequential_is_an_indexable_sequential():
    model, x = nested_sequential(), torch.randn(16, 6)
    small, _ = ft.compress(model, x)
    assert type(small) is nn.Sequential and type(small[2]) is nn.Sequential
    assert small[0].out_features == 7 and isinstance(small[1], nn.ReLU)
    assert small[2][0].in_features == 7 and isinstance(small[2][1], nn.Tanh)
    assert ft.verify(model, small, x).max_rel < 1e-5
    assert list(small.state_dict()) == list(model.state_dict())
    assert "def forward" not in str(small)


def test_sequential_with_merged_inputs_stays_a_module_that_prints_as_modules():
    """A budget that merges inputs adds a module before the first Linear: no
    longer the chain of the Sequential's children, so not an nn.Sequential;
    it still prints as its modules."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 40), nn.ReLU(), nn.Linear(40, 4))
    small, plan = ft.compress(model, torch.randn(16, 12), budget=0.4)
    names = [name for name, _ in small.named_modules()]
    if any(name.endswith("_input_means") for name in names):
        assert type(small) is not nn.Sequential
    else:
        assert type(small) is nn.Sequential
    assert "def forward" not in str(small) and "Linear(" in str(small)


class TwoBranches(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 6)
        self.b = nn.Linear(6, 2)
        self.c = nn.Linear(5, 2)

    def forward(self, x):
        return self.b(torch.relu(self.a(x))) + self.c(x)


class MySequential(nn.Sequential):
    """A subclass may hold more than its children: not rebuilt as one."""
    def describe(self):
        return "mine"


def test_other_models_stay_graph_modules_that_print_as_modules():
    torch.manual_seed(0)
    x = torch.randn(8, 5)
    for model in (TwoBranches(), MySequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))):
        small, _ = ft.compress(model, x)
        assert not isinstance(small, nn.Sequential)
        text = str(small)
        assert "def forward" not in text and "Linear(in_features=5" in text
        assert "def forward" in small.code
        assert ft.verify(model, small, x).max_rel < 1e-5
