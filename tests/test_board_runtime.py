"""The on-board runtime, rehearsed: the board's Python 3.10 + numpy 1.21 + PYNQ 3.0.1, and the radix wheel.

Once per session a venv is made from Python 3.10 with ``numpy==1.21.6``, then PYNQ 3.0.1 from
PyPI with ``--no-deps`` and the part of its dependency tree that ``import pynq`` (its overlay,
metadata and interrupt code) needs, at the versions of the PYNQ-Z2 v3.0.1 image (its sdbuild requirements.txt, the Ubuntu
22.04 packages where the image takes them from apt, the nearest PyPI releases of pynqmetadata and
pynqutils, which the image builds from git): :data:`PYNQ_STACK`. Nothing is stubbed. The wheel
that ``pip wheel --no-deps .`` builds (what boards/pynq_z2/README.md copies to the board) goes in
with ``--no-deps``.

In it: ``radix run`` on a program and an ``.npz`` made by the host flow; the pynq transport
(:class:`radix.pynq_transport.PynqBusTransport`) under the driver, the CLI's pynq backend, the
bring-up recorder and the board notebook through PYNQ's own ``Overlay`` (the overlay's ``.hwh``
read by the metadata parser PYNQ uses on the board), ``MMIO``, ``allocate``, ``Clocks`` and
``Interrupt`` over register-level models of the bus-master engine, which runs each command list
with the reference bus engine over the buffers' DDR, and of the AXI interrupt controller and the
UIO device (tests/pynq_board.py; the scenarios in tests/board_scenarios.py run once, in one
process, and the tests below check what they recorded); and the clean ImportError without PYNQ.

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
from radix.engine_spec import BUS_ENGINE_VERSION, BUS_REGISTERS, DEFAULT_CONFIG
from radix.cli import main as radix_main
from radix.datasets import load_split

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
BOARD = REPO / "boards" / "pynq_z2"
PY310_ENV = "RADIX_PY310"
BOARD_NUMPY = "numpy==1.21.6"  # what the PYNQ-Z2 v3.0.1 image has
PYNQ = "pynq==3.0.1"
# What `import pynq` (overlay, metadata parser, interrupts) needs, each installed with --no-deps, pinned to the v3.0.1
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


def gateware_ports() -> list:
    """The bus-master engine's top-level ports, ``(name, direction, width)``, from the gateware:
    the clock and reset, then its signature's members (as ``radix_hw.verilog`` writes the top
    level ``radix_bus_engine``; tests/test_board_tcl.py checks the Verilog's ports against these)."""
    from amaranth import Shape
    from amaranth.lib import wiring
    from radix_hw.bus_engine import BusEngine

    members = BusEngine(config=DEFAULT_CONFIG).signature.members.items()
    return [("clk", "input", 1), ("rst", "input", 1)] + [
        (name, "input" if member.flow == wiring.In else "output", Shape.cast(member.shape).width)
        for name, member in members]


@pytest.fixture(scope="module")
def scenarios(board_env, host_artifacts, tmp_path_factory) -> dict:
    """Every scenario of tests/board_scenarios.py, run once in the board runtime: ``{name: facts}``."""
    program, data = host_artifacts
    root = tmp_path_factory.mktemp("scenarios")
    notebook_dir = root / "notebook"
    notebook_dir.mkdir()
    shutil.copy(program, notebook_dir / "lenet5.radix")
    shutil.copy(data, notebook_dir / "lenet5-test.npz")
    plan = {"engine_ports": gateware_ports(), "program": str(program), "data": str(data),
            "workdir": str(root / "work"), "notebook_dir": str(notebook_dir),
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
    argv = ["run", program, "--backend", "reference", "--data", data, "--images", "20", "--batch", "5", "--json"]
    board = json.loads(_checked([board_env / "bin" / "radix", *argv], cwd=board_env).stdout)
    assert board["images"] == 20 and board["batch"] == 5 and board["bit_exact"] is True
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
              "import sys; sys.modules['pynq'] = None; import radix.cli, radix.driver, radix.runner, radix.bringup, "
              "radix.bus_transport, radix.command_exec, radix.overlay"], cwd=board_env)


# ---- PynqBusTransport under the driver, over PYNQ's own Overlay, MMIO, buffers, clocks, interrupts -

BATCH = ["write STATUS", "write CTRL"]  # the driver: clear STATUS, START
AFTER = ["read STATUS", "read CYCLES", "read BEATS_READ", "read BEATS_WRITTEN"]  # the driver, once done


def test_overlay_loads_through_pynqs_metadata_parser(scenarios):
    """PYNQ parsed the .hwh of the new block design: the engine cell with its registers, its
    interrupt through the AXI interrupt controller (an interrupt pin PYNQ can wait on), the clock."""
    run = facts(scenarios, "batches_interrupt")
    assert run["wait_mode"] == "interrupt engine/interrupt through axi_intc"
    assert len(run["downloads"]) == 1 and run["fclk0_divisors"] == [5, 2] and run["clock_mhz"] == 100.0
    assert run["unexpected"] == []
    assert set(run["engine_offsets"]) <= {reg.offset for reg in BUS_REGISTERS}
    assert set(run["engine_written"]) == {"CMD_BASE", "CMD_COUNT", "WIN_BASE", "WIN_SIZE", "STATUS", "CTRL"}


def test_a_batch_is_one_start_and_a_fixed_few_register_accesses(scenarios):
    """Loading writes the list and the window once; each batch is bit-exact from one START, with
    one STATUS read per interrupt: the first batch wakes once, later ones twice (the level
    interrupt's stale wake-up), whatever the engine's run time."""
    fast, slow = facts(scenarios, "batches_interrupt"), facts(scenarios, "batches_interrupt_slow")
    for run in (fast, slow):
        assert run["load"] == ["write CMD_BASE", "write CMD_COUNT", "write WIN_BASE", "write WIN_SIZE"]
        assert run["starts"] == len(run["runs"]) == 3 and run["engine_done"] == [True] * 3
        for index, batch in enumerate(run["runs"]):
            wakes = 1 if index == 0 else 2
            assert batch["bit_exact"] is True
            assert batch["engine"] == BATCH + ["read STATUS"] * wakes + AFTER
            assert batch["register_accesses"] == len(batch["engine"]) <= 8
            assert batch["fired"] == batch["unmasks"] == wakes
    # a ten times slower engine: the same traffic, and the time is the transport's wait
    assert [b["engine"] for b in slow["runs"]] == [b["engine"] for b in fast["runs"]]
    assert min(b["seconds"] for b in slow["runs"]) >= 0.2
    assert fast["engine_seconds"] < slow["engine_seconds"] <= sum(b["seconds"] for b in slow["runs"])
    # every write flushed, every read invalidated, the buffer freed
    assert fast["flushes"] >= 5 and fast["invalidates"] >= 3 and fast["allocated"] == fast["freed"] == 1


def test_waits_inside_a_running_event_loop_as_in_jupyter(scenarios):
    """Jupyter runs cells inside its event loop: the transport waits on the interrupt there too."""
    nested = facts(scenarios, "inside_an_event_loop")
    assert nested["loop_running"] is True and nested["wait_mode"] == "interrupt engine/interrupt through axi_intc"
    assert nested["bit_exact"] == [True, True] and nested["register_accesses"] == [7, 8] and nested["fired"] == 3


def test_the_window_is_the_buffer(scenarios):
    run = facts(scenarios, "batches_interrupt")
    address, size = run["buffer"]
    window = run["window"]
    assert window["WIN_BASE"] == address and window["WIN_SIZE"] == size == run["memory_bytes"]
    assert address <= window["CMD_BASE"] < address + size and address % 4096 == 0


def test_without_a_usable_interrupt_the_transport_polls(scenarios):
    direct = facts(scenarios, "batches_direct_irq")
    assert direct["wait_mode"] == ("polling STATUS (the overlay routes the engine's interrupt to no AXI interrupt "
                                   "controller, which pynq.Interrupt needs)")
    assert all(b["bit_exact"] and b["intc"] == 0 and b["fired"] == 0 for b in direct["runs"])
    assert all(b["engine"][:2] == BATCH and b["engine"][-3:] == AFTER[1:] for b in direct["runs"])
    assert all(b["engine"].count("read STATUS") > 3 for b in direct["runs"])  # it polled
    polling = facts(scenarios, "polling")
    assert polling["wait_mode"] == "polling STATUS (interrupt=False)" and polling["bit_exact"] is True
    assert polling["intc"] == 0 and polling["irq_en"] is False
    no_uio = facts(scenarios, "no_uio")
    assert no_uio["wait_mode"].startswith("polling STATUS (pynq.Interrupt('engine/interrupt') failed: ")


def test_transport_alone_runs_a_placed_list(scenarios):
    """radix.placement's memory image written with write_memory, the registers, one START."""
    placed = facts(scenarios, "placed_list")
    assert placed["done"] is True and placed["status"] == 2 and placed["bit_exact"] is True
    assert placed["cmd_done"] == placed["cmd_count"] > 1


def test_a_bad_opcode_is_reported_with_the_decoded_registers_and_the_transport_recovers(scenarios):
    fault = facts(scenarios, "fault_opcode")
    assert fault["error"] == "EngineFault"
    message = fault["message"]
    assert message.startswith(f"the engine stopped at command {fault['index']} (layer {fault['layer']}): ERR_CODE OPCODE")
    assert (f"engine at 0x43C00000: STATUS=0x00000004 (ERROR), CMD_DONE={fault['index']}, ERR_CODE=3 (OPCODE: the "
            f"command's opcode is not one this engine knows), ERR_INDEX={fault['index']}, ERR_ADDR=0x00000000") in message
    assert re.search(r"; buffer 0x[0-9A-F]{8}\.\.0x[0-9A-F]{8} \(\d+ bytes\); waits: interrupt", message)
    assert fault["status_after"] == 0 and fault["recovered"] is True


def test_a_window_error_names_the_address(scenarios):
    window = facts(scenarios, "fault_window")
    assert window["done"] is True
    assert (f"ERR_CODE=1 (WINDOW: a burst would reach outside [WIN_BASE, WIN_BASE + WIN_SIZE); ERR_ADDR is its first "
            f"byte), ERR_INDEX=0, ERR_ADDR=0x{window['window_end']:08X}") in window["diagnostics"]
    assert (f"window 0x{window['base']:08X} +{window['memory_bytes'] - 4096} bytes; buffer 0x{window['base']:08X}"
            in window["diagnostics"])
    assert window["run"]["error"] == "EngineFault" and "ERR_CODE WINDOW" in window["run"]["message"]


def test_an_engine_that_never_finishes_times_out_with_its_registers(scenarios):
    hang = facts(scenarios, "timeout")
    assert hang["error"] == "EngineTimeout"
    assert hang["message"].startswith("the command list did not finish within 100000 cycles\nregisters: ID=0x52445831")
    assert "STATUS=0x00000001 (BUSY)" in hang["message"]
    assert hang["budget_s"] == 0.05 and hang["seconds"] < 1.0
    # no polling while asleep on the interrupt: one STATUS read at the deadline, then the driver's
    assert hang["engine"][:4] == BATCH + ["read STATUS", "read STATUS"]
    assert hang["engine"][-2:] == ["write CTRL", "read STATUS"]  # the driver reset the engine
    assert hang["recovered"] is True
    polled = facts(scenarios, "timeout_polling")
    assert polled["error"] == "EngineTimeout" and polled["seconds"] < 1.0 and polled["wait_mode"].startswith("polling")


def test_resets(scenarios):
    """Start-up identifies the engine and resets it (CTRL.RESET with IRQ_EN), waiting for BUSY to fall."""
    resets = facts(scenarios, "resets")
    assert resets["startup"] == ["read ID", "read VERSION", "write CTRL=6", "read STATUS"]
    assert resets["reset"] == ["write CTRL", "read STATUS"]
    stuck = facts(scenarios, "reset_stuck")
    for result in (stuck, stuck["direct"]):
        assert result["error"] == "BoardError"
        assert result["message"].startswith("engine at 0x43C00000: STATUS.BUSY still set 0.05 s after CTRL.RESET; "
                                            "engine at 0x43C00000: STATUS=0x00000001 (BUSY)")


def test_buffer_allocation_cache_maintenance_and_bounds(scenarios):
    memory = facts(scenarios, "memory")
    assert memory["before"] == {"error": "BoardError", "message": "no buffer: call allocate() first"}
    first, smaller, larger = memory["first"], memory["smaller"], memory["larger"]
    # zeroed in DDR although the allocator left garbage in both the cache and DDR
    assert first["zero"] and first["size"] == 1000 and first["address"] % 4096 == 0
    assert memory["write"] == {"flushes": 1, "bytes": 24}  # only the words written
    assert memory["read"] == [1, 2, 3, 0xABCDEF] and memory["invalidated"] == 32  # what the engine wrote
    assert smaller["address"] == first["address"] and smaller["size"] == 512 and smaller["zero"]
    assert larger["address"] != first["address"] and larger["freed"] == [first["address"]]
    assert memory["outside"]["error"] == memory["unaligned"]["error"] == memory["empty"]["error"] == "ValueError"
    assert "inside the 1048576-byte buffer" in memory["outside"]["message"]
    for key in ("closed", "closed_memory"):
        assert memory[key]["error"] == "BoardError" and "is closed" in memory[key]["message"]
    assert memory["freed_after_close"] == 2


def test_clock_from_pynq_and_refused_when_the_ps_cannot_make_it(scenarios):
    result = facts(scenarios, "clocks")
    assert result["budget_short"] == 1.0 and result["budget_long"] == pytest.approx(4.0)
    assert result["refused"]["error"] == "ClockError"
    assert "the engine clock 130 MHz is not a frequency the PS can make" in result["refused"]["message"]
    assert "the nearest are 125 and 142.857 MHz" in result["refused"]["message"]
    assert result["fclk_142"] == pytest.approx(1000 / 7)


@pytest.mark.parametrize("case, error, message", [
    ("missing_radix.hwh", "FileNotFoundError", "its hardware description .*radix.hwh is missing"),
    ("missing_radix.bit", "FileNotFoundError", "overlay bitstream .*radix.bit not found"),
    ("no_engine", "BoardError", r"has no IP 'engine' \(its IPs: axi_intc, ps7\)\. Is it a Radix overlay"),
    ("small_span", "BoardError", "engine maps 128 bytes, the registers need 144"),
    ("wrong_id", "BoardError", "register ID of engine at 0x43C00000 reads 0xDEADBEEF"),
    ("version_4", "BoardError", "engine is engine VERSION 4, this transport drives the bus-master engine, "
                              f"VERSION {BUS_ENGINE_VERSION}"),
    ("stream_engine", "BoardError", r"engine is a xilinx.com:module_ref:radix_engine:1.0, not the bus-master engine "
                                    r"\(module radix_bus_engine\)"),
])
def test_wrong_overlay_is_named(scenarios, case, error, message):
    result = facts(scenarios, "wrong_overlays")[case]
    assert result["error"] == error and re.search(message, result["message"]), result["message"]


def test_registers_by_engine_spec_only(scenarios):
    guards = facts(scenarios, "register_guards")
    assert guards["read"] == 7 and guards["log"] == [0x048, [0x080, 0xFFFFFFFF]]
    assert guards["bad_offset"]["message"] == ("engine at 0x43C00000: offset 0x90 is not a register of the bus-master "
                                               "engine (radix.engine_spec.BUS_REGISTERS)")
    assert guards["bad_value"]["message"] == ("engine at 0x43C00000: value -1 for register WIN_SIZE (0x08C) does not "
                                              "fit 32 bits")
    assert guards["status"] == "0x00000005 (BUSY, ERROR)" and guards["no_error"] == "0 (none)"
    assert guards["error"].startswith("1 (WINDOW: a burst would reach outside")


def test_cli_pynq_backend_on_the_board_runtime(scenarios):
    result = facts(scenarios, "cli")
    run, selftest = result["run"], result["selftest"]
    assert run["status"] == 0 and selftest["status"] == 0
    run = run["result"]
    assert run["backend"] == "pynq" and run["images"] == 10 and run["batch"] == 5 and run["bit_exact"] is True
    assert run["cycles"]["source"] == "measured" and run["cycles"]["per_image_mean"] > 0
    assert run["per_image"]["register_accesses"] <= 8 / 5
    assert selftest["result"]["backend"] == "pynq" and selftest["result"]["mismatches"] == 0
    assert result["run"]["starts"] == 2 and result["selftest"]["starts"] == 5  # two batches; five one-layer lists


def test_bring_up_record_made_on_the_board_runtime_replays_on_the_host(scenarios):
    result = facts(scenarios, "bringup")
    record = result["record"]
    assert result["status"] == 0 and "replays clean" in result["output"]
    assert record["source"] == BOARD_SOURCE and record["backend"] == "pynq" and record["versions"]["pynq"] == "3.0.1"
    assert record["versions"]["python"].startswith("3.10.") and record["versions"]["numpy"] == "1.21.6"
    assert record["run"]["cycles"]["source"] == "measured" and record["clock_mhz"] == 100.0
    assert record["run"]["batch"] == 10 and record["run"]["images"] == 20
    checks = record["checks"]
    assert checks["list"]["status"] == 2 and checks["opcode"]["err_code"] == 3 and checks["window"]["err_code"] == 1
    assert "waits: interrupt engine/interrupt through axi_intc" in record["diagnostics"]
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
    assert result["batch"] == 20 and result["starts"] == 2 and result["fired"] >= 2
    assert result["accuracy"] == result["reference_accuracy"]
    assert "bit-exact with the reference on every image and layer" in result["output"]
    assert "waits: interrupt engine/interrupt through axi_intc" in result["output"]
    assert re.search(r"layer\s+cycles/image \(measured\)\s+cycles/image \(analytic model\)\s+saturated", result["output"])
    assert result["allocated"] == result["freed"]
