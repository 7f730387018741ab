"""The bus-master engine in Amaranth's own simulator, with a Python AXI memory: quick checks.

:func:`run_list` simulates :class:`~radix_hw.bus_engine.BusEngine` on a numpy memory: the memory
answers each read burst no earlier than ``latency`` cycles after its AR handshake and, from a
seeded random pattern, holds back AR, R, AW, W and B (``pause`` probability each). It records
every burst so tests can check the bus rules (16 beats, 4 KB, the window). The Verilator and
cocotbext-axi bench (``radix_sim``) is the full-speed counterpart; this one needs no compiler and
runs small configurations in seconds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
from amaranth.sim import Simulator

from radix.engine_spec import BUS_BYTES, EngineConfig, bus_register

from radix_hw.axi4 import RESP_OKAY
from radix_hw.bus_engine import BusEngine

RESP_SLVERR = 0b10


@dataclass
class BusRun:
    """What one simulated command list did: the registers at the end and the bursts seen."""

    registers: dict
    reads: list = field(default_factory=list)  # (address, beats)
    writes: list = field(default_factory=list)  # (address, beats)
    max_outstanding_reads: int = 0
    first_read_latency: int | None = None


def run_list(config: EngineConfig, memory: np.ndarray, *, base: int, cmd_base: int, cmd_count: int,
             win_base: int | None = None, win_size: int | None = None, latency: int = 30, pause: float = 0.0,
             seed: int = 1, max_cycles: int = 200_000, error_at: int | None = None,
             reset_after: int | None = None, restart: bool = False) -> BusRun:
    """Run a command list on the simulated engine; ``memory`` (uint64 words at bus address
    ``base``) is read and written in place. ``error_at`` answers SLVERR to the burst touching that
    byte address; ``reset_after`` writes CTRL.RESET that many cycles after START; with ``restart``
    the host writes START again as soon as STATUS.BUSY has fallen after it."""
    dut = BusEngine(config=config)
    rng = random.Random(seed)
    win_base = base if win_base is None else win_base
    win_size = memory.size * BUS_BYTES if win_size is None else win_size
    run = BusRun(registers={})

    def index(addr: int) -> int:
        word = (addr - base) // BUS_BYTES
        if not 0 <= word < memory.size:
            raise AssertionError(f"the engine reached 0x{addr:08X}, outside the simulated memory")
        return word

    def touches(addr: int, beats: int) -> bool:
        return error_at is not None and addr <= error_at < addr + beats * BUS_BYTES

    async def memory_model(ctx):
        reads, writes, responses = [], [], []  # reads: [due cycle, addr, beats, resp]
        held_w = []
        current = None
        cycle = 0
        while True:
            ctx.set(dut.m_axi_arready, rng.random() >= pause)
            ctx.set(dut.m_axi_awready, rng.random() >= pause)
            ctx.set(dut.m_axi_wready, rng.random() >= pause)
            if current is None and reads and reads[0][0] <= cycle:
                current = reads.pop(0)
            r_offer = current is not None and rng.random() >= pause
            ctx.set(dut.m_axi_rvalid, r_offer)
            if r_offer:
                ctx.set(dut.m_axi_rdata, int(memory[index(current[1])]) if current[3] == RESP_OKAY else 0)
                ctx.set(dut.m_axi_rlast, current[2] == 1)
                ctx.set(dut.m_axi_rresp, current[3])
            b_offer = bool(responses) and rng.random() >= pause
            ctx.set(dut.m_axi_bvalid, b_offer)
            ctx.set(dut.m_axi_bresp, responses[0] if responses else 0)
            await ctx.delay(0)
            ar = ctx.get(dut.m_axi_arvalid) and ctx.get(dut.m_axi_arready)
            ar_addr, ar_len = ctx.get(dut.m_axi_araddr), ctx.get(dut.m_axi_arlen) + 1
            aw = ctx.get(dut.m_axi_awvalid) and ctx.get(dut.m_axi_awready)
            aw_addr, aw_len = ctx.get(dut.m_axi_awaddr), ctx.get(dut.m_axi_awlen) + 1
            w = ctx.get(dut.m_axi_wvalid) and ctx.get(dut.m_axi_wready)
            w_data, w_last = ctx.get(dut.m_axi_wdata), ctx.get(dut.m_axi_wlast)
            r = r_offer and ctx.get(dut.m_axi_rready)
            b = b_offer and ctx.get(dut.m_axi_bready)
            await ctx.tick()
            cycle += 1
            if ar:
                reads.append([cycle + latency, ar_addr, ar_len, RESP_SLVERR if touches(ar_addr, ar_len) else RESP_OKAY])
                run.reads.append((ar_addr, ar_len))
                outstanding = len(reads) + (current is not None)
                run.max_outstanding_reads = max(run.max_outstanding_reads, outstanding)
            if r:
                if run.first_read_latency is None:
                    run.first_read_latency = cycle - (current[0] - latency)
                current[1] += BUS_BYTES
                current[2] -= 1
                if current[2] == 0:
                    current = None
            if aw:
                writes.append([aw_addr, aw_len, RESP_SLVERR if touches(aw_addr, aw_len) else RESP_OKAY])
                run.writes.append((aw_addr, aw_len))
            if w:
                held_w.append((w_data, w_last))
            while held_w and writes:
                data, last = held_w.pop(0)
                burst = writes[0]
                if burst[2] == RESP_OKAY:
                    memory[index(burst[0])] = data
                burst[0] += BUS_BYTES
                burst[1] -= 1
                if (burst[1] == 0) != bool(last):
                    raise AssertionError(f"WLAST {'missing' if burst[1] == 0 else 'early'} in a write burst")
                if burst[1] == 0:
                    responses.append(writes.pop(0)[2])
            if b:
                responses.pop(0)

    async def lite_write(ctx, name: str, value: int):
        ctx.set(dut.s_axi_awaddr, bus_register(name).offset)
        ctx.set(dut.s_axi_wdata, value)
        ctx.set(dut.s_axi_wstrb, 0xF)
        ctx.set(dut.s_axi_awvalid, 1)
        ctx.set(dut.s_axi_wvalid, 1)
        ctx.set(dut.s_axi_bready, 1)
        await ctx.tick()
        ctx.set(dut.s_axi_awvalid, 0)
        ctx.set(dut.s_axi_wvalid, 0)
        await ctx.tick().repeat(3)

    async def lite_read(ctx, name: str) -> int:
        ctx.set(dut.s_axi_araddr, bus_register(name).offset)
        ctx.set(dut.s_axi_arvalid, 1)
        ctx.set(dut.s_axi_rready, 1)
        await ctx.tick()
        ctx.set(dut.s_axi_arvalid, 0)
        for _ in range(10):
            if ctx.get(dut.s_axi_rvalid):
                value = ctx.get(dut.s_axi_rdata)
                await ctx.tick()
                return value
            await ctx.tick()
        raise AssertionError(f"register {name} did not answer")

    async def host(ctx):
        await ctx.tick().repeat(4)
        for name, value in (("CMD_BASE", cmd_base), ("CMD_COUNT", cmd_count), ("WIN_BASE", win_base),
                            ("WIN_SIZE", win_size), ("CTRL", 1)):
            await lite_write(ctx, name, value)
        waited = 0
        reset_at, reset_sent = reset_after, False
        while waited <= max_cycles:
            await ctx.tick().repeat(50)
            waited += 50
            if reset_at is not None and waited >= reset_at and not reset_sent:
                await lite_write(ctx, "CTRL", 1 << 2)
                reset_sent = True
            status = await lite_read(ctx, "STATUS")
            if reset_sent and restart and not status & 1:
                await lite_write(ctx, "CTRL", 1)
                reset_at, reset_sent = None, False
            elif status & 0b110 or (reset_sent and not status & 1):
                break
        names = ("STATUS", "CYCLES", "SATURATED", "CMD_DONE", "ERR_CODE", "ERR_INDEX", "ERR_ADDR", "BEATS_READ",
                 "BEATS_WRITTEN")
        run.registers = {name: await lite_read(ctx, name) for name in names}

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(memory_model, background=True)
    sim.add_testbench(host)
    sim.run()
    return run
