"""A new user's bad input: every case ends in one named error line and the documented exit code.

Exit codes (README "Exit codes"): 0 ok, 1 check failed or mismatch, 2 usage or input error,
3 internal error. Under --json every command prints exactly one JSON object, errors included.
"""

import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from radix import cli
from radix.cli import main
from radix.program import FORMAT_VERSION, Program

MODEL_FILE = textwrap.dedent("""
    import torch
    from torch import nn

    def tiny():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 4))

    def conv_only():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 6))

    def raises():
        raise RuntimeError("no GPU here")

    def needs(width):
        return nn.Linear(width, 2)

    def no_running_stats():
        return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False))
""")


@pytest.fixture()
def model_file(tmp_path):
    path = tmp_path / "user_model.py"
    path.write_text(MODEL_FILE)
    return path


def npz(path: Path, x, y) -> str:
    np.savez(path, x=np.asarray(x), y=np.asarray(y))
    return str(path)


@pytest.fixture()
def data(tmp_path):
    rng = np.random.default_rng(0)
    return npz(tmp_path / "data.npz", rng.random((40, 1, 8, 8), dtype=np.float32), rng.integers(0, 4, 40))


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_error(capsys, *argv, status=2, kind="input"):
    """The command fails with ``status``; under --json it prints one error object."""
    code, out, err = run(capsys, *argv)
    assert code == status, (out, err)
    assert err.count("radix: error:") == 1 and "Traceback" not in err
    code, out, _ = run(capsys, *argv, "--json")
    report = json.loads(out)
    assert code == status and report["kind"] == kind and report["exit_status"] == status
    return report["error"]


def test_factory_that_raises_or_needs_an_argument(capsys, model_file):
    assert "raises() raised RuntimeError: no GPU here" in one_error(
        capsys, "check", f"{model_file}:raises", "--input-shape", "1,8,8")
    assert "the factory must take no arguments" in one_error(capsys, "check", f"{model_file}:needs",
                                                             "--input-shape", "1,8,8")


def test_batchnorm_without_running_statistics_is_a_check_failure(capsys, model_file):
    code, out, _ = run(capsys, "check", f"{model_file}:no_running_stats", "--input-shape", "1,8,8")
    assert code == 1 and "track_running_stats=False" in out


def test_non_finite_and_empty_data(capsys, tmp_path, model_file):
    x = np.zeros((4, 1, 8, 8), dtype=np.float32)
    x[2, 0, 3, 1] = np.nan
    bad = npz(tmp_path / "nan.npz", x, np.zeros(4, dtype=np.int64))
    message = one_error(capsys, "calibrate", f"{model_file}:tiny", "--data", bad, "-o", tmp_path / "p.radix")
    assert "nan.npz" in message and "1 non-finite values" in message and "image 2" in message
    empty = npz(tmp_path / "empty.npz", np.zeros((0, 1, 8, 8), dtype=np.float32), np.zeros(0, dtype=np.int64))
    assert "no images" in one_error(capsys, "calibrate", f"{model_file}:tiny", "--data", empty, "-o",
                                    tmp_path / "p.radix")


@pytest.mark.parametrize("count", ["-1400", "0"])
def test_counts_must_be_positive(capsys, count, data, tmp_path, model_file):
    assert "not a positive count" in one_error(capsys, "calibrate", f"{model_file}:tiny", "--data", data,
                                               "--images", count, "-o", tmp_path / "p.radix", kind="usage")
    assert "not a positive count" in one_error(capsys, "selftest", "--count", count, kind="usage")


@pytest.mark.parametrize("selector", ["nosuch", "FC"])
def test_weight_bits_selector_must_match(capsys, selector, data, tmp_path, model_file):
    message = one_error(capsys, "calibrate", f"{model_file}:tiny", "--data", data, "--weight-bits", f"{selector}=4",
                        "-o", tmp_path / "p.radix", "--weights", _weights(tmp_path))
    assert f"'{selector}' match no layer" in message


def _weights(tmp_path) -> str:
    import torch

    sys.path.insert(0, str(tmp_path))
    try:
        import user_model
    finally:
        sys.path.pop(0)
    path = tmp_path / "tiny.pt"
    torch.save(user_model.tiny().state_dict(), path)
    sys.modules.pop("user_model", None)
    return str(path)


@pytest.fixture()
def program(tmp_path, data, model_file, capsys):
    path = tmp_path / "tiny.radix"
    code, _, err = run(capsys, "calibrate", f"{model_file}:tiny", "--weights", _weights(tmp_path), "--data", data,
                       "-o", path)
    assert code == 0, err
    return path


def test_labels_outside_the_model_classes(capsys, tmp_path, program):
    bad = npz(tmp_path / "labels.npz", np.zeros((3, 1, 8, 8), dtype=np.float32), [0, 7, 1])
    assert "1 labels outside the model's 4 classes 0..3" in one_error(capsys, "eval", program, "--data", bad)


def test_unnormalised_data_warns_with_the_numbers_and_counts_clipping(capsys, tmp_path, program):
    raw = npz(tmp_path / "raw.npz", np.full((2, 1, 8, 8), 255.0, dtype=np.float32), [0, 1])
    code, out, err = run(capsys, "eval", program, "--data", raw, "--json")
    report = json.loads(out)
    assert code == 0 and "input values reach 255" in err
    assert report["input_saturated"] == 128 and any("255" in w for w in report["warnings"])


def test_file_model_without_weights_warns(capsys, data, tmp_path, model_file):
    code, _, err = run(capsys, "calibrate", f"{model_file}:tiny", "--data", data, "-o", tmp_path / "r.radix")
    assert code == 0 and "no --weights given" in err


def test_eval_from_another_directory_keeps_the_float_accuracy(capsys, program, data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)
    code, out, _ = run(capsys, "eval", program, "--data", data, "--json")
    report = json.loads(out)
    assert code == 0 and report["float_accuracy"] is not None
    assert report["float_accuracy_source"] == "measured at calibration"
    stored = Program.load(program).source
    assert Path(stored["model"].rsplit(":", 1)[0]).is_absolute() and Path(stored["weights"]).is_absolute()


def test_conv_only_model_calibrates_and_evaluates(capsys, tmp_path, model_file):
    rng = np.random.default_rng(1)
    data = npz(tmp_path / "c.npz", rng.random((20, 1, 8, 8), dtype=np.float32), rng.integers(0, 4, 20))
    path = tmp_path / "conv.radix"
    assert run(capsys, "calibrate", f"{model_file}:conv_only", "--data", data, "-o", path)[0] == 0
    code, out, _ = run(capsys, "eval", path, "--data", data, "--json")
    assert code == 0 and 0.0 <= json.loads(out)["accuracy"] <= 1.0


def test_unwritable_output_fails_before_calibration(capsys, data, tmp_path, model_file, monkeypatch):
    def no_calibration(*args, **kwargs):
        raise AssertionError("calibration must not start")

    monkeypatch.setattr("radix.calibrate.calibrate", no_calibration)
    assert "does not exist" in one_error(capsys, "calibrate", f"{model_file}:tiny", "--data", data, "-o",
                                         tmp_path / "missing" / "p.radix")


def test_artifact_is_written_atomically(program, monkeypatch):
    good = program.read_bytes()
    loaded = Program.load(program)

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", full_disk)  # the bytes are written, the disk gives up at the flush
    with pytest.raises(OSError):
        loaded.save(program)
    monkeypatch.undo()
    assert program.read_bytes() == good
    assert not list(program.parent.glob(f".{program.name}.*"))


def test_truncated_and_newer_programs_are_named(capsys, program, tmp_path):
    truncated = tmp_path / "short.radix"
    truncated.write_bytes(program.read_bytes()[:20])
    assert "truncated: 20 bytes" in one_error(capsys, "inspect", truncated)
    newer = tmp_path / "newer.radix"
    data = bytearray(program.read_bytes())
    struct.pack_into("<I", data, 8, FORMAT_VERSION + 1)
    newer.write_bytes(bytes(data))
    assert "upgrade radix" in one_error(capsys, "inspect", newer)


def test_messages_keep_their_quotes(capsys, program):
    assert one_error(capsys, "eval", program, "--data", "nosuchset").startswith("unknown data set 'nosuchset'")


def test_internal_error_exit_code(capsys, monkeypatch):
    def broken(args):
        raise RuntimeError("something unforeseen")

    monkeypatch.setattr(cli, "cmd_regs", broken)
    code, _, err = run(capsys, "regs")
    assert code == 3 and "internal error: RuntimeError: something unforeseen" in err and "report it" in err


def test_json_into_a_closed_pipe_is_quiet():
    radix = Path(sys.executable).parent / "radix"
    done = subprocess.run(f"'{radix}' regs --json | head -1", shell=True, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "{" and "Traceback" not in done.stderr
