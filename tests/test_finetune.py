"""Fine-tuning through the engine's arithmetic (radix.finetune): its forward pass is the golden
model's integers exactly, training lowers the loss of the integer network, and the CLI writes an
ordinary program from the trained weights."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from radix import network
from radix.calibrate import CalibrationSettings, calibrate
from radix.cli import main
from radix.finetune import EngineArithmetic, FinetuneError, FinetuneSettings, finetune
from radix.ingest import ingest
from model_helpers import with_batchnorm_statistics  # tests/model_helpers.py


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.conv = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))

    def forward(self, x):
        x = self.stem(x)
        return self.head(torch.relu(self.conv(x) + x))


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 6, 1)
        self.tail = nn.Sequential(nn.ReLU(), nn.Conv2d(10, 6, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 3 * 3, 5))

    def forward(self, x):
        return self.tail(torch.cat([self.a(x), self.b(x)], dim=1))


def chain():
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=(1, 1)), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 2 * 2, 5))


@pytest.mark.parametrize("factory", [chain, Residual, Concat])
@pytest.mark.parametrize("scheme", [{"per_channel": False}, {"per_channel": True}, {"bias_correction": True},
                                    {"activation_rule": "maxabs"}, {"unsigned": False}])
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("positive", [False, True])
def test_forward_is_the_golden_model_exactly(factory, scheme, bits, positive):
    model = with_batchnorm_statistics(factory(), seed=bits)
    x = np.random.default_rng(bits).normal(size=(12, 3, 8, 8)).astype(np.float32)
    if positive:  # non-negative images: an unsigned network input
        x = np.abs(x)
    graph, _ = ingest(model, (3, 8, 8))
    program = calibrate(graph, x, CalibrationSettings.paper(bits=bits, **scheme))
    assert program.input_unsigned == (positive and scheme.get("unsigned", True))
    expected = {result.name: result.values for result in network.run(program, network.quantize_input(program, x))}
    with torch.no_grad():
        got = EngineArithmetic(graph, program)(x)
    for name, values in expected.items():
        np.testing.assert_array_equal(got[name].numpy().astype(np.int64).reshape(values.shape), values, err_msg=name)


def test_finetune_lowers_the_integer_networks_loss_and_keeps_fixed_layers():
    from radix.datasets import load_split
    from radix_models import load_builtin

    x, y = load_split("digits", "train")
    graph, _ = ingest(load_builtin("digitsnet"), (1, 8, 8))
    settings = CalibrationSettings.paper(bits=8, weight_bits={"conv": 4, "fc": 4})
    program = calibrate(graph, x, settings)
    trained, report = finetune(graph, program, x, y, FinetuneSettings(epochs=2, lr=3e-4))
    assert report["loss_last_epoch"] < report["loss_first_epoch"]
    assert report["train_top1_after"] >= report["train_top1_before"]
    changed = [a.name for a, b in zip(graph.layers, trained.layers)
               if a.weight is not None and not np.array_equal(a.weight, b.weight)]
    assert changed == [layer.name for layer in graph.engine_layers() if not layer.role]
    before = np.mean(network.predict(network.logits(program, x)) == y)
    after = np.mean(network.predict(network.logits(calibrate(trained, x, settings), x)) == y)
    assert after >= before


def test_settings_and_labels_are_checked():
    with pytest.raises(FinetuneError, match="--finetune 0"):
        FinetuneSettings(epochs=0)
    with pytest.raises(FinetuneError, match="--finetune-lr"):
        FinetuneSettings(epochs=1, lr=float("nan"))
    model = with_batchnorm_statistics(chain(), seed=0)
    x = np.random.default_rng(0).normal(size=(4, 3, 8, 8)).astype(np.float32)
    graph, _ = ingest(model, (3, 8, 8))
    program = calibrate(graph, x, CalibrationSettings.paper(bits=8))
    with pytest.raises(FinetuneError, match="labels outside the model's 5 classes"):
        finetune(graph, program, x, np.array([0, 1, 2, 7]), FinetuneSettings(epochs=1))


def test_cli_finetune_writes_an_ordinary_program(tmp_path, capsys):
    out = tmp_path / "d.radix"
    assert main(["calibrate", "digitsnet", "--data", "digits", "--images", "300", "--finetune", "1",
                 "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["finetune"]["epochs"] == 1
    assert main(["run", str(out), "--data", "digits", "--images", "5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bit_exact"] is True
    assert main(["calibrate", "digitsnet", "--data", "digits", "--finetune", "0", "-o", str(out)]) == 2
    assert "argument --finetune: 0 is not a positive count" in capsys.readouterr().err


def test_requantized_program_is_the_trained_network_and_fine_tuning_pays_at_two_bits():
    """With 2-bit weights the calibrated digitsnet loses ~12 pp; fine-tuning keeps the program the
    training optimised (its fls), which is exactly EngineArithmetic's integers, and wins on the
    held-out calibration images."""
    from radix.datasets import load_split
    from radix.finetune import finetune_program, requantized
    from radix_models import load_builtin

    x, y = load_split("digits", "train")
    graph, _ = ingest(load_builtin("digitsnet"), (1, 8, 8))
    settings = CalibrationSettings(bits=8, weight_bits={"conv": 2, "fc": 2})
    program = calibrate(graph, x, settings)
    trained, kept, report = finetune_program(graph, program, x, y, FinetuneSettings(epochs=4, lr=3e-4),
                                             lambda g: calibrate(g, x, settings))
    scores = report["held_out_scores"]
    assert report["kept"] == max(scores, key=scores.get) != "calibrated, not fine-tuned"
    assert scores[report["kept"]] > scores["calibrated, not fine-tuned"] + 0.03
    fixed = requantized(program, trained)
    with torch.no_grad():
        got = EngineArithmetic(trained, fixed)(x[:50])
    expected = network.run(fixed, network.quantize_input(fixed, x[:50]))
    for result in expected:
        np.testing.assert_array_equal(got[result.name].numpy().astype(np.int64).reshape(result.values.shape),
                                      result.values)
