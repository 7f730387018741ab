"""`radix check` and `radix calibrate` on a user's .py model, run from another directory: every
module is listed once with yes/NO and a reason, layers are named after their own modules, and
images in the wrong layout are blamed on the input, not the model."""

import json
import sys
import textwrap

import numpy as np
import pytest

from radix.cli import main

MODELS = textwrap.dedent("""
    import torch
    from torch import nn

    class Refused(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
            self.act = nn.Tanh()
            self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 8 * 8, 10)
            self.fc2 = nn.Linear(10, 10)

        def forward(self, x):
            return self.fc2(self.fc(torch.flatten(self.conv2(self.act(self.conv1(x))), 1)))

    class BigLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 64 * 64, 10)
            self.fc2 = nn.Linear(10, 10)

        def forward(self, x):
            return self.fc2(self.fc(torch.flatten(self.conv1(x), 1)))

    class Pooled(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
            self.gap = nn.AdaptiveAvgPool2d(1)

        def forward(self, x):
            return torch.flatten(self.gap(self.conv1(x)), 1)

    def refused():
        return Refused()

    def big_linear():
        return BigLinear()

    def pooled():
        torch.manual_seed(0)
        return Pooled()

    def mlp():
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
""")


@pytest.fixture()
def user_dir(tmp_path, monkeypatch):
    """The model in tmp_path/models, the command run in tmp_path/work (sys.path restored after)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "nets.py").write_text(MODELS)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path


def check_json(capsys, factory: str, shape: str) -> tuple[int, dict]:
    status = main(["check", f"../models/nets.py:{factory}", "--input-shape", shape, "--json"])
    return status, json.loads(capsys.readouterr().out)


def test_every_module_after_a_refusal_is_listed(capsys, user_dir):
    status, report = check_json(capsys, "refused", "1,8,8")
    assert status == 1 and not report["supported"]
    modules = report["modules"]
    assert [m["name"] for m in modules] == ["conv1", "act", "conv2", "flatten", "fc", "fc2"]
    assert [m["supported"] for m in modules] == [True, False, True, True, True, True]
    assert modules[1]["reason"] == "not supported by the engine"
    assert all(m["reason"].startswith("its input comes from the refused act") for m in modules[2:])
    main(["check", "../models/nets.py:refused", "--input-shape", "1,8,8"])
    assert capsys.readouterr().out.rstrip().endswith("nets.py:refused: 1 unsupported")


def test_a_linear_too_big_for_the_engine_is_listed_once(capsys, user_dir):
    status, report = check_json(capsys, "big_linear", "1,64,64")
    assert status == 1
    modules = report["modules"]
    assert [m["name"] for m in modules] == ["conv1", "flatten", "fc", "fc2"]
    fc = modules[2]
    assert fc["type"] == "Linear" and not fc["supported"] and fc["reason"].startswith("does not fit the engine: ")
    assert [m["supported"] for m in modules] == [True, True, False, True]


def test_a_global_average_pool_layer_is_named_after_its_module(capsys, user_dir):
    status, report = check_json(capsys, "pooled", "1,8,8")
    assert status == 0
    assert [(layer["name"], layer["role"], layer["modules"]) for layer in report["layers"]] == [
        ("conv1", "", ["conv1"]), ("gap", "avgpool", ["gap"])]


@pytest.mark.parametrize("factory, images, expected", [
    ("pooled", np.zeros((6, 8, 8, 1), np.float32),  # channels last
     "conv1 (Conv2d) expects 1 input channels, the input has 8 channels (8x8x1 as C,H,W): its last dimension is 1, "
     "so the images look channels-last"),
    ("pooled", np.zeros((6, 3, 8, 8), np.float32), "conv1 (Conv2d) expects 1 input channels, the input has 3"),
    ("mlp", np.zeros((6, 3, 8, 8), np.float32), "1 (Linear) expects 64 input features, the input has 192 features"),
])
def test_data_in_the_wrong_layout_is_an_input_error(capsys, user_dir, factory, images, expected):
    np.savez("data.npz", x=images, y=np.zeros(len(images), np.int64))
    status = main(["calibrate", f"../models/nets.py:{factory}", "--data", "data.npz", "-o", "p.radix"])
    err = capsys.readouterr().err
    assert status == 2, err
    assert expected in err and err.count("radix: error:") == 1
    assert not (user_dir / "work" / "p.radix").exists()
