"""``radix deploy``: every step in order (dry run), and a run against stub ``ssh``/``scp`` that
act on a directory standing for the board's file system."""

from __future__ import annotations

import json
import os
import shlex
import stat
import sys
from pathlib import Path

import pytest

from radix import deploy as deploy_module
from radix.cli import _parser
from radix.cli import main as radix_main
from radix.deploy import DEFAULT_DIRECTORY, DEFAULT_HOST, DEFAULT_SUDO_PASSWORD, DEFAULT_USER, DeployError, deploy

STUB = r'''#!{python}
"""Stub {name}: logs argv and standard input; mkdir/scp act under BOARD_ROOT."""
import json, os, shutil, sys
root, log = os.environ["BOARD_ROOT"], os.environ["DEPLOY_LOG"]
stdin = None if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
with open(log, "a") as handle:
    handle.write(json.dumps({{"argv": ["{name}"] + sys.argv[1:], "stdin": stdin}}) + "\n")
args = [a for a in sys.argv[1:] if a != "-o" and not a.startswith("ConnectTimeout")]
if os.environ.get("FAIL") == "{name}":
    sys.exit(255)
if "{name}" == "ssh" and args[1:3] == ["mkdir", "-p"]:
    os.makedirs(root + args[3], exist_ok=True)
if "{name}" == "scp":
    destination = root + args[-1].split(":", 1)[1]
    for source in args[:-1]:
        shutil.copy(source, destination)
'''


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    paths = {"bit": tmp_path / "out" / "overlay7.bit", "program": tmp_path / "lenet5-8.radix",
             "data": tmp_path / "digits-test.npz"}
    paths["bit"].parent.mkdir()
    for path in (*paths.values(), paths["bit"].with_suffix(".hwh")):
        path.write_bytes(path.name.encode())
    return paths


@pytest.fixture
def board(tmp_path, monkeypatch) -> Path:
    """Stub ssh/scp first on PATH, a board root, and a stand-in wheel build (the real one runs in
    tests/test_board_runtime.py)."""
    stubs, root = tmp_path / "bin", tmp_path / "board"
    stubs.mkdir()
    root.mkdir()
    for name in ("ssh", "scp"):
        path = stubs / name
        path.write_text(STUB.format(python=sys.executable, name=name))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{stubs}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("BOARD_ROOT", str(root))
    monkeypatch.setenv("DEPLOY_LOG", str(tmp_path / "log.jsonl"))

    def fake_wheel(out_dir: Path) -> Path:
        wheel = out_dir / "radix-0.1.0-py3-none-any.whl"
        wheel.write_bytes(b"wheel")
        return wheel

    monkeypatch.setattr(deploy_module, "build_wheel", fake_wheel)
    return root


def _log(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]


def test_cli_defaults_are_pynqs_conventions():
    args = _parser().parse_args(["deploy", "--overlay", "o.bit", "--program", "p", "--data", "d"])
    assert (args.host, args.user, args.dir, args.sudo_password) == (DEFAULT_HOST, DEFAULT_USER, DEFAULT_DIRECTORY,
                                                                     DEFAULT_SUDO_PASSWORD)
    assert (DEFAULT_HOST, DEFAULT_DIRECTORY) == ("pynq.local", "/home/xilinx/jupyter_notebooks/radix")


def test_dry_run_prints_every_step_in_order(files, capsys):
    status = radix_main(["deploy", "--overlay", str(files["bit"]), "--program", str(files["program"]),
                         "--data", str(files["data"]), "--dry-run", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert status == 0 and out["host"] == "pynq.local" and out["dry_run"] is True
    steps = out["commands"]
    assert [step.split(":")[0] for step in steps] == ["build the wheel", "stage", "make the directory", "copy the files",
                                                      "install the wheel in PYNQ's environment",
                                                      "check it imports there"]
    assert "-m pip wheel -q --no-deps" in steps[0]
    assert steps[1] == ("stage: overlay7.bit -> radix.bit, overlay7.hwh -> radix.hwh, lenet5-8.radix -> lenet5-8.radix, "
                        "digits-test.npz -> digits-test.npz, radix_lenet5.ipynb -> radix_lenet5.ipynb")
    assert steps[2].endswith("ssh -o ConnectTimeout=20 xilinx@pynq.local mkdir -p /home/xilinx/jupyter_notebooks/radix")
    copied = shlex.split(steps[3].split(": ", 1)[1])
    assert copied[-1] == "xilinx@pynq.local:/home/xilinx/jupyter_notebooks/radix/"
    assert sorted(Path(p).name for p in copied[3:-1]) == ["digits-test.npz", "lenet5-8.radix", "radix-VERSION-py3-none-any.whl",
                                                         "radix.bit", "radix.hwh", "radix_lenet5.ipynb"]
    install = shlex.split(steps[4].split(": ", 1)[1].split("  (")[0])
    assert install[:4] == ["ssh", "-o", "ConnectTimeout=20", "xilinx@pynq.local"]
    assert install[4] == ('sudo -S -p "" bash -lc "pip3 install --no-deps --force-reinstall '
                          '/home/xilinx/jupyter_notebooks/radix/radix-VERSION-py3-none-any.whl"')
    assert steps[4].endswith("(sudo password 'xilinx' on standard input)")
    assert 'bash -lc "python3 -m radix.pynq_transport && pip3 show radix pynq"' in steps[5]


def test_deploy_copies_configures_installs_and_checks(files, board, tmp_path):
    steps = deploy(overlay=str(files["bit"]), program=str(files["program"]), data=str(files["data"]))
    remote = board / DEFAULT_DIRECTORY.lstrip("/")
    assert sorted(p.name for p in remote.iterdir()) == ["digits-test.npz", "lenet5-8.radix", "radix-0.1.0-py3-none-any.whl",
                                                        "radix.bit", "radix.hwh", "radix_lenet5.ipynb"]
    assert (remote / "radix.hwh").read_bytes() == b"overlay7.hwh"
    # the notebook opens on the deployed names
    cells = json.loads((remote / "radix_lenet5.ipynb").read_text())["cells"]
    settings = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
    assert 'OVERLAY = "radix.bit"  # PYNQ reads radix.hwh beside it\n' in settings
    assert 'PROGRAM = "lenet5-8.radix"\n' in settings and 'DATA = "digits-test.npz"\n' in settings
    log = _log(tmp_path)
    assert [entry["argv"][0] for entry in log] == ["ssh", "scp", "ssh", "ssh"]
    assert log[2]["stdin"] == log[3]["stdin"] == "xilinx\n"  # sudo -S reads it; nothing prompts
    assert all("xilinx\n" not in " ".join(entry["argv"]) for entry in log)
    assert len(steps) == 6


def test_a_custom_sudo_password_is_on_no_command_line_nor_printed(files, board, tmp_path):
    steps = deploy("10.0.0.7", overlay=str(files["bit"]), program=str(files["program"]), data=str(files["data"]),
                   directory="radix", sudo_password="s3cret")
    log = _log(tmp_path)
    assert log[0]["argv"][-1] == "/home/xilinx/radix" and log[1]["argv"][-1] == "xilinx@10.0.0.7:/home/xilinx/radix/"
    assert log[2]["stdin"] == "s3cret\n" and all("s3cret" not in " ".join(e["argv"]) for e in log)
    assert not any("s3cret" in step for step in steps) and "(sudo password '********' on standard input)" in steps[4]


def test_a_failing_step_is_named(files, board, monkeypatch):
    monkeypatch.setenv("FAIL", "scp")
    with pytest.raises(DeployError, match=r"copy the files failed with status 255: scp -o ConnectTimeout=20 "):
        deploy(overlay=str(files["bit"]), program=str(files["program"]), data=str(files["data"]))


def test_missing_files_are_named(files, capsys):
    files["bit"].with_suffix(".hwh").unlink()
    status = radix_main(["deploy", "board", "--overlay", str(files["bit"]), "--program", str(files["program"]),
                         "--data", str(files["data"]), "--dry-run"])
    err = capsys.readouterr().err
    assert status == 2 and "cannot deploy, missing:" in err and "overlay7.hwh" in err
    with pytest.raises(DeployError, match=r"--overlay .*digits-test.npz: give the overlay's .bit"):
        deploy(overlay=str(files["data"]), program=str(files["program"]), data=str(files["data"]), dry_run=True)
    with pytest.raises(DeployError, match=r"--dir 'my notebooks': use letters, digits and \. _ / - only"):
        deploy(overlay=str(files["bit"]), program=str(files["program"]), data=str(files["data"]), directory="my notebooks",
               dry_run=True)
