"""cocotb entry point of ``radix_sim.hostrun``: runs one host function through the bridge."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import cocotb
from cocotb.task import bridge

from .bus_tb import BusEngineTB
from .bus_transport import SimBusTransport

MEMORY_BYTES = 1 << 26  # the simulated buffer (sparse): room for any program the tests place


@cocotb.test()
async def host(dut):
    """Call the job's function with a SimBusTransport; write its result (or its error) as JSON."""
    job = json.loads(Path(os.environ["RADIX_HOST_JOB"]).read_text())
    tb = BusEngineTB(dut, seed=job["seed"], memory_size=MEMORY_BYTES, pause=job["pause"])
    await tb.start()
    module_name, _, attribute = job["function"].partition(":")
    function = getattr(importlib.import_module(module_name), attribute)
    kwargs = dict(job["kwargs"])
    if job["ticks"]:
        ticks = Path(job["ticks"])
        # one byte per unit of work: the host process reads the file's size as the count
        kwargs["tick"] = lambda: ticks.open("ab").write(b".")
    try:
        value = await bridge(function)(SimBusTransport(tb), **kwargs)
        outcome = {"value": value}
    except Exception as exc:  # reported to the host process, which raises it with this message
        outcome = {"error": f"{type(exc).__name__}: {exc}"}
    Path(job["result"]).write_text(json.dumps(outcome, default=_plain))


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
