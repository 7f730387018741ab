"""CTRL.RESET in simulation: a reset in the middle of a job leaves the engine idle and ready, and
the next job's output is exactly the golden output (sim/radix_sim/test_reset_cocotb.py).

The build is the small W=8 array of tests/test_sim_engine.py (3 rows, 5 columns: lanes that fill
no whole word), so a session that runs both compiles it once.
"""

from __future__ import annotations

import json

import pytest
from radix.engine_spec import EngineConfig
from radix_sim.build import build_engine, run_tests

CONFIG = EngineConfig(rows=3, cols=5, width=8, in_depth=256, wt_depth=256, acc_depth=128)


@pytest.fixture(scope="module")
def build():
    return build_engine(CONFIG)


@pytest.mark.parametrize("testcase", ["test_reset_while_input_streams", "test_reset_while_output_drains",
                                      "test_reset_when_idle_clears_done_and_ignores_start"])
def test_soft_reset(build, testcase):
    run_tests(build, test_module="radix_sim.test_reset_cocotb", testcase=testcase,
              extra_env={"RADIX_ENGINE_CONFIG": json.dumps(CONFIG.as_dict()), "RADIX_JOBS": "4", "RADIX_SEED": "5"})
