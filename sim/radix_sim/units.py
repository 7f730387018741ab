"""Cached simulator builds of single gateware units (PE, systolic array, output unit).

:func:`build_unit` turns an Amaranth component into Verilog with the unit's own top-level name
and compiles it once per distinct Verilog text, like :func:`radix_sim.build.build_engine`
does for the whole engine (same simulator set-up, arguments, build root and lock/stamp scheme).
:func:`run_unit_tests` runs cocotb tests of ``radix_sim.test_units_cocotb`` against a build;
the unit's parameters reach the testbench as JSON in ``RADIX_UNIT_PARAMS``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from amaranth.back import verilog as amaranth_verilog
from amaranth.lib import wiring
from radix.engine_spec import EngineConfig

from .build import BUILD_ROOT, Build, compile_verilog, run_tests

TEST_MODULE = "radix_sim.test_units_cocotb"
PARAMS_ENV = "RADIX_UNIT_PARAMS"


def make_pe(*, width: int, acc_width: int) -> wiring.Component:
    from radix_hw.pe import ProcessingElement

    return ProcessingElement(width=width, acc_width=acc_width)


def make_array(*, rows: int, cols: int, width: int) -> wiring.Component:
    from radix_hw.array import SystolicArray

    return SystolicArray(rows=rows, cols=cols, width=width)


def make_output_unit(**config) -> wiring.Component:
    from radix_hw.output_unit import OutputUnit

    return OutputUnit(config=EngineConfig(**config))


# Top-level module name -> component factory (called with the unit's parameters).
UNITS: dict[str, Callable[..., wiring.Component]] = {
    "radix_pe": make_pe,
    "radix_array": make_array,
    "radix_output_unit": make_output_unit,
}


def unit_verilog(component: wiring.Component, name: str) -> str:
    """Verilog text of ``component`` as module ``name`` (no source locations, so the text and
    the build key depend on the gateware alone)."""
    return amaranth_verilog.convert(component, name=name, emit_src=False)


def build_unit(
    name: str,
    component_factory: Callable[..., wiring.Component] | None = None,
    params: dict | None = None,
    *,
    simulator: str | None = None,
    build_root: Path = BUILD_ROOT,
) -> Build:
    """Generate ``component_factory(**params)`` as module ``name`` and compile it unless an
    identical build exists. ``component_factory`` defaults to ``UNITS[name]``; ``params`` must be
    JSON-serialisable."""
    params = dict(params or {})
    if component_factory is None:
        if name not in UNITS:
            raise ValueError(f"unknown unit {name!r}: choose one of {', '.join(UNITS)} or pass a factory")
        component_factory = UNITS[name]
    text = unit_verilog(component_factory(**params), name)
    return compile_verilog(text, toplevel=name, identity={"unit": name, "params": params}, simulator=simulator,
                           build_root=build_root)


def run_unit_tests(build: Build, *, testcase: str, params: dict, extra_env: dict | None = None,
                   run_name: str | None = None) -> None:
    """Run ``testcase`` of :data:`TEST_MODULE` against a unit ``build``; ``params`` (the unit's
    parameters) reach the testbench as JSON in ``RADIX_UNIT_PARAMS``."""
    env = {PARAMS_ENV: json.dumps(params, sort_keys=True), **(extra_env or {})}
    run_tests(build, test_module=TEST_MODULE, testcase=testcase, run_name=run_name, extra_env=env)
