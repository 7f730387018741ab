"""Model ingestion: graphs of supported operations map to engine layers, the rest is named and refused."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from radix.engine_spec import EngineConfig
from radix.errors import InputError
from radix.ingest import INPUT, InputShapeMismatch, UnsupportedModelError, ingest
from radix_models import load_builtin


def refused(model, shape, **kwargs):
    with pytest.raises(UnsupportedModelError) as info:
        ingest(model, shape, **kwargs)
    return str(info.value)


def randomise_batchnorms(model: nn.Module, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=generator) - 0.5)
    return model.eval()


def assert_float_graph_matches(model, shape, *, batch=3, seed=0):
    """The float engine graph computes what the model computes (BN folded, pools folded...)."""
    graph, findings = ingest(model, shape)
    assert all(f.supported for f in findings)
    x = torch.randn((batch,) + tuple(shape), dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model.double()(x).numpy()
    got = graph.forward(x.numpy())[graph.output]
    np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=1e-9, atol=1e-9)
    return graph


class Block(nn.Module):
    """A ResNet basic block; stride 2 uses Keras-style 'same' padding and a 1x1 projection."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.pad = nn.ZeroPad2d((0, 1, 0, 1)) if stride == 2 else nn.Identity()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 0 if stride == 2 else 1)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.proj = nn.Conv2d(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else None

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(self.pad(x))))
        y = self.bn2(self.conv2(y))
        shortcut = x if self.proj is None else self.proj(x)
        return torch.relu(y + shortcut)


class SmallResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.blocks = nn.Sequential(Block(8, 8, 1), Block(8, 16, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def test_unsupported_layer_named():
    model = nn.Sequential()
    model.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Tanh())
    assert "features.3 (Tanh): not supported by the engine" in refused(model, (1, 12, 12))


def test_every_problem_listed():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sigmoid(), nn.Conv2d(4, 4, 3, dilation=2), nn.ReLU(), nn.MaxPool2d(3))
    message = refused(model, (1, 16, 16))
    assert "1 (Sigmoid): not supported" in message
    assert "2 (Conv2d): dilation" in message
    assert "4 (MaxPool2d): kernel 3" in message


def test_only_the_root_cause_is_reported():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, dilation=2), nn.ReLU(), nn.MaxPool2d(2))
    with pytest.raises(UnsupportedModelError) as info:
        ingest(model, (1, 16, 16))
    bad = [f for f in info.value.findings if not f.supported]
    assert [f.name for f in bad] == ["0"]


def test_modules_after_a_refusal_are_listed_but_not_blamed():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(70000, 2), nn.BatchNorm1d(2, track_running_stats=False))
    with pytest.raises(UnsupportedModelError) as info:
        ingest(model, (1, 12, 12))
    findings = info.value.findings
    assert [f.name for f in findings] == [str(i) for i in range(7)]
    # the Linear's and the BatchNorm's own parameters are at fault whatever their input
    assert [f.name for f in findings if not f.supported] == ["1", "5", "6"]
    assert findings[2].reason == "its input comes from the refused 1: checked on its own only"
    assert findings[6].reason.startswith("BatchNorm without running statistics")


def test_a_first_layer_that_does_not_take_the_input_shape_blames_the_input():
    with pytest.raises(InputShapeMismatch) as info:
        ingest(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), (32, 32, 3))
    mismatch = info.value
    assert isinstance(mismatch, UnsupportedModelError) and isinstance(mismatch, InputError)
    assert (mismatch.layer, mismatch.module_type, mismatch.what, mismatch.expected, mismatch.given,
            mismatch.input_shape, mismatch.channels_last) == ("0", "Conv2d", "channels", 3, 32, (32, 32, 3), True)
    assert [f.name for f in mismatch.findings] == ["0", "1"]
    with pytest.raises(InputShapeMismatch) as info:
        ingest(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), (3, 32, 32))
    assert (info.value.layer, info.value.what, info.value.expected, info.value.given) == ("1", "features", 784, 3072)
    assert not info.value.channels_last
    # a mismatch inside the model is the model's
    with pytest.raises(UnsupportedModelError) as info:
        ingest(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(3, 4, 3)), (1, 12, 12))
    assert type(info.value) is UnsupportedModelError


def test_residual_network_graph_matches_torch():
    model = randomise_batchnorms(SmallResNet())
    graph = assert_float_graph_matches(model, (3, 12, 12))
    by_name = {layer.name: layer for layer in graph.layers}
    # the identity shortcut fused into the block's second conv; of the second conv and the 1x1
    # projection, the add joins the conv (more multiply-accumulates), which then runs last
    assert by_name["blocks.0.conv2"].inputs == ["blocks.0.conv1", "stem.0"] and by_name["blocks.0.conv2"].relu
    assert by_name["blocks.1.conv2"].skip == "blocks.1.proj" and by_name["blocks.1.conv2"].relu
    assert not by_name["blocks.1.proj"].relu
    names = [layer.name for layer in graph.layers]
    assert names.index("blocks.1.proj") < names.index("blocks.1.conv2")
    # Keras 'same' padding of the stride-2 conv fused as (top, left, bottom, right)
    assert by_name["blocks.1.conv1"].padding == (0, 0, 1, 1)
    # global average pooling folded into the Linear
    assert graph.layers[-1].kind == "fc" and graph.layers[-1].modules == ["fc", "pool"]
    assert graph.layers[-1].in_shape == (16 * 6 * 6,)


class TwoBranches(nn.Module):
    """An add of two convolutions of one input, ``wide`` with ``3 * 3 * 8`` products per output,
    ``narrow`` with ``8``."""

    def __init__(self, *, narrow_first: bool):
        super().__init__()
        self.narrow_first = narrow_first
        self.wide = nn.Conv2d(8, 4, 3, padding=1)
        self.narrow = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        if self.narrow_first:
            narrow = self.narrow(x)
            return narrow + self.wide(x)
        wide = self.wide(x)
        return self.narrow(x) + wide


@pytest.mark.parametrize("narrow_first", [False, True])
def test_an_add_joins_the_layer_with_more_macs_whose_reduction_fits(narrow_first, monkeypatch):
    from radix import golden

    model = TwoBranches(narrow_first=narrow_first)
    graph = assert_float_graph_matches(model, (8, 6, 6))
    assert [layer.name for layer in graph.layers] == ["narrow", "wide"]
    assert graph.layers[-1].skip == "narrow"
    # with the add, the wide conv's 72 products per output exceed a limit of 50: the narrow one takes it
    real = golden.max_reduction
    monkeypatch.setattr(golden, "max_reduction", lambda *, add=False, unsigned_in=False: 50 if add else real(
        add=add, unsigned_in=unsigned_in))
    graph = assert_float_graph_matches(model, (8, 6, 6))
    assert [layer.name for layer in graph.layers] == ["wide", "narrow"]
    assert graph.layers[-1].skip == "wide"


def test_layers_are_in_an_order_that_computes_every_input_first():
    graph, _ = ingest(randomise_batchnorms(SmallResNet()), (3, 12, 12))
    known = {INPUT}
    for layer in graph.layers:
        assert set(layer.inputs) <= known
        known.add(layer.name)


class AddOfRectified(nn.Module):
    """Neither operand of the add can absorb it: an identity layer carries it."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 3, 3, padding=1)
        self.b = nn.Conv2d(2, 3, 1)

    def forward(self, x):
        return F.relu(self.a(x)) + F.relu(self.b(x))


def test_add_of_rectified_tensors_becomes_an_identity_layer():
    graph = assert_float_graph_matches(AddOfRectified(), (2, 5, 5))
    assert graph.layers[-1].role == "identity" and len(graph.layers[-1].inputs) == 2


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 3, 3, padding=1)
        self.b = nn.Conv2d(2, 4, 1)
        self.c = nn.Conv2d(7, 2, 3)

    def forward(self, x):
        return self.c(torch.cat([F.relu(self.a(x)), self.b(x)], dim=1))


def test_concatenation():
    graph = assert_float_graph_matches(Concat(), (2, 6, 6))
    concat = next(layer for layer in graph.layers if layer.kind == "concat")
    assert concat.inputs == ["a", "b"] and concat.out_shape == (7, 6, 6)


class Idioms(nn.Module):
    def __init__(self, flatten: str):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding="same")
        self.fc = nn.Linear(4 * 4 * 4, 3)
        self.flatten = flatten

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv(F.pad(x, (0, 0, 0, 0)))), 2)
        if self.flatten == "view":
            x = x.view(x.size(0), -1)
        elif self.flatten == "reshape":
            x = x.reshape(x.shape[0], -1)
        else:
            x = torch.flatten(x, 1)
        return F.log_softmax(self.fc(x), dim=1)


@pytest.mark.parametrize("flatten", ["view", "reshape", "flatten"])
def test_pytorch_idioms(flatten):
    model = Idioms(flatten)
    graph, findings = ingest(model, (1, 8, 8))
    assert [layer.kind for layer in graph.layers] == ["conv", "fc"]
    assert graph.layers[0].relu and graph.layers[0].pool and graph.layers[0].padding == (1, 1, 1, 1)
    assert any("dropped" in f.reason for f in findings if f.type == "F.log_softmax")


def test_average_pooling_as_a_layer_and_folded():
    pooled = nn.Sequential(nn.Conv2d(2, 3, 3), nn.AvgPool2d(2), nn.ReLU(), nn.Conv2d(3, 2, 1))
    graph = assert_float_graph_matches(pooled, (2, 9, 9))
    assert [(layer.name, layer.role) for layer in graph.layers] == [("0", ""), ("1", "avgpool"), ("3", "")]
    mean = nn.Sequential(nn.Conv2d(2, 3, 3), nn.AvgPool2d(3), nn.Flatten(), nn.Linear(12, 4))
    graph = assert_float_graph_matches(mean, (2, 8, 8))  # 6x6 -> 2x2 folded into the Linear
    assert [layer.kind for layer in graph.layers] == ["conv", "fc"]


def test_rectangular_kernels_strides_and_pools_match_torch():
    """A DS-CNN-like front (10x4 kernel, strides 2x2, Keras 'same' padding given as F.pad), an even
    kernel with padding='same' (PyTorch puts the odd padding after), strides 1x2, a 2x1 average
    pool as a layer and an 11x3 global pool folded into the Linear (§7, §10)."""
    model = nn.Sequential(nn.ZeroPad2d((1, 1, 4, 5)), nn.Conv2d(1, 4, (10, 4), stride=2), nn.ReLU(),
                          nn.Conv2d(4, 6, (2, 4), padding="same"), nn.Conv2d(6, 6, (3, 1), stride=(1, 2)),
                          nn.AvgPool2d((2, 1)), nn.AvgPool2d((11, 3)), nn.Flatten(), nn.Linear(6, 3))
    graph = assert_float_graph_matches(randomise_batchnorms(model), (1, 49, 10))
    front, same, strided, pool, fc = graph.layers
    assert front.kernel == (10, 4) and front.stride == (2, 2) and front.padding == (4, 1, 5, 1)
    assert front.out_shape == (4, 25, 5)
    assert same.padding == (0, 1, 1, 2) and same.out_shape == (6, 25, 5)
    assert strided.stride == (1, 2) and strided.out_shape == (6, 23, 3)
    assert pool.role == "avgpool" and pool.kernel == pool.stride == (2, 1)
    assert fc.kind == "fc"


class GlobalMean(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)

    def forward(self, x):
        return self.conv(x).mean((2, 3))


def test_global_mean_of_a_large_map_becomes_a_layer():
    graph = assert_float_graph_matches(GlobalMean(), (2, 11, 11))
    assert graph.layers[-1].role == "avgpool" and graph.layers[-1].kind == "fc"


def test_batchnorm_without_running_statistics_is_named():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False))
    assert "1 (BatchNorm2d): BatchNorm without running statistics" in refused(model, (1, 6, 6))


def test_batchnorm_after_relu_becomes_a_scale_layer():
    model = randomise_batchnorms(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.BatchNorm2d(2)))
    graph = assert_float_graph_matches(model, (1, 6, 6))
    assert graph.layers[-1].role == "identity"


@pytest.mark.parametrize(
    "layer, reason",
    [(nn.Conv2d(1, 2, 16), "kernel 16x16 outside 1..15"), (nn.Conv2d(1, 2, (3, 16)), "kernel 3x16 outside 1..15"),
     (nn.Conv2d(2, 2, 3, dilation=2), "dilation"), (nn.Conv2d(1, 2, 3, stride=(1, 5)), "stride 1x5 outside"),
     (nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"), "padding mode")],
)
def test_conv_limits(layer, reason):
    assert reason in refused(nn.Sequential(layer), (layer.in_channels, 12, 12))


def test_reduction_limit_names_layer():
    model = nn.Sequential(nn.Flatten(), nn.Linear(70000, 2))
    assert "1 (Linear): reduction length 70000 exceeds" in refused(model, (70000, 1, 1))


def test_layer_that_does_not_fit_the_engine_is_refused_with_the_driver_message():
    small = EngineConfig(rows=4, cols=4, wt_depth=64)
    message = refused(nn.Sequential(nn.Conv2d(20, 2, 3)), (20, 8, 8), config=small)
    assert ("0 (Conv2d): does not fit the engine: 180 weight rows per output tile exceed the engine's WT_DEPTH 64"
            in message)


def test_fusion_and_bn_folding_match_torch():
    model = randomise_batchnorms(
        nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5), nn.MaxPool2d(2), nn.ReLU(), nn.Dropout(),
                      nn.Flatten(), nn.Linear(5 * 4 * 4, 6), nn.BatchNorm1d(6), nn.Identity()))
    graph = assert_float_graph_matches(model, (3, 8, 8), batch=4)
    assert [l.kind for l in graph.layers] == ["conv", "fc"]
    assert graph.layers[0].relu and graph.layers[0].pool and graph.layers[0].modules == ["0", "1", "2", "3"]


def test_lenet5_layers():
    graph, _ = ingest(load_builtin("lenet5"), (1, 28, 28))
    assert [(l.name, l.out_shape) for l in graph.layers] == [
        ("features.0", (6, 14, 14)), ("features.3", (16, 5, 5)), ("classifier.1", (120,)),
        ("classifier.3", (84,)), ("classifier.5", (10,))]
    assert [l.inputs for l in graph.layers] == [["input"], ["features.0"], ["features.3"], ["classifier.1"],
                                                ["classifier.3"]]


def test_readme_lists_the_supported_operations():
    from pathlib import Path

    from radix.ingest import supported_operations_markdown

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    begin, end = "<!-- supported operations: begin -->\n", "<!-- supported operations: end -->"
    assert readme[readme.index(begin) + len(begin) : readme.index(end)] == supported_operations_markdown()


@pytest.mark.parametrize("config", [EngineConfig(), EngineConfig(rows=5, cols=3, wt_depth=37, in_depth=4)])
def test_the_stated_linear_limit_is_the_fit_rule(config):
    from radix.ops import fc_input_limit
    from radix.jobs import LayerFitError, band_rows, geometry_of

    limit = fc_input_limit(config)

    def fc(inputs):
        return geometry_of(kind="fc", in_shape=(inputs,), c_out=10, kernel=1, stride=1, padding=(0, 0, 0, 0),
                           pool=False)

    band_rows(fc(limit), config)
    with pytest.raises(LayerFitError):
        band_rows(fc(limit + 1), config)


def test_a_folded_global_pool_counts_only_its_channels():
    """DS-CNN's 25x5 pool folded into its classifier gives a Linear of 64 x 125 = 8,000 inputs,
    beyond the weight bank as a plain fully connected layer; its weights repeat over the pixels,
    so it runs as one summed job and is accepted. A Linear of as many distinct weights is not."""
    from radix_models.mlperf_tiny import dscnn

    graph, _ = ingest(dscnn(), (1, 49, 10))
    assert graph.layers[-1].kind == "fc" and graph.layers[-1].in_shape == (8000,)
    assert "does not fit the engine" in refused(
        nn.Sequential(nn.Conv2d(1, 64, 3, padding=1), nn.Flatten(), nn.Linear(8000, 12)), (1, 25, 5))


def test_check_says_how_a_depthwise_layer_runs():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4), nn.Conv2d(4, 8, 3, groups=2), nn.Conv2d(8, 8, 1))
    _, findings = ingest(model, (4, 9, 9))
    reasons = {f.name: f.reason for f in findings}
    assert reasons["0"].startswith("depthwise: runs on the array as block-diagonal jobs")
    assert reasons["1"].startswith("grouped: ") and reasons["2"] == ""
