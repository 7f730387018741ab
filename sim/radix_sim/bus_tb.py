"""cocotb testbench of a bus-master engine: clock, reset, registers, an AXI4 memory, a protocol monitor.

The device under test is a top level like :class:`radix_sim.axi_latency.LatencyTop`: the engine
(or a test master with its ports) whose ``m_axi_*`` port reaches the memory through an
:class:`~radix_sim.axi_latency.AxiLatency`, so every read answers a fixed number of cycles after
the engine's AR handshake at the earliest. :class:`BusEngineTB` puts cocotbext-axi's
``AxiLiteMaster`` on ``s_axi`` and its ``AxiRam`` on the memory side, with random pauses from a
seed on all five channels of the memory (AR and AW ready, R and B valid, W ready), and watches
the engine's side of the bus with :class:`AxiBusMonitor`.

Memory (:class:`RegionMemory`): ``AxiRam`` spans the whole 32-bit bus address space, so bus
addresses index it directly, but only ``[memory_base, memory_base + memory_size)`` is memory
(zeroed at the start, kept sparse in 4 KB pages); a burst beat outside it answers SLVERR, and
:meth:`BusEngineTB.write_memory` / :meth:`~BusEngineTB.read_memory` outside it raise
ValueError.

Every wait is bounded; a timeout raises :class:`JobTimeout` with the register state.
"""

from __future__ import annotations

import logging
import random
from collections import deque

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, SimTimeoutError, with_timeout
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam, AxiResp
from cocotbext.axi.sparse_memory import SparseMemory
from radix.engine_spec import (BURST_BOUNDARY, BUS_ADDR_BITS, BUS_BYTES, BUS_REGISTERS, MAX_BURST_BEATS, bus_register,
                               field_mask_of)
from radix_hw.axi4 import BURST_INCR, SIZE_8_BYTES

from .axi_latency import UP_PREFIX

CLOCK_NS = 10
RESET_CYCLES = 8
REGISTER_TIMEOUT_CYCLES = 200  # one AXI4-Lite access, backpressure included

DEFAULT_MEMORY_BASE = 0x1000_0000  # where the memory starts on the bus (a PYNQ buffer is rarely at 0)
POLL_CYCLES = 16  # cycles between STATUS reads while waiting for a list
MAX_VIOLATIONS = 20  # protocol violations kept with their text (all are counted)
RESULT_REGISTERS = tuple(reg.name for reg in BUS_REGISTERS if reg.access in ("ro", "status"))
CFG_REGISTERS = ("CMD_BASE", "CMD_COUNT", "WIN_BASE", "WIN_SIZE")
CHANNEL_FIELDS = {  # what the monitor samples of each channel while its VALID is high
    "ar": ("arid", "araddr", "arlen", "arsize", "arburst"),
    "aw": ("awid", "awaddr", "awlen", "awsize", "awburst"),
    "w": ("wdata", "wstrb", "wlast"),
    "r": ("rlast",),
    "b": (),
}
MASTER_CHANNELS = ("ar", "aw", "w")  # the engine's VALID must hold, its payload stay, until READY


class JobTimeout(AssertionError):
    """A bounded wait expired; the message names the engine's register state."""


def _pauses(rng: random.Random, probability: float):
    """Endless pause pattern: True (pause) with ``probability``."""
    while True:
        yield rng.random() < probability


class BusProtocolError(AssertionError):
    """The engine broke a rule of the bus (the message lists the violations)."""


class RegionMemory(SparseMemory):
    """The 32-bit bus address space, of which ``[base, base + size)`` is memory.

    Reads and writes outside the region raise ValueError, which ``AxiRam`` answers with SLVERR.
    """

    def __init__(self, base: int, size: int):
        super().__init__(1 << BUS_ADDR_BITS)
        self.base = 0
        self.region_size = 0
        self.place(base, size)

    def place(self, base: int, size: int) -> None:
        """Make ``[base, base + size)`` the memory, all zero."""
        if base < 0 or size < 1 or base + size > self.size:
            raise ValueError(f"memory [0x{base:X}, +0x{size:X}) is not inside the {BUS_ADDR_BITS}-bit address space")
        self.base, self.region_size = base, size
        self.clear()

    def _check(self, address: int, length: int) -> None:
        if address < self.base or address + length > self.base + self.region_size:
            raise ValueError(f"bytes [0x{address:X}, +{length}) outside memory "
                             f"[0x{self.base:X}, 0x{self.base + self.region_size:X})")

    def read(self, address, length, **kwargs):
        self._check(address, length)
        return super().read(address, length, **kwargs)

    def write(self, address, data, **kwargs):
        self._check(address, len(data))
        return super().write(address, data, **kwargs)


class AxiProtocolChecker:
    """What the engine's AXI4 master did, cycle by cycle, and which rules it broke.

    :meth:`step` takes one cycle's sample of the bus (member suffix -> int: every ``*valid`` and
    ``*ready``, and the fields of :data:`CHANNEL_FIELDS` of a channel whose VALID is high).
    Rules (docs/engine.md, "Memory and commands"): every burst INCR, AxSIZE 8 bytes, ID 0, at
    most ``MAX_BURST_BEATS`` beats, 8-byte aligned, not across a ``BURST_BOUNDARY`` and inside
    ``window`` (``(base, size)`` or None); WLAST on a write burst's last beat and on no other;
    AR, AW and W keep VALID and their payload until READY; no R beat without an outstanding read
    and no B without an outstanding write.

    Facts: bursts and beats per direction, ``max_burst_beats``, ``max_outstanding_reads`` and
    ``_writes`` (AR handshakes not yet answered by RLAST; AW handshakes not yet answered by B),
    ``min_read_latency`` (cycles from an AR handshake to its first R beat) and ``cycles``.
    """

    def __init__(self, window: tuple[int, int] | None = None):
        self.window = window
        self.cycles = 0
        self.read_bursts = self.write_bursts = self.read_beats = self.write_beats = 0
        self.max_burst_beats = 0
        self.max_outstanding_reads = self.max_outstanding_writes = 0
        self.min_read_latency: int | None = None
        self.violation_count = 0
        self.violations: list[str] = []
        self._reads: deque[int] = deque()  # AR handshake cycle of each outstanding read burst
        self._read_started = False  # the oldest outstanding read has had a beat
        self._writes_open = 0  # AW handshakes without their B yet
        self._aw_beats: deque[int] = deque()  # beats of AW bursts whose data has not all come
        self._w_bursts: deque[int] = deque()  # beats of W bursts (WLAST seen) whose AW has not come
        self._w_beat = 0  # beats of the W burst under way
        self._held: dict[str, dict] = {}  # channel -> its sample of the last cycle VALID stood unanswered

    def _violation(self, text: str) -> None:
        self.violation_count += 1
        if len(self.violations) < MAX_VIOLATIONS:
            self.violations.append(f"cycle {self.cycles}: {text}")

    def step(self, sample: dict) -> None:
        """Account for one clock cycle's ``sample`` of the bus."""
        for ch in MASTER_CHANNELS:
            self._check_held(ch, sample)
        if sample["arvalid"] and sample["arready"]:
            self._address(sample, "ar")
        if sample["awvalid"] and sample["awready"]:
            self._address(sample, "aw")
        if sample["wvalid"] and sample["wready"]:
            self._write_beat(sample["wlast"])
        if sample["rvalid"] and sample["rready"]:
            self._read_beat(sample["rlast"])
        if sample["bvalid"] and sample["bready"]:
            if self._writes_open:
                self._writes_open -= 1
            else:
                self._violation("write response without an outstanding write burst")
        self.cycles += 1

    def _check_held(self, ch: str, sample: dict) -> None:
        """VALID, once up, stays up with the same payload until READY."""
        held = self._held.pop(ch, None)
        valid = sample[f"{ch}valid"]
        if held is not None:
            if not valid:
                self._violation(f"{ch.upper()}VALID dropped before READY")
            else:
                changed = [name for name in CHANNEL_FIELDS[ch] if sample[name] != held[name]]
                if changed:
                    self._violation(f"{', '.join(n.upper() for n in changed)} changed while {ch.upper()}VALID waited")
        if valid and not sample[f"{ch}ready"]:
            self._held[ch] = {name: sample[name] for name in CHANNEL_FIELDS[ch]}

    def _address(self, sample: dict, ch: str) -> None:
        addr, beats = sample[f"{ch}addr"], sample[f"{ch}len"] + 1
        what = f"{'read' if ch == 'ar' else 'write'} burst at 0x{addr:08X} ({beats} beats)"
        self.max_burst_beats = max(self.max_burst_beats, beats)
        if beats > MAX_BURST_BEATS:
            self._violation(f"{what}: more than {MAX_BURST_BEATS} beats")
        if sample[f"{ch}size"] != SIZE_8_BYTES:
            self._violation(f"{what}: {ch.upper()}SIZE {sample[f'{ch}size']}, not {SIZE_8_BYTES} ({BUS_BYTES} bytes)")
        if sample[f"{ch}burst"] != BURST_INCR:
            self._violation(f"{what}: {ch.upper()}BURST {sample[f'{ch}burst']}, not INCR")
        if sample[f"{ch}id"] != 0:
            self._violation(f"{what}: {ch.upper()}ID {sample[f'{ch}id']}, not 0")
        if addr % BUS_BYTES:
            self._violation(f"{what}: not {BUS_BYTES}-byte aligned")
        end = addr + beats * BUS_BYTES
        if addr // BURST_BOUNDARY != (end - 1) // BURST_BOUNDARY:
            self._violation(f"{what}: crosses a {BURST_BOUNDARY}-byte boundary")
        if self.window is not None:
            base, size = self.window
            if addr < base or end > base + size:
                self._violation(f"{what}: outside the window [0x{base:08X}, 0x{base + size:08X})")
        if ch == "ar":
            self.read_bursts += 1
            self._reads.append(self.cycles)
            self.max_outstanding_reads = max(self.max_outstanding_reads, len(self._reads))
        else:
            self.write_bursts += 1
            self._writes_open += 1
            self.max_outstanding_writes = max(self.max_outstanding_writes, self._writes_open)
            if self._w_bursts:
                self._match_write(self._w_bursts.popleft(), beats)
            else:
                self._aw_beats.append(beats)

    def _match_write(self, sent: int, announced: int) -> None:
        if sent != announced:
            self._violation(f"write burst of {announced} beats had WLAST on beat {sent}")

    def _write_beat(self, last: int) -> None:
        self.write_beats += 1
        self._w_beat += 1
        if self._aw_beats:
            announced = self._aw_beats[0]
            if last or self._w_beat == announced:
                self._aw_beats.popleft()
                if last:
                    self._match_write(self._w_beat, announced)
                else:
                    self._violation(f"write burst of {announced} beats had no WLAST on its last beat")
                self._w_beat = 0
        elif last:  # the data came before its address, which is allowed
            self._w_bursts.append(self._w_beat)
            self._w_beat = 0

    def _read_beat(self, last: int) -> None:
        self.read_beats += 1
        if not self._reads:
            self._violation("read data without an outstanding read burst")
            return
        if not self._read_started:
            latency = self.cycles - self._reads[0]
            self.min_read_latency = latency if self.min_read_latency is None else min(self.min_read_latency, latency)
            self._read_started = True
        if last:
            self._reads.popleft()
            self._read_started = False

    def summary(self) -> dict:
        """The facts and the violation count, for logs and assertions."""
        return {
            "cycles": self.cycles, "read_bursts": self.read_bursts, "read_beats": self.read_beats,
            "write_bursts": self.write_bursts, "write_beats": self.write_beats,
            "max_burst_beats": self.max_burst_beats, "max_outstanding_reads": self.max_outstanding_reads,
            "max_outstanding_writes": self.max_outstanding_writes, "min_read_latency": self.min_read_latency,
            "violations": self.violation_count,
        }

    def check(self) -> None:
        """Raise :class:`BusProtocolError` naming the violations, if there were any."""
        if self.violation_count:
            raise BusProtocolError(f"{self.violation_count} AXI protocol violation(s):\n" + "\n".join(self.violations))


class AxiBusMonitor(AxiProtocolChecker):
    """An :class:`AxiProtocolChecker` fed from the signals ``<prefix>_*`` of ``scope`` every
    rising clock edge (sampled as cocotbext-axi samples them, so the monitor and the memory
    model see the same handshakes); cycles in reset are not counted."""

    def __init__(self, scope, prefix: str, clock, reset, window: tuple[int, int] | None = None):
        super().__init__(window)
        self._clock, self._reset = clock, reset
        self._handles = {}
        for ch, fields in CHANNEL_FIELDS.items():
            for name in (f"{ch}valid", f"{ch}ready", *fields):
                self._handles[name] = getattr(scope, f"{prefix}_{name}")
        self._task = None

    def start(self) -> None:
        """Start watching (once)."""
        if self._task is None:
            self._task = cocotb.start_soon(self._run())

    async def _run(self) -> None:
        edge = RisingEdge(self._clock)
        handles = self._handles
        while True:
            await edge
            if int(self._reset.value):
                continue
            sample = {}
            for ch, fields in CHANNEL_FIELDS.items():
                valid = int(handles[f"{ch}valid"].value)
                sample[f"{ch}valid"] = valid
                sample[f"{ch}ready"] = int(handles[f"{ch}ready"].value)
                for name in fields:  # payload only while it means something: the cheap common case
                    sample[name] = int(handles[name].value) if valid else 0
            self.step(sample)


def _resolve(dut, path: str | None):
    """The handle at the dotted ``path`` below ``dut`` (``dut`` itself for None or '')."""
    scope = dut
    for part in path.split(".") if path else ():
        scope = getattr(scope, part)
    return scope


class BusEngineTB:
    """Drives one bus-master engine top level (see the module docstring).

    Parameters
    ----------
    dut:
        The cocotb handle of the top level (ports ``clk``, ``rst``, ``s_axi_*`` and the memory
        side ``<memory_prefix>_*``).
    seed:
        Seed of the pause patterns.
    memory_size, memory_base:
        The memory: ``memory_size`` bytes from bus address ``memory_base``.
    pause:
        Probability that a channel of the memory pauses in a cycle (its READY low on AR, AW
        and W, its VALID held back on R and B); 0 disables the pauses.
    memory_prefix:
        Prefix of the top level's AXI4 port to memory.
    monitor_path, monitor_prefix:
        Where :class:`AxiBusMonitor` watches the engine's side of the bus: the signals
        ``<monitor_prefix>_*`` of the instance at the dotted ``monitor_path`` below ``dut``
        (default: the upstream side of ``LatencyTop``'s ``latency``); ``monitor_path=None``
        watches ``dut`` itself.
    """

    def __init__(self, dut, *, seed: int, memory_size: int, pause: float = 0.3,
                 memory_base: int = DEFAULT_MEMORY_BASE, memory_prefix: str = "m_axi",
                 monitor_path: str | None = "latency", monitor_prefix: str = UP_PREFIX):
        if not 0.0 <= pause < 1.0:
            raise ValueError(f"pause probability {pause} outside [0, 1)")
        self.dut = dut
        self.memory = RegionMemory(memory_base, memory_size)
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi"), dut.clk, dut.rst)
        self.ram = AxiRam(AxiBus.from_prefix(dut, memory_prefix), dut.clk, dut.rst, mem=self.memory)
        channels = (self.ram.read_if.ar_channel, self.ram.read_if.r_channel, self.ram.write_if.aw_channel,
                    self.ram.write_if.w_channel, self.ram.write_if.b_channel)
        if pause:
            rng = random.Random(seed)
            for channel in channels:
                channel.set_pause_generator(_pauses(random.Random(rng.random()), pause))
        for model in (self.axil.write_if, self.axil.read_if, self.ram.write_if, self.ram.read_if):
            model.log.setLevel(logging.WARNING)  # one INFO line per access drowns the log
        self.monitor = AxiBusMonitor(_resolve(dut, monitor_path), monitor_prefix, dut.clk, dut.rst)

    @property
    def memory_base(self) -> int:
        return self.memory.base

    @property
    def memory_size(self) -> int:
        return self.memory.region_size

    async def start(self) -> None:
        """Start the clock, apply a synchronous reset, then start the monitor."""
        Clock(self.dut.clk, CLOCK_NS, unit="ns").start()
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, RESET_CYCLES)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)
        self.monitor.start()

    # -- memory (no simulated time passes) ----------------------------------------------
    def allocate(self, nbytes: int) -> int:
        """Make the memory ``nbytes`` long (rounded up to whole words), zeroed, at the same base;
        returns its bus address."""
        if nbytes < 1:
            raise ValueError(f"cannot allocate {nbytes} bytes")
        self.memory.place(self.memory.base, -(-nbytes // BUS_BYTES) * BUS_BYTES)
        return self.memory.base

    def write_memory(self, byte_addr: int, words) -> None:
        """Write 64-bit ``words`` at bus address ``byte_addr`` (8-byte aligned)."""
        _check_aligned(byte_addr)
        self.memory.write(byte_addr, np.asarray(words, dtype=np.uint64).astype("<u8").tobytes())

    def read_memory(self, byte_addr: int, count: int) -> np.ndarray:
        """``count`` 64-bit words from bus address ``byte_addr`` (8-byte aligned), uint64."""
        _check_aligned(byte_addr)
        data = self.memory.read(byte_addr, count * BUS_BYTES)
        return np.frombuffer(data, dtype="<u8").astype(np.uint64)

    # -- registers ----------------------------------------------------------------------
    async def bounded(self, awaitable, cycles: int, what: str):
        """Await ``awaitable`` for at most ``cycles`` clock cycles, else raise :class:`JobTimeout`."""
        try:
            return await with_timeout(awaitable, cycles * CLOCK_NS, "ns")
        except SimTimeoutError:
            raise JobTimeout(f"{what}: no answer within {cycles} cycles") from None

    async def read(self, offset: int) -> tuple[int, AxiResp]:
        """Read the 32-bit register at byte ``offset``: ``(value, response)``."""
        resp = await self.bounded(self.axil.read(offset, 4), REGISTER_TIMEOUT_CYCLES, f"read 0x{offset:03X}")
        return int.from_bytes(resp.data, "little"), resp.resp

    async def write(self, offset: int, value: int) -> AxiResp:
        """Write the 32-bit ``value`` at byte ``offset``; returns the response."""
        resp = await self.bounded(self.axil.write(offset, int(value).to_bytes(4, "little")), REGISTER_TIMEOUT_CYCLES,
                                  f"write 0x{offset:03X}")
        return resp.resp

    async def read_reg(self, name: str) -> int:
        """Read a register of ``BUS_REGISTERS`` by name; a response other than OKAY fails."""
        value, resp = await self.read(bus_register(name).offset)
        if resp != AxiResp.OKAY:
            raise AssertionError(f"reading {name} answered {resp!r}")
        return value

    async def write_reg(self, name: str, value: int) -> None:
        """Write a register of ``BUS_REGISTERS`` by name; a response other than OKAY fails."""
        resp = await self.write(bus_register(name).offset, value)
        if resp != AxiResp.OKAY:
            raise AssertionError(f"writing {name} answered {resp!r}")

    async def register_state(self) -> str:
        """All registers as ``NAME=0x...`` for error messages (reads without timeouts raising)."""
        parts = []
        for reg in BUS_REGISTERS:
            try:
                value, _ = await self.read(reg.offset)
                parts.append(f"{reg.name}=0x{value:X}")
            except JobTimeout:
                parts.append(f"{reg.name}=<no answer>")
        return " ".join(parts)

    # -- running ------------------------------------------------------------------------
    async def wait_status(self, cycles: int) -> int:
        """Poll STATUS until DONE or ERROR is set, for at most about ``cycles`` cycles; returns
        STATUS. Raises :class:`JobTimeout` with the register state and the monitor's facts."""
        finished = field_mask_of("STATUS", "DONE") | field_mask_of("STATUS", "ERROR")

        async def poll() -> int:
            while True:
                status = await self.read_reg("STATUS")
                if status & finished:
                    return status
                await ClockCycles(self.dut.clk, POLL_CYCLES)

        try:
            return await self.bounded(poll(), cycles, "STATUS")
        except JobTimeout:
            raise JobTimeout(f"neither STATUS.DONE nor STATUS.ERROR within {cycles} cycles; "
                             f"{await self.register_state()}; bus: {self.monitor.summary()}") from None

    async def run_list(self, cmd_base: int, cmd_count: int, win_base: int, win_size: int, *,
                       timeout_cycles: int) -> dict:
        """Run a command list: clear STATUS, program CMD_BASE, CMD_COUNT, WIN_BASE, WIN_SIZE, set
        CTRL.START and wait (bounded) for STATUS.DONE or STATUS.ERROR.

        The monitor's window becomes ``(win_base, win_size)``. Returns the read-only registers
        and STATUS by name.
        """
        self.monitor.window = (win_base, win_size)
        await self.write_reg("STATUS", field_mask_of("STATUS", "DONE") | field_mask_of("STATUS", "ERROR"))
        for name, value in zip(CFG_REGISTERS, (cmd_base, cmd_count, win_base, win_size)):
            await self.write_reg(name, value)
        await self.write_reg("CTRL", field_mask_of("CTRL", "START"))
        await self.wait_status(timeout_cycles)
        return {name: await self.read_reg(name) for name in RESULT_REGISTERS}


def _check_aligned(byte_addr: int) -> None:
    if byte_addr % BUS_BYTES:
        raise ValueError(f"address 0x{byte_addr:X} is not {BUS_BYTES}-byte aligned")
