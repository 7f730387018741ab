"""The on-board runtime, rehearsed: the board's Python 3.10 + numpy 1.21 + PYNQ 3.0.1, and the radix wheel.

Once per session a venv is made from Python 3.10 with ``numpy==1.21.6``, then PYNQ 3.0.1 from
PyPI with ``--no-deps`` and the part of its dependency tree that ``import pynq, pynq.lib.dma``
needs, at the versions of the PYNQ-Z2 v3.0.1 image (its sdbuild requirements.txt, the Ubuntu
22.04 packages where the image takes them from apt, the nearest PyPI releases of pynqmetadata and
pynqutils, which the image builds from git): :data:`PYNQ_STACK`. Nothing is stubbed. The wheel
that ``pip wheel --no-deps .`` builds (what boards/pynq_z2/README.md copies to the board) goes in
with ``--no-deps``.

In it: ``radix run`` on a program and an ``.npz`` made by the host flow; the pynq transport, the
CLI's pynq backend and the board notebook through PYNQ's own ``Overlay``, ``pynq.lib.dma.DMA``,
``MMIO``, ``allocate`` and ``Clocks`` over a register-level model of the AXI DMA and the engine
(tests/pynq_board.py; the scenarios in tests/board_scenarios.py run once, in one process, and
the tests below check what they recorded); and the clean ImportError without PYNQ.

The Python 3.10 is ``$RADIX_PY310`` if set (an interpreter's path), else the first that works
of ``python3.10`` on PATH and the newest ``versions/3.10.*`` of ``$PYENV_ROOT`` and of
``~/.pyenv`` (:func:`find_python310`). Without one these tests fail, saying what to install:
they are the only check of the code that runs on the board.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from radix.bringup import BOARD_SOURCE, replay
from radix.cli import main as radix_main
from radix.datasets import load_split

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
BOARD = REPO / "boards" / "pynq_z2"
PY310_ENV = "RADIX_PY310"
BOARD_NUMPY = "numpy==1.21.6"  # what the PYNQ-Z2 v3.0.1 image has
PYNQ = "pynq==3.0.1"
# What `import pynq, pynq.lib.dma` needs, each installed with --no-deps, pinned to the v3.0.1
# image: sdbuild/packages/python_packages_jammy/requirements.txt; cffi, Pygments and six as
# Ubuntu 22.04 packages them; pynqmetadata and pynqutils the PyPI releases of that time.
PYNQ_STACK = ("pynqmetadata==0.1.2", "pynqutils==0.1.1", "pydantic==1.9.1", "typing_extensions==4.3.0",
              "nest_asyncio==1.5.5", "cffi==1.15.0", "pycparser==2.19", "tqdm==4.64.0", "ipython==8.4.0",
              "traitlets==5.3.0", "stack-data==0.3.0", "executing==0.9.1", "asttokens==2.0.5", "pure-eval==0.2.2",
              "pexpect==4.8.0", "ptyprocess==0.7.0", "Pygments==2.11.2", "six==1.16.0")
PACKAGE_FILES = ("pyproject.toml", "README.md", "sw", "hw", "sim", "models")
TIMEOUT = 600


def _run(argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=TIMEOUT, **kwargs)


def _checked(argv, **kwargs) -> subprocess.CompletedProcess:
    result = _run(argv, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, argv))}\n{result.stdout}\n{result.stderr}"
    return result


def _pip(venv: Path, *args) -> None:
    _checked([venv / "bin" / "pip", "install", "-q", "--disable-pip-version-check", *args])


def find_python310() -> Path:
    """A Python 3.10 that can make venvs: ``$RADIX_PY310``, else ``python3.10`` on PATH, else the
    newest ``$PYENV_ROOT/versions/3.10.*`` or ``~/.pyenv/versions/3.10.*``; fails the test if none."""
    override = os.environ.get(PY310_ENV)
    if override:
        if not _is_python310(override):
            pytest.fail(f"{PY310_ENV}={override} is not a Python 3.10 with the venv module", pytrace=False)
        return Path(override)
    candidates = [shutil.which("python3.10")]
    for root in (os.environ.get("PYENV_ROOT"), Path.home() / ".pyenv"):
        if root:
            candidates += sorted(Path(root).glob("versions/3.10.*/bin/python3.10"), key=_patch_level, reverse=True)
    # a pyenv shim on PATH is there even when 3.10 is not selected: each candidate is tried
    for candidate in dict.fromkeys(c for c in candidates if c):
        if _is_python310(candidate):
            return Path(candidate)
    pytest.fail(f"no Python 3.10 found (python3.10 on PATH, $PYENV_ROOT or ~/.pyenv): install one, e.g. "
                f"`pyenv install 3.10` or `apt install python3.10 python3.10-venv`, or set {PY310_ENV} to its path",
                pytrace=False)


def _is_python310(python) -> bool:
    """Whether ``python`` runs, is 3.10 and has venv and ensurepip (Debian packages them apart)."""
    check = "import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != (3, 10))"
    try:
        return _run([python, "-c", check]).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _patch_level(python: Path) -> tuple[int, str]:
    """Sort key of ``.../versions/3.10.<patch>[suffix]/bin/python3.10``: the patch number, then the name."""
    name = python.parents[1].name
    return int(re.match(r"3\.10\.(\d*)", name)[1] or 0), name


@pytest.fixture(scope="module")
def board_env(tmp_path_factory) -> Path:
    """A Python 3.10 venv with numpy 1.21.6, PYNQ 3.0.1 and its stack, and the radix wheel (``--no-deps``)."""
    python310 = find_python310()
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
    _checked([python310, "-m", "venv", venv])
    _pip(venv, BOARD_NUMPY)
    _pip(venv, "--no-deps", PYNQ, *PYNQ_STACK)
    _pip(venv, "--no-deps", wheel)
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


@pytest.fixture(scope="module")
def scenarios(board_env, host_artifacts, tmp_path_factory) -> dict:
    """Every scenario of tests/board_scenarios.py, run once in the board runtime: ``{name: facts}``."""
    program, data = host_artifacts
    root = tmp_path_factory.mktemp("scenarios")
    overlay = root / "radix.bit"
    overlay.write_bytes(b"bit")  # the model board reads no bitstream; PYNQ needs the two files
    overlay.with_suffix(".hwh").write_text("<hwh/>")
    notebook_dir = root / "notebook"
    notebook_dir.mkdir()
    for name in ("radix.bit", "radix.hwh"):
        shutil.copy(root / name, notebook_dir / name)
    shutil.copy(program, notebook_dir / "lenet5.radix")
    shutil.copy(data, notebook_dir / "lenet5-test.npz")
    plan = {"overlay": str(overlay), "program": str(program), "data": str(data), "workdir": str(notebook_dir),
            "notebook": str(BOARD / "radix_lenet5.ipynb")}
    (root / "plan.json").write_text(json.dumps(plan))
    _checked([board_env / "bin" / "python", TESTS / "board_scenarios.py", root / "plan.json", root / "results.json"],
             cwd=root)
    return json.loads((root / "results.json").read_text())


def facts(scenarios: dict, name: str) -> dict:
    """The facts a scenario recorded; a crashed scenario fails the test with its traceback."""
    result = scenarios[name]
    assert "crash" not in result, result.get("crash")
    return result


# ---- the environment --------------------------------------------------------------------------

def _script(path: Path, body: str) -> Path:
    """An executable shell script at ``path`` running ``body``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def no_python310(tmp_path, monkeypatch) -> Path:
    """An environment with no Python 3.10 but a pyenv-like shim on PATH that refuses to run."""
    python310 = find_python310()  # the real one, found before the environment is emptied
    monkeypatch.delenv(PY310_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _script(tmp_path / "shims" / "python3.10", "echo 'pyenv: python3.10: command not found' >&2; exit 127")
    monkeypatch.setenv("PATH", str(tmp_path / "shims"))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    return python310


def test_python310_is_the_newest_pyenv_310_after_a_broken_shim(no_python310, tmp_path):
    for version in ("3.10.9", "3.10.13", "3.10.2"):
        _script(tmp_path / "pyenv" / "versions" / version / "bin" / "python3.10", f'exec {no_python310} "$@"')
    _script(tmp_path / "pyenv" / "versions" / "3.10.14" / "bin" / "python3.10", "exit 1")  # broken: skipped
    assert find_python310() == tmp_path / "pyenv" / "versions" / "3.10.13" / "bin" / "python3.10"


def test_python310_from_the_environment_variable(no_python310, monkeypatch):
    monkeypatch.setenv(PY310_ENV, str(no_python310))
    assert find_python310() == no_python310
    monkeypatch.setenv(PY310_ENV, sys.executable)  # this suite's own Python, 3.11
    with pytest.raises(pytest.fail.Exception, match=f"^{PY310_ENV}=.* is not a Python 3.10"):
        find_python310()


def test_no_python310_fails_saying_what_to_install(no_python310):
    with pytest.raises(pytest.fail.Exception) as failure:
        find_python310()
    message = str(failure.value)
    assert "\n" not in message and "pyenv install 3.10" in message and PY310_ENV in message


def test_board_venv_has_the_images_stack_and_radix_alone(board_env):
    listed = json.loads(_checked([board_env / "bin" / "pip", "list", "--format", "json",
                                  "--disable-pip-version-check"]).stdout)
    versions = {entry["name"].lower().replace("_", "-"): entry["version"] for entry in listed}
    assert versions.pop("numpy") == "1.21.6" and versions.pop("radix") == "0.1.0" and versions.pop("pynq") == "3.0.1"
    for pin in PYNQ_STACK:
        name, version = pin.lower().replace("_", "-").split("==")
        assert versions.pop(name) == version, pin
    assert set(versions) <= {"pip", "setuptools"}, f"more than the board's packages installed: {versions}"
    shown = _checked([board_env / "bin" / "pip", "show", "radix", "--disable-pip-version-check"]).stdout
    assert re.search(r"^Requires: numpy$", shown, re.M), "the radix wheel declares more than numpy"
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


def test_pynq_transport_without_pynq_is_a_clean_import_error(board_env):
    hide = "import sys; sys.modules['pynq'] = None; import radix.pynq_transport"
    result = _run([board_env / "bin" / "python", "-c", hide], cwd=board_env)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: radix.pynq_transport needs the 'pynq' package of a PYNQ-Z2 board image")
    assert "(import pynq failed: import of pynq halted" in last
    # with PYNQ it imports, as `radix deploy` checks on the board
    _checked([board_env / "bin" / "python", "-W", "ignore", "-m", "radix.pynq_transport"], cwd=board_env)
    # the rest of the runtime imports without it
    _checked([board_env / "bin" / "python", "-c",
              "import sys; sys.modules['pynq'] = None; import radix.cli, radix.driver, radix.runner, radix.transport"],
             cwd=board_env)


# ---- PynqTransport over PYNQ's own DMA driver, MMIO, buffers and clocks -----------------------

def test_driver_over_pynqs_dma_driver_is_bit_exact(scenarios):
    run = facts(scenarios, "selftest")
    assert run["backend"] == "pynq" and run["layers"] == 12 and run["mismatches"] == 0
    # pynq.Overlay downloaded the overlay once, setting FCLK_CLK0 from its metadata; pynq.Clocks read it back
    assert len(run["downloads"]) == 1 and run["fclk0_divisors"] == [5, 2] and run["clock_mhz"] == 100.0
    # the DMA model never saw an access outside PG021's simple-mode registers
    assert run["unexpected"] == []
    assert set(run["dma_registers"]) <= {f"{c}_{r}" for c in ("MM2S", "S2MM")
                                         for r in ("DMACR", "DMASR", "SA", "SA_MSB", "DA", "DA_MSB", "LENGTH")}
    # every buffer freed; PYNQ flushed before each MM2S, radix invalidated after each S2MM
    assert run["allocated"] == run["freed"] and run["flushes"] >= run["lengths"].count("MM2S_LENGTH")
    assert run["invalidates"] >= run["lengths"].count("S2MM_LENGTH") >= 12


def test_engine_registers_are_addressed_by_engine_spec_only(scenarios):
    run = facts(scenarios, "selftest")
    from radix.engine_spec import REGISTERS

    assert set(run["engine_offsets"]) <= {reg.offset for reg in REGISTERS}
    assert set(run["engine_written"]) <= {"rw", "ctrl", "status"}


def test_every_job_arms_s2mm_before_mm2s_starts(scenarios):
    """The LENGTH writes (what starts a simple-mode transfer) alternate S2MM, MM2S, S2MM, ..."""
    lengths = facts(scenarios, "selftest")["lengths"]
    assert lengths and len(lengths) % 2 == 0
    assert lengths == ["S2MM_LENGTH", "MM2S_LENGTH"] * (len(lengths) // 2)


def test_start_up_resets_the_engine_and_the_dma(scenarios):
    """Before the first transfer: radix writes CTRL.RESET, DMACR.Reset on both channels and
    DMACR.RS on both (each waited for), then PYNQ's DMA driver starts the running channels."""
    startup = [tuple(entry) for entry in facts(scenarios, "selftest")["startup"]]
    dmacr = [(name, value) for region, name, value in startup if name.endswith("_DMACR")]
    assert dmacr == [("MM2S_DMACR", 4), ("S2MM_DMACR", 4),  # the soft reset
                     ("MM2S_DMACR", 1), ("S2MM_DMACR", 1),  # run again
                     ("MM2S_DMACR", 1), ("S2MM_DMACR", 1)]  # pynq.lib.dma.DMA() -> _SDMAChannel.start()
    reset = startup.index(("engine", "CTRL", 4))
    assert reset < startup.index(("dma", "MM2S_DMACR", 4))


@pytest.mark.parametrize("mode, error, message", [
    ("short", "StreamLengthError", r"layer random0 job 1/1: output stream ended \(TLAST\) after (\d+) words, expected (\d+)"),
    ("long", "StreamLengthError", r"layer random0 job 1/1: output stream longer than the expected \d+ words"),
    ("hang", "EngineTimeout", r"layer random0 job 1/1: 0 of \d+ output words after \d+ cycles\nregisters: ID=0x52445831.*"
                              r"\nDMA MM2S: DMACR=0x00000001 \(RS\), DMASR=0x00001002 \(Idle, IOC_Irq\), SA=0x[0-9A-F]+, "
                              r"LENGTH=\d+; S2MM: DMACR=0x00000001 \(RS\), DMASR=0x00000000 \(running\)"),
    ("slave_error", "BoardError", r"S2MM: the DMA reports an error: S2MM_DMASR=0x00004021 \(Halted, DMASlvErr, Err_Irq\)"),
    ("stuck_input", "BoardError", r"MM2S: the engine has not accepted all \d+ words of the input stream within 0.05 s"),
])
def test_stream_faults_are_named_and_the_transport_recovers(scenarios, mode, error, message):
    result = facts(scenarios, f"fault_{mode}")
    assert result["error"] == error and re.match(message, result["message"], re.S), result["message"]
    if mode == "short":
        found = re.match(message, result["message"])
        assert int(found[1]) == int(found[2]) - 1
    # the same transport runs the next layers bit-exactly: after a timeout the driver reset it,
    # after any other fault the next job's START did
    assert result["recovered"] is True
    assert result["dma_resets_total"] >= (0 if mode == "short" else 1)
    if mode == "hang":
        assert result["fault_after"] is None and result["dma_resets"] == 1


def test_receive_timeout_then_reset(scenarios):
    result = facts(scenarios, "receive_timeout")
    assert result["words"] == 0 and result["last"] is False
    assert result["fault"].startswith("S2MM: the output stream did not end within 0.05 s (1000 cycles at 100 MHz)")
    assert "S2MM: DMACR=0x00000001 (RS), DMASR=0x00000000 (running)" in result["fault"]
    assert result["refused"]["error"] == "BoardError" and "call reset()" in result["refused"]["message"]
    assert result["fault_after_reset"] is None


def test_a_dma_reset_that_never_completes_is_bounded_and_named(scenarios):
    result = facts(scenarios, "reset_stuck")
    assert result["error"] == "BoardError"
    assert result["message"].startswith("DMA: timed out after 0.05 s waiting for the AXI DMA's soft reset to complete")
    assert "MM2S: DMACR=0x00010004 (Reset)" in result["message"]


def test_clock_from_pynq_and_refused_when_the_ps_cannot_make_it(scenarios):
    result = facts(scenarios, "clocks")
    assert result["budget_short"] == 1.0 and result["budget_long"] == pytest.approx(4.0)
    assert result["refused"]["error"] == "ClockError"
    assert "the engine clock 130 MHz is not a frequency the PS can make" in result["refused"]["message"]
    assert "the nearest are 125 and 142.857 MHz" in result["refused"]["message"]
    assert result["fclk_142"] == pytest.approx(1000 / 7)


def test_stream_longer_than_the_dma_length_register_is_refused(scenarios):
    result = facts(scenarios, "too_long")
    assert result["error"] == "BoardError"
    assert result["message"].startswith("MM2S: an input stream of 1048576 words is 8388608 bytes, more than the DMA's "
                                        "buffer length register allows (8388607 bytes")


@pytest.mark.parametrize("case, error, message", [
    ("missing_radix.hwh", "FileNotFoundError", "its hardware description .*radix.hwh is missing"),
    ("missing_radix.bit", "FileNotFoundError", "overlay bitstream .*radix.bit not found"),
    ("no_engine", "BoardError", r"has no IP 'engine' \(its IPs: axi_dma, ps7\): is it a Radix overlay"),
    ("no_dma", "BoardError", r"has no IP 'axi_dma' \(its IPs: engine, ps7\)"),
    ("small_span", "BoardError", "engine maps 128 bytes, the registers need 172"),
    ("wrong_id", "BoardError", "register ID of engine at 0x43C00000 reads 0xDEADBEEF"),
    ("dma_7_2", "BoardError", r"axi_dma \(xilinx.com:ip:axi_dma:7.2\) is a DefaultIP, not PYNQ's AXI DMA driver"),
])
def test_wrong_overlay_is_named(scenarios, case, error, message):
    result = facts(scenarios, "wrong_overlays")[case]
    assert result["error"] == error and re.search(message, result["message"]), result["message"]
    if case == "dma_7_2":
        # PYNQ's own binding refused its driver for another version, and said so
        assert any("driver found for [xilinx.com:ip:axi_dma:7.1]" in w for w in result["warnings"])


def test_closed_transport_and_register_guards(scenarios):
    closed = facts(scenarios, "closed")
    assert closed["error"] == "BoardError" and "is closed" in closed["message"]
    guards = facts(scenarios, "register_guards")
    assert guards["read"] == 7 and guards["log"] == [0x048, [0x080, 0xFFFFFFFF]]
    assert guards["bad_offset"]["message"] == ("engine at 0x43C00000: offset 0x50 is not an engine register "
                                               "(radix.engine_spec.REGISTERS)")
    assert guards["bad_value"]["message"] == "engine at 0x43C00000: value -1 for register OUT_H (0x090) does not fit 32 bits"
    assert guards["dmasr"] == "0x00001002 (Idle, IOC_Irq)" and guards["dmacr"] == "0x00010005 (RS, Reset)"


def test_dma_offsets_and_bits_are_vivados(scenarios):
    """radix's DMA register offsets and status/control bits are those of axi_dma:7.1's register map
    in a Vivado-written .hwh, as PYNQ's parser reads it."""
    result = facts(scenarios, "dma_register_map")
    for name, offset in result["radix_offsets"].items():
        assert result["hwh_offsets"][name] == offset, name
    for channel in ("MM2S", "S2MM"):
        for name, bit in result["radix_dmasr"].items():
            assert result["hwh_fields"][f"{channel}_DMASR"][name] == bit, (channel, name)
        for name, bit in result["radix_dmacr"].items():
            assert result["hwh_fields"][f"{channel}_DMACR"].get(name, bit) == bit, (channel, name)
        assert result["hwh_fields"][f"{channel}_DMACR"]["RS"] == 0 and result["hwh_fields"][f"{channel}_DMACR"]["Reset"] == 2


def test_cli_pynq_backend_on_the_board_runtime(scenarios):
    result = facts(scenarios, "cli")
    run, selftest = result["run"], result["selftest"]
    assert run["status"] == 0 and selftest["status"] == 0
    assert run["result"]["backend"] == "pynq" and run["result"]["images"] == 10 and run["result"]["bit_exact"] is True
    assert run["result"]["cycles"]["source"] == "measured" and run["result"]["cycles"]["per_image_mean"] > 0
    assert selftest["result"]["backend"] == "pynq" and selftest["result"]["mismatches"] == 0


def test_bring_up_record_made_on_the_board_runtime_replays_on_the_host(scenarios):
    result = facts(scenarios, "bringup")
    record = result["record"]
    assert result["status"] == 0 and "replays clean" in result["output"]
    assert record["source"] == BOARD_SOURCE and record["backend"] == "pynq" and record["versions"]["pynq"] == "3.0.1"
    assert record["versions"]["python"].startswith("3.10.") and record["versions"]["numpy"] == "1.21.6"
    assert record["run"]["cycles"]["source"] == "measured" and record["clock_mhz"] == 100.0
    assert "DMA MM2S: DMACR=" in record["diagnostics"]
    assert replay(record) == []


# ---- the board notebook -----------------------------------------------------------------------

NOTEBOOK = BOARD / "radix_lenet5.ipynb"


def test_notebook_is_clean_nbformat_4():
    notebook = json.loads(NOTEBOOK.read_text())
    assert notebook["nbformat"] == 4 and notebook["cells"]
    for cell in notebook["cells"]:
        assert cell["cell_type"] in ("markdown", "code") and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", cell["id"])
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


def test_notebook_runs_on_the_board_runtime(scenarios):
    """Every code cell, in order, in its directory, over PYNQ and the model board."""
    result = facts(scenarios, "notebook")
    assert result["images"] == 40 and result["bit_exact"] is True and result["cycles_source"] == "measured"
    assert result["accuracy"] == result["reference_accuracy"]
    assert "bit-exact with the reference on every image and layer" in result["output"]
    assert re.search(r"^cycles/image", result["output"], re.M) is None
    assert re.search(r"layer\s+cycles/image \(measured\)\s+cycles/image \(analytic model\)\s+saturated", result["output"])
    assert result["allocated"] == result["freed"]
