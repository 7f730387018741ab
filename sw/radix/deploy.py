"""``radix deploy [HOST]``: copy an overlay, a program, test images, the notebook and the radix wheel
to a PYNQ-Z2, install the wheel in PYNQ's environment and check it imports there.

The steps are those of boards/pynq_z2/README.md §3, each a command run with a time limit:

1. ``pip wheel --no-deps`` of this checkout (the board has numpy; the wheel needs nothing else);
2. stage the files under the names the board uses: ``radix.bit`` and ``radix.hwh`` (the pynq
   backend's default overlay), the program and the images under their own names, and the notebook
   with its settings cell naming them;
3. ``ssh`` to make the destination, by default ``/home/xilinx/jupyter_notebooks/radix`` (under
   PYNQ's Jupyter root, so the notebook opens from ``http://HOST:9090/tree/radix``);
4. one ``scp`` of everything staged;
5. ``pip3 install --no-deps --force-reinstall`` of the wheel in a root login shell (PYNQ's
   environment is the root login shell's), through ``sudo -S``: the sudo password (the PYNQ
   image's ``xilinx`` by default) goes to sudo on ssh's standard input, so nothing prompts and
   it is on no command line;
6. the same root shell imports ``radix.pynq_transport`` (so radix and pynq share an environment)
   and shows both packages' versions.

``ssh``/``scp`` log in as ``--user`` (``xilinx``): they ask for its password unless a key is
installed (``ssh-copy-id xilinx@pynq.local``). Runs from a source checkout (it builds the wheel).
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "pynq.local"  # what a PYNQ image answers to over mDNS
DEFAULT_USER = "xilinx"
DEFAULT_DIRECTORY = "/home/xilinx/jupyter_notebooks/radix"  # PYNQ's Jupyter root is /home/xilinx/jupyter_notebooks
DEFAULT_SUDO_PASSWORD = "xilinx"  # the PYNQ image's
NOTEBOOK = Path("boards") / "pynq_z2" / "radix_lenet5.ipynb"
OVERLAY_NAME = "radix"  # the pynq backend's default overlay is radix.bit (its .hwh beside it)
COMMAND_TIMEOUT_S = 600
SSH_OPTIONS = ("-o", "ConnectTimeout=20")  # an unreachable board fails in seconds, not minutes
SAFE_PATH = re.compile(r"[A-Za-z0-9._/-]+")  # remote paths go into shell commands unquoted


class DeployError(RuntimeError):
    """A file to deploy is missing or a command failed; the message names which."""


@dataclass
class Step:
    """One command of the deployment; ``stdin`` is what it reads (the sudo password), if anything."""

    what: str
    command: list[str]
    stdin: str | None = None

    def text(self, *, show_secret: bool) -> str:
        line = f"{self.what}: {shlex.join(self.command)}"
        if self.stdin is not None:
            secret = self.stdin.strip() if show_secret else "********"
            line += f"  (sudo password {secret!r} on standard input)"
        return line


def source_root() -> Path:
    """The checkout this radix runs from (where pyproject.toml is)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise DeployError(f"radix deploy runs from a source checkout; {root} has no pyproject.toml")
    return root


def deployment_files(*, overlay: str, program: str, data: str) -> dict[str, Path]:
    """The files to copy, by role: the overlay's .bit and .hwh, the program, the images, the notebook."""
    bit = Path(overlay)
    if bit.suffix != ".bit":
        raise DeployError(f"--overlay {bit}: give the overlay's .bit (its .hwh beside it)")
    files = {"bit": bit, "hwh": bit.with_suffix(".hwh"), "program": Path(program), "data": Path(data),
             "notebook": source_root() / NOTEBOOK}
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        raise DeployError(f"cannot deploy, missing: {', '.join(missing)}")
    return files


def remote_directory(user: str, directory: str) -> str:
    """``directory`` on the board: as given when absolute, else under the user's home."""
    remote = directory if posixpath.isabs(directory) else posixpath.join(f"/home/{user}", directory)
    if not SAFE_PATH.fullmatch(remote):
        raise DeployError(f"--dir {directory!r}: use letters, digits and . _ / - only (it goes into shell commands)")
    return remote


def staged_names(files: dict[str, Path]) -> dict[str, str]:
    """The name each file gets on the board."""
    return {"bit": f"{OVERLAY_NAME}.bit", "hwh": f"{OVERLAY_NAME}.hwh", "program": files["program"].name,
            "data": files["data"].name, "notebook": files["notebook"].name}


def configured_notebook(notebook: Path, names: dict[str, str]) -> str:
    """The notebook's JSON with its settings cell naming the deployed overlay, program and images."""
    content = json.loads(notebook.read_text())
    values = {"OVERLAY": names["bit"], "PROGRAM": names["program"], "DATA": names["data"]}
    for cell in content["cells"]:
        if cell["cell_type"] != "code":
            continue
        lines = cell["source"]
        assigned = [i for i, line in enumerate(lines) if line.split("=")[0].strip() in values]
        if len(assigned) == len(values):
            for i in assigned:
                name, _, rest = lines[i].partition("=")
                comment = rest[rest.index("#"):] if "#" in rest else ""
                newline = "\n" if lines[i].endswith("\n") else ""
                lines[i] = f"{name.strip()} = {json.dumps(values[name.strip()])}" + (f"  {comment.rstrip()}" if comment else "") + newline
            return json.dumps(content, indent=1) + "\n"
    raise DeployError(f"{notebook}: no code cell sets {', '.join(values)}; cannot point it at the deployed files")


def plan(host: str, *, user: str, directory: str, staged: Path, wheel_name: str,
         sudo_password: str) -> list[Step]:
    """The ssh/scp steps, in order, for the files staged in ``staged``."""
    target = f"{user}@{host}"
    remote = remote_directory(user, directory)
    remote_wheel = posixpath.join(remote, wheel_name)

    def as_root(script: str) -> list[str]:
        # -S: the password from stdin; -p "": no prompt text mixed into the output
        return ["ssh", *SSH_OPTIONS, target, f'sudo -S -p "" bash -lc "{script}"']

    staged_files = sorted(str(path) for path in staged.iterdir())
    password = sudo_password + "\n"
    return [
        Step("make the directory", ["ssh", *SSH_OPTIONS, target, "mkdir", "-p", remote]),
        Step("copy the files", ["scp", *SSH_OPTIONS, *staged_files, f"{target}:{remote}/"]),
        Step("install the wheel in PYNQ's environment",
             as_root(f"pip3 install --no-deps --force-reinstall {remote_wheel}"), password),
        # importing radix.pynq_transport imports pynq: both are in the same environment
        Step("check it imports there", as_root("python3 -m radix.pynq_transport && pip3 show radix pynq"), password),
    ]


def build_wheel(out_dir: Path) -> Path:
    """``pip wheel --no-deps`` of the checkout into ``out_dir``."""
    _run(Step("build the wheel", wheel_command(out_dir)))
    wheels = sorted(out_dir.glob("radix-*.whl"))
    if not wheels:
        raise DeployError(f"pip wheel wrote no radix wheel into {out_dir}")
    return wheels[-1]


def wheel_command(out_dir: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out_dir), str(source_root())]


def deploy(host: str = DEFAULT_HOST, *, overlay: str, program: str, data: str, user: str = DEFAULT_USER,
           directory: str = DEFAULT_DIRECTORY, sudo_password: str = DEFAULT_SUDO_PASSWORD,
           dry_run: bool = False) -> list[str]:
    """Deploy to ``host``; returns every step as text (each run unless ``dry_run``).

    The sudo password shows in the text only when it is the PYNQ image's default.
    """
    remote_directory(user, directory)  # refuse an unusable destination before any work
    files = deployment_files(overlay=overlay, program=program, data=data)
    names = staged_names(files)
    show = sudo_password == DEFAULT_SUDO_PASSWORD
    with tempfile.TemporaryDirectory(prefix="radix-deploy-") as tmp:
        wheels, staged = Path(tmp) / "wheel", Path(tmp) / "board"
        wheels.mkdir()
        staged.mkdir()
        wheel = wheels / "radix-VERSION-py3-none-any.whl" if dry_run else build_wheel(wheels)
        for role, path in files.items():
            if role == "notebook":
                (staged / names[role]).write_text(configured_notebook(path, names))
            else:
                shutil.copyfile(path, staged / names[role])
        if dry_run:
            wheel.write_bytes(b"")  # a placeholder, so the copy step lists the wheel
        shutil.copyfile(wheel, staged / wheel.name)
        steps = plan(host, user=user, directory=directory, staged=staged, wheel_name=wheel.name,
                     sudo_password=sudo_password)
        lines = [Step("build the wheel", wheel_command(wheels)).text(show_secret=show),
                 f"stage: {', '.join(f'{files[role].name} -> {names[role]}' for role in files)}"]
        for step in steps:
            lines.append(step.text(show_secret=show))
            if not dry_run:
                _run(step)
    return lines


def _run(step: Step) -> None:
    try:
        subprocess.run(step.command, check=True, timeout=COMMAND_TIMEOUT_S, input=step.stdin,
                       text=step.stdin is not None)
    except FileNotFoundError:
        raise DeployError(f"{step.command[0]} is not installed (needed to {step.what})") from None
    except subprocess.CalledProcessError as exc:
        raise DeployError(f"{step.what} failed with status {exc.returncode}: {shlex.join(step.command)}") from None
    except subprocess.TimeoutExpired:
        raise DeployError(f"{step.what} did not finish within {COMMAND_TIMEOUT_S} s: {shlex.join(step.command)}") from None
