"""Cached Verilator builds of the bus-master engine behind a fixed memory latency, and runs of
memory images on them.

The simulation top ``radix_bus_sim`` is ``LatencyTop(BusEngine(config))``: every read and write
request reaches the memory model (cocotbext-axi ``AxiRam``, seeded pauses on every channel,
``radix_sim.bus_tb``) :data:`LATENCY` cycles after the engine issued it. :func:`run_image` loads
a memory image, runs its command list and returns the memory and registers afterwards.
"""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import numpy as np
from radix.engine_spec import MEMORY_LATENCY, EngineConfig

from .build import BUILD_ROOT, Build, compile_verilog, run_tests

TOPLEVEL = "radix_bus_sim"
TEST_MODULE = "radix_sim.test_bus_engine_cocotb"
JOB_ENV = "RADIX_BUS_JOB"
LATENCY = MEMORY_LATENCY  # cycles from a request to the memory seeing it (radix.engine_spec)
LATENCY_DEPTH = 48  # requests in flight inside the latency model (one per cycle needs LATENCY + 1)


@functools.cache
def unit_verilog_of(config: EngineConfig) -> str:
    """Verilog of the simulation top ``radix_bus_sim`` for ``config``. Kept per process: the
    gateware cannot change under a running process, and generating the Verilog takes about 20 s
    (the build's cache key is the text, so every simulation run would pay it)."""
    from radix_hw.bus_engine import BusEngine

    from .axi_latency import LatencyTop
    from .units import unit_verilog

    return unit_verilog(LatencyTop(BusEngine(config=config), latency=LATENCY, depth=LATENCY_DEPTH), TOPLEVEL)


def build_bus_engine(config: EngineConfig, *, build_root: Path = BUILD_ROOT, on_build=None) -> Build:
    """Generate and compile the bus-master engine of ``config`` behind the latency model."""
    if not isinstance(config, EngineConfig):
        raise TypeError(f"config must be an EngineConfig, not {type(config).__name__}")
    return compile_verilog(unit_verilog_of(config), toplevel=TOPLEVEL,
                           identity={**config.as_dict(), "latency": LATENCY}, build_root=build_root,
                           on_build=on_build)


def run_image(config: EngineConfig, memory: np.ndarray, *, base: int, cmd_base: int, cmd_count: int,
              win_base: int | None = None, win_size: int | None = None, seed: int = 1, pause: float = 0.3,
              timeout_cycles: int = 2_000_000) -> dict:
    """Run the command list of a memory image (uint64 words at bus address ``base``) on the RTL.

    Returns ``{"memory": words after the run, "registers": {...}, "bus": monitor summary}``.
    """
    build = build_bus_engine(config)
    with tempfile.TemporaryDirectory(prefix="radix-bus-") as tmp:
        image, result = Path(tmp) / "image.npz", Path(tmp) / "result.npz"
        np.savez(image, memory=np.asarray(memory, dtype=np.uint64))
        size = int(np.asarray(memory).size) * 8
        job = {"image": str(image), "result": str(result), "base": base, "cmd_base": cmd_base,
               "cmd_count": cmd_count, "win_base": base if win_base is None else win_base,
               "win_size": size if win_size is None else win_size, "seed": seed, "pause": pause,
               "timeout_cycles": timeout_cycles}
        job_file = Path(tmp) / "job.json"
        job_file.write_text(json.dumps(job))
        run_tests(build, test_module=TEST_MODULE, testcase="memory_image", run_name=Path(tmp).name,
                  extra_env={JOB_ENV: str(job_file)})
        with np.load(result) as out:
            return {"memory": out["memory"], "registers": json.loads(str(out["registers"])),
                    "bus": json.loads(str(out["bus"]))}
