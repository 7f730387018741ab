"""The ``sim`` side of :class:`radix.bus_transport.BusTransport`: blocking calls into a live simulation.

The host code (driver, runner) runs in a thread made by ``cocotb.task.bridge``; register accesses
and waits hand a coroutine to the simulator with ``cocotb.task.resume`` and block until it
returns. Memory accesses go straight into the testbench's ``AxiRam`` memory: the simulator stands
still while the host thread runs (a bridge thread runs only while the simulation waits for it),
so no simulated time passes and nothing races.
"""

from __future__ import annotations

import time

import numpy as np
from cocotb.task import resume
from radix.bus_transport import BusTransport
from radix.engine_spec import BUS_BYTES

from .bus_tb import BusEngineTB, JobTimeout


class SimBusTransport(BusTransport):
    """Registers over the testbench's AXI4-Lite master, memory in its ``AxiRam``.

    Buffer offsets are relative to :meth:`allocate`'s bus address (the testbench's memory
    base); :meth:`wait_done` counts simulated clock cycles.
    """

    name = "sim"

    def __init__(self, tb: BusEngineTB):
        super().__init__()
        self.tb = tb
        self._allocated = False

    # -- registers ----------------------------------------------------------------------
    # A register access is an AXI4-Lite transaction the simulator runs: its wall-clock time is
    # the simulation's (engine_seconds), not the host's; the board pays its MMIO cost for real.
    def read(self, offset: int) -> int:
        self.register_accesses += 1
        started = time.perf_counter()
        try:
            return resume(self._read)(offset)
        finally:
            self.engine_seconds += time.perf_counter() - started

    def write(self, offset: int, value: int) -> None:
        self.register_accesses += 1
        started = time.perf_counter()
        try:
            resume(self.tb.write)(offset, int(value))
        finally:
            self.engine_seconds += time.perf_counter() - started

    async def _read(self, offset: int) -> int:
        value, _ = await self.tb.read(offset)
        return value

    # -- memory -------------------------------------------------------------------------
    def allocate(self, nbytes: int) -> int:
        base = self.tb.allocate(nbytes)
        self._allocated = True
        return base

    @property
    def memory_size(self) -> int:
        return self.tb.memory_size if self._allocated else 0

    def write_memory(self, offset: int, words: np.ndarray) -> None:
        self._check_span(offset, np.asarray(words).size)
        self.tb.write_memory(self.tb.memory_base + offset, words)

    def read_memory(self, offset: int, count: int) -> np.ndarray:
        self._check_span(offset, count)
        return self.tb.read_memory(self.tb.memory_base + offset, count)

    def _check_span(self, offset: int, count: int) -> None:
        """The words lie inside the allocated buffer (a clear error instead of the memory's)."""
        if not self._allocated:
            raise RuntimeError("no buffer: call allocate() first")
        if offset < 0 or offset + BUS_BYTES * count > self.tb.memory_size:
            raise ValueError(f"{count} words at offset 0x{offset:X} exceed the {self.tb.memory_size}-byte buffer")

    # -- control ------------------------------------------------------------------------
    def wait_done(self, cycles: int) -> bool:
        started = time.perf_counter()
        try:
            resume(self.tb.wait_status)(cycles)
        except JobTimeout:
            return False
        finally:
            self.engine_seconds += time.perf_counter() - started
        return True

    def diagnostics(self) -> str:
        return f"bus monitor: {self.tb.monitor.summary()}"
