"""The command line as a user's script meets it: run as a program from another directory, with a
model that prints or exits, data that is degenerate or stale, options that make no sense.

Every case checks the exit status of README "Exit codes" and the one line (or the one JSON object)
that names what is wrong.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from radix import cli
from radix.arguments import BUILT_IN_MODELS
from radix.cli import main
from radix.datasets import DATASETS
from radix.program import Program

REPO = Path(__file__).resolve().parents[1]

NOISY_MODEL = textwrap.dedent("""
    import sys
    import torch
    from torch import nn

    print("importing the noisy model")

    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.body = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 4))

        def forward(self, x):
            print("forward on a batch")
            sys.stdout.flush()
            import os
            os.write(1, b"raw bytes on file descriptor 1\\n")
            return self.body(x)

    def make():
        print("building the model")
        return Noisy()

    class Quitter(Noisy):
        def forward(self, x):
            sys.exit(4)

    def quits_in_forward():
        return Quitter()
""")


def radix(cwd, *argv, check_json=False):
    """Run the installed CLI as a separate program in ``cwd``: ``(status, stdout, stderr)``."""
    done = subprocess.run([sys.executable, "-m", "radix.cli", *map(str, argv)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": ""})
    if check_json:
        json.loads(done.stdout)  # exactly one JSON object, nothing around it
    return done.returncode, done.stdout, done.stderr


@pytest.fixture()
def user_dir(tmp_path):
    """A user's working directory with a model file and data of their own, away from the repo."""
    (tmp_path / "noisy.py").write_text(NOISY_MODEL)
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "data.npz", x=rng.random((24, 1, 8, 8), dtype=np.float32), y=rng.integers(0, 4, 24))
    return tmp_path


def test_json_is_one_object_whatever_the_model_prints(user_dir):
    for argv in (["check", "noisy.py:make", "--input-shape", "1,8,8"],
                 ["calibrate", "noisy.py:make", "--data", "data.npz", "-o", "noisy.radix"],
                 ["eval", "noisy.radix", "--data", "data.npz"]):
        status, out, err = radix(user_dir, *argv, "--json", check_json=True)
        assert status == 0, err
        assert "radix: error" not in err
    # what the model printed went to stderr, not lost
    status, out, err = radix(user_dir, "calibrate", "noisy.py:make", "--data", "data.npz", "-o", "n2.radix",
                             "--json", check_json=True)
    assert "building the model" in err and "forward on a batch" in err and "raw bytes on file descriptor 1" in err
    assert json.loads(out)["output"] == "n2.radix"


def test_sys_exit_in_user_code_is_an_input_error(user_dir):
    status, out, err = radix(user_dir, "calibrate", "noisy.py:quits_in_forward", "--data", "data.npz",
                             "-o", "q.radix", "--json", check_json=True)
    report = json.loads(out)
    assert status == 2 and report["exit_status"] == 2 and report["kind"] == "input", err
    assert "sys.exit(4)" in report["error"]
    assert not (user_dir / "q.radix").exists()


def test_interrupt_has_its_own_status(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_regs", interrupted)
    assert main(["regs"]) == cli.EXIT_INTERRUPTED == 130
    assert capsys.readouterr().err.strip() == "radix: error: interrupted (Ctrl-C); nothing was written"
    assert main(["regs", "--json"]) == 130
    assert json.loads(capsys.readouterr().out)["kind"] == "interrupted"
    readme = (REPO / "README.md").read_text()
    assert "| 130 |" in readme


def test_pynq_off_the_board_is_an_input_error(user_dir):
    radix(user_dir, "calibrate", "noisy.py:make", "--data", "data.npz", "-o", "n.radix")
    status, out, err = radix(user_dir, "run", "n.radix", "--backend", "pynq", "--data", "data.npz", "--json",
                             check_json=True)
    report = json.loads(out)
    assert status == 2 and report["kind"] == "input"
    assert "--backend pynq" in report["error"] and "pynq" in report["error"]


@pytest.mark.parametrize("value, reason", [("0", "not a positive number"), ("-100", "not a positive number"),
                                           ("nan", "not a finite number"), ("inf", "not a finite number"),
                                           ("fast", "not a number")])
def test_clock_must_be_a_positive_finite_number(capsys, value, reason):
    assert main(["run", "p.radix", "--data", "x.npz", f"--clock-mhz={value}"]) == 2
    err = capsys.readouterr().err
    assert f"radix: error: run: argument --clock-mhz: {value} is {reason}" in err or reason in err
    assert err.count("radix: error:") == 1


@pytest.mark.parametrize("argv", [["--epochs", "-1"], ["--lr", "nan"], ["--lr", "0"], ["--batch-size", "0"],
                                  ["--images", "0"], ["--prune-steps", "0"], ["--svd", "0"]])
def test_compress_numbers_are_checked_when_parsed(capsys, argv):
    assert main(["compress", "lenet5", "--data", "mnist5k", "-o", "x.pt", *argv]) == 2
    assert f"argument {argv[0]}" in capsys.readouterr().err


def test_eval_does_not_reuse_a_float_accuracy_measured_on_other_data(user_dir):
    radix(user_dir, "calibrate", "noisy.py:make", "--data", "data.npz", "-o", "n.radix")
    status, out, _ = radix(user_dir, "eval", "n.radix", "--data", "data.npz", "--json")
    assert json.loads(out)["float_accuracy_source"] == "measured at calibration"
    # the same file name and image count, other labels: measured again, not the stored number
    with np.load(user_dir / "data.npz") as data:
        x, y = data["x"], data["y"]
    np.savez(user_dir / "data.npz", x=x, y=(y + 1) % 4)
    status, out, _ = radix(user_dir, "eval", "n.radix", "--data", "data.npz", "--json")
    report = json.loads(out)
    assert status == 0 and report["float_accuracy_source"] == "measured now"
    # another directory's data.npz of the same size
    other = user_dir / "other"
    other.mkdir()
    np.savez(other / "data.npz", x=x[::-1].copy(), y=y)
    status, out, _ = radix(other, "eval", "../n.radix", "--data", "data.npz", "--json")
    assert json.loads(out)["float_accuracy_source"] == "measured now"


@pytest.mark.parametrize("case, expected", [
    ("zeros", "all 24 calibration images are zero"),
    ("constant", "24 of 24 calibration images are constant"),
    ("identical", "all 24 calibration images are identical"),
    ("one_class", "all 24 calibration images have one label (2)"),
    ("few", "2 calibration images for 2 layers"),
])
def test_degenerate_calibration_data_warns_with_numbers(user_dir, case, expected):
    rng = np.random.default_rng(0)
    x = rng.random((24, 1, 8, 8), dtype=np.float32)
    y = rng.integers(0, 4, 24)
    if case == "zeros":
        x[:] = 0
    elif case == "constant":
        x[:] = rng.random((24, 1, 1, 1))
    elif case == "identical":
        x[:] = x[0]
    elif case == "one_class":
        y[:] = 2
    np.savez(user_dir / "bad.npz", x=x, y=y)
    extra = ["--images", "1"] if case == "few" else []
    status, out, err = radix(user_dir, "calibrate", "noisy.py:make", "--data", "bad.npz", "-o", "b.radix",
                             *extra, "--json", check_json=True)
    assert status == 0, err
    warnings = json.loads(out)["warnings"]
    if case == "few":
        expected = "1 calibration images for 2 layers"
    assert any(expected in w for w in warnings), warnings
    assert any(expected in line for line in err.splitlines() if line.startswith("radix: warning:"))


def test_healthy_calibration_data_does_not_warn(user_dir):
    status, out, err = radix(user_dir, "calibrate", "noisy.py:make", "--data", "data.npz", "-o", "n.radix",
                             "--json", check_json=True)
    assert not [w for w in json.loads(out).get("warnings", []) if "calibration images" in w]


def test_image_numbers_in_errors_count_in_the_file(capsys, tmp_path):
    x = np.random.default_rng(0).random((50, 1, 8, 8), dtype=np.float32)
    from radix.datasets import subset_indices

    chosen = subset_indices(50, 10)
    x[chosen[3], 0, 2, 5] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=np.zeros(50, dtype=np.int64))
    from radix.evaluate import load_checked
    from radix.datasets import DatasetError

    with pytest.raises(DatasetError, match=f"the first in image {chosen[3]} at \\(0, 2, 5\\)"):
        load_checked(str(tmp_path / "nan.npz"), "test", images=10)


def test_help_names_every_model_and_data_set_and_the_subset(capsys):
    import radix_models

    assert set(BUILT_IN_MODELS) == set(radix_models.BUILTIN_MODELS)
    for command in ("calibrate", "compress"):
        with pytest.raises(SystemExit):
            cli._parser().parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert all(name in text for name in BUILT_IN_MODELS), command
        assert all(name in text for name in DATASETS), command
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "fixed seeded random subset" in text and "first N" not in text


def test_radix_alone_prints_its_commands_once(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: radix") and "calibrate" in err
    assert "radix: error: the following arguments are required: COMMAND" in err
    assert "radix: error: radix:" not in err


def test_report_directory_is_checked_before_calibration(capsys, user_dir, monkeypatch):
    import radix.calibrate

    def never(*args, **kwargs):
        raise AssertionError("calibration ran although the report directory was unusable")

    monkeypatch.setattr(radix.calibrate, "calibrate", never)
    monkeypatch.chdir(user_dir)
    (user_dir / "a_file").write_text("")
    for report, reason in (("missing/plots", "the directory missing does not exist"),
                           ("a_file", "exists and is not a directory")):
        assert main(["calibrate", "noisy.py:make", "--data", "data.npz", "-o", "n.radix", "--report", report]) == 2
        assert reason in capsys.readouterr().err
        assert not (user_dir / "n.radix").exists() and not (user_dir / "missing").exists()


def test_verilog_into_a_missing_directory_fails_before_generating(capsys, monkeypatch):
    import radix.plugins

    def never(name):
        raise AssertionError("the gateware was generated although the output cannot be written")

    monkeypatch.setattr(radix.plugins, "gateware", never)
    assert main(["verilog", "-o", "/no/such/dir/engine.v"]) == 2
    assert "the directory /no/such/dir does not exist" in capsys.readouterr().err


def test_input_clipped_by_one_step_is_not_a_warning(capsys, user_dir):
    """Pixels of exactly 1.0 at a signed input's fl 7 (W=8) become 127/128: calibration's choice,
    reported in the text; a clip of more than one step is a warning with the numbers."""
    assert main(["calibrate", f"{user_dir / 'noisy.py'}:make", "--data", str(user_dir / "data.npz"), "--signed",
                 "-o", str(user_dir / "n.radix")]) == 0
    program = Program.load(user_dir / "n.radix")
    program.input_fl = 7
    program.save(user_dir / "fl7.radix")
    x = 0.9 * np.random.default_rng(0).random((8, 1, 8, 8), dtype=np.float32)
    x[:, 0, 0, 0] = 1.0
    np.savez(user_dir / "ones.npz", x=x, y=np.zeros(8, dtype=np.int64))
    capsys.readouterr()
    assert main(["eval", str(user_dir / "fl7.radix"), "--data", str(user_dir / "ones.npz")]) == 0
    out, err = capsys.readouterr()
    assert "warning" not in err and "8 of 512 input values saturated" in out and "at most one step" in out
    x[:, 0, 0, 0] = 1.5
    np.savez(user_dir / "ones.npz", x=x, y=np.zeros(8, dtype=np.int64))
    assert main(["eval", str(user_dir / "fl7.radix"), "--data", str(user_dir / "ones.npz")]) == 0
    err = capsys.readouterr().err
    assert "radix: warning: 8 of 512 input values saturated at the input fl 7, 8 of them by more than one step" in err
