"""Calibration: the paper's objectives, and accuracy of the calibrated LeNet-5."""

import numpy as np
import torch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radix import network, ops
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


# -- the rules, the chooser and bias correction --------------------------------------------------

from radix import golden  # noqa: E402
from radix.calibrate import (  # noqa: E402
    CANDIDATES, _accumulate, _calibrate_pass, _fast_output, int_range, max_abs_fl, quantization_error, weight_fl,
)


def test_int_range_is_the_one_signedness_hook():
    assert int_range(8) == golden.int_range(8) == (-128, 127)
    assert int_range(16) == golden.int_range(16)
    assert int_range(8, signed=False) == (0, 255)
    assert max_abs_fl([1.5], 8) == 6 and max_abs_fl([1.5], 8, signed=False) == 7
    assert max_abs_fl([-100.0, 3.0], 8) == 0 and max_abs_fl([0.0], 8) == 7


def test_settings_options_are_validated_and_named():
    with pytest.raises(CalibrationError, match="weight rule 'l2'"):
        CalibrationSettings(weight_rule="l2")
    with pytest.raises(CalibrationError, match="activation rule 'percentile'"):
        CalibrationSettings(activation_rule="percentile")
    with pytest.raises(CalibrationError, match="holdout"):
        CalibrationSettings(holdout=1.0)
    assert not CalibrationSettings().forced
    paper = CalibrationSettings.paper()
    assert paper.forced and paper.describe() == "per-layer l1 weights, greedy activations"
    assert CalibrationSettings(static=True).resolved() == CalibrationSettings.paper(static=True)
    # options the caller sets are forced into every candidate; duplicates dropped
    partial = CalibrationSettings(activation_rule="maxabs").candidates()
    assert {c.activation_rule for c in partial} == {"maxabs"} and len(partial) == 2 and partial[0] != partial[1]
    assert len(CalibrationSettings().candidates()) == len(CANDIDATES)


def test_weight_rules_on_an_outlier():
    values = np.concatenate([np.random.default_rng(1).standard_normal(2000) * 0.05, [1.0]])
    base = max_abs_fl(values, 8)
    assert weight_fl(values, 8, "maxabs") == base
    assert weight_fl(values, 8, "l1") > base  # L1 saturates the outlier to resolve the bulk
    assert weight_fl(values, 8, "mse") in (base, base + 1)
    mse = weight_fl(values, 8, "mse")
    assert all(quantization_error(values, mse, 8, "mse") <= quantization_error(values, fl, 8, "mse")
               for fl in range(base - 8, base + 9))


class _Layer:
    """The attributes of a FloatLayer that the arithmetic helpers read."""

    def __init__(self, kind="conv", kernel=(3, 3), stride=(1, 1), padding=(1, 1, 1, 1), relu=False, pool=False,
                 groups=1):
        self.kind, self.kernel, self.stride, self.padding, self.relu, self.pool = kind, kernel, stride, padding, relu, pool
        self.groups, self.name = groups, "layer"

    @property
    def operation(self):
        return ops.of(self)


@pytest.mark.parametrize("width", [8, 16])
@pytest.mark.parametrize("kernel, stride, padding, skip", [
    ((3, 3), (1, 1), (1, 1, 1, 1), False), ((3, 3), (2, 2), (0, 0, 1, 1), True), ((1, 1), (2, 2), (0, 0, 0, 0), True),
    ((5, 5), (1, 1), (2, 2, 2, 2), False), ((5, 2), (2, 1), (2, 1, 0, 0), True), ((1, 3), (1, 3), (0, 2, 0, 1), False)])
@pytest.mark.parametrize("unsigned_skip", [False, True])
@pytest.mark.parametrize("groups", [1, 7])
def test_fast_accumulate_is_the_golden_models(width, kernel, stride, padding, skip, unsigned_skip, groups):
    rng = np.random.default_rng(kernel[0] * 100 + kernel[1] * 10 + stride[0])
    lo, hi = int_range(width)
    x = rng.integers(lo, hi + 1, (3, 7, 9, 8))
    x[0] = lo  # the extremes, where float32 would round
    c_out = 14 if groups > 1 else 5  # depthwise with a depth multiplier of 2
    w = rng.integers(lo, hi + 1, (c_out, 7 // groups) + kernel)
    w[0] = lo
    b = rng.integers(-(1 << (2 * width + 10)), 1 << (2 * width + 10), c_out)
    layer = _Layer(kernel=kernel, stride=stride, padding=padding, groups=groups)
    args = {}
    h_out = golden.conv_output_size(9, kernel[0], stride[0], padding[0], padding[2])
    w_out = golden.conv_output_size(8, kernel[1], stride[1], padding[1], padding[3])
    shifts = rng.integers(-3, 4, c_out)
    skip_lo, skip_hi = golden.tensor_range(width, unsigned=unsigned_skip)
    s = (rng.integers(skip_lo, skip_hi + 1, (3, c_out, h_out, w_out)), shifts, unsigned_skip) if skip else None
    if skip:
        args = {"skip": s[0], "skip_shift": shifts.reshape(1, -1, 1, 1), "width": width, "unsigned_skip": unsigned_skip}
    expected = golden.conv_accumulate(x, w, b, stride=stride, pad=padding, groups=groups, **args)
    np.testing.assert_array_equal(_accumulate(layer, x, w, b, s, width), expected)


@pytest.mark.parametrize("relu, pool", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("width", [8, 16])
@pytest.mark.parametrize("unsigned", [False, True])
def test_fast_output_stage_is_the_golden_models(relu, pool, width, unsigned):
    rng = np.random.default_rng(width + relu + 2 * pool)
    acc = rng.integers(-(1 << (2 * width + 12)), 1 << (2 * width + 12), (4, 6, 5, 7))
    acc[0, 0] = rng.integers(-40, 40, (5, 7))  # small values: halves round up, left shifts stay in range
    layer = _Layer(relu=relu, pool=pool)
    for fl_w in ([3], [-2, 0, 5, 9, 30, 60]):  # per layer and per channel: shifts clamped both ways (§5)
        for fl_out in range(-4, 24, 3):
            expected = golden.output_stage(acc, (2 + np.asarray(fl_w) - fl_out) if len(fl_w) > 1 else 2 + fl_w[0] - fl_out,
                                           relu=relu, pool=pool, width=width, unsigned=unsigned)
            values, saturated = _fast_output(layer, acc, 2, fl_w, fl_out, width, count=True, unsigned=unsigned)
            np.testing.assert_array_equal(values.astype(np.int64), expected.values)
            assert saturated == expected.saturated


def test_held_out_logits_of_a_pass_are_the_golden_models():
    """The chooser scores a candidate on the held-out images with the integers the calibration
    pass computed for them: exactly what the golden model gives for that candidate's program."""
    torch.manual_seed(3)
    model = _Residual().eval()
    graph, _ = ingest(model, (2, 6, 6))
    x = np.random.default_rng(0).uniform(-1, 1, (40, 2, 6, 6))
    floats = graph.forward(x)
    fit, held = np.arange(0, 40, 2), np.arange(1, 40, 2)
    for options in CANDIDATES:
        settings = CalibrationSettings(bits=8, **options)
        program, logits = _calibrate_pass(graph, x, floats, settings, fit, extra=held)
        np.testing.assert_array_equal(logits, network.logits(program, x[held]))
        assert program.report["images"] == len(fit)


def test_default_chooses_reports_and_is_what_forcing_its_choice_gives():
    torch.manual_seed(3)
    model = _Residual().eval()
    graph, _ = ingest(model, (2, 6, 6))
    x = np.random.default_rng(0).uniform(-1, 1, (64, 2, 6, 6)).astype(np.float32)
    program = calibrate(graph, x)
    report = program.report["calibration"]
    assert report["mode"] == "chosen" and report["holdout_images"] == 16 and report["fit_images"] == 48
    assert [c["scheme"] for c in report["candidates"]] == [s.describe() for s in CalibrationSettings().candidates()]
    assert [c["chosen"] for c in report["candidates"]].count(True) == 1
    chosen = next(c for c in report["candidates"] if c["chosen"])
    assert chosen["scheme"] == report["chosen"] and report["reason"]
    for c in report["candidates"]:
        assert set(c) >= {"scheme", "settings", "holdout_agreement", "holdout_agree_images", "holdout_logit_sqnr_db",
                          "seconds", "chosen"}
    forced = calibrate(graph, x, CalibrationSettings(bits=8, **chosen["settings"]))
    assert forced.report["calibration"]["mode"] == "forced"
    assert forced.report["calibration"]["chosen"] == report["chosen"]
    for a, b in zip(program.layers, forced.layers):
        assert (a.fl_in, a.fl_w, a.fl_out) == (b.fl_in, b.fl_w, b.fl_out)
        np.testing.assert_array_equal(a.weights, b.weights)
        np.testing.assert_array_equal(a.bias, b.bias)


def test_explicit_options_force_the_scheme(lenet):
    graph, x_train, *_ = lenet
    paper = calibrate(graph, x_train[:100], CalibrationSettings.paper())
    report = paper.report["calibration"]
    assert report["mode"] == "forced" and [c["scheme"] for c in report["candidates"]] == [report["chosen"]]
    assert report["chosen"] == "per-layer l1 weights, greedy activations"
    assert all(len(layer.fl_w) == 1 for layer in paper.layers)
    per_channel = calibrate(graph, x_train[:100], CalibrationSettings(per_channel=True, weight_rule="maxabs",
                                                                      activation_rule="maxabs", bias_correction=False))
    assert len(per_channel.layers[0].fl_w) == 6
    assert per_channel.report["settings"]["activation_rule"] == "maxabs"
    partly = calibrate(graph, x_train[:100], CalibrationSettings(per_channel=False))
    assert {c["settings"]["per_channel"] for c in partly.report["calibration"]["candidates"]} == {False}
    assert all(len(layer.fl_w) == 1 for layer in partly.layers)


class _SpreadRows(torch.nn.Module):
    """Two logits read one input each with weight 1; two read all 64 inputs with weights of 0.05
    and random signs. Their float logits have the same spread, so each wins about as often. With
    4-bit weights one fl per layer follows the weights of 1 and rounds every 0.05 to zero: those
    two logits go constant. One fl per output channel keeps them."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(64, 4)
        signs = torch.from_numpy(np.random.default_rng(7).choice([-1.0, 1.0], (2, 64))).float()
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.weight[0, 0] = 1.0
            self.fc.weight[2, 1] = 1.0
            self.fc.weight[1] = 0.05 * signs[0]
            self.fc.weight[3] = 0.05 * signs[1]
            self.fc.bias.copy_(torch.tensor([-0.5, -0.05 * 0.5 * float(signs[0].sum()), -0.5,
                                             -0.05 * 0.5 * float(signs[1].sum())]))

    def forward(self, x):
        return self.fc(torch.flatten(x, 1))


def test_chooser_picks_the_better_scheme_on_a_constructed_case():
    model = _SpreadRows().eval()
    graph, _ = ingest(model, (1, 8, 8))
    x = np.random.default_rng(0).uniform(0, 1, (400, 1, 8, 8))
    # only the weight granularity left open: two candidates, per channel and per layer
    settings = CalibrationSettings(bits=8, weight_bits={"fc": 4}, weight_rule="mse", activation_rule="mse",
                                   bias_correction=False)
    assert [c.per_channel for c in settings.candidates()] == [True, False]
    program = calibrate(graph, x, settings)
    candidates = {c["settings"]["per_channel"]: c for c in program.report["calibration"]["candidates"]}
    assert candidates[True]["chosen"] and not candidates[False]["chosen"]
    assert candidates[True]["holdout_agreement"] > candidates[False]["holdout_agreement"] + 0.2
    assert len(program.layers[0].fl_w) == 4
    x_test = np.random.default_rng(1).uniform(0, 1, (400, 1, 8, 8))
    with torch.no_grad():
        float_top1 = model(torch.from_numpy(x_test).float()).argmax(1).numpy()
    assert accuracy(program, x_test, float_top1) > 0.9


def test_bias_correction_removes_the_mean_output_error():
    """Positive inputs and 4-bit weights: weight rounding leaves a systematic error in every
    output's mean, which bias correction removes (measured on images it was not calibrated on)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 6)).eval()
    graph, _ = ingest(model, (3, 4, 4))
    rng = np.random.default_rng(2)
    x, x_test = rng.uniform(0, 1, (300, 3, 4, 4)), rng.uniform(0, 1, (300, 3, 4, 4))
    with torch.no_grad():
        reference = model(torch.from_numpy(x_test).float()).double().numpy()

    def mean_error(bias_correction):
        settings = CalibrationSettings(bits=8, weight_bits={"fc": 4}, per_channel=False, weight_rule="mse",
                                       activation_rule="mse", bias_correction=bias_correction)
        program = calibrate(graph, x, settings)
        out = np.ldexp(network.logits(program, x_test).astype(np.float64), -program.output_fl)
        return np.abs(np.mean(out - reference, axis=0)), program

    without, _ = mean_error(False)
    with_correction, program = mean_error(True)
    assert with_correction.mean() < 0.25 * without.mean()
    assert program.layers[0].stats["bias_correction_max_abs"] > 0


def test_progress_is_called_once_per_layer_per_pass():
    from radix.calibrate import calibration_passes

    torch.manual_seed(3)
    graph, _ = ingest(_Residual().eval(), (2, 6, 6))
    x = np.random.default_rng(0).uniform(-1, 1, (16, 2, 6, 6))
    for chosen in (CalibrationSettings(), CalibrationSettings.paper(), CalibrationSettings(activation_rule="maxabs")):
        calls = []
        calibrate(graph, x, chosen, progress=calls.append)
        assert len(calls) == calibration_passes(chosen) * len(graph.layers)


class _Signedness(torch.nn.Module):
    """A ReLU branch concatenated with a ReLU branch (an unsigned group) and with a signed one."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(2, 3, 3, padding=1)
        self.b = torch.nn.Conv2d(2, 3, 1)
        self.c = torch.nn.Conv2d(2, 2, 1)
        self.d = torch.nn.Conv2d(6, 2, 1)
        self.e = torch.nn.Conv2d(5, 2, 1)

    def forward(self, x):
        a, b, c = torch.relu(self.a(x)), torch.relu(self.b(x)), self.c(x)
        return torch.cat([self.d(torch.cat([a, b], dim=1)), self.e(torch.cat([a, c], dim=1))], dim=1)


def test_unsigned_tensors_follow_the_contracts_rules():
    from radix.calibrate import unsigned_tensors

    torch.manual_seed(0)
    graph, _ = ingest(_Signedness().eval(), (2, 4, 4))
    by_module = {layer.modules[0]: layer.name for layer in graph.layers if layer.kind != "concat"}
    x = np.random.default_rng(0).random((6, 2, 4, 4))
    chosen = unsigned_tensors(graph, x, CalibrationSettings.paper())
    # a and c share a concatenation with the signed c: the group is signed, so a is too; b alone is not
    assert "input" in chosen and by_module["b"] not in chosen and by_module["a"] not in chosen
    assert unsigned_tensors(graph, x - 0.5, CalibrationSettings.paper()) == chosen - {"input"}
    assert unsigned_tensors(graph, x, CalibrationSettings.paper(unsigned=False)) == set()
    assert unsigned_tensors(graph, x, CalibrationSettings.paper(static=True)) == set()


def test_unsigned_input_beyond_its_reduction_limit_stays_signed():
    from radix.calibrate import unsigned_tensors
    from radix.engine_spec import max_reduction

    limit = max_reduction(unsigned_in=True)
    model = torch.nn.Sequential(torch.nn.Linear(4, limit + 1), torch.nn.ReLU(), torch.nn.Linear(limit + 1, 2),
                                torch.nn.ReLU(), torch.nn.Linear(2, 2)).eval()
    # the default engine's weight buffer refuses such a layer first: a build with a deeper one
    from radix.engine_spec import EngineConfig

    graph, _ = ingest(model, (4,), config=EngineConfig(wt_depth=1 << 16, in_depth=1 << 13))
    chosen = unsigned_tensors(graph, np.ones((2, 4)), CalibrationSettings.paper())
    first, second, _ = [layer.name for layer in graph.layers]
    assert first not in chosen and second in chosen and "input" in chosen


def test_unsigned_program_is_exact_and_uses_the_sign_bit():
    """LeNet-5 on [0, 1] pixels: the input and every ReLU output unsigned, one more fractional bit
    at the input than a signed calibration gives, and the golden model's integers in range."""
    x, _ = load_split("mnist5k", "train")
    graph, _ = ingest(load_builtin("lenet5"), (1, 28, 28))
    signed = calibrate(graph, x[:300], CalibrationSettings.paper(unsigned=False))
    program = calibrate(graph, x[:300], CalibrationSettings.paper())
    assert program.input_unsigned and program.input_fl == signed.input_fl + 1
    assert [layer.unsigned_out for layer in program.layers] == [layer.relu for layer in program.layers]
    for result, layer in zip(network.run(program, network.quantize_input(program, x[:20])), program.layers):
        assert result.values.min() >= (0 if layer.unsigned_out else -128) and result.values.max() <= 255


def test_a_concatenation_read_beyond_the_unsigned_limit_keeps_its_whole_group_signed():
    """The reader of a concatenation of two ReLU outputs cannot take it unsigned (K > 32,767): the
    concatenation and both its inputs stay signed, never a mixed group (§11)."""
    from radix.calibrate import unsigned_tensors
    from radix.engine_spec import EngineConfig, max_reduction

    channels = max_reduction(unsigned_in=True) // 9 // 2 + 1  # 2 * channels * 3 * 3 > the limit

    class Joined(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(1, channels, 1), torch.nn.Conv2d(1, channels, 1)
            self.c = torch.nn.Conv2d(2 * channels, 2, 3)

        def forward(self, x):
            return self.c(torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], dim=1))

    graph, _ = ingest(Joined().eval(), (1, 4, 4), config=EngineConfig(wt_depth=1 << 16, in_depth=1 << 13))
    assert unsigned_tensors(graph, np.ones((2, 1, 4, 4)), CalibrationSettings.paper()) == {"input"}
