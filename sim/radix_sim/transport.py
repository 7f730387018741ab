"""The driver's ``sim`` transport: blocking calls into a live cocotb simulation.

The host code (driver, runner) runs in a thread made by ``cocotb.task.bridge``; each transport
call hands a coroutine to the simulator with ``cocotb.task.resume`` and blocks until it returns,
so the very driver that runs on the board drives the RTL here.
"""

from __future__ import annotations

import numpy as np
from cocotb.task import resume
from cocotb.triggers import SimTimeoutError, with_timeout
from radix.transport import Received, Transport

from .tb import CLOCK_NS, EngineTB, JobTimeout, words_frame


class SimTransport(Transport):
    """Registers over the testbench's AXI4-Lite master, streams over its AXI4-Stream models."""

    name = "sim"

    def __init__(self, tb: EngineTB):
        self.tb = tb

    def read(self, offset: int) -> int:
        return resume(self._read)(offset)

    def write(self, offset: int, value: int) -> None:
        resume(self.tb.write)(offset, int(value))

    def send(self, words: np.ndarray) -> None:
        resume(self.tb.source.send)(words_frame(words))

    def receive(self, count: int, cycles: int) -> Received:
        return resume(self._receive)(cycles)

    def wait_done(self, cycles: int) -> bool:
        try:
            resume(self.tb.wait_done)(cycles)
        except JobTimeout:
            return False
        return True

    async def _read(self, offset: int) -> int:
        value, _ = await self.tb.read(offset)
        return value

    async def _receive(self, cycles: int) -> Received:
        try:
            frame = await with_timeout(self.tb.sink.recv(), cycles * CLOCK_NS, "ns")
        except SimTimeoutError:
            return Received(np.zeros(0, dtype=np.uint64), last=False)
        data = bytes(frame.tdata)
        whole = len(data) - len(data) % 8
        # a frame ends at TLAST; a partial last word cannot come from this engine
        return Received(np.frombuffer(data[:whole], dtype="<u8").astype(np.uint64), last=True)
