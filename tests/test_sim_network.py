"""Whole networks and random layers through the host driver and the RTL simulation (sim backend)."""

import json

import pytest

from radix import golden, network
from radix.calibrate import CalibrationSettings, calibrate
from radix.cli import main
from radix.datasets import load_split
from radix.engine_spec import EngineConfig
from radix.ingest import ingest
from radix.program import INPUT, Program
from radix_models import get_spec, load_builtin
from radix_sim.hostrun import SimulationError, run_host


@pytest.fixture(scope="module")
def digits_program(tmp_path_factory):
    x, _ = load_split("digits", "train")
    graph, _ = ingest(load_builtin("digitsnet"), (1, 8, 8))
    path = tmp_path_factory.mktemp("prog") / "digitsnet.radix"
    calibrate(graph, x, CalibrationSettings(bits=8)).save(path)
    return path


@pytest.fixture(scope="module")
def resnet8_program(tmp_path_factory):
    spec = get_spec("resnet8")
    x, _ = load_split(spec.dataset, "train")
    graph, _ = ingest(load_builtin("resnet8"), spec.input_shape)
    path = tmp_path_factory.mktemp("prog") / "resnet8.radix"
    calibrate(graph, x[:200], CalibrationSettings(bits=8)).save(path)
    return path


def test_resnet8_through_driver_and_rtl_is_bit_exact(resnet8_program):
    """Identity and projection shortcuts, per-side padding and the folded average pool on the RTL."""
    result = run_host("radix.runner:run_files",
                      {"program": str(resnet8_program), "data": "mnist32rgb", "images": 1}, EngineConfig(),
                      pause=0.3, seed=9)
    assert result["bit_exact"] is True and result["first_mismatch"] is None, result["first_mismatch"]
    assert result["images"] == 1
    assert all(cycles > 0 for cycles in result["cycles"]["per_layer_mean"].values())


def unsigned_where_non_negative(program: Program) -> Program:
    """``program`` with its input (non-negative images) and every ReLU output unsigned, each one
    bit finer (fl + 1: the range the sign bit gave up, docs/arithmetic.md §1), the readers' fls
    and biases re-aligned to match: a choice calibration may make."""
    finer = {INPUT}
    program.input_unsigned = True
    program.input_fl += 1
    for layer in program.layers:
        assert layer.kind != "concat", "a concatenation group would need one signedness (§11)"
        if layer.inputs[0] in finer:  # the accumulator is one bit finer, and so is the bias (§4)
            layer.fl_in += 1
            layer.bias = golden.saturate(layer.bias * 2, golden.acc_width(program.width) - 1)
        if layer.skip in finer:
            layer.fl_skip += 1
        if layer.relu:
            layer.unsigned_out = True
            layer.fl_out += 1
            finer.add(layer.name)
    program.link_signedness()
    return program


def test_resnet8_with_unsigned_tensors_through_driver_and_rtl_is_bit_exact(resnet8_program, tmp_path):
    """The input and every ReLU output unsigned, so the RTL meets unsigned inputs, unsigned skip
    tensors of the identity shortcuts beside signed projection ones, and unsigned outputs with
    values above 2^(W-1) - 1; the program goes through the file format (version 4) first."""
    path = tmp_path / "resnet8-unsigned.radix"
    unsigned_where_non_negative(Program.load(resnet8_program)).save(path)
    program = Program.load(path)
    assert program.input_unsigned and any(layer.unsigned_skip for layer in program.layers)
    x, _ = load_split("mnist32rgb", "test")
    outputs = network.run(program, network.quantize_input(program, x[:1]))
    assert max(int(out.values.max()) for out, layer in zip(outputs, program.layers) if layer.unsigned_out) > 127
    result = run_host("radix.runner:run_files", {"program": str(path), "data": "mnist32rgb", "images": 1},
                      EngineConfig(), pause=0.3, seed=11)
    assert result["bit_exact"] is True and result["first_mismatch"] is None, result["first_mismatch"]


def test_digitsnet_through_driver_and_rtl_is_bit_exact(digits_program):
    result = run_host("radix.runner:run_files",
                      {"program": str(digits_program), "data": "digits", "images": 12}, EngineConfig(),
                      pause=0.3, seed=5)
    assert result["bit_exact"] is True and result["first_mismatch"] is None
    assert result["images"] == 12 and result["accuracy"] == result["reference_accuracy"]
    assert all(cycles > 0 for cycles in result["cycles"]["per_layer_mean"].values())


def test_selftest_on_rtl_has_no_mismatch():
    result = run_host("radix.runner:selftest", {"seed": 7, "count": 25}, EngineConfig(), pause=0.3, seed=7)
    assert result["layers"] == 25 and result["mismatches"] == 0, result["details"]


def test_program_for_other_width_refused_inside_simulation(digits_program):
    # the W=16 build of tests/test_sim_engine.py (same configuration: one cached build)
    w16 = EngineConfig(rows=5, cols=4, width=16, in_depth=256, wt_depth=512, acc_depth=128)
    with pytest.raises(SimulationError, match="program is 8-bit, the engine's DATA_WIDTH is 16"):
        run_host("radix.runner:run_files", {"program": str(digits_program), "data": "digits", "images": 1}, w16)


def test_cli_run_on_sim_with_a_relative_program_path(digits_program, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(digits_program.parent)
    assert main(["run", digits_program.name, "--backend", "sim", "--data", "digits", "--images", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bit_exact"] is True


def test_user_resnet8_file_model_check_calibrate_eval_and_rtl(tmp_path, capsys):
    """The issue's newcomer flow: a ResNet-8-style file.py:factory with --weights is accepted,
    calibrates at 8 bits within 0.5 pp of float top-1 on the 1,000 test images, and runs on the
    RTL bit-exact with the reference."""
    model = tmp_path / "my_resnet.py"
    model.write_text("from radix_models.resnet8 import ResNet8\n\ndef build():\n    return ResNet8()\n")
    weights = str(get_spec("resnet8").weights)
    spec = f"{model}:build"
    assert main(["check", spec, "--weights", weights, "--input-shape", "3,32,32"]) == 0
    program = tmp_path / "resnet8.radix"
    assert main(["calibrate", spec, "--weights", weights, "--data", "mnist32rgb", "--images", "500",
                 "--per-channel", "--activations", "maxabs", "-o", str(program)]) == 0
    capsys.readouterr()
    assert main(["eval", str(program), "--data", "mnist32rgb", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 1000 and report["accuracy"] >= report["float_accuracy"] - 0.005, report
    assert main(["run", str(program), "--backend", "sim", "--data", "mnist32rgb", "--images", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bit_exact"] is True
