"""``radix deploy HOST``: copy an overlay, a program, test images and the radix wheel to a board.

It runs the commands of boards/pynq_z2/README.md §3: build the wheel (no dependencies: the board
has numpy), ``ssh`` to make the directory, ``scp`` the files, ``ssh`` to install the wheel with
``pip3 install --no-deps`` in a root login shell (where PYNQ's virtual environment is active).
Runs from a source checkout (it builds the wheel from it).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

NOTEBOOK = Path("boards") / "pynq_z2" / "radix_lenet5.ipynb"
COMMAND_TIMEOUT_S = 600


class DeployError(RuntimeError):
    """A file to deploy is missing or a command failed; the message names which."""


def source_root() -> Path:
    """The checkout this radix runs from (where pyproject.toml is)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise DeployError(f"radix deploy runs from a source checkout; {root} has no pyproject.toml")
    return root


def deployment_files(*, overlay: str, program: str, data: str) -> list[Path]:
    """The files to copy: the overlay's .bit and .hwh, the program, the images and the notebook."""
    bit = Path(overlay)
    files = [bit, bit.with_suffix(".hwh"), Path(program), Path(data), source_root() / NOTEBOOK]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise DeployError(f"cannot deploy, missing: {', '.join(missing)}")
    return files


def plan(host: str, *, user: str, directory: str, files: list[Path], wheel: Path) -> list[list[str]]:
    """The ssh/scp commands, in order."""
    target = f"{user}@{host}"
    remote_wheel = f"/home/{user}/{directory}/{wheel.name}"
    install = f"sudo bash -lc {shlex.quote('pip3 install --no-deps ' + shlex.quote(remote_wheel))}"
    return [
        ["ssh", target, "mkdir", "-p", directory],
        ["scp", *map(str, files), str(wheel), f"{target}:{directory}/"],
        ["ssh", "-t", target, install],
    ]


def build_wheel(out_dir: Path) -> Path:
    """``pip wheel --no-deps`` of the checkout into ``out_dir``."""
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out_dir), str(source_root())])
    wheels = sorted(out_dir.glob("radix-*.whl"))
    if not wheels:
        raise DeployError(f"pip wheel wrote no radix wheel into {out_dir}")
    return wheels[-1]


def deploy(host: str, *, overlay: str, program: str, data: str, user: str = "xilinx", directory: str = "radix",
           dry_run: bool = False) -> list[str]:
    """Deploy to ``host``; returns the commands (run unless ``dry_run``)."""
    files = deployment_files(overlay=overlay, program=program, data=data)
    with tempfile.TemporaryDirectory(prefix="radix-wheel-") as tmp:
        wheel = Path(tmp) / "radix-0-py3-none-any.whl" if dry_run else build_wheel(Path(tmp))
        commands = plan(host, user=user, directory=directory, files=files, wheel=wheel)
        if not dry_run:
            for command in commands:
                _run(command)
    return [shlex.join(command) for command in commands]


def _run(command: list[str]) -> None:
    try:
        subprocess.run(command, check=True, timeout=COMMAND_TIMEOUT_S)
    except FileNotFoundError:
        raise DeployError(f"{command[0]} is not installed (needed for: {shlex.join(command)})") from None
    except subprocess.CalledProcessError as exc:
        raise DeployError(f"command failed with status {exc.returncode}: {shlex.join(command)}") from None
    except subprocess.TimeoutExpired:
        raise DeployError(f"command did not finish within {COMMAND_TIMEOUT_S} s: {shlex.join(command)}") from None
