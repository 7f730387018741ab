"""The radix command line, end to end through its entry point."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from radix.cli import main


def run(capsys, *argv):
    status = main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


def test_help_lists_subcommands():
    result = subprocess.run([sys.executable, "-m", "radix.cli", "--help"], capture_output=True, text=True, check=True)
    for name in ("check", "calibrate", "eval", "inspect"):
        assert name in result.stdout


def test_check_refuses_unsupported_model(tmp_path, capsys):
    model_file = tmp_path / "net.py"
    model_file.write_text(textwrap.dedent("""
        from torch import nn
        def build():
            m = nn.Sequential()
            m.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Hardswish())
            return m
    """))
    status, out, _ = run(capsys, "check", f"{model_file}:build", "--input-shape", "1,12,12")
    assert status == 1
    assert "features.3" in out and "Hardswish" in out and "not supported by the engine" in out
    status, out, _ = run(capsys, "check", f"{model_file}:build", "--input-shape", "1,12,12", "--json")
    report = json.loads(out)
    assert status == 1 and report["supported"] is False
    assert {"name": "features.3", "type": "Hardswish", "supported": False,
            "reason": "not supported by the engine"} in report["modules"]


def test_calibrate_eval_inspect_json(tmp_path, capsys):
    program = tmp_path / "d.radix"
    status, out, _ = run(capsys, "calibrate", "digitsnet", "--data", "digits", "--bits", "8", "-o", str(program), "--json")
    assert status == 0
    report = json.loads(out)
    assert [l["name"] for l in report["layers"]] == ["features.0", "features.4", "classifier.1"]
    for key in ("fl_w", "fl_b", "fl_out", "act_sqnr_db", "act_saturated", "weight_sqnr_db"):
        assert key in report["layers"][0]
    status, out, _ = run(capsys, "eval", str(program), "--data", "digits", "--json")
    result = json.loads(out)
    assert status == 0 and result["images"] == 360
    assert result["accuracy"] >= result["float_accuracy"] - 0.02 and result["float_accuracy"] > 0.9
    status, out, _ = run(capsys, "inspect", str(program), "--json")
    info = json.loads(out)
    assert info["source"]["model"] == "digitsnet" and info["layers"][0]["modules"] == ["features.0", "features.1", "features.2", "features.3"]


def test_eval_on_npz_and_bad_program(tmp_path, capsys):
    program = tmp_path / "d.radix"
    assert run(capsys, "calibrate", "digitsnet", "--data", "digits", "--images", "200", "-o", str(program))[0] == 0
    rng = np.random.default_rng(0)
    npz = tmp_path / "few.npz"
    np.savez(npz, x=rng.random((7, 1, 8, 8), dtype=np.float32), y=rng.integers(0, 10, 7))
    status, out, _ = run(capsys, "eval", str(program), "--data", str(npz), "--json")
    assert status == 0 and json.loads(out)["images"] == 7
    program.write_bytes(program.read_bytes()[:100])
    status, out, err = run(capsys, "eval", str(program), "--data", "digits")
    assert status == 2 and "d.radix: truncated" in err


@pytest.mark.parametrize("argv, message", [
    (["calibrate", "nosuch", "--data", "digits", "-o", "x.radix"], "model 'nosuch'"),
    (["calibrate", "digitsnet", "--data", "cifar", "-o", "x.radix"], "cifar"),
    (["calibrate", "digitsnet", "--data", "digits", "--weight-bits", "fc", "-o", "x.radix"], "SELECTOR=BITS"),
])
def test_bad_arguments_named(capsys, argv, message):
    status, _, err = run(capsys, *argv)
    assert status == 2 and message in err


def test_run_and_selftest_on_reference(tmp_path, capsys):
    program = tmp_path / "d.radix"
    assert run(capsys, "calibrate", "digitsnet", "--data", "digits", "-o", str(program))[0] == 0
    status, out, _ = run(capsys, "run", str(program), "--backend", "reference", "--data", "digits", "--images", "40",
                         "--json")
    result = json.loads(out)
    assert status == 0 and result["bit_exact"] is True and result["images"] == 40
    assert result["accuracy"] == result["reference_accuracy"]
    assert set(result["cycles"]["per_layer_mean"]) == {"features.0", "features.4", "classifier.1"}
    assert "estimate" in result["estimate"]["note"]
    status, out, _ = run(capsys, "selftest", "--backend", "reference", "--seed", "3", "--count", "30", "--json")
    result = json.loads(out)
    assert status == 0 and result["layers"] == 30 and result["mismatches"] == 0


def test_onnx_model_through_check_calibrate_and_eval(tmp_path, capsys):
    """An ONNX export of a built-in goes through the same flow; calibration plots on request."""
    import torch

    from radix_models import load_builtin

    path = tmp_path / "lenet5.onnx"
    torch.onnx.export(load_builtin("lenet5"), torch.zeros(1, 1, 28, 28), path, dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    status, out, _ = run(capsys, "check", str(path))
    assert status == 0 and "supported: 5 layers" in out
    program, plots = tmp_path / "onnx.radix", tmp_path / "plots"
    status, _, err = run(capsys, "calibrate", str(path), "--data", "mnist5k", "--images", "300", "-o", str(program),
                         "--report", str(plots))
    assert status == 0, err
    assert sorted(p.name for p in plots.iterdir())[-1] == "sqnr.png" and len(list(plots.iterdir())) == 6
    status, out, _ = run(capsys, "eval", str(program), "--data", "mnist5k", "--images", "200", "--json")
    report = json.loads(out)
    assert status == 0 and report["accuracy"] >= report["float_accuracy"] - 0.02


def test_compress_calibrate_and_inspect_from_the_cli(tmp_path, capsys):
    """radix compress writes a model file every command accepts as MODEL; a compressed program
    loads back to the same integers and inspect reports its size."""
    from radix.program import Program

    out = tmp_path / "lenet5-dc.pt"
    status, text, err = run(capsys, "compress", "lenet5", "--data", "mnist5k", "--prune", "0.5", "--share", "4",
                            "--epochs", "1", "-o", str(out), "--json")
    report = json.loads(text)
    assert status == 0, err
    assert report["params_after"] < report["params_before"] and report["bytes_compressed"] < report["bytes_dense"]
    assert run(capsys, "check", str(out))[0] == 0
    dense, packed = tmp_path / "dense.radix", tmp_path / "packed.radix"
    for path, extra in ((dense, []), (packed, ["--compressed-weights"])):
        status, _, err = run(capsys, "calibrate", str(out), "--data", "mnist5k", "--images", "200", "-o", str(path),
                             *extra)
        assert status == 0, err
    for a, b in zip(Program.load(dense).layers, Program.load(packed).layers):
        np.testing.assert_array_equal(a.weights, b.weights)
    assert packed.stat().st_size < dense.stat().st_size
    status, text, _ = run(capsys, "inspect", str(packed), "--json")
    assert status == 0 and "storage" in json.loads(text)
