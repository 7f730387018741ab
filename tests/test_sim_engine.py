"""Whole-engine simulation: random layers, every output word checked against the golden model.

Two configurations: an awkward W=8 array (3 rows, 5 columns: lanes that fill no whole word) and
a W=16 one whose pixel groups take two stream words. Each is built once per session. About 40%
of the random jobs have a residual add (FLAGS.ADD), and each tensor (input, skip, output) is
unsigned in about half of them (docs/arithmetic.md §1); the testbench's expected words are
checked first against ``radix.transport.ReferenceTransport``, the engine's behaviour in software.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from radix.engine_spec import LAYER_REGISTERS, EngineConfig, field_mask, register
from radix.transport import ReferenceTransport
from radix_sim.build import build_engine, run_tests
from radix_sim.tb import random_job

# Verilator always; Icarus too where iverilog is installed (it is optional on these machines)
SIMULATORS = ["verilator"] + (["icarus"] if shutil.which("iverilog") else [])

CONFIGS = {
    "w8_3x5": (EngineConfig(rows=3, cols=5, width=8, in_depth=256, wt_depth=256, acc_depth=128), 48),
    "w16_5x4": (EngineConfig(rows=5, cols=4, width=16, in_depth=256, wt_depth=512, acc_depth=128), 30),
}
SEEDS = {"w8_3x5": 11, "w16_5x4": 23}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_random_jobs_agree_with_reference_transport(name):
    """The testbench's golden words and SATURATED equal what the reference transport computes
    from the same registers and input stream (skip map crop, skip shift fields, tiles, the
    signedness flags)."""
    config = CONFIGS[name][0]
    rng = np.random.default_rng(SEEDS[name])
    kinds = set()
    for _ in range(200):
        job = random_job(rng, config)
        kinds.add(tuple(bool(job.layer["FLAGS"] & field_mask("FLAGS", f))
                        for f in ("ADD", "IN_UNSIGNED", "SKIP_UNSIGNED", "OUT_UNSIGNED")))
        reference = ReferenceTransport(config)
        for reg in LAYER_REGISTERS:
            reference.write(register(reg).offset, job.layer[reg])
        reference.write(register("CTRL").offset, field_mask("CTRL", "START"))
        reference.send(job.words)
        assert reference.wait_done(0), f"{job.description}: the reference wants more input"
        got = reference.receive(job.expected.size + 1, 0).words
        np.testing.assert_array_equal(got, job.expected, err_msg=job.description)
        assert reference.read(register("SATURATED").offset) == job.saturated, job.description
    # every combination: add or not, each tensor signed or unsigned (an unsigned skip needs an add)
    assert len(kinds) == 12


@pytest.fixture(scope="module", params=[(c, s) for c in sorted(CONFIGS) for s in SIMULATORS],
                ids=lambda p: f"{p[0]}-{p[1]}")
def engine(request):
    name, simulator = request.param
    config, jobs = CONFIGS[name]
    return name, config, jobs, build_engine(config, simulator=simulator)


@pytest.mark.parametrize("testcase", ["test_random_jobs", "test_start_done_irq", "test_skip_bank_reuse"])
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


def test_engine_under_heavy_backpressure(engine):
    """Random jobs with the input stream always valid and the output stream mostly stalled: the
    accumulator banks wait on the drain, so the loader runs as far ahead as the banks allow."""
    name, config, jobs, build = engine
    run_tests(
        build,
        test_module="radix_sim.test_engine_cocotb",
        testcase="test_random_jobs",
        run_name="test_random_jobs_backpressure",
        extra_env={
            "RADIX_ENGINE_CONFIG": json.dumps(config.as_dict()),
            "RADIX_JOBS": str(jobs // 2),
            "RADIX_SEED": str(SEEDS[name] + 100),
            "RADIX_IDLE": "0",
            "RADIX_BACKPRESSURE": "0.85",
        },
    )
