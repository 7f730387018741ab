"""Model ingestion: supported chains map to engine layers, everything else is named and refused."""

import numpy as np
import pytest
import torch
from torch import nn

from radix.ingest import UnsupportedModelError, float_forward, ingest
from radix_models import load_builtin


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        return x + self.conv(x)


def refused(model, shape):
    with pytest.raises(UnsupportedModelError) as info:
        ingest(model, shape)
    return str(info.value)


def test_unsupported_layer_named():
    model = nn.Sequential()
    model.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.AvgPool2d(2))
    assert "features.3 (AvgPool2d): not supported by the engine" in refused(model, (1, 12, 12))


def test_every_problem_listed():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, dilation=2), nn.Sigmoid(), nn.MaxPool2d(3))
    message = refused(model, (1, 16, 16))
    assert "0 (Conv2d): dilation" in message
    assert "1 (Sigmoid): not supported" in message
    assert "2 (MaxPool2d): kernel 3" in message


def test_residual_refused():
    assert "branches, residual" in refused(Residual(), (2, 8, 8))


@pytest.mark.parametrize(
    "layer, reason",
    [(nn.Conv2d(1, 2, 9), "kernel 9x9 outside 1..7"), (nn.Conv2d(1, 2, (3, 5)), "only square kernels"),
     (nn.Conv2d(2, 2, 3, groups=2), "groups=2"), (nn.Conv2d(1, 2, 3, stride=5), "stride"),
     (nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"), "padding mode")],
)
def test_conv_limits(layer, reason):
    assert reason in refused(nn.Sequential(layer), (layer.in_channels, 12, 12))


def test_reduction_limit_names_layer():
    model = nn.Sequential(nn.Flatten(), nn.Linear(70000, 2))
    assert "1 (fc): reduction length 70000 exceeds" in refused(model, (70000, 1, 1))


def test_fusion_and_bn_folding_match_torch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5), nn.MaxPool2d(2), nn.ReLU(),
                          nn.Dropout(), nn.Flatten(), nn.Linear(5 * 4 * 4, 6), nn.BatchNorm1d(6), nn.Identity())
    for bn in (model[1], model[7]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 2)
    model.eval()
    layers, findings = ingest(model, (3, 8, 8))
    assert [l.kind for l in layers] == ["conv", "fc"]
    assert layers[0].relu and layers[0].pool and layers[0].modules == ["0", "1", "2", "3"]
    assert all(f.supported for f in findings)
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        expected = model.double()(x).numpy()
    np.testing.assert_allclose(float_forward(layers, x.numpy())[-1], expected, rtol=1e-10, atol=1e-10)


def test_lenet5_layers():
    layers, _ = ingest(load_builtin("lenet5"), (1, 28, 28))
    assert [(l.name, l.out_shape) for l in layers] == [
        ("features.0", (6, 14, 14)), ("features.3", (16, 5, 5)), ("classifier.1", (120,)),
        ("classifier.3", (84,)), ("classifier.5", (10,))]
