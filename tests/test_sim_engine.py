"""Whole-engine simulation: random layers, every output word checked against the golden model.

Two configurations: an awkward W=8 array (3 rows, 5 columns: lanes that fill no whole word) and
a W=16 one whose pixel groups take two stream words. Each is built once per session.
"""

from __future__ import annotations

import json
import shutil

import pytest
from radix.engine_spec import EngineConfig
from radix_sim.build import build_engine, run_tests

# Verilator always; Icarus too where iverilog is installed (it is optional on these machines)
SIMULATORS = ["verilator"] + (["icarus"] if shutil.which("iverilog") else [])

CONFIGS = {
    "w8_3x5": (EngineConfig(rows=3, cols=5, width=8, in_depth=256, wt_depth=256, acc_depth=128), 40),
    "w16_5x4": (EngineConfig(rows=5, cols=4, width=16, in_depth=256, wt_depth=512, acc_depth=128), 24),
}
SEEDS = {"w8_3x5": 11, "w16_5x4": 23}


@pytest.fixture(scope="module", params=[(c, s) for c in sorted(CONFIGS) for s in SIMULATORS],
                ids=lambda p: f"{p[0]}-{p[1]}")
def engine(request):
    name, simulator = request.param
    config, jobs = CONFIGS[name]
    return name, config, jobs, build_engine(config, simulator=simulator)


@pytest.mark.parametrize("testcase", ["test_random_jobs", "test_start_done_irq"])
def test_engine(engine, testcase):
    name, config, jobs, build = engine
    run_tests(
        build,
        test_module="radix_sim.test_engine_cocotb",
        testcase=testcase,
        extra_env={
            "RADIX_ENGINE_CONFIG": json.dumps(config.as_dict()),
            "RADIX_JOBS": str(jobs),
            "RADIX_SEED": str(SEEDS[name]),
        },
    )
