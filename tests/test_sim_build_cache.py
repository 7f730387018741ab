"""The simulation build cache: keyed by what the binary depends on, not by how radix was started;
and the suite's reproducible Hypothesis profile (tests/conftest.py).

No simulator runs here: cocotb's runner is replaced by one that records its builds, so these
tests take seconds. (The real builds are exercised by tests/test_sim_*.py.)
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
from pathlib import Path

import cocotb_tools.runner
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from radix.backends import run as run_backend
from radix.engine_spec import EngineConfig
from radix_sim import build, bus_build, hostrun

VERILOG = "module top(input wire a, output wire b); assign b = a; endmodule\n"
OUR_MAKEFLAGS = "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O1 OPT_GLOBAL=-O1"
# What `make demo DEMO_IMAGES=20` and `make -j` leave in the environment of the commands they run.
OUTER_MAKE = {"MAKEFLAGS": "j2 --jobserver-auth=fifo:/tmp/GMfifo1 -- DEMO_IMAGES=20", "MAKELEVEL": "1",
              "MFLAGS": "-j2"}


def key(text: str = VERILOG, **changes) -> str:
    """build_key of ``text`` with the arguments of an engine build, some changed."""
    arguments = {"toplevel": "top", "identity": EngineConfig().as_dict(), "simulator": "verilator", **changes}
    return build.build_key(text, **arguments)


@pytest.fixture
def no_outer_make(monkeypatch):
    """An environment as if radix had been started from a shell, not from make."""
    for name in OUTER_MAKE:
        monkeypatch.delenv(name, raising=False)
    for name in build.TOOLCHAIN_ENV:
        monkeypatch.delenv(name, raising=False)


class RecordingRunner:
    """Stands in for cocotb's runner: records each build and the MAKEFLAGS it would have run with."""

    def __init__(self, builds: list):
        self.builds = builds

    def build(self, *, build_dir, **_):
        self.builds.append({"build_dir": Path(build_dir), "MAKEFLAGS": os.environ.get("MAKEFLAGS")})


@pytest.fixture
def builds(monkeypatch) -> list:
    """The builds compile_verilog asks cocotb's runner for, none of them run."""
    made: list = []
    monkeypatch.setattr(cocotb_tools.runner, "get_runner", lambda simulator: RecordingRunner(made))
    return made


# ---- the key ----------------------------------------------------------------------------------

def test_key_ignores_the_make_radix_runs_under(no_outer_make, monkeypatch):
    alone = key()
    for name, value in OUTER_MAKE.items():
        monkeypatch.setenv(name, value)
    assert key() == alone
    monkeypatch.setenv("MAKEFLAGS", "-j8")
    assert key() == alone


def test_key_follows_what_the_binary_depends_on(no_outer_make, monkeypatch):
    keys = {
        "reference": key(),
        "verilog": key(VERILOG.replace("assign b = a", "assign b = ~a")),
        "config": key(identity=EngineConfig(width=16).as_dict()),
        "toplevel": key(toplevel="other"),
    }
    for what, target, name, value in [
        ("compiler flags", os.environ, "CXXFLAGS", "-march=native"),
        ("simulator version", build, "simulator_version", lambda simulator: "Verilator 9.000"),
        ("make variables", build, "MAKE_VARIABLES", {**build.MAKE_VARIABLES, "OPT_FAST": "-O3"}),
        ("cocotb version", importlib.metadata, "version", lambda package: "0.0"),
    ]:
        with monkeypatch.context() as change:
            if target is os.environ:
                change.setenv(name, value)
            else:
                change.setattr(target, name, value)
            keys[what] = key()
    assert len(set(keys.values())) == len(keys), keys


def test_key_names_the_verilator_build():
    assert build.simulator_version("verilator"), "verilator --version printed nothing"


# ---- compile_verilog --------------------------------------------------------------------------

def test_a_build_is_reused_whatever_make_started_radix(no_outer_make, builds, tmp_path, monkeypatch):
    started: list = []
    compile_top = functools.partial(build.compile_verilog, toplevel="top", identity={"unit": "top"},
                                    simulator="verilator", build_root=tmp_path, on_build=lambda: started.append(1))
    first = compile_top(VERILOG)
    for name, value in OUTER_MAKE.items():
        monkeypatch.setenv(name, value)
    again = compile_top(VERILOG)
    assert again == first and len(builds) == 1 and started == [1]
    other = compile_top(VERILOG.replace("assign b = a", "assign b = ~a"))
    assert other.build_dir != first.build_dir and len(builds) == 2 and started == [1, 1]
    # each build ran with our make variables alone, under make or not, and the outer MAKEFLAGS is back
    assert [made["MAKEFLAGS"] for made in builds] == [OUR_MAKEFLAGS] * 2
    assert os.environ["MAKEFLAGS"] == OUTER_MAKE["MAKEFLAGS"]


def test_build_environment_restores_an_absent_makeflags(no_outer_make):
    with build.build_environment():
        assert os.environ["MAKEFLAGS"] == OUR_MAKEFLAGS
    assert "MAKEFLAGS" not in os.environ


# ---- the sim backend says when it builds ------------------------------------------------------

def test_sim_backend_announces_a_build_on_stderr_only(no_outer_make, builds, tmp_path, monkeypatch, capsys):
    # the real chain backend -> run_host -> build_bus_engine -> compile_verilog, with a fixed
    # Verilog text, the builds under tmp_path and a simulation that only writes the host function's result
    monkeypatch.setattr(bus_build, "unit_verilog_of", lambda config: VERILOG)
    monkeypatch.setattr(hostrun, "build_bus_engine", functools.partial(bus_build.build_bus_engine, build_root=tmp_path))

    def simulate(built, *, extra_env, **_):
        job = json.loads(Path(extra_env["RADIX_HOST_JOB"]).read_text())
        Path(job["result"]).write_text(json.dumps({"value": {"ran": job["function"]}}))

    monkeypatch.setattr(hostrun, "run_tests", simulate)
    config = EngineConfig()
    assert run_backend("sim", "radix.runner:selftest", {}, config) == {"ran": "radix.runner:selftest"}
    out, err = capsys.readouterr()
    assert out == "" and err == ("radix: building the RTL simulation for 16x24 W=8 "
                                 "(2-3 minutes, once per configuration)...\n")
    assert run_backend("sim", "radix.runner:selftest", {}, config) == {"ran": "radix.runner:selftest"}
    assert capsys.readouterr() == ("", "") and len(builds) == 1


# ---- reproducible property tests (tests/conftest.py) ------------------------------------------

def _drawn(profile: str) -> list[int]:
    """The integers a 20-example property test draws under ``profile``."""
    seen: list[int] = []

    @settings(settings.get_profile(profile), max_examples=20, database=None)
    @given(st.integers())
    def record(value):
        seen.append(value)

    record()
    return seen


def test_hypothesis_profile_is_derandomized_unless_asked(request):
    chosen = request.config.getoption("hypothesis_profile", None) or os.environ.get("HYPOTHESIS_PROFILE",
                                                                                    "reproducible")
    assert settings.default.derandomize == settings.get_profile(chosen).derandomize
    assert settings.get_profile("reproducible").print_blob and settings.get_profile("explore").print_blob
    assert _drawn("reproducible") == _drawn("reproducible")
    assert _drawn("explore") != _drawn("explore")
