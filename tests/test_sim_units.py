"""The PE, the systolic array and the output unit on Verilator through cocotb.

Each configuration is built once (cached across sessions by :func:`radix_sim.units.build_unit`)
and runs one cocotb test of ``radix_sim.test_units_cocotb`` from a fixed seed. The
configurations are few on purpose: the Amaranth-simulator tests (``tests/test_hw_pe.py``,
``test_hw_array.py``, ``test_hw_output_unit.py``) cover more sizes; these check that the
generated Verilog behaves the same on a real Verilog simulator.
"""

from __future__ import annotations

import pytest
from radix.engine_spec import EngineConfig
from radix_sim.units import build_unit, run_unit_tests

PE_CASES = {"pe_w8": {"width": 8, "acc_width": 32}, "pe_w16": {"width": 16, "acc_width": 48}}
ARRAY_CASES = {
    "array_1x1_w8": {"rows": 1, "cols": 1, "width": 8},
    "array_3x2_w8": {"rows": 3, "cols": 2, "width": 8},
    "array_5x3_w16": {"rows": 5, "cols": 3, "width": 16},
}
# cols=3 at W=8: one partly filled word per pixel; cols=11 at W=8 and cols=5 at W=16: two words.
OUTPUT_CASES = {
    name: EngineConfig(rows=2, cols=cols, width=width, in_depth=16, wt_depth=16, acc_depth=64).as_dict()
    for name, cols, width in (("output_c3_w8", 3, 8), ("output_c11_w8", 11, 8), ("output_c5_w16", 5, 16))
}
SEEDS = {name: 1000 + i for i, name in enumerate([*PE_CASES, *ARRAY_CASES, *OUTPUT_CASES])}


def _run(toplevel: str, testcase: str, name: str, params: dict, **env) -> None:
    build = build_unit(toplevel, params=params)
    run_unit_tests(build, testcase=testcase, params=params, run_name=name,
                   extra_env={"RADIX_SEED": SEEDS[name], **env})


@pytest.mark.parametrize("name", sorted(PE_CASES))
def test_pe_on_verilator(name):
    _run("radix_pe", "test_pe", name, PE_CASES[name], RADIX_CYCLES=5000)


@pytest.mark.parametrize("name", sorted(ARRAY_CASES))
def test_array_on_verilator(name):
    _run("radix_array", "test_array", name, ARRAY_CASES[name], RADIX_PASSES=40)


@pytest.mark.parametrize("name", sorted(OUTPUT_CASES))
def test_output_unit_on_verilator(name):
    _run("radix_output_unit", "test_output_unit", name, OUTPUT_CASES[name], RADIX_JOBS=16)
