"""Run a blocking host function (driver code) against the RTL simulation of one engine build.

``run_host("radix.runner:selftest", {...}, config)`` builds (or reuses) the simulation model of
``config``, starts the simulator with the cocotb module ``radix_sim.host_test``, which calls the
function with a :class:`radix_sim.transport.SimTransport` as its first argument, and returns the
function's JSON result. The function must be importable and its arguments and result JSON data.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from radix.backends import BackendError
from radix.engine_spec import EngineConfig

from .build import run_tests
from .bus_build import build_bus_engine

HOST_TEST_MODULE = "radix_sim.host_test"
PROGRESS_POLL_S = 0.5


class SimulationError(BackendError):
    """The simulation did not produce a result; the message carries the end of its log."""


def run_host(function: str, kwargs: dict, config: EngineConfig, *, pause: float = 0.0, seed: int = 1,
             progress: Callable[[int], None] | None = None, on_build: Callable[[], None] | None = None) -> dict:
    """Call ``function(transport, **kwargs)`` inside a simulation of the bus-master engine of
    ``config`` (its memory behind a fixed latency, ``radix_sim.bus_build``, with ``pause`` the
    probability of a pause on each AXI channel); return the function's result.

    With ``progress``, the function also gets a ``tick`` keyword (called once per unit of work
    inside the simulation), and ``progress`` is called with the running count while it runs.
    ``on_build`` is called if the simulation model has to be compiled first.
    """
    build = build_bus_engine(config, on_build=on_build)
    with tempfile.TemporaryDirectory(prefix="radix-host-") as tmp:
        job = Path(tmp) / "job.json"
        result = Path(tmp) / "result.json"
        ticks = Path(tmp) / "ticks"
        job.write_text(json.dumps({"function": function, "kwargs": kwargs, "result": str(result), "pause": pause,
                                   "seed": seed,
                                   "ticks": str(ticks) if progress else None}))
        failures: list[AssertionError] = []

        def simulate():
            try:
                run_tests(build, test_module=HOST_TEST_MODULE, testcase="host", run_name=Path(tmp).name,
                          extra_env={"RADIX_HOST_JOB": str(job)})
            except (AssertionError, RuntimeError) as failure:  # a failed test, or a simulator that died
                failures.append(failure)

        worker = threading.Thread(target=simulate, daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(PROGRESS_POLL_S)
            if progress and ticks.is_file():
                progress(ticks.stat().st_size)
        if failures:
            raise SimulationError(str(failures[0])) from None
        # a successful run leaves nothing behind (a failed one keeps its log for the message)
        shutil.rmtree(build.build_dir / "runs" / Path(tmp).name, ignore_errors=True)
        if not result.is_file():
            raise SimulationError(f"the simulation of {function} ended without a result")
        outcome = json.loads(result.read_text())
    if "error" in outcome:
        raise SimulationError(outcome["error"])
    return outcome["value"]
