"""Calibration: the paper's objectives, and accuracy of the calibrated LeNet-5."""

import numpy as np
import torch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radix import network
from radix.calibrate import CalibrationError, CalibrationSettings, best_weight_fl, calibrate, l1_error
from radix.datasets import load_split
from radix.ingest import ingest
from radix_models import load_builtin


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(1e-4, 1e4), st.sampled_from([4, 8, 16]))
def test_weight_fl_minimises_l1_over_a_wide_window(seed, scale, bits):
    values = np.random.default_rng(seed).standard_normal(200) * scale
    chosen = best_weight_fl(values, bits)
    best = l1_error(values, chosen, bits)
    assert all(best <= l1_error(values, fl, bits) for fl in range(chosen - 3 * bits, chosen + 3 * bits))


def test_settings_are_validated():
    with pytest.raises(ValueError, match="width 12"):
        CalibrationSettings(bits=12)
    with pytest.raises(CalibrationError, match="weight bits 9 for 'fc'"):
        CalibrationSettings(bits=8, weight_bits={"fc": 9})


@pytest.fixture(scope="module")
def lenet():
    x_train, _ = load_split("mnist5k", "train")
    x_test, y_test = load_split("mnist5k", "test")
    graph, _ = ingest(load_builtin("lenet5"), (1, 28, 28))
    float_pred = np.argmax(graph.forward(x_test)[graph.output], axis=1)
    return graph, x_train, x_test, y_test, float(np.mean(float_pred == y_test))


def accuracy(program, x, y):
    return float(np.mean(network.predict(network.logits(program, x)) == y))


@pytest.mark.parametrize("bits, budget", [(8, 0.005), (16, 0.001)])
def test_lenet5_dynamic_fixed_point_accuracy(lenet, bits, budget):
    layers, x_train, x_test, y_test, float_acc = lenet
    program = calibrate(layers, x_train, CalibrationSettings(bits=bits))
    assert accuracy(program, x_test, y_test) >= float_acc - budget


def test_per_channel_and_fc4_and_static_run(lenet):
    layers, x_train, x_test, y_test, float_acc = lenet
    sub = x_train[:500]
    per_channel = calibrate(layers, sub, CalibrationSettings(bits=8, per_channel=True))
    assert len(per_channel.layers[0].fl_w) == 6
    fc4 = calibrate(layers, sub, CalibrationSettings(bits=8, weight_bits={"fc": 4}))
    assert [l.weight_bits for l in fc4.layers] == [8, 8, 4, 4, 4]
    assert max(int(np.abs(l.weights).max()) for l in fc4.layers[2:]) <= 8
    static = calibrate(layers, sub, CalibrationSettings(bits=8, static=True))
    assert len({l.fl_out for l in static.layers}) == 1 and len({l.fl_w[0] for l in static.layers}) == 1
    for program in (per_channel, fc4):
        assert accuracy(program, x_test, y_test) >= float_acc - 0.02


def test_unknown_weight_bits_selector_is_refused(lenet):
    graph, x_train, *_ = lenet
    with pytest.raises(CalibrationError, match="'FC' match no layer"):
        calibrate(graph, x_train[:10], CalibrationSettings(bits=8, weight_bits={"FC": 4}))
    by_name = calibrate(graph, x_train[:50], CalibrationSettings(bits=8, weight_bits={"classifier.3": 4}))
    assert [l.weight_bits for l in by_name.layers] == [8, 8, 8, 4, 8]


class _Residual(torch.nn.Module):
    """conv -> (add the input) -> relu, a concatenation and a pooled head: every graph rule."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(2, 2, 3, padding=1)
        self.b = torch.nn.Conv2d(2, 3, 1)
        self.c = torch.nn.Conv2d(5, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        y = torch.relu(self.a(x) + x)
        z = torch.cat([y, self.b(x)], dim=1)
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(self.c(z), 1), 1))


@pytest.mark.parametrize("rule", ["greedy", "maxabs"])
@pytest.mark.parametrize("bits", [8, 16])
def test_graph_calibration_rules(rule, bits):
    torch.manual_seed(3)
    model = _Residual().eval()
    graph, _ = ingest(model, (2, 6, 6))
    x = np.random.default_rng(0).uniform(-1, 1, (64, 2, 6, 6)).astype(np.float32)
    program = calibrate(graph, x, CalibrationSettings(bits=bits, activation_rule=rule))
    fls = program.tensor_fls()
    by_name = {layer.name: layer for layer in program.layers}
    # the add's skip is the network input, read with its one fl
    assert by_name["a"].skip == "input" and by_name["a"].fl_skip == program.input_fl
    # every tensor joined by the concatenation has the concatenation's fl
    concat = next(layer for layer in program.layers if layer.kind == "concat")
    assert {fls[name] for name in concat.inputs} == {concat.fl_out}
    # the program computes close to the float model (its own SQNR well above noise)
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    got = network.logits(program, x) * 2.0 ** -program.output_fl
    noise = np.mean((got - reference) ** 2) / np.mean(reference**2)
    assert noise < (1e-2 if bits == 8 else 1e-6)
    assert all(entry["name"] in fls for entry in program.report["layers"])
