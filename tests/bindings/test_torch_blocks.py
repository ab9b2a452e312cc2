"""fibration.torch on planted-symmetry models of every supported layer kind:
convolutions (grouped, 1-D), batch norm, pooling, flatten, dropout, ResNet
basic blocks, LSTM/GRU stacks with a head on the last step, a
MultiheadAttention wrapper, LayerNorm, Transformer encoder layers and
encoders. Each compresses exactly to the planted widths, computes what the
original computes (float64: 1e-9, float32: 1e-5 relative), is made of
standard torch layers where torch has them, and its plan re-applies."""

import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

import fibration.torch as ft  # noqa: E402
import planted_blocks as pb  # noqa: E402
from fibration.torch._modules import FiberAttention, WeightedLayerNorm  # noqa: E402

TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-5}


def width(module):
    for attr in ("out_features", "out_channels", "num_features", "hidden_size"):
        if hasattr(module, attr):
            return getattr(module, attr)
    raise TypeError(type(module).__name__)


def recurrent_widths(model, name):
    if hasattr(model, name):
        module = getattr(model, name)
        return [module.hidden_size] * module.num_layers
    return [getattr(model, "%s_l%d" % (name, i)).hidden_size
            for i in range(4) if hasattr(model, "%s_l%d" % (name, i))]


def check_compresses(model, x, widths, dtype):
    model, x = model.to(dtype), x.to(dtype)
    small, plan = ft.compress(model, x)
    for name, expected in widths.items():
        if isinstance(expected, list):
            assert recurrent_widths(small, name) == expected, name
        else:
            assert width(small.get_submodule(name)) == expected, name
    diff = ft.verify(model, small, x)
    assert diff.max_rel < TOLERANCE[dtype], diff
    assert plan.params[1] < plan.params[0]
    # again with other inputs than the example
    other = torch.randn_like(x) * 2
    assert ft.verify(model, small, other).max_rel < TOLERANCE[dtype]
    # the plan re-applies and gives the same module
    again, plan2 = ft.compress(model, x, plan=plan)
    assert plan2 == plan
    for (ka, a), (kb, b) in zip(small.state_dict().items(), again.state_dict().items()):
        assert ka == kb and torch.equal(a, b)
    return small, plan


def only_standard_layers(module, allowed=()):
    for m in module.modules():
        if m is module or type(m) is nn.Module or isinstance(m, allowed):
            continue
        assert type(m).__module__.startswith("torch.nn"), type(m)


DTYPES = [torch.float64, torch.float32]
IDS = ["f64", "f32"]


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("pool", [nn.MaxPool2d, nn.AvgPool2d], ids=["max", "avg"])
def test_cnn_conv_batchnorm_pool_flatten_dropout(dtype, pool):
    small, _ = check_compresses(*pb.planted_cnn(pool), dtype)
    only_standard_layers(small)
    assert isinstance(small.get_submodule("features.1"), nn.BatchNorm2d)
    assert isinstance(small.get_submodule("features.3"), pool)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_grouped_conv_keeps_its_groups(dtype):
    small, _ = check_compresses(*pb.planted_grouped_conv(), dtype)
    assert small.get_submodule("0").groups == 2          # block-diagonal base regrouped


def planted_resnext_block(seed=0):
    """A stem and a ResNeXt bottleneck (torchvision's, 4 groups of 4
    channels in its 3 x 3 convolution) whose grouped channels are
    duplicated unevenly per group (kernels and batch norm copied): classes
    {0, 1} {2, 3} | {4, 5, 6} {7} | {8} {9} {10, 11} | {12, 13, 14, 15}."""
    from torchvision.models.resnet import Bottleneck
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                          Bottleneck(16, 4, groups=4), nn.Flatten(), nn.Linear(16 * 36, 5))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                for t in (m.weight, m.bias, m.running_mean):
                    t.copy_(torch.randn(t.shape, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
        block = model[3]
        for copy, of in ((1, 0), (3, 2), (5, 4), (6, 4), (11, 10), (13, 12), (14, 12), (15, 12)):
            block.conv2.weight[copy] = block.conv2.weight[of]
            for t in (block.bn2.weight, block.bn2.bias, block.bn2.running_mean,
                      block.bn2.running_var):
                t[copy] = t[of]
    return model.eval(), torch.randn(2, 3, 6, 6, generator=g)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_grouped_conv_with_uneven_classes_stays_grouped(dtype):
    """The grouped convolution's base keeps its 4 groups, with as many
    classes in each (3: units leave the classes of groups with fewer), so
    it has fewer parameters than the original and computes its outputs."""
    pytest.importorskip("torchvision")
    model, x = planted_resnext_block()
    small, plan = check_compresses(model, x, {"3.conv2": 12, "3.bn2": 12}, dtype)
    conv = small.get_submodule("3.conv2")
    assert conv.groups == 4 and conv.weight.shape == (12, 4, 3, 3)
    for name, module in small.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            original = model.get_submodule(name)
            assert module.weight.numel() <= original.weight.numel(), name


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_conv1d_batchnorm1d_avgpool1d(dtype):
    small, _ = check_compresses(*pb.planted_conv1d(), dtype)
    only_standard_layers(small)
    assert isinstance(small.get_submodule("0"), nn.Conv1d)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_resnet_basic_block(dtype):
    small, _ = check_compresses(*pb.planted_resnet(), dtype)
    only_standard_layers(small)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_mlp_with_batchnorm1d_layernorm_dropout(dtype):
    small, _ = check_compresses(*pb.planted_mlp_norms(), dtype)
    assert isinstance(small.get_submodule("net.5"), WeightedLayerNorm)
    assert small.get_submodule("net.5").counted == 8


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("base_widths", [(3, 3), (3, 2), (2,)], ids=["same", "differ", "one"])
def test_recurrent_stack_with_head_on_last_step(dtype, kind, base_widths):
    small, _ = check_compresses(*pb.planted_recurrent(kind, base_widths), dtype)
    only_standard_layers(small)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_multihead_attention_wrapper(dtype):
    small, plan = check_compresses(*pb.planted_attention(), dtype)
    only_standard_layers(small, FiberAttention)
    attention = small.mha
    assert attention.head_start == [0, 3, 7]              # (q0, k0) counts twice
    assert attention.pair_multiplicity.tolist()[:3] == [2, 1, 1]
    assert abs(attention.scale - 0.5) < 1e-15              # 1/sqrt(4): the original's
    assert plan.layer("mha.q")["classes"] == 6


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_transformer_encoder_layer(dtype, activation):
    small, _ = check_compresses(*pb.planted_encoder(None, activation), dtype)
    only_standard_layers(small, (FiberAttention, WeightedLayerNorm))


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_transformer_encoder_with_final_norm(dtype):
    check_compresses(*pb.planted_encoder(2, "gelu"), dtype)


def test_pre_norm_encoder_layer():
    check_compresses(*pb.planted_encoder(None, "relu", norm_first=True), torch.float64)


def test_unmerged_model_keeps_its_size_and_function():
    torch.manual_seed(0)
    for model, x in [(pb.SmallCNN().eval(), torch.randn(2, 2, 8, 8)),
                     (pb.Recurrent("gru", 2).eval(), torch.randn(2, 4, 5)),
                     (pb.Encoder(2).eval(), torch.randn(2, 4, 3))]:
        small, plan = ft.compress(model, x)
        assert plan.params[0] == plan.params[1]
        assert ft.verify(model, small, x).max_rel < 1e-5


def test_analyze_reports_every_layer_kind():
    model, x, _ = pb.planted_encoder(2)
    report = ft.analyze(model, x)
    kinds = {row["kind"] for row in report}
    assert {"attention.q", "attention.core", "norm", "sum", "linear"} <= kinds
    assert report["encoder.layers.0.self_attn.q"]["fibers"] == 6
    text = str(report)
    assert "Params:" in text
    model, x, _ = pb.planted_cnn()
    report = ft.analyze(model, x)
    assert report["features_0"]["kind"] == "conv" and report["features_0"]["fibers"] == 3


@pytest.mark.parametrize("make", [pb.planted_cnn, pb.planted_resnet, lambda: pb.planted_encoder(2)[:2]],
                         ids=["cnn", "resnet", "encoder"])
def test_analyze_covers_are_those_fib_color_gives(make):
    """analyze counts covers as the meet of its fibers and opfibers; that is
    what fib_color's covers are, layer by layer."""
    model, x = make()[:2]
    report = ft.analyze(model, x)
    net = ft.trace(model, x)
    covers = net.graph.color("covers")
    checked = 0
    for layer in net.layers:
        if layer.kind == "input":
            continue
        row = next(r for r in report if r["node"] == layer.node)
        assert row["covers"] == covers.num_classes(layer.group), layer.node
        checked += row["covers"] < row["units"]
    assert checked > 0  # some layer really merges
