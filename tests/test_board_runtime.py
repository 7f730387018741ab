"""The on-board runtime, rehearsed: the board's Python 3.10 + numpy 1.21 with the radix wheel alone.

Once per session a venv is made from Python 3.10 with ``numpy==1.21.6`` only, and the wheel that
``pip wheel --no-deps .`` builds (what boards/pynq_z2/README.md copies to the board) is installed
with ``--no-deps``. In it: ``radix run`` on a program and an ``.npz`` made by the host flow, the
same run through the pynq backend over a stand-in ``pynq`` package (the reference engine behind
MMIO and a simple-mode AXI DMA), and the clean ImportError of ``radix.pynq_transport`` without
PYNQ.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from radix.cli import main as radix_main
from radix.datasets import load_split

REPO = Path(__file__).resolve().parents[1]
PYTHON310 = Path("/root/.pyenv/versions/3.10.13/bin/python3.10")
BOARD_NUMPY = "numpy==1.21.6"  # what the PYNQ-Z2 v3.0.1 image has
PACKAGE_FILES = ("pyproject.toml", "README.md", "sw", "hw", "sim", "models")
TIMEOUT = 300

# A stand-in for the pynq package, enough for radix.pynq_transport: MMIO over the reference
# engine's registers, and an AXI DMA whose S2MM reports the words that arrived in S2MM_LENGTH.
FAKE_PYNQ = '''\
"""Stand-in for pynq (tests/test_board_runtime.py): the reference engine behind MMIO and an AXI DMA."""
import types

import numpy as np
from radix.engine_spec import DEFAULT_CONFIG
from radix.transport import ReferenceTransport

_engine = ReferenceTransport(DEFAULT_CONFIG)
_dma = {0x04: 0x1, 0x34: 0x1, 0x58: 0}  # MM2S_DMASR, S2MM_DMASR (Halted), S2MM_LENGTH


class _Buffer(np.ndarray):
    def flush(self):
        pass

    def invalidate(self):
        pass

    def freebuffer(self):
        pass


def allocate(shape, dtype):
    return np.zeros(shape, dtype=dtype).view(_Buffer)


class MMIO:
    def __init__(self, base, length):
        pass

    def read(self, offset, length=4):
        return _engine.read(offset)

    def write(self, offset, value):
        _engine.write(offset, value)


class _Channel:
    def __init__(self, s2mm):
        self.s2mm = s2mm

    def transfer(self, array, start=0, nbytes=0):
        words = nbytes // 8
        if self.s2mm:
            got = _engine.receive(words, 0).words
            array[: got.size] = got
            _dma[0x58], _dma[0x34] = got.size * 8, 0x2
        else:
            _engine.send(np.array(array[:words], dtype=np.uint64))
            _dma[0x04] = 0x2


class _DMA:
    buffer_max_size = (1 << 23) - 1
    mmio = types.SimpleNamespace(read=lambda offset, length=4: _dma.get(offset, 0))
    sendchannel, recvchannel = _Channel(False), _Channel(True)


class Overlay:
    def __init__(self, bitfile, download=True):
        self.ip_dict = {"engine": {"phys_addr": 0x43C00000, "addr_range": 0x1000},
                        "axi_dma": {"phys_addr": 0x40400000, "addr_range": 0x10000}}
        self.axi_dma = _DMA()


Clocks = types.SimpleNamespace(fclk0_mhz=100.0)
'''


def _run(argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=TIMEOUT, **kwargs)


def _checked(argv, **kwargs) -> subprocess.CompletedProcess:
    result = _run(argv, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, argv))}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def board_env(tmp_path_factory) -> Path:
    """A Python 3.10 venv with numpy 1.21.6 and the radix wheel (``--no-deps``): the board's runtime."""
    if not PYTHON310.exists():
        pytest.fail(f"{PYTHON310} is not installed: the board runtime check needs Python 3.10 (pyenv)")
    root = tmp_path_factory.mktemp("board")
    # build the wheel from a copy of the package sources, so the repo gets no build/ or egg-info
    source = root / "src"
    source.mkdir()
    for name in PACKAGE_FILES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "build"))
        else:
            shutil.copy2(path, source / name)
    _checked([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", root / "dist",
              source])
    (wheel,) = (root / "dist").glob("radix-*.whl")
    venv = root / "venv"
    _checked([PYTHON310, "-m", "venv", venv])
    _checked([venv / "bin" / "pip", "install", "-q", "--disable-pip-version-check", BOARD_NUMPY])
    _checked([venv / "bin" / "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", wheel])
    return venv


@pytest.fixture(scope="module")
def host_artifacts(tmp_path_factory) -> tuple[Path, Path]:
    """A program and an ``.npz`` of test images, made by the host flow."""
    root = tmp_path_factory.mktemp("host")
    program = root / "digitsnet.radix"
    assert radix_main(["calibrate", "digitsnet", "--data", "digits", "-o", str(program), "--json"]) == 0
    x, y = load_split("digits", "test")
    data = root / "digits-test.npz"
    np.savez(data, x=x[:40], y=y[:40])
    return program, data


def test_board_venv_has_numpy_and_radix_only(board_env):
    listed = json.loads(_checked([board_env / "bin" / "pip", "list", "--format", "json",
                                  "--disable-pip-version-check"]).stdout)
    versions = {entry["name"].lower(): entry["version"] for entry in listed}
    assert versions.pop("numpy") == "1.21.6" and versions.pop("radix") == "0.1.0"
    assert set(versions) <= {"pip", "setuptools"}, f"more than numpy installed: {versions}"
    version = _checked([board_env / "bin" / "python", "-c", "import sys; print(sys.version_info[:2])"]).stdout
    assert version.strip() == "(3, 10)"


def test_radix_run_on_the_board_runtime_matches_the_host(board_env, host_artifacts, capsys):
    program, data = host_artifacts
    argv = ["run", program, "--backend", "reference", "--data", data, "--images", "20", "--json"]
    board = json.loads(_checked([board_env / "bin" / "radix", *argv], cwd=board_env).stdout)
    assert board["images"] == 20 and board["bit_exact"] is True
    assert board["accuracy"] == board["reference_accuracy"] >= 0.8
    capsys.readouterr()
    assert radix_main([str(a) for a in argv]) == 0
    host = json.loads(capsys.readouterr().out)
    for key in ("accuracy", "reference_accuracy", "cycles", "saturated_per_layer", "bit_exact"):
        assert board[key] == host[key], key


def test_pynq_backend_on_the_board_runtime(board_env, host_artifacts, tmp_path):
    program, data = host_artifacts
    fake = tmp_path / "fake" / "pynq"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(FAKE_PYNQ)
    overlay = tmp_path / "radix.bit"
    overlay.write_bytes(b"bit")
    overlay.with_suffix(".hwh").write_text("<hwh/>")
    env = {**os.environ, "PYTHONPATH": str(fake.parent)}
    run = json.loads(_checked([board_env / "bin" / "radix", "run", program, "--backend", "pynq", "--overlay", overlay,
                               "--data", data, "--images", "10", "--json"], env=env, cwd=tmp_path).stdout)
    assert run["backend"] == "pynq" and run["images"] == 10 and run["bit_exact"] is True
    assert run["cycles"]["source"] == "measured" and run["cycles"]["per_image_mean"] > 0
    selftest = json.loads(_checked([board_env / "bin" / "radix", "selftest", "--backend", "pynq", "--overlay", overlay,
                                    "--count", "10", "--json"], env=env, cwd=tmp_path).stdout)
    assert selftest["backend"] == "pynq" and selftest["mismatches"] == 0


def test_pynq_transport_without_pynq_is_a_clean_import_error(board_env):
    result = _run([board_env / "bin" / "python", "-c", "import radix.pynq_transport"], cwd=board_env)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: radix.pynq_transport needs the 'pynq' package of a PYNQ-Z2 board image")
    assert "No module named 'pynq'" in last
    # the rest of the runtime imports without it
    _checked([board_env / "bin" / "python", "-c", "import radix.cli, radix.driver, radix.runner, radix.transport"],
             cwd=board_env)
