"""compress(budget=...) on torchvision networks with concatenations
(DenseNet, GoogLeNet, ShuffleNet's split and channel shuffle) and gates
(MobileNetV3's and EfficientNet's squeeze-excitation), issue 26: the
parameter count is at most the budget and the returned module computes the
library's compressed model (no hidden state); a planted copy that a budget
only removes keeps the outputs."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import fibration.torch as ft  # noqa: E402
from fibration.torch import _budget  # noqa: E402

# (builder, input size): the smallest size whose pools are fixed pools
# (torchvision_builders.INPUT_SIZE)
NETWORKS = [("densenet121", 32), ("googlenet", 45), ("shufflenet_v2_x0_5", 32),
            ("mobilenet_v3_small", 32), ("efficientnet_b0", 32)]


def lively(name, size, seed=0, plant=None):
    """The builder's network in eval mode with batch-norm statistics of a
    random batch (GoogLeNet's convolutions started by fan-in: its start of
    std 0.01 gives the same logits for every image at this size), so that
    its outputs depend on the input. plant(model) changes the weights
    before the statistics are taken."""
    torch.manual_seed(seed)
    kwargs = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torchvision.models.get_model(name, weights=None, **kwargs)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d) and name == "googlenet":
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # the statistics of the one batch below
    if plant is not None:
        plant(model)
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, size, size))
    return model.eval()


def nhwc(x):
    """An image batch as the library's graph reads it (units last)."""
    return x.double().permute(0, 2, 3, 1).reshape(len(x), -1).numpy()


@pytest.mark.parametrize("name,size", NETWORKS)
def test_torchvision_budget_is_met_and_the_module_is_its_base(name, size, one_torch_thread):
    model = lively(name, size)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    budget = 0.5
    net = ft._trace(model, x)
    base, info = _budget.base_to_budget(net.graph, budget)
    small, plan = ft.compress(model, x, budget=budget)
    total = ft.count_parameters(model)
    assert ft.count_parameters(small) == info["n_parameters"] <= budget * total
    assert ft.count_parameters(small) > 0.4 * total  # the budget is used, not undershot
    want = base.graph.forward(nhwc(x))
    with torch.no_grad():
        got = small(x).double().numpy()
    spread = np.abs(want - want.mean(0)).max()
    assert spread > 1e-3 * np.abs(want).max()  # outputs depend on the input
    assert np.abs(got.reshape(want.shape) - want).max() <= 1e-4 * np.abs(want).max()
def _copy_rows(module, i, j):
    """Unit j of a convolution or batch norm copies unit i."""
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            tensor = getattr(module, name, None)
            if tensor is not None:
                tensor[j] = tensor[i]


def test_densenet121_budget_that_only_removes_a_copied_stem_channel(one_torch_thread):
    """Stem channel 20 copies 10 (convolution and batch norm): the copy
    travels through every concatenation of the first dense block (whose
    batch-norm statistics, taken after the copy, are alike for both); its
    outgoing weights stay as they are, so the copies feed different
    amounts. A budget of exactly the exact base's parameters removes the
    copy and nothing else."""

    def plant(model):
        _copy_rows(model.features.conv0, 10, 20)
        _copy_rows(model.features.norm0, 10, 20)

    model = lively("densenet121", 32, seed=2, plant=plant)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    total = ft.count_parameters(model)
    # conv0 7 x 7 x 3 + norm0 2, the six first dense layers' norm1 (2) and
    # conv1 input column (128), the first transition's norm (2) and column (128)
    removed = 147 + 2 + 6 * (2 + 128) + 2 + 128
    small, plan = ft.compress(model, x, budget=(total - removed) / total)
    assert ft.count_parameters(small) == total - removed
    assert small.features.conv0.out_channels == 63
    fresh = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        reference, out = model(fresh), small(fresh)
    assert float((reference - out).abs().max()) <= 1e-4 * float(reference.abs().max())
