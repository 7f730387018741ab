"""ONNX files from PyTorch's default exporter (``torch.onnx.export`` without ``dynamo=False``: the
dynamo exporter, through onnxscript) go through `radix check` and `radix calibrate` as a user runs
them, with layers named after the original modules."""

import json
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from radix.cli import main
from radix.ingest import ingest
from radix.onnx_import import load_onnx
from model_helpers import with_batchnorm_statistics  # tests/model_helpers.py



class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(6 * 4 * 4, 4)

    def forward(self, x):
        return self.head(torch.flatten(self.pool(F.relu(self.bn(self.conv1(x)))), 1))


class ResidualCNN(nn.Module):
    """relu(bn(conv(x)) + x) and a global average pool by x.mean, as ResNets write them."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.stem(x)
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return self.fc(F.relu(x + y).mean((2, 3)))


def export_default(model: nn.Module, shape, path, **kwargs):
    """The exporter a user gets from ``torch.onnx.export(model, x, path)``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn((2,) + shape),), str(path), **kwargs)
    return path


@pytest.fixture()
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return tmp_path


@pytest.mark.parametrize("model, shape, layers, dynamic", [
    (SmallCNN, (1, 8, 8), ["conv1", "head"], False),
    (ResidualCNN, (3, 8, 8), ["stem.0", "conv1", "conv2", "fc"], True),  # a batch dimension of any size
])
def test_default_exporter_check_and_calibrate(capsys, work, model, shape, layers, dynamic):
    model = with_batchnorm_statistics(model())
    kwargs = {"dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamic else {}
    path = export_default(model, shape, work / "model.onnx", **kwargs)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40,) + shape).astype(np.float32)
    np.savez(work / "data.npz", x=x, y=rng.integers(0, 4, len(x)))
    capsys.readouterr()  # the exporter's own progress lines

    # the imported graph computes what the model computes, BatchNorm folded by the exporter or by radix
    graph, _ = ingest(*load_onnx(path))
    with torch.no_grad():
        expected = model(torch.from_numpy(x[:5])).numpy()
    np.testing.assert_allclose(graph.forward(x[:5])[graph.output], expected, rtol=1e-4, atol=1e-4)

    assert main(["check", "model.onnx", "--json"]) == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert [layer["name"] for layer in report["layers"]] == layers
    if model.__class__ is ResidualCNN:
        assert report["layers"][2]["inputs"] == ["conv1", "stem.0"]  # the residual add fused into conv2

    # layer names are the model's, so --weight-bits selects by them (a selector matching none is refused)
    assert main(["calibrate", "model.onnx", "--data", "data.npz", "--weight-bits", f"{layers[0]}=4",
                 "-o", "model.radix", "--json"]) == 0, capsys.readouterr().err
    calibrated = json.loads(capsys.readouterr().out)
    assert calibrated["output"] == "model.radix" and (work / "model.radix").is_file()
